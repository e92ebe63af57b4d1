//! The `faults` scenarios that cut or slow the network. They run on the one `--netns` lab of
//! the run (etcd and each member on a host of its own, `lab up --netns`), one after another:
//! `lab break partition` puts blackhole routes between a member and etcd, the other members
//! or this host (where pgpatrol and the observer run); `lab break dcs-slow` caps etcd's link.
//! The observer and its invariants are the other scenarios'.

use super::*;
use crate::harness::on_net;
use crate::util::report_of;

macro_rules! net_tests {
    ($($f:ident),* $(,)?) => {
        vec![$(on_net(stringify!($f), $f)),*]
    };
}

pub fn tests() -> Vec<Test> {
    net_tests![
        a_switchover_with_the_leader_cut_off_claims_nothing_it_did_not_see,
        a_switchover_whose_new_leader_is_cut_off_once_answered_is_reported_as_it_ended,
        a_switchover_to_a_candidate_this_host_cannot_reach_is_refused,
        a_rolling_restart_with_the_next_replica_cut_off_stops_and_says_what_it_did,
        heal_with_the_dcs_link_slow_rebuilds_only_the_lagging_replica,
        edit_config_with_the_leader_cut_off_from_etcd_says_what_it_changed,
        standby_promote_with_the_source_leader_cut_off_promotes_nothing,
    ]
}

/// `lab break partition --member M --from FROM`.
fn cut(lab: &Lab, member: &str, from: &str) {
    let out = lab.lab(&["break", "partition", "--member", member, "--from", from]);
    assert_eq!(
        code(&out),
        0,
        "lab break partition: {}{}",
        stdout(&out),
        stderr(&out)
    );
    say!("faults: {}", stdout(&out).trim());
}

/// Spec (issue 24, partition): synchronous mode on, the leader's host cut off from etcd and
/// from the other members (this host still reaches it), then `switchover --yes`. The
/// leader's Patroni cannot write the DCS, demotes itself after `retry_timeout`, and once its
/// leader key expires the synchronous standby takes over on its own. Never two writable,
/// every acknowledged row kept; pgpatrol says switched only for a leader the observer saw
/// writable and whose own Patroni says `primary` as pgpatrol exits; otherwise it is not
/// "switched" (exit non-zero).
fn a_switchover_with_the_leader_cut_off_claims_nothing_it_did_not_see(lab: &Lab) {
    let t0 = Instant::now();
    let dir = scratch(lab, "switchover-leader-cut");
    let audit = dir.join("audit.jsonl");
    let a = audit.display().to_string();
    let _restore = Restore(lab);
    let _ = synchronous(lab);
    let before = lab.leader();
    let obs = Observer::start(
        lab,
        &dir,
        &Allow {
            // The cut leader demoting itself, and whichever member Patroni restarts after.
            down: 2,
            leader_changes: None,
            audit: Some(audit.clone()),
        },
    );
    rows_grow(lab, 20);
    cut(lab, &before, "etcd,members");
    let out = lab.pgpatrol(&[
        "switchover",
        "--yes",
        "--timeout",
        "30s",
        "--request-timeout",
        "5s",
        "--audit-log",
        &a,
        "-o",
        "json",
    ]);
    let r = json_of("switchover", &out);
    let named_role = r["leader_after"]
        .as_str()
        .map(|l| role_of(lab, l))
        .unwrap_or_default();
    lab.repair();
    rows_grow(lab, 20);
    let v = obs.finish();
    line(
        "switchover, the leader cut off from etcd and the members",
        &v,
        code(&out),
        t0,
    );
    assert_held(&v);
    switch_agrees(&out, &r, &v, &before, &named_role);
}

/// Spec (issue 24, partition): synchronous mode on, `switchover --yes`, and the synchronous
/// standby (the only member it may switch to) cut off from etcd and the other members the
/// moment the `POST /switchover` is in the audit log. The new leader cannot keep its leader
/// key and demotes itself; Patroni elects again. Never two writable, every acknowledged row
/// kept; pgpatrol says switched only for a leader the observer saw writable, other than the
/// former one (its role as pgpatrol exits is not asked: the cut takes it away by itself).
fn a_switchover_whose_new_leader_is_cut_off_once_answered_is_reported_as_it_ended(lab: &Lab) {
    let t0 = Instant::now();
    let dir = scratch(lab, "switchover-new-leader-cut");
    let audit = dir.join("audit.jsonl");
    let _restore = Restore(lab);
    let (near, _) = synchronous(lab);
    let before = lab.leader();
    let obs = Observer::start(
        lab,
        &dir,
        &Allow {
            // The former leader restarting as a replica, and the cut new one demoting itself.
            down: 2,
            leader_changes: None,
            audit: Some(audit.clone()),
        },
    );
    rows_grow(lab, 20);
    let run = switchover_sent(lab, &dir, &audit);
    cut(lab, &near, "etcd,members");
    let out = run.finish(Duration::from_secs(180));
    let r = json_of("switchover", &out);
    lab.repair();
    rows_grow(lab, 20);
    let v = obs.finish();
    line(
        "switchover, the new leader cut off once the POST is answered",
        &v,
        code(&out),
        t0,
    );
    assert_held(&v);
    // The cut new leader steps down within `retry_timeout` of the cut, whatever pgpatrol
    // saw before: its role as pgpatrol exits is the fault's doing (seen in CI: switched
    // and done per Patroni, then the new leader a replica a moment later).
    switch_agrees_when(&out, &r, &v, &before, None);
}

