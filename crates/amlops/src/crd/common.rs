//! Types shared by both kinds.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Azure ML workspace that owns the compute.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceRef {
    /// Azure subscription id (a GUID) of the workspace.
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')"
    ).message("workspace.subscriptionId must be a GUID such as 00000000-0000-0000-0000-000000000000"))]
    pub subscription_id: String,
    /// Resource group of the workspace.
    #[schemars(length(max = 90))]
    #[x_kube(validation = Rule::new("self.matches('^[-a-zA-Z0-9._()]{1,90}$') && !self.endsWith('.')").message(
        "workspace.resourceGroup must be 1-90 characters (letters, digits, '-', '_', '.', '(' or ')') and must not end with '.'"
    ))]
    pub resource_group: String,
    /// Name of the Azure ML workspace.
    #[schemars(length(max = 33))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$')").message(
        "workspace.name must be 3-33 characters: letters, digits, '-' or '_', starting with a letter or digit"
    ))]
    pub name: String,
}

/// What the cluster is for; production purposes need at least 12 vCPUs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum ClusterPurpose {
    /// Production: at least 3 nodes and 12 vCPUs.
    #[default]
    FastProd,
    /// Production with dense packing: at least 12 vCPUs.
    DenseProd,
    /// Development and test: no minimum size.
    DevTest,
}

impl ClusterPurpose {
    /// The value Azure ML uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FastProd => "FastProd",
            Self::DenseProd => "DenseProd",
            Self::DevTest => "DevTest",
        }
    }

    /// Whether Azure ML enforces the 12-vCPU production minimum.
    pub fn is_production(self) -> bool {
        !matches!(self, Self::DevTest)
    }
}

/// Type of the load balancer in front of the scoring endpoint.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum LoadBalancerType {
    /// A public IP address (Azure ML's default).
    #[default]
    PublicIp,
    /// An internal load balancer in a subnet of the cluster's virtual network.
    InternalLoadBalancer,
}

impl LoadBalancerType {
    /// The value Azure ML uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PublicIp => "PublicIp",
            Self::InternalLoadBalancer => "InternalLoadBalancer",
        }
    }
}

/// Load balancer of the scoring endpoint; changed in place, without detaching.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'InternalLoadBalancer' || !has(self.subnet)").message(
    "loadBalancer.subnet is only used with type InternalLoadBalancer: remove subnet or set type: InternalLoadBalancer"
))]
pub struct LoadBalancerSpec {
    /// `PublicIp` (default) or `InternalLoadBalancer`.
    #[serde(default, rename = "type")]
    pub type_: LoadBalancerType,
    /// Subnet of the internal load balancer (Azure ML uses `aks-subnet` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 80))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,78}[a-zA-Z0-9_])?$')").message(
        "loadBalancer.subnet must be a subnet name: 1-80 characters, letters, digits, '.', '-' or '_', starting with a letter or digit"
    ))]
    pub subnet: Option<String>,
}

/// How the scoring endpoint terminates TLS.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum TlsMode {
    /// No TLS (default).
    #[default]
    Disabled,
    /// A Microsoft-issued certificate for `<leafDomainLabel>######.<region>.cloudapp.azure.com`.
    Auto,
    /// Your certificate and key, from a Secret, for `cname`.
    Custom,
}

impl TlsMode {
    /// Display value, as in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "Disabled",
            Self::Auto => "Auto",
            Self::Custom => "Custom",
        }
    }
}

/// Reference to a Secret in the resource's own namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretRef {
    /// Name of the Secret (same namespace as this resource).
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message(
        "secret name must be a lowercase DNS subdomain (letters, digits, '-' and '.')"
    ))]
    pub name: String,
}

/// A `credentialsRef`: a Secret in the resource's own namespace, with the schema of
/// [`SecretRef`]. A `namespace` is not part of that schema (the API server prunes it), but
/// it is read when an object carries one anyway, so that the controller refuses the
/// reference (`CredentialsRefForbidden`) instead of quietly reading a Secret of the same
/// name in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct CredentialsRef {
    /// Name of the Secret (same namespace as this resource).
    pub name: String,
    /// Another namespace, if an object names one (never valid; see the type's note).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl JsonSchema for CredentialsRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        SecretRef::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        SecretRef::schema_id()
    }

    fn inline_schema() -> bool {
        SecretRef::inline_schema()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        SecretRef::json_schema(generator)
    }
}

