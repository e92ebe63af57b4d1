//! Switchover and failover, followed to the end: Patroni's `POST /switchover` answers after
//! about 20 s with `503 Switchover status unknown` while the switchover may still finish
//! (patroni #743, #3106), so the answer is a hint and the DCS is the truth: pgpatrol reads
//! the cluster until the new leader runs and the former one replicates, and measures how
//! long no member was a writable leader.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Serialize;
use serde_json::json;

use pgpatrol_core::candidates::{self, Candidate, Takeover as Kind, TakeoverSettings};
use pgpatrol_core::ops::takeover::{self, Position};
use pgpatrol_core::ops::{Action, OpStep};
use pgpatrol_core::{Cluster, Lsn, Member};

use super::runner::{Operation, Recheck, StepOutcome, StepResult};
use super::{api_of, round1, with_write_gap, Ops, SentRequest, WriteGap};
use crate::poll::Poll;
use crate::source::http::Request;

/// How a switchover or failover ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TakeoverResult {
    /// The leader changed: the new one runs (and, after a switchover, the former one
    /// replicates, or the detail says it does not yet).
    Switched,
    /// Patroni accepted a scheduled switchover.
    Scheduled,
    /// Patroni refused, or the leader did not change within the timeout.
    Failed,
    /// Nothing was sent: a dry run.
    DryRun,
}

/// What a switchover or failover did, for the report and `-o json`.
#[derive(Debug, Clone, Serialize)]
pub struct TakeoverOutcome {
    pub operation: Kind,
    pub result: TakeoverResult,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
    /// Time without a writable leader, measured while the operation ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_gap: Option<WriteGap>,
    pub total_secs: f64,
    pub candidates: Vec<Candidate>,
    pub requests: Vec<SentRequest>,
}

/// What to ask Patroni for.
#[derive(Debug, Clone)]
pub struct Takeover {
    pub operation: Kind,
    /// The leader handing over (switchover only).
    pub leader: Option<String>,
    pub candidate: Option<String>,
    pub scheduled_at: Option<jiff::Timestamp>,
    /// How long to follow the cluster after the request.
    pub timeout: Duration,
}

/// Sends the switchover or failover to `target` (a member's API) and follows it.
pub async fn run(
    ops: &Ops<'_>,
    before: &Cluster,
    target: &Member,
    t: &Takeover,
    candidates: Vec<Candidate>,
) -> anyhow::Result<TakeoverOutcome> {
    let t0 = Instant::now();
    let base = api_of(target)?;
    let mut body = json!({});
    if let Some(l) = &t.leader {
        body["leader"] = l.clone().into();
    }
    if let Some(c) = &t.candidate {
        body["candidate"] = c.clone().into();
    }
    if let Some(at) = t.scheduled_at {
        body["scheduled_at"] = at.to_string().into();
    }
    let path = format!("/{}", t.operation.as_str());
    // Patroni holds the call for up to 2*max(10, loop_wait) s before it answers.
    let req = Request::post(&base, &path, body).with_timeout(Duration::from_secs(75));
    let mut out = TakeoverOutcome {
        operation: t.operation,
        result: TakeoverResult::Failed,
        detail: String::new(),
        leader_before: before.leader().map(|l| l.name.clone()),
        leader_after: None,
        candidate: t.candidate.clone(),
        scheduled_at: t.scheduled_at.map(|s| s.to_string()),
        write_gap: None,
        total_secs: 0.0,
        candidates,
        requests: Vec::new(),
    };
    if t.scheduled_at.is_some() {
        match ops.send(&target.name, req).await {
            Ok(None) => {
                out.result = TakeoverResult::DryRun;
                out.detail = "dry run: nothing was sent".into();
            }
            Ok(Some(resp)) if resp.status == StatusCode::ACCEPTED => {
                out.result = TakeoverResult::Scheduled;
                out.detail = format!("Patroni: {}", resp.body.trim());
            }
            Ok(Some(resp)) => {
                out.detail = format!(
                    "Patroni refused (HTTP {}): {}",
                    resp.status.as_u16(),
                    crate::text::snippet(resp.body.trim())
                );
            }
            Err(e) => out.detail = e.to_string(),
        }
        out.requests = ops.sent();
        out.total_secs = round1(t0.elapsed().as_secs_f64());
        return Ok(out);
    }

    let old_leader = before.leader().map(|l| l.name.clone());
    let apis = super::all_apis(before);
    let follow = async {
        let answer = match ops.send(&target.name, req).await {
            Ok(None) => return Err(None),
            Ok(Some(resp)) => Ok(resp),
            // Only a timeout leaves the outcome open; a refused connection, credentials or
            // TLS mean Patroni never got the request.
            Err(e @ crate::source::http::HttpError::Timeout { .. }) => Err(e.to_string()),
            Err(e) => return Err(Some(e.to_string())),
        };
        let hint = match &answer {
            Ok(resp) if resp.status == StatusCode::OK => {
                ops.progress.update(target.name.as_str(), resp.body.trim());
                None
            }
            Ok(resp)
                if resp.status == StatusCode::SERVICE_UNAVAILABLE
                    && resp.body.contains("status unknown") =>
            {
                // Not a failure: the switchover may still complete. The DCS decides.
                ops.progress.update(
                    target.name.as_str(),
                    "Patroni: status unknown; following the cluster",
                );
                None
            }
            Ok(resp) => {
                return Err(Some(format!(
                    "Patroni refused (HTTP {}): {}",
                    resp.status.as_u16(),
                    crate::text::snippet(resp.body.trim())
                )))
            }
            Err(e) => {
                // No answer in time: it may be happening all the same.
                ops.progress.update(
                    target.name.as_str(),
                    &format!("no answer ({e}); following the cluster"),
                );
                Some(e.clone())
            }
        };
        Ok(follow(ops, old_leader.as_deref(), t, hint).await)
    };
    let (followed, gap) = with_write_gap(ops.source, &apis, follow).await;
    out.requests = ops.sent();
    out.total_secs = round1(t0.elapsed().as_secs_f64());
    match followed {
        Err(None) => {
            out.result = TakeoverResult::DryRun;
            out.detail = "dry run: nothing was sent".into();
        }
        Err(Some(why)) => {
            out.detail = why;
            out.write_gap = Some(gap);
        }
        Ok(f) => {
            out.leader_after = f.leader.clone();
            out.result = f.result;
            out.detail = f.detail;
            out.write_gap = Some(gap);
        }
    }
    Ok(out)
}

