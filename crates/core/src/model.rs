//! The cluster as pgpatrol reasons about it: members, roles, states, timelines, LSNs and
//! lag. Every source (REST, Kubernetes, DCS) converts its wire format into these types in
//! one place; everything downstream (SLI, plans, reports, metrics) reads only these.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::lsn::Lsn;

/// A member's role, as Patroni names it in `/cluster`. `master` (3.x) and `primary` (4.x)
/// are the same role as `leader`; unknown roles are kept as they came.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    Leader,
    StandbyLeader,
    SyncStandby,
    QuorumStandby,
    Replica,
    Other(String),
}

impl Role {
    pub fn parse(s: &str) -> Role {
        match s {
            "leader" | "master" | "primary" => Role::Leader,
            "standby_leader" => Role::StandbyLeader,
            "sync_standby" => Role::SyncStandby,
            "quorum_standby" => Role::QuorumStandby,
            "replica" => Role::Replica,
            other => Role::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Role::Leader => "leader",
            Role::StandbyLeader => "standby_leader",
            Role::SyncStandby => "sync_standby",
            Role::QuorumStandby => "quorum_standby",
            Role::Replica => "replica",
            Role::Other(s) => s,
        }
    }

    /// Holds the leader lock: a leader, or a standby cluster's standby leader.
    pub fn is_leader(&self) -> bool {
        matches!(self, Role::Leader | Role::StandbyLeader)
    }

    /// A synchronous or quorum standby (taking it away can block commits on the leader).
    pub fn is_synchronous(&self) -> bool {
        matches!(self, Role::SyncStandby | Role::QuorumStandby)
    }

    /// The role as patronictl shows it: `role.replace('_', ' ').title()`.
    pub fn title(&self) -> String {
        title_case(&self.as_str().replace('_', " "))
    }
}

fn title_case(s: &str) -> String {
    // Python's str.title(): upper-case a letter that follows a non-letter, lower-case the rest.
    let mut out = String::with_capacity(s.len());
    let mut prev_alpha = false;
    for c in s.chars() {
        if c.is_alphabetic() {
            if prev_alpha {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            prev_alpha = true;
        } else {
            out.push(c);
            prev_alpha = false;
        }
    }
    out
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Role::parse(&String::deserialize(d)?))
    }
}

/// A member's state as `/cluster` shows it: PostgreSQL's state for the leader, the
/// replication state (`streaming`, `in archive recovery`) for others when they have one.
/// Unknown strings are kept as they came.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum State {
    Running,
    Streaming,
    InArchiveRecovery,
    Starting,
    Stopping,
    Stopped,
    Restarting,
    CreatingReplica,
    InitializingNewCluster,
    RunningCustomBootstrapScript,
    StartingAfterCustomBootstrap,
    InitdbFailed,
    CustomBootstrapFailed,
    StartFailed,
    RestartFailed,
    StopFailed,
    Crashed,
    Unknown,
    Other(String),
}

impl State {
    pub const NAMES: [(&'static str, State); 18] = [
        ("running", State::Running),
        ("streaming", State::Streaming),
        ("in archive recovery", State::InArchiveRecovery),
        ("starting", State::Starting),
        ("stopping", State::Stopping),
        ("stopped", State::Stopped),
        ("restarting", State::Restarting),
        ("creating replica", State::CreatingReplica),
        ("initializing new cluster", State::InitializingNewCluster),
        (
            "running custom bootstrap script",
            State::RunningCustomBootstrapScript,
        ),
        (
            "starting after custom bootstrap",
            State::StartingAfterCustomBootstrap,
        ),
        ("initdb failed", State::InitdbFailed),
        ("custom bootstrap failed", State::CustomBootstrapFailed),
        ("start failed", State::StartFailed),
        ("restart failed", State::RestartFailed),
        ("stop failed", State::StopFailed),
        ("crashed", State::Crashed),
        ("unknown", State::Unknown),
    ];

    pub fn parse(s: &str) -> State {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, st)| st.clone())
            .unwrap_or_else(|| State::Other(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            State::Other(s) => s,
            known => Self::NAMES
                .iter()
                .find(|(_, st)| st == known)
                .map(|(name, _)| *name)
                .unwrap_or("unknown"),
        }
    }

    /// A replica in this state is replicating: `running`, `streaming`, `in archive recovery`.
    pub fn is_healthy_replica(&self) -> bool {
        matches!(
            self,
            State::Running | State::Streaming | State::InArchiveRecovery
        )
    }

