//! The plan runner: the one loop that carries out a heal plan, for `pgpatrol heal` and for
//! `watch`'s auto-heal alike.
//!
//! Before every action it reads the cluster again and decides again (the plan that was
//! shown, confirmed or persisted names who may be acted on; the fresh decision says whether
//! they still may), it stops when the leader changes or is lost, when a guardrail now
//! refuses, or when the heal lease is lost, and it runs up to `max_concurrent` reinits at
//! once. Every action ends with one outcome, and the history it is given records each
//! start and end as it happens, so a process stopped mid-plan leaves records a restart can
//! read (see docs/SAFETY.md).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use pgpatrol_core::heal::{decide_with, DecideBy, Evidence, Plan, Policy, SkipReason};
use pgpatrol_core::history::{ActionRecord, RecordOutcome};
use pgpatrol_core::{Cluster, Member};

use super::{ReinitOutcome, ReinitResult};
use crate::source::SourceError;

/// Reads the cluster, fresh, before each action.
pub trait ClusterReader: Send + Sync {
    fn read(&self) -> impl Future<Output = Result<Cluster, SourceError>> + Send;
}

/// Why a heal lease is not (or no longer) held: the port's error, so that a stop keeps a
/// bounded reason ([`LeaseError::metric_label`]) besides its words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// The lease store (etcd, the Kubernetes API server, the lock file) could not be reached
    /// or refused the call.
    #[error("{0}")]
    Store(String),
    /// The store answered: the lease expired, or another healer holds it now.
    #[error("{0}")]
    Expired(String),
    /// The task that renews the lease ended.
    #[error("the lease keepalive stopped")]
    KeepaliveStopped,
}

impl LeaseError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            LeaseError::Store(_) => "lease_store",
            LeaseError::Expired(_) => "lease_expired",
            LeaseError::KeepaliveStopped => "lease_keepalive_stopped",
        }
    }
}

/// Carries out one reinitialization of `member` (with `leader` the leader now) and waits
/// for its end.
pub trait Reinitializer: Send + Sync {
    fn reinitialize(
        &self,
        member: &Member,
        leader: Option<&Member>,
    ) -> impl Future<Output = ReinitOutcome> + Send;
}

/// The heal lease: one healer per cluster. `confirm` renews it right before an action;
/// `lost` resolves when a renewal fails or the lease expires.
pub trait HealLock: Send + Sync {
    fn confirm(&self) -> impl Future<Output = Result<(), LeaseError>> + Send;
    fn lost(&self) -> impl Future<Output = LeaseError> + Send;
}

/// No lease at all: the caller is the one healer.
#[derive(Debug)]
pub struct NoLock;

impl HealLock for NoLock {
    async fn confirm(&self) -> Result<(), LeaseError> {
        Ok(())
    }
    async fn lost(&self) -> LeaseError {
        std::future::pending().await
    }
}

/// A lease that may not have been taken (`pgpatrol heal --no-lease`, or no etcd known):
/// `None` acts as [`NoLock`].
impl<L: HealLock> HealLock for Option<&L> {
    async fn confirm(&self) -> Result<(), LeaseError> {
        match self {
            Some(l) => l.confirm().await,
            None => Ok(()),
        }
    }
    async fn lost(&self) -> LeaseError {
        match self {
            Some(l) => l.lost().await,
            None => std::future::pending().await,
        }
    }
}

/// Who a run may act on: the members of the plan that was shown and confirmed (or, for
/// auto-heal, that met the persistence rule), and the leader it was made under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfirmedPlan {
    pub leader: Option<String>,
    /// The plan's actions, then the members it queued behind the concurrency limit (each is
    /// decided again, on fresh state, when a slot frees up).
    pub members: Vec<String>,
}

impl ConfirmedPlan {
    /// Everything `plan` would do on `cluster`, now or when a slot frees up.
    pub fn of(plan: &Plan, cluster: &Cluster) -> Self {
        let mut members: Vec<String> = plan.actions.iter().map(|a| a.member.clone()).collect();
        members.extend(
            plan.skips
                .iter()
                .filter(|s| matches!(s.reason, SkipReason::ConcurrencyLimit { .. }))
                .map(|s| s.member.clone()),
        );
        ConfirmedPlan {
            leader: cluster.leader().map(|l| l.name.clone()),
            members,
        }
    }

