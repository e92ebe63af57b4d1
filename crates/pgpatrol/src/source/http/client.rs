//! HTTP to Patroni: requests are built as values and sent in one place ([`Http::send`]),
//! and every way a call can fail becomes a typed [`HttpError`], never a panic.
//! Patroni speaks HTTP/1.0 with close-delimited bodies, plain-text (`text/html`) answers
//! and sometimes Python's HTML error pages; all of that is handled here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::transport::{BoxFuture, Credentials, HttpError, Request, Response, Transport};
use crate::text::{error_chain, snippet};

/// How to reach Patroni's REST API: TLS, credentials and timeouts.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Basic-auth credentials, sent on Patroni's unsafe (writing) endpoints only.
    pub auth: Option<Credentials>,
    /// A PEM CA bundle to trust for https.
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate and its key (restapi `verify_client`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate. Only when asked (`--insecure`, `ctl.insecure`).
    pub insecure: bool,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

/// The CLI's defaults: plain http, no credentials, 2 s to connect, 10 s per request (a zero
/// timeout would fail every request).
impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            auth: None,
            ca_file: None,
            client_cert: None,
            insecure: false,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The HTTP client for Patroni's REST API: the credentials, and the transport that carries
/// the requests (straight to the members unless [`Http::with_transport`] says otherwise).
#[derive(Debug, Clone)]
pub struct Http {
    transport: Arc<dyn Transport>,
    auth: Option<Credentials>,
}

/// Straight to a member's `base` URL, with reqwest.
#[derive(Debug)]
struct Direct {
    client: reqwest::Client,
    timeout: Duration,
    /// Whether a client certificate is sent (it changes what a TLS alert most likely means).
    client_cert: bool,
}

impl Transport for Direct {
    fn send<'a>(
        &'a self,
        req: &'a Request,
        auth: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<Response, HttpError>> {
        Box::pin(async move {
            let url = req.url();
            let mut rb = self.client.request(req.method.clone(), &url);
            if let Some(t) = req.timeout {
                rb = rb.timeout(t);
            }
            if let Some(body) = &req.body {
                rb = rb.json(body);
            }
            if let Some(a) = auth {
                rb = rb.basic_auth(&a.username, Some(&a.password));
            }
            let timeout = req.timeout.unwrap_or(self.timeout);
            let fail = |e| classify(&url, timeout, self.client_cert, e);
            let resp = rb.send().await.map_err(fail)?;
            let status = resp.status();
            let body = resp.text().await.map_err(fail)?;
            Ok(Response { status, body })
        })
    }
}

impl Http {
    pub fn new(opts: &HttpOptions) -> Result<Self, HttpError> {
        Ok(Http {
            transport: Arc::new(Direct {
                client: reqwest_client(opts)?,
                timeout: opts.timeout,
                client_cert: opts.client_cert.is_some(),
            }),
            auth: opts.auth.clone(),
        })
    }
}

/// A reqwest client with `opts`' TLS settings and timeouts, every bad file named in the
/// error (also the etcd gateway's client, `source::dcs::etcd`).
pub(crate) fn reqwest_client(opts: &HttpOptions) -> Result<reqwest::Client, HttpError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.timeout)
        .user_agent(concat!("pgpatrol/", env!("CARGO_PKG_VERSION")))
        .danger_accept_invalid_certs(opts.insecure);
    if let Some(ca) = &opts.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| HttpError::Setup(format!("cannot read CA file {}: {e}", ca.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            HttpError::Setup(format!(
                "CA file {} is not PEM: {}",
                ca.display(),
                inner(&e)
            ))
        })?;
        if certs.is_empty() {
            return Err(HttpError::Setup(format!(
                "CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ca.display()
            )));
        }
        for c in certs {
            try_build(
                reqwest::Client::builder().add_root_certificate(c.clone()),
                || format!("CA file {}", ca.display()),
            )?;
            b = b.add_root_certificate(c);
        }
    }
    if let Some((cert, key)) = &opts.client_cert {
        let read = |p: &PathBuf| {
            std::fs::read(p)
                .map_err(|e| HttpError::Setup(format!("cannot read {}: {e}", p.display())))
        };
        let mut pem = read(cert)?;
        // ctl.certfile without ctl.keyfile: one file holds both; read it once.
        if key != cert {
            pem.push(b'\n');
            pem.extend(read(key)?);
        }
        let what = || {
            format!(
                "client certificate {} / key {}",
                cert.display(),
                key.display()
            )
        };
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| HttpError::Setup(format!("{}: {}", what(), inner(&e))))?;
        try_build(reqwest::Client::builder().identity(id.clone()), what)?;
        b = b.identity(id);
    }
    b.build().map_err(|e| HttpError::Setup(error_chain(&e)))
}

