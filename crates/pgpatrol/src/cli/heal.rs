//! `pgpatrol heal`: the taskset of seed 000, done safely. Reads the cluster, decides a plan
//! behind the guardrails (docs/SAFETY.md), re-reads and re-decides just before each action,
//! reinitializes replicas that cannot catch up one at a time (by default), waits until each
//! streams again, and reports before and after.

use std::time::{Duration, SystemTime};

use clap::{Args, ValueEnum};

use pgpatrol_core::plan::Policy;
use pgpatrol_core::policy::decide;
use pgpatrol_core::{ByteSize, Cluster, LagKind};

use super::common::ClusterArgs;
use super::confirm;
use super::progress::Spinner;
use super::sli::LagArg;
use super::Outcome;
use crate::executor::runner::{self, ConfirmedPlan, NoLock, RunOptions};
use crate::executor::{self, ReinitOptions, ReinitResult};
use crate::output::report::{self, HealReport};
use crate::source::rest::{Detail, RestSource};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Markdown, for people and tickets.
    Md,
    /// JSON with the same facts.
    Json,
}

/// Reinitialize replicas whose lag is at or above the tolerance, behind guardrails, and report.
///
/// Exit codes: 0 nothing was needed or everything healed; 1 something stayed unhealthy or a
/// guardrail refused; 2 error.
#[derive(Debug, Args)]
pub struct HealArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Lag at or above which a replica is reinitialized: a bare number is MB (as in the
    /// seed's LAG_TOLERANCE=5), or 512kB, 5MB, 1GB.
    #[arg(long, env = "LAG_TOLERANCE", default_value = "5")]
    pub tolerance: ByteSize,

    /// Which lag the tolerance applies to.
    #[arg(long, value_enum, default_value = "replay")]
    pub lag: LagArg,

    /// Print the exact plan and do nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// At most this many reinitializations at once, counting ones already in progress.
    #[arg(long, default_value_t = 1)]
    pub max_concurrent: usize,

    /// Keep at least this many healthy replicas untouched (not lagging, not being rebuilt).
    #[arg(long, default_value_t = 1)]
    pub min_healthy: usize,

    /// Clone from the leader, not from a replica tagged `clonefrom` (Patroni 4.1+; a member
    /// on an older Patroni is refused, since it would ignore the request).
    #[arg(long)]
    pub from_leader: bool,

    /// Give up waiting for one member to stream again after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Do not ask before acting (on a terminal, heal asks; elsewhere it does not).
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Append one JSON line per request sent (see `pgpatrol switchover --help`).
    #[arg(long, env = "PGPATROL_AUDIT_LOG")]
    pub audit_log: Option<std::path::PathBuf>,

    /// Report format, printed to stdout.
    #[arg(long, value_enum, default_value = "md")]
    pub report: ReportFormat,

    /// Runbook link for the report.
    #[arg(long, env = "DOC_LINK")]
    pub doc_link: Option<String>,
}

