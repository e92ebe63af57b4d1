//! Time as Patroni writes it, parsed by jiff: input-derived strings are never sliced by
//! hand here, so no timestamp can panic the caller.

use std::time::SystemTime;

/// An ISO 8601 instant with its offset, as in Patroni's `/history`
/// (`2026-11-22T03:46:12.910825+00:00`, `2026-11-22T05:46:12+02:00`, `...Z`; a space for
/// the `T` too, as in `/patroni`'s `postmaster_start_time`). A timestamp without an offset
/// names no instant (it is some server's local time), so it is `None`, like any other text.
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    s.trim()
        .parse::<jiff::Timestamp>()
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn history_timestamps_with_offsets() {
        let a = parse_iso8601("2026-11-22T03:46:12.910825+00:00").unwrap();
        let b = parse_iso8601("2026-11-22T05:46:12.910825+02:00").unwrap();
        let c = parse_iso8601("2026-11-22T03:46:12Z").unwrap();
        let d = parse_iso8601("2026-11-22 01:46:12-02:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c + Duration::from_micros(910_825));
        assert_eq!(c, d);
        assert_eq!(
            c.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_795_319_172
        );
        assert!(parse_iso8601("2026-11-22T03:46:12.910825").is_none());
        assert!(parse_iso8601("yesterday").is_none());
        assert!(parse_iso8601("").is_none());
    }

    #[test]
    fn every_capture_s_history_timestamp_parses() {
        for v in crate::test_support::captured_versions() {
            let raw = crate::test_support::capture(&format!("{v}/history.json"));
            let lines: Vec<Vec<serde_json::Value>> = serde_json::from_str(&raw).unwrap();
            for l in lines {
                let ts = l[3].as_str().unwrap();
                assert!(parse_iso8601(ts).is_some(), "{v}: {ts}");
            }
        }
    }

    /// Regression: the hand-written parser sliced the offset by byte position, so a
    /// multi-byte character where the offset begins panicked, and killed that cluster's
    /// poller in `watch`.
    #[test]
    fn a_multi_byte_character_in_the_offset_is_none_not_a_panic() {
        for s in [
            "2024-05-02T10:11:12+0é",
            "2024-05-02T10:11:12.5+€",
            "2024-05-02T10:11:12.5é00:00",
            "2024-05-02T10:11:12.5-é",
            "2024-05-02T10:11:12é",
            "é",
        ] {
            assert_eq!(parse_iso8601(s), None, "{s}");
        }
    }
}
