//! ARM error bodies (`{"error":{code,message,target,details,additionalInfo}}`) and the
//! exact wordings of the errors people really meet.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// One ARM `ErrorDetail` (common-types v3). Used in error responses, in operation
/// status bodies and in a compute's `provisioningErrors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `BadArgument`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Optional target of the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Nested details.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

impl ErrorDetail {
    /// A detail with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            target: None,
            details: Vec::new(),
        }
    }

    /// Adds a nested detail.
    pub fn with_detail(mut self, detail: ErrorDetail) -> Self {
        self.details.push(detail);
        self
    }
}

/// An ARM error response: HTTP status + `ErrorDetail`, plus optional extra headers
/// (e.g. `Retry-After` on 429).
#[derive(Debug, Clone)]
pub struct ArmError {
    /// HTTP status code.
    pub status: StatusCode,
    /// The error body (boxed: keeps `Result<_, ArmError>` small).
    pub detail: Box<ErrorDetail>,
    /// Extra response headers.
    pub headers: Vec<(&'static str, String)>,
}

impl ArmError {
    /// Builds an error with a status, code and message.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            detail: Box::new(ErrorDetail::new(code, message)),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// 400 with code `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// JSON body of the error.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": error_json(&self.detail) })
    }
}

/// Serializes an `ErrorDetail` the way ARM does (always `details` and `additionalInfo` arrays).
pub fn error_json(detail: &ErrorDetail) -> serde_json::Value {
    let mut v = serde_json::json!({
        "code": detail.code,
        "message": detail.message,
        "details": detail.details.iter().map(error_json).collect::<Vec<_>>(),
        "additionalInfo": [],
    });
    if let (Some(t), Some(obj)) = (&detail.target, v.as_object_mut()) {
        obj.insert("target".into(), serde_json::Value::String(t.clone()));
    }
    v
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.headers_mut().insert(
            "x-ms-failure-cause",
            HeaderValue::from_static(if self.status.is_server_error() {
                "service"
            } else {
                "gateway"
            }),
        );
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}

/// The error messages Azure returns (as users report them), one function each, so the
/// wording lives in exactly one place.
pub mod msg {
    /// PUT of an existing compute name.
    pub fn compute_exists(name: &str) -> String {
        format!(
            "Compute with name {name} already exists. Compute name needs to be unique across all existing computes within an Azure region."
        )
    }
    /// FastProd below 12 vCPUs.
    pub fn too_few_cores() -> String {
        "Agent cores Cluster should have at least 12 cores to operate.".to_string()
    }
    /// FastProd below 3 nodes.
    pub fn too_few_nodes(n: i64) -> String {
        format!(
            "At least 3 machine(s) are required for cluster with purpose 'FastProd'. Available machine(s) : {n}"
        )
    }
    /// Unsupported Kubernetes version on attach.
    pub fn unsupported_version(v: &str, min: &str, max: &str) -> String {
        format!(
            "Specified kubernetes version {v} is not supported. Supported versions are between {min} - {max}"
        )
    }
    /// Using a compute that is not Succeeded.
    pub fn not_succeeded(name: &str, state: &str) -> String {
        format!(
            "Compute resource with Id: {name} is not in Succeeded state. Compute provisioning state: {state}"
        )
    }
    /// AKS busy.
    pub fn aks_busy(pool: &str) -> String {
        format!(
            "Operation is not allowed: Another operation ({pool} - Updating) is in progress, please wait for it to finish before starting a new operation."
        )
    }
    /// Throttled.
    pub fn throttled(op: &str, secs: u64) -> String {
        format!(
            "The request is being throttled as the limit has been reached for operation '{op}'. Please try again after '{secs}' seconds."
        )
    }
    /// The identity lacks a role assignment (ARM's wording; the principal ids are the
    /// emulator's).
    pub fn authorization_failed(action: &str, scope: &str) -> String {
        let principal = "11111111-1111-1111-1111-111111111111";
        format!(
            "The client '{principal}' with object id '{principal}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."
        )
    }
    /// Azure's own failure.
    pub const INTERNAL: &str = "An internal server error occurred.";
    /// Unknown VM size (AKS's wording as reported by users of `az aks create`).
    pub fn vm_size_not_allowed(pool: &str, location: &str) -> String {
        format!(
            "The VM size of AgentPoolProfile:{pool} is not allowed in your subscription in location '{location}'. For more details, please visit https://aka.ms/aks/quotas-skus-regions"
        )
    }
    /// ARM's standard not-found wording.
    pub fn not_found(resource_type: &str, name: &str, rg: &str) -> String {
        format!(
            "The Resource '{resource_type}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        )
    }
}

/// 400 ComputeResourceNotCreated for a compute that is not Succeeded.
pub fn compute_not_succeeded(name: &str, state: &str) -> ArmError {
    ArmError::new(
        StatusCode::BAD_REQUEST,
        "ComputeResourceNotCreated",
        msg::not_succeeded(name, state),
    )
}
