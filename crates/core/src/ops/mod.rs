//! What each day-2 operation does and refuses, and why: one file per operation, every rule
//! a pure function of what was read for it (the cluster, the source cluster, positions,
//! slots, the configuration) that returns an [`OpPlan`] — ordered steps, each with its
//! reason, or a [`Refusal`]. pgpatrol's one operation runner carries a plan out and calls
//! the same rule again before every step; none decides on its own, and every rule here has
//! a unit test that fails without it.
//!
//! | operation | file | refuses |
//! |---|---|---|
//! | switchover, failover | [`takeover`] (and [`crate::candidates`], Patroni's takeover rule) | a candidate Patroni would not promote; a failover candidate that may lack data another member has; counts a takeover done only when the new leader runs (and, for a switchover, the former one replicates) |
//! | restart (one, several, rolling, pending, scheduled) | [`restart`] | a step while another member is down or behind, the leader changed, or the cluster is paused; a schedule for several members, or a second schedule in the cluster |
//! | pause, resume, reload, flush, edit-config | [`maintenance`] | nothing up front; before the step: a pause already made, members that disagree on it, a schedule already gone, a configuration changed since it was read or held otherwise by a member |
//! | standby promote / demote | [`standby`] | promoting while the source may still have a primary, or cannot be read; demoting under a source that has no running leader, is another database, or cannot be compared |
//! | slot drop | [`slot`] | an active slot, a permanent slot, a member's own slot |
//! | reinit | [`reinit`] | the leader (or standby leader); a member not in the cluster |
//! | remove | [`remove`] | while any Patroni of the scope answers, or the leader key is held |
//! | member remove | [`member`] | the leader unless handed over first, the only synchronous standby, fewer healthy replicas than promised, a paused or leaderless cluster |
//!
//! edit-config's patch, its read-back comparison and the audit's redaction live with the
//! commands (`pgpatrol::ops::config`, `pgpatrol::audit`): they compute, compare and
//! rewrite documents; they do not decide whether to act.

pub mod maintenance;
pub mod member;
pub mod plan;
pub mod reinit;
pub mod remove;
pub mod restart;
pub mod slot;
pub mod standby;
pub mod takeover;

use serde::Serialize;

pub use plan::{Action, OpPlan, OpStep};

/// Why an operation is not carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// The request does not fit this cluster (the wrong kind of cluster, another
    /// database): the operator asked for something else than they meant. Exit 2.
    Invalid(String),
    /// The request fits, but carrying it out now could lose data or take down more than
    /// it promised, or pgpatrol could not read what it needs to tell. Exit 1.
    Unsafe(String),
}

impl Refusal {
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Invalid(r) | Refusal::Unsafe(r) => r,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}
