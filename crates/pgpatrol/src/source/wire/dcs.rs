//! Patroni's keys under `/<namespace>/<scope>/`, read as Patroni's `_cluster_from_nodes`
//! reads them, and turned into the `/cluster` JSON Patroni's `cluster_as_json` would serve
//! from the same keys, so the REST source's one wire→model function builds the snapshot.
//!
//! Values are strict where Patroni writes JSON: a member, `config`, `status`, `history`,
//! `sync` or `failsafe` value that is not Patroni's JSON is an error naming the key (nothing
//! is read from a half-understood DCS). `leader` and `initialize` are plain strings;
//! `optime/leader` (Patroni < 2.1) a plain number; `failover` may be the legacy
//! `leader:candidate` text.

use serde_json::{json, Map, Value};

use pgpatrol_core::candidates::{patroni_bool, synchronous_mode_of};
use pgpatrol_core::{Lsn, PatroniVersion};

/// One key and its value, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: String,
    /// The lease the key is attached to (members and leader live on their node's lease).
    pub lease: Option<String>,
}

use super::rest::{ClusterWire, HistoryWire, PatroniInfoWire, StatusWire};

/// A value that is not what Patroni writes under that key.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "the DCS key {} does not hold Patroni's {what}: {}",
    crate::text::printable(key),
    crate::text::printable(reason)
)]
pub struct BadValue {
    pub key: String,
    pub what: &'static str,
    pub reason: String,
}

/// The scheduled failover/switchover (`failover` key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failover {
    pub leader: Option<String>,
    /// Stored under `member` (the candidate).
    pub candidate: Option<String>,
    pub scheduled_at: Option<String>,
}

/// One cluster's keys, decoded.
#[derive(Debug, Clone, Default)]
pub struct DcsCluster {
    pub initialize: Option<String>,
    pub config: Option<Map<String, Value>>,
    pub leader: Option<String>,
    /// The leader's last known WAL position (`status.optime`, else `optime/leader`).
    pub optime: Option<u64>,
    /// Patroni 4.0+: the slots the leader keeps for members whose key is gone
    /// (`status.retain_slots`; absent from a `status` means none). `None` without a `status`.
    pub retain_slots: Option<Vec<String>>,
    /// `members/<name>`, by name.
    pub members: Vec<(String, Map<String, Value>)>,
    pub failover: Option<Failover>,
    pub sync: Option<Map<String, Value>>,
    pub history: Option<HistoryWire>,
    pub failsafe: Option<Map<String, Value>>,
    /// Every key read (for `remove`), in etcd's order.
    pub keys: Vec<String>,
}

/// Patroni's `parse_int`: a JSON number or a numeric string.
fn parse_int(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn object(key: &str, what: &'static str, raw: &str) -> Result<Map<String, Value>, BadValue> {
    let bad = |reason: String| BadValue {
        key: key.to_string(),
        what,
        reason,
    };
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(bad(format!(
            "expected a JSON object, found {}",
            crate::text::snippet(&other.to_string())
        ))),
        Err(e) => Err(bad(format!(
            "not JSON ({e}): {}",
            crate::text::snippet(raw)
        ))),
    }
}

