//! Integration tests against a real local Patroni cluster (see harness.rs).
fn main() {}
