//! The operating-system layer: who the lab's processes run as, starting them detached (own
//! process group, stdin null, output to a log file) so they outlive `lab up`, and reading,
//! signalling and waiting for processes through `/proc`. Process and file primitives only:
//! nothing here knows Patroni.

use std::fs::OpenOptions;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};

/// Who the lab's processes run as. PostgreSQL refuses root, so root runs them as `postgres`.
#[derive(Debug, Clone)]
pub struct RunAs {
    /// `None`: the current (non-root) user.
    pub ids: Option<(u32, u32)>,
    pub home: PathBuf,
}

impl RunAs {
    pub fn resolve(dir: &Path) -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(RunAs {
                ids: None,
                home: dir.to_path_buf(),
            });
        }
        let user = User::from_name("postgres")
            .ok()
            .flatten()
            .context("cannot switch to the postgres user: it does not exist (run scripts/setup)")?;
        let home = if user.dir.is_dir() {
            user.dir
        } else {
            dir.to_path_buf()
        };
        Ok(RunAs {
            ids: Some((user.uid.as_raw(), user.gid.as_raw())),
            home,
        })
    }

    /// Fails when the user the processes run as cannot reach `path` because a parent folder
    /// is not world-traversable (a checkout under /root, mode 700).
    pub fn check_reachable(&self, path: &Path, what: &str) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let Some((uid, _)) = self.ids else {
            return Ok(());
        };
        for dir in path.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(dir) else {
                continue; // Not created yet: `lab up` creates it traversable.
            };
            if meta.mode() & 0o001 == 0 && meta.uid() != uid {
                bail!(
                    "cannot switch to the postgres user: it cannot reach the {what} {} because {} is not \
                     world-traversable (chmod o+x it, or use another place)",
                    path.display(),
                    dir.display()
                );
            }
        }
        Ok(())
    }

    /// Gives a path the lab creates to the user the processes run as.
    pub fn own(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.ids {
            chown(path, Some(uid), Some(gid)).with_context(|| {
                format!(
                    "cannot switch to the postgres user: chown {} failed",
                    path.display()
                )
            })?;
        }
        Ok(())
    }

    /// A detached command run as the lab's user: clean environment, own process group,
    /// stdin null, output to `log`.
    pub(super) fn command(&self, program: &Path, log: &Path) -> Result<Command> {
        let mut cmd = self.detached(program, log)?;
        if let Some((uid, gid)) = self.ids {
            // std drops supplementary groups when root sets uid/gid.
            cmd.uid(uid).gid(gid);
        }
        Ok(cmd)
    }

    /// The same, but keeping the caller's user (root, for `unshare --pid`).
    pub(super) fn detached(&self, program: &Path, log: &Path) -> Result<Command> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        self.own(log)?;
        let err = out.try_clone().context("cannot duplicate the log file")?;
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own group: Ctrl-C in the terminal that ran `lab up` does not reach it.
            .process_group(0);
        Ok(cmd)
    }
}

/// Fills `buf` with random bytes from the kernel (secrets, a `--netns` lab's id).
pub(super) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .context("cannot read /dev/urandom")
}

pub(super) fn spawn(mut cmd: Command, what: &str) -> Result<u32> {
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            anyhow::anyhow!("cannot switch to the postgres user to start {what}: {e}")
        } else {
            anyhow::anyhow!("cannot start {what}: {e}")
        }
    })?;
    // The Child is dropped without waiting: the process is meant to outlive us.
    Ok(child.id())
}

/// [`spawn`], but the process starts in the network namespace `/run/netns/NS` (`lab up
/// --netns`): the spawning thread enters it first (`setns`), and a child inherits its
/// parent thread's namespace. The thread is a fresh one, so no other code runs in there.
pub(super) fn spawn_in(cmd: Command, what: &str, netns: Option<&str>) -> Result<u32> {
    let Some(ns) = netns else {
        return spawn(cmd, what);
    };
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|s| {
        s.spawn(move || {
            let f = std::fs::File::open(&path).with_context(|| {
                format!(
                    "cannot start {what}: no network namespace {}",
                    path.display()
                )
            })?;
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).with_context(|| {
                format!("cannot start {what}: cannot enter the network namespace {ns}")
            })?;
            spawn(cmd, what)
        })
        .join()
        .unwrap_or_else(|_| bail!("cannot start {what}: the spawning thread panicked"))
    })
}

