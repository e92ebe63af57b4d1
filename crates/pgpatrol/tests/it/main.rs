//! Integration tests against a real local Patroni cluster (see harness.rs).
//!
//! One binary, run serially: the harness brings ONE lab up (`pgpatrol lab up`, Patroni from
//! `PGPATROL_IT_PATRONI`, default 4.1), restores a healthy baseline before each test, and
//! tears the lab down at the end, even when tests fail.
//!
//! Topics, each a file exporting `pub fn tests() -> Vec<Test>`:
//! - `lab`:  the lab itself: up, real faults (lag, replay lag), repair, side-by-side labs,
//!   down leaves nothing behind, clear errors for a busy dir or port.
//!
//! To add a topic: create `topic.rs` with `pub fn tests() -> Vec<Test> { tests![f, g] }`, add
//! `mod topic;` below and `("topic", topic::tests)` to the list in `main`.

#[macro_use]
mod harness;
mod lab;

use std::process::ExitCode;

fn main() -> ExitCode {
    harness::main(&[("lab", lab::tests)])
}
