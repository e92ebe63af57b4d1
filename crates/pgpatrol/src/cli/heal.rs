//! `pgpatrol heal`: the taskset of seed 000, done safely. Reads the cluster, decides a plan
//! behind the guardrails (docs/SAFETY.md), re-reads and re-decides just before each action,
//! reinitializes replicas that cannot catch up one at a time (by default), waits until each
//! streams again, and reports before and after.

use std::time::{Duration, SystemTime};

use clap::{Args, ValueEnum};

use pgpatrol_core::heal::{decide_with, DecideBy, Evidence, Policy, TrendPolicy};
use pgpatrol_core::{ByteSize, Cluster, LagKind};

use super::common::{ClusterArgs, PgArgs};
use super::confirm;
use super::progress::Spinner;
use super::sli::LagArg;
use super::Outcome;
use crate::executor::runner::{self, ConfirmedPlan, RunOptions};
use crate::executor::{self, ReinitOptions, ReinitResult};
use crate::output::report::{self, HealReport};
use crate::progress::Progress as _;
use crate::source::{ClusterSource, Detail};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ByArg {
    /// Every replica at or above the tolerance (behind the guardrails).
    Threshold,
    /// Only those that cannot catch up sooner by themselves: lag not shrinking, catch-up
    /// slower than --factor rebuilds, at the --ceiling, or WAL gone.
    Trend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Markdown, for people and tickets.
    Md,
    /// JSON with the same facts.
    Json,
}

/// Reinitialize replicas whose lag is at or above the tolerance, behind guardrails, and report.
///
/// With --by trend, heal samples the lag for --observe first and rebuilds only a replica
/// that cannot catch up sooner by itself: its lag is not shrinking (robust Theil–Sen slope
/// over the samples), its catch-up ETA exceeds --factor times the rebuild estimate (the
/// data size at --throughput, with a PostgreSQL login), its lag is at --ceiling, or its WAL
/// is gone from the leader (slot lost, or the segment it needs removed: rebuilt at once).
/// Every other one is left alone with the numbers; too few samples is a skip, never a guess.
/// Every guardrail applies as in threshold mode.
///
/// A replica kept behind on purpose is never rebuilt: its replay paused, a
/// recovery_min_apply_delay (read on the member with a PostgreSQL login, else from the
/// dynamic configuration), or the Patroni tag noheal: true. What cannot be read leaves it
/// alone.
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

    /// Do not ask before acting. On a terminal heal asks; elsewhere it acts only with
    /// --yes (a cron job passes it): a script that forgot it rebuilds nothing (exit 2).
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Append one JSON line per request sent (see `pgpatrol switchover --help`).
    #[arg(long, env = "PGPATROL_AUDIT_LOG")]
    pub audit_log: Option<std::path::PathBuf>,

    /// Do not take the heal lease. By default heal takes the same etcd lease as watch's
    /// auto-heal (`/pgpatrol/heal/SCOPE`) when the cluster's etcd is known (the etcd3
    /// section of -c patroni.yml, or --dcs), so a person's heal and the daemon's never run
    /// at once; refused while another holds it. The report says which.
    #[arg(long)]
    pub no_lease: bool,

    /// Take the heal lease as this Kubernetes Lease (the `heal.lease: {kubernetes: NAME}` of
    /// the watcher of this cluster) in the workload's namespace, instead of the etcd one:
    /// refused while a watcher holds it. RBAC: get, create, update on leases.
    #[arg(long, value_name = "NAME", conflicts_with = "no_lease")]
    pub k8s_lease: Option<String>,

    /// Report format, printed to stdout.
    #[arg(long, value_enum, default_value = "md")]
    pub report: ReportFormat,

    /// Runbook link for the report.
    #[arg(long, env = "DOC_LINK")]
    pub doc_link: Option<String>,

    /// How a replica beyond the tolerance is judged: `threshold` rebuilds it; `trend`
    /// samples the lag for --observe first and rebuilds it only when it cannot catch up by
    /// itself sooner than a rebuild (lag not shrinking, ETA above --factor rebuild
    /// estimates, lag at --ceiling, or its WAL gone from the leader).
    #[arg(
        long,
        value_enum,
        default_value = "threshold",
        help_heading = "By trend"
    )]
    pub by: ByArg,

    /// With --by trend: sample the lag this long before deciding [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration, help_heading = "By trend")]
    pub observe: Option<Duration>,

    /// With --by trend: rebuild a catching-up replica when its ETA exceeds this many
    /// rebuild estimates [default: 2].
    #[arg(long, help_heading = "By trend")]
    pub factor: Option<f64>,

    /// With --by trend: rebuild at or above this lag whatever the trend [default: 16GB].
    #[arg(long, help_heading = "By trend")]
    pub ceiling: Option<ByteSize>,

    /// With --by trend: bytes per second a rebuild copies, for the estimate from the data
    /// size (read with a PostgreSQL login) when no earlier heal says better [default: 50MB].
    #[arg(long, help_heading = "By trend")]
    pub throughput: Option<ByteSize>,

    /// With --by trend, a PostgreSQL login finds replicas whose WAL is gone (the leader's
    /// slot for them lost, or the segment they need removed: rebuilt at once) and the data
    /// size for the rebuild estimate.
    #[command(flatten)]
    pub pg: PgArgs,
}