/// Decodes the keys under `prefix` (`/service/demo/`). Keys of other shapes (Citus groups,
/// `members/a/b`, unknown names) are kept in `keys` but not read.
pub fn parse(prefix: &str, kvs: &[Kv]) -> Result<DcsCluster, BadValue> {
    let mut c = DcsCluster::default();
    let mut legacy_optime = None;
    let mut status_seen = false;
    for kv in kvs {
        c.keys.push(kv.key.clone());
        let Some(rel) = kv.key.strip_prefix(prefix) else {
            continue;
        };
        let key = kv.key.as_str();
        let raw = kv.value.as_str();
        match rel {
            "initialize" => c.initialize = Some(raw.to_string()),
            "config" => c.config = Some(object(key, "dynamic configuration", raw)?),
            "leader" => {
                let name = raw.trim();
                c.leader = (!name.is_empty()).then(|| name.to_string());
            }
            "status" => {
                status_seen = true;
                c.optime = match serde_json::from_str::<Value>(raw) {
                    Ok(Value::Object(m)) => {
                        c.retain_slots = Some(
                            m.get("retain_slots")
                                .and_then(Value::as_array)
                                .map(|a| {
                                    a.iter()
                                        .filter_map(|s| s.as_str().map(str::to_string))
                                        .collect()
                                })
                                .unwrap_or_default(),
                        );
                        parse_int(m.get("optime"))
                    }
                    Ok(v @ Value::Number(_)) => parse_int(Some(&v)),
                    _ => {
                        return Err(BadValue {
                            key: key.to_string(),
                            what: "status",
                            reason: format!(
                                "expected {{\"optime\": N, ...}}: {}",
                                crate::text::snippet(raw)
                            ),
                        })
                    }
                };
            }
            "optime/leader" => {
                legacy_optime = Some(raw.trim().parse::<u64>().map_err(|_| BadValue {
                    key: key.to_string(),
                    what: "leader optime",
                    reason: format!("not a number: {}", crate::text::snippet(raw)),
                })?)
            }
            "history" => {
                let lines: Value = serde_json::from_str(raw).map_err(|e| BadValue {
                    key: key.to_string(),
                    what: "timeline history",
                    reason: format!("not JSON ({e})"),
                })?;
                c.history = Some(serde_json::from_value(lines).map_err(|e| BadValue {
                    key: key.to_string(),
                    what: "timeline history",
                    reason: format!("not a list of lists: {e}"),
                })?);
            }
            "failover" => c.failover = failover(key, raw)?,
            "sync" => c.sync = Some(object(key, "synchronous state", raw)?),
            "failsafe" => c.failsafe = Some(object(key, "failsafe topology", raw)?),
            _ => {
                if let Some(name) = rel.strip_prefix("members/").filter(|n| !n.contains('/')) {
                    let data = if raw.starts_with("postgres") {
                        // Patroni < 1.0 wrote the connection URL alone.
                        let mut m = Map::new();
                        m.insert("conn_url".into(), Value::String(raw.to_string()));
                        m
                    } else {
                        object(key, "member data", raw)?
                    };
                    c.members.push((name.to_string(), data));
                }
            }
        }
    }
    if !status_seen {
        c.optime = legacy_optime;
    }
    unique_members(c)
}

fn failover(key: &str, raw: &str) -> Result<Option<Failover>, BadValue> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let text = |m: &Map<String, Value>, k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(Some(Failover {
            leader: text(&m, "leader"),
            candidate: text(&m, "member"),
            scheduled_at: text(&m, "scheduled_at"),
        })),
        Ok(_) => Err(BadValue {
            key: key.to_string(),
            what: "failover",
            reason: format!("expected a JSON object: {}", crate::text::snippet(raw)),
        }),
        Err(_) => {
            // Legacy `leader:candidate`.
            let mut parts = raw.split(':').map(str::trim);
            let leader = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
            let candidate = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
            Ok(Some(Failover {
                leader,
                candidate,
                scheduled_at: None,
            }))
        }
    }
}

/// One Kubernetes object Patroni writes (a ConfigMap or Endpoints): its annotations.
pub type Annotations = std::collections::BTreeMap<String, String>;

/// The members sorted by name, each once. A key (or pod) is unique in etcd (a namespace): an
/// answer naming one twice is not one cluster's view, and one leader name would give two
/// leaders.
fn unique_members(mut c: DcsCluster) -> Result<DcsCluster, BadValue> {
    c.members.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = c.members.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(BadValue {
            key: format!("members/{}", w[0].0),
            what: "member data",
            reason: "the member is listed twice".into(),
        });
    }
    Ok(c)
}

