//! `slot drop` as the runner carries it out (the rule is core's `ops::slot`): before the
//! drop, the leader, the dynamic configuration's permanent slots and the slot itself are
//! read again and the rule judged again (a consumer may have connected since); the drop
//! goes through the one sender (`Ops::send_sql`), audited, printed in a dry run.

use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;

use pgpatrol_core::ops::slot::{self as slot_rule, Slot};
use pgpatrol_core::ops::OpStep;

use super::runner::{Operation, Recheck, StepOutcome, StepResult};
use super::{round1, Ops};
use crate::source::pg::error_line;

/// The slot as read on the leader: whether a walsender uses it, and the WAL it holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SlotRead {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_bytes: Option<u64>,
}

/// Reads `name` from `pg_replication_slots`; `Err` names the slots there when it is missing.
pub async fn read_slot(client: &Client, name: &str) -> Result<SlotRead, String> {
    let rows = client
        .query(
            "SELECT slot_name::text, active, wal_status,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8
             FROM pg_replication_slots ORDER BY 1",
            &[],
        )
        .await
        .map_err(error_line)?;
    let names: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    let Some(row) = rows.iter().find(|r| r.get::<_, String>(0) == name) else {
        return Err(format!(
            "no slot named {name:?} on the leader (slots: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ));
    };
    Ok(SlotRead {
        active: row.get(1),
        wal_status: row.get(2),
        retained_bytes: row.get::<_, Option<f64>>(3).map(|b| b.max(0.0) as u64),
    })
}

/// The permanent slots of the dynamic configuration (`slots:`).
pub fn permanent_slots(config: &serde_json::Value) -> Vec<String> {
    config
        .get("slots")
        .and_then(|s| s.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// What the drop released, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Released {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_wal_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_wal_after: Option<u64>,
    /// The oldest WAL segment in pg_wal before and after the CHECKPOINT: it moves forward
    /// when the WAL the slot held is released (segments are recycled, so pg_wal's size
    /// need not shrink).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_wal_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_wal_after: Option<String>,
    /// The most WAL any remaining slot holds, after the drop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots_retain_after: Option<u64>,
}

/// `member_slots_ttl` says zero (`0`, `"0"`, `"0s"`, `"0min"`); unset is Patroni's 30min.
pub fn ttl_is_zero(v: Option<&serde_json::Value>) -> bool {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(serde_json::Value::String(s)) => s
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .trim()
            .parse::<f64>()
            .is_ok_and(|x| x == 0.0),
        _ => false,
    }
}

/// The slots Patroni keeps for members whose key is gone: on 4.0+ (with `member_slots_ttl`
/// not 0) the `retain_slots` of the DCS's `/status`, read through `dcs` (`-c patroni.yml`'s
/// etcd3 section, or `--dcs`). Fails closed:
/// when they cannot be read, `Err` says what could not be, and no slot is dropped.
pub async fn retained_slots(
    dcs: Option<&crate::source::dcs::Dcs>,
    cluster: &pgpatrol_core::Cluster,
    config: &serde_json::Value,
) -> Result<Vec<String>, String> {
    let v = match cluster.patroni_version {
        Some(v) if v >= pgpatrol_core::PatroniVersion::new(4, 0, 0) => v,
        Some(_) => return Ok(Vec::new()),
        None => {
            return Err(
                "the Patroni version is unknown: cannot tell whether it keeps the slots of absent members (4.0+)"
                    .into(),
            )
        }
    };
    if ttl_is_zero(config.get("member_slots_ttl")) {
        return Ok(Vec::new());
    }
    let Some(dcs) = dcs else {
        return Err(format!(
            "Patroni {v} keeps the slots of members whose key is gone (member_slots_ttl) and lists them only in the DCS's /status: give -c patroni.yml with its etcd3 section, or --dcs, so pgpatrol can tell"
        ));
    };
    let (keys, url) = dcs
        .read()
        .await
        .map_err(|e| format!("cannot read the DCS's /status (retain_slots): {e}"))?;
    keys.retain_slots.ok_or_else(|| {
        format!(
            "{url} has no /status key: cannot tell which slots Patroni keeps for absent members"
        )
    })
}

/// `slot drop NAME` on the leader, through `client` (a connection to it).
pub struct SlotDropOp<'c> {
    pub client: &'c Client,
    /// The cluster's DCS, for the slots Patroni keeps for absent members.
    pub dcs: Option<crate::source::dcs::Dcs>,
    pub slot: String,
    /// `postgresql://host:port` of the leader.
    pub target: String,
    /// Run CHECKPOINT afterwards and measure pg_wal before and after.
    pub checkpoint: bool,
    pub released: Released,
}

const WAL_SIZE: &str =
    "SELECT sum(size)::float8, min(name) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'";

impl Operation for SlotDropOp<'_> {
    async fn recheck(&mut self, ops: &Ops<'_>, _: usize, step: &OpStep) -> Result<(), Recheck> {
        let c = ops.reread().await?;
        match c.leader() {
            Some(l) if l.name == step.member => {}
            Some(l) => {
                return Err(format!(
                    "the leader changed from {} to {}: the slot lives on the leader",
                    step.member, l.name
                )
                .into())
            }
            None => return Err("the cluster has no leader".into()),
        }
        let config = ops
            .source
            .config()
            .await
            .map_err(|e| Recheck::read("the dynamic configuration (permanent slots)", &e))?;
        let read =
            read_slot(self.client, &self.slot)
                .await
                .map_err(|error| Recheck::Unreadable {
                    what: format!("the slot {:?} on the leader", self.slot),
                    label: "postgres",
                    error,
                })?;
        let retained = retained_slots(self.dcs.as_ref(), &c, &config)
            .await
            .map_err(|error| Recheck::Unreadable {
                what: "which slots Patroni keeps for absent members".into(),
                label: "retain_slots",
                error,
            })?;
        let again = slot_rule::drop_plan(
            &step.member,
            &Slot {
                name: &self.slot,
                active: read.active,
            },
            &permanent_slots(&config),
            &c.members,
            &retained,
        );
        Ok(again.verdict()?)
    }

    async fn perform(&mut self, ops: &Ops<'_>, step: &OpStep) -> StepOutcome {
        let t0 = Instant::now();
        let mut out = StepOutcome::failed(step);
        if self.checkpoint && !ops.dry_run {
            if let Ok(r) = self.client.query_one(WAL_SIZE, &[]).await {
                self.released.pg_wal_before = r.get::<_, Option<f64>>(0).map(|b| b as u64);
                self.released.oldest_wal_before = r.get(1);
            }
        }
        let statement = format!("SELECT pg_drop_replication_slot('{}')", self.slot);
        let client = self.client;
        let slot = self.slot.clone();
        let sent = ops
            .send_sql(&step.member, &self.target, &statement, async move {
                client
                    .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                    .await
                    .map(|_| "dropped".to_string())
                    .map_err(error_line)
            })
            .await;
        match sent {
            Err(e) => out.detail = format!("{}: {e}", step.member),
            Ok(None) => {
                out.result = StepResult::DryRun;
                out.detail = "dry run: nothing was sent".into();
            }
            Ok(Some(_)) => {
                out.result = StepResult::Done;
                out.detail = "dropped; the WAL it held is released at the next checkpoint".into();
                self.after(&mut out).await;
            }
        }
        out.secs = round1(t0.elapsed().as_secs_f64());
        out
    }
}

