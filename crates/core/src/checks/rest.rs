//! The checks on what Patroni's REST API says: split brain, timelines, streaming, lag in
//! bytes, transitions, pause, pending restarts, schedules, failovers, candidates,
//! synchronous standbys, versions, failsafe.

use super::*;

/// What the REST API showed, gathered by the edge.
#[derive(Debug, Clone, Default)]
pub struct RestEvidence {
    /// `/cluster` readings over the observe window, oldest first (empty when `/cluster`
    /// never answered).
    pub samples: Vec<Cluster>,
    /// Why `/cluster` did not answer, when it did not.
    pub cluster_error: Option<String>,
    /// Each member's own `/patroni` (by member name, or by URL when `/cluster` is down).
    pub own: BTreeMap<String, Result<MemberStatus, String>>,
    /// How long the observe window was.
    pub observed: Duration,
    /// Failovers and switchovers in the last 24 hours (from `/history`), if it was read.
    pub failovers_24h: Option<usize>,
    /// `maximum_lag_on_failover` of the dynamic configuration (Patroni's default: 1 MB).
    pub maximum_lag_on_failover: Option<u64>,
    /// `synchronous_mode` and `synchronous_mode_strict` of the dynamic configuration.
    pub synchronous_mode: bool,
    pub synchronous_mode_strict: bool,
    /// The permanent replication slots Patroni keeps (`slots` of the dynamic configuration).
    pub permanent_slots: Vec<String>,
}

/// Patroni's default `maximum_lag_on_failover`.
pub const DEFAULT_MAXIMUM_LAG_ON_FAILOVER: u64 = 1024 * 1024;

/// The one-line diagnosis when `/cluster` fails while members answer `/patroni`.
pub fn dcs_unreachable_line(own: &BTreeMap<String, Result<MemberStatus, String>>) -> String {
    let seen: Vec<String> = own
        .iter()
        .filter_map(|(name, s)| {
            s.as_ref()
                .ok()
                .map(|s| format!("{name} {}/{}", s.role, s.state))
        })
        .collect();
    format!(
        "the DCS is unreachable: members answer /patroni but not /cluster, which Patroni reads from the DCS ({}); check etcd (or the Kubernetes API) and the members' logs",
        seen.join(", ")
    )
}

pub(super) fn names(v: &[String]) -> String {
    v.join(", ")
}

/// The checks that need only the REST API.
pub fn rest_checks(e: &RestEvidence, t: &Thresholds) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(c) = e.samples.last() else {
        // `/cluster` is down: say what the members say of themselves, and nothing that
        // needs the DCS view.
        let answering = e.own.values().filter(|s| s.is_ok()).count();
        let why = e.cluster_error.clone().unwrap_or_default();
        let check = if answering > 0 {
            Check::new("dcs", Status::Crit, dcs_unreachable_line(&e.own))
        } else {
            Check::new("dcs", Status::Crit, format!("no member answers: {why}"))
        };
        out.push(check.fix(
            "runbook \"DCS unreachable\": check that etcd (or the Kubernetes API) is up and reachable from every member; Patroni demotes the leader without it unless failsafe_mode is on",
        ));
        out.push(split_brain(e, None));
        return out;
    };
    out.push(Check::new("dcs", Status::Ok, "the DCS answers (/cluster)"));
    out.push(split_brain(e, Some(c)));
    out.push(timeline(c));
    out.push(streaming(e, c));
    out.push(lag_bytes(c, t));
    out.push(lag_unknown(c));
    out.push(transitional(e));
    out.push(paused(c));
    out.push(pending_restart(c));
    out.push(scheduled(c));
    out.push(failovers(e, t));
    out.push(failover_candidate(e, c));
    out.push(sync_standby(e, c));
    out.push(version_skew(e));
    out.push(failsafe(c));
    out
}

