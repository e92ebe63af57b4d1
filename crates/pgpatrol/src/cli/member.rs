//! `pgpatrol member add|remove`: scaling a cluster up and down, followed to the end and
//! guarded like every operation (core `ops::member` decides what may go). The workload is a
//! StatefulSet (`--k8s-resource statefulset/NAME`: its `scale` subresource; the highest
//! ordinal goes) or a lab (`--lab DIR`: a member is started or stopped as a pod would be).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::Serialize;

use pgpatrol_core::candidates::{self, TakeoverSettings};
use pgpatrol_core::ops::member::{self as member_rule, RemoveRequest};
use pgpatrol_core::ops::{Action, OpStep, Refusal};
use pgpatrol_core::{ByteSize, Cluster, LagKind};

use super::common::{ClusterArgs, PgArgs};
use super::ops::{confirm_op, emit_json, OpArgs, OpFormat};
use super::Outcome;
use crate::audit::Audit;
use crate::lab::{down, up, LabPaths, LabState};
use crate::ops::runner::{self, OpResult, Operation, Recheck, StepOutcome, StepResult};
use crate::ops::switchover::{self, Takeover, TakeoverResult};
use crate::ops::Ops;
use crate::poll::Poll;
use crate::source::k8s::scale::Workload;
use crate::source::{ClusterSource, Detail};

/// How long `member remove --drop-slot` waits for the leader's walsender to let go of the
/// removed member's slot before the drop is refused as active.
const SLOT_RELEASE_WAIT: Duration = Duration::from_secs(15);

/// Scale the cluster: add members and follow them until they stream, or remove one safely.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    Add(MemberAddArgs),
    Remove(MemberRemoveArgs),
}

/// Add members and follow each until Patroni lists it streaming below --tolerance, with
/// progress (its state and the time; in a lab, the bytes of its data directory so far).
///
/// The workload: a StatefulSet (--k8s-resource statefulset/NAME, PATRONI_RESOURCE_NAME),
/// scaled up through its `scale` subresource; or a lab (--lab DIR).
///
/// Exit codes: 0 every new member streams; 1 one did not within --timeout; 2 error.
#[derive(Debug, Args)]
pub struct MemberAddArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The lab the members are added to (`pgpatrol lab up --dir DIR`), instead of a
    /// StatefulSet.
    #[arg(long, value_name = "DIR", env = "PGPATROL_LAB_DIR")]
    pub lab: Option<PathBuf>,

    /// How many members to add.
    #[arg(long, default_value_t = 1)]
    pub count: usize,

    /// A new member is usable once its replay lag is below this (bare number = MB).
    #[arg(long, env = "LAG_TOLERANCE", default_value = "5")]
    pub tolerance: ByteSize,

    /// Give up waiting after this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// With a PostgreSQL login, the progress shows the bytes the leader's basebackups have
    /// streamed so far (pg_stat_progress_basebackup).
    #[command(flatten)]
    pub pg: PgArgs,

    #[command(flatten)]
    pub op: OpArgs,
}

/// Remove one member as a scale-down does: on a StatefulSet the highest ordinal (scaled
/// down through its `scale` subresource), in a lab the member named (else the highest
/// ordinal). Refused for the leader unless --switchover (a switchover with the usual
/// pre-flight first), for the only synchronous standby, when fewer than --min-healthy
/// healthy replicas would remain, and on a paused or leaderless cluster. Then the member is
/// stopped, followed until its member key is gone, and the replication slot Patroni keeps
/// for it is reported (with a PostgreSQL login). --delete-pvc then deletes that pod's
/// PersistentVolumeClaims, after a confirmation.
///
/// Exit codes: 0 removed; 1 refused, or not gone in time; 2 error.
#[derive(Debug, Args)]
pub struct MemberRemoveArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The lab the member is taken from (`pgpatrol lab up --dir DIR`), instead of a
    /// StatefulSet.
    #[arg(long, value_name = "DIR", env = "PGPATROL_LAB_DIR")]
    pub lab: Option<PathBuf>,

    /// The member to remove (default: the highest ordinal; on a StatefulSet it must be the
    /// member of its highest-ordinal pod, the one a scale-down removes).
    pub member: Option<String>,

    /// Then delete the removed pod's PersistentVolumeClaims (StatefulSet only; its data is
    /// gone for good). Asks, or needs --yes.
    #[arg(long)]
    pub delete_pvc: bool,

    /// Then drop the replication slot Patroni kept for it on the leader, once nothing
    /// streams through it (needs a PostgreSQL login; `slot drop`'s rules apply: never an
    /// active or permanent slot, nor a member's).
    #[arg(long)]
    pub drop_slot: bool,

    /// When the member leads, hand the role over first (to the best candidate).
    #[arg(long)]
    pub switchover: bool,

    /// Healthy replicas that must remain.
    #[arg(long, default_value_t = 1)]
    pub min_healthy: usize,

    /// A replica counts as healthy with replay lag below this (bare number = MB).
    #[arg(long, env = "LAG_TOLERANCE", default_value = "5")]
    pub tolerance: ByteSize,

    /// Give up waiting (for the switchover, for the member key to go) after this long.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub pg: PgArgs,

    #[command(flatten)]
    pub op: OpArgs,
}

