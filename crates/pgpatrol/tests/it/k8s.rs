//! The Kubernetes source against the API server fixture (k8s_fixture.rs) in front of the
//! live lab: the seed's variables (PATRONI_RESOURCE_NAME, NAMESPACE, CONTEXT, DISTRIBUTION,
//! LAG_TOLERANCE) select the cluster; `sli`, `list` and `heal` agree with `--url`; reads go
//! through pods/proxy and the reinitialize through pods/portforward with basic auth; every
//! misconfiguration is one line and exit 2. kubectl itself lists the fixture's pods.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::harness::{bin, ok, stderr, Lab, Test, MB};
use crate::k8s_fixture::{FakePod, FakeWorkload, Fixture, World};
use crate::util::{code, one_line_error, sli_settles_below, start_times, stdout};

pub fn tests() -> Vec<Test> {
    tests![
        kubectl_lists_the_fixture_pods,
        sli_list_and_the_other_reads_through_kubernetes_match_url,
        a_deployment_and_a_pod_select_the_same_cluster,
        heal_through_kubernetes_reinitializes_by_port_forward,
        heal_takes_the_kubernetes_lease_a_watcher_holds,
        reinit_reads_credentials_from_a_secret,
        switchover_and_pause_through_kubernetes_go_by_port_forward,
        misconfigurations_are_one_line_and_exit_2,
        watch_finds_the_cluster_through_kubernetes,
        the_roles_in_deploy_are_enough_and_needed,
        a_statefulset_scaled_3_4_3_is_followed_and_only_its_claim_deleted,
    ]
}

const NS: &str = "mydata";

fn labels(cluster: &str) -> BTreeMap<String, String> {
    [
        ("application".to_string(), "patroni".to_string()),
        ("cluster-name".to_string(), cluster.to_string()),
    ]
    .into()
}

/// The lab as Kubernetes would show it: statefulset/mypatroni-1 and deployment/mypatroni-d
/// over one pod per member (container port `patroni` = the member's REST port), a Secret
/// with the REST credentials, a namespace `locked` where pods/proxy is denied, a
/// statefulset whose pods are not ready and one whose pods have no Patroni port.
fn world(lab: &Lab) -> World {
    let mut w = World::default();
    for ns in [NS, "locked"] {
        for (i, m) in lab.state().members.iter().enumerate() {
            w.pods.push(FakePod {
                namespace: ns.into(),
                name: format!("mypatroni-1-{i}"),
                labels: labels("mypatroni-1"),
                ports: vec![
                    ("postgresql".into(), m.pg_port),
                    ("patroni".into(), m.rest_port),
                ],
                ready: true,
            });
        }
        w.workloads.push(FakeWorkload {
            kind: "StatefulSet",
            namespace: ns.into(),
            name: "mypatroni-1".into(),
            selector: labels("mypatroni-1"),
        });
    }
    w.workloads.push(FakeWorkload {
        kind: "Deployment",
        namespace: NS.into(),
        name: "mypatroni-d".into(),
        selector: labels("mypatroni-1"),
    });
    w.pods.push(FakePod {
        namespace: NS.into(),
        name: "starting-0".into(),
        labels: labels("starting"),
        ports: vec![("patroni".into(), 8008)],
        ready: false,
    });
    w.workloads.push(FakeWorkload {
        kind: "StatefulSet",
        namespace: NS.into(),
        name: "starting".into(),
        selector: labels("starting"),
    });
    w.pods.push(FakePod {
        namespace: NS.into(),
        name: "plainpg-0".into(),
        labels: labels("plainpg"),
        ports: vec![("postgresql".into(), 5432)],
        ready: true,
    });
    w.workloads.push(FakeWorkload {
        kind: "StatefulSet",
        namespace: NS.into(),
        name: "plainpg".into(),
        selector: labels("plainpg"),
    });
    let password = std::fs::read_to_string(lab.dir().join("restapi.password"))
        .expect("lab password")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    w.secrets.insert(
        (NS.into(), "patroni-rest".into()),
        [
            ("username".to_string(), "patrol".to_string()),
            ("password".to_string(), password),
        ]
        .into(),
    );
    w.denied
        .push(("locked".into(), "get".into(), "pods/proxy".into()));
    w
}

