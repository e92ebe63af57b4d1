//! The operations' flags and output: switchover, failover, pause, resume, restart, flush,
//! reload, edit-config. What they do is in `crate::ops`; this module asks, prints, and maps
//! results onto exit codes (0 done, 1 refused or not done, 2 error).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use comfy_table::{presets, Table};
use serde::Serialize;

use pgpatrol_core::candidates::{self, Candidate, Takeover as Kind, TakeoverSettings};
use pgpatrol_core::{ByteSize, Cluster, Lag, LagKind};

use super::common::{write_structured, ClusterArgs, Format};
use super::confirm;
use super::progress::Spinner;
use super::Outcome;
use crate::audit::Audit;
use crate::ops::maintenance::{pending_of, EditOp, EditResult, PauseOp, Pending, ReloadOp};
use crate::ops::restart::{FlushOp, RestartOp, RestartOptions};
use crate::ops::runner::{self, write_plan, write_steps, OpReport, OpResult, StepResult};
use crate::ops::switchover::{self, TakeoverOp, TakeoverOutcome, TakeoverResult};
use crate::ops::{self, Ops};
use crate::output::table::{self, Emphasis};
use crate::output::term::{ColorChoice, Look};
use crate::progress::Progress;
use crate::source::{ClusterSource, Detail};
use pgpatrol_core::ops::maintenance;
use pgpatrol_core::ops::restart as restart_rule;
use pgpatrol_core::ops::takeover::{self as takeover_rule, Position};
use pgpatrol_core::ops::Refusal;

/// Flags every operation shares.
#[derive(Debug, Clone, Args)]
pub struct OpArgs {
    /// Print the exact requests it would send, and send nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (needed when not on a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Result format: a human report, or JSON (with every request sent).
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub format: OpFormat,

    /// Append one JSON line per request sent (time, user, host, cluster, operation, member,
    /// body without secrets, HTTP status, outcome).
    #[arg(long, env = "PGPATROL_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
}

/// The flags of an operation that asks in its own way (`reinit`, `remove`): no `--yes`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Go through the same checks, print the plan and the request it would send, and send
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Result format: lines for a person, or JSON (the plan, the steps, the outcome).
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub format: OpFormat,

    /// Append one JSON line per request sent (see `pgpatrol switchover --help`).
    #[arg(long, env = "PGPATROL_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OpFormat {
    Table,
    Json,
}

/// Step lines on stderr: a spinner on a terminal, one line per change otherwise (so a CI
/// log shows what happened, in order).
struct Narrator {
    spinner: Spinner,
    tty: bool,
    quiet: bool,
}

impl Narrator {
    fn new(quiet: bool) -> Self {
        Narrator {
            spinner: Spinner::new(),
            tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            quiet,
        }
    }

    /// Clears the spinner before the result is printed.
    fn done(&self) {
        self.spinner.finish();
    }
}

impl Progress for Narrator {
    fn update(&self, member: &str, message: &str) {
        if self.tty {
            self.spinner.update(member, message);
        } else if !self.quiet {
            eprintln!("pgpatrol: {member}: {message}");
        }
    }
}

/// Asks before acting: `--yes` or a person on a terminal who says yes; a dry run asks nothing.
pub(crate) fn confirm_op(op: &OpArgs, question: &str, verb: &str) -> anyhow::Result<()> {
    confirmed(op, question, verb)
}

fn confirmed(op: &OpArgs, question: &str, verb: &str) -> anyhow::Result<()> {
    if op.yes || op.dry_run {
        return Ok(());
    }
    if !confirm::interactive() {
        anyhow::bail!("not on a terminal: add --yes to {verb} (or --dry-run to see the requests)");
    }
    if !confirm::ask(question)? {
        anyhow::bail!("not confirmed: nothing was done");
    }
    Ok(())
}

struct Opened {
    source: ClusterSource,
    cluster: Cluster,
    audit: Audit,
}

impl Opened {
    /// The operation's sender: this cluster, its audit log, `--dry-run` and `-o json`.
    fn ops<'a>(&'a self, operation: &'static str, op: &OpArgs, narrator: &'a Narrator) -> Ops<'a> {
        Ops::new(&self.source, operation, op.dry_run, &self.audit, narrator)
            .json(op.format == OpFormat::Json)
    }
}

async fn open(cluster: &ClusterArgs, op: &OpArgs) -> anyhow::Result<Opened> {
    let source = cluster.source().await?;
    let snap = source.snapshot(Detail::Full).await?;
    let name = snap
        .cluster
        .scope
        .clone()
        .unwrap_or_else(|| "cluster".into());
    let audit = Audit::for_run(!op.dry_run, op.audit_log.as_deref(), Some(&name))?;
    Ok(Opened {
        source,
        cluster: snap.cluster,
        audit,
    })
}

