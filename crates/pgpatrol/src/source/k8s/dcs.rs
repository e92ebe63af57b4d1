//! Patroni's Kubernetes DCS (`dcs/kubernetes.py`) read through the API server: the
//! ConfigMaps (default) or Endpoints (`use_endpoints`) labelled `cluster-name=<scope>` and
//! the pods with the same label, whose `status` annotation is each member's data. Read-only;
//! RBAC: list on configmaps (or endpoints) and pods. The objects become a
//! `wire::dcs::DcsCluster` in `wire::dcs::from_kubernetes`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod};
use kube::api::ListParams;
use kube::{Api, Client};

use super::errors::api_error;
use crate::source::wire::dcs::{self as wire, Annotations, BadValue, DcsCluster};

/// Patroni's default `kubernetes.scope_label`.
pub const SCOPE_LABEL: &str = "cluster-name";

/// Why the Kubernetes DCS could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KubeDcsError {
    /// The API server refused or failed a list, or no object carries the scope's label.
    #[error("{0}")]
    Read(String),
    #[error("{origin}: {bad}")]
    NotPatroni { origin: String, bad: BadValue },
}

impl KubeDcsError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            KubeDcsError::Read(_) => "dcs_read",
            KubeDcsError::NotPatroni { .. } => "dcs_not_patroni",
        }
    }
}

/// One cluster's objects in one namespace.
#[derive(Clone)]
pub struct KubeDcs {
    pub client: Client,
    pub namespace: String,
    pub scope: String,
}

impl std::fmt::Debug for KubeDcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KubeDcs({}/{})", self.namespace, self.scope)
    }
}

fn annotations(meta: &kube::api::ObjectMeta) -> (String, Annotations) {
    (
        meta.name.clone().unwrap_or_default(),
        meta.annotations.clone().unwrap_or_default(),
    )
}

/// Each object's annotations by object name.
pub fn by_name<'a>(
    metas: impl IntoIterator<Item = &'a kube::api::ObjectMeta>,
) -> BTreeMap<String, Annotations> {
    metas.into_iter().map(annotations).collect()
}

/// Patroni keeps the scope in ConfigMaps when `<scope>-config` or `<scope>-leader` is one of
/// them, else in Endpoints (`use_endpoints`).
pub fn in_configmaps(scope: &str, configmaps: &BTreeMap<String, Annotations>) -> bool {
    configmaps.contains_key(&format!("{scope}-config"))
        || configmaps.contains_key(&format!("{scope}-leader"))
}

/// Each pod's name and `status` annotation (its member data).
pub fn pod_statuses<'a>(
    pods: impl IntoIterator<Item = &'a kube::api::ObjectMeta>,
) -> Vec<(String, Option<String>)> {
    pods.into_iter()
        .map(|p| {
            let (name, a) = annotations(p);
            (name, a.get("status").cloned())
        })
        .collect()
}

impl KubeDcs {
    fn selector(&self) -> String {
        format!("{SCOPE_LABEL}={}", self.scope)
    }

    /// `<namespace>/cluster-name=<scope>`: where the objects are (a snapshot's origin).
    pub fn prefix(&self) -> String {
        format!("{}/{}", self.namespace, self.selector())
    }

    /// The cluster's objects, decoded, and where they were read.
    pub async fn read(&self) -> Result<(DcsCluster, String), KubeDcsError> {
        let ns = self.namespace.as_str();
        let lp = ListParams::default().labels(&self.selector());
        let fail = |e, resource| KubeDcsError::Read(api_error(e, "list", resource, ns).to_string());
        let cms = by_name(
            Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                .list(&lp)
                .await
                .map_err(|e| fail(e, "configmaps"))?
                .items
                .iter()
                .map(|o| &o.metadata),
        );
        let (objects, use_endpoints, kind) = if in_configmaps(&self.scope, &cms) {
            (cms, false, "configmaps")
        } else {
            let eps = by_name(
                Api::<Endpoints>::namespaced(self.client.clone(), ns)
                    .list(&lp)
                    .await
                    .map_err(|e| fail(e, "endpoints"))?
                    .items
                    .iter()
                    .map(|o| &o.metadata),
            );
            (eps, true, "endpoints")
        };
        let origin = format!("Kubernetes {kind} {} in namespace {ns}", self.selector());
        if objects.is_empty() {
            return Err(KubeDcsError::Read(format!(
                "no Patroni ConfigMaps or Endpoints labelled {} in namespace {ns}: check --scope (Patroni's scope) and --namespace",
                self.selector()
            )));
        }
        let pods = pod_statuses(
            Api::<Pod>::namespaced(self.client.clone(), ns)
                .list(&lp)
                .await
                .map_err(|e| fail(e, "pods"))?
                .items
                .iter()
                .map(|p| &p.metadata),
        );
        let c = wire::from_kubernetes(
            &self.scope,
            &objects,
            use_endpoints,
            &pods,
            SystemTime::now(),
        )
        .map_err(|bad| KubeDcsError::NotPatroni {
            origin: origin.clone(),
            bad,
        })?;
        Ok((c, origin))
    }
}
