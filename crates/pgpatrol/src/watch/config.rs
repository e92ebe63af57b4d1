//! `watch.yml`: which clusters to watch, their SLOs, and whether (and how safely) to heal.
//! The file says what and how safely; flags say how to run (listen address, log format).
//!
//! ```yaml
//! listen: 127.0.0.1:9187          # /metrics, /healthz, /readyz, /plan
//! interval: 10s                   # default poll interval
//! timeout: 5s                     # default per-poll timeout
//! state_file: /var/lib/pgpatrol/watch-state.json   # SLO samples survive restarts
//! audit_log: /var/log/pgpatrol/audit.jsonl        # auto-heal's requests, one JSON line each
//! doc_link: https://runbooks.example/patroni-lag
//! alertmanager: http://127.0.0.1:9093             # POST /api/v2/alerts
//! webhook: http://127.0.0.1:8080/hook             # plain JSON
//! alert_queue: 1024               # alerts waiting to be sent; beyond it the oldest is dropped
//! shard: {index: 0, total: 3}     # several watchers share the clusters (or {from_pod: true},
//!                                 # or {dcs: {url: 'etcd3://...'}, ttl: 15s, replicas: 1}: dynamic,
//!                                 # or {kubernetes: {lease_prefix: pgpatrol-watch-, namespace: ns}}: dynamic on Leases)
//! discover: {dcs: {url: 'etcd3://10.0.0.1:2379'}, interval: 30s, grace: 5m, template: {slo: ...}}
//!   # or Patroni's Kubernetes DCS: {kubernetes: {selector: application=spilo, namespaces: [a, b]}, ...}
//! clusters:
//!   - name: demo
//!     urls: [http://10.0.0.5:8008, http://10.0.0.6:8008]   # or patroni_yml: /etc/patroni.yml
//!     username: patrol
//!     password_file: /etc/pgpatrol/patrol.password
//!     slo: {objective: 99.5%, threshold: 5MB, window: 30d}
//!     heal: {enabled: true, tolerance: 5MB, persist_samples: 3, cooldown: 30m, max_attempts: 3}
//!     # or decide by the lag trend: rebuild only a replica that cannot catch up sooner itself
//!     # heal: {enabled: true, tolerance: 5MB, by: trend, trend: {window: 2m, factor: 2}}
//!   - name: demo-dr                # a standby cluster of demo
//!     urls: [http://10.0.1.5:8008]
//!     source: http://10.0.0.5:8008   # pgpatrol_standby_lag_* against it
//!     slo: {objective: 99.5%, threshold: 64MB, window: 30d, of: standby}
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use pgpatrol_core::heal::DecideBy;
use pgpatrol_core::heal::TrendPolicy;
use pgpatrol_core::slo::parse_objective;
use pgpatrol_core::{ByteSize, LagKind};

use crate::source::target::{duration, opt_duration, AccessSettings, Target};

/// A YAML scalar as text: sizes and objectives may be written as numbers or strings.
fn scalar<'de, D: Deserializer<'de>>(d: D, what: &str) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::String(s) => Ok(s),
        other => Err(serde::de::Error::custom(format!("{other} is not {what}"))),
    }
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    scalar(d, "a size like 5MB")?
        .parse::<ByteSize>()
        .map_err(serde::de::Error::custom)
}

fn objective<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    parse_objective(&scalar(d, "an objective like 99.5%")?).map_err(serde::de::Error::custom)
}

pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9187))
}
fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Basic authentication on the listener: the page, `/events`, `/plan` and `/metrics`
    /// ask for it (`/healthz` and `/readyz` stay open for probes).
    #[serde(default)]
    pub listen_auth: Option<ListenAuth>,
    /// HTTPS on the listener: a PEM certificate chain and its key.
    #[serde(default)]
    pub listen_tls: Option<ListenTls>,
    /// Every event of the event log, POSTed as JSON to this URL (5 s timeout, never retried,
    /// a failure logged and counted).
    #[serde(default)]
    pub event_webhook: Option<String>,
    #[serde(default = "default_interval", deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// Auto-heal's requests, one JSON line each (as `--audit-log` for the commands).
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    #[serde(default)]
    pub doc_link: Option<String>,
    #[serde(default)]
    pub alertmanager: Option<String>,
    #[serde(default)]
    pub webhook: Option<String>,
    /// At most this many alerts wait to be sent; beyond it the oldest is dropped (and
    /// counted in `pgpatrol_alerts_dropped_total`).
    #[serde(default = "default_alert_queue")]
    pub alert_queue: usize,
    /// Thresholds of the runbook's checks (`pgpatrol doctor --checks` reads this section).
    #[serde(default)]
    pub checks: Option<crate::doctor::config::ChecksConfig>,
    /// Several watchers share `clusters`: this one polls only its share (`--shard`,
    /// `--total-shards`, `--shard-from-pod` override it).
    #[serde(default)]
    pub shard: Option<ShardConfig>,
    /// `metrics:`: which optional series `/metrics` carries.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Clusters found in a DCS, beside (or instead of) the listed ones.
    #[serde(default)]
    pub discover: Option<DiscoverConfig>,
    #[serde(default)]
    pub clusters: Vec<ClusterConfig>,
}

/// `metrics:`: the optional series of `/metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Export `pgpatrol_slo_burn_rate` for each window of the SLO alerts (7 series per
    /// cluster): off by default, as Prometheus computes them from
    /// `pgpatrol_slo_samples_total` (docs/METRICS.md).
    #[serde(default)]
    pub burn_rates: bool,
}

