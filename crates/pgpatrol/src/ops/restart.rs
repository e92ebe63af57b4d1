//! Restarts that keep the cluster up: one member at a time, each waited for until it is
//! back (a replica streaming below the tolerance with no pending restart, a leader running),
//! and none started while another member is down or behind. patronictl restarts members in
//! DCS order, the leader included, with no wait and no switchover (patroni #2385).
//!
//! A rolling restart: replicas first; then a switchover to the best healthy replica and a
//! restart of the former leader (or the leader in place). The cluster is read again before
//! every step; the first step that fails or finds the cluster degraded stops the run and
//! leaves the rest untouched.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Serialize;
use serde_json::json;

use pgpatrol_core::candidates::{self, TakeoverSettings};
use pgpatrol_core::ops::restart as restart_rule;
use pgpatrol_core::{Cluster, LagKind, Member};

use super::switchover::{self, Takeover, TakeoverResult};
use super::{api_of, round1, with_write_gap, Ops, WriteGap};
use crate::poll::Poll;
use crate::source::rest::Request;

/// How to restart and when a member counts as back.
#[derive(Debug, Clone)]
pub struct RestartOptions {
    /// Send `restart_pending` (Patroni restarts only if a restart is pending).
    pub pending: bool,
    /// A replica is back when it streams with lag (of `lag`) below this many bytes.
    pub tolerance: u64,
    pub lag: LagKind,
    /// How long one member may take to come back.
    pub timeout: Duration,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    Restarted,
    SwitchedOver,
    Scheduled,
    Cancelled,
    /// Patroni had nothing to do (no pending restart; nothing scheduled).
    Skipped,
    Failed,
    DryRun,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub member: String,
    pub action: &'static str,
    pub result: StepResult,
    pub detail: String,
    pub secs: f64,
    /// Time without a writable leader during this step (leader steps only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_gap: Option<WriteGap>,
}

impl Step {
    /// A step not done yet: `Failed` until something says otherwise.
    fn failed(member: &str, action: &'static str) -> Self {
        Step {
            member: member.to_string(),
            action,
            result: StepResult::Failed,
            detail: String::new(),
            secs: 0.0,
            write_gap: None,
        }
    }
}

/// A restart run: its steps, and why it stopped early, if it did.
#[derive(Debug, Clone, Serialize)]
pub struct RestartReport {
    pub steps: Vec<Step>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Members that were to be restarted and were not touched.
    pub untouched: Vec<String>,
    pub total_secs: f64,
}

impl RestartReport {
    /// Every step did what it was asked (or had nothing to do) and nothing stopped the run.
    pub fn ok(&self) -> bool {
        self.stopped.is_none() && self.steps.iter().all(|s| s.result != StepResult::Failed)
    }
}

/// The gate before every step (core [`restart_rule::gate`]) with this run's lag and tolerance.
fn gate(
    c: &Cluster,
    except: &str,
    expect_leader: Option<&str>,
    opts: &RestartOptions,
) -> Result<(), String> {
    restart_rule::gate(c, except, expect_leader, opts.lag, opts.tolerance)
}

fn restart_body(
    opts: &RestartOptions,
    schedule: Option<jiff::Timestamp>,
) -> Option<serde_json::Value> {
    let mut body = serde_json::Map::new();
    if opts.pending {
        // Presence-based in Patroni: any value turns the filter on.
        body.insert("restart_pending".into(), json!(true));
    }
    if let Some(at) = schedule {
        body.insert("schedule".into(), json!(at.to_string()));
    }
    (!body.is_empty()).then_some(serde_json::Value::Object(body))
}

