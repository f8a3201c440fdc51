//! `AzureMLExtension`: the Azure ML cluster extension (`Microsoft.AzureML.Kubernetes`) on one
//! AKS cluster, its inference router and TLS, and the cluster's `InstanceType` objects
//! (<https://learn.microsoft.com/azure/machine-learning/how-to-deploy-kubernetes-extension>).
//!
//! The admission rules are the checks `az k8s-extension create` makes before it sends
//! anything (Azure/azure-cli-extensions `partner_extensions/AzureMLKubernetes.py`) and the
//! instance-type rules of Azure ML's documentation (`how-to-manage-kubernetes-instance-types`),
//! so that a spec the API server accepts is one the extension body builder
//! ([`crate::azure::AzureMlExtensionSpec::build`]) accepts too.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::immutable_once_recorded;
use super::status::{
    OperationStatus, ProvisioningError, UNOBSERVED_GENERATION, observed_generation,
};
use super::{CredentialsRef, SecretRef};

fn default_max_retries() -> i32 {
    3
}
fn yes() -> bool {
    true
}

/// The AKS cluster the extension is installed on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionClusterRef {
    /// ARM id of a `Microsoft.ContainerService/managedClusters` resource.
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.matches('^(?i)/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourceGroups/[-a-z0-9._()]{1,90}/providers/Microsoft\\\\.ContainerService/managedClusters/[a-z0-9][-a-z0-9_]{0,62}$')").message(
        "cluster.resourceId must be an AKS resource id: /subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.ContainerService/managedClusters/<name>"
    ))]
    pub resource_id: String,
}

/// Training and batch inference (`enableTraining`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
pub struct TrainingSpec {
    /// Run Azure ML training jobs and batch endpoints on the cluster.
    #[serde(default)]
    pub enabled: bool,
}

/// Service type of the inference router (`inferenceRouterServiceType`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum RouterServiceType {
    /// A load balancer in front of `azureml-fe` (public, or internal with `internalLoadBalancer`).
    #[default]
    LoadBalancer,
    /// A node port on every node.
    NodePort,
    /// Reachable inside the cluster only (bring your own ingress).
    #[serde(rename = "ClusterIP")]
    ClusterIp,
}

impl RouterServiceType {
    /// The value in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoadBalancer => "LoadBalancer",
            Self::NodePort => "NodePort",
            Self::ClusterIp => "ClusterIP",
        }
    }
}

/// Whether the inference router serves HTTPS.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum ExtensionTlsMode {
    /// HTTPS with the certificate and key of `secretRef` for `cname` (default).
    #[default]
    Enabled,
    /// HTTP only (`allowInsecureConnections=True`).
    Disabled,
}

/// How the certificate and key reach the cluster.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum TlsDelivery {
    /// Sent base64-encoded as the extension's protected settings `scoringFe.sslCert` and
    /// `scoringFe.sslKey` (default; needs no access to the cluster's API server).
    #[default]
    ProtectedSettings,
    /// Copied to an Opaque Secret (`cert.pem`, `key.pem`) in namespace `azureml` of the
    /// cluster, named like `secretRef`, and sent as `sslSecret` (needs the cluster's API server).
    ClusterSecret,
}

/// TLS of the inference router. A change is an in-place update of the extension.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.mode) && self.mode == 'Disabled') || (has(self.cname) && has(self.secretRef))").message(
    "inference.tls.mode Enabled needs cname (the host name clients use, as in the certificate) and secretRef (a Secret in this namespace with the certificate and key); to serve plain HTTP set mode: Disabled"
))]
#[x_kube(validation = Rule::new("!has(self.mode) || self.mode != 'Disabled' || (!has(self.cname) && !has(self.secretRef))").message(
    "inference.tls.mode is Disabled: remove cname and secretRef, or set mode: Enabled"
))]
pub struct ExtensionTlsSpec {
    /// `Enabled` (default) or `Disabled` (HTTP only).
    #[serde(default)]
    pub mode: ExtensionTlsMode,
    /// Host name clients use to reach the router (`sslCname`); must match the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^([a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?\\\\.)+[a-zA-Z]{2,63}$')").message(
        "inference.tls.cname must be a fully qualified host name such as scoring.contoso.com"
    ))]
    pub cname: Option<String>,
    /// Secret in this namespace with the certificate chain and key (type kubernetes.io/tls
    /// with `tls.crt`/`tls.key`, or Opaque with `cert.pem`/`key.pem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// `ProtectedSettings` (default) or `ClusterSecret`.
    #[serde(default)]
    pub delivery: TlsDelivery,
}

