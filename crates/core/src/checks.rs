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

/// What the REST API showed, gathered by the edge.
#[derive(Debug, Clone, Default)]
pub struct RestEvidence {
    /// `/cluster` readings over the observe window, oldest first (empty when `/cluster`
    /// never answered).
    pub samples: Vec<Cluster>,
    /// Why `/cluster` did not answer, when it did not.
    pub cluster_error: Option<String>,
    /// Each member's own `/patroni` (by member name, or by URL when `/cluster` is down).
    pub own: BTreeMap<String, Result<MemberStatus, String>>,
    /// How long the observe window was.
    pub observed: Duration,
    /// Failovers and switchovers in the last 24 hours (from `/history`), if it was read.
    pub failovers_24h: Option<usize>,
    /// `maximum_lag_on_failover` of the dynamic configuration (Patroni's default: 1 MB).
    pub maximum_lag_on_failover: Option<u64>,
    /// `synchronous_mode` and `synchronous_mode_strict` of the dynamic configuration.
    pub synchronous_mode: bool,
    pub synchronous_mode_strict: bool,
    /// The permanent replication slots Patroni keeps (`slots` of the dynamic configuration).
    pub permanent_slots: Vec<String>,
}

/// Patroni's default `maximum_lag_on_failover`.
pub const DEFAULT_MAXIMUM_LAG_ON_FAILOVER: u64 = 1024 * 1024;

/// The one-line diagnosis when `/cluster` fails while members answer `/patroni`.
pub fn dcs_unreachable_line(own: &BTreeMap<String, Result<MemberStatus, String>>) -> String {
    let seen: Vec<String> = own
        .iter()
        .filter_map(|(name, s)| {
            s.as_ref()
                .ok()
                .map(|s| format!("{name} {}/{}", s.role, s.state))
        })
        .collect();
    format!(
        "the DCS is unreachable: members answer /patroni but not /cluster, which Patroni reads from the DCS ({}); check etcd (or the Kubernetes API) and the members' logs",
        seen.join(", ")
    )
}

fn names(v: &[String]) -> String {
    v.join(", ")
}

/// The checks that need only the REST API.
pub fn rest_checks(e: &RestEvidence, t: &Thresholds) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(c) = e.samples.last() else {
        // `/cluster` is down: say what the members say of themselves, and nothing that
        // needs the DCS view.
        let answering = e.own.values().filter(|s| s.is_ok()).count();
        let why = e.cluster_error.clone().unwrap_or_default();
        let check = if answering > 0 {
            Check::new("dcs", Status::Crit, dcs_unreachable_line(&e.own))
        } else {
            Check::new("dcs", Status::Crit, format!("no member answers: {why}"))
        };
        out.push(check.fix(
            "runbook \"DCS unreachable\": check that etcd (or the Kubernetes API) is up and reachable from every member; Patroni demotes the leader without it unless failsafe_mode is on",
        ));
        out.push(split_brain(e, None));
        return out;
    };
    out.push(Check::new("dcs", Status::Ok, "the DCS answers (/cluster)"));
    out.push(split_brain(e, Some(c)));
    out.push(timeline(c));
    out.push(streaming(c));
    out.push(lag_bytes(c, t));
    out.push(lag_unknown(c));
    out.push(transitional(e));
    out.push(paused(c));
    out.push(pending_restart(c));
    out.push(scheduled(c));
    out.push(failovers(e, t));
    out.push(failover_candidate(e, c));
    out.push(sync_standby(e, c));
    out.push(version_skew(e));
    out.push(failsafe(c));
    out
}

