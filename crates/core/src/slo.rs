//! SLO math on the replica-lag SLI: error budgets and multi-window, multi-burn-rate alerts
//! as in Google's SRE workbook (chapter "Alerting on SLOs").
//!
//! A watch daemon samples each cluster every interval and calls [`SampleLog::record`] with
//! whether the sample was good ([`SloSpec::is_good`]). [`evaluate`] turns the log into an
//! [`SloStatus`]: the good ratio over the SLO window, the budget left, a burn rate per alert
//! window, and which alert rules fire. Everything here is pure: `now` is a parameter.
//!
//! Burn rate over a window W = (bad / total over W) / (1 − objective). A burn rate of 1
//! spends exactly the budget over the SLO window; 14.4 over an hour spends 2 % of a 30-day
//! budget in that hour. A rule fires when both its long and its short window burn faster
//! than its factor: the long window proves the problem is big enough to matter, the short
//! one that it is still happening (so an alert resolves soon after the problem stops).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::sli::Sli;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// The SLO window the workbook's alert windows were designed for; other windows scale.
pub const WORKBOOK_WINDOW: Duration = Duration::from_secs(30 * DAY);

/// The fine ring never covers more than this. Longer alert windows use hourly-ish coarse
/// buckets, where an edge error of one bucket is small relative to the window.
pub const FINE_SPAN_MAX: Duration = Duration::from_secs(6 * HOUR);

/// Bucket budget per ring chosen by [`SampleLog::for_spec`]: 360 + 720 buckets of 8 bytes
/// keep one cluster's log under 10 KiB, so 1,000 clusters fit easily in the daemon's 64 MiB.
const FINE_BUCKETS: u64 = 360;
const COARSE_BUCKETS: u64 = 720;

/// Hard cap on one ring's length, whatever widths a caller or a state file asks for: a
/// finer request is coarsened rather than allowed to allocate without bound.
const MAX_RING_BUCKETS: u64 = 1 << 16;

// ---------------------------------------------------------------------------------------
// Spec
// ---------------------------------------------------------------------------------------

/// An SLO on the replica-lag SLI.
///
/// Serialized with `window_secs` (seconds; a fraction when sub-second) instead of `window`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloSpec {
    /// The target good fraction, strictly between 0 and 1 (0.995 for 99.5 %).
    pub objective: f64,
    /// A sample is good when the SLI (max replica lag) is at or below this many bytes.
    pub threshold_bytes: u64,
    /// The SLO window (30 days in the workbook).
    #[serde(rename = "window_secs", with = "secs")]
    pub window: Duration,
    /// Multi-window burn-rate rules; [`AlertRule::workbook`] by default.
    pub alerts: Vec<AlertRule>,
}

impl SloSpec {
    /// A spec with the workbook's four alert rules scaled to `window`.
    pub fn new(objective: f64, threshold_bytes: u64, window: Duration) -> Self {
        SloSpec {
            objective,
            threshold_bytes,
            window,
            alerts: AlertRule::workbook(window),
        }
    }

    /// The allowed bad fraction, `1 − objective`.
    pub fn error_budget(&self) -> f64 {
        1.0 - self.objective
    }

    /// Whether one SLI reading is a good sample. `None` means no reading (the cluster was
    /// unreachable). Unknown lag on any replica, or anything but exactly one leader, is bad:
    /// unknown is never 0 (DESIGN.md), and without a leader nothing replicates.
    pub fn is_good(&self, sli: Option<&Sli>) -> bool {
        match sli {
            None => false,
            Some(s) if s.leader_count != 1 || !s.unknown.is_empty() => false,
            Some(s) => s.max_bytes.is_some_and(|b| b <= self.threshold_bytes),
        }
    }

