//! The Kubernetes source: finds a Patroni cluster's pods from a workload
//! (`statefulset/NAME`, `deployment/NAME`, `pod/NAME`) and carries Patroni's REST calls
//! through the API server, so that [`RestSource`] works unchanged on top of it.
//!
//! Reads (`GET /cluster`, `/patroni`, ...) go through the `pods/proxy` subresource. Writes
//! (`POST /reinitialize`, ...) go through `pods/portforward`, because the API server's proxy
//! strips the `Authorization` header and Patroni's unsafe endpoints need basic auth
//! (docs/KUBERNETES.md). With `--k8s-access direct` pgpatrol, running inside the cluster,
//! talks to the pod IPs itself.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::rest::{
    BoxFuture, Credentials, Http, Request, Response, RestError, RestSource, Transport,
};
use super::SourceError;
use crate::text::{error_chain, one_line};

/// Patroni's REST port when the container spec names none.
pub const DEFAULT_PORT: u16 = 8008;

/// How Patroni's REST calls reach the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Reads through the API server's `pods/proxy`, writes through `pods/portforward`.
    #[default]
    Proxy,
    /// Straight to the pod IPs (pgpatrol runs inside the cluster's network).
    Direct,
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
        }
    }
}

/// Why the Kubernetes source could not be set up. Each message is one line that says what
/// to do.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("{0}")]
    Config(String),
    #[error(
        "unknown resource kind {kind:?} in {resource:?}: use statefulset/NAME, deployment/NAME or pod/NAME"
    )]
    Kind { kind: String, resource: String },
    #[error("{0}")]
    Discovery(String),
    #[error(
        "forbidden: cannot {verb} {resource} in namespace {namespace}: grant {verb:?} on {resource:?} to the service account (see deploy/rbac.yaml)"
    )]
    Forbidden {
        verb: String,
        resource: String,
        namespace: String,
    },
    #[error("{0}")]
    Api(String),
}

impl From<K8sError> for SourceError {
    fn from(e: K8sError) -> Self {
        SourceError::BadInput(e.to_string())
    }
}

/// A workload kind pgpatrol can find pods from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    StatefulSet,
    Deployment,
    Pod,
}

/// `statefulset/mypatroni-1` → (StatefulSet, "mypatroni-1"), with kubectl's short names.
pub fn parse_resource(raw: &str) -> Result<(Kind, String), K8sError> {
    let bad = |kind: &str| K8sError::Kind {
        kind: kind.to_string(),
        resource: raw.to_string(),
    };
    let Some((kind, name)) = raw.split_once('/') else {
        return Err(K8sError::Config(format!(
            "{raw:?} is not KIND/NAME: write e.g. statefulset/mypatroni-1"
        )));
    };
    let kind_l = kind.to_ascii_lowercase();
    let kind_l = kind_l.split('.').next().unwrap_or_default();
    let k = match kind_l {
        "statefulset" | "statefulsets" | "sts" => Kind::StatefulSet,
        "deployment" | "deployments" | "deploy" => Kind::Deployment,
        "pod" | "pods" | "po" => Kind::Pod,
        _ => return Err(bad(kind)),
    };
    if name.is_empty() || name.contains('/') {
        return Err(K8sError::Config(format!(
            "{raw:?} is not KIND/NAME: write e.g. statefulset/mypatroni-1"
        )));
    }
    Ok((k, name.to_string()))
}

/// A label selector as the API's `labelSelector` query string.
pub fn selector_string(sel: &LabelSelector) -> Result<String, K8sError> {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            op => {
                return Err(K8sError::Discovery(format!(
                    "the selector has an operator {op:?} that pgpatrol does not know"
                )))
            }
        });
    }
    if parts.is_empty() {
        return Err(K8sError::Discovery(
            "the workload has an empty selector: name a pod with pod/NAME".into(),
        ));
    }
    Ok(parts.join(","))
}

