//! One verdict for every Azure failure: a failed read or write, and a
//! compute that Azure turned `Failed`, end in exactly one of three places — try the same
//! call again after a while, wait for Azure to finish something else, or stop with a
//! `Stalled` reason a person can act on. Pure: `(error, context) → Verdict`.

use std::time::Duration;

use crate::azure::{AzureError, ErrorCategory, ResourceId};

use super::versions::MinorRange;

/// Why the operator stopped and needs a person: the `Stalled` condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    /// Condition reason (`ComputeExists`, `AuthorizationFailed`, …).
    pub reason: &'static str,
    /// What happened and what to do about it.
    pub message: String,
}

impl Stall {
    /// A stall with `reason` and `message`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The call that failed, as the verdict needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// A GET (compute, workspace, managed cluster, SKUs, versions, computes list) or the
    /// poll of a long-running operation.
    Read,
    /// The compute PUT that creates or attaches (also a reattach).
    Provision,
    /// The GET-modify-PUT of an existing compute (load balancer, description).
    Update,
    /// A DELETE: compute (`Delete` or `Detach`) or managed cluster.
    Delete,
    /// The agent pool PUT that sets the node count.
    Scale,
    /// `listClusterUserCredential` / `listClusterAdminCredential` (TLS backup).
    ListCredentials,
}

impl CallKind {
    /// Every kind, for table tests.
    pub const ALL: [Self; 6] = [
        Self::Read,
        Self::Provision,
        Self::Update,
        Self::Delete,
        Self::Scale,
        Self::ListCredentials,
    ];
}

/// A failed call: what it was and the ARM resource it addressed.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// Kind of call.
    pub kind: CallKind,
    /// ARM id of the resource addressed (for subscription-level reads, the subscription
    /// scope `/subscriptions/{id}`).
    pub resource: &'a str,
}

/// What to do about a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Azure failed or throttled: the same call may succeed later unchanged. Try again after
    /// this long (Azure's `Retry-After` when it sent one).
    Retry(Duration),
    /// Azure is busy with the resource (409 `OperationNotAllowed`): look again after this long.
    Wait(Duration),
    /// Retrying cannot help: stop until the user changes something.
    Stall(Stall),
}

impl Verdict {
    /// Static label for metrics and reports.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Retry(_) => "azure_retry",
            Self::Wait(_) => "azure_wait",
            Self::Stall(_) => "azure_stall",
        }
    }

    /// When to reconcile again (`None` for a stall: only a change of the object helps).
    pub fn after(&self) -> Option<Duration> {
        match self {
            Self::Retry(d) | Self::Wait(d) => Some(*d),
            Self::Stall(_) => None,
        }
    }
}

/// The built-in role that grants `call` and the scope to assign it at
/// (docs/authentication.md, "Azure roles the identity needs").
pub fn required_role(call: Call<'_>) -> (&'static str, String) {
    let Ok(id) = call.resource.parse::<ResourceId>() else {
        // Subscription-level reads (VM sizes, Kubernetes versions).
        return (
            "Reader (or the amlops-reads custom role)",
            call.resource.to_string(),
        );
    };
    let rg = format!(
        "/subscriptions/{}/resourceGroups/{}",
        id.subscription(),
        id.resource_group()
    );
    if id
        .namespace()
        .eq_ignore_ascii_case("Microsoft.MachineLearningServices")
    {
        // The workspace itself, or a compute of it: the role is assigned on the workspace.
        let workspace = if id.is_type("Microsoft.MachineLearningServices", "workspaces") {
            id.to_string()
        } else {
            id.parent().map(|p| p.to_string()).unwrap_or_default()
        };
        return ("AzureML Compute Operator", workspace);
    }
    match call.kind {
        CallKind::Scale | CallKind::Delete => ("Azure Kubernetes Service Contributor Role", rg),
        _ => (
            "Azure Kubernetes Service Cluster User Role (on an attached cluster; Azure Kubernetes Service Contributor Role on the resource group of a cluster Azure ML created)",
            id.to_string(),
        ),
    }
}

