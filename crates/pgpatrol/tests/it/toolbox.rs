//! The operator's toolbox against the real machine and the lab: bash completion offers the
//! subcommands, machine formats carry no colour, a redirected watch log has no escape
//! codes, `list --watch` in a real terminal (tmux) follows an outage and a failover, every
//! panel of the Grafana dashboard returns data from a real Prometheus scraping a watch of
//! the lab, and the Debian package installs (dpkg -i), runs its unit's command line as its
//! user, and purges without a trace.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{bin, ok, stderr, Lab, Test};
use crate::util::wait_for;
use crate::util::{code, http, one_line_error, stdout};
use crate::watch::{free_port, metrics, sample, scratch, start_watch, Proc};

pub fn tests() -> Vec<Test> {
    tests![
        bash_completion_offers_the_subcommands,
        machine_formats_never_carry_colour,
        a_redirected_watch_log_has_no_escape_codes,
        list_watch_in_a_terminal_follows_an_outage_and_a_failover,
        the_dashboard_queries_return_data_from_a_real_prometheus,
        the_debian_package_installs_runs_and_purges_cleanly,
    ]
}

/// The repository's root (scripts/, deploy/, docs/).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What bash offers for `words` (the last one being completed), with `script` sourced
/// first; `loader`: through bash-completion's on-demand loader instead, as an
/// interactive shell finds an installed package's completion.
fn bash_complete(script: Option<&Path>, words: &[&str]) -> Vec<String> {
    let setup = match script {
        Some(s) => format!("source {}", shell_quote(&s.display().to_string())),
        None => "source /usr/share/bash-completion/bash_completion && _completion_loader pgpatrol && complete -p pgpatrol >&2".to_string(),
    };
    let words_q: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
    let line = words.join(" ");
    let prog = format!(
        r#"{setup}
COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE={line}; COMP_POINT=${{#COMP_LINE}}
_pgpatrol pgpatrol {cur} {prev}
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = words_q.join(" "),
        cword = words.len() - 1,
        line = shell_quote(&line),
        cur = shell_quote(words[words.len() - 1]),
        prev = shell_quote(words[words.len().saturating_sub(2)]),
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &prog])
        .output()
        .expect("run bash");
    let got = ok("bash completion", &out);
    got.split_whitespace().map(str::to_string).collect()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn bash_completion_offers_the_subcommands(lab: &Lab) {
    let dir = scratch(lab, "completion");
    let script = dir.join("pgpatrol.bash");
    let out = crate::harness::pgpatrol_cmd()
        .args(["completions", "bash"])
        .output()
        .expect("run");
    std::fs::write(&script, ok("completions bash", &out)).expect("write");
    let offered = bash_complete(Some(&script), &["pgpatrol", ""]);
    for sub in [
        "list",
        "status",
        "sli",
        "heal",
        "reinit",
        "watch",
        "slo",
        "topology",
        "history",
        "show-config",
        "lab",
        "completions",
        "man",
    ] {
        assert!(
            offered.iter().any(|o| o == sub),
            "{sub} not offered: {offered:?}"
        );
    }
    assert_eq!(
        bash_complete(Some(&script), &["pgpatrol", "he"]),
        vec!["heal", "help"]
    );
    let flags = bash_complete(Some(&script), &["pgpatrol", "list", "--wa"]);
    assert_eq!(flags, vec!["--watch"], "{flags:?}");
    let shells = bash_complete(Some(&script), &["pgpatrol", "completions", ""]);
    for s in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|o| o == s), "{shells:?}");
    }
    // Zsh and fish are not installed here: their scripts are only checked to be generated.
    for shell in ["zsh", "fish"] {
        let out = crate::harness::pgpatrol_cmd()
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(ok(shell, &out).contains("heal"), "{shell}");
    }
    let out = crate::harness::pgpatrol_cmd()
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("tcsh"), "{}", stderr(&out));
}

