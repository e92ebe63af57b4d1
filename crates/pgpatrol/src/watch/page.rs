//! The status page at `watch`'s `/`: the fleet table (one row per cluster) and a page per
//! cluster (`/cluster/NAME`: members, topology, checks, SLO, recent events). Rendered on the
//! server as plain HTML, so it works without JavaScript (refresh by reload); the script
//! compiled in with it re-renders from the event stream (`/events/stream`), says when it
//! lost the stream, and sorts and filters the fleet table. Read-only: no control acts on a
//! cluster. Nothing on it comes from a password field: the cluster's model carries none.

use std::fmt::Write as _;

use pgpatrol_core::checks::Status;
use pgpatrol_core::events::Event;
use pgpatrol_core::{Cluster, Lag, LagKind, State};

use super::events::PageSettings;
use super::{ClusterView, Shared};

const STYLE: &str = include_str!("page/style.css");
const SCRIPT: &str = include_str!("page/live.js");

/// `&`, `<`, `>`, `"` and `'` escaped for HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// How a cluster looks at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Ok,
    /// Works, but something needs a look: a replica over the tolerance, a warning check,
    /// a firing ticket alert, maintenance mode.
    Warn,
    /// Cannot be read, no running leader, a critical check, a firing page alert.
    Crit,
    /// Not polled yet.
    Unknown,
}

impl Health {
    fn class(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Warn => "warn",
            Health::Crit => "crit",
            Health::Unknown => "unknown",
        }
    }
}

/// One cluster's row: its health and why.
pub struct Row<'a> {
    pub name: &'a str,
    pub view: &'a ClusterView,
    pub health: Health,
    pub why: Vec<String>,
}

fn lag_of(c: &Cluster, kind: LagKind) -> Option<(String, Lag)> {
    c.replicas()
        .filter_map(|m| m.lag(kind).map(|l| (m.name.clone(), l)))
        .max_by_key(|(_, l)| l.bytes().unwrap_or(u64::MAX))
}

fn lag_text(l: Lag) -> String {
    match l {
        Lag::Bytes(b) => pgpatrol_core::units::human(b),
        Lag::Unknown => "unknown".into(),
    }
}

/// Judges one cluster from its view.
pub fn row<'a>(name: &'a str, view: &'a ClusterView, s: Option<&PageSettings>) -> Row<'a> {
    let mut why = Vec::new();
    let mut health = Health::Ok;
    let mut worse = |h: Health, w: String, why: &mut Vec<String>| {
        health = health.max(h);
        why.push(w);
    };
    if !view.polled {
        return Row {
            name,
            view,
            health: Health::Unknown,
            why: vec!["not polled yet".into()],
        };
    }
    if let Some(e) = &view.error {
        worse(Health::Crit, format!("cannot be read: {e}"), &mut why);
    }
    if let Some(c) = &view.cluster {
        let (kind, tol) = s.map_or((LagKind::Replay, 5 << 20), |s| (s.lag, s.tolerance));
        match c.leader() {
            None => worse(Health::Crit, "no leader".into(), &mut why),
            Some(l) if l.state != State::Running => worse(
                Health::Crit,
                format!("the leader {} is {}", l.name, l.state),
                &mut why,
            ),
            _ => {}
        }
        if c.leaders().count() > 1 {
            worse(Health::Crit, "more than one leader".into(), &mut why);
        }
        for m in c.replicas() {
            match m.lag(kind) {
                Some(l) if l.breaches(tol) => worse(
                    Health::Warn,
                    format!("{} {} lag {}", m.name, kind.as_str(), lag_text(l)),
                    &mut why,
                ),
                _ => {}
            }
            if !m.state.is_healthy_replica() {
                worse(Health::Warn, format!("{} is {}", m.name, m.state), &mut why);
            }
        }
        if c.paused {
            worse(Health::Warn, "paused".into(), &mut why);
        }
    }
    if let Some(slo) = &view.slo {
        match slo.firing() {
            Some(pgpatrol_core::slo::Severity::Page) => {
                worse(Health::Crit, "SLO page alert firing".into(), &mut why)
            }
            Some(_) => worse(Health::Warn, "SLO ticket alert firing".into(), &mut why),
            None => {}
        }
    }
    for c in &view.checks {
        match c.status {
            Status::Crit => worse(Health::Crit, format!("check {}", c.id), &mut why),
            Status::Warn => worse(Health::Warn, format!("check {}", c.id), &mut why),
            _ => {}
        }
    }
    Row {
        name,
        view,
        health,
        why,
    }
}

fn head(out: &mut String, title: &str, what: &str) {
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head>\
         <body data-page=\"{}\"><header><a href=\"/\">pgpatrol</a> <span id=\"stream\" class=\"stream\">live updates need JavaScript: reload to refresh</span></header><main id=\"main\">",
        esc(title),
        esc(what)
    );
}