async fn settings(source: &ClusterSource) -> (TakeoverSettings, serde_json::Value) {
    match source.config().await {
        Ok(c) => (TakeoverSettings::from_config(&c), c),
        Err(e) => {
            eprintln!("pgpatrol: warning: cannot read the dynamic configuration ({e}): Patroni's defaults assumed (maximum_lag_on_failover 1 MB, no synchronous mode)");
            (TakeoverSettings::default(), serde_json::json!({}))
        }
    }
}

fn human_lag(l: Lag) -> String {
    match l {
        Lag::Bytes(b) => pgpatrol_core::units::human(b),
        Lag::Unknown => "unknown".into(),
    }
}

fn candidate_table(cands: &[Candidate], positions: Option<&[Position]>) -> String {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_MARKDOWN);
    let mut header = vec!["Member", "Role", "State", "TL", "Lag", "Priority"];
    if positions.is_some() {
        header.extend(["Received", "Replayed", "Behind leader"]);
    }
    header.push("Can take over");
    t.set_header(header);
    for c in cands {
        let mut row = vec![
            c.name.clone(),
            c.role.title(),
            c.state.clone(),
            c.timeline.map(|t| t.to_string()).unwrap_or_default(),
            human_lag(c.lag),
            c.priority.to_string(),
        ];
        if let Some(ps) = positions {
            let p = ps.iter().find(|p| p.name == c.name);
            let lsn = |l: Option<pgpatrol_core::Lsn>| {
                l.map(|l| l.to_string()).unwrap_or_else(|| "?".into())
            };
            row.push(lsn(p.and_then(|p| p.received)));
            row.push(lsn(p.and_then(|p| p.replayed)));
            row.push(
                p.and_then(|p| p.behind_leader)
                    .map(pgpatrol_core::units::human)
                    .unwrap_or_else(|| "?".into()),
            );
        }
        row.push(if c.eligible {
            "yes".into()
        } else {
            format!("no: {}", c.reasons.join("; "))
        });
        t.add_row(row);
    }
    t.to_string()
}

/// The cluster after the operation, when it can be read.
async fn write_cluster(
    out: &mut impl Write,
    source: &ClusterSource,
    color: ColorChoice,
) -> std::io::Result<()> {
    if let Ok(s) = source.snapshot(Detail::Full).await {
        let emphasis = Emphasis {
            look: Look::stdout(color),
            ..Emphasis::plain()
        };
        table::list(out, &s.cluster, &emphasis)?;
    }
    Ok(())
}

pub(crate) fn emit_json<T: Serialize>(out: &mut impl Write, v: &T) -> anyhow::Result<()> {
    write_structured(out, Format::Json, v)
}

// ---------------------------------------------------------------------------------------
// switchover

/// Hand the leader role to a healthy replica, checked first and followed to the end.
///
/// A pre-flight table shows every member and why it can or cannot take over (state,
/// timeline, lag against maximum_lag_on_failover, nofailover/failover_priority, synchronous
/// role). After the request pgpatrol follows the cluster until the new leader runs and the
/// former one replicates (Patroni's `503 status unknown` is not taken as failure), and
/// prints how long no member was a writable leader.
///
/// Exit codes: 0 the leader changed (or the switchover was scheduled); 1 refused or the
/// leader did not change; 2 error (unknown member, bad time, unreachable, credentials).
#[derive(Debug, Args)]
pub struct SwitchoverArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The member to hand over to (default: the best eligible one: a synchronous standby
    /// first, then the least lag).
    #[arg(long)]
    pub candidate: Option<String>,

    /// The current leader, as a check: refused if it is not the leader.
    #[arg(long)]
    pub leader: Option<String>,

    /// Run it at this time instead of now: ISO 8601 with a zone (2026-12-01T22:00:00Z or
    /// +01:00); a time without a zone is refused, never read as local.
    #[arg(long)]
    pub scheduled: Option<String>,

    /// How long to follow the cluster for the new leader.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub op: OpArgs,
}