pub(crate) fn fixture(lab: &Lab) -> Fixture {
    Fixture::start(world(lab), &lab.dir().join("k8s-fixture"))
}

/// Runs pgpatrol with the seed's configuration and no URL: only Kubernetes names the
/// cluster. `extra` env entries override; an empty value removes the variable.
pub(crate) fn seeded(lab: &Lab, fx: &Fixture, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut cmd = crate::harness::pgpatrol_cmd();
    cmd.args(args)
        .env_remove("PATRONI_URL")
        .env_remove("PATRONICTL_CONFIG_FILE")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("PATRONI_RESOURCE_NAME", "statefulset/mypatroni-1")
        .env("NAMESPACE", NS)
        .env("CONTEXT", "default")
        .env("DISTRIBUTION", "Kubernetes")
        .env("LAG_TOLERANCE", "5")
        .env("KUBECONFIG", &fx.kubeconfig)
        .env("PATRONI_RESTAPI_USERNAME", "patrol")
        .env("PGPATROL_PASSWORD_FILE", lab.dir().join("restapi.password"));
    for (k, v) in extra {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin()))
}

fn kubectl_lists_the_fixture_pods(lab: &Lab) {
    let fx = fixture(lab);
    let out = Command::new("kubectl")
        .args(["--kubeconfig"])
        .arg(&fx.kubeconfig)
        .args(["get", "pods", "-n", NS, "-o", "json"])
        .output()
        .expect("kubectl (scripts/setup installs kubernetes-client)");
    assert!(out.status.success(), "kubectl failed: {}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).expect("kubectl printed JSON");
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    assert!(names.contains(&"mypatroni-1-0"), "{names:?}");
    assert_eq!(list["items"][0]["status"]["podIP"], "127.0.0.1");
    // kubectl's own table printing and label selectors work against it too.
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&fx.kubeconfig)
        .args(["get", "pods", "-l", "cluster-name=mypatroni-1"])
        .output()
        .expect("kubectl");
    assert!(out.status.success(), "kubectl failed: {}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("mypatroni-1-2"), "{table}");
    assert!(!table.contains("plainpg-0"), "{table}");
    // The StatefulSet and the 404 Status decode in kubectl as well.
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&fx.kubeconfig)
        .args(["get", "statefulset", "mypatroni-1", "-o", "json"])
        .output()
        .expect("kubectl");
    assert!(out.status.success(), "kubectl failed: {}", stderr(&out));
    let sts: Value = serde_json::from_str(&stdout(&out)).expect("kubectl printed JSON");
    assert_eq!(
        sts["spec"]["selector"]["matchLabels"]["cluster-name"],
        "mypatroni-1"
    );
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&fx.kubeconfig)
        .args(["get", "statefulset", "missing"])
        .output()
        .expect("kubectl");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("statefulsets.apps \"missing\" not found"),
        "{}",
        stderr(&out)
    );
}

fn names_roles_states(list: &Value) -> Vec<(String, String, String)> {
    let members = list["members"]
        .as_array()
        .or_else(|| list.as_array())
        .unwrap_or_else(|| panic!("no members in {list:#}"));
    let mut v: Vec<_> = members
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("role"), s("state"))
        })
        .collect();
    v.sort();
    v
}

fn sli_list_and_the_other_reads_through_kubernetes_match_url(lab: &Lab) {
    let fx = fixture(lab);
    lab.break_lag(&lab.replica(), 12);
    let by_url: u64 = ok("sli --url", &lab.pgpatrol(&["sli"]))
        .trim()
        .parse()
        .expect("a number");
    let out = seeded(lab, &fx, &["sli"], &[]);
    let by_k8s: u64 = ok("sli via k8s", &out).trim().parse().expect("a number");
    assert!(by_url >= 12, "{by_url}");
    assert_eq!(
        by_k8s, by_url,
        "the SLI through Kubernetes equals the SLI by --url"
    );

    let url_list: Value =
        serde_json::from_str(&ok("list --url", &lab.pgpatrol(&["list", "-o", "json"])))
            .expect("json");
    let k8s_list: Value = serde_json::from_str(&ok(
        "list via k8s",
        &seeded(lab, &fx, &["list", "-o", "json"], &[]),
    ))
    .expect("json");
    assert_eq!(names_roles_states(&k8s_list), names_roles_states(&url_list));
    // The other reading commands print the same through Kubernetes as by --url.
    for args in [
        &["history", "-o", "json"][..],
        &["show-config", "-o", "json"][..],
        &["topology"][..],
    ] {
        let by_url = ok(args[0], &lab.pgpatrol(args));
        assert_eq!(
            ok(args[0], &seeded(lab, &fx, args, &[])),
            by_url,
            "{args:?}"
        );
    }

    let log = fx.log();
    assert!(
        log.iter().any(|l| l == "GET statefulsets/mypatroni-1"),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("LIST pods mydata ") && l.contains("cluster-name=mypatroni-1")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("PROXY GET mypatroni-1-") && l.ends_with("/cluster")),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.starts_with("PORTFORWARD")),
        "reads never port-forward: {log:#?}"
    );
}

