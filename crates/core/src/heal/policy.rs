//! The heal policy: how heal decides, as values. Built at the edge (flags, env, config);
//! core only reads it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::trend::TrendPolicy;
use crate::model::LagKind;

/// How heal decides. Built at the edge (flags, env, config); core only reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// A replica whose lag is at or above this many bytes is a candidate.
    pub tolerance: u64,
    /// Which lag the tolerance applies to (replay by default).
    pub lag: LagKind,
    /// At most this many reinitializations at once, counting ones already in progress.
    pub max_concurrent: usize,
    /// Keep at least this many healthy replicas that are not being remediated.
    pub min_healthy: usize,
    /// Do not act on a member again within this long after an earlier action on it.
    pub cooldown: Duration,
    /// An unfinished action older than this no longer counts as in progress: its healer was
    /// stopped mid-action and never recorded the end (the heal timeout plus a margin).
    pub stale_after: Duration,
    /// How a candidate beyond the tolerance is judged: by the tolerance alone (the default),
    /// or also by its lag trend (rebuilt only when it cannot catch up sooner by itself).
    pub by: DecideBy,
    /// Trend mode's settings (read only with `by: trend`).
    pub trend: TrendPolicy,
}

/// How heal decides about a replica beyond the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecideBy {
    /// Rebuild it (behind the guardrails).
    #[default]
    Threshold,
    /// Rebuild it only when its lag is not shrinking, its catch-up ETA exceeds the rebuild
    /// estimate by the factor, its lag is at the hard ceiling, or its WAL is gone.
    Trend,
}

impl DecideBy {
    pub fn as_str(self) -> &'static str {
        match self {
            DecideBy::Threshold => "threshold",
            DecideBy::Trend => "trend",
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            tolerance: 5 * 1024 * 1024,
            lag: LagKind::Replay,
            max_concurrent: 1,
            min_healthy: 1,
            cooldown: Duration::from_secs(30 * 60),
            stale_after: Duration::from_secs(15 * 60),
            by: DecideBy::Threshold,
            trend: TrendPolicy::default(),
        }
    }
}
