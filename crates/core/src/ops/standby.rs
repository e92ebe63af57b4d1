//! `standby promote` and `standby demote`: a standby cluster becomes a primary cluster, or
//! a primary cluster steps down under another. Both are judged from the cluster and from
//! the source cluster as it was read, or from why it could not be read: "could not tell" is
//! never "no primary" (a source that cannot be read may well still take writes).

use super::plan::{Action, OpPlan, OpStep};
use super::Refusal;
use crate::model::{Cluster, Member, Role, State};

/// A leader that writes or may write again: any state but stopped or failed (starting,
/// restarting, unknown all count). A standby leader counts unless `primary_only`.
pub fn live_leader(c: &Cluster, primary_only: bool) -> Option<&Member> {
    let down = matches!(
        c.leader().map(|l| &l.state),
        Some(State::Stopped | State::Crashed | State::StartFailed | State::InitdbFailed)
    );
    c.leader().filter(|l| {
        !down
            && match l.role {
                Role::Leader => true,
                Role::StandbyLeader => !primary_only,
                _ => false,
            }
    })
}

/// What was read of a source cluster at `url`: its cluster, or why it could not be read.
#[derive(Debug, Clone, Copy)]
pub struct SourceRead<'a> {
    pub url: &'a str,
    pub read: Result<&'a Cluster, &'a str>,
}

/// Whether `standby` (a standby cluster) may be promoted to a writable primary. `source`
/// is the source cluster as read (`--source-url`); without it, only `source_gone` (the
/// operator's word that the source is gone) lets it through. Returns the standby leader.
pub fn promote<'c>(
    standby: &'c Cluster,
    source: Option<SourceRead<'_>>,
    source_gone: bool,
) -> Result<&'c Member, Refusal> {
    let Some(leader) = standby.leader() else {
        return Err(Refusal::Invalid(
            "the cluster has no leader: nothing to promote".into(),
        ));
    };
    if leader.role != Role::StandbyLeader {
        return Err(Refusal::Invalid(format!(
            "{} is a {}, not a standby leader: this is not a standby cluster",
            leader.name, leader.role
        )));
    }
    match source {
        None if source_gone => Ok(leader),
        None => Err(Refusal::Invalid(
            "name the source with --source-url (pgpatrol checks it has no running primary), or say --source-gone".into(),
        )),
        Some(SourceRead { url, read: Err(e) }) => Err(Refusal::Unsafe(format!(
            "cannot read the source at {url} ({e}), so cannot tell that it has no primary: fix the URL or credentials, or pass --source-gone once you know it is gone"
        ))),
        Some(SourceRead { url, read: Ok(src) }) => match live_leader(src, true) {
            Some(p) => Err(Refusal::Unsafe(format!(
                "the source ({url}) still has a primary, {}: stop or demote it first (never two writable leaders on purpose)",
                p.name
            ))),
            None => Ok(leader),
        },
    }
}

/// Whether `cluster` (a primary cluster) may step down into a standby cluster of the new
/// source. `source` is the new source as read (`--source-url`): it must have a running
/// leader to follow and be the same database (the same system identifier, both known).
/// `source_pg` is the new source's PostgreSQL address and whether it answered a
/// connection. Returns the leader that steps down.
pub fn demote<'c>(
    cluster: &'c Cluster,
    source: Option<SourceRead<'_>>,
    source_pg: Option<(&str, bool)>,
) -> Result<&'c Member, Refusal> {
    let Some(leader) = cluster.leader() else {
        return Err(Refusal::Invalid(
            "the cluster has no leader: nothing to demote".into(),
        ));
    };
    if leader.role == Role::StandbyLeader {
        return Err(Refusal::Invalid(format!(
            "{} is already a standby leader: this is a standby cluster already",
            leader.name
        )));
    }
    if let Some(SourceRead { url, read }) = source {
        let src = read.map_err(|e| {
            Refusal::Unsafe(format!(
                "cannot read the new source at {url} ({e}): fix the URL or credentials"
            ))
        })?;
        if live_leader(src, false).is_none() {
            return Err(Refusal::Unsafe(format!(
                "the new source ({url}) has no running leader to follow"
            )));
        }
        match (
            src.system_identifier.as_deref(),
            cluster.system_identifier.as_deref(),
        ) {
            (Some(theirs), Some(mine)) if theirs != mine => {
                return Err(Refusal::Invalid(format!(
                    "--source-url {url} is another database (system identifier {theirs}, this cluster's is {mine}): a standby of it cannot replicate"
                )))
            }
            (Some(_), Some(_)) => {}
            (theirs, mine) => {
                let unread = match (theirs, mine) {
                    (None, None) => "either cluster's",
                    (None, _) => "the new source's",
                    _ => "this cluster's",
                };
                return Err(Refusal::Unsafe(format!(
                    "cannot read {unread} system identifier (database_system_identifier of the leader's /patroni), so cannot tell that {url} is the same database"
                )));
            }
        }
    }
    if let Some((addr, false)) = source_pg {
        return Err(Refusal::Unsafe(format!(
            "no PostgreSQL answers at {addr} (the source's; a connection alone is not an answer): the standby leader could not replicate"
        )));
    }
    Ok(leader)
}

