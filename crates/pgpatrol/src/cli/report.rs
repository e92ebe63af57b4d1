//! `pgpatrol report`: what support asks for when a cluster misbehaves, in one `.tar.gz`.
//! Everything is read with the readers the other commands use; what cannot be read is
//! listed in `MISSING.txt` with the reason, and the archive is still written. Secrets are
//! redacted by the audit log's rules unless `--no-redact`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::common::{BackrestArgs, ClusterArgs, PgArgs};
use super::doctor::DoctorArgs;
use super::Outcome;
use crate::output::table::{self, Emphasis};
use crate::redact::{redact, redact_text, secret_key};
use crate::source::http::{base_url, Request};
use crate::source::{ClusterSource, Detail};

/// Collect a support bundle: one .tar.gz with the cluster as Patroni, the DCS, PostgreSQL
/// and pgBackRest see it, pgpatrol's own views, and the members' logs.
///
/// In the archive: /cluster, /history and /config; each member's /patroni and /metrics;
/// pgpatrol's list, topology and doctor (JSON); the DCS keys of the scope (with --dcs, or
/// -c patroni.yml with an etcd3 section); with a PostgreSQL login, each member's
/// non-default settings, pg_stat_replication, pg_replication_slots, pg_stat_archiver and
/// the sizes of its databases and pg_wal; `pgbackrest info` (with --pgbackrest-stanza); the
/// last lines of each member's log (with --lab DIR: the lab's member logs hold Patroni's
/// and PostgreSQL's output). README.txt says what each file is; MISSING.txt what could not
/// be read and why. Passwords (in configuration, conninfo, commands, URLs, secret keys) are
/// replaced by *** unless --no-redact.
///
/// Prints the archive's path. Exit codes: 0 written (even with parts missing); 2 error (bad
/// input, the archive could not be written).
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(flatten)]
    pub pg: PgArgs,

    #[command(flatten)]
    pub backrest: BackrestArgs,

    /// The lab (`pgpatrol lab up --dir DIR`) whose member logs to include.
    #[arg(long, value_name = "DIR", env = "PGPATROL_LAB_DIR")]
    pub lab: Option<PathBuf>,

    /// How many of the last lines of each log.
    #[arg(long, default_value_t = 500)]
    pub log_lines: usize,

    /// The folder the archive is written to.
    #[arg(
        short = 'o',
        long = "output-dir",
        value_name = "DIR",
        default_value = "."
    )]
    pub output_dir: PathBuf,

    /// Keep passwords and other secrets in the archive (a warning says so).
    #[arg(long)]
    pub no_redact: bool,
}

/// The archive's files as they are collected, and what could not be read.
struct Bundle {
    redact: bool,
    files: Vec<(String, Vec<u8>, &'static str)>,
    missing: Vec<(String, String)>,
}

impl Bundle {
    fn json(&mut self, name: String, v: &Value, what: &'static str) {
        let v = if self.redact { redact(v) } else { v.clone() };
        let mut body = serde_json::to_vec_pretty(&v).unwrap_or_default();
        body.push(b'\n');
        self.files.push((name, body, what));
    }

    /// Like [`Bundle::json`], but only secrets inside string values are redacted (for a
    /// document whose key names are not about secrets).
    fn json_values(&mut self, name: String, v: &Value, what: &'static str) {
        fn strings(v: &Value) -> Value {
            match v {
                Value::String(s) => Value::String(redact_text(s)),
                Value::Array(a) => Value::Array(a.iter().map(strings).collect()),
                Value::Object(o) => {
                    Value::Object(o.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
                }
                other => other.clone(),
            }
        }
        let v = if self.redact { strings(v) } else { v.clone() };
        let mut body = serde_json::to_vec_pretty(&v).unwrap_or_default();
        body.push(b'\n');
        self.files.push((name, body, what));
    }

    fn text(&mut self, name: String, text: &str, what: &'static str) {
        let body = if self.redact {
            text.lines().map(redact_text).collect::<Vec<_>>().join("\n") + "\n"
        } else {
            text.to_string()
        };
        self.files.push((name, body.into_bytes(), what));
    }

    fn miss(&mut self, name: impl Into<String>, why: impl std::fmt::Display) {
        // One line each, whatever the error carried.
        let why = why.to_string().replace('\n', " ");
        self.missing.push((name.into(), why));
    }
}

/// A JSON answer as JSON, anything else as a string (never lost for not parsing).
fn as_json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()))
}

