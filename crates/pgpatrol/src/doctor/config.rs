//! The `checks:` section of a watch config (doctor reads only that section of the file):
//! the thresholds, each optional, defaults from the runbook.
//!
//! ```yaml
//! checks:
//!   lag_bytes: {warn: 50MB, crit: 100MB}
//!   lag_seconds: {warn: 30s, crit: 60s}
//!   connections: {warn: 80%, crit: 95%}
//!   disk: {warn: 70%, crit: 85%}
//!   archive_failures: {warn: 0, crit: 5}
//!   failovers_24h: {warn: 1, crit: 3}
//!   slot_retained: {warn: 64MB, crit: 1GB}
//!   backup_age: 24h
//!   archive_age: 1h
//!   maintenance_lag: 10s
//!   interval: 60s            # watch: how often it runs the checks and exports pgpatrol_check
//! ```

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use pgpatrol_core::checks::{Level, Thresholds};
use pgpatrol_core::ByteSize;

/// A YAML scalar as text (numbers and strings alike).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    warn: Option<Scalar>,
    crit: Option<Scalar>,
}

/// The section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksConfig {
    #[serde(default)]
    lag_bytes: Option<RawLevel>,
    #[serde(default)]
    lag_seconds: Option<RawLevel>,
    #[serde(default)]
    connections: Option<RawLevel>,
    #[serde(default)]
    disk: Option<RawLevel>,
    #[serde(default)]
    archive_failures: Option<RawLevel>,
    #[serde(default)]
    failovers_24h: Option<RawLevel>,
    #[serde(default)]
    slot_retained: Option<RawLevel>,
    #[serde(default, deserialize_with = "opt_duration")]
    backup_age: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    archive_age: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    maintenance_lag: Option<Duration>,
    /// `watch` runs the checks this often (default 60 s); doctor ignores it.
    #[serde(default, deserialize_with = "opt_duration")]
    pub interval: Option<Duration>,
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    crate::source::target::opt_duration(d)
}

fn size(v: &Scalar, what: &str) -> Result<f64, String> {
    v.text()
        .parse::<ByteSize>()
        .map(|b| b.0 as f64)
        .map_err(|e| format!("checks.{what}: {e}"))
}

fn seconds(v: &Scalar, what: &str) -> Result<f64, String> {
    let t = v.text();
    if let Ok(n) = t.parse::<f64>() {
        return Ok(n);
    }
    humantime::parse_duration(&t)
        .map(|d| d.as_secs_f64())
        .map_err(|_| format!("checks.{what}: {t:?} is not a duration like 30s"))
}

fn ratio(v: &Scalar, what: &str) -> Result<f64, String> {
    let t = v.text();
    let bad = || format!("checks.{what}: {t:?} is not a percentage like 80%");
    let r = match t.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => t.trim().parse::<f64>().map_err(|_| bad())?,
    };
    if !(0.0..=1.0).contains(&r) {
        return Err(bad());
    }
    Ok(r)
}

fn count(v: &Scalar, what: &str) -> Result<f64, String> {
    v.text()
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| *n >= 0.0)
        .ok_or_else(|| format!("checks.{what}: {:?} is not a count", v.text()))
}

type Parse = fn(&Scalar, &str) -> Result<f64, String>;

fn level(raw: &Option<RawLevel>, into: &mut Level, what: &str, parse: Parse) -> Result<(), String> {
    let Some(r) = raw else { return Ok(()) };
    if let Some(w) = &r.warn {
        into.warn = parse(w, what)?;
    }
    if let Some(c) = &r.crit {
        into.crit = parse(c, what)?;
    }
    if into.crit < into.warn {
        return Err(format!("checks.{what}: crit is below warn"));
    }
    Ok(())
}

impl ChecksConfig {
    /// The thresholds: the runbook's, with what this section changes.
    pub fn thresholds(&self) -> Result<Thresholds, String> {
        let mut t = Thresholds::default();
        level(&self.lag_bytes, &mut t.lag_bytes, "lag_bytes", size)?;
        level(
            &self.lag_seconds,
            &mut t.lag_seconds,
            "lag_seconds",
            seconds,
        )?;
        level(&self.connections, &mut t.connections, "connections", ratio)?;
        level(&self.disk, &mut t.disk, "disk", ratio)?;
        level(
            &self.archive_failures,
            &mut t.archive_failures,
            "archive_failures",
            count,
        )?;
        level(
            &self.failovers_24h,
            &mut t.failovers_24h,
            "failovers_24h",
            count,
        )?;
        level(
            &self.slot_retained,
            &mut t.slot_retained_bytes,
            "slot_retained",
            size,
        )?;
        if let Some(d) = self.backup_age {
            t.backup_age = d;
        }
        if let Some(d) = self.archive_age {
            t.archive_age = d;
        }
        if let Some(d) = self.maintenance_lag {
            t.maintenance_lag_seconds = d.as_secs_f64();
        }
        Ok(t)
    }
}

/// The file: its `checks:` section; everything else in it (a watch config) is not doctor's.
#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    checks: ChecksConfig,
}

/// The thresholds of `path`'s `checks:` section.
pub fn read(path: &Path) -> Result<Thresholds, String> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&raw).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn parse(raw: &str) -> Result<Thresholds, String> {
    let f: File = crate::yaml::from_str(raw)?;
    f.checks.thresholds()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_changes_only_what_it_names() {
        let t = parse("clusters: []\nchecks:\n  lag_bytes: {warn: 1MB, crit: 2MB}\n  connections: {warn: 50%}\n  backup_age: 1m\n  lag_seconds: {crit: 90s}\n").unwrap();
        assert_eq!(t.lag_bytes.warn, 1024.0 * 1024.0);
        assert_eq!(t.connections.warn, 0.5);
        assert_eq!(t.connections.crit, 0.95);
        assert_eq!(t.backup_age, Duration::from_secs(60));
        assert_eq!(t.lag_seconds.crit, 90.0);
        assert_eq!(parse("listen: x\n").unwrap(), Thresholds::default());
    }

    #[test]
    fn bad_values_name_the_key() {
        for (raw, want) in [
            ("checks:\n  lag_bytes: {warn: 5XB}\n", "checks.lag_bytes"),
            (
                "checks:\n  connections: {warn: 180%}\n",
                "checks.connections",
            ),
            (
                "checks:\n  disk: {warn: 90%, crit: 80%}\n",
                "crit is below warn",
            ),
            ("checks:\n  lagbytes: {warn: 1MB}\n", "lagbytes"),
            ("checks:\n  backup_age: soon\n", "duration"),
        ] {
            let e = parse(raw).unwrap_err();
            assert!(e.contains(want), "{raw}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
