//! Patroni's Kubernetes DCS through the API server fixture: the objects are written in the
//! exact shape Patroni's `dcs/kubernetes.py` writes them (ConfigMaps `<scope>-config` and
//! `<scope>-leader`, or Endpoints `<scope>` with subsets and `<scope>-config`; labels
//! `cluster-name` and `application`; each pod's `status` annotation), filled with the lab's
//! real values (its etcd keys: the same JSON `touch_member` writes), and pod role labels as
//! 4.x (`primary`) or 3.x (`master`) sets them. Registered under the `k8s` topic.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::{ok, Lab, Test};
use crate::k8s_fixture::{FakeObject, FakePod, FakeWorkload, Fixture, World};
use crate::util::{http, one_line_error, until_agree};

pub fn tests() -> Vec<Test> {
    tests![
        the_kubernetes_dcs_in_configmaps_reads_like_rest,
        the_kubernetes_dcs_in_endpoints_reads_like_rest,
        without_k8s_dcs_the_dcs_answers_when_no_rest_api_does,
        kubernetes_dcs_misconfigurations_are_one_line,
        two_watchers_with_a_kubernetes_lease_heal_once,
        sli_and_list_through_exec_equal_url,
        heal_through_exec_reinitializes_with_auth_on_stdin,
    ]
}

const NS: &str = "mydata";

/// The lab's etcd keys under its scope, decoded: relative key → value.
fn lab_keys(lab: &Lab) -> BTreeMap<String, String> {
    let s = lab.state();
    let prefix = format!("/service/{}/", s.scope);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut end = prefix.as_bytes().to_vec();
    if let Some(l) = end.last_mut() {
        *l += 1;
    }
    let body = json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end)}).to_string();
    let (status, text) = http(
        "POST",
        &format!("http://127.0.0.1:{}/v3/kv/range", s.etcd.client_port),
        Some(&body),
    );
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("range JSON");
    let dec = |x: &Value| {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(x.as_str().unwrap_or_default())
            .expect("base64");
        String::from_utf8(raw).expect("UTF-8")
    };
    v["kvs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            (
                dec(&kv["key"]).trim_start_matches(&prefix).to_string(),
                dec(&kv["value"]),
            )
        })
        .collect()
}

/// Patroni's labels on every object it creates (`kubernetes.labels` + the scope label).
fn labels(scope: &str) -> BTreeMap<String, String> {
    [
        ("application".to_string(), "patroni".to_string()),
        ("cluster-name".to_string(), scope.to_string()),
    ]
    .into()
}

