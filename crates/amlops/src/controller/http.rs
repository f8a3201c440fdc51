//! `/healthz`, `/readyz` and `/metrics` (axum). Loopback unless told otherwise.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use super::metrics::Metrics;

/// Readiness as the probe reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Not ready, with why.
    NotReady(&'static str),
    /// Ready.
    Ready,
}

/// What the endpoints read.
#[derive(Clone)]
pub struct Probes {
    /// Current readiness.
    pub ready: watch::Receiver<Readiness>,
    /// Metrics (the resource gauges follow the watch events: a scrape only encodes).
    pub metrics: Metrics,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(p): State<Probes>) -> impl IntoResponse {
    match &*p.ready.borrow() {
        Readiness::Ready => (StatusCode::OK, "ready".to_string()),
        Readiness::NotReady(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    }
}

async fn metrics(State(p): State<Probes>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        p.metrics.encode(),
    )
}

/// The router of the three endpoints.
pub fn router(probes: Probes) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probes)
}

/// Binds `addr` and serves until `stop` turns true. Returns the bound address (port 0 picks
/// one) and the server task.
///
/// # Errors
/// The I/O error of binding `addr` (in use, not permitted, not a local address). A failure
/// while serving later is logged, not returned.
pub async fn serve(
    addr: SocketAddr,
    probes: Probes,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(probes);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "probe server failed");
        }
    });
    Ok((bound, task))
}
