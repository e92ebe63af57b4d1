//! One cluster's poller: every tick a snapshot, the metrics (export.rs), an SLO sample
//! and its burn-rate alerts, and the auto-heal decision.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use pgpatrol_core::sli::Sli;
use pgpatrol_core::slo::{self, SampleLog, SloSpec};
use pgpatrol_core::LagKind;

use super::alerts::{self, AlertEvent};
use super::config::SloOf;
use super::metrics::*;
use super::{autoheal, cl, Shared};
use crate::source::{ClusterSource, Detail};

pub(super) struct Poller {
    /// The cluster's name: the `cluster` label every series of it shares.
    pub(super) name: super::metrics::Name,
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) detail: Detail,
    pub(super) source: ClusterSource,
    pub(super) spec: Option<SloSpec>,
    /// Which lag the SLI (and so the SLO) is measured on.
    pub(super) slo_lag: LagKind,
    pub(super) heal_policy: Option<pgpatrol_core::heal::Policy>,
    /// Boxed, as the other optional parts: a cluster without them costs a pointer each
    /// in its task, not their size (10,000 tasks).
    pub(super) healer: Option<Box<autoheal::Healer>>,
    pub(super) shared: Arc<Shared>,
    pub(super) alerts: alerts::AlertQueue,
    pub(super) firing: BTreeSet<String>,
    /// The role and state label values exported for each member, so that a change removes
    /// the one old series instead of every possible value.
    pub(super) exported: BTreeMap<String, (&'static str, &'static str)>,
    pub(super) last_history: Option<Instant>,
    /// doctor's checks, with a `checks:` section.
    pub(super) checks: Option<Box<super::checks::CheckRunner>>,
    /// The PostgreSQL login for lag in seconds (a cluster's `postgres:`).
    pub(super) pg: Option<crate::source::pg::PgLogin>,
    /// Heal's `by: trend` evidence: the lag samples of the polls in the trend window, and
    /// what PostgreSQL says of WAL gone and the data size.
    pub(super) trend: pgpatrol_core::heal::Evidence,
    /// A standby cluster's `source:` URL: its lag against it, every poll.
    pub(super) standby_source: Option<String>,
    /// What the SLO is held on (`slo.of`).
    pub(super) slo_of: SloOf,
    /// The first read at the standby leader's current replayed position, and when.
    pub(super) standby_seen: Option<Box<(crate::source::standby::StandbyLag, Instant)>>,
    /// The last good reading, and what else the event log compares with: the same
    /// allocation as the page's view of it (10,000 clusters: one copy each, not two).
    pub(super) last_cluster: Option<Arc<pgpatrol_core::Cluster>>,
    pub(super) seen: super::events::Seen,
}

impl Poller {
    /// Polls until `shutdown`. Boxed `self`: an async fn keeps its arguments beside its
    /// locals, so a poller moved in by value would sit twice in every cluster's task.
    pub(super) async fn run(
        mut self: Box<Self>,
        first: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let start = tokio::time::Instant::now() + first;
        let mut tick = tokio::time::interval_at(start, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            // Boxed: a poll's state (requests, the snapshot, the SLO evaluation) is several
            // KiB and exists only while a poll runs; inline it would sit in every cluster's
            // task between polls (10,000 clusters: over 100 MiB).
            Box::pin(self.poll_once()).await;
        }
        if let Some(h) = self.healer.take() {
            // The view is what the state file persists: with the reinit in flight marked
            // interrupted, a restarted watch can act on that member again.
            let view = Box::pin(h.shutdown()).await;
            self.shared.view(&self.name, |v| v.heal = view);
        }
    }