/// Exactly one leader, and the members' own `/patroni` agree: two members saying primary is
/// split brain whatever `/cluster` says.
fn split_brain(e: &RestEvidence, c: Option<&Cluster>) -> Check {
    let own_leaders: Vec<String> = e
        .own
        .iter()
        .filter(|(_, s)| {
            s.as_ref()
                .is_ok_and(|s| s.role.is_leader() && s.state == State::Running)
        })
        .map(|(n, _)| n.clone())
        .collect();
    let dcs_leaders: Vec<String> = c
        .map(|c| c.leaders().map(|m| m.name.clone()).collect())
        .unwrap_or_default();
    if own_leaders.len() > 1 {
        return Check::new(
            "leader",
            Status::Crit,
            format!(
                "split brain: {} each say they are a running primary (their own /patroni); /cluster shows {}",
                names(&own_leaders),
                if dcs_leaders.is_empty() { "no leader".to_string() } else { names(&dcs_leaders) }
            ),
        )
        .fix("runbook \"split brain\": stop writes to all but the DCS leader at once (fence the others), then reinitialize them: pgpatrol reinit MEMBER");
    }
    let Some(_) = c else {
        return match own_leaders.first() {
            Some(l) => Check::new(
                "leader",
                Status::Warn,
                format!("{l} says it is the running primary (its own /patroni); the DCS cannot confirm it"),
            )
            .fix("restore the DCS: without it Patroni demotes the leader unless failsafe_mode is on"),
            None => Check::new(
                "leader",
                Status::Crit,
                "no member says it is a running primary",
            )
            .fix("runbook \"cannot connect to the primary\": check the members' logs; pgpatrol list"),
        };
    };
    match dcs_leaders.len() {
        0 => Check::new("leader", Status::Crit, "no leader in /cluster")
            .fix("runbook \"cannot connect to the primary\": check why no member can take the leader lock (patroni logs); failover to a healthy replica if needed"),
        1 => {
            let l = dcs_leaders.first().map(String::as_str).unwrap_or_default();
            let agrees = own_leaders.is_empty() || own_leaders.iter().any(|o| o == l);
            if agrees {
                Check::new("leader", Status::Ok, format!("one leader: {l}"))
            } else {
                Check::new(
                    "leader",
                    Status::Crit,
                    format!(
                        "/cluster says {l} leads, but {} says it is the running primary",
                        names(&own_leaders)
                    ),
                )
                .fix("runbook \"split brain\": fence the member that is not the DCS leader and reinitialize it")
            }
        }
        _ => Check::new(
            "leader",
            Status::Crit,
            format!("more than one leader in /cluster: {}", names(&dcs_leaders)),
        )
        .fix("runbook \"split brain\""),
    }
}

fn running(m: &crate::model::Member) -> bool {
    matches!(
        m.state,
        State::Running | State::Streaming | State::InArchiveRecovery
    )
}

fn timeline(c: &Cluster) -> Check {
    let mut by_tl: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for m in c.members.iter().filter(|m| running(m)) {
        if let Some(tl) = m.timeline {
            by_tl.entry(tl).or_default().push(m.name.clone());
        }
    }
    let leader_tl = c.leader().and_then(|l| l.timeline);
    match by_tl.len() {
        0 => Check::new(
            "timeline",
            Status::Unknown,
            "no running member reports a timeline",
        ),
        1 => {
            let tl = by_tl.keys().next().copied().unwrap_or_default();
            Check::new(
                "timeline",
                Status::Ok,
                format!("every running member on timeline {tl}"),
            )
        }
        _ => {
            let behind: Vec<String> = by_tl
                .iter()
                .filter(|(tl, _)| Some(**tl) != leader_tl)
                .flat_map(|(tl, ms)| ms.iter().map(move |m| format!("{m} on {tl}")))
                .collect();
            Check::new(
                "timeline",
                Status::Warn,
                format!(
                    "running members on different timelines (leader on {}): {}",
                    leader_tl.map_or("?".to_string(), |t| t.to_string()),
                    names(&behind)
                ),
            )
            .fix("a member on an old timeline did not follow the last failover: pgpatrol reinit MEMBER (or let Patroni rewind it)")
        }
    }
}

fn streaming(c: &Cluster) -> Check {
    let total = c.replicas().count();
    let not: Vec<String> = c
        .replicas()
        .filter(|m| !m.state.is_healthy_replica())
        .map(|m| format!("{} {}", m.name, m.state))
        .collect();
    if not.is_empty() {
        return Check::new(
            "replication",
            Status::Ok,
            format!("{total} replica(s), all replicating"),
        );
    }
    let status = if not.len() == total {
        Status::Crit
    } else {
        Status::Warn
    };
    Check::new(
        "replication",
        status,
        format!("{} of {total} replica(s) not replicating: {}", not.len(), names(&not)),
    )
    .fix("pgpatrol list; check that member's Patroni log; if it cannot start again: pgpatrol reinit MEMBER")
}

fn lag_bytes(c: &Cluster, t: &Thresholds) -> Check {
    let mut worst: Option<(u64, &str)> = None;
    let mut over = Vec::new();
    for m in c.replicas() {
        let lag = [LagKind::Receive, LagKind::Replay]
            .into_iter()
            .filter_map(|k| m.lag(k).and_then(Lag::bytes))
            .max();
        if let Some(b) = lag {
            if worst.is_none_or(|(w, _)| b > w) {
                worst = Some((b, &m.name));
            }
            if t.lag_bytes.judge(b as f64) != Status::Ok {
                over.push(format!("{} {}", m.name, human(b)));
            }
        }
    }
    let Some((b, name)) = worst else {
        return Check::new("lag_bytes", Status::Ok, "no replica with a known lag");
    };
    let status = t.lag_bytes.judge(b as f64);
    let evidence = if status == Status::Ok {
        format!(
            "worst replica lag {} ({name}), within {}",
            human(b),
            human(t.lag_bytes.warn as u64)
        )
    } else {
        format!(
            "replica lag above {} / {}: {}",
            human(t.lag_bytes.warn as u64),
            human(t.lag_bytes.crit as u64),
            names(&over)
        )
    };
    Check::new("lag_bytes", status, evidence).value(b as f64).fix(
        "runbook \"replica not catching up\": check the leader's pg_stat_replication; if it cannot catch up: pgpatrol heal --dry-run, then pgpatrol heal",
    )
}

