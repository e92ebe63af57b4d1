//! Who can take over from the leader, and why not: the pre-flight of a switchover or a
//! failover. Patroni's API checks none of this before accepting a switchover (the leader
//! checks lag and timeline later, and answers only `Switchover failed`); pgpatrol checks it
//! first and says which rule each member fails.
//!
//! The rules are Patroni's (`ha.py` `is_failover_possible`, `tags.py`):
//! - not the leader; replicating (`running`, `streaming`, `in archive recovery`);
//! - no `nofailover` tag and no `failover_priority` ≤ 0;
//! - WAL position within `maximum_lag_on_failover` of the leader's (Patroni compares the
//!   larger of received and replayed, which is the receive lag); unknown lag never passes;
//! - not on an older timeline than the leader;
//! - for a switchover in `synchronous_mode` (not quorum): a synchronous standby.

use serde::Serialize;
use serde_json::Value;

use crate::model::{Cluster, Lag, LagKind, Member, Role};

/// The dynamic-configuration settings a takeover depends on (`GET /config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TakeoverSettings {
    /// Bytes; Patroni's default is 1 MiB.
    pub maximum_lag_on_failover: u64,
    /// `synchronous_mode: true` (or `on`): a switchover goes to a synchronous standby.
    pub synchronous_mode: bool,
    /// `synchronous_mode: quorum` (4.0+).
    pub quorum: bool,
}

impl Default for TakeoverSettings {
    fn default() -> Self {
        TakeoverSettings {
            maximum_lag_on_failover: 1024 * 1024,
            synchronous_mode: false,
            quorum: false,
        }
    }
}

impl TakeoverSettings {
    /// From the dynamic configuration; missing or odd values take Patroni's defaults.
    pub fn from_config(config: &Value) -> Self {
        let max_lag = maximum_lag_on_failover(config)
            .unwrap_or(TakeoverSettings::default().maximum_lag_on_failover);
        let (synchronous_mode, quorum) = synchronous_mode(config);
        TakeoverSettings {
            maximum_lag_on_failover: max_lag,
            synchronous_mode,
            quorum,
        }
    }
}

/// Patroni's `parse_bool` of a configuration value: `str(value).lower()` is `on`, `true`,
/// `yes`, `1` (true) or `off`, `false`, `no`, `0` (false); anything else is neither.
pub fn patroni_bool(v: Option<&Value>) -> Option<bool> {
    let text = match v? {
        Value::Bool(b) => return Some(*b),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.to_lowercase(),
        _ => return None,
    };
    match text.as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// A flag of the dynamic configuration as Patroni's `check_mode` reads it (`pause`,
/// `synchronous_mode_strict`, `failsafe_mode`): true only for a true `parse_bool`.
pub fn config_flag(config: &Value, key: &str) -> bool {
    patroni_bool(config.get(key)) == Some(true)
}

/// `maximum_lag_on_failover` of the dynamic configuration, a number or a numeric string (as
/// Patroni's `parse_int`); `None` when missing or not a number.
pub fn maximum_lag_on_failover(config: &Value) -> Option<u64> {
    match config.get("maximum_lag_on_failover")? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Synchronous mode and quorum commit as Patroni reads `synchronous_mode`: quorum when it is
/// exactly `quorum`; synchronous when quorum or a true `parse_bool`. The one reading, for
/// the takeover rule, doctor and the DCS source alike.
pub fn synchronous_mode(config: &Value) -> (bool, bool) {
    synchronous_mode_of(config.get("synchronous_mode"))
}

/// [`synchronous_mode`] of the value of `synchronous_mode` itself (`None` when it is not set).
pub fn synchronous_mode_of(v: Option<&Value>) -> (bool, bool) {
    let quorum = v.and_then(Value::as_str) == Some("quorum");
    (quorum || patroni_bool(v) == Some(true), quorum)
}

/// Switchover (a running leader hands over) or failover (the leader is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Takeover {
    Switchover,
    Failover,
}

impl Takeover {
    /// Patroni's word for it, also its endpoint (`/switchover`, `/failover`).
    pub fn as_str(self) -> &'static str {
        match self {
            Takeover::Switchover => "switchover",
            Takeover::Failover => "failover",
        }
    }
}

