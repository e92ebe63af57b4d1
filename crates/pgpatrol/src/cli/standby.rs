//! Standby clusters and replication slots: `slot drop NAME` (guarded), and `standby
//! promote|demote` (Patroni's `standby_cluster` section, each waited for, each checked so
//! that there are never two writable leaders on purpose).

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::Serialize;

use pgpatrol_core::ops::standby as standby_rule;
use pgpatrol_core::{Cluster, Role};

use super::common::{ClusterArgs, PgArgs};
use super::ops::{OpArgs, OpFormat};
use super::Outcome;
use crate::executor::Progress;
use crate::ops::audit::Audit;
use crate::output::term::ColorChoice;
use crate::poll::Poll;
use crate::source::rest::{Detail, Request, RestSource};

// ---------------------------------------------------------------------------------------
// slot drop

/// Replication slots on the leader.
#[derive(Debug, Subcommand)]
pub enum SlotCommand {
    Drop(SlotDropArgs),
}

/// Drop a replication slot on the leader, the fix for a slot that holds WAL no one reads
/// (instead of restarting replicas from cron). Refused for an active slot, a permanent slot
/// Patroni keeps (`slots` in the dynamic configuration: it would come back) and a member's
/// own slot (Patroni manages it); it shows the WAL the slot holds and asks first.
///
/// Exit codes: 0 dropped; 1 refused; 2 error (no such slot, no PostgreSQL login).
#[derive(Debug, Args)]
pub struct SlotDropArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The slot's name.
    pub name: String,

    /// Run CHECKPOINT afterwards and report pg_wal before and after (the WAL is released
    /// at the next checkpoint).
    #[arg(long)]
    pub checkpoint: bool,

    #[command(flatten)]
    pub pg: PgArgs,

    #[command(flatten)]
    pub op: OpArgs,
}

#[derive(Debug, Serialize)]
struct SlotDropReport {
    slot: String,
    leader: String,
    result: &'static str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    retained_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pg_wal_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pg_wal_after: Option<u64>,
    /// The oldest WAL segment in pg_wal before and after the CHECKPOINT: it moves forward
    /// when the WAL the slot held is released (segments are recycled, so pg_wal's size
    /// need not shrink).
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_wal_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_wal_after: Option<String>,
    /// The most WAL any remaining slot holds, after the drop.
    #[serde(skip_serializing_if = "Option::is_none")]
    slots_retain_after: Option<u64>,
}

