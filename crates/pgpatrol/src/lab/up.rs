//! Starting things: `lab up` (etcd, then one Patroni per member, under the lab's `--init`),
//! a standby lab's source slot, and one more member for a scale-up. What stops them is
//! `down.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::cluster::{self, etcd_healthy, tail, wait_healthy};
use super::config::{self, Ports, Secrets};
use super::down::teardown;
use super::os::{alive, cmdline, create_dir, descendants, spawn_in, write_private, RunAs};
use super::{
    EtcdState, Init, LabPaths, LabState, MemberState, PatroniVersion, StandbyOf, DEBIAN_PREFIX,
    ETCD_BIN, PG_BIN_DIR, STATE_VERSION,
};

/// What `lab up` needs to know.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub dir: PathBuf,
    pub members: usize,
    pub patroni: PatroniVersion,
    pub venv: Option<PathBuf>,
    pub port_base: Option<u16>,
    pub scope: String,
    pub timeout: Duration,
    pub init: Init,
    /// Start a standby cluster of the lab in this folder (its own etcd and scope; members
    /// named sb0, sb1, ...), streaming from the source leader through a permanent slot.
    pub standby_of: Option<PathBuf>,
    /// How the standby lab replicates: streaming, or only from the source's WAL archive.
    pub standby_mode: StandbyMode,
    /// Archive WAL into DIR/archive (with archive_timeout 5s).
    pub archive: bool,
    /// With `archive`: this member runs archive-only (`nostream` tag, restore_command from
    /// DIR/archive).
    pub nostream: Option<String>,
    /// etcd and each member in a network namespace of its own on a bridge (needs root).
    pub netns: bool,
}

/// How a standby lab's leader gets WAL from its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StandbyMode {
    /// Streaming from the source leader through a permanent slot.
    #[default]
    Streaming,
    /// Only `restore_command` from the source lab's WAL archive (`lab up --archive`).
    Archive,
}

/// Checks the host has what a lab needs, with the fix in the message.
fn check_installed(venv: &Path) -> Result<()> {
    for bin in ["postgres", "pg_ctl", "psql"] {
        let path = Path::new(PG_BIN_DIR).join(bin);
        if !path.is_file() {
            bail!(
                "PostgreSQL 15 not found ({} is missing): run scripts/setup",
                path.display()
            );
        }
    }
    if !Path::new(ETCD_BIN).is_file() {
        bail!("etcd not found ({ETCD_BIN} is missing): run scripts/setup");
    }
    if !venv.join("bin/patroni").is_file() {
        bail!("Patroni not found in {}: run scripts/setup", venv.display());
    }
    Ok(())
}

/// Finds the Patroni venv: `--venv`/`PGPATROL_PATRONI_VENV` if given, else
/// `.tools/patroni-<ver>*` walking up from the running binary's folder, then from the cwd
/// (so both `target/debug/pgpatrol` and a copy elsewhere find the project's venvs).
pub fn find_venv(explicit: Option<&Path>, version: PatroniVersion) -> Result<PathBuf> {
    let not_found = || {
        anyhow::anyhow!(
            "Patroni {} venv not found (.tools/patroni-{}.*): run scripts/setup, or pass --venv",
            version.as_str(),
            version.as_str()
        )
    };
    if explicit.is_none() && version == PatroniVersion::Debian {
        let prefix = Path::new(DEBIAN_PREFIX);
        if prefix.join("bin/patroni").is_file() {
            return Ok(prefix.to_path_buf());
        }
        bail!("Debian's patroni package is not installed (no /usr/bin/patroni): run scripts/setup");
    }
    if let Some(dir) = explicit {
        if dir.join("bin/patroni").is_file() {
            return LabPaths::new(dir).map(|p| p.dir);
        }
        bail!(
            "Patroni venv not found at {} (no bin/patroni): run scripts/setup",
            dir.display()
        );
    }
    let mut starts = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        starts.push(dir);
    }
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    let prefix = format!("patroni-{}.", version.as_str());
    for start in starts {
        for dir in start.ancestors() {
            let Ok(entries) = std::fs::read_dir(dir.join(".tools")) else {
                continue;
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix))
                        && p.join("bin/patroni").is_file()
                })
                .collect();
            found.sort();
            if let Some(venv) = found.pop() {
                return Ok(venv);
            }
        }
    }
    Err(not_found())
}

