//! `fleet`: several watchers sharing one list of clusters (`watch --shard`, `shard:` in
//! watch.yml, `--shard-from-pod`). No lab: the clusters are one fake Patroni (a capture of
//! 4.1.5's `/cluster`) under 300 names, and the StatefulSet of `--shard-from-pod` lives in
//! the Kubernetes fixture.

use std::collections::BTreeSet;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{bare, pgpatrol_cmd, test_tmp, Lab, Test};
use crate::k8s_fixture::{FakeWorkload, Fixture, World};
use crate::util::{capture, routes_server, wait_for, Route};
use crate::watch::{metrics, sample, Proc};

pub fn tests() -> Vec<Test> {
    vec![
        bare(
            "three_static_shards_poll_300_clusters_each_exactly_once",
            three_static_shards_poll_300_clusters_each_exactly_once,
        ),
        bare(
            "a_pod_takes_its_share_from_its_statefulset_and_stops_when_it_scales",
            a_pod_takes_its_share_from_its_statefulset_and_stops_when_it_scales,
        ),
        bare(
            "bad_shard_settings_are_one_line_errors",
            bad_shard_settings_are_one_line_errors,
        ),
        bare(
            "the_default_series_stay_within_12_per_member",
            the_default_series_stay_within_12_per_member,
        ),
        bare(
            "dynamic_shards_over_kubernetes_leases_split_and_move_300_clusters",
            dynamic_shards_over_kubernetes_leases_split_and_move_300_clusters,
        ),
        crate::harness::test(
            "dynamic_shards_over_etcd_split_move_and_take_back_300_clusters",
            dynamic_shards_over_etcd_split_move_and_take_back_300_clusters,
        ),
    ]
}

const CLUSTERS: usize = 300;

/// A watch.yml listing `CLUSTERS` clusters, all answered by the fake Patroni at `url`, and
/// `extra` at the top level.
fn watch_yml(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let mut yml = format!("interval: 2s\n{extra}clusters:\n");
    for i in 0..CLUSTERS {
        yml.push_str(&format!("  - name: c{i:03}\n    urls: [{url}]\n"));
    }
    let path = dir.join("watch.yml");
    std::fs::write(&path, yml).expect("watch.yml");
    path
}

/// A watcher on its own port; its log in `dir/NAME.log`.
fn watcher(name: &str, dir: &Path, yml: &Path, args: &[&str], env: &[(&str, &str)]) -> (Proc, u16) {
    let port = crate::harness::port();
    let mut cmd = pgpatrol_cmd();
    cmd.args(["watch", "--config"])
        .arg(yml)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let proc = Proc::spawn("pgpatrol watch", &mut cmd, &dir.join(format!("{name}.log")));
    (proc, port)
}

/// Waits until the watcher is ready (each of its clusters polled once), then the clusters
/// its /metrics reports up.
fn polled(port: u16) -> BTreeSet<String> {
    wait_for(
        &format!("the watcher on {port} ready"),
        Duration::from_secs(60),
        || {
            let (status, _) = crate::util::request(
                "GET",
                &format!("http://127.0.0.1:{port}/readyz"),
                None,
                None,
                Duration::from_secs(5),
            )
            .ok()?;
            (status == 200).then_some(())
        },
    );
    up_now(port)
}

fn fake_patroni() -> (String, crate::util::RoutesServer) {
    routes_server(vec![(
        "/cluster",
        Route::Json(200, capture("4.1.5/cluster.json")),
    )])
}