impl SlotDropArgs {
    pub async fn run(self) -> anyhow::Result<Outcome> {
        let Some(login) = self.pg.login(&self.cluster)? else {
            anyhow::bail!("slot drop runs SQL on the leader: give --pg-user and --pg-password-file (or -c patroni.yml with postgresql.authentication.superuser)");
        };
        let source = self.cluster.source().await?;
        let c = source.snapshot(Detail::Lag).await?.cluster;
        let leader = c.leader().ok_or_else(|| {
            anyhow::anyhow!("the cluster has no leader: slots live on the leader")
        })?;
        let (host, port) = match (&leader.host, leader.port) {
            (Some(h), Some(p)) => (h.clone(), p),
            _ => anyhow::bail!(
                "/cluster gives no host and port for the leader {}",
                leader.name
            ),
        };
        let config = source.config().await?;
        let permanent: Vec<String> = config
            .get("slots")
            .and_then(|s| s.as_object())
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let (client, driver) =
            crate::doctor::pg::connect(&host, port, &login, "pgpatrol slot drop")
                .await
                .map_err(|e| {
                    anyhow::anyhow!("{}'s PostgreSQL at {host}:{port}: {e}", leader.name)
                })?;
        let pgerr = |e| anyhow::anyhow!("{}: {}", leader.name, crate::doctor::pg::error_line(e));
        let rows = client
            .query(
                "SELECT slot_name::text, active, slot_type, wal_status,
                        pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8
                 FROM pg_replication_slots ORDER BY 1",
                &[],
            )
            .await
            .map_err(pgerr)?;
        let names: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        let Some(row) = rows.iter().find(|r| r.get::<_, String>(0) == self.name) else {
            anyhow::bail!(
                "no slot named {:?} on the leader {} (slots: {})",
                self.name,
                leader.name,
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            );
        };
        let active: bool = row.get(1);
        let retained = row.get::<_, Option<f64>>(4).map(|b| b.max(0.0) as u64);
        let mut report = SlotDropReport {
            slot: self.name.clone(),
            leader: leader.name.clone(),
            result: "refused",
            detail: String::new(),
            retained_bytes: retained,
            pg_wal_before: None,
            pg_wal_after: None,
            oldest_wal_before: None,
            oldest_wal_after: None,
            slots_retain_after: None,
        };
        let held = retained.map_or(
            "an unknown amount of".to_string(),
            pgpatrol_core::units::human,
        );
        let refusal = pgpatrol_core::ops::slot::drop_refusal(
            &pgpatrol_core::ops::slot::Slot {
                name: &self.name,
                active,
            },
            &permanent,
            &c.members,
        );
        let json = self.op.format == OpFormat::Json;
        if let Some(why) = refusal {
            report.detail = why.clone();
            drop(client);
            let _ = driver.await;
            if json {
                super::ops::emit_json(&report)?;
            }
            eprintln!("pgpatrol: refused: {why}; nothing was done");
            return Ok(Outcome::Problem);
        }
        if !json {
            println!(
                "slot {} on {}: inactive, holds {held} of WAL (wal_status {})",
                self.name,
                leader.name,
                row.get::<_, Option<String>>(3)
                    .unwrap_or_else(|| "?".into())
            );
        }
        let sql = "SELECT pg_drop_replication_slot($1)";
        if self.op.dry_run {
            println!(
                "dry run: would run on {} ({host}:{port}): SELECT pg_drop_replication_slot('{}')",
                leader.name, self.name
            );
            return Ok(Outcome::Ok);
        }
        if !self.op.yes {
            if !super::confirm::interactive() {
                anyhow::bail!("not on a terminal: add --yes to drop the slot (or --dry-run)");
            }
            if !super::confirm::ask(&format!(
                "Drop slot {} and release {held} of WAL?",
                self.name
            ))? {
                anyhow::bail!("not confirmed: nothing was done");
            }
        }
        let audit = Audit::open(
            self.op.audit_log.as_deref(),
            c.scope.as_deref().unwrap_or("cluster"),
        )?;
        let wal_size =
            "SELECT sum(size)::float8, min(name) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'";
        if self.checkpoint {
            if let Ok(r) = client.query_one(wal_size, &[]).await {
                report.pg_wal_before = r.get::<_, Option<f64>>(0).map(|b| b as u64);
                report.oldest_wal_before = r.get(1);
            }
        }
        let target = format!("postgresql://{host}:{port}");
        let dropped = client.execute(sql, &[&self.name]).await;
        match &dropped {
            Ok(_) => audit.record_sql(
                "slot drop",
                &leader.name,
                &target,
                &format!("SELECT pg_drop_replication_slot('{}')", self.name),
                "dropped",
            ),
            Err(e) => audit.record_sql(
                "slot drop",
                &leader.name,
                &target,
                &format!("SELECT pg_drop_replication_slot('{}')", self.name),
                &e.to_string(),
            ),
        }
        dropped.map_err(pgerr)?;
        report.result = "dropped";
        report.detail = format!("dropped; {held} of WAL is released at the next checkpoint");
        if self.checkpoint {
            client.execute("CHECKPOINT", &[]).await.map_err(pgerr)?;
            if let Ok(r) = client.query_one(wal_size, &[]).await {
                report.pg_wal_after = r.get::<_, Option<f64>>(0).map(|b| b as u64);
                report.oldest_wal_after = r.get(1);
            }
            report.detail = format!(
                "dropped; after CHECKPOINT the oldest WAL segment is {} (was {}), pg_wal {} (was {})",
                report.oldest_wal_after.as_deref().unwrap_or("?"),
                report.oldest_wal_before.as_deref().unwrap_or("?"),
                report.pg_wal_after.map_or("?".into(), pgpatrol_core::units::human),
                report.pg_wal_before.map_or("?".into(), pgpatrol_core::units::human)
            );
        }
        report.slots_retain_after = client
            .query_one(
                "SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn))::float8 FROM pg_replication_slots",
                &[],
            )
            .await
            .ok()
            .and_then(|r| r.get::<_, Option<f64>>(0))
            .map(|b| b.max(0.0) as u64);
        drop(client);
        let _ = driver.await;
        if json {
            super::ops::emit_json(&report)?;
        } else {
            println!("slot {}: {}", self.name, report.detail);
        }
        Ok(Outcome::Ok)
    }
}