/// Patroni's Kubernetes DCS (`dcs/kubernetes.py` `_cluster_from_nodes`), read from the
/// objects' annotations: `<scope>-config` (`config`, `initialize`, `history`), the leader
/// object (`<scope>-leader` ConfigMap, or the `<scope>` Endpoints: `leader`, `renewTime`,
/// `ttl`, `optime`, `failsafe`), `<scope>-failover`, `<scope>-sync`; members are the pods
/// (`pods`: name and `status` annotation; the member name is the pod name). A leader record
/// not renewed for `ttl` seconds, plus `ttl` more for clock skew, before `now` has expired
/// (Kubernetes has no TTL of its own); one whose `renewTime` cannot be read is kept, as
/// patronictl keeps it.
pub fn from_kubernetes(
    scope: &str,
    objects: &std::collections::BTreeMap<String, Annotations>,
    use_endpoints: bool,
    pods: &[(String, Option<String>)],
    now: std::time::SystemTime,
) -> Result<DcsCluster, BadValue> {
    let mut c = DcsCluster::default();
    let obj = |suffix: &str| objects.get(&format!("{scope}-{suffix}"));
    let key = |name: &str, annotation: &str| format!("{name}/{annotation}");
    for name in objects.keys() {
        c.keys.push(name.clone());
    }
    let config_name = format!("{scope}-config");
    if let Some(a) = obj("config") {
        c.initialize = a.get("initialize").cloned();
        if let Some(raw) = a.get("config") {
            c.config = Some(object(
                &key(&config_name, "config"),
                "dynamic configuration",
                raw,
            )?);
        }
        if let Some(raw) = a.get("history") {
            let k = key(&config_name, "history");
            let lines: Value = serde_json::from_str(raw).map_err(|e| BadValue {
                key: k.clone(),
                what: "timeline history",
                reason: format!("not JSON ({e})"),
            })?;
            c.history = Some(serde_json::from_value(lines).map_err(|e| BadValue {
                key: k,
                what: "timeline history",
                reason: format!("not a list of lists: {e}"),
            })?);
        }
    }
    let leader_name = if use_endpoints {
        scope.to_string()
    } else {
        format!("{scope}-leader")
    };
    if let Some(a) = objects.get(&leader_name) {
        c.optime = parse_int(a.get("optime").map(|s| Value::String(s.clone())).as_ref());
        if let Some(raw) = a.get("failsafe") {
            c.failsafe = serde_json::from_str::<Value>(raw)
                .ok()
                .and_then(|v| v.as_object().cloned());
        }
        let ttl = a
            .get("ttl")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .or_else(|| c.config.as_ref().and_then(|cfg| parse_int(cfg.get("ttl"))))
            .unwrap_or(30);
        let expired = a
            .get("renewTime")
            .and_then(|t| crate::time::parse_iso8601(t))
            .is_some_and(|renewed| {
                renewed + std::time::Duration::from_secs(ttl.saturating_mul(2)) < now
            });
        c.leader = a
            .get("leader")
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && !expired);
    }
    if let Some(a) = obj("failover") {
        let text = |k: &str| a.get(k).filter(|s| !s.is_empty()).cloned();
        if a.contains_key("leader") || a.contains_key("member") || a.contains_key("scheduled_at") {
            c.failover = Some(Failover {
                leader: text("leader"),
                candidate: text("member"),
                scheduled_at: text("scheduled_at"),
            });
        }
    }
    if let Some(a) = obj("sync") {
        let mut m = Map::new();
        for (k, v) in a {
            if ["leader", "sync_standby", "quorum"].contains(&k.as_str()) {
                m.insert(k.clone(), Value::String(v.clone()));
            }
        }
        c.sync = Some(m);
    }
    for (pod, status) in pods {
        let data = match status.as_deref() {
            // A pod Patroni has not written to yet: a member with no data, as Patroni has it.
            None | Some("") => Map::new(),
            Some(raw) => object(&format!("pod {pod} annotation status"), "member data", raw)?,
        };
        c.members.push((pod.clone(), data));
    }
    unique_members(c)
}

/// A member's PostgreSQL host and port: `conn_kwargs`, else parsed from `conn_url`.
fn host_port(data: &Map<String, Value>) -> (Option<String>, Option<u16>) {
    if let Some(Value::Object(kw)) = data.get("conn_kwargs") {
        let host = kw.get("host").and_then(Value::as_str).map(str::to_string);
        let port = parse_int(kw.get("port")).and_then(|p| u16::try_from(p).ok());
        return (host, port);
    }
    let Some(url) = data
        .get("conn_url")
        .and_then(Value::as_str)
        .and_then(|u| reqwest::Url::parse(u).ok())
    else {
        return (None, None);
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string());
    (host, url.port())
}

fn member_version(data: &Map<String, Value>) -> Option<PatroniVersion> {
    data.get("version")
        .and_then(Value::as_str)
        .and_then(PatroniVersion::parse)
}