/// `GET path` on the first of `bases` that answers 200: the answer and who gave it.
async fn first_answer(
    source: &ClusterSource,
    bases: &[String],
    path: &str,
) -> Result<(String, String), String> {
    let mut errors = Vec::new();
    for base in bases {
        match source.http().send(&Request::get(base, path)).await {
            Ok(r) if r.status.is_success() => return Ok((r.body, base.clone())),
            Ok(r) => errors.push(format!("{base}{path}: HTTP {}", r.status.as_u16())),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(if errors.is_empty() {
        "no member's REST API address is known".into()
    } else {
        errors.join("; ")
    })
}

/// The queries run on each member's PostgreSQL, by file name.
const PG_QUERIES: [(&str, &str, &str); 5] = [
    (
        "settings",
        "SELECT name, setting, unit, source FROM pg_settings WHERE source NOT IN ('default', 'override') ORDER BY name",
        "PostgreSQL settings that are not the default",
    ),
    (
        "stat_replication",
        "SELECT * FROM pg_stat_replication",
        "pg_stat_replication: the walsenders (on the leader)",
    ),
    (
        "replication_slots",
        "SELECT * FROM pg_replication_slots",
        "pg_replication_slots",
    ),
    (
        "stat_archiver",
        "SELECT * FROM pg_stat_archiver",
        "pg_stat_archiver: WAL archiving",
    ),
    (
        "sizes",
        "SELECT (SELECT sum(pg_database_size(oid)) FROM pg_database)::bigint AS databases_bytes, (SELECT sum(size) FROM pg_ls_waldir())::bigint AS pg_wal_bytes, (SELECT count(*) FROM pg_ls_waldir()) AS pg_wal_files, current_setting('data_directory') AS data_directory",
        "sizes: all databases, pg_wal (bytes, files), and the data directory's path",
    ),
];

impl ReportArgs {
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        if self.no_redact {
            eprintln!("pgpatrol: warning: --no-redact: passwords and other secrets are kept in the archive; share it only where they may be read");
        }
        let mut b = Bundle {
            redact: !self.no_redact,
            files: Vec::new(),
            missing: Vec::new(),
        };
        let source = self.cluster.source().await?;
        let cluster = match source.snapshot(Detail::Full).await {
            Ok(s) => Some(s.cluster),
            Err(e) => {
                b.miss(
                    "pgpatrol/list.txt, topology.txt, members/*",
                    format!("{e:#}"),
                );
                None
            }
        };

        // Patroni's own answers, from the leader first, then any member, then the URLs given.
        let mut bases: Vec<String> = Vec::new();
        if let Some(c) = &cluster {
            let leader = c.leader().map(|l| l.name.clone());
            let mut members: Vec<_> = c.members.iter().collect();
            members.sort_by_key(|m| Some(&m.name) != leader.as_ref());
            bases.extend(
                members
                    .iter()
                    .filter_map(|m| m.api_url.as_deref().and_then(|u| base_url(u).ok())),
            );
        }
        bases.extend(
            self.cluster
                .urls
                .iter()
                .filter_map(|u| base_url(u).ok())
                .filter(|u| !bases.contains(u))
                .collect::<Vec<_>>(),
        );
        for (path, what) in [
            ("/cluster", "Patroni's GET /cluster"),
            ("/history", "Patroni's GET /history: the timelines"),
            (
                "/config",
                "Patroni's GET /config: the dynamic configuration",
            ),
        ] {
            let name = format!("patroni{path}.json");
            match first_answer(&source, &bases, path).await {
                Ok((body, _)) => b.json(name, &as_json(&body), what),
                Err(e) => b.miss(name, e),
            }
        }
        if let Some(c) = &cluster {
            for m in &c.members {
                let Some(base) = m.api_url.as_deref().and_then(|u| base_url(u).ok()) else {
                    b.miss(
                        format!("members/{}/*", m.name),
                        "no api_url in /cluster: its REST API cannot be reached",
                    );
                    continue;
                };
                for (path, file, what) in [
                    (
                        "/patroni",
                        "patroni.json",
                        "the member's own GET /patroni: its state as it sees it",
                    ),
                    (
                        "/metrics",
                        "metrics.txt",
                        "the member's GET /metrics (Prometheus text)",
                    ),
                ] {
                    let name = format!("members/{}/{file}", m.name);
                    match first_answer(&source, std::slice::from_ref(&base), path).await {
                        Ok((body, _)) if file.ends_with(".json") => {
                            b.json(name, &as_json(&body), what)
                        }
                        Ok((body, _)) => b.text(name, &body, what),
                        Err(e) => b.miss(name, e),
                    }
                }
            }
            let mut text = Vec::new();
            table::list(&mut text, c, &Emphasis::plain())?;
            b.text(
                "pgpatrol/list.txt".into(),
                &String::from_utf8_lossy(&text),
                "pgpatrol list: the members, their state and lag",
            );
            b.json(
                "pgpatrol/list.json".into(),
                &serde_json::to_value(c)?,
                "pgpatrol list -o json: the cluster as pgpatrol reads it",
            );
            let mut text = Vec::new();
            table::members(&mut text, c, &table::topology_order(c), &Emphasis::plain())?;
            b.text(
                "pgpatrol/topology.txt".into(),
                &String::from_utf8_lossy(&text),
                "pgpatrol topology: who replicates from whom",
            );
        }
        let doctor = DoctorArgs {
            cluster: self.cluster.clone(),
            observe: Duration::from_secs(3),
            checks: None,
            pg: self.pg.clone(),
            backrest: self.backrest.clone(),
            pre_maintenance: false,
            source_url: None,
            post_maintenance: false,
            format: super::common::Format::Json,
        };
        match doctor.report().await {
            Ok(r) => b.json(
                "pgpatrol/doctor.json".into(),
                &serde_json::to_value(&r)?,
                "pgpatrol doctor -o json: the runbook's checks, each with evidence and fix",
            ),
            Err(e) => b.miss("pgpatrol/doctor.json", format!("{e:#}")),
        }

        self.dcs(&mut b).await;
        self.postgres(cluster.as_ref(), &mut b).await;
        self.pgbackrest(&mut b).await;
        self.logs(&mut b).await;

        let scope = cluster
            .as_ref()
            .and_then(|c| c.scope.clone())
            .unwrap_or_else(|| "cluster".into());
        let path = self.write(&scope, b)?;
        writeln!(out, "{}", path.display())?;
        Ok(Outcome::Ok)
    }

    async fn dcs(&self, b: &mut Bundle) {
        let name = "dcs/keys.json";
        // The DCS as `remove` finds it: --dcs, or the etcd3 section of -c patroni.yml.
        let mut access = self.cluster.access();
        if access.dcs.is_none() {
            if access.patroni_yml.is_none() {
                b.miss(
                    name,
                    "no DCS named: give --dcs etcd3://HOST:PORT, or -c patroni.yml with an etcd3 section",
                );
                return;
            }
            access.dcs = Some(crate::source::dcs::DcsSettings::default());
        }
        let source = match access.target(self.cluster.request_timeout) {
            Ok(t) => match t.connect().await {
                Ok(s) => s,
                Err(e) => return b.miss(name, e),
            },
            Err(e) => return b.miss(name, e),
        };
        let Some(dcs) = source.etcd() else {
            return b.miss(name, "the configuration names no etcd (an etcd3 section)");
        };
        match dcs.keys().await {
            Ok((kvs, answered_by)) => {
                let keys: Vec<Value> = kvs
                    .iter()
                    .map(
                        |kv| json!({"key": kv.key, "value": as_json(&kv.value), "lease": kv.lease}),
                    )
                    .collect();
                b.json(
                    name.into(),
                    &json!({"prefix": dcs.prefix, "answered_by": answered_by, "keys": keys}),
                    "the DCS keys of the scope (etcd), values as Patroni wrote them",
                );
            }
            Err(e) => b.miss(name, e),
        }
    }

    async fn postgres(&self, cluster: Option<&pgpatrol_core::Cluster>, b: &mut Bundle) {
        let login = match self.pg.login(&self.cluster) {
            Ok(Some(l)) => l,
            Ok(None) => {
                b.miss("postgres/*", "no PostgreSQL login: give --pg-user and --pg-password-file (or -c patroni.yml with postgresql.authentication.superuser)");
                return;
            }
            Err(e) => {
                b.miss("postgres/*", format!("{e:#}"));
                return;
            }
        };
        let Some(c) = cluster else {
            b.miss(
                "postgres/*",
                "the members' PostgreSQL addresses come from /cluster, which was not read",
            );
            return;
        };
        for m in &c.members {
            let (Some(host), Some(port)) = (&m.host, m.port) else {
                b.miss(
                    format!("postgres/{}/*", m.name),
                    "/cluster gives no host and port for it",
                );
                continue;
            };
            let (client, driver) =
                match crate::source::pg::connect(host, port, &login, "pgpatrol report").await {
                    Ok(c) => c,
                    Err(e) => {
                        b.miss(
                            format!("postgres/{}/*", m.name),
                            format!("{host}:{port}: {e}"),
                        );
                        continue;
                    }
                };
            for (file, sql, what) in PG_QUERIES {
                let name = format!("postgres/{}/{file}.json", m.name);
                match client.simple_query(sql).await {
                    Ok(msgs) => {
                        let rows: Vec<Value> = msgs
                            .iter()
                            .filter_map(|msg| match msg {
                                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                                _ => None,
                            })
                            .map(|r| {
                                let mut o = serde_json::Map::new();
                                for (i, col) in r.columns().iter().enumerate() {
                                    o.insert(
                                        col.name().to_string(),
                                        r.get(i).map_or(Value::Null, |v| v.into()),
                                    );
                                }
                                // A setting named for a secret is one (ssl_passphrase_command).
                                if let (Some(Value::String(n)), true) =
                                    (o.get("name").cloned(), self.redacting())
                                {
                                    if secret_key(&n) {
                                        o.insert("setting".into(), "***".into());
                                    }
                                }
                                Value::Object(o)
                            })
                            .collect();
                        b.json(name, &Value::Array(rows), what);
                    }
                    Err(e) => b.miss(name, crate::source::pg::error_line(e)),
                }
            }
            drop(client);
            let _ = driver.await;
        }
    }

    fn redacting(&self) -> bool {
        !self.no_redact
    }

    async fn pgbackrest(&self, b: &mut Bundle) {
        let name = "pgbackrest/info.json";
        let Some(backrest) = self.backrest.backrest() else {
            b.miss(name, "give --pgbackrest-stanza (and --pgbackrest-config)");
            return;
        };
        match crate::doctor::backup::info(&backrest).await {
            // pgBackRest's own `key` fields are repository numbers, not secrets: only the
            // secrets inside values are redacted here.
            Ok(text) => b.json_values(
                name.into(),
                &as_json(&text),
                "pgbackrest info --output=json: the stanza, its backups and WAL archive",
            ),
            Err(why) => b.miss(name, why),
        }
    }

    async fn logs(&self, b: &mut Bundle) {
        let Some(dir) = &self.lab else {
            match self.cluster.access().kubernetes {
                Some(t) => self.pod_logs(&t, b).await,
                None => b.miss(
                    "logs/*",
                    "give --lab DIR for a lab's member logs, or reach the cluster through Kubernetes (pods/log); elsewhere collect Patroni's and PostgreSQL's logs where they are written (journalctl, Patroni's log.dir)",
                ),
            }
            return;
        };
        let logs = dir.join("logs");
        let entries = match std::fs::read_dir(&logs) {
            Ok(e) => e,
            Err(e) => {
                b.miss("logs/*", format!("{}: {e}", logs.display()));
                return;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        files.sort();
        for p in files {
            let file = p.file_name().unwrap_or_default().to_string_lossy();
            let name = format!("logs/{file}");
            match std::fs::read(&p) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = lines[lines.len().saturating_sub(self.log_lines)..].join("\n");
                    b.text(
                        name,
                        &tail,
                        "the last lines of a lab log: a member's Patroni and PostgreSQL output, or etcd's",
                    );
                }
                Err(e) => b.miss(name, format!("{}: {e}", p.display())),
            }
        }
    }

    /// Each pod's log through `pods/log` (the container's output: Patroni's and, as the
    /// Patroni images run it, PostgreSQL's).
    async fn pod_logs(&self, t: &crate::source::k8s::K8sTarget, b: &mut Bundle) {
        let timeout = self.cluster.request_timeout;
        let found =
            match crate::source::k8s::discover(t, self.cluster.connect_timeout, timeout).await {
                Ok(f) => f,
                Err(e) => return b.miss("logs/*", e),
            };
        for pod in &found.pods {
            let name = format!("logs/{}.log", pod.name);
            match crate::source::k8s::scale::pod_log(t, &pod.name, self.log_lines, timeout).await {
                Ok(text) => b.text(
                    name,
                    &text,
                    "the last lines of a pod's log (pods/log): Patroni's and PostgreSQL's output",
                ),
                Err(e) => b.miss(name, e),
            }
        }
    }

    /// Writes `pgpatrol-report-SCOPE-TIME.tar.gz` (one folder of that name inside).
    fn write(&self, scope: &str, mut b: Bundle) -> anyhow::Result<PathBuf> {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let safe: String = scope
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let top = format!("pgpatrol-report-{safe}-{stamp}");
        let mut readme = format!(
            "pgpatrol report of cluster {scope}, {stamp} (pgpatrol {}).\n{}\n\nFiles:\n",
            env!("CARGO_PKG_VERSION"),
            if b.redact {
                "Secrets are redacted (***): passwords in configuration, conninfo, commands and URLs, and values of keys named for secrets."
            } else {
                "NOT REDACTED (--no-redact): passwords and other secrets are kept."
            }
        );
        for (name, _, what) in &b.files {
            readme.push_str(&format!("  {name}: {what}\n"));
        }
        readme.push_str("  README.txt: what each file is (this file)\n");
        readme.push_str("  MISSING.txt: what could not be read, and why (empty: nothing)\n");
        let missing: String = b
            .missing
            .iter()
            .map(|(n, why)| format!("{n}: {why}\n"))
            .collect();
        let missing = if b.redact {
            missing
                .lines()
                .map(redact_text)
                .collect::<Vec<_>>()
                .join("\n")
                + if missing.is_empty() { "" } else { "\n" }
        } else {
            missing
        };
        b.files
            .push(("README.txt".into(), readme.into_bytes(), "this file"));
        b.files.push((
            "MISSING.txt".into(),
            missing.into_bytes(),
            "what is missing",
        ));

        std::fs::create_dir_all(&self.output_dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", self.output_dir.display()))?;
        let path = self.output_dir.join(format!("{top}.tar.gz"));
        let file = std::fs::File::create(&path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mtime = jiff::Timestamp::now().as_second().max(0) as u64;
        for (name, body, _) in &b.files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o600);
            h.set_mtime(mtime);
            h.set_cksum();
            tar.append_data(&mut h, format!("{top}/{name}"), body.as_slice())
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
        let mut gz = tar
            .into_inner()
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        gz.flush()?;
        gz.finish()
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        eprintln!(
            "pgpatrol: {} files, {} part(s) missing (MISSING.txt)",
            b.files.len(),
            b.missing.len()
        );
        Ok(path)
    }
}