fn machine_formats_never_carry_colour(lab: &Lab) {
    for format in ["json", "yaml", "patronictl-json"] {
        let out = lab.pgpatrol(&["list", "-o", format, "--color", "always"]);
        let text = ok(format, &out);
        assert!(
            !text.contains('\x1b'),
            "{format} has escape codes: {text:?}"
        );
    }
    for args in [
        ["topology", "-o", "json", "--color", "always"],
        ["history", "-o", "yaml", "--color", "always"],
    ] {
        let out = lab.pgpatrol(&args);
        assert!(!ok(args[0], &out).contains('\x1b'), "{args:?}");
    }
    // The table in a pipe: no colour unless asked for.
    let plain = ok("list", &lab.pgpatrol(&["list"]));
    assert!(!plain.contains('\x1b'), "{plain:?}");
    let forced = ok("list", &lab.pgpatrol(&["list", "--color", "always"]));
    assert!(forced.contains("\x1b["), "{forced:?}");
    // --watch redraws a table: with a machine format it is a one-line error.
    one_line_error(
        &lab.pgpatrol(&["list", "--watch", "-o", "json"]),
        "--watch redraws a table",
    );
    one_line_error(
        &lab.pgpatrol(&["list", "--watch", "10ms"]),
        "at least 100ms",
    );
    let out = lab.pgpatrol(&["list", "--color", "sometimes"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("sometimes"), "{}", stderr(&out));
}

/// A watch config for the lab, cluster `name`, with auto-heal enabled at a tolerance no lag
/// reaches (so its counters exist and nothing is ever healed).
fn lab_watch_yml(lab: &Lab, dir: &Path, port: u16, name: &str) -> PathBuf {
    let y = format!(
        "listen: 127.0.0.1:{port}\ninterval: 1s\ntimeout: 3s\nclusters:\n  - name: {name}\n    urls: [{urls}]\n    username: patrol\n    password_file: {pw}\n    slo:\n      objective: 99%\n      threshold: 5MB\n      window: 10m\n      alerts:\n        - {{severity: page, long: 20s, short: 5s, factor: 10}}\n    heal: {{enabled: true, tolerance: 1GB, persist_samples: 10, lease: {{dir: {locks}, local: true}}}}\n",
        urls = lab.urls().join(", "),
        pw = lab.dir().join("restapi.password").display(),
        locks = dir.join("locks").display(),
    );
    let path = dir.join(format!("watch-{port}.yml"));
    std::fs::write(&path, y).expect("write watch.yml");
    path
}

fn a_redirected_watch_log_has_no_escape_codes(lab: &Lab) {
    let dir = scratch(lab, "log");
    let port = free_port();
    let cfg = lab_watch_yml(lab, &dir, port, "lab");
    // start_watch sends stdout and stderr to a file: what a unit's journal or a shipper gets.
    let mut w = start_watch(&dir, &cfg, port);
    wait_for("a few polls", Duration::from_secs(20), || {
        sample(&metrics(port), "pgpatrol_polls_total{cluster=\"lab\"}").filter(|n| *n >= 3.0)
    });
    assert_eq!(w.terminate(), Some(0));
    let log = std::fs::read(dir.join(format!("watch-{port}.log"))).expect("log");
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("pgpatrol watch started"), "{text}");
    assert!(text.contains("shutting down"), "{text}");
    assert!(!log.contains(&0x1b), "escape codes in the log: {text:?}");

    // --color always is obeyed (so the check above could fail).
    let port = free_port();
    let cfg = lab_watch_yml(lab, &dir, port, "lab");
    let log = dir.join("forced.log");
    let mut w = Proc::spawn(
        "pgpatrol watch --color always",
        crate::harness::pgpatrol_cmd()
            .args(["watch", "--color", "always", "--config"])
            .arg(&cfg),
        &log,
    );
    wait_for("watch /readyz", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        (http("GET", &format!("http://127.0.0.1:{port}/readyz"), None).0 == 200).then_some(())
    });
    assert_eq!(w.terminate(), Some(0));
    let forced = std::fs::read(&log).expect("log");
    assert!(
        forced.contains(&0x1b),
        "{}",
        String::from_utf8_lossy(&forced)
    );
}

