//! Every metric `watch` exports, defined once, with bounded label sets (cluster and member
//! names come from the config and from Patroni; roles, states, kinds, windows and reasons
//! are closed sets). Names and meanings are documented in docs/METRICS.md.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::AtomicU64;
use std::sync::RwLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub type FGauge = Gauge<f64, AtomicU64>;

/// A label value, one shared allocation that every series carrying it points to (a
/// cluster's name in its 30-odd series, a member's in its ten): a clone is a pointer, not
/// a copy of the text; the closed sets (kinds, roles, states) are static text, never
/// allocated. 10,000 clusters are 300,000 series, each looked up on every poll.
#[derive(Clone)]
pub enum Name {
    Static(&'static str),
    Shared(std::sync::Arc<str>),
}

impl Name {
    pub const fn from_static(s: &'static str) -> Name {
        Name::Static(s)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Name::Static(s) => s,
            Name::Shared(s) => s,
        }
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        // The same allocation (a series looked up by its own poller): no text compared.
        std::ptr::eq(a, b) || a == b
    }
}

impl Eq for Name {}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name::Shared(s.into())
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name::Shared(s.into())
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        Name::Shared(s.as_str().into())
    }
}

impl prometheus_client::encoding::EncodeLabelValue for Name {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        prometheus_client::encoding::EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// The metric families, each in a registry of its own, so that `/metrics` is encoded and
/// sent one family at a time: a scrape holds one family's text at once, never the whole
/// body (a 10,000-cluster fleet is tens of MB of text). Each family's last size is kept so
/// that its next text is allocated at once, not grown by doubling.
#[derive(Debug, Default)]
pub struct Families {
    registries: Vec<Registry>,
    sizes: Vec<std::sync::atomic::AtomicUsize>,
}

impl Families {
    pub fn register<M: prometheus_client::registry::Metric>(
        &mut self,
        name: &str,
        help: &str,
        metric: M,
    ) {
        let mut r = Registry::with_prefix("pgpatrol");
        r.register(name, help, metric);
        self.registries.push(r);
        self.sizes.push(Default::default());
    }

    /// How many families: chunks 0..len are families, chunk len is the end (`# EOF`).
    pub fn len(&self) -> usize {
        self.registries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.registries.is_empty()
    }

    /// Chunk `i` of the body: family `i` as OpenMetrics text, or `# EOF` after the last.
    pub fn chunk(&self, i: usize) -> Result<String, std::fmt::Error> {
        use std::sync::atomic::Ordering;
        let Some(r) = self.registries.get(i) else {
            let mut eof = String::new();
            prometheus_client::encoding::text::encode_eof(&mut eof)?;
            return Ok(eof);
        };
        let last = self.sizes[i].load(Ordering::Relaxed);
        let mut text = String::with_capacity(last + last / 16);
        prometheus_client::encoding::text::encode_registry(&mut text, r)?;
        self.sizes[i].store(text.len(), Ordering::Relaxed);
        Ok(text)
    }

    /// The whole body at once (tests, and readers that want one string).
    pub fn encode(&self, out: &mut String) -> Result<(), std::fmt::Error> {
        for i in 0..=self.len() {
            out.push_str(&self.chunk(i)?);
        }
        Ok(())
    }
}

/// A label set that names the cluster its series belongs to.
pub trait ClusterLabel {
    fn cluster(&self) -> &str;
}

/// A family of series labelled by cluster: prometheus-client's `Family` (a map from label
/// set to metric, encoded one series per entry) with one thing it lacks, [`Fam::forget`]:
/// every series of a cluster this watcher stops polling goes with it, found by the cluster
/// label each label set carries. Each label set is stored once (10,000 clusters are
/// 330,000 series; an index of them beside the family cost as much again).
#[derive(Debug)]
pub struct Fam<L, M> {
    series: std::sync::Arc<RwLock<HashMap<L, M>>>,
}

impl<L, M> Clone for Fam<L, M> {
    fn clone(&self) -> Self {
        Fam {
            series: std::sync::Arc::clone(&self.series),
        }
    }
}

impl<L, M> Default for Fam<L, M> {
    fn default() -> Self {
        Fam {
            series: Default::default(),
        }
    }
}

impl<L: Clone + Hash + Eq + ClusterLabel, M: Default + Clone> Fam<L, M> {
    /// The series of `labels`, made on first use. A known series is found under the read
    /// lock, without allocating; the metric handed out shares its value with the family.
    pub fn get_or_create(&self, labels: &L) -> M {
        if let Some(m) = self
            .series
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(labels)
        {
            return m.clone();
        }
        self.series
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(labels.clone())
            .or_default()
            .clone()
    }

