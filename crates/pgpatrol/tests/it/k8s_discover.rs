//! Issue 25 through Kubernetes: `discover: {kubernetes: {selector, namespaces}}` in watch.yml
//! and `list --all --k8s-dcs --selector`, against the API server fixture holding static
//! Patroni objects (ConfigMaps or Endpoints with the annotations Patroni 4.1's kubernetes.py
//! writes, and pods with their `status` annotation). No lab: no Patroni answers REST, which
//! the Kubernetes DCS does not need. Only what deploy/rbac.yaml's pgpatrol-discover grants
//! is allowed; bound in two namespaces (a Role's reach), or everywhere (a ClusterRole's).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{bare, pgpatrol_cmd, stderr, test_tmp, Test};
use crate::k8s_fixture::{FakeObject, FakePod, Fixture, World};
use crate::util::{code, one_line_error, stdout, wait_for};
use crate::watch::{metrics, sample, Proc};

pub fn tests() -> Vec<Test> {
    vec![
        bare(
            "watch_discovers_kubernetes_clusters_by_selector_as_they_come_and_go",
            watch_discovers_kubernetes_clusters_by_selector_as_they_come_and_go,
        ),
        bare(
            "watch_discovers_in_every_namespace_without_namespaces",
            watch_discovers_in_every_namespace_without_namespaces,
        ),
        bare(
            "list_all_through_kubernetes_prints_every_selected_cluster",
            list_all_through_kubernetes_prints_every_selected_cluster,
        ),
        bare(
            "bad_kubernetes_discovery_settings_are_one_line_errors",
            bad_kubernetes_discovery_settings_are_one_line_errors,
        ),
    ]
}

const SELECTOR: &str = "application=spilo";

fn labels(scope: &str) -> BTreeMap<String, String> {
    [
        ("application".to_string(), "spilo".to_string()),
        ("cluster-name".to_string(), scope.to_string()),
    ]
    .into()
}