/// A pod that may run a Patroni member.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub name: String,
    pub ip: Option<String>,
    pub ready: bool,
    /// Patroni's REST port, or why none was found.
    pub port: Result<u16, String>,
    pub phase: String,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod, override_port: Option<u16>) -> Self {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        PodInfo {
            ip: status.and_then(|s| s.pod_ip.clone()),
            ready,
            port: match override_port {
                Some(p) => Ok(p),
                None => patroni_port(pod),
            },
            phase: status
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into()),
            name,
        }
    }
}

/// Patroni's REST port from the container spec: a port named like `patroni`, `api` or
/// `restapi`, else a declared 8008, else 8008 when no container declares any port. A pod
/// whose containers declare ports but none of Patroni's is an error: guessing would send
/// Patroni's requests to PostgreSQL or a sidecar.
pub fn patroni_port(pod: &Pod) -> Result<u16, String> {
    let ports: Vec<(String, i32)> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect();
    let named = ports.iter().find(|(n, _)| {
        let n = n.to_ascii_lowercase();
        n.contains("patroni") || n == "api" || n == "restapi" || n == "rest-api" || n == "http-api"
    });
    let to_u16 = |p: i32| u16::try_from(p).map_err(|_| format!("port {p} is out of range"));
    if let Some((_, p)) = named {
        return to_u16(*p);
    }
    if ports.iter().any(|(_, p)| *p == i32::from(DEFAULT_PORT)) || ports.is_empty() {
        return Ok(DEFAULT_PORT);
    }
    let listed: Vec<String> = ports
        .iter()
        .map(|(n, p)| {
            if n.is_empty() {
                p.to_string()
            } else {
                format!("{p} ({n})")
            }
        })
        .collect();
    Err(format!(
        "declares ports {} but none named patroni/api and not {DEFAULT_PORT}",
        listed.join(", ")
    ))
}

/// Turns a kube error into one line; a 403 names the verb and resource to grant.
fn api_error(e: kube::Error, verb: &str, resource: &str, namespace: &str) -> K8sError {
    match e {
        kube::Error::Api(status) => status_error(&status, verb, resource, namespace),
        other => K8sError::Api(format!(
            "cannot {verb} {resource} in namespace {namespace}: the API server did not answer ({}): check --kubeconfig and --context",
            one_line(&error_chain(&other))
        )),
    }
}

/// An API server `Status` as an error. A 403 names what the server checked: the verb and
/// resource from its RBAC message (`cannot create resource "pods/portforward"`), else the
/// Status's `details.kind` with the verb of this call, else this call's verb and resource.
/// The server's words win because it may check another verb than the HTTP method suggests
/// (a websocket upgrade is a GET that newer servers authorize as `create`).
fn status_error(
    status: &kube::core::Status,
    verb: &str,
    resource: &str,
    namespace: &str,
) -> K8sError {
    if status.code == 403 {
        let (verb, resource) = rbac_denial(&status.message).unwrap_or_else(|| {
            let kind = status
                .details
                .as_ref()
                .map(|d| d.kind.clone())
                .filter(|k| k.contains('/'))
                .unwrap_or_else(|| resource.to_string());
            (verb.to_string(), kind)
        });
        return K8sError::Forbidden {
            verb,
            resource,
            namespace: namespace.into(),
        };
    }
    let detail = if status.message.is_empty() {
        status.reason.clone()
    } else {
        status.message.clone()
    };
    K8sError::Api(format!(
        "cannot {verb} {resource} in namespace {namespace}: the API server answered {}: {}",
        status.code,
        one_line(&detail)
    ))
}

/// A Kubernetes error on a Patroni call: an RBAC denial stands alone (it is the same for
/// every pod, and says what to grant); anything else names the call.
fn rest_error(url: &str, e: K8sError) -> RestError {
    match e {
        K8sError::Forbidden { .. } => RestError::KubernetesDenied(e.to_string()),
        other => RestError::Kubernetes {
            url: url.to_string(),
            reason: other.to_string(),
        },
    }
}

