//! Patroni's REST JSON, mirrored field for field and leniently (everything optional that
//! Patroni may leave out), and converted into the core model in one place: [`into_cluster`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use pgpatrol_core::{
    Cluster, HistoryEntry, Lag, LagSource, Lsn, Member, PatroniVersion, Role, State,
};

/// `GET /cluster` (`patroni/utils.py cluster_as_json`).
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterWire {
    pub members: Vec<MemberWire>,
    #[serde(default)]
    pub pause: Option<bool>,
    #[serde(default)]
    pub scheduled_switchover: Option<ScheduledSwitchoverWire>,
    /// 3.2.0+.
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScheduledSwitchoverWire {
    pub at: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

/// A member in `/cluster`. Lags are `int | "unknown"`, LSNs `"X/Y" | "unknown"`.
#[derive(Debug, Clone, Deserialize)]
pub struct MemberWire {
    pub name: String,
    pub role: String,
    pub state: String,
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub timeline: Option<u64>,
    /// Legacy (all versions): lag of `lsn` = max(receive, replay): effectively receive lag.
    #[serde(default)]
    pub lag: Option<Value>,
    /// 4.1.0+.
    #[serde(default)]
    pub lsn: Option<String>,
    #[serde(default)]
    pub receive_lag: Option<Value>,
    #[serde(default)]
    pub receive_lsn: Option<String>,
    #[serde(default)]
    pub replay_lag: Option<Value>,
    #[serde(default)]
    pub replay_lsn: Option<String>,
    #[serde(default)]
    pub pending_restart: Option<bool>,
    /// 3.3.0+: `{"<guc>": {"old_value": .., "new_value": ..}}`.
    #[serde(default)]
    pub pending_restart_reason: Option<Value>,
    #[serde(default)]
    pub scheduled_restart: Option<Value>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, Value>>,
}

impl ClusterWire {
    /// This answer as one cluster's view: Patroni's `/cluster` lists each member once (they
    /// are keys in the DCS). A name listed twice would let a decision about one entry be
    /// carried out on the other (a replica's reinit sent to the leader's API), so the answer
    /// is refused, naming the second entry.
    pub fn checked(self, url: &str) -> Result<ClusterWire, crate::source::http::HttpError> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, m) in self.members.iter().enumerate() {
            if !seen.insert(m.name.as_str()) {
                return Err(crate::source::http::HttpError::Shape {
                    url: url.to_string(),
                    endpoint: "/cluster".into(),
                    path: format!("members[{i}].name"),
                    reason: format!("{:?} is listed twice: not one cluster's view", m.name),
                });
            }
        }
        Ok(self)
    }
}

impl MemberWire {
    /// This member carries 4.1's `receive_*`/`replay_*` keys.
    pub fn has_split_lag(&self) -> bool {
        self.receive_lag.is_some() || self.replay_lag.is_some()
    }
}

/// `GET /patroni` and every health-check endpoint's body (`get_postgresql_status`).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct StatusWire {
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub postmaster_start_time: Option<String>,
    #[serde(default)]
    pub server_version: Option<u64>,
    #[serde(default)]
    pub xlog: Option<XlogWire>,
    #[serde(default)]
    pub timeline: Option<u64>,
    #[serde(default)]
    pub replication_state: Option<String>,
    #[serde(default)]
    pub pause: Option<bool>,
    #[serde(default)]
    pub cluster_unlocked: Option<bool>,
    #[serde(default)]
    pub failsafe_mode_is_active: Option<bool>,
    #[serde(default)]
    pub database_system_identifier: Option<String>,
    #[serde(default)]
    pub dcs_last_seen: Option<u64>,
    #[serde(default)]
    pub sync_standby: Option<bool>,
    #[serde(default)]
    pub quorum_standby: Option<bool>,
    #[serde(default)]
    pub pending_restart: Option<bool>,
    #[serde(default)]
    pub patroni: Option<PatroniInfoWire>,
    /// A leader's `pg_stat_replication` rows.
    #[serde(default)]
    pub replication: Option<Vec<ReplicationWire>>,
}

/// One row of a leader's `replication` in `/patroni`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ReplicationWire {
    #[serde(default)]
    pub application_name: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
}

