//! Stopping things and cleaning up: `lab down` (every process the lab started, the
//! cluster's DCS keys, its data and `lab.json`; idempotent, also after a failed `lab up`),
//! a standby lab's slot on its source, and one member taken out for a scale-down.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;

use super::cluster::{leader, patch_config};
use super::os::{alive, signal, wait_gone};
use super::{LabPaths, LabState};

/// `lab down`: stops and cleans up the lab in `paths` (see [`teardown`]); `false` when no lab
/// is there.
pub async fn down(paths: &LabPaths, keep_data: bool) -> Result<bool> {
    if !paths.state().exists() {
        return Ok(false);
    }
    let state = LabState::load(paths)?;
    teardown(paths, &state, keep_data).await?;
    Ok(true)
}

/// Stops everything a lab started and removes its data: SIGCONT stopped PIDs, SIGTERM every
/// Patroni (it stops its postgres), SIGKILL what is left after 30 s, delete the cluster's
/// DCS keys, stop etcd, delete a `--netns` lab's namespaces and bridge, remove data and
/// `lab.json`. Idempotent.
pub async fn teardown(paths: &LabPaths, state: &LabState, keep_data: bool) -> Result<()> {
    // A cut or slowed network first: Patroni's shutdown talks to etcd.
    if let Some(net) = &state.net {
        let mut net = net.clone();
        net.mend();
        if let Some(etcd) = &state.etcd.net {
            net.unslow(etcd);
        }
    }
    release_standby_slot(state).await;
    for pid in state
        .holders
        .iter()
        .copied()
        .filter(|p| alive(*p, "pgbench"))
    {
        let _ = signal(pid, Signal::SIGTERM);
    }
    // A stopped walreceiver or startup process would block the postmaster's shutdown.
    for s in state.stopped.iter().filter(|s| alive(s.pid, "postgres")) {
        signal(s.pid, Signal::SIGCONT)?;
    }
    let mut waiting: Vec<(u32, &str)> = Vec::new();
    for m in &state.members {
        let postmaster = m.postmaster();
        match m.pid.filter(|p| alive(*p, "patroni")) {
            Some(pid) => {
                signal(pid, Signal::SIGTERM)?;
                waiting.push((pid, "patroni"));
            }
            // Patroni is gone (crashed or killed) but its postgres may not be: fast shutdown.
            None => {
                if let Some(pm) = postmaster {
                    signal(pm, Signal::SIGINT)?;
                }
            }
        }
        if let Some(pm) = postmaster {
            waiting.push((pm, "postgres"));
        }
    }
    // In a PID namespace a Patroni stuck behind a non-reaping init never exits by itself:
    // give it less time, then SIGKILL the namespace's init, which ends everything in it.
    let patience = if state.init.namespaced() { 10 } else { 30 };
    wait_gone(&waiting, Duration::from_secs(patience)).await;
    let configs: Vec<String> = state
        .members
        .iter()
        .map(|m| m.config.to_string_lossy().into_owned())
        .collect();
    for (m, config) in state.members.iter().zip(&configs) {
        if let Some(init) = m.init_pid.filter(|p| alive(*p, config)) {
            signal(init, Signal::SIGKILL)?;
            waiting.push((init, config));
        }
    }
    for &(pid, needle) in &waiting {
        if alive(pid, needle) {
            signal(pid, Signal::SIGKILL)?;
        }
    }
    wait_gone(&waiting, Duration::from_secs(5)).await;

    if let Some(pid) = state.etcd.pid.filter(|p| alive(*p, "etcd")) {
        // Best effort: the keys go away with etcd's data anyway unless --keep-data.
        let _ = crate::ops::remove::unattended(
            &format!("etcd3://{}:{}", state.etcd.addr(), state.etcd.client_port),
            &state.scope,
        )
        .await;
        signal(pid, Signal::SIGTERM)?;
        wait_gone(&[(pid, "etcd")], Duration::from_secs(10)).await;
        if alive(pid, "etcd") {
            signal(pid, Signal::SIGKILL)?;
            wait_gone(&[(pid, "etcd")], Duration::from_secs(5)).await;
        }
    }
    // Its namespaces (their veths go with them) and its bridge, once nothing runs there.
    if let Some(net) = &state.net {
        net.destroy();
    }
    if !keep_data {
        for dir in [
            paths.data_root(),
            paths.etcd_data(),
            paths.run(),
            paths.archive(),
            paths.pgbackrest(),
        ] {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
        }
    }
    match std::fs::remove_file(paths.state()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", paths.state().display())),
    }
}

/// Removes a standby lab's permanent slot from its source's configuration (the source may
/// be gone already: then there is nothing to remove).
pub async fn release_standby_slot(state: &LabState) {
    let Some(sb) = &state.standby_of else { return };
    let Some(slot) = &sb.slot else { return };
    let Ok(paths) = LabPaths::new(&sb.dir) else {
        return;
    };
    let Ok(src) = LabState::load(&paths) else {
        return;
    };
    if let Ok(leader) = leader(&src).await {
        let leader = leader.clone();
        let _ = patch_config(
            &paths,
            &leader,
            serde_json::json!({"slots": {slot.clone(): null}}),
        )
        .await;
    }
}

/// Takes one member out of a running lab, as a scale-down deletes a pod: SIGTERM to its
/// Patroni, which stops PostgreSQL and deletes its member key; then its data directory goes. Judging whether it may go is `pgpatrol member remove`'s business.
pub async fn remove_member(paths: &LabPaths, state: &mut LabState, name: &str) -> Result<()> {
    let i = state
        .members
        .iter()
        .position(|m| m.name == name)
        .with_context(|| format!("the lab has no member {name}"))?;
    let m = state.members[i].clone();
    let mut waiting = Vec::new();
    if let Some(pid) = m.pid.filter(|p| alive(*p, "patroni")) {
        signal(pid, Signal::SIGTERM)?;
        waiting.push((pid, "patroni"));
    }
    if let Some(pm) = m.postmaster() {
        waiting.push((pm, "postgres"));
    }
    wait_gone(&waiting, Duration::from_secs(60)).await;
    if let Some(init) = m.init_pid.filter(|p| alive(*p, "unshare")) {
        signal(init, Signal::SIGKILL)?;
    }
    if let Some(&(pid, needle)) = waiting.iter().find(|(p, n)| alive(*p, n)) {
        bail!("{name}'s {needle} (pid {pid}) did not stop within 60 s");
    }
    for dir in [&m.data_dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    // Its patroni.yml stays: the lab's export line and every other member read the shared
    // secrets from pg0.yml, which may be this one.
    state.members.remove(i);
    state.save(paths)
}
