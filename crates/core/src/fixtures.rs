//! Builders for clusters in tests, so that tests read like specs:
//! `ClusterBuilder::new().leader("pg0").replica("pg1").replay_lag_mb(7).build()`.
//! Modifiers after `leader`/`replica` apply to the member added last.

use crate::lsn::Lsn;
use crate::model::{Cluster, Lag, Member, Role, State};

const MB: u64 = 1024 * 1024;

/// Builds a [`Cluster`] member by member.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    cluster: Cluster,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterBuilder {
    pub fn new() -> Self {
        let mut cluster = Cluster::new(Vec::new());
        cluster.scope = Some("demo".into());
        ClusterBuilder { cluster }
    }

    fn push(mut self, name: &str, role: Role, state: State) -> Self {
        let port = 5432 + self.cluster.members.len() as u16;
        let mut m = Member::new(name, role, state);
        m.host = Some("127.0.0.1".into());
        m.port = Some(port);
        m.api_url = Some(format!("http://127.0.0.1:{}/patroni", 8008 + port - 5432));
        m.timeline = Some(1);
        if !m.role.is_leader() {
            // Read, and not kept behind on purpose (what heal's reader fills in).
            m.kept = Some(crate::model::Kept::default());
            m.receive_lag = Some(Lag::Bytes(0));
            m.replay_lag = Some(Lag::Bytes(0));
            m.receive_lsn = Some(Lsn(0x4000060));
            m.replay_lsn = Some(Lsn(0x4000060));
        }
        self.cluster.members.push(m);
        self
    }

    fn last(&mut self) -> &mut Member {
        self.cluster
            .members
            .last_mut()
            .expect("add a member before modifying it")
    }

    pub fn leader(self, name: &str) -> Self {
        self.push(name, Role::Leader, State::Running)
    }

    pub fn standby_leader(self, name: &str) -> Self {
        self.push(name, Role::StandbyLeader, State::Streaming)
    }

    pub fn replica(self, name: &str) -> Self {
        self.push(name, Role::Replica, State::Streaming)
    }

    pub fn sync_standby(self, name: &str) -> Self {
        self.push(name, Role::SyncStandby, State::Streaming)
    }

    pub fn quorum_standby(self, name: &str) -> Self {
        self.push(name, Role::QuorumStandby, State::Streaming)
    }

    pub fn state(mut self, state: State) -> Self {
        self.last().state = state;
        self
    }

    pub fn timeline(mut self, tl: u64) -> Self {
        self.last().timeline = Some(tl);
        self
    }

    pub fn tag(mut self, key: &str, value: serde_json::Value) -> Self {
        self.last().tags.insert(key.into(), value);
        self
    }

    /// Receive and replay lag both `mb` MB (a stalled walreceiver).
    pub fn lag_mb(self, mb: u64) -> Self {
        self.receive_lag_bytes(mb * MB).replay_lag_bytes(mb * MB)
    }

    pub fn replay_lag_mb(self, mb: u64) -> Self {
        self.replay_lag_bytes(mb * MB)
    }

    pub fn replay_lag_bytes(mut self, b: u64) -> Self {
        self.last().replay_lag = Some(Lag::Bytes(b));
        self
    }

    pub fn receive_lag_bytes(mut self, b: u64) -> Self {
        self.last().receive_lag = Some(Lag::Bytes(b));
        self
    }

    /// Lag unknown (Patroni says `"unknown"`: the member is not running or is busy).
    pub fn unknown_lag(mut self) -> Self {
        let m = self.last();
        m.receive_lag = Some(Lag::Unknown);
        m.replay_lag = Some(Lag::Unknown);
        m.receive_lsn = None;
        m.replay_lsn = None;
        self
    }

    pub fn paused(mut self) -> Self {
        self.cluster.paused = true;
        self
    }

    /// What heal's reader found on the member added last (its replay paused, a delay, ...);
    /// `None`: not read.
    pub fn kept(mut self, kept: Option<crate::model::Kept>) -> Self {
        if let Some(m) = self.cluster.members.last_mut() {
            m.kept = kept;
        }
        self
    }

    pub fn unlocked(mut self) -> Self {
        self.cluster.unlocked = true;
        self
    }

    pub fn failsafe(mut self) -> Self {
        self.cluster.failsafe_active = true;
        self
    }

    pub fn build(self) -> Cluster {
        self.cluster
    }
}
