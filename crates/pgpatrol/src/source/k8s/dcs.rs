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

impl KubeDcs {
    fn selector(&self) -> String {
        format!("{SCOPE_LABEL}={}", self.scope)
    }

    async fn read_now(&self) -> Result<(DcsCluster, String), DcsError> {
        let ns = self.namespace.as_str();
        let lp = ListParams::default().labels(&self.selector());
        let fail = |e, resource| DcsError::Reader(api_error(e, "list", resource, ns).to_string());
        let config = format!("{}-config", self.scope);
        let leader = format!("{}-leader", self.scope);
        let cms: BTreeMap<String, Annotations> =
            Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                .list(&lp)
                .await
                .map_err(|e| fail(e, "configmaps"))?
                .items
                .iter()
                .map(|o| annotations(&o.metadata))
                .collect();
        let (objects, use_endpoints, kind) =
            if cms.contains_key(&config) || cms.contains_key(&leader) {
                (cms, false, "configmaps")
            } else {
                let eps: BTreeMap<String, Annotations> =
                    Api::<Endpoints>::namespaced(self.client.clone(), ns)
                        .list(&lp)
                        .await
                        .map_err(|e| fail(e, "endpoints"))?
                        .items
                        .iter()
                        .map(|o| annotations(&o.metadata))
                        .collect();
                (eps, true, "endpoints")
            };
        let origin = format!("Kubernetes {kind} {} in namespace {ns}", self.selector());
        if objects.is_empty() {
            return Err(DcsError::Reader(format!(
                "no Patroni ConfigMaps or Endpoints labelled {} in namespace {ns}: check --scope (Patroni's scope) and --namespace",
                self.selector()
            )));
        }
        let pods: Vec<(String, Option<String>)> = Api::<Pod>::namespaced(self.client.clone(), ns)
            .list(&lp)
            .await
            .map_err(|e| fail(e, "pods"))?
            .items
            .iter()
            .map(|p| {
                let (name, a) = annotations(&p.metadata);
                (name, a.get("status").cloned())
            })
            .collect();
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
