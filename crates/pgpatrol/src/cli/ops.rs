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
use crate::executor::Progress;
use crate::ops::audit::Audit;
use crate::ops::restart::{self, RestartOptions, RestartReport, Step, StepResult};
use crate::ops::switchover::{self, Takeover, TakeoverOutcome, TakeoverResult};
use crate::ops::{self, Ops};
use crate::output::table::{self, Emphasis};
use crate::output::term::{ColorChoice, Look};
use crate::poll::Poll;
use crate::source::rest::{Detail, RestSource};
use pgpatrol_core::ops::takeover::{self as takeover_rule, Position};

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
    source: RestSource,
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
    let audit = if op.dry_run {
        Audit::disabled()
    } else {
        Audit::open(op.audit_log.as_deref(), &name)?
    };
    Ok(Opened {
        source,
        cluster: snap.cluster,
        audit,
    })
}

async fn settings(source: &RestSource) -> (TakeoverSettings, serde_json::Value) {
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

async fn print_cluster(source: &RestSource, color: ColorChoice) {
    if let Ok(s) = source.snapshot(Detail::Full).await {
        let emphasis = Emphasis {
            look: Look::stdout(color),
            ..Emphasis::plain()
        };
        let mut out = std::io::stdout().lock();
        let _ = table::list(&mut out, &s.cluster, &emphasis);
    }
}

pub(crate) fn emit_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    write_structured(&mut std::io::stdout().lock(), Format::Json, v)
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
    pub async fn run(self, color: ColorChoice) -> anyhow::Result<Outcome> {
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
        if !json {
            println!(
                "Switchover from {} ({}); maximum_lag_on_failover {}{}",
                leader.name,
                leader.role.title(),
                pgpatrol_core::units::human(settings.maximum_lag_on_failover),
                if settings.synchronous_mode {
                    ", synchronous mode"
                } else {
                    ""
                }
            );
            println!("{}", candidate_table(&cands, None));
        }
        // A refusal is said on stderr, and with -o json as the result on stdout too.
        let refuse = |why: String| -> anyhow::Result<Outcome> {
            eprintln!("pgpatrol: refused: {why}; nothing was sent");
            if json {
                emit_json(&TakeoverRefusal {
                    operation: "switchover",
                    result: "refused",
                    reason: &why,
                    candidates: &cands,
                })?;
            }
            Ok(Outcome::Problem)
        };
        if scheduled.is_some() && c.paused {
            return refuse("the cluster is paused: Patroni cannot schedule a switchover in maintenance mode; resume it or switch over now".into());
        }
        let chosen = match &self.candidate {
            Some(name) => {
                let Some(cand) = cands.iter().find(|x| x.name == *name) else {
                    return refuse(format!("{name} is not a replica"));
                };
                if !cand.eligible {
                    return refuse(format!(
                        "{name} cannot take over: {}",
                        cand.reasons.join("; ")
                    ));
                }
                name.clone()
            }
            None => match candidates::best(&cands) {
                Some(b) => b.name.clone(),
                None => {
                    return refuse("no member can take over (see the table)".to_string());
                }
            },
        };
        let when = scheduled.map_or("now".to_string(), |s| format!("at {s}"));
        confirmed(
            &self.op,
            &format!("Switch over from {} to {chosen} {when}?", leader.name),
            "switch over",
        )?;
        let narrator = Narrator::new(json);
        let ops = o.ops("switchover", &self.op, &narrator);
        let outcome = switchover::run(
            &ops,
            c,
            leader,
            &Takeover {
                operation: "switchover",
                leader: Some(leader.name.clone()),
                candidate: Some(chosen),
                scheduled_at: scheduled,
                timeout: self.timeout,
            },
            cands.clone(),
        )
        .await?;
        narrator.done();
        let show = if json { Show::Json } else { Show::Human };
        report_takeover(&o.source, &outcome, show, color).await
    }
}

/// How a takeover's result is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    Human,
    Json,
    /// The caller printed it.
    Nothing,
}

