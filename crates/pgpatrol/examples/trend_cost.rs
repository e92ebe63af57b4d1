//! What heal's `by: trend` decision costs watch: 1,000 clusters (a leader and two lagging
//! replicas each, every replica a candidate), each poll recording one sample per replica
//! into a 2-minute window (12 samples at 10 s) and deciding the plan, timed against the same
//! decision in threshold mode. Prints the CPU per poll round and as a share of one core at
//! a 10 s interval. docs/BENCHMARKS.md has the figures.
//!
//! cargo run --release -p pgpatrol --example trend_cost -- [--clusters 1000] [--rounds 200]

use std::time::{Duration, Instant, SystemTime};

use pgpatrol_core::fixtures::ClusterBuilder;
use pgpatrol_core::plan::{DecideBy, Policy};
use pgpatrol_core::policy::decide_with;
use pgpatrol_core::trend::Evidence;
use pgpatrol_core::{Cluster, LagKind};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("{name} takes a number");
                std::process::exit(2)
            })
        })
        .unwrap_or(default)
}

/// The clusters of one poll round: lag shrinking by about 1 MB a poll, with jitter.
fn fleet(n: usize, round: usize) -> Vec<Cluster> {
    (0..n)
        .map(|i| {
            let jitter = ((i * 7919 + round * 104_729) % 513) as u64 * 1024;
            let lag = (200u64.saturating_sub(round as u64 % 150)) << 20;
            ClusterBuilder::new()
                .leader("pg0")
                .replica("pg1")
                .receive_lag_bytes(lag + jitter)
                .replay_lag_bytes(lag + jitter)
                .replica("pg2")
                .receive_lag_bytes(lag / 2 + jitter)
                .replay_lag_bytes(lag / 2 + jitter)
                .replica("pg3")
                .build()
        })
        .collect()
}

/// CPU time of `rounds` poll rounds over `clusters`, deciding by `by`.
fn run(by: DecideBy, clusters: usize, rounds: usize) -> (Duration, usize) {
    let policy = Policy {
        by,
        tolerance: 256 * 1024,
        min_healthy: 0,
        ..Policy::default()
    };
    let mut evidence: Vec<Evidence> = vec![Evidence::default(); clusters];
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    // Cluster snapshots come from the source in watch; they are built outside the timing.
    let snapshots: Vec<Vec<Cluster>> = (0..rounds).map(|r| fleet(clusters, r)).collect();
    let mut acted = 0;
    let start = Instant::now();
    for (r, round) in snapshots.iter().enumerate() {
        let now = t0 + Duration::from_secs(10 * r as u64);
        for (c, e) in round.iter().zip(evidence.iter_mut()) {
            if by == DecideBy::Trend {
                e.record(c, LagKind::Replay, now, policy.trend.window);
            }
            acted += decide_with(c, &policy, &[], e, now).actions.len();
        }
    }
    (start.elapsed(), acted)
}

fn main() {
    let clusters = arg("--clusters", 1000);
    let rounds = arg("--rounds", 200).max(1);
    let interval = 10.0;
    println!(
        "{clusters} clusters × 3 replicas, {rounds} poll rounds (window 2m = 12 samples at 10 s)"
    );
    let mut per_round = Vec::new();
    for by in [DecideBy::Threshold, DecideBy::Trend] {
        let (took, acted) = run(by, clusters, rounds);
        let round_ms = took.as_secs_f64() * 1000.0 / rounds as f64;
        per_round.push(round_ms);
        println!(
            "{:<9} {round_ms:8.3} ms per round  = {:6.3} % of one core at a {interval} s interval  ({acted} actions decided)",
            by.as_str(),
            round_ms / 1000.0 / interval * 100.0
        );
    }
    println!(
        "trend adds {:.3} ms per round = {:.3} % of one core",
        per_round[1] - per_round[0],
        (per_round[1] - per_round[0]) / 1000.0 / interval * 100.0
    );
}