/// Real-time inference (`enableInference`) and its router, `azureml-fe`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.internalLoadBalancer) || !self.internalLoadBalancer || !has(self.routerServiceType) || self.routerServiceType == 'LoadBalancer'").message(
    "inference.internalLoadBalancer applies only to routerServiceType LoadBalancer (Azure's CLI: \"When using nodePort as inferenceRouterServiceType, no need to specify internalLoadBalancerProvider\"): remove it or use LoadBalancer"
))]
#[x_kube(validation = Rule::new("!has(self.enabled) || !self.enabled || has(self.tls)").message(
    "inference.enabled needs inference.tls: mode Enabled with cname and secretRef for HTTPS, or mode: Disabled to serve plain HTTP (Azure's allowInsecureConnections)"
))]
pub struct ExtensionInferenceSpec {
    /// Run Azure ML online endpoints on the cluster.
    #[serde(default)]
    pub enabled: bool,
    /// `LoadBalancer` (default), `NodePort` or `ClusterIP`.
    #[serde(default)]
    pub router_service_type: RouterServiceType,
    /// Use an internal Azure load balancer (`internalLoadBalancerProvider=azure`).
    #[serde(default)]
    pub internal_load_balancer: bool,
    /// Three router replicas (`inferenceRouterHA`; needs at least 3 nodes). Unset: on when the
    /// cluster has 3 nodes or more, as Azure's CLI decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_availability: Option<bool>,
    /// TLS of the router; required when `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ExtensionTlsSpec>,
}

/// `clusterPurpose` of the extension.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtensionPurpose {
    /// Production.
    FastProd,
    /// Development and test.
    DevTest,
}

/// Optional components of the extension's chart.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct AddOnsSpec {
    /// Install the NVIDIA device plugin (`installNvidiaDevicePlugin`; default false).
    #[serde(default)]
    pub nvidia_device_plugin: bool,
    /// Install the DCGM exporter (`installDcgmExporter`; default false).
    #[serde(default)]
    pub dcgm_exporter: bool,
    /// Install the Prometheus operator (`installPromOp`; default true; false to reuse yours).
    #[serde(default = "yes")]
    pub prometheus_operator: bool,
    /// Install Volcano (`installVolcano`; default true; false to reuse yours).
    #[serde(default = "yes")]
    pub volcano: bool,
}

impl Default for AddOnsSpec {
    fn default() -> Self {
        Self {
            nvidia_device_plugin: false,
            dcgm_exporter: false,
            prometheus_operator: true,
            volcano: true,
        }
    }
}

/// Resource requests or limits of an instance type: resource name → quantity (a string, e.g.
/// `"700m"`, `"4Gi"`, `"1"`).
pub type ResourceList = BTreeMap<String, String>;

