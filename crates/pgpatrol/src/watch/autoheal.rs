//! Auto-heal for `watch`: the same plan and executor as `pgpatrol heal`, plus what a daemon
//! needs to be trusted with it — the breach must persist (N samples and/or a duration), a
//! per-member cooldown, a cap on attempts, an escalation alert when a heal fails or the cap
//! is reached, and one active healer per cluster (a lease).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use pgpatrol_core::heal::{decide_with, Blocker, Evidence, Plan, Policy, SkipReason};
use pgpatrol_core::history::{abandon_stale, prune_history, ActionRecord, RecordOutcome};
use pgpatrol_core::{Cluster, Member};

use super::alerts::{AlertEvent, AlertQueue};
use super::config::{ClusterConfig, HealConfig, WatchConfig};
use super::lease::LeaseStore;
use super::metrics::{ClusterL, ClusterReasonL, Metrics, ReasonL};
use super::Shared;
use crate::executor::runner::{self, ConfirmedPlan, RunOptions, Stop, StopKind};
use crate::executor::{self, ReinitOptions, ReinitResult};
use crate::source::ClusterSource;

/// The heal policy of a cluster's `heal:` section.
pub fn policy(h: &HealConfig) -> Policy {
    Policy {
        tolerance: h.tolerance.0,
        lag: h.lag,
        max_concurrent: h.max_concurrent.max(1),
        min_healthy: h.min_healthy,
        cooldown: h.cooldown,
        // A record still open this long after its start was left by a watcher that died
        // mid-heal (the executor gives up at `timeout`).
        stale_after: h.timeout + STALE_MARGIN,
        by: h.by,
        trend: h.trend.policy(),
    }
}

/// Added to the heal timeout before an unfinished record stops counting as in progress.
const STALE_MARGIN: Duration = Duration::from_secs(5 * 60);

/// What `/plan` shows of auto-heal.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HealView {
    pub enabled: bool,
    /// Consecutive breaching samples per member.
    pub breaches: BTreeMap<String, u32>,
    /// Reinitializations per member in the last 24 hours.
    pub attempts: BTreeMap<String, u32>,
    pub history: Vec<ActionRecord>,
    pub last_outcomes: Vec<executor::ReinitOutcome>,
    /// Why the last run stopped before its plan was done (lease lost, leader changed...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_stop: Option<Stop>,
}

