//! The Kubernetes source: finds a Patroni cluster's pods from a workload
//! (`statefulset/NAME`, `deployment/NAME`, `pod/NAME`) and carries Patroni's REST calls
//! through the API server, so that the REST source works unchanged on top of it.
//!
//! Reads (`GET /cluster`, `/patroni`, ...) go through the `pods/proxy` subresource. Writes
//! (`POST /reinitialize`, ...) go through `pods/portforward`, because the API server's proxy
//! strips the `Authorization` header and Patroni's unsafe endpoints need basic auth
//! (docs/KUBERNETES.md). With `--k8s-access direct` pgpatrol, running inside the cluster,
//! talks to the pod IPs itself.
//!
//! `discovery` finds the pods, `transport` carries the calls, `errors` words what the API
//! server refused.

pub mod dcs;
mod discovery;
mod errors;
pub mod exec;
pub mod lease;
pub mod scale;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::http::Http;
use super::SourceError;

pub use discovery::{
    client, discover, parse_resource, patroni_port, secret_credentials, selector_string,
    Discovered, Kind, PodInfo,
};
pub use errors::K8sError;
pub use transport::ApiServer;

/// Patroni's REST port when the container spec names none.
pub const DEFAULT_PORT: u16 = 8008;

/// How Patroni's REST calls reach the pods.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Reads through the API server's `pods/proxy`, writes through `pods/portforward`.
    #[default]
    Proxy,
    /// Straight to the pod IPs (pgpatrol runs inside the cluster's network).
    Direct,
    /// `curl` inside the pod over `pods/exec`, reads and writes (for clusters that forbid
    /// `pods/proxy` and `pods/portforward`).
    Exec,
}

/// Which Kubernetes workload is the Patroni cluster, and how to reach it (the flags, or a
/// watch cluster's `kubernetes:` section).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct K8sTarget {
    /// `statefulset/NAME`, `deployment/NAME` or `pod/NAME`.
    pub resource: String,
    pub namespace: Option<String>,
    pub context: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes, GKE, AKS, EKS, OpenShift, or anything else: a hint for messages, never
    /// required and never rejected.
    pub distribution: Option<String>,
    pub access: Access,
    /// Overrides the port found in the container spec.
    pub port: Option<u16>,
    /// A Secret with `username` and `password` keys for Patroni's unsafe endpoints.
    pub secret: Option<String>,
    /// Read snapshots from Patroni's Kubernetes DCS (ConfigMaps or Endpoints and the pods'
    /// `status` annotations) rather than a member's `/cluster` (`--k8s-dcs`). Without it the
    /// DCS is read only when no member's REST API answers.
    pub dcs: bool,
    /// Patroni's scope (the `cluster-name` label); else the workload selector's.
    pub scope: Option<String>,
}

impl Default for K8sTarget {
    fn default() -> Self {
        K8sTarget {
            resource: String::new(),
            namespace: None,
            context: None,
            kubeconfig: None,
            distribution: None,
            access: Access::Proxy,
            port: None,
            secret: None,
            dcs: false,
            scope: None,
        }
    }
}

/// Where a workload's snapshots are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// A ready pod's `/cluster`.
    Rest,
    /// The Kubernetes DCS (`--k8s-dcs`, or no pod ready while the DCS answers).
    Dcs,
    /// A ready pod's `/cluster`, the DCS when no pod answers.
    RestThenDcs,
}

/// A workload's members (the ready pods' REST API URLs, and the client that reaches them),
/// its Kubernetes DCS when the scope is known, and which to read snapshots from
/// (`source::cluster` puts them together).
#[derive(Debug, Clone)]
pub struct K8sSource {
    pub http: Http,
    pub urls: Vec<String>,
    pub dcs: Option<dcs::KubeDcs>,
    pub read_from: ReadFrom,
}

/// Finds a workload's members: the ready pods are the members tried for cluster-wide reads.
pub async fn source(
    t: &K8sTarget,
    http: Http,
    connect_timeout: Duration,
    http_timeout: Duration,
) -> Result<K8sSource, SourceError> {
    // Discovered as for the DCS (no ready pod needed): when no pod is ready (Patroni's REST
    // API, the usual readiness probe, is down), the DCS may still answer.
    let found = discover(
        &K8sTarget {
            dcs: true,
            ..t.clone()
        },
        connect_timeout,
        http_timeout,
    )
    .await?;
    let http = match &t.secret {
        Some(name) => {
            let creds = secret_credentials(&found.client, &found.namespace, name).await?;
            http.with_auth(Some(creds))
        }
        None => http,
    };
    let bases: Vec<String> = found
        .pods
        .iter()
        .filter(|p| p.ready)
        .filter_map(|p| {
            Some(format!(
                "http://{}:{}",
                p.ip.as_ref()?,
                p.port.clone().ok()?
            ))
        })
        .collect();
    let scope = t.scope.clone().filter(|s| !s.is_empty()).or_else(|| {
        found.selector.as_deref().and_then(|sel| {
            sel.split(',')
                .find_map(|kv| kv.trim().strip_prefix(&format!("{}=", dcs::SCOPE_LABEL)))
                .map(str::to_string)
        })
    });
    let kube_dcs = scope.map(|scope| dcs::KubeDcs {
        client: found.client.clone(),
        namespace: found.namespace.clone(),
        scope,
    });
    let http = match t.access {
        Access::Direct => http,
        Access::Proxy => http.with_transport(Arc::new(ApiServer::new(found, http_timeout))),
        Access::Exec => {
            http.with_transport(Arc::new(ApiServer::new(found, http_timeout).by_exec()))
        }
    };
    let workload = |dcs, read_from| {
        Ok(K8sSource {
            http: http.clone(),
            urls: bases.clone(),
            dcs,
            read_from,
        })
    };
    if !t.dcs && bases.is_empty() {
        // No member to ask over REST: the DCS if it answers, else discovery's own words.
        if let Some(d) = kube_dcs {
            if d.read().await.is_ok() {
                return workload(Some(d), ReadFrom::Dcs);
            }
        }
        discover(t, connect_timeout, http_timeout).await?;
        return workload(None, ReadFrom::Rest);
    }
    match (t.dcs, kube_dcs) {
        (true, Some(d)) => workload(Some(d), ReadFrom::Dcs),
        (true, None) => Err(SourceError::BadInput(format!(
            "--k8s-dcs needs Patroni's scope: pass --scope NAME ({} has no {} label in its selector)",
            t.resource,
            dcs::SCOPE_LABEL
        ))),
        (false, d @ Some(_)) => workload(d, ReadFrom::RestThenDcs),
        (false, None) => workload(None, ReadFrom::Rest),
    }
}
