//! Carries Patroni's REST calls through the API server: reads by `pods/proxy`, writes by
//! `pods/portforward` (the proxy strips `Authorization`; Patroni's unsafe endpoints need it).

use std::sync::RwLock;
use std::time::Duration;

use base64::Engine;
use http::header;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::Client;
use tokio::io::{AsyncRead, AsyncWrite};

use super::discovery::{list_pods, Discovered, PodInfo};
use super::errors::{rest_error, status_error};
use super::DEFAULT_PORT;
use crate::source::http::{BoxFuture, Credentials, HttpError, Request, Response, Transport};
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
    /// Every call as curl inside the pod (`--k8s-access exec`).
    exec: bool,
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
            exec: false,
        }
    }

    /// Carries every call as curl inside the pod, over `pods/exec`.
    pub fn by_exec(self) -> Self {
        ApiServer { exec: true, ..self }
    }

    /// The pod name and port a member's base URL stands for, listing the pods again once
    /// when none matches.
    async fn pod_for(&self, base: &str) -> Result<(String, u16), HttpError> {
        let found = {
            let pods = self.pods.read().unwrap_or_else(|p| p.into_inner());
            find_pod(&pods, base, &self.namespace)
        };
        match found {
            Err(HttpError::Kubernetes { .. }) => {
                let fresh = list_pods(
                    &self.client,
                    &self.namespace,
                    self.selector.as_deref(),
                    self.port,
                )
                .await
                .map_err(|e| HttpError::Kubernetes {
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
fn find_pod(pods: &[PodInfo], base: &str, namespace: &str) -> Result<(String, u16), HttpError> {
    let url = reqwest::Url::parse(base).map_err(|e| HttpError::Kubernetes {
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
        .ok_or_else(|| HttpError::Kubernetes {
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
    ) -> BoxFuture<'a, Result<Response, HttpError>> {
        Box::pin(self.send_one(req, auth))
    }
}

impl ApiServer {
    async fn send_one(
        &self,
        req: &Request,
        auth: Option<&Credentials>,
    ) -> Result<Response, HttpError> {
        let (pod, port) = self.pod_for(&req.base).await?;
        let timeout = req.timeout.unwrap_or(self.timeout);
        let call = async {
            if self.exec {
                super::exec::exec(
                    &self.client,
                    &self.namespace,
                    &pod,
                    port,
                    req,
                    auth,
                    timeout.as_secs().max(1),
                )
                .await
            } else if req.method == reqwest::Method::GET || req.method == reqwest::Method::HEAD {
                self.proxy(req, &pod, port).await
            } else {
                self.port_forward(req, &pod, port, auth).await
            }
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| HttpError::Timeout {
                url: req.url(),
                timeout: humantime::format_duration(timeout).to_string(),
            })?
    }

    async fn proxy(&self, req: &Request, pod: &str, port: u16) -> Result<Response, HttpError> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{pod}:{port}/proxy{}",
            self.namespace, req.path
        );
        let fail = |reason: String| HttpError::Kubernetes {
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

    /// One HTTP exchange over a port-forward stream: the pod's Patroni sees the request as
    /// sent, `Authorization` included, and closes the connection after answering.
    async fn port_forward(
        &self,
        req: &Request,
        pod: &str,
        port: u16,
        auth: Option<&Credentials>,
    ) -> Result<Response, HttpError> {
        let fail = |reason: String| HttpError::Kubernetes {
            url: req.url(),
            reason,
        };
        let request = forwarded_request(req, port, auth).map_err(fail)?;
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
        let stream = pf
            .take_stream(port)
            .ok_or_else(|| fail(format!("no port-forward stream for port {port}")))?;
        let answer = exchange(stream, request).await;
        pf.abort();
        answer.map_err(|e| fail(format!("port-forward to {pod}:{port}: {e}")))
    }
}

/// The request as it goes over the port-forward stream, `Host` and `Authorization` included:
/// HTTP/1.0, as Patroni's own server speaks, with the body's length (hyper never chunks a
/// 1.0 request).
fn forwarded_request(
    req: &Request,
    port: u16,
    auth: Option<&Credentials>,
) -> Result<http::Request<Full<Bytes>>, String> {
    let mut b = http::Request::builder()
        .version(http::Version::HTTP_10)
        .method(req.method.as_str())
        .uri(&req.path)
        .header(header::HOST, format!("localhost:{port}"))
        .header(
            header::USER_AGENT,
            concat!("pgpatrol/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::CONNECTION, "close");
    let body = match &req.body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            serde_json::to_vec(v).map_err(|e| e.to_string())?
        }
        None => Vec::new(),
    };
    if let Some(a) = auth {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", a.username, a.password));
        b = b.header(header::AUTHORIZATION, format!("Basic {token}"));
    }
    b.body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build the request: {e}"))
}

/// One HTTP/1 exchange over a byte stream by hyper's client connection: hyper reads the
/// answer however it is framed (length, chunked, or closed), and the body is decoded as
/// text only once it is whole, so a character split across chunks arrives intact.
async fn exchange<S>(io: S, request: http::Request<Full<Bytes>>) -> Result<Response, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let words = |e: hyper::Error| one_line(&error_chain(&e));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(words)?;
    // The connection is driven alongside the call, and ends once the call drops `sender`.
    let call = async move {
        let answer = sender.send_request(request).await?;
        let status = answer.status();
        let body = answer.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>(Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    let (answer, _closed) = tokio::join!(call, conn);
    answer.map_err(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Plays a member's side of a port-forward stream: reads the request (head and body),
    /// then writes `answer` piece by piece, each piece a write of its own, and closes.
    /// Returns the answer and the request as the member saw it.
    async fn serve(
        request: http::Request<Full<Bytes>>,
        answer: &[&[u8]],
    ) -> (Result<Response, String>, String) {
        let (client, mut member) = tokio::io::duplex(64);
        let answer: Vec<Vec<u8>> = answer.iter().map(|p| p.to_vec()).collect();
        let member = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 256];
            loop {
                let n = member.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |l| l.parse().unwrap());
                    if n == 0 || body.len() >= len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            for piece in answer {
                member.write_all(&piece).await.unwrap();
                member.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            drop(member);
            String::from_utf8_lossy(&seen).into_owned()
        });
        let answer = exchange(client, request).await;
        (answer, member.await.unwrap())
    }

    fn get(path: &str) -> http::Request<Full<Bytes>> {
        forwarded_request(&Request::get("http://10.0.0.1:8008", path), 8008, None).unwrap()
    }

    #[tokio::test]
    async fn answers_are_read_however_they_are_framed() {
        // Patroni's HTTP/1.0: the body ends when the connection closes.
        let (r, _) = serve(
            get("/patroni"),
            &[b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n{\"a\":1}"],
        )
        .await;
        let r = r.unwrap();
        assert_eq!(r.status.as_u16(), 200);
        assert_eq!(r.body, "{\"a\":1}");
        let (r, _) = serve(
            get("/patroni"),
            &[b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"],
        )
        .await;
        let r = r.unwrap();
        assert_eq!((r.status.as_u16(), r.body.as_str()), (503, "abc"));
        let (r, _) = serve(
            get("/patroni"),
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        )
        .await;
        assert_eq!(r.unwrap().body, "ok");
        // Closed before a full answer, or not HTTP at all: an error, never a panic.
        let (r, _) = serve(get("/patroni"), &[]).await;
        assert!(r.is_err(), "{r:?}");
        let (r, _) = serve(get("/patroni"), &[b"SSH-2.0-OpenSSH_9.6\r\n\r\n"]).await;
        assert!(r.is_err(), "{r:?}");
    }

    /// Regression: the hand-written parser decoded the raw answer as text before removing
    /// the chunk framing, so a multi-byte character split across two chunks became U+FFFD
    /// and the chunk sizes then cut a character in half: a panic in `dechunk`.
    #[tokio::test]
    async fn a_character_split_across_port_forward_chunks_arrives_whole() {
        let (r, _) = serve(
            get("/patroni"),
            &[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"d\r\n{\"name\":\"caf\xc3\r\n",
                b"3\r\n\xa9\"}\r\n",
                b"0\r\n\r\n",
            ],
        )
        .await;
        assert_eq!(r.unwrap().body, "{\"name\":\"caf\u{e9}\"}");
        // The same character split across two writes of a close-delimited answer.
        let (r, _) = serve(
            get("/patroni"),
            &[b"HTTP/1.0 200 OK\r\n\r\n{\"name\":\"caf\xc3", b"\xa9\"}"],
        )
        .await;
        assert_eq!(r.unwrap().body, "{\"name\":\"caf\u{e9}\"}");
    }

    #[tokio::test]
    async fn a_write_carries_its_body_and_basic_auth() {
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        let req = Request::post(
            "http://10.0.0.1:8008",
            "/reinitialize",
            serde_json::json!({"force": false}),
        );
        let request = forwarded_request(&req, 8009, Some(&creds)).unwrap();
        let (r, seen) = serve(request, &[b"HTTP/1.0 200 OK\r\n\r\nreinitialize started"]).await;
        assert_eq!(r.unwrap().body, "reinitialize started");
        let seen = seen.to_ascii_lowercase();
        for line in [
            "post /reinitialize http/1.0\r\n",
            "host: localhost:8009\r\n",
            "authorization: basic dtpw\r\n",
            "content-type: application/json\r\n",
            "content-length: 15\r\n",
        ] {
            assert!(seen.contains(line), "{line:?} not in {seen:?}");
        }
        assert!(seen.ends_with("\r\n\r\n{\"force\":false}"), "{seen:?}");
    }
}