impl SwitchoverArgs {
    pub async fn run(self, color: ColorChoice, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let scheduled = self
            .scheduled
            .as_deref()
            .map(|s| ops::parse_schedule(s, jiff::Timestamp::now()))
            .transpose()?;
        let o = open(&self.cluster, &self.op).await?;
        let c = &o.cluster;
        let leader = c.leader().ok_or_else(|| {
            anyhow::anyhow!("the cluster has no leader: a switchover needs one; for a dead leader use `pgpatrol failover --candidate MEMBER`")
        })?;
        if let Some(l) = &self.leader {
            ops::member(c, l)?;
            if *l != leader.name {
                anyhow::bail!("{l} is not the leader ({} is): check --leader", leader.name);
            }
        }
        if let Some(cand) = &self.candidate {
            ops::member(c, cand)?;
            if *cand == leader.name {
                anyhow::bail!("{cand} is already the leader: name a replica as --candidate");
            }
        }
        let (settings, _) = settings(&o.source).await;
        let cands = candidates::candidates(c, &settings, Kind::Switchover);
        let json = self.op.format == OpFormat::Json;
        let at = scheduled.map(|s| s.to_string());
        let plan = takeover_rule::switchover(c, &cands, self.candidate.as_deref(), at.as_deref());
        if let (false, Some(leader)) = (json, c.leader()) {
            writeln!(
                out,
                "Switchover from {} ({}); maximum_lag_on_failover {}{}",
                leader.name,
                leader.role.title(),
                pgpatrol_core::units::human(settings.maximum_lag_on_failover),
                if settings.synchronous_mode {
                    ", synchronous mode"
                } else {
                    ""
                }
            )?;
            writeln!(out, "{}", candidate_table(&cands, None))?;
            write_plan(out, &plan)?;
        }
        if let Some(step) = plan.steps.first() {
            let when = at.as_ref().map_or("now".to_string(), |s| format!("at {s}"));
            confirmed(
                &self.op,
                &format!(
                    "Switch over from {} to {} {when}?",
                    step.member,
                    step.to.as_deref().unwrap_or("?")
                ),
                "switch over",
            )?;
        }
        let narrator = Narrator::new(json);
        let ops = o.ops("switchover", &self.op, &narrator);
        let mut op = TakeoverOp::new(settings, self.timeout);
        op.scheduled_at = scheduled;
        let mut report = runner::run(&mut op, &ops, plan).await;
        narrator.done();
        report.put("candidates", &cands);
        report_takeover(
            out,
            &o.source,
            &mut report,
            op.outcome.as_ref(),
            json,
            color,
        )
        .await
    }
}

/// Says a takeover's report (JSON, or the result for a person) and maps it onto the exit
/// code: 0 switched or scheduled, 1 refused, stopped or not done, 2 when Patroni never
/// answered (unreachable, credentials, TLS: an error, not a refusal).
async fn report_takeover(
    out: &mut impl Write,
    source: &ClusterSource,
    report: &mut OpReport,
    o: Option<&TakeoverOutcome>,
    json: bool,
    color: ColorChoice,
) -> anyhow::Result<Outcome> {
    if let Some(r) = report.refusal() {
        let reason = r.reason().to_string();
        report.put("reason", reason);
    }
    if let Some(o) = o {
        report.result = o.result.into();
        report.put("detail", &o.detail);
        report.put("leader_before", &o.leader_before);
        report.put("leader_after", &o.leader_after);
        report.put("candidate", &o.candidate);
        report.put("scheduled_at", &o.scheduled_at);
        report.put("write_gap", &o.write_gap);
    }
    let unanswered = o.is_some_and(|o| {
        o.result == TakeoverResult::Failed && o.requests.first().is_some_and(|r| r.status.is_none())
    });
    if let Some(Refusal::Unsafe(r)) = report.refusal() {
        eprintln!("pgpatrol: refused: {r}; nothing was sent");
    }
    if json {
        emit_json(out, &*report)?;
    } else if let Some(why) = &report.stopped.as_ref().filter(|_| o.is_none()) {
        writeln!(out, "{why}")?;
    } else if let Some(o) = o {
        match o.result {
            TakeoverResult::Switched => {
                writeln!(
                    out,
                    "{}: {} → {} in {:.1} s: {}",
                    o.operation,
                    o.leader_before.as_deref().unwrap_or("(none)"),
                    o.leader_after.as_deref().unwrap_or("?"),
                    o.total_secs,
                    o.detail
                )?;
                if let Some(g) = &o.write_gap {
                    writeln!(
                        out,
                        "no writable leader for {:.1} s (longest stretch; {:.1} s in all, {} polls of every member's /patroni)",
                        g.longest_secs, g.total_secs, g.polls
                    )?;
                }
                write_cluster(out, source, color).await?;
            }
            TakeoverResult::Scheduled => {
                writeln!(
                    out,
                    "{} scheduled at {}: {}",
                    o.operation,
                    o.scheduled_at.as_deref().unwrap_or("?"),
                    o.detail
                )?;
                write_cluster(out, source, color).await?;
            }
            TakeoverResult::DryRun => writeln!(out, "{}", o.detail)?,
            TakeoverResult::Failed => {}
        }
    }
    if let Some(Refusal::Invalid(r)) = report.refusal() {
        anyhow::bail!("{r}");
    }
    match o {
        Some(o) if o.result == TakeoverResult::Failed && unanswered => {
            anyhow::bail!("{} not done: {}", o.operation, o.detail)
        }
        Some(o) if o.result == TakeoverResult::Failed => {
            eprintln!("pgpatrol: {} not done: {}", o.operation, o.detail);
            Ok(Outcome::Problem)
        }
        Some(_) => Ok(Outcome::Ok),
        None if report.refusal().is_some() || report.stopped.is_some() => {
            if let Some(why) = &report.stopped {
                eprintln!("pgpatrol: {why}; nothing was sent");
            }
            Ok(Outcome::Problem)
        }
        None => Ok(Outcome::Ok),
    }
}

// ---------------------------------------------------------------------------------------
// failover

