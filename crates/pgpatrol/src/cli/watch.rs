//! `pgpatrol watch`: the daemon (see `crate::watch`). A config file for a fleet, or flags
//! for one cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use pgpatrol_core::ByteSize;

use super::common::ClusterArgs;
use super::sli::LagArg;
use super::Outcome;
use pgpatrol_core::slo::parse_objective;

use crate::output::term::ColorChoice;
use crate::watch::config::{
    default_listen, ClusterConfig, ShardConfig, SloConfig, SloOf, WatchConfig,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SloOfArg {
    Replicas,
    Standby,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Watch clusters: export lag metrics, hold the lag SLO, alert, and heal when allowed.
///
/// With --config, everything comes from the file (docs/GUIDE.md shows one). Without it, one
/// cluster is watched from the usual --url/-c flags, with an SLO from the --slo-* flags.
/// Serves /metrics, /healthz, /readyz and /plan. Stops cleanly on SIGTERM or SIGINT.
///
/// The file's `discover:` watches clusters as they come and go: every scope under an etcd
/// namespace (`dcs: {url}`), or every Patroni cluster whose Kubernetes DCS objects carry a
/// label selector (`kubernetes: {selector, namespaces}`, named NAMESPACE/SCOPE). Its
/// `shard:` splits the clusters among watchers: fixed (`index`/`total`, `from_pod`), or a
/// ring of the watchers alive, registered in etcd (`dcs:`) or on Kubernetes Leases
/// (`kubernetes: {lease_prefix, namespace}`).
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The watch configuration (clusters, SLOs, alerting, auto-heal).
    #[arg(long, env = "PGPATROL_WATCH_CONFIG", conflicts_with = "urls")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// With flags: the cluster's name on metrics and alerts.
    #[arg(long, default_value = "default")]
    pub name: String,

    /// Listen address for /metrics etc. (overrides the file's `listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,

    /// With flags: poll interval.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// With flags: SLO objective, e.g. 99.5%.
    #[arg(long, default_value = "99.5%")]
    pub slo_objective: String,

    /// With flags: a sample is good at or below this lag (a bare number is MB).
    #[arg(long, env = "LAG_TOLERANCE", default_value = "5")]
    pub slo_threshold: ByteSize,

    /// With flags: SLO window.
    #[arg(long, default_value = "30d")]
    pub slo_window: String,

    /// With flags: which lag the SLO holds (the SLI is the worst replica's lag of this kind).
    #[arg(long, value_enum, default_value = "replay")]
    pub slo_lag: LagArg,

    /// With flags: the cluster is a standby cluster of this one (a Patroni REST URL); its lag
    /// against it is exported as pgpatrol_standby_lag_*.
    #[arg(long)]
    pub source_url: Option<String>,

    /// With flags: hold the SLO on the worst replica's lag (replicas) or on the standby
    /// cluster's lag against --source-url (standby).
    #[arg(long, value_enum, default_value = "replicas")]
    pub slo_of: SloOfArg,

    /// With flags: where SLO samples persist across restarts.
    #[arg(long)]
    pub state_file: Option<PathBuf>,

    /// Where auto-heal records each request it sends, one JSON line each (overrides the
    /// config's `audit_log`).
    #[arg(long, env = "PGPATROL_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,

    /// With flags: Alertmanager base URL (alerts go to /api/v2/alerts).
    #[arg(long)]
    pub alertmanager: Option<String>,

    /// Poll only this share of the clusters: watcher I of --total-shards (0 to N-1). Every
    /// watcher lists the same clusters; each polls those whose name hashes to its number.
    /// Overrides the file's `shard:`.
    #[arg(
        long,
        value_name = "I",
        requires = "total_shards",
        conflicts_with = "shard_from_pod"
    )]
    pub shard: Option<u32>,

    /// How many watchers share the clusters (with --shard, or with --shard-from-pod instead
    /// of the StatefulSet's replicas).
    #[arg(long, value_name = "N")]
    pub total_shards: Option<u32>,

    /// The shard is this pod's StatefulSet ordinal (POD_NAME, else HOSTNAME: `NAME-2` is
    /// shard 2); the total is --total-shards or the StatefulSet's spec.replicas, followed:
    /// when it changes the watcher exits so that its restarted pod takes its new share.
    #[arg(long)]
    pub shard_from_pod: bool,

    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl WatchArgs {
    pub(crate) fn config(&self) -> anyhow::Result<WatchConfig> {
        let mut cfg = match &self.config {
            Some(p) => WatchConfig::read(p).map_err(anyhow::Error::msg)?,
            None => {
                // The flags give the same access settings a watch.yml cluster entry does.
                let access = self.cluster.access();
                if !access.names_a_cluster() {
                    anyhow::bail!(
                        "no cluster given: pass --config watch.yml, or --url/-c/--k8s-resource for one cluster"
                    );
                }
                let slo = SloConfig {
                    objective: parse_objective(&self.slo_objective)
                        .map_err(|e| anyhow::anyhow!("--slo-objective: {e}"))?,
                    threshold: self.slo_threshold,
                    window: humantime::parse_duration(&self.slo_window)
                        .map_err(|e| anyhow::anyhow!("--slo-window {:?}: {e}", self.slo_window))?,
                    lag: self.slo_lag.into(),
                    of: match self.slo_of {
                        SloOfArg::Replicas => SloOf::Replicas,
                        SloOfArg::Standby => SloOf::Standby,
                    },
                    alerts: None,
                };
                let cluster = ClusterConfig {
                    name: self.name.clone(),
                    access,
                    interval: None,
                    slo: Some(slo),
                    heal: None,
                    postgres: None,
                    pgbackrest: None,
                    source: self.source_url.clone(),
                    unknown: Default::default(),
                };
                let cfg = WatchConfig {
                    listen: default_listen(),
                    listen_auth: None,
                    listen_tls: None,
                    event_webhook: None,
                    interval: self.interval,
                    timeout: self.cluster.request_timeout,
                    state_file: self.state_file.clone(),
                    audit_log: None,
                    doc_link: std::env::var("DOC_LINK").ok(),
                    alertmanager: self.alertmanager.clone(),
                    webhook: None,
                    alert_queue: 1024,
                    checks: None,
                    shard: None,
                    metrics: Default::default(),
                    discover: None,
                    clusters: vec![cluster],
                };
                cfg.validate().map_err(anyhow::Error::msg)?;
                // Found now, not at the first poll: a missing password, a half-given
                // client certificate.
                for c in &cfg.clusters {
                    cfg.target(c).map_err(anyhow::Error::msg)?;
                }
                cfg
            }
        };
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        if let Some(a) = &self.audit_log {
            cfg.audit_log = Some(a.clone());
        }
        if self.shard.is_some() || self.shard_from_pod {
            let shard = ShardConfig {
                index: self.shard,
                total: self.total_shards,
                from_pod: self.shard_from_pod,
                ..Default::default()
            };
            shard
                .check()
                .map_err(|e| anyhow::anyhow!("--shard: {}", e.trim_start_matches("shard: ")))?;
            cfg.shard = Some(shard);
        } else if self.total_shards.is_some() {
            anyhow::bail!("--total-shards needs --shard I (or --shard-from-pod)");
        }
        Ok(cfg)
    }

    pub async fn run(self, color: ColorChoice) -> anyhow::Result<Outcome> {
        let filter = tracing_subscriber::EnvFilter::try_from_env("PGPATROL_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // No escape codes unless stderr is a terminal: a log in a file, journald or a log
        // shipper gets plain text (tracing-subscriber would colour it by default).
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(color.for_stderr())
            .with_writer(std::io::stderr);
        let _ = match self.log_format {
            LogFormat::Json => builder.json().try_init(),
            LogFormat::Text => builder.try_init(),
        };
        let cfg = self.config()?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            super::common::stop_signal().await;
            let _ = tx.send(true);
        });
        crate::watch::run(cfg, rx).await?;
        Ok(Outcome::Ok)
    }
}