    /// Patroni is busy rebuilding or (re)starting the member: a reinit or restart is under way.
    /// `stopped` is not: a reinit passes through it for a moment, but a member that stays
    /// stopped (e.g. in maintenance mode) is simply down, with unknown lag.
    pub fn is_in_transition(&self) -> bool {
        matches!(
            self,
            State::Stopping | State::CreatingReplica | State::Starting | State::Restarting
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(State::parse(&String::deserialize(d)?))
    }
}

/// Replication lag in bytes, or unknown. Unknown is never zero: it is its own condition,
/// worse than any number. Serialized as an integer or the string `"unknown"`, like Patroni.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lag {
    Bytes(u64),
    Unknown,
}

impl Lag {
    pub fn bytes(self) -> Option<u64> {
        match self {
            Lag::Bytes(b) => Some(b),
            Lag::Unknown => None,
        }
    }

    /// At or above `tolerance`, or unknown.
    pub fn breaches(self, tolerance: u64) -> bool {
        self.bytes().is_none_or(|b| b >= tolerance)
    }

    /// Orders lags from best to worst: unknown is worse than any number.
    pub fn severity(self) -> (bool, u64) {
        match self {
            Lag::Bytes(b) => (false, b),
            Lag::Unknown => (true, 0),
        }
    }
}

impl fmt::Display for Lag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lag::Bytes(b) => write!(f, "{b}"),
            Lag::Unknown => f.write_str("unknown"),
        }
    }
}

impl Serialize for Lag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Lag::Bytes(b) => s.serialize_u64(*b),
            Lag::Unknown => s.serialize_str("unknown"),
        }
    }
}

impl<'de> Deserialize<'de> for Lag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Number(n) => n.as_u64().map_or(Lag::Unknown, Lag::Bytes),
            _ => Lag::Unknown,
        })
    }
}

/// Which lag an SLI, a tolerance or a plan looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LagKind {
    /// WAL received (written) by the replica: what Patroni's legacy `lag` shows.
    Receive,
    /// WAL applied by the replica: what queries on it see. A replica that receives but cannot
    /// replay shows only here.
    #[default]
    Replay,
}

impl LagKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LagKind::Receive => "receive",
            LagKind::Replay => "replay",
        }
    }
}

/// Where the replay figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LagSource {
    /// Patroni ≥ 4.1: `receive_lag`/`replay_lag` in `/cluster`, against the DCS leader optime.
    #[default]
    Cluster,
    /// Patroni < 4.1: receive from `/cluster` `lag`; replay computed as the leader's
    /// `/patroni` `xlog.location` minus each replica's `xlog.replayed_location`.
    MemberStatus,
}

/// What one member says of itself (`GET /patroni`), as far as acting on it needs: the
/// executor watches a rebuilt member and the leader through this, never through wire types.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberStatus {
    pub state: State,
    pub role: Role,
    /// `streaming`, `in archive recovery`, ...: absent before Patroni 3.0.4.
    pub replication_state: Option<String>,
    pub version: Option<PatroniVersion>,
    /// Changes when PostgreSQL restarts (a rebuilt member's does).
    pub postmaster_start_time: Option<String>,
    /// The leader's current WAL position (`xlog.location`).
    pub wal_position: Option<Lsn>,
    /// A replica's received and replayed positions (`xlog.received_location`,
    /// `xlog.replayed_location`).
    pub received: Option<Lsn>,
    pub replayed: Option<Lsn>,
    /// A leader's `replication` (its `pg_stat_replication`): the `application_name` of
    /// every standby whose state is `streaming`.
    pub streaming_to: Vec<String>,
    /// `pause: true`: this member has seen maintenance mode (Patroni publishes it per member).
    pub paused: bool,
    /// A replica's `xlog.paused`: its replay is paused (`pg_wal_replay_pause()`).
    pub replay_paused: bool,
    /// `pending_restart`: a changed setting waits for a PostgreSQL restart.
    pub pending_restart: bool,
    pub timeline: Option<u64>,
    /// `dcs_last_seen`: when this member's Patroni last reached the DCS (seconds since the
    /// epoch, on the member's own clock).
    pub dcs_last_seen: Option<u64>,
}

/// The first Patroni that reports `replication_state` in `/patroni`.
pub const REPLICATION_STATE_SINCE: PatroniVersion = PatroniVersion::new(3, 0, 4);

impl MemberStatus {
    /// A running leader (primary, master or standby leader).
    pub fn is_running_leader(&self) -> bool {
        self.role.is_leader() && self.state == State::Running
    }

