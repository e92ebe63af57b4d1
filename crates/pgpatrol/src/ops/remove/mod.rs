//! `remove CLUSTER` as the runner carries it out (the rule is core's `ops::remove`):
//! right before the deletion the DCS is surveyed again and the rule judged again (a
//! Patroni may have started meanwhile); the deletion goes through the one sender
//! (`Ops::send_other`), audited, printed in a dry run; then the prefix is read back after
//! a `loop_wait` and a second. The lab's `down` calls [`unattended`].

use std::time::{Duration, Instant};

use pgpatrol_core::ops::remove as remove_rule;
use pgpatrol_core::ops::OpStep;

use super::runner::{Operation, Recheck, StepOutcome, StepResult};
use super::{round1, Ops};
pub use survey::{member_names, survey, RemoveError, Survey};

use crate::source::dcs::{Dcs, DcsError, DcsSettings};
use crate::source::http::{Http, HttpOptions};

mod survey;

/// Deletes the prefix, waits out `settle` (a `loop_wait` and a second, in which a Patroni
/// that still runs writes its member key again) and reads it back: `Ok(deleted)` only when
/// nothing is left.
async fn delete(dcs: &Dcs, settle: Duration) -> Result<u64, RemoveError> {
    let (deleted, _) = dcs
        .etcd()
        .delete_prefix(&dcs.prefix)
        .await
        .map_err(DcsError::from_attempts)?;
    tokio::time::sleep(settle).await;
    let (left, _) = dcs.keys().await?;
    if !left.is_empty() {
        return Err(RemoveError::LeftBehind {
            prefix: dcs.prefix.clone(),
            left: left.len(),
            keys: left
                .iter()
                .map(|kv| kv.key.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(deleted)
}

/// `remove`: delete every key of the scope, checked again right before.
pub struct RemoveOp<'d> {
    pub dcs: &'d Dcs,
    pub http: &'d Http,
    pub connect_timeout: Duration,
    /// `--force`: delete even though a Patroni answers or the leader key is held.
    pub force: bool,
    /// The keys deleted, when done.
    pub deleted: Option<u64>,
    last: Option<Survey>,
}

impl<'d> RemoveOp<'d> {
    pub fn new(dcs: &'d Dcs, http: &'d Http, connect_timeout: Duration, force: bool) -> Self {
        RemoveOp {
            dcs,
            http,
            connect_timeout,
            force,
            deleted: None,
            last: None,
        }
    }
}

impl Operation for RemoveOp<'_> {
    async fn recheck(&mut self, _: &Ops<'_>, _: usize, step: &OpStep) -> Result<(), Recheck> {
        let s = survey(self.dcs, self.http, self.connect_timeout)
            .await
            .map_err(|e| Recheck::Unreadable {
                what: "the DCS again (its keys and who answers)".into(),
                label: e.metric_label(),
                error: e.to_string(),
            })?;
        let again = remove_rule::plan(&step.member, &s.running, s.leader.as_deref(), self.force);
        again.verdict()?;
        self.last = Some(s);
        Ok(())
    }

    async fn perform(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let t0 = Instant::now();
        let out = StepOutcome::failed(step);
        let Some(s) = self.last.take() else {
            return out.with(StepResult::Failed, "the DCS was not surveyed");
        };
        let settle = s.loop_wait + Duration::from_secs(1);
        if !ops.dry_run {
            ops.progress.update(
                &step.member,
                &format!(
                    "deleting; reading back after {} s (loop_wait + 1 s: a live Patroni writes its key again within a loop)",
                    settle.as_secs()
                ),
            );
        }
        let dcs = self.dcs;
        let sent = ops
            .send_other(
                "DCS",
                &step.member,
                &format!("etcd {}", s.answered_by),
                serde_json::json!({ "delete_prefix": s.prefix }),
                &format!(
                    "delete the {} key(s) under {} in etcd at {}",
                    s.keys.len(),
                    s.prefix,
                    s.answered_by
                ),
                async move {
                    delete(dcs, settle)
                        .await
                        .map(|n| format!("{n} key(s) deleted, nothing left"))
                        .map_err(|e| e.to_string())
                },
            )
            .await;
        let mut out = match sent {
            Ok(None) => out.with(StepResult::DryRun, "dry run: nothing was deleted"),
            Ok(Some(said)) => {
                self.deleted = Some(s.keys.len() as u64);
                out.with(StepResult::Done, format!("{said} under {}", s.prefix))
            }
            Err(e) => out.with(StepResult::Failed, e),
        };
        out.secs = round1(t0.elapsed().as_secs_f64());
        out
    }
}

/// The lab's removal, after its members were stopped: refuses if one still runs, deletes
/// `/service/<scope>/` from the etcd at `url`, reads it back. (The lab is pgpatrol's own
/// test bed: no audit log.)
pub async fn unattended(url: &str, scope: &str) -> Result<u64, RemoveError> {
    let target = DcsSettings {
        url: Some(url.to_string()),
        scope: Some(scope.to_string()),
        ..Default::default()
    }
    .resolve(None, None, &HttpOptions::default())
    .map_err(|e| RemoveError::Setup(e.to_string()))?;
    let dcs = Dcs::new(&target).map_err(|e| RemoveError::Setup(e.to_string()))?;
    let http = Http::new(&HttpOptions::default()).map_err(|e| RemoveError::Setup(e.to_string()))?;
    let s = survey(&dcs, &http, Duration::from_secs(2)).await?;
    if let Some(why) = remove_rule::refusal(scope, &s.running, None) {
        return Err(RemoveError::Refused(why));
    }
    // Its members were stopped by the lab itself: nothing writes the keys again.
    delete(&dcs, Duration::ZERO).await
}
