//! Lag trends for heal's `by: trend` mode: from a window of lag samples per member, a robust
//! catch-up rate (the Theil–Sen slope: the median of the slopes between every pair of
//! samples, so one odd reading moves it little) and the catch-up ETA; and from evidence, how
//! long a rebuild takes (earlier heals of the cluster, else its data size at a configured
//! throughput). Pure: samples and `now` are inputs.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::history::{ActionRecord, RecordOutcome};
use crate::model::{Cluster, Lag, LagKind};
use crate::pg::PgMember;

/// One reading of a member's lag. `None`: unknown (never counted as a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagSample {
    pub at: SystemTime,
    pub bytes: Option<u64>,
}

/// What trend mode decides from besides the snapshot: lag samples per member (oldest
/// first), the members whose WAL is gone (with why), and the cluster's data size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    pub samples: BTreeMap<String, VecDeque<LagSample>>,
    /// Members that can never catch up: the leader's slot for them is `lost`, or they need
    /// WAL the leader has removed. Member → the reason, in words.
    pub wal_gone: BTreeMap<String, String>,
    /// Bytes of data a rebuild copies (the leader's databases), when known.
    pub data_bytes: Option<u64>,
}

impl Evidence {
    /// Adds one sample per replica of `cluster` (the lag of `kind`, unknown as unknown) taken
    /// at `at`, and forgets samples older than `keep` and members no longer in the cluster.
    pub fn record(&mut self, cluster: &Cluster, kind: LagKind, at: SystemTime, keep: Duration) {
        for m in cluster.replicas() {
            let bytes = m.lag(kind).and_then(Lag::bytes);
            let s = self.samples.entry(m.name.clone()).or_default();
            // A member that was rebuilt (or is being) starts a new series: its old samples
            // describe a replica that no longer exists.
            if m.state.is_in_transition() {
                s.clear();
                continue;
            }
            s.push_back(LagSample { at, bytes });
        }
        self.samples
            .retain(|name, _| cluster.member(name).is_some_and(|m| !m.role.is_leader()));
        for s in self.samples.values_mut() {
            while s
                .front()
                .is_some_and(|f| at.duration_since(f.at).unwrap_or_default() > keep)
            {
                s.pop_front();
            }
        }
    }
}

/// Trend mode's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendPolicy {
    /// Only samples this recent count.
    pub window: Duration,
    /// Fewer known samples than this in the window: no trend ("not enough samples").
    pub min_samples: usize,
    /// Rebuild a shrinking replica when its ETA exceeds this many times the rebuild estimate.
    pub factor: f64,
    /// At or above this lag a replica is rebuilt whatever its trend.
    pub ceiling: u64,
    /// Bytes per second a rebuild copies, for the estimate from the data size when no
    /// earlier heal of the cluster says better.
    pub throughput: u64,
}

impl Default for TrendPolicy {
    fn default() -> Self {
        TrendPolicy {
            window: Duration::from_secs(120),
            min_samples: 5,
            factor: 2.0,
            ceiling: 16 * 1024 * 1024 * 1024,
            throughput: 50 * 1024 * 1024,
        }
    }
}

/// A member's lag trend over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Trend {
    /// Known samples used.
    pub samples: usize,
    /// From the oldest to the newest of them, in milliseconds.
    pub span_ms: u64,
    /// The newest known lag.
    pub lag: u64,
    /// Bytes per second the lag changes: negative while it shrinks.
    pub rate: i64,
    /// Seconds until caught up at that rate, while it shrinks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_secs: Option<u64>,
}

impl Trend {
    pub fn shrinking(&self) -> bool {
        self.rate < 0
    }
}