impl DcsCluster {
    /// The cluster is 4.1+: its `/cluster` carries `receive_*` and `replay_*`.
    fn split_lag(&self) -> bool {
        self.members.iter().any(|(_, d)| {
            member_version(d).is_some_and(|v| v >= PatroniVersion::new(4, 1, 0))
                || d.contains_key("receive_lsn")
                || d.contains_key("replay_lsn")
        })
    }

    fn config_flag(&self, key: &str) -> bool {
        self.config
            .as_ref()
            .is_some_and(|c| patroni_bool(c.get(key)) == Some(true))
    }

    /// Synchronous mode and quorum commit, as the takeover rule reads them.
    fn synchronous_mode(&self) -> (bool, bool) {
        synchronous_mode_of(self.config.as_ref().and_then(|c| c.get("synchronous_mode")))
    }

    fn is_sync(&self, name: &str) -> bool {
        if !self.synchronous_mode().0 {
            return false;
        }
        let Some(sync) = &self.sync else {
            return false;
        };
        if sync.get("leader").and_then(Value::as_str).is_none() {
            return false;
        }
        sync.get("sync_standby")
            .and_then(Value::as_str)
            .is_some_and(|s| {
                s.split(',')
                    .any(|m| m.trim().eq_ignore_ascii_case(name.trim()))
            })
    }

    /// The `/cluster` JSON Patroni would serve from these keys (`utils.cluster_as_json`).
    pub fn cluster_json(&self, scope: &str) -> Value {
        let standby = self
            .config
            .as_ref()
            .and_then(|c| c.get("standby_cluster"))
            .is_some_and(|s| s.as_object().is_some_and(|o| !o.is_empty()));
        let quorum = self.synchronous_mode().1;
        let cluster_lsn = self.optime.unwrap_or(0);
        let split = self.split_lag();
        let mut members = Vec::new();
        for (name, d) in &self.members {
            let is_leader = self.leader.as_deref() == Some(name.as_str());
            let role = if is_leader {
                if standby {
                    "standby_leader"
                } else {
                    "leader"
                }
            } else if self.is_sync(name) {
                if quorum {
                    "quorum_standby"
                } else {
                    "sync_standby"
                }
            } else {
                "replica"
            };
            let text = |k: &str| d.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            let state = if role != "leader" {
                text("replication_state").or_else(|| text("state"))
            } else {
                text("state")
            };
            let mut m = Map::new();
            m.insert("name".into(), json!(name));
            m.insert("role".into(), json!(role));
            m.insert("state".into(), json!(state.unwrap_or("")));
            m.insert(
                "api_url".into(),
                d.get("api_url").cloned().unwrap_or(Value::Null),
            );
            let (host, port) = host_port(d);
            if let Some(h) = host {
                m.insert("host".into(), json!(h));
                if let Some(p) = port {
                    m.insert("port".into(), json!(p));
                }
            }
            for k in [
                "timeline",
                "pending_restart",
                "pending_restart_reason",
                "scheduled_restart",
                "tags",
            ] {
                if let Some(v) = d.get(k) {
                    m.insert(k.into(), v.clone());
                }
            }
            if !is_leader {
                let mut put = |lsn_key: &str, lag_key: &str, lsn: Option<u64>| match lsn {
                    None => {
                        m.insert(lsn_key.into(), json!("unknown"));
                        m.insert(lag_key.into(), json!("unknown"));
                    }
                    Some(l) => {
                        m.insert(lag_key.into(), json!(cluster_lsn.saturating_sub(l)));
                        m.insert(lsn_key.into(), json!(Lsn(l).to_string()));
                    }
                };
                if split {
                    // 4.1: `if not lsn` → unknown (a 0 LSN too).
                    let nz = |k: &str| parse_int(d.get(k)).filter(|l| *l != 0);
                    put("receive_lsn", "receive_lag", nz("receive_lsn"));
                    put("replay_lsn", "replay_lag", nz("replay_lsn"));
                    put("lsn", "lag", nz("xlog_location"));
                } else {
                    match parse_int(d.get("xlog_location")) {
                        None => {
                            m.insert("lag".into(), json!("unknown"));
                        }
                        Some(l) => {
                            m.insert("lag".into(), json!(cluster_lsn.saturating_sub(l)));
                        }
                    }
                }
            }
            members.push(Value::Object(m));
        }
        let mut out = Map::new();
        out.insert("members".into(), Value::Array(members));
        if self.config_flag("pause") {
            out.insert("pause".into(), json!(true));
        }
        if let Some(f) = self.failover.as_ref().filter(|f| f.scheduled_at.is_some()) {
            let mut s = Map::new();
            s.insert("at".into(), json!(f.scheduled_at));
            if let Some(l) = &f.leader {
                s.insert("from".into(), json!(l));
            }
            if let Some(c) = &f.candidate {
                s.insert("to".into(), json!(c));
            }
            out.insert("scheduled_switchover".into(), Value::Object(s));
        }
        out.insert("scope".into(), json!(scope));
        Value::Object(out)
    }