fn lag_unknown(c: &Cluster) -> Check {
    let unknown: Vec<String> = c
        .replicas()
        .filter(|m| m.lag(LagKind::Replay) == Some(Lag::Unknown))
        .map(|m| format!("{} ({})", m.name, m.state))
        .collect();
    if unknown.is_empty() {
        Check::new("lag_unknown", Status::Ok, "every replica's lag is known")
    } else {
        Check::new(
            "lag_unknown",
            Status::Unknown,
            format!("lag unknown (Patroni reports none): {}", names(&unknown)),
        )
        .fix("a member that is not running or is busy has no lag: pgpatrol list; check its Patroni log")
    }
}

fn transitional(e: &RestEvidence) -> Check {
    // Stuck: in a transitional state in every sample of the window.
    let Some(last) = e.samples.last() else {
        return Check::new("transitional", Status::Unknown, "no /cluster reading");
    };
    let stuck: Vec<String> = last
        .members
        .iter()
        .filter(|m| m.state.is_in_transition())
        .filter(|m| {
            e.samples.iter().all(|s| {
                s.member(&m.name)
                    .is_some_and(|x| x.state.is_in_transition())
            })
        })
        .map(|m| format!("{} {}", m.name, m.state))
        .collect();
    let window = format!(
        "{} samples over {:.0} s",
        e.samples.len(),
        e.observed.as_secs_f64()
    );
    if stuck.is_empty() {
        Check::new(
            "transitional",
            Status::Ok,
            format!(
                "no member stuck starting, stopping, restarting or creating a replica ({window})"
            ),
        )
    } else {
        Check::new(
            "transitional",
            Status::Warn,
            format!("in a transitional state in every one of {window}: {}", names(&stuck)),
        )
        .fix("check that member's Patroni and PostgreSQL logs (pgpatrol list shows it); a replica that cannot start may need pgpatrol reinit MEMBER")
    }
}

fn paused(c: &Cluster) -> Check {
    if c.paused {
        Check::new(
            "paused",
            Status::Warn,
            "the cluster is paused (maintenance mode): Patroni does not fail over",
        )
        .fix("when maintenance is over: patronictl resume --wait")
    } else {
        Check::new("paused", Status::Ok, "not paused")
    }
}

fn pending_restart(c: &Cluster) -> Check {
    let pending: Vec<String> = c
        .members
        .iter()
        .filter(|m| m.pending_restart)
        .map(|m| m.name.clone())
        .collect();
    if pending.is_empty() {
        Check::new("pending_restart", Status::Ok, "no member needs a restart")
    } else {
        Check::new(
            "pending_restart",
            Status::Warn,
            format!(
                "a changed parameter waits for a restart on: {}",
                names(&pending)
            ),
        )
        .fix("a rolling restart, replicas first: patronictl restart CLUSTER MEMBER --pending, one member at a time")
    }
}

fn scheduled(c: &Cluster) -> Check {
    let mut what = Vec::new();
    if let Some(s) = &c.scheduled_switchover {
        what.push(format!(
            "switchover at {}{}",
            s.at,
            s.to.as_deref()
                .map(|t| format!(" to {t}"))
                .unwrap_or_default()
        ));
    }
    for m in c.members.iter().filter(|m| m.scheduled_restart.is_some()) {
        what.push(format!("restart of {}", m.name));
    }
    if what.is_empty() {
        Check::new("scheduled", Status::Ok, "nothing scheduled")
    } else {
        Check::new(
            "scheduled",
            Status::Warn,
            format!("scheduled: {}", what.join(", ")),
        )
        .fix("expected? else cancel it: patronictl flush CLUSTER restart|switchover")
    }
}

fn failovers(e: &RestEvidence, t: &Thresholds) -> Check {
    let Some(n) = e.failovers_24h else {
        return Check::new(
            "failovers_24h",
            Status::Unknown,
            "/history could not be read",
        );
    };
    let status = t.failovers_24h.judge(n as f64);
    Check::new(
        "failovers_24h",
        status,
        format!(
            "{n} failover(s)/switchover(s) in the last 24 h (warn above {}, crit above {})",
            t.failovers_24h.warn, t.failovers_24h.crit
        ),
    )
    .fix("pgpatrol history: find why the leader keeps changing (its logs, the DCS, resources)")
}

