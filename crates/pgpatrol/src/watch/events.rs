//! The event log of `watch`: events derived from consecutive snapshots (core
//! `events::derive`) and from the watcher's own work (alerts, checks, heals), numbered in
//! one sequence and kept in a bounded ring per cluster (`/events`), sent to every
//! `/events/stream` reader, counted in `pgpatrol_events_total{kind}`, appended to
//! `events.jsonl` beside the state file (rotated), and optionally posted to a webhook.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::sync::broadcast;

use pgpatrol_core::checks::{Check, Status};
use pgpatrol_core::events::{Event, EventKind, EventLog};
use pgpatrol_core::heal::Plan;
use pgpatrol_core::history::{ActionRecord, RecordOutcome};

use super::metrics::KindL;

/// How many events each cluster's ring keeps.
pub const KEEP_PER_CLUSTER: usize = 500;
/// `events.jsonl` is rotated (to `events.jsonl.1`) past this size.
const JOURNAL_MAX: u64 = 8 << 20;

/// `events.jsonl`: one JSON line per event, rotated once past [`JOURNAL_MAX`].
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
}

impl Journal {
    fn open(path: PathBuf) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Journal { path, file, size })
    }

    fn append(&mut self, e: &Event) {
        let Ok(mut line) = serde_json::to_string(e) else {
            return;
        };
        line.push('\n');
        if self.size + line.len() as u64 > JOURNAL_MAX {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            if std::fs::rename(&self.path, &old).is_ok() {
                if let Ok(j) = Journal::open(self.path.clone()) {
                    *self = j;
                }
            }
        }
        match self.file.write_all(line.as_bytes()) {
            Ok(()) => self.size += line.len() as u64,
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot append the event")
            }
        }
    }
}

