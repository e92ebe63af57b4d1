//! The heal policy: which replicas to reinitialize, and every guardrail that says no.
//! Pure: the cluster snapshot, the policy, the action history and `now` are inputs.

use std::time::SystemTime;

use crate::model::Cluster;
use crate::plan::{ActionRecord, Plan, Policy};

/// Decides what heal does on `cluster`. Implemented in this module's `decide.rs`.
pub fn decide(
    cluster: &Cluster,
    policy: &Policy,
    history: &[ActionRecord],
    now: SystemTime,
) -> Plan {
    decide::decide(cluster, policy, history, now)
}

mod decide;