/// The trend of `samples` (oldest first) over `window` before `now`, or how many known
/// samples there are when fewer than `min_samples` (at least 2 are always needed, taken at
/// different times).
pub fn trend(
    samples: &VecDeque<LagSample>,
    now: SystemTime,
    window: Duration,
    min_samples: usize,
) -> Result<Trend, usize> {
    let start = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
    // Seconds relative to the newest sample; unknown readings are left out, never zero.
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.at >= start && s.at <= now)
        .filter_map(|s| s.bytes.map(|b| (s.at, b)))
        .map(|(at, b)| (secs_between(now, at), b as f64))
        .collect();
    let have = points.len();
    // Bounded work: past MAX_TREND_POINTS the points are thinned evenly (the oldest and the
    // newest always kept), so the pairwise slopes stay under MAX_TREND_POINTS² / 2 however
    // long the window and short the poll interval.
    let points = thin(points, MAX_TREND_POINTS);
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Err(have);
    };
    let span = first.0 - last.0;
    if have < min_samples.max(2) || span <= 0.0 {
        return Err(have);
    }
    let used = points.len();
    let mut slopes = Vec::with_capacity(used * (used - 1) / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            // `.0` is seconds before now: a later sample has the smaller figure.
            let dt = a.0 - b.0;
            if dt > 0.0 {
                slopes.push((b.1 - a.1) / dt);
            }
        }
    }
    let rate = median(&mut slopes).ok_or(have)?;
    let lag = last.1 as u64;
    let eta_secs = (rate < 0.0).then(|| (lag as f64 / -rate).ceil() as u64);
    Ok(Trend {
        samples: have,
        span_ms: (span * 1000.0).round() as u64,
        lag,
        rate: rate.round() as i64,
        eta_secs,
    })
}

/// The most points a trend's slope is computed from: 256 points are 32,640 pairwise slopes
/// (a fraction of a millisecond per candidate and decision; `examples/trend_cost`).
pub const MAX_TREND_POINTS: usize = 256;

/// At most `max` of `points`, evenly spread, the first and the last always among them.
fn thin(points: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    let n = points.len();
    if n <= max || max < 2 {
        return points;
    }
    (0..max).map(|i| points[i * (n - 1) / (max - 1)]).collect()
}

fn secs_between(later: SystemTime, earlier: SystemTime) -> f64 {
    later
        .duration_since(earlier)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if v.len() % 2 == 1 {
        return Some(m);
    }
    // The largest of the lower half.
    let lower = v[..mid].iter().copied().max_by(f64::total_cmp)?;
    Some((lower + m) / 2.0)
}

/// How long a rebuild of a member of this cluster takes, and from what evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "basis", rename_all = "snake_case")]
pub enum RebuildEstimate {
    /// The median duration of the cluster's latest successful heals (up to 5).
    History { secs: u64, heals: usize },
    /// The data size now at the median throughput of the cluster's latest successful heals
    /// that recorded the size they copied (bytes ÷ duration): a grown database takes longer.
    HistoryThroughput {
        secs: u64,
        heals: usize,
        bytes: u64,
        throughput: u64,
    },
    /// The data size at the configured throughput.
    DataSize {
        secs: u64,
        bytes: u64,
        throughput: u64,
    },
}

impl RebuildEstimate {
    pub fn secs(&self) -> u64 {
        match self {
            RebuildEstimate::History { secs, .. }
            | RebuildEstimate::HistoryThroughput { secs, .. }
            | RebuildEstimate::DataSize { secs, .. } => *secs,
        }
    }
}

/// How many of the latest successful heals the history estimate takes.
const HEALS_CONSIDERED: usize = 5;

