//! The audit log: one JSON line per request that changes a cluster (switchover, restart,
//! config, reinitialize, ...), whoever sent it (a person, heal, watch's auto-heal).
//!
//! `{"time","user","host","cluster","operation","member","method","url","body","status",
//! "outcome"}`; `body`, `url` and `outcome` without secrets ([`redact`]: a key naming a
//! password, secret, token, key or passphrase, and secrets inside values — conninfo
//! `password=`, a URL's userinfo, `PGPASSWORD=`, `--password` — are `"***"`), `status`
//! null when no answer came. Lines are appended with one `write` each
//! (O_APPEND), so several pgpatrol processes can share a file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::source::http::{HttpError, Request, Response};
use crate::source::ClusterSource;

pub use crate::redact::{redact, redact_text, secret_key};

/// Where audit lines go: a file, or nowhere.
#[derive(Debug)]
pub struct Audit {
    file: Option<(PathBuf, Mutex<File>)>,
    cluster: String,
    user: String,
    host: String,
}

impl Default for Audit {
    fn default() -> Self {
        Audit::disabled()
    }
}

impl Audit {
    /// The audit log of one run: disabled when nothing can be sent (a dry run, or a plan
    /// that was refused), otherwise opened at `path` (or none) for `scope`, before anything
    /// is sent.
    pub fn for_run(sends: bool, path: Option<&Path>, scope: Option<&str>) -> anyhow::Result<Audit> {
        if !sends {
            return Ok(Audit::disabled());
        }
        Audit::open(path, scope.unwrap_or("cluster"))
    }

    /// No audit log.
    pub fn disabled() -> Audit {
        Audit {
            file: None,
            cluster: String::new(),
            user: String::new(),
            host: String::new(),
        }
    }

    /// Appends to `path` (created 0600 if missing) for `cluster`; fails before anything is
    /// sent when the file cannot be opened, so an operation never runs unaudited by accident.
    pub fn open(path: Option<&Path>, cluster: &str) -> anyhow::Result<Audit> {
        let Some(path) = path else {
            return Ok(Audit::disabled());
        };
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the audit log {}: {e}: fix --audit-log / PGPATROL_AUDIT_LOG",
                path.display()
            )
        })?;
        Ok(Audit {
            file: Some((path.to_path_buf(), Mutex::new(file))),
            cluster: cluster.to_string(),
            user: local_user(),
            host: local_host(),
        })
    }

    /// The same log for another cluster (watch audits every cluster into one file).
    pub fn for_cluster(&self, cluster: &str) -> anyhow::Result<Audit> {
        match &self.file {
            None => Ok(Audit::disabled()),
            Some((path, _)) => Audit::open(Some(path), cluster),
        }
    }

    pub fn enabled(&self) -> bool {
        self.file.is_some()
    }

    /// Records one request: its answer's status (None: no answer) and the outcome in words.
    pub fn record(
        &self,
        operation: &str,
        member: &str,
        req: &Request,
        status: Option<u16>,
        outcome: &str,
    ) {
        self.record_raw(
            operation,
            member,
            req.method.as_str(),
            &req.url(),
            req.body.as_ref(),
            status,
            outcome,
        );
    }

    /// Records one write that is not a Patroni request (`method` "SQL", "DCS"), its body
    /// without secrets.
    pub fn record_write(
        &self,
        operation: &str,
        member: &str,
        method: &str,
        target: &str,
        body: &Value,
        outcome: &str,
    ) {
        self.record_raw(operation, member, method, target, Some(body), None, outcome);
    }

    /// Records one Kubernetes API call an operation made (`method` "KUBE": a scale, a
    /// claim deleted).
    pub fn record_kube(&self, operation: &str, member: &str, call: &str, outcome: &str) {
        self.record_raw(operation, member, "KUBE", call, None, None, outcome);
    }

    #[allow(clippy::too_many_arguments)]
    fn record_raw(
        &self,
        operation: &str,
        member: &str,
        method: &str,
        url: &str,
        body: Option<&Value>,
        status: Option<u16>,
        outcome: &str,
    ) {
        let Some((path, file)) = &self.file else {
            return;
        };
        let line = json!({
            "time": jiff::Timestamp::now().round(jiff::Unit::Millisecond).map(|t| t.to_string()).unwrap_or_default(),
            "user": self.user,
            "host": self.host,
            "cluster": self.cluster,
            "operation": operation,
            "member": member,
            "method": method,
            "url": redact_text(url),
            "body": body.map(redact),
            "status": status,
            "outcome": redact_text(outcome),
        });
        let mut text = line.to_string();
        text.push('\n');
        let written = file
            .lock()
            .map_err(|_| std::io::Error::other("audit log lock poisoned"))
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "pgpatrol: warning: cannot write the audit log {}: {e}",
                path.display()
            );
        }
    }
}

fn local_user() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

