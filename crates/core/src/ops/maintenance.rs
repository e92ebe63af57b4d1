//! `pause`, `resume`, `reload`, `flush` and `edit-config`: the operations that change what
//! Patroni does rather than which member leads. Their plans are short; what matters is that
//! they are the same values as every other operation's, shown by `--dry-run` and `-o json`
//! and carried out by the one runner, which reads the cluster again before each step.

use serde_json::Value;

use super::plan::{Action, OpPlan, OpStep};
use crate::model::Cluster;

/// Maintenance mode on (`pause`) or off: one `PATCH /config`, or nothing when the cluster
/// is already there.
pub fn pause(c: &Cluster, pause: bool) -> OpPlan {
    let op = if pause { "pause" } else { "resume" };
    match (c.paused, pause) {
        (true, true) => OpPlan::nothing(op, "the cluster is already paused"),
        (false, false) => OpPlan::nothing(op, "the cluster is not paused"),
        (_, true) => OpPlan::go(
            op,
            vec![OpStep::new(
                Action::Pause,
                "cluster",
                "maintenance mode on: Patroni takes no automatic action",
            )],
        ),
        (_, false) => OpPlan::go(
            op,
            vec![OpStep::new(
                Action::Resume,
                "cluster",
                "maintenance mode off: Patroni acts again",
            )],
        ),
    }
}

/// Whether the cluster is still as `pause`'s plan found it (read again before the step).
pub fn pause_still_needed(c: &Cluster, pause: bool) -> Result<(), String> {
    if c.paused == pause {
        return Err(format!(
            "the cluster is {} already (someone else did it)",
            if pause { "paused" } else { "resumed" }
        ));
    }
    Ok(())
}

/// Whether every member that answered sees maintenance mode as the cluster read does:
/// `views` holds each member's own `GET /config` (Patroni serves it from its own view of
/// the DCS; `pause` read as Patroni's `check_mode` does), `None` when it did not answer.
/// Patroni applies `PATCH /config` to its own view: a member whose view already holds the
/// requested state answers 200 and writes nothing (seen under the fault matrix, with etcd stalled: a resume
/// answered 200 and the DCS still held `pause` once etcd ran again). So when the members
/// disagree, nothing is sent.
pub fn members_agree_on_pause(
    paused: bool,
    views: &[(String, Option<Value>)],
) -> Result<(), String> {
    let word = |p: bool| if p { "paused" } else { "resumed" };
    let apart: Vec<String> = views
        .iter()
        .filter(|(_, v)| {
            v.as_ref()
                .is_some_and(|v| crate::candidates::config_flag(v, "pause") != paused)
        })
        .map(|(n, _)| format!("{n}'s"))
        .collect();
    if apart.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the cluster reads {} but {} own configuration says {}: Patroni's members do not agree on what the DCS holds (is it answering?), and a PATCH /config to a member that already sees the change writes nothing; read again with `pgpatrol list` once they agree",
        word(paused),
        apart.join(" and "),
        word(!paused)
    ))
}

/// `POST /reload` on each of `selected`.
pub fn reload(selected: &[String]) -> OpPlan {
    if selected.is_empty() {
        return OpPlan::nothing("reload", "no member matches");
    }
    OpPlan::go(
        "reload",
        selected
            .iter()
            .map(|m| {
                OpStep::new(
                    Action::Reload,
                    m,
                    "reread patroni.yml and PostgreSQL's configuration",
                )
            })
            .collect(),
    )
}

/// `DELETE /restart` on each member of `only` (all when empty) that holds a scheduled
/// restart.
pub fn flush_restart(c: &Cluster, only: &[String]) -> OpPlan {
    let steps: Vec<OpStep> = c
        .members
        .iter()
        .filter(|m| only.is_empty() || only.contains(&m.name))
        .filter(|m| m.scheduled_restart.is_some())
        .map(|m| {
            OpStep::new(
                Action::CancelRestart,
                &m.name,
                "it holds a scheduled restart",
            )
        })
        .collect();
    if steps.is_empty() {
        return OpPlan::nothing("flush", "no restart is scheduled");
    }
    OpPlan::go("flush", steps)
}

/// `DELETE /switchover` when a switchover is scheduled (sent to the leader first; any
/// member can write the failover key).
pub fn flush_switchover(c: &Cluster) -> OpPlan {
    if c.scheduled_switchover.is_none() {
        return OpPlan::nothing("flush", "no switchover is scheduled");
    }
    OpPlan::go(
        "flush",
        vec![OpStep::new(
            Action::CancelSwitchover,
            "cluster",
            "a switchover is scheduled",
        )],
    )
}

/// `PATCH /config` with `patch` (computed from the configuration as read), or nothing
/// when the configuration already holds the edit.
pub fn edit_config(patch: Option<&Value>) -> OpPlan {
    match patch {
        None => OpPlan::nothing("edit-config", "the configuration already holds that"),
        Some(_) => OpPlan::go(
            "edit-config",
            vec![OpStep::new(
                Action::PatchConfig,
                "cluster",
                "the patch between the configuration as read and the one asked for",
            )],
        ),
    }
}

/// Whether the configuration is still the one the patch was computed from: a change made
/// by someone else since the read stops the edit before its `PATCH`, instead of being kept
/// or overwritten unseen. The error names every changed key as a dotted path.
pub fn config_unchanged(read: &Value, now: &Value) -> Result<(), String> {
    let mut changed = Vec::new();
    differing_paths(read, now, "", &mut changed);
    if changed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the configuration changed between the read and the PATCH ({}): someone else's edit; run edit-config again to see the new diff",
        changed.join(", ")
    ))
}