/// Spec (issue 24, fail closed): `switchover --candidate R --yes` where R is a healthy
/// replica that etcd, the leader and Patroni all still reach, but this host (pgpatrol's)
/// cannot. Patroni would switch to it; pgpatrol cannot read R's own state, so it refuses or
/// stops before its one step (exit non-zero, `member_silent`) and sends nothing: no `POST
/// /switchover`, no leader change.
fn a_switchover_to_a_candidate_this_host_cannot_reach_is_refused(lab: &Lab) {
    let t0 = Instant::now();
    let dir = scratch(lab, "switchover-candidate-unreachable");
    let audit = dir.join("audit.jsonl");
    let a = audit.display().to_string();
    let _restore = Restore(lab);
    let leader = lab.leader();
    let candidate = replicas(lab)[0].clone();
    let obs = Observer::start(
        lab,
        &dir,
        &Allow {
            // The candidate: the observer runs on this host, so it cannot reach it either.
            down: 1,
            leader_changes: Some(0),
            audit: Some(audit.clone()),
        },
    );
    rows_grow(lab, 20);
    cut(lab, &candidate, "host");
    let out = lab.pgpatrol(&[
        "switchover",
        "--candidate",
        &candidate,
        "--yes",
        "--timeout",
        "30s",
        "--request-timeout",
        "3s",
        "--audit-log",
        &a,
        "-o",
        "json",
    ]);
    let r = json_of("switchover", &out);
    lab.repair();
    rows_grow(lab, 20);
    let v = obs.finish();
    line(
        &format!("switchover to {candidate}, cut off from this host"),
        &v,
        code(&out),
        t0,
    );
    assert_held(&v);
    assert_ne!(code(&out), 0, "{r:#}");
    // Refused when the plan is made, or stopped at the re-read before its one step.
    assert!(
        r["result"] == "refused" || r["result"] == "stopped",
        "{r:#}"
    );
    assert!(
        r["steps"].as_array().is_none_or(Vec::is_empty),
        "no step was taken: {r:#}"
    );
    assert!(
        posted(&audit, "/switchover").is_empty(),
        "nothing was sent: {r:#}"
    );
    assert_eq!(v["final_leader"], leader.as_str(), "{v:#}");
}