fn a_deployment_and_a_pod_select_the_same_cluster(lab: &Lab) {
    let fx = fixture(lab);
    let by_url = ok("sli --url", &lab.pgpatrol(&["sli"]));
    for resource in [
        "deployment/mypatroni-d",
        "pod/mypatroni-1-1",
        "sts/mypatroni-1",
    ] {
        // DISTRIBUTION is a hint: a value pgpatrol does not know changes nothing.
        let env = [
            ("PATRONI_RESOURCE_NAME", resource),
            ("DISTRIBUTION", "Rancher"),
        ];
        let out = seeded(lab, &fx, &["sli"], &env);
        assert_eq!(ok(resource, &out), by_url, "{resource}");
    }
    // Flags win over the seed's variables; the context's namespace is the default.
    let out = seeded(
        lab,
        &fx,
        &[
            "sli",
            "--k8s-resource",
            "statefulset/mypatroni-1",
            "--context",
            "default",
        ],
        &[
            ("NAMESPACE", ""),
            ("PATRONI_RESOURCE_NAME", "statefulset/nope"),
        ],
    );
    assert_eq!(ok("flags", &out), by_url);

    // KUBECONFIG as a list of files, as kubectl takes it: the fixture's context is found in
    // the second.
    let extra = lab.dir().join("k8s-fixture").join("empty-kubeconfig");
    std::fs::write(
        &extra,
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
    )
    .expect("write");
    let list = format!("{}:{}", extra.display(), fx.kubeconfig.display());
    let out = seeded(lab, &fx, &["sli"], &[("KUBECONFIG", list.as_str())]);
    assert_eq!(ok("KUBECONFIG list", &out), by_url);

    // --k8s-access direct: discovery by the API server, then straight to the pod IPs.
    let before = fx.log().len();
    let out = seeded(lab, &fx, &["sli", "--k8s-access", "direct"], &[]);
    assert_eq!(ok("direct", &out), by_url);
    let log = fx.log();
    assert!(
        !log[before..].iter().any(|l| l.starts_with("PROXY")),
        "direct does not proxy: {log:#?}"
    );
}

