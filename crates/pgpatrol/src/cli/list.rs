//! `pgpatrol list` (alias `status`): the members, roles, states, timelines and lag.

use std::io::Write;

use clap::{Args, ValueEnum};

use super::common::{write_structured, ClusterArgs, Format};
use super::Outcome;
use crate::output::{patronictl, table};
use crate::source::rest::Detail;

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

/// List the cluster's members: role, state, timeline, receive and replay LSN and lag.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub format: ListFormat,
}

impl ListArgs {
    pub async fn run(self) -> anyhow::Result<Outcome> {
        let source = self.cluster.source().await?;
        let snap = source.snapshot(Detail::Full).await?;
        let cluster = &snap.cluster;
        let mut out = std::io::stdout().lock();
        match self.format {
            ListFormat::Table => table::list(&mut out, cluster)?,
            ListFormat::Json => write_structured(&mut out, Format::Json, cluster)?,
            ListFormat::Yaml => write_structured(&mut out, Format::Yaml, cluster)?,
            ListFormat::PatronictlJson => {
                let version = cluster.patroni_version.ok_or_else(|| {
                    anyhow::anyhow!(
                        "{} did not say its Patroni version in /patroni: cannot tell which patronictl keys to print",
                        snap.answered_by
                    )
                })?;
                let rows = patronictl::rows(cluster, version);
                serde_json::to_writer(&mut out, &rows)?;
                writeln!(out)?;
            }
        }
        Ok(Outcome::Ok)
    }
}
