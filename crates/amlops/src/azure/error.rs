//! Errors of the ARM client.
//!
//! One enum, [`AzureError`], with a static [`ErrorCategory`] for metric labels and event
//! reasons. Errors carry what Azure said (`code`, `message`, HTTP status, request ids) but
//! never a request body, a header value or a token: bodies may contain TLS keys.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

/// Coarse, static classification of an error (metric label, event reason, retry decision).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// 404: the resource does not exist.
    NotFound,
    /// 409/412: conflicting state (e.g. AKS `OperationNotAllowed` while busy).
    Conflict,
    /// 429: throttled by ARM.
    Throttled,
    /// 408/5xx or a connection failure: try again later.
    Transient,
    /// 400/422 and other 4xx: the request is wrong; retrying will not help.
    BadRequest,
    /// 401 or a credential that cannot produce a token.
    Unauthorized,
    /// 403: the identity lacks a role assignment.
    Forbidden,
    /// A long-running operation ended `Failed` or `Canceled`.
    OperationFailed,
    /// An attempt timed out.
    Timeout,
    /// Azure answered something we could not decode.
    Decode,
    /// Invalid configuration or argument (bad resource id, foreign poll URL, …).
    Config,
}

impl ErrorCategory {
    /// Stable label for metrics and event reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Throttled => "throttled",
            Self::Transient => "transient",
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::OperationFailed => "operation_failed",
            Self::Timeout => "timeout",
            Self::Decode => "decode",
            Self::Config => "config",
        }
    }

    /// True when the same call may succeed later without any change.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Throttled | Self::Transient | Self::Timeout | Self::Conflict
        )
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ARM's error envelope: `{"error": {...}}` (also the item type of a compute's
/// `provisioningErrors`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmErrorResponse {
    /// The error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ArmErrorDetail>,
}

/// ARM's `ErrorDetail` (`specification/common-types/resource-management/v3/types.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ArmErrorDetail {
    /// Machine-readable code, e.g. `OperationNotAllowed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Human-readable message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The target of the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Nested details (e.g. `BadRequestFormat`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ArmErrorDetail>,
    /// Additional info entries (`type` + free-form `info`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_info: Vec<serde_json::Value>,
}

impl ArmErrorDetail {
    /// Parses an ARM error body. Accepts both the `{"error":{…}}` envelope and a bare
    /// `ErrorDetail` (some operation-status and Location responses use one or the other).
    pub fn parse(body: &[u8]) -> Option<Self> {
        if let Ok(ArmErrorResponse { error: Some(e) }) = serde_json::from_slice(body) {
            return Some(e);
        }
        serde_json::from_slice::<ArmErrorDetail>(body)
            .ok()
            .filter(|e| e.code.is_some() || e.message.is_some())
    }
}

/// An error response from ARM.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// Static operation name (e.g. `compute.get`).
    pub operation: &'static str,
    /// HTTP status.
    pub status: u16,
    /// Azure's error code (`UnknownError` if the body had none).
    pub code: String,
    /// Azure's error message (empty if none).
    pub message: String,
    /// Azure's error target.
    pub target: Option<String>,
    /// Nested details.
    pub details: Vec<ArmErrorDetail>,
    /// `x-ms-request-id` of the response.
    pub request_id: Option<String>,
    /// `x-ms-correlation-request-id` of the response.
    pub correlation_id: Option<String>,
    /// Wait Azure asked for (`Retry-After` and friends).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Builds an error from a response status and body. The body is parsed for ARM's error
    /// envelope only; it is never stored.
    pub fn from_response(
        operation: &'static str,
        status: StatusCode,
        body: &[u8],
        ids: RequestIds,
        retry_after: Option<Duration>,
    ) -> Self {
        let detail = ArmErrorDetail::parse(body).unwrap_or_default();
        let code = detail.code.clone().unwrap_or_else(|| {
            status
                .canonical_reason()
                .map(|r| r.replace(' ', ""))
                .unwrap_or_else(|| "UnknownError".to_owned())
        });
        Self {
            operation,
            status: status.as_u16(),
            code,
            message: detail.message.unwrap_or_default(),
            target: detail.target,
            details: detail.details,
            request_id: ids.request_id,
            correlation_id: ids.correlation_id,
            retry_after,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed with HTTP {}: {}",
            self.operation, self.status, self.code
        )?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        for d in &self.details {
            if let Some(code) = &d.code {
                write!(f, " [{code}")?;
                if let Some(m) = &d.message {
                    write!(f, ": {m}")?;
                }
                f.write_str("]")?;
            }
        }
        if let Some(id) = &self.request_id {
            write!(f, " (x-ms-request-id {id})")?;
        }
        Ok(())
    }
}

