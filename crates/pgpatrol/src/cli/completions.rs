//! `pgpatrol completions SHELL`: a shell completion script, generated from the clap
//! definitions (so it offers exactly the subcommands and flags this binary has).

use std::io::Write;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Outcome;

/// Print a shell completion script (bash, zsh, fish, elvish, powershell).
///
/// The Debian package installs them already. By hand: bash, `pgpatrol completions bash >
/// ~/.local/share/bash-completion/completions/pgpatrol`; zsh, a file `_pgpatrol` in a folder
/// of $fpath; fish, `pgpatrol completions fish > ~/.config/fish/completions/pgpatrol.fish`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

impl CompletionsArgs {
    pub fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        write(self.shell, out)?;
        out.flush()?;
        Ok(Outcome::Ok)
    }
}

/// Writes the completion script for `shell`.
pub fn write(shell: Shell, out: &mut impl Write) -> std::io::Result<()> {
    // clap_complete panics when its writer fails: render into memory, then write (a closed
    // pipe is then an error like any other).
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut super::Cli::command(), "pgpatrol", &mut buf);
    out.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_completion_names_every_visible_subcommand() {
        let mut buf = Vec::new();
        write(Shell::Bash, &mut buf).unwrap();
        let script = String::from_utf8(buf).unwrap();
        for sub in super::super::Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
        {
            assert!(
                script.contains(&format!("pgpatrol,{}", sub.get_name())),
                "{} missing",
                sub.get_name()
            );
        }
    }
}
