//! pgpatrol-core: the pure half of pgpatrol. It knows what a Patroni cluster is and what
//! to do about it; it never talks to one. Sources, the clock and the environment are
//! inputs; decisions are values.
//!
//! ```text
//! Source ──► Snapshot ──► decide(snapshot, policy, history, now) ──► Plan
//! (rest|k8s|dcs)  (model::Cluster)         (heal, pure)         (actions + skips, each with a reason)
//!                                                                   │
//!        report / metrics / alerts ◄── Outcome ◄── Executor (REST calls, re-check before acting)
//! ```
//!
//! Modules: [`lsn`] and [`units`] (numbers as Patroni and operators write them),
//! [`model`] (the cluster), [`sli`] (the max-lag SLI), [`heal`] (what heal does and every
//! guardrail), [`fixtures`] (test builders).

pub mod candidates;
pub mod checks;
pub mod events;
#[cfg(any(test, feature = "test-util"))]
pub mod fixtures;
pub mod heal;
pub mod history;
pub mod lsn;
pub mod model;
pub mod ops;
pub mod pg;
pub mod pgparams;
pub mod shard;
pub mod sli;
pub mod slo;
pub mod slots;
pub mod text;
pub mod units;

pub use lsn::Lsn;
pub use model::{
    Cluster, HistoryEntry, Kept, Lag, LagKind, LagSource, Member, MemberStatus, PatroniVersion,
    Role, ScheduledSwitchover, State,
};
pub use units::{ByteSize, Unit};