/// True when `pid` runs (not a zombie) and its command line contains `needle`, so a
/// recycled PID is never mistaken for a lab process.
pub fn alive(pid: u32, needle: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, Some('Z' | 'X') | None) {
        return false;
    }
    cmdline(pid).is_some_and(|c| c.contains(needle))
}

/// `/proc/PID/cmdline` with NULs as spaces (PostgreSQL puts its process title there).
pub fn cmdline(pid: u32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
}

/// The postmaster's PID: the first line of `DATA/postmaster.pid`.
pub fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// One line of the process table.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// `R`, `S`, `Z`, ... from `/proc/PID/stat`.
    pub state: char,
    pub comm: String,
}

/// Every process, from `/proc/*/stat` (processes that end while it reads are skipped).
pub fn proc_table() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "PID (comm) S PPID ...": comm may hold spaces and parentheses.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_owned();
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse().ok()?;
            Some(Proc {
                pid,
                ppid,
                state,
                comm,
            })
        })
        .collect()
}

/// `root` and every process below it, parents before children.
pub fn descendants(root: u32) -> Vec<Proc> {
    let table = proc_table();
    let mut found: Vec<Proc> = table.iter().filter(|p| p.pid == root).cloned().collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].pid;
        found.extend(table.iter().filter(|p| p.ppid == parent).cloned());
        i += 1;
    }
    found
}

/// Children of `parent` whose command line contains `needle`.
pub fn children(parent: u32, needle: &str) -> Vec<u32> {
    proc_table()
        .into_iter()
        .filter(|p| p.ppid == parent && alive(p.pid, needle))
        .map(|p| p.pid)
        .collect()
}

/// Zombies at or below `root`: `(host PID, command)`.
pub fn zombies_under(root: u32) -> Vec<(u32, String)> {
    descendants(root)
        .into_iter()
        .filter(|p| p.state == 'Z')
        .map(|p| (p.pid, p.comm))
        .collect()
}

/// The host PID of the process that PID namespace `init` (a host PID) calls `inner`, from
/// the `NSpid:` line of `/proc/PID/status` (host PID first, innermost last).
pub fn host_pid(init: u32, inner: u32) -> Option<u32> {
    descendants(init).into_iter().map(|p| p.pid).find(|&pid| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
                line.split_whitespace().last()?.parse::<u32>().ok()
            })
            == Some(inner)
    })
}

/// Sends `sig`; a process that is already gone is not an error.
pub fn signal(pid: u32, sig: Signal) -> Result<()> {
    let raw = i32::try_from(pid).context("PID out of range")?;
    match kill(Pid::from_raw(raw), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot send {sig} to PID {pid}")),
    }
}

pub(super) fn create_dir(path: &Path, mode: u32, run_as: &RunAs) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    run_as.own(path)
}

pub(super) fn write_private(path: &Path, text: &str, owner: Option<&RunAs>) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Created afresh with mode 0600: the file is never readable by others, not even briefly.
    let _ = std::fs::remove_file(path);
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(run_as) = owner {
        run_as.own(path)?;
    }
    Ok(())
}

pub(super) async fn wait_gone(pids: &[(u32, &str)], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|&(p, n)| alive(p, n)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_sees_this_process_and_not_a_missing_one() {
        let me = std::process::id();
        assert!(alive(me, ""));
        assert!(!alive(me, "no-such-command-line"));
        assert!(!alive(u32::MAX - 1, ""));
    }

    #[test]
    fn children_finds_a_spawned_child_by_command_line() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        // Until the child has exec'd, its command line is still ours.
        let mut found = Vec::new();
        for _ in 0..100 {
            found = children(std::process::id(), "sleep");
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&child.id()), "{found:?}");
        // Reaped: no longer alive.
        assert!(!alive(child.id(), "sleep"));
    }

    #[test]
    fn postmaster_pid_reads_the_first_line() {
        let dir = std::env::temp_dir().join(format!("pgpatrol-pmpid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(postmaster_pid(&dir), None);
        std::fs::write(dir.join("postmaster.pid"), "4242\n/data\n1700000000\n").unwrap();
        assert_eq!(postmaster_pid(&dir), Some(4242));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
