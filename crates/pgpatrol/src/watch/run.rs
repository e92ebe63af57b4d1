//! The daemon: starts one poller per cluster (staggered), the HTTP server, the alert
//! sender and the state saver, and stops them all on shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use pgpatrol_core::slo::SampleLog;

use super::config::{ClusterConfig, WatchConfig};
use super::poller::Poller;
use super::{alerts, autoheal, detail_for, server, sli_kind, slo_spec, state, Shared};

/// Runs the daemon until `shutdown` turns true.
pub async fn run(mut cfg: WatchConfig, mut outside: watch::Receiver<bool>) -> anyhow::Result<()> {
    // This watcher's share: every listed cluster's settings are checked, its own are polled.
    let share = super::shard::resolve(cfg.shard.as_ref(), cfg.timeout)
        .await
        .map_err(anyhow::Error::msg)?;
    for c in &cfg.clusters {
        cfg.target(c).map_err(anyhow::Error::msg)?;
    }
    // Where discovery looks: a bad setting (an etcd URL, a kubeconfig or context) stops here.
    let finder = match &cfg.discover {
        Some(d) => Some(
            super::fleet::Finder::new(d, cfg.timeout)
                .await
                .map_err(|e| anyhow::anyhow!("discover: {e}"))?,
        ),
        None => None,
    };
    let listed = cfg.clusters.len();
    // Dynamic sharding: every listed cluster goes to the fleet task, which polls those the
    // ring gives this watcher; otherwise this watcher's share is polled from start to end.
    let dynamic = cfg.shard.clone().filter(|s| s.is_dynamic());
    let managed = if dynamic.is_some() {
        std::mem::take(&mut cfg.clusters)
    } else {
        cfg.clusters.retain(|c| share.shard.owns(&c.name));
        Vec::new()
    };
    // Everything below stops on `shutdown`: the caller's (`outside`), or a share that
    // changed under a watcher that follows its StatefulSet.
    let (stop, shutdown) = watch::channel(false);
    let mut shared = Shared::new(&cfg);
    shared.shard = share.shard;
    if let Some(p) = &cfg.state_file {
        // The event journal lives beside the state file.
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        shared.events = super::events::Events::with_journal(dir)
            .map_err(|e| anyhow::anyhow!("{}: cannot open events.jsonl: {e}", dir.display()))?;
    }
    let shared = Arc::new(shared);
    let alert_queue =
        alerts::AlertQueue::new(cfg.alert_queue, shared.metrics.alerts_dropped.clone());
    let sinks = alerts::AlertSinks {
        alertmanager: cfg.alertmanager.clone(),
        webhook: cfg.webhook.clone(),
        doc_link: cfg.doc_link.clone(),
    };
    let alert_task = tokio::spawn(sinks.run(alert_queue.clone()));

    // Everything that can be wrong with the file is found before anything starts.
    let mut pollers = Vec::new();
    // The state file is this watcher's alone: locked before it is read.
    let state_file = match &cfg.state_file {
        Some(p) => Some(std::sync::Arc::new(state::StateFile::open(p)?)),
        None => None,
    };
    let persisted = match &cfg.state_file {
        Some(p) => state::load(p)?,
        None => state::Persisted::default(),
    };
    // Clusters with the same TLS and timeout settings share one HTTP client.
    let mut clients = crate::source::http::HttpCache::default();
    let persisted = Arc::new(persisted);
    // The cluster entries are read once, here, into their pollers: neither the kit (which
    // needs the top-level settings) nor this function keeps them (10,000 entries are tens
    // of MiB).
    let clusters = std::mem::take(&mut cfg.clusters);
    let kit = Kit {
        cfg: Arc::new(cfg.clone()),
        shared: shared.clone(),
        alerts: alert_queue.clone(),
        persisted: persisted.clone(),
        state_file: state_file.clone(),
    };
    for c in &clusters {
        pollers.push(kit.poller(c, &mut clients).await?);
    }
    let fixed: Vec<String> = clusters.iter().map(|c| c.name.clone()).collect();
    drop(clusters);
    let ownership = match &dynamic {
        Some(s) => Some(super::fleet::Ownership::Ring {
            membership: membership(s, cfg.timeout)
                .await
                .map_err(anyhow::Error::msg)?,
            replicas: s.replicas.unwrap_or(1),
        }),
        None if cfg.discover.is_some() => Some(super::fleet::Ownership::Static(share.shard)),
        None => None,
    };

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e} (choose another --listen)",
                cfg.listen
            )
        })?;
    tracing::info!(
        listen = %cfg.listen,
        clusters = fixed.len(),
        listed,
        shard = %if dynamic.is_some() { "dynamic (the ring of watchers)".to_string() } else { format!("{} of {}", share.shard.index, share.shard.total) },
        "pgpatrol watch started"
    );
    if dynamic.is_none() {
        let sl = super::metrics::ShardL {
            shard: share.shard.index.to_string().into(),
        };
        shared
            .metrics
            .shard_clusters
            .get_or_create(&sl)
            .set(fixed.len() as i64);
        shared.metrics.shard_total.set(i64::from(share.shard.total));
    }
    let expected = match &cfg.listen_auth {
        Some(a) => Some(a.expected().map_err(anyhow::Error::msg)?),
        None => None,
    };
    let server = match &cfg.listen_tls {
        Some(t) => tokio::spawn(server::serve_tls(
            listener,
            t.server_config().map_err(anyhow::Error::msg)?,
            shared.clone(),
            expected,
            shutdown.clone(),
        )),
        None => tokio::spawn(server::serve(
            listener,
            shared.clone(),
            expected,
            shutdown.clone(),
        )),
    };
    let webhook = cfg.event_webhook.clone().map(|url| {
        tokio::spawn(super::events::post_to(
            url,
            shared.clone(),
            shutdown.clone(),
        ))
    });

    let mut tasks = tokio::task::JoinSet::new();
    let n = pollers.len();
    for (i, p) in pollers.into_iter().enumerate() {
        let first = first_poll_offset(i, n, p.interval);
        tasks.spawn(Box::new(p).run(first, shutdown.clone()));
    }
    // Discovered clusters, and all of them under dynamic sharding: polled by tasks started
    // and stopped as the DCS and the ring of watchers say.
    let discovery = ownership.map(|ownership| {
        let spec = super::fleet::FleetSpec {
            listed: managed,
            fixed: fixed.into_iter().collect(),
            discover: cfg.discover.clone().zip(finder),
            ownership,
        };
        tokio::spawn(super::fleet::run(spec, kit, clients, shutdown.clone()))
    });
    let saver = state_file.clone().map(|sf| {
        let (shared, mut stop) = (shared.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                    _ = stop.changed() => break,
                }
                sf.save(&shared);
            }
        })
    });

    let follow = share.follow.map(|w| {
        tokio::spawn(super::shard::replicas_changed(
            w,
            share.shard.total,
            cfg.interval,
        ))
    });
    let mut failure = None;
    match follow {
        Some(mut f) => tokio::select! {
            _ = outside.changed() => f.abort(),
            why = &mut f => failure = why.ok(),
        },
        None => {
            let _ = outside.changed().await;
        }
    }
    let _ = stop.send(true);
    match &failure {
        Some(why) => tracing::error!("{why}"),
        None => tracing::info!("shutting down"),
    }
    while tasks.join_next().await.is_some() {}
    if let Some(d) = discovery {
        let _ = d.await;
    }
    if let Some(s) = saver {
        let _ = s.await;
    }
    if let Some(sf) = &state_file {
        sf.save(&shared);
    }
    let _ = server.await;
    if let Some(w) = webhook {
        let _ = tokio::time::timeout(Duration::from_secs(6), w).await;
    }
    // What is queued still goes out, within one send timeout; a dead receiver does not
    // hold up the exit.
    alert_queue.close();
    let _ = tokio::time::timeout(alerts::SEND_TIMEOUT * 2, alert_task).await;
    match failure {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(()),
    }
}

