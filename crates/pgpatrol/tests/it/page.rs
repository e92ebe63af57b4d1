//! Topic `page`: `watch`'s status page and event log in a real browser — Debian's
//! Chromium, driven through its chromedriver over WebDriver (a few JSON calls, below), headless
//! with a fresh profile. The page must follow the lab live (no reload), say when it lost the
//! event stream and recover, show a heal's events in order, and log no console error;
//! screenshots of the fleet and of a cluster page go to `target/page-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{test, Lab, Test};
use crate::util::{request, wait_for};
use crate::watch::{start_watch, Proc, WatchRun};

pub fn tests() -> Vec<Test> {
    vec![
        test(
            "the_fleet_page_follows_the_lab_live_and_survives_a_lost_stream",
            the_fleet_page_follows_the_lab_live_and_survives_a_lost_stream,
        ),
        test(
            "a_heals_events_appear_in_order_on_the_cluster_page",
            a_heals_events_appear_in_order_on_the_cluster_page,
        ),
        test(
            "events_are_served_streamed_and_followed",
            events_are_served_streamed_and_followed,
        ),
        test(
            "the_listener_speaks_tls_and_events_reach_the_webhook",
            the_listener_speaks_tls_and_events_reach_the_webhook,
        ),
    ]
}

/// Where screenshots go (kept by CI as the test run's artifacts).
fn artifacts() -> PathBuf {
    let d = crate::harness::it_root()
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("page-artifacts"))
        .unwrap_or_else(|| PathBuf::from("target/page-artifacts"));
    std::fs::create_dir_all(&d).expect("mkdir page-artifacts");
    d
}

/// One WebDriver call: chromedriver speaks HTTP/1.1 only (it drops HTTP/1.0) and keeps the
/// connection open, so the answer is read by its Content-Length.
fn wd(
    method: &str,
    url: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or("http:// URL")?;
    let (hostport, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s =
        std::net::TcpStream::connect(hostport).map_err(|e| format!("connect {hostport}: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                let code = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let text = String::from_utf8_lossy(&raw[end + 4..end + 4 + len]).to_string();
                return Ok((code, text));
            }
        }
    }
    Err(format!(
        "{method} {url}: the connection closed before the answer"
    ))
}

/// A headless Chromium session through chromedriver.
struct Browser {
    driver: Proc,
    base: String,
    session: String,
}

impl Browser {
    fn start(dir: &Path) -> Browser {
        let port = crate::harness::port();
        let driver = Proc::spawn(
            "chromedriver",
            Command::new("/usr/bin/chromedriver").arg(format!("--port={port}")),
            &dir.join("chromedriver.log"),
        );
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver", Duration::from_secs(20), || {
            let (code, body) = wd(
                "GET",
                &format!("{base}/status"),
                None,
                Duration::from_secs(2),
            )
            .ok()?;
            (code == 200 && body.contains("\"ready\":true")).then_some(())
        });
        let profile = dir.join("chromium-profile");
        let _ = std::fs::remove_dir_all(&profile);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let (code, body) = wd(
            "POST",
            &format!("{base}/session"),
            Some(&caps.to_string()),
            Duration::from_secs(60),
        )
        .expect("new session");
        assert_eq!(code, 200, "new session: {body}");
        let v: Value = serde_json::from_str(&body).expect("session JSON");
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id: {v}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let body = (method == "POST").then(|| body.to_string());
        let (code, text) = wd(method, &url, body.as_deref(), Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(code, 200, "{method} {path}: {text}");
        serde_json::from_str::<Value>(&text).expect("WebDriver JSON")["value"].take()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    fn text(&self, selector: &str) -> String {
        self.eval(&format!(
            "var e = document.querySelector({}); return e ? e.textContent : '';",
            json!(selector)
        ))
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .expect("PNG");
        let path = artifacts().join(name);
        std::fs::write(&path, bytes).expect("write screenshot");
        say!("screenshot {}", path.display());
    }

    /// The browser's console entries at SEVERE level since the last call.
    fn console_errors(&self) -> Vec<String> {
        let logs = self.call("POST", "/se/log", json!({"type": "browser"}));
        logs.as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = wd(
            "DELETE",
            &format!("{}/session/{}", self.base, self.session),
            None,
            Duration::from_secs(10),
        );
        self.driver.kill();
    }
}

/// A watcher of the lab with a state file (so events are journaled), and auto-heal with
/// `heal` fields: its folder, its watch.yml (for the test to add to) and its port.
fn page_watch(lab: &Lab, name: &str, heal: Option<&str>) -> (PathBuf, PathBuf, u16) {
    let mut run = WatchRun::new(lab, name).state();
    if let Some(h) = heal {
        run = run.heal(h);
    }
    (run.dir.clone(), run.config(), run.port)
}

