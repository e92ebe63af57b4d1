//! Fuzz targets: every parser pgpatrol feeds with what a server sent (or an operator wrote),
//! each a function of raw bytes that runs the same code as the product and panics only when
//! an invariant breaks:
//!
//! - no panic, no hang, no unbounded allocation (libFuzzer's limits, `scripts/fuzz`);
//! - a parse error is one line and names where: a JSON path, a line and column, the key or
//!   the line that does not fit;
//! - what parses keeps its meaning: a member whose lag is unknown in the input is never
//!   reported with a number, an LSN that does not parse is unknown (never 0), a cluster with
//!   two leaders (or none) is never acted on, a delay that cannot be read keeps the replica.
//!
//! Three runners share these functions: the mutation tests below (captures of every Patroni
//! line, mutated as a hostile server would; part of `cargo test`, seconds), the replay of the
//! committed corpus (`fuzz/corpus/<target>/`, also in `cargo test`), and libFuzzer through
//! cargo-fuzz (`fuzz/`, `scripts/fuzz`), which grows that corpus.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use pgpatrol_core::checks::{self, Thresholds};
use pgpatrol_core::heal::{Plan, Policy};
use pgpatrol_core::{Cluster, Kept, Lag, LagKind, Lsn};

use crate::source::http::client::decode;
use crate::source::http::HttpError;
use crate::source::wire::rest::{self as wire, ClusterWire, HistoryWire, StatusWire};

/// A fuzz target: raw bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by name (the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*`).
pub const TARGETS: &[(&str, Target)] = &[
    ("cluster", cluster),
    ("patroni", patroni),
    ("history", history),
    ("config", config),
    ("etcd", etcd),
    ("kubernetes", kubernetes),
    ("pgbackrest", pgbackrest),
    ("pg", pg),
    ("watch_yml", watch_yml),
    ("patroni_yml", patroni_yml),
];

const BASE: &str = "http://fuzz.invalid:8008";

/// A body as the HTTP client hands it over (invalid UTF-8 replaced, as `reqwest`'s `text()`).
fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

fn one_line(what: &str, e: &str) {
    assert!(
        !e.contains('\n'),
        "{what}: an error of more than one line: {e:?}"
    );
}

/// A decode error of a REST body says where: the JSON path of the field that does not fit,
/// or the line and column where the JSON broke, or that the body was empty or HTML.
fn names_where(e: &HttpError) {
    let line = e.to_string();
    one_line("decode", &line);
    match e {
        HttpError::Shape { path, .. } => assert!(!path.is_empty(), "{line}"),
        HttpError::NotJson { what, .. } => assert!(
            what.contains(" line ")
                || what.contains("empty")
                || what.contains("HTML")
                || what.contains("cut off"),
            "{line}"
        ),
        other => panic!("decoding gave a transport error: {other}"),
    }
}

/// The integers of `keys` in a member's input object.
fn input_numbers(m: &Value, keys: &[&str]) -> Vec<u64> {
    keys.iter().filter_map(|k| m.get(*k)?.as_u64()).collect()
}

/// The LSNs of `keys` in a member's input object that parse.
fn input_lsns(m: &Value, keys: &[&str]) -> Vec<Lsn> {
    keys.iter()
        .filter_map(|k| m.get(*k)?.as_str()?.parse().ok())
        .collect()
}

/// A heal policy that would act on anything it may: every replica read as not kept, no
/// healthy replica required, the smallest tolerance.
fn eager_decide(cluster: &Cluster) -> Plan {
    let mut c = cluster.clone();
    for m in c.members.iter_mut().filter(|m| !m.role.is_leader()) {
        m.kept.get_or_insert_with(Kept::default);
    }
    let policy = Policy {
        tolerance: 1,
        min_healthy: 0,
        max_concurrent: usize::MAX,
        ..Policy::default()
    };
    pgpatrol_core::heal::decide(&c, &policy, &[], SystemTime::UNIX_EPOCH)
}