/// Spec (issue 25, static sharding): three watchers given `--shard 0..2 --total-shards 3`
/// over the same 300 clusters poll each cluster exactly once between them: no cluster in two
/// watchers' /metrics, none in none, `pgpatrol_shard_clusters` summing to 300, and each
/// share near a third. A fourth watcher takes shard 1 from `shard:` in its watch.yml and
/// polls exactly what `--shard 1` polls. Control: an unsharded watcher polls all 300.
fn three_static_shards_poll_300_clusters_each_exactly_once() {
    let dir = test_tmp();
    let (url, _patroni) = fake_patroni();
    let yml = watch_yml(&dir, &url, "");
    let watchers: Vec<(Proc, u16)> = (0..3)
        .map(|i| {
            let shard = i.to_string();
            watcher(
                &format!("shard{i}"),
                &dir,
                &yml,
                &["--shard", &shard, "--total-shards", "3"],
                &[],
            )
        })
        .collect();
    let shares: Vec<BTreeSet<String>> = watchers.iter().map(|(_, port)| polled(*port)).collect();
    let mut all = BTreeSet::new();
    for (i, share) in shares.iter().enumerate() {
        say!("shard {i} polls {} clusters", share.len());
        assert!(
            (60..=140).contains(&share.len()),
            "shard {i} polls {} of {CLUSTERS}",
            share.len()
        );
        let text = metrics(watchers[i].1);
        let key = format!("pgpatrol_shard_clusters{{shard=\"{i}\"}}");
        assert_eq!(sample(&text, &key), Some(share.len() as f64), "{key}");
        assert_eq!(sample(&text, "pgpatrol_shard_total "), Some(3.0));
        // The capture has 3 members.
        let key = format!("pgpatrol_shard_members{{shard=\"{i}\"}}");
        assert_eq!(sample(&text, &key), Some(3.0 * share.len() as f64), "{key}");
        for c in share {
            assert!(all.insert(c.clone()), "{c} is polled by two watchers");
        }
    }
    assert_eq!(all.len(), CLUSTERS, "every cluster polled by one watcher");

    // The same share from the file.
    let file = dir.join("file");
    std::fs::create_dir_all(&file).expect("mkdir");
    let yml1 = watch_yml(&file, &url, "shard: {index: 1, total: 3}\n");
    let (_w, port) = watcher("file", &dir, &yml1, &[], &[]);
    assert_eq!(polled(port), shares[1], "shard: in the file is --shard");
    drop(watchers);

    // Control: without sharding one watcher polls them all.
    let (_w, port) = watcher("all", &dir, &yml, &[], &[]);
    assert_eq!(polled(port).len(), CLUSTERS);
    assert_eq!(sample(&metrics(port), "pgpatrol_shard_total "), Some(1.0));
}

/// Spec (issue 25, `--shard-from-pod`): a watcher in pod `pgpatrol-watch-1` of a StatefulSet
/// with 3 replicas (the Kubernetes fixture) is shard 1 of 3, polling exactly what
/// `--shard 1 --total-shards 3` polls; with `--total-shards` given it does not need the
/// StatefulSet. Scaled to 4, the watcher stops with an error naming the new total, so that
/// its restarted pod takes its new share; with `--total-shards` it keeps running. The
/// fixture allows only what deploy/rbac.yaml's `pgpatrol-shard` Role grants.
fn a_pod_takes_its_share_from_its_statefulset_and_stops_when_it_scales() {
    let dir = test_tmp();
    let (url, _patroni) = fake_patroni();
    let yml = watch_yml(&dir, &url, "");
    let mut world = World::default();
    world.workloads.push(FakeWorkload {
        kind: "StatefulSet",
        namespace: "mydata".into(),
        name: "pgpatrol-watch".into(),
        selector: [("app".to_string(), "pgpatrol-watch".to_string())].into(),
    });
    world
        .replicas
        .insert(("mydata".into(), "pgpatrol-watch".into()), 3);
    // Only what deploy/rbac.yaml's pgpatrol-shard grants.
    world.allowed = Some(crate::k8s::role_rules("pgpatrol-shard"));
    let fx = Fixture::start(world, &dir.join("k8s"));
    let kubeconfig = fx.kubeconfig.display().to_string();
    let pod = [
        ("POD_NAME", "pgpatrol-watch-1"),
        ("POD_NAMESPACE", "mydata"),
        ("KUBECONFIG", kubeconfig.as_str()),
    ];
    let (mut from_pod, port) = watcher("pod", &dir, &yml, &["--shard-from-pod"], &pod);
    let share = polled(port);
    let text = metrics(port);
    assert_eq!(sample(&text, "pgpatrol_shard_total "), Some(3.0), "{text}");
    assert_eq!(
        sample(&text, "pgpatrol_shard_clusters{shard=\"1\"}"),
        Some(share.len() as f64)
    );
    let (_w, port1) = watcher(
        "shard1",
        &dir,
        &yml,
        &["--shard", "1", "--total-shards", "3"],
        &[],
    );
    assert_eq!(polled(port1), share, "the pod's share is shard 1 of 3");
    assert!(
        fx.log()
            .iter()
            .any(|l| l.contains("statefulsets/pgpatrol-watch/scale")),
        "the total came from the StatefulSet: {:?}",
        fx.log()
    );
    // With the total given, the StatefulSet is not needed (the hostname's ordinal is).
    let (mut given, port_given) = watcher(
        "given",
        &dir,
        &yml,
        &["--shard-from-pod", "--total-shards", "3"],
        &[
            ("HOSTNAME", "pgpatrol-watch-1"),
            ("KUBECONFIG", "/nonexistent"),
        ],
    );
    assert_eq!(
        polled(port_given),
        share,
        "HOSTNAME's ordinal, the total given"
    );

    fx.world
        .lock()
        .expect("world")
        .replicas
        .insert(("mydata".into(), "pgpatrol-watch".into()), 4);
    let code = wait_for(
        "the pod's watcher to stop after the scale",
        Duration::from_secs(30),
        || from_pod.try_exit(),
    );
    assert_ne!(code, Some(0), "stopped with an error");
    let log = std::fs::read_to_string(dir.join("pod.log")).expect("log");
    assert!(
        log.contains("statefulset/pgpatrol-watch now has 4 replicas"),
        "{log}"
    );
    assert_eq!(
        given.try_exit(),
        None,
        "the watcher with --total-shards runs on"
    );
}

