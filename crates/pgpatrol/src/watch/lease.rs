//! One active healer per cluster. Before auto-heal acts, it takes a lease: an etcd v3 lease
//! (through the one etcd client, `source::dcs::etcd`: every host, TLS, client certificates,
//! authentication and the API prefix, as the DCS reads) on the key
//! `/pgpatrol/heal/<cluster>`, a Kubernetes Lease (`source::k8s::lease`), or an exclusive
//! `flock` on a local lock file (only when the operator says it is the only watcher). A
//! second healer finds the lease held and does not act.
//!
//! An etcd lease is renewed every `TTL/3` while held, and once more right before each
//! action (`HealLock::confirm`). A renewal that fails, or that finds the lease expired,
//! means another healer may hold it now: the plan runner stops acting at once.

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde_json::{json, Value};

use tokio::sync::watch;

use crate::executor::runner::LeaseError;
use crate::source::dcs::etcd::Etcd;
use crate::source::k8s::lease::{KubeLease, KubeLeaseError};

/// A held lease; dropping a file lock releases it, an etcd lease is revoked by `release`.
#[derive(Debug)]
pub enum Held {
    Etcd {
        etcd: Etcd,
        id: String,
        keepalive: tokio::task::JoinHandle<()>,
        /// `Some(why)` once a renewal failed or found the lease expired.
        lost: watch::Receiver<Option<LeaseError>>,
        lost_tx: watch::Sender<Option<LeaseError>>,
    },
    File(#[allow(dead_code)] Flock<File>),
    Kubernetes {
        lease: Box<KubeLease>,
        owner: String,
        keepalive: tokio::task::JoinHandle<()>,
        lost: watch::Receiver<Option<LeaseError>>,
        lost_tx: watch::Sender<Option<LeaseError>>,
    },
}

/// Every endpoint's failure, in one line.
pub(super) fn joined(errors: &[crate::source::dcs::etcd::EtcdError]) -> String {
    format!(
        "etcd: {}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// One call to etcd; every endpoint's failure in one line.
pub(super) async fn call(etcd: &Etcd, path: &str, body: Value) -> Result<Value, LeaseError> {
    etcd.request(path, body)
        .await
        .map(|(v, _)| v)
        .map_err(|errors| LeaseError::Store(joined(&errors)))
}

/// Grants a lease of `ttl`: its ID.
pub(super) async fn grant(etcd: &Etcd, ttl: Duration) -> Result<String, LeaseError> {
    let grant = call(etcd, "/lease/grant", json!({ "TTL": ttl.as_secs() })).await?;
    grant["ID"]
        .as_str()
        .map(str::to_string)
        .or_else(|| grant["ID"].as_i64().map(|n| n.to_string()))
        .ok_or_else(|| LeaseError::Store(format!("etcd: lease grant without an ID: {grant}")))
}

/// Renews lease `id` once: `Err` when etcd does not answer or says it expired.
pub(super) async fn keepalive(etcd: &Etcd, id: &str) -> Result<(), LeaseError> {
    let v = call(etcd, "/lease/keepalive", json!({ "ID": id })).await?;
    // etcd's gateway wraps stream answers in `result`; a TTL of 0 (omitted) means expired.
    let r = v.get("result").unwrap_or(&v);
    if let Some(e) = v.get("error") {
        return Err(LeaseError::Expired(format!("etcd: keepalive refused: {e}")));
    }
    let ttl = r["TTL"]
        .as_str()
        .and_then(|t| t.parse::<i64>().ok())
        .or_else(|| r["TTL"].as_i64())
        .unwrap_or(0);
    if ttl <= 0 {
        return Err(LeaseError::Expired(format!("etcd: the lease {id} expired")));
    }
    Ok(())
}

/// A Kubernetes Lease call's failure as the heal lock's.
fn kube(e: KubeLeaseError) -> LeaseError {
    match e {
        KubeLeaseError::Api(_) => LeaseError::Store(e.to_string()),
        KubeLeaseError::HeldBy { .. } => LeaseError::Expired(e.to_string()),
    }
}

impl crate::executor::runner::HealLock for Held {
    async fn confirm(&self) -> Result<(), LeaseError> {
        match self {
            Held::File(_) => Ok(()),
            Held::Etcd {
                etcd,
                id,
                lost,
                lost_tx,
                ..
            } => {
                if let Some(why) = lost.borrow().clone() {
                    return Err(why);
                }
                keepalive(etcd, id).await.inspect_err(|why| {
                    let _ = lost_tx.send(Some(why.clone()));
                })
            }
            Held::Kubernetes {
                lease,
                owner,
                lost,
                lost_tx,
                ..
            } => {
                if let Some(why) = lost.borrow().clone() {
                    return Err(why);
                }
                lease.renew(owner).await.map_err(kube).inspect_err(|why| {
                    let _ = lost_tx.send(Some(why.clone()));
                })
            }
        }
    }

    async fn lost(&self) -> LeaseError {
        match self {
            Held::File(_) => std::future::pending().await,
            Held::Etcd { lost, .. } | Held::Kubernetes { lost, .. } => {
                let mut rx = lost.clone();
                loop {
                    if let Some(why) = rx.borrow_and_update().clone() {
                        return why;
                    }
                    if rx.changed().await.is_err() {
                        return LeaseError::KeepaliveStopped;
                    }
                }
            }
        }
    }
}

/// Where leases live.
#[derive(Debug, Clone)]
pub enum LeaseStore {
    /// An etcd lease through the one etcd client; `shown` names it in messages.
    Etcd {
        etcd: Etcd,
        shown: String,
    },
    File {
        dir: PathBuf,
    },
    /// A Lease named `name` in the namespace (and through the kubeconfig) of `target`.
    Kubernetes {
        target: crate::source::k8s::K8sTarget,
        name: String,
    },
}

const TTL_SECS: u64 = 30;

/// The heal Lease `name` as the store's Kubernetes access reaches it.
async fn kube_lease(
    target: &crate::source::k8s::K8sTarget,
    name: &str,
) -> Result<KubeLease, LeaseError> {
    KubeLease::new(
        target,
        name,
        Duration::from_secs(TTL_SECS),
        Duration::from_secs(5),
    )
    .await
    .map_err(kube)
}

fn b64(s: &str) -> String {
    crate::source::dcs::etcd::base64(s.as_bytes())
}

impl LeaseStore {
    /// Tries to take the lease for `cluster`: `Ok(None)` when another healer holds it.
    pub async fn try_acquire(
        &self,
        cluster: &str,
        owner: &str,
    ) -> Result<Option<Held>, LeaseError> {
        match self {
            LeaseStore::File { dir } => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| LeaseError::Store(format!("lock dir {}: {e}", dir.display())))?;
                let path = dir.join(format!("pgpatrol-heal-{cluster}.lock"));
                let file = File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| LeaseError::Store(format!("lock file {}: {e}", path.display())))?;
                match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                    Ok(lock) => Ok(Some(Held::File(lock))),
                    Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
                    Err((_, e)) => Err(LeaseError::Store(format!(
                        "lock file {}: {e}",
                        path.display()
                    ))),
                }
            }
            LeaseStore::Kubernetes { target, name } => {
                let lease = kube_lease(target, name).await?;
                if !lease.try_acquire(owner).await.map_err(kube)? {
                    return Ok(None);
                }
                let (lost_tx, lost) = watch::channel(None);
                let (ka_lease, ka_owner, ka_tx) =
                    (lease.clone(), owner.to_string(), lost_tx.clone());
                let keepalive = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(TTL_SECS / 3)).await;
                        if let Err(e) = ka_lease.renew(&ka_owner).await {
                            tracing::warn!(error = %e, "heal Lease renewal failed: auto-heal stops acting");
                            let _ = ka_tx.send(Some(kube(e)));
                            break;
                        }
                    }
                });
                Ok(Some(Held::Kubernetes {
                    lease: Box::new(lease),
                    owner: owner.to_string(),
                    keepalive,
                    lost,
                    lost_tx,
                }))
            }
            LeaseStore::Etcd { etcd, shown } => {
                let id = grant(etcd, Duration::from_secs(TTL_SECS))
                    .await
                    .map_err(|e| LeaseError::Store(format!("{shown}: {e}")))?;
                let key = b64(&format!("/pgpatrol/heal/{cluster}"));
                let txn = json!({
                    "compare": [{"key": key, "target": "CREATE", "create_revision": "0"}],
                    "success": [{"requestPut": {"key": key, "value": b64(owner), "lease": id}}],
                });
                let res = call(etcd, "/kv/txn", txn).await;
                let won = matches!(&res, Ok(r) if r["succeeded"] == Value::Bool(true));
                if !won {
                    let _ = call(etcd, "/lease/revoke", json!({ "ID": id })).await;
                    return res
                        .map(|_| None)
                        .map_err(|e| LeaseError::Store(format!("{shown}: {e}")));
                }
                let (lost_tx, lost) = watch::channel(None);
                let (ka_etcd, ka_id, ka_tx) = (etcd.clone(), id.clone(), lost_tx.clone());
                let keepalive = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(TTL_SECS / 3)).await;
                        if let Err(e) = keepalive(&ka_etcd, &ka_id).await {
                            // Not retried: by the next try another healer may hold it.
                            tracing::warn!(error = %e, "heal lease keepalive failed: auto-heal stops acting");
                            let _ = ka_tx.send(Some(e));
                            break;
                        }
                    }
                });
                Ok(Some(Held::Etcd {
                    etcd: etcd.clone(),
                    id,
                    keepalive,
                    lost,
                    lost_tx,
                }))
            }
        }
    }

    /// Who holds the lease of `cluster` now (the holder's `host:pid`), when it can tell.
    pub async fn holder(&self, cluster: &str) -> Option<String> {
        match self {
            LeaseStore::Etcd { etcd, .. } => {
                let key = format!("/pgpatrol/heal/{cluster}");
                let (kvs, _) = etcd.range(&key).await.ok()?;
                kvs.into_iter().find(|kv| kv.key == key).map(|kv| kv.value)
            }
            LeaseStore::Kubernetes { target, name } => {
                let lease = kube_lease(target, name).await.ok()?;
                lease.holder().await.ok().flatten()
            }
            LeaseStore::File { .. } => None,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Without keepalives an etcd lease expires by itself after its TTL.
        if let Held::Etcd { keepalive, .. } | Held::Kubernetes { keepalive, .. } = self {
            keepalive.abort();
        }
    }
}