    /// Checks the spec; the error lists every problem found, separated by `; `.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        // Written as a negated range test so that NaN is rejected too.
        if !(self.objective > 0.0 && self.objective < 1.0) {
            problems.push(format!(
                "objective must be a fraction strictly between 0 and 1 (0.995 for 99.5%), got {}",
                self.objective
            ));
        }
        if self.window.is_zero() {
            problems.push("the SLO window must be longer than zero".to_string());
        }
        let mut names: Vec<&str> = Vec::new();
        for rule in &self.alerts {
            let name = &rule.name;
            if name.trim().is_empty() {
                problems.push("an alert rule has an empty name".to_string());
            } else if names.contains(&name.as_str()) {
                problems.push(format!("alert {name}: the name is used twice"));
            }
            names.push(name);
            if rule.long.is_zero() {
                problems.push(format!(
                    "alert {name}: the long window must be longer than zero"
                ));
            }
            if rule.short.is_zero() {
                problems.push(format!(
                    "alert {name}: the short window must be longer than zero"
                ));
            }
            if rule.short > rule.long {
                problems.push(format!(
                    "alert {name}: the short window {} is longer than the long window {}",
                    format_window(rule.short),
                    format_window(rule.long)
                ));
            }
            if rule.long > self.window {
                problems.push(format!(
                    "alert {name}: the long window {} is longer than the SLO window {}",
                    format_window(rule.long),
                    format_window(self.window)
                ));
            }
            if !(rule.factor > 0.0 && rule.factor.is_finite()) {
                problems.push(format!(
                    "alert {name}: the burn-rate factor must be a positive number, got {}",
                    rule.factor
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// How loud an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Wake someone up: the budget burns fast enough to be gone within days.
    Page,
    /// Look at it during working hours.
    Ticket,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        })
    }
}

/// One multi-window burn-rate rule: fires when the burn rate over both `long` and `short`
/// is above `factor`.
///
/// Serialized with `long_secs`/`short_secs` (seconds: an integer, or a fraction when the
/// window is sub-second, as scaled windows of a very short SLO can be).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    /// e.g. `page-1h-5m`.
    pub name: String,
    pub severity: Severity,
    #[serde(rename = "long_secs", with = "secs")]
    pub long: Duration,
    #[serde(rename = "short_secs", with = "secs")]
    pub short: Duration,
    pub factor: f64,
}

impl AlertRule {
    /// A rule named `<severity>-<long>-<short>`, e.g. `page-1h-5m`.
    pub fn new(severity: Severity, long: Duration, short: Duration, factor: f64) -> Self {
        AlertRule {
            name: format!(
                "{severity}-{}-{}",
                format_window(long),
                format_window(short)
            ),
            severity,
            long,
            short,
            factor,
        }
    }

    /// The workbook's rules for a 30-day SLO (page 1h/5m > 14.4 and 6h/30m > 6; ticket
    /// 1d/2h > 3 and 3d/6h > 1), every window scaled by `window / 30 days`. The factors do
    /// not scale: they are fractions of the budget per fraction of the window, which is
    /// what scaling the windows preserves.
    pub fn workbook(window: Duration) -> Vec<AlertRule> {
        let rules = [
            (Severity::Page, HOUR, 5 * MINUTE, 14.4),
            (Severity::Page, 6 * HOUR, 30 * MINUTE, 6.0),
            (Severity::Ticket, DAY, 2 * HOUR, 3.0),
            (Severity::Ticket, 3 * DAY, 6 * HOUR, 1.0),
        ];
        rules
            .into_iter()
            .map(|(severity, long, short, factor)| {
                AlertRule::new(
                    severity,
                    scale(Duration::from_secs(long), window),
                    scale(Duration::from_secs(short), window),
                    factor,
                )
            })
            .collect()
    }
}

/// `base * window / 30 days`, exact to the nanosecond (truncated), in integers so that a
/// 30-day window gives back exactly the workbook's windows.
fn scale(base: Duration, window: Duration) -> Duration {
    base.as_nanos()
        .checked_mul(window.as_nanos())
        .map(|n| duration_from_nanos(n / WORKBOOK_WINDOW.as_nanos()))
        .unwrap_or(Duration::MAX)
}

fn duration_from_nanos(n: u128) -> Duration {
    const NANOS: u128 = 1_000_000_000;
    match (u64::try_from(n / NANOS), u32::try_from(n % NANOS)) {
        (Ok(secs), Ok(nanos)) => Duration::new(secs, nanos),
        _ => Duration::MAX,
    }
}

/// A window as people write it: `5m`, `1h`, `30d`, `90s`, `36h`, `500ms` — the largest unit
/// that divides it exactly. Sub-millisecond fractions print as decimal seconds.
pub fn format_window(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        let s = d.as_secs();
        if s == 0 {
            return "0s".to_string();
        }
        for (unit, len) in [("d", DAY), ("h", HOUR), ("m", MINUTE)] {
            if s.is_multiple_of(len) {
                return format!("{}{unit}", s / len);
            }
        }
        return format!("{s}s");
    }
    if nanos.is_multiple_of(1_000_000) {
        return format!("{}ms", d.as_millis());
    }
    let decimals = format!("{nanos:09}");
    format!("{}.{}s", d.as_secs(), decimals.trim_end_matches('0'))
}

