//! The test harness: a pool of real labs, each lent to one test at a time through [`Lab`].
//!
//! A topic file exports `pub fn tests() -> Vec<Test>`; a [`Test`] is a name and a
//! `fn(&Lab)` that panics on failure (use `assert!`). Independent tests run at once, up to
//! `PGPATROL_IT_JOBS` (default [`DEFAULT_JOBS`]), each on a lab of its own taken from the
//! pool: a lab comes up when a test needs one and none is free, and serves the next test
//! when this one ends. Before each test the harness checks its lab is healthy and runs
//! `pgpatrol lab repair` if it is not (and brings a fresh lab up in its place when repair
//! fails), so a test may leave a fault behind. The tests in [`ALONE`] run after the others,
//! one at a time with nothing else running.
//!
//! Every port a test or lab listens on comes from [`ports`]: blocks handed out once each,
//! below the kernel's ephemeral range and in a range of their own per Patroni line, so two
//! tests (or two lines run at once by scripts/test) never race for one.
//!
//! Environment:
//! - `PGPATROL_IT_PATRONI`: `4.1` (default) or `3.0`, or a compatibility line.
//! - `PGPATROL_IT_JOBS`: how many tests run at once (1 runs them one after another).
//! - `PGPATROL_IT_DIR`: where labs live (default `<target>/tmp/it-<ver>`, or a folder under
//!   /tmp when the postgres user cannot reach the target folder).

#![allow(dead_code)] // Not every topic uses every helper.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use libtest_mimic::{Arguments, Trial};
use pgpatrol::lab::cluster;
use pgpatrol::lab::faults::LagKind;
use pgpatrol::lab::{self as lablib, LabPaths, LabState};
use serde_json::Value;

/// One integration test: a name and a body that panics on failure.
pub struct Test {
    pub name: &'static str,
    pub run: Body,
}

/// What a test runs on: a lab of the pool, or nothing (a process test that starts what it
/// needs itself, such as `supervise` in a PID namespace).
#[derive(Clone, Copy)]
pub enum Body {
    Lab(fn(&Lab)),
    /// A lab whose etcd and members each have a host of their own (`lab up --netns`), for
    /// network faults; taken from a pool of its own.
    NetLab(fn(&Lab)),
    Bare(fn()),
}

