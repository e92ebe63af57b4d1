//! Real faults for the lab and their repair: a stalled walreceiver (receive lag that Patroni
//! still calls "streaming"), a stalled startup process (replay-only lag), a crashed leader,
//! a replica stuck in a restart, a failing archive_command, an abandoned slot, held
//! connections, a stopped DCS; on a `--netns` lab also a member partitioned from the others,
//! etcd or the host, and a slow link to etcd.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;

use super::cluster::{self, leader, patch_config, psql, reported_lag, tail, wait_healthy};
use super::os::{self, alive, RunAs};
use super::up::{start_etcd, start_member};
use super::{config, LabPaths, LabState, MemberState, StoppedPid, PG_BIN_DIR};

const MB: u64 = 1024 * 1024;
/// The load table. Autovacuum stays off for it: vacuuming freshly written pages with data
/// checksums on writes full-page images, i.e. megabytes of WAL that would show up as lag
/// after a repair.
const LOAD_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS pgpatrol_lab_load(id bigint, pad text) \
     WITH (autovacuum_enabled = false); TRUNCATE pgpatrol_lab_load;";
/// One batch of writes on the leader: about 22 MB of WAL.
const LOAD_SQL: &str =
    "INSERT INTO pgpatrol_lab_load SELECT g, repeat('x', 1000) FROM generate_series(1, 20000) g;";

/// Which lag a fault creates: the core's kinds.
pub use pgpatrol_core::LagKind;

/// The process a lag fault stops: the walreceiver for receive lag (nothing is received, so
/// nothing replayed either), the startup process for replay lag (WAL arrives, unapplied).
fn process_for(kind: LagKind) -> &'static str {
    match kind {
        LagKind::Receive => "walreceiver",
        LagKind::Replay => "startup",
    }
}

