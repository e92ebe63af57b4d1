//! pgpatrol: keeps Patroni clusters healthy. This crate holds everything that touches the
//! world — sources (REST, Kubernetes, DCS), the executor, the CLI, outputs and the lab —
//! around the pure `pgpatrol-core`.

pub mod audit;
pub mod cli;
pub mod doctor;
pub mod etcd;
pub mod executor;
/// The fuzz targets: built for the unit tests and for `fuzz/` (feature `fuzzing`), never
/// into the shipped binary.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
pub mod lab;
pub mod ops;
pub mod output;
pub mod poll;
pub mod progress;
pub mod source;
pub mod supervise;
pub mod text;
pub mod time;
pub mod watch;
pub mod yaml;

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers for unit tests: Patroni's real responses, captured from live clusters and kept
    //! in `crates/pgpatrol/tests/fixtures/captures/` (see its README).

    /// A capture by file name.
    pub fn capture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/captures/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The versions with a folder of captures (`captures/<version>/`, made by
    /// scripts/capture-patroni), oldest first.
    pub fn captured_versions() -> Vec<String> {
        let dir = format!("{}/tests/fixtures/captures", env!("CARGO_MANIFEST_DIR"));
        let mut found: Vec<(pgpatrol_core::PatroniVersion, String)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                Some((pgpatrol_core::PatroniVersion::parse(&name)?, name))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, name)| name).collect()
    }
}
