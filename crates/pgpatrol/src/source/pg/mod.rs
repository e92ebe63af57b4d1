//! PostgreSQL as a source: the one client of doctor, heal, watch, sli and slot drop. One
//! connection per member (opened concurrently, closed after its queries), through
//! tokio-postgres, with TLS by rustls ([`tls`]). Every failure is one line on that member;
//! the other members and the REST checks go on.

pub mod tls;

use std::path::Path;
use std::time::Duration;

use pgpatrol_core::pg::{Archiver, PgFacts, PgMember, Slot};
use pgpatrol_core::{Cluster, Lsn};
use tokio_postgres::{Client, NoTls};

/// How to log in.
#[derive(Debug, Clone)]
pub struct PgLogin {
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub connect_timeout: Duration,
    /// TLS (`None`: `--pg-sslmode disable`) and whether it is required.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub tls_required: bool,
}

/// Which queries to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queries {
    /// Everything doctor's PostgreSQL checks read.
    All,
    /// Only what lag in seconds needs (positions, replay timestamps, sender lag).
    Lag,
    /// What heal's trend mode needs: the leader's slots, oldest WAL segment and data size;
    /// each replica's received position and restore_command (is its WAL gone?).
    Trend,
}

/// Queries every member of `cluster` that has a host and port.
pub async fn evidence(cluster: &Cluster, login: &PgLogin) -> Vec<PgMember> {
    evidence_with(cluster, login, Queries::All).await
}

/// As [`evidence`], running only `which` queries.
pub async fn evidence_with(cluster: &Cluster, login: &PgLogin, which: Queries) -> Vec<PgMember> {
    let jobs = cluster.members.iter().map(|m| async move {
        let leader = m.role.is_leader();
        let facts = match (&m.host, m.port) {
            (Some(host), Some(port)) => member(host, port, leader, login, which)
                .await
                .map_err(|e| format!("{host}:{port}: {e}")),
            _ => Err("/cluster gives no host and port for it".to_string()),
        };
        PgMember {
            name: m.name.clone(),
            leader,
            facts,
        }
    });
    futures::future::join_all(jobs).await
}

/// The leader's current WAL file name, when its PostgreSQL answered (the backup checks
/// compare the repository's newest WAL with it).
pub fn leader_walfile(members: &[PgMember]) -> Option<String> {
    members.iter().filter(|m| m.leader).find_map(|m| {
        m.facts
            .as_ref()
            .ok()
            .and_then(|f| f.current_walfile.clone())
    })
}

/// One line for a driver error: the server's message when there is one.
fn why(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => crate::text::one_line(&crate::text::error_chain(&e)),
    }
}

/// One connection to `host:port` (TLS as the login says); the driver task runs until the
/// client is dropped. Errors are one line.
pub async fn connect(
    host: &str,
    port: u16,
    login: &PgLogin,
    application: &str,
) -> Result<
    (
        Client,
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    ),
    String,
> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(host)
        .port(port)
        .user(&login.user)
        .dbname(&login.dbname)
        .application_name(application)
        .connect_timeout(login.connect_timeout);
    if let Some(p) = &login.password {
        cfg.password(p);
    }
    let timed_out = || format!("no connection within {:?}", login.connect_timeout);
    Ok(match &login.tls {
        None => {
            cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, conn) = tokio::time::timeout(login.connect_timeout, cfg.connect(NoTls))
                .await
                .map_err(|_| timed_out())?
                .map_err(why)?;
            (client, tokio::spawn(async move { conn.await.map(|_| ()) }))
        }
        Some(tls) => {
            cfg.ssl_mode(if login.tls_required {
                tokio_postgres::config::SslMode::Require
            } else {
                tokio_postgres::config::SslMode::Prefer
            });
            let connect = cfg.connect(tls::MakeRustls(tls.clone()));
            let (client, conn) = tokio::time::timeout(login.connect_timeout, connect)
                .await
                .map_err(|_| timed_out())?
                .map_err(why)?;
            (client, tokio::spawn(async move { conn.await.map(|_| ()) }))
        }
    })
}

/// A driver error as one line (the server's message when there is one).
pub fn error_line(e: tokio_postgres::Error) -> String {
    why(e)
}

async fn member(
    host: &str,
    port: u16,
    leader: bool,
    login: &PgLogin,
    which: Queries,
) -> Result<PgFacts, String> {
    let (client, driver) = connect(host, port, login, "pgpatrol doctor").await?;
    let facts = tokio::time::timeout(
        Duration::from_secs(10),
        queries(&client, leader, port, which),
    )
    .await
    .map_err(|_| "the queries took longer than 10 s".to_string())
    .and_then(|r| r.map_err(why));
    drop(client);
    let _ = driver.await;
    facts
}