/// `discover:`: every Patroni cluster under a namespace in one etcd (`dcs:`), or every one
/// whose Kubernetes DCS objects match a label selector (`kubernetes:`), is watched with the
/// `template`'s settings. A cluster that appears is watched within one `interval`; one gone
/// for `grace` is dropped (its series and its page go). A reading that fails adds and drops
/// nothing. A listed cluster of the same name wins; sharding applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverConfig {
    /// The etcd and namespace: `url` (`etcd3://HOST:PORT[,...]`), `namespace` (default
    /// /service), `username`, `password_file`, `cacert`, `cert`, `key` — no `scope`. Each
    /// cluster is named by its scope and read from the DCS (`dcs:` with its scope).
    #[serde(default)]
    pub dcs: Option<crate::source::dcs::DcsSettings>,
    /// Patroni's Kubernetes DCS: each cluster is named `<namespace>/<scope>` and read from
    /// its ConfigMaps or Endpoints and pods (`--k8s-dcs`).
    #[serde(default)]
    pub kubernetes: Option<KubeDiscover>,
    #[serde(default = "default_discover_interval", deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(default = "default_discover_grace", deserialize_with = "duration")]
    pub grace: Duration,
    /// Every discovered cluster's entry, without `name` and without where it is (`urls`,
    /// `patroni_yml`, `kubernetes`, `dcs`): credentials for its REST API, `slo`, `heal`, ...
    #[serde(default)]
    pub template: serde_json::Map<String, serde_json::Value>,
}

/// `discover.kubernetes`: where to look and how to reach the API server.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KubeDiscover {
    /// A label selector (`application=spilo`, `a=b,c`): the Patroni ConfigMaps, Endpoints
    /// and pods carry it (Patroni's `kubernetes.labels`).
    pub selector: String,
    /// The namespaces to look in; none: every namespace (a ClusterRole's list).
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub distribution: Option<String>,
    /// How REST calls reach the pods (for heal): `proxy` (default), `direct` or `exec`.
    #[serde(default)]
    pub access: crate::source::k8s::Access,
    #[serde(default)]
    pub port: Option<u16>,
    /// A Secret in each cluster's namespace with Patroni's REST `username` and `password`.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A cluster discovery found: a scope in etcd, or a scope in a Kubernetes namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum FoundAt {
    Etcd { scope: String },
    Kubernetes { namespace: String, scope: String },
}

impl FoundAt {
    /// Its name on metrics, alerts and the page: the scope, or `<namespace>/<scope>` (two
    /// namespaces may hold the same scope).
    pub fn name(&self) -> String {
        match self {
            FoundAt::Etcd { scope } => scope.clone(),
            FoundAt::Kubernetes { namespace, scope } => format!("{namespace}/{scope}"),
        }
    }
}

/// A label selector pgpatrol can pass on: `key=value`, `key==value`, `key!=value`, `key`,
/// `!key`, `key in (a,b)`, `key notin (a,b)`, comma-separated.
pub fn check_selector(raw: &str) -> Result<(), String> {
    let bad = |why: String| {
        Err(format!(
            "selector {raw:?}: {why} (write e.g. application=spilo)"
        ))
    };
    if raw.trim().is_empty() {
        return bad("empty".into());
    }
    // Split on commas outside parentheses.
    let (mut terms, mut depth, mut cur) = (Vec::new(), 0i32, String::new());
    for ch in raw.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        if depth < 0 {
            return bad("a ')' without its '('".into());
        }
        cur.push(ch);
    }
    if depth != 0 {
        return bad("a '(' without its ')'".into());
    }
    terms.push(cur);
    let key_ok = |k: &str| {
        let k = k.trim();
        !k.is_empty()
            && k.len() <= 317
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    };
    let value_ok = |v: &str| {
        let v = v.trim();
        v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    for t in &terms {
        let t = t.trim();
        let ok = if let Some((k, v)) = t.split_once("!=") {
            key_ok(k) && value_ok(v)
        } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            key_ok(k) && value_ok(v)
        } else if let Some((k, set)) = t.split_once(" notin ").or_else(|| t.split_once(" in ")) {
            let set = set.trim();
            key_ok(k)
                && set.starts_with('(')
                && set.ends_with(')')
                && set[1..set.len() - 1].split(',').all(value_ok)
        } else {
            key_ok(t.strip_prefix('!').unwrap_or(t))
        };
        if !ok {
            return bad(format!("{t:?} is not a label requirement"));
        }
    }
    Ok(())
}

fn default_discover_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_discover_grace() -> Duration {
    Duration::from_secs(300)
}

