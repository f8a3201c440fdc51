//! Long-running operations as data.
//!
//! The reconcile engine never blocks on an ARM operation: starting one returns an
//! [`OperationHandle`], which the engine stores in the CR status and polls on later
//! reconciles — possibly from a restarted process — with [`ArmClient::poll`].
//!
//! Two polling styles exist: `Azure-AsyncOperation` (a status resource answering 200 with
//! `{status, error}`) and `Location` (202 while running, 200/204 when done, an error status
//! with an error body on failure). `Azure-AsyncOperation` is preferred when both are sent.
//! Both are ARM's (<https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations>).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ArmClient;
use super::error::{ArmErrorDetail, AzureError, ErrorCategory};
use super::http::{Request, Response};
use super::retry;

/// What a long-running operation does (recorded in the CR status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum OperationKind {
    /// Compute PUT creating a new AKS cluster.
    Create,
    /// Compute PUT attaching an existing AKS cluster.
    Attach,
    /// Compute PUT updating an existing compute in place.
    Update,
    /// Agent pool PUT changing the node count.
    Scale,
    /// Compute DELETE with `underlyingResourceAction=Detach`.
    Detach,
    /// Compute DELETE with `underlyingResourceAction=Delete`, or an AKS delete.
    Delete,
}

impl OperationKind {
    /// Static name for logs, metrics and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "Create",
            Self::Attach => "Attach",
            Self::Update => "Update",
            Self::Scale => "Scale",
            Self::Detach => "Detach",
            Self::Delete => "Delete",
        }
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the operation is polled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum LroStyle {
    /// `Azure-AsyncOperation` header: status resource with `{status, error}`.
    AsyncOperation,
    /// `Location` header: 202 while running.
    Location,
}

/// A started long-running operation. Serialisable so it survives in the CR status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationHandle {
    /// What the operation does.
    pub kind: OperationKind,
    /// Which polling protocol applies.
    pub style: LroStyle,
    /// The URL to poll (must be on the configured ARM endpoint).
    pub url: String,
    /// Wait Azure asked for before the first poll (kept in the status as `retryAfterMs`,
    /// whole milliseconds).
    #[serde(
        default,
        rename = "retryAfterMs",
        with = "opt_millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_after: Option<Duration>,
}

/// Result of a call that may start a long-running operation.
#[derive(Clone, Debug, PartialEq)]
pub enum LroStart<T> {
    /// Azure accepted the request and runs it asynchronously: poll the handle.
    Started(OperationHandle),
    /// Azure completed the request synchronously.
    Done(T),
}

impl<T> LroStart<T> {
    /// The handle, if the operation is still running.
    pub fn handle(&self) -> Option<&OperationHandle> {
        match self {
            Self::Started(h) => Some(h),
            Self::Done(_) => None,
        }
    }
}

/// Current state of a long-running operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationStatus {
    /// Still running; poll again after `retry_after` (Azure's value, or the configured
    /// default poll interval).
    InProgress {
        /// When to poll next.
        retry_after: Duration,
    },
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed {
        /// Azure's error code.
        code: String,
        /// Azure's error message.
        message: String,
    },
    /// Canceled (by Azure or another client).
    Canceled,
    /// Azure no longer knows the operation: its `Azure-AsyncOperation` URL answers 404 (the
    /// operation's record expired, or the URL stored in a status is stale). Its outcome is
    /// read from the resource itself, as Azure's asynchronous-operations guidance says for a
    /// status that cannot be read
    /// (<https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations>).
    Forgotten,
}

