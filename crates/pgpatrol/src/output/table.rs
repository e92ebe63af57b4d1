//! Human tables: the member list (like `patronictl list` on 4.1), the cascade topology,
//! and the timeline history. Coloured only when the [`Look`] says so, fitted to its width
//! when it has one (a terminal), never wrapped otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use comfy_table::{
    presets, Attribute, Cell, CellAlignment, Color, ColumnConstraint, ContentArrangement, Table,
    Width,
};

use pgpatrol_core::{Cluster, HistoryEntry, Lag, LagKind, LagSource, Member, State, Unit};

use super::term::Look;

/// The member-table cells that `list --watch` marks when they change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Col {
    /// The whole row: the member joined.
    Member,
    Role,
    State,
    Timeline,
    ReceiveLag,
    ReplayLag,
}

/// Members and which of their cells changed lately (`list --watch`).
pub type Changed = BTreeMap<String, BTreeSet<Col>>;

/// How the member table emphasises what matters.
#[derive(Debug, Clone, Default)]
pub struct Emphasis {
    pub look: Look,
    /// Lag at or above this many bytes (or unknown) shows as a breach, in red.
    pub tolerance: Option<u64>,
    /// `list --watch`: the cells that changed lately. Highlighted (reverse video) with
    /// colour; without colour a first column marks the changed rows with `*`.
    pub changed: Option<Changed>,
}

impl Emphasis {
    pub fn plain() -> Emphasis {
        Emphasis::default()
    }

    fn changed(&self, member: &str, col: Col) -> bool {
        self.changed.as_ref().is_some_and(|c| {
            c.get(member)
                .is_some_and(|cols| cols.contains(&col) || cols.contains(&Col::Member))
        })
    }
}

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

/// How bad a footer line is: a warning (yellow) or an alarm (red).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Note,
    Warn,
    Alarm,
}

/// Footer lines: maintenance mode, a scheduled switchover, and what is wrong with the leader.
pub fn footer(cluster: &Cluster) -> Vec<String> {
    footer_lines(cluster).into_iter().map(|(l, _)| l).collect()
}

fn footer_lines(cluster: &Cluster) -> Vec<(String, Severity)> {
    let mut lines = Vec::new();
    if cluster.paused {
        lines.push(("Maintenance mode: on".to_string(), Severity::Warn));
    }
    if let Some(s) = &cluster.scheduled_switchover {
        let mut l = format!("Switchover scheduled at: {}", s.at);
        if let Some(f) = &s.from {
            l.push_str(&format!(" from: {f}"));
        }
        if let Some(t) = &s.to {
            l.push_str(&format!(" to: {t}"));
        }
        lines.push((l, Severity::Warn));
    }
    match cluster.leaders().count() {
        1 => {}
        0 => lines.push((
            "No leader: no member holds the leader lock".to_string(),
            Severity::Alarm,
        )),
        n => lines.push((
            format!("{n} members claim the leader role: possible split brain"),
            Severity::Alarm,
        )),
    }
    if cluster.failsafe_active {
        lines.push((
            "Failsafe mode is active: the DCS is unreachable".to_string(),
            Severity::Alarm,
        ));
    }
    if cluster.lag_source == LagSource::MemberStatus {
        lines.push((
            "Replay lag: computed from each member's /patroni (this Patroni's /cluster has no replay_lag)"
                .to_string(),
            Severity::Note,
        ));
    }
    lines
}