#[derive(Debug, Default)]
struct Progress {
    outcomes: Vec<executor::ReinitOutcome>,
    running: bool,
    /// Members with a firing escalation alert (resolved when they are healthy again).
    escalated: BTreeSet<String>,
    last_stop: Option<Stop>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The attempt cap counts reinitializations of a member within this long.
const ATTEMPT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// One cluster's auto-healer.
#[derive(Debug)]
pub struct Healer {
    policy: Policy,
    cfg: HealConfig,
    lease: LeaseStore,
    owner: String,
    breaches: BTreeMap<String, (u32, SystemTime)>,
    /// Earlier and running actions: the plan runner records every start and end here.
    history: Arc<Mutex<Vec<ActionRecord>>>,
    progress: Arc<Mutex<Progress>>,
    task: Option<tokio::task::JoinHandle<()>>,
    audit: Arc<crate::audit::Audit>,
    /// Where every record change is written at once (watch's `state_file`).
    state: Option<Arc<super::state::StateFile>>,
}

fn lease_store(cfg: &WatchConfig, c: &ClusterConfig, h: &HealConfig) -> anyhow::Result<LeaseStore> {
    // The cluster's own etcd as the DCS source reaches it (patroni_yml's etcd3, or `dcs:`):
    // its hosts, TLS and credentials serve the lease too.
    let dcs_etcd = if h.lease.kubernetes.is_none() && h.lease.dir.is_none() {
        cfg.target(c)
            .map_err(anyhow::Error::msg)?
            .etcd_options()
            .map_err(|e| anyhow::anyhow!("cluster {:?}: heal lease: {e}", c.name))?
    } else {
        None
    };
    let etcd = |opts: crate::source::dcs::etcd::EtcdOptions, shown: String| {
        crate::source::dcs::etcd::Etcd::new(&opts)
            .map(|etcd| LeaseStore::Etcd { etcd, shown })
            .map_err(|e| anyhow::anyhow!("cluster {:?}: heal lease: {e}", c.name))
    };
    if let Some(url) = &h.lease.etcd {
        // This etcd, with the cluster's etcd TLS and credentials when it has an etcd3 section.
        let mut opts = dcs_etcd.unwrap_or(crate::source::dcs::etcd::EtcdOptions {
            endpoints: Vec::new(),
            auth: None,
            http: crate::source::http::HttpOptions {
                timeout: std::time::Duration::from_secs(5),
                ..Default::default()
            },
        });
        opts.endpoints = url
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect();
        return etcd(opts, url.clone());
    }
    // A lock file is a lease on this machine only: two watchers elsewhere (two pods of a
    // Deployment during a rolling update) would both heal. Only an operator who says this
    // watcher is the only one gets it.
    let local_only = |what: &str| {
        anyhow::anyhow!(
            "cluster {:?}: auto-heal needs a lease every watcher shares, and {what}: give heal.lease {{etcd: URL}} or {{kubernetes: NAME}}, or add local: true to heal.lease if this is the only watcher of the cluster",
            c.name
        )
    };
    if let Some(dir) = &h.lease.dir {
        if !h.lease.local {
            return Err(local_only("heal.lease.dir is a lock on this machine only"));
        }
        return Ok(LeaseStore::File { dir: dir.clone() });
    }
    if let Some(name) = &h.lease.kubernetes {
        return Ok(LeaseStore::Kubernetes {
            target: c.access.kubernetes.clone().unwrap_or_default(),
            name: name.clone(),
        });
    }
    Ok(match dcs_etcd {
        Some(opts) => {
            let shown = opts.endpoints.join(",");
            return etcd(opts, shown);
        }
        None if !h.lease.local => {
            return Err(local_only(
                "none is configured (no heal.lease, and no etcd3 section in patroni_yml)",
            ))
        }
        None => LeaseStore::File {
            dir: cfg
                .state_file
                .as_ref()
                .and_then(|p| p.parent().map(|d| d.to_path_buf()))
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or_else(std::env::temp_dir),
        },
    })
}

/// Every `reason` of `pgpatrol_heal_refused_total` (docs/METRICS.md lists the same set).
pub const REFUSAL_REASONS: [&str; 21] = [
    "paused",
    "no_leader",
    "multiple_leaders",
    "unlocked",
    "failsafe",
    "lag_unknown",
    "in_progress",
    "concurrency_limit",
    "min_healthy",
    "only_synchronous_standby",
    "cooldown",
    "replay_paused",
    "apply_delay",
    "noheal_tag",
    "kept_unknown",
    "nostream",
    "nostream_unchecked",
    "max_attempts",
    "lease_held",
    "lease_error",
    "lease_lost",
];

/// Creates a healing cluster's heal counters at 0 before anything happens: a counter that
/// first appears at 1 shows no `increase()` in Prometheus (the first heal would be missed),
/// and a dashboard should read 0, not "no data", while nothing has been healed.
pub fn init_metrics(m: &Metrics, cluster: &str) {
    let c = ClusterL {
        cluster: cluster.into(),
    };
    let _ = m.heal_attempted.get_or_create(&c);
    let _ = m.heal_succeeded.get_or_create(&c);
    let _ = m.heal_failed.get_or_create(&c);
    let _ = m.heal_escalations.get_or_create(&c);
    for reason in REFUSAL_REASONS {
        let _ = m.heal_refused.get_or_create(&ClusterReasonL {
            cluster: cluster.into(),
            reason: reason.into(),
        });
    }
}

fn blocker_label(b: &Blocker) -> &'static str {
    match b {
        Blocker::Paused => "paused",
        Blocker::NoLeader => "no_leader",
        Blocker::MultipleLeaders { .. } => "multiple_leaders",
        Blocker::Unlocked => "unlocked",
        Blocker::Failsafe => "failsafe",
    }
}

fn skip_label(r: &SkipReason) -> Option<&'static str> {
    Some(match r {
        // Waiting for a replica that catches up by itself is the policy working, not a
        // guardrail refusing; too few samples is the same until the window fills.
        SkipReason::Leader
        | SkipReason::WithinTolerance { .. }
        | SkipReason::CatchingUp { .. }
        | SkipReason::NoRebuildEstimate { .. }
        | SkipReason::NotEnoughSamples { .. } => return None,
        SkipReason::LagUnknown { .. } => "lag_unknown",
        SkipReason::InProgress { .. } => "in_progress",
        SkipReason::ConcurrencyLimit { .. } => "concurrency_limit",
        SkipReason::MinHealthy { .. } => "min_healthy",
        SkipReason::OnlySynchronousStandby => "only_synchronous_standby",
        SkipReason::Cooldown { .. } => "cooldown",
        SkipReason::ReplayPaused => "replay_paused",
        SkipReason::ApplyDelay { .. } => "apply_delay",
        SkipReason::NohealTag => "noheal_tag",
        SkipReason::KeptUnknown { .. } => "kept_unknown",
        SkipReason::Nostream { .. } => "nostream",
        SkipReason::NostreamUnchecked { .. } => "nostream_unchecked",
    })
}

