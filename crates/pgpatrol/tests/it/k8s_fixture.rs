//! A Kubernetes API server fixture: just the endpoints pgpatrol (and `kubectl get pods`)
//! use, answering with the real wire format: apps/v1 StatefulSets and Deployments, v1 Pods
//! (list by labelSelector, get), Secrets, `pods/proxy` forwarded to a live lab member (the
//! `Authorization` header stripped, as the real API server does), `pods/portforward` over a
//! websocket with the `v4.channel.k8s.io` framing, 404 and 403 `Status` objects, and the
//! discovery documents kubectl reads first. For Patroni's Kubernetes DCS: ConfigMaps and
//! Endpoints (list by labelSelector) carrying the annotations `dcs/kubernetes.py` writes,
//! and pod annotations (the `status` of each member). `pods/exec` over a websocket
//! (`v5.channel.k8s.io`, else `v4`): stdin on channel 0 until the close signal (255), the
//! command really run here (only `curl`: the pods' Patroni is the lab's), its stdout and
//! stderr on channels 1 and 2 and its exit as a `Status` on channel 3. Leases with the API
//! server's optimistic concurrency, listed by labelSelector.
//!
//! It is not an API server: no watch, no auth, no admission. Every pod has
//! `status.podIP` 127.0.0.1 and its Patroni container port is the lab member's REST port, so
//! the (IP, port) pair tells pods apart the way the pod IP alone does in a real cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A pod the fixture serves.
#[derive(Debug, Clone)]
pub struct FakePod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Container ports: (name, port).
    pub ports: Vec<(String, u16)>,
    pub ready: bool,
}

/// A StatefulSet or Deployment: its kind, namespace, name and matchLabels.
#[derive(Debug, Clone)]
pub struct FakeWorkload {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub selector: BTreeMap<String, String>,
}

/// A ConfigMap or Endpoints object as Patroni's kubernetes.py writes it: labels,
/// annotations, and (the leader Endpoints) subsets.
#[derive(Debug, Clone)]
pub struct FakeObject {
    /// `ConfigMap` or `Endpoints`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub subsets: Option<Value>,
}

/// What the fixture knows, and what it was asked.
#[derive(Debug, Default)]
pub struct World {
    /// ConfigMaps and Endpoints.
    pub objects: Vec<FakeObject>,
    /// coordination.k8s.io/v1 Leases: (namespace, name) → (resourceVersion, object).
    pub leases: BTreeMap<(String, String), (u64, Value)>,
    /// (namespace, pod name) → the pod's annotations.
    pub pod_annotations: BTreeMap<(String, String), BTreeMap<String, String>>,
    pub pods: Vec<FakePod>,
    pub workloads: Vec<FakeWorkload>,
    /// (namespace, name) → data keys.
    pub secrets: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// (namespace, verb, resource) the caller may not use: answered with a 403 Status.
    pub denied: Vec<(String, String, String)>,
    /// When set, only these (verb, resource) pairs are allowed, as with a single Role.
    pub allowed: Option<Vec<(String, String)>>,
    /// When set, `allowed` holds only in these namespaces (a Role bound in each): a list
    /// across all namespaces, or in another namespace, is forbidden. Unset: everywhere (a
    /// ClusterRole).
    pub role_namespaces: Option<Vec<String>>,
    /// Every list (pods, ConfigMaps, Endpoints, Leases) answers 500, as an API server whose
    /// etcd is down.
    pub failing: bool,
    /// Every request: "METHOD path" plus " auth" when it carried Authorization to the pod.
    pub log: Vec<String>,
    /// StatefulSets (namespace, name) backed by a lab's folder: scaling one starts or stops
    /// lab members in the background, as the controller creates and deletes pods, and its
    /// pods `NAME-i` are lab members.
    pub scaled: BTreeMap<(String, String), PathBuf>,
    /// `spec.replicas` of StatefulSets that were given one (else 3).
    pub replicas: BTreeMap<(String, String), i32>,
    /// PersistentVolumeClaims (namespace, name).
    pub pvcs: Vec<(String, String)>,
    /// Pod logs: (namespace, pod) → the file whose tail `pods/log` serves.
    pub pod_logs: BTreeMap<(String, String), PathBuf>,
}

/// A running fixture and a kubeconfig pointing at it.
pub struct Fixture {
    pub kubeconfig: PathBuf,
    pub world: Arc<Mutex<World>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Fixture {
    /// Starts the fixture on a free loopback port and writes `dir/kubeconfig` with a context
    /// `default` (namespace mydata) and a context `other`.
    pub fn start(world: World, dir: &Path) -> Fixture {
        let world = Arc::new(Mutex::new(world));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fixture");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let w = world.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = router(w);
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
            });
        });
        std::fs::create_dir_all(dir).expect("fixture dir");
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1
kind: Config
clusters:
- name: fixture
  cluster:
    server: http://127.0.0.1:{port}
