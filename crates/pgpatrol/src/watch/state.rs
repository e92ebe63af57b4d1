//! The state file: SLO samples and heal history survive a restart, so a restart does not
//! reset the error budget or a member's cooldown.
//!
//! Durable: every heal record change (an action's start and its end) is written at once,
//! before the request goes out, besides every 30 s and at shutdown; each write goes to a
//! temp file of its own, is fsynced, renamed over the file, and the folder is fsynced. A
//! watcher holds `STATE.lock` (flock) for as long as it runs: a second watcher on the same
//! file refuses to start.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::fcntl::{Flock, FlockArg};

use serde::{Deserialize, Serialize};

use pgpatrol_core::history::ActionRecord;
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

/// The state file this watcher owns: the path, its lock (held until the watcher exits),
/// and the heal histories it persists.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    _lock: Flock<File>,
    /// One write at a time (each writes the whole state).
    writing: Mutex<()>,
    /// Each healing cluster's live history, as the runner records it.
    histories: Mutex<BTreeMap<String, Arc<Mutex<Vec<ActionRecord>>>>>,
}

impl StateFile {
    /// Takes `PATH.lock` for this watcher, or refuses with one line naming who holds it.
    pub fn open(path: &Path) -> anyhow::Result<StateFile> {
        let lock_path = lock_path(path);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot open {} (the state file's lock): {e}",
                    lock_path.display()
                )
            })?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((file, _)) => {
                let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
                drop(file);
                anyhow::bail!(
                    "state file {} is in use by another watcher ({}): one watcher per state file; give this one a state_file of its own",
                    path.display(),
                    match holder.trim() {
                        "" => "its lock is held".to_string(),
                        h => format!("pid {h}"),
                    }
                );
            }
        };
        // Who holds it, for the next one's error message.
        let _ = lock.set_len(0);
        let _ = writeln!(&mut *lock, "{}", std::process::id());
        Ok(StateFile {
            path: path.to_path_buf(),
            _lock: lock,
            writing: Mutex::new(()),
            histories: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Persists `history` (a healer's live record list) under `cluster`.
    pub fn track(&self, cluster: &str, history: Arc<Mutex<Vec<ActionRecord>>>) {
        self.histories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cluster.to_string(), history);
    }

    /// Writes the whole state durably; failures are logged, never fatal (the daemon keeps
    /// watching).
    pub fn save(&self, shared: &Shared) {
        let _one = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let samples = shared
            .samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let heal_history = self
            .histories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, h)| {
                (
                    k.clone(),
                    h.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                )
            })
            .filter(|(_, h)| !h.is_empty())
            .collect();
        let state = Persisted {
            version: 1,
            samples,
            heal_history,
        };
        if let Err(e) = serde_json::to_vec(&state)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_durably(&self.path, &bytes))
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the state file");
        }
    }
}

/// `STATE.lock` beside the state file.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves the old file or the
/// new one, whole: a temp file of this write's own in the same folder, fsynced, renamed
/// over `path`, and the folder fsynced (the rename itself is then on disk).
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_watcher_on_the_same_state_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("pgpatrol-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let first = StateFile::open(&path).unwrap();
        let e = StateFile::open(&path).unwrap_err().to_string();
        assert!(e.contains("is in use by another watcher"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(first);
        let again = StateFile::open(&path).expect("free once the first is gone");
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_durable_write_replaces_the_file_whole_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("pgpatrol-durable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        write_durably(&path, b"{\"version\":1}").unwrap();
        write_durably(&path, b"{\"version\":2}").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"version\":2}");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
