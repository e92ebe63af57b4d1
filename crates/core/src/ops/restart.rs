//! `restart`: when the next member may go down, and which scheduled restarts Patroni can be
//! trusted with.
//!
//! [`gate`] is read before every step of a restart (one member, several, rolling, pending):
//! a member restarts only while the leader runs (the one expected), the cluster is not
//! paused, and every other replica is back (streaming below the tolerance). patronictl
//! restarts members in DCS order with no such check (patroni #2385).
//!
//! A scheduled restart (`POST /restart {"schedule": T}`) is kept in one member's Patroni
//! and run at T by that member alone: nothing checks the other members then. Two members
//! with a schedule restart at their times whatever the other one is doing, so pgpatrol
//! never leaves more than one restart scheduled in a cluster: "never two members down"
//! holds because at most one member can go down on a schedule.

use super::plan::{Action, OpPlan, OpStep};
use super::Refusal;
use crate::model::{Cluster, LagKind, State};
use crate::units::human;

/// What a restart was asked.
#[derive(Debug, Clone, Default)]
pub struct RestartRequest<'a> {
    /// The members to restart, in the order to restart them (named members in the order
    /// given, otherwise the cluster's order).
    pub selected: &'a [String],
    /// Replicas first (sorted), then the leader: handed over first unless
    /// `leader_in_place`.
    pub rolling: bool,
    pub leader_in_place: bool,
    /// Schedule it at this time (ISO 8601) instead.
    pub scheduled: Option<&'a str>,
}

/// The steps of a restart, in order, or why it is refused. [`gate`] is judged again before
/// every step, on the cluster as it is then.
pub fn plan(c: &Cluster, req: &RestartRequest<'_>) -> OpPlan {
    const OP: &str = "restart";
    if req.selected.is_empty() {
        return OpPlan::nothing(OP, "no member matches");
    }
    if let Some(at) = req.scheduled {
        if c.paused {
            return OpPlan::refused(
                OP,
                Refusal::Unsafe(
                    "the cluster is paused: Patroni cannot schedule a restart in maintenance mode"
                        .into(),
                ),
            );
        }
        // Never two members down: Patroni runs each schedule on its own, unchecked.
        if let Some(why) = schedule_refusal(c, req.selected) {
            return OpPlan::refused(OP, Refusal::Unsafe(why));
        }
        let steps = req
            .selected
            .iter()
            .map(|m| {
                OpStep::new(
                    Action::ScheduleRestart,
                    m,
                    format!("its Patroni restarts it at {at}, the only restart scheduled in the cluster"),
                )
                .at(at)
            })
            .collect();
        return OpPlan::go(OP, steps);
    }
    let leader = c.leader().map(|l| l.name.clone());
    if !req.rolling {
        let steps = req
            .selected
            .iter()
            .map(|m| {
                let why = if leader.as_deref() == Some(m) {
                    "the leader, in place: writes stop while it restarts"
                } else {
                    "one member at a time, once every other member is back"
                };
                OpStep::new(Action::Restart, m, why)
            })
            .collect();
        return OpPlan::go(OP, steps);
    }
    let Some(leader) = leader else {
        return OpPlan::refused(
            OP,
            Refusal::Invalid("the cluster has no leader: a rolling restart needs one".into()),
        );
    };
    let mut replicas: Vec<&String> = req.selected.iter().filter(|n| **n != leader).collect();
    replicas.sort();
    let mut steps: Vec<OpStep> = replicas
        .into_iter()
        .map(|m| OpStep::new(Action::Restart, m, "a replica, before the leader"))
        .collect();
    if req.selected.contains(&leader) {
        if req.leader_in_place {
            steps.push(OpStep::new(
                Action::Restart,
                &leader,
                "the leader, in place, last: writes stop while it restarts",
            ));
        } else {
            steps.push(OpStep::new(
                Action::Switchover,
                &leader,
                "hand the leader role to the best healthy replica, so the leader restarts as a replica",
            ));
            steps.push(OpStep::new(
                Action::Restart,
                &leader,
                "the former leader, now a replica",
            ));
        }
    }
    OpPlan::go(OP, steps)
}