impl DiscoverConfig {
    pub fn check(&self) -> Result<(), String> {
        match (&self.dcs, &self.kubernetes) {
            (Some(_), Some(_)) => {
                return Err(
                    "discover: `dcs` (etcd) or `kubernetes` (label selector), not both".into(),
                )
            }
            (None, None) => {
                return Err(
                    "discover: give `dcs: {url: etcd3://HOST:PORT}` or `kubernetes: {selector: LABEL=VALUE}`"
                        .into(),
                )
            }
            (Some(dcs), None) => {
                if dcs.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
                    return Err("discover.dcs: give `url` (etcd3://HOST:PORT)".into());
                }
                if dcs.scope.is_some() {
                    return Err(
                        "discover.dcs: no `scope`: every scope under the namespace is discovered"
                            .into(),
                    );
                }
            }
            (None, Some(k)) => {
                check_selector(&k.selector).map_err(|e| format!("discover.kubernetes: {e}"))?;
                for ns in &k.namespaces {
                    let ok = !ns.is_empty()
                        && ns.len() <= 63
                        && ns
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !ns.starts_with('-')
                        && !ns.ends_with('-');
                    if !ok {
                        return Err(format!(
                            "discover.kubernetes.namespaces: {ns:?} is not a namespace name (lower-case letters, digits, -)"
                        ));
                    }
                }
            }
        }
        for key in ["name", "urls", "patroni_yml", "kubernetes", "dcs"] {
            if self.template.contains_key(key) {
                return Err(format!(
                    "discover.template: no `{key}` (each discovered cluster is named by its scope and read from its DCS)"
                ));
            }
        }
        if self.interval < Duration::from_secs(1) {
            return Err("discover.interval: at least 1s".into());
        }
        // The template makes a valid cluster entry.
        let probe = match &self.kubernetes {
            Some(_) => FoundAt::Kubernetes {
                namespace: "template-check".into(),
                scope: "template-check".into(),
            },
            None => FoundAt::Etcd {
                scope: "template-check".into(),
            },
        };
        self.entry(&probe).map(|_| ())
    }

    /// The entry of a discovered cluster: the template, named, read from its DCS.
    pub fn entry(&self, at: &FoundAt) -> Result<ClusterConfig, String> {
        let mut v = self.template.clone();
        v.insert("name".into(), at.name().into());
        match (at, &self.dcs, &self.kubernetes) {
            (FoundAt::Etcd { scope }, Some(dcs), _) => {
                let mut dcs = serde_json::to_value(dcs).map_err(|e| e.to_string())?;
                dcs["scope"] = scope.as_str().into();
                v.insert("dcs".into(), dcs);
            }
            (FoundAt::Kubernetes { namespace, scope }, _, Some(k)) => {
                let mut t = serde_json::json!({
                    "resource": "",
                    "namespace": namespace,
                    "scope": scope,
                    "dcs": true,
                    "access": k.access,
                });
                if let Some(p) = &k.kubeconfig {
                    t["kubeconfig"] = p.to_string_lossy().into_owned().into();
                }
                if let Some(c) = &k.context {
                    t["context"] = c.as_str().into();
                }
                if let Some(d) = &k.distribution {
                    t["distribution"] = d.as_str().into();
                }
                if let Some(p) = k.port {
                    t["port"] = p.into();
                }
                if let Some(s) = &k.secret {
                    t["secret"] = s.as_str().into();
                }
                v.insert("kubernetes".into(), t);
            }
            _ => return Err("discover: the cluster was not found where discover looks".into()),
        }
        serde_json::from_value(serde_json::Value::Object(v))
            .map_err(|e| format!("discover.template: {e}"))
    }
}

/// `shard:`: which share of `clusters` this watcher polls. Watcher `index` of `total` polls
/// the clusters whose name hashes to `index` (core `shard`); every watcher lists the same
/// clusters. With `from_pod`, the index is the ordinal of this pod's name (`POD_NAME`, else
/// `HOSTNAME`) and the total, unless given, the `spec.replicas` of its StatefulSet.
///
/// Dynamic (`dcs:`): every watcher registers under `prefix` in that etcd on a lease of `ttl`,
/// and the clusters are spread over the watchers alive by a consistent-hash ring
/// (`core::shard::Ring`), each polled by `replicas` of them. A watcher that dies loses its
/// key after `ttl`; its clusters move to the others at their next reading (every `ttl/3`).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub total: Option<u32>,
    #[serde(default)]
    pub from_pod: bool,
    /// Dynamic sharding: the etcd the watchers register in (`url`, and `username`,
    /// `password_file`, `cacert`, `cert`, `key`).
    #[serde(default)]
    pub dcs: Option<crate::source::dcs::DcsSettings>,
    /// Dynamic sharding over Kubernetes: each watcher holds a Lease
    /// `<lease_prefix><id>` in `namespace` and lists the others' by label.
    #[serde(default)]
    pub kubernetes: Option<KubeShard>,
    /// The key prefix of the registrations (default /pgpatrol/watchers/).
    #[serde(default)]
    pub prefix: Option<String>,
    /// A registration's lease (default 15s).
    #[serde(default, deserialize_with = "opt_duration")]
    pub ttl: Option<Duration>,
    /// How many watchers poll each cluster (default 1).
    #[serde(default)]
    pub replicas: Option<usize>,
    /// This watcher's name on the ring (default HOST:PID; set POD_NAME's value in a pod).
    #[serde(default)]
    pub id: Option<String>,
}

/// `shard.kubernetes`: where the watchers' Leases live.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct KubeShard {
    /// Each watcher's Lease is `<lease_prefix><id>` (the id made a valid name), labelled
    /// `pgpatrol/ring: <lease_prefix without its trailing ->` (default `pgpatrol-watch-`).
    #[serde(default)]
    pub lease_prefix: Option<String>,
    /// Default: the context's namespace (in a pod, its own).
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    #[serde(default)]
    pub context: Option<String>,
}

/// The default `shard.kubernetes.lease_prefix`.
pub const LEASE_PREFIX: &str = "pgpatrol-watch-";

impl KubeShard {
    pub fn lease_prefix(&self) -> &str {
        self.lease_prefix.as_deref().unwrap_or(LEASE_PREFIX)
    }

    /// The ring's label value: the prefix without its trailing `-` or `.`.
    pub fn ring(&self) -> String {
        self.lease_prefix().trim_end_matches(['-', '.']).to_string()
    }