    /// It says it streams: `replication_state: streaming`, or, on Patroni before 3.0.4,
    /// which never reports it, nothing to the contrary (its lag against the leader, checked
    /// beside this, is the evidence then).
    pub fn says_streaming(&self) -> bool {
        match self.replication_state.as_deref() {
            Some(rs) => rs == "streaming",
            None => self.version.is_some_and(|v| v < REPLICATION_STATE_SINCE),
        }
    }

    /// Bytes of WAL this member is behind `leader`'s position, of the given kind (receive
    /// falls back to replay when only that is known). The rule Patroni < 4.1 needs for
    /// replay lag, which its `/cluster` does not carry (see [`LagSource::MemberStatus`]).
    pub fn lag_behind(&self, leader: &MemberStatus, kind: LagKind) -> Option<u64> {
        let pos = match kind {
            LagKind::Replay => self.replayed?,
            LagKind::Receive => self.received.or(self.replayed)?,
        };
        // A standby leader has no `xlog.location` (it is in recovery): what it has received
        // is what its cascade replicas can get.
        let ahead = leader
            .wal_position
            .or(leader.received)
            .or(leader.replayed)?;
        Some(ahead.bytes_after(pos))
    }
}

/// A Patroni version, e.g. `4.1.5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PatroniVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl PatroniVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        PatroniVersion {
            major,
            minor,
            patch,
        }
    }

    /// Parses `4.1.5`, `3.0.4`, `4.0`; ignores suffixes like `4.1.0rc1` after the numbers.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().flatten().unwrap_or(0);
        Some(PatroniVersion {
            major,
            minor,
            patch,
        })
    }

    /// `/cluster` carries `receive_lag`/`replay_lag` (4.1.0+).
    pub fn has_replay_lag(self) -> bool {
        self >= PatroniVersion::new(4, 1, 0)
    }
}

impl fmt::Display for PatroniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for PatroniVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One member of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub name: String,
    pub role: Role,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u64>,
    /// Receive and replay positions and lag; `None` for the leader (lag does not apply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<Lsn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<Lsn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_lag: Option<Lag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_lag: Option<Lag>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_restart_reason: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, Value>,
    /// What keeps this replica behind on purpose, read from the member itself before heal
    /// decides (`None`: not read; heal then does not touch it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<Kept>,
}

/// The Patroni tag an operator sets on a member (`tags: {noheal: true}` in its patroni.yml)
/// so that heal and auto-heal never rebuild it.
pub const NOHEAL_TAG: &str = "noheal";

/// Patroni's tag for an archive-only replica (Patroni 3.2+).
pub const NOSTREAM_TAG: &str = "nostream";

/// What can keep a replica behind on purpose, as heal reads it from the member itself:
/// a DBA who paused replay to copy rows out before they are replayed away, or a delayed
/// replica kept as a protection against operator error. A rebuild would destroy exactly
/// what is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Kept {
    /// Replay is paused (`pg_wal_replay_pause()`): `xlog.paused` in its own `/patroni`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay_paused: bool,
    /// `recovery_min_apply_delay` in effect on it, when not 0 (`10min`), and where it was
    /// read (`the member`, `the dynamic configuration`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply_delay: Option<String>,
    /// What could not be read, so that nothing can be said of it (its `/patroni` did not
    /// answer): the member is not touched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// A `nostream` replica (archive only): bytes its replayed position is behind the end of
    /// the newest WAL segment the leader archived, read through a PostgreSQL login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind_archive: Option<u64>,
    /// A `nostream` replica whose position against the archive could not be read, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_unread: Option<String>,
    /// The delay was not read on the member itself (no PostgreSQL login): only the dynamic
    /// configuration was, and it sets none. A delay in the member's own patroni.yml would
    /// not have been seen; the plan says so.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub delay_unchecked: bool,
}

impl Member {
    /// True when a Patroni tag says heal must leave it alone (`noheal: true`, or `"true"`).
    pub fn noheal(&self) -> bool {
        self.tag_is_true(NOHEAL_TAG)
    }

    /// True for an archive-only replica: Patroni's `nostream` tag (3.2+). It gets WAL only
    /// through `restore_command`, so it lags by up to a WAL segment (and the archive's own
    /// delay) between restores: heal judges it against the archive, not the leader.
    pub fn nostream(&self) -> bool {
        self.tag_is_true(NOSTREAM_TAG)
    }

