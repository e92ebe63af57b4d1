//! The heal decision: which lagging replicas to reinitialize now, and for every member left
//! alone, why. Every guardrail from DESIGN.md ("Guardrails") that can be decided from one
//! snapshot lives here; re-checking before acting and leases belong to the executor.
//!
//! Pure: the snapshot, the policy, the action history and `now` are the only inputs, so the
//! same inputs always give the same plan (`--dry-run` shows exactly what would run).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::plan::{Action, Blocker, MemberTrend, Plan, Skip, SkipReason};
use super::policy::{DecideBy, Policy};
use super::trend::{human_rate, rebuild_estimate, trend, Evidence, RebuildEstimate};
use crate::history::{cooldown_left, ActionRecord};
use crate::model::{Cluster, Lag, Member};
use crate::units::human;

/// A non-leader member whose lag is at or above the tolerance.
struct Candidate<'a> {
    /// Index in `cluster.members`, so its skip lands in member order.
    index: usize,
    member: &'a Member,
    bytes: u64,
}

/// Decides what heal does on `cluster`, without trend evidence (in `by: trend` mode every
/// candidate is then "not enough samples").
pub fn decide(
    cluster: &Cluster,
    policy: &Policy,
    history: &[ActionRecord],
    now: SystemTime,
) -> Plan {
    decide_with(cluster, policy, history, &Evidence::default(), now)
}

/// As [`decide`], with lag samples, WAL-gone findings and the data size for trend mode.
pub fn decide_with(
    cluster: &Cluster,
    policy: &Policy,
    history: &[ActionRecord],
    evidence: &Evidence,
    now: SystemTime,
) -> Plan {
    let blockers = blockers(cluster);

    // An unfinished record means the executor asked Patroni to reinit that member and
    // /cluster may not show it yet, so it is in progress whatever the snapshot says, until
    // it is stale (its healer died mid-action and never wrote the end).
    let unfinished: BTreeSet<&str> = history
        .iter()
        .filter(|r| r.in_flight(policy.stale_after, now))
        .map(|r| r.member.as_str())
        .collect();

    // Reinits in progress, by name. Seeded with every unfinished record, even one for a
    // member this snapshot does not show: over-counting only delays an action, while
    // under-counting could run more reinits at once than the operator allowed.
    let mut in_progress: BTreeSet<&str> = unfinished.clone();

    // One slot per member, filled as decided, so skips come out in member order.
    let mut skips: Vec<Option<SkipReason>> = vec![None; cluster.members.len()];
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    // Replicas that are replicating fine and untouched: what min_healthy and the
    // synchronous-standby rule protect.
    let mut healthy: Vec<&Member> = Vec::new();

    for (index, member) in cluster.members.iter().enumerate() {
        if member.role.is_leader() {
            skips[index] = Some(SkipReason::Leader);
            continue;
        }
        // An operator's mark wins over any lag.
        if member.noheal() {
            skips[index] = Some(SkipReason::NohealTag);
            continue;
        }
        if member.state.is_in_transition() || unfinished.contains(member.name.as_str()) {
            in_progress.insert(member.name.as_str());
            // Never pile a second reinit (or a `force`) on top of one Patroni is running.
            skips[index] = Some(SkipReason::InProgress {
                state: member.state.to_string(),
            });
            continue;
        }
        // `lag` is `None` only for leaders, handled above; a missing figure is Unknown.
        match member.lag(policy.lag).unwrap_or(Lag::Unknown) {
            Lag::Unknown => {
                // Never act on data we do not understand.
                skips[index] = Some(SkipReason::LagUnknown {
                    state: member.state.to_string(),
                });
            }
            // Below the tolerance the member is not lagging, whatever its state: an
            // unhealthy state with a small lag is skipped as WithinTolerance (there is
            // nothing a reinit would fix about its lag) but does not count as healthy.
            Lag::Bytes(bytes) if bytes < policy.tolerance => {
                skips[index] = Some(SkipReason::WithinTolerance { lag: bytes });
                if member.state.is_healthy_replica() {
                    healthy.push(member);
                }
            }
            // At or above the tolerance it is a candidate even when its state is not a
            // healthy replica state (e.g. "running" but not streaming): the lag is known and
            // too large, which is exactly what a reinit is for — unless it is behind on
            // purpose, or nobody could tell.
            Lag::Bytes(bytes) => {
                match kept_reason(member).or_else(|| archive_reason(member, policy)) {
                    Some(reason) => skips[index] = Some(reason),
                    None => candidates.push(Candidate {
                        index,
                        member,
                        bytes,
                    }),
                }
            }
        }
    }

    // Worst first; ties by name so the plan does not depend on member order.
    candidates.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| a.member.name.cmp(&b.member.name))
    });

    // Trend mode judges each candidate first: it can only turn an action into a skip, or
    // keep it (the guardrails below still apply to whatever it keeps).
    let mut trends = Vec::new();
    let mut verdicts: Vec<Result<String, SkipReason>> = Vec::with_capacity(candidates.len());
    for c in &candidates {
        verdicts.push(match policy.by {
            DecideBy::Threshold => Ok(format!(
                "{} lag {} ≥ tolerance {}",
                policy.lag.as_str(),
                human(c.bytes),
                human(policy.tolerance)
            )),
            DecideBy::Trend => {
                let (verdict, seen) = by_trend(c, policy, history, evidence, now);
                trends.push(seen);
                verdict
            }
        });
    }

    let mut actions = Vec::new();
    // With a blocker nothing is done and candidates get no skip of their own: the blocker
    // is the reason, and member guardrails on a cluster in that state would mislead.
    if blockers.is_empty() {
        for (c, verdict) in candidates.into_iter().zip(verdicts) {
            let why = match verdict {
                Ok(why) => format!("{why}{}", delay_note(c.member)),
                Err(skip) => {
                    skips[c.index] = Some(skip);
                    continue;
                }
            };
            match guardrail(
                c.member,
                policy,
                history,
                now,
                &healthy,
                in_progress.len() + actions.len(),
            ) {
                Some(reason) => skips[c.index] = Some(reason),
                None => actions.push(Action {
                    member: c.member.name.clone(),
                    lag: Lag::Bytes(c.bytes),
                    reason: why,
                }),
            }
        }
    }

    let skips = cluster
        .members
        .iter()
        .zip(skips)
        .filter_map(|(m, reason)| {
            reason.map(|reason| Skip {
                member: m.name.clone(),
                reason,
            })
        })
        .collect();

    Plan {
        blockers,
        actions,
        skips,
        trends,
    }
}