/// A topic: its name (the test-name prefix) and its list of tests.
pub type Topic = (&'static str, fn() -> Vec<Test>);

type TestFn = Body;

/// `tests![f, g]`: a `Vec<Test>` with each test named after its function.
macro_rules! tests {
    ($($f:ident),* $(,)?) => {
        vec![$($crate::harness::test(stringify!($f), $f)),*]
    };
}

/// One test by hand (topic files usually use `tests![...]`).
pub fn test(name: &'static str, run: fn(&Lab)) -> Test {
    Test {
        name,
        run: Body::Lab(run),
    }
}

/// A test on a `--netns` lab.
pub fn on_net(name: &'static str, run: fn(&Lab)) -> Test {
    Test {
        name,
        run: Body::NetLab(run),
    }
}

/// A test that needs no lab.
pub fn bare(name: &'static str, run: fn()) -> Test {
    Test {
        name,
        run: Body::Bare(run),
    }
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

/// Runs the CLI and returns its output (never panics). A `lab up` without `--port-base`
/// gets ports of its own from [`ports`], so labs that tests bring up never race for one.
pub fn run(args: &[&str]) -> Output {
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    if args.len() >= 2
        && args[0] == "lab"
        && args[1] == "up"
        && !args.iter().any(|a| a == "--port-base")
    {
        args.extend(["--port-base".to_owned(), ports(LAB_PORTS).to_string()]);
    }
    // A lab's processes outlive the test: they keep the machine's temporary folder.
    let mut cmd = if args.first().is_some_and(|a| a == "lab") {
        Command::new(bin())
    } else {
        pgpatrol_cmd()
    };
    cmd.args(&args)
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

/// The port range of this run: below the kernel's ephemeral range (32768 and up by default,
/// where `bind(0)` and outgoing connections draw from), one range per Patroni line so the
/// lines can run at the same time.
fn port_range() -> (u32, u32) {
    match patroni_version().as_str() {
        "4.1" => (10000, 14000),
        "3.0" => (14000, 18000),
        "4.0" => (18000, 19500),
        "3.3" => (19500, 21000),
        "2.1" => (21000, 22500),
        _ => (22500, 24000),
    }
}

/// `count` consecutive ports for this caller alone: a block no other caller of this run gets,
/// and that nothing on the machine listens on now. Returns the first port.
pub fn ports(count: u16) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (lo, hi) = port_range();
    loop {
        let base = lo + NEXT.fetch_add(u32::from(count), Ordering::SeqCst);
        assert!(
            base + u32::from(count) <= hi,
            "this run used every port of {lo}..{hi} (harness::ports)"
        );
        let base = base as u16;
        if (base..base + count).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
}

/// One port of this caller's own (see [`ports`]).
pub fn port() -> u16 {
    ports(1)
}

/// A start port where `count` consecutive ports are free, for `--port-base` (see [`ports`]).
pub fn free_port_base(count: u16) -> u16 {
    ports(count)
}

/// The ports a lab of `members` members takes with `--port-base` (etcd's two, two per member),
/// with room for a standby lab's members.
pub const LAB_PORTS: u16 = 10;

thread_local! {
    /// The test this thread runs, for [`say`] and [`test_tmp`] (empty between tests).
    static CURRENT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The running test's own temporary folder (`<it_root>/tmp/<test>`), created on first use.
/// [`pgpatrol_cmd`] gives it to pgpatrol as `TMPDIR`, so what pgpatrol keeps in the temporary
/// folder by default (a watcher's heal lock, say) is never shared by two tests at once.
pub fn test_tmp() -> PathBuf {
    let dir = it_root().join("tmp").join(current().replace("::", "."));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// `pgpatrol` as a test runs it: with the test's own `TMPDIR` ([`test_tmp`]).
pub fn pgpatrol_cmd() -> Command {
    let mut c = Command::new(bin());
    c.env("TMPDIR", test_tmp());
    c
}

/// The name of the test running on this thread (`harness` outside a test).
pub fn current() -> String {
    CURRENT.with(|c| {
        let c = c.borrow();
        if c.is_empty() {
            "harness".to_owned()
        } else {
            c.clone()
        }
    })
}

/// Prints one line on stderr behind the running test's name, so lines of tests that run at
/// once can be told apart.
pub fn say(line: &str) {
    let who = current();
    let mut out = String::new();
    for l in line.lines() {
        out.push_str(&format!("[{who}] {l}\n"));
    }
    eprint!("{out}");
}

/// `say!("...", args)`: [`say`] with `format!` arguments.
macro_rules! say {
    ($($arg:tt)*) => { $crate::harness::say(&format!($($arg)*)) };
}

/// A lab of the pool: lent to one test at a time.
pub struct Lab {
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Lab {
    /// Brings a pool lab up in `<it_root>/labN` (`netN` with `--netns`) on ports of its own.
    fn up(n: usize, netns: bool) -> Result<Lab, String> {
        let root = it_root();
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        let dir = root.join(format!("{}{n}", if netns { "net" } else { "lab" }));
        let d = dir.to_string_lossy().into_owned();
        let ver = patroni_version();
        let base = ports(LAB_PORTS).to_string();
        let t0 = std::time::Instant::now();
        let mut args = vec![
            "lab",
            "up",
            "--dir",
            &d,
            "--patroni",
            &ver,
            "--port-base",
            &base,
            "--timeout",
            "120s",
        ];
        if netns {
            args.push("--netns");
        }
        let out = run(&args);
        if !out.status.success() {
            return Err(format!("lab up in {d} failed: {}", stderr(&out).trim()));
        }
        say!(
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

    /// The REST API base URL of `member`.
    pub fn url_of(&self, member: &str) -> String {
        let state = self.state();
        state
            .members
            .iter()
            .zip(state.urls())
            .find(|(m, _)| m.name == member)
            .map(|(_, u)| u)
            .unwrap_or_else(|| panic!("no member {member} in the lab"))
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
    /// check the wire; the product reads it through `source::wire` only).
    /// A member that is being killed or restarted can accept a connection and reset it:
    /// the next member is asked, and the round repeated a few times, before giving up.
    pub fn cluster_json(&self) -> Value {
        let mut last = String::new();
        for round in 0..5 {
            if round > 0 {
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            for url in self.urls() {
                match crate::util::request(
                    "GET",
                    &format!("{url}/cluster"),
                    None,
                    None,
                    std::time::Duration::from_secs(10),
                ) {
                    Ok((200, body)) => match serde_json::from_str(&body) {
                        Ok(v) => return v,
                        Err(e) => last = format!("{url}: {e}"),
                    },
                    Ok((status, body)) => last = format!("{url}: HTTP {status}: {body}"),
                    Err(e) => last = format!("{url}: {e}"),
                }
            }
        }
        panic!("no member of the lab answers GET /cluster (last: {last})")
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
            .block_on(cluster::reported_lag(&state, &m, LagKind::Replay))
            .expect("replay lag")
            .expect("a numeric replay lag")
    }

    /// `pgpatrol` pointed at this lab (PATRONI_URL, PATRONI_RESTAPI_USERNAME,
    /// PGPATROL_PASSWORD_FILE, PATRONICTL_CONFIG_FILE set).
    pub fn command(&self) -> Command {
        let state = self.state();
        let paths = LabPaths::new(&self.dir).expect("lab paths");
        let mut c = pgpatrol_cmd();
        c.env("PATRONI_URL", state.urls().join(","))
            .env("PATRONI_RESTAPI_USERNAME", lablib::REST_USER)
            .env("PGPATROL_PASSWORD_FILE", paths.password())
            .env("PATRONICTL_CONFIG_FILE", paths.config("pg0"))
            .env("PGPATROL_LAB_DIR", &self.dir);
        c
    }

    /// Runs `pgpatrol ARGS` pointed at this lab. Does not check the exit code.
    pub fn pgpatrol(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin()))
    }

    /// As [`Lab::pgpatrol`], through the REST API alone: no patroni.yml, so no PostgreSQL
    /// login and no etcd (a `--url` in ARGS wins over the lab's URLs).
    pub fn pgpatrol_rest_only(&self, args: &[&str]) -> Output {
        self.command()
            .env_remove("PATRONICTL_CONFIG_FILE")
            .args(args)
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
        say!("harness: {}", said.trim());
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
        // A cut or slowed network can leave the members healthy to `lab status`.
        let net_fault = self
            .state()
            .net
            .is_some_and(|n| !n.cuts.is_empty() || n.dcs_kbit.is_some());
        if !net_fault && self.healthy() {
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

    /// After a failed test: what Patroni itself logged lately in this test's lab.
    fn dump_logs(&self) {
        let Ok(paths) = LabPaths::new(&self.dir) else {
            return;
        };
        let Ok(state) = LabState::load(&paths) else {
            return;
        };
        for m in &state.members {
            say!(
                "---- last lines of {}'s Patroni log in {} ----\n{}",
                m.name,
                self.dir.display(),
                pgpatrol::lab::cluster::tail(&paths.log(&m.name), 25)
            );
        }
    }

    fn down(&self) {
        let d = self.dir.to_string_lossy().into_owned();
        let out = run(&["lab", "down", "--dir", &d]);
        if !out.status.success() {
            say!("harness: lab down --dir {d}: {}", stderr(&out).trim());
        }
    }
}

/// How many tests run at once unless `PGPATROL_IT_JOBS` says otherwise: measured on the
/// 2-core CI machine (docs/ARCHITECTURE.md, "Testing").
pub const DEFAULT_JOBS: usize = 4;

/// Tests that run after all others, one at a time with nothing else running, and why.
pub const ALONE: &[(&str, &str)] = &[
    (
        "toolbox::list_watch_in_a_terminal_follows_an_outage_and_a_failover",
        "drives a real terminal and waits on what it redraws",
    ),
    (
        "toolbox::the_debian_package_installs_runs_and_purges_cleanly",
        "installs and purges a system-wide package, its user and its unit",
    ),
    (
        "heal::a_replica_whose_replay_is_paused_is_left_alone",
        "holds a member's Patroni stopped and the cluster's ttl raised while heal runs",
    ),
];

/// The labs of this run. A test takes a free one, or brings a new one up while fewer than
/// `max` exist; it gives it back when it ends. [`ALONE`] tests hold `gate` for writing.
struct Pool {
    state: Mutex<PoolState>,
    all: Mutex<Vec<Arc<Lab>>>,
    ready: Condvar,
    max: usize,
    /// Its labs are `--netns` labs.
    netns: bool,
    gate: RwLock<()>,
}

#[derive(Default)]
struct PoolState {
    /// Labs up and not lent.
    free: Vec<Arc<Lab>>,
    /// Labs up or coming up.
    live: usize,
    /// The number of the next new lab's folder (`labN`), never reused.
    next: usize,
}

impl Pool {
    fn new(max: usize, netns: bool) -> Pool {
        Pool {
            state: Mutex::new(PoolState::default()),
            all: Mutex::new(Vec::new()),
            ready: Condvar::new(),
            max,
            netns,
            gate: RwLock::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One lab fewer: it went down (or never came up), so another may come up.
    fn lost(&self) {
        self.state().live -= 1;
        self.ready.notify_one();
    }

    /// A lab for one test: a free one, a new one, or the next one given back.
    fn take(&self) -> Result<Arc<Lab>, String> {
        let mut st = self.state();
        loop {
            if let Some(lab) = st.free.pop() {
                return Ok(lab);
            }
            if st.live < self.max {
                let n = st.next;
                st.next += 1;
                st.live += 1;
                drop(st);
                return match Lab::up(n, self.netns) {
                    Ok(lab) => Ok(self.keep(lab)),
                    Err(e) => {
                        self.lost();
                        Err(e)
                    }
                };
            }
            st = self.ready.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Records a lab that came up, for the teardown.
    fn keep(&self, lab: Lab) -> Arc<Lab> {
        let lab = Arc::new(lab);
        self.all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&lab));
        lab
    }

    /// Gives a lab back for the next test.
    fn give(&self, lab: Arc<Lab>) {
        self.state().free.push(lab);
        self.ready.notify_one();
    }

    /// Before a test: its lab healthy (repaired), or a fresh lab in its place.
    fn baseline(&self, lab: Arc<Lab>) -> Result<Arc<Lab>, String> {
        let Err(e) = lab.baseline() else {
            return Ok(lab);
        };
        say!("harness: {e}; bringing a fresh lab up in its place");
        lab.down();
        self.all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|l| !Arc::ptr_eq(l, &lab));
        let n = {
            let mut st = self.state();
            st.next += 1;
            st.next - 1
        };
        match Lab::up(n, self.netns) {
            Ok(fresh) => Ok(self.keep(fresh)),
            Err(e2) => {
                self.lost();
                Err(format!("{e}; and then {e2}"))
            }
        }
    }

    /// Runs one test on a lab of the pool: alone (no other test at once) or beside others.
    fn run(&self, name: &str, body: TestFn, alone: bool) -> Result<(), String> {
        let _gate = if alone {
            Err(self.gate.write().unwrap_or_else(|e| e.into_inner()))
        } else {
            Ok(self.gate.read().unwrap_or_else(|e| e.into_inner()))
        };
        CURRENT.with(|c| *c.borrow_mut() = name.to_owned());
        let body = match body {
            Body::Bare(f) => {
                f();
                CURRENT.with(|c| c.borrow_mut().clear());
                return Ok(());
            }
            Body::Lab(f) | Body::NetLab(f) => f,
        };
        let result = self.take().and_then(|lab| {
            let lab = self.baseline(lab)?;
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&lab)));
            if run.is_err() {
                lab.dump_logs();
            }
            self.give(lab);
            match run {
                Ok(()) => Ok(()),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        CURRENT.with(|c| c.borrow_mut().clear());
        result
    }

    fn down(&self) {
        for lab in self.all.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            lab.down();
        }
        down_all(&it_root());
    }
}

/// Holds `<root>/run.lock` for this run, or says who holds it.
fn claim(root: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    use std::io::Write;
    std::fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let path = root.join("run.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let _ = lock.set_len(0);
            let _ = writeln!(&mut *lock, "{}", std::process::id());
            Ok(lock)
        }
        Err(_) => Err(format!(
            "another run of the Patroni {} line (pid {}) uses {}: wait for it, or give this one PGPATROL_IT_DIR of its own",
            patroni_version(),
            std::fs::read_to_string(&path).unwrap_or_default().trim(),
            root.display()
        )),
    }
}

/// How many tests run at once: `PGPATROL_IT_JOBS`, else [`DEFAULT_JOBS`].
fn jobs() -> Result<usize, String> {
    match std::env::var("PGPATROL_IT_JOBS") {
        Err(_) => Ok(DEFAULT_JOBS),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!(
                "PGPATROL_IT_JOBS={v:?}: give how many tests run at once, 1 or more"
            )),
        },
    }
}

/// Runs every topic's tests on a pool of labs; always tears every lab down.
pub fn main(topics: &[Topic]) -> ExitCode {
    let mut args = Arguments::from_args();
    let jobs = match jobs() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("harness: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Each worker thread holds at most one lab, so the pool never needs more than `jobs`.
    args.test_threads = Some(jobs);
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
    let mut tests: Vec<(String, TestFn, bool)> = topics
        .iter()
        .filter(|(topic, _)| only.as_ref().is_none_or(|o| o.iter().any(|t| t == topic)))
        .flat_map(|(topic, tests)| {
            tests().into_iter().map(move |t| {
                let name = format!("{topic}::{}", t.name);
                let alone = ALONE.iter().any(|(n, _)| *n == name);
                (name, t.run, alone)
            })
        })
        .collect();
    // The ALONE tests last: by then the others have finished, and none waits on them.
    tests.sort_by_key(|(_, _, alone)| *alone);
    if args.list {
        let trials = tests
            .into_iter()
            .map(|(n, _, _)| Trial::test(n, || Ok(())))
            .collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }
    let root = it_root();
    // One run per folder: a second run of the same line would take its labs down.
    let _run = match claim(&root) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("harness: {e}");
            return ExitCode::FAILURE;
        }
    };
    down_all(&root);
    eprintln!(
        "harness: Patroni {}, up to {jobs} tests at once, labs in {}",
        patroni_version(),
        root.display()
    );
    let pool = Arc::new(Pool::new(jobs, false));
    // One `--netns` lab, its tests one after another (each repairs it for the next); its
    // gate is the other pool's, so an ALONE test still runs with nothing beside it.
    let net_pool = Arc::new(Pool::new(1, true));
    let trials = tests
        .into_iter()
        .map(|(name, body, alone)| {
            let pool = Arc::clone(&pool);
            let net_pool = Arc::clone(&net_pool);
            let label = name.clone();
            Trial::test(name, move || {
                match body {
                    Body::NetLab(_) => {
                        let _gate = pool.gate.read().unwrap_or_else(|e| e.into_inner());
                        net_pool.run(&label, body, alone)
                    }
                    _ => pool.run(&label, body, alone),
                }
                .map_err(Into::into)
            })
        })
        .collect();
    // libtest-mimic catches panics in tests, so this always returns and the labs go down.
    let conclusion = libtest_mimic::run(&args, trials);
    let t0 = std::time::Instant::now();
    pool.down();
    net_pool.down();
    eprintln!(
        "harness: labs down took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    conclusion.exit_code()
}
