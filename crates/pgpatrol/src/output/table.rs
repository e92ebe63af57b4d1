//! Human tables: the member list (like `patronictl list` on 4.1), the cascade topology,
//! and the timeline history.

use std::io::Write;

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};

use pgpatrol_core::{Cluster, HistoryEntry, Lag, LagSource, Member, Unit};

fn lag_cell(lag: Option<Lag>) -> String {
    match lag {
        None => String::new(),
        Some(Lag::Bytes(b)) => Unit::MB.round(b).to_string(),
        Some(Lag::Unknown) => "unknown".into(),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The Host column, one entry per member: `host`, or `host:port` as patronictl shows it when
/// any port is not 5432 or two members share a host.
pub fn hosts(cluster: &Cluster) -> Vec<String> {
    let with_host: Vec<&Member> = cluster
        .members
        .iter()
        .filter(|m| m.host.is_some())
        .collect();
    let mut distinct: Vec<&str> = with_host.iter().filter_map(|m| m.host.as_deref()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let append_port = with_host.iter().any(|m| m.port.is_some_and(|p| p != 5432))
        || distinct.len() < with_host.len();
    cluster
        .members
        .iter()
        .map(|m| match (&m.host, m.port) {
            (Some(h), Some(p)) if append_port => format!("{h}:{p}"),
            (Some(h), _) => h.clone(),
            _ => String::new(),
        })
        .collect()
}

/// The title line: `Cluster: demo (7710835650880670435) · Patroni 4.1.5`.
pub fn title(cluster: &Cluster) -> String {
    let mut t = format!(
        "Cluster: {}",
        cluster.scope.as_deref().unwrap_or("(unknown scope)")
    );
    if let Some(id) = &cluster.system_identifier {
        t.push_str(&format!(" ({id})"));
    }
    if let Some(v) = cluster.patroni_version {
        t.push_str(&format!(" · Patroni {v}"));
    }
    t
}

/// Footer lines: maintenance mode, a scheduled switchover, and what is wrong with the leader.
pub fn footer(cluster: &Cluster) -> Vec<String> {
    let mut lines = Vec::new();
    if cluster.paused {
        lines.push("Maintenance mode: on".to_string());
    }
    if let Some(s) = &cluster.scheduled_switchover {
        let mut l = format!("Switchover scheduled at: {}", s.at);
        if let Some(f) = &s.from {
            l.push_str(&format!(" from: {f}"));
        }
        if let Some(t) = &s.to {
            l.push_str(&format!(" to: {t}"));
        }
        lines.push(l);
    }
    match cluster.leaders().count() {
        1 => {}
        0 => lines.push("No leader: no member holds the leader lock".to_string()),
        n => lines.push(format!(
            "{n} members claim the leader role: possible split brain"
        )),
    }
    if cluster.failsafe_active {
        lines.push("Failsafe mode is active: the DCS is unreachable".to_string());
    }
    if cluster.lag_source == LagSource::MemberStatus {
        lines.push(
            "Replay lag: computed from each member's /patroni (this Patroni's /cluster has no replay_lag)"
                .to_string(),
        );
    }
    lines
}

fn new_table() -> Table {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled);
    t
}

/// The member table. `indent` gives each member's depth in the topology (0 for `list`).
pub fn members(
    out: &mut impl Write,
    cluster: &Cluster,
    order: &[(usize, &Member)],
) -> std::io::Result<()> {
    let any = |f: &dyn Fn(&Member) -> bool| cluster.members.iter().any(f);
    let pending = any(&|m| m.pending_restart);
    let scheduled = any(&|m| m.scheduled_restart.is_some());
    let tags = any(&|m| !m.tags.is_empty());
    let mut header = vec![
        "Member",
        "Host",
        "Role",
        "State",
        "TL",
        "Receive LSN",
        "Receive Lag (MB)",
        "Replay LSN",
        "Replay Lag (MB)",
    ];
    if pending {
        header.push("Pending restart");
    }
    if scheduled {
        header.push("Scheduled restart");
    }
    if tags {
        header.push("Tags");
    }
    let mut t = new_table();
    t.set_header(header);
    let host_of = hosts(cluster);
    for (depth, m) in order {
        let idx = cluster
            .members
            .iter()
            .position(|x| std::ptr::eq(x, *m))
            .unwrap_or(0);
        let name = if *depth == 0 {
            m.name.clone()
        } else {
            format!("{}+ {}", "  ".repeat(depth - 1), m.name)
        };
        let mut row = vec![
            name,
            host_of.get(idx).cloned().unwrap_or_default(),
            m.role.title(),
            m.state.to_string(),
            opt(m.timeline),
            opt(m.receive_lsn),
            lag_cell(m.lag(pgpatrol_core::LagKind::Receive)),
            opt(m.replay_lsn),
            lag_cell(m.lag(pgpatrol_core::LagKind::Replay)),
        ];
        if pending {
            row.push(if m.pending_restart {
                "*".into()
            } else {
                String::new()
            });
        }
        if scheduled {
            row.push(
                m.scheduled_restart
                    .as_ref()
                    .and_then(|s| s.get("schedule"))
                    .and_then(|s| s.as_str())
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        if tags {
            row.push(
                m.tags
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        t.add_row(row);
    }
    for col in [4, 5, 6, 7, 8] {
        if let Some(c) = t.column_mut(col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    writeln!(out, "{}", title(cluster))?;
    writeln!(out, "{t}")?;
    for l in footer(cluster) {
        writeln!(out, " {l}")?;
    }
    Ok(())
}

/// Members in `/cluster` order, flat.
pub fn list(out: &mut impl Write, cluster: &Cluster) -> std::io::Result<()> {
    let order: Vec<(usize, &Member)> = cluster.members.iter().map(|m| (0, m)).collect();
    members(out, cluster, &order)
}

/// Members as a cascade tree: leaders first, each member under the one it replicates from
/// (tag `replicatefrom`), others under the leader. Depth-first, names sorted.
pub fn topology_order(cluster: &Cluster) -> Vec<(usize, &Member)> {
    let names: Vec<&str> = cluster.members.iter().map(|m| m.name.as_str()).collect();
    let parent = |m: &Member| -> Option<String> {
        if m.role.is_leader() {
            return None;
        }
        match m.replicatefrom() {
            Some(p) if p != m.name && names.contains(&p) => Some(p.to_string()),
            _ => cluster.leader().map(|l| l.name.clone()),
        }
    };
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    fn visit<'a>(
        c: &'a Cluster,
        name: &str,
        depth: usize,
        parent: &dyn Fn(&Member) -> Option<String>,
        seen: &mut std::collections::BTreeSet<String>,
        out: &mut Vec<(usize, &'a Member)>,
    ) {
        let Some(m) = c.member(name) else { return };
        if !seen.insert(m.name.clone()) {
            return;
        }
        out.push((depth, m));
        for child in c
            .members
            .iter()
            .filter(|x| parent(x).as_deref() == Some(name))
        {
            visit(c, &child.name, depth + 1, parent, seen, out);
        }
    }
    let roots: Vec<&Member> = cluster
        .members
        .iter()
        .filter(|m| parent(m).is_none())
        .collect();
    for r in roots {
        visit(cluster, &r.name, 0, &parent, &mut seen, &mut out);
    }
    // Members in a replicatefrom cycle (or with no leader to hang from) still show, flat.
    for m in &cluster.members {
        if !seen.contains(&m.name) {
            out.push((0, m));
        }
    }
    out
}

/// The timeline history table.
pub fn history(out: &mut impl Write, entries: &[HistoryEntry]) -> std::io::Result<()> {
    let mut t = new_table();
    t.set_header(vec!["TL", "LSN", "Reason", "Timestamp", "New Leader"]);
    for e in entries {
        t.add_row(vec![
            e.timeline.to_string(),
            e.lsn.to_string(),
            e.reason.clone(),
            e.timestamp.clone().unwrap_or_default(),
            e.new_leader.clone().unwrap_or_default(),
        ]);
    }
    writeln!(out, "{t}")?;
    if entries.is_empty() {
        writeln!(out, " No failovers or switchovers yet (timeline 1).")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgpatrol_core::fixtures::ClusterBuilder;

    fn render(c: &Cluster) -> String {
        let mut buf = Vec::new();
        list(&mut buf, c).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn list_shows_lag_in_mb_and_unknown_explicitly() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replay_lag_mb(110)
            .replica("pg2")
            .unknown_lag()
            .paused()
            .build();
        let s = render(&c);
        assert!(s.contains("| pg1"), "{s}");
        assert!(s.contains("110"), "{s}");
        assert!(s.contains("unknown"), "{s}");
        assert!(s.contains("Maintenance mode: on"), "{s}");
        assert!(s.contains("127.0.0.1:5433"), "{s}");
    }

    #[test]
    fn no_leader_is_said() {
        let c = ClusterBuilder::new().replica("pg1").build();
        assert!(render(&c).contains("No leader"));
    }

    #[test]
    fn topology_nests_cascading_replicas() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replica("pg2")
            .tag("replicatefrom", serde_json::json!("pg1"))
            .build();
        let order: Vec<(usize, String)> = topology_order(&c)
            .into_iter()
            .map(|(d, m)| (d, m.name.clone()))
            .collect();
        assert_eq!(
            order,
            vec![(0, "pg0".into()), (1, "pg1".into()), (2, "pg2".into())]
        );
    }

    #[test]
    fn topology_survives_a_replicatefrom_cycle() {
        let c = ClusterBuilder::new()
            .replica("a")
            .tag("replicatefrom", serde_json::json!("b"))
            .replica("b")
            .tag("replicatefrom", serde_json::json!("a"))
            .build();
        assert_eq!(topology_order(&c).len(), 2);
    }
}
