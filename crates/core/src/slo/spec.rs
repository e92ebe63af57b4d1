//! What an SLO is: the objective, the lag threshold, the window and its burn-rate alert
//! rules (the SRE workbook's, scaled to the window), as written in config and state files.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DAY, HOUR, MINUTE};
use crate::sli::Sli;

/// The SLO window the workbook's alert windows were designed for; other windows scale.
pub const WORKBOOK_WINDOW: Duration = Duration::from_secs(30 * DAY);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;
    use crate::slo::testing::*;

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
}
