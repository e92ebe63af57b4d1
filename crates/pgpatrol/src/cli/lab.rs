//! `pgpatrol lab`: a real local Patroni cluster (PostgreSQL 15 + etcd + Patroni on
//! 127.0.0.1) to try every command on, and the integration tests' fixture.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};

use super::Outcome;
use crate::lab::faults::{self, LagKind};
use crate::lab::up::{self, UpOptions};
use crate::lab::{self, cluster, os, Init, LabPaths, LabState, PatroniVersion};

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start etcd and N Patroni members, wait until 1 leader and N-1 replicas stream.
    Up(UpArgs),
    /// Show the lab's processes and Patroni's /cluster view (exit 1 when not healthy).
    Status(DirArg),
    /// Print the tail of a member's log (or etcd's), or of every log.
    Logs(LogsArgs),
    /// Stop every lab process, remove the cluster from etcd and delete the data.
    Down(DownArgs),
    /// Inject a real fault.
    #[command(subcommand)]
    Break(Fault),
    /// Undo every fault (resume stopped processes, restart killed ones), wait healthy.
    Repair(RepairArgs),
    /// Run SQL on the leader (or --member) as the superuser, over TCP.
    Psql(PsqlArgs),
    /// Configure pgBackRest with a repository in the lab directory (stanza `lab`, every
    /// member archiving into it) and take a full backup: doctor --pgbackrest-stanza lab
    /// --pgbackrest-config DIR/pgbackrest/pgbackrest.conf reads it.
    Backup(DirArg),
}

#[derive(Debug, Args)]
pub struct DirArg {
    /// The lab's folder (state, configs, logs, data).
    #[arg(long, env = "PGPATROL_LAB_DIR", default_value = "/tmp/pgpatrol-lab")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Number of members (pg0, pg1, ...).
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// Patroni version to run.
    #[arg(long, value_enum, default_value = "4.1")]
    pub patroni: PatroniVersion,
    /// Patroni virtualenv (default: .tools/patroni-<ver>* above the binary or the cwd).
    #[arg(long, env = "PGPATROL_PATRONI_VENV")]
    pub venv: Option<PathBuf>,
    /// Fixed ports: etcd client P, peer P+1, member i REST P+2+2i and PostgreSQL P+3+2i
    /// (default: free ports picked by the kernel).
    #[arg(long)]
    pub port_base: Option<u16>,
    /// Patroni cluster name (DCS keys under /service/<scope>/).
    #[arg(long, default_value = "demo")]
    pub scope: String,
    /// How long to wait for the cluster to become healthy.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// What runs each member: `none` (on the host), or in its own PID namespace (as in a
    /// container, needs root) under `direct` (Patroni as PID 1), `supervise` (pgpatrol
    /// supervise), `tini`, or `no-reap` (a PID 1 that never reaps: reproduces seed 001's hang).
    #[arg(long, value_enum, default_value = "none")]
    pub init: Init,
    /// Start a standby cluster of the lab in DIR: its own etcd and scope (default
    /// `standby`), members sb0, sb1, ...; its standby leader streams from DIR's leader
    /// through a permanent slot `standby_<scope>` that pgpatrol adds to DIR's configuration
    /// (and removes at `lab down`).
    #[arg(long, value_name = "DIR")]
    pub standby_of: Option<PathBuf>,
    /// With --standby-of: `streaming` (through the slot) or `archive`: the standby leader
    /// gets WAL only through restore_command from DIR's WAL archive (DIR must run with
    /// --archive); its first copy is a pg_basebackup without WAL.
    #[arg(long, value_enum, default_value = "streaming", requires = "standby_of")]
    pub standby_mode: up::StandbyMode,
    /// Archive every member's WAL into DIR/archive (archive_command cp, archive_timeout 5s):
    /// the archive an archive-only standby lab restores from.
    #[arg(long)]
    pub archive: bool,
    /// With --archive: run this member (e.g. pg2) archive-only, as Patroni's `nostream` tag
    /// makes it: no streaming, WAL only through restore_command from DIR/archive (Patroni
    /// 3.2+); tagged `nofailover` too, so it never leads.
    #[arg(long, value_name = "MEMBER", requires = "archive")]
    pub nostream: Option<String>,
    /// Put etcd and each member on a host of its own: a network namespace with its own
    /// address (10.x.y.z) on a bridge of the lab, so `lab break partition` and `dcs-slow` can
    /// cut or slow the network between them. Needs root and iproute2.
    #[arg(long, conflicts_with = "standby_of")]
    pub netns: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Member name (pg0, ...) or `etcd`; all logs when omitted.
    pub member: Option<String>,
    /// Number of lines.
    #[arg(short = 'n', long, default_value_t = 40)]
    pub lines: usize,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Keep data/ and etcd/ (for post-mortems); processes are stopped all the same.
    #[arg(long)]
    pub keep_data: bool,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// How long to wait for the cluster to become healthy again.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct PsqlArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Member to connect to (default: the current leader).
    #[arg(long)]
    pub member: Option<String>,
    /// SQL to run.
    #[arg(short = 'c', long = "command")]
    pub sql: String,
}