/// Starts a lab and waits until it is healthy. On any failure after the first process
/// started, tears everything down again (as `lab down` does).
pub async fn up(opts: &UpOptions) -> Result<(LabPaths, LabState)> {
    if opts.members == 0 {
        bail!("--members must be at least 1");
    }
    if opts.scope.is_empty()
        || !opts
            .scope
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("--scope {:?}: use letters, digits, '-' and '_'", opts.scope);
    }
    let paths = LabPaths::new(&opts.dir)?;
    if paths.state().exists() {
        let old = LabState::load(&paths)?;
        if old.any_alive() {
            bail!(
                "a lab is already up in {} (run `pgpatrol lab down --dir {}` first)",
                paths.dir.display(),
                paths.dir.display()
            );
        }
        // A stale lab.json (its processes are gone): clean it up and start afresh.
        teardown(&paths, &old, false).await?;
    }
    if opts.netns && opts.standby_of.is_some() {
        bail!("--netns with --standby-of: a standby lab runs on loopback; start the source lab with --netns instead");
    }
    let venv = find_venv(opts.venv.as_deref(), opts.patroni)?;
    check_installed(&venv)?;
    let net = if opts.netns {
        Some(super::net::Net::plan()?)
    } else {
        None
    };
    let run_as = RunAs::resolve(&paths.dir)?;
    run_as.check_reachable(&paths.data_root(), "lab folder")?;
    run_as.check_reachable(&venv.join("bin/patroni"), "Patroni venv")?;
    let ports = match opts.port_base {
        Some(base) => Ports::fixed(base, opts.members)?,
        None => Ports::pick(opts.members)?,
    };
    ports.check_free()?;
    if let Some(n) = &opts.nostream {
        let known = (0..opts.members).any(|i| *n == format!("pg{i}"));
        if !known || opts.members < 2 || opts.standby_of.is_some() {
            bail!(
                "--nostream {n}: name a member of a lab of two or more, pg0 to pg{}",
                opts.members.saturating_sub(1)
            );
        }
    }

    // Folders: DIR stays the caller's; what the processes write belongs to them.
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("cannot create {}", paths.dir.display()))?;
    // Fresh logs: a failed `up` shows its own log tail, not an older run's. A backup
    // repository left by an earlier lab in this folder belongs to another database.
    for old in [
        paths.data_root(),
        paths.etcd_data(),
        paths.run(),
        paths.logs(),
        paths.pgbackrest(),
    ] {
        if old.exists() {
            std::fs::remove_dir_all(&old)
                .with_context(|| format!("cannot remove {}", old.display()))?;
        }
    }
    create_dir(&paths.config_dir(), 0o755, &run_as)?;
    create_dir(&paths.logs(), 0o755, &run_as)?;
    create_dir(&paths.data_root(), 0o700, &run_as)?;
    create_dir(&paths.etcd_data(), 0o700, &run_as)?;
    create_dir(&paths.run(), 0o755, &run_as)?;
    if opts.archive {
        let a = paths.archive();
        if a.exists() {
            std::fs::remove_dir_all(&a)
                .with_context(|| format!("cannot remove {}", a.display()))?;
        }
        create_dir(&a, 0o755, &run_as)?;
    }

    let standby = match &opts.standby_of {
        Some(src) => Some(standby_source(src, &opts.scope, opts.standby_mode).await?),
        None => None,
    };
    let secrets = match &standby {
        Some(sb) => Secrets::of_lab(&sb.paths)?,
        None => Secrets::generate()?,
    };
    write_private(&paths.password(), &secrets.restapi, None)?;
    // An archive-only standby's first copy: taken once from the source leader without WAL;
    // everything after, also what makes the copy consistent, comes through restore_command.
    if let Some(StandbySource {
        archive: Some(_),
        leader_addr,
        leader_pg_port,
        ..
    }) = &standby
    {
        let script = format!(
            "#!/bin/sh\n# pgpatrol lab: the first copy of an archive-only standby leader, without WAL.\nfor a in \"$@\"; do case \"$a\" in --datadir=*) datadir=\"${{a#--datadir=}}\" ;; esac; done\n[ -n \"$datadir\" ] || {{ echo \"labcopy: no --datadir\" >&2; exit 1; }}\nPGPASSWORD='{}' exec {PG_BIN_DIR}/pg_basebackup -h {leader_addr} -p {leader_pg_port} -U replicator -D \"$datadir\" -X none -c fast\n",
            secrets.replication
        );
        write_private(
            &paths.config_dir().join("labcopy.sh"),
            &script,
            Some(&run_as),
        )?;
    }
    let prefix = if standby.is_some() { "sb" } else { "pg" };
    let mut members = Vec::new();
    for i in 0..opts.members {
        let name = format!("{prefix}{i}");
        let mut config = config::member_config(&opts.scope, &name, i, &ports, &paths, &secrets)?;
        if opts.archive {
            let a = paths.archive().display().to_string();
            config["postgresql"]["parameters"]["archive_command"] =
                format!("test ! -f {a}/%f && cp %p {a}/%f").into();
            config["postgresql"]["parameters"]["archive_timeout"] = "5s".into();
            if opts.nostream.as_deref() == Some(name.as_str()) {
                // nofailover too: it never bootstraps or leads the cluster, so it stays the
                // archive-only replica it was started as.
                config["tags"] = serde_json::json!({"nostream": true, "nofailover": true});
                config["postgresql"]["recovery_conf"] =
                    serde_json::json!({"restore_command": format!("cp {a}/%f %p")});
            }
        }
        match standby.as_ref().map(|sb| (sb, &sb.archive)) {
            Some((sb, None)) => {
                config["bootstrap"]["dcs"]["standby_cluster"] = serde_json::json!({
                    "host": sb.leader_addr.to_string(),
                    "port": sb.leader_pg_port,
                    "primary_slot_name": sb.slot,
                    "create_replica_methods": ["basebackup"],
                });
            }
            Some((_, Some(archive))) => {
                config["bootstrap"]["dcs"]["standby_cluster"] = serde_json::json!({
                    "restore_command": format!("cp {}/%f %p", archive.display()),
                    "create_replica_methods": ["labcopy"],
                });
                config["postgresql"]["labcopy"] = serde_json::json!({
                    "command": format!("/bin/sh {}", paths.config_dir().join("labcopy.sh").display()),
                    "no_leader": true,
                });
            }
            None => {}
        }
        let host = on_own_host(net.as_ref(), &mut config, &name, i)?;
        let yaml = config::to_yaml(&config)?;
        write_private(&paths.config(&name), &yaml, Some(&run_as))?;
        let (rest_port, pg_port) = ports.members[i];
        members.push(MemberState {
            rest_port,
            pg_port,
            pid: None,
            init_pid: None,
            data_dir: paths.data(&name),
            config: paths.config(&name),
            log: paths.log(&name),
            net: host,
            name,
        });
    }
    let mut state = LabState {
        version: STATE_VERSION,
        scope: opts.scope.clone(),
        patroni: opts.patroni,
        venv,
        init: opts.init,
        etcd: EtcdState {
            pid: None,
            client_port: ports.etcd_client,
            peer_port: ports.etcd_peer,
            data_dir: paths.etcd_data(),
            log: paths.log("etcd"),
            net: net.as_ref().map(super::net::Net::etcd_host),
            started: None,
        },
        members,
        stopped: Vec::new(),
        killed: Vec::new(),
        pg_faults: Vec::new(),
        holders: Vec::new(),
        standby_of: standby.as_ref().map(|sb| StandbyOf {
            dir: sb.paths.dir.clone(),
            slot: sb.archive.is_none().then(|| sb.slot.clone()),
        }),
        archive: opts.archive.then(|| paths.archive()),
        net,
    };
    // Written before anything starts, so `lab down` can clean up whatever follows.
    state.save(&paths)?;

    let started = async {
        if state.net.is_some() {
            make_hosts(&paths, &mut state)?;
        }
        eprintln!(
            "lab: starting etcd on {}:{}",
            state.etcd.addr(),
            ports.etcd_client
        );
        start_etcd(&paths, &mut state, &run_as).await?;
        eprintln!(
            "lab: starting {} Patroni {} member(s); waiting for 1 leader and {} streaming replica(s)",
            state.members.len(),
            opts.patroni.as_str(),
            state.members.len() - 1
        );
        for i in 0..state.members.len() {
            start_member(&paths, &mut state, i, &run_as)?;
        }
        wait_healthy(&state, opts.timeout).await
    }
    .await;
    if let Err(e) = started {
        let _ = teardown(&paths, &state, false).await;
        return Err(e);
    }
    Ok((paths, state))
}