async fn report_takeover(
    source: &RestSource,
    o: &TakeoverOutcome,
    show: Show,
    color: ColorChoice,
) -> anyhow::Result<Outcome> {
    // Patroni never answered (unreachable, credentials, TLS): an error, not a refusal.
    let unanswered = o.result == TakeoverResult::Failed
        && o.requests.first().is_some_and(|r| r.status.is_none());
    if show == Show::Json {
        emit_json(o)?;
    } else if show == Show::Human {
        match o.result {
            TakeoverResult::Switched => {
                println!(
                    "{}: {} → {} in {:.1} s: {}",
                    o.operation,
                    o.leader_before.as_deref().unwrap_or("(none)"),
                    o.leader_after.as_deref().unwrap_or("?"),
                    o.total_secs,
                    o.detail
                );
                if let Some(g) = &o.write_gap {
                    println!(
                        "no writable leader for {:.1} s (longest stretch; {:.1} s in all, {} polls of every member's /patroni)",
                        g.longest_secs, g.total_secs, g.polls
                    );
                }
                print_cluster(source, color).await;
            }
            TakeoverResult::Scheduled => {
                println!(
                    "{} scheduled at {}: {}",
                    o.operation,
                    o.scheduled_at.as_deref().unwrap_or("?"),
                    o.detail
                );
                print_cluster(source, color).await;
            }
            TakeoverResult::DryRun => println!("{}", o.detail),
            TakeoverResult::Failed => {}
        }
    }
    match o.result {
        TakeoverResult::Failed if unanswered => {
            anyhow::bail!("{} not done: {}", o.operation, o.detail)
        }
        TakeoverResult::Failed => {
            eprintln!("pgpatrol: {} not done: {}", o.operation, o.detail);
            Ok(Outcome::Problem)
        }
        _ => Ok(Outcome::Ok),
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

/// A switchover refused before anything was sent, as `-o json` shows it: the reason and
/// every candidate as the takeover rule judged it.
#[derive(Debug, Serialize)]
struct TakeoverRefusal<'a> {
    operation: &'static str,
    result: &'static str,
    reason: &'a str,
    candidates: &'a [Candidate],
}

/// A failover refused before anything was sent, as `-o json` shows it.
#[derive(Debug, Serialize)]
struct FailoverRefusal<'a> {
    operation: &'static str,
    result: &'static str,
    candidate: &'a str,
    reasons: &'a [String],
    /// Bytes of WAL another member has and the candidate does not (0 when unknown).
    data_at_risk_bytes: u64,
    positions: &'a [Position],
}