impl std::fmt::Display for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member as a possible new leader.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub name: String,
    pub role: Role,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u64>,
    /// Receive lag against the leader, as Patroni's lag rule measures it.
    pub lag: Lag,
    pub synchronous: bool,
    /// `failover_priority` tag (Patroni's default 1).
    pub priority: i64,
    pub eligible: bool,
    /// Why not, when not eligible (every rule it fails).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// The `failover_priority` tag as Patroni reads it (default 1; `nofailover` means 0).
pub fn failover_priority(m: &Member) -> i64 {
    if m.tag_is_true("nofailover") {
        return 0;
    }
    match m.tags.get("failover_priority") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(1),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(1),
        _ => 1,
    }
}

/// Every member but the leader, each judged against the rules above, best first:
/// eligible before not, synchronous before asynchronous (when the mode is synchronous),
/// then least lag, then higher `failover_priority`, then name.
pub fn candidates(
    cluster: &Cluster,
    settings: &TakeoverSettings,
    kind: Takeover,
) -> Vec<Candidate> {
    let leader_tl = cluster.leader().and_then(|l| l.timeline);
    let mut out: Vec<Candidate> = cluster
        .members
        .iter()
        .filter(|m| !m.role.is_leader())
        .map(|m| judge(m, leader_tl, settings, kind))
        .collect();
    out.sort_by(|a, b| {
        (!a.eligible, settings.synchronous_mode && !a.synchronous)
            .cmp(&(!b.eligible, settings.synchronous_mode && !b.synchronous))
            .then(a.lag.severity().cmp(&b.lag.severity()))
            .then(b.priority.cmp(&a.priority))
            .then(a.name.cmp(&b.name))
    });
    out
}

fn judge(
    m: &Member,
    leader_tl: Option<u64>,
    settings: &TakeoverSettings,
    kind: Takeover,
) -> Candidate {
    let mut reasons = Vec::new();
    if !m.state.is_healthy_replica() {
        reasons.push(format!("state is {}, not replicating", m.state));
    }
    let priority = failover_priority(m);
    if m.tag_is_true("nofailover") {
        reasons.push("tagged nofailover".to_string());
    } else if priority <= 0 {
        reasons.push(format!("failover_priority is {priority}"));
    }
    let lag = m.lag(LagKind::Receive).unwrap_or(Lag::Unknown);
    match lag {
        Lag::Unknown => reasons.push("lag is unknown".to_string()),
        Lag::Bytes(b) if b > settings.maximum_lag_on_failover => reasons.push(format!(
            "{} behind, over maximum_lag_on_failover ({})",
            crate::units::human(b),
            crate::units::human(settings.maximum_lag_on_failover)
        )),
        Lag::Bytes(_) => {}
    }
    if let (Some(tl), Some(leader)) = (m.timeline, leader_tl) {
        if tl < leader {
            reasons.push(format!("timeline {tl}, behind the leader's {leader}"));
        }
    }
    let synchronous = m.role.is_synchronous();
    if kind == Takeover::Switchover && settings.synchronous_mode && !settings.quorum && !synchronous
    {
        reasons.push("not a synchronous standby (synchronous_mode is on)".to_string());
    }
    Candidate {
        name: m.name.clone(),
        role: m.role.clone(),
        state: m.state.to_string(),
        timeline: m.timeline,
        lag,
        synchronous,
        priority,
        eligible: reasons.is_empty(),
        reasons,
    }
}