/// `... cannot create resource "pods/portforward" in API group "" ...` → (create,
/// pods/portforward), as the RBAC authorizer words a denial.
fn rbac_denial(message: &str) -> Option<(String, String)> {
    let rest = &message[message.find(" cannot ")? + " cannot ".len()..];
    let (verb, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("resource \"")?;
    let (resource, _) = rest.split_once('"')?;
    (!verb.is_empty() && !resource.is_empty()).then(|| (verb.to_string(), resource.to_string()))
}

/// Loads the client configuration: `--kubeconfig`/`KUBECONFIG`, else `~/.kube/config`, else
/// the pod's service account when running in a cluster. In a pod without a kubeconfig the
/// context is ignored: the seed's `CONTEXT=default` names the only context there is.
async fn client_config(t: &K8sTarget) -> Result<kube::Config, K8sError> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let incluster = || {
        kube::Config::incluster().map_err(|e| {
            K8sError::Config(format!(
                "cannot use the in-cluster service account: {}",
                one_line(&error_chain(&e))
            ))
        })
    };
    let kc = match &t.kubeconfig {
        Some(p) => read_kubeconfigs(p)?,
        None if in_cluster && t.context.is_none() => return incluster(),
        None => match Kubeconfig::read() {
            Ok(kc) => kc,
            Err(_) if in_cluster => return incluster(),
            Err(e) => {
                return Err(K8sError::Config(format!(
                    "no kubeconfig: pass --kubeconfig or set KUBECONFIG ({})",
                    one_line(&error_chain(&e))
                )))
            }
        },
    };
    if let Some(ctx) = &t.context {
        if !kc.contexts.iter().any(|c| &c.name == ctx) {
            let known: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
            return Err(K8sError::Config(format!(
                "context {ctx:?} is not in the kubeconfig (it has: {}): pass --context or set CONTEXT",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    let opts = KubeConfigOptions {
        context: t.context.clone(),
        cluster: None,
        user: None,
    };
    kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| {
            K8sError::Config(format!(
                "cannot use the kubeconfig: {}",
                one_line(&error_chain(&e))
            ))
        })
}

/// Reads a kubeconfig, or a `:`-separated list of them merged as kubectl merges
/// `KUBECONFIG` (the first file to set a value wins).
fn read_kubeconfigs(paths: &std::path::Path) -> Result<Kubeconfig, K8sError> {
    let mut merged: Option<Kubeconfig> = None;
    for p in std::env::split_paths(paths.as_os_str()) {
        if p.as_os_str().is_empty() {
            continue;
        }
        let fail = |e: kube::config::KubeconfigError| {
            K8sError::Config(format!(
                "cannot read the kubeconfig {}: {}",
                p.display(),
                one_line(&error_chain(&e))
            ))
        };
        let kc = Kubeconfig::read_from(&p).map_err(fail)?;
        merged = Some(match merged {
            Some(m) => m.merge(kc).map_err(fail)?,
            None => kc,
        });
    }
    merged.ok_or_else(|| K8sError::Config("the kubeconfig path is empty".into()))
}

/// What discovery found: the namespace, the pods, and the client to reach them.
#[derive(Clone)]
pub struct Discovered {
    pub client: Client,
    pub namespace: String,
    pub pods: Vec<PodInfo>,
    /// The workload's label selector; `None` for `pod/NAME` (then the namespace's pods).
    pub selector: Option<String>,
    pub port: Option<u16>,
}

/// Finds the workload's pods. The timeouts bound each call to the API server (kube's
/// defaults would let a hung API server stall an SLI reading for minutes).
pub async fn discover(
    t: &K8sTarget,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<Discovered, K8sError> {
    let (kind, name) = parse_resource(&t.resource)?;
    let mut config = client_config(t).await?;
    config.connect_timeout = Some(connect_timeout);
    config.read_timeout = Some(request_timeout);
    config.write_timeout = Some(request_timeout);
    let namespace = t
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| {
        K8sError::Config(format!(
            "cannot set up the Kubernetes client: {}",
            one_line(&error_chain(&e))
        ))
    })?;
    let ns = namespace.as_str();
    let not_found = |what: &str| {
        let openshift = t
            .distribution
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case("openshift"));
        let hint = if openshift {
            " (on OpenShift, the namespace is the project)"
        } else {
            ""
        };
        K8sError::Discovery(format!(
            "{what} {name} not found in namespace {ns}{hint}: check --k8s-resource and --namespace"
        ))
    };
    let selector = match kind {
        Kind::StatefulSet => {
            let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get_opt(&name)
                .await
                .map_err(|e| api_error(e, "get", "statefulsets", ns))?
                .ok_or_else(|| not_found("statefulset"))?;
            Some(selector_string(
                &sts.spec.map(|s| s.selector).unwrap_or_default(),
            )?)
        }
        Kind::Deployment => {
            let d = Api::<Deployment>::namespaced(client.clone(), ns)
                .get_opt(&name)
                .await
                .map_err(|e| api_error(e, "get", "deployments", ns))?
                .ok_or_else(|| not_found("deployment"))?;
            Some(selector_string(
                &d.spec.map(|s| s.selector).unwrap_or_default(),
            )?)
        }
        Kind::Pod => None,
    };
    let pods = match &selector {
        Some(sel) => list_pods(&client, ns, Some(sel), t.port).await?,
        None => {
            let pod = Api::<Pod>::namespaced(client.clone(), ns)
                .get_opt(&name)
                .await
                .map_err(|e| api_error(e, "get", "pods", ns))?
                .ok_or_else(|| not_found("pod"))?;
            vec![PodInfo::from_pod(&pod, t.port)]
        }
    };
    if pods.is_empty() {
        return Err(K8sError::Discovery(format!(
            "{} in namespace {ns} has no pods (selector {})",
            t.resource,
            selector.clone().unwrap_or_default()
        )));
    }
    let ready: Vec<&PodInfo> = pods.iter().filter(|p| p.ready && p.ip.is_some()).collect();
    if ready.is_empty() {
        let states: Vec<String> = pods
            .iter()
            .map(|p| format!("{} {}", p.name, p.phase))
            .collect();
        return Err(K8sError::Discovery(format!(
            "{} in namespace {ns} has no ready pod ({}): wait for one, or check the pods' readiness",
            t.resource,
            states.join(", ")
        )));
    }
    if ready.iter().all(|p| p.port.is_err()) {
        let p = ready[0];
        return Err(K8sError::Discovery(format!(
            "pod {} {}: pass --k8s-port",
            p.name,
            p.port.clone().err().unwrap_or_default()
        )));
    }
    Ok(Discovered {
        client,
        namespace,
        pods,
        selector,
        port: t.port,
    })
}

/// The pods matching `selector` (all the namespace's pods without one), sorted by name.
async fn list_pods(
    client: &Client,
    ns: &str,
    selector: Option<&str>,
    port: Option<u16>,
) -> Result<Vec<PodInfo>, K8sError> {
    let mut lp = ListParams::default();
    if let Some(sel) = selector {
        lp = lp.labels(sel);
    }
    let mut pods: Vec<PodInfo> = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map_err(|e| api_error(e, "list", "pods", ns))?
        .items
        .iter()
        .map(|p| PodInfo::from_pod(p, port))
        .collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(pods)
}

/// Reads Patroni's REST credentials from a Secret's `username` and `password` keys.
pub async fn secret_credentials(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Credentials, K8sError> {
    let secret: Secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| api_error(e, "get", "secrets", namespace))?
        .ok_or_else(|| {
            K8sError::Discovery(format!(
                "secret {name} not found in namespace {namespace}: check --k8s-secret"
            ))
        })?;
    let key = |k: &str| -> Result<String, K8sError> {
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.clone());
        let data = data.or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(k))
                .map(|s| s.clone().into_bytes())
        });
        let bytes = data.ok_or_else(|| {
            K8sError::Discovery(format!(
                "secret {name} in namespace {namespace} has no key {k:?} (it needs username and password)"
            ))
        })?;
        String::from_utf8(bytes)
            .map_err(|_| K8sError::Discovery(format!("secret {name}: key {k:?} is not UTF-8")))
    };
    Ok(Credentials {
        username: key("username")?,
        password: key("password")?,
    })
}

