//! Which scheduled restarts Patroni can be trusted with.
//!
//! A scheduled restart (`POST /restart {"schedule": T}`) is kept in one member's Patroni
//! and run at T by that member alone: nothing checks the other members then. Two members
//! with a schedule restart at their times whatever the other one is doing, so pgpatrol
//! never leaves more than one restart scheduled in a cluster: "never two members down"
//! holds because at most one member can go down on a schedule.

use crate::model::Cluster;

/// Why scheduling a restart of `selected` (member names) in `cluster` is refused, or
/// `None` when it may be sent: exactly one member, and no other member of the cluster
/// already holds a scheduled restart.
pub fn schedule_refusal(cluster: &Cluster, selected: &[String]) -> Option<String> {
    if selected.len() > 1 {
        return Some(format!(
            "a scheduled restart of {} members ({}) would restart them all at once at that time: each member's Patroni runs its own schedule, and nothing checks the others then; schedule one member per command (at times far enough apart), or run `pgpatrol restart --rolling` at that time, which restarts one member at a time behind the gate",
            selected.len(),
            selected.join(", ")
        ));
    }
    let others: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| m.scheduled_restart.is_some() && !selected.contains(&m.name))
        .map(|m| {
            let at = m
                .scheduled_restart
                .as_ref()
                .and_then(|s| s.get("schedule"))
                .and_then(|s| s.as_str())
                .unwrap_or("a time Patroni did not say");
            format!("{} at {at}", m.name)
        })
        .collect();
    if !others.is_empty() {
        return Some(format!(
            "a restart is already scheduled ({}): two scheduled restarts run without regard to each other, so pgpatrol keeps one per cluster; cancel it with `pgpatrol flush restart`, or wait until it has run",
            others.join(", ")
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn one_member_on_a_cluster_without_schedules_may_be_scheduled() {
        let c = ClusterBuilder::new().leader("pg0").replica("pg1").build();
        assert_eq!(schedule_refusal(&c, &names(&["pg1"])), None);
        assert_eq!(schedule_refusal(&c, &names(&["pg0"])), None);
    }

    #[test]
    fn several_members_at_one_time_are_refused() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replica("pg2")
            .build();
        let why = schedule_refusal(&c, &names(&["pg0", "pg1", "pg2"])).expect("refused");
        assert!(why.contains("3 members (pg0, pg1, pg2)"), "{why}");
        assert!(why.contains("restart --rolling"), "{why}");
    }

    #[test]
    fn a_second_schedule_in_the_cluster_is_refused() {
        let mut c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replica("pg2")
            .build();
        c.members[1].scheduled_restart =
            Some(serde_json::json!({"schedule": "2030-01-01T00:00:00+00:00"}));
        let why = schedule_refusal(&c, &names(&["pg2"])).expect("refused");
        assert!(why.contains("pg1 at 2030-01-01T00:00:00+00:00"), "{why}");
        // Rescheduling the member that holds it is Patroni's own business (it refuses).
        assert_eq!(schedule_refusal(&c, &names(&["pg1"])), None);
    }
}
