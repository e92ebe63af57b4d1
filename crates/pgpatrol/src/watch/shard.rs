//! This watcher's share of the fleet (`shard:`): decided once at start from the file or the
//! flags, or from the pod it runs in (`from_pod`). Ownership itself is core's
//! (`pgpatrol_core::shard`): every watcher computes the same split from the same names.
//!
//! With `from_pod` and no `total`, the total is the `spec.replicas` of the pod's
//! StatefulSet, re-read every poll interval: when it changes, the watcher stops with an
//! error so that its restarted pod takes its new share (kube-state-metrics re-splits in the
//! process; pgpatrol's pollers are fixed at start, so a restart is the honest way).

use std::time::Duration;

use pgpatrol_core::shard::Shard;

use super::config::ShardConfig;
use crate::source::k8s::scale::Workload;
use crate::source::k8s::K8sTarget;

/// The share, and the StatefulSet whose replicas it follows (from_pod without a total).
pub struct Resolved {
    pub shard: Shard,
    pub follow: Option<Workload>,
}

/// The name of the pod this runs in: `POD_NAME` (the Downward API), else `HOSTNAME` (a
/// StatefulSet's pod's host name is its name).
fn pod_name() -> Result<String, String> {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|n| !n.is_empty()))
        .ok_or_else(|| {
            "shard from_pod: neither POD_NAME nor HOSTNAME is set (set POD_NAME from metadata.name)"
                .to_string()
        })
}

pub async fn resolve(cfg: Option<&ShardConfig>, timeout: Duration) -> Result<Resolved, String> {
    let Some(cfg) = cfg else {
        return Ok(Resolved {
            shard: Shard::ALL,
            follow: None,
        });
    };
    cfg.check()?;
    if cfg.is_dynamic() {
        // The ring decides, as watchers come and go (watch/fleet.rs).
        return Ok(Resolved {
            shard: Shard::ALL,
            follow: None,
        });
    }
    if !cfg.from_pod {
        let (Some(index), Some(total)) = (cfg.index, cfg.total) else {
            return Err("shard: give `index` and `total`, or `from_pod: true`".into());
        };
        return Ok(Resolved {
            shard: Shard::new(index, total)?,
            follow: None,
        });
    }
    let pod = pod_name()?;
    if let Some(total) = cfg.total {
        return Ok(Resolved {
            shard: Shard::of_pod(&pod, total).map_err(|e| format!("shard from_pod: {e}"))?,
            follow: None,
        });
    }
    let set = Shard::statefulset_of_pod(&pod).ok_or_else(|| {
        format!(
            "shard from_pod: the pod name {pod:?} does not end in a StatefulSet ordinal (`NAME-N`)"
        )
    })?;
    let target = K8sTarget {
        resource: format!("statefulset/{set}"),
        namespace: std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty()),
        ..Default::default()
    };
    let workload = Workload::of(&target, timeout)
        .await
        .map_err(|e| format!("shard from_pod: {e}"))?;
    let total = replicas(&workload).await?;
    Ok(Resolved {
        shard: Shard::of_pod(&pod, total).map_err(|e| format!("shard from_pod: {e}"))?,
        follow: Some(workload),
    })
}

async fn replicas(w: &Workload) -> Result<u32, String> {
    let n = w.replicas().await.map_err(|e| {
        format!(
            "shard from_pod: the replicas of statefulset/{} in {}: {e}",
            w.name, w.namespace
        )
    })?;
    u32::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("shard from_pod: statefulset/{} has {n} replicas", w.name))
}

/// Waits until the StatefulSet's replicas differ from `total` (read every `every`), and
/// says so. A read that fails is logged and tried again at the next turn: the share stays
/// as it is meanwhile.
pub async fn replicas_changed(w: Workload, total: u32, every: Duration) -> String {
    loop {
        tokio::time::sleep(every).await;
        match replicas(&w).await {
            Ok(n) if n != total => {
                return format!(
                    "statefulset/{} now has {n} replicas (this watcher took its share of {total}): stopping so that the restarted pod takes its new share",
                    w.name
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the StatefulSet's replicas: the share stays"),
        }
    }
}
