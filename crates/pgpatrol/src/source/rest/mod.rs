//! The Patroni REST API as a source of cluster snapshots. Any member answers for the whole
//! cluster (`/cluster` is read from the DCS); several URLs are tried in turn.

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
        Ok(RestSource { http, bases })
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
        match self.read_snapshot(detail).await {
            Err(e @ (SourceError::Rest(_) | SourceError::AllFailed(_))) => {
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

    async fn read_snapshot(&self, detail: Detail) -> Result<Snapshot, SourceError> {
        let http = &self.http;
        let ((wire, status), answered_by) = self
            .first_answer(|base| async move {
                match detail {
                    Detail::Lag => {
                        Ok((http.get_json::<ClusterWire>(&base, "/cluster").await?, None))
                    }
                    Detail::Full => {
                        let (c, s) = tokio::join!(
                            http.get_json::<ClusterWire>(&base, "/cluster"),
                            http.get_json::<StatusWire>(&base, "/patroni"),
                        );
                        Ok((c?, Some(s?)))
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
        let http = &self.http;
        let (wire, base) = self
            .first_answer(|b| async move { http.get_json::<HistoryWire>(&b, "/history").await })
            .await?;
        wire::into_history(wire).map_err(|bad| {
            SourceError::Rest(RestError::Shape {
                url: format!("{base}/history"),
                endpoint: "/history".into(),
                reason: format!("a line is not [timeline, lsn, reason, ...]: {}", bad.0),
            })
        })
    }

    /// The dynamic configuration (`GET /config`), as Patroni stores it.
    pub async fn config(&self) -> Result<serde_json::Value, SourceError> {
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
