//! A Kubernetes Lease (`coordination.k8s.io/v1`) as the heal lock: taken by creating it, or
//! by replacing an expired or released one at the `resourceVersion` read (the API server
//! refuses a stale one with 409, so two takers cannot both win); renewed by replacing it
//! with a new `renewTime` while its `holderIdentity` is still ours; released by clearing the
//! holder. RBAC: get, create, update on leases (deploy/rbac.yaml). Dynamic sharding holds
//! one labelled Lease per watcher and lists them (`holders`): list on leases too.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::errors::api_error;
use super::K8sTarget;

/// Why a Lease call did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeLeaseError {
    /// The API server could not be reached, or refused the call (RBAC, conflict, gone).
    #[error("{0}")]
    Api(String),
    /// Renewing: another holder has the Lease now.
    #[error("the Lease {lease} is held by {holder:?} now")]
    HeldBy { lease: String, holder: String },
}

/// One Lease: the API handle, its name and namespace.
#[derive(Clone)]
pub struct KubeLease {
    api: Api<Lease>,
    pub name: String,
    pub namespace: String,
    ttl: Duration,
    /// Labels set on the Lease when it is created or taken (the shard ring lists by them).
    labels: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for KubeLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KubeLease({}/{})", self.namespace, self.name)
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// The lease has no holder, or its holder has not renewed it within its duration.
fn free(spec: &LeaseSpec, at: jiff::Timestamp) -> bool {
    if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
        return true;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    match &spec.renew_time {
        Some(MicroTime(t)) => t
            .checked_add(jiff::SignedDuration::from_secs(duration))
            .is_ok_and(|end| end < at),
        None => true,
    }
}

impl KubeLease {
    /// The Lease `name` in the namespace of `target` (its `namespace`, else the context's).
    pub async fn new(
        target: &K8sTarget,
        name: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Self, KubeLeaseError> {
        let (client, namespace) = super::discovery::client(target, timeout, timeout)
            .await
            .map_err(|e| KubeLeaseError::Api(e.to_string()))?;
        Ok(Self::with_client(client, &namespace, name, ttl))
    }

    pub fn with_client(client: Client, namespace: &str, name: &str, ttl: Duration) -> Self {
        KubeLease {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            namespace: namespace.to_string(),
            ttl,
            labels: Default::default(),
        }
    }

    /// The same Lease, created (or taken) with these labels.
    pub fn with_labels(mut self, labels: std::collections::BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    fn meta_labels(&self) -> Option<std::collections::BTreeMap<String, String>> {
        (!self.labels.is_empty()).then(|| self.labels.clone())
    }

    fn err(&self, e: kube::Error, verb: &str) -> KubeLeaseError {
        KubeLeaseError::Api(api_error(e, verb, "leases", &self.namespace).to_string())
    }

    fn spec(&self, owner: &str, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(owner.to_string()),
            lease_duration_seconds: Some(i32::try_from(self.ttl.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: Some(acquired.unwrap_or_else(now)),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Who holds the lease now (`holderIdentity`), when it is held and not expired.
    pub async fn holder(&self) -> Result<Option<String>, KubeLeaseError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e, "get"))?;
        Ok(current
            .and_then(|l| l.spec)
            .filter(|spec| !free(spec, jiff::Timestamp::now()))
            .and_then(|spec| spec.holder_identity))
    }

    /// Takes the lease for `owner`: `Ok(false)` when another holder has it.
    pub async fn try_acquire(&self, owner: &str) -> Result<bool, KubeLeaseError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e, "get"))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    labels: self.meta_labels(),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(owner, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.err(e, "create")),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(owner);
        if !ours && !free(&spec, jiff::Timestamp::now()) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours {
            spec.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.spec(owner, acquired, transitions));
        if let Some(labels) = self.meta_labels() {
            lease
                .metadata
                .labels
                .get_or_insert_with(Default::default)
                .extend(labels);
        }
        // Replacing at the resourceVersion read: a concurrent taker gets 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(e, "update")),
        }
    }

    /// Renews the lease: `Err` when it is no longer `owner`'s or cannot be written.
    pub async fn renew(&self, owner: &str) -> Result<(), KubeLeaseError> {
        let mut lease = self
            .api
            .get(&self.name)
            .await
            .map_err(|e| self.err(e, "get"))?;
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(owner) {
            return Err(KubeLeaseError::HeldBy {
                lease: format!("{}/{}", self.namespace, self.name),
                holder: spec.holder_identity.unwrap_or_default(),
            });
        }
        spec.renew_time = Some(now());
        lease.spec = Some(spec);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(drop)
            .map_err(|e| self.err(e, "update"))
    }

    /// Releases the lease if `owner` still holds it (best effort).
    pub async fn release(&self, owner: &str) -> Result<(), KubeLeaseError> {
        let mut lease = self
            .api
            .get(&self.name)
            .await
            .map_err(|e| self.err(e, "get"))?;
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(owner) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(now());
        lease.spec = Some(spec);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(drop)
            .map_err(|e| self.err(e, "update"))
    }
}

/// The holders of the Leases matching `selector` in `namespace` that are held and not
/// expired now (one list): the shard ring's watchers alive.
pub async fn holders(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<String>, KubeLeaseError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&kube::api::ListParams::default().labels(selector))
        .await
        .map_err(|e| KubeLeaseError::Api(api_error(e, "list", "leases", namespace).to_string()))?;
    let at = jiff::Timestamp::now();
    Ok(list
        .items
        .into_iter()
        .filter_map(|l| l.spec)
        .filter(|spec| !free(spec, at))
        .filter_map(|spec| spec.holder_identity)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_free_without_a_holder_or_once_it_expired() {
        let t0: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let spec = |holder: Option<&str>| LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(30),
            renew_time: Some(MicroTime(t0)),
            ..LeaseSpec::default()
        };
        assert!(free(&spec(None), t0));
        assert!(!free(&spec(Some("a")), t0));
        let later = t0.checked_add(jiff::SignedDuration::from_secs(31)).unwrap();
        assert!(free(&spec(Some("a")), later));
    }
}