/// The log, the stream, the journal.
#[derive(Debug)]
pub struct Events {
    log: Mutex<EventLog>,
    tx: broadcast::Sender<Event>,
    journal: Option<Mutex<Journal>>,
    /// Turns true at shutdown: every stream ends, so the server's graceful shutdown does
    /// not wait on a browser that keeps `/events/stream` open.
    closed: tokio::sync::watch::Sender<bool>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            log: Mutex::new(EventLog::new(KEEP_PER_CLUSTER)),
            tx: broadcast::channel(1024).0,
            journal: None,
            closed: tokio::sync::watch::channel(false).0,
        }
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Events {
    /// Appends every event to `events.jsonl` in `dir` too.
    pub fn with_journal(dir: &Path) -> std::io::Result<Self> {
        Ok(Events {
            journal: Some(Mutex::new(Journal::open(dir.join("events.jsonl"))?)),
            ..Default::default()
        })
    }

    /// Numbers `e`, keeps it, counts it, journals it and sends it to the stream readers.
    pub fn emit(&self, e: Event, metrics: &super::metrics::Metrics) {
        let e = locked(&self.log).push(e);
        metrics
            .events
            .get_or_create(&KindL {
                kind: e.kind.as_str().into(),
            })
            .inc();
        tracing::info!(cluster = %e.cluster, kind = e.kind.as_str(), "{}", e.message);
        if let Some(j) = &self.journal {
            locked(j).append(&e);
        }
        // No reader is not an error.
        let _ = self.tx.send(e);
    }

    /// Events after `since`, of `cluster` or all, oldest first, at most `limit`.
    pub fn query(&self, cluster: Option<&str>, since: u64, limit: usize) -> Vec<Event> {
        locked(&self.log).query(cluster, since, limit)
    }

    pub fn last_id(&self) -> u64 {
        locked(&self.log).last_id()
    }

    /// Ends every stream (at shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves when the streams are to end.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// A new reader of the stream: every event emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// What a poller remembers to tell what changed since its last poll, beyond the cluster
/// reading itself (core `events::derive` compares those).
#[derive(Debug, Default)]
pub struct Seen {
    pub unreachable: Option<bool>,
    pub checks: BTreeMap<String, Status>,
    /// Heal records by (member, start), and whether each had finished.
    pub records: BTreeMap<(String, String), bool>,
    pub planned: BTreeSet<String>,
    pub blockers: BTreeSet<String>,
    pub stop: Option<String>,
    /// The heal history has been read once: what it held then (records a restarted watcher
    /// loaded from its state file) is not news.
    pub heal_primed: bool,
}

fn stamp(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Seen {
    /// A poll failed (`Some(error)`) or succeeded: an event when that changed.
    pub fn reachability(
        &mut self,
        cluster: &str,
        error: Option<&str>,
        time: &str,
    ) -> Option<Event> {
        let now_down = error.is_some();
        let was = self.unreachable.replace(now_down);
        match (was, error) {
            (Some(false) | None, Some(e)) => Some(Event::new(
                time,
                cluster,
                None,
                EventKind::Unreachable,
                format!("the cluster cannot be read: {e}"),
            )),
            (Some(true), None) => Some(Event::new(
                time,
                cluster,
                None,
                EventKind::Reachable,
                "the cluster can be read again",
            )),
            _ => None,
        }
    }

    /// doctor's checks at their latest run: an event per check whose status changed (not
    /// on the first run).
    pub fn checks(&mut self, cluster: &str, checks: &[Check], time: &str) -> Vec<Event> {
        let first = self.checks.is_empty();
        let mut out = Vec::new();
        for c in checks {
            let before = self.checks.insert(c.id.to_string(), c.status);
            if let (false, Some(b)) = (first, before) {
                if b != c.status {
                    let word = |s: Status| {
                        serde_json::to_value(s)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    };
                    out.push(
                        Event::new(
                            time,
                            cluster,
                            None,
                            EventKind::CheckChanged,
                            format!(
                                "check {}: {} → {}: {}",
                                c.id,
                                word(b),
                                word(c.status),
                                c.evidence
                            ),
                        )
                        .change(word(b), word(c.status)),
                    );
                }
            }
        }
        out
    }

    /// The heal plan and the heal history: planned, refused, started, finished.
    pub fn heal(
        &mut self,
        cluster: &str,
        plan: Option<&Plan>,
        history: &[ActionRecord],
        stop: Option<String>,
        time: &str,
    ) -> Vec<Event> {
        let mut out = Vec::new();
        if let Some(p) = plan {
            let planned: BTreeSet<String> = p.actions.iter().map(|a| a.member.clone()).collect();
            for a in p
                .actions
                .iter()
                .filter(|a| !self.planned.contains(&a.member))
            {
                out.push(Event::new(
                    time,
                    cluster,
                    Some(&a.member),
                    EventKind::HealPlanned,
                    format!("{} is planned for a rebuild: {}", a.member, a.reason),
                ));
            }
            self.planned = planned;
            let blockers: BTreeSet<String> = p.blockers.iter().map(|b| b.to_string()).collect();
            for b in blockers.difference(&self.blockers) {
                out.push(Event::new(
                    time,
                    cluster,
                    None,
                    EventKind::HealRefused,
                    format!("heal refused: {b}"),
                ));
            }
            self.blockers = blockers;
        }
        let primed = std::mem::replace(&mut self.heal_primed, true);
        for r in history {
            let key = (r.member.clone(), stamp(r.started));
            let done = r.finished.is_some();
            let before = self.records.insert(key, done);
            if !primed {
                continue;
            }
            if before.is_none() {
                out.push(Event::new(
                    &stamp(r.started),
                    cluster,
                    Some(&r.member),
                    EventKind::HealStarted,
                    format!("reinitializing {}", r.member),
                ));
            }
            if done && before != Some(true) {
                let how = match r.outcome {
                    Some(RecordOutcome::Healed) => "healed",
                    Some(RecordOutcome::Failed) => "failed",
                    Some(RecordOutcome::Interrupted) => "interrupted",
                    Some(RecordOutcome::Abandoned) => "abandoned",
                    None => "finished",
                };
                out.push(
                    Event::new(
                        &r.finished.map(stamp).unwrap_or_else(|| time.to_string()),
                        cluster,
                        Some(&r.member),
                        EventKind::HealFinished,
                        format!("the reinitialization of {} {how}", r.member),
                    )
                    .change("running", how),
                );
            }
        }
        if stop != self.stop {
            if let Some(s) = &stop {
                let kind = if s.contains("lease") {
                    EventKind::LeaseLost
                } else {
                    EventKind::HealRefused
                };
                out.push(Event::new(
                    time,
                    cluster,
                    None,
                    kind,
                    format!("heal stopped: {s}"),
                ));
            }
            self.stop = stop;
        }
        out
    }
}

/// What the page and the event derivation need of a cluster's configuration: the lag and
/// tolerance its events and its health are judged by, and a standby cluster's source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PageSettings {
    /// Bytes: heal's tolerance, else the SLO's threshold, else 5 MB.
    pub tolerance: u64,
    pub lag: pgpatrol_core::LagKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Its REST URLs as configured (to link a standby cluster to a watched source).
    pub urls: Vec<String>,
}

impl PageSettings {
    pub fn of(c: &super::config::ClusterConfig) -> Self {
        let (tolerance, lag) = match (&c.heal, &c.slo) {
            (Some(h), _) => (h.tolerance.0, h.lag),
            (None, Some(s)) => (s.threshold.0, s.lag),
            (None, None) => (5 << 20, pgpatrol_core::LagKind::Replay),
        };
        PageSettings {
            tolerance,
            lag,
            source: c.source.clone(),
            urls: c.access.urls.clone(),
        }
    }
}

/// Posts every event (as JSON) to `url` until shutdown; one at a time, 5 s each, a failure
/// logged and counted in `pgpatrol_event_webhook_failures_total` (events are not retried:
/// the log and the journal keep them).
pub async fn post_to(
    url: String,
    shared: std::sync::Arc<super::Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut rx = shared.events.subscribe();
    let http = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "event webhook: cannot build the HTTP client");
            return;
        }
    };
    loop {
        let e = tokio::select! {
            _ = shutdown.changed() => return,
            e = rx.recv() => match e {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    shared.metrics.event_webhook_failures.inc_by(n);
                    tracing::warn!(missed = n, "event webhook: too slow, events skipped");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let sent = http.post(&url).json(&e).send().await;
        let failed = match sent {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("HTTP {}", r.status().as_u16())),
            Err(err) => Some(err.to_string()),
        };
        if let Some(why) = failed {
            shared.metrics.event_webhook_failures.inc();
            tracing::warn!(url = %url, error = %why, "event webhook: not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_heal_is_started_then_finished_and_old_records_are_not_news() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut old = ActionRecord::starting("pg2", t0);
        old.finish(RecordOutcome::Healed, t0 + Duration::from_secs(30));
        let mut seen = Seen::default();
        // A restarted watcher's first poll: the history from its state file says nothing.
        assert!(seen
            .heal("demo", None, &[old.clone()], None, "T")
            .is_empty());
        let mut run = ActionRecord::starting("pg1", t0 + Duration::from_secs(60));
        let es = seen.heal("demo", None, &[old.clone(), run.clone()], None, "T");
        let kinds: Vec<EventKind> = es.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventKind::HealStarted]);
        run.finish(RecordOutcome::Failed, t0 + Duration::from_secs(90));
        let es = seen.heal("demo", None, &[old, run], None, "T");
        assert_eq!(es.len(), 1);
        assert_eq!(es[0].kind, EventKind::HealFinished);
        assert!(es[0].message.ends_with("failed"), "{}", es[0].message);
        let lost = seen.heal(
            "demo",
            None,
            &[],
            Some("lease_lost: renewal failed".into()),
            "T",
        );
        assert_eq!(lost[0].kind, EventKind::LeaseLost);
    }
}