/// What must hold of a cluster built from `members` (the input's member objects, in order).
fn cluster_invariants(c: &Cluster, members: &[Value]) {
    assert_eq!(c.members.len(), members.len(), "members lost or added");
    for (m, input) in c.members.iter().zip(members) {
        // Lag: a number only when the input gave that number.
        if let Some(Lag::Bytes(b)) = m.receive_lag {
            assert!(
                input_numbers(input, &["receive_lag", "lag"]).contains(&b),
                "{}: receive lag {b} is not in the input {input}",
                m.name
            );
        }
        if let Some(Lag::Bytes(b)) = m.replay_lag {
            assert!(
                input_numbers(input, &["replay_lag", "lag"]).contains(&b),
                "{}: replay lag {b} is not in the input {input}",
                m.name
            );
        }
        // LSNs: only from a string that parses to it (never 0 for "unknown").
        for (lsn, keys) in [
            (m.receive_lsn, ["receive_lsn", "lsn"]),
            (m.replay_lsn, ["replay_lsn", "lsn"]),
        ] {
            if let Some(l) = lsn {
                assert!(
                    input_lsns(input, &keys).contains(&l),
                    "{}: LSN {l} is not in the input {input}",
                    m.name
                );
            }
        }
    }
    // Never acted on without exactly one leader.
    let plan = eager_decide(c);
    if c.leaders().count() != 1 {
        assert!(
            plan.actions.is_empty(),
            "{} leaders and a plan to act: {plan:?}",
            c.leaders().count()
        );
    }
    // Every reader of a snapshot renders it without a panic.
    let sli = pgpatrol_core::sli::Sli::measure(c, LagKind::Replay);
    for (m, member) in sli.members.iter().zip(c.replicas()) {
        assert_eq!(m.name, member.name);
        assert_eq!(
            Some(m.replay_bytes),
            member.replay_lag.or(Some(Lag::Unknown))
        );
    }
    // Names are unique (what a decision names is what the runner acts on).
    let names: std::collections::BTreeSet<&str> =
        c.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names.len(), c.members.len(), "a member name twice");
    let mut out = Vec::new();
    crate::output::table::list(&mut out, c, &Default::default()).expect("render");
    let _ = crate::output::table::topology_order(c);
    let _ = crate::output::table::footer(c);
    serde_json::to_string(c).expect("a snapshot serializes");
    if let Some(v) = c.patroni_version {
        let _ = crate::output::patronictl::rows(c, v);
    }
}

