//! Bad input and faults: each gives one clear line on stderr naming the problem, exit 2,
//! and no panic. Servers that misbehave are real sockets on loopback.

use crate::harness::{bare, pgpatrol_cmd, run, Lab, Test};
use crate::util::{
    capture, code, fake_server, json_of, one_line_error, routes_server, stdout, Route,
};

pub fn tests() -> Vec<Test> {
    let mut all = vec![
        bare(
            "a_closed_stdout_ends_every_command_quietly",
            a_closed_stdout_ends_every_command_quietly,
        ),
        bare(
            "a_config_write_patroni_could_not_confirm_is_unknown_not_failed",
            a_config_write_patroni_could_not_confirm_is_unknown_not_failed,
        ),
        bare(
            "config_writes_send_nothing_while_members_disagree_on_the_config",
            config_writes_send_nothing_while_members_disagree_on_the_config,
        ),
    ];
    all.extend(tests![
        nothing_listening,
        a_port_serving_html,
        garbage_and_truncated_json,
        a_cluster_with_role_7_is_a_malformed_answer_not_the_dcs,
        members_as_a_string_is_a_malformed_answer_not_the_dcs,
        not_http_at_all,
        tls_against_a_plain_port,
        a_member_that_never_answers_times_out,
        wrong_credentials,
        bad_units_and_sizes,
        config_without_restapi_and_missing_password,
        a_dead_url_is_skipped_for_a_live_one,
        unknown_member_for_reinit,
    ]);
    all
}

fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn nothing_listening(_: &Lab) {
    let url = format!("http://127.0.0.1:{}", dead_port());
    one_line_error(&run(&["sli", "--url", &url]), "connection refused");
    one_line_error(&run(&["list", "--url", &url]), &url);
    one_line_error(&run(&["heal", "--url", &url, "--yes"]), "cannot connect");
    one_line_error(&run(&["sli", "--url", "not a url"]), "is not a URL");
    one_line_error(
        &run(&["sli", "--url", "http://no-such-host.invalid:8008"]),
        "no-such-host.invalid",
    );
    let out = run(&["sli"]);
    one_line_error(&out, "--url");
}

fn a_port_serving_html(_: &Lab) {
    let page: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>";
    let (url, _h) = fake_server(Some(page), 1);
    one_line_error(&run(&["sli", "--url", &url]), "HTML");
    let err: &[u8] = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/html\r\n\r\n<html><p>Error code: 503</p>\n<p>Message: busy.</p></html>";
    let (url, _h) = fake_server(Some(err), 1);
    one_line_error(&run(&["sli", "--url", &url]), "HTTP 503");
}