/// Parses an objective as operators write it: `99.5`, `99.5%` or `0.995`. A value above 1,
/// or one with `%`, is a percentage. The result is strictly between 0 and 1.
pub fn parse_objective(s: &str) -> Result<f64, String> {
    let text = s.trim();
    let (number, percent) = match text.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (text, false),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("objective {s:?} is not a number: write 99.5, 99.5% or 0.995"))?;
    let fraction = if percent || value > 1.0 {
        // Shift the decimal point in the text rather than divide, so that "99.9" gives
        // the same f64 as "0.999" (99.9 / 100 is off by one ulp). Falls back to division
        // for forms where appending an exponent is not valid ("1e5", "inf").
        format!("{number}e-2").parse().unwrap_or(value / 100.0)
    } else {
        value
    };
    // Negated so that NaN and infinities are rejected.
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(format!(
            "objective {s:?} must be above 0% and below 100% (e.g. 99.5, 99.5% or 0.995)"
        ));
    }
    Ok(fraction)
}

/// Durations as seconds in the state file and config: an integer when whole (the common
/// case, and exact), else a fraction.
mod secs {
    use std::time::Duration;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_f64(d.as_secs_f64())
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Secs {
        Whole(u64),
        Fraction(f64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Secs::deserialize(d)? {
            Secs::Whole(s) => Ok(Duration::from_secs(s)),
            Secs::Fraction(f) => Duration::try_from_secs_f64(f)
                .map_err(|e| D::Error::custom(format!("invalid duration {f} s: {e}"))),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sample log
// ---------------------------------------------------------------------------------------

/// Counts of one bucket. The bucket's start is implicit (its position in the ring), so a
/// bucket costs 8 bytes in memory; the state file spells starts out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    good: u32,
    total: u32,
}

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
        // Sub-second widths round up to 1 s: samples come every few seconds at most.
        let width = ceil_secs(width).max(1).max(span.div_ceil(MAX_RING_BUCKETS));
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
                s.good = s.good.saturating_add(good);
                s.total = s.total.saturating_add(total);
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
            .map(|(i, s)| ((oldest + i as u64) * r.width, s.good, s.total))
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

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

/// The state of one alert rule at `now`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub name: String,
    pub severity: Severity,
    pub firing: bool,
    /// Labels of the rule's windows (`1h`, `5m`), for messages.
    pub long_window: String,
    pub short_window: String,
    pub burn_long: f64,
    pub burn_short: f64,
    pub factor: f64,
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (long, short) = (&self.long_window, &self.short_window);
        let (bl, bs, k) = (self.burn_long, self.burn_short, self.factor);
        if self.firing {
            write!(
                f,
                "{}: firing: budget burns {bl:.1}x over {long} and {bs:.1}x over {short}, both above {k}",
                self.name
            )
        } else if bl > k {
            write!(
                f,
                "{}: ok: {bl:.1}x over {long} is above {k} but {bs:.1}x over {short} is not (no longer burning)",
                self.name
            )
        } else {
            write!(
                f,
                "{}: ok: {bl:.1}x over {long} is not above {k}",
                self.name
            )
        }
    }
}

/// The SLO of one cluster at `now`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloStatus {
    /// Good / total over the SLO window; `None` without samples.
    pub good_ratio: Option<f64>,
    /// `1 − bad_ratio / (1 − objective)` over the SLO window: 1 untouched, 0 spent,
    /// negative when overspent. `None` without samples.
    pub error_budget_remaining: Option<f64>,
    /// Burn rate per distinct alert window, shortest first, labelled like `5m`.
    pub burn_rates: Vec<(String, f64)>,
    /// One per alert rule, in the spec's order.
    pub alerts: Vec<AlertState>,
    /// Samples over the SLO window.
    pub samples: u64,
}

impl SloStatus {
    /// The loudest firing severity, if any rule fires.
    pub fn firing(&self) -> Option<Severity> {
        let firing = |sev| self.alerts.iter().any(|a| a.firing && a.severity == sev);
        [Severity::Page, Severity::Ticket]
            .into_iter()
            .find(|s| firing(*s))
    }
}