impl FailoverArgs {
    pub async fn run(self, color: ColorChoice) -> anyhow::Result<Outcome> {
        let o = open(&self.cluster, &self.op).await?;
        let c = &o.cluster;
        let cand = ops::member(c, &self.candidate)?.clone();
        if let Some(l) = c.leader() {
            if l.name == cand.name {
                anyhow::bail!(
                    "{} is already the leader: name a replica as --candidate",
                    cand.name
                );
            }
            // /cluster keeps a dead leader until its key expires: ask the leader itself.
            if let Ok(api) = ops::api_of(l) {
                if let Ok(s) = o.source.member_status(&api).await {
                    if s.is_running_leader() {
                        anyhow::bail!("the leader {} is running: use `pgpatrol switchover --candidate {}` (a failover is for a dead or unreachable leader)", l.name, cand.name);
                    }
                }
            }
        }
        let (settings, _) = settings(&o.source).await;
        let json = self.op.format == OpFormat::Json;
        let narrator = Narrator::new(json);
        let ops = o.ops("failover", &self.op, &narrator);
        let (positions, leader_pos) = switchover::positions(&ops, c).await;
        // A dead leader is no candidate: judge the others as if there were no leader.
        let mut without_leader = c.clone();
        without_leader.members.retain(|m| !m.role.is_leader());
        let mut cands = candidates::candidates(&without_leader, &settings, Kind::Failover);
        for x in &mut cands {
            // Lag against a dead leader is measured from the last position it published;
            // the data comparison below is what counts.
            x.reasons
                .retain(|r| !r.contains("maximum_lag_on_failover") && r != "lag is unknown");
            x.eligible = x.reasons.is_empty();
        }
        let best = takeover_rule::most_data(&positions);
        if !json {
            println!(
                "Failover to {}; last known leader position {}",
                cand.name,
                leader_pos.map_or("unknown".to_string(), |l| l.to_string())
            );
            println!("{}", candidate_table(&cands, Some(&positions)));
            if let Some(b) = best {
                println!(
                    "most data: {} ({})",
                    b.name,
                    b.data().map(|d| d.to_string()).unwrap_or_default()
                );
            }
        }
        let Some(chosen) = cands.iter().find(|x| x.name == cand.name) else {
            anyhow::bail!("{} is not a replica", cand.name);
        };
        if !chosen.eligible {
            eprintln!(
                "pgpatrol: refused: {} cannot be promoted: {}; nothing was sent",
                cand.name,
                chosen.reasons.join("; ")
            );
            if json {
                emit_json(&FailoverRefusal {
                    operation: "failover",
                    result: "refused",
                    candidate: &cand.name,
                    reasons: &chosen.reasons,
                    data_at_risk_bytes: 0,
                    positions: &positions,
                })?;
            }
            return Ok(Outcome::Problem);
        }
        let risk = takeover_rule::data_at_risk(
            &cand.name,
            &positions,
            settings.synchronous_mode,
            chosen.synchronous,
        );
        let (warnings, at_risk) = (&risk.reasons, risk.bytes);
        for w in warnings {
            eprintln!("pgpatrol: warning: {w}");
        }
        // Data another member holds would be lost: --yes does not answer that, only
        // --accept-data-loss or the candidate's name typed on a terminal does.
        let typed = !warnings.is_empty()
            && !self.accept_data_loss
            && !self.op.yes
            && !self.op.dry_run
            && confirm::interactive();
        if !warnings.is_empty() && !self.accept_data_loss && !typed {
            let better = risk
                .better
                .as_ref()
                .map(|b| format!(", or choose {b}"))
                .unwrap_or_default();
            eprintln!(
                "pgpatrol: refused: promoting {} may lose data ({}): add --accept-data-loss to promote it anyway{better}; nothing was sent",
                cand.name,
                warnings.join("; ")
            );
            if json {
                emit_json(&FailoverRefusal {
                    operation: "failover",
                    result: "refused",
                    candidate: &cand.name,
                    reasons: warnings,
                    data_at_risk_bytes: at_risk,
                    positions: &positions,
                })?;
            }
            return Ok(Outcome::Problem);
        }
        if typed {
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
        } else {
            let question = if warnings.is_empty() {
                format!("Promote {}?", cand.name)
            } else {
                format!("Promote {} despite the warnings above?", cand.name)
            };
            confirmed(&self.op, &question, "fail over")?;
        }
        let outcome = switchover::run(
            &ops,
            c,
            &cand,
            &Takeover {
                operation: "failover",
                leader: None,
                candidate: Some(cand.name.clone()),
                scheduled_at: None,
                timeout: self.timeout,
            },
            cands.clone(),
        )
        .await?;
        narrator.done();
        if json {
            #[derive(Serialize)]
            struct FailoverReport<'a> {
                #[serde(flatten)]
                outcome: &'a TakeoverOutcome,
                positions: &'a [Position],
                warnings: &'a [String],
                /// Bytes of WAL another member had and the new leader did not.
                data_at_risk_bytes: u64,
            }
            emit_json(&FailoverReport {
                outcome: &outcome,
                positions: &positions,
                warnings,
                data_at_risk_bytes: at_risk,
            })?;
            return report_takeover(&o.source, &outcome, Show::Nothing, color).await;
        }
        report_takeover(&o.source, &outcome, Show::Human, color).await
    }
}

// ---------------------------------------------------------------------------------------
// pause / resume

/// Put the cluster in maintenance mode (Patroni takes no automatic action).
///
/// Exit codes: 0 paused (or already); 1 not every member saw it within --timeout (--wait);
/// 2 error.
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

#[derive(Debug, Serialize)]
struct PauseReport {
    operation: &'static str,
    result: &'static str,
    detail: String,
    /// Members whose own /patroni did not report the new state (with --wait).
    lagging: Vec<String>,
    requests: Vec<ops::SentRequest>,
}