users:
- name: fixture
  user:
    token: fixture-token
contexts:
- name: default
  context:
    cluster: fixture
    user: fixture
    namespace: mydata
- name: other
  context:
    cluster: fixture
    user: fixture
    namespace: elsewhere
current-context: default
"
            ),
        )
        .expect("write kubeconfig");
        Fixture {
            kubeconfig,
            world,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.world.lock().expect("world").log.clone()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Shared = Arc<Mutex<World>>;

fn router(world: Shared) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/api", get(api_versions))
        .route("/api/v1", get(core_resources))
        .route("/apis", get(api_groups))
        .route("/apis/apps/v1", get(apps_resources))
        .route(
            "/apis/apps/v1/namespaces/{ns}/statefulsets/{name}",
            get(statefulset),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/statefulsets/{name}/scale",
            get(get_scale).patch(patch_scale),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            get(deployment),
        )
        .route(
            "/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}",
            axum::routing::delete(delete_pvc),
        )
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
        .route("/api/v1/namespaces/{ns}", get(namespace))
        .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
        .route("/api/v1/namespaces/{ns}/configmaps", get(list_configmaps))
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
            axum::routing::post(create_lease).get(list_leases),
        )
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
            get(get_lease).put(replace_lease),
        )
        .route("/api/v1/namespaces/{ns}/endpoints", get(list_endpoints))
        .route("/api/v1/pods", get(list_all_pods))
        .route("/api/v1/configmaps", get(list_all_configmaps))
        .route("/api/v1/endpoints", get(list_all_endpoints))
        .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod))
        .route("/api/v1/namespaces/{ns}/secrets/{name}", get(get_secret))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/proxy/{*path}",
            any(proxy),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/portforward",
            get(portforward),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/exec",
            get(exec).post(exec),
        )
        .fallback(not_found_route)
        .with_state(world)
}

fn json_response(code: StatusCode, v: Value) -> Response {
    let mut r = (code, v.to_string()).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// A `metav1.Status` as the API server sends it for errors.
fn status(code: u16, reason: &str, message: String, details: Value) -> Response {
    json_response(
        StatusCode::from_u16(code).expect("code"),
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": details,
            "code": code,
        }),
    )
}

fn not_found(kind: &str, group: &str, name: &str) -> Response {
    let what = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    status(
        404,
        "NotFound",
        format!("{what} \"{name}\" not found"),
        json!({"name": name, "group": group, "kind": kind}),
    )
}

/// A 403 when the world denies (verb, resource) in `ns`, worded like the real API server.
fn check(world: &Shared, ns: &str, verb: &str, resource: &str, name: &str) -> Option<Response> {
    let w = world.lock().expect("world");
    if w.failing && verb == "list" {
        return Some(status(
            500,
            "InternalError",
            "Internal error occurred: etcdserver: request timed out".into(),
            json!({}),
        ));
    }
    let denied = w
        .denied
        .iter()
        .any(|(n, v, r)| n == ns && v == verb && r == resource)
        || w.allowed
            .as_ref()
            .is_some_and(|a| !a.iter().any(|(v, r)| v == verb && r == resource))
        || w.role_namespaces
            .as_ref()
            .is_some_and(|nss| !nss.iter().any(|n| n == ns));
    if !denied {
        return None;
    }
    if ns.is_empty() {
        return Some(status(
            403,
            "Forbidden",
            format!(
                "{resource} is forbidden: User \"system:serviceaccount:mydata:pgpatrol\" cannot {verb} resource \"{resource}\" in API group \"\" at the cluster scope"
            ),
            json!({"kind": resource}),
        ));
    }
    let (kind, _) = resource.split_once('/').unwrap_or((resource, ""));
    let group = if matches!(kind, "statefulsets" | "deployments") {
        "apps"
    } else {
        ""
    };
    Some(status(
        403,
        "Forbidden",
        format!(
            "{kind} \"{name}\" is forbidden: User \"system:serviceaccount:{ns}:pgpatrol\" cannot {verb} resource \"{resource}\" in API group \"{group}\" in the namespace \"{ns}\""
        ),
        json!({"name": name, "group": group, "kind": kind}),
    ))
}

fn record(world: &Shared, line: String) {
    world.lock().expect("world").log.push(line);
}

async fn not_found_route(req: Request) -> Response {
    status(
        404,
        "NotFound",
        format!(
            "the server could not find the requested resource ({})",
            req.uri().path()
        ),
        json!({}),
    )
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-pgpatrol-fixture",
               "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
               "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
    )
}

