//! A StatefulSet as `member add|remove` scales it: its `scale` subresource, its pods by
//! ordinal, the PersistentVolumeClaims of an ordinal, and (for `report`) a pod's log. RBAC:
//! get and patch on `statefulsets/scale`, get on `statefulsets` and `pods`, delete on
//! `persistentvolumeclaims` (only with `--delete-pvc`), get on `pods/log` (docs/KUBERNETES.md).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, LogParams, Patch, PatchParams};
use kube::{Api, Client};

use super::discovery::{client, parse_resource, Kind, PodInfo};
use super::errors::{api_error, K8sError};
use super::K8sTarget;

/// One StatefulSet and the client that reaches it.
#[derive(Clone)]
pub struct Workload {
    client: Client,
    pub namespace: String,
    pub name: String,
    override_port: Option<u16>,
}

impl Workload {
    /// The StatefulSet `t` names (`statefulset/NAME`); another kind cannot be scaled here.
    pub async fn of(t: &K8sTarget, timeout: Duration) -> Result<Self, K8sError> {
        let (kind, name) = parse_resource(&t.resource)?;
        if kind != Kind::StatefulSet {
            return Err(K8sError::Config(format!(
                "{}: member add|remove scales a StatefulSet (statefulset/NAME), whose ordinals say which pod goes",
                t.resource
            )));
        }
        let (client, namespace) = client(t, timeout, timeout).await?;
        Ok(Workload {
            client,
            namespace,
            name,
            override_port: t.port,
        })
    }

    fn sts(&self) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// `spec.replicas` of the scale subresource.
    pub async fn replicas(&self) -> Result<i32, K8sError> {
        let scale = self
            .sts()
            .get_scale(&self.name)
            .await
            .map_err(|e| api_error(e, "get", "statefulsets/scale", &self.namespace))?;
        Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(0))
    }

    /// Sets `spec.replicas` through the scale subresource (a merge patch, as `kubectl scale`).
    pub async fn scale(&self, replicas: i32) -> Result<(), K8sError> {
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        self.sts()
            .patch_scale(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| api_error(e, "patch", "statefulsets/scale", &self.namespace))?;
        Ok(())
    }

    /// The pod of `ordinal` (`NAME-ORDINAL`), if it exists.
    pub async fn pod(&self, ordinal: i32) -> Result<Option<PodInfo>, K8sError> {
        let name = self.pod_name(ordinal);
        let pod = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(&name)
            .await
            .map_err(|e| api_error(e, "get", "pods", &self.namespace))?;
        Ok(pod.map(|p| PodInfo::from_pod(&p, self.override_port)))
    }

    pub fn pod_name(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    /// The PersistentVolumeClaims the StatefulSet made for `ordinal`: one per
    /// `volumeClaimTemplates` entry, named `TEMPLATE-NAME-ORDINAL`.
    pub async fn claims(&self, ordinal: i32) -> Result<Vec<String>, K8sError> {
        let sts = self
            .sts()
            .get(&self.name)
            .await
            .map_err(|e| api_error(e, "get", "statefulsets", &self.namespace))?;
        Ok(sts
            .spec
            .and_then(|s| s.volume_claim_templates)
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.metadata.name.clone())
            .map(|t| format!("{t}-{}-{ordinal}", self.name))
            .collect())
    }

    /// Deletes one PersistentVolumeClaim; `Ok(false)` when it was not there.
    pub async fn delete_claim(&self, name: &str) -> Result<bool, K8sError> {
        let api = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &self.namespace);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(api_error(
                e,
                "delete",
                "persistentvolumeclaims",
                &self.namespace,
            )),
        }
    }
}

/// The last `lines` lines of a pod's log (`pods/log`, the first container).
pub async fn pod_log(
    t: &K8sTarget,
    pod: &str,
    lines: usize,
    timeout: Duration,
) -> Result<String, K8sError> {
    let (client, namespace) = client(t, timeout, timeout).await?;
    Api::<Pod>::namespaced(client, &namespace)
        .logs(
            pod,
            &LogParams {
                tail_lines: Some(i64::try_from(lines).unwrap_or(i64::MAX)),
                ..LogParams::default()
            },
        )
        .await
        .map_err(|e| api_error(e, "get", "pods/log", &namespace))
}
