//! Carries Patroni's REST calls through the API server: reads by `pods/proxy`, writes by
//! `pods/portforward` (the proxy strips `Authorization`; Patroni's unsafe endpoints need it).

use std::sync::RwLock;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::discovery::{list_pods, Discovered, PodInfo};
use super::errors::{rest_error, status_error};
use super::DEFAULT_PORT;
use crate::source::rest::{BoxFuture, Credentials, Request, Response, RestError, Transport};
use crate::text::{error_chain, one_line};

/// Carries Patroni requests through the API server: `base` names a pod by its IP (and
/// port), or by its name as the first label of a host name.
pub struct ApiServer {
    client: Client,
    namespace: String,
    /// The pods as last listed; listed again when a member's address names none of them
    /// (a restarted pod has a new IP; a long-running `watch` sees that).
    pods: RwLock<Vec<PodInfo>>,
    selector: Option<String>,
    port: Option<u16>,
    timeout: Duration,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiServer({})", self.namespace)
    }
}

impl ApiServer {
    /// Carries calls to the pods discovery found; `timeout` bounds each call unless the
    /// request sets its own.
    pub fn new(found: Discovered, timeout: Duration) -> Self {
        ApiServer {
            client: found.client,
            namespace: found.namespace,
            pods: RwLock::new(found.pods),
            selector: found.selector,
            port: found.port,
            timeout,
        }
    }

    /// The pod name and port a member's base URL stands for, listing the pods again once
    /// when none matches.
    async fn pod_for(&self, base: &str) -> Result<(String, u16), RestError> {
        let found = {
            let pods = self.pods.read().unwrap_or_else(|p| p.into_inner());
            find_pod(&pods, base, &self.namespace)
        };
        match found {
            Err(RestError::Kubernetes { .. }) => {
                let fresh = list_pods(
                    &self.client,
                    &self.namespace,
                    self.selector.as_deref(),
                    self.port,
                )
                .await
                .map_err(|e| RestError::Kubernetes {
                    url: base.to_string(),
                    reason: e.to_string(),
                })?;
                let found = find_pod(&fresh, base, &self.namespace);
                *self.pods.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                found
            }
            other => other,
        }
    }
}

/// The pod a member's base URL stands for: by IP and port, by IP alone when one pod has
/// it, else by name as the first label of a host name.
fn find_pod(pods: &[PodInfo], base: &str, namespace: &str) -> Result<(String, u16), RestError> {
    let url = reqwest::Url::parse(base).map_err(|e| RestError::Kubernetes {
        url: base.to_string(),
        reason: format!("not a URL: {e}"),
    })?;
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let port = url.port_or_known_default();
    let by_ip: Vec<&PodInfo> = pods
        .iter()
        .filter(|p| p.ip.as_deref() == Some(host))
        .collect();
    // Pod IPs are unique in a cluster; (IP, port) also tells apart pods that share an IP
    // (host networking, or the test fixture on loopback).
    let pod = by_ip
        .iter()
        .find(|p| port.is_some() && p.port.as_ref().ok().copied() == port)
        .or(if by_ip.len() == 1 {
            by_ip.first()
        } else {
            None
        })
        .copied()
        .or_else(|| {
            let label = host.split('.').next().unwrap_or_default();
            pods.iter().find(|p| p.name == label)
        })
        .ok_or_else(|| RestError::Kubernetes {
            url: base.to_string(),
            reason: format!(
                "no pod of the workload in namespace {namespace} has IP or name {host}"
            ),
        })?;
    let port = port
        .or(pod.port.as_ref().ok().copied())
        .unwrap_or(DEFAULT_PORT);
    Ok((pod.name.clone(), port))
}

impl Transport for ApiServer {
    /// Sends one request: reads by `pods/proxy`, writes by `pods/portforward`.
    fn send<'a>(
        &'a self,
        req: &'a Request,
        auth: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<Response, RestError>> {
        Box::pin(self.send_one(req, auth))
    }
}

impl ApiServer {
    async fn send_one(
        &self,
        req: &Request,
        auth: Option<&Credentials>,
    ) -> Result<Response, RestError> {
        let (pod, port) = self.pod_for(&req.base).await?;
        let timeout = req.timeout.unwrap_or(self.timeout);
        let call = async {
            if req.method == reqwest::Method::GET || req.method == reqwest::Method::HEAD {
                self.proxy(req, &pod, port).await
            } else {
                self.port_forward(req, &pod, port, auth).await
            }
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| RestError::Timeout {
                url: req.url(),
                timeout: humantime::format_duration(timeout).to_string(),
            })?
    }