/// Promote a replica when the leader is dead or unreachable (the runbook's emergency
/// failover). Shows each member's last known received/replayed WAL against the last leader
/// position and recommends the one with the most data. A candidate that may lack data
/// another member has (less WAL, asynchronous in synchronous mode, or an unknown position)
/// is refused even with --yes: only --accept-data-loss, or its name typed on a terminal,
/// promotes it.
///
/// A running leader is refused: use `switchover`. Exit codes as for switchover.
#[derive(Debug, Args)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The member to promote.
    #[arg(long)]
    pub candidate: String,

    /// How long to follow the cluster for the new leader.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Promote the candidate even though it may lack data another member has (less WAL
    /// than another member, asynchronous in synchronous mode, or a position nobody could
    /// read). `--yes` alone never accepts that; on a terminal, typing the candidate's name
    /// does.
    #[arg(long)]
    pub accept_data_loss: bool,

    #[command(flatten)]
    pub op: OpArgs,
}

impl FailoverArgs {
    pub async fn run(self, color: ColorChoice, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let o = open(&self.cluster, &self.op).await?;
        let c = &o.cluster;
        let cand = ops::member(c, &self.candidate)?.clone();
        if c.leader().is_some_and(|l| l.name == cand.name) {
            anyhow::bail!(
                "{} is already the leader: name a replica as --candidate",
                cand.name
            );
        }
        let (settings, _) = settings(&o.source).await;
        let json = self.op.format == OpFormat::Json;
        let narrator = Narrator::new(json);
        let ops = o.ops("failover", &self.op, &narrator);
        let reading = switchover::read_failover(&ops, c, &settings, &cand.name).await;
        if let Some(l) = &reading.leader_running {
            anyhow::bail!("the leader {l} is running: use `pgpatrol switchover --candidate {}` (a failover is for a dead or unreachable leader)", cand.name);
        }
        let (positions, cands, risk) = (&reading.positions, &reading.candidates, &reading.risk);
        if !json {
            writeln!(
                out,
                "Failover to {}; last known leader position {}",
                cand.name,
                reading
                    .leader_pos
                    .map_or("unknown".to_string(), |l| l.to_string())
            )?;
            writeln!(out, "{}", candidate_table(cands, Some(positions)))?;
            if let Some(b) = takeover_rule::most_data(positions) {
                writeln!(
                    out,
                    "most data: {} ({})",
                    b.name,
                    b.data().map(|d| d.to_string()).unwrap_or_default()
                )?;
            }
        }
        let eligible = cands.iter().any(|x| x.name == cand.name && x.eligible);
        for w in risk.reasons.iter().filter(|_| eligible) {
            eprintln!("pgpatrol: warning: {w}");
        }
        // Data another member holds would be lost: --yes does not answer that, only
        // --accept-data-loss or the candidate's name typed on a terminal does.
        let mut accepted = self.accept_data_loss;
        if eligible
            && !risk.is_safe()
            && !accepted
            && !self.op.yes
            && !self.op.dry_run
            && confirm::interactive()
        {
            let answer = confirm::ask_text(&format!(
                "Promoting {} may lose data (see the warnings above). Type its name to promote it anyway:",
                cand.name
            ))?;
            if answer != cand.name {
                anyhow::bail!(
                    "not confirmed ({answer:?} is not {}): nothing was done",
                    cand.name
                );
            }
            accepted = true;
        } else if eligible && (risk.is_safe() || accepted) {
            let question = if risk.is_safe() {
                format!("Promote {}?", cand.name)
            } else {
                format!("Promote {} despite the warnings above?", cand.name)
            };
            confirmed(&self.op, &question, "fail over")?;
        }
        let plan = takeover_rule::failover(&cand.name, cands, risk, accepted);
        if !json {
            write_plan(out, &plan)?;
        }
        let mut op = TakeoverOp::new(settings, self.timeout);
        op.accepted = accepted;
        let mut report = runner::run(&mut op, &ops, plan).await;
        narrator.done();
        // What the rule judged last: before the step, or at the start when refused.
        let judged = op.reading.as_ref().unwrap_or(&reading);
        report.put("candidate", &cand.name);
        report.put("positions", &judged.positions);
        report.put("candidates", &judged.candidates);
        report.put("warnings", &judged.risk.reasons);
        report.put(
            "reasons",
            match report.refusal() {
                Some(r) => vec![r.reason().to_string()],
                None => judged.risk.reasons.clone(),
            },
        );
        // Bytes of WAL another member had and the candidate did not (0 when unknown).
        report.put("data_at_risk_bytes", judged.risk.bytes);
        report_takeover(
            out,
            &o.source,
            &mut report,
            op.outcome.as_ref(),
            json,
            color,
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------
// pause / resume

/// Put the cluster in maintenance mode (Patroni takes no automatic action).
///
/// Before the PATCH each member's own GET /config is read: while one disagrees with the
/// cluster read (Patroni's members do not agree on what the DCS holds), nothing is sent.
///
/// Exit codes: 0 paused (or already); 1 stopped before sending (members disagree), unknown
/// (Patroni could not confirm its write: HTTP 409), or not every member saw it within
/// --timeout (--wait); 2 error.
#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Wait until every member's own /patroni reports the new state.
    #[arg(long)]
    pub wait: bool,

    /// With --wait: give up after this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub op: OpArgs,
}

impl PauseArgs {
    pub async fn run(
        self,
        pause: bool,
        color: ColorChoice,
        out: &mut impl Write,
    ) -> anyhow::Result<Outcome> {
        let op = if pause { "pause" } else { "resume" };
        let o = open(&self.cluster, &self.op).await?;
        let json = self.op.format == OpFormat::Json;
        let plan = maintenance::pause(&o.cluster, pause);
        if !json && self.op.dry_run {
            write_plan(out, &plan)?;
        }
        let narrator = Narrator::new(json);
        let ops = o.ops(op, &self.op, &narrator);
        let mut run = PauseOp::new(pause, self.wait.then_some(self.timeout));
        let mut report = runner::run(&mut run, &ops, plan).await;
        narrator.done();
        if report.plan.nothing.is_some() {
            report.result = OpResult::Unchanged;
        } else if !run.lagging.is_empty() {
            report.result = OpResult::NotSeen;
        }
        let detail = match (&report.plan.nothing, report.steps.first()) {
            (Some(n), _) => n.clone(),
            (None, Some(s)) => s.detail.clone(),
            (None, None) => report.stopped.clone().unwrap_or_default(),
        };
        report.put("detail", &detail);
        report.put("lagging", &run.lagging);
        if json {
            emit_json(out, &report)?;
        } else {
            writeln!(out, "{op}: {detail}")?;
            if report.result == OpResult::Done {
                write_cluster(out, &o.source, color).await?;
            }
        }
        Ok(if report.ok() {
            Outcome::Ok
        } else {
            Outcome::Problem
        })
    }
}

// ---------------------------------------------------------------------------------------
// restart / flush

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleFilter {
    /// The leader (primary or standby leader).
    #[value(alias = "primary", alias = "master")]
    Leader,
    Replica,
    Any,
}

impl RoleFilter {
    fn admits(self, m: &pgpatrol_core::Member) -> bool {
        match self {
            RoleFilter::Any => true,
            RoleFilter::Leader => m.role.is_leader(),
            RoleFilter::Replica => !m.role.is_leader(),
        }
    }
}

/// Restart PostgreSQL on members, one at a time, each waited for until it is back.
///
/// No member is restarted while another is down or behind (the cluster is read again
/// before every step; the run stops at the first failure and leaves the rest untouched).
/// `--rolling` restarts the replicas first, then switches over to the best healthy replica
/// and restarts the former leader (or the leader in place with --leader-in-place).
///
/// Exit codes: 0 every member restarted (or had nothing pending); 1 stopped early or
/// refused; 2 error.
#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Members to restart (default: every member that --role and --pending select).
    pub members: Vec<String>,

    /// Only members of this role.
    #[arg(long, value_enum, default_value = "any")]
    pub role: RoleFilter,

    /// Only members with a pending restart (`pending_restart`), and Patroni checks again.
    #[arg(long)]
    pub pending: bool,

    /// Schedule the restart at this time (ISO 8601 with a zone) instead of now. One member
    /// per cluster at a time: Patroni runs a schedule unchecked, so several members, or a
    /// second schedule while one stands, are refused (use --rolling at that time instead).
    #[arg(long, conflicts_with = "rolling")]
    pub scheduled: Option<String>,

    /// Replicas first, then a switchover and the former leader.
    #[arg(long)]
    pub rolling: bool,

    /// With --rolling: restart the leader in place instead of switching over first.
    #[arg(long, requires = "rolling")]
    pub leader_in_place: bool,

    /// A restarted replica is back when its replay lag is below this (bare number = MB).
    #[arg(long, default_value = "5")]
    pub tolerance: ByteSize,

    /// How long one member may take to come back.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub op: OpArgs,
}

impl RestartArgs {
    pub async fn run(self, color: ColorChoice, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let scheduled = self
            .scheduled
            .as_deref()
            .map(|s| ops::parse_schedule(s, jiff::Timestamp::now()))
            .transpose()?;
        let o = open(&self.cluster, &self.op).await?;
        let c = &o.cluster;
        for m in &self.members {
            ops::member(c, m)?;
        }
        let selected: Vec<String> = c
            .members
            .iter()
            .filter(|m| self.members.is_empty() || self.members.contains(&m.name))
            .filter(|m| self.role.admits(m))
            .filter(|m| !self.pending || scheduled.is_some() || m.pending_restart)
            .map(|m| m.name.clone())
            .collect();
        // Named members restart in the order given.
        let selected: Vec<String> = if self.members.is_empty() {
            selected
        } else {
            self.members
                .iter()
                .filter(|m| selected.contains(m))
                .cloned()
                .collect()
        };
        let json = self.op.format == OpFormat::Json;
        let at = scheduled.map(|s| s.to_string());
        let mut plan = restart_rule::plan(
            c,
            &restart_rule::RestartRequest {
                selected: &selected,
                rolling: self.rolling,
                leader_in_place: self.leader_in_place,
                scheduled: at.as_deref(),
            },
        );
        if plan.nothing.is_some() && self.pending {
            plan.nothing = Some("no selected member has a pending restart".into());
        }
        if plan.refusal.is_none() && plan.nothing.is_none() {
            if !json {
                writeln!(out, "restart {}", selected.join(", "))?;
                write_plan(out, &plan)?;
            }
            confirmed(
                &self.op,
                &format!("Restart PostgreSQL on {}?", selected.join(", ")),
                "restart",
            )?;
        }
        let narrator = Narrator::new(json);
        let ops = o.ops("restart", &self.op, &narrator);
        let opts = RestartOptions {
            pending: self.pending,
            tolerance: self.tolerance.0,
            lag: LagKind::Replay,
            timeout: self.timeout,
        };
        let settings = if self.rolling {
            settings(&o.source).await.0
        } else {
            TakeoverSettings::default()
        };
        let mut op = RestartOp::new(c, opts, self.rolling, settings, scheduled);
        let report = runner::run(&mut op, &ops, plan).await;
        narrator.done();
        finish_report(out, &report, json, !self.op.dry_run, &o.source, color).await
    }
}

/// Says the report — JSON, or the steps, where it stopped and what was not touched — and
/// maps it onto the exit code.
async fn finish_report(
    out: &mut impl Write,
    report: &OpReport,
    json: bool,
    show_cluster: bool,
    source: &ClusterSource,
    color: ColorChoice,
) -> anyhow::Result<Outcome> {
    // An unsafe refusal is said on stderr, and with -o json as the result on stdout too;
    // an invalid one is the command's error (exit 2).
    if let Some(Refusal::Unsafe(r)) = report.refusal() {
        eprintln!("pgpatrol: refused: {r}; nothing was sent");
    }
    if json {
        emit_json(out, report)?;
    } else {
        if let Some(n) = &report.plan.nothing {
            writeln!(out, "{}: nothing to do: {n}", report.operation)?;
        }
        write_steps(out, &report.steps)?;
        if let Some(why) = &report.stopped {
            writeln!(out, "{why}")?;
            if !report.untouched.is_empty() {
                writeln!(out, "not done: {}", report.untouched.join(", "))?;
            }
        }
        if show_cluster && !report.steps.is_empty() {
            write_cluster(out, source, color).await?;
        }
    }
    Ok(match report.exit.code {
        0 => Outcome::Ok,
        2 => match report.refusal() {
            Some(r) => anyhow::bail!("{}", r.reason()),
            None => anyhow::bail!("{}", report.exit.reason),
        },
        _ => Outcome::Problem,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlushWhat {
    /// Cancel scheduled restarts (`DELETE /restart` on members that have one).
    Restart,
    /// Cancel the scheduled switchover (`DELETE /switchover`).
    Switchover,
}

/// Cancel scheduled restarts or a scheduled switchover.
///
/// Exit codes: 0 cancelled (or nothing was scheduled); 1 Patroni refused; 2 error.
#[derive(Debug, Args)]
pub struct FlushArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// What to cancel.
    #[arg(value_enum)]
    pub what: FlushWhat,

    /// Only these members (restart).
    pub members: Vec<String>,

    #[command(flatten)]
    pub op: OpArgs,
}

impl FlushArgs {
    pub async fn run(self, color: ColorChoice, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let o = open(&self.cluster, &self.op).await?;
        let c = &o.cluster;
        for m in &self.members {
            ops::member(c, m)?;
        }
        let json = self.op.format == OpFormat::Json;
        let plan = match self.what {
            FlushWhat::Restart => maintenance::flush_restart(c, &self.members),
            FlushWhat::Switchover => maintenance::flush_switchover(c),
        };
        if !json && self.op.dry_run {
            write_plan(out, &plan)?;
        }
        let narrator = Narrator::new(json);
        let ops = o.ops("flush", &self.op, &narrator);
        let mut report = runner::run(&mut FlushOp::new(), &ops, plan).await;
        narrator.done();
        report.put("what", format!("{:?}", self.what).to_lowercase());
        report.put("detail", report.plan.nothing.clone());
        finish_report(out, &report, json, !self.op.dry_run, &o.source, color).await
    }
}

// ---------------------------------------------------------------------------------------
// reload

/// Ask Patroni to reload its configuration (patroni.yml and PostgreSQL's) on members, then
/// say which members now have a pending restart and for which parameters.
///
/// Exit codes: 0 every member accepted; 1 some refused; 2 error.
#[derive(Debug, Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Members to reload (default: all).
    pub members: Vec<String>,

    /// Only members of this role.
    #[arg(long, value_enum, default_value = "any")]
    pub role: RoleFilter,

    /// How long to let Patroni apply it before reading pending restarts (default: loop_wait
    /// + 2 s, from the dynamic configuration).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub settle: Option<Duration>,

    #[command(flatten)]
    pub op: OpArgs,
}

fn write_pending(out: &mut impl Write, p: &[Pending]) -> std::io::Result<()> {
    if p.is_empty() {
        writeln!(out, "no member has a pending restart")?;
    }
    for p in p {
        let why = match p.reason.as_ref().and_then(|r| r.as_object()) {
            Some(o) if !o.is_empty() => o
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k} {} → {}",
                        v.get("old_value")
                            .map(|x| x.to_string())
                            .unwrap_or_default(),
                        v.get("new_value")
                            .map(|x| x.to_string())
                            .unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => "Patroni does not say which parameters (it reports them from 3.3 on)".into(),
        };
        writeln!(out, "{} has a pending restart: {why}", p.member)?;
    }
    Ok(())
}

/// How one member took the reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum ReloadResult {
    Accepted,
    DryRun,
    Refused,
}