#[derive(Debug, Serialize)]
struct AddReport {
    operation: &'static str,
    result: AddResult,
    members: Vec<Added>,
    total_secs: f64,
}

/// How `member add` ended: every new member streams below the tolerance, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum AddResult {
    Streaming,
    NotStreaming,
}

impl AddResult {
    fn as_str(self) -> &'static str {
        match self {
            AddResult::Streaming => "streaming",
            AddResult::NotStreaming => "not_streaming",
        }
    }
}

impl std::fmt::Display for AddResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Serialize)]
struct Added {
    name: String,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_lag: Option<u64>,
    streaming: bool,
}

fn lab(dir: &std::path::Path) -> anyhow::Result<(LabPaths, LabState)> {
    let paths = LabPaths::new(dir)?;
    if !paths.state().exists() {
        anyhow::bail!(
            "--lab {}: no lab there (start one with `pgpatrol lab up --dir {}`)",
            dir.display(),
            dir.display()
        );
    }
    let state = LabState::load(&paths)?;
    Ok((paths, state))
}

/// Where members come from and go to: a StatefulSet's pods, or a lab's processes.
enum Scaler {
    Lab {
        paths: LabPaths,
        state: Box<LabState>,
    },
    Kube(Workload),
}

impl Scaler {
    async fn open(
        lab_dir: Option<&std::path::Path>,
        cluster: &ClusterArgs,
    ) -> anyhow::Result<Self> {
        if let Some(d) = lab_dir {
            let (paths, state) = lab(d)?;
            return Ok(Scaler::Lab {
                paths,
                state: Box::new(state),
            });
        }
        match cluster.access().kubernetes {
            Some(t) => Ok(Scaler::Kube(
                Workload::of(&t, cluster.request_timeout).await?,
            )),
            None => anyhow::bail!(
                "name the workload: --k8s-resource statefulset/NAME (PATRONI_RESOURCE_NAME), or --lab DIR for a lab"
            ),
        }
    }

    fn describe(&self) -> String {
        match self {
            Scaler::Lab { paths, .. } => format!("the lab {}", paths.dir.display()),
            Scaler::Kube(w) => format!("statefulset/{} in {}", w.name, w.namespace),
        }
    }

    /// Starts `count` more members; says what was done.
    async fn add(&mut self, count: usize) -> anyhow::Result<String> {
        match self {
            Scaler::Lab { paths, state } => {
                let mut names = Vec::new();
                for _ in 0..count {
                    names.push(up::add_member(paths, state)?);
                }
                Ok(format!("lab member(s) {} started", names.join(", ")))
            }
            Scaler::Kube(w) => {
                let n = w.replicas().await?;
                let want = n + i32::try_from(count).unwrap_or(i32::MAX - n);
                w.scale(want).await?;
                Ok(format!("statefulset/{} scaled {n} -> {want}", w.name))
            }
        }
    }

    /// Bytes in a new member's data directory, where that can be seen (a lab).
    fn copied(&self, member: &str) -> Option<u64> {
        match self {
            Scaler::Lab { state, .. } => state
                .members
                .iter()
                .find(|m| m.name == member)
                .map(|m| dir_bytes(&m.data_dir)),
            Scaler::Kube(_) => None,
        }
    }

