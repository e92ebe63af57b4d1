//! `pgpatrol member add|remove`: scaling a cluster up and down, followed to the end and
//! guarded like every operation (core `ops::member` decides what may go). The workload is a
//! lab (`--lab DIR`): a member is started or stopped as a pod would be. Kubernetes'
//! StatefulSet `scale` is not built yet (docs/GUIDE.md says so).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::Serialize;

use pgpatrol_core::candidates::{self, TakeoverSettings};
use pgpatrol_core::ops::member::{self as member_rule, RemoveRequest, RemoveStep};
use pgpatrol_core::ops::Refusal;
use pgpatrol_core::{ByteSize, Cluster, LagKind};

use super::common::{ClusterArgs, PgArgs};
use super::ops::{confirm_op, emit_json, OpArgs, OpFormat};
use super::Outcome;
use crate::lab::{process, LabPaths, LabState};
use crate::ops::switchover::{self, Takeover, TakeoverResult};
use crate::ops::{audit::Audit, Ops};
use crate::poll::Poll;
use crate::source::rest::{Detail, RestSource};

/// Scale the cluster: add members and follow them until they stream, or remove one safely.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    Add(MemberAddArgs),
    Remove(MemberRemoveArgs),
}

/// Add members (a lab: `--lab DIR`) and follow each until Patroni lists it streaming below
/// --tolerance, with progress (its state, the bytes of its data directory so far, the time).
///
/// Exit codes: 0 every new member streams; 1 one did not within --timeout; 2 error.
#[derive(Debug, Args)]
pub struct MemberAddArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The lab the members are added to (`pgpatrol lab up --dir DIR`).
    #[arg(long, value_name = "DIR", env = "PGPATROL_LAB_DIR")]
    pub lab: PathBuf,

    /// How many members to add.
    #[arg(long, default_value_t = 1)]
    pub count: usize,

    /// A new member is usable once its replay lag is below this (bare number = MB).
    #[arg(long, env = "LAG_TOLERANCE", default_value = "5")]
    pub tolerance: ByteSize,

    /// Give up waiting after this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub op: OpArgs,
}

/// Remove one member as a scale-down does (a lab: the member named, else the highest
/// ordinal). Refused for the leader unless --switchover (a switchover with the usual
/// pre-flight first), for the only synchronous standby, when fewer than --min-healthy
/// healthy replicas would remain, and on a paused or leaderless cluster. Then the member is
/// stopped, followed until its member key is gone, and the replication slot Patroni keeps
/// for it is reported (with a PostgreSQL login).
///
/// Exit codes: 0 removed; 1 refused, or not gone in time; 2 error.
#[derive(Debug, Args)]
pub struct MemberRemoveArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The lab the member is taken from (`pgpatrol lab up --dir DIR`).
    #[arg(long, value_name = "DIR", env = "PGPATROL_LAB_DIR")]
    pub lab: PathBuf,

    /// The member to remove (default: the lab's highest ordinal, as a StatefulSet removes).
    pub member: Option<String>,

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
    result: &'static str,
    members: Vec<Added>,
    total_secs: f64,
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
    pub async fn run(self) -> anyhow::Result<Outcome> {
        if self.count == 0 {
            anyhow::bail!("--count must be at least 1");
        }
        let (paths, mut state) = lab(&self.lab)?;
        let source = self.cluster.source().await?;
        let before = source.snapshot(Detail::Lag).await?.cluster;
        if before.leader().is_none() {
            eprintln!("pgpatrol: refused: the cluster has no leader to clone a new member from; nothing was started");
            return Ok(Outcome::Problem);
        }
        let json = self.op.format == OpFormat::Json;
        if self.op.dry_run {
            if json {
                emit_json(&serde_json::json!({
                    "operation": "member add",
                    "result": "dry_run",
                    "count": self.count,
                }))?;
            } else {
                println!(
                    "dry run: would start {} member(s) in the lab {} and follow each until it streams",
                    self.count,
                    paths.dir.display()
                );
            }
            return Ok(Outcome::Ok);
        }
        let t0 = Instant::now();
        let mut added = Vec::new();
        for _ in 0..self.count {
            let name = process::add_member(&paths, &mut state)?;
            eprintln!("member add: {name} started");
            added.push(name);
        }
        let mut shown: Vec<String> = vec![String::new(); added.len()];
        let mut last: Option<Cluster> = None;
        let mut poll = Poll::new(self.timeout, Duration::from_secs(1));
        while poll.next().await {
            let Ok(snap) = source.snapshot(Detail::Lag).await else {
                continue;
            };
            let c = snap.cluster;
            let mut all = true;
            for (i, name) in added.iter().enumerate() {
                let m = c.member(name);
                let ready = m.is_some_and(|m| {
                    m.shows_streaming(c.patroni_version)
                        && m.is_caught_up(LagKind::Replay, self.tolerance.0)
                });
                all &= ready;
                let data = state
                    .members
                    .iter()
                    .find(|s| &s.name == name)
                    .map(|s| dir_bytes(&s.data_dir))
                    .unwrap_or(0);
                let seen = match m {
                    Some(m) => format!("{}", m.state),
                    None => "not in /cluster yet".to_string(),
                };
                if seen != shown[i] {
                    eprintln!(
                        "member add: {name}: {seen}, {} in its data directory, {:.0} s",
                        pgpatrol_core::units::human(data),
                        t0.elapsed().as_secs_f64()
                    );
                    shown[i] = seen;
                }
            }
            last = Some(c);
            if all {
                break;
            }
        }
        let members: Vec<Added> = added
            .iter()
            .map(|name| {
                let m = last.as_ref().and_then(|c| c.member(name));
                Added {
                    name: name.clone(),
                    state: m.map_or("unknown".into(), |m| m.state.to_string()),
                    replay_lag: m
                        .and_then(|m| m.lag(LagKind::Replay))
                        .and_then(|l| l.bytes()),
                    streaming: m.is_some_and(|m| {
                        m.shows_streaming(last.as_ref().and_then(|c| c.patroni_version))
                            && m.is_caught_up(LagKind::Replay, self.tolerance.0)
                    }),
                }
            })
            .collect();
        let ok = members.iter().all(|m| m.streaming);
        let report = AddReport {
            operation: "member add",
            result: if ok { "streaming" } else { "not_streaming" },
            members,
            total_secs: crate::ops::round1(t0.elapsed().as_secs_f64()),
        };
        if json {
            emit_json(&report)?;
        } else {
            for m in &report.members {
                println!(
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
                );
            }
            println!("member add: {} ({:.1} s)", report.result, report.total_secs);
        }
        Ok(if ok { Outcome::Ok } else { Outcome::Problem })
    }
}

