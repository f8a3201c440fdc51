//! Serde types for the ARM resources the operator reads and writes, checked against the
//! official swagger excerpts and examples under `azure-specs/`. Every field is optional
//! (Azure omits what it likes) and camelCase; secrets are wrapped so `Debug` redacts them.

/// Declares a string enum whose unknown values are kept in `Other(String)`, so a value
/// Azure adds later never breaks decoding.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this version does not know.
            Other(String),
        }

        impl $name {
            /// The wire value.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(s) => s,
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            /// Case-insensitive; unknown values become `Other`.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(if s.eq_ignore_ascii_case($text) { return Ok(Self::$variant); })+
                Ok(Self::Other(s.to_owned()))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok(s.parse().unwrap_or_else(|never: std::convert::Infallible| match never {}))
            }
        }
    };
}

mod aks;
mod compute;
mod extension;
mod kubeconfig;
mod kubernetes_compute;
mod sku;

pub use aks::{
    AgentPool, AgentPoolProfile, AgentPoolProperties, ApiServerAccessProfile, ManagedCluster,
    ManagedClusterIdentity, ManagedClusterProperties, PowerState, PowerStateCode,
    ServicePrincipalProfile,
};
pub use compute::{
    AksCompute, AksComputeResource, AksNetworkingConfiguration, AksProperties, ClusterPurpose,
    Compute, ComputeKeys, ComputeResource, ComputeSchema, LoadBalancerType, ManagedServiceIdentity,
    ProvisioningState, SslConfigStatus, SslConfiguration, SystemService, UserAssignedIdentity,
};
pub use extension::{
    AutoUpgradeMode, Extension, ExtensionIdentity, ExtensionPatch, ExtensionPatchProperties,
    ExtensionProperties, ExtensionProvisioningState, ExtensionRequest, ExtensionRequestProperties,
    ExtensionScope, ExtensionStatus, ProtectedSettings, ProviderRegistration, ScopeCluster,
    ScopeNamespace, SystemData,
};
pub use kubeconfig::{CredentialResult, CredentialResults, KubeconfigSecret};
pub use kubernetes_compute::{
    InstanceTypeResources, InstanceTypeSchema, KubernetesCompute, KubernetesComputeResource,
    KubernetesProperties,
};
pub use sku::{
    KubernetesPatchVersion, KubernetesVersion, KubernetesVersionCapabilities,
    KubernetesVersionList, ResourceSku, SkuCapability, SkuRestriction, VmSizeCatalog, VmSizeInfo,
};

use serde::{Deserialize, Serialize};

/// One page of an ARM list (`value` + `nextLink`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// Items of this page.
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    /// URL of the next page, if any.
    #[serde(default)]
    pub next_link: Option<String>,
}

/// An Azure Machine Learning workspace (the fields the operator needs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// ARM id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Workspace name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Region; also the `location` of computes created in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Selected properties.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<WorkspaceProperties>,
}

/// Selected workspace properties.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceProperties {
    /// Provisioning state of the workspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// Discovery document URL (used by the Azure ML SDK).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    /// Friendly name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
}
