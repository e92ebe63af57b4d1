//! The local lab: a real Patroni cluster (PostgreSQL 15 + etcd + Patroni) on loopback.
//!
//! Everything about one lab lives in one folder (`DIR`): generated configs, logs, data,
//! sockets, the REST API password and `lab.json`, the state file that records every PID the
//! lab started so `lab down` can always clean up, even after a failed `lab up`.
//!
//! ```text
//! DIR/lab.json            state (this module)     DIR/config/pgN.yml   config.rs
//! DIR/restapi.password    0600, never printed     DIR/logs/*.log       process.rs
//! DIR/data/pgN, DIR/etcd  data (removed by down)  DIR/run              sockets, pgpass
//! ```

pub mod backup;
pub mod config;
pub mod faults;
pub mod process;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use pgpatrol_core::{Cluster, Lag, LagKind, MemberStatus, State};

use crate::source::http::{Http, HttpOptions};
use crate::source::{ClusterSource, Detail};

/// Version of the `lab.json` layout.
pub const STATE_VERSION: u32 = 1;
/// Where PostgreSQL 15's binaries are on Debian.
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// Debian's etcd server.
pub const ETCD_BIN: &str = "/usr/bin/etcd";
/// The REST API user the lab creates.
pub const REST_USER: &str = "patrol";
/// A replica lagging more than this is not "healthy" for the lab (1 MiB, like
/// `maximum_lag_on_failover`).
pub const HEALTHY_MAX_LAG: u64 = 1024 * 1024;

/// The Patroni lines the lab can run: `.tools/patroni-<line>.*` venvs from PyPI, or Debian's
/// own package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum PatroniVersion {
    /// Patroni 4.1 (4.1.5): has `receive_lag` and `replay_lag` in /cluster.
    #[value(name = "4.1")]
    #[serde(rename = "4.1")]
    V4_1,
    /// Patroni 4.0 (4.0.11): `primary` (no longer `master`), `lag` only.
    #[value(name = "4.0")]
    #[serde(rename = "4.0")]
    V4_0,
    /// Patroni 3.3 (3.3.11), the last 3.x line: `master`, `lag` only.
    #[value(name = "3.3")]
    #[serde(rename = "3.3")]
    V3_3,
    /// Patroni 3.0 (3.0.4): `lag` only; replay lag comes from each member's /patroni.
    #[value(name = "3.0")]
    #[serde(rename = "3.0")]
    V3_0,
    /// Patroni 2.1 (2.1.7): replicas say `running`, not `streaming`.
    #[value(name = "2.1")]
    #[serde(rename = "2.1")]
    V2_1,
    /// Debian's packaged Patroni (3.0.2 on Debian 12), installed in /usr.
    #[value(name = "debian")]
    #[serde(rename = "debian")]
    Debian,
}

impl PatroniVersion {
    /// The version prefix of the venv folder `.tools/patroni-<ver>...` (`debian` for the
    /// system install).
    pub fn as_str(self) -> &'static str {
        match self {
            PatroniVersion::V4_1 => "4.1",
            PatroniVersion::V4_0 => "4.0",
            PatroniVersion::V3_3 => "3.3",
            PatroniVersion::V3_0 => "3.0",
            PatroniVersion::V2_1 => "2.1",
            PatroniVersion::Debian => "debian",
        }
    }

    /// The `/cluster` state of a healthy streaming replica: Patroni before 3.0 says
    /// `running` (it does not tell streaming from archive recovery).
    pub fn streaming_state(self) -> &'static str {
        match self {
            PatroniVersion::V2_1 | PatroniVersion::Debian => "running",
            _ => "streaming",
        }
    }
}

/// Where Debian's `patroni` package installs (`/usr/bin/patroni`, `/usr/bin/patronictl`).
pub const DEBIAN_PREFIX: &str = "/usr";

/// What each member's Patroni runs under (`lab up --init`). Every mode but `none` puts each
/// member in its own PID namespace (`unshare --pid --fork --mount-proc`), as a container
/// would, so the process there at PID 1 is the one that inherits the orphaned postmaster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// No namespace: Patroni runs on the host; postmasters are orphans of the machine's init.
    #[default]
    None,
    /// Patroni itself as PID 1 (its built-in init mode forks the daemon and reaps).
    Direct,
    /// `pgpatrol supervise` as PID 1.
    Supervise,
    /// Debian's `tini` as PID 1 (for side-by-side comparison).
    Tini,
    /// A PID 1 that waits only for its own child and never reaps orphans: seed 001's hang.
    NoReap,
}