/// Is the cluster fit for the next restart step? A running leader (the expected one, when
/// given), no pause, and every replica but `except` replicating with lag (of `lag`) below
/// `tolerance`: otherwise a second member would be down.
pub fn gate(
    c: &Cluster,
    except: &str,
    expect_leader: Option<&str>,
    lag: LagKind,
    tolerance: u64,
) -> Result<(), String> {
    let Some(leader) = c.leader() else {
        return Err("the cluster has no leader".into());
    };
    if leader.state != State::Running {
        return Err(format!("the leader {} is {}", leader.name, leader.state));
    }
    if let Some(want) = expect_leader {
        if leader.name != want {
            return Err(format!("the leader changed from {want} to {}", leader.name));
        }
    }
    if c.paused {
        return Err("the cluster is paused (maintenance mode)".into());
    }
    for m in c.replicas().filter(|m| m.name != except) {
        if !m.is_back(lag, tolerance) {
            let shown = m
                .lag(lag)
                .map(|l| match l.bytes() {
                    Some(b) => human(b),
                    None => "unknown".into(),
                })
                .unwrap_or_default();
            return Err(format!(
                "{} is {} with {} lag {shown} (tolerance {}): a second member would be down",
                m.name,
                m.state,
                lag.as_str(),
                human(tolerance)
            ));
        }
    }
    Ok(())
}