/// The verdict on a failed call. `fallback` is the wait when Azure sent no `Retry-After`.
///
/// | category | verdict |
/// |---|---|
/// | 401, 403, no token | `Stall(AuthorizationFailed)` naming the operation, the scope and the role |
/// | 404 of a workspace / managed cluster | `Stall(WorkspaceNotFound / AksClusterNotFound)` |
/// | 404 of anything else | `Retry` (the next observation sees what is there) |
/// | 409 `MissingSubscriptionRegistration` | `Stall(ProviderNotRegistered)` |
/// | 409 / `OperationNotAllowed` | `Wait(Retry-After)` |
/// | 429, 5xx, timeouts, dropped connections | `Retry(Retry-After)` |
/// | 400 "Supported versions are between A - B" | `Stall(UnsupportedKubernetesVersion)` |
/// | other 4xx | `Stall(AzureRejected)` with Azure's code and message |
/// | an answer that cannot be decoded | `Retry` |
/// | invalid configuration (bad id, foreign poll URL) | `Stall(InvalidConfiguration)` |
pub fn verdict(e: &AzureError, call: Call<'_>, fallback: Duration) -> Verdict {
    let after = e.retry_after().unwrap_or(fallback);
    let azure_says = || {
        let code = e.code().unwrap_or("");
        let message = e.message().unwrap_or("");
        match (code.is_empty(), message.is_empty()) {
            (true, _) => e.to_string(),
            (false, true) => code.to_string(),
            (false, false) => format!("{code}: {message}"),
        }
    };
    match e.category() {
        ErrorCategory::Unauthorized | ErrorCategory::Forbidden => {
            let (role, scope) = required_role(call);
            let op = operation(e);
            let cause = if e.category() == ErrorCategory::Forbidden {
                format!(
                    "Azure refused {op} on {} (HTTP 403): {}",
                    call.resource,
                    azure_says()
                )
            } else {
                format!("Azure did not accept the operator's identity for {op}: {e}")
            };
            Verdict::Stall(Stall::new(
                "AuthorizationFailed",
                format!(
                    "{cause}. Assign role {role} at scope {scope} to the operator's identity (docs/authentication.md), then change the resource (or its amlops.dev/reattach annotation) to try again"
                ),
            ))
        }
        ErrorCategory::NotFound => match call.resource.parse::<ResourceId>() {
            Ok(id) if id.is_type("Microsoft.MachineLearningServices", "workspaces") => {
                Verdict::Stall(Stall::new(
                    "WorkspaceNotFound",
                    format!(
                        "workspace {} not found in resource group {} of subscription {}: check spec.workspace",
                        id.name(),
                        id.resource_group(),
                        id.subscription()
                    ),
                ))
            }
            Ok(id) if id.is_type("Microsoft.ContainerService", "managedClusters") => {
                Verdict::Stall(Stall::new(
                    "AksClusterNotFound",
                    format!(
                        "AKS cluster {} not found in resource group {}: {}",
                        id.name(),
                        id.resource_group(),
                        azure_says()
                    ),
                ))
            }
            _ => Verdict::Retry(after),
        },
        // ARM answers 409 for a subscription not registered with the resource provider;
        // waiting does not register it.
        ErrorCategory::Conflict if e.code() == Some("MissingSubscriptionRegistration") => {
            Verdict::Stall(Stall::new(
                "ProviderNotRegistered",
                format!(
                    "Azure refused {} on {}: {}. Register the resource provider it names (az provider register --namespace <namespace>), then change the resource or wait for the resync",
                    operation(e),
                    call.resource,
                    azure_says()
                ),
            ))
        }
        ErrorCategory::Conflict => Verdict::Wait(after),
        ErrorCategory::Throttled
        | ErrorCategory::Transient
        | ErrorCategory::Timeout
        | ErrorCategory::OperationFailed
        | ErrorCategory::Decode => Verdict::Retry(after),
        ErrorCategory::BadRequest
            if MinorRange::from_azure_message(e.message().unwrap_or("")).is_some() =>
        {
            Verdict::Stall(Stall::new(
                "UnsupportedKubernetesVersion",
                format!(
                    "Azure refused {} on {}: {}. Attach a cluster whose Kubernetes minor is in that range (`az aks upgrade`); the operator checks it before the next attempt",
                    operation(e),
                    call.resource,
                    azure_says()
                ),
            ))
        }
        ErrorCategory::BadRequest => Verdict::Stall(Stall::new(
            "AzureRejected",
            format!(
                "Azure refused {} on {}: {}. Fix the resource; nothing more is sent until it changes",
                operation(e),
                call.resource,
                azure_says()
            ),
        )),
        ErrorCategory::Config => Verdict::Stall(Stall::new(
            "InvalidConfiguration",
            format!("{e}: fix the operator's Azure configuration or the resource"),
        )),
    }
}