/// The lab as a Patroni cluster on the Kubernetes DCS: statefulset/<scope>, one pod per
/// member named after it (Patroni's member name is the pod name), and the DCS objects.
fn world(lab: &Lab, use_endpoints: bool) -> World {
    let s = lab.state();
    let scope = s.scope.clone();
    let keys = lab_keys(lab);
    let leader = keys.get("leader").cloned().unwrap_or_default();
    let v4 = matches!(
        s.patroni,
        pgpatrol::lab::PatroniVersion::V4_1 | pgpatrol::lab::PatroniVersion::V4_0
    );
    let mut w = World::default();
    for m in &s.members {
        let mut l = labels(&scope);
        // touch_member: the leader gets leader_label_value (primary in 4.x, master in 3.x),
        // a running replica follower_label_value (replica).
        let role = if m.name == leader {
            if v4 {
                "primary"
            } else {
                "master"
            }
        } else {
            "replica"
        };
        l.insert("role".into(), role.into());
        w.pods.push(FakePod {
            namespace: NS.into(),
            name: m.name.clone(),
            labels: l,
            ports: vec![
                ("postgresql".into(), m.pg_port),
                ("patroni".into(), m.rest_port),
            ],
            ready: true,
        });
        if let Some(status) = keys.get(&format!("members/{}", m.name)) {
            w.pod_annotations.insert(
                (NS.into(), m.name.clone()),
                [("status".to_string(), status.clone())].into(),
            );
        }
    }
    w.workloads.push(FakeWorkload {
        kind: "StatefulSet",
        namespace: NS.into(),
        name: scope.clone(),
        selector: labels(&scope),
    });
    let kind = if use_endpoints {
        "Endpoints"
    } else {
        "ConfigMap"
    };
    // As kubernetes.py writes it: `datetime.now(tzutc).isoformat()`.
    let now = jiff::Timestamp::now().to_string().replace('Z', "+00:00");
    // The status key's optime, as kubernetes.py puts it on the leader object.
    let status: Value = keys
        .get("status")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let mut leader_ann: BTreeMap<String, String> = [
        ("leader", leader.clone()),
        ("acquireTime", now.clone()),
        ("renewTime", now),
        ("ttl", "20".to_string()),
        ("transitions", "0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(optime) = status["optime"].as_u64() {
        leader_ann.insert("optime".into(), optime.to_string());
    } else if let Some(o) = keys.get("optime/leader") {
        leader_ann.insert("optime".into(), o.clone());
    }
    if let Some(slots) = status.get("slots").filter(|s| !s.is_null()) {
        leader_ann.insert("slots".into(), slots.to_string());
    }
    let mut config_ann = BTreeMap::new();
    for k in ["config", "initialize", "history"] {
        if let Some(v) = keys.get(k) {
            config_ann.insert(k.to_string(), v.clone());
        }
    }
    let leader_member = s.members.iter().find(|m| m.name == leader);
    w.objects.push(FakeObject {
        kind,
        namespace: NS.into(),
        name: if use_endpoints {
            scope.clone()
        } else {
            format!("{scope}-leader")
        },
        labels: labels(&scope),
        annotations: leader_ann,
        // Endpoints mode: the leader's pod IP and PostgreSQL port (`_update_leader_with_retry`).
        subsets: use_endpoints.then(|| {
            json!([{
                "addresses": [{"ip": "127.0.0.1", "nodeName": "node-1",
                               "targetRef": {"kind": "Pod", "namespace": NS, "name": leader}}],
                "ports": [{"name": "postgresql", "port": leader_member.map_or(5432, |m| m.pg_port), "protocol": "TCP"}],
            }])
        }),
    });
    w.objects.push(FakeObject {
        kind,
        namespace: NS.into(),
        name: format!("{scope}-config"),
        labels: labels(&scope),
        annotations: config_ann,
        subsets: None,
    });
    w
}

fn pgpatrol(fx: &Fixture, scope: &str, args: &[&str]) -> Output {
    crate::harness::pgpatrol_cmd()
        .args(args)
        .env_remove("PATRONI_URL")
        .env_remove("PATRONICTL_CONFIG_FILE")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("PATRONI_SCOPE")
        .env("PATRONI_RESOURCE_NAME", format!("statefulset/{scope}"))
        .env("NAMESPACE", NS)
        .env("KUBECONFIG", &fx.kubeconfig)
        .output()
        .expect("run pgpatrol")
}

fn json_of(what: &str, out: &Output) -> Value {
    let text = ok(what, out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
}

fn reads_like_rest(lab: &Lab, use_endpoints: bool) {
    let dir = lab.dir().join(if use_endpoints {
        "k8s-dcs-ep"
    } else {
        "k8s-dcs-cm"
    });
    let fx = Fixture::start(world(lab, use_endpoints), &dir);
    // Only what deploy/rbac.yaml's pgpatrol-read grants.
    fx.world.lock().expect("world").allowed = Some(crate::k8s::role_rules("pgpatrol-read"));
    let scope = lab.state().scope;
    let _ = until_agree(
        "list --url and list --k8s-dcs",
        |n| {
            if n > 0 {
                // The copy of the DCS is a snapshot; the members write theirs every loop. A
                // fresh copy each try, so that both sides can meet (what the fixture allows
                // and what it logged stay).
                let fresh = world(lab, use_endpoints);
                let mut w = fx.world.lock().expect("world");
                w.objects = fresh.objects;
                w.pod_annotations = fresh.pod_annotations;
                w.pods = fresh.pods;
            }
            let rest = json_of("list --url", &lab.pgpatrol(&["list", "-o", "json"]));
            let k8s = json_of(
                "list --k8s-dcs",
                &pgpatrol(&fx, &scope, &["list", "--k8s-dcs", "-o", "json"]),
            );
            (rest, k8s)
        },
        |rest, k8s| rest == k8s,
    );
    let log = fx.log();
    let kind = if use_endpoints {
        "endpoints"
    } else {
        "configmaps"
    };
    assert!(
        log.iter()
            .any(|l| l.starts_with(&format!("LIST {kind} {NS} cluster-name={scope}"))),
        "{log:?}"
    );
    // The cluster-wide read came from the DCS objects, not a member's /cluster.
    assert!(!log.iter().any(|l| l.contains("/proxy/cluster")), "{log:?}");
    // history and show-config from the config object's annotations.
    assert_eq!(
        json_of(
            "history --k8s-dcs",
            &pgpatrol(&fx, &scope, &["history", "--k8s-dcs", "-o", "json"])
        ),
        json_of("history --url", &lab.pgpatrol(&["history", "-o", "json"]))
    );
    assert_eq!(
        ok(
            "show-config --k8s-dcs",
            &pgpatrol(&fx, &scope, &["show-config", "--k8s-dcs"])
        ),
        ok("show-config --url", &lab.pgpatrol(&["show-config"]))
    );
}

/// Spec: ConfigMaps mode (Patroni's default): `list --k8s-dcs` equals `list --url`.
fn the_kubernetes_dcs_in_configmaps_reads_like_rest(lab: &Lab) {
    reads_like_rest(lab, false);
}

/// Spec: Endpoints mode (`use_endpoints: true`): the leader record on the `<scope>`
/// Endpoints; `list --k8s-dcs` equals `list --url`.
fn the_kubernetes_dcs_in_endpoints_reads_like_rest(lab: &Lab) {
    reads_like_rest(lab, true);
}

/// Spec: without --k8s-dcs the members' REST APIs are read; when none answers (every pod's
/// proxy refused here), or no pod is ready, the snapshot comes from the Kubernetes DCS.
fn without_k8s_dcs_the_dcs_answers_when_no_rest_api_does(lab: &Lab) {
    let mut w = world(lab, false);
    w.denied
        .push((NS.into(), "get".into(), "pods/proxy".into()));
    let fx = Fixture::start(w, &lab.dir().join("k8s-dcs-fallback"));
    let scope = lab.state().scope;
    let v = json_of(
        "list with REST refused",
        &pgpatrol(&fx, &scope, &["list", "-o", "json"]),
    );
    assert_eq!(v["members"].as_array().map(Vec::len), Some(3), "{v:#}");
    assert_eq!(
        v["members"]
            .as_array()
            .map(|ms| ms.iter().filter(|m| m["role"] == "leader").count()),
        Some(1)
    );
    drop(fx);
    // No pod ready (Patroni's REST API is the readiness probe): the DCS still answers.
    let mut w = world(lab, false);
    for p in &mut w.pods {
        p.ready = false;
    }
    let fx = Fixture::start(w, &lab.dir().join("k8s-dcs-unready"));
    let v = json_of(
        "list with no pod ready",
        &pgpatrol(&fx, &scope, &["list", "-o", "json"]),
    );
    assert_eq!(v["members"].as_array().map(Vec::len), Some(3), "{v:#}");
}

/// Spec: bad input on the Kubernetes DCS is one line, exit 2: no objects for the scope, a
/// status annotation that is not Patroni's JSON, RBAC refusing configmaps.
fn kubernetes_dcs_misconfigurations_are_one_line(lab: &Lab) {
    let scope = lab.state().scope;
    let mut w = world(lab, false);
    w.objects.clear();
    let fx = Fixture::start(w, &lab.dir().join("k8s-dcs-empty"));
    one_line_error(
        &pgpatrol(&fx, &scope, &["list", "--k8s-dcs"]),
        "no Patroni ConfigMaps or Endpoints labelled cluster-name=",
    );
    drop(fx);
    let mut w = world(lab, false);
    let first = lab.state().members[0].name.clone();
    w.pod_annotations.insert(
        (NS.into(), first.clone()),
        [("status".to_string(), "{not json".to_string())].into(),
    );
    let fx = Fixture::start(w, &lab.dir().join("k8s-dcs-garbled"));
    one_line_error(
        &pgpatrol(&fx, &scope, &["list", "--k8s-dcs"]),
        &format!("pod {first} annotation status does not hold Patroni's member data"),
    );
    drop(fx);
    let mut w = world(lab, false);
    w.denied
        .push((NS.into(), "list".into(), "configmaps".into()));
    let fx = Fixture::start(w, &lab.dir().join("k8s-dcs-rbac"));
    one_line_error(
        &pgpatrol(&fx, &scope, &["list", "--k8s-dcs"]),
        "grant \"list\" on \"configmaps\"",
    );
}

/// Spec: the heal lock as a Kubernetes Lease (`lease: {kubernetes: NAME}`): two watchers of
/// the same cluster through the fixture (which refuses a stale resourceVersion with 409, as
/// the API server does) reinitialize the lagging replica once between them; the Lease names
/// one holder.
fn two_watchers_with_a_kubernetes_lease_heal_once(lab: &Lab) {
    use crate::util::wait_for;
    use crate::watch::{free_port, metrics, sample, scratch, start_watch};
    let dir = scratch(lab, "k8s-lease");
    let fx = Fixture::start(world(lab, false), &dir.join("fixture"));
    // Only what deploy/rbac.yaml's pgpatrol-heal grants.
    fx.world.lock().expect("world").allowed = Some(crate::k8s::role_rules("pgpatrol-heal"));
    let scope = lab.state().scope;
    let (pa, pb) = (free_port(), free_port());
    let cfg = |port: u16| {
        let path = dir.join(format!("watch-{port}.yml"));
        std::fs::write(
            &path,
            format!(
                "listen: 127.0.0.1:{port}\ninterval: 1s\ntimeout: 3s\nclusters:\n  - name: lab\n    kubernetes: {{resource: statefulset/{scope}, namespace: {NS}, kubeconfig: {}}}\n    username: patrol\n    password_file: {}\n    heal: {{enabled: true, tolerance: 5MB, persist_samples: 10, lease: {{kubernetes: pgpatrol-heal-lab}}}}\n",
                fx.kubeconfig.display(),
                lab.dir().join("restapi.password").display()
            ),
        )
        .expect("write watch.yml");
        path
    };
    let (ca, cb) = (cfg(pa), cfg(pb));
    let _a = start_watch(&dir, &ca, pa);
    let _b = start_watch(&dir, &cb, pb);
    let replica = lab.replica();
    lab.break_lag(&replica, 20);
    let count = |port, what: &str| {
        sample(
            &metrics(port),
            &format!("pgpatrol_heal_{what}_total{{cluster=\"lab\"}}"),
        )
        .unwrap_or(0.0)
    };
    wait_for(
        "one of the watchers to heal",
        Duration::from_secs(90),
        || (count(pa, "succeeded") + count(pb, "succeeded") >= 1.0).then_some(()),
    );
    // A few more polls: the other must not start a second reinitialization.
    crate::watch::wait_polls(pa, "lab", 5.0, Duration::from_secs(30));
    crate::watch::wait_polls(pb, "lab", 5.0, Duration::from_secs(30));
    assert_eq!(
        count(pa, "attempted") + count(pb, "attempted"),
        1.0,
        "exactly one reinitialization between the two watchers"
    );
    let log = fx.log();
    let takes = log
        .iter()
        .filter(|l| l.starts_with("CREATE lease") || l.starts_with("UPDATE lease"))
        .count();
    assert!(takes >= 1, "{log:?}");
    let world = fx.world.lock().expect("world");
    let lease = world
        .leases
        .get(&(NS.to_string(), "pgpatrol-heal-lab".to_string()))
        .map(|(_, v)| v.clone())
        .expect("the Lease exists");
    // Released after the heal (holder cleared), or still held by exactly one watcher.
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default();
    assert!(holder.is_empty() || holder.contains(':'), "{lease:#}");
}

/// Only what exec access needs: discovery, pods/exec, and (for the fallback) the DCS.
fn exec_only(fx: &Fixture) {
    fx.world.lock().expect("world").allowed = Some(
        [
            ("get", "statefulsets"),
            ("get", "pods"),
            ("list", "pods"),
            ("create", "pods/exec"),
        ]
        .iter()
        .map(|(v, r)| (v.to_string(), r.to_string()))
        .collect(),
    );
}

/// Spec: `--k8s-access exec`: sli and list run curl in the pods over the exec websocket (the
/// fixture runs it against the lab) and equal `--url`; neither pods/proxy nor
/// pods/portforward is allowed or used.
fn sli_and_list_through_exec_equal_url(lab: &Lab) {
    let fx = Fixture::start(world(lab, false), &lab.dir().join("k8s-exec-read"));
    exec_only(&fx);
    let scope = lab.state().scope;
    let target = lab.replica();
    lab.break_lag(&target, 20);
    let exec = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--k8s-access", "exec"]);
        pgpatrol(&fx, &scope, &a)
    };
    assert_eq!(
        ok("sli by exec", &exec(&["sli"])),
        ok("sli --url", &lab.pgpatrol(&["sli"]))
    );
    let by_exec = json_of("list by exec", &exec(&["list", "-o", "json"]));
    let by_url = json_of("list --url", &lab.pgpatrol(&["list", "-o", "json"]));
    assert_eq!(
        by_exec["members"].as_array().map(|m| m
            .iter()
            .map(|m| (m["name"].clone(), m["role"].clone(), m["state"].clone()))
            .collect::<Vec<_>>()),
        by_url["members"].as_array().map(|m| m
            .iter()
            .map(|m| (m["name"].clone(), m["role"].clone(), m["state"].clone()))
            .collect::<Vec<_>>()),
    );
    let log = fx.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("EXEC ") && l.contains("/cluster")),
        "{log:#?}"
    );
    assert!(
        !log.iter()
            .any(|l| l.starts_with("PROXY") || l.starts_with("PORTFORWARD")),
        "{log:#?}"
    );
}

