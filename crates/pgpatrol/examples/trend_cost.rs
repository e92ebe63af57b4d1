//! What heal's `by: trend` decision costs watch: 1,000 clusters (a leader and two lagging
//! replicas each, every replica a candidate), each poll recording one sample per replica
//! into a 2-minute window (12 samples at 10 s) and deciding the plan, timed against the same
//! decision in threshold mode. Prints the CPU per poll round and as a share of one core at
//! a 10 s interval. Then the cost of one candidate's trend at the cap: a 1 h window sampled
//! every second (3,600 samples), thinned to `MAX_TREND_POINTS`, against the same slope over
//! every pair of the 3,600 (what an uncapped window cost). docs/BENCHMARKS.md has the
//! figures.
//!
//! cargo run --release -p pgpatrol --example trend_cost -- [--clusters 1000] [--rounds 200]

use std::time::{Duration, Instant, SystemTime};

use pgpatrol_core::fixtures::ClusterBuilder;
use pgpatrol_core::heal::{decide_with, DecideBy, Evidence, Policy};
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

/// One trend over an hour of samples a second apart, capped (as decided) and over every pair.
fn at_the_cap() {
    use pgpatrol_core::heal::{trend, LagSample, MAX_TREND_POINTS};
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    // (seconds before now, lag in bytes), oldest first.
    let points: Vec<(u64, u64)> = (0..3600u64)
        .map(|i| {
            (
                3599 - i,
                (4096u64 << 20) - (i << 20) + (i * 7919 % 513) * 1024,
            )
        })
        .collect();
    let samples: std::collections::VecDeque<LagSample> = points
        .iter()
        .map(|&(age, bytes)| LagSample {
            at: now - Duration::from_secs(age),
            bytes: Some(bytes),
        })
        .collect();
    let reps = 20;
    let t0 = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(trend(&samples, now, Duration::from_secs(3600), 5).ok());
    }
    let capped = t0.elapsed().as_secs_f64() * 1000.0 / reps as f64;
    // Every pair of the 3,600, as before the cap.
    let pts: Vec<(f64, f64)> = points
        .iter()
        .map(|&(age, bytes)| (age as f64, bytes as f64))
        .collect();
    let t0 = Instant::now();
    let mut slopes = Vec::with_capacity(pts.len() * pts.len() / 2);
    for (i, a) in pts.iter().enumerate() {
        for b in &pts[i + 1..] {
            if a.0 > b.0 {
                slopes.push((b.1 - a.1) / (a.0 - b.0));
            }
        }
    }
    let mid = slopes.len() / 2;
    std::hint::black_box(slopes.select_nth_unstable_by(mid, f64::total_cmp).1);
    let all_pairs = t0.elapsed().as_secs_f64() * 1000.0;
    println!(
        "one candidate, 1 h window at 1 s (3,600 samples): {capped:.3} ms capped at {MAX_TREND_POINTS} points, {all_pairs:.1} ms over every pair ({}× less)",
        (all_pairs / capped).round()
    );
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
    at_the_cap();
}
