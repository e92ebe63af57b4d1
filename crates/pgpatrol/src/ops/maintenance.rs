//! `pause`/`resume`, `reload` and `edit-config` as the runner carries them out (their plans
//! are core's `ops::maintenance`): each step is checked again on a fresh read, sent, and
//! followed (the pause seen by every member, the configuration read back).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Serialize;
use serde_json::Value;

use pgpatrol_core::ops::maintenance;
use pgpatrol_core::ops::OpStep;
use pgpatrol_core::Cluster;

use super::config as cfg;
use super::runner::{Operation, Recheck, StepOutcome, StepResult};
use super::{api_of, round1, Ops};
use crate::poll::Poll;
use crate::source::http::Request;
use crate::source::Detail;

/// A member with a pending restart, and why (Patroni 3.3+ says which parameters).
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub member: String,
    /// `{param: {old_value, new_value}}` (Patroni 3.3+; older Patroni only says that one is
    /// pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Value>,
}

/// The members of `c` with a pending restart.
pub fn pending_of(c: &Cluster) -> Vec<Pending> {
    c.members
        .iter()
        .filter(|m| m.pending_restart)
        .map(|m| Pending {
            member: m.name.clone(),
            reason: m.pending_restart_reason.clone(),
        })
        .collect()
}

/// `pause` or `resume`: one `PATCH /config`, then (with `wait`) every member's own
/// `/patroni` followed until it reports the new state.
pub struct PauseOp {
    pub pause: bool,
    pub wait: Option<Duration>,
    /// Members that did not report the new state in time.
    pub lagging: Vec<String>,
    last: Option<Cluster>,
}

impl PauseOp {
    pub fn new(pause: bool, wait: Option<Duration>) -> Self {
        PauseOp {
            pause,
            wait,
            lagging: Vec::new(),
            last: None,
        }
    }
}

impl Operation for PauseOp {
    async fn recheck(&mut self, ops: &Ops<'_>, _: usize, _: &OpStep) -> Result<(), Recheck> {
        let c = ops.reread().await?;
        maintenance::pause_still_needed(&c, self.pause)?;
        // Each member's own view: a member that already sees the change would answer the
        // PATCH with 200 and write nothing.
        own_configs_agree(ops, &c, |views| {
            maintenance::members_agree_on_pause(c.paused, views)
        })
        .await?;
        self.last = Some(c);
        Ok(())
    }

    async fn perform(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let t0 = Instant::now();
        let mut out = StepOutcome::failed(step);
        let Some(c) = self.last.take() else {
            return out.with(StepResult::Failed, "the cluster was not read");
        };
        let body = serde_json::json!({ "pause": if self.pause { Value::Bool(true) } else { Value::Null } });
        let confirmed = match ops.patch_config(&c, body).await {
            Err(e) => {
                out.detail = e.to_string();
                None
            }
            Ok((_, None)) => {
                out.result = StepResult::DryRun;
                out.detail = "dry run: nothing was sent".into();
                None
            }
            Ok((_, Some(r))) if r.status == StatusCode::OK => Some(String::new()),
            Ok((target, Some(r))) if r.status == StatusCode::CONFLICT => {
                let said = format!("PATCH /config on {target}: {}", super::answered(&r));
                match ops.reread().await {
                    Ok(now) if now.paused == self.pause => {
                        Some(format!("{said}, yet the DCS holds it (read back); "))
                    }
                    _ => {
                        out.result = StepResult::Unknown;
                        out.detail = unconfirmed(&said);
                        None
                    }
                }
            }
            Ok((target, Some(r))) => {
                out.detail = format!("PATCH /config on {target}: {}", super::answered(&r));
                None
            }
        };
        if let Some(said) = confirmed {
            out.result = StepResult::Done;
            out.detail = format!(
                "{said}{}",
                if self.pause {
                    "maintenance mode on: Patroni takes no automatic action"
                } else {
                    "maintenance mode off"
                }
            );
            if let Some(timeout) = self.wait {
                self.lagging = wait_pause(ops, &c, self.pause, timeout).await;
                if self.lagging.is_empty() {
                    out.detail
                        .push_str(&format!("; every member ({}) reports it", c.members.len()));
                } else {
                    out.result = StepResult::Failed;
                    out.detail = format!(
                        "{} did not report {} within {}",
                        self.lagging.join(", "),
                        if self.pause { "paused" } else { "resumed" },
                        humantime::format_duration(timeout)
                    );
                }
            }
        }
        out.secs = round1(t0.elapsed().as_secs_f64());
        out
    }
}

