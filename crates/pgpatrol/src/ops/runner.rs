//! The one runner of the day-2 operations. An operation is decided in core as an
//! [`OpPlan`] (ordered steps, or a refusal); this runner carries it out: before every step
//! it has the operation read the cluster again and decide again ([`Operation::recheck`]),
//! stops at the first step that may no longer go or that fails, and reports one outcome
//! per step in one shape ([`OpReport`]) for every operation. A dry run goes through the same
//! loop: the checks run, each request is printed instead of sent, and the report shows where
//! the real run would stop.
//!
//! Heal's runner (`executor::runner::run_plan`) is this one's sibling: it runs several
//! reinitializations at once under a lease, with the same read-again-decide-again loop.

use std::time::Instant;

use serde::Serialize;

use pgpatrol_core::ops::{Action, OpPlan, OpStep, Refusal};

use super::{round1, Ops, SentRequest, WriteGap};

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    /// Done as asked (and followed until done, where there is something to follow).
    Done,
    Restarted,
    SwitchedOver,
    Scheduled,
    Cancelled,
    /// Patroni accepted the request (reload).
    Accepted,
    /// Patroni had nothing to do (no pending restart; nothing scheduled).
    Skipped,
    Failed,
    /// Sent, but whether it took effect could not be told (a write Patroni could not
    /// confirm in the DCS): the run stops, as after a failure, and says so.
    Unknown,
    DryRun,
}

impl StepResult {
    /// The word the report and the JSON use (`done`, `switched_over`, `dry_run`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StepResult::Done => "done",
            StepResult::Restarted => "restarted",
            StepResult::SwitchedOver => "switched_over",
            StepResult::Scheduled => "scheduled",
            StepResult::Cancelled => "cancelled",
            StepResult::Accepted => "accepted",
            StepResult::Skipped => "skipped",
            StepResult::Failed => "failed",
            StepResult::Unknown => "unknown",
            StepResult::DryRun => "dry_run",
        }
    }
}

impl std::fmt::Display for StepResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an operation ended, its report's `result`: the runner's own words, or an
/// operation's word for how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpResult {
    /// Every step done.
    Done,
    /// Nothing was sent.
    DryRun,
    /// The plan was refused: nothing was sent.
    Refused,
    /// The plan had nothing to do.
    Nothing,
    /// A step could no longer go (its re-check said no).
    Stopped,
    /// A step failed.
    Failed,
    /// switchover, failover: the leader changed (or a scheduled one was accepted).
    Switched,
    Scheduled,
    /// pause, resume: already so; edit-config: nothing to change.
    Unchanged,
    /// pause, resume: a member did not show the change within the wait.
    NotSeen,
    /// edit-config (its `EditResult`).
    Applied,
    NotApplied,
    ChangedConcurrently,
    /// reinit (its `ReinitResult`).
    Healed,
    Started,
    TimedOut,
    LeaderLost,
    Abandoned,
    Unknown,
    /// remove, member remove: done.
    Removed,
    /// member remove: the member is gone, its slot is kept.
    RemovedSlotKept,
    /// member remove: the switchover before it failed.
    SwitchoverFailed,
    /// member remove: the member's key is still in the DCS.
    KeyNotGone,
    /// slot drop: done.
    Dropped,
    /// standby promote, demote: the step failed.
    NotDone,
}

impl OpResult {
    /// The word the report and the JSON use (`done`, `dry_run`, `removed_slot_kept`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            OpResult::Done => "done",
            OpResult::DryRun => "dry_run",
            OpResult::Refused => "refused",
            OpResult::Nothing => "nothing",
            OpResult::Stopped => "stopped",
            OpResult::Failed => "failed",
            OpResult::Switched => "switched",
            OpResult::Scheduled => "scheduled",
            OpResult::Unchanged => "unchanged",
            OpResult::NotSeen => "not_seen",
            OpResult::Applied => "applied",
            OpResult::NotApplied => "not_applied",
            OpResult::ChangedConcurrently => "changed_concurrently",
            OpResult::Healed => "healed",
            OpResult::Started => "started",
            OpResult::TimedOut => "timed_out",
            OpResult::LeaderLost => "leader_lost",
            OpResult::Abandoned => "abandoned",
            OpResult::Unknown => "unknown",
            OpResult::Removed => "removed",
            OpResult::RemovedSlotKept => "removed_slot_kept",
            OpResult::SwitchoverFailed => "switchover_failed",
            OpResult::KeyNotGone => "key_not_gone",
            OpResult::Dropped => "dropped",
            OpResult::NotDone => "not_done",
        }
    }
}

