//! API errors as `metav1.Status` bodies, worded like the real API server's so that
//! `kube::Error::Api` carries the same reason, code and (roughly) message.

use serde_json::{Value, json};

use super::store::TypeInfo;

/// A failed request: HTTP code, `Status.reason`, message and optional details.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// (name, group, resource plural) for `Status.details`.
    pub details: Option<(String, String, String)>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        Self {
            code,
            reason,
            message,
            details: None,
        }
    }

    fn about(mut self, ty: &TypeInfo, name: &str) -> Self {
        self.details = Some((name.to_string(), ty.group.clone(), ty.plural.clone()));
        self
    }

    /// 404 for a path no served kind matches.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        )
    }

    pub fn not_found(ty: &TypeInfo, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", ty.resource()),
        )
        .about(ty, name)
    }

    pub fn already_exists(ty: &TypeInfo, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", ty.resource()),
        )
        .about(ty, name)
    }

    /// 409 for a stale resourceVersion.
    pub fn conflict(ty: &TypeInfo, name: &str) -> Self {
        Self::conflict_msg(
            ty,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn conflict_msg(ty: &TypeInfo, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                ty.resource()
            ),
        )
        .about(ty, name)
    }

    /// 409 for server-side apply field conflicts.
    pub fn apply_conflict(message: &str) -> Self {
        Self::new(409, "Conflict", message.to_string())
    }

    /// 403 for a create in a namespace being deleted: the words of the API server's
    /// NamespaceLifecycle admission plugin.
    pub fn namespace_terminating(ty: &TypeInfo, name: &str, ns: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!(
                "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                ty.resource()
            ),
        )
        .about(ty, name)
    }

    /// 422 Invalid.
    pub fn invalid(ty: &TypeInfo, name: &str, why: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{} {name:?} is invalid: {why}", ty.qualified_kind()),
        )
        .about(ty, name)
    }

    pub fn bad_request(message: &str) -> Self {
        Self::new(400, "BadRequest", message.to_string())
    }

    pub fn internal(message: &str) -> Self {
        Self::new(500, "InternalError", message.to_string())
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
        )
    }

    pub fn unsupported_media(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// 410 for a watch from a compacted resourceVersion.
    pub fn expired(message: String) -> Self {
        Self::new(410, "Expired", message)
    }

    /// An injected fault: the usual reason for the code.
    pub fn injected(code: u16, message: &str) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Gone",
            422 => "Invalid",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "Unknown",
        };
        Self::new(code, reason, message.to_string())
    }

    /// The `metav1.Status` body.
    pub fn to_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some((name, group, kind)) = &self.details {
            status["details"] = json!({"name": name, "group": group, "kind": kind});
        }
        status
    }

    /// As a boxed `kube::core::Status`, like `kube::Error::Api` carries.
    pub fn to_status(&self) -> Box<kube::core::Status> {
        Box::new(serde_json::from_value(self.to_json()).unwrap_or_else(|_| {
            kube::core::Status::failure(&self.message, self.reason).with_code(self.code)
        }))
    }
}
