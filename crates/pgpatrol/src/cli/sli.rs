//! `pgpatrol sli`: one number, the maximum replica lag of the cluster (seed 000's SLI).
//!
//! Unknown lag is never zero: the number is the maximum over replicas whose lag is known,
//! the others are named on stderr and in JSON, and the exit code is 1 — unless
//! `--unknown-as` gives the number a platform should record for them.

use std::io::Write;
use std::time::SystemTime;

use clap::{Args, ValueEnum};
use serde::Serialize;

use pgpatrol_core::sli::{MemberLag, Sli};
use pgpatrol_core::{LagKind, LagSource, Unit};

use super::common::ClusterArgs;
use super::Outcome;
use crate::source::rest::Detail;

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

    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: SliFormat,
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
    pub async fn run(self) -> anyhow::Result<Outcome> {
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

        let mut out = std::io::stdout().lock();
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
                serde_json::to_writer_pretty(&mut out, &report)?;
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