/// With `--netns`: member `index`'s host, its config placed on it (`None` on loopback).
fn on_own_host(
    net: Option<&super::net::Net>,
    config: &mut serde_json::Value,
    name: &str,
    index: usize,
) -> Result<Option<super::net::NetHost>> {
    let Some(n) = net else { return Ok(None) };
    let host = n.member_host(name, index)?;
    config::place(config, host.addr, n.etcd_host().addr, &n.subnet());
    Ok(Some(host))
}

/// `--netns`: the bridge, then etcd's and each member's namespace, the state saved after
/// each so `down` removes what was made even when a step fails.
fn make_hosts(paths: &LabPaths, state: &mut LabState) -> Result<()> {
    let hosts: Vec<_> = std::iter::once(state.etcd.net.clone())
        .chain(state.members.iter().map(|m| m.net.clone()))
        .flatten()
        .collect();
    let Some(net) = state.net.as_mut() else {
        return Ok(());
    };
    eprintln!(
        "lab: a network namespace per host on bridge {} ({})",
        net.bridge(),
        net.subnet()
    );
    let made = net.create_bridge();
    state.save(paths)?;
    made?;
    for host in &hosts {
        let made = state.net.as_mut().map_or(Ok(()), |n| n.create(host));
        state.save(paths)?;
        made?;
    }
    Ok(())
}