    async fn poll_once(&mut self) {
        let m = &self.shared.metrics;
        let c = cl(self.name.clone());
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
        let at = humantime::format_rfc3339_seconds(now).to_string();
        if let Some(e) = self.seen.reachability(
            &self.name,
            snapshot.as_ref().err().map(|(_, msg)| msg.as_str()),
            &at,
        ) {
            self.shared.emit(e);
        }
        if let Ok(cluster) = &snapshot {
            let (lag, tolerance) = self
                .shared
                .setting(&self.name)
                .map_or((self.slo_lag, 5 << 20), |s| (s.lag, s.tolerance));
            if let Some(before) = &self.last_cluster {
                for e in
                    pgpatrol_core::events::derive(&self.name, before, cluster, lag, tolerance, &at)
                {
                    self.shared.emit(e);
                }
            }
        }
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
                        reason: (*label).into(),
                    })
                    .inc();
            }
        }
        // The SLI is the worst replica's lag of the kind the SLO names (`slo.lag`).
        let sli = snapshot
            .as_ref()
            .ok()
            .map(|cl| Sli::measure(cl, self.slo_lag));
        let standby = match (&snapshot, &self.standby_source) {
            (_, None) => None,
            (Ok(cluster), Some(url)) => Some(self.standby_lag(cluster, url).await.map(|mut l| {
                self.track_archive_stall(&mut l, Instant::now());
                l
            })),
            (Err((_, msg)), Some(_)) => {
                Some(Err(format!("the standby cluster was not read: {msg}")))
            }
        };
        if let (Some(url), Some(lag)) = (&self.standby_source, &standby) {
            self.export_standby(url, lag);
        }
        let good = match (self.slo_of, &standby) {
            (SloOf::Replicas, _) => self.spec.as_ref().map(|s| s.is_good(sli.as_ref())),
            // Unknown is never 0: a lag that cannot be computed is a bad sample.
            (SloOf::Standby, lag) => self.spec.as_ref().map(|s| {
                lag.as_ref()
                    .and_then(|l| l.as_ref().ok())
                    .and_then(|l| standby_bytes(l, self.slo_lag))
                    .is_some_and(|b| b <= s.threshold_bytes)
            }),
        };
        if let Some(good) = good {
            self.record_slo(good, now).await;
        }
        if let (Ok(cluster), Some(policy)) = (&snapshot, &self.heal_policy) {
            if policy.by == pgpatrol_core::heal::DecideBy::Trend {
                self.trend
                    .record(cluster, policy.lag, now, policy.trend.window);
                self.trend_evidence(cluster, policy.clone()).await;
            }
        }
        // What keeps a lagging replica behind on purpose (only replicas at or above the
        // tolerance are read: a healthy poll costs nothing more).
        let snapshot = match (snapshot, &self.heal_policy) {
            (Ok(mut cluster), Some(policy)) => {
                crate::source::kept::read(
                    &self.source,
                    &mut cluster,
                    policy.lag,
                    policy.tolerance,
                    self.pg.as_ref(),
                )
                .await;
                Ok(cluster)
            }
            (other, _) => other,
        };
        let plan = match (&snapshot, &mut self.healer, &self.heal_policy) {
            (Ok(cluster), Some(healer), _) => Some(
                healer
                    .on_snapshot(
                        &self.name,
                        cluster,
                        &self.source,
                        self.pg.as_ref(),
                        &self.shared,
                        &self.alerts,
                        &self.trend,
                        now,
                    )
                    .await,
            ),
            (Ok(cluster), None, Some(policy)) => Some(pgpatrol_core::heal::decide_with(
                cluster,
                policy,
                &[],
                &self.trend,
                now,
            )),
            _ => None,
        };
        let lag_seconds = match (&self.pg, &snapshot) {
            (Some(login), Ok(cluster)) => Some(self.export_lag_seconds(cluster, login).await),
            _ => None,
        };
        let checks = match &mut self.checks {
            Some(runner) => {
                if let Ok(cluster) = &snapshot {
                    runner.observe(cluster);
                }
                if runner.due() {
                    let err = snapshot.as_ref().err().map(|(_, msg)| msg.clone());
                    Some(
                        runner
                            .run(&self.name, &self.source, err, &self.shared.metrics)
                            .await,
                    )
                } else {
                    None
                }
            }
            None => None,
        };
        let heal_view = self.healer.as_ref().map(|h| h.view()).unwrap_or_default();
        let mut happened = Vec::new();
        if let Some(c) = &checks {
            happened.extend(self.seen.checks(&self.name, c, &at));
        }
        if heal_view.enabled || plan.is_some() {
            let stop = heal_view.last_stop.as_ref().map(|s| {
                let kind = serde_json::to_value(s.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                format!("{kind}: {}", s.detail)
            });
            happened.extend(self.seen.heal(
                &self.name,
                plan.as_ref(),
                &heal_view.history,
                stop,
                &at,
            ));
        }
        for e in happened {
            self.shared.emit(e);
        }
        let (up, error) = match snapshot {
            Ok(c) => {
                self.last_cluster = Some(Arc::new(c));
                (true, None)
            }
            Err((_, msg)) => (false, Some(msg)),
        };
        let last = if up { self.last_cluster.clone() } else { None };
        self.shared.view(&self.name, |v| {
            if let Some(c) = checks {
                v.checks = c;
            }
            v.polled = true;
            v.last_poll = Some(humantime::format_rfc3339_seconds(now).to_string());
            v.up = up;
            if last.is_some() {
                v.cluster = last;
            }
            if let Some(l) = lag_seconds {
                v.lag_seconds = l;
            }
            v.error = error;
            v.sli_bytes = sli.as_ref().and_then(|s| s.max_bytes);
            match standby {
                Some(Ok(lag)) => {
                    v.standby = Some(lag);
                    v.standby_error = None;
                }
                Some(Err(e)) => {
                    v.standby = None;
                    v.standby_error = Some(e);
                }
                None => {}
            }
            v.plan = plan;
            v.heal = heal_view;
        });
    }
    /// `pgpatrol_member_lag_seconds`: doctor's measurement, every poll (and for the page).
    async fn export_lag_seconds(
        &self,
        cluster: &pgpatrol_core::Cluster,
        login: &crate::source::pg::PgLogin,
    ) -> std::collections::BTreeMap<String, f64> {
        let mut seen = std::collections::BTreeMap::new();
        let pg =
            crate::source::pg::evidence_with(cluster, login, crate::source::pg::Queries::Lag).await;
        let m = &self.shared.metrics;
        for (member, secs) in pgpatrol_core::checks::lag_seconds_by_member(&pg) {
            let l = MemberL {
                cluster: self.name.clone(),
                member: member.as_str().into(),
            };
            match secs {
                Some(s) => {
                    seen.insert(member, s);
                    m.member_lag_seconds.get_or_create(&l).set(s);
                }
                None => {
                    m.member_lag_seconds.remove(&l);
                }
            }
        }
        seen
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
        let c = cl(self.name.clone());
        // The last 24 h are `increase(pgpatrol_cluster_failovers[24h])` in Prometheus.
        m.cluster_failovers
            .get_or_create(&c)
            .set(history.len() as i64);
    }

    /// The standby leader's lag against `url`, within the poll timeout; errors in one line.
    async fn standby_lag(
        &self,
        cluster: &pgpatrol_core::Cluster,
        url: &str,
    ) -> Result<crate::source::standby::StandbyLag, String> {
        match tokio::time::timeout(
            self.timeout,
            crate::source::standby::standby_lag(&self.source, cluster, url),
        )
        .await
        {
            Ok(Ok(lag)) => Ok(lag),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "source {url}: no answer within {}",
                humantime::format_duration(self.timeout)
            )),
        }
    }

    /// An archive-fed standby leader whose replay stood still for [`ARCHIVE_STALL_AFTER`]
    /// with the source two segments ahead is not replicating (`archive_stalled_seconds`).
    pub(super) fn track_archive_stall(
        &mut self,
        lag: &mut crate::source::standby::StandbyLag,
        now: Instant,
    ) {
        use crate::source::standby::ARCHIVE_STALL_AFTER;
        match self.standby_seen.as_deref() {
            Some((first, since)) if lag.archive_stalled_since(first) => {
                let stood = now.saturating_duration_since(*since);
                if stood >= ARCHIVE_STALL_AFTER {
                    lag.archive_stalled_seconds = Some(stood.as_secs());
                }
            }
            _ => self.standby_seen = Some(Box::new((lag.clone(), now))),
        }
    }

    /// `pgpatrol_standby_*`: the series of what is known, none of what is not.
    pub(super) fn export_standby(
        &self,
        url: &str,
        lag: &Result<crate::source::standby::StandbyLag, String>,
    ) {
        let m = &self.shared.metrics;
        let l = SourceL {
            cluster: self.name.clone(),
            source: url.into(),
        };
        let ok = lag.as_ref().ok();
        if let Err(e) = lag {
            tracing::warn!(cluster = %self.name, source = %url, error = %e, "standby lag unknown");
        }
        for kind in [LagKind::Receive, LagKind::Replay] {
            let k = SourceKindL {
                cluster: self.name.clone(),
                source: url.into(),
                kind: kind.as_str().into(),
            };
            match ok.and_then(|l| standby_bytes(l, kind)) {
                Some(b) => {
                    m.standby_lag_bytes.get_or_create(&k).set(b as f64);
                }
                None => {
                    m.standby_lag_bytes.remove(&k);
                }
            }
        }
        match ok.and_then(|l| l.replay_lag_seconds) {
            Some(s) => {
                m.standby_lag_seconds.get_or_create(&l).set(s);
            }
            None => {
                m.standby_lag_seconds.remove(&l);
            }
        }
        let unknown = ok.and_then(|l| standby_bytes(l, self.slo_lag)).is_none();
        m.standby_lag_unknown
            .get_or_create(&l)
            .set(i64::from(unknown));
        let replicating = ok.is_some_and(|l| {
            l.replication_state.is_some() && !l.replay_paused && l.archive_stalled_seconds.is_none()
        });
        m.standby_replicating
            .get_or_create(&l)
            .set(i64::from(replicating));
    }

    /// Records one SLO sample (good: the SLI at or below the threshold, everything known).
    async fn record_slo(&mut self, good: bool, now: SystemTime) {
        let Some(spec) = &self.spec else { return };
        let status = {
            let mut samples = self
                .shared
                .samples
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let log = samples
                .entry(self.name.to_string())
                .or_insert_with(|| SampleLog::for_spec(spec));
            log.record(now, good);
            slo::evaluate(spec, log, now)
        };
        let m = &self.shared.metrics;
        let c = cl(self.name.clone());
        // Both series exist from the first sample on, so rates over them are defined
        // (a ratio over a missing `bad` series would have no value at all).
        for result in ["good", "bad"] {
            let _ = m.slo_samples.get_or_create(&ClusterResultL {
                cluster: self.name.clone(),
                result: Name::from_static(result),
            });
        }
        m.slo_samples
            .get_or_create(&ClusterResultL {
                cluster: self.name.clone(),
                result: Name::from_static(if good { "good" } else { "bad" }),
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
        for (window, rate) in status.burn_rates.iter().filter(|_| self.shared.burn_rates) {
            m.slo_burn_rate
                .get_or_create(&ClusterWindowL {
                    cluster: self.name.clone(),
                    window: window.as_str().into(),
                })
                .set(*rate);
        }
        for a in &status.alerts {
            let sev = match a.severity {
                slo::Severity::Page => "page",
                slo::Severity::Ticket => "ticket",
            };
            // Only while it fires, as Prometheus's own ALERTS: a quiet fleet has none.
            let alert = AlertL {
                cluster: self.name.clone(),
                alert: (&a.name).into(),
                severity: sev.into(),
            };
            if a.firing {
                m.slo_alert_firing.get_or_create(&alert).set(1);
            } else {
                m.slo_alert_firing.remove(&alert);
            }
            let was = self.firing.contains(&a.name);
            if a.firing != was {
                if a.firing {
                    self.firing.insert(a.name.clone());
                } else {
                    self.firing.remove(&a.name);
                }
                let ev = AlertEvent {
                    alertname: "PgpatrolReplicaLagBudgetBurn".into(),
                    cluster: self.name.to_string(),
                    severity: sev.into(),
                    firing: a.firing,
                    summary: match (self.slo_of, &self.standby_source) {
                        (SloOf::Standby, Some(src)) => format!("Standby lag of {} against {src} burns its error budget {:.1}x too fast", self.name, a.burn_long),
                        _ => format!("Replica lag of {} burns its error budget {:.1}x too fast", self.name, a.burn_long),
                    },
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
                let time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
                self.shared.emit(pgpatrol_core::events::Event::new(
                    &time,
                    &self.name,
                    None,
                    if a.firing {
                        pgpatrol_core::events::EventKind::AlertFired
                    } else {
                        pgpatrol_core::events::EventKind::AlertResolved
                    },
                    format!(
                        "SLO alert {} {}: {}",
                        a.name,
                        if a.firing { "fired" } else { "resolved" },
                        ev.summary
                    ),
                ));
                self.alerts.push(ev);
            }
        }
        self.shared.view(&self.name, |v| v.slo = Some(status));
    }
}

/// The standby leader's lag of `kind` against its source, in bytes.
fn standby_bytes(l: &crate::source::standby::StandbyLag, kind: LagKind) -> Option<u64> {
    match kind {
        LagKind::Receive => l.receive_lag,
        LagKind::Replay => l.replay_lag,
    }
}

impl Poller {
    /// With a `postgres:` login, and only while a replica is beyond the tolerance (the only
    /// time trend mode asks): which replicas' WAL is gone, and the data size.
    async fn trend_evidence(
        &mut self,
        cluster: &pgpatrol_core::Cluster,
        policy: pgpatrol_core::heal::Policy,
    ) {
        let breaching = cluster.replicas().any(|m| {
            m.lag(policy.lag)
                .and_then(|l| l.bytes())
                .is_some_and(|b| b >= policy.tolerance)
        });
        let Some(login) = self.pg.as_ref().filter(|_| breaching) else {
            self.trend.wal_gone.clear();
            return;
        };
        let pg =
            crate::source::pg::evidence_with(cluster, login, crate::source::pg::Queries::Trend)
                .await;
        self.trend.wal_gone = pgpatrol_core::heal::wal_gone(&pg);
        if let Some(b) = pgpatrol_core::heal::data_bytes(&pg) {
            self.trend.data_bytes = Some(b);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::watch) fn test_poller(shared: Arc<Shared>) -> Poller {
        let http = crate::source::http::Http::new(&Default::default()).unwrap();
        Poller {
            name: "demo".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            detail: Detail::Lag,
            source: ClusterSource::new(http, &["http://127.0.0.1:1".to_string()]).unwrap(),
            spec: None,
            slo_lag: LagKind::Replay,
            heal_policy: None,
            healer: None,
            shared,
            alerts: alerts::AlertQueue::new(1, Default::default()),
            firing: BTreeSet::new(),
            exported: BTreeMap::new(),
            last_history: None,
            checks: None,
            pg: None,
            trend: Default::default(),
            standby_source: None,
            slo_of: SloOf::Replicas,
            standby_seen: None,
            last_cluster: None,
            seen: Default::default(),
        }
    }

    pub(in crate::watch) fn series(shared: &Shared, family: &str) -> Vec<String> {
        let mut text = String::new();
        shared.registry.encode(&mut text).unwrap();
        let prefix = format!("pgpatrol_{family}{{");
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(|l| l.rsplit_once(' ').map_or(l, |(k, _)| k).to_string())
            .collect();
        v.sort();
        v
    }
}
#[cfg(test)]
mod size {
    /// Every cluster is one task holding its poller between polls: 10,000 clusters are
    /// 10,000 of them (docs/BENCHMARKS.md, the watch at 10,000 clusters). The poller keeps
    /// its optional parts boxed and the task holds it by pointer; a poll's own state is
    /// boxed too and exists only while it runs. Before: 2,184 bytes of poller, held twice
    /// (an async fn keeps its arguments beside its locals), and the poll inline: about
    /// 6.5 KiB a task.
    #[test]
    fn a_clusters_task_between_polls_stays_small() {
        let cfg = crate::watch::config::WatchConfig::parse(
            "clusters: [{name: demo, urls: ['http://127.0.0.1:1']}]",
        )
        .unwrap();
        let shared = std::sync::Arc::new(crate::watch::Shared::new(&cfg));
        let p = super::tests::test_poller(shared);
        assert!(
            std::mem::size_of_val(&p) <= 1024,
            "{}",
            std::mem::size_of_val(&p)
        );
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let task = Box::new(p).run(std::time::Duration::ZERO, rx);
        assert!(
            std::mem::size_of_val(&task) <= 512,
            "{}",
            std::mem::size_of_val(&task)
        );
    }
}