fn garbage_and_truncated_json(_: &Lab) {
    let (url, _h) = fake_server(
        Some(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\nhello, world"),
        1,
    );
    one_line_error(&run(&["sli", "--url", &url]), "did not answer with JSON");
    let (url, _h) = fake_server(
        Some(b"HTTP/1.0 200 OK\r\n\r\n{\"members\": [{\"name\": \"pg0\", \"role\": \"lea"),
        1,
    );
    one_line_error(&run(&["sli", "--url", &url]), "cut off");
    let (url, _h) = fake_server(Some(b"HTTP/1.0 200 OK\r\n\r\n{\"status\": \"ok\"}"), 1);
    one_line_error(
        &run(&["sli", "--url", &url]),
        "not with Patroni's /cluster: at the top level, missing field `members`",
    );
    let (url, _h) = fake_server(Some(b"HTTP/1.0 200 OK\r\n\r\n"), 1);
    one_line_error(&run(&["sli", "--url", &url]), "empty");
}

/// A Patroni whose own `/patroni` answers normally and whose `/cluster` answers `cluster`:
/// `list`, `sli` and `doctor` must name the answer that does not fit (URL, JSON path, what
/// was expected), never blame the DCS, which answered. The control: the same server with
/// `/cluster` dropping the connection, as Patroni's does while its DCS is down, is the DCS
/// diagnosis.
fn malformed_cluster_is_named(cluster: String, path: &str, expected: &str) {
    let patroni = capture("4.1.5/patroni_leader.json");
    let (url, _server) = routes_server(vec![
        ("/cluster", Route::Json(200, cluster)),
        ("/patroni", Route::Json(200, patroni.clone())),
    ]);
    for cmd in ["list", "sli", "doctor"] {
        let out = run(&[cmd, "--url", &url]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!err.contains("DCS is unreachable"), "{cmd}: {err}");
        assert!(err.contains(&format!("{url}/cluster")), "{cmd}: {err}");
        assert!(err.contains(&format!("at {path},")), "{cmd}: {err}");
        assert!(err.contains(expected), "{cmd}: {err}");
        if cmd != "doctor" {
            one_line_error(&out, "answered, but not with Patroni's /cluster");
        }
    }
    let (url, _server) = routes_server(vec![
        ("/cluster", Route::Drop),
        ("/patroni", Route::Json(200, patroni)),
    ]);
    one_line_error(&run(&["list", "--url", &url]), "the DCS is unreachable");
}

fn a_cluster_with_role_7_is_a_malformed_answer_not_the_dcs(_: &Lab) {
    let mut cluster: serde_json::Value =
        serde_json::from_str(&capture("4.1.5/cluster.json")).expect("capture");
    cluster["members"][0]["role"] = 7.into();
    malformed_cluster_is_named(
        cluster.to_string(),
        "members[0].role",
        "invalid type: integer `7`, expected a string",
    );
}

fn members_as_a_string_is_a_malformed_answer_not_the_dcs(_: &Lab) {
    let mut cluster: serde_json::Value =
        serde_json::from_str(&capture("4.1.5/cluster.json")).expect("capture");
    cluster["members"] = "pg0,pg1,pg2".into();
    malformed_cluster_is_named(cluster.to_string(), "members", "expected a sequence");
}

fn not_http_at_all(_: &Lab) {
    let (url, _h) = fake_server(Some(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"), 1);
    one_line_error(&run(&["sli", "--url", &url]), "did not speak HTTP");
}

fn tls_against_a_plain_port(lab: &Lab) {
    let plain = lab.urls()[0].replace("http://", "https://");
    one_line_error(&run(&["sli", "--url", &plain]), "TLS");
}

fn a_member_that_never_answers_times_out(_: &Lab) {
    let (url, _h) = fake_server(None, 1);
    one_line_error(
        &run(&["sli", "--url", &url, "--request-timeout", "1s"]),
        "did not answer within 1s",
    );
}

fn wrong_credentials(lab: &Lab) {
    let replica = lab.replica();
    let out = crate::harness::pgpatrol_cmd()
        .args(["reinit", &replica, "--yes", "--username", "patrol"])
        .env("PATRONI_URL", lab.urls().join(","))
        .env("PATRONI_RESTAPI_PASSWORD", "not-the-password")
        .output()
        .expect("run");
    one_line_error(&out, "refused the credentials");
    assert_eq!(
        lab.member_json(&replica)["state"],
        "streaming",
        "nothing happened"
    );
}

fn bad_units_and_sizes(lab: &Lab) {
    let out = lab.pgpatrol(&["sli", "--unit", "TB"]);
    assert_eq!(code(&out), 2);
    assert!(
        crate::harness::stderr(&out).contains("not a unit"),
        "{}",
        crate::harness::stderr(&out)
    );
    let out = lab.pgpatrol(&["heal", "--dry-run", "--tolerance", "5XB"]);
    assert_eq!(code(&out), 2);
    assert!(
        crate::harness::stderr(&out).contains("is not a size"),
        "{}",
        crate::harness::stderr(&out)
    );
    let out = crate::harness::pgpatrol_cmd()
        .args(["heal", "--dry-run"])
        .env("PATRONI_URL", lab.urls().join(","))
        .env("LAG_TOLERANCE", "five")
        .output()
        .expect("run");
    assert_eq!(code(&out), 2, "LAG_TOLERANCE=five: {}", stdout(&out));
    assert!(!crate::harness::stderr(&out).contains("panicked"));
}

fn config_without_restapi_and_missing_password(lab: &Lab) {
    let dir = lab.dir().join("badcfg");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cfg = dir.join("patroni.yml");
    std::fs::write(&cfg, "scope: demo\npostgresql:\n  listen: 127.0.0.1:5432\n").expect("write");
    one_line_error(
        &run(&["list", "-c", cfg.to_str().unwrap()]),
        "no restapi section",
    );
    std::fs::write(&cfg, "scope: [unclosed\n").expect("write");
    one_line_error(
        &run(&["list", "-c", cfg.to_str().unwrap()]),
        "not valid YAML",
    );
    one_line_error(
        &run(&["list", "-c", "/nonexistent/patroni.yml"]),
        "cannot read Patroni config",
    );
    let out = crate::harness::pgpatrol_cmd()
        .args(["heal", "--dry-run", "--username", "patrol"])
        .env("PATRONI_URL", lab.urls().join(","))
        .env_remove("PATRONI_RESTAPI_PASSWORD")
        .output()
        .expect("run");
    one_line_error(&out, "PATRONI_RESTAPI_PASSWORD");
}

fn a_dead_url_is_skipped_for_a_live_one(lab: &Lab) {
    let urls = format!("http://127.0.0.1:{},{}", dead_port(), lab.urls()[0]);
    let out = run(&["sli", "--url", &urls]);
    assert_eq!(code(&out), 0, "{}", crate::harness::stderr(&out));
    assert!(stdout(&out).trim().parse::<u64>().is_ok());
}

fn unknown_member_for_reinit(lab: &Lab) {
    one_line_error(
        &lab.pgpatrol(&["reinit", "pg9", "--yes"]),
        "no member named \"pg9\"",
    );
}

/// A reader that stops reading (`pgpatrol list | head -1`) is its choice, not a crash: with
/// stdout a pipe whose reading end is already closed, every command that writes ends with
/// exit 0 and says nothing on stderr, with no panic hook to hide a `println!` (each command
/// writes to a writer and returns the write's error). Checked without it: a `println!` put
/// back in `list` panics ("failed printing to stdout: Broken pipe") and exits 101.
fn a_closed_stdout_ends_every_command_quietly() {
    use std::os::fd::OwnedFd;
    let (url, _patroni) = routes_server(vec![
        ("/cluster", Route::Json(200, capture("4.1.5/cluster.json"))),
        (
            "/patroni",
            Route::Json(200, capture("4.1.5/patroni_leader.json")),
        ),
        ("/history", Route::Json(200, capture("4.1.5/history.json"))),
        ("/config", Route::Json(200, capture("4.1.5/config.json"))),
    ]);
    let dir = crate::harness::test_tmp();
    let commands: Vec<Vec<String>> = [
        vec!["list", "--url", &url],
        vec!["list", "--url", &url, "-o", "json"],
        vec!["topology", "--url", &url],
        vec!["history", "--url", &url],
        vec!["show-config", "--url", &url],
        vec!["sli", "--url", &url],
        vec!["doctor", "--url", &url],
        vec!["reload", "--url", &url, "--dry-run", "--yes"],
        vec!["completions", "bash"],
        vec!["lab", "status", "--dir", dir.to_str().unwrap_or_default()],
    ]
    .into_iter()
    .map(|c| c.into_iter().map(str::to_owned).collect())
    .collect();
    for args in commands {
        let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
        drop(read);
        let out = pgpatrol_cmd()
            .args(&args)
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run pgpatrol");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "{args:?} panicked on a closed stdout: {stderr}"
        );
        // doctor and sli judge the cluster (exit 1 or 2 for what they find); the others
        // have nothing to report but the closed pipe, which is not an error.
        if !matches!(args[0].as_str(), "doctor" | "sli" | "lab") {
            assert_eq!(
                code(&out),
                0,
                "{args:?} on a closed stdout: exit {:?}, stderr {stderr}",
                out.status
            );
        }
    }
}

/// Patroni applies `PATCH /config` to its own view of the DCS: a member that already sees
/// the requested state answers 200 and writes nothing. The fault matrix saw it with etcd
/// stalled: `resume` answered 200, every member then reported resumed, and etcd still held
/// `pause` once it ran again. So pause, resume and edit-config read each member's own
/// `GET /config` before the step (again for up to 3 s) and send nothing while one of them
/// disagrees with what was read; exit 1, the reason named. Checked without the check:
/// `done`, exit 0 (pause, resume), and a PATCH sent (edit-config).
fn config_writes_send_nothing_while_members_disagree_on_the_config() {
    // Stopped before its step, exit 1, nothing sent: the report, and why it stopped.
    let stopped_unsent = |what: &str, out: &std::process::Output| {
        let r = json_of(what, out);
        assert_eq!(code(out), 1, "{what}: {r:#}");
        assert_eq!(r["stop_cause"], "refused", "{what}: {r:#}");
        assert_eq!(
            r["requests"],
            serde_json::json!([]),
            "{what}: nothing sent: {r:#}"
        );
        let why = r["stopped"].as_str().unwrap_or_default().to_string();
        (r, why)
    };
    let cluster: serde_json::Value =
        serde_json::from_str(&capture("4.1.5/cluster.json")).expect("the capture is JSON");
    let config: serde_json::Value =
        serde_json::from_str(&capture("4.1.5/config.json")).expect("the capture is JSON");
    for (op, paused) in [("resume", true), ("pause", false)] {
        let mut cluster = cluster.clone();
        for m in cluster["members"].as_array_mut().expect("members") {
            m["api_url"] = "{URL}/patroni".into();
        }
        cluster["pause"] = if paused {
            true.into()
        } else {
            serde_json::Value::Null
        };
        let mut seen = config.clone();
        seen["pause"] = if paused {
            serde_json::Value::Null
        } else {
            true.into()
        };
        let (url, _patroni) = routes_server(vec![
            ("/cluster", Route::Json(200, cluster.to_string())),
            (
                "/patroni",
                Route::Json(200, capture("4.1.5/patroni_leader.json")),
            ),
            ("/history", Route::Json(200, capture("4.1.5/history.json"))),
            ("PATCH /config", Route::Json(200, seen.to_string())),
            ("/config", Route::Json(200, seen.to_string())),
        ]);
        let out = run(&[op, "--url", &url, "--yes", "-o", "json"]);
        let (r, why) = stopped_unsent(op, &out);
        assert_eq!(r["result"], "stopped", "{op}: {r:#}");
        assert!(
            why.contains("members do not agree on what the DCS holds")
                && why.contains(if paused {
                    "says resumed"
                } else {
                    "says paused"
                }),
            "{op}: {why}"
        );
    }
    // edit-config: the leader (pg1) already holds loop_wait 7 while the member read (pg0,
    // the --url) does not; a PATCH to the leader would be answered 200 and write nothing.
    let mut ahead = config.clone();
    ahead["loop_wait"] = 7.into();
    let (leader_url, _leader) = routes_server(vec![
        (
            "/patroni",
            Route::Json(200, capture("4.1.5/patroni_leader.json")),
        ),
        ("PATCH /config", Route::Json(200, ahead.to_string())),
        ("/config", Route::Json(200, ahead.to_string())),
    ]);
    let mut cluster = cluster.clone();
    for m in cluster["members"].as_array_mut().expect("members") {
        m["api_url"] = if m["role"] == "leader" {
            format!("{leader_url}/patroni").into()
        } else {
            "{URL}/patroni".into()
        };
    }
    let (url, _replica) = routes_server(vec![
        ("/cluster", Route::Json(200, cluster.to_string())),
        (
            "/patroni",
            Route::Json(200, capture("4.1.5/patroni_replica.json")),
        ),
        ("/history", Route::Json(200, capture("4.1.5/history.json"))),
        ("PATCH /config", Route::Json(200, ahead.to_string())),
        ("/config", Route::Json(200, config.to_string())),
    ]);
    let args = [
        "edit-config",
        "--url",
        &url,
        "--set",
        "loop_wait=7",
        "--timeout",
        "3s",
        "--yes",
        "-o",
        "json",
    ];
    let (_, why) = stopped_unsent("edit-config", &run(&args));
    assert!(
        why.contains("own configuration of pg1 (loop_wait) differs"),
        "edit-config: {why}"
    );
}

/// Patroni answers `PATCH /config` with 409 when its write to the DCS returned false: a
/// change that raced it, or a write the DCS did not confirm in time, which can still land
/// (a CI run saw `resume` answered 409 while etcd was stalled, and the cluster resumed once
/// etcd ran again). So pause, resume and edit-config call it unknown, never failed, unless
/// the DCS already shows the change, and standby promote/demote call it unknown, never
/// "not done"; exit 1 either way. Checked without it: "failed" and "not_done".
fn a_config_write_patroni_could_not_confirm_is_unknown_not_failed() {
    let mut cluster: serde_json::Value =
        serde_json::from_str(&capture("4.1.5/cluster.json")).expect("the capture is JSON");
    for m in cluster["members"].as_array_mut().expect("members") {
        m["api_url"] = "{URL}/patroni".into();
    }
    cluster["pause"] = true.into();
    // A Patroni serving `cluster` and `config`, answering every PATCH /config with 409.
    let patroni = |cluster: &serde_json::Value, config: String| {
        routes_server(vec![
            ("/cluster", Route::Json(200, cluster.to_string())),
            (
                "/patroni",
                Route::Json(200, capture("4.1.5/patroni_leader.json")),
            ),
            ("/history", Route::Json(200, capture("4.1.5/history.json"))),
            ("PATCH /config", Route::Json(409, "Conflict".into())),
            ("/config", Route::Json(200, config)),
        ])
    };
    // Each member's own configuration agrees with the cluster: paused.
    let mut paused: serde_json::Value =
        serde_json::from_str(&capture("4.1.5/config.json")).expect("the capture is JSON");
    paused["pause"] = true.into();
    let (url, _patroni) = patroni(&cluster, paused.to_string());
    // A standby cluster (its leader a standby leader) to promote: the same 409.
    let mut standby = cluster.clone();
    standby["pause"] = serde_json::Value::Null;
    for m in standby["members"].as_array_mut().expect("members") {
        if m["role"] == "leader" {
            m["role"] = "standby_leader".into();
            m["state"] = "streaming".into();
        }
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&capture("4.1.5/config.json")).expect("the capture is JSON");
    config["standby_cluster"] = serde_json::json!({"host": "127.0.0.1", "port": 5432});
    let (standby_url, _standby) = patroni(&standby, config.to_string());
    for args in [
        vec!["resume", "--url", &url, "--yes", "-o", "json"],
        vec![
            "edit-config",
            "--url",
            &url,
            "--set",
            "loop_wait=7",
            "--yes",
            "-o",
            "json",
        ],
        vec![
            "standby",
            "promote",
            "--url",
            &standby_url,
            "--source-gone",
            "--yes",
            "-o",
            "json",
        ],
    ] {
        let out = run(&args);
        let r = json_of(&format!("{args:?}"), &out);
        assert_eq!(code(&out), 1, "{args:?}: {r:#}");
        assert_eq!(r["result"], "unknown", "{args:?}: {r:#}");
        assert_eq!(r["steps"][0]["result"], "unknown", "{args:?}: {r:#}");
        let said = r["steps"][0]["detail"].as_str().unwrap_or_default();
        assert!(
            said.contains("HTTP 409") && said.contains("could not confirm its write to the DCS"),
            "{args:?}: {said}"
        );
        assert!(
            r["exit"]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("is unknown"),
            "{args:?}: {r:#}"
        );
    }
}
