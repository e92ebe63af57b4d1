//! What keeps a replica behind on purpose, read before heal decides (`Member::kept`):
//! its replay paused and `recovery_min_apply_delay` — from the member's own PostgreSQL
//! through a login when there is one, else from its own `/patroni` (`xlog.paused`) and the
//! dynamic configuration.
//!
//! Only replicas at or above the tolerance are read: the others are never candidates, so a
//! poll of a healthy fleet costs nothing more. Anything that cannot be read is said on the
//! member (`unreadable`, `delay_unchecked`), never taken as "not kept".

use pgpatrol_core::{Cluster, Kept, Lag, LagKind};

use super::ClusterSource;
use crate::source::pg::PgLogin;

/// Fills `kept` on every replica of `cluster` whose `kind` lag is at least `tolerance`
/// (unknown lag is never a candidate, and is left alone).
pub async fn read(
    source: &ClusterSource,
    cluster: &mut Cluster,
    kind: LagKind,
    tolerance: u64,
    login: Option<&PgLogin>,
) {
    let candidates: Vec<usize> = cluster
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| {
            !m.role.is_leader() && matches!(m.lag(kind), Some(Lag::Bytes(b)) if b >= tolerance)
        })
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        return;
    }
    // The dynamic configuration's delay applies to every member that does not set its own.
    let config_delay: Result<Option<String>, String> = source
        .config()
        .await
        .map(|c| {
            c.pointer("/postgresql/parameters/recovery_min_apply_delay")
                .map(setting_text)
                .filter(|v| !is_zero(v))
        })
        .map_err(|e| format!("{e:#}"));
    // Archive-only replicas are judged against what the leader archived (read only when
    // one of them is a candidate).
    let archive: Option<Result<(String, u64), String>> = if candidates
        .iter()
        .any(|&i| cluster.members[i].nostream())
    {
        Some(match (login, cluster.leader().map(|l| (l.host.clone(), l.port))) {
            (None, _) => Err("no PostgreSQL login to read the archive with (give -c patroni.yml or a postgres: login)".into()),
            (Some(login), Some((Some(host), Some(port)))) => {
                leader_archive(&host, port, login).await
            }
            (Some(_), _) => Err("the leader's PostgreSQL address is not known".into()),
        })
    } else {
        None
    };
    let reads = candidates.iter().map(|&i| {
        let m = &cluster.members[i];
        let config_delay = config_delay.clone();
        let archive = archive.clone();
        async move {
            let mut k = Kept::default();
            // With a login, the member's own PostgreSQL says both, whatever Patroni does.
            let on_member = match (login, &m.host, m.port) {
                (Some(login), Some(host), Some(port)) => {
                    Some(member_facts(host, port, login).await)
                }
                _ => None,
            };
            if let (true, Some(archive)) = (m.nostream(), &archive) {
                match behind_archive(on_member.as_ref(), archive) {
                    Ok(b) => k.behind_archive = Some(b),
                    Err(why) => k.archive_unread = Some(why),
                }
            }
            if let Some(Ok((paused, delay, _))) = &on_member {
                k.replay_paused = *paused;
                if !is_zero(delay) {
                    k.apply_delay = Some(format!("{delay} on the member"));
                }
                return k;
            }
            // Else its own /patroni (`xlog.paused`) and the dynamic configuration's delay.
            let status = match m.api_url.as_deref() {
                Some(api) => source
                    .member_status(api)
                    .await
                    .map_err(|e| format!("its /patroni did not answer: {e}")),
                None => Err("/cluster gives no api_url for it".to_string()),
            };
            match status {
                Ok(s) => k.replay_paused = s.replay_paused,
                Err(why) => {
                    let why = match &on_member {
                        Some(Err(pg)) => format!("{why}; nor did its PostgreSQL ({pg})"),
                        _ => why,
                    };
                    k.unreadable = Some(why);
                    return k;
                }
            }
            match config_delay {
                Ok(Some(v)) => k.apply_delay = Some(format!("{v} in the dynamic configuration")),
                // No login (or it failed): only the dynamic configuration was read.
                Ok(None) => k.delay_unchecked = true,
                Err(e) => {
                    k.unreadable = Some(format!(
                        "neither the member's recovery_min_apply_delay nor the dynamic configuration could be read ({e})"
                    ))
                }
            }
            k
        }
    });
    let kept = futures::future::join_all(reads).await;
    for (i, k) in candidates.into_iter().zip(kept) {
        cluster.members[i].kept = Some(k);
    }
}

/// Whether the member's replay is paused (or a pause is requested), and the
/// `recovery_min_apply_delay` it runs with, from its own PostgreSQL.
async fn member_facts(host: &str, port: u16, login: &PgLogin) -> MemberFacts {
    let (client, driver) = crate::source::pg::connect(host, port, login, "pgpatrol heal").await?;
    let r = client
        .query_one(
            "SELECT pg_is_in_recovery() AND pg_is_wal_replay_paused(), current_setting('recovery_min_apply_delay'), pg_last_wal_replay_lsn()::text",
            &[],
        )
        .await
        .map(|row| {
            (
                row.get::<_, bool>(0),
                row.get::<_, String>(1),
                row.get::<_, Option<String>>(2),
            )
        })
        .map_err(crate::source::pg::error_line);
    drop(client);
    let _ = driver.await;
    r
}