    pub fn remove(&self, labels: &L) -> bool {
        self.series
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(labels)
            .is_some()
    }

    /// Removes every series of `cluster`.
    pub fn forget(&self, cluster: &str) {
        self.series
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|l, _| l.cluster() != cluster);
    }

    /// The family, for registration (it shares the series).
    pub fn family(&self) -> Self {
        self.clone()
    }
}

impl<L, M> prometheus_client::encoding::EncodeMetric for Fam<L, M>
where
    L: EncodeLabelSet + std::fmt::Debug + Send + Sync,
    M: prometheus_client::encoding::EncodeMetric + prometheus_client::metrics::TypedMetric,
{
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let series = self.series.read().unwrap_or_else(|p| p.into_inner());
        for (labels, m) in series.iter() {
            let e = encoder.encode_family(labels)?;
            m.encode(e)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        M::TYPE
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterL {
    pub cluster: Name,
}

/// An event kind (core `events::EventKind`, a closed set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardL {
    pub shard: Name,
}

/// Why an auto-heal run stopped (a bounded label: `executor::runner::Stop::cause`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonL {
    pub reason: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindL {
    pub kind: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberL {
    pub cluster: Name,
    pub member: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberKindL {
    pub cluster: Name,
    pub member: Name,
    /// `receive` or `replay`.
    pub kind: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberRoleL {
    pub cluster: Name,
    pub member: Name,
    pub role: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberStateL {
    pub cluster: Name,
    pub member: Name,
    pub state: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterKindL {
    pub cluster: Name,
    pub kind: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterCheckL {
    pub cluster: Name,
    pub check: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterReasonL {
    pub cluster: Name,
    pub reason: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterResultL {
    pub cluster: Name,
    /// `good` or `bad`.
    pub result: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterWindowL {
    pub cluster: Name,
    pub window: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceL {
    pub cluster: Name,
    /// The `source:` URL of a standby cluster.
    pub source: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceKindL {
    pub cluster: Name,
    pub source: Name,
    /// `receive` or `replay`.
    pub kind: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertL {
    pub cluster: Name,
    pub alert: Name,
    pub severity: Name,
}

/// The watch's metric families.
impl ClusterLabel for ClusterL {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl ClusterLabel for MemberL {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl ClusterLabel for MemberKindL {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl ClusterLabel for MemberRoleL {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl ClusterLabel for MemberStateL {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl ClusterLabel for ClusterKindL {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl ClusterLabel for ClusterCheckL {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl ClusterLabel for ClusterReasonL {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl ClusterLabel for ClusterResultL {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl ClusterLabel for ClusterWindowL {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl ClusterLabel for SourceL {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl ClusterLabel for SourceKindL {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

impl ClusterLabel for AlertL {
    fn cluster(&self) -> &str {
        &self.cluster
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub member_lag_bytes: Fam<MemberKindL, FGauge>,
    pub member_lag_unknown: Fam<MemberKindL, Gauge>,
    pub member_role: Fam<MemberRoleL, Gauge>,
    pub member_state: Fam<MemberStateL, Gauge>,
    pub member_timeline: Fam<MemberL, Gauge>,
    pub member_up: Fam<MemberL, Gauge>,
    pub cluster_up: Fam<ClusterL, Gauge>,
    pub cluster_sli_bytes: Fam<ClusterKindL, FGauge>,
    pub cluster_lag_unknown_members: Fam<ClusterL, Gauge>,
    pub cluster_leaders: Fam<ClusterL, Gauge>,
    pub cluster_paused: Fam<ClusterL, Gauge>,
    pub cluster_members: Fam<ClusterL, Gauge>,
    pub cluster_timeline: Fam<ClusterL, Gauge>,
    pub cluster_failovers: Fam<ClusterL, Gauge>,
    pub poll_duration_seconds: Fam<ClusterL, FGauge>,
    pub polls: Fam<ClusterL, Counter>,
    pub poll_errors: Fam<ClusterReasonL, Counter>,
    pub slo_samples: Fam<ClusterResultL, Counter>,
    pub slo_objective: Fam<ClusterL, FGauge>,
    pub slo_threshold_bytes: Fam<ClusterL, FGauge>,
    pub slo_good_ratio: Fam<ClusterL, FGauge>,
    pub slo_error_budget_remaining: Fam<ClusterL, FGauge>,
    pub slo_burn_rate: Fam<ClusterWindowL, FGauge>,
    pub slo_alert_firing: Fam<AlertL, Gauge>,
    pub heal_attempted: Fam<ClusterL, Counter>,
    pub heal_succeeded: Fam<ClusterL, Counter>,
    pub heal_failed: Fam<ClusterL, Counter>,
    pub heal_refused: Fam<ClusterReasonL, Counter>,
    pub heal_escalations: Fam<ClusterL, Counter>,
    /// Alerts dropped because the queue to Alertmanager/the webhook was full.
    pub alerts_dropped: Counter,
    /// Events of the event log, by kind.
    pub events: Family<KindL, Counter>,
    /// Events the event webhook did not take.
    pub event_webhook_failures: Counter,
    /// doctor's checks: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN (with a `checks:` section).
    pub checks: Fam<ClusterCheckL, Gauge>,
    /// Replay lag in seconds from PostgreSQL (clusters with `postgres:`).
    pub member_lag_seconds: Fam<MemberL, FGauge>,
    /// A standby cluster's lag against its `source:`.
    pub standby_lag_bytes: Fam<SourceKindL, FGauge>,
    pub standby_lag_seconds: Fam<SourceL, FGauge>,
    pub standby_lag_unknown: Fam<SourceL, Gauge>,
    pub standby_replicating: Fam<SourceL, Gauge>,
    pub shard_clusters: Family<ShardL, Gauge>,
    pub shard_members: Family<ShardL, Gauge>,
    pub shard_total: Gauge,
    pub discovered_clusters: Gauge,
    pub discover_errors: Counter,
    pub shard_errors: Counter,
    /// Auto-heal runs that stopped before their plan was done, by cause.
    pub heal_stops: Family<ReasonL, Counter>,
}

impl Metrics {
    /// Removes every series of `cluster` (a cluster this watcher no longer polls).
    pub fn forget(&self, cluster: &str) {
        self.member_lag_bytes.forget(cluster);
        self.member_lag_unknown.forget(cluster);
        self.member_role.forget(cluster);
        self.member_state.forget(cluster);
        self.member_timeline.forget(cluster);
        self.member_up.forget(cluster);
        self.cluster_up.forget(cluster);
        self.cluster_sli_bytes.forget(cluster);
        self.cluster_lag_unknown_members.forget(cluster);
        self.cluster_leaders.forget(cluster);
        self.cluster_paused.forget(cluster);
        self.cluster_members.forget(cluster);
        self.cluster_timeline.forget(cluster);
        self.cluster_failovers.forget(cluster);
        self.poll_duration_seconds.forget(cluster);
        self.polls.forget(cluster);
        self.poll_errors.forget(cluster);
        self.slo_samples.forget(cluster);
        self.slo_objective.forget(cluster);
        self.slo_threshold_bytes.forget(cluster);
        self.slo_good_ratio.forget(cluster);
        self.slo_error_budget_remaining.forget(cluster);
        self.slo_burn_rate.forget(cluster);
        self.slo_alert_firing.forget(cluster);
        self.heal_attempted.forget(cluster);
        self.heal_succeeded.forget(cluster);
        self.heal_failed.forget(cluster);
        self.heal_refused.forget(cluster);
        self.heal_escalations.forget(cluster);
        self.checks.forget(cluster);
        self.member_lag_seconds.forget(cluster);
        self.standby_lag_bytes.forget(cluster);
        self.standby_lag_seconds.forget(cluster);
        self.standby_lag_unknown.forget(cluster);
        self.standby_replicating.forget(cluster);
    }

    /// Registers every family under `pgpatrol_` (counters get `_total` when encoded), each
    /// in a registry of its own (see [`Families`]).
    pub fn register(&self, p: &mut Families) {
        p.register(
            "member_lag_bytes",
            "Replica lag in bytes (absent while unknown)",
            self.member_lag_bytes.family(),
        );
        p.register(
            "member_lag_unknown",
            "1 while Patroni does not know the member's lag (the series exists only then)",
            self.member_lag_unknown.family(),
        );
        p.register(
            "member_role",
            "1 for the member's current role",
            self.member_role.family(),
        );
        p.register(
            "member_state",
            "1 for the member's current state",
            self.member_state.family(),
        );
        p.register(
            "member_timeline",
            "The member's PostgreSQL timeline",
            self.member_timeline.family(),
        );
        p.register(
            "member_up",
            "1 when the member runs (running, streaming, in archive recovery)",
            self.member_up.family(),
        );
        p.register(
            "cluster_up",
            "1 when the last poll read the cluster",
            self.cluster_up.family(),
        );
        p.register(
            "cluster_sli_bytes",
            "Maximum known replica lag in bytes (the SLI)",
            self.cluster_sli_bytes.family(),
        );
        p.register(
            "cluster_lag_unknown_members",
            "Replicas whose lag is unknown",
            self.cluster_lag_unknown_members.family(),
        );
        p.register(
            "cluster_leaders",
            "Members holding the leader role (1 when healthy)",
            self.cluster_leaders.family(),
        );
        p.register(
            "cluster_paused",
            "1 in maintenance mode",
            self.cluster_paused.family(),
        );
        p.register(
            "cluster_members",
            "Members in /cluster",
            self.cluster_members.family(),
        );
        p.register(
            "cluster_timeline",
            "The leader's timeline",
            self.cluster_timeline.family(),
        );
        p.register(
            "cluster_failovers",
            "Failovers and switchovers in /history",
            self.cluster_failovers.family(),
        );
        p.register(
            "poll_duration_seconds",
            "How long the last poll took",
            self.poll_duration_seconds.family(),
        );
        p.register("polls", "Polls of the cluster", self.polls.family());
        p.register(
            "poll_errors",
            "Failed polls, by reason",
            self.poll_errors.family(),
        );
        p.register(
            "slo_samples",
            "SLI samples, good or bad (unknown is bad)",
            self.slo_samples.family(),
        );
        p.register(
            "slo_objective",
            "The SLO's objective (fraction of good samples)",
            self.slo_objective.family(),
        );
        p.register(
            "slo_threshold_bytes",
            "A sample is good at or below this lag",
            self.slo_threshold_bytes.family(),
        );
        p.register(
            "slo_good_ratio",
            "Good samples over the SLO window",
            self.slo_good_ratio.family(),
        );
        p.register(
            "slo_error_budget_remaining",
            "Error budget left over the SLO window (1 = all, below 0 = overspent)",
            self.slo_error_budget_remaining.family(),
        );
        p.register(
            "slo_burn_rate",
            "Error-budget burn rate over a window (with metrics: {burn_rates: true})",
            self.slo_burn_rate.family(),
        );
        p.register(
            "slo_alert_firing",
            "1 while a burn-rate alert fires (the series exists only then)",
            self.slo_alert_firing.family(),
        );
        p.register(
            "heal_attempted",
            "Reinitializations started by auto-heal",
            self.heal_attempted.family(),
        );
        p.register(
            "heal_succeeded",
            "Reinitializations that healed",
            self.heal_succeeded.family(),
        );
        p.register(
            "heal_failed",
            "Reinitializations that did not heal",
            self.heal_failed.family(),
        );
        p.register(
            "heal_refused",
            "Heals a guardrail refused, by reason",
            self.heal_refused.family(),
        );
        p.register(
            "heal_escalations",
            "Escalation alerts after failed or capped heals",
            self.heal_escalations.family(),
        );
        p.register(
            "member_lag_seconds",
            "Replica replay lag in seconds, from PostgreSQL (0 when caught up; absent while unknown)",
            self.member_lag_seconds.family(),
        );
        p.register(
            "standby_lag_bytes",
            "A standby cluster's lag against its source: the source leader's position minus the standby leader's received or replayed one (absent while unknown)",
            self.standby_lag_bytes.family(),
        );
        p.register(
            "standby_lag_seconds",
            "Seconds since the last transaction the standby leader replayed, 0 when caught up (absent while it cannot be told)",
            self.standby_lag_seconds.family(),
        );
        p.register(
            "standby_lag_unknown",
            "1 when the standby cluster's lag against its source cannot be computed",
            self.standby_lag_unknown.family(),
        );
        p.register(
            "standby_replicating",
            "1 while the standby leader streams or recovers from the archive and replay is not paused",
            self.standby_replicating.family(),
        );
        p.register(
            "check",
            "doctor's runbook checks: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN",
            self.checks.family(),
        );
        p.register(
            "events",
            "Events of the event log (/events), by kind",
            self.events.clone(),
        );
        p.register(
            "event_webhook_failures",
            "Events not delivered to event_webhook (a failed or refused POST, or skipped while it was too slow)",
            self.event_webhook_failures.clone(),
        );
        p.register(
            "alerts_dropped",
            "Alerts dropped because the send queue was full (a slow or dead receiver)",
            self.alerts_dropped.clone(),
        );
        p.register(
            "shard_clusters",
            "Clusters this watcher polls: its share of the listed ones",
            self.shard_clusters.clone(),
        );
        p.register(
            "shard_members",
            "Patroni members in this watcher's clusters, as their last polls read them",
            self.shard_members.clone(),
        );
        p.register(
            "discovered_clusters",
            "Clusters found by discover: and watched now",
            self.discovered_clusters.clone(),
        );
        p.register(
            "discover_errors",
            "Discovery passes that could not read the DCS, and discovered clusters that could not be watched",
            self.discover_errors.clone(),
        );
        p.register(
            "shard_errors",
            "Readings of the ring of watchers (dynamic sharding) that failed: the shares stayed",
            self.shard_errors.clone(),
        );
        p.register(
            "heal_stops",
            "Auto-heal runs that stopped before their plan was done, by cause: the read's or the heal lease's error (timeout, connect, lease_expired, ...), leader_changed or refused",
            self.heal_stops.clone(),
        );
        p.register(
            "shard_total",
            "How many watchers share the listed clusters (1 without sharding)",
            self.shard_total.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_a_cluster_removes_every_series_it_had_and_no_other() {
        let m = Metrics::default();
        let mut r = Families::default();
        m.register(&mut r);
        for c in ["a", "b"] {
            let cl = ClusterL { cluster: c.into() };
            m.cluster_up.get_or_create(&cl).set(1);
            m.polls.get_or_create(&cl).inc();
            m.poll_errors
                .get_or_create(&ClusterReasonL {
                    cluster: c.into(),
                    reason: "timeout".into(),
                })
                .inc();
            for member in ["pg0", "pg1"] {
                m.member_role
                    .get_or_create(&MemberRoleL {
                        cluster: c.into(),
                        member: member.into(),
                        role: "replica".into(),
                    })
                    .set(1);
                m.member_lag_bytes
                    .get_or_create(&MemberKindL {
                        cluster: c.into(),
                        member: member.into(),
                        kind: "replay".into(),
                    })
                    .set(42.0);
            }
            m.slo_alert_firing
                .get_or_create(&AlertL {
                    cluster: c.into(),
                    alert: "page-1h".into(),
                    severity: "page".into(),
                })
                .set(0);
        }
        // One removed by hand first: forgetting does not trip over it.
        m.member_role.remove(&MemberRoleL {
            cluster: "a".into(),
            member: "pg0".into(),
            role: "replica".into(),
        });
        m.forget("a");
        let mut text = String::new();
        r.encode(&mut text).unwrap();
        assert!(!text.contains("cluster=\"a\""), "{text}");
        for series in [
            "pgpatrol_cluster_up{cluster=\"b\"} 1",
            "pgpatrol_polls_total{cluster=\"b\"} 1",
            "pgpatrol_poll_errors_total{cluster=\"b\",reason=\"timeout\"} 1",
            "pgpatrol_member_role{cluster=\"b\",member=\"pg1\",role=\"replica\"} 1",
            "pgpatrol_member_lag_bytes{cluster=\"b\",member=\"pg0\",kind=\"replay\"} 42.0",
            "pgpatrol_slo_alert_firing{cluster=\"b\",alert=\"page-1h\",severity=\"page\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing in {text}");
        }
    }
}
