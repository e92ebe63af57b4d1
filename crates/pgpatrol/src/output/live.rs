//! `list --watch`: what changed from one reading of a cluster to the next, and one screen
//! of output. The clock is an input (`observe` takes the reading's time), so a sequence of
//! readings renders the same way every time.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::time::{Duration, SystemTime};

use pgpatrol_core::{Cluster, Lag, LagKind, Member, Unit};

use super::table::{self, Changed, Col, Emphasis, Severity};
use super::term::Look;

/// How many change lines stay under the table.
const EVENTS_KEPT: usize = 6;

/// How long a change stays marked: at least 10 s and at least 3 refreshes, so a change is
/// seen even at a glance.
pub fn hold_for(interval: Duration) -> u64 {
    let ticks = Duration::from_secs(10).as_secs_f64() / interval.as_secs_f64().max(0.001);
    (ticks.ceil() as u64).max(3)
}

/// The changes between readings, and the last good reading.
#[derive(Debug)]
pub struct Tracker {
    tolerance: u64,
    hold: u64,
    tick: u64,
    last: Option<Cluster>,
    /// The error of the latest reading, when it failed.
    error: Option<String>,
    /// When the last good reading was taken.
    last_ok: Option<SystemTime>,
    /// (member, cell) → the refresh it changed at.
    marks: BTreeMap<(String, Col), u64>,
    events: VecDeque<String>,
}

fn clock(at: SystemTime) -> String {
    let full = humantime::format_rfc3339_seconds(at).to_string();
    full.split_once('T')
        .map_or(full.clone(), |(_, t)| t.to_string())
}

fn lag_text(lag: Option<Lag>) -> String {
    match lag {
        Some(Lag::Bytes(b)) => format!("{} MB", Unit::MB.round(b)),
        Some(Lag::Unknown) => "unknown".into(),
        None => "none".into(),
    }
}

impl Tracker {
    /// `tolerance` in bytes: a lag crossing it (either way) is a change. `hold`: refreshes a
    /// change stays marked (see [`hold_for`]).
    pub fn new(tolerance: u64, hold: u64) -> Tracker {
        Tracker {
            tolerance,
            hold: hold.max(1),
            tick: 0,
            last: None,
            error: None,
            last_ok: None,
            marks: BTreeMap::new(),
            events: VecDeque::new(),
        }
    }

    fn event(&mut self, at: SystemTime, text: String) {
        self.events.push_back(format!("{}  {text}", clock(at)));
        while self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
    }

    fn mark(&mut self, member: &str, col: Col) {
        self.marks.insert((member.to_string(), col), self.tick);
    }

    /// Records one reading taken at `at`: the cluster, or why it could not be read.
    pub fn observe(&mut self, reading: Result<Cluster, String>, at: SystemTime) {
        self.tick += 1;
        match reading {
            Err(e) => {
                if self.error.is_none() {
                    self.event(at, format!("cluster unreachable: {e}"));
                }
                self.error = Some(e);
            }
            Ok(cluster) => {
                if self.error.take().is_some() {
                    self.event(at, "cluster reachable again".into());
                }
                if let Some(before) = self.last.take() {
                    self.compare(&before, &cluster, at);
                }
                self.last = Some(cluster);
                self.last_ok = Some(at);
            }
        }
        let (tick, hold) = (self.tick, self.hold);
        self.marks.retain(|_, t| tick - *t < hold);
    }

    fn compare(&mut self, before: &Cluster, now: &Cluster, at: SystemTime) {
        for m in &now.members {
            let Some(old) = before.member(&m.name) else {
                self.mark(&m.name, Col::Member);
                self.event(at, format!("{} joined the cluster", m.name));
                continue;
            };
            if old.role != m.role {
                self.mark(&m.name, Col::Role);
                self.event(
                    at,
                    format!(
                        "{} role: {} -> {}",
                        m.name,
                        old.role.title(),
                        m.role.title()
                    ),
                );
            }
            if old.state != m.state {
                self.mark(&m.name, Col::State);
                self.event(
                    at,
                    format!("{} state: {} -> {}", m.name, old.state, m.state),
                );
            }
            if old.timeline != m.timeline {
                self.mark(&m.name, Col::Timeline);
                let tl = |t: Option<u64>| t.map_or("none".to_string(), |t| t.to_string());
                self.event(
                    at,
                    format!(
                        "{} timeline: {} -> {}",
                        m.name,
                        tl(old.timeline),
                        tl(m.timeline)
                    ),
                );
            }
            for (kind, col, what) in [
                (LagKind::Replay, Col::ReplayLag, "replay lag"),
                (LagKind::Receive, Col::ReceiveLag, "receive lag"),
            ] {
                self.lag_crossing(old, m, kind, col, what, at);
            }
        }
        for old in &before.members {
            if now.member(&old.name).is_none() {
                self.event(at, format!("{} left the cluster", old.name));
            }
        }
    }

