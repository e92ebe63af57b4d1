//! Alert delivery: to Alertmanager's v2 API (`POST /api/v2/alerts`) and/or a plain JSON
//! webhook. Firing alerts are re-sent every minute (Alertmanager resolves alerts it stops
//! hearing about after `resolve_timeout`); a resolved alert is sent once with `endsAt`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

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

    /// Runs until the channel closes: sends transitions at once and re-sends firing alerts.
    pub async fn run(self, mut rx: mpsc::Receiver<AlertEvent>) {
        let http = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
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
                ev = rx.recv() => {
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
