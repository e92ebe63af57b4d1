//! Healing a live cluster behind the guardrails (docs/SAFETY.md names these tests):
//! exactly the lagging replica is rebuilt and the others are untouched; one at a time,
//! worst first; nothing on a paused cluster; never the leader; a running reinit is waited
//! for, not forced; a dry run changes nothing; a lost leader stops heal.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{ok, stderr, Lab, Test, MB};
use crate::util::{code, sli_settles_below, start_times, stdout, Paused};

pub fn tests() -> Vec<Test> {
    tests![
        heal_reinitializes_exactly_the_lagging_replica,
        dry_run_changes_nothing,
        heal_on_a_paused_cluster_does_nothing,
        reinit_of_the_leader_is_refused,
        a_running_reinit_is_waited_for_not_forced,
        two_lagging_replicas_are_healed_one_at_a_time_worst_first,
        killing_the_leader_while_waiting_stops_heal,
        reinit_from_leader_needs_patroni_4_1,
    ]
}

fn heal_json(lab: &Lab, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["heal", "--yes", "--report", "json"];
    all.extend_from_slice(args);
    let out = lab.pgpatrol(&all);
    let report = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}): {}\nstderr: {}",
            stdout(&out),
            stderr(&out)
        )
    });
    (code(&out), report)
}

fn other_replicas(lab: &Lab, except: &str) -> Vec<String> {
    let leader = lab.leader();
    lab.members()
        .into_iter()
        .filter(|m| *m != leader && m != except)
        .collect()
}

