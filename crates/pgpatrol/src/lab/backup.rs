//! `lab backup`: a real pgBackRest repository in the lab (Debian's pgbackrest): the stanza
//! `lab`, WAL archived into it by every member, and a full backup of the leader, so doctor's
//! backup checks read a real repository.
//!
//! ```text
//! DIR/pgbackrest/pgbackrest.conf   repo1-path = DIR/pgbackrest/repo, one pgN-path per member
//! DIR/pgbackrest/{repo,log,lock,spool}
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::cluster::{leader, psql, tail};
use super::os::RunAs;
use super::{LabPaths, LabState};

/// The stanza the lab's repository holds.
pub const STANZA: &str = "lab";
/// Where Debian puts pgBackRest.
pub const PGBACKREST_BIN: &str = "/usr/bin/pgbackrest";

/// The lab's pgBackRest config file.
pub fn config_path(paths: &LabPaths) -> PathBuf {
    paths.dir.join("pgbackrest").join("pgbackrest.conf")
}

fn run(run_as: &RunAs, paths: &LabPaths, args: &[&str]) -> Result<()> {
    let log = paths.log("pgbackrest");
    let mut cmd = run_as.command(Path::new(PGBACKREST_BIN), &log)?;
    cmd.arg(format!("--config={}", config_path(paths).display()))
        .arg(format!("--stanza={STANZA}"))
        .args(args);
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {PGBACKREST_BIN}"))?;
    if !status.success() {
        bail!(
            "pgbackrest {} failed ({status}); {} says: {}",
            args.join(" "),
            log.display(),
            tail(&log, 3).replace('\n', " | ")
        );
    }
    Ok(())
}

/// Configures the repository, points every member's archive_command at it, creates the
/// stanza and takes a full backup of the leader. Returns the config file's path.
pub async fn backup(paths: &LabPaths, state: &LabState) -> Result<PathBuf> {
    if !Path::new(PGBACKREST_BIN).is_file() {
        bail!("pgbackrest is not installed ({PGBACKREST_BIN}): run scripts/setup");
    }
    let run_as = RunAs::resolve(&paths.dir)?;
    let root = paths.pgbackrest();
    for d in ["", "repo", "log", "lock", "spool"] {
        let dir = root.join(d);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        run_as.own(&dir)?;
    }
    let leader = leader(state).await?.clone();
    // The leader as pg1 (a backup is taken from pg1 when it is the primary); every member is
    // listed so archive-push works from whichever member leads later.
    let mut conf = format!(
        "[global]\nrepo1-path={}\nlog-path={}\nlock-path={}\nspool-path={}\nstart-fast=y\nlog-level-console=warn\nlog-level-file=info\n\n[{STANZA}]\n",
        root.join("repo").display(),
        root.join("log").display(),
        root.join("lock").display(),
        root.join("spool").display(),
    );
    conf.push_str(&format!(
        "pg1-path={}\npg1-port={}\npg1-socket-path={}\npg1-user=postgres\n",
        leader.data_dir.display(),
        leader.pg_port,
        paths.run().display()
    ));
    let path = config_path(paths);
    std::fs::write(&path, conf).with_context(|| format!("cannot write {}", path.display()))?;
    run_as.own(&path)?;
    let push = format!(
        "{PGBACKREST_BIN} --config={} --stanza={STANZA} archive-push %p",
        path.display()
    );
    for m in &state.members {
        psql(m, &format!("ALTER SYSTEM SET archive_command = '{push}'")).await?;
        psql(m, "SELECT pg_reload_conf()").await?;
    }
    run(&run_as, paths, &["stanza-create"])?;
    run(&run_as, paths, &["--type=full", "backup"])?;
    Ok(path)
}
