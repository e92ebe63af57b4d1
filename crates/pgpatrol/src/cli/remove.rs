//! `pgpatrol remove CLUSTER`: delete a cluster's keys from its DCS, like `patronictl
//! remove`, guarded (docs/SAFETY.md).

use std::io::{BufRead, Write};

use clap::Args;

use super::common::ClusterArgs;
use super::{confirm, Outcome};
use crate::source::dcs::remove::{self, RemoveError};
use crate::source::dcs::DcsSettings;

/// Remove a cluster from its DCS: every key under /<namespace>/<scope>/ (patronictl remove).
///
/// Patroni's REST API cannot do this. pgpatrol refuses while any member the DCS lists
/// answers its REST API as running (unless --force), shows the key prefix and every key
/// under it, asks to type the cluster name on a terminal (off a terminal it needs
/// --yes-i-am-aware), deletes the prefix, and reads it back: any key left is an error.
/// Data directories are not touched. The DCS comes from --dcs etcd3://HOST:PORT or the
/// etcd3 section of -c patroni.yml; CLUSTER is the scope.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The cluster's name: its scope in the DCS.
    #[arg(value_name = "CLUSTER")]
    pub name: String,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Remove even though members answer as running (they will write their keys again).
    #[arg(long)]
    pub force: bool,

    /// Off a terminal: confirm without typing the cluster name.
    #[arg(long)]
    pub yes_i_am_aware: bool,
}

impl RemoveArgs {
    pub async fn run(self) -> anyhow::Result<Outcome> {
        let name = self.name.trim().to_string();
        if name.is_empty() {
            anyhow::bail!("remove needs the cluster's name (its scope): pgpatrol remove NAME");
        }
        if let Some(s) = self.cluster.dcs.scope.as_deref() {
            if s != name {
                anyhow::bail!(
                    "--scope {s:?} and CLUSTER {name:?} differ: give the cluster's name once"
                );
            }
        }
        let mut access = self.cluster.access();
        let settings = match access.dcs.take() {
            Some(d) => d,
            None if access.patroni_yml.is_some() => DcsSettings::default(),
            None => anyhow::bail!(
                "remove deletes from the DCS: pass --dcs etcd3://HOST:PORT (or -c patroni.yml with an etcd3 section)"
            ),
        };
        access.dcs = Some(DcsSettings {
            scope: Some(name.clone()),
            ..settings
        });
        let source = access
            .target(self.cluster.request_timeout)?
            .connect()
            .await?;
        let Some(dcs) = source.dcs() else {
            anyhow::bail!("remove needs a DCS: pass --dcs etcd3://HOST:PORT");
        };
        let survey = remove::survey(dcs, source.http(), self.cluster.connect_timeout).await?;
        if survey.keys.is_empty() {
            anyhow::bail!(
                "etcd at {} has no keys under {}: nothing to remove (check the name and --dcs-namespace)",
                survey.answered_by,
                survey.prefix
            );
        }
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Cluster {name}: {} key(s) under {} in etcd at {}:",
            survey.keys.len(),
            survey.prefix,
            survey.answered_by
        )?;
        for k in &survey.keys {
            writeln!(out, "  {k}")?;
        }
        out.flush()?;
        if !survey.running.is_empty() {
            if !self.force {
                return Err(RemoveError::Running {
                    scope: name,
                    running: survey.running,
                }
                .into());
            }
            writeln!(
                out,
                "--force: {} still running; they will write their keys again",
                survey.running.join(", ")
            )?;
        }
        if confirm::interactive() {
            let mut err = std::io::stderr().lock();
            write!(err, "Type the cluster name ({name}) to delete these keys: ")?;
            err.flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            if line.trim() != name {
                anyhow::bail!(
                    "not confirmed ({:?} is not {name:?}): nothing was deleted",
                    line.trim()
                );
            }
        } else if !self.yes_i_am_aware {
            anyhow::bail!(
                "not on a terminal: pass --yes-i-am-aware to remove {name} without typing its name; nothing was deleted"
            );
        }
        let deleted = remove::delete(dcs).await?;
        writeln!(
            out,
            "removed {name}: {deleted} key(s) deleted, nothing left under {}",
            survey.prefix
        )?;
        Ok(Outcome::Ok)
    }
}
