//! A poller's metrics: per-member and per-cluster gauges from a snapshot, with the series
//! of members that left (or changed role or state) removed, and label values bounded.

use std::collections::BTreeMap;

use pgpatrol_core::sli::Sli;
use pgpatrol_core::{Cluster, LagKind, State};

use super::cl;
use super::metrics::*;
use super::poller::Poller;

impl Poller {
    /// Per-member and per-cluster gauges; series of members that left are removed.
    pub(super) fn export_cluster(&mut self, cluster: &Cluster) {
        let m = &self.shared.metrics;
        let name = self.name.clone();
        let c = cl(name.clone());
        let mut present = BTreeMap::new();
        for member in &cluster.members {
            // One allocation for the member's name, shared by its series.
            let mname: Name = member.name.as_str().into();
            let ml = MemberL {
                cluster: name.clone(),
                member: mname.clone(),
            };
            let (role, state) = (bounded_role(member), bounded_state(&member.state));
            if let Some((old_role, old_state)) = self.exported.get(&member.name) {
                self.clear_role_state(
                    &member.name,
                    (*old_role != role).then_some(*old_role),
                    (*old_state != state).then_some(*old_state),
                );
            }
            m.member_role
                .get_or_create(&MemberRoleL {
                    cluster: name.clone(),
                    member: mname.clone(),
                    role: Name::from_static(role),
                })
                .set(1);
            m.member_state
                .get_or_create(&MemberStateL {
                    cluster: name.clone(),
                    member: mname.clone(),
                    state: Name::from_static(state),
                })
                .set(1);
            present.insert(member.name.clone(), (role, state));
            if let Some(tl) = member.timeline {
                m.member_timeline.get_or_create(&ml).set(tl as i64);
            }
            m.member_up
                .get_or_create(&ml)
                .set(i64::from(member.state.is_healthy_replica()));
            for kind in [LagKind::Receive, LagKind::Replay] {
                let Some(lag) = member.lag(kind) else {
                    continue;
                };
                let l = MemberKindL {
                    cluster: name.clone(),
                    member: mname.clone(),
                    kind: Name::from_static(kind.as_str()),
                };
                match lag.bytes() {
                    // `member_lag_unknown` only while unknown: a healthy fleet has none.
                    Some(b) => {
                        m.member_lag_bytes.get_or_create(&l).set(b as f64);
                        m.member_lag_unknown.remove(&l);
                    }
                    None => {
                        m.member_lag_bytes.remove(&l);
                        m.member_lag_unknown.get_or_create(&l).set(1);
                    }
                }
            }
        }
        for (gone, (role, state)) in &self.exported {
            if !present.contains_key(gone) {
                self.clear_role_state(gone, Some(*role), Some(*state));
                self.clear_member(gone);
            }
        }
        self.exported = present;
        for kind in [LagKind::Receive, LagKind::Replay] {
            let sli = Sli::measure(cluster, kind);
            let l = ClusterKindL {
                cluster: name.clone(),
                kind: Name::from_static(kind.as_str()),
            };
            if let Some(b) = sli.max_bytes {
                m.cluster_sli_bytes.get_or_create(&l).set(b as f64);
            } else {
                m.cluster_sli_bytes.remove(&l);
            }
            if kind == LagKind::Replay {
                m.cluster_lag_unknown_members
                    .get_or_create(&c)
                    .set(sli.unknown.len() as i64);
                m.cluster_leaders
                    .get_or_create(&c)
                    .set(sli.leader_count as i64);
            }
        }
        m.cluster_paused
            .get_or_create(&c)
            .set(i64::from(cluster.paused));
        m.cluster_members
            .get_or_create(&c)
            .set(cluster.members.len() as i64);
        if let Some(tl) = cluster.leader().and_then(|l| l.timeline) {
            m.cluster_timeline.get_or_create(&c).set(tl as i64);
        }
    }

    /// Removes a member's role and/or state series (the values given).
    fn clear_role_state(
        &self,
        member: &str,
        role: Option<&'static str>,
        state: Option<&'static str>,
    ) {
        let m = &self.shared.metrics;
        if let Some(role) = role {
            m.member_role.remove(&MemberRoleL {
                cluster: self.name.clone(),
                member: member.into(),
                role: Name::from_static(role),
            });
        }
        if let Some(state) = state {
            m.member_state.remove(&MemberStateL {
                cluster: self.name.clone(),
                member: member.into(),
                state: Name::from_static(state),
            });
        }
    }

