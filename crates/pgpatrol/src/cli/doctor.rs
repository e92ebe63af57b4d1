//! `pgpatrol doctor`: the runbook's checks in one command (see `crate::doctor`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::common::{write_structured, BackrestArgs, ClusterArgs, Format, PgArgs};
use super::Outcome;
use crate::doctor::{self, Observe, Report};
use crate::output::table;
use crate::output::term::{ColorChoice, Look};

/// Check a cluster the way the on-call runbook does: each check OK, WARN, CRIT or UNKNOWN,
/// with its evidence and the fix.
///
/// REST checks: the DCS answers; exactly one leader, cross-checked against each member's own
/// /patroni (two members saying primary is split brain); one timeline; replicas replicating;
/// lag against 50 MB / 100 MB; unknown lag; members stuck starting, stopping or creating a
/// replica over the observe window; maintenance mode; pending restarts; scheduled actions;
/// failovers in 24 h; a failover candidate; a synchronous standby when synchronous_mode is
/// on; one Patroni version; failsafe mode. Checks that need what was not given are listed as
/// skipped with what would enable them, and do not change the exit code.
///
/// PostgreSQL checks (with --pg-user, or the superuser of -c patroni.yml): lag in seconds
/// (the sender's replay_lag and the replica's last replayed transaction; 0 when caught up,
/// even on an idle leader), connections against max_connections minus the reserved slots,
/// WAL archiving failing, replication slots holding WAL (inactive, or wal_status
/// unreserved/lost), the size of pg_wal, and the data directory's disk when it is on this
/// host.
///
/// Backups (--pgbackrest-stanza): the real `pgbackrest info --output=json`: the stanza's
/// status, the age of the newest full/diff/incr backup, and the repository's newest WAL
/// against the leader's.
///
/// Thresholds default to the runbook's monitoring table; --checks FILE reads a `checks:`
/// section (the watch config's format).
///
/// Exit codes: 0 every check OK; 1 any WARN, CRIT or UNKNOWN; 2 error (nothing answered, bad
/// input).
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Watch for members stuck in a transitional state over this long (several readings).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub observe: Duration,

    /// A file whose `checks:` section sets the thresholds (a watch config works).
    #[arg(long, env = "PGPATROL_CHECKS")]
    pub checks: Option<PathBuf>,

    #[command(flatten)]
    pub pg: PgArgs,

    #[command(flatten)]
    pub backrest: BackrestArgs,

    /// Run the runbook's pre-maintenance checklist: all replicas healthy, lag below 10
    /// seconds, a recent backup, backup storage reachable (and the steps for a person).
    #[arg(long, conflicts_with = "post_maintenance")]
    pub pre_maintenance: bool,

    /// This is a standby cluster and URL its source: adds the `standby` check (replicating,
    /// not paused in recovery, lag against the source, a walsender for it on the source).
    /// With --observe, an archive-fed standby leader whose replay does not move over the
    /// window while the source is 32 MB or more ahead is reported as not replicating.
    #[arg(long, value_name = "URL")]
    pub source_url: Option<String>,

    /// Run the post-maintenance checklist: cluster status, every replica rejoined, lag back
    /// to normal, backups working (and the steps for a person).
    #[arg(long)]
    pub post_maintenance: bool,

    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub format: Format,
}

impl DoctorArgs {
    pub async fn run(
        self,
        color: ColorChoice,
        out: &mut impl std::io::Write,
    ) -> anyhow::Result<Outcome> {
        let report = self.report().await?;
        match (self.format, &report.checklist) {
            (Format::Table, Some(list)) => table::checklist(out, list, &Look::stdout(color))?,
            (Format::Table, None) => table::doctor(out, &report.checks, &Look::stdout(color))?,
            (f, _) => write_structured(out, f, &report)?,
        }
        Ok(if report.status.is_problem() {
            Outcome::Problem
        } else {
            Outcome::Ok
        })
    }

    /// Runs every check and returns the report (what `run` prints; `report` bundles it).
    pub async fn report(&self) -> anyhow::Result<Report> {
        let thresholds = match &self.checks {
            Some(p) => doctor::config::read(p).map_err(anyhow::Error::msg)?,
            None => Default::default(),
        };
        let source = self.cluster.source().await?;
        // With --source-url and --observe, a first read of the standby's lag: an archive-fed
        // standby leader whose replay did not move over the window is not replicating.
        let first_standby = match &self.source_url {
            Some(url) if !self.observe.is_zero() => {
                let snap = source.snapshot(crate::source::Detail::Lag).await?;
                Some((
                    crate::source::standby::standby_lag(&source, &snap.cluster, url).await?,
                    std::time::Instant::now(),
                ))
            }
            _ => None,
        };
        let samples = (self.observe.as_secs_f64().ceil() as usize + 1).clamp(2, 10);
        let evidence = doctor::rest_evidence(
            &source,
            Observe {
                window: self.observe,
                samples,
            },
        )
        .await?;
        let mut checks = pgpatrol_core::checks::rest_checks(&evidence, &thresholds);
        let mut walfile = None;
        match (self.pg.login(&self.cluster)?, evidence.samples.last()) {
            (Some(login), Some(cluster)) => {
                let pg = crate::source::pg::evidence(cluster, &login).await;
                walfile = crate::source::pg::leader_walfile(&pg);
                checks.extend(pgpatrol_core::checks::pg_checks(
                    &pg,
                    &evidence.permanent_slots,
                    &thresholds,
                ));
            }
            (Some(_), None) => checks.extend(pgpatrol_core::checks::pg_skipped(
                "the members' PostgreSQL addresses come from /cluster, which did not answer",
            )),
            (None, _) => checks.extend(pgpatrol_core::checks::pg_skipped(
                "give --pg-user and --pg-password-file (or -c patroni.yml with postgresql.authentication.superuser)",
            )),
        }
        match self.backrest.backrest() {
            Some(b) => {
                checks.extend(doctor::backup::checks(&b, walfile.as_deref(), &thresholds).await);
            }
            None => checks.push(pgpatrol_core::checks::Check::skipped(
                "backup",
                "give --pgbackrest-stanza (and --pgbackrest-config) to check backups",
            )),
        }
        if let (Some(url), Some(cluster)) = (&self.source_url, evidence.samples.last()) {
            let mut lag = crate::source::standby::standby_lag(&source, cluster, url).await?;
            if let Some((first, at)) = &first_standby {
                if lag.archive_stalled_since(first) {
                    lag.archive_stalled_seconds = Some(at.elapsed().as_secs());
                }
            }
            checks.push(pgpatrol_core::checks::standby_check(
                &lag.facts(),
                &thresholds,
            ));
        }
        let scope = evidence.samples.last().and_then(|c| c.scope.clone());
        let mut report = Report::new(scope, checks);
        let which = match (self.pre_maintenance, self.post_maintenance) {
            (true, _) => Some(pgpatrol_core::checks::Checklist::Pre),
            (_, true) => Some(pgpatrol_core::checks::Checklist::Post),
            _ => None,
        };
        if let Some(which) = which {
            let list = pgpatrol_core::checks::checklist(which, &report.checks, &thresholds);
            // The list decides the outcome: its items, not every check.
            report.status = list
                .iter()
                .map(|i| i.status)
                .filter(|s| *s != pgpatrol_core::checks::Status::Skipped)
                .max()
                .unwrap_or(pgpatrol_core::checks::Status::Ok);
            report.checklist = Some(list);
        }
        Ok(report)
    }
}
