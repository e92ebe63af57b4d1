//! `pgpatrol topology`: the members as a cascade tree (tag `replicatefrom`).

use clap::Args;
use serde::Serialize;

use super::common::{write_structured, ClusterArgs, Format};
use super::Outcome;
use crate::output::table::{self, Emphasis};
use crate::output::term::{ColorChoice, Look};
use crate::source::rest::Detail;

/// Show the replication tree: leader first, cascading replicas under their upstream.
#[derive(Debug, Args)]
pub struct TopologyArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

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

impl TopologyArgs {
    pub async fn run(self, color: ColorChoice) -> anyhow::Result<Outcome> {
        let snap = self.cluster.source().await?.snapshot(Detail::Full).await?;
        let order = table::topology_order(&snap.cluster);
        let mut out = std::io::stdout().lock();
        if self.format == Format::Table {
            let emphasis = Emphasis {
                look: Look::stdout(color),
                ..Emphasis::plain()
            };
            table::members(&mut out, &snap.cluster, &order, &emphasis)?;
            return Ok(Outcome::Ok);
        }
        // Rebuild the nesting from the depth-first order.
        let mut stack: Vec<(usize, Node)> = Vec::new();
        let mut roots = Vec::new();
        for (depth, m) in order {
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
        write_structured(&mut out, self.format, &roots)?;
        Ok(Outcome::Ok)
    }
}
