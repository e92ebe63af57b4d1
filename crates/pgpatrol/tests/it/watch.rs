//! `pgpatrol watch` against the live lab, a real Alertmanager and a real Prometheus
//! (Debian's packages, started here on loopback): lag shows in /metrics within an interval,
//! the burn-rate alert reaches Alertmanager and resolves after repair, generated rules pass
//! promtool and load in Prometheus, Prometheus scrapes /metrics, auto-heal waits for the
//! breach to persist, two watchers never heal at once, and a restart keeps the budget.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{ok, stderr, Lab, Test, MB};
use crate::util::{code, get_json, http, one_line_error, stdout, wait_for};

pub fn tests() -> Vec<Test> {
    tests![
        watch_exports_lag_within_an_interval,
        burn_rate_alert_reaches_alertmanager_and_resolves_after_repair,
        generated_rules_pass_promtool_and_prometheus_scrapes_watch,
        auto_heal_acts_only_after_the_breach_persists,
        a_watch_stopped_mid_heal_heals_again_after_a_restart,
        a_watch_killed_mid_heal_keeps_the_record_and_counts_it_after_a_restart,
        a_failed_heal_escalates_and_resolves_when_healthy,
        at_the_attempt_cap_auto_heal_escalates_instead_of_acting,
        the_heal_lease_in_etcd_admits_one_holder,
        two_watchers_never_heal_at_once,
        two_watchers_share_the_lease_on_an_etcd_with_tls_and_authentication,
        a_lost_lease_stops_auto_heal_before_the_second_action,
        a_receiver_that_never_answers_does_not_hold_up_polling,
        a_restart_keeps_the_error_budget,
        bad_watch_config_is_one_line,
    ]
}

/// A port of this test's own, free now (see `harness::ports`).
pub(crate) fn free_port() -> u16 {
    crate::harness::port()
}

