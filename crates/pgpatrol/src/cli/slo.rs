//! `pgpatrol slo rules`: Prometheus recording and alerting rules for the lag SLOs of a
//! watch.yml, over the metrics `watch` exports, for teams that evaluate SLOs in Prometheus
//! (in the style of Sloth: error ratios per window as recording rules, multi-window
//! multi-burn-rate alerts on top).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use pgpatrol_core::slo::{format_window, Severity, SloSpec};

use super::Outcome;
use crate::watch::config::WatchConfig;
use crate::watch::slo_spec;

#[derive(Debug, Subcommand)]
pub enum SloCommand {
    /// Print Prometheus rules (YAML) for every cluster with an `slo:` in the watch config,
    /// and one alert per doctor check when it has a `checks:` section.
    Rules(RulesArgs),
}

#[derive(Debug, Args)]
pub struct RulesArgs {
    /// The watch configuration.
    #[arg(long, env = "PGPATROL_WATCH_CONFIG")]
    pub config: PathBuf,

    /// Write to this file instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

impl SloCommand {
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        match self {
            SloCommand::Rules(args) => args.run(out),
        }
    }
}

fn ratio_name(window: &str) -> String {
    format!("pgpatrol:slo_error_ratio:rate{window}")
}

/// The rule groups for one cluster's SLO.
pub fn rule_groups(cluster: &str, spec: &SloSpec, doc_link: Option<&str>) -> Vec<Value> {
    let sel = format!("cluster=\"{cluster}\"");
    let mut windows: Vec<String> = spec
        .alerts
        .iter()
        .flat_map(|a| [format_window(a.short), format_window(a.long)])
        .chain([format_window(spec.window)])
        .collect();
    windows.sort();
    windows.dedup();
    let mut records: Vec<Value> = windows
        .iter()
        .map(|w| {
            json!({
                "record": ratio_name(w),
                "expr": format!(
                    "sum(rate(pgpatrol_slo_samples_total{{{sel},result=\"bad\"}}[{w}])) / sum(rate(pgpatrol_slo_samples_total{{{sel}}}[{w}]))"
                ),
                "labels": {"cluster": cluster},
            })
        })
        .collect();
    let budget = 1.0 - spec.objective;
    let slo_window = format_window(spec.window);
    records.push(json!({
        "record": "pgpatrol:slo_error_budget_remaining:ratio",
        "expr": format!("1 - ({}{{{sel}}} / {budget})", ratio_name(&slo_window)),
        "labels": {"cluster": cluster},
    }));
    let alerts: Vec<Value> = spec
        .alerts
        .iter()
        .map(|a| {
            let (long, short) = (format_window(a.long), format_window(a.short));
            let threshold = a.factor * budget;
            let severity = match a.severity {
                Severity::Page => "page",
                Severity::Ticket => "ticket",
            };
            let mut annotations = json!({
                "summary": format!("Replica lag of {cluster} burns its error budget {}x too fast", a.factor),
                "description": format!(
                    "Over {long} and {short}, more than {:.4}% of lag samples were above {} (SLO {:.3}% over {slo_window}).",
                    threshold * 100.0,
                    pgpatrol_core::units::human(spec.threshold_bytes),
                    spec.objective * 100.0
                ),
            });
            if let Some(link) = doc_link.filter(|l| !l.is_empty()) {
                annotations["runbook_url"] = json!(link);
            }
            json!({
                "alert": "PgpatrolReplicaLagBudgetBurn",
                "expr": format!(
                    "({}{{{sel}}} > {threshold}) and ({}{{{sel}}} > {threshold})",
                    ratio_name(&long),
                    ratio_name(&short)
                ),
                "labels": {"cluster": cluster, "severity": severity, "slo_alert": a.name},
                "annotations": annotations,
            })
        })
        .collect();
    vec![
        json!({"name": format!("pgpatrol-slo-{cluster}-recordings"), "rules": records}),
        json!({"name": format!("pgpatrol-slo-{cluster}-alerts"), "rules": alerts}),
    ]
}

/// One alert per doctor check over `pgpatrol_check` (watch exports it with a `checks:`
/// section): WARN (1) is a ticket, CRIT (2) a page, UNKNOWN (3) a ticket, each after it held
/// for two minutes.
pub fn check_rules(doc_link: Option<&str>) -> Value {
    let rules: Vec<Value> = pgpatrol_core::checks::CHECK_IDS
        .iter()
        .map(|id| {
            let camel: String = id
                .split('_')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().chain(c).collect::<String>())
                        .unwrap_or_default()
                })
                .collect();
            let mut annotations = json!({
                "summary": format!(
                    "pgpatrol check {id} is {{{{ if eq $value 1.0 }}}}WARN{{{{ else if eq $value 2.0 }}}}CRIT{{{{ else }}}}UNKNOWN{{{{ end }}}} on {{{{ $labels.cluster }}}}"
                ),
                "description": format!("Run `pgpatrol doctor` against the cluster for the evidence and the fix of the {id} check."),
            });
            if let Some(link) = doc_link.filter(|l| !l.is_empty()) {
                annotations["runbook_url"] = json!(link);
            }
            json!({
                "alert": format!("PgpatrolCheck{camel}"),
                "expr": format!("pgpatrol_check{{check=\"{id}\"}} >= 1"),
                "for": "2m",
                "labels": {"severity": "{{ if eq $value 2.0 }}page{{ else }}ticket{{ end }}"},
                "annotations": annotations,
            })
        })
        .collect();
    json!({"name": "pgpatrol-checks", "rules": rules})
}

impl RulesArgs {
    fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let cfg = WatchConfig::read(&self.config).map_err(anyhow::Error::msg)?;
        let mut groups = Vec::new();
        for c in &cfg.clusters {
            if let Some(spec) = slo_spec(c).map_err(anyhow::Error::msg)? {
                groups.extend(rule_groups(&c.name, &spec, cfg.doc_link.as_deref()));
            }
        }
        if cfg.checks.is_some() {
            groups.push(check_rules(cfg.doc_link.as_deref()));
        }
        if groups.is_empty() {
            anyhow::bail!(
                "{}: no cluster has an `slo:` section and there is no `checks:` section, so there are no rules to write",
                self.config.display()
            );
        }
        let yaml = crate::yaml::to_string(&json!({ "groups": groups }))?;
        match &self.output {
            Some(p) => std::fs::write(p, yaml)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?,
            None => out.write_all(yaml.as_bytes())?,
        }
        Ok(Outcome::Ok)
    }
}
