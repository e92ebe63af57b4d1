//! Reading a live cluster: `list` agrees with Patroni's own /cluster, `-o patronictl-json`
//! equals `patronictl list -f json`, the SLI sees receive and replay lag on every Patroni
//! version (3.0.4's own `lag` says 0 for a replay stall), and unknown lag is never 0.

use serde_json::Value;

use crate::harness::{ok, patroni_version, Lab, Test, MB};
use crate::util::{code, get_json, stdout, until_agree, Paused};

pub fn tests() -> Vec<Test> {
    tests![
        list_json_agrees_with_patronis_cluster,
        patronictl_json_equals_patronictl,
        sli_sees_replay_only_lag_on_every_version,
        sli_sees_a_stopped_walreceiver_as_receive_and_replay_lag,
        sli_names_unknown_members_and_exits_1,
        history_topology_and_show_config_read_the_cluster,
        config_file_is_read_like_patronictl,
    ]
}

fn list_json(lab: &Lab) -> Value {
    serde_json::from_str(&ok("list -o json", &lab.pgpatrol(&["list", "-o", "json"])))
        .expect("list JSON")
}

/// What differs between our `list -o json` and Patroni's `/cluster`, member by member.
fn list_differences(ours: &Value, theirs: &Value) -> Vec<String> {
    let (ours_m, theirs_m) = (
        ours["members"].as_array().cloned().unwrap_or_default(),
        theirs["members"].as_array().cloned().unwrap_or_default(),
    );
    if ours_m.len() != theirs_m.len() {
        return vec![format!(
            "{} members, /cluster has {}",
            ours_m.len(),
            theirs_m.len()
        )];
    }
    let mut diffs = Vec::new();
    for (o, t) in ours_m.iter().zip(&theirs_m) {
        for key in ["name", "role", "state", "timeline"] {
            if o[key] != t[key] {
                diffs.push(format!("{}: {key} {} vs {}", t["name"], o[key], t[key]));
            }
        }
        if t["role"] != "leader" {
            let receive = if t.get("receive_lag").is_some() {
                &t["receive_lag"]
            } else {
                &t["lag"]
            };
            if o["receive_lag"] != *receive {
                diffs.push(format!(
                    "{}: receive {} vs {receive}",
                    t["name"], o["receive_lag"]
                ));
            }
            if t.get("replay_lag").is_some() && o["replay_lag"] != t["replay_lag"] {
                diffs.push(format!(
                    "{}: replay {} vs {}",
                    t["name"], o["replay_lag"], t["replay_lag"]
                ));
            }
        }
    }
    diffs
}

pub(crate) fn list_json_agrees_with_patronis_cluster(lab: &Lab) {
    // The two reads are moments apart; a member's DCS key refreshed between them (every
    // loop, and a fresh lab still settles) can move a lag or a state. Read both again.
    let (ours, _) = until_agree(
        "list -o json and Patroni's /cluster",
        |_| {
            let ours = list_json(lab);
            let theirs = get_json(&format!("{}/cluster", lab.urls()[0]));
            (ours, theirs)
        },
        |ours, theirs| list_differences(ours, theirs).is_empty(),
    );
    assert_eq!(ours["scope"], "demo");
    let line = patroni_version();
    let expected = if line == "debian" { "3.0.2" } else { &line };
    assert!(ours["patroni_version"]
        .as_str()
        .unwrap()
        .starts_with(expected));
}

pub(crate) fn patronictl_json_equals_patronictl(lab: &Lab) {
    // A DCS key refreshed between the two reads: read again.
    let (ours, theirs) = until_agree(
        "list -o patronictl-json and patronictl list -f json",
        |_| {
            let theirs = lab.patronictl(&["list", "-f", "json"]);
            let theirs: Value = serde_json::from_str(&ok("patronictl list -f json", &theirs))
                .expect("patronictl JSON");
            let ours: Value = serde_json::from_str(&ok(
                "list -o patronictl-json",
                &lab.pgpatrol(&["list", "-o", "patronictl-json"]),
            ))
            .expect("our JSON");
            (ours, theirs)
        },
        |ours, theirs| ours == theirs,
    );
    // Same keys in the same order, so even text comparisons of scripts keep working.
    for (o, t) in ours
        .as_array()
        .unwrap()
        .iter()
        .zip(theirs.as_array().unwrap())
    {
        let ok: Vec<&String> = o.as_object().unwrap().keys().collect();
        let tk: Vec<&String> = t.as_object().unwrap().keys().collect();
        assert_eq!(ok, tk);
    }
}

fn sli_mb(lab: &Lab, args: &[&str]) -> u64 {
    let mut all = vec!["sli"];
    all.extend_from_slice(args);
    ok("sli", &lab.pgpatrol(&all))
        .trim()
        .parse()
        .expect("a number")
}

