//! The clusters that come and go: discovered in a DCS (`discover:`), or moved between
//! watchers by dynamic sharding (`shard: {dcs: ...}`). One task owns their pollers: every
//! turn it reads what it needs, works out which clusters this watcher should poll, and
//! starts and stops pollers to match.
//!
//! - **Discovery**: every `discover.interval` one range over Patroni's namespace
//!   (`source::dcs::read_namespace`), or one list of ConfigMaps, Endpoints and pods by label
//!   selector per Kubernetes namespace (`source::k8s::dcs::read_selected`), gives the
//!   clusters; one not listed gets an entry from the template (read from its DCS: `dcs:`
//!   with its scope, or `kubernetes: {namespace, scope, dcs: true}` named
//!   `<namespace>/<scope>`); one missing for `grace` is forgotten. A read that fails changes nothing: "could not read etcd" is never
//!   "every cluster is gone".
//! - **Ownership**: a static shard (`core::shard::Shard`), or the ring of the watchers
//!   registered now (`watch/members.rs`, `core::shard::Ring`), each cluster polled by
//!   `replicas` of them. A reading of the ring that fails keeps the last ring.
//!
//! A cluster this watcher stops polling loses its poller, its page, its samples and every
//! series (`Shared::drop_cluster`). Auto-heal still acts only under the cluster's own heal
//! lease, so two watchers that both poll a cluster for a moment never heal it at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use pgpatrol_core::shard::{Ring, Shard};

use super::config::{ClusterConfig, DiscoverConfig, FoundAt, KubeDiscover};
use super::members::Membership;
use super::run::Kit;
use crate::source::http::{HttpCache, HttpOptions};
use crate::source::k8s::K8sTarget;

/// Who owns which cluster.
pub(super) enum Ownership {
    Static(Shard),
    Ring {
        membership: Membership,
        replicas: usize,
    },
}

/// What the task manages.
pub(super) struct FleetSpec {
    /// Listed clusters whose pollers this task starts and stops (every listed cluster under
    /// dynamic sharding; none otherwise).
    pub(super) listed: Vec<ClusterConfig>,
    /// Listed clusters polled from start to end (static sharding): their names are taken.
    pub(super) fixed: BTreeSet<String>,
    /// `discover:` and where it looks (built before anything starts: a bad setting stops
    /// the watcher).
    pub(super) discover: Option<(DiscoverConfig, Finder)>,
    pub(super) ownership: Ownership,
}

/// A poller this task started: its own stop, and its task.
struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    discovered: bool,
}

/// The HTTP options for etcd: the watcher's timeouts.
pub(super) fn etcd_http(timeout: Duration) -> HttpOptions {
    HttpOptions {
        auth: None,
        ca_file: None,
        client_cert: None,
        insecure: false,
        connect_timeout: timeout.min(Duration::from_secs(2)),
        timeout,
    }
}

/// Where discovery looks: the scopes under an etcd namespace, or the Kubernetes DCS objects
/// a label selector matches.
pub(super) enum Finder {
    Etcd {
        etcd: crate::source::dcs::etcd::EtcdOptions,
        namespace: String,
    },
    Kubernetes {
        client: kube::Client,
        spec: KubeDiscover,
    },
}

impl Finder {
    pub(super) async fn new(d: &DiscoverConfig, timeout: Duration) -> Result<Self, String> {
        if let Some(k) = &d.kubernetes {
            let t = K8sTarget {
                kubeconfig: k.kubeconfig.clone(),
                context: k.context.clone(),
                distribution: k.distribution.clone(),
                ..K8sTarget::default()
            };
            let (client, _) =
                crate::source::k8s::client(&t, timeout.min(Duration::from_secs(2)), timeout)
                    .await
                    .map_err(|e| e.to_string())?;
            return Ok(Finder::Kubernetes {
                client,
                spec: k.clone(),
            });
        }
        let dcs = d
            .dcs
            .as_ref()
            .ok_or_else(|| "discover: neither `dcs` nor `kubernetes`".to_string())?;
        let (etcd, namespace) = dcs
            .password()
            .and_then(|pw| dcs.resolve_namespace(pw, None, &etcd_http(timeout)))
            .map_err(|e| e.to_string())?;
        Ok(Finder::Etcd { etcd, namespace })
    }