/// Requests and limits of an instance type.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("'cpu' in self.requests && 'memory' in self.requests && 'cpu' in self.limits && 'memory' in self.limits").message(
    "instance type resources need cpu and memory in both requests and limits (Azure ML's instance-type rule), e.g. requests: {cpu: \"1\", memory: 4Gi}, limits: {cpu: \"2\", memory: 8Gi}"
))]
#[x_kube(validation = Rule::new("self.requests.all(k, !k.endsWith('/gpu'))").message(
    "a GPU count goes in limits only (Azure ML's instance-type rule): move it from requests to limits, e.g. limits: {nvidia.com/gpu: \"1\"}"
))]
#[x_kube(validation = Rule::new("self.limits.all(k, !k.endsWith('/gpu') || self.limits[k].matches('^[0-9]+$'))").message(
    "a GPU count in limits must be a whole number such as \"1\" (Azure ML's instance-type rule)"
))]
#[x_kube(validation = Rule::new("['cpu', 'memory'].all(r, !(r in self.requests) || !self.requests[r].matches('^0+(\\\\.0*)?[a-zA-Z]*$')) && ['cpu', 'memory'].all(r, !(r in self.limits) || !self.limits[r].matches('^0+(\\\\.0*)?[a-zA-Z]*$'))").message(
    "instance type cpu and memory must not be zero (Azure ML's instance-type rule)"
))]
pub struct InstanceTypeResources {
    /// Requests: `cpu` and `memory` required; no GPU here.
    #[schemars(extend("maxProperties" = 16, "additionalProperties" = {"type": "string", "maxLength": 32}))]
    pub requests: ResourceList,
    /// Limits: `cpu` and `memory` required; a GPU count (e.g. `nvidia.com/gpu`) as a whole number.
    #[schemars(extend("maxProperties" = 16, "additionalProperties" = {"type": "string", "maxLength": 32}))]
    pub limits: ResourceList,
}

/// One `InstanceType` object (`amlarc.azureml.com/v1alpha1`, cluster-scoped) on the cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
pub struct InstanceTypeSpec {
    /// Node labels the instance type's pods must match (within the extension's `nodeSelector`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    pub node_selector: BTreeMap<String, String>,
    /// Requests and limits of every pod of this instance type.
    pub resources: InstanceTypeResources,
}

/// Taking over a cluster that was attached as a legacy AKS compute.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSpec {
    /// The cluster runs the legacy `azureml-fe` (in namespace `default`) of an AKS compute:
    /// let the extension upgrade it in place (amlops annotates the Deployment
    /// `azureml-fe-enable-upgrade=true`, then sends `scoringFe.enableUpgrade`,
    /// `isAKSMigration`). Without it amlops stalls before the install
    /// (`LegacyFrontEndPresent`), which would fail with E45005 "Azureml Fe deployment
    /// confict".
    #[serde(default)]
    pub from_legacy_azure_ml_fe: bool,
}

/// What deleting an `AzureMLExtension` does in Azure.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum ExtensionDeletionPolicy {
    /// Uninstall the extension (default); waits while a `KubernetesCompute` uses it.
    #[default]
    Delete,
    /// Leave the extension installed.
    Orphan,
}

