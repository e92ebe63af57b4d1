//! The checks on what each member's PostgreSQL says: lag in seconds, connections, the
//! archiver, slots, pg_wal, the disk.

use super::*;
use crate::pg::{PgFacts, PgMember};

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

pub(super) fn lag_seconds(members: &[PgMember], leader: Option<&PgFacts>, t: &Thresholds) -> Check {
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

pub(super) fn connections(members: &[PgMember], t: &Thresholds) -> Check {
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

pub(super) fn archive(leader: Option<&PgFacts>, t: &Thresholds) -> Check {
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

pub(super) fn slots(leader: Option<&PgFacts>, permanent: &[String], t: &Thresholds) -> Check {
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

pub(super) fn pg_wal(members: &[PgMember]) -> Check {
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

pub(super) fn disk(members: &[PgMember], t: &Thresholds) -> Check {
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