/// Spec: heal through exec: the reinitialize is a POST by curl in the pod whose URL, body
/// and basic auth travel on stdin (never on the command line the audit log records); the
/// lagging replica is rebuilt, as with --url.
fn heal_through_exec_reinitializes_with_auth_on_stdin(lab: &Lab) {
    let fx = Fixture::start(world(lab, false), &lab.dir().join("k8s-exec-heal"));
    exec_only(&fx);
    let scope = lab.state().scope;
    let target = lab.replica();
    lab.break_lag(&target, 40);
    crate::k8s::others_caught_up(lab, &target);
    let before = crate::util::start_times(lab);
    let out = crate::harness::pgpatrol_cmd()
        .args([
            "heal",
            "--yes",
            "--report",
            "json",
            "--tolerance",
            "5",
            "--k8s-access",
            "exec",
        ])
        .env_remove("PATRONI_URL")
        .env_remove("PATRONICTL_CONFIG_FILE")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("PATRONI_RESOURCE_NAME", format!("statefulset/{scope}"))
        .env("NAMESPACE", NS)
        .env("KUBECONFIG", &fx.kubeconfig)
        .env("PATRONI_RESTAPI_USERNAME", "patrol")
        .env("PGPATROL_PASSWORD_FILE", lab.dir().join("restapi.password"))
        .output()
        .expect("run heal");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {}", crate::harness::stderr(&out)));
    assert_eq!(
        crate::util::code(&out),
        0,
        "{report:#}\n{}",
        crate::harness::stderr(&out)
    );
    assert_eq!(
        report["outcomes"][0]["member"],
        target.as_str(),
        "{report:#}"
    );
    assert_eq!(report["outcomes"][0]["result"], "healed", "{report:#}");
    let after = crate::util::start_times(lab);
    assert_ne!(
        before[&target], after[&target],
        "the lagging replica was rebuilt"
    );
    let log = fx.log();
    let exec_post = log
        .iter()
        .position(|l| l.starts_with("EXEC ") && l.contains("--config -"))
        .unwrap_or_else(|| panic!("no exec with a stdin config: {log:#?}"));
    assert!(
        log[exec_post..].iter().any(|l| l == "EXEC-STDIN auth"),
        "the credentials went on stdin: {log:#?}"
    );
    let password = std::fs::read_to_string(lab.dir().join("restapi.password")).unwrap_or_default();
    let password = password.trim();
    assert!(
        !password.is_empty() && !log.iter().any(|l| l.contains(password)),
        "the password never reached a command line: {log:#?}"
    );
}
