//! `pgpatrol supervise -- COMMAND ARGS...`: run a command as a container's PID 1 (see
//! `crate::supervise`). Runs without the async runtime.

use std::ffi::OsString;
use std::time::Duration;

use clap::Args;

use crate::supervise::{self, Options};

/// Run COMMAND as the container's init: reap zombies, forward signals, pass on its exit code.
///
/// Use it as the entrypoint of a Patroni container, so a stopped postmaster never stays a
/// zombie that Patroni waits for forever:
///
///   ENTRYPOINT ["pgpatrol", "supervise", "--", "patroni", "/etc/patroni.yml"]
///
/// Forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the command. After a
/// SIGTERM the command has --grace to exit, then it (and, as PID 1, everything else left)
/// gets SIGKILL. Exits with the command's exit code, or 128 + the signal that ended it.
/// When not PID 1 it registers as a child subreaper, so orphans are still reaped here.
#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub struct SuperviseArgs {
    /// Time the command has to exit after SIGTERM before SIGKILL.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub grace: Duration,

    /// When not PID 1, become a child subreaper so orphans are re-parented here (the default).
    #[arg(long, overrides_with = "no_subreaper")]
    pub subreaper: bool,

    /// Do not become a child subreaper when not PID 1 (orphans then go to the real init).
    #[arg(long)]
    pub no_subreaper: bool,

    /// Start the command in its own process group and send signals to the whole group.
    #[arg(long)]
    pub process_group: bool,

    /// The command to run, after `--`.
    #[arg(required = true, value_name = "COMMAND", num_args = 1.., allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

impl SuperviseArgs {
    /// Runs the command; the result is the exit code to exit with.
    pub fn run(self) -> anyhow::Result<i32> {
        supervise::run(&Options {
            command: self.command,
            grace: self.grace,
            subreaper: !self.no_subreaper,
            process_group: self.process_group,
        })
    }
}
