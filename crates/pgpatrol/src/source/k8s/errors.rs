//! What the Kubernetes source says when it cannot go on: [`K8sError`], the API server's
//! `Status` as one line, and an RBAC denial as the verb and resource to grant.

use crate::source::http::HttpError;
use crate::source::SourceError;
use crate::text::{error_chain, one_line};

/// Why the Kubernetes source could not be set up. Each message is one line that says what
/// to do.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("{0}")]
    Config(String),
    #[error(
        "unknown resource kind {kind:?} in {resource:?}: use statefulset/NAME, deployment/NAME or pod/NAME"
    )]
    Kind { kind: String, resource: String },
    #[error("{0}")]
    Discovery(String),
    #[error(
        "forbidden: cannot {verb} {resource} in namespace {namespace}: grant {verb:?} on {resource:?} to the service account (see deploy/rbac.yaml)"
    )]
    Forbidden {
        verb: String,
        resource: String,
        namespace: String,
    },
    #[error("{0}")]
    Api(String),
}

impl From<K8sError> for SourceError {
    fn from(e: K8sError) -> Self {
        SourceError::BadInput(e.to_string())
    }
}

/// Turns a kube error into one line; a 403 names the verb and resource to grant.
pub(super) fn api_error(e: kube::Error, verb: &str, resource: &str, namespace: &str) -> K8sError {
    match e {
        kube::Error::Api(status) => status_error(&status, verb, resource, namespace),
        other => K8sError::Api(format!(
            "cannot {verb} {resource} in namespace {namespace}: the API server did not answer ({}): check --kubeconfig and --context",
            one_line(&error_chain(&other))
        )),
    }
}

/// An API server `Status` as an error. A 403 names what the server checked: the verb and
/// resource from its RBAC message (`cannot create resource "pods/portforward"`), else the
/// Status's `details.kind` with the verb of this call, else this call's verb and resource.
/// The server's words win because it may check another verb than the HTTP method suggests
/// (a websocket upgrade is a GET that newer servers authorize as `create`).
pub(super) fn status_error(
    status: &kube::core::Status,
    verb: &str,
    resource: &str,
    namespace: &str,
) -> K8sError {
    if status.code == 403 {
        let (verb, resource) = rbac_denial(&status.message).unwrap_or_else(|| {
            let kind = status
                .details
                .as_ref()
                .map(|d| d.kind.clone())
                .filter(|k| k.contains('/'))
                .unwrap_or_else(|| resource.to_string());
            (verb.to_string(), kind)
        });
        return K8sError::Forbidden {
            verb,
            resource,
            namespace: namespace.into(),
        };
    }
    let detail = if status.message.is_empty() {
        status.reason.clone()
    } else {
        status.message.clone()
    };
    K8sError::Api(format!(
        "cannot {verb} {resource} in namespace {namespace}: the API server answered {}: {}",
        status.code,
        one_line(&detail)
    ))
}

/// A Kubernetes error on a Patroni call: an RBAC denial stands alone (it is the same for
/// every pod, and says what to grant); anything else names the call.
pub(super) fn rest_error(url: &str, e: K8sError) -> HttpError {
    match e {
        K8sError::Forbidden { .. } => HttpError::KubernetesDenied(e.to_string()),
        other => HttpError::Kubernetes {
            url: url.to_string(),
            reason: other.to_string(),
        },
    }
}

/// `... cannot create resource "pods/portforward" in API group "" ...` → (create,
/// pods/portforward), as the RBAC authorizer words a denial.
fn rbac_denial(message: &str) -> Option<(String, String)> {
    let (_, rest) = message.split_once(" cannot ")?;
    let (verb, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("resource \"")?;
    let (resource, _) = rest.split_once('"')?;
    (!verb.is_empty() && !resource.is_empty()).then(|| (verb.to_string(), resource.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forbidden_status_names_the_verb_and_resource() {
        let st: kube::core::Status = serde_json::from_value(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "pods \"p-0\" is forbidden: User \"x\" cannot get resource \"pods/proxy\"",
            "reason": "Forbidden", "details": {"name": "p-0", "kind": "pods"}, "code": 403
        }))
        .unwrap();
        let e = status_error(&st, "get", "pods/proxy", "mydata").to_string();
        assert_eq!(
            e,
            "forbidden: cannot get pods/proxy in namespace mydata: grant \"get\" on \"pods/proxy\" to the service account (see deploy/rbac.yaml)"
        );
        // The server's own words win over the call's: a websocket GET checked as create.
        let mut st = st;
        st.message = "pods \"p-0\" is forbidden: User \"x\" cannot create resource \"pods/portforward\" in API group \"\" in the namespace \"mydata\"".into();
        let e = status_error(&st, "get", "pods/portforward", "mydata").to_string();
        assert!(
            e.starts_with(
                "forbidden: cannot create pods/portforward in namespace mydata: grant \"create\""
            ),
            "{e}"
        );
        // Without a message: details.kind, else the call's own verb and resource.
        st.message.clear();
        let e = status_error(&st, "list", "pods", "mydata").to_string();
        assert!(e.starts_with("forbidden: cannot list pods in"), "{e}");
    }
}