    /// The member a scale-down takes: in a lab the one named (else the highest ordinal); on
    /// a StatefulSet the member of its highest-ordinal pod (by name, else by its REST
    /// address), which a named member must be.
    async fn victim(&self, named: Option<&str>, c: &Cluster) -> anyhow::Result<String> {
        match self {
            Scaler::Lab { paths, state } => {
                let name = match named {
                    Some(n) => n.to_string(),
                    None => state
                        .members
                        .iter()
                        .max_by_key(|m| {
                            m.name
                                .trim_start_matches(|c: char| !c.is_ascii_digit())
                                .parse::<usize>()
                                .unwrap_or(0)
                        })
                        .map(|m| m.name.clone())
                        .ok_or_else(|| anyhow::anyhow!("the lab has no member"))?,
                };
                if state.member(&name).is_err() {
                    anyhow::bail!(
                        "--lab {}: no lab member named {name:?}",
                        paths.dir.display()
                    );
                }
                Ok(name)
            }
            Scaler::Kube(w) => {
                let n = w.replicas().await?;
                if n < 1 {
                    anyhow::bail!("statefulset/{} has no replicas to remove", w.name);
                }
                let pod = w.pod(n - 1).await?.ok_or_else(|| {
                    anyhow::anyhow!(
                        "statefulset/{} has {n} replicas but no pod {}",
                        w.name,
                        w.pod_name(n - 1)
                    )
                })?;
                let address = match (&pod.ip, &pod.port) {
                    (Some(ip), Ok(port)) => Some(format!("http://{ip}:{port}")),
                    _ => None,
                };
                let member = c
                    .members
                    .iter()
                    .find(|m| m.name == pod.name)
                    .or_else(|| {
                        c.members.iter().find(|m| {
                            m.api_url
                                .as_deref()
                                .and_then(|u| crate::source::http::base_url(u).ok())
                                .is_some_and(|b| Some(b) == address)
                        })
                    })
                    .map(|m| m.name.clone())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "the highest-ordinal pod {} is no member Patroni lists (by name or REST address)",
                            pod.name
                        )
                    })?;
                if let Some(want) = named.filter(|want| *want != member) {
                    anyhow::bail!(
                        "a scale-down of statefulset/{} removes its highest ordinal, pod {} (member {member}), not {want}: switch over or remove {member}",
                        w.name,
                        pod.name
                    );
                }
                Ok(member)
            }
        }
    }

    /// Takes `member` away: stops the lab member, or scales the StatefulSet down by one.
    /// Returns what was done, and the pod's ordinal on a StatefulSet.
    async fn remove(&mut self, member: &str) -> anyhow::Result<(String, Option<i32>)> {
        match self {
            Scaler::Lab { paths, state } => {
                down::remove_member(paths, state, member).await?;
                Ok((
                    format!("{member} stopped, its data directory deleted"),
                    None,
                ))
            }
            Scaler::Kube(w) => {
                let n = w.replicas().await?;
                w.scale(n - 1).await?;
                Ok((
                    format!(
                        "statefulset/{} scaled {n} -> {}: pod {} ({member}) goes",
                        w.name,
                        n - 1,
                        w.pod_name(n - 1)
                    ),
                    Some(n - 1),
                ))
            }
        }
    }
}

/// Bytes the leader's running basebackups have streamed (`pg_stat_progress_basebackup`):
/// a new member's clone as the leader sees it. `None` when it cannot be read.
async fn basebackup_streamed(c: &Cluster, login: &crate::source::pg::PgLogin) -> Option<u64> {
    let l = c.leader()?;
    let (client, driver) =
        crate::source::pg::connect(l.host.as_deref()?, l.port?, login, "pgpatrol member add")
            .await
            .ok()?;
    let row = client
        .query_one(
            "SELECT coalesce(sum(backup_streamed), 0)::float8 FROM pg_stat_progress_basebackup",
            &[],
        )
        .await
        .ok();
    drop(client);
    let _ = driver.await;
    row.map(|r| r.get::<_, f64>(0).max(0.0) as u64)
}

