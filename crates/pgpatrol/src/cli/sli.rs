//! `pgpatrol sli`: one number, the maximum replica lag of the cluster (seed 000's SLI).
//!
//! Unknown lag is never zero: the number is the maximum over replicas whose lag is known,
//! the others are named on stderr and in JSON, and the exit code is 1 — unless
//! `--unknown-as` gives the number a platform should record for them.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::SystemTime;

use clap::{Args, ValueEnum};
use serde::Serialize;

use pgpatrol_core::sli::{MemberLag, Sli};
use pgpatrol_core::{LagKind, LagSource, Unit};

use super::common::{ClusterArgs, PgArgs};
use super::Outcome;
use crate::source::Detail;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LagArg {
    /// WAL applied on the replica (what its queries see). Catches a replica that receives
    /// WAL but cannot replay it.
    Replay,
    /// WAL received by the replica (Patroni's legacy `lag`).
    Receive,
}

impl From<LagArg> for LagKind {
    fn from(l: LagArg) -> LagKind {
        match l {
            LagArg::Replay => LagKind::Replay,
            LagArg::Receive => LagKind::Receive,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SliFormat {
    /// The number alone.
    Text,
    /// The number with per-member figures, the leader, the time, and unknown members.
    Json,
}

/// Print the cluster's maximum replica lag as one number (MB by default).
///
/// Exit codes: 0 a number was measured for every replica; 1 some replica's lag is unknown
/// or the cluster has no leader (the number covers the known replicas); 2 error.
#[derive(Debug, Args)]
pub struct SliArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Which lag to measure.
    #[arg(long, value_enum, default_value = "replay")]
    pub lag: LagArg,

    /// Unit of the number: B, kB, MB, GB (1024-based; rounded half to even like patronictl).
    #[arg(long, default_value = "MB", value_parser = parse_unit)]
    pub unit: Unit,

    /// Count a replica whose lag is unknown as this number (in --unit) and exit 0, for
    /// platforms that need a number. Without it, unknown lag exits 1.
    #[arg(long, value_name = "VALUE")]
    pub unknown_as: Option<u64>,

    /// Measure lag in seconds instead of bytes, from PostgreSQL itself (the sender's
    /// replay_lag and each replica's last replayed transaction; 0 when caught up, even on an
    /// idle leader). Needs --pg-user (or -c patroni.yml's superuser).
    #[arg(long)]
    pub lag_seconds: bool,

    /// This is a standby cluster and URL its source: the SLI is the standby cluster's lag
    /// against the source (source leader position − standby leader position), which Patroni
    /// cannot compute. The system identifiers must match.
    #[arg(long, value_name = "URL", conflicts_with = "lag_seconds")]
    pub source_url: Option<String>,

    #[command(flatten)]
    pub pg: PgArgs,

    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: SliFormat,
}

#[derive(Debug, Serialize)]
struct SecondsReport<'a> {
    cluster: Option<&'a str>,
    /// The worst replica's replay lag in seconds; null when none could be measured.
    lag_seconds: Option<f64>,
    worst: Option<&'a str>,
    unknown: Vec<&'a str>,
    members: BTreeMap<&'a str, Option<f64>>,
    time: String,
}

fn parse_unit(s: &str) -> Result<Unit, String> {
    s.parse::<Unit>()
        .map_err(|_| format!("{s:?} is not a unit: use B, kB, MB or GB"))
}

#[derive(Debug, Serialize)]
struct SliReport<'a> {
    cluster: Option<&'a str>,
    lag: LagKind,
    unit: Unit,
    /// The SLI in `unit`; null when no replica's lag is known (and no --unknown-as).
    value: Option<u64>,
    /// The maximum known lag in bytes.
    max_bytes: Option<u64>,
    worst: Option<&'a str>,
    leader: Option<&'a str>,
    leader_count: usize,
    unknown: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    unknown_as: Option<u64>,
    lag_source: LagSource,
    time: String,
    members: &'a [MemberLag],
}

