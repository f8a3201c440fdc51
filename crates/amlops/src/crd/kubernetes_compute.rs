//! `KubernetesCompute`: one attachment of a cluster that runs the Azure ML extension to a
//! workspace, in one Kubernetes namespace (an Azure ML compute of type `Kubernetes`;
//! Microsoft's recommended successor of the AKS compute, attached as in
//! <https://learn.microsoft.com/azure/machine-learning/how-to-attach-kubernetes-to-workspace>).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{NAME_AS_COMPUTE_NAME, NAME_AS_COMPUTE_NAME_MSG, immutable_once_recorded};
use super::status::{
    OperationStatus, ProvisioningError, UNOBSERVED_GENERATION, observed_generation,
};
use super::{ComputeName, CredentialsRef, DeletionPolicy, ReattachPolicy, WorkspaceRef};

fn default_deletion_policy() -> DeletionPolicy {
    DeletionPolicy::Detach
}
fn default_max_retries() -> i32 {
    3
}

/// An `AzureMLExtension` in this namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtensionRef {
    /// Name of the `AzureMLExtension` (same namespace as this resource).
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message(
        "extensionRef.name must be the name of an AzureMLExtension in this namespace (a lowercase DNS subdomain)"
    ))]
    pub name: String,
}

/// A cluster whose Azure ML extension is managed elsewhere (not by an `AzureMLExtension`
/// here).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ComputeClusterRef {
    /// ARM id of a `Microsoft.ContainerService/managedClusters` resource.
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.matches('^(?i)/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourceGroups/[-a-z0-9._()]{1,90}/providers/Microsoft\\\\.ContainerService/managedClusters/[a-z0-9][-a-z0-9_]{0,62}$')").message(
        "cluster.resourceId must be an AKS resource id: /subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.ContainerService/managedClusters/<name>"
    ))]
    pub resource_id: String,
    /// Name of the Azure ML extension on that cluster (checked to be `Succeeded` before the
    /// attach; default `azureml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 53))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message(
        "cluster.extensionName must be at most 53 lowercase letters, digits or '-', e.g. azureml"
    ))]
    pub extension_name: Option<String>,
}

/// Managed identity type of the compute.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComputeIdentityType {
    /// An identity Azure creates for the compute.
    SystemAssigned,
    /// The user-assigned identity `userAssignedIdentity`.
    UserAssigned,
}

/// Identity the compute's jobs and deployments use (e.g. AcrPull on the registry, storage
/// access). Azure uses one identity per compute.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.type == 'UserAssigned') == has(self.userAssignedIdentity)").message(
    "identity.type UserAssigned needs userAssignedIdentity (the identity's ARM id); SystemAssigned takes none: set both or remove userAssignedIdentity"
))]
pub struct ComputeIdentity {
    /// `SystemAssigned` or `UserAssigned`.
    #[serde(rename = "type")]
    pub type_: ComputeIdentityType,
    /// ARM id of a `Microsoft.ManagedIdentity/userAssignedIdentities` resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.matches('^(?i)/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourceGroups/[-a-z0-9._()]{1,90}/providers/Microsoft\\\\.ManagedIdentity/userAssignedIdentities/[-a-z0-9_]{3,128}$')").message(
        "identity.userAssignedIdentity must be a user-assigned identity id: /subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>"
    ))]
    pub user_assigned_identity: Option<String>,
}