/// Issue 23: `pgpatrol heal --k8s-lease NAME` takes the same Kubernetes Lease as a
/// watcher's auto-heal (`heal.lease: {kubernetes: NAME}`), so a person's heal (or the
/// CronJob's) and the daemon's never run at once. While the Lease is held, heal is refused
/// with the holder named and nothing is sent; once it is free, heal takes it, heals, and
/// releases it. Only what deploy/rbac.yaml's pgpatrol-heal grants is allowed.
fn heal_takes_the_kubernetes_lease_a_watcher_holds(lab: &Lab) {
    let fx = fixture(lab);
    fx.world.lock().expect("world").allowed = Some(role_rules("pgpatrol-heal"));
    let key = (NS.to_string(), "pgpatrol-heal-lab".to_string());
    let held_by = |holder: &str| {
        json!({
            "metadata": {"name": "pgpatrol-heal-lab", "namespace": NS},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": 30,
                "renewTime": jiff::Timestamp::now().to_string(),
            },
        })
    };
    let target = lab.replica();
    lab.break_lag(&target, 20);
    others_caught_up(lab, &target);
    // Taken now, not before the lag is made: a loaded machine may spend longer than the
    // Lease's 30 s on that, and an expired Lease is one heal may take.
    fx.world
        .lock()
        .expect("world")
        .leases
        .insert(key.clone(), (1, held_by("watch-host:4242")));
    let heal = || {
        let out = seeded(
            lab,
            &fx,
            &[
                "heal",
                "--yes",
                "--k8s-lease",
                "pgpatrol-heal-lab",
                "--report",
                "json",
            ],
            &[],
        );
        crate::util::report_of(&out)
    };
    let before = start_times(lab);
    let (rc, report) = heal();
    assert_eq!(rc, 1, "{report:#}");
    let said = report["lease"].as_str().unwrap_or_default();
    assert!(
        said.contains("held by watch-host:4242") && said.contains("nothing was done"),
        "{report:#}"
    );
    assert!(
        report["outcomes"].as_array().is_some_and(Vec::is_empty),
        "{report:#}"
    );
    assert_eq!(before, start_times(lab), "nothing was rebuilt");
    assert!(
        !fx.log().iter().any(|l| l.contains("POST /reinitialize")),
        "nothing was sent"
    );
    // The watcher released it (holder cleared): heal takes it, heals, releases it.
    fx.world
        .lock()
        .expect("world")
        .leases
        .insert(key.clone(), (2, held_by("")));
    let (rc, report) = heal();
    assert_eq!(rc, 0, "{report:#}");
    assert!(
        report["lease"]
            .as_str()
            .unwrap_or_default()
            .starts_with("taken: Lease pgpatrol-heal-lab in namespace mydata"),
        "{report:#}"
    );
    assert_eq!(report["outcomes"][0]["result"], "healed", "{report:#}");
    let world = fx.world.lock().expect("world");
    let lease = &world.leases[&key].1;
    assert_eq!(
        lease["spec"]["holderIdentity"].as_str().unwrap_or_default(),
        "",
        "heal released the Lease: {lease:#}"
    );
}

fn heal_through_kubernetes_reinitializes_by_port_forward(lab: &Lab) {
    let fx = fixture(lab);
    let target = lab.replica();
    lab.break_lag(&target, 40);
    others_caught_up(lab, &target);
    // The dry-run plan through Kubernetes is the plan by --url: same actions, same skips.
    let url_plan =
        plan_summary(&lab.pgpatrol(&["heal", "--dry-run", "--report", "json", "--tolerance", "5"]));
    let k8s_plan = plan_summary(&seeded(
        lab,
        &fx,
        &["heal", "--dry-run", "--report", "json"],
        &[],
    ));
    assert_eq!(k8s_plan, url_plan);
    assert_eq!(k8s_plan.0, vec![target.clone()], "{k8s_plan:?}");
    let before = start_times(lab);
    let out = seeded(lab, &fx, &["heal", "--yes", "--report", "json"], &[]);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}): {}\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    assert_eq!(code(&out), 0, "{report:#}\n{}", stderr(&out));
    let outcomes = report["outcomes"].as_array().expect("outcomes");
    assert_eq!(outcomes.len(), 1, "{report:#}");
    assert_eq!(outcomes[0]["member"], target.as_str());
    assert_eq!(outcomes[0]["result"], "healed");
    let after = start_times(lab);
    assert_ne!(
        before[&target], after[&target],
        "the lagging replica was rebuilt"
    );
    let leader = lab.leader();
    assert_eq!(before[&leader], after[&leader], "the leader is untouched");

    let log = fx.log();
    assert!(
        log.iter()
            .any(|l| l == "PORTFORWARD-HTTP POST /reinitialize HTTP/1.0 auth"),
        "the reinitialize went by port-forward with basic auth: {log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.starts_with("PROXY POST")),
        "no write through pods/proxy (it strips Authorization): {log:#?}"
    );
    sli_settles_below(lab, 5, || seeded(lab, &fx, &["sli"], &[]));
}