/// Request ids captured from a response, for support tickets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestIds {
    /// `x-ms-request-id`.
    pub request_id: Option<String>,
    /// `x-ms-correlation-request-id`.
    pub correlation_id: Option<String>,
}

/// Any failure of the ARM client.
#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    /// ARM answered with an error status.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// A long-running operation ended `Failed` (or `Canceled`, code `Canceled`).
    #[error("{operation} operation failed: {code}: {message}")]
    OperationFailed {
        /// Which operation (`Create`, `Scale`, …).
        operation: &'static str,
        /// Azure's error code.
        code: String,
        /// Azure's error message.
        message: String,
    },
    /// The connection failed or was dropped before a response arrived.
    #[error("{operation}: connection to ARM failed: {reason}")]
    Connection {
        /// Static operation name.
        operation: &'static str,
        /// Description of the failure (no URL query, no headers).
        reason: String,
    },
    /// An attempt exceeded its timeout.
    #[error("{operation}: timed out after {after:?}")]
    Timeout {
        /// Static operation name.
        operation: &'static str,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The client-side rate limit (or a recent 429) would make this call wait too long.
    #[error("{operation}: subscription request budget exhausted; retry after {retry_after:?}")]
    RateLimited {
        /// Static operation name.
        operation: &'static str,
        /// When a token will be available.
        retry_after: Duration,
    },
    /// The credential could not produce a token.
    #[error("could not obtain an Azure access token ({credential}): {reason}")]
    Credential {
        /// Credential kind (`workload-identity`, …).
        credential: &'static str,
        /// What went wrong (from azure_identity; contains no secret).
        reason: String,
    },
    /// A response body did not have the expected shape.
    #[error("{operation}: could not decode the response: {reason}")]
    Decode {
        /// Static operation name.
        operation: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// Invalid configuration or argument.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl AzureError {
    /// Static classification of this error.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Api(e) => category_for(e.status, &e.code),
            Self::OperationFailed { .. } => ErrorCategory::OperationFailed,
            Self::Connection { .. } => ErrorCategory::Transient,
            Self::Timeout { .. } => ErrorCategory::Timeout,
            Self::RateLimited { .. } => ErrorCategory::Throttled,
            Self::Credential { .. } => ErrorCategory::Unauthorized,
            Self::Decode { .. } => ErrorCategory::Decode,
            Self::Config(_) => ErrorCategory::Config,
        }
    }

    /// How long Azure asked us to wait before trying again, if it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api(e) => e.retry_after,
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Azure's error code, when Azure sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api(e) => Some(&e.code),
            Self::OperationFailed { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Azure's error message, when Azure sent one.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Api(e) => Some(&e.message),
            Self::OperationFailed { message, .. } => Some(message),
            _ => None,
        }
    }

    /// HTTP status of an error response.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api(e) => Some(e.status),
            _ => None,
        }
    }

    /// `x-ms-request-id` of the failed response.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api(e) => e.request_id.as_deref(),
            _ => None,
        }
    }

    /// Shorthand for `category() == NotFound`.
    pub fn is_not_found(&self) -> bool {
        self.category() == ErrorCategory::NotFound
    }

    /// A body that did not decode. The decoder's message loses the values it quotes from the
    /// body ([`without_values`]): the body may be a credentials answer.
    pub(crate) fn decode(operation: &'static str, err: impl fmt::Display) -> Self {
        Self::Decode {
            operation,
            reason: without_values(&err.to_string()),
        }
    }
}

