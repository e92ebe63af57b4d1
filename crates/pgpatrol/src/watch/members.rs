//! Dynamic sharding's membership: each watcher registers itself and reads who else is
//! registered, in one of two registries.
//!
//! - **etcd** (`shard: {dcs: ...}`): the key `<prefix><id>` on a lease of `ttl`, renewed
//!   every `ttl/3`; the prefix read in one range. A watcher that dies stops renewing: its key
//!   goes with its lease. A watcher whose lease lapsed (etcd unreachable for a `ttl`)
//!   registers again. The etcd calls are the heal lease's (`watch/lease.rs`).
//! - **Kubernetes** (`shard: {kubernetes: ...}`): a `coordination.k8s.io` Lease
//!   `<lease_prefix><id>` labelled `pgpatrol/ring=<ring>`, held with `holderIdentity` = id
//!   and `leaseDurationSeconds` = `ttl`, renewed every `ttl/3` (the heal lock's Lease code,
//!   `source::k8s::lease`); the ring is the holders of the labelled Leases not expired, read
//!   in one list. A watcher that dies stops renewing: its Lease expires after `ttl` and drops
//!   out; one that stops cleanly releases it at once.
//!
//! Either way the others see a watcher gone at their next reading.

use std::time::Duration;

use serde_json::json;

use super::lease::{call, grant, joined, keepalive};
use crate::executor::runner::LeaseError;
use crate::source::dcs::etcd::{Etcd, EtcdOptions};
use crate::source::k8s::lease::{KubeLease, KubeLeaseError};

/// The label every watcher's Lease carries: its ring.
pub(super) const RING_LABEL: &str = "pgpatrol/ring";

enum Registry {
    Etcd {
        etcd: Etcd,
        prefix: String,
        lease: Option<String>,
    },
    Kubernetes {
        client: kube::Client,
        lease: Box<KubeLease>,
        selector: String,
    },
}

pub(super) struct Membership {
    registry: Registry,
    pub(super) id: String,
    ttl: Duration,
}

fn b64(s: &str) -> String {
    crate::source::dcs::etcd::base64(s.as_bytes())
}

fn kube(e: KubeLeaseError) -> LeaseError {
    match e {
        KubeLeaseError::Api(_) => LeaseError::Store(e.to_string()),
        KubeLeaseError::HeldBy { .. } => LeaseError::Expired(e.to_string()),
    }
}

impl Membership {
    pub(super) fn new(
        opts: &EtcdOptions,
        prefix: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<Self, String> {
        Ok(Membership {
            registry: Registry::Etcd {
                etcd: Etcd::new(opts).map_err(|e| e.to_string())?,
                prefix: prefix.to_string(),
                lease: None,
            },
            id: id.to_string(),
            ttl,
        })
    }

    /// Registered as the Lease `name` in `namespace`, labelled with `ring`.
    pub(super) fn kubernetes(
        client: kube::Client,
        namespace: &str,
        name: &str,
        ring: &str,
        id: &str,
        ttl: Duration,
    ) -> Self {
        let labels = [
            (RING_LABEL.to_string(), ring.to_string()),
            (
                "app.kubernetes.io/managed-by".to_string(),
                "pgpatrol".to_string(),
            ),
        ]
        .into();
        Membership {
            registry: Registry::Kubernetes {
                lease: Box::new(
                    KubeLease::with_client(client.clone(), namespace, name, ttl)
                        .with_labels(labels),
                ),
                client,
                selector: format!("{RING_LABEL}={ring}"),
            },
            id: id.to_string(),
            ttl,
        }
    }

    pub(super) fn refresh_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Keeps this watcher registered: renews its lease, or (first time, or after it expired)
    /// takes a new one and writes its key on it.
    pub(super) async fn renew(&mut self) -> Result<(), LeaseError> {
        match &mut self.registry {
            Registry::Etcd {
                etcd,
                prefix,
                lease,
            } => {
                if let Some(id) = lease.as_ref() {
                    match keepalive(etcd, id).await {
                        Ok(()) => return Ok(()),
                        Err(e) => {
                            tracing::warn!(id = %self.id, error = %e, "shard: this watcher's registration lapsed: registering again");
                            *lease = None;
                        }
                    }
                }
                let granted = grant(etcd, self.ttl).await?;
                let key = format!("{prefix}{}", self.id);
                call(
                    etcd,
                    "/kv/put",
                    json!({"key": b64(&key), "value": b64(&self.id), "lease": granted}),
                )
                .await?;
                *lease = Some(granted);
                Ok(())
            }
            // Taking it again is renewing it while it is ours, and taking it back once
            // it expired; held by another (two watchers whose ids make one name) it is an
            // error.
            Registry::Kubernetes { lease, .. } => match lease.try_acquire(&self.id).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(LeaseError::Expired(format!(
                    "the Lease {}/{} is held by another watcher: give each watcher its own `shard.id`",
                    lease.namespace, lease.name
                ))),
                Err(e) => Err(kube(e)),
            },
        }
    }

    /// The watchers registered now (their ids).
    pub(super) async fn members(&self) -> Result<Vec<String>, LeaseError> {
        match &self.registry {
            Registry::Etcd { etcd, prefix, .. } => {
                let (kvs, _) = etcd
                    .range(prefix)
                    .await
                    .map_err(|errors| LeaseError::Store(joined(&errors)))?;
                Ok(kvs
                    .into_iter()
                    .filter_map(|kv| kv.key.strip_prefix(prefix.as_str()).map(str::to_string))
                    .filter(|id| !id.is_empty())
                    .collect())
            }
            Registry::Kubernetes {
                client,
                lease,
                selector,
            } => crate::source::k8s::lease::holders(client, &lease.namespace, selector)
                .await
                .map_err(kube),
        }
    }

    /// Leaves the ring at once (a clean stop), rather than after the lease's ttl.
    pub(super) async fn leave(&mut self) {
        match &mut self.registry {
            Registry::Etcd { etcd, lease, .. } => {
                if let Some(id) = lease.take() {
                    let _ = call(etcd, "/lease/revoke", json!({ "ID": id })).await;
                }
            }
            Registry::Kubernetes { lease, .. } => {
                let _ = lease.release(&self.id).await;
            }
        }
    }
}
