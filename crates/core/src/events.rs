//! What happened to a cluster, as events: derived from two consecutive readings of it
//! ([`derive`]) and from what pgpatrol itself did (alerts, checks, heals, leases: built with
//! [`Event::new`] where they happen). Pure: the time is an input, so a sequence of readings
//! gives the same events every time. [`EventLog`] keeps the latest events of each cluster in
//! a bounded ring and numbers them, so a reader can ask for what came after the last one it
//! saw.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::model::{Cluster, Lag, LagKind, Member};
use crate::units::human;

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Another member leads (a failover or a switchover), with the old and the new leader.
    LeaderChanged,
    /// One member's role changed (replica → leader, replica → sync standby, …).
    RoleChanged,
    /// A member's timeline changed (it followed a promotion).
    TimelineChanged,
    MemberJoined,
    MemberLeft,
    /// A member's state changed (running → stopped, streaming → starting, …).
    StateChanged,
    Paused,
    Resumed,
    PendingRestart,
    PendingRestartCleared,
    /// A replica's lag rose to or over the tolerance.
    LagOverTolerance,
    /// ... and came back under it.
    LagUnderTolerance,
    /// No reading of the cluster could be taken.
    Unreachable,
    Reachable,
    AlertFired,
    AlertResolved,
    /// One of doctor's checks changed status.
    CheckChanged,
    HealPlanned,
    HealStarted,
    HealFinished,
    HealRefused,
    LeaseGained,
    LeaseLost,
}

impl EventKind {
    /// Every kind, for documentation and for metrics that list them all.
    pub const ALL: [EventKind; 23] = [
        EventKind::LeaderChanged,
        EventKind::RoleChanged,
        EventKind::TimelineChanged,
        EventKind::MemberJoined,
        EventKind::MemberLeft,
        EventKind::StateChanged,
        EventKind::Paused,
        EventKind::Resumed,
        EventKind::PendingRestart,
        EventKind::PendingRestartCleared,
        EventKind::LagOverTolerance,
        EventKind::LagUnderTolerance,
        EventKind::Unreachable,
        EventKind::Reachable,
        EventKind::AlertFired,
        EventKind::AlertResolved,
        EventKind::CheckChanged,
        EventKind::HealPlanned,
        EventKind::HealStarted,
        EventKind::HealFinished,
        EventKind::HealRefused,
        EventKind::LeaseGained,
        EventKind::LeaseLost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LeaderChanged => "leader_changed",
            EventKind::RoleChanged => "role_changed",
            EventKind::TimelineChanged => "timeline_changed",
            EventKind::MemberJoined => "member_joined",
            EventKind::MemberLeft => "member_left",
            EventKind::StateChanged => "state_changed",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::PendingRestart => "pending_restart",
            EventKind::PendingRestartCleared => "pending_restart_cleared",
            EventKind::LagOverTolerance => "lag_over_tolerance",
            EventKind::LagUnderTolerance => "lag_under_tolerance",
            EventKind::Unreachable => "unreachable",
            EventKind::Reachable => "reachable",
            EventKind::AlertFired => "alert_fired",
            EventKind::AlertResolved => "alert_resolved",
            EventKind::CheckChanged => "check_changed",
            EventKind::HealPlanned => "heal_planned",
            EventKind::HealStarted => "heal_started",
            EventKind::HealFinished => "heal_finished",
            EventKind::HealRefused => "heal_refused",
            EventKind::LeaseGained => "lease_gained",
            EventKind::LeaseLost => "lease_lost",
        }
    }
}

/// One thing that happened: when, where, what, from what to what, in one sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its number in the log (0 until logged): a reader asks for what came after it.
    #[serde(default)]
    pub id: u64,
    /// RFC 3339.
    pub time: String,
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    pub message: String,
}

impl Event {
    pub fn new(
        time: &str,
        cluster: &str,
        member: Option<&str>,
        kind: EventKind,
        message: impl Into<String>,
    ) -> Self {
        Event {
            id: 0,
            time: time.to_string(),
            cluster: cluster.to_string(),
            member: member.map(str::to_string),
            kind,
            before: None,
            after: None,
            message: message.into(),
        }
    }

    /// The value before and after.
    pub fn change(mut self, before: impl Into<String>, after: impl Into<String>) -> Self {
        self.before = Some(before.into());
        self.after = Some(after.into());
        self
    }
}

fn lag_text(l: Lag) -> String {
    match l {
        Lag::Bytes(b) => human(b),
        Lag::Unknown => "unknown".into(),
    }
}

