//! The HTTP side of `watch`: `/metrics` (Prometheus text), `/healthz` (the process runs),
//! `/readyz` (every cluster has been polled once), `/plan` (each cluster's current heal plan
//! and SLO status as JSON).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::watch;

use super::Shared;

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    use std::sync::atomic::Ordering;
    let last = s.metrics_size.load(Ordering::Relaxed);
    let mut body = String::with_capacity(last + last / 16);
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => {
            s.metrics_size.store(body.len(), Ordering::Relaxed);
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                body,
            )
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
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

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/plan", get(plan))
        .with_state(shared);
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "the HTTP server stopped");
    }
}