fn now_text() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Replicas at or above the tolerance, with unknown lag, or not replicating (e.g. still
/// `creating replica` in the DCS view).
fn unhealthy(c: &Cluster, policy: &Policy) -> Vec<String> {
    c.replicas()
        .filter(|m| !m.is_caught_up(policy.lag, policy.tolerance))
        .map(|m| m.name.clone())
        .collect()
}

impl HealArgs {
    pub fn policy(&self) -> Policy {
        Policy {
            tolerance: self.tolerance.0,
            lag: match self.lag {
                LagArg::Replay => LagKind::Replay,
                LagArg::Receive => LagKind::Receive,
            },
            max_concurrent: self.max_concurrent.max(1),
            min_healthy: self.min_healthy,
            ..Policy::default()
        }
    }

    pub async fn run(self) -> anyhow::Result<Outcome> {
        let source = self.cluster.source().await?;
        let policy = self.policy();
        let started = now_text();
        let before = source.snapshot(Detail::Full).await?.cluster;
        let plan = decide(&before, &policy, &[], SystemTime::now());
        let mut report = HealReport {
            cluster: before.scope.clone(),
            started,
            finished: String::new(),
            dry_run: self.dry_run,
            tolerance_bytes: policy.tolerance,
            lag: policy.lag,
            before: before.clone(),
            plan: plan.clone(),
            outcomes: Vec::new(),
            stopped: None,
            after: None,
            still_unhealthy: Vec::new(),
            doc_link: self.doc_link.clone(),
        };

        if self.dry_run || plan.actions.is_empty() {
            report.finished = now_text();
            report.still_unhealthy = unhealthy(&before, &policy);
            self.print(&report)?;
            let problem =
                !plan.actions.is_empty() || plan.refused() || !report.still_unhealthy.is_empty();
            return Ok(if problem {
                Outcome::Problem
            } else {
                Outcome::Ok
            });
        }

        if !self.yes && confirm::interactive() {
            let mut text = Vec::new();
            report::plan_text(&mut text, &plan)?;
            eprint!("{}", String::from_utf8_lossy(&text));
            if !confirm::ask(
                "Reinitialize these replicas? Their data directories are wiped and re-cloned.",
            )? {
                anyhow::bail!("not confirmed: nothing was done");
            }
        }

        let audit = crate::ops::audit::Audit::open(
            self.audit_log.as_deref(),
            before.scope.as_deref().unwrap_or("cluster"),
        )?;
        self.execute(&source, &policy, &before, &plan, &mut report, audit)
            .await;
        // Expected caught up afterwards: the members healed, and the replicas that already
        // were before (a rebuild's checkpoint and WAL switch show on them for a loop or two).
        let expected: Vec<&str> = report
            .outcomes
            .iter()
            .filter(|o| o.result == ReinitResult::Healed)
            .map(|o| o.member.as_str())
            .chain(
                before
                    .replicas()
                    .filter(|m| m.is_caught_up(policy.lag, policy.tolerance))
                    .map(|m| m.name.as_str()),
            )
            .collect();
        let after = settled_snapshot(&source, &policy, &expected).await;
        report.still_unhealthy = after
            .as_ref()
            .map(|a| unhealthy(a, &policy))
            .unwrap_or_default();
        report.after = after;
        report.finished = now_text();
        self.print(&report)?;
        let all_healed = report
            .outcomes
            .iter()
            .all(|o| o.result == ReinitResult::Healed);
        let ok = report.stopped.is_none()
            && all_healed
            && report.still_unhealthy.is_empty()
            && report.after.is_some();
        Ok(if ok { Outcome::Ok } else { Outcome::Problem })
    }

    /// Runs the confirmed plan through the plan runner (it re-reads and decides again
    /// before each action, acts only on members the confirmed plan named, and stops if the
    /// leader changed).
    async fn execute(
        &self,
        source: &RestSource,
        policy: &Policy,
        before: &Cluster,
        plan: &pgpatrol_core::plan::Plan,
        report: &mut HealReport,
        audit: crate::ops::audit::Audit,
    ) {
        let spinner = Spinner::new();
        let exec = executor::RestReinit {
            source,
            opts: ReinitOptions {
                tolerance: policy.tolerance,
                lag: policy.lag,
                timeout: self.timeout,
                poll: Duration::from_millis(250),
                force: false,
                wait: true,
                from_leader: self.from_leader,
                caller: "heal",
                audit: std::sync::Arc::new(audit),
            },
            progress: &spinner,
        };
        let history = std::sync::Mutex::new(Vec::new());
        let run = runner::run_plan(
            source,
            &exec,
            policy,
            &ConfirmedPlan::of(plan, before),
            &history,
            &NoLock,
            &RunOptions {
                tick: Duration::from_secs(1),
                slot_wait: self.timeout,
            },
        )
        .await;
        spinner.finish();
        report.outcomes = run.outcomes;
        report.stopped = run.stopped.map(|s| s.detail);
    }

    fn print(&self, report: &HealReport) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        match self.report {
            ReportFormat::Md => report::markdown(&mut out, report)?,
            ReportFormat::Json => {
                serde_json::to_writer_pretty(&mut out, report)?;
                std::io::Write::write_all(&mut out, b"\n")?;
            }
        }
        Ok(())
    }
}

/// The state after healing. `/cluster` pairs DCS keys that each refresh once per loop, and a
/// rebuild's checkpoint and WAL switch show on the other replicas for a loop or two: give it
/// up to 15 s to show the `expected` members caught up before reporting, so the report does
/// not show stale lag. What still lags then is reported as it is.
async fn settled_snapshot(
    source: &RestSource,
    policy: &Policy,
    expected: &[&str],
) -> Option<Cluster> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let snap = source.snapshot(Detail::Full).await.ok().map(|s| s.cluster);
        let settled = snap.as_ref().is_some_and(|c| {
            expected.iter().all(|name| {
                c.member(name)
                    .is_some_and(|m| m.is_caught_up(policy.lag, policy.tolerance))
            })
        });
        if settled || std::time::Instant::now() >= deadline {
            return snap;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use pgpatrol_core::fixtures::ClusterBuilder;
    use pgpatrol_core::State;

    use super::*;

    #[test]
    fn a_replica_still_rebuilding_is_unhealthy_whatever_its_lag_says() {
        // Patroni < 4.1: replay lag comes from the member's own /patroni and may read 0
        // while the DCS still lists it as "creating replica".
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .state(State::CreatingReplica)
            .replay_lag_bytes(0)
            .replica("pg2")
            .replay_lag_bytes(0)
            .replica("pg3")
            .replay_lag_mb(6)
            .build();
        let policy = Policy {
            tolerance: 5 * 1024 * 1024,
            ..Policy::default()
        };
        assert_eq!(unhealthy(&c, &policy), ["pg1", "pg3"]);
    }
}