impl Http {
    /// Sends every request through another transport (e.g. the Kubernetes API server),
    /// keeping the credentials.
    pub fn with_transport(self, transport: Arc<dyn Transport>) -> Self {
        Http { transport, ..self }
    }

    /// The same client (connection pool, TLS configuration) with other credentials: cheap,
    /// as the client is shared, not copied.
    pub fn with_auth(&self, auth: Option<Credentials>) -> Http {
        Http {
            auth,
            ..self.clone()
        }
    }

    /// Sends one request; any status is returned (callers decide what a 503 means).
    pub async fn send(&self, req: &Request) -> Result<Response, HttpError> {
        let auth = self.auth.as_ref().filter(|_| req.is_unsafe());
        let resp = self.transport.send(req, auth).await?;
        check_auth(req.url(), resp)
    }

    /// GETs `path` and decodes JSON; any status but 200 is an error.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
    ) -> Result<T, HttpError> {
        let req = Request::get(base, path);
        let resp = self.send(&req).await?;
        let url = req.url();
        if resp.status != StatusCode::OK {
            return Err(HttpError::Status {
                url,
                status: resp.status.as_u16(),
                body: snippet(&resp.body),
            });
        }
        decode(&url, path, &resp.body)
    }
}

/// One client per distinct TLS and timeout setting, shared by every cluster that uses it.
///
/// A `reqwest::Client` carries a rustls configuration with its root store and a connection
/// pool: about 20 KiB each, so one per cluster is 20 MiB for a fleet of 1,000 that could
/// share one. Credentials are not part of the client ([`Http::with_auth`]), so clusters with
/// different passwords still share it.
#[derive(Debug, Default)]
pub struct HttpCache {
    clients: std::collections::HashMap<ClientKey, Http>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    insecure: bool,
    connect_timeout: Duration,
    timeout: Duration,
}

impl HttpCache {
    /// A client for `opts`: a shared one when an earlier call had the same settings.
    pub fn get(&mut self, opts: &HttpOptions) -> Result<Http, HttpError> {
        let key = ClientKey {
            ca_file: opts.ca_file.clone(),
            client_cert: opts.client_cert.clone(),
            insecure: opts.insecure,
            connect_timeout: opts.connect_timeout,
            timeout: opts.timeout,
        };
        if let Some(http) = self.clients.get(&key) {
            return Ok(http.with_auth(opts.auth.clone()));
        }
        let http = Http::new(opts)?;
        self.clients.insert(key, http.clone());
        Ok(http)
    }

    /// How many distinct clients were built.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// Patroni's 401/403 means the credentials were refused.
fn check_auth(url: String, resp: Response) -> Result<Response, HttpError> {
    if resp.status == StatusCode::UNAUTHORIZED || resp.status == StatusCode::FORBIDDEN {
        return Err(HttpError::Auth {
            url,
            status: resp.status.as_u16(),
            body: snippet(&resp.body),
        });
    }
    Ok(resp)
}

/// Decodes a JSON body, telling HTML, empty and truncated bodies apart from wrong shapes.
pub fn decode<T: DeserializeOwned>(url: &str, endpoint: &str, body: &str) -> Result<T, HttpError> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| {
        let trimmed = body.trim_start();
        let what = if trimmed.is_empty() {
            "the body was empty".to_string()
        } else if trimmed.starts_with('<') {
            format!("it sent HTML: {}", snippet(body))
        } else if e.is_eof() {
            format!("the JSON was cut off: {e}")
        } else {
            format!("{e}: {}", snippet(body))
        };
        HttpError::NotJson {
            url: url.to_string(),
            what,
        }
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| HttpError::Shape {
        url: url.to_string(),
        endpoint: endpoint.to_string(),
        path: json_path(e.path()),
        reason: e.into_inner().to_string(),
    })
}

/// A JSON path as a person reads it: `members[0].role`, or `the top level`.
pub fn json_path(path: &serde_path_to_error::Path) -> String {
    let p = path.to_string();
    if p == "." || p.is_empty() {
        "the top level".to_string()
    } else {
        p
    }
}

/// A reqwest builder error without reqwest's "builder error" and rustls's "unexpected error"
/// wrappers.
fn inner(e: &reqwest::Error) -> String {
    let s = std::error::Error::source(e).map_or_else(|| e.to_string(), error_chain);
    s.strip_prefix("unexpected error: ")
        .map_or(s.clone(), str::to_string)
}

/// reqwest checks certificates and keys only when a client is built: build one with a single
/// TLS setting so that a bad file is named in the error.
fn try_build(b: reqwest::ClientBuilder, what: impl FnOnce() -> String) -> Result<(), HttpError> {
    b.build()
        .map(drop)
        .map_err(|e| HttpError::Setup(format!("{}: {}", what(), inner(&e))))
}

