//! `pgpatrol watch`: a daemon that polls every configured cluster on its own interval,
//! concurrently and each with its own timeout (a slow or dead cluster never delays the
//! others), exports what Patroni's own /metrics does not (lag per member, the SLI, SLO
//! error budget and burn rates), fires burn-rate alerts, and heals when allowed.
//!
//! ```text
//! per cluster:  tick ─► snapshot ─► metrics ─► SLO sample ─► burn-rate alerts ─► alerts task
//!                            └──► auto-heal: decide ─► persistence, cap ─► lease ─► executor
//! shared:       /metrics /healthz /readyz /plan  (server.rs)   state file (samples, history)
//! ```

pub mod alerts;
pub mod autoheal;
pub mod config;
pub mod lease;
pub mod metrics;
pub mod server;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::watch;

use pgpatrol_core::plan::Plan;
use pgpatrol_core::sli::Sli;
use pgpatrol_core::slo::{self, SampleLog, SloSpec, SloStatus};
use pgpatrol_core::{Cluster, LagKind, State};

use crate::source::rest::{Detail, RestSource};
use alerts::AlertEvent;
use config::{ClusterConfig, WatchConfig};
use metrics::*;

/// What `/plan` and `/readyz` show of one cluster.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ClusterView {
    pub polled: bool,
    pub last_poll: Option<String>,
    pub up: bool,
    pub error: Option<String>,
    pub sli_bytes: Option<u64>,
    pub slo: Option<SloStatus>,
    /// The heal plan for the latest snapshot (only when auto-heal is configured).
    pub plan: Option<Plan>,
    pub heal: autoheal::HealView,
}

/// State shared by the pollers and the HTTP server.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Metrics,
    pub registry: Registry,
    pub views: Mutex<BTreeMap<String, ClusterView>>,
    pub samples: Mutex<BTreeMap<String, SampleLog>>,
    pub started: Instant,
    /// The size of the last /metrics body: the next one is allocated at once, not grown by
    /// doubling (a fleet of 1,000 clusters is a 3 MiB body).
    pub metrics_size: std::sync::atomic::AtomicUsize,
}

impl Shared {
    fn new(cfg: &WatchConfig) -> Self {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let views = cfg
            .clusters
            .iter()
            .map(|c| (c.name.clone(), ClusterView::default()))
            .collect();
        Shared {
            metrics,
            registry,
            views: Mutex::new(views),
            samples: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
            metrics_size: Default::default(),
        }
    }

    fn view<R>(&self, cluster: &str, f: impl FnOnce(&mut ClusterView) -> R) -> R {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        f(views.entry(cluster.to_string()).or_default())
    }
}

fn cl(cluster: &str) -> ClusterL {
    ClusterL {
        cluster: cluster.to_string(),
    }
}

/// The SLO spec of a cluster's config.
pub fn slo_spec(c: &ClusterConfig) -> Result<Option<SloSpec>, String> {
    let Some(s) = &c.slo else { return Ok(None) };
    let mut spec = SloSpec::new(s.objective, s.threshold.0, s.window);
    if let Some(alerts) = &s.alerts {
        spec.alerts = alerts
            .iter()
            .map(|a| {
                let severity = match a.severity.as_str() {
                    "page" => slo::Severity::Page,
                    "ticket" => slo::Severity::Ticket,
                    other => {
                        return Err(format!(
                            "cluster {:?}: alert severity {other:?}: use page or ticket",
                            c.name
                        ))
                    }
                };
                Ok(slo::AlertRule {
                    name: format!(
                        "{}-{}-{}",
                        a.severity,
                        slo::format_window(a.long),
                        slo::format_window(a.short)
                    ),
                    severity,
                    long: a.long,
                    short: a.short,
                    factor: a.factor,
                })
            })
            .collect::<Result<_, _>>()?;
    }
    spec.validate()
        .map_err(|e| format!("cluster {:?}: slo: {e}", c.name))?;
    Ok(Some(spec))
}

