//! Heal: which replicas to reinitialize, and every guardrail that says no. Pure: the cluster
//! snapshot, the policy, the action history (a leaf, [`crate::history`]), trend evidence
//! and `now` are inputs; the decision is a [`Plan`].
//!
//! - `policy.rs`: [`Policy`] and [`DecideBy`], the settings heal decides by.
//! - `decide.rs`: [`decide`] and [`decide_with`], the decision and its guardrails.
//! - `plan.rs`: [`Plan`] and its parts (actions, skips, blockers, trends), each with a reason.
//! - `trend.rs`: lag trends and rebuild estimates for `by: trend` ([`Evidence`], [`trend()`]).

mod decide;
mod plan;
mod policy;
mod trend;

pub use decide::{decide, decide_with};
pub use plan::{Action, Blocker, MemberTrend, Plan, Skip, SkipReason};
pub use policy::{DecideBy, Policy};
pub use trend::{
    data_bytes, human_rate, trend, wal_gone, Evidence, LagSample, RebuildEstimate, Trend,
    TrendPolicy, MAX_TREND_POINTS,
};
