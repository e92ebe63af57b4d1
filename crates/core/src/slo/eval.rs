//! Judges a sample log against a spec at `now`: the good ratio, the budget left, a burn
//! rate per alert window, and which rules fire.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::log::SampleLog;
use super::spec::{format_window, Severity, SloSpec};

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
    use crate::slo::testing::*;
    use crate::slo::{AlertRule, DAY, HOUR, MINUTE};

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