/// The Azure ML cluster extension on one AKS cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "amlops.dev",
    version = "v1alpha1",
    kind = "AzureMLExtension",
    plural = "azuremlextensions",
    namespaced,
    status = "AzureMlExtensionStatus",
    shortname = "amlext",
    category = "amlops",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    // Why it is (not) Ready; the message only with `-o wide`, as cert-manager does.
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.provisioningState"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(name = "Router", type_ = "string", json_path = ".status.routerAddress"),
    printcolumn(name = "Message", type_ = "string", priority = 1, json_path = ".status.conditions[?(@.type==\"Ready\")].message"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.extensionName) || (self.metadata.name.size() <= 53 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))").message(
        "metadata.name is used as the extension name when spec.extensionName is not set, but it is not a valid one (at most 53 lowercase letters, digits or '-', a Helm release name): set spec.extensionName"
    ),
    validation = Rule::new(immutable_once_recorded!("extensionId", "cluster")).field_path(".spec.cluster").message(
        "cluster is immutable once Azure has the extension (status.extensionId is set): an extension cannot move to another cluster; create a new AzureMLExtension"
    ),
    validation = Rule::new(immutable_once_recorded!("extensionId", "extensionName")).field_path(".spec.extensionName").message(
        "extensionName is immutable once Azure has the extension (status.extensionId is set): it cannot be set, changed or removed; create a new AzureMLExtension to use another name"
    ),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.training) && has(self.training.enabled) && self.training.enabled) || (has(self.inference) && has(self.inference.enabled) && self.inference.enabled)").message(
    "enable training or inference (Azure's CLI: \"To create Microsoft.AzureML.Kubernetes extension, either enable Machine Learning training or inference\"): set training.enabled or inference.enabled to true"
))]
#[x_kube(validation = Rule::new("!(has(self.version) && has(self.releaseTrain))").message(
    "set either releaseTrain (follow a train with minor auto-upgrades) or version (pin; auto-upgrade off), not both"
))]
#[x_kube(validation = Rule::new("!has(self.extraSettings) || self.extraSettings.all(k, !(k.lowerAscii() in ['enabletraining', 'enableinference', 'allowinsecureconnections', 'inferencerouterservicetype', 'internalloadbalancerprovider', 'inferencerouterha', 'clusterpurpose', 'sslcname', 'sslsecret', 'sslcertpemfile', 'sslkeypemfile', 'cluster_name', 'clusterid', 'prometheus.prometheusspec.externallabels.cluster_name', 'cluster_name_friendly', 'domain', 'location', 'jobschedulerlocation', 'servicebus.enabled', 'relayserver.enabled', 'nginxingress.enabled', 'installnvidiadeviceplugin', 'installpromop', 'installvolcano', 'installdcgmexporter', 'isaksmigration']) && !k.startsWith('scoringFe.') && !k.startsWith('nodeSelector.'))").message(
    "extraSettings may not set a key amlops derives from the spec (enableTraining, enableInference, inferenceRouterServiceType, ssl*, cluster_name, clusterId, domain, location, install*, scoringFe.*, nodeSelector.*, …): use the matching spec field instead (training, inference, addOns, nodeSelector, migration)"
))]
#[x_kube(validation = Rule::new("!has(self.instanceTypes) || !has(self.nodeSelector) || self.instanceTypes.all(n, !has(self.instanceTypes[n].nodeSelector) || self.instanceTypes[n].nodeSelector.all(k, !(k in self.nodeSelector) || self.nodeSelector[k] == self.instanceTypes[n].nodeSelector[k]))").message(
    "an instance type's nodeSelector must stay within the extension's nodeSelector (Azure ML applies the extension's selector to every instance type): a label both select on must have the same value"
))]
pub struct AzureMlExtensionSpec {
    /// The AKS cluster (immutable once Azure has the extension).
    pub cluster: ExtensionClusterRef,
    /// Name of the extension resource on the cluster; defaults to `metadata.name` (immutable
    /// once Azure has the extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 53))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message(
        "extensionName must be at most 53 lowercase letters, digits or '-', starting and ending with a letter or digit (it names the Helm release), e.g. azureml"
    ))]
    pub extension_name: Option<String>,
    /// Release train to follow with minor auto-upgrades (`stable` when neither this nor
    /// `version` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z][A-Za-z0-9-]*$')").message(
        "releaseTrain must be a train name such as stable or preview"
    ))]
    pub release_train: Option<String>,
    /// Pinned extension version (auto-upgrade off), e.g. `1.1.39`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+\\\\.[0-9]+\\\\.[0-9]+$')").message(
        "version must be a release such as 1.1.39"
    ))]
    pub version: Option<String>,
    /// Training and batch inference.
    #[serde(default)]
    pub training: TrainingSpec,
    /// Real-time inference and its router.
    #[serde(default)]
    pub inference: ExtensionInferenceSpec,
    /// `FastProd` or `DevTest`; unset: DevTest below 3 nodes, else FastProd (Azure's CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_purpose: Option<ExtensionPurpose>,
    /// Node labels the extension and its workloads run on (`nodeSelector.<key>`). Azure's CLI
    /// cannot remove a selector key once set, only change or add one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    // Label values are at most 63 characters; the bound keeps CEL's cost estimate in budget.
    #[schemars(extend("maxProperties" = 16, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$') && self[k].matches('^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$'))").message(
        "nodeSelector keys and values must be Kubernetes label keys and values (e.g. agentpool: ml)"
    ))]
    pub node_selector: BTreeMap<String, String>,
    /// Optional components of the chart.
    #[serde(default)]
    pub add_ons: AddOnsSpec,
    /// `InstanceType` objects amlops server-side-applies on the cluster once the extension
    /// runs (name → spec); amlops deletes only the ones it created. `defaultinstancetype`
    /// overrides Azure ML's implicit default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    #[x_kube(validation = Rule::new("self.all(n, n.size() <= 63 && n.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))").message(
        "instanceTypes names must be at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit (they name cluster objects), e.g. gpu-small"
    ))]
    pub instance_types: BTreeMap<String, InstanceTypeSpec>,
    /// Further extension settings (e.g. `amloperator.skipResourceValidation: "true"`). Keys
    /// amlops derives from the spec are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    pub extra_settings: BTreeMap<String, String>,
    /// Taking over a legacy AKS compute's `azureml-fe` on the same cluster.
    #[serde(default)]
    pub migration: MigrationSpec,
    /// `Delete` (default) or `Orphan`: what deleting this resource does in Azure.
    #[serde(default)]
    pub deletion_policy: ExtensionDeletionPolicy,
    /// Secret in this namespace with Azure credentials overriding the operator's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,
    /// How many times a Failed install or update is retried before giving up (`Stalled`).
    #[serde(default = "default_max_retries")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 10").message("maxRetries must be between 0 and 10"))]
    pub max_retries: i32,
}

