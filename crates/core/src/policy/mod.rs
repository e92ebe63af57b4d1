//! The heal policy: which replicas to reinitialize, and every guardrail that says no.
//! Pure: the cluster snapshot, the policy, the action history and `now` are inputs.

use std::time::SystemTime;

use crate::model::Cluster;
use crate::plan::{ActionRecord, Plan, Policy};
use crate::trend::Evidence;

/// Decides what heal does on `cluster`, without trend evidence (in `by: trend` mode every
/// candidate is then "not enough samples"). Implemented in this module's `decide.rs`.
pub fn decide(
    cluster: &Cluster,
    policy: &Policy,
    history: &[ActionRecord],
    now: SystemTime,
) -> Plan {
    decide::decide(cluster, policy, history, &Evidence::default(), now)
}

/// As [`decide`], with lag samples, WAL-gone findings and the data size for trend mode.
pub fn decide_with(
    cluster: &Cluster,
    policy: &Policy,
    history: &[ActionRecord],
    evidence: &Evidence,
    now: SystemTime,
) -> Plan {
    decide::decide(cluster, policy, history, evidence, now)
}

mod decide;