    /// Every cluster there now, each with why its keys are not Patroni's, if they are not.
    async fn read(&self) -> Result<Vec<(FoundAt, Result<(), String>)>, String> {
        match self {
            Finder::Etcd { etcd, namespace } => {
                let (scopes, _) = crate::source::dcs::read_namespace(etcd, namespace)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(scopes
                    .into_iter()
                    .map(|(scope, keys)| {
                        (
                            FoundAt::Etcd { scope },
                            keys.map(|_| ()).map_err(|b| b.to_string()),
                        )
                    })
                    .collect())
            }
            Finder::Kubernetes { client, spec } => {
                let found = crate::source::k8s::dcs::read_selected(
                    client,
                    &spec.namespaces,
                    &spec.selector,
                )
                .await
                .map_err(|e| e.to_string())?;
                Ok(found
                    .into_iter()
                    .map(|f| {
                        (
                            FoundAt::Kubernetes {
                                namespace: f.namespace,
                                scope: f.scope,
                            },
                            f.keys.map(|_| ()).map_err(|b| b.to_string()),
                        )
                    })
                    .collect())
            }
        }
    }
}

pub(super) async fn run(
    spec: FleetSpec,
    kit: Kit,
    mut clients: HttpCache,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = kit.shared.clone();
    let FleetSpec {
        listed,
        fixed,
        discover,
        mut ownership,
    } = spec;
    let dcs = discover.as_ref().map(|(d, f)| (d, f));
    let mut every = Duration::from_secs(3600);
    if let Some((d, _)) = &dcs {
        every = every.min(d.interval);
    }
    if let Ownership::Ring { membership, .. } = &ownership {
        every = every.min(membership.refresh_every());
    }
    let shard_label = match &ownership {
        Ownership::Static(s) => s.index.to_string(),
        Ownership::Ring { membership, .. } => membership.id.clone(),
    };
    let listed_names: BTreeSet<String> = listed.iter().map(|c| c.name.clone()).collect();
    // Discovered scopes: their entry, and since when they are missing from the DCS.
    let mut known: BTreeMap<String, ClusterConfig> = BTreeMap::new();
    let mut missing_since: BTreeMap<String, Instant> = BTreeMap::new();
    let mut last_read: Option<Instant> = None;
    let mut discovered_once = dcs.is_none();
    let mut ring: Option<Ring> = None;
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        // Who else is there.
        if let Ownership::Ring { membership, .. } = &mut ownership {
            let read = match membership.renew().await {
                Ok(()) => membership.members().await,
                Err(e) => Err(e),
            };
            match read {
                Ok(mut members) => {
                    if !members.contains(&membership.id) {
                        members.push(membership.id.clone());
                    }
                    let next = Ring::new(members);
                    if ring.as_ref() != Some(&next) {
                        tracing::info!(watchers = ?next.members(), "shard: the ring of watchers");
                    }
                    shared.metrics.shard_total.set(next.members().len() as i64);
                    ring = Some(next);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "shard: cannot read the watchers: the shares stay as they are");
                    shared.metrics.shard_errors.inc();
                }
            }
        }
        // What is in the DCS.
        if let Some((d, finder)) = &dcs {
            let due = last_read.is_none_or(|t| t.elapsed() >= d.interval);
            if due {
                last_read = Some(Instant::now());
                match finder.read().await {
                    Ok(found) => {
                        discovered_once = true;
                        let present: BTreeSet<String> =
                            found.iter().map(|(at, _)| at.name()).collect();
                        for (at, keys) in &found {
                            let name = at.name();
                            if fixed.contains(&name)
                                || listed_names.contains(&name)
                                || known.contains_key(&name)
                            {
                                continue;
                            }
                            if let Err(bad) = keys {
                                tracing::warn!(cluster = %name, error = %bad, "discover: not Patroni's keys: not watched");
                                continue;
                            }
                            match d.entry(at) {
                                Ok(c) => {
                                    tracing::info!(cluster = %name, "discover: a new cluster in the DCS");
                                    known.insert(name, c);
                                }
                                Err(e) => {
                                    tracing::warn!(cluster = %name, error = %e, "discover: cannot watch it");
                                    shared.metrics.discover_errors.inc();
                                }
                            }
                        }
                        let now = Instant::now();
                        missing_since.retain(|name, _| !present.contains(name));
                        known.retain(|name, _| {
                            if present.contains(name) {
                                return true;
                            }
                            let since = *missing_since.entry(name.clone()).or_insert(now);
                            let keep = now.duration_since(since) < d.grace;
                            if !keep {
                                tracing::info!(cluster = %name, grace = %humantime::format_duration(d.grace), "discover: gone from the DCS");
                            }
                            keep
                        });
                        missing_since.retain(|name, _| known.contains_key(name));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "discover: cannot read the DCS: nothing added or dropped");
                        shared.metrics.discover_errors.inc();
                    }
                }
            }
        }
        // Which clusters are this watcher's now.
        let owns = |name: &str| match &ownership {
            Ownership::Static(s) => s.owns(name),
            Ownership::Ring {
                membership,
                replicas,
            } => ring
                .as_ref()
                .is_some_and(|r| r.owns(&membership.id, name, *replicas)),
        };
        let ring_known = !matches!(ownership, Ownership::Ring { .. }) || ring.is_some();
        let mut wanted: BTreeMap<&str, (&ClusterConfig, bool)> = BTreeMap::new();
        for c in &listed {
            wanted.insert(c.name.as_str(), (c, false));
        }
        for (name, c) in &known {
            wanted.entry(name.as_str()).or_insert((c, true));
        }
        if ring_known {
            wanted.retain(|name, _| owns(name));
            let stale: Vec<String> = running
                .keys()
                .filter(|n| !wanted.contains_key(n.as_str()))
                .cloned()
                .collect();
            for name in stale {
                if let Some(r) = running.remove(&name) {
                    let _ = r.stop.send(true);
                    let _ = r.task.await;
                }
                shared.drop_cluster(&name);
                tracing::info!(cluster = %name, "no longer polled by this watcher");
            }
            for (name, (c, discovered)) in wanted {
                if running.contains_key(name) {
                    continue;
                }
                match kit.poller(c, &mut clients).await {
                    Ok(poller) => {
                        shared.add(c);
                        let (stop, rx) = watch::channel(false);
                        let task = tokio::spawn(Box::new(poller).run(Duration::ZERO, rx));
                        running.insert(
                            name.to_string(),
                            Running {
                                stop,
                                task,
                                discovered,
                            },
                        );
                        tracing::info!(cluster = %name, "polled by this watcher");
                    }
                    Err(e) => {
                        tracing::warn!(cluster = %name, error = %e, "cannot poll it");
                        shared.metrics.discover_errors.inc();
                    }
                }
            }
        }
        shared
            .metrics
            .discovered_clusters
            .set(running.values().filter(|r| r.discovered).count() as i64);
        shared
            .metrics
            .shard_clusters
            .get_or_create(&super::metrics::ShardL {
                shard: (&shard_label).into(),
            })
            .set((fixed.len() + running.len()) as i64);
        if discovered_once && ring_known {
            shared.discovered.store(true, Ordering::Relaxed);
        }
    }
    for (_, r) in running {
        let _ = r.stop.send(true);
        let _ = r.task.await;
    }
    if let Ownership::Ring { membership, .. } = &mut ownership {
        membership.leave().await;
    }
}
