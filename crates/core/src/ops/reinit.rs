//! `reinit MEMBER`: one reinitialization by hand. It wipes the member's data directory and
//! clones it again, so it is never the leader's (nor a standby leader's): that would take
//! the cluster's only copy of its newest data down. Heal's guardrails (`crate::heal`)
//! decide the unattended ones; this is the rule for the one a person asks for.

use super::plan::{Action, OpPlan, OpStep};
use super::Refusal;
use crate::model::Cluster;

/// The plan to reinitialize `member` of `c`, or why not.
pub fn plan(c: &Cluster, member: &str) -> OpPlan {
    const OP: &str = "reinit";
    let Some(m) = c.member(member) else {
        let names: Vec<&str> = c.members.iter().map(|m| m.name.as_str()).collect();
        return OpPlan::refused(
            OP,
            Refusal::Invalid(format!(
                "no member named {member:?} in the cluster (members: {})",
                names.join(", ")
            )),
        );
    };
    if m.role.is_leader() {
        return OpPlan::refused(
            OP,
            Refusal::Unsafe(format!(
                "{} is the {}; pgpatrol never reinitializes the leader",
                m.name,
                m.role.title().to_lowercase()
            )),
        );
    }
    OpPlan::go(
        OP,
        vec![OpStep::new(
            Action::Reinitialize,
            member,
            format!(
                "a {} ({}): its data directory is wiped and cloned again",
                m.role.title().to_lowercase(),
                m.state
            ),
        )],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;

    #[test]
    fn never_the_leader_nor_a_stranger() {
        let c = ClusterBuilder::new().leader("pg0").replica("pg1").build();
        assert_eq!(plan(&c, "pg1").steps[0].action, Action::Reinitialize);
        let why = plan(&c, "pg0").refusal.expect("refused");
        assert!(matches!(why, Refusal::Unsafe(_)));
        assert!(why.reason().contains("never reinitializes the leader"));
        assert!(matches!(plan(&c, "pg9").refusal, Some(Refusal::Invalid(_))));
    }
}