    pub fn new(name: impl Into<String>, role: Role, state: State) -> Self {
        Member {
            name: name.into(),
            role,
            state,
            host: None,
            port: None,
            api_url: None,
            timeline: None,
            receive_lsn: None,
            replay_lsn: None,
            receive_lag: None,
            replay_lag: None,
            pending_restart: false,
            pending_restart_reason: None,
            scheduled_restart: None,
            tags: BTreeMap::new(),
            kept: None,
        }
    }

    /// The lag of the given kind; `Unknown` for a non-leader without a figure.
    pub fn lag(&self, kind: LagKind) -> Option<Lag> {
        if self.role.is_leader() {
            return None;
        }
        let lag = match kind {
            LagKind::Receive => self.receive_lag,
            LagKind::Replay => self.replay_lag,
        };
        Some(lag.unwrap_or(Lag::Unknown))
    }

    /// A replica that replicates (healthy state) with a known lag of `kind` below
    /// `tolerance`: what a heal must leave behind. Never true of a leader.
    pub fn is_caught_up(&self, kind: LagKind, tolerance: u64) -> bool {
        self.state.is_healthy_replica() && self.lag(kind).is_some_and(|l| !l.breaches(tolerance))
    }

    /// It streams as `/cluster` shows it: `streaming` (Patroni 3.0.4 and later); before
    /// 3.0.4, which shows a streaming replica as `running`, `running`. With the version
    /// unknown only `streaming` counts.
    pub fn shows_streaming(&self, version: Option<PatroniVersion>) -> bool {
        match self.state {
            State::Streaming => true,
            State::Running => {
                !self.role.is_leader() && version.is_some_and(|v| v < REPLICATION_STATE_SINCE)
            }
            _ => false,
        }
    }

    /// A rebuilt member is back: caught up, or, for an archive-only replica (`nostream`),
    /// replaying from the archive again — its lag against the leader is the archive's own
    /// delay, judged against the archive at the next decision.
    pub fn is_back(&self, kind: LagKind, tolerance: u64) -> bool {
        self.is_caught_up(kind, tolerance)
            || (self.nostream() && self.state == State::InArchiveRecovery)
    }

    /// The member this one replicates from when cascading (tag `replicatefrom`).
    pub fn replicatefrom(&self) -> Option<&str> {
        self.tags.get("replicatefrom").and_then(Value::as_str)
    }

    /// Tag `nofailover`/`noloadbalance` etc. set to a true value.
    pub fn tag_is_true(&self, tag: &str) -> bool {
        match self.tags.get(tag) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => {
                matches!(s.to_lowercase().as_str(), "true" | "on" | "yes" | "1")
            }
            _ => false,
        }
    }
}

/// A switchover the leader will run at a given time (`/cluster` `scheduled_switchover`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledSwitchover {
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// A snapshot of one Patroni cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The version of the Patroni node that answered, when it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patroni_version: Option<PatroniVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// Maintenance mode: Patroni takes no automatic action.
    pub paused: bool,
    /// No member holds the leader lock (from the answering node's `/patroni`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unlocked: bool,
    /// Failsafe mode is active: the DCS is unreachable and the leader runs on member consent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub failsafe_active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_switchover: Option<ScheduledSwitchover>,
    pub lag_source: LagSource,
    pub members: Vec<Member>,
}

impl Cluster {
    pub fn new(members: Vec<Member>) -> Self {
        Cluster {
            scope: None,
            patroni_version: None,
            system_identifier: None,
            paused: false,
            unlocked: false,
            failsafe_active: false,
            scheduled_switchover: None,
            lag_source: LagSource::Cluster,
            members,
        }
    }

    /// Members holding the leader lock (leader or standby leader). Exactly one when healthy.
    pub fn leaders(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.role.is_leader())
    }

    /// The leader when there is exactly one.
    pub fn leader(&self) -> Option<&Member> {
        let mut it = self.leaders();
        match (it.next(), it.next()) {
            (Some(l), None) => Some(l),
            _ => None,
        }
    }

    /// Every member that is not a leader.
    pub fn replicas(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| !m.role.is_leader())
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The cluster's timelines (leader first), to spot members on an old timeline.
    pub fn timelines(&self) -> Vec<u64> {
        let mut tls: Vec<u64> = self.members.iter().filter_map(|m| m.timeline).collect();
        tls.sort_unstable();
        tls.dedup();
        tls
    }
}