/// rustls's own words from an error chain (`invalid peer certificate: UnknownIssuer`,
/// `received fatal alert: CertificateRequired`), without reqwest's and hyper's wrappers.
pub(crate) fn tls_reason(full: &str) -> String {
    const RUSTLS: [&str; 5] = [
        "invalid peer certificate",
        "received fatal alert",
        "received corrupt message",
        "peer is incompatible",
        "peer misbehaved",
    ];
    RUSTLS
        .iter()
        .filter_map(|p| full.rfind(p))
        .min()
        .and_then(|i| full.get(i..))
        .map_or_else(
            || full.rsplit(": ").next().unwrap_or(full).to_string(),
            str::to_string,
        )
}

/// What a TLS failure most likely means, and what to do about it.
fn tls_hint(reason: &str, client_cert: bool) -> String {
    let alert = |names: &[&str]| {
        reason.starts_with("received fatal alert") && names.iter().any(|n| reason.contains(n))
    };
    if reason.contains("UnknownIssuer") || reason.contains("BadSignature") {
        "the server's certificate is not signed by a trusted CA: pass its CA with --cacert, \
         ctl.cacert or restapi.cafile, or use --insecure"
            .into()
    } else if reason.contains("not valid for name") {
        "connect by a name or IP the server's certificate holds, or pass --insecure".into()
    } else if !client_cert && alert(&["CertificateRequired", "HandshakeFailure"]) {
        "the server may require a client certificate (restapi.verify_client): pass --cert and \
         --key, or ctl.certfile and ctl.keyfile with -c"
            .into()
    } else if client_cert
        && alert(&[
            "CertificateRequired",
            "UnknownCA",
            "BadCertificate",
            "CertificateUnknown",
            "DecryptError",
            "AccessDenied",
            "HandshakeFailure",
        ])
    {
        "the server rejected the client certificate: is it signed by the server's \
         restapi.cafile?"
            .into()
    } else {
        "check https:// vs http://, --cacert, or --insecure".into()
    }
}

