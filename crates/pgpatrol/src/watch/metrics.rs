//! Every metric `watch` exports, defined once, with bounded label sets (cluster and member
//! names come from the config and from Patroni; roles, states, kinds, windows and reasons
//! are closed sets). Names and meanings are documented in docs/METRICS.md.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub type FGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterL {
    pub cluster: String,
}

/// An event kind (core `events::EventKind`, a closed set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardL {
    pub shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindL {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberL {
    pub cluster: String,
    pub member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberKindL {
    pub cluster: String,
    pub member: String,
    /// `receive` or `replay`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberRoleL {
    pub cluster: String,
    pub member: String,
    pub role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberStateL {
    pub cluster: String,
    pub member: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterKindL {
    pub cluster: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterCheckL {
    pub cluster: String,
    pub check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterReasonL {
    pub cluster: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterResultL {
    pub cluster: String,
    /// `good` or `bad`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterWindowL {
    pub cluster: String,
    pub window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceL {
    pub cluster: String,
    /// The `source:` URL of a standby cluster.
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceKindL {
    pub cluster: String,
    pub source: String,
    /// `receive` or `replay`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertL {
    pub cluster: String,
    pub alert: String,
    pub severity: String,
}

/// The watch's metric families.
#[derive(Debug, Default)]
pub struct Metrics {
    pub member_lag_bytes: Family<MemberKindL, FGauge>,
    pub member_lag_unknown: Family<MemberKindL, Gauge>,
    pub member_role: Family<MemberRoleL, Gauge>,
    pub member_state: Family<MemberStateL, Gauge>,
    pub member_timeline: Family<MemberL, Gauge>,
    pub member_up: Family<MemberL, Gauge>,
    pub cluster_up: Family<ClusterL, Gauge>,
    pub cluster_sli_bytes: Family<ClusterKindL, FGauge>,
    pub cluster_lag_unknown_members: Family<ClusterL, Gauge>,
    pub cluster_leaders: Family<ClusterL, Gauge>,
    pub cluster_paused: Family<ClusterL, Gauge>,
    pub cluster_members: Family<ClusterL, Gauge>,
    pub cluster_timeline: Family<ClusterL, Gauge>,
    pub cluster_failovers: Family<ClusterL, Gauge>,
    pub cluster_failovers_24h: Family<ClusterL, Gauge>,
    pub poll_duration_seconds: Family<ClusterL, FGauge>,
    pub polls: Family<ClusterL, Counter>,
    pub poll_errors: Family<ClusterReasonL, Counter>,
    pub slo_samples: Family<ClusterResultL, Counter>,
    pub slo_objective: Family<ClusterL, FGauge>,
    pub slo_threshold_bytes: Family<ClusterL, FGauge>,
    pub slo_good_ratio: Family<ClusterL, FGauge>,
    pub slo_error_budget_remaining: Family<ClusterL, FGauge>,
    pub slo_burn_rate: Family<ClusterWindowL, FGauge>,
    pub slo_alert_firing: Family<AlertL, Gauge>,
    pub heal_attempted: Family<ClusterL, Counter>,
    pub heal_succeeded: Family<ClusterL, Counter>,
    pub heal_failed: Family<ClusterL, Counter>,
    pub heal_refused: Family<ClusterReasonL, Counter>,
    pub heal_escalations: Family<ClusterL, Counter>,
    /// Alerts dropped because the queue to Alertmanager/the webhook was full.
    pub alerts_dropped: Counter,
    /// Events of the event log, by kind.
    pub events: Family<KindL, Counter>,
    /// Events the event webhook did not take.
    pub event_webhook_failures: Counter,
    /// doctor's checks: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN (with a `checks:` section).
    pub checks: Family<ClusterCheckL, Gauge>,
    /// Replay lag in seconds from PostgreSQL (clusters with `postgres:`).
    pub member_lag_seconds: Family<MemberL, FGauge>,
    /// A standby cluster's lag against its `source:`.
    pub standby_lag_bytes: Family<SourceKindL, FGauge>,
    pub standby_lag_seconds: Family<SourceL, FGauge>,
    pub standby_lag_unknown: Family<SourceL, Gauge>,
    pub standby_replicating: Family<SourceL, Gauge>,
    pub shard_clusters: Family<ShardL, Gauge>,
    pub shard_members: Family<ShardL, Gauge>,
    pub shard_total: Gauge,
}

impl Metrics {
    /// Registers every family under `pgpatrol_` (counters get `_total` when encoded).
    pub fn register(&self, r: &mut Registry) {
        let p = r.sub_registry_with_prefix("pgpatrol");
        p.register(
            "member_lag_bytes",
            "Replica lag in bytes (absent while unknown)",
            self.member_lag_bytes.clone(),
        );
        p.register(
            "member_lag_unknown",
            "1 when Patroni does not know the member's lag",
            self.member_lag_unknown.clone(),
        );
        p.register(
            "member_role",
            "1 for the member's current role",
            self.member_role.clone(),
        );
        p.register(
            "member_state",
            "1 for the member's current state",
            self.member_state.clone(),
        );
        p.register(
            "member_timeline",
            "The member's PostgreSQL timeline",
            self.member_timeline.clone(),
        );
        p.register(
            "member_up",
            "1 when the member runs (running, streaming, in archive recovery)",
            self.member_up.clone(),
        );
        p.register(
            "cluster_up",
            "1 when the last poll read the cluster",
            self.cluster_up.clone(),
        );
        p.register(
            "cluster_sli_bytes",
            "Maximum known replica lag in bytes (the SLI)",
            self.cluster_sli_bytes.clone(),
        );
        p.register(
            "cluster_lag_unknown_members",
            "Replicas whose lag is unknown",
            self.cluster_lag_unknown_members.clone(),
        );
        p.register(
            "cluster_leaders",
            "Members holding the leader role (1 when healthy)",
            self.cluster_leaders.clone(),
        );
        p.register(
            "cluster_paused",
            "1 in maintenance mode",
            self.cluster_paused.clone(),
        );
        p.register(
            "cluster_members",
            "Members in /cluster",
            self.cluster_members.clone(),
        );
        p.register(
            "cluster_timeline",
            "The leader's timeline",
            self.cluster_timeline.clone(),
        );
        p.register(
            "cluster_failovers",
            "Failovers and switchovers in /history",
            self.cluster_failovers.clone(),
        );
        p.register(
            "cluster_failovers_24h",
            "Failovers and switchovers in the last 24 hours",
            self.cluster_failovers_24h.clone(),
        );
        p.register(
            "poll_duration_seconds",
            "How long the last poll took",
            self.poll_duration_seconds.clone(),
        );
        p.register("polls", "Polls of the cluster", self.polls.clone());
        p.register(
            "poll_errors",
            "Failed polls, by reason",
            self.poll_errors.clone(),
        );
        p.register(
            "slo_samples",
            "SLI samples, good or bad (unknown is bad)",
            self.slo_samples.clone(),
        );
        p.register(
            "slo_objective",
            "The SLO's objective (fraction of good samples)",
            self.slo_objective.clone(),
        );
        p.register(
            "slo_threshold_bytes",
            "A sample is good at or below this lag",
            self.slo_threshold_bytes.clone(),
        );
        p.register(
            "slo_good_ratio",
            "Good samples over the SLO window",
            self.slo_good_ratio.clone(),
        );
        p.register(
            "slo_error_budget_remaining",
            "Error budget left over the SLO window (1 = all, below 0 = overspent)",
            self.slo_error_budget_remaining.clone(),
        );
        p.register(
            "slo_burn_rate",
            "Error-budget burn rate over a window",
            self.slo_burn_rate.clone(),
        );
        p.register(
            "slo_alert_firing",
            "1 while a burn-rate alert fires",
            self.slo_alert_firing.clone(),
        );
        p.register(
            "heal_attempted",
            "Reinitializations started by auto-heal",
            self.heal_attempted.clone(),
        );
        p.register(
            "heal_succeeded",
            "Reinitializations that healed",
            self.heal_succeeded.clone(),
        );
        p.register(
            "heal_failed",
            "Reinitializations that did not heal",
            self.heal_failed.clone(),
        );
        p.register(
            "heal_refused",
            "Heals a guardrail refused, by reason",
            self.heal_refused.clone(),
        );
        p.register(
            "heal_escalations",
            "Escalation alerts after failed or capped heals",
            self.heal_escalations.clone(),
        );
        p.register(
            "member_lag_seconds",
            "Replica replay lag in seconds, from PostgreSQL (0 when caught up; absent while unknown)",
            self.member_lag_seconds.clone(),
        );
        p.register(
            "standby_lag_bytes",
            "A standby cluster's lag against its source: the source leader's position minus the standby leader's received or replayed one (absent while unknown)",
            self.standby_lag_bytes.clone(),
        );
        p.register(
            "standby_lag_seconds",
            "Seconds since the last transaction the standby leader replayed, 0 when caught up (absent while it cannot be told)",
            self.standby_lag_seconds.clone(),
        );
        p.register(
            "standby_lag_unknown",
            "1 when the standby cluster's lag against its source cannot be computed",
            self.standby_lag_unknown.clone(),
        );
        p.register(
            "standby_replicating",
            "1 while the standby leader streams or recovers from the archive and replay is not paused",
            self.standby_replicating.clone(),
        );
        p.register(
            "check",
            "doctor's runbook checks: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN",
            self.checks.clone(),
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
            "shard_total",
            "How many watchers share the listed clusters (1 without sharding)",
            self.shard_total.clone(),
        );
    }
}