    fn lag_crossing(
        &mut self,
        old: &Member,
        now: &Member,
        kind: LagKind,
        col: Col,
        what: &str,
        at: SystemTime,
    ) {
        // Only a replica before and after: a role change is its own event.
        let (Some(was), Some(is)) = (old.lag(kind), now.lag(kind)) else {
            return;
        };
        let (was_over, is_over) = (was.breaches(self.tolerance), is.breaches(self.tolerance));
        if was_over == is_over {
            return;
        }
        self.mark(&now.name, col);
        let tol = Unit::MB.round(self.tolerance);
        let how = if is_over {
            format!("at or over the {tol} MB tolerance")
        } else {
            format!("under the {tol} MB tolerance again")
        };
        self.event(
            at,
            format!(
                "{} {what}: {} -> {}, {how}",
                now.name,
                lag_text(Some(was)),
                lag_text(Some(is))
            ),
        );
    }

    /// The cells changed within the hold.
    pub fn changed(&self) -> Changed {
        let mut c = Changed::new();
        for (member, col) in self.marks.keys() {
            c.entry(member.clone()).or_default().insert(*col);
        }
        c
    }

    /// One screen: `header`, then the table (or the error in its place), then the changes.
    pub fn render(&self, out: &mut impl Write, look: &Look, header: &str) -> std::io::Result<()> {
        writeln!(out, "{header}")?;
        match (&self.error, &self.last) {
            (Some(e), _) => {
                writeln!(
                    out,
                    "{}",
                    table::paint(look, Severity::Alarm, &format!("error: {e}"))
                )?;
                if let Some(t) = self.last_ok {
                    writeln!(out, " last read at {}", clock(t))?;
                }
            }
            (None, Some(cluster)) => {
                let emphasis = Emphasis {
                    look: *look,
                    tolerance: Some(self.tolerance),
                    changed: Some(self.changed()),
                };
                table::list(out, cluster, &emphasis)?;
            }
            (None, None) => writeln!(out, "reading the cluster...")?,
        }
        if !self.events.is_empty() {
            writeln!(out)?;
            writeln!(out, "{}", table::bold(look, "Changes (UTC):"))?;
            for e in &self.events {
                writeln!(out, " {e}")?;
            }
        }
        Ok(())
    }
}