fn local_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The one place a request to Patroni is sent: through the source's transport (REST, or
/// Kubernetes port-forward), with one audit line for it whatever came back. `Ops::send`
/// (every operation) and the executor's `POST /reinitialize` (heal, watch, reinit) both
/// send through it. Returns the answer and what the audit line says of it (a JSON answer
/// without its secrets).
pub async fn send(
    source: &ClusterSource,
    audit: &Audit,
    operation: &str,
    member: &str,
    req: &Request,
) -> (Result<Response, HttpError>, String) {
    let result = source.http().send(req).await;
    let answer = match &result {
        Ok(resp) => {
            // A JSON answer (PATCH /config echoes the configuration) loses its secrets.
            let answer = match serde_json::from_str::<serde_json::Value>(&resp.body) {
                Ok(v) if v.is_object() => crate::text::snippet(&redact(&v).to_string()),
                _ => crate::text::snippet(resp.body.trim()),
            };
            audit.record(operation, member, req, Some(resp.status.as_u16()), &answer);
            answer
        }
        Err(e) => {
            audit.record(operation, member, req, None, &e.to_string());
            e.to_string()
        }
    };
    (result, answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_the_log() {
        let body = json!({"postgresql": {"authentication": {"replication": {"password": "s3cret"}},
            "parameters": {"max_connections": 200}}, "api_token": "t", "pause": true});
        let r = redact(&body);
        assert_eq!(
            r["postgresql"]["authentication"]["replication"]["password"],
            "***"
        );
        assert_eq!(r["api_token"], "***");
        assert_eq!(r["postgresql"]["parameters"]["max_connections"], 200);
        assert_eq!(r["pause"], true);
    }

    #[test]
    fn secrets_inside_values_and_under_secret_keys_are_redacted() {
        let body = json!({
            "postgresql": {
                "parameters": {
                    "primary_conninfo": "host=10.0.0.1 port=5432 user=rep password=s3cret application_name=pg1",
                    "restore_command": "PGPASSWORD=s3cret pgbackrest --stanza=main archive-get %f %p",
                    "archive_command": "wal-g wal-push %p --password s3cret",
                    "max_connections": 200,
                    "ssl_key_file": "/etc/ssl/private/server.key",
                },
                "recovery_conf": {"primary_conninfo": "user=rep password='quoted s3cret' host=x"},
            },
            "standby_cluster": {"restore_command": "curl -s https://rep:s3cret@backup.example/%f -o %p"},
            "passphrase": "s3cret",
            "passwd": "s3cret",
            "api_key": "s3cret",
            "PRIVATE_KEY": "s3cret",
            "Secret-Token": "s3cret",
            "nested": [{"password": "s3cret"}, "dsn=postgres://u:s3cret@h/db"],
            "keys": "kept",
        });
        let r = redact(&body);
        let text = r.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        let p = &r["postgresql"]["parameters"];
        assert_eq!(
            p["primary_conninfo"],
            "host=10.0.0.1 port=5432 user=rep password=*** application_name=pg1"
        );
        assert_eq!(
            p["restore_command"],
            "PGPASSWORD=*** pgbackrest --stanza=main archive-get %f %p"
        );
        assert_eq!(p["archive_command"], "wal-g wal-push %p --password ***");
        assert_eq!(p["max_connections"], 200);
        assert_eq!(p["ssl_key_file"], "***");
        assert_eq!(
            r["postgresql"]["recovery_conf"]["primary_conninfo"],
            "user=rep password=*** host=x"
        );
        assert_eq!(
            r["standby_cluster"]["restore_command"],
            "curl -s https://rep:***@backup.example/%f -o %p"
        );
        assert_eq!(r["nested"][1], "dsn=postgres://u:***@h/db");
        assert_eq!(r["keys"], "kept");
        // Nothing else is touched.
        assert_eq!(redact_text("host=x port=5 user=u"), "host=x port=5 user=u");
        assert_eq!(redact_text("http://h:8008/config"), "http://h:8008/config");
        assert_eq!(redact_text("password = 'a b' x"), "password = *** x");
    }

    #[test]
    fn each_request_is_one_json_line() {
        let dir = std::env::temp_dir().join(format!("pgpatrol-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let audit = Audit::open(Some(&path), "demo").unwrap();
        let req = Request::post(
            "http://127.0.0.1:8008",
            "/switchover",
            json!({"leader": "pg0"}),
        );
        audit.record("switchover", "pg0", &req, Some(200), "switched over");
        audit.record("switchover", "pg0", &req, None, "no answer");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["cluster"], "demo");
        assert_eq!(lines[0]["method"], "POST");
        assert_eq!(lines[0]["url"], "http://127.0.0.1:8008/switchover");
        assert_eq!(lines[0]["body"]["leader"], "pg0");
        assert_eq!(lines[0]["status"], 200);
        assert!(lines[1]["status"].is_null());
        assert!(!lines[0]["user"].as_str().unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unopenable_log_is_an_error_before_anything_is_sent() {
        let e = Audit::open(Some(Path::new("/nonexistent/dir/audit.jsonl")), "demo").unwrap_err();
        assert!(e.to_string().contains("--audit-log"), "{e}");
    }
}
