//! The Patroni REST API as a source of cluster snapshots. Any member answers for the whole
//! cluster (`/cluster` is read from the DCS); several URLs are tried in turn. Calls go
//! through `http` (straight, or carried by the Kubernetes API server); the JSON is decoded
//! by `wire::rest`. Reading from the DCS instead is `source::cluster`'s choice, not this
//! module's: it names no other source.

use tokio::task::JoinSet;

use pgpatrol_core::{Cluster, HistoryEntry};

use super::http::{base_url, Http, HttpError, Request};
use super::wire::rest::{self as wire, ClusterWire, HistoryWire, LegacyReplay, StatusWire};
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

/// A member the DCS lists that does not answer its REST API, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silent {
    pub name: String,
    pub reason: String,
}

impl RestSource {
    pub fn new(http: Http, urls: &[String]) -> Result<Self, SourceError> {
        if urls.is_empty() {
            return Err(SourceError::NoTarget);
        }
        Self::members(http, urls)
    }

    /// A source for reaching members (by the `api_url` the DCS carries) when snapshots come
    /// from the DCS: `urls` may be empty.
    pub fn members(http: Http, urls: &[String]) -> Result<Self, SourceError> {
        let bases = urls
            .iter()
            .map(|u| base_url(u))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RestSource { http, bases })
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
        Fut: std::future::Future<Output = Result<T, HttpError>>,
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
    ///
    /// Only when no `/cluster` answered: an answer that does not fit Patroni's shape is named
    /// as such (URL, JSON path, what was expected), as the DCS answered it.
    pub async fn snapshot(&self, detail: Detail) -> Result<Snapshot, SourceError> {
        match self.rest_snapshot(detail).await {
            Err(SourceError::AllFailed(mut errors))
                if errors.iter().any(HttpError::is_malformed_answer) =>
            {
                let i = errors
                    .iter()
                    .position(HttpError::is_malformed_answer)
                    .unwrap_or_default();
                Err(SourceError::Http(errors.swap_remove(i)))
            }
            Err(e @ (SourceError::Http(_) | SourceError::AllFailed(_))) if e.no_answer() => {
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
        let legacy = if wire::needs_legacy_replay(&wire) {
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
    pub async fn legacy_replay(&self, wire: &ClusterWire) -> LegacyReplay {
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

    /// The dynamic configuration as the member at `api_url` sees it (`GET /config` there:
    /// Patroni serves it from its own view of the DCS).
    pub async fn member_config(&self, api_url: &str) -> Result<serde_json::Value, SourceError> {
        let base = base_url(api_url)?;
        Ok(self
            .http
            .get_json::<serde_json::Value>(&base, "/config")
            .await?)
    }

    pub async fn history(&self) -> Result<Vec<HistoryEntry>, SourceError> {
        let http = &self.http;
        let (wire, base) = self
            .first_answer(|b| async move { http.get_json::<HistoryWire>(&b, "/history").await })
            .await?;
        wire::into_history(wire).map_err(|bad| {
            SourceError::Http(HttpError::Shape {
                url: format!("{base}/history"),
                endpoint: "/history".into(),
                path: format!("[{}]", bad.index),
                reason: format!("a line is not [timeline, lsn, reason, ...]: {}", bad.line),
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
