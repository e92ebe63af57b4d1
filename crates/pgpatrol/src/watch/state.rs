//! The state file: SLO samples and heal history survive a restart, so a restart does not
//! reset the error budget or a member's cooldown. Written atomically (temp file + rename).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use pgpatrol_core::plan::ActionRecord;
use pgpatrol_core::slo::SampleLog;

use super::Shared;

/// What is persisted.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Persisted {
    pub version: u32,
    #[serde(default)]
    pub samples: BTreeMap<String, SampleLog>,
    #[serde(default)]
    pub heal_history: BTreeMap<String, Vec<ActionRecord>>,
}

/// Reads the state file; a missing file is an empty state, an unreadable one an error.
pub fn load(path: &Path) -> anyhow::Result<Persisted> {
    match std::fs::read_to_string(path) {
        Ok(raw) => serde_json::from_str(&raw).map_err(|e| {
            anyhow::anyhow!(
                "state file {} is not pgpatrol's ({e}): move it away to start afresh",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Persisted::default()),
        Err(e) => Err(anyhow::anyhow!(
            "cannot read state file {}: {e}",
            path.display()
        )),
    }
}

/// Writes the state file; failures are logged, never fatal (the daemon keeps watching).
pub fn save(path: &Path, shared: &Shared) {
    let samples = shared
        .samples
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let heal_history = shared
        .views
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(_, v)| !v.heal.history.is_empty())
        .map(|(k, v)| (k.clone(), v.heal.history.clone()))
        .collect();
    let state = Persisted {
        version: 1,
        samples,
        heal_history,
    };
    let tmp = path.with_extension("tmp");
    let result = serde_json::to_vec(&state)
        .map_err(|e| e.to_string())
        .and_then(|bytes| std::fs::write(&tmp, bytes).map_err(|e| e.to_string()))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the state file");
    }
}
