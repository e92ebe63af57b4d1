//! Seed 001's hang, live: each member of a lab in its own PID namespace, under a PID 1 that
//! does not reap (`lab up --init no-reap`) and under `pgpatrol supervise`.
//!
//! The steps are the ones that make Patroni wait for its postmaster to be gone: `POST
//! /restart` on a replica, and a switchover (the old leader stops its postmaster to demote).
//! A leader crash alone does not hang on PostgreSQL 15: replicas re-point by reload.
//! Under no-reap the test asserts the hang (a member stuck with a postgres zombie that
//! persists), so the supervise test beside it cannot pass vacuously.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgpatrol::lab::{LabPaths, LabState, MemberState};
use serde_json::Value;

use crate::harness::{it_root, ok, patroni_version, run, stderr, Lab, Test};
use crate::util::{auth_for, request};

pub fn tests() -> Vec<Test> {
    tests![
        no_reap_init_leaves_restart_and_switchover_hanging_on_a_zombie,
        supervise_init_completes_restart_and_switchover_without_zombies,
    ]
}

/// A lab of its own with `--init MODE`; `lab down` when dropped (also after a panic).
struct InitLab {
    dir: PathBuf,
}

impl InitLab {
    fn up(init: &str) -> InitLab {
        let dir = it_root().join(format!("init-{init}"));
        let d = dir.to_string_lossy().into_owned();
        let lab = InitLab { dir };
        let out = run(&[
            "lab",
            "up",
            "--dir",
            &d,
            "--init",
            init,
            "--scope",
            &format!("init-{init}"),
            "--patroni",
            &patroni_version(),
            "--timeout",
            "120s",
        ]);
        let said = ok(&format!("lab up --init {init}"), &out);
        assert!(
            said.contains(&format!("under init {init}")),
            "lab up does not say the init: {said}"
        );
        lab
    }

    fn state(&self) -> LabState {
        LabState::load(&LabPaths::new(&self.dir).expect("paths")).expect("lab.json")
    }

    fn member(&self, name: &str) -> MemberState {
        self.state().member(name).expect("member").clone()
    }

    fn url(&self, name: &str) -> String {
        self.member(name).url()
    }

    /// The member's own view: (state, role), or None when it does not answer in 3 s.
    fn own_state(&self, name: &str) -> Option<(String, String)> {
        let (status, body) = request(
            "GET",
            &format!("{}/patroni", self.url(name)),
            None,
            None,
            Duration::from_secs(3),
        )
        .ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (status == 200 || status == 503).then(|| {
            (
                v["state"].as_str().unwrap_or("?").to_owned(),
                v["role"].as_str().unwrap_or("?").to_owned(),
            )
        })
    }

    fn cluster(&self) -> Value {
        for m in self.state().members {
            if let Ok((200, body)) = request(
                "GET",
                &format!("{}/cluster", m.url()),
                None,
                None,
                Duration::from_secs(3),
            ) {
                if let Ok(v) = serde_json::from_str(&body) {
                    return v;
                }
            }
        }
        panic!("no member answers /cluster")
    }

    fn leader(&self) -> String {
        self.cluster()["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["role"] == "leader"))
            .and_then(|m| m["name"].as_str())
            .expect("a leader")
            .to_owned()
    }

    fn replicas(&self) -> Vec<String> {
        let leader = self.leader();
        self.state()
            .members
            .into_iter()
            .map(|m| m.name)
            .filter(|n| *n != leader)
            .collect()
    }

    /// `POST PATH` with the lab's credentials; the answer, or Err when none came in `timeout`.
    fn post(
        &self,
        member: &str,
        path: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<(u16, String), String> {
        request(
            "POST",
            &format!("{}{path}", self.url(member)),
            Some(body),
            Some(&auth_for(&self.dir)),
            timeout,
        )
    }

    /// Zombies in `member`'s namespace that are there in two samples 2 s apart (a zombie
    /// about to be reaped in the normal way is not counted).
    fn persistent_zombies(&self, member: &str) -> Vec<(u32, String)> {
        let first = self.member(member).zombies();
        std::thread::sleep(Duration::from_secs(2));
        let second = self.member(member).zombies();
        first.into_iter().filter(|z| second.contains(z)).collect()
    }

    fn healthy(&self) -> bool {
        let d = self.dir.to_string_lossy().into_owned();
        run(&["lab", "status", "--dir", &d]).status.success()
    }

    fn status_text(&self) -> String {
        let d = self.dir.to_string_lossy().into_owned();
        let out = run(&["lab", "status", "--dir", &d]);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out))
    }
}

impl Drop for InitLab {
    fn drop(&mut self) {
        let d = self.dir.to_string_lossy().into_owned();
        let t0 = Instant::now();
        let out = run(&["lab", "down", "--dir", &d]);
        say!(
            "init lab down ({:.1} s): {}",
            t0.elapsed().as_secs_f64(),
            stderr(&out).trim()
        );
    }
}

