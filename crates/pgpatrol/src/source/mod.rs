//! Where cluster snapshots come from: the Patroni REST API, directly or through Kubernetes,
//! or Patroni's DCS (etcd v3); and how the operator names a cluster (`--url`,
//! `-c patroni.yml`, `--dcs`).

pub mod cluster;
pub mod dcs;
pub mod http;
pub mod k8s;
pub mod kept;
pub mod patroni_yml;
pub mod pg;
pub mod rest;
pub mod standby;
pub mod target;
pub mod wire;

pub use cluster::ClusterSource;
pub use rest::{Detail, Snapshot};

use http::HttpError;

/// Why no snapshot could be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("no member answered: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    AllFailed(Vec<HttpError>),
    #[error(
        "no cluster given: pass --url http://HOST:8008 (or set PATRONI_URL), -c/--config-file patroni.yml, --dcs etcd3://HOST:PORT with --scope, or --k8s-resource statefulset/NAME (PATRONI_RESOURCE_NAME)"
    )]
    NoTarget,
    #[error("{0}")]
    BadInput(String),
    /// `/cluster` fails everywhere while members answer their own `/patroni`.
    #[error("{0}")]
    DcsUnreachable(String),
    #[error(transparent)]
    Dcs(#[from] dcs::DcsError),
    #[error(transparent)]
    KubeDcs(#[from] k8s::dcs::KubeDcsError),
}

impl From<http::BadInput> for SourceError {
    fn from(e: http::BadInput) -> Self {
        SourceError::BadInput(e.0)
    }
}

impl SourceError {
    fn from_attempts(mut errors: Vec<HttpError>) -> Self {
        // An RBAC denial is the same for every member: say it once.
        if let Some(i) = errors
            .iter()
            .position(|e| matches!(e, HttpError::KubernetesDenied(_)))
        {
            return SourceError::Http(errors.swap_remove(i));
        }
        match errors.len() {
            0 => SourceError::NoTarget,
            1 => SourceError::Http(errors.remove(0)),
            _ => SourceError::AllFailed(errors),
        }
    }

    /// Every member tried gave no answer at all (see [`HttpError::is_no_answer`]).
    pub fn no_answer(&self) -> bool {
        match self {
            SourceError::Http(e) => e.is_no_answer(),
            SourceError::AllFailed(errors) => errors.iter().all(HttpError::is_no_answer),
            _ => false,
        }
    }

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SourceError::Http(e) => e.metric_label(),
            SourceError::AllFailed(_) => "all_failed",
            SourceError::NoTarget => "no_target",
            SourceError::BadInput(_) => "bad_input",
            SourceError::DcsUnreachable(_) => "dcs_unreachable",
            SourceError::Dcs(e) => e.metric_label(),
            SourceError::KubeDcs(e) => e.metric_label(),
        }
    }
}
