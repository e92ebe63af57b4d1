//! The test harness: one real lab per run, shared by every test through [`Lab`].
//!
//! A topic file exports `pub fn tests() -> Vec<Test>`; a [`Test`] is a name and a
//! `fn(&Lab)` that panics on failure (use `assert!`). Tests run one at a time; before each,
//! the harness checks the lab is healthy and runs `pgpatrol lab repair` if it is not, so a
//! test may leave a fault behind.
//!
//! Environment:
//! - `PGPATROL_IT_PATRONI`: `4.1` (default) or `3.0`.
//! - `PGPATROL_IT_DIR`: where labs live (default `<target>/tmp/it-<ver>`, or a folder under
//!   /tmp when the postgres user cannot reach the target folder).

#![allow(dead_code)] // Not every topic uses every helper.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::sync::Arc;

use libtest_mimic::{Arguments, Trial};
use pgpatrol::lab::faults::{self, LagKind};
use pgpatrol::lab::{self as lablib, LabPaths, LabState};
use serde_json::Value;

/// One integration test: a name and a body that panics on failure.
pub struct Test {
    pub name: &'static str,
    pub run: fn(&Lab),
}

/// A topic: its name (the test-name prefix) and its list of tests.
pub type Topic = (&'static str, fn() -> Vec<Test>);

type TestFn = fn(&Lab);

/// `tests![f, g]`: a `Vec<Test>` with each test named after its function.
macro_rules! tests {
    ($($f:ident),* $(,)?) => {
        vec![$($crate::harness::test(stringify!($f), $f)),*]
    };
}

/// One test by hand (topic files usually use `tests![...]`).
pub fn test(name: &'static str, run: fn(&Lab)) -> Test {
    Test { name, run }
}

pub const MB: u64 = 1024 * 1024;

/// The path of the built `pgpatrol` binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pgpatrol")
}

/// The Patroni line under test (`lab up --patroni`): "4.1" (default), "3.0", or a
/// compatibility line: "4.0", "3.3", "2.1", "debian".
pub fn patroni_version() -> String {
    std::env::var("PGPATROL_IT_PATRONI").unwrap_or_else(|_| "4.1".into())
}

/// True for the lines the whole suite runs on (4.1 and 3.0); the others run the `compat`
/// topic only.
pub fn full_suite() -> bool {
    matches!(patroni_version().as_str(), "4.1" | "3.0")
}

/// The folder holding this run's labs: `main` (the shared lab) and any a test starts.
pub fn it_root() -> PathBuf {
    if let Ok(dir) = std::env::var("PGPATROL_IT_DIR") {
        return PathBuf::from(dir);
    }
    let ver = patroni_version();
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if reachable_by_others(&target) {
        target.join(format!("it-{ver}"))
    } else {
        // A checkout under /root (mode 700): the postgres user could not reach it.
        std::env::temp_dir().join(format!("pgpatrol-it-{ver}"))
    }
}

fn reachable_by_others(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors()
        .all(|d| std::fs::metadata(d).map_or(true, |m| m.permissions().mode() & 0o001 != 0))
}

/// Runs the CLI and returns its output (never panics).
pub fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("PGPATROL_LAB_DIR")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin()))
}

/// Panics with the command's output unless it exited 0; returns stdout.
pub fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `lab down` on every lab folder under `root` (leftovers of an aborted run included).
pub fn down_all(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for dir in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if dir.join("lab.json").exists() {
            let d = dir.to_string_lossy().into_owned();
            let out = run(&["lab", "down", "--dir", &d]);
            if !out.status.success() {
                eprintln!("harness: lab down --dir {d}: {}", stderr(&out).trim());
            }
        }
    }
}

/// A start port where `count` consecutive ports are free now (for `--port-base` tests).
pub fn free_port_base(count: u16) -> u16 {
    let seed = (std::process::id() % 1000) as u16;
    (0..2000)
        .map(|i| 20000 + (seed * 20 + i * 20) % 40000)
        .find(|&base| {
            (base..base + count).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        })
        .expect("no free port range found")
}

