//! `pgpatrol man --dir DIR`: the man pages, generated from the clap definitions (the Debian
//! package ships them; from source, `pgpatrol man --dir ~/.local/share/man/man1`): `pgpatrol.1` and one page per subcommand, nested ones included
//! (`pgpatrol-heal.1`, `pgpatrol-slo-rules.1`, `pgpatrol-lab-break-lag.1`, ...).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};

use super::Outcome;

/// Write the man pages (pgpatrol.1, one per subcommand) into a folder.
///
/// From source: `pgpatrol man --dir ~/.local/share/man/man1`, then `man pgpatrol-heal`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The folder to write the pages into.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

impl ManArgs {
    pub fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| anyhow::anyhow!("cannot create the folder {}: {e}", self.dir.display()))?;
        for page in pages()? {
            let path = self.dir.join(&page.file);
            std::fs::write(&path, &page.roff)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            writeln!(out, "{}", path.display())?;
        }
        Ok(Outcome::Ok)
    }
}

/// One man page.
#[derive(Debug)]
pub struct Page {
    /// `pgpatrol-heal.1`.
    pub file: String,
    pub roff: Vec<u8>,
}

/// Every visible command's page, the top one first.
pub fn pages() -> std::io::Result<Vec<Page>> {
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut names = Vec::new();
    page_names(&cmd, &mut names);
    let mut pages = Vec::new();
    collect(&cmd, None, &names, &mut pages)?;
    Ok(pages)
}

fn display_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string()
}

fn page_names(cmd: &clap::Command, names: &mut Vec<String>) {
    names.push(display_name(cmd));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page_names(sub, names);
    }
}

fn collect(
    cmd: &clap::Command,
    parent: Option<&str>,
    all: &[String],
    pages: &mut Vec<Page>,
) -> std::io::Result<()> {
    let name = display_name(cmd);
    let man = clap_mangen::Man::new(cmd.clone())
        .manual("pgpatrol manual")
        .source(format!("pgpatrol {}", env!("CARGO_PKG_VERSION")));
    let mut roff = Vec::new();
    man.render(&mut roff)?;
    // SEE ALSO: the parent, the children, and (on the top page) every page.
    let related: Vec<String> = if parent.is_none() {
        all.iter().filter(|n| **n != name).cloned().collect()
    } else {
        parent
            .map(str::to_string)
            .into_iter()
            .chain(
                cmd.get_subcommands()
                    .filter(|s| !s.is_hide_set())
                    .map(display_name),
            )
            .collect()
    };
    roff.extend_from_slice(extra_sections(&related).as_bytes());
    pages.push(Page {
        file: man.get_filename(),
        roff,
    });
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, Some(&name), all, pages)?;
    }
    Ok(())
}

/// Roff-escapes plain text: backslashes and hyphens (which roff would typeset as a hyphen,
/// not the minus of an option or a command name).
fn esc(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-")
}

fn extra_sections(related: &[String]) -> String {
    let mut s = String::new();
    s.push_str(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in [
        ("0", "All is well."),
        (
            "1",
            "The command ran and found a problem: lag unknown, no leader, a guardrail refused, something stayed unhealthy, a dry run that would act.",
        ),
        (
            "2",
            "An error: bad input, an unreachable or misbehaving cluster, wrong credentials. The error is one line on stderr.",
        ),
    ] {
        s.push_str(&format!(".TP\n\\fB{code}\\fR\n{}\n", esc(meaning)));
    }
    s.push_str(".SH ENVIRONMENT\n");
    s.push_str(&format!(
        ".TP\n\\fBNO_COLOR\\fR\n{}\n",
        esc("When set to a non-empty value, no colour with --color auto (the default).")
    ));
    s.push_str(".SH \"SEE ALSO\"\n");
    let refs: Vec<String> = related
        .iter()
        .map(|n| format!("\\fB\\%{}\\fR(1)", esc(n)))
        .collect();
    if !refs.is_empty() {
        s.push_str(&refs.join(",\n"));
        s.push('\n');
        s.push_str(".PP\n");
    }
    s.push_str(&esc(
        "The operator guide, the metrics and the safety guardrails: /usr/share/doc/pgpatrol/ (GUIDE.md, METRICS.md, SAFETY.md) when installed from the Debian package.",
    ));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_subcommand_has_a_page() {
        let pages = pages().unwrap();
        let files: Vec<&str> = pages.iter().map(|p| p.file.as_str()).collect();
        for f in [
            "pgpatrol.1",
            "pgpatrol-list.1",
            "pgpatrol-heal.1",
            "pgpatrol-watch.1",
            "pgpatrol-slo-rules.1",
            "pgpatrol-completions.1",
            "pgpatrol-lab-up.1",
        ] {
            assert!(files.contains(&f), "{f} missing from {files:?}");
        }
        assert!(!files.iter().any(|f| f.starts_with("pgpatrol-help")));
        let heal = pages.iter().find(|p| p.file == "pgpatrol-heal.1").unwrap();
        let text = String::from_utf8_lossy(&heal.roff);
        assert!(text.contains("tolerance"), "{text}");
        assert!(text.contains(".SH \"EXIT STATUS\""), "{text}");
        assert!(text.contains("\\fB\\%pgpatrol\\fR(1)"), "{text}");
    }
}
