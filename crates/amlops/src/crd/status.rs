//! Status shared by both kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::TlsMode;
use crate::azure::{LroStyle, OperationKind};

/// Where a resource is in its lifecycle: `Pending` (nothing sent to Azure yet, or waiting),
/// `Creating`/`Attaching` (the compute PUT runs), `Updating` (an in-place compute update),
/// `Scaling` (the AKS agent pool changes), `BackingUpTLS` (the `azuremlfessl` certificate is
/// being copied before a detach), `Detaching`/`Reattaching`, `Ready`, `Deleting`.
///
/// Variants carry no doc comments of their own: schemars would turn them into a `oneOf`
/// of constants instead of the `enum` the CRD's printer columns and kstatus read.
#[allow(missing_docs)]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum Phase {
    #[default]
    Pending,
    Creating,
    Attaching,
    Updating,
    Scaling,
    #[serde(rename = "BackingUpTLS")]
    BackingUpTls,
    Detaching,
    Reattaching,
    Ready,
    Deleting,
}

impl Phase {
    /// The value shown in `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Creating => "Creating",
            Self::Attaching => "Attaching",
            Self::Updating => "Updating",
            Self::Scaling => "Scaling",
            Self::BackingUpTls => "BackingUpTLS",
            Self::Detaching => "Detaching",
            Self::Reattaching => "Reattaching",
            Self::Ready => "Ready",
            Self::Deleting => "Deleting",
        }
    }
}

/// One entry of Azure's `provisioningErrors`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ProvisioningError {
    /// Azure's error code.
    pub code: String,
    /// Azure's error message.
    pub message: String,
}

/// TLS facts recorded by the operator; never the certificate or key themselves.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// Mode last applied to Azure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TlsMode>,
    /// Secret in this namespace holding the verified backup of `azuremlfessl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_secret_name: Option<String>,
    /// Expiry of the served certificate (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// SHA-256 fingerprint of the served certificate (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_fingerprint: Option<String>,
    /// Host name the endpoint serves (cname, or the Microsoft-issued name for Auto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// The in-flight ARM long-running operation; survives operator restarts.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    /// Create, Attach, Update, Scale, Detach or Delete.
    pub kind: OperationKind,
    /// `Azure-AsyncOperation` (or `Location`) URL to poll.
    pub url: String,
    /// `AsyncOperation` or `Location`: how to read `url` (`AsyncOperation` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<LroStyle>,
    /// When the operation was started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

/// `status.observedGeneration` before the operator's first status write.
///
/// The CRDs default `status` to `{observedGeneration: -1}` (as Flux's own CRDs do), so that a
/// resource the operator has not looked at yet is InProgress to kstatus (its
/// `observedGeneration` differs from `metadata.generation`) instead of Current, which is what
/// kstatus says of an object without a `status`. The API server adds that default whenever it
/// reads the object (structural defaulting), so every `status` the operator reads has it.
pub const UNOBSERVED_GENERATION: i64 = -1;

/// Reads `status.observedGeneration`, mapping the schema default
/// [`UNOBSERVED_GENERATION`] (any negative value: generations start at 1) to `None`, so that
/// "no generation observed yet" has one representation in the operator's code.
pub(crate) fn observed_generation<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<i64>, D::Error> {
    Ok(Option::<i64>::deserialize(d)?.filter(|g| *g >= 0))
}

/// Observed state of an `InferenceCluster` or `ClusterAttachment`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
// The API server creates this `status` on every object that has none (see
// `UNOBSERVED_GENERATION`); kube's derive inlines this schema as the `status` property.
#[schemars(extend("default" = {"observedGeneration": UNOBSERVED_GENERATION}))]
pub struct ClusterStatus {
    /// Generation of the spec this status describes; -1 until the operator first writes the
    /// status (the CRD default: kstatus then reports InProgress, not Current).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "observed_generation"
    )]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// kstatus conditions: Ready, Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Name of the Azure ML compute (spec.computeName or metadata.name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_name: Option<String>,
    /// ARM id of the compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_id: Option<String>,
    /// ARM id of the AKS managed cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aks_resource_id: Option<String>,
    /// Azure's own provisioningState of the compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// Azure's provisioningErrors of the compute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisioning_errors: Vec<ProvisioningError>,
    /// Kubernetes version of the AKS cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// FQDN of the scoring endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_fqdn: Option<String>,
    /// Whether Azure ML sees the compute as attached (true after any reattach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_attached_compute: Option<bool>,
    /// Node count last observed: the agent pool of an InferenceCluster; all pools of an
    /// attached cluster, when it was attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_count: Option<i32>,
    /// The cluster autoscaler manages the agent pool's node count (InferenceCluster):
    /// `agentCount` is not enforced while it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler_enabled: Option<bool>,
    /// TLS facts and the backup Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
    /// The in-flight ARM operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationStatus>,
    /// Hash of the Azure-relevant spec last applied successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_hash: Option<String>,
    /// Why Azure's clusterPurpose/TLS are known to differ from the spec although the spec
    /// did not change (an adopted compute): the next reconcile reattaches (or waits for the
    /// annotation under `reattachPolicy: Manual`). Cleared by the reattach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reattach_required: Option<String>,
    /// Value of the `amlops.dev/reattach` annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reattach_token: Option<String>,
    /// Failed-compute retries so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Value of the `amlops.dev/renew-certificate` annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_renew_token: Option<String>,
    /// When amlops last asked Azure ML to renew the Microsoft-issued certificate (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_renewed_at: Option<String>,
    /// The expiry warning last given for the served certificate, in days before `notAfter`
    /// (30, 7 or 1); cleared once a certificate with more than 30 days left serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiry_warning: Option<i64>,
}
