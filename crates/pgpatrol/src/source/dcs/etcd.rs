//! etcd v3 through its JSON gateway, the API Patroni's `etcd3` DCS uses: the API version
//! from `GET /version` (`/v3` from 3.4, `/v3beta` on 3.3, `/v3alpha` before), a token from
//! `auth/authenticate` when a user is given (sent as a bare `Authorization` header, as
//! Patroni does), and ranges over a key prefix. Keys and values travel base64-encoded, int64s
//! as JSON strings, and a range with no match has no `kvs` at all. Read-only except
//! [`Etcd::delete_prefix`], which only `pgpatrol remove` calls.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::source::http::client::{reqwest_client, tls_reason};
use crate::source::http::{Credentials, HttpOptions};
pub use crate::source::wire::dcs::Kv;
use crate::text::{error_chain, snippet};

/// Every way a call to etcd can fail, each naming the endpoint and saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("cannot connect to etcd at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("etcd at {url} did not answer within {timeout}: check that it is not hung, or raise --request-timeout")]
    Timeout { url: String, timeout: String },
    #[error("TLS with etcd at {url} failed: {reason} ({hint})")]
    Tls {
        url: String,
        reason: String,
        hint: String,
    },
    #[error("etcd at {url} refused access: {reason}: check --dcs-username and its password (PATRONI_ETCD3_PASSWORD or --dcs-password-file)")]
    Auth { url: String, reason: String },
    #[error("etcd at {url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} is not etcd's v3 JSON gateway ({what}): give etcd's client URL, e.g. etcd3://10.0.0.1:2379")]
    NotEtcd { url: String, what: String },
    #[error("cannot set up the etcd client: {0}")]
    Setup(String),
}

impl EtcdError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            EtcdError::Connect { .. } => "dcs_connect",
            EtcdError::Timeout { .. } => "dcs_timeout",
            EtcdError::Tls { .. } => "dcs_tls",
            EtcdError::Auth { .. } => "dcs_auth",
            EtcdError::Status { .. } => "dcs_status",
            EtcdError::NotEtcd { .. } => "dcs_not_etcd",
            EtcdError::Setup(_) => "dcs_setup",
        }
    }
}

/// The gateway prefix and token for one endpoint.
#[derive(Debug, Clone)]
struct Session {
    prefix: &'static str,
    token: Option<String>,
}

/// How to reach etcd: client URLs (`http(s)://host:port`), a user, TLS and timeouts.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    pub auth: Option<Credentials>,
    /// CA, client certificate and timeouts (the `auth` of these options is unused).
    pub http: HttpOptions,
}

/// An etcd v3 client over the JSON gateway.
#[derive(Debug, Clone)]
pub struct Etcd {
    client: reqwest::Client,
    endpoints: Vec<String>,
    auth: Option<Credentials>,
    /// Per endpoint: the gateway prefix and token of the last session. A watch polling every
    /// second would otherwise ask `/version` and authenticate (a bcrypt check in etcd) on
    /// every poll; a refused token is dropped and the call made once more afresh.
    sessions: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Session>>>,
    timeout: Duration,
    client_cert: bool,
}

#[derive(Debug, Deserialize)]
struct RangeWire {
    #[serde(default)]
    kvs: Vec<KvWire>,
}

#[derive(Debug, Deserialize)]
struct KvWire {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    lease: Option<String>,
}

/// The end of the range holding every key that starts with `prefix`: the prefix with its
/// last byte that is not 0xff incremented (`/service/demo/` → `/service/demo0`).
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key from the prefix on.
    vec![0]
}

/// The keys and values of a `/kv/range` answer (`url` names it in errors: the JSON path of a
/// field that does not fit, or which key or value is not base64).
pub fn decode_range(url: &str, answer: Value) -> Result<Vec<Kv>, EtcdError> {
    let wire: RangeWire = serde_path_to_error::deserialize(answer).map_err(|e| {
        let path = crate::source::http::client::json_path(e.path());
        EtcdError::NotEtcd {
            url: url.to_string(),
            what: format!("not a range answer: at {path}, {}", e.into_inner()),
        }
    })?;
    wire.kvs
        .into_iter()
        .enumerate()
        .map(|(i, kv)| {
            let bad = |what: &str| EtcdError::NotEtcd {
                url: url.to_string(),
                what: format!("kvs[{i}].{what} is not base64"),
            };
            let key = b64decode(&kv.key).ok_or_else(|| bad("key"))?;
            let value = match kv.value {
                Some(v) => b64decode(&v).ok_or_else(|| bad("value"))?,
                None => Vec::new(),
            };
            Ok(Kv {
                key: String::from_utf8_lossy(&key).into_owned(),
                value: String::from_utf8_lossy(&value).into_owned(),
                lease: kv.lease.filter(|l| l != "0"),
            })
        })
        .collect()
}

