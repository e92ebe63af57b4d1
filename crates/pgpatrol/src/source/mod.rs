//! Where cluster snapshots come from: the Patroni REST API, directly or through Kubernetes,
//! or Patroni's DCS (etcd v3); and how the operator names a cluster (`--url`,
//! `-c patroni.yml`, `--dcs`).

pub mod dcs;
pub mod k8s;
pub mod kept;
pub mod patroni_yml;
pub mod rest;
pub mod standby;
pub mod target;

use rest::RestError;

/// Why no snapshot could be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Rest(#[from] RestError),
    #[error("no member answered: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    AllFailed(Vec<RestError>),
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
}

impl SourceError {
    fn from_attempts(mut errors: Vec<RestError>) -> Self {
        // An RBAC denial is the same for every member: say it once.
        if let Some(i) = errors
            .iter()
            .position(|e| matches!(e, RestError::KubernetesDenied(_)))
        {
            return SourceError::Rest(errors.swap_remove(i));
        }
        match errors.len() {
            0 => SourceError::NoTarget,
            1 => SourceError::Rest(errors.remove(0)),
            _ => SourceError::AllFailed(errors),
        }
    }

    /// Every member tried gave no answer at all (see [`RestError::is_no_answer`]).
    pub fn no_answer(&self) -> bool {
        match self {
            SourceError::Rest(e) => e.is_no_answer(),
            SourceError::AllFailed(errors) => errors.iter().all(RestError::is_no_answer),
            _ => false,
        }
    }

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SourceError::Rest(e) => e.metric_label(),
            SourceError::AllFailed(_) => "all_failed",
            SourceError::NoTarget => "no_target",
            SourceError::BadInput(_) => "bad_input",
            SourceError::DcsUnreachable(_) => "dcs_unreachable",
            SourceError::Dcs(e) => e.metric_label(),
        }
    }
}