fn members_of(body: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("members").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// `GET /cluster`.
pub fn cluster(data: &[u8]) {
    let body = text(data);
    let url = format!("{BASE}/cluster");
    match decode::<ClusterWire>(&url, "/cluster", &body).and_then(|w| w.checked(&url)) {
        Err(e) => names_where(&e),
        Ok(w) => {
            let c = wire::into_cluster(w, None, None);
            cluster_invariants(&c, &members_of(&body));
        }
    }
}

/// `GET /patroni` (and every health check's body), alone and as the answering member's
/// status beside a captured `/cluster`, and as the legacy replay figures of Patroni < 4.1.
pub fn patroni(data: &[u8]) {
    let body = text(data);
    let s = match decode::<StatusWire>(&format!("{BASE}/patroni"), "/patroni", &body) {
        Err(e) => return names_where(&e),
        Ok(s) => s,
    };
    let status = s.to_status();
    let x = s.xlog.clone().unwrap_or_default();
    assert_eq!(status.replayed.map(|l| l.0), x.replayed_location);
    assert_eq!(status.received.map(|l| l.0), x.received_location);
    assert_eq!(status.wal_position.map(|l| l.0), x.location);
    let cluster_body = include_str!("../tests/fixtures/captures/3.0.4/cluster.json");
    let w: ClusterWire = serde_json::from_str(cluster_body).expect("capture");
    let mut legacy = wire::LegacyReplay {
        leader: Some(status.clone()),
        ..Default::default()
    };
    for m in w.members.iter().filter(|m| m.role != "leader") {
        legacy.replicas.insert(m.name.clone(), status.clone());
    }
    let c = wire::into_cluster(w, Some(&s), Some(&legacy));
    // Replay lag from /patroni: a number only when the replica's replayed position was
    // given (and the leader's position, read from its location, received or replayed).
    for m in c.members.iter().filter(|m| !m.role.is_leader()) {
        if let Some(Lag::Bytes(_)) = m.replay_lag {
            assert!(
                x.replayed_location.is_some(),
                "{}: replay lag without a position",
                m.name
            );
        }
    }
    serde_json::to_string(&c).expect("serializes");
}

/// `GET /history`.
pub fn history(data: &[u8]) {
    let body = text(data);
    let w = match decode::<HistoryWire>(&format!("{BASE}/history"), "/history", &body) {
        Err(e) => return names_where(&e),
        Ok(w) => w,
    };
    let lines = w.len();
    match wire::into_history(w) {
        Err(bad) => {
            assert!(bad.index < lines);
            one_line("history", &bad.line);
        }
        Ok(h) => {
            assert_eq!(h.len(), lines);
            let mut out = Vec::new();
            crate::output::table::history(&mut out, &h, &Default::default()).expect("render");
            for e in &h {
                if let Some(t) = &e.timestamp {
                    let _ = crate::time::parse_iso8601(t);
                }
            }
        }
    }
}

/// `GET /config`: every reading of the dynamic configuration (takeover settings, doctor's
/// facts, the delay that keeps a replica) and edit-config's comparison.
pub fn config(data: &[u8]) {
    let body = text(data);
    let c = match decode::<Value>(&format!("{BASE}/config"), "/config", &body) {
        Err(e) => return names_where(&e),
        Ok(c) => c,
    };
    let takeover = pgpatrol_core::candidates::TakeoverSettings::from_config(&c);
    let mut facts = checks::RestEvidence::default();
    crate::doctor::read_config(&mut facts, &c);
    // One reading of synchronous mode, whoever asks.
    assert_eq!(
        facts.synchronous_mode, takeover.synchronous_mode,
        "doctor and the takeover rule disagree on synchronous_mode in {c}"
    );
    if let Some(delay) = c.pointer("/postgresql/parameters/recovery_min_apply_delay") {
        let v = crate::source::kept::setting_text(delay);
        if crate::source::kept::is_zero(&v) {
            // Zero only when it reads as zero: never a delay that could not be read.
            assert!(
                v.trim().is_empty() || crate::source::kept::apply_delay_ms(&v) == Some(0.0),
                "{v:?} taken as no delay"
            );
        }
    }
    assert!(crate::ops::config::differences(&c, &c).is_empty());
    let _ = crate::ops::config::differences(&c, &Value::Null);
}

/// etcd's `/v3/kv/range` answer for a scope's prefix, decoded and read as Patroni's keys.
pub fn etcd(data: &[u8]) {
    use crate::source::dcs::etcd::decode_range;
    use crate::source::wire::dcs;
    let url = format!("{BASE}/v3/kv/range");
    let Ok(answer) = serde_json::from_slice::<Value>(data) else {
        // Not JSON: the client's own error (tested with the client), before any parser here.
        return;
    };
    let kvs = match decode_range(&url, answer) {
        Err(e) => {
            let line = e.to_string();
            one_line("etcd", &line);
            assert!(line.contains(" at ") || line.contains("kvs["), "{line}");
            return;
        }
        Ok(kvs) => kvs,
    };
    dcs_invariants(dcs::parse("/service/demo/", &kvs), "demo");
}

fn dcs_invariants(
    parsed: Result<crate::source::wire::dcs::DcsCluster, crate::source::wire::dcs::BadValue>,
    scope: &str,
) {
    let c = match parsed {
        Err(bad) => {
            assert!(!bad.key.is_empty());
            one_line("dcs", &bad.to_string());
            return;
        }
        Ok(c) => c,
    };
    let w = match c.cluster_wire(scope) {
        Err(bad) => return one_line("dcs", &bad.to_string()),
        Ok(w) => w,
    };
    let input = c.cluster_json(scope);
    let members = input
        .get("members")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let status = c.status_wire(scope);
    let cluster = wire::into_cluster(w, Some(&status), None);
    // The DCS has one leader key: at most one leader.
    assert!(cluster.leaders().count() <= 1);
    if c.leader.is_none() {
        assert!(cluster.unlocked && cluster.leaders().count() == 0);
    }
    cluster_invariants(&cluster, &members);
}

/// Patroni's Kubernetes objects as the API server lists them: `{"configmaps": <ConfigMapList>,
/// "endpoints": <EndpointsList>, "pods": <PodList>}` (kube decodes each list with serde).
pub fn kubernetes(data: &[u8]) {
    use crate::source::k8s::dcs::{by_name, in_configmaps, pod_statuses};
    use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod};
    use kube::core::ObjectList;
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    fn list<K: serde::de::DeserializeOwned + Clone>(v: &Value, k: &str) -> Option<ObjectList<K>> {
        serde_json::from_value(v.get(k)?.clone()).ok()
    }
    let (Some(cms), Some(pods)) = (list::<ConfigMap>(&v, "configmaps"), list::<Pod>(&v, "pods"))
    else {
        return;
    };
    let scope = "demo";
    let cms = by_name(cms.items.iter().map(|o| &o.metadata));
    let (objects, use_endpoints) = if in_configmaps(scope, &cms) {
        (cms, false)
    } else {
        let Some(eps) = list::<Endpoints>(&v, "endpoints") else {
            return;
        };
        (by_name(eps.items.iter().map(|o| &o.metadata)), true)
    };
    let pods = pod_statuses(pods.items.iter().map(|p| &p.metadata));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    dcs_invariants(
        crate::source::wire::dcs::from_kubernetes(scope, &objects, use_endpoints, &pods, now),
        scope,
    );
}