async fn api_versions() -> Response {
    json_response(
        StatusCode::OK,
        json!({"kind": "APIVersions", "versions": ["v1"],
               "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
    )
}

fn resource(name: &str, kind: &str, namespaced: bool, verbs: &[&str]) -> Value {
    json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs})
}

async fn core_resources() -> Response {
    json_response(
        StatusCode::OK,
        json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            resource("namespaces", "Namespace", false, &["get"]),
            resource("pods", "Pod", true, &["get", "list"]),
            resource("pods/proxy", "PodProxyOptions", true, &["create", "get"]),
            resource("pods/portforward", "PodPortForwardOptions", true, &["create", "get"]),
            resource("secrets", "Secret", true, &["get"]),
        ]}),
    )
}

async fn api_groups() -> Response {
    let gv = json!({"groupVersion": "apps/v1", "version": "v1"});
    json_response(
        StatusCode::OK,
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "apps", "versions": [gv], "preferredVersion": gv}
        ]}),
    )
}

async fn apps_resources() -> Response {
    json_response(
        StatusCode::OK,
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
            resource("statefulsets", "StatefulSet", true, &["get", "list"]),
            resource("statefulsets/scale", "Scale", true, &["get", "patch", "update"]),
            resource("deployments", "Deployment", true, &["get", "list"]),
        ]}),
    )
}