/// The static operation name an error carries (`compute.put`, …).
fn operation(e: &AzureError) -> &'static str {
    match e {
        AzureError::Api(a) => a.operation,
        AzureError::OperationFailed { operation, .. }
        | AzureError::Connection { operation, .. }
        | AzureError::Timeout { operation, .. }
        | AzureError::RateLimited { operation, .. }
        | AzureError::Decode { operation, .. } => operation,
        AzureError::Credential { .. } => "obtaining an access token",
        AzureError::Config(_) => "the request",
    }
}

/// What a `Failed` compute's `provisioningErrors` say about retrying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProvisioningFailure {
    /// A cause that a retry reproduces (the spec or the cluster must change first).
    Deterministic(Stall),
    /// Possibly passing (Azure's own failure, an unknown cause): bounded retry.
    Transient,
}

/// Classify a `Failed` compute from its `provisioningErrors` (code, message), by the
/// wording Azure uses (quota and VM size wording as AKS reports them).
pub fn classify_provisioning(compute: &str, errors: &[(String, String)]) -> ProvisioningFailure {
    const CAUSES: [(&str, &str, &str); 6] = [
        (
            "kubernetes version",
            "UnsupportedKubernetesVersion",
            "upgrade the AKS cluster to a supported version (`az aks upgrade`)",
        ),
        (
            "machine(s) are required",
            "InsufficientNodes",
            "raise the node count (agentCount, or the AKS cluster's pools) or use clusterPurpose DevTest",
        ),
        (
            "should have at least",
            "InsufficientVCPUs",
            "raise agentCount, pick a larger vmSize, or use clusterPurpose DevTest",
        ),
        (
            "vm size",
            "VMSizeNotAllowed",
            "pick a VM size offered to the subscription in this region (`az vm list-skus -l <region>`)",
        ),
        (
            "quota",
            "QuotaExceeded",
            "request more vCPU quota for the region, or use fewer or smaller nodes",
        ),
        (
            "insufficientvcpuquota",
            "QuotaExceeded",
            "request more vCPU quota for the region, or use fewer or smaller nodes",
        ),
    ];
    for (code, message) in errors {
        let text = format!("{code} {message}").to_ascii_lowercase();
        if let Some((_, reason, fix)) = CAUSES.iter().find(|(needle, _, _)| {
            text.contains(needle)
                && (*needle != "kubernetes version" || text.contains("not supported"))
        }) {
            return ProvisioningFailure::Deterministic(Stall::new(
                reason,
                format!(
                    "Azure could not provision compute {compute}: {code}: {message}. A retry would fail the same way: {fix}; the operator tries again when the resource changes"
                ),
            ));
        }
    }
    ProvisioningFailure::Transient
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::error::{ApiError, RequestIds};

    const WS: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws";
    const AKS: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/shared";

    fn api(status: u16, code: &str, retry_after: Option<u64>) -> AzureError {
        ApiError::from_response(
            "compute.put",
            reqwest::StatusCode::from_u16(status).unwrap(),
            format!(r#"{{"error":{{"code":"{code}","message":"m-{status}"}}}}"#).as_bytes(),
            RequestIds::default(),
            retry_after.map(Duration::from_secs),
        )
        .into()
    }

    /// The resource each kind of call addresses in the table.
    fn resource(kind: CallKind) -> String {
        match kind {
            CallKind::Read | CallKind::Provision | CallKind::Update | CallKind::Delete => {
                format!("{WS}/computes/aks1")
            }
            CallKind::Scale | CallKind::ListCredentials => AKS.to_string(),
        }
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        Retry(u64),
        Wait(u64),
        Stall(&'static str),
    }

    fn got(v: &Verdict) -> Want {
        match v {
            Verdict::Retry(d) => Want::Retry(d.as_secs()),
            Verdict::Wait(d) => Want::Wait(d.as_secs()),
            Verdict::Stall(s) => Want::Stall(s.reason),
        }
    }

    /// Every error category × every kind of call.
    #[test]
    fn verdict_table() {
        let fallback = Duration::from_secs(15);
        let rows: Vec<(&str, AzureError, Want)> = vec![
            (
                "401",
                api(401, "InvalidAuthenticationToken", None),
                Want::Stall("AuthorizationFailed"),
            ),
            (
                "403",
                api(403, "AuthorizationFailed", None),
                Want::Stall("AuthorizationFailed"),
            ),
            (
                "no token",
                AzureError::Credential {
                    credential: "workload-identity",
                    reason: "r".into(),
                },
                Want::Stall("AuthorizationFailed"),
            ),
            (
                "409 busy",
                api(409, "OperationNotAllowed", Some(7)),
                Want::Wait(7),
            ),
            (
                "409 busy, no Retry-After",
                api(409, "OperationNotAllowed", None),
                Want::Wait(15),
            ),
            (
                "409 provider not registered",
                api(409, "MissingSubscriptionRegistration", None),
                Want::Stall("ProviderNotRegistered"),
            ),
            (
                "400 OperationNotAllowed",
                api(400, "OperationNotAllowed", None),
                Want::Wait(15),
            ),
            (
                "429",
                api(429, "TooManyRequests", Some(40)),
                Want::Retry(40),
            ),
            (
                "500",
                api(500, "InternalServerError", None),
                Want::Retry(15),
            ),
            (
                "503",
                api(503, "ServiceUnavailable", Some(3)),
                Want::Retry(3),
            ),
            (
                "client rate limit",
                AzureError::RateLimited {
                    operation: "compute.get",
                    retry_after: Duration::from_secs(9),
                },
                Want::Retry(9),
            ),
            (
                "dropped connection",
                AzureError::Connection {
                    operation: "compute.get",
                    reason: "reset".into(),
                },
                Want::Retry(15),
            ),
            (
                "timeout",
                AzureError::Timeout {
                    operation: "compute.get",
                    after: Duration::from_secs(30),
                },
                Want::Retry(15),
            ),
            (
                "undecodable",
                AzureError::decode("compute.get", "eof"),
                Want::Retry(15),
            ),
            (
                "operation failed",
                AzureError::OperationFailed {
                    operation: "Create",
                    code: "c".into(),
                    message: "m".into(),
                },
                Want::Retry(15),
            ),
            (
                "400",
                api(400, "BadRequest", None),
                Want::Stall("AzureRejected"),
            ),
            (
                "422",
                api(422, "InvalidParameter", None),
                Want::Stall("AzureRejected"),
            ),
            ("404", api(404, "ResourceNotFound", None), Want::Retry(15)),
            (
                "bad configuration",
                AzureError::Config("x".into()),
                Want::Stall("InvalidConfiguration"),
            ),
        ];
        for (what, err, want) in &rows {
            for kind in CallKind::ALL {
                let r = resource(kind);
                let v = verdict(err, Call { kind, resource: &r }, fallback);
                // A compute that is not there yet is looked at again; a managed cluster
                // that is not there is the user's to fix.
                let want = match (*what, r == AKS) {
                    ("404", true) => &Want::Stall("AksClusterNotFound"),
                    _ => want,
                };
                assert_eq!(&got(&v), want, "{what} on {kind:?}");
            }
        }
    }

    #[test]
    fn not_found_of_workspace_or_cluster_stalls() {
        let e = api(404, "ResourceNotFound", None);
        let f = Duration::from_secs(1);
        for kind in CallKind::ALL {
            let v = verdict(&e, Call { kind, resource: WS }, f);
            assert_eq!(got(&v), Want::Stall("WorkspaceNotFound"), "{kind:?}");
            let v = verdict(
                &e,
                Call {
                    kind,
                    resource: AKS,
                },
                f,
            );
            assert_eq!(got(&v), Want::Stall("AksClusterNotFound"), "{kind:?}");
        }
    }

    #[test]
    fn authorization_failures_name_operation_scope_and_role() {
        let e = api(403, "AuthorizationFailed", None);
        let compute = format!("{WS}/computes/aks1");
        let cases = [
            (
                CallKind::Provision,
                compute.as_str(),
                "AzureML Compute Operator",
                WS.to_string(),
            ),
            (
                CallKind::Read,
                WS,
                "AzureML Compute Operator",
                WS.to_string(),
            ),
            (
                CallKind::Scale,
                AKS,
                "Azure Kubernetes Service Contributor Role",
                "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/aks-rg"
                    .to_string(),
            ),
            (
                CallKind::ListCredentials,
                AKS,
                "Cluster User Role",
                AKS.to_string(),
            ),
            (
                CallKind::Read,
                "/subscriptions/00000000-0000-0000-0000-000000000000",
                "Reader",
                "/subscriptions/00000000-0000-0000-0000-000000000000".to_string(),
            ),
        ];
        for (kind, resource, role, scope) in cases {
            let Verdict::Stall(s) = verdict(&e, Call { kind, resource }, Duration::ZERO) else {
                panic!("{kind:?} must stall");
            };
            assert!(
                s.message.contains("compute.put"),
                "operation: {}",
                s.message
            );
            assert!(s.message.contains(role), "role {role}: {}", s.message);
            assert!(
                s.message.contains(&format!("scope {scope}")),
                "scope {scope}: {}",
                s.message
            );
            assert!(
                s.message.contains("m-403"),
                "Azure's message: {}",
                s.message
            );
        }
    }

    #[test]
    fn provisioning_errors_table() {
        let cases: [(&str, &str, Option<&str>); 8] = [
            (
                "BadRequest",
                "Specified kubernetes version 1.24.9 is not supported. Supported versions are between 1.29.0 - 1.31.2",
                Some("UnsupportedKubernetesVersion"),
            ),
            (
                "BadArgument",
                "At least 3 machine(s) are required for cluster with purpose 'FastProd'. Available machine(s) : 2",
                Some("InsufficientNodes"),
            ),
            (
                "BadArgument",
                "Agent cores Cluster should have at least 12 cores to operate.",
                Some("InsufficientVCPUs"),
            ),
            (
                "BadRequest",
                "The VM size of AgentPoolProfile:agentpool is not allowed in your subscription in location 'eastus'.",
                Some("VMSizeNotAllowed"),
            ),
            (
                "QuotaExceeded",
                "Operation could not be completed as it results in exceeding approved Total Regional Cores quota.",
                Some("QuotaExceeded"),
            ),
            (
                "ErrCode_InsufficientVCPUQuota",
                "Insufficient vcpu quota requested 2, remaining 0 for family StandardDasv7Family for region eastus.",
                Some("QuotaExceeded"),
            ),
            (
                "InternalServerError",
                "An internal server error occurred.",
                None,
            ),
            ("Canceled", "the operation was canceled", None),
        ];
        for (code, message, want) in cases {
            let got = classify_provisioning("aks1", &[(code.into(), message.into())]);
            match (want, got) {
                (None, ProvisioningFailure::Transient) => {}
                (Some(reason), ProvisioningFailure::Deterministic(s)) => {
                    assert_eq!(s.reason, reason, "{message}");
                    assert!(s.message.contains(message), "Azure's words: {}", s.message);
                }
                (want, got) => panic!("{message}: want {want:?}, got {got:?}"),
            }
        }
        assert_eq!(
            classify_provisioning("aks1", &[]),
            ProvisioningFailure::Transient
        );
    }
}