    fn check(&self) -> Result<(), String> {
        let p = self.lease_prefix();
        let ok = !p.is_empty()
            && p.len() <= 60
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && !self.ring().is_empty();
        if !ok {
            return Err(format!(
                "shard.kubernetes.lease_prefix {p:?}: lower-case letters, digits, - and ., starting with a letter or digit, at most 60"
            ));
        }
        Ok(())
    }
}

/// The Lease name of watcher `id`: the prefix and the id, lower-cased, every character a
/// Lease name may not hold made `-`.
pub fn lease_name(prefix: &str, id: &str) -> String {
    let id: String = id
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("{prefix}{}", id.trim_matches(['-', '.']));
    name.truncate(253);
    name.trim_end_matches(['-', '.']).to_string()
}

impl ShardConfig {
    pub fn is_dynamic(&self) -> bool {
        self.dcs.is_some() || self.kubernetes.is_some()
    }

    /// What can be told without Kubernetes: `index` and `total` together, or `from_pod`; or
    /// `dcs:` alone (dynamic).
    pub fn check(&self) -> Result<(), String> {
        if self.dcs.is_some() && self.kubernetes.is_some() {
            return Err(
                "shard: the watchers register in `dcs` (etcd) or `kubernetes` (Leases), not both"
                    .into(),
            );
        }
        if let Some(k) = &self.kubernetes {
            if self.index.is_some() || self.total.is_some() || self.from_pod {
                return Err(
                    "shard: `kubernetes` (dynamic) or `index`/`total`/`from_pod` (static), not both"
                        .into(),
                );
            }
            if self.prefix.is_some() {
                return Err(
                    "shard: `prefix` is etcd's key prefix: with `kubernetes`, give `kubernetes.lease_prefix`"
                        .into(),
                );
            }
            k.check()?;
        }
        if let Some(d) = &self.dcs {
            if self.index.is_some() || self.total.is_some() || self.from_pod {
                return Err(
                    "shard: `dcs` (dynamic) or `index`/`total`/`from_pod` (static), not both"
                        .into(),
                );
            }
            if d.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
                return Err("shard.dcs: give `url` (etcd3://HOST:PORT)".into());
            }
        }
        if self.is_dynamic() {
            if self.replicas == Some(0) {
                return Err("shard.replicas: at least 1".into());
            }
            if self.ttl.is_some_and(|t| t < Duration::from_secs(3)) {
                return Err("shard.ttl: at least 3s".into());
            }
            return Ok(());
        }
        if self.prefix.is_some()
            || self.ttl.is_some()
            || self.replicas.is_some()
            || self.id.is_some()
        {
            return Err(
                "shard: `prefix`, `ttl`, `replicas` and `id` go with `dcs` or `kubernetes` (dynamic sharding)"
                    .into(),
            );
        }
        match (self.index, self.total, self.from_pod) {
            (Some(_), _, true) => Err("shard: give `index` or `from_pod: true`, not both".into()),
            (Some(i), Some(t), false) => pgpatrol_core::shard::Shard::new(i, t)
                .map(|_| ())
                .map_err(|e| format!("shard: {e}")),
            (Some(_), None, false) => {
                Err("shard: `index` needs `total` (how many watchers share the clusters)".into())
            }
            (None, Some(t), true) => pgpatrol_core::shard::Shard::new(0, t)
                .map(|_| ())
                .map_err(|e| format!("shard: {e}")),
            (None, None, true) => Ok(()),
            (None, _, false) => Err("shard: give `index` and `total`, or `from_pod: true`".into()),
        }
    }
}

/// `listen_auth:`: who may read the listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenAuth {
    pub username: String,
    /// A file holding the password (its first line).
    pub password_file: PathBuf,
}

impl ListenAuth {
    /// The `Authorization` header value a client must send.
    pub fn expected(&self) -> Result<String, String> {
        use base64::Engine as _;
        let password = crate::source::http::read_password_file(&self.password_file)
            .map_err(|e| format!("listen_auth: {e}"))?;
        Ok(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{password}", self.username))
        ))
    }
}

/// `listen_tls:`: the listener's certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenTls {
    /// PEM: the certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: its private key.
    pub key: PathBuf,
}

impl ListenTls {
    /// The rustls server configuration, or a one-line error naming the file.
    pub fn server_config(&self) -> Result<std::sync::Arc<rustls::ServerConfig>, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|i| i.collect::<Result<_, _>>())
            .map_err(|e| format!("listen_tls.cert {}: {e}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "listen_tls.cert {}: no PEM certificate in it",
                self.cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("listen_tls.key {}: {e}", self.key.display()))?;
        let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("listen_tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "listen_tls: {} and {} do not make a certificate and its key: {e}",
                self.cert.display(),
                self.key.display()
            )
        })?;
        Ok(std::sync::Arc::new(cfg))
    }
}

fn default_alert_queue() -> usize {
    1024
}

/// One cluster to watch.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterConfig {
    /// The label on every metric and alert.
    pub name: String,
    /// How to reach it: `urls`, `patroni_yml`, `username`, `password_file`, `password_env`,
    /// `cacert`, `cert`, `key`, `insecure`, `connect_timeout`, `timeout`, `kubernetes` (the
    /// same settings as the command-line flags).
    #[serde(flatten)]
    pub access: AccessSettings,
    #[serde(default, deserialize_with = "opt_duration")]
    pub interval: Option<Duration>,
    #[serde(default)]
    pub slo: Option<SloConfig>,
    #[serde(default)]
    pub heal: Option<HealConfig>,
    /// PostgreSQL login for the checks that need it (with a `checks:` section).
    #[serde(default)]
    pub postgres: Option<PgConfig>,
    /// A pgBackRest stanza for the backup checks (with a `checks:` section).
    #[serde(default)]
    pub pgbackrest: Option<BackrestConfig>,
    /// A standby cluster's source: a Patroni REST URL of the cluster it replicates from,
    /// reached with this cluster's credentials and TLS settings. Watch then exports the
    /// standby leader's lag against it (`pgpatrol_standby_lag_*`), and `slo.of: standby`
    /// holds the SLO on that lag.
    #[serde(default)]
    pub source: Option<String>,
    /// Any other key: an error (`deny_unknown_fields` does not work with `flatten`).
    #[serde(flatten)]
    pub unknown: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
}

