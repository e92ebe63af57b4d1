//! A synthetic Patroni fleet on loopback, for `scripts/bench-fleet` (the watch budget in
//! DESIGN.md: 1,000 clusters, 3,000 members, every 10 s).
//!
//! Each member of each cluster gets its own address, `127.(10+m).(i/256).(i%256):PORT`
//! (the whole of 127/8 is local on Linux), so every cluster has its own base URLs as in a
//! real fleet: N clusters are 3N listeners, each an accept loop on one tokio task.
//! Every member answers like Patroni 4.1.5 (bodies shaped on the captures in
//! `crates/pgpatrol/tests/fixtures/captures/`):
//!
//! - `GET /cluster`: 3 members (`node0` leads, `node1` and `node2` stream) with 4.1's
//!   `receive_lag`/`replay_lag`/`*_lsn`, `scope` = the cluster's name, `api_url`s pointing
//!   back here; the leader's LSN advances and the replicas' lag varies on every request
//!   (mostly under 1 MB, one answer in 1,000 a few MB: a bad SLO sample now and then);
//! - `GET /patroni`: the member's status (`patroni.version` 4.1.5, leader or replica shape);
//! - `GET /history`: `[]`; anything else: 404.
//!
//! Like Patroni (Python's `BaseHTTPRequestHandler`), it answers HTTP/1.0, sends no
//! Content-Length, and closes the connection after each answer, so every poll pays for new
//! TCP connections as it does in production. It does not model Patroni's latency (reading
//! the DCS, Python), TLS, auth, failures, or a network: answers are immediate and local.
//!
//! It writes the matching `watch.yml` (every cluster with its 3 URLs, an SLO of 99.5 % at
//! 5MB over 30d, interval 10s), prints `ready` on stdout once every listener is bound, and
//! on SIGTERM/SIGINT prints how many requests it served.
//!
//! One process holds 3 listeners per cluster, and a process's open files are limited
//! (`ulimit -n`, 20,000 here and not raisable): `--from F --count N` serves only clusters
//! F..F+N of the `--clusters` fleet, so several processes share a fleet of any size
//! (`scripts/bench-fleet` starts as many as the limit needs; the `watch.yml` lists all).
//!
//! ```text
//! cargo run --release --example fake_fleet -- --clusters 1000 --port 18008 --watch-yml /tmp/w.yml
//! fake_fleet --clusters 10000 --from 0 --count 5000 --watch-yml /tmp/w.yml &
//! fake_fleet --clusters 10000 --from 5000 --count 5000 &
//! ```

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MEMBERS: usize = 3;

struct Args {
    clusters: usize,
    /// The clusters this process serves: `from..from + count` (all by default).
    from: usize,
    count: Option<usize>,
    port: u16,
    watch_yml: Option<PathBuf>,
    interval: String,
}

fn usage() -> ! {
    eprintln!("usage: fake_fleet [--clusters N] [--from F --count N] [--port PORT] [--watch-yml PATH] [--interval 10s]");
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        clusters: 1000,
        from: 0,
        count: None,
        port: 18008,
        watch_yml: None,
        interval: "10s".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--clusters" => a.clusters = value().parse().unwrap_or_else(|_| usage()),
            "--port" => a.port = value().parse().unwrap_or_else(|_| usage()),
            "--from" => a.from = value().parse().unwrap_or_else(|_| usage()),
            "--count" => a.count = Some(value().parse().unwrap_or_else(|_| usage())),
            "--watch-yml" => a.watch_yml = Some(value().into()),
            "--interval" => a.interval = value(),
            _ => usage(),
        }
    }
    if a.clusters == 0 || a.clusters > 65_536 {
        eprintln!("--clusters must be 1..=65536");
        std::process::exit(2);
    }
    if a.from + a.count.unwrap_or(0) > a.clusters || a.count == Some(0) {
        eprintln!("--from F --count N must lie within --clusters");
        std::process::exit(2);
    }
    a
}

impl Args {
    /// The clusters this process serves.
    fn served(&self) -> std::ops::Range<usize> {
        let n = self.count.unwrap_or(self.clusters - self.from);
        self.from..self.from + n
    }
}

/// The loopback address of member `m` of cluster `i`.
fn addr(i: usize, m: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 10 + m as u8, (i / 256) as u8, (i % 256) as u8)
}

