//! PostgreSQL WAL positions: `"0/4000060"` ↔ a byte offset from `0/0`.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A WAL position, as bytes from `0/0` (what `pg_wal_lsn_diff(lsn, '0/0')` returns).
/// Serialized as PostgreSQL writes it (`"0/4000060"`), like Patroni's `/cluster`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Lsn {
    /// Bytes from `other` forward to `self`, or 0 when `other` is ahead (as Patroni clamps).
    pub fn bytes_after(self, other: Lsn) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsnParseError(pub String);

impl fmt::Display for LsnParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an LSN (expected two hex numbers like \"0/4000060\")",
            self.0
        )
    }
}

impl std::error::Error for LsnParseError {}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError(s.to_string());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let valid =
            |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid(hi) || !valid(lo) {
            return Err(err());
        }
        let hi = u64::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((hi << 32) | lo))
    }
}

/// The WAL position just past the segment a WAL file name (`000000010000000A0000003F`,
/// or the same with `.partial`) holds, for segments of `segment_size` bytes. A backup
/// history file (`000000010000000000000002.000000D8.backup`) stands for the segment its
/// backup started in, which the archiver sends before it (it archives the lowest name
/// first). `None` for a name that is not a segment (a `.history` file) or a size that is not
/// a power of two of at least 1 MB, as PostgreSQL requires.
pub fn wal_segment_end(name: &str, segment_size: u64) -> Option<Lsn> {
    let name = match name.strip_suffix(".backup") {
        Some(backup) => {
            backup
                .split_once('.')
                .filter(|(_, offset)| offset.len() == 8)?
                .0
        }
        None => name.strip_suffix(".partial").unwrap_or(name),
    };
    wal_segment_no(name, segment_size)?
        .checked_add(1)?
        .checked_mul(segment_size)
        .map(Lsn)
}

/// The segment number a WAL file name (24 hex digits: timeline, log, segment) stands for,
/// counted from `0/0` in segments of `segment_size` bytes; `None` for any other name.
pub fn wal_segment_no(name: &str, segment_size: u64) -> Option<u64> {
    if name.len() != 24
        || !name.bytes().all(|b| b.is_ascii_hexdigit())
        || !segment_size.is_power_of_two()
        || !(1024 * 1024..=1 << 32).contains(&segment_size)
    {
        return None;
    }
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
    let per_log = (1u64 << 32) / segment_size;
    if seg >= per_log {
        return None;
    }
    log.checked_mul(per_log)?.checked_add(seg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_end_of_a_wal_segment() {
        let mb16 = 16 * 1024 * 1024;
        // 000000010000000000000003 holds 0/3000000 .. 0/4000000.
        assert_eq!(
            wal_segment_end("000000010000000000000003", mb16),
            Some("0/4000000".parse().unwrap())
        );
        assert_eq!(
            wal_segment_end("0000000200000001000000FF", mb16),
            Some("2/0".parse().unwrap())
        );
        assert_eq!(
            wal_segment_end("000000010000000000000003.partial", mb16),
            Some("0/4000000".parse().unwrap())
        );
        // A backup history file: the segment its backup started in.
        assert_eq!(
            wal_segment_end("000000010000000000000002.000000D8.backup", mb16),
            Some("0/3000000".parse().unwrap())
        );
        for bad in [
            "00000002.history",
            "000000010000000000000003.28.backup",
            "",
            "x",
        ] {
            assert_eq!(wal_segment_end(bad, mb16), None, "{bad}");
        }
        // Segment 0x100 does not exist with 16 MB segments (256 per log file).
        assert_eq!(wal_segment_end("000000010000000000000100", mb16), None);
        assert_eq!(wal_segment_end("000000010000000000000003", 1000), None);
    }

    #[test]
    fn parses_patroni_examples() {
        assert_eq!("0/4000060".parse::<Lsn>().unwrap(), Lsn(0x4000060));
        assert_eq!("0/EE523E8".parse::<Lsn>().unwrap(), Lsn(0xEE5_23E8));
        assert_eq!("1/0".parse::<Lsn>().unwrap(), Lsn(1 << 32));
        assert_eq!(Lsn(0x15C89FE8).to_string(), "0/15C89FE8");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "unknown",
            "0",
            "/1",
            "1/",
            "0/G",
            "123456789/0",
            "0/0/0",
            " 0/1",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn lag_clamps_at_zero() {
        assert_eq!(Lsn(100).bytes_after(Lsn(40)), 60);
        assert_eq!(Lsn(40).bytes_after(Lsn(100)), 0);
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(n in any::<u64>()) {
            let lsn = Lsn(n);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
        }

        #[test]
        fn lowercase_hex_parses_too(n in any::<u64>()) {
            let s = Lsn(n).to_string().to_lowercase();
            prop_assert_eq!(s.parse::<Lsn>().unwrap(), Lsn(n));
        }
    }
}