#[derive(Debug, Subcommand)]
pub enum Fault {
    /// SIGSTOP a replica's walreceiver and write on the leader until Patroni reports the lag
    /// (the replica still says "streaming").
    Lag(LagArgs),
    /// SIGSTOP a replica's startup process and write until Patroni reports replay lag.
    Replay(LagArgs),
    /// kill -9 the leader's Patroni and postmaster (a new leader after about ttl = 20 s).
    CrashLeader(DirArg),
    /// Stop etcd (SIGKILL): the DCS is unreachable; Patroni's /cluster fails while each
    /// member still answers its own /patroni. `lab repair` starts it again.
    Dcs(DirArg),
    /// Make the leader's archive_command fail (ALTER SYSTEM) and switch WAL until
    /// pg_stat_archiver counts failures.
    Archive(DirArg),
    /// An inactive physical replication slot on the leader (Patroni told to ignore it, as a
    /// forgotten slot) holding at least --mb MB of WAL while the leader writes.
    Slot(SlotArgs),
    /// Hold client connections open on the leader (one pgbench process), near the limit.
    Connections(ConnectionsArgs),
    /// Leave a replica stuck in a transitional state: its startup process stopped, then a
    /// restart asked of Patroni (PostgreSQL's shutdown waits for the stopped process).
    Stuck(StuckArgs),
    /// Cut a member's host off (a lab started with --netns): blackhole routes both ways
    /// between it and etcd and the other members (--from), so connections across stall as on
    /// a real cut. This host still reaches it unless --from host.
    Partition(PartitionArgs),
    /// Slow the DCS (a lab started with --netns): etcd's link capped at --kbit kbit/s both
    /// ways (a token bucket), so its answers queue behind each other.
    DcsSlow(DcsSlowArgs),
}

#[derive(Debug, Args)]
pub struct PartitionArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// The member to cut off.
    #[arg(long)]
    pub member: String,
    /// What to cut it from (repeat or comma-separate).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["etcd", "members"])]
    pub from: Vec<faults::Side>,
}

#[derive(Debug, Args)]
pub struct DcsSlowArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// The link's rate in kbit/s (64 kbit/s: 8 KB a second; a member's loop reads and
    /// writes a few KB).
    #[arg(long, default_value_t = 64)]
    pub kbit: u32,
}

#[derive(Debug, Args)]
pub struct StuckArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// The replica to leave stuck.
    #[arg(long)]
    pub member: String,
}

#[derive(Debug, Args)]
pub struct SlotArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// WAL the slot must hold, in MB.
    #[arg(long, default_value_t = 64)]
    pub mb: u64,
}

#[derive(Debug, Args)]
pub struct ConnectionsArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// How many connections to hold (the lab allows 97 clients: 100 minus 3 reserved).
    #[arg(long, default_value_t = 82)]
    pub count: u32,
}

