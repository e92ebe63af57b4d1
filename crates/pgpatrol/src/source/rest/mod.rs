//! The Patroni REST API as a source of cluster snapshots. Any member answers for the whole
//! cluster (`/cluster` is read from the DCS); several URLs are tried in turn. When a DCS is
//! named (`--dcs`), snapshots, history and config are read from it instead, as patronictl
//! reads them, and the members are still reached over REST (their `api_url` in the DCS):
//! Patroni < 4.1's replay positions, heal, and which members do not answer.

pub mod client;
pub mod transport;
pub mod wire;

use reqwest::Url;
use tokio::task::JoinSet;

use pgpatrol_core::{Cluster, HistoryEntry};

pub use client::{Http, HttpCache, HttpOptions};
pub use transport::{BoxFuture, Credentials, Request, Response, RestError, Transport};
use wire::{ClusterWire, HistoryWire, LegacyReplay, StatusWire};

use super::SourceError;

/// How much to read besides `/cluster`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// `/cluster` only (plus the members' `/patroni` on Patroni < 4.1, for replay lag).
    Lag,
    /// Also the answering node's `/patroni`: version, system identifier, unlocked, failsafe.
    Full,
}

/// A cluster snapshot and which URL answered.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub cluster: Cluster,
    pub answered_by: String,
}

/// Reads clusters over Patroni's REST API.
#[derive(Debug, Clone)]
pub struct RestSource {
    http: Http,
    bases: Vec<String>,
    /// Read snapshots from the DCS (`--dcs`) rather than a member's `/cluster`.
    dcs: Option<std::sync::Arc<crate::source::dcs::Dcs>>,
    /// Read the DCS only when no member's REST API answers (the Kubernetes DCS).
    dcs_fallback: bool,
}

/// A member the DCS lists that does not answer its REST API, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silent {
    pub name: String,
    pub reason: String,
}