    async fn proxy(&self, req: &Request, pod: &str, port: u16) -> Result<Response, RestError> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{pod}:{port}/proxy{}",
            self.namespace, req.path
        );
        let fail = |reason: String| RestError::Kubernetes {
            url: req.url(),
            reason,
        };
        let http_req = http::Request::builder()
            .method(req.method.as_str())
            .uri(&path)
            .body(kube::client::Body::empty())
            .map_err(|e| fail(e.to_string()))?;
        let resp = self
            .client
            .send(http_req)
            .await
            .map_err(|e| fail(one_line(&error_chain(&e))))?;
        let status = resp.status().as_u16();
        let is_json = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let bytes = resp
            .into_body()
            .collect_bytes()
            .await
            .map_err(|e| fail(one_line(&error_chain(&e))))?;
        let body = String::from_utf8_lossy(&bytes).into_owned();
        // An error of the API server itself (RBAC, pod gone, pod unreachable) is a Status
        // object; Patroni never answers with one.
        if is_json && status >= 400 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if v["kind"] == "Status" && v["apiVersion"] == "v1" {
                if let Ok(st) = serde_json::from_value::<kube::core::Status>(v) {
                    return Err(rest_error(
                        &req.url(),
                        status_error(&st, "get", "pods/proxy", &self.namespace),
                    ));
                }
            }
        }
        Ok(Response {
            status: reqwest::StatusCode::from_u16(status)
                .map_err(|e| fail(format!("bad status {status}: {e}")))?,
            body,
        })
    }

    /// One HTTP/1.0 exchange over a port-forward stream: the pod's Patroni sees the request
    /// as sent, `Authorization` included, and closes the connection after answering.
    async fn port_forward(
        &self,
        req: &Request,
        pod: &str,
        port: u16,
        auth: Option<&Credentials>,
    ) -> Result<Response, RestError> {
        let fail = |reason: String| RestError::Kubernetes {
            url: req.url(),
            reason,
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut pf = pods.portforward(pod, &[port]).await.map_err(|e| match e {
            kube::Error::Api(st) => rest_error(
                &req.url(),
                status_error(&st, "create", "pods/portforward", &self.namespace),
            ),
            other => fail(format!(
                "cannot port-forward to {pod}:{port}: {}",
                one_line(&error_chain(&other))
            )),
        })?;
        let mut stream = pf
            .take_stream(port)
            .ok_or_else(|| fail(format!("no port-forward stream for port {port}")))?;
        let body = match &req.body {
            Some(b) => serde_json::to_vec(b).map_err(|e| fail(e.to_string()))?,
            None => Vec::new(),
        };
        let mut head = format!(
            "{} {} HTTP/1.0\r\nHost: localhost:{port}\r\nUser-Agent: pgpatrol/{}\r\nContent-Length: {}\r\nConnection: close\r\n",
            req.method,
            req.path,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        if req.body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(a) = auth {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", a.username, a.password));
            head.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        head.push_str("\r\n");
        let io = |e: std::io::Error| fail(format!("port-forward to {pod}:{port}: {e}"));
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        stream.write_all(&body).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(io)?;
        drop(stream);
        pf.abort();
        parse_http_response(&raw).map_err(|r| fail(format!("{pod}:{port} {r}")))
    }
}

/// Splits a raw HTTP/1.x answer into status and body.
fn parse_http_response(raw: &[u8]) -> Result<Response, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        format!(
            "closed the connection before a full answer ({} bytes)",
            raw.len()
        )
    })?;
    let status_line = head.lines().next().unwrap_or_default();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("did not speak HTTP: {status_line:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response {
        status: reqwest::StatusCode::from_u16(code).map_err(|e| e.to_string())?,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_http_answers_parse() {
        let r = parse_http_response(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n{\"a\":1}").unwrap();
        assert_eq!(r.status.as_u16(), 200);
        assert_eq!(r.body, "{\"a\":1}");
        let r = parse_http_response(
            b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, "abc");
        assert!(parse_http_response(b"").is_err());
    }
}