/// Runs the daemon until `shutdown` turns true.
pub async fn run(cfg: WatchConfig, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::new(&cfg));
    let alert_queue =
        alerts::AlertQueue::new(cfg.alert_queue, shared.metrics.alerts_dropped.clone());
    let sinks = alerts::AlertSinks {
        alertmanager: cfg.alertmanager.clone(),
        webhook: cfg.webhook.clone(),
        doc_link: cfg.doc_link.clone(),
    };
    let alert_task = tokio::spawn(sinks.run(alert_queue.clone()));

    // Everything that can be wrong with the file is found before anything starts.
    let mut pollers = Vec::new();
    let persisted = match &cfg.state_file {
        Some(p) => state::load(p)?,
        None => state::Persisted::default(),
    };
    // Clusters with the same TLS and timeout settings share one HTTP client.
    let mut clients = crate::source::rest::HttpCache::default();
    for c in &cfg.clusters {
        let source = cfg
            .target(c)
            .map_err(anyhow::Error::msg)?
            .connect_with(&mut clients)
            .await
            .map_err(|e| anyhow::anyhow!("cluster {:?}: {e}", c.name))?;
        let spec = slo_spec(c).map_err(anyhow::Error::msg)?;
        let log = match (&spec, persisted.samples.get(&c.name)) {
            (Some(spec), Some(log)) if same_shape(log, &SampleLog::for_spec(spec)) => {
                Some(log.clone())
            }
            (Some(spec), _) => Some(SampleLog::for_spec(spec)),
            (None, _) => None,
        };
        if let Some(log) = log {
            shared
                .samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(c.name.clone(), log);
        }
        let healer = match &c.heal {
            Some(h) if h.enabled => Some(autoheal::Healer::new(
                &cfg,
                c,
                h,
                persisted
                    .heal_history
                    .get(&c.name)
                    .cloned()
                    .unwrap_or_default(),
            )?),
            _ => None,
        };
        if healer.is_some() {
            autoheal::init_metrics(&shared.metrics, &c.name);
        }
        pollers.push(Poller {
            name: c.name.clone(),
            interval: cfg.interval(c),
            timeout: cfg.timeout(c),
            detail: detail_for(c),
            source,
            spec,
            slo_lag: sli_kind(c),
            heal_policy: c.heal.as_ref().map(autoheal::policy),
            healer,
            shared: shared.clone(),
            alerts: alert_queue.clone(),
            firing: BTreeSet::new(),
            exported: BTreeMap::new(),
            last_history: None,
        });
    }

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e} (choose another --listen)",
                cfg.listen
            )
        })?;
    tracing::info!(listen = %cfg.listen, clusters = cfg.clusters.len(), "pgpatrol watch started");
    let server = tokio::spawn(server::serve(listener, shared.clone(), shutdown.clone()));

    let mut tasks = tokio::task::JoinSet::new();
    let n = pollers.len();
    for (i, p) in pollers.into_iter().enumerate() {
        let first = first_poll_offset(i, n, p.interval);
        tasks.spawn(p.run(first, shutdown.clone()));
    }
    let saver = cfg.state_file.clone().map(|path| {
        let (shared, mut stop) = (shared.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                    _ = stop.changed() => break,
                }
                state::save(&path, &shared);
            }
        })
    });

    let _ = shutdown.changed().await;
    tracing::info!("shutting down");
    while tasks.join_next().await.is_some() {}
    if let Some(s) = saver {
        let _ = s.await;
    }
    if let Some(path) = &cfg.state_file {
        state::save(path, &shared);
    }
    let _ = server.await;
    // What is queued still goes out, within one send timeout; a dead receiver does not
    // hold up the exit.
    alert_queue.close();
    let _ = tokio::time::timeout(alerts::SEND_TIMEOUT * 2, alert_task).await;
    Ok(())
}

/// When the `i`-th of `n` pollers polls first. Pollers that all started at once would poll
/// at once forever: 1,000 clusters would be 2,000 connections in flight every interval, and
/// the memory for them held as the process's peak. Pollers that each had a phase of their
/// own would wake the runtime's threads 100 times a second, and switching threads costs more
/// than the polls. So they start in groups: up to [`POLL_GROUP`] clusters together, groups
/// [`POLL_GROUP_SPACING`] apart, and bigger groups when that many would not fit in one
/// interval, so every cluster is still polled within its first interval and a fleet of up to
/// 50 clusters is polled at once.
fn first_poll_offset(i: usize, n: usize, interval: Duration) -> Duration {
    let fit = (interval.as_nanos() / POLL_GROUP_SPACING.as_nanos()).max(1);
    let groups = (n.div_ceil(POLL_GROUP) as u128).clamp(1, fit);
    // Both are at most `n`, which a u32 holds for any fleet a config file can list.
    let (groups, i) = (groups as u32, i as u32);
    POLL_GROUP_SPACING * (i % groups)
}