fn foot(out: &mut String) {
    let _ = write!(out, "</main><script>{SCRIPT}</script></body></html>");
}

/// The fleet page.
pub fn fleet(shared: &Shared) -> String {
    let views = shared
        .views
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut out = String::with_capacity(4096 + views.len() * 600);
    head(&mut out, "pgpatrol: fleet", "fleet");
    let settings = shared.settings();
    let rows: Vec<Row> = views
        .iter()
        .map(|(n, v)| row(n, v, settings.get(n)))
        .collect();
    let bad = rows.iter().filter(|r| r.health != Health::Ok).count();
    let _ = write!(
        out,
        "<h1>Fleet: {} cluster(s), {bad} need a look</h1>\
         <p class=\"controls\"><input id=\"filter\" type=\"search\" placeholder=\"filter\" aria-label=\"filter\"> \
         <label><input id=\"unhealthy\" type=\"checkbox\"> unhealthy only</label></p>\
         <table id=\"fleet\"><thead><tr>\
         <th data-sort=\"text\">Cluster</th><th data-sort=\"health\">Health</th><th data-sort=\"text\">Leader</th>\
         <th data-sort=\"num\">Members up</th><th data-sort=\"num\">Worst lag</th><th data-sort=\"num\">SLO budget left</th>\
         <th>Paused</th><th>Pending restart</th><th>Scheduled</th><th data-sort=\"text\">Last failover</th><th>Heal</th><th>Why</th></tr></thead><tbody>",
        rows.len()
    );
    for r in &rows {
        let v = r.view;
        let s = settings.get(r.name);
        let (leader, up, worst, paused, pending, scheduled) = match &v.cluster {
            Some(c) => {
                let kind = s.map_or(LagKind::Replay, |s| s.lag);
                let up = c
                    .members
                    .iter()
                    .filter(|m| m.state == State::Running || m.state.is_healthy_replica())
                    .count();
                let worst = lag_of(c, kind);
                let pending: Vec<&str> = c
                    .members
                    .iter()
                    .filter(|m| m.pending_restart)
                    .map(|m| m.name.as_str())
                    .collect();
                let mut scheduled: Vec<String> = c
                    .members
                    .iter()
                    .filter(|m| m.scheduled_restart.is_some())
                    .map(|m| format!("restart {}", m.name))
                    .collect();
                if c.scheduled_switchover.is_some() {
                    scheduled.push("switchover".into());
                }
                (
                    c.leader().map_or("none".to_string(), |l| l.name.clone()),
                    (up, c.members.len()),
                    worst,
                    c.paused,
                    pending.join(", "),
                    scheduled.join(", "),
                )
            }
            None => (
                "?".into(),
                (0, 0),
                None,
                false,
                String::new(),
                String::new(),
            ),
        };
        let tol = s.map_or(5 << 20, |s| s.tolerance);
        let (worst_text, worst_num) = match &worst {
            Some((m, l)) => (
                format!(
                    "{} ({m}; tolerance {})",
                    lag_text(*l),
                    pgpatrol_core::units::human(tol)
                ),
                l.bytes().map_or(f64::MAX, |b| b as f64),
            ),
            None => ("none".into(), 0.0),
        };
        let budget = v
            .slo
            .as_ref()
            .and_then(|s| s.error_budget_remaining)
            .map(|b| (format!("{:.1} %", b * 100.0), b));
        let last_failover = shared
            .events
            .query(Some(r.name), 0, super::events::KEEP_PER_CLUSTER)
            .into_iter()
            .rev()
            .find(|e| e.kind == pgpatrol_core::events::EventKind::LeaderChanged)
            .map(|e| {
                format!(
                    "{} ({} → {})",
                    e.time,
                    e.before.unwrap_or_default(),
                    e.after.unwrap_or_default()
                )
            })
            .unwrap_or_default();
        let heal = if !v.heal.enabled {
            "off".to_string()
        } else if v.heal.history.iter().any(|h| h.finished.is_none()) {
            "healing".to_string()
        } else {
            "on".to_string()
        };
        let _ = write!(
            out,
            "<tr class=\"{h}\" data-cluster=\"{n}\" data-health=\"{h}\">\
             <td><a href=\"/cluster/{u}\">{n}</a></td><td><span class=\"dot {h}\"></span>{h}</td><td>{leader}</td>\
             <td data-num=\"{upn}\">{}/{}</td><td data-num=\"{worst_num}\">{worst_text}</td><td data-num=\"{bnum}\">{btext}</td>\
             <td>{paused}</td><td>{pending}</td><td>{scheduled}</td><td>{failover}</td><td>{heal}</td><td class=\"why\">{why}</td></tr>",
            up.0,
            up.1,
            h = r.health.class(),
            n = esc(r.name),
            u = esc(&urlencode(r.name)),
            leader = esc(&leader),
            upn = up.0,
            worst_text = esc(&worst_text),
            bnum = budget.as_ref().map_or(2.0, |b| b.1),
            btext = budget.map_or("no SLO".to_string(), |b| b.0),
            paused = if paused { "yes" } else { "" },
            pending = esc(&pending),
            scheduled = esc(&scheduled),
            failover = esc(&last_failover),
            why = esc(&r.why.join("; ")),
        );
    }
    out.push_str("</tbody></table>");
    events_list(&mut out, &shared.events.query(None, 0, 30), "Recent events");
    foot(&mut out);
    out
}

