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
        network_faults_need_a_netns_lab,
    ]
    .into_iter()
    .chain([crate::harness::on_net(
        "a_netns_lab_cuts_a_member_off_and_repair_mends_it",
        a_netns_lab_cuts_a_member_off_and_repair_mends_it,
    )])
    .collect()
}

/// On the loopback lab the network faults say in one line what they need; `--netns` with
/// `--standby-of` is refused before anything starts.
fn network_faults_need_a_netns_lab(lab: &Lab) {
    for args in [
        &["break", "partition", "--member", "pg1"][..],
        &["break", "dcs-slow"][..],
    ] {
        let out = lab.lab(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("pgpatrol lab up --netns"), "{args:?}: {err}");
    }
    let d = lab.dir().to_string_lossy().into_owned();
    let out = run(&[
        "lab",
        "up",
        "--dir",
        "/tmp/never",
        "--netns",
        "--standby-of",
        &d,
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("--netns"), "{}", stderr(&out));
}

/// iproute2's `name` (`ip`, `tc`): in /usr/sbin on Debian, which a test's PATH may lack.
fn sbin(name: &str) -> String {
    ["/usr/sbin", "/sbin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| std::path::Path::new(p).is_file())
        .unwrap_or_else(|| name.to_string())
}

/// `ip ARGS` as this host runs it; its stdout.
fn ip(args: &[&str]) -> String {
    let out = std::process::Command::new(sbin("ip"))
        .args(args)
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `--netns` lab: each host its own address; `lab break partition` cuts a replica off
/// from etcd and the members (its member key expires from the others' `/cluster` while its
/// own `/patroni` still answers this host); `lab break dcs-slow` puts a token bucket on
/// etcd's link; `lab repair` removes both and the cluster is healthy again.
fn a_netns_lab_cuts_a_member_off_and_repair_mends_it(lab: &Lab) {
    let s = lab.state();
    let net = s.net.clone().expect("a --netns lab");
    let mut addrs: Vec<String> = s.members.iter().map(|m| m.addr().to_string()).collect();
    addrs.push(s.etcd.addr().to_string());
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), s.members.len() + 1, "{addrs:?}");
    assert!(addrs.iter().all(|a| a.starts_with("10.")), "{addrs:?}");
    let replica = lab.replica();
    let m = s.member(&replica).expect("member").clone();
    let ns = m.net.clone().expect("its host").ns;
    ok(
        "lab break partition",
        &lab.lab(&["break", "partition", "--member", &replica]),
    );
    assert!(
        ip(&["-n", &ns, "route", "show", "type", "blackhole"]).contains(&s.etcd.addr().to_string())
    );
    crate::util::wait_for(
        &format!("{replica} gone from the others' /cluster (its key expired)"),
        std::time::Duration::from_secs(90),
        || {
            let names: Vec<String> = lab.cluster_json()["members"]
                .as_array()?
                .iter()
                .filter_map(|m| m["name"].as_str().map(str::to_owned))
                .collect();
            (!names.contains(&replica)).then_some(())
        },
    );
    let own = crate::util::get_json(&format!("{}/patroni", m.url()));
    assert!(own["state"].is_string(), "{own}");
    let etcd_ns = s.etcd.net.clone().expect("etcd's host").ns;
    ok(
        "lab break dcs-slow",
        &lab.lab(&["break", "dcs-slow", "--kbit", "256"]),
    );
    assert!(
        std::process::Command::new(sbin("tc"))
            .args(["-n", &etcd_ns, "qdisc", "show", "dev", "eth0"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("tbf"))
            .unwrap_or(false),
        "a token bucket on etcd's link"
    );
    ok("lab repair", &lab.lab(&["repair"]));
    assert_eq!(
        ip(&["-n", &ns, "route", "show", "type", "blackhole"]).trim(),
        ""
    );
    let after = lab.state().net.expect("net");
    assert!(
        after.cuts.is_empty() && after.dcs_kbit.is_none(),
        "{after:?}"
    );
    assert_eq!(after.id, net.id);
    assert!(lab.healthy());
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
