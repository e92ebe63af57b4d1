//! The samples of one cluster: bounded rings of good/total counts per time bucket, fine
//! for the short alert windows and coarse for the long ones, saved in the state file.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::spec::{SloSpec, WORKBOOK_WINDOW};
use super::{HOUR, MINUTE};

/// The fine ring never covers more than this. Longer alert windows use hourly-ish coarse
/// buckets, where an edge error of one bucket is small relative to the window.
pub const FINE_SPAN_MAX: Duration = Duration::from_secs(6 * HOUR);

/// Bucket budget per ring chosen by [`SampleLog::for_spec`]: 360–720 + 720 buckets of 4
/// bytes keep one cluster's log under 6 KiB (10,000 clusters: under 60 MiB).
const FINE_BUCKETS: u64 = 360;
const COARSE_BUCKETS: u64 = 720;

/// Hard cap on one ring's length, whatever widths a caller or a state file asks for: a
/// finer request is coarsened rather than allowed to allocate without bound.
const MAX_RING_BUCKETS: u64 = 1 << 16;

/// Counts of one bucket. The bucket's start is implicit (its position in the ring), so a
/// bucket costs 4 bytes in memory; the state file spells starts out. A bucket holds at most
/// [`SLOT_MAX`] samples: widths are capped at [`MAX_WIDTH`] seconds, so a sample a second
/// (the shortest poll interval) never fills one; a sample that would is dropped whole, so
/// that good never exceeds total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    good: u16,
    total: u16,
}

/// The most samples one bucket counts.
const SLOT_MAX: u32 = u16::MAX as u32;

/// The widest bucket, in seconds: at one sample a second it is never full.
const MAX_WIDTH: u64 = SLOT_MAX as u64;

/// A ring of consecutive buckets of `width` seconds, the newest holding bucket index
/// `newest` (= start_secs / width). Long enough to cover `span` from any instant in the
/// newest bucket: `ceil(span / width) + 1` buckets. Gaps (no samples) are empty buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RingState", into = "RingState")]
struct Ring {
    width: u64,
    span: u64,
    newest: u64,
    slots: VecDeque<Slot>,
}

/// The serialized form of a ring: widths in seconds and the non-empty buckets as
/// `[start_secs, good, total]`, oldest first.
#[derive(Serialize, Deserialize)]
struct RingState {
    width_secs: u64,
    span_secs: u64,
    buckets: Vec<(u64, u32, u32)>,
}

impl Ring {
    fn new(width: Duration, span: Duration) -> Ring {
        let span = ceil_secs(span);
        // Sub-second widths round up to 1 s: samples come every few seconds at most. A
        // bucket stays at most MAX_WIDTH wide (more buckets for windows over ~1.5 years).
        let width = ceil_secs(width)
            .max(1)
            .max(span.div_ceil(MAX_RING_BUCKETS))
            .min(MAX_WIDTH);
        Ring {
            width,
            span,
            newest: 0,
            slots: VecDeque::new(),
        }
    }

    fn len_cap(&self) -> usize {
        // MAX_RING_BUCKETS bounds this, so the conversion cannot fail in practice.
        usize::try_from(self.span.div_ceil(self.width) + 1).unwrap_or(usize::MAX)
    }

    fn oldest(&self) -> u64 {
        (self.newest + 1).saturating_sub(self.slots.len() as u64)
    }

