//! One cluster as every command and the watcher read it: [`ClusterSource`], built by
//! `target.rs` from what the operator named. Snapshots come from the members' REST API, from
//! the DCS (as patronictl reads them), or from the REST API and then, when no member
//! answers, the DCS (the Kubernetes DCS). The members themselves are always reached over REST
//! (their `api_url`): Patroni < 4.1's replay positions, heal, which members do not answer.
//!
//! This is the one module of `source/` that names `rest`, `dcs` and `k8s` together: they
//! build on `http` and `wire` and never on each other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pgpatrol_core::{Cluster, HistoryEntry, MemberStatus};

use super::dcs::{Dcs, DcsError};
use super::http::Http;
use super::k8s::dcs::KubeDcs;
use super::rest::{Detail, RestSource, Silent, Snapshot};
use super::wire::dcs::{BadValue, DcsCluster};
use super::wire::rest as wire;
use super::SourceError;

/// A cluster's DCS: an etcd prefix, or the Kubernetes objects labelled with its scope.
#[derive(Debug, Clone)]
pub enum DcsSource {
    Etcd(Dcs),
    Kubernetes(KubeDcs),
}

impl DcsSource {
    pub fn scope(&self) -> &str {
        match self {
            DcsSource::Etcd(d) => &d.scope,
            DcsSource::Kubernetes(k) => &k.scope,
        }
    }

    /// `/<namespace>/<scope>/` in etcd; `<namespace>/cluster-name=<scope>` in Kubernetes.
    pub fn prefix(&self) -> String {
        match self {
            DcsSource::Etcd(d) => d.prefix.clone(),
            DcsSource::Kubernetes(k) => k.prefix(),
        }
    }

    /// The cluster's keys (or objects), decoded, and where they were read.
    pub async fn read(&self) -> Result<(DcsCluster, String), SourceError> {
        match self {
            DcsSource::Etcd(d) => Ok(d.read().await?),
            DcsSource::Kubernetes(k) => Ok(k.read().await?),
        }
    }

    /// The dynamic configuration (`config` key), as `GET /config` serves it.
    pub async fn config(&self) -> Result<serde_json::Value, SourceError> {
        let (c, url) = self.read().await?;
        c.config.map(serde_json::Value::Object).ok_or_else(|| {
            SourceError::Dcs(DcsError::NoConfig {
                url,
                prefix: self.prefix(),
            })
        })
    }

    /// A value that is not Patroni's, named with where it was read.
    fn not_patroni(&self, url: String, bad: BadValue) -> SourceError {
        match self {
            DcsSource::Etcd(_) => SourceError::Dcs(DcsError::NotPatroni { url, bad }),
            DcsSource::Kubernetes(_) => {
                SourceError::KubeDcs(super::k8s::dcs::KubeDcsError::NotPatroni { origin: url, bad })
            }
        }
    }
}

/// Where one cluster's snapshots come from.
#[derive(Debug, Clone)]
pub enum ClusterSource {
    /// A member's `/cluster`, the given URLs tried in turn.
    Rest(RestSource),
    /// The DCS (`--dcs`, `--k8s-dcs`); `rest` reaches the members by their `api_url`.
    Dcs {
        rest: RestSource,
        dcs: Arc<DcsSource>,
    },
    /// A member's `/cluster`, and the DCS when no member's REST API answers (the Kubernetes
    /// DCS behind a workload).
    RestThenDcs {
        rest: RestSource,
        dcs: Arc<DcsSource>,
    },
}

impl From<RestSource> for ClusterSource {
    fn from(rest: RestSource) -> Self {
        ClusterSource::Rest(rest)
    }
}

impl ClusterSource {
    /// The REST API at `urls`, tried in turn.
    pub fn new(http: Http, urls: &[String]) -> Result<Self, SourceError> {
        Ok(ClusterSource::Rest(RestSource::new(http, urls)?))
    }

    /// A workload's source (`--k8s-resource`), as Kubernetes discovery found it.
    pub fn from_k8s(found: super::k8s::K8sSource) -> Result<Self, SourceError> {
        use super::k8s::ReadFrom;
        let (http, urls) = (found.http, &found.urls);
        Ok(match (found.read_from, found.dcs) {
            (ReadFrom::Dcs, Some(k)) => ClusterSource::Dcs {
                rest: RestSource::members(http, urls)?,
                dcs: Arc::new(DcsSource::Kubernetes(k)),
            },
            (ReadFrom::RestThenDcs, Some(k)) => ClusterSource::RestThenDcs {
                rest: RestSource::new(http, urls)?,
                dcs: Arc::new(DcsSource::Kubernetes(k)),
            },
            _ => ClusterSource::Rest(RestSource::new(http, urls)?),
        })
    }