/// The source of a standby lab: its folder, its leader's address and PostgreSQL port, the
/// slot (or, archive-only, the source's WAL archive).
struct StandbySource {
    paths: LabPaths,
    leader_addr: std::net::Ipv4Addr,
    leader_pg_port: u16,
    slot: String,
    archive: Option<PathBuf>,
}

/// Checks the source lab runs and gives it a permanent physical slot for the standby
/// (Patroni keeps it on whichever member leads; the standby leader streams through it).
async fn standby_source(dir: &Path, scope: &str, mode: StandbyMode) -> Result<StandbySource> {
    let paths = LabPaths::new(dir)?;
    if !paths.state().exists() {
        bail!(
            "--standby-of {}: no lab there (start it with `pgpatrol lab up --dir {}`)",
            dir.display(),
            dir.display()
        );
    }
    let state = LabState::load(&paths)?;
    if state.standby_of.is_some() {
        bail!("--standby-of {}: that lab is itself a standby cluster; cascade from its source instead", dir.display());
    }
    let leader = cluster::leader(&state)
        .await
        .with_context(|| {
            format!(
                "--standby-of {}: the source lab has no leader",
                dir.display()
            )
        })?
        .clone();
    let slot = format!("standby_{}", scope.replace('-', "_"));
    if mode == StandbyMode::Archive {
        let archive = state.archive.clone().with_context(|| {
            format!(
                "--standby-mode archive: the lab in {} archives no WAL (start it with `pgpatrol lab up --archive`)",
                dir.display()
            )
        })?;
        return Ok(StandbySource {
            paths,
            leader_addr: leader.addr(),
            leader_pg_port: leader.pg_port,
            slot,
            archive: Some(archive),
        });
    }
    cluster::patch_config(
        &paths,
        &leader,
        serde_json::json!({"slots": {slot.clone(): {"type": "physical"}}}),
    )
    .await?;
    Ok(StandbySource {
        paths,
        leader_addr: leader.addr(),
        leader_pg_port: leader.pg_port,
        slot,
        archive: None,
    })
}

