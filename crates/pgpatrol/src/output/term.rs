//! What human output may assume about where it goes: colour or not, and how wide. Resolved
//! once at the edge (the `--color` flag, `NO_COLOR`, whether the stream is a terminal) and
//! handed to the renderers, which never look at the environment themselves.

use std::ffi::OsStr;
use std::io::IsTerminal;

/// `--color`: colour when writing to a terminal (`auto`), `always`, or `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal, unless NO_COLOR is set.
    #[default]
    Auto,
    /// Colour even into a pipe or a file (JSON, YAML and patronictl-json never have colour).
    Always,
    /// No colour at all.
    Never,
}

impl ColorChoice {
    /// Whether to colour a stream: `always` and `never` are final (a flag beats the
    /// environment); `auto` colours a terminal unless `NO_COLOR` is set to anything
    /// non-empty (<https://no-color.org>).
    pub fn resolve(self, is_terminal: bool, no_color: Option<&OsStr>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_terminal && no_color.is_none_or(OsStr::is_empty),
        }
    }

    /// [`ColorChoice::resolve`] for this process's stdout.
    pub fn for_stdout(self) -> bool {
        self.resolve(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    }

    /// [`ColorChoice::resolve`] for this process's stderr (where logs go): a log redirected
    /// to a file or read by journald gets no escape codes.
    pub fn for_stderr(self) -> bool {
        self.resolve(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    }
}

/// How human output looks where it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Look {
    /// ANSI colours and attributes.
    pub color: bool,
    /// Fit tables into this many columns (the terminal's width); `None`: never wrap a cell,
    /// as wanted in a pipe or a file.
    pub width: Option<u16>,
}

impl Look {
    /// No colour, no width: what tests and pipes get.
    pub fn plain() -> Look {
        Look::default()
    }

    /// For stdout: colour as `choice` resolves, the terminal's width when stdout is one.
    pub fn stdout(choice: ColorChoice) -> Look {
        Look {
            color: choice.for_stdout(),
            width: terminal_size::terminal_size_of(std::io::stdout()).map(|(w, _)| w.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_colours_only_a_terminal_without_no_color() {
        let auto = ColorChoice::Auto;
        assert!(auto.resolve(true, None));
        assert!(!auto.resolve(false, None));
        assert!(!auto.resolve(true, Some(OsStr::new("1"))));
        // NO_COLOR set but empty does not count (no-color.org).
        assert!(auto.resolve(true, Some(OsStr::new(""))));
    }

    #[test]
    fn always_and_never_beat_the_environment() {
        assert!(ColorChoice::Always.resolve(false, Some(OsStr::new("1"))));
        assert!(!ColorChoice::Never.resolve(true, None));
    }
}