/// The events between two readings of `cluster`: `before` the previous one, `now` this
/// one, both taken without error. A replica's lag (of `lag`) is an event only when it
/// crosses `tolerance` (either way), so a lag that moves under or over it stays quiet.
pub fn derive(
    cluster: &str,
    before: &Cluster,
    now: &Cluster,
    lag: LagKind,
    tolerance: u64,
    time: &str,
) -> Vec<Event> {
    let ev = |member: Option<&str>, kind, message: String| {
        Event::new(time, cluster, member, kind, message)
    };
    let mut out = Vec::new();
    let (was, is) = (before.leader(), now.leader());
    if was.map(|l| &l.name) != is.map(|l| &l.name) {
        let name = |l: Option<&Member>| l.map_or("none".to_string(), |l| l.name.clone());
        let tl = match (was.and_then(|l| l.timeline), is.and_then(|l| l.timeline)) {
            (Some(a), Some(b)) if a != b => format!(" (timeline {a} → {b})"),
            _ => String::new(),
        };
        let message = match (was, is) {
            (Some(a), Some(b)) => format!("the leader changed from {} to {}{tl}", a.name, b.name),
            (Some(a), None) => format!("the cluster lost its leader {}", a.name),
            (None, Some(b)) => format!("{} leads{tl}", b.name),
            (None, None) => unreachable!("the names differ"),
        };
        out.push(
            ev(
                is.map(|l| l.name.as_str()),
                EventKind::LeaderChanged,
                message,
            )
            .change(name(was), name(is)),
        );
    }
    if before.paused != now.paused {
        out.push(if now.paused {
            ev(
                None,
                EventKind::Paused,
                "maintenance mode on: Patroni takes no automatic action".into(),
            )
        } else {
            ev(None, EventKind::Resumed, "maintenance mode off".into())
        });
    }
    for m in &now.members {
        let n = Some(m.name.as_str());
        let Some(old) = before.member(&m.name) else {
            out.push(ev(
                n,
                EventKind::MemberJoined,
                format!(
                    "{} joined the cluster as {} ({})",
                    m.name,
                    m.role.title().to_lowercase(),
                    m.state
                ),
            ));
            continue;
        };
        if old.role != m.role {
            out.push(
                ev(
                    n,
                    EventKind::RoleChanged,
                    format!(
                        "{} is now {} (was {})",
                        m.name,
                        m.role.title().to_lowercase(),
                        old.role.title().to_lowercase()
                    ),
                )
                .change(old.role.to_string(), m.role.to_string()),
            );
        }
        if old.state != m.state {
            out.push(
                ev(
                    n,
                    EventKind::StateChanged,
                    format!("{} state: {} → {}", m.name, old.state, m.state),
                )
                .change(old.state.to_string(), m.state.to_string()),
            );
        }
        if let (Some(a), Some(b)) = (old.timeline, m.timeline) {
            if a != b {
                out.push(
                    ev(
                        n,
                        EventKind::TimelineChanged,
                        format!("{} timeline: {a} → {b}", m.name),
                    )
                    .change(a.to_string(), b.to_string()),
                );
            }
        }
        if old.pending_restart != m.pending_restart {
            out.push(if m.pending_restart {
                ev(
                    n,
                    EventKind::PendingRestart,
                    format!(
                        "{} has a pending restart (a changed parameter needs one)",
                        m.name
                    ),
                )
            } else {
                ev(
                    n,
                    EventKind::PendingRestartCleared,
                    format!("{}'s pending restart is cleared", m.name),
                )
            });
        }
        // Only a replica before and after: a role change is its own event.
        if let (Some(w), Some(i)) = (old.lag(lag), m.lag(lag)) {
            let (was_over, is_over) = (w.breaches(tolerance), i.breaches(tolerance));
            if was_over != is_over {
                let (kind, how) = if is_over {
                    (EventKind::LagOverTolerance, "at or over")
                } else {
                    (EventKind::LagUnderTolerance, "back under")
                };
                out.push(
                    ev(
                        n,
                        kind,
                        format!(
                            "{} {} lag {} → {}: {how} the {} tolerance",
                            m.name,
                            lag.as_str(),
                            lag_text(w),
                            lag_text(i),
                            human(tolerance)
                        ),
                    )
                    .change(lag_text(w), lag_text(i)),
                );
            }
        }
    }
    for old in &before.members {
        if now.member(&old.name).is_none() {
            out.push(ev(
                Some(&old.name),
                EventKind::MemberLeft,
                format!("{} left the cluster", old.name),
            ));
        }
    }
    out
}

/// The latest events of every cluster: a bounded ring each, numbered in one sequence.
#[derive(Debug, Clone)]
pub struct EventLog {
    per_cluster: BTreeMap<String, VecDeque<Event>>,
    keep: usize,
    last_id: u64,
}

impl EventLog {
    /// Keeps the newest `keep` events of each cluster.
    pub fn new(keep: usize) -> Self {
        EventLog {
            per_cluster: BTreeMap::new(),
            keep: keep.max(1),
            last_id: 0,
        }
    }

    /// Numbers `e` and keeps it (dropping its cluster's oldest past the bound).
    pub fn push(&mut self, mut e: Event) -> Event {
        self.last_id += 1;
        e.id = self.last_id;
        let ring = self.per_cluster.entry(e.cluster.clone()).or_default();
        ring.push_back(e.clone());
        while ring.len() > self.keep {
            ring.pop_front();
        }
        e
    }