impl PauseArgs {
    pub async fn run(self, pause: bool, color: ColorChoice) -> anyhow::Result<Outcome> {
        let op = if pause { "pause" } else { "resume" };
        let o = open(&self.cluster, &self.op).await?;
        let json = self.op.format == OpFormat::Json;
        let narrator = Narrator::new(json);
        let ops = o.ops(op, &self.op, &narrator);
        let mut report = PauseReport {
            operation: op,
            result: "done",
            detail: String::new(),
            lagging: Vec::new(),
            requests: Vec::new(),
        };
        if o.cluster.paused == pause {
            report.result = "unchanged";
            report.detail = if pause {
                "the cluster is already paused".into()
            } else {
                "the cluster is not paused".into()
            };
        } else {
            let body = serde_json::json!({ "pause": if pause { serde_json::Value::Bool(true) } else { serde_json::Value::Null } });
            let (target, answer) = ops.patch_config(&o.cluster, body).await?;
            match answer {
                None => {
                    report.result = "dry_run";
                    report.detail = "dry run: nothing was sent".into();
                }
                Some(r) if r.status == reqwest::StatusCode::OK => {
                    report.detail = if pause {
                        "maintenance mode on: Patroni takes no automatic action".into()
                    } else {
                        "maintenance mode off".into()
                    };
                    if self.wait {
                        report.lagging = wait_pause(&ops, &o.cluster, pause, self.timeout).await;
                        if !report.lagging.is_empty() {
                            report.result = "not_seen";
                            report.detail = format!(
                                "{} did not report {} within {}",
                                report.lagging.join(", "),
                                if pause { "paused" } else { "resumed" },
                                humantime::format_duration(self.timeout)
                            );
                        } else {
                            report.detail.push_str(&format!(
                                "; every member ({}) reports it",
                                o.cluster.members.len()
                            ));
                        }
                    }
                }
                Some(r) => anyhow::bail!(
                    "PATCH /config on {} answered HTTP {}: {}",
                    target,
                    r.status.as_u16(),
                    crate::text::snippet(r.body.trim())
                ),
            }
        }
        report.requests = ops.sent();
        narrator.done();
        if json {
            emit_json(&report)?;
        } else {
            println!("{op}: {}", report.detail);
            if report.result == "done" {
                print_cluster(&o.source, color).await;
            }
        }
        Ok(if report.result == "not_seen" {
            Outcome::Problem
        } else {
            Outcome::Ok
        })
    }
}

/// Polls each member's own /patroni until it reports `pause`; returns those that did not.
async fn wait_pause(ops: &Ops<'_>, c: &Cluster, pause: bool, timeout: Duration) -> Vec<String> {
    let mut poll = Poll::new(timeout, Duration::from_millis(500));
    let members: Vec<(String, String)> = c
        .members
        .iter()
        .filter_map(|m| ops::api_of(m).ok().map(|a| (m.name.clone(), a)))
        .collect();
    let mut shown = usize::MAX;
    let mut lagging: Vec<String> = members.iter().map(|(n, _)| n.clone()).collect();
    while poll.next().await {
        let reads = members.iter().map(|(n, a)| async move {
            let seen = ops.source.member_status(a).await.map(|s| s.paused).ok();
            (n.clone(), seen == Some(pause))
        });
        lagging = futures::future::join_all(reads)
            .await
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| n)
            .collect();
        if lagging.len() != shown {
            ops.progress.update(
                "cluster",
                &format!(
                    "{}/{} members report {}",
                    members.len() - lagging.len(),
                    members.len(),
                    if pause { "paused" } else { "resumed" }
                ),
            );
            shown = lagging.len();
        }
        if lagging.is_empty() {
            break;
        }
    }
    lagging
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

#[derive(Debug, Serialize)]
struct RestartOutput<'a> {
    operation: &'static str,
    #[serde(flatten)]
    report: &'a RestartReport,
    requests: Vec<ops::SentRequest>,
}

fn print_steps(steps: &[Step]) {
    for s in steps {
        let gap = s
            .write_gap
            .as_ref()
            .map(|g| format!(" (no writable leader for {:.1} s)", g.longest_secs))
            .unwrap_or_default();
        println!(
            "{} {}: {} in {:.1} s: {}{gap}",
            s.action,
            s.member,
            serde_json::to_value(&s.result)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            s.secs,
            s.detail
        );
    }
}