impl StatusWire {
    /// What the member says of itself, in the core model.
    pub fn to_status(&self) -> pgpatrol_core::MemberStatus {
        let x = self.xlog.as_ref();
        pgpatrol_core::MemberStatus {
            state: pgpatrol_core::State::parse(self.state.as_deref().unwrap_or("unknown")),
            role: pgpatrol_core::Role::parse(self.role.as_deref().unwrap_or("unknown")),
            replication_state: self.replication_state.clone(),
            version: self.version(),
            postmaster_start_time: self.postmaster_start_time.clone(),
            wal_position: x.and_then(|x| x.location).map(pgpatrol_core::Lsn),
            received: x.and_then(|x| x.received_location).map(pgpatrol_core::Lsn),
            replayed: x.and_then(|x| x.replayed_location).map(pgpatrol_core::Lsn),
            streaming_to: self
                .replication
                .iter()
                .flatten()
                .filter(|r| r.state.as_deref() == Some("streaming"))
                .filter_map(|r| r.application_name.clone())
                .collect(),
            paused: self.pause.unwrap_or(false),
            replay_paused: x.and_then(|x| x.paused).unwrap_or(false),
            pending_restart: self.pending_restart.unwrap_or(false),
            timeline: self.timeline,
            dcs_last_seen: self.dcs_last_seen,
        }
    }

