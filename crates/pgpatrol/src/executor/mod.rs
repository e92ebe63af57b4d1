//! The executor: carries out one reinitialization through Patroni's REST API and watches it
//! to the end. It never sends `force` over a reinit in progress unless told to, and stops
//! waiting when the leader goes away.

use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use serde::Serialize;

use pgpatrol_core::{Lag, LagKind, PatroniVersion, State};

use crate::poll::Poll;
use crate::source::http::{base_url, HttpError, Request};
use crate::source::{ClusterSource, Detail};

pub mod runner;

/// How to run and wait for a reinitialization.
#[derive(Debug, Clone)]
pub struct ReinitOptions {
    /// Done when the member streams with lag below this many bytes.
    pub tolerance: u64,
    pub lag: LagKind,
    /// Give up waiting after this long.
    pub timeout: Duration,
    /// How often to poll the member's `/patroni`.
    pub poll: Duration,
    /// Send `{"force": true}` (cancels whatever Patroni is doing on that member).
    pub force: bool,
    /// Wait until the member is healthy again.
    pub wait: bool,
    /// Send `{"from_leader": true}`: take the basebackup from the leader, not from a replica
    /// tagged `clonefrom` (Patroni 4.1+; refused on older members, which would ignore it).
    pub from_leader: bool,
    /// Who asks (`heal`, `reinit`, `auto-heal`): the audit line's operation.
    pub caller: &'static str,
    /// Where the `POST /reinitialize` is recorded.
    pub audit: std::sync::Arc<crate::audit::Audit>,
}

/// How one reinitialization ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReinitResult {
    /// Rebuilt and streaming again with lag below the tolerance.
    Healed,
    /// Patroni accepted the request; not waited for.
    Started,
    /// Patroni refused (e.g. "I am the leader, can not reinitialize").
    Refused,
    /// Not healthy within the timeout.
    TimedOut,
    /// The leader went away or changed while waiting: stopped acting.
    LeaderLost,
    /// The request failed (network, auth, unexpected answer).
    Failed,
    /// Stopped watching it (the heal lease was lost): Patroni finishes it on its own.
    Abandoned,
    /// The request got no answer and nobody waited (`--no-wait`): whether Patroni runs it
    /// is not known.
    Unknown,
}

/// The record of one reinitialization, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct ReinitOutcome {
    pub member: String,
    pub result: ReinitResult,
    /// What happened, in words.
    pub detail: String,
    /// A reinit was already running: we waited for it instead of forcing a new one.
    pub joined_running: bool,
    pub started: String,
    pub duration_secs: f64,
    /// The states the member went through, as its `/patroni` reported them.
    pub states: Vec<String>,
}

impl ReinitOutcome {
    /// An action its healer stopped watching, started at `started`.
    pub fn abandoned(member: &str, started: SystemTime, detail: &str) -> Self {
        ReinitOutcome {
            member: member.to_string(),
            result: ReinitResult::Abandoned,
            detail: detail.to_string(),
            joined_running: false,
            started: humantime::format_rfc3339_millis(started).to_string(),
            duration_secs: started
                .elapsed()
                .map(|d| (d.as_secs_f64() * 10.0).round() / 10.0)
                .unwrap_or_default(),
            states: Vec::new(),
        }
    }
}

/// Live progress, for a spinner or a log line.
pub use crate::progress::{Progress, Quiet};

/// What heal and auto-heal read before every decision: the cluster, and on each replica
/// at or above the tolerance what keeps it behind on purpose (`source::kept`).
pub struct HealReader<'a> {
    pub source: &'a ClusterSource,
    pub lag: LagKind,
    pub tolerance: u64,
    /// A PostgreSQL login, to read `recovery_min_apply_delay` on the members themselves.
    pub login: Option<crate::source::pg::PgLogin>,
}

impl HealReader<'_> {
    /// Fills `kept` on the candidates of a cluster already read.
    pub async fn kept(&self, cluster: &mut pgpatrol_core::Cluster) {
        crate::source::kept::read(
            self.source,
            cluster,
            self.lag,
            self.tolerance,
            self.login.as_ref(),
        )
        .await;
    }
}

impl runner::ClusterReader for HealReader<'_> {
    async fn read(&self) -> Result<pgpatrol_core::Cluster, crate::source::SourceError> {
        let mut c = self.source.snapshot(Detail::Full).await?.cluster;
        self.kept(&mut c).await;
        Ok(c)
    }
}