    /// Adds counts to bucket `idx`, advancing the ring (and dropping buckets that fall off
    /// its old end) when `idx` is newer than anything seen. A bucket older than the ring
    /// can hold is dropped: it is outside every window the ring serves.
    fn add(&mut self, idx: u64, good: u32, total: u32) {
        // More than a bucket holds comes only from a state file written by hand; kept as
        // much of it as fits, good never above total.
        let total = total.min(SLOT_MAX) as u16;
        let good = good.min(u32::from(total)) as u16;
        let cap = self.len_cap();
        if self.slots.capacity() < cap {
            // Exactly once per ring: growing by doubling would waste up to half the memory.
            self.slots.reserve_exact(cap - self.slots.len());
        }
        let slot = Slot { good, total };
        if self.slots.is_empty() {
            self.slots.push_back(slot);
            self.newest = idx;
            return;
        }
        if idx > self.newest {
            let gap = idx - self.newest;
            if gap >= cap as u64 {
                self.slots.clear();
            } else {
                for _ in 1..gap {
                    self.push(Slot::default(), cap);
                }
            }
            self.push(slot, cap);
            self.newest = idx;
            return;
        }
        let back = self.newest - idx;
        let len = self.slots.len() as u64;
        if back < len {
            let pos = self.slots.len() - 1 - back as usize;
            if let Some(s) = self.slots.get_mut(pos) {
                if let Some(t) = s.total.checked_add(total) {
                    s.total = t;
                    s.good += good;
                }
            }
        } else if back < cap as u64 {
            // Older than the oldest bucket but still within reach (samples out of order):
            // extend the ring backwards rather than lose them.
            for _ in len..back {
                self.slots.push_front(Slot::default());
            }
            self.slots.push_front(slot);
        }
    }

    fn push(&mut self, slot: Slot, cap: usize) {
        // Pop before push so the deque never outgrows its exact allocation.
        while self.slots.len() >= cap {
            self.slots.pop_front();
        }
        self.slots.push_back(slot);
    }

    /// (good, total) over buckets `first..=last`.
    fn sum(&self, first: u64, last: u64) -> (u64, u64) {
        if self.slots.is_empty() {
            return (0, 0);
        }
        let oldest = self.oldest();
        let lo = first.max(oldest);
        let hi = last.min(self.newest);
        if lo > hi {
            return (0, 0);
        }
        let (a, b) = ((lo - oldest) as usize, (hi - oldest) as usize);
        self.slots.range(a..=b).fold((0, 0), |(g, t), s| {
            (g + u64::from(s.good), t + u64::from(s.total))
        })
    }
}

impl From<Ring> for RingState {
    fn from(r: Ring) -> RingState {
        let oldest = r.oldest();
        let buckets = r
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.total > 0)
            .map(|(i, s)| {
                (
                    (oldest + i as u64) * r.width,
                    u32::from(s.good),
                    u32::from(s.total),
                )
            })
            .collect();
        RingState {
            width_secs: r.width,
            span_secs: r.span,
            buckets,
        }
    }
}

impl TryFrom<RingState> for Ring {
    type Error = String;

