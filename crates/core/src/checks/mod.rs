//! The runbook's checks as values: each gives OK / WARN / CRIT / UNKNOWN (or is skipped when
//! what it needs was not given), the evidence in numbers and member names, and the fix. The
//! thresholds default to the monitoring table of the operations runbook (seed 002).
//!
//! Pure: the edge gathers the evidence (REST answers, PostgreSQL rows, pgBackRest JSON) and
//! the clock; these functions only judge it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::model::{Cluster, Lag, LagKind, MemberStatus, PatroniVersion, Role, State};
use crate::units::human;

mod backup;
mod checklist;
mod pg;
mod rest;
mod standby;

pub use backup::*;
pub use checklist::*;
pub use pg::*;
pub use rest::*;
pub use standby::*;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Crit,
    /// The evidence was there but could not be judged (e.g. unknown lag).
    Unknown,
    /// Not run: what it needs was not given (the evidence says what would enable it).
    Skipped,
}

impl Status {
    /// The value of `pgpatrol_check` (skipped checks are not exported).
    pub fn code(self) -> Option<u8> {
        match self {
            Status::Ok => Some(0),
            Status::Warn => Some(1),
            Status::Crit => Some(2),
            Status::Unknown => Some(3),
            Status::Skipped => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Crit => "CRIT",
            Status::Unknown => "UNKNOWN",
            Status::Skipped => "SKIPPED",
        }
    }

    /// Needs attention: changes doctor's exit code.
    pub fn is_problem(self) -> bool {
        matches!(self, Status::Warn | Status::Crit | Status::Unknown)
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Stable id: the `check` label of `pgpatrol_check` and the key in `-o json`.
    pub id: &'static str,
    pub status: Status,
    /// What was seen, with numbers and member names.
    pub evidence: String,
    /// What to do about it (a pgpatrol command or the runbook step); none when OK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The measured figure the status was judged on, where there is one (the worst lag in
    /// bytes or seconds, a used fraction, a count, an age in seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

impl Check {
    fn new(id: &'static str, status: Status, evidence: impl Into<String>) -> Self {
        Check {
            id,
            status,
            evidence: evidence.into(),
            fix: None,
            value: None,
        }
    }

    fn value(mut self, v: f64) -> Self {
        self.value = Some(v);
        self
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        if self.status != Status::Ok {
            self.fix = Some(fix.into());
        }
        self
    }

    /// A check that needs `what` to run.
    pub fn skipped(id: &'static str, what: impl Into<String>) -> Self {
        Check::new(id, Status::Skipped, what)
    }
}

/// WARN above `warn`, CRIT above `crit`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Level {
    pub warn: f64,
    pub crit: f64,
}

impl Level {
    pub fn judge(&self, value: f64) -> Status {
        if value > self.crit {
            Status::Crit
        } else if value > self.warn {
            Status::Warn
        } else {
            Status::Ok
        }
    }
}

/// The thresholds, defaults from the runbook's monitoring table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thresholds {
    /// Replication lag in bytes: 50 MB / 100 MB.
    pub lag_bytes: Level,
    /// Replication lag in seconds: 30 s / 60 s.
    pub lag_seconds: Level,
    /// Connections in use against what clients may use: 80 % / 95 %.
    pub connections: Level,
    /// Disk usage of the data directory's filesystem: 70 % / 85 %.
    pub disk: Level,
    /// WAL archive failures since the last success: > 0 / > 5.
    pub archive_failures: Level,
    /// Failovers in the last 24 hours: > 1 / > 3.
    pub failovers_24h: Level,
    /// WAL an inactive replication slot holds back: 64 MB / 1 GB.
    pub slot_retained_bytes: Level,
    /// Age of the newest backup: WARN past this (24 h, seed 003), CRIT past twice it.
    pub backup_age: Duration,
    /// The newest archived WAL segment in the backup repository: WARN past this age.
    pub archive_age: Duration,
    /// Lag allowed for the pre-maintenance checklist ("lag < 10 seconds").
    pub maintenance_lag_seconds: f64,
}

