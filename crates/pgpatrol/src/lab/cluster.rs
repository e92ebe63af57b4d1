//! Reading (and asking) a running lab through its members: `/cluster` in the core model,
//! each member's `/patroni`, etcd's `/health`, the health verdict `lab up`, `lab status` and
//! `lab repair` wait for, SQL through psql, `PATCH /config`, and log tails.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use pgpatrol_core::{Cluster, Lag, LagKind, MemberStatus, State};

use super::os::alive;
use super::{
    config, EtcdState, LabPaths, LabState, MemberState, HEALTHY_MAX_LAG, PG_BIN_DIR, REST_USER,
};
use crate::source::http::{Http, HttpOptions};
use crate::source::{ClusterSource, Detail};

fn http() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("cannot build an HTTP client")
}

async fn get_json(url: &str) -> Result<Value> {
    let resp = http()?
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.text().await.with_context(|| format!("GET {url}"))?;
    if !status.is_success() {
        bail!("GET {url}: HTTP {status}: {}", crate::text::one_line(&body));
    }
    serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON"))
}

/// A REST source for the lab's members (the same client every command uses).
fn source(urls: &[String]) -> Result<ClusterSource> {
    let http = Http::new(&HttpOptions {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(2),
        ..HttpOptions::default()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    ClusterSource::new(http, urls).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The cluster from the first member that answers, in the core model (on Patroni < 4.1 with
/// replay lag from each member's own `/patroni`, as every command reads it).
pub async fn any_cluster(state: &LabState) -> Result<Cluster> {
    if state.members.is_empty() {
        bail!("the lab has no members");
    }
    let snap = source(&state.urls())?
        .snapshot(Detail::Lag)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(snap.cluster)
}

/// What the member at `url` says of itself (`GET /patroni`).
pub async fn member_status(url: &str) -> Result<MemberStatus> {
    source(&[url.to_string()])?
        .member_status(url)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// True when etcd answers `/health` with `"health":"true"`.
pub async fn etcd_healthy(etcd: &EtcdState) -> bool {
    let url = format!("{}/health", etcd.client_url());
    matches!(get_json(&url).await, Ok(v) if v["health"] == "true")
}

/// Checks the cluster: exactly one running leader, `members - 1` replicas in the version's
/// streaming state on the leader's timeline (a replica reports the new timeline a Patroni
/// loop after a leader change), and (when `max_lag` is set) every replica's receive and
/// replay lag known and at most `max_lag` bytes. `Err` carries a one-line reason.
pub fn check_health(
    cluster: &Cluster,
    members: usize,
    max_lag: Option<u64>,
    streaming_state: &str,
) -> Result<(), String> {
    let mut leaders = 0;
    let mut streaming = 0;
    let mut problems = Vec::new();
    let leader_timeline = cluster
        .members
        .iter()
        .find(|m| m.role.is_leader())
        .and_then(|m| m.timeline);
    for m in &cluster.members {
        if m.role.is_leader() {
            // A standby leader shows its replication state (`streaming`) in /cluster.
            let running = m.state == State::Running
                || (m.role == pgpatrol_core::Role::StandbyLeader && m.state.is_healthy_replica());
            if running {
                leaders += 1;
            } else {
                problems.push(format!("leader {} is {}", m.name, m.state));
            }
            continue;
        }
        // An archive-only replica (`lab up --nostream`) is in archive recovery, receives
        // nothing (its receive lag is unknown) and replays a segment at a time.
        let archive_only = m.nostream() && m.state.as_str() == "in archive recovery";
        if m.state.as_str() == streaming_state || archive_only {
            streaming += 1;
        } else {
            problems.push(format!("{} is {}/{}", m.name, m.role, m.state));
        }
        // An archive-only replica finds the new timeline when its history file is archived.
        if let (Some(tl), Some(leader_tl), false) = (m.timeline, leader_timeline, archive_only) {
            if tl != leader_tl {
                problems.push(format!(
                    "{} on timeline {tl}, the leader on {leader_tl}",
                    m.name
                ));
            }
        }
        if let Some(max) = max_lag {
            let kinds: &[LagKind] = if archive_only {
                &[LagKind::Replay]
            } else {
                &[LagKind::Receive, LagKind::Replay]
            };
            for &kind in kinds {
                match m.lag(kind) {
                    Some(Lag::Bytes(b)) if b <= max => {}
                    Some(lag) => problems.push(format!("{} {} lag {lag}", m.name, kind.as_str())),
                    None => {}
                }
            }
        }
    }
    if cluster.members.len() != members {
        problems.insert(
            0,
            format!("{} of {members} members in /cluster", cluster.members.len()),
        );
    }
    if leaders != 1 {
        problems.insert(0, format!("{leaders} running leaders"));
    }
    if problems.is_empty() && streaming + 1 == members {
        Ok(())
    } else {
        Err(problems.join(", "))
    }
}

/// What `lab status` shows and `lab up`/`lab repair` wait for: `/cluster` as read now
/// (`None` when no member answers it), and the verdict.
pub struct Health {
    pub cluster: Option<Cluster>,
    pub verdict: Result<(), String>,
}

/// The lab's health now: each Patroni reached the DCS since etcd last started, then
/// [`check_health`] on `/cluster`, then [`members_agree`].
pub async fn health(state: &LabState) -> Health {
    // Each member's own /patroni first: reading /cluster through a member counts as that
    // member reaching the DCS.
    let statuses = member_statuses(state).await;
    let cluster = any_cluster(state).await;
    let verdict = statuses.and_then(|statuses| {
        reached_dcs_since_etcd_started(state, &statuses)?;
        let c = cluster.as_ref().map_err(|e| format!("{e:#}"))?;
        check_health(
            c,
            state.members.len(),
            Some(HEALTHY_MAX_LAG),
            state.patroni.streaming_state(),
        )?;
        members_agree(state, c, &statuses)
    });
    Health {
        cluster: cluster.ok(),
        verdict,
    }
}

/// Polls until the lab is healthy (see [`check_health`]); on timeout the error
/// carries the reason and the tail of the first unhealthy member's log.
pub async fn wait_healthy(state: &LabState, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut why;
    loop {
        match health(state).await.verdict {
            Ok(()) => return Ok(()),
            Err(reason) => why = reason,
        }
        if state
            .members
            .iter()
            .all(|m| !m.pid.is_some_and(|p| alive(p, "patroni")))
        {
            why = format!("every Patroni process exited ({why})");
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Blame the first member that is dead or named in the reason; else the first member.
    let culprit = state
        .members
        .iter()
        .find(|m| !m.pid.is_some_and(|p| alive(p, "patroni")))
        .or_else(|| state.members.iter().find(|m| why.contains(&m.name)))
        .or(state.members.first());
    let log = culprit
        .map(|m| format!("; {} log: {}", m.name, tail(&m.log, 5).replace('\n', " | ")))
        .unwrap_or_default();
    bail!(
        "the lab did not become healthy within {} ({why}){log}",
        humantime::format_duration(timeout)
    )
}

/// Once etcd was started again (`lab repair` after `lab break dcs`), the keys it serves are
/// the ones written before it stopped, and a Patroni can still be inside a loop that began
/// while it was down: a leader whose loop then fails demotes itself, a moment after the old
/// keys looked healthy. So each member's Patroni must say (`dcs_last_seen` in its own
/// `/patroni`) that it reached the DCS since etcd started. Ask before reading `/cluster`.
/// `statuses` are the members' own answers, in `state.members`' order.
pub fn reached_dcs_since_etcd_started(
    state: &LabState,
    statuses: &[MemberStatus],
) -> Result<(), String> {
    let Some(since) = state.etcd.started else {
        return Ok(());
    };
    for (m, me) in state.members.iter().zip(statuses) {
        if let Some(why) = dcs_not_seen_since(&m.name, me.dcs_last_seen, since) {
            return Err(why);
        }
    }
    Ok(())
}

/// Each member's own `/patroni`, in `state.members`' order; `Err` names the first member
/// that does not answer.
async fn member_statuses(state: &LabState) -> Result<Vec<MemberStatus>, String> {
    let mut statuses = Vec::with_capacity(state.members.len());
    for m in &state.members {
        let me = member_status(&m.url())
            .await
            .map_err(|e| format!("{} does not answer: {e:#}", m.name))?;
        statuses.push(me);
    }
    Ok(statuses)
}

/// Why `member`'s Patroni, which last reached the DCS at `last_seen`, has not done so since
/// etcd started at `since` (both in seconds since the epoch); `None` when it has.
pub fn dcs_not_seen_since(member: &str, last_seen: Option<u64>, since: u64) -> Option<String> {
    match last_seen {
        Some(t) if t >= since => None,
        Some(0) => Some(format!("{member}'s Patroni has not reached etcd yet")),
        Some(t) => Some(format!(
            "{member}'s Patroni has not reached etcd since it started again (last {}s before)",
            since - t
        )),
        None => Some(format!(
            "{member}'s Patroni does not say when it last reached the DCS (no dcs_last_seen)"
        )),
    }
}

/// /cluster is the DCS's view, which lags reality: a killed leader still shows as "leader
/// running" until its key expires. So each member's own /patroni must answer, say "running",
/// and agree on its role (`statuses` in `state.members`' order).
pub fn members_agree(
    state: &LabState,
    cluster: &Cluster,
    statuses: &[MemberStatus],
) -> Result<(), String> {
    let leader = cluster.leader().map(|l| l.name.clone()).unwrap_or_default();
    let mut senders: &[String] = &[];
    for (m, me) in state.members.iter().zip(statuses) {
        let is_leader = me.role.is_leader();
        if me.state != State::Running || is_leader != (m.name == leader) {
            return Err(format!("{} says {}/{}", m.name, me.role, me.state));
        }
        if is_leader {
            senders = &me.streaming_to;
        }
    }
    // The leader's pg_stat_replication: every replica streams (but an archive-only one,
    // `lab up --nostream`). Patroni before 3.0.4 says a replica is `running` whether or not
    // its walreceiver has connected yet.
    let archive_only = |name: &str| cluster.member(name).is_some_and(|m| m.nostream());
    for m in state
        .members
        .iter()
        .filter(|m| m.name != leader && !archive_only(&m.name))
    {
        if !senders.contains(&m.name) {
            return Err(format!(
                "{} is not streaming from the leader yet (its pg_stat_replication)",
                m.name
            ));
        }
    }
    Ok(())
}

/// The current leader's member record, from /cluster.
pub async fn leader(state: &LabState) -> Result<&MemberState> {
    let cluster = any_cluster(state).await?;
    let name = cluster
        .leader()
        .map(|l| l.name.clone())
        .context("the cluster has no leader right now")?;
    state.member(&name)
}

/// The lag of `member` in bytes, as every pgpatrol command reads it (`/cluster`, and on
/// Patroni < 4.1 replay lag from the members' own `/patroni`); `None` while unknown.
pub async fn reported_lag(
    state: &LabState,
    member: &MemberState,
    kind: LagKind,
) -> Result<Option<u64>> {
    let cluster = any_cluster(state).await?;
    Ok(cluster
        .member(&member.name)
        .and_then(|m| m.lag(kind))
        .and_then(|l| l.bytes()))
}

/// Runs SQL on a member over TCP as the superuser; returns psql's unaligned output.
pub async fn psql(member: &MemberState, sql: &str) -> Result<String> {
    let yaml = std::fs::read_to_string(&member.config)
        .with_context(|| format!("cannot read {}", member.config.display()))?;
    let password = config::superuser_password(&yaml)?;
    let out = tokio::process::Command::new(Path::new(PG_BIN_DIR).join("psql"))
        .args([
            "-h",
            &member.addr().to_string(),
            "-p",
            &member.pg_port.to_string(),
        ])
        .args([
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .arg("-c")
        .arg(sql)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run psql")?;
    if !out.status.success() {
        bail!(
            "psql on {} failed: {}",
            member.name,
            crate::text::one_line(&String::from_utf8_lossy(&out.stderr))
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// PATCH /config on a member with the lab's REST credentials.
pub async fn patch_config(
    paths: &LabPaths,
    member: &MemberState,
    body: serde_json::Value,
) -> Result<()> {
    let password = std::fs::read_to_string(paths.password())
        .with_context(|| format!("cannot read {}", paths.password().display()))?;
    let url = format!("{}/config", member.url());
    let resp = reqwest::Client::new()
        .patch(&url)
        .basic_auth(REST_USER, Some(password.trim()))
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("PATCH {url}"))?;
    if !resp.status().is_success() {
        bail!("PATCH {url}: HTTP {}", resp.status());
    }
    Ok(())
}

/// The last `n` lines of a file ("" when it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_etcd_started_again_each_patroni_must_have_reached_it() {
        // etcd started at 1000: a member last seen at 999 read the keys of before the outage.
        let why = dcs_not_seen_since("pg0", Some(999), 1000).expect("not seen since");
        assert!(why.contains("pg0's Patroni has not reached etcd"), "{why}");
        assert!(why.contains("last 1s before"), "{why}");
        // A Patroni that started a moment ago says 0 until its first loop.
        let why = dcs_not_seen_since("pg2", Some(0), 1000).expect("not seen yet");
        assert!(
            why.contains("pg2's Patroni has not reached etcd yet"),
            "{why}"
        );
        assert_eq!(dcs_not_seen_since("pg0", Some(1000), 1000), None);
        assert_eq!(dcs_not_seen_since("pg0", Some(1005), 1000), None);
        // A Patroni that does not say is not taken as having reached it.
        assert!(dcs_not_seen_since("pg1", None, 1000).is_some());
    }

    #[test]
    fn healthy_cluster_needs_one_leader_and_streaming_replicas() {
        use pgpatrol_core::fixtures::ClusterBuilder;
        let ok = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(0)
            .replica("pg2")
            .lag_mb(0)
            .build();
        assert_eq!(
            check_health(&ok, 3, Some(HEALTHY_MAX_LAG), "streaming"),
            Ok(())
        );
        assert!(check_health(&ok, 2, None, "streaming").is_err());

        let lagging = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(64)
            .build();
        assert!(check_health(&lagging, 2, None, "streaming").is_ok());
        // Patroni 2.1 says `running` for a streaming replica.
        assert!(check_health(&lagging, 2, None, "running").is_err());
        let why = check_health(&lagging, 2, Some(HEALTHY_MAX_LAG), "streaming").unwrap_err();
        assert!(why.contains("pg1 receive lag 67108864"), "{why}");

        let unknown = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .unknown_lag()
            .build();
        let why = check_health(&unknown, 2, Some(HEALTHY_MAX_LAG), "streaming").unwrap_err();
        assert!(why.contains("pg1 receive lag unknown"), "{why}");

        let two_running = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .state(State::Running)
            .build();
        assert!(check_health(&two_running, 2, None, "streaming")
            .unwrap_err()
            .contains("pg1 is replica/running"));

        // `lab up --nostream pg1`: in archive recovery, receiving nothing, is healthy; the
        // same state without the tag is not.
        let mut archive_only = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(0)
            .state(State::InArchiveRecovery)
            .tag("nostream", serde_json::json!(true))
            .build();
        archive_only.members[1].receive_lag = Some(Lag::Unknown);
        assert_eq!(
            check_health(&archive_only, 2, Some(HEALTHY_MAX_LAG), "streaming"),
            Ok(())
        );
        archive_only.members[1].tags.clear();
        assert!(check_health(&archive_only, 2, Some(HEALTHY_MAX_LAG), "streaming").is_err());

        // After a leader change a streaming replica reports the old timeline for a loop.
        let mut old_timeline = ClusterBuilder::new()
            .leader("pg0")
            .timeline(2)
            .replica("pg1")
            .lag_mb(0)
            .timeline(1)
            .build();
        let why = check_health(&old_timeline, 2, Some(HEALTHY_MAX_LAG), "streaming").unwrap_err();
        assert!(why.contains("pg1 on timeline 1, the leader on 2"), "{why}");
        old_timeline.members[1].timeline = Some(2);
        assert_eq!(
            check_health(&old_timeline, 2, Some(HEALTHY_MAX_LAG), "streaming"),
            Ok(())
        );
    }
}