pub(crate) fn sli_sees_replay_only_lag_on_every_version(lab: &Lab) {
    let replica = lab.replica();
    lab.break_replay(&replica, 40);
    let replay = sli_mb(lab, &[]);
    assert!(
        replay >= 40,
        "sli said {replay} MB with replay stopped 40 MB behind"
    );
    // Receive keeps up: the walreceiver still runs.
    let receive = sli_mb(lab, &["--lag", "receive"]);
    assert!(receive < 40, "receive lag {receive} MB");
    // Patroni's own legacy `lag` (all patronictl shows on 3.0) misses it.
    let own = &lab.member_json(&replica)["lag"];
    assert!(
        own.as_u64().is_some_and(|l| l < 40 * MB),
        "Patroni's lag: {own}"
    );
    let json: Value =
        serde_json::from_str(&ok("sli -o json", &lab.pgpatrol(&["sli", "-o", "json"]))).unwrap();
    assert_eq!(json["worst"], replica.as_str());
    assert!(json["max_bytes"].as_u64().unwrap() >= 40 * MB);
    let bytes = sli_mb(lab, &["--unit", "B"]);
    assert!(bytes >= 40 * MB);
}

fn sli_sees_a_stopped_walreceiver_as_receive_and_replay_lag(lab: &Lab) {
    let replica = lab.replica();
    lab.break_lag(&replica, 40);
    // Patroni still says "streaming": only the numbers show the problem.
    assert_eq!(lab.member_json(&replica)["state"], "streaming");
    assert!(sli_mb(lab, &["--lag", "receive"]) >= 40);
    assert!(sli_mb(lab, &["--lag", "replay"]) >= 40);
    let gb = sli_mb(lab, &["--unit", "GB"]);
    assert_eq!(gb, 0, "40 MB rounds to 0 GB");
}

fn sli_names_unknown_members_and_exits_1(lab: &Lab) {
    let replica = lab.replica();
    let _paused = Paused::new(lab);
    // In maintenance mode Patroni does not restart a stopped postgres: its lag is unknown.
    let data = lab
        .state()
        .member(&replica)
        .expect("member")
        .data_dir
        .clone();
    let pid_text = std::fs::read_to_string(data.join("postmaster.pid")).expect("postmaster.pid");
    let pid: i32 = pid_text.lines().next().unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGQUIT,
    )
    .expect("stop postgres");
    let mut unknown = false;
    for _ in 0..60 {
        if lab.member_json(&replica)["lag"] == "unknown" {
            unknown = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(
        unknown,
        "Patroni never reported unknown lag: {}",
        lab.member_json(&replica)
    );

    let out = lab.pgpatrol(&["sli"]);
    assert_eq!(
        code(&out),
        1,
        "unknown lag must exit 1: {}",
        crate::harness::stderr(&out)
    );
    let err = crate::harness::stderr(&out);
    assert!(err.contains(&replica) && err.contains("unknown"), "{err}");
    // The number covers the known replicas (0 here), never pretends the unknown one is 0.
    assert_eq!(stdout(&out).trim(), "0");
    let out = lab.pgpatrol(&["sli", "--unknown-as", "9999"]);
    assert_eq!(code(&out), 0);
    assert_eq!(stdout(&out).trim(), "9999");
    let json: Value = serde_json::from_str(&stdout(&lab.pgpatrol(&["sli", "-o", "json"]))).unwrap();
    assert_eq!(json["unknown"], serde_json::json!([replica]));
    // Heal leaves it alone: lag unknown is data it does not understand (and the cluster is paused).
    let out = lab.pgpatrol(&["heal", "--yes"]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("lag unknown"), "{}", stdout(&out));
}

fn history_topology_and_show_config_read_the_cluster(lab: &Lab) {
    let ours: Value =
        serde_json::from_str(&ok("history", &lab.pgpatrol(&["history", "-o", "json"]))).unwrap();
    let theirs = get_json(&format!("{}/history", lab.urls()[0]));
    assert_eq!(
        ours.as_array().unwrap().len(),
        theirs.as_array().unwrap().len()
    );
    let table = ok("history", &lab.pgpatrol(&["history"]));
    assert!(table.contains("TL"), "{table}");

    let config: Value = serde_json::from_str(&ok(
        "show-config",
        &lab.pgpatrol(&["show-config", "-o", "json"]),
    ))
    .unwrap();
    assert_eq!(config, get_json(&format!("{}/config", lab.urls()[0])));
    let yaml = ok("show-config", &lab.pgpatrol(&["show-config"]));
    assert!(yaml.contains("loop_wait: 2"), "{yaml}");

    let tree: Value =
        serde_json::from_str(&ok("topology", &lab.pgpatrol(&["topology", "-o", "json"]))).unwrap();
    assert_eq!(tree.as_array().unwrap().len(), 1, "one root: the leader");
    assert_eq!(tree[0]["name"], lab.leader().as_str());
    assert_eq!(
        tree[0]["children"].as_array().unwrap().len(),
        lab.members().len() - 1
    );
    let table = ok("topology", &lab.pgpatrol(&["topology"]));
    assert!(table.contains("+ "), "{table}");
}

fn config_file_is_read_like_patronictl(lab: &Lab) {
    // Only -c: the REST address and credentials come from the member's patroni.yml.
    let cfg = lab.dir().join("config/pg0.yml");
    let out = crate::harness::pgpatrol_cmd()
        .args(["list", "-o", "json", "-c"])
        .arg(&cfg)
        .output()
        .expect("run");
    let v: Value = serde_json::from_str(&ok("list -c", &out)).unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), lab.members().len());
}