fn workload_json(w: &FakeWorkload, replicas: i32) -> Value {
    let pod_labels = json!(w.selector);
    json!({
        "kind": w.kind,
        "apiVersion": "apps/v1",
        "metadata": {"name": w.name, "namespace": w.namespace,
                     "uid": format!("uid-{}-{}", w.namespace, w.name),
                     "resourceVersion": "1", "generation": 1,
                     "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": pod_labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": w.selector},
            "template": {"metadata": {"labels": pod_labels},
                         "spec": {"containers": [{"name": "patroni", "image": "patroni:4"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "pgdata"},
                                      "spec": {"accessModes": ["ReadWriteOnce"],
                                               "resources": {"requests": {"storage": "1Gi"}}}}]
        },
        "status": {"replicas": replicas}
    })
}

async fn workload(
    world: Shared,
    kind: &'static str,
    plural: &str,
    ns: String,
    name: String,
) -> Response {
    record(&world, format!("GET {plural}/{name}"));
    if let Some(r) = check(&world, &ns, "get", plural, &name) {
        return r;
    }
    let w = world.lock().expect("world");
    match w
        .workloads
        .iter()
        .find(|x| x.kind == kind && x.namespace == ns && x.name == name)
    {
        Some(x) => {
            let n = w
                .replicas
                .get(&(ns.clone(), name.clone()))
                .copied()
                .unwrap_or(3);
            json_response(StatusCode::OK, workload_json(x, n))
        }
        None => not_found(plural, "apps", &name),
    }
}

async fn statefulset(
    State(world): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    workload(world, "StatefulSet", "statefulsets", ns, name).await
}

async fn deployment(
    State(world): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    workload(world, "Deployment", "deployments", ns, name).await
}

/// A pod as `kubectl get pod -o json` shows it (the fields pgpatrol and kubectl read, and
/// the usual neighbours).
/// A pod with the annotations the world holds for it (Patroni's `status`).
fn pod_json_in(w: &World, p: &FakePod) -> Value {
    let mut v = pod_json(p);
    if let Some(a) = w
        .pod_annotations
        .get(&(p.namespace.clone(), p.name.clone()))
    {
        v["metadata"]["annotations"] = json!(a);
    }
    v
}

fn lease_json(rv: u64, v: &Value) -> Value {
    let mut v = v.clone();
    v["kind"] = json!("Lease");
    v["apiVersion"] = json!("coordination.k8s.io/v1");
    v["metadata"]["resourceVersion"] = json!(rv.to_string());
    v
}

fn lease_conflict(name: &str, reason: &str, message: String) -> Response {
    status(
        409,
        reason,
        message,
        json!({"name": name, "group": "coordination.k8s.io", "kind": "leases"}),
    )
}

async fn get_lease(
    State(world): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    record(&world, format!("GET lease {ns}/{name}"));
    if let Some(r) = check(&world, &ns, "get", "leases", &name) {
        return r;
    }
    let w = world.lock().expect("world");
    match w.leases.get(&(ns.clone(), name.clone())) {
        Some((rv, v)) => json_response(StatusCode::OK, lease_json(*rv, v)),
        None => status(
            404,
            "NotFound",
            format!("leases.coordination.k8s.io \"{name}\" not found"),
            json!({"name": name, "group": "coordination.k8s.io", "kind": "leases"}),
        ),
    }
}

/// Leases of a namespace by `labelSelector` (the shard ring's watchers).
async fn list_leases(
    State(world): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let sel = q.get("labelSelector").cloned().unwrap_or_default();
    record(&world, format!("LIST leases {ns} {sel}"));
    if let Some(r) = check(&world, &ns, "list", "leases", "") {
        return r;
    }
    let w = world.lock().expect("world");
    let items: Vec<Value> = w
        .leases
        .iter()
        .filter(|((n, _), (_, v))| {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(v["metadata"]["labels"].clone()).unwrap_or_default();
            n == &ns && matches(&sel, &labels)
        })
        .map(|(_, (rv, v))| lease_json(*rv, v))
        .collect();
    json_response(
        StatusCode::OK,
        json!({"kind": "LeaseList", "apiVersion": "coordination.k8s.io/v1", "metadata": {"resourceVersion": "9"}, "items": items}),
    )
}

async fn create_lease(
    State(world): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let name = v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    record(
        &world,
        format!(
            "CREATE lease {ns}/{name} holder={}",
            v["spec"]["holderIdentity"]
        ),
    );
    if let Some(r) = check(&world, &ns, "create", "leases", &name) {
        return r;
    }
    let mut w = world.lock().expect("world");
    if w.leases.contains_key(&(ns.clone(), name.clone())) {
        return lease_conflict(
            &name,
            "AlreadyExists",
            format!("leases.coordination.k8s.io \"{name}\" already exists"),
        );
    }
    w.leases.insert((ns, name), (1, v.clone()));
    json_response(StatusCode::CREATED, lease_json(1, &v))
}

/// PUT: the optimistic concurrency of the real API server: a body whose resourceVersion is
/// not the current one is a 409 Conflict.
async fn replace_lease(
    State(world): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(
        &world,
        format!(
            "UPDATE lease {ns}/{name} holder={}",
            v["spec"]["holderIdentity"]
        ),
    );
    if let Some(r) = check(&world, &ns, "update", "leases", &name) {
        return r;
    }
    let mut w = world.lock().expect("world");
    let Some((rv, _)) = w.leases.get(&(ns.clone(), name.clone())).cloned() else {
        return status(
            404,
            "NotFound",
            format!("leases.coordination.k8s.io \"{name}\" not found"),
            json!({"name": name, "group": "coordination.k8s.io", "kind": "leases"}),
        );
    };
    if v["metadata"]["resourceVersion"].as_str() != Some(rv.to_string().as_str()) {
        return lease_conflict(
            &name,
            "Conflict",
            format!("Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
        );
    }
    w.leases.insert((ns, name), (rv + 1, v.clone()));
    json_response(StatusCode::OK, lease_json(rv + 1, &v))
}

fn object_json(o: &FakeObject) -> Value {
    let mut v = json!({
        "kind": o.kind,
        "apiVersion": "v1",
        "metadata": {
            "name": o.name, "namespace": o.namespace,
            "uid": format!("uid-{}-{}-{}", o.kind, o.namespace, o.name),
            "resourceVersion": "7",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": o.labels,
            "annotations": o.annotations,
        },
    });
    if let Some(s) = &o.subsets {
        v["subsets"] = s.clone();
    }
    v
}

async fn list_objects(
    world: Shared,
    ns: String,
    sel: String,
    kind: &'static str,
    resource: &str,
) -> Response {
    let at = if ns.is_empty() { "*" } else { ns.as_str() };
    record(&world, format!("LIST {resource} {at} {sel}"));
    if let Some(r) = check(&world, &ns, "list", resource, "") {
        return r;
    }
    let w = world.lock().expect("world");
    let items: Vec<Value> = w
        .objects
        .iter()
        .filter(|o| {
            o.kind == kind && (ns.is_empty() || o.namespace == ns) && matches(&sel, &o.labels)
        })
        .map(object_json)
        .collect();
    json_response(
        StatusCode::OK,
        json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": items}),
    )
}

async fn list_configmaps(
    State(world): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let sel = q.get("labelSelector").cloned().unwrap_or_default();
    list_objects(world, ns, sel, "ConfigMap", "configmaps").await
}

async fn list_endpoints(
    State(world): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let sel = q.get("labelSelector").cloned().unwrap_or_default();
    list_objects(world, ns, sel, "Endpoints", "endpoints").await
}

fn scale_json(ns: &str, name: &str, replicas: i32) -> Value {
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "1",
                     "uid": format!("uid-{ns}-{name}")},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas}
    })
}

fn has_statefulset(w: &World, ns: &str, name: &str) -> bool {
    w.workloads
        .iter()
        .any(|x| x.kind == "StatefulSet" && x.namespace == ns && x.name == name)
}