/// `standby promote` as a plan: one step on the standby leader, or [`promote`]'s refusal.
pub fn promote_plan(
    standby: &Cluster,
    source: Option<SourceRead<'_>>,
    source_gone: bool,
) -> OpPlan {
    let why = match source {
        Some(s) => format!("the source ({}) has no running primary", s.url),
        None => "--source-gone: the operator says the source is gone".into(),
    };
    OpPlan::from_rule(
        "standby promote",
        promote(standby, source, source_gone)
            .map(|l| vec![OpStep::new(Action::Promote, &l.name, why)]),
    )
}

/// `standby demote` as a plan: one step on the leader, or [`demote`]'s refusal.
pub fn demote_plan(
    cluster: &Cluster,
    source: Option<SourceRead<'_>>,
    source_pg: Option<(&str, bool)>,
) -> OpPlan {
    let why = match (source, source_pg) {
        (Some(s), _) => format!(
            "the new source ({}) has a running leader and is the same database",
            s.url
        ),
        (None, Some((addr, _))) => format!("the source's PostgreSQL answers at {addr}"),
        (None, None) => "the source is an archive (restore_command)".into(),
    };
    OpPlan::from_rule(
        "standby demote",
        demote(cluster, source, source_pg).map(|l| vec![OpStep::new(Action::Demote, &l.name, why)]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;

    fn standby() -> Cluster {
        ClusterBuilder::new()
            .standby_leader("sb0")
            .replica("sb1")
            .build()
    }

    fn primary(sysid: Option<&str>) -> Cluster {
        let mut c = ClusterBuilder::new().leader("pg0").replica("pg1").build();
        c.system_identifier = sysid.map(str::to_owned);
        c
    }

    fn read<'a>(c: &'a Cluster) -> Option<SourceRead<'a>> {
        Some(SourceRead {
            url: "http://src:8008",
            read: Ok(c),
        })
    }

    #[test]
    fn promote_is_refused_while_the_source_may_write() {
        let sb = standby();
        let src = primary(Some("1"));
        let e = promote(&sb, read(&src), false).unwrap_err();
        assert!(matches!(e, Refusal::Unsafe(_)), "{e:?}");
        assert!(e.reason().contains("still has a primary, pg0"), "{e}");
        // Starting or unknown may write again; only stopped or crashed is gone.
        for state in [State::Starting, State::Unknown, State::Other("x".into())] {
            let src = ClusterBuilder::new().leader("pg0").state(state).build();
            assert!(promote(&sb, read(&src), false).is_err());
        }
        for state in [State::Stopped, State::Crashed] {
            let src = ClusterBuilder::new().leader("pg0").state(state).build();
            assert_eq!(promote(&sb, read(&src), false).unwrap().name, "sb0");
        }
    }

    #[test]
    fn a_source_that_cannot_be_read_refuses_promote() {
        let e = promote(
            &standby(),
            Some(SourceRead {
                url: "http://src:8008",
                read: Err("connection refused"),
            }),
            false,
        )
        .unwrap_err();
        assert!(matches!(e, Refusal::Unsafe(_)), "{e:?}");
        assert!(e.reason().contains("cannot read the source"), "{e}");
        // Without a source, only the operator's word.
        assert!(matches!(
            promote(&standby(), None, false),
            Err(Refusal::Invalid(_))
        ));
        assert!(promote(&standby(), None, true).is_ok());
        // A primary cluster is no standby cluster.
        assert!(matches!(
            promote(&primary(None), None, true),
            Err(Refusal::Invalid(_))
        ));
    }

    #[test]
    fn demote_needs_a_live_leader_of_the_same_database() {
        let me = primary(Some("7000"));
        let same = {
            let mut c = standby();
            c.system_identifier = Some("7000".into());
            c
        };
        assert_eq!(demote(&me, read(&same), None).unwrap().name, "pg0");
        let other = primary(Some("8000"));
        let e = demote(&me, read(&other), None).unwrap_err();
        assert!(matches!(e, Refusal::Invalid(_)), "{e:?}");
        assert!(e.reason().contains("another database"), "{e}");
        let no_leader = ClusterBuilder::new().replica("x0").build();
        let e = demote(&me, read(&no_leader), None).unwrap_err();
        assert!(e.reason().contains("no running leader"), "{e}");
        let e = demote(
            &me,
            Some(SourceRead {
                url: "http://src:8008",
                read: Err("timed out"),
            }),
            None,
        )
        .unwrap_err();
        assert!(e.reason().contains("cannot read the new source"), "{e}");
    }

    #[test]
    fn a_system_identifier_nobody_could_read_refuses_demote() {
        let unknown = standby();
        let e = demote(&primary(Some("7000")), read(&unknown), None).unwrap_err();
        assert!(matches!(e, Refusal::Unsafe(_)), "{e:?}");
        assert!(
            e.reason()
                .contains("cannot read the new source's system identifier"),
            "{e}"
        );
        let mut known = standby();
        known.system_identifier = Some("7000".into());
        let e = demote(&primary(None), read(&known), None).unwrap_err();
        assert!(
            e.reason().contains("this cluster's system identifier"),
            "{e}"
        );
    }

    #[test]
    fn demote_is_refused_when_the_source_postgres_does_not_answer() {
        let me = primary(Some("7000"));
        let e = demote(&me, None, Some(("127.0.0.1:9", false))).unwrap_err();
        assert!(
            e.reason().contains("no PostgreSQL answers at 127.0.0.1:9"),
            "{e}"
        );
        assert!(demote(&me, None, Some(("127.0.0.1:9", true))).is_ok());
        assert!(matches!(
            demote(&standby(), None, None),
            Err(Refusal::Invalid(_))
        ));
    }
}