#[derive(Debug, Args)]
pub struct LagArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// The replica to stall.
    #[arg(long)]
    pub member: String,
    /// Lag to reach, in MB (1024*1024 bytes).
    #[arg(long, default_value_t = 64)]
    pub mb: u64,
    /// Give up when the lag is not reached within this time.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl LabCommand {
    /// Runs the subcommand; what it reports goes to stdout (progress goes to stderr).
    pub async fn run(self) -> Result<Outcome> {
        self.run_to(&mut std::io::stdout().lock()).await
    }

    /// Runs the subcommand, writing its report to `out`.
    pub async fn run_to(self, out: &mut impl Write) -> Result<Outcome> {
        match self {
            LabCommand::Up(args) => up(args, out).await,
            LabCommand::Status(args) => status(&args.dir, out).await,
            LabCommand::Logs(args) => logs(args, out),
            LabCommand::Down(args) => down(&args.dir.dir, args.keep_data, out).await,
            LabCommand::Break(fault) => break_(fault, out).await,
            LabCommand::Repair(args) => repair(args, out).await,
            LabCommand::Psql(args) => psql(args, out).await,
            LabCommand::Backup(d) => backup(&d.dir, out).await,
        }
    }
}

async fn backup(dir: &Path, out: &mut impl Write) -> Result<Outcome> {
    let t0 = Instant::now();
    let paths = LabPaths::new(dir)?;
    let state = LabState::load(&paths)?;
    let conf = lab::backup::backup(&paths, &state).await?;
    writeln!(
        out,
        "lab backup: stanza {} with a full backup ({:.1} s); pgbackrest --config={} info",
        lab::backup::STANZA,
        t0.elapsed().as_secs_f64(),
        conf.display()
    )?;
    Ok(Outcome::Ok)
}

async fn up(args: UpArgs, out: &mut impl Write) -> Result<Outcome> {
    let t0 = Instant::now();
    let opts = UpOptions {
        dir: args.dir.dir,
        members: args.members,
        patroni: args.patroni,
        venv: args.venv,
        port_base: args.port_base,
        scope: if args.standby_of.is_some() && args.scope == "demo" {
            "standby".into()
        } else {
            args.scope
        },
        timeout: args.timeout,
        init: args.init,
        standby_of: args.standby_of,
        standby_mode: args.standby_mode,
        archive: args.archive,
        nostream: args.nostream,
        netns: args.netns,
    };
    let (paths, state) = up::up(&opts).await?;
    let leader = cluster::any_cluster(&state)
        .await
        .ok()
        .and_then(|c| c.leader().map(|l| l.name.clone()))
        .unwrap_or_default();
    let init = if state.init.namespaced() {
        format!(
            ", each in its own PID namespace under init {}",
            state.init.as_str()
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "lab up: {} member(s), scope {}, Patroni {} ({}){init}, in {} ({:.1} s)",
        state.members.len(),
        state.scope,
        state.patroni.as_str(),
        state.venv.display(),
        paths.dir.display(),
        t0.elapsed().as_secs_f64()
    )?;
    for m in &state.members {
        let role = match (m.name == leader, state.standby_of.is_some()) {
            (true, true) => "standby leader",
            (true, false) => "leader",
            (false, _) => "replica",
        };
        writeln!(
            out,
            "  {:<5} {:<14} REST {}  PostgreSQL {}:{}",
            m.name,
            role,
            m.url(),
            m.addr(),
            m.pg_port
        )?;
    }
    writeln!(out, "  etcd                 {}", state.etcd.client_url())?;
    if let Some(net) = &state.net {
        writeln!(
            out,
            "  network              a namespace per host on bridge {} ({}); this host is {}",
            net.bridge(),
            net.subnet(),
            net.gateway
        )?;
    }
    for line in pair_lines(&state) {
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "REST API user {}; its password is in {} (mode 0600)",
        lab::REST_USER,
        paths.password().display()
    )?;
    writeln!(out, "{}", state.export_line(&paths))?;
    Ok(Outcome::Ok)
}

/// What `lab up` and `lab status` say of a standby lab's source and of a WAL archive.
fn pair_lines(state: &LabState) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(sb) = &state.standby_of {
        lines.push(match &sb.slot {
            Some(slot) => format!(
                "standby cluster of the lab in {}: streaming through its permanent slot {slot}",
                sb.dir.display()
            ),
            None => format!(
                "standby cluster of the lab in {}: archive-only, restore_command from {}",
                sb.dir.display(),
                sb.dir.join("archive").display()
            ),
        });
    }
    if let Some(a) = &state.archive {
        let files = std::fs::read_dir(a).map(|d| d.count()).unwrap_or(0);
        lines.push(format!(
            "WAL archive: {} ({files} files; archive_timeout 5s)",
            a.display()
        ));
    }
    lines
}