/// See [`first_poll_offset`]: measured with `scripts/bench-fleet` (docs/BENCHMARKS.md).
const POLL_GROUP: usize = 50;
const POLL_GROUP_SPACING: Duration = Duration::from_millis(500);

/// The lag the cluster's SLI is measured on: its SLO's `lag` (replay by default).
pub fn sli_kind(c: &ClusterConfig) -> LagKind {
    c.slo.as_ref().map_or(LagKind::Replay, |s| s.lag)
}

/// How much a poll reads. `/cluster` holds everything the metrics and the SLO need; the
/// answering node's `/patroni` (version, unlocked, failsafe) only matters to a heal plan, so
/// clusters without `heal` skip it: half the requests, and no poll fails for it.
fn detail_for(c: &ClusterConfig) -> Detail {
    if c.heal.is_some() {
        Detail::Full
    } else {
        Detail::Lag
    }
}

struct Poller {
    name: String,
    interval: Duration,
    timeout: Duration,
    detail: Detail,
    source: RestSource,
    spec: Option<SloSpec>,
    /// Which lag the SLI (and so the SLO) is measured on.
    slo_lag: LagKind,
    heal_policy: Option<pgpatrol_core::plan::Policy>,
    healer: Option<autoheal::Healer>,
    shared: Arc<Shared>,
    alerts: alerts::AlertQueue,
    firing: BTreeSet<String>,
    /// The role and state label values exported for each member, so that a change removes
    /// the one old series instead of every possible value.
    exported: BTreeMap<String, (String, String)>,
    last_history: Option<Instant>,
}

impl Poller {
    async fn run(mut self, first: Duration, mut shutdown: watch::Receiver<bool>) {
        let start = tokio::time::Instant::now() + first;
        let mut tick = tokio::time::interval_at(start, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            self.poll_once().await;
        }
        if let Some(h) = self.healer.take() {
            // The view is what the state file persists: with the reinit in flight marked
            // interrupted, a restarted watch can act on that member again.
            let view = h.shutdown().await;
            self.shared.view(&self.name, |v| v.heal = view);
        }
    }