/// The lab every test shares.
pub struct Lab {
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Lab {
    /// Brings the shared lab up in `<it_root>/main` (after cleaning leftovers).
    fn up() -> Result<Lab, String> {
        let root = it_root();
        down_all(&root);
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        let dir = root.join("main");
        let d = dir.to_string_lossy().into_owned();
        let ver = patroni_version();
        let t0 = std::time::Instant::now();
        let out = run(&[
            "lab",
            "up",
            "--dir",
            &d,
            "--patroni",
            &ver,
            "--timeout",
            "120s",
        ]);
        if !out.status.success() {
            return Err(format!("lab up failed: {}", stderr(&out).trim()));
        }
        eprintln!(
            "harness: lab up (Patroni {ver}) in {} took {:.1} s",
            dir.display(),
            t0.elapsed().as_secs_f64()
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Lab { dir, rt })
    }

    /// The lab's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lab's state file, read afresh (PIDs change after repairs).
    pub fn state(&self) -> LabState {
        let paths = LabPaths::new(&self.dir).expect("lab paths");
        LabState::load(&paths).expect("lab.json")
    }

    /// REST API base URLs, one per member.
    pub fn urls(&self) -> Vec<String> {
        self.state().urls()
    }

    /// Member names: pg0, pg1, ...
    pub fn members(&self) -> Vec<String> {
        self.state()
            .members
            .iter()
            .map(|m| m.name.clone())
            .collect()
    }

    /// The current leader per /cluster.
    pub fn leader(&self) -> String {
        self.leader_now().expect("the cluster has a leader")
    }

    /// The leader per /cluster, or `None` mid-switchover (no member runs as leader).
    pub fn leader_now(&self) -> Option<String> {
        self.cluster_json()["members"]
            .as_array()
            .and_then(|ms| {
                ms.iter().find(|m| {
                    m["role"]
                        .as_str()
                        .is_some_and(|r| pgpatrol_core::Role::parse(r).is_leader())
                })
            })
            .and_then(|m| m["name"].as_str().map(str::to_owned))
    }

    /// A replica's name: `pg1` when it is a replica, else the first replica.
    pub fn replica(&self) -> String {
        let leader = self.leader();
        let members = self.members();
        if leader != "pg1" && members.iter().any(|m| m == "pg1") {
            return "pg1".into();
        }
        members
            .into_iter()
            .find(|m| *m != leader)
            .expect("a replica")
    }

    /// Patroni's GET /cluster from the first member that answers, as it came (the tests
    /// check the wire; the product reads it through `source::rest` only).
    pub fn cluster_json(&self) -> Value {
        for url in self.urls() {
            let addr = url.trim_start_matches("http://").to_string();
            if std::net::TcpStream::connect(&addr).is_err() {
                continue;
            }
            let (status, body) = crate::util::http("GET", &format!("{url}/cluster"), None);
            if let (200, Ok(v)) = (status, serde_json::from_str(&body)) {
                return v;
            }
        }
        panic!("no member of the lab answers GET /cluster")
    }

    /// One member's entry in /cluster (`Value::Null` when absent).
    pub fn member_json(&self, name: &str) -> Value {
        self.cluster_json()["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    /// Replay lag of `member` in bytes as Patroni reports it (computed from /patroni on 3.0).
    pub fn replay_lag(&self, member: &str) -> u64 {
        let state = self.state();
        let m = state.member(member).expect("member").clone();
        self.rt
            .block_on(faults::reported_lag(&state, &m, LagKind::Replay))
            .expect("replay lag")
            .expect("a numeric replay lag")
    }

    /// Runs `pgpatrol ARGS` pointed at this lab (PATRONI_URL, PATRONI_RESTAPI_USERNAME,
    /// PGPATROL_PASSWORD_FILE, PATRONICTL_CONFIG_FILE set). Does not check the exit code.
    pub fn pgpatrol(&self, args: &[&str]) -> Output {
        let state = self.state();
        let paths = LabPaths::new(&self.dir).expect("lab paths");
        Command::new(bin())
            .args(args)
            .env("PATRONI_URL", state.urls().join(","))
            .env("PATRONI_RESTAPI_USERNAME", lablib::REST_USER)
            .env("PGPATROL_PASSWORD_FILE", paths.password())
            .env("PATRONICTL_CONFIG_FILE", paths.config("pg0"))
            .env("PGPATROL_LAB_DIR", &self.dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin()))
    }

    /// Runs `pgpatrol lab ARGS --dir <this lab>`.
    pub fn lab(&self, args: &[&str]) -> Output {
        let mut all = vec!["lab"];
        all.extend_from_slice(args);
        let d = self.dir.to_string_lossy().into_owned();
        all.extend(["--dir", d.as_str()]);
        run(&all)
    }

    /// `lab break lag`: `member` ≥ `mb` MB behind (walreceiver stopped; still "streaming").
    pub fn break_lag(&self, member: &str, mb: u64) {
        let said = ok(
            "lab break lag",
            &self.lab(&["break", "lag", "--member", member, "--mb", &mb.to_string()]),
        );
        eprintln!("harness: {}", said.trim());
    }

    /// `lab break replay`: `member` ≥ `mb` MB of replay lag (startup process stopped).
    pub fn break_replay(&self, member: &str, mb: u64) {
        ok(
            "lab break replay",
            &self.lab(&[
                "break",
                "replay",
                "--member",
                member,
                "--mb",
                &mb.to_string(),
            ]),
        );
    }

    /// `lab break crash-leader`: kill -9 the leader's Patroni and postmaster.
    pub fn crash_leader(&self) {
        ok(
            "lab break crash-leader",
            &self.lab(&["break", "crash-leader"]),
        );
    }

    /// `lab repair`: undo every fault and wait until healthy.
    pub fn repair(&self) {
        ok("lab repair", &self.lab(&["repair"]));
    }

    /// True when `lab status` says healthy.
    pub fn healthy(&self) -> bool {
        self.lab(&["status"]).status.success()
    }

    /// Runs SQL on the leader as the superuser; returns psql's unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        ok("lab psql", &self.lab(&["psql", "-c", sql]))
            .trim()
            .to_owned()
    }

    /// Runs the venv's `patronictl -c <pg0's config> ARGS`.
    pub fn patronictl(&self, args: &[&str]) -> Output {
        let state = self.state();
        let paths = LabPaths::new(&self.dir).expect("lab paths");
        Command::new(state.venv.join("bin/patronictl"))
            .arg("-c")
            .arg(paths.config("pg0"))
            .args(args)
            .output()
            .expect("cannot run patronictl")
    }

    /// Before each test: a healthy lab, repaired if a previous test left a fault.
    fn baseline(&self) -> Result<(), String> {
        if self.healthy() {
            return Ok(());
        }
        let out = self.lab(&["repair"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "the lab is not healthy and `lab repair` failed: {}",
                stderr(&out).trim()
            ))
        }
    }