/// Restarts `m` now and waits until it is back.
pub async fn restart_one(ops: &Ops<'_>, m: &Member, opts: &RestartOptions) -> Step {
    let t0 = Instant::now();
    let was_leader = m.role.is_leader();
    let mut step = Step::failed(&m.name, "restart");
    let base = match api_of(m) {
        Ok(b) => b,
        Err(e) => {
            step.detail = e.to_string();
            return step;
        }
    };
    let req = match restart_body(opts, None) {
        Some(b) => Request::post(&base, "/restart", b),
        None => Request::post_empty(&base, "/restart"),
    }
    // The call blocks until PostgreSQL is back.
    .with_timeout(opts.timeout + Duration::from_secs(10));
    ops.progress.update(&m.name, "restarting");
    let run = async {
        match ops.send(&m.name, req).await {
            Ok(None) => (StepResult::DryRun, "dry run: nothing was sent".to_string()),
            Ok(Some(r)) if r.status == StatusCode::OK => {
                match wait_back(ops, &m.name, was_leader, opts).await {
                    Ok(how) => (StepResult::Restarted, how),
                    Err(why) => (StepResult::Failed, why),
                }
            }
            Ok(Some(r))
                if r.status == StatusCode::SERVICE_UNAVAILABLE
                    && r.body.contains("restart conditions are not satisfied") =>
            {
                (
                    StepResult::Skipped,
                    "Patroni: restart conditions are not satisfied (no pending restart)".into(),
                )
            }
            Ok(Some(r)) => (StepResult::Failed, super::answered(&r)),
            Err(e) => (StepResult::Failed, e.to_string()),
        }
    };
    let ((result, detail), gap) = if was_leader && !ops.dry_run {
        let apis = vec![base.clone()];
        let (r, g) = with_write_gap(ops.source, &apis, run).await;
        (r, Some(g))
    } else {
        (run.await, None)
    };
    step.result = result;
    step.detail = detail;
    step.write_gap = gap;
    step.secs = round1(t0.elapsed().as_secs_f64());
    step
}

/// Waits until `name` is back in the cluster view: the leader running, or a replica
/// replicating below the tolerance with no pending restart.
async fn wait_back(
    ops: &Ops<'_>,
    name: &str,
    leader: bool,
    opts: &RestartOptions,
) -> Result<String, String> {
    let mut poll = Poll::new(opts.timeout, Duration::from_millis(500));
    let mut last = String::new();
    while poll.next().await {
        if let Ok(c) = ops.read().await {
            if let Some(m) = c.member(name) {
                let back = if leader {
                    m.role.is_leader() && m.state == pgpatrol_core::State::Running
                } else {
                    m.is_back(opts.lag, opts.tolerance) && !m.pending_restart
                };
                if back {
                    return Ok(if leader {
                        "restarted; the leader runs".to_string()
                    } else {
                        format!("restarted; {} again", m.state)
                    });
                }
                let seen = format!(
                    "{}{}",
                    m.state,
                    if m.pending_restart {
                        ", restart pending"
                    } else {
                        ""
                    }
                );
                if seen != last {
                    ops.progress.update(name, &seen);
                    last = seen;
                }
            }
        }
    }
    Err(format!(
        "not back within {} (last seen: {last})",
        humantime::format_duration(opts.timeout)
    ))
}

/// Restarts `names` one at a time in the order given, each gated and waited for.
pub async fn sequential(
    ops: &Ops<'_>,
    names: &[String],
    opts: &RestartOptions,
) -> anyhow::Result<RestartReport> {
    let t0 = Instant::now();
    let mut report = RestartReport {
        steps: Vec::new(),
        stopped: None,
        untouched: Vec::new(),
        total_secs: 0.0,
    };
    for (i, name) in names.iter().enumerate() {
        let c = ops.read().await?;
        let m = super::member(&c, name)?.clone();
        // The gate runs in a dry run too (as in a rolling restart): it judges the cluster as
        // it is now, so the dry run shows the refusal the real run would stop on.
        if let Err(why) = gate(&c, name, None, opts) {
            report.stopped = Some(format!("stopped before restarting {name}: {why}"));
            report.untouched = names[i..].to_vec();
            break;
        }
        let step = restart_one(ops, &m, opts).await;
        let failed = step.result == StepResult::Failed;
        report.steps.push(step);
        if failed {
            report.stopped = Some(format!("stopped: restarting {name} failed"));
            report.untouched = names[i + 1..].to_vec();
            break;
        }
    }
    report.total_secs = round1(t0.elapsed().as_secs_f64());
    Ok(report)
}