#[derive(Debug, Serialize)]
struct RemoveReport {
    operation: &'static str,
    member: String,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Refusal>,
    steps: Vec<RemoveStep>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    done: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<String>,
    requests: Vec<crate::ops::SentRequest>,
    total_secs: f64,
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
    async fn read(&self, source: &RestSource) -> anyhow::Result<(Cluster, bool)> {
        let c = source.snapshot(Detail::Lag).await?.cluster;
        let config = source.config().await.map_err(|e| {
            anyhow::anyhow!("cannot read the dynamic configuration ({e}): cannot tell whether synchronous_mode is on, so cannot tell that the member is not the only synchronous standby")
        })?;
        Ok((c, candidates::synchronous_mode(&config).0))
    }

    pub async fn run(self) -> anyhow::Result<Outcome> {
        let t0 = Instant::now();
        let (paths, mut state) = lab(&self.lab)?;
        let name = match &self.member {
            Some(n) => n.clone(),
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
        let json = self.op.format == OpFormat::Json;
        let source = self.cluster.source().await?;
        let (c, sync) = self.read(&source).await?;
        let mut report = RemoveReport {
            operation: "member remove",
            member: name.clone(),
            result: "refused",
            refusal: None,
            steps: Vec::new(),
            done: Vec::new(),
            slot: None,
            requests: Vec::new(),
            total_secs: 0.0,
        };
        let steps = match member_rule::remove(&c, &self.request(&name, sync)) {
            Ok(s) => s,
            Err(r) => return self.refused(report, r, json),
        };
        report.steps = steps.clone();
        if self.op.dry_run {
            report.result = "dry_run";
            if json {
                emit_json(&report)?;
            } else {
                for s in &steps {
                    match s {
                        RemoveStep::Switchover { from, reason } => {
                            println!(
                                "dry run: would hand the leader role over from {from} ({reason})"
                            )
                        }
                        RemoveStep::Remove { member, reason } => {
                            println!("dry run: would stop {member} and delete its data directory ({reason})")
                        }
                    }
                }
            }
            return Ok(Outcome::Ok);
        }
        confirm_op(
            &self.op,
            &format!(
                "Remove {name} from the cluster? It is stopped and its data directory deleted."
            ),
            "remove a member",
        )?;
        let audit = Audit::open(
            self.op.audit_log.as_deref(),
            c.scope.as_deref().unwrap_or("cluster"),
        )?;
        let quiet = crate::executor::Quiet;
        let ops = Ops::new(&source, "member remove", false, &audit, &quiet).json(json);
        // Read again and decide again before each step.
        loop {
            let (c, sync) = self.read(&source).await?;
            let steps = match member_rule::remove(&c, &self.request(&name, sync)) {
                Ok(s) => s,
                Err(r) => {
                    report.requests = ops.sent();
                    return self.refused(report, r, json);
                }
            };
            match steps.first() {
                Some(RemoveStep::Switchover { from, .. }) => {
                    let settings = TakeoverSettings::from_config(&source.config().await?);
                    let cands =
                        candidates::candidates(&c, &settings, candidates::Takeover::Switchover);
                    let Some(best) = candidates::best(&cands).map(|b| b.name.clone()) else {
                        let why: Vec<String> = cands
                            .iter()
                            .map(|x| format!("{}: {}", x.name, x.reasons.join(", ")))
                            .collect();
                        return self.refused(
                            report,
                            Refusal::Unsafe(format!(
                                "{from} leads and no replica can take over ({})",
                                why.join("; ")
                            )),
                            json,
                        );
                    };
                    let leader = c
                        .member(from)
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!("{from} left /cluster"))?;
                    let so = switchover::run(
                        &ops,
                        &c,
                        &leader,
                        &Takeover {
                            operation: "switchover",
                            leader: Some(from.clone()),
                            candidate: Some(best.clone()),
                            scheduled_at: None,
                            timeout: self.timeout,
                        },
                        cands,
                    )
                    .await?;
                    if so.result != TakeoverResult::Switched {
                        report.result = "switchover_failed";
                        report.done.push(format!("switchover: {}", so.detail));
                        return self.finish(report, &ops, t0, json, Outcome::Problem);
                    }
                    report
                        .done
                        .push(format!("switchover from {from} to {best}: {}", so.detail));
                }
                Some(RemoveStep::Remove { member, .. }) => {
                    process::remove_member(&paths, &mut state, member).await?;
                    report
                        .done
                        .push(format!("{member} stopped, its data directory deleted"));
                    break;
                }
                None => break,
            }
        }
        // Followed until Patroni's member key is gone (a stopped Patroni deletes it).
        let mut gone = false;
        let mut poll = Poll::new(self.timeout, Duration::from_millis(500));
        while poll.next().await {
            if let Ok(s) = source.snapshot(Detail::Lag).await {
                if s.cluster.member(&name).is_none() {
                    gone = true;
                    break;
                }
            }
        }
        if !gone {
            report.result = "key_not_gone";
            report.done.push(format!(
                "{name} is still listed in /cluster after {}",
                humantime::format_duration(self.timeout)
            ));
            return self.finish(report, &ops, t0, json, Outcome::Problem);
        }
        report.done.push(format!("{name}'s member key is gone"));
        report.slot = Some(self.slot_report(&source, &name).await);
        report.result = "removed";
        self.finish(report, &ops, t0, json, Outcome::Ok)
    }