fn failover_candidate(e: &RestEvidence, c: &Cluster) -> Check {
    let max_lag = e
        .maximum_lag_on_failover
        .unwrap_or(DEFAULT_MAXIMUM_LAG_ON_FAILOVER);
    // The one takeover rule (`candidates::candidates`), for a failover: the leader gone.
    let settings = crate::candidates::TakeoverSettings {
        maximum_lag_on_failover: max_lag,
        synchronous_mode: e.synchronous_mode,
        quorum: false,
    };
    let mut good = Vec::new();
    let mut why = Vec::new();
    for cand in crate::candidates::candidates(c, &settings, crate::candidates::Takeover::Failover) {
        if cand.eligible {
            good.push(cand.name);
        } else {
            why.push(format!("{}: {}", cand.name, cand.reasons.join(", ")));
        }
    }
    if !good.is_empty() {
        return Check::new(
            "failover_candidate",
            Status::Ok,
            format!("failover candidate(s): {}", names(&good)),
        );
    }
    let evidence = if why.is_empty() {
        "no replica at all: a failure of the leader is an outage".to_string()
    } else {
        format!("no replica could take over: {}", why.join("; "))
    };
    Check::new("failover_candidate", Status::Crit, evidence)
        .fix("heal the lagging replicas (pgpatrol heal), remove nofailover where it is not meant, or add a replica")
}

fn sync_standby(e: &RestEvidence, c: &Cluster) -> Check {
    if !e.synchronous_mode {
        return Check::new("sync_standby", Status::Ok, "synchronous_mode is off");
    }
    let sync: Vec<String> = c
        .members
        .iter()
        .filter(|m| matches!(m.role, Role::SyncStandby | Role::QuorumStandby))
        .map(|m| m.name.clone())
        .collect();
    if !sync.is_empty() {
        return Check::new(
            "sync_standby",
            Status::Ok,
            format!("synchronous standby: {}", names(&sync)),
        );
    }
    let (status, effect) = if e.synchronous_mode_strict {
        (
            Status::Crit,
            "synchronous_mode_strict: commits on the leader wait",
        )
    } else {
        (
            Status::Warn,
            "commits are not replicated synchronously until one is back",
        )
    };
    Check::new(
        "sync_standby",
        status,
        format!("synchronous_mode is on but no member is a synchronous standby ({effect})"),
    )
    .fix("bring a healthy replica back (pgpatrol list; pgpatrol heal)")
}

fn version_skew(e: &RestEvidence) -> Check {
    let mut by: BTreeMap<PatroniVersion, Vec<String>> = BTreeMap::new();
    for (name, s) in &e.own {
        if let Ok(Some(v)) = s.as_ref().map(|s| s.version) {
            by.entry(v).or_default().push(name.clone());
        }
    }
    match by.len() {
        0 => Check::new(
            "version_skew",
            Status::Unknown,
            "no member reported its Patroni version",
        ),
        1 => {
            let v = by.keys().next().map(|v| v.to_string()).unwrap_or_default();
            Check::new(
                "version_skew",
                Status::Ok,
                format!("every member runs Patroni {v}"),
            )
        }
        _ => {
            let list: Vec<String> = by
                .iter()
                .map(|(v, ms)| format!("{v} on {}", names(ms)))
                .collect();
            Check::new(
                "version_skew",
                Status::Warn,
                format!("members run different Patroni versions: {}", list.join("; ")),
            )
            .fix("finish the upgrade: one version across the cluster (an upgrade in progress is expected to show this)")
        }
    }
}

fn failsafe(c: &Cluster) -> Check {
    if c.failsafe_active {
        Check::new(
            "failsafe",
            Status::Warn,
            "failsafe mode is active: the DCS is unreachable and the leader runs on the members' consent",
        )
        .fix("restore the DCS (etcd or the Kubernetes API)")
    } else {
        Check::new("failsafe", Status::Ok, "failsafe mode is not active")
    }
}

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

