//! `discover:`: the clusters of a DCS, watched as they come and go. Every `interval` one
//! range over Patroni's namespace in etcd (`source::dcs::read_namespace`) gives the scopes;
//! a scope this watcher owns (its shard) and does not list gets a poller built from the
//! template (read from the DCS, `dcs:` with its scope); one missing from the DCS for
//! `grace` loses its poller, its page and its series. A read that fails changes nothing:
//! "could not read etcd" is never "every cluster is gone".

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use pgpatrol_core::shard::Shard;

use super::config::DiscoverConfig;
use super::run::Kit;
use crate::source::rest::{HttpCache, HttpOptions};

/// A discovered cluster's poller: its own stop, and its task.
struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

pub(super) async fn run(
    d: DiscoverConfig,
    kit: Kit,
    shard: Shard,
    mut clients: HttpCache,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = kit.shared.clone();
    let http = HttpOptions {
        auth: None,
        ca_file: None,
        client_cert: None,
        insecure: false,
        connect_timeout: kit.cfg.timeout.min(Duration::from_secs(2)),
        timeout: kit.cfg.timeout,
    };
    let resolved = d
        .dcs
        .password()
        .and_then(|pw| d.dcs.resolve_namespace(pw, None, &http));
    let (etcd, namespace) = match resolved {
        Ok(r) => r,
        Err(e) => {
            // Checked before start (config::DiscoverConfig::check); a password file that
            // went away since is said, and nothing is discovered.
            tracing::error!(error = %e, "discover: cannot reach the DCS: no cluster is discovered");
            return;
        }
    };
    let listed: BTreeSet<String> = kit.cfg.clusters.iter().map(|c| c.name.clone()).collect();
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut missing_since: BTreeMap<String, Instant> = BTreeMap::new();
    let mut tick = tokio::time::interval(d.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let scopes = match crate::source::dcs::read_namespace(&etcd, &namespace).await {
            Ok((scopes, _)) => scopes,
            Err(e) => {
                tracing::warn!(error = %e, "discover: cannot read the DCS: nothing added or dropped");
                shared.metrics.discover_errors.inc();
                continue;
            }
        };
        // Present: every scope with keys, readable or not (a scope whose keys do not decode
        // is not started, and not dropped either).
        let present: BTreeSet<String> = scopes.iter().map(|(s, _)| s.clone()).collect();
        for (scope, keys) in &scopes {
            if listed.contains(scope) || running.contains_key(scope) || !shard.owns(scope) {
                continue;
            }
            if let Err(bad) = keys {
                tracing::warn!(cluster = %scope, error = %bad, "discover: not Patroni's keys: not watched");
                continue;
            }
            let started = match d.entry(scope) {
                Ok(c) => kit.poller(&c, &mut clients).await.map(|p| (c, p)),
                Err(e) => Err(anyhow::anyhow!(e)),
            };
            match started {
                Ok((c, poller)) => {
                    shared.add(&c);
                    let (stop, rx) = watch::channel(false);
                    let task = tokio::spawn(poller.run(Duration::ZERO, rx));
                    running.insert(scope.clone(), Running { stop, task });
                    tracing::info!(cluster = %scope, "discover: a new cluster is watched");
                }
                Err(e) => {
                    tracing::warn!(cluster = %scope, error = %e, "discover: cannot watch it");
                    shared.metrics.discover_errors.inc();
                }
            }
        }
        let now = Instant::now();
        missing_since.retain(|name, _| !present.contains(name));
        let gone: Vec<String> = running
            .keys()
            .filter(|name| !present.contains(*name))
            .filter(|name| {
                let since = *missing_since.entry((*name).clone()).or_insert(now);
                now.duration_since(since) >= d.grace
            })
            .cloned()
            .collect();
        for name in gone {
            if let Some(r) = running.remove(&name) {
                let _ = r.stop.send(true);
                let _ = r.task.await;
            }
            missing_since.remove(&name);
            shared.drop_cluster(&name);
            tracing::info!(cluster = %name, grace = %humantime::format_duration(d.grace), "discover: gone from the DCS: no longer watched");
        }
        shared.metrics.discovered_clusters.set(running.len() as i64);
        shared
            .metrics
            .shard_clusters
            .get_or_create(&super::metrics::ShardL {
                shard: shard.index.to_string(),
            })
            .set((listed.len() + running.len()) as i64);
        shared.discovered.store(true, Ordering::Relaxed);
    }
    for (_, r) in running {
        let _ = r.stop.send(true);
        let _ = r.task.await;
    }
}