/// Evaluates `spec` over `log` at `now`. A window without samples burns 0, so an alert
/// never fires on no data (absence of data is the daemon's own alert, not the SLO's; bad
/// samples for unreachable clusters are how outages count). `spec` should be valid
/// ([`SloSpec::validate`]); with an objective of 1 any bad sample burns infinitely.
pub fn evaluate(spec: &SloSpec, log: &SampleLog, now: SystemTime) -> SloStatus {
    let budget = spec.error_budget();
    let burn = |window: Duration| {
        let (good, total) = log.counts(window, now);
        burn_rate(good, total, budget)
    };

    let (good, samples) = log.counts(spec.window, now);
    let good_ratio = (samples > 0).then(|| good as f64 / samples as f64);
    let error_budget_remaining = (samples > 0).then(|| 1.0 - burn_rate(good, samples, budget));

    let mut windows: Vec<Duration> = spec.alerts.iter().flat_map(|r| [r.long, r.short]).collect();
    windows.sort();
    windows.dedup();
    let burn_rates = windows
        .into_iter()
        .map(|w| (format_window(w), burn(w)))
        .collect();

    let alerts = spec
        .alerts
        .iter()
        .map(|rule| {
            let burn_long = burn(rule.long);
            let burn_short = burn(rule.short);
            // Both windows above the factor, and at least the short window observed.
            let observed = log.observed_for(now) >= rule.short;
            AlertState {
                name: rule.name.clone(),
                severity: rule.severity,
                firing: observed && burn_long > rule.factor && burn_short > rule.factor,
                long_window: format_window(rule.long),
                short_window: format_window(rule.short),
                burn_long,
                burn_short,
                factor: rule.factor,
            }
        })
        .collect();

    SloStatus {
        good_ratio,
        error_budget_remaining,
        burn_rates,
        alerts,
        samples,
    }
}

