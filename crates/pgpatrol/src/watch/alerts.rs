//! Alert delivery: to Alertmanager's v2 API (`POST /api/v2/alerts`) and/or a plain JSON
//! webhook. Firing alerts are re-sent every minute (Alertmanager resolves alerts it stops
//! hearing about after `resolve_timeout`); a resolved alert is sent once with `endsAt`.
//!
//! Pollers hand alerts to a bounded [`AlertQueue`] that never waits: when it is full (a dead
//! or slow Alertmanager), the oldest queued alert is dropped and counted
//! (`pgpatrol_alerts_dropped_total`). One task sends, each request with a timeout, off the
//! poll path: no receiver, however dead, holds up polling.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Notify;

/// How long one request to Alertmanager or the webhook may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The alerts waiting to be sent: bounded, and `push` never waits.
#[derive(Debug, Clone)]
pub struct AlertQueue {
    inner: Arc<QueueInner>,
}

#[derive(Debug)]
struct QueueInner {
    queue: Mutex<VecDeque<AlertEvent>>,
    capacity: usize,
    notify: Notify,
    closed: AtomicBool,
    dropped: Counter,
}

impl AlertQueue {
    /// A queue of at most `capacity` alerts (at least 1); drops are counted on `dropped`.
    pub fn new(capacity: usize, dropped: Counter) -> Self {
        AlertQueue {
            inner: Arc::new(QueueInner {
                queue: Mutex::new(VecDeque::new()),
                capacity: capacity.max(1),
                notify: Notify::new(),
                closed: AtomicBool::new(false),
                dropped,
            }),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<AlertEvent>> {
        self.inner.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `ev`; when the queue is full the oldest alert is dropped (and counted).
    pub fn push(&self, ev: AlertEvent) {
        {
            let mut q = self.queue();
            while q.len() >= self.inner.capacity {
                if let Some(old) = q.pop_front() {
                    self.inner.dropped.inc();
                    tracing::warn!(alert = %old.alertname, cluster = %old.cluster, "alert queue full (is the receiver down?): dropped the oldest alert");
                }
            }
            q.push_back(ev);
        }
        self.inner.notify.notify_one();
    }

    /// How many alerts wait.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.queue().len()
    }

    /// No more alerts: the sender ends once the queue is empty.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.notify.notify_one();
    }

    /// The next alert; `None` once closed and empty.
    async fn pop(&self) -> Option<AlertEvent> {
        loop {
            if let Some(ev) = self.queue().pop_front() {
                return Some(ev);
            }
            if self.inner.closed.load(Ordering::SeqCst) {
                return None;
            }
            self.inner.notify.notified().await;
        }
    }
}

/// One alert's transition.
#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    pub alertname: String,
    pub cluster: String,
    pub severity: String,
    pub firing: bool,
    pub summary: String,
    pub description: String,
    /// Extra labels (e.g. `slo_window`).
    pub labels: BTreeMap<String, String>,
}

impl AlertEvent {
    fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.alertname,
            self.cluster,
            self.labels.values().cloned().collect::<Vec<_>>().join("|")
        )
    }
}

