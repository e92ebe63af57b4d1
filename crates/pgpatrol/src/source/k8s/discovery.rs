//! Finds a Patroni cluster's pods: the workload named by `KIND/NAME`, its selector, its
//! pods and their Patroni port, and the credentials Secret.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use super::errors::api_error;
use super::{K8sError, K8sTarget, DEFAULT_PORT};
use crate::source::http::Credentials;
use crate::text::{error_chain, one_line};

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

/// A client for `t`'s kubeconfig and context, and the namespace to use (`t.namespace`, else
/// the context's).
pub async fn client(
    t: &K8sTarget,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<(Client, String), K8sError> {
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
    Ok((client, namespace))
}

/// Finds the workload's pods. The timeouts bound each call to the API server (kube's
/// defaults would let a hung API server stall an SLI reading for minutes).
pub async fn discover(
    t: &K8sTarget,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<Discovered, K8sError> {
    // No workload, a scope (a cluster found by its Kubernetes DCS): its pods are those
    // labelled with the scope, as Patroni lists them.
    let scope_only = t.resource.trim().is_empty();
    let (kind, name) = match (&t.scope, scope_only) {
        (Some(scope), true) => (Kind::Pod, scope.clone()),
        _ => parse_resource(&t.resource)?,
    };
    let (client, namespace) = client(t, connect_timeout, request_timeout).await?;
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
        Kind::Pod if scope_only => Some(format!("{}={name}", super::dcs::SCOPE_LABEL)),
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
    if pods.is_empty() && !(scope_only && t.dcs) {
        return Err(K8sError::Discovery(format!(
            "{} in namespace {ns} has no pods (selector {})",
            t.resource,
            selector.clone().unwrap_or_default()
        )));
    }
    let ready: Vec<&PodInfo> = pods.iter().filter(|p| p.ready && p.ip.is_some()).collect();
    // The Kubernetes DCS needs no member to answer: all may be down.
    if ready.is_empty() && !t.dcs {
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
    if let Some(p) = ready
        .first()
        .filter(|_| !t.dcs && ready.iter().all(|p| p.port.is_err()))
    {
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
pub(super) async fn list_pods(
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
}
