//! Dynamic sharding's membership: each watcher holds the key `<prefix><id>` in etcd on a
//! lease of `ttl`, renewed every `ttl/3`, and reads the prefix to learn which watchers are
//! alive. A watcher that dies stops renewing: its key goes with its lease, and the others
//! see it gone at their next reading. A watcher whose lease lapsed (etcd unreachable for a
//! `ttl`) registers again. The etcd calls are the heal lease's (`watch/lease.rs`).

use std::time::Duration;

use serde_json::json;

use super::lease::{call, grant, joined, keepalive};
use crate::executor::runner::LeaseError;
use crate::source::dcs::etcd::{Etcd, EtcdOptions};

pub(super) struct Membership {
    etcd: Etcd,
    prefix: String,
    pub(super) id: String,
    ttl: Duration,
    lease: Option<String>,
}

fn b64(s: &str) -> String {
    crate::source::dcs::etcd::base64(s.as_bytes())
}

impl Membership {
    pub(super) fn new(
        opts: &EtcdOptions,
        prefix: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<Self, String> {
        Ok(Membership {
            etcd: Etcd::new(opts).map_err(|e| e.to_string())?,
            prefix: prefix.to_string(),
            id: id.to_string(),
            ttl,
            lease: None,
        })
    }

    pub(super) fn refresh_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Keeps this watcher registered: renews its lease, or (first time, or after it expired)
    /// takes a new one and writes its key on it.
    pub(super) async fn renew(&mut self) -> Result<(), LeaseError> {
        if let Some(id) = &self.lease {
            match keepalive(&self.etcd, id).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(id = %self.id, error = %e, "shard: this watcher's registration lapsed: registering again");
                    self.lease = None;
                }
            }
        }
        let lease = grant(&self.etcd, self.ttl).await?;
        let key = format!("{}{}", self.prefix, self.id);
        call(
            &self.etcd,
            "/kv/put",
            json!({"key": b64(&key), "value": b64(&self.id), "lease": lease}),
        )
        .await?;
        self.lease = Some(lease);
        Ok(())
    }

    /// The watchers registered now (their ids).
    pub(super) async fn members(&self) -> Result<Vec<String>, LeaseError> {
        let (kvs, _) = self
            .etcd
            .range(&self.prefix)
            .await
            .map_err(|errors| LeaseError::Store(joined(&errors)))?;
        Ok(kvs
            .into_iter()
            .filter_map(|kv| kv.key.strip_prefix(&self.prefix).map(str::to_string))
            .filter(|id| !id.is_empty())
            .collect())
    }

    /// Leaves the ring at once (a clean stop), rather than after the lease's ttl.
    pub(super) async fn leave(&mut self) {
        if let Some(id) = self.lease.take() {
            let _ = call(&self.etcd, "/lease/revoke", json!({ "ID": id })).await;
        }
    }
}