/// Builds the REST source: the ready pods are the members tried for cluster-wide reads.
pub async fn source(
    t: &K8sTarget,
    http: Http,
    connect_timeout: Duration,
    http_timeout: Duration,
) -> Result<RestSource, SourceError> {
    let found = discover(t, connect_timeout, http_timeout).await?;
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
    let http = match t.access {
        Access::Direct => http,
        Access::Proxy => http.with_transport(Arc::new(ApiServer {
            client: found.client,
            namespace: found.namespace,
            pods: RwLock::new(found.pods),
            selector: found.selector,
            port: found.port,
            timeout: http_timeout,
        })),
    };
    RestSource::new(http, &bases)
}

/// Carries Patroni requests through the API server: `base` names a pod by its IP (and
/// port), or by its name as the first label of a host name.
pub struct ApiServer {
    client: Client,
    namespace: String,
    /// The pods as last listed; listed again when a member's address names none of them
    /// (a restarted pod has a new IP; a long-running `watch` sees that).
    pods: RwLock<Vec<PodInfo>>,
    selector: Option<String>,
    port: Option<u16>,
    timeout: Duration,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiServer({})", self.namespace)
    }
}

impl ApiServer {
    /// The pod name and port a member's base URL stands for, listing the pods again once
    /// when none matches.
    async fn pod_for(&self, base: &str) -> Result<(String, u16), RestError> {
        let found = {
            let pods = self.pods.read().unwrap_or_else(|p| p.into_inner());
            find_pod(&pods, base, &self.namespace)
        };
        match found {
            Err(RestError::Kubernetes { .. }) => {
                let fresh = list_pods(
                    &self.client,
                    &self.namespace,
                    self.selector.as_deref(),
                    self.port,
                )
                .await
                .map_err(|e| RestError::Kubernetes {
                    url: base.to_string(),
                    reason: e.to_string(),
                })?;
                let found = find_pod(&fresh, base, &self.namespace);
                *self.pods.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                found
            }
            other => other,
        }
    }
}