/// Where alerts go.
#[derive(Debug, Clone, Default)]
pub struct AlertSinks {
    pub alertmanager: Option<String>,
    pub webhook: Option<String>,
    pub doc_link: Option<String>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl AlertSinks {
    fn alertmanager_body(&self, alerts: &[(&AlertEvent, SystemTime)]) -> serde_json::Value {
        let now = SystemTime::now();
        serde_json::Value::Array(
            alerts
                .iter()
                .map(|(a, since)| {
                    let mut labels = serde_json::Map::new();
                    labels.insert("alertname".into(), json!(a.alertname));
                    labels.insert("cluster".into(), json!(a.cluster));
                    labels.insert("severity".into(), json!(a.severity));
                    for (k, v) in &a.labels {
                        labels.insert(k.clone(), json!(v));
                    }
                    let mut annotations = json!({"summary": a.summary, "description": a.description});
                    if let Some(link) = self.doc_link.as_deref().filter(|l| !l.is_empty()) {
                        annotations["runbook_url"] = json!(link);
                    }
                    let mut alert = json!({"labels": labels, "annotations": annotations, "startsAt": rfc3339(*since)});
                    if a.firing {
                        // Alertmanager keeps a firing alert until endsAt; re-sent every minute.
                        alert["endsAt"] = json!(rfc3339(now + Duration::from_secs(300)));
                    } else {
                        alert["endsAt"] = json!(rfc3339(now));
                    }
                    alert
                })
                .collect(),
        )
    }

    async fn send(
        &self,
        http: &reqwest::Client,
        alerts: &[(&AlertEvent, SystemTime)],
        transitions: &[&AlertEvent],
    ) {
        if let Some(am) = &self.alertmanager {
            if !alerts.is_empty() {
                let url = format!("{}/api/v2/alerts", am.trim_end_matches('/'));
                match http
                    .post(&url)
                    .json(&self.alertmanager_body(alerts))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        tracing::warn!(%url, status = %r.status(), "Alertmanager refused the alerts")
                    }
                    Err(e) => tracing::warn!(%url, error = %e, "cannot reach Alertmanager"),
                }
            }
        }
        if let Some(hook) = &self.webhook {
            for a in transitions {
                let body = json!({
                    "status": if a.firing { "firing" } else { "resolved" },
                    "alertname": a.alertname, "cluster": a.cluster, "severity": a.severity,
                    "summary": a.summary, "description": a.description, "labels": a.labels,
                    "runbook_url": self.doc_link, "time": rfc3339(SystemTime::now()),
                });
                if let Err(e) = http.post(hook).json(&body).send().await {
                    tracing::warn!(url = %hook, error = %e, "cannot reach the webhook");
                }
            }
        }
    }

    /// Runs until the queue is closed and empty: sends transitions in order and re-sends
    /// firing alerts.
    pub async fn run(self, queue: AlertQueue) {
        let http = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(SEND_TIMEOUT)
            .build()
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the alert HTTP client");
                return;
            }
        };
        let mut active: BTreeMap<String, (AlertEvent, SystemTime)> = BTreeMap::new();
        let mut resend = tokio::time::interval(Duration::from_secs(60));
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = queue.pop() => {
                    let Some(ev) = ev else { break };
                    tracing::info!(alert = %ev.alertname, cluster = %ev.cluster, firing = ev.firing, "alert");
                    let since = if ev.firing {
                        let since = active.get(&ev.key()).map_or_else(SystemTime::now, |(_, s)| *s);
                        active.insert(ev.key(), (ev.clone(), since));
                        since
                    } else {
                        active.remove(&ev.key()).map_or_else(SystemTime::now, |(_, s)| s)
                    };
                    self.send(&http, &[(&ev, since)], &[&ev]).await;
                }
                _ = resend.tick() => {
                    let all: Vec<(&AlertEvent, SystemTime)> = active.values().map(|(a, s)| (a, *s)).collect();
                    self.send(&http, &all, &[]).await;
                }
            }
        }
        // On shutdown, firing alerts stay with Alertmanager until their endsAt: a watch
        // restart does not resolve a real problem.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: usize) -> AlertEvent {
        AlertEvent {
            alertname: format!("A{n}"),
            cluster: "c".into(),
            severity: "page".into(),
            firing: true,
            summary: String::new(),
            description: String::new(),
            labels: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest_and_counts_it_without_waiting() {
        let dropped = Counter::default();
        let q = AlertQueue::new(2, dropped.clone());
        for n in 0..5 {
            q.push(ev(n));
        }
        assert_eq!(q.len(), 2);
        assert_eq!(dropped.get(), 3);
        assert_eq!(q.pop().await.map(|e| e.alertname), Some("A3".into()));
        assert_eq!(q.pop().await.map(|e| e.alertname), Some("A4".into()));
        q.close();
        assert!(q.pop().await.is_none());
    }

    /// A receiver that accepts and never answers holds up only the sender task.
    #[tokio::test]
    async fn a_receiver_that_never_answers_does_not_hold_up_pushes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            loop {
                if let Ok((s, _)) = listener.accept().await {
                    conns.push(s);
                }
            }
        });
        let dropped = Counter::default();
        let q = AlertQueue::new(4, dropped.clone());
        let sinks = AlertSinks {
            alertmanager: Some(url),
            ..AlertSinks::default()
        };
        let sender = tokio::spawn(sinks.run(q.clone()));
        for n in 0..100 {
            q.push(ev(n));
            tokio::task::yield_now().await;
        }
        // The sender holds at most one alert in its hung request; the rest were dropped,
        // not waited for.
        assert!(dropped.get() >= 90, "dropped {}", dropped.get());
        q.close();
        sender.abort();
        held.abort();
    }
}
