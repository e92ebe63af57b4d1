//! The etcd v3 DCS source (`--dcs etcd3://…`) against the lab's real etcd and Patroni, and
//! against separate etcd servers (Debian's /usr/bin/etcd, 3.4) started by the tests on free
//! loopback ports, with authentication and with TLS (certificates made by the test), holding
//! a copy of the lab's real keys. `remove` on a side lab of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine;
use nix::sys::signal::Signal;
use pgpatrol::lab::{LabPaths, LabState};
use serde_json::{json, Value};

use crate::harness::{free_port_base, it_root, ok, run, stderr, Lab, Test};
use crate::tls::Pki;
use crate::util::wait_for;
use crate::util::{code, http, one_line_error, stdout, until_agree};
use crate::watch::{free_port, metrics, sample, scratch, start_watch, Proc};

pub fn tests() -> Vec<Test> {
    tests![
        list_from_the_dcs_equals_list_from_rest,
        with_every_patroni_stopped_the_dcs_still_answers,
        history_topology_show_config_and_sli_read_the_dcs,
        patroni_yml_names_the_dcs,
        watch_reads_the_dcs,
        heal_from_the_dcs_plans_and_heals_as_by_url,
        bad_dcs_input_is_one_line,
        etcd_with_authentication,
        etcd_with_tls,
        remove_is_refused_while_running_and_done_after_stop,
        list_all_shows_every_cluster_in_the_namespace,
        watch_discovers_clusters_as_they_come_and_go,
    ]
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The lab's etcd as a --dcs URL, and its scope.
fn dcs(lab: &Lab) -> (String, String) {
    let s = lab.state();
    (
        format!("etcd3://127.0.0.1:{}", s.etcd.client_port),
        s.scope.clone(),
    )
}

/// `pgpatrol ARGS` with no PATRONI_URL or patroni.yml from the environment.
fn bare(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = crate::harness::pgpatrol_cmd();
    c.args(args)
        .env_remove("PATRONI_URL")
        .env_remove("PATRONICTL_CONFIG_FILE")
        .env_remove("PGPATROL_LAB_DIR");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run pgpatrol")
}

fn json_of(what: &str, out: &Output) -> Value {
    let text = ok(what, out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
}

/// SIGSTOPs every member's Patroni; SIGCONT when dropped (also when the test panics).
struct Stopped(Vec<u32>);

impl Stopped {
    fn all(lab: &Lab) -> Stopped {
        let pids: Vec<u32> = lab.state().members.iter().filter_map(|m| m.pid).collect();
        for p in &pids {
            pgpatrol::lab::os::signal(*p, Signal::SIGSTOP).expect("SIGSTOP");
        }
        Stopped(pids)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = pgpatrol::lab::os::signal(*p, Signal::SIGCONT);
        }
    }
}

/// Spec: `list --dcs` shows what `list --url` shows (members, roles, states, timelines,
/// lag, version, system identifier), on 4.1 (receive/replay from the DCS) and 3.0 (receive
/// from the DCS, replay from each member's /patroni, as over REST).
fn list_from_the_dcs_equals_list_from_rest(lab: &Lab) {
    let (url, scope) = dcs(lab);
    // A reading between two Patroni loops may differ in an LSN: read again.
    let (rest, _) = until_agree(
        "list --url and list --dcs",
        |_| {
            let rest = json_of("list --url", &lab.pgpatrol(&["list", "-o", "json"]));
            let from_dcs = json_of(
                "list --dcs",
                &bare(
                    &["list", "--dcs", &url, "--scope", &scope, "-o", "json"],
                    &[],
                ),
            );
            (rest, from_dcs)
        },
        |rest, from_dcs| rest == from_dcs,
    );
    assert_eq!(rest["members"].as_array().map(Vec::len), Some(3));
    // The table says the same and names no silent member.
    let table = ok(
        "list --dcs (table)",
        &bare(&["list", "--dcs", &url, "--scope", &scope], &[]),
    );
    assert!(!table.contains("does not answer REST"), "{table}");
}

/// Spec: with every Patroni process stopped (SIGSTOP), `list --dcs` still answers from etcd
/// and names each member as not answering REST; `list --url` says the REST API is down.
fn with_every_patroni_stopped_the_dcs_still_answers(lab: &Lab) {
    let (url, scope) = dcs(lab);
    let leader = lab.leader();
    let _stopped = Stopped::all(lab);
    // Well inside ttl (20 s): the leader key and member keys still live on their leases.
    let out = bare(
        &[
            "list",
            "--dcs",
            &url,
            "--scope",
            &scope,
            "--connect-timeout",
            "1s",
            "--request-timeout",
            "2s",
        ],
        &[],
    );
    let table = ok("list --dcs with Patroni stopped", &out);
    for m in lab.state().members {
        assert!(
            table.contains(&format!(
                "{} is in the DCS but does not answer REST",
                m.name
            )),
            "{table}"
        );
    }
    assert!(
        table
            .lines()
            .any(|l| l.contains(&leader) && l.contains("Leader")),
        "{table}"
    );
    let urls = lab.urls().join(",");
    let rest = bare(&["list", "--url", &urls, "--request-timeout", "2s"], &[]);
    one_line_error(&rest, "did not answer within");
}

/// Spec: history, topology, show-config and sli read the same from the DCS as over REST.
fn history_topology_show_config_and_sli_read_the_dcs(lab: &Lab) {
    let (url, scope) = dcs(lab);
    let d = ["--dcs", url.as_str(), "--scope", scope.as_str()];
    let with = |cmd: &[&str]| {
        let mut a = cmd.to_vec();
        a.extend_from_slice(&d);
        bare(&a, &[])
    };
    let by_url = || json_of("history --url", &lab.pgpatrol(&["history", "-o", "json"]));
    if by_url().as_array().is_none_or(Vec::is_empty) {
        // A history to compare: a failover (the leader killed, a replica promoted after
        // ttl), then the lab repaired.
        let old = lab.leader();
        lab.crash_leader();
        wait_for("a new leader", Duration::from_secs(90), || {
            let c = lab.cluster_json();
            c["members"]
                .as_array()
                .and_then(|ms| {
                    ms.iter().find(|m| {
                        m["role"]
                            .as_str()
                            .is_some_and(|r| pgpatrol_core::Role::parse(r).is_leader())
                            && m["state"] == "running"
                    })
                })
                .and_then(|m| m["name"].as_str().map(str::to_owned))
                .filter(|l| *l != old)
        });
        lab.repair();
    }
    let history = by_url();
    assert!(
        history.as_array().is_some_and(|h| !h.is_empty()),
        "{history:#}"
    );
    assert_eq!(
        json_of("history --dcs", &with(&["history", "-o", "json"])),
        history
    );
    assert_eq!(
        ok("show-config --dcs", &with(&["show-config"])),
        ok("show-config --url", &lab.pgpatrol(&["show-config"]))
    );
    let topo = ok("topology --dcs", &with(&["topology"]));
    let leader = lab.leader();
    assert!(
        topo.lines()
            .any(|l| l.contains(&leader) && l.contains("Leader")),
        "{topo}"
    );
    let sli = with(&["sli", "-o", "json"]);
    let v: Value = serde_json::from_slice(&sli.stdout)
        .unwrap_or_else(|e| panic!("sli --dcs: {e}: {}", stderr(&sli)));
    assert_eq!(code(&sli), 0, "{v:#} {}", stderr(&sli));
}

/// Spec: `-c patroni.yml --dcs` reads the etcd3 section, scope and namespace of Patroni's
/// own configuration file.
fn patroni_yml_names_the_dcs(lab: &Lab) {
    let paths = LabPaths::new(lab.dir()).expect("paths");
    let cfg = paths.config("pg0").to_string_lossy().into_owned();
    let v = json_of(
        "list -c patroni.yml --dcs",
        &bare(&["list", "-c", &cfg, "--dcs", "-o", "json"], &[]),
    );
    assert_eq!(v["members"].as_array().map(Vec::len), Some(3), "{v:#}");
    assert_eq!(v["scope"], lab.state().scope);
}

/// Spec: a watch.yml cluster entry with `dcs:` is polled from etcd.
fn watch_reads_the_dcs(lab: &Lab) {
    let (url, scope) = dcs(lab);
    let dir = scratch(lab, "dcs-watch");
    let port = free_port();
    let cfg = dir.join("watch.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ninterval: 1s\ntimeout: 3s\nclusters:\n  - name: lab\n    dcs: {{url: '{url}', scope: {scope}}}\n"
        ),
    )
    .expect("write watch.yml");
    let _w: Proc = start_watch(&dir, &cfg, port);
    let m = wait_for("a poll from the DCS", Duration::from_secs(10), || {
        let m = metrics(port);
        (sample(&m, "pgpatrol_cluster_up{cluster=\"lab\"}") == Some(1.0)).then_some(m)
    });
    assert_eq!(
        sample(&m, "pgpatrol_cluster_members{cluster=\"lab\"}"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pgpatrol_cluster_leaders{cluster=\"lab\"}"),
        Some(1.0)
    );
}

/// Spec: heal with --dcs plans the same actions and skips as by --url, and rebuilds the
/// lagging replica (the reinitialize goes to the member's api_url from the DCS).
fn heal_from_the_dcs_plans_and_heals_as_by_url(lab: &Lab) {
    let (url, scope) = dcs(lab);
    let target = lab.replica();
    lab.break_lag(&target, 40);
    crate::k8s::others_caught_up(lab, &target);
    let dry = ["heal", "--dry-run", "--report", "json", "--tolerance", "5"];
    let by_url = crate::k8s::plan_summary(&lab.pgpatrol(&dry));
    let mut with_dcs = dry.to_vec();
    with_dcs.extend(["--dcs", url.as_str(), "--scope", scope.as_str()]);
    let by_dcs = crate::k8s::plan_summary(&lab.pgpatrol(&with_dcs));
    assert_eq!(by_dcs, by_url);
    assert_eq!(by_dcs.0, vec![target.clone()], "{by_dcs:?}");
    let before = crate::util::start_times(lab);
    let out = lab.pgpatrol(&[
        "heal",
        "--yes",
        "--report",
        "json",
        "--tolerance",
        "5",
        "--dcs",
        &url,
        "--scope",
        &scope,
    ]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {}", stderr(&out)));
    assert_eq!(code(&out), 0, "{report:#}\n{}", stderr(&out));
    assert_eq!(report["outcomes"][0]["result"], "healed", "{report:#}");
    let after = crate::util::start_times(lab);
    assert_ne!(
        before[&target], after[&target],
        "the lagging replica was rebuilt"
    );
}

/// Writes one key into the etcd at `client` (plain http) through the gateway.
fn put(client: &str, key: &str, value: &str) {
    let body = json!({"key": b64(key.as_bytes()), "value": b64(value.as_bytes())}).to_string();
    let (status, text) = http("POST", &format!("{client}/v3/kv/put"), Some(&body));
    assert_eq!(status, 200, "put {key}: {text}");
}

/// A gateway request body over every key under `prefix`.
fn prefix_body(prefix: &str) -> String {
    let end = pgpatrol::source::dcs::etcd::prefix_range_end(prefix.as_bytes());
    json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end)}).to_string()
}