impl OperationStatus {
    /// True for Succeeded, Failed and Canceled.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Self::InProgress { .. })
    }

    /// `Failed`/`Canceled` as an [`AzureError::OperationFailed`]; `None` otherwise.
    pub fn error(&self, kind: OperationKind) -> Option<AzureError> {
        match self {
            Self::Failed { code, message } => Some(AzureError::OperationFailed {
                operation: kind.as_str(),
                code: code.clone(),
                message: message.clone(),
            }),
            Self::Canceled => Some(AzureError::OperationFailed {
                operation: kind.as_str(),
                code: "Canceled".to_owned(),
                message: "the operation was canceled".to_owned(),
            }),
            _ => None,
        }
    }
}

/// Body of an `Azure-AsyncOperation` status resource.
#[derive(Debug, Deserialize)]
struct AsyncOperationBody {
    status: Option<String>,
    error: Option<ArmErrorDetail>,
}

/// The handle of an operation a PUT/DELETE response started, if it started one.
pub(crate) fn handle_from_response(
    kind: OperationKind,
    resp: &Response,
) -> Option<OperationHandle> {
    let retry_after = retry::retry_after(&resp.headers);
    if let Some(url) = resp.header("azure-asyncoperation") {
        return Some(OperationHandle {
            kind,
            style: LroStyle::AsyncOperation,
            url: url.to_owned(),
            retry_after,
        });
    }
    // A Location header on a 200 is not an operation (ARM only uses it with 201/202).
    if matches!(resp.status.as_u16(), 201 | 202)
        && let Some(url) = resp.header("location")
    {
        return Some(OperationHandle {
            kind,
            style: LroStyle::Location,
            url: url.to_owned(),
            retry_after,
        });
    }
    None
}

/// Interprets an `Azure-AsyncOperation` status body. `default_wait` applies when running.
pub(crate) fn parse_async_status(
    body: &[u8],
    retry_after: Duration,
) -> Result<OperationStatus, String> {
    let parsed: AsyncOperationBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let status = parsed
        .status
        .ok_or_else(|| "operation status without a status field".to_owned())?;
    Ok(match status.to_ascii_lowercase().as_str() {
        "succeeded" => OperationStatus::Succeeded,
        "canceled" | "cancelled" => OperationStatus::Canceled,
        "failed" => failed(parsed.error),
        // InProgress, Running, Accepted, Creating, Updating, Deleting, …: not terminal.
        _ => OperationStatus::InProgress { retry_after },
    })
}

/// Interprets a `Location` poll answer (`status`, `body`).
pub(crate) fn parse_location_status(
    status: u16,
    body: &[u8],
    retry_after: Duration,
) -> OperationStatus {
    match status {
        202 => OperationStatus::InProgress { retry_after },
        200..=299 => OperationStatus::Succeeded,
        _ => failed(ArmErrorDetail::parse(body)),
    }
}

fn failed(error: Option<ArmErrorDetail>) -> OperationStatus {
    let error = error.unwrap_or_default();
    OperationStatus::Failed {
        code: error.code.unwrap_or_else(|| "OperationFailed".to_owned()),
        message: error
            .message
            .unwrap_or_else(|| "the operation failed without an error message".to_owned()),
    }
}