fn cluster_name(i: usize) -> String {
    format!("fleet-{i:04}")
}

/// Requests served, by endpoint.
#[derive(Default)]
struct Counts {
    cluster: AtomicU64,
    patroni: AtomicU64,
    history: AtomicU64,
    other: AtomicU64,
}

struct Fleet {
    port: u16,
    counts: Counts,
    /// A xorshift state shared by all: lags only need to vary, not be good random numbers.
    rng: AtomicU64,
    started: u64,
}

impl Fleet {
    fn next_rand(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    /// A replica's lag in bytes: usually below 1 MB, 0.1 % of the time 1 to 8 MB.
    fn lag(&self) -> u64 {
        let r = self.next_rand();
        if r.is_multiple_of(1000) {
            (1 << 20) + (r >> 8) % (7 << 20)
        } else {
            (r >> 8) % (1 << 20)
        }
    }

    /// The leader's WAL position: grows about 1 MB/s from a per-cluster start.
    fn leader_lsn(&self, i: usize) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        0x1_0000_0000 + (i as u64) * 0x100_0000 + (now - self.started) * 1_000
    }

    fn api_url(&self, i: usize, m: usize) -> String {
        format!("http://{}:{}/patroni", addr(i, m), self.port)
    }

    fn cluster_body(&self, i: usize) -> String {
        let leader = self.leader_lsn(i);
        let mut members = Vec::with_capacity(MEMBERS);
        members.push(serde_json::json!({
            "name": "node0",
            "role": "leader",
            "state": "running",
            "api_url": self.api_url(i, 0),
            "host": addr(i, 0).to_string(),
            "port": 5432,
            "timeline": 2,
        }));
        for m in 1..MEMBERS {
            let receive_lag = self.lag() / 4;
            let replay_lag = receive_lag + self.lag();
            let receive = leader.saturating_sub(receive_lag);
            let replay = leader.saturating_sub(replay_lag);
            members.push(serde_json::json!({
                "name": format!("node{m}"),
                "role": "replica",
                "state": "streaming",
                "api_url": self.api_url(i, m),
                "host": addr(i, m).to_string(),
                "port": 5432,
                "timeline": 2,
                "receive_lag": receive_lag,
                "receive_lsn": lsn(receive),
                "replay_lag": replay_lag,
                "replay_lsn": lsn(replay),
                "lag": receive_lag,
                "lsn": lsn(receive),
            }));
        }
        serde_json::to_string_pretty(&serde_json::json!({
            "members": members,
            "scope": cluster_name(i),
        }))
        .unwrap_or_default()
    }

    fn patroni_body(&self, i: usize, m: usize) -> String {
        let leader = self.leader_lsn(i);
        let sysid = format!("77108364893973{:05}", i);
        let v = if m == 0 {
            let replication: Vec<_> = (1..MEMBERS)
                .map(|r| {
                    serde_json::json!({
                        "usename": "replicator",
                        "application_name": format!("node{r}"),
                        "client_addr": addr(i, r).to_string(),
                        "state": "streaming",
                        "sync_state": "async",
                        "sync_priority": 0,
                    })
                })
                .collect();
            serde_json::json!({
                "state": "running",
                "postmaster_start_time": "2026-11-22 03:43:43.823478+00:00",
                "role": "primary",
                "server_version": 150018,
                "xlog": {"location": leader},
                "timeline": 2,
                "replication": replication,
                "dcs_last_seen": self.started / 1000,
                "database_system_identifier": sysid,
                "patroni": {"version": "4.1.5", "scope": cluster_name(i), "name": "node0"},
            })
        } else {
            let received = leader.saturating_sub(self.lag() / 4);
            serde_json::json!({
                "state": "running",
                "postmaster_start_time": "2026-11-22 03:44:06.149465+00:00",
                "role": "replica",
                "server_version": 150018,
                "xlog": {
                    "received_location": received,
                    "replayed_location": received.saturating_sub(self.lag()),
                    "replayed_timestamp": null,
                    "paused": false,
                },
                "timeline": 2,
                "replication_state": "streaming",
                "dcs_last_seen": self.started / 1000,
                "database_system_identifier": sysid,
                "patroni": {"version": "4.1.5", "scope": cluster_name(i), "name": format!("node{m}")},
            })
        };
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// Reads one request head, answers, closes (HTTP/1.0 without keep-alive, as Patroni).
    async fn serve(&self, mut s: TcpStream, i: usize, m: usize) {
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 512];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > 16 * 1024 {
                break;
            }
        }
        let line = String::from_utf8_lossy(&buf);
        let path = line
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/");
        let path = path.split('?').next().unwrap_or(path);
        let (status, body) = match path {
            "/cluster" => {
                self.counts.cluster.fetch_add(1, Ordering::Relaxed);
                ("200 OK", self.cluster_body(i))
            }
            "/patroni" | "/" => {
                self.counts.patroni.fetch_add(1, Ordering::Relaxed);
                ("200 OK", self.patroni_body(i, m))
            }
            "/history" => {
                self.counts.history.fetch_add(1, Ordering::Relaxed);
                ("200 OK", "[]".to_string())
            }
            _ => {
                self.counts.other.fetch_add(1, Ordering::Relaxed);
                ("404 Not Found", String::new())
            }
        };
        let mut out = String::with_capacity(body.len() + 160);
        let _ = write!(
            out,
            "HTTP/1.0 {status}\r\nServer: BaseHTTP/0.6 Python/3.11.2\r\nDate: {}\r\nContent-Type: application/json\r\n\r\n{body}",
            humantime::format_rfc3339_seconds(SystemTime::now())
        );
        let _ = s.write_all(out.as_bytes()).await;
        let _ = s.shutdown().await;
    }
}