/// Dynamic sharding's registration: the etcd of `shard.dcs`, this watcher's id (`id`, else
/// `POD_NAME`, else HOST:PID), the prefix and the lease's ttl.
async fn membership(
    s: &super::config::ShardConfig,
    timeout: Duration,
) -> Result<super::members::Membership, String> {
    let id =
        s.id.clone()
            .or_else(|| std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()))
            .unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                format!("{}:{}", host.trim(), std::process::id())
            });
    let ttl = s.ttl.unwrap_or(Duration::from_secs(15));
    if let Some(k) = &s.kubernetes {
        let t = crate::source::k8s::K8sTarget {
            namespace: k.namespace.clone().filter(|n| !n.is_empty()),
            kubeconfig: k.kubeconfig.clone(),
            context: k.context.clone(),
            ..Default::default()
        };
        let (client, namespace) =
            crate::source::k8s::client(&t, timeout.min(Duration::from_secs(2)), timeout)
                .await
                .map_err(|e| format!("shard.kubernetes: {e}"))?;
        let name = super::config::lease_name(k.lease_prefix(), &id);
        return Ok(super::members::Membership::kubernetes(
            client,
            &namespace,
            &name,
            &k.ring(),
            &id,
            ttl,
        ));
    }
    let d = s.dcs.as_ref().ok_or("shard: no dcs")?;
    let (etcd, _) = d
        .password()
        .and_then(|pw| d.resolve_namespace(pw, None, &super::fleet::etcd_http(timeout)))
        .map_err(|e| format!("shard.dcs: {e}"))?;
    let prefix = s
        .prefix
        .clone()
        .unwrap_or_else(|| "/pgpatrol/watchers/".into());
    super::members::Membership::new(&etcd, &prefix, &id, ttl)
}