/// A rolling restart of `names` (replicas first, then the leader by switchover or in place).
pub async fn rolling(
    ops: &Ops<'_>,
    names: &[String],
    opts: &RestartOptions,
    leader_in_place: bool,
    settings: &TakeoverSettings,
) -> anyhow::Result<RestartReport> {
    let t0 = Instant::now();
    let first = ops.read().await?;
    let leader = first
        .leader()
        .ok_or_else(|| anyhow::anyhow!("the cluster has no leader: a rolling restart needs one"))?
        .name
        .clone();
    let mut replicas: Vec<String> = names.iter().filter(|n| **n != leader).cloned().collect();
    replicas.sort();
    let with_leader = names.contains(&leader);
    let mut order = replicas.clone();
    if with_leader {
        order.push(leader.clone());
    }
    let mut report = RestartReport {
        steps: Vec::new(),
        stopped: None,
        untouched: Vec::new(),
        total_secs: 0.0,
    };
    let stop = |report: &mut RestartReport, why: String, from: usize| {
        report.stopped = Some(why);
        report.untouched = order[from..].to_vec();
    };
    // The gate runs in a dry run too: nothing was restarted, so it judges the cluster as it
    // is now, and a dry run shows the refusal the real run would stop on.
    for (i, name) in replicas.iter().enumerate() {
        let c = ops.read().await?;
        if let Err(why) = gate(&c, name, Some(&leader), opts) {
            stop(
                &mut report,
                format!("stopped before restarting {name}: {why}"),
                i,
            );
            return Ok(finish(report, t0));
        }
        let m = super::member(&c, name)?.clone();
        let step = restart_one(ops, &m, opts).await;
        let failed = step.result == StepResult::Failed;
        report.steps.push(step);
        if failed {
            stop(
                &mut report,
                format!("stopped: restarting {name} failed"),
                i + 1,
            );
            return Ok(finish(report, t0));
        }
    }
    if !with_leader {
        return Ok(finish(report, t0));
    }
    let li = replicas.len();
    let c = ops.read().await?;
    if let Err(why) = gate(&c, &leader, Some(&leader), opts) {
        stop(
            &mut report,
            format!("stopped before touching the leader {leader}: {why}"),
            li,
        );
        return Ok(finish(report, t0));
    }
    let lm = super::member(&c, &leader)?.clone();
    if leader_in_place {
        let step = restart_one(ops, &lm, opts).await;
        let failed = step.result == StepResult::Failed;
        report.steps.push(step);
        if failed {
            stop(
                &mut report,
                format!("stopped: restarting the leader {leader} failed"),
                li + 1,
            );
        }
        return Ok(finish(report, t0));
    }
    // Hand over first: the former leader is then restarted as a replica.
    let all = candidates::candidates(&c, settings, candidates::Takeover::Switchover);
    let Some(best) = candidates::best(&all).map(|b| b.name.clone()) else {
        let why: Vec<String> = all
            .iter()
            .map(|c| format!("{}: {}", c.name, c.reasons.join(", ")))
            .collect();
        stop(
            &mut report,
            format!(
                "stopped before touching the leader {leader}: no replica can take over ({}); restart it in place with --leader-in-place",
                why.join("; ")
            ),
            li,
        );
        return Ok(finish(report, t0));
    };
    let t1 = Instant::now();
    let so = switchover::run(
        ops,
        &c,
        &lm,
        &Takeover {
            operation: "switchover",
            leader: Some(leader.clone()),
            candidate: Some(best.clone()),
            scheduled_at: None,
            timeout: opts.timeout,
        },
        all,
    )
    .await?;
    let switched = so.result == TakeoverResult::Switched;
    report.steps.push(Step {
        member: leader.clone(),
        action: "switchover",
        result: match so.result {
            TakeoverResult::Switched => StepResult::SwitchedOver,
            TakeoverResult::DryRun => StepResult::DryRun,
            _ => StepResult::Failed,
        },
        detail: so.detail.clone(),
        secs: round1(t1.elapsed().as_secs_f64()),
        write_gap: so.write_gap.clone(),
    });
    if !switched && !ops.dry_run {
        stop(
            &mut report,
            format!(
                "stopped: the switchover from {leader} failed: {}",
                so.detail
            ),
            li,
        );
        return Ok(finish(report, t0));
    }
    // The former leader, now a replica (in a dry run, as it would be).
    let c = ops.read().await?;
    let mut former = super::member(&c, &leader)?.clone();
    if !ops.dry_run {
        if let Err(why) = gate(&c, &leader, None, opts) {
            stop(
                &mut report,
                format!("stopped before restarting the former leader {leader}: {why}"),
                li,
            );
            return Ok(finish(report, t0));
        }
    } else {
        former.role = pgpatrol_core::Role::Replica;
    }
    let step = restart_one(ops, &former, opts).await;
    let failed = step.result == StepResult::Failed;
    report.steps.push(step);
    if failed {
        stop(
            &mut report,
            format!("stopped: restarting the former leader {leader} failed"),
            li + 1,
        );
    }
    Ok(finish(report, t0))
}