/// The rolling restart's last step: the former leader is restarted only once it is back as
/// a replica after the switchover (replicating, lag below `tolerance`), and the cluster
/// passes [`gate`]. A former leader whose demotion has not ended (PostgreSQL waits at
/// shutdown for every connected standby to confirm the last WAL, so a standby cut off holds
/// it for up to `wal_sender_timeout`) is in no state to be restarted; the run stops there and
/// says so. Seen under the fault matrix (issue 24): a replica cut off just after its own
/// restart; the switchover that followed left the former leader stopping for a minute, and
/// the run sent it `POST /restart` (Patroni: "demote already in progress").
pub fn former_leader_gate(
    c: &Cluster,
    name: &str,
    lag: LagKind,
    tolerance: u64,
) -> Result<(), String> {
    let Some(m) = c.member(name) else {
        return Err(format!("{name} is no longer a member of the cluster"));
    };
    if m.role.is_leader() {
        return Err(format!("{name} still leads after the switchover"));
    }
    if !m.is_back(lag, tolerance) {
        return Err(format!(
            "the former leader {name} is {} and not replicating yet after the switchover: it is not restarted; once it replicates, restart it with `pgpatrol restart {name} --yes`",
            m.state
        ));
    }
    gate(c, name, None, lag, tolerance)
}

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

    const MB: u64 = 1024 * 1024;

    #[test]
    fn the_gate_refuses_a_second_member_down() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replica("pg2")
            .lag_mb(40)
            .build();
        // Restarting pg1 while pg2 is 40 MB behind would leave one healthy member.
        let e = gate(&c, "pg1", Some("pg0"), LagKind::Replay, MB).unwrap_err();
        assert!(e.starts_with("pg2 is streaming"), "{e}");
        assert!(e.contains("a second member would be down"), "{e}");
        // pg2 itself may be restarted: the others are fine.
        assert!(gate(&c, "pg2", Some("pg0"), LagKind::Replay, MB).is_ok());
    }

    #[test]
    fn the_former_leader_is_restarted_only_once_it_replicates() {
        let back = ClusterBuilder::new()
            .leader("pg1")
            .replica("pg0")
            .replica("pg2")
            .build();
        assert!(former_leader_gate(&back, "pg0", LagKind::Replay, MB).is_ok());
        let stopping = ClusterBuilder::new()
            .leader("pg1")
            .replica("pg0")
            .state(State::Stopping)
            .unknown_lag()
            .replica("pg2")
            .build();
        let e = former_leader_gate(&stopping, "pg0", LagKind::Replay, MB).unwrap_err();
        assert!(
            e.contains("not replicating yet after the switchover"),
            "{e}"
        );
        let still = ClusterBuilder::new().leader("pg0").replica("pg1").build();
        assert!(former_leader_gate(&still, "pg0", LagKind::Replay, MB).is_err());
    }

    #[test]
    fn the_gate_wants_the_same_running_leader_and_no_pause() {
        let c = ClusterBuilder::new().leader("pg0").replica("pg1").build();
        assert!(gate(&c, "pg1", Some("pg0"), LagKind::Replay, MB).is_ok());
        let e = gate(&c, "pg1", Some("pg9"), LagKind::Replay, MB).unwrap_err();
        assert!(e.contains("leader changed"), "{e}");
        let paused = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .paused()
            .build();
        assert!(gate(&paused, "pg1", None, LagKind::Replay, MB)
            .unwrap_err()
            .contains("paused"));
        let down = ClusterBuilder::new()
            .leader("pg0")
            .state(State::Stopped)
            .replica("pg1")
            .build();
        assert!(gate(&down, "pg1", None, LagKind::Replay, MB)
            .unwrap_err()
            .contains("is stopped"));
        let none = ClusterBuilder::new().replica("pg1").build();
        assert!(gate(&none, "pg1", None, LagKind::Replay, MB)
            .unwrap_err()
            .contains("no leader"));
    }

    #[test]
    fn a_rolling_plan_takes_replicas_first_then_hands_over() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg2")
            .replica("pg1")
            .build();
        let all = names(&["pg0", "pg2", "pg1"]);
        let p = plan(
            &c,
            &RestartRequest {
                selected: &all,
                rolling: true,
                ..Default::default()
            },
        );
        let order: Vec<(Action, &str)> = p
            .steps
            .iter()
            .map(|s| (s.action, s.member.as_str()))
            .collect();
        assert_eq!(
            order,
            vec![
                (Action::Restart, "pg1"),
                (Action::Restart, "pg2"),
                (Action::Switchover, "pg0"),
                (Action::Restart, "pg0"),
            ]
        );
        let in_place = plan(
            &c,
            &RestartRequest {
                selected: &all,
                rolling: true,
                leader_in_place: true,
                ..Default::default()
            },
        );
        assert_eq!(in_place.steps.len(), 3);
        assert_eq!(in_place.steps[2].action, Action::Restart);
        // Named members restart in the order given when not rolling.
        let named = names(&["pg2", "pg0"]);
        let seq = plan(
            &c,
            &RestartRequest {
                selected: &named,
                ..Default::default()
            },
        );
        assert_eq!(seq.steps[0].member, "pg2");
        assert!(seq.steps[1].reason.contains("in place"));
    }

    #[test]
    fn a_schedule_plan_carries_the_schedule_refusals() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replica("pg2")
            .build();
        let two = names(&["pg1", "pg2"]);
        let p = plan(
            &c,
            &RestartRequest {
                selected: &two,
                scheduled: Some("2030-01-01T00:00:00Z"),
                ..Default::default()
            },
        );
        assert!(matches!(p.refusal, Some(Refusal::Unsafe(_))), "{p:?}");
        assert!(p.steps.is_empty());
        let one = names(&["pg1"]);
        let ok = plan(
            &c,
            &RestartRequest {
                selected: &one,
                scheduled: Some("2030-01-01T00:00:00Z"),
                ..Default::default()
            },
        );
        assert_eq!(ok.steps[0].action, Action::ScheduleRestart);
        assert_eq!(ok.steps[0].at.as_deref(), Some("2030-01-01T00:00:00Z"));
        let paused = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .paused()
            .build();
        let p = plan(
            &paused,
            &RestartRequest {
                selected: &one,
                scheduled: Some("2030-01-01T00:00:00Z"),
                ..Default::default()
            },
        );
        assert!(p.refusal.unwrap().reason().contains("paused"));
        let none = ClusterBuilder::new().replica("pg1").build();
        let p = plan(
            &none,
            &RestartRequest {
                selected: &one,
                rolling: true,
                ..Default::default()
            },
        );
        assert!(matches!(p.refusal, Some(Refusal::Invalid(_))));
    }

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