/// Exactly one leader, and the members' own `/patroni` agree: two members saying primary is
/// split brain whatever `/cluster` says.
pub(super) fn split_brain(e: &RestEvidence, c: Option<&Cluster>) -> Check {
    let own_leaders: Vec<String> = e
        .own
        .iter()
        .filter(|(_, s)| {
            s.as_ref()
                .is_ok_and(|s| s.role.is_leader() && s.state == State::Running)
        })
        .map(|(n, _)| n.clone())
        .collect();
    let dcs_leaders: Vec<String> = c
        .map(|c| c.leaders().map(|m| m.name.clone()).collect())
        .unwrap_or_default();
    if own_leaders.len() > 1 {
        return Check::new(
            "leader",
            Status::Crit,
            format!(
                "split brain: {} each say they are a running primary (their own /patroni); /cluster shows {}",
                names(&own_leaders),
                if dcs_leaders.is_empty() { "no leader".to_string() } else { names(&dcs_leaders) }
            ),
        )
        .fix("runbook \"split brain\": stop writes to all but the DCS leader at once (fence the others), then reinitialize them: pgpatrol reinit MEMBER");
    }
    let Some(_) = c else {
        return match own_leaders.first() {
            Some(l) => Check::new(
                "leader",
                Status::Warn,
                format!("{l} says it is the running primary (its own /patroni); the DCS cannot confirm it"),
            )
            .fix("restore the DCS: without it Patroni demotes the leader unless failsafe_mode is on"),
            None => Check::new(
                "leader",
                Status::Crit,
                "no member says it is a running primary",
            )
            .fix("runbook \"cannot connect to the primary\": check the members' logs; pgpatrol list"),
        };
    };
    match dcs_leaders.len() {
        0 => Check::new("leader", Status::Crit, "no leader in /cluster")
            .fix("runbook \"cannot connect to the primary\": check why no member can take the leader lock (patroni logs); failover to a healthy replica if needed"),
        1 => {
            let l = dcs_leaders.first().map(String::as_str).unwrap_or_default();
            let agrees = own_leaders.is_empty() || own_leaders.iter().any(|o| o == l);
            if agrees {
                Check::new("leader", Status::Ok, format!("one leader: {l}"))
            } else {
                Check::new(
                    "leader",
                    Status::Crit,
                    format!(
                        "/cluster says {l} leads, but {} says it is the running primary",
                        names(&own_leaders)
                    ),
                )
                .fix("runbook \"split brain\": fence the member that is not the DCS leader and reinitialize it")
            }
        }
        _ => Check::new(
            "leader",
            Status::Crit,
            format!("more than one leader in /cluster: {}", names(&dcs_leaders)),
        )
        .fix("runbook \"split brain\""),
    }
}

pub(super) fn running(m: &crate::model::Member) -> bool {
    matches!(
        m.state,
        State::Running | State::Streaming | State::InArchiveRecovery
    )
}

pub(super) fn timeline(c: &Cluster) -> Check {
    let mut by_tl: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for m in c.members.iter().filter(|m| running(m)) {
        if let Some(tl) = m.timeline {
            by_tl.entry(tl).or_default().push(m.name.clone());
        }
    }
    let leader_tl = c.leader().and_then(|l| l.timeline);
    match by_tl.len() {
        0 => Check::new(
            "timeline",
            Status::Unknown,
            "no running member reports a timeline",
        ),
        1 => {
            let tl = by_tl.keys().next().copied().unwrap_or_default();
            Check::new(
                "timeline",
                Status::Ok,
                format!("every running member on timeline {tl}"),
            )
        }
        _ => {
            let behind: Vec<String> = by_tl
                .iter()
                .filter(|(tl, _)| Some(**tl) != leader_tl)
                .flat_map(|(tl, ms)| ms.iter().map(move |m| format!("{m} on {tl}")))
                .collect();
            Check::new(
                "timeline",
                Status::Warn,
                format!(
                    "running members on different timelines (leader on {}): {}",
                    leader_tl.map_or("?".to_string(), |t| t.to_string()),
                    names(&behind)
                ),
            )
            .fix("a member on an old timeline did not follow the last failover: pgpatrol reinit MEMBER (or let Patroni rewind it)")
        }
    }
}