    /// The number of the newest event (0 when none).
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// Events after `since` (an id), of `cluster` or all, oldest first, at most `limit`
    /// (the newest ones).
    pub fn query(&self, cluster: Option<&str>, since: u64, limit: usize) -> Vec<Event> {
        let mut out: Vec<Event> = self
            .per_cluster
            .iter()
            .filter(|(c, _)| cluster.is_none_or(|want| want == c.as_str()))
            .flat_map(|(_, ring)| ring.iter().filter(|e| e.id > since).cloned())
            .collect();
        out.sort_by_key(|e| e.id);
        let skip = out.len().saturating_sub(limit);
        out.split_off(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;
    use crate::model::State;

    const MB: u64 = 1024 * 1024;
    const T: &str = "2026-12-06T03:00:00Z";

    fn kinds(es: &[Event]) -> Vec<EventKind> {
        es.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn a_failover_is_a_leader_change_with_both_names_and_the_timeline() {
        let before = ClusterBuilder::new()
            .leader("pg0")
            .timeline(1)
            .replica("pg1")
            .timeline(1)
            .build();
        let after = ClusterBuilder::new()
            .replica("pg0")
            .state(State::Stopped)
            .timeline(1)
            .leader("pg1")
            .timeline(2)
            .build();
        let es = derive("demo", &before, &after, LagKind::Replay, 5 * MB, T);
        assert_eq!(es[0].kind, EventKind::LeaderChanged);
        assert_eq!(es[0].before.as_deref(), Some("pg0"));
        assert_eq!(es[0].after.as_deref(), Some("pg1"));
        assert_eq!(
            es[0].message,
            "the leader changed from pg0 to pg1 (timeline 1 → 2)"
        );
        assert!(kinds(&es).contains(&EventKind::RoleChanged));
        assert!(kinds(&es).contains(&EventKind::StateChanged));
        assert!(kinds(&es).contains(&EventKind::TimelineChanged));
        assert!(es.iter().all(|e| e.cluster == "demo" && e.time == T));
    }

    #[test]
    fn lag_is_an_event_only_when_it_crosses_the_tolerance() {
        let at = |mb| {
            ClusterBuilder::new()
                .leader("pg0")
                .replica("pg1")
                .lag_mb(mb)
                .build()
        };
        assert!(derive("demo", &at(1), &at(3), LagKind::Replay, 5 * MB, T).is_empty());
        let up = derive("demo", &at(3), &at(40), LagKind::Replay, 5 * MB, T);
        assert_eq!(kinds(&up), vec![EventKind::LagOverTolerance]);
        assert_eq!(up[0].member.as_deref(), Some("pg1"));
        assert!(up[0].message.contains("at or over"), "{}", up[0].message);
        assert!(derive("demo", &at(40), &at(60), LagKind::Replay, 5 * MB, T).is_empty());
        let down = derive("demo", &at(60), &at(0), LagKind::Replay, 5 * MB, T);
        assert_eq!(kinds(&down), vec![EventKind::LagUnderTolerance]);
    }

    #[test]
    fn members_pause_and_pending_restarts() {
        let two = ClusterBuilder::new().leader("pg0").replica("pg1").build();
        let mut three = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replica("pg2")
            .paused()
            .build();
        three.members[1].pending_restart = true;
        let es = derive("demo", &two, &three, LagKind::Replay, 5 * MB, T);
        assert_eq!(
            kinds(&es),
            vec![
                EventKind::Paused,
                EventKind::PendingRestart,
                EventKind::MemberJoined
            ]
        );
        let back = derive("demo", &three, &two, LagKind::Replay, 5 * MB, T);
        assert_eq!(
            kinds(&back),
            vec![
                EventKind::Resumed,
                EventKind::PendingRestartCleared,
                EventKind::MemberLeft
            ]
        );
        assert!(derive("demo", &two, &two, LagKind::Replay, 5 * MB, T).is_empty());
    }

    #[test]
    fn the_log_numbers_bounds_and_filters() {
        let mut log = EventLog::new(2);
        for (c, m) in [("a", "one"), ("b", "two"), ("a", "three"), ("a", "four")] {
            log.push(Event::new(T, c, None, EventKind::Paused, m));
        }
        assert_eq!(log.last_id(), 4);
        let all: Vec<String> = log
            .query(None, 0, 100)
            .into_iter()
            .map(|e| e.message)
            .collect();
        // a's ring keeps its newest two.
        assert_eq!(all, vec!["two", "three", "four"]);
        let a_after_3: Vec<u64> = log.query(Some("a"), 3, 100).iter().map(|e| e.id).collect();
        assert_eq!(a_after_3, vec![4]);
        assert_eq!(log.query(None, 0, 1)[0].message, "four");
    }
}
