//! `-o patronictl-json`: exactly the rows `patronictl list -f json` prints for the Patroni
//! version being talked to, so scripts written against patronictl switch without change.
//! Rules from `patroni/ctl.py output_members` + `print_output`:
//! - keys are the column names; a key whose value prints as the empty string is dropped;
//! - 2.1.x–4.0.x: `Cluster, Member, Host, Role, State, TL, Lag in MB` (3.0.3–3.0.4 lose the
//!   `Cluster` key to a typo fixed in 3.1.0); lag is rounded MB, `"unknown"` passes through;
//! - 4.1+: `... TL, Receive LSN, Receive Lag, Replay LSN, Replay Lag`; unknown lag is dropped
//!   but an unknown LSN shows as `"unknown"`;
//! - `Pending restart` (`*`), `Pending restart reason` (3.3+), `Scheduled restart`, `Tags`
//!   when any member with a host has one (2.1: any member at all).

use serde_json::{Map, Value};

use pgpatrol_core::{Cluster, Lag, LagKind, Member, PatroniVersion, Unit};

fn lag_mb(lag: Option<Lag>, unknown: Value) -> Value {
    match lag {
        Some(Lag::Bytes(b)) => Value::from(Unit::MB.round(b)),
        Some(Lag::Unknown) => unknown,
        None => Value::from(""),
    }
}

fn is_empty(v: &Value) -> bool {
    matches!(v, Value::String(s) if s.is_empty()) || v.is_null()
}

fn restart_reason(m: &Member) -> Value {
    let Some(Value::Object(reasons)) = &m.pending_restart_reason else {
        return Value::from("");
    };
    let lines: Vec<String> = reasons
        .iter()
        .map(|(k, v)| {
            let get = |key: &str| {
                v.get(key)
                    .map(|x| x.as_str().map_or(x.to_string(), str::to_string))
            };
            format!(
                "{k}: {}->{}",
                get("old_value").unwrap_or_default(),
                get("new_value").unwrap_or_default()
            )
        })
        .collect();
    Value::from(lines.join("\n"))
}

fn scheduled_restart(m: &Member) -> Value {
    let Some(s) = &m.scheduled_restart else {
        return Value::from("");
    };
    let mut v = s
        .get("schedule")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(pv) = s.get("postgres_version").and_then(Value::as_str) {
        v.push_str(&format!(" if version < {pv}"));
    }
    Value::from(v)
}