/// A tmux server of this test's own; killed (with every session) when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux {
            socket: format!("pgpatrol-it-{}", std::process::id()),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    /// A 160×50 session running `shell` (kept open after it exits, with its exit code).
    fn start(&self, name: &str, shell: &str) {
        let keep = format!("{shell}; echo \"EXITED $?\"; sleep 600");
        let out = self
            .cmd()
            .args([
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "160",
                "-y",
                "50",
                &keep,
            ])
            .output()
            .expect("run tmux");
        ok("tmux new-session", &out);
    }

    /// The visible screen; `escapes`: with the colours and attributes as SGR codes.
    fn screen(&self, name: &str, escapes: bool) -> String {
        let mut c = self.cmd();
        c.args(["capture-pane", "-p", "-t", name]);
        if escapes {
            c.arg("-e");
        }
        let out = c.output().expect("tmux capture-pane");
        ok("tmux capture-pane", &out)
    }

    /// Waits (bounded) until `f` accepts the screen of `name`.
    fn wait(&self, what: &str, name: &str, escapes: bool, f: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_secs(90) {
            last = self.screen(name, escapes);
            if f(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("timed out waiting for {what} on the {name} screen:\n{last}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// SIGSTOPped processes, SIGCONTinued when dropped (also when the test fails).
struct Stopped(Vec<u32>);

impl Stopped {
    fn new(pids: Vec<u32>) -> Stopped {
        for p in &pids {
            signal(*p, nix::sys::signal::Signal::SIGSTOP);
        }
        Stopped(pids)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        for p in &self.0 {
            signal(*p, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// `line` without its SGR sequences (`ESC [ ... m`), as it reads on the screen.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("\x1b[") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 2..];
        rest = tail.find('m').map_or("", |j| &tail[j + 1..]);
    }
    out.push_str(rest);
    out
}

/// The table row of `member` (`| pg1 |` or `| * | pg1 |`), as it reads (no SGR).
fn row(screen: &str, member: &str) -> Option<String> {
    raw_row(screen, member).map(plain)
}

/// The same row with its SGR sequences.
fn raw_row<'a>(screen: &'a str, member: &str) -> Option<&'a str> {
    screen.lines().find(|l| {
        let p = plain(l);
        p.starts_with('|') && p.contains(&format!("| {member} "))
    })
}

/// True when `line` holds an SGR sequence setting attribute `attr` (tmux writes `ESC[7m`,
/// or several attributes in one: `ESC[1;7m`).
fn has_sgr(line: &str, attr: &str) -> bool {
    line.split("\x1b[").skip(1).any(|seq| {
        seq.split_once('m')
            .is_some_and(|(params, _)| params.split(';').any(|p| p == attr))
    })
}

fn list_watch_in_a_terminal_follows_an_outage_and_a_failover(lab: &Lab) {
    let tmux = Tmux::new();
    let urls = lab.urls().join(",");
    let base = format!(
        "{} list --watch 1s --connect-timeout 1s --request-timeout 1s --url {}",
        shell_quote(bin()),
        shell_quote(&urls)
    );
    // Without colour (a * column marks changes), with colour on a terminal (auto), and
    // auto with NO_COLOR set (which must look like --color never).
    tmux.start("plain", &format!("{base} --color never"));
    tmux.start("colour", &format!("env -u NO_COLOR {base}"));
    tmux.start("nocolor", &format!("env NO_COLOR=1 {base}"));
    let old = lab.leader();
    let leads = |s: &str, m: &str| row(s, m).is_some_and(|r| r.contains("| Leader "));
    tmux.wait("the table", "plain", false, |s| {
        s.contains("Every 1s") && leads(s, &old)
    });
    let coloured = tmux.wait("a coloured table", "colour", true, |s| leads(s, &old));
    assert!(
        coloured.contains("\x1b["),
        "auto on a terminal colours:\n{coloured}"
    );
    let bare = tmux.wait("the NO_COLOR table", "nocolor", true, |s| leads(s, &old));
    assert!(
        row(&bare, &old).is_some_and(|r| r.starts_with("|   | ")),
        "NO_COLOR: the marker column, no colour:\n{bare}"
    );

    // The whole cluster goes away (every Patroni hangs) and comes back.
    let patronis: Vec<u32> = lab.state().members.iter().filter_map(|m| m.pid).collect();
    assert_eq!(patronis.len(), lab.members().len());
    {
        let _stopped = Stopped::new(patronis);
        let s = tmux.wait("the error in place of the table", "plain", false, |s| {
            s.contains("error: ") && s.contains("cluster unreachable")
        });
        assert!(row(&s, &old).is_none(), "no table while unreachable:\n{s}");
    }
    tmux.wait("the table back", "plain", false, |s| {
        s.contains("cluster reachable again") && leads(s, &old)
    });

    // A failover: the leader crashes, another member takes over.
    lab.crash_leader();
    let s = tmux.wait("a new leader, marked", "plain", false, |s| {
        lab_members_other_than(lab, &old).iter().any(|m| {
            leads(s, m)
                && row(s, m).is_some_and(|r| r.starts_with("| * | "))
                && s.contains(&format!("{m} role: Replica -> Leader"))
        })
    });
    let new = lab_members_other_than(lab, &old)
        .into_iter()
        .find(|m| leads(&s, m))
        .expect("the new leader");
    let lit = tmux.wait("the new leader highlighted", "colour", true, |s| {
        leads(s, &new) && raw_row(s, &new).is_some_and(|r| has_sgr(r, "7"))
    });
    assert!(!leads(&lit, &old), "{lit}");
    tmux.wait("the new leader marked (NO_COLOR)", "nocolor", false, |s| {
        leads(s, &new) && row(s, &new).is_some_and(|r| r.starts_with("| * | "))
    });

    // The crashed member comes back, as a replica.
    lab.repair();
    tmux.wait("the old leader back as a replica", "plain", false, |s| {
        row(s, &old).is_some_and(|r| r.contains("| Replica ") && r.contains("streaming"))
            && leads(s, &new)
    });
    for name in ["plain", "colour", "nocolor"] {
        let s = tmux.screen(name, false);
        assert!(
            !s.contains("EXITED"),
            "list --watch stopped on {name}:\n{s}"
        );
    }
}

fn lab_members_other_than(lab: &Lab, not: &str) -> Vec<String> {
    lab.members().into_iter().filter(|m| m != not).collect()
}

/// Every non-row panel of a dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

/// A panel target's PromQL as Grafana would send it for cluster `cluster`.
fn substitute(expr: &str, cluster: &str) -> String {
    expr.replace("${cluster}", cluster)
        .replace("$cluster", cluster)
        .replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$__interval", "15s")
}

/// Runs every panel's every query; returns what returned no data (or failed).
fn empty_panels(dashboard: &Value, api: &str, cluster: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for p in panels(dashboard) {
        let title = p["title"].as_str().unwrap_or("?");
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = substitute(t["expr"].as_str().unwrap_or_default(), cluster);
            if expr.contains('$') {
                failures.push(format!("{title}: a variable is left in {expr}"));
                continue;
            }
            let url = reqwest::Url::parse_with_params(&format!("{api}/query"), &[("query", &expr)])
                .expect("query URL");
            let (status, body) = http("GET", url.as_str(), None);
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let n = v["data"]["result"].as_array().map_or(0, Vec::len);
            if status != 200 || v["status"] != "success" || n == 0 {
                failures.push(format!("{title}: {expr} -> {status} {body}"));
            }
        }
    }
    failures
}

struct Prometheus {
    _proc: Proc,
    api: String,
}

fn start_prometheus(dir: &Path, scrape_port: u16) -> Prometheus {
    let port = free_port();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: pgpatrol\n    static_configs: [{{targets: ['127.0.0.1:{scrape_port}']}}]\n"
        ),
    )
    .expect("write");
    let p = Proc::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        &dir.join("prometheus.log"),
    );
    let api = format!("http://127.0.0.1:{port}/api/v1");
    wait_for("Prometheus ready", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        (http("GET", &format!("http://127.0.0.1:{port}/-/ready"), None).0 == 200).then_some(())
    });
    Prometheus { _proc: p, api }
}

fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("pgpatrol_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

fn the_dashboard_queries_return_data_from_a_real_prometheus(lab: &Lab) {
    let path = repo().join("deploy/grafana/pgpatrol.json");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana/pgpatrol.json");
    let d: Value = serde_json::from_str(&text).expect("the dashboard is JSON");

    // Its shape: the runbook's link, an importable data source, the cluster variable.
    assert_eq!(d["uid"], "patroni-overview");
    assert_eq!(d["title"], "Patroni cluster overview");
    assert!(
        d["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "{}",
        d["schemaVersion"]
    );
    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(inputs
        .iter()
        .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"));
    let vars = d["templating"]["list"].as_array().expect("templating");
    let var = |n: &str| vars.iter().find(|v| v["name"] == n).cloned();
    let ds = var("DS_PROMETHEUS").expect("a DS_PROMETHEUS variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let cluster = var("cluster").expect("a cluster variable");
    assert_eq!(
        cluster["definition"],
        "label_values(pgpatrol_cluster_up, cluster)"
    );
    assert_eq!(cluster["datasource"]["uid"], "${DS_PROMETHEUS}");

    let all = panels(&d);
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    let mut names = BTreeSet::new();
    let metrics_md = std::fs::read_to_string(repo().join("docs/METRICS.md")).expect("METRICS.md");
    for p in &all {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "duplicate id: {title}"
        );
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{title} is wider than the grid");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "{title} overlaps another panel");
            }
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let expr = t["expr"].as_str().expect("expr");
            assert!(
                expr.contains("cluster=\"$cluster\""),
                "{title} ignores the cluster variable: {expr}"
            );
            for n in metric_names(expr) {
                assert!(
                    metrics_md.contains(&format!("`{n}`")),
                    "{title}: {n} is not in docs/METRICS.md"
                );
                names.insert(n);
            }
        }
    }
    // What the dashboard is for (issue 17): leader, members, lag per member, SLI vs
    // threshold, error budget, burn rates, heal attempts, failovers.
    for m in [
        "pgpatrol_member_role",
        "pgpatrol_cluster_members",
        "pgpatrol_member_lag_bytes",
        "pgpatrol_cluster_sli_bytes",
        "pgpatrol_slo_threshold_bytes",
        "pgpatrol_slo_error_budget_remaining",
        // Burn rates from the sample counters (`pgpatrol_slo_burn_rate` is off by default).
        "pgpatrol_slo_samples_total",
        "pgpatrol_heal_attempted_total",
        "pgpatrol_cluster_failovers",
    ] {
        assert!(names.contains(m), "no panel shows {m}");
    }

    // Every query against a real Prometheus scraping a watch of the lab.
    let dir = scratch(lab, "dashboard");
    let port = free_port();
    let cfg = lab_watch_yml(lab, &dir, port, "lab");
    let _w = start_watch(&dir, &cfg, port);
    let prom = start_prometheus(&dir, port);
    let values = get(&format!(
        "{}/label/cluster/values?match[]=pgpatrol_cluster_up",
        prom.api
    ));
    let mut last = Vec::new();
    let t0 = std::time::Instant::now();
    // Rates need two scrapes, /history is read on the first poll: data comes within seconds.
    while t0.elapsed() < Duration::from_secs(90) {
        last = empty_panels(&d, &prom.api, "lab");
        if last.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(last.is_empty(), "panels without data:\n{}", last.join("\n"));
    let values = if values["data"].as_array().is_some_and(|a| !a.is_empty()) {
        values
    } else {
        get(&format!(
            "{}/label/cluster/values?match[]=pgpatrol_cluster_up",
            prom.api
        ))
    };
    assert!(
        values["data"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "lab")),
        "the cluster variable finds no lab: {values}"
    );

    // The check can fail: one misspelled metric makes its panel come back empty.
    let broken: Value = serde_json::from_str(
        &text.replace("pgpatrol_cluster_members{", "pgpatrol_cluster_member{"),
    )
    .expect("json");
    let failures = empty_panels(&broken, &prom.api, "lab");
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(failures[0].starts_with("Members: "), "{failures:#?}");
    // And another cluster's name finds nothing.
    assert!(!empty_panels(&d, &prom.api, "no-such-cluster").is_empty());
}

fn get(url: &str) -> Value {
    let (_, body) = http("GET", url, None);
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

fn run_cmd(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn installed() -> bool {
    run_cmd(Command::new("dpkg-query").args(["-W", "-f=${Status}", "pgpatrol"]))
        .stdout
        .starts_with(b"install ok installed")
}

fn getent(db: &str, key: &str) -> bool {
    run_cmd(Command::new("getent").args([db, key]))
        .status
        .success()
}

/// Purges the package when dropped, so a failing test leaves the machine as it was.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let known = run_cmd(Command::new("dpkg-query").args(["-W", "pgpatrol"]));
        if known.status.success() {
            let out = run_cmd(Command::new("dpkg").args(["--purge", "pgpatrol"]));
            if !out.status.success() {
                say!("toolbox: dpkg --purge pgpatrol failed: {}", stderr(&out));
            }
        }
    }
}

/// The values of `key=` lines in a unit file's text (in order).
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .collect()
}