/// A child process killed (SIGTERM, then SIGKILL) when dropped, also when a test panics.
pub(crate) struct Proc {
    child: Child,
    what: &'static str,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr into `log` (a file, as a service's journal is).
    pub(crate) fn spawn(what: &'static str, cmd: &mut Command, log: &Path) -> Proc {
        let f = std::fs::File::create(log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Proc { child, what }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(exit code)` once the process has ended (`Some(None)`: killed by a signal).
    pub(crate) fn try_exit(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().ok().flatten().map(|s| s.code())
    }

    /// SIGKILL and wait: no chance to save anything on the way out.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (bounded); returns the exit code.
    pub(crate) fn terminate(&mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        say!("{} did not stop on SIGTERM within 15 s", self.what);
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// Waits until `f` returns Some (bounded); panics with `what` otherwise.
pub(crate) fn scratch(lab: &Lab, name: &str) -> PathBuf {
    let d = lab.dir().join("watch-tests").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

#[derive(Default)]
pub(crate) struct WatchSpec<'a> {
    pub(crate) heal: Option<&'a str>,
    pub(crate) alertmanager: Option<String>,
    pub(crate) webhook: Option<String>,
    pub(crate) state_file: Option<PathBuf>,
    /// A `checks:` section (watch runs doctor's checks and exports pgpatrol_check).
    pub(crate) checks: Option<&'a str>,
    /// The REST URLs to reach the lab by (default: every member's).
    pub(crate) urls: Option<Vec<String>>,
    /// A `postgres:` login as the superuser, its password in this file
    /// (`util::superuser_password_file`).
    pub(crate) postgres: Option<PathBuf>,
}

/// One watcher of the lab for a test, built in one expression:
/// `WatchRun::new(lab, "name").heal("enabled: true, ...").state().start()`. It owns its
/// scratch folder and its port; `config()` writes its watch.yml, `start()` writes it and
/// starts `pgpatrol watch` (stopped when the returned `Proc` drops).
pub(crate) struct WatchRun<'l> {
    lab: &'l Lab,
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    heal: Option<String>,
    alertmanager: Option<String>,
    webhook: Option<String>,
    state: bool,
    checks: Option<String>,
    urls: Option<Vec<String>>,
    postgres: bool,
}

impl<'l> WatchRun<'l> {
    pub(crate) fn new(lab: &'l Lab, name: &str) -> Self {
        WatchRun {
            lab,
            dir: scratch(lab, name),
            port: free_port(),
            heal: None,
            alertmanager: None,
            webhook: None,
            state: false,
            checks: None,
            urls: None,
            postgres: false,
        }
    }

    /// Auto-heal with `fields`, its lease a lock file in the scratch folder (`local: true`:
    /// the test's only watcher of the cluster).
    pub(crate) fn heal(mut self, fields: &str) -> Self {
        self.heal = Some(local_heal(&self.dir, fields));
        self
    }

    /// Auto-heal with a whole `heal:` section (a lease of its own).
    pub(crate) fn heal_section(mut self, section: String) -> Self {
        self.heal = Some(section);
        self
    }

    pub(crate) fn alertmanager(mut self, url: &str) -> Self {
        self.alertmanager = Some(url.to_string());
        self
    }

    pub(crate) fn webhook(mut self, url: String) -> Self {
        self.webhook = Some(url);
        self
    }

    /// A state file, `state.json` in the scratch folder.
    pub(crate) fn state(mut self) -> Self {
        self.state = true;
        self
    }

    pub(crate) fn checks(mut self, section: &str) -> Self {
        self.checks = Some(section.to_string());
        self
    }

    pub(crate) fn urls(mut self, urls: Vec<String>) -> Self {
        self.urls = Some(urls);
        self
    }

    /// A `postgres:` login as the lab's superuser.
    pub(crate) fn postgres(mut self) -> Self {
        self.postgres = true;
        self
    }

    pub(crate) fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Writes its watch.yml (for `port`, so a second watcher can share the settings).
    pub(crate) fn config_for(&self, port: u16) -> PathBuf {
        let postgres = self
            .postgres
            .then(|| crate::util::superuser_password_file(self.lab, &self.dir));
        watch_yml(
            self.lab,
            &self.dir,
            port,
            &WatchSpec {
                heal: self.heal.as_deref(),
                alertmanager: self.alertmanager.clone(),
                webhook: self.webhook.clone(),
                state_file: self.state.then(|| self.state_file()),
                checks: self.checks.as_deref(),
                urls: self.urls.clone(),
                postgres,
            },
        )
    }

    pub(crate) fn config(&self) -> PathBuf {
        self.config_for(self.port)
    }

    /// Writes its watch.yml and starts `pgpatrol watch`, waiting until `/readyz` answers.
    pub(crate) fn start(&self) -> Proc {
        start_watch(&self.dir, &self.config(), self.port)
    }
}

pub(crate) fn watch_yml(lab: &Lab, dir: &Path, port: u16, spec: &WatchSpec) -> PathBuf {
    let urls = spec.urls.clone().unwrap_or_else(|| lab.urls()).join(", ");
    let mut y = format!(
        "listen: 127.0.0.1:{port}\ninterval: 1s\ntimeout: 3s\ndoc_link: https://runbooks.example/patroni-lag\n"
    );
    if let Some(am) = &spec.alertmanager {
        y.push_str(&format!("alertmanager: {am}\n"));
    }
    if let Some(w) = &spec.webhook {
        y.push_str(&format!("webhook: {w}\n"));
    }
    if let Some(s) = &spec.state_file {
        y.push_str(&format!("state_file: {}\n", s.display()));
    }
    if let Some(c) = spec.checks {
        y.push_str(&format!("checks: {c}\n"));
    }
    y.push_str(&format!(
        "clusters:\n  - name: lab\n    urls: [{urls}]\n    username: patrol\n    password_file: {}\n    slo:\n      objective: 99%\n      threshold: 5MB\n      window: 10m\n      alerts:\n        - {{severity: page, long: 20s, short: 5s, factor: 10}}\n",
        lab.dir().join("restapi.password").display()
    ));
    if let Some(pw) = &spec.postgres {
        y.push_str(&format!(
            "    postgres: {{user: postgres, password_file: {}}}\n",
            pw.display()
        ));
    }
    if let Some(h) = spec.heal {
        y.push_str(&format!("    heal: {h}\n"));
    }
    let path = dir.join(format!("watch-{port}.yml"));
    std::fs::write(&path, y).expect("write watch.yml");
    path
}

/// A `heal:` section with `fields` and a lock file in `dir/locks` as its lease, for a test's
/// only watcher of the cluster (`local: true`).
pub(crate) fn local_heal(dir: &Path, fields: &str) -> String {
    format!(
        "{{{fields}, lease: {{dir: {}, local: true}}}}",
        dir.join("locks").display()
    )
}

pub(crate) fn start_watch(dir: &Path, cfg: &Path, port: u16) -> Proc {
    start_watch_with(dir, cfg, port, &[])
}

/// [`start_watch`] with more flags (`--audit-log PATH`).
pub(crate) fn start_watch_with(dir: &Path, cfg: &Path, port: u16, flags: &[&str]) -> Proc {
    let p = Proc::spawn(
        "pgpatrol watch",
        crate::harness::pgpatrol_cmd()
            .args(["watch", "--config"])
            .arg(cfg)
            .args(flags),
        &dir.join(format!("watch-{port}.log")),
    );
    wait_for("watch /readyz", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        (http("GET", &format!("http://127.0.0.1:{port}/readyz"), None).0 == 200).then_some(())
    });
    p
}

/// Waits until the watcher on `port` has polled `cluster` `n` more times (within `limit`):
/// "a few more polls" as a state, not a sleep.
pub(crate) fn wait_polls(port: u16, cluster: &str, n: f64, limit: Duration) {
    let key = format!("pgpatrol_polls_total{{cluster=\"{cluster}\"}}");
    let polls = || sample(&metrics(port), &key).unwrap_or(0.0);
    let start = polls();
    wait_for(&format!("{n} more polls of {cluster}"), limit, || {
        (polls() >= start + n).then_some(())
    });
}

pub(crate) fn metrics(port: u16) -> String {
    http("GET", &format!("http://127.0.0.1:{port}/metrics"), None).1
}

/// The value of the first sample whose line starts with `prefix` (name and labels).
pub(crate) fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn watch_exports_lag_within_an_interval(lab: &Lab) {
    let run = WatchRun::new(lab, "lag");
    let port = run.port;
    let _w = run.start();
    assert_eq!(
        http("GET", &format!("http://127.0.0.1:{port}/healthz"), None).0,
        200
    );
    let m = metrics(port);
    assert_eq!(
        sample(&m, "pgpatrol_cluster_up{cluster=\"lab\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pgpatrol_cluster_leaders{cluster=\"lab\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "pgpatrol_cluster_members{cluster=\"lab\"}"),
        Some(lab.members().len() as f64)
    );

    let replica = lab.replica();
    lab.break_lag(&replica, 20);
    // lab break returns once Patroni reports the lag: watch shows it within its interval.
    let series = format!(
        "pgpatrol_member_lag_bytes{{cluster=\"lab\",member=\"{replica}\",kind=\"replay\"}}"
    );
    let lag = wait_for("lag in /metrics", Duration::from_secs(5), || {
        sample(&metrics(port), &series).filter(|v| *v >= 20.0 * 1024.0 * 1024.0)
    });
    assert!(lag >= 20.0 * 1024.0 * 1024.0);
    let m = metrics(port);
    assert!(
        sample(
            &m,
            "pgpatrol_cluster_sli_bytes{cluster=\"lab\",kind=\"replay\"}"
        )
        .unwrap()
            >= lag
    );
    let plan: Value = get_json(&format!("http://127.0.0.1:{port}/plan"));
    assert_eq!(plan["lab"]["up"], true, "{plan:#}");
    assert!(plan["lab"]["sli_bytes"].as_u64().unwrap() >= 20 << 20);
}

struct Alertmanager {
    _proc: Proc,
    url: String,
}

fn start_alertmanager(dir: &Path) -> Alertmanager {
    let port = free_port();
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route: {receiver: 'null', group_wait: 1s, group_interval: 1s, repeat_interval: 1h}\nreceivers: [{name: 'null'}]\n",
    )
    .expect("write");
    let p = Proc::spawn(
        "alertmanager",
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address="),
        &dir.join("alertmanager.log"),
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_for("Alertmanager ready", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        (http("GET", &format!("{url}/-/ready"), None).0 == 200).then_some(())
    });
    Alertmanager { _proc: p, url }
}

fn active_alerts(am: &str) -> Vec<Value> {
    let v = get_json(&format!(
        "{am}/api/v2/alerts?active=true&silenced=false&inhibited=false"
    ));
    v.as_array().cloned().unwrap_or_default()
}

/// Waits (up to `limit`) until Alertmanager at `am` holds an active alert named `name`.
fn firing_alert(am: &str, name: &str, what: &str, limit: Duration) -> Value {
    wait_for(what, limit, || {
        active_alerts(am)
            .into_iter()
            .find(|a| a["labels"]["alertname"] == name)
    })
}

/// A webhook receiver on loopback that keeps every JSON body POSTed to it.
pub(crate) fn webhook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut s) = stream else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            // Read the head, then Content-Length bytes of body.
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        if let Ok(v) = serde_json::from_str::<Value>(&body[..len]) {
                            keep.lock().unwrap().push(v);
                        }
                        break;
                    }
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        }
    });
    (url, got)
}

fn burn_rate_alert_reaches_alertmanager_and_resolves_after_repair(lab: &Lab) {
    let run = WatchRun::new(lab, "alerts");
    let am = start_alertmanager(&run.dir);
    let (hook, hooked) = webhook_receiver();
    let run = run.alertmanager(&am.url).webhook(hook);
    let port = run.port;
    let _w = run.start();
    let replica = lab.replica();
    lab.break_lag(&replica, 20);
    let alert = firing_alert(
        &am.url,
        "PgpatrolReplicaLagBudgetBurn",
        "the burn-rate alert in Alertmanager",
        Duration::from_secs(60),
    );
    assert_eq!(alert["labels"]["cluster"], "lab");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "https://runbooks.example/patroni-lag"
    );
    assert!(alert["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("lab"));
    assert_eq!(
        sample(&metrics(port), "pgpatrol_slo_alert_firing{cluster=\"lab\""),
        Some(1.0)
    );

    lab.repair();
    wait_for(
        "the alert to resolve in Alertmanager",
        Duration::from_secs(90),
        || {
            let still = active_alerts(&am.url)
                .into_iter()
                .any(|a| a["labels"]["alertname"] == "PgpatrolReplicaLagBudgetBurn");
            (!still).then_some(())
        },
    );
    // The series exists only while the alert fires.
    assert_eq!(
        sample(&metrics(port), "pgpatrol_slo_alert_firing{cluster=\"lab\""),
        None
    );
    // The webhook got the same story: one firing, then one resolved, as plain JSON. It is
    // sent after Alertmanager, so it may arrive a moment later.
    wait_for(
        "the resolved alert at the webhook",
        Duration::from_secs(10),
        || {
            hooked
                .lock()
                .unwrap()
                .iter()
                .any(|b| {
                    b["alertname"] == "PgpatrolReplicaLagBudgetBurn" && b["status"] == "resolved"
                })
                .then_some(())
        },
    );
    let bodies = hooked.lock().unwrap().clone();
    let statuses: Vec<&str> = bodies
        .iter()
        .filter(|b| b["alertname"] == "PgpatrolReplicaLagBudgetBurn")
        .filter_map(|b| b["status"].as_str())
        .collect();
    assert_eq!(statuses, vec!["firing", "resolved"], "{bodies:#?}");
    assert_eq!(bodies[0]["cluster"], "lab");
    assert_eq!(
        bodies[0]["runbook_url"],
        "https://runbooks.example/patroni-lag"
    );
}

fn generated_rules_pass_promtool_and_prometheus_scrapes_watch(lab: &Lab) {
    let run = WatchRun::new(lab, "prometheus").checks("{interval: 2s}");
    let (dir, port, cfg) = (run.dir.clone(), run.port, run.config());
    let rules = dir.join("rules.yml");
    let out = crate::harness::pgpatrol_cmd()
        .args(["slo", "rules", "--config"])
        .arg(&cfg)
        .arg("-o")
        .arg(&rules)
        .output()
        .expect("run");
    ok("slo rules", &out);
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "promtool: {}{}",
        stdout(&check),
        crate::harness::stderr(&check)
    );
    assert!(stdout(&check).contains("SUCCESS"), "{}", stdout(&check));

    let _w = run.start();
    let prom_port = free_port();
    let prom_cfg = dir.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{}]\nscrape_configs:\n  - job_name: pgpatrol\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
            rules.display()
        ),
    )
    .expect("write");
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(&prom_cfg)
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "promtool check config: {}{}",
        stdout(&check),
        crate::harness::stderr(&check)
    );
    let _p = Proc::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
        &dir.join("prometheus.log"),
    );
    let api = format!("http://127.0.0.1:{prom_port}/api/v1");
    let v = wait_for(
        "Prometheus to scrape pgpatrol_cluster_up",
        Duration::from_secs(60),
        || {
            std::net::TcpStream::connect(("127.0.0.1", prom_port)).ok()?;
            let (status, body) = http(
                "GET",
                &format!("{api}/query?query=pgpatrol_cluster_up"),
                None,
            );
            let v: Value = serde_json::from_str(&body).ok()?;
            (status == 200
                && v["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty()))
            .then_some(v)
        },
    );
    assert_eq!(v["data"]["result"][0]["metric"]["cluster"], "lab");
    assert_eq!(v["data"]["result"][0]["value"][1], "1");
    // The target is healthy (the OpenMetrics exposition parsed) and the rules loaded.
    let targets = get_json(&format!("{api}/targets"));
    assert_eq!(
        targets["data"]["activeTargets"][0]["health"], "up",
        "{targets:#}"
    );
    let rules_api = get_json(&format!("{api}/rules"));
    let groups = rules_api["data"]["groups"].as_array().unwrap();
    // The SLO's recordings and alerts, and one alert per doctor check.
    assert_eq!(groups.len(), 3, "{rules_api:#}");
    assert!(
        groups.iter().any(|g| g["name"] == "pgpatrol-checks"
            && g["rules"].as_array().map(Vec::len) == Some(pgpatrol_core::checks::CHECK_IDS.len())),
        "{rules_api:#}"
    );
    assert!(
        groups
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .all(|r| r["health"] != "err"),
        "{rules_api:#}"
    );
    // watch runs doctor's checks and Prometheus has them: the leader check is OK (0).
    let leader_check = wait_for(
        "Prometheus to scrape pgpatrol_check",
        Duration::from_secs(60),
        || {
            let (_, body) = http(
                "GET",
                &format!("{api}/query?query=pgpatrol_check%7Bcheck%3D%22leader%22%7D"),
                None,
            );
            let v: Value = serde_json::from_str(&body).ok()?;
            v["data"]["result"]
                .as_array()
                .and_then(|r| r.first().cloned())
        },
    );
    assert_eq!(leader_check["metric"]["cluster"], "lab", "{leader_check:#}");
    assert_eq!(leader_check["value"][1], "0", "{leader_check:#}");
    wait_for(
        "a recording rule to produce a value",
        Duration::from_secs(60),
        || {
            let (_, body) = http(
                "GET",
                &format!("{api}/query?query=pgpatrol:slo_error_ratio:rate20s"),
                None,
            );
            let v: Value = serde_json::from_str(&body).ok()?;
            v["data"]["result"]
                .as_array()
                .filter(|r| !r.is_empty())
                .map(|_| ())
        },
    );
}

pub(crate) fn plan(port: u16) -> Value {
    get_json(&format!("http://127.0.0.1:{port}/plan"))
}

fn auto_heal_acts_only_after_the_breach_persists(lab: &Lab) {
    let run = WatchRun::new(lab, "autoheal")
        .heal("enabled: true, tolerance: 5MB, persist_samples: 10, min_healthy: 1");
    let port = run.port;
    let _w = run.start();
    let replica = lab.replica();
    let before = crate::util::start_times(lab);
    lab.break_lag(&replica, 20);
    // Until the breach has held for 10 samples, nothing may be attempted (10, not fewer: the
    // watcher must not act before `lab break lag` has finished making the fault). The test
    // reads /plan four times per sample, so before the first attempt it must have seen the
    // count climb to 9 (8 allows one slow read) with no attempt: a watcher that acted on an
    // early sample is caught even when the rebuild resets the count before the test looks.
    let mut quiet_max = 0;
    let healed = wait_for("auto-heal to heal", Duration::from_secs(90), || {
        let p = plan(port);
        let h = &p["lab"]["heal"];
        let breaches = h["breaches"][&replica].as_u64().unwrap_or(0);
        let attempts = h["attempts"][&replica].as_u64().unwrap_or(0);
        if attempts == 0 {
            quiet_max = quiet_max.max(breaches);
        } else {
            assert!(
                quiet_max >= 8,
                "acted with at most {quiet_max} breaching samples seen before it: {p:#}"
            );
            if breaches > 0 {
                assert!(
                    breaches >= 10,
                    "acted after {breaches} breaching samples: {p:#}"
                );
            }
        }
        let outcomes = h["last_outcomes"].as_array().cloned().unwrap_or_default();
        outcomes
            .into_iter()
            .find(|o| o["member"] == replica.as_str())
    });
    assert_eq!(healed["result"], "healed", "{healed:#}");
    let m = metrics(port);
    assert_eq!(
        sample(&m, "pgpatrol_heal_attempted_total{cluster=\"lab\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pgpatrol_heal_succeeded_total{cluster=\"lab\"}"),
        Some(1.0),
        "{m}"
    );
    let after = crate::util::start_times(lab);
    assert_ne!(before[&replica], after[&replica], "the replica was rebuilt");
    let leader = lab.leader();
    assert_eq!(before[&leader], after[&leader], "the leader is untouched");
}

fn a_failed_heal_escalates_and_resolves_when_healthy(lab: &Lab) {
    let run = WatchRun::new(lab, "escalation");
    let am = start_alertmanager(&run.dir);
    // A 1 s wait is shorter than any reinit: the heal counts as failed, so it escalates.
    let run = run
        .heal("enabled: true, tolerance: 5MB, persist_samples: 10, timeout: 1s")
        .alertmanager(&am.url);
    let port = run.port;
    let _w = run.start();
    let replica = lab.replica();
    lab.break_lag(&replica, 20);
    let alert = firing_alert(
        &am.url,
        "PgpatrolHealEscalation",
        "the escalation in Alertmanager",
        Duration::from_secs(60),
    );
    assert_eq!(alert["labels"]["member"], replica.as_str());
    assert_eq!(alert["labels"]["severity"], "page");
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("auto-heal failed"),
        "{alert:#}"
    );
    let m = metrics(port);
    assert_eq!(
        sample(&m, "pgpatrol_heal_failed_total{cluster=\"lab\"}"),
        Some(1.0),
        "{m}"
    );
    // Patroni finishes the reinit on its own; once the member is healthy the page resolves.
    wait_for("the escalation to resolve", Duration::from_secs(90), || {
        let open = active_alerts(&am.url)
            .into_iter()
            .any(|a| a["labels"]["alertname"] == "PgpatrolHealEscalation");
        (!open).then_some(())
    });
}

fn at_the_attempt_cap_auto_heal_escalates_instead_of_acting(lab: &Lab) {
    let run = WatchRun::new(lab, "cap");
    let am = start_alertmanager(&run.dir);
    // One attempt per member per 24 h and no cooldown: the second breach meets the cap.
    let run = run
        .heal("enabled: true, tolerance: 5MB, persist_samples: 10, cooldown: 0s, max_attempts: 1")
        .alertmanager(&am.url);
    let port = run.port;
    let _w = run.start();
    let replica = lab.replica();
    lab.break_lag(&replica, 20);
    let first = wait_for("the first auto-heal", Duration::from_secs(90), || {
        let p = plan(port);
        let outcomes = p["lab"]["heal"]["last_outcomes"].as_array().cloned();
        outcomes
            .unwrap_or_default()
            .into_iter()
            .find(|o| o["member"] == replica.as_str())
    });
    assert_eq!(first["result"], "healed", "{first:#}");

    // The same fault again: now at the cap, auto-heal pages a person and leaves the member.
    lab.break_lag(&replica, 20);
    let rebuilt = crate::util::start_times(lab);
    let alert = firing_alert(
        &am.url,
        "PgpatrolHealEscalation",
        "the escalation at the cap",
        Duration::from_secs(60),
    );
    assert_eq!(alert["labels"]["member"], replica.as_str());
    let why = alert["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("auto-heal stopped trying"), "{alert:#}");
    let m = metrics(port);
    assert_eq!(
        sample(&m, "pgpatrol_heal_attempted_total{cluster=\"lab\"}"),
        Some(1.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            "pgpatrol_heal_refused_total{cluster=\"lab\",reason=\"max_attempts\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    // A few more polls: still no second reinitialization, the replica still lags.
    wait_polls(port, "lab", 4.0, Duration::from_secs(30));
    assert_eq!(
        rebuilt,
        crate::util::start_times(lab),
        "nothing was rebuilt"
    );
    assert_eq!(
        sample(
            &metrics(port),
            "pgpatrol_heal_attempted_total{cluster=\"lab\"}"
        ),
        Some(1.0)
    );
    assert!(lab.member_json(&replica)["lag"].as_u64().unwrap_or(0) >= 20 * MB);
}

fn etcd_url(lab: &Lab) -> String {
    format!("http://127.0.0.1:{}", lab.state().etcd.client_port)
}

/// The heal lease store on the lab's etcd, as a watcher with `lease: {etcd: URL}` has it.
pub(crate) fn etcd_lease(lab: &Lab) -> pgpatrol::watch::lease::LeaseStore {
    use pgpatrol::source::dcs::etcd::{Etcd, EtcdOptions};
    let url = etcd_url(lab);
    let etcd = Etcd::new(&EtcdOptions {
        endpoints: vec![url.clone()],
        auth: None,
        http: pgpatrol::source::http::HttpOptions::default(),
    })
    .expect("etcd client");
    pgpatrol::watch::lease::LeaseStore::Etcd { etcd, shown: url }
}

fn the_heal_lease_in_etcd_admits_one_holder(lab: &Lab) {
    use pgpatrol::watch::lease::LeaseStore;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store: LeaseStore = etcd_lease(lab);
        let a = store
            .try_acquire("lease-test", "a")
            .await
            .expect("etcd answers")
            .expect("the first takes it");
        assert!(
            store
                .try_acquire("lease-test", "b")
                .await
                .expect("etcd answers")
                .is_none(),
            "a second holder"
        );
        a.release().await;
        let b = store
            .try_acquire("lease-test", "b")
            .await
            .expect("etcd answers");
        assert!(b.is_some(), "free again after release");
        if let Some(b) = b {
            b.release().await;
        }
    });
}

fn two_watchers_never_heal_at_once(lab: &Lab) {
    // Two watchers with the same settings, the lease in the lab's etcd.
    let run = WatchRun::new(lab, "two").heal_section(format!(
        "{{enabled: true, tolerance: 5MB, persist_samples: 10, lease: {{etcd: {}}}}}",
        etcd_url(lab)
    ));
    let dir = run.dir.clone();
    let (pa, pb) = (run.port, free_port());
    let (ca, cb) = (run.config(), run.config_for(pb));
    let _a = start_watch(&dir, &ca, pa);
    let _b = start_watch(&dir, &cb, pb);
    let replica = lab.replica();
    lab.break_lag(&replica, 20);
    let attempted = |port| {
        sample(
            &metrics(port),
            "pgpatrol_heal_attempted_total{cluster=\"lab\"}",
        )
        .unwrap_or(0.0)
    };
    let succeeded = |port| {
        sample(
            &metrics(port),
            "pgpatrol_heal_succeeded_total{cluster=\"lab\"}",
        )
        .unwrap_or(0.0)
    };
    wait_for(
        "one of the watchers to heal",
        Duration::from_secs(90),
        || (succeeded(pa) + succeeded(pb) >= 1.0).then_some(()),
    );
    // Keep watching a few more polls: the other must not start a second reinit.
    wait_polls(pa, "lab", 5.0, Duration::from_secs(30));
    wait_polls(pb, "lab", 5.0, Duration::from_secs(30));
    assert_eq!(
        attempted(pa) + attempted(pb),
        1.0,
        "exactly one reinitialization between the two watchers"
    );
}

/// Issue 23: the heal lease goes through the one etcd client, so it works where Patroni's
/// DCS usually is: an etcd with TLS and authentication. Two watchers read the lab over REST
/// from a patroni.yml whose `etcd3` section names such an etcd (https, `cacert`,
/// `username`/`password`; no `lease:` in watch.yml, so the lease is taken there), heal
/// enabled on both: exactly one reinitializes, and neither fails to take the lease (before,
/// the lease client spoke plain HTTP to the first host without credentials, and auto-heal
/// silently never acted on such an etcd). No client certificate here: with authentication
/// on, etcd's JSON gateway refuses one that has a CommonName (CVE-2018-16886), for Patroni's
/// client as for pgpatrol's; client certificates are covered by `dcs::etcd_with_tls`.
fn two_watchers_share_the_lease_on_an_etcd_with_tls_and_authentication(lab: &Lab) {
    let dir = scratch(lab, "tls-lease");
    let pki = crate::tls::Pki::new();
    let etcd = crate::dcs::TestEtcd::start_with(&dir, "lease-etcd", Some(&pki), false, &[]);
    etcd.enable_auth("lease-pw");
    let tls = etcd.tls.clone().expect("TLS URL");
    // The lab's own patroni.yml for pg0, its etcd3 section pointing at the TLS etcd.
    let yml = std::fs::read_to_string(lab.dir().join("config/pg0.yml")).expect("pg0.yml");
    let start = yml.find("\netcd3:\n").expect("an etcd3 section") + 1;
    let body = start + "etcd3:\n".len();
    let end = body
        + yml[body..]
            .lines()
            .take_while(|l| l.starts_with(' '))
            .map(|l| l.len() + 1)
            .sum::<usize>();
    let etcd3 = format!(
        "etcd3:\n  hosts: {}\n  protocol: https\n  cacert: {}\n  username: root\n  password: lease-pw\n",
        tls.trim_start_matches("https://"),
        pki.path("ca.pem"),
    );
    let watcher_yml = dir.join("watcher-patroni.yml");
    std::fs::write(
        &watcher_yml,
        format!("{}{etcd3}{}", &yml[..start], &yml[end..]),
    )
    .expect("write watcher-patroni.yml");
    let (pa, pb) = (free_port(), free_port());
    let config = |port: u16| {
        let path = dir.join(format!("watch-{port}.yml"));
        std::fs::write(
            &path,
            format!(
                "listen: 127.0.0.1:{port}\ninterval: 1s\ntimeout: 3s\nclusters:\n  - name: lab\n    patroni_yml: {}\n    heal: {{enabled: true, tolerance: 5MB, persist_samples: 10}}\n",
                watcher_yml.display()
            ),
        )
        .expect("write watch.yml");
        path
    };
    let (ca, cb) = (config(pa), config(pb));
    let _a = start_watch(&dir, &ca, pa);
    let _b = start_watch(&dir, &cb, pb);
    let replica = lab.replica();
    lab.break_lag(&replica, 20);
    let count = |port, name: &str| {
        sample(&metrics(port), &format!("{name}{{cluster=\"lab\"}}")).unwrap_or(0.0)
    };
    let lease_errors = |port| {
        sample(
            &metrics(port),
            "pgpatrol_heal_refused_total{cluster=\"lab\",reason=\"lease_error\"}",
        )
        .unwrap_or(0.0)
    };
    wait_for(
        "one of the watchers to heal through the TLS etcd's lease",
        Duration::from_secs(90),
        || {
            let healed = count(pa, "pgpatrol_heal_succeeded_total")
                + count(pb, "pgpatrol_heal_succeeded_total");
            let errors = lease_errors(pa) + lease_errors(pb);
            if errors > 0.0 {
                let said: Vec<String> = [pa, pb]
                    .iter()
                    .filter_map(|p| {
                        std::fs::read_to_string(dir.join(format!("watch-{p}.log"))).ok()
                    })
                    .flat_map(|l| {
                        l.lines()
                            .filter(|l| l.contains("lease"))
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                panic!("a watcher could not take the lease on the TLS etcd: {said:#?}");
            }
            (healed >= 1.0).then_some(())
        },
    );
    // A few more polls: the other must not start a second reinit.
    let polls = count(pa, "pgpatrol_polls_total");
    wait_for("five more polls", Duration::from_secs(20), || {
        (count(pa, "pgpatrol_polls_total") >= polls + 5.0).then_some(())
    });
    assert_eq!(
        count(pa, "pgpatrol_heal_attempted_total") + count(pb, "pgpatrol_heal_attempted_total"),
        1.0,
        "exactly one reinitialization between the two watchers"
    );
    assert_eq!(lease_errors(pa) + lease_errors(pb), 0.0);
}

/// Regression: a SIGTERM during an auto-heal left the reinit's record unfinished in the
/// state file, and the restarted watch counted it as running for ever: it never healed that
/// cluster again.
fn a_watch_stopped_mid_heal_heals_again_after_a_restart(lab: &Lab) {
    let run = WatchRun::new(lab, "midheal")
        .heal("enabled: true, tolerance: 5MB, persist_samples: 3, cooldown: 1s, min_healthy: 1")
        .state();
    let (dir, port, cfg, state) = (run.dir.clone(), run.port, run.config(), run.state_file());
    let replica = lab.replica();
    let mut w = start_watch(&dir, &cfg, port);
    lab.break_lag(&replica, 20);
    // Stopped while the reinit runs: an attempt is recorded and not yet finished.
    wait_for("auto-heal to start", Duration::from_secs(60), || {
        let p = plan(port);
        p["lab"]["heal"]["history"]
            .as_array()
            .and_then(|h| h.iter().find(|r| r["member"] == replica.as_str()))
            .filter(|r| r["finished"].is_null())
            .cloned()
    });
    assert_eq!(w.terminate(), Some(0), "SIGTERM stops watch cleanly");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).expect("state file"))
        .expect("state JSON");
    let record = &saved["heal_history"]["lab"][0];
    assert_eq!(record["member"], replica.as_str(), "{saved:#}");
    assert_eq!(record["outcome"], "interrupted", "{saved:#}");
    assert!(!record["finished"].is_null(), "{saved:#}");

    // Patroni finishes the rebuild by itself; then the same fault again.
    assert!(
        wait_for("the lab to be healthy", Duration::from_secs(90), || lab
            .healthy()
            .then_some(true)),
        "healthy"
    );
    let _w2 = start_watch(&dir, &cfg, port);
    lab.break_lag(&replica, 20);
    let healed = wait_for(
        "auto-heal after the restart",
        Duration::from_secs(90),
        || {
            plan(port)["lab"]["heal"]["last_outcomes"]
                .as_array()
                .and_then(|o| o.iter().find(|o| o["member"] == replica.as_str()).cloned())
        },
    );
    assert_eq!(healed["result"], "healed", "{healed:#}");
}

/// Spec (docs/SAFETY.md §7, durable record): the record of a reinit is on disk before its
/// request goes out, so a watcher SIGKILLed right after it starts one leaves the record in
/// its state file, and the restarted watcher counts it (the attempt, and the cooldown). A
/// second watcher on the same state file refuses to start. Fails without the guard: the
/// state was written every 30 s only, and the killed watcher left no state file at all.
fn a_watch_killed_mid_heal_keeps_the_record_and_counts_it_after_a_restart(lab: &Lab) {
    let run = WatchRun::new(lab, "killed")
        .heal("enabled: true, tolerance: 5MB, persist_samples: 3, cooldown: 10m, min_healthy: 1")
        .state();
    let (dir, port, cfg, state) = (run.dir.clone(), run.port, run.config(), run.state_file());
    let replica = lab.replica();
    let mut w = start_watch(&dir, &cfg, port);
    // One watcher per state file.
    let other = free_port();
    let out = crate::harness::pgpatrol_cmd()
        .args(["watch", "--config"])
        .arg(run.config_for(other))
        .output()
        .expect("run watch");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is in use by another watcher"),
        "{}",
        stderr(&out)
    );
    lab.break_lag(&replica, 20);
    // Killed the moment its /plan shows the reinit started (within a poll of the request).
    wait_for("auto-heal to start", Duration::from_secs(60), || {
        plan(port)["lab"]["heal"]["history"]
            .as_array()
            .and_then(|h| h.iter().find(|r| r["member"] == replica.as_str()))
            .filter(|r| r["finished"].is_null())
            .cloned()
    });
    w.kill();
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("a state file"))
            .expect("state JSON");
    let record = saved["heal_history"]["lab"]
        .as_array()
        .and_then(|h| h.iter().find(|r| r["member"] == replica.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("no record of the reinit: {saved:#}"));
    assert!(!record["started"].is_null(), "{record:#}");
    assert!(record["finished"].is_null(), "open when killed: {record:#}");

    // Patroni finishes the rebuild by itself. Restarted, the watcher counts the attempt and
    // holds the cooldown: the same fault again is refused, not healed a second time.
    wait_for("the lab to be healthy", Duration::from_secs(90), || {
        lab.healthy().then_some(())
    });
    let _w2 = start_watch(&dir, &cfg, port);
    let p = plan(port);
    assert_eq!(
        p["lab"]["heal"]["attempts"][&replica].as_u64(),
        Some(1),
        "{p:#}"
    );
    lab.break_lag(&replica, 20);
    let refused = wait_for("the refusal", Duration::from_secs(30), || {
        let m = metrics(port);
        ["cooldown", "in_progress"]
            .iter()
            .map(|r| {
                sample(
                    &m,
                    &format!("pgpatrol_heal_refused_total{{cluster=\"lab\",reason=\"{r}\"}}"),
                )
                .unwrap_or(0.0)
            })
            .sum::<f64>()
            .gt(&0.0)
            .then_some(m)
    });
    assert_eq!(
        sample(&refused, "pgpatrol_heal_attempted_total{cluster=\"lab\"}"),
        Some(0.0),
        "{refused}"
    );
}

fn a_restart_keeps_the_error_budget(lab: &Lab) {
    let run = WatchRun::new(lab, "restart").state();
    let (dir, port, cfg, state) = (run.dir.clone(), run.port, run.config(), run.state_file());
    let mut w = start_watch(&dir, &cfg, port);
    let samples = wait_for("a few samples", Duration::from_secs(20), || {
        plan(port)["lab"]["slo"]["samples"]
            .as_u64()
            .filter(|n| *n >= 3)
    });
    assert_eq!(w.terminate(), Some(0), "SIGTERM stops watch cleanly");
    assert!(state.exists(), "the state file is written on shutdown");
    let _w2 = start_watch(&dir, &cfg, port);
    let after = plan(port)["lab"]["slo"]["samples"].as_u64().unwrap_or(0);
    assert!(
        after > samples,
        "samples after the restart ({after}) continue from before ({samples})"
    );
}

fn bad_watch_config_is_one_line(lab: &Lab) {
    let dir = scratch(lab, "bad");
    let cfg = dir.join("bad.yml");
    std::fs::write(&cfg, "clusters:\n  - {name: x, urls: [http://127.0.0.1:1], slo: {objective: 200%, threshold: 5MB, window: 1d}}\n").expect("write");
    let out = crate::harness::pgpatrol_cmd()
        .args(["watch", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    one_line_error(&out, "objective");
    let out = crate::harness::pgpatrol_cmd()
        .args(["watch", "--config", "/nonexistent.yml"])
        .output()
        .expect("run");
    one_line_error(&out, "cannot read");
    let out = crate::harness::pgpatrol_cmd()
        .args(["slo", "rules", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(code(&out), 2);
    // A port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let good = watch_yml(
        lab,
        &dir,
        port,
        &WatchSpec {
            heal: None,
            alertmanager: None,
            state_file: None,
            ..Default::default()
        },
    );
    let out = crate::harness::pgpatrol_cmd()
        .args(["watch", "--config"])
        .arg(&good)
        .output()
        .expect("run");
    one_line_error(&out, "cannot listen");
}

/// A second etcd on loopback, only for the heal lease: stopping it (SIGSTOP) loses the
/// lease and nothing else (Patroni's own etcd keeps running, so `/cluster` still answers and
/// only the lease handling can stop the second action). Continued and stopped when dropped.
struct LeaseEtcd {
    proc: Proc,
    url: String,
}

impl LeaseEtcd {
    fn start(dir: &Path) -> LeaseEtcd {
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let proc = Proc::spawn(
            "lease etcd",
            Command::new("/usr/bin/etcd")
                .args(["--name", "lease", "--data-dir"])
                .arg(dir.join("lease-etcd"))
                .args([
                    "--listen-client-urls",
                    &url,
                    "--advertise-client-urls",
                    &url,
                ])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .arg("--initial-cluster")
                .arg(format!("lease={peer_url}")),
            &dir.join("lease-etcd.log"),
        );
        wait_for("the lease etcd", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", client)).ok()?;
            (http("GET", &format!("{url}/health"), None).0 == 200).then_some(())
        });
        LeaseEtcd { proc, url }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.proc.pid() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal the lease etcd");
    }
}

impl Drop for LeaseEtcd {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }
}

/// Guardrail: auto-heal acts only while it holds the lease. Two replicas lag, one
/// reinitialization at a time; the lease's etcd is stopped while the first runs: the run
/// stops (lease_lost), and the second replica is never touched.
fn a_lost_lease_stops_auto_heal_before_the_second_action(lab: &Lab) {
    let run = WatchRun::new(lab, "leaselost");
    let etcd = LeaseEtcd::start(&run.dir);
    let run = run.heal_section(format!(
        "{{enabled: true, tolerance: 5MB, persist_samples: 3, min_healthy: 0, max_concurrent: 1, cooldown: 1s, lease: {{etcd: {}}}}}",
        etcd.url
    ));
    let port = run.port;
    let leader = lab.leader();
    let replicas: Vec<String> = lab.members().into_iter().filter(|m| *m != leader).collect();
    assert_eq!(replicas.len(), 2, "the lab has two replicas");
    // Both lag before the watch starts, so both breaches persist at the same poll and the
    // plan holds both: the second only waits for the first's slot.
    for r in &replicas {
        lab.break_lag(r, 20);
    }
    let _w = run.start();
    let first = wait_for(
        "the first reinitialization",
        Duration::from_secs(60),
        || {
            let p = plan(port);
            p["lab"]["heal"]["history"]
                .as_array()
                .and_then(|h| h.iter().find(|r| r["finished"].is_null()).cloned())
        },
    );
    etcd.signal(nix::sys::signal::Signal::SIGSTOP);
    let stop = wait_for(
        "the run to stop for the lease",
        Duration::from_secs(60),
        || {
            let p = plan(port);
            let s = &p["lab"]["heal"]["last_stop"];
            (!s.is_null()).then(|| s.clone())
        },
    );
    assert_eq!(stop["kind"], "lease_lost", "{stop:#}");
    // The lease's etcd does not answer: its keepalive's error, typed and labelled.
    assert_eq!(stop["cause"], "lease_store", "{stop:#}");
    // Several more polls: the lease cannot be taken again while its etcd is stopped.
    wait_polls(port, "lab", 8.0, Duration::from_secs(60));
    let p = plan(port);
    let history = p["lab"]["heal"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(history.len(), 1, "one action only: {p:#}");
    assert_eq!(history[0]["member"], first["member"]);
    let m = metrics(port);
    assert_eq!(
        sample(&m, "pgpatrol_heal_attempted_total{cluster=\"lab\"}"),
        Some(1.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            "pgpatrol_heal_refused_total{cluster=\"lab\",reason=\"lease_lost\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "pgpatrol_heal_stops_total{reason=\"lease_store\"}"),
        Some(1.0),
        "{m}"
    );
    drop(_w);
    drop(etcd);
    lab.repair();
}

/// Alerts never hold up polling: Alertmanager accepts connections and never answers, six
/// unreachable clusters fire burn-rate alerts into a queue of two. The lab cluster keeps
/// being polled, `/metrics` keeps answering, and the overflow is dropped and counted.
fn a_receiver_that_never_answers_does_not_hold_up_polling(lab: &Lab) {
    let dir = scratch(lab, "deadam");
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let am = format!("http://{}", hole.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hole.incoming().flatten() {
            held.push(conn);
        }
    });
    let port = free_port();
    let slo = "    slo:\n      objective: 99%\n      threshold: 5MB\n      window: 10m\n      alerts:\n        - {severity: page, long: 20s, short: 5s, factor: 1}\n";
    let mut y = format!(
        "listen: 127.0.0.1:{port}\ninterval: 1s\ntimeout: 1s\nalertmanager: {am}\nalert_queue: 2\nclusters:\n  - name: lab\n    urls: [{}]\n{slo}",
        lab.urls().join(", ")
    );
    for i in 0..6 {
        y.push_str(&format!(
            "  - name: dead{i}\n    urls: [http://127.0.0.1:{}]\n{slo}",
            free_port()
        ));
    }
    let cfg = dir.join("watch.yml");
    std::fs::write(&cfg, y).expect("write watch.yml");
    let _w = start_watch(&dir, &cfg, port);
    let polls = || sample(&metrics(port), "pgpatrol_polls_total{cluster=\"lab\"}").unwrap_or(0.0);
    let dropped = wait_for("alerts to be dropped", Duration::from_secs(60), || {
        sample(&metrics(port), "pgpatrol_alerts_dropped_total").filter(|d| *d >= 1.0)
    });
    assert!(dropped >= 1.0);
    // Polled at its interval (1 s) while Alertmanager hangs: three more polls come within
    // 6 s, where a poller waiting on each alert's 5 s timeout would not make it.
    let before = polls();
    wait_polls(port, "lab", 3.0, Duration::from_secs(6));
    let after = polls();
    assert!(
        after >= before + 3.0,
        "the lab cluster was polled {} times while Alertmanager hung",
        after - before
    );
    let m = metrics(port);
    assert_eq!(
        sample(&m, "pgpatrol_cluster_up{cluster=\"lab\"}"),
        Some(1.0),
        "{m}"
    );
    assert!(
        sample(&m, "pgpatrol_slo_alert_firing{cluster=\"dead0\"").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
}