impl ArmClient {
    /// Polls a long-running operation once.
    ///
    /// The handle's URL must be on the configured ARM endpoint (it is read back from a CR
    /// status, which is not trusted with the bearer token). Errors are about the poll
    /// itself (throttling, auth, network); a 404 from an `Azure-AsyncOperation` URL means
    /// Azure no longer knows the operation — re-observe the resource with a GET.
    ///
    /// # Errors
    /// `Config` when the handle's URL does not parse or is not on the ARM endpoint; otherwise the
    /// [usual failures](ArmClient#errors-of-every-call) of the GET. `AsyncOperation` style: every
    /// error status is an `Api` error (a 404: Azure no longer knows the operation), and a body
    /// that is not JSON with a `status` is `Decode`. `Location` style: a 4xx other than 401, 403, 408 and 429 is
    /// the operation's own failure, `Ok(OperationStatus::Failed)`. `Failed`/`Canceled` are `Ok`
    /// values either way.
    pub async fn poll(&self, handle: &OperationHandle) -> Result<OperationStatus, AzureError> {
        let t = self.transport();
        let url = t.trusted_url(&handle.url)?;
        let default_wait = self.default_poll_interval();
        let req = Request::get("lro.poll", url);
        match handle.style {
            LroStyle::AsyncOperation => {
                let resp = match t.send(req).await {
                    Ok(resp) => resp,
                    Err(AzureError::Api(e)) if e.status == 404 => {
                        return Ok(OperationStatus::Forgotten);
                    }
                    Err(e) => return Err(e),
                };
                let wait = retry::retry_after(&resp.headers).unwrap_or(default_wait);
                parse_async_status(&resp.body, wait).map_err(|e| AzureError::decode("lro.poll", e))
            }
            LroStyle::Location => match t.send(req).await {
                Ok(resp) => {
                    let wait = retry::retry_after(&resp.headers).unwrap_or(default_wait);
                    Ok(parse_location_status(
                        resp.status.as_u16(),
                        &resp.body,
                        wait,
                    ))
                }
                // A Location URL answers the operation's own failure with an error status;
                // throttling, auth and server trouble are about the poll itself.
                Err(AzureError::Api(e))
                    if matches!(
                        super::error::category_for(e.status, &e.code),
                        ErrorCategory::BadRequest
                            | ErrorCategory::Conflict
                            | ErrorCategory::NotFound
                    ) =>
                {
                    Ok(OperationStatus::Failed {
                        code: e.code,
                        message: e.message,
                    })
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Polls until the operation ends or `max_wait` elapses (for command-line tools and
    /// tests; the reconcile engine polls once per reconcile instead).
    ///
    /// # Errors
    /// As [`poll`](Self::poll), the first failed poll (not retried here). Reaching `max_wait`
    /// is not an error: the last `InProgress` comes back.
    pub async fn wait_for(
        &self,
        handle: &OperationHandle,
        max_wait: Duration,
    ) -> Result<OperationStatus, AzureError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        if let Some(first) = handle.retry_after {
            tokio::time::sleep(first.min(max_wait)).await;
        }
        loop {
            let status = self.poll(handle).await?;
            let OperationStatus::InProgress { retry_after } = status else {
                return Ok(status);
            };
            let now = tokio::time::Instant::now();
            if now + retry_after > deadline {
                return Ok(status);
            }
            tokio::time::sleep(retry_after).await;
        }
    }
}

/// `Option<Duration>` as whole milliseconds.
mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// # Errors
    /// Only the serializer's own error; a wait beyond `u64::MAX` ms is saturated.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    /// # Errors
    /// The deserializer's error when the value is neither `null` nor a non-negative integer
    /// (a status edited by hand).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn async_operation_bodies() {
        let failed = |c: &str, m: &str| OperationStatus::Failed {
            code: c.into(),
            message: m.into(),
        };
        let cases: Vec<(&str, OperationStatus)> = vec![
            (
                r#"{"status":"InProgress"}"#,
                OperationStatus::InProgress { retry_after: WAIT },
            ),
            (
                r#"{"status":"Running","percentComplete":40}"#,
                OperationStatus::InProgress { retry_after: WAIT },
            ),
            (r#"{"status":"Succeeded"}"#, OperationStatus::Succeeded),
            (r#"{"status":"succeeded"}"#, OperationStatus::Succeeded),
            (r#"{"status":"Canceled"}"#, OperationStatus::Canceled),
            (r#"{"status":"Cancelled"}"#, OperationStatus::Canceled),
            (
                r#"{"status":"Failed","error":{"code":"BadArgument","message":"Agent cores Cluster should have at least 12 cores to operate."}}"#,
                failed(
                    "BadArgument",
                    "Agent cores Cluster should have at least 12 cores to operate.",
                ),
            ),
            (
                r#"{"status":"Failed"}"#,
                failed(
                    "OperationFailed",
                    "the operation failed without an error message",
                ),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse_async_status(body.as_bytes(), WAIT).unwrap(),
                want,
                "{body}"
            );
        }
        for bad in ["", "{}", "[1]", r#"{"status":3}"#] {
            assert!(parse_async_status(bad.as_bytes(), WAIT).is_err(), "{bad}");
        }
    }

    #[test]
    fn location_answers() {
        let cases: Vec<(u16, &str, OperationStatus)> = vec![
            (202, "", OperationStatus::InProgress { retry_after: WAIT }),
            (200, "{}", OperationStatus::Succeeded),
            (204, "", OperationStatus::Succeeded),
            (
                400,
                r#"{"error":{"code":"ComputeResourceNotCreated","message":"not in Succeeded state"}}"#,
                OperationStatus::Failed {
                    code: "ComputeResourceNotCreated".into(),
                    message: "not in Succeeded state".into(),
                },
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(
                parse_location_status(status, body.as_bytes(), WAIT),
                want,
                "{status}"
            );
        }
    }

    fn response(status: u16, headers: &[(&'static str, &str)]) -> Response {
        let mut map = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, reqwest::header::HeaderValue::from_str(v).unwrap());
        }
        Response {
            operation: "test",
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: vec![],
        }
    }

    #[test]
    fn handles_from_start_responses() {
        let both = response(
            202,
            &[
                ("Azure-AsyncOperation", "https://arm/op"),
                ("Location", "https://arm/loc"),
                ("Retry-After", "10"),
            ],
        );
        let h = handle_from_response(OperationKind::Delete, &both).unwrap();
        assert_eq!(
            h.style,
            LroStyle::AsyncOperation,
            "preferred when both are sent"
        );
        assert_eq!(h.url, "https://arm/op");
        assert_eq!(h.retry_after, Some(Duration::from_secs(10)));

        let loc = handle_from_response(
            OperationKind::Detach,
            &response(202, &[("Location", "https://arm/loc")]),
        )
        .unwrap();
        assert_eq!((loc.style, loc.retry_after), (LroStyle::Location, None));

        // Synchronous completions: no handle.
        for r in [
            response(200, &[]),
            response(204, &[]),
            response(200, &[("Location", "https://arm/resource")]),
        ] {
            assert!(handle_from_response(OperationKind::Update, &r).is_none());
        }
    }

    #[test]
    fn handle_serialises_for_status() {
        let h = OperationHandle {
            kind: OperationKind::Attach,
            style: LroStyle::AsyncOperation,
            url: "https://management.azure.com/subscriptions/s/providers/x/operationStatuses/1"
                .into(),
            retry_after: Some(Duration::from_millis(1500)),
        };
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["kind"], "Attach");
        assert_eq!(json["style"], "AsyncOperation");
        assert_eq!(json["retryAfterMs"], 1500);
        let back: OperationHandle = serde_json::from_value(json).unwrap();
        assert_eq!(back, h);
        let no_wait: OperationHandle =
            serde_json::from_str(r#"{"kind":"Delete","style":"Location","url":"https://x/y"}"#)
                .unwrap();
        assert_eq!(no_wait.retry_after, None);
        assert!(
            !serde_json::to_string(&no_wait)
                .unwrap()
                .contains("retryAfter")
        );
    }

    #[test]
    fn failed_status_as_error() {
        let s = OperationStatus::Failed {
            code: "BadArgument".into(),
            message: "m".into(),
        };
        let e = s.error(OperationKind::Create).unwrap();
        assert_eq!(e.category(), ErrorCategory::OperationFailed);
        assert_eq!(e.code(), Some("BadArgument"));
        assert!(
            OperationStatus::Succeeded
                .error(OperationKind::Create)
                .is_none()
        );
        assert!(
            OperationStatus::Canceled
                .error(OperationKind::Delete)
                .is_some()
        );
    }
}