    /// `cluster_json` in the REST source's wire types.
    pub fn cluster_wire(&self, scope: &str) -> Result<ClusterWire, BadValue> {
        serde_path_to_error::deserialize(self.cluster_json(scope)).map_err(|e| BadValue {
            key: "members/*".into(),
            what: "member data",
            reason: format!(
                "at {} of the /cluster built from them, {}",
                crate::source::http::client::json_path(e.path()),
                e.into_inner()
            ),
        })
    }

    /// What `/patroni` would add for a snapshot: the leader's Patroni version, the system
    /// identifier, whether the leader key is missing, pause.
    pub fn status_wire(&self, scope: &str) -> StatusWire {
        let leader_data = self
            .leader
            .as_deref()
            .and_then(|l| self.members.iter().find(|(n, _)| n == l).map(|(_, d)| d));
        let version = leader_data
            .or_else(|| self.members.first().map(|(_, d)| d))
            .and_then(|d| d.get("version"))
            .and_then(Value::as_str)
            .map(str::to_string);
        StatusWire {
            pause: Some(self.config_flag("pause")),
            cluster_unlocked: Some(self.leader.is_none()),
            database_system_identifier: self.initialize.clone().filter(|s| !s.is_empty()),
            patroni: Some(PatroniInfoWire {
                version,
                scope: Some(scope.to_string()),
                name: None,
            }),
            ..StatusWire::default()
        }
    }
}

