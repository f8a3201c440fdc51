//! Long-running operations: `Azure-AsyncOperation` status documents, `Location` result
//! URLs, `Retry-After`. Operations complete lazily: every request first calls
//! [`Inner::tick`], which finishes the operations whose time has come, so a zero
//! duration means "done on first poll" and no background task is needed.

use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::errors::{ArmError, ErrorDetail, error_json};
use super::state::{Inner, OperationView, arm_time};

/// Which resource provider an operation belongs to (decides its URLs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Microsoft.MachineLearningServices (computes).
    Mls,
    /// Microsoft.ContainerService (AKS).
    Aks,
    /// Microsoft.KubernetesConfiguration (extensions): `{extension id}/operations/{id}`.
    KubernetesConfiguration,
}

/// What happens when an operation completes.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Azure ML creates the AKS cluster of this compute (key).
    CreateCompute(String),
    /// Azure ML attaches the compute's AKS cluster.
    AttachCompute(String),
    /// Azure ML applies an in-place update (TLS, load balancer, description).
    UpdateCompute(String),
    /// Compute deleted (with its cluster) or detached.
    DeleteCompute {
        /// Compute key.
        compute: String,
        /// True for `underlyingResourceAction=Detach`.
        detach: bool,
    },
    /// Agent pool scaled or created.
    ScalePool {
        /// Cluster key.
        cluster: String,
        /// Pool name.
        pool: String,
    },
    /// AKS cluster deleted.
    DeleteCluster(String),
    /// A cluster extension is installed, updated or deleted.
    Extension {
        /// Extension key.
        key: String,
        /// What.
        op: super::extensions::ExtOp,
    },
    /// A Kubernetes compute is attached, updated or detached.
    KubernetesCompute {
        /// Compute key.
        key: String,
        /// What.
        op: super::kubernetes_compute::KcOp,
    },
}

/// A long-running operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Id (GUID).
    pub id: String,
    /// Create / Attach / Update / Delete / Detach / Scale / DeleteCluster.
    pub kind: String,
    /// Provider (URLs).
    pub provider: Provider,
    /// Subscription.
    pub subscription: String,
    /// Region (URLs).
    pub location: String,
    /// ARM id of the target resource.
    pub target: String,
    /// When it becomes due.
    pub due: Instant,
    /// Start time.
    pub start_time: jiff::Timestamp,
    /// End time.
    pub end_time: Option<jiff::Timestamp>,
    /// InProgress / Succeeded / Failed / Canceled.
    pub status: String,
    /// Error of a failed operation.
    pub error: Option<ErrorDetail>,
    /// What completion does.
    pub effect: Effect,
    /// Failure injected by an `LroFail` fault.
    pub forced_error: Option<ErrorDetail>,
    /// api-version the operation was started with (echoed in its URLs).
    pub api_version: String,
}

impl Operation {
    /// Snapshot view.
    pub fn view(&self) -> OperationView {
        OperationView {
            id: self.id.clone(),
            kind: self.kind.clone(),
            target: self.target.clone(),
            status: self.status.clone(),
            start_time: arm_time(self.start_time),
            end_time: self.end_time.map(arm_time),
            error: self.error.clone(),
        }
    }

    fn provider_path(&self) -> String {
        match self.provider {
            Provider::Mls => format!(
                "/subscriptions/{}/providers/Microsoft.MachineLearningServices/locations/{}",
                self.subscription, self.location
            ),
            Provider::Aks => format!(
                "/subscriptions/{}/providers/Microsoft.ContainerService/locations/{}",
                self.subscription, self.location
            ),
            Provider::KubernetesConfiguration => self.target.clone(),
        }
    }

    /// Path of the `Azure-AsyncOperation` status document.
    pub fn status_path(&self) -> String {
        let leaf = match self.provider {
            Provider::Mls => "computeOperationsStatus",
            Provider::Aks | Provider::KubernetesConfiguration => "operations",
        };
        format!("{}/{leaf}/{}", self.provider_path(), self.id)
    }

    /// `Azure-AsyncOperation` URL.
    pub fn status_url(&self, base: &str) -> String {
        format!(
            "{base}{}?api-version={}",
            self.status_path(),
            self.api_version
        )
    }

    /// `Location` URL.
    pub fn location_url(&self, base: &str) -> String {
        let leaf = match self.provider {
            Provider::Mls => "computeOperationsResults",
            Provider::Aks => "operationresults",
            // The extension RP has no Location protocol; its status URL serves both.
            Provider::KubernetesConfiguration => "operations",
        };
        format!(
            "{base}{}/{leaf}/{}?api-version={}",
            self.provider_path(),
            self.id,
            self.api_version
        )
    }