impl Healer {
    pub fn new(
        cfg: &WatchConfig,
        c: &ClusterConfig,
        h: &HealConfig,
        mut history: Vec<ActionRecord>,
    ) -> anyhow::Result<Self> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let policy = policy(h);
        // A record a dead watcher left open, older than any heal can take, ended long ago.
        let stale = abandon_stale(&mut history, policy.stale_after, SystemTime::now());
        if stale > 0 {
            tracing::info!(cluster = %c.name, records = stale, "auto-heal: unfinished heals from before a restart are older than the heal timeout: recorded as abandoned");
        }
        Ok(Healer {
            policy,
            cfg: h.clone(),
            lease: lease_store(cfg, c, h)?,
            owner: format!("{}:{}", host.trim(), std::process::id()),
            breaches: BTreeMap::new(),
            history: Arc::new(Mutex::new(history)),
            progress: Arc::new(Mutex::new(Progress::default())),
            task: None,
            state: None,
            audit: Arc::new(crate::audit::Audit::open(
                cfg.audit_log.as_deref(),
                &c.name,
            )?),
        })
    }

    fn persisted(&self, member: &str, now: SystemTime) -> bool {
        self.breaches.get(member).is_some_and(|(n, since)| {
            *n >= self.cfg.persist_samples
                && self
                    .cfg
                    .persist_for
                    .is_none_or(|d| now.duration_since(*since).unwrap_or_default() >= d)
        })
    }

    /// Called with every fresh snapshot: decides, and acts when everything allows it.
    #[allow(clippy::too_many_arguments)]
    pub async fn on_snapshot(
        &mut self,
        name: &str,
        cluster: &Cluster,
        source: &ClusterSource,
        login: Option<&crate::source::pg::PgLogin>,
        shared: &Arc<Shared>,
        alerts: &AlertQueue,
        evidence: &Evidence,
        now: SystemTime,
    ) -> Plan {
        let m = &shared.metrics;
        // 1. Persistence: count consecutive breaching samples per replica.
        for r in cluster.replicas() {
            let breaching = r
                .lag(self.policy.lag)
                .and_then(|l| l.bytes())
                .is_some_and(|b| b >= self.policy.tolerance);
            if breaching {
                let e = self.breaches.entry(r.name.clone()).or_insert((0, now));
                e.0 += 1;
            } else {
                self.breaches.remove(&r.name);
            }
        }
        self.breaches.retain(|k, _| cluster.member(k).is_some());
        let recovered: Vec<String> = {
            let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
            let healthy = |m: &str| {
                cluster
                    .member(m)
                    .is_some_and(|x| x.is_caught_up(self.policy.lag, self.policy.tolerance))
            };
            let done: Vec<String> = p.escalated.iter().filter(|m| healthy(m)).cloned().collect();
            for m in &done {
                p.escalated.remove(m);
            }
            done
        };
        for member in recovered {
            let mut ev = escalation(name, &member, "the member is healthy again");
            ev.firing = false;
            alerts.push(ev);
        }

        // 2. The same decision as `pgpatrol heal`, with this healer's history.
        let history = locked(&self.history).clone();
        let running = locked(&self.progress).running;
        let plan = decide_with(cluster, &self.policy, &history, evidence, now);
        let persisted: Vec<String> = self
            .breaches
            .keys()
            .filter(|k| self.persisted(k, now))
            .cloned()
            .collect();
        if persisted.is_empty() {
            return plan;
        }
        let refuse = |reason: &str| {
            m.heal_refused
                .get_or_create(&ClusterReasonL {
                    cluster: name.into(),
                    reason: reason.into(),
                })
                .inc();
        };
        for b in &plan.blockers {
            refuse(blocker_label(b));
        }
        for s in plan.skips.iter().filter(|s| persisted.contains(&s.member)) {
            if let Some(label) = skip_label(&s.reason) {
                refuse(label);
            }
        }

        // 3. Persisted, under the cap (attempts in the last 24 h); escalate once at the cap.
        let mut actions = Vec::new();
        for a in plan
            .actions
            .iter()
            .filter(|a| persisted.contains(&a.member))
        {
            let tries = recent_attempts(&history, &a.member, now);
            if tries >= self.cfg.max_attempts {
                refuse("max_attempts");
                let first = self
                    .progress
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .escalated
                    .insert(a.member.clone());
                if first {
                    m.heal_escalations
                        .get_or_create(&ClusterL {
                            cluster: name.into(),
                        })
                        .inc();
                    let why = format!(
                        "{tries} reinitializations in 24 h did not keep it below the tolerance; auto-heal stopped trying"
                    );
                    alerts.push(escalation(name, &a.member, &why));
                }
                continue;
            }
            actions.push(a.clone());
        }
        if actions.is_empty() || running {
            return plan;
        }

        // 4. One healer per cluster.
        // Keyed by the cluster's scope (its name in the DCS), so `pgpatrol heal` and any
        // other watcher of the same cluster, whatever they call it, share it.
        let key = cluster.scope.as_deref().unwrap_or(name);
        let held = match self.lease.try_acquire(key, &self.owner).await {
            Ok(Some(h)) => {
                shared.emit(pgpatrol_core::events::Event::new(
                    &humantime::format_rfc3339_seconds(now).to_string(),
                    name,
                    None,
                    pgpatrol_core::events::EventKind::LeaseGained,
                    format!(
                        "this watcher ({}) holds the heal lease of {key}",
                        self.owner
                    ),
                ));
                h
            }
            Ok(None) => {
                refuse("lease_held");
                return plan;
            }
            Err(e) => {
                tracing::warn!(cluster = %name, error = %e, "cannot take the heal lease: not acting");
                refuse("lease_error");
                return plan;
            }
        };

        // 5. Act in the background, through the same plan runner as `pgpatrol heal`: it
        //    re-reads and decides again before each action, acts only on the members that
        //    met the rules above, stops when the leader changes or the lease is lost, and
        //    records every start and end in the history (the poller keeps polling, and the
        //    unfinished records keep those members counted as in progress).
        let acting: BTreeSet<String> = actions.iter().map(|a| a.member.clone()).collect();
        let queued: BTreeSet<String> = plan
            .skips
            .iter()
            .filter(|s| matches!(s.reason, SkipReason::ConcurrencyLimit { .. }))
            .filter(|s| persisted.contains(&s.member))
            .filter(|s| recent_attempts(&history, &s.member, now) < self.cfg.max_attempts)
            .map(|s| s.member.clone())
            .collect();
        let confirmed =
            ConfirmedPlan::of(&plan, cluster).only(|m| acting.contains(m) || queued.contains(m));
        {
            let mut h = locked(&self.history);
            // Only what the cooldown and the attempt cap look at is kept (and persisted).
            prune_history(&mut h, ATTEMPT_WINDOW.max(self.policy.cooldown), now);
        }
        locked(&self.progress).running = true;
        let opts = ReinitOptions {
            tolerance: self.policy.tolerance,
            lag: self.policy.lag,
            timeout: self.cfg.timeout,
            poll: Duration::from_millis(500),
            force: false,
            wait: true,
            from_leader: self.cfg.from_leader,
            caller: "auto-heal",
            audit: self.audit.clone(),
        };
        let exec = WatchReinit {
            name: name.to_string(),
            source: source.clone(),
            opts,
            shared: shared.clone(),
            alerts: alerts.clone(),
            progress: self.progress.clone(),
        };
        let evidence = Mutex::new(evidence.clone());
        let login = login.cloned();
        let (source, policy, history, progress, shared, name) = (
            source.clone(),
            self.policy.clone(),
            self.history.clone(),
            self.progress.clone(),
            shared.clone(),
            name.to_string(),
        );
        let on_record = self.state.clone().map(|state| {
            let shared = shared.clone();
            Arc::new(move || state.save(&shared)) as Arc<dyn Fn() + Send + Sync>
        });
        let run_opts = RunOptions {
            tick: Duration::from_secs(1),
            slot_wait: Duration::from_secs(30),
            on_record: runner::OnRecord(on_record),
        };
        self.task = Some(tokio::spawn(async move {
            let reader = crate::executor::HealReader {
                source: &source,
                lag: policy.lag,
                tolerance: policy.tolerance,
                login,
            };
            let report = runner::run_plan(
                &reader, &exec, &policy, &confirmed, &history, &evidence, &held, &run_opts,
            )
            .await;
            if let Some(stop) = &report.stopped {
                tracing::warn!(cluster = %name, reason = ?stop.kind, cause = stop.cause, detail = %stop.detail, "auto-heal: stopped before the plan was done");
                shared
                    .metrics
                    .heal_stops
                    .get_or_create(&ReasonL {
                        reason: stop.cause.into(),
                    })
                    .inc();
                if stop.kind == StopKind::LeaseLost {
                    shared
                        .metrics
                        .heal_refused
                        .get_or_create(&ClusterReasonL {
                            cluster: (&name).into(),
                            reason: "lease_lost".into(),
                        })
                        .inc();
                }
            }
            for n in &report.not_acted {
                tracing::info!(cluster = %name, member = %n.member, reason = %n.reason, "auto-heal: not acted on");
            }
            held.release().await;
            let mut p = locked(&progress);
            for o in report.outcomes {
                p.outcomes.push(o);
            }
            let excess = p.outcomes.len().saturating_sub(20);
            p.outcomes.drain(..excess);
            p.last_stop = report.stopped;
            p.running = false;
        }));
        plan
    }

    /// Persists this healer's history in `state`: tracked there, and written at every start
    /// and end of an action.
    pub fn persist_to(&mut self, cluster: &str, state: Arc<super::state::StateFile>) {
        state.track(cluster, self.history.clone());
        self.state = Some(state);
    }

    pub fn view(&self) -> HealView {
        let p = locked(&self.progress);
        let history = locked(&self.history).clone();
        let now = SystemTime::now();
        let members: BTreeSet<&str> = history.iter().map(|h| h.member.as_str()).collect();
        HealView {
            enabled: true,
            breaches: self
                .breaches
                .iter()
                .map(|(k, (n, _))| (k.clone(), *n))
                .collect(),
            attempts: members
                .into_iter()
                .map(|m| (m.to_string(), recent_attempts(&history, m, now)))
                .collect(),
            last_outcomes: p.outcomes.clone(),
            last_stop: p.last_stop.clone(),
            history,
        }
    }

    /// Stops watching a running heal (Patroni finishes the reinit on its own; the lease is
    /// released or expires).
    ///
    /// A reinit in flight is marked `interrupted` (it ended for this healer), so a restarted
    /// watch does not count it as running; returns the final view, for the state file.
    pub async fn shutdown(mut self) -> HealView {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        {
            let now = SystemTime::now();
            for h in locked(&self.history).iter_mut() {
                if h.finished.is_none() {
                    tracing::info!(member = %h.member, "auto-heal: stopped while a reinit ran; Patroni finishes it on its own");
                }
                h.finish(RecordOutcome::Interrupted, now);
            }
            locked(&self.progress).running = false;
        }
        self.view()
    }
}

