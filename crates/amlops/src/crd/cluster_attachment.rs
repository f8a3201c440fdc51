//! `ClusterAttachment`: attach an existing AKS cluster to a workspace.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{NAME_AS_COMPUTE_NAME, NAME_AS_COMPUTE_NAME_MSG, immutable_once_created};
use super::{
    ClusterPurpose, ClusterStatus, ComputeName, CredentialsRef, DeletionPolicy, LoadBalancerSpec,
    TlsSpec, WorkspaceRef,
};

fn default_deletion_policy() -> DeletionPolicy {
    DeletionPolicy::Detach
}
fn default_max_retries() -> i32 {
    3
}

/// Whether a detach + reattach may start on its own.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum ReattachPolicy {
    /// Reattach as soon as a change needs it (default).
    #[default]
    Automatic,
    /// Wait for the `amlops.dev/reattach` annotation (scheduled downtime).
    Manual,
}

/// An existing AKS cluster, attached to an Azure ML workspace as an inference compute.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "amlops.dev",
    version = "v1alpha1",
    kind = "ClusterAttachment",
    namespaced,
    status = "ClusterStatus",
    shortname = "ca",
    category = "amlops",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    // Why it is (not) Ready; the message only with `-o wide`, as cert-manager does.
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Compute", type_ = "string", json_path = ".status.computeName"),
    printcolumn(name = "Purpose", type_ = "string", json_path = ".spec.clusterPurpose"),
    printcolumn(name = "TLS", type_ = "string", json_path = ".spec.tls.mode"),
    printcolumn(name = "Message", type_ = "string", priority = 1, json_path = ".status.conditions[?(@.type==\"Ready\")].message"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(NAME_AS_COMPUTE_NAME).message(NAME_AS_COMPUTE_NAME_MSG),
    validation = Rule::new(immutable_once_created!("workspace")).field_path(".spec.workspace").message(
        "workspace is immutable once Azure has the compute (status.computeId is set): a compute cannot move to another workspace; create a new resource instead"
    ),
    validation = Rule::new(immutable_once_created!("computeName")).field_path(".spec.computeName").message(
        "computeName is immutable once Azure has the compute (status.computeId is set): it cannot be set, changed or removed; create a new resource to use another compute name"
    ),
    validation = Rule::new(immutable_once_created!("aksCluster")).field_path(".spec.aksCluster").message(
        "aksCluster is immutable once Azure has the compute (status.computeId is set): create a new ClusterAttachment to attach another cluster"
    ),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.deletionPolicy != 'Delete'").message(
    "deletionPolicy Delete is not allowed on a ClusterAttachment: the AKS cluster is not amlops' to delete; use Detach (default) or Orphan"
))]
#[x_kube(validation = Rule::new("!(self.tls.mode == 'Auto' && self.loadBalancer.type == 'InternalLoadBalancer')").message(
    "tls.mode Auto is not supported with loadBalancer.type InternalLoadBalancer (Azure ML does not terminate TLS with a Microsoft-issued certificate on an internal load balancer): use tls.mode Custom or loadBalancer.type PublicIp"
))]
pub struct ClusterAttachmentSpec {
    /// Workspace the cluster is attached to (immutable once Azure has the compute).
    pub workspace: WorkspaceRef,
    /// Compute name in the workspace; defaults to `metadata.name` (immutable once Azure has the compute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_name: Option<ComputeName>,
    /// The AKS cluster to attach (immutable once Azure has the compute); must be in the workspace's subscription.
    pub aks_cluster: AksClusterRef,
    /// Description shown in Azure ML studio; updated in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// `FastProd` (default), `DenseProd` or `DevTest`; a change detaches and reattaches.
    #[serde(default)]
    pub cluster_purpose: ClusterPurpose,
    /// Load balancer of the scoring endpoint; updated in place.
    #[serde(default)]
    pub load_balancer: LoadBalancerSpec,
    /// TLS of the scoring endpoint; a change detaches and reattaches (certificate backed up).
    #[serde(default)]
    pub tls: TlsSpec,
    /// `Detach` (default) or `Orphan`: what deleting this resource does in Azure.
    #[serde(default = "default_deletion_policy")]
    pub deletion_policy: DeletionPolicy,
    /// `Automatic` (default) or `Manual`: whether a reattach waits for the annotation.
    #[serde(default)]
    pub reattach_policy: ReattachPolicy,
    /// Secret in this namespace with Azure credentials overriding the operator's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,
    /// How many times a Failed compute is detached and attached again before giving up.
    #[serde(default = "default_max_retries")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 10").message("maxRetries must be between 0 and 10"))]
    pub max_retries: i32,
}

/// The AKS cluster to attach: `resourceId`, or `resourceGroup` + `name` in the workspace's subscription.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.resourceId) != (has(self.resourceGroup) || has(self.name))").message(
    "aksCluster needs either resourceId or resourceGroup + name (not both)"
))]
#[x_kube(validation = Rule::new("has(self.resourceId) || (has(self.resourceGroup) && has(self.name))").message(
    "aksCluster: resourceGroup and name must be set together"
))]
pub struct AksClusterRef {
    /// ARM id of a `Microsoft.ContainerService/managedClusters` resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.matches('^(?i)/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourceGroups/[-a-z0-9._()]{1,90}/providers/Microsoft\\\\.ContainerService/managedClusters/[a-z0-9][-a-z0-9_]{0,62}$')").message(
        "aksCluster.resourceId must be an AKS resource id: /subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.ContainerService/managedClusters/<name>"
    ))]
    pub resource_id: Option<String>,
    /// Resource group of the AKS cluster (in the workspace's subscription).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 90))]
    #[x_kube(validation = Rule::new("self.matches('^[-a-zA-Z0-9._()]{1,90}$') && !self.endsWith('.')").message(
        "aksCluster.resourceGroup must be 1-90 characters (letters, digits, '-', '_', '.', '(' or ')') and must not end with '.'"
    ))]
    pub resource_group: Option<String>,
    /// Name of the AKS cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9]([-a-zA-Z0-9_]{0,61}[a-zA-Z0-9])?$')").message(
        "aksCluster.name must be 1-63 letters, digits, '-' or '_', starting and ending with a letter or digit"
    ))]
    pub name: Option<String>,
}

impl ClusterAttachment {
    /// The compute name: `spec.computeName`, else `metadata.name`.
    pub fn compute_name(&self) -> String {
        ComputeName::or_name(self.spec.compute_name.as_ref(), &self.metadata)
    }
}
