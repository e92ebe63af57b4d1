//! An operation as a value: the steps it will take, in order, each with its reason — or why
//! it will not run. Every day-2 operation's rule in this folder returns one; the command
//! shows it (`--dry-run`, `-o json`), and pgpatrol's one operation runner carries it out,
//! reading the cluster again and deciding again before every step.

use serde::Serialize;

use super::Refusal;

/// What one step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `POST /switchover` (now, or at a time).
    Switchover,
    /// `POST /failover`.
    Failover,
    /// `POST /restart`, then wait until the member is back.
    Restart,
    /// `POST /restart {"schedule": T}`: the member's Patroni restarts it at T.
    ScheduleRestart,
    /// `DELETE /restart`.
    CancelRestart,
    /// `DELETE /switchover`.
    CancelSwitchover,
    /// `PATCH /config {"pause": true}`.
    Pause,
    /// `PATCH /config {"pause": null}`.
    Resume,
    /// `POST /reload`.
    Reload,
    /// `PATCH /config` with the edit's patch, then read back.
    PatchConfig,
    /// `PATCH /config` removing `standby_cluster`: the standby leader becomes a primary.
    Promote,
    /// `PATCH /config` adding `standby_cluster`: the leader follows another cluster.
    Demote,
    /// `POST /reinitialize`: the replica's data directory is wiped and cloned again.
    Reinitialize,
    /// `pg_drop_replication_slot` on the leader.
    DropSlot,
    /// Delete every key of the scope in the DCS.
    DeleteKeys,
    /// Scale the workload down by one (or stop the lab member).
    RemoveMember,
    /// Delete a PersistentVolumeClaim of the removed member.
    DeleteClaim,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Switchover => "switchover",
            Action::Failover => "failover",
            Action::Restart => "restart",
            Action::ScheduleRestart => "schedule restart",
            Action::CancelRestart => "cancel restart",
            Action::CancelSwitchover => "cancel switchover",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Reload => "reload",
            Action::PatchConfig => "patch config",
            Action::Promote => "promote",
            Action::Demote => "demote",
            Action::Reinitialize => "reinitialize",
            Action::DropSlot => "drop slot",
            Action::DeleteKeys => "delete keys",
            Action::RemoveMember => "remove member",
            Action::DeleteClaim => "delete claim",
        }
    }
}

/// One step: what, on which member (or object), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpStep {
    pub action: Action,
    /// The member the request goes to or acts on (a slot, a claim or the scope for the
    /// steps that act on those).
    pub member: String,
    /// The member a takeover hands the leader role to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// When a scheduled step runs (ISO 8601).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub reason: String,
}

impl OpStep {
    pub fn new(action: Action, member: impl Into<String>, reason: impl Into<String>) -> Self {
        OpStep {
            action,
            member: member.into(),
            to: None,
            at: None,
            reason: reason.into(),
        }
    }

    /// The member a takeover hands over to.
    pub fn to(self, to: impl Into<String>) -> Self {
        OpStep {
            to: Some(to.into()),
            ..self
        }
    }

    /// The time a scheduled step runs.
    pub fn at(self, at: impl Into<String>) -> Self {
        OpStep {
            at: Some(at.into()),
            ..self
        }
    }
}

impl std::fmt::Display for OpStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.action.as_str(), self.member)
    }
}

/// An operation decided: steps to take in order, or a refusal, or nothing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpPlan {
    pub operation: &'static str,
    pub steps: Vec<OpStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// Why there is nothing to do (no step and no refusal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nothing: Option<String>,
}

impl OpPlan {
    pub fn go(operation: &'static str, steps: Vec<OpStep>) -> Self {
        OpPlan {
            operation,
            steps,
            refusal: None,
            nothing: None,
        }
    }

    pub fn refused(operation: &'static str, refusal: Refusal) -> Self {
        OpPlan {
            operation,
            steps: Vec::new(),
            refusal: Some(refusal),
            nothing: None,
        }
    }

    pub fn nothing(operation: &'static str, why: impl Into<String>) -> Self {
        OpPlan {
            operation,
            steps: Vec::new(),
            refusal: None,
            nothing: Some(why.into()),
        }
    }

    /// A plan from a rule's answer: its steps, or its refusal.
    pub fn from_rule(operation: &'static str, rule: Result<Vec<OpStep>, Refusal>) -> Self {
        match rule {
            Ok(steps) => OpPlan::go(operation, steps),
            Err(r) => OpPlan::refused(operation, r),
        }
    }

    /// `Err(reason)` when refused: how a step's re-check says "no longer".
    pub fn verdict(&self) -> Result<(), String> {
        match &self.refusal {
            Some(r) => Err(r.to_string()),
            None => Ok(()),
        }
    }

    /// The plan as lines for a person: one per step with its reason, or the refusal.
    pub fn lines(&self) -> Vec<String> {
        if let Some(r) = &self.refusal {
            return vec![format!("{}: refused: {r}", self.operation)];
        }
        if let Some(n) = &self.nothing {
            return vec![format!("{}: nothing to do: {n}", self.operation)];
        }
        self.steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}. {s}: {}", i + 1, s.reason))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_as_numbered_steps_or_its_refusal() {
        let p = OpPlan::go(
            "restart",
            vec![
                OpStep::new(Action::Restart, "pg1", "a replica first"),
                OpStep::new(Action::Switchover, "pg0", "hand over before the leader"),
            ],
        );
        assert_eq!(
            p.lines(),
            vec![
                "1. restart pg1: a replica first",
                "2. switchover pg0: hand over before the leader"
            ]
        );
        let r = OpPlan::refused("restart", Refusal::Unsafe("paused".into()));
        assert_eq!(r.lines(), vec!["restart: refused: paused"]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["refusal"]["kind"], "unsafe");
        assert_eq!(v["steps"], serde_json::json!([]));
        let s = serde_json::to_value(&p).unwrap();
        assert_eq!(s["steps"][1]["action"], "switchover");
    }
}
