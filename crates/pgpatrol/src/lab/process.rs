//! Starting and stopping the lab's processes: etcd and one Patroni per member, detached
//! (own process group, stdin null, output to a log file) so they outlive `lab up`.

use std::fs::OpenOptions;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};
use pgpatrol_core::{Cluster, State};

use super::config::{self, Ports, Secrets};
use super::{
    check_health, EtcdState, Init, LabPaths, LabState, MemberState, PatroniVersion, ETCD_BIN,
    HEALTHY_MAX_LAG, PG_BIN_DIR, STATE_VERSION,
};

/// Who the lab's processes run as. PostgreSQL refuses root, so root runs them as `postgres`.
#[derive(Debug, Clone)]
pub struct RunAs {
    /// `None`: the current (non-root) user.
    pub ids: Option<(u32, u32)>,
    pub home: PathBuf,
}

impl RunAs {
    pub fn resolve(dir: &Path) -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(RunAs {
                ids: None,
                home: dir.to_path_buf(),
            });
        }
        let user = User::from_name("postgres")
            .ok()
            .flatten()
            .context("cannot switch to the postgres user: it does not exist (run scripts/setup)")?;
        let home = if user.dir.is_dir() {
            user.dir
        } else {
            dir.to_path_buf()
        };
        Ok(RunAs {
            ids: Some((user.uid.as_raw(), user.gid.as_raw())),
            home,
        })
    }

    /// Fails when the user the processes run as cannot reach `path` because a parent folder
    /// is not world-traversable (a checkout under /root, mode 700).
    pub fn check_reachable(&self, path: &Path, what: &str) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let Some((uid, _)) = self.ids else {
            return Ok(());
        };
        for dir in path.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(dir) else {
                continue; // Not created yet: `lab up` creates it traversable.
            };
            if meta.mode() & 0o001 == 0 && meta.uid() != uid {
                bail!(
                    "cannot switch to the postgres user: it cannot reach the {what} {} because {} is not \
                     world-traversable (chmod o+x it, or use another place)",
                    path.display(),
                    dir.display()
                );
            }
        }
        Ok(())
    }

    /// Gives a path the lab creates to the user the processes run as.
    pub fn own(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.ids {
            chown(path, Some(uid), Some(gid)).with_context(|| {
                format!(
                    "cannot switch to the postgres user: chown {} failed",
                    path.display()
                )
            })?;
        }
        Ok(())
    }

    /// A detached command run as the lab's user: clean environment, own process group,
    /// stdin null, output to `log`.
    pub(super) fn command(&self, program: &Path, log: &Path) -> Result<Command> {
        let mut cmd = self.detached(program, log)?;
        if let Some((uid, gid)) = self.ids {
            // std drops supplementary groups when root sets uid/gid.
            cmd.uid(uid).gid(gid);
        }
        Ok(cmd)
    }

    /// The same, but keeping the caller's user (root, for `unshare --pid`).
    fn detached(&self, program: &Path, log: &Path) -> Result<Command> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        self.own(log)?;
        let err = out.try_clone().context("cannot duplicate the log file")?;
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own group: Ctrl-C in the terminal that ran `lab up` does not reach it.
            .process_group(0);
        Ok(cmd)
    }
}

fn spawn(mut cmd: Command, what: &str) -> Result<u32> {
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            anyhow::anyhow!("cannot switch to the postgres user to start {what}: {e}")
        } else {
            anyhow::anyhow!("cannot start {what}: {e}")
        }
    })?;
    // The Child is dropped without waiting: the process is meant to outlive us.
    Ok(child.id())
}

/// True when `pid` runs (not a zombie) and its command line contains `needle`, so a
/// recycled PID is never mistaken for a lab process.
pub fn alive(pid: u32, needle: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, Some('Z' | 'X') | None) {
        return false;
    }
    cmdline(pid).is_some_and(|c| c.contains(needle))
}

