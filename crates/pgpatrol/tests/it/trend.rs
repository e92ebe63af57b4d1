//! Heal by trend (`--by trend`, `heal: {by: trend}`) on real faults: a replica replaying
//! slowly but catching up is left alone with its ETA and catches up by itself; one whose
//! walreceiver is stopped is rebuilt; one that needs WAL the leader removed is rebuilt at
//! once with that reason (by heal, and by watch through its `postgres:` login); after one
//! auto-heal the rebuild estimate is that heal's duration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgpatrol::lab::os;
use serde_json::Value;

use crate::harness::{stderr, Lab, Test, MB};
use crate::util::wait_for;
use crate::util::{code, lab_auth, patch_config, start_times, stdout};
use crate::watch::{plan, WatchRun};

pub fn tests() -> Vec<Test> {
    tests![
        a_replica_catching_up_slowly_is_left_alone_with_its_eta,
        a_replica_whose_walreceiver_is_stopped_is_rebuilt,
        a_replica_needing_removed_wal_is_rebuilt_at_once,
        watch_by_trend_rebuilds_a_replica_whose_wal_is_gone_at_once,
        after_one_auto_heal_the_estimate_is_its_measured_duration,
        bad_trend_input_is_refused_with_exit_2,
    ]
}

fn heal_trend(lab: &Lab, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["heal", "--yes", "--report", "json", "--by", "trend"];
    all.extend_from_slice(args);
    crate::util::report_of(&lab.pgpatrol(&all))
}

fn skip_of<'a>(report: &'a Value, member: &str) -> &'a Value {
    report["plan"]["skips"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["member"] == member))
        .unwrap_or(&Value::Null)
}

/// The member's startup process, continued for `run` then stopped for `stop`, over and
/// over until dropped (then left running): replay proceeds, slowly.
struct SlowReplay {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowReplay {
    fn new(lab: &Lab, member: &str, run: Duration, stop: Duration) -> Self {
        let state = lab.state();
        let pm = state
            .member(member)
            .expect("member")
            .postmaster()
            .expect("its postmaster");
        let pid = *os::children(pm, "startup")
            .first()
            .expect("a startup process");
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let _ = os::signal(pid, Signal::SIGCONT);
                std::thread::sleep(run);
                let _ = os::signal(pid, Signal::SIGSTOP);
                std::thread::sleep(stop);
            }
            let _ = os::signal(pid, Signal::SIGCONT);
        });
        SlowReplay {
            stop: done,
            thread: Some(thread),
        }
    }
}

