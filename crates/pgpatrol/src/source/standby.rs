//! A standby cluster's lag against its source: the number Patroni cannot give (patroni
//! #2875: "no reliable way without access to the remote side"). pgpatrol reads both sides:
//! the source leader's own `/patroni` (`xlog.location`, its flush position) and the standby
//! leader's (`xlog.received_location`, `replayed_location`, `replayed_timestamp`).
//!
//! Both must be the same database: the system identifiers are compared, and a `--source-url`
//! that points at another cluster is an error, not a number.

use serde::Serialize;

use pgpatrol_core::{Cluster, Lsn, Role};

use super::http::base_url;
use super::wire::rest::StatusWire;
use super::{ClusterSource, Detail};

/// The standby cluster's position against its source.
#[derive(Debug, Clone, Serialize)]
pub struct StandbyLag {
    /// The source's URL as given.
    pub source: String,
    pub source_leader: String,
    /// The source leader's flush position.
    pub source_position: Lsn,
    pub standby_leader: String,
    /// `streaming` or `in archive recovery` (absent: not replicating).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    /// Replay is paused (`pg_wal_replay_pause()`).
    pub replay_paused: bool,
    /// The source leader's `pg_stat_replication` has the standby leader streaming.
    pub walsender_on_source: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<Lsn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<Lsn>,
    /// Bytes: source position − received (falls back to replayed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_lag: Option<u64>,
    /// Bytes: source position − replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_lag: Option<u64>,
    /// Seconds since the last transaction the standby replayed, when it is behind; 0 when
    /// it has replayed everything. `None` with `seconds_note` when it cannot be told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_lag_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_note: Option<String>,
    /// In archive recovery: seconds the standby leader's replay has stood still while the
    /// source was at least two WAL segments ahead (set by doctor over its observe window and
    /// by watch across polls; see [`StandbyLag::archive_stalled_since`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_stalled_seconds: Option<u64>,
}

/// Two WAL segments of PostgreSQL's default 16 MB: this far ahead, at least one complete
/// segment was there for restore_command to fetch.
pub const ARCHIVE_STALL_BYTES: u64 = 32 << 20;

/// How long watch lets an archive-fed standby leader's replay stand still (with the source
/// [`ARCHIVE_STALL_BYTES`] ahead) before it says it is not replicating: above PostgreSQL's
/// default `max_standby_archive_delay` (30 s), which may hold replay back that long.
pub const ARCHIVE_STALL_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Where a standby cluster replicates from, as its dynamic configuration's
/// `standby_cluster` says (host and port, the slot, restore_command — its secrets
/// redacted). `None` when there is no `standby_cluster` (a primary cluster).
pub fn replicates_from(config: &serde_json::Value) -> Option<String> {
    let sc = config.get("standby_cluster")?.as_object()?;
    let text = |k: &str| sc.get(k).and_then(|v| v.as_str()).filter(|v| !v.is_empty());
    let port = sc
        .get("port")
        .and_then(|p| p.as_u64().or_else(|| p.as_str()?.trim().parse().ok()));
    let mut parts = Vec::new();
    if let Some(h) = text("host") {
        // Patroni's default port for standby_cluster is PostgreSQL's.
        parts.push(format!("{h}:{}", port.unwrap_or(5432)));
    }
    if let Some(slot) = text("primary_slot_name") {
        parts.push(format!("slot {slot}"));
    }
    if let Some(rc) = text("restore_command") {
        parts.push(format!(
            "the archive (restore_command {})",
            crate::redact::redact_text(rc)
        ));
    }
    Some(if parts.is_empty() {
        "nowhere: standby_cluster names no host and no restore_command".to_string()
    } else {
        parts.join(", ")
    })
}

/// Where `cluster` replicates from when it is a standby cluster (its configuration read
/// through `source`); `None` for a primary cluster or when the configuration cannot be read.
pub async fn replicates_from_of(source: &ClusterSource, cluster: &Cluster) -> Option<String> {
    if !cluster.leaders().any(|m| m.role == Role::StandbyLeader) {
        return None;
    }
    source.config().await.ok().and_then(|c| replicates_from(&c))
}

