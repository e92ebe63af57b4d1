//! `remove`: deleting a cluster's keys from the DCS. Patroni needs them to know the cluster
//! was ever bootstrapped: a running cluster that loses them elects and bootstraps anew. So
//! only a cluster whose every Patroni is silent, with no leader key held, may be removed.

use super::plan::{Action, OpPlan, OpStep};
use super::Refusal;

/// Why the cluster `scope` may not be removed now, or `None`. `answering`: the members
/// whose REST API gave any HTTP answer, each with what it said (`pg0 (stopped)`,
/// `pg1 (HTTP 503)`): a live Patroni writes its keys again, whatever its PostgreSQL does.
/// `leader_key`: the member named in the leader key (its Patroni runs, or the key has not
/// expired yet).
pub fn refusal(scope: &str, answering: &[String], leader_key: Option<&str>) -> Option<String> {
    if !answering.is_empty() {
        return Some(format!(
            "refusing to remove {scope}: {} still answer their REST API (a live Patroni writes its keys again); stop Patroni on every member first, or pass --force",
            answering.join(", ")
        ));
    }
    leader_key.map(|l| {
        format!(
            "refusing to remove {scope}: the leader key is held by {l} (its Patroni still runs, or the key has not expired: wait for ttl after stopping Patroni everywhere), or pass --force"
        )
    })
}

/// `remove` as a plan: one step deleting the scope's keys, or [`refusal`]'s reason
/// (unsafe: exit 1). `force` (`--force`) overrides the refusal, and the step says so.
pub fn plan(scope: &str, answering: &[String], leader_key: Option<&str>, force: bool) -> OpPlan {
    match (refusal(scope, answering, leader_key), force) {
        (Some(why), false) => OpPlan::refused("remove", Refusal::Unsafe(why)),
        (Some(why), true) => OpPlan::go(
            "remove",
            vec![OpStep::new(
                Action::DeleteKeys,
                scope,
                format!("--force over: {why}"),
            )],
        ),
        (None, _) => OpPlan::go(
            "remove",
            vec![OpStep::new(
                Action::DeleteKeys,
                scope,
                "no Patroni of the scope answers and no leader key is held",
            )],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_answer_or_a_held_leader_key_refuses() {
        let why = refusal("demo", &["pg0 (stopped)".into()], None).unwrap();
        assert!(why.contains("pg0 (stopped) still answer"), "{why}");
        let why = refusal("demo", &[], Some("pg0")).unwrap();
        assert!(why.contains("leader key is held by pg0"), "{why}");
        assert_eq!(refusal("demo", &[], None), None);
        assert!(plan("demo", &["pg0 (stopped)".into()], None, false)
            .refusal
            .is_some());
        let forced = plan("demo", &["pg0 (stopped)".into()], None, true);
        assert!(forced.steps[0].reason.starts_with("--force over"));
    }
}