// ---------------------------------------------------------------------------------------
// standby promote / demote

/// A standby cluster: promote it to a primary cluster, or demote a cluster to a standby of
/// another (the `standby_cluster` section of the dynamic configuration).
#[derive(Debug, Subcommand)]
pub enum StandbyCommand {
    Promote(PromoteArgs),
    Demote(DemoteArgs),
}

/// Promote this standby cluster: its standby leader becomes a writable primary
/// (`PATCH /config {"standby_cluster": null}`), waited for until it runs as the leader.
///
/// Checked first: the source must be gone or demoted (`--source-url`: it must have no
/// running primary), or `--source-gone` says you know it is. Never two writable leaders on
/// purpose. Exit codes: 0 promoted; 1 refused or not promoted in time; 2 error.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The source cluster's REST API: pgpatrol checks it has no running primary.
    #[arg(long, value_name = "URL")]
    pub source_url: Option<String>,

    /// The source is gone (you checked): skip the check.
    #[arg(long, conflicts_with = "source_url")]
    pub source_gone: bool,

    /// How long to wait for the new primary.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub op: OpArgs,
}

/// Demote this cluster into a standby cluster of another one (`PATCH /config
/// {"standby_cluster": {...}}`), waited for until its leader is a standby leader that
/// replicates. Its data must be the source's (the same system identifier): a standby of an
/// unrelated cluster cannot replicate. Refused, with nothing sent, when nothing answers at
/// the source's PostgreSQL, or when `--source-url` cannot be read, has no running leader,
/// or either system identifier cannot be read (could not tell it is the same database).
///
/// Exit codes: 0 demoted and replicating; 1 refused or not replicating in time; 2 error
/// (another database among them).
#[derive(Debug, Args)]
pub struct DemoteArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The source's PostgreSQL host (its primary, or a name that always points at it):
    /// `standby_cluster.host`. (`--port` names the Kubernetes REST port here, hence the
    /// `source-` prefix.)
    #[arg(long = "source-host", value_name = "HOST")]
    pub source_host: Option<String>,

    /// The source's PostgreSQL port: `standby_cluster.port`.
    #[arg(long = "source-port", value_name = "PORT")]
    pub source_port: Option<u16>,

    /// The slot on the source to stream through (it must exist there: permanent `slots`).
    #[arg(long)]
    pub primary_slot_name: Option<String>,

    /// Replicate from a WAL archive instead of (or besides) streaming.
    #[arg(long)]
    pub restore_command: Option<String>,

    /// The source cluster's REST API: pgpatrol checks it has a running leader (a primary, or
    /// the standby leader of a standby cluster to cascade from) and the same system
    /// identifier.
    #[arg(long, value_name = "URL")]
    pub source_url: Option<String>,

    /// How long to wait for the standby leader to replicate.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub op: OpArgs,
}

#[derive(Debug, Serialize)]
struct RoleChange {
    operation: &'static str,
    result: &'static str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<String>,
    secs: f64,
    requests: Vec<crate::ops::SentRequest>,
}

/// The cluster at `url`, as read from its `/cluster` and its leader's `/patroni` (for the
/// system identifier); `Err` names what could not be read, so that the caller fails closed
/// (core `ops::standby` never takes "could not tell" as "no primary").
async fn read_source(http: &RestSource, url: &str) -> Result<pgpatrol_core::Cluster, String> {
    let base = crate::source::rest::base_url(url).map_err(|e| e.to_string())?;
    let src = RestSource::new(http.http().clone(), std::slice::from_ref(&base))
        .map_err(|e| e.to_string())?;
    let snap = src
        .snapshot(Detail::Full)
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(snap.cluster)
}

