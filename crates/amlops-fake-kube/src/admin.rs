//! `amlops-dev fake-api-server`: the fake served as a process of its own, so that `amlops-dev bench
//! --controller` measures the operator's memory and CPU apart from the fake's. Besides the
//! Kubernetes API, a fake started with [`FakeApiServer::serve_on`] answers, under `/_fake/`:
//!
//! - `POST /_fake/objects`: a JSON array of objects, each created or replaced in order as
//!   [`FakeApiServer::put`] does, under one lock (a `kubectl apply` of many files, without
//!   the requests): `{"stored": n}`, or the first failure's `metav1.Status` with its code
//!   (the objects before it stay stored);
//! - `GET /_fake/requests/counts`: the request log counted by method, watches apart as
//!   `WATCH` ([`FakeApiServer::request_counts`]), e.g. `{"GET": 3, "PATCH": 40, "WATCH": 4}`;
//! - `DELETE /_fake/requests`: forgets the request log ([`FakeApiServer::clear_requests`]).
//!
//! These requests are not in the request log. Like the rest of the fake, they need no
//! authentication: the listener is loopback unless `--listen` says otherwise.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

use super::FakeApiServer;
use super::errors::ApiError;
use super::http::Shared;

/// `amlops-dev fake-api-server` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FakeApiServerArgs {
    /// Address to listen on (port 0: a free port; the URL is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/objects", post(put_objects))
        .route("/requests/counts", get(request_counts))
        .route("/requests", delete(clear_requests))
        .with_state(shared)
}

async fn put_objects(
    AxumState(shared): AxumState<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Response {
    let objects: Vec<Value> = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let err = ApiError::bad_request(&format!("expected a JSON array of objects: {e}"));
            return status_response(err.code, err.to_json());
        }
    };
    let mut state = shared.lock();
    let mut stored = 0usize;
    for obj in objects {
        if let Err(status) = FakeApiServer::put_in(&mut state, obj) {
            let code = status.code;
            return status_response(code, serde_json::to_value(&*status).unwrap_or(Value::Null));
        }
        stored += 1;
    }
    Json(json!({ "stored": stored })).into_response()
}

async fn request_counts(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    Json(super::count_requests(&shared.lock().requests)).into_response()
}

async fn clear_requests(AxumState(shared): AxumState<Arc<Shared>>) -> StatusCode {
    shared.lock().requests.clear();
    StatusCode::NO_CONTENT
}

fn status_response(code: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

/// `amlops-dev fake-api-server`: serves the fake (with the `/_fake/` admin endpoints) until
/// Ctrl-C, after printing `Fake Kubernetes API server listening on http://host:port`.
///
/// # Errors
/// When the address cannot be bound or the Ctrl-C handler cannot be installed.
pub async fn run_cli(args: FakeApiServerArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "fake API server listening beyond loopback: it has no authentication");
    }
    let fake = FakeApiServer::serve_on(args.listen).await?;
    println!("Fake Kubernetes API server listening on {}", fake.url());
    tokio::signal::ctrl_c().await?;
    fake.shutdown().await;
    Ok(())
}
