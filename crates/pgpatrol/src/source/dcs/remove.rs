//! Removing a cluster from its DCS, like `patronictl remove`: every key under
//! `/<namespace>/<scope>/`. The REST API has no endpoint for it. Guarded: [`survey`] lists
//! the keys and asks every member the DCS names whether it runs; [`delete`] deletes the
//! prefix and reads it back. The CLI (`pgpatrol remove`) confirms in between; the lab's
//! `down` calls [`unattended`] once its members are stopped.

use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;

use super::{Dcs, DcsError};
use crate::source::rest::{base_url, Http, HttpOptions, Request};

/// What a removal would delete, and who would object.
#[derive(Debug, Clone)]
pub struct Survey {
    pub prefix: String,
    /// The etcd endpoint that answered.
    pub answered_by: String,
    pub keys: Vec<String>,
    /// Members whose REST API answers with `state: running`.
    pub running: Vec<String>,
}

/// Why a removal did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error(transparent)]
    Dcs(#[from] DcsError),
    #[error("refusing to remove {scope}: {} still running (their REST API says so); stop Patroni on every member first, or pass --force", .running.join(", "))]
    Running { scope: String, running: Vec<String> },
    #[error("{0}")]
    Setup(String),
    #[error("{left} key(s) are still under {prefix} after deleting it ({keys}): is a Patroni of the cluster still running?")]
    LeftBehind {
        prefix: String,
        left: usize,
        keys: String,
    },
}

/// Lists the keys under the prefix and asks every member the DCS lists (by its `api_url`)
/// whether it runs. A member that does not answer within `timeout` does not run.
pub async fn survey(dcs: &Dcs, http: &Http, timeout: Duration) -> Result<Survey, DcsError> {
    let (kvs, answered_by) = dcs.keys().await?;
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
            let resp = http.send(&req).await.ok()?;
            let v: Value = serde_json::from_str(&resp.body).ok()?;
            (v.get("state").and_then(Value::as_str) == Some("running")).then_some(name)
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
    })
}

/// Deletes the prefix and reads it back: `Ok(deleted)` only when nothing is left.
pub async fn delete(dcs: &Dcs) -> Result<u64, RemoveError> {
    let (deleted, _) = dcs.delete().await?;
    let (left, _) = dcs.keys().await?;
    if !left.is_empty() {
        return Err(RemoveError::LeftBehind {
            prefix: dcs.prefix.clone(),
            left: left.len(),
            keys: left
                .iter()
                .map(|kv| kv.key.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(deleted)
}

/// The lab's removal, after its members were stopped: refuses if one still runs, deletes
/// `/service/<scope>/` from the etcd at `url`, reads it back.
pub async fn unattended(url: &str, scope: &str) -> Result<u64, RemoveError> {
    let target = super::DcsSettings {
        url: Some(url.to_string()),
        scope: Some(scope.to_string()),
        ..Default::default()
    }
    .resolve(None, None, &HttpOptions::default())
    .map_err(|e| RemoveError::Setup(e.to_string()))?;
    let dcs = Dcs::new(&target).map_err(|e| RemoveError::Setup(e.to_string()))?;
    let http = Http::new(&HttpOptions::default()).map_err(|e| RemoveError::Setup(e.to_string()))?;
    let s = survey(&dcs, &http, Duration::from_secs(2)).await?;
    if !s.running.is_empty() {
        return Err(RemoveError::Running {
            scope: scope.to_string(),
            running: s.running,
        });
    }
    delete(&dcs).await
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