fn alive_word(alive: bool) -> &'static str {
    if alive {
        "alive"
    } else {
        "dead"
    }
}

async fn status(dir: &Path, out: &mut impl Write) -> Result<Outcome> {
    let paths = LabPaths::new(dir)?;
    let state = LabState::load(&paths)?;
    let health = cluster::health(&state).await;
    let cluster = health.cluster;
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header([
        "member",
        "patroni pid",
        "rest",
        "pg",
        "role",
        "state",
        "receive lag",
        "replay lag",
    ]);
    let field = |name: &str, f: &dyn Fn(&pgpatrol_core::Member) -> String| -> String {
        let Some(c) = &cluster else { return "?".into() };
        c.member(name).map(f).unwrap_or_else(|| "absent".into())
    };
    let lag = |kind: pgpatrol_core::LagKind| {
        move |m: &pgpatrol_core::Member| match m.lag(kind) {
            Some(pgpatrol_core::Lag::Bytes(b)) => pgpatrol_core::units::human(b),
            Some(pgpatrol_core::Lag::Unknown) => "unknown".into(),
            None => "-".into(),
        }
    };
    for m in &state.members {
        let pid = m
            .pid
            .map(|p| format!("{p} {}", alive_word(os::alive(p, "patroni"))))
            .unwrap_or_else(|| "-".into());
        table.add_row([
            m.name.clone(),
            pid,
            m.rest_port.to_string(),
            m.pg_port.to_string(),
            field(&m.name, &|m| m.role.to_string()),
            field(&m.name, &|m| m.state.to_string()),
            field(&m.name, &lag(pgpatrol_core::LagKind::Receive)),
            field(&m.name, &lag(pgpatrol_core::LagKind::Replay)),
        ]);
    }
    writeln!(out, "{table}")?;
    let etcd_alive = state.etcd.pid.is_some_and(|p| os::alive(p, "etcd"));
    writeln!(
        out,
        "etcd: pid {} {}, client {}:{}",
        state
            .etcd
            .pid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into()),
        alive_word(etcd_alive),
        state.etcd.addr(),
        state.etcd.client_port
    )?;
    for line in pair_lines(&state) {
        writeln!(out, "{line}")?;
    }
    // A record whose process is gone was undone by a rebuild (heal, reinit): not a fault.
    for s in state
        .stopped
        .iter()
        .filter(|s| os::alive(s.pid, "postgres"))
    {
        writeln!(
            out,
            "fault: {}'s {} (PID {}) is SIGSTOPped",
            s.member, s.process, s.pid
        )?;
    }
    for k in &state.killed {
        writeln!(out, "fault: {k} was killed")?;
    }
    for m in &state.members {
        let zombies = m.zombies();
        if !zombies.is_empty() {
            let list: Vec<String> = zombies
                .iter()
                .map(|(pid, comm)| format!("{comm} (PID {pid})"))
                .collect();
            writeln!(
                out,
                "zombies: {} in {}'s PID namespace (init {}): {}",
                zombies.len(),
                m.name,
                state.init.as_str(),
                list.join(", ")
            )?;
        }
    }
    let verdict = health.verdict;
    match verdict {
        Ok(()) if etcd_alive => {
            writeln!(out, "healthy")?;
            Ok(Outcome::Ok)
        }
        Ok(()) => {
            writeln!(out, "not healthy: etcd is not running")?;
            Ok(Outcome::Problem)
        }
        Err(why) => {
            writeln!(out, "not healthy: {why}")?;
            Ok(Outcome::Problem)
        }
    }
}

