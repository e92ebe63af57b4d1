//! `pgpatrol list` (alias `status`): the members, roles, states, timelines and lag; with
//! `--watch`, refreshed in place like `patronictl list -W`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use clap::{Args, ValueEnum};

use pgpatrol_core::{ByteSize, Cluster};

use super::common::{write_structured, ClusterArgs, Format};
use super::Outcome;
use crate::output::live::{self, Tracker};
use crate::output::patronictl;
use crate::output::table::{self, Emphasis, FleetLine};
use crate::output::term::{ColorChoice, Look};
use crate::source::target::Target;
use crate::source::SourceError;
use crate::source::{ClusterSource, Detail};

/// Output formats of `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    /// pgpatrol's model: lag in bytes, `"unknown"` when unknown.
    Json,
    Yaml,
    /// Exactly the keys `patronictl list -f json` prints for the Patroni version talked to.
    PatronictlJson,
}

/// The shortest --watch interval: faster than this only loads the cluster.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// List the cluster's members: role, state, timeline, receive and replay LSN and lag.
///
/// With --watch, the table is read again every INTERVAL and redrawn in place (on a
/// terminal; in a pipe the tables follow one another). What changed is highlighted (or
/// marked `*` without colour) for at least 10 s: a role, a state, a timeline, a lag crossing
/// --tolerance, a member joining; the last changes are listed under the table. When the
/// cluster cannot be read the error shows in place of the table and the watch goes on.
/// Ctrl-C or SIGTERM stops it (exit 0).
///
/// With --dcs the cluster is read from Patroni's DCS (etcd v3), as patronictl reads it, so
/// it answers with every REST API down; the members the DCS lists whose REST API does not
/// answer are named under the table.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub format: ListFormat,

    /// Lag at or above this shows in red, and crossing it counts as a change for --watch: a
    /// bare number is MB (as LAG_TOLERANCE), or 512kB, 5MB, 1GB.
    #[arg(long, env = "LAG_TOLERANCE", default_value = "5")]
    pub tolerance: ByteSize,

    /// Refresh every INTERVAL (default 2s) until Ctrl-C, like `patronictl list -W`.
    #[arg(
        short = 'W',
        long,
        value_name = "INTERVAL",
        num_args = 0..=1,
        default_missing_value = "2s",
        value_parser = humantime::parse_duration
    )]
    pub watch: Option<Duration>,

    /// This is a standby cluster and URL its source: also show its lag against the source
    /// (`standby_lag` in JSON). The system identifiers must match.
    #[arg(long, value_name = "URL")]
    pub source_url: Option<String>,

    /// Every Patroni cluster in the DCS: one line each (leader, members running of all, the
    /// worst replay lag, timeline, paused, pending restarts), read in one range over
    /// Patroni's namespace (`--dcs`, `--dcs-namespace`, default /service). No --scope.
    ///
    /// With --k8s-dcs and --selector: every Patroni cluster whose Kubernetes DCS objects
    /// (ConfigMaps or Endpoints) and pods carry the label selector, in --namespace (default:
    /// the context's) or every namespace (--all-namespaces), named NAMESPACE/SCOPE; one list
    /// of ConfigMaps, Endpoints and pods per namespace.
    #[arg(long, conflicts_with_all = ["watch", "source_url"])]
    pub all: bool,

    /// With --all --k8s-dcs: a label selector the Patroni ConfigMaps, Endpoints and pods
    /// carry (Patroni's kubernetes.labels), e.g. application=spilo.
    #[arg(
        long,
        requires = "all",
        value_name = "LABELS",
        help_heading = "Kubernetes"
    )]
    pub selector: Option<String>,

    /// With --all --k8s-dcs: look in every namespace the account may list (a ClusterRole),
    /// not just --namespace.
    #[arg(short = 'A', long, requires = "selector", help_heading = "Kubernetes")]
    pub all_namespaces: bool,
}