/// Patroni answers `PATCH /config` with 409 when its write to the DCS returned false: a
/// change that raced this one, or a write the DCS did not confirm in time, which can still
/// land (etcd applies a request it received before it stalled). Neither "done" nor
/// "failed" can be said; `said` is what Patroni answered.
pub fn unconfirmed(said: &str) -> String {
    format!(
        "{said}: Patroni could not confirm its write to the DCS (a change that raced it, or a DCS that did not answer in time, and then it can still land); read the cluster again with `pgpatrol list` once the DCS answers"
    )
}

/// Judges each member's own `GET /config` (Patroni serves it from its own view of the DCS,
/// the one a `PATCH /config` it receives is applied to) with `rule`, read again for up to
/// [`AGREE_WITHIN`] while the rule refuses: a change that is still reaching the members
/// settles within that, a DCS that does not answer does not. A member that does not answer
/// is `None`, and not asked to agree, so that a cluster with a member down can still be
/// paused or edited.
async fn own_configs_agree(
    ops: &Ops<'_>,
    c: &Cluster,
    rule: impl Fn(&[(String, Option<Value>)]) -> Result<(), String>,
) -> Result<(), Recheck> {
    let mut poll = Poll::new(AGREE_WITHIN, Duration::from_millis(250));
    let mut verdict = Ok(());
    while poll.next().await {
        let views = futures::future::join_all(c.members.iter().map(|m| async move {
            let seen = match api_of(m) {
                Ok(api) => ops.source.member_config(&api).await.ok(),
                Err(_) => None,
            };
            (m.name.clone(), seen)
        }))
        .await;
        verdict = rule(&views);
        if verdict.is_ok() {
            break;
        }
    }
    Ok(verdict?)
}

/// How long the members' own views are read again before a disagreement stops the step.
const AGREE_WITHIN: Duration = Duration::from_secs(3);

/// Polls each member's own /patroni until it reports `pause`; returns those that did not.
async fn wait_pause(ops: &Ops<'_>, c: &Cluster, pause: bool, timeout: Duration) -> Vec<String> {
    let mut poll = Poll::new(timeout, Duration::from_millis(500));
    let members: Vec<(String, String)> = c
        .members
        .iter()
        .filter_map(|m| api_of(m).ok().map(|a| (m.name.clone(), a)))
        .collect();
    let mut shown = usize::MAX;
    let mut lagging: Vec<String> = members.iter().map(|(n, _)| n.clone()).collect();
    while poll.next().await {
        let reads = members.iter().map(|(n, a)| async move {
            let seen = ops.source.member_status(a).await.map(|s| s.paused).ok();
            (n.clone(), seen == Some(pause))
        });
        lagging = futures::future::join_all(reads)
            .await
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| n)
            .collect();
        if lagging.len() != shown {
            ops.progress.update(
                "cluster",
                &format!(
                    "{}/{} members report {}",
                    members.len() - lagging.len(),
                    members.len(),
                    if pause { "paused" } else { "resumed" }
                ),
            );
            shown = lagging.len();
        }
        if lagging.is_empty() {
            break;
        }
    }
    lagging
}

/// `reload`: `POST /reload` on each member, the member read again first.
#[derive(Default)]
pub struct ReloadOp {
    last: Option<Cluster>,
}