/// The rows, in `/cluster` order (sorted by name, as Patroni sends them).
pub fn rows(cluster: &Cluster, version: PatroniVersion) -> Vec<Map<String, Value>> {
    let v41 = version >= PatroniVersion::new(4, 1, 0);
    let cluster_key =
        !(version >= PatroniVersion::new(3, 0, 3) && version < PatroniVersion::new(3, 1, 0));
    let with_reason = version >= PatroniVersion::new(3, 3, 0);
    // Which members decide the optional columns: from 3.0.0 only those with a host; 2.1
    // looks at every member.
    let every_member = version < PatroniVersion::new(3, 0, 0);
    let with_host: Vec<&Member> = cluster
        .members
        .iter()
        .filter(|m| every_member || m.host.is_some())
        .collect();
    let host_column = super::table::hosts(cluster);
    let any = |f: &dyn Fn(&Member) -> bool| with_host.iter().any(|m| f(m));
    let extra_pending = any(&|m| m.pending_restart);
    let extra_reason = with_reason
        && any(&|m| {
            m.pending_restart_reason
                .as_ref()
                .is_some_and(|r| r.as_object().is_some_and(|o| !o.is_empty()))
        });
    let extra_scheduled = any(&|m| m.scheduled_restart.is_some());
    let extra_tags = any(&|m| !m.tags.is_empty());
    let scope = cluster.scope.clone().unwrap_or_default();

    cluster
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut cols: Vec<(&str, Value)> = Vec::new();
            if cluster_key {
                cols.push(("Cluster", Value::from(scope.clone())));
            }
            let host = host_column[i].clone();
            cols.push(("Member", Value::from(m.name.clone())));
            cols.push(("Host", Value::from(host)));
            cols.push(("Role", Value::from(m.role.title())));
            cols.push(("State", Value::from(m.state.to_string())));
            cols.push(("TL", m.timeline.map_or(Value::from(""), Value::from)));
            if v41 {
                let lsn = |lsn: Option<pgpatrol_core::Lsn>, lag: Option<Lag>| match (lsn, lag) {
                    (Some(l), _) => Value::from(l.to_string()),
                    (None, Some(_)) => Value::from("unknown"),
                    (None, None) => Value::from(""),
                };
                let receive = m.lag(LagKind::Receive);
                let replay = m.lag(LagKind::Replay);
                cols.push(("Receive LSN", lsn(m.receive_lsn, receive)));
                cols.push(("Receive Lag", lag_mb(receive, Value::from(""))));
                cols.push(("Replay LSN", lsn(m.replay_lsn, replay)));
                cols.push(("Replay Lag", lag_mb(replay, Value::from(""))));
            } else {
                cols.push((
                    "Lag in MB",
                    lag_mb(m.lag(LagKind::Receive), Value::from("unknown")),
                ));
            }
            if extra_pending {
                cols.push((
                    "Pending restart",
                    Value::from(if m.pending_restart { "*" } else { "" }),
                ));
            }
            if extra_reason {
                cols.push(("Pending restart reason", restart_reason(m)));
            }
            if extra_scheduled {
                cols.push(("Scheduled restart", scheduled_restart(m)));
            }
            if extra_tags {
                let tags = if m.tags.is_empty() {
                    Value::from("")
                } else {
                    Value::Object(m.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                };
                cols.push(("Tags", tags));
            }
            cols.into_iter()
                .filter(|(_, v)| !is_empty(v))
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::wire::rest::{into_cluster, ClusterWire, StatusWire};
    use crate::test_support::capture;

    fn rows_of(cluster_file: &str, version: PatroniVersion) -> Value {
        let wire: ClusterWire = serde_json::from_str(&capture(cluster_file)).unwrap();
        let c = into_cluster(wire, None, None);
        Value::Array(rows(&c, version).into_iter().map(Value::Object).collect())
    }

    #[test]
    fn equals_patronictl_415_capture() {
        let ours = rows_of("cluster_replay_lag.json", PatroniVersion::new(4, 1, 5));
        let theirs: Value = serde_json::from_str(&capture("patronictl_list_415.json")).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn equals_patronictl_304_capture_without_cluster_key() {
        let ours = rows_of("cluster_304.json", PatroniVersion::new(3, 0, 4));
        let theirs: Value = serde_json::from_str(&capture("patronictl_list_304.json")).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn equals_every_captured_versions_own_patronictl() {
        for v in crate::test_support::captured_versions() {
            let version = PatroniVersion::parse(&v).unwrap();
            // With the leader's /patroni, as `list` reads it (before 3.2 the scope is only
            // there, not in /cluster).
            let wire: ClusterWire =
                serde_json::from_str(&capture(&format!("{v}/cluster.json"))).unwrap();
            let status: StatusWire =
                serde_json::from_str(&capture(&format!("{v}/patroni_leader.json"))).unwrap();
            let c = into_cluster(wire, Some(&status), None);
            let ours = Value::Array(rows(&c, version).into_iter().map(Value::Object).collect());
            let theirs: Value =
                serde_json::from_str(&capture(&format!("{v}/patronictl_list.json"))).unwrap();
            assert_eq!(ours, theirs, "Patroni {v}");
            for (o, t) in ours
                .as_array()
                .unwrap()
                .iter()
                .zip(theirs.as_array().unwrap())
            {
                let ok: Vec<&String> = o.as_object().unwrap().keys().collect();
                let tk: Vec<&String> = t.as_object().unwrap().keys().collect();
                assert_eq!(ok, tk, "Patroni {v}: key order");
            }
        }
    }

    #[test]
    fn key_order_matches_patronictl() {
        let ours = rows_of("cluster_replay_lag.json", PatroniVersion::new(4, 1, 5));
        let keys: Vec<&String> = ours[0].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "Cluster",
                "Member",
                "Host",
                "Role",
                "State",
                "TL",
                "Receive LSN",
                "Receive Lag",
                "Replay LSN",
                "Replay Lag"
            ]
        );
    }

    #[test]
    fn on_2_1_a_member_without_a_host_decides_the_optional_columns_too() {
        let wire: ClusterWire = serde_json::from_value(serde_json::json!({"members": [
            {"name": "pg0", "role": "leader", "state": "running", "host": "127.0.0.1", "port": 5432, "timeline": 1},
            {"name": "pg1", "role": "replica", "state": "stopped", "tags": {"nofailover": true}},
        ]}))
        .unwrap();
        let c = into_cluster(wire, None, None);
        let has_tags = |v: PatroniVersion| rows(&c, v).iter().any(|r| r.contains_key("Tags"));
        assert!(has_tags(PatroniVersion::new(2, 1, 7)));
        assert!(!has_tags(PatroniVersion::new(3, 0, 2)));
        assert!(!has_tags(PatroniVersion::new(4, 1, 5)));
    }

    #[test]
    fn unknown_lag_on_304_passes_through() {
        let ours = rows_of(
            "cluster_304_paused_stopped.json",
            PatroniVersion::new(3, 0, 4),
        );
        assert_eq!(ours[2]["Lag in MB"], "unknown");
        assert!(ours[2].get("TL").is_none());
    }
}