const MB: f64 = 1024.0 * 1024.0;

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            lag_bytes: Level {
                warn: 50.0 * MB,
                crit: 100.0 * MB,
            },
            lag_seconds: Level {
                warn: 30.0,
                crit: 60.0,
            },
            connections: Level {
                warn: 0.80,
                crit: 0.95,
            },
            disk: Level {
                warn: 0.70,
                crit: 0.85,
            },
            archive_failures: Level {
                warn: 0.0,
                crit: 5.0,
            },
            failovers_24h: Level {
                warn: 1.0,
                crit: 3.0,
            },
            slot_retained_bytes: Level {
                warn: 64.0 * MB,
                crit: 1024.0 * MB,
            },
            backup_age: Duration::from_secs(24 * 3600),
            archive_age: Duration::from_secs(3600),
            maintenance_lag_seconds: 10.0,
        }
    }
}

/// Every check id, in the order doctor runs them (`pgpatrol_check`'s `check` label values;
/// the rules `slo rules` writes cover each).
pub const CHECK_IDS: [&str; 24] = [
    "dcs",
    "leader",
    "timeline",
    "replication",
    "lag_bytes",
    "lag_unknown",
    "transitional",
    "paused",
    "pending_restart",
    "scheduled",
    "failovers_24h",
    "failover_candidate",
    "sync_standby",
    "version_skew",
    "failsafe",
    "postgres",
    "lag_seconds",
    "connections",
    "archive",
    "slots",
    "pg_wal",
    "disk",
    "backup",
    "backup_archive",
];