impl Operation for ReloadOp {
    async fn recheck(&mut self, ops: &Ops<'_>, _: usize, step: &OpStep) -> Result<(), Recheck> {
        let c = ops.reread().await?;
        if c.member(&step.member).is_none() {
            return Err(format!("{} is no longer a member", step.member).into());
        }
        self.last = Some(c);
        Ok(())
    }

    async fn perform(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let t0 = Instant::now();
        let mut out = StepOutcome::failed(step);
        let base = match super::api_in(self.last.take(), &step.member) {
            Ok(b) => b,
            Err(e) => return out.with(StepResult::Failed, e.to_string()),
        };
        match ops
            .send(&step.member, Request::post_empty(&base, "/reload"))
            .await
        {
            Ok(None) => {
                out.result = StepResult::DryRun;
                out.detail = "dry run: nothing was sent".into();
            }
            Ok(Some(r)) if r.status.is_success() => {
                out.result = StepResult::Accepted;
                out.detail = r.body.trim().to_string();
            }
            Ok(Some(r)) => out.detail = super::answered(&r),
            Err(e) => out.detail = e.to_string(),
        }
        out.secs = round1(t0.elapsed().as_secs_f64());
        out
    }
}

/// How an edit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EditResult {
    Applied,
    /// The DCS does not hold what was asked for.
    NotApplied,
    /// Another edit landed between the read and the PATCH.
    ChangedConcurrently,
    Failed,
    /// Patroni could not confirm its DCS write (HTTP 409) and the DCS does not show the
    /// change: it may still land.
    Unknown,
    DryRun,
}

/// `edit-config`: before the `PATCH` the configuration is read again and must still be
/// the one the patch was computed from (core's `config_unchanged`); after it, read back
/// until the DCS holds the change, and compared whole with the document intended.
pub struct EditOp {
    /// The configuration as read when the patch was computed.
    pub read: Value,
    pub patch: Value,
    /// The whole document the edit intends.
    pub intended: Value,
    /// The changed parameters that need a restart: their pending restart is awaited.
    pub restart_params: Vec<String>,
    pub timeout: Duration,
    pub result: EditResult,
    pub missing: Vec<String>,
    pub changed_by_others: Vec<String>,
    pub pending: Vec<Pending>,
    last: Option<Cluster>,
}

impl EditOp {
    pub fn new(read: Value, patch: Value, intended: Value, timeout: Duration) -> Self {
        let restart_params = cfg::changed_parameters(&read, &patch)
            .into_iter()
            .filter(|(k, _, _)| pgpatrol_core::pgparams::needs_restart(k))
            .map(|(k, _, _)| k)
            .collect();
        EditOp {
            read,
            patch,
            intended,
            restart_params,
            timeout,
            result: EditResult::Failed,
            missing: Vec::new(),
            changed_by_others: Vec::new(),
            pending: Vec::new(),
            last: None,
        }
    }
}

impl Operation for EditOp {
    async fn recheck(&mut self, ops: &Ops<'_>, _: usize, _: &OpStep) -> Result<(), Recheck> {
        let now = ops
            .source
            .config()
            .await
            .map_err(|e| Recheck::read("the configuration again", &e))?;
        maintenance::config_unchanged(&self.read, &now)?;
        let c = ops.reread().await?;
        own_configs_agree(ops, &c, |views| {
            maintenance::members_agree_on_config(&self.read, views)
        })
        .await?;
        self.last = Some(c);
        Ok(())
    }