    /// Remaining time (zero when due).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.due.saturating_duration_since(now)
    }

    /// The status document.
    pub fn status_body(&self) -> serde_json::Value {
        let mut v = json!({
            "id": self.status_path(),
            "name": self.id,
            "status": self.status,
            "startTime": arm_time(self.start_time),
        });
        if let Some(obj) = v.as_object_mut() {
            if let Some(t) = self.end_time {
                obj.insert("endTime".into(), json!(arm_time(t)));
                obj.insert("percentComplete".into(), json!(100.0));
            }
            if let Some(e) = &self.error {
                obj.insert("error".into(), error_json(e));
            }
        }
        v
    }
}

/// Request data the operation needs.
pub struct NewOp {
    /// Kind name.
    pub kind: &'static str,
    /// Provider.
    pub provider: Provider,
    /// Subscription.
    pub subscription: String,
    /// Region.
    pub location: String,
    /// Target ARM id.
    pub target: String,
    /// Effect.
    pub effect: Effect,
    /// Injected failure.
    pub forced_error: Option<ErrorDetail>,
    /// api-version of the request.
    pub api_version: String,
}

impl Inner {
    /// Starts an operation; returns its id.
    pub fn start_op(&mut self, new: NewOp, now: Instant) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let op = Operation {
            id: id.clone(),
            kind: new.kind.into(),
            provider: new.provider,
            subscription: new.subscription,
            location: new.location,
            target: new.target,
            due: now + self.settings.op_duration,
            start_time: jiff::Timestamp::now(),
            end_time: None,
            status: "InProgress".into(),
            error: None,
            effect: new.effect,
            forced_error: new.forced_error,
            api_version: new.api_version,
        };
        tracing::debug!(op = %id, kind = new.kind, target = %op.target, "operation started");
        self.operations.insert(id.clone(), op);
        id
    }

    /// Completes every operation that is due, oldest first.
    pub fn tick(&mut self, now: Instant) {
        let mut due: Vec<(Instant, String)> = self
            .operations
            .values()
            .filter(|o| o.status == "InProgress" && o.due <= now)
            .map(|o| (o.due, o.id.clone()))
            .collect();
        due.sort();
        for (_, id) in due {
            self.complete(&id);
        }
        // Finished operations stay pollable for a day (clients may poll late, e.g. after
        // a restart), then go, so long runs do not grow without bound.
        let horizon = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
        self.operations
            .retain(|_, o| o.end_time.is_none_or(|t| t > horizon));
    }

    fn complete(&mut self, id: &str) {
        let Some(op) = self.operations.get(id) else {
            return;
        };
        let (effect, forced) = (op.effect.clone(), op.forced_error.clone());
        let result = match forced {
            Some(err) => {
                self.fail_effect(&effect, err.clone());
                Err(err)
            }
            None => self.apply_effect(&effect),
        };
        if let Some(op) = self.operations.get_mut(id) {
            op.end_time = Some(jiff::Timestamp::now());
            match result {
                Ok(()) => op.status = "Succeeded".into(),
                Err(e) => {
                    op.status = "Failed".into();
                    op.error = Some(e);
                }
            }
            tracing::info!(op = %id, kind = %op.kind, status = %op.status, "operation finished");
        }
    }

    fn apply_effect(&mut self, effect: &Effect) -> Result<(), ErrorDetail> {
        match effect {
            Effect::CreateCompute(k) => self.finish_create(k),
            Effect::AttachCompute(k) => self.finish_attach(k),
            Effect::UpdateCompute(k) => self.finish_update(k),
            Effect::DeleteCompute { compute, detach } => self.finish_delete(compute, *detach),
            Effect::ScalePool { cluster, pool } => self.finish_scale(cluster, pool),
            Effect::DeleteCluster(k) => self.finish_delete_cluster(k),
            Effect::Extension { key, op } => self.finish_extension(key, *op),
            Effect::KubernetesCompute { key, op } => self.finish_kubernetes_compute(key, *op),
        }
    }

    /// An injected failure: the target records the error.
    fn fail_effect(&mut self, effect: &Effect, err: ErrorDetail) {
        match effect {
            Effect::CreateCompute(k)
            | Effect::AttachCompute(k)
            | Effect::UpdateCompute(k)
            | Effect::DeleteCompute { compute: k, .. } => self.fail_compute(k, vec![err]),
            Effect::ScalePool { cluster, pool } => {
                if let Some(c) = self.clusters.get_mut(cluster) {
                    c.operation = None;
                    if let Some(p) = c
                        .pools
                        .iter_mut()
                        .find(|p| p.name.eq_ignore_ascii_case(pool))
                    {
                        p.provisioning_state = "Failed".into();
                    }
                }
            }
            Effect::DeleteCluster(k) => {
                if let Some(c) = self.clusters.get_mut(k) {
                    c.operation = None;
                    c.provisioning_state = "Failed".into();
                }
            }
            Effect::Extension { key, .. } => self.fail_extension(key, err),
            Effect::KubernetesCompute { key, .. } => self.fail_kubernetes_compute(key, err),
        }
    }

    /// Marks a compute Failed with these errors.
    pub fn fail_compute(&mut self, key: &str, errors: Vec<ErrorDetail>) {
        if let Some(c) = self.computes.get_mut(key) {
            c.provisioning_state = "Failed".into();
            c.errors = errors;
            c.operation = None;
            c.pending_tls = None;
            c.renew_tls = false;
            c.modified_on = jiff::Timestamp::now();
        }
    }
}