/// Every replica replicating: by `/cluster`, and answering for itself. A replica whose own
/// `GET /patroni` failed is not counted as replicating whatever `/cluster` says: `/cluster`
/// keeps a hung or cut-off member's key, and its last state, for up to a ttl.
pub(super) fn streaming(e: &RestEvidence, c: &Cluster) -> Check {
    let total = c.replicas().count();
    let not: Vec<String> = c
        .replicas()
        .filter_map(|m| match e.own.get(&m.name) {
            Some(Err(why)) => Some(format!(
                "{} (its Patroni does not answer GET /patroni: {why})",
                m.name
            )),
            _ if !m.state.is_healthy_replica() => Some(format!("{} {}", m.name, m.state)),
            _ => None,
        })
        .collect();
    if not.is_empty() {
        return Check::new(
            "replication",
            Status::Ok,
            format!("{total} replica(s), all replicating"),
        );
    }
    let status = if not.len() == total {
        Status::Crit
    } else {
        Status::Warn
    };
    Check::new(
        "replication",
        status,
        format!("{} of {total} replica(s) not replicating: {}", not.len(), names(&not)),
    )
    .fix("pgpatrol list; check that member's Patroni log; if it cannot start again: pgpatrol reinit MEMBER")
}

pub(super) fn lag_bytes(c: &Cluster, t: &Thresholds) -> Check {
    let mut worst: Option<(u64, &str)> = None;
    let mut over = Vec::new();
    for m in c.replicas() {
        let lag = [LagKind::Receive, LagKind::Replay]
            .into_iter()
            .filter_map(|k| m.lag(k).and_then(Lag::bytes))
            .max();
        if let Some(b) = lag {
            if worst.is_none_or(|(w, _)| b > w) {
                worst = Some((b, &m.name));
            }
            if t.lag_bytes.judge(b as f64) != Status::Ok {
                over.push(format!("{} {}", m.name, human(b)));
            }
        }
    }
    let Some((b, name)) = worst else {
        return Check::new("lag_bytes", Status::Ok, "no replica with a known lag");
    };
    let status = t.lag_bytes.judge(b as f64);
    let evidence = if status == Status::Ok {
        format!(
            "worst replica lag {} ({name}), within {}",
            human(b),
            human(t.lag_bytes.warn as u64)
        )
    } else {
        format!(
            "replica lag above {} / {}: {}",
            human(t.lag_bytes.warn as u64),
            human(t.lag_bytes.crit as u64),
            names(&over)
        )
    };
    Check::new("lag_bytes", status, evidence).value(b as f64).fix(
        "runbook \"replica not catching up\": check the leader's pg_stat_replication; if it cannot catch up: pgpatrol heal --dry-run, then pgpatrol heal",
    )
}

pub(super) fn lag_unknown(c: &Cluster) -> Check {
    let unknown: Vec<String> = c
        .replicas()
        .filter(|m| m.lag(LagKind::Replay) == Some(Lag::Unknown))
        .map(|m| format!("{} ({})", m.name, m.state))
        .collect();
    if unknown.is_empty() {
        Check::new("lag_unknown", Status::Ok, "every replica's lag is known")
    } else {
        Check::new(
            "lag_unknown",
            Status::Unknown,
            format!("lag unknown (Patroni reports none): {}", names(&unknown)),
        )
        .fix("a member that is not running or is busy has no lag: pgpatrol list; check its Patroni log")
    }
}