/// TLS of the scoring endpoint. Changing it detaches and reattaches the compute; the operator
/// backs up the certificate and key first (see `status.tls`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'Auto' || has(self.leafDomainLabel)").message(
    "tls.mode Auto needs leafDomainLabel: the first part of the Microsoft-issued host name <label>######.<region>.cloudapp.azure.com"
))]
#[x_kube(validation = Rule::new("self.mode != 'Auto' || (!has(self.cname) && !has(self.secretRef))").message(
    "tls.mode Auto uses a Microsoft-issued certificate: remove cname and secretRef, or use mode Custom to serve your own certificate"
))]
#[x_kube(validation = Rule::new("self.mode != 'Custom' || (has(self.cname) && has(self.secretRef))").message(
    "tls.mode Custom needs cname (the host name of your certificate) and secretRef (a Secret in this namespace holding the certificate and key)"
))]
#[x_kube(validation = Rule::new("self.mode == 'Auto' || !has(self.autoRenew) || !self.autoRenew").message(
    "tls.autoRenew renews Microsoft-issued certificates only: set mode: Auto, or remove autoRenew (renew a Custom certificate by updating its Secret)"
))]
#[x_kube(validation = Rule::new("self.mode == 'Auto' || !has(self.leafDomainLabel)").message(
    "tls.leafDomainLabel is only used with mode Auto: remove it or set mode: Auto"
))]
#[x_kube(validation = Rule::new("self.mode != 'Disabled' || (!has(self.cname) && !has(self.secretRef))").message(
    "tls.mode is Disabled: remove cname and secretRef, or set mode: Custom"
))]
pub struct TlsSpec {
    /// `Disabled` (default), `Auto` or `Custom`.
    #[serde(default)]
    pub mode: TlsMode,
    /// Auto: first part of the Microsoft-issued host name (Azure ML appends six digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 57))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z][a-z0-9-]*[a-z0-9]$')").message(
        "tls.leafDomainLabel must be 2-57 lowercase letters, digits or '-', starting with a letter and ending with a letter or digit"
    ))]
    pub leaf_domain_label: Option<String>,
    /// Auto: replace an existing domain that already uses this label.
    #[serde(default)]
    pub overwrite_existing_domain: bool,
    /// Auto: have Azure ML renew the Microsoft-issued certificate in place (same host name)
    /// once it has 30 days or less left. Default false: only the expiry warnings, and a
    /// renewal when annotation `amlops.dev/renew-certificate` gets a new value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_renew: bool,
    /// Custom: the host name the certificate is issued for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^([a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?\\\\.)+[a-zA-Z]{2,63}$')").message(
        "tls.cname must be a fully qualified host name such as scoring.contoso.com"
    ))]
    pub cname: Option<String>,
    /// Custom: Secret in this namespace with the certificate and key (type kubernetes.io/tls
    /// with `tls.crt`/`tls.key`, or Opaque with `cert.pem`/`key.pem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

impl TlsSpec {
    /// Whether the endpoint serves TLS.
    pub fn enabled(&self) -> bool {
        self.mode != TlsMode::Disabled
    }
}

/// What happens in Azure when the resource is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeletionPolicy {
    /// Delete the compute and the AKS cluster Azure ML created (InferenceCluster only).
    Delete,
    /// Back up TLS, then detach the compute; the AKS cluster keeps running.
    Detach,
    /// Leave Azure untouched.
    Orphan,
}

impl DeletionPolicy {
    /// Display value, as in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "Delete",
            Self::Detach => "Detach",
            Self::Orphan => "Orphan",
        }
    }
}

/// Name of the Azure ML compute: 3-24 characters, letters, digits and '-', starting with a
/// letter, ending with a letter or digit, unique in the workspace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.size() >= 3 && self.size() <= 24",
     "message": "computeName must be 3 to 24 characters long"},
    {"rule": "self.matches('^[a-zA-Z][a-zA-Z0-9-]*[a-zA-Z0-9]$')",
     "message": "computeName may contain only letters, digits and '-', must start with a letter and end with a letter or digit"},
    {"rule": "!self.matches('-[0-9]+$')",
     "message": "computeName must not end in '-' followed by digits (Azure ML rejects that form): e.g. use prodaks2 instead of prodaks-2"}
]))]
pub struct ComputeName(#[schemars(length(max = 24))] pub String);

impl ComputeName {
    /// `spec.computeName` if set, else `metadata.name` (what both kinds use).
    pub fn or_name(name: Option<&ComputeName>, meta: &kube::core::ObjectMeta) -> String {
        match name {
            Some(n) => n.0.clone(),
            None => meta.name.clone().unwrap_or_default(),
        }
    }
}

/// Root-level CEL rule: `spec.<field>` (optional or not) may not change once Azure has the
/// compute, i.e. once `status.computeId` is set — the operator records it before its first
/// compute PUT. Before that the field can be corrected in place: a spec the operator refused
/// (`Stalled InvalidSpec`, no Azure write) must be fixable without deleting the resource.
///
/// The rule reads `oldSelf.status`: on an update of the main resource the API server
/// validates the whole object, status included, so a user cannot unset it to get around
/// the rule. Used with `.field_path(".spec.<field>")` so errors point at the field.
macro_rules! immutable_once_created {
    ($field:literal) => {
        $crate::crd::common::immutable_once_recorded!("computeId", $field)
    };
}
pub(crate) use immutable_once_created;

/// Like [`immutable_once_created`], for the kinds of the Kubernetes compute path: `spec.<field>`
/// may not change once the operator recorded `status.<status_field>` (the ARM id it records
/// before its first Azure write), so a refused spec can still be fixed in place.
macro_rules! immutable_once_recorded {
    ($status_field:literal, $field:literal) => {
        concat!(
            "!has(oldSelf.status) || !has(oldSelf.status.",
            $status_field,
            ") || (has(self.spec.",
            $field,
            ") == has(oldSelf.spec.",
            $field,
            ") && (!has(self.spec.",
            $field,
            ") || self.spec.",
            $field,
            " == oldSelf.spec.",
            $field,
            "))"
        )
    };
}
pub(crate) use immutable_once_recorded;

/// CEL rule (root level) for resources without `spec.computeName`: `metadata.name` is used.
pub(crate) const NAME_AS_COMPUTE_NAME: &str = "has(self.spec.computeName) || (self.metadata.name.size() >= 3 && self.metadata.name.size() <= 24 && self.metadata.name.matches('^[a-z][a-z0-9-]*[a-z0-9]$') && !self.metadata.name.matches('-[0-9]+$'))";
/// Message of [`NAME_AS_COMPUTE_NAME`].
pub(crate) const NAME_AS_COMPUTE_NAME_MSG: &str = "metadata.name is used as the compute name when spec.computeName is not set, but it is not a valid compute name (3-24 characters, starting with a letter, not ending in '-<digits>'): set spec.computeName";