    fn try_from(state: RingState) -> Result<Ring, String> {
        if state.width_secs == 0 {
            return Err("sample log: a bucket width of 0 s".to_string());
        }
        let mut ring = Ring::new(
            Duration::from_secs(state.width_secs),
            Duration::from_secs(state.span_secs),
        );
        let mut buckets = state.buckets;
        // Oldest first, so the newest bucket sets the ring's head and nothing is dropped
        // that a fresh recording would have kept.
        buckets.sort_by_key(|b| b.0);
        for (start, good, total) in buckets {
            if good > total {
                return Err(format!(
                    "sample log: bucket at {start} has {good} good of {total} samples"
                ));
            }
            // Re-bucketing by division also tolerates starts not aligned to the width.
            ring.add(start / ring.width, good, total);
        }
        Ok(ring)
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn since_epoch(t: SystemTime) -> Duration {
    // A clock before 1970 is not a case worth an error: it lands in bucket 0.
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// The samples of one cluster, in two rings of buckets: a fine ring for the short alert
/// windows and a coarse ring for the long ones and the SLO window. Memory is bounded by
/// the widths, not by the number of samples (see [`SampleLog::approx_bytes`]).
///
/// Serializes as `{"fine": ring, "coarse": ring}`, each ring
/// `{"width_secs", "span_secs", "buckets": [[start_secs, good, total], ...]}` (non-empty
/// buckets only), for the daemon's state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleLog {
    fine: Ring,
    coarse: Ring,
    /// When sampling began (seconds since the epoch). An alert needs at least its short
    /// window of observation: one bad sample out of one is not a 100 % burn worth a page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_secs: Option<u64>,
}

impl Default for SampleLog {
    /// 60 s buckets over 6 h and 1 h buckets over 30 days: the workbook's windows.
    fn default() -> Self {
        SampleLog::new(
            Duration::from_secs(MINUTE),
            FINE_SPAN_MAX,
            Duration::from_secs(HOUR),
            WORKBOOK_WINDOW,
        )
    }
}

impl SampleLog {
    /// Widths are whole seconds (rounded up, at least 1 s); a ring is coarsened if it would
    /// need more than 65,536 buckets.
    pub fn new(
        fine_width: Duration,
        fine_span: Duration,
        coarse_width: Duration,
        coarse_span: Duration,
    ) -> Self {
        SampleLog {
            fine: Ring::new(fine_width, fine_span),
            coarse: Ring::new(coarse_width, coarse_span),
            first_secs: None,
        }
    }

    /// Widths for `spec`:
    /// - the fine ring covers the longest alert window (long or short) that fits in 6 h,
    ///   with buckets of a tenth of the shortest short window (so the edge error stays
    ///   around 10 %), but no finer than 1 s nor than span / 360 (memory);
    /// - the coarse ring covers the SLO window with ~720 buckets (3,600 s for 30 days),
    ///   shrinking with the window (1 s for a 10-minute test SLO).
    pub fn for_spec(spec: &SloSpec) -> Self {
        let windows = || {
            spec.alerts
                .iter()
                .flat_map(|r| [r.long, r.short])
                .filter(|w| !w.is_zero())
        };
        let fine_span = windows()
            .filter(|w| *w <= FINE_SPAN_MAX)
            .max()
            .unwrap_or(FINE_SPAN_MAX.min(spec.window));
        let shortest = spec
            .alerts
            .iter()
            .map(|r| r.short)
            .filter(|w| !w.is_zero())
            .min()
            .unwrap_or(fine_span);
        let fine_width = (shortest.as_secs() / 10)
            .max(ceil_secs(fine_span).div_ceil(FINE_BUCKETS))
            .max(1);
        let coarse_width = ceil_secs(spec.window).div_ceil(COARSE_BUCKETS).max(1);
        SampleLog::new(
            Duration::from_secs(fine_width),
            fine_span,
            Duration::from_secs(coarse_width),
            spec.window,
        )
    }

    /// Records one sample. Buckets that fall off either ring's old end are dropped here.
    pub fn record(&mut self, at: SystemTime, good: bool) {
        let secs = since_epoch(at).as_secs();
        self.first_secs = Some(self.first_secs.map_or(secs, |f| f.min(secs)));
        let good = u32::from(good);
        self.fine.add(secs / self.fine.width, good, 1);
        self.coarse.add(secs / self.coarse.width, good, 1);
    }

    /// How long this log has been sampling at `now` (zero before the first sample).
    pub fn observed_for(&self, now: SystemTime) -> Duration {
        self.first_secs
            .map(|f| Duration::from_secs(since_epoch(now).as_secs().saturating_sub(f)))
            .unwrap_or_default()
    }

    /// `(good, total)` samples in the window `(now − window, now]`, from the fine ring when
    /// `window <= fine_span` and the coarse ring otherwise.
    ///
    /// Edge approximation: a bucket counts when any part of it lies in the window, so the
    /// oldest bucket is counted whole. The count is exact when `now − window` falls on a
    /// bucket boundary, and otherwise includes at most one bucket width of older samples:
    /// an alert can resolve up to one bucket later, never miss bad samples in the window.
    /// An empty window counts nothing.
    pub fn counts(&self, window: Duration, now: SystemTime) -> (u64, u64) {
        if window.is_zero() {
            return (0, 0);
        }
        let ring = if window <= self.fine_span() {
            &self.fine
        } else {
            &self.coarse
        };
        let now = since_epoch(now);
        let from = now.saturating_sub(window);
        ring.sum(from.as_secs() / ring.width, now.as_secs() / ring.width)
    }

    pub fn fine_width(&self) -> Duration {
        Duration::from_secs(self.fine.width)
    }

    pub fn fine_span(&self) -> Duration {
        Duration::from_secs(self.fine.span)
    }

    pub fn coarse_width(&self) -> Duration {
        Duration::from_secs(self.coarse.width)
    }

    pub fn coarse_span(&self) -> Duration {
        Duration::from_secs(self.coarse.span)
    }

    /// Buckets held in both rings (empty gap buckets included).
    pub fn bucket_count(&self) -> usize {
        self.fine.slots.len() + self.coarse.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fine.slots.is_empty() && self.coarse.slots.is_empty()
    }

    /// Heap and inline bytes held, counting allocated capacity, not just used buckets.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + (self.fine.slots.capacity() + self.coarse.slots.capacity())
                * std::mem::size_of::<Slot>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::testing::*;
    use crate::slo::{evaluate, AlertRule, Severity, DAY};
    use proptest::prelude::*;

    #[test]
    fn sample_log_widths_follow_the_spec() {
        let log = SampleLog::for_spec(&spec30());
        assert_eq!(log.fine_width(), Duration::from_secs(60));
        assert_eq!(log.fine_span(), Duration::from_secs(6 * HOUR));
        assert_eq!(log.coarse_width(), Duration::from_secs(HOUR));
        assert_eq!(log.coarse_span(), Duration::from_secs(30 * DAY));
        assert_eq!(SampleLog::default(), log);

        // A 10-minute test SLO with its own 60s/10s page rule: 1 s buckets everywhere.
        let mut spec = SloSpec::new(0.9, MB, Duration::from_secs(10 * MINUTE));
        spec.alerts = vec![AlertRule::new(
            Severity::Page,
            Duration::from_secs(60),
            Duration::from_secs(10),
            14.4,
        )];
        assert_eq!(spec.validate(), Ok(()));
        let log = SampleLog::for_spec(&spec);
        assert_eq!(log.fine_width(), Duration::from_secs(1));
        assert_eq!(log.fine_span(), Duration::from_secs(60));
        assert_eq!(log.coarse_width(), Duration::from_secs(1));
        assert_eq!(log.coarse_span(), Duration::from_secs(10 * MINUTE));
    }

    #[test]
    fn thirty_days_of_samples_fit_in_a_bounded_log() {
        let spec = spec30();
        let mut log = SampleLog::for_spec(&spec);
        feed_with(&mut log, 0, 30 * DAY, |k| k % 7 != 0);
        assert!(log.bucket_count() <= 1200, "{} buckets", log.bucket_count());
        assert!(
            log.approx_bytes() < 6 * 1024,
            "{} bytes",
            log.approx_bytes()
        );
        // 10,000 clusters' logs stay under 60 MiB.
        assert!(10_000 * log.approx_bytes() < 60 * 1024 * 1024);
        let (_, total) = log.counts(spec.window, at(30 * DAY));
        assert_eq!(total, 30 * DAY / STEP);
    }

    #[test]
    fn a_full_bucket_drops_a_sample_whole_and_widths_are_capped() {
        let mut ring = Ring::new(Duration::from_secs(60), Duration::from_secs(600));
        ring.add(5, SLOT_MAX - 1, SLOT_MAX);
        ring.add(5, 1, 1);
        assert_eq!(
            ring.sum(5, 5),
            (u64::from(SLOT_MAX - 1), u64::from(SLOT_MAX))
        );
        // A state file's oversized bucket is kept as far as it fits, good never above total.
        ring.add(6, 70_000, 70_000);
        assert_eq!(ring.sum(6, 6), (u64::from(SLOT_MAX), u64::from(SLOT_MAX)));
        // Two years in 720 buckets would be 87,600 s wide: capped, so a sample a second
        // never fills one.
        let long = Ring::new(Duration::from_secs(87_600), Duration::from_secs(730 * DAY));
        assert_eq!(long.width, MAX_WIDTH);
    }

    #[test]
    fn old_samples_leave_the_rings_and_gaps_count_nothing() {
        let spec = spec30();
        let mut log = SampleLog::for_spec(&spec);
        feed(&mut log, 0, HOUR, false);
        // The daemon was down for 40 days: the bad hour is outside every ring now.
        feed(&mut log, 40 * DAY, 40 * DAY + HOUR, true);
        let now = at(40 * DAY + HOUR);
        assert_eq!(log.counts(spec.window, now), (360, 360));
        assert_eq!(log.counts(Duration::from_secs(6 * HOUR), now), (360, 360));
        // A sample older than the coarse ring can hold is dropped, not misplaced.
        log.record(at(HOUR), false);
        assert_eq!(log.counts(Duration::from_secs(60 * DAY), now), (360, 360));
    }

    #[test]
    fn serde_round_trip_preserves_counts() {
        let spec = spec30();
        let mut log = SampleLog::for_spec(&spec);
        feed(&mut log, 0, 2 * DAY, true);
        feed_with(&mut log, 2 * DAY, 2 * DAY + 3 * HOUR, |k| k % 3 == 0);
        let json = serde_json::to_string(&log).expect("serialize");
        let back: SampleLog = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, log);
        let now = at(2 * DAY + 3 * HOUR);
        for w in [5 * MINUTE, HOUR, 6 * HOUR, DAY, 3 * DAY, 30 * DAY] {
            let w = Duration::from_secs(w);
            assert_eq!(back.counts(w, now), log.counts(w, now), "window {w:?}");
        }
        assert_eq!(evaluate(&spec, &back, now), evaluate(&spec, &log, now));

        let bad: Result<SampleLog, _> = serde_json::from_str(
            r#"{"fine":{"width_secs":60,"span_secs":60,"buckets":[[0,5,3]]},
                "coarse":{"width_secs":0,"span_secs":60,"buckets":[]}}"#,
        );
        assert!(bad.is_err());
    }