struct Followed {
    result: TakeoverResult,
    leader: Option<String>,
    detail: String,
}

/// Reads the cluster until a leader other than `old` runs and (switchover) `old`
/// replicates again, or the timeout passes.
async fn follow(ops: &Ops<'_>, old: Option<&str>, t: &Takeover, hint: Option<String>) -> Followed {
    let mut poll = Poll::new(t.timeout, Duration::from_millis(300));
    let mut last_seen = String::new();
    let mut changed_to: Option<String> = None;
    // The members' API URLs as last read (to ask the new leader for itself at the end).
    let mut apis: std::collections::BTreeMap<String, String> = Default::default();
    while poll.next().await {
        match ops.read().await {
            Ok(c) => {
                for m in &c.members {
                    if let Some(api) = &m.api_url {
                        apis.insert(m.name.clone(), api.clone());
                    }
                }
                let leader = c
                    .leader()
                    .filter(|l| l.state == pgpatrol_core::State::Running);
                let seen = match leader {
                    Some(l) => format!("leader {} ({})", l.name, l.state),
                    None => "no running leader".to_string(),
                };
                let (new_leader, done) =
                    match takeover::progress(&c, old, t.operation == Kind::Switchover) {
                        takeover::Progress::Waiting => (None, false),
                        takeover::Progress::NewLeader { leader } => (Some(leader), false),
                        takeover::Progress::Done { leader } => (Some(leader), true),
                    };
                if let Some(l) = new_leader {
                    changed_to = Some(l.clone());
                    if done {
                        let mut detail = match (&t.candidate, old) {
                            (Some(want), _) if *want != l => {
                                format!("{l} took over instead of {want} (Patroni chose it)")
                            }
                            _ => format!("{l} is the leader and runs"),
                        };
                        if let (Some(o), Kind::Switchover) = (old, t.operation) {
                            detail.push_str(&format!("; {o} replicates from it"));
                        }
                        return Followed {
                            result: TakeoverResult::Switched,
                            leader: Some(l),
                            detail,
                        };
                    }
                }
                if seen != last_seen {
                    ops.progress.update("cluster", &seen);
                    last_seen = seen;
                }
            }
            Err(e) => {
                let seen = format!("cannot read the cluster: {e}");
                if seen != last_seen {
                    ops.progress.update("cluster", &seen);
                    last_seen = seen;
                }
            }
        }
    }
    let waited = humantime::format_duration(t.timeout);
    match changed_to {
        // The leader changed at some point, but the switchover never reached done: switched
        // only if the new leader, asked for itself now, runs as the leader (`/cluster` is
        // Patroni's DCS watch, which a frozen DCS leaves as it was). Seen under the fault
        // matrix (issue 24): etcd stopped once Patroni answered, the new leader demoted
        // itself, and this said "switched" with no writable member for 31 s.
        Some(new) => {
            let own = match apis.get(&new) {
                Some(api) => ops
                    .source
                    .member_status(api)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err(format!("{new} has no api_url in /cluster")),
            };
            match own {
                Ok(s) if s.is_running_leader() => Followed {
                    result: TakeoverResult::Switched,
                    leader: Some(new.clone()),
                    detail: format!(
                        "{new} is the leader, but the former leader {} does not replicate yet after {waited} ({last_seen}): check it",
                        old.unwrap_or("?")
                    ),
                },
                own => Followed {
                    result: TakeoverResult::Failed,
                    leader: None,
                    detail: format!(
                        "not confirmed within {waited}: {new} took the leader lock, but {} ({last_seen}): check the cluster and its DCS",
                        match own {
                            Ok(s) => format!("says of itself it is {} and {}", s.role.as_str(), s.state),
                            Err(e) => format!("does not answer for itself ({e})"),
                        }
                    ),
                },
            }
        }
        None => Followed {
            result: TakeoverResult::Failed,
            leader: old.map(str::to_string),
            detail: format!(
                "the leader did not change within {waited} ({last_seen}){}",
                hint.map(|h| format!("; the request: {h}"))
                    .unwrap_or_default()
            ),
        },
    }
}

