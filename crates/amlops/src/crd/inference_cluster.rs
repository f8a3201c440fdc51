//! `InferenceCluster`: Azure ML creates a new AKS cluster for a workspace.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{NAME_AS_COMPUTE_NAME, NAME_AS_COMPUTE_NAME_MSG, immutable_once_created};
use super::{
    ClusterPurpose, ClusterStatus, ComputeName, CredentialsRef, DeletionPolicy, LoadBalancerSpec,
    TlsSpec, WorkspaceRef,
};

fn default_agent_count() -> i32 {
    3
}
fn default_vm_size() -> String {
    "Standard_D3_v2".to_string()
}
fn default_deletion_policy() -> DeletionPolicy {
    DeletionPolicy::Delete
}
fn default_max_retries() -> i32 {
    3
}

/// An AKS cluster that Azure ML creates and manages as an inference compute of a workspace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "amlops.dev",
    version = "v1alpha1",
    kind = "InferenceCluster",
    namespaced,
    status = "ClusterStatus",
    shortname = "ic",
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
    validation = Rule::new(immutable_once_created!("vmSize")).field_path(".spec.vmSize").message(
        "vmSize is immutable once Azure has the compute (status.computeId is set): Azure ML cannot change the VM size of a cluster; create a new InferenceCluster"
    ),
    validation = Rule::new(immutable_once_created!("location")).field_path(".spec.location").message(
        "location is immutable once Azure has the compute (status.computeId is set): create a new InferenceCluster to use another region"
    ),
    validation = Rule::new(immutable_once_created!("network")).field_path(".spec.network").message(
        "network is immutable once Azure has the compute (status.computeId is set): the cluster's virtual network cannot change; create a new InferenceCluster"
    ),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.clusterPurpose != 'FastProd' || self.agentCount >= 3").message(
    "clusterPurpose FastProd needs agentCount >= 3 (Azure ML requires at least 3 nodes for production): raise agentCount or use clusterPurpose DevTest"
))]
#[x_kube(validation = Rule::new("!(self.tls.mode == 'Auto' && self.loadBalancer.type == 'InternalLoadBalancer')").message(
    "tls.mode Auto is not supported with loadBalancer.type InternalLoadBalancer (Azure ML does not terminate TLS with a Microsoft-issued certificate on an internal load balancer): use tls.mode Custom or loadBalancer.type PublicIp"
))]
pub struct InferenceClusterSpec {
    /// Workspace that owns the compute (immutable once Azure has the compute).
    pub workspace: WorkspaceRef,
    /// Compute name in the workspace; defaults to `metadata.name` (immutable once Azure has the compute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_name: Option<ComputeName>,
    /// Azure region of the AKS cluster (`computeLocation`); defaults to the workspace's (immutable once Azure has the compute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 40))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]+$')").message(
        "location must be an Azure region name such as eastus (lowercase letters and digits, no spaces)"
    ))]
    pub location: Option<String>,
    /// Description shown in Azure ML studio; updated in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Number of nodes; scaling changes the AKS agent pool in place.
    #[serde(default = "default_agent_count")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message(
        "agentCount must be between 1 and 1000"
    ))]
    pub agent_count: i32,
    /// VM size of the nodes (immutable once Azure has the compute: Azure ML cannot change it).
    #[serde(default = "default_vm_size")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z][A-Za-z0-9_]*$')").message(
        "vmSize must be an Azure VM size name such as Standard_D3_v2"
    ))]
    pub vm_size: String,
    /// `FastProd` (default), `DenseProd` or `DevTest`; a change detaches and reattaches.
    #[serde(default)]
    pub cluster_purpose: ClusterPurpose,
    /// Custom virtual network; all-or-nothing (immutable once Azure has the compute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    /// Load balancer of the scoring endpoint; updated in place.
    #[serde(default)]
    pub load_balancer: LoadBalancerSpec,
    /// TLS of the scoring endpoint; a change detaches and reattaches (certificate backed up).
    #[serde(default)]
    pub tls: TlsSpec,
    /// `Delete` (default), `Detach` or `Orphan`: what deleting this resource does in Azure.
    #[serde(default = "default_deletion_policy")]
    pub deletion_policy: DeletionPolicy,
    /// Secret in this namespace with Azure credentials overriding the operator's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,
    /// How many times a Failed compute is deleted and created again before giving up.
    #[serde(default = "default_max_retries")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 10").message("maxRetries must be between 0 and 10"))]
    pub max_retries: i32,
}