/// Reads the source at `source_url` and the standby cluster's leader; errors are one line.
pub async fn standby_lag(
    standby_source: &ClusterSource,
    standby: &Cluster,
    source_url: &str,
) -> anyhow::Result<StandbyLag> {
    let leader = standby
        .leaders()
        .find(|m| m.role == Role::StandbyLeader)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "this cluster has no standby leader ({}): --source-url is for a standby cluster",
                standby
                    .leader()
                    .map(|l| format!("{} is its {}", l.name, l.role))
                    .unwrap_or_else(|| "no leader".into())
            )
        })?;
    let api =
        base_url(leader.api_url.as_deref().ok_or_else(|| {
            anyhow::anyhow!("the standby leader {} has no api_url", leader.name)
        })?)?;
    let mine: StatusWire = standby_source.http().get_json(&api, "/patroni").await?;
    let base = base_url(source_url)?;
    let src = ClusterSource::new(standby_source.http().clone(), std::slice::from_ref(&base))?;
    let snap = src
        .snapshot(Detail::Full)
        .await
        .map_err(|e| anyhow::anyhow!("--source-url {source_url}: {e}"))?;
    let src_leader = snap
        .cluster
        .leader()
        .filter(|l| l.role == Role::Leader)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--source-url {source_url}: that cluster has no running primary to be the source"
            )
        })?;
    let src_api = base_url(src_leader.api_url.as_deref().unwrap_or(&base))?;
    let theirs: StatusWire = src.http().get_json(&src_api, "/patroni").await?;
    match (
        theirs.database_system_identifier.as_deref(),
        mine.database_system_identifier.as_deref(),
    ) {
        (Some(a), Some(b)) if a != b => anyhow::bail!(
            "--source-url {source_url} is not the source of this standby cluster: its system identifier is {a}, the standby's is {b}"
        ),
        (None, _) | (_, None) => anyhow::bail!(
            "--source-url {source_url}: cannot compare system identifiers (a /patroni without database_system_identifier): refusing to compute a lag between clusters that may not be the same database"
        ),
        _ => {}
    }
    let position = theirs
        .xlog
        .as_ref()
        .and_then(|x| x.location)
        .map(Lsn)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--source-url {source_url}: the source leader {} reports no WAL position",
                src_leader.name
            )
        })?;
    let x = mine.xlog.clone().unwrap_or_default();
    let received = x.received_location.map(Lsn);
    let replayed = x.replayed_location.map(Lsn);
    let replay_lag = replayed.map(|r| position.bytes_after(r));
    let receive_lag = received.or(replayed).map(|r| position.bytes_after(r));
    let (seconds, note) = match (replay_lag, x.replayed_timestamp.as_deref()) {
        (Some(0), _) => (Some(0.0), None),
        (Some(_), Some(ts)) => match crate::time::parse_iso8601(ts) {
            Some(t) => (
                Some(
                    (std::time::SystemTime::now()
                        .duration_since(t)
                        .unwrap_or_default()
                        .as_secs_f64()
                        * 10.0)
                        .round()
                        / 10.0,
                ),
                Some("since the last transaction the standby replayed; on a source that wrote no transaction since, it overstates".into()),
            ),
            None => (None, Some(format!("replayed_timestamp {ts:?} is not a time"))),
        },
        (Some(_), None) => (None, Some("the standby has replayed no transaction yet".into())),
        (None, _) => (None, Some("the standby leader reports no replayed position".into())),
    };
    Ok(StandbyLag {
        source: source_url.to_string(),
        source_leader: src_leader.name.clone(),
        source_position: position,
        standby_leader: leader.name.clone(),
        replication_state: mine.replication_state.clone(),
        replay_paused: x.paused.unwrap_or(false),
        walsender_on_source: theirs.replication.iter().flatten().any(|r| {
            r.application_name.as_deref() == Some(leader.name.as_str())
                && r.state.as_deref() == Some("streaming")
        }),
        received,
        replayed,
        receive_lag,
        replay_lag,
        replay_lag_seconds: seconds,
        seconds_note: note,
        archive_stalled_seconds: None,
    })
}

impl StandbyLag {
    /// In archive recovery Patroni sees no walreceiver, and its `replication_state` says `in
    /// archive recovery` also while every restore_command fails. The standby leader is not
    /// replicating when its replay has not moved since `earlier` (the same leader) while
    /// the source was at least [`ARCHIVE_STALL_BYTES`] ahead at both reads.
    pub fn archive_stalled_since(&self, earlier: &StandbyLag) -> bool {
        let far = |l: &StandbyLag| l.replay_lag.is_some_and(|b| b >= ARCHIVE_STALL_BYTES);
        self.replication_state.as_deref() == Some("in archive recovery")
            && self.standby_leader == earlier.standby_leader
            && self.replayed.is_some()
            && self.replayed == earlier.replayed
            && far(self)
            && far(earlier)
    }

    /// The facts doctor's `standby` check judges.
    pub fn facts(&self) -> pgpatrol_core::checks::StandbyFacts {
        pgpatrol_core::checks::StandbyFacts {
            standby_leader: self.standby_leader.clone(),
            source_leader: self.source_leader.clone(),
            replication_state: self.replication_state.clone(),
            replay_paused: self.replay_paused,
            receive_lag: self.receive_lag,
            replay_lag: self.replay_lag,
            walsender_on_source: self.walsender_on_source,
            archive_stalled_seconds: self.archive_stalled_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicates_from_names_host_slot_and_archive() {
        let c = serde_json::json!({"standby_cluster": {"host": "prod-1", "port": 5433, "primary_slot_name": "dr", "restore_command": "PGPASSWORD=x fetch %f %p"}});
        assert_eq!(
            replicates_from(&c).as_deref(),
            Some("prod-1:5433, slot dr, the archive (restore_command PGPASSWORD=*** fetch %f %p)")
        );
        let c = serde_json::json!({"standby_cluster": {"host": "prod-1", "port": "6432"}});
        assert_eq!(replicates_from(&c).as_deref(), Some("prod-1:6432"));
        let c = serde_json::json!({"standby_cluster": {"host": "prod-1"}});
        assert_eq!(replicates_from(&c).as_deref(), Some("prod-1:5432"));
        assert_eq!(replicates_from(&serde_json::json!({"ttl": 30})), None);
    }
}
