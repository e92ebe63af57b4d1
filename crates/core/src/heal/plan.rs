//! Decisions as values. `heal::decide` returns a [`Plan`]; `--dry-run`, the report, logs
//! and `/plan` all show this same value, and the executor only executes plans.

use serde::Serialize;

use super::trend::{human_rate, RebuildEstimate, Trend};
use crate::model::Lag;

/// One reinitialization to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub member: String,
    /// The member's lag of the policy's kind when decided.
    pub lag: Lag,
    /// Why, in words: e.g. "replay lag 110.2 MB ≥ tolerance 5MB".
    pub reason: String,
}

/// Why a member is left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkipReason {
    /// Never the leader or a standby leader.
    Leader,
    /// Lag below the tolerance: nothing to do.
    WithinTolerance { lag: u64 },
    /// Lag unknown: automation never acts on data it does not understand.
    LagUnknown { state: String },
    /// Patroni is already rebuilding or restarting it (stopping, creating replica, starting...).
    InProgress { state: String },
    /// The max-concurrent limit is reached (counting reinits in progress).
    ConcurrencyLimit { limit: usize, in_progress: usize },
    /// Acting would leave fewer than `min_healthy` healthy replicas untouched.
    MinHealthy { min_healthy: usize, healthy: usize },
    /// It is the only synchronous or quorum standby.
    OnlySynchronousStandby,
    /// An earlier action on it is too recent.
    Cooldown { remaining_secs: u64 },
    /// Trend mode: too few lag samples in the window to tell a trend; no guess is made.
    NotEnoughSamples { have: usize, need: usize },
    /// Trend mode: it catches up by itself sooner than a rebuild would bring it back.
    CatchingUp {
        lag: u64,
        /// Bytes per second the lag shrinks.
        rate: u64,
        eta_secs: u64,
        rebuild_secs: u64,
    },
    /// Trend mode: it is catching up, and without an earlier heal or the data size there is
    /// no rebuild time to compare with, so it is given the time (the ceiling still applies).
    NoRebuildEstimate { lag: u64, rate: u64, eta_secs: u64 },
    /// Its replay is paused on purpose (`pg_wal_replay_pause()`): a rebuild would destroy
    /// what someone is keeping.
    ReplayPaused,
    /// A delayed replica (`recovery_min_apply_delay`): it lags by design.
    ApplyDelay { delay: String },
    /// A Patroni tag marks it as kept (`noheal: true`).
    NohealTag,
    /// What could keep it behind on purpose could not be read: not touched.
    KeptUnknown { why: String },
    /// An archive-only (`nostream`) replica within the tolerance of the newest archived WAL:
    /// it keeps up with the archive; what it lags is the archive's own delay.
    Nostream { behind_archive: u64 },
    /// An archive-only replica whose position against the archive could not be read: its
    /// lag against the leader says nothing on its own, so it is not touched.
    NostreamUnchecked { why: String },
}

/// A member left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub member: String,
    pub reason: SkipReason,
}

/// Why nothing at all may be done on the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Blocker {
    /// Maintenance mode: Patroni itself takes no automatic action, nor do we.
    Paused,
    NoLeader,
    MultipleLeaders {
        leaders: Vec<String>,
    },
    /// No member holds the leader lock (Patroni's `cluster_unlocked`).
    Unlocked,
    /// The DCS is unreachable and the leader runs on member consent.
    Failsafe,
}

/// What heal will do, and everything it will not do, each with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Plan {
    /// Cluster-level refusals: when any is present, `actions` is empty.
    pub blockers: Vec<Blocker>,
    /// Worst first.
    pub actions: Vec<Action>,
    pub skips: Vec<Skip>,
    /// Trend mode: each replica beyond the tolerance, its trend and the rebuild estimate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trends: Vec<MemberTrend>,
}