/// `/proc/PID/cmdline` with NULs as spaces (PostgreSQL puts its process title there).
pub fn cmdline(pid: u32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
}

/// The postmaster's PID: the first line of `DATA/postmaster.pid`.
pub fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// One line of the process table.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// `R`, `S`, `Z`, ... from `/proc/PID/stat`.
    pub state: char,
    pub comm: String,
}

/// Every process, from `/proc/*/stat` (processes that end while it reads are skipped).
pub fn proc_table() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "PID (comm) S PPID ...": comm may hold spaces and parentheses.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_owned();
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse().ok()?;
            Some(Proc {
                pid,
                ppid,
                state,
                comm,
            })
        })
        .collect()
}

/// `root` and every process below it, parents before children.
pub fn descendants(root: u32) -> Vec<Proc> {
    let table = proc_table();
    let mut found: Vec<Proc> = table.iter().filter(|p| p.pid == root).cloned().collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].pid;
        found.extend(table.iter().filter(|p| p.ppid == parent).cloned());
        i += 1;
    }
    found
}

/// Children of `parent` whose command line contains `needle`.
pub fn children(parent: u32, needle: &str) -> Vec<u32> {
    proc_table()
        .into_iter()
        .filter(|p| p.ppid == parent && alive(p.pid, needle))
        .map(|p| p.pid)
        .collect()
}

/// Zombies at or below `root`: `(host PID, command)`.
pub fn zombies_under(root: u32) -> Vec<(u32, String)> {
    descendants(root)
        .into_iter()
        .filter(|p| p.state == 'Z')
        .map(|p| (p.pid, p.comm))
        .collect()
}

/// The host PID of the process that PID namespace `init` (a host PID) calls `inner`, from
/// the `NSpid:` line of `/proc/PID/status` (host PID first, innermost last).
pub fn host_pid(init: u32, inner: u32) -> Option<u32> {
    descendants(init).into_iter().map(|p| p.pid).find(|&pid| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
                line.split_whitespace().last()?.parse::<u32>().ok()
            })
            == Some(inner)
    })
}

/// Sends `sig`; a process that is already gone is not an error.
pub fn signal(pid: u32, sig: Signal) -> Result<()> {
    let raw = i32::try_from(pid).context("PID out of range")?;
    match kill(Pid::from_raw(raw), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot send {sig} to PID {pid}")),
    }
}

fn create_dir(path: &Path, mode: u32, run_as: &RunAs) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    run_as.own(path)
}

fn write_private(path: &Path, text: &str, owner: Option<&RunAs>) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Created afresh with mode 0600: the file is never readable by others, not even briefly.
    let _ = std::fs::remove_file(path);
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(run_as) = owner {
        run_as.own(path)?;
    }
    Ok(())
}

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
    let venv = super::find_venv(opts.venv.as_deref(), opts.patroni)?;
    check_installed(&venv)?;
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
        leader_pg_port,
        ..
    }) = &standby
    {
        let script = format!(
            "#!/bin/sh\n# pgpatrol lab: the first copy of an archive-only standby leader, without WAL.\nfor a in \"$@\"; do case \"$a\" in --datadir=*) datadir=\"${{a#--datadir=}}\" ;; esac; done\n[ -n \"$datadir\" ] || {{ echo \"labcopy: no --datadir\" >&2; exit 1; }}\nPGPASSWORD='{}' exec {PG_BIN_DIR}/pg_basebackup -h 127.0.0.1 -p {leader_pg_port} -U replicator -D \"$datadir\" -X none -c fast\n",
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
                    "host": "127.0.0.1",
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
        },
        members,
        stopped: Vec::new(),
        killed: Vec::new(),
        pg_faults: Vec::new(),
        holders: Vec::new(),
        standby_of: standby.as_ref().map(|sb| super::StandbyOf {
            dir: sb.paths.dir.clone(),
            slot: sb.archive.is_none().then(|| sb.slot.clone()),
        }),
        archive: opts.archive.then(|| paths.archive()),
    };
    // Written before anything starts, so `lab down` can clean up whatever follows.
    state.save(&paths)?;

    let started = async {
        eprintln!("lab: starting etcd on 127.0.0.1:{}", ports.etcd_client);
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

/// The source of a standby lab: its folder, its leader's PostgreSQL port, the slot (or,
/// archive-only, the source's WAL archive).
struct StandbySource {
    paths: LabPaths,
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
    let leader = super::faults::leader(&state)
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
            leader_pg_port: leader.pg_port,
            slot,
            archive: Some(archive),
        });
    }
    super::faults::patch_config(
        &paths,
        &leader,
        serde_json::json!({"slots": {slot.clone(): {"type": "physical"}}}),
    )
    .await?;
    Ok(StandbySource {
        paths,
        leader_pg_port: leader.pg_port,
        slot,
        archive: None,
    })
}