fn logs(args: LogsArgs, out: &mut impl Write) -> Result<Outcome> {
    let paths = LabPaths::new(&args.dir.dir)?;
    let state = LabState::load(&paths)?;
    let mut names: Vec<String> = match args.member {
        Some(m) if m == "etcd" => vec![m],
        Some(m) => vec![state.member(&m)?.name.clone()],
        None => state.members.iter().map(|m| m.name.clone()).collect(),
    };
    let many = names.len() > 1;
    if many {
        names.push("etcd".into());
    }
    for name in names {
        if many {
            writeln!(out, "==> {} <==", paths.log(&name).display())?;
        }
        writeln!(out, "{}", cluster::tail(&paths.log(&name), args.lines))?;
    }
    Ok(Outcome::Ok)
}

async fn down(dir: &Path, keep_data: bool, out: &mut impl Write) -> Result<Outcome> {
    let t0 = Instant::now();
    let paths = LabPaths::new(dir)?;
    if !lab::down::down(&paths, keep_data).await? {
        writeln!(out, "no lab in {}", paths.dir.display())?;
        return Ok(Outcome::Ok);
    }
    writeln!(
        out,
        "lab down: {} stopped{} ({:.1} s)",
        paths.dir.display(),
        if keep_data {
            ", data kept"
        } else {
            ", data removed"
        },
        t0.elapsed().as_secs_f64()
    )?;
    Ok(Outcome::Ok)
}

async fn break_(fault: Fault, out: &mut impl Write) -> Result<Outcome> {
    let t0 = Instant::now();
    match fault {
        Fault::Lag(a) => break_lag(a, LagKind::Receive, t0, out).await,
        Fault::Replay(a) => break_lag(a, LagKind::Replay, t0, out).await,
        Fault::CrashLeader(d) => {
            let paths = LabPaths::new(&d.dir)?;
            let mut state = LabState::load(&paths)?;
            let name = faults::crash_leader(&paths, &mut state).await?;
            writeln!(
                out,
                "killed the leader {name} (Patroni and postmaster, SIGKILL); a replica takes over after ttl (about 20 s)"
            )?;
            Ok(Outcome::Ok)
        }
        Fault::Archive(d) => {
            let paths = LabPaths::new(&d.dir)?;
            let mut state = LabState::load(&paths)?;
            let n = faults::break_archive(&paths, &mut state, Duration::from_secs(60)).await?;
            writeln!(
                out,
                "archive_command fails on the leader: {n} failure(s) so far; undo with `pgpatrol lab repair` ({:.1} s)",
                t0.elapsed().as_secs_f64()
            )?;
            Ok(Outcome::Ok)
        }
        Fault::Slot(a) => {
            let paths = LabPaths::new(&a.dir.dir)?;
            let mut state = LabState::load(&paths)?;
            let held =
                faults::break_slot(&paths, &mut state, a.mb, Duration::from_secs(120)).await?;
            writeln!(
                out,
                "the inactive slot {} holds {:.1} MB of WAL on the leader; undo with `pgpatrol lab repair` ({:.1} s)",
                faults::ABANDONED_SLOT,
                held as f64 / 1048576.0,
                t0.elapsed().as_secs_f64()
            )?;
            Ok(Outcome::Ok)
        }
        Fault::Connections(a) => {
            let paths = LabPaths::new(&a.dir.dir)?;
            let mut state = LabState::load(&paths)?;
            let pid = faults::break_connections(&paths, &mut state, a.count).await?;
            writeln!(
                out,
                "{} client connections held open on the leader by pgbench (PID {pid}); undo with `pgpatrol lab repair`",
                a.count
            )?;
            Ok(Outcome::Ok)
        }
        Fault::Stuck(a) => {
            let paths = LabPaths::new(&a.dir.dir)?;
            let mut state = LabState::load(&paths)?;
            let st =
                faults::break_stuck(&paths, &mut state, &a.member, Duration::from_secs(30)).await?;
            writeln!(
                out,
                "{} is stuck {st} (its startup process stopped during a restart); undo with `pgpatrol lab repair`",
                a.member
            )?;
            Ok(Outcome::Ok)
        }
        Fault::Partition(a) => {
            let paths = LabPaths::new(&a.dir.dir)?;
            let mut state = LabState::load(&paths)?;
            let from = faults::partition(&paths, &mut state, &a.member, &a.from)?;
            writeln!(
                out,
                "cut {} off from {}; undo with `pgpatrol lab repair`",
                a.member,
                from.join(", ")
            )?;
            Ok(Outcome::Ok)
        }
        Fault::DcsSlow(a) => {
            let paths = LabPaths::new(&a.dir.dir)?;
            let mut state = LabState::load(&paths)?;
            faults::dcs_slow(&paths, &mut state, a.kbit)?;
            writeln!(
                out,
                "etcd's link is capped at {} kbit/s both ways; undo with `pgpatrol lab repair`",
                a.kbit
            )?;
            Ok(Outcome::Ok)
        }
        Fault::Dcs(d) => {
            let paths = LabPaths::new(&d.dir)?;
            let mut state = LabState::load(&paths)?;
            let pid = faults::stop_dcs(&paths, &mut state)?;
            writeln!(
                out,
                "stopped etcd (PID {pid}, SIGKILL): the DCS is unreachable; undo with `pgpatrol lab repair`"
            )?;
            Ok(Outcome::Ok)
        }
    }
}

