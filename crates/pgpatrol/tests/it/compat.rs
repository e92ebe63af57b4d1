//! Compatibility: every Patroni line a user still runs (4.1, 4.0, 3.3, 3.0, 2.1, and Debian's
//! packaged 3.0.2), live. On 4.1 and 3.0 the whole suite runs and this topic adds the checks
//! below; on the other lines this topic is the suite, and it also runs the reading, heal and
//! watch tests that matter most, by their own names (see `tests()`).

use std::path::PathBuf;

use serde_json::Value;

use crate::harness::{full_suite, ok, patroni_version, Lab, Test};
use crate::util::get_json;

pub fn tests() -> Vec<Test> {
    let mut tests = tests![
        roles_and_states_as_the_version_writes_them,
        answers_have_the_shape_of_the_repositorys_captures,
    ];
    if !full_suite() {
        // Already in their own topics where the whole suite runs.
        tests.extend([
            crate::harness::test(
                "list_json_agrees_with_patronis_cluster",
                crate::read::list_json_agrees_with_patronis_cluster,
            ),
            crate::harness::test(
                "patronictl_json_equals_patronictl",
                crate::read::patronictl_json_equals_patronictl,
            ),
            crate::harness::test(
                "sli_sees_replay_only_lag_on_every_version",
                crate::read::sli_sees_replay_only_lag_on_every_version,
            ),
            crate::harness::test(
                "heal_reinitializes_exactly_the_lagging_replica",
                crate::heal::heal_reinitializes_exactly_the_lagging_replica,
            ),
            crate::harness::test(
                "watch_exports_lag_within_an_interval",
                crate::watch::watch_exports_lag_within_an_interval,
            ),
        ]);
    }
    tests
}

/// The running Patroni's version, from the first member's own /patroni.
fn running_version(lab: &Lab) -> String {
    let me = get_json(&format!("{}/patroni", lab.urls()[0]));
    me["patroni"]["version"]
        .as_str()
        .expect("patroni.version in /patroni")
        .to_owned()
}

fn at_least(version: &str, major: u64, minor: u64, patch: u64) -> bool {
    let v: Vec<u64> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    v.as_slice() >= [major, minor, patch].as_slice()
}

