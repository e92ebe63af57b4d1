//! The operations against the live lab (issue: switchover, failover, pause/resume, restart,
//! reload, edit-config, flush, the audit log): each one acts, is followed to its end in the
//! cluster, and says what happened in its exit code; refusals send nothing.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{ok, stderr, Lab, Test};
use crate::util::{
    audit_lines, audit_path, code, eventually, fake_server, json_of, one_line_error, replicas,
    start_times, stdout,
};

pub fn tests() -> Vec<Test> {
    tests![
        switchover_to_a_named_candidate_and_to_the_best_one,
        a_lagging_candidate_is_refused_and_a_dry_run_sends_nothing,
        a_scheduled_switchover_is_listed_cancelled_and_run_at_its_time,
        emergency_failover_promotes_the_member_with_the_most_data,
        pause_and_resume_wait_for_every_member,
        edit_config_then_a_rolling_restart_clears_the_pending_restart,
        a_rolling_restart_stops_before_the_leader_when_a_replica_is_broken,
        reload_answers_per_member,
        edit_config_names_a_change_made_between_its_read_and_its_patch,
        heal_and_reinit_write_audit_lines,
        bad_input_is_one_line_and_exit_2,
        members_are_added_followed_and_removed_behind_guards,
    ]
}

/// Waits until /cluster shows `member` as a replica that streams (the former leader back).
fn wait_streaming(lab: &Lab, member: &str) {
    let t0 = Instant::now();
    loop {
        // The member streams, and every replica says the leader's timeline (a replica
        // publishes the new one at its next Patroni loop; until then a takeover's pre-flight
        // rightly counts it behind).
        let c = lab.cluster_json();
        let members = c["members"].as_array().cloned().unwrap_or_default();
        let m = members
            .iter()
            .find(|m| m["name"] == member)
            .cloned()
            .unwrap_or(Value::Null);
        let role = m["role"].as_str().unwrap_or_default();
        let state = m["state"].as_str().unwrap_or_default();
        let leader_tl = members
            .iter()
            .find(|m| m["role"] == "leader")
            .map(|m| m["timeline"].clone());
        let on_leaders_timeline = members
            .iter()
            .filter(|m| m["role"] != "leader")
            .all(|m| m["timeline"].is_null() || Some(&m["timeline"]) == leader_tl.as_ref());
        if role == "replica" && (state == "streaming" || state == "running") && on_leaders_timeline
        {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{member} does not stream again on the leader's timeline: {c}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub(crate) fn switchover_to_a_named_candidate_and_to_the_best_one(lab: &Lab) {
    let before = lab.leader();
    let target = lab.replica();
    let audit = audit_path(lab, "switchover");
    let a = audit.to_string_lossy().into_owned();
    let out = lab.pgpatrol(&[
        "switchover",
        "--candidate",
        &target,
        "--yes",
        "-o",
        "json",
        "--audit-log",
        &a,
    ]);
    let r = json_of("switchover", &out);
    assert_eq!(code(&out), 0, "{r:#}\n{}", stderr(&out));
    assert_eq!(r["result"], "switched", "{r:#}");
    assert_eq!(r["leader_before"], before.as_str());
    assert_eq!(r["leader_after"], target.as_str());
    assert_eq!(lab.leader(), target);
    // The figure is measured: a switchover stops writes for a moment, never for the whole run.
    let gap = r["write_gap"]["longest_secs"].as_f64().expect("write_gap");
    let total = r["total_secs"].as_f64().unwrap();
    assert!(gap > 0.0 && gap <= total, "gap {gap}, total {total}");
    assert!(r["write_gap"]["polls"].as_u64().unwrap() > 5, "{r:#}");
    // Followed to the end: the former leader replicates when it returns.
    let m = lab.member_json(&before);
    assert_eq!(m["role"], "replica", "{m}");
    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["operation"], "switchover");
    assert_eq!(lines[0]["method"], "POST");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["body"]["candidate"], target.as_str());
    assert!(lines[0]["url"].as_str().unwrap().ends_with("/switchover"));

    // Without a candidate: the best one is chosen, the table and the figure are printed.
    wait_streaming(lab, &before);
    let out = lab.pgpatrol(&["switchover", "--yes"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}\n{}", stderr(&out));
    assert!(text.contains("Can take over"), "{text}");
    assert!(text.contains("no writable leader for"), "{text}");
    assert_ne!(lab.leader(), target, "{text}");
    wait_streaming(lab, &target);
}

pub(crate) fn a_lagging_candidate_is_refused_and_a_dry_run_sends_nothing(lab: &Lab) {
    let leader = lab.leader();
    let [near, far] = <[String; 2]>::try_from(replicas(lab)).expect("two replicas");
    lab.break_lag(&far, 20);
    let audit = audit_path(lab, "refused");
    let a = audit.to_string_lossy().into_owned();
    let out = lab.pgpatrol(&[
        "switchover",
        "--candidate",
        &far,
        "--yes",
        "--audit-log",
        &a,
    ]);
    assert_eq!(code(&out), 1, "{}\n{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("refused: {far} cannot take over"))
            && err.contains("over maximum_lag_on_failover")
            && err.contains("nothing was sent"),
        "{err}"
    );
    assert!(
        audit_lines(&audit).is_empty(),
        "nothing sent, nothing audited"
    );
    assert_eq!(lab.leader(), leader);
    // With -o json the refusal is the result on stdout: the reason and every candidate.
    let out = lab.pgpatrol(&["switchover", "--candidate", &far, "--yes", "-o", "json"]);
    assert_eq!(code(&out), 1, "{}\n{}", stdout(&out), stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)));
    assert_eq!(v["operation"], "switchover", "{v:#}");
    assert_eq!(v["result"], "refused", "{v:#}");
    // The refusal is core's plan value: no step, the refusal with its kind.
    assert_eq!(v["plan"]["refusal"]["kind"], "unsafe", "{v:#}");
    assert_eq!(v["plan"]["steps"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["exit"]["code"], 1, "{v:#}");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("{far} cannot take over"))),
        "{v:#}"
    );
    let far_entry = v["candidates"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == far.as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(far_entry["eligible"], false, "{v:#}");
    assert_eq!(lab.leader(), leader);

    // The best choice skips the lagging member.
    let out = lab.pgpatrol(&["switchover", "--dry-run", "--candidate", &near]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("dry run: would send POST {}", ""))
            && text.contains("/switchover {\"leader\":"),
        "{text}"
    );
    let out = lab.pgpatrol(&["switchover", "--dry-run", "-o", "json", "--audit-log", &a]);
    let r = json_of("switchover --dry-run", &out);
    assert_eq!(r["result"], "dry_run");
    assert_eq!(r["plan"]["steps"][0]["action"], "switchover", "{r:#}");
    assert_eq!(r["plan"]["steps"][0]["to"], near.as_str(), "{r:#}");
    assert_eq!(r["candidate"], near.as_str());
    assert_eq!(r["requests"][0]["body"]["candidate"], near.as_str());
    assert!(r["requests"][0]["status"].is_null());
    // The audit log has a line for every request sent: none.
    assert!(audit_lines(&audit).is_empty(), "a dry run sends nothing");
    assert_eq!(lab.leader(), leader, "a dry run changes nothing");
    lab.repair();
}

