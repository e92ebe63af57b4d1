//! `pgpatrol reinit MEMBER`: one reinitialization by hand, through the same executor as heal.
//! Allowed on a paused cluster (as patronictl allows); never the leader; never `force` over
//! a running reinit unless `--force` is given and confirmed.

use std::time::Duration;

use clap::Args;

use pgpatrol_core::{ByteSize, LagKind};

use super::common::ClusterArgs;
use super::confirm;
use super::progress::Spinner;
use super::Outcome;
use crate::executor::{self, ReinitOptions, ReinitResult};
use crate::source::rest::Detail;

/// Reinitialize one replica: wipe its data directory and re-clone it from the leader.
///
/// Exit codes: 0 started (or healed, with --wait); 1 refused, timed out, or the leader was
/// lost while waiting; 2 error.
#[derive(Debug, Args)]
pub struct ReinitArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The member to reinitialize.
    pub member: String,

    /// Wait until it streams again with replay lag below --tolerance.
    #[arg(long)]
    pub wait: bool,

    /// With --wait: lag below which the member counts as caught up (bare number = MB).
    #[arg(long, env = "LAG_TOLERANCE", default_value = "5")]
    pub tolerance: ByteSize,

    /// With --wait: give up after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Cancel whatever Patroni is doing on the member (a running basebackup restarts from
    /// scratch). Asks for confirmation; needs --yes when not on a terminal.
    #[arg(long)]
    pub force: bool,

    /// Clone from the leader, not from a replica tagged `clonefrom` (Patroni 4.1+; on an
    /// older Patroni this is refused, since it would ignore the request).
    #[arg(long)]
    pub from_leader: bool,

    /// Do not ask for confirmation (needed off a terminal: without it nothing is sent).
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Append one JSON line per request sent (see `pgpatrol switchover --help`).
    #[arg(long, env = "PGPATROL_AUDIT_LOG")]
    pub audit_log: Option<std::path::PathBuf>,
}

impl ReinitArgs {
    pub async fn run(self) -> anyhow::Result<Outcome> {
        let source = self.cluster.source().await?;
        let cluster = source.snapshot(Detail::Full).await?.cluster;
        let Some(member) = cluster.member(&self.member) else {
            let names: Vec<&str> = cluster.members.iter().map(|m| m.name.as_str()).collect();
            anyhow::bail!(
                "no member named {:?} in the cluster (members: {})",
                self.member,
                names.join(", ")
            );
        };
        if member.role.is_leader() {
            eprintln!(
                "pgpatrol: refused: {} is the {}; pgpatrol never reinitializes the leader",
                member.name,
                member.role.title().to_lowercase()
            );
            return Ok(Outcome::Problem);
        }
        let api = member.api_url.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no api_url in /cluster: cannot reach it",
                member.name
            )
        })?;
        if self.force {
            if !self.yes && !confirm::interactive() {
                anyhow::bail!("--force cancels what Patroni is doing on {}: add --yes to confirm when not on a terminal", member.name);
            }
            if !self.yes
                && !confirm::ask(&format!(
                    "Force a reinitialize of {}? It cancels any running reinit or basebackup.",
                    member.name
                ))?
            {
                anyhow::bail!("not confirmed: nothing was done");
            }
        } else if !self.yes && !confirm::interactive() {
            anyhow::bail!(
                "not on a terminal: add --yes to reinitialize {} (its data directory is wiped)",
                member.name
            );
        } else if !self.yes
            && !confirm::ask(&format!(
                "Reinitialize {}? Its data directory is wiped and re-cloned.",
                member.name
            ))?
        {
            anyhow::bail!("not confirmed: nothing was done");
        }
        let opts = ReinitOptions {
            tolerance: self.tolerance.0,
            lag: LagKind::Replay,
            timeout: self.timeout,
            poll: Duration::from_millis(250),
            force: self.force,
            wait: self.wait,
            from_leader: self.from_leader,
            caller: "reinit",
            audit: std::sync::Arc::new(crate::ops::audit::Audit::open(
                self.audit_log.as_deref(),
                cluster.scope.as_deref().unwrap_or("cluster"),
            )?),
        };
        let leader_api = cluster.leader().and_then(|l| l.api_url.clone());
        let spinner = Spinner::new();
        let o = executor::reinitialize(
            &source,
            &member.name,
            &api,
            leader_api.as_deref(),
            &opts,
            &spinner,
        )
        .await;
        spinner.finish();
        let joined = if o.joined_running {
            " (joined a reinitialization already running)"
        } else {
            ""
        };
        match o.result {
            ReinitResult::Healed | ReinitResult::Started => {
                println!(
                    "{}: {} in {:.1} s{joined}",
                    o.member, o.detail, o.duration_secs
                );
                Ok(Outcome::Ok)
            }
            ReinitResult::Failed => anyhow::bail!("{}: {}", o.member, o.detail),
            _ => {
                eprintln!("pgpatrol: {}: {}{joined}", o.member, o.detail);
                Ok(Outcome::Problem)
            }
        }
    }
}
