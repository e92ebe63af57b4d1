//! Operations a DBA runs with patronictl (switchover, failover, pause/resume, restart,
//! reload, edit-config, flush), done so that their result can be trusted: checked before
//! the request, followed in the DCS after it, audited, and with an exit code that says
//! what happened. The command-line half is in `cli::ops`; this half knows no flags.

pub mod config;
pub mod maintenance;
pub mod remove;
pub mod restart;
pub mod runner;
pub mod slot;
pub mod standby;
pub mod switchover;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::audit::{self, Audit};
use crate::progress::Progress;
use crate::source::http::{base_url, HttpError, Request, Response};
use crate::source::ClusterSource;
use pgpatrol_core::{Cluster, Member};

/// A request as sent (or, in a dry run, as it would have been).
#[derive(Debug, Clone, Serialize)]
pub struct SentRequest {
    pub member: String,
    pub method: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// None in a dry run or when no answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// A dry run's line, on stdout as the request would have gone. A write that fails here (a
/// closed pipe: `pgpatrol restart --dry-run | head -1`) is not this step's to report: the
/// command writes its report next, to the same stdout, and that write's error ends it (a
/// closed pipe quietly, see `cli::fail`).
fn dry_run_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Sends an operation's requests: audits each one, or only prints it in a dry run.
pub struct Ops<'a> {
    pub source: &'a ClusterSource,
    pub dry_run: bool,
    pub audit: &'a Audit,
    pub operation: &'static str,
    pub progress: &'a dyn Progress,
    /// The result goes out as JSON (which lists the requests): dry-run lines stay off stdout.
    json: bool,
    sent: Mutex<Vec<SentRequest>>,
}

impl<'a> Ops<'a> {
    pub fn new(
        source: &'a ClusterSource,
        operation: &'static str,
        dry_run: bool,
        audit: &'a Audit,
        progress: &'a dyn Progress,
    ) -> Self {
        Ops {
            source,
            dry_run,
            audit,
            operation,
            progress,
            json: false,
            sent: Mutex::new(Vec::new()),
        }
    }

    /// The result is printed as JSON: a dry run's requests appear only there.
    pub fn json(self, json: bool) -> Self {
        Ops { json, ..self }
    }

    /// Every request sent so far (or printed, in a dry run).
    pub fn sent(&self) -> Vec<SentRequest> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sends `req` to `member`. `Ok(None)` in a dry run (the request is printed to stdout).
    pub async fn send(&self, member: &str, req: Request) -> Result<Option<Response>, HttpError> {
        let mut record = SentRequest {
            member: member.to_string(),
            method: req.method.to_string(),
            url: req.url(),
            body: req.body.as_ref().map(audit::redact),
            status: None,
            answer: None,
        };
        if self.dry_run {
            let body = record
                .body
                .as_ref()
                .map(|b| format!(" {b}"))
                .unwrap_or_default();
            if !self.json {
                dry_run_line(format_args!(
                    "dry run: would send {} {}{body}",
                    record.method, record.url
                ));
            }
            self.push(record);
            return Ok(None);
        }
        let (result, answer) =
            audit::send(self.source, self.audit, self.operation, member, &req).await;
        if let Ok(resp) = &result {
            record.status = Some(resp.status.as_u16());
        }
        record.answer = Some(answer);
        self.push(record);
        result.map(Some)
    }

    /// Runs `statement` on `member`'s PostgreSQL (`target`, a `postgresql://host:port`) through
    /// `run`, audited; in a dry run it is printed instead and `run` is never polled.
    /// `Ok(None)` in a dry run, else what `run` said.
    pub async fn send_sql<F>(
        &self,
        member: &str,
        target: &str,
        statement: &str,
        run: F,
    ) -> Result<Option<String>, String>
    where
        F: std::future::Future<Output = Result<String, String>>,
    {
        self.send_other(
            "SQL",
            member,
            target,
            serde_json::json!({ "sql": statement }),
            &format!("run on {member} ({target}): {statement}"),
            run,
        )
        .await
    }