/// How often `--observe` samples: about 20 samples over the window, 0.2 s to 2 s apart.
fn sample_every(observe: Duration) -> Duration {
    (observe / 20).clamp(Duration::from_millis(200), Duration::from_secs(2))
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
            by: match self.by {
                ByArg::Threshold => DecideBy::Threshold,
                ByArg::Trend => DecideBy::Trend,
            },
            trend: {
                let d = TrendPolicy::default();
                TrendPolicy {
                    // Every sample of the observation counts, and the runner's fresh reads.
                    window: self.observe() + sample_every(self.observe()) * 2,
                    factor: self.factor.unwrap_or(d.factor),
                    ceiling: self.ceiling.map_or(d.ceiling, |c| c.0),
                    throughput: self.throughput.map_or(d.throughput, |t| t.0),
                    ..d
                }
            },
            ..Policy::default()
        }
    }

    fn observe(&self) -> Duration {
        self.observe.unwrap_or(Duration::from_secs(30))
    }

    /// Bad combinations, in one line (exit 2).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.by != ByArg::Trend {
            if self.observe.is_some() {
                anyhow::bail!("--observe samples the lag trend: it needs --by trend");
            }
            let given = [
                ("--factor", self.factor.is_some()),
                ("--ceiling", self.ceiling.is_some()),
                ("--throughput", self.throughput.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
                anyhow::bail!("{flag} is a trend setting: it needs --by trend");
            }
            return Ok(());
        }
        if let Some(f) = self.factor.filter(|f| !(f.is_finite() && *f > 0.0)) {
            anyhow::bail!("--factor {f} must be a number above 0");
        }
        if self.throughput.is_some_and(|t| t.0 == 0) {
            anyhow::bail!("--throughput must be above 0");
        }
        let observe = self.observe();
        let samples = observe.as_nanos() / sample_every(observe).as_nanos() + 1;
        let need = TrendPolicy::default().min_samples as u128;
        if samples < need {
            anyhow::bail!(
                "--observe {} gives {samples} samples; a trend needs {need}: observe at least {}",
                humantime::format_duration(observe),
                humantime::format_duration(sample_every(Duration::ZERO) * (need as u32 - 1))
            );
        }
        Ok(())
    }

    /// Samples the lag for --observe, with progress, and gathers the PostgreSQL evidence
    /// (WAL gone, data size) when a login is given. Returns the last reading.
    async fn observe_trend(
        &self,
        source: &ClusterSource,
        policy: &Policy,
        evidence: &mut Evidence,
    ) -> anyhow::Result<Cluster> {
        let observe = self.observe();
        let every = sample_every(observe);
        let spinner = Spinner::new();
        let started = std::time::Instant::now();
        let mut last = None;
        let mut n = 0usize;
        loop {
            let tick = std::time::Instant::now();
            match source.snapshot(Detail::Full).await {
                Ok(s) => {
                    evidence.record(
                        &s.cluster,
                        policy.lag,
                        SystemTime::now(),
                        policy.trend.window,
                    );
                    n += 1;
                    spinner.update(
                        "trend",
                        &format!(
                            "observing the lag: {n} samples in {:.0}s of {}",
                            started.elapsed().as_secs_f64(),
                            humantime::format_duration(observe)
                        ),
                    );
                    last = Some(s.cluster);
                }
                // One failed reading is one missing sample; the decision needs the last.
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "heal: a lag sample failed"),
            }
            if started.elapsed() >= observe {
                break;
            }
            tokio::time::sleep(every.saturating_sub(tick.elapsed())).await;
        }
        spinner.finish();
        let cluster = match last {
            Some(c) => c,
            None => source.snapshot(Detail::Full).await?.cluster,
        };
        if let Some(login) = self.pg.login(&self.cluster)? {
            let pg = crate::source::pg::evidence_with(
                &cluster,
                &login,
                crate::source::pg::Queries::Trend,
            )
            .await;
            for m in &pg {
                if let Err(e) = &m.facts {
                    tracing::warn!(member = %m.name, error = %e, "heal: no PostgreSQL evidence for the trend");
                }
            }
            evidence.wal_gone = pgpatrol_core::heal::wal_gone(&pg);
            evidence.data_bytes = pgpatrol_core::heal::data_bytes(&pg);
        }
        Ok(cluster)
    }

    pub async fn run(self, out: &mut impl std::io::Write) -> anyhow::Result<Outcome> {
        self.check()?;
        let source = self.cluster.source().await?;
        let policy = self.policy();
        let started = now_text();
        let mut evidence = Evidence::default();
        // What keeps a lagging replica behind on purpose is read before every decision,
        // here and in the runner (a replay paused, a delay, a noheal tag).
        let reader = executor::HealReader {
            source: &source,
            lag: policy.lag,
            tolerance: policy.tolerance,
            login: self.pg.login(&self.cluster)?,
        };
        let mut before = match policy.by {
            DecideBy::Threshold => source.snapshot(Detail::Full).await?.cluster,
            DecideBy::Trend => self.observe_trend(&source, &policy, &mut evidence).await?,
        };
        reader.kept(&mut before).await;
        let plan = decide_with(&before, &policy, &[], &evidence, SystemTime::now());
        let mut report = HealReport {
            cluster: before.scope.clone(),
            started,
            finished: String::new(),
            dry_run: self.dry_run,
            tolerance_bytes: policy.tolerance,
            lag: policy.lag,
            by: policy.by,
            before: before.clone(),
            plan: plan.clone(),
            outcomes: Vec::new(),
            stopped: None,
            after: None,
            still_unhealthy: Vec::new(),
            doc_link: self.doc_link.clone(),
            lease: None,
        };

        if self.dry_run || plan.actions.is_empty() {
            report.finished = now_text();
            report.still_unhealthy = unhealthy(&before, &policy);
            self.print(out, &report)?;
            let problem =
                !plan.actions.is_empty() || plan.refused() || !report.still_unhealthy.is_empty();
            return Ok(if problem {
                Outcome::Problem
            } else {
                Outcome::Ok
            });
        }

        if !self.yes && !confirm::interactive() {
            // A script that forgot --yes rebuilds nothing (guardrail 10).
            anyhow::bail!(
                "not on a terminal: add --yes to reinitialize (or --dry-run to see the plan only)"
            );
        }
        if !self.yes {
            let mut text = Vec::new();
            report::plan_text(&mut text, &plan)?;
            eprint!("{}", String::from_utf8_lossy(&text));
            if !confirm::ask(
                "Reinitialize these replicas? Their data directories are wiped and re-cloned.",
            )? {
                anyhow::bail!("not confirmed: nothing was done");
            }
        }

        let audit = crate::audit::Audit::open(
            self.audit_log.as_deref(),
            before.scope.as_deref().unwrap_or("cluster"),
        )?;
        // One healer at a time, a person's or a daemon's: the same lease as auto-heal.
        let scope = before
            .scope
            .clone()
            .unwrap_or_else(|| "cluster".to_string());
        let held = match self.lease(&scope).await? {
            LeaseTaken::Held(h, said) => {
                report.lease = Some(said);
                Some(h)
            }
            LeaseTaken::NotUsed(said) => {
                report.lease = Some(said);
                None
            }
            LeaseTaken::Refused(why) => {
                report.lease = Some(why.clone());
                report.stopped = Some(why);
                report.finished = now_text();
                report.still_unhealthy = unhealthy(&before, &policy);
                self.print(out, &report)?;
                return Ok(Outcome::Problem);
            }
        };
        self.execute(
            &reader,
            &policy,
            &before,
            &plan,
            evidence,
            &mut report,
            audit,
            held.as_ref(),
        )
        .await;
        if let Some(h) = held {
            h.release().await;
        }
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
        self.print(out, &report)?;
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
    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        reader: &executor::HealReader<'_>,
        policy: &Policy,
        before: &Cluster,
        plan: &pgpatrol_core::heal::Plan,
        evidence: Evidence,
        report: &mut HealReport,
        audit: crate::audit::Audit,
        held: Option<&crate::watch::lease::Held>,
    ) {
        let spinner = Spinner::new();
        let source = reader.source;
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
        let evidence = std::sync::Mutex::new(evidence);
        let opts = RunOptions {
            on_record: runner::OnRecord::default(),
            tick: Duration::from_secs(1),
            slot_wait: self.timeout,
        };
        let confirmed = ConfirmedPlan::of(plan, before);
        let run = runner::run_plan(
            reader, &exec, policy, &confirmed, &history, &evidence, &held, &opts,
        )
        .await;
        spinner.finish();
        report.outcomes = run.outcomes;
        report.stopped = run.stopped.map(|s| s.detail);
    }

    /// Takes the heal lease of `scope` when the cluster's etcd is known and --no-lease is
    /// not given. Fails closed: an etcd that cannot be asked refuses, as one that says the
    /// lease is held does.
    async fn lease(&self, scope: &str) -> anyhow::Result<LeaseTaken> {
        if self.no_lease {
            return Ok(LeaseTaken::NotUsed(
                "not taken (--no-lease): nothing keeps a watcher's auto-heal from acting at the same time".into(),
            ));
        }
        let target = self.cluster.target()?;
        let (store, what, taken) = if let Some(name) = &self.k8s_lease {
            let k8s = target.k8s.clone().unwrap_or_default();
            let ns = k8s
                .namespace
                .as_deref()
                .map_or("the context's namespace".to_string(), |n| {
                    format!("namespace {n}")
                });
            (
                crate::watch::lease::LeaseStore::Kubernetes {
                    target: k8s,
                    name: name.clone(),
                },
                format!("the heal Lease {name}"),
                format!("taken: Lease {name} in {ns}"),
            )
        } else {
            let Some(opts) = target.etcd_options()? else {
                return Ok(LeaseTaken::NotUsed(
                    "none: the cluster's etcd is not known (give -c patroni.yml or --dcs to share watch's lease, or --k8s-lease NAME for a watcher's Kubernetes Lease)".into(),
                ));
            };
            let shown = opts.endpoints.join(",");
            (
                crate::watch::lease::LeaseStore::Etcd {
                    etcd: crate::source::dcs::etcd::Etcd::new(&opts)?,
                    shown: shown.clone(),
                },
                format!("the heal lease /pgpatrol/heal/{scope}"),
                format!("taken: /pgpatrol/heal/{scope} in etcd {shown}"),
            )
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let owner = format!("{}:{} (pgpatrol heal)", host.trim(), std::process::id());
        Ok(match store.try_acquire(scope, &owner).await {
            Ok(Some(h)) => LeaseTaken::Held(h, taken),
            Ok(None) => {
                let holder = store
                    .holder(scope)
                    .await
                    .unwrap_or_else(|| "another healer".into());
                LeaseTaken::Refused(format!(
                    "refused: {what} is held by {holder} (a watcher's auto-heal or another heal is acting): nothing was done; try again when it is done, or --no-lease if you know no other healer runs"
                ))
            }
            Err(e) => LeaseTaken::Refused(format!(
                "refused: cannot take {what} ({e}): nothing was done; --no-lease to heal without it"
            )),
        })
    }

    fn print(&self, out: &mut impl std::io::Write, report: &HealReport) -> anyhow::Result<()> {
        match self.report {
            ReportFormat::Md => report::markdown(out, report)?,
            ReportFormat::Json => {
                serde_json::to_writer_pretty(&mut *out, report)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }
}

/// What became of the heal lease.
enum LeaseTaken {
    Held(crate::watch::lease::Held, String),
    NotUsed(String),
    Refused(String),
}

/// The state after healing. `/cluster` pairs DCS keys that each refresh once per loop, and a
/// rebuild's checkpoint and WAL switch show on the other replicas for a loop or two: give it
/// up to 15 s to show the `expected` members caught up before reporting, so the report does
/// not show stale lag. What still lags then is reported as it is.
async fn settled_snapshot(
    source: &ClusterSource,
    policy: &Policy,
    expected: &[&str],
) -> Option<Cluster> {
    let mut poll = crate::poll::Poll::new(Duration::from_secs(15), Duration::from_millis(500));
    let mut snap = None;
    while poll.next().await {
        snap = source.snapshot(Detail::Full).await.ok().map(|s| s.cluster);
        let settled = snap.as_ref().is_some_and(|c| {
            expected.iter().all(|name| {
                c.member(name)
                    .is_some_and(|m| m.is_caught_up(policy.lag, policy.tolerance))
            })
        });
        if settled {
            break;
        }
    }
    snap
}

#[cfg(test)]
mod tests {
    use pgpatrol_core::fixtures::ClusterBuilder;
    use pgpatrol_core::State;

    use super::*;

    fn args(extra: &[&str]) -> HealArgs {
        use clap::Parser;
        let mut argv = vec!["pgpatrol", "heal", "--url", "http://127.0.0.1:1"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(&argv) {
            Ok(crate::cli::Cli {
                command: crate::cli::Command::Heal(h),
                ..
            }) => h,
            other => panic!("{argv:?}: {other:?}"),
        }
    }

    #[test]
    fn by_trend_flags_and_their_bad_combinations() {
        let h = args(&["--by", "trend", "--observe", "10s", "--factor", "3"]);
        h.check().unwrap();
        let p = h.policy();
        assert_eq!(p.by, DecideBy::Trend);
        assert_eq!(p.trend.factor, 3.0);
        // Every sample of the observation is in the window.
        assert!(p.trend.window > Duration::from_secs(10));
        assert_eq!(args(&[]).policy().by, DecideBy::Threshold);
        let e = args(&["--observe", "30s"]).check().unwrap_err().to_string();
        assert_eq!(e, "--observe samples the lag trend: it needs --by trend");
        let e = args(&["--ceiling", "1GB"]).check().unwrap_err().to_string();
        assert_eq!(e, "--ceiling is a trend setting: it needs --by trend");
        let d = args(&["--by", "trend"]).policy().trend;
        assert_eq!(
            (d.factor, d.ceiling, d.throughput),
            (2.0, 16 << 30, 50 << 20),
            "the documented defaults"
        );
        let e = args(&["--by", "trend", "--observe", "100ms"])
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("a trend needs 5") && !e.contains('\n'), "{e}");
        let e = args(&["--by", "trend", "--factor", "0"])
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--factor"), "{e}");
        // Bad durations and modes are clap's one-line errors (exit 2).
        use clap::Parser;
        for bad in [
            vec!["pgpatrol", "heal", "--by", "trend", "--observe", "soon"],
            vec!["pgpatrol", "heal", "--by", "slope"],
        ] {
            assert!(crate::cli::Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }

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