fn the_debian_package_installs_runs_and_purges_cleanly(lab: &Lab) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test installs a .deb with dpkg: run it as root (scripts/test does)"
    );
    // Never touch an operator's own installation.
    assert!(
        !installed() && !getent("passwd", "pgpatrol") && !Path::new("/etc/pgpatrol").exists(),
        "pgpatrol is installed here already (package, user or /etc/pgpatrol): this test installs and purges its own; remove it first"
    );
    let dir = scratch(lab, "package");
    let out = run_cmd(
        Command::new(repo().join("scripts/package"))
            .args(["--binary", bin(), "--out"])
            .arg(&dir),
    );
    let built = ok("scripts/package", &out);
    let deb = PathBuf::from(built.lines().last().expect("the .deb path").trim());
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        deb.ends_with(format!(
            "pgpatrol_{version}_{}.deb",
            String::from_utf8_lossy(
                &run_cmd(Command::new("dpkg").arg("--print-architecture")).stdout
            )
            .trim()
        )),
        "{}",
        deb.display()
    );

    let _purge = Purge;
    ok(
        "dpkg -i",
        &run_cmd(Command::new("dpkg").arg("-i").arg(&deb)),
    );
    let files = ok(
        "dpkg -L",
        &run_cmd(Command::new("dpkg").args(["-L", "pgpatrol"])),
    );

    // The binary, from /usr/bin.
    let v = ok(
        "pgpatrol --version",
        &run_cmd(Command::new("/usr/bin/pgpatrol").arg("--version")),
    );
    assert_eq!(v.trim(), format!("pgpatrol {version}"));

    // Man pages where man finds them, and they render.
    assert!(
        Path::new("/usr/share/man/man1/pgpatrol.1.gz").exists(),
        "dpkg installed no man page: does a path-exclude in /etc/dpkg/dpkg.cfg.d/ drop /usr/share/man?"
    );
    for page in [
        "pgpatrol",
        "pgpatrol-heal",
        "pgpatrol-watch",
        "pgpatrol-list",
        "pgpatrol-slo-rules",
    ] {
        let w = ok("man -w", &run_cmd(Command::new("man").args(["-w", page])));
        assert_eq!(w.trim(), format!("/usr/share/man/man1/{page}.1.gz"));
    }
    let heal = ok(
        "man pgpatrol-heal",
        &run_cmd(
            Command::new("man")
                .arg("pgpatrol-heal")
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100")
                .env("LC_ALL", "C"),
        ),
    );
    for needle in ["--tolerance", "LAG_TOLERANCE", "EXIT STATUS", "SEE ALSO"] {
        assert!(
            heal.contains(needle),
            "{needle} not in man pgpatrol-heal:\n{heal}"
        );
    }

    // bash finds the installed completion through bash-completion's loader.
    let offered = bash_complete(None, &["pgpatrol", "to"]);
    assert_eq!(offered, vec!["topology"], "{offered:?}");

    // The unit: systemd's own checks (systemd itself does not run here).
    let unit_path = "/lib/systemd/system/pgpatrol-watch.service";
    let unit = std::fs::read_to_string(unit_path).expect("the unit is installed");
    if Path::new("/usr/bin/systemd-analyze").exists() {
        // verify also runs `man pgpatrol-watch(1)` for Documentation=.
        ok(
            "systemd-analyze verify",
            &run_cmd(Command::new("systemd-analyze").args(["verify", unit_path])),
        );
        let sec = run_cmd(Command::new("systemd-analyze").args([
            "security",
            "--offline=true",
            unit_path,
        ]));
        let text = format!("{}{}", stdout(&sec), stderr(&sec));
        let exposure: f64 = text
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for pgpatrol-watch.service: "))
            .and_then(|(_, v)| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
        assert!(
            exposure <= 2.0,
            "exposure {exposure} (want OK, ≤ 2.0):\n{text}"
        );
    }
    // [Install]: `systemctl enable` works without a running systemd (it makes the link);
    // purge must take the link away again.
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants/pgpatrol-watch.service");
    let systemctl = Path::new("/usr/bin/systemctl").exists();
    if systemctl {
        ok(
            "systemctl enable",
            &run_cmd(Command::new("systemctl").args(["enable", "pgpatrol-watch.service"])),
        );
        assert!(wants.symlink_metadata().is_ok(), "enable made no link");
    }
    let user = unit_values(&unit, "User");
    let group = unit_values(&unit, "Group");
    assert_eq!(
        (user.as_slice(), group.as_slice()),
        (&["pgpatrol"][..], &["pgpatrol"][..])
    );
    assert_eq!(unit_values(&unit, "StateDirectory"), vec!["pgpatrol"]);
    let workdir = unit_values(&unit, "WorkingDirectory");
    assert_eq!(workdir, vec!["/var/lib/pgpatrol"]);
    let umask = unit_values(&unit, "UMask");
    assert_eq!(umask, vec!["0027"]);
    let exec = unit_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1, "{unit}");
    assert!(
        !exec[0].contains(['"', '\'', '$', '%']),
        "a plain command line: {}",
        exec[0]
    );
    let argv: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(argv[..2], ["/usr/bin/pgpatrol", "watch"]);
    let cfg_path = argv
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1])
        .expect("ExecStart names --config");
    assert_eq!(cfg_path, "/etc/pgpatrol/watch.yml");

    // The user and its state directory, made by postinst.
    assert!(getent("passwd", "pgpatrol"));
    let passwd = ok(
        "getent",
        &run_cmd(Command::new("getent").args(["passwd", "pgpatrol"])),
    );
    assert!(
        passwd
            .trim()
            .ends_with(":/var/lib/pgpatrol:/usr/sbin/nologin"),
        "{passwd}"
    );
    let uid: u32 = passwd
        .split(':')
        .nth(2)
        .and_then(|u| u.parse().ok())
        .expect("uid");
    assert!(uid < 1000, "a system user: {passwd}");
    {
        use std::os::unix::fs::MetadataExt;
        let st = std::fs::metadata("/var/lib/pgpatrol").expect("/var/lib/pgpatrol");
        assert_eq!(st.uid(), uid);
        assert_eq!(st.mode() & 0o777, 0o750);
    }

    // The conffile's example, uncommented as it says (one leading '#' off from `#listen:`
    // on), pointed at the lab: the example itself must be a valid config.
    let shipped = std::fs::read_to_string(cfg_path).expect("the conffile");
    let from = shipped
        .lines()
        .position(|l| l.starts_with("#listen:"))
        .expect("an example starting at #listen:");
    let port = free_port();
    let mut cfg: Vec<String> = Vec::new();
    for (i, l) in shipped.lines().enumerate() {
        let l = if i >= from {
            l.strip_prefix('#').unwrap_or(l)
        } else {
            l
        };
        cfg.push(if l.starts_with("listen:") {
            format!("listen: 127.0.0.1:{port}")
        } else if l.trim_start().starts_with("urls:") {
            format!("    urls: [{}]", lab.urls().join(", "))
        } else if l.starts_with("interval:") {
            "interval: 1s".into()
        } else {
            l.to_string()
        });
    }
    std::fs::write(cfg_path, cfg.join("\n") + "\n").expect("edit the conffile");

    // ExecStart as systemd would run it: as User=/Group=, in WorkingDirectory=, with
    // UMask= and Environment=, and a clean environment (HOME is the user's home).
    let mut sh = Command::new("sh");
    sh.args([
        "-c",
        r#"umask "$1" && cd "$2" && shift 2 && exec setpriv --reuid=pgpatrol --regid=pgpatrol --init-groups -- "$@""#,
        "sh",
        umask[0],
        workdir[0],
    ])
    .args(&argv)
    .env_clear()
    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
    .env("HOME", "/var/lib/pgpatrol")
    .env("USER", "pgpatrol")
    .env("LOGNAME", "pgpatrol")
    .env("SHELL", "/usr/sbin/nologin");
    for e in unit_values(&unit, "Environment") {
        let (k, v) = e.split_once('=').expect("Environment=K=V");
        sh.env(k, v);
    }
    let log = dir.join("unit.log");
    let mut svc = Proc::spawn("the unit's ExecStart", &mut sh, &log);
    wait_for("the unit's watch /readyz", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        (http("GET", &format!("http://127.0.0.1:{port}/readyz"), None).0 == 200).then_some(())
    });
    let m = wait_for("two polls", Duration::from_secs(20), || {
        let m = metrics(port);
        sample(&m, "pgpatrol_polls_total{cluster=\"main\"}")
            .filter(|n| *n >= 2.0)
            .map(|_| m)
    });
    assert_eq!(
        sample(&m, "pgpatrol_cluster_up{cluster=\"main\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pgpatrol_cluster_members{cluster=\"main\"}"),
        Some(lab.members().len() as f64),
        "{m}"
    );
    assert!(
        m.contains("pgpatrol_slo_samples_total{cluster=\"main\",result=\"good\"}"),
        "{m}"
    );
    assert_eq!(svc.terminate(), Some(0), "SIGTERM stops it cleanly");
    let logged = std::fs::read(&log).expect("log");
    let text = String::from_utf8_lossy(&logged);
    assert!(text.contains("pgpatrol watch started"), "{text}");
    assert!(
        !logged.contains(&0x1b),
        "escape codes in the service log: {text:?}"
    );
    {
        use std::os::unix::fs::MetadataExt;
        let st = std::fs::metadata("/var/lib/pgpatrol/watch-state.json").expect("state file");
        assert_eq!(st.uid(), uid, "written by the pgpatrol user");
        assert_eq!(st.mode() & 0o007, 0, "UMask=0027: not world-readable");
    }

    // remove: the binary goes; the config, the state and the user stay.
    ok(
        "dpkg -r",
        &run_cmd(Command::new("dpkg").args(["-r", "pgpatrol"])),
    );
    assert!(!Path::new("/usr/bin/pgpatrol").exists());
    assert!(Path::new(cfg_path).exists(), "remove keeps the conffile");
    assert!(Path::new("/var/lib/pgpatrol/watch-state.json").exists());
    assert!(getent("passwd", "pgpatrol"));

    // purge: nothing is left.
    ok(
        "dpkg --purge",
        &run_cmd(Command::new("dpkg").args(["--purge", "pgpatrol"])),
    );
    assert!(!installed());
    assert!(
        !run_cmd(Command::new("dpkg-query").args(["-W", "pgpatrol"]))
            .status
            .success()
    );
    for gone in [
        "/etc/pgpatrol",
        "/var/lib/pgpatrol",
        "/usr/share/doc/pgpatrol",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    assert!(
        !getent("passwd", "pgpatrol"),
        "the user is left after purge"
    );
    assert!(
        !getent("group", "pgpatrol"),
        "the group is left after purge"
    );
    for f in files.lines().map(Path::new) {
        assert!(
            f.is_dir() || !f.exists(),
            "{} is left after purge",
            f.display()
        );
    }
    assert!(!run_cmd(Command::new("man").args(["-w", "pgpatrol"]))
        .status
        .success());
    if systemctl {
        assert!(
            wants.symlink_metadata().is_err(),
            "the enablement link is left after purge"
        );
    }
}