/// Spec: bad shard settings are one line naming what is wrong, exit 2, before anything runs.
fn bad_shard_settings_are_one_line_errors() {
    let dir = test_tmp();
    let yml = watch_yml(&dir, "http://127.0.0.1:1", "");
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["--shard", "3", "--total-shards", "3"],
            "",
            "shard 3 does not exist among 3 (shards are numbered 0 to 2)",
        ),
        (
            vec!["--total-shards", "3"],
            "",
            "--total-shards needs --shard I",
        ),
        (vec![], "shard: {index: 1}\n", "`index` needs `total`"),
        (
            vec![],
            "shard: {index: 1, total: 2, from_pod: true}\n",
            "give `index` or `from_pod: true`, not both",
        ),
        (vec![], "shard: {total: 0, from_pod: true}\n", "at least 1"),
        (vec![], "shard: {count: 2}\n", "unknown field `count`"),
        (
            vec![],
            "shard: {dcs: {url: 'etcd3://127.0.0.1:1'}, index: 1, total: 2}\n",
            "`dcs` (dynamic) or `index`/`total`/`from_pod` (static), not both",
        ),
        (
            vec![],
            "shard: {dcs: {url: 'etcd3://127.0.0.1:1'}, replicas: 0}\n",
            "shard.replicas: at least 1",
        ),
        (
            vec![],
            "shard: {index: 0, total: 2, ttl: 5s}\n",
            "go with `dcs` or `kubernetes` (dynamic sharding)",
        ),
        (
            vec!["--shard-from-pod"],
            "",
            "neither POD_NAME nor HOSTNAME is set",
        ),
        (
            vec![],
            "shard: {kubernetes: {lease_prefix: Bad_}}\n",
            "shard.kubernetes.lease_prefix \"Bad_\"",
        ),
        (
            vec![],
            "shard: {kubernetes: {kubeconfig: /nonexistent/kubeconfig}}\n",
            "shard.kubernetes: cannot read the kubeconfig /nonexistent/kubeconfig",
        ),
    ];
    for (args, extra, needle) in cases {
        let yml = if extra.is_empty() {
            yml.clone()
        } else {
            let d = dir.join(format!("case{}", extra.len()));
            std::fs::create_dir_all(&d).expect("mkdir");
            watch_yml(&d, "http://127.0.0.1:1", extra)
        };
        let out = pgpatrol_cmd()
            .args(["watch", "--config"])
            .arg(&yml)
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .env_remove("POD_NAME")
            .env_remove("HOSTNAME")
            .output()
            .expect("run pgpatrol");
        crate::util::one_line_error(&out, needle);
    }
}

