//! `standby promote` and `standby demote` as the runner carries them out (their rules are
//! core's `ops::standby`): before the `PATCH /config` the cluster, the source at
//! `--source-url` and the source's PostgreSQL are read again and the rule judged again (a
//! confirmation can take minutes, and the source may have come back meanwhile); after it,
//! the leader is followed until it has its new role.

use std::time::{Duration, Instant};

use pgpatrol_core::ops::standby as standby_rule;
use pgpatrol_core::ops::{Action, OpPlan, OpStep};
use pgpatrol_core::{Cluster, Role};

use super::runner::{Operation, Recheck, StepOutcome, StepResult};
use super::{api_of, round1, Ops};
use crate::poll::Poll;
use crate::source::http::Request;
use crate::source::{ClusterSource, Detail};

/// The cluster at `url`, as read from its `/cluster` and its leader's `/patroni` (for the
/// system identifier); `Err` names what could not be read, so that the caller fails closed
/// (core `ops::standby` never takes "could not tell" as "no primary").
pub async fn read_source(http: &ClusterSource, url: &str) -> Result<Cluster, String> {
    let base = crate::source::http::base_url(url).map_err(|e| e.to_string())?;
    let src = ClusterSource::new(http.http().clone(), std::slice::from_ref(&base))
        .map_err(|e| e.to_string())?;
    let snap = src
        .snapshot(Detail::Full)
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(snap.cluster)
}

/// Whether a PostgreSQL answers at `addr` within 3 s: it is sent an `SSLRequest` (the first
/// message of any connection, no login needed) and must reply `S` or `N`. A TCP connection
/// alone is not enough: the kernel accepts connections for a postmaster that is hung or
/// stopped, which could never serve the standby leader (seen under the fault matrix: a
/// demote toward a SIGSTOPped source was sent).
pub async fn answers(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Length 8, then the request code 80877103.
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(&SSL_REQUEST).await.ok()?;
        let mut reply = [0u8; 1];
        s.read_exact(&mut reply).await.ok()?;
        matches!(reply[0], b'S' | b'N').then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), probe).await,
        Ok(Some(()))
    )
}

/// What promote or demote needs: the source at `--source-url`, the operator's word that
/// it is gone, the source's PostgreSQL address.
#[derive(Debug, Clone, Default)]
pub struct StandbyInputs {
    pub source_url: Option<String>,
    pub source_gone: bool,
    /// Demote: `host:port` of the source's PostgreSQL (checked to answer).
    pub source_pg: Option<String>,
}

impl StandbyInputs {
    /// Reads what the rule needs and decides: promote (`demote` false) or demote.
    pub async fn decide(&self, source: &ClusterSource, c: &Cluster, demote: bool) -> OpPlan {
        let read = match &self.source_url {
            Some(url) => Some((url.as_str(), read_source(source, url).await)),
            None => None,
        };
        let read = read.as_ref().map(|(url, r)| standby_rule::SourceRead {
            url,
            read: r.as_ref().map_err(String::as_str),
        });
        if demote {
            let pg = match &self.source_pg {
                Some(addr) => Some((addr.as_str(), answers(addr).await)),
                None => None,
            };
            standby_rule::demote_plan(c, read, pg)
        } else {
            standby_rule::promote_plan(c, read, self.source_gone)
        }
    }
}

/// Promote or demote: one `PATCH /config` on the leader, then the leader followed until it
/// runs as a primary (promote) or as a standby leader that replicates (demote).
pub struct StandbyOp {
    pub inputs: StandbyInputs,
    pub body: serde_json::Value,
    pub timeout: Duration,
    /// The leader with its new role, when done.
    pub leader: Option<String>,
    last: Option<Cluster>,
}

impl StandbyOp {
    pub fn new(inputs: StandbyInputs, body: serde_json::Value, timeout: Duration) -> Self {
        StandbyOp {
            inputs,
            body,
            timeout,
            leader: None,
            last: None,
        }
    }
}

impl Operation for StandbyOp {
    async fn recheck(&mut self, ops: &Ops<'_>, _: usize, step: &OpStep) -> Result<(), Recheck> {
        let c = ops.reread().await?;
        let again = self
            .inputs
            .decide(ops.source, &c, step.action == Action::Demote)
            .await;
        again.verdict()?;
        match again.steps.first() {
            Some(s) if s.member == step.member => {}
            Some(s) => {
                return Err(
                    format!("the leader changed from {} to {}", step.member, s.member).into(),
                )
            }
            None => return Err("nothing to do any more".into()),
        }
        self.last = Some(c);
        Ok(())
    }

    async fn perform(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let t0 = Instant::now();
        let mut out = StepOutcome::failed(step);
        let want = if step.action == Action::Demote {
            Role::StandbyLeader
        } else {
            Role::Leader
        };
        let base = match super::api_in(self.last.take(), &step.member) {
            Ok(b) => b,
            Err(e) => return out.with(StepResult::Failed, e.to_string()),
        };
        match ops
            .send(
                &step.member,
                Request::patch(&base, "/config", self.body.clone()),
            )
            .await
        {
            Err(e) => out.detail = e.to_string(),
            Ok(None) => {
                out.result = StepResult::DryRun;
                out.detail = "dry run: nothing was sent".into();
            }
            // A write Patroni could not confirm can still land: never "not done".
            Ok(Some(r)) if r.status == reqwest::StatusCode::CONFLICT => {
                out.result = StepResult::Unknown;
                out.detail = super::maintenance::unconfirmed(&format!(
                    "PATCH /config on {}: {}",
                    step.member,
                    super::answered(&r)
                ));
            }
            Ok(Some(r)) if r.status != reqwest::StatusCode::OK => {
                out.detail = format!("PATCH /config on {}: {}", step.member, super::answered(&r));
            }
            Ok(Some(_)) => match self.follow(ops, want).await {
                Ok((leader, detail)) => {
                    self.leader = Some(leader);
                    out.result = StepResult::Done;
                    out.detail = detail;
                }
                Err(why) => out.detail = why,
            },
        }
        out.secs = round1(t0.elapsed().as_secs_f64());
        out
    }
}

impl StandbyOp {
    /// Follows the leader until its own `/patroni` shows `want`, running (and, for a
    /// standby leader, replicating).
    async fn follow(&self, ops: &Ops<'_>, want: Role) -> Result<(String, String), String> {
        let mut poll = Poll::new(self.timeout, Duration::from_millis(500));
        while poll.next().await {
            let Ok(s) = ops.source.snapshot(Detail::Lag).await else {
                continue;
            };
            let Some(l) = s.cluster.leader() else {
                continue;
            };
            let me = match api_of(l) {
                Ok(a) => ops.source.member_status(&a).await.ok(),
                Err(_) => None,
            };
            let done = me.as_ref().is_some_and(|m| {
                m.role == want
                    && m.state == pgpatrol_core::State::Running
                    && (want == Role::Leader || m.replication_state.is_some())
            });
            if done {
                let detail = match want {
                    Role::Leader => format!(
                        "{} is the primary and runs: the cluster is writable",
                        l.name
                    ),
                    _ => format!(
                        "{} is the standby leader and replicates ({})",
                        l.name,
                        me.and_then(|m| m.replication_state).unwrap_or_default()
                    ),
                };
                return Ok((l.name.clone(), detail));
            }
            ops.progress.update(
                &l.name,
                &me.map(|m| format!("{}/{}", m.role, m.state))
                    .unwrap_or_else(|| "?".into()),
            );
        }
        Err(format!(
            "the leader did not become {want} within {}",
            humantime::format_duration(self.timeout)
        ))
    }
}
