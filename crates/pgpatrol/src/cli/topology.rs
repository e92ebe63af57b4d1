//! `pgpatrol topology`: the members as a cascade tree (tag `replicatefrom`); with
//! `--source-url`, a standby cluster drawn under its source cluster.

use std::io::Write;

use clap::Args;
use serde::Serialize;

use super::common::{write_structured, ClusterArgs, Format};
use super::Outcome;
use crate::output::table::{self, Emphasis};
use crate::output::term::{ColorChoice, Look};
use crate::source::http::base_url;
use crate::source::{ClusterSource, Detail};

/// Show the replication tree: leader first, cascading replicas under their upstream.
///
/// A standby cluster says where it replicates from (its `standby_cluster` configuration).
/// With --source-url (the standby cluster's source), both clusters are drawn: the source
/// cluster with its leader, then the standby cluster, its standby leader and cascade, with
/// the lag between the two (the system identifiers must match).
#[derive(Debug, Args)]
pub struct TopologyArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// This is a standby cluster and URL its source: draw the source cluster too, and the
    /// lag between them.
    #[arg(long, value_name = "URL")]
    pub source_url: Option<String>,

    /// Output format (JSON and YAML give a nested tree).
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Serialize)]
struct Node<'a> {
    #[serde(flatten)]
    member: &'a pgpatrol_core::Member,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    children: Vec<Node<'a>>,
}

/// The cluster's members nested as they replicate (from the depth-first order).
fn tree(cluster: &pgpatrol_core::Cluster) -> Vec<Node<'_>> {
    let mut stack: Vec<(usize, Node)> = Vec::new();
    let mut roots = Vec::new();
    for (depth, m) in table::topology_order(cluster) {
        while let Some((_, done)) = stack.pop_if(|(d, _)| *d >= depth) {
            match stack.last_mut() {
                Some((_, parent)) => parent.children.push(done),
                None => roots.push(done),
            }
        }
        stack.push((
            depth,
            Node {
                member: m,
                children: Vec::new(),
            },
        ));
    }
    while let Some((_, done)) = stack.pop() {
        match stack.last_mut() {
            Some((_, parent)) => parent.children.push(done),
            None => roots.push(done),
        }
    }
    roots
}

impl TopologyArgs {
    pub async fn run(self, color: ColorChoice, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let source = self.cluster.source().await?;
        let snap = source.snapshot(Detail::Full).await?;
        let cluster = &snap.cluster;
        // A standby cluster: where it replicates from, as its dynamic configuration says.
        let replicates_from = crate::source::standby::replicates_from_of(&source, cluster).await;
        let across = match &self.source_url {
            Some(url) => {
                let lag = crate::source::standby::standby_lag(&source, cluster, url).await?;
                let base = base_url(url)?;
                let src = ClusterSource::new(source.http().clone(), std::slice::from_ref(&base))?
                    .snapshot(Detail::Full)
                    .await
                    .map_err(|e| anyhow::anyhow!("--source-url {url}: {e}"))?;
                Some((url.clone(), src.cluster, lag))
            }
            None => None,
        };
        let emphasis = Emphasis {
            look: Look::stdout(color),
            ..Emphasis::plain()
        };
        let name = |c: &pgpatrol_core::Cluster| c.scope.clone().unwrap_or_else(|| "?".into());
        if self.format == Format::Table {
            if let Some((url, src, _)) = &across {
                writeln!(out, "Source cluster {} ({url})", name(src))?;
                table::members(out, src, &table::topology_order(src), &emphasis)?;
                writeln!(out)?;
                writeln!(out, "Standby cluster {}", name(cluster))?;
            }
            table::members(out, cluster, &table::topology_order(cluster), &emphasis)?;
            if let Some(from) = &replicates_from {
                writeln!(out, " Standby cluster: replicates from {from}")?;
            }
            if let Some((_, _, lag)) = &across {
                writeln!(out, " {}", super::list::standby_line(lag))?;
            }
            return Ok(Outcome::Ok);
        }
        match &across {
            // Without --source-url the JSON stays the tree alone (`list -o json` carries
            // `replicates_from`).
            None => write_structured(out, self.format, &tree(cluster))?,
            Some((url, src, lag)) => write_structured(
                out,
                self.format,
                &serde_json::json!({
                    "source": {"url": url, "scope": src.scope, "members": tree(src)},
                    "standby": {
                        "scope": cluster.scope,
                        "replicates_from": replicates_from,
                        "standby_lag": lag,
                        "members": tree(cluster),
                    },
                }),
            )?,
        }
        Ok(Outcome::Ok)
    }
}