/// Bytes under `dir` (a new member's data directory as its clone fills it).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl MemberAddArgs {
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        if self.count == 0 {
            anyhow::bail!("--count must be at least 1");
        }
        let mut scaler = Scaler::open(self.lab.as_deref(), &self.cluster).await?;
        let source = self.cluster.source().await?;
        let before = source.snapshot(Detail::Lag).await?.cluster;
        if before.leader().is_none() {
            eprintln!("pgpatrol: refused: the cluster has no leader to clone a new member from; nothing was started");
            return Ok(Outcome::Problem);
        }
        let json = self.op.format == OpFormat::Json;
        if self.op.dry_run {
            if json {
                emit_json(
                    out,
                    &serde_json::json!({
                        "operation": "member add",
                        "result": "dry_run",
                        "count": self.count,
                        "workload": scaler.describe(),
                    }),
                )?;
            } else {
                writeln!(
                    out,
                    "dry run: would add {} member(s) to {} and follow each until it streams",
                    self.count,
                    scaler.describe()
                )?;
            }
            return Ok(Outcome::Ok);
        }
        let t0 = Instant::now();
        let known: Vec<String> = before.members.iter().map(|m| m.name.clone()).collect();
        let audit = Audit::open(
            self.op.audit_log.as_deref(),
            before.scope.as_deref().unwrap_or("cluster"),
        )?;
        let did = scaler.add(self.count).await?;
        audit.record_kube("member add", "-", &did, "done");
        eprintln!("member add: {did}");
        let login = self.pg.login(&self.cluster).ok().flatten();
        // The new members are those /cluster lists that were not there before.
        let mut shown: std::collections::BTreeMap<String, String> = Default::default();
        let mut last: Option<Cluster> = None;
        let mut poll = Poll::new(self.timeout, Duration::from_secs(1));
        while poll.next().await {
            let Ok(snap) = source.snapshot(Detail::Lag).await else {
                continue;
            };
            let c = snap.cluster;
            let new: Vec<&pgpatrol_core::Member> = c
                .members
                .iter()
                .filter(|m| !known.contains(&m.name))
                .collect();
            let streamed = match &login {
                Some(l) => basebackup_streamed(&c, l).await,
                None => None,
            };
            for m in &new {
                let seen = m.state.to_string();
                if shown.get(&m.name) != Some(&seen) {
                    let copied = match (scaler.copied(&m.name), streamed) {
                        (Some(b), _) => {
                            format!(", {} in its data directory", pgpatrol_core::units::human(b))
                        }
                        (None, Some(b)) if b > 0 => format!(
                            ", {} streamed by the leader's basebackup",
                            pgpatrol_core::units::human(b)
                        ),
                        _ => String::new(),
                    };
                    eprintln!(
                        "member add: {}: {seen}{copied}, {:.0} s",
                        m.name,
                        t0.elapsed().as_secs_f64()
                    );
                    shown.insert(m.name.clone(), seen);
                }
            }
            let all = new.len() >= self.count
                && new.iter().all(|m| {
                    m.shows_streaming(c.patroni_version)
                        && m.is_caught_up(LagKind::Replay, self.tolerance.0)
                });
            last = Some(c);
            if all {
                break;
            }
        }
        let members: Vec<Added> = last
            .as_ref()
            .map(|c| {
                c.members
                    .iter()
                    .filter(|m| !known.contains(&m.name))
                    .map(|m| Added {
                        name: m.name.clone(),
                        state: m.state.to_string(),
                        replay_lag: m.lag(LagKind::Replay).and_then(|l| l.bytes()),
                        streaming: m.shows_streaming(c.patroni_version)
                            && m.is_caught_up(LagKind::Replay, self.tolerance.0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ok = members.len() >= self.count && members.iter().all(|m| m.streaming);
        let report = AddReport {
            operation: "member add",
            result: if ok {
                AddResult::Streaming
            } else {
                AddResult::NotStreaming
            },
            members,
            total_secs: crate::ops::round1(t0.elapsed().as_secs_f64()),
        };
        if json {
            emit_json(out, &report)?;
        } else {
            for m in &report.members {
                writeln!(
                    out,
                    "{}: {}{}",
                    m.name,
                    if m.streaming {
                        "streaming"
                    } else {
                        "NOT streaming below the tolerance"
                    },
                    m.replay_lag
                        .map(|l| format!(", replay lag {}", pgpatrol_core::units::human(l)))
                        .unwrap_or_default()
                )?;
            }
            if report.members.len() < self.count {
                writeln!(
                    out,
                    "{} of {} new member(s) listed by Patroni",
                    report.members.len(),
                    self.count
                )?;
            }
            writeln!(
                out,
                "member add: {} ({:.1} s)",
                report.result, report.total_secs
            )?;
        }
        Ok(if ok { Outcome::Ok } else { Outcome::Problem })
    }
}

impl MemberRemoveArgs {
    fn request<'a>(&self, name: &'a str, sync: bool) -> RemoveRequest<'a> {
        RemoveRequest {
            member: name,
            switchover: self.switchover,
            min_healthy: self.min_healthy,
            lag: LagKind::Replay,
            tolerance: self.tolerance.0,
            synchronous_mode: sync,
        }
    }

    /// The cluster and whether it runs in synchronous mode; the configuration must be read
    /// (the only synchronous standby cannot be told otherwise).
    async fn read(&self, source: &ClusterSource) -> anyhow::Result<(Cluster, bool)> {
        let c = source.snapshot(Detail::Lag).await?.cluster;
        let config = source.config().await.map_err(|e| {
            anyhow::anyhow!("cannot read the dynamic configuration ({e}): cannot tell whether synchronous_mode is on, so cannot tell that the member is not the only synchronous standby")
        })?;
        Ok((c, candidates::synchronous_mode(&config).0))
    }

    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let mut scaler = Scaler::open(self.lab.as_deref(), &self.cluster).await?;
        if self.drop_slot && !matches!(self.pg.login(&self.cluster), Ok(Some(_))) {
            anyhow::bail!("--drop-slot drops the slot on the leader's PostgreSQL: give --pg-user and --pg-password-file (or -c patroni.yml with postgresql.authentication.superuser)");
        }
        if self.delete_pvc && matches!(scaler, Scaler::Lab { .. }) {
            anyhow::bail!("--delete-pvc is for a StatefulSet's claims; a lab member's data directory is deleted with it");
        }
        let json = self.op.format == OpFormat::Json;
        let source = self.cluster.source().await?;
        let (c, sync) = self.read(&source).await?;
        let name = scaler.victim(self.member.as_deref(), &c).await?;
        let mut plan = member_rule::plan(&c, &self.request(&name, sync));
        if plan.refusal.is_none() {
            // What the flags add after the member is gone: its claims, then its slot.
            if self.delete_pvc {
                plan.steps.push(OpStep::new(
                    Action::DeleteClaim,
                    &name,
                    "--delete-pvc: the claims of its pod, each confirmed",
                ));
            }
            if self.drop_slot {
                plan.steps.push(OpStep::new(
                    Action::DropSlot,
                    pgpatrol_core::slots::slot_name_from_member_name(&name),
                    "--drop-slot: the slot Patroni kept for it on the leader, by slot drop's rules",
                ));
            }
        }
        if plan.refusal.is_none() && !self.op.dry_run {
            confirm_op(
                &self.op,
                &format!(
                    "Remove {name} from the cluster? It is stopped and its data directory deleted."
                ),
                "remove a member",
            )?;
        }
        let audit = Audit::for_run(
            !self.op.dry_run && plan.refusal.is_none(),
            self.op.audit_log.as_deref(),
            c.scope.as_deref(),
        )?;
        let quiet = crate::progress::Quiet;
        let ops = Ops::new(&source, "member remove", self.op.dry_run, &audit, &quiet).json(json);
        let mut run = MemberRemoveOp {
            args: &self,
            scaler: &mut scaler,
            name: name.clone(),
            switched: false,
            ordinal: None,
            done: Vec::new(),
            slot: None,
            slot_kept: false,
            last: None,
            out: &mut *out,
            write_error: None,
        };
        let mut report = runner::run(&mut run, &ops, plan).await;
        let (done, mut slot, slot_kept) = (run.done, run.slot, run.slot_kept);
        if let Some(e) = run.write_error {
            return Err(e.into());
        }
        if report.ok() && slot.is_none() && !self.op.dry_run {
            // Without --drop-slot the slot is reported, not touched.
            slot = Some(self.slot_state(&ops, &name).await.said);
        }
        report.result = match (report.result, report.steps.last()) {
            (OpResult::Done, _) => OpResult::Removed,
            (OpResult::Failed, Some(s)) if slot_kept && s.action == Action::DropSlot => {
                OpResult::RemovedSlotKept
            }
            (OpResult::Failed, Some(s)) if s.action == Action::Switchover => {
                OpResult::SwitchoverFailed
            }
            (OpResult::Failed, Some(s)) if s.action == Action::RemoveMember => OpResult::KeyNotGone,
            (r, _) => r,
        };
        report.put("member", &name);
        report.put("done", &done);
        report.put("slot", &slot);
        if let Some(Refusal::Unsafe(why)) = report.refusal() {
            eprintln!("pgpatrol: refused: {why}; nothing more was done");
        }
        if json {
            emit_json(out, &report)?;
        } else if report.refusal().is_none() {
            if self.op.dry_run {
                crate::ops::runner::write_plan(out, &report.plan)?;
            }
            for d in &done {
                writeln!(out, "member remove: {d}")?;
            }
            if let Some(s) = &slot {
                writeln!(out, "member remove: {s}")?;
            }
            if let Some(why) = &report.stopped {
                writeln!(out, "member remove: {why}")?;
            }
            writeln!(
                out,
                "member remove {name}: {} ({:.1} s)",
                report.result, report.total_secs
            )?;
        }
        if let Some(Refusal::Invalid(why)) = report.refusal() {
            anyhow::bail!("{why}");
        }
        Ok(if report.ok() {
            Outcome::Ok
        } else {
            Outcome::Problem
        })
    }

    /// What became of the replication slot Patroni kept for the member on the leader; with
    /// --drop-slot, dropped by `slot drop`'s rules through the one sender (`Ops::send_sql`).
    async fn slot_state(&self, ops: &Ops<'_>, name: &str) -> SlotState {
        let source = ops.source;
        let slot = pgpatrol_core::slots::slot_name_from_member_name(name);
        let login = match self.pg.login(&self.cluster) {
            Ok(Some(l)) => l,
            _ => {
                return SlotState::there(format!(
                    "slot {slot} not checked: no PostgreSQL login (--pg-user, or -c patroni.yml)"
                ))
            }
        };
        // Full: the Patroni version (member_slots_ttl) comes from the members' /patroni.
        let Ok(snap) = source.snapshot(Detail::Full).await else {
            return SlotState::there(format!(
                "slot {slot} not checked: the cluster could not be read"
            ));
        };
        let Some(l) = snap.cluster.leader() else {
            return SlotState::there(format!("slot {slot} not checked: no leader"));
        };
        let (Some(host), Some(port)) = (&l.host, l.port) else {
            return SlotState::there(format!(
                "slot {slot} not checked: no address for the leader"
            ));
        };
        let (client, driver) =
            match crate::source::pg::connect(host, port, &login, "pgpatrol member remove").await {
                Ok(c) => c,
                Err(e) => return SlotState::there(format!("slot {slot} not checked: {e}")),
            };
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&slot];
        let read = || {
            client.query_opt(
                "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 FROM pg_replication_slots WHERE slot_name = $1",
                &params,
            )
        };
        let mut row = read().await;
        // The member was just stopped: the leader's walsender may hold its slot a moment
        // longer (seen on Patroni 3.0). With --drop-slot, wait a bounded while for it to let
        // go; still active then, the drop is refused as before.
        let deadline = Instant::now() + SLOT_RELEASE_WAIT;
        while self.drop_slot
            && matches!(&row, Ok(Some(r)) if r.get::<_, bool>(0))
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
            row = read().await;
        }
        // --drop-slot: `slot drop`'s rules (core ops::slot) on what was just read.
        let dropped = match (&row, self.drop_slot) {
            (Ok(Some(r)), true) => {
                let config = source.config().await.ok();
                let permanent: Vec<String> = config
                    .as_ref()
                    .and_then(|c| {
                        c.get("slots")
                            .and_then(|s| s.as_object())
                            .map(|o| o.keys().cloned().collect())
                    })
                    .unwrap_or_default();
                // Patroni 4.0+ keeps a gone member's slot for member_slots_ttl and creates
                // it again when it is dropped (seen in the lab): dropping it would not last.
                let ttl = config.as_ref().and_then(|c| c.get("member_slots_ttl"));
                let retained = match snap.cluster.patroni_version {
                    Some(v) if v >= pgpatrol_core::PatroniVersion::new(4, 0, 0) => {
                        (!crate::ops::slot::ttl_is_zero(ttl)).then(|| {
                            format!(
                                "Patroni {v} keeps a gone member's slot for member_slots_ttl ({}) and creates it again if it is dropped; it goes by itself then (member_slots_ttl: 0 in the dynamic configuration makes Patroni drop it at once)",
                                ttl.map_or("30min, the default".to_string(), |t| t
                                    .as_str()
                                    .map_or_else(|| t.to_string(), str::to_string))
                            )
                        })
                    }
                    _ => None,
                };
                let refusal = retained.or_else(|| {
                    pgpatrol_core::ops::slot::drop_refusal(
                        &pgpatrol_core::ops::slot::Slot {
                            name: &slot,
                            active: r.get::<_, bool>(0),
                        },
                        &permanent,
                        &snap.cluster.members,
                        // Kept slots are refused above, by the member_slots_ttl rule.
                        &[],
                    )
                });
                Some(match refusal {
                    Some(why) => Err(why),
                    None => {
                        let target = format!("postgresql://{host}:{port}");
                        let sql = format!("SELECT pg_drop_replication_slot('{slot}')");
                        let run = async {
                            client
                                .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                                .await
                                .map(|_| "dropped".to_string())
                                .map_err(crate::source::pg::error_line)
                        };
                        match ops.send_sql(&l.name, &target, &sql, run).await {
                            Ok(_) => Ok(()),
                            // Patroni dropped it between the read and the drop: gone.
                            Err(e) if e.contains("does not exist") => Ok(()),
                            Err(e) => Err(e),
                        }
                    }
                })
            }
            _ => None,
        };
        drop(client);
        let _ = driver.await;
        match (row, dropped) {
            (Ok(Some(r)), Some(Ok(()))) => SlotState::gone(format!(
                "slot {slot} dropped on the leader {} (it held {})",
                l.name,
                r.get::<_, Option<f64>>(1)
                    .map_or("an unknown amount of WAL".into(), |b| {
                        pgpatrol_core::units::human(b.max(0.0) as u64)
                    })
            )),
            (Ok(Some(_)), Some(Err(why))) => {
                SlotState::there(format!("slot {slot} not dropped: {why}"))
            }
            (row, _) => match row {
                Ok(None) => SlotState::gone(format!(
                    "slot {slot}: none on the leader {} (Patroni dropped it, or kept none)",
                    l.name
                )),
                Ok(Some(r)) => {
                    let held = r
                        .get::<_, Option<f64>>(1)
                        .map_or("an unknown amount of".into(), |b| {
                            pgpatrol_core::units::human(b.max(0.0) as u64)
                        });
                    SlotState::there(format!(
                    "slot {slot} remains on the leader {} ({}, holds {held} WAL): Patroni keeps a gone member's slot for member_slots_ttl (4.0+) and then drops it; --drop-slot (or `pgpatrol slot drop {slot}`) frees it now",
                    l.name,
                    if r.get::<_, bool>(0) { "active" } else { "inactive" }
                ))
                }
                Err(e) => SlotState::there(format!(
                    "slot {slot} not checked: {}",
                    crate::source::pg::error_line(e)
                )),
            },
        }
    }
}