/// A setting's value as text (`10min`, `600000`).
pub fn setting_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    }
}

/// What the member's own PostgreSQL said: replay paused, `recovery_min_apply_delay`, the
/// replayed position.
type MemberFacts = Result<(bool, String, Option<String>), String>;

/// How far an archive-only replica (its `facts`) is behind the end of the leader's newest
/// archived WAL segment (`archive`: its name and the segment size), or why that is unknown.
fn behind_archive(
    facts: Option<&MemberFacts>,
    archive: &Result<(String, u64), String>,
) -> Result<u64, String> {
    let (wal, segment) = archive.as_ref().map_err(Clone::clone)?;
    let replayed = match facts {
        None => return Err("its PostgreSQL address is not known".into()),
        Some(Err(why)) => return Err(format!("its PostgreSQL: {why}")),
        Some(Ok((_, _, None))) => return Err("its replay position is not known".into()),
        Some(Ok((_, _, Some(replayed)))) => replayed,
    };
    let end = pgpatrol_core::lsn::wal_segment_end(wal, *segment)
        .ok_or_else(|| format!("the leader's newest archived file {wal:?} is not a WAL segment"))?;
    let at: pgpatrol_core::Lsn = replayed.parse().map_err(|e| format!("{e}"))?;
    Ok(end.bytes_after(at))
}

/// The leader's newest archived WAL file (`pg_stat_archiver.last_archived_wal`) and its WAL
/// segment size in bytes.
async fn leader_archive(host: &str, port: u16, login: &PgLogin) -> Result<(String, u64), String> {
    let (client, driver) = crate::source::pg::connect(host, port, login, "pgpatrol heal").await?;
    let r = client
        .query_one(
            "SELECT last_archived_wal, (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size') FROM pg_stat_archiver",
            &[],
        )
        .await
        .map_err(|e| format!("the leader's archiver: {}", crate::source::pg::error_line(e)))
        .and_then(|row| {
            let wal: Option<String> = row.get(0);
            let segment: i64 = row.get(1);
            let wal = wal.ok_or_else(|| "the leader has archived nothing yet".to_string())?;
            Ok((wal, u64::try_from(segment).unwrap_or(0)))
        });
    drop(client);
    let _ = driver.await;
    r
}

/// True for a zero delay in any unit (`0`, `0ms`, `0min`, `""`): nothing else. A value that
/// cannot be read (`0.5min` is 30 s, `abc`) is not zero: the replica is kept.
pub fn is_zero(v: &str) -> bool {
    v.trim().is_empty() || apply_delay_ms(v) == Some(0.0)
}

/// `recovery_min_apply_delay` in milliseconds, as PostgreSQL reads it: a number (fractions
/// and exponents allowed) and a time unit (`us`, `ms`, `s`, `min`, `h`, `d`; none is ms).
/// `None` when it is not such a value.
pub fn apply_delay_ms(v: &str) -> Option<f64> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E')))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: f64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = n * factor;
    (ms.is_finite() && ms >= 0.0).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_only_replica_against_the_archive() {
        let mb16 = 16 * 1024 * 1024;
        let archive = Ok(("000000010000000000000005".to_string(), mb16));
        let at = |lsn: &str| Ok((false, "0".to_string(), Some(lsn.to_string())));
        // Segment 5 ends at 0/6000000.
        assert_eq!(behind_archive(Some(&at("0/6000000")), &archive), Ok(0));
        assert_eq!(behind_archive(Some(&at("0/5000000")), &archive), Ok(mb16));
        let why = |r: Result<u64, String>| r.unwrap_err();
        assert!(why(behind_archive(None, &archive)).contains("address"));
        assert!(why(behind_archive(Some(&Err("refused".into())), &archive)).contains("refused"));
        let history = Ok(("00000002.history".to_string(), mb16));
        assert!(why(behind_archive(Some(&at("0/6000000")), &history)).contains("not a WAL segment"));
        let unread: Result<(String, u64), String> = Err("no login".into());
        assert_eq!(
            behind_archive(Some(&at("0/6000000")), &unread),
            Err("no login".into())
        );
    }

    #[test]
    fn zero_delays_in_any_unit() {
        for z in ["0", "0ms", "0min", " 0 ", "", "00s"] {
            assert!(is_zero(z), "{z:?}");
        }
        for d in [
            "10min", "1", "600000", "1h", "05s", "0.5min", "0.001s", "1e3", "abc", "0x",
        ] {
            assert!(!is_zero(d), "{d:?}");
        }
        assert_eq!(apply_delay_ms("0.5min"), Some(30_000.0));
        assert_eq!(apply_delay_ms(" 10 min "), Some(600_000.0));
        assert_eq!(apply_delay_ms("-1s"), None);
        assert_eq!(apply_delay_ms("10 fortnights"), None);
        assert_eq!(setting_text(&serde_json::json!(600000)), "600000");
        assert_eq!(setting_text(&serde_json::json!(" 10min")), "10min");
    }
}