/// Every key under `prefix` in the etcd at `client`, as the gateway gives them (base64).
fn range(client: &str, prefix: &str) -> Vec<Value> {
    let (status, text) = http(
        "POST",
        &format!("{client}/v3/kv/range"),
        Some(&prefix_body(prefix)),
    );
    assert_eq!(status, 200, "range {prefix}: {text}");
    let v: Value = serde_json::from_str(&text).expect("range JSON");
    v["kvs"].as_array().cloned().unwrap_or_default()
}

fn delete_prefix(client: &str, prefix: &str) {
    let (status, text) = http(
        "POST",
        &format!("{client}/v3/kv/deleterange"),
        Some(&prefix_body(prefix)),
    );
    assert_eq!(status, 200, "deleterange {prefix}: {text}");
}

/// Spec: bad input is one line, exit 2: etcd unreachable, not etcd, a scope with no keys, a
/// value that is not Patroni's JSON, a URL that is not etcd3://, no scope.
fn bad_dcs_input_is_one_line(lab: &Lab) {
    let (url, scope) = dcs(lab);
    let client = url.replacen("etcd3://", "http://", 1);
    let list = |u: &str, s: &str| bare(&["list", "--dcs", u, "--scope", s], &[]);
    one_line_error(
        &list("etcd3://127.0.0.1:1", &scope),
        "cannot connect to etcd at",
    );
    let patroni = lab.urls()[0].replacen("http://", "etcd3://", 1);
    one_line_error(&list(&patroni, &scope), "is not etcd's v3 JSON gateway");
    one_line_error(
        &list(&url, "no-such-scope"),
        "has no keys under /service/no-such-scope/",
    );
    one_line_error(&list("10.0.0.1:2379", &scope), "etcd3://HOST:PORT");
    one_line_error(&bare(&["list", "--dcs", &url], &[]), "--scope");
    // A member value that is not Patroni's JSON, in a scope of its own.
    put(&client, "/service/garbled/config", r#"{"ttl": 20}"#);
    put(&client, "/service/garbled/members/x", "{not json");
    let out = list(&url, "garbled");
    delete_prefix(&client, "/service/garbled/");
    one_line_error(
        &out,
        "/service/garbled/members/x does not hold Patroni's member data",
    );
}

/// A separate etcd (Debian's 3.4) on free loopback ports with its own data dir; killed
/// when dropped.
pub(crate) struct TestEtcd {
    _proc: Proc,
    /// Plain http client URL (seeding; also the one a test reads when no TLS is set up).
    plain: String,
    /// The https client URL, when started with TLS.
    pub(crate) tls: Option<String>,
}

impl TestEtcd {
    pub(crate) fn start(
        dir: &Path,
        name: &'static str,
        tls: Option<&Pki>,
        extra: &[&str],
    ) -> TestEtcd {
        Self::start_with(dir, name, tls, true, extra)
    }

    /// As [`TestEtcd::start`]; with TLS, `client_cert_auth` says whether etcd asks for a
    /// client certificate (`--client-cert-auth`).
    pub(crate) fn start_with(
        dir: &Path,
        name: &'static str,
        tls: Option<&Pki>,
        client_cert_auth: bool,
        extra: &[&str],
    ) -> TestEtcd {
        let (client, peer) = (free_port(), free_port());
        let plain = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let tls_port = tls.map(|_| free_port());
        let tls_url = tls_port.map(|p| format!("https://127.0.0.1:{p}"));
        let listen = match &tls_url {
            Some(t) => format!("{plain},{t}"),
            None => plain.clone(),
        };
        let data = dir.join(format!("{name}-data"));
        let _ = std::fs::remove_dir_all(&data);
        let mut cmd = Command::new("/usr/bin/etcd");
        cmd.args(["--name", name, "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &listen])
            .args(["--advertise-client-urls", &listen])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .arg("--initial-cluster")
            .arg(format!("{name}={peer_url}"))
            .args(extra);
        if let Some(pki) = tls {
            // etcd's JSON gateway dials etcd's own gRPC port with the server certificate as
            // its client certificate, so with --client-cert-auth it needs clientAuth too.
            pki.write(
                "etcd-server.ext",
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n",
            );
            pki.signed(
                "etcd-server",
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                "ca",
                "etcd-server.ext",
            );
            cmd.args(["--cert-file", &pki.path("etcd-server.pem")])
                .args(["--key-file", &pki.path("etcd-server.key")]);
            // etcd asks for a client certificate once it has a CA to check it against.
            if client_cert_auth {
                cmd.args(["--trusted-ca-file", &pki.path("ca.pem")])
                    .arg("--client-cert-auth");
            }
        }
        let proc = Proc::spawn(name, &mut cmd, &dir.join(format!("{name}.log")));
        wait_for(name, Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", client)).ok()?;
            (http("GET", &format!("{plain}/health"), None).0 == 200).then_some(())
        });
        if let Some(p) = tls_port {
            wait_for("etcd's TLS port", Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", p)).ok()
            });
        }
        TestEtcd {
            _proc: proc,
            plain,
            tls: tls_url,
        }
    }

    /// Copies every key of the lab's cluster (its real Patroni values) into this etcd.
    fn copy_lab_keys(&self, lab: &Lab) -> usize {
        let s = lab.state();
        let kvs = range(
            &format!("http://127.0.0.1:{}", s.etcd.client_port),
            &format!("/service/{}/", s.scope),
        );
        for kv in &kvs {
            let body = json!({"key": kv["key"], "value": kv["value"]}).to_string();
            let (status, text) = http("POST", &format!("{}/v3/kv/put", self.plain), Some(&body));
            assert_eq!(status, 200, "{text}");
        }
        kvs.len()
    }

    /// Creates user root (role root) with `password` and turns authentication on.
    pub(crate) fn enable_auth(&self, password: &str) {
        for (path, body) in [
            ("/v3/auth/role/add", json!({"name": "root"})),
            (
                "/v3/auth/user/add",
                json!({"name": "root", "password": password}),
            ),
            (
                "/v3/auth/user/grant",
                json!({"user": "root", "role": "root"}),
            ),
            ("/v3/auth/enable", json!({})),
        ] {
            let (status, text) = http(
                "POST",
                &format!("{}{path}", self.plain),
                Some(&body.to_string()),
            );
            assert_eq!(status, 200, "{path}: {text}");
        }
    }
}

fn member_roles(v: &Value) -> Vec<(String, String)> {
    v["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap_or_default().to_string(),
                        m["role"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Spec: etcd with authentication: the right user and password read the cluster (the token
/// goes as Patroni sends it); a wrong password and no user are one line each, exit 2.
fn etcd_with_authentication(lab: &Lab) {
    let dir = scratch(lab, "dcs-auth");
    let etcd = TestEtcd::start(&dir, "auth-etcd", None, &["--auth-token-ttl", "1"]);
    assert!(etcd.copy_lab_keys(lab) >= 4);
    etcd.enable_auth("s3cret-pw");
    let scope = lab.state().scope;
    let url = etcd.plain.replacen("http://", "etcd3://", 1);
    let args = [
        "list",
        "--dcs",
        url.as_str(),
        "--scope",
        scope.as_str(),
        "--dcs-username",
        "root",
        "-o",
        "json",
    ];
    let right = json_of(
        "list with the right password",
        &bare(&args, &[("PATRONI_ETCD3_PASSWORD", "s3cret-pw")]),
    );
    let rest = json_of("list --url", &lab.pgpatrol(&["list", "-o", "json"]));
    assert_eq!(member_roles(&right), member_roles(&rest));
    // The password from a file.
    let pw = dir.join("etcd.pw");
    std::fs::write(&pw, "s3cret-pw\n").expect("write pw");
    let pw = pw.to_string_lossy().into_owned();
    let mut from_file = args.to_vec();
    from_file.extend(["--dcs-password-file", pw.as_str()]);
    json_of("list with a password file", &bare(&from_file, &[]));
    one_line_error(
        &bare(&args, &[("PATRONI_ETCD3_PASSWORD", "wrong")]),
        "refused access: etcdserver: authentication failed",
    );
    one_line_error(&bare(&args[..5], &[]), "refused access");
    // A watch keeps its token between polls and takes a new one when etcd has let it
    // expire (--auth-token-ttl 1 here, polls every 2.5 s): every poll reads the cluster.
    let port = free_port();
    let cfg = dir.join("watch.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ninterval: 2500ms\ntimeout: 3s\nclusters:\n  - name: lab\n    dcs: {{url: '{url}', scope: {scope}, username: root, password_file: {pw}}}\n"
        ),
    )
    .expect("write watch.yml");
    let _w: Proc = start_watch(&dir, &cfg, port);
    let m = wait_for("four polls", Duration::from_secs(20), || {
        let m = metrics(port);
        (sample(&m, "pgpatrol_polls_total{cluster=\"lab\"}").unwrap_or(0.0) >= 4.0).then_some(m)
    });
    assert_eq!(
        sample(&m, "pgpatrol_cluster_up{cluster=\"lab\"}"),
        Some(1.0),
        "{m}"
    );
    assert!(
        !m.lines()
            .any(|l| l.starts_with("pgpatrol_poll_errors_total{") && !l.ends_with(" 0")),
        "{m}"
    );
}

/// Spec: etcd with TLS and client-certificate authentication, certificates made by the
/// test: the CA and a client certificate read the cluster; without the CA, without the
/// client certificate, and over plain http against the TLS port, one line each, exit 2.
fn etcd_with_tls(lab: &Lab) {
    let dir = scratch(lab, "dcs-tls");
    let pki = Pki::new();
    let etcd = TestEtcd::start(&dir, "tls-etcd", Some(&pki), &[]);
    assert!(etcd.copy_lab_keys(lab) >= 4);
    let scope = lab.state().scope;
    let tls = etcd.tls.clone().expect("TLS URL");
    let url = tls.replacen("https://", "etcd3s://", 1);
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    let base = ["list", "--dcs", url.as_str(), "--scope", scope.as_str()];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        bare(&a, &[])
    };
    let v = json_of(
        "list over TLS",
        &with(&[
            "--dcs-cacert",
            &ca,
            "--dcs-cert",
            &cert,
            "--dcs-key",
            &key,
            "-o",
            "json",
        ]),
    );
    let rest = json_of("list --url", &lab.pgpatrol(&["list", "-o", "json"]));
    assert_eq!(member_roles(&v), member_roles(&rest));
    one_line_error(
        &with(&["--dcs-cert", &cert, "--dcs-key", &key]),
        "not signed by a trusted CA",
    );
    one_line_error(&with(&["--dcs-cacert", &ca]), "client certificate");
    let plain_to_tls = tls.replacen("https://", "etcd3://", 1);
    let out = bare(&["list", "--dcs", &plain_to_tls, "--scope", &scope], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end().lines().count(),
        1,
        "{}",
        stderr(&out)
    );
    one_line_error(
        &bare(
            &[
                "list",
                "--dcs",
                &plain_to_tls,
                "--scope",
                &scope,
                "--dcs-cacert",
                &ca,
            ],
            &[],
        ),
        "need https",
    );
}

fn side_lab_up(dir: &Path, scope: &str, base: u16) {
    let d = dir.to_string_lossy().into_owned();
    let ver = crate::harness::patroni_version();
    ok(
        "side lab up",
        &run(&[
            "lab",
            "up",
            "--dir",
            &d,
            "--members",
            "1",
            "--port-base",
            &base.to_string(),
            "--scope",
            scope,
            "--patroni",
            &ver,
            "--timeout",
            "120s",
        ]),
    );
}

/// Takes the side lab down when dropped (also when the test panics).
struct SideLab(PathBuf);

impl Drop for SideLab {
    fn drop(&mut self) {
        let d = self.0.to_string_lossy().into_owned();
        let _ = run(&["lab", "down", "--dir", &d]);
    }
}

/// Spec (docs/SAFETY.md, remove): refused while a member runs; refused off a terminal
/// without --yes-i-am-aware; done after Patroni is stopped, and nothing is left; the same
/// scope on the same etcd then bootstraps afresh (a new system identifier).
fn remove_is_refused_while_running_and_done_after_stop(_lab: &Lab) {
    let base = free_port_base(4);
    let dir = it_root().join("dcs-remove");
    let scope = "gone";
    side_lab_up(&dir, scope, base);
    let _side = SideLab(dir.clone());
    let url = format!("etcd3://127.0.0.1:{base}");
    let paths = LabPaths::new(&dir).expect("paths");
    let state = LabState::load(&paths).expect("lab.json");
    let read = || {
        json_of(
            "list --dcs",
            &bare(
                &["list", "--dcs", &url, "--scope", scope, "-o", "json"],
                &[],
            ),
        )
    };
    let before = read();
    let sysid = before["system_identifier"].clone();
    assert!(sysid.is_string(), "{before:#}");

    let refused = bare(&["remove", scope, "--dcs", &url, "--yes-i-am-aware"], &[]);
    one_line_error(
        &refused,
        "refusing to remove gone: pg0 (running) still answer their REST API",
    );
    assert!(
        stdout(&refused).contains("/service/gone/config"),
        "{}",
        stdout(&refused)
    );
    assert_eq!(read()["members"].as_array().map(Vec::len), Some(1));

    // A live Patroni whose PostgreSQL is down (paused, postmaster killed) still writes its
    // keys: refused all the same (fails without the guard: it used to count only
    // `running` as alive).
    let m = &state.members[0];
    let api = state.urls()[0].clone();
    let password = paths.password();
    let auth = [
        ("PATRONI_RESTAPI_USERNAME", pgpatrol::lab::REST_USER),
        ("PGPATROL_PASSWORD_FILE", password.to_str().unwrap()),
    ];
    ok(
        "pause",
        &bare(&["pause", "--url", &api, "--wait", "--yes"], &auth),
    );
    let pm = pgpatrol::lab::os::postmaster_pid(&m.data_dir).expect("postmaster pid");
    pgpatrol::lab::os::signal(pm, Signal::SIGKILL).expect("SIGKILL postmaster");
    wait_for(
        "Patroni to see PostgreSQL down",
        Duration::from_secs(60),
        || {
            let s = crate::util::get_json(&format!("{api}/patroni"));
            (s["state"] != "running").then_some(())
        },
    );
    let refused = bare(&["remove", scope, "--dcs", &url, "--yes-i-am-aware"], &[]);
    one_line_error(&refused, "still answer their REST API");
    assert!(
        !stderr(&refused).contains("(running)"),
        "{}",
        stderr(&refused)
    );
    assert!(read()["members"].is_array(), "the keys are still there");
    ok(
        "resume",
        &bare(&["resume", "--url", &api, "--wait", "--yes"], &auth),
    );
    wait_for("PostgreSQL running again", Duration::from_secs(60), || {
        let s = crate::util::get_json(&format!("{api}/patroni"));
        (s["state"] == "running"
            && s["role"]
                .as_str()
                .is_some_and(|r| pgpatrol_core::Role::parse(r).is_leader()))
        .then_some(())
    });

    // Stop Patroni (it stops PostgreSQL); etcd stays.
    let pid = m.pid.expect("patroni pid");
    pgpatrol::lab::os::signal(pid, Signal::SIGTERM).expect("SIGTERM");
    wait_for("Patroni to stop", Duration::from_secs(60), || {
        (!pgpatrol::lab::os::alive(pid, "patroni")).then_some(())
    });

    // A dry run: the same survey and rule, the deletion it would make, nothing deleted.
    let dry = bare(
        &["remove", scope, "--dcs", &url, "--dry-run", "-o", "json"],
        &[],
    );
    let r: serde_json::Value = serde_json::from_str(&stdout(&dry)).unwrap_or_else(|e| {
        panic!(
            "remove --dry-run -o json is not JSON ({e}): {}",
            stdout(&dry)
        )
    });
    assert_eq!(code(&dry), 0, "{r:#}");
    assert_eq!(r["result"], "dry_run", "{r:#}");
    assert_eq!(r["plan"]["steps"][0]["action"], "delete_keys", "{r:#}");
    assert_eq!(r["requests"][0]["method"], "DCS", "{r:#}");
    assert!(read()["members"].is_array(), "the keys are still there");
    let unconfirmed = bare(&["remove", scope, "--dcs", &url], &[]);
    one_line_error(&unconfirmed, "--yes-i-am-aware");
    // On a terminal (script(1) gives it one): a wrong name deletes nothing, the name does.
    let typed = |name: &str| {
        let cmd = format!("{} remove {scope} --dcs {url}", crate::harness::bin());
        let mut child = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env_remove("PATRONI_URL")
            .env_remove("PATRONICTL_CONFIG_FILE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script(1)");
        if let Some(mut i) = child.stdin.take() {
            use std::io::Write;
            let _ = writeln!(i, "{name}");
        }
        child.wait_with_output().expect("script(1) output")
    };
    let wrong = typed("gonne");
    assert_eq!(code(&wrong), 2, "{}", stdout(&wrong));
    assert!(
        stdout(&wrong).contains("Type the cluster name (gone)"),
        "{}",
        stdout(&wrong)
    );
    assert!(
        stdout(&wrong).contains("nothing was deleted"),
        "{}",
        stdout(&wrong)
    );
    assert!(read()["members"].is_array(), "the keys are still there");
    let right = typed(scope);
    assert_eq!(code(&right), 0, "{}", stdout(&right));
    assert!(
        stdout(&right).contains("nothing left under /service/gone/"),
        "{}",
        stdout(&right)
    );
    one_line_error(
        &bare(&["list", "--dcs", &url, "--scope", scope], &[]),
        "has no keys under /service/gone/",
    );

    // A new cluster with the same scope, on the same etcd: empty data, Patroni restarted.
    for e in std::fs::read_dir(&m.data_dir).expect("data dir").flatten() {
        let p = e.path();
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
    let d = dir.to_string_lossy().into_owned();
    ok(
        "lab repair (a fresh bootstrap)",
        &run(&["lab", "repair", "--dir", &d]),
    );
    let after = read();
    assert!(after["system_identifier"].is_string(), "{after:#}");
    assert_ne!(after["system_identifier"], sysid, "bootstrapped afresh");
    assert_eq!(after["members"][0]["role"], "leader", "{after:#}");

    // Off a terminal, --yes-i-am-aware: the new cluster, stopped, removed.
    let pid = LabState::load(&paths).expect("lab.json").members[0]
        .pid
        .expect("patroni pid");
    pgpatrol::lab::os::signal(pid, Signal::SIGTERM).expect("SIGTERM");
    wait_for("Patroni to stop", Duration::from_secs(60), || {
        (!pgpatrol::lab::os::alive(pid, "patroni")).then_some(())
    });
    let done = ok(
        "remove --yes-i-am-aware",
        &bare(&["remove", scope, "--dcs", &url, "--yes-i-am-aware"], &[]),
    );
    assert!(done.contains("nothing left under /service/gone/"), "{done}");
}

/// Spec (issue 25, `list --all`): every Patroni scope under the namespace, one line each,
/// from one etcd. The lab's etcd gets a copy of the lab's keys under a second scope and a
/// scope whose member key is not Patroni's: `list --all -o json` lists the three — the two
/// readable ones with the lab's leader, members and timeline, the third with its reason
/// (exit 1). Without it, exit 0 and a table row per cluster. Bad input is one line.
fn list_all_shows_every_cluster_in_the_namespace(lab: &Lab) {
    let (url, scope) = dcs(lab);
    let client = format!("http://127.0.0.1:{}", lab.state().etcd.client_port);
    /// Deletes the planted scopes, also when the test fails.
    struct Planted(String);
    impl Drop for Planted {
        fn drop(&mut self) {
            let _ = std::panic::catch_unwind(|| {
                delete_prefix(&self.0, "/service/copy/");
                delete_prefix(&self.0, "/service/junk/");
            });
        }
    }
    let _planted = Planted(client.clone());
    copy_scope(lab, &client, "copy");
    put(&client, "/service/junk/members/x", "not json");

    let all = |extra: &[&str]| {
        let mut args = vec!["list", "--all", "--dcs", url.as_str()];
        args.extend_from_slice(extra);
        bare(&args, &[])
    };
    let out = all(&["-o", "json"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let lines: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let names: Vec<&str> = lines
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|l| l["cluster"].as_str())
        .collect();
    assert_eq!(names, ["copy", scope.as_str(), "junk"], "{lines:#}");
    let leader = lab.leader();
    for l in &lines.as_array().expect("array")[..2] {
        assert_eq!(l["leader"], leader.as_str(), "{l:#}");
        assert_eq!(l["members"], 3, "{l:#}");
        assert_eq!(l["running"], 3, "{l:#}");
        assert_eq!(l["paused"], false, "{l:#}");
        // Before 4.1 the member keys carry no replay position: unknown, and said so.
        if crate::harness::patroni_version() == "4.1" {
            assert!(l["worst_lag"].is_u64(), "{l:#}");
        } else {
            assert!(l["worst_lag"].is_null(), "{l:#}");
            assert_eq!(l["lag_unknown"].as_array().map(Vec::len), Some(2), "{l:#}");
        }
        assert!(l.get("error").is_none(), "{l:#}");
    }
    let junk = &lines[2];
    assert!(
        junk["error"]
            .as_str()
            .unwrap_or_default()
            .contains("members/x"),
        "{junk:#}"
    );

    delete_prefix(&client, "/service/junk/");
    let out = all(&[]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let table = stdout(&out);
    for name in ["copy", scope.as_str()] {
        let row = table
            .lines()
            .find(|l| l.split('|').nth(1).is_some_and(|c| c.trim() == name))
            .unwrap_or_else(|| panic!("no row for {name}: {table}"));
        assert!(row.contains(&leader) && row.contains("3/3"), "{row}");
    }

    // Bad input: one line, exit 2.
    one_line_error(
        &bare(&["list", "--all"], &[]),
        "--all reads every cluster from etcd",
    );
    one_line_error(
        &all(&["--dcs-namespace", "/nothing"]),
        "has no Patroni cluster under /nothing",
    );
    one_line_error(
        &all(&["-o", "patronictl-json"]),
        "--all prints -o table, json or yaml",
    );
    let out = all(&["--watch"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}

/// Copies the lab's keys under scope `to` in the lab's etcd.
fn copy_scope(lab: &Lab, client: &str, to: &str) {
    let scope = lab.state().scope.clone();
    let prefix = format!("/service/{scope}/");
    let decode = |v: &Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or_default())
                .expect("base64"),
        )
        .expect("utf-8")
    };
    for kv in range(client, &prefix) {
        let key = decode(&kv["key"]).replacen(&prefix, &format!("/service/{to}/"), 1);
        put(client, &key, &decode(&kv["value"]));
    }
}

/// Spec (issue 25, `discover:`): a watcher with no listed cluster and `discover:` on the
/// lab's etcd watches the lab's scope once it has read the DCS (`/readyz` waits for that);
/// a scope that appears (the lab's keys copied under `copy`) is polled within a few
/// discovery intervals; while etcd is stopped nothing is dropped (a failed read is not
/// "gone"); once `copy` is deleted it is dropped after the grace period — no series of it
/// left in /metrics, no page.
fn watch_discovers_clusters_as_they_come_and_go(lab: &Lab) {
    let client = format!("http://127.0.0.1:{}", lab.state().etcd.client_port);
    let (url, scope) = dcs(lab);
    struct Planted(String);
    impl Drop for Planted {
        fn drop(&mut self) {
            let _ = std::panic::catch_unwind(|| delete_prefix(&self.0, "/service/copy/"));
        }
    }
    let _planted = Planted(client.clone());
    let dir = scratch(lab, "discover");
    let port = free_port();
    let yml = dir.join("watch.yml");
    std::fs::write(
        &yml,
        format!(
            "listen: 127.0.0.1:{port}\ninterval: 1s\ndiscover:\n  dcs: {{url: '{url}'}}\n  interval: 1s\n  grace: 4s\n  template:\n    slo: {{objective: 99%, threshold: 5MB, window: 1h}}\n"
        ),
    )
    .expect("watch.yml");
    let _w = start_watch(&dir, &yml, port);
    let up = |c: &str| {
        sample(
            &metrics(port),
            &format!("pgpatrol_cluster_up{{cluster=\"{c}\"}}"),
        )
    };
    wait_for("the lab's scope watched", Duration::from_secs(20), || {
        (up(&scope) == Some(1.0)).then_some(())
    });
    assert_eq!(
        sample(&metrics(port), "pgpatrol_discovered_clusters "),
        Some(1.0)
    );

    copy_scope(lab, &client, "copy");
    wait_for("the new scope watched", Duration::from_secs(20), || {
        (up("copy") == Some(1.0)).then_some(())
    });
    assert_eq!(
        sample(&metrics(port), "pgpatrol_discovered_clusters "),
        Some(2.0)
    );
    let (status, _) = http(
        "GET",
        &format!("http://127.0.0.1:{port}/cluster/copy"),
        None,
    );
    assert_eq!(status, 200, "its page");

    // etcd stopped: reads fail, nothing is dropped (longer than the grace period).
    ok("lab break dcs", &lab.lab(&["break", "dcs"]));
    let errors = || sample(&metrics(port), "pgpatrol_discover_errors_total").unwrap_or(0.0);
    let before = errors();
    wait_for(
        "failed discovery passes past the grace",
        Duration::from_secs(30),
        || (errors() >= before + 6.0).then_some(()),
    );
    assert_eq!(
        sample(&metrics(port), "pgpatrol_discovered_clusters "),
        Some(2.0)
    );
    lab.repair();

    delete_prefix(&client, "/service/copy/");
    wait_for("the gone scope dropped", Duration::from_secs(30), || {
        (!metrics(port).contains("cluster=\"copy\"")).then_some(())
    });
    assert_eq!(
        sample(&metrics(port), "pgpatrol_discovered_clusters "),
        Some(1.0)
    );
    assert_eq!(up(&scope), Some(1.0), "the lab's scope stays");
    let (status, _) = http(
        "GET",
        &format!("http://127.0.0.1:{port}/cluster/copy"),
        None,
    );
    assert_eq!(status, 404, "its page is gone");
}