/// What became of a removed member's slot on the leader: whether it is gone (dropped now,
/// or none is left), and what was seen, in words.
struct SlotState {
    gone: bool,
    said: String,
}

impl SlotState {
    fn gone(said: String) -> Self {
        SlotState { gone: true, said }
    }

    /// Still there, or not known.
    fn there(said: String) -> Self {
        SlotState { gone: false, said }
    }
}

/// `member remove` as the runner carries it out: before each step the cluster and the
/// dynamic configuration are read again and core's `ops::member` rule decided again; the
/// role is handed over at most once; the member goes through the workload (a scale-down,
/// or the lab), followed until its member key is gone; then its claims and its slot.
struct MemberRemoveOp<'a> {
    args: &'a MemberRemoveArgs,
    scaler: &'a mut Scaler,
    name: String,
    switched: bool,
    ordinal: Option<i32>,
    done: Vec<String>,
    slot: Option<String>,
    /// --drop-slot found the slot kept (Patroni 4.0+'s member_slots_ttl, or a slot rule).
    slot_kept: bool,
    last: Option<Cluster>,
    /// Where the command writes (a dry run's line is said when its step runs), and the
    /// first error writing there, returned once the run is over.
    out: &'a mut dyn Write,
    write_error: Option<std::io::Error>,
}

