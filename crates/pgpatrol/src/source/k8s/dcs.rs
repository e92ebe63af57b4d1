//! Patroni's Kubernetes DCS (`dcs/kubernetes.py`) read through the API server: the
//! ConfigMaps (default) or Endpoints (`use_endpoints`) labelled `cluster-name=<scope>` and
//! the pods with the same label, whose `status` annotation is each member's data. Read-only;
//! RBAC: list on configmaps (or endpoints) and pods. The objects become a
//! `dcs::wire::DcsCluster` in `dcs::wire::from_kubernetes`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod};
use kube::api::ListParams;
use kube::{Api, Client};

use super::errors::api_error;
use crate::source::dcs::wire::{self, Annotations, DcsCluster};
use crate::source::dcs::{DcsError, DcsReader};
use crate::source::rest::BoxFuture;

/// Patroni's default `kubernetes.scope_label`.
pub const SCOPE_LABEL: &str = "cluster-name";

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

    async fn read_now(&self) -> Result<(DcsCluster, String), DcsError> {
        let ns = self.namespace.as_str();
        let lp = ListParams::default().labels(&self.selector());
        let fail = |e, resource| DcsError::Reader(api_error(e, "list", resource, ns).to_string());
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
            return Err(DcsError::Reader(format!(
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
        .map_err(|bad| DcsError::NotPatroni {
            url: origin.clone(),
            bad,
        })?;
        Ok((c, origin))
    }
}

impl DcsReader for KubeDcs {
    fn read(&self) -> BoxFuture<'_, Result<(DcsCluster, String), DcsError>> {
        Box::pin(self.read_now())
    }
}