/// One line of `/history`: timeline `timeline` ended at `lsn`, and `new_leader` promoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub timeline: u64,
    pub lsn: Lsn,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_leader: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_is_shown_as_streaming_from_3_0_4_and_as_running_before() {
        let mut m = crate::fixtures::ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .build()
            .members
            .remove(1);
        m.state = State::Running;
        assert!(!m.shows_streaming(Some(PatroniVersion::new(4, 1, 5))));
        assert!(!m.shows_streaming(None));
        assert!(m.shows_streaming(Some(PatroniVersion::new(3, 0, 2))));
        m.state = State::Streaming;
        assert!(m.shows_streaming(Some(PatroniVersion::new(4, 1, 5))));
    }

    #[test]
    fn caught_up_means_replicating_with_known_lag_below_the_tolerance() {
        let c = crate::fixtures::ClusterBuilder::new()
            .leader("l")
            .replica("ok")
            .replay_lag_bytes(10)
            .replica("far")
            .replay_lag_bytes(100)
            .replica("unknown")
            .unknown_lag()
            .replica("rebuilding")
            .state(State::CreatingReplica)
            .replay_lag_bytes(0)
            .build();
        let caught_up: Vec<&str> = c
            .members
            .iter()
            .filter(|m| m.is_caught_up(LagKind::Replay, 100))
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(caught_up, ["ok"]);
    }

    #[test]
    fn a_cascade_replica_lags_behind_what_its_standby_leader_received() {
        let status = |role: Role, wal: Option<u64>, received: Option<u64>| MemberStatus {
            state: State::Running,
            role,
            replication_state: Some("streaming".into()),
            version: None,
            postmaster_start_time: None,
            wal_position: wal.map(Lsn),
            received: received.map(Lsn),
            replayed: received.map(Lsn),
            streaming_to: Vec::new(),
            paused: false,
            replay_paused: false,
            pending_restart: false,
            timeline: None,
            dcs_last_seen: None,
        };
        let standby_leader = status(Role::StandbyLeader, None, Some(5000));
        let cascade = status(Role::Replica, None, Some(1000));
        assert_eq!(
            cascade.lag_behind(&standby_leader, LagKind::Replay),
            Some(4000)
        );
        let primary = status(Role::Leader, Some(9000), None);
        assert_eq!(cascade.lag_behind(&primary, LagKind::Receive), Some(8000));
    }

    #[test]
    fn master_and_primary_are_the_leader() {
        for s in ["leader", "master", "primary"] {
            assert_eq!(Role::parse(s), Role::Leader);
        }
        assert_eq!(Role::parse("wizard"), Role::Other("wizard".into()));
        assert_eq!(Role::parse("wizard").as_str(), "wizard");
    }

    #[test]
    fn role_titles_match_patronictl() {
        assert_eq!(Role::Leader.title(), "Leader");
        assert_eq!(Role::StandbyLeader.title(), "Standby Leader");
        assert_eq!(Role::SyncStandby.title(), "Sync Standby");
        assert_eq!(Role::QuorumStandby.title(), "Quorum Standby");
        assert_eq!(Role::Replica.title(), "Replica");
    }

    #[test]
    fn states_round_trip_and_keep_unknown_strings() {
        for (name, _) in State::NAMES {
            assert_eq!(State::parse(name).as_str(), name);
        }
        let odd = State::parse("restart failed (start failed)");
        assert_eq!(odd, State::Other("restart failed (start failed)".into()));
        assert_eq!(odd.to_string(), "restart failed (start failed)");
    }

    #[test]
    fn unknown_lag_is_never_zero() {
        assert!(Lag::Unknown.breaches(u64::MAX));
        assert!(Lag::Unknown.severity() > Lag::Bytes(u64::MAX).severity());
        let v: Lag = serde_json::from_str("\"unknown\"").unwrap();
        assert_eq!(v, Lag::Unknown);
        let v: Lag = serde_json::from_str("-1").unwrap();
        assert_eq!(v, Lag::Unknown);
        assert_eq!(serde_json::to_string(&Lag::Unknown).unwrap(), "\"unknown\"");
    }

    #[test]
    fn versions() {
        let v = PatroniVersion::parse("4.1.5").unwrap();
        assert!(v.has_replay_lag());
        assert!(!PatroniVersion::parse("3.0.4").unwrap().has_replay_lag());
        assert_eq!(
            PatroniVersion::parse("4.1.0rc1"),
            Some(PatroniVersion::new(4, 1, 0))
        );
        assert_eq!(
            PatroniVersion::parse("4.0"),
            Some(PatroniVersion::new(4, 0, 0))
        );
        assert_eq!(PatroniVersion::parse("garbage"), None);
    }
}