/// The REST executor as the plan runner drives it.
pub struct RestReinit<'a> {
    pub source: &'a ClusterSource,
    pub opts: ReinitOptions,
    pub progress: &'a dyn Progress,
}

impl runner::Reinitializer for RestReinit<'_> {
    async fn reinitialize(
        &self,
        member: &pgpatrol_core::Member,
        leader: Option<&pgpatrol_core::Member>,
    ) -> ReinitOutcome {
        reinitialize(
            self.source,
            &member.name,
            member.api_url.as_deref().unwrap_or_default(),
            leader.and_then(|l| l.api_url.as_deref()),
            &self.opts,
            self.progress,
        )
        .await
    }
}

/// `POST /reinitialize` reads `from_leader` from this version on.
const FROM_LEADER_SINCE: PatroniVersion = PatroniVersion::new(4, 1, 0);

/// Reinitializes `member` (whose API is at `api_url`), with `leader_api` the leader's API, and
/// (if asked) waits until it streams again below the tolerance.
pub async fn reinitialize(
    source: &ClusterSource,
    member: &str,
    api_url: &str,
    leader_api: Option<&str>,
    opts: &ReinitOptions,
    progress: &dyn Progress,
) -> ReinitOutcome {
    let t0 = Instant::now();
    let mut out = ReinitOutcome {
        member: member.to_string(),
        result: ReinitResult::Failed,
        detail: String::new(),
        joined_running: false,
        started: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        duration_secs: 0.0,
        states: Vec::new(),
    };
    let finish = |mut out: ReinitOutcome, result: ReinitResult, detail: String| {
        out.result = result;
        out.detail = detail;
        out.duration_secs = (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        out
    };
    let base = match base_url(api_url) {
        Ok(b) => b,
        Err(e) => return finish(out, ReinitResult::Failed, e.to_string()),
    };
    let before = source.member_status(api_url).await.ok();
    let start_time_before = before
        .as_ref()
        .and_then(|s| s.postmaster_start_time.clone());

    let mut body = serde_json::json!({ "force": opts.force });
    if opts.from_leader {
        // Patroni < 4.1 ignores the key and may clone from a replica: say so, do nothing.
        match before.as_ref().and_then(|s| s.version) {
            Some(v) if v >= FROM_LEADER_SINCE => body["from_leader"] = true.into(),
            seen => {
                let runs = seen.map_or("an unknown version".to_string(), |v| v.to_string());
                return finish(
                    out,
                    ReinitResult::Refused,
                    format!("--from-leader needs Patroni {FROM_LEADER_SINCE} or later on {member}, which runs {runs}: older Patroni ignores it; nothing was done"),
                );
            }
        }
    }
    progress.update(member, "asking Patroni to reinitialize");
    let req = Request::post(&base, "/reinitialize", body);
    let (answer, _) = crate::audit::send(source, &opts.audit, opts.caller, member, &req).await;
    // No answer is not "not done": Patroni holds this request until its async executor is
    // free (up to a whole HA cycle on a slow DCS) and may run it after the client gave up.
    let mut unanswered = false;
    match answer {
        Ok(resp) if resp.status == StatusCode::OK => {}
        Ok(resp)
            if resp.status == StatusCode::SERVICE_UNAVAILABLE
                && resp
                    .body
                    .trim()
                    .ends_with("reinitialize already in progress") =>
        {
            // Patroni is already busy with this member. Forcing would cancel a running
            // basebackup (patroni#3220): wait for it instead.
            out.joined_running = true;
            progress.update(
                member,
                &format!("Patroni says \"{}\": waiting for it", resp.body.trim()),
            );
        }
        Ok(resp) if resp.status == StatusCode::SERVICE_UNAVAILABLE => {
            return finish(
                out,
                ReinitResult::Refused,
                format!("Patroni refused: {}", resp.body.trim()),
            );
        }
        Ok(resp) => {
            let body = crate::text::snippet(&resp.body);
            return finish(
                out,
                ReinitResult::Failed,
                format!(
                    "POST {} answered HTTP {}: {body}",
                    req.url(),
                    resp.status.as_u16()
                ),
            );
        }
        // The request went out and no answer came: whether Patroni runs it is unknown
        // until the member's own state shows it. The record stays open meanwhile (its slot
        // held), bounded by the timeout.
        Err(e @ (HttpError::Timeout { .. } | HttpError::NotHttp { .. })) => {
            unanswered = true;
            progress.update(
                member,
                &format!("no answer to POST /reinitialize ({e}): watching whether Patroni runs it"),
            );
        }
        Err(e) => return finish(out, ReinitResult::Failed, e.to_string()),
    }
    if !opts.wait && unanswered {
        return finish(
            out,
            ReinitResult::Unknown,
            "POST /reinitialize got no answer: whether Patroni runs it is unknown".to_string(),
        );
    }
    if !opts.wait {
        let what = if out.joined_running {
            "a reinitialization was already running"
        } else {
            "reinitialization started"
        };
        return finish(out, ReinitResult::Started, what.to_string());
    }

    let deadline = t0 + opts.timeout;
    // Done means a rebuilt member: we saw it leave "running", or its postmaster restarted
    // (since the reading taken before the request). Never on the word of an answer alone:
    // a joined reinit, or one whose request got no answer, counts only once the member
    // shows it ran.
    let mut transitioned = false;
    let mut leader_failures = 0u32;
    // What /cluster showed on the last poll where the member itself was back (None when it
    // was not), and the last such message shown as progress.
    let mut last_view: Option<String> = None;
    let mut last_error: Option<String> = None;
    let mut shown_view: Option<String> = None;
    let mut poll = Poll::until(deadline, opts.poll);
    while poll.next().await {
        let (status, leader) = match leader_api {
            Some(l) => {
                let (s, l) = tokio::join!(source.member_status(api_url), source.member_status(l));
                (s, Some(l))
            }
            None => (source.member_status(api_url).await, None),
        };
        // The leader must stay the leader: if it goes away, stop acting and say so.
        let leader_status = match leader {
            Some(Ok(l)) if l.is_running_leader() => {
                leader_failures = 0;
                Some(l)
            }
            Some(Ok(l)) => {
                let (role, state) = (l.role, l.state);
                return finish(out, ReinitResult::LeaderLost, format!("the leader stopped being leader while waiting (role {role}, state {state}): stopped acting"));
            }
            Some(Err(e)) => {
                leader_failures += 1;
                if leader_failures >= 3 {
                    return finish(
                        out,
                        ReinitResult::LeaderLost,
                        format!("the leader stopped answering while waiting ({e}): stopped acting"),
                    );
                }
                None
            }
            None => None,
        };
        last_view = None;
        last_error = status.as_ref().err().map(ToString::to_string);
        if let Ok(s) = &status {
            let state = match (&s.state, &s.replication_state) {
                (State::Running, Some(rs)) => format!("running/{rs}"),
                (st, _) => st.to_string(),
            };
            if out.states.last() != Some(&state) {
                progress.update(member, &state);
                out.states.push(state.clone());
            }
            if s.state != State::Running {
                transitioned = true;
            }
            let restarted =
                s.postmaster_start_time.is_some() && s.postmaster_start_time != start_time_before;
            let streaming = s.state == State::Running && s.says_streaming();
            if (transitioned || restarted) && streaming {
                if let Some(lag) = leader_status
                    .as_ref()
                    .and_then(|l| s.lag_behind(l, opts.lag))
                {
                    if lag < opts.tolerance {
                        // The member says it is back; done once the cluster view (the DCS,
                        // what /cluster, failover and the next heal read) says so too. It
                        // lags the member's own /patroni by up to a Patroni loop.
                        match cluster_view(source, member, opts).await {
                            Ok(()) => {
                                let detail = format!(
                                    "streaming again, {} lag {}{}",
                                    opts.lag.as_str(),
                                    pgpatrol_core::units::human(lag),
                                    if unanswered {
                                        " (POST /reinitialize got no answer; the member shows it ran)"
                                    } else {
                                        ""
                                    }
                                );
                                return finish(out, ReinitResult::Healed, detail);
                            }
                            Err(seen) => {
                                if shown_view.as_ref() != Some(&seen) {
                                    progress.update(
                                        member,
                                        &format!("waiting for the cluster view ({seen})"),
                                    );
                                    shown_view = Some(seen.clone());
                                }
                                last_view = Some(seen);
                            }
                        }
                    }
                }
            }
        }
    }
    let last = out
        .states
        .last()
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    let why = match (last_error, last_view) {
        (Some(e), _) => format!("; last error: {e}"),
        (None, Some(view)) => format!("; the cluster view still shows {view}"),
        (None, None) => String::new(),
    };
    // An unanswered request the member never showed running did not run: failed.
    let (result, what) = if unanswered && !transitioned {
        (
            ReinitResult::Failed,
            "POST /reinitialize got no answer and the member showed no rebuild within",
        )
    } else {
        (
            ReinitResult::TimedOut,
            "not streaming below the tolerance after",
        )
    };
    finish(
        out,
        result,
        format!(
            "{what} {} (last state {last}{why})",
            humantime::format_duration(opts.timeout)
        ),
    )
}

/// `Ok` when `/cluster` lists `member` as a healthy replica with a known lag below the
/// tolerance; otherwise what it shows instead.
async fn cluster_view(
    source: &ClusterSource,
    member: &str,
    opts: &ReinitOptions,
) -> Result<(), String> {
    let snap = source
        .snapshot(Detail::Lag)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let m = snap
        .cluster
        .member(member)
        .ok_or_else(|| format!("no member {member}"))?;
    if m.is_back(opts.lag, opts.tolerance) {
        return Ok(());
    }
    if !m.state.is_healthy_replica() {
        return Err(format!("state {}", m.state));
    }
    // Not caught up, though replicating: its lag is too high or unknown.
    let lag = match m.lag(opts.lag) {
        Some(Lag::Bytes(b)) => pgpatrol_core::units::human(b),
        _ => "unknown".to_string(),
    };
    Err(format!("{} lag {lag}", opts.lag.as_str()))
}

#[cfg(test)]
mod tests {
    //! The executor against a fake Patroni on loopback: a member whose own `/patroni` is
    //! back before the cluster view (`/cluster`, from the DCS) says so.

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use serde_json::{json, Value};

    use super::*;
    use crate::source::http::Http;

    /// `/cluster` shows the member "creating replica" for this many reads after the reinit.
    struct Fake {
        posted: AtomicBool,
        stale_reads: usize,
        cluster_reads: AtomicUsize,
        /// The member's Patroni version, in its `/patroni`.
        version: &'static str,
        /// The body of the `POST /reinitialize`, if one came.
        body: Mutex<Option<Value>>,
        /// `replication_state` in the member's `/patroni` (absent before Patroni 3.0.4).
        replication_state: Option<&'static str>,
    }

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    async fn member_status(State(f): State<Arc<Fake>>) -> Json<Value> {
        let started = if f.posted.load(Ordering::SeqCst) {
            "after"
        } else {
            "before"
        };
        let mut status = json!({"state": "running", "role": "replica",
            "postmaster_start_time": started, "patroni": {"version": f.version, "scope": "demo"},
            "xlog": {"received_location": 1000, "replayed_location": 1000}});
        if let Some(rs) = f.replication_state {
            status["replication_state"] = json!(rs);
        }
        Json(status)
    }

    async fn reinit(State(f): State<Arc<Fake>>, Json(body): Json<Value>) -> &'static str {
        *f.body.lock().unwrap() = Some(body);
        f.posted.store(true, Ordering::SeqCst);
        "reinitialize started"
    }

    async fn cluster(State(f): State<Arc<Fake>>) -> Json<Value> {
        let n = f.cluster_reads.fetch_add(1, Ordering::SeqCst);
        let state = if n < f.stale_reads {
            "creating replica"
        } else {
            "streaming"
        };
        let lag = if n < f.stale_reads {
            json!("unknown")
        } else {
            json!(0)
        };
        Json(json!({"scope": "demo", "members": [
            {"name": "pg0", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:1/patroni", "timeline": 1},
            {"name": "pg1", "role": "replica", "state": state, "api_url": "http://127.0.0.1:1/patroni",
             "receive_lag": lag, "replay_lag": lag, "lag": lag, "lsn": "0/3E8"}]}))
    }

    async fn leader_status() -> Json<Value> {
        Json(json!({"state": "running", "role": "primary", "xlog": {"location": 1000}}))
    }

    async fn run(
        stale_reads: usize,
        timeout: Duration,
        version: &'static str,
        from_leader: bool,
    ) -> (ReinitOutcome, Arc<Fake>) {
        run_with(
            stale_reads,
            timeout,
            version,
            from_leader,
            Some("streaming"),
        )
        .await
    }

    async fn run_with(
        stale_reads: usize,
        timeout: Duration,
        version: &'static str,
        from_leader: bool,
        replication_state: Option<&'static str>,
    ) -> (ReinitOutcome, Arc<Fake>) {
        let fake = Arc::new(Fake {
            posted: AtomicBool::new(false),
            stale_reads,
            cluster_reads: AtomicUsize::new(0),
            version,
            body: Mutex::new(None),
            replication_state,
        });
        let member = serve(
            Router::new()
                .route("/patroni", get(member_status))
                .route("/reinitialize", post(reinit))
                .with_state(Arc::clone(&fake)),
        )
        .await;
        let leader = serve(
            Router::new()
                .route("/patroni", get(leader_status))
                .route("/cluster", get(cluster))
                .with_state(Arc::clone(&fake)),
        )
        .await;
        let source = ClusterSource::new(
            Http::new(&Default::default()).unwrap(),
            std::slice::from_ref(&leader),
        )
        .unwrap();
        let opts = ReinitOptions {
            tolerance: 1024 * 1024,
            lag: LagKind::Replay,
            timeout,
            poll: Duration::from_millis(20),
            force: false,
            wait: true,
            from_leader,
            caller: "test",
            audit: Default::default(),
        };
        let out = reinitialize(&source, "pg1", &member, Some(&leader), &opts, &Quiet).await;
        (out, fake)
    }

    /// Regression (found by the compatibility topic on 2.1.7): Patroni before 3.0.4 never
    /// says `replication_state`, and heal waited for it until its 10 minutes ran out.
    #[tokio::test]
    async fn before_patroni_3_0_4_a_running_replica_caught_up_is_healed() {
        for version in ["2.1.7", "3.0.2"] {
            let (out, _) = run_with(0, Duration::from_secs(30), version, false, None).await;
            assert_eq!(out.result, ReinitResult::Healed, "{version}: {out:?}");
        }
    }

    #[tokio::test]
    async fn from_patroni_3_0_4_running_without_streaming_is_not_healed() {
        for rs in [None, Some("stopped")] {
            let (out, _) = run_with(0, Duration::from_millis(500), "4.1.5", false, rs).await;
            assert_eq!(out.result, ReinitResult::TimedOut, "{rs:?}: {out:?}");
        }
    }

    #[tokio::test]
    async fn healed_only_once_the_cluster_view_agrees() {
        let (out, fake) = run(5, Duration::from_secs(30), "4.1.5", false).await;
        assert_eq!(out.result, ReinitResult::Healed, "{out:?}");
        let reads = fake.cluster_reads.load(Ordering::SeqCst);
        // Five stale views first: healed only on a later one.
        assert!(reads > 5, "healed after {reads} views of /cluster");
        let body = fake.body.lock().unwrap().clone();
        assert_eq!(body, Some(json!({"force": false})));
    }

    #[tokio::test]
    async fn a_cluster_view_that_never_agrees_times_out_and_says_so() {
        let (out, _) = run(usize::MAX, Duration::from_millis(500), "4.1.5", false).await;
        assert_eq!(out.result, ReinitResult::TimedOut, "{out:?}");
        assert!(
            out.detail
                .contains("the cluster view still shows state creating replica"),
            "{}",
            out.detail
        );
    }

    #[tokio::test]
    async fn from_leader_is_sent_to_patroni_4_1() {
        let (out, fake) = run(0, Duration::from_secs(30), "4.1.5", true).await;
        assert_eq!(out.result, ReinitResult::Healed, "{out:?}");
        let body = fake.body.lock().unwrap().clone();
        assert_eq!(body, Some(json!({"force": false, "from_leader": true})));
    }

    #[tokio::test]
    async fn from_leader_is_refused_before_patroni_4_1_and_nothing_is_sent() {
        for version in ["3.0.4", "4.0.7", "not-a-version"] {
            let (out, fake) = run(0, Duration::from_secs(30), version, true).await;
            assert_eq!(out.result, ReinitResult::Refused, "{out:?}");
            assert!(
                out.detail.contains("needs Patroni 4.1.0 or later"),
                "{}",
                out.detail
            );
            assert!(fake.body.lock().unwrap().is_none(), "nothing was POSTed");
        }
    }
}