impl Operation for MemberRemoveOp<'_> {
    async fn recheck(&mut self, ops: &Ops<'_>, _: usize, step: &OpStep) -> Result<(), Recheck> {
        if matches!(step.action, Action::DeleteClaim | Action::DropSlot) {
            // The member is gone: what remains are its claims and its slot, each judged by
            // its own rule when it is done.
            return Ok(());
        }
        let (c, sync) = self
            .args
            .read(ops.source)
            .await
            .map_err(|e| Recheck::Unreadable {
                what: "the cluster and its synchronous settings".into(),
                label: "read",
                error: format!("{e:#}"),
            })?;
        let again = member_rule::remove(&c, &self.args.request(&self.name, sync))
            .map_err(|r| r.to_string())?;
        let next = again.first().map(|s| s.action);
        match (step.action, next) {
            // A dry run hands nothing over: the member still leads when its removal is shown.
            (Action::RemoveMember, Some(Action::Switchover)) if self.switched && ops.dry_run => {}
            (Action::RemoveMember | Action::Switchover, Some(Action::Switchover))
                if self.switched =>
            {
                return Err(format!(
                    "{} leads again after the switchover: removing nothing",
                    self.name
                )
                .into())
            }
            (a, Some(n)) if a == n => {}
            (a, n) => {
                return Err(format!(
                    "the plan changed: {} was next, now {}",
                    a.as_str(),
                    n.map_or("nothing", |n| n.as_str())
                )
                .into())
            }
        }
        self.last = Some(c);
        Ok(())
    }

    async fn perform(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let t0 = Instant::now();
        let mut out = match step.action {
            Action::Switchover => self.hand_over(ops, step).await,
            Action::RemoveMember => self.remove(ops, step).await,
            Action::DeleteClaim => self.delete_claims(ops, step).await,
            _ => self.drop_slot(ops, step).await,
        };
        out.secs = crate::ops::round1(t0.elapsed().as_secs_f64());
        out
    }
}