/// What was read at `--source-url`, as core's rules take it.
fn source_read<'a>(
    read: &'a Option<(&'a str, Result<pgpatrol_core::Cluster, String>)>,
) -> Option<standby_rule::SourceRead<'a>> {
    read.as_ref().map(|(url, r)| standby_rule::SourceRead {
        url,
        read: r.as_ref().map_err(String::as_str),
    })
}

/// Prints a refusal the way every operation does (and, with `-o json`, as the result:
/// `{"operation", "result": "refused", "refusal": {"kind", "reason"}}`), and gives its exit:
/// an unsafe one is a problem (exit 1, nothing sent), an invalid one an error (exit 2).
fn refused(
    op: &OpArgs,
    operation: &str,
    r: pgpatrol_core::ops::Refusal,
) -> anyhow::Result<Outcome> {
    if op.format == OpFormat::Json {
        super::ops::emit_json(&serde_json::json!({
            "operation": operation,
            "result": "refused",
            "refusal": &r,
        }))?;
    }
    match r {
        pgpatrol_core::ops::Refusal::Unsafe(why) => {
            eprintln!("pgpatrol: refused: {why}; nothing was sent");
            Ok(Outcome::Problem)
        }
        pgpatrol_core::ops::Refusal::Invalid(why) => Err(anyhow::anyhow!(why)),
    }
}

/// Sends the PATCH and waits until the leader has `want`; prints and returns the outcome.
#[allow(clippy::too_many_arguments)]
async fn change_role(
    op: &OpArgs,
    source: &RestSource,
    c: &Cluster,
    operation: &'static str,
    body: serde_json::Value,
    want: Role,
    timeout: Duration,
    color: ColorChoice,
) -> anyhow::Result<Outcome> {
    let t0 = Instant::now();
    let leader = c
        .leader()
        .ok_or_else(|| anyhow::anyhow!("the cluster has no leader"))?;
    let audit = if op.dry_run {
        Audit::disabled()
    } else {
        Audit::open(
            op.audit_log.as_deref(),
            c.scope.as_deref().unwrap_or("cluster"),
        )?
    };
    let json = op.format == OpFormat::Json;
    let progress = super::progress::Spinner::new();
    let ops = crate::ops::Ops::new(source, operation, op.dry_run, &audit, &progress).json(json);
    let base = crate::ops::api_of(leader)?;
    let sent = ops
        .send(&leader.name, Request::patch(&base, "/config", body))
        .await?;
    let mut out = RoleChange {
        operation,
        result: "dry_run",
        detail: "dry run: nothing was sent".into(),
        leader: None,
        secs: 0.0,
        requests: Vec::new(),
    };
    match sent {
        None => {}
        Some(r) if r.status != reqwest::StatusCode::OK => anyhow::bail!(
            "PATCH /config on {} answered HTTP {}: {}",
            leader.name,
            r.status.as_u16(),
            crate::text::snippet(r.body.trim())
        ),
        Some(_) => {
            out.result = "not_done";
            out.detail = format!(
                "the leader did not become {want} within {}",
                humantime::format_duration(timeout)
            );
            let mut poll = Poll::new(timeout, Duration::from_millis(500));
            while poll.next().await {
                if let Ok(s) = source.snapshot(Detail::Lag).await {
                    if let Some(l) = s.cluster.leader() {
                        let api = crate::ops::api_of(l).ok();
                        let me = match api {
                            Some(a) => source.member_status(&a).await.ok(),
                            None => None,
                        };
                        let done = me.as_ref().is_some_and(|m| {
                            m.role == want
                                && m.state == pgpatrol_core::State::Running
                                && (want == Role::Leader || m.replication_state.is_some())
                        });
                        if done {
                            out.result = "done";
                            out.leader = Some(l.name.clone());
                            out.detail = match want {
                                Role::Leader => format!(
                                    "{} is the primary and runs: the cluster is writable",
                                    l.name
                                ),
                                _ => format!(
                                    "{} is the standby leader and replicates ({})",
                                    l.name,
                                    me.and_then(|m| m.replication_state).unwrap_or_default()
                                ),
                            };
                            break;
                        }
                        progress.update(
                            &l.name,
                            &me.map(|m| format!("{}/{}", m.role, m.state))
                                .unwrap_or_else(|| "?".into()),
                        );
                    }
                }
            }
        }
    }
    progress.finish();
    out.secs = crate::ops::round1(t0.elapsed().as_secs_f64());
    out.requests = ops.sent();
    if json {
        super::ops::emit_json(&out)?;
    } else {
        println!("{operation}: {} ({:.1} s)", out.detail, out.secs);
        if out.result == "done" {
            if let Ok(s) = source.snapshot(Detail::Full).await {
                let emphasis = crate::output::table::Emphasis {
                    look: crate::output::term::Look::stdout(color),
                    ..Default::default()
                };
                let _ = crate::output::table::list(
                    &mut std::io::stdout().lock(),
                    &s.cluster,
                    &emphasis,
                );
            }
        }
    }
    Ok(match out.result {
        "done" | "dry_run" => Outcome::Ok,
        _ => Outcome::Problem,
    })
}