/// What a poller is built from: the configuration, the shared state, the alert queue, and
/// what the state file kept.
#[derive(Clone)]
pub(super) struct Kit {
    pub(super) cfg: Arc<WatchConfig>,
    pub(super) shared: Arc<Shared>,
    pub(super) alerts: alerts::AlertQueue,
    pub(super) persisted: Arc<state::Persisted>,
    pub(super) state_file: Option<Arc<state::StateFile>>,
}

impl Kit {
    /// The poller of cluster `c` (its source connected, its SLO log and heal history taken
    /// from the state file).
    pub(super) async fn poller(
        &self,
        c: &ClusterConfig,
        clients: &mut crate::source::http::HttpCache,
    ) -> anyhow::Result<Poller> {
        let (cfg, shared, persisted) = (&*self.cfg, &self.shared, &*self.persisted);
        let source = cfg
            .target(c)
            .map_err(anyhow::Error::msg)?
            .connect_with(clients)
            .await
            .map_err(|e| anyhow::anyhow!("cluster {:?}: {e}", c.name))?;
        let spec = slo_spec(c).map_err(anyhow::Error::msg)?;
        let log = match (&spec, persisted.samples.get(&c.name)) {
            (Some(spec), Some(log)) if same_shape(log, &SampleLog::for_spec(spec)) => {
                Some(log.clone())
            }
            (Some(spec), _) => Some(SampleLog::for_spec(spec)),
            (None, _) => None,
        };
        if let Some(log) = log {
            shared
                .samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(c.name.clone(), log);
        }
        let mut healer = match &c.heal {
            Some(h) if h.enabled => Some(autoheal::Healer::new(
                cfg,
                c,
                h,
                persisted
                    .heal_history
                    .get(&c.name)
                    .cloned()
                    .unwrap_or_default(),
            )?),
            _ => None,
        };
        if let (Some(h), Some(sf)) = (healer.as_mut(), &self.state_file) {
            h.persist_to(&c.name, sf.clone());
        }
        if healer.is_some() {
            autoheal::init_metrics(&shared.metrics, &c.name);
        }
        Ok(Poller {
            name: c.name.as_str().into(),
            interval: cfg.interval(c),
            timeout: cfg.timeout(c),
            detail: detail_for(c),
            source,
            spec,
            slo_lag: sli_kind(c),
            heal_policy: c.heal.as_ref().map(autoheal::policy),
            healer: healer.map(Box::new),
            shared: shared.clone(),
            alerts: self.alerts.clone(),
            firing: BTreeSet::new(),
            exported: BTreeMap::new(),
            last_history: None,
            checks: super::checks::CheckRunner::new(cfg, c)
                .map_err(anyhow::Error::msg)?
                .map(Box::new),
            pg: match &c.postgres {
                Some(p) => Some(p.login(&c.name).map_err(anyhow::Error::msg)?),
                None => None,
            },
            trend: Default::default(),
            standby_source: c.source.clone(),
            slo_of: c.slo.as_ref().map(|s| s.of).unwrap_or_default(),
            standby_seen: None,
            last_cluster: None,
            seen: Default::default(),
        })
    }
}

