//! Topic `supervise`, its process tests (no lab): `pgpatrol supervise` with real
//! processes, real signals, and real PID namespaces (`unshare --pid --fork --mount-proc`, as
//! root, as CI runs). Each reaping test has a control run under a PID 1 that does not reap,
//! so it cannot pass vacuously.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{bare, Test};

pub fn tests() -> Vec<Test> {
    vec![
        bare(
            "as_pid_1_orphans_that_exit_are_reaped",
            as_pid_1_orphans_that_exit_are_reaped,
        ),
        bare(
            "as_pid_1_signals_from_outside_reach_the_child",
            as_pid_1_signals_from_outside_reach_the_child,
        ),
        bare(
            "the_exit_code_is_the_childs_or_128_plus_the_signal",
            the_exit_code_is_the_childs_or_128_plus_the_signal,
        ),
        bare(
            "a_missing_command_is_one_line_and_exit_2",
            a_missing_command_is_one_line_and_exit_2,
        ),
        bare(
            "after_sigterm_the_grace_period_ends_in_sigkill",
            after_sigterm_the_grace_period_ends_in_sigkill,
        ),
        bare(
            "outside_pid_1_it_becomes_a_subreaper_and_reaps_orphans",
            outside_pid_1_it_becomes_a_subreaper_and_reaps_orphans,
        ),
        bare(
            "with_process_group_signals_reach_the_whole_group",
            with_process_group_signals_reach_the_whole_group,
        ),
    ]
}

const BIN: &str = env!("CARGO_BIN_EXE_pgpatrol");

/// A PID 1 that waits for its own child only (as `lab up --init no-reap` uses).
const NO_REAP: &str = "import os, sys\npid = os.fork()\nif pid == 0:\n    os.execvp(sys.argv[1], sys.argv[1:])\nos.waitpid(pid, 0)\n";

/// Two double-forks: each `sleep 0.3` is orphaned, re-parented to PID 1, and exits. After a
/// second, the namespace's process table is printed as `PID STAT COMMAND` lines.
const ORPHANS: &str =
    "sh -c 'sleep 0.3 & exit 0'; sh -c 'sleep 0.3 & exit 0'; sleep 1.2; ps -eo pid=,stat=,comm=";

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("pgpatrol-supervise-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `unshare --pid --fork --mount-proc ARGS`: ARGS[0] is PID 1 of a new namespace.
fn in_namespace(args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child", "--"])
        .args(args);
    cmd
}

fn output(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn zombie_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|s| s.starts_with('Z'))
        })
        .map(str::to_owned)
        .collect()
}

/// The PID of `parent`'s first child, waiting for it to appear (5 s at most).
fn child_of(parent: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = std::fs::read_dir("/proc").ok().and_then(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .find(|pid| ppid(*pid) == Some(parent))
        });
        if let Some(pid) = found {
            return pid;
        }
        assert!(Instant::now() < deadline, "PID {parent} started no child");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// Waits for a child with a deadline (30 s), killing it if it does not end.
fn wait(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the supervised process did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

fn read_pid(path: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} was not written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn as_pid_1_orphans_that_exit_are_reaped() {
    let control = output(in_namespace(&[
        "/usr/bin/python3",
        "-c",
        NO_REAP,
        "sh",
        "-c",
        ORPHANS,
    ]));
    assert!(
        zombie_lines(&control).len() >= 2,
        "control: a PID 1 that does not reap should leave the orphans as zombies:\n{}",
        text(&control)
    );

    let out = output(in_namespace(&[BIN, "supervise", "--", "sh", "-c", ORPHANS]));
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(" pgpatrol"), "PID 1 is supervise:\n{table}");
    assert_eq!(zombie_lines(&out), Vec::<String>::new(), "{}", text(&out));
    // As PID 1 it says nothing about subreaping.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("subreaper"),
        "{}",
        text(&out)
    );
}

fn as_pid_1_signals_from_outside_reach_the_child() {
    // A namespace init drops signals it has no handler for; supervise must catch and forward.
    for (sig, code) in [
        ("USR1", 41),
        ("USR2", 42),
        ("HUP", 43),
        ("INT", 44),
        ("QUIT", 45),
        ("TERM", 46),
    ] {
        let script = format!("trap 'exit {code}' {sig}; while :; do sleep 0.05; done");
        let unshare = spawn(in_namespace(&[BIN, "supervise", "--", "sh", "-c", &script]));
        let init = child_of(unshare.id());
        // Until sh has installed its trap a signal would kill it by default: wait for it.
        let sh = child_of(init);
        std::thread::sleep(Duration::from_millis(300));
        assert!(running(sh));
        signal(init, sig);
        let out = wait(unshare);
        assert_eq!(out.status.code(), Some(code), "SIG{sig}: {}", text(&out));
    }
}

