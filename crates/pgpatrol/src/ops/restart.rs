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
use serde_json::json;

use pgpatrol_core::candidates::{self, TakeoverSettings};
use pgpatrol_core::ops::restart as restart_rule;
use pgpatrol_core::{Cluster, LagKind, Member};

use super::runner::{Operation, Recheck, StepOutcome, StepResult};
use super::switchover::{self, Takeover, TakeoverResult};
use super::{answers, api_of, round1, with_write_gap, Ops};
use crate::poll::Poll;
use crate::source::http::Request;
use pgpatrol_core::ops::{Action, OpStep};

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
async fn restart_one(
    ops: &Ops<'_>,
    m: &Member,
    step: &OpStep,
    opts: &RestartOptions,
) -> StepOutcome {
    let t0 = Instant::now();
    let was_leader = m.role.is_leader();
    let mut step = StepOutcome::failed(step);
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
                // `/cluster` is what Patroni serves from its DCS watch, for a while also when
                // the DCS froze: the member itself must have reached the DCS since its
                // PostgreSQL started again.
                let dcs = if back {
                    match m.api_url.as_deref() {
                        Some(api) => ops.source.member_status(api).await.ok(),
                        None => None,
                    }
                } else {
                    None
                };
                match dcs.as_ref().map(dcs_since_start) {
                    Some(DcsSinceStart::Yes | DcsSinceStart::CannotTell) => {
                        return Ok(if leader {
                            "restarted; the leader runs".to_string()
                        } else {
                            format!("restarted; {} again", m.state)
                        });
                    }
                    Some(DcsSinceStart::No) => {
                        let seen = format!(
                            "{}, but its Patroni has not reached the DCS since PostgreSQL started",
                            m.state
                        );
                        if seen != last {
                            ops.progress.update(name, &seen);
                            last = seen;
                        }
                        continue;
                    }
                    None => {}
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

/// Whether a member's Patroni reached the DCS since its PostgreSQL started: both times are
/// the member's own (`dcs_last_seen`, `postmaster_start_time` of its `/patroni`), so no
/// clock of another host is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DcsSinceStart {
    Yes,
    No,
    /// A Patroni that does not say (`dcs_last_seen` is absent before Patroni 2.1) or a start
    /// time that does not parse: the cluster view alone decides, as before.
    CannotTell,
}

pub fn dcs_since_start(s: &pgpatrol_core::MemberStatus) -> DcsSinceStart {
    let started = s
        .postmaster_start_time
        .as_deref()
        .and_then(crate::time::parse_iso8601);
    match (s.dcs_last_seen, started) {
        (Some(seen), Some(started)) => {
            let started = started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if seen >= started {
                DcsSinceStart::Yes
            } else {
                DcsSinceStart::No
            }
        }
        _ => DcsSinceStart::CannotTell,
    }
}

/// A restart (one member, several, rolling, pending, scheduled) as the runner carries it
/// out: core's [`restart_rule::plan`] gives the steps; before each, the cluster is read again
/// and [`restart_rule::gate`] (or, for a schedule, `schedule_refusal`) judged again.
pub struct RestartOp {
    pub opts: RestartOptions,
    /// Rolling: the replicas' gate expects the leader the run started with.
    pub rolling: bool,
    /// Whom a rolling restart hands the leader role to (Patroni's rule).
    pub settings: TakeoverSettings,
    /// The time of a scheduled restart.
    pub at: Option<jiff::Timestamp>,
    leader: Option<String>,
    handed_over: bool,
    last: Option<Cluster>,
}

impl RestartOp {
    pub fn new(
        first: &Cluster,
        opts: RestartOptions,
        rolling: bool,
        settings: TakeoverSettings,
        at: Option<jiff::Timestamp>,
    ) -> Self {
        RestartOp {
            opts,
            rolling,
            settings,
            at,
            leader: first.leader().map(|l| l.name.clone()),
            handed_over: false,
            last: None,
        }
    }
}

impl Operation for RestartOp {
    async fn recheck(&mut self, ops: &Ops<'_>, _: usize, step: &OpStep) -> Result<(), Recheck> {
        let c = ops.reread().await?;
        let name = step.member.as_str();
        let Some(m) = c.member(name) else {
            return Err(format!("{name} is no longer a member of the cluster").into());
        };
        answers(ops, m).await?;
        let verdict = match step.action {
            Action::ScheduleRestart => {
                if c.paused {
                    Err("the cluster is paused: Patroni cannot schedule a restart in maintenance mode".into())
                } else {
                    restart_rule::schedule_refusal(&c, std::slice::from_ref(&step.member))
                        .map_or(Ok(()), Err)
                }
            }
            // The former leader of a dry run has not handed over: the real run judges it
            // as a replica, after the switchover.
            Action::Restart if self.handed_over && ops.dry_run => Ok(()),
            Action::Restart if self.handed_over => {
                restart_rule::former_leader_gate(&c, name, self.opts.lag, self.opts.tolerance)
            }
            Action::Restart | Action::Switchover if self.rolling => {
                gate(&c, name, self.leader.as_deref(), &self.opts)
            }
            _ => gate(&c, name, None, &self.opts),
        };
        self.last = Some(c);
        Ok(verdict?)
    }

    async fn perform(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let Some(c) = self.last.take() else {
            return StepOutcome::failed(step).with(StepResult::Failed, "the cluster was not read");
        };
        let Some(m) = c.member(&step.member).cloned() else {
            return StepOutcome::failed(step).with(
                StepResult::Failed,
                format!("{} is not a member", step.member),
            );
        };
        match step.action {
            Action::ScheduleRestart => match self.at {
                Some(at) => schedule_one(ops, &m, step, at, &self.opts).await,
                None => {
                    StepOutcome::failed(step).with(StepResult::Failed, "no time to schedule at")
                }
            },
            Action::Switchover => {
                let out = hand_over(ops, &c, &m, step, &self.settings, self.opts.timeout).await;
                self.handed_over = true;
                out
            }
            _ => {
                let mut m = m;
                if self.handed_over && ops.dry_run {
                    // As it would be after the switchover.
                    m.role = pgpatrol_core::Role::Replica;
                }
                restart_one(ops, &m, step, &self.opts).await
            }
        }
    }
}

/// A rolling restart's switchover: to the best healthy replica (Patroni's rule), followed
/// until the new leader runs and the former one replicates.
async fn hand_over(
    ops: &Ops<'_>,
    c: &Cluster,
    leader: &Member,
    step: &OpStep,
    settings: &TakeoverSettings,
    timeout: Duration,
) -> StepOutcome {
    let t1 = Instant::now();
    let all = candidates::candidates(c, settings, candidates::Takeover::Switchover);
    let Some(best) = candidates::best(&all).map(|b| b.name.clone()) else {
        let why: Vec<String> = all
            .iter()
            .map(|c| format!("{}: {}", c.name, c.reasons.join(", ")))
            .collect();
        return StepOutcome::failed(step).with(
            StepResult::Failed,
            format!(
                "no replica can take over ({}); restart the leader in place with --leader-in-place",
                why.join("; ")
            ),
        );
    };
    let so = switchover::run(
        ops,
        c,
        leader,
        &Takeover {
            operation: candidates::Takeover::Switchover,
            leader: Some(leader.name.clone()),
            candidate: Some(best),
            scheduled_at: None,
            timeout,
        },
        all,
    )
    .await;
    let mut out = StepOutcome::failed(step);
    match so {
        Ok(so) => {
            out.result = match so.result {
                TakeoverResult::Switched => StepResult::SwitchedOver,
                TakeoverResult::DryRun => StepResult::DryRun,
                _ => StepResult::Failed,
            };
            out.detail = so.detail;
            out.write_gap = so.write_gap;
        }
        Err(e) => out.detail = e.to_string(),
    }
    out.secs = round1(t1.elapsed().as_secs_f64());
    out
}

/// Schedules a restart of `m` at `at` (Patroni keeps it in memory and runs it).
async fn schedule_one(
    ops: &Ops<'_>,
    m: &Member,
    planned: &OpStep,
    at: jiff::Timestamp,
    opts: &RestartOptions,
) -> StepOutcome {
    let t0 = Instant::now();
    let mut step = StepOutcome::failed(planned);
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
    step
}

/// `flush`: cancels scheduled restarts or the scheduled switchover, each step checked
/// again first (the schedule may have run or been cancelled meanwhile).
pub struct FlushOp {
    last: Option<Cluster>,
}

impl FlushOp {
    pub fn new() -> Self {
        FlushOp { last: None }
    }
}

impl Default for FlushOp {
    fn default() -> Self {
        Self::new()
    }
}

impl Operation for FlushOp {
    async fn recheck(&mut self, ops: &Ops<'_>, _: usize, step: &OpStep) -> Result<(), Recheck> {
        let c = ops.reread().await?;
        let verdict: Result<(), Recheck> = match step.action {
            Action::CancelRestart => match c.member(&step.member) {
                Some(m) if m.scheduled_restart.is_some() => Ok(()),
                Some(_) => {
                    Err(format!("{} no longer holds a scheduled restart", step.member).into())
                }
                None => Err(format!("{} is no longer a member", step.member).into()),
            },
            _ if c.scheduled_switchover.is_none() => {
                Err("no switchover is scheduled any more".into())
            }
            _ => Ok(()),
        };
        self.last = Some(c);
        verdict
    }

    async fn perform(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let Some(c) = self.last.take() else {
            return StepOutcome::failed(step).with(StepResult::Failed, "the cluster was not read");
        };
        if step.action == Action::CancelRestart {
            return match c.member(&step.member) {
                Some(m) => cancel(ops, m, "/restart", step).await.0,
                None => StepOutcome::failed(step).with(StepResult::Failed, "not a member"),
            };
        }
        // The leader first; any member can write the failover key: the next member only
        // when one did not answer at all.
        let mut order: Vec<&Member> = c.leaders().collect();
        order.extend(c.replicas());
        let mut last =
            StepOutcome::failed(step).with(StepResult::Failed, "no member to send it to");
        for m in order {
            let (out, answered) = cancel(ops, m, "/switchover", step).await;
            last = out;
            if answered {
                break;
            }
        }
        last
    }
}

/// `DELETE path` on `m`: cancels a scheduled restart (`/restart`) or switchover. The flag
/// says whether Patroni answered at all (a refusal is an answer; a refused connection not).
async fn cancel(ops: &Ops<'_>, m: &Member, path: &str, planned: &OpStep) -> (StepOutcome, bool) {
    let t0 = Instant::now();
    let mut answered = true;
    let mut step = StepOutcome::failed(planned);
    step.member = m.name.clone();
    match api_of(m) {
        Err(e) => {
            answered = false;
            step.detail = e.to_string();
        }
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
            Err(e) => {
                answered = false;
                step.detail = e.to_string();
            }
        },
    }
    step.secs = round1(t0.elapsed().as_secs_f64());
    (step, answered)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seen under the fault matrix (issue 24): etcd frozen right after a member's restart,
    /// `/cluster` (Patroni's DCS watch) still said it streamed and a rolling restart went
    /// on to the next member. Back means its Patroni reached the DCS since PostgreSQL
    /// started, by the member's own two times.
    #[test]
    fn a_member_is_back_only_once_its_patroni_reached_the_dcs_since_it_started() {
        let wire: crate::source::wire::rest::StatusWire =
            serde_json::from_str(&crate::test_support::capture("4.1.5/patroni_replica.json"))
                .unwrap();
        let mut s = wire.to_status();
        // The capture: started 09:21:04.25, the DCS reached at 09:21:05.
        assert_eq!(dcs_since_start(&s), DcsSinceStart::Yes);
        // The DCS last reached a minute before PostgreSQL started: frozen since.
        s.dcs_last_seen = s.dcs_last_seen.map(|t| t - 61);
        assert_eq!(dcs_since_start(&s), DcsSinceStart::No);
        // Within the same second (dcs_last_seen is whole seconds): reached.
        s.postmaster_start_time = Some("2026-12-01 09:21:04.999+00:00".into());
        s.dcs_last_seen = crate::time::parse_iso8601("2026-12-01T09:21:04Z")
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        assert_eq!(dcs_since_start(&s), DcsSinceStart::Yes);
        // A Patroni that does not say: the cluster view decides, as before.
        s.dcs_last_seen = None;
        assert_eq!(dcs_since_start(&s), DcsSinceStart::CannotTell);
    }

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