async fn get_scale(
    State(world): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    record(&world, format!("GET statefulsets/{name}/scale"));
    if let Some(r) = check(&world, &ns, "get", "statefulsets/scale", &name) {
        return r;
    }
    let w = world.lock().expect("world");
    if !has_statefulset(&w, &ns, &name) {
        return not_found("statefulsets", "apps", &name);
    }
    let n = w
        .replicas
        .get(&(ns.clone(), name.clone()))
        .copied()
        .unwrap_or(3);
    json_response(StatusCode::OK, scale_json(&ns, &name, n))
}

/// A merge patch of `spec.replicas`; a lab-backed StatefulSet then starts or stops lab
/// members in the background (the answer does not wait, as a real API server's does not).
async fn patch_scale(
    State(world): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = check(&world, &ns, "patch", "statefulsets/scale", &name) {
        return r;
    }
    let Some(want) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["spec"]["replicas"].as_i64())
        .and_then(|n| i32::try_from(n).ok())
    else {
        return status(
            422,
            "Invalid",
            "spec.replicas: a number is required".into(),
            json!({}),
        );
    };
    record(
        &world,
        format!("PATCH statefulsets/{name}/scale replicas={want}"),
    );
    let lab = {
        let mut w = world.lock().expect("world");
        if !has_statefulset(&w, &ns, &name) {
            return not_found("statefulsets", "apps", &name);
        }
        w.replicas.insert((ns.clone(), name.clone()), want);
        w.scaled.get(&(ns.clone(), name.clone())).cloned()
    };
    if let Some(dir) = lab {
        let (world, ns, name) = (world.clone(), ns.clone(), name.clone());
        tokio::spawn(async move { reconcile(world, ns, name, dir, want).await });
    }
    json_response(StatusCode::OK, scale_json(&ns, &name, want))
}

/// The StatefulSet controller of a lab-backed StatefulSet: pods `NAME-i` up to `want`, each
/// a lab member started for it (with its claim `pgdata-NAME-i`); a scale-down stops the
/// highest ordinals' members, then drops their pods (claims stay, as Kubernetes keeps them).
async fn reconcile(world: Shared, ns: String, name: String, dir: PathBuf, want: i32) {
    let paths = pgpatrol::lab::LabPaths::new(&dir).expect("lab paths");
    let prefix = format!("{name}-");
    loop {
        let (have, labels) = {
            let w = world.lock().expect("world");
            let labels = w
                .workloads
                .iter()
                .find(|x| x.namespace == ns && x.name == name)
                .map(|x| x.selector.clone())
                .unwrap_or_default();
            let have = w
                .pods
                .iter()
                .filter(|p| p.namespace == ns && p.name.starts_with(&prefix))
                .count() as i32;
            (have, labels)
        };
        let mut state = pgpatrol::lab::LabState::load(&paths).expect("lab state");
        if have < want {
            let member =
                pgpatrol::lab::up::add_member(&paths, &mut state).expect("add a lab member");
            let m = state.member(&member).expect("the new member").clone();
            let pod = format!("{name}-{have}");
            let mut w = world.lock().expect("world");
            w.pods.push(FakePod {
                namespace: ns.clone(),
                name: pod.clone(),
                labels,
                ports: vec![
                    ("postgresql".into(), m.pg_port),
                    ("patroni".into(), m.rest_port),
                ],
                ready: true,
            });
            w.pod_logs.insert((ns.clone(), pod.clone()), m.log.clone());
            let claim = (ns.clone(), format!("pgdata-{pod}"));
            if !w.pvcs.contains(&claim) {
                w.pvcs.push(claim);
            }
            w.log.push(format!(
                "CONTROLLER created pod {pod} (lab member {member})"
            ));
        } else if have > want {
            let pod = format!("{name}-{}", have - 1);
            let port = {
                let w = world.lock().expect("world");
                w.pods
                    .iter()
                    .find(|p| p.namespace == ns && p.name == pod)
                    .and_then(|p| p.ports.iter().find(|(n, _)| n == "patroni").map(|x| x.1))
            };
            let member = port.and_then(|port| {
                state
                    .members
                    .iter()
                    .find(|m| m.rest_port == port)
                    .map(|m| m.name.clone())
            });
            if let Some(member) = member {
                pgpatrol::lab::down::remove_member(&paths, &mut state, &member)
                    .await
                    .expect("remove a lab member");
            }
            let mut w = world.lock().expect("world");
            w.pods.retain(|p| !(p.namespace == ns && p.name == pod));
            w.log.push(format!("CONTROLLER deleted pod {pod}"));
        } else {
            return;
        }
    }
}