impl Held {
    pub async fn release(self) {
        if let Held::Kubernetes { lease, owner, .. } = &self {
            if let Err(e) = lease.release(owner).await {
                tracing::warn!(error = %e, "cannot release the heal Lease: it expires in {TTL_SECS}s");
            }
        }
        if let Held::Etcd { etcd, id, .. } = &self {
            if let Err(e) = call(etcd, "/lease/revoke", json!({ "ID": id })).await {
                tracing::warn!(error = %e, "cannot revoke the heal lease: it expires in {TTL_SECS}s");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_etcd_expectations() {
        assert_eq!(b64("/pgpatrol/heal/demo"), "L3BncGF0cm9sL2hlYWwvZGVtbw==");
        assert_eq!(b64("ab"), "YWI=");
        assert_eq!(b64(""), "");
    }

    #[tokio::test]
    async fn a_second_file_lock_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("pgpatrol-lease-test-{}", std::process::id()));
        let store = LeaseStore::File { dir: dir.clone() };
        let first = store.try_acquire("demo", "a").await.unwrap();
        assert!(first.is_some());
        // flock is per open file description: a second open in the same process conflicts too.
        assert!(store.try_acquire("demo", "b").await.unwrap().is_none());
        drop(first);
        assert!(store.try_acquire("demo", "b").await.unwrap().is_some());
        let _ = std::fs::remove_dir_all(dir);
    }
}