async fn break_lag(
    args: LagArgs,
    kind: LagKind,
    t0: Instant,
    out: &mut impl Write,
) -> Result<Outcome> {
    let paths = LabPaths::new(&args.dir.dir)?;
    let mut state = LabState::load(&paths)?;
    let lag = faults::break_lag(
        &paths,
        &mut state,
        &args.member,
        args.mb,
        kind,
        args.timeout,
    )
    .await?;
    let what = match kind {
        LagKind::Receive => "lag (walreceiver stopped)",
        LagKind::Replay => "replay lag (startup process stopped)",
    };
    writeln!(
        out,
        "{} is {:.1} MB behind: {what}; undo with `pgpatrol lab repair` ({:.1} s)",
        args.member,
        lag as f64 / (1024.0 * 1024.0),
        t0.elapsed().as_secs_f64()
    )?;
    Ok(Outcome::Ok)
}

async fn repair(args: RepairArgs, out: &mut impl Write) -> Result<Outcome> {
    let t0 = Instant::now();
    let paths = LabPaths::new(&args.dir.dir)?;
    let mut state = LabState::load(&paths)?;
    let done = faults::repair(&paths, &mut state, args.timeout).await?;
    for line in &done {
        writeln!(out, "{line}")?;
    }
    writeln!(out, "lab healthy ({:.1} s)", t0.elapsed().as_secs_f64())?;
    Ok(Outcome::Ok)
}

async fn psql(args: PsqlArgs, out: &mut impl Write) -> Result<Outcome> {
    let paths = LabPaths::new(&args.dir.dir)?;
    let state = LabState::load(&paths)?;
    let member = match &args.member {
        Some(m) => state.member(m)?,
        None => cluster::leader(&state).await?,
    };
    let rows = cluster::psql(member, &args.sql).await?;
    if !rows.is_empty() {
        writeln!(out, "{rows}")?;
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down_args(dir: &Path) -> LabCommand {
        LabCommand::Down(DownArgs {
            dir: DirArg {
                dir: dir.to_path_buf(),
            },
            keep_data: false,
        })
    }

    #[tokio::test]
    async fn down_without_a_lab_writes_to_the_given_writer() {
        let dir = std::env::temp_dir().join(format!("pgpatrol-nolab-{}", std::process::id()));
        let mut out = Vec::new();
        let outcome = down_args(&dir).run_to(&mut out).await.unwrap();
        assert_eq!(outcome, Outcome::Ok);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("no lab in {}\n", dir.display())
        );
    }

    /// A reader that went away (`pgpatrol lab status | head -1`).
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_closed_pipe_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("pgpatrol-nolab-{}", std::process::id()));
        let e = down_args(&dir).run_to(&mut ClosedPipe).await.unwrap_err();
        let io = e.downcast_ref::<std::io::Error>().expect("an io error");
        assert_eq!(io.kind(), std::io::ErrorKind::BrokenPipe);
    }
}