impl ReloadResult {
    fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Accepted => "accepted",
            ReloadResult::DryRun => "dry_run",
            ReloadResult::Refused => "refused",
        }
    }
}

impl std::fmt::Display for ReloadResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member of reload's report (`members`).
#[derive(Debug, Serialize)]
struct Reloaded {
    member: String,
    result: ReloadResult,
    detail: String,
}

impl ReloadArgs {
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let o = open(&self.cluster, &self.op).await?;
        let c = &o.cluster;
        for m in &self.members {
            ops::member(c, m)?;
        }
        let json = self.op.format == OpFormat::Json;
        let selected: Vec<String> = c
            .members
            .iter()
            .filter(|m| {
                (self.members.is_empty() || self.members.contains(&m.name)) && self.role.admits(m)
            })
            .map(|m| m.name.clone())
            .collect();
        let plan = maintenance::reload(&selected);
        if !json && self.op.dry_run {
            write_plan(out, &plan)?;
        }
        let narrator = Narrator::new(json);
        let ops = o.ops("reload", &self.op, &narrator);
        let mut report = runner::run(&mut ReloadOp::default(), &ops, plan).await;
        let mut pending = Vec::new();
        if !self.op.dry_run && !report.steps.is_empty() {
            let settle = match self.settle {
                Some(s) => s,
                None => {
                    let (_, config) = settings(&o.source).await;
                    let lw = config
                        .get("loop_wait")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(10);
                    Duration::from_secs(lw + 2)
                }
            };
            narrator.update(
                "cluster",
                &format!(
                    "letting Patroni apply it ({})",
                    humantime::format_duration(settle)
                ),
            );
            tokio::time::sleep(settle).await;
            pending = pending_of(&o.source.snapshot(Detail::Lag).await?.cluster);
        }
        narrator.done();
        let members: Vec<Reloaded> = report
            .steps
            .iter()
            .map(|s| Reloaded {
                member: s.member.clone(),
                result: match s.result {
                    StepResult::Accepted => ReloadResult::Accepted,
                    StepResult::DryRun => ReloadResult::DryRun,
                    _ => ReloadResult::Refused,
                },
                detail: s.detail.clone(),
            })
            .collect();
        report.put("members", &members);
        report.put("pending_restart", &pending);
        if json {
            emit_json(out, &report)?;
        } else {
            for r in &members {
                writeln!(out, "reload {}: {}: {}", r.member, r.result, r.detail)?;
            }
            if let Some(why) = &report.stopped {
                writeln!(out, "{why}")?;
            }
            if !self.op.dry_run {
                write_pending(out, &pending)?;
            }
        }
        Ok(if report.ok() {
            Outcome::Ok
        } else {
            Outcome::Problem
        })
    }
}