impl std::fmt::Display for OpResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<super::maintenance::EditResult> for OpResult {
    fn from(r: super::maintenance::EditResult) -> Self {
        use super::maintenance::EditResult;
        match r {
            EditResult::Applied => OpResult::Applied,
            EditResult::NotApplied => OpResult::NotApplied,
            EditResult::ChangedConcurrently => OpResult::ChangedConcurrently,
            EditResult::Failed => OpResult::Failed,
            EditResult::Unknown => OpResult::Unknown,
            EditResult::DryRun => OpResult::DryRun,
        }
    }
}

impl From<super::switchover::TakeoverResult> for OpResult {
    fn from(r: super::switchover::TakeoverResult) -> Self {
        use super::switchover::TakeoverResult;
        match r {
            TakeoverResult::Switched => OpResult::Switched,
            TakeoverResult::Scheduled => OpResult::Scheduled,
            TakeoverResult::DryRun => OpResult::DryRun,
            TakeoverResult::Failed => OpResult::Failed,
        }
    }
}

/// One step as carried out.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    pub member: String,
    /// Written as a person reads it (`drop slot`, not the plan's `drop_slot`).
    #[serde(serialize_with = "action_words")]
    pub action: Action,
    pub result: StepResult,
    pub detail: String,
    pub secs: f64,
    /// Time without a writable leader during this step (leader steps only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_gap: Option<WriteGap>,
}

fn action_words<S: serde::Serializer>(a: &Action, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.as_str())
}

impl StepOutcome {
    /// A step not done yet: `Failed` until something says otherwise.
    pub fn failed(step: &OpStep) -> Self {
        StepOutcome {
            member: step.member.clone(),
            action: step.action,
            result: StepResult::Failed,
            detail: String::new(),
            secs: 0.0,
            write_gap: None,
        }
    }

    pub fn with(mut self, result: StepResult, detail: impl Into<String>) -> Self {
        self.result = result;
        self.detail = detail.into();
        self
    }
}

/// Why a step may not go now: [`Operation::recheck`]'s error, with a bounded reason for
/// reports and metrics ([`Recheck::metric_label`]) besides its words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Recheck {
    /// What the step's rule needs could not be read again: the run stops (fails closed).
    /// `label` is the read's own (`timeout`, `dcs_unreachable`, `postgres`…).
    #[error("cannot read {what}: {error}")]
    Unreadable {
        what: String,
        label: &'static str,
        error: String,
    },
    /// The member the step sends to does not answer its own `GET /patroni`.
    #[error("{0}")]
    Silent(String),
    /// The rule, decided again on what was read, refuses the step now.
    #[error("{0}")]
    Refused(String),
}

impl Recheck {
    /// A source read that failed: `what` names what the rule needed.
    pub fn read(what: impl Into<String>, e: &crate::source::SourceError) -> Self {
        Recheck::Unreadable {
            what: what.into(),
            label: e.metric_label(),
            error: e.to_string(),
        }
    }

    /// A bounded label: the read's own, `member_silent` or `refused`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Recheck::Unreadable { label, .. } => label,
            Recheck::Silent(_) => "member_silent",
            Recheck::Refused(_) => "refused",
        }
    }
}

/// Core's rules refuse with their reason as a string: that is a refusal.
impl From<String> for Recheck {
    fn from(why: String) -> Self {
        Recheck::Refused(why)
    }
}

impl From<&str> for Recheck {
    fn from(why: &str) -> Self {
        Recheck::Refused(why.to_string())
    }
}

