//! Admin endpoints (`/admin/...`): seed state, inject faults, read state and the request
//! log. No ARM token; refused to non-loopback peers; optional admin token.

use std::time::Instant;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::{ClusterSeed, SubscriptionSeed, WorkspaceSeed, secs_to_duration};
use super::conn::ConnInfo;
use super::faults::FaultRule;
use super::state::Shared;
use super::throttle::{Budget, Class, Model, Throttling};

/// Body of `POST /admin/seed`: the `subscriptions` part of the config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedDoc {
    /// Subscriptions with workspaces and clusters (merged into the state).
    pub subscriptions: Vec<SubscriptionSeed>,
}

/// Body of `POST /admin/workspaces`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSeedReq {
    /// Subscription.
    pub subscription_id: String,
    /// The workspace.
    #[serde(flatten)]
    pub workspace: WorkspaceSeed,
}

/// Body of `POST /admin/aks-clusters`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSeedReq {
    /// Subscription.
    pub subscription_id: String,
    /// The cluster.
    #[serde(flatten)]
    pub cluster: ClusterSeed,
}

/// Body of `PUT /admin/op-duration`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpDuration {
    /// Seconds (float).
    pub seconds: f64,
}

/// The admin router (mounted at `/admin`).
pub fn router(shared: Shared) -> Router<Shared> {
    Router::new()
        .route("/state", get(state))
        .route("/seed", post(seed))
        .route("/reset", post(reset))
        .route("/workspaces", post(add_workspace))
        .route("/aks-clusters", post(add_cluster))
        .route(
            "/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/faults/{id}", delete(remove_fault))
        .route("/requests", get(requests).delete(clear_requests))
        .route("/requests/counts", get(request_counts))
        .route("/op-duration", put(set_op_duration))
        .route("/budget", put(set_budget).delete(clear_budget))
        .route("/throttling", put(set_throttling).delete(clear_budget))
        .route("/throttling/take", post(take_tokens))
        .route("/operations/complete", post(complete_all))
        .route("/kubernetes-path", post(seed_kubernetes_path))
        .layer(axum::middleware::from_fn_with_state(shared, guard))
}

/// Loopback peers only; the admin token when one is configured.
async fn guard(
    State(shared): State<Shared>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    req: Request,
    next: Next,
) -> Response {
    if !conn.remote.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "admin endpoints only answer loopback clients"})),
        )
            .into_response();
    }
    let wanted = shared.lock().settings.admin_token.clone();
    if let Some(wanted) = wanted {
        let h = req.headers();
        let given = h
            .get("x-admin-token")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                h.get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            });
        if given != Some(wanted.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "admin token required (header x-admin-token)"})),
            )
                .into_response();
        }
    }
    next.run(req).await
}

fn bad(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": e.to_string()})),
    )
        .into_response()
}

async fn state(State(s): State<Shared>) -> Response {
    let mut inner = s.lock();
    inner.tick(Instant::now());
    Json(inner.snapshot()).into_response()
}

async fn seed(State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    let doc: SeedDoc = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return bad(e),
    };
    let mut inner = s.lock();
    let cfg = super::config::EmulatorConfig {
        subscriptions: doc.subscriptions,
        ..super::config::EmulatorConfig::empty()
    };
    inner.apply_seed(&cfg);
    Json(inner.snapshot()).into_response()
}

async fn reset(State(s): State<Shared>) -> Response {
    s.lock().reset();
    StatusCode::NO_CONTENT.into_response()
}

async fn add_workspace(State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<WorkspaceSeedReq>(&body) {
        Ok(r) => {
            let id = s.lock().seed_workspace(&r.subscription_id, &r.workspace);
            (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
        }
        Err(e) => bad(e),
    }
}

async fn add_cluster(State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<ClusterSeedReq>(&body) {
        Ok(r) => {
            let id = s.lock().seed_cluster(&r.subscription_id, &r.cluster);
            (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
        }
        Err(e) => bad(e),
    }
}

async fn list_faults(State(s): State<Shared>) -> Response {
    Json(s.lock().faults.list()).into_response()
}

async fn add_fault(State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<FaultRule>(&body) {
        Ok(rule) => {
            let id = s.lock().faults.add(rule);
            (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
        }
        Err(e) => bad(e),
    }
}

async fn clear_faults(State(s): State<Shared>) -> Response {
    s.lock().faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn remove_fault(State(s): State<Shared>, Path(id): Path<u64>) -> Response {
    if s.lock().faults.remove(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

async fn requests(State(s): State<Shared>) -> Response {
    let log: Vec<_> = s.lock().log.iter().cloned().collect();
    Json(log).into_response()
}

async fn request_counts(State(s): State<Shared>) -> Response {
    Json(s.lock().request_counts()).into_response()
}

async fn clear_requests(State(s): State<Shared>) -> Response {
    s.lock().log.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn set_op_duration(State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<OpDuration>(&body) {
        Ok(d) => {
            s.lock().settings.op_duration = secs_to_duration(d.seconds);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(e),
    }
}

async fn set_budget(State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Budget>(&body) {
        Ok(b) => {
            s.lock()
                .throttle
                .set(Throttling::enforced(Model::Hourly(b)));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(e),
    }
}

async fn set_throttling(State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Throttling>(&body) {
        Ok(t) => {
            s.lock().throttle.set(t);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(e),
    }
}

async fn clear_budget(State(s): State<Shared>) -> Response {
    s.lock().throttle.set(Throttling::default());
    StatusCode::NO_CONTENT.into_response()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Take {
    subscription: String,
    class: Class,
    count: u64,
    #[serde(default)]
    global: bool,
}

async fn take_tokens(State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Take>(&body) {
        Ok(t) => {
            s.lock()
                .throttle
                .take(&t.subscription, t.class, t.count, t.global, Instant::now());
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(e),
    }
}

/// Finishes every in-flight operation now (fast-forward for demos and tests).
async fn complete_all(State(s): State<Shared>) -> Response {
    let mut inner = s.lock();
    let now = Instant::now();
    for op in inner.operations.values_mut() {
        if op.status == "InProgress" {
            op.due = now;
        }
    }
    inner.tick(now);
    StatusCode::NO_CONTENT.into_response()
}

async fn seed_kubernetes_path(State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    let doc: super::kubernetes_seed::KubernetesPathSeed = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return bad(e),
    };
    let mut inner = s.lock();
    match inner.apply_kubernetes_path_seed(&doc) {
        Ok(()) => Json(inner.snapshot()).into_response(),
        Err(e) => bad(e),
    }
}