    proptest! {
        #[test]
        fn counts_keep_every_sample_within_the_fine_span(
            samples in prop::collection::vec((0u64..6 * HOUR, any::<bool>()), 0..300)
        ) {
            // Samples at arbitrary times (in any order) within the last 6 h before `now`.
            let spec = spec30();
            let mut log = SampleLog::for_spec(&spec);
            let now = 10 * DAY + 17;
            for (ago, good) in &samples {
                log.record(at(now - ago), *good);
            }
            let goods = samples.iter().filter(|(_, g)| *g).count() as u64;
            let (good, total) = log.counts(log.fine_span(), at(now));
            prop_assert!(total >= good);
            prop_assert_eq!(total, samples.len() as u64);
            prop_assert_eq!(good, goods);
            prop_assert_eq!(log.counts(spec.window, at(now)), (good, total));
        }

        #[test]
        fn counts_agree_with_a_naive_count_over_buckets(
            samples in prop::collection::vec((0u64..40 * DAY, any::<bool>()), 1..200),
            window in 1u64..30 * DAY,
        ) {
            let spec = spec30();
            let mut log = SampleLog::for_spec(&spec);
            for (t, good) in &samples {
                log.record(at(*t), *good);
            }
            let now = samples.iter().map(|(t, _)| *t).max().unwrap_or(0);
            let window = Duration::from_secs(window);
            let width = if window <= log.fine_span() { log.fine_width() } else { log.coarse_width() }.as_secs();
            // The documented rule: a sample counts when its bucket overlaps (now − window, now].
            let first = (T0 + now - window.as_secs()) / width;
            let last = (T0 + now) / width;
            let inside: Vec<bool> = samples
                .iter()
                .filter(|(t, _)| (first..=last).contains(&((T0 + t) / width)))
                .map(|(_, g)| *g)
                .collect();
            let expected = (inside.iter().filter(|g| **g).count() as u64, inside.len() as u64);
            prop_assert_eq!(log.counts(window, at(now)), expected);
        }
    }
}