/// Removes a standby lab's permanent slot from its source's configuration (the source may
/// be gone already: then there is nothing to remove).
pub async fn release_standby_slot(state: &LabState) {
    let Some(sb) = &state.standby_of else { return };
    let Some(slot) = &sb.slot else { return };
    let Ok(paths) = LabPaths::new(&sb.dir) else {
        return;
    };
    let Ok(src) = LabState::load(&paths) else {
        return;
    };
    if let Ok(leader) = super::faults::leader(&src).await {
        let leader = leader.clone();
        let _ = super::faults::patch_config(
            &paths,
            &leader,
            serde_json::json!({"slots": {slot.clone(): null}}),
        )
        .await;
    }
}

/// Starts etcd and waits (10 s at most) until it answers `/health`.
pub async fn start_etcd(paths: &LabPaths, state: &mut LabState, run_as: &RunAs) -> Result<()> {
    let e = &state.etcd;
    let client = format!("http://127.0.0.1:{}", e.client_port);
    let peer = format!("http://127.0.0.1:{}", e.peer_port);
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
    let pid = spawn(cmd, "etcd")?;
    state.etcd.pid = Some(pid);
    state.save(paths)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if super::etcd_healthy(state.etcd.client_port).await {
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
        super::tail(&state.etcd.log, 5).replace('\n', " | ")
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
    let (pid, init_pid) = if state.init.namespaced() {
        let unshare = spawn(namespaced(state.init, run_as, &patroni, m)?, &what)?;
        let (init, pid) = find_namespaced_patroni(unshare, &state.venv, &m.log)?;
        (pid, Some(init))
    } else {
        let mut cmd = run_as.command(&patroni, &m.log)?;
        cmd.arg(&m.config).current_dir(&paths.dir);
        (spawn(cmd, &what)?, None)
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
        super::tail(log, 5).replace('\n', " | ")
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
        name: name.clone(),
    });
    state.save(paths)?;
    start_member(paths, state, index, &run_as)?;
    Ok(name)
}