/// `pgbackrest info --output=json`, judged by doctor's backup checks.
pub fn pgbackrest(data: &[u8]) {
    let Ok(info) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let now = 1_800_000_000.0;
    for walfile in [None, Some("000000010000000000000005"), Some("garbage")] {
        let found = checks::backup_checks(&info, "demo", now, walfile, &Thresholds::default());
        assert!(!found.is_empty());
        for c in &found {
            one_line("pgbackrest", &c.evidence);
            if c.status == checks::Status::Ok {
                // Nothing is OK that the input did not show: a stanza named demo.
                assert!(info.to_string().contains("\"demo\""), "{c:?}");
            }
        }
    }
}

/// What PostgreSQL answers as text, one value per line: an LSN
/// (`pg_last_wal_receive_lsn()::text`), a `recovery_min_apply_delay`, two WAL file names.
pub fn pg(data: &[u8]) {
    let body = text(data);
    let mut lines = body.split('\n');
    let lsn_text = lines.next().unwrap_or_default();
    match lsn_text.parse::<Lsn>() {
        // An LSN that parses prints back as PostgreSQL writes it.
        Ok(l) => assert_eq!(
            l.to_string().parse::<Lsn>().ok(),
            Some(l),
            "{lsn_text:?} → {l}"
        ),
        Err(e) => one_line("lsn", &e.to_string()),
    }
    let delay = lines.next().unwrap_or_default();
    if crate::source::kept::is_zero(delay) {
        assert!(
            delay.trim().is_empty() || crate::source::kept::apply_delay_ms(delay) == Some(0.0),
            "{delay:?} taken as no delay"
        );
    }
    let (a, b) = (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
    );
    if let Some(n) = checks::wal_distance(a, b) {
        // Both names parse, so the distance backwards is the opposite.
        assert_eq!(checks::wal_distance(b, a), n.checked_neg(), "{a:?} {b:?}");
    }
}

