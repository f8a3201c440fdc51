//! AKS managed clusters and agent pools (`Microsoft.ContainerService`, api-version
//! 2025-10-01) — the subset the operator reads, plus lossless agent pools for scaling.

use serde::{Deserialize, Serialize};

string_enum! {
    /// Whether a cluster or pool is running.
    PowerStateCode {
        /// Running.
        Running = "Running",
        /// Stopped.
        Stopped = "Stopped",
    }
}

/// `powerState`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerState {
    /// Running or Stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<PowerStateCode>,
}

/// A managed cluster (subset).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedCluster {
    /// ARM id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Cluster name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The cluster's identity (`SystemAssigned` or `UserAssigned`); absent on a cluster that
    /// runs with a service principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ManagedClusterIdentity>,
    /// Properties.
    #[serde(default)]
    pub properties: ManagedClusterProperties,
}

/// `identity` of a managed cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedClusterIdentity {
    /// `SystemAssigned`, `UserAssigned` or `None`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<String>,
}

/// `servicePrincipalProfile` (`clientId` is `msi` on a managed-identity cluster).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipalProfile {
    /// Client id of the service principal, or `msi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl ManagedCluster {
    /// True when the cluster runs with a managed identity (cluster extensions need one):
    /// an `identity` other than `None`, or no service principal other than `msi`.
    pub fn uses_managed_identity(&self) -> bool {
        let identity = self
            .identity
            .as_ref()
            .and_then(|i| i.identity_type.as_deref())
            .is_some_and(|t| !t.eq_ignore_ascii_case("None"));
        let sp = self
            .properties
            .service_principal_profile
            .as_ref()
            .and_then(|p| p.client_id.as_deref())
            .is_some_and(|c| !c.eq_ignore_ascii_case("msi"));
        identity || !sp
    }

    /// `disableLocalAccounts` (absent: false).
    pub fn local_accounts_disabled(&self) -> bool {
        self.properties.disable_local_accounts.unwrap_or(false)
    }

    /// The version actually running (`currentKubernetesVersion`, else `kubernetesVersion`).
    pub fn kubernetes_version(&self) -> Option<&str> {
        self.properties
            .current_kubernetes_version
            .as_deref()
            .or(self.properties.kubernetes_version.as_deref())
    }

    /// True unless AKS reports the cluster stopped. A missing power state counts as
    /// running (older API answers omit it).
    pub fn is_running(&self) -> bool {
        !matches!(
            self.properties
                .power_state
                .as_ref()
                .and_then(|p| p.code.as_ref()),
            Some(PowerStateCode::Stopped)
        )
    }

    /// Sum of the node counts of all agent pools.
    pub fn total_nodes(&self) -> i64 {
        self.properties
            .agent_pool_profiles
            .iter()
            .flatten()
            .map(|p| i64::from(p.count.unwrap_or(0)))
            .sum()
    }

    /// True when the API server is private.
    pub fn is_private(&self) -> bool {
        self.properties
            .api_server_access_profile
            .as_ref()
            .and_then(|a| a.enable_private_cluster)
            .unwrap_or(false)
    }

    /// A private cluster whose API server also has a public FQDN: Azure ML does not support
    /// it ("Using a public fully qualified domain name (FQDN) with a private AKS cluster
    /// isn't supported with Azure Machine Learning", Microsoft's "Secure Azure Kubernetes
    /// Service inferencing environment", Limitations). Where AKS leaves
    /// `enablePrivateClusterPublicFQDN` out, the presence of `fqdn` next to `privateFQDN`
    /// says it.
    pub fn is_private_with_public_fqdn(&self) -> bool {
        let p = &self.properties;
        self.is_private()
            && p.api_server_access_profile
                .as_ref()
                .and_then(|a| a.enable_private_cluster_public_fqdn)
                .unwrap_or(p.fqdn.is_some())
    }
}

/// Managed cluster properties (subset).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedClusterProperties {
    /// Requested Kubernetes version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// Running Kubernetes version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_kubernetes_version: Option<String>,
    /// Provisioning state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// Power state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_state: Option<PowerState>,
    /// Public API server FQDN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// Private API server FQDN.
    #[serde(rename = "privateFQDN", skip_serializing_if = "Option::is_none")]
    pub private_fqdn: Option<String>,
    /// Agent pools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_pool_profiles: Option<Vec<AgentPoolProfile>>,
    /// API server access.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_server_access_profile: Option<ApiServerAccessProfile>,
    /// `disableLocalAccounts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_local_accounts: Option<bool>,
    /// `servicePrincipalProfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_principal_profile: Option<ServicePrincipalProfile>,
}

/// An agent pool as listed in the cluster (subset).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPoolProfile {
    /// Pool name.
    #[serde(default)]
    pub name: String,
    /// Node count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// VM size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
    /// `System`, `User` or `Gateway`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Provisioning state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// Whether the cluster autoscaler manages the node count (AKS then refuses a manual
    /// `count` change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_auto_scaling: Option<bool>,
    /// Autoscaler lower bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_count: Option<i32>,
    /// Autoscaler upper bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_count: Option<i32>,
}