async fn delete_pvc(
    State(world): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    if let Some(r) = check(&world, &ns, "delete", "persistentvolumeclaims", &name) {
        return r;
    }
    let mut w = world.lock().expect("world");
    let before = w.pvcs.len();
    w.pvcs.retain(|(n, c)| !(n == &ns && c == &name));
    if w.pvcs.len() == before {
        return not_found("persistentvolumeclaims", "", &name);
    }
    w.log.push(format!("DELETE persistentvolumeclaims/{name}"));
    json_response(
        StatusCode::OK,
        json!({"kind": "PersistentVolumeClaim", "apiVersion": "v1",
               "metadata": {"name": name, "namespace": ns}, "status": {"phase": "Bound"}}),
    )
}

/// `pods/log?tailLines=N`: the tail of the file the world maps the pod to.
async fn pod_log(
    State(world): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    record(&world, format!("LOG {name}"));
    if let Some(r) = check(&world, &ns, "get", "pods/log", &name) {
        return r;
    }
    let file = world
        .lock()
        .expect("world")
        .pod_logs
        .get(&(ns.clone(), name.clone()))
        .cloned();
    let Some(file) = file else {
        return not_found("pods", "", &name);
    };
    let n: usize = q
        .get("tailLines")
        .and_then(|t| t.parse().ok())
        .unwrap_or(usize::MAX);
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(Body::from(tail + "\n"))
        .expect("response")
}

fn pod_json(p: &FakePod) -> Value {
    let ports: Vec<Value> = p
        .ports
        .iter()
        .map(|(n, port)| json!({"name": n, "containerPort": port, "protocol": "TCP"}))
        .collect();
    let ready = if p.ready { "True" } else { "False" };
    let phase = if p.ready { "Running" } else { "Pending" };
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": p.name, "namespace": p.namespace,
            "uid": format!("uid-{}-{}", p.namespace, p.name),
            "resourceVersion": "1",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": p.labels,
        },
        "spec": {
            "containers": [{
                "name": "patroni", "image": "patroni:4",
                "ports": ports,
                "readinessProbe": {"httpGet": {"path": "/readiness", "port": p.ports.first().map_or(8008, |x| x.1)}},
            }],
            "restartPolicy": "Always",
            "serviceAccountName": "patroni",
            "nodeName": "node-1",
        },
        "status": {
            "phase": phase,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": "2026-01-01T00:00:00Z",
            "containerStatuses": [{
                "name": "patroni", "ready": p.ready, "restartCount": 0, "started": p.ready,
                "image": "patroni:4", "imageID": "", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
            }],
        }
    })
}

/// `a=b,c=d` (the only selector form the fixture's workloads produce).
fn matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels.get(k.trim_end_matches('=')) == Some(&v.to_string()),
            None => labels.contains_key(term),
        })
}

fn pod_list(pods: Vec<Value>) -> Response {
    json_response(
        StatusCode::OK,
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": pods}),
    )
}

async fn list_pods(
    State(world): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let sel = q.get("labelSelector").cloned().unwrap_or_default();
    record(&world, format!("LIST pods {ns} {sel}"));
    if let Some(r) = check(&world, &ns, "list", "pods", "") {
        return r;
    }
    let w = world.lock().expect("world");
    pod_list(
        w.pods
            .iter()
            .filter(|p| p.namespace == ns && matches(&sel, &p.labels))
            .map(|p| pod_json_in(&w, p))
            .collect(),
    )
}

/// Pods across all namespaces (`kubectl get pods -A`, `list --all -A`).
async fn list_all_pods(
    State(world): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let sel = q.get("labelSelector").cloned().unwrap_or_default();
    record(&world, format!("LIST pods * {sel}"));
    if let Some(r) = check(&world, "", "list", "pods", "") {
        return r;
    }
    let w = world.lock().expect("world");
    pod_list(
        w.pods
            .iter()
            .filter(|p| matches(&sel, &p.labels))
            .map(|p| pod_json_in(&w, p))
            .collect(),
    )
}

async fn list_all_configmaps(
    State(world): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let sel = q.get("labelSelector").cloned().unwrap_or_default();
    list_objects(world, String::new(), sel, "ConfigMap", "configmaps").await
}

async fn list_all_endpoints(
    State(world): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let sel = q.get("labelSelector").cloned().unwrap_or_default();
    list_objects(world, String::new(), sel, "Endpoints", "endpoints").await
}