/// The PostgreSQL checks. `permanent_slots` are the slots Patroni keeps (its `slots`
/// configuration): dropping them is no fix, they come back.
pub fn pg_checks(members: &[PgMember], permanent_slots: &[String], t: &Thresholds) -> Vec<Check> {
    let mut out = Vec::new();
    let failed: Vec<String> = members
        .iter()
        .filter_map(|m| m.facts.as_ref().err().map(|e| format!("{}: {e}", m.name)))
        .collect();
    out.push(if failed.is_empty() {
        Check::new(
            "postgres",
            Status::Ok,
            format!("connected to {} member(s)", members.len()),
        )
    } else {
        Check::new(
            "postgres",
            Status::Unknown,
            format!("cannot query PostgreSQL on {}", failed.join("; ")),
        )
        .fix("check --pg-user/--pg-password-file (or postgresql.authentication in -c patroni.yml), pg_hba.conf and the port")
    });
    let leader = members
        .iter()
        .find(|m| m.leader)
        .and_then(|m| m.facts.as_ref().ok());
    out.push(lag_seconds(members, leader, t));
    out.push(connections(members, t));
    out.push(archive(leader, t));
    out.push(slots(leader, permanent_slots, t));
    out.push(pg_wal(members));
    out.push(disk(members, t));
    out
}

/// Each replica's replay lag in seconds (`None`: not measurable, e.g. it could not be
/// queried). Caught up (nothing left to replay): 0 s, however old its last transaction is,
/// since an idle leader writes none; else the larger of the sender's `replay_lag` and how
/// long ago the replica's last replayed transaction committed.
pub fn lag_seconds_by_member(members: &[PgMember]) -> Vec<(String, Option<f64>)> {
    let leader = members
        .iter()
        .find(|m| m.leader)
        .and_then(|m| m.facts.as_ref().ok());
    members
        .iter()
        .filter(|m| !m.leader)
        .map(|m| {
            let secs = match (leader, &m.facts) {
                (Some(leader), Ok(f)) => {
                    let behind = match (leader.current_lsn, f.replay_lsn) {
                        (Some(top), Some(r)) => Some(top.bytes_after(r)),
                        _ => None,
                    };
                    match behind {
                        Some(0) => Some(0.0),
                        Some(_) => {
                            let sender = leader.senders.get(&m.name).copied().flatten();
                            match (sender, f.replay_age_secs) {
                                (None, None) => None,
                                (a, b) => Some(a.unwrap_or(0.0).max(b.unwrap_or(0.0))),
                            }
                        }
                        None => None,
                    }
                }
                _ => None,
            };
            (m.name.clone(), secs)
        })
        .collect()
}

fn lag_seconds(members: &[PgMember], leader: Option<&PgFacts>, t: &Thresholds) -> Check {
    if leader.is_none() {
        return Check::new(
            "lag_seconds",
            Status::Unknown,
            "the leader's PostgreSQL could not be queried",
        );
    }
    let mut figures = Vec::new();
    let mut unknown = Vec::new();
    for (name, secs) in lag_seconds_by_member(members) {
        match secs {
            Some(s) => figures.push((name, s)),
            None => unknown.push(name),
        }
    }
    if !unknown.is_empty() && figures.is_empty() {
        return Check::new(
            "lag_seconds",
            Status::Unknown,
            format!("no lag in seconds for {}", names(&unknown)),
        );
    }
    let worst = figures.iter().map(|(_, s)| *s).fold(0.0_f64, f64::max);
    let status = t.lag_seconds.judge(worst);
    let list: Vec<String> = figures
        .iter()
        .map(|(n, s)| format!("{n} {s:.0} s"))
        .collect();
    let mut evidence = format!(
        "replay lag in seconds: {} (warn above {:.0} s, crit above {:.0} s)",
        list.join(", "),
        t.lag_seconds.warn,
        t.lag_seconds.crit
    );
    if !unknown.is_empty() {
        evidence.push_str(&format!("; unknown for {}", names(&unknown)));
    }
    let status = if unknown.is_empty() {
        status
    } else {
        status.max(Status::Unknown)
    };
    Check::new("lag_seconds", status, evidence).value(worst).fix(
        "runbook \"replica not catching up\": is the replica replaying (its startup process, conflicts, I/O)? if it cannot catch up: pgpatrol heal",
    )
}

fn connections(members: &[PgMember], t: &Thresholds) -> Check {
    let mut worst: Option<(f64, String)> = None;
    let mut list = Vec::new();
    for m in members {
        if let Ok(PgFacts {
            connections: Some((used, usable)),
            ..
        }) = &m.facts
        {
            let r = if *usable == 0 {
                1.0
            } else {
                *used as f64 / *usable as f64
            };
            list.push(format!("{} {used}/{usable}", m.name));
            if worst.as_ref().is_none_or(|(w, _)| r > *w) {
                worst = Some((r, m.name.clone()));
            }
        }
    }
    let Some((r, name)) = worst else {
        return Check::new(
            "connections",
            Status::Unknown,
            "no member's connections could be counted",
        );
    };
    Check::new(
        "connections",
        t.connections.judge(r),
        format!(
            "client connections used of those allowed (max_connections minus reserved): {} (worst {name} {:.0} %)",
            list.join(", "),
            r * 100.0
        ),
    )
    .value(r)
    .fix("find who holds them (pg_stat_activity by application and state); use a pooler, or raise max_connections (needs a restart)")
}