fn the_exit_code_is_the_childs_or_128_plus_the_signal() {
    let out = output({
        let mut c = Command::new(BIN);
        c.args(["supervise", "--", "sh", "-c", "exit 7"]);
        c
    });
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));

    let out = output({
        let mut c = Command::new(BIN);
        c.args(["supervise", "--", "sh", "-c", "kill -KILL $$"]);
        c
    });
    assert_eq!(out.status.code(), Some(137), "{}", text(&out));

    // SIGTERM forwarded to a child without a handler: it dies of it, 128 + 15.
    let mut cmd = Command::new(BIN);
    cmd.args(["supervise", "--", "sleep", "30"]);
    let child = spawn(cmd);
    // Once the child runs, the signal takes the forwarding path.
    child_of(child.id());
    signal(child.id(), "TERM");
    let out = wait(child);
    assert_eq!(out.status.code(), Some(143), "{}", text(&out));
}

fn a_missing_command_is_one_line_and_exit_2() {
    let out = output({
        let mut c = Command::new(BIN);
        c.args(["supervise", "--", "/no/such/program"]);
        c
    });
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert_eq!(
        last, "error: cannot run /no/such/program: no such program",
        "{err}"
    );
}

fn after_sigterm_the_grace_period_ends_in_sigkill() {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "supervise",
        "--grace",
        "1s",
        "--",
        "sh",
        "-c",
        "trap '' TERM; while :; do sleep 0.05; done",
    ]);
    let child = spawn(cmd);
    let sh = child_of(child.id());
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), "TERM");
    // The child ignores SIGTERM: still there before the grace period is over.
    std::thread::sleep(Duration::from_millis(400));
    assert!(running(sh), "the child was killed before --grace ran out");
    let out = wait(child);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SIGKILL"),
        "{}",
        text(&out)
    );
    assert!(!running(sh));
}

fn outside_pid_1_it_becomes_a_subreaper_and_reaps_orphans() {
    for subreaper in [true, false] {
        let dir = scratch(if subreaper {
            "subreaper"
        } else {
            "no-subreaper"
        });
        let long = dir.join("long.pid");
        let short = dir.join("short.pid");
        // Two orphans: one that outlives the check, one that exits at once.
        let script = format!(
            "sh -c 'sleep 5 & echo $! > {long}; sleep 0.1 & echo $! > {short}'; sleep 2",
            long = long.display(),
            short = short.display()
        );
        let mut cmd = Command::new(BIN);
        cmd.arg("supervise");
        if !subreaper {
            cmd.arg("--no-subreaper");
        }
        cmd.args(["--", "sh", "-c", &script]);
        let child = spawn(cmd);
        let me = child.id();
        let long_pid = read_pid(&long);
        let short_pid = read_pid(&short);
        std::thread::sleep(Duration::from_millis(800));
        let adopted = ppid(long_pid) == Some(me);
        let short_left =
            std::fs::metadata(format!("/proc/{short_pid}")).is_ok() && ppid(short_pid) == Some(me);
        signal(long_pid, "KILL");
        let out = wait(child);
        assert!(out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        if subreaper {
            assert!(
                adopted,
                "the orphan was not re-parented to supervise (PID {me})"
            );
            assert!(!short_left, "the exited orphan {short_pid} was not reaped");
            assert_eq!(
                err.matches("child subreaper").count(),
                1,
                "said once: {err}"
            );
        } else {
            assert!(
                !adopted,
                "--no-subreaper: the orphan should go to the real init"
            );
            assert!(err.contains("not a child subreaper"), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn with_process_group_signals_reach_the_whole_group() {
    for group in [true, false] {
        let dir = scratch(if group { "group" } else { "nogroup" });
        let grandchild = dir.join("grandchild.pid");
        // The grandchild must not hold the output pipes open, or reading them waits for it.
        let script = format!(
            "sleep 30 >/dev/null 2>&1 & echo $! > {}; wait",
            grandchild.display()
        );
        let mut cmd = Command::new(BIN);
        cmd.arg("supervise");
        if group {
            cmd.arg("--process-group");
        }
        cmd.args(["--grace", "1s", "--", "sh", "-c", &script]);
        let child = spawn(cmd);
        let sleep = read_pid(&grandchild);
        signal(child.id(), "TERM");
        let out = wait(child);
        assert_eq!(out.status.code(), Some(143), "{}", text(&out));
        std::thread::sleep(Duration::from_millis(200));
        if group {
            assert!(
                !running(sleep),
                "--process-group: the grandchild {sleep} survived SIGTERM"
            );
        } else {
            assert!(
                running(sleep),
                "without --process-group only the child gets the signal"
            );
            signal(sleep, "KILL");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