/// `0/15C89FE8`
fn lsn(v: u64) -> String {
    format!("{:X}/{:X}", v >> 32, v & 0xFFFF_FFFF)
}

fn watch_yml(a: &Args) -> String {
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Written by examples/fake_fleet.rs: {} clusters.",
        a.clusters
    );
    let _ = writeln!(y, "interval: {}\ntimeout: 5s\nclusters:", a.interval);
    for i in 0..a.clusters {
        let urls: Vec<String> = (0..MEMBERS)
            .map(|m| format!("http://{}:{}", addr(i, m), a.port))
            .collect();
        let _ = writeln!(
            y,
            "  - name: {}\n    urls: [{}]\n    slo: {{objective: 99.5%, threshold: 5MB, window: 30d}}",
            cluster_name(i),
            urls.join(", ")
        );
    }
    y
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let fleet = Arc::new(Fleet {
        port: a.port,
        counts: Counts::default(),
        rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        started,
    });
    for i in a.served() {
        for m in 0..MEMBERS {
            let sa = SocketAddr::from((addr(i, m), a.port));
            let listener = match TcpListener::bind(sa).await {
                Ok(l) => l,
                Err(e) => {
                    let hint = match e.kind() {
                        std::io::ErrorKind::AddrInUse => " (another fleet? choose --port)",
                        _ if e.raw_os_error() == Some(24) => " (raise ulimit -n)",
                        _ => "",
                    };
                    eprintln!("fake_fleet: cannot listen on {sa}: {e}{hint}");
                    std::process::exit(1);
                }
            };
            let fleet = fleet.clone();
            tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((s, _)) => {
                            let fleet = fleet.clone();
                            tokio::spawn(async move { fleet.serve(s, i, m).await });
                        }
                        Err(e) => {
                            eprintln!("fake_fleet: accept on {sa}: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
    }
    if let Some(p) = &a.watch_yml {
        if let Err(e) = std::fs::write(p, watch_yml(&a)) {
            eprintln!("fake_fleet: cannot write {}: {e}", p.display());
            std::process::exit(1);
        }
    }
    let served = a.served();
    println!(
        "ready: {} clusters ({}..{} of {}), {} members, 127.10.0.0-127.{}.255.255 port {}",
        served.len(),
        served.start,
        served.end,
        a.clusters,
        served.len() * MEMBERS,
        10 + MEMBERS - 1,
        a.port
    );
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("fake_fleet: cannot handle SIGTERM: {e}");
            std::process::exit(1);
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let c = &fleet.counts;
    println!(
        "served: /cluster {} /patroni {} /history {} other {}",
        c.cluster.load(Ordering::Relaxed),
        c.patroni.load(Ordering::Relaxed),
        c.history.load(Ordering::Relaxed),
        c.other.load(Ordering::Relaxed)
    );
}