/// Spec (issue 24, partition): `restart --rolling --yes` while the observer writes; the
/// moment the first member's restart is under way, the next replica in the order is cut off
/// from etcd and the other members (this host still reaches it). The run cannot see that
/// replica back in the cluster after a restart of it (its Patroni never reaches the DCS
/// again), so it stops (exit non-zero) before the leader. The restarts Patroni accepted are
/// the ones the observer saw; one member down at a time, no leader change, nothing lost.
/// Seen, as the cut falls: (a) seconds before the re-read of that replica, which still looks
/// well (its `dcs_last_seen` a loop old): its `POST /restart` is sent and the run stops on
/// "its Patroni has not reached the DCS since PostgreSQL started"; (b) just after that
/// replica's restart ended: the run goes on to the leader's switchover, whose demotion
/// then waits at shutdown on the cut replica's walsender (up to `wal_sender_timeout`), and
/// the run stops before restarting the former leader (`former_leader_gate`). Both exit 1.
fn a_rolling_restart_with_the_next_replica_cut_off_stops_and_says_what_it_did(lab: &Lab) {
    let t0 = Instant::now();
    let dir = scratch(lab, "rolling-replica-cut");
    let audit = dir.join("audit.jsonl");
    let a = audit.display().to_string();
    let _restore = Restore(lab);
    let leader = lab.leader();
    let order = rolling_order(lab);
    let (first, next) = (order[0].clone(), order[1].clone());
    assert_ne!(next, leader, "{order:?}");
    let obs = Observer::start(
        lab,
        &dir,
        &Allow {
            down: 1,
            // The run's own switchover, when the cut came too late for it to see.
            leader_changes: Some(1),
            audit: Some(audit.clone()),
        },
    );
    rows_grow(lab, 20);
    let mut run = Running::start(
        lab,
        &dir,
        &[
            "restart",
            "--rolling",
            "--yes",
            "--timeout",
            "30s",
            "--audit-log",
            &a,
            "-o",
            "json",
        ],
    );
    wait_for(
        &format!("{first}'s POST /restart in the audit log"),
        Duration::from_secs(120),
        || (!posted(&audit, "/restart").is_empty() || run.exited().is_some()).then_some(()),
    );
    cut(lab, &next, "etcd,members");
    let out = run.finish(Duration::from_secs(300));
    let r = json_of("restart --rolling", &out);
    lab.repair();
    rows_grow(lab, 20);
    let v = obs.finish();
    line(
        &format!("rolling restart, {next} cut off during {first}'s restart"),
        &v,
        code(&out),
        t0,
    );
    assert_held(&v);
    assert_ne!(code(&out), 0, "{r:#}");
    // What Patroni accepted (`200` to `POST /restart`, in the report's requests, and the
    // former leader of a switchover step) is what the observer saw restart; a step the report
    // calls restarted is among them.
    let mut accepted: Vec<String> = r["requests"]
        .as_array()
        .map(|q| {
            q.iter()
                .filter(|q| {
                    q["status"] == 200 && q["url"].as_str().is_some_and(|u| u.ends_with("/restart"))
                })
                .filter_map(|q| q["member"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // A switchover restarts the former leader's PostgreSQL too (it demotes).
    if let Some(s) = r["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["result"] == "switched_over"))
    {
        accepted.extend(s["member"].as_str().map(str::to_owned));
    }
    accepted.sort();
    accepted.dedup();
    let seen: Vec<String> = serde_json::from_value(v["restarted"].clone()).expect("restarted");
    assert_eq!(
        accepted, seen,
        "pgpatrol's report against the observer's: {r:#}\n{v:#}"
    );
    let said = said_restarted(&r);
    assert!(said.iter().all(|m| seen.contains(m)), "{r:#}\n{v:#}");
    assert!(
        !posted(&audit, "/restart").contains(&leader),
        "the leader was not restarted: {r:#}"
    );
    // When the run reached the leader (the cut came after the next replica's restart), the
    // former leader's demotion waits on the cut replica's walsender; the run stops before
    // restarting it (`former_leader_gate`), nothing sent.
    if r["steps"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["action"] == "switchover"))
    {
        assert!(
            r["stopped"]
                .as_str()
                .is_some_and(|s| s.contains("not replicating yet after the switchover")),
            "{r:#}"
        );
    }
}

/// Spec (issue 24, slow DCS): a replica's receiver stopped while the observer writes, then
/// etcd's link capped at 64 kbit/s (8 KB a second, both ways; at 16 kbit/s the leader's
/// Patroni cannot renew its key in time and steps down by itself) and `heal --yes`. Whatever
/// heal decides on what it reads so slowly, it rebuilds nothing but that replica and never
/// the leader, one member down at a time; it says healed (exit 0) only when the observer saw
/// that replica restart.
fn heal_with_the_dcs_link_slow_rebuilds_only_the_lagging_replica(lab: &Lab) {
    let t0 = Instant::now();
    let dir = scratch(lab, "heal-dcs-slow");
    let audit = dir.join("audit.jsonl");
    let a = audit.display().to_string();
    let _restore = Restore(lab);
    let target = replicas(lab)[0].clone();
    let obs = Observer::start(
        lab,
        &dir,
        &Allow {
            down: 1,
            leader_changes: Some(0),
            audit: Some(audit.clone()),
        },
    );
    rows_grow(lab, 20);
    lab.break_lag(&target, 20);
    let slow = lab.lab(&["break", "dcs-slow", "--kbit", "64"]);
    assert_eq!(code(&slow), 0, "{}", stderr(&slow));
    say!("faults: {}", stdout(&slow).trim());
    let out = lab.pgpatrol(&[
        "heal",
        "--yes",
        "--request-timeout",
        "10s",
        "--audit-log",
        &a,
        "--report",
        "json",
    ]);
    let (rc, report) = report_of(&out);
    lab.repair();
    rows_grow(lab, 20);
    let v = obs.finish();
    line("heal, etcd's link at 64 kbit/s", &v, rc, t0);
    assert_held(&v);
    let rebuilt = reinitialized(&audit);
    assert!(
        rebuilt.iter().all(|m| *m == target),
        "only {target} may be rebuilt: {rebuilt:?}\n{report:#}"
    );
    let restarted: Vec<String> = serde_json::from_value(v["restarted"].clone()).expect("restarted");
    if rc == 0 {
        assert_eq!(report["outcomes"][0]["result"], "healed", "{report:#}");
        assert!(
            restarted.contains(&target),
            "heal says healed; the observer saw {target} restart: {v:#}"
        );
    }
}

/// Spec (issue 24, partition): synchronous mode on, the leader's host cut off from etcd
/// only (the members still stream from it), then `edit-config --pg work_mem=… --yes`.
/// Patroni cannot store the change while the DCS is out of its reach. Once the cut is
/// mended, pgpatrol's exit code agrees with what the configuration holds (exit 0 exactly
/// when work_mem was set); never two writable, nothing lost.
fn edit_config_with_the_leader_cut_off_from_etcd_says_what_it_changed(lab: &Lab) {
    let t0 = Instant::now();
    let dir = scratch(lab, "edit-config-leader-cut");
    let audit = dir.join("audit.jsonl");
    let a = audit.display().to_string();
    let _restore = Restore(lab);
    let _ = synchronous(lab);
    let leader = lab.leader();
    let obs = Observer::start(
        lab,
        &dir,
        &Allow {
            // The cut leader demoting itself, and whichever member Patroni restarts after.
            down: 2,
            leader_changes: None,
            audit: Some(audit.clone()),
        },
    );
    rows_grow(lab, 20);
    let config =
        |lab: &Lab| crate::util::get_json(&format!("{}/config", lab.url_of(&lab.leader())));
    let before = config(lab);
    let want = other_work_mem(&before);
    cut(lab, &leader, "etcd");
    let out = lab.pgpatrol(&[
        "edit-config",
        "--pg",
        &format!("work_mem={want}"),
        "--yes",
        "--request-timeout",
        "5s",
        "--audit-log",
        &a,
    ]);
    lab.repair();
    let after = config(lab);
    rows_grow(lab, 20);
    let v = obs.finish();
    line(
        "edit-config, the leader cut off from etcd",
        &v,
        code(&out),
        t0,
    );
    assert_held(&v);
    work_mem_agrees(&out, &after, &want);
    put_work_mem_back(lab, &before);
}

/// Spec (issue 24, "the source cluster partitioned during standby promote"): a standby
/// cluster (on this host's loopback) streams from this `--netns` lab; the source's leader is
/// cut off from this host (it still runs, leads and reaches etcd and its replicas: a DR
/// site that has lost sight of production). `standby promote --source-url <that leader>
/// --yes` cannot read the source, so it cannot tell there is no primary: refused (exit 1),
/// no `PATCH /config` sent, the standby cluster still a standby — never two writable
/// clusters. The source keeps every acknowledged row, no leader change.
fn standby_promote_with_the_source_leader_cut_off_promotes_nothing(lab: &Lab) {
    let t0 = Instant::now();
    let dir = scratch(lab, "standby-promote-source-cut");
    let audit = dir.join("audit.jsonl");
    let a = audit.display().to_string();
    let _restore = Restore(lab);
    let sb = crate::standby::StandbyLab::up(lab, "net-standby-promote");
    let leader = lab.leader();
    let obs = Observer::start(
        lab,
        &dir,
        &Allow {
            // The cut leader: the observer runs on this host, so it cannot reach it either.
            down: 1,
            leader_changes: Some(0),
            audit: None,
        },
    );
    rows_grow(lab, 20);
    cut(lab, &leader, "host");
    let out = sb.pgpatrol(&[
        "standby",
        "promote",
        "--source-url",
        &lab.url_of(&leader),
        "--yes",
        "--request-timeout",
        "3s",
        "--audit-log",
        &a,
    ]);
    let sb_roles: Vec<String> = sb.cluster()["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["role"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    lab.repair();
    rows_grow(lab, 20);
    let v = obs.finish();
    line(
        "standby promote, the source's leader cut off from this host",
        &v,
        code(&out),
        t0,
    );
    assert_held(&v);
    refused_sending_nothing(&out, "cannot read the source", &audit);
    assert!(
        sb_roles.iter().any(|r| r == "standby_leader")
            && !sb_roles.iter().any(|r| r == "leader" || r == "primary"),
        "still a standby cluster: {sb_roles:?}"
    );
    assert_eq!(v["final_leader"], leader.as_str(), "{v:#}");
}