impl Init {
    pub fn as_str(self) -> &'static str {
        match self {
            Init::None => "none",
            Init::Direct => "direct",
            Init::Supervise => "supervise",
            Init::Tini => "tini",
            Init::NoReap => "no-reap",
        }
    }

    /// True when members run in their own PID namespace.
    pub fn namespaced(self) -> bool {
        self != Init::None
    }
}

/// The files and folders of one lab.
#[derive(Debug, Clone)]
pub struct LabPaths {
    pub dir: PathBuf,
}

impl LabPaths {
    /// Makes `dir` absolute, so paths written into configs and printed exports work anywhere.
    pub fn new(dir: &Path) -> Result<Self> {
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir()
                .context("cannot read the current directory")?
                .join(dir)
        };
        Ok(LabPaths { dir })
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("lab.json")
    }
    pub fn password(&self) -> PathBuf {
        self.dir.join("restapi.password")
    }
    pub fn config_dir(&self) -> PathBuf {
        self.dir.join("config")
    }
    pub fn config(&self, member: &str) -> PathBuf {
        self.config_dir().join(format!("{member}.yml"))
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(format!("{name}.log"))
    }
    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn data(&self, member: &str) -> PathBuf {
        self.data_root().join(member)
    }
    pub fn etcd_data(&self) -> PathBuf {
        self.dir.join("etcd")
    }
    /// Unix sockets and pgpass files: short paths, owned by the user the lab runs as.
    pub fn run(&self) -> PathBuf {
        self.dir.join("run")
    }
    /// The WAL archive of a lab started with `--archive`.
    /// The lab's pgBackRest repository, config and logs (`lab backup`).
    pub fn pgbackrest(&self) -> PathBuf {
        self.dir.join("pgbackrest")
    }

    pub fn archive(&self) -> PathBuf {
        self.dir.join("archive")
    }
}

/// `DIR/lab.json`: everything `status`, `break`, `repair` and `down` need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub version: u32,
    pub scope: String,
    pub patroni: PatroniVersion,
    pub venv: PathBuf,
    /// What each member's Patroni runs under.
    #[serde(default)]
    pub init: Init,
    pub etcd: EtcdState,
    pub members: Vec<MemberState>,
    /// PIDs a fault SIGSTOPped; `repair` and `down` SIGCONT them.
    #[serde(default)]
    pub stopped: Vec<StoppedPid>,
    /// Members whose Patroni a fault killed; `repair` restarts them.
    #[serde(default)]
    pub killed: Vec<String>,
    /// Faults made in PostgreSQL or the DCS config (`archive`, `slot`); `repair` undoes them.
    #[serde(default)]
    pub pg_faults: Vec<String>,
    /// Processes a fault started (the connection holder); `repair` and `down` stop them.
    #[serde(default)]
    pub holders: Vec<u32>,
    /// This lab is a standby cluster of another (`lab up --standby-of DIR`).
    #[serde(default)]
    pub standby_of: Option<StandbyOf>,
    /// Where every member archives its WAL (`lab up --archive`).
    #[serde(default)]
    pub archive: Option<PathBuf>,
}

/// Where a standby lab replicates from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StandbyOf {
    /// The source lab's folder.
    pub dir: PathBuf,
    /// The permanent slot on the source (streaming mode; `None` in archive mode).
    pub slot: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EtcdState {
    pub pid: Option<u32>,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberState {
    pub name: String,
    pub rest_port: u16,
    pub pg_port: u16,
    /// The Patroni process (it owns the member's postmaster), as the host sees it.
    pub pid: Option<u32>,
    /// With `--init` other than `none`: the host PID of the member's namespace init (PID 1
    /// inside). SIGKILL on it ends the whole namespace, as deleting a pod does.
    #[serde(default)]
    pub init_pid: Option<u32>,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoppedPid {
    pub pid: u32,
    pub member: String,
    /// What was stopped: `walreceiver` or `startup`.
    pub process: String,
}

impl MemberState {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rest_port)
    }

    /// The running postmaster's host PID. `postmaster.pid` holds the PID PostgreSQL saw, which
    /// inside a PID namespace is the namespace's number, so it is translated there.
    pub fn postmaster(&self) -> Option<u32> {
        let pid = process::postmaster_pid(&self.data_dir)?;
        let host = match self.init_pid {
            None => pid,
            Some(init) => process::host_pid(init, pid)?,
        };
        process::alive(host, "postgres").then_some(host)
    }

    /// Zombies in the member's PID namespace (`(host PID, command)`), when it has one.
    pub fn zombies(&self) -> Vec<(u32, String)> {
        match self.init_pid {
            Some(init) if process::alive(init, &self.config.to_string_lossy()) => {
                process::zombies_under(init)
            }
            _ => Vec::new(),
        }
    }
}