    /// Only the members `keep` says yes to.
    pub fn only(mut self, keep: impl Fn(&str) -> bool) -> Self {
        self.members.retain(|m| keep(m));
        self
    }
}

/// Timing of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How often to decide again while reinits run (a slot may have freed up).
    pub tick: Duration,
    /// How long a member queued behind the concurrency limit waits for a slot after the
    /// last reinit ended (right after a rebuild, `/cluster` still shows that member busy for
    /// up to a Patroni loop).
    pub slot_wait: Duration,
    /// Called after every change to the history (an action's record started, or ended),
    /// before anything else happens: watch writes its state file there, so the record of a
    /// reinit is on disk before its request goes out.
    pub on_record: OnRecord,
}

/// A callback for [`RunOptions::on_record`] (none by default).
#[derive(Clone, Default)]
pub struct OnRecord(pub Option<std::sync::Arc<dyn Fn() + Send + Sync>>);

impl OnRecord {
    fn call(&self) {
        if let Some(f) = &self.0 {
            f();
        }
    }
}

impl std::fmt::Debug for OnRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "OnRecord(set)"
        } else {
            "OnRecord(none)"
        })
    }
}

/// Why a run stopped before its plan was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    /// The cluster could not be read before an action.
    ReadFailed,
    /// Another member leads now, or none does.
    LeaderChanged,
    /// A cluster-level guardrail refuses now (paused, no leader, unlocked, failsafe...).
    Refused,
    /// The heal lease could not be renewed or expired: another healer may act now.
    LeaseLost,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stop {
    pub kind: StopKind,
    /// A bounded reason for metrics: the read's or the lease's error label
    /// (`timeout`, `lease_expired`…), else the kind's own (`leader_changed`, `refused`).
    pub cause: &'static str,
    pub detail: String,
}

/// A member of the confirmed plan the run did not act on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotActed {
    pub member: String,
    pub reason: String,
}

/// What a run did: one outcome per action, in the order they ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub outcomes: Vec<ReinitOutcome>,
    pub stopped: Option<Stop>,
    pub not_acted: Vec<NotActed>,
}