/// Spec (issue 26): the fleet table lists the lab healthy; a lagging replica turns its row
/// unhealthy and names the member without a reload; a failover shows the new leader and a
/// leader-changed event on the cluster page within 10 s; a lost stream is said and the page
/// recovers; no console error.
fn the_fleet_page_follows_the_lab_live_and_survives_a_lost_stream(lab: &Lab) {
    let (dir, cfg, port) = page_watch(lab, "page-live", None);
    // A second cluster: a lab of its own (two rows, two clusters).
    let second = crate::standby::OwnLab::up("page-second", &["--members", "2"]);
    let mut y = std::fs::read_to_string(&cfg).expect("watch.yml");
    y.push_str(&format!(
        "  - name: second\n    urls: [{}]\n",
        second.state().urls().join(", ")
    ));
    std::fs::write(&cfg, y).expect("watch.yml");
    let mut watch = start_watch(&dir, &cfg, port);
    let url = format!("http://127.0.0.1:{port}");
    let b = Browser::start(&dir);
    b.go(&format!("{url}/"));
    wait_for("two healthy rows", Duration::from_secs(30), || {
        let v = b.eval("return Array.prototype.map.call(document.querySelectorAll('#fleet tbody tr'), function (r) { return r.getAttribute('data-cluster') + '=' + r.getAttribute('data-health'); }).sort().join(',');");
        (v == "lab=ok,second=ok").then_some(())
    });
    wait_for("the stream is live", Duration::from_secs(20), || {
        b.text("#stream").contains("live").then_some(())
    });
    b.eval("window.__sameDocument = 42; return 1;");
    let replica = lab.replica();
    lab.break_lag(&replica, 20);
    let t0 = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = b.eval("var r = document.querySelector('#fleet tr[data-cluster=\"lab\"]'); return r ? r.getAttribute('data-health') : '';");
        let why = b.text("#fleet tr[data-cluster=\"lab\"] .why");
        if (health == "warn" || health == "crit") && why.contains(&replica) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lab's row did not turn unhealthy without a reload: health {health}, why {why:?}, stream {:?}, refreshed {}, /plan {}",
            b.text("#stream"),
            b.eval("return document.body.getAttribute('data-refreshed') || 'never';"),
            crate::util::http("GET", &format!("{url}/events"), None).1
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    say!(
        "the row turned unhealthy {:.1} s after the break",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        b.eval("return window.__sameDocument || 0;"),
        json!(42),
        "the page was reloaded"
    );
    b.screenshot("fleet.png");
    // "Unhealthy only" hides the healthy row; a header click sorts, a second one reverses.
    let visible = "return Array.prototype.filter.call(document.querySelectorAll('#fleet tbody tr'), function (r) { return r.style.display !== 'none'; }).map(function (r) { return r.getAttribute('data-cluster'); }).join(',');";
    b.eval("var u = document.getElementById('unhealthy'); u.checked = true; u.dispatchEvent(new Event('change')); return 1;");
    assert_eq!(b.eval(visible), json!("lab"));
    b.eval("var u = document.getElementById('unhealthy'); u.checked = false; u.dispatchEvent(new Event('change')); var th = document.querySelector('#fleet th'); th.click(); th.click(); return 1;");
    assert_eq!(b.eval(visible), json!("second,lab"));
    lab.repair();

    b.go(&format!("{url}/cluster/lab"));
    let before = lab.leader();
    lab.crash_leader();
    let new_leader = wait_for("a new leader in /cluster", Duration::from_secs(90), || {
        lab.leader_now().filter(|l| *l != before)
    });
    let t1 = Instant::now();
    wait_for(
        "the cluster page shows the new leader and the event",
        Duration::from_secs(10),
        || {
            let leader = b.eval("var r = Array.prototype.find.call(document.querySelectorAll('#members tbody tr'), function (r) { return r.cells[1].textContent === 'Leader'; }); return r ? r.getAttribute('data-member') : '';");
            let event = b.eval("return document.querySelector('#events li[data-kind=\"leader_changed\"]') ? 1 : 0;");
            (leader == json!(new_leader.as_str()) && event == json!(1)).then_some(())
        },
    );
    say!(
        "the cluster page showed {new_leader} {:.1} s after /cluster did",
        t1.elapsed().as_secs_f64()
    );
    b.screenshot("cluster.png");
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // The stream dropped (watch restarted): said, then recovered.
    // SIGTERM with the page's stream open: the watcher still stops at once (it used to
    // wait for the stream to end, and was killed after 15 s).
    assert_eq!(
        watch.terminate(),
        Some(0),
        "watch did not stop on SIGTERM with an event stream open"
    );
    wait_for(
        "the page says the stream is lost",
        Duration::from_secs(20),
        || b.text("#stream").contains("lost").then_some(()),
    );
    let _watch = start_watch(&dir, &cfg, port);
    wait_for("the page is live again", Duration::from_secs(30), || {
        b.text("#stream").contains("live").then_some(())
    });
    // Only the refused connections of the outage this test caused.
    let errors: Vec<String> = b
        .console_errors()
        .into_iter()
        .filter(|e| !e.contains("ERR_CONNECTION_REFUSED") && !e.contains("events/stream"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    lab.repair();
}

/// Spec (issue 26): with heal enabled, the heal's started and finished events appear in
/// order on the cluster page.
fn a_heals_events_appear_in_order_on_the_cluster_page(lab: &Lab) {
    let (dir, cfg, port) = page_watch(
        lab,
        "page-heal",
        Some("enabled: true, tolerance: 5MB, persist_samples: 2, min_healthy: 0, max_concurrent: 1, cooldown: 1s"),
    );
    let _watch = start_watch(&dir, &cfg, port);
    let b = Browser::start(&dir);
    b.go(&format!("http://127.0.0.1:{port}/cluster/lab"));
    let replica = lab.replica();
    lab.break_lag(&replica, 20);
    let order = wait_for(
        "heal started then finished on the page",
        Duration::from_secs(180),
        || {
            let kinds = b.eval("return Array.prototype.map.call(document.querySelectorAll('#events li'), function (l) { return l.getAttribute('data-kind'); }).reverse().join(',');");
            let kinds = kinds.as_str().unwrap_or_default().to_string();
            (kinds.contains("heal_started") && kinds.contains("heal_finished")).then_some(kinds)
        },
    );
    let started = order.find("heal_started").expect("started");
    let finished = order.find("heal_finished").expect("finished");
    assert!(started < finished, "out of order: {order}");
    let planned = order.find("heal_planned");
    assert!(
        planned.is_none_or(|p| p < started),
        "planned after started: {order}"
    );
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    crate::util::wait_for("the lab healthy again", Duration::from_secs(120), || {
        lab.healthy().then_some(())
    });
}

/// `/events` (JSON, by cluster and id), `/events/stream` (SSE) and `pgpatrol events
/// --follow`; the counter; the journal beside the state file; basic auth on the listener.
fn events_are_served_streamed_and_followed(lab: &Lab) {
    let (dir, cfg, port) = page_watch(lab, "page-events", None);
    let pw = dir.join("listen.password");
    std::fs::write(&pw, "s3cret\n").expect("password");
    let mut y = std::fs::read_to_string(&cfg).expect("watch.yml");
    y = format!(
        "listen_auth: {{username: viewer, password_file: {}}}\n{y}",
        pw.display()
    );
    std::fs::write(&cfg, y).expect("watch.yml");
    let _watch = start_watch(&dir, &cfg, port);
    let url = format!("http://127.0.0.1:{port}");
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode("viewer:s3cret")
    };
    // GET a path of the listener, with the login or without.
    let get = |path: &str, login: bool| -> (u16, String) {
        request(
            "GET",
            &format!("{url}{path}"),
            None,
            login.then_some(auth.as_str()),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    };
    // Without the login: 401, but the probes stay open.
    let (code, _) = get("/events", false);
    assert_eq!(code, 401);
    let (code, _) = get("/", false);
    assert_eq!(code, 401);
    let (code, _) = get("/healthz", false);
    assert_eq!(code, 200);

    // The page without JavaScript is a plain table, and carries no password.
    let (code, html) = get("/", true);
    assert_eq!(code, 200, "{html}");
    assert!(
        html.contains("<table id=\"fleet\">") && html.contains("data-cluster=\"lab\""),
        "{html}"
    );
    let (code, cluster_html) = get("/cluster/lab", true);
    assert_eq!(code, 200);
    let rest_password =
        std::fs::read_to_string(lab.dir().join("restapi.password")).expect("password");
    for page in [&html, &cluster_html] {
        assert!(
            !page.contains(rest_password.trim()) && !page.contains("s3cret"),
            "a password on the page"
        );
    }
    let (code, _) = get("/cluster/nope", true);
    assert_eq!(code, 404);
    let follow_log = dir.join("follow.out");
    let mut follow = Proc::spawn(
        "pgpatrol events --follow",
        crate::harness::pgpatrol_cmd()
            .args([
                "events",
                "--follow",
                "--watch-url",
                &url,
                "--username",
                "viewer",
                "--password-file",
            ])
            .arg(&pw),
        &follow_log,
    );
    let replica = lab.replica();
    lab.break_lag(&replica, 20);
    let got = |q: &str| -> Vec<Value> {
        let (code, body) = get(&format!("/events{q}"), true);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Vec<Value>>(&body).expect("events JSON")
    };
    let over = wait_for(
        "a lag_over_tolerance event",
        Duration::from_secs(30),
        || {
            got("?cluster=lab")
                .into_iter()
                .find(|e| e["kind"] == "lag_over_tolerance" && e["member"] == replica.as_str())
        },
    );
    assert!(
        over["message"].as_str().unwrap().contains("at or over"),
        "{over}"
    );
    let id = over["id"].as_u64().expect("id");
    assert!(got(&format!("?since={id}"))
        .iter()
        .all(|e| e["id"].as_u64() > Some(id)));
    assert!(got("?cluster=nope").is_empty());
    wait_for(
        "events --follow printed it",
        Duration::from_secs(20),
        || {
            let out = std::fs::read_to_string(&follow_log).unwrap_or_default();
            out.contains(&format!("lab {replica} lag_over_tolerance"))
                .then_some(())
        },
    );
    lab.repair();
    wait_for(
        "lag_under_tolerance followed",
        Duration::from_secs(60),
        || {
            let out = std::fs::read_to_string(&follow_log).unwrap_or_default();
            out.contains(&format!("lab {replica} lag_under_tolerance"))
                .then_some(())
        },
    );
    follow.kill();
    let (_, metrics) = get("/metrics", true);
    assert!(
        metrics.contains("pgpatrol_events_total{kind=\"lag_over_tolerance\"}"),
        "{metrics}"
    );
    let journal = std::fs::read_to_string(dir.join("events.jsonl")).expect("events.jsonl");
    assert!(
        journal.lines().any(|l| l.contains("lag_over_tolerance")),
        "{journal}"
    );
    // Bad input: one line, exit 2.
    let out = crate::harness::pgpatrol_cmd()
        .args(["events", "--watch-url", "ftp://x"])
        .output()
        .expect("run");
    crate::util::one_line_error(&out, "not an http(s) URL");
    let out = crate::harness::pgpatrol_cmd()
        .args(["events", "--watch-url", &url])
        .output()
        .expect("run");
    crate::util::one_line_error(&out, "asks for a login");
}

/// `listen_tls:` serves the page and `/events` over HTTPS (the test's own CA), `pgpatrol
/// events --cacert` reads them, and `event_webhook:` receives every event as JSON.
fn the_listener_speaks_tls_and_events_reach_the_webhook(lab: &Lab) {
    let (dir, cfg, port) = page_watch(lab, "page-tls", None);
    let pki = crate::tls::Pki::new();
    let (hook, got) = crate::watch::webhook_receiver();
    let mut y = std::fs::read_to_string(&cfg).expect("watch.yml");
    y = format!(
        "listen_tls: {{cert: {}, key: {}}}\nevent_webhook: {hook}\n{y}",
        pki.path("server.pem"),
        pki.path("server.key")
    );
    std::fs::write(&cfg, y).expect("watch.yml");
    let _watch = Proc::spawn(
        "pgpatrol watch",
        crate::harness::pgpatrol_cmd()
            .args(["watch", "--config"])
            .arg(&cfg),
        &dir.join("watch.log"),
    );
    let url = format!("https://127.0.0.1:{port}");
    let events = |extra: &[&str]| {
        crate::harness::pgpatrol_cmd()
            .args([
                "events",
                "--watch-url",
                &url,
                "--cacert",
                &pki.path("ca.pem"),
            ])
            .args(extra)
            .output()
            .expect("run pgpatrol events")
    };
    wait_for(
        "the HTTPS listener answers",
        Duration::from_secs(30),
        || (events(&[]).status.code() == Some(0)).then_some(()),
    );
    // Plain HTTP to the TLS port is no answer; a certificate of an unknown CA is refused.
    assert!(request(
        "GET",
        &format!("http://127.0.0.1:{port}/events"),
        None,
        None,
        Duration::from_secs(3)
    )
    .map_or(true, |(code, _)| code != 200));
    let out = crate::harness::pgpatrol_cmd()
        .args([
            "events",
            "--watch-url",
            &url,
            "--cacert",
            &pki.path("other-ca.pem"),
        ])
        .output()
        .expect("run");
    crate::util::one_line_error(&out, "cannot read the watcher");
    let replica = lab.replica();
    lab.break_lag(&replica, 20);
    wait_for("the event over HTTPS", Duration::from_secs(30), || {
        let out = events(&["--cluster", "lab", "--json"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("lag_over_tolerance")
            .then_some(())
    });
    wait_for("the event at the webhook", Duration::from_secs(30), || {
        got.lock()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "lag_over_tolerance" && e["member"] == replica.as_str())
            .then_some(())
    });
    lab.repair();
}