async fn queries(
    c: &Client,
    leader: bool,
    port: u16,
    which: Queries,
) -> Result<PgFacts, tokio_postgres::Error> {
    let mut f = PgFacts::default();
    if which == Queries::Lag {
        lag_queries(c, leader, &mut f).await?;
        return Ok(f);
    }
    if which == Queries::Trend {
        lag_queries(c, leader, &mut f).await?;
        trend_queries(c, leader, &mut f).await?;
        return Ok(f);
    }
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int8,
                    current_setting('max_connections')::int8,
                    current_setting('superuser_reserved_connections')::int8,
                    current_setting('data_directory')",
            &[],
        )
        .await?;
    let (used, max, reserved): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    f.connections = Some((used.max(0) as u64, (max - reserved).max(0) as u64));
    let data_dir: String = row.get(3);
    f.disk_used = local_disk_use(Path::new(&data_dir), port);
    f.data_directory = Some(data_dir);
    // pg_ls_waldir needs superuser or pg_monitor: unknown, not an error, without them.
    f.pg_wal_bytes = c
        .query_one(
            "SELECT coalesce(sum(size), 0)::int8 FROM pg_ls_waldir()",
            &[],
        )
        .await
        .ok()
        .map(|r| r.get::<_, i64>(0).max(0) as u64);
    lag_queries(c, leader, &mut f).await?;
    if leader {
        let a = c
            .query_one(
                "SELECT archived_count, failed_count,
                        EXTRACT(EPOCH FROM last_archived_time)::float8,
                        EXTRACT(EPOCH FROM last_failed_time)::float8,
                        last_failed_wal, current_setting('archive_mode')
                 FROM pg_stat_archiver",
                &[],
            )
            .await?;
        f.archiver = Some(Archiver {
            archived_count: a.get::<_, i64>(0).max(0) as u64,
            failed_count: a.get::<_, i64>(1).max(0) as u64,
            last_archived: a.get(2),
            last_failed: a.get(3),
            last_failed_wal: a.get(4),
            archive_mode: a.get(5),
        });
        f.slots = slots(c).await?;
    }
    Ok(f)
}

/// The leader's `pg_replication_slots`.
async fn slots(c: &Client) -> Result<Vec<Slot>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT slot_name::text, slot_type, active, wal_status,
                pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8
         FROM pg_replication_slots",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        let retained: Option<f64> = r.get(4);
        Slot {
            name: r.get(0),
            physical: r.get::<_, String>(1) == "physical",
            active: r.get(2),
            wal_status: r.get(3),
            retained_bytes: retained.map(|b| b.max(0.0) as u64),
        }
    })
    .collect())
}

/// Trend mode's evidence (see [`Queries::Trend`]).
async fn trend_queries(
    c: &Client,
    leader: bool,
    f: &mut PgFacts,
) -> Result<(), tokio_postgres::Error> {
    if leader {
        f.slots = slots(c).await?;
        let r = c
            .query_one(
                "SELECT (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size'),
                        (SELECT sum(pg_database_size(oid))::int8 FROM pg_database)",
                &[],
            )
            .await?;
        f.wal_segment_size = r.get::<_, Option<i64>>(0).map(|b| b.max(0) as u64);
        f.data_bytes = r.get::<_, Option<i64>>(1).map(|b| b.max(0) as u64);
        // pg_ls_waldir needs superuser or pg_monitor: unknown without them, not an error.
        f.oldest_segment = c
            .query_one(
                "SELECT min(substr(name, 9, 16)) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'",
                &[],
            )
            .await
            .ok()
            .and_then(|r| r.get(0));
    } else {
        let r = c
            .query_one(
                "SELECT pg_last_wal_receive_lsn()::text, current_setting('restore_command')",
                &[],
            )
            .await?;
        let lsn: Option<String> = r.get(0);
        f.receive_lsn = lsn.and_then(|l| l.parse::<Lsn>().ok());
        f.restore_command = r.get(1);
    }
    Ok(())
}

/// Positions, the sender's replay_lag (leader) and the last replayed transaction's age
/// (replica): what lag in seconds needs.
async fn lag_queries(
    c: &Client,
    leader: bool,
    f: &mut PgFacts,
) -> Result<(), tokio_postgres::Error> {
    if leader {
        let r = c
            .query_one(
                "SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())",
                &[],
            )
            .await?;
        let lsn: String = r.get(0);
        f.current_lsn = lsn.parse::<Lsn>().ok();
        f.current_walfile = r.get(1);
        for r in c
            .query(
                "SELECT application_name, EXTRACT(EPOCH FROM replay_lag)::float8 FROM pg_stat_replication",
                &[],
            )
            .await?
        {
            f.senders.insert(r.get(0), r.get(1));
        }
    } else {
        let r = c
            .query_one(
                "SELECT pg_last_wal_replay_lsn()::text,
                        EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))::float8",
                &[],
            )
            .await?;
        let lsn: Option<String> = r.get(0);
        f.replay_lsn = lsn.and_then(|l| l.parse::<Lsn>().ok());
        f.replay_age_secs = r.get(1);
    }
    Ok(())
}

/// The used fraction of the data directory's filesystem, when that directory is on this
/// host: its `postmaster.pid` names the member's port (a directory of the same name on
/// another machine's mount would be the wrong disk).
fn local_disk_use(data_dir: &Path, port: u16) -> Option<f64> {
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let its_port: u16 = pid_file.lines().nth(3)?.trim().parse().ok()?;
    if its_port != port {
        return None;
    }
    let st = nix::sys::statvfs::statvfs(data_dir).ok()?;
    let (blocks, free, avail) = (
        st.blocks() as f64,
        st.blocks_free() as f64,
        st.blocks_available() as f64,
    );
    let used = blocks - free;
    (used + avail > 0.0).then(|| used / (used + avail))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port where nothing listens: the member's line names the address and the reason.
    #[tokio::test]
    async fn an_unreachable_postgres_port_is_one_line_naming_it() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut c = Cluster::new(vec![pgpatrol_core::Member::new(
            "pg0",
            pgpatrol_core::Role::Leader,
            pgpatrol_core::State::Running,
        )]);
        c.members[0].host = Some("127.0.0.1".into());
        c.members[0].port = Some(port);
        let login = PgLogin {
            user: "postgres".into(),
            password: None,
            dbname: "postgres".into(),
            connect_timeout: Duration::from_secs(2),
            tls: None,
            tls_required: false,
        };
        let got = evidence(&c, &login).await;
        let err = got[0].facts.as_ref().unwrap_err();
        assert!(err.starts_with(&format!("127.0.0.1:{port}: ")), "{err}");
        assert!(err.to_lowercase().contains("refused"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
