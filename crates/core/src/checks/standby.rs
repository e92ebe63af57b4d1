//! The check on a standby cluster against its source.

use super::*;

/// What `doctor --source-url` saw of a standby cluster and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyFacts {
    pub standby_leader: String,
    pub source_leader: String,
    /// `streaming`, `in archive recovery`; `None`: not replicating.
    pub replication_state: Option<String>,
    pub replay_paused: bool,
    pub receive_lag: Option<u64>,
    pub replay_lag: Option<u64>,
    /// The source leader's `pg_stat_replication` has the standby leader streaming.
    pub walsender_on_source: bool,
    /// In archive recovery: seconds replay stood still while the source was two WAL
    /// segments or more ahead (nothing restored: restore_command failing, or no archive).
    pub archive_stalled_seconds: Option<u64>,
}

/// The standby cluster's check (`doctor --source-url`, not in [`CHECK_IDS`]: watch does not
/// run it): replicating, not paused in recovery, its lag against the source within the lag
/// thresholds, and, when it streams, a walsender for it on the source.
pub fn standby_check(f: &StandbyFacts, t: &Thresholds) -> Check {
    let lag = f.replay_lag.max(f.receive_lag);
    let mut status = match lag {
        Some(b) => t.lag_bytes.judge(b as f64),
        None => Status::Unknown,
    };
    let mut why = Vec::new();
    match f.replication_state.as_deref() {
        None => {
            status = Status::Crit;
            why.push(format!(
                "{} is not replicating from the source",
                f.standby_leader
            ));
        }
        Some("streaming") if !f.walsender_on_source => {
            status = status.max(Status::Warn);
            why.push(format!(
                "the source leader {} has no walsender streaming to {}",
                f.source_leader, f.standby_leader
            ));
        }
        _ => {}
    }
    if f.replay_paused {
        status = Status::Crit;
        why.push("replay is paused (pg_wal_replay_resume() resumes it)".into());
    }
    let stalled = f.archive_stalled_seconds;
    if let Some(secs) = stalled {
        status = Status::Crit;
        why.push(format!(
            "NOT replicating: nothing restored from the archive in {secs} s while the source is {} ahead (restore_command failing, or the source not archiving)",
            human(f.replay_lag.unwrap_or(0))
        ));
    }
    let h = |b: Option<u64>| b.map_or("unknown".to_string(), human);
    let evidence = format!(
        "{} {} from {}: receive lag {}, replay lag {}{}",
        f.standby_leader,
        f.replication_state.as_deref().unwrap_or("NOT replicating"),
        f.source_leader,
        h(f.receive_lag),
        h(f.replay_lag),
        if why.is_empty() {
            String::new()
        } else {
            format!("; {}", why.join("; "))
        }
    );
    let mut c = Check::new("standby", status, evidence);
    if let Some(b) = lag {
        c = c.value(b as f64);
    }
    if stalled.is_some() {
        c = c.fix("check the standby leader's log for restore_command's errors and the command itself (pgpatrol show-config: standby_cluster.restore_command), and that the source archives (doctor on the source: archive)");
    } else if status != Status::Ok {
        c = c.fix("check the standby leader's log and its primary_conninfo/restore_command (pgpatrol show-config: standby_cluster), the network to the source, and the source's slot (doctor on the source: slots)");
    }
    c
}
