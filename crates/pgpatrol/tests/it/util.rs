//! Small helpers shared by the topic files: plain HTTP to Patroni, output checks, and a
//! fake server that answers with whatever bytes a test wants.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Output;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::harness::Lab;

/// GET over plain HTTP/1.0 (Patroni closes the connection after the body). Returns
/// (status, body).
pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    request(method, url, body, None, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// One HTTP/1.0 request with optional basic auth (`auth` is the base64 `user:password`);
/// `Err` when it cannot connect or no answer came within `timeout`.
pub fn request(
    method: &str,
    url: &str,
    body: Option<&str>,
    auth: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (hostport, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = TcpStream::connect(hostport).map_err(|e| format!("connect {hostport}: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    let body = body.unwrap_or("");
    let auth = auth
        .map(|a| format!("Authorization: Basic {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {hostport}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

pub fn get_json(url: &str) -> Value {
    let (status, body) = http("GET", url, None);
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

/// Each member's `postmaster_start_time` from its own /patroni: unchanged means untouched.
pub fn start_times(lab: &Lab) -> BTreeMap<String, String> {
    let state = lab.state();
    state
        .members
        .iter()
        .zip(state.urls())
        .map(|(m, url)| {
            let s = get_json(&format!("{url}/patroni"));
            (
                m.name.clone(),
                s["postmaster_start_time"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// `sli` (what `read` runs) after a heal, once it settles below `mb` MB. Heal returns once
/// the healed member is back in the cluster view, but /cluster shows each member's position
/// as of its own last DCS update and the leader's as of its: for up to a Patroni loop after
/// the rebuild's checkpoint another replica can look behind. Waits (bounded, three loops
/// and more) and fails with the cluster view when the lag does not settle.
pub fn sli_settles_below(lab: &Lab, mb: u64, read: impl Fn() -> Output) -> u64 {
    let mut last = String::new();
    for n in 0..60 {
        let out = read();
        if let Ok(lag) = stdout(&out).trim().parse::<u64>() {
            if out.status.success() && lag < mb {
                if n > 0 {
                    say!("harness: the SLI settled after {n} more reads (one before: {last:?})");
                }
                return lag;
            }
        }
        if n == 0 || !out.status.success() {
            last = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
            last = last.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "still not below {mb} MB after heal: {last}\n{:#}",
        lab.cluster_json()
    );
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Asserts the command failed with exit 2 and one clear line on stderr that mentions `needle`.
pub fn one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        code(out),
        2,
        "expected exit 2; stderr: {err}; stdout: {}",
        stdout(out)
    );
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
}

/// Pauses the cluster; resumes it when dropped (also when the test panics).
pub struct Paused<'a>(&'a Lab);

impl<'a> Paused<'a> {
    pub fn new(lab: &'a Lab) -> Self {
        let url = lab.urls()[0].clone();
        let auth = lab_auth(lab);
        patch_config(&url, &auth, r#"{"pause": true}"#);
        // Wait until every member reports it in its own /patroni: /cluster says paused as
        // soon as the config key is written, but each member learns it at its next loop,
        // and until then it still restarts a postgres a test stops (bounded; 10 s).
        for _ in 0..50 {
            let all = lab.urls().iter().all(|u| {
                request(
                    "GET",
                    &format!("{u}/patroni"),
                    None,
                    None,
                    Duration::from_secs(5),
                )
                .ok()
                .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
                .is_some_and(|v| v["pause"] == true)
            });
            if all {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Paused(lab)
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        let url = self.0.urls()[0].clone();
        patch_config(&url, &lab_auth(self.0), r#"{"pause": null}"#);
        std::thread::sleep(Duration::from_secs(3));
    }
}

pub(crate) fn lab_auth(lab: &Lab) -> String {
    auth_for(lab.dir())
}

/// The base64 basic-auth value for the REST API of the lab in `dir`.
pub fn auth_for(dir: &std::path::Path) -> String {
    let pw = std::fs::read_to_string(dir.join("restapi.password")).expect("password file");
    basic(&format!("patrol:{}", pw.lines().next().unwrap_or_default()))
}

fn basic(s: &str) -> String {
    pgpatrol::source::dcs::etcd::base64(s.as_bytes())
}

pub(crate) fn patch_config(url: &str, auth: &str, body: &str) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let mut s = TcpStream::connect(rest).expect("connect");
    write!(
        s,
        "PATCH /config HTTP/1.0\r\nHost: {rest}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok();
    assert!(
        raw.starts_with("HTTP/1.0 200"),
        "PATCH /config {body}: {raw}"
    );
}

/// A server on loopback that answers up to `count` connections with `response` (raw bytes),
/// or holds them open without answering when `response` is `None`. Returns its base URL.
pub fn fake_server(response: Option<&'static [u8]>, count: usize) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut s) = stream else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            match response {
                Some(bytes) => {
                    let _ = s.write_all(bytes);
                }
                None => std::thread::sleep(Duration::from_secs(3)),
            }
        }
    });
    (url, handle)
}

/// A proxy in front of one member's REST API (`upstream`, `http://127.0.0.1:P`): relays every
/// request to it and its answer back, shows itself as that member's `api_url` in `/cluster`,
/// and relays `POST /reinitialize` to the member but withholds the answer (the connection
/// stays open, silent, until the client gives up): the answer that never arrives while
/// Patroni runs the reinit. Stops when dropped.
pub struct WithholdingProxy {
    pub url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// `POST /reinitialize` requests relayed (and left unanswered).
    pub withheld: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for WithholdingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop.
        let _ = std::net::TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

/// One HTTP/1.x message from `s`: the head (through the blank line) and a body of
/// Content-Length bytes.
fn read_message(s: &mut impl Read) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some((head, body))
}

pub fn withholding_proxy(upstream: &str) -> WithholdingProxy {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let me = listener.local_addr().expect("addr").to_string();
    let up = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let withheld = std::sync::Arc::new(AtomicUsize::new(0));
    let (stop2, withheld2, me2) = (stop.clone(), withheld.clone(), me.clone());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                break;
            }
            let Ok(mut client) = client else { continue };
            let (up, me, stop, withheld) =
                (up.clone(), me2.clone(), stop2.clone(), withheld2.clone());
            std::thread::spawn(move || {
                client.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let Some((head, body)) = read_message(&mut client) else {
                    return;
                };
                let Ok(mut server) = std::net::TcpStream::connect(&up) else {
                    return;
                };
                server.set_read_timeout(Some(Duration::from_secs(30))).ok();
                let first = head.lines().next().unwrap_or_default().to_string();
                // One request per connection: the member closes after its answer.
                let head: String = head
                    .split("\r\n")
                    .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
                    .map(|l| format!("{l}\r\n"))
                    .collect::<String>()
                    + "Connection: close\r\n\r\n";
                let _ = server.write_all(head.as_bytes());
                let _ = server.write_all(&body);
                let mut raw = Vec::new();
                let _ = server.read_to_end(&mut raw);
                let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return;
                };
                let rhead = String::from_utf8_lossy(&raw[..split + 4]).into_owned();
                let mut rbody = raw[split + 4..].to_vec();
                if first.starts_with("POST /reinitialize") {
                    withheld.fetch_add(1, Ordering::SeqCst);
                    // Silent until the client hangs up (or the test ends).
                    let mut sink = [0u8; 64];
                    client
                        .set_read_timeout(Some(Duration::from_millis(200)))
                        .ok();
                    while !stop.load(Ordering::SeqCst) {
                        match client.read(&mut sink) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(e)
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                    return;
                }
                let mut rhead = rhead;
                if first.starts_with("GET /cluster") {
                    let text = String::from_utf8_lossy(&rbody).replace(&up, &me);
                    rbody = text.into_bytes();
                    rhead = rhead
                        .lines()
                        .map(|l| {
                            if l.to_ascii_lowercase().starts_with("content-length:") {
                                format!("Content-Length: {}", rbody.len())
                            } else {
                                l.to_string()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\r\n");
                    if !rhead.ends_with("\r\n\r\n") {
                        rhead = format!("{}\r\n\r\n", rhead.trim_end());
                    }
                }
                let _ = client.write_all(rhead.as_bytes());
                let _ = client.write_all(&rbody);
            });
        }
    });
    WithholdingProxy {
        url: format!("http://{me}"),
        stop,
        withheld,
    }
}

/// What a [`routes_server`] sends for one path: a status and a body, or a dropped
/// connection (what Patroni's `/cluster` does while its DCS is down).
#[derive(Debug, Clone)]
pub enum Route {
    Json(u16, String),
    Drop,
}

/// A server on loopback that answers by method and path (`PATCH /config`), else by path
/// (`/cluster`, `/patroni`, ...; 404 for others), for every connection until the handle is
/// dropped; `{URL}` in a body is its own base URL. Returns that URL.
pub fn routes_server(routes: Vec<(&'static str, Route)>) -> (String, RoutesServer) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let own = url.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            let Ok(mut s) = stream else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let Some((head, _)) = read_message(&mut s) else {
                continue;
            };
            let method = head.split_whitespace().next().unwrap_or("GET").to_string();
            let path = head
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .split('?')
                .next()
                .unwrap_or("/")
                .to_string();
            let exact = format!("{method} {path}");
            let route = routes
                .iter()
                .find(|(p, _)| *p == exact)
                .or_else(|| routes.iter().find(|(p, _)| *p == path))
                .map(|(_, r)| r);
            let (status, body) = match route {
                Some(Route::Drop) => continue,
                Some(Route::Json(status, body)) => (*status, body.replace("{URL}", &own)),
                None => (404, "{}".to_string()),
            };
            let _ = write!(
                s,
                "HTTP/1.0 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url.clone(), RoutesServer { url, stop })
}

/// Stops a [`routes_server`] when dropped.
pub struct RoutesServer {
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for RoutesServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

/// A capture of Patroni's answers (`tests/fixtures/captures/NAME`).
pub fn capture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/captures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A command's exit code and its JSON on stdout (a report, a result); panics with both
/// streams when stdout is not JSON.
pub fn report_of(out: &Output) -> (i32, Value) {
    let report = serde_json::from_str(&stdout(out)).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}): {}\nstderr: {}",
            stdout(out),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code(out), report)
}

/// The lab superuser's password in a file of `dir` (for a `postgres:` login in watch.yml).
pub fn superuser_password_file(lab: &Lab, dir: &std::path::Path) -> std::path::PathBuf {
    let yaml = std::fs::read_to_string(lab.dir().join("config/pg0.yml")).expect("config");
    let superuser = pgpatrol::lab::config::superuser_password(&yaml).expect("password");
    let pw = dir.join("superuser.password");
    std::fs::write(&pw, format!("{superuser}\n")).expect("write");
    pw
}

/// Waits until `f` gives a value, reading again every 250 ms; panics naming `what` after
/// `limit`. Every live test waits for an observable state through this (or [`eventually`]),
/// never a fixed sleep.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until `f` holds (see [`wait_for`]).
pub fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    wait_for(what, limit, || f().then_some(()));
}

/// Two readings of the same cluster taken moments apart (`list --url` and `list --dcs`,
/// ours and Patroni's): `read` takes both (its argument is the try, from 0), until `agree`
/// says they do, at most ten times 500 ms apart (a DCS key a Patroni loop refreshed between
/// the two moves a lag or a state). Gives the pair that agreed; panics with the last pair,
/// named by `what`, when none did.
pub fn until_agree<T: std::fmt::Debug>(
    what: &str,
    mut read: impl FnMut(usize) -> (T, T),
    agree: impl Fn(&T, &T) -> bool,
) -> (T, T) {
    let mut last = None;
    for n in 0..10 {
        if n > 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        let (a, b) = read(n);
        if agree(&a, &b) {
            return (a, b);
        }
        last = Some((a, b));
    }
    panic!(
        "{what} never agreed; the last reading:\n{:#?}",
        last.expect("ten readings")
    );
}

/// The lines of an audit log (`--audit-log`), each a JSON object; none when it is missing.
pub fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
        .collect()
}

/// A fresh audit log path in the lab's folder (removed if an earlier run left it).
pub fn audit_path(lab: &Lab, name: &str) -> std::path::PathBuf {
    let p = lab.dir().join(format!("audit-{name}.jsonl"));
    let _ = std::fs::remove_file(&p);
    p
}

/// A command's stdout as JSON; panics with its stdout and stderr when it is not.
pub fn json_of(what: &str, out: &Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}\nstderr: {}",
            stdout(out),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The lab's replicas (every member but the leader), by name.
pub fn replicas(lab: &Lab) -> Vec<String> {
    let leader = lab.leader();
    let mut r: Vec<String> = lab.members().into_iter().filter(|m| *m != leader).collect();
    r.sort();
    r
}