    pub fn version(&self) -> Option<PatroniVersion> {
        self.patroni
            .as_ref()
            .and_then(|p| p.version.as_deref())
            .and_then(PatroniVersion::parse)
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct XlogWire {
    /// Primary: `pg_current_wal_flush_lsn` in bytes.
    #[serde(default)]
    pub location: Option<u64>,
    #[serde(default)]
    pub received_location: Option<u64>,
    #[serde(default)]
    pub replayed_location: Option<u64>,
    #[serde(default)]
    pub replayed_timestamp: Option<String>,
    #[serde(default)]
    pub paused: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct PatroniInfoWire {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    /// 3.2.0+.
    #[serde(default)]
    pub name: Option<String>,
}

/// `GET /history`: lists of 3, 4 or 5 elements `[tl, lsn, reason, timestamp, new_leader]`.
pub type HistoryWire = Vec<Vec<Value>>;

fn lag(v: &Option<Value>) -> Option<Lag> {
    v.as_ref()
        .map(|v| v.as_u64().map_or(Lag::Unknown, Lag::Bytes))
}

fn lsn(s: &Option<String>) -> Option<Lsn> {
    s.as_deref().and_then(|s| s.parse().ok())
}

/// Replay figures for Patroni < 4.1, from each member's own `/patroni`.
#[derive(Debug, Clone, Default)]
pub struct LegacyReplay {
    /// The leader's own view (its `xlog.location`), if its `/patroni` answered.
    pub leader: Option<pgpatrol_core::MemberStatus>,
    /// Each replica's own view (received and replayed positions) by member name.
    pub replicas: BTreeMap<String, pgpatrol_core::MemberStatus>,
}

/// Converts `/cluster` (plus, when asked, the answering node's `/patroni` and the legacy
/// replay figures) into the model. The one place where wire becomes model.
pub fn into_cluster(
    wire: ClusterWire,
    status: Option<&StatusWire>,
    legacy: Option<&LegacyReplay>,
) -> Cluster {
    let members = wire
        .members
        .into_iter()
        .map(|w| {
            let role = Role::parse(&w.role);
            let mut m = Member::new(w.name.clone(), role, State::parse(&w.state));
            m.host = w.host.clone();
            m.port = w.port;
            m.api_url = w.api_url.clone();
            m.timeline = w.timeline;
            m.pending_restart = w.pending_restart.unwrap_or(false);
            m.pending_restart_reason = w.pending_restart_reason.clone();
            m.scheduled_restart = w.scheduled_restart.clone();
            m.tags = w.tags.clone().unwrap_or_default();
            if !m.role.is_leader() {
                member_lag(&mut m, &w, legacy);
            }
            m
        })
        .collect();
    let mut cluster = Cluster::new(members);
    cluster.scope = wire.scope.or_else(|| {
        status
            .and_then(|s| s.patroni.as_ref())
            .and_then(|p| p.scope.clone())
    });
    cluster.paused = wire.pause.unwrap_or(false);
    cluster.scheduled_switchover =
        wire.scheduled_switchover
            .map(|s| pgpatrol_core::ScheduledSwitchover {
                at: s.at,
                from: s.from,
                to: s.to,
            });
    if let Some(s) = status {
        cluster.patroni_version = s.version();
        cluster.system_identifier = s.database_system_identifier.clone();
        cluster.unlocked = s.cluster_unlocked.unwrap_or(false);
        cluster.failsafe_active = s.failsafe_mode_is_active.unwrap_or(false);
        cluster.paused |= s.pause.unwrap_or(false);
    }
    if legacy.is_some() {
        cluster.lag_source = LagSource::MemberStatus;
    }
    cluster
}

fn member_lag(m: &mut Member, w: &MemberWire, legacy: Option<&LegacyReplay>) {
    if w.has_split_lag() {
        // 4.1+: receive_* and replay_* against the DCS leader optime.
        m.receive_lag = lag(&w.receive_lag);
        m.replay_lag = lag(&w.replay_lag);
        m.receive_lsn = lsn(&w.receive_lsn);
        m.replay_lsn = lsn(&w.replay_lsn);
        let split_unknown = m.receive_lsn.is_none() && m.replay_lsn.is_none();
        if split_unknown && lsn(&w.lsn).is_some() {
            // A member still running Patroni < 4.1 inside a 4.1 cluster publishes only `lsn`:
            // patronictl shows it as receive when streaming, else as replay. So do we.
            if m.state == State::Streaming {
                m.receive_lag = lag(&w.lag);
                m.receive_lsn = lsn(&w.lsn);
            } else {
                m.replay_lag = lag(&w.lag);
                m.replay_lsn = lsn(&w.lsn);
            }
        }
        return;
    }
    // < 4.1: `lag` is receive lag. Replay lag is never taken from it: a replica that receives
    // but cannot replay must show. It comes from the members' own /patroni, or stays unknown.
    m.receive_lag = Some(lag(&w.lag).unwrap_or(Lag::Unknown));
    m.replay_lag = Some(Lag::Unknown);
    if let Some(legacy) = legacy {
        if let Some(x) = legacy.replicas.get(&m.name) {
            m.receive_lsn = x.received;
            m.replay_lsn = x.replayed;
            // The one rule, in core: leader position minus the replica's replayed position.
            if let Some(b) = legacy
                .leader
                .as_ref()
                .and_then(|l| x.lag_behind(l, pgpatrol_core::LagKind::Replay))
            {
                m.replay_lag = Some(Lag::Bytes(b));
            }
        }
    }
}

/// Why a `/history` line could not be read: its index (from 0) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHistoryLine {
    pub index: usize,
    pub line: String,
}

/// Converts `/history` lines; entries may have 3, 4 or 5 elements.
pub fn into_history(wire: HistoryWire) -> Result<Vec<HistoryEntry>, BadHistoryLine> {
    wire.into_iter()
        .enumerate()
        .map(|(index, line)| {
            let bad = || BadHistoryLine {
                index,
                line: crate::text::snippet(&Value::Array(line.clone()).to_string()),
            };
            let timeline = line.first().and_then(Value::as_u64).ok_or_else(bad)?;
            let lsn = line.get(1).and_then(Value::as_u64).ok_or_else(bad)?;
            let reason = line
                .get(2)
                .and_then(Value::as_str)
                .ok_or_else(bad)?
                .to_string();
            let text = |i: usize| line.get(i).and_then(Value::as_str).map(str::to_string);
            Ok(HistoryEntry {
                timeline,
                lsn: Lsn(lsn),
                reason,
                timestamp: text(3),
                new_leader: text(4),
            })
        })
        .collect()
}

/// `/cluster` in the pre-4.1 shape: replicas carry `lag` but no `replay_lag`, so their
/// replay positions must be asked of the members themselves.
pub fn needs_legacy_replay(wire: &ClusterWire) -> bool {
    wire.members
        .iter()
        .any(|m| !Role::parse(&m.role).is_leader() && !m.has_split_lag())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::capture;

    fn cluster(name: &str) -> Cluster {
        into_cluster(serde_json::from_str(&capture(name)).unwrap(), None, None)
    }

    #[test]
    fn reads_415_replay_lag_capture() {
        let c = cluster("cluster_replay_lag.json");
        assert_eq!(c.scope.as_deref(), Some("hdemo"));
        assert_eq!(c.leader().map(|m| m.name.as_str()), Some("node1"));
        let node2 = c.member("node2").unwrap();
        assert_eq!(node2.receive_lag, Some(Lag::Bytes(0)));
        assert_eq!(node2.replay_lag, Some(Lag::Bytes(115_571_712)));
        assert_eq!(node2.replay_lsn, Some("0/EE523E8".parse().unwrap()));
        assert_eq!(node2.state, State::Streaming);
        assert_eq!(c.lag_source, LagSource::Cluster);
    }

    #[test]
    fn reads_304_paused_capture_with_unknown_lag() {
        let c = cluster("cluster_304_paused_stopped.json");
        assert!(c.paused);
        assert_eq!(c.scope, None);
        let node2 = c.member("node2").unwrap();
        assert_eq!(node2.state, State::Stopped);
        assert_eq!(node2.receive_lag, Some(Lag::Unknown));
        // Without /patroni figures, replay lag on < 4.1 is unknown, never the legacy `lag`.
        assert_eq!(c.member("node1").unwrap().replay_lag, Some(Lag::Unknown));
    }

    #[test]
    fn legacy_replay_lag_comes_from_member_status() {
        let wire: ClusterWire = serde_json::from_str(&capture("cluster_304.json")).unwrap();
        let status = |x: XlogWire| {
            StatusWire {
                xlog: Some(x),
                ..Default::default()
            }
            .to_status()
        };
        let mut legacy = LegacyReplay {
            leader: Some(status(XlogWire {
                location: Some(300),
                ..Default::default()
            })),
            ..Default::default()
        };
        legacy.replicas.insert(
            "node1".into(),
            status(XlogWire {
                received_location: Some(300),
                replayed_location: Some(100),
                ..Default::default()
            }),
        );
        let c = into_cluster(wire, None, Some(&legacy));
        let node1 = c.member("node1").unwrap();
        assert_eq!(node1.receive_lag, Some(Lag::Bytes(0)));
        assert_eq!(node1.replay_lag, Some(Lag::Bytes(200)));
        // node2's /patroni did not answer: unknown, not zero.
        assert_eq!(c.member("node2").unwrap().replay_lag, Some(Lag::Unknown));
        assert_eq!(c.lag_source, LagSource::MemberStatus);
    }

    #[test]
    fn status_captures_parse() {
        let s: StatusWire = serde_json::from_str(&capture("patroni_leader_304.json")).unwrap();
        assert_eq!(s.version(), Some(PatroniVersion::new(3, 0, 4)));
        assert_eq!(Role::parse(s.role.as_deref().unwrap()), Role::Leader);
        let s: StatusWire = serde_json::from_str(&capture("patroni_replica.json")).unwrap();
        assert_eq!(s.xlog.unwrap().replayed_location, Some(67_108_960));
    }

    #[test]
    fn every_captured_version_parses() {
        let versions = crate::test_support::captured_versions();
        for v in ["2.1.7", "3.0.2", "3.0.4", "3.3.11", "4.0.11", "4.1.5"] {
            assert!(
                versions.iter().any(|c| c == v),
                "no captures of {v}: {versions:?}"
            );
        }
        for v in versions {
            let version = PatroniVersion::parse(&v).unwrap();
            let file = |name: &str| capture(&format!("{v}/{name}"));
            let leader: StatusWire = serde_json::from_str(&file("patroni_leader.json")).unwrap();
            let replica: StatusWire = serde_json::from_str(&file("patroni_replica.json")).unwrap();
            assert_eq!(leader.version(), Some(version), "{v}");
            assert_eq!(
                Role::parse(leader.role.as_deref().unwrap()),
                Role::Leader,
                "{v}"
            );
            assert!(leader.xlog.as_ref().unwrap().location.is_some(), "{v}");
            let xlog = replica.xlog.clone().unwrap();
            assert!(
                xlog.replayed_location.is_some() && xlog.received_location.is_some(),
                "{v}"
            );

            let wire: ClusterWire = serde_json::from_str(&file("cluster.json")).unwrap();
            let split = version >= PatroniVersion::new(4, 1, 0);
            assert_eq!(
                wire.members.iter().any(MemberWire::has_split_lag),
                split,
                "{v}"
            );
            let replica_name = replica.patroni.as_ref().and_then(|p| p.name.clone());
            let mut legacy = LegacyReplay {
                leader: Some(leader.to_status()),
                ..Default::default()
            };
            // Before 3.2 /patroni has no member name: pair by elimination in /cluster below.
            let c = into_cluster(wire.clone(), None, None);
            let leader_name = c.leader().map(|m| m.name.clone()).unwrap();
            assert_eq!(
                c.members.iter().filter(|m| m.role == Role::Leader).count(),
                1,
                "{v}"
            );
            for m in c.members.iter().filter(|m| m.name != leader_name) {
                assert!(
                    matches!(m.state, State::Streaming | State::Running),
                    "{v}: {} is {:?}",
                    m.name,
                    m.state
                );
                assert_eq!(m.receive_lag, Some(Lag::Bytes(0)), "{v}: {}", m.name);
                if !split {
                    // < 4.1: replay lag needs /patroni; without it, unknown (never 0).
                    assert_eq!(m.replay_lag, Some(Lag::Unknown), "{v}: {}", m.name);
                }
                if replica_name.as_deref().is_none_or(|n| n == m.name) {
                    legacy.replicas.insert(m.name.clone(), replica.to_status());
                }
            }
            if !split {
                let c = into_cluster(wire, None, Some(&legacy));
                assert!(
                    c.members
                        .iter()
                        .filter(|m| legacy.replicas.contains_key(&m.name))
                        .all(|m| matches!(m.replay_lag, Some(Lag::Bytes(_)))),
                    "{v}: replay lag from /patroni"
                );
            }

            let history = into_history(serde_json::from_str(&file("history.json")).unwrap())
                .unwrap_or_else(|e| panic!("{v}: {e:?}"));
            assert!(!history.is_empty(), "{v}: the capture follows a switchover");
            assert!(history.iter().all(|h| h.timestamp.is_some()), "{v}");
            let config: Value = serde_json::from_str(&file("config.json")).unwrap();
            assert!(
                config["ttl"].is_number() && config["loop_wait"].is_number(),
                "{v}"
            );
            let metrics = file("metrics_leader.txt");
            let encoded = metrics
                .lines()
                .find(|l| l.starts_with("patroni_version"))
                .and_then(|l| l.split_whitespace().last())
                .unwrap_or_else(|| panic!("{v}: no patroni_version in /metrics"));
            // Patroni writes 4.1.5 as 040105.
            let (a, b, c) = (version.major, version.minor, version.patch);
            assert_eq!(encoded, format!("{a:02}{b:02}{c:02}"), "{v}");
        }
    }

    #[test]
    fn history_lines_of_3_4_and_5_elements() {
        let wire: HistoryWire = serde_json::from_str(
            r#"[[1, 25623960, "no recovery target specified"],
                [2, 26000000, "no recovery target specified", "2019-09-23T16:57:57+02:00"],
                [3, 134218120, "no recovery target specified", "2026-11-22T03:46:12.910825+00:00", "node1"]]"#,
        )
        .unwrap();
        let h = into_history(wire).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].timestamp, None);
        assert_eq!(h[2].new_leader.as_deref(), Some("node1"));
        assert!(into_history(vec![vec![Value::from("x")]]).is_err());
    }

    /// Fuzz finding (`scripts/fuzz cluster`, crash-487ebab3): a `/cluster` naming `node1`
    /// twice, once as the leader and once as a lagging replica. A decision about the
    /// replica would have been carried out on whatever `node1` the runner looked up first.
    #[test]
    fn fuzz_a_member_named_twice_is_refused_naming_the_entry() {
        let wire: ClusterWire = serde_json::from_str(
            r#"{"members":[{"name":"node0","role":"replica","state":"streaming","lag":0},
            {"name":"node1","role":"leader","state":"running"},
            {"name":"node1","role":"replica","state":"streaming","lag":0}]}"#,
        )
        .unwrap();
        let e = wire.checked("http://x:8008/cluster").unwrap_err();
        let line = e.to_string();
        assert!(line.contains("at members[2].name"), "{line}");
        assert!(line.contains("\"node1\" is listed twice"), "{line}");
        let ok: ClusterWire = serde_json::from_str(&capture("cluster_lag.json")).unwrap();
        assert!(ok.checked("http://x:8008/cluster").is_ok());
    }

    #[test]
    fn a_member_running_old_patroni_in_a_41_cluster() {
        let wire: ClusterWire = serde_json::from_str(
            r#"{"members":[{"name":"a","role":"leader","state":"running"},
            {"name":"b","role":"replica","state":"streaming","receive_lag":"unknown","receive_lsn":"unknown",
             "replay_lag":"unknown","replay_lsn":"unknown","lag":1048576,"lsn":"0/100000"}]}"#,
        )
        .unwrap();
        let c = into_cluster(wire, None, None);
        let b = c.member("b").unwrap();
        assert_eq!(b.receive_lag, Some(Lag::Bytes(1_048_576)));
        assert_eq!(b.replay_lag, Some(Lag::Unknown));
    }
}