/// The best eligible candidate, if any.
pub fn best(candidates: &[Candidate]) -> Option<&Candidate> {
    candidates.first().filter(|c| c.eligible)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;
    use crate::model::State;
    use serde_json::json;

    fn names(c: &[Candidate]) -> Vec<&str> {
        c.iter()
            .filter(|c| c.eligible)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn a_takeover_reads_as_patronis_word() {
        for k in [Takeover::Switchover, Takeover::Failover] {
            assert_eq!(serde_json::json!(k), k.as_str());
            assert_eq!(k.to_string(), k.as_str());
        }
    }

    #[test]
    fn least_lag_first_and_lagging_ones_say_why() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .receive_lag_bytes(4000)
            .replica("pg2")
            .receive_lag_bytes(100)
            .replica("far")
            .lag_mb(40)
            .build();
        let all = candidates(&c, &TakeoverSettings::default(), Takeover::Switchover);
        assert_eq!(names(&all), ["pg2", "pg1"]);
        assert_eq!(best(&all).map(|c| c.name.as_str()), Some("pg2"));
        let far = all.iter().find(|c| c.name == "far").unwrap();
        assert!(!far.eligible);
        assert!(
            far.reasons[0].contains("over maximum_lag_on_failover"),
            "{:?}",
            far.reasons
        );
    }

    #[test]
    fn tags_unknown_lag_state_and_timeline_rule_members_out() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .timeline(3)
            .replica("nof")
            .tag("nofailover", json!(true))
            .timeline(3)
            .replica("prio0")
            .tag("failover_priority", json!(0))
            .timeline(3)
            .replica("unknown")
            .unknown_lag()
            .timeline(3)
            .replica("stopped")
            .state(State::Stopped)
            .timeline(3)
            .replica("oldtl")
            .timeline(2)
            .replica("ok")
            .timeline(3)
            .build();
        let all = candidates(&c, &TakeoverSettings::default(), Takeover::Switchover);
        assert_eq!(names(&all), ["ok"]);
        let why = |n: &str| all.iter().find(|c| c.name == n).unwrap().reasons.join("; ");
        assert_eq!(why("nof"), "tagged nofailover");
        assert_eq!(why("prio0"), "failover_priority is 0");
        assert_eq!(why("unknown"), "lag is unknown");
        assert!(why("stopped").starts_with("state is stopped"));
        assert_eq!(why("oldtl"), "timeline 2, behind the leader's 3");
    }

    #[test]
    fn synchronous_mode_wants_the_sync_standby_for_a_switchover_only() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("async")
            .sync_standby("sync")
            .receive_lag_bytes(500)
            .build();
        let s = TakeoverSettings::from_config(&json!({"synchronous_mode": true}));
        assert!(s.synchronous_mode && !s.quorum);
        assert_eq!(names(&candidates(&c, &s, Takeover::Switchover)), ["sync"]);
        // A failover may go to an asynchronous node; the synchronous one still comes first.
        assert_eq!(
            names(&candidates(&c, &s, Takeover::Failover)),
            ["sync", "async"]
        );
        // Without synchronous mode, least lag wins.
        let plain = TakeoverSettings::default();
        assert_eq!(
            names(&candidates(&c, &plain, Takeover::Switchover)),
            ["async", "sync"]
        );
    }

    #[test]
    fn higher_priority_breaks_a_tie() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("a")
            .replica("b")
            .tag("failover_priority", json!(5))
            .build();
        let all = candidates(&c, &TakeoverSettings::default(), Takeover::Switchover);
        assert_eq!(names(&all), ["b", "a"]);
    }

    #[test]
    fn settings_read_patroni_values_and_default_the_rest() {
        let s = TakeoverSettings::from_config(
            &json!({"maximum_lag_on_failover": 33554432, "synchronous_mode": "quorum"}),
        );
        assert_eq!(s.maximum_lag_on_failover, 33554432);
        assert!(s.synchronous_mode && s.quorum);
        assert_eq!(
            TakeoverSettings::from_config(&json!({})),
            TakeoverSettings::default()
        );
    }
}
