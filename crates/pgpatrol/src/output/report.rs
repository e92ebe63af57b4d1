//! The heal report: the state before, the plan with its reasons, each action's outcome and
//! duration, the state after, and the runbook link. Markdown for people, JSON for machines;
//! both carry the same facts (one `HealReport` value).

use std::io::Write;

use serde::Serialize;

use pgpatrol_core::heal::{Plan, SkipReason};
use pgpatrol_core::units::human;
use pgpatrol_core::{Cluster, Lag, LagKind};

use crate::executor::{ReinitOutcome, ReinitResult};

/// Everything one `heal` run did and saw.
#[derive(Debug, Serialize)]
pub struct HealReport {
    pub cluster: Option<String>,
    pub started: String,
    pub finished: String,
    pub dry_run: bool,
    pub tolerance_bytes: u64,
    pub lag: LagKind,
    /// How candidates were judged: `threshold`, or `trend` (after observing the lag).
    pub by: pgpatrol_core::heal::DecideBy,
    pub before: Cluster,
    pub plan: Plan,
    pub outcomes: Vec<ReinitOutcome>,
    /// Why acting stopped before the plan was done, if it did.
    pub stopped: Option<String>,
    pub after: Option<Cluster>,
    /// Replicas still at or above the tolerance (or unknown) afterwards.
    pub still_unhealthy: Vec<String>,
    pub doc_link: Option<String>,
    /// The heal lease, in words: taken (where), none configured, or skipped (`--no-lease`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
}

fn lag_text(l: Option<Lag>) -> String {
    match l {
        None => "—".into(),
        Some(Lag::Bytes(b)) => human(b),
        Some(Lag::Unknown) => "unknown".into(),
    }
}

fn state_table(out: &mut impl Write, c: &Cluster) -> std::io::Result<()> {
    writeln!(
        out,
        "| Member | Role | State | TL | Receive lag | Replay lag |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    for m in &c.members {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            m.name,
            m.role.title(),
            m.state,
            m.timeline.map(|t| t.to_string()).unwrap_or_default(),
            lag_text(m.lag(LagKind::Receive)),
            lag_text(m.lag(LagKind::Replay)),
        )?;
    }
    if c.paused {
        writeln!(out, "\nMaintenance mode: on")?;
    }
    Ok(())
}

/// The plan in words (also what `--dry-run` prints).
pub fn plan_text(out: &mut impl Write, plan: &Plan) -> std::io::Result<()> {
    for b in &plan.blockers {
        writeln!(out, "- **Refused:** {b}")?;
    }
    for a in &plan.actions {
        writeln!(out, "- **Reinitialize {}**: {}", a.member, a.reason)?;
    }
    for s in &plan.skips {
        match s.reason {
            SkipReason::ConcurrencyLimit { .. } => {
                writeln!(out, "- Then {}: {}", s.member, s.reason)?
            }
            _ => writeln!(out, "- Leave {}: {}", s.member, s.reason)?,
        }
    }
    if plan.blockers.is_empty() && plan.actions.is_empty() && plan.skips.is_empty() {
        writeln!(out, "- Nothing to do: no replicas.")?;
    }
    Ok(())
}

/// Trend mode's view of each replica beyond the tolerance.
pub fn trend_table(
    out: &mut impl Write,
    trends: &[pgpatrol_core::heal::MemberTrend],
) -> std::io::Result<()> {
    use pgpatrol_core::heal::{human_rate, RebuildEstimate};
    if trends.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n## Trend\n")?;
    writeln!(
        out,
        "| Member | Samples | Lag | Trend | Caught up in | Rebuild takes | WAL |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|")?;
    for t in trends {
        let (lag, rate, eta) = match &t.trend {
            Some(tr) => (
                human(tr.lag),
                match tr.rate {
                    0 => "flat".to_string(),
                    r if r < 0 => format!("shrinking {}", human_rate(r.unsigned_abs())),
                    r => format!("growing {}", human_rate(r.unsigned_abs())),
                },
                tr.eta_secs
                    .map(|e| format!("~{e} s"))
                    .unwrap_or_else(|| "never".into()),
            ),
            None => ("?".into(), "not enough samples".into(), "?".into()),
        };
        let rebuild = match &t.rebuild {
            Some(RebuildEstimate::History { secs, heals }) => {
                format!("~{secs} s ({heals} earlier heal(s))")
            }
            Some(RebuildEstimate::HistoryThroughput {
                secs,
                heals,
                bytes,
                throughput,
            }) => format!(
                "~{secs} s ({} at {}, measured by {heals} earlier heal(s))",
                human(*bytes),
                human_rate(*throughput)
            ),
            Some(RebuildEstimate::DataSize {
                secs,
                bytes,
                throughput,
            }) => format!(
                "~{secs} s ({} at {})",
                human(*bytes),
                human_rate(*throughput)
            ),
            None => "unknown".into(),
        };
        writeln!(
            out,
            "| {} | {} | {lag} | {rate} | {eta} | {rebuild} | {} |",
            t.member,
            t.samples,
            if t.wal_gone.is_some() {
                "gone (see the plan)"
            } else {
                "ok"
            }
        )?;
    }
    Ok(())
}