/// An operation the runner can carry out: its plan comes from core; these two say whether
/// a step may still go and do it.
#[allow(async_fn_in_trait)] // run on the caller's task, never spawned: no Send bound needed
pub trait Operation {
    /// Reads the cluster (and what the operation's rule needs) again and decides again
    /// whether `step`, number `index` of the plan, may go now. `Err` says why not.
    async fn recheck(&mut self, ops: &Ops<'_>, index: usize, step: &OpStep) -> Result<(), Recheck>;

    /// Carries `step` out through `ops` (which prints instead of sending in a dry run) and
    /// follows it until it is done.
    async fn perform(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome;
}

/// Why the command exits with its code.
#[derive(Debug, Clone, Serialize)]
pub struct Exit {
    pub code: u8,
    pub reason: String,
}

/// Every operation's report: the plan, one outcome per step carried out, where and why it
/// stopped, the requests sent, and the exit code with its reason. `extra` holds what one
/// operation adds (the candidates of a takeover, the members' positions of a failover, …).
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub operation: &'static str,
    /// `done`, `dry_run`, `refused`, `nothing`, `stopped`, `failed`, or the operation's
    /// own word for how it ended (`switched`, `applied`, …).
    pub result: OpResult,
    pub plan: OpPlan,
    /// The plan's refusal, when it was refused (also in `plan`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    pub steps: Vec<StepOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Why a step's re-check stopped the run, as a bounded label (`refused`, `member_silent`,
    /// or the failed read's: `timeout`, `dcs_unreachable`, `postgres`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_cause: Option<&'static str>,
    /// Members (or objects) of planned steps that were not touched.
    pub untouched: Vec<String>,
    pub requests: Vec<SentRequest>,
    pub total_secs: f64,
    pub exit: Exit,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl OpReport {
    /// The report of a plan that was never run (refused, or nothing to do).
    pub fn unrun(plan: OpPlan) -> Self {
        let (result, exit) = match (&plan.refusal, &plan.nothing) {
            (Some(r), _) => (
                OpResult::Refused,
                Exit {
                    code: match r {
                        Refusal::Invalid(_) => 2,
                        Refusal::Unsafe(_) => 1,
                    },
                    reason: format!("refused: {r}"),
                },
            ),
            (None, Some(n)) => (
                OpResult::Nothing,
                Exit {
                    code: 0,
                    reason: format!("nothing to do: {n}"),
                },
            ),
            (None, None) => (
                OpResult::Done,
                Exit {
                    code: 0,
                    reason: "no step".into(),
                },
            ),
        };
        OpReport {
            operation: plan.operation,
            result,
            refusal: plan.refusal.clone(),
            plan,
            steps: Vec::new(),
            stopped: None,
            stop_cause: None,
            untouched: Vec::new(),
            requests: Vec::new(),
            total_secs: 0.0,
            exit,
            extra: serde_json::Map::new(),
        }
    }

    /// Adds an operation's own field to the JSON report.
    pub fn put(&mut self, key: &str, value: impl Serialize) {
        if let Ok(v) = serde_json::to_value(value) {
            self.extra.insert(key.to_string(), v);
        }
    }

    /// Every step did what it was asked (or had nothing to do) and nothing stopped the run.
    pub fn ok(&self) -> bool {
        self.exit.code == 0
    }

    /// Marks the run as not done for `reason` (exit 1), keeping the steps.
    pub fn problem(&mut self, result: OpResult, reason: impl Into<String>) {
        self.result = result;
        self.exit = Exit {
            code: 1,
            reason: reason.into(),
        };
    }

    /// The refusal, when the plan was refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.plan.refusal.as_ref()
    }
}

/// Carries `plan` out: for every step, read again and decide again, then do it; stop at
/// the first step that may no longer go or that fails. A refused plan, or one with nothing
/// to do, sends nothing.
pub async fn run<O: Operation>(op: &mut O, ops: &Ops<'_>, plan: OpPlan) -> OpReport {
    let t0 = Instant::now();
    if plan.refusal.is_some() || plan.steps.is_empty() {
        return OpReport::unrun(plan);
    }
    let mut report = OpReport::unrun(plan.clone());
    for (i, step) in plan.steps.iter().enumerate() {
        if let Err(why) = op.recheck(ops, i, step).await {
            report.stopped = Some(format!("stopped before {step}: {why}"));
            report.stop_cause = Some(why.metric_label());
            report.untouched = plan.steps[i..].iter().map(|s| s.member.clone()).collect();
            break;
        }
        let out = op.perform(ops, step).await;
        let stopped = match out.result {
            StepResult::Failed => Some(format!("stopped: {step} failed: {}", out.detail)),
            StepResult::Unknown => Some(format!(
                "stopped: whether {step} took effect is unknown: {}",
                out.detail
            )),
            _ => None,
        };
        report.steps.push(out);
        if stopped.is_some() {
            report.stopped = stopped;
            report.untouched = plan.steps[i + 1..]
                .iter()
                .map(|s| s.member.clone())
                .collect();
            break;
        }
    }
    report.untouched.dedup();
    report.requests = ops.sent();
    report.total_secs = round1(t0.elapsed().as_secs_f64());
    match &report.stopped {
        Some(why) => {
            let result = match report.steps.last().map(|s| s.result) {
                Some(StepResult::Failed) => OpResult::Failed,
                Some(StepResult::Unknown) => OpResult::Unknown,
                _ => OpResult::Stopped,
            };
            let why = why.clone();
            report.problem(result, why);
        }
        None if ops.dry_run => {
            report.result = OpResult::DryRun;
            report.exit.reason = "dry run: nothing was sent".into();
        }
        None => {
            report.result = OpResult::Done;
            report.exit.reason = "every step done".into();
        }
    }
    report
}

/// The plan as a person reads it, before the confirmation (or as the dry run's plan).
pub fn write_plan(out: &mut impl std::io::Write, plan: &OpPlan) -> std::io::Result<()> {
    if plan.refusal.is_some() || plan.nothing.is_some() {
        return Ok(());
    }
    writeln!(out, "plan:")?;
    for l in plan.lines() {
        writeln!(out, "  {l}")?;
    }
    Ok(())
}

/// The steps as lines for a person.
pub fn write_steps(out: &mut impl std::io::Write, steps: &[StepOutcome]) -> std::io::Result<()> {
    for s in steps {
        let gap = s
            .write_gap
            .as_ref()
            .map(|g| format!(" (no writable leader for {:.1} s)", g.longest_secs))
            .unwrap_or_default();
        writeln!(
            out,
            "{} {}: {} in {:.1} s: {}{gap}",
            s.action.as_str(),
            s.member,
            s.result,
            s.secs,
            s.detail
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Audit;
    use crate::progress::Progress;
    use crate::source::ClusterSource;
    use pgpatrol_core::ops::{Action, OpStep};

    struct Quiet;
    impl Progress for Quiet {
        fn update(&self, _: &str, _: &str) {}
    }

    /// Records what the runner asked; refuses at `stop_at`, fails at `fail_at`.
    struct Script {
        stop_at: Option<usize>,
        fail_at: Option<usize>,
        seen: Vec<String>,
    }

    impl Operation for Script {
        async fn recheck(&mut self, _: &Ops<'_>, i: usize, s: &OpStep) -> Result<(), Recheck> {
            self.seen.push(format!("check {}", s.member));
            if self.stop_at == Some(i) {
                return Err("a replica is behind".into());
            }
            Ok(())
        }
        async fn perform(&mut self, _: &Ops<'_>, s: &OpStep) -> StepOutcome {
            self.seen.push(format!("do {}", s.member));
            let out = StepOutcome::failed(s);
            if self.fail_at.is_some_and(|f| self.seen.len() / 2 == f + 1) {
                return out.with(StepResult::Failed, "Patroni said no");
            }
            out.with(StepResult::Done, "ok")
        }
    }

    fn plan() -> OpPlan {
        OpPlan::go(
            "restart",
            ["pg1", "pg2", "pg0"]
                .iter()
                .map(|m| OpStep::new(Action::Restart, *m, "test"))
                .collect(),
        )
    }

    async fn go(script: &mut Script, plan: OpPlan) -> OpReport {
        let http = crate::source::http::Http::new(&Default::default()).unwrap();
        let source = ClusterSource::new(http, &["http://127.0.0.1:9".to_string()]).unwrap();
        let audit = Audit::disabled();
        let ops = Ops::new(&source, "restart", false, &audit, &Quiet);
        run(script, &ops, plan).await
    }

    #[tokio::test]
    async fn every_step_is_checked_again_before_it_runs() {
        let mut s = Script {
            stop_at: None,
            fail_at: None,
            seen: vec![],
        };
        let r = go(&mut s, plan()).await;
        assert_eq!(
            s.seen,
            vec![
                "check pg1",
                "do pg1",
                "check pg2",
                "do pg2",
                "check pg0",
                "do pg0"
            ]
        );
        assert_eq!(r.result.as_str(), "done");
        assert_eq!(r.exit.code, 0);
        assert_eq!(r.steps.len(), 3);
    }

    #[tokio::test]
    async fn a_step_that_may_no_longer_go_stops_the_run_untouched() {
        let mut s = Script {
            stop_at: Some(1),
            fail_at: None,
            seen: vec![],
        };
        let r = go(&mut s, plan()).await;
        assert_eq!(s.seen, vec!["check pg1", "do pg1", "check pg2"]);
        assert_eq!(r.result.as_str(), "stopped");
        assert_eq!(r.exit.code, 1);
        assert_eq!(r.untouched, vec!["pg2", "pg0"]);
        assert!(r.stopped.unwrap().contains("a replica is behind"));
        assert_eq!(r.stop_cause, Some("refused"));
    }

    /// Re-reads the cluster before each step, as every real operation does.
    struct ReadsAgain;
    impl Operation for ReadsAgain {
        async fn recheck(&mut self, ops: &Ops<'_>, _: usize, _: &OpStep) -> Result<(), Recheck> {
            ops.reread().await?;
            Ok(())
        }
        async fn perform(&mut self, _: &Ops<'_>, s: &OpStep) -> StepOutcome {
            StepOutcome::failed(s).with(StepResult::Done, "ok")
        }
    }

    #[tokio::test]
    async fn a_cluster_that_cannot_be_read_again_stops_the_run_with_the_reads_label() {
        let http = crate::source::http::Http::new(&Default::default()).unwrap();
        // Nothing listens on port 9: the re-read is refused.
        let source = ClusterSource::new(http, &["http://127.0.0.1:9".to_string()]).unwrap();
        let audit = Audit::disabled();
        let ops = Ops::new(&source, "restart", false, &audit, &Quiet);
        let r = run(&mut ReadsAgain, &ops, plan()).await;
        assert!(r.steps.is_empty(), "{r:?}");
        assert_eq!(r.untouched, vec!["pg1", "pg2", "pg0"]);
        assert_eq!(r.stop_cause, Some("connect"), "{r:?}");
        let stopped = r.stopped.unwrap_or_default();
        assert!(
            stopped.contains("cannot read the cluster: cannot connect to http://127.0.0.1:9"),
            "{stopped}"
        );
        assert_eq!(r.exit.code, 1);
    }

    #[tokio::test]
    async fn a_failed_step_stops_the_run() {
        let mut s = Script {
            stop_at: None,
            fail_at: Some(0),
            seen: vec![],
        };
        let r = go(&mut s, plan()).await;
        assert_eq!(s.seen, vec!["check pg1", "do pg1"]);
        assert_eq!(r.result.as_str(), "failed");
        assert_eq!(r.untouched, vec!["pg2", "pg0"]);
    }

    /// `as_str` (the text a person reads) is the word the JSON carries, for every variant.
    #[test]
    fn results_read_as_their_json_word() {
        use OpResult as R;
        for r in [
            R::Done,
            R::DryRun,
            R::Refused,
            R::Nothing,
            R::Stopped,
            R::Failed,
            R::Switched,
            R::Scheduled,
            R::Unchanged,
            R::NotSeen,
            R::Applied,
            R::NotApplied,
            R::ChangedConcurrently,
            R::Healed,
            R::Started,
            R::TimedOut,
            R::LeaderLost,
            R::Abandoned,
            R::Unknown,
            R::Removed,
            R::RemovedSlotKept,
            R::SwitchoverFailed,
            R::KeyNotGone,
            R::Dropped,
            R::NotDone,
        ] {
            assert_eq!(serde_json::json!(r), r.as_str(), "{r:?}");
            assert_eq!(r.to_string(), r.as_str());
        }
        use StepResult as S;
        for r in [
            S::Done,
            S::Restarted,
            S::SwitchedOver,
            S::Scheduled,
            S::Cancelled,
            S::Accepted,
            S::Skipped,
            S::Failed,
            S::DryRun,
        ] {
            assert_eq!(serde_json::json!(r), r.as_str(), "{r:?}");
        }
        use super::super::maintenance::EditResult as E;
        for r in [
            E::Applied,
            E::NotApplied,
            E::ChangedConcurrently,
            E::Failed,
            E::DryRun,
        ] {
            assert_eq!(serde_json::json!(r), OpResult::from(r).as_str(), "{r:?}");
        }
        use super::super::switchover::TakeoverResult as T;
        for r in [T::Switched, T::Scheduled, T::Failed, T::DryRun] {
            assert_eq!(serde_json::json!(r), OpResult::from(r).as_str(), "{r:?}");
        }
    }

    #[test]
    fn a_step_outcome_names_its_action_as_a_person_reads_it() {
        let out = StepOutcome::failed(&OpStep::new(
            pgpatrol_core::ops::Action::DropSlot,
            "pg1",
            "test",
        ));
        assert_eq!(serde_json::json!(out)["action"], "drop slot");
    }

    #[test]
    fn steps_are_written_as_lines_and_a_closed_pipe_is_an_error() {
        let steps = vec![StepOutcome::failed(&OpStep::new(
            pgpatrol_core::ops::Action::DropSlot,
            "pg1",
            "test",
        ))
        .with(StepResult::Done, "dropped")];
        let mut out = Vec::new();
        write_steps(&mut out, &steps).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "drop slot pg1: done in 0.0 s: dropped\n"
        );
        struct Closed;
        impl std::io::Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let e = write_plan(&mut Closed, &plan()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn a_refused_plan_runs_nothing() {
        let mut s = Script {
            stop_at: None,
            fail_at: None,
            seen: vec![],
        };
        let p = OpPlan::refused("restart", Refusal::Invalid("no leader".into()));
        let r = go(&mut s, p).await;
        assert!(s.seen.is_empty());
        assert_eq!(r.result.as_str(), "refused");
        assert_eq!(r.exit.code, 2);
    }
}