fn b64decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The gateway's prefix for a cluster version like `3.4.0` (Patroni's
/// `_ensure_version_prefix`).
pub fn api_prefix(cluster_version: &str) -> Option<&'static str> {
    let mut parts = cluster_version.split('.');
    let major: u32 = parts.next()?.trim().parse().ok()?;
    let minor: u32 = parts.next()?.trim().parse().ok()?;
    Some(match (major, minor) {
        (3, 0..=2) => "/v3alpha",
        (3, 3) => "/v3beta",
        _ => "/v3",
    })
}

/// An error body of the gateway (`{"error": "...", "code": 3, "message": "..."}`) that means
/// the user, password or token was refused.
fn is_auth_refusal(status: u16, message: &str) -> bool {
    status == 401
        || status == 403
        || [
            "authentication failed",
            "user name is empty",
            "invalid auth token",
            "permission denied",
            "user name not found",
            "authentication is not enabled",
        ]
        .iter()
        .any(|m| message.contains(m))
}

impl Etcd {
    pub fn new(opts: &EtcdOptions) -> Result<Self, EtcdError> {
        if opts.endpoints.is_empty() {
            return Err(EtcdError::Setup("no etcd endpoint given".into()));
        }
        let client = reqwest_client(&opts.http).map_err(|e| EtcdError::Setup(e.to_string()))?;
        Ok(Etcd {
            client,
            endpoints: opts.endpoints.clone(),
            auth: opts.auth.clone(),
            sessions: Default::default(),
            timeout: opts.http.timeout,
            client_cert: opts.http.client_cert.is_some(),
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn classify(&self, url: &str, e: &reqwest::Error) -> EtcdError {
        let full = error_chain(e);
        let url = url.to_string();
        if e.is_timeout() {
            return EtcdError::Timeout {
                url,
                timeout: humantime::format_duration(self.timeout).to_string(),
            };
        }
        let lower = full.to_ascii_lowercase();
        // TLS 1.3: etcd's refusal of a missing client certificate arrives after the
        // handshake; when it lands before the request is written, hyper reports only that the
        // connection was not ready (or closed). Same advice as the alert (CI met the race).
        if url.starts_with("https://")
            && !self.client_cert
            && (lower.contains("connection was not ready")
                || lower.contains("connection closed before message completed"))
        {
            return EtcdError::Tls {
                url,
                reason: tls_reason(&full),
                hint: "etcd wants a client certificate: pass --dcs-cert and --dcs-key (etcd3.cert, etcd3.key)".into(),
            };
        }
        if [
            "certificate",
            "tls",
            "alert",
            "handshake",
            "corrupt message",
        ]
        .iter()
        .any(|w| lower.contains(w))
        {
            let reason = tls_reason(&full);
            let hint = if reason.contains("UnknownIssuer") || reason.contains("BadSignature") {
                "etcd's certificate is not signed by a trusted CA: pass it with --dcs-cacert (etcd3.cacert)"
            } else if reason.contains("not valid for name") {
                "etcd's certificate does not name this host: connect by a name it carries"
            } else if reason.contains("CertificateRequired")
                || (reason.contains("alert") && !self.client_cert)
            {
                "etcd wants a client certificate: pass --dcs-cert and --dcs-key (etcd3.cert, etcd3.key)"
            } else if reason.contains("alert") {
                "etcd refused the client certificate: is it signed by etcd's --trusted-ca-file?"
            } else if reason.contains("corrupt message")
                || reason.contains("InvalidContentType")
                || reason.contains("handshake eof")
            {
                "the endpoint speaks plain http: use etcd3:// instead of etcd3s://"
            } else {
                "check --dcs-cacert and --dcs-cert/--dcs-key"
            };
            return EtcdError::Tls {
                url,
                reason,
                hint: hint.into(),
            };
        }
        if e.is_connect() {
            return EtcdError::Connect {
                url,
                reason: full.rsplit(": ").next().unwrap_or(&full).to_string(),
            };
        }
        EtcdError::NotEtcd { url, what: full }
    }

    /// GET or POST one gateway call; the answer as JSON, errors classified.
    async fn call(
        &self,
        url: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Result<Value, EtcdError> {
        let mut rb = match &body {
            Some(b) => self.client.post(url).json(b),
            None => self.client.get(url),
        };
        if let Some(t) = token {
            rb = rb.header(reqwest::header::AUTHORIZATION, t);
        }
        let resp = rb.send().await.map_err(|e| self.classify(url, &e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| self.classify(url, &e))?;
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        let message = parsed
            .as_ref()
            .and_then(|v| v.get("error").or_else(|| v.get("message")))
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(m) = message.as_deref() {
            if is_auth_refusal(status, m) {
                return Err(EtcdError::Auth {
                    url: url.to_string(),
                    reason: m.to_string(),
                });
            }
        }
        if !(200..300).contains(&status) {
            if status == 401 || status == 403 {
                return Err(EtcdError::Auth {
                    url: url.to_string(),
                    reason: format!("HTTP {status}"),
                });
            }
            let mut body = message.unwrap_or_else(|| snippet(&text));
            if body.contains("CommonName of client sending a request against gateway") {
                // etcd (CVE-2018-16886) refuses a client certificate with a CommonName on
                // its JSON gateway once authentication is on: Patroni's client meets it too.
                body.push_str(" (with authentication on, etcd's JSON gateway refuses a client certificate that has a CommonName: use one without a CN, or no client certificate, with the user and password)");
            }
            return Err(EtcdError::Status {
                url: url.to_string(),
                status,
                body,
            });
        }
        parsed.ok_or_else(|| EtcdError::NotEtcd {
            url: url.to_string(),
            what: if text.trim_start().starts_with('<') {
                format!("it sent HTML: {}", snippet(&text))
            } else {
                format!("the answer is not JSON: {}", snippet(&text))
            },
        })
    }

    /// The cached session of `base`, else a new one.
    async fn session(&self, base: &str) -> Result<(&'static str, Option<String>), EtcdError> {
        let cached = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(base)
            .cloned();
        if let Some(s) = cached {
            return Ok((s.prefix, s.token));
        }
        let (prefix, token) = self.new_session(base).await?;
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                base.to_string(),
                Session {
                    prefix,
                    token: token.clone(),
                },
            );
        Ok((prefix, token))
    }

    /// One call with `base`'s session; when etcd refuses its token (expired: etcd's simple
    /// tokens live 5 minutes), once more with a new session.
    async fn call_in_session(
        &self,
        base: &str,
        path: &str,
        body: Value,
    ) -> Result<(Value, String), EtcdError> {
        let (api, token) = self.session(base).await?;
        let url = format!("{base}{api}{path}");
        match self.call(&url, Some(body.clone()), token.as_deref()).await {
            Err(EtcdError::Auth { .. }) if token.is_some() => {
                self.sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(base);
                let (api, token) = self.session(base).await?;
                let url = format!("{base}{api}{path}");
                let v = self.call(&url, Some(body), token.as_deref()).await?;
                Ok((v, url))
            }
            Err(e) => {
                // Another endpoint may answer; this one's session starts afresh next time.
                self.sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(base);
                Err(e)
            }
            Ok(v) => Ok((v, url)),
        }
    }

    /// The gateway prefix and, with a user, a token, from endpoint `base`.
    async fn new_session(&self, base: &str) -> Result<(&'static str, Option<String>), EtcdError> {
        let url = format!("{base}/version");
        // Anything but etcd's answer here means the URL is not etcd's client port.
        let v = self.call(&url, None, None).await.map_err(|e| match e {
            EtcdError::Status { url, status, body } => EtcdError::NotEtcd {
                url,
                what: format!("GET /version answered HTTP {status}: {body}"),
            },
            e => e,
        })?;
        let version = v
            .get("etcdcluster")
            .or_else(|| v.get("etcdserver"))
            .and_then(Value::as_str)
            .ok_or_else(|| EtcdError::NotEtcd {
                url: url.clone(),
                what: format!("/version has no etcdcluster: {}", snippet(&v.to_string())),
            })?;
        let prefix = api_prefix(version).ok_or_else(|| EtcdError::NotEtcd {
            url: url.clone(),
            what: format!("{version:?} is not an etcd version"),
        })?;
        let Some(auth) = &self.auth else {
            return Ok((prefix, None));
        };
        let url = format!("{base}{prefix}/auth/authenticate");
        let v = self
            .call(
                &url,
                Some(json!({"name": auth.username, "password": auth.password})),
                None,
            )
            .await?;
        let token = v
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| EtcdError::Auth {
                url: url.clone(),
                reason: "no token in the answer".into(),
            })?;
        Ok((prefix, Some(token.to_string())))
    }

    /// Tries each endpoint in turn; the first answer, else every endpoint's error.
    async fn first<T, F, Fut>(&self, f: F) -> Result<(T, String), Vec<EtcdError>>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, EtcdError>>,
    {
        let mut errors = Vec::new();
        for base in &self.endpoints {
            match f(base.clone()).await {
                Ok(v) => return Ok((v, base.clone())),
                Err(e) => {
                    tracing::debug!(url = %base, error = %e, "etcd endpoint did not answer");
                    errors.push(e);
                }
            }
        }
        Err(errors)
    }

    /// Every key under `prefix` with its value (a linearizable read, as patronictl's), and
    /// the endpoint that answered.
    pub async fn range(&self, prefix: &str) -> Result<(Vec<Kv>, String), Vec<EtcdError>> {
        self.first(|base| async move {
            let body = json!({
                "key": base64(prefix.as_bytes()),
                "range_end": base64(&prefix_range_end(prefix.as_bytes())),
            });
            let (v, url) = self.call_in_session(&base, "/kv/range", body).await?;
            decode_range(&url, v)
        })
        .await
    }

    /// One gateway call (`path` after the API prefix: `/lease/grant`, `/kv/txn`, ...) on the
    /// first endpoint that answers, in its session (the API prefix its version speaks, the
    /// auth token); the answer and the endpoint. The heal lease goes through here, so it
    /// reaches every host with the TLS and credentials the DCS reads use.
    pub async fn request(
        &self,
        path: &str,
        body: Value,
    ) -> Result<(Value, String), Vec<EtcdError>> {
        self.first(|base| {
            let body = body.clone();
            async move {
                self.call_in_session(&base, path, body)
                    .await
                    .map(|(v, _)| v)
            }
        })
        .await
    }

    /// Deletes every key under `prefix`; how many went.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(u64, String), Vec<EtcdError>> {
        self.first(|base| async move {
            let body = json!({
                "key": base64(prefix.as_bytes()),
                "range_end": base64(&prefix_range_end(prefix.as_bytes())),
            });
            let (v, _) = self.call_in_session(&base, "/kv/deleterange", body).await?;
            Ok(v.get("deleted")
                .and_then(|d| d.as_str().and_then(|s| s.parse().ok()).or(d.as_u64()))
                .unwrap_or(0))
        })
        .await
    }
}

/// Standard base64 with padding: etcd's JSON gateway carries keys and values this way.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"/service/demo/"), "L3NlcnZpY2UvZGVtby8=");
    }

    #[test]
    fn the_range_end_of_a_prefix() {
        assert_eq!(prefix_range_end(b"/service/demo/"), b"/service/demo0");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff"), b"\0");
    }

    #[test]
    fn the_gateway_prefix_follows_the_cluster_version() {
        assert_eq!(api_prefix("3.4.0"), Some("/v3"));
        assert_eq!(api_prefix("3.5.17"), Some("/v3"));
        assert_eq!(api_prefix("3.3.0"), Some("/v3beta"));
        assert_eq!(api_prefix("3.2.32"), Some("/v3alpha"));
        assert_eq!(api_prefix("x"), None);
    }

    #[test]
    fn auth_refusals_are_recognised() {
        assert!(is_auth_refusal(
            400,
            "etcdserver: authentication failed, invalid user ID or password"
        ));
        assert!(is_auth_refusal(400, "etcdserver: user name is empty"));
        assert!(!is_auth_refusal(400, "etcdserver: mvcc: required revision"));
    }
}