/// Starts etcd and waits (10 s at most) until it answers `/health`.
pub async fn start_etcd(paths: &LabPaths, state: &mut LabState, run_as: &RunAs) -> Result<()> {
    let e = &state.etcd;
    let client = e.client_url();
    let peer = format!("http://{}:{}", e.addr(), e.peer_port);
    let mut cmd = run_as.command(Path::new(ETCD_BIN), &e.log)?;
    cmd.arg("--name")
        .arg("lab")
        .arg("--data-dir")
        .arg(&e.data_dir)
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .arg("--initial-cluster")
        .arg(format!("lab={peer}"))
        .args(["--initial-cluster-state", "new"])
        .arg("--initial-cluster-token")
        .arg(format!("pgpatrol-lab-{}", state.scope))
        .current_dir(&paths.dir);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let pid = spawn_in(cmd, "etcd", e.net.as_ref().map(|h| h.ns.as_str()))?;
    state.etcd.pid = Some(pid);
    state.etcd.started = Some(started);
    state.save(paths)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if etcd_healthy(&state.etcd).await {
            return Ok(());
        }
        if !alive(pid, "etcd") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "etcd did not become healthy on {client}; {} says: {}",
        state.etcd.log.display(),
        tail(&state.etcd.log, 5).replace('\n', " | ")
    )
}

/// The PID 1 that `--init no-reap` puts in a member's namespace: it starts the command and
/// waits for that one child only, like a service manager that tracks only its own services.
/// Orphans re-parented to it stay zombies.
const NO_REAP_INIT: &str = "import os, sys\n\
pid = os.fork()\n\
if pid == 0:\n    os.execvp(sys.argv[1], sys.argv[1:])\n\
os.waitpid(pid, 0)\n";

/// Debian's tini (`--init tini`).
pub const TINI_BIN: &str = "/usr/bin/tini";

/// Starts member `i`'s Patroni with its config (under the lab's init) and records the PIDs.
pub fn start_member(
    paths: &LabPaths,
    state: &mut LabState,
    i: usize,
    run_as: &RunAs,
) -> Result<()> {
    let m = &state.members[i];
    let patroni = state.venv.join("bin/patroni");
    let what = format!("Patroni for {}", m.name);
    let ns = m.net.as_ref().map(|h| h.ns.as_str());
    let (pid, init_pid) = if state.init.namespaced() {
        let unshare = spawn_in(namespaced(state.init, run_as, &patroni, m)?, &what, ns)?;
        let (init, pid) = find_namespaced_patroni(unshare, &state.venv, &m.log)?;
        (pid, Some(init))
    } else {
        let mut cmd = run_as.command(&patroni, &m.log)?;
        cmd.arg(&m.config).current_dir(&paths.dir);
        (spawn_in(cmd, &what, ns)?, None)
    };
    state.members[i].pid = Some(pid);
    state.members[i].init_pid = init_pid;
    state.save(paths)
}

/// `unshare --pid --fork --mount-proc INIT... setpriv (to the lab user) patroni CONFIG`: the
/// member in its own PID namespace, as in a container. Needs root.
fn namespaced(init: Init, run_as: &RunAs, patroni: &Path, m: &MemberState) -> Result<Command> {
    let Some((uid, gid)) = run_as.ids else {
        bail!(
            "lab up --init {} needs root: a PID namespace (unshare --pid) needs CAP_SYS_ADMIN; use --init none",
            init.as_str()
        );
    };
    let mut cmd = run_as.detached(Path::new("/usr/bin/unshare"), &m.log)?;
    // --kill-child: if unshare itself dies, the namespace goes with it.
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child", "--"]);
    match init {
        Init::None | Init::Direct => {}
        Init::Supervise => {
            let me = std::env::current_exe().context("cannot find the pgpatrol binary")?;
            cmd.arg(me).args(["supervise", "--grace", "10s", "--"]);
        }
        Init::Tini => {
            if !Path::new(TINI_BIN).is_file() {
                bail!("--init tini: {TINI_BIN} not found: run scripts/setup (it installs Debian's tini)");
            }
            cmd.args([TINI_BIN, "--"]);
        }
        Init::NoReap => {
            cmd.args(["/usr/bin/python3", "-c", NO_REAP_INIT]);
        }
    }
    cmd.arg("/usr/bin/setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--init-groups", "--"])
        .arg(patroni)
        .arg(&m.config);
    if let Some(dir) = m.config.parent() {
        cmd.current_dir(dir);
    }
    Ok(cmd)
}