/// The worst status of `checks`, skipped ones aside.
pub fn worst(checks: &[Check]) -> Status {
    checks
        .iter()
        .map(|c| c.status)
        .filter(|s| *s != Status::Skipped)
        .max()
        .unwrap_or(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use super::{backup::*, checklist::*, pg::*, rest::*, standby::*};
    use crate::fixtures::ClusterBuilder;
    use crate::pg::{Archiver, PgFacts, PgMember, Slot};

    #[test]
    fn the_standby_check_wants_replication_a_walsender_and_little_lag() {
        let t = Thresholds::default();
        let ok = StandbyFacts {
            standby_leader: "sb1".into(),
            source_leader: "pg0".into(),
            replication_state: Some("streaming".into()),
            replay_paused: false,
            receive_lag: Some(0),
            replay_lag: Some(1024),
            walsender_on_source: true,
            archive_stalled_seconds: None,
        };
        assert_eq!(standby_check(&ok, &t).status, Status::Ok);
        let far = StandbyFacts {
            replay_lag: Some(200 << 20),
            ..ok.clone()
        };
        assert_eq!(standby_check(&far, &t).status, Status::Crit);
        let no_sender = StandbyFacts {
            walsender_on_source: false,
            ..ok.clone()
        };
        let c = standby_check(&no_sender, &t);
        assert_eq!(c.status, Status::Warn);
        assert!(c.evidence.contains("no walsender"), "{}", c.evidence);
        let stopped = StandbyFacts {
            replication_state: None,
            ..ok.clone()
        };
        assert_eq!(standby_check(&stopped, &t).status, Status::Crit);
        let paused = StandbyFacts {
            replay_paused: true,
            ..ok.clone()
        };
        assert!(standby_check(&paused, &t)
            .evidence
            .contains("replay is paused"));
        let archive = StandbyFacts {
            replication_state: Some("in archive recovery".into()),
            walsender_on_source: false,
            ..ok
        };
        assert_eq!(standby_check(&archive, &t).status, Status::Ok);
        // In archive recovery, but nothing restored while the source is 48 MB ahead.
        let stalled = StandbyFacts {
            replay_lag: Some(48 << 20),
            receive_lag: Some(48 << 20),
            archive_stalled_seconds: Some(20),
            ..archive
        };
        let c = standby_check(&stalled, &t);
        assert_eq!(c.status, Status::Crit);
        assert!(
            c.evidence
                .contains("NOT replicating: nothing restored from the archive in 20 s"),
            "{}",
            c.evidence
        );
        assert!(c.fix.as_deref().unwrap_or("").contains("restore_command"));
    }
    use crate::Lsn;

    fn own(role: Role, version: &str) -> Result<MemberStatus, String> {
        Ok(MemberStatus {
            state: State::Running,
            role,
            replication_state: None,
            version: PatroniVersion::parse(version),
            postmaster_start_time: None,
            wal_position: Some(Lsn(1)),
            received: None,
            replayed: None,
            streaming_to: Vec::new(),
            paused: false,
            replay_paused: false,
            pending_restart: false,
            timeline: None,
            dcs_last_seen: None,
        })
    }

    fn healthy() -> Cluster {
        ClusterBuilder::new()
            .leader("pg0")
            .timeline(2)
            .replica("pg1")
            .timeline(2)
            .lag_mb(0)
            .replica("pg2")
            .timeline(2)
            .lag_mb(0)
            .build()
    }

    fn evidence(c: Cluster) -> RestEvidence {
        let mut own_map = BTreeMap::new();
        for m in &c.members {
            let role = if m.role.is_leader() {
                Role::Leader
            } else {
                Role::Replica
            };
            own_map.insert(m.name.clone(), own(role, "4.1.5"));
        }
        RestEvidence {
            samples: vec![c.clone(), c],
            own: own_map,
            observed: Duration::from_secs(4),
            failovers_24h: Some(0),
            ..Default::default()
        }
    }

    fn get<'a>(checks: &'a [Check], id: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no check {id}: {checks:#?}"))
    }

    #[test]
    fn a_healthy_cluster_is_ok_everywhere_with_no_fix() {
        let checks = rest_checks(&evidence(healthy()), &Thresholds::default());
        for c in &checks {
            assert_eq!(c.status, Status::Ok, "{c:?}");
            assert!(c.fix.is_none(), "{c:?}");
        }
        assert_eq!(worst(&checks), Status::Ok);
        assert!(checks.len() >= 15);
    }

    #[test]
    fn two_members_saying_primary_is_split_brain_whatever_the_dcs_says() {
        let mut e = evidence(healthy());
        e.own.insert("pg1".into(), own(Role::Leader, "4.1.5"));
        let c = rest_checks(&e, &Thresholds::default());
        let l = get(&c, "leader");
        assert_eq!(l.status, Status::Crit);
        assert!(
            l.evidence.contains("split brain: pg0, pg1"),
            "{}",
            l.evidence
        );
        assert!(l.fix.as_deref().unwrap_or("").contains("fence"));
    }

    #[test]
    fn lag_thresholds_are_the_runbooks() {
        let t = Thresholds::default();
        for (mb, want) in [(10, Status::Ok), (60, Status::Warn), (120, Status::Crit)] {
            let c = ClusterBuilder::new()
                .leader("pg0")
                .replica("pg1")
                .lag_mb(mb)
                .replica("pg2")
                .lag_mb(0)
                .build();
            let checks = rest_checks(&evidence(c), &t);
            let l = get(&checks, "lag_bytes");
            assert_eq!(l.status, want, "{mb} MB: {l:?}");
            if want != Status::Ok {
                assert!(l.evidence.contains("pg1"), "{}", l.evidence);
                assert!(l.fix.as_deref().unwrap_or("").contains("pgpatrol heal"));
            }
        }
    }

    #[test]
    fn unknown_lag_is_unknown_never_ok() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .unknown_lag()
            .build();
        let checks = rest_checks(&evidence(c), &Thresholds::default());
        assert_eq!(get(&checks, "lag_unknown").status, Status::Unknown);
        assert!(get(&checks, "lag_unknown").evidence.contains("pg1"));
    }

    #[test]
    fn a_member_starting_in_every_sample_is_stuck_and_a_passing_one_is_not() {
        let starting = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .state(State::Starting)
            .unknown_lag()
            .build();
        let mut e = evidence(starting.clone());
        e.samples = vec![starting.clone(), starting.clone(), starting.clone()];
        let checks = rest_checks(&e, &Thresholds::default());
        let t = get(&checks, "transitional");
        assert_eq!(t.status, Status::Warn);
        assert!(t.evidence.contains("pg1 starting"), "{}", t.evidence);
        e.samples = vec![healthy(), starting];
        let checks = rest_checks(&e, &Thresholds::default());
        assert_eq!(get(&checks, "transitional").status, Status::Ok);
    }

    /// One takeover rule: doctor judges a failover candidate as `failover` does
    /// (`candidates::candidates`): a replica on an older timeline, or with a
    /// `failover_priority` of 0 written as a string, cannot take over.
    #[test]
    fn doctor_and_failover_judge_candidates_alike() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .timeline(3)
            .replica("pg1")
            .lag_mb(0)
            .timeline(2)
            .replica("pg2")
            .lag_mb(0)
            .timeline(3)
            .tag("failover_priority", serde_json::json!("0"))
            .build();
        let checks = rest_checks(&evidence(c.clone()), &Thresholds::default());
        let f = get(&checks, "failover_candidate");
        assert_eq!(f.status, Status::Crit, "{}", f.evidence);
        assert!(
            f.evidence
                .contains("pg1: timeline 2, behind the leader's 3"),
            "{}",
            f.evidence
        );
        assert!(
            f.evidence.contains("pg2: failover_priority is 0"),
            "{}",
            f.evidence
        );
        let failover = crate::candidates::candidates(
            &c,
            &crate::candidates::TakeoverSettings::default(),
            crate::candidates::Takeover::Failover,
        );
        assert!(failover.iter().all(|c| !c.eligible));
    }

    /// Seen under the fault matrix (issue 24): a replica's Patroni hung (SIGSTOP) still
    /// streams in `/cluster` for up to a ttl. doctor said every check was OK and listed it
    /// as a failover candidate; its own `/patroni` is what tells.
    #[test]
    fn a_replica_whose_patroni_does_not_answer_is_named_and_no_candidate() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(0)
            .replica("pg2")
            .lag_mb(0)
            .build();
        let mut e = evidence(c);
        e.own.insert(
            "pg1".into(),
            Err("http://pg1:8008 did not answer within 3s".into()),
        );
        let checks = rest_checks(&e, &Thresholds::default());
        let r = get(&checks, "replication");
        assert_eq!(r.status, Status::Warn, "{}", r.evidence);
        assert!(
            r.evidence
                .contains("pg1 (its Patroni does not answer GET /patroni"),
            "{}",
            r.evidence
        );
        let f = get(&checks, "failover_candidate");
        assert_eq!(f.status, Status::Ok, "{}", f.evidence);
        assert_eq!(f.evidence, "failover candidate(s): pg2");
        // The only other replica silent too: no candidate at all.
        e.own.insert("pg2".into(), Err("refused".into()));
        let checks = rest_checks(&e, &Thresholds::default());
        assert_eq!(get(&checks, "failover_candidate").status, Status::Crit);
        assert_eq!(get(&checks, "replication").status, Status::Crit);
    }

    #[test]
    fn no_failover_candidate_names_each_reason() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(5)
            .replica("pg2")
            .lag_mb(0)
            .tag("nofailover", serde_json::json!(true))
            .build();
        let checks = rest_checks(&evidence(c), &Thresholds::default());
        let f = get(&checks, "failover_candidate");
        assert_eq!(f.status, Status::Crit);
        assert!(
            f.evidence
                .contains("pg1: 5.0 MB behind, over maximum_lag_on_failover")
                && f.evidence.contains("pg2: tagged nofailover"),
            "{}",
            f.evidence
        );
    }

    #[test]
    fn paused_pending_restart_failovers_sync_and_versions() {
        let mut c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(0)
            .paused()
            .build();
        c.members[1].pending_restart = true;
        let mut e = evidence(c);
        e.failovers_24h = Some(4);
        e.synchronous_mode = true;
        e.synchronous_mode_strict = true;
        e.own.insert("pg1".into(), own(Role::Replica, "4.0.7"));
        let checks = rest_checks(&e, &Thresholds::default());
        assert_eq!(get(&checks, "paused").status, Status::Warn);
        assert!(get(&checks, "pending_restart").evidence.contains("pg1"));
        assert_eq!(get(&checks, "failovers_24h").status, Status::Crit);
        assert_eq!(get(&checks, "sync_standby").status, Status::Crit);
        let v = get(&checks, "version_skew");
        assert_eq!(v.status, Status::Warn);
        assert!(v.evidence.contains("4.0.7 on pg1"), "{}", v.evidence);
    }

    #[test]
    fn the_dcs_unreachable_is_said_in_one_line_with_what_the_members_say() {
        let mut e = evidence(healthy());
        e.samples.clear();
        e.cluster_error = Some("connection closed".into());
        e.own.insert("pg0".into(), own(Role::Replica, "4.1.5"));
        let checks = rest_checks(&e, &Thresholds::default());
        let d = get(&checks, "dcs");
        assert_eq!(d.status, Status::Crit);
        assert!(
            d.evidence.starts_with("the DCS is unreachable"),
            "{}",
            d.evidence
        );
        assert!(d.evidence.contains("pg0 replica/running"), "{}", d.evidence);
        assert!(!d.evidence.contains('\n'));
        assert!(d.fix.as_deref().unwrap_or("").contains("DCS unreachable"));
        assert_eq!(get(&checks, "leader").status, Status::Crit);
    }

    #[test]
    fn status_codes_are_the_metric_values() {
        assert_eq!(Status::Ok.code(), Some(0));
        assert_eq!(Status::Warn.code(), Some(1));
        assert_eq!(Status::Crit.code(), Some(2));
        assert_eq!(Status::Unknown.code(), Some(3));
        assert_eq!(Status::Skipped.code(), None);
        assert!(!Status::Skipped.is_problem());
    }

    fn pg(name: &str, leader: bool, f: PgFacts) -> PgMember {
        PgMember {
            name: name.into(),
            leader,
            facts: Ok(f),
        }
    }

    fn leader_facts() -> PgFacts {
        PgFacts {
            connections: Some((10, 97)),
            current_lsn: Some(Lsn(1000)),
            archiver: Some(Archiver {
                archive_mode: "on".into(),
                archived_count: 5,
                last_archived: Some(100.0),
                ..Default::default()
            }),
            pg_wal_bytes: Some(64 << 20),
            ..Default::default()
        }
    }

    #[test]
    fn lag_in_seconds_is_zero_when_caught_up_on_an_idle_leader_and_grows_when_stalled() {
        let t = Thresholds::default();
        let idle = PgFacts {
            replay_lsn: Some(Lsn(1000)),
            replay_age_secs: Some(3600.0),
            connections: Some((1, 97)),
            ..Default::default()
        };
        let checks = pg_checks(
            &[pg("pg0", true, leader_facts()), pg("pg1", false, idle)],
            &[],
            &t,
        );
        assert_eq!(
            get(&checks, "lag_seconds").status,
            Status::Ok,
            "{checks:#?}"
        );
        let stalled = PgFacts {
            replay_lsn: Some(Lsn(400)),
            replay_age_secs: Some(45.0),
            ..Default::default()
        };
        let mut l = leader_facts();
        l.senders.insert("pg1".into(), Some(2.0));
        let checks = pg_checks(&[pg("pg0", true, l), pg("pg1", false, stalled)], &[], &t);
        let c = get(&checks, "lag_seconds");
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.evidence.contains("pg1 45 s"), "{}", c.evidence);
    }

    #[test]
    fn connections_archive_and_slots_against_the_runbook() {
        let t = Thresholds::default();
        let mut l = leader_facts();
        l.connections = Some((85, 97));
        l.archiver = Some(Archiver {
            archive_mode: "on".into(),
            archived_count: 3,
            failed_count: 7,
            last_archived: Some(100.0),
            last_failed: Some(200.0),
            last_failed_wal: Some("000000010000000000000004".into()),
        });
        l.slots = vec![
            Slot {
                name: "old_standby".into(),
                physical: true,
                active: false,
                wal_status: Some("reserved".into()),
                retained_bytes: Some(70 << 20),
            },
            Slot {
                name: "pg1".into(),
                physical: true,
                active: true,
                wal_status: Some("reserved".into()),
                retained_bytes: Some(0),
            },
        ];
        let checks = pg_checks(&[pg("pg0", true, l.clone())], &[], &t);
        assert_eq!(get(&checks, "connections").status, Status::Warn);
        let a = get(&checks, "archive");
        assert_eq!(a.status, Status::Crit, "{a:?}");
        assert!(a.evidence.contains("000000010000000000000004"));
        let s = get(&checks, "slots");
        assert_eq!(s.status, Status::Warn, "{s:?}");
        assert!(
            s.evidence.contains("old_standby") && !s.evidence.contains("pg1 ("),
            "{}",
            s.evidence
        );
        assert!(
            s.evidence
                .contains("pg_drop_replication_slot('old_standby')"),
            "{}",
            s.evidence
        );
        let checks = pg_checks(&[pg("pg0", true, l.clone())], &["old_standby".into()], &t);
        assert!(get(&checks, "slots").evidence.contains("kept by Patroni"));
        l.slots[0].wal_status = Some("lost".into());
        let checks = pg_checks(&[pg("pg0", true, l)], &[], &t);
        assert_eq!(get(&checks, "slots").status, Status::Crit);
    }

    #[test]
    fn a_member_that_cannot_be_queried_is_named_and_the_rest_still_run() {
        let members = [
            pg("pg0", true, leader_facts()),
            PgMember {
                name: "pg1".into(),
                leader: false,
                facts: Err("password authentication failed for user \"postgres\"".into()),
            },
        ];
        let checks = pg_checks(&members, &[], &Thresholds::default());
        let p = get(&checks, "postgres");
        assert_eq!(p.status, Status::Unknown);
        assert!(
            p.evidence.contains("pg1: password authentication failed"),
            "{}",
            p.evidence
        );
        assert_eq!(get(&checks, "connections").status, Status::Ok);
        assert_eq!(get(&checks, "disk").status, Status::Skipped);
    }

    fn info(stop: f64, max: &str) -> serde_json::Value {
        serde_json::json!([{"name": "lab", "status": {"code": 0, "message": "ok"},
            "archive": [{"id": "15-1", "max": max, "min": "000000010000000000000001"}],
            "backup": [
                {"type": "full", "timestamp": {"start": stop - 100.0, "stop": stop - 50.0}},
                {"type": "incr", "timestamp": {"start": stop - 10.0, "stop": stop}}]}])
    }

    /// Fuzz finding (`scripts/fuzz pgbackrest`, crash-92924706): a newline inside the
    /// archive's `max` WAL name made the evidence two lines long.
    #[test]
    fn fuzz_a_wal_name_with_a_newline_stays_on_one_line() {
        let info = serde_json::json!([{
            "name": "demo",
            "status": {"code": 0, "message": "ok"},
            "backup": [{"type": "full", "timestamp": {"stop": 100.0}}],
            "archive": [{"max": "00000\n#0020"}],
        }]);
        for c in backup_checks(&info, "demo", 200.0, None, &Thresholds::default()) {
            assert!(!c.evidence.contains('\n'), "{c:?}");
        }
    }

    /// Found writing the `fuzz::pg` target: a sign inside a WAL file name
    /// (`0000000100000000+0000005`) was read as a number; a WAL file name is 24 hex digits.
    #[test]
    fn fuzz_a_wal_name_with_a_sign_is_not_a_wal_name() {
        assert_eq!(
            wal_distance("000000010000000000000005", "000000010000000000000004"),
            Some(1)
        );
        assert_eq!(
            wal_distance("0000000100000000+0000005", "000000010000000000000004"),
            None
        );
        assert_eq!(
            wal_distance("000000010000000000000005", "00000001-000000000000004"),
            None
        );
    }

    #[test]
    fn backup_age_and_archive_against_the_thresholds() {
        let t = Thresholds::default();
        let now = 1_000_000.0;
        let c = backup_checks(
            &info(now - 3600.0, "00000001000000000000000A"),
            "lab",
            now,
            Some("00000001000000000000000B"),
            &t,
        );
        assert_eq!(get(&c, "backup").status, Status::Ok, "{c:#?}");
        assert!(get(&c, "backup").evidence.contains("incr 1.0 h"), "{c:#?}");
        assert_eq!(get(&c, "backup_archive").status, Status::Ok);
        let c = backup_checks(
            &info(now - 30.0 * 3600.0, "000000010000000000000001"),
            "lab",
            now,
            Some("0000000100000001000000FF"),
            &t,
        );
        assert_eq!(get(&c, "backup").status, Status::Warn, "{c:#?}");
        let a = get(&c, "backup_archive");
        assert_eq!(a.status, Status::Warn, "{a:?}");
        assert!(a.evidence.contains("510 segments behind"), "{}", a.evidence);
        let c = backup_checks(&info(now - 50.0 * 3600.0, "x"), "lab", now, None, &t);
        assert_eq!(get(&c, "backup").status, Status::Crit);
    }

    #[test]
    fn a_missing_stanza_is_critical_with_the_command_that_makes_it() {
        let v = serde_json::json!([{"name": "nope", "status": {"code": 1, "message": "missing stanza path"}, "backup": [], "archive": []}]);
        let c = backup_checks(&v, "nope", 0.0, None, &Thresholds::default());
        assert_eq!(c[0].status, Status::Crit);
        assert!(
            c[0].evidence.contains("missing stanza path"),
            "{}",
            c[0].evidence
        );
        assert!(c[0].fix.as_deref().unwrap_or("").contains("stanza-create"));
        let c = backup_checks(
            &serde_json::json!({"not": "an array"}),
            "lab",
            0.0,
            None,
            &Thresholds::default(),
        );
        assert_eq!(c[0].status, Status::Unknown);
    }

    #[test]
    fn the_pre_maintenance_list_wants_lag_below_10_seconds_and_names_person_steps() {
        let t = Thresholds::default();
        let mut checks = rest_checks(&evidence(healthy()), &t);
        let lag = |secs: f64| {
            Check::new(
                "lag_seconds",
                t.lag_seconds.judge(secs),
                format!("pg1 {secs:.0} s"),
            )
            .value(secs)
        };
        checks.push(lag(4.0));
        let list = checklist(Checklist::Pre, &checks, &t);
        assert_eq!(list.len(), 6);
        assert_eq!(list[0].status, Status::Ok, "{list:#?}");
        assert_eq!(list[1].status, Status::Ok);
        assert_eq!(list[2].status, Status::Skipped, "no backup check given");
        assert_eq!(list[3].evidence, "a step for a person");
        checks.pop();
        checks.push(lag(15.0));
        let list = checklist(Checklist::Pre, &checks, &t);
        assert_eq!(
            list[1].status,
            Status::Crit,
            "15 s is fine for alerting, not before maintenance"
        );
        let lagging = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(60)
            .replica("pg2")
            .lag_mb(0)
            .build();
        let list = checklist(Checklist::Pre, &rest_checks(&evidence(lagging), &t), &t);
        assert_eq!(list[0].status, Status::Warn, "{list:#?}");
        assert!(
            list[0].evidence.contains("lag_bytes"),
            "{}",
            list[0].evidence
        );
        let post = checklist(Checklist::Post, &rest_checks(&evidence(healthy()), &t), &t);
        assert_eq!(post[0].status, Status::Ok);
    }

    #[test]
    fn every_check_id_is_listed() {
        let t = Thresholds::default();
        let mut all = rest_checks(&evidence(healthy()), &t);
        all.extend(pg_checks(&[pg("pg0", true, leader_facts())], &[], &t));
        all.extend(backup_checks(
            &info(1.0, "000000010000000000000001"),
            "lab",
            2.0,
            Some("000000010000000000000001"),
            &t,
        ));
        let mut ids: Vec<&str> = all.iter().map(|c| c.id).collect();
        ids.dedup();
        assert_eq!(ids, CHECK_IDS.to_vec());
    }
}