/// The pod a member's base URL stands for: by IP and port, by IP alone when one pod has
/// it, else by name as the first label of a host name.
fn find_pod(pods: &[PodInfo], base: &str, namespace: &str) -> Result<(String, u16), RestError> {
    let url = reqwest::Url::parse(base).map_err(|e| RestError::Kubernetes {
        url: base.to_string(),
        reason: format!("not a URL: {e}"),
    })?;
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let port = url.port_or_known_default();
    let by_ip: Vec<&PodInfo> = pods
        .iter()
        .filter(|p| p.ip.as_deref() == Some(host))
        .collect();
    // Pod IPs are unique in a cluster; (IP, port) also tells apart pods that share an IP
    // (host networking, or the test fixture on loopback).
    let pod = by_ip
        .iter()
        .find(|p| port.is_some() && p.port.as_ref().ok().copied() == port)
        .or(if by_ip.len() == 1 {
            by_ip.first()
        } else {
            None
        })
        .copied()
        .or_else(|| {
            let label = host.split('.').next().unwrap_or_default();
            pods.iter().find(|p| p.name == label)
        })
        .ok_or_else(|| RestError::Kubernetes {
            url: base.to_string(),
            reason: format!(
                "no pod of the workload in namespace {namespace} has IP or name {host}"
            ),
        })?;
    let port = port
        .or(pod.port.as_ref().ok().copied())
        .unwrap_or(DEFAULT_PORT);
    Ok((pod.name.clone(), port))
}

impl Transport for ApiServer {
    /// Sends one request: reads by `pods/proxy`, writes by `pods/portforward`.
    fn send<'a>(
        &'a self,
        req: &'a Request,
        auth: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<Response, RestError>> {
        Box::pin(self.send_one(req, auth))
    }
}

