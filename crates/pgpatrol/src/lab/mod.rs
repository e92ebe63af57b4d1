//! The local lab: a real Patroni cluster (PostgreSQL 15 + etcd + Patroni) on loopback.
//!
//! Everything about one lab lives in one folder (`DIR`): generated configs, logs, data,
//! sockets, the REST API password and `lab.json`, the state file that records every PID the
//! lab started so `lab down` can always clean up, even after a failed `lab up`.
//!
//! ```text
//! DIR/lab.json            state (this module)     DIR/config/pgN.yml   config.rs
//! DIR/restapi.password    0600, never printed     DIR/logs/*.log       os.rs (spawn)
//! DIR/data/pgN, DIR/etcd  data (removed by down)  DIR/run              sockets, pgpass
//! DIR/archive             WAL (`up --archive`)    DIR/pgbackrest       backup.rs
//! ```
//!
//! The modules, each using only those above it (the `layering` test checks it):
//!
//! ```text
//! os.rs       processes and files: RunAs, spawn, alive, signal, /proc; knows nothing of Patroni
//! net.rs      `--netns`: the bridge, a namespace and address per host, cuts, a slow DCS link
//! config.rs   each member's patroni.yml, ports, secrets
//! cluster.rs  reading a running lab: /cluster, /patroni, etcd health, check_health,
//!             wait_healthy, psql, leader, reported_lag, PATCH /config, log tails
//! down.rs     stopping and cleaning up: `lab down` (teardown), a standby's source slot,
//!             remove_member
//! up.rs       starting: `lab up`, etcd, members under --init, add_member, find_venv
//! faults.rs   `lab break ...` and `lab repair`
//! backup.rs   `lab backup`: a pgBackRest repository
//! ```

pub mod backup;
pub mod cluster;
pub mod config;
pub mod down;
pub mod faults;
pub mod net;
pub mod os;
pub mod up;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

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
    /// The lab's pgBackRest repository, config and logs (`lab backup`).
    pub fn pgbackrest(&self) -> PathBuf {
        self.dir.join("pgbackrest")
    }
    /// The WAL archive of a lab started with `--archive`.
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
    /// `lab up --netns`: the lab's bridge and namespaces; `None` on loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<net::Net>,
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
    /// Its namespace and address with `--netns`; `None`: 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<net::NetHost>,
    /// When the lab last started etcd (seconds since the epoch, rounded down). Until each
    /// member's Patroni says it reached the DCS since then, the keys etcd serves may be the
    /// ones written before it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
}

impl EtcdState {
    /// The address etcd listens on.
    pub fn addr(&self) -> Ipv4Addr {
        self.net.as_ref().map_or(Ipv4Addr::LOCALHOST, |h| h.addr)
    }

    /// `http://ADDR:PORT`, its client URL.
    pub fn client_url(&self) -> String {
        format!("http://{}:{}", self.addr(), self.client_port)
    }
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
    /// Its namespace and address with `--netns`; `None`: 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<net::NetHost>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoppedPid {
    pub pid: u32,
    pub member: String,
    /// What was stopped: `walreceiver` or `startup`.
    pub process: String,
}

impl MemberState {
    /// The address its REST API and PostgreSQL listen on.
    pub fn addr(&self) -> Ipv4Addr {
        self.net.as_ref().map_or(Ipv4Addr::LOCALHOST, |h| h.addr)
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.addr(), self.rest_port)
    }

    /// The running postmaster's host PID. `postmaster.pid` holds the PID PostgreSQL saw, which
    /// inside a PID namespace is the namespace's number, so it is translated there.
    pub fn postmaster(&self) -> Option<u32> {
        let pid = os::postmaster_pid(&self.data_dir)?;
        let host = match self.init_pid {
            None => pid,
            Some(init) => os::host_pid(init, pid)?,
        };
        os::alive(host, "postgres").then_some(host)
    }

    /// Zombies in the member's PID namespace (`(host PID, command)`), when it has one.
    pub fn zombies(&self) -> Vec<(u32, String)> {
        match self.init_pid {
            Some(init) if os::alive(init, &self.config.to_string_lossy()) => {
                os::zombies_under(init)
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
            .any(|m| m.pid.is_some_and(|p| os::alive(p, "patroni")));
        let postmaster = self.members.iter().any(|m| m.postmaster().is_some());
        let etcd = self.etcd.pid.is_some_and(|p| os::alive(p, "etcd"));
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

#[cfg(test)]
mod tests {
    use super::*;

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
            net: None,
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
                net: None,
                started: None,
            },
            members: vec![member(0), member(1)],
            stopped: vec![],
            killed: vec![],
            pg_faults: Vec::new(),
            holders: Vec::new(),
            standby_of: None,
            archive: None,
            net: None,
        };
        assert_eq!(
            state.export_line(&paths),
            "export PATRONI_URL=http://127.0.0.1:8000,http://127.0.0.1:8001 PATRONI_RESTAPI_USERNAME=patrol \
             PGPATROL_PASSWORD_FILE=/tmp/x/restapi.password PATRONICTL_CONFIG_FILE=/tmp/x/config/pg0.yml"
        );
    }
}