    /// Removes the other series of a member that left the cluster.
    fn clear_member(&self, member: &str) {
        let m = &self.shared.metrics;
        let ml = MemberL {
            cluster: self.name.clone(),
            member: member.into(),
        };
        m.member_timeline.remove(&ml);
        m.member_lag_seconds.remove(&ml);
        m.member_up.remove(&ml);
        for kind in ["receive", "replay"] {
            let l = MemberKindL {
                cluster: self.name.clone(),
                member: member.into(),
                kind: Name::from_static(kind),
            };
            m.member_lag_bytes.remove(&l);
            m.member_lag_unknown.remove(&l);
        }
    }
}

/// Roles outside Patroni's set become `other`, so label values stay bounded.
/// A role's label: Patroni's word (static text, never allocated), else `other`.
fn bounded_role(m: &pgpatrol_core::Member) -> &'static str {
    use pgpatrol_core::Role;
    match &m.role {
        Role::Leader => "leader",
        Role::StandbyLeader => "standby_leader",
        Role::SyncStandby => "sync_standby",
        Role::QuorumStandby => "quorum_standby",
        Role::Replica => "replica",
        Role::Other(_) => "other",
    }
}

/// A state's label: Patroni's words, else `other`.
fn bounded_state(s: &State) -> &'static str {
    State::NAMES
        .iter()
        .find(|(_, known)| known == s)
        .map_or("other", |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pgpatrol_core::State;

    use super::super::config::WatchConfig;
    use super::super::poller::tests::{series, test_poller};
    use super::super::Shared;

    #[test]
    fn one_role_and_state_series_per_member_and_none_once_it_left() {
        let cfg =
            WatchConfig::parse("clusters:\n  - {name: demo, urls: [http://x:8008]}\n").unwrap();
        let shared = Arc::new(Shared::new(&cfg));
        let mut p = test_poller(shared.clone());
        use pgpatrol_core::fixtures::ClusterBuilder;
        p.export_cluster(&ClusterBuilder::new().leader("a").replica("b").build());
        p.export_cluster(
            &ClusterBuilder::new()
                .replica("a")
                .leader("b")
                .replica("c")
                .state(State::Stopped)
                .build(),
        );
        assert_eq!(
            series(&shared, "member_role"),
            [
                r#"pgpatrol_member_role{cluster="demo",member="a",role="replica"}"#,
                r#"pgpatrol_member_role{cluster="demo",member="b",role="leader"}"#,
                r#"pgpatrol_member_role{cluster="demo",member="c",role="replica"}"#,
            ]
        );
        assert!(series(&shared, "member_state").contains(
            &r#"pgpatrol_member_state{cluster="demo",member="c",state="stopped"}"#.into()
        ));
        p.export_cluster(&ClusterBuilder::new().leader("b").build());
        assert_eq!(
            series(&shared, "member_role"),
            [r#"pgpatrol_member_role{cluster="demo",member="b",role="leader"}"#]
        );
        assert_eq!(
            series(&shared, "member_state"),
            [r#"pgpatrol_member_state{cluster="demo",member="b",state="running"}"#]
        );
        for family in [
            "member_up",
            "member_timeline",
            "member_lag_bytes",
            "member_lag_unknown",
        ] {
            assert!(
                series(&shared, family)
                    .iter()
                    .all(|l| l.contains(r#"member="b""#)),
                "{family}: {:?}",
                series(&shared, family)
            );
        }
    }

    #[test]
    fn standby_lag_series_exist_while_known_and_unknown_says_1() {
        use crate::source::standby::StandbyLag;
        use pgpatrol_core::Lsn;
        let cfg =
            WatchConfig::parse("clusters:\n  - {name: demo, urls: [http://x:8008]}\n").unwrap();
        let shared = Arc::new(Shared::new(&cfg));
        let p = test_poller(shared.clone());
        let src = "http://src:8008";
        let lag = StandbyLag {
            source: src.into(),
            source_leader: "a".into(),
            source_position: Lsn(100 << 20),
            standby_leader: "sb0".into(),
            replication_state: Some("streaming".into()),
            replay_paused: false,
            walsender_on_source: true,
            received: Some(Lsn(90 << 20)),
            replayed: Some(Lsn(80 << 20)),
            receive_lag: Some(10 << 20),
            replay_lag: Some(20 << 20),
            replay_lag_seconds: Some(3.5),
            seconds_note: None,
            archive_stalled_seconds: None,
        };
        p.export_standby(src, &Ok(lag.clone()));
        let text = {
            let mut t = String::new();
            shared.registry.encode(&mut t).unwrap();
            t
        };
        let l = r#"{cluster="demo",source="http://src:8008""#;
        assert!(
            text.contains(&format!(
                "pgpatrol_standby_lag_bytes{l},kind=\"receive\"}} 10485760"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "pgpatrol_standby_lag_bytes{l},kind=\"replay\"}} 20971520"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("pgpatrol_standby_lag_seconds{l}}} 3.5")),
            "{text}"
        );
        assert!(
            text.contains(&format!("pgpatrol_standby_lag_unknown{l}}} 0")),
            "{text}"
        );
        assert!(
            text.contains(&format!("pgpatrol_standby_replicating{l}}} 1")),
            "{text}"
        );
        // Not replicating (a failing restore_command): the lag stays, replicating says 0.
        p.export_standby(
            src,
            &Ok(StandbyLag {
                replication_state: None,
                ..lag
            }),
        );
        assert!(series(&shared, "standby_replicating").len() == 1);
        // Unknown is never 0: no lag series at all, and unknown says 1.
        p.export_standby(
            src,
            &Err("source http://src:8008: connection refused".into()),
        );
        assert!(series(&shared, "standby_lag_bytes").is_empty());
        assert!(series(&shared, "standby_lag_seconds").is_empty());
        let mut t = String::new();
        shared.registry.encode(&mut t).unwrap();
        assert!(
            t.contains(&format!("pgpatrol_standby_lag_unknown{l}}} 1")),
            "{t}"
        );
        assert!(
            t.contains(&format!("pgpatrol_standby_replicating{l}}} 0")),
            "{t}"
        );
    }

    #[test]
    fn an_archive_fed_standby_whose_replay_stands_still_is_not_replicating() {
        use crate::source::standby::{StandbyLag, ARCHIVE_STALL_AFTER};
        use pgpatrol_core::Lsn;
        let cfg =
            WatchConfig::parse("clusters:\n  - {name: demo, urls: [http://x:8008]}\n").unwrap();
        let mut p = test_poller(Arc::new(Shared::new(&cfg)));
        let read = |replayed: u64, source: u64| StandbyLag {
            source: "http://src:8008".into(),
            source_leader: "pg0".into(),
            source_position: Lsn(source),
            standby_leader: "sb0".into(),
            replication_state: Some("in archive recovery".into()),
            replay_paused: false,
            walsender_on_source: false,
            received: Some(Lsn(replayed)),
            replayed: Some(Lsn(replayed)),
            receive_lag: Some(source - replayed),
            replay_lag: Some(source - replayed),
            replay_lag_seconds: None,
            seconds_note: None,
            archive_stalled_seconds: None,
        };
        let t0 = std::time::Instant::now();
        let mb = 1u64 << 20;
        let mut at = |secs: u64, replayed: u64, source: u64| {
            let mut l = read(replayed, source);
            p.track_archive_stall(&mut l, t0 + std::time::Duration::from_secs(secs));
            l.archive_stalled_seconds
        };
        // Replay moves with the archive: never stalled.
        assert_eq!(at(0, 16 * mb, 20 * mb), None);
        assert_eq!(at(70, 32 * mb, 36 * mb), None);
        // Standing still, but less than two segments behind: the archive may not have it yet.
        assert_eq!(at(140, 32 * mb, 60 * mb), None);
        // Two segments or more behind from here on: stalled only after ARCHIVE_STALL_AFTER.
        assert_eq!(at(150, 32 * mb, 70 * mb), None);
        let after = 150 + ARCHIVE_STALL_AFTER.as_secs();
        assert_eq!(at(after - 1, 32 * mb, 90 * mb), None);
        assert_eq!(
            at(after, 32 * mb, 90 * mb),
            Some(ARCHIVE_STALL_AFTER.as_secs())
        );
        // Replay moves again: replicating.
        assert_eq!(at(after + 10, 48 * mb, 90 * mb), None);
    }
}