fn events_list(out: &mut String, events: &[Event], title: &str) {
    let _ = write!(
        out,
        "<h2>{}</h2><ol id=\"events\" class=\"events\" reversed>",
        esc(title)
    );
    for e in events.iter().rev() {
        let _ = write!(
            out,
            "<li data-id=\"{}\" data-kind=\"{}\"><time>{}</time> <b>{}</b> <code>{}</code> {}</li>",
            e.id,
            e.kind.as_str(),
            esc(&e.time),
            esc(&e.cluster),
            e.kind.as_str(),
            esc(&e.message)
        );
    }
    out.push_str("</ol>");
}

/// The page of one cluster, or `None` when no such cluster is watched.
pub fn cluster(shared: &Shared, name: &str) -> Option<String> {
    let view = shared
        .views
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)?
        .clone();
    let setting = shared.setting(name);
    let s = setting.as_ref();
    let r = row(name, &view, s);
    let mut out = String::with_capacity(8192);
    head(&mut out, &format!("pgpatrol: {name}"), name);
    let _ = write!(
        out,
        "<h1><span class=\"dot {h}\"></span>{n}: <span id=\"health\" class=\"{h}\">{h}</span></h1><p class=\"why\">{why}</p>",
        h = r.health.class(),
        n = esc(name),
        why = esc(&r.why.join("; "))
    );
    if let Some(last) = &view.last_poll {
        let _ = write!(out, "<p>Last poll {}</p>", esc(last));
    }
    if let Some(c) = &view.cluster {
        members(&mut out, c, s, &view.lag_seconds);
        topology(&mut out, shared, c, s);
    }
    if let Some(st) = &view.standby {
        let _ = write!(
            out,
            "<h2>Standby cluster</h2><p>Follows {} (source leader {}); standby leader {}: receive lag {}, replay lag {}</p>",
            esc(&st.source),
            esc(&st.source_leader),
            esc(&st.standby_leader),
            st.receive_lag.map_or("unknown".into(), pgpatrol_core::units::human),
            st.replay_lag.map_or("unknown".into(), pgpatrol_core::units::human),
        );
    }
    if !view.checks.is_empty() {
        out.push_str("<h2>Checks</h2><table><thead><tr><th>Check</th><th>Status</th><th>Evidence</th><th>Fix</th></tr></thead><tbody>");
        for c in &view.checks {
            let st = serde_json::to_value(c.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr class=\"{cls}\"><td>{}</td><td>{st}</td><td>{}</td><td>{}</td></tr>",
                esc(c.id),
                esc(&c.evidence),
                esc(c.fix.as_deref().unwrap_or("")),
                cls = match c.status {
                    Status::Crit => "crit",
                    Status::Warn => "warn",
                    _ => "",
                }
            );
        }
        out.push_str("</tbody></table>");
    }
    if let Some(slo) = &view.slo {
        out.push_str("<h2>SLO</h2><p>");
        let _ = write!(
            out,
            "error budget left: {}; good samples: {}; burn rates: {}",
            slo.error_budget_remaining
                .map_or("no samples yet".into(), |b| format!("{:.1} %", b * 100.0)),
            slo.good_ratio
                .map_or("no samples yet".into(), |g| format!("{:.3} %", g * 100.0)),
            slo.burn_rates
                .iter()
                .map(|(w, b)| format!("{w} {b:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        out.push_str("</p>");
    }
    events_list(
        &mut out,
        &shared.events.query(Some(name), 0, 50),
        "Recent events",
    );
    foot(&mut out);
    Some(out)
}

fn members(
    out: &mut String,
    c: &Cluster,
    s: Option<&PageSettings>,
    seconds: &std::collections::BTreeMap<String, f64>,
) {
    let tol = s.map_or(5 << 20, |s| s.tolerance);
    out.push_str("<h2>Members</h2><table id=\"members\"><thead><tr><th>Member</th><th>Role</th><th>State</th><th>TL</th><th>Receive lag</th><th>Replay lag</th><th>Lag (s)</th><th>Tags</th></tr></thead><tbody>");
    for m in &c.members {
        let lag = |k| m.lag(k).map_or(String::new(), lag_text);
        let over = s
            .and_then(|s| m.lag(s.lag))
            .is_some_and(|l| l.breaches(tol));
        let tags = if m.tags.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&m.tags).unwrap_or_default()
        };
        let _ = write!(
            out,
            "<tr data-member=\"{n}\" class=\"{cls}\"><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.role.title()),
            esc(&m.state.to_string()),
            m.timeline.map_or(String::new(), |t| t.to_string()),
            esc(&lag(LagKind::Receive)),
            esc(&lag(LagKind::Replay)),
            seconds
                .get(&m.name)
                .map_or(String::new(), |s| format!("{s:.1}")),
            esc(&tags),
            n = esc(&m.name),
            cls = if over { "warn" } else { "" },
        );
    }
    out.push_str("</tbody></table>");
}