/// Polls `check` every 500 ms until it returns true or `timeout` passes.
fn within(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn is_running(s: &Option<(String, String)>) -> bool {
    s.as_ref()
        .is_some_and(|(state, _)| state == "running" || state == "streaming")
}

fn no_reap_init_leaves_restart_and_switchover_hanging_on_a_zombie(_lab: &Lab) {
    let lab = InitLab::up("no-reap");
    let leader = lab.leader();
    let replicas = lab.replicas();
    let (restarted, candidate) = (replicas[0].clone(), replicas[1].clone());

    // 1. Restart a replica: PostgreSQL stops, becomes a zombie of PID 1, Patroni waits.
    // The request itself never gets an answer; it is sent and left.
    let _ = lab.post(&restarted, "/restart", "{}", Duration::from_secs(5));
    let stuck = within(Duration::from_secs(30), || {
        lab.own_state(&restarted)
            .is_some_and(|(state, _)| state == "restarting")
            && lab
                .persistent_zombies(&restarted)
                .iter()
                .any(|(_, comm)| comm == "postgres")
    });
    assert!(
        stuck,
        "under a non-reaping PID 1, {restarted} should hang in 'restarting' with a postgres zombie:\n{}",
        lab.status_text()
    );
    // A hang, not a slow restart: still there 10 s later.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        lab.own_state(&restarted).map(|s| s.0).as_deref(),
        Some("restarting"),
        "{}",
        lab.status_text()
    );
    let status = lab.status_text();
    assert!(
        status.contains(&format!(
            "in {restarted}'s PID namespace (init no-reap): postgres"
        )),
        "lab status names the zombie:\n{status}"
    );

    // 2. Switchover: the old leader must stop its postmaster to demote, and hangs too.
    let body = format!(r#"{{"leader":"{leader}","candidate":"{candidate}"}}"#);
    let _ = lab.post(&leader, "/switchover", &body, Duration::from_secs(40));
    let stuck = within(Duration::from_secs(40), || {
        !is_running(&lab.own_state(&leader))
            && lab
                .persistent_zombies(&leader)
                .iter()
                .any(|(_, comm)| comm == "postgres")
    });
    assert!(
        stuck,
        "under a non-reaping PID 1, the old leader {leader} should hang demoting, with a postgres zombie:\n{}",
        lab.status_text()
    );
    std::thread::sleep(Duration::from_secs(10));
    let own = lab.own_state(&leader);
    assert!(
        !is_running(&own),
        "{leader} recovered by itself ({own:?}): the hang was not reproduced\n{}",
        lab.status_text()
    );
    assert!(!lab.healthy(), "{}", lab.status_text());
}

fn supervise_init_completes_restart_and_switchover_without_zombies(_lab: &Lab) {
    let lab = InitLab::up("supervise");
    let leader = lab.leader();
    let replicas = lab.replicas();
    let (restarted, candidate) = (replicas[0].clone(), replicas[1].clone());
    let start_time = |name: &str| -> String {
        let (_, body) = request(
            "GET",
            &format!("{}/patroni", lab.url(name)),
            None,
            None,
            Duration::from_secs(3),
        )
        .expect("GET /patroni");
        serde_json::from_str::<Value>(&body).expect("JSON")["postmaster_start_time"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    // 1. Restart a replica: answered, and it streams again.
    let before = start_time(&restarted);
    let answer = lab.post(&restarted, "/restart", "{}", Duration::from_secs(60));
    assert!(
        matches!(&answer, Ok((200, _))),
        "POST /restart on {restarted}: {answer:?}\n{}",
        lab.status_text()
    );
    assert!(
        within(Duration::from_secs(60), || lab.healthy()),
        "after the restart: {}",
        lab.status_text()
    );
    assert_ne!(
        start_time(&restarted),
        before,
        "{restarted} was really restarted"
    );

    // 2. Switchover: the leader changes and the old leader follows the new one.
    let body = format!(r#"{{"leader":"{leader}","candidate":"{candidate}"}}"#);
    let answer = lab.post(&leader, "/switchover", &body, Duration::from_secs(60));
    assert!(
        matches!(&answer, Ok((200, _))),
        "POST /switchover: {answer:?}\n{}",
        lab.status_text()
    );
    let converged = within(Duration::from_secs(90), || {
        lab.healthy() && lab.leader() == candidate
    });
    assert!(converged, "after the switchover: {}", lab.status_text());
    let own = lab.own_state(&leader);
    assert!(
        is_running(&own) && own.as_ref().is_some_and(|(_, role)| role == "replica"),
        "the old leader {leader} replicates: {own:?}"
    );

    // 3. No zombie persists anywhere.
    for m in lab.state().members {
        let zombies = lab.persistent_zombies(&m.name);
        assert!(
            zombies.is_empty(),
            "{}'s namespace keeps zombies under supervise: {zombies:?}",
            m.name
        );
    }
}