/// Adds `Azure-AsyncOperation`, `Location`, `Retry-After` and `retry-after-ms`.
pub fn add_lro_headers(resp: &mut Response, op: &Operation, base: &str, now: Instant) {
    let h = resp.headers_mut();
    for (name, value) in [
        ("azure-asyncoperation", op.status_url(base)),
        ("location", op.location_url(base)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    add_retry_after(resp, op.remaining(now));
}

/// `Retry-After` (whole seconds, at least 1) plus `retry-after-ms` (precise).
pub fn add_retry_after(resp: &mut Response, wait: Duration) {
    let secs = (wait.as_secs_f64().ceil() as u64).max(1);
    let h = resp.headers_mut();
    h.insert("retry-after", HeaderValue::from(secs));
    h.insert("retry-after-ms", HeaderValue::from(wait.as_millis() as u64));
}

/// GET on an `Azure-AsyncOperation` URL: always 200 with the status document.
pub fn get_status(inner: &Inner, id: &str, now: Instant) -> Result<Response, ArmError> {
    let op = inner.operations.get(id).ok_or_else(|| op_not_found(id))?;
    let mut resp = (StatusCode::OK, axum::Json(op.status_body())).into_response();
    if op.status == "InProgress" {
        add_retry_after(&mut resp, op.remaining(now));
    }
    Ok(resp)
}

/// GET on a `Location` URL: 202 while running; when done 200 with the resource (PUT),
/// 204 (DELETE); the error with 400/500 when failed.
pub fn get_result(inner: &Inner, id: &str, base: &str, now: Instant) -> Result<Response, ArmError> {
    let op = inner.operations.get(id).ok_or_else(|| op_not_found(id))?;
    match op.status.as_str() {
        "InProgress" => {
            let mut resp = StatusCode::ACCEPTED.into_response();
            if let Ok(v) = HeaderValue::from_str(&op.location_url(base)) {
                resp.headers_mut().insert("location", v);
            }
            add_retry_after(&mut resp, op.remaining(now));
            Ok(resp)
        }
        "Succeeded" => {
            let body = match &op.effect {
                Effect::CreateCompute(k) | Effect::AttachCompute(k) | Effect::UpdateCompute(k) => {
                    inner
                        .computes
                        .get(k)
                        .and_then(|c| super::compute::compute_json(inner, c))
                }
                Effect::ScalePool { cluster, pool } => inner
                    .clusters
                    .get(cluster)
                    .and_then(|c| super::aks::pool_json(c, pool)),
                Effect::KubernetesCompute { key, op } => {
                    if *op == super::kubernetes_compute::KcOp::Detach {
                        None
                    } else {
                        inner
                            .ext
                            .computes
                            .get(key)
                            .and_then(|c| super::kubernetes_compute::compute_json(inner, c))
                    }
                }
                Effect::Extension { key, .. } => inner
                    .ext
                    .extensions
                    .get(key)
                    .map(super::extensions::extension_json),
                Effect::DeleteCompute { .. } | Effect::DeleteCluster(_) => None,
            };
            Ok(match body {
                Some(b) => (StatusCode::OK, axum::Json(b)).into_response(),
                None => StatusCode::NO_CONTENT.into_response(),
            })
        }
        _ => {
            let detail = op
                .error
                .clone()
                .unwrap_or_else(|| ErrorDetail::new("Canceled", "The operation was canceled."));
            let status = if detail.code == "InternalServerError" {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::BAD_REQUEST
            };
            Err(ArmError {
                status,
                detail: Box::new(detail),
                headers: Vec::new(),
            })
        }
    }
}

fn op_not_found(id: &str) -> ArmError {
    // emulator wording
    ArmError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("Operation {id} was not found."),
    )
}