impl AzureMLExtension {
    /// The extension name: `spec.extensionName`, else `metadata.name`.
    pub fn extension_name(&self) -> String {
        self.spec
            .extension_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}

/// TLS facts of the router's certificate, read from the referenced Secret; never the
/// certificate or key themselves.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionTlsStatus {
    /// Host name served (`cname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Expiry of the certificate last sent (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// SHA-256 fingerprint of the certificate last sent (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_fingerprint: Option<String>,
}

/// Observed state of an `AzureMLExtension`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
// The API server creates this `status` on every object that has none (see
// `UNOBSERVED_GENERATION`).
#[schemars(extend("default" = {"observedGeneration": UNOBSERVED_GENERATION}))]
pub struct AzureMlExtensionStatus {
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
    /// ARM id of the extension; recorded before the first PUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_id: Option<String>,
    /// Azure's provisioningState of the extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// Installed extension version (`currentVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Principal id of the extension's managed identity (`aksAssignedIdentity.principalId` on
    /// AKS, `identity.principalId` on an Arc-enabled cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// Address of the inference router (Service `azureml/azureml-fe`), read from the
    /// cluster: the load balancer's IP or host name (`LoadBalancer`), `nodePort <port>`
    /// (`NodePort`: any node's address), or the cluster IP (`ClusterIP`); absent while a
    /// load balancer has no address yet or the cluster cannot be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_address: Option<String>,
    /// TLS facts of the certificate last sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ExtensionTlsStatus>,
    /// `InstanceType` objects amlops applied on the cluster (names, sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_types: Vec<String>,
    /// Azure's `errorInfo` and error `statuses` of the last failed operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisioning_errors: Vec<ProvisioningError>,
    /// The in-flight ARM operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationStatus>,
    /// Hash of the configuration settings last sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_hash: Option<String>,
    /// Hash of the protected settings last sent together with the referenced Secret's
    /// resourceVersion (Azure never returns protected settings, so this is how amlops
    /// notices a change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_settings_hash: Option<String>,
    /// Failed-operation retries so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Hash of the settings and instance types whose cluster objects (InstanceType objects,
    /// router address) were last brought in line; the cluster's API server is contacted
    /// again only when it differs, so a steady resync costs no credential call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_objects_hash: Option<String>,
    /// With `delivery: ClusterSecret`: hash of the certificate and key last copied into
    /// namespace `azureml` on the cluster (never the material itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_secret_hash: Option<String>,
}