/// Takes one member out of a running lab, as a scale-down deletes a pod: SIGTERM to its
/// Patroni, which stops PostgreSQL and deletes its member key; then its data directory goes. Judging whether it may go is `pgpatrol member remove`'s business.
pub async fn remove_member(paths: &LabPaths, state: &mut LabState, name: &str) -> Result<()> {
    let i = state
        .members
        .iter()
        .position(|m| m.name == name)
        .with_context(|| format!("the lab has no member {name}"))?;
    let m = state.members[i].clone();
    let mut waiting = Vec::new();
    if let Some(pid) = m.pid.filter(|p| alive(*p, "patroni")) {
        signal(pid, Signal::SIGTERM)?;
        waiting.push((pid, "patroni"));
    }
    if let Some(pm) = m.postmaster() {
        waiting.push((pm, "postgres"));
    }
    wait_gone(&waiting, Duration::from_secs(60)).await;
    if let Some(init) = m.init_pid.filter(|p| alive(*p, "unshare")) {
        signal(init, Signal::SIGKILL)?;
    }
    if let Some(&(pid, needle)) = waiting.iter().find(|(p, n)| alive(*p, n)) {
        bail!("{name}'s {needle} (pid {pid}) did not stop within 60 s");
    }
    for dir in [&m.data_dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    // Its patroni.yml stays: the lab's export line and every other member read the shared
    // secrets from pg0.yml, which may be this one.
    state.members.remove(i);
    state.save(paths)
}

/// Polls /cluster until the lab is healthy (see [`check_health`]); on timeout the error
/// carries the reason and the tail of the first unhealthy member's log.
pub async fn wait_healthy(state: &LabState, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut why;
    loop {
        match super::any_cluster(state).await {
            Ok(cluster) => match check_health(
                &cluster,
                state.members.len(),
                Some(HEALTHY_MAX_LAG),
                state.patroni.streaming_state(),
            ) {
                Ok(()) => match members_agree(state, &cluster).await {
                    Ok(()) => return Ok(()),
                    Err(reason) => why = reason,
                },
                Err(reason) => why = reason,
            },
            Err(e) => why = format!("{e:#}"),
        }
        if state
            .members
            .iter()
            .all(|m| !m.pid.is_some_and(|p| alive(p, "patroni")))
        {
            why = format!("every Patroni process exited ({why})");
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Blame the first member that is dead or named in the reason; else the first member.
    let culprit = state
        .members
        .iter()
        .find(|m| !m.pid.is_some_and(|p| alive(p, "patroni")))
        .or_else(|| state.members.iter().find(|m| why.contains(&m.name)))
        .or(state.members.first());
    let log = culprit
        .map(|m| {
            format!(
                "; {} log: {}",
                m.name,
                super::tail(&m.log, 5).replace('\n', " | ")
            )
        })
        .unwrap_or_default();
    bail!(
        "the lab did not become healthy within {} ({why}){log}",
        humantime::format_duration(timeout)
    )
}

/// /cluster is the DCS's view, which lags reality: a killed leader still shows as "leader
/// running" until its key expires. So each member's own /patroni must answer, say "running",
/// and agree on its role.
pub async fn members_agree(state: &LabState, cluster: &Cluster) -> Result<(), String> {
    let leader = cluster.leader().map(|l| l.name.clone()).unwrap_or_default();
    let mut senders = Vec::new();
    for m in &state.members {
        let me = super::member_status(&m.url())
            .await
            .map_err(|e| format!("{} does not answer: {e:#}", m.name))?;
        let is_leader = me.role.is_leader();
        if me.state != State::Running || is_leader != (m.name == leader) {
            return Err(format!("{} says {}/{}", m.name, me.role, me.state));
        }
        if is_leader {
            senders = me.streaming_to;
        }
    }
    // The leader's pg_stat_replication: every replica streams (but an archive-only one,
    // `lab up --nostream`). Patroni before 3.0.4 says a replica is `running` whether or not
    // its walreceiver has connected yet.
    let archive_only = |name: &str| cluster.member(name).is_some_and(|m| m.nostream());
    for m in state
        .members
        .iter()
        .filter(|m| m.name != leader && !archive_only(&m.name))
    {
        if !senders.contains(&m.name) {
            return Err(format!(
                "{} is not streaming from the leader yet (its pg_stat_replication)",
                m.name
            ));
        }
    }
    Ok(())
}

/// Stops everything a lab started and removes its data: SIGCONT stopped PIDs, SIGTERM every
/// Patroni (it stops its postgres), SIGKILL what is left after 30 s, delete the cluster's
/// DCS keys, stop etcd, remove data and `lab.json`. Idempotent.
pub async fn teardown(paths: &LabPaths, state: &LabState, keep_data: bool) -> Result<()> {
    release_standby_slot(state).await;
    for pid in state
        .holders
        .iter()
        .copied()
        .filter(|p| alive(*p, "pgbench"))
    {
        let _ = signal(pid, Signal::SIGTERM);
    }
    // A stopped walreceiver or startup process would block the postmaster's shutdown.
    for s in state.stopped.iter().filter(|s| alive(s.pid, "postgres")) {
        signal(s.pid, Signal::SIGCONT)?;
    }
    let mut waiting: Vec<(u32, &str)> = Vec::new();
    for m in &state.members {
        let postmaster = m.postmaster();
        match m.pid.filter(|p| alive(*p, "patroni")) {
            Some(pid) => {
                signal(pid, Signal::SIGTERM)?;
                waiting.push((pid, "patroni"));
            }
            // Patroni is gone (crashed or killed) but its postgres may not be: fast shutdown.
            None => {
                if let Some(pm) = postmaster {
                    signal(pm, Signal::SIGINT)?;
                }
            }
        }
        if let Some(pm) = postmaster {
            waiting.push((pm, "postgres"));
        }
    }
    // In a PID namespace a Patroni stuck behind a non-reaping init never exits by itself:
    // give it less time, then SIGKILL the namespace's init, which ends everything in it.
    let patience = if state.init.namespaced() { 10 } else { 30 };
    wait_gone(&waiting, Duration::from_secs(patience)).await;
    let configs: Vec<String> = state
        .members
        .iter()
        .map(|m| m.config.to_string_lossy().into_owned())
        .collect();
    for (m, config) in state.members.iter().zip(&configs) {
        if let Some(init) = m.init_pid.filter(|p| alive(*p, config)) {
            signal(init, Signal::SIGKILL)?;
            waiting.push((init, config));
        }
    }
    for &(pid, needle) in &waiting {
        if alive(pid, needle) {
            signal(pid, Signal::SIGKILL)?;
        }
    }
    wait_gone(&waiting, Duration::from_secs(5)).await;

    if let Some(pid) = state.etcd.pid.filter(|p| alive(*p, "etcd")) {
        // Best effort: the keys go away with etcd's data anyway unless --keep-data.
        let _ = crate::ops::remove::unattended(
            &format!("etcd3://127.0.0.1:{}", state.etcd.client_port),
            &state.scope,
        )
        .await;
        signal(pid, Signal::SIGTERM)?;
        wait_gone(&[(pid, "etcd")], Duration::from_secs(10)).await;
        if alive(pid, "etcd") {
            signal(pid, Signal::SIGKILL)?;
            wait_gone(&[(pid, "etcd")], Duration::from_secs(5)).await;
        }
    }
    if !keep_data {
        for dir in [
            paths.data_root(),
            paths.etcd_data(),
            paths.run(),
            paths.archive(),
            paths.pgbackrest(),
        ] {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
        }
    }
    match std::fs::remove_file(paths.state()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", paths.state().display())),
    }
}

async fn wait_gone(pids: &[(u32, &str)], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|&(p, n)| alive(p, n)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_sees_this_process_and_not_a_missing_one() {
        let me = std::process::id();
        assert!(alive(me, ""));
        assert!(!alive(me, "no-such-command-line"));
        assert!(!alive(u32::MAX - 1, ""));
    }

    #[test]
    fn children_finds_a_spawned_child_by_command_line() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        // Until the child has exec'd, its command line is still ours.
        let mut found = Vec::new();
        for _ in 0..100 {
            found = children(std::process::id(), "sleep");
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&child.id()), "{found:?}");
        // Reaped: no longer alive.
        assert!(!alive(child.id(), "sleep"));
    }

    #[test]
    fn postmaster_pid_reads_the_first_line() {
        let dir = std::env::temp_dir().join(format!("pgpatrol-pmpid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(postmaster_pid(&dir), None);
        std::fs::write(dir.join("postmaster.pid"), "4242\n/data\n1700000000\n").unwrap();
        assert_eq!(postmaster_pid(&dir), Some(4242));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