pub(super) fn transitional(e: &RestEvidence) -> Check {
    // Stuck: in a transitional state in every sample of the window.
    let Some(last) = e.samples.last() else {
        return Check::new("transitional", Status::Unknown, "no /cluster reading");
    };
    let stuck: Vec<String> = last
        .members
        .iter()
        .filter(|m| m.state.is_in_transition())
        .filter(|m| {
            e.samples.iter().all(|s| {
                s.member(&m.name)
                    .is_some_and(|x| x.state.is_in_transition())
            })
        })
        .map(|m| format!("{} {}", m.name, m.state))
        .collect();
    let window = format!(
        "{} samples over {:.0} s",
        e.samples.len(),
        e.observed.as_secs_f64()
    );
    if stuck.is_empty() {
        Check::new(
            "transitional",
            Status::Ok,
            format!(
                "no member stuck starting, stopping, restarting or creating a replica ({window})"
            ),
        )
    } else {
        Check::new(
            "transitional",
            Status::Warn,
            format!("in a transitional state in every one of {window}: {}", names(&stuck)),
        )
        .fix("check that member's Patroni and PostgreSQL logs (pgpatrol list shows it); a replica that cannot start may need pgpatrol reinit MEMBER")
    }
}

pub(super) fn paused(c: &Cluster) -> Check {
    if c.paused {
        Check::new(
            "paused",
            Status::Warn,
            "the cluster is paused (maintenance mode): Patroni does not fail over",
        )
        .fix("when maintenance is over: patronictl resume --wait")
    } else {
        Check::new("paused", Status::Ok, "not paused")
    }
}

pub(super) fn pending_restart(c: &Cluster) -> Check {
    let pending: Vec<String> = c
        .members
        .iter()
        .filter(|m| m.pending_restart)
        .map(|m| m.name.clone())
        .collect();
    if pending.is_empty() {
        Check::new("pending_restart", Status::Ok, "no member needs a restart")
    } else {
        Check::new(
            "pending_restart",
            Status::Warn,
            format!(
                "a changed parameter waits for a restart on: {}",
                names(&pending)
            ),
        )
        .fix("a rolling restart, replicas first: patronictl restart CLUSTER MEMBER --pending, one member at a time")
    }
}

pub(super) fn scheduled(c: &Cluster) -> Check {
    let mut what = Vec::new();
    if let Some(s) = &c.scheduled_switchover {
        what.push(format!(
            "switchover at {}{}",
            s.at,
            s.to.as_deref()
                .map(|t| format!(" to {t}"))
                .unwrap_or_default()
        ));
    }
    for m in c.members.iter().filter(|m| m.scheduled_restart.is_some()) {
        what.push(format!("restart of {}", m.name));
    }
    if what.is_empty() {
        Check::new("scheduled", Status::Ok, "nothing scheduled")
    } else {
        Check::new(
            "scheduled",
            Status::Warn,
            format!("scheduled: {}", what.join(", ")),
        )
        .fix("expected? else cancel it: patronictl flush CLUSTER restart|switchover")
    }
}

pub(super) fn failovers(e: &RestEvidence, t: &Thresholds) -> Check {
    let Some(n) = e.failovers_24h else {
        return Check::new(
            "failovers_24h",
            Status::Unknown,
            "/history could not be read",
        );
    };
    let status = t.failovers_24h.judge(n as f64);
    Check::new(
        "failovers_24h",
        status,
        format!(
            "{n} failover(s)/switchover(s) in the last 24 h (warn above {}, crit above {})",
            t.failovers_24h.warn, t.failovers_24h.crit
        ),
    )
    .fix("pgpatrol history: find why the leader keeps changing (its logs, the DCS, resources)")
}