/// (bad / total) / budget; 0 without samples.
fn burn_rate(good: u64, total: u64, budget: f64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let bad = total.saturating_sub(good) as f64 / total as f64;
    bad / budget
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;
    use proptest::prelude::*;

    const MB: u64 = 1024 * 1024;
    /// A day boundary, so hours and minutes below are bucket-aligned.
    const T0: u64 = 1_700_000_000 - 1_700_000_000 % DAY;
    const STEP: u64 = 10;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    fn spec30() -> SloSpec {
        SloSpec::new(0.995, 100 * MB, Duration::from_secs(30 * DAY))
    }

    /// One sample every 10 s in `[from, to)`, offset by 5 s so none sits on a bucket edge.
    fn feed(log: &mut SampleLog, from: u64, to: u64, good: bool) {
        feed_with(log, from, to, |_| good);
    }

    /// Like `feed`, with goodness by the sample's number (0-based) in this stretch.
    fn feed_with(log: &mut SampleLog, from: u64, to: u64, good: impl Fn(u64) -> bool) {
        let mut t = from;
        let mut k = 0;
        while t < to {
            log.record(at(t + 5), good(k));
            t += STEP;
            k += 1;
        }
    }

    fn alert<'a>(status: &'a SloStatus, name: &str) -> &'a AlertState {
        status
            .alerts
            .iter()
            .find(|a| a.name == name)
            .expect("rule exists")
    }

    fn burn(status: &SloStatus, label: &str) -> f64 {
        status
            .burn_rates
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, b)| *b)
            .expect("window exists")
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn all_good_keeps_the_whole_budget_and_nothing_fires() {
        let spec = spec30();
        let mut log = SampleLog::for_spec(&spec);
        feed(&mut log, 0, 3 * DAY, true);
        let s = evaluate(&spec, &log, at(3 * DAY));
        assert_eq!(s.samples, 3 * DAY / STEP);
        assert_eq!(s.good_ratio, Some(1.0));
        assert_eq!(s.error_budget_remaining, Some(1.0));
        assert!(s.burn_rates.iter().all(|(_, b)| *b == 0.0));
        assert!(s.alerts.iter().all(|a| !a.firing));
        assert_eq!(s.firing(), None);
    }

    #[test]
    fn no_data_burns_nothing_and_never_fires() {
        let spec = spec30();
        let s = evaluate(&spec, &SampleLog::for_spec(&spec), at(0));
        assert_eq!(
            (s.samples, s.good_ratio, s.error_budget_remaining),
            (0, None, None)
        );
        assert!(s.burn_rates.iter().all(|(_, b)| *b == 0.0));
        assert_eq!(s.firing(), None);
    }

    #[test]
    fn an_hour_of_total_outage_pages_and_tickets_with_hand_computed_burns() {
        // 3 days good, then 1 h all bad; 99.5 % leaves a 0.5 % budget.
        let spec = spec30();
        let mut log = SampleLog::for_spec(&spec);
        feed(&mut log, 0, 72 * HOUR, true);
        feed(&mut log, 72 * HOUR, 73 * HOUR, false);
        let s = evaluate(&spec, &log, at(73 * HOUR));

        // All bad: 1 / 0.005 = 200.
        assert!(close(burn(&s, "5m"), 200.0));
        assert!(close(burn(&s, "30m"), 200.0));
        assert!(close(burn(&s, "1h"), 200.0));
        // 1 bad hour in 2 h, 6 h, 24 h, 72 h.
        assert!(close(burn(&s, "2h"), 100.0));
        assert!(close(burn(&s, "6h"), 200.0 / 6.0));
        assert!(close(burn(&s, "1d"), 200.0 / 24.0));
        assert!(close(burn(&s, "3d"), 200.0 / 72.0));

        // 200 > 14.4 on both; 33.3 and 200 > 6; 8.3 and 100 > 3; 2.8 and 33.3 > 1.
        for name in ["page-1h-5m", "page-6h-30m", "ticket-1d-2h", "ticket-3d-6h"] {
            assert!(alert(&s, name).firing, "{name} should fire");
        }
        assert_eq!(s.firing(), Some(Severity::Page));
        let page = alert(&s, "page-1h-5m");
        assert!(close(page.burn_long, 200.0) && close(page.burn_short, 200.0));
        assert!(page.to_string().starts_with("page-1h-5m: firing"));
    }

    #[test]
    fn a_slow_burn_pages_on_the_6h_rule_but_not_the_1h_rule() {
        // Every 20th sample bad for 6 h: 5 % bad = burn 10, above 6 but below 14.4.
        let spec = spec30();
        let mut log = SampleLog::for_spec(&spec);
        feed(&mut log, 0, 72 * HOUR, true);
        feed_with(&mut log, 72 * HOUR, 78 * HOUR, |k| k % 20 != 0);
        let s = evaluate(&spec, &log, at(78 * HOUR));
        assert!(close(burn(&s, "1h"), 10.0));
        assert!(close(burn(&s, "6h"), 10.0));
        assert!(!alert(&s, "page-1h-5m").firing);
        assert!(alert(&s, "page-6h-30m").firing);
        // 6 h at 5 % over a day is 1.25 % bad = 2.5 < 3; over 3 days 0.83 < 1.
        assert!(close(alert(&s, "ticket-1d-2h").burn_long, 2.5));
        assert!(!alert(&s, "ticket-1d-2h").firing);
        assert!(!alert(&s, "ticket-3d-6h").firing);
    }

    #[test]
    fn a_short_blip_burns_the_short_window_but_does_not_page() {
        // 3 minutes all bad: the 5m window burns at 120, the 1h window only at 10 < 14.4.
        // The long window is the multiwindow guard against paging on a blip.
        let spec = spec30();
        let mut log = SampleLog::for_spec(&spec);
        feed(&mut log, 0, 72 * HOUR, true);
        feed(&mut log, 72 * HOUR, 72 * HOUR + 3 * MINUTE, false);
        let s = evaluate(&spec, &log, at(72 * HOUR + 3 * MINUTE));
        let page = alert(&s, "page-1h-5m");
        assert!(page.burn_short > 14.4);
        assert!(close(page.burn_long, 10.0));
        assert!(!page.firing);
        assert_eq!(s.firing(), None);
    }

    #[test]
    fn five_minutes_of_total_outage_already_pages_at_99_5() {
        // The workbook's threshold: 14.4 x 0.5 % of an hour is 4.32 minutes of total outage,
        // so 5 bad minutes (8.3 % of the hour, burn 16.7) page. Stated so nobody "fixes" it.
        let spec = spec30();
        let mut log = SampleLog::for_spec(&spec);
        feed(&mut log, 0, 72 * HOUR, true);
        feed(&mut log, 72 * HOUR, 72 * HOUR + 5 * MINUTE, false);
        let s = evaluate(&spec, &log, at(72 * HOUR + 5 * MINUTE));
        let page = alert(&s, "page-1h-5m");
        assert!(close(page.burn_long, 200.0 / 12.0));
        assert!(page.firing);
    }

    #[test]
    fn good_samples_after_an_outage_resolve_the_fast_page_first() {
        let spec = spec30();
        let mut log = SampleLog::for_spec(&spec);
        feed(&mut log, 0, 72 * HOUR, true);
        feed(&mut log, 72 * HOUR, 73 * HOUR, false);

        // 6 good minutes: the 5m window is clean, so page-1h-5m resolves although the 1h
        // window still burns at 180; page-6h-30m needs its 30m window clean.
        feed(&mut log, 73 * HOUR, 73 * HOUR + 6 * MINUTE, true);
        let s = evaluate(&spec, &log, at(73 * HOUR + 6 * MINUTE));
        let fast = alert(&s, "page-1h-5m");
        assert!(!fast.firing);
        assert_eq!(fast.burn_short, 0.0);
        assert!(fast.burn_long > 14.4);
        assert!(fast.to_string().contains("no longer burning"));
        assert!(alert(&s, "page-6h-30m").firing);

        // 31 good minutes: no page fires; the ticket over 1d/2h still does (by design,
        // tickets are for budget already spent).
        feed(
            &mut log,
            73 * HOUR + 6 * MINUTE,
            73 * HOUR + 31 * MINUTE,
            true,
        );
        let s = evaluate(&spec, &log, at(73 * HOUR + 31 * MINUTE));
        assert!(!alert(&s, "page-1h-5m").firing);
        assert!(!alert(&s, "page-6h-30m").firing);
        assert!(alert(&s, "ticket-1d-2h").firing);
        assert_eq!(s.firing(), Some(Severity::Ticket));
    }

    #[test]
    fn budget_remaining_by_hand() {
        // 99 % over a day: a 1 % budget. 1,000 samples with 5 bad = 0.5 % bad: half spent.
        let spec = SloSpec::new(0.99, MB, Duration::from_secs(DAY));
        let mut log = SampleLog::for_spec(&spec);
        feed_with(&mut log, 0, 1000 * STEP, |k| k >= 5);
        let s = evaluate(&spec, &log, at(1000 * STEP));
        assert_eq!(s.samples, 1000);
        assert!(close(s.good_ratio.expect("samples"), 0.995));
        assert!(close(s.error_budget_remaining.expect("samples"), 0.5));

        // 20 bad of 1,000 = 2 % bad, twice the budget: remaining is 1 − 2 = −1.
        let mut log = SampleLog::for_spec(&spec);
        feed_with(&mut log, 0, 1000 * STEP, |k| k >= 20);
        let s = evaluate(&spec, &log, at(1000 * STEP));
        assert!(close(s.error_budget_remaining.expect("samples"), -1.0));
    }

    #[test]
    fn workbook_windows_for_30_days_are_exactly_the_srebook_ones() {
        let rule = |name: &str, severity, long, short, factor| AlertRule {
            name: name.to_string(),
            severity,
            long: Duration::from_secs(long),
            short: Duration::from_secs(short),
            factor,
        };
        assert_eq!(
            AlertRule::workbook(Duration::from_secs(30 * DAY)),
            vec![
                rule("page-1h-5m", Severity::Page, HOUR, 5 * MINUTE, 14.4),
                rule("page-6h-30m", Severity::Page, 6 * HOUR, 30 * MINUTE, 6.0),
                rule("ticket-1d-2h", Severity::Ticket, DAY, 2 * HOUR, 3.0),
                rule("ticket-3d-6h", Severity::Ticket, 3 * DAY, 6 * HOUR, 1.0),
            ]
        );
        assert_eq!(spec30().alerts, AlertRule::workbook(WORKBOOK_WINDOW));
        assert_eq!(spec30().validate(), Ok(()));
    }

    #[test]
    fn workbook_windows_scale_with_the_slo_window() {
        // 10 minutes is 1/4320 of 30 days.
        let rules = AlertRule::workbook(Duration::from_secs(10 * MINUTE));
        let windows: Vec<(Duration, Duration)> = rules.iter().map(|r| (r.long, r.short)).collect();
        assert_eq!(windows[0].0, Duration::from_nanos(833_333_333)); // 1h / 4320
        assert_eq!(windows[1].0, Duration::from_secs(5)); // 6h
        assert_eq!(windows[2].0, Duration::from_secs(20)); // 1d
        assert_eq!(
            windows[3],
            (Duration::from_secs(60), Duration::from_secs(5))
        ); // 3d/6h
        assert_eq!(rules[3].name, "ticket-1m-5s");
        assert_eq!(rules[0].factor, 14.4);
        assert_eq!(
            SloSpec::new(0.995, MB, Duration::from_secs(10 * MINUTE)).validate(),
            Ok(())
        );

        // 90 days stretches them threefold.
        let rules = AlertRule::workbook(Duration::from_secs(90 * DAY));
        assert_eq!(rules[0].name, "page-3h-15m");
    }

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
    fn a_10_minute_slo_pages_on_its_own_short_windows() {
        let mut spec = SloSpec::new(0.9, MB, Duration::from_secs(10 * MINUTE));
        spec.alerts = vec![AlertRule::new(
            Severity::Page,
            Duration::from_secs(60),
            Duration::from_secs(10),
            5.0,
        )];
        let mut log = SampleLog::for_spec(&spec);
        feed(&mut log, 0, 5 * MINUTE, true);
        feed(&mut log, 5 * MINUTE, 6 * MINUTE, false);
        let s = evaluate(&spec, &log, at(6 * MINUTE));
        assert!(alert(&s, "page-1m-10s").firing);
        // All bad over the minute: 1 / (1 − 0.9) = 10 > 5.
        assert!(close(burn(&s, "1m"), 10.0));
        // 1 bad minute in 6 minutes of data.
        assert!(close(s.good_ratio.expect("samples"), 5.0 / 6.0));
    }

    #[test]
    fn thirty_days_of_samples_fit_in_a_bounded_log() {
        let spec = spec30();
        let mut log = SampleLog::for_spec(&spec);
        feed_with(&mut log, 0, 30 * DAY, |k| k % 7 != 0);
        assert!(log.bucket_count() <= 1200, "{} buckets", log.bucket_count());
        assert!(
            log.approx_bytes() < 16 * 1024,
            "{} bytes",
            log.approx_bytes()
        );
        // 1,000 clusters stay far inside the daemon's 64 MiB.
        assert!(1000 * log.approx_bytes() < 16 * 1024 * 1024);
        let (_, total) = log.counts(spec.window, at(30 * DAY));
        assert_eq!(total, 30 * DAY / STEP);
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

    #[test]
    fn spec_serializes_durations_as_seconds() {
        let json = serde_json::to_value(spec30()).expect("serialize");
        assert_eq!(json["window_secs"], 30 * DAY);
        assert_eq!(json["alerts"][0]["long_secs"], 3600);
        assert_eq!(json["alerts"][0]["short_secs"], 300);
        assert_eq!(json["alerts"][0]["severity"], "page");
        let back: SloSpec = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, spec30());

        let tiny = SloSpec::new(0.995, MB, Duration::from_secs(10 * MINUTE));
        let json = serde_json::to_string(&tiny).expect("serialize");
        let back: SloSpec = serde_json::from_str(&json).expect("deserialize");
        let drift = back.alerts[0].long.abs_diff(tiny.alerts[0].long);
        assert!(drift < Duration::from_micros(1));
    }

    #[test]
    fn validate_rejects_bad_specs_with_messages() {
        let mut spec = spec30();
        spec.objective = 99.5;
        let err = spec.validate().expect_err("99.5 is a percentage");
        assert!(err.contains("strictly between 0 and 1"), "{err}");
        spec.objective = f64::NAN;
        assert!(spec.validate().is_err());
        spec.objective = 1.0;
        assert!(spec.validate().is_err());

        let mut spec = spec30();
        spec.window = Duration::ZERO;
        let err = spec.validate().expect_err("zero window");
        assert!(err.contains("SLO window must be longer than zero"), "{err}");
        assert!(err.contains("longer than the SLO window 0s"), "{err}");

        let mut spec = spec30();
        spec.alerts[0].short = Duration::from_secs(2 * HOUR);
        spec.alerts[1].long = Duration::from_secs(31 * DAY);
        spec.alerts[2].factor = 0.0;
        spec.alerts[3].short = Duration::ZERO;
        let err = spec.validate().expect_err("bad rules");
        assert!(
            err.contains("page-1h-5m: the short window 2h is longer than the long window 1h"),
            "{err}"
        );
        assert!(
            err.contains("page-6h-30m: the long window 31d is longer than the SLO window 30d"),
            "{err}"
        );
        assert!(
            err.contains("ticket-1d-2h: the burn-rate factor must be a positive number"),
            "{err}"
        );
        assert!(
            err.contains("ticket-3d-6h: the short window must be longer than zero"),
            "{err}"
        );

        let mut spec = spec30();
        spec.alerts[1].name = spec.alerts[0].name.clone();
        let err = spec.validate().expect_err("duplicate names");
        assert!(err.contains("used twice"), "{err}");
    }

    #[test]
    fn parse_objective_accepts_percent_and_fraction() {
        assert_eq!(parse_objective("99.5"), Ok(0.995));
        assert_eq!(parse_objective("99.5%"), Ok(0.995));
        assert_eq!(parse_objective(" 99.5 % "), Ok(0.995));
        assert_eq!(parse_objective("0.995"), Ok(0.995));
        assert_eq!(parse_objective("99.9"), Ok(0.999));
        assert_eq!(parse_objective("0.5%"), Ok(0.005));
        for bad in [
            "", "abc", "100", "100%", "1", "0", "-5", "NaN", "inf", "150",
        ] {
            let err = parse_objective(bad).expect_err(bad);
            assert!(err.contains("99.5"), "{bad}: {err}");
        }
    }

    #[test]
    fn windows_are_labelled_like_people_write_them() {
        let s = Duration::from_secs;
        assert_eq!(format_window(s(300)), "5m");
        assert_eq!(format_window(s(HOUR)), "1h");
        assert_eq!(format_window(s(30 * DAY)), "30d");
        assert_eq!(format_window(s(90)), "90s");
        assert_eq!(format_window(s(36 * HOUR)), "36h");
        assert_eq!(format_window(s(0)), "0s");
        assert_eq!(format_window(Duration::from_millis(1500)), "1500ms");
        assert_eq!(
            format_window(Duration::from_nanos(833_333_333)),
            "0.833333333s"
        );
    }

    #[test]
    fn unknown_lag_no_leader_and_unreachable_are_bad_samples() {
        let spec = SloSpec::new(0.995, 5 * MB, Duration::from_secs(30 * DAY));
        let sli = |c| Sli::measure(&c, crate::model::LagKind::Replay);
        let ok = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replay_lag_mb(5);
        assert!(spec.is_good(Some(&sli(ok.build()))));
        let over = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replay_lag_mb(6);
        assert!(!spec.is_good(Some(&sli(over.build()))));
        let unknown = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replay_lag_mb(0)
            .replica("pg2")
            .unknown_lag();
        assert!(!spec.is_good(Some(&sli(unknown.build()))));
        let leaderless = ClusterBuilder::new().replica("pg1").replay_lag_mb(0);
        assert!(!spec.is_good(Some(&sli(leaderless.build()))));
        assert!(!spec.is_good(None));
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

    /// Regression (found by the fleet benchmark): one bad sample at start-up set off every
    /// burn-rate alert, since one bad out of one is a 100 % burn.
    #[test]
    fn a_single_bad_sample_at_start_does_not_page_but_a_bad_short_window_does() {
        let spec = SloSpec::new(0.995, 5 << 20, Duration::from_secs(30 * DAY));
        let mut log = SampleLog::for_spec(&spec);
        log.record(at(0), false);
        assert!(evaluate(&spec, &log, at(0))
            .alerts
            .iter()
            .all(|a| !a.firing));
        // Bad for the whole short window (5 min) of the fast page: now it pages.
        feed(&mut log, 10, 5 * MINUTE, false);
        let s = evaluate(&spec, &log, at(5 * MINUTE));
        assert!(
            s.alerts.iter().any(|a| a.firing && a.name == "page-1h-5m"),
            "{s:?}"
        );
        // The observation start survives the state file.
        let back: SampleLog = serde_json::from_str(&serde_json::to_string(&log).unwrap()).unwrap();
        assert_eq!(
            back.observed_for(at(5 * MINUTE)),
            Duration::from_secs(5 * MINUTE)
        );
    }
}