/// Waits (10 s at most) until `unshare`'s namespace runs Patroni; returns the host PIDs of
/// the namespace's init and of Patroni (the outermost Patroni process: with `--init direct`
/// that is PID 1 itself, which forwards signals to the daemon it forked).
fn find_namespaced_patroni(unshare: u32, venv: &Path, log: &Path) -> Result<(u32, u32)> {
    let python = venv.join("bin/python").to_string_lossy().into_owned();
    let script = venv.join("bin/patroni").to_string_lossy().into_owned();
    // `PYTHON .../bin/patroni CONFIG`: the interpreter running the patroni script (an init
    // that is itself Python, like --init no-reap's, has other arguments).
    let is_patroni = |pid: u32| {
        cmdline(pid).is_some_and(|c| {
            let mut argv = c.split(' ');
            argv.next().is_some_and(|a| a.starts_with(&python)) && argv.next() == Some(&script)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let tree = descendants(unshare);
        let init = tree.iter().find(|p| p.ppid == unshare).map(|p| p.pid);
        let patroni = tree
            .iter()
            .skip(1)
            .find(|p| is_patroni(p.pid))
            .map(|p| p.pid);
        if let (Some(init), Some(patroni)) = (init, patroni) {
            return Ok((init, patroni));
        }
        if !alive(unshare, "unshare") && tree.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "Patroni did not start in its PID namespace; {} says: {}",
        log.display(),
        tail(log, 5).replace('\n', " | ")
    )
}

/// Adds one member to a running lab, as a scale-up adds a pod: the next name (`pg3` after
/// `pg2`), two free ports, a patroni.yml like the others' (the lab's secrets, its archive),
/// started. Patroni clones it from the leader by itself. Returns its name.
pub fn add_member(paths: &LabPaths, state: &mut LabState) -> Result<String> {
    let first = state
        .members
        .first()
        .context("the lab has no member to take the configuration from")?;
    let prefix: String = first
        .name
        .chars()
        .take_while(|c| !c.is_ascii_digit())
        .collect();
    let next = state
        .members
        .iter()
        .filter_map(|m| m.name.strip_prefix(&prefix)?.parse::<usize>().ok())
        .max()
        .map_or(0, |n| n + 1);
    let name = format!("{prefix}{next}");
    let held: Vec<std::net::TcpListener> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .context("cannot find a free port on 127.0.0.1")
        })
        .collect::<Result<_>>()?;
    let picked: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()
        .context("cannot read a picked port")?;
    drop(held);
    let mut members: Vec<(u16, u16)> = state
        .members
        .iter()
        .map(|m| (m.rest_port, m.pg_port))
        .collect();
    members.push((picked[0], picked[1]));
    let ports = Ports {
        etcd_client: state.etcd.client_port,
        etcd_peer: state.etcd.peer_port,
        members,
    };
    let index = state.members.len();
    let secrets = config::Secrets::of_config(&first.config)?;
    let mut cfg = config::member_config(&state.scope, &name, index, &ports, paths, &secrets)?;
    let host = on_own_host(state.net.as_ref(), &mut cfg, &name, index)?;
    if let Some(a) = &state.archive {
        let a = a.display().to_string();
        cfg["postgresql"]["parameters"]["archive_command"] =
            format!("test ! -f {a}/%f && cp %p {a}/%f").into();
        cfg["postgresql"]["parameters"]["archive_timeout"] = "5s".into();
    }
    let run_as = RunAs::resolve(&paths.dir)?;
    write_private(&paths.config(&name), &config::to_yaml(&cfg)?, Some(&run_as))?;
    state.members.push(MemberState {
        rest_port: picked[0],
        pg_port: picked[1],
        pid: None,
        init_pid: None,
        data_dir: paths.data(&name),
        config: paths.config(&name),
        log: paths.log(&name),
        net: host.clone(),
        name: name.clone(),
    });
    state.save(paths)?;
    if let (Some(net), Some(host)) = (state.net.as_mut(), &host) {
        let made = net.create(host);
        state.save(paths)?;
        made?;
    }
    start_member(paths, state, index, &run_as)?;
    Ok(name)
}