pub(super) fn failover_candidate(e: &RestEvidence, c: &Cluster) -> Check {
    let max_lag = e
        .maximum_lag_on_failover
        .unwrap_or(DEFAULT_MAXIMUM_LAG_ON_FAILOVER);
    // The one takeover rule (`candidates::candidates`), for a failover: the leader gone.
    let settings = crate::candidates::TakeoverSettings {
        maximum_lag_on_failover: max_lag,
        synchronous_mode: e.synchronous_mode,
        quorum: false,
    };
    let mut good = Vec::new();
    let mut why = Vec::new();
    for cand in crate::candidates::candidates(c, &settings, crate::candidates::Takeover::Failover) {
        // Patroni asks a candidate for itself before promoting it; one that does not answer
        // is no candidate (switchover refuses it too).
        let silent = match e.own.get(&cand.name) {
            Some(Err(err)) => Some(format!("its Patroni does not answer GET /patroni: {err}")),
            _ => None,
        };
        match silent {
            None if cand.eligible => good.push(cand.name),
            silent => {
                let reasons: Vec<String> = cand.reasons.iter().cloned().chain(silent).collect();
                why.push(format!("{}: {}", cand.name, reasons.join(", ")));
            }
        }
    }
    if !good.is_empty() {
        return Check::new(
            "failover_candidate",
            Status::Ok,
            format!("failover candidate(s): {}", names(&good)),
        );
    }
    let evidence = if why.is_empty() {
        "no replica at all: a failure of the leader is an outage".to_string()
    } else {
        format!("no replica could take over: {}", why.join("; "))
    };
    Check::new("failover_candidate", Status::Crit, evidence)
        .fix("heal the lagging replicas (pgpatrol heal), remove nofailover where it is not meant, or add a replica")
}

pub(super) fn sync_standby(e: &RestEvidence, c: &Cluster) -> Check {
    if !e.synchronous_mode {
        return Check::new("sync_standby", Status::Ok, "synchronous_mode is off");
    }
    let sync: Vec<String> = c
        .members
        .iter()
        .filter(|m| matches!(m.role, Role::SyncStandby | Role::QuorumStandby))
        .map(|m| m.name.clone())
        .collect();
    if !sync.is_empty() {
        return Check::new(
            "sync_standby",
            Status::Ok,
            format!("synchronous standby: {}", names(&sync)),
        );
    }
    let (status, effect) = if e.synchronous_mode_strict {
        (
            Status::Crit,
            "synchronous_mode_strict: commits on the leader wait",
        )
    } else {
        (
            Status::Warn,
            "commits are not replicated synchronously until one is back",
        )
    };
    Check::new(
        "sync_standby",
        status,
        format!("synchronous_mode is on but no member is a synchronous standby ({effect})"),
    )
    .fix("bring a healthy replica back (pgpatrol list; pgpatrol heal)")
}

pub(super) fn version_skew(e: &RestEvidence) -> Check {
    let mut by: BTreeMap<PatroniVersion, Vec<String>> = BTreeMap::new();
    for (name, s) in &e.own {
        if let Ok(Some(v)) = s.as_ref().map(|s| s.version) {
            by.entry(v).or_default().push(name.clone());
        }
    }
    match by.len() {
        0 => Check::new(
            "version_skew",
            Status::Unknown,
            "no member reported its Patroni version",
        ),
        1 => {
            let v = by.keys().next().map(|v| v.to_string()).unwrap_or_default();
            Check::new(
                "version_skew",
                Status::Ok,
                format!("every member runs Patroni {v}"),
            )
        }
        _ => {
            let list: Vec<String> = by
                .iter()
                .map(|(v, ms)| format!("{v} on {}", names(ms)))
                .collect();
            Check::new(
                "version_skew",
                Status::Warn,
                format!("members run different Patroni versions: {}", list.join("; ")),
            )
            .fix("finish the upgrade: one version across the cluster (an upgrade in progress is expected to show this)")
        }
    }
}

pub(super) fn failsafe(c: &Cluster) -> Check {
    if c.failsafe_active {
        Check::new(
            "failsafe",
            Status::Warn,
            "failsafe mode is active: the DCS is unreachable and the leader runs on the members' consent",
        )
        .fix("restore the DCS (etcd or the Kubernetes API)")
    } else {
        Check::new("failsafe", Status::Ok, "failsafe mode is not active")
    }
}