/// `127.0.0.1:8008`, `http://h:8008/`, `http://h:8008/patroni` → `http://h:8008`.
pub fn base_url(raw: &str) -> Result<String, SourceError> {
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| {
        SourceError::BadInput(format!(
            "{raw:?} is not a URL ({e}): write e.g. http://10.0.0.5:8008"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SourceError::BadInput(format!(
            "{raw:?}: the scheme must be http or https"
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| SourceError::BadInput(format!("{raw:?} has no host")))?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok(match url.port() {
        Some(p) => format!("{}://{}:{}", url.scheme(), host, p),
        None => format!("{}://{}", url.scheme(), host),
    })
}

impl RestSource {
    pub fn new(http: Http, urls: &[String]) -> Result<Self, SourceError> {
        if urls.is_empty() {
            return Err(SourceError::NoTarget);
        }
        let bases = urls
            .iter()
            .map(|u| base_url(u))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RestSource {
            http,
            bases,
            dcs: None,
            dcs_fallback: false,
        })
    }

    /// A source that reads snapshots from `dcs`; `urls` may be empty (members are reached
    /// by the `api_url` the DCS carries).
    pub fn with_dcs(
        http: Http,
        urls: &[String],
        dcs: crate::source::dcs::Dcs,
    ) -> Result<Self, SourceError> {
        let bases = urls
            .iter()
            .map(|u| base_url(u))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RestSource {
            http,
            bases,
            dcs: Some(std::sync::Arc::new(dcs)),
            dcs_fallback: false,
        })
    }

    /// This source, reading snapshots from `dcs` when no member's REST API answers.
    pub fn with_fallback(self, dcs: crate::source::dcs::Dcs) -> Self {
        RestSource {
            dcs: Some(std::sync::Arc::new(dcs)),
            dcs_fallback: true,
            ..self
        }
    }

    /// The DCS snapshots are read from first (`--dcs`, `--k8s-dcs`); not a fallback one.
    fn primary_dcs(&self) -> Option<&crate::source::dcs::Dcs> {
        self.dcs.as_deref().filter(|_| !self.dcs_fallback)
    }

    /// The DCS snapshots are read from, if one was named (not a fallback).
    pub fn dcs(&self) -> Option<&crate::source::dcs::Dcs> {
        self.primary_dcs()
    }

    /// The DCS this source knows, whether it reads snapshots from it or falls back to it
    /// (`-c patroni.yml` with an `etcd3` section): `report` lists its keys.
    pub fn any_dcs(&self) -> Option<&crate::source::dcs::Dcs> {
        self.dcs.as_deref()
    }

    /// The members of `cluster` whose REST API does not answer `GET /patroni` within
    /// `timeout`, read concurrently (`list --dcs` names them).
    pub async fn silent_members(
        &self,
        cluster: &Cluster,
        timeout: std::time::Duration,
    ) -> Vec<Silent> {
        let mut set = JoinSet::new();
        for m in &cluster.members {
            let http = self.http.clone();
            let name = m.name.clone();
            let api = m.api_url.clone();
            set.spawn(async move {
                let Some(api) = api else {
                    return Some(Silent {
                        name,
                        reason: "no api_url in the DCS".into(),
                    });
                };
                let base = match base_url(&api) {
                    Ok(b) => b,
                    Err(e) => {
                        return Some(Silent {
                            name,
                            reason: e.to_string(),
                        })
                    }
                };
                let mut req = Request::get(&base, "/patroni");
                req.timeout = Some(timeout);
                match http.send(&req).await {
                    Ok(r) if r.status.is_success() => None,
                    Ok(r) => Some(Silent {
                        name,
                        reason: format!("{} answered HTTP {}", req.url(), r.status.as_u16()),
                    }),
                    Err(e) => Some(Silent {
                        name,
                        reason: e.to_string(),
                    }),
                }
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(Some(s)) = r {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn http(&self) -> &Http {
        &self.http
    }

    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// Tries each URL in turn until one answers `f`.
    async fn first_answer<T, F, Fut>(&self, f: F) -> Result<(T, String), SourceError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, RestError>>,
    {
        let mut errors = Vec::new();
        for base in &self.bases {
            match f(base.clone()).await {
                Ok(v) => return Ok((v, base.clone())),
                Err(e) => {
                    tracing::debug!(url = %base, error = %e, "member did not answer");
                    errors.push(e);
                }
            }
        }
        Err(SourceError::from_attempts(errors))
    }

    /// Reads a snapshot of the cluster. When no member answers `/cluster` but some answer
    /// their own `/patroni`, the error says the DCS is unreachable (Patroni reads `/cluster`
    /// from it), not that the members are down.
    pub async fn snapshot(&self, detail: Detail) -> Result<Snapshot, SourceError> {
        if let Some(dcs) = self.primary_dcs() {
            return self.dcs_snapshot(dcs, detail).await;
        }
        let rest = self.diagnosed_rest_snapshot(detail).await;
        match (rest, self.dcs.as_deref()) {
            (Err(e), Some(dcs)) => match self.dcs_snapshot(dcs, detail).await {
                Ok(snap) => {
                    tracing::debug!(error = %e, "no REST API answered: read the DCS");
                    Ok(snap)
                }
                // The REST failure is the one to report.
                Err(_) => Err(e),
            },
            (r, _) => r,
        }
    }

    /// `/cluster` over REST; when it fails everywhere while members answer their own
    /// `/patroni`, the error says the DCS is unreachable. Only when no `/cluster` answered:
    /// an answer that does not fit Patroni's shape is named as such (URL, JSON path, what
    /// was expected), as the DCS answered it.
    async fn diagnosed_rest_snapshot(&self, detail: Detail) -> Result<Snapshot, SourceError> {
        match self.rest_snapshot(detail).await {
            Err(SourceError::AllFailed(mut errors))
                if errors.iter().any(RestError::is_malformed_answer) =>
            {
                let i = errors
                    .iter()
                    .position(RestError::is_malformed_answer)
                    .unwrap_or_default();
                Err(SourceError::Rest(errors.swap_remove(i)))
            }
            Err(e @ (SourceError::Rest(_) | SourceError::AllFailed(_))) if e.no_answer() => {
                let own = self.own_statuses().await;
                if own.values().any(|s| s.is_ok()) {
                    Err(SourceError::DcsUnreachable(
                        pgpatrol_core::checks::dcs_unreachable_line(&own),
                    ))
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }

    /// Each given URL's own `/patroni`, concurrently, by member name (its URL before Patroni
    /// 3.2, which does not say its name there).
    pub async fn own_statuses(
        &self,
    ) -> std::collections::BTreeMap<String, Result<pgpatrol_core::MemberStatus, String>> {
        let mut set = JoinSet::new();
        for base in &self.bases {
            let (http, base) = (self.http.clone(), base.clone());
            set.spawn(async move {
                let r = http.get_json::<StatusWire>(&base, "/patroni").await;
                (base, r)
            });
        }
        let mut out = std::collections::BTreeMap::new();
        while let Some(Ok((base, r))) = set.join_next().await {
            match r {
                Ok(s) => {
                    let name = s
                        .patroni
                        .as_ref()
                        .and_then(|p| p.name.clone())
                        .unwrap_or_else(|| base.clone());
                    out.insert(name, Ok(s.to_status()));
                }
                Err(e) => {
                    out.insert(base, Err(e.to_string()));
                }
            }
        }
        out
    }

    async fn rest_snapshot(&self, detail: Detail) -> Result<Snapshot, SourceError> {
        let http = &self.http;
        let ((wire, status), answered_by) = self
            .first_answer(|base| async move {
                let url = format!("{base}/cluster");
                match detail {
                    Detail::Lag => Ok((
                        http.get_json::<ClusterWire>(&base, "/cluster")
                            .await?
                            .checked(&url)?,
                        None,
                    )),
                    Detail::Full => {
                        let (c, s) = tokio::join!(
                            http.get_json::<ClusterWire>(&base, "/cluster"),
                            http.get_json::<StatusWire>(&base, "/patroni"),
                        );
                        Ok((c?.checked(&url)?, Some(s?)))
                    }
                }
            })
            .await?;
        let legacy = if needs_legacy_replay(&wire) {
            Some(self.legacy_replay(&wire).await)
        } else {
            None
        };
        let cluster = wire::into_cluster(wire, status.as_ref(), legacy.as_ref());
        Ok(Snapshot {
            cluster,
            answered_by,
        })
    }

    /// A snapshot from the DCS keys: the `/cluster` Patroni would serve from them, then the
    /// same conversion as over REST (Patroni < 4.1: replay positions from the members).
    async fn dcs_snapshot(
        &self,
        dcs: &crate::source::dcs::Dcs,
        detail: Detail,
    ) -> Result<Snapshot, SourceError> {
        let (keys, url) = dcs.read().await?;
        let bad = |bad| {
            SourceError::Dcs(crate::source::dcs::DcsError::NotPatroni {
                url: url.clone(),
                bad,
            })
        };
        let wire = keys.cluster_wire(&dcs.scope).map_err(bad)?;
        let status = keys.status_wire(&dcs.scope);
        let legacy = if needs_legacy_replay(&wire) {
            Some(self.legacy_replay(&wire).await)
        } else {
            None
        };
        // The DCS carries what `/patroni` adds (version, system id, unlocked), so every
        // detail gets it.
        let _ = detail;
        let cluster = wire::into_cluster(wire, Some(&status), legacy.as_ref());
        Ok(Snapshot {
            cluster,
            answered_by: format!("{url} ({})", dcs.prefix),
        })
    }

    /// Patroni < 4.1: every member's `/patroni`, fetched concurrently. A member that does not
    /// answer simply has no figures (its replay lag stays unknown).
    async fn legacy_replay(&self, wire: &ClusterWire) -> LegacyReplay {
        let mut set = JoinSet::new();
        for m in &wire.members {
            let Some(api) = m.api_url.clone() else {
                continue;
            };
            let http = self.http.clone();
            let name = m.name.clone();
            let leader = pgpatrol_core::Role::parse(&m.role).is_leader();
            set.spawn(async move {
                let status = match base_url(&api) {
                    Ok(base) => http.get_json::<StatusWire>(&base, "/patroni").await.ok(),
                    Err(_) => None,
                };
                (name, leader, status)
            });
        }
        let mut out = LegacyReplay::default();
        while let Some(Ok((name, leader, status))) = set.join_next().await {
            let Some(status) = status.filter(|s| s.xlog.is_some()) else {
                continue;
            };
            if leader {
                out.leader = Some(status.to_status());
            } else {
                out.replicas.insert(name, status.to_status());
            }
        }
        out
    }

    /// A member's own `/patroni` (fresher than `/cluster`, which lags by up to `loop_wait`).
    /// What the member at `api_url` says of itself (`GET /patroni`), in the core model.
    pub async fn member_status(
        &self,
        api_url: &str,
    ) -> Result<pgpatrol_core::MemberStatus, SourceError> {
        let base = base_url(api_url)?;
        Ok(self
            .http
            .get_json::<StatusWire>(&base, "/patroni")
            .await?
            .to_status())
    }

    pub async fn history(&self) -> Result<Vec<HistoryEntry>, SourceError> {
        if let Some(dcs) = self.primary_dcs() {
            let (keys, url) = dcs.read().await?;
            return wire::into_history(keys.history.unwrap_or_default()).map_err(|bad| {
                SourceError::Dcs(crate::source::dcs::DcsError::NotPatroni {
                    url,
                    bad: crate::source::dcs::wire::BadValue {
                        key: format!("{}history", dcs.prefix),
                        what: "timeline history",
                        reason: format!(
                            "line {} is not [timeline, lsn, reason, ...]: {}",
                            bad.index, bad.line
                        ),
                    },
                })
            });
        }
        let http = &self.http;
        let (wire, base) = self
            .first_answer(|b| async move { http.get_json::<HistoryWire>(&b, "/history").await })
            .await?;
        wire::into_history(wire).map_err(|bad| {
            SourceError::Rest(RestError::Shape {
                url: format!("{base}/history"),
                endpoint: "/history".into(),
                path: format!("[{}]", bad.index),
                reason: format!("a line is not [timeline, lsn, reason, ...]: {}", bad.line),
            })
        })
    }

    /// The dynamic configuration (`GET /config`), as Patroni stores it.
    pub async fn config(&self) -> Result<serde_json::Value, SourceError> {
        if let Some(dcs) = self.primary_dcs() {
            return Ok(dcs.config().await?);
        }
        let http = &self.http;
        let (v, _) = self
            .first_answer(
                |b| async move { http.get_json::<serde_json::Value>(&b, "/config").await },
            )
            .await?;
        Ok(v)
    }
}

/// `/cluster` in the pre-4.1 shape: replicas carry `lag` but no `replay_lag`.
fn needs_legacy_replay(wire: &ClusterWire) -> bool {
    wire.members
        .iter()
        .any(|m| !pgpatrol_core::Role::parse(&m.role).is_leader() && !m.has_split_lag())
}

/// A cluster from its DCS keys alone, as its `/cluster` and its leader's `/patroni` would
/// say (`list --all`). No member is asked, so before Patroni 4.1 replay positions stay
/// unknown.
pub fn cluster_from_dcs(
    keys: &crate::source::dcs::wire::DcsCluster,
    scope: &str,
) -> Result<Cluster, crate::source::dcs::wire::BadValue> {
    let wire = keys.cluster_wire(scope)?;
    let status = keys.status_wire(scope);
    Ok(wire::into_cluster(wire, Some(&status), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalised() {
        assert_eq!(base_url("127.0.0.1:8008").unwrap(), "http://127.0.0.1:8008");
        assert_eq!(
            base_url("http://127.0.0.1:8008/patroni").unwrap(),
            "http://127.0.0.1:8008"
        );
        assert_eq!(
            base_url("https://db-0.example:8443/").unwrap(),
            "https://db-0.example:8443"
        );
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("http://").is_err());
    }
}