    /// A write that is not a Patroni request (`method` "SQL" on PostgreSQL, "DCS" on the
    /// DCS), carried by `run`: audited with `body`, listed with the requests; in a dry run
    /// "dry run: would `what`" is printed instead and `run` is never polled.
    pub async fn send_other<F>(
        &self,
        method: &str,
        member: &str,
        target: &str,
        body: serde_json::Value,
        what: &str,
        run: F,
    ) -> Result<Option<String>, String>
    where
        F: std::future::Future<Output = Result<String, String>>,
    {
        let mut record = SentRequest {
            member: member.to_string(),
            method: method.into(),
            url: target.to_string(),
            body: Some(body.clone()),
            status: None,
            answer: None,
        };
        if self.dry_run {
            if !self.json {
                dry_run_line(format_args!("dry run: would {what}"));
            }
            self.push(record);
            return Ok(None);
        }
        let result = run.await;
        let answer = match &result {
            Ok(a) | Err(a) => a.clone(),
        };
        self.audit
            .record_write(self.operation, member, method, target, &body, &answer);
        record.answer = Some(answer);
        self.push(record);
        result.map(Some)
    }

    fn push(&self, r: SentRequest) {
        if let Ok(mut s) = self.sent.lock() {
            s.push(r);
        }
    }

    /// `PATCH /config` to the leader, or (when it does not answer) to each other member in
    /// turn: any member writes the dynamic configuration to the DCS. Returns who answered.
    pub async fn patch_config(
        &self,
        cluster: &Cluster,
        body: serde_json::Value,
    ) -> anyhow::Result<(String, Option<Response>)> {
        let mut order: Vec<&Member> = cluster.leaders().collect();
        order.extend(cluster.replicas());
        let mut last = None;
        for m in order {
            let Ok(base) = api_of(m) else { continue };
            match self
                .send(&m.name, Request::patch(&base, "/config", body.clone()))
                .await
            {
                Ok(r) => return Ok((m.name.clone(), r)),
                Err(e @ (HttpError::Connect { .. } | HttpError::Timeout { .. })) => {
                    self.progress
                        .update(&m.name, &format!("{e}; trying the next member"));
                    last = Some(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        match last {
            Some(e) => Err(anyhow::anyhow!("no member took PATCH /config: {e}")),
            None => Err(anyhow::anyhow!(
                "no member has an api_url to send PATCH /config to"
            )),
        }
    }

    /// Reads the cluster (fresh, with each member's own figures).
    pub async fn read(&self) -> Result<Cluster, crate::source::SourceError> {
        Ok(self
            .source
            .snapshot(crate::source::Detail::Full)
            .await?
            .cluster)
    }

    /// The cluster, read again for a step's re-check.
    pub async fn reread(&self) -> Result<Cluster, runner::Recheck> {
        self.read()
            .await
            .map_err(|e| runner::Recheck::read("the cluster", &e))
    }
}

/// The member a step sends to (or relies on) must answer its own `GET /patroni` first:
/// `/cluster` keeps a hung or cut-off member's key (and its last state) for up to a ttl, and
/// a restart sent to it would wait out `--timeout` (5 minutes) before the run could stop.
/// Seen under the fault matrix's observer (a member's Patroni SIGSTOPped before a rolling
/// restart reached it).
pub async fn answers(ops: &Ops<'_>, m: &Member) -> Result<(), runner::Recheck> {
    let api = api_of(m).map_err(|e| runner::Recheck::Refused(e.to_string()))?;
    ops.source.member_status(&api).await.map(|_| ()).map_err(|e| {
        runner::Recheck::Silent(format!(
            "{}'s Patroni does not answer GET /patroni ({e}): it may be hung or cut off; nothing is sent to it",
            m.name
        ))
    })
}

/// An answer Patroni gave that was not the one asked for, as one line.
pub fn answered(r: &Response) -> String {
    format!(
        "Patroni answered HTTP {}: {}",
        r.status.as_u16(),
        crate::text::snippet(r.body.trim())
    )
}

/// A member's REST base URL, or a clear error.
pub fn api_of(m: &Member) -> anyhow::Result<String> {
    let raw = m
        .api_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("{} has no api_url in /cluster: cannot reach it", m.name))?;
    Ok(base_url(raw)?)
}

/// The REST base URL of `name` in the reading a step's re-check took (`None`: none was).
pub fn api_in(read: Option<Cluster>, name: &str) -> anyhow::Result<String> {
    let c = read.ok_or_else(|| anyhow::anyhow!("the cluster was not read"))?;
    api_of(
        c.member(name)
            .ok_or_else(|| anyhow::anyhow!("{name} is not a member"))?,
    )
}

/// The member named `name`, or an error that lists the members.
pub fn member<'c>(cluster: &'c Cluster, name: &str) -> anyhow::Result<&'c Member> {
    cluster.member(name).ok_or_else(|| {
        let names: Vec<&str> = cluster.members.iter().map(|m| m.name.as_str()).collect();
        anyhow::anyhow!(
            "no member named {name:?} in the cluster (members: {})",
            names.join(", ")
        )
    })
}

/// A time for `--scheduled`: ISO 8601 / RFC 3339 with an explicit zone (`Z` or an offset),
/// in the future. A bare time is refused, never read in the local zone.
pub fn parse_schedule(raw: &str, now: jiff::Timestamp) -> anyhow::Result<jiff::Timestamp> {
    let raw = raw.trim();
    let ts: jiff::Timestamp = match raw.parse() {
        Ok(ts) => ts,
        Err(e) => {
            if raw.parse::<jiff::civil::DateTime>().is_ok() {
                anyhow::bail!("--scheduled {raw:?} has no time zone: write it with one, e.g. {raw}Z or {raw}+01:00 (pgpatrol never assumes the local zone)");
            }
            anyhow::bail!("--scheduled {raw:?} is not an ISO 8601 time with a zone (e.g. 2026-12-01T18:00:00Z): {e}");
        }
    };
    if ts <= now {
        anyhow::bail!("--scheduled {raw} is in the past (now is {now}): give a future time");
    }
    Ok(ts)
}

/// How long no member said it was a running, writable leader, measured by polling every
/// member's own `/patroni` every 100 ms while an operation runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WriteGap {
    /// The longest stretch without a writable leader, seconds.
    pub longest_secs: f64,
    /// All such stretches together, seconds.
    pub total_secs: f64,
    /// How many polls were made.
    pub polls: u64,
}