// ---------------------------------------------------------------------------------------
// edit-config

/// Change the dynamic configuration (in the DCS): a unified diff, confirmation, one
/// `PATCH /config` (null deletes a key), a read-back that the DCS holds what was asked, and
/// which changed PostgreSQL parameters need a restart.
///
/// After the PATCH the whole configuration is read back and compared with the document this
/// edit intended: a key someone else changed in between is named (exit 1), never kept
/// silently. Before it, the configuration is read again and so is each member's own GET
/// /config: a change since the diff, or a member holding another configuration, sends
/// nothing (exit 1).
///
/// Exit codes: 0 applied and read back (or nothing to change); 1 stopped before sending,
/// unknown (Patroni could not confirm its write: HTTP 409), or the read-back differs;
/// 2 error.
#[derive(Debug, Args)]
pub struct EditConfigArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Set PATH=VALUE (dot-separated path; VALUE read as YAML, null deletes). Repeatable.
    #[arg(short = 's', long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,

    /// Set a PostgreSQL parameter NAME=VALUE (postgresql.parameters.NAME). Repeatable.
    #[arg(short = 'p', long = "pg", value_name = "NAME=VALUE")]
    pub pg: Vec<String>,

    /// Merge a YAML file into the configuration (`-` reads stdin; needs --yes).
    #[arg(long, value_name = "FILE")]
    pub apply: Option<String>,

    /// Replace the whole configuration with a YAML file (`-` reads stdin; needs --yes).
    #[arg(long, value_name = "FILE", conflicts_with = "apply")]
    pub replace: Option<String>,

    /// How long to wait for members to report the pending restart a change needs.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub op: OpArgs,
}