impl MemberRemoveOp<'_> {
    async fn hand_over(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let out = StepOutcome::failed(step);
        self.switched = true;
        let Some(c) = self.last.take() else {
            return out.with(StepResult::Failed, "the cluster was not read");
        };
        let settings = match ops.source.config().await {
            Ok(cfg) => TakeoverSettings::from_config(&cfg),
            Err(e) => {
                return out.with(
                    StepResult::Failed,
                    format!("cannot read the dynamic configuration: {e}"),
                )
            }
        };
        let cands = candidates::candidates(&c, &settings, candidates::Takeover::Switchover);
        let Some(best) = candidates::best(&cands).map(|b| b.name.clone()) else {
            let why: Vec<String> = cands
                .iter()
                .map(|x| format!("{}: {}", x.name, x.reasons.join(", ")))
                .collect();
            return out.with(
                StepResult::Failed,
                format!(
                    "{} leads and no replica can take over ({})",
                    step.member,
                    why.join("; ")
                ),
            );
        };
        let Some(leader) = c.member(&step.member).cloned() else {
            return out.with(StepResult::Failed, format!("{} left /cluster", step.member));
        };
        let t = Takeover {
            operation: candidates::Takeover::Switchover,
            leader: Some(step.member.clone()),
            candidate: Some(best.clone()),
            scheduled_at: None,
            timeout: self.args.timeout,
        };
        match switchover::run(ops, &c, &leader, &t, cands).await {
            Ok(so) if so.result == TakeoverResult::Switched => {
                self.done.push(format!(
                    "switchover from {} to {best}: {}",
                    step.member, so.detail
                ));
                let mut out = out.with(StepResult::SwitchedOver, so.detail);
                out.write_gap = so.write_gap;
                out
            }
            Ok(so) if so.result == TakeoverResult::DryRun => {
                out.with(StepResult::DryRun, so.detail)
            }
            Ok(so) => {
                self.done.push(format!("switchover: {}", so.detail));
                out.with(StepResult::Failed, so.detail)
            }
            Err(e) => out.with(StepResult::Failed, e.to_string()),
        }
    }

    async fn remove(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let out = StepOutcome::failed(step);
        let Some(c) = self.last.take() else {
            return out.with(StepResult::Failed, "the cluster was not read");
        };
        if ops.dry_run {
            let what = format!(
                "dry run: would remove {} from {} ({})",
                step.member,
                self.scaler.describe(),
                step.reason
            );
            if !self.args.op.format.eq(&OpFormat::Json) {
                if let Err(e) = writeln!(self.out, "{what}") {
                    self.write_error.get_or_insert(e);
                }
            }
            return out.with(StepResult::DryRun, what);
        }
        // On a StatefulSet the pod that goes must still be this member's.
        let still = match self.scaler.victim(Some(&step.member), &c).await {
            Ok(s) => s,
            Err(e) => return out.with(StepResult::Failed, e.to_string()),
        };
        match self.scaler.remove(&still).await {
            Ok((done, o)) => {
                ops.audit
                    .record_kube("member remove", &still, &done, "done");
                self.done.push(done);
                self.ordinal = o;
            }
            Err(e) => return out.with(StepResult::Failed, e.to_string()),
        }
        // Followed until Patroni's member key is gone (a stopped Patroni deletes it).
        let mut poll = Poll::new(self.args.timeout, Duration::from_millis(500));
        while poll.next().await {
            if let Ok(s) = ops.source.snapshot(Detail::Lag).await {
                if s.cluster.member(&self.name).is_none() {
                    self.done
                        .push(format!("{}'s member key is gone", self.name));
                    return out.with(StepResult::Done, format!("{} is gone", self.name));
                }
            }
        }
        let why = format!(
            "{} is still listed in /cluster after {}",
            self.name,
            humantime::format_duration(self.args.timeout)
        );
        self.done.push(why.clone());
        out.with(StepResult::Failed, why)
    }

    async fn delete_claims(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let out = StepOutcome::failed(step);
        let (Scaler::Kube(w), Some(ordinal)) = (&*self.scaler, self.ordinal) else {
            return if ops.dry_run {
                out.with(
                    StepResult::DryRun,
                    "dry run: would delete the claims of its pod",
                )
            } else {
                out.with(
                    StepResult::Failed,
                    "no StatefulSet ordinal for the removed pod",
                )
            };
        };
        let claims = match w.claims(ordinal).await {
            Ok(c) => c,
            Err(e) => return out.with(StepResult::Failed, e.to_string()),
        };
        for claim in claims {
            if let Err(e) = confirm_op(
                &self.args.op,
                &format!("Delete PersistentVolumeClaim {claim}? The data on it is lost for good."),
                "delete the claim",
            ) {
                self.done.push(format!("claim {claim} kept: {e}"));
                continue;
            }
            let what = match w.delete_claim(&claim).await {
                Ok(true) => "deleted",
                Ok(false) => "was not there",
                Err(e) => return out.with(StepResult::Failed, e.to_string()),
            };
            ops.audit.record_kube(
                "member remove",
                &self.name,
                &format!("DELETE persistentvolumeclaims/{claim}"),
                what,
            );
            self.done.push(format!("claim {claim} {what}"));
        }
        out.with(StepResult::Done, "the claims of its pod")
    }

    async fn drop_slot(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let out = StepOutcome::failed(step);
        if ops.dry_run {
            return out.with(
                StepResult::DryRun,
                format!(
                    "dry run: would drop slot {} by slot drop's rules",
                    step.member
                ),
            );
        }
        let SlotState { gone, said } = self.args.slot_state(ops, &self.name).await;
        self.slot = Some(said.clone());
        if gone {
            out.with(StepResult::Done, said)
        } else {
            self.slot_kept = true;
            out.with(StepResult::Failed, said)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_add_result_reads_as_its_json_word() {
        for r in [AddResult::Streaming, AddResult::NotStreaming] {
            assert_eq!(serde_json::json!(r), r.as_str(), "{r:?}");
        }
    }
}