#[cfg(test)]
mod tests {
    //! Every access setting through both doors: `pgpatrol watch` flags and a watch.yml
    //! cluster entry end in the same `Target`.

    use clap::Parser;
    use pgpatrol_core::LagKind;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::source::target::Target;

    fn by_flags(flags: &[&str]) -> (WatchConfig, Target) {
        let mut argv = vec!["pgpatrol", "watch"];
        argv.extend_from_slice(flags);
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let Command::Watch(args) = cli.command else {
            panic!("not watch")
        };
        let cfg = args.config().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let t = cfg.target(&cfg.clusters[0]).expect("target");
        (cfg, t)
    }

    fn by_file(entry: &str) -> (WatchConfig, Target) {
        let raw = format!("clusters:\n  - name: default\n{entry}");
        let cfg = WatchConfig::parse(&raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        let t = cfg.target(&cfg.clusters[0]).expect("target");
        (cfg, t)
    }

    #[test]
    fn shard_flags_give_the_share_and_override_the_file() {
        let (cfg, _) = by_flags(&["--url=http://a:8008", "--shard=1", "--total-shards=3"]);
        let want = ShardConfig {
            index: Some(1),
            total: Some(3),
            ..Default::default()
        };
        assert_eq!(cfg.shard, Some(want));
        let (cfg, _) = by_flags(&["--url=http://a:8008", "--shard-from-pod"]);
        assert_eq!(cfg.shard.map(|s| s.from_pod), Some(true));
        let (cfg, _) = by_flags(&["--url=http://a:8008"]);
        assert_eq!(cfg.shard, None);
        let raw = "shard: {from_pod: true, total: 4}\nclusters:\n  - name: a\n    urls: [http://a:8008]\n";
        let cfg = WatchConfig::parse(raw).expect("parse");
        assert_eq!(cfg.shard.as_ref().and_then(|s| s.total), Some(4));
    }

    #[test]
    fn every_access_setting_works_through_flags_and_through_watch_yml() {
        let dir = std::env::temp_dir().join(format!("pgpatrol-doors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret\nignored\n").unwrap();
        let pw = pw.display().to_string();
        type Check = Box<dyn Fn(&Target) -> bool>;
        let rows: Vec<(&str, Vec<String>, String, Check)> = vec![
            (
                "urls",
                vec!["--url".into(), "http://a:8008,http://b:8008".into()],
                "    urls: [http://a:8008, http://b:8008]\n".into(),
                Box::new(|t| t.urls == ["http://a:8008", "http://b:8008"]),
            ),
            (
                "patroni.yml",
                vec!["-c".into(), "/etc/patroni.yml".into()],
                "    patroni_yml: /etc/patroni.yml\n".into(),
                Box::new(|t| t.patroni_yml.as_deref() == Some("/etc/patroni.yml".as_ref())),
            ),
            (
                "username and password file",
                vec![
                    "--url=http://a:8008".into(),
                    "--username=patrol".into(),
                    format!("--password-file={pw}"),
                ],
                format!("    urls: [http://a:8008]\n    username: patrol\n    password_file: {pw}\n"),
                Box::new(|t| {
                    t.username.as_deref() == Some("patrol") && t.password.as_deref() == Some("s3cret")
                }),
            ),
            (
                "CA bundle",
                vec!["--url=http://a:8008".into(), "--cacert=/etc/ca.pem".into()],
                "    urls: [http://a:8008]\n    cacert: /etc/ca.pem\n".into(),
                Box::new(|t| t.cacert.as_deref() == Some("/etc/ca.pem".as_ref())),
            ),
            (
                "client certificate",
                vec![
                    "--url=http://a:8008".into(),
                    "--cert=/etc/c.pem".into(),
                    "--key=/etc/k.pem".into(),
                ],
                "    urls: [http://a:8008]\n    cert: /etc/c.pem\n    key: /etc/k.pem\n".into(),
                Box::new(|t| {
                    t.client_cert
                        == Some(("/etc/c.pem".into(), "/etc/k.pem".into()))
                }),
            ),
            (
                "insecure",
                vec!["--url=http://a:8008".into(), "--insecure".into()],
                "    urls: [http://a:8008]\n    insecure: true\n".into(),
                Box::new(|t| t.insecure),
            ),
            (
                "connect timeout",
                vec!["--url=http://a:8008".into(), "--connect-timeout=3s".into()],
                "    urls: [http://a:8008]\n    connect_timeout: 3s\n".into(),
                Box::new(|t| t.connect_timeout == Duration::from_secs(3)),
            ),
            (
                "request timeout",
                vec!["--url=http://a:8008".into(), "--request-timeout=7s".into()],
                "    urls: [http://a:8008]\n    timeout: 7s\n".into(),
                Box::new(|t| t.request_timeout == Duration::from_secs(7)),
            ),
            (
                "kubernetes",
                vec![
                    "--k8s-resource=statefulset/pg".into(),
                    "--namespace=db".into(),
                    "--context=c1".into(),
                    "--k8s-access=direct".into(),
                    "--k8s-port=8009".into(),
                    "--k8s-secret=patroni-api".into(),
                ],
                "    kubernetes: {resource: statefulset/pg, namespace: db, context: c1, access: direct, port: 8009, secret: patroni-api}\n".into(),
                Box::new(|t| {
                    t.k8s.as_ref().is_some_and(|k| {
                        k.resource == "statefulset/pg"
                            && k.namespace.as_deref() == Some("db")
                            && k.context.as_deref() == Some("c1")
                            && k.access == crate::source::k8s::Access::Direct
                            && k.port == Some(8009)
                            && k.secret.as_deref() == Some("patroni-api")
                    })
                }),
            ),
            (
                "DCS",
                vec![
                    "--dcs=etcd3s://e1:2379,e2:2379".into(),
                    "--scope=demo".into(),
                    "--dcs-namespace=/db".into(),
                    "--dcs-username=patrol".into(),
                    format!("--dcs-password-file={pw}"),
                    "--dcs-cacert=/etc/etcd-ca.pem".into(),
                    "--dcs-cert=/etc/etcd-c.pem".into(),
                    "--dcs-key=/etc/etcd-k.pem".into(),
                ],
                format!("    dcs: {{url: 'etcd3s://e1:2379,e2:2379', scope: demo, namespace: /db, username: patrol, password_file: {pw}, cacert: /etc/etcd-ca.pem, cert: /etc/etcd-c.pem, key: /etc/etcd-k.pem}}\n"),
                Box::new(|t| {
                    t.dcs_password.as_deref() == Some("s3cret")
                        && t.dcs.as_ref().is_some_and(|d| {
                            d.url.as_deref() == Some("etcd3s://e1:2379,e2:2379")
                                && d.scope.as_deref() == Some("demo")
                                && d.namespace.as_deref() == Some("/db")
                                && d.username.as_deref() == Some("patrol")
                                && d.cacert.as_deref() == Some("/etc/etcd-ca.pem".as_ref())
                                && d.cert.as_deref() == Some("/etc/etcd-c.pem".as_ref())
                                && d.key.as_deref() == Some("/etc/etcd-k.pem".as_ref())
                        })
                }),
            ),
        ];
        for (what, flags, entry, check) in rows {
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let (_, a) = by_flags(&flags);
            assert!(check(&a), "{what} by flags: {a:?}");
            let (_, b) = by_file(&entry);
            assert!(check(&b), "{what} in watch.yml: {b:?}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_half_given_client_certificate_is_refused_through_both_doors() {
        let e = WatchConfig::parse(
            "clusters:\n  - {name: a, urls: [http://a:8008], cert: /etc/c.pem}\n",
        )
        .unwrap_err();
        assert!(e.contains("both `cert` and `key`"), "{e}");
        // clap refuses --cert without --key before anything runs.
        assert!(Cli::try_parse_from(["pgpatrol", "watch", "--url=http://a", "--cert=c"]).is_err());
    }

    #[test]
    fn the_slo_lag_kind_is_honoured_through_both_doors() {
        let (cfg, _) = by_flags(&["--url=http://a:8008", "--slo-lag=receive"]);
        assert_eq!(crate::watch::sli_kind(&cfg.clusters[0]), LagKind::Receive);
        let (cfg, _) = by_file(
            "    urls: [http://a:8008]\n    slo: {objective: 99%, threshold: 5MB, window: 1d, lag: receive}\n",
        );
        assert_eq!(crate::watch::sli_kind(&cfg.clusters[0]), LagKind::Receive);
        let (cfg, _) = by_flags(&["--url=http://a:8008"]);
        assert_eq!(crate::watch::sli_kind(&cfg.clusters[0]), LagKind::Replay);
    }

    #[test]
    fn an_unknown_key_in_a_dcs_entry_is_named() {
        let e = WatchConfig::parse(
            "clusters:\n  - {name: a, dcs: {url: 'etcd3://e:2379', scope: s, namespase: /x}}\n",
        )
        .unwrap_err();
        assert!(e.contains("namespase"), "{e}");
    }

    #[test]
    fn an_unknown_key_in_a_cluster_entry_is_named() {
        let e =
            WatchConfig::parse("clusters:\n  - {name: a, urls: [x], intervall: 5s}\n").unwrap_err();
        assert!(e.contains("unknown key `intervall`"), "{e}");
    }
}