/// The operations write as reinit does: by port-forward with basic auth, never through
/// pods/proxy; and they follow the cluster through Kubernetes to the end.
fn switchover_and_pause_through_kubernetes_go_by_port_forward(lab: &Lab) {
    let fx = fixture(lab);
    let before = lab.leader();
    let out = seeded(lab, &fx, &["switchover", "--yes", "-o", "json"], &[]);
    let r: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(code(&out), 0, "{r:#}\n{}", stderr(&out));
    assert_eq!(r["result"], "switched", "{r:#}");
    assert_ne!(lab.leader(), before);
    let out = seeded(lab, &fx, &["pause", "--yes", "--wait"], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let t0 = std::time::Instant::now();
    while lab.cluster_json()["pause"] != true {
        assert!(t0.elapsed().as_secs() < 10, "/cluster does not say paused");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let out = seeded(lab, &fx, &["resume", "--yes", "--wait"], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let log = fx.log();
    for line in [
        "PORTFORWARD-HTTP POST /switchover HTTP/1.0 auth",
        "PORTFORWARD-HTTP PATCH /config HTTP/1.0 auth",
    ] {
        assert!(log.iter().any(|l| l == line), "{line} not in {log:#?}");
    }
    assert!(
        !log.iter()
            .any(|l| l.starts_with("PROXY POST") || l.starts_with("PROXY PATCH")),
        "no write through pods/proxy: {log:#?}"
    );
}

/// A heal report's plan as (members acted on, (member, skip kind) pairs).
pub(crate) fn plan_summary(out: &Output) -> (Vec<String>, Vec<(String, String)>) {
    let report: Value = serde_json::from_str(&stdout(out))
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {}\n{}", stdout(out), stderr(out)));
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let actions = report["plan"]["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| s(&a["member"]))
        .collect();
    let skips = report["plan"]["skips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| (s(&k["member"]), s(&k["reason"]["kind"])))
        .collect();
    (actions, skips)
}

/// /cluster shows each member's position as of its last DCS update (every loop_wait): after
/// `break_lag` writes, the other replicas may look behind for a moment. Waits (bounded) until
/// they do not for 3 s (more than a loop: a stale pair of keys can read 0 just before the
/// leader's catches up), so that heal sees exactly one lagging replica.
pub(crate) fn others_caught_up(lab: &Lab, target: &str) {
    let leader = lab.leader();
    let mut behind = Vec::new();
    let mut since: Option<std::time::Instant> = None;
    for _ in 0..240 {
        let c = lab.cluster_json();
        behind = c["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| {
                let name = m["name"].as_str().unwrap_or_default();
                name != target
                    && name != leader
                    && m["replay_lag"]
                        .as_u64()
                        .or_else(|| m["lag"].as_u64())
                        .is_none_or(|l| l > MB)
            })
            .cloned()
            .collect();
        if behind.is_empty() {
            let t = *since.get_or_insert_with(std::time::Instant::now);
            if t.elapsed() >= std::time::Duration::from_secs(3) {
                return;
            }
        } else {
            since = None;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    panic!("besides {target} (leader {leader}), still behind: {behind:#?}");
}

fn reinit_reads_credentials_from_a_secret(lab: &Lab) {
    let fx = fixture(lab);
    let target = lab.replica();
    let before = start_times(lab);
    // No username or password in the environment: only the Secret has them.
    let out = seeded(
        lab,
        &fx,
        &[
            "reinit",
            &target,
            "--yes",
            "--wait",
            "--k8s-secret",
            "patroni-rest",
        ],
        &[
            ("PATRONI_RESTAPI_USERNAME", ""),
            ("PGPATROL_PASSWORD_FILE", ""),
        ],
    );
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let after = start_times(lab);
    assert_ne!(before[&target], after[&target], "{target} was rebuilt");
    let log = fx.log();
    assert!(
        log.iter().any(|l| l == "GET secrets/patroni-rest"),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l == "PORTFORWARD-HTTP POST /reinitialize HTTP/1.0 auth"),
        "{log:#?}"
    );
    // Without any credentials Patroni refuses, and the error says so on one line.
    let out = seeded(
        lab,
        &fx,
        &["reinit", &target, "--yes"],
        &[
            ("PATRONI_RESTAPI_USERNAME", ""),
            ("PGPATROL_PASSWORD_FILE", ""),
        ],
    );
    one_line_error(&out, "refused the credentials");
}

fn misconfigurations_are_one_line_and_exit_2(lab: &Lab) {
    let fx = fixture(lab);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("NAMESPACE", "locked")],
            "forbidden: cannot get pods/proxy in namespace locked: grant \"get\" on \"pods/proxy\"",
        ),
        (&[("CONTEXT", "prod")], "context \"prod\" is not in the kubeconfig (it has: default, other)"),
        (
            &[("PATRONI_RESOURCE_NAME", "daemonset/mypatroni-1")],
            "unknown resource kind \"daemonset\"",
        ),
        (
            &[("PATRONI_RESOURCE_NAME", "statefulset/starting")],
            "statefulset/starting in namespace mydata has no ready pod (starting-0 Pending)",
        ),
        (
            &[("PATRONI_RESOURCE_NAME", "statefulset/plainpg")],
            "pod plainpg-0 declares ports 5432 (postgresql) but none named patroni/api and not 8008: pass --k8s-port",
        ),
        (
            &[("PATRONI_RESOURCE_NAME", "statefulset/missing")],
            "statefulset missing not found in namespace mydata",
        ),
    ];
    for (env, needle) in cases {
        let out = seeded(lab, &fx, &["sli"], env);
        one_line_error(&out, needle);
    }
    // The denial is said once, as the whole message, not once per pod.
    let out = seeded(lab, &fx, &["sli"], &[("NAMESPACE", "locked")]);
    assert!(
        stderr(&out).starts_with("error: forbidden: cannot get pods/proxy"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        stderr(&out).matches("forbidden").count(),
        1,
        "{}",
        stderr(&out)
    );
    // A denied list names its verb too.
    fx.world
        .lock()
        .expect("world")
        .denied
        .push((NS.into(), "list".into(), "pods".into()));
    one_line_error(
        &seeded(lab, &fx, &["list"], &[]),
        "forbidden: cannot list pods in namespace mydata: grant \"list\" on \"pods\"",
    );
}

fn watch_finds_the_cluster_through_kubernetes(lab: &Lab) {
    use crate::util::wait_for;
    use crate::watch::{free_port, metrics, sample, scratch, start_watch};
    use std::time::Duration;

    let fx = fixture(lab);
    let dir = scratch(lab, "k8s");
    let port = free_port();
    let cfg = dir.join("watch.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ninterval: 1s\ntimeout: 3s\nclusters:\n  - name: mypatroni-1\n    kubernetes:\n      resource: statefulset/mypatroni-1\n      namespace: {NS}\n      context: default\n      kubeconfig: {}\n    slo:\n      objective: 99%\n      threshold: 5MB\n      window: 10m\n",
            fx.kubeconfig.display()
        ),
    )
    .expect("write watch.yml");
    let _w = start_watch(&dir, &cfg, port);
    let m = metrics(port);
    assert_eq!(
        sample(&m, "pgpatrol_cluster_up{cluster=\"mypatroni-1\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pgpatrol_cluster_members{cluster=\"mypatroni-1\"}"),
        Some(lab.members().len() as f64)
    );
    let replica = lab.replica();
    lab.break_lag(&replica, 20);
    let series = format!(
        "pgpatrol_member_lag_bytes{{cluster=\"mypatroni-1\",member=\"{replica}\",kind=\"replay\"}}"
    );
    wait_for("lag in /metrics", Duration::from_secs(5), || {
        sample(&metrics(port), &series).filter(|v| *v >= 20.0 * 1024.0 * 1024.0)
    });
    let log = fx.log();
    assert!(
        log.iter().any(|l| l.starts_with("PROXY GET mypatroni-1-")),
        "{log:#?}"
    );
}

/// The (verb, resource) pairs of a Role or ClusterRole in deploy/rbac.yaml.
pub(crate) fn role_rules(role: &str) -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/rbac.yaml");
    let text = std::fs::read_to_string(path).expect("deploy/rbac.yaml");
    let mut out = Vec::new();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("rbac.yaml is YAML");
    for v in docs {
        if !(v["kind"] == "Role" || v["kind"] == "ClusterRole") || v["metadata"]["name"] != role {
            continue;
        }
        for rule in v["rules"].as_array().expect("rules") {
            for r in rule["resources"].as_array().expect("resources") {
                for verb in rule["verbs"].as_array().expect("verbs") {
                    out.push((
                        verb.as_str().unwrap_or_default().to_string(),
                        r.as_str().unwrap_or_default().to_string(),
                    ));
                }
            }
        }
    }
    assert!(!out.is_empty(), "no Role {role} in {path}");
    out
}

fn the_roles_in_deploy_are_enough_and_needed(lab: &Lab) {
    let fx = fixture(lab);
    // Only what pgpatrol-read grants: sli and list work, heal cannot reinitialize.
    fx.world.lock().expect("world").allowed = Some(role_rules("pgpatrol-read"));
    let by_url = ok("sli --url", &lab.pgpatrol(&["sli"]));
    assert_eq!(
        ok("sli as pgpatrol-read", &seeded(lab, &fx, &["sli"], &[])),
        by_url
    );
    ok("list as pgpatrol-read", &seeded(lab, &fx, &["list"], &[]));
    let target = lab.replica();
    let out = seeded(lab, &fx, &["reinit", &target, "--yes"], &[]);
    assert_ne!(code(&out), 0, "{}", stdout(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("forbidden: cannot create pods/portforward in namespace mydata"),
        "{text}"
    );
    // pgpatrol-heal: heal reinitializes, with the Secret for credentials.
    fx.world.lock().expect("world").allowed = Some(role_rules("pgpatrol-heal"));
    lab.break_lag(&target, 20);
    others_caught_up(lab, &target);
    let out = seeded(
        lab,
        &fx,
        &[
            "heal",
            "--yes",
            "--k8s-secret",
            "patroni-rest",
            "--report",
            "json",
        ],
        &[
            ("PATRONI_RESTAPI_USERNAME", ""),
            ("PGPATROL_PASSWORD_FILE", ""),
        ],
    );
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}): {}\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    assert_eq!(code(&out), 0, "{report:#}");
    assert_eq!(report["outcomes"][0]["result"], "healed", "{report:#}");
}