/// Writes one screen. On a terminal it redraws in place: cursor home, each line cleared to
/// its end, the rest of the screen cleared (the first screen clears everything first).
/// Elsewhere (a pipe, a file) screens follow one another, separated by a blank line, with
/// no control codes.
pub fn write_frame(
    out: &mut impl Write,
    frame: &[u8],
    terminal: bool,
    first: bool,
) -> std::io::Result<()> {
    if terminal {
        if first {
            out.write_all(b"\x1b[2J")?;
        }
        out.write_all(b"\x1b[H")?;
        for line in frame.split_inclusive(|b| *b == b'\n') {
            match line.strip_suffix(b"\n") {
                Some(body) => {
                    out.write_all(body)?;
                    out.write_all(b"\x1b[K\n")?;
                }
                None => {
                    out.write_all(line)?;
                    out.write_all(b"\x1b[K")?;
                }
            }
        }
        out.write_all(b"\x1b[J")?;
    } else {
        out.write_all(frame)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgpatrol_core::fixtures::ClusterBuilder;

    const MB: u64 = 1 << 20;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + s)
    }

    fn screen(t: &Tracker) -> String {
        let mut buf = Vec::new();
        t.render(&mut buf, &Look::plain(), "header").unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn row<'a>(s: &'a str, member: &str) -> &'a str {
        s.lines()
            .find(|l| l.contains(&format!(" {member} ")))
            .unwrap_or_else(|| panic!("no row for {member} in\n{s}"))
    }

    #[test]
    fn a_failover_marks_the_new_leader_and_says_what_changed() {
        let mut t = Tracker::new(5 * MB, 3);
        t.observe(
            Ok(ClusterBuilder::new().leader("pg0").replica("pg1").build()),
            at(0),
        );
        assert!(
            t.changed().is_empty(),
            "nothing changed on the first reading"
        );
        assert!(
            row(&screen(&t), "pg1").starts_with("|   |"),
            "{}",
            screen(&t)
        );
        t.observe(Ok(ClusterBuilder::new().leader("pg1").build()), at(1));
        let s = screen(&t);
        assert!(row(&s, "pg1").starts_with("| * |"), "{s}");
        assert!(s.contains("00:00:01Z  pg1 role: Replica -> Leader"), "{s}");
        assert!(s.contains("pg0 left the cluster"), "{s}");
        // The mark holds for 3 refreshes, the change line stays.
        t.observe(Ok(ClusterBuilder::new().leader("pg1").build()), at(2));
        t.observe(Ok(ClusterBuilder::new().leader("pg1").build()), at(3));
        assert!(row(&screen(&t), "pg1").starts_with("| * |"));
        t.observe(Ok(ClusterBuilder::new().leader("pg1").build()), at(4));
        let s = screen(&t);
        assert!(row(&s, "pg1").starts_with("|   |"), "{s}");
        assert!(s.contains("pg1 role: Replica -> Leader"), "{s}");
    }

    #[test]
    fn lag_is_a_change_only_when_it_crosses_the_tolerance() {
        let mut t = Tracker::new(5 * MB, 3);
        let lag = |mb: u64| {
            ClusterBuilder::new()
                .leader("pg0")
                .replica("pg1")
                .replay_lag_mb(mb)
                .build()
        };
        t.observe(Ok(lag(0)), at(0));
        t.observe(Ok(lag(3)), at(1));
        assert!(t.changed().is_empty(), "3 MB is under 5 MB");
        t.observe(Ok(lag(82)), at(2));
        assert!(t.changed()["pg1"].contains(&Col::ReplayLag));
        let s = screen(&t);
        assert!(
            s.contains("pg1 replay lag: 3 MB -> 82 MB, at or over the 5 MB tolerance"),
            "{s}"
        );
        t.observe(Ok(lag(0)), at(3));
        assert!(screen(&t).contains("under the 5 MB tolerance again"));
    }

    #[test]
    fn an_unreachable_cluster_shows_the_error_and_comes_back() {
        let mut t = Tracker::new(5 * MB, 3);
        t.observe(
            Ok(ClusterBuilder::new().leader("pg0").replica("pg1").build()),
            at(0),
        );
        t.observe(Err("no member answered: connection refused".into()), at(1));
        t.observe(Err("no member answered: connection refused".into()), at(2));
        let s = screen(&t);
        assert!(
            s.contains("error: no member answered: connection refused"),
            "{s}"
        );
        assert!(!s.contains("| pg0"), "no table while unreachable: {s}");
        assert!(s.contains("last read at 00:00:00Z"), "{s}");
        assert_eq!(
            s.matches("cluster unreachable").count(),
            1,
            "said once: {s}"
        );
        // Back, with a new leader: compared with the reading before the outage.
        t.observe(
            Ok(ClusterBuilder::new().leader("pg1").replica("pg0").build()),
            at(3),
        );
        let s = screen(&t);
        assert!(s.contains("cluster reachable again"), "{s}");
        assert!(s.contains("pg1 role: Replica -> Leader"), "{s}");
        assert!(row(&s, "pg1").starts_with("| * |"), "{s}");
    }

    #[test]
    fn a_joining_member_is_marked() {
        let mut t = Tracker::new(5 * MB, 3);
        t.observe(Ok(ClusterBuilder::new().leader("pg0").build()), at(0));
        t.observe(
            Ok(ClusterBuilder::new().leader("pg0").replica("pg2").build()),
            at(1),
        );
        let s = screen(&t);
        assert!(row(&s, "pg2").starts_with("| * |"), "{s}");
        assert!(s.contains("pg2 joined the cluster"), "{s}");
    }

    #[test]
    fn frames_redraw_in_place_only_on_a_terminal() {
        let frame = b"one\ntwo\n";
        let mut tty = Vec::new();
        write_frame(&mut tty, frame, true, true).unwrap();
        assert_eq!(tty, b"\x1b[2J\x1b[Hone\x1b[K\ntwo\x1b[K\n\x1b[J");
        let mut pipe = Vec::new();
        write_frame(&mut pipe, frame, false, true).unwrap();
        assert_eq!(pipe, b"one\ntwo\n\n");
    }

    #[test]
    fn a_change_holds_at_least_ten_seconds_and_three_refreshes() {
        assert_eq!(hold_for(Duration::from_secs(1)), 10);
        assert_eq!(hold_for(Duration::from_secs(2)), 5);
        assert_eq!(hold_for(Duration::from_secs(30)), 3);
        assert_eq!(hold_for(Duration::from_millis(500)), 20);
    }
}