/// watch.yml, read and validated as `pgpatrol watch -c` does before it starts.
pub fn watch_yml(data: &[u8]) {
    let raw = text(data);
    match crate::watch::config::WatchConfig::parse(&raw) {
        Err(e) => one_line("watch.yml", &e),
        Ok(c) => {
            if let Err(e) = c.validate() {
                one_line("watch.yml", &e);
            }
        }
    }
}

/// patroni.yml, read as `-c patroni.yml` does.
pub fn patroni_yml(data: &[u8]) {
    let raw = text(data);
    match crate::source::patroni_yml::PatroniYml::parse(&raw) {
        Err(e) => one_line("patroni.yml", &e),
        Ok(y) => {
            if let Some(u) = &y.url {
                assert!(u.starts_with("http://") || u.starts_with("https://"), "{u}");
            }
        }
    }
}

/// The seeds of `target`: the captures of every Patroni line that answer that endpoint
/// (`tests/fixtures/captures/`), and the files under `fuzz/seeds/<target>/`.
pub fn seeds(root: &std::path::Path, target: &str) -> Vec<(String, Vec<u8>)> {
    let captures = root.join("crates/pgpatrol/tests/fixtures/captures");
    let prefix = match target {
        "cluster" => Some("cluster"),
        "patroni" => Some("patroni_"),
        "history" => Some("history"),
        "config" => Some("config"),
        _ => None,
    };
    let mut out = Vec::new();
    let mut read_dir = |dir: &std::path::Path, keep: &dyn Fn(&str) -> bool| {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut found: Vec<_> = entries.filter_map(Result::ok).collect();
        found.sort_by_key(|e| e.file_name());
        for e in found {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_file() && keep(&name) {
                if let Ok(bytes) = std::fs::read(e.path()) {
                    out.push((e.path().display().to_string(), bytes));
                }
            }
        }
    };
    if let Some(p) = prefix {
        let keep = |n: &str| n.starts_with(p) && n.ends_with(".json");
        read_dir(&captures, &keep);
        if let Ok(versions) = std::fs::read_dir(&captures) {
            let mut dirs: Vec<_> = versions.filter_map(Result::ok).map(|e| e.path()).collect();
            dirs.sort();
            for d in dirs.iter().filter(|d| d.is_dir()) {
                read_dir(d, &keep);
            }
        }
    }
    read_dir(&root.join("fuzz/seeds").join(target), &|_| true);
    out
}

#[cfg(test)]
mod tests {
    //! The short run of every target, part of `cargo test`: the committed corpus and seeds
    //! replayed as they are, then each seed mutated as a hostile or broken server would
    //! answer (leaf values replaced by null, numbers at the integer edges, NaN-like and
    //! 5,000-character strings, nested arrays, keys removed, members copied into a second
    //! leader, bodies cut off, bytes flipped).

    use super::*;
    use proptest::prelude::*;

    fn root() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn target(name: &str) -> Target {
        TARGETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .unwrap_or_else(|| panic!("no target {name}"))
    }

    /// What replaces a value.
    #[derive(Debug, Clone)]
    enum Leaf {
        Null,
        Int(i64),
        Big(u64),
        Float(f64),
        Text(&'static str),
        Long,
        Nested,
        Empty,
        Bool,
    }

