//! What healers did: one record per reinitialization (started, finished, how it ended, what
//! it copied), and the rules that read the history — cooldowns, the slot a running action
//! holds, stale records of a healer that died, pruning. A leaf: heal ([`crate::heal`], its
//! decision and its trend) reads it, it reads nothing of heal.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// An earlier (or running) action on a member, for cooldowns and concurrency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub member: String,
    pub started: SystemTime,
    /// `None` while it is still running (it then counts against `max_concurrent`).
    pub finished: Option<SystemTime>,
    /// How it ended; `None` while running (and in state files from before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<RecordOutcome>,
    /// The leader's data size when it started (what the rebuild copied), when known: with
    /// the duration it gives the cluster's measured rebuild throughput (trend mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// How a recorded action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordOutcome {
    Healed,
    /// Not healed: timed out, refused, the leader lost.
    Failed,
    /// Its healer was stopped (SIGTERM) while it ran; Patroni finishes the reinit alone.
    Interrupted,
    /// Its healer stopped watching it while it ran (the heal lease was lost, or the leader
    /// changed), or it was left unfinished by a healer that died and found stale later.
    /// Patroni finishes or gives up on its own.
    Abandoned,
}

impl ActionRecord {
    /// A record of an action that starts now.
    pub fn starting(member: &str, now: SystemTime) -> Self {
        ActionRecord {
            member: member.to_owned(),
            started: now,
            finished: None,
            outcome: None,
            bytes: None,
        }
    }

    /// Records the end, once.
    pub fn finish(&mut self, outcome: RecordOutcome, at: SystemTime) {
        if self.finished.is_none() {
            self.finished = Some(at);
            self.outcome = Some(outcome);
        }
    }

    /// Still in progress: unfinished, and started less than `stale_after` ago. An older
    /// unfinished record was left by a healer that died mid-action; Patroni has finished or
    /// given up since, so it must not hold a slot for ever.
    pub fn in_flight(&self, stale_after: Duration, now: SystemTime) -> bool {
        self.finished.is_none()
            && now.duration_since(self.started).unwrap_or_default() < stale_after
    }
}

/// Ends every unfinished record older than `stale_after` as [`RecordOutcome::Abandoned`]
/// (its healer died mid-action); returns how many. Such a record already stops counting as
/// in progress; ending it makes the history say so too.
pub fn abandon_stale(
    history: &mut [ActionRecord],
    stale_after: Duration,
    now: SystemTime,
) -> usize {
    let mut n = 0;
    for r in history.iter_mut() {
        if r.finished.is_none() && !r.in_flight(stale_after, now) {
            r.finish(RecordOutcome::Abandoned, now);
            n += 1;
        }
    }
    n
}

/// Drops what no rule looks at any more: finished records older than `keep` (the longer of
/// the cooldown and the attempt window) and stale unfinished ones older than `keep` too.
pub fn prune_history(history: &mut Vec<ActionRecord>, keep: Duration, now: SystemTime) {
    history.retain(|r| now.duration_since(r.started).unwrap_or_default() < keep);
}

/// Seconds left of a cooldown, if any.
pub fn cooldown_left(started: SystemTime, cooldown: Duration, now: SystemTime) -> Option<Duration> {
    let elapsed = now.duration_since(started).unwrap_or_default();
    cooldown.checked_sub(elapsed).filter(|d| !d.is_zero())
}
