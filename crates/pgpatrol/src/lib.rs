//! pgpatrol: keeps Patroni clusters healthy. This crate holds everything that touches the
//! world — sources (REST, Kubernetes, DCS), the executor, the CLI, outputs and the lab —
//! around the pure `pgpatrol-core`.

pub mod cli;
pub mod etcd;
pub mod executor;
pub mod lab;
pub mod output;
pub mod source;
pub mod supervise;
pub mod watch;

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers for unit tests: Patroni's real responses, captured in shared/reference.

    /// A capture from `shared/reference/captures/` beside the repository.
    pub fn capture(name: &str) -> String {
        let path = format!(
            "{}/../../../shared/reference/captures/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }
}