fn ann(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A three-member Patroni 4.1 cluster `scope` in `ns`, as kubernetes.py leaves it: the
/// leader and config objects (ConfigMaps, or Endpoints with `use_endpoints`) and the pods'
/// `status` annotations. `<scope>-1` lags 1 MiB behind.
fn plant(w: &mut World, ns: &str, scope: &str, use_endpoints: bool) {
    let kind = if use_endpoints {
        "Endpoints"
    } else {
        "ConfigMap"
    };
    let now = jiff::Timestamp::now().to_string();
    let pod = |i: usize| format!("{scope}-{i}");
    let optime: u64 = 100 << 20;
    w.objects.push(FakeObject {
        kind,
        namespace: ns.into(),
        name: if use_endpoints {
            scope.to_string()
        } else {
            format!("{scope}-leader")
        },
        labels: labels(scope),
        annotations: ann(&[
            ("leader", pod(0)),
            ("acquireTime", now.clone()),
            ("renewTime", now),
            ("ttl", "3600".into()),
            ("transitions", "0".into()),
            ("optime", optime.to_string()),
        ]),
        subsets: None,
    });
    w.objects.push(FakeObject {
        kind,
        namespace: ns.into(),
        name: format!("{scope}-config"),
        labels: labels(scope),
        annotations: ann(&[
            (
                "config",
                r#"{"ttl":30,"loop_wait":10,"postgresql":{"use_pg_rewind":true}}"#.into(),
            ),
            ("initialize", "7441234567890123456".into()),
        ]),
        subsets: None,
    });
    for i in 0..3 {
        let status = if i == 0 {
            json!({"conn_url": format!("postgres://10.0.0.{i}:5432/postgres"),
                   "api_url": format!("http://127.0.0.1:1/{scope}-{i}/patroni"),
                   "state": "running", "role": "primary", "version": "4.1.5",
                   "xlog_location": optime, "timeline": 2})
        } else {
            let replay = if i == 1 { optime - (1 << 20) } else { optime };
            json!({"conn_url": format!("postgres://10.0.0.{i}:5432/postgres"),
                   "api_url": format!("http://127.0.0.1:1/{scope}-{i}/patroni"),
                   "state": "running", "role": "replica", "version": "4.1.5",
                   "xlog_location": replay, "replication_state": "streaming", "timeline": 2,
                   "receive_lsn": optime, "replay_lsn": replay})
        };
        w.pods.push(FakePod {
            namespace: ns.into(),
            name: pod(i),
            labels: labels(scope),
            ports: vec![("patroni".into(), 8008), ("postgresql".into(), 5432)],
            ready: true,
        });
        w.pod_annotations.insert(
            (ns.to_string(), pod(i)),
            [("status".to_string(), status.to_string())].into(),
        );
    }
}

/// Removes `scope` of `ns` from the world: its objects and its pods.
fn unplant(w: &mut World, ns: &str, scope: &str) {
    w.objects.retain(|o| {
        !(o.namespace == ns && o.labels.get("cluster-name").map(String::as_str) == Some(scope))
    });
    w.pods.retain(|p| {
        !(p.namespace == ns && p.labels.get("cluster-name").map(String::as_str) == Some(scope))
    });
}

/// Clusters `a/pg` (ConfigMaps), `b/pg` (Endpoints: the same scope in another namespace),
/// `c/other` (outside the namespaces the Role reaches), and in `a` a ConfigMap and pod of
/// something else with the same label but no Patroni objects.
fn world() -> World {
    let mut w = World::default();
    plant(&mut w, "a", "pg", false);
    plant(&mut w, "b", "pg", true);
    plant(&mut w, "c", "other", false);
    w.objects.push(FakeObject {
        kind: "ConfigMap",
        namespace: "a".into(),
        name: "spilo-settings".into(),
        labels: labels("not-patroni"),
        annotations: BTreeMap::new(),
        subsets: None,
    });
    w.objects.push(FakeObject {
        kind: "ConfigMap",
        namespace: "a".into(),
        name: "unrelated-config".into(),
        labels: [("cluster-name".to_string(), "unrelated".to_string())].into(),
        annotations: BTreeMap::new(),
        subsets: None,
    });
    w.allowed = Some(crate::k8s::role_rules("pgpatrol-discover"));
    w
}

fn cmd() -> std::process::Command {
    let mut c = pgpatrol_cmd();
    for v in [
        "NAMESPACE",
        "CONTEXT",
        "KUBECONFIG",
        "PATRONI_URL",
        "PATRONICTL_CONFIG_FILE",
        "PATRONI_RESOURCE_NAME",
        "PATRONI_SCOPE",
        "KUBERNETES_SERVICE_HOST",
    ] {
        c.env_remove(v);
    }
    c
}

fn watch_yml(dir: &Path, port: u16, discover: &str) -> std::path::PathBuf {
    let yml = dir.join("watch.yml");
    std::fs::write(
        &yml,
        format!(
            "listen: 127.0.0.1:{port}\ninterval: 1s\ndiscover:\n{discover}  interval: 1s\n  grace: 4s\n  template:\n    slo: {{objective: 99%, threshold: 5MB, window: 1h}}\n"
        ),
    )
    .expect("watch.yml");
    yml
}

/// /metrics, or nothing while the watcher is not listening yet.
fn metrics_now(port: u16) -> String {
    crate::util::request(
        "GET",
        &format!("http://127.0.0.1:{port}/metrics"),
        None,
        None,
        Duration::from_secs(5),
    )
    .map(|(_, body)| body)
    .unwrap_or_default()
}

fn up(port: u16, c: &str) -> Option<f64> {
    sample(
        &metrics_now(port),
        &format!("pgpatrol_cluster_up{{cluster=\"{c}\"}}"),
    )
}

/// Spec (issue 25, Kubernetes): `discover: {kubernetes: {selector, namespaces: [a, b]}}`
/// watches every Patroni cluster whose objects carry the selector in those namespaces, named
/// NAMESPACE/SCOPE (the same scope in two namespaces is two clusters), read from the
/// Kubernetes DCS; `c/other` (another namespace) and labelled objects that are not Patroni's
/// are not. A cluster planted later is watched within an interval or two; while every list
/// fails (longer than the grace) nothing is added or dropped; a cluster removed stays for
/// the grace, then is dropped with its page. Only pgpatrol-discover's rules, in a and b.
fn watch_discovers_kubernetes_clusters_by_selector_as_they_come_and_go() {
    let dir = test_tmp();
    let mut w = world();
    w.role_namespaces = Some(vec!["a".into(), "b".into()]);
    let fx = Fixture::start(w, &dir.join("k8s"));
    let port = crate::harness::port();
    let yml = watch_yml(
        &dir,
        port,
        &format!(
            "  kubernetes: {{selector: '{SELECTOR}', namespaces: [a, b], kubeconfig: '{}'}}\n",
            fx.kubeconfig.display()
        ),
    );
    let mut c = cmd();
    c.args(["watch", "--config"]).arg(&yml);
    let _w = Proc::spawn("pgpatrol watch", &mut c, &dir.join("watch.log"));
    let log = || std::fs::read_to_string(dir.join("watch.log")).unwrap_or_default();
    wait_for("a/pg and b/pg watched", Duration::from_secs(30), || {
        (up(port, "a/pg") == Some(1.0) && up(port, "b/pg") == Some(1.0)).then_some(())
    });
    let text = metrics(port);
    assert_eq!(
        sample(&text, "pgpatrol_discovered_clusters "),
        Some(2.0),
        "{text}\n{}",
        log()
    );
    assert!(!text.contains("cluster=\"c/other\""), "outside a and b");
    assert!(!text.contains("not-patroni") && !text.contains("unrelated"));
    // Read from the DCS: the lag of pg-1 is the 1 MiB its annotation says.
    assert_eq!(
        sample(
            &text,
            "pgpatrol_member_lag_bytes{cluster=\"a/pg\",member=\"pg-1\",kind=\"replay\"}"
        ),
        Some((1 << 20) as f64),
        "{text}"
    );
    let (status, _) = crate::util::request(
        "GET",
        &format!("http://127.0.0.1:{port}/cluster/a%2Fpg"),
        None,
        None,
        Duration::from_secs(5),
    )
    .expect("page");
    assert_eq!(status, 200, "the page of a/pg");

    // A third cluster, planted now: watched within an interval (plus a poll).
    plant(&mut fx.world.lock().expect("world"), "b", "pg2", false);
    let t0 = Instant::now();
    wait_for("b/pg2 watched", Duration::from_secs(20), || {
        (up(port, "b/pg2") == Some(1.0)).then_some(())
    });
    say!("b/pg2 watched {:?} after it appeared", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    assert_eq!(
        sample(&metrics(port), "pgpatrol_discovered_clusters "),
        Some(3.0)
    );

    // Every list fails for longer than the grace: nothing added, nothing dropped.
    let errors = || sample(&metrics(port), "pgpatrol_discover_errors_total").unwrap_or(0.0);
    let before = errors();
    fx.world.lock().expect("world").failing = true;
    wait_for(
        "failed discovery passes past the grace",
        Duration::from_secs(30),
        || (errors() >= before + 6.0).then_some(()),
    );
    let text = metrics(port);
    assert_eq!(sample(&text, "pgpatrol_discovered_clusters "), Some(3.0));
    for c in ["a/pg", "b/pg", "b/pg2"] {
        assert!(text.contains(&format!("cluster=\"{c}\"")), "{c} kept");
    }
    fx.world.lock().expect("world").failing = false;
    wait_for("a/pg read again", Duration::from_secs(20), || {
        (up(port, "a/pg") == Some(1.0)).then_some(())
    });

    // b/pg2 removed: kept for the grace (4s), then dropped with its page.
    unplant(&mut fx.world.lock().expect("world"), "b", "pg2");
    let t0 = Instant::now();
    wait_for("b/pg2 dropped", Duration::from_secs(30), || {
        (!metrics(port).contains("cluster=\"b/pg2\"")).then_some(())
    });
    say!("b/pg2 dropped {:?} after it went", t0.elapsed());
    assert!(
        t0.elapsed() >= Duration::from_secs(3),
        "dropped before the grace: {:?}",
        t0.elapsed()
    );
    let text = metrics(port);
    assert_eq!(sample(&text, "pgpatrol_discovered_clusters "), Some(2.0));
    assert_eq!(up(port, "a/pg"), Some(1.0), "the others stay");
    assert_eq!(up(port, "b/pg"), Some(1.0), "the others stay");
    let (status, _) = crate::util::request(
        "GET",
        &format!("http://127.0.0.1:{port}/cluster/b%2Fpg2"),
        None,
        None,
        Duration::from_secs(5),
    )
    .expect("page");
    assert_eq!(status, 404, "its page is gone");
    // Never outside the Role's namespaces, never across all of them.
    let outside: Vec<String> = fx
        .log()
        .into_iter()
        .filter(|l| l.starts_with("LIST ") && !(l.contains(" a ") || l.contains(" b ")))
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
}

/// Spec: without `namespaces`, one list of each kind across every namespace (a
/// ClusterRoleBinding's reach) finds the clusters of all of them.
fn watch_discovers_in_every_namespace_without_namespaces() {
    let dir = test_tmp();
    let fx = Fixture::start(world(), &dir.join("k8s"));
    let port = crate::harness::port();
    let yml = watch_yml(
        &dir,
        port,
        &format!(
            "  kubernetes: {{selector: '{SELECTOR}', kubeconfig: '{}'}}\n",
            fx.kubeconfig.display()
        ),
    );
    let mut c = cmd();
    c.args(["watch", "--config"]).arg(&yml);
    let _w = Proc::spawn("pgpatrol watch", &mut c, &dir.join("watch.log"));
    wait_for("all three watched", Duration::from_secs(30), || {
        ["a/pg", "b/pg", "c/other"]
            .iter()
            .all(|c| up(port, c) == Some(1.0))
            .then_some(())
    });
    assert_eq!(
        sample(&metrics(port), "pgpatrol_discovered_clusters "),
        Some(3.0)
    );
    let across: Vec<String> = fx
        .log()
        .into_iter()
        .filter(|l| l.starts_with("LIST ") && l.contains(" * "))
        .collect();
    assert!(
        ["configmaps", "endpoints", "pods"].iter().all(|k| across
            .iter()
            .any(|l| l.starts_with(&format!("LIST {k} * ")))),
        "{across:?}"
    );
}

fn list(fx: &Fixture, args: &[&str]) -> Output {
    let mut c = cmd();
    c.args(["list", "--all", "--k8s-dcs", "--kubeconfig"])
        .arg(&fx.kubeconfig)
        .args(args);
    c.output().expect("run pgpatrol")
}

/// Spec (issue 25, Kubernetes): `list --all --k8s-dcs --selector` prints one line per
/// Patroni cluster the selector finds, named NAMESPACE/SCOPE, from one list of ConfigMaps,
/// Endpoints and pods in --namespace (default: the context's), or across every namespace with
/// -A (a ClusterRole's reach; a Role's is refused in one line naming what to grant).
fn list_all_through_kubernetes_prints_every_selected_cluster() {
    let dir = test_tmp();
    let fx = Fixture::start(world(), &dir.join("k8s"));
    let out = list(&fx, &["--selector", SELECTOR, "--namespace", "a"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let table = stdout(&out);
    say!("{table}");
    assert!(table.contains("a/pg"), "{table}");
    assert!(
        !table.contains("b/pg") && !table.contains("c/other"),
        "{table}"
    );
    let lists: Vec<String> = fx
        .log()
        .into_iter()
        .filter(|l| l.starts_with("LIST "))
        .collect();
    assert_eq!(
        lists,
        [
            format!("LIST configmaps a {SELECTOR}"),
            format!("LIST endpoints a {SELECTOR}"),
            format!("LIST pods a {SELECTOR}"),
        ],
        "one list of each"
    );

    let out = list(&fx, &["--selector", SELECTOR, "-A", "-o", "json"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("json");
    let names: Vec<&str> = v
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["cluster"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["a/pg", "b/pg", "c/other"], "{v:#}");
    for l in v.as_array().expect("lines") {
        let scope = l["cluster"]
            .as_str()
            .unwrap_or_default()
            .split('/')
            .nth(1)
            .unwrap_or_default();
        assert_eq!(l["leader"], format!("{scope}-0"), "{l}");
        assert_eq!(l["members"], 3, "{l}");
        assert_eq!(l["worst_lag"], 1 << 20, "{l}");
        assert_eq!(l["worst_member"], format!("{scope}-1"), "{l}");
    }
    // One of them by its scope alone (no workload): the same leader and members.
    let mut c = cmd();
    c.args([
        "list",
        "--k8s-dcs",
        "--scope",
        "pg",
        "--namespace",
        "b",
        "-o",
        "json",
        "--kubeconfig",
    ])
    .arg(&fx.kubeconfig);
    let out = c.output().expect("run pgpatrol");
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let one: Value = serde_json::from_str(&stdout(&out)).expect("json");
    let members: Vec<&str> = one["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(members, ["pg-0", "pg-1", "pg-2"], "{one:#}");
    assert!(
        fx.log().iter().any(|l| l == "LIST pods b cluster-name=pg"),
        "{:?}",
        fx.log()
    );
    // The context's namespace (mydata) holds none: one line, exit 2.
    let out = list(&fx, &["--selector", SELECTOR]);
    one_line_error(
        &out,
        "no Patroni ConfigMaps or Endpoints labelled application=spilo in namespace mydata",
    );

    // pgpatrol-discover bound in a and b only (RoleBindings): -A is refused.
    fx.world.lock().expect("world").role_namespaces = Some(vec!["a".into(), "b".into()]);
    let out = list(&fx, &["--selector", SELECTOR, "-A"]);
    one_line_error(&out, "forbidden: cannot list configmaps");
    let out = list(&fx, &["--selector", SELECTOR, "--namespace", "b"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("b/pg"), "{}", stdout(&out));
}

/// Spec: a bad selector or setting, in watch.yml or on the command line, is one line and
/// exit 2, before anything is read.
fn bad_kubernetes_discovery_settings_are_one_line_errors() {
    let dir = test_tmp();
    let cases = [
        (
            "  kubernetes: {selector: 'app=a=b'}\n",
            "selector \"app=a=b\"",
        ),
        ("  kubernetes: {selector: 'app in (a'}\n", "without its ')'"),
        (
            "  kubernetes: {selector: a=b, namespaces: [My_NS]}\n",
            "\"My_NS\" is not a namespace name",
        ),
        ("  kubernetes: {selectr: a=b}\n", "unknown field `selectr`"),
        (
            "  kubernetes: {selector: a=b}\n  dcs: {url: 'etcd3://127.0.0.1:1'}\n",
            "`dcs` (etcd) or `kubernetes` (label selector), not both",
        ),
    ];
    for (i, (discover, needle)) in cases.iter().enumerate() {
        let d = dir.join(format!("case{i}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        let yml = watch_yml(&d, 0, discover);
        let out = cmd()
            .args(["watch", "--config"])
            .arg(&yml)
            .output()
            .expect("run pgpatrol");
        one_line_error(&out, needle);
    }
    let fx = Fixture::start(world(), &dir.join("k8s"));
    // A context the kubeconfig lacks: found before the watcher starts.
    let d = dir.join("context");
    std::fs::create_dir_all(&d).expect("mkdir");
    let yml = watch_yml(
        &d,
        0,
        &format!(
            "  kubernetes: {{selector: a=b, context: nowhere, kubeconfig: '{}'}}\n",
            fx.kubeconfig.display()
        ),
    );
    let out = cmd()
        .args(["watch", "--config"])
        .arg(&yml)
        .output()
        .expect("run pgpatrol");
    one_line_error(
        &out,
        "discover: context \"nowhere\" is not in the kubeconfig",
    );
    for (args, needle) in [
        (
            vec!["--selector", "app=a=b"],
            "--selector: selector \"app=a=b\"",
        ),
        (vec![], "--all --k8s-dcs needs --selector"),
        (
            vec!["--selector", SELECTOR, "--k8s-resource", "statefulset/pg"],
            "drop --k8s-resource",
        ),
        (
            vec!["--selector", SELECTOR, "--context", "nowhere"],
            "context \"nowhere\" is not in the kubeconfig",
        ),
    ] {
        one_line_error(&list(&fx, &args), needle);
    }
    let out = cmd()
        .args(["list", "--all", "--selector", SELECTOR])
        .output()
        .expect("run pgpatrol");
    one_line_error(&out, "add --k8s-dcs");
    assert!(
        !fx.log().iter().any(|l| l.starts_with("LIST ")),
        "nothing listed: {:?}",
        fx.log()
    );
}