/// What trend mode saw of one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberTrend {
    pub member: String,
    /// `None`: not enough samples (`samples` says how many there were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trend: Option<Trend>,
    pub samples: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<RebuildEstimate>,
    /// Its WAL is gone: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_gone: Option<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Some member needs healing but a guardrail stops it (cluster- or member-level).
    pub fn refused(&self) -> bool {
        !self.blockers.is_empty()
            || self.skips.iter().any(|s| {
                !matches!(
                    s.reason,
                    SkipReason::Leader
                        | SkipReason::WithinTolerance { .. }
                        | SkipReason::CatchingUp { .. }
                        | SkipReason::NoRebuildEstimate { .. }
                        | SkipReason::NotEnoughSamples { .. }
                )
            })
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::units::human;
        match self {
            SkipReason::Leader => f.write_str("the leader is never reinitialized"),
            SkipReason::WithinTolerance { lag } => write!(f, "lag {} is within tolerance", human(*lag)),
            SkipReason::LagUnknown { state } => {
                write!(f, "lag unknown (state {state}): not acting on data it does not understand")
            }
            SkipReason::InProgress { state } => write!(f, "Patroni is already rebuilding or restarting it (state {state})"),
            SkipReason::ConcurrencyLimit { limit, in_progress } => {
                write!(f, "waits for a slot: {in_progress} reinitialization(s) running or planned, at most {limit} at once")
            }
            SkipReason::MinHealthy { min_healthy, healthy } => write!(
                f,
                "would leave {healthy} healthy replica(s) untouched, fewer than --min-healthy {min_healthy}"
            ),
            SkipReason::OnlySynchronousStandby => f.write_str("it is the only synchronous/quorum standby"),
            SkipReason::Cooldown { remaining_secs } => {
                write!(f, "acted on recently: cooldown has {remaining_secs}s left")
            }
            SkipReason::NotEnoughSamples { have, need } => write!(
                f,
                "not enough samples to tell a trend ({have} of {need} in the window): not guessing"
            ),
            SkipReason::CatchingUp {
                lag,
                rate,
                eta_secs,
                rebuild_secs,
            } => write!(
                f,
                "lag {}, shrinking {}, caught up in ~{eta_secs} s; a rebuild takes ~{rebuild_secs} s: waiting",
                human(*lag),
                human_rate(*rate)
            ),
            SkipReason::NoRebuildEstimate { lag, rate, eta_secs } => write!(
                f,
                "lag {}, shrinking {}, caught up in ~{eta_secs} s; no rebuild estimate (no earlier heal, no data size): waiting",
                human(*lag),
                human_rate(*rate)
            ),
            SkipReason::ReplayPaused => f.write_str(
                "its replay is paused (pg_wal_replay_pause()): kept behind on purpose, a rebuild would destroy what it holds; resume replay (pg_wal_replay_resume()) to let it catch up",
            ),
            SkipReason::ApplyDelay { delay } => write!(
                f,
                "a delayed replica (recovery_min_apply_delay {delay}): it lags by design"
            ),
            SkipReason::NohealTag => write!(
                f,
                "the Patroni tag {}: true keeps it from being healed",
                crate::model::NOHEAL_TAG
            ),
            SkipReason::KeptUnknown { why } => write!(
                f,
                "cannot tell whether it is kept behind on purpose ({why}): not touched"
            ),
            SkipReason::Nostream { behind_archive } => write!(
                f,
                "an archive-only replica (nostream) {} behind the newest archived WAL: it keeps up with the archive (if the archive is behind the leader, check archiving: doctor's archive check)",
                human(*behind_archive)
            ),
            SkipReason::NostreamUnchecked { why } => write!(
                f,
                "an archive-only replica (nostream) whose position against the archive could not be read ({why}): its lag against the leader alone says nothing, not touched"
            ),
        }
    }
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocker::Paused => {
                f.write_str("the cluster is paused (maintenance mode): no automatic action")
            }
            Blocker::NoLeader => f.write_str("the cluster has no leader"),
            Blocker::MultipleLeaders { leaders } => {
                write!(
                    f,
                    "more than one member claims the leader role: {}",
                    leaders.join(", ")
                )
            }
            Blocker::Unlocked => {
                f.write_str("the cluster is unlocked (no member holds the leader lock)")
            }
            Blocker::Failsafe => f.write_str("failsafe mode is active (the DCS is unreachable)"),
        }
    }
}