    /// The REST side: the given URLs and the HTTP client every member is reached with.
    pub fn rest(&self) -> &RestSource {
        match self {
            ClusterSource::Rest(rest)
            | ClusterSource::Dcs { rest, .. }
            | ClusterSource::RestThenDcs { rest, .. } => rest,
        }
    }

    pub fn http(&self) -> &Http {
        self.rest().http()
    }

    pub fn bases(&self) -> &[String] {
        self.rest().bases()
    }

    /// The DCS snapshots are read from first (`--dcs`, `--k8s-dcs`); not a fallback one.
    pub fn dcs(&self) -> Option<&DcsSource> {
        match self {
            ClusterSource::Dcs { dcs, .. } => Some(dcs),
            _ => None,
        }
    }

    /// The etcd snapshots are read from (`--dcs`): `remove` and `report` read its keys.
    pub fn etcd(&self) -> Option<&Dcs> {
        match self.dcs() {
            Some(DcsSource::Etcd(d)) => Some(d),
            _ => None,
        }
    }

    /// Reads a snapshot of the cluster. Over REST, when no member answers `/cluster` but
    /// some answer their own `/patroni`, the error says the DCS is unreachable (Patroni reads
    /// `/cluster` from it), not that the members are down; a fallback DCS is read then, and
    /// the REST failure is the one reported when it fails too.
    pub async fn snapshot(&self, detail: Detail) -> Result<Snapshot, SourceError> {
        match self {
            ClusterSource::Rest(rest) => rest.snapshot(detail).await,
            ClusterSource::Dcs { rest, dcs } => dcs_snapshot(rest, dcs).await,
            ClusterSource::RestThenDcs { rest, dcs } => match rest.snapshot(detail).await {
                Err(e) => match dcs_snapshot(rest, dcs).await {
                    Ok(snap) => {
                        tracing::debug!(error = %e, "no REST API answered: read the DCS");
                        Ok(snap)
                    }
                    Err(_) => Err(e),
                },
                ok => ok,
            },
        }
    }

    pub async fn history(&self) -> Result<Vec<HistoryEntry>, SourceError> {
        let Some(dcs) = self.dcs() else {
            return self.rest().history().await;
        };
        let (keys, url) = dcs.read().await?;
        wire::into_history(keys.history.unwrap_or_default()).map_err(|bad| {
            dcs.not_patroni(
                url,
                BadValue {
                    key: format!("{}history", dcs.prefix()),
                    what: "timeline history",
                    reason: format!(
                        "line {} is not [timeline, lsn, reason, ...]: {}",
                        bad.index, bad.line
                    ),
                },
            )
        })
    }

    /// The dynamic configuration (`GET /config`), as Patroni stores it.
    pub async fn config(&self) -> Result<serde_json::Value, SourceError> {
        match self.dcs() {
            Some(dcs) => dcs.config().await,
            None => self.rest().config().await,
        }
    }

    /// What the member at `api_url` says of itself (`GET /patroni`), in the core model.
    pub async fn member_status(&self, api_url: &str) -> Result<MemberStatus, SourceError> {
        self.rest().member_status(api_url).await
    }

    /// The dynamic configuration as the member at `api_url` sees it (its own `GET /config`).
    pub async fn member_config(&self, api_url: &str) -> Result<serde_json::Value, SourceError> {
        self.rest().member_config(api_url).await
    }

    /// Each given URL's own `/patroni`, by member name.
    pub async fn own_statuses(&self) -> BTreeMap<String, Result<MemberStatus, String>> {
        self.rest().own_statuses().await
    }

    /// The members of `cluster` whose REST API does not answer `GET /patroni` in `timeout`.
    pub async fn silent_members(&self, cluster: &Cluster, timeout: Duration) -> Vec<Silent> {
        self.rest().silent_members(cluster, timeout).await
    }
}

/// A snapshot from the DCS: the `/cluster` Patroni would serve from its keys, then the same
/// conversion as over REST (Patroni < 4.1: replay positions from the members). The DCS
/// carries what `/patroni` adds (version, system id, unlocked), so every detail gets it.
async fn dcs_snapshot(rest: &RestSource, dcs: &DcsSource) -> Result<Snapshot, SourceError> {
    let (keys, url) = dcs.read().await?;
    let wire = keys
        .cluster_wire(dcs.scope())
        .map_err(|bad| dcs.not_patroni(url.clone(), bad))?;
    let status = keys.status_wire(dcs.scope());
    let legacy = if wire::needs_legacy_replay(&wire) {
        Some(rest.legacy_replay(&wire).await)
    } else {
        None
    };
    let cluster = wire::into_cluster(wire, Some(&status), legacy.as_ref());
    Ok(Snapshot {
        cluster,
        answered_by: format!("{url} ({})", dcs.prefix()),
    })
}
