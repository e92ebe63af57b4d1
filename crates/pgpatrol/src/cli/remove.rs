//! `pgpatrol remove CLUSTER`: delete a cluster's keys from its DCS, like `patronictl
//! remove`, guarded (docs/SAFETY.md).

use std::io::Write;

use clap::Args;

use pgpatrol_core::ops::remove as remove_rule;

use super::common::ClusterArgs;
use super::ops::{emit_json, OpFormat, RunArgs};
use super::progress::Spinner;
use super::{confirm, Outcome};
use crate::audit::Audit;
use crate::ops::remove;
use crate::ops::remove::RemoveOp;
use crate::ops::runner::{self, OpResult, StepResult};
use crate::ops::Ops;
use crate::source::dcs::DcsSettings;

/// Remove a cluster from its DCS: every key under /<namespace>/<scope>/ (patronictl remove).
///
/// Patroni's REST API cannot do this. pgpatrol refuses while the Patroni of any member the
/// DCS lists answers its REST API at all (whatever state its PostgreSQL is in), and while
/// the leader key is held (unless --force). It shows the key prefix and every key under
/// it, asks to type the cluster name on a terminal (off a terminal it needs
/// --yes-i-am-aware), deletes the prefix, waits a loop_wait and reads it back: any key left
/// is an error.
/// Data directories are not touched. The DCS comes from --dcs etcd3://HOST:PORT or the
/// etcd3 section of -c patroni.yml; CLUSTER is the scope.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The cluster's name: its scope in the DCS.
    #[arg(value_name = "CLUSTER")]
    pub name: String,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Remove even though a Patroni answers or the leader key is held (a live Patroni writes
    /// its keys again).
    #[arg(long)]
    pub force: bool,

    /// Off a terminal: confirm without typing the cluster name.
    #[arg(long)]
    pub yes_i_am_aware: bool,

    #[command(flatten)]
    pub run: RunArgs,
}

impl RemoveArgs {
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
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
        let Some(dcs) = source.etcd() else {
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
        let json = self.run.format == OpFormat::Json;
        if !json {
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
        }
        // --force over a refusal: the step's reason says what it overrides.
        let forced = self.force
            && remove_rule::refusal(&name, &survey.running, survey.leader.as_deref()).is_some();
        let plan = remove_rule::plan(&name, &survey.running, survey.leader.as_deref(), self.force);
        if let (Some(step), true, false) = (plan.steps.first(), forced, json) {
            writeln!(out, "{}", step.reason)?;
        }
        if plan.refusal.is_none() && !self.run.dry_run {
            if confirm::interactive() {
                let typed = confirm::ask_text(&format!(
                    "Type the cluster name ({name}) to delete these keys:"
                ))?;
                if typed != name {
                    anyhow::bail!("not confirmed ({typed:?} is not {name:?}): nothing was deleted");
                }
            } else if !self.yes_i_am_aware {
                anyhow::bail!(
                    "not on a terminal: pass --yes-i-am-aware to remove {name} without typing its name; nothing was deleted"
                );
            }
        }
        let audit = Audit::for_run(
            !self.run.dry_run && plan.refusal.is_none(),
            self.run.audit_log.as_deref(),
            Some(&name),
        )?;
        let progress = Spinner::new();
        let ops = Ops::new(&source, "remove", self.run.dry_run, &audit, &progress).json(json);
        let mut run = RemoveOp::new(dcs, source.http(), self.cluster.connect_timeout, self.force);
        let mut report = runner::run(&mut run, &ops, plan).await;
        progress.finish();
        report.put("cluster", &name);
        report.put("prefix", &survey.prefix);
        report.put("keys", &survey.keys);
        if report.result == OpResult::Done {
            report.result = OpResult::Removed;
        }
        if json {
            emit_json(out, &report)?;
        }
        if let Some(r) = report.refusal() {
            // Deleting a live cluster's keys is never a retry away: the refusal is the
            // command's error (exit 2), as patronictl's users expect of `remove`.
            anyhow::bail!("{}", r.reason());
        }
        match (report.steps.first(), &report.stopped) {
            (Some(s), _) if s.result == StepResult::Done => {
                if !json {
                    writeln!(out, "removed {name}: {}", s.detail)?;
                }
                Ok(Outcome::Ok)
            }
            (Some(s), _) if s.result == StepResult::DryRun => Ok(Outcome::Ok),
            (Some(s), _) => anyhow::bail!("{}", s.detail),
            (None, Some(why)) => {
                if !json {
                    eprintln!("pgpatrol: {why}; nothing was deleted");
                }
                Ok(Outcome::Problem)
            }
            (None, None) => Ok(Outcome::Ok),
        }
    }
}