fn classify(url: &str, timeout: Duration, client_cert: bool, e: reqwest::Error) -> HttpError {
    let url = url.to_string();
    if e.is_timeout() {
        return HttpError::Timeout {
            url,
            timeout: humantime::format_duration(timeout).to_string(),
        };
    }
    let full = error_chain(&e);
    let lower = full.to_lowercase();
    let io_kind = {
        let mut cur: Option<&dyn std::error::Error> = Some(&e);
        let mut kind = None;
        while let Some(c) = cur {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                kind = Some(io.kind());
                break;
            }
            cur = c.source();
        }
        kind
    };
    if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("fatal alert")
        || lower.contains("invalidcontenttype")
        || lower.contains("corrupt message")
    {
        let reason = tls_reason(&full);
        let hint = tls_hint(&reason, client_cert);
        return HttpError::Tls { url, reason, hint };
    }
    // TLS 1.3 sends a client-certificate refusal after the handshake: when it lands before
    // the request is written, hyper reports only that the connection was not ready, and the
    // alert's words are lost. Same cause, same advice as the alert.
    if url.starts_with("https://") && lower.contains("connection was not ready") {
        let reason = "the server closed the connection right after the TLS handshake".to_string();
        let hint = tls_hint("received fatal alert: CertificateRequired", client_cert);
        return HttpError::Tls { url, reason, hint };
    }
    if lower.contains("invalid http") || lower.contains("invalid status") || lower.contains("parse")
    {
        return HttpError::NotHttp {
            url,
            reason: full.rsplit(": ").next().unwrap_or(&full).to_string(),
        };
    }
    let reason = match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            "connection refused (is Patroni running there?)".into()
        }
        Some(std::io::ErrorKind::ConnectionReset) | Some(std::io::ErrorKind::UnexpectedEof) => {
            "the connection was closed before an answer (a TLS port? try https://)".into()
        }
        _ if lower.contains("dns") || lower.contains("lookup") => {
            format!(
                "cannot resolve the host ({})",
                full.rsplit(": ").next().unwrap_or(&full)
            )
        }
        _ if lower.contains("closed before message completed")
            || lower.contains("connection closed") =>
        {
            "the connection was closed before an answer (a TLS port? try https://)".into()
        }
        _ => full.clone(),
    };
    HttpError::Connect { url, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Shape {
        members: Vec<serde_json::Value>,
    }

    #[test]
    fn html_error_pages_become_not_json() {
        let html = "<!DOCTYPE HTML>\n<html><head><title>Error response</title></head>\
                    <body><h1>Error response</h1><p>Error code: 400</p></body></html>";
        let e = decode::<Shape>("http://x/cluster", "/cluster", html).unwrap_err();
        assert!(matches!(e, HttpError::NotJson { .. }), "{e}");
        assert!(e.to_string().contains("Error code: 400"), "{e}");
    }

    #[test]
    fn truncated_json_says_cut_off() {
        let e = decode::<Shape>(
            "http://x/cluster",
            "/cluster",
            r#"{"members": [{"name": "a""#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("cut off"), "{e}");
    }

    #[test]
    fn wrong_shape_is_not_a_decode_panic() {
        let e = decode::<Shape>("http://x/cluster", "/cluster", r#"{"hello": 1}"#).unwrap_err();
        assert!(matches!(e, HttpError::Shape { .. }), "{e}");
        let e = decode::<Shape>("http://x/cluster", "/cluster", "").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn tls_failures_keep_rustls_words_and_say_what_to_do() {
        let full = "error sending request for url (https://h:1/cluster): client error (Connect): \
                    invalid peer certificate: UnknownIssuer";
        let reason = tls_reason(full);
        assert_eq!(reason, "invalid peer certificate: UnknownIssuer");
        assert!(tls_hint(&reason, false).contains("--cacert"));
        let reason =
            tls_reason("client error (SendRequest): received fatal alert: CertificateRequired");
        assert!(tls_hint(&reason, false).contains("--cert"));
        assert!(tls_hint(&reason, true).contains("rejected the client certificate"));
        let reason = tls_reason("connection error: received fatal alert: UnknownCA");
        assert!(tls_hint(&reason, true).contains("rejected the client certificate"));
        assert!(tls_hint("corrupt", false).contains("https:// vs http://"));
    }

    #[test]
    fn clients_are_shared_by_settings_and_keep_their_own_credentials() {
        let mut cache = HttpCache::default();
        let opts = |user: &str, insecure| HttpOptions {
            auth: Some(Credentials {
                username: user.into(),
                password: "p".into(),
            }),
            insecure,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            ..HttpOptions::default()
        };
        let a = cache.get(&opts("a", false)).unwrap();
        let b = cache.get(&opts("b", false)).unwrap();
        assert_eq!(cache.len(), 1);
        assert_eq!(a.auth.as_ref().unwrap().username, "a");
        assert_eq!(b.auth.as_ref().unwrap().username, "b");
        cache.get(&opts("a", true)).unwrap();
        let mut slower = opts("a", false);
        slower.timeout = Duration::from_secs(30);
        cache.get(&slower).unwrap();
        assert_eq!(cache.len(), 3);
        let e = cache
            .get(&HttpOptions {
                ca_file: Some("/nonexistent/ca.pem".into()),
                ..opts("a", false)
            })
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        assert_eq!(cache.len(), 3);
    }

    /// Records what it was asked to carry and answers with a fixed status.
    #[derive(Debug)]
    struct Recording {
        status: StatusCode,
        sent: std::sync::Mutex<Vec<(String, Option<String>)>>,
    }

    impl Transport for Recording {
        fn send<'a>(
            &'a self,
            req: &'a Request,
            auth: Option<&'a Credentials>,
        ) -> BoxFuture<'a, Result<Response, HttpError>> {
            let user = auth.map(|a| a.username.clone());
            self.sent.lock().unwrap().push((req.url(), user));
            Box::pin(async move {
                Ok(Response {
                    status: self.status,
                    body: "<h1>no</h1>".into(),
                })
            })
        }
    }

    #[tokio::test]
    async fn any_transport_gets_credentials_on_unsafe_requests_only() {
        let rec = Arc::new(Recording {
            status: StatusCode::OK,
            sent: Default::default(),
        });
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        let http = Http::new(&HttpOptions::default())
            .unwrap()
            .with_auth(Some(creds))
            .with_transport(rec.clone());
        http.send(&Request::get("http://m:8008", "/cluster"))
            .await
            .unwrap();
        let post = Request::post("http://m:8008", "/reinitialize", serde_json::json!({}));
        http.send(&post).await.unwrap();
        assert_eq!(
            *rec.sent.lock().unwrap(),
            [
                ("http://m:8008/cluster".to_string(), None),
                ("http://m:8008/reinitialize".to_string(), Some("u".into())),
            ]
        );
        // A refusal is the same error whichever transport carried it.
        let refusing = Arc::new(Recording {
            status: StatusCode::UNAUTHORIZED,
            sent: Default::default(),
        });
        let e = http.with_transport(refusing).send(&post).await.unwrap_err();
        assert!(matches!(e, HttpError::Auth { status: 401, .. }), "{e}");
        assert!(e.to_string().contains("(HTTP 401: no)"), "{e}");
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
