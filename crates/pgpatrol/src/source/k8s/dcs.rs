//! Patroni's Kubernetes DCS (`dcs/kubernetes.py`) read through the API server: the
//! ConfigMaps (default) or Endpoints (`use_endpoints`) labelled `cluster-name=<scope>` and
//! the pods with the same label, whose `status` annotation is each member's data. Read-only;
//! RBAC: list on configmaps (or endpoints) and pods. The objects become a
//! `wire::dcs::DcsCluster` in `wire::dcs::from_kubernetes`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod};
use kube::api::ListParams;
use kube::{Api, Client};

use super::errors::api_error;
use crate::source::wire::dcs::{self as wire, Annotations, BadValue, DcsCluster};

/// Patroni's default `kubernetes.scope_label`.
pub const SCOPE_LABEL: &str = "cluster-name";

/// Why the Kubernetes DCS could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KubeDcsError {
    /// The API server refused or failed a list, or no object carries the scope's label.
    #[error("{0}")]
    Read(String),
    #[error("{origin}: {bad}")]
    NotPatroni { origin: String, bad: BadValue },
}

impl KubeDcsError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            KubeDcsError::Read(_) => "dcs_read",
            KubeDcsError::NotPatroni { .. } => "dcs_not_patroni",
        }
    }
}

/// One cluster's objects in one namespace.
#[derive(Clone)]
pub struct KubeDcs {
    pub client: Client,
    pub namespace: String,
    pub scope: String,
}

impl std::fmt::Debug for KubeDcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KubeDcs({}/{})", self.namespace, self.scope)
    }
}

fn annotations(meta: &kube::api::ObjectMeta) -> (String, Annotations) {
    (
        meta.name.clone().unwrap_or_default(),
        meta.annotations.clone().unwrap_or_default(),
    )
}

/// Each object's annotations by object name.
pub fn by_name<'a>(
    metas: impl IntoIterator<Item = &'a kube::api::ObjectMeta>,
) -> BTreeMap<String, Annotations> {
    metas.into_iter().map(annotations).collect()
}

/// Patroni keeps the scope in ConfigMaps when `<scope>-config` or `<scope>-leader` is one of
/// them, else in Endpoints (`use_endpoints`).
pub fn in_configmaps(scope: &str, configmaps: &BTreeMap<String, Annotations>) -> bool {
    configmaps.contains_key(&format!("{scope}-config"))
        || configmaps.contains_key(&format!("{scope}-leader"))
}

/// Each pod's name and `status` annotation (its member data).
pub fn pod_statuses<'a>(
    pods: impl IntoIterator<Item = &'a kube::api::ObjectMeta>,
) -> Vec<(String, Option<String>)> {
    pods.into_iter()
        .map(|p| {
            let (name, a) = annotations(p);
            (name, a.get("status").cloned())
        })
        .collect()
}

impl KubeDcs {
    fn selector(&self) -> String {
        format!("{SCOPE_LABEL}={}", self.scope)
    }

    /// `<namespace>/cluster-name=<scope>`: where the objects are (a snapshot's origin).
    pub fn prefix(&self) -> String {
        format!("{}/{}", self.namespace, self.selector())
    }

    /// The cluster's objects, decoded, and where they were read.
    pub async fn read(&self) -> Result<(DcsCluster, String), KubeDcsError> {
        let ns = self.namespace.as_str();
        let lp = ListParams::default().labels(&self.selector());
        let fail = |e, resource| KubeDcsError::Read(api_error(e, "list", resource, ns).to_string());
        let cms = by_name(
            Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                .list(&lp)
                .await
                .map_err(|e| fail(e, "configmaps"))?
                .items
                .iter()
                .map(|o| &o.metadata),
        );
        let (objects, use_endpoints, kind) = if in_configmaps(&self.scope, &cms) {
            (cms, false, "configmaps")
        } else {
            let eps = by_name(
                Api::<Endpoints>::namespaced(self.client.clone(), ns)
                    .list(&lp)
                    .await
                    .map_err(|e| fail(e, "endpoints"))?
                    .items
                    .iter()
                    .map(|o| &o.metadata),
            );
            (eps, true, "endpoints")
        };
        let origin = format!("Kubernetes {kind} {} in namespace {ns}", self.selector());
        if objects.is_empty() {
            return Err(KubeDcsError::Read(format!(
                "no Patroni ConfigMaps or Endpoints labelled {} in namespace {ns}: check --scope (Patroni's scope) and --namespace",
                self.selector()
            )));
        }
        let pods = pod_statuses(
            Api::<Pod>::namespaced(self.client.clone(), ns)
                .list(&lp)
                .await
                .map_err(|e| fail(e, "pods"))?
                .items
                .iter()
                .map(|p| &p.metadata),
        );
        let c = wire::from_kubernetes(
            &self.scope,
            &objects,
            use_endpoints,
            &pods,
            SystemTime::now(),
        )
        .map_err(|bad| KubeDcsError::NotPatroni {
            origin: origin.clone(),
            bad,
        })?;
        Ok((c, origin))
    }
}

