//! The lab itself: a real cluster comes up healthy, faults make real lag that Patroni
//! reports, repair undoes them, labs run side by side and leave nothing behind.

use std::net::TcpListener;

use pgpatrol::lab::os::alive;
use pgpatrol::lab::{LabPaths, LabState};

use crate::harness::{free_port_base, it_root, ok, run, stderr, Lab, Test, MB};

pub fn tests() -> Vec<Test> {
    tests![
        up_gives_one_leader_and_streaming_replicas,
        break_lag_leaves_replica_behind_but_streaming,
        repair_brings_the_replica_back,
        break_replay_gives_replay_only_lag,
        crash_leader_then_repair_heals,
        up_refuses_a_dir_with_a_live_lab,
        up_refuses_a_port_in_use,
        up_replaces_a_stale_lab,
        logs_show_a_member_and_etcd,
        second_lab_side_by_side_and_down_leaves_nothing,
    ]
}

fn lag_field(m: &serde_json::Value, key: &str) -> u64 {
    m[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {m}"))
}

fn up_gives_one_leader_and_streaming_replicas(lab: &Lab) {
    let cluster = lab.cluster_json();
    let members = cluster["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{cluster}");
    let leaders: Vec<_> = members.iter().filter(|m| m["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{cluster}");
    assert_eq!(leaders[0]["state"], "running");
    let streaming = members
        .iter()
        .filter(|m| m["role"] == "replica" && m["state"] == "streaming")
        .count();
    assert_eq!(streaming, 2, "{cluster}");
    assert_eq!(lab.urls().len(), 3);
    // The superuser can write on the leader.
    assert_eq!(lab.psql("SELECT 1"), "1");
    // patronictl works with the generated config (ctl.authentication included).
    let out = lab.patronictl(&["list"]);
    ok("patronictl list", &out);
}

fn break_lag_leaves_replica_behind_but_streaming(lab: &Lab) {
    let replica = lab.replica();
    lab.break_lag(&replica, 64);
    let m = lab.member_json(&replica);
    assert!(lag_field(&m, "lag") >= 64 * MB, "{m}");
    // The stalled walreceiver still looks like streaming: only the numbers tell.
    assert_eq!(m["state"], "streaming", "{m}");
    let status = lab.lab(&["status"]);
    assert_eq!(status.status.code(), Some(1), "status must report the lag");
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(
        said.contains(&format!("fault: {replica}'s walreceiver")),
        "{said}"
    );
}

fn repair_brings_the_replica_back(lab: &Lab) {
    let replica = lab.replica();
    lab.break_lag(&replica, 16);
    lab.repair();
    let m = lab.member_json(&replica);
    assert_eq!(m["state"], "streaming", "{m}");
    assert!(lag_field(&m, "lag") <= MB, "{m}");
    assert!(lab.state().stopped.is_empty(), "repair clears the records");
    assert!(lab.healthy());
}

fn break_replay_gives_replay_only_lag(lab: &Lab) {
    let replica = lab.replica();
    lab.break_replay(&replica, 32);
    let m = lab.member_json(&replica);
    assert_eq!(m["state"], "streaming", "{m}");
    assert!(lab.replay_lag(&replica) >= 32 * MB);
    // Receiving goes on: `lag` (receive side) stays far below the replay lag. Patroni
    // reports it once per loop, so allow a write burst's worth, not zero.
    assert!(lag_field(&m, "lag") < 32 * MB, "{m}");
}

fn crash_leader_then_repair_heals(lab: &Lab) {
    let old = lab.leader();
    lab.crash_leader();
    assert_eq!(lab.state().killed, vec![old.clone()]);
    lab.repair();
    assert!(lab.healthy());
    assert!(lab.state().killed.is_empty());
}

fn up_refuses_a_dir_with_a_live_lab(lab: &Lab) {
    let d = lab.dir().to_string_lossy().into_owned();
    let out = run(&["lab", "up", "--dir", &d]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("a lab is already up in"), "{err}");
    assert!(err.contains("pgpatrol lab down --dir"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(lab.healthy(), "the live lab is untouched");
}

fn up_refuses_a_port_in_use(_lab: &Lab) {
    let base = free_port_base(4);
    let _busy = TcpListener::bind(("127.0.0.1", base + 2)).expect("bind");
    let dir = it_root().join("busy-port");
    let d = dir.to_string_lossy().into_owned();
    let out = run(&[
        "lab",
        "up",
        "--dir",
        &d,
        "--members",
        "1",
        "--port-base",
        &base.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "port 127.0.0.1:{} is in use: choose another --port-base",
            base + 2
        )),
        "{err}"
    );
    assert!(!dir.join("lab.json").exists(), "nothing started");
}

fn second_lab_side_by_side_and_down_leaves_nothing(lab: &Lab) {
    let base = free_port_base(6);
    let dir = it_root().join("side");
    let d = dir.to_string_lossy().into_owned();
    let ver = crate::harness::patroni_version();
    let up = run(&[
        "lab",
        "up",
        "--dir",
        &d,
        "--members",
        "2",
        "--port-base",
        &base.to_string(),
        "--scope",
        "side",
        "--patroni",
        &ver,
        "--timeout",
        "120s",
    ]);
    let text = ok("side lab up", &up);
    assert!(
        text.contains(&format!("export PATRONI_URL=http://127.0.0.1:{}", base + 2)),
        "{text}"
    );
    ok("side lab status", &run(&["lab", "status", "--dir", &d]));
    assert!(lab.healthy(), "the main lab is untouched");

    let state = LabState::load(&LabPaths::new(&dir).expect("paths")).expect("side lab.json");
    let postmasters: Vec<u32> = state
        .members
        .iter()
        .filter_map(|m| pgpatrol::lab::os::postmaster_pid(&m.data_dir))
        .collect();
    assert_eq!(postmasters.len(), 2);
    ok("side lab down", &run(&["lab", "down", "--dir", &d]));

    for m in &state.members {
        let pid = m.pid.expect("patroni pid");
        assert!(
            !alive(pid, "patroni"),
            "{}'s Patroni {pid} survived",
            m.name
        );
    }
    for pid in postmasters {
        assert!(!alive(pid, "postgres"), "postmaster {pid} survived");
    }
    assert!(
        !alive(state.etcd.pid.expect("etcd pid"), "etcd"),
        "etcd survived"
    );
    for port in base..base + 6 {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still in use after lab down"
        );
    }
    assert!(!dir.join("lab.json").exists());
    assert!(!dir.join("data").exists() && !dir.join("etcd").exists());
    assert!(dir.join("logs").exists(), "logs are kept for post-mortems");
}

/// A lab whose processes all died (a killed terminal, a reboot) leaves lab.json behind;
/// the next `lab up` cleans it up instead of refusing.
fn up_replaces_a_stale_lab(_lab: &Lab) {
    let dir = it_root().join("stale");
    let d = dir.to_string_lossy().into_owned();
    let ver = crate::harness::patroni_version();
    let up = [
        "lab",
        "up",
        "--dir",
        &d,
        "--members",
        "1",
        "--scope",
        "stale",
        "--patroni",
        &ver,
        "--timeout",
        "120s",
    ];
    ok("first lab up", &run(&up));
    let state = LabState::load(&LabPaths::new(&dir).expect("paths")).expect("lab.json");
    let m = &state.members[0];
    let mut pids = vec![m.pid.expect("patroni"), state.etcd.pid.expect("etcd")];
    pids.extend(pgpatrol::lab::os::postmaster_pid(&m.data_dir));
    for pid in &pids {
        pgpatrol::lab::os::signal(*pid, nix::sys::signal::Signal::SIGKILL).expect("kill");
    }
    while pids.iter().any(|p| alive(*p, "")) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(dir.join("lab.json").exists());
    ok("lab up over a stale lab.json", &run(&up));
    ok("lab down", &run(&["lab", "down", "--dir", &d]));
}

fn logs_show_a_member_and_etcd(lab: &Lab) {
    let pg0 = ok("lab logs pg0", &lab.lab(&["logs", "pg0", "-n", "5"]));
    assert!(!pg0.trim().is_empty() && pg0.lines().count() <= 5, "{pg0}");
    let etcd = ok("lab logs etcd", &lab.lab(&["logs", "etcd"]));
    assert!(etcd.contains("etcd"), "{etcd}");
    let out = lab.lab(&["logs", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no member \"nosuch\""),
        "{}",
        stderr(&out)
    );
}
