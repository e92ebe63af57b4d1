//! `member remove`: taking one member out of the cluster, as a scale-down does. The member
//! that goes is the one the workload removes (the highest ordinal of a StatefulSet, the one
//! named in the lab); it must not take the leader with it unasked, nor the only synchronous
//! standby, nor leave fewer healthy replicas than promised, and nothing is removed from a
//! paused cluster (Patroni would not react to what follows).

use super::plan::{Action, OpPlan, OpStep};
use super::Refusal;
use crate::model::{Cluster, LagKind, Role};

/// What `member remove` was asked.
#[derive(Debug, Clone)]
pub struct RemoveRequest<'a> {
    pub member: &'a str,
    /// Hand the leader role over first when the member leads (`--switchover`).
    pub switchover: bool,
    /// Healthy replicas that must remain once the member is gone.
    pub min_healthy: usize,
    pub lag: LagKind,
    pub tolerance: u64,
    /// The cluster runs in synchronous mode (the dynamic configuration).
    pub synchronous_mode: bool,
}

/// The steps to remove `req.member` from `c`, or why not. Decided again before each step.
pub fn remove(c: &Cluster, req: &RemoveRequest<'_>) -> Result<Vec<OpStep>, Refusal> {
    let name = req.member;
    let Some(m) = c.member(name) else {
        let names: Vec<&str> = c.members.iter().map(|m| m.name.as_str()).collect();
        return Err(Refusal::Invalid(format!(
            "no member named {name:?} in the cluster (members: {})",
            names.join(", ")
        )));
    };
    if c.paused {
        return Err(Refusal::Unsafe(
            "the cluster is paused (maintenance mode): Patroni would not react to a member leaving; resume it first".into(),
        ));
    }
    let Some(leader) = c.leader() else {
        return Err(Refusal::Unsafe(
            "the cluster has no leader: removing a member now could take the one that would lead"
                .into(),
        ));
    };
    let leads = leader.name == name;
    if leads && leader.role == Role::StandbyLeader {
        return Err(Refusal::Unsafe(format!(
            "{name} is the standby leader: a standby cluster cannot hand that role over by switchover here; remove another member"
        )));
    }
    if leads && !req.switchover {
        return Err(Refusal::Unsafe(format!(
            "{name} is the leader: add --switchover to hand the role over first (with the usual pre-flight), or remove another member"
        )));
    }
    let sync: Vec<&str> = c
        .replicas()
        .filter(|r| r.role == Role::SyncStandby)
        .map(|r| r.name.as_str())
        .collect();
    if req.synchronous_mode && sync == [name] {
        return Err(Refusal::Unsafe(format!(
            "{name} is the only synchronous standby: without it commits wait (synchronous_mode_strict) or lose their guarantee; add a member first"
        )));
    }
    // Healthy replicas once it is gone: the others, less the one that takes over if it leads.
    let healthy = c
        .replicas()
        .filter(|r| r.name != name && r.is_caught_up(req.lag, req.tolerance))
        .count();
    let left = if leads {
        healthy.saturating_sub(1)
    } else {
        healthy
    };
    if left < req.min_healthy {
        return Err(Refusal::Unsafe(format!(
            "removing {name} would leave {left} healthy replica(s), fewer than --min-healthy {}",
            req.min_healthy
        )));
    }
    let mut steps = Vec::new();
    if leads {
        steps.push(OpStep::new(
            Action::Switchover,
            name,
            format!("{name} leads: the role is handed over to the best candidate before it goes"),
        ));
    }
    steps.push(OpStep::new(
        Action::RemoveMember,
        name,
        format!(
            "{} ({}); {left} healthy replica(s) remain",
            m.role.title().to_lowercase(),
            m.state
        ),
    ));
    Ok(steps)
}

/// `member remove` as a plan ([`remove`]'s steps, or its refusal).
pub fn plan(c: &Cluster, req: &RemoveRequest<'_>) -> OpPlan {
    OpPlan::from_rule("member remove", remove(c, req))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;

    fn req(member: &str) -> RemoveRequest<'_> {
        RemoveRequest {
            member,
            switchover: false,
            min_healthy: 1,
            lag: LagKind::Replay,
            tolerance: 1024 * 1024,
            synchronous_mode: false,
        }
    }

    fn three() -> Cluster {
        ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replica("pg2")
            .build()
    }

    #[test]
    fn a_replica_goes_while_enough_stay_healthy() {
        let steps = remove(&three(), &req("pg2")).unwrap();
        assert!(matches!(&steps[..], [s] if s.action == Action::RemoveMember && s.member == "pg2"));
        let lagging = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(40)
            .replica("pg2")
            .build();
        let e = remove(&lagging, &req("pg2")).unwrap_err();
        assert!(e.reason().contains("would leave 0 healthy"), "{e}");
    }

    #[test]
    fn the_leader_goes_only_with_switchover_and_after_it() {
        let e = remove(&three(), &req("pg0")).unwrap_err();
        assert!(matches!(e, Refusal::Unsafe(_)));
        assert!(e.reason().contains("add --switchover"), "{e}");
        let steps = remove(
            &three(),
            &RemoveRequest {
                switchover: true,
                ..req("pg0")
            },
        )
        .unwrap();
        assert_eq!(
            (steps[0].action, steps[0].member.as_str()),
            (Action::Switchover, "pg0")
        );
        assert_eq!(
            (steps[1].action, steps[1].member.as_str()),
            (Action::RemoveMember, "pg0")
        );
        // Two members: the one replica takes over, none would remain healthy.
        let two = ClusterBuilder::new().leader("pg0").replica("pg1").build();
        let e = remove(
            &two,
            &RemoveRequest {
                switchover: true,
                ..req("pg0")
            },
        )
        .unwrap_err();
        assert!(e.reason().contains("would leave 0 healthy"), "{e}");
    }

    #[test]
    fn the_only_synchronous_standby_stays() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .sync_standby("pg1")
            .replica("pg2")
            .build();
        let sync = RemoveRequest {
            synchronous_mode: true,
            ..req("pg1")
        };
        let e = remove(&c, &sync).unwrap_err();
        assert!(e.reason().contains("only synchronous standby"), "{e}");
        assert!(remove(&c, &req("pg1")).is_ok(), "not in synchronous mode");
        assert!(remove(
            &c,
            &RemoveRequest {
                synchronous_mode: true,
                ..req("pg2")
            }
        )
        .is_ok());
    }

    #[test]
    fn paused_leaderless_and_unknown_are_refused() {
        let paused = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replica("pg2")
            .paused()
            .build();
        assert!(remove(&paused, &req("pg2"))
            .unwrap_err()
            .reason()
            .contains("paused"));
        let leaderless = ClusterBuilder::new().replica("pg1").replica("pg2").build();
        assert!(remove(&leaderless, &req("pg2"))
            .unwrap_err()
            .reason()
            .contains("no leader"));
        assert!(matches!(
            remove(&three(), &req("pg9")),
            Err(Refusal::Invalid(_))
        ));
    }
}
