//! `pgpatrol doctor`: gathers the evidence the runbook's checks need (REST answers over an
//! observe window, PostgreSQL rows, pgBackRest's JSON) and hands it to the pure checks in
//! `pgpatrol_core::checks`. Every piece of evidence that cannot be had becomes a skipped or
//! UNKNOWN check with the reason; the REST checks run whatever else fails.

pub mod backup;
pub mod config;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use pgpatrol_core::checks::{self, Check, RestEvidence, Status};

use crate::source::SourceError;
use crate::source::{ClusterSource, Detail};

/// What doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cluster: Option<String>,
    /// The worst status (skipped checks aside).
    pub status: Status,
    pub checks: Vec<Check>,
    /// When the checks ran (RFC 3339).
    pub time: String,
    /// The maintenance checklist, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checklist: Option<Vec<checks::ChecklistItem>>,
}

impl Report {
    pub fn new(cluster: Option<String>, checks: Vec<Check>) -> Self {
        Report {
            cluster,
            status: checks::worst(&checks),
            checks,
            time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            checklist: None,
        }
    }
}

/// How long to watch for members stuck in a transitional state, and how many readings.
#[derive(Debug, Clone, Copy)]
pub struct Observe {
    pub window: Duration,
    pub samples: usize,
}

/// Reads everything the REST checks need. `Err` only when no member answers anything at all
/// (not `/cluster`, not their own `/patroni`).
pub async fn rest_evidence(
    source: &ClusterSource,
    observe: Observe,
) -> Result<RestEvidence, SourceError> {
    let t0 = Instant::now();
    let samples_wanted = observe.samples.max(1);
    let gap = observe.window / (samples_wanted.saturating_sub(1).max(1) as u32);
    let mut e = RestEvidence::default();
    let first = source.snapshot(Detail::Full).await;
    match first {
        Ok(s) => e.samples.push(s.cluster),
        Err(SourceError::DcsUnreachable(why)) => {
            e.cluster_error = Some(why);
            e.own = source.own_statuses().await;
            e.observed = t0.elapsed();
            return Ok(e);
        }
        Err(err) => return Err(err),
    }
    let first = e.samples[0].clone();
    extras(source, &first, &mut e).await;
    for _ in 1..samples_wanted {
        tokio::time::sleep(gap).await;
        match source.snapshot(Detail::Lag).await {
            Ok(s) => e.samples.push(s.cluster),
            Err(err) => {
                tracing::debug!(error = %err, "an observe sample failed");
            }
        }
    }
    e.observed = t0.elapsed();
    Ok(e)
}

/// What the checks need besides `/cluster` readings: each member's own `/patroni` (from the
/// API URLs `cluster` lists), failovers in the last 24 h from `/history`, and the dynamic
/// configuration's `maximum_lag_on_failover`, synchronous mode and permanent slots.
pub async fn extras(
    source: &ClusterSource,
    cluster: &pgpatrol_core::Cluster,
    e: &mut RestEvidence,
) {
    let urls: Vec<(String, String)> = cluster
        .members
        .iter()
        .filter_map(|m| m.api_url.clone().map(|u| (m.name.clone(), u)))
        .collect();
    let own = futures::future::join_all(urls.iter().map(|(name, url)| async move {
        let r = source.member_status(url).await.map_err(|e| e.to_string());
        (name.clone(), r)
    }))
    .await;
    e.own = own.into_iter().collect::<BTreeMap<_, _>>();
    let (history, config) = tokio::join!(source.history(), source.config());
    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    e.failovers_24h = history.ok().map(|h| {
        h.iter()
            .filter_map(|x| x.timestamp.as_deref().and_then(crate::time::parse_iso8601))
            .filter(|t| *t >= day_ago)
            .count()
    });
    if let Ok(c) = config {
        read_config(e, &c);
    }
}

/// What the checks take from the dynamic configuration, read as Patroni reads it (the
/// takeover rule's reading of `synchronous_mode` and `maximum_lag_on_failover`).
pub fn read_config(e: &mut RestEvidence, c: &serde_json::Value) {
    use pgpatrol_core::candidates::{config_flag, maximum_lag_on_failover, synchronous_mode};
    e.maximum_lag_on_failover = maximum_lag_on_failover(c);
    e.synchronous_mode = synchronous_mode(c).0;
    e.synchronous_mode_strict = config_flag(c, "synchronous_mode_strict");
    e.permanent_slots = c["slots"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_configuration_is_read_as_patroni_reads_it() {
        let read = |c: serde_json::Value| {
            let mut e = RestEvidence::default();
            read_config(&mut e, &c);
            e
        };
        for on in [
            json!(true),
            json!("quorum"),
            json!("on"),
            json!("YES"),
            json!(1),
        ] {
            assert!(
                read(json!({"synchronous_mode": on})).synchronous_mode,
                "{on}"
            );
        }
        // Patroni's parse_bool: "no" and 0 are off; words it does not know are not on.
        for off in [
            json!("off"),
            json!("no"),
            json!(0),
            json!(2),
            json!("Quorum"),
            json!(null),
        ] {
            assert!(
                !read(json!({"synchronous_mode": off})).synchronous_mode,
                "{off}"
            );
        }
        let e =
            read(json!({"maximum_lag_on_failover": "2097152", "synchronous_mode_strict": "on"}));
        assert_eq!(e.maximum_lag_on_failover, Some(2_097_152));
        assert!(e.synchronous_mode_strict);
        assert_eq!(read(json!({})).maximum_lag_on_failover, None);
    }
}
