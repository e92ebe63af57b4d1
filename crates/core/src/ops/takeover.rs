//! `switchover` and `failover`: which member may take over, what a failover may lose, and
//! when a takeover is done.
//!
//! Who may take over at all is Patroni's takeover rule, [`crate::candidates`] (replicating,
//! no `nofailover`, `failover_priority` above 0, within `maximum_lag_on_failover`, not on an
//! older timeline, a synchronous standby in synchronous mode). A failover adds
//! [`data_at_risk`]: the leader is gone, so the candidate's data is compared with every
//! other member's, and anything another member may hold that the candidate does not is a
//! risk that `--yes` does not answer. [`progress`] says when the takeover is done.

use serde::Serialize;

use super::plan::{Action, OpPlan, OpStep};
use super::Refusal;
use crate::candidates::{self, Candidate};
use crate::lsn::Lsn;
use crate::model::{Cluster, State};
use crate::units::human;

/// One member's last known WAL positions, for a failover's "which member has the most data".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<Lsn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<Lsn>,
    /// Bytes behind the last leader position the DCS knew, when that is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind_leader: Option<u64>,
    /// Its own REST API answered (else the figures are /cluster's).
    pub reachable: bool,
}

impl Position {
    /// The furthest WAL it holds: received or replayed, whichever is further.
    pub fn data(&self) -> Option<Lsn> {
        self.received.max(self.replayed)
    }
}

/// The member holding the most WAL (of equals, the first by name).
pub fn most_data(positions: &[Position]) -> Option<&Position> {
    positions
        .iter()
        .filter(|p| p.data().is_some())
        .max_by(|a, b| a.data().cmp(&b.data()).then(b.name.cmp(&a.name)))
}

/// What promoting a failover candidate may lose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DataAtRisk {
    /// Each way data may be lost; empty when the candidate holds everything any member has.
    pub reasons: Vec<String>,
    /// Bytes of WAL another member has and the candidate does not (0 when not known).
    pub bytes: u64,
    /// The member with the most data, when that is another one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub better: Option<String>,
}

