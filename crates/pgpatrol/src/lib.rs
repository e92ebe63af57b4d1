//! pgpatrol: keeps Patroni clusters healthy. This crate holds everything that touches the
//! world — sources (REST, Kubernetes, DCS), the executor, the CLI, outputs and the lab —
//! around the pure `pgpatrol-core`.

pub mod cli;
pub mod etcd;
pub mod executor;
pub mod lab;
pub mod output;
pub mod source;
pub mod watch;