/// The rebuild estimate from the cluster's `history` (finished, healed records: their
/// measured throughput applied to `data_bytes` when both are known, else their measured
/// durations), else from `data_bytes` at `throughput`; `None` without evidence.
pub fn rebuild_estimate(
    history: &[ActionRecord],
    data_bytes: Option<u64>,
    throughput: u64,
) -> Option<RebuildEstimate> {
    let mut healed: Vec<(SystemTime, Duration, Option<u64>)> = history
        .iter()
        .filter(|r| r.outcome == Some(RecordOutcome::Healed))
        .filter_map(|r| {
            let end = r.finished?;
            Some((end, end.duration_since(r.started).ok()?, r.bytes))
        })
        .collect();
    if !healed.is_empty() {
        healed.sort_by_key(|(end, _, _)| std::cmp::Reverse(*end));
        healed.truncate(HEALS_CONSIDERED);
        let mut rates: Vec<f64> = healed
            .iter()
            .filter(|(_, d, _)| !d.is_zero())
            .filter_map(|(_, d, b)| b.map(|b| b as f64 / d.as_secs_f64()))
            .filter(|r| *r > 0.0)
            .collect();
        if let (Some(bytes), Some(rate)) = (data_bytes, median(&mut rates)) {
            return Some(RebuildEstimate::HistoryThroughput {
                secs: ((bytes as f64 / rate).ceil() as u64).max(1),
                heals: rates.len(),
                bytes,
                throughput: rate.round() as u64,
            });
        }
        let mut secs: Vec<f64> = healed.iter().map(|(_, d, _)| d.as_secs_f64()).collect();
        let m = median(&mut secs).unwrap_or_default();
        return Some(RebuildEstimate::History {
            secs: (m.ceil() as u64).max(1),
            heals: healed.len(),
        });
    }
    let bytes = data_bytes?;
    let throughput = throughput.max(1);
    Some(RebuildEstimate::DataSize {
        secs: bytes.div_ceil(throughput).max(1),
        bytes,
        throughput,
    })
}

/// Patroni's replication slot name for a member (its `slot_name_from_member_name`):
/// lowercased, `-` and `.` as `_`, other characters outside `[a-z0-9_]` as `u` and their
/// code point, at most 63 characters.
pub fn slot_name(member: &str) -> String {
    let mut out = String::new();
    for ch in member.to_lowercase().chars() {
        match ch {
            'a'..='z' | '0'..='9' | '_' => out.push(ch),
            '-' | '.' => out.push('_'),
            other => out.push_str(&format!("u{:04}", other as u32)),
        }
    }
    out.chars().take(63).collect()
}

/// The WAL segment holding `lsn`, as the 16 hex digits after the timeline in a WAL file
/// name (`pg_walfile_name` cannot run on a standby).
fn segment_of(lsn: crate::Lsn, segment_size: u64) -> Option<String> {
    let per_xlogid = 0x1_0000_0000u64.checked_div(segment_size)?;
    let seg = lsn.0 / segment_size;
    Some(format!("{:08X}{:08X}", seg / per_xlogid, seg % per_xlogid))
}

/// Replicas that can never catch up from the leader, from PostgreSQL's evidence (queried
/// for trend mode): the leader's replication slot for the member is `lost`, or the member
/// has no archive to restore from and the WAL segment it needs next is older than the
/// oldest one left in the leader's `pg_wal` (its WAL receiver then fails with "requested
/// WAL segment … has already been removed"). Member → why.
pub fn wal_gone(pg: &[PgMember]) -> BTreeMap<String, String> {
    let mut gone = BTreeMap::new();
    let Some(leader) = pg
        .iter()
        .filter(|m| m.leader)
        .find_map(|m| m.facts.as_ref().ok())
    else {
        return gone;
    };
    for m in pg.iter().filter(|m| !m.leader) {
        let slot = slot_name(&m.name);
        if let Some(s) = leader
            .slots
            .iter()
            .find(|s| s.physical && s.name == slot && s.wal_status.as_deref() == Some("lost"))
        {
            gone.insert(
                m.name.clone(),
                format!(
                    "the leader's replication slot {} has wal_status lost",
                    s.name
                ),
            );
            continue;
        }
        let Ok(f) = &m.facts else { continue };
        if f.restore_command
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
        {
            continue;
        }
        let needs = match (f.receive_lsn, f.replay_lsn) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => match a.or(b) {
                Some(l) => l,
                None => continue,
            },
        };
        let (Some(have), Some(size)) = (&leader.oldest_segment, leader.wal_segment_size) else {
            continue;
        };
        let Some(need) = segment_of(needs, size) else {
            continue;
        };
        if have.len() == need.len() && need < *have {
            gone.insert(
                m.name.clone(),
                format!(
                    "it needs WAL from {needs} (segment {need}), the leader's oldest is segment {have}: already removed, no archive to restore from"
                ),
            );
        }
    }
    gone
}