/// Trend mode's verdict on a candidate: rebuild (why) or wait (the skip), and what it saw.
fn by_trend(
    c: &Candidate<'_>,
    policy: &Policy,
    history: &[ActionRecord],
    evidence: &Evidence,
    now: SystemTime,
) -> (Result<String, SkipReason>, MemberTrend) {
    let t = &policy.trend;
    let name = c.member.name.as_str();
    let reading = evidence
        .samples
        .get(name)
        .map(|s| trend(s, now, t.window, t.min_samples))
        .unwrap_or(Err(0));
    let rebuild = rebuild_estimate(history, evidence.data_bytes, t.throughput);
    let wal_gone = evidence.wal_gone.get(name).cloned();
    let seen = MemberTrend {
        member: name.to_owned(),
        trend: reading.ok(),
        samples: match reading {
            Ok(tr) => tr.samples,
            Err(have) => have,
        },
        rebuild,
        wal_gone: wal_gone.clone(),
    };
    let lag = human(c.bytes);
    let verdict = if let Some(why) = wal_gone {
        Ok(format!(
            "its WAL is gone ({why}): it can never catch up; rebuilt at once"
        ))
    } else if c.bytes >= t.ceiling {
        Ok(format!(
            "{} lag {lag} ≥ the hard ceiling {}: rebuilt whatever its trend",
            policy.lag.as_str(),
            human(t.ceiling)
        ))
    } else {
        match reading {
            Err(have) => Err(SkipReason::NotEnoughSamples {
                have,
                need: t.min_samples.max(2),
            }),
            Ok(tr) if !tr.shrinking() => Ok(format!(
                "lag {lag}, {} over {} samples in {} s: it cannot catch up",
                if tr.rate == 0 {
                    "not shrinking".to_string()
                } else {
                    format!("growing {}", human_rate(tr.rate.unsigned_abs()))
                },
                tr.samples,
                tr.span_ms.div_ceil(1000)
            )),
            Ok(tr) => {
                let rate = tr.rate.unsigned_abs();
                let eta_secs = tr.eta_secs.unwrap_or(u64::MAX);
                match rebuild.as_ref().map(RebuildEstimate::secs) {
                    None => Err(SkipReason::NoRebuildEstimate {
                        lag: c.bytes,
                        rate,
                        eta_secs,
                    }),
                    Some(rebuild_secs) if (eta_secs as f64) > t.factor * rebuild_secs as f64 => {
                        Ok(format!(
                            "lag {lag}, shrinking {}, caught up in ~{eta_secs} s; a rebuild takes ~{rebuild_secs} s: rebuilding",
                            human_rate(rate)
                        ))
                    }
                    Some(rebuild_secs) => Err(SkipReason::CatchingUp {
                        lag: c.bytes,
                        rate,
                        eta_secs,
                        rebuild_secs,
                    }),
                }
            }
        }
    };
    (verdict, seen)
}

/// Cluster-level refusals, all that apply, in a fixed order.
fn blockers(cluster: &Cluster) -> Vec<Blocker> {
    let mut blockers = Vec::new();
    // Patroni itself takes no automatic action in maintenance mode; neither do we.
    if cluster.paused {
        blockers.push(Blocker::Paused);
    }
    // Without exactly one leader there is no trustworthy source to rebuild a replica from.
    let leaders: Vec<String> = cluster.leaders().map(|m| m.name.clone()).collect();
    match leaders.len() {
        0 => blockers.push(Blocker::NoLeader),
        1 => {}
        _ => blockers.push(Blocker::MultipleLeaders { leaders }),
    }
    // No leader lock or no DCS: a failover may be under way; reinits would only add risk.
    if cluster.unlocked {
        blockers.push(Blocker::Unlocked);
    }
    if cluster.failsafe_active {
        blockers.push(Blocker::Failsafe);
    }
    blockers
}

/// The first member-level guardrail that stops acting on `member`, if any. Order: cooldown,
/// only synchronous standby, concurrency, min healthy.
fn guardrail(
    member: &Member,
    policy: &Policy,
    history: &[ActionRecord],
    now: SystemTime,
    healthy: &[&Member],
    busy: usize,
) -> Option<SkipReason> {
    // Cooldown runs from the latest action on the member: a reinit that did not fix the lag
    // should not be retried in a loop.
    let latest = history
        .iter()
        .filter(|r| r.member == member.name)
        .max_by_key(|r| r.started);
    if let Some(left) = latest.and_then(|r| cooldown_left(r.started, policy.cooldown, now)) {
        return Some(SkipReason::Cooldown {
            remaining_secs: ceil_secs(left),
        });
    }
    // Taking the only synchronous/quorum standby can block commits on the leader.
    if member.role.is_synchronous()
        && !healthy
            .iter()
            .any(|h| h.name != member.name && h.role.is_synchronous())
    {
        return Some(SkipReason::OnlySynchronousStandby);
    }
    // `busy` counts reinits in progress plus the ones this plan already chose.
    if busy >= policy.max_concurrent {
        return Some(SkipReason::ConcurrencyLimit {
            limit: policy.max_concurrent,
            in_progress: busy,
        });
    }
    // Candidates are never counted healthy, so acting on one leaves `healthy` unchanged;
    // checked anyway so that a cluster already short of healthy replicas is not made busier.
    if healthy.len() < policy.min_healthy {
        return Some(SkipReason::MinHealthy {
            min_healthy: policy.min_healthy,
            healthy: healthy.len(),
        });
    }
    None
}