/// `postgres:` of a cluster: how doctor's PostgreSQL checks log in from `watch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    pub user: String,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default = "default_dbname")]
    pub dbname: String,
    /// `disable`, `prefer` (default), `require` or `verify-full` (with `sslrootcert`).
    #[serde(default)]
    pub sslmode: Option<String>,
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
}

fn default_dbname() -> String {
    "postgres".into()
}

impl PgConfig {
    /// The login, the password resolved.
    pub fn login(&self, cluster: &str) -> Result<crate::source::pg::PgLogin, String> {
        let password = match (&self.password_file, &self.password_env) {
            (Some(f), _) => {
                Some(crate::source::http::read_password_file(f).map_err(|e| e.to_string())?)
            }
            (None, Some(v)) => Some(std::env::var(v).map_err(|_| {
                format!("cluster {cluster:?}: postgres.password_env {v} is not set")
            })?),
            (None, None) => None,
        };
        use crate::source::pg::tls::SslMode;
        let mode = match self.sslmode.as_deref().unwrap_or("prefer") {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "cluster {cluster:?}: postgres.sslmode {other:?}: use disable, prefer, require or verify-full"
                ))
            }
        };
        let tls = crate::source::pg::tls::client_config(mode, self.sslrootcert.as_deref())
            .map_err(|e| format!("cluster {cluster:?}: postgres: {e}"))?;
        Ok(crate::source::pg::PgLogin {
            user: self.user.clone(),
            password,
            dbname: self.dbname.clone(),
            connect_timeout: Duration::from_secs(3),
            tls,
            tls_required: matches!(mode, SslMode::Require | SslMode::VerifyFull),
        })
    }
}

/// `pgbackrest:` of a cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackrestConfig {
    pub stanza: String,
    #[serde(default)]
    pub config: Option<PathBuf>,
    #[serde(default)]
    pub bin: Option<PathBuf>,
}

/// The lag SLO of one cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// Fraction of good samples, e.g. `99.5%` (or `0.995`).
    #[serde(deserialize_with = "objective")]
    pub objective: f64,
    /// A sample is good when the SLI is at or below this (a bare number is MB).
    #[serde(deserialize_with = "size")]
    pub threshold: ByteSize,
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    #[serde(default)]
    pub lag: LagKind,
    /// `replicas` (the default): the worst replica's lag in this cluster; `standby`: the
    /// standby leader's lag against the cluster's `source:`.
    #[serde(default)]
    pub of: SloOf,
    /// Override the workbook's burn-rate alert windows (for short windows in tests).
    #[serde(default)]
    pub alerts: Option<Vec<AlertWindowConfig>>,
}

/// What a lag SLO is held on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SloOf {
    #[default]
    Replicas,
    Standby,
}

/// One multi-window burn-rate alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertWindowConfig {
    pub severity: String,
    #[serde(deserialize_with = "duration")]
    pub long: Duration,
    #[serde(deserialize_with = "duration")]
    pub short: Duration,
    pub factor: f64,
}

/// How a healer makes sure it is the only one acting on a cluster: `lease: {etcd: URL}` (an
/// etcd v3 lease, usually the cluster's own DCS), `lease: {kubernetes: NAME}` (a Kubernetes
/// Lease in the cluster's namespace), `lease: {dir: PATH}` (a lock file, one host), or
/// nothing: the etcd of `patroni_yml` when it has an `etcd3` section, else a lock
/// file next to the state file (or in the temp dir).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    #[serde(default)]
    pub etcd: Option<String>,
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// A Kubernetes Lease's name.
    #[serde(default)]
    pub kubernetes: Option<String>,
    /// The operator runs one watcher for this cluster: a lock file on this machine (`dir`,
    /// or the state file's folder, else the temporary folder) is lease enough. Without it,
    /// auto-heal needs an etcd or Kubernetes lease and refuses to start.
    #[serde(default)]
    pub local: bool,
}

/// Auto-heal: opt-in, behind the same guardrails as `pgpatrol heal`, plus persistence,
/// cooldown, a cap on attempts, escalation and one healer per cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(deserialize_with = "size")]
    pub tolerance: ByteSize,
    #[serde(default)]
    pub lag: LagKind,
    /// The breach must hold for this many consecutive samples...
    #[serde(default = "default_persist_samples")]
    pub persist_samples: u32,
    /// ... and for at least this long.
    #[serde(default, deserialize_with = "opt_duration")]
    pub persist_for: Option<Duration>,
    #[serde(default = "default_cooldown", deserialize_with = "duration")]
    pub cooldown: Duration,
    /// At most this many reinitializations of one member in 24 hours; then it escalates
    /// instead of trying again.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "one")]
    pub max_concurrent: usize,
    #[serde(default = "one")]
    pub min_healthy: usize,
    #[serde(default = "default_heal_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Clone from the leader, not from a `clonefrom` replica (Patroni 4.1+).
    #[serde(default)]
    pub from_leader: bool,
    #[serde(default)]
    pub lease: LeaseConfig,
    /// `threshold` (the default) or `trend`: see `TrendConfig`.
    #[serde(default)]
    pub by: DecideBy,
    #[serde(default)]
    pub trend: TrendConfig,
}

