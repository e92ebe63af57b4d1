//! Backup evidence for doctor: the real `pgbackrest info --output=json`, run on this host
//! (where the repository, or a repo host's config, is). A missing binary, a failure or
//! output that is not pgBackRest's JSON is one UNKNOWN line; nothing else stops.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use pgpatrol_core::checks::{self, Check, Status, Thresholds};

/// How to ask pgBackRest.
#[derive(Debug, Clone)]
pub struct Backrest {
    pub bin: PathBuf,
    pub config: Option<PathBuf>,
    pub stanza: String,
}

fn unknown(what: String) -> Vec<Check> {
    vec![Check {
        id: "backup",
        status: Status::Unknown,
        evidence: what,
        fix: Some(
            "run doctor where pgBackRest and its repository (or repo host config) are, or give --pgbackrest-bin/--pgbackrest-config"
                .into(),
        ),
        value: None,
    }]
}

/// Runs `pgbackrest --output=json info` (30 s at most): its output, or one line saying why
/// there is none. Doctor judges it; `report` bundles it.
pub async fn info(b: &Backrest) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(&b.bin);
    if let Some(c) = &b.config {
        cmd.arg(format!("--config={}", c.display()));
    }
    cmd.arg(format!("--stanza={}", b.stanza))
        .args(["--output=json", "info"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let shown = display(&b.bin);
    let out = match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
        Err(_) => return Err(format!("{shown} info did not answer within 30 s")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{shown} not found: install pgBackRest (Debian: apt-get install pgbackrest)"
            ))
        }
        Ok(Err(e)) => return Err(format!("cannot run {shown}: {e}")),
        Ok(Ok(o)) => o,
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = if err.trim().is_empty() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            err.into_owned()
        };
        return Err(format!(
            "{shown} info failed ({}): {}",
            out.status,
            crate::text::snippet(&crate::text::one_line(&err))
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `pgbackrest info` and judges it; `current_walfile` is the leader's WAL file now.
pub async fn checks(b: &Backrest, current_walfile: Option<&str>, t: &Thresholds) -> Vec<Check> {
    let shown = display(&b.bin);
    let text = match info(b).await {
        Ok(t) => t,
        Err(why) => return unknown(why),
    };
    let info: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            return unknown(format!(
                "{shown} info printed something that is not its JSON ({e}): {}",
                crate::text::snippet(&crate::text::one_line(&text))
            ))
        }
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    checks::backup_checks(&info, &b.stanza, now, current_walfile, t)
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