    async fn poll_once(&mut self) {
        let m = &self.shared.metrics;
        let c = cl(&self.name);
        let t0 = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.source.snapshot(self.detail)).await;
        m.poll_duration_seconds
            .get_or_create(&c)
            .set(t0.elapsed().as_secs_f64());
        m.polls.get_or_create(&c).inc();
        let now = SystemTime::now();
        let snapshot = match result {
            Ok(Ok(s)) => Ok(s.cluster),
            Ok(Err(e)) => Err((e.metric_label(), e.to_string())),
            Err(_) => Err((
                "timeout",
                format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ),
            )),
        };
        match &snapshot {
            Ok(cluster) => {
                m.cluster_up.get_or_create(&c).set(1);
                self.export_cluster(cluster);
                self.maybe_history().await;
            }
            Err((label, msg)) => {
                tracing::warn!(cluster = %self.name, error = %msg, "poll failed");
                m.cluster_up.get_or_create(&c).set(0);
                m.poll_errors
                    .get_or_create(&ClusterReasonL {
                        cluster: self.name.clone(),
                        reason: label.to_string(),
                    })
                    .inc();
            }
        }
        // The SLI is the worst replica's lag of the kind the SLO names (`slo.lag`).
        let sli = snapshot
            .as_ref()
            .ok()
            .map(|cl| Sli::measure(cl, self.slo_lag));
        self.record_slo(sli.as_ref(), now).await;
        let plan = match (&snapshot, &mut self.healer, &self.heal_policy) {
            (Ok(cluster), Some(healer), _) => Some(
                healer
                    .on_snapshot(
                        &self.name,
                        cluster,
                        &self.source,
                        &self.shared,
                        &self.alerts,
                        now,
                    )
                    .await,
            ),
            (Ok(cluster), None, Some(policy)) => {
                Some(pgpatrol_core::policy::decide(cluster, policy, &[], now))
            }
            _ => None,
        };
        let heal_view = self.healer.as_ref().map(|h| h.view()).unwrap_or_default();
        self.shared.view(&self.name, |v| {
            v.polled = true;
            v.last_poll = Some(humantime::format_rfc3339_seconds(now).to_string());
            v.up = snapshot.is_ok();
            v.error = snapshot.as_ref().err().map(|(_, msg)| msg.clone());
            v.sli_bytes = sli.as_ref().and_then(|s| s.max_bytes);
            v.plan = plan;
            v.heal = heal_view;
        });
    }

    /// Per-member and per-cluster gauges; series of members that left are removed.
    fn export_cluster(&mut self, cluster: &Cluster) {
        let m = &self.shared.metrics;
        let name = self.name.clone();
        let c = cl(&name);
        let mut present = BTreeMap::new();
        for member in &cluster.members {
            let ml = MemberL {
                cluster: name.clone(),
                member: member.name.clone(),
            };
            let (role, state) = (bounded_role(member), bounded_state(&member.state));
            if let Some((old_role, old_state)) = self.exported.get(&member.name) {
                self.clear_role_state(
                    &member.name,
                    (old_role != &role).then_some(old_role),
                    (old_state != &state).then_some(old_state),
                );
            }
            m.member_role
                .get_or_create(&MemberRoleL {
                    cluster: name.clone(),
                    member: member.name.clone(),
                    role: role.clone(),
                })
                .set(1);
            m.member_state
                .get_or_create(&MemberStateL {
                    cluster: name.clone(),
                    member: member.name.clone(),
                    state: state.clone(),
                })
                .set(1);
            present.insert(member.name.clone(), (role, state));
            if let Some(tl) = member.timeline {
                m.member_timeline.get_or_create(&ml).set(tl as i64);
            }
            m.member_up
                .get_or_create(&ml)
                .set(i64::from(member.state.is_healthy_replica()));
            for kind in [LagKind::Receive, LagKind::Replay] {
                let Some(lag) = member.lag(kind) else {
                    continue;
                };
                let l = MemberKindL {
                    cluster: name.clone(),
                    member: member.name.clone(),
                    kind: kind.as_str().into(),
                };
                match lag.bytes() {
                    Some(b) => {
                        m.member_lag_bytes.get_or_create(&l).set(b as f64);
                        m.member_lag_unknown.get_or_create(&l).set(0);
                    }
                    None => {
                        m.member_lag_bytes.remove(&l);
                        m.member_lag_unknown.get_or_create(&l).set(1);
                    }
                }
            }
        }
        for (gone, (role, state)) in &self.exported {
            if !present.contains_key(gone) {
                self.clear_role_state(gone, Some(role), Some(state));
                self.clear_member(gone);
            }
        }
        self.exported = present;
        for kind in [LagKind::Receive, LagKind::Replay] {
            let sli = Sli::measure(cluster, kind);
            let l = ClusterKindL {
                cluster: name.clone(),
                kind: kind.as_str().into(),
            };
            if let Some(b) = sli.max_bytes {
                m.cluster_sli_bytes.get_or_create(&l).set(b as f64);
            } else {
                m.cluster_sli_bytes.remove(&l);
            }
            if kind == LagKind::Replay {
                m.cluster_lag_unknown_members
                    .get_or_create(&c)
                    .set(sli.unknown.len() as i64);
                m.cluster_leaders
                    .get_or_create(&c)
                    .set(sli.leader_count as i64);
            }
        }
        m.cluster_paused
            .get_or_create(&c)
            .set(i64::from(cluster.paused));
        m.cluster_members
            .get_or_create(&c)
            .set(cluster.members.len() as i64);
        if let Some(tl) = cluster.leader().and_then(|l| l.timeline) {
            m.cluster_timeline.get_or_create(&c).set(tl as i64);
        }
    }

    /// Removes a member's role and/or state series (the values given).
    fn clear_role_state(&self, member: &str, role: Option<&String>, state: Option<&String>) {
        let m = &self.shared.metrics;
        if let Some(role) = role {
            m.member_role.remove(&MemberRoleL {
                cluster: self.name.clone(),
                member: member.into(),
                role: role.clone(),
            });
        }
        if let Some(state) = state {
            m.member_state.remove(&MemberStateL {
                cluster: self.name.clone(),
                member: member.into(),
                state: state.clone(),
            });
        }
    }

    /// Removes the other series of a member that left the cluster.
    fn clear_member(&self, member: &str) {
        let m = &self.shared.metrics;
        let ml = MemberL {
            cluster: self.name.clone(),
            member: member.into(),
        };
        m.member_timeline.remove(&ml);
        m.member_up.remove(&ml);
        for kind in ["receive", "replay"] {
            let l = MemberKindL {
                cluster: self.name.clone(),
                member: member.into(),
                kind: kind.into(),
            };
            m.member_lag_bytes.remove(&l);
            m.member_lag_unknown.remove(&l);
        }
    }

    /// `/history` changes rarely: read it once a minute for the failover counts.
    async fn maybe_history(&mut self) {
        if self
            .last_history
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.last_history = Some(Instant::now());
        let Ok(Ok(history)) = tokio::time::timeout(self.timeout, self.source.history()).await
        else {
            return;
        };
        let m = &self.shared.metrics;
        let c = cl(&self.name);
        m.cluster_failovers
            .get_or_create(&c)
            .set(history.len() as i64);
        let day_ago = SystemTime::now() - Duration::from_secs(86_400);
        let recent = history
            .iter()
            .filter_map(|h| h.timestamp.as_deref().and_then(crate::time::parse_iso8601))
            .filter(|t| *t >= day_ago)
            .count();
        m.cluster_failovers_24h.get_or_create(&c).set(recent as i64);
    }

    async fn record_slo(&mut self, sli: Option<&Sli>, now: SystemTime) {
        let Some(spec) = &self.spec else { return };
        // Good: a leader, every replica's lag known, and the max at or below the threshold.
        let good = spec.is_good(sli);
        let status = {
            let mut samples = self
                .shared
                .samples
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let log = samples
                .entry(self.name.clone())
                .or_insert_with(|| SampleLog::for_spec(spec));
            log.record(now, good);
            slo::evaluate(spec, log, now)
        };
        let m = &self.shared.metrics;
        let c = cl(&self.name);
        // Both series exist from the first sample on, so rates over them are defined
        // (a ratio over a missing `bad` series would have no value at all).
        for result in ["good", "bad"] {
            let _ = m.slo_samples.get_or_create(&ClusterResultL {
                cluster: self.name.clone(),
                result: result.into(),
            });
        }
        m.slo_samples
            .get_or_create(&ClusterResultL {
                cluster: self.name.clone(),
                result: if good { "good" } else { "bad" }.into(),
            })
            .inc();
        m.slo_objective.get_or_create(&c).set(spec.objective);
        m.slo_threshold_bytes
            .get_or_create(&c)
            .set(spec.threshold_bytes as f64);
        if let Some(r) = status.good_ratio {
            m.slo_good_ratio.get_or_create(&c).set(r);
        }
        if let Some(b) = status.error_budget_remaining {
            m.slo_error_budget_remaining.get_or_create(&c).set(b);
        }
        for (window, rate) in &status.burn_rates {
            m.slo_burn_rate
                .get_or_create(&ClusterWindowL {
                    cluster: self.name.clone(),
                    window: window.clone(),
                })
                .set(*rate);
        }
        for a in &status.alerts {
            let sev = match a.severity {
                slo::Severity::Page => "page",
                slo::Severity::Ticket => "ticket",
            };
            m.slo_alert_firing
                .get_or_create(&AlertL {
                    cluster: self.name.clone(),
                    alert: a.name.clone(),
                    severity: sev.into(),
                })
                .set(i64::from(a.firing));
            let was = self.firing.contains(&a.name);
            if a.firing != was {
                if a.firing {
                    self.firing.insert(a.name.clone());
                } else {
                    self.firing.remove(&a.name);
                }
                let ev = AlertEvent {
                    alertname: "PgpatrolReplicaLagBudgetBurn".into(),
                    cluster: self.name.clone(),
                    severity: sev.into(),
                    firing: a.firing,
                    summary: format!("Replica lag of {} burns its error budget {:.1}x too fast", self.name, a.burn_long),
                    description: format!(
                        "Lag SLO {:.3}% of samples at or below {}: burn rate {:.1} over the long window and {:.1} over the short one (threshold {}).",
                        spec.objective * 100.0,
                        pgpatrol_core::units::human(spec.threshold_bytes),
                        a.burn_long,
                        a.burn_short,
                        a.factor
                    ),
                    labels: [("slo_alert".to_string(), a.name.clone())].into_iter().collect(),
                };
                self.alerts.push(ev);
            }
        }
        self.shared.view(&self.name, |v| v.slo = Some(status));
    }
}

