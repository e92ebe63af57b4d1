//! `pgpatrol supervise`: a small PID 1 for Patroni containers.
//!
//! Patroni starts the postmaster so that it is re-parented to PID 1 ("now it's the
//! responsibility of the init process to take care about postmaster"), and it waits for a
//! stopped postmaster with `kill(pid, 0)`, which succeeds on a zombie. Under a PID 1 that
//! never reaps, a restart, a demote or a `follow` that stops PostgreSQL waits forever (seed
//! 001). This module is that init: it runs one command as its child, reaps every process that
//! is re-parented to it, forwards signals, and exits with the child's exit code.
//!
//! It is deliberately synchronous and single-purpose: it runs before (and instead of) the
//! async runtime, because a `waitpid(-1)` loop would steal exit statuses from
//! `tokio::process`, and a multi-threaded runtime would receive signals meant for the loop.
//!
//! Signals are caught with handlers (signal-hook's self-pipe), not blocked: a namespace init
//! drops signals it has no handler for, and a blocked mask would be inherited by the child
//! (std's `Command` does not reset it), which would then ignore SIGTERM.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::signal::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

/// The signals passed on to the child (SIGCHLD only wakes the reaper).
pub const FORWARDED: [i32; 6] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];

/// How `supervise` runs its command.
#[derive(Debug, Clone)]
pub struct Options {
    /// The command and its arguments (at least the program).
    pub command: Vec<OsString>,
    /// After a SIGTERM is forwarded, how long the child (and, as PID 1, everything else)
    /// has before SIGKILL.
    pub grace: Duration,
    /// When not PID 1: register as a child subreaper so orphans are re-parented here.
    pub subreaper: bool,
    /// Start the child in its own process group and signal the whole group.
    pub process_group: bool,
}

/// What the child's end means as an exit code: its own code, or 128 + the signal.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Runs the command under supervision and returns the exit code to exit with.
pub fn run(opts: &Options) -> Result<i32> {
    let Some((program, args)) = opts.command.split_first() else {
        bail!("supervise needs a command: pgpatrol supervise -- COMMAND [ARGS...]");
    };
    let shown = program.to_string_lossy().into_owned();
    let pid1 = nix::unistd::getpid().as_raw() == 1;
    if !pid1 {
        if opts.subreaper {
            nix::sys::prctl::set_child_subreaper(true).context(
                "cannot register as a child subreaper (prctl PR_SET_CHILD_SUBREAPER); run as PID 1 or pass --no-subreaper",
            )?;
            eprintln!(
                "pgpatrol supervise: not PID 1 (PID {}): registered as a child subreaper, so orphans of {shown} are reaped here",
                std::process::id()
            );
        } else {
            eprintln!(
                "pgpatrol supervise: warning: not PID 1 and not a child subreaper (--no-subreaper): orphans will not be reaped here"
            );
        }
    }

    // Handlers first, so nothing that arrives while the child starts is lost; exec resets
    // handled signals to their defaults in the child.
    let mut wanted = FORWARDED.to_vec();
    wanted.push(SIGCHLD);
    let mut signals = Signals::new(&wanted).context("cannot install the signal handlers")?;

    let mut cmd = Command::new(program);
    cmd.args(args);
    if opts.process_group {
        cmd.process_group(0);
    }
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("cannot run {shown}: no such program"),
        _ => anyhow::anyhow!("cannot run {shown}: {e}"),
    })?;
    let raw = i32::try_from(child.id()).context("child PID out of range")?;
    let child_pid = Pid::from_raw(raw);
    // The Child handle is dropped without waiting: the reaper below collects its status.
    drop(child);

    let child_done = Arc::new(AtomicBool::new(false));
    let mut killer_armed = false;
    loop {
        if let Some(code) = reap(child_pid)? {
            child_done.store(true, Ordering::SeqCst);
            if pid1 {
                stop_the_rest(opts.grace);
            }
            return Ok(code);
        }
        for sig in signals.wait() {
            if sig == SIGCHLD {
                continue;
            }
            let Ok(signal) = Signal::try_from(sig) else {
                continue;
            };
            send(child_pid, signal, opts.process_group);
            if signal == Signal::SIGTERM && !killer_armed {
                killer_armed = true;
                arm_killer(child_pid, opts, pid1, Arc::clone(&child_done));
            }
        }
    }
}

/// Reaps every child that has ended; returns the exit code once `child` is among them.
fn reap(child: Pid) -> Result<Option<i32>> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(code),
            Ok(status) => {
                if status.pid() == Some(child) {
                    code = exit_code(status);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waitpid failed"),
        }
    }
}

/// Sends `sig` to the child (or its group); a child that is already gone is no error.
fn send(child: Pid, sig: Signal, group: bool) {
    let sent = if group {
        killpg(child, sig)
    } else {
        kill(child, sig)
    };
    if let Err(e) = sent {
        if e != Errno::ESRCH {
            eprintln!("pgpatrol supervise: cannot send {sig} to PID {child}: {e}");
        }
    }
}

/// After the grace period, SIGKILLs the child (or its group) if it is still running, and as
/// PID 1 everything else in the namespace too.
fn arm_killer(child: Pid, opts: &Options, pid1: bool, done: Arc<AtomicBool>) {
    let grace = opts.grace;
    let group = opts.process_group;
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        if done.load(Ordering::SeqCst) {
            return;
        }
        eprintln!(
            "pgpatrol supervise: PID {child} still running {} after SIGTERM: SIGKILL",
            humantime::format_duration(grace)
        );
        send(child, Signal::SIGKILL, group);
        if pid1 {
            // Everything in this PID namespace but ourselves.
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        }
    });
}

/// As PID 1, once the child has exited: SIGTERM whatever is left in the namespace, reap it
/// for up to `grace`, then SIGKILL the rest. (When PID 1 exits the kernel kills the
/// namespace anyway; this gives a still-running postmaster the chance of a clean shutdown.)
fn stop_the_rest(grace: Duration) {
    let everyone = Pid::from_raw(-1);
    if kill(everyone, Signal::SIGTERM) == Err(Errno::ESRCH) {
        return; // Nothing else is running.
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Err(Errno::ECHILD) => return,
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
            _ => {}
        }
    }
    let _ = kill(everyone, Signal::SIGKILL);
    // Blocking reaps until nothing is left (SIGKILL cannot be ignored).
    while matches!(waitpid(None, None), Ok(_) | Err(Errno::EINTR)) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        let pid = Pid::from_raw(42);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 7)), Some(7));
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, false)),
            Some(143)
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, true)),
            Some(137)
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }
}