pub(crate) fn heal_reinitializes_exactly_the_lagging_replica(lab: &Lab) {
    let target = lab.replica();
    lab.break_lag(&target, 40);
    let before = start_times(lab);
    let (rc, report) = heal_json(lab, &["--tolerance", "5"]);
    assert_eq!(rc, 0, "{report:#}");
    let outcomes = report["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 1, "{report:#}");
    assert_eq!(outcomes[0]["member"], target.as_str());
    assert_eq!(outcomes[0]["result"], "healed");
    assert_eq!(outcomes[0]["joined_running"], false);
    let after = start_times(lab);
    assert_ne!(
        before[&target], after[&target],
        "the lagging replica was rebuilt"
    );
    let leader = lab.leader();
    assert_eq!(before[&leader], after[&leader], "the leader is untouched");
    for other in other_replicas(lab, &target) {
        assert_eq!(before[&other], after[&other], "{other} is untouched");
    }
    sli_settles_below(lab, 5, || lab.pgpatrol(&["sli"]));
    assert!(report["still_unhealthy"].as_array().unwrap().is_empty());
    // The markdown report of a healthy cluster reads as such and exits 0.
    let out = lab.pgpatrol(&["heal", "--yes"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("healthy, nothing to do"),
        "{}",
        stdout(&out)
    );
}

fn dry_run_changes_nothing(lab: &Lab) {
    let target = lab.replica();
    lab.break_lag(&target, 20);
    let before = start_times(lab);
    let out = lab.pgpatrol(&["heal", "--dry-run"]);
    assert_eq!(code(&out), 1, "a dry run that would act exits 1");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("**Reinitialize {target}**")),
        "{text}"
    );
    assert!(text.contains("dry run"), "{text}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(before, start_times(lab), "nothing was restarted");
    assert!(
        lab.member_json(&target)["lag"].as_u64().unwrap() >= 20 * MB,
        "still lagging"
    );
}

fn heal_on_a_paused_cluster_does_nothing(lab: &Lab) {
    let target = lab.replica();
    lab.break_lag(&target, 20);
    let _paused = Paused::new(lab);
    let before = start_times(lab);
    let (rc, report) = heal_json(lab, &[]);
    assert_eq!(rc, 1);
    assert_eq!(
        report["plan"]["blockers"][0]["kind"], "paused",
        "{report:#}"
    );
    assert!(report["outcomes"].as_array().unwrap().is_empty());
    let out = lab.pgpatrol(&["heal", "--yes"]);
    assert!(
        stdout(&out).contains("paused"),
        "the reason is printed: {}",
        stdout(&out)
    );
    assert_eq!(before, start_times(lab), "nothing was restarted");
}

fn reinit_of_the_leader_is_refused(lab: &Lab) {
    let leader = lab.leader();
    let before = start_times(lab);
    let out = lab.pgpatrol(&["reinit", &leader, "--yes", "--wait"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("never reinitializes the leader"),
        "{}",
        stderr(&out)
    );
    let out = lab.pgpatrol(&["reinit", &leader, "--yes", "--force"]);
    assert_eq!(code(&out), 1, "not even with --force");
    assert_eq!(before, start_times(lab));
}

fn a_running_reinit_is_waited_for_not_forced(lab: &Lab) {
    let target = lab.replica();
    // Stop the walreceiver: Patroni's reinit then takes ~10 s (postgres kills the stopped
    // child after 5 s), leaving time to meet it in progress.
    lab.break_lag(&target, 10);
    let first = ok("reinit", &lab.pgpatrol(&["reinit", &target, "--yes"]));
    assert!(first.contains("started"), "{first}");
    let out = lab.pgpatrol(&["reinit", &target, "--yes", "--wait", "--timeout", "90s"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text} {}", stderr(&out));
    assert!(
        text.contains("joined a reinitialization already running"),
        "{text}"
    );
    assert!(text.contains("streaming again"), "{text}");
}

fn two_lagging_replicas_are_healed_one_at_a_time_worst_first(lab: &Lab) {
    let leader = lab.leader();
    let replicas: Vec<String> = lab.members().into_iter().filter(|m| *m != leader).collect();
    assert!(replicas.len() >= 2, "needs two replicas");
    // The first stopped keeps missing what the second misses too: it ends up the worst.
    let (worst, second) = (replicas[1].clone(), replicas[0].clone());
    lab.break_lag(&worst, 20);
    lab.break_lag(&second, 10);
    let (rc, report) = heal_json(lab, &["--max-concurrent", "1", "--min-healthy", "0"]);
    assert_eq!(rc, 0, "{report:#}");
    let actions: Vec<&str> = report["plan"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["member"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![worst.as_str()],
        "the first slot goes to the worst"
    );
    let outcomes = report["outcomes"].as_array().unwrap();
    let order: Vec<&str> = outcomes
        .iter()
        .map(|o| o["member"].as_str().unwrap())
        .collect();
    assert_eq!(order, vec![worst.as_str(), second.as_str()], "{report:#}");
    assert!(
        outcomes.iter().all(|o| o["result"] == "healed"),
        "{report:#}"
    );
    // One at a time: the second started after the first had finished.
    let start = |o: &Value| humantime::parse_rfc3339(o["started"].as_str().unwrap()).unwrap();
    let first_end = start(&outcomes[0])
        + Duration::from_secs_f64(outcomes[0]["duration_secs"].as_f64().unwrap() - 0.1);
    assert!(
        start(&outcomes[1]) >= first_end,
        "overlapping reinits: {report:#}"
    );
}

fn killing_the_leader_while_waiting_stops_heal(lab: &Lab) {
    let target = lab.replica();
    lab.break_lag(&target, 10);
    let child = crate::harness::pgpatrol_cmd()
        .args(["heal", "--yes", "--report", "json", "--timeout", "120s"])
        .env("PATRONI_URL", lab.urls().join(","))
        .env("PATRONI_RESTAPI_USERNAME", "patrol")
        .env("PGPATROL_PASSWORD_FILE", lab.dir().join("restapi.password"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start heal");
    // The reinit of a replica with a stopped walreceiver takes ~10 s: kill the leader in it.
    std::thread::sleep(Duration::from_secs(2));
    lab.crash_leader();
    let out = child.wait_with_output().expect("heal");
    let report: Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(code(&out), 1, "{report:#}");
    let stopped = report["stopped"].as_str().unwrap_or_default();
    assert!(
        stopped.contains("leader"),
        "the report says why it stopped: {report:#}"
    );
    let outcomes = report["outcomes"].as_array().unwrap();
    assert!(
        outcomes.iter().any(|o| o["result"] == "leader_lost"),
        "{report:#}"
    );
}

fn reinit_from_leader_needs_patroni_4_1(lab: &Lab) {
    let target = lab.replica();
    let before = start_times(lab);
    let out = lab.pgpatrol(&["reinit", &target, "--from-leader", "--wait", "--yes"]);
    if crate::harness::patroni_version() == "3.0" {
        // Patroni 3.0 would ignore `from_leader`: refused before anything is sent.
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("needs Patroni 4.1.0 or later"),
            "{}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(before, start_times(lab), "nothing was restarted");
    } else {
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(stdout(&out).contains("streaming again"), "{}", stdout(&out));
        let after = start_times(lab);
        assert_ne!(before[&target], after[&target], "rebuilt");
        assert_eq!(before[&lab.leader()], after[&lab.leader()]);
    }
}