/// SIGSTOPs the member's walreceiver (receive lag) or startup process (replay lag), then
/// writes on the leader until Patroni itself reports at least `mb` MB of that lag.
pub async fn break_lag(
    paths: &LabPaths,
    state: &mut LabState,
    member: &str,
    mb: u64,
    kind: LagKind,
    timeout: Duration,
) -> Result<u64> {
    let target = state.member(member)?.clone();
    let leader = leader(state).await?.clone();
    if leader.name == target.name {
        bail!("{member} is the leader; pick a replica");
    }
    let pm = target
        .postmaster()
        .with_context(|| format!("{member}'s postgres is not running"))?;
    let what = process_for(kind);
    let deadline = Instant::now() + timeout;
    // Forget faults whose process is gone (a heal rebuilt the member): that member is no
    // longer broken, and must settle like any other replica below.
    let before = state.stopped.len();
    state.stopped.retain(|s| alive(s.pid, "postgres"));
    if state.stopped.len() != before {
        state.save(paths)?;
    }
    // Emptied first so repeated faults do not grow the table without bound.
    psql(&leader, LOAD_TABLE_SQL).await?;
    for attempt in 1..=3 {
        let pid = *os::children(pm, what).first().with_context(|| {
            format!("{member} has no {what} process (is it a streaming replica?)")
        })?;
        if kind == LagKind::Replay {
            wait_startup_idle(pid).await;
        }
        os::signal(pid, Signal::SIGSTOP)?;
        // Breaking the same member twice finds the same stopped process: record it once.
        if !state.stopped.iter().any(|s| s.pid == pid) {
            state.stopped.push(StoppedPid {
                pid,
                member: member.to_owned(),
                process: what.to_owned(),
            });
            state.save(paths)?;
        }
        let lag = write_until_lag(state, &leader, &target, kind, mb, deadline).await?;
        if kind == LagKind::Receive || receiving(state, &target).await? {
            settle_others(state, &leader).await;
            return Ok(lag);
        }
        // The startup process was stopped holding a lock the walreceiver needs, so nothing
        // is received either: that is not replay-only lag. Resume it and try again.
        eprintln!("lab: {member} stopped receiving too (attempt {attempt}); resuming and retrying");
        os::signal(pid, Signal::SIGCONT)?;
        state.stopped.retain(|s| s.pid != pid);
        state.save(paths)?;
        if attempt < 3 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
    bail!("{member}'s walreceiver stalled together with its startup process three times; run `pgpatrol lab repair`")
}

/// A fault is made when only the broken members lag. The write burst also shows on healthy
/// replicas for a Patroni loop or two; a test (or heal's min-healthy guardrail) would take
/// that for a second fault. Waits (20 s at most) until every other replica that is not
/// itself broken has reported under 1 MB of receive and replay lag for `SETTLED_FOR`: one
/// reading is not enough, since `/cluster` compares the leader's and the member's DCS keys,
/// each refreshed once per loop, and a stale pair can read 0 just before the leader's key
/// catches up with the burst.
async fn settle_others(state: &LabState, leader: &MemberState) {
    const SETTLED_FOR: Duration = Duration::from_secs(3);
    // break_lag dropped the records of processes that are gone: these are the live faults.
    let broken: Vec<&str> = state.stopped.iter().map(|s| s.member.as_str()).collect();
    let others: Vec<&MemberState> = state
        .members
        .iter()
        .filter(|m| m.name != leader.name && !broken.contains(&m.name.as_str()))
        .collect();
    if others.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut since: Option<Instant> = None;
    loop {
        let mut settled = true;
        for m in &others {
            for kind in [LagKind::Receive, LagKind::Replay] {
                let lag = reported_lag(state, m, kind).await.ok().flatten();
                settled &= lag.is_some_and(|l| l < MB);
            }
        }
        since = if settled {
            since.or(Some(Instant::now()))
        } else {
            None
        };
        if since.is_some_and(|t| t.elapsed() >= SETTLED_FOR) || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits (5 s at most) until the startup process is idle, waiting for WAL: stopped in the
/// middle of replay it may hold a lock the walreceiver needs.
async fn wait_startup_idle(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if os::cmdline(pid).is_some_and(|c| c.contains("waiting for")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With writes stopped, a replica that still receives shows (almost) no receive lag within
/// two Patroni loops.
async fn receiving(state: &LabState, target: &MemberState) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if reported_lag(state, target, LagKind::Receive)
            .await?
            .is_some_and(|l| l < MB)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes on the leader until Patroni reports `mb` MB of `kind` lag on `target`.
async fn write_until_lag(
    state: &LabState,
    leader: &MemberState,
    target: &MemberState,
    kind: LagKind,
    mb: u64,
    deadline: Instant,
) -> Result<u64> {
    let want = mb * MB;
    let start_lsn = psql(leader, "SELECT pg_current_wal_lsn()").await?;
    let written_sql =
        format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{start_lsn}')::bigint");
    let mut written: u64 = 0;
    let mut last_write = Instant::now();
    let mut last_seen = None;
    loop {
        last_seen = reported_lag(state, target, kind)
            .await
            .ok()
            .flatten()
            .or(last_seen);
        // Only lag made by this fault counts: a member still catching up from something
        // earlier (a rebuild, another burst) may already read as far behind.
        if let Some(lag) = last_seen.filter(|l| *l >= want && written >= want) {
            return Ok(lag);
        }
        if Instant::now() >= deadline {
            bail!(
                "{} reached only {} MB of {} lag in time (wanted {mb} MB)",
                target.name,
                last_seen.unwrap_or(0) / MB,
                if kind == LagKind::Receive {
                    "receive"
                } else {
                    "replay"
                },
            );
        }
        // Write until the leader has produced a little more WAL than asked, then give
        // Patroni time to report it (it refreshes once per loop_wait = 2 s); write another
        // batch only if two loops pass without the lag showing.
        if written < want + 4 * MB || last_write.elapsed() > Duration::from_secs(5) {
            psql(leader, LOAD_SQL).await?;
            written = psql(leader, &written_sql).await?.parse().unwrap_or(0);
            last_write = Instant::now();
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// kill -9 the leader's Patroni and its postmaster (its whole PID namespace under `--init`).
/// Returns the leader's name.
pub async fn crash_leader(paths: &LabPaths, state: &mut LabState) -> Result<String> {
    let leader = leader(state).await?.clone();
    let pm = leader.postmaster();
    let config = leader.config.to_string_lossy().into_owned();
    match leader.init_pid.filter(|p| alive(*p, &config)) {
        // In its own PID namespace: SIGKILL its PID 1 and the kernel kills the rest, as when
        // a pod is deleted.
        Some(init) => os::signal(init, Signal::SIGKILL)?,
        None => {
            if let Some(pid) = leader.pid.filter(|p| alive(*p, "patroni")) {
                os::signal(pid, Signal::SIGKILL)?;
            }
            if let Some(pm) = pm {
                os::signal(pm, Signal::SIGKILL)?;
            }
        }
    }
    if !state.killed.contains(&leader.name) {
        state.killed.push(leader.name.clone());
    }
    state.save(paths)?;
    Ok(leader.name)
}

/// A replica stuck in a transitional state: its startup process SIGSTOPped, then Patroni
/// asked to restart it, so PostgreSQL's shutdown waits for the stopped process and the
/// member stays `restarting`/`stopping` until `lab repair` resumes it. Returns the state
/// `/cluster` shows.
pub async fn break_stuck(
    paths: &LabPaths,
    state: &mut LabState,
    member: &str,
    timeout: Duration,
) -> Result<String> {
    let target = state.member(member)?.clone();
    let leader = leader(state).await?.clone();
    if leader.name == target.name {
        bail!("{member} is the leader; pick a replica");
    }
    let pm = target
        .postmaster()
        .with_context(|| format!("{member}'s postgres is not running"))?;
    let pid = *os::children(pm, "startup")
        .first()
        .with_context(|| format!("{member} has no startup process (is it a replica?)"))?;
    wait_startup_idle(pid).await;
    os::signal(pid, Signal::SIGSTOP)?;
    if !state.stopped.iter().any(|s| s.pid == pid) {
        state.stopped.push(StoppedPid {
            pid,
            member: member.to_owned(),
            process: "startup".to_owned(),
        });
        state.save(paths)?;
    }
    // POST /restart answers only when the restart is over: send it, do not wait for it.
    let password = std::fs::read_to_string(paths.password())
        .with_context(|| format!("cannot read {}", paths.password().display()))?;
    let url = format!("{}/restart", target.url());
    let req = reqwest::Client::new()
        .post(&url)
        .basic_auth(super::REST_USER, Some(password.trim()))
        .json(&serde_json::json!({}))
        .timeout(Duration::from_secs(2))
        .send();
    let _ = req.await;
    let deadline = Instant::now() + timeout;
    loop {
        let seen = cluster::any_cluster(state)
            .await
            .ok()
            .and_then(|c| c.member(member).map(|m| m.state.clone()));
        if let Some(st) = seen.clone().filter(|s| s.is_in_transition()) {
            return Ok(st.to_string());
        }
        if Instant::now() >= deadline {
            bail!("{member} did not show a transitional state in time (last: {seen:?})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The abandoned slot `lab break slot` makes.
pub const ABANDONED_SLOT: &str = "pgpatrol_abandoned";

/// Makes the leader's archive_command fail (ALTER SYSTEM, reloaded) and switches WAL until
/// pg_stat_archiver counts failures; returns the failure count.
pub async fn break_archive(
    paths: &LabPaths,
    state: &mut LabState,
    timeout: Duration,
) -> Result<u64> {
    let leader = leader(state).await?.clone();
    psql(&leader, "ALTER SYSTEM SET archive_command = '/bin/false'").await?;
    psql(&leader, "SELECT pg_reload_conf()").await?;
    if !state.pg_faults.iter().any(|f| f == "archive") {
        state.pg_faults.push("archive".into());
    }
    state.save(paths)?;
    psql(&leader, LOAD_TABLE_SQL).await?;
    let deadline = Instant::now() + timeout;
    loop {
        psql(
            &leader,
            "INSERT INTO pgpatrol_lab_load SELECT 1, 'x'; SELECT pg_switch_wal()",
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let failed: u64 = psql(&leader, "SELECT failed_count FROM pg_stat_archiver")
            .await?
            .parse()
            .unwrap_or(0);
        let failing: String = psql(
            &leader,
            "SELECT coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false) FROM pg_stat_archiver",
        )
        .await?;
        if failed > 0 && failing == "t" {
            return Ok(failed);
        }
        if Instant::now() >= deadline {
            bail!("archive_command fails, but pg_stat_archiver counted no failure in time");
        }
    }
}

/// Creates an inactive physical slot on the leader (Patroni told to leave it alone with
/// `ignore_slots`, as an operator's forgotten slot would be) and writes until it holds at
/// least `mb` MB of WAL; returns the bytes it holds.
pub async fn break_slot(
    paths: &LabPaths,
    state: &mut LabState,
    mb: u64,
    timeout: Duration,
) -> Result<u64> {
    let leader = leader(state).await?.clone();
    patch_config(
        paths,
        &leader,
        serde_json::json!({"ignore_slots": [{"name": ABANDONED_SLOT, "type": "physical"}]}),
    )
    .await?;
    if !state.pg_faults.iter().any(|f| f == "slot") {
        state.pg_faults.push("slot".into());
    }
    state.save(paths)?;
    let create = format!("SELECT pg_create_physical_replication_slot('{ABANDONED_SLOT}', true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{ABANDONED_SLOT}')");
    psql(&leader, LOAD_TABLE_SQL).await?;
    let held_sql = format!("SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint FROM pg_replication_slots WHERE slot_name = '{ABANDONED_SLOT}'");
    let deadline = Instant::now() + timeout;
    loop {
        // Created (again) each round: until Patroni's loop has read ignore_slots, it drops
        // a slot it does not know on the leader.
        psql(&leader, &create).await?;
        let held: u64 = psql(&leader, &held_sql).await?.parse().unwrap_or(0);
        if held >= mb * MB {
            // A checkpoint: WAL the slot does not hold would be recycled now; it holds this.
            psql(&leader, "CHECKPOINT").await?;
            return Ok(held);
        }
        if Instant::now() >= deadline {
            bail!(
                "the slot holds only {} MB of WAL in time (wanted {mb} MB)",
                held / MB
            );
        }
        psql(&leader, LOAD_SQL).await?;
    }
}

/// Holds `count` client connections open on the leader (one pgbench process sleeping in
/// each); returns the holder's PID.
pub async fn break_connections(paths: &LabPaths, state: &mut LabState, count: u32) -> Result<u32> {
    let leader = leader(state).await?.clone();
    let yaml = std::fs::read_to_string(&leader.config)
        .with_context(|| format!("cannot read {}", leader.config.display()))?;
    let password = config::superuser_password(&yaml)?;
    let script = paths.run().join("hold-connections.sql");
    std::fs::write(&script, "SELECT pg_sleep(1);\n")
        .with_context(|| format!("cannot write {}", script.display()))?;
    let log = paths.log("connections");
    let out =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = std::process::Command::new(Path::new(PG_BIN_DIR).join("pgbench"))
        .args([
            "-h",
            &leader.addr().to_string(),
            "-p",
            &leader.pg_port.to_string(),
            "-U",
            "postgres",
        ])
        .args([
            "-n",
            "-c",
            &count.to_string(),
            "-j",
            "1",
            "-T",
            "86400",
            "-f",
        ])
        .arg(&script)
        .arg("postgres")
        .env("PGPASSWORD", password)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .context("cannot start pgbench to hold connections")?;
    let pid = child.id();
    state.holders.push(pid);
    state.save(paths)?;
    // Until they are all open (pgbench opens them before the first transaction).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: u32 = psql(
            &leader,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'",
        )
        .await?
        .parse()
        .unwrap_or(0);
        if n >= count {
            return Ok(pid);
        }
        if !alive(pid, "pgbench") || Instant::now() >= deadline {
            bail!(
                "pgbench holds {n} of {count} connections; its log {} says: {}",
                log.display(),
                tail(&log, 3).replace('\n', " | ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Undoes `archive`, `slot` and the connection holders (part of `repair`).
async fn repair_pg(paths: &LabPaths, state: &mut LabState, done: &mut Vec<String>) -> Result<()> {
    for pid in std::mem::take(&mut state.holders) {
        if alive(pid, "pgbench") {
            let _ = os::signal(pid, Signal::SIGTERM);
            done.push(format!("stopped the connection holder (PID {pid})"));
        }
    }
    for fault in std::mem::take(&mut state.pg_faults) {
        match fault.as_str() {
            "archive" => {
                for m in &state.members {
                    let _ = psql(m, "ALTER SYSTEM RESET archive_command").await;
                    let _ = psql(m, "SELECT pg_reload_conf()").await;
                }
                done.push("archive_command works again".into());
            }
            "slot" => {
                if let Ok(l) = leader(state).await {
                    let l = l.clone();
                    let _ = psql(&l, &format!("SELECT pg_drop_replication_slot('{ABANDONED_SLOT}') FROM pg_replication_slots WHERE slot_name = '{ABANDONED_SLOT}'")).await;
                    patch_config(paths, &l, serde_json::json!({"ignore_slots": null})).await?;
                }
                done.push(format!("dropped the slot {ABANDONED_SLOT}"));
            }
            _ => {}
        }
    }
    state.save(paths)?;
    Ok(())
}

/// Stops the lab's etcd (SIGKILL), so the DCS is unreachable; returns its PID.
pub fn stop_dcs(paths: &LabPaths, state: &mut LabState) -> Result<u32> {
    let pid = state
        .etcd
        .pid
        .filter(|p| alive(*p, "etcd"))
        .context("etcd is not running (already stopped? `pgpatrol lab repair` starts it)")?;
    os::signal(pid, Signal::SIGKILL)?;
    if !state.killed.iter().any(|k| k == "etcd") {
        state.killed.push("etcd".to_owned());
    }
    state.save(paths)?;
    Ok(pid)
}

/// What a member is cut from by `lab break partition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// etcd's host: the member cannot reach the DCS.
    Etcd,
    /// Every other member's host.
    Members,
    /// This host, where pgpatrol, patronictl and the tests run.
    Host,
}

/// The lab's network, or the one-line error of a fault that needs `--netns`.
fn net_of<'a>(state: &'a LabState, what: &str) -> Result<&'a super::net::Net> {
    state.net.as_ref().with_context(|| {
        format!("lab break {what} needs hosts of their own: start the lab with `pgpatrol lab up --netns`")
    })
}

/// `lab break partition`: cuts `member`'s host from `from` (both directions, blackhole
/// routes). Returns what was cut from, as words.
pub fn partition(
    paths: &LabPaths,
    state: &mut LabState,
    member: &str,
    from: &[Side],
) -> Result<Vec<String>> {
    let mut net = net_of(state, "partition")?.clone();
    let me = state.member(member)?;
    let host = me
        .net
        .clone()
        .context("the member has no host of its own")?;
    let mut others: Vec<(Option<String>, std::net::Ipv4Addr)> = Vec::new();
    let mut said = Vec::new();
    for side in from {
        match side {
            Side::Etcd => {
                let e = state
                    .etcd
                    .net
                    .clone()
                    .context("etcd has no host of its own")?;
                others.push((Some(e.ns), e.addr));
                said.push("etcd".to_owned());
            }
            Side::Members => {
                for m in state.members.iter().filter(|m| m.name != member) {
                    if let Some(h) = &m.net {
                        others.push((Some(h.ns.clone()), h.addr));
                        said.push(m.name.clone());
                    }
                }
            }
            Side::Host => {
                others.push((None, net.gateway));
                said.push("this host".to_owned());
            }
        }
    }
    let cut = net.cut(&host, &others);
    state.net = Some(net);
    state.save(paths)?;
    cut?;
    Ok(said)
}

/// `lab break dcs-slow`: etcd's link capped at `kbit` kbit/s both ways.
pub fn dcs_slow(paths: &LabPaths, state: &mut LabState, kbit: u32) -> Result<()> {
    if kbit == 0 {
        bail!("--kbit 0 stops the link: give at least 1 (or `lab break dcs` to stop etcd)");
    }
    let mut net = net_of(state, "dcs-slow")?.clone();
    let etcd = state
        .etcd
        .net
        .clone()
        .context("etcd has no host of its own")?;
    let slowed = net.slow(&etcd, kbit);
    state.net = Some(net);
    state.save(paths)?;
    slowed
}

/// Undoes every fault: mend a cut or slowed network, SIGCONT stopped PIDs, restart etcd if
/// it died, restart every member whose Patroni is not running, wait until healthy, forget
/// the records.
pub async fn repair(
    paths: &LabPaths,
    state: &mut LabState,
    timeout: Duration,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    if let Some(mut net) = state.net.clone() {
        if !net.cuts.is_empty() {
            net.mend();
            done.push("mended the network partition".to_owned());
        }
        if let (Some(_), Some(etcd)) = (net.dcs_kbit, &state.etcd.net) {
            net.unslow(etcd);
            done.push("took the cap off etcd's link".to_owned());
        }
        state.net = Some(net);
        state.save(paths)?;
    }
    for s in std::mem::take(&mut state.stopped) {
        if alive(s.pid, "postgres") {
            os::signal(s.pid, Signal::SIGCONT)?;
            done.push(format!(
                "resumed {}'s {} (PID {})",
                s.member, s.process, s.pid
            ));
        }
    }
    state.save(paths)?;
    let run_as = RunAs::resolve(&paths.dir)?;
    if !state.etcd.pid.is_some_and(|p| alive(p, "etcd")) {
        start_etcd(paths, state, &run_as).await?;
        done.push("restarted etcd".to_owned());
    }
    for i in 0..state.members.len() {
        let m = &state.members[i];
        if m.pid.is_some_and(|p| alive(p, "patroni")) {
            continue;
        }
        // A killed postmaster's children can outlive it for a moment; Patroni copes.
        let name = m.name.clone();
        start_member(paths, state, i, &run_as)?;
        done.push(format!("restarted {name}'s Patroni"));
    }
    state.killed.clear();
    state.save(paths)?;
    wait_healthy(state, timeout).await?;
    repair_pg(paths, state, &mut done).await?;
    Ok(done)
}