/// Why a lagging replica is left alone because it is (or may be) behind on purpose.
fn kept_reason(member: &Member) -> Option<SkipReason> {
    let Some(k) = &member.kept else {
        return Some(SkipReason::KeptUnknown {
            why: "its replay pause and apply delay were not read".into(),
        });
    };
    if let Some(why) = &k.unreadable {
        return Some(SkipReason::KeptUnknown { why: why.clone() });
    }
    if k.replay_paused {
        return Some(SkipReason::ReplayPaused);
    }
    k.apply_delay
        .as_ref()
        .map(|d| SkipReason::ApplyDelay { delay: d.clone() })
}

/// An archive-only (`nostream`) replica is judged against the archive, not the leader: it is
/// a candidate only when it is at least the tolerance behind the newest archived WAL, and
/// never when that could not be read.
fn archive_reason(member: &Member, policy: &Policy) -> Option<SkipReason> {
    if !member.nostream() {
        return None;
    }
    let k = member.kept.as_ref()?;
    match (k.behind_archive, &k.archive_unread) {
        (Some(b), _) if b < policy.tolerance => Some(SkipReason::Nostream { behind_archive: b }),
        (Some(_), _) => None,
        (None, why) => Some(SkipReason::NostreamUnchecked {
            why: why
                .clone()
                .unwrap_or_else(|| "its position against the archive was not read".into()),
        }),
    }
}

/// What the plan says of a delay it could not check on the member itself.
fn delay_note(member: &Member) -> String {
    let mut note = String::new();
    if let Some(b) = member.kept.as_ref().and_then(|k| k.behind_archive) {
        if member.nostream() {
            note.push_str(&format!(
                " (archive-only: {} behind the newest archived WAL)",
                human(b)
            ));
        }
    }
    if member.kept.as_ref().is_some_and(|k| k.delay_unchecked) {
        note.push_str(" (recovery_min_apply_delay not checked on the member: no PostgreSQL login; the dynamic configuration sets none)");
    }
    note
}