/// Auto-heal's executor: the REST executor, counted in the heal metrics, escalating a heal
/// that failed.
struct WatchReinit {
    name: String,
    source: ClusterSource,
    opts: ReinitOptions,
    shared: Arc<Shared>,
    alerts: AlertQueue,
    progress: Arc<Mutex<Progress>>,
}

impl runner::Reinitializer for WatchReinit {
    async fn reinitialize(
        &self,
        member: &Member,
        leader: Option<&Member>,
    ) -> executor::ReinitOutcome {
        let c = ClusterL {
            cluster: (&self.name).into(),
        };
        let m = &self.shared.metrics;
        m.heal_attempted.get_or_create(&c).inc();
        tracing::info!(cluster = %self.name, member = %member.name, "auto-heal: reinitializing");
        let o = executor::reinitialize(
            &self.source,
            &member.name,
            member.api_url.as_deref().unwrap_or_default(),
            leader.and_then(|l| l.api_url.as_deref()),
            &self.opts,
            &executor::Quiet,
        )
        .await;
        if o.result == ReinitResult::Healed {
            m.heal_succeeded.get_or_create(&c).inc();
        } else {
            m.heal_failed.get_or_create(&c).inc();
            m.heal_escalations.get_or_create(&c).inc();
            locked(&self.progress).escalated.insert(member.name.clone());
            self.alerts.push(escalation(
                &self.name,
                &member.name,
                &format!("auto-heal failed: {}", o.detail),
            ));
        }
        tracing::info!(cluster = %self.name, member = %o.member, result = ?o.result, detail = %o.detail, "auto-heal: done");
        o
    }
}

