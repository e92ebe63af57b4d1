//! The checks on pgBackRest's `info`: the last full and incremental backups, their age,
//! and the archive against the leader's WAL.

use super::*;

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

pub(super) fn age_text(secs: f64) -> String {
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
