//! Byte sizes as operators write them: `LAG_TOLERANCE=5` (a bare number is MB, as in the
//! seed), `512kB`, `5MB`, `1GB`, `100B`. 1024-based, like patronictl and PostgreSQL.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A unit for showing or reading byte counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    #[serde(rename = "B")]
    B,
    #[serde(rename = "kB")]
    KB,
    #[serde(rename = "MB")]
    MB,
    #[serde(rename = "GB")]
    GB,
}

impl Unit {
    pub const ALL: [Unit; 4] = [Unit::B, Unit::KB, Unit::MB, Unit::GB];

    pub fn bytes(self) -> u64 {
        match self {
            Unit::B => 1,
            Unit::KB => 1024,
            Unit::MB => 1024 * 1024,
            Unit::GB => 1024 * 1024 * 1024,
        }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Unit::B => "B",
            Unit::KB => "kB",
            Unit::MB => "MB",
            Unit::GB => "GB",
        }
    }

    /// `bytes` in this unit, rounded the way patronictl rounds (Python's `round()`: half to even).
    pub fn round(self, bytes: u64) -> u64 {
        let d = self.bytes();
        let (q, r) = (bytes / d, bytes % d);
        let twice = r * 2;
        if twice > d || (twice == d && !q.is_multiple_of(2)) {
            q + 1
        } else {
            q
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

impl FromStr for Unit {
    type Err = SizeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Unit::ALL
            .into_iter()
            .find(|u| u.suffix() == s)
            .ok_or_else(|| SizeParseError(s.to_string()))
    }
}

/// A number of bytes, parsed from an operator's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

/// Why a string is not a size or a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeParseError(pub String);

impl fmt::Display for SizeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a size: write a number with an optional unit B, kB, MB or GB \
             (a bare number is MB), e.g. 5, 512kB, 1GB",
            self.0
        )
    }
}

impl std::error::Error for SizeParseError {}

impl FromStr for ByteSize {
    type Err = SizeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || SizeParseError(s.to_string());
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = (&t[..split], t[split..].trim());
        let unit = if unit.is_empty() {
            Unit::MB
        } else {
            unit.parse().map_err(|_| err())?
        };
        if num.is_empty()
            || num.starts_with('.')
            || num.ends_with('.')
            || num.matches('.').count() > 1
        {
            return Err(err());
        }
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: u64 = int.parse().map_err(|_| err())?;
        let mut bytes = int.checked_mul(unit.bytes()).ok_or_else(err)?;
        if !frac.is_empty() {
            // Decimal fractions such as 1.5GB: exact up to the byte (truncated).
            let digits = frac.len().min(12) as u32;
            let f: u64 = frac[..digits as usize].parse().map_err(|_| err())?;
            let extra = (u128::from(f) * u128::from(unit.bytes())) / 10u128.pow(digits);
            bytes = bytes.checked_add(extra as u64).ok_or_else(err)?;
        }
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that shows the value exactly, e.g. `5MB`, `1536kB`, `100B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = [Unit::GB, Unit::MB, Unit::KB]
            .into_iter()
            .find(|u| self.0 != 0 && self.0.is_multiple_of(u.bytes()))
            .unwrap_or(Unit::B);
        write!(f, "{}{}", self.0 / unit.bytes(), unit.suffix())
    }
}

/// `bytes` as a short human figure: `0 B`, `12.3 MB`, `1.5 GB`.
pub fn human(bytes: u64) -> String {
    let unit = [Unit::GB, Unit::MB, Unit::KB]
        .into_iter()
        .find(|u| bytes >= u.bytes())
        .unwrap_or(Unit::B);
    if unit == Unit::B {
        format!("{bytes} B")
    } else {
        format!(
            "{:.1} {}",
            bytes as f64 / unit.bytes() as f64,
            unit.suffix()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bare_number_is_megabytes_as_in_the_seed() {
        assert_eq!("5".parse::<ByteSize>().unwrap(), ByteSize(5 * 1024 * 1024));
    }

    #[test]
    fn units_are_1024_based_and_case_sensitive() {
        assert_eq!("512kB".parse::<ByteSize>().unwrap(), ByteSize(512 * 1024));
        assert_eq!("1GB".parse::<ByteSize>().unwrap(), ByteSize(1 << 30));
        assert_eq!("100B".parse::<ByteSize>().unwrap(), ByteSize(100));
        assert_eq!("1.5GB".parse::<ByteSize>().unwrap(), ByteSize(3 << 29));
        assert_eq!(" 7 MB ".parse::<ByteSize>().unwrap(), ByteSize(7 << 20));
        for bad in [
            "",
            "MB",
            "5mb",
            "5 TB",
            "-1",
            "1.2.3MB",
            "five",
            ".5",
            "5.",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn rounds_half_to_even_like_python() {
        let mb = 1024 * 1024;
        assert_eq!(Unit::MB.round(0), 0);
        assert_eq!(Unit::MB.round(mb / 2), 0); // round(0.5) == 0
        assert_eq!(Unit::MB.round(mb + mb / 2), 2); // round(1.5) == 2
        assert_eq!(Unit::MB.round(2 * mb + mb / 2), 2); // round(2.5) == 2
        assert_eq!(Unit::MB.round(115_571_712), 110); // the 4.1.5 capture
        assert_eq!(Unit::MB.round(7 * mb + 1), 7);
    }

    #[test]
    fn human_figures() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(115_571_712), "110.2 MB");
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(n in any::<u32>(), u in 0usize..4) {
            let size = ByteSize(u64::from(n) * Unit::ALL[u].bytes());
            prop_assert_eq!(size.to_string().parse::<ByteSize>().unwrap(), size);
        }

        #[test]
        fn every_unit_round_trips(n in 0u64..1_000_000, u in 0usize..4) {
            let unit = Unit::ALL[u];
            let parsed: ByteSize = format!("{n}{unit}").parse().unwrap();
            prop_assert_eq!(parsed.0, n * unit.bytes());
            prop_assert_eq!(unit.round(parsed.0), n);
        }
    }
}