/// A cluster that runs the Azure ML extension, attached to an Azure ML workspace in one
/// namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "amlops.dev",
    version = "v1alpha1",
    kind = "KubernetesCompute",
    namespaced,
    status = "KubernetesComputeStatus",
    shortname = "kc",
    category = "amlops",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    // Why it is (not) Ready; the message only with `-o wide`, as cert-manager does.
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Compute", type_ = "string", json_path = ".status.computeName"),
    printcolumn(name = "Namespace", type_ = "string", json_path = ".spec.namespace"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.provisioningState"),
    printcolumn(name = "Message", type_ = "string", priority = 1, json_path = ".status.conditions[?(@.type==\"Ready\")].message"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(NAME_AS_COMPUTE_NAME).message(NAME_AS_COMPUTE_NAME_MSG),
    validation = Rule::new(immutable_once_recorded!("computeId", "workspace")).field_path(".spec.workspace").message(
        "workspace is immutable once Azure has the compute (status.computeId is set): a compute cannot move to another workspace; create a new KubernetesCompute"
    ),
    validation = Rule::new(immutable_once_recorded!("computeId", "computeName")).field_path(".spec.computeName").message(
        "computeName is immutable once Azure has the compute (status.computeId is set): it cannot be set, changed or removed; create a new KubernetesCompute to use another compute name"
    ),
    // `namespace` is a CEL reserved word: Kubernetes exposes the field as `__namespace__`.
    validation = Rule::new(immutable_once_recorded!("computeId", "__namespace__")).field_path(".spec.namespace").message(
        "namespace is immutable once Azure has the compute (status.computeId is set): Azure cannot move an attachment to another namespace; create a new KubernetesCompute"
    ),
    validation = Rule::new(immutable_once_recorded!("computeId", "extensionRef")).field_path(".spec.extensionRef").message(
        "extensionRef is immutable once Azure has the compute (status.computeId is set): the compute is attached to that extension's cluster; create a new KubernetesCompute"
    ),
    validation = Rule::new(immutable_once_recorded!("computeId", "cluster")).field_path(".spec.cluster").message(
        "cluster is immutable once Azure has the compute (status.computeId is set): create a new KubernetesCompute to attach another cluster"
    ),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.extensionRef) != has(self.cluster)").message(
    "set exactly one of extensionRef (an AzureMLExtension in this namespace) or cluster (a cluster whose extension is managed elsewhere)"
))]
#[x_kube(validation = Rule::new("!has(self.deletionPolicy) || self.deletionPolicy != 'Delete'").message(
    "deletionPolicy Delete is not allowed on a KubernetesCompute: an attached cluster is detached, never deleted; use Detach (default) or Orphan"
))]
pub struct KubernetesComputeSpec {
    /// Workspace the cluster is attached to (immutable once Azure has the compute).
    pub workspace: WorkspaceRef,
    /// Compute name in the workspace; defaults to `metadata.name` (immutable once Azure has
    /// the compute). Azure's samples keep it to 16 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_name: Option<ComputeName>,
    /// The `AzureMLExtension` (this namespace) whose cluster is attached (immutable once
    /// Azure has the compute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_ref: Option<ExtensionRef>,
    /// Or: a cluster whose extension is managed elsewhere (immutable once Azure has the compute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ComputeClusterRef>,
    /// Kubernetes namespace on the cluster the compute's workloads run in (immutable once
    /// Azure has the compute). Azure does not check that it exists.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message(
        "namespace must be a Kubernetes namespace name: at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit"
    ))]
    #[x_kube(validation = Rule::new("!(self in ['azureml', 'kube-system', 'kube-public', 'kube-node-lease'])").message(
        "namespace may not be azureml (the extension's own namespace) or a kube-* system namespace: use a team namespace such as team-a"
    ))]
    pub namespace: String,
    /// Create the namespace on the cluster when it is missing (default false: a missing
    /// namespace stalls with `NamespaceNotFound`).
    #[serde(default)]
    pub create_namespace: bool,
    /// Identity of the compute; Azure's default (none) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ComputeIdentity>,
    /// Description shown in Azure ML studio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// `Automatic` (default) or `Manual`: whether a change that needs a detach + attach
    /// waits for the `amlops.dev/reattach` annotation.
    #[serde(default)]
    pub reattach_policy: ReattachPolicy,
    /// `Detach` (default) or `Orphan`: what deleting this resource does in Azure.
    #[serde(default = "default_deletion_policy")]
    pub deletion_policy: DeletionPolicy,
    /// Secret in this namespace with Azure credentials overriding the operator's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,
    /// How many times a Failed compute is detached and attached again before giving up.
    #[serde(default = "default_max_retries")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 10").message("maxRetries must be between 0 and 10"))]
    pub max_retries: i32,
}

impl KubernetesCompute {
    /// The compute name: `spec.computeName`, else `metadata.name`.
    pub fn compute_name(&self) -> String {
        ComputeName::or_name(self.spec.compute_name.as_ref(), &self.metadata)
    }
}

/// Observed state of a `KubernetesCompute`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
// The API server creates this `status` on every object that has none (see
// `UNOBSERVED_GENERATION`).
#[schemars(extend("default" = {"observedGeneration": UNOBSERVED_GENERATION}))]
pub struct KubernetesComputeStatus {
    /// Generation of the spec this status describes; -1 until the operator first writes the
    /// status (kstatus then reports InProgress, not Current).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "observed_generation"
    )]
    pub observed_generation: Option<i64>,
    /// kstatus conditions: Ready, Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Name of the Azure ML compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_name: Option<String>,
    /// ARM id of the compute; recorded before the first attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_id: Option<String>,
    /// ARM id of the attached cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Azure's provisioningState of the compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// Azure's provisioningErrors of the compute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisioning_errors: Vec<ProvisioningError>,
    /// Principal id of the compute's system-assigned identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// The in-flight ARM operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationStatus>,
    /// Hash of the identity and description last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_hash: Option<String>,
    /// Value of the `amlops.dev/reattach` annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reattach_token: Option<String>,
    /// Failed-compute retries so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// A detach + attach is under way and its detach is not confirmed yet (recorded before
    /// the detach is sent, so that a restarted operator neither skips nor repeats it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reattaching: Option<bool>,
    /// Azure refused an in-place change (identity, description) with this message: the
    /// change is applied by a detach + attach instead (under `reattachPolicy: Manual`, once
    /// the `amlops.dev/reattach` annotation changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reattach_required: Option<String>,
}