pub fn markdown(out: &mut impl Write, r: &HealReport) -> std::io::Result<()> {
    let name = r.cluster.as_deref().unwrap_or("cluster");
    let verdict = if r.dry_run {
        if r.plan.actions.is_empty() {
            "dry run: nothing would be done"
        } else {
            "dry run: nothing was done"
        }
    } else if r.stopped.is_some() {
        "stopped before the plan was done"
    } else if !r.still_unhealthy.is_empty() || r.plan.refused() {
        "needs attention"
    } else if r.outcomes.is_empty() {
        "healthy, nothing to do"
    } else {
        "healed"
    };
    writeln!(out, "# pgpatrol heal: {name} — {verdict}\n")?;
    writeln!(
        out,
        "Tolerance: {} of {} lag{}. Started {}, finished {}.\n",
        human(r.tolerance_bytes),
        r.lag.as_str(),
        match r.by {
            pgpatrol_core::heal::DecideBy::Threshold => "",
            pgpatrol_core::heal::DecideBy::Trend =>
                ", decided by trend: only what cannot catch up sooner by itself is rebuilt",
        },
        r.started,
        r.finished
    )?;
    if let Some(l) = &r.lease {
        writeln!(out, "Heal lease: {l}.\n")?;
    }
    writeln!(out, "## Before\n")?;
    state_table(out, &r.before)?;
    writeln!(out, "\n## Plan\n")?;
    plan_text(out, &r.plan)?;
    trend_table(out, &r.plan.trends)?;
    if !r.outcomes.is_empty() {
        writeln!(out, "\n## Actions\n")?;
        writeln!(out, "| Member | Result | Duration | Detail |")?;
        writeln!(out, "|---|---|---|---|")?;
        for o in &r.outcomes {
            let result = match o.result {
                ReinitResult::Healed => "healed",
                ReinitResult::Started => "started",
                ReinitResult::Refused => "refused",
                ReinitResult::TimedOut => "timed out",
                ReinitResult::LeaderLost => "stopped: leader lost",
                ReinitResult::Failed => "failed",
                ReinitResult::Abandoned => "abandoned: lease lost",
                ReinitResult::Unknown => "unknown: no answer",
            };
            let joined = if o.joined_running {
                " (joined a reinit already running)"
            } else {
                ""
            };
            writeln!(
                out,
                "| {} | {result} | {:.1} s | {}{joined} |",
                o.member, o.duration_secs, o.detail
            )?;
        }
    }
    if let Some(s) = &r.stopped {
        writeln!(out, "\n**Stopped acting:** {s}")?;
    }
    if let Some(after) = &r.after {
        writeln!(out, "\n## After\n")?;
        state_table(out, after)?;
    }
    if !r.still_unhealthy.is_empty() {
        writeln!(
            out,
            "\nStill unhealthy (lag at or above the tolerance, unknown, or not replicating): {}",
            r.still_unhealthy.join(", ")
        )?;
    }
    if let Some(link) = r.doc_link.as_deref().filter(|l| !l.is_empty()) {
        writeln!(out, "\nRunbook: {link}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use pgpatrol_core::heal::MemberTrend;
    use pgpatrol_core::heal::{RebuildEstimate, Trend};

    #[test]
    fn the_trend_table_shows_each_member_with_its_numbers() {
        let trends = [
            MemberTrend {
                member: "pg1".into(),
                trend: Some(Trend {
                    samples: 21,
                    span_ms: 30_000,
                    lag: 82 << 20,
                    rate: -(19 << 20),
                    eta_secs: Some(5),
                }),
                samples: 21,
                rebuild: Some(RebuildEstimate::History { secs: 40, heals: 1 }),
                wal_gone: None,
            },
            MemberTrend {
                member: "pg2".into(),
                trend: None,
                samples: 2,
                rebuild: None,
                wal_gone: Some("the leader's replication slot pg2 has wal_status lost".into()),
            },
        ];
        let mut out = Vec::new();
        super::trend_table(&mut out, &trends).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("| pg1 | 21 | 82.0 MB | shrinking 19.0 MB/s | ~5 s | ~40 s (1 earlier heal(s)) | ok |"),
            "{text}"
        );
        assert!(
            text.contains(
                "| pg2 | 2 | ? | not enough samples | ? | unknown | gone (see the plan) |"
            ),
            "{text}"
        );
        let mut out = Vec::new();
        super::trend_table(&mut out, &[]).unwrap();
        assert!(out.is_empty());
    }
}