/// One Patroni cluster a label selector found: its namespace, its scope (the `cluster-name`
/// label), and its objects decoded (or why they are not Patroni's).
#[derive(Debug)]
pub struct Found {
    pub namespace: String,
    pub scope: String,
    pub keys: Result<DcsCluster, BadValue>,
}

/// The metadata of every `K` matching `lp` in `ns` (every namespace the caller may list
/// when `None`).
async fn list_metas<K>(
    client: &Client,
    ns: Option<&str>,
    lp: &ListParams,
    resource: &str,
) -> Result<Vec<kube::api::ObjectMeta>, KubeDcsError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api = match ns {
        Some(n) => Api::<K>::namespaced(client.clone(), n),
        None => Api::<K>::all(client.clone()),
    };
    api.list(lp)
        .await
        .map(|l| l.items.into_iter().map(|o| o.meta().clone()).collect())
        .map_err(|e| {
            KubeDcsError::Read(api_error(e, "list", resource, ns.unwrap_or("*")).to_string())
        })
}

/// Objects of one namespace grouped by their `cluster-name` label.
type ByScope = BTreeMap<(String, String), BTreeMap<String, Annotations>>;

fn by_scope(metas: &[kube::api::ObjectMeta]) -> ByScope {
    let mut out = ByScope::new();
    for m in metas {
        let Some(scope) = m.labels.as_ref().and_then(|l| l.get(SCOPE_LABEL)) else {
            continue;
        };
        let ns = m.namespace.clone().unwrap_or_default();
        let (name, a) = annotations(m);
        out.entry((ns, scope.clone())).or_default().insert(name, a);
    }
    out
}

/// Every Patroni cluster whose Kubernetes DCS objects match `selector` in `namespaces`
/// (every namespace when empty): in each, one list of ConfigMaps, one of Endpoints and one
/// of pods, all by `selector` (Patroni puts its `kubernetes.labels` on all three). A cluster
/// is a `cluster-name` label value on a `<scope>-config` or `<scope>-leader` ConfigMap, else
/// on a `<scope>` or `<scope>-config` Endpoints; its members are the pods with that label.
/// One list that fails fails the whole reading: a partial answer is never "the others are
/// gone".
pub async fn read_selected(
    client: &Client,
    namespaces: &[String],
    selector: &str,
) -> Result<Vec<Found>, KubeDcsError> {
    let lp = ListParams::default().labels(selector);
    let all = [None];
    let mut each: Vec<Option<&str>> = namespaces.iter().map(|n| Some(n.as_str())).collect();
    each.sort_unstable();
    each.dedup();
    let scopes: &[Option<&str>] = if namespaces.is_empty() { &all } else { &each };
    let (mut cms, mut eps, mut pods) = (Vec::new(), Vec::new(), Vec::new());
    for ns in scopes {
        cms.extend(list_metas::<ConfigMap>(client, *ns, &lp, "configmaps").await?);
        eps.extend(list_metas::<Endpoints>(client, *ns, &lp, "endpoints").await?);
        pods.extend(list_metas::<Pod>(client, *ns, &lp, "pods").await?);
    }
    let (cms, eps) = (by_scope(&cms), by_scope(&eps));
    let mut members: BTreeMap<(String, String), Vec<&kube::api::ObjectMeta>> = BTreeMap::new();
    for p in &pods {
        if let Some(scope) = p.labels.as_ref().and_then(|l| l.get(SCOPE_LABEL)) {
            members
                .entry((p.namespace.clone().unwrap_or_default(), scope.clone()))
                .or_default()
                .push(p);
        }
    }
    let keys: std::collections::BTreeSet<&(String, String)> =
        cms.keys().chain(eps.keys()).collect();
    let now = SystemTime::now();
    let mut found = Vec::new();
    for key @ (ns, scope) in keys {
        let empty = BTreeMap::new();
        let in_cms = cms.get(key).unwrap_or(&empty);
        let in_eps = eps.get(key).unwrap_or(&empty);
        let (objects, use_endpoints) = if in_configmaps(scope, in_cms) {
            (in_cms, false)
        } else if in_eps.contains_key(scope.as_str())
            || in_eps.contains_key(&format!("{scope}-config"))
        {
            (in_eps, true)
        } else {
            continue;
        };
        let statuses = pod_statuses(members.get(key).into_iter().flatten().copied());
        found.push(Found {
            namespace: ns.clone(),
            scope: scope.clone(),
            keys: wire::from_kubernetes(scope, objects, use_endpoints, &statuses, now),
        });
    }
    Ok(found)
}