fn rfc3339_in(secs: u64) -> String {
    let t = std::time::SystemTime::now() + Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn a_scheduled_switchover_is_listed_cancelled_and_run_at_its_time(lab: &Lab) {
    let leader = lab.leader();
    let at = rfc3339_in(120);
    let out = lab.pgpatrol(&["switchover", "--scheduled", &at, "--yes"]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("switchover scheduled at"),
        "{}",
        stdout(&out)
    );
    let listed = json_of("list", &lab.pgpatrol(&["list", "-o", "json"]));
    assert!(
        listed["scheduled_switchover"]["at"].is_string(),
        "{listed:#}"
    );
    let table = ok("list", &lab.pgpatrol(&["list"]));
    assert!(table.contains("Switchover scheduled at"), "{table}");
    let out = lab.pgpatrol(&["flush", "switchover", "-o", "json"]);
    let r = json_of("flush", &out);
    assert_eq!(code(&out), 0, "{r:#}");
    assert_eq!(r["steps"][0]["result"], "cancelled", "{r:#}");
    eventually(
        "the cancelled switchover leaves /cluster",
        Duration::from_secs(10),
        || {
            json_of("list", &lab.pgpatrol(&["list", "-o", "json"]))
                .get("scheduled_switchover")
                .is_none()
        },
    );
    let out = lab.pgpatrol(&["flush", "switchover"]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("no switchover is scheduled"));

    // A scheduled restart the same way: listed, then cancelled by flush restart.
    let replica = lab.replica();
    let out = lab.pgpatrol(&[
        "restart",
        &replica,
        "--scheduled",
        &rfc3339_in(300),
        "--yes",
        "-o",
        "json",
    ]);
    let r = json_of("restart --scheduled", &out);
    assert_eq!(code(&out), 0, "{r:#}");
    assert_eq!(r["steps"][0]["result"], "scheduled", "{r:#}");
    let table = ok("list", &lab.pgpatrol(&["list"]));
    assert!(table.contains("Scheduled restart"), "{table}");
    // Never two members down on a schedule (fails without the guard: the same schedule
    // went to every member, and all restarted at once): every member at one time is
    // refused, and so is a second member while one schedule stands. Nothing is sent.
    let other = lab
        .members()
        .into_iter()
        .find(|m| *m != leader && *m != replica)
        .expect("a third member");
    for args in [
        vec![
            "restart",
            "--pending",
            "--scheduled",
            &rfc3339_in(300),
            "--yes",
        ],
        vec!["restart", &other, "--scheduled", &rfc3339_in(600), "--yes"],
    ] {
        let out = lab.pgpatrol(&args);
        assert_eq!(
            code(&out),
            1,
            "{args:?}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    }
    let out = lab.pgpatrol(&[
        "restart",
        "--pending",
        "--scheduled",
        &rfc3339_in(300),
        "--yes",
        "--dry-run",
        "-o",
        "json",
    ]);
    let r = json_of("restart --scheduled --dry-run", &out);
    assert_eq!(code(&out), 1, "{r:#}");
    assert_eq!(r["result"], "refused", "{r:#}");
    for m in [&leader, &other] {
        assert!(
            lab.member_json(m).get("scheduled_restart").is_none(),
            "{m} has no schedule"
        );
    }
    let out = lab.pgpatrol(&["flush", "restart", "-o", "json"]);
    let r = json_of("flush restart", &out);
    assert_eq!(code(&out), 0, "{r:#}");
    assert_eq!(r["steps"][0]["member"], replica.as_str(), "{r:#}");
    assert_eq!(r["steps"][0]["result"], "cancelled", "{r:#}");
    eventually(
        "the cancelled restart leaves /cluster",
        Duration::from_secs(10),
        || lab.member_json(&replica).get("scheduled_restart").is_none(),
    );

    // One left to run happens at its time, not before.
    let at = std::time::SystemTime::now() + Duration::from_secs(10);
    let stamp = humantime::format_rfc3339_seconds(at).to_string();
    ok(
        "switchover --scheduled",
        &lab.pgpatrol(&["switchover", "--scheduled", &stamp, "--yes"]),
    );
    let t0 = Instant::now();
    loop {
        // Mid-switchover no member runs as leader for a moment: not yet a result.
        if lab.leader_now().is_some_and(|now| now != leader) {
            let early = at.duration_since(std::time::SystemTime::now()).ok();
            assert!(
                early.is_none_or(|e| e < Duration::from_secs(1)),
                "switched {early:?} before its time"
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the scheduled switchover never ran"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    wait_streaming(lab, &leader);
}

/// Resumes the cluster when dropped (also when the test fails).
struct Resume<'a>(&'a Lab);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        let _ = self.0.pgpatrol(&["resume", "--yes", "--wait"]);
    }
}

pub(crate) fn emergency_failover_promotes_the_member_with_the_most_data(lab: &Lab) {
    let [near, far] = <[String; 2]>::try_from(replicas(lab)).expect("two replicas");
    // `far` stops receiving while the leader writes: the replicas hold different data.
    lab.break_lag(&far, 20);
    let _resume = Resume(lab);
    let out = lab.pgpatrol(&["pause", "--wait", "--yes"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    lab.crash_leader();
    // Choosing the member with less data is refused, --yes or not: only
    // --accept-data-loss (or its name typed on a terminal) takes that risk. Fails without
    // the guard: --yes used to answer the one question and promote it.
    for args in [&["--yes"][..], &[][..], &["--yes", "--dry-run"][..]] {
        let mut all = vec!["failover", "--candidate", far.as_str()];
        all.extend_from_slice(args);
        let out = lab.pgpatrol(&all);
        assert_eq!(
            code(&out),
            1,
            "{args:?}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(err.contains("less WAL than"), "{err}");
        assert!(
            err.contains("refused") && err.contains("--accept-data-loss"),
            "{err}"
        );
        assert!(err.contains(&format!("or choose {near}")), "{err}");
        assert!(
            stdout(&out).contains(&format!("most data: {near}")),
            "{}",
            stdout(&out)
        );
    }
    let out = lab.pgpatrol(&["failover", "--candidate", &far, "--yes", "-o", "json"]);
    let r = json_of("failover refused", &out);
    assert_eq!(code(&out), 1, "{r:#}");
    assert_eq!(r["result"], "refused", "{r:#}");
    assert!(
        r["data_at_risk_bytes"].as_u64().unwrap() > 10 << 20,
        "{r:#}"
    );
    assert_ne!(
        lab.leader_now().as_deref(),
        Some(far.as_str()),
        "nothing was promoted"
    );
    let out = lab.pgpatrol(&["failover", "--candidate", &near, "--yes", "-o", "json"]);
    let r = json_of("failover", &out);
    assert_eq!(code(&out), 0, "{r:#}\n{}", stderr(&out));
    assert_eq!(r["result"], "switched", "{r:#}");
    assert_eq!(r["leader_after"], near.as_str());
    let pos = |n: &str| {
        r["positions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(pos(&near)["behind_leader"], 0, "{r:#}");
    assert!(
        pos(&far)["behind_leader"].as_u64().unwrap() > 10 << 20,
        "{r:#}"
    );
    assert_eq!(lab.leader(), near);
    let out = lab.pgpatrol(&["resume", "--wait", "--yes"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    eventually("/cluster says resumed", Duration::from_secs(10), || {
        lab.cluster_json().get("pause").is_none()
    });
    lab.repair();
}

pub(crate) fn pause_and_resume_wait_for_every_member(lab: &Lab) {
    let _resume = Resume(lab);
    // A dry run: the plan and the PATCH it would send, nothing sent.
    let out = lab.pgpatrol(&["pause", "--dry-run", "-o", "json"]);
    let r = json_of("pause --dry-run", &out);
    assert_eq!(code(&out), 0, "{r:#}");
    assert_eq!(r["result"], "dry_run", "{r:#}");
    assert_eq!(r["plan"]["steps"][0]["action"], "pause", "{r:#}");
    assert_eq!(r["requests"][0]["body"]["pause"], true, "{r:#}");
    assert!(lab.cluster_json().get("pause").is_none(), "not paused");
    let out = lab.pgpatrol(&["pause", "--wait", "--yes", "-o", "json"]);
    let r = json_of("pause", &out);
    assert_eq!(code(&out), 0, "{r:#}");
    assert_eq!(r["result"], "done");
    assert_eq!(r["lagging"], serde_json::json!([]));
    for url in lab.urls() {
        let s = crate::util::get_json(&format!("{url}/patroni"));
        assert_eq!(s["pause"], true, "{url}: {s}");
    }
    let out = lab.pgpatrol(&["pause", "--yes"]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("already paused"), "{}", stdout(&out));
    // Through patroni.yml alone (no URL): as patronictl -c finds the cluster.
    let cfg = lab.dir().join("config/pg0.yml");
    let out = crate::harness::pgpatrol_cmd()
        .args(["resume", "--wait", "--yes", "-c"])
        .arg(&cfg)
        .env_remove("PATRONI_URL")
        .output()
        .expect("run pgpatrol");
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    for url in lab.urls() {
        let s = crate::util::get_json(&format!("{url}/patroni"));
        assert_ne!(s["pause"], true, "{url}: {s}");
    }
    let out = lab.pgpatrol(&["resume"]);
    assert!(stdout(&out).contains("not paused"), "{}", stdout(&out));
}

/// Counts, while it runs, the most members that were down at once.
struct DownPoller {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl DownPoller {
    fn start(urls: Vec<String>, members: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut worst = 0;
            let mut seen = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                for url in &urls {
                    let (status, body) = crate::util::http("GET", &format!("{url}/cluster"), None);
                    let Ok(c) = serde_json::from_str::<Value>(&body) else {
                        continue;
                    };
                    if status != 200 {
                        continue;
                    }
                    let up = c["members"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        // A replica between two streams (the hand-over) reports "in
                        // archive recovery" for a loop: its postgres is up.
                        .filter(|m| {
                            matches!(
                                m["state"].as_str(),
                                Some("running" | "streaming" | "in archive recovery")
                            )
                        })
                        .count();
                    let down = members.saturating_sub(up);
                    if down > worst {
                        worst = down;
                        seen.push(c.to_string());
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            (worst, seen)
        });
        DownPoller { stop, handle }
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("poller")
    }
}

pub(crate) fn edit_config_then_a_rolling_restart_clears_the_pending_restart(lab: &Lab) {
    let config = json_of("show-config", &lab.pgpatrol(&["show-config", "-o", "json"]));
    let now = config["postgresql"]["parameters"]["max_connections"]
        .as_u64()
        .or_else(|| {
            config["postgresql"]["parameters"]["max_connections"]
                .as_str()
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(100);
    let want = if now == 110 { 120 } else { 110 };
    let out = lab.pgpatrol(&[
        "edit-config",
        "--pg",
        &format!("max_connections={want}"),
        "--yes",
    ]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}\n{}", stderr(&out));
    assert!(text.contains("--- dynamic configuration (DCS)"), "{text}");
    assert!(
        text.contains(&format!("+    max_connections: {want}")),
        "{text}"
    );
    assert!(
        text.contains("needs a PostgreSQL restart to take effect: max_connections"),
        "{text}"
    );
    assert!(
        text.contains("the DCS holds the change (read back)"),
        "{text}"
    );
    let stored = json_of("show-config", &lab.pgpatrol(&["show-config", "-o", "json"]));
    assert_eq!(
        stored["postgresql"]["parameters"]["max_connections"]
            .to_string()
            .trim_matches('"'),
        want.to_string()
    );
    for m in lab.members() {
        assert!(
            text.contains(&format!("{m} has a pending restart")),
            "{text}"
        );
    }
    // The same edit again changes nothing.
    let out = lab.pgpatrol(&[
        "edit-config",
        "--pg",
        &format!("max_connections={want}"),
        "--yes",
    ]);
    assert!(stdout(&out).contains("not changed"), "{}", stdout(&out));

    let leader = lab.leader();
    let before_replicas = replicas(lab);
    let poller = DownPoller::start(lab.urls(), lab.members().len());
    let out = lab.pgpatrol(&["restart", "--rolling", "--pending", "--yes", "-o", "json"]);
    let (worst, seen) = poller.finish();
    let r = json_of("restart", &out);
    assert_eq!(code(&out), 0, "{r:#}\n{}", stderr(&out));
    assert!(worst <= 1, "{worst} members down at once: {seen:?}");
    let steps = r["steps"].as_array().unwrap();
    let order: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s["member"].as_str().unwrap(), s["action"].as_str().unwrap()))
        .collect();
    // Replicas first, one at a time, then the hand-over, then the former leader.
    assert_eq!(order.len(), 4, "{r:#}");
    let first_two: BTreeSet<&str> = order[..2].iter().map(|(m, _)| *m).collect();
    assert_eq!(
        first_two,
        before_replicas
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
    );
    assert!(order[..2].iter().all(|(_, a)| *a == "restart"), "{order:?}");
    assert_eq!(order[2], (leader.as_str(), "switchover"), "{order:?}");
    assert_eq!(order[3].0, leader.as_str());
    assert_ne!(lab.leader(), leader, "the leader changed");
    let c = lab.cluster_json();
    for m in c["members"].as_array().unwrap() {
        assert_ne!(m["pending_restart"], true, "{m}");
    }
}

pub(crate) fn a_rolling_restart_stops_before_the_leader_when_a_replica_is_broken(lab: &Lab) {
    let leader = lab.leader();
    let reps = replicas(lab);
    // The replica restarted second is the broken one: the run must stop before the first.
    lab.break_lag(&reps[1], 10);
    let before = start_times(lab);
    // The dry run shows the refusal the run will stop on (the gate runs in a dry run too).
    let out = lab.pgpatrol(&["restart", "--rolling", "--dry-run", "-o", "json"]);
    let r = json_of("restart --dry-run", &out);
    assert_eq!(code(&out), 1, "{r:#}");
    // The plan is the whole run (replicas, hand-over, former leader); the dry run stops
    // where the real run would, before the first step.
    let planned: Vec<&str> = r["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        planned,
        ["restart", "restart", "switchover", "restart"],
        "{r:#}"
    );
    assert_eq!(r["result"], "stopped", "{r:#}");
    assert_eq!(r["steps"], serde_json::json!([]), "{r:#}");
    let why = r["stopped"].as_str().unwrap_or_default();
    assert!(
        why.contains(&reps[1]) && why.contains("a second member would be down"),
        "{r:#}"
    );
    // So does a dry run of a plain restart of the healthy replica (fails without the gate
    // in its dry run: it printed the request and exited 0).
    let out = lab.pgpatrol(&["restart", &reps[0], "--dry-run", "-o", "json"]);
    let r = json_of("restart NAME --dry-run", &out);
    assert_eq!(code(&out), 1, "{r:#}");
    let why = r["stopped"].as_str().unwrap_or_default();
    assert!(
        why.contains(&reps[1]) && why.contains("a second member would be down"),
        "{r:#}"
    );
    assert_eq!(before, start_times(lab), "a dry run restarts nothing");
    let out = lab.pgpatrol(&[
        "restart",
        "--rolling",
        "--yes",
        "-o",
        "json",
        "--timeout",
        "60s",
    ]);
    let r = json_of("restart", &out);
    assert_eq!(code(&out), 1, "{r:#}");
    let why = r["stopped"].as_str().unwrap();
    assert!(
        why.contains(&reps[1]) && why.contains("a second member would be down"),
        "{why}"
    );
    assert!(
        r["untouched"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == leader.as_str()),
        "{r:#}"
    );
    let after = start_times(lab);
    assert_eq!(
        before[&leader], after[&leader],
        "the leader was not touched"
    );
    assert_eq!(lab.leader(), leader);
    lab.repair();
}

pub(crate) fn reload_answers_per_member(lab: &Lab) {
    let out = lab.pgpatrol(&["reload", "--yes", "-o", "json", "--settle", "3s"]);
    let r = json_of("reload", &out);
    assert_eq!(code(&out), 0, "{r:#}");
    let members = r["members"].as_array().unwrap();
    assert_eq!(members.len(), lab.members().len());
    assert!(members.iter().all(|m| m["result"] == "accepted"), "{r:#}");
    assert!(r["pending_restart"].is_array());
    let one = lab.replica();
    let out = lab.pgpatrol(&["reload", &one, "--settle", "1s"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.contains(&format!("reload {one}: accepted")), "{text}");
    assert_eq!(text.matches("reload pg").count(), 1, "{text}");
}

pub(crate) fn heal_and_reinit_write_audit_lines(lab: &Lab) {
    let target = lab.replica();
    lab.break_lag(&target, 20);
    let audit = audit_path(lab, "heal");
    let a = audit.to_string_lossy().into_owned();
    let out = lab.pgpatrol(&["heal", "--yes", "--tolerance", "5", "--audit-log", &a]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["operation"], "heal");
    assert_eq!(lines[0]["member"], target.as_str());
    assert_eq!(lines[0]["status"], 200);
    assert!(lines[0]["url"].as_str().unwrap().ends_with("/reinitialize"));
    // A refused reinit is audited too (the leader: pgpatrol refuses before sending).
    let leader = lab.leader();
    let out = lab.pgpatrol(&["reinit", &leader, "--yes", "--audit-log", &a]);
    assert_eq!(code(&out), 1);
    assert_eq!(audit_lines(&audit).len(), 1, "a refusal sends nothing");
}

pub(crate) fn bad_input_is_one_line_and_exit_2(lab: &Lab) {
    let leader = lab.leader();
    let replica = lab.replica();
    one_line_error(
        &lab.pgpatrol(&["switchover", "--candidate", "pg9", "--yes"]),
        "no member named \"pg9\"",
    );
    one_line_error(
        &lab.pgpatrol(&["switchover", "--candidate", &leader, "--yes"]),
        "is already the leader",
    );
    one_line_error(
        &lab.pgpatrol(&["switchover", "--leader", &replica, "--yes"]),
        "is not the leader",
    );
    one_line_error(
        &lab.pgpatrol(&["switchover", "--scheduled", "2030-01-01T10:00", "--yes"]),
        "has no time zone",
    );
    one_line_error(
        &lab.pgpatrol(&["restart", "pg9", "--yes"]),
        "no member named \"pg9\"",
    );
    one_line_error(
        &lab.pgpatrol(&["edit-config", "--pg", "max_connections", "--yes"]),
        "NAME=VALUE",
    );
    one_line_error(
        &lab.pgpatrol(&["failover", "--candidate", &replica, "--yes"]),
        "is running: use `pgpatrol switchover",
    );
    // Not on a terminal and no --yes: nothing happens.
    one_line_error(&lab.pgpatrol(&["switchover"]), "add --yes");
    // Wrong credentials: Patroni refuses the request; pgpatrol says so in one line.
    let wrong = lab.dir().join("wrong.password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let w = wrong.to_string_lossy().into_owned();
    one_line_error(
        &lab.pgpatrol(&[
            "switchover",
            "--candidate",
            &replica,
            "--yes",
            "--password-file",
            &w,
        ]),
        "refused the credentials",
    );
    assert_eq!(lab.leader(), leader);
    // An unreachable leader: /cluster names it, its API does not answer.
    let mut c = lab.cluster_json();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for m in c["members"].as_array_mut().unwrap() {
        if m["name"] == leader.as_str() {
            m["api_url"] = format!("http://127.0.0.1:{dead}/patroni").into();
        } else {
            // A frozen copy: a lag caught mid-loop would refuse the candidate first.
            for key in ["lag", "receive_lag", "replay_lag"] {
                if m.get(key).is_some() {
                    m[key] = 0.into();
                }
            }
        }
    }
    let body = c.to_string();
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (url, _server) = fake_server(Some(Box::leak(resp.into_bytes().into_boxed_slice())), 50);
    one_line_error(
        &lab.pgpatrol(&[
            "switchover",
            "--url",
            &url,
            "--candidate",
            &replica,
            "--yes",
        ]),
        "cannot connect to",
    );
    assert_eq!(lab.leader(), leader);
}

/// Spec (docs/SAFETY.md §10): an edit that someone else's change overtakes between
/// edit-config's read and its PATCH is stopped before the PATCH (exit 1, the key named),
/// never sent on top of it nor kept silently. The race is made certain: edit-config waits
/// at its question on a terminal (script(1)) while another edit lands.
pub(crate) fn edit_config_names_a_change_made_between_its_read_and_its_patch(lab: &Lab) {
    use std::io::{Read, Write};
    struct Reset<'a>(&'a Lab);
    impl Drop for Reset<'_> {
        fn drop(&mut self) {
            let _ = self.0.pgpatrol(&[
                "edit-config",
                "--pg",
                "log_min_duration_statement=null",
                "--pg",
                "work_mem=null",
                "--yes",
            ]);
        }
    }
    let _reset = Reset(lab);
    let state = lab.state();
    let paths = pgpatrol::lab::LabPaths::new(lab.dir()).expect("lab paths");
    let cmd = format!(
        "{} edit-config --pg log_min_duration_statement=1000",
        crate::harness::bin()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("PATRONI_URL", state.urls().join(","))
        .env("PATRONI_RESTAPI_USERNAME", pgpatrol::lab::REST_USER)
        .env("PGPATROL_PASSWORD_FILE", paths.password())
        .env_remove("PATRONICTL_CONFIG_FILE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script(1)");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(all.clone());
        }
        all
    });
    // edit-config has read the configuration and waits at its question.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("edit-config printed nothing");
        if seen.contains("Apply these changes?") {
            break;
        }
        assert!(Instant::now() < deadline, "no question: {seen}");
    }
    // Someone else's edit lands meanwhile.
    ok(
        "the other edit",
        &lab.pgpatrol(&["edit-config", "--pg", "work_mem=8MB", "--yes"]),
    );
    writeln!(stdin, "y").expect("answer");
    drop(stdin);
    let status = child.wait().expect("script(1)");
    let all = reader.join().expect("reader");
    assert_eq!(status.code(), Some(1), "{all}");
    assert!(
        all.contains("changed between the read and the PATCH")
            && all.contains("postgresql.parameters.work_mem")
            && all.contains("nothing was sent"),
        "{all}"
    );
    // The other edit stands, and this one was not sent on top of it: the runner read the
    // configuration again before the PATCH and stopped (fails without that check: the
    // PATCH went out and log_min_duration_statement became 1000).
    let cfg = crate::util::get_json(&format!("{}/config", lab.urls()[0]));
    assert_eq!(
        cfg["postgresql"]["parameters"]["work_mem"], "8MB",
        "{cfg:#}"
    );
    assert!(
        cfg["postgresql"]["parameters"]
            .get("log_min_duration_statement")
            .is_none(),
        "{cfg:#}"
    );
}

/// `member add` and `member remove` on a lab of their own (the shared lab keeps its three
/// members): a fourth member is followed until it streams; a dry run changes nothing; the
/// leader is refused without --switchover and the only synchronous standby always; with
/// --switchover the leader role moves first, then the member goes and its key with it.
fn members_are_added_followed_and_removed_behind_guards(_lab: &Lab) {
    use crate::harness::{patroni_version, run};
    let own = crate::standby::OwnLab::up("members", &[]);
    let d = own.0.to_string_lossy().into_owned();
    let paths = own.paths();
    let pgpatrol = |args: &[&str]| {
        let state = pgpatrol::lab::LabState::load(&paths).unwrap();
        crate::harness::pgpatrol_cmd()
            .args(args)
            .env("PATRONI_URL", state.urls().join(","))
            .env("PATRONI_RESTAPI_USERNAME", "patrol")
            .env("PGPATROL_PASSWORD_FILE", paths.password())
            .env("PATRONICTL_CONFIG_FILE", paths.config("pg0"))
            .env("PGPATROL_LAB_DIR", &own.0)
            .output()
            .expect("run pgpatrol")
    };
    let cluster = || json_of("list", &pgpatrol(&["list", "-o", "json"]));
    let names = || -> Vec<String> {
        cluster()["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    };
    let role_of = |role: &str| -> Option<String> {
        cluster()["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == role)
            .map(|m| m["name"].as_str().unwrap().to_string())
    };

    // Added, and followed until Patroni lists it streaming.
    let out = pgpatrol(&["member", "add", "-o", "json", "--timeout", "120s"]);
    let r = json_of("member add", &out);
    assert_eq!(code(&out), 0, "{r:#}\n{}", crate::harness::stderr(&out));
    assert_eq!(r["result"], "streaming", "{r:#}");
    assert_eq!(r["members"][0]["name"], "pg3", "{r:#}");
    assert!(
        crate::harness::stderr(&out).contains("in its data directory"),
        "progress: {}",
        crate::harness::stderr(&out)
    );
    assert_eq!(names().len(), 4);

    // A dry run of the default (the highest ordinal) changes nothing.
    let out = pgpatrol(&["member", "remove", "--dry-run"]);
    assert_eq!(code(&out), 0, "{}", crate::harness::stderr(&out));
    assert!(
        stdout(&out).contains("would remove pg3 from the lab"),
        "{}",
        stdout(&out)
    );
    assert_eq!(names().len(), 4, "a dry run removes nothing");

    // The leader: refused without --switchover, nothing touched.
    let leader = role_of("leader").expect("a leader");
    let out = pgpatrol(&["member", "remove", &leader, "--yes"]);
    assert_eq!(code(&out), 1, "{}", crate::harness::stderr(&out));
    assert!(
        crate::harness::stderr(&out).contains("add --switchover"),
        "{}",
        crate::harness::stderr(&out)
    );
    assert_eq!(names().len(), 4);
    assert_eq!(role_of("leader").as_deref(), Some(leader.as_str()));

    // The only synchronous standby: refused.
    ok(
        "edit-config",
        &pgpatrol(&["edit-config", "--set", "synchronous_mode=true", "--yes"]),
    );
    let sync = crate::util::wait_for("a synchronous standby", Duration::from_secs(60), || {
        role_of("sync_standby")
    });
    let out = pgpatrol(&["member", "remove", &sync, "--yes", "-o", "json"]);
    let r = json_of("member remove", &out);
    assert_eq!(code(&out), 1, "{r:#}");
    assert_eq!(r["result"], "refused", "{r:#}");
    assert!(
        r["refusal"]["reason"]
            .as_str()
            .is_some_and(|w| w.contains("only synchronous standby")),
        "{r:#}"
    );
    assert!(names().contains(&sync));
    ok(
        "edit-config",
        &pgpatrol(&["edit-config", "--set", "synchronous_mode=false", "--yes"]),
    );
    eventually("no synchronous standby", Duration::from_secs(60), || {
        role_of("sync_standby").is_none()
    });

    // With --switchover: the role moves first, then the member goes, its key with it, and
    // with --drop-slot the slot Patroni kept for it on the new leader.
    let out = pgpatrol(&[
        "member",
        "remove",
        &leader,
        "--switchover",
        "--drop-slot",
        "--yes",
        "-o",
        "json",
    ]);
    let r = json_of("member remove --switchover", &out);
    // Patroni 4.0+ keeps a gone member's slot for member_slots_ttl and creates it again when
    // dropped (seen here): the slot is left, said, and the exit is 1; before 4.0 it goes.
    let v4 = patroni_version().as_str() >= "4.0";
    assert_eq!(
        code(&out),
        if v4 { 1 } else { 0 },
        "{r:#}\n{}",
        crate::harness::stderr(&out)
    );
    assert_eq!(
        r["result"],
        if v4 { "removed_slot_kept" } else { "removed" },
        "{r:#}"
    );
    assert!(
        r["done"][0]
            .as_str()
            .is_some_and(|d| d.starts_with("switchover from")),
        "{r:#}"
    );
    let after = names();
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(!after.contains(&leader), "{leader} still listed: {after:?}");
    let new_leader = role_of("leader").expect("a leader");
    assert_ne!(new_leader, leader);
    let slot = r["slot"].as_str().unwrap_or_default();
    if v4 {
        assert!(
            slot.starts_with(&format!("slot {leader} not dropped: Patroni "))
                && slot.contains("member_slots_ttl"),
            "{r:#}"
        );
    } else {
        assert!(
            slot.starts_with(&format!("slot {leader} dropped on the leader {new_leader}"))
                || slot.starts_with(&format!("slot {leader}: none on the leader")),
            "{r:#}"
        );
        // And it stays gone over several Patroni loops (loop_wait 2 s).
        let slots = || {
            stdout(&run(&[
                "lab",
                "psql",
                "--dir",
                &d,
                "--member",
                &new_leader,
                "-c",
                &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{leader}'"),
            ]))
            .trim()
            .to_string()
        };
        let mut absent = 0;
        eventually(
            "the removed member's slot absent for 5 s",
            Duration::from_secs(30),
            || {
                absent = if slots() == "0" { absent + 1 } else { 0 };
                absent >= 20
            },
        );
    }
    // --drop-slot without a PostgreSQL login is refused before anything is done.
    let out = crate::harness::pgpatrol_cmd()
        .args(["member", "remove", "--drop-slot", "--yes"])
        .env(
            "PATRONI_URL",
            pgpatrol::lab::LabState::load(&paths)
                .unwrap()
                .urls()
                .join(","),
        )
        .env("PGPATROL_LAB_DIR", &own.0)
        .env_remove("PATRONICTL_CONFIG_FILE")
        .output()
        .expect("run pgpatrol");
    one_line_error(&out, "--drop-slot drops the slot");
    assert_eq!(names().len(), 3);
}
