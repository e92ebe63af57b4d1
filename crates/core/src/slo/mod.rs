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
//!
//! `spec` says what the SLO is, `log` keeps the samples, `eval` judges them.

mod eval;
mod log;
mod spec;

pub use eval::{evaluate, AlertState, SloStatus};
pub use log::{SampleLog, FINE_SPAN_MAX};
pub use spec::{format_window, parse_objective, AlertRule, Severity, SloSpec, WORKBOOK_WINDOW};

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

#[cfg(test)]
mod testing {
    //! Helpers for the tests of every `slo` module.
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub const MB: u64 = 1024 * 1024;
    /// A day boundary, so hours and minutes below are bucket-aligned.
    pub const T0: u64 = 1_700_000_000 - 1_700_000_000 % DAY;
    pub const STEP: u64 = 10;

    pub fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    pub fn spec30() -> SloSpec {
        SloSpec::new(0.995, 100 * MB, Duration::from_secs(30 * DAY))
    }

    /// One sample every 10 s in `[from, to)`, offset by 5 s so none sits on a bucket edge.
    pub fn feed(log: &mut SampleLog, from: u64, to: u64, good: bool) {
        feed_with(log, from, to, |_| good);
    }

    /// Like `feed`, with goodness by the sample's number (0-based) in this stretch.
    pub fn feed_with(log: &mut SampleLog, from: u64, to: u64, good: impl Fn(u64) -> bool) {
        let mut t = from;
        let mut k = 0;
        while t < to {
            log.record(at(t + 5), good(k));
            t += STEP;
            k += 1;
        }
    }
}
