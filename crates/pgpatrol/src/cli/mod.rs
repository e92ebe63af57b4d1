//! Command-line entry: one module per subcommand, each owning its `Args` and `run()`.
//! Exit codes: 0 ok, 1 a problem found, 2 an error (bad input, unreachable cluster, ...).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::term::ColorChoice;
use crate::text::one_line;

pub mod common;
pub mod completions;
pub mod confirm;
pub mod doctor;
pub mod events;
pub mod heal;
pub mod history;
pub mod lab;
pub mod list;
pub mod man;
pub mod member;
pub mod ops;
pub mod progress;
pub mod reinit;
pub mod remove;
pub mod report;
pub mod show_config;
pub mod sli;
pub mod slo;
pub mod standby;
pub mod supervise;
pub mod topology;
pub mod watch;

/// Keeps Patroni PostgreSQL clusters healthy.
///
/// Measures replica lag as an SLI, reinitializes replicas that cannot catch up (safely),
/// and reads a cluster the way an on-call runbook does, through Patroni's REST API.
#[derive(Debug, Parser)]
#[command(
    name = "pgpatrol",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Colour in tables and logs: auto (on a terminal, unless NO_COLOR is set), always, never.
    /// JSON, YAML and patronictl-json never carry colour.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

// Each command's help is the doc comment of its Args struct (first line: the summary;
// the rest: `--help` and the man page). A doc comment on a variant here would replace it.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(visible_alias = "status")]
    List(list::ListArgs),
    Sli(sli::SliArgs),
    Doctor(doctor::DoctorArgs),
    Heal(heal::HealArgs),
    Reinit(reinit::ReinitArgs),
    Switchover(ops::SwitchoverArgs),
    Failover(ops::FailoverArgs),
    Pause(ops::PauseArgs),
    /// Leave maintenance mode: Patroni acts on its own again.
    ///
    /// Before the PATCH each member's own GET /config is read: while one disagrees with the
    /// cluster read (Patroni's members do not agree on what the DCS holds), nothing is sent.
    ///
    /// Exit codes: 0 resumed (or was not paused); 1 stopped before sending (members
    /// disagree), unknown (Patroni could not confirm its write: HTTP 409), or not every
    /// member saw it (--wait); 2 error.
    Resume(ops::PauseArgs),
    Restart(ops::RestartArgs),
    Flush(ops::FlushArgs),
    Reload(ops::ReloadArgs),
    EditConfig(ops::EditConfigArgs),
    /// Replication slots on the leader: `slot drop NAME` (guarded).
    #[command(subcommand)]
    Slot(standby::SlotCommand),
    /// Standby clusters: `standby promote`, `standby demote --source-host H --source-port P`.
    #[command(subcommand)]
    Standby(standby::StandbyCommand),
    Watch(watch::WatchArgs),
    /// SLO tooling: Prometheus rules for the lag SLOs of a watch config.
    #[command(subcommand)]
    Slo(slo::SloCommand),
    Topology(topology::TopologyArgs),
    History(history::HistoryArgs),
    ShowConfig(show_config::ShowConfigArgs),
    Remove(remove::RemoveArgs),
    /// Scale the cluster: `member add` (followed until it streams), `member remove` (guarded).
    #[command(subcommand)]
    Member(member::MemberCommand),
    Report(report::ReportArgs),
    Events(events::EventsArgs),
    /// Run a real local Patroni cluster (PostgreSQL + etcd + Patroni on loopback).
    #[command(subcommand)]
    Lab(lab::LabCommand),
    Supervise(supervise::SuperviseArgs),
    Completions(completions::CompletionsArgs),
    Man(man::ManArgs),
}

/// What a command found, mapped onto the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0: all is well.
    Ok,
    /// 1: the command ran and found a problem (a breach, unknown lag, a refused plan).
    Problem,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::Problem => ExitCode::from(1),
        }
    }
}

/// Parses arguments, runs the command, prints an error as one line, returns the exit code.
pub fn main() -> ExitCode {
    let Cli { command, color } = Cli::parse();
    // supervise is an init: synchronous, single-threaded, no runtime (crate::supervise).
    let cli = match command {
        Command::Supervise(args) => {
            return match args.run() {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
                Err(e) => fail(e),
            }
        }
        command => Cli { command, color },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(outcome) => outcome.into(),
        Err(e) => fail(e),
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let color = cli.color;
    // What a command prints goes here (lab still prints for itself). The handle, not its
    // lock: a command awaits between lines, and every line is written whole.
    let out = &mut std::io::stdout();
    match cli.command {
        Command::List(args) => args.run(color, out).await,
        Command::Sli(args) => args.run(out).await,
        Command::Doctor(args) => args.run(color, out).await,
        Command::Heal(args) => args.run(out).await,
        Command::Reinit(args) => args.run(out).await,
        Command::Switchover(args) => args.run(color, out).await,
        Command::Failover(args) => args.run(color, out).await,
        Command::Pause(args) => args.run(true, color, out).await,
        Command::Resume(args) => args.run(false, color, out).await,
        Command::Restart(args) => args.run(color, out).await,
        Command::Flush(args) => args.run(color, out).await,
        Command::Reload(args) => args.run(out).await,
        Command::EditConfig(args) => args.run(out).await,
        Command::Slot(standby::SlotCommand::Drop(args)) => args.run(out).await,
        Command::Standby(standby::StandbyCommand::Promote(args)) => args.run(color, out).await,
        Command::Standby(standby::StandbyCommand::Demote(args)) => args.run(color, out).await,
        Command::Topology(args) => args.run(color, out).await,
        Command::Watch(args) => args.run(color).await,
        Command::Slo(cmd) => cmd.run(out).await,
        Command::History(args) => args.run(color, out).await,
        Command::ShowConfig(args) => args.run(out).await,
        Command::Remove(args) => args.run(out).await,
        Command::Events(args) => args.run(out).await,
        Command::Member(member::MemberCommand::Add(args)) => args.run(out).await,
        Command::Member(member::MemberCommand::Remove(args)) => args.run(out).await,
        Command::Report(args) => args.run(out).await,
        Command::Lab(cmd) => cmd.run().await,
        Command::Supervise(_) => anyhow::bail!("supervise runs before the async runtime starts"),
        Command::Completions(args) => args.run(out),
        Command::Man(args) => args.run(out),
    }
}

fn fail(e: anyhow::Error) -> ExitCode {
    // A closed pipe (`pgpatrol list | head -1`) is not an error.
    if e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                c.downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            })
            == Some(std::io::ErrorKind::BrokenPipe)
    }) {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {}", one_line(&format!("{e:#}")));
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