/// `apiServerAccessProfile` (subset).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiServerAccessProfile {
    /// IP ranges allowed to reach the API server.
    #[serde(rename = "authorizedIPRanges", skip_serializing_if = "Option::is_none")]
    pub authorized_ip_ranges: Option<Vec<String>>,
    /// Private cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_private_cluster: Option<bool>,
    /// A private cluster also gets a public FQDN (AKS's default for private clusters;
    /// `az aks update --disable-public-fqdn` turns it off).
    #[serde(
        rename = "enablePrivateClusterPublicFQDN",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_private_cluster_public_fqdn: Option<bool>,
}

/// An agent pool (`managedClusters/{name}/agentPools/{pool}`).
///
/// Unknown properties are kept in `extra` and sent back on PUT: AKS resets omitted
/// properties (taints, autoscaler settings, …), so a scale must round-trip them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPool {
    /// ARM id (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Pool name (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ARM type (read-only).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Properties.
    #[serde(default)]
    pub properties: AgentPoolProperties,
}

/// Agent pool properties: the ones the operator uses, plus everything else verbatim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPoolProperties {
    /// Node count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// VM size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
    /// `System`, `User` or `Gateway`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Autoscaler enabled (then AKS refuses a manual count change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_auto_scaling: Option<bool>,
    /// Provisioning state (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// Everything else, kept for a lossless round trip.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Read-only agent pool properties (swagger `readOnly`), removed before a PUT.
const AGENT_POOL_READ_ONLY: &[&str] = &[
    "eTag",
    "currentOrchestratorVersion",
    "nodeImageVersion",
    "provisioningState",
];

impl AgentPool {
    /// This pool without read-only fields: what may be sent in a PUT.
    pub fn for_request(&self) -> Self {
        let mut body = self.clone();
        body.id = None;
        body.name = None;
        body.resource_type = None;
        body.properties.provisioning_state = None;
        for key in AGENT_POOL_READ_ONLY {
            body.properties.extra.remove(*key);
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(path: &str) -> serde_json::Value {
        let full = format!("/work/shared/azure-specs/{path}");
        serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap()
    }

    #[test]
    fn decodes_managed_cluster_example() {
        let v = example("aks-2025-10-01/examples/ManagedClustersGet.json");
        let mc: ManagedCluster =
            serde_json::from_value(v["responses"]["200"]["body"].clone()).unwrap();
        assert_eq!(mc.kubernetes_version(), Some("1.9.6"));
        assert!(mc.is_running());
        assert_eq!(mc.total_nodes(), 3);
        let pool = &mc.properties.agent_pool_profiles.as_ref().unwrap()[0];
        assert_eq!(pool.name, "nodepool1");
        assert_eq!(pool.vm_size.as_deref(), Some("Standard_DS1_v2"));
        assert!(!mc.is_private());

        let stopped: ManagedCluster = serde_json::from_str(
            r#"{"properties":{"powerState":{"code":"Stopped"},"privateFQDN":"x.privatelink","apiServerAccessProfile":{"authorizedIPRanges":["1.2.3.4/32"],"enablePrivateCluster":true}}}"#,
        )
        .unwrap();
        assert!(!stopped.is_running());
        assert!(stopped.is_private());
        assert_eq!(
            stopped.properties.private_fqdn.as_deref(),
            Some("x.privatelink")
        );
    }

    #[test]
    fn private_cluster_with_public_fqdn() {
        let rows = [
            (r#"{"properties":{"fqdn":"a.hcp"}}"#, false),
            (
                r#"{"properties":{"fqdn":"a.hcp","privateFQDN":"a.privatelink","apiServerAccessProfile":{"enablePrivateCluster":true,"enablePrivateClusterPublicFQDN":true}}}"#,
                true,
            ),
            (
                r#"{"properties":{"privateFQDN":"a.privatelink","apiServerAccessProfile":{"enablePrivateCluster":true,"enablePrivateClusterPublicFQDN":false}}}"#,
                false,
            ),
            // The flag left out: the public FQDN's presence tells.
            (
                r#"{"properties":{"fqdn":"a.hcp","privateFQDN":"a.privatelink","apiServerAccessProfile":{"enablePrivateCluster":true}}}"#,
                true,
            ),
            (
                r#"{"properties":{"privateFQDN":"a.privatelink","apiServerAccessProfile":{"enablePrivateCluster":true}}}"#,
                false,
            ),
        ];
        for (json, want) in rows {
            let mc: ManagedCluster = serde_json::from_str(json).unwrap();
            assert_eq!(mc.is_private_with_public_fqdn(), want, "{json}");
        }
    }

    #[test]
    fn agent_pool_round_trips_and_strips_read_only() {
        let v = example("aks-2025-10-01/examples/AgentPools_Update.json");
        let pool: AgentPool =
            serde_json::from_value(v["responses"]["200"]["body"].clone()).unwrap();
        assert_eq!(pool.properties.count, Some(3));
        assert_eq!(pool.properties.enable_auto_scaling, Some(true));
        let body = serde_json::to_value(pool.for_request()).unwrap();
        let props = body["properties"].as_object().unwrap();
        for ro in AGENT_POOL_READ_ONLY {
            assert!(!props.contains_key(*ro), "{ro} must not be sent");
        }
        assert!(body.get("id").is_none());
        // Settings we do not model survive.
        assert_eq!(props["nodeTaints"][0], "Key1=Value1:NoSchedule");
        assert_eq!(props["scaleSetPriority"], "Spot");
        assert_eq!(props["maxPods"], 110);
    }
}