fn roles_and_states_as_the_version_writes_them(lab: &Lab) {
    let version = running_version(lab);
    let line = patroni_version();
    let expected_prefix = if line == "debian" {
        "3.0.2"
    } else {
        line.as_str()
    };
    assert!(
        version.starts_with(expected_prefix),
        "lab --patroni {line} runs Patroni {version}"
    );
    let cluster = get_json(&format!("{}/cluster", lab.urls()[0]));
    let leader = lab.leader();
    let state = lab.state();
    for (m, url) in state.members.iter().zip(state.urls()) {
        let own = get_json(&format!("{url}/patroni"));
        let listed = cluster["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|x| x["name"] == m.name.as_str()))
            .unwrap_or_else(|| panic!("{} in /cluster", m.name));
        if m.name == leader {
            // The rename of 4.0: master -> primary in /patroni; /cluster always says leader.
            let want = if at_least(&version, 4, 0, 0) {
                "primary"
            } else {
                "master"
            };
            assert_eq!(own["role"], want, "{version}: {}'s /patroni role", m.name);
            assert_eq!(listed["role"], "leader");
            assert_eq!(listed["state"], "running");
        } else {
            assert_eq!(own["role"], "replica");
            // 3.0.4 started to say `streaming` for a streaming replica (and to report
            // replication_state in /patroni); before, a replica is `running`.
            let (want, has_replication_state) = if at_least(&version, 3, 0, 4) {
                ("streaming", true)
            } else {
                ("running", false)
            };
            assert_eq!(
                listed["state"], want,
                "{version}: {}'s /cluster state",
                m.name
            );
            assert_eq!(
                own.get("replication_state").is_some(),
                has_replication_state,
                "{version}: replication_state in {}'s /patroni: {own}",
                m.name
            );
            // Split receive/replay lag is 4.1's; before, `lag` is receive lag only.
            assert_eq!(
                listed.get("replay_lag").is_some(),
                at_least(&version, 4, 1, 0),
                "{version}: {listed}"
            );
            assert!(listed["lag"].is_number(), "{version}: {listed}");
        }
    }
    // pgpatrol reads every line the same way: one leader, the states as Patroni said them,
    // lag known, and the version shown.
    let ours: Value =
        serde_json::from_str(&ok("list -o json", &lab.pgpatrol(&["list", "-o", "json"])))
            .expect("list JSON");
    assert_eq!(ours["patroni_version"], version.as_str());
    let ms = ours["members"].as_array().expect("members");
    assert_eq!(
        ms.iter().filter(|m| m["role"] == "leader").count(),
        1,
        "{ours:#}"
    );
    for m in ms.iter().filter(|m| m["role"] != "leader") {
        assert!(m["replay_lag"].is_u64(), "{version}: replay lag known: {m}");
        assert!(
            m["receive_lag"].is_u64(),
            "{version}: receive lag known: {m}"
        );
    }
    let table = ok("list", &lab.pgpatrol(&["list"]));
    assert!(table.contains(&format!("Patroni {version}")), "{table}");
    assert!(table.contains("| Leader "), "{table}");
}

fn captures_dir(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/captures")
        .join(version)
}

/// Keys Patroni sends only in some states (a walsender running, a pending restart, maintenance
/// mode, synchronous mode...): not part of a version's shape.
const CONDITIONAL: [&str; 11] = [
    "replication",
    "pending_restart",
    "pending_restart_reason",
    "scheduled_restart",
    "scheduled_switchover",
    "pause",
    "tags",
    "cluster_unlocked",
    "failsafe_mode_is_active",
    "sync_standby",
    "quorum_standby",
];

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| !CONDITIONAL.contains(&k.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    k.sort();
    k
}

/// The repository keeps captures of this version's answers (scripts/capture-patroni); the
/// live answers have the same fields, so the unit tests that parse them test what this
/// version really sends.
fn answers_have_the_shape_of_the_repositorys_captures(lab: &Lab) {
    let version = running_version(lab);
    let dir = captures_dir(&version);
    let read = |name: &str| -> Value {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (capture Patroni {version} with scripts/capture-patroni)",
                path.display()
            )
        });
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let live = get_json(&format!("{}/cluster", lab.urls()[0]));
    let kept = read("cluster.json");
    assert_eq!(keys(&live), keys(&kept), "/cluster top-level keys");
    let by_role = |c: &Value, role: &str| -> Vec<String> {
        c["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["role"] == role))
            .map(keys)
            .unwrap_or_default()
    };
    for role in ["leader", "replica"] {
        assert_eq!(
            by_role(&live, role),
            by_role(&kept, role),
            "{version}: /cluster {role} member keys"
        );
    }
    let leader = lab.leader();
    let replica = lab.replica();
    let state = lab.state();
    let url = |name: &str| state.member(name).expect("member").url();
    for (name, file) in [
        (leader.as_str(), "patroni_leader.json"),
        (replica.as_str(), "patroni_replica.json"),
    ] {
        let live = get_json(&format!("{}/patroni", url(name)));
        let kept = read(file);
        assert_eq!(
            keys(&live),
            keys(&kept),
            "{version}: /patroni keys ({file})"
        );
        assert_eq!(
            keys(&live["xlog"]),
            keys(&kept["xlog"]),
            "{version}: xlog ({file})"
        );
        assert_eq!(kept["patroni"]["version"], version.as_str());
    }
    assert!(read("history.json").is_array());
    assert!(read("config.json")["ttl"].is_number());
    assert!(dir.join("metrics_leader.txt").is_file());
}
