//! The runbook's checklists (before maintenance, after a failover, ...) read from the
//! checks.

use super::*;

/// One line of a maintenance checklist: the runbook's words, and the checks that decide it
/// (none: a step for a person, listed so the list is whole).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChecklistItem {
    pub item: &'static str,
    pub status: Status,
    pub evidence: String,
}

/// Which checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checklist {
    Pre,
    Post,
}

/// The runbook's pre- or post-maintenance checklist (seed 002), decided by `checks`. Before
/// maintenance, lag must be below `maintenance_lag_seconds` ("lag < 10 seconds"), stricter
/// than the alerting thresholds.
pub fn checklist(which: Checklist, checks: &[Check], t: &Thresholds) -> Vec<ChecklistItem> {
    let find = |id: &str| checks.iter().find(|c| c.id == id);
    let decide = |item: &'static str, ids: &[&str]| -> ChecklistItem {
        let found: Vec<&Check> = ids.iter().filter_map(|id| find(id)).collect();
        let ran: Vec<&&Check> = found
            .iter()
            .filter(|c| c.status != Status::Skipped)
            .collect();
        if ran.is_empty() {
            let why = found
                .first()
                .map(|c| c.evidence.clone())
                .unwrap_or_else(|| "not checked".into());
            return ChecklistItem {
                item,
                status: Status::Skipped,
                evidence: why,
            };
        }
        let status = ran.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
        let evidence = ran
            .iter()
            .filter(|c| c.status == status)
            .map(|c| format!("{}: {}", c.id, c.evidence))
            .collect::<Vec<_>>()
            .join("; ");
        ChecklistItem {
            item,
            status,
            evidence,
        }
    };
    let person = |item: &'static str| ChecklistItem {
        item,
        status: Status::Skipped,
        evidence: "a step for a person".into(),
    };
    let strict_lag = || -> ChecklistItem {
        let Some(c) = find("lag_seconds").filter(|c| c.status != Status::Skipped) else {
            return ChecklistItem {
                item: "Check replication lag < 10 seconds",
                status: Status::Skipped,
                evidence: "needs the PostgreSQL checks (--pg-user, or -c patroni.yml)".into(),
            };
        };
        // The check's own thresholds are the alerting ones; the checklist asks for less.
        let worst = c.value.unwrap_or(f64::INFINITY);
        let status = if c.status == Status::Unknown {
            Status::Unknown
        } else if worst >= t.maintenance_lag_seconds || c.status != Status::Ok {
            Status::Crit
        } else {
            Status::Ok
        };
        ChecklistItem {
            item: "Check replication lag < 10 seconds",
            status,
            evidence: c.evidence.clone(),
        }
    };
    match which {
        Checklist::Pre => vec![
            decide(
                "Verify all replicas are healthy",
                &[
                    "replication",
                    "lag_bytes",
                    "lag_unknown",
                    "transitional",
                    "failover_candidate",
                ],
            ),
            strict_lag(),
            decide("Verify recent backup completed successfully", &["backup"]),
            person("Notify stakeholders"),
            person("Prepare rollback plan"),
            decide(
                "Test connectivity to backup storage",
                &["backup", "backup_archive"],
            ),
        ],
        Checklist::Post => vec![
            decide(
                "Verify cluster status",
                &["dcs", "leader", "timeline", "paused", "failsafe"],
            ),
            decide(
                "Check all replicas rejoined",
                &["replication", "transitional"],
            ),
            decide(
                "Verify replication lag returned to normal",
                &["lag_bytes", "lag_unknown", "lag_seconds"],
            ),
            person("Test application connectivity"),
            decide(
                "Verify backup functionality",
                &["backup", "backup_archive", "archive"],
            ),
            person("Update documentation"),
        ],
    }
}