/// Each non-leader member's positions from its own `/patroni` (falling back to /cluster's),
/// and the last leader position the DCS knew (`/cluster` lag is measured against it).
pub async fn positions(ops: &Ops<'_>, cluster: &Cluster) -> (Vec<Position>, Option<Lsn>) {
    let dead_leader = cluster.leader().map(|l| l.name.clone());
    let members: Vec<&Member> = cluster
        .members
        .iter()
        .filter(|m| Some(&m.name) != dead_leader.as_ref())
        .collect();
    let reads = members.iter().map(|m| async move {
        match api_of(m) {
            Ok(api) => ops.source.member_status(&api).await.ok(),
            Err(_) => None,
        }
    });
    let statuses = futures::future::join_all(reads).await;
    let mut leader_pos: Option<Lsn> = None;
    let out = members
        .iter()
        .zip(statuses)
        .map(|(m, s)| {
            let (received, replayed, reachable) = match &s {
                Some(s) => (s.received, s.replayed, true),
                None => (m.receive_lsn, m.replay_lsn, false),
            };
            // /cluster's (legacy) lag = last leader position - max(received, replayed).
            if let (Some(data), Some(lag)) = (
                received.max(replayed),
                m.receive_lag.and_then(|l| l.bytes()),
            ) {
                let pos = Lsn(data.0 + lag);
                leader_pos = leader_pos.max(Some(pos));
            }
            Position {
                name: m.name.clone(),
                received,
                replayed,
                behind_leader: None,
                reachable,
            }
        })
        .collect::<Vec<_>>();
    let out = out
        .into_iter()
        .map(|mut p| {
            p.behind_leader = leader_pos.zip(p.data()).map(|(l, d)| l.bytes_after(d));
            p
        })
        .collect();
    (out, leader_pos)
}

/// What a failover's rule reads: every member's last position, the last leader position
/// the DCS knew, the candidates judged as if the dead leader were gone, the data the
/// candidate may lack, and whether the leader still runs after all.
#[derive(Debug, Clone)]
pub struct FailoverReading {
    pub positions: Vec<Position>,
    pub leader_pos: Option<Lsn>,
    pub candidates: Vec<Candidate>,
    pub risk: takeover::DataAtRisk,
    /// The leader that answers as a running leader on its own `/patroni`.
    pub leader_running: Option<String>,
}

/// Reads what [`takeover::failover`] judges, for `candidate` in `c`.
pub async fn read_failover(
    ops: &Ops<'_>,
    c: &Cluster,
    settings: &TakeoverSettings,
    candidate: &str,
) -> FailoverReading {
    let mut leader_running = None;
    if let Some(l) = c.leader() {
        // /cluster keeps a dead leader until its key expires: ask the leader itself.
        if let Ok(api) = api_of(l) {
            if let Ok(s) = ops.source.member_status(&api).await {
                if s.is_running_leader() {
                    leader_running = Some(l.name.clone());
                }
            }
        }
    }
    let (positions, leader_pos) = positions(ops, c).await;
    // A dead leader is no candidate: judge the others as if there were no leader.
    let mut without_leader = c.clone();
    without_leader.members.retain(|m| !m.role.is_leader());
    let mut cands = candidates::candidates(&without_leader, settings, Kind::Failover);
    for x in &mut cands {
        // Lag against a dead leader is measured from the last position it published;
        // the data comparison is what counts.
        x.reasons
            .retain(|r| !r.contains("maximum_lag_on_failover") && r != "lag is unknown");
        x.eligible = x.reasons.is_empty();
    }
    let synchronous = cands
        .iter()
        .find(|x| x.name == candidate)
        .is_some_and(|x| x.synchronous);
    let risk = takeover::data_at_risk(
        candidate,
        &positions,
        settings.synchronous_mode,
        synchronous,
    );
    FailoverReading {
        positions,
        leader_pos,
        candidates: cands,
        risk,
        leader_running,
    }
}