impl DataAtRisk {
    pub fn is_safe(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// What promoting `candidate` after the leader is gone may lose, from every other member's
/// position. A position nobody could read is a risk, never "nothing to lose": the
/// candidate's own (it may be far behind), and another member's (it may be ahead).
pub fn data_at_risk(
    candidate: &str,
    positions: &[Position],
    synchronous_mode: bool,
    candidate_synchronous: bool,
) -> DataAtRisk {
    let mut risk = DataAtRisk::default();
    let mine = positions
        .iter()
        .find(|p| p.name == candidate)
        .and_then(Position::data);
    let best = most_data(positions);
    match (best, mine) {
        (Some(b), Some(mine)) => {
            if let Some(theirs) = b.data().filter(|t| *t > mine) {
                risk.bytes = theirs.bytes_after(mine);
                risk.better = Some(b.name.clone());
                risk.reasons.push(format!(
                    "{candidate} has {} less WAL than {} ({mine} < {theirs}): what only {} has is lost",
                    human(risk.bytes),
                    b.name,
                    b.name
                ));
            }
        }
        (_, None) => risk
            .reasons
            .push(format!("{candidate}'s WAL position is unknown")),
        (None, Some(_)) => {}
    }
    let unknown: Vec<&str> = positions
        .iter()
        .filter(|p| p.name != candidate && p.data().is_none())
        .map(|p| p.name.as_str())
        .collect();
    if !unknown.is_empty() {
        risk.reasons.push(format!(
            "the WAL position of {} could not be read: it may hold more than {candidate}",
            unknown.join(", ")
        ));
    }
    if synchronous_mode && !candidate_synchronous {
        risk.reasons.push(format!(
            "{candidate} is asynchronous in synchronous mode: committed transactions may be missing on it"
        ));
    }
    risk
}

/// How far a takeover has come, as the cluster shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// No leader other than the former one runs yet.
    Waiting,
    /// `leader` runs and leads; for a switchover the former leader does not replicate yet.
    NewLeader { leader: String },
    /// `leader` runs and leads, and (switchover) the former leader replicates from it.
    Done { leader: String },
}

/// Where the takeover from `former` stands in `c`. Patroni's answer to the request is not
/// the result: a switchover is done when the new leader runs and the former leader
/// replicates again, a failover when the new leader runs.
pub fn progress(c: &Cluster, former: Option<&str>, switchover: bool) -> Progress {
    let Some(leader) = c
        .leader()
        .filter(|l| l.state == State::Running && Some(l.name.as_str()) != former)
    else {
        return Progress::Waiting;
    };
    let rejoined = !switchover
        || former
            .and_then(|f| c.member(f))
            .is_none_or(|f| !f.role.is_leader() && f.state.is_healthy_replica());
    if rejoined {
        Progress::Done {
            leader: leader.name.clone(),
        }
    } else {
        Progress::NewLeader {
            leader: leader.name.clone(),
        }
    }
}

/// A switchover's plan: one step, from the leader to `candidate` (or the best eligible
/// one), now or at `scheduled`; refused when no leader leads, when a schedule meets a
/// paused cluster, or when the candidate cannot take over (Patroni's rule, `cands`).
pub fn switchover(
    c: &Cluster,
    cands: &[Candidate],
    candidate: Option<&str>,
    scheduled: Option<&str>,
) -> OpPlan {
    const OP: &str = "switchover";
    let Some(leader) = c.leader() else {
        return OpPlan::refused(OP, Refusal::Invalid("the cluster has no leader: a switchover needs one; for a dead leader use `pgpatrol failover --candidate MEMBER`".into()));
    };
    if scheduled.is_some() && c.paused {
        return OpPlan::refused(OP, Refusal::Unsafe("the cluster is paused: Patroni cannot schedule a switchover in maintenance mode; resume it or switch over now".into()));
    }
    let (chosen, why) = match candidate {
        Some(name) => {
            let Some(cand) = cands.iter().find(|x| x.name == name) else {
                return OpPlan::refused(OP, Refusal::Unsafe(format!("{name} is not a replica")));
            };
            if !cand.eligible {
                return OpPlan::refused(
                    OP,
                    Refusal::Unsafe(format!(
                        "{name} cannot take over: {}",
                        cand.reasons.join("; ")
                    )),
                );
            }
            (
                name.to_string(),
                "the candidate asked for; it can take over",
            )
        }
        None => match candidates::best(cands) {
            Some(b) => (
                b.name.clone(),
                "the best candidate: a synchronous standby first, then the least lag",
            ),
            None => {
                return OpPlan::refused(
                    OP,
                    Refusal::Unsafe("no member can take over (see the table)".into()),
                )
            }
        },
    };
    let when = scheduled.map_or("now".to_string(), |s| format!("at {s}"));
    let mut step = OpStep::new(
        Action::Switchover,
        &leader.name,
        format!("hand over from {} to {chosen} {when}: {why}", leader.name),
    )
    .to(chosen);
    if let Some(at) = scheduled {
        step = step.at(at);
    }
    OpPlan::go(OP, vec![step])
}

/// A failover's plan: one step promoting `candidate`, judged (`cands`) as if the dead
/// leader were gone; refused when Patroni would not promote it, or when it may lack data
/// another member has (`risk`) and that loss was not `accepted` (`--accept-data-loss`, or
/// the candidate's name typed): `--yes` alone never accepts it.
pub fn failover(candidate: &str, cands: &[Candidate], risk: &DataAtRisk, accepted: bool) -> OpPlan {
    const OP: &str = "failover";
    let Some(chosen) = cands.iter().find(|x| x.name == candidate) else {
        return OpPlan::refused(
            OP,
            Refusal::Invalid(format!("{candidate} is not a replica")),
        );
    };
    if !chosen.eligible {
        return OpPlan::refused(
            OP,
            Refusal::Unsafe(format!(
                "{candidate} cannot be promoted: {}",
                chosen.reasons.join("; ")
            )),
        );
    }
    if !risk.is_safe() && !accepted {
        let better = risk
            .better
            .as_ref()
            .map(|b| format!(", or choose {b}"))
            .unwrap_or_default();
        return OpPlan::refused(
            OP,
            Refusal::Unsafe(format!(
                "promoting {candidate} may lose data ({}): add --accept-data-loss to promote it anyway{better}",
                risk.reasons.join("; ")
            )),
        );
    }
    let why = if risk.is_safe() {
        "it holds the most data of the members".to_string()
    } else {
        format!(
            "the loss of up to {} bytes was accepted: {}",
            risk.bytes,
            risk.reasons.join("; ")
        )
    };
    OpPlan::go(
        OP,
        vec![OpStep::new(Action::Failover, candidate, why).to(candidate)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;

    fn pos(name: &str, received: Option<u64>, replayed: Option<u64>) -> Position {
        Position {
            name: name.into(),
            received: received.map(Lsn),
            replayed: replayed.map(Lsn),
            behind_leader: None,
            reachable: true,
        }
    }

    #[test]
    fn most_data_is_the_furthest_received_or_replayed() {
        let ps = [
            pos("pg1", Some(100), Some(90)),
            pos("pg2", Some(80), Some(120)),
            pos("pg3", None, None),
        ];
        assert_eq!(most_data(&ps).map(|p| p.name.as_str()), Some("pg2"));
        assert_eq!(most_data(&ps[2..]).map(|p| p.name.as_str()), None);
    }

    #[test]
    fn the_member_with_the_most_data_risks_nothing() {
        let ps = [
            pos("pg1", Some(200), Some(200)),
            pos("pg2", Some(100), None),
        ];
        let r = data_at_risk("pg1", &ps, false, false);
        assert!(r.is_safe(), "{r:?}");
        assert_eq!(r.bytes, 0);
    }

    #[test]
    fn less_wal_than_another_member_is_a_risk_with_its_bytes() {
        let ps = [
            pos("pg1", Some(100), None),
            pos("pg2", Some(100 + 4096), None),
        ];
        let r = data_at_risk("pg1", &ps, false, false);
        assert_eq!(r.bytes, 4096);
        assert_eq!(r.better.as_deref(), Some("pg2"));
        assert!(r.reasons[0].contains("less WAL than pg2"), "{r:?}");
    }

    #[test]
    fn an_unknown_position_is_a_risk_whoever_holds_it() {
        // The candidate's own.
        let ps = [pos("pg1", None, None), pos("pg2", Some(100), None)];
        let r = data_at_risk("pg1", &ps, false, false);
        assert!(!r.is_safe());
        assert!(
            r.reasons[0].contains("pg1's WAL position is unknown"),
            "{r:?}"
        );
        // Another member's: it may be ahead.
        let ps = [pos("pg1", Some(100), None), pos("pg2", None, None)];
        let r = data_at_risk("pg1", &ps, false, false);
        assert_eq!(
            r.reasons,
            vec!["the WAL position of pg2 could not be read: it may hold more than pg1"]
        );
    }

    #[test]
    fn asynchronous_in_synchronous_mode_is_a_risk() {
        let ps = [pos("pg1", Some(100), None), pos("pg2", Some(100), None)];
        assert!(data_at_risk("pg1", &ps, true, true).is_safe());
        let r = data_at_risk("pg1", &ps, true, false);
        assert!(
            r.reasons[0].contains("asynchronous in synchronous mode"),
            "{r:?}"
        );
        assert!(data_at_risk("pg1", &ps, false, false).is_safe());
    }

    fn cand(name: &str, eligible: bool) -> Candidate {
        Candidate {
            name: name.into(),
            role: crate::model::Role::Replica,
            state: "streaming".into(),
            timeline: Some(1),
            lag: crate::model::Lag::Bytes(0),
            synchronous: false,
            priority: 1,
            eligible,
            reasons: if eligible {
                vec![]
            } else {
                vec!["nofailover".into()]
            },
        }
    }

    #[test]
    fn a_switchover_plan_names_the_step_or_the_refusal() {
        let c = ClusterBuilder::new().leader("pg0").replica("pg1").build();
        let p = switchover(&c, &[cand("pg1", true)], None, None);
        assert_eq!(p.steps[0].member, "pg0");
        assert_eq!(p.steps[0].to.as_deref(), Some("pg1"));
        let p = switchover(&c, &[cand("pg1", false)], Some("pg1"), None);
        assert!(p.refusal.unwrap().reason().contains("cannot take over"));
        let paused = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .paused()
            .build();
        let p = switchover(
            &paused,
            &[cand("pg1", true)],
            None,
            Some("2030-01-01T00:00:00Z"),
        );
        assert!(p.refusal.unwrap().reason().contains("paused"));
        let none = ClusterBuilder::new().replica("pg1").build();
        let p = switchover(&none, &[cand("pg1", true)], None, None);
        assert!(matches!(p.refusal, Some(Refusal::Invalid(_))));
    }

    #[test]
    fn a_failover_that_may_lose_data_needs_the_loss_accepted() {
        let ps = [
            pos("pg1", Some(100), None),
            pos("pg2", Some(100 + 4096), None),
        ];
        let risk = data_at_risk("pg1", &ps, false, false);
        let cands = [cand("pg1", true), cand("pg2", true)];
        let p = failover("pg1", &cands, &risk, false);
        let why = p.refusal.expect("refused").reason().to_string();
        assert!(why.contains("--accept-data-loss"), "{why}");
        assert!(why.contains("or choose pg2"), "{why}");
        let p = failover("pg1", &cands, &risk, true);
        assert_eq!(p.steps[0].action, Action::Failover);
        assert!(p.steps[0].reason.contains("4096 bytes"), "{p:?}");
        let safe = data_at_risk("pg2", &ps, false, false);
        assert!(failover("pg2", &cands, &safe, false).refusal.is_none());
        assert!(matches!(
            failover("pg9", &cands, &safe, false).refusal,
            Some(Refusal::Invalid(_))
        ));
    }

    #[test]
    fn a_switchover_is_done_when_the_former_leader_replicates() {
        let before = ClusterBuilder::new().leader("pg0").replica("pg1").build();
        assert_eq!(progress(&before, Some("pg0"), true), Progress::Waiting);
        // pg1 leads, pg0 is still down: not done for a switchover, done for a failover.
        let mid = ClusterBuilder::new()
            .replica("pg0")
            .state(State::Stopped)
            .leader("pg1")
            .build();
        assert_eq!(
            progress(&mid, Some("pg0"), true),
            Progress::NewLeader {
                leader: "pg1".into()
            }
        );
        assert_eq!(
            progress(&mid, Some("pg0"), false),
            Progress::Done {
                leader: "pg1".into()
            }
        );
        let after = ClusterBuilder::new().replica("pg0").leader("pg1").build();
        assert_eq!(
            progress(&after, Some("pg0"), true),
            Progress::Done {
                leader: "pg1".into()
            }
        );
        // A new leader that does not run yet is no takeover.
        let starting = ClusterBuilder::new()
            .replica("pg0")
            .leader("pg1")
            .state(State::Starting)
            .build();
        assert_eq!(progress(&starting, Some("pg0"), false), Progress::Waiting);
    }
}