impl SlotDropOp<'_> {
    /// After the drop: the CHECKPOINT and pg_wal (`--checkpoint`), and the most WAL any
    /// remaining slot holds.
    async fn after(&mut self, out: &mut StepOutcome) {
        if self.checkpoint {
            if let Err(e) = self.client.execute("CHECKPOINT", &[]).await {
                out.detail = format!("dropped; CHECKPOINT failed: {}", error_line(e));
            } else {
                if let Ok(r) = self.client.query_one(WAL_SIZE, &[]).await {
                    self.released.pg_wal_after = r.get::<_, Option<f64>>(0).map(|b| b as u64);
                    self.released.oldest_wal_after = r.get(1);
                }
                let r = &self.released;
                out.detail = format!(
                    "dropped; after CHECKPOINT the oldest WAL segment is {} (was {}), pg_wal {} (was {})",
                    r.oldest_wal_after.as_deref().unwrap_or("?"),
                    r.oldest_wal_before.as_deref().unwrap_or("?"),
                    r.pg_wal_after.map_or("?".into(), pgpatrol_core::units::human),
                    r.pg_wal_before.map_or("?".into(), pgpatrol_core::units::human)
                );
            }
        }
        self.released.slots_retain_after = self
            .client
            .query_one(
                "SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn))::float8 FROM pg_replication_slots",
                &[],
            )
            .await
            .ok()
            .and_then(|r| r.get::<_, Option<f64>>(0))
            .map(|b| b.max(0.0) as u64);
    }
}