/// A switchover or a failover as the runner carries it out: before the step the cluster
/// is read again and core's rule ([`takeover::switchover`], [`takeover::failover`]) decides
/// again on what is read then (a confirmation can take minutes); the step sends the request
/// and follows the cluster until the takeover is done.
pub struct TakeoverOp {
    pub settings: TakeoverSettings,
    pub timeout: Duration,
    pub scheduled_at: Option<jiff::Timestamp>,
    /// Failover: the loss of data another member may hold was accepted.
    pub accepted: bool,
    /// How it ended (after the step).
    pub outcome: Option<TakeoverOutcome>,
    /// Failover: the last reading the rule judged.
    pub reading: Option<FailoverReading>,
    last: Option<(Cluster, Vec<Candidate>)>,
}

impl TakeoverOp {
    pub fn new(settings: TakeoverSettings, timeout: Duration) -> Self {
        TakeoverOp {
            settings,
            timeout,
            scheduled_at: None,
            accepted: false,
            outcome: None,
            reading: None,
            last: None,
        }
    }
}

impl Operation for TakeoverOp {
    async fn recheck(&mut self, ops: &Ops<'_>, _: usize, step: &OpStep) -> Result<(), Recheck> {
        let c = ops.reread().await?;
        let again = if step.action == Action::Failover {
            let r = read_failover(ops, &c, &self.settings, &step.member).await;
            if let Some(l) = &r.leader_running {
                return Err(format!(
                    "the leader {l} is running: use `pgpatrol switchover --candidate {}` (a failover is for a dead or unreachable leader)",
                    step.member
                ).into());
            }
            let plan = takeover::failover(&step.member, &r.candidates, &r.risk, self.accepted);
            let cands = r.candidates.clone();
            self.reading = Some(r);
            self.last = Some((c, cands));
            plan
        } else {
            match c.leader() {
                Some(l) if l.name == step.member => {}
                Some(l) => {
                    return Err(
                        format!("the leader changed from {} to {}", step.member, l.name).into(),
                    )
                }
                None => return Err(format!("the leader {} is gone", step.member).into()),
            }
            let cands = candidates::candidates(&c, &self.settings, Kind::Switchover);
            let plan = takeover::switchover(&c, &cands, step.to.as_deref(), step.at.as_deref());
            // A switchover now: its candidate (named or chosen) must answer for itself
            // (Patroni's leader asks it too, and refuses with "no good candidates" when it
            // does not).
            if plan.refusal.is_none() && step.at.is_none() {
                if let Some(m) = step.to.as_deref().and_then(|n| c.member(n)) {
                    super::answers(ops, m).await?;
                }
            }
            self.last = Some((c, cands));
            plan
        };
        Ok(again.verdict()?)
    }

    async fn perform(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let t0 = Instant::now();
        let mut out = StepOutcome::failed(step);
        let Some((c, cands)) = self.last.take() else {
            return out.with(StepResult::Failed, "the cluster was not read");
        };
        let Some(target) = c.member(&step.member).cloned() else {
            return out.with(
                StepResult::Failed,
                format!("{} is not a member", step.member),
            );
        };
        let failover = step.action == Action::Failover;
        let t = Takeover {
            operation: if failover {
                Kind::Failover
            } else {
                Kind::Switchover
            },
            leader: (!failover).then(|| step.member.clone()),
            candidate: step.to.clone(),
            scheduled_at: self.scheduled_at,
            timeout: self.timeout,
        };
        match run(ops, &c, &target, &t, cands).await {
            Ok(o) => {
                out.result = match o.result {
                    TakeoverResult::Switched => StepResult::SwitchedOver,
                    TakeoverResult::Scheduled => StepResult::Scheduled,
                    TakeoverResult::DryRun => StepResult::DryRun,
                    TakeoverResult::Failed => StepResult::Failed,
                };
                out.detail = o.detail.clone();
                out.write_gap = o.write_gap.clone();
                self.outcome = Some(o);
            }
            Err(e) => out.detail = e.to_string(),
        }
        out.secs = round1(t0.elapsed().as_secs_f64());
        out
    }
}
