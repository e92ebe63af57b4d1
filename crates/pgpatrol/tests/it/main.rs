//! Integration tests against a real local Patroni cluster (see harness.rs).
//!
//! One binary, run serially: the harness brings ONE lab up (`pgpatrol lab up`, Patroni from
//! `PGPATROL_IT_PATRONI`, default 4.1), restores a healthy baseline before each test, and
//! tears the lab down at the end, even when tests fail.
//!
//! Topics, each a file exporting `pub fn tests() -> Vec<Test>`:
//! - `lab`:  the lab itself: up, real faults (lag, replay lag), repair, side-by-side labs,
//!   down leaves nothing behind, clear errors for a busy dir or port.
//! - `read`: list/topology/history/show-config agree with Patroni; patronictl-json equals
//!   patronictl; the SLI sees receive and replay lag on every version; unknown is not 0.
//! - `doctor`: the runbook's checks: OK on a healthy lab, each failing under its real fault
//!   (lag, etcd stopped) with the fix; thresholds from a checks section; bad input.
//! - `badinput`: unreachable URLs, HTML, garbage and truncated JSON, TLS against plain,
//!   timeouts, wrong credentials, bad units, bad config: one line, exit 2, no panic.
//! - `heal`: the live guardrail tests named in docs/SAFETY.md.
//! - `ops`: switchover (named, automatic, refused, scheduled and flushed), emergency
//!   failover to the member with the most data, pause/resume --wait, edit-config with a
//!   pending restart cleared by a rolling restart (one member down at a time, polled), a
//!   rolling restart that stops before the leader, reload, the audit log, bad input.
//! - `trend`: heal by trend on real faults: slow replay left alone with its ETA, a stopped
//!   walreceiver rebuilt, removed WAL rebuilt at once (heal and watch), the estimate from a
//!   measured heal, bad trend input.
//! - `tls`: --cacert, --cert/--key, --insecure and patroni.yml's TLS settings against an
//!   https server set up like Patroni's restapi (fixtures/tls_server.py; no lab needed).
//!
//! - `standby`: a standby cluster of the lab (`lab up --standby-of`): its lag against the
//!   source (sli, list, doctor, watch), an archive-only standby and a failing
//!   restore_command, a source that is not its source, `slot drop`, heal on it,
//!   promote/demote.
//!
//! - `watch`: the daemon against the lab, a real Alertmanager and a real Prometheus.
//!
//! - `faults`: pgpatrol's actions under real faults (a leader killed, a receiver stopped,
//!   etcd stopped or a member killed mid-action), judged by an independent observer (tests/observer/observer.py: writes
//!   rows, polls every member, checks the invariants); a control proves it can fail.
//!
//! - `fleet`: watchers sharing one list of clusters: static shards (`--shard`, `shard:`),
//!   `--shard-from-pod` against a StatefulSet in the Kubernetes fixture; no lab.
//!
//! - `dcs`: the etcd v3 DCS source against the lab's etcd (list --dcs equals list --url,
//!   every Patroni stopped, watch, bad input), separate etcd servers with authentication and
//!   with TLS, and `remove` on a side lab.
//!
//! - `k8s`: the Kubernetes source through an API server fixture (k8s_fixture.rs: real
//!   object JSON, pods/proxy to the lab, pods/portforward over websocket) in front of the lab;
//!   `k8s_dcs` (also named `k8s::`): Patroni's Kubernetes DCS objects in the fixture;
//!   `k8s_discover` (also `k8s::`, no lab): discovery and `list --all` by label selector.
//!
//! - `supervise`: seed 001's hang live: members in their own PID namespaces under a PID 1
//!   that does not reap (the hang is asserted) and under `pgpatrol supervise` (it is gone).
//!
//! - `compat`: every Patroni line a user still runs. On 4.1 and 3.0 (the whole suite) it adds
//!   the per-version checks; on 4.0, 3.3, 2.1 and Debian's 3.0.2 it is the only topic, and
//!   runs the key reading, heal and watch tests too (PGPATROL_IT_PATRONI=2.1 ...).
//! - `toolbox`: what an operator installs and looks at: bash completion, colour only where
//!   it belongs, `list --watch` in a real terminal (tmux) through an outage and a failover,
//!   the Grafana dashboard's queries against a real Prometheus, and the Debian package
//!   (dpkg -i, its unit's command line as its user, purge). Needs root, tmux, man-db,
//!   bash-completion (scripts/setup installs them).
//!
//! `PGPATROL_IT_TOPICS=read,heal` runs only those topics (scripts/test runs the
//! version-sensitive ones on Patroni 3.0).
//!
//! `util` holds helpers shared by the topics (plain HTTP, a fake server, pause guard).
//!
//! To add a topic: create `topic.rs` with `pub fn tests() -> Vec<Test> { tests![f, g] }`, add
//! `mod topic;` below and `("topic", topic::tests)` to the list in `main`.

#[macro_use]
mod harness;

mod badinput;
mod compat;
mod dcs;
mod doctor;
mod faults;
mod fleet;
mod heal;
mod k8s;
mod k8s_dcs;
mod k8s_discover;
mod k8s_fixture;
mod lab;
mod ops;
mod page;
mod read;
mod standby;
mod supervise;
mod supervise_proc;
mod tls;
mod toolbox;
mod trend;
mod util;
mod watch;

use std::process::ExitCode;

fn main() -> ExitCode {
    if !harness::full_suite() {
        return harness::main(&[("compat", compat::tests)]);
    }
    harness::main(&[
        ("lab", lab::tests),
        ("read", read::tests),
        ("doctor", doctor::tests),
        ("badinput", badinput::tests),
        ("heal", heal::tests),
        ("ops", ops::tests),
        ("standby", standby::tests),
        ("trend", trend::tests),
        ("watch", watch::tests),
        ("page", page::tests),
        ("fleet", fleet::tests),
        ("faults", faults::tests),
        ("tls", tls::tests),
        ("dcs", dcs::tests),
        ("k8s", k8s::tests),
        ("k8s", k8s_dcs::tests),
        ("k8s", k8s_discover::tests),
        ("supervise", supervise::tests),
        ("supervise", supervise_proc::tests),
        ("compat", compat::tests),
        ("toolbox", toolbox::tests),
    ])
}