/// `member add` and `member remove --delete-pvc` through a StatefulSet's `scale`
/// subresource, with only deploy/rbac.yaml's pgpatrol-scale allowed. The fixture backs the
/// StatefulSet by a lab of its own: a scale there starts or stops a real Patroni member.
/// 3 → 4: the new member is followed until it streams. 4 → 3: the highest ordinal goes, its
/// member key with it, and exactly its claim is deleted.
fn a_statefulset_scaled_3_4_3_is_followed_and_only_its_claim_deleted(_lab: &Lab) {
    let own = crate::standby::OwnLab::up("k8s-scale", &[]);
    let paths = own.paths();
    let state = pgpatrol::lab::LabState::load(&paths).unwrap();
    let mut w = World::default();
    for (i, m) in state.members.iter().enumerate() {
        let pod = format!("scaled-{i}");
        w.pods.push(FakePod {
            namespace: NS.into(),
            name: pod.clone(),
            labels: labels("scaled"),
            ports: vec![
                ("postgresql".into(), m.pg_port),
                ("patroni".into(), m.rest_port),
            ],
            ready: true,
        });
        w.pvcs.push((NS.into(), format!("pgdata-{pod}")));
        w.pod_logs.insert((NS.into(), pod), m.log.clone());
    }
    w.workloads.push(FakeWorkload {
        kind: "StatefulSet",
        namespace: NS.into(),
        name: "scaled".into(),
        selector: labels("scaled"),
    });
    w.scaled.insert((NS.into(), "scaled".into()), own.0.clone());
    w.replicas.insert((NS.into(), "scaled".into()), 3);
    w.allowed = Some(role_rules("pgpatrol-scale"));
    let fx = Fixture::start(w, &own.0.join("k8s-fixture"));
    let superuser = pgpatrol::lab::config::superuser_password(
        &std::fs::read_to_string(paths.config("pg0")).unwrap(),
    )
    .unwrap();
    let pw = own.0.join("superuser.password");
    std::fs::write(&pw, format!("{superuser}\n")).unwrap();
    let pgpatrol = |args: &[&str]| {
        crate::harness::pgpatrol_cmd()
            .args(args)
            .env_remove("PATRONI_URL")
            .env_remove("PATRONICTL_CONFIG_FILE")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("PGPATROL_LAB_DIR")
            .env("PATRONI_RESOURCE_NAME", "statefulset/scaled")
            .env("NAMESPACE", NS)
            .env("KUBECONFIG", &fx.kubeconfig)
            .env("PATRONI_RESTAPI_USERNAME", "patrol")
            .env("PGPATROL_PASSWORD_FILE", paths.password())
            .output()
            .expect("run pgpatrol")
    };
    let json = |what: &str, out: &Output| -> Value {
        serde_json::from_str(&stdout(out))
            .unwrap_or_else(|e| panic!("{what}: {e}: {}\n{}", stdout(out), stderr(out)))
    };
    let pods = || -> Vec<String> {
        let mut p: Vec<String> = fx
            .world
            .lock()
            .unwrap()
            .pods
            .iter()
            .map(|p| p.name.clone())
            .collect();
        p.sort();
        p
    };

    // 3 → 4, followed until the new member streams.
    let audit = own.0.join("audit.jsonl");
    let a = audit.to_string_lossy().into_owned();
    let b = pw.to_string_lossy().into_owned();
    let out = pgpatrol(&[
        "member",
        "add",
        "-o",
        "json",
        "--timeout",
        "120s",
        "--audit-log",
        &a,
        "--pg-user",
        "postgres",
        "--pg-password-file",
        &b,
    ]);
    let r = json("member add", &out);
    assert_eq!(code(&out), 0, "{r:#}\n{}", stderr(&out));
    let lines = crate::util::audit_lines(&audit);
    assert!(
        lines
            .iter()
            .any(|l| l["method"] == "KUBE" && l["url"] == "statefulset/scaled scaled 3 -> 4"),
        "{lines:#?}"
    );
    assert_eq!(r["result"], "streaming", "{r:#}");
    assert_eq!(r["members"].as_array().unwrap().len(), 1, "{r:#}");
    assert_eq!(pods(), ["scaled-0", "scaled-1", "scaled-2", "scaled-3"]);
    let listed = json("list", &pgpatrol(&["list", "-o", "json"]));
    assert_eq!(listed["members"].as_array().unwrap().len(), 4, "{listed:#}");

    // 4 → 3: the highest ordinal goes, and only its claim.
    let out = pgpatrol(&[
        "member",
        "remove",
        "--yes",
        "--delete-pvc",
        "-o",
        "json",
        "--pg-user",
        "postgres",
        "--pg-password-file",
        &b,
    ]);
    let r = json("member remove", &out);
    assert_eq!(code(&out), 0, "{r:#}\n{}", stderr(&out));
    assert_eq!(r["result"], "removed", "{r:#}");
    let done = r["done"].to_string();
    assert!(done.contains("scaled 4 -> 3: pod scaled-3"), "{r:#}");
    assert!(done.contains("claim pgdata-scaled-3 deleted"), "{r:#}");
    assert!(
        r["slot"].as_str().is_some_and(|s| s.starts_with("slot ")),
        "{r:#}"
    );
    assert_eq!(pods(), ["scaled-0", "scaled-1", "scaled-2"]);
    let mut claims: Vec<String> = fx
        .world
        .lock()
        .unwrap()
        .pvcs
        .iter()
        .map(|(_, c)| c.clone())
        .collect();
    claims.sort();
    assert_eq!(
        claims,
        ["pgdata-scaled-0", "pgdata-scaled-1", "pgdata-scaled-2"]
    );
    let listed = json("list", &pgpatrol(&["list", "-o", "json"]));
    let names: Vec<&str> = listed["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{listed:#}");
    let log = fx.log();
    for line in [
        "PATCH statefulsets/scaled/scale replicas=4",
        "PATCH statefulsets/scaled/scale replicas=3",
        "DELETE persistentvolumeclaims/pgdata-scaled-3",
    ] {
        assert!(log.iter().any(|l| l == line), "{line} not in {log:#?}");
    }

    // `report` through Kubernetes reads each pod's log (pods/log, granted to pgpatrol-read).
    fx.world.lock().unwrap().allowed = Some(role_rules("pgpatrol-read"));
    let out_dir = own.0.join("report");
    let o = out_dir.to_string_lossy().into_owned();
    let out = pgpatrol(&["report", "-o", &o]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let archive = stdout(&out).trim().to_string();
    ok(
        "tar",
        &Command::new("tar")
            .args(["-xzf", &archive, "-C", &o])
            .output()
            .expect("tar"),
    );
    let top = out_dir.join(
        std::path::Path::new(&archive)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".tar.gz"),
    );
    for pod in ["scaled-0", "scaled-1", "scaled-2"] {
        let log = std::fs::read_to_string(top.join(format!("logs/{pod}.log")))
            .unwrap_or_else(|e| panic!("logs/{pod}.log: {e}"));
        assert!(log.lines().count() > 1, "{pod}: {log}");
    }
    let missing = std::fs::read_to_string(top.join("MISSING.txt")).unwrap();
    assert!(!missing.contains("logs/"), "{missing}");
}