/// Polls `apis` until `done` is set; returns the gaps in writability it saw.
pub async fn measure_writability(
    source: &ClusterSource,
    apis: &[String],
    done: &AtomicBool,
) -> WriteGap {
    let mut gap = WriteGap::default();
    let mut lost_at: Option<Instant> = None;
    let per_call = Duration::from_millis(400);
    loop {
        let stop = done.load(Ordering::SeqCst);
        let t = Instant::now();
        let polls = apis.iter().map(|a| async move {
            tokio::time::timeout(per_call, source.member_status(a))
                .await
                .ok()
                .and_then(Result::ok)
        });
        let statuses = futures::future::join_all(polls).await;
        gap.polls += 1;
        let writable = statuses.iter().flatten().any(|s| {
            s.role == pgpatrol_core::Role::Leader && s.state == pgpatrol_core::State::Running
        });
        match (writable, lost_at) {
            (false, None) => lost_at = Some(t),
            (true, Some(since)) => {
                let d = t.duration_since(since).as_secs_f64();
                gap.total_secs += d;
                gap.longest_secs = gap.longest_secs.max(d);
                lost_at = None;
            }
            _ => {}
        }
        if stop {
            if let Some(since) = lost_at {
                let d = t.duration_since(since).as_secs_f64();
                gap.total_secs += d;
                gap.longest_secs = gap.longest_secs.max(d);
            }
            gap.longest_secs = round1(gap.longest_secs);
            gap.total_secs = round1(gap.total_secs);
            return gap;
        }
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(t.elapsed())).await;
    }
}

/// Runs `op` while measuring writability; returns both.
pub async fn with_write_gap<T>(
    source: &ClusterSource,
    apis: &[String],
    op: impl std::future::Future<Output = T>,
) -> (T, WriteGap) {
    let done = AtomicBool::new(false);
    let run = async {
        let out = op.await;
        done.store(true, Ordering::SeqCst);
        out
    };
    tokio::join!(run, measure_writability(source, apis, &done))
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Every member's REST base URL (those that have one).
pub fn all_apis(cluster: &Cluster) -> Vec<String> {
    cluster
        .members
        .iter()
        .filter_map(|m| api_of(m).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_need_a_zone_and_the_future() {
        let now: jiff::Timestamp = "2026-12-01T15:00:00Z".parse().unwrap();
        let ts = parse_schedule("2026-12-01T18:00:00+01:00", now).unwrap();
        assert_eq!(ts.to_string(), "2026-12-01T17:00:00Z");
        assert!(parse_schedule("2026-12-01T18:00:00Z", now).is_ok());
        let bare = parse_schedule("2026-12-01T18:00", now)
            .unwrap_err()
            .to_string();
        assert!(bare.contains("has no time zone"), "{bare}");
        let past = parse_schedule("2026-12-01T14:00:00Z", now)
            .unwrap_err()
            .to_string();
        assert!(past.contains("in the past"), "{past}");
        let junk = parse_schedule("tomorrow", now).unwrap_err().to_string();
        assert!(junk.contains("not an ISO 8601 time"), "{junk}");
    }
}