impl PromoteArgs {
    pub async fn run(self, color: ColorChoice) -> anyhow::Result<Outcome> {
        let source = self.cluster.source().await?;
        let c = source.snapshot(Detail::Full).await?.cluster;
        let read = match &self.source_url {
            Some(url) => Some((url.as_str(), read_source(&source, url).await)),
            None => None,
        };
        let leader = match standby_rule::promote(&c, source_read(&read), self.source_gone) {
            Ok(l) => l,
            Err(r) => return refused(&self.op, "standby promote", r),
        };
        super::ops::confirm_op(
            &self.op,
            &format!(
                "Promote the standby cluster (standby leader {}) to a writable primary?",
                leader.name
            ),
            "promote",
        )?;
        change_role(
            &self.op,
            &source,
            &c,
            "standby promote",
            serde_json::json!({"standby_cluster": null}),
            Role::Leader,
            self.timeout,
            color,
        )
        .await
    }
}

impl DemoteArgs {
    pub async fn run(self, color: ColorChoice) -> anyhow::Result<Outcome> {
        if self.source_host.is_none()
            && self.source_port.is_none()
            && self.restore_command.is_none()
        {
            anyhow::bail!("give the source: --source-host and --source-port (streaming), --restore-command (archive), or both");
        }
        let source = self.cluster.source().await?;
        let c = source.snapshot(Detail::Full).await?.cluster;
        let read = match &self.source_url {
            Some(url) => Some((url.as_str(), read_source(&source, url).await)),
            None => None,
        };
        let pg = match (&self.source_host, self.source_port) {
            (Some(h), Some(p)) => {
                let addr = format!("{h}:{p}");
                let reach = tokio::time::timeout(
                    Duration::from_secs(3),
                    tokio::net::TcpStream::connect(&addr),
                )
                .await;
                Some((addr, matches!(reach, Ok(Ok(_)))))
            }
            _ => None,
        };
        let pg = pg.as_ref().map(|(a, ok)| (a.as_str(), *ok));
        let leader = match standby_rule::demote(&c, source_read(&read), pg) {
            Ok(l) => l,
            Err(r) => return refused(&self.op, "standby demote", r),
        };
        let mut sc = serde_json::Map::new();
        if let Some(h) = &self.source_host {
            sc.insert("host".into(), h.clone().into());
        }
        if let Some(p) = self.source_port {
            sc.insert("port".into(), p.into());
        }
        if let Some(s) = &self.primary_slot_name {
            sc.insert("primary_slot_name".into(), s.clone().into());
        }
        if let Some(r) = &self.restore_command {
            sc.insert("restore_command".into(), r.clone().into());
        }
        super::ops::confirm_op(
            &self.op,
            &format!(
                "Demote the cluster (leader {}) into a standby cluster? It stops taking writes.",
                leader.name
            ),
            "demote",
        )?;
        change_role(
            &self.op,
            &source,
            &c,
            "standby demote",
            serde_json::json!({"standby_cluster": sc}),
            Role::StandbyLeader,
            self.timeout,
            color,
        )
        .await
    }
}