fn finish(mut r: RestartReport, t0: Instant) -> RestartReport {
    r.total_secs = round1(t0.elapsed().as_secs_f64());
    r
}

/// Schedules a restart of each member at `at` (Patroni keeps it in memory and runs it).
pub async fn schedule(
    ops: &Ops<'_>,
    members: &[&Member],
    at: jiff::Timestamp,
    opts: &RestartOptions,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for m in members {
        let t0 = Instant::now();
        let mut step = Step::failed(&m.name, "schedule restart");
        match api_of(m) {
            Err(e) => step.detail = e.to_string(),
            Ok(base) => {
                let body = restart_body(opts, Some(at)).unwrap_or_else(|| json!({}));
                match ops
                    .send(&m.name, Request::post(&base, "/restart", body))
                    .await
                {
                    Ok(None) => {
                        step.result = StepResult::DryRun;
                        step.detail = "dry run: nothing was sent".into();
                    }
                    Ok(Some(r)) if r.status == StatusCode::ACCEPTED => {
                        step.result = StepResult::Scheduled;
                        step.detail = format!("restart scheduled at {at}");
                    }
                    Ok(Some(r)) => step.detail = super::answered(&r),
                    Err(e) => step.detail = e.to_string(),
                }
            }
        }
        step.secs = round1(t0.elapsed().as_secs_f64());
        steps.push(step);
    }
    steps
}

/// `DELETE path` on `m`: cancels a scheduled restart (`/restart`) or switchover.
pub async fn cancel(ops: &Ops<'_>, m: &Member, path: &str, what: &'static str) -> Step {
    let t0 = Instant::now();
    let mut step = Step::failed(&m.name, what);
    match api_of(m) {
        Err(e) => step.detail = e.to_string(),
        Ok(base) => match ops.send(&m.name, Request::delete(&base, path)).await {
            Ok(None) => {
                step.result = StepResult::DryRun;
                step.detail = "dry run: nothing was sent".into();
            }
            Ok(Some(r)) if r.status == StatusCode::OK => {
                step.result = StepResult::Cancelled;
                step.detail = format!("Patroni: {}", r.body.trim());
            }
            Ok(Some(r)) if r.status == StatusCode::NOT_FOUND => {
                step.result = StepResult::Skipped;
                step.detail = format!("Patroni: {}", r.body.trim());
            }
            Ok(Some(r)) => step.detail = super::answered(&r),
            Err(e) => step.detail = e.to_string(),
        },
    }
    step.secs = round1(t0.elapsed().as_secs_f64());
    step
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> RestartOptions {
        RestartOptions {
            pending: false,
            tolerance: 1024 * 1024,
            lag: LagKind::Replay,
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn bodies_carry_only_what_was_asked() {
        assert_eq!(restart_body(&opts(), None), None);
        let pending = RestartOptions {
            pending: true,
            ..opts()
        };
        let at: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            restart_body(&pending, Some(at)),
            Some(json!({"restart_pending": true, "schedule": "2030-01-01T00:00:00Z"}))
        );
    }
}
