//! `pgpatrol reinit MEMBER`: one reinitialization by hand, through the same executor as heal.
//! Allowed on a paused cluster (as patronictl allows); never the leader; never `force` over
//! a running reinit unless `--force` is given and confirmed.

use std::io::Write;
use std::time::Duration;

use clap::Args;

use pgpatrol_core::ops::reinit as reinit_rule;
use pgpatrol_core::ops::{OpStep, Refusal};
use pgpatrol_core::{ByteSize, LagKind};

use super::common::ClusterArgs;
use super::confirm;
use super::ops::{OpFormat, RunArgs};
use super::progress::Spinner;
use super::Outcome;
use crate::audit::Audit;
use crate::executor::{self, ReinitOptions, ReinitOutcome, ReinitResult};
use crate::ops::runner::{self, OpResult, Operation, Recheck, StepOutcome, StepResult};
use crate::ops::Ops;
use crate::source::http::Request;
use crate::source::Detail;

/// Reinitialize one replica: wipe its data directory and re-clone it from the leader.
///
/// Exit codes: 0 started (or healed, with --wait); 1 refused, timed out, or the leader was
/// lost while waiting; 2 error.
#[derive(Debug, Args)]
pub struct ReinitArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The member to reinitialize.
    pub member: String,

    /// Wait until it streams again with replay lag below --tolerance.
    #[arg(long)]
    pub wait: bool,

    /// With --wait: lag below which the member counts as caught up (bare number = MB).
    #[arg(long, env = "LAG_TOLERANCE", default_value = "5")]
    pub tolerance: ByteSize,

    /// With --wait: give up after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Cancel whatever Patroni is doing on the member (a running basebackup restarts from
    /// scratch). Asks for confirmation; needs --yes when not on a terminal.
    #[arg(long)]
    pub force: bool,

    /// Clone from the leader, not from a replica tagged `clonefrom` (Patroni 4.1+; on an
    /// older Patroni this is refused, since it would ignore the request).
    #[arg(long)]
    pub from_leader: bool,

    /// Do not ask for confirmation (needed off a terminal: without it nothing is sent).
    #[arg(short = 'y', long)]
    pub yes: bool,

    #[command(flatten)]
    pub run: RunArgs,
}

impl ReinitArgs {
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let source = self.cluster.source().await?;
        let cluster = source.snapshot(Detail::Full).await?.cluster;
        let plan = reinit_rule::plan(&cluster, &self.member);
        if let Some(Refusal::Invalid(why)) = &plan.refusal {
            anyhow::bail!("{why}");
        }
        let json = self.run.format == OpFormat::Json;
        if plan.refusal.is_none() && !self.run.dry_run {
            self.confirm()?;
        }
        let audit = std::sync::Arc::new(Audit::for_run(
            !self.run.dry_run && plan.refusal.is_none(),
            self.run.audit_log.as_deref(),
            cluster.scope.as_deref(),
        )?);
        let opts = ReinitOptions {
            tolerance: self.tolerance.0,
            lag: LagKind::Replay,
            timeout: self.timeout,
            poll: Duration::from_millis(250),
            force: self.force,
            wait: self.wait,
            from_leader: self.from_leader,
            caller: "reinit",
            audit: audit.clone(),
        };
        let spinner = Spinner::new();
        let ops = Ops::new(&source, "reinit", self.run.dry_run, &audit, &spinner).json(json);
        let mut run = ReinitOp {
            opts,
            outcome: None,
            apis: None,
        };
        let mut report = runner::run(&mut run, &ops, plan).await;
        spinner.finish();
        report.put("member", &self.member);
        if let Some(o) = &run.outcome {
            report.result = op_result(&o.result);
            report.put("outcome", o);
        }
        if let Some(r) = report.refusal() {
            eprintln!("pgpatrol: refused: {r}");
        }
        if json {
            super::ops::emit_json(out, &report)?;
        } else if let Some(why) = report.stopped.as_ref().filter(|_| run.outcome.is_none()) {
            eprintln!("pgpatrol: {why}");
        }
        let Some(o) = &run.outcome else {
            return Ok(if report.ok() {
                Outcome::Ok
            } else {
                Outcome::Problem
            });
        };
        let joined = if o.joined_running {
            " (joined a reinitialization already running)"
        } else {
            ""
        };
        match o.result {
            ReinitResult::Healed | ReinitResult::Started => {
                if !json {
                    writeln!(
                        out,
                        "{}: {} in {:.1} s{joined}",
                        o.member, o.detail, o.duration_secs
                    )?;
                }
                Ok(Outcome::Ok)
            }
            ReinitResult::Failed => anyhow::bail!("{}: {}", o.member, o.detail),
            _ => {
                eprintln!("pgpatrol: {}: {}{joined}", o.member, o.detail);
                Ok(Outcome::Problem)
            }
        }
    }

    /// `--yes`, or a person on a terminal who says yes; `--force` asks its own question.
    fn confirm(&self) -> anyhow::Result<()> {
        let member = &self.member;
        if self.force {
            if !self.yes && !confirm::interactive() {
                anyhow::bail!("--force cancels what Patroni is doing on {member}: add --yes to confirm when not on a terminal");
            }
            if !self.yes
                && !confirm::ask(&format!(
                    "Force a reinitialize of {member}? It cancels any running reinit or basebackup."
                ))?
            {
                anyhow::bail!("not confirmed: nothing was done");
            }
        } else if !self.yes && !confirm::interactive() {
            anyhow::bail!(
                "not on a terminal: add --yes to reinitialize {member} (its data directory is wiped)"
            );
        } else if !self.yes
            && !confirm::ask(&format!(
                "Reinitialize {member}? Its data directory is wiped and re-cloned."
            ))?
        {
            anyhow::bail!("not confirmed: nothing was done");
        }
        Ok(())
    }
}