/// A watcher's /metrics now; empty while it does not answer yet.
fn metrics_now(port: u16) -> String {
    match crate::util::request(
        "GET",
        &format!("http://127.0.0.1:{port}/metrics"),
        None,
        None,
        Duration::from_secs(5),
    ) {
        Ok((200, text)) => text,
        _ => String::new(),
    }
}

/// The clusters a watcher's /metrics reports up now (no waiting).
fn up_now(port: u16) -> BTreeSet<String> {
    metrics_now(port)
        .lines()
        .filter_map(|l| l.strip_prefix("pgpatrol_cluster_up{cluster=\""))
        .filter_map(|l| l.split_once("\"} "))
        .filter(|(_, v)| *v == "1")
        .map(|(c, _)| c.to_string())
        .collect()
}

/// Waits until the watchers on `ports` poll every one of the `CLUSTERS` clusters exactly
/// `r` times between them, each watcher's ring holding `ports.len()` watchers. Returns
/// each one's share.
fn settled(ports: &[u16], r: usize, what: &str) -> Vec<BTreeSet<String>> {
    wait_for(what, Duration::from_secs(60), || {
        let shares: Vec<BTreeSet<String>> = ports.iter().map(|p| up_now(*p)).collect();
        let mut count: std::collections::BTreeMap<&String, usize> = Default::default();
        for s in &shares {
            for c in s {
                *count.entry(c).or_default() += 1;
            }
        }
        let ring_full = ports
            .iter()
            .all(|p| sample(&metrics_now(*p), "pgpatrol_shard_total ") == Some(ports.len() as f64));
        (ring_full && count.len() == CLUSTERS && count.values().all(|n| *n == r)).then_some(shares)
    })
}