fn record_outcome(r: &ReinitResult) -> RecordOutcome {
    match r {
        ReinitResult::Healed => RecordOutcome::Healed,
        // Nobody knows whether Patroni ran it: it stays counted as an attempt, ended as
        // abandoned (the cooldown and the cap count it; its slot is free again).
        ReinitResult::LeaderLost | ReinitResult::Abandoned | ReinitResult::Unknown => {
            RecordOutcome::Abandoned
        }
        ReinitResult::Started
        | ReinitResult::Refused
        | ReinitResult::TimedOut
        | ReinitResult::Failed => RecordOutcome::Failed,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Carries out `plan` on the cluster `source` reads, through `executor`, behind `policy`
/// and `lease`, recording every start and end in `history` (which also holds earlier
/// actions: the cooldown and the concurrency limit read it). In trend mode each fresh read
/// is one more sample in `evidence`, and the fresh decision reads the trend from it.
#[allow(clippy::too_many_arguments)]
pub async fn run_plan<R, E, L>(
    source: &R,
    executor: &E,
    policy: &Policy,
    plan: &ConfirmedPlan,
    history: &Mutex<Vec<ActionRecord>>,
    evidence: &Mutex<Evidence>,
    lease: &L,
    opts: &RunOptions,
) -> RunReport
where
    R: ClusterReader,
    E: Reinitializer,
    L: HealLock,
{
    let mut report = RunReport::default();
    let mut running = FuturesUnordered::new();
    let mut attempted: BTreeSet<String> = BTreeSet::new();
    // The fresh reason for each planned member not acted on, as last decided.
    let mut last_reason: std::collections::BTreeMap<String, String> = Default::default();
    let mut slot_freed = Instant::now();
    let lost = lease.lost();
    tokio::pin!(lost);

    'run: loop {
        if report.stopped.is_none() {
            match next_batch(
                source,
                policy,
                plan,
                history,
                evidence,
                &attempted,
                &mut last_reason,
            )
            .await
            {
                Err(stop) => report.stopped = Some(stop),
                Ok((fresh, batch)) => {
                    for name in batch {
                        // Renewed right before acting: a healer that lost its lease must
                        // not start anything (another one may be acting already).
                        if let Err(why) = lease.confirm().await {
                            report.stopped = Some(Stop {
                                kind: StopKind::LeaseLost,
                                cause: why.metric_label(),
                                detail: format!("the heal lease was lost ({why}): stopped acting"),
                            });
                            break;
                        }
                        let Some(member) = fresh.member(&name).cloned() else {
                            continue;
                        };
                        let leader = fresh.leader().cloned();
                        let mut record = ActionRecord::starting(&name, SystemTime::now());
                        // What it copies, for the next rebuild estimate (trend mode).
                        record.bytes = lock(evidence).data_bytes;
                        lock(history).push(record);
                        opts.on_record.call();
                        attempted.insert(name.clone());
                        last_reason.remove(&name);
                        running.push(async move {
                            executor.reinitialize(&member, leader.as_ref()).await
                        });
                    }
                    if running.is_empty() && report.stopped.is_none() {
                        // Nothing to start and nothing running: done, unless a planned
                        // member only waits for a slot (the cluster view still shows the
                        // last rebuilt member busy).
                        let waiting = plan.members.iter().any(|m| {
                            !attempted.contains(m)
                                && last_reason
                                    .get(m)
                                    .is_some_and(|r| r.starts_with(SLOT_PREFIX))
                        });
                        if waiting && slot_freed.elapsed() < opts.slot_wait {
                            tokio::time::sleep(opts.tick).await;
                            continue 'run;
                        }
                        break 'run;
                    }
                }
            }
        }
        if running.is_empty() {
            break;
        }
        let event = tokio::select! {
            biased;
            why = &mut lost => Event::LeaseLost(why),
            Some(o) = running.next() => Event::Ended(o),
            _ = tokio::time::sleep(opts.tick), if report.stopped.is_none() => Event::Tick,
        };
        match event {
            Event::LeaseLost(why) => {
                // Stop at once: what runs is left to Patroni, nothing new starts.
                let cause = why.metric_label();
                let detail = format!(
                    "the heal lease was lost ({why}): stopped acting; Patroni finishes what it started"
                );
                drop(running);
                let now = SystemTime::now();
                let ended: BTreeSet<String> =
                    report.outcomes.iter().map(|o| o.member.clone()).collect();
                for r in lock(history)
                    .iter_mut()
                    .filter(|r| r.finished.is_none() && attempted.contains(&r.member))
                {
                    r.finish(RecordOutcome::Abandoned, now);
                    if !ended.contains(&r.member) {
                        report
                            .outcomes
                            .push(ReinitOutcome::abandoned(&r.member, r.started, &detail));
                    }
                }
                opts.on_record.call();
                report.stopped = Some(Stop {
                    kind: StopKind::LeaseLost,
                    cause,
                    detail,
                });
                break 'run;
            }
            Event::Ended(o) => {
                let now = SystemTime::now();
                for r in lock(history).iter_mut().filter(|r| r.member == o.member) {
                    r.finish(record_outcome(&o.result), now);
                }
                opts.on_record.call();
                if o.result == ReinitResult::LeaderLost && report.stopped.is_none() {
                    report.stopped = Some(Stop {
                        kind: StopKind::LeaderChanged,
                        cause: "leader_changed",
                        detail: o.detail.clone(),
                    });
                }
                report.outcomes.push(o);
                slot_freed = Instant::now();
            }
            Event::Tick => {}
        }
    }
    report.not_acted = plan
        .members
        .iter()
        .filter(|m| !attempted.contains(*m))
        .map(|m| NotActed {
            member: m.clone(),
            reason: match (last_reason.get(m), &report.stopped) {
                // It only waited for a slot when the run stopped: the stop is why.
                (Some(r), Some(stop)) if r.starts_with(SLOT_PREFIX) => {
                    format!("not started: {}", stop.detail)
                }
                (Some(r), _) => r.clone(),
                (None, _) => "not started: the run stopped first".to_string(),
            },
        })
        .collect();
    report
}

enum Event {
    LeaseLost(LeaseError),
    Ended(ReinitOutcome),
    Tick,
}

/// The text of a concurrency-limit skip starts with this (see `SkipReason`'s Display).
const SLOT_PREFIX: &str = "waits for a slot";

/// Reads and decides again; the planned members that may be acted on now.
async fn next_batch<R: ClusterReader>(
    source: &R,
    policy: &Policy,
    plan: &ConfirmedPlan,
    history: &Mutex<Vec<ActionRecord>>,
    evidence: &Mutex<Evidence>,
    attempted: &BTreeSet<String>,
    last_reason: &mut std::collections::BTreeMap<String, String>,
) -> Result<(Cluster, Vec<String>), Stop> {
    let fresh = source.read().await.map_err(|e| Stop {
        kind: StopKind::ReadFailed,
        cause: e.metric_label(),
        detail: format!("cannot re-read the cluster before acting: {e}"),
    })?;
    let leader = fresh.leader().map(|l| l.name.clone());
    if leader != plan.leader {
        return Err(Stop {
            kind: StopKind::LeaderChanged,
            cause: "leader_changed",
            detail: format!(
                "the leader changed from {} to {} since the plan was made",
                plan.leader.as_deref().unwrap_or("none"),
                leader.as_deref().unwrap_or("none")
            ),
        });
    }
    let records = lock(history).clone();
    let now = SystemTime::now();
    let decided = {
        let mut e = lock(evidence);
        if policy.by == DecideBy::Trend {
            e.record(&fresh, policy.lag, now, policy.trend.window);
        }
        decide_with(&fresh, policy, &records, &e, now)
    };
    if let Some(b) = decided.blockers.first() {
        return Err(Stop {
            kind: StopKind::Refused,
            cause: "refused",
            detail: format!("a guardrail now refuses: {b}"),
        });
    }
    for s in &decided.skips {
        if plan.members.contains(&s.member) && !attempted.contains(&s.member) {
            last_reason.insert(s.member.clone(), s.reason.to_string());
        }
    }
    for m in &plan.members {
        if fresh.member(m).is_none() && !attempted.contains(m) {
            last_reason.insert(m.clone(), "no longer in the cluster".to_string());
        }
    }
    let batch = decided
        .actions
        .iter()
        .filter(|a| plan.members.contains(&a.member) && !attempted.contains(&a.member))
        .map(|a| a.member.clone())
        .collect();
    Ok((fresh, batch))
}

#[cfg(test)]
mod tests {
    //! The runner against a fake cluster and a recording executor: each reinit brings its
    //! member back (lag 0) after a short while, unless the test says otherwise.

    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use pgpatrol_core::fixtures::ClusterBuilder;
    use pgpatrol_core::Lag;

    use super::*;

    /// Changes the cluster on a read, given how many reinits have started.
    type Hook = Box<dyn FnMut(usize, &mut Cluster) + Send>;

    /// The cluster the runner reads, changed by the executor and by the test's hooks.
    struct World {
        cluster: Mutex<Cluster>,
        reads: AtomicUsize,
        /// Called with the number of reinits started so far, on every read.
        on_read: Mutex<Option<Hook>>,
        /// Reinits in the order they started.
        started: Mutex<Vec<String>>,
        running: AtomicUsize,
        max_running: AtomicUsize,
        /// Members whose reinit never ends on its own.
        hang: Mutex<BTreeSet<String>>,
        /// Reads fail (a member's REST API times out) once this many reinits started.
        unreadable_after: Mutex<Option<usize>>,
    }

    struct Reader(Arc<World>);
    impl ClusterReader for Reader {
        async fn read(&self) -> Result<Cluster, SourceError> {
            self.0.reads.fetch_add(1, Ordering::SeqCst);
            let started = lock(&self.0.started).len();
            if lock(&self.0.unreadable_after).is_some_and(|n| started >= n) {
                return Err(SourceError::Http(crate::source::http::HttpError::Timeout {
                    url: "http://pg0:8008/cluster".into(),
                    timeout: "5s".into(),
                }));
            }
            let mut c = lock(&self.0.cluster);
            if let Some(f) = lock(&self.0.on_read).as_mut() {
                f(started, &mut c);
            }
            Ok(c.clone())
        }
    }

    struct Recorder(Arc<World>);
    impl Reinitializer for Recorder {
        async fn reinitialize(&self, member: &Member, _leader: Option<&Member>) -> ReinitOutcome {
            let w = &self.0;
            lock(&w.started).push(member.name.clone());
            let now = w.running.fetch_add(1, Ordering::SeqCst) + 1;
            w.max_running.fetch_max(now, Ordering::SeqCst);
            if lock(&w.hang).contains(&member.name) {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(60)).await;
            set_lag(&mut lock(&w.cluster), &member.name, 0);
            w.running.fetch_sub(1, Ordering::SeqCst);
            let mut o = ReinitOutcome::abandoned(&member.name, SystemTime::now(), "");
            o.result = ReinitResult::Healed;
            o
        }
    }

    fn set_lag(c: &mut Cluster, name: &str, bytes: u64) {
        if let Some(m) = c.members.iter_mut().find(|m| m.name == name) {
            m.replay_lag = Some(Lag::Bytes(bytes));
            m.receive_lag = Some(Lag::Bytes(bytes));
        }
    }

    /// A leader and `lagging` replicas 100 MB behind, plus two healthy ones.
    fn cluster(lagging: &[&str]) -> Cluster {
        let mut b = ClusterBuilder::new().leader("pg0");
        for name in lagging {
            b = b.replica(name).replay_lag_mb(100);
        }
        b.replica("ok1")
            .replay_lag_bytes(0)
            .replica("ok2")
            .replay_lag_bytes(0)
            .build()
    }

    fn policy(max_concurrent: usize) -> Policy {
        Policy {
            max_concurrent,
            cooldown: Duration::ZERO,
            ..Policy::default()
        }
    }

    fn opts() -> RunOptions {
        RunOptions {
            on_record: OnRecord::default(),
            tick: Duration::from_millis(10),
            slot_wait: Duration::from_millis(300),
        }
    }

    /// A lease that can be lost on demand: `confirm` fails from then on, `lost` resolves.
    #[derive(Default)]
    struct TestLease {
        lost: tokio::sync::Notify,
        is_lost: std::sync::atomic::AtomicBool,
    }
    impl HealLock for Arc<TestLease> {
        async fn confirm(&self) -> Result<(), LeaseError> {
            if self.is_lost.load(Ordering::SeqCst) {
                Err(LeaseError::Expired("keepalive failed".into()))
            } else {
                Ok(())
            }
        }
        async fn lost(&self) -> LeaseError {
            self.lost.notified().await;
            LeaseError::Expired("keepalive failed".into())
        }
    }

    async fn run(
        world: &Arc<World>,
        policy: &Policy,
        lease: &impl HealLock,
    ) -> (RunReport, Vec<ActionRecord>) {
        run_with(world, policy, lease, Evidence::default()).await
    }

    async fn run_with(
        world: &Arc<World>,
        policy: &Policy,
        lease: &impl HealLock,
        evidence: Evidence,
    ) -> (RunReport, Vec<ActionRecord>) {
        let c = lock(&world.cluster).clone();
        let plan = decide_with(&c, policy, &[], &evidence, SystemTime::now());
        let confirmed = ConfirmedPlan::of(&plan, &c);
        let history = Mutex::new(Vec::new());
        let evidence = Mutex::new(evidence);
        let report = run_plan(
            &Reader(world.clone()),
            &Recorder(world.clone()),
            policy,
            &confirmed,
            &history,
            &evidence,
            lease,
            &opts(),
        )
        .await;
        let h = lock(&history).clone();
        (report, h)
    }

    fn world(c: Cluster) -> Arc<World> {
        Arc::new(World {
            cluster: Mutex::new(c),
            reads: AtomicUsize::new(0),
            on_read: Mutex::new(None),
            started: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            hang: Mutex::new(BTreeSet::new()),
            unreadable_after: Mutex::new(None),
        })
    }

    #[tokio::test]
    async fn every_planned_member_is_healed_one_at_a_time_with_one_outcome_each() {
        let w = world(cluster(&["pg1", "pg2"]));
        let (report, history) = run(&w, &policy(1), &NoLock).await;
        assert_eq!(*lock(&w.started), ["pg1", "pg2"]);
        assert_eq!(w.max_running.load(Ordering::SeqCst), 1);
        assert_eq!(report.outcomes.len(), 2);
        assert!(report.stopped.is_none(), "{report:?}");
        assert!(history
            .iter()
            .all(|r| r.outcome == Some(RecordOutcome::Healed)));
    }

    /// Trend mode: the runner decides again from the samples it was given plus each fresh
    /// read; without them nothing would be acted on ("not enough samples").
    #[tokio::test]
    async fn trend_mode_re_decides_from_the_samples_and_each_fresh_read() {
        use pgpatrol_core::heal::LagSample;
        const MB: u64 = 1024 * 1024;
        let w = world(cluster(&["pg1", "pg2"]));
        let p = Policy {
            by: DecideBy::Trend,
            min_healthy: 0,
            max_concurrent: 2,
            ..policy(2)
        };
        let now = SystemTime::now();
        let series = |lags: &[u64]| -> std::collections::VecDeque<LagSample> {
            let n = lags.len() as u64;
            lags.iter()
                .enumerate()
                .map(|(i, mb)| LagSample {
                    at: now - Duration::from_secs(n - i as u64),
                    bytes: Some(mb * MB),
                })
                .collect()
        };
        let mut e = Evidence::default();
        // pg1 stalled at 100 MB; pg2 shrinking 20 MB/s towards its 100 MB (no estimate yet).
        e.samples.insert("pg1".into(), series(&[100; 6]));
        e.samples
            .insert("pg2".into(), series(&[220, 200, 180, 160, 140, 120]));
        let (report, history) = run_with(&w, &p, &NoLock, e.clone()).await;
        assert_eq!(*lock(&w.started), ["pg1"], "{report:?}");
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].bytes, None, "no data size known");
        // With the data size known, the record keeps what the rebuild copied.
        let mut sized = e.clone();
        sized.data_bytes = Some(300 * MB);
        let (_, history) = run_with(&world(cluster(&["pg1"])), &p, &NoLock, sized).await;
        assert_eq!(history[0].bytes, Some(300 * MB));
        let (report, _) =
            run_with(&world(cluster(&["pg1"])), &p, &NoLock, Evidence::default()).await;
        assert!(
            report.outcomes.is_empty(),
            "no samples, no action: {report:?}"
        );
    }

    #[tokio::test]
    async fn max_concurrent_two_runs_two_at_once() {
        let w = world(cluster(&["pg1", "pg2", "pg3"]));
        let p = Policy {
            min_healthy: 0,
            ..policy(2)
        };
        let (report, _) = run(&w, &p, &NoLock).await;
        assert_eq!(w.max_running.load(Ordering::SeqCst), 2);
        assert_eq!(lock(&w.started).len(), 3, "the third ran when a slot freed");
        assert_eq!(report.outcomes.len(), 3);
    }

    #[tokio::test]
    async fn it_decides_again_between_actions_and_stops_when_a_guardrail_refuses() {
        let w = world(cluster(&["pg1", "pg2"]));
        // After the first reinit started, an operator pauses the cluster.
        *lock(&w.on_read) = Some(Box::new(|started, c: &mut Cluster| {
            if started >= 1 {
                c.paused = true;
            }
        }));
        let (report, history) = run(&w, &policy(1), &NoLock).await;
        assert_eq!(*lock(&w.started), ["pg1"]);
        let stop = report.stopped.expect("stopped");
        assert_eq!(stop.kind, StopKind::Refused);
        assert_eq!(stop.cause, "refused");
        assert!(stop.detail.contains("paused"), "{}", stop.detail);
        assert_eq!(history.len(), 1);
        assert_eq!(report.not_acted[0].member, "pg2");
    }

    #[tokio::test]
    async fn a_leader_change_mid_plan_stops_the_rest() {
        let w = world(cluster(&["pg1", "pg2"]));
        *lock(&w.on_read) = Some(Box::new(|started, c: &mut Cluster| {
            if started >= 1 {
                // ok1 took over: the plan was made under pg0.
                *c = ClusterBuilder::new()
                    .replica("pg0")
                    .replay_lag_bytes(0)
                    .replica("pg1")
                    .replay_lag_bytes(0)
                    .replica("pg2")
                    .replay_lag_mb(100)
                    .leader("ok1")
                    .replica("ok2")
                    .replay_lag_bytes(0)
                    .build();
            }
        }));
        let (report, _) = run(&w, &policy(1), &NoLock).await;
        assert_eq!(*lock(&w.started), ["pg1"]);
        let stop = report.stopped.expect("stopped");
        assert_eq!(stop.kind, StopKind::LeaderChanged);
        assert_eq!(stop.cause, "leader_changed");
        assert!(stop.detail.contains("from pg0 to ok1"), "{}", stop.detail);
    }

    #[tokio::test]
    async fn a_read_that_fails_mid_plan_stops_the_rest_with_its_label() {
        let w = world(cluster(&["pg1", "pg2"]));
        *lock(&w.unreadable_after) = Some(1);
        let (report, _) = run(&w, &policy(1), &NoLock).await;
        assert_eq!(*lock(&w.started), ["pg1"], "nothing after the read failed");
        let stop = report.stopped.expect("stopped");
        assert_eq!(stop.kind, StopKind::ReadFailed);
        // The read's own metric label, not a string: pgpatrol_heal_stops_total{reason}.
        assert_eq!(stop.cause, "timeout");
        assert!(
            stop.detail.contains("did not answer within 5s"),
            "{}",
            stop.detail
        );
    }

    #[tokio::test]
    async fn a_member_that_recovered_by_itself_is_skipped() {
        let w = world(cluster(&["pg1", "pg2"]));
        *lock(&w.on_read) = Some(Box::new(|started, c: &mut Cluster| {
            if started >= 1 {
                set_lag(c, "pg2", 1024);
            }
        }));
        let (report, _) = run(&w, &policy(1), &NoLock).await;
        assert_eq!(*lock(&w.started), ["pg1"]);
        assert!(report.stopped.is_none(), "{report:?}");
        let skipped: BTreeMap<_, _> = report
            .not_acted
            .iter()
            .map(|n| (n.member.as_str(), n.reason.as_str()))
            .collect();
        assert!(skipped["pg2"].contains("within tolerance"), "{skipped:?}");
    }

    #[tokio::test]
    async fn the_lease_lost_mid_plan_stops_the_rest_at_once() {
        let w = world(cluster(&["pg1", "pg2"]));
        lock(&w.hang).insert("pg1".into());
        let lease = Arc::new(TestLease::default());
        let (l2, w2) = (lease.clone(), w.clone());
        tokio::spawn(async move {
            while lock(&w2.started).is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            l2.is_lost.store(true, Ordering::SeqCst);
            l2.lost.notify_one();
        });
        let (report, history) =
            tokio::time::timeout(Duration::from_secs(5), run(&w, &policy(1), &lease))
                .await
                .expect("the run stopped");
        assert_eq!(*lock(&w.started), ["pg1"], "no second action");
        let stop = report.stopped.expect("stopped");
        assert_eq!(stop.kind, StopKind::LeaseLost);
        assert_eq!(stop.cause, "lease_expired");
        assert_eq!(report.outcomes.len(), 1);
        assert_eq!(report.outcomes[0].result, ReinitResult::Abandoned);
        assert_eq!(history[0].outcome, Some(RecordOutcome::Abandoned));
    }

    #[tokio::test]
    async fn a_lease_that_cannot_be_renewed_before_an_action_starts_nothing() {
        let w = world(cluster(&["pg1"]));
        let lease = Arc::new(TestLease::default());
        lease.is_lost.store(true, Ordering::SeqCst);
        let (report, history) = run(&w, &policy(1), &lease).await;
        assert!(lock(&w.started).is_empty());
        assert!(history.is_empty());
        assert_eq!(report.stopped.map(|s| s.kind), Some(StopKind::LeaseLost));
    }

    #[tokio::test]
    async fn only_members_of_the_confirmed_plan_are_acted_on() {
        let w = world(cluster(&["pg1"]));
        // ok1 starts lagging after the plan was confirmed: not this run's business (a
        // member worse than every planned one would take the slot in the fresh decision;
        // the planned one then waits, and the run ends without acting: never more at once).
        *lock(&w.on_read) = Some(Box::new(|_, c: &mut Cluster| {
            set_lag(c, "ok1", 50 << 20);
        }));
        let (report, _) = run(&w, &policy(1), &NoLock).await;
        assert_eq!(*lock(&w.started), ["pg1"]);
        assert!(report.not_acted.is_empty(), "{report:?}");
    }
}
