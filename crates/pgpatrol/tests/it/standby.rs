//! Standby clusters against the live lab: a standby cluster of the lab (`lab up
//! --standby-of`, streaming through a permanent slot) and its lag against the source
//! (`--source-url` and watch's `source:`: what Patroni cannot compute), an archive-only
//! standby of an archiving lab (`--archive`, `--standby-mode archive`) and its failing
//! restore_command, slots (`slot drop`, doctor naming an abandoned one), heal on a standby
//! cluster, and promote/demote (Patroni 4.1+).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::harness::{it_root, ok, patroni_version, run, stderr, Lab, Test, MB};
use crate::util::{code, eventually, get_json, one_line_error, stdout};

pub fn tests() -> Vec<Test> {
    let mut t = tests![
        standby_lag_follows_the_source_and_rises_when_the_standby_leader_stops_receiving,
        a_source_url_that_is_not_the_source_is_one_line_and_exit_2,
        slot_drop_refuses_active_and_permanent_slots_and_drops_an_abandoned_one,
        an_archive_only_standby_follows_the_archive_and_a_failing_restore_command_is_seen,
        heal_on_a_standby_cluster_rebuilds_a_cascade_replica_never_the_standby_leader,
    ];
    // Demoting a running primary cluster by configuration is clean from Patroni 4.1 on.
    if patroni_version() == "4.1" {
        t.extend(tests![promote_and_demote_swap_the_clusters_and_back]);
    }
    t
}

/// A standby lab of the shared lab; down when dropped (also when the test panics).
pub(crate) struct StandbyLab {
    dir: PathBuf,
}

impl StandbyLab {
    pub(crate) fn up(lab: &Lab, name: &str) -> Self {
        Self::up_of(lab.dir(), name, &[])
    }

    /// A standby lab of the lab in `src`, with more `lab up` arguments.
    fn up_of(src: &std::path::Path, name: &str, more: &[&str]) -> Self {
        let dir = it_root().join(name);
        let d = dir.to_string_lossy().into_owned();
        let src = src.to_string_lossy().into_owned();
        let ver = patroni_version();
        let mut args = vec![
            "lab",
            "up",
            "--dir",
            &d,
            "--standby-of",
            &src,
            "--patroni",
            &ver,
            "--timeout",
            "120s",
        ];
        args.extend_from_slice(more);
        ok("lab up --standby-of", &run(&args));
        StandbyLab { dir }
    }

    pub(crate) fn state(&self) -> pgpatrol::lab::LabState {
        let paths = pgpatrol::lab::LabPaths::new(&self.dir).unwrap();
        pgpatrol::lab::LabState::load(&paths).unwrap()
    }

    pub(crate) fn url(&self) -> String {
        self.state().urls()[0].clone()
    }

    pub(crate) fn cluster(&self) -> Value {
        get_json(&format!("{}/cluster", self.url()))
    }

    pub(crate) fn leader(&self) -> String {
        self.cluster()["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == "standby_leader")
            .and_then(|m| m["name"].as_str().map(str::to_owned))
            .expect("a standby leader")
    }

    /// Runs pgpatrol against this lab (its URLs and credentials).
    pub(crate) fn pgpatrol(&self, args: &[&str]) -> std::process::Output {
        let state = self.state();
        crate::harness::pgpatrol_cmd()
            .args(args)
            .env("PATRONI_URL", state.urls().join(","))
            .env("PATRONI_RESTAPI_USERNAME", "patrol")
            .env("PGPATROL_PASSWORD_FILE", self.dir.join("restapi.password"))
            .env("PATRONICTL_CONFIG_FILE", self.dir.join("config/sb0.yml"))
            .output()
            .expect("run pgpatrol")
    }

    /// SIGSTOPs `member`'s walreceiver; returns its PID (SIGCONT it to undo).
    fn stop_walreceiver(&self, member: &str) -> u32 {
        let state = self.state();
        let m = state.member(member).unwrap();
        let pm = m.postmaster().expect("postmaster");
        let pid = *pgpatrol::lab::os::children(pm, "walreceiver")
            .first()
            .expect("a walreceiver");
        pgpatrol::lab::os::signal(pid, Signal::SIGSTOP).unwrap();
        pid
    }
}

impl Drop for StandbyLab {
    fn drop(&mut self) {
        let d = self.dir.to_string_lossy().into_owned();
        let _ = run(&["lab", "down", "--dir", &d]);
    }
}

/// Resumes a stopped process when dropped.
struct Cont(u32);

impl Drop for Cont {
    fn drop(&mut self) {
        let _ = pgpatrol::lab::os::signal(self.0, Signal::SIGCONT);
    }
}

fn write_mb(lab: &Lab, mb: u64) {
    lab.psql(&format!(
        "CREATE TABLE IF NOT EXISTS sbload(x text); INSERT INTO sbload SELECT repeat('x', 1000) FROM generate_series(1, {})",
        mb * 1000
    ));
}

fn sli_json(sb: &StandbyLab, source: &str) -> Value {
    let out = sb.pgpatrol(&["sli", "--source-url", source, "-o", "json"]);
    serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("sli --source-url: {e}: {}\n{}", stdout(&out), stderr(&out)))
}