impl RestartArgs {
    pub async fn run(self, color: ColorChoice) -> anyhow::Result<Outcome> {
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
        if selected.is_empty() {
            let why = if self.pending {
                "no selected member has a pending restart"
            } else {
                "no member matches"
            };
            if json {
                emit_json(
                    &serde_json::json!({"operation": "restart", "steps": [], "detail": why}),
                )?;
            } else {
                println!("restart: nothing to do: {why}");
            }
            return Ok(Outcome::Ok);
        }
        if scheduled.is_some() && c.paused {
            eprintln!("pgpatrol: refused: the cluster is paused: Patroni cannot schedule a restart in maintenance mode; nothing was sent");
            return Ok(Outcome::Problem);
        }
        // Never two members down: Patroni runs each schedule on its own, unchecked.
        if scheduled.is_some() {
            if let Some(why) = pgpatrol_core::ops::restart::schedule_refusal(c, &selected) {
                if json {
                    emit_json(&serde_json::json!({
                        "operation": "restart",
                        "result": "refused",
                        "detail": why,
                        "steps": [],
                    }))?;
                }
                eprintln!("pgpatrol: refused: {why}; nothing was sent");
                return Ok(Outcome::Problem);
            }
        }
        let leader = c.leader().map(|l| l.name.clone());
        let includes_leader = leader.as_ref().is_some_and(|l| selected.contains(l));
        let how = match (scheduled, self.rolling, self.leader_in_place) {
            (Some(at), _, _) => format!("at {at}"),
            (None, true, false) if includes_leader => {
                "rolling: replicas first, then a switchover and the former leader".into()
            }
            (None, true, _) => "rolling: replicas first, then the leader in place".into(),
            (None, false, _) if includes_leader => {
                "one at a time; the leader in place (writes stop while it restarts)".into()
            }
            (None, false, _) => "one at a time".into(),
        };
        if !json {
            println!("restart {} ({how})", selected.join(", "));
        }
        confirmed(
            &self.op,
            &format!("Restart PostgreSQL on {}?", selected.join(", ")),
            "restart",
        )?;
        let narrator = Narrator::new(json);
        let ops = o.ops("restart", &self.op, &narrator);
        let opts = RestartOptions {
            pending: self.pending,
            tolerance: self.tolerance.0,
            lag: LagKind::Replay,
            timeout: self.timeout,
        };
        let report = if let Some(at) = scheduled {
            let members: Vec<&pgpatrol_core::Member> =
                selected.iter().filter_map(|n| c.member(n)).collect();
            let steps = restart::schedule(&ops, &members, at, &opts).await;
            RestartReport {
                stopped: None,
                untouched: Vec::new(),
                total_secs: steps.iter().map(|s| s.secs).sum(),
                steps,
            }
        } else if self.rolling {
            let (settings, _) = settings(&o.source).await;
            restart::rolling(&ops, &selected, &opts, self.leader_in_place, &settings).await?
        } else {
            restart::sequential(&ops, &selected, &opts).await?
        };
        narrator.done();
        if json {
            emit_json(&RestartOutput {
                operation: "restart",
                report: &report,
                requests: ops.sent(),
            })?;
        } else {
            print_steps(&report.steps);
            if let Some(why) = &report.stopped {
                println!("{why}");
                if !report.untouched.is_empty() {
                    println!("not restarted: {}", report.untouched.join(", "));
                }
            }
            if !self.op.dry_run {
                print_cluster(&o.source, color).await;
            }
        }
        Ok(if report.ok() {
            Outcome::Ok
        } else {
            Outcome::Problem
        })
    }
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
    pub async fn run(self, color: ColorChoice) -> anyhow::Result<Outcome> {
        let o = open(&self.cluster, &self.op).await?;
        let c = &o.cluster;
        for m in &self.members {
            ops::member(c, m)?;
        }
        let json = self.op.format == OpFormat::Json;
        let narrator = Narrator::new(json);
        let ops = o.ops("flush", &self.op, &narrator);
        let mut steps = Vec::new();
        let mut nothing = None;
        match self.what {
            FlushWhat::Restart => {
                let targets: Vec<&pgpatrol_core::Member> = c
                    .members
                    .iter()
                    .filter(|m| self.members.is_empty() || self.members.contains(&m.name))
                    .filter(|m| m.scheduled_restart.is_some())
                    .collect();
                if targets.is_empty() {
                    nothing = Some("no restart is scheduled");
                }
                for m in targets {
                    steps.push(restart::cancel(&ops, m, "/restart", "cancel restart").await);
                }
            }
            FlushWhat::Switchover => {
                if c.scheduled_switchover.is_none() {
                    nothing = Some("no switchover is scheduled");
                } else {
                    // The leader first; any member can write the failover key.
                    let mut order: Vec<&pgpatrol_core::Member> = c.leaders().collect();
                    order.extend(c.replicas());
                    for m in order {
                        let s = restart::cancel(&ops, m, "/switchover", "cancel switchover").await;
                        let answered =
                            s.result != StepResult::Failed || s.detail.contains("answered HTTP");
                        steps.push(s);
                        if answered {
                            break;
                        }
                    }
                }
            }
        }
        narrator.done();
        let failed = steps.iter().any(|s| s.result == StepResult::Failed)
            && !steps.iter().any(|s| s.result == StepResult::Cancelled);
        if json {
            emit_json(&serde_json::json!({
                "operation": "flush",
                "what": format!("{:?}", self.what).to_lowercase(),
                "detail": nothing,
                "steps": steps,
                "requests": ops.sent(),
            }))?;
        } else if let Some(n) = nothing {
            println!("flush: nothing to do: {n}");
        } else {
            print_steps(&steps);
            if !self.op.dry_run {
                print_cluster(&o.source, color).await;
            }
        }
        Ok(if failed {
            Outcome::Problem
        } else {
            Outcome::Ok
        })
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

#[derive(Debug, Serialize)]
struct Pending {
    member: String,
    /// `{param: {old_value, new_value}}` (Patroni 3.3+; older Patroni only says that one is
    /// pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<serde_json::Value>,
}

fn pending_of(c: &Cluster) -> Vec<Pending> {
    c.members
        .iter()
        .filter(|m| m.pending_restart)
        .map(|m| Pending {
            member: m.name.clone(),
            reason: m.pending_restart_reason.clone(),
        })
        .collect()
}

fn print_pending(p: &[Pending]) {
    if p.is_empty() {
        println!("no member has a pending restart");
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
        println!("{} has a pending restart: {why}", p.member);
    }
}

impl ReloadArgs {
    pub async fn run(self) -> anyhow::Result<Outcome> {
        let o = open(&self.cluster, &self.op).await?;
        let c = &o.cluster;
        for m in &self.members {
            ops::member(c, m)?;
        }
        let json = self.op.format == OpFormat::Json;
        let narrator = Narrator::new(json);
        let ops = o.ops("reload", &self.op, &narrator);
        let mut results = Vec::new();
        let mut refused = false;
        for m in c.members.iter().filter(|m| {
            (self.members.is_empty() || self.members.contains(&m.name)) && self.role.admits(m)
        }) {
            let base = ops::api_of(m)?;
            let r = ops
                .send(
                    &m.name,
                    crate::source::rest::Request::post_empty(&base, "/reload"),
                )
                .await;
            let (result, detail) = match r {
                Ok(None) => ("dry_run", "dry run: nothing was sent".to_string()),
                Ok(Some(r)) if r.status.is_success() => ("accepted", r.body.trim().to_string()),
                Ok(Some(r)) => {
                    refused = true;
                    (
                        "refused",
                        format!(
                            "HTTP {}: {}",
                            r.status.as_u16(),
                            crate::text::snippet(r.body.trim())
                        ),
                    )
                }
                Err(e) => return Err(e.into()),
            };
            results.push(serde_json::json!({"member": m.name, "result": result, "detail": detail}));
        }
        let mut pending = Vec::new();
        if !self.op.dry_run {
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
        if json {
            emit_json(
                &serde_json::json!({"operation": "reload", "members": results, "pending_restart": pending, "requests": ops.sent()}),
            )?;
        } else {
            for r in &results {
                println!(
                    "reload {}: {}: {}",
                    r["member"].as_str().unwrap_or_default(),
                    r["result"].as_str().unwrap_or_default(),
                    r["detail"].as_str().unwrap_or_default()
                );
            }
            if !self.op.dry_run {
                print_pending(&pending);
            }
        }
        Ok(if refused {
            Outcome::Problem
        } else {
            Outcome::Ok
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
/// silently.
///
/// Exit codes: 0 applied and read back (or nothing to change); 1 the read-back differs;
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
    pub async fn run(self) -> anyhow::Result<Outcome> {
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
        let Some(patch) = cfg::patch_between(&current, &new) else {
            if json {
                emit_json(&serde_json::json!({"operation": "edit-config", "result": "unchanged"}))?;
            } else {
                println!("edit-config: not changed: the configuration already holds that");
            }
            return Ok(Outcome::Ok);
        };
        let params = cfg::changed_parameters(&current, &patch);
        let restart_params: Vec<String> = params
            .iter()
            .filter(|(k, _, _)| pgpatrol_core::pgparams::needs_restart(k))
            .map(|(k, _, _)| k.clone())
            .collect();
        if !json {
            print!("{}", cfg::diff(&current, &new));
            if !restart_params.is_empty() {
                println!(
                    "needs a PostgreSQL restart to take effect: {}",
                    restart_params.join(", ")
                );
            }
        }
        confirmed(&self.op, "Apply these changes?", "change the configuration")?;
        let narrator = Narrator::new(json);
        let ops = o.ops("edit-config", &self.op, &narrator);
        let (target, sent) = ops.patch_config(&o.cluster, patch.clone()).await?;
        let mut result = "applied";
        let mut missing = Vec::new();
        let mut changed_by_others = Vec::new();
        let mut pending = Vec::new();
        match sent {
            None => result = "dry_run",
            Some(r) if r.status == reqwest::StatusCode::CONFLICT => anyhow::bail!(
                "the configuration changed while it was being edited (HTTP 409): run edit-config again"
            ),
            Some(r) if r.status != reqwest::StatusCode::OK => anyhow::bail!(
                "PATCH /config on {} answered HTTP {}: {}",
                target,
                r.status.as_u16(),
                crate::text::snippet(r.body.trim())
            ),
            Some(_) => {
                // A member serves /config from its view of the DCS, which it refreshes once
                // per loop (Patroni 3.x): read back until it holds the change, for up to two
                // loops.
                let loop_wait = current
                    .get("loop_wait")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(10);
                let mut poll = Poll::new(
                    Duration::from_secs(2 * loop_wait + 2),
                    Duration::from_millis(300),
                );
                while poll.next().await {
                    let stored = o.source.config().await?;
                    missing = cfg::not_applied(&patch, &stored);
                    if missing.is_empty() {
                        break;
                    }
                }
                if !missing.is_empty() {
                    result = "not_applied";
                } else {
                    // The whole document, not only this edit's keys: a change someone else
                    // made between the read and the PATCH is reported, never silently kept.
                    let stored = o.source.config().await?;
                    changed_by_others = cfg::differences(&new, &stored);
                    if !changed_by_others.is_empty() {
                        result = "changed_concurrently";
                    }
                }
                if result == "applied" && !restart_params.is_empty() {
                    // Members notice within a loop and report the pending restart.
                    let mut poll = Poll::new(self.timeout, Duration::from_millis(500));
                    while poll.next().await {
                        let c = o.source.snapshot(Detail::Lag).await?.cluster;
                        pending = pending_of(&c);
                        if pending.len() == c.members.len() {
                            break;
                        }
                        narrator.update("cluster", &format!("{}/{} members report the pending restart", pending.len(), c.members.len()));
                    }
                }
            }
        }
        narrator.done();
        if json {
            emit_json(&serde_json::json!({
                "operation": "edit-config",
                "result": result,
                "patch": crate::ops::audit::redact(&patch),
                "not_applied": missing,
                "changed_concurrently": changed_by_others,
                "needs_restart": restart_params,
                "pending_restart": pending,
                "requests": ops.sent(),
            }))?;
        } else {
            match result {
                "dry_run" => println!("dry run: nothing was sent"),
                "not_applied" => println!(
                    "the DCS does not hold what was asked for: {}",
                    missing.join(", ")
                ),
                "changed_concurrently" => println!(
                    "applied, but the configuration is not what this edit intended: {} changed between the read and the PATCH (someone else's edit); check it with pgpatrol show-config",
                    changed_by_others.join(", ")
                ),
                _ => {
                    println!("applied; the DCS holds the change (read back)");
                    if !restart_params.is_empty() {
                        print_pending(&pending);
                        if !pending.is_empty() {
                            println!("to apply it: pgpatrol restart --pending --rolling");
                        }
                    }
                }
            }
        }
        let _ = std::io::stdout().flush();
        Ok(
            if result == "not_applied" || result == "changed_concurrently" {
                Outcome::Problem
            } else {
                Outcome::Ok
            },
        )
    }
}