/// Spec (issue 25, dynamic sharding): three watchers register in the lab's etcd (`shard:
/// {dcs: ..., ttl: 3s}`) over the same 300 clusters: every cluster is polled by exactly one
/// of them. One SIGKILLed: once its lease expires the other two poll its clusters, still each
/// exactly once. Started again (same id), it takes a share back and the others drop it —
/// no series of a cluster stays where it is no longer polled. With `replicas: 2` every
/// cluster is polled by exactly two.
fn dynamic_shards_over_etcd_split_move_and_take_back_300_clusters(lab: &Lab) {
    let dir = test_tmp();
    let (url, _patroni) = fake_patroni();
    let etcd = format!("etcd3://127.0.0.1:{}", lab.state().etcd.client_port);
    let prefix = format!("/pgpatrol/it-watchers-{}/", std::process::id());
    let yml = |id: &str, replicas: usize| {
        let d = dir.join(format!("{id}-r{replicas}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        watch_yml(
            &d,
            &url,
            &format!(
                "shard: {{dcs: {{url: '{etcd}'}}, prefix: '{prefix}', ttl: 3s, replicas: {replicas}, id: {id}}}\n"
            ),
        )
    };
    let ids = ["w0", "w1", "w2"];
    let mut watchers: Vec<(Proc, u16)> = ids
        .iter()
        .map(|id| watcher(id, &dir, &yml(id, 1), &[], &[]))
        .collect();
    let ports: Vec<u16> = watchers.iter().map(|(_, p)| *p).collect();
    let shares = settled(&ports, 1, "three watchers to share the 300 clusters");
    for (id, s) in ids.iter().zip(&shares) {
        say!("{id} polls {} clusters", s.len());
        assert!((60..=140).contains(&s.len()), "{id}: {}", s.len());
        let key = format!("pgpatrol_shard_clusters{{shard=\"{id}\"}}");
        assert_eq!(
            sample(
                &metrics(ports[ids.iter().position(|i| i == id).unwrap()]),
                &key
            ),
            Some(s.len() as f64)
        );
    }

    // w1 killed: its lease expires (3 s) and the others take its clusters.
    let t0 = std::time::Instant::now();
    watchers[1].0.kill();
    let left = [ports[0], ports[2]];
    let after = settled(&left, 1, "the two left to take w1's clusters");
    say!(
        "w1's {} clusters polled by the others {:.1} s after its SIGKILL (ttl 3 s)",
        shares[1].len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        after[0].is_superset(&shares[0]) && after[1].is_superset(&shares[2]),
        "only w1's clusters moved"
    );

    // Started again with the same id: it takes its share back.
    watchers[1] = watcher("w1-again", &dir, &yml("w1", 1), &[], &[]);
    let ports: Vec<u16> = watchers.iter().map(|(_, p)| *p).collect();
    let back = settled(&ports, 1, "w1 back with its share");
    assert_eq!(back, shares, "the same ring, the same shares");

    // Two replicas of each cluster.
    drop(watchers);
    let watchers: Vec<(Proc, u16)> = ids
        .iter()
        .map(|id| watcher(&format!("{id}-r2"), &dir, &yml(id, 2), &[], &[]))
        .collect();
    let ports: Vec<u16> = watchers.iter().map(|(_, p)| *p).collect();
    let shares = settled(&ports, 2, "every cluster polled by two watchers");
    let total: usize = shares.iter().map(BTreeSet::len).sum();
    assert_eq!(total, 2 * CLUSTERS);
}

/// Spec (issue 25, dynamic sharding on Kubernetes): three watchers each hold a Lease in the
/// fixture (`shard: {kubernetes: {namespace}, ttl: 3s}`), labelled with the ring, and list
/// them: every one of 300 clusters is polled by exactly one. One SIGKILLed: its Lease is not
/// renewed, expires after 3 s and drops out; the other two take its clusters and only those.
/// One stopped cleanly releases its Lease (no holder): the last takes every cluster. Only
/// deploy/rbac.yaml's pgpatrol-ring is allowed.
fn dynamic_shards_over_kubernetes_leases_split_and_move_300_clusters() {
    let dir = test_tmp();
    let (url, _patroni) = fake_patroni();
    let world = World {
        allowed: Some(crate::k8s::role_rules("pgpatrol-ring")),
        ..World::default()
    };
    let fx = Fixture::start(world, &dir.join("k8s"));
    let kubeconfig = fx.kubeconfig.display().to_string();
    let yml = |id: &str| {
        let d = dir.join(id);
        std::fs::create_dir_all(&d).expect("mkdir");
        watch_yml(
            &d,
            &url,
            &format!(
                "shard: {{kubernetes: {{namespace: watchers, kubeconfig: '{kubeconfig}'}}, ttl: 3s, id: 'host:{id}'}}\n"
            ),
        )
    };
    let ids = ["w0", "w1", "w2"];
    let mut watchers: Vec<(Proc, u16)> = ids
        .iter()
        .map(|id| watcher(id, &dir, &yml(id), &[], &[]))
        .collect();
    let ports: Vec<u16> = watchers.iter().map(|(_, p)| *p).collect();
    let shares = settled(&ports, 1, "three watchers to share the 300 clusters");
    for (id, s) in ids.iter().zip(&shares) {
        say!("{id} polls {} clusters", s.len());
        assert!((60..=140).contains(&s.len()), "{id}: {}", s.len());
    }
    let holder = |name: &str| {
        let w = fx.world.lock().expect("world");
        let (_, v) = w
            .leases
            .get(&("watchers".to_string(), name.to_string()))
            .unwrap_or_else(|| panic!("no Lease {name}: {:?}", w.leases.keys()));
        assert_eq!(v["metadata"]["labels"]["pgpatrol/ring"], "pgpatrol-watch");
        v["spec"]["holderIdentity"].clone()
    };
    // The id made a Lease name (`host:w1` → `pgpatrol-watch-host-w1`), held by the id itself.
    assert_eq!(holder("pgpatrol-watch-host-w1"), "host:w1");

    // w1 killed: its Lease expires (3 s) and the others take its clusters.
    let t0 = std::time::Instant::now();
    watchers[1].0.kill();
    let left = [ports[0], ports[2]];
    let after = settled(&left, 1, "the two left to take w1's clusters");
    say!(
        "w1's {} clusters polled by the others {:.1} s after its SIGKILL (ttl 3 s)",
        shares[1].len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "before its Lease expired"
    );
    assert!(
        after[0].is_superset(&shares[0]) && after[1].is_superset(&shares[2]),
        "only w1's clusters moved"
    );
    assert_eq!(
        holder("pgpatrol-watch-host-w1"),
        "host:w1",
        "expired, not released"
    );

    // w2 stopped cleanly: its Lease released at once, w0 takes everything.
    assert_eq!(watchers[2].0.terminate(), Some(0));
    assert_eq!(holder("pgpatrol-watch-host-w2"), Value::Null, "released");
    settled(&[ports[0]], 1, "w0 alone");
    assert!(
        fx.log()
            .iter()
            .any(|l| l.starts_with("LIST leases watchers pgpatrol/ring=pgpatrol-watch")),
        "the ring was listed by label"
    );
}

/// Spec (issue 25, the series budget): by default `/metrics` carries at most 12 series per
/// member for a fleet with SLOs (3-member clusters, as the capture): role and state one
/// series each, `member_lag_unknown` and `slo_alert_firing` only while true, no per-window
/// burn rates. `metrics: {burn_rates: true}` adds the seven windows per cluster. Checked
/// without the budget's changes: 16.3 series per member.
fn the_default_series_stay_within_12_per_member() {
    let dir = test_tmp();
    let (url, _patroni) = fake_patroni();
    let n = 40;
    let yml = |extra: &str, name: &str| {
        let mut y = format!("interval: 1s\n{extra}clusters:\n");
        for i in 0..n {
            y.push_str(&format!(
                "  - name: s{i:02}\n    urls: [{url}]\n    slo: {{objective: 99.5%, threshold: 5MB, window: 30d}}\n"
            ));
        }
        let path = dir.join(name);
        std::fs::write(&path, y).expect("watch.yml");
        path
    };
    // Per-cluster series once every cluster has been polled twice (the SLO's first
    // evaluation needs samples).
    let settled = |port: u16| -> String {
        polled(port);
        wait_for(
            "every cluster polled twice",
            Duration::from_secs(60),
            || {
                let text = metrics(port);
                let twice = (0..n).all(|i| {
                    sample(
                        &text,
                        &format!("pgpatrol_polls_total{{cluster=\"s{i:02}\"}}"),
                    )
                    .is_some_and(|v| v >= 2.0)
                });
                twice.then_some(text)
            },
        )
    };
    let per_cluster = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains("cluster=\""))
            .map(str::to_owned)
            .collect()
    };
    let (w, port) = watcher("default", &dir, &yml("", "default.yml"), &[], &[]);
    let text = settled(port);
    let series = per_cluster(&text);
    let members = 3 * n;
    let per_member = series.len() as f64 / members as f64;
    say!(
        "{} per-cluster series for {members} members: {per_member:.1} per member",
        series.len()
    );
    assert!(
        per_member <= 12.0,
        "{per_member:.1} series per member:\n{}",
        series.join("\n")
    );
    assert!(
        !text.contains("pgpatrol_slo_burn_rate{"),
        "burn rates are off by default"
    );
    assert!(
        !text.contains("pgpatrol_member_lag_unknown{"),
        "every lag is known"
    );
    assert!(
        !text.contains("pgpatrol_slo_alert_firing{"),
        "no alert fires"
    );
    // One series per member for role and for state, the value in the label.
    for family in ["pgpatrol_member_role{", "pgpatrol_member_state{"] {
        let count = series.iter().filter(|l| l.starts_with(family)).count();
        assert_eq!(count, members, "{family}");
    }
    drop(w);

    let (_w, port) = watcher(
        "burn",
        &dir,
        &yml("metrics: {burn_rates: true}\n", "burn.yml"),
        &[],
        &[],
    );
    let text = settled(port);
    let burn = text
        .lines()
        .filter(|l| l.starts_with("pgpatrol_slo_burn_rate{"))
        .count();
    assert_eq!(
        burn,
        7 * n,
        "seven windows per cluster with burn_rates: true"
    );
}
