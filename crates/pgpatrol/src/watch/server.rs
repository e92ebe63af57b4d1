//! The HTTP side of `watch`: `/metrics` (Prometheus text), `/healthz` (the process runs),
//! `/readyz` (every cluster has been polled once), `/plan` (each cluster's current heal plan
//! and SLO status as JSON), `/events` (the event log as JSON, `?cluster=&since=&limit=`),
//! `/events/stream` (Server-Sent Events, replaying from `Last-Event-ID`), and the status
//! page: `/` (the fleet) and `/cluster/NAME`. With `listen_auth:` every route but
//! `/healthz` and `/readyz` asks for basic authentication.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::watch;

use super::Shared;

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    use futures::StreamExt as _;
    // The members of this watcher's clusters, as their last polls read them.
    let members: usize = s
        .views
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .filter_map(|v| v.cluster.as_ref())
        .map(|c| c.members.len())
        .sum();
    s.metrics
        .shard_members
        .get_or_create(&super::metrics::ShardL {
            shard: s.shard.index.to_string().into(),
        })
        .set(members as i64);
    // One family at a time, each encoded when the client takes the one before: the whole
    // body never sits in memory (families are locked only while each is encoded).
    let families = s.registry.len();
    let body = futures::stream::iter(0..=families).map(move |i| {
        s.registry
            .chunk(i)
            .map(axum::body::Bytes::from)
            .map_err(|e| std::io::Error::other(format!("cannot encode metric family {i}: {e}")))
    });
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        axum::body::Body::from_stream(body),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    if !s.discovered.load(std::sync::atomic::Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "discovering: the DCS has not been read yet\n".to_string(),
        );
    }
    let views = s.views.lock().unwrap_or_else(|p| p.into_inner());
    let waiting: Vec<&str> = views
        .iter()
        .filter(|(_, v)| !v.polled)
        .map(|(k, _)| k.as_str())
        .collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not polled yet: {}\n", waiting.join(", ")),
        )
    }
}

async fn plan(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let views = s.views.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Json(views)
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    cluster: Option<String>,
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
}

/// The event log, oldest first: `?cluster=` one cluster, `?since=` after that event id,
/// `?limit=` the newest that many (default 500).
async fn events(State(s): State<Arc<Shared>>, Query(q): Query<EventsQuery>) -> impl IntoResponse {
    Json(
        s.events
            .query(q.cluster.as_deref(), q.since, q.limit.unwrap_or(500)),
    )
}

/// Every event as it is emitted (`data:` its JSON, `id:` its number); a reader that comes
/// back with `Last-Event-ID` first gets what it missed that the log still holds.
async fn stream(State(s): State<Arc<Shared>>, headers: HeaderMap) -> impl IntoResponse {
    let rx = s.events.subscribe();
    let since: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let missed = since
        .map(|id| s.events.query(None, id, 1000))
        .unwrap_or_default();
    let sse = |e: &pgpatrol_core::events::Event| {
        Ok::<_, std::convert::Infallible>(
            SseEvent::default()
                .id(e.id.to_string())
                .data(serde_json::to_string(e).unwrap_or_default()),
        )
    };
    let first = futures::stream::iter(missed.iter().map(sse).collect::<Vec<_>>());
    let live = futures::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((sse(&e), rx)),
                // A slow reader skips what it missed; the page re-renders anyway.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let until = s.events.closing();
    Sse::new(futures::StreamExt::take_until(
        futures::StreamExt::chain(first, live),
        until,
    ))
    .keep_alive(KeepAlive::default())
}

async fn fleet_page(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    page_headers(super::page::fleet(&s))
}

async fn cluster_page(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match super::page::cluster(&s, &name) {
        Some(html) => page_headers(html).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Html(format!(
                "<!doctype html><title>not watched</title><p>No cluster named {} is watched. <a href=\"/\">The fleet</a></p>",
                super::page::esc(&name)
            )),
        )
            .into_response(),
    }
}

/// The page allows only itself: its own script and style, nothing from elsewhere.
fn page_headers(html: String) -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'; img-src 'self' data:",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(html),
    )
}

/// Basic authentication when `listen_auth:` is set (compared in constant time).
async fn auth(State(expected): State<Option<Arc<str>>>, req: Request, next: Next) -> Response {
    let Some(want) = expected else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if path == "/healthz" || path == "/readyz" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if constant_time_eq(given, want.as_bytes()) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"pgpatrol watch\"")],
        "authentication required\n",
    )
        .into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The routes, with `expected` the `Authorization` value `listen_auth:` asks for.
pub fn router(shared: Arc<Shared>, expected: Option<String>) -> Router {
    Router::new()
        .route("/", get(fleet_page))
        .route("/cluster/{name}", get(cluster_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/plan", get(plan))
        .route("/events", get(events))
        .route("/events/stream", get(stream))
        .with_state(shared)
        .layer(middleware::from_fn_with_state(
            expected.map(Arc::<str>::from),
            auth,
        ))
}

/// Serves HTTPS with `tls` until `shutdown` turns true: each connection is a TLS handshake
/// (10 s at most) and then HTTP/1.1 on the same routes.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    expected: Option<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router(shared.clone(), expected);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                conns.spawn(async move {
                    let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    shared.events.close();
    // Requests in flight get a moment; then what is left is dropped.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    expected: Option<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router(shared.clone(), expected);
    let stop = async move {
        let _ = shutdown.changed().await;
        // Open event streams end now, or the graceful shutdown would wait on them.
        shared.events.close();
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "the HTTP server stopped");
    }
}