fn archive(leader: Option<&PgFacts>, t: &Thresholds) -> Check {
    let Some(a) = leader.and_then(|l| l.archiver.as_ref()) else {
        return Check::new(
            "archive",
            Status::Unknown,
            "pg_stat_archiver could not be read on the leader",
        );
    };
    if a.archive_mode == "off" {
        return Check::new(
            "archive",
            Status::Ok,
            "archive_mode is off: no WAL archiving to check",
        );
    }
    let failing = match (a.last_failed, a.last_archived) {
        (Some(f), Some(ok)) => f > ok,
        (Some(_), None) => true,
        _ => false,
    };
    if !failing {
        return Check::new(
            "archive",
            Status::Ok,
            format!(
                "archiving: {} WAL file(s) archived, no failure since the last success",
                a.archived_count
            ),
        );
    }
    let status = t
        .archive_failures
        .judge(a.failed_count as f64)
        .max(Status::Warn);
    Check::new(
        "archive",
        status,
        format!(
            "archive_command is failing: {} failure(s), last on {} after the last success",
            a.failed_count,
            a.last_failed_wal.as_deref().unwrap_or("?")
        ),
    )
    .fix("read the leader's PostgreSQL log for archive_command's error (repository reachable? space? credentials?); WAL piles up in pg_wal until it works")
}

fn slots(leader: Option<&PgFacts>, permanent: &[String], t: &Thresholds) -> Check {
    let Some(l) = leader else {
        return Check::new(
            "slots",
            Status::Unknown,
            "the leader's slots could not be read",
        );
    };
    let mut problems = Vec::new();
    let mut status = Status::Ok;
    for s in &l.slots {
        let lost = matches!(s.wal_status.as_deref(), Some("lost" | "unreserved"));
        let retained = s.retained_bytes.unwrap_or(0);
        let st = if lost {
            Status::Crit
        } else if !s.active {
            t.slot_retained_bytes.judge(retained as f64)
        } else {
            Status::Ok
        };
        if st != Status::Ok {
            let managed = if permanent.contains(&s.name) {
                "kept by Patroni (permanent slots): remove it from the slots configuration: pgpatrol edit-config --set slots.NAME=null"
            } else {
                "not managed by Patroni: pgpatrol slot drop NAME (SELECT pg_drop_replication_slot('NAME')) if nothing will use it"
            };
            problems.push(format!(
                "{} ({}, {}, retains {}, wal_status {}; {})",
                s.name,
                if s.physical { "physical" } else { "logical" },
                if s.active { "active" } else { "inactive" },
                human(retained),
                s.wal_status.as_deref().unwrap_or("?"),
                managed.replace("NAME", &s.name)
            ));
            status = status.max(st);
        }
    }
    if problems.is_empty() {
        return Check::new(
            "slots",
            Status::Ok,
            format!(
                "{} slot(s), none inactive holding WAL beyond {}",
                l.slots.len(),
                human(t.slot_retained_bytes.warn as u64)
            ),
        );
    }
    Check::new("slots", status, format!("slots holding WAL: {}", problems.join("; ")))
        .fix("drop the abandoned slot, or bound what slots may hold: max_slot_wal_keep_size (a slot past it becomes lost)")
}

fn pg_wal(members: &[PgMember]) -> Check {
    let sizes: Vec<String> = members
        .iter()
        .filter_map(|m| {
            m.facts
                .as_ref()
                .ok()
                .and_then(|f| f.pg_wal_bytes)
                .map(|b| format!("{} {}", m.name, human(b)))
        })
        .collect();
    if sizes.is_empty() {
        return Check::new(
            "pg_wal",
            Status::Unknown,
            "pg_ls_waldir() could not be read (needs superuser or pg_monitor)",
        );
    }
    Check::new(
        "pg_wal",
        Status::Ok,
        format!("pg_wal size: {}", sizes.join(", ")),
    )
}

fn disk(members: &[PgMember], t: &Thresholds) -> Check {
    let mut worst: Option<(f64, String)> = None;
    let mut list = Vec::new();
    for m in members {
        if let Ok(f) = &m.facts {
            if let Some(u) = f.disk_used {
                list.push(format!("{} {:.0} %", m.name, u * 100.0));
                if worst.as_ref().is_none_or(|(w, _)| u > *w) {
                    worst = Some((u, m.name.clone()));
                }
            }
        }
    }
    let Some((u, _)) = worst else {
        return Check::skipped("disk", "the data directories are not on this host: run doctor on the database hosts to check their disk");
    };
    Check::new(
        "disk",
        t.disk.judge(u),
        format!("data directory filesystem used: {} (warn above {:.0} %, crit above {:.0} %)", list.join(", "), t.disk.warn * 100.0, t.disk.crit * 100.0),
    )
    .value(u)
    .fix("runbook \"disk full\": check pg_wal (archiving, slots) first; free space or grow the volume")
}

