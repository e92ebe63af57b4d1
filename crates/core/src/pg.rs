//! What a member's PostgreSQL says, as plain data: the facts the edge queries (`doctor::pg`)
//! and both the checks ([`crate::checks`]) and heal's trend ([`crate::heal`]) read. No rules
//! here: the checks judge these facts, the trend reads WAL-gone evidence and the data size
//! from them.

use std::collections::BTreeMap;

/// What one member's PostgreSQL showed (the edge runs the queries).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PgFacts {
    /// Client connections in use, and how many clients may open (max_connections minus
    /// the reserved slots).
    pub connections: Option<(u64, u64)>,
    /// The leader's `pg_current_wal_lsn()` and its WAL file name.
    pub current_lsn: Option<crate::Lsn>,
    pub current_walfile: Option<String>,
    /// A replica's `pg_last_wal_replay_lsn()` and how long ago its last replayed
    /// transaction committed (`now() - pg_last_xact_replay_timestamp()`).
    pub replay_lsn: Option<crate::Lsn>,
    pub replay_age_secs: Option<f64>,
    /// The leader's `pg_stat_replication`: standby name → `replay_lag` in seconds (None
    /// when PostgreSQL has no figure, e.g. an idle standby that is caught up).
    pub senders: BTreeMap<String, Option<f64>>,
    pub archiver: Option<Archiver>,
    pub slots: Vec<Slot>,
    /// Bytes in `pg_wal` (`pg_ls_waldir()`).
    pub pg_wal_bytes: Option<u64>,
    /// Used fraction of the data directory's filesystem, when it is on this host.
    pub disk_used: Option<f64>,
    pub data_directory: Option<String>,
    /// Trend mode's evidence. The leader: the oldest WAL segment in its `pg_wal` (the 16
    /// hex digits of a WAL file name after the timeline, so that a file left from an older
    /// timeline cannot hide an older segment), the segment size and its databases' total
    /// size. A replica: the last WAL it received (`pg_last_wal_receive_lsn()`) and whether
    /// it can restore WAL from an archive.
    pub oldest_segment: Option<String>,
    pub wal_segment_size: Option<u64>,
    pub data_bytes: Option<u64>,
    pub receive_lsn: Option<crate::Lsn>,
    pub restore_command: Option<String>,
}

/// `pg_stat_archiver`, with `archive_mode`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Archiver {
    pub archive_mode: String,
    pub archived_count: u64,
    pub failed_count: u64,
    /// Seconds since the epoch.
    pub last_archived: Option<f64>,
    pub last_failed: Option<f64>,
    pub last_failed_wal: Option<String>,
}

/// A replication slot of `pg_replication_slots`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slot {
    pub name: String,
    pub physical: bool,
    pub active: bool,
    /// `reserved`, `extended`, `unreserved`, `lost`.
    pub wal_status: Option<String>,
    /// WAL held back: current LSN minus the slot's restart_lsn.
    pub retained_bytes: Option<u64>,
}

/// One member's PostgreSQL evidence, or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct PgMember {
    pub name: String,
    pub leader: bool,
    pub facts: Result<PgFacts, String>,
}