/// `wait_for`, but `f` must hold for 3 s on end: more than a Patroni loop, since /cluster
/// compares DCS keys each member refreshes once per loop and a stale pair can read 0.
fn wait_for_settled(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    let mut since: Option<Instant> = None;
    loop {
        if f() {
            if since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_secs(3) {
                return;
            }
        } else {
            since = None;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what} within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub(crate) fn standby_lag_follows_the_source_and_rises_when_the_standby_leader_stops_receiving(
    lab: &Lab,
) {
    let sb = StandbyLab::up(lab, "standby-lag");
    let source = lab.urls()[0].clone();
    let leader = sb.leader();
    let r = sli_json(&sb, &source);
    assert_eq!(r["standby_leader"], leader.as_str(), "{r:#}");
    assert_eq!(r["replication_state"], "streaming", "{r:#}");
    assert_eq!(r["source_leader"], lab.leader().as_str(), "{r:#}");
    // The list shows the standby leader and the line against the source.
    let table = ok("list", &sb.pgpatrol(&["list", "--source-url", &source]));
    assert!(
        table.contains("Standby Leader") && table.contains("Standby of "),
        "{table}"
    );
    let listed: Value = serde_json::from_str(&ok(
        "list -o json",
        &sb.pgpatrol(&["list", "--source-url", &source, "-o", "json"]),
    ))
    .unwrap();
    assert_eq!(listed["standby_lag"]["standby_leader"], leader.as_str());
    // Without --source-url it still says where it replicates from (its standby_cluster).
    let lab_pg = pg_port_of(&lab.cluster_json(), "leader");
    let table = ok("list", &sb.pgpatrol(&["list"]));
    assert!(
        table.contains(&format!(
            "Standby cluster: replicates from 127.0.0.1:{lab_pg}, slot standby_standby"
        )),
        "{table}"
    );
    let listed: Value =
        serde_json::from_str(&ok("list -o json", &sb.pgpatrol(&["list", "-o", "json"]))).unwrap();
    assert!(
        listed["replicates_from"]
            .as_str()
            .is_some_and(|f| f.starts_with(&format!("127.0.0.1:{lab_pg}"))),
        "{listed:#}"
    );
    // topology --source-url draws both clusters, the standby leader under the source.
    let table = ok(
        "topology --source-url",
        &sb.pgpatrol(&["topology", "--source-url", &source]),
    );
    let (src_part, sb_part) = table
        .split_once("Standby cluster ")
        .unwrap_or_else(|| panic!("no standby cluster drawn: {table}"));
    assert!(src_part.starts_with("Source cluster "), "{table}");
    for m in lab.members() {
        assert!(src_part.contains(&m), "{m} not in the source part: {table}");
    }
    assert!(
        sb_part.contains(&leader) && sb_part.contains("Standby of "),
        "{table}"
    );
    let tree: Value = serde_json::from_str(&ok(
        "topology --source-url -o json",
        &sb.pgpatrol(&["topology", "--source-url", &source, "-o", "json"]),
    ))
    .unwrap();
    assert_eq!(
        tree["source"]["members"][0]["name"],
        lab.leader().as_str(),
        "{tree:#}"
    );
    assert_eq!(
        tree["standby"]["members"][0]["name"],
        leader.as_str(),
        "{tree:#}"
    );
    assert_eq!(
        tree["standby"]["standby_lag"]["standby_leader"],
        leader.as_str()
    );

    // doctor on the standby cluster: its `standby` check, against the source.
    let out = sb.pgpatrol(&[
        "doctor",
        "--source-url",
        &source,
        "-o",
        "json",
        "--observe",
        "1s",
    ]);
    let d: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("doctor: {e}: {}\n{}", stdout(&out), stderr(&out)));
    let check = crate::doctor::check(&d, "standby");
    assert_eq!(check["status"], "ok", "{check:#}");
    assert!(
        check["evidence"]
            .as_str()
            .unwrap()
            .contains(&format!("{leader} streaming from")),
        "{check:#}"
    );

    // watch with `source:` exports the same lag and holds the SLO on it.
    let wdir = crate::watch::scratch(lab, "standby-watch");
    let port = crate::watch::free_port();
    let cfg = wdir.join("watch.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ninterval: 1s\ntimeout: 3s\nclusters:\n  - name: dr\n    urls: [{}]\n    username: patrol\n    password_file: {}\n    source: {source}\n    slo: {{objective: 99%, threshold: 5MB, window: 10m, of: standby, lag: receive}}\n",
            sb.state().urls().join(", "),
            lab.dir().join("restapi.password").display()
        ),
    )
    .unwrap();
    let _watch = crate::watch::start_watch(&wdir, &cfg, port);
    let series = format!("{{cluster=\"dr\",source=\"{source}\"");
    let receive = format!("pgpatrol_standby_lag_bytes{series},kind=\"receive\"}}");
    crate::util::wait_for("watch's standby lag", Duration::from_secs(20), || {
        let m = crate::watch::metrics(port);
        (crate::watch::sample(&m, &receive)? < MB as f64
            && crate::watch::sample(&m, &format!("pgpatrol_standby_replicating{series}}}"))? == 1.0)
            .then_some(())
    });
    let good = |result: &str| {
        crate::watch::sample(
            &crate::watch::metrics(port),
            &format!("pgpatrol_slo_samples_total{{cluster=\"dr\",result=\"{result}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(good("good") >= 1.0, "{}", crate::watch::metrics(port));
    let bad_before = good("bad");

    // The standby leader stops receiving while the source writes: the lag is real.
    let _cont = Cont(sb.stop_walreceiver(&leader));
    write_mb(lab, 24);
    let r = sli_json(&sb, &source);
    let lag = r["receive_lag"].as_u64().unwrap();
    assert!(
        lag >= 16 * MB,
        "receive lag {lag} after 24 MB written: {r:#}"
    );
    let mb: u64 = ok(
        "sli",
        &sb.pgpatrol(&["sli", "--source-url", &source, "--lag", "receive"]),
    )
    .trim()
    .parse()
    .unwrap();
    assert!(mb >= 16, "{mb} MB");
    // watch sees it too, and the SLO counts the samples bad.
    crate::util::wait_for(
        "watch's standby lag rising",
        Duration::from_secs(20),
        || {
            (crate::watch::sample(&crate::watch::metrics(port), &receive)? >= (16 * MB) as f64
                && good("bad") > bad_before)
                .then_some(())
        },
    );
    let plan = crate::watch::plan(port);
    assert!(
        plan["dr"]["standby"]["receive_lag"]
            .as_u64()
            .is_some_and(|l| l >= 16 * MB),
        "{plan:#}"
    );
    drop(_cont);
    eventually("the standby catches up", Duration::from_secs(60), || {
        sli_json(&sb, &source)["replay_lag"]
            .as_u64()
            .is_some_and(|l| l < MB)
    });
    crate::util::wait_for(
        "watch's standby lag falling",
        Duration::from_secs(20),
        || {
            (crate::watch::sample(&crate::watch::metrics(port), &receive)? < MB as f64)
                .then_some(())
        },
    );
}

pub(crate) fn a_source_url_that_is_not_the_source_is_one_line_and_exit_2(lab: &Lab) {
    let sb = StandbyLab::up(lab, "standby-bad");
    // Another database entirely: a one-member lab of its own.
    let other = it_root().join("other-db");
    let o = other.to_string_lossy().into_owned();
    let ver = patroni_version();
    ok(
        "lab up (other)",
        &run(&[
            "lab",
            "up",
            "--dir",
            &o,
            "--members",
            "1",
            "--scope",
            "other",
            "--patroni",
            &ver,
        ]),
    );
    struct Down(PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let d = self.0.to_string_lossy().into_owned();
            let _ = run(&["lab", "down", "--dir", &d]);
        }
    }
    let _down = Down(other.clone());
    let paths = pgpatrol::lab::LabPaths::new(&other).unwrap();
    let other_url = pgpatrol::lab::LabState::load(&paths).unwrap().urls()[0].clone();
    one_line_error(
        &sb.pgpatrol(&["sli", "--source-url", &other_url]),
        "is not the source of this standby cluster",
    );
    one_line_error(
        &sb.pgpatrol(&["list", "--source-url", &sb.url()]),
        "no running primary",
    );
    // The lab is no standby cluster.
    one_line_error(
        &lab.pgpatrol(&["sli", "--source-url", &other_url]),
        "no standby leader",
    );

    // `standby demote` of the lab under a source it cannot follow is refused before
    // anything is sent, and the lab stays a primary cluster (core `ops::standby::demote`).
    let _primary = Primary(lab);
    let other_port = pg_port_of(&get_json(&format!("{other_url}/cluster")), "leader");
    let demote = |url: &str, port: &str, more: &[&str]| {
        let mut args = vec![
            "standby",
            "demote",
            "--source-host",
            "127.0.0.1",
            "--source-port",
            port,
        ];
        if !url.is_empty() {
            args.extend(["--source-url", url]);
        }
        args.push("--yes");
        args.extend_from_slice(more);
        lab.pgpatrol(&args)
    };
    // Another database: the request does not fit (exit 2).
    one_line_error(&demote(&other_url, &other_port, &[]), "is another database");
    // A source that cannot be read, a source whose leader is stopped, and a source
    // PostgreSQL that does not answer: could not follow, or could not tell (exit 1).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port().to_string();
    let dead = format!("http://127.0.0.1:{closed_port}");
    drop(closed);
    let mut stopped: Value =
        serde_json::from_str(&crate::util::capture("4.1.5/cluster.json")).expect("capture");
    for m in stopped["members"].as_array_mut().unwrap() {
        if m["role"] == "leader" {
            m["state"] = "stopped".into();
        }
    }
    let (no_leader, _server) = crate::util::routes_server(vec![
        (
            "/cluster",
            crate::util::Route::Json(200, stopped.to_string()),
        ),
        (
            "/patroni",
            crate::util::Route::Json(200, crate::util::capture("4.1.5/patroni_replica.json")),
        ),
    ]);
    for (url, port, why) in [
        (
            dead.as_str(),
            other_port.as_str(),
            "cannot read the new source",
        ),
        (
            no_leader.as_str(),
            other_port.as_str(),
            "has no running leader",
        ),
        (
            "",
            closed_port.as_str(),
            "no PostgreSQL answers at 127.0.0.1:",
        ),
    ] {
        let out = demote(url, port, &[]);
        assert_eq!(code(&out), 1, "{url}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(why),
            "{why:?} not in: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("nothing was sent"),
            "{}",
            stderr(&out)
        );
        let r: Value = serde_json::from_str(&stdout(&demote(url, port, &["-o", "json"])))
            .expect("a JSON refusal");
        assert_eq!(r["result"], "refused", "{r:#}");
        assert_eq!(r["refusal"]["kind"], "unsafe", "{r:#}");
    }
    assert!(
        lab.cluster_json()["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["role"] == "leader"),
        "the lab is still a primary cluster"
    );
}

fn slot_names(lab: &Lab) -> Vec<String> {
    lab.psql("SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots")
        .split(',')
        .map(str::to_owned)
        .collect()
}

pub(crate) fn slot_drop_refuses_active_and_permanent_slots_and_drops_an_abandoned_one(lab: &Lab) {
    let sb = StandbyLab::up(lab, "standby-slot");
    let slot = "standby_standby";
    // Active: the standby leader streams through it.
    let out = lab.pgpatrol(&["slot", "drop", slot, "--yes"]);
    assert_eq!(code(&out), 1, "{}\n{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("is active"), "{}", stderr(&out));
    drop(sb);
    // Permanent and inactive: Patroni would create it again.
    ok(
        "edit-config",
        &lab.pgpatrol(&[
            "edit-config",
            "--set",
            "slots.keepme.type=physical",
            "--yes",
        ]),
    );
    eventually(
        "Patroni creates the permanent slot",
        Duration::from_secs(30),
        || slot_names(lab).iter().any(|s| s == "keepme"),
    );
    let out = lab.pgpatrol(&["slot", "drop", "keepme", "--yes"]);
    assert_eq!(code(&out), 1, "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("permanent slot") && stderr(&out).contains("slots.keepme=null"),
        "{}",
        stderr(&out)
    );
    ok(
        "edit-config",
        &lab.pgpatrol(&["edit-config", "--set", "slots.keepme=null", "--yes"]),
    );
    // Abandoned and holding WAL beyond wal_keep_size: doctor names it and the fix.
    ok(
        "lab break slot",
        &lab.lab(&["break", "slot", "--mb", "200"]),
    );
    let doctor = lab.pgpatrol(&["doctor", "-o", "json"]);
    let d: Value = serde_json::from_str(&stdout(&doctor)).unwrap();
    let check = crate::doctor::check(&d, "slots");
    assert_eq!(check["status"], "warn", "{check:#}");
    assert!(
        check["evidence"]
            .as_str()
            .unwrap()
            .contains("pgpatrol slot drop pgpatrol_abandoned"),
        "{check:#}"
    );
    let audit = lab.dir().join("audit-slot.jsonl");
    let _ = std::fs::remove_file(&audit);
    let a = audit.to_string_lossy().into_owned();
    let out = lab.pgpatrol(&[
        "slot",
        "drop",
        "pgpatrol_abandoned",
        "--yes",
        "--checkpoint",
        "-o",
        "json",
        "--audit-log",
        &a,
    ]);
    let r: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(code(&out), 0, "{r:#}");
    assert_eq!(r["result"], "dropped");
    assert!(r["retained_bytes"].as_u64().unwrap() >= 200 * MB, "{r:#}");
    // Released: the oldest segment kept moves past what the slot held (segments are
    // recycled, so pg_wal need not shrink), and no slot left holds more than a little.
    let (before, after) = (
        r["oldest_wal_before"].as_str().unwrap(),
        r["oldest_wal_after"].as_str().unwrap(),
    );
    assert!(after > before, "oldest WAL {before} → {after}: {r:#}");
    assert!(r["slots_retain_after"].as_u64().unwrap() < 32 * MB, "{r:#}");
    assert!(!slot_names(lab).iter().any(|s| s == "pgpatrol_abandoned"));
    let line = std::fs::read_to_string(&audit).unwrap();
    assert!(
        line.contains("pg_drop_replication_slot('pgpatrol_abandoned')"),
        "{line}"
    );
    lab.repair();
}

pub(crate) fn heal_on_a_standby_cluster_rebuilds_a_cascade_replica_never_the_standby_leader(
    lab: &Lab,
) {
    let sb = StandbyLab::up(lab, "standby-heal");
    let leader = sb.leader();
    let target = sb
        .state()
        .members
        .iter()
        .map(|m| m.name.clone())
        .find(|n| *n != leader)
        .unwrap();
    let start = |n: &str| {
        let state = sb.state();
        let m = state.member(n).unwrap();
        get_json(&format!("{}/patroni", m.url()))["postmaster_start_time"].clone()
    };
    let leader_start = start(&leader);
    let target_start = start(&target);
    let _cont = Cont(sb.stop_walreceiver(&target));
    write_mb(lab, 24);
    eventually("the cascade replica lags", Duration::from_secs(30), || {
        sb.cluster()["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == target.as_str())
            .and_then(|m| m["lag"].as_u64())
            .is_some_and(|l| l >= 8 * MB)
    });
    // The other cascade replica has what the standby leader has (heal keeps one healthy).
    wait_for_settled("the other replicas catch up", 60, || {
        sb.cluster()["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "replica" && m["name"] != target.as_str())
            .all(|m| m["lag"].as_u64().is_some_and(|l| l < MB))
    });
    let out = sb.pgpatrol(&["heal", "--yes", "--tolerance", "5", "--report", "json"]);
    let r: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(code(&out), 0, "{r:#}");
    let outcomes = r["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 1, "{r:#}");
    assert_eq!(outcomes[0]["member"], target.as_str());
    assert_eq!(outcomes[0]["result"], "healed");
    assert_ne!(
        start(&target),
        target_start,
        "the cascade replica was rebuilt"
    );
    assert_eq!(
        start(&leader),
        leader_start,
        "the standby leader is never touched"
    );
    assert_eq!(sb.leader(), leader);
}

/// Puts the shared lab back as the primary cluster if a promote/demote test stops halfway.
struct Primary<'a>(&'a Lab);

impl Drop for Primary<'_> {
    fn drop(&mut self) {
        if self.0.cluster_json()["members"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|m| m["role"] == "standby_leader"))
        {
            let _ = self
                .0
                .pgpatrol(&["standby", "promote", "--source-gone", "--yes"]);
        }
    }
}

fn pg_port_of(cluster: &Value, role: &str) -> String {
    cluster["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == role)
        .and_then(|m| m["port"].as_u64())
        .expect("a member with that role")
        .to_string()
}

pub(crate) fn promote_and_demote_swap_the_clusters_and_back(lab: &Lab) {
    let sb = StandbyLab::up(lab, "standby-dr");
    let _primary = Primary(lab);
    let main = lab.urls()[0].clone();
    let dr = sb.url();
    // Refused while the source has a running primary: never two writable leaders.
    let out = sb.pgpatrol(&["standby", "promote", "--source-url", &main, "--yes"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("still has a primary"),
        "{}",
        stderr(&out)
    );
    // A source that cannot be read is no proof that it has no primary: refused, and the
    // standby cluster stays a standby (fails without the guard: a read error counted as
    // "no primary" and promoted while the source's primary ran).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    // A source whose DCS is down answers /cluster with 503, as Patroni does then.
    let (dcs_down, _server) = crate::util::fake_server(
        Some(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"),
        20,
    );
    for url in [dead.as_str(), dcs_down.as_str()] {
        let out = sb.pgpatrol(&["standby", "promote", "--source-url", url, "--yes"]);
        assert_eq!(code(&out), 1, "{url}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("cannot read the source"),
            "{url}: {}",
            stderr(&out)
        );
        assert!(
            sb.cluster()["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["role"] == "standby_leader"),
            "{url}: still a standby cluster"
        );
    }
    one_line_error(&sb.pgpatrol(&["standby", "promote"]), "--source-gone");

    // The planned DR switchover: the source steps down under the standby leader, then the
    // standby cluster is promoted.
    let sb_port = pg_port_of(&sb.cluster(), "standby_leader");
    let out = lab.pgpatrol(&[
        "standby",
        "demote",
        "--source-host",
        "127.0.0.1",
        "--source-port",
        &sb_port,
        "--source-url",
        &dr,
        "--yes",
    ]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    assert!(lab.cluster_json()["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["role"] == "standby_leader"));
    let out = sb.pgpatrol(&[
        "standby",
        "promote",
        "--source-url",
        &main,
        "--yes",
        "-o",
        "json",
    ]);
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(code(&out), 0, "{r:#}\n{}", stderr(&out));
    assert_eq!(r["result"], "done", "{r:#}");
    // One writable leader: the DR cluster takes writes, the former source follows it.
    let dr_state = sb.state();
    let writer = dr_state
        .members
        .iter()
        .find(|m| get_json(&format!("{}/patroni", m.url()))["role"] == "primary")
        .expect("a primary in the DR cluster");
    let d = sb.dir.to_string_lossy().into_owned();
    ok(
        "psql on the promoted cluster",
        &run(&[
            "lab",
            "psql",
            "--dir",
            &d,
            "--member",
            &writer.name,
            "-c",
            "CREATE TABLE IF NOT EXISTS dr_write(x int); INSERT INTO dr_write VALUES (1)",
        ]),
    );
    eventually(
        "the former source replicates from the promoted cluster",
        Duration::from_secs(60),
        || {
            let out = lab.pgpatrol(&["sli", "--source-url", &dr, "-o", "json"]);
            serde_json::from_str::<Value>(&stdout(&out))
                .ok()
                .is_some_and(|v| {
                    v["replication_state"] == "streaming"
                        && v["replay_lag"].as_u64().is_some_and(|l| l < MB)
                })
        },
    );

    // And back: the DR cluster steps down under the lab, the lab is promoted.
    let main_port = pg_port_of(&lab.cluster_json(), "standby_leader");
    let out = sb.pgpatrol(&[
        "standby",
        "demote",
        "--source-host",
        "127.0.0.1",
        "--source-port",
        &main_port,
        "--primary-slot-name",
        "standby_standby",
        "--source-url",
        &main,
        "--yes",
    ]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let out = lab.pgpatrol(&["standby", "promote", "--source-url", &dr, "--yes"]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    eventually("the lab is healthy again", Duration::from_secs(90), || {
        lab.healthy()
    });
    assert_eq!(
        lab.psql("SELECT count(*) FROM dr_write"),
        "1",
        "what the DR cluster wrote is in the lab"
    );
}

/// A lab of its own, down when dropped.
pub(crate) struct OwnLab(pub(crate) PathBuf);

impl OwnLab {
    /// `lab up` of a lab of its own under the run's root (`NAME`), on this run's Patroni
    /// line, with `more` arguments; panics with lab up's output when it fails.
    pub(crate) fn up(name: &str, more: &[&str]) -> Self {
        let own = OwnLab(it_root().join(name));
        let d = own.0.to_string_lossy().into_owned();
        let ver = patroni_version();
        let mut args = vec![
            "lab",
            "up",
            "--dir",
            &d,
            "--patroni",
            &ver,
            "--timeout",
            "120s",
        ];
        args.extend_from_slice(more);
        ok("lab up", &run(&args));
        own
    }

    pub(crate) fn paths(&self) -> pgpatrol::lab::LabPaths {
        pgpatrol::lab::LabPaths::new(&self.0).expect("lab paths")
    }

    pub(crate) fn state(&self) -> pgpatrol::lab::LabState {
        pgpatrol::lab::LabState::load(&self.paths()).expect("lab state")
    }
}

impl Drop for OwnLab {
    fn drop(&mut self) {
        let d = self.0.to_string_lossy().into_owned();
        let _ = run(&["lab", "down", "--dir", &d]);
    }
}

pub(crate) fn an_archive_only_standby_follows_the_archive_and_a_failing_restore_command_is_seen(
    lab: &Lab,
) {
    // A source that archives its WAL, and a standby cluster fed only from that archive.
    let src = OwnLab::up("archive-src", &["--members", "1", "--archive"]);
    let s = src.0.to_string_lossy().into_owned();
    let src_state = src.state();
    let source = src_state.urls()[0].clone();
    let write = |mb: u64| {
        ok(
            "lab psql",
            &run(&[
                "lab",
                "psql",
                "--dir",
                &s,
                "-c",
                &format!("CREATE TABLE IF NOT EXISTS arch(x text); INSERT INTO arch SELECT repeat('x', 1000) FROM generate_series(1, {})", mb * 1000),
            ]),
        )
    };
    let sb = StandbyLab::up_of(
        &src.0,
        "archive-sb",
        &["--standby-mode", "archive", "--members", "2"],
    );
    let r = sli_json(&sb, &source);
    assert_eq!(r["replication_state"], "in archive recovery", "{r:#}");
    assert_eq!(r["walsender_on_source"], false, "{r:#}");
    let d = sb.dir.to_string_lossy().into_owned();
    let status = ok("lab status", &run(&["lab", "status", "--dir", &d]));
    assert!(
        status.contains("archive-only, restore_command from"),
        "{status}"
    );

    // watch, with the standby's lag against the source.
    let wdir = crate::watch::scratch(lab, "archive-watch");
    let port = crate::watch::free_port();
    let cfg = wdir.join("watch.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ninterval: 1s\ntimeout: 3s\nclusters:\n  - name: dr\n    urls: [{}]\n    username: patrol\n    password_file: {}\n    source: {source}\n",
            sb.state().urls().join(", "),
            sb.dir.join("restapi.password").display()
        ),
    )
    .unwrap();
    let _watch = crate::watch::start_watch(&wdir, &cfg, port);
    let replicating = format!("pgpatrol_standby_replicating{{cluster=\"dr\",source=\"{source}\"}}");

    // The lag follows the archive: 40 MB written are restored segment by segment (and the
    // last partial one after archive_timeout).
    write(40);
    eventually(
        "the archive-fed standby catches up",
        Duration::from_secs(90),
        || {
            sli_json(&sb, &source)["replay_lag"]
                .as_u64()
                .is_some_and(|l| l < MB)
        },
    );
    let archived = std::fs::read_dir(src.0.join("archive")).unwrap().count();
    assert!(archived >= 3, "{archived} files in the archive");

    // restore_command fails: Patroni still says `in archive recovery`; nothing is restored.
    ok(
        "edit-config",
        &sb.pgpatrol(&[
            "edit-config",
            "--set",
            "standby_cluster.restore_command=/bin/false",
            "--yes",
        ]),
    );
    // Patroni applies it at its next loop: wait until the standby leader's PostgreSQL has it.
    eventually(
        "the standby leader's restore_command to be /bin/false",
        Duration::from_secs(60),
        || {
            let leader = sb.leader();
            stdout(&run(&[
                "lab",
                "psql",
                "--dir",
                &d,
                "--member",
                &leader,
                "-c",
                "SHOW restore_command",
            ]))
            .contains("/bin/false")
        },
    );
    write(40);
    eventually("the standby 32 MB behind", Duration::from_secs(60), || {
        sli_json(&sb, &source)["replay_lag"]
            .as_u64()
            .is_some_and(|l| l >= 32 * MB)
    });
    let out = sb.pgpatrol(&[
        "doctor",
        "--source-url",
        &source,
        "--observe",
        "10s",
        "-o",
        "json",
    ]);
    assert_eq!(code(&out), 1, "{}\n{}", stdout(&out), stderr(&out));
    let d: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let check = crate::doctor::check(&d, "standby");
    assert_eq!(check["status"], "crit", "{check:#}");
    assert!(
        check["evidence"]
            .as_str()
            .unwrap()
            .contains("NOT replicating: nothing restored from the archive"),
        "{check:#}"
    );
    // watch says so once replay stood still a minute.
    crate::util::wait_for("watch: not replicating", Duration::from_secs(100), || {
        (crate::watch::sample(&crate::watch::metrics(port), &replicating)? == 0.0).then_some(())
    });
    let plan = crate::watch::plan(port);
    assert!(
        plan["dr"]["standby"]["archive_stalled_seconds"]
            .as_u64()
            .is_some_and(|s| s >= 60),
        "{plan:#}"
    );

    // A working restore_command again: the standby catches up from the archive.
    let restore = format!(
        "standby_cluster.restore_command=cp {}/%f %p",
        src.0.join("archive").display()
    );
    ok(
        "edit-config",
        &sb.pgpatrol(&["edit-config", "--set", &restore, "--yes"]),
    );
    eventually(
        "the standby catches up again",
        Duration::from_secs(90),
        || {
            sli_json(&sb, &source)["replay_lag"]
                .as_u64()
                .is_some_and(|l| l < MB)
        },
    );
    crate::util::wait_for("watch: replicating", Duration::from_secs(20), || {
        (crate::watch::sample(&crate::watch::metrics(port), &replicating)? == 1.0).then_some(())
    });
}