    /// What became of the replication slot Patroni kept for the member on the leader.
    async fn slot_report(&self, source: &RestSource, name: &str) -> String {
        let slot = pgpatrol_core::slots::slot_name_from_member_name(name);
        let login = match self.pg.login(&self.cluster) {
            Ok(Some(l)) => l,
            _ => {
                return format!(
                    "slot {slot} not checked: no PostgreSQL login (--pg-user, or -c patroni.yml)"
                )
            }
        };
        let Ok(snap) = source.snapshot(Detail::Lag).await else {
            return format!("slot {slot} not checked: the cluster could not be read");
        };
        let Some(l) = snap.cluster.leader() else {
            return format!("slot {slot} not checked: no leader");
        };
        let (Some(host), Some(port)) = (&l.host, l.port) else {
            return format!("slot {slot} not checked: no address for the leader");
        };
        let (client, driver) =
            match crate::doctor::pg::connect(host, port, &login, "pgpatrol member remove").await {
                Ok(c) => c,
                Err(e) => return format!("slot {slot} not checked: {e}"),
            };
        let row = client
            .query_opt(
                "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await;
        drop(client);
        let _ = driver.await;
        match row {
            Ok(None) => format!(
                "slot {slot}: none on the leader {} (Patroni dropped it, or kept none)",
                l.name
            ),
            Ok(Some(r)) => {
                let held = r
                    .get::<_, Option<f64>>(1)
                    .map_or("an unknown amount of".into(), |b| {
                        pgpatrol_core::units::human(b.max(0.0) as u64)
                    });
                format!(
                    "slot {slot} remains on the leader {} ({}, holds {held} WAL): Patroni keeps a gone member's slot for member_slots_ttl (4.0+) and then drops it; `pgpatrol slot drop {slot}` frees it now",
                    l.name,
                    if r.get::<_, bool>(0) { "active" } else { "inactive" }
                )
            }
            Err(e) => format!(
                "slot {slot} not checked: {}",
                crate::doctor::pg::error_line(e)
            ),
        }
    }

    fn refused(&self, mut report: RemoveReport, r: Refusal, json: bool) -> anyhow::Result<Outcome> {
        report.result = "refused";
        report.refusal = Some(r.clone());
        if json {
            emit_json(&report)?;
        }
        match r {
            Refusal::Unsafe(why) => {
                eprintln!("pgpatrol: refused: {why}; nothing more was done");
                Ok(Outcome::Problem)
            }
            Refusal::Invalid(why) => Err(anyhow::anyhow!(why)),
        }
    }

    fn finish(
        &self,
        mut report: RemoveReport,
        ops: &Ops<'_>,
        t0: Instant,
        json: bool,
        outcome: Outcome,
    ) -> anyhow::Result<Outcome> {
        report.requests = ops.sent();
        report.total_secs = crate::ops::round1(t0.elapsed().as_secs_f64());
        if json {
            emit_json(&report)?;
        } else {
            for d in &report.done {
                println!("member remove: {d}");
            }
            if let Some(s) = &report.slot {
                println!("member remove: {s}");
            }
            println!(
                "member remove {}: {} ({:.1} s)",
                report.member, report.result, report.total_secs
            );
        }
        Ok(outcome)
    }
}