/// `heal.trend`: how `by: trend` judges a replica beyond the tolerance, from the samples
/// watch polls anyway.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrendConfig {
    /// Samples this recent count (with a 10 s interval, 2m is 12 samples).
    #[serde(default = "default_trend_window", deserialize_with = "duration")]
    pub window: Duration,
    #[serde(default = "default_min_samples")]
    pub min_samples: usize,
    /// Rebuild a catching-up replica when its ETA exceeds this many rebuild estimates.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// Rebuild whatever the trend at or above this lag.
    #[serde(default = "default_ceiling", deserialize_with = "size")]
    pub ceiling: ByteSize,
    /// Bytes per second a rebuild copies, for the estimate from the data size.
    #[serde(default = "default_throughput", deserialize_with = "size")]
    pub throughput: ByteSize,
}

fn default_trend_window() -> Duration {
    TrendPolicy::default().window
}
fn default_min_samples() -> usize {
    TrendPolicy::default().min_samples
}
fn default_factor() -> f64 {
    TrendPolicy::default().factor
}
fn default_ceiling() -> ByteSize {
    ByteSize(TrendPolicy::default().ceiling)
}
fn default_throughput() -> ByteSize {
    ByteSize(TrendPolicy::default().throughput)
}

impl Default for TrendConfig {
    fn default() -> Self {
        let t = TrendPolicy::default();
        TrendConfig {
            window: t.window,
            min_samples: t.min_samples,
            factor: t.factor,
            ceiling: ByteSize(t.ceiling),
            throughput: ByteSize(t.throughput),
        }
    }
}

impl TrendConfig {
    pub fn policy(&self) -> TrendPolicy {
        TrendPolicy {
            window: self.window,
            min_samples: self.min_samples,
            factor: self.factor,
            ceiling: self.ceiling.0,
            throughput: self.throughput.0,
        }
    }

    /// A bad trend setting, in words.
    pub fn check(&self) -> Result<(), String> {
        if !(self.factor.is_finite() && self.factor > 0.0) {
            return Err(format!(
                "heal.trend.factor {} must be a number above 0",
                self.factor
            ));
        }
        if self.min_samples < 2 {
            return Err(
                "heal.trend.min_samples must be at least 2 (a trend needs two points)".into(),
            );
        }
        if self.window.is_zero() {
            return Err("heal.trend.window must be longer than 0".into());
        }
        if self.throughput.0 == 0 {
            return Err("heal.trend.throughput must be above 0".into());
        }
        Ok(())
    }
}

fn default_persist_samples() -> u32 {
    3
}
fn default_cooldown() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_max_attempts() -> u32 {
    3
}
fn one() -> usize {
    1
}
fn default_heal_timeout() -> Duration {
    Duration::from_secs(600)
}

impl WatchConfig {
    pub fn read(path: &Path) -> Result<Self, String> {
        let raw = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&raw).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        let c: WatchConfig = crate::yaml::from_str(raw)?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.clusters.is_empty() && self.discover.is_none() {
            return Err(
                "no clusters: list at least one under `clusters:` (or find them with `discover:`)"
                    .into(),
            );
        }
        if let Some(d) = &self.discover {
            d.check()?;
        }
        if let Some(s) = &self.shard {
            s.check()?;
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &self.clusters {
            if c.name.is_empty()
                || !c
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            {
                return Err(format!(
                    "cluster name {:?}: use letters, digits, - _ .",
                    c.name
                ));
            }
            if !names.insert(&c.name) {
                return Err(format!("cluster {:?} is listed twice", c.name));
            }
            if let Some(key) = c.unknown.keys().next() {
                return Err(format!(
                    "cluster {:?}: unknown key `{key}` (see docs/GUIDE.md for the keys of a cluster)",
                    c.name
                ));
            }
            if !c.access.names_a_cluster() {
                return Err(format!(
                    "cluster {:?}: give `urls`, `patroni_yml` or `kubernetes`",
                    c.name
                ));
            }
            if c.access.cert.is_some() != c.access.key.is_some() {
                return Err(format!(
                    "cluster {:?}: a client certificate needs both `cert` and `key`",
                    c.name
                ));
            }
            if let Some(k) = c
                .access
                .kubernetes
                .as_ref()
                .filter(|k| !(k.resource.trim().is_empty() && k.dcs && k.scope.is_some()))
            {
                crate::source::k8s::parse_resource(&k.resource)
                    .map_err(|e| format!("cluster {:?}: kubernetes.resource: {e}", c.name))?;
            }
            if let Some(h) = &c.heal {
                h.trend
                    .check()
                    .map_err(|e| format!("cluster {:?}: {e}", c.name))?;
            }
            if let Some(l) = c.heal.as_ref().map(|h| &h.lease) {
                let given = [l.etcd.is_some(), l.dir.is_some(), l.kubernetes.is_some()];
                if given.iter().filter(|g| **g).count() > 1 {
                    return Err(format!(
                        "cluster {:?}: heal.lease takes one of `etcd`, `kubernetes` or `dir`",
                        c.name
                    ));
                }
            }
            if let Some(src) = &c.source {
                crate::source::http::base_url(src)
                    .map_err(|e| format!("cluster {:?}: source: {e}", c.name))?;
                if c.access.kubernetes.is_some() {
                    return Err(format!(
                        "cluster {:?}: `source:` needs the standby cluster reached by `urls` or `patroni_yml`: its leader's own /patroni is read, which a Kubernetes port-forward does not reach",
                        c.name
                    ));
                }
            }
            if c.slo.as_ref().is_some_and(|s| s.of == SloOf::Standby) && c.source.is_none() {
                return Err(format!(
                    "cluster {:?}: slo.of: standby needs `source:` (the URL of the cluster it replicates from)",
                    c.name
                ));
            }
            if let Some(i) = c.interval {
                if i < Duration::from_millis(100) {
                    return Err(format!("cluster {:?}: interval {i:?} is too short", c.name));
                }
            }
        }
        Ok(())
    }

