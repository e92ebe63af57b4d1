//! `pgpatrol watch`: the daemon (see `crate::watch`). A config file for a fleet, or flags
//! for one cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use pgpatrol_core::ByteSize;

use super::common::ClusterArgs;
use super::Outcome;
use pgpatrol_core::slo::parse_objective;

use crate::output::term::ColorChoice;
use crate::watch::config::{default_listen, ClusterConfig, SloConfig, WatchConfig};

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

    /// With flags: where SLO samples persist across restarts.
    #[arg(long)]
    pub state_file: Option<PathBuf>,

    /// With flags: Alertmanager base URL (alerts go to /api/v2/alerts).
    #[arg(long)]
    pub alertmanager: Option<String>,

    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl WatchArgs {
    fn config(&self) -> anyhow::Result<WatchConfig> {
        let mut cfg = match &self.config {
            Some(p) => WatchConfig::read(p).map_err(anyhow::Error::msg)?,
            None => {
                let t = self.cluster.target()?;
                if t.urls.is_empty() && t.patroni_yml.is_none() && t.k8s.is_none() {
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
                    lag: pgpatrol_core::LagKind::Replay,
                    alerts: None,
                };
                let cluster = ClusterConfig {
                    name: self.name.clone(),
                    urls: t.urls,
                    patroni_yml: t.patroni_yml,
                    username: t.username.clone(),
                    password_file: self.cluster.password_file.clone(),
                    // The password was resolved from the environment when no file was given.
                    password_env: (t.username.is_some() && self.cluster.password_file.is_none())
                        .then(|| "PATRONI_RESTAPI_PASSWORD".to_string()),
                    cacert: t.cacert,
                    insecure: t.insecure,
                    interval: None,
                    timeout: Some(t.request_timeout),
                    slo: Some(slo),
                    heal: None,
                    kubernetes: t.k8s.clone(),
                };
                let cfg = WatchConfig {
                    listen: default_listen(),
                    interval: self.interval,
                    timeout: t.request_timeout,
                    state_file: self.state_file.clone(),
                    doc_link: std::env::var("DOC_LINK").ok(),
                    alertmanager: self.alertmanager.clone(),
                    webhook: None,
                    alert_queue: 1024,
                    clusters: vec![cluster],
                };
                cfg.validate().map_err(anyhow::Error::msg)?;
                cfg
            }
        };
        if let Some(l) = self.listen {
            cfg.listen = l;
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