/// Whether every member that answered holds the configuration edit-config read: `views`
/// holds each member's own `GET /config` (its own view of the DCS), `None` when it did not
/// answer. Patroni applies a `PATCH /config` to the receiving member's view and writes
/// nothing when that view already has the change, so an edit sent while the members
/// disagree could be answered 200 and read back as applied by a member as behind as the
/// one that took it.
pub fn members_agree_on_config(
    read: &Value,
    views: &[(String, Option<Value>)],
) -> Result<(), String> {
    let apart: Vec<String> = views
        .iter()
        .filter_map(|(name, view)| {
            let mut changed = Vec::new();
            differing_paths(read, view.as_ref()?, "", &mut changed);
            (!changed.is_empty()).then(|| format!("{name} ({})", changed.join(", ")))
        })
        .collect();
    if apart.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the own configuration of {} differs from the one read: Patroni's members do not agree on what the DCS holds (is it answering, or is a change still reaching them?), and a PATCH /config to a member that already sees the change writes nothing; run edit-config again once they agree",
        apart.join(", ")
    ))
}

fn differing_paths(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => differing_paths(v, w, &join(k), out),
                    None => out.push(join(k)),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(join(k));
            }
        }
        _ if a != b => out.push(if at.is_empty() {
            "the whole document".to_string()
        } else {
            at.to_string()
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ClusterBuilder;
    use serde_json::json;

    #[test]
    fn pause_has_one_step_or_nothing() {
        let c = ClusterBuilder::new().leader("pg0").build();
        assert_eq!(pause(&c, true).steps[0].action, Action::Pause);
        assert!(pause(&c, false).nothing.is_some());
        assert!(pause_still_needed(&c, true).is_ok());
        let p = ClusterBuilder::new().leader("pg0").paused().build();
        assert_eq!(pause(&p, false).steps[0].action, Action::Resume);
        assert!(pause_still_needed(&p, true).is_err());
    }

    #[test]
    fn members_that_see_another_pause_state_stop_the_write() {
        // Each member's own /config: `pause` set, absent, or not answered.
        let v = |p: &[(&str, Option<bool>)]| -> Vec<(String, Option<Value>)> {
            p.iter()
                .map(|(n, b)| {
                    (
                        n.to_string(),
                        b.map(|b| if b { json!({"pause": true}) } else { json!({}) }),
                    )
                })
                .collect()
        };
        assert!(members_agree_on_pause(true, &v(&[("pg0", Some(true)), ("pg1", None)])).is_ok());
        assert!(members_agree_on_pause(false, &v(&[])).is_ok());
        let why = members_agree_on_pause(true, &v(&[("pg0", Some(false)), ("pg1", Some(true))]))
            .expect_err("pg0 sees no pause");
        assert!(
            why.contains("reads paused but pg0's own configuration says resumed"),
            "{why}"
        );
        let why = members_agree_on_pause(false, &v(&[("pg0", Some(true)), ("pg1", Some(true))]))
            .expect_err("both see a pause");
        assert!(
            why.contains("pg0's and pg1's own configuration says paused"),
            "{why}"
        );
    }

    #[test]
    fn members_whose_configuration_differs_stop_the_edit() {
        let read = json!({"ttl": 30, "postgresql": {"parameters": {"work_mem": "4MB"}}});
        let mut behind = read.clone();
        behind["postgresql"]["parameters"]["work_mem"] = json!("8MB");
        let ok = [
            ("pg0".to_string(), Some(read.clone())),
            ("pg1".to_string(), None),
        ];
        assert!(members_agree_on_config(&read, &ok).is_ok());
        let apart = [
            ("pg0".to_string(), Some(read.clone())),
            ("pg1".to_string(), Some(behind)),
        ];
        let why = members_agree_on_config(&read, &apart).expect_err("pg1 differs");
        assert!(
            why.contains("own configuration of pg1 (postgresql.parameters.work_mem) differs"),
            "{why}"
        );
    }

    #[test]
    fn flush_targets_only_what_is_scheduled() {
        let mut c = ClusterBuilder::new().leader("pg0").replica("pg1").build();
        assert!(flush_restart(&c, &[]).nothing.is_some());
        assert!(flush_switchover(&c).nothing.is_some());
        c.members[1].scheduled_restart = Some(json!({"schedule": "2030-01-01T00:00:00Z"}));
        let p = flush_restart(&c, &[]);
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].member, "pg1");
        assert!(flush_restart(&c, &["pg0".into()]).nothing.is_some());
    }

    #[test]
    fn an_edit_stops_when_the_configuration_moved_since_the_read() {
        let read = json!({"loop_wait": 10, "ttl": 30});
        assert!(config_unchanged(&read, &read.clone()).is_ok());
        let moved =
            json!({"loop_wait": 5, "ttl": 30, "postgresql": {"parameters": {"work_mem": "8MB"}}});
        let why = config_unchanged(&read, &moved).unwrap_err();
        assert!(why.contains("(loop_wait, postgresql)"), "{why}");
        let deep = json!({"postgresql": {"parameters": {"work_mem": "4MB"}}});
        let why = config_unchanged(
            &deep,
            &json!({"postgresql": {"parameters": {"work_mem": "8MB"}}}),
        )
        .unwrap_err();
        assert!(why.contains("(postgresql.parameters.work_mem)"), "{why}");
        assert!(edit_config(None).nothing.is_some());
        assert_eq!(
            edit_config(Some(&json!({"ttl": 20}))).steps[0].action,
            Action::PatchConfig
        );
        assert_eq!(reload(&["pg0".into()]).steps.len(), 1);
    }
}