/// The backup checks from `pgbackrest info --output=json` (the array it prints) for
/// `stanza`: the stanza's status, the age of its newest backup (by type), and whether the
/// repository's newest archived WAL keeps up with the leader's current WAL file.
pub fn backup_checks(
    info: &serde_json::Value,
    stanza: &str,
    now_epoch: f64,
    current_walfile: Option<&str>,
    t: &Thresholds,
) -> Vec<Check> {
    let Some(s) = info
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == stanza))
    else {
        return vec![Check::new(
            "backup",
            Status::Unknown,
            format!("pgbackrest info does not list the stanza {stanza}"),
        )
        .fix("check --pgbackrest-stanza and --pgbackrest-config")];
    };
    let code = s["status"]["code"].as_i64();
    // What pgbackrest printed goes into one-line evidence: control characters escaped.
    let message = crate::text::printable(s["status"]["message"].as_str().unwrap_or("?"));
    if code != Some(0) {
        return vec![Check::new(
            "backup",
            Status::Crit,
            format!(
                "stanza {stanza}: {message} (status code {})",
                code.map_or("?".to_string(), |c| c.to_string())
            ),
        )
        .fix(format!(
            "create it or take the first backup: pgbackrest --stanza={stanza} stanza-create; pgbackrest --stanza={stanza} backup --type=full"
        ))];
    }
    let backups = s["backup"].as_array().cloned().unwrap_or_default();
    // Ordered oldest to newest by stop time: the newest of each type is its last entry.
    let mut newest: BTreeMap<String, f64> = BTreeMap::new();
    for b in &backups {
        if b["error"] == serde_json::Value::Bool(true) {
            continue;
        }
        if let (Some(ty), Some(stop)) = (b["type"].as_str(), b["timestamp"]["stop"].as_f64()) {
            let e = newest
                .entry(crate::text::printable(ty).into_owned())
                .or_insert(stop);
            *e = e.max(stop);
        }
    }
    let Some(latest) = newest.values().copied().reduce(f64::max) else {
        return vec![Check::new(
            "backup",
            Status::Crit,
            format!("stanza {stanza} has no valid backup"),
        )
        .fix(format!("pgbackrest --stanza={stanza} backup --type=full"))];
    };
    let age = (now_epoch - latest).max(0.0);
    let limit = t.backup_age.as_secs_f64();
    let status = if age > 2.0 * limit {
        Status::Crit
    } else if age > limit {
        Status::Warn
    } else {
        Status::Ok
    };
    let by_type: Vec<String> = newest
        .iter()
        .map(|(ty, stop)| format!("{ty} {}", age_text(now_epoch - stop)))
        .collect();
    let mut out = vec![Check::new(
        "backup",
        status,
        format!(
            "stanza {stanza} ok; newest backup {} old (warn past {}): {}",
            age_text(age),
            age_text(limit),
            by_type.join(", ")
        ),
    )
    .value(age)
    .fix(format!(
        "runbook \"trigger manual backup\": pgbackrest --stanza={stanza} backup --type=full (and check why the schedule did not run)"
    ))];
    let max = s["archive"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|a| a["max"].as_str())
        .map(crate::text::printable);
    let max = max.as_deref();
    out.push(match (max, current_walfile) {
        (None, _) => Check::new("backup_archive", Status::Crit, format!("stanza {stanza} holds no archived WAL"))
            .fix("archive_command must push to the repository: pgbackrest --stanza=STANZA archive-push %p".replace("STANZA", stanza)),
        (Some(m), None) => Check::new(
            "backup_archive",
            Status::Unknown,
            format!("newest archived WAL {m}; the leader's current WAL file is unknown (no PostgreSQL checks)"),
        ),
        (Some(m), Some(cur)) => {
            let behind = wal_distance(cur, m);
            match behind {
                Some(n) if n <= 1 => Check::new(
                    "backup_archive",
                    Status::Ok,
                    format!("newest archived WAL {m} keeps up with the leader's {cur}"),
                ),
                Some(n) => Check::new(
                    "backup_archive",
                    Status::Warn,
                    format!("the repository's newest WAL {m} is {n} segments behind the leader's {cur}"),
                )
                .fix("check archiving (doctor's archive check, the leader's log); a restore could not reach the last transactions"),
                None => Check::new(
                    "backup_archive",
                    Status::Unknown,
                    format!("cannot compare WAL names {m} and {cur}"),
                ),
            }
        }
    });
    out
}

