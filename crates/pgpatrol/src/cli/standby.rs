//! Standby clusters and replication slots: `slot drop NAME` (guarded), and `standby
//! promote|demote` (Patroni's `standby_cluster` section, each waited for, each checked so
//! that there are never two writable leaders on purpose).

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};

use pgpatrol_core::Cluster;

use super::common::{ClusterArgs, PgArgs};
use super::ops::{OpArgs, OpFormat};
use super::Outcome;
use crate::audit::Audit;
use crate::ops::runner::OpResult;
use crate::ops::slot;
use crate::ops::standby::{StandbyInputs, StandbyOp};
use crate::output::term::ColorChoice;
use crate::source::{ClusterSource, Detail};

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

impl SlotDropArgs {
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let Some(login) = self.pg.login(&self.cluster)? else {
            anyhow::bail!("slot drop runs SQL on the leader: give --pg-user and --pg-password-file (or -c patroni.yml with postgresql.authentication.superuser)");
        };
        let source = self.cluster.source().await?;
        // Full: the Patroni version (whether it keeps absent members' slots).
        let c = source.snapshot(Detail::Full).await?.cluster;
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
        // The DCS: Patroni 4.0+ lists the slots it keeps for absent members only there.
        let dcs = match self.cluster.target()?.dcs_target()? {
            Some(t) => Some(crate::source::dcs::Dcs::new(&t)?),
            None => None,
        };
        let (client, driver) =
            crate::source::pg::connect(&host, port, &login, "pgpatrol slot drop")
                .await
                .map_err(|e| {
                    anyhow::anyhow!("{}'s PostgreSQL at {host}:{port}: {e}", leader.name)
                })?;
        let read = slot::read_slot(&client, &self.name)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", leader.name))?;
        let held = read.retained_bytes.map_or(
            "an unknown amount of".to_string(),
            pgpatrol_core::units::human,
        );
        let plan = pgpatrol_core::ops::slot::drop_plan(
            &leader.name,
            &pgpatrol_core::ops::slot::Slot {
                name: &self.name,
                active: read.active,
            },
            &slot::permanent_slots(&config),
            &c.members,
            &slot::retained_slots(dcs.as_ref(), &c, &config)
                .await
                .map_err(|e| anyhow::anyhow!("slot drop refused: {e}"))?,
        );
        let json = self.op.format == OpFormat::Json;
        if !json && plan.refusal.is_none() {
            writeln!(
                out,
                "slot {} on {}: inactive, holds {held} of WAL (wal_status {})",
                self.name,
                leader.name,
                read.wal_status.as_deref().unwrap_or("?")
            )?;
        }
        if plan.refusal.is_none() && !self.op.dry_run && !self.op.yes {
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
        let audit = Audit::for_run(
            !self.op.dry_run && plan.refusal.is_none(),
            self.op.audit_log.as_deref(),
            c.scope.as_deref(),
        )?;
        let progress = super::progress::Spinner::new();
        let ops = crate::ops::Ops::new(&source, "slot drop", self.op.dry_run, &audit, &progress)
            .json(json);
        let mut run = slot::SlotDropOp {
            client: &client,
            dcs,
            slot: self.name.clone(),
            target: format!("postgresql://{host}:{port}"),
            checkpoint: self.checkpoint,
            released: Default::default(),
        };
        let mut report = crate::ops::runner::run(&mut run, &ops, plan).await;
        progress.finish();
        let released = run.released;
        drop(client);
        let _ = driver.await;
        if report.result == OpResult::Done {
            report.result = OpResult::Dropped;
        }
        let detail = match (report.steps.first(), &report.stopped, report.refusal()) {
            (Some(s), _, _) => s.detail.clone(),
            (None, Some(why), _) => why.clone(),
            (None, None, Some(r)) => r.reason().to_string(),
            _ => String::new(),
        };
        report.put("slot", &self.name);
        report.put("leader", &leader.name);
        report.put("detail", &detail);
        report.put("retained_bytes", read.retained_bytes);
        if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&released) {
            report.extra.extend(m);
        }
        if let Some(r) = report.refusal() {
            eprintln!("pgpatrol: refused: {r}; nothing was done");
        }
        if json {
            super::ops::emit_json(out, &report)?;
        } else if report.refusal().is_none() && !self.op.dry_run {
            writeln!(out, "slot {}: {detail}", self.name)?;
            if let Some(why) = &report.stopped {
                writeln!(out, "{why}")?;
            }
        }
        Ok(if report.ok() {
            Outcome::Ok
        } else {
            Outcome::Problem
        })
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
/// unrelated cluster cannot replicate. Refused, with nothing sent, when no PostgreSQL answers
/// at the source's address (an `SSLRequest` replied to within 3 s: a hung postmaster whose
/// kernel still accepts connections does not count), or when `--source-url` cannot be read, has no running leader,
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

/// Runs a promote or demote plan through the runner, prints its report and gives the
/// exit: 0 done (or a dry run), 1 refused (unsafe), stopped or not done in time, 2 an
/// invalid request.
async fn run_role_change(
    op: &OpArgs,
    source: &ClusterSource,
    c: &Cluster,
    plan: pgpatrol_core::ops::OpPlan,
    mut run: StandbyOp,
    color: ColorChoice,
    out: &mut impl Write,
) -> anyhow::Result<Outcome> {
    let operation = plan.operation;
    let audit = Audit::for_run(
        !op.dry_run && plan.refusal.is_none(),
        op.audit_log.as_deref(),
        c.scope.as_deref(),
    )?;
    let json = op.format == OpFormat::Json;
    if !json && op.dry_run {
        crate::ops::runner::write_plan(out, &plan)?;
    }
    let progress = super::progress::Spinner::new();
    let ops = crate::ops::Ops::new(source, operation, op.dry_run, &audit, &progress).json(json);
    let mut report = crate::ops::runner::run(&mut run, &ops, plan).await;
    progress.finish();
    if report.result == OpResult::Failed {
        report.result = OpResult::NotDone;
    }
    let detail = match (report.steps.first(), &report.stopped, report.refusal()) {
        (Some(s), _, _) => s.detail.clone(),
        (None, Some(why), _) => why.clone(),
        (None, None, Some(r)) => r.reason().to_string(),
        _ => String::new(),
    };
    report.put("detail", &detail);
    report.put("leader", &run.leader);
    report.put("secs", report.total_secs);
    if let Some(pgpatrol_core::ops::Refusal::Unsafe(why)) = report.refusal() {
        eprintln!("pgpatrol: refused: {why}; nothing was sent");
    }
    if json {
        super::ops::emit_json(out, &report)?;
    } else if report.refusal().is_none() {
        writeln!(out, "{operation}: {detail} ({:.1} s)", report.total_secs)?;
        if report.result == OpResult::Done {
            if let Ok(s) = source.snapshot(Detail::Full).await {
                let emphasis = crate::output::table::Emphasis {
                    look: crate::output::term::Look::stdout(color),
                    ..Default::default()
                };
                crate::output::table::list(out, &s.cluster, &emphasis)?;
            }
        }
    }
    if let Some(pgpatrol_core::ops::Refusal::Invalid(why)) = report.refusal() {
        anyhow::bail!("{why}");
    }
    Ok(if report.ok() {
        Outcome::Ok
    } else {
        Outcome::Problem
    })
}

impl PromoteArgs {
    pub async fn run(self, color: ColorChoice, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let source = self.cluster.source().await?;
        let c = source.snapshot(Detail::Full).await?.cluster;
        let inputs = StandbyInputs {
            source_url: self.source_url.clone(),
            source_gone: self.source_gone,
            source_pg: None,
        };
        let plan = inputs.decide(&source, &c, false).await;
        if let Some(step) = plan.steps.first() {
            super::ops::confirm_op(
                &self.op,
                &format!(
                    "Promote the standby cluster (standby leader {}) to a writable primary?",
                    step.member
                ),
                "promote",
            )?;
        }
        let run = StandbyOp::new(
            inputs,
            serde_json::json!({"standby_cluster": null}),
            self.timeout,
        );
        run_role_change(&self.op, &source, &c, plan, run, color, out).await
    }
}

impl DemoteArgs {
    pub async fn run(self, color: ColorChoice, out: &mut impl Write) -> anyhow::Result<Outcome> {
        if self.source_host.is_none()
            && self.source_port.is_none()
            && self.restore_command.is_none()
        {
            anyhow::bail!("give the source: --source-host and --source-port (streaming), --restore-command (archive), or both");
        }
        let source = self.cluster.source().await?;
        let c = source.snapshot(Detail::Full).await?.cluster;
        let inputs = StandbyInputs {
            source_url: self.source_url.clone(),
            source_gone: false,
            source_pg: match (&self.source_host, self.source_port) {
                (Some(h), Some(p)) => Some(format!("{h}:{p}")),
                _ => None,
            },
        };
        let plan = inputs.decide(&source, &c, true).await;
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
        if let Some(step) = plan.steps.first() {
            super::ops::confirm_op(
                &self.op,
                &format!(
                    "Demote the cluster (leader {}) into a standby cluster? It stops taking writes.",
                    step.member
                ),
                "demote",
            )?;
        }
        let run = StandbyOp::new(
            inputs,
            serde_json::json!({"standby_cluster": sc}),
            self.timeout,
        );
        run_role_change(&self.op, &source, &c, plan, run, color, out).await
    }
}
