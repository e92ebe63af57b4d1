//! What removing a cluster from its DCS would delete, and who would object: [`survey`]
//! lists the keys under `/<namespace>/<scope>/` and asks every member the DCS names whether
//! its Patroni answers. Reading only: the deletion is `super`'s, sent through the one sender.

use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;

use crate::source::dcs::{Dcs, DcsError};
use crate::source::http::{base_url, Http, Request};

/// What a removal would delete, and who would object.
#[derive(Debug, Clone)]
pub struct Survey {
    pub prefix: String,
    /// The etcd endpoint that answered.
    pub answered_by: String,
    pub keys: Vec<String>,
    /// Members whose REST API answers at all, each with what it said (`pg0 (running)`,
    /// `pg1 (stopped)`, `pg2 (HTTP 503)`): a Patroni daemon that answers is alive and writes
    /// its keys again, whatever state its PostgreSQL is in.
    pub running: Vec<String>,
    /// The member named in the leader key: a Patroni holds it, or it has not expired yet.
    pub leader: Option<String>,
    /// The cluster's `loop_wait` from its config key (10 s when it cannot be read): how
    /// long a live Patroni may take to write its member key again.
    pub loop_wait: Duration,
}

/// Why a removal did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error(transparent)]
    Dcs(#[from] DcsError),
    /// Refused by core `ops::remove::refusal` (a Patroni answers, or the leader key is held).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Setup(String),
    #[error("{left} key(s) are still under {prefix} after deleting it ({keys}): is a Patroni of the cluster still running?")]
    LeftBehind {
        prefix: String,
        left: usize,
        keys: String,
    },
}

/// Lists the keys under the prefix, reads the leader key and `loop_wait`, and asks every
/// member the DCS lists (by its `api_url`) whether its Patroni answers. Only a member whose
/// REST API gives no HTTP answer within `timeout` counts as stopped.
pub async fn survey(dcs: &Dcs, http: &Http, timeout: Duration) -> Result<Survey, DcsError> {
    let (kvs, answered_by) = dcs.keys().await?;
    let leader = kvs
        .iter()
        .find(|kv| kv.key.strip_prefix(&dcs.prefix) == Some("leader"))
        .map(|kv| kv.value.trim().to_string())
        .filter(|v| !v.is_empty());
    let loop_wait = kvs
        .iter()
        .find(|kv| kv.key.strip_prefix(&dcs.prefix) == Some("config"))
        .and_then(|kv| serde_json::from_str::<Value>(&kv.value).ok())
        .and_then(|c| c.get("loop_wait").and_then(Value::as_u64))
        .map_or(Duration::from_secs(10), Duration::from_secs);
    let mut api_urls = Vec::new();
    // A value that is not Patroni's JSON must not stop a removal: look for api_url leniently.
    for kv in &kvs {
        let Some(name) = kv
            .key
            .strip_prefix(&dcs.prefix)
            .and_then(|r| r.strip_prefix("members/"))
        else {
            continue;
        };
        if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&kv.value) {
            if let Some(api) = m.get("api_url").and_then(Value::as_str) {
                api_urls.push((name.to_string(), api.to_string()));
            }
        }
    }
    let mut set = JoinSet::new();
    for (name, api) in api_urls {
        let http = http.clone();
        set.spawn(async move {
            let base = base_url(&api).ok()?;
            let mut req = Request::get(&base, "/patroni");
            req.timeout = Some(timeout);
            // Any HTTP answer is a live Patroni: only silence counts as stopped.
            let resp = http.send(&req).await.ok()?;
            let state = serde_json::from_str::<Value>(&resp.body)
                .ok()
                .and_then(|v| v.get("state").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP {}", resp.status.as_u16()));
            Some(format!("{name} ({state})"))
        });
    }
    let mut running = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(Some(name)) = r {
            running.push(name);
        }
    }
    running.sort();
    Ok(Survey {
        prefix: dcs.prefix.clone(),
        answered_by,
        keys: kvs.into_iter().map(|kv| kv.key).collect(),
        running,
        leader,
        loop_wait,
    })
}

impl Survey {
    /// Why the cluster may not be removed now (`None`: every Patroni is silent and no leader
    /// key is held).
    pub fn refusal(&self, scope: &str) -> Option<RemoveError> {
        pgpatrol_core::ops::remove::refusal(scope, &self.running, self.leader.as_deref())
            .map(RemoveError::Refused)
    }
}

/// The member names of a survey's keys (for the confirmation text).
pub fn member_names(prefix: &str, keys: &[String]) -> Vec<String> {
    keys.iter()
        .filter_map(|k| k.strip_prefix(prefix)?.strip_prefix("members/"))
        .filter(|n| !n.contains('/'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn survey(running: &[&str], leader: Option<&str>) -> Survey {
        Survey {
            prefix: "/service/demo/".into(),
            answered_by: "127.0.0.1:2379".into(),
            keys: vec!["/service/demo/config".into()],
            running: running.iter().map(|s| (*s).to_owned()).collect(),
            leader: leader.map(str::to_owned),
            loop_wait: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_survey_is_judged_by_the_core_rule() {
        assert!(survey(&[], None).refusal("demo").is_none());
        let e = survey(&["pg0 (HTTP 503)"], Some("pg0")).refusal("demo");
        assert!(matches!(e, Some(RemoveError::Refused(ref why)) if why.contains("pg0 (HTTP 503)")));
        let e = survey(&[], Some("pg0")).refusal("demo");
        assert!(matches!(e, Some(RemoveError::Refused(ref why)) if why.contains("held by pg0")));
    }

    #[test]
    fn member_names_from_keys() {
        let keys = vec![
            "/service/demo/config".to_string(),
            "/service/demo/members/pg0".to_string(),
            "/service/demo/members/pg1".to_string(),
            "/service/demo/members/x/y".to_string(),
        ];
        assert_eq!(member_names("/service/demo/", &keys), ["pg0", "pg1"]);
    }
}