impl SliArgs {
    /// `--lag-seconds`: the same measurement as doctor's lag_seconds check.
    async fn seconds(&self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let Some(login) = self.pg.login(&self.cluster)? else {
            anyhow::bail!(
                "--lag-seconds reads PostgreSQL: give --pg-user and --pg-password-file (or -c patroni.yml with postgresql.authentication.superuser)"
            );
        };
        let snap = self.cluster.source().await?.snapshot(Detail::Lag).await?;
        let pg = crate::source::pg::evidence_with(
            &snap.cluster,
            &login,
            crate::source::pg::Queries::Lag,
        )
        .await;
        let figures = pgpatrol_core::checks::lag_seconds_by_member(&pg);
        let mut worst: Option<(&str, f64)> = None;
        for (name, secs) in &figures {
            if let Some(s) = secs {
                if worst.is_none_or(|(_, w)| *s > w) {
                    worst = Some((name, *s));
                }
            }
        }
        let unknown: Vec<&str> = figures
            .iter()
            .filter(|(_, s)| s.is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        for m in pg.iter().filter(|m| m.facts.is_err()) {
            if let Err(e) = &m.facts {
                eprintln!("pgpatrol: {}: {e}", m.name);
            }
        }
        if !unknown.is_empty() {
            eprintln!(
                "pgpatrol: lag in seconds unknown for {}",
                unknown.join(", ")
            );
        }
        match self.format {
            SliFormat::Text => {
                if let Some((_, s)) = worst {
                    writeln!(out, "{s:.1}")?;
                }
            }
            SliFormat::Json => {
                let report = SecondsReport {
                    cluster: snap.cluster.scope.as_deref(),
                    lag_seconds: worst.map(|(_, s)| s),
                    worst: worst.map(|(n, _)| n),
                    unknown: unknown.clone(),
                    members: figures.iter().map(|(n, s)| (n.as_str(), *s)).collect(),
                    time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                };
                serde_json::to_writer_pretty(&mut *out, &report)?;
                writeln!(out)?;
            }
        }
        Ok(if unknown.is_empty() && snap.cluster.leader().is_some() {
            Outcome::Ok
        } else {
            Outcome::Problem
        })
    }

    /// `--source-url`: the standby cluster's lag against its source.
    async fn standby(&self, source_url: &str, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let source = self.cluster.source().await?;
        let snap = source.snapshot(Detail::Lag).await?;
        let lag = crate::source::standby::standby_lag(&source, &snap.cluster, source_url).await?;
        let bytes = match self.lag {
            LagArg::Replay => lag.replay_lag,
            LagArg::Receive => lag.receive_lag,
        };
        match self.format {
            SliFormat::Text => match bytes {
                Some(b) => writeln!(out, "{}", self.unit.round(b))?,
                None => {
                    eprintln!("pgpatrol: the standby leader's lag against the source is unknown")
                }
            },
            SliFormat::Json => {
                serde_json::to_writer_pretty(&mut *out, &lag)?;
                writeln!(out)?;
            }
        }
        Ok(if bytes.is_some() && lag.replication_state.is_some() {
            Outcome::Ok
        } else {
            Outcome::Problem
        })
    }

    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        if self.lag_seconds {
            return self.seconds(out).await;
        }
        if let Some(url) = self.source_url.clone() {
            return self.standby(&url, out).await;
        }
        let kind = match self.lag {
            LagArg::Replay => LagKind::Replay,
            LagArg::Receive => LagKind::Receive,
        };
        let snap = self.cluster.source().await?.snapshot(Detail::Lag).await?;
        let sli = Sli::measure(&snap.cluster, kind);
        let known = sli.max_bytes.map(|b| self.unit.round(b));
        let value = match (self.unknown_as, sli.unknown.is_empty()) {
            (Some(u), false) => Some(known.map_or(u, |k| k.max(u))),
            (Some(u), true) if sli.leader.is_none() => Some(known.map_or(u, |k| k.max(u))),
            _ => known,
        };

        let mut problems = Vec::new();
        if sli.leader.is_none() {
            problems.push(match sli.leader_count {
                0 => "the cluster has no leader: lag is measured against the last known leader position".to_string(),
                n => format!("{n} members claim the leader role (possible split brain)"),
            });
        }
        if !sli.unknown.is_empty() {
            let who: Vec<String> = sli
                .members
                .iter()
                .filter(|m| sli.unknown.contains(&m.name))
                .map(|m| format!("{} (state: {})", m.name, m.state))
                .collect();
            problems.push(format!(
                "{} lag unknown for {}",
                kind.as_str(),
                who.join(", ")
            ));
        }
        for p in &problems {
            eprintln!("pgpatrol: {p}");
        }

        match self.format {
            SliFormat::Text => {
                if let Some(v) = value {
                    writeln!(out, "{v}")?;
                }
            }
            SliFormat::Json => {
                let report = SliReport {
                    cluster: snap.cluster.scope.as_deref(),
                    lag: kind,
                    unit: self.unit,
                    value,
                    max_bytes: sli.max_bytes,
                    worst: sli.worst.as_deref(),
                    leader: sli.leader.as_deref(),
                    leader_count: sli.leader_count,
                    unknown: &sli.unknown,
                    unknown_as: self.unknown_as,
                    lag_source: snap.cluster.lag_source,
                    time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                    members: &sli.members,
                };
                serde_json::to_writer_pretty(&mut *out, &report)?;
                writeln!(out)?;
            }
        }
        let unknown_covered = self.unknown_as.is_some();
        Ok(
            if problems.is_empty() || (unknown_covered && sli.leader.is_some()) {
                Outcome::Ok
            } else {
                Outcome::Problem
            },
        )
    }
}