    pub fn interval(&self, c: &ClusterConfig) -> Duration {
        c.interval.unwrap_or(self.interval)
    }

    pub fn timeout(&self, c: &ClusterConfig) -> Duration {
        c.access.request_timeout.unwrap_or(self.timeout)
    }

    /// The cluster's source settings, the password resolved.
    pub fn target(&self, c: &ClusterConfig) -> Result<Target, String> {
        c.access
            .target(self.timeout)
            .map_err(|e| format!("cluster {:?}: {e}", c.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let c = WatchConfig::parse(
            "listen: 127.0.0.1:9999\ninterval: 5s\nalertmanager: http://127.0.0.1:9093\nclusters:\n  - name: demo\n    urls: [http://10.0.0.5:8008]\n    slo: {objective: 99.5%, threshold: 5MB, window: 30d}\n    heal: {enabled: true, tolerance: 5, persist_samples: 2}\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9999);
        let slo = c.clusters[0].slo.as_ref().unwrap();
        assert!((slo.objective - 0.995).abs() < 1e-9);
        assert_eq!(slo.threshold, ByteSize(5 << 20));
        let heal = c.clusters[0].heal.as_ref().unwrap();
        assert_eq!(heal.tolerance, ByteSize(5 << 20));
        assert_eq!(heal.lease, LeaseConfig::default());
        assert_eq!(heal.by, DecideBy::Threshold);
        assert_eq!(c.interval(&c.clusters[0]), Duration::from_secs(5));
    }

    #[test]
    fn heal_by_trend_and_its_settings() {
        let c = WatchConfig::parse(
            "clusters:\n  - name: a\n    urls: [x]\n    heal: {enabled: true, tolerance: 5, by: trend, trend: {window: 90s, factor: 3, ceiling: 2GB}}\n",
        )
        .unwrap();
        let heal = c.clusters[0].heal.as_ref().unwrap();
        assert_eq!(heal.by, DecideBy::Trend);
        let t = heal.trend.policy();
        assert_eq!(t.window, Duration::from_secs(90));
        assert_eq!(t.factor, 3.0);
        assert_eq!(t.ceiling, 2 << 30);
        assert_eq!(t.min_samples, TrendPolicy::default().min_samples);
        let e = WatchConfig::parse(
            "clusters:\n  - {name: a, urls: [x], heal: {tolerance: 5, by: slope}}\n",
        )
        .unwrap_err();
        assert!(e.contains("slope") && !e.contains('\n'), "{e}");
        let e = WatchConfig::parse(
            "clusters:\n  - {name: a, urls: [x], heal: {tolerance: 5, by: trend, trend: {factor: 0}}}\n",
        )
        .unwrap_err();
        assert!(e.contains("factor"), "{e}");
        let e = WatchConfig::parse(
            "clusters:\n  - {name: a, urls: [x], heal: {tolerance: 5, trend: {windw: 1m}}}\n",
        )
        .unwrap_err();
        assert!(e.contains("windw"), "{e}");
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let e = WatchConfig::parse("clusters: []\n").unwrap_err();
        assert!(e.contains("no clusters"), "{e}");
        let e = WatchConfig::parse("clusters:\n  - name: a\n").unwrap_err();
        assert!(e.contains("urls"), "{e}");
        let e = WatchConfig::parse("clusters:\n  - {name: a, urls: [x], slo: {objective: 150%, threshold: 5MB, window: 1d}}\n").unwrap_err();
        assert!(e.contains("objective"), "{e}");
        let e = WatchConfig::parse("clusters:\n  - {name: a, urls: [x], slo: {objective: 99%, threshold: 5XB, window: 1d}}\n").unwrap_err();
        assert!(e.contains("not a size"), "{e}");
        let e = WatchConfig::parse("clusters:\n  - {name: a, urls: [x], slo: {objective: 99%, threshold: true, window: 1d}}\n").unwrap_err();
        assert!(
            e.starts_with("true is not a size like 5MB at line 2"),
            "{e}"
        );
        let e = WatchConfig::parse("clusters: [\n").unwrap_err();
        assert!(!e.contains('\n') && e.contains("line 1"), "{e}");
        let e =
            WatchConfig::parse("clusters:\n  - {name: a, urls: [x], intervall: 5s}\n").unwrap_err();
        assert!(e.contains("intervall"), "{e}");
        let e =
            WatchConfig::parse("clusters:\n  - {name: a, urls: [x]}\n  - {name: a, urls: [y]}\n")
                .unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn a_standby_slo_needs_a_source_and_a_source_is_a_url() {
        let slo = "slo: {objective: 99%, threshold: 5MB, window: 1d, of: standby}";
        let e = WatchConfig::parse(&format!("clusters:\n  - {{name: a, urls: [x], {slo}}}\n"))
            .unwrap_err();
        assert!(e.contains("slo.of: standby needs `source:`"), "{e}");
        let c = WatchConfig::parse(&format!(
            "clusters:\n  - {{name: a, urls: [x], source: http://10.0.1.5:8008, {slo}}}\n"
        ))
        .unwrap();
        assert_eq!(c.clusters[0].slo.as_ref().unwrap().of, SloOf::Standby);
        assert_eq!(
            c.clusters[0].source.as_deref(),
            Some("http://10.0.1.5:8008")
        );
        let e = WatchConfig::parse("clusters:\n  - {name: a, urls: [x], source: 'ftp://y'}\n")
            .unwrap_err();
        assert!(e.contains("source:") && !e.contains('\n'), "{e}");
        let e = WatchConfig::parse(
            "clusters:\n  - {name: a, kubernetes: {resource: statefulset/pg}, source: http://y:8008}\n",
        )
        .unwrap_err();
        assert!(e.contains("port-forward"), "{e}");
        let e = WatchConfig::parse(
            "clusters:\n  - {name: a, urls: [x], slo: {objective: 99%, threshold: 5MB, window: 1d, of: source}}\n",
        )
        .unwrap_err();
        assert!(e.contains("source") && e.contains("replicas"), "{e}");
    }

    #[test]
    fn discover_by_kubernetes_label_selector() {
        let c = WatchConfig::parse(
            "discover:\n  kubernetes: {selector: 'application=spilo,env in (prod, stage)', namespaces: [a, b], context: other, secret: patroni-rest}\n  interval: 5s\n  template: {slo: {objective: 99%, threshold: 5MB, window: 1h}}\n",
        )
        .unwrap();
        let d = c.discover.unwrap();
        let k = d.kubernetes.as_ref().unwrap();
        assert_eq!(k.namespaces, ["a", "b"]);
        let at = FoundAt::Kubernetes {
            namespace: "a".into(),
            scope: "pg".into(),
        };
        let e = d.entry(&at).unwrap();
        assert_eq!(e.name, "a/pg");
        let t = e.access.kubernetes.unwrap();
        assert_eq!(t.resource, "");
        assert_eq!(t.namespace.as_deref(), Some("a"));
        assert_eq!(t.scope.as_deref(), Some("pg"));
        assert!(t.dcs);
        assert_eq!(t.context.as_deref(), Some("other"));
        assert_eq!(t.secret.as_deref(), Some("patroni-rest"));
        assert!(e.slo.is_some());
        // A listed cluster may name its Kubernetes DCS the same way.
        WatchConfig::parse(
            "clusters:\n  - {name: x, kubernetes: {namespace: a, scope: pg, dcs: true}}\n",
        )
        .unwrap();
    }

    #[test]
    fn bad_kubernetes_discovery_is_one_line() {
        for (yml, want) in [
            ("discover: {kubernetes: {selector: 'a=b=c'}}", "selector"),
            ("discover: {kubernetes: {selector: ''}}", "empty"),
            ("discover: {kubernetes: {selector: 'app in (a'}}", "'('"),
            (
                "discover: {kubernetes: {selector: a=b, namespaces: [Bad_NS]}}",
                "Bad_NS",
            ),
            ("discover: {kubernetes: {selectr: a=b}}", "selectr"),
            (
                "discover: {kubernetes: {selector: a=b}, dcs: {url: 'etcd3://x:2379'}}",
                "not both",
            ),
            ("discover: {interval: 5s}", "give `dcs"),
            (
                "discover: {kubernetes: {selector: a=b}, template: {kubernetes: {}}}",
                "no `kubernetes`",
            ),
        ] {
            let e = WatchConfig::parse(&format!("{yml}\n")).unwrap_err();
            assert!(e.contains(want) && !e.contains('\n'), "{yml}: {e}");
        }
        for ok in ["a=b", "a==b,c!=d", "!a,b", "x.io/y in (a,b),z notin (c)"] {
            assert_eq!(check_selector(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn dynamic_sharding_on_kubernetes_leases() {
        let c = WatchConfig::parse(
            "shard: {kubernetes: {namespace: watchers}, ttl: 6s, replicas: 2}\nclusters:\n  - {name: a, urls: [x]}\n",
        )
        .unwrap();
        let s = c.shard.unwrap();
        assert!(s.is_dynamic());
        let k = s.kubernetes.unwrap();
        assert_eq!(k.lease_prefix(), "pgpatrol-watch-");
        assert_eq!(k.ring(), "pgpatrol-watch");
        assert_eq!(
            lease_name("pgpatrol-watch-", "Host_1:4242"),
            "pgpatrol-watch-host-1-4242"
        );
        assert_eq!(lease_name("w.", "pod-0"), "w.pod-0");
        assert!(lease_name("p-", &"x".repeat(400)).len() <= 253);
        for (yml, want) in [
            (
                "shard: {kubernetes: {}, dcs: {url: 'etcd3://x:1'}}",
                "`dcs` (etcd) or `kubernetes` (Leases), not both",
            ),
            ("shard: {kubernetes: {}, index: 0, total: 2}", "not both"),
            (
                "shard: {kubernetes: {lease_prefix: Bad_}}",
                "lease_prefix \"Bad_\"",
            ),
            ("shard: {kubernetes: {lease_prefix: '-'}}", "lease_prefix"),
            (
                "shard: {kubernetes: {}, prefix: /x/}",
                "kubernetes.lease_prefix",
            ),
            ("shard: {kubernetes: {namspace: a}}", "namspace"),
        ] {
            let e = WatchConfig::parse(&format!("{yml}\nclusters:\n  - {{name: a, urls: [x]}}\n"))
                .unwrap_err();
            assert!(e.contains(want) && !e.contains('\n'), "{yml}: {e}");
        }
    }
}