    /// After a failed test: what Patroni itself logged lately, for the CI log.
    fn dump_logs(&self) {
        let Ok(paths) = LabPaths::new(&self.dir) else {
            return;
        };
        for m in &self.state().members {
            eprintln!(
                "---- harness: last lines of {}'s Patroni log ----\n{}",
                m.name,
                pgpatrol::lab::tail(&paths.log(&m.name), 25)
            );
        }
    }

    fn down(&self) {
        down_all(&it_root());
    }
}

/// Runs every topic's tests against one lab; always tears the lab down.
pub fn main(topics: &[Topic]) -> ExitCode {
    let mut args = Arguments::from_args();
    // One lab, one test at a time: faults are global to the cluster.
    args.test_threads = Some(1);
    // PGPATROL_IT_TOPICS=read,heal,...: only those topics (scripts/test runs the
    // version-sensitive ones on the second full line).
    let only: Option<Vec<String>> = std::env::var("PGPATROL_IT_TOPICS").ok().map(|s| {
        s.split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    });
    if let Some(only) = &only {
        if let Some(bad) = only.iter().find(|t| !topics.iter().any(|(n, _)| n == t)) {
            let names: Vec<&str> = topics.iter().map(|(n, _)| *n).collect();
            eprintln!(
                "harness: PGPATROL_IT_TOPICS names {bad:?}, which is not a topic here ({})",
                names.join(", ")
            );
            return ExitCode::FAILURE;
        }
    }
    let tests: Vec<(String, TestFn)> = topics
        .iter()
        .filter(|(topic, _)| only.as_ref().is_none_or(|o| o.iter().any(|t| t == topic)))
        .flat_map(|(topic, tests)| {
            tests()
                .into_iter()
                .map(move |t| (format!("{topic}::{}", t.name), t.run))
        })
        .collect();
    if args.list {
        let trials = tests
            .into_iter()
            .map(|(n, _)| Trial::test(n, || Ok(())))
            .collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }
    let lab = match Lab::up() {
        Ok(lab) => Arc::new(lab),
        Err(e) => {
            eprintln!("harness: {e}");
            down_all(&it_root());
            return ExitCode::FAILURE;
        }
    };
    let trials = tests
        .into_iter()
        .map(|(name, body)| {
            let lab = Arc::clone(&lab);
            Trial::test(name, move || {
                lab.baseline()?;
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&lab)));
                if let Err(panic) = run {
                    lab.dump_logs();
                    std::panic::resume_unwind(panic);
                }
                Ok(())
            })
        })
        .collect();
    // libtest-mimic catches panics in tests, so this always returns and the lab goes down.
    let conclusion = libtest_mimic::run(&args, trials);
    let t0 = std::time::Instant::now();
    lab.down();
    eprintln!("harness: lab down took {:.1} s", t0.elapsed().as_secs_f64());
    conclusion.exit_code()
}
