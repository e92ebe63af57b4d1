//! `slot drop`: which replication slots on the leader may be dropped. Dropping a slot
//! releases the WAL it holds; dropping the wrong one costs a rebuild or comes straight back.

use super::plan::{Action, OpPlan, OpStep};
use super::Refusal;
use crate::model::Member;
use crate::slots::slot_name_from_member_name;

/// What was read of the slot on the leader (`pg_replication_slots`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot<'a> {
    pub name: &'a str,
    /// A walsender streams through it now.
    pub active: bool,
}

/// Why `slot` may not be dropped, or `None`. `permanent` are the slots of the dynamic
/// configuration (`slots:`), `members` the cluster's members, whose own slots Patroni keeps
/// by its member-to-slot rule ([`slot_name_from_member_name`]).
///
/// `retained` are the slots Patroni 4.0+ keeps for members whose key is gone
/// (`retain_slots` in the DCS's `/status`, for `member_slots_ttl`): such a member is most
/// likely down, not gone, and comes back to its slot.
pub fn drop_refusal(
    slot: &Slot<'_>,
    permanent: &[String],
    members: &[Member],
    retained: &[String],
) -> Option<String> {
    let name = slot.name;
    if slot.active {
        return Some(format!(
            "{name} is active: a walsender streams through it; stop its consumer first"
        ));
    }
    if permanent.iter().any(|p| p == name) {
        return Some(format!(
            "Patroni keeps {name} as a permanent slot (`slots` in the dynamic configuration): dropped, it would come back; remove it there: pgpatrol edit-config --set slots.{name}=null"
        ));
    }
    let member = members
        .iter()
        .find(|m| slot_name_from_member_name(&m.name) == name)
        .map(|m| {
            format!(
                "{name} is the slot Patroni keeps for the member {}: dropped, that member would need a rebuild to replicate again",
                m.name
            )
        });
    member.or_else(|| {
        retained.iter().any(|r| r == name).then(|| {
            format!(
                "Patroni keeps {name} for a member whose key is gone (retain_slots in the DCS's /status, for member_slots_ttl): that member is most likely down and comes back to it; dropped, it would need a rebuild to replicate again. Wait out member_slots_ttl, or remove the member first"
            )
        })
    })
}

/// `slot drop` as a plan: one step dropping `slot` on `leader`, or [`drop_refusal`]'s
/// reason (unsafe: exit 1).
pub fn drop_plan(
    leader: &str,
    slot: &Slot<'_>,
    permanent: &[String],
    members: &[Member],
    retained: &[String],
) -> OpPlan {
    match drop_refusal(slot, permanent, members, retained) {
        Some(why) => OpPlan::refused("slot drop", Refusal::Unsafe(why)),
        None => OpPlan::go(
            "slot drop",
            vec![OpStep::new(
                Action::DropSlot,
                leader,
                format!(
                    "{} is inactive, not permanent, and no member's own slot",
                    slot.name
                ),
            )],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;

    fn slot(name: &str, active: bool) -> Slot<'_> {
        Slot { name, active }
    }

    #[test]
    fn active_permanent_and_member_slots_are_refused() {
        let c = ClusterBuilder::new()
            .leader("db0.example.com")
            .replica("DB-2")
            .build();
        let permanent = vec!["keepme".to_string()];
        // Each refusal on its own: the active slot is neither permanent nor a member's.
        let why = drop_refusal(&slot("logical_feed", true), &permanent, &c.members, &[]).unwrap();
        assert!(why.contains("is active"), "{why}");
        let why = drop_refusal(&slot("keepme", false), &permanent, &c.members, &[]).unwrap();
        assert!(why.contains("permanent slot"), "{why}");
        let why = drop_refusal(&slot("db_2", false), &permanent, &c.members, &[]).unwrap();
        assert!(why.contains("for the member DB-2"), "{why}");
        let why =
            drop_refusal(&slot("db0_example_com", false), &permanent, &c.members, &[]).unwrap();
        assert!(why.contains("db0.example.com"), "{why}");
        assert_eq!(
            drop_refusal(&slot("abandoned", false), &permanent, &c.members, &[]),
            None
        );
        // A slot Patroni 4.0+ keeps for a member whose key is gone (retain_slots).
        let retained = vec!["pg1".to_string()];
        let why = drop_refusal(&slot("pg1", false), &permanent, &c.members, &retained).unwrap();
        assert!(why.contains("retain_slots"), "{why}");
        assert_eq!(
            drop_refusal(&slot("abandoned", false), &permanent, &c.members, &retained),
            None
        );
    }
}
