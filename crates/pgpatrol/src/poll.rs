//! The one way pgpatrol waits for a state: read, judge, and either stop or read again after
//! a pause, until a deadline. Every "wait until the cluster shows …" of an operation, heal
//! and the lab goes through [`Poll`], so each wait has a deadline, reads at once, reads one
//! last time at the deadline, and never sleeps in place of reading.
//!
//! ```text
//! let mut poll = Poll::new(timeout, Duration::from_millis(500));
//! while poll.next().await {
//!     if done(read().await) { return Ok(()); }
//! }
//! Err("not within the timeout")
//! ```

use std::time::{Duration, Instant};

/// Rounds of a wait: the first at once, then one per `every`, the last at the deadline.
#[derive(Debug)]
pub struct Poll {
    deadline: Instant,
    every: Duration,
    started: bool,
}

impl Poll {
    /// Waits of at most `timeout` from now, a round every `every`.
    pub fn new(timeout: Duration, every: Duration) -> Self {
        Self::until(Instant::now() + timeout, every)
    }

    /// Waits until `deadline`, a round every `every`.
    pub fn until(deadline: Instant, every: Duration) -> Self {
        Poll {
            deadline,
            every,
            started: false,
        }
    }

    /// Whether to read (again): `true` at once the first time; later after `every` (or at
    /// the deadline, whichever comes first); `false` once the deadline has passed.
    pub async fn next(&mut self) -> bool {
        if !std::mem::replace(&mut self.started, true) {
            return true;
        }
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.every.min(self.deadline - now)).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_at_once_and_last_at_the_deadline() {
        let t0 = Instant::now();
        let mut poll = Poll::new(Duration::from_millis(60), Duration::from_millis(25));
        let mut rounds = Vec::new();
        while poll.next().await {
            rounds.push(t0.elapsed());
        }
        // At once, every 25 ms, and at the deadline (60 ms): never past it unread.
        assert!(rounds.len() >= 2, "{rounds:?}");
        assert!(rounds[0] < Duration::from_millis(25), "{rounds:?}");
        assert!(
            *rounds.last().unwrap() >= Duration::from_millis(60),
            "{rounds:?}"
        );
    }

    #[tokio::test]
    async fn a_deadline_already_past_still_reads_once() {
        let mut poll = Poll::until(Instant::now(), Duration::from_secs(1));
        assert!(poll.next().await);
        assert!(!poll.next().await);
    }
}