/// A cluster from its DCS keys alone, as its `/cluster` and its leader's `/patroni` would
/// say (`list --all`). No member is asked, so before Patroni 4.1 replay positions stay
/// unknown.
pub fn cluster_from_dcs(
    keys: &DcsCluster,
    scope: &str,
) -> Result<pgpatrol_core::Cluster, BadValue> {
    let wire = keys.cluster_wire(scope)?;
    let status = keys.status_wire(scope);
    Ok(super::rest::into_cluster(wire, Some(&status), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgpatrol_core::{Lag, Role, State};

    fn kv(key: &str, value: &str) -> Kv {
        Kv {
            key: format!("/service/demo/{key}"),
            value: value.to_string(),
            lease: None,
        }
    }

    fn cluster(kvs: &[Kv]) -> pgpatrol_core::Cluster {
        let c = parse("/service/demo/", kvs).unwrap();
        crate::source::wire::rest::into_cluster(
            c.cluster_wire("demo").unwrap(),
            Some(&c.status_wire("demo")),
            None,
        )
    }

    /// Patroni 4.1.5's values, as `ha.touch_member` writes them.
    fn keys_415() -> Vec<Kv> {
        vec![
            kv(
                "config",
                r#"{"ttl":20,"loop_wait":2,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true}}"#,
            ),
            kv("initialize", "7441234567890123456"),
            kv("leader", "pg0"),
            kv(
                "status",
                r#"{"optime":67109336,"slots":{"pg1":67109336},"retain_slots":["pg0","pg1","pg2"]}"#,
            ),
            kv(
                "history",
                r#"[[1,25623960,"no recovery target specified","2026-11-22T03:46:12.910825+00:00","pg0"]]"#,
            ),
            kv(
                "members/pg0",
                r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","version":"4.1.5","xlog_location":67109336,"timeline":2}"#,
            ),
            kv(
                "members/pg1",
                r#"{"conn_url":"postgres://127.0.0.1:5433/postgres","api_url":"http://127.0.0.1:8009/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":67109336,"replication_state":"streaming","timeline":2,"receive_lsn":67109336,"replay_lsn":66060760}"#,
            ),
            kv(
                "members/pg2",
                r#"{"conn_url":"postgres://127.0.0.1:5434/postgres","api_url":"http://127.0.0.1:8010/patroni","state":"stopped","role":"replica","version":"4.1.5","timeline":2}"#,
            ),
        ]
    }

    #[test]
    fn a_415_cluster_reads_like_its_rest_api() {
        let c = cluster(&keys_415());
        assert_eq!(c.scope.as_deref(), Some("demo"));
        assert_eq!(c.leader().map(|m| m.name.as_str()), Some("pg0"));
        assert_eq!(c.system_identifier.as_deref(), Some("7441234567890123456"));
        assert_eq!(c.patroni_version, Some(PatroniVersion::new(4, 1, 5)));
        let pg1 = c.member("pg1").unwrap();
        assert_eq!(pg1.role, Role::Replica);
        assert_eq!(pg1.state, State::Streaming);
        assert_eq!(pg1.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(pg1.port, Some(5433));
        assert_eq!(pg1.receive_lag, Some(Lag::Bytes(0)));
        assert_eq!(pg1.replay_lag, Some(Lag::Bytes(67109336 - 66060760)));
        let pg2 = c.member("pg2").unwrap();
        assert_eq!(pg2.state, State::Stopped);
        assert_eq!(pg2.replay_lag, Some(Lag::Unknown));
        assert!(!c.unlocked);
    }

    #[test]
    fn a_304_cluster_has_receive_lag_only_and_master_in_the_member_data() {
        let kvs = vec![
            kv("config", r#"{"ttl":20,"loop_wait":2,"pause":true}"#),
            kv("leader", "pg1"),
            kv("optime/leader", "500"),
            kv(
                "members/pg0",
                r#"{"conn_url":"postgres://h0:5432/postgres","api_url":"http://h0:8008/patroni","state":"running","role":"replica","version":"3.0.4","xlog_location":400,"replication_state":"streaming","timeline":3}"#,
            ),
            kv(
                "members/pg1",
                r#"{"conn_url":"postgres://h1:5432/postgres","api_url":"http://h1:8008/patroni","state":"running","role":"master","version":"3.0.4","xlog_location":500,"timeline":3}"#,
            ),
        ];
        let c = cluster(&kvs);
        assert!(c.paused);
        assert_eq!(c.leader().map(|m| m.name.as_str()), Some("pg1"));
        let pg0 = c.member("pg0").unwrap();
        assert_eq!(pg0.receive_lag, Some(Lag::Bytes(100)));
        // As over REST on < 4.1: replay lag needs the members' /patroni; never the receive lag.
        assert_eq!(pg0.replay_lag, Some(Lag::Unknown));
    }

    #[test]
    fn status_wins_over_the_legacy_optime() {
        let c = parse(
            "/service/demo/",
            &[kv("optime/leader", "5"), kv("status", r#"{"optime":"9"}"#)],
        )
        .unwrap();
        assert_eq!(c.optime, Some(9));
        let c = parse("/service/demo/", &[kv("status", "7")]).unwrap();
        assert_eq!(c.optime, Some(7));
    }

    #[test]
    fn no_leader_key_means_unlocked() {
        let mut kvs = keys_415();
        kvs.retain(|k| !k.key.ends_with("/leader"));
        let c = cluster(&kvs);
        assert!(c.unlocked);
        assert!(c.leader().is_none());
    }

    #[test]
    fn sync_standby_only_in_synchronous_mode() {
        let mut kvs = keys_415();
        kvs.push(kv(
            "sync",
            r#"{"leader":"pg0","sync_standby":"PG1","quorum":0}"#,
        ));
        assert_eq!(cluster(&kvs).member("pg1").unwrap().role, Role::Replica);
        kvs[0] = kv("config", r#"{"ttl":20,"synchronous_mode":true}"#);
        assert_eq!(cluster(&kvs).member("pg1").unwrap().role, Role::SyncStandby);
    }

    #[test]
    fn a_scheduled_switchover_and_the_legacy_failover_text() {
        let mut kvs = keys_415();
        kvs.push(kv(
            "failover",
            r#"{"leader":"pg0","member":"pg1","scheduled_at":"2026-12-01T10:00:00+00:00"}"#,
        ));
        let s = cluster(&kvs).scheduled_switchover.unwrap();
        assert_eq!(
            (s.from.as_deref(), s.to.as_deref()),
            (Some("pg0"), Some("pg1"))
        );
        let c = parse("/service/demo/", &[kv("failover", "pg0:pg2")]).unwrap();
        assert_eq!(c.failover.unwrap().candidate.as_deref(), Some("pg2"));
    }

    #[test]
    fn a_value_that_is_not_patronis_json_names_its_key() {
        let e = parse("/service/demo/", &[kv("members/pg0", "{not json")]).unwrap_err();
        assert_eq!(e.key, "/service/demo/members/pg0");
        assert!(e.to_string().contains("member data"), "{e}");
        let e = parse("/service/demo/", &[kv("config", "[1]")]).unwrap_err();
        assert!(e.reason.contains("JSON object"), "{e}");
        assert!(parse("/service/demo/", &[kv("optime/leader", "x")]).is_err());
        assert!(parse("/service/demo/", &[kv("history", "{}")]).is_err());
    }

    #[test]
    fn citus_groups_and_nested_keys_are_not_members() {
        let c = parse(
            "/service/demo/",
            &[kv("members/a/b", "{}"), kv("1/members/x", "{}")],
        )
        .unwrap();
        assert!(c.members.is_empty());
        assert_eq!(c.keys.len(), 2);
    }

    fn objects(
        entries: &[(&str, &[(&str, &str)])],
    ) -> std::collections::BTreeMap<String, Annotations> {
        entries
            .iter()
            .map(|(n, a)| {
                (
                    n.to_string(),
                    a.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                )
            })
            .collect()
    }

    fn now() -> std::time::SystemTime {
        crate::time::parse_iso8601("2026-12-01T12:00:10+00:00").unwrap()
    }

    /// The annotations Patroni 4.1's kubernetes.py writes (ConfigMaps mode).
    fn configmaps_41() -> std::collections::BTreeMap<String, Annotations> {
        objects(&[
            (
                "demo-config",
                &[
                    (
                        "config",
                        r#"{"ttl":30,"loop_wait":10,"postgresql":{"use_pg_rewind":true}}"#,
                    ),
                    ("initialize", "7441234567890123456"),
                    (
                        "history",
                        r#"[[1,25623960,"no recovery target specified","2026-12-01T11:00:00.1+00:00","pod-1"]]"#,
                    ),
                ],
            ),
            (
                "demo-leader",
                &[
                    ("leader", "pod-0"),
                    ("acquireTime", "2026-12-01T11:00:00.000001+00:00"),
                    ("renewTime", "2026-12-01T12:00:00.000001+00:00"),
                    ("ttl", "30"),
                    ("transitions", "1"),
                    ("optime", "67109336"),
                    ("slots", r#"{"pod_1":67109336}"#),
                    ("retain_slots", r#"["pod_0","pod_1"]"#),
                ],
            ),
        ])
    }

    fn pods_41() -> Vec<(String, Option<String>)> {
        vec![
            ("pod-0".into(), Some(r#"{"conn_url":"postgres://10.0.0.5:5432/postgres","api_url":"http://10.0.0.5:8008/patroni","state":"running","role":"primary","version":"4.1.5","xlog_location":67109336,"timeline":2}"#.into())),
            ("pod-1".into(), Some(r#"{"conn_url":"postgres://10.0.0.6:5432/postgres","api_url":"http://10.0.0.6:8008/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":67109336,"replication_state":"streaming","timeline":2,"receive_lsn":67109336,"replay_lsn":67100000}"#.into())),
            ("pod-2".into(), None),
        ]
    }

    fn k8s_cluster(c: DcsCluster) -> pgpatrol_core::Cluster {
        crate::source::wire::rest::into_cluster(
            c.cluster_wire("demo").unwrap(),
            Some(&c.status_wire("demo")),
            None,
        )
    }

    #[test]
    fn kubernetes_configmaps_of_41() {
        let c = from_kubernetes("demo", &configmaps_41(), false, &pods_41(), now()).unwrap();
        assert_eq!(c.optime, Some(67109336));
        let c = k8s_cluster(c);
        assert_eq!(c.leader().map(|m| m.name.as_str()), Some("pod-0"));
        let r = c.member("pod-1").unwrap();
        assert_eq!(r.replay_lag, Some(Lag::Bytes(67109336 - 67100000)));
        assert_eq!(r.host.as_deref(), Some("10.0.0.6"));
        // A pod Patroni has not written to is a member without data, as in Patroni.
        assert!(c.member("pod-2").is_some());
    }

    #[test]
    fn kubernetes_endpoints_of_30_keep_the_leader_in_the_scope_object() {
        let mut o = configmaps_41();
        let leader = o.remove("demo-leader").unwrap();
        o.insert("demo".into(), leader);
        let pods = vec![
            ("pod-0".into(), Some(r#"{"conn_url":"postgres://10.0.0.5:5432/postgres","api_url":"http://10.0.0.5:8008/patroni","state":"running","role":"master","version":"3.0.4","xlog_location":500,"timeline":2}"#.to_string())),
            ("pod-1".into(), Some(r#"{"conn_url":"postgres://10.0.0.6:5432/postgres","api_url":"http://10.0.0.6:8008/patroni","state":"running","role":"replica","version":"3.0.4","xlog_location":400,"replication_state":"streaming","timeline":2}"#.to_string())),
        ];
        let mut o30 = o.clone();
        o30.get_mut("demo")
            .unwrap()
            .insert("optime".into(), "500".into());
        let c = k8s_cluster(from_kubernetes("demo", &o30, true, &pods, now()).unwrap());
        assert_eq!(c.leader().map(|m| m.name.as_str()), Some("pod-0"));
        assert_eq!(
            c.member("pod-1").unwrap().receive_lag,
            Some(Lag::Bytes(100))
        );
        // The same objects read as ConfigMaps have no leader object.
        let c = k8s_cluster(from_kubernetes("demo", &o30, false, &pods, now()).unwrap());
        assert!(c.unlocked);
    }

    #[test]
    fn a_kubernetes_leader_not_renewed_for_twice_its_ttl_has_expired() {
        let late = crate::time::parse_iso8601("2026-12-01T12:01:01+00:00").unwrap();
        let c = from_kubernetes("demo", &configmaps_41(), false, &pods_41(), late).unwrap();
        assert_eq!(c.leader, None);
        let c = from_kubernetes("demo", &configmaps_41(), false, &pods_41(), now()).unwrap();
        assert_eq!(c.leader.as_deref(), Some("pod-0"));
    }

    /// Fuzz finding (`scripts/fuzz etcd`, crash-0ab6f7f7): a key with a newline in it made
    /// the error naming it two lines long.
    #[test]
    fn fuzz_a_key_with_a_newline_is_named_on_one_line() {
        let kvs = vec![Kv {
            key: "/service/demo/members/pg0\n\"running\"}".into(),
            value: String::new(),
            lease: None,
        }];
        let e = parse("/service/demo/", &kvs).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("members/pg0\\n\"running\""), "{e}");
    }

    /// Fuzz finding (`fuzz::kubernetes`, a pod copied in the PodList): the leader's name
    /// matched both copies and the snapshot had two leaders. Refused, naming the pod.
    #[test]
    fn fuzz_a_pod_listed_twice_is_refused_not_two_leaders() {
        let mut pods = pods_41();
        pods.push(pods[0].clone());
        let e = from_kubernetes("demo", &configmaps_41(), false, &pods, now()).unwrap_err();
        assert_eq!(e.key, "members/pod-0", "{e}");
        assert!(e.to_string().contains("listed twice"), "{e}");
    }

    #[test]
    fn a_kubernetes_status_annotation_that_is_not_json_names_the_pod() {
        let pods = vec![("pod-0".to_string(), Some("{oops".to_string()))];
        let e = from_kubernetes("demo", &configmaps_41(), false, &pods, now()).unwrap_err();
        assert!(e.key.contains("pod pod-0 annotation status"), "{e}");
    }
}