    impl Leaf {
        fn value(&self) -> Value {
            match self {
                Leaf::Null => Value::Null,
                Leaf::Int(i) => Value::from(*i),
                Leaf::Big(u) => Value::from(*u),
                Leaf::Float(f) => {
                    serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
                }
                Leaf::Text(s) => Value::from(*s),
                Leaf::Long => Value::from("x".repeat(5_000)),
                Leaf::Nested => (0..64).fold(Value::from(1), |v, _| Value::Array(vec![v])),
                Leaf::Empty => Value::Object(Default::default()),
                Leaf::Bool => Value::Bool(true),
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        /// Replace the n-th value (depth first) by another.
        Replace(usize, Leaf),
        /// Remove the n-th key of an object.
        Remove(usize),
        /// Copy an element of the n-th array into it (a second leader, a duplicate member).
        Copy(usize),
        /// Cut the body at this fraction (per mille).
        Cut(usize),
        /// Replace the byte at this fraction (per mille) of the body.
        Byte(usize, u8),
    }

    fn leaf() -> impl Strategy<Value = Leaf> {
        prop_oneof![
            Just(Leaf::Null),
            prop_oneof![
                Just(i64::MIN),
                Just(i64::MAX),
                Just(-1),
                Just(0),
                Just(1),
                any::<i64>()
            ]
            .prop_map(Leaf::Int),
            Just(Leaf::Big(u64::MAX)),
            prop_oneof![Just(1e308), Just(-0.0), Just(0.5), Just(f64::MIN_POSITIVE)]
                .prop_map(Leaf::Float),
            prop_oneof![
                Just("NaN"),
                Just("Infinity"),
                Just("-1"),
                Just("unknown"),
                Just(""),
                Just("0/0"),
                Just("FFFFFFFF/FFFFFFFF"),
                Just("leader"),
                Just("primary"),
                Just("standby_leader"),
                Just("streaming"),
                Just("1e400"),
                Just("\u{0}\u{202e}é")
            ]
            .prop_map(Leaf::Text),
            Just(Leaf::Long),
            Just(Leaf::Nested),
            Just(Leaf::Empty),
            Just(Leaf::Bool),
        ]
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            4 => (any::<usize>(), leaf()).prop_map(|(n, l)| Mutation::Replace(n, l)),
            2 => any::<usize>().prop_map(Mutation::Remove),
            2 => any::<usize>().prop_map(Mutation::Copy),
            1 => (0usize..1000).prop_map(Mutation::Cut),
            1 => ((0usize..1000), any::<u8>()).prop_map(|(at, b)| Mutation::Byte(at, b)),
        ]
    }

    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }

    fn with_nth(v: &mut Value, n: usize, f: impl FnOnce(&mut Value)) {
        let mut i = n % count(v);
        let mut cursor = v;
        // Walk again without raw pointers: find the path, then follow it.
        let mut path = Vec::new();
        fn find(v: &Value, i: &mut usize, path: &mut Vec<PathStep>) -> bool {
            if *i == 0 {
                return true;
            }
            *i -= 1;
            match v {
                Value::Array(a) => a.iter().enumerate().any(|(k, x)| {
                    path.push(PathStep::Index(k));
                    find(x, i, path) || {
                        path.pop();
                        false
                    }
                }),
                Value::Object(o) => o.iter().any(|(k, x)| {
                    path.push(PathStep::Key(k.clone()));
                    find(x, i, path) || {
                        path.pop();
                        false
                    }
                }),
                _ => false,
            }
        }
        find(cursor, &mut i, &mut path);
        for step in path {
            cursor = match (step, cursor) {
                (PathStep::Index(k), Value::Array(a)) => &mut a[k],
                (PathStep::Key(k), Value::Object(o)) => o.get_mut(&k).expect("key"),
                _ => unreachable!("the path was found in this value"),
            };
        }
        f(cursor);
    }

    enum PathStep {
        Index(usize),
        Key(String),
    }