/// A decoder's message without the body's values it quotes. serde quotes strings in double
/// quotes (`invalid type: string "…", expected u32`) and enum values in backticks after
/// `unknown variant`; a credentials answer of an unexpected shape (`listClusterUserCredential`,
/// `listKeys`) must not put a kubeconfig into a log, an event or a status. Field names
/// (`missing field `name``), types, lines and columns stay: they come from the schema.
/// Hand-written: serde has no option to leave values out of its messages.
pub(crate) fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let variant = c == '`' && message[..i].ends_with("unknown variant ");
        if c == '"' || variant {
            let close = if variant { '`' } else { '"' };
            let mut escaped = false;
            for (_, d) in chars.by_ref() {
                if d == close && !escaped {
                    break;
                }
                escaped = d == '\\' && !escaped;
            }
            out.push(close);
            out.push('…');
            out.push(close);
        } else {
            out.push(c);
        }
    }
    out
}

impl From<ApiError> for AzureError {
    fn from(e: ApiError) -> Self {
        Self::Api(Box::new(e))
    }
}

/// Maps an HTTP status (and, where the status is ambiguous, Azure's code) to a category.
pub fn category_for(status: u16, code: &str) -> ErrorCategory {
    match status {
        404 => ErrorCategory::NotFound,
        409 | 412 => ErrorCategory::Conflict,
        429 => ErrorCategory::Throttled,
        401 => ErrorCategory::Unauthorized,
        403 => ErrorCategory::Forbidden,
        408 | 500..=599 => ErrorCategory::Transient,
        // Some RPs signal a busy resource with 400 + OperationNotAllowed/Conflict codes.
        400..=499 if code.eq_ignore_ascii_case("OperationNotAllowed") => ErrorCategory::Conflict,
        400..=499 => ErrorCategory::BadRequest,
        _ => ErrorCategory::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arm_error_bodies() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            (
                r#"{"error":{"code":"OperationNotAllowed","message":"busy","target":"pool","details":[{"code":"X","message":"y"}],"additionalInfo":[{"type":"t","info":{}}]}}"#,
                Some(("OperationNotAllowed", "busy")),
            ),
            (
                r#"{"code":"BadArgument","message":"bare detail"}"#,
                Some(("BadArgument", "bare detail")),
            ),
            (r#"{"error":{"code":"OnlyCode"}}"#, Some(("OnlyCode", ""))),
            ("not json", None),
            ("{}", None),
            ("", None),
        ];
        for (body, want) in cases {
            let got = ArmErrorDetail::parse(body.as_bytes());
            match want {
                None => assert!(got.is_none(), "{body}"),
                Some((code, msg)) => {
                    let got = got.expect(body);
                    assert_eq!(got.code.as_deref(), Some(*code));
                    assert_eq!(got.message.as_deref().unwrap_or(""), *msg);
                }
            }
        }
    }

    #[test]
    fn api_error_from_response() {
        let body = br#"{"error":{"code":"BadRequest","message":"Specified kubernetes version 1.2 is not supported.","details":[{"code":"BadRequestFormat","message":"m"}]}}"#;
        let e = ApiError::from_response(
            "compute.put",
            StatusCode::BAD_REQUEST,
            body,
            RequestIds {
                request_id: Some("rid".into()),
                correlation_id: Some("cid".into()),
            },
            None,
        );
        assert_eq!(e.code, "BadRequest");
        assert_eq!(e.details[0].code.as_deref(), Some("BadRequestFormat"));
        let text = AzureError::from(e.clone()).to_string();
        assert!(text.contains("HTTP 400"), "{text}");
        assert!(text.contains("BadRequestFormat"), "{text}");
        assert!(text.contains("rid"), "{text}");

        // No body: the code comes from the status.
        let e = ApiError::from_response(
            "compute.get",
            StatusCode::SERVICE_UNAVAILABLE,
            b"",
            RequestIds::default(),
            Some(Duration::from_secs(3)),
        );
        assert_eq!(e.code, "ServiceUnavailable");
        assert_eq!(
            AzureError::from(e).retry_after(),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn category_mapping() {
        let cases = [
            (404, "ResourceNotFound", ErrorCategory::NotFound),
            (409, "OperationNotAllowed", ErrorCategory::Conflict),
            (400, "OperationNotAllowed", ErrorCategory::Conflict),
            (412, "PreconditionFailed", ErrorCategory::Conflict),
            (429, "TooManyRequests", ErrorCategory::Throttled),
            (
                401,
                "InvalidAuthenticationToken",
                ErrorCategory::Unauthorized,
            ),
            (403, "AuthorizationFailed", ErrorCategory::Forbidden),
            (400, "BadRequest", ErrorCategory::BadRequest),
            (422, "Unprocessable", ErrorCategory::BadRequest),
            (408, "RequestTimeout", ErrorCategory::Transient),
            (500, "InternalServerError", ErrorCategory::Transient),
            (503, "ServiceUnavailable", ErrorCategory::Transient),
        ];
        for (status, code, want) in cases {
            assert_eq!(category_for(status, code), want, "{status} {code}");
        }
        let others = [
            (
                AzureError::OperationFailed {
                    operation: "Create",
                    code: "c".into(),
                    message: "m".into(),
                },
                ErrorCategory::OperationFailed,
            ),
            (
                AzureError::Timeout {
                    operation: "x",
                    after: Duration::from_secs(1),
                },
                ErrorCategory::Timeout,
            ),
            (
                AzureError::Connection {
                    operation: "x",
                    reason: "r".into(),
                },
                ErrorCategory::Transient,
            ),
            (AzureError::Config("c".into()), ErrorCategory::Config),
            (
                AzureError::RateLimited {
                    operation: "x",
                    retry_after: Duration::from_secs(40),
                },
                ErrorCategory::Throttled,
            ),
            (AzureError::decode("x", "bad"), ErrorCategory::Decode),
        ];
        for (err, want) in others {
            assert_eq!(err.category(), want);
            assert!(!want.as_str().is_empty());
        }
    }

    /// A body of an unexpected shape: the decode error names the field and the expected
    /// type, never the value (a credentials answer holds a kubeconfig).
    #[test]
    fn decode_errors_do_not_quote_the_body() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Creds {
            kubeconfigs: Vec<Kc>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Kc {
            name: String,
            value: u32,
            kind: Kind,
        }
        #[derive(Debug, serde::Deserialize)]
        enum Kind {
            User,
        }
        const SECRET: &str = "token: c2VjcmV0LXRva2Vu";
        let bodies = [
            (
                format!(r#"{{"kubeconfigs": "{SECRET}"}}"#),
                "invalid type: string \"…\", expected a sequence",
            ),
            (
                format!(r#"{{"kubeconfigs": [{{"name": "u", "value": "{SECRET} \" more"}}]}}"#),
                "invalid type: string \"…\", expected u32",
            ),
            (
                format!(r#"{{"kubeconfigs": [{{"name": "u", "value": 1, "kind": "{SECRET}"}}]}}"#),
                "unknown variant `…`, expected `User`",
            ),
            (
                r#"{"kubeconfigs": [{"value": 1}]}"#.to_string(),
                "missing field `name`",
            ),
        ];
        for (body, want) in bodies {
            let e = serde_json::from_str::<Creds>(&body).unwrap_err();
            let got = AzureError::decode("aks.list_cluster_user_credential", e).to_string();
            assert!(!got.contains("c2VjcmV0"), "{got}");
            assert!(got.contains(want), "{got} should contain {want}");
        }
        let table = [
            ("plain message", "plain message"),
            (r#"a "b \" c" d"#, r#"a "…" d"#),
            (
                "unknown variant `x`, expected `A` or `B`",
                "unknown variant `…`, expected `A` or `B`",
            ),
            (
                "missing field `name` at line 1 column 2",
                "missing field `name` at line 1 column 2",
            ),
        ];
        for (input, want) in table {
            assert_eq!(without_values(input), want, "{input}");
        }
    }
}