/// When the `i`-th of `n` pollers polls first. Pollers that all started at once would poll
/// at once forever: 1,000 clusters would be 2,000 connections in flight every interval, and
/// the memory for them held as the process's peak. Pollers that each had a phase of their
/// own would wake the runtime's threads 100 times a second, and switching threads costs more
/// than the polls. So they start in groups: up to [`POLL_GROUP`] clusters together, groups
/// [`POLL_GROUP_SPACING`] apart, and bigger groups when that many would not fit in one
/// interval, so every cluster is still polled within its first interval and a fleet of up to
/// 50 clusters is polled at once.
fn first_poll_offset(i: usize, n: usize, interval: Duration) -> Duration {
    let fit = (interval.as_nanos() / POLL_GROUP_SPACING.as_nanos()).max(1);
    let groups = (n.div_ceil(POLL_GROUP) as u128).clamp(1, fit);
    // Both are at most `n`, which a u32 holds for any fleet a config file can list.
    let (groups, i) = (groups as u32, i as u32);
    POLL_GROUP_SPACING * (i % groups)
}

/// See [`first_poll_offset`]: measured with `scripts/bench-fleet` (docs/BENCHMARKS.md).
const POLL_GROUP: usize = 50;
const POLL_GROUP_SPACING: Duration = Duration::from_millis(500);

/// A persisted log is reused only when the SLO it was made for has the same bucket layout;
/// otherwise (the window changed) the samples start afresh.
fn same_shape(a: &SampleLog, b: &SampleLog) -> bool {
    (
        a.fine_width(),
        a.fine_span(),
        a.coarse_width(),
        a.coarse_span(),
    ) == (
        b.fine_width(),
        b.fine_span(),
        b.coarse_width(),
        b.coarse_span(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_polls_start_in_groups_within_one_interval() {
        let ten = Duration::from_secs(10);
        let offsets = |n: usize, interval| {
            (0..n)
                .map(|i| first_poll_offset(i, n, interval))
                .collect::<Vec<_>>()
        };
        assert!(offsets(50, ten).iter().all(|d| d.is_zero()));
        let o = offsets(1000, ten);
        assert_eq!(o.iter().filter(|d| d.is_zero()).count(), 50);
        assert_eq!(o.iter().max(), Some(&Duration::from_millis(9500)));
        let o = offsets(5000, ten);
        assert_eq!(o.iter().filter(|d| d.is_zero()).count(), 250);
        assert!(o.iter().all(|d| *d < ten));
        assert!(offsets(500, Duration::from_millis(200))
            .iter()
            .all(|d| d.is_zero()));
    }
}