impl LabState {
    /// Reads `DIR/lab.json`; a missing file is a clear "no lab here".
    pub fn load(paths: &LabPaths) -> Result<Self> {
        let path = paths.state();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no lab in {} (start one with `pgpatrol lab up --dir {}`)",
                paths.dir.display(),
                paths.dir.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a lab state file", path.display()))
    }

    /// Writes the state atomically (write + rename), so a crash never leaves half a file.
    pub fn save(&self, paths: &LabPaths) -> Result<()> {
        let path = paths.state();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).context("cannot encode the lab state")?;
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(MemberState::url).collect()
    }

    pub fn member(&self, name: &str) -> Result<&MemberState> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .with_context(|| {
                let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
                format!(
                    "no member {name:?} in the lab (members: {})",
                    names.join(", ")
                )
            })
    }

    /// True when any process the lab started is still running.
    pub fn any_alive(&self) -> bool {
        let patroni = self
            .members
            .iter()
            .any(|m| m.pid.is_some_and(|p| process::alive(p, "patroni")));
        let postmaster = self.members.iter().any(|m| m.postmaster().is_some());
        let etcd = self.etcd.pid.is_some_and(|p| process::alive(p, "etcd"));
        patroni || postmaster || etcd
    }

    /// The `export` line that points pgpatrol and patronictl at this lab.
    pub fn export_line(&self, paths: &LabPaths) -> String {
        let first = self
            .members
            .first()
            .map(|m| m.config.display().to_string())
            .unwrap_or_default();
        format!(
            "export PATRONI_URL={} PATRONI_RESTAPI_USERNAME={REST_USER} PGPATROL_PASSWORD_FILE={} PATRONICTL_CONFIG_FILE={}",
            self.urls().join(","),
            paths.password().display(),
            first
        )
    }
}

fn http() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("cannot build an HTTP client")
}

async fn get_json(url: &str) -> Result<Value> {
    let resp = http()?
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.text().await.with_context(|| format!("GET {url}"))?;
    if !status.is_success() {
        bail!("GET {url}: HTTP {status}: {}", crate::text::one_line(&body));
    }
    serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON"))
}