impl ListArgs {
    pub async fn run(self, color: ColorChoice, out: &mut impl Write) -> anyhow::Result<Outcome> {
        if self.all {
            return self.all(color, out).await;
        }
        if let Some(every) = self.watch {
            return self.watch(every, color, out).await;
        }
        let source = self.cluster.source().await?;
        let snap = source.snapshot(Detail::Full).await?;
        let cluster = &snap.cluster;
        // Read from the DCS: say which members it lists but whose REST API does not answer.
        let silent = match source.dcs() {
            Some(_) => {
                source
                    .silent_members(cluster, self.cluster.connect_timeout)
                    .await
            }
            None => Vec::new(),
        };
        let standby = match &self.source_url {
            Some(url) => Some(crate::source::standby::standby_lag(&source, cluster, url).await?),
            None => None,
        };
        // A standby cluster: where it replicates from, as its dynamic configuration says.
        let replicates_from = crate::source::standby::replicates_from_of(&source, cluster).await;
        match self.format {
            ListFormat::Table => {
                let emphasis = Emphasis {
                    look: Look::stdout(color),
                    tolerance: Some(self.tolerance.0),
                    changed: None,
                };
                table::list(out, cluster, &emphasis)?;
                for s in &silent {
                    writeln!(
                        out,
                        " {} is in the DCS but does not answer REST: {}",
                        s.name, s.reason
                    )?;
                }
                if let Some(from) = &replicates_from {
                    writeln!(out, " Standby cluster: replicates from {from}")?;
                }
                if let Some(sb) = &standby {
                    writeln!(out, " {}", standby_line(sb))?;
                }
            }
            ListFormat::Json | ListFormat::Yaml => {
                let format = if self.format == ListFormat::Json {
                    Format::Json
                } else {
                    Format::Yaml
                };
                if standby.is_none() && replicates_from.is_none() {
                    write_structured(out, format, cluster)?
                } else {
                    let mut v = serde_json::to_value(cluster)?;
                    if let Some(from) = &replicates_from {
                        v["replicates_from"] = from.clone().into();
                    }
                    if let Some(sb) = &standby {
                        v["standby_lag"] = serde_json::to_value(sb)?;
                    }
                    write_structured(out, format, &v)?
                }
            }
            ListFormat::PatronictlJson => {
                let version = cluster.patroni_version.ok_or_else(|| {
                    anyhow::anyhow!(
                        "{} did not say its Patroni version in /patroni: cannot tell which patronictl keys to print",
                        snap.answered_by
                    )
                })?;
                let rows = patronictl::rows(cluster, version);
                serde_json::to_writer(&mut *out, &rows)?;
                writeln!(out)?;
            }
        }
        if self.format != ListFormat::Table {
            for s in &silent {
                eprintln!(
                    "note: {} is in the DCS but does not answer REST: {}",
                    s.name,
                    crate::text::one_line(&s.reason)
                );
            }
        }
        Ok(Outcome::Ok)
    }

    /// `list --all`: every cluster under the DCS namespace. Exit 1 when a cluster's keys
    /// could not be read as Patroni's (it is listed with the reason).
    async fn all(self, color: ColorChoice, out: &mut impl Write) -> anyhow::Result<Outcome> {
        if self.format == ListFormat::PatronictlJson {
            anyhow::bail!("--all prints -o table, json or yaml (patronictl-json is one cluster's)");
        }
        if self.cluster.k8s.dcs || self.selector.is_some() {
            return self.all_kubernetes(color, out).await;
        }
        let target = self.cluster.target()?;
        let (etcd, namespace) = target.dcs_namespace()?;
        let (clusters, url) = crate::source::dcs::read_namespace(&etcd, &namespace).await?;
        if clusters.is_empty() {
            anyhow::bail!(
                "etcd at {url} has no Patroni cluster under {namespace}: check --dcs-namespace (Patroni's namespace)"
            );
        }
        let lines: Vec<FleetLine> = clusters
            .iter()
            .map(|(scope, keys)| fleet_line(scope, scope, keys))
            .collect();
        self.print_fleet(color, out, &lines)
    }

    /// `list --all --k8s-dcs --selector`: every cluster the selector finds in Patroni's
    /// Kubernetes DCS, named NAMESPACE/SCOPE.
    async fn all_kubernetes(
        self,
        color: ColorChoice,
        out: &mut impl Write,
    ) -> anyhow::Result<Outcome> {
        let k = &self.cluster.k8s;
        if !k.dcs {
            anyhow::bail!("--selector lists Patroni's Kubernetes DCS: add --k8s-dcs");
        }
        let Some(selector) = self.selector.as_deref() else {
            anyhow::bail!(
                "--all --k8s-dcs needs --selector LABELS (the labels Patroni puts on its ConfigMaps and pods, e.g. application=spilo)"
            );
        };
        crate::watch::config::check_selector(selector)
            .map_err(|e| anyhow::anyhow!("--selector: {e}"))?;
        if k.resource.as_deref().is_some_and(|r| !r.trim().is_empty()) {
            anyhow::bail!("--all --k8s-dcs lists by --selector: drop --k8s-resource");
        }
        let t = crate::source::k8s::K8sTarget {
            namespace: k.namespace.clone().filter(|n| !n.is_empty()),
            context: k.context.clone().filter(|c| !c.is_empty()),
            kubeconfig: k.kubeconfig.clone().filter(|p| !p.as_os_str().is_empty()),
            distribution: k.distribution.clone(),
            ..Default::default()
        };
        let (client, namespace) = crate::source::k8s::client(
            &t,
            self.cluster.connect_timeout,
            self.cluster.request_timeout,
        )
        .await?;
        let namespaces = if self.all_namespaces {
            Vec::new()
        } else {
            vec![namespace.clone()]
        };
        let found = crate::source::k8s::dcs::read_selected(&client, &namespaces, selector).await?;
        if found.is_empty() {
            let where_ = if self.all_namespaces {
                "in any namespace".to_string()
            } else {
                format!("in namespace {namespace}")
            };
            anyhow::bail!(
                "no Patroni ConfigMaps or Endpoints labelled {selector} {where_}: check --selector (Patroni's kubernetes.labels) and --namespace"
            );
        }
        let lines: Vec<FleetLine> = found
            .iter()
            .map(|f| fleet_line(&format!("{}/{}", f.namespace, f.scope), &f.scope, &f.keys))
            .collect();
        self.print_fleet(color, out, &lines)
    }