fn read_yaml(path: &str, flag: &str) -> anyhow::Result<serde_json::Value> {
    let raw = if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{flag} {path}: {e}"))?
    };
    let v: serde_json::Value =
        crate::yaml::from_str(&raw).map_err(|e| anyhow::anyhow!("{flag} {path}: not YAML: {e}"))?;
    if !v.is_object() {
        anyhow::bail!("{flag} {path}: the configuration must be a YAML mapping");
    }
    Ok(v)
}

impl EditConfigArgs {
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        use crate::ops::config as cfg;
        if self.set.is_empty()
            && self.pg.is_empty()
            && self.apply.is_none()
            && self.replace.is_none()
        {
            anyhow::bail!("nothing to change: give --set, --pg, --apply or --replace");
        }
        if (self.apply.as_deref() == Some("-") || self.replace.as_deref() == Some("-"))
            && !self.op.yes
            && !self.op.dry_run
        {
            anyhow::bail!(
                "reading the configuration from stdin leaves nobody to confirm: add --yes"
            );
        }
        let mut assignments = Vec::new();
        for s in &self.set {
            assignments.push(cfg::split_assignment(s, "--set").map_err(anyhow::Error::msg)?);
        }
        for p in &self.pg {
            let (k, v) = cfg::split_assignment(p, "--pg").map_err(anyhow::Error::msg)?;
            assignments.push((format!("postgresql.parameters.{k}"), v));
        }
        let file = match (&self.apply, &self.replace) {
            (Some(a), _) => Some((read_yaml(a, "--apply")?, false)),
            (_, Some(r)) => Some((read_yaml(r, "--replace")?, true)),
            _ => None,
        };
        let o = open(&self.cluster, &self.op).await?;
        let current = o.source.config().await?;
        let mut new = current.clone();
        match file {
            Some((doc, true)) => new = doc,
            Some((doc, false)) => cfg::merge(&mut new, &doc),
            None => {}
        }
        for (path, value) in assignments {
            cfg::set_path(&mut new, &path, value).map_err(anyhow::Error::msg)?;
        }
        let json = self.op.format == OpFormat::Json;
        let patch = cfg::patch_between(&current, &new);
        let plan = maintenance::edit_config(patch.as_ref());
        let Some(patch) = patch else {
            if json {
                let mut report = OpReport::unrun(plan);
                report.result = OpResult::Unchanged;
                emit_json(out, &report)?;
            } else {
                writeln!(
                    out,
                    "edit-config: not changed: the configuration already holds that"
                )?;
            }
            return Ok(Outcome::Ok);
        };
        let mut run = EditOp::new(current.clone(), patch.clone(), new.clone(), self.timeout);
        if !json {
            write!(out, "{}", cfg::diff(&current, &new))?;
            if !run.restart_params.is_empty() {
                writeln!(
                    out,
                    "needs a PostgreSQL restart to take effect: {}",
                    run.restart_params.join(", ")
                )?;
            }
        }
        confirmed(&self.op, "Apply these changes?", "change the configuration")?;
        let narrator = Narrator::new(json);
        let ops = o.ops("edit-config", &self.op, &narrator);
        let mut report = runner::run(&mut run, &ops, plan).await;
        narrator.done();
        if report.steps.is_empty() {
            report.result = OpResult::Stopped;
        } else {
            report.result = run.result.into();
        }
        report.put("patch", crate::audit::redact(&patch));
        report.put("not_applied", &run.missing);
        report.put("changed_concurrently", &run.changed_by_others);
        report.put("needs_restart", &run.restart_params);
        report.put("pending_restart", &run.pending);
        if json {
            emit_json(out, &report)?;
        } else {
            match (report.steps.first(), &report.stopped) {
                (None, Some(why)) => writeln!(out, "{why}; nothing was sent")?,
                (Some(s), _) if run.result == EditResult::DryRun => writeln!(out, "{}", s.detail)?,
                (Some(s), _) => {
                    writeln!(out, "{}", s.detail)?;
                    if run.result == EditResult::Applied && !run.restart_params.is_empty() {
                        write_pending(out, &run.pending)?;
                        if !run.pending.is_empty() {
                            writeln!(out, "to apply it: pgpatrol restart --pending --rolling")?;
                        }
                    }
                }
                _ => {}
            }
        }
        out.flush()?;
        Ok(if report.ok() {
            Outcome::Ok
        } else {
            Outcome::Problem
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reloaded_member_keeps_its_json_shape() {
        let r = Reloaded {
            member: "pg1".into(),
            result: ReloadResult::DryRun,
            detail: "d".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"member":"pg1","result":"dry_run","detail":"d"}"#
        );
        for r in [
            ReloadResult::Accepted,
            ReloadResult::DryRun,
            ReloadResult::Refused,
        ] {
            assert_eq!(serde_json::json!(r), r.as_str(), "{r:?}");
        }
    }
}