/// One reinitialization as the runner carries it out: the member read again and the rule
/// decided again first (it may have become the leader meanwhile), then the executor's
/// `POST /reinitialize` (the same as heal's), or in a dry run that request printed.
struct ReinitOp {
    opts: ReinitOptions,
    outcome: Option<ReinitOutcome>,
    /// The member's and the leader's REST URLs, as read just before the step.
    apis: Option<(String, Option<String>)>,
}

/// The report's result for how the reinitialization ended (the same word).
fn op_result(r: &ReinitResult) -> OpResult {
    match r {
        ReinitResult::Healed => OpResult::Healed,
        ReinitResult::Started => OpResult::Started,
        ReinitResult::Refused => OpResult::Refused,
        ReinitResult::TimedOut => OpResult::TimedOut,
        ReinitResult::LeaderLost => OpResult::LeaderLost,
        ReinitResult::Failed => OpResult::Failed,
        ReinitResult::Abandoned => OpResult::Abandoned,
        ReinitResult::Unknown => OpResult::Unknown,
    }
}

impl Operation for ReinitOp {
    async fn recheck(&mut self, ops: &Ops<'_>, _: usize, step: &OpStep) -> Result<(), Recheck> {
        let c = ops.reread().await?;
        if let Some(r) = reinit_rule::plan(&c, &step.member).refusal {
            return Err(r.to_string().into());
        }
        let api = c
            .member(&step.member)
            .and_then(|m| m.api_url.clone())
            .ok_or_else(|| {
                format!(
                    "{} has no api_url in /cluster: cannot reach it",
                    step.member
                )
            })?;
        self.apis = Some((api, c.leader().and_then(|l| l.api_url.clone())));
        Ok(())
    }

    async fn perform(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let out = StepOutcome::failed(step);
        let Some((api, leader_api)) = self.apis.take() else {
            return out.with(StepResult::Failed, "the cluster was not read");
        };
        if ops.dry_run {
            let mut body = serde_json::json!({ "force": self.opts.force });
            if self.opts.from_leader {
                body["from_leader"] = true.into();
            }
            return match crate::source::http::base_url(&api) {
                Ok(base) => {
                    let _ = ops
                        .send(&step.member, Request::post(&base, "/reinitialize", body))
                        .await;
                    out.with(StepResult::DryRun, "dry run: nothing was sent")
                }
                Err(e) => out.with(StepResult::Failed, e.to_string()),
            };
        }
        let o = executor::reinitialize(
            ops.source,
            &step.member,
            &api,
            leader_api.as_deref(),
            &self.opts,
            ops.progress,
        )
        .await;
        let result = match o.result {
            ReinitResult::Healed | ReinitResult::Started => StepResult::Done,
            _ => StepResult::Failed,
        };
        let mut out = out.with(result, o.detail.clone());
        out.secs = o.duration_secs;
        self.outcome = Some(o);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reinit_result_is_the_reports_result_word_for_word() {
        use ReinitResult as R;
        for r in [
            R::Healed,
            R::Started,
            R::Refused,
            R::TimedOut,
            R::LeaderLost,
            R::Failed,
            R::Abandoned,
            R::Unknown,
        ] {
            assert_eq!(serde_json::json!(r), op_result(&r).as_str(), "{r:?}");
        }
    }
}