fn topology(out: &mut String, shared: &Shared, c: &Cluster, s: Option<&PageSettings>) {
    out.push_str("<h2>Topology</h2><ul class=\"topology\">");
    if let Some(src) = s.and_then(|s| s.source.as_deref()) {
        // The source, linked to its own page when this watcher watches it too.
        let base = src.trim_end_matches('/');
        let settings = shared.settings();
        let watched = settings.iter().find(|(_, o)| {
            o.urls
                .iter()
                .any(|u| u.trim_end_matches('/').trim_end_matches("/patroni") == base)
        });
        match watched {
            Some((name, _)) => {
                let _ = write!(
                    out,
                    "<li id=\"source\">standby cluster of <a href=\"/cluster/{}\">{}</a> ({}) ▸</li>",
                    esc(&urlencode(name)),
                    esc(name),
                    esc(src)
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<li id=\"source\">standby cluster of {} ▸</li>",
                    esc(src)
                );
            }
        }
    }
    for (depth, m) in crate::output::table::topology_order(c) {
        let _ = write!(
            out,
            "<li style=\"margin-left:{}em\">{} <small>{}</small></li>",
            depth * 2,
            esc(&m.name),
            esc(&m.role.title())
        );
    }
    out.push_str("</ul>");
}

/// A path segment or query value, percent-encoded.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(urlencode("db one/2"), "db%20one%2F2");
    }

    #[test]
    fn a_cluster_over_its_tolerance_warns_and_says_who() {
        let c = pgpatrol_core::fixtures::ClusterBuilder::new()
            .leader("pg0")
            .replica("pg1")
            .lag_mb(40)
            .build();
        let v = ClusterView {
            polled: true,
            up: true,
            cluster: Some(std::sync::Arc::new(c)),
            ..Default::default()
        };
        let s = PageSettings {
            tolerance: 5 << 20,
            lag: LagKind::Replay,
            source: None,
            urls: Vec::new(),
        };
        let r = row("demo", &v, Some(&s));
        assert_eq!(r.health, Health::Warn);
        assert!(r.why[0].starts_with("pg1 replay lag"), "{:?}", r.why);
        let down = ClusterView {
            polled: true,
            error: Some("refused".into()),
            ..Default::default()
        };
        assert_eq!(row("demo", &down, Some(&s)).health, Health::Crit);
        assert_eq!(
            row("demo", &ClusterView::default(), None).health,
            Health::Unknown
        );
    }

    #[test]
    fn a_standby_cluster_links_its_watched_source_and_lag_seconds_show() {
        let cfg = super::super::config::WatchConfig::parse(
            "clusters:\n  - {name: dr, urls: ['http://10.0.0.9:8008'], source: 'http://10.0.0.5:8008'}\n  - {name: main, urls: ['http://10.0.0.5:8008']}\n",
        )
        .unwrap();
        let shared = Shared::new(&cfg);
        shared.view("dr", |v| {
            v.polled = true;
            v.up = true;
            v.cluster = Some(std::sync::Arc::new(
                pgpatrol_core::fixtures::ClusterBuilder::new()
                    .leader("dr0")
                    .replica("dr1")
                    .build(),
            ));
            v.lag_seconds.insert("dr1".into(), 3.5);
        });
        let html = cluster(&shared, "dr").expect("a page");
        assert!(
            html.contains("standby cluster of <a href=\"/cluster/main\">main</a>"),
            "{html}"
        );
        assert!(html.contains("<td>3.5</td>"), "{html}");
        assert!(cluster(&shared, "nope").is_none());
        let fleet_html = fleet(&shared);
        assert!(fleet_html.contains("data-cluster=\"dr\""));
        assert!(
            fleet_html.contains("data-health=\"unknown\""),
            "main is not polled yet"
        );
    }
}