impl Drop for SlowReplay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn a_replica_catching_up_slowly_is_left_alone_with_its_eta(lab: &Lab) {
    let target = lab.replica();
    lab.break_replay(&target, 80);
    let before = start_times(lab);
    let slow = SlowReplay::new(
        lab,
        &target,
        Duration::from_millis(15),
        Duration::from_millis(985),
    );
    // The rebuild estimate comes from the data size at 1 MB/s (the superuser of
    // PATRONICTL_CONFIG_FILE logs in): far slower than this catch-up.
    let (rc, report) = heal_trend(lab, &["--observe", "6s", "--throughput", "1MB"]);
    assert_eq!(rc, 1, "still lagging: exit 1 {report:#}");
    assert!(
        report["outcomes"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    let skip = skip_of(&report, &target);
    assert_eq!(skip["reason"]["kind"], "catching_up", "{report:#}");
    say!("trend: {target} left alone: {}", skip["reason"]);
    assert!(
        skip["reason"]["eta_secs"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    // Waiting: the ETA is within the factor (2) of the rebuild estimate.
    assert!(
        skip["reason"]["eta_secs"].as_u64().unwrap()
            <= 2 * skip["reason"]["rebuild_secs"].as_u64().unwrap(),
        "{report:#}"
    );
    let trend = report["plan"]["trends"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["member"] == target.as_str()))
        .unwrap_or_else(|| panic!("no trend for {target}: {report:#}"));
    assert!(trend["trend"]["rate"].as_i64().unwrap() < 0, "{trend:#}");
    assert_eq!(trend["rebuild"]["basis"], "data_size", "{trend:#}");
    // The markdown report says it in words, with the numbers. (Patroni refreshes the lag
    // once per loop_wait, 2 s in the lab: the window must hold several refreshes.)
    let out = lab.pgpatrol(&[
        "heal",
        "--yes",
        "--by",
        "trend",
        "--observe",
        "6s",
        "--throughput",
        "1MB",
    ]);
    let text = stdout(&out);
    // The replica may have caught up by itself since the first reading (its ETA was a few
    // seconds on a fast run): then the report says so, and the JSON above held the decision.
    if !text.contains("healthy, nothing to do") {
        assert!(
            text.contains(&format!("Leave {target}: lag "))
                && text.contains("caught up in ~")
                && text.contains(": waiting"),
            "{text}"
        );
        assert!(text.contains("## Trend"), "{text}");
    }
    // Left alone, it catches up by itself; nothing was rebuilt.
    drop(slow);
    wait_for(
        "the replica to catch up by itself",
        Duration::from_secs(30),
        || (lab.replay_lag(&target) < 5 * MB).then_some(()),
    );
    assert_eq!(before, start_times(lab), "nothing was rebuilt");
}

fn a_replica_whose_walreceiver_is_stopped_is_rebuilt(lab: &Lab) {
    let target = lab.replica();
    lab.break_lag(&target, 20);
    let before = start_times(lab);
    let (rc, report) = heal_trend(lab, &["--observe", "4s"]);
    assert_eq!(rc, 0, "{report:#}");
    let actions = report["plan"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{report:#}");
    assert_eq!(actions[0]["member"], target.as_str());
    let reason = actions[0]["reason"].as_str().unwrap();
    say!("trend: {target} rebuilt: {reason}");
    assert!(reason.contains("it cannot catch up"), "{reason}");
    assert_eq!(report["outcomes"][0]["result"], "healed", "{report:#}");
    assert_ne!(before[&target], start_times(lab)[&target], "rebuilt");
}

/// Replication without slots and with the smallest wal_keep_size Patroni accepts (16MB;
/// it refuses less and keeps its default); put back when dropped.
struct NoSlots<'a>(&'a Lab);

impl<'a> NoSlots<'a> {
    fn new(lab: &'a Lab) -> Self {
        patch_config(
            &lab.urls()[0],
            &lab_auth(lab),
            r#"{"postgresql": {"use_slots": false, "parameters": {"wal_keep_size": "16MB"}}}"#,
        );
        NoSlots(lab)
    }
}

impl Drop for NoSlots<'_> {
    fn drop(&mut self) {
        patch_config(
            &self.0.urls()[0],
            &lab_auth(self.0),
            r#"{"postgresql": {"use_slots": true, "parameters": {"wal_keep_size": "128MB"}}}"#,
        );
        // Patroni applies it at its next loop: wait until every member's PostgreSQL has it
        // (bounded, and without a panic inside a drop).
        let applied = || {
            self.0.members().iter().all(|m| {
                crate::util::stdout(&self.0.lab(&[
                    "psql",
                    "--member",
                    m,
                    "-c",
                    "SHOW wal_keep_size",
                ]))
                .trim()
                    == "128MB"
            })
        };
        let t0 = std::time::Instant::now();
        while !applied() && t0.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn a_replica_needing_removed_wal_is_rebuilt_at_once(lab: &Lab) {
    let target = lab.replica();
    let _no_slots = NoSlots::new(lab);
    make_wal_gone(lab, &target);
    // The switches moved the leader on: the healthy replica may look behind for a loop,
    // and heal's min-healthy would then refuse. (Not in make_wal_gone: watch's test has a
    // watcher acting meanwhile, and must see its plan.)
    crate::k8s::others_caught_up(lab, &target);
    let before = start_times(lab);
    let (rc, report) = heal_trend(lab, &["--observe", "2s"]);
    assert_eq!(rc, 0, "{report:#}");
    let actions = report["plan"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{report:#}");
    let reason = actions[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("its WAL is gone (it needs WAL from ")
            && reason.contains("already removed")
            && reason.ends_with("rebuilt at once"),
        "{reason}"
    );
    assert_eq!(report["outcomes"][0]["result"], "healed", "{report:#}");
    assert_ne!(before[&target], start_times(lab)[&target], "rebuilt");
}

/// With no slot and wal_keep_size 16MB, `target` stopped receiving while the leader wrote
/// 48 MB and checkpointed: the WAL it needs is gone.
fn make_wal_gone(lab: &Lab, target: &str) {
    wait_for(
        "the leader to drop the replica's slot",
        Duration::from_secs(30),
        || {
            let n = lab.psql(&format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{target}'"
            ));
            let keep = lab.psql("SHOW wal_keep_size");
            (n == "0" && keep == "16MB").then_some(())
        },
    );
    lab.break_lag(target, 48);
    for _ in 0..2 {
        lab.psql("SELECT pg_switch_wal()");
        lab.psql("CHECKPOINT");
    }
}

/// Watch's side of WAL gone: its `postgres:` login asks each poll while a replica lags. The
/// window can never hold `min_samples: 50`, so only WAL gone can make it act.
fn watch_by_trend_rebuilds_a_replica_whose_wal_is_gone_at_once(lab: &Lab) {
    let target = lab.replica();
    let _no_slots = NoSlots::new(lab);
    let run = WatchRun::new(lab, "trend-wal-gone")
        .heal("enabled: true, tolerance: 5MB, persist_samples: 2, by: trend, trend: {window: 20s, min_samples: 50}")
        .postgres();
    let port = run.port;
    let _w = run.start();
    let before = start_times(lab);
    make_wal_gone(lab, &target);
    let mut reason = None;
    let record = wait_for(
        "auto-heal of the WAL-gone replica",
        Duration::from_secs(60),
        || {
            let p = plan(port);
            if let Some(a) = p["lab"]["plan"]["actions"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["member"] == target.as_str()))
            {
                reason = a["reason"].as_str().map(str::to_owned);
            }
            p["lab"]["heal"]["history"]
                .as_array()?
                .iter()
                .find(|r| r["member"] == target.as_str() && r["outcome"] == "healed")
                .cloned()
        },
    );
    let reason = reason.expect("the plan that acted was seen");
    assert!(
        reason.starts_with("its WAL is gone (it needs WAL from ")
            && reason.contains("already removed"),
        "{reason}"
    );
    // The record keeps what the rebuild copied (the leader's data size from PostgreSQL).
    assert!(
        record["bytes"].as_u64().is_some_and(|b| b > MB),
        "{record:#}"
    );
    assert_ne!(before[&target], start_times(lab)[&target], "rebuilt");
}

fn secs_of(t: &Value) -> f64 {
    t["secs_since_epoch"].as_f64().unwrap() + t["nanos_since_epoch"].as_f64().unwrap() / 1e9
}

fn after_one_auto_heal_the_estimate_is_its_measured_duration(lab: &Lab) {
    let run = WatchRun::new(lab, "trend-estimate")
        .heal("enabled: true, tolerance: 5MB, persist_samples: 2, by: trend, trend: {window: 20s}");
    let port = run.port;
    let _w = run.start();
    let target = lab.replica();
    lab.break_lag(&target, 20);
    let t0 = Instant::now();
    let record = wait_for(
        "auto-heal by trend to heal",
        Duration::from_secs(90),
        || {
            let p = plan(port);
            let h = &p["lab"]["heal"]["history"];
            h.as_array()?
                .iter()
                .find(|r| r["member"] == target.as_str() && r["outcome"] == "healed")
                .cloned()
        },
    );
    say!("trend: healed {:?} after the fault", t0.elapsed());
    let measured = secs_of(&record["finished"]) - secs_of(&record["started"]);
    // Broken again: once the window has its samples the trend says rebuild, the cooldown
    // refuses (trend mode keeps every guardrail), and the plan shows the estimate from
    // that heal.
    lab.break_lag(&target, 10);
    let seen = wait_for(
        "the trend with the estimate",
        Duration::from_secs(30),
        || {
            let p = plan(port);
            (skip_of_plan(&p, &target)["kind"] == "cooldown").then_some(())?;
            p["lab"]["plan"]["trends"]
                .as_array()?
                .iter()
                .find(|t| t["member"] == target.as_str())
                .cloned()
        },
    );
    assert_eq!(seen["rebuild"]["basis"], "history", "{seen:#}");
    assert_eq!(seen["rebuild"]["heals"], 1, "{seen:#}");
    assert_eq!(
        seen["rebuild"]["secs"].as_u64().unwrap(),
        (measured.ceil() as u64).max(1),
        "{seen:#} measured {measured}"
    );
    assert_eq!(
        seen["trend"]["rate"].as_i64().map(|r| r >= 0),
        Some(true),
        "stalled again: {seen:#}"
    );
}

fn skip_of_plan<'a>(p: &'a Value, member: &str) -> &'a Value {
    p["lab"]["plan"]["skips"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["member"] == member))
        .map(|s| &s["reason"])
        .unwrap_or(&Value::Null)
}

fn bad_trend_input_is_refused_with_exit_2(lab: &Lab) {
    let before = start_times(lab);
    let out = lab.pgpatrol(&["heal", "--yes", "--observe", "30s"]);
    crate::util::one_line_error(&out, "--observe samples the lag trend: it needs --by trend");
    let out = lab.pgpatrol(&["heal", "--yes", "--by", "trend", "--observe", "100ms"]);
    crate::util::one_line_error(&out, "a trend needs 5");
    for bad in [
        ["--by", "trend", "--observe", "soon"],
        ["--by", "slope", "--observe", "30s"],
        ["--by", "trend", "--ceiling", "5XB"],
    ] {
        let mut args = vec!["heal", "--yes"];
        args.extend(bad);
        let out = lab.pgpatrol(&args);
        assert_eq!(code(&out), 2, "{bad:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("error: invalid value") && !stderr(&out).contains("panicked"),
            "{bad:?}: {}",
            stderr(&out)
        );
    }
    let out = lab.pgpatrol(&[
        "heal",
        "--yes",
        "--by",
        "trend",
        "--factor",
        "0",
        "--observe",
        "2s",
    ]);
    crate::util::one_line_error(&out, "--factor 0 must be a number above 0");
    assert_eq!(before, start_times(lab), "nothing was touched");
}