    fn mutate(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
        let mut json: Option<Value> = serde_json::from_slice(seed).ok();
        let mut bytes = seed.to_vec();
        for m in mutations {
            match (m, json.as_mut()) {
                (Mutation::Replace(n, l), Some(v)) => with_nth(v, *n, |x| *x = l.value()),
                (Mutation::Remove(n), Some(v)) => with_nth(v, *n, |x| {
                    if let Value::Object(o) = x {
                        if let Some(k) = o.keys().nth(*n % o.len().max(1)).cloned() {
                            o.remove(&k);
                        }
                    }
                }),
                (Mutation::Copy(n), Some(v)) => with_nth(v, *n, |x| {
                    if let Value::Array(a) = x {
                        if let Some(e) = a.get(*n % a.len().max(1)).cloned() {
                            a.push(e);
                        }
                    }
                }),
                (Mutation::Cut(at), _) | (Mutation::Byte(at, _), _) => {
                    if let Some(v) = json.take() {
                        bytes = serde_json::to_vec(&v).expect("json");
                    }
                    let i = bytes.len() * at / 1000;
                    match m {
                        Mutation::Cut(_) => bytes.truncate(i),
                        Mutation::Byte(_, b) if i < bytes.len() => bytes[i] = *b,
                        _ => {}
                    }
                }
                (_, None) => {}
            }
        }
        match json {
            Some(v) => serde_json::to_vec(&v).expect("json"),
            None => bytes,
        }
    }

    fn run_mutated(name: &str, cases: u32) {
        let seeds = seeds(&root(), name);
        assert!(!seeds.is_empty(), "no seeds for {name}");
        let f = target(name);
        let config = ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        // The same inputs on every run (a finding reproduces); PGPATROL_FUZZ_SEED (a number)
        // explores others.
        let seed: u64 = std::env::var("PGPATROL_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5EED_CAFE);
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &bytes,
        );
        let mut runner = proptest::test_runner::TestRunner::new_with_rng(config, rng);
        let strategy = (0..seeds.len(), proptest::collection::vec(mutation(), 1..4));
        runner
            .run(&strategy, |(i, muts)| {
                let input = mutate(&seeds[i].1, &muts);
                f(&input);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{name} (PGPATROL_FUZZ_SEED={seed}): {e}"));
    }

    #[test]
    fn every_target_has_seeds_and_a_corpus_folder() {
        for (name, _) in TARGETS {
            assert!(!seeds(&root(), name).is_empty(), "no seeds for {name}");
            assert!(
                root()
                    .join("fuzz/fuzz_targets")
                    .join(format!("{name}.rs"))
                    .is_file(),
                "no libFuzzer target fuzz/fuzz_targets/{name}.rs"
            );
        }
    }

    #[test]
    fn the_corpus_and_seeds_replay_clean() {
        for (name, f) in TARGETS {
            let dir = root().join("fuzz/corpus").join(name);
            let mut inputs = seeds(&root(), name);
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.filter_map(Result::ok) {
                    // (A running scripts/fuzz may remove a file between the listing and here.)
                    if let Ok(bytes) = std::fs::read(e.path()) {
                        inputs.push((e.path().display().to_string(), bytes));
                    }
                }
            }
            for (path, bytes) in inputs {
                let r = std::panic::catch_unwind(|| f(&bytes));
                assert!(r.is_ok(), "{name}: {path} breaks an invariant");
            }
        }
    }

    #[test]
    fn mutated_cluster() {
        run_mutated("cluster", 2048);
    }

    #[test]
    fn mutated_patroni() {
        run_mutated("patroni", 2048);
    }

    #[test]
    fn mutated_history() {
        run_mutated("history", 2048);
    }

    #[test]
    fn mutated_config() {
        run_mutated("config", 2048);
    }

    #[test]
    fn mutated_etcd() {
        run_mutated("etcd", 2048);
    }

    #[test]
    fn mutated_kubernetes() {
        run_mutated("kubernetes", 2048);
    }

    #[test]
    fn mutated_pgbackrest() {
        run_mutated("pgbackrest", 2048);
    }

    #[test]
    fn mutated_pg() {
        run_mutated("pg", 2048);
    }

    #[test]
    fn mutated_watch_yml() {
        run_mutated("watch_yml", 2048);
    }

    #[test]
    fn mutated_patroni_yml() {
        run_mutated("patroni_yml", 2048);
    }
}