/// How many 16 MB segments `older` is behind `newer` (24-hex WAL file names, same timeline
/// or not); `None` when a name is not a WAL file name.
pub fn wal_distance(newer: &str, older: &str) -> Option<i64> {
    // pgbackrest info does not say the segment size: PostgreSQL's default, 16 MB.
    let seg = |name: &str| {
        crate::lsn::wal_segment_no(name, 16 * 1024 * 1024).and_then(|n| i64::try_from(n).ok())
    };
    Some(seg(newer)? - seg(older)?)
}

fn age_text(secs: f64) -> String {
    let s = secs.max(0.0);
    if s >= 86_400.0 {
        format!("{:.1} d", s / 86_400.0)
    } else if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

/// The PostgreSQL checks, skipped: `why` says what would enable them.
pub fn pg_skipped(why: &str) -> Vec<Check> {
    [
        "lag_seconds",
        "connections",
        "archive",
        "slots",
        "pg_wal",
        "disk",
    ]
    .into_iter()
    .map(|id| Check::skipped(id, why))
    .collect()
}

/// One line of a maintenance checklist: the runbook's words, and the checks that decide it
/// (none: a step for a person, listed so the list is whole).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChecklistItem {
    pub item: &'static str,
    pub status: Status,
    pub evidence: String,
}

/// Which checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checklist {
    Pre,
    Post,
}

/// The runbook's pre- or post-maintenance checklist (seed 002), decided by `checks`. Before
/// maintenance, lag must be below `maintenance_lag_seconds` ("lag < 10 seconds"), stricter
/// than the alerting thresholds.
pub fn checklist(which: Checklist, checks: &[Check], t: &Thresholds) -> Vec<ChecklistItem> {
    let find = |id: &str| checks.iter().find(|c| c.id == id);
    let decide = |item: &'static str, ids: &[&str]| -> ChecklistItem {
        let found: Vec<&Check> = ids.iter().filter_map(|id| find(id)).collect();
        let ran: Vec<&&Check> = found
            .iter()
            .filter(|c| c.status != Status::Skipped)
            .collect();
        if ran.is_empty() {
            let why = found
                .first()
                .map(|c| c.evidence.clone())
                .unwrap_or_else(|| "not checked".into());
            return ChecklistItem {
                item,
                status: Status::Skipped,
                evidence: why,
            };
        }
        let status = ran.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
        let evidence = ran
            .iter()
            .filter(|c| c.status == status)
            .map(|c| format!("{}: {}", c.id, c.evidence))
            .collect::<Vec<_>>()
            .join("; ");
        ChecklistItem {
            item,
            status,
            evidence,
        }
    };
    let person = |item: &'static str| ChecklistItem {
        item,
        status: Status::Skipped,
        evidence: "a step for a person".into(),
    };
    let strict_lag = || -> ChecklistItem {
        let Some(c) = find("lag_seconds").filter(|c| c.status != Status::Skipped) else {
            return ChecklistItem {
                item: "Check replication lag < 10 seconds",
                status: Status::Skipped,
                evidence: "needs the PostgreSQL checks (--pg-user, or -c patroni.yml)".into(),
            };
        };
        // The check's own thresholds are the alerting ones; the checklist asks for less.
        let worst = c.value.unwrap_or(f64::INFINITY);
        let status = if c.status == Status::Unknown {
            Status::Unknown
        } else if worst >= t.maintenance_lag_seconds || c.status != Status::Ok {
            Status::Crit
        } else {
            Status::Ok
        };
        ChecklistItem {
            item: "Check replication lag < 10 seconds",
            status,
            evidence: c.evidence.clone(),
        }
    };
    match which {
        Checklist::Pre => vec![
            decide(
                "Verify all replicas are healthy",
                &[
                    "replication",
                    "lag_bytes",
                    "lag_unknown",
                    "transitional",
                    "failover_candidate",
                ],
            ),
            strict_lag(),
            decide("Verify recent backup completed successfully", &["backup"]),
            person("Notify stakeholders"),
            person("Prepare rollback plan"),
            decide(
                "Test connectivity to backup storage",
                &["backup", "backup_archive"],
            ),
        ],
        Checklist::Post => vec![
            decide(
                "Verify cluster status",
                &["dcs", "leader", "timeline", "paused", "failsafe"],
            ),
            decide(
                "Check all replicas rejoined",
                &["replication", "transitional"],
            ),
            decide(
                "Verify replication lag returned to normal",
                &["lag_bytes", "lag_unknown", "lag_seconds"],
            ),
            person("Test application connectivity"),
            decide(
                "Verify backup functionality",
                &["backup", "backup_archive", "archive"],
            ),
            person("Update documentation"),
        ],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;

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