/// Whole seconds, rounded up: a cooldown with 0.3 s left still reports 1 s, never 0.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;
    use crate::history::RecordOutcome;
    use crate::model::{LagKind, State};
    use proptest::prelude::*;

    const MB: u64 = 1024 * 1024;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn ago(secs: u64) -> SystemTime {
        now() - Duration::from_secs(secs)
    }

    fn plan(cluster: &Cluster) -> Plan {
        decide_with(
            cluster,
            &Policy::default(),
            &[],
            &Evidence::default(),
            now(),
        )
    }

    fn acted(plan: &Plan) -> Vec<&str> {
        plan.actions.iter().map(|a| a.member.as_str()).collect()
    }

    fn skip_of<'a>(plan: &'a Plan, member: &str) -> Option<&'a SkipReason> {
        plan.skips
            .iter()
            .find(|s| s.member == member)
            .map(|s| &s.reason)
    }

    fn record(member: &str, started: SystemTime, finished: Option<SystemTime>) -> ActionRecord {
        ActionRecord {
            outcome: None,
            bytes: None,
            member: member.into(),
            started,
            finished,
        }
    }

    #[test]
    fn a_replica_kept_behind_on_purpose_is_never_rebuilt() {
        use crate::model::Kept;
        let paused = Kept {
            replay_paused: true,
            ..Kept::default()
        };
        let delayed = Kept {
            apply_delay: Some("10min (the dynamic configuration)".into()),
            ..Kept::default()
        };
        let unread = Kept {
            unreadable: Some("its /patroni did not answer".into()),
            ..Kept::default()
        };
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(100)
            .kept(Some(paused))
            .replica("pg2")
            .lag_mb(100)
            .kept(Some(delayed))
            .replica("pg3")
            .lag_mb(100)
            .tag("noheal", serde_json::json!(true))
            .replica("pg4")
            .lag_mb(100)
            .kept(Some(unread))
            .replica("pg5")
            .lag_mb(100)
            .kept(None)
            .replica("pg6")
            .lag_mb(100)
            .replica("pg7")
            .build();
        let p = plan(&c);
        assert_eq!(acted(&p), ["pg6"], "{p:#?}");
        assert_eq!(skip_of(&p, "pg1"), Some(&SkipReason::ReplayPaused));
        assert_eq!(
            skip_of(&p, "pg2"),
            Some(&SkipReason::ApplyDelay {
                delay: "10min (the dynamic configuration)".into()
            })
        );
        assert_eq!(skip_of(&p, "pg3"), Some(&SkipReason::NohealTag));
        assert!(matches!(
            skip_of(&p, "pg4"),
            Some(SkipReason::KeptUnknown { why }) if why.contains("/patroni")
        ));
        // Not read at all is not "not kept": fail closed.
        assert!(matches!(
            skip_of(&p, "pg5"),
            Some(SkipReason::KeptUnknown { .. })
        ));
        assert!(p.refused());
        let trend = Policy {
            by: DecideBy::Trend,
            ..Policy::default()
        };
        let p = decide_with(&c, &trend, &[], &Evidence::default(), now());
        assert_eq!(skip_of(&p, "pg1"), Some(&SkipReason::ReplayPaused));
        assert_eq!(skip_of(&p, "pg3"), Some(&SkipReason::NohealTag));
    }

    #[test]
    fn an_archive_only_replica_is_judged_against_the_archive() {
        use crate::model::Kept;
        let nostream = serde_json::json!(true);
        let archive = |behind: Option<u64>, unread: Option<&str>| {
            Some(Kept {
                behind_archive: behind,
                archive_unread: unread.map(str::to_string),
                ..Kept::default()
            })
        };
        let c = ClusterBuilder::new()
            .leader("pg0")
            // 100 MB behind the leader, 1 MB behind the archive: the archive is what lags.
            .replica("pg1")
            .lag_mb(100)
            .tag("nostream", nostream.clone())
            .kept(archive(Some(1024 * 1024), None))
            // 100 MB behind the archive too: it cannot keep up even with the archive.
            .replica("pg2")
            .lag_mb(100)
            .tag("nostream", nostream.clone())
            .kept(archive(Some(100 * 1024 * 1024), None))
            // Not read (no login): never judged by its lag against the leader alone.
            .replica("pg3")
            .lag_mb(100)
            .tag("nostream", nostream)
            .kept(archive(None, Some("no PostgreSQL login")))
            .replica("pg4")
            .build();
        let p = plan(&c);
        assert_eq!(acted(&p), ["pg2"], "{p:#?}");
        assert!(
            p.actions[0]
                .reason
                .contains("behind the newest archived WAL"),
            "{p:#?}"
        );
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::Nostream {
                behind_archive: 1024 * 1024
            })
        );
        assert!(matches!(
            skip_of(&p, "pg3"),
            Some(SkipReason::NostreamUnchecked { why }) if why.contains("login")
        ));
    }

    #[test]
    fn an_unchecked_delay_is_said_in_the_plan() {
        use crate::model::Kept;
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(100)
            .kept(Some(Kept {
                delay_unchecked: true,
                ..Kept::default()
            }))
            .replica("pg2")
            .build();
        let p = plan(&c);
        assert_eq!(acted(&p), ["pg1"]);
        assert!(
            p.actions[0]
                .reason
                .contains("recovery_min_apply_delay not checked on the member"),
            "{}",
            p.actions[0].reason
        );
    }

    #[test]
    fn lagging_replica_is_chosen_with_a_reason() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(100)
            .replica("pg2")
            .build();
        let p = plan(&c);
        assert!(p.blockers.is_empty());
        assert_eq!(acted(&p), ["pg1"]);
        assert_eq!(p.actions[0].lag, Lag::Bytes(100 * MB));
        assert_eq!(
            p.actions[0].reason,
            "replay lag 100.0 MB ≥ tolerance 5.0 MB"
        );
        assert_eq!(skip_of(&p, "pg0"), Some(&SkipReason::Leader));
        assert_eq!(
            skip_of(&p, "pg2"),
            Some(&SkipReason::WithinTolerance { lag: 0 })
        );
        assert!(!p.refused());
    }

    #[test]
    fn replica_within_tolerance_is_skipped() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(4)
            .build();
        let p = plan(&c);
        assert!(p.actions.is_empty());
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::WithinTolerance { lag: 4 * MB })
        );
    }

    #[test]
    fn lag_exactly_at_tolerance_is_a_candidate() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(5)
            .replica("pg2")
            .build();
        assert_eq!(acted(&plan(&c)), ["pg1"]);
    }

    #[test]
    fn leader_and_standby_leader_are_never_chosen() {
        let c = ClusterBuilder::new().leader("pg0").replica("pg1").build();
        assert_eq!(skip_of(&plan(&c), "pg0"), Some(&SkipReason::Leader));

        // A standby leader with a (bogus) lag figure is still never a candidate.
        let c = ClusterBuilder::new()
            .standby_leader("pg0")
            .lag_mb(500)
            .replica("pg1")
            .lag_mb(100)
            .replica("pg2")
            .build();
        let p = plan(&c);
        assert_eq!(skip_of(&p, "pg0"), Some(&SkipReason::Leader));
        assert_eq!(acted(&p), ["pg1"]);
    }

    #[test]
    fn paused_cluster_gets_nothing_but_a_paused_blocker() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(100)
            .replica("pg2")
            .paused()
            .build();
        let p = plan(&c);
        assert_eq!(p.blockers, [Blocker::Paused]);
        assert!(p.actions.is_empty());
        // Non-candidates still explain themselves; the candidate is explained by the blocker.
        assert_eq!(skip_of(&p, "pg0"), Some(&SkipReason::Leader));
        assert_eq!(
            skip_of(&p, "pg2"),
            Some(&SkipReason::WithinTolerance { lag: 0 })
        );
        assert_eq!(skip_of(&p, "pg1"), None);
        assert!(p.refused());
    }

    #[test]
    fn no_leader_blocks() {
        let c = ClusterBuilder::new()
            .replica("pg1")
            .lag_mb(100)
            .replica("pg2")
            .build();
        let p = plan(&c);
        assert_eq!(p.blockers, [Blocker::NoLeader]);
        assert!(p.actions.is_empty());
    }

    #[test]
    fn two_leaders_block() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .leader("pg1")
            .replica("pg2")
            .lag_mb(100)
            .replica("pg3")
            .build();
        let p = plan(&c);
        assert_eq!(
            p.blockers,
            [Blocker::MultipleLeaders {
                leaders: vec!["pg0".into(), "pg1".into()]
            }]
        );
        assert!(p.actions.is_empty());
        assert_eq!(skip_of(&p, "pg1"), Some(&SkipReason::Leader));
    }

    #[test]
    fn unlocked_blocks() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(100)
            .replica("pg2")
            .unlocked()
            .build();
        let p = plan(&c);
        assert_eq!(p.blockers, [Blocker::Unlocked]);
        assert!(p.actions.is_empty());
    }

    #[test]
    fn failsafe_blocks() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(100)
            .replica("pg2")
            .failsafe()
            .build();
        let p = plan(&c);
        assert_eq!(p.blockers, [Blocker::Failsafe]);
        assert!(p.actions.is_empty());
    }

    #[test]
    fn every_blocker_that_applies_is_listed() {
        let c = ClusterBuilder::new()
            .replica("pg1")
            .lag_mb(100)
            .paused()
            .unlocked()
            .failsafe()
            .build();
        let p = plan(&c);
        assert_eq!(
            p.blockers,
            [
                Blocker::Paused,
                Blocker::NoLeader,
                Blocker::Unlocked,
                Blocker::Failsafe
            ]
        );
        assert!(p.actions.is_empty());
    }

    #[test]
    fn max_concurrent_one_chooses_only_the_worst() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(50)
            .replica("pg2")
            .lag_mb(200)
            .replica("pg3")
            .build();
        let p = plan(&c);
        assert_eq!(acted(&p), ["pg2"]);
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::ConcurrencyLimit {
                limit: 1,
                in_progress: 1
            })
        );
        assert!(p.refused());
    }

    #[test]
    fn actions_are_worst_first_ties_by_name_and_skips_in_member_order() {
        let c = ClusterBuilder::new()
            .replica("pg3")
            .lag_mb(50)
            .leader("pg0")
            .replica("pg2")
            .lag_mb(200)
            .replica("pg1")
            .lag_mb(50)
            .replica("pg4")
            .build();
        let policy = Policy {
            max_concurrent: 3,
            ..Policy::default()
        };
        let p = decide_with(&c, &policy, &[], &Evidence::default(), now());
        assert_eq!(acted(&p), ["pg2", "pg1", "pg3"]);
        let skipped: Vec<&str> = p.skips.iter().map(|s| s.member.as_str()).collect();
        assert_eq!(skipped, ["pg0", "pg4"]);
    }

    #[test]
    fn member_creating_replica_consumes_the_slot() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .state(State::CreatingReplica)
            .unknown_lag()
            .replica("pg2")
            .lag_mb(100)
            .replica("pg3")
            .build();
        let p = plan(&c);
        assert!(p.actions.is_empty());
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::InProgress {
                state: "creating replica".into()
            })
        );
        assert_eq!(
            skip_of(&p, "pg2"),
            Some(&SkipReason::ConcurrencyLimit {
                limit: 1,
                in_progress: 1
            })
        );
    }

    #[test]
    fn unfinished_action_record_consumes_the_slot() {
        // pg1 still looks fine in /cluster: Patroni has not started the reinit we asked for.
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(300)
            .replica("pg2")
            .lag_mb(100)
            .replica("pg3")
            .build();
        let history = [record("pg1", ago(10), None)];
        let p = decide_with(
            &c,
            &Policy::default(),
            &history,
            &Evidence::default(),
            now(),
        );
        assert!(p.actions.is_empty());
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::InProgress {
                state: "streaming".into()
            })
        );
        assert_eq!(
            skip_of(&p, "pg2"),
            Some(&SkipReason::ConcurrencyLimit {
                limit: 1,
                in_progress: 1
            })
        );
    }

    /// Regression (issue: a SIGTERM mid-heal left an unfinished record in the watch state
    /// file, and after a restart auto-heal counted that reinit as running for ever).
    #[test]
    fn a_stale_unfinished_record_no_longer_holds_the_slot() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(300)
            .replica("pg2")
            .build();
        let policy = Policy {
            cooldown: Duration::from_secs(60),
            stale_after: Duration::from_secs(15 * 60),
            ..Policy::default()
        };
        let left_behind = [record("pg1", ago(16 * 60), None)];
        let p = decide_with(&c, &policy, &left_behind, &Evidence::default(), now());
        assert_eq!(p.actions.len(), 1, "{p:?}");
        assert_eq!(p.actions[0].member, "pg1");
        // A fresh one still does, and so does any unfinished record for the cooldown.
        let running = [record("pg1", ago(14 * 60), None)];
        assert!(
            decide_with(&c, &policy, &running, &Evidence::default(), now())
                .actions
                .is_empty()
        );
    }

    #[test]
    fn finishing_a_record_happens_once_and_pruning_keeps_the_recent() {
        let mut r = ActionRecord::starting("pg1", ago(100));
        assert!(r.in_flight(Duration::from_secs(600), now()));
        r.finish(RecordOutcome::Interrupted, ago(50));
        r.finish(RecordOutcome::Healed, ago(10));
        assert_eq!(r.outcome, Some(RecordOutcome::Interrupted));
        assert_eq!(r.finished, Some(ago(50)));
        assert!(!r.in_flight(Duration::from_secs(600), now()));
        let mut h = vec![
            record("pg1", ago(3 * 86_400), Some(ago(3 * 86_400))),
            record("pg2", ago(2 * 86_400), None),
            r,
        ];
        crate::history::prune_history(&mut h, Duration::from_secs(86_400), now());
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].member, "pg1");
    }

    #[test]
    fn min_healthy_refuses_when_every_replica_lags() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(100)
            .replica("pg2")
            .lag_mb(50)
            .build();
        let p = plan(&c);
        assert!(p.actions.is_empty());
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::MinHealthy {
                min_healthy: 1,
                healthy: 0
            })
        );
        assert!(p.refused());
    }

    #[test]
    fn min_healthy_zero_allows_when_every_replica_lags() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(100)
            .replica("pg2")
            .lag_mb(50)
            .build();
        let policy = Policy {
            min_healthy: 0,
            ..Policy::default()
        };
        let p = decide_with(&c, &policy, &[], &Evidence::default(), now());
        assert_eq!(acted(&p), ["pg1"]);
    }

    #[test]
    fn unhealthy_state_replica_does_not_count_as_healthy() {
        // pg2 has no lag to speak of but is not replicating: it does not satisfy min_healthy.
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(100)
            .replica("pg2")
            .state(State::StartFailed)
            .build();
        let p = plan(&c);
        assert_eq!(
            skip_of(&p, "pg2"),
            Some(&SkipReason::WithinTolerance { lag: 0 })
        );
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::MinHealthy {
                min_healthy: 1,
                healthy: 0
            })
        );
    }

    #[test]
    fn running_but_not_streaming_with_lag_is_a_candidate() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .state(State::Running)
            .lag_mb(100)
            .replica("pg2")
            .build();
        assert_eq!(acted(&plan(&c)), ["pg1"]);
    }

    #[test]
    fn only_sync_standby_is_never_taken() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .sync_standby("pg1")
            .lag_mb(100)
            .replica("pg2")
            .build();
        let p = plan(&c);
        assert!(p.actions.is_empty());
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::OnlySynchronousStandby)
        );
        assert!(p.refused());
    }

    #[test]
    fn sync_standby_is_taken_when_another_healthy_sync_or_quorum_standby_exists() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .sync_standby("pg1")
            .lag_mb(100)
            .sync_standby("pg2")
            .build();
        assert_eq!(acted(&plan(&c)), ["pg1"]);

        let c = ClusterBuilder::new()
            .leader("pg0")
            .quorum_standby("pg1")
            .lag_mb(100)
            .quorum_standby("pg2")
            .build();
        assert_eq!(acted(&plan(&c)), ["pg1"]);
    }

    #[test]
    fn another_sync_standby_that_also_lags_does_not_count() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .sync_standby("pg1")
            .lag_mb(100)
            .quorum_standby("pg2")
            .lag_mb(50)
            .replica("pg3")
            .build();
        let policy = Policy {
            max_concurrent: 2,
            ..Policy::default()
        };
        let p = decide_with(&c, &policy, &[], &Evidence::default(), now());
        assert!(p.actions.is_empty());
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::OnlySynchronousStandby)
        );
        assert_eq!(
            skip_of(&p, "pg2"),
            Some(&SkipReason::OnlySynchronousStandby)
        );
    }

    #[test]
    fn cooldown_from_history_skips() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(100)
            .replica("pg2")
            .build();
        // An older action and the latest one: the latest sets the cooldown.
        let history = [
            record("pg1", ago(3 * 3600), Some(ago(3 * 3600 - 60))),
            record("pg1", ago(600), Some(ago(500))),
        ];
        let p = decide_with(
            &c,
            &Policy::default(),
            &history,
            &Evidence::default(),
            now(),
        );
        assert!(p.actions.is_empty());
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::Cooldown {
                remaining_secs: 1200
            })
        );
        assert!(p.refused());
    }

    #[test]
    fn cooldown_rounds_up_to_a_whole_second() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(100)
            .replica("pg2")
            .build();
        let started = now() - Duration::from_secs(1800) + Duration::from_millis(300);
        let history = [record("pg1", started, Some(started))];
        let p = decide_with(
            &c,
            &Policy::default(),
            &history,
            &Evidence::default(),
            now(),
        );
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::Cooldown { remaining_secs: 1 })
        );
    }

    #[test]
    fn expired_cooldown_allows() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(100)
            .replica("pg2")
            .build();
        let history = [record("pg1", ago(1800), Some(ago(1700)))];
        let p = decide_with(
            &c,
            &Policy::default(),
            &history,
            &Evidence::default(),
            now(),
        );
        assert_eq!(acted(&p), ["pg1"]);
    }

    #[test]
    fn unknown_lag_is_never_acted_on() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .unknown_lag()
            .replica("pg2")
            .state(State::Crashed)
            .unknown_lag()
            .replica("pg3")
            .build();
        let policy = Policy {
            max_concurrent: 5,
            min_healthy: 0,
            ..Policy::default()
        };
        let p = decide_with(&c, &policy, &[], &Evidence::default(), now());
        assert!(p.actions.is_empty());
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::LagUnknown {
                state: "streaming".into()
            })
        );
        assert_eq!(
            skip_of(&p, "pg2"),
            Some(&SkipReason::LagUnknown {
                state: "crashed".into()
            })
        );
    }

    #[test]
    fn replay_only_lag_is_chosen_with_replay_kind_but_not_receive() {
        // Receives WAL fine but cannot apply it: only replay lag shows the problem.
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replay_lag_mb(100)
            .replica("pg2")
            .build();
        let replay = decide_with(&c, &Policy::default(), &[], &Evidence::default(), now());
        assert_eq!(acted(&replay), ["pg1"]);
        assert_eq!(
            replay.actions[0].reason,
            "replay lag 100.0 MB ≥ tolerance 5.0 MB"
        );

        let receive = Policy {
            lag: LagKind::Receive,
            ..Policy::default()
        };
        let p = decide_with(&c, &receive, &[], &Evidence::default(), now());
        assert!(p.actions.is_empty());
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::WithinTolerance { lag: 0 })
        );
    }

    #[test]
    fn refused_only_when_a_guardrail_stopped_a_candidate() {
        let fine = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replica("pg2")
            .build();
        let p = plan(&fine);
        assert!(p.actions.is_empty());
        assert!(!p.refused());

        let stopped = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(100)
            .build();
        let p = plan(&stopped);
        assert!(p.actions.is_empty());
        assert!(p.refused());
    }

    /// Hand-built clusters of assorted shapes: leader never acted on, the limit always held.
    #[test]
    fn assorted_clusters_respect_leader_and_concurrency() {
        let clusters = [
            ClusterBuilder::new()
                .replica("a")
                .lag_mb(900)
                .leader("b")
                .replica("c")
                .lag_mb(10)
                .replica("d")
                .lag_mb(10)
                .replica("e")
                .build(),
            ClusterBuilder::new()
                .standby_leader("a")
                .lag_mb(999)
                .sync_standby("b")
                .lag_mb(40)
                .quorum_standby("c")
                .replica("d")
                .state(State::Restarting)
                .unknown_lag()
                .replica("e")
                .replay_lag_mb(70)
                .build(),
            ClusterBuilder::new()
                .leader("a")
                .replica("b")
                .lag_mb(6)
                .replica("c")
                .lag_mb(7)
                .replica("d")
                .lag_mb(8)
                .replica("e")
                .lag_mb(9)
                .build(),
        ];
        let history = [
            record("c", ago(60), None),
            record("e", ago(100), Some(ago(50))),
        ];
        for cluster in &clusters {
            for max_concurrent in 0..4 {
                for min_healthy in 0..3 {
                    let policy = Policy {
                        max_concurrent,
                        min_healthy,
                        ..Policy::default()
                    };
                    for hist in [&history[..], &[]] {
                        let p = decide_with(cluster, &policy, hist, &Evidence::default(), now());
                        check_invariants(cluster, &policy, &p);
                    }
                }
            }
        }
    }

    // ---- by: trend ----

    fn by_trend() -> Policy {
        Policy {
            by: DecideBy::Trend,
            ..Policy::default()
        }
    }

    /// Samples of pg1's lag one second apart, ending now.
    fn samples_of(member: &str, lags_mb: &[f64]) -> Evidence {
        let n = lags_mb.len() as u64;
        let mut e = Evidence::default();
        e.samples.insert(
            member.into(),
            lags_mb
                .iter()
                .enumerate()
                .map(|(i, mb)| crate::heal::LagSample {
                    at: now() - Duration::from_secs(n - 1 - i as u64),
                    bytes: Some((mb * MB as f64) as u64),
                })
                .collect(),
        );
        e
    }

    fn lagging(mb: u64) -> Cluster {
        ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(mb)
            .replica("pg2")
            .build()
    }

    fn healed_in(secs: u64) -> ActionRecord {
        let mut r = ActionRecord::starting("pg2", ago(7200));
        r.finish(RecordOutcome::Healed, ago(7200) + Duration::from_secs(secs));
        r
    }

    #[test]
    fn trend_a_replica_catching_up_sooner_than_a_rebuild_is_left_alone_with_the_numbers() {
        // 82 MB, shrinking 19 MB/s; the last heal of the cluster took 40 s.
        let lags: Vec<f64> = (0..6).map(|i| 177.0 - 19.0 * i as f64).collect();
        let e = samples_of("pg1", &lags);
        let p = decide_with(&lagging(82), &by_trend(), &[healed_in(40)], &e, now());
        assert!(p.actions.is_empty(), "{p:?}");
        let skip = skip_of(&p, "pg1").unwrap();
        assert_eq!(
            skip.to_string(),
            "lag 82.0 MB, shrinking 19.0 MB/s, caught up in ~5 s; a rebuild takes ~40 s: waiting"
        );
        assert!(!p.refused(), "waiting is not a refusal");
        assert_eq!(p.trends.len(), 1);
        assert_eq!(
            p.trends[0].rebuild,
            Some(RebuildEstimate::History { secs: 40, heals: 1 })
        );
        // Threshold mode rebuilds the same replica.
        assert_eq!(acted(&plan(&lagging(82))), ["pg1"]);
    }

    #[test]
    fn trend_a_stalled_replica_is_rebuilt() {
        let e = samples_of("pg1", &[40.0; 8]);
        let p = decide_with(&lagging(40), &by_trend(), &[], &e, now());
        assert_eq!(acted(&p), ["pg1"]);
        assert_eq!(
            p.actions[0].reason,
            "lag 40.0 MB, not shrinking over 8 samples in 7 s: it cannot catch up"
        );
    }

    #[test]
    fn trend_a_growing_lag_is_rebuilt() {
        let e = samples_of("pg1", &[10.0, 12.0, 14.0, 16.0, 18.0, 20.0]);
        let p = decide_with(&lagging(20), &by_trend(), &[], &e, now());
        assert_eq!(acted(&p), ["pg1"]);
        assert!(
            p.actions[0].reason.contains("growing 2.0 MB/s"),
            "{}",
            p.actions[0].reason
        );
    }

    #[test]
    fn trend_catching_up_slower_than_factor_times_a_rebuild_is_rebuilt() {
        // 100 MB shrinking 1 MB/s: ~100 s, against a 20 s rebuild × 2.
        let lags: Vec<f64> = (0..10).map(|i| 109.0 - i as f64).collect();
        let e = samples_of("pg1", &lags);
        let p = decide_with(&lagging(100), &by_trend(), &[healed_in(20)], &e, now());
        assert_eq!(acted(&p), ["pg1"]);
        assert_eq!(
            p.actions[0].reason,
            "lag 100.0 MB, shrinking 1.0 MB/s, caught up in ~100 s; a rebuild takes ~20 s: rebuilding"
        );
        // With a 60 s rebuild (× 2 = 120 s) waiting wins.
        let p = decide_with(&lagging(100), &by_trend(), &[healed_in(60)], &e, now());
        assert!(matches!(
            skip_of(&p, "pg1"),
            Some(SkipReason::CatchingUp {
                rebuild_secs: 60,
                eta_secs: 100,
                ..
            })
        ));
    }

    #[test]
    fn trend_noisy_catch_up_is_still_seen_as_catching_up() {
        let lags = [
            60.0, 58.6, 55.9, 54.4, 52.1, 50.3, 47.5, 46.6, 43.9, 300.0, 40.1, 38.4,
        ];
        let e = samples_of("pg1", &lags);
        let p = decide_with(&lagging(38), &by_trend(), &[healed_in(60)], &e, now());
        assert!(
            matches!(skip_of(&p, "pg1"), Some(SkipReason::CatchingUp { .. })),
            "{p:?}"
        );
    }

    #[test]
    fn trend_too_few_samples_is_a_clear_skip_never_a_guess() {
        let e = samples_of("pg1", &[30.0, 20.0]);
        let p = decide_with(&lagging(20), &by_trend(), &[], &e, now());
        assert!(p.actions.is_empty());
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::NotEnoughSamples { have: 2, need: 5 })
        );
        assert_eq!(
            skip_of(&p, "pg1").unwrap().to_string(),
            "not enough samples to tell a trend (2 of 5 in the window): not guessing"
        );
        // Without any evidence at all, the same.
        let p = decide_with(&lagging(20), &by_trend(), &[], &Evidence::default(), now());
        assert_eq!(
            skip_of(&p, "pg1"),
            Some(&SkipReason::NotEnoughSamples { have: 0, need: 5 })
        );
    }

    #[test]
    fn trend_without_a_rebuild_estimate_waits_while_it_shrinks() {
        let lags: Vec<f64> = (0..10).map(|i| 109.0 - i as f64).collect();
        let e = samples_of("pg1", &lags);
        let p = decide_with(&lagging(100), &by_trend(), &[], &e, now());
        assert!(matches!(
            skip_of(&p, "pg1"),
            Some(SkipReason::NoRebuildEstimate { eta_secs: 100, .. })
        ));
        // The data size gives one: 10 GB at 50 MB/s is ~205 s, so 100 s of catch-up waits.
        let mut e = e;
        e.data_bytes = Some(10 * 1024 * MB);
        let p = decide_with(&lagging(100), &by_trend(), &[], &e, now());
        assert!(matches!(
            skip_of(&p, "pg1"),
            Some(SkipReason::CatchingUp {
                rebuild_secs: 205,
                ..
            })
        ));
    }

    #[test]
    fn trend_wal_gone_and_the_ceiling_rebuild_at_once() {
        let lags: Vec<f64> = (0..6).map(|i| 100.0 - 10.0 * i as f64).collect();
        let mut e = samples_of("pg1", &lags);
        e.wal_gone.insert(
            "pg1".into(),
            "the leader's slot pg1 has wal_status lost".into(),
        );
        let p = decide_with(&lagging(50), &by_trend(), &[healed_in(600)], &e, now());
        assert_eq!(acted(&p), ["pg1"]);
        assert_eq!(
            p.actions[0].reason,
            "its WAL is gone (the leader's slot pg1 has wal_status lost): it can never catch up; rebuilt at once"
        );
        let policy = Policy {
            trend: crate::heal::TrendPolicy {
                ceiling: 40 * MB,
                ..Default::default()
            },
            ..by_trend()
        };
        let e = samples_of("pg1", &lags);
        let p = decide_with(&lagging(50), &policy, &[healed_in(600)], &e, now());
        assert_eq!(acted(&p), ["pg1"]);
        assert!(p.actions[0].reason.contains("hard ceiling"));
    }

    #[test]
    fn trend_keeps_every_guardrail() {
        let mut e = samples_of("pg1", &[40.0; 8]);
        e.wal_gone.insert("pg1".into(), "gone".into());
        // Cooldown.
        let recent = [record("pg1", ago(60), Some(ago(30)))];
        let p = decide_with(&lagging(40), &by_trend(), &recent, &e, now());
        assert!(matches!(
            skip_of(&p, "pg1"),
            Some(SkipReason::Cooldown { .. })
        ));
        // Paused.
        let paused = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(40)
            .replica("pg2")
            .paused()
            .build();
        assert!(decide_with(&paused, &by_trend(), &[], &e, now())
            .actions
            .is_empty());
        // Min healthy: the only replica.
        let alone = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(40)
            .build();
        let p = decide_with(&alone, &by_trend(), &[], &e, now());
        assert!(matches!(
            skip_of(&p, "pg1"),
            Some(SkipReason::MinHealthy { .. })
        ));
        // The leader, even when named WAL-gone.
        let mut e2 = e.clone();
        e2.wal_gone.insert("pg0".into(), "gone".into());
        let p = decide_with(&lagging(40), &by_trend(), &[], &e2, now());
        assert_eq!(skip_of(&p, "pg0"), Some(&SkipReason::Leader));
    }

    fn check_invariants(cluster: &Cluster, policy: &Policy, p: &Plan) {
        assert!(p.actions.len() <= policy.max_concurrent, "{p:?}");
        if !p.blockers.is_empty() {
            assert!(p.actions.is_empty(), "{p:?}");
        }
        for a in &p.actions {
            let m = cluster.member(&a.member).map(|m| m.role.is_leader());
            assert_eq!(m, Some(false), "acted on a leader or a stranger: {p:?}");
            assert!(a.lag.bytes().is_some_and(|b| b >= policy.tolerance));
        }
        // No member is both acted on and skipped, or skipped twice.
        let mut seen = BTreeSet::new();
        for name in p
            .actions
            .iter()
            .map(|a| &a.member)
            .chain(p.skips.iter().map(|s| &s.member))
        {
            assert!(seen.insert(name.clone()), "{name} twice: {p:?}");
        }
    }

    fn arb_member() -> impl Strategy<Value = (u8, u8, Option<u64>)> {
        (0u8..6, 0u8..6, proptest::option::of(0u64..20 * MB))
    }

    proptest! {
        #[test]
        fn random_clusters_respect_leader_and_concurrency(
            members in proptest::collection::vec(arb_member(), 0..7),
            max_concurrent in 0usize..4,
            min_healthy in 0usize..4,
            paused in any::<bool>(),
        ) {
            let mut b = ClusterBuilder::new();
            for (i, (role, state, lag)) in members.into_iter().enumerate() {
                let name = format!("pg{i}");
                b = match role {
                    0 => b.leader(&name),
                    1 => b.standby_leader(&name),
                    2 => b.sync_standby(&name),
                    3 => b.quorum_standby(&name),
                    _ => b.replica(&name),
                };
                b = b.state(match state {
                    0 => State::Running,
                    1 => State::Streaming,
                    2 => State::CreatingReplica,
                    3 => State::Crashed,
                    _ => State::Streaming,
                });
                b = match lag {
                    Some(bytes) => b.receive_lag_bytes(bytes).replay_lag_bytes(bytes),
                    None => b.unknown_lag(),
                };
            }
            if paused {
                b = b.paused();
            }
            let cluster = b.build();
            let policy = Policy { max_concurrent, min_healthy, ..Policy::default() };
            let p = decide_with(&cluster, &policy, &[], &Evidence::default(), now());
            check_invariants(&cluster, &policy, &p);
            // Trend mode, whatever its evidence, only ever acts where threshold mode does.
            let trend = Policy { by: DecideBy::Trend, ..policy.clone() };
            let mut e = Evidence::default();
            for (i, m) in cluster.members.iter().enumerate() {
                let flat = (0..6).map(|k| crate::heal::LagSample {
                    at: now() - Duration::from_secs(k),
                    bytes: Some(((i as u64 + k) % 3) * MB),
                });
                e.samples.insert(m.name.clone(), flat.collect());
                if i % 2 == 0 {
                    e.wal_gone.insert(m.name.clone(), "gone".into());
                }
            }
            let t = decide_with(&cluster, &trend, &[], &e, now());
            check_invariants(&cluster, &trend, &t);
            for a in &t.actions {
                prop_assert!(
                    p.actions.iter().any(|b| b.member == a.member)
                        || p.skips.iter().any(|s| s.member == a.member
                            && matches!(s.reason, SkipReason::ConcurrencyLimit { .. })),
                    "trend acted on {} where threshold did not: {t:?} vs {p:?}", a.member
                );
            }
        }
    }
}
