//! A call as values ([`Request`], [`Response`], [`HttpError`]) and the port that carries it
//! ([`Transport`]): straight over HTTP (`client::Direct`), or through a carrier outside this
//! module, such as the Kubernetes API server (`source::k8s`). `http` names no carrier, so a
//! carrier depends on `http` and never the other way round.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reqwest::{Method, StatusCode};

/// A boxed future, as a trait object's async method returns it.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Carries one request to a member and brings back its answer, any status included
/// (callers decide what a 503 means). `auth` is given for unsafe requests only.
pub trait Transport: Send + Sync + Debug {
    fn send<'a>(
        &'a self,
        req: &'a Request,
        auth: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<Response, HttpError>>;
}

/// Basic-auth credentials. `Debug` never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// A request to Patroni, as a value.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Base URL of a member's API (`http://host:port`), without path.
    pub base: String,
    /// Path with its leading slash, e.g. `/cluster`.
    pub path: String,
    pub body: Option<serde_json::Value>,
    /// A long-running call (switchover, restart) may take longer than the default timeout.
    pub timeout: Option<Duration>,
}

impl Request {
    pub fn get(base: &str, path: &str) -> Self {
        Request {
            method: Method::GET,
            base: base.to_string(),
            path: path.to_string(),
            body: None,
            timeout: None,
        }
    }

    pub fn post(base: &str, path: &str, body: serde_json::Value) -> Self {
        Request {
            method: Method::POST,
            body: Some(body),
            ..Request::get(base, path)
        }
    }

    /// A POST without a body (`/reload`, an unfiltered `/restart`).
    pub fn post_empty(base: &str, path: &str) -> Self {
        Request {
            method: Method::POST,
            ..Request::get(base, path)
        }
    }

    pub fn patch(base: &str, path: &str, body: serde_json::Value) -> Self {
        Request {
            method: Method::PATCH,
            body: Some(body),
            ..Request::get(base, path)
        }
    }

    pub fn delete(base: &str, path: &str) -> Self {
        Request {
            method: Method::DELETE,
            ..Request::get(base, path)
        }
    }

    /// The same request with a longer timeout (a switchover or restart answers late).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Request {
            timeout: Some(timeout),
            ..self
        }
    }

    pub fn url(&self) -> String {
        format!("{}{}", self.base, self.path)
    }

    pub fn is_unsafe(&self) -> bool {
        self.method != Method::GET && self.method != Method::HEAD
    }
}

/// A response: status and body text.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub body: String,
}

/// Every way a call to Patroni can fail, each naming the URL.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url} did not answer within {timeout}: raise --timeout, or check that the member is not hung")]
    Timeout { url: String, timeout: String },
    #[error("TLS with {url} failed: {reason} ({hint})")]
    Tls {
        url: String,
        reason: String,
        hint: String,
    },
    #[error(
        "{url} did not speak HTTP ({reason}): is it a TLS port (use https://) or not Patroni?"
    )]
    NotHttp { url: String, reason: String },
    #[error(
        "{url} refused the credentials (HTTP {status}: {body}): check --username and the password"
    )]
    Auth {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} did not answer with JSON ({what}): is this Patroni's REST API?")]
    NotJson { url: String, what: String },
    /// The answer came, but a field does not fit: `path` is the JSON path of the first field
    /// that does not (`members[0].role`), `reason` what was expected there.
    #[error("{url} answered, but not with Patroni's {endpoint}: at {path}, {reason} (a proxy or a server that is not Patroni's REST API?)")]
    Shape {
        url: String,
        endpoint: String,
        path: String,
        reason: String,
    },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// The Kubernetes API server could not carry the call (RBAC, pod gone, port-forward).
    #[error("{url} through Kubernetes: {reason}")]
    Kubernetes { url: String, reason: String },
    /// The Kubernetes API server refused the call (RBAC): the message says what to grant.
    #[error("{0}")]
    KubernetesDenied(String),
}

impl HttpError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            HttpError::Connect { .. } => "connect",
            HttpError::Timeout { .. } => "timeout",
            HttpError::Tls { .. } => "tls",
            HttpError::NotHttp { .. } => "not_http",
            HttpError::Auth { .. } => "auth",
            HttpError::Status { .. } => "status",
            HttpError::NotJson { .. } => "not_json",
            HttpError::Shape { .. } => "shape",
            HttpError::Setup(_) => "setup",
            HttpError::Kubernetes { .. } => "kubernetes",
            HttpError::KubernetesDenied(_) => "kubernetes_denied",
        }
    }

    /// The server answered, with a body that is not what Patroni sends (JSON that does not
    /// fit the endpoint's shape, or no JSON at all): nothing points at the DCS.
    pub fn is_malformed_answer(&self) -> bool {
        matches!(self, HttpError::Shape { .. } | HttpError::NotJson { .. })
    }

    /// No answer came: the connection failed or was dropped, timed out, or the server said
    /// it could not serve (5xx): what Patroni's `/cluster` does when its DCS is down.
    pub fn is_no_answer(&self) -> bool {
        match self {
            HttpError::Connect { .. }
            | HttpError::Timeout { .. }
            | HttpError::NotHttp { .. }
            | HttpError::Kubernetes { .. } => true,
            HttpError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}