/// `text` in the colour of `severity` when `look` has colour.
pub fn paint(look: &Look, severity: Severity, text: &str) -> String {
    let code = match severity {
        Severity::Note => return text.to_string(),
        Severity::Warn => "33",
        Severity::Alarm => "1;31",
    };
    if look.color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// `text` in bold when `look` has colour.
pub fn bold(look: &Look, text: &str) -> String {
    if look.color {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// A table that never asks the environment: colour and width come from `look` only.
fn new_table(look: &Look) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_FULL_CONDENSED).force_no_tty();
    if look.color {
        t.enforce_styling();
    }
    match look.width {
        Some(w) => {
            t.set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(w);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    t
}

/// Green when it serves, yellow while Patroni is busy with it, red otherwise.
fn state_color(state: &State) -> Color {
    if state.is_healthy_replica() {
        Color::Green
    } else if state.is_in_transition() {
        Color::Yellow
    } else {
        Color::Red
    }
}

/// The member table. `order` gives each member's depth in the topology (0 for `list`).
pub fn members(
    out: &mut impl Write,
    cluster: &Cluster,
    order: &[(usize, &Member)],
    emphasis: &Emphasis,
) -> std::io::Result<()> {
    let look = &emphasis.look;
    let any = |f: &dyn Fn(&Member) -> bool| cluster.members.iter().any(f);
    let pending = any(&|m| m.pending_restart);
    let scheduled = any(&|m| m.scheduled_restart.is_some());
    let tags = any(&|m| !m.tags.is_empty());
    // Without colour, changes need another mark: a first column with `*`.
    let marker = emphasis.changed.is_some() && !look.color;
    let mut header = Vec::new();
    if marker {
        header.push("");
    }
    header.extend([
        "Member",
        "Host",
        "Role",
        "State",
        "TL",
        "Receive LSN",
        "Receive Lag (MB)",
        "Replay LSN",
        "Replay Lag (MB)",
    ]);
    if pending {
        header.push("Pending restart");
    }
    if scheduled {
        header.push("Scheduled restart");
    }
    if tags {
        header.push("Tags");
    }
    let mut t = new_table(look);
    t.set_header(header.clone());
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
        let changed = |col: Col| emphasis.changed(&m.name, col);
        // A changed cell shows in reverse video (colour only; see `marker`).
        let cell = |text: String, col: Option<Col>| {
            let c = Cell::new(text);
            if col.is_some_and(changed) {
                c.add_attribute(Attribute::Reverse)
                    .add_attribute(Attribute::Bold)
            } else {
                c
            }
        };
        let lag = |kind: LagKind, col: Col| {
            let value = m.lag(kind);
            let c = cell(lag_cell(value), Some(col));
            let breach = match (value, emphasis.tolerance) {
                (Some(Lag::Unknown), _) => true,
                (Some(l), Some(tol)) => l.breaches(tol),
                _ => false,
            };
            if breach {
                c.fg(Color::Red)
            } else {
                c
            }
        };
        let mut row = Vec::new();
        if marker {
            let any_change = emphasis
                .changed
                .as_ref()
                .is_some_and(|c| c.get(&m.name).is_some_and(|cols| !cols.is_empty()));
            row.push(Cell::new(if any_change { "*" } else { "" }));
        }
        let role = cell(m.role.title(), Some(Col::Role));
        let role = if m.role.is_leader() {
            role.add_attribute(Attribute::Bold)
        } else {
            role
        };
        let state = cell(m.state.to_string(), Some(Col::State)).fg(state_color(&m.state));
        row.extend([
            cell(name, Some(Col::Member)),
            cell(host_of.get(idx).cloned().unwrap_or_default(), None),
            role,
            state,
            cell(opt(m.timeline), Some(Col::Timeline)),
            cell(opt(m.receive_lsn), None),
            lag(LagKind::Receive, Col::ReceiveLag),
            cell(opt(m.replay_lsn), None),
            lag(LagKind::Replay, Col::ReplayLag),
        ]);
        if pending {
            row.push(Cell::new(if m.pending_restart { "*" } else { "" }));
        }
        if scheduled {
            row.push(Cell::new(
                m.scheduled_restart
                    .as_ref()
                    .and_then(|s| s.get("schedule"))
                    .and_then(|s| s.as_str())
                    .unwrap_or_default(),
            ));
        }
        if tags {
            row.push(Cell::new(
                m.tags
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        t.add_row(row);
    }
    let first = usize::from(marker);
    for col in [4, 5, 6, 7, 8] {
        if let Some(c) = t.column_mut(first + col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    // On a narrow terminal the headers wrap, never a value (a host or an LSN split over two
    // lines is unreadable in an incident); only the tags may wrap.
    let values = first + 9 + usize::from(pending) + usize::from(scheduled);
    for col in 0..values {
        let widest = t
            .column_cells_iter(col)
            .flatten()
            .map(|c| c.content().chars().count())
            .max()
            .unwrap_or(0);
        let widest = u16::try_from(widest).unwrap_or(u16::MAX);
        if let Some(c) = t.column_mut(col) {
            // The boundary counts the padding too.
            let w = widest.saturating_add(c.padding_width());
            c.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(w)));
        }
    }
    // Still too wide: the LSNs go first (the lag columns say what they mean), then the host.
    let (lsns, host) = (vec![first + 5, first + 7], vec![first + 1]);
    let (text, hidden) = fit(&mut t, look.width, &[&lsns, &host]);
    writeln!(out, "{}", bold(look, &title(cluster)))?;
    writeln!(out, "{text}")?;
    for (l, severity) in footer_lines(cluster) {
        writeln!(out, " {}", paint(look, severity, &l))?;
    }
    if !hidden.is_empty() {
        let names: Vec<&str> = hidden
            .iter()
            .filter_map(|i| header.get(*i).copied())
            .collect();
        writeln!(out, " Hidden to fit the terminal: {}", names.join(", "))?;
    }
    Ok(())
}

/// Columns of text on a terminal: escape sequences take none.
fn visible_width(line: &str) -> usize {
    let mut n = 0;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters, then one final byte in @..~.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        n += 1;
    }
    n
}

/// Renders `t` within `width`: as it is when that fits (the headers may wrap), else without
/// the column groups of `droppable`, one group after the other. Returns the text and the
/// hidden columns.
fn fit(t: &mut Table, width: Option<u16>, droppable: &[&[usize]]) -> (String, Vec<usize>) {
    let fits = |s: &str, w: u16| s.lines().all(|l| visible_width(l) <= usize::from(w));
    let mut text = t.to_string();
    let mut hidden = Vec::new();
    let Some(w) = width else {
        return (text, hidden);
    };
    for group in droppable {
        if fits(&text, w) {
            break;
        }
        for &i in *group {
            if let Some(c) = t.column_mut(i) {
                c.set_constraint(ColumnConstraint::Hidden);
                hidden.push(i);
            }
        }
        text = t.to_string();
    }
    (text, hidden)
}

/// Members in `/cluster` order, flat.
pub fn list(out: &mut impl Write, cluster: &Cluster, emphasis: &Emphasis) -> std::io::Result<()> {
    let order: Vec<(usize, &Member)> = cluster.members.iter().map(|m| (0, m)).collect();
    members(out, cluster, &order, emphasis)
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
pub fn history(out: &mut impl Write, entries: &[HistoryEntry], look: &Look) -> std::io::Result<()> {
    let mut t = new_table(look);
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

/// `pgpatrol doctor`: one row per check, worst first within the order the checks run.
pub fn doctor(
    out: &mut impl Write,
    checks: &[pgpatrol_core::checks::Check],
    look: &Look,
) -> std::io::Result<()> {
    use pgpatrol_core::checks::Status;
    let mut t = new_table(look);
    t.set_header(vec!["Check", "Status", "Evidence", "Fix"]);
    for c in checks {
        let color = match c.status {
            Status::Ok => Color::Green,
            Status::Warn => Color::Yellow,
            Status::Crit => Color::Red,
            Status::Unknown => Color::Magenta,
            Status::Skipped => Color::Grey,
        };
        t.add_row(vec![
            Cell::new(c.id),
            Cell::new(c.status.as_str()).fg(color),
            Cell::new(&c.evidence),
            Cell::new(c.fix.as_deref().unwrap_or("")),
        ]);
    }
    writeln!(out, "{t}")
}

/// `doctor --pre-maintenance` / `--post-maintenance`: the runbook's list, each line decided.
pub fn checklist(
    out: &mut impl Write,
    items: &[pgpatrol_core::checks::ChecklistItem],
    look: &Look,
) -> std::io::Result<()> {
    use pgpatrol_core::checks::Status;
    let mut t = new_table(look);
    t.set_header(vec!["Item", "Status", "Evidence"]);
    for i in items {
        let color = match i.status {
            Status::Ok => Color::Green,
            Status::Warn => Color::Yellow,
            Status::Crit => Color::Red,
            Status::Unknown => Color::Magenta,
            Status::Skipped => Color::Grey,
        };
        let status = if i.status == Status::Skipped && i.evidence == "a step for a person" {
            "MANUAL"
        } else {
            i.status.as_str()
        };
        t.add_row(vec![
            Cell::new(i.item),
            Cell::new(status).fg(color),
            Cell::new(&i.evidence),
        ]);
    }
    writeln!(out, "{t}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgpatrol_core::fixtures::ClusterBuilder;

    fn render(c: &Cluster) -> String {
        render_with(c, &Emphasis::plain())
    }

    fn render_with(c: &Cluster, e: &Emphasis) -> String {
        let mut buf = Vec::new();
        list(&mut buf, c, e).unwrap();
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
    fn plain_output_has_no_escape_codes_and_colour_has() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replay_lag_mb(110)
            .build();
        assert!(!render(&c).contains('\x1b'));
        let coloured = render_with(
            &c,
            &Emphasis {
                look: Look {
                    color: true,
                    width: None,
                },
                tolerance: Some(5 << 20),
                changed: None,
            },
        );
        assert!(coloured.contains('\x1b'), "{coloured}");
        // The lag over the tolerance is red (SGR 31 as comfy-table writes it: 38;5;9).
        let pg1 = coloured.lines().find(|l| l.contains("pg1")).unwrap();
        assert!(pg1.contains("\x1b[38;5;9m"), "{pg1:?}");
    }

    #[test]
    fn a_table_fits_the_width_it_is_given() {
        let c = ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .replica("pg2")
            .build();
        let wide = render(&c);
        assert!(wide.lines().skip(1).any(|l| l.len() > 80), "{wide}");
        let narrow = render_with(
            &c,
            &Emphasis {
                look: Look {
                    color: false,
                    width: Some(80),
                },
                ..Emphasis::plain()
            },
        );
        // The title is one line; every line of the table itself fits. At 80 columns the
        // values need more than the headers can give: the LSNs go, and it says so.
        for l in narrow.lines().skip(1) {
            assert!(l.chars().count() <= 80, "{} > 80: {l:?}", l.chars().count());
        }
        assert!(narrow.contains("pg2"), "{narrow}");
        assert!(narrow.contains("127.0.0.1:5433"), "{narrow}");
        assert!(!narrow.contains("LSN |"), "{narrow}");
        assert!(
            narrow.contains("Hidden to fit the terminal: Receive LSN, Replay LSN"),
            "{narrow}"
        );
        // At 110 everything stays; headers wrap, values never do.
        let mid = render_with(
            &c,
            &Emphasis {
                look: Look {
                    color: false,
                    width: Some(110),
                },
                ..Emphasis::plain()
            },
        );
        assert!(!mid.contains("Hidden"), "{mid}");
        for l in mid.lines().skip(1) {
            assert!(l.chars().count() <= 110, "{mid}");
        }
        let pg1 = mid.lines().find(|l| l.contains(" pg1 ")).unwrap();
        assert!(pg1.contains("127.0.0.1:5433"), "{mid}");
    }

    #[test]
    fn escape_codes_take_no_width() {
        assert_eq!(visible_width("\x1b[1;31mabc\x1b[0m"), 3);
        assert_eq!(visible_width("| pg0 |"), 7);
    }

    #[test]
    fn changes_are_marked_without_colour_and_highlighted_with_it() {
        let c = ClusterBuilder::new().leader("pg0").replica("pg1").build();
        let mut changed = Changed::new();
        changed.insert("pg0".into(), [Col::Role].into());
        let marked = render_with(
            &c,
            &Emphasis {
                changed: Some(changed.clone()),
                ..Emphasis::plain()
            },
        );
        let row = |s: &str, m: &str| {
            s.lines()
                .find(|l| l.contains(&format!(" {m} ")))
                .unwrap()
                .to_string()
        };
        assert!(row(&marked, "pg0").starts_with("| * | pg0"), "{marked}");
        assert!(row(&marked, "pg1").starts_with("|   | pg1"), "{marked}");
        let lit = render_with(
            &c,
            &Emphasis {
                look: Look {
                    color: true,
                    width: None,
                },
                changed: Some(changed),
                ..Emphasis::plain()
            },
        );
        // Reverse video (SGR 7) on pg0's role, none on pg1's row; no marker column.
        assert!(row(&lit, "pg0").contains("\x1b[7m"), "{lit}");
        assert!(!row(&lit, "pg1").contains("\x1b[7m"), "{lit}");
        assert!(!lit.contains("| * |"), "{lit}");
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

/// One cluster of `list --all`: the fleet-wide `patronictl list`, a line per cluster.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct FleetLine {
    pub cluster: String,
    /// The one member holding the leader lock; none while leaderless (or with two).
    pub leader: Option<String>,
    pub members: usize,
    /// Members running (the leader) or replicating (`running`, `streaming`, `in archive
    /// recovery`).
    pub running: usize,
    /// The worst known replay lag of a replica, in bytes, and whose it is.
    pub worst_lag: Option<u64>,
    pub worst_member: Option<String>,
    /// Replicas whose replay lag is unknown.
    pub lag_unknown: Vec<String>,
    /// The leader's timeline.
    pub timeline: Option<u64>,
    pub paused: bool,
    pub pending_restart: Vec<String>,
    /// Why the cluster's keys could not be read as Patroni's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FleetLine {
    pub fn of(name: &str, c: &Cluster) -> FleetLine {
        let sli = pgpatrol_core::sli::Sli::measure(c, LagKind::Replay);
        let leader = c.leader();
        FleetLine {
            cluster: name.to_string(),
            leader: leader.map(|l| l.name.clone()),
            members: c.members.len(),
            running: c
                .members
                .iter()
                .filter(|m| m.state.is_healthy_replica())
                .count(),
            worst_lag: sli.max_bytes.filter(|_| sli.worst.is_some()),
            worst_member: sli.worst.clone(),
            lag_unknown: sli.unknown.clone(),
            timeline: leader.and_then(|l| l.timeline),
            paused: c.paused,
            pending_restart: c
                .members
                .iter()
                .filter(|m| m.pending_restart)
                .map(|m| m.name.clone())
                .collect(),
            error: None,
        }
    }

    pub fn unreadable(name: &str, why: String) -> FleetLine {
        FleetLine {
            cluster: name.to_string(),
            leader: None,
            members: 0,
            running: 0,
            worst_lag: None,
            worst_member: None,
            lag_unknown: Vec::new(),
            timeline: None,
            paused: false,
            pending_restart: Vec::new(),
            error: Some(why),
        }
    }
}

/// The `list --all` table: red for no leader, a member down, lag at or above `tolerance`,
/// or keys that could not be read; yellow for maintenance mode and pending restarts.
pub fn fleet(
    out: &mut impl Write,
    lines: &[FleetLine],
    tolerance: u64,
    look: &Look,
) -> std::io::Result<()> {
    let mut t = new_table(look);
    t.set_header(
        [
            "Cluster",
            "Leader",
            "Members",
            "Worst replay lag",
            "TL",
            "Paused",
            "Pending restart",
        ]
        .map(|h| Cell::new(h).add_attribute(Attribute::Bold)),
    );
    let red = |text: String, bad: bool| {
        let c = Cell::new(text);
        if bad && look.color {
            c.fg(Color::Red)
        } else {
            c
        }
    };
    let yellow = |text: String, on: bool| {
        let c = Cell::new(text);
        if on && look.color {
            c.fg(Color::Yellow)
        } else {
            c
        }
    };
    for l in lines {
        if let Some(e) = &l.error {
            t.add_row(vec![
                red(l.cluster.clone(), true),
                red(format!("unreadable: {e}"), true),
            ]);
            continue;
        }
        let lag = match (l.worst_lag, &l.worst_member) {
            (Some(b), Some(m)) => format!("{} ({m})", pgpatrol_core::units::human(b)),
            _ if l.members <= 1 => "no replica".to_string(),
            _ => "unknown".to_string(),
        };
        let lag = if l.lag_unknown.is_empty() || l.worst_lag.is_none() {
            lag
        } else {
            format!("{lag}, {} unknown", l.lag_unknown.len())
        };
        let lag_bad = l.worst_lag.is_some_and(|b| b >= tolerance)
            || (!l.lag_unknown.is_empty() && l.members > 1);
        t.add_row(vec![
            Cell::new(&l.cluster),
            red(
                l.leader.clone().unwrap_or_else(|| "none".into()),
                l.leader.is_none(),
            ),
            red(
                format!("{}/{}", l.running, l.members),
                l.running < l.members,
            ),
            red(lag, lag_bad),
            Cell::new(l.timeline.map_or(String::new(), |t| t.to_string())),
            yellow(if l.paused { "yes" } else { "" }.into(), l.paused),
            yellow(l.pending_restart.join(", "), !l.pending_restart.is_empty()),
        ]);
    }
    writeln!(out, "{t}")
}