    async fn perform(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let t0 = Instant::now();
        let mut out = StepOutcome::failed(step);
        let Some(c) = self.last.take() else {
            return out.with(StepResult::Failed, "the cluster was not read");
        };
        match ops.patch_config(&c, self.patch.clone()).await {
            Err(e) => out.detail = e.to_string(),
            Ok((_, None)) => {
                self.result = EditResult::DryRun;
                out.result = StepResult::DryRun;
                out.detail = "dry run: nothing was sent".into();
            }
            Ok((target, Some(r))) if r.status == StatusCode::CONFLICT => {
                let said = format!("PATCH /config on {target}: {}", super::answered(&r));
                let now = ops.source.config().await;
                if now.is_ok_and(|now| cfg::not_applied(&self.patch, &now).is_empty()) {
                    (out.result, out.detail) = self.read_back_step(ops).await;
                    out.detail = format!("{said}, yet the DCS holds the change: {}", out.detail);
                } else {
                    self.result = EditResult::Unknown;
                    out.result = StepResult::Unknown;
                    out.detail = unconfirmed(&said);
                }
            }
            Ok((target, Some(r))) if r.status != StatusCode::OK => {
                out.detail = format!("PATCH /config on {target}: {}", super::answered(&r));
            }
            Ok(_) => (out.result, out.detail) = self.read_back_step(ops).await,
        }
        out.secs = round1(t0.elapsed().as_secs_f64());
        out
    }
}

impl EditOp {
    /// [`EditOp::read_back`] as the step's result: done only when applied.
    async fn read_back_step(&mut self, ops: &Ops<'_>) -> (StepResult, String) {
        let (result, detail) = self.read_back(ops).await;
        self.result = result;
        let step = if result == EditResult::Applied {
            StepResult::Done
        } else {
            StepResult::Failed
        };
        (step, detail)
    }

    /// Reads the configuration back until the DCS holds the change, compares the whole
    /// document with the one intended, then waits for the pending restarts it needs.
    async fn read_back(&mut self, ops: &Ops<'_>) -> (EditResult, String) {
        // A member serves /config from its view of the DCS, which it refreshes once per
        // loop (Patroni 3.x): read back until it holds the change, for up to two loops.
        let loop_wait = self
            .read
            .get("loop_wait")
            .and_then(Value::as_u64)
            .unwrap_or(10);
        let mut poll = Poll::new(
            Duration::from_secs(2 * loop_wait + 2),
            Duration::from_millis(300),
        );
        let mut stored = None;
        while poll.next().await {
            match ops.source.config().await {
                Ok(s) => {
                    self.missing = cfg::not_applied(&self.patch, &s);
                    stored = Some(s);
                    if self.missing.is_empty() {
                        break;
                    }
                }
                Err(e) => self.missing = vec![format!("(cannot read it back: {e})")],
            }
        }
        if !self.missing.is_empty() {
            return (
                EditResult::NotApplied,
                format!(
                    "the DCS does not hold what was asked for: {}",
                    self.missing.join(", ")
                ),
            );
        }
        // The whole document, not only this edit's keys: a change someone else made
        // between the check and the PATCH is reported, never silently kept.
        if let Some(stored) = &stored {
            self.changed_by_others = cfg::differences(&self.intended, stored);
        }
        if !self.changed_by_others.is_empty() {
            return (
                EditResult::ChangedConcurrently,
                format!(
                    "applied, but the configuration is not what this edit intended: {} changed between the read and the PATCH (someone else's edit); check it with pgpatrol show-config",
                    self.changed_by_others.join(", ")
                ),
            );
        }
        if !self.restart_params.is_empty() {
            // Members notice within a loop and report the pending restart.
            let mut poll = Poll::new(self.timeout, Duration::from_millis(500));
            while poll.next().await {
                let Ok(snap) = ops.source.snapshot(Detail::Lag).await else {
                    continue;
                };
                self.pending = pending_of(&snap.cluster);
                if self.pending.len() == snap.cluster.members.len() {
                    break;
                }
                ops.progress.update(
                    "cluster",
                    &format!(
                        "{}/{} members report the pending restart",
                        self.pending.len(),
                        snap.cluster.members.len()
                    ),
                );
            }
        }
        (
            EditResult::Applied,
            "applied; the DCS holds the change (read back)".into(),
        )
    }
}
