//! The replica-lag SLI: the maximum lag over a cluster's replicas (seed 000 reports `7`).
//! Unknown lag is never folded into the number: it is reported by name, and callers make
//! it an error (exit 1) unless the operator chose a stand-in value.

use serde::Serialize;

use crate::model::{Cluster, Lag, LagKind};

/// One replica's figures, as the SLI saw them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberLag {
    pub name: String,
    pub state: String,
    pub receive_bytes: Lag,
    pub replay_bytes: Lag,
}

/// The SLI reading of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sli {
    pub kind: LagKind,
    /// The one leader, if exactly one member holds the leader lock.
    pub leader: Option<String>,
    /// How many members hold the leader lock (1 when healthy).
    pub leader_count: usize,
    /// Maximum lag in bytes over replicas whose lag is known; `None` when none is known
    /// (0 when the cluster has no replicas at all).
    pub max_bytes: Option<u64>,
    /// The replica with the maximum known lag.
    pub worst: Option<String>,
    /// Replicas whose lag of this kind is unknown.
    pub unknown: Vec<String>,
    pub members: Vec<MemberLag>,
}

impl Sli {
    pub fn measure(cluster: &Cluster, kind: LagKind) -> Sli {
        let leaders: Vec<&str> = cluster.leaders().map(|m| m.name.as_str()).collect();
        let mut members = Vec::new();
        let mut unknown = Vec::new();
        let mut worst: Option<(u64, &str)> = None;
        for m in cluster.replicas() {
            let lag = m.lag(kind).unwrap_or(Lag::Unknown);
            match lag {
                Lag::Bytes(b) => {
                    if worst.is_none_or(|(w, _)| b > w) {
                        worst = Some((b, &m.name));
                    }
                }
                Lag::Unknown => unknown.push(m.name.clone()),
            }
            members.push(MemberLag {
                name: m.name.clone(),
                state: m.state.to_string(),
                receive_bytes: m.lag(LagKind::Receive).unwrap_or(Lag::Unknown),
                replay_bytes: m.lag(LagKind::Replay).unwrap_or(Lag::Unknown),
            });
        }
        let no_replicas = members.is_empty();
        Sli {
            kind,
            leader: (leaders.len() == 1).then(|| leaders[0].to_string()),
            leader_count: leaders.len(),
            max_bytes: worst.map(|(b, _)| b).or(no_replicas.then_some(0)),
            worst: worst.map(|(_, n)| n.to_string()),
            unknown,
            members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;

    const MB: u64 = 1024 * 1024;

    #[test]
    fn max_replay_lag_over_replicas() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replay_lag_mb(7)
            .replica("pg2")
            .replay_lag_mb(3)
            .build();
        let sli = Sli::measure(&c, LagKind::Replay);
        assert_eq!(sli.max_bytes, Some(7 * MB));
        assert_eq!(sli.worst.as_deref(), Some("pg1"));
        assert_eq!(sli.leader.as_deref(), Some("pg0"));
        assert!(sli.unknown.is_empty());
    }

    #[test]
    fn replay_only_stall_is_seen_by_replay_not_receive() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .receive_lag_bytes(0)
            .replay_lag_mb(110)
            .build();
        assert_eq!(Sli::measure(&c, LagKind::Receive).max_bytes, Some(0));
        assert_eq!(Sli::measure(&c, LagKind::Replay).max_bytes, Some(110 * MB));
    }

    #[test]
    fn unknown_lag_is_named_not_counted_as_zero() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replay_lag_mb(2)
            .replica("pg2")
            .unknown_lag()
            .build();
        let sli = Sli::measure(&c, LagKind::Replay);
        assert_eq!(sli.max_bytes, Some(2 * MB));
        assert_eq!(sli.unknown, vec!["pg2".to_string()]);
    }

    #[test]
    fn all_unknown_has_no_number() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .unknown_lag()
            .build();
        assert_eq!(Sli::measure(&c, LagKind::Replay).max_bytes, None);
    }

    #[test]
    fn no_leader_is_visible() {
        let c = ClusterBuilder::new()
            .replica("pg1")
            .replay_lag_mb(0)
            .build();
        let sli = Sli::measure(&c, LagKind::Replay);
        assert_eq!(sli.leader, None);
        assert_eq!(sli.leader_count, 0);
    }
}