/// A REST source for the lab's members (the same client every command uses).
fn source(urls: &[String]) -> Result<ClusterSource> {
    let http = Http::new(&HttpOptions {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(2),
        ..HttpOptions::default()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    ClusterSource::new(http, urls).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The cluster from the first member that answers, in the core model (on Patroni < 4.1 with
/// replay lag from each member's own `/patroni`, as every command reads it).
pub async fn any_cluster(state: &LabState) -> Result<Cluster> {
    if state.members.is_empty() {
        bail!("the lab has no members");
    }
    let snap = source(&state.urls())?
        .snapshot(Detail::Lag)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(snap.cluster)
}

/// What the member at `url` says of itself (`GET /patroni`).
pub async fn member_status(url: &str) -> Result<MemberStatus> {
    source(&[url.to_string()])?
        .member_status(url)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// True when etcd answers `/health` with `"health":"true"`.
pub async fn etcd_healthy(client_port: u16) -> bool {
    let url = format!("http://127.0.0.1:{client_port}/health");
    matches!(get_json(&url).await, Ok(v) if v["health"] == "true")
}

/// Checks the cluster: exactly one running leader, `members - 1` replicas in the version's
/// streaming state, and (when `max_lag` is set) every replica's receive and replay lag known
/// and at most `max_lag` bytes. `Err` carries a one-line reason.
pub fn check_health(
    cluster: &Cluster,
    members: usize,
    max_lag: Option<u64>,
    streaming_state: &str,
) -> Result<(), String> {
    let mut leaders = 0;
    let mut streaming = 0;
    let mut problems = Vec::new();
    for m in &cluster.members {
        if m.role.is_leader() {
            // A standby leader shows its replication state (`streaming`) in /cluster.
            let running = m.state == State::Running
                || (m.role == pgpatrol_core::Role::StandbyLeader && m.state.is_healthy_replica());
            if running {
                leaders += 1;
            } else {
                problems.push(format!("leader {} is {}", m.name, m.state));
            }
            continue;
        }
        // An archive-only replica (`lab up --nostream`) is in archive recovery, receives
        // nothing (its receive lag is unknown) and replays a segment at a time.
        let archive_only = m.nostream() && m.state.as_str() == "in archive recovery";
        if m.state.as_str() == streaming_state || archive_only {
            streaming += 1;
        } else {
            problems.push(format!("{} is {}/{}", m.name, m.role, m.state));
        }
        if let Some(max) = max_lag {
            let kinds: &[LagKind] = if archive_only {
                &[LagKind::Replay]
            } else {
                &[LagKind::Receive, LagKind::Replay]
            };
            for &kind in kinds {
                match m.lag(kind) {
                    Some(Lag::Bytes(b)) if b <= max => {}
                    Some(lag) => problems.push(format!("{} {} lag {lag}", m.name, kind.as_str())),
                    None => {}
                }
            }
        }
    }
    if cluster.members.len() != members {
        problems.insert(
            0,
            format!("{} of {members} members in /cluster", cluster.members.len()),
        );
    }
    if leaders != 1 {
        problems.insert(0, format!("{leaders} running leaders"));
    }
    if problems.is_empty() && streaming + 1 == members {
        Ok(())
    } else {
        Err(problems.join(", "))
    }
}

/// The last `n` lines of a file ("" when it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_cluster_needs_one_leader_and_streaming_replicas() {
        use pgpatrol_core::fixtures::ClusterBuilder;
        let ok = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(0)
            .replica("pg2")
            .lag_mb(0)
            .build();
        assert_eq!(
            check_health(&ok, 3, Some(HEALTHY_MAX_LAG), "streaming"),
            Ok(())
        );
        assert!(check_health(&ok, 2, None, "streaming").is_err());

        let lagging = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(64)
            .build();
        assert!(check_health(&lagging, 2, None, "streaming").is_ok());
        // Patroni 2.1 says `running` for a streaming replica.
        assert!(check_health(&lagging, 2, None, "running").is_err());
        let why = check_health(&lagging, 2, Some(HEALTHY_MAX_LAG), "streaming").unwrap_err();
        assert!(why.contains("pg1 receive lag 67108864"), "{why}");

        let unknown = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .unknown_lag()
            .build();
        let why = check_health(&unknown, 2, Some(HEALTHY_MAX_LAG), "streaming").unwrap_err();
        assert!(why.contains("pg1 receive lag unknown"), "{why}");

        let two_running = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .state(State::Running)
            .build();
        assert!(check_health(&two_running, 2, None, "streaming")
            .unwrap_err()
            .contains("pg1 is replica/running"));

        // `lab up --nostream pg1`: in archive recovery, receiving nothing, is healthy; the
        // same state without the tag is not.
        let mut archive_only = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(0)
            .state(State::InArchiveRecovery)
            .tag("nostream", serde_json::json!(true))
            .build();
        archive_only.members[1].receive_lag = Some(Lag::Unknown);
        assert_eq!(
            check_health(&archive_only, 2, Some(HEALTHY_MAX_LAG), "streaming"),
            Ok(())
        );
        archive_only.members[1].tags.clear();
        assert!(check_health(&archive_only, 2, Some(HEALTHY_MAX_LAG), "streaming").is_err());
    }

    #[test]
    fn export_line_lists_every_member() {
        let paths = LabPaths::new(Path::new("/tmp/x")).unwrap();
        let member = |i: u16| MemberState {
            name: format!("pg{i}"),
            rest_port: 8000 + i,
            pg_port: 5000 + i,
            pid: None,
            init_pid: None,
            data_dir: paths.data(&format!("pg{i}")),
            config: paths.config(&format!("pg{i}")),
            log: paths.log(&format!("pg{i}")),
        };
        let state = LabState {
            version: STATE_VERSION,
            scope: "demo".into(),
            patroni: PatroniVersion::V4_1,
            venv: "/v".into(),
            init: Init::None,
            etcd: EtcdState {
                pid: None,
                client_port: 1,
                peer_port: 2,
                data_dir: paths.etcd_data(),
                log: paths.log("etcd"),
            },
            members: vec![member(0), member(1)],
            stopped: vec![],
            killed: vec![],
            pg_faults: Vec::new(),
            holders: Vec::new(),
            standby_of: None,
            archive: None,
        };
        assert_eq!(
            state.export_line(&paths),
            "export PATRONI_URL=http://127.0.0.1:8000,http://127.0.0.1:8001 PATRONI_RESTAPI_USERNAME=patrol \
             PGPATROL_PASSWORD_FILE=/tmp/x/restapi.password PATRONICTL_CONFIG_FILE=/tmp/x/config/pg0.yml"
        );
    }
}