/// Reinitializations of `member` started within the attempt window.
fn recent_attempts(history: &[ActionRecord], member: &str, now: SystemTime) -> u32 {
    history
        .iter()
        .filter(|h| {
            h.member == member && now.duration_since(h.started).unwrap_or_default() < ATTEMPT_WINDOW
        })
        .count() as u32
}

fn escalation(cluster: &str, member: &str, why: &str) -> AlertEvent {
    AlertEvent {
        alertname: "PgpatrolHealEscalation".into(),
        cluster: cluster.to_string(),
        severity: "page".into(),
        firing: true,
        summary: format!("Auto-heal could not fix {member} in {cluster}: a person is needed"),
        description: why.to_string(),
        labels: [("member".to_string(), member.to_string())]
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_heal_without_a_shared_lease_refuses_to_start() {
        let store = |heal: &str| {
            let cfg = WatchConfig::parse(&format!(
                "clusters:\n  - name: a\n    urls: [http://127.0.0.1:1]\n    heal: {heal}\n"
            ))
            .unwrap();
            let c = &cfg.clusters[0];
            lease_store(&cfg, c, c.heal.as_ref().unwrap())
        };
        let e = store("{enabled: true, tolerance: 5}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a lease every watcher shares"), "{e}");
        assert!(e.contains("local: true"), "{e}");
        let e = store("{enabled: true, tolerance: 5, lease: {dir: /tmp}}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("heal.lease.dir is a lock on this machine only"),
            "{e}"
        );
        assert!(matches!(
            store("{enabled: true, tolerance: 5, lease: {dir: /tmp, local: true}}"),
            Ok(LeaseStore::File { .. })
        ));
        assert!(matches!(
            store("{enabled: true, tolerance: 5, lease: {local: true}}"),
            Ok(LeaseStore::File { .. })
        ));
        assert!(matches!(
            store("{enabled: true, tolerance: 5, lease: {etcd: http://127.0.0.1:2379}}"),
            Ok(LeaseStore::Etcd { .. })
        ));
        assert!(matches!(
            store("{enabled: true, tolerance: 5, lease: {kubernetes: heal-a}}"),
            Ok(LeaseStore::Kubernetes { .. })
        ));
    }

    #[test]
    fn every_refusal_label_is_created_up_front() {
        let blockers = [
            Blocker::Paused,
            Blocker::NoLeader,
            Blocker::MultipleLeaders { leaders: vec![] },
            Blocker::Unlocked,
            Blocker::Failsafe,
        ];
        let skips = [
            SkipReason::LagUnknown { state: "x".into() },
            SkipReason::InProgress { state: "x".into() },
            SkipReason::ConcurrencyLimit {
                limit: 1,
                in_progress: 1,
            },
            SkipReason::MinHealthy {
                min_healthy: 1,
                healthy: 0,
            },
            SkipReason::OnlySynchronousStandby,
            SkipReason::Cooldown { remaining_secs: 1 },
            SkipReason::ReplayPaused,
            SkipReason::ApplyDelay { delay: "x".into() },
            SkipReason::NohealTag,
            SkipReason::KeptUnknown { why: "x".into() },
            SkipReason::Nostream { behind_archive: 1 },
            SkipReason::NostreamUnchecked { why: "x".into() },
        ];
        let mut labels: Vec<&str> = blockers.iter().map(blocker_label).collect();
        labels.extend(skips.iter().filter_map(skip_label));
        // The healer's own refusals (see `on_snapshot`).
        labels.extend(["max_attempts", "lease_held", "lease_error", "lease_lost"]);
        for l in &labels {
            assert!(REFUSAL_REASONS.contains(l), "{l} is not created up front");
        }
        assert_eq!(labels.len(), REFUSAL_REASONS.len());

        let m = Metrics::default();
        init_metrics(&m, "c");
        let mut r = crate::watch::metrics::Families::default();
        m.register(&mut r);
        let mut text = String::new();
        r.encode(&mut text).unwrap();
        assert!(
            text.contains("pgpatrol_heal_attempted_total{cluster=\"c\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("pgpatrol_heal_refused_total{cluster=\"c\",reason=\"min_healthy\"} 0"),
            "{text}"
        );
    }
}