    fn print_fleet(
        &self,
        color: ColorChoice,
        out: &mut impl Write,
        lines: &[FleetLine],
    ) -> anyhow::Result<Outcome> {
        match self.format {
            ListFormat::Json => write_structured(out, Format::Json, &lines)?,
            ListFormat::Yaml => write_structured(out, Format::Yaml, &lines)?,
            _ => table::fleet(out, lines, self.tolerance.0, &Look::stdout(color))?,
        }
        Ok(if lines.iter().any(|l| l.error.is_some()) {
            Outcome::Problem
        } else {
            Outcome::Ok
        })
    }

    async fn watch(
        self,
        every: Duration,
        color: ColorChoice,
        out: &mut impl Write,
    ) -> anyhow::Result<Outcome> {
        if self.format != ListFormat::Table {
            anyhow::bail!(
                "--watch redraws a table: drop -o {} (for a stream of JSON, run `pgpatrol list -o json` in a loop)",
                self.format
                    .to_possible_value()
                    .map_or_else(String::new, |v| v.get_name().to_string())
            );
        }
        if every < MIN_INTERVAL {
            anyhow::bail!(
                "--watch {}: the interval must be at least 100ms",
                humantime::format_duration(every)
            );
        }
        let target = self.cluster.target()?;
        // A mistake in the flags (a bad URL, an unreadable patroni.yml) will not heal by
        // waiting: say it now, exit 2. Anything else is shown and retried.
        let mut source = match target.connect().await {
            Ok(s) => Some(s),
            Err(e @ (SourceError::BadInput(_) | SourceError::NoTarget)) => return Err(e.into()),
            Err(_) => None,
        };
        let mut tracker = Tracker::new(self.tolerance.0, live::hold_for(every));
        let terminal = std::io::stdout().is_terminal();
        let header = |at: SystemTime| {
            format!(
                "Every {} · {} · Ctrl-C to stop",
                humantime::format_duration(every),
                humantime::format_rfc3339_seconds(at)
            )
        };
        let stop = super::common::stop_signal();
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stop => break,
            }
            let reading = tokio::select! {
                r = read(&target, &mut source) => r,
                _ = &mut stop => break,
            };
            let at = SystemTime::now();
            tracker.observe(reading, at);
            let look = Look::stdout(color);
            let mut frame = Vec::new();
            tracker.render(&mut frame, &look, &header(at))?;
            live::write_frame(out, &frame, terminal, first)?;
            first = false;
        }
        Ok(Outcome::Ok)
    }
}

/// One line of `list --all`: the cluster `name` from the keys of `scope`.
fn fleet_line(
    name: &str,
    scope: &str,
    keys: &Result<crate::source::wire::dcs::DcsCluster, crate::source::wire::dcs::BadValue>,
) -> FleetLine {
    match keys
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|k| crate::source::wire::dcs::cluster_from_dcs(k, scope))
    {
        Ok(c) => FleetLine::of(name, &c),
        Err(bad) => FleetLine::unreadable(name, bad.to_string()),
    }
}

/// One reading. After a failure the source is built again on the next reading (for a
/// Kubernetes target that finds the pods anew).
async fn read(target: &Target, source: &mut Option<ClusterSource>) -> Result<Cluster, String> {
    let s = match source {
        Some(s) => s,
        None => source.insert(target.connect().await.map_err(describe)?),
    };
    match s.snapshot(Detail::Full).await {
        Ok(snap) => Ok(snap.cluster),
        Err(e) => {
            *source = None;
            Err(describe(e))
        }
    }
}

/// An error as the one line the CLI would print (without `error: `).
fn describe(e: SourceError) -> String {
    crate::text::one_line(&format!("{:#}", anyhow::Error::from(e)))
}

/// One line for the table: the standby cluster against its source.
pub(crate) fn standby_line(sb: &crate::source::standby::StandbyLag) -> String {
    let h = |b: Option<u64>| b.map_or("unknown".to_string(), pgpatrol_core::units::human);
    let secs = match sb.replay_lag_seconds {
        Some(s) => format!(", ~{s:.1} s"),
        None => String::new(),
    };
    let state = sb.replication_state.as_deref().unwrap_or("NOT replicating");
    format!(
        "Standby of {} (leader {} at {}): {} {state}, receive lag {}, replay lag {}{secs}{}",
        sb.source,
        sb.source_leader,
        sb.source_position,
        sb.standby_leader,
        h(sb.receive_lag),
        h(sb.replay_lag),
        if sb.replay_paused {
            ", replay PAUSED"
        } else {
            ""
        }
    )
}