/// The leader's data size, when its PostgreSQL answered.
pub fn data_bytes(pg: &[PgMember]) -> Option<u64> {
    pg.iter()
        .filter(|m| m.leader)
        .find_map(|m| m.facts.as_ref().ok().and_then(|f| f.data_bytes))
}

/// A per-second rate as a short human figure: `19.0 MB/s`.
pub fn human_rate(bytes_per_sec: u64) -> String {
    format!("{}/s", crate::units::human(bytes_per_sec))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1024 * 1024;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// Samples one per `step_ms`, ending at `t0()`.
    fn series(step_ms: u64, lags: &[Option<u64>]) -> VecDeque<LagSample> {
        let n = lags.len() as u64;
        lags.iter()
            .enumerate()
            .map(|(i, &bytes)| LagSample {
                at: t0() - Duration::from_millis((n - 1 - i as u64) * step_ms),
                bytes,
            })
            .collect()
    }

    fn known(lags: &[u64]) -> Vec<Option<u64>> {
        lags.iter().map(|&b| Some(b)).collect()
    }

    fn of(s: &VecDeque<LagSample>) -> Result<Trend, usize> {
        trend(s, t0(), Duration::from_secs(60), 5)
    }

    #[test]
    fn steady_catch_up_gives_its_rate_and_eta() {
        // 100 MB shrinking by 10 MB a second.
        let lags: Vec<u64> = (0..6).map(|i| (100 - 10 * i) * MB).collect();
        let t = of(&series(1000, &known(&lags))).unwrap();
        assert_eq!(t.samples, 6);
        assert_eq!(t.span_ms, 5000);
        assert_eq!(t.lag, 50 * MB);
        assert_eq!(t.rate, -(10 * MB as i64));
        assert_eq!(t.eta_secs, Some(5));
        assert!(t.shrinking());
    }

    #[test]
    fn a_stalled_replica_has_rate_zero_and_no_eta() {
        let t = of(&series(1000, &known(&[40 * MB; 8]))).unwrap();
        assert_eq!(t.rate, 0);
        assert_eq!(t.eta_secs, None);
        assert!(!t.shrinking());
    }

    #[test]
    fn growing_lag_has_a_positive_rate() {
        let lags: Vec<u64> = (0..10).map(|i| (20 + 3 * i) * MB).collect();
        let t = of(&series(500, &known(&lags))).unwrap();
        assert_eq!(t.rate, 6 * MB as i64);
        assert_eq!(t.eta_secs, None);
    }

    #[test]
    fn noise_and_one_wild_reading_do_not_move_the_slope_much() {
        // Shrinking 2 MB/s, ±0.5 MB of jitter, and one reading at 900 MB (a stale figure).
        let jitter = [0i64, 1, -1, 1, 0, -1, 1, -1, 0, 1, -1, 0];
        let lags: Vec<u64> = jitter
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let exact = 60 * MB as i64 - (i as i64) * 2 * MB as i64;
                (exact + j * (MB as i64) / 2) as u64
            })
            .collect();
        let mut with_spike = known(&lags);
        with_spike[7] = Some(900 * MB);
        let t = of(&series(1000, &with_spike)).unwrap();
        let rate_mb = t.rate as f64 / MB as f64;
        assert!((-2.3..=-1.7).contains(&rate_mb), "rate {rate_mb} MB/s");
        assert!(t.shrinking());
        assert_eq!(t.lag, 38 * MB, "the newest reading, not the spike");
    }

    #[test]
    fn too_few_samples_is_no_trend() {
        assert_eq!(of(&series(1000, &known(&[9 * MB, 8 * MB, 7 * MB]))), Err(3));
        assert_eq!(of(&VecDeque::new()), Err(0));
        // Unknown readings are not samples, never zeros.
        let mut lags = known(&[9 * MB, 8 * MB, 7 * MB]);
        lags.extend([None, None, None]);
        assert_eq!(of(&series(1000, &lags)), Err(3));
        // Samples older than the window do not count.
        let s = series(
            20_000,
            &known(&[50 * MB, 40 * MB, 30 * MB, 20 * MB, 10 * MB]),
        );
        assert_eq!(of(&s), Err(4));
        // Many samples at one instant give no rate.
        let same: VecDeque<LagSample> = (0..6)
            .map(|i| LagSample {
                at: t0(),
                bytes: Some(i * MB),
            })
            .collect();
        assert_eq!(of(&same), Err(6));
    }

    fn healed(started_ago: u64, secs: u64) -> ActionRecord {
        let started = t0() - Duration::from_secs(started_ago);
        let mut r = ActionRecord::starting("pg1", started);
        r.finish(RecordOutcome::Healed, started + Duration::from_secs(secs));
        r
    }

    #[test]
    fn the_estimate_comes_from_earlier_heals_then_the_data_size() {
        assert_eq!(rebuild_estimate(&[], None, 50 * MB), None);
        assert_eq!(
            rebuild_estimate(&[], Some(1000 * MB), 50 * MB),
            Some(RebuildEstimate::DataSize {
                secs: 20,
                bytes: 1000 * MB,
                throughput: 50 * MB
            })
        );
        let mut failed = healed(500, 3);
        failed.outcome = Some(RecordOutcome::Failed);
        let running = ActionRecord::starting("pg2", t0());
        let h = [healed(9000, 100), healed(3000, 40), failed, running];
        assert_eq!(
            rebuild_estimate(&h, Some(1000 * MB), 50 * MB),
            Some(RebuildEstimate::History { secs: 70, heals: 2 })
        );
        // The median of the latest five: an old slow heal is forgotten.
        let h: Vec<ActionRecord> = [900, 12, 11, 13, 12, 14]
            .iter()
            .enumerate()
            .map(|(i, &d)| healed(10_000 - i as u64 * 1000, d))
            .collect();
        assert_eq!(
            rebuild_estimate(&h, None, 1),
            Some(RebuildEstimate::History { secs: 12, heals: 5 })
        );
        // A heal that copied 400 MB in 20 s: 20 MB/s; the data has grown to 1000 MB.
        let mut sized = healed(3000, 20);
        sized.bytes = Some(400 * MB);
        assert_eq!(
            rebuild_estimate(&[sized.clone()], Some(1000 * MB), 50 * MB),
            Some(RebuildEstimate::HistoryThroughput {
                secs: 50,
                heals: 1,
                bytes: 1000 * MB,
                throughput: 20 * MB
            })
        );
        // Without today's size, the duration as measured.
        assert_eq!(
            rebuild_estimate(&[sized], None, 50 * MB),
            Some(RebuildEstimate::History { secs: 20, heals: 1 })
        );
    }

    #[test]
    fn slot_names_follow_patroni() {
        assert_eq!(slot_name("pg1"), "pg1");
        assert_eq!(slot_name("Node-1.dc"), "node_1_dc");
        assert_eq!(slot_name("a b"), "au0032b");
    }

    #[test]
    fn wal_is_gone_when_the_slot_is_lost_or_the_segment_removed() {
        use crate::pg::{PgFacts, Slot};
        use crate::Lsn;
        let leader = |slots: Vec<Slot>| PgMember {
            name: "pg0".into(),
            leader: true,
            facts: Ok(PgFacts {
                slots,
                oldest_segment: Some("0000000000000005".into()),
                wal_segment_size: Some(16 * MB),
                data_bytes: Some(30 * MB),
                ..Default::default()
            }),
        };
        let replica = |name: &str, lsn: u64, restore: &str| PgMember {
            name: name.into(),
            leader: false,
            facts: Ok(PgFacts {
                receive_lsn: Some(Lsn(lsn)),
                replay_lsn: Some(Lsn(lsn - 100)),
                restore_command: Some(restore.into()),
                ..Default::default()
            }),
        };
        // pg1 needs segment 4 (removed), pg2 segment 5 (kept), pg3 has an archive.
        let pg = vec![
            leader(vec![]),
            replica("pg1", 4 * 16 * MB + 10, ""),
            replica("pg2", 5 * 16 * MB, ""),
            replica("pg3", 16 * MB, "cp /archive/%f %p"),
        ];
        let gone = wal_gone(&pg);
        assert_eq!(gone.keys().collect::<Vec<_>>(), ["pg1"]);
        assert_eq!(
            gone["pg1"],
            "it needs WAL from 0/400000A (segment 0000000000000004), the leader's oldest is segment 0000000000000005: already removed, no archive to restore from"
        );
        assert_eq!(data_bytes(&pg), Some(30 * MB));
        // A lost slot says so, whatever the positions.
        let lost = Slot {
            name: "pg2".into(),
            physical: true,
            wal_status: Some("lost".into()),
            ..Default::default()
        };
        let pg = vec![leader(vec![lost]), replica("pg2", 9 * 16 * MB, "")];
        assert_eq!(
            wal_gone(&pg)["pg2"],
            "the leader's replication slot pg2 has wal_status lost"
        );
        // Without the leader's evidence nothing is concluded.
        assert!(wal_gone(&pg[1..]).is_empty());
        // Segment numbering across a 4 GB boundary: 0x1_0000_0000 is 00000001 00000000.
        assert_eq!(
            segment_of(Lsn(0x1_0000_0000), 16 * MB).as_deref(),
            Some("0000000100000000")
        );
    }

    #[test]
    fn recording_keeps_the_window_and_restarts_a_rebuilt_member() {
        use crate::fixtures::ClusterBuilder;
        use crate::model::State;
        let mut e = Evidence::default();
        let lagging = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(30)
            .replica("pg2")
            .unknown_lag()
            .build();
        for i in 0..5 {
            let at = t0() + Duration::from_secs(i * 10);
            e.record(&lagging, LagKind::Replay, at, Duration::from_secs(25));
        }
        assert!(!e.samples.contains_key("pg0"));
        assert_eq!(e.samples["pg1"].len(), 3, "only the last 25 s");
        assert_eq!(e.samples["pg1"][0].bytes, Some(30 * MB));
        assert_eq!(e.samples["pg2"][0].bytes, None);
        let rebuilding = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .state(State::CreatingReplica)
            .replica("pg2")
            .build();
        e.record(
            &rebuilding,
            LagKind::Replay,
            t0() + Duration::from_secs(50),
            Duration::from_secs(25),
        );
        assert!(e.samples["pg1"].is_empty());
    }

    #[test]
    fn a_long_window_is_thinned_to_the_cap_and_keeps_its_trend() {
        // An hour at one sample a second: 3,600 points, shrinking 1 MB/s from 4 GB.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mb = 1u64 << 20;
        let samples: VecDeque<LagSample> = (0..3600u64)
            .map(|i| LagSample {
                at: now - Duration::from_secs(3599 - i),
                bytes: Some(4096 * mb - i * mb),
            })
            .collect();
        let t = trend(&samples, now, Duration::from_secs(3600), 5).unwrap();
        assert_eq!(
            t.samples, 3600,
            "the count reported is what was in the window"
        );
        assert_eq!(t.rate, -(mb as i64));
        assert_eq!(t.lag, 4096 * mb - 3599 * mb);
        assert_eq!(t.span_ms, 3_599_000, "the oldest and newest are kept");
        let thinned = thin(
            (0..3600).map(|i| (i as f64, 0.0)).collect(),
            MAX_TREND_POINTS,
        );
        assert_eq!(thinned.len(), MAX_TREND_POINTS);
        assert_eq!(thinned[0].0, 0.0);
        assert_eq!(thinned[MAX_TREND_POINTS - 1].0, 3599.0);
    }
}
