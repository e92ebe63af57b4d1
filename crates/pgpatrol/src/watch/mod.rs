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
//!
//! `run.rs` starts and stops everything, `poller.rs` is one cluster's loop, `export.rs` its
//! metrics; auto-heal (`autoheal.rs`) runs its plans through the executor's plan runner.

pub mod alerts;
pub mod autoheal;
pub mod config;
pub mod events;
pub mod lease;
pub mod metrics;
pub mod page;
pub mod server;
pub mod state;

mod checks;
mod export;
mod fleet;
mod members;
mod poller;
mod run;
mod shard;

pub use run::run;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use pgpatrol_core::heal::Plan;
use pgpatrol_core::slo::{self, SampleLog, SloSpec, SloStatus};
use pgpatrol_core::LagKind;

use crate::source::Detail;
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
    /// doctor's checks at their last run (with a `checks:` section).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<pgpatrol_core::checks::Check>,
    /// A standby cluster's lag against its `source:` at the last poll...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby: Option<crate::source::standby::StandbyLag>,
    /// ... or why it could not be computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby_error: Option<String>,
    /// The last good reading, for the status page (not in `/plan`).
    #[serde(skip)]
    pub cluster: Option<std::sync::Arc<pgpatrol_core::Cluster>>,
    /// Replay lag in seconds per member, from PostgreSQL (with a `postgres:` login).
    #[serde(skip)]
    pub lag_seconds: BTreeMap<String, f64>,
}

/// State shared by the pollers and the HTTP server.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Metrics,
    /// Every family, each encoded on its own (`/metrics` streams them).
    pub registry: metrics::Families,
    /// `metrics: {burn_rates: true}`: export each SLO window's burn rate.
    pub burn_rates: bool,
    pub views: Mutex<BTreeMap<String, ClusterView>>,
    pub samples: Mutex<BTreeMap<String, SampleLog>>,
    pub started: Instant,
    /// What happened, per cluster (`/events`, `/events/stream`).
    pub events: events::Events,
    /// Each cluster's settings the page shows (tolerance, SLO, source); discovered clusters
    /// come and go.
    settings: Mutex<BTreeMap<String, events::PageSettings>>,
    /// This watcher's share of the listed clusters (`shard:`).
    pub shard: pgpatrol_core::shard::Shard,
    /// The fleet task's first pass is done (the DCS read, the ring of watchers known; true
    /// without `discover:` and dynamic sharding): `/readyz` waits for it.
    pub discovered: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn new(cfg: &WatchConfig) -> Self {
        let metrics = Metrics::default();
        let mut registry = metrics::Families::default();
        metrics.register(&mut registry);
        let views = cfg
            .clusters
            .iter()
            .map(|c| (c.name.clone(), ClusterView::default()))
            .collect();
        Shared {
            metrics,
            registry,
            burn_rates: cfg.metrics.burn_rates,
            views: Mutex::new(views),
            samples: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
            events: events::Events::default(),
            settings: Mutex::new(
                cfg.clusters
                    .iter()
                    .map(|c| (c.name.clone(), events::PageSettings::of(c)))
                    .collect(),
            ),
            shard: pgpatrol_core::shard::Shard::ALL,
            discovered: std::sync::atomic::AtomicBool::new(
                cfg.discover.is_none() && !cfg.shard.as_ref().is_some_and(|s| s.is_dynamic()),
            ),
        }
    }

    /// Emits an event: logged, counted, journaled, streamed.
    pub fn emit(&self, e: pgpatrol_core::events::Event) {
        self.events.emit(e, &self.metrics);
    }

    /// Every cluster's page settings, as they are now.
    pub fn settings(&self) -> BTreeMap<String, events::PageSettings> {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One cluster's page settings.
    pub fn setting(&self, cluster: &str) -> Option<events::PageSettings> {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(cluster)
            .cloned()
    }

    /// A cluster this watcher starts polling now (discovered).
    fn add(&self, c: &ClusterConfig) {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(c.name.clone(), events::PageSettings::of(c));
    }

    /// A cluster this watcher no longer polls: its view, settings, samples and series go.
    fn drop_cluster(&self, cluster: &str) {
        self.views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(cluster);
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(cluster);
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(cluster);
        self.metrics.forget(cluster);
    }

    fn view<R>(&self, cluster: &str, f: impl FnOnce(&mut ClusterView) -> R) -> R {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        f(views.entry(cluster.to_string()).or_default())
    }
}

/// The `cluster` label of a cluster named `cluster` (its poller's shared name when given
/// one, see [`metrics::Name`]).
fn cl(cluster: impl Into<metrics::Name>) -> ClusterL {
    ClusterL {
        cluster: cluster.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clusters_with_heal_read_patroni_every_poll() {
        let cfg = WatchConfig::parse(
            "clusters:\n  - {name: a, urls: [x]}\n  - {name: b, urls: [y], heal: {enabled: false, tolerance: 5}}\n",
        )
        .unwrap();
        assert_eq!(detail_for(&cfg.clusters[0]), Detail::Lag);
        assert_eq!(detail_for(&cfg.clusters[1]), Detail::Full);
    }
}