/// Roles outside Patroni's set become `other`, so label values stay bounded.
fn bounded_role(m: &pgpatrol_core::Member) -> String {
    match &m.role {
        pgpatrol_core::Role::Other(_) => "other".into(),
        r => r.as_str().into(),
    }
}

fn bounded_state(s: &State) -> String {
    match s {
        State::Other(_) => "other".into(),
        s => s.as_str().into(),
    }
}

/// A persisted log is reused only when the SLO it was made for has the same bucket layout;
/// otherwise (the window changed) the samples start afresh.
fn same_shape(a: &SampleLog, b: &SampleLog) -> bool {
    (
        a.fine_width(),
        a.fine_span(),
        a.coarse_width(),
        a.coarse_span(),
    ) == (
        b.fine_width(),
        b.fine_span(),
        b.coarse_width(),
        b.coarse_span(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_poller(shared: Arc<Shared>) -> Poller {
        let http = crate::source::rest::Http::new(&Default::default()).unwrap();
        Poller {
            name: "demo".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            detail: Detail::Lag,
            source: RestSource::new(http, &["http://127.0.0.1:1".to_string()]).unwrap(),
            spec: None,
            slo_lag: LagKind::Replay,
            heal_policy: None,
            healer: None,
            shared,
            alerts: alerts::AlertQueue::new(1, Default::default()),
            firing: BTreeSet::new(),
            exported: BTreeMap::new(),
            last_history: None,
        }
    }

    fn series(shared: &Shared, family: &str) -> Vec<String> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &shared.registry).unwrap();
        let prefix = format!("pgpatrol_{family}{{");
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(|l| l.rsplit_once(' ').map_or(l, |(k, _)| k).to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn one_role_and_state_series_per_member_and_none_once_it_left() {
        let cfg =
            WatchConfig::parse("clusters:\n  - {name: demo, urls: [http://x:8008]}\n").unwrap();
        let shared = Arc::new(Shared::new(&cfg));
        let mut p = test_poller(shared.clone());
        use pgpatrol_core::fixtures::ClusterBuilder;
        p.export_cluster(&ClusterBuilder::new().leader("a").replica("b").build());
        p.export_cluster(
            &ClusterBuilder::new()
                .replica("a")
                .leader("b")
                .replica("c")
                .state(State::Stopped)
                .build(),
        );
        assert_eq!(
            series(&shared, "member_role"),
            [
                r#"pgpatrol_member_role{cluster="demo",member="a",role="replica"}"#,
                r#"pgpatrol_member_role{cluster="demo",member="b",role="leader"}"#,
                r#"pgpatrol_member_role{cluster="demo",member="c",role="replica"}"#,
            ]
        );
        assert!(series(&shared, "member_state").contains(
            &r#"pgpatrol_member_state{cluster="demo",member="c",state="stopped"}"#.into()
        ));
        p.export_cluster(&ClusterBuilder::new().leader("b").build());
        assert_eq!(
            series(&shared, "member_role"),
            [r#"pgpatrol_member_role{cluster="demo",member="b",role="leader"}"#]
        );
        assert_eq!(
            series(&shared, "member_state"),
            [r#"pgpatrol_member_state{cluster="demo",member="b",state="running"}"#]
        );
        for family in [
            "member_up",
            "member_timeline",
            "member_lag_bytes",
            "member_lag_unknown",
        ] {
            assert!(
                series(&shared, family)
                    .iter()
                    .all(|l| l.contains(r#"member="b""#)),
                "{family}: {:?}",
                series(&shared, family)
            );
        }
    }

    #[test]
    fn only_clusters_with_heal_read_patroni_every_poll() {
        let cfg = WatchConfig::parse(
            "clusters:\n  - {name: a, urls: [x]}\n  - {name: b, urls: [y], heal: {enabled: false, tolerance: 5}}\n",
        )
        .unwrap();
        assert_eq!(detail_for(&cfg.clusters[0]), Detail::Lag);
        assert_eq!(detail_for(&cfg.clusters[1]), Detail::Full);
    }

    #[test]
    fn first_polls_start_in_groups_within_one_interval() {
        let ten = Duration::from_secs(10);
        let offsets = |n: usize, interval| {
            (0..n)
                .map(|i| first_poll_offset(i, n, interval))
                .collect::<Vec<_>>()
        };
        assert!(offsets(50, ten).iter().all(|d| d.is_zero()));
        let o = offsets(1000, ten);
        assert_eq!(o.iter().filter(|d| d.is_zero()).count(), 50);
        assert_eq!(o.iter().max(), Some(&Duration::from_millis(9500)));
        let o = offsets(5000, ten);
        assert_eq!(o.iter().filter(|d| d.is_zero()).count(), 250);
        assert!(o.iter().all(|d| *d < ten));
        assert!(offsets(500, Duration::from_millis(200))
            .iter()
            .all(|d| d.is_zero()));
    }
}