/// A namespace exists when something lives in it (kubectl asks after a NotFound).
async fn namespace(State(world): State<Shared>, UrlPath(ns): UrlPath<String>) -> Response {
    let w = world.lock().expect("world");
    if w.pods.iter().any(|p| p.namespace == ns) || w.workloads.iter().any(|x| x.namespace == ns) {
        json_response(
            StatusCode::OK,
            json!({"kind": "Namespace", "apiVersion": "v1",
                   "metadata": {"name": ns, "uid": format!("uid-ns-{ns}"), "resourceVersion": "1"},
                   "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        )
    } else {
        not_found("namespaces", "", &ns)
    }
}

async fn get_pod(
    State(world): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    record(&world, format!("GET pods/{name}"));
    if let Some(r) = check(&world, &ns, "get", "pods", &name) {
        return r;
    }
    let w = world.lock().expect("world");
    match w.pods.iter().find(|p| p.namespace == ns && p.name == name) {
        Some(p) => json_response(StatusCode::OK, pod_json(p)),
        None => not_found("pods", "", &name),
    }
}

async fn get_secret(
    State(world): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    use base64::Engine;
    record(&world, format!("GET secrets/{name}"));
    if let Some(r) = check(&world, &ns, "get", "secrets", &name) {
        return r;
    }
    let w = world.lock().expect("world");
    match w.secrets.get(&(ns.clone(), name.clone())) {
        Some(data) => {
            let data: BTreeMap<&String, String> = data
                .iter()
                .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
                .collect();
            json_response(
                StatusCode::OK,
                json!({"kind": "Secret", "apiVersion": "v1",
                       "metadata": {"name": name, "namespace": ns}, "type": "Opaque", "data": data}),
            )
        }
        None => not_found("secrets", "", &name),
    }
}

/// The pod a proxy or port-forward names, and the port to reach on loopback.
fn pod_port(world: &Shared, ns: &str, name_port: &str) -> Result<u16, Box<Response>> {
    let (name, port) = match name_port.split_once(':') {
        Some((n, p)) => (n, p.parse::<u16>().ok()),
        None => (name_port, None),
    };
    let w = world.lock().expect("world");
    let pod = w
        .pods
        .iter()
        .find(|p| p.namespace == ns && p.name == name)
        .ok_or_else(|| Box::new(not_found("pods", "", name)))?;
    Ok(port.unwrap_or_else(|| pod.ports.first().map_or(8008, |x| x.1)))
}

/// `pods/proxy`: forwards to the member's REST port without the `Authorization` header,
/// as the real API server does (it takes that header as its own credential).
async fn proxy(
    State(world): State<Shared>,
    UrlPath((ns, name, path)): UrlPath<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let verb = if method == Method::GET || method == Method::HEAD {
        "get"
    } else {
        "create"
    };
    record(&world, format!("PROXY {method} {name} /{path}"));
    if let Some(r) = check(
        &world,
        &ns,
        verb,
        "pods/proxy",
        name.split(':').next().unwrap_or(""),
    ) {
        return r;
    }
    let port = match pod_port(&world, &ns, &name) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let client = reqwest::Client::new();
    let mut rb = client.request(method, format!("http://127.0.0.1:{port}/{path}"));
    if let Some(ct) = headers.get("content-type") {
        rb = rb.header("content-type", ct.clone());
    }
    match rb.body(body.to_vec()).send().await {
        Ok(resp) => {
            let code = resp.status();
            let ct = resp.headers().get("content-type").cloned();
            let bytes = resp.bytes().await.unwrap_or_default();
            let mut r = Response::new(Body::from(bytes));
            *r.status_mut() = StatusCode::from_u16(code.as_u16()).expect("status");
            if let Some(ct) = ct {
                if let Ok(v) = HeaderValue::from_bytes(ct.as_bytes()) {
                    r.headers_mut().insert("content-type", v);
                }
            }
            r
        }
        Err(e) => status(
            503,
            "ServiceUnavailable",
            format!("error trying to reach service: {e}"),
            json!({}),
        ),
    }
}

/// `pods/portforward`: a websocket with the `v4.channel.k8s.io` framing. Each binary
/// message starts with a channel byte (0 data, 1 error for the first port); the server first
/// sends the port number (little-endian u16) on both channels, then relays bytes between the
/// data channel and a TCP connection to the member.
/// `pods/exec`: the command from the repeated `command` parameters, run here.
async fn exec(
    State(world): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    mut req: Request,
) -> Response {
    let query = req.uri().query().unwrap_or_default().to_string();
    let mut command = Vec::new();
    let mut stdin = false;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "command" => command.push(v),
            "stdin" => stdin = v == "true" || v == "1",
            _ => {}
        }
    }
    record(&world, format!("EXEC {name} {}", command.join(" ")));
    if let Some(r) = check(&world, &ns, "create", "pods/exec", &name) {
        return r;
    }
    if let Err(r) = pod_port(&world, &ns, &name) {
        return *r;
    }
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return status(
            400,
            "BadRequest",
            "not a websocket upgrade".into(),
            json!({}),
        );
    };
    let offered = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let protocol = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
        .into_iter()
        .find(|p| offered.split(',').any(|o| o.trim() == *p));
    let Some(protocol) = protocol else {
        return status(
            400,
            "BadRequest",
            format!("unsupported websocket protocols {offered:?}"),
            json!({}),
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let w = world.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        run_exec(ws, command, stdin, w).await;
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("connection", HeaderValue::from_static("Upgrade"));
    h.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn run_exec<S>(ws: WebSocketStream<S>, command: Vec<String>, stdin: bool, world: Shared)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let mut input = Vec::new();
    if stdin {
        // Channel 0 until the close signal [255, 0] (v5), or the websocket closes.
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(b) if b.first() == Some(&0) => input.extend_from_slice(&b[1..]),
                Message::Binary(b) if b.first() == Some(&255) => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
    }
    let text = String::from_utf8_lossy(&input).to_string();
    if text.contains("\nuser = ") || text.starts_with("user = ") {
        record(&world, "EXEC-STDIN auth".to_string());
    }
    let (code, out, err) = if command.first().map(String::as_str) != Some("curl") {
        (
            127,
            Vec::new(),
            format!(
                "{}: not found\n",
                command.first().cloned().unwrap_or_default()
            )
            .into_bytes(),
        )
    } else {
        let child = tokio::process::Command::new("curl")
            .args(&command[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        match child {
            Ok(mut child) => {
                if let Some(mut si) = child.stdin.take() {
                    let _ = si.write_all(&input).await;
                }
                match child.wait_with_output().await {
                    Ok(o) => (o.status.code().unwrap_or(1), o.stdout, o.stderr),
                    Err(e) => (1, Vec::new(), e.to_string().into_bytes()),
                }
            }
            Err(e) => (127, Vec::new(), e.to_string().into_bytes()),
        }
    };
    for (ch, data) in [(1u8, out), (2u8, err)] {
        if !data.is_empty() {
            let mut msg = vec![ch];
            msg.extend(data);
            if sink.send(Message::binary(msg)).await.is_err() {
                return;
            }
        }
    }
    let status = if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    };
    let mut msg = vec![3u8];
    msg.extend(status.to_string().into_bytes());
    let _ = sink.send(Message::binary(msg)).await;
    let _ = sink.close().await;
}

async fn portforward(
    State(world): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    mut req: Request,
) -> Response {
    record(
        &world,
        format!(
            "PORTFORWARD {name} ports={}",
            q.get("ports").cloned().unwrap_or_default()
        ),
    );
    if let Some(r) = check(&world, &ns, "create", "pods/portforward", &name) {
        return r;
    }
    let default_port = match pod_port(&world, &ns, &name) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let port: u16 = q
        .get("ports")
        .and_then(|p| p.split(',').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(default_port);
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return status(
            400,
            "BadRequest",
            "not a websocket upgrade".into(),
            json!({}),
        );
    };
    let protocols = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !protocols
        .split(',')
        .any(|p| p.trim() == "v4.channel.k8s.io")
    {
        return status(
            400,
            "BadRequest",
            format!("unsupported websocket protocols {protocols:?}"),
            json!({}),
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let w = world.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        relay(ws, port, w).await;
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("connection", HeaderValue::from_static("Upgrade"));
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("v4.channel.k8s.io"),
    );
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

async fn relay<S>(ws: WebSocketStream<S>, port: u16, world: Shared)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let [lo, hi] = port.to_le_bytes();
    for ch in [0u8, 1u8] {
        if sink.send(Message::binary(vec![ch, lo, hi])).await.is_err() {
            return;
        }
    }
    let tcp = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        Ok(t) => t,
        Err(e) => {
            let mut msg = vec![1u8];
            msg.extend(format!("error forwarding port {port}: {e}").into_bytes());
            let _ = sink.send(Message::binary(msg)).await;
            let _ = sink.close().await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let to_pod = tokio::spawn(async move {
        let mut first = true;
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(b) if b.first() == Some(&0) => {
                    if first {
                        // Note what reached the pod: the request line and whether it
                        // carried credentials.
                        let text = String::from_utf8_lossy(&b[1..]);
                        let line = text.lines().next().unwrap_or_default().to_string();
                        let auth = text
                            .to_ascii_lowercase()
                            .contains("\nauthorization: basic ");
                        record(
                            &world,
                            format!("PORTFORWARD-HTTP {line}{}", if auth { " auth" } else { "" }),
                        );
                        first = false;
                    }
                    if wr.write_all(&b[1..]).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut msg = Vec::with_capacity(n + 1);
                msg.push(0u8);
                msg.extend_from_slice(&buf[..n]);
                if sink.send(Message::binary(msg)).await.is_err() {
                    break;
                }
            }
        }
    }
    // The member closed the connection: end the stream, as the kubelet does.
    let _ = sink.close().await;
    to_pod.abort();
}