/// Custom virtual network of a created cluster (Azure CNI). Give `subnetId` or
/// `vnetResourceGroup` + `vnetName` + `subnetName`, and all three address fields.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.serviceCidr) && has(self.dnsServiceIP) && has(self.dockerBridgeCidr)").message(
    "network is all-or-nothing: set serviceCidr, dnsServiceIP and dockerBridgeCidr together with the subnet, or remove network"
))]
#[x_kube(validation = Rule::new("has(self.subnetId) != (has(self.vnetResourceGroup) || has(self.vnetName) || has(self.subnetName))").message(
    "network needs either subnetId or vnetResourceGroup + vnetName + subnetName (not both)"
))]
#[x_kube(validation = Rule::new("has(self.subnetId) || (has(self.vnetResourceGroup) && has(self.vnetName) && has(self.subnetName))").message(
    "network: vnetResourceGroup, vnetName and subnetName must be set together"
))]
pub struct NetworkSpec {
    /// ARM id of the subnet the nodes use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.matches('^(?i)/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\\\.Network/virtualNetworks/[^/]+/subnets/[^/]+$')").message(
        "network.subnetId must be a subnet resource id: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>"
    ))]
    pub subnet_id: Option<String>,
    /// Resource group of the virtual network (with `vnetName` and `subnetName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 90))]
    #[x_kube(validation = Rule::new("self.matches('^[-a-zA-Z0-9._()]{1,90}$')").message(
        "network.vnetResourceGroup must be a resource group name (1-90 letters, digits, '-', '_', '.', '(' or ')')"
    ))]
    pub vnet_resource_group: Option<String>,
    /// Name of the virtual network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9][a-zA-Z0-9._-]*$')").message(
        "network.vnetName must be 1-64 letters, digits, '.', '-' or '_', starting with a letter or digit"
    ))]
    pub vnet_name: Option<String>,
    /// Name of the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 80))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9][a-zA-Z0-9._-]*$')").message(
        "network.subnetName must be 1-80 letters, digits, '.', '-' or '_', starting with a letter or digit"
    ))]
    pub subnet_name: Option<String>,
    /// Kubernetes service address range (CIDR), must not overlap the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 18))]
    #[x_kube(validation = Rule::new(CIDR_RULE).message(
        "network.serviceCidr must be an IPv4 CIDR such as 10.0.0.0/16 (octets 0-255, prefix 0-32)"
    ))]
    pub service_cidr: Option<String>,
    /// Cluster DNS service address, inside `serviceCidr`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "dnsServiceIP"
    )]
    #[schemars(length(max = 15))]
    #[x_kube(validation = Rule::new(IPV4_RULE).message(
        "network.dnsServiceIP must be an IPv4 address such as 10.0.0.10 (octets 0-255)"
    ))]
    pub dns_service_ip: Option<String>,
    /// Docker bridge address range (CIDR), must not overlap `serviceCidr` or the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 18))]
    #[x_kube(validation = Rule::new(CIDR_RULE).message(
        "network.dockerBridgeCidr must be an IPv4 CIDR such as 172.17.0.1/16 (octets 0-255, prefix 0-32)"
    ))]
    pub docker_bridge_cidr: Option<String>,
}

const IPV4_RULE: &str = "self.matches('^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$')";
const CIDR_RULE: &str = "self.matches('^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$')";

impl InferenceCluster {
    /// The compute name: `spec.computeName`, else `metadata.name`.
    pub fn compute_name(&self) -> String {
        ComputeName::or_name(self.spec.compute_name.as_ref(), &self.metadata)
    }
}