impl ApiServer {
    async fn send_one(
        &self,
        req: &Request,
        auth: Option<&Credentials>,
    ) -> Result<Response, RestError> {
        let (pod, port) = self.pod_for(&req.base).await?;
        let timeout = req.timeout.unwrap_or(self.timeout);
        let call = async {
            if req.method == reqwest::Method::GET || req.method == reqwest::Method::HEAD {
                self.proxy(req, &pod, port).await
            } else {
                self.port_forward(req, &pod, port, auth).await
            }
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| RestError::Timeout {
                url: req.url(),
                timeout: humantime::format_duration(timeout).to_string(),
            })?
    }

    async fn proxy(&self, req: &Request, pod: &str, port: u16) -> Result<Response, RestError> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{pod}:{port}/proxy{}",
            self.namespace, req.path
        );
        let fail = |reason: String| RestError::Kubernetes {
            url: req.url(),
            reason,
        };
        let http_req = http::Request::builder()
            .method(req.method.as_str())
            .uri(&path)
            .body(kube::client::Body::empty())
            .map_err(|e| fail(e.to_string()))?;
        let resp = self
            .client
            .send(http_req)
            .await
            .map_err(|e| fail(one_line(&error_chain(&e))))?;
        let status = resp.status().as_u16();
        let is_json = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let bytes = resp
            .into_body()
            .collect_bytes()
            .await
            .map_err(|e| fail(one_line(&error_chain(&e))))?;
        let body = String::from_utf8_lossy(&bytes).into_owned();
        // An error of the API server itself (RBAC, pod gone, pod unreachable) is a Status
        // object; Patroni never answers with one.
        if is_json && status >= 400 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if v["kind"] == "Status" && v["apiVersion"] == "v1" {
                if let Ok(st) = serde_json::from_value::<kube::core::Status>(v) {
                    return Err(rest_error(
                        &req.url(),
                        status_error(&st, "get", "pods/proxy", &self.namespace),
                    ));
                }
            }
        }
        Ok(Response {
            status: reqwest::StatusCode::from_u16(status)
                .map_err(|e| fail(format!("bad status {status}: {e}")))?,
            body,
        })
    }

    /// One HTTP/1.0 exchange over a port-forward stream: the pod's Patroni sees the request
    /// as sent, `Authorization` included, and closes the connection after answering.
    async fn port_forward(
        &self,
        req: &Request,
        pod: &str,
        port: u16,
        auth: Option<&Credentials>,
    ) -> Result<Response, RestError> {
        let fail = |reason: String| RestError::Kubernetes {
            url: req.url(),
            reason,
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut pf = pods.portforward(pod, &[port]).await.map_err(|e| match e {
            kube::Error::Api(st) => rest_error(
                &req.url(),
                status_error(&st, "create", "pods/portforward", &self.namespace),
            ),
            other => fail(format!(
                "cannot port-forward to {pod}:{port}: {}",
                one_line(&error_chain(&other))
            )),
        })?;
        let mut stream = pf
            .take_stream(port)
            .ok_or_else(|| fail(format!("no port-forward stream for port {port}")))?;
        let body = match &req.body {
            Some(b) => serde_json::to_vec(b).map_err(|e| fail(e.to_string()))?,
            None => Vec::new(),
        };
        let mut head = format!(
            "{} {} HTTP/1.0\r\nHost: localhost:{port}\r\nUser-Agent: pgpatrol/{}\r\nContent-Length: {}\r\nConnection: close\r\n",
            req.method,
            req.path,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        if req.body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(a) = auth {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", a.username, a.password));
            head.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        head.push_str("\r\n");
        let io = |e: std::io::Error| fail(format!("port-forward to {pod}:{port}: {e}"));
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        stream.write_all(&body).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(io)?;
        drop(stream);
        pf.abort();
        parse_http_response(&raw).map_err(|r| fail(format!("{pod}:{port} {r}")))
    }
}

/// Splits a raw HTTP/1.x answer into status and body.
fn parse_http_response(raw: &[u8]) -> Result<Response, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        format!(
            "closed the connection before a full answer ({} bytes)",
            raw.len()
        )
    })?;
    let status_line = head.lines().next().unwrap_or_default();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("did not speak HTTP: {status_line:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response {
        status: reqwest::StatusCode::from_u16(code).map_err(|e| e.to_string())?,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_with_kubectl_short_names() {
        assert_eq!(
            parse_resource("statefulset/mypatroni-1").unwrap(),
            (Kind::StatefulSet, "mypatroni-1".into())
        );
        assert_eq!(parse_resource("sts/x").unwrap().0, Kind::StatefulSet);
        assert_eq!(
            parse_resource("deployment.apps/x").unwrap().0,
            Kind::Deployment
        );
        assert_eq!(parse_resource("pod/x").unwrap().0, Kind::Pod);
        let e = parse_resource("daemonset/x").unwrap_err().to_string();
        assert!(e.contains("unknown resource kind \"daemonset\""), "{e}");
        assert!(parse_resource("statefulset/").is_err());
    }

    fn pod(ports: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "patroni", "ports": ports}]}
        }))
        .unwrap()
    }

    #[test]
    fn the_patroni_port_comes_from_the_container_spec() {
        let p = pod(serde_json::json!([
            {"name": "postgresql", "containerPort": 5432},
            {"name": "patroni", "containerPort": 8009}
        ]));
        assert_eq!(patroni_port(&p), Ok(8009));
        let p = pod(serde_json::json!([{"containerPort": 8008}, {"containerPort": 5432}]));
        assert_eq!(patroni_port(&p), Ok(8008));
        assert_eq!(patroni_port(&pod(serde_json::json!([]))), Ok(8008));
        let e = patroni_port(&pod(
            serde_json::json!([{"name": "postgresql", "containerPort": 5432}]),
        ))
        .unwrap_err();
        assert!(e.contains("5432 (postgresql)"), "{e}");
    }

    #[test]
    fn selectors_become_query_strings() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"application": "patroni", "cluster-name": "mypatroni-1"},
            "matchExpressions": [{"key": "role", "operator": "In", "values": ["a", "b"]}]
        }))
        .unwrap();
        assert_eq!(
            selector_string(&sel).unwrap(),
            "application=patroni,cluster-name=mypatroni-1,role in (a,b)"
        );
        assert!(selector_string(&LabelSelector::default()).is_err());
    }

    #[test]
    fn raw_http_answers_parse() {
        let r = parse_http_response(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n{\"a\":1}").unwrap();
        assert_eq!(r.status.as_u16(), 200);
        assert_eq!(r.body, "{\"a\":1}");
        let r = parse_http_response(
            b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, "abc");
        assert!(parse_http_response(b"").is_err());
    }

    #[test]
    fn a_forbidden_status_names_the_verb_and_resource() {
        let st: kube::core::Status = serde_json::from_value(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "pods \"p-0\" is forbidden: User \"x\" cannot get resource \"pods/proxy\"",
            "reason": "Forbidden", "details": {"name": "p-0", "kind": "pods"}, "code": 403
        }))
        .unwrap();
        let e = status_error(&st, "get", "pods/proxy", "mydata").to_string();
        assert_eq!(
            e,
            "forbidden: cannot get pods/proxy in namespace mydata: grant \"get\" on \"pods/proxy\" to the service account (see deploy/rbac.yaml)"
        );
        // The server's own words win over the call's: a websocket GET checked as create.
        let mut st = st;
        st.message = "pods \"p-0\" is forbidden: User \"x\" cannot create resource \"pods/portforward\" in API group \"\" in the namespace \"mydata\"".into();
        let e = status_error(&st, "get", "pods/portforward", "mydata").to_string();
        assert!(
            e.starts_with(
                "forbidden: cannot create pods/portforward in namespace mydata: grant \"create\""
            ),
            "{e}"
        );
        // Without a message: details.kind, else the call's own verb and resource.
        st.message.clear();
        let e = status_error(&st, "list", "pods", "mydata").to_string();
        assert!(e.starts_with("forbidden: cannot list pods in"), "{e}");
    }
}
