//! Seeds for the Kubernetes-compute path: cluster traits (identity kind, local accounts,
//! legacy front end, slow or timing-out installs), installed extensions, Arc clusters,
//! unregistered providers, workspace identities lacking roles, timings. The config file's
//! `kubernetesPath` section and `POST /admin/kubernetes-path` take the same document:
//!
//! ```yaml
//! kubernetesPath:
//!   reuseWindowSecs: 60          # a deleted extension's name stays taken this long
//!   crdDelayMs: 500              # the InstanceType CRD appears this long after Succeeded
//!   unregisteredProviders: [{subscriptionId: 0000…, namespace: Microsoft.KubernetesConfiguration}]
//!   connectedClusters: [/subscriptions/…/providers/Microsoft.Kubernetes/connectedClusters/arc1]
//!   clusters:
//!   - {clusterId: /subscriptions/…/managedClusters/shared, identity: ServicePrincipal,
//!      disableLocalAccounts: true, legacyFrontEnd: true, slowInstallSeconds: 900, installTimesOut: false}
//!   extensions:                  # installed and Succeeded, with their objects on the cluster
//!   - {clusterId: /subscriptions/…/managedClusters/shared, name: azureml,
//!      configurationSettings: {enableInference: "True", inferenceRouterServiceType: LoadBalancer, …}}
//!   roleGaps: [{workspaceId: /subscriptions/…/workspaces/ml-ws, clusterId: /subscriptions/…/managedClusters/shared}]
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::cluster_objects;
use super::extensions::{AZUREML_TYPE, ClusterRef, ClusterTraits, ExtensionRecord};
use super::state::{Inner, parse_cluster_id, ws_key};

/// The `kubernetesPath` seed document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KubernetesPathSeed {
    /// Name-reuse window after an extension delete, seconds.
    pub reuse_window_secs: Option<f64>,
    /// Delay of the InstanceType CRD after install, milliseconds.
    pub crd_delay_ms: Option<u64>,
    /// Providers the subscription has not registered.
    pub unregistered_providers: Vec<ProviderSeed>,
    /// Provider registrations to restore.
    pub registered_providers: Vec<ProviderSeed>,
    /// Arc cluster ids (extensions only; no data plane).
    pub connected_clusters: Vec<String>,
    /// Traits of AKS clusters.
    pub clusters: Vec<ClusterTraitsSeed>,
    /// Extensions already installed (`Succeeded`).
    pub extensions: Vec<ExtensionSeed>,
    /// Workspace identities that lack roles on a cluster.
    pub role_gaps: Vec<RoleGapSeed>,
}

/// A provider registration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProviderSeed {
    /// Subscription.
    pub subscription_id: String,
    /// e.g. `Microsoft.KubernetesConfiguration`.
    pub namespace: String,
}

/// Traits of one AKS cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterTraitsSeed {
    /// ARM id of the cluster.
    pub cluster_id: String,
    /// The traits.
    #[serde(flatten)]
    pub traits: ClusterTraits,
}

/// An installed extension.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtensionSeed {
    /// ARM id of the AKS cluster.
    pub cluster_id: String,
    /// Extension name (default `azureml`).
    pub name: Option<String>,
    /// Type (default `Microsoft.AzureML.Kubernetes`).
    pub extension_type: Option<String>,
    /// Release train (default `stable`).
    pub release_train: Option<String>,
    /// Settings.
    pub configuration_settings: BTreeMap<String, String>,
}

/// A workspace whose identity lacks AKS roles on a cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RoleGapSeed {
    /// Workspace ARM id.
    pub workspace_id: String,
    /// Cluster ARM id.
    pub cluster_id: String,
}

fn workspace_key(id: &str) -> Option<String> {
    let segs: Vec<&str> = id.trim_matches('/').split('/').collect();
    (segs.len() == 8 && segs[6].eq_ignore_ascii_case("workspaces"))
        .then(|| ws_key(segs[1], segs[3], segs[7]))
}

fn aks_ref(id: &str) -> Result<ClusterRef, String> {
    let (sub, rg, name) =
        parse_cluster_id(id).ok_or_else(|| format!("not an AKS cluster id: {id}"))?;
    Ok(ClusterRef {
        sub,
        rg,
        rp: "Microsoft.ContainerService".into(),
        kind: "managedClusters".into(),
        name,
    })
}

impl Inner {
    /// Applies a `kubernetesPath` seed (additive).
    ///
    /// # Errors
    /// A message naming the first id that does not parse or a cluster that does not exist.
    pub fn apply_kubernetes_path_seed(&mut self, seed: &KubernetesPathSeed) -> Result<(), String> {
        if let Some(s) = seed.reuse_window_secs {
            self.ext.reuse_window = Some(Duration::from_secs_f64(s.max(0.0)));
        }
        if let Some(ms) = seed.crd_delay_ms {
            self.ext.crd_delay = Some(Duration::from_millis(ms));
        }
        for p in &seed.unregistered_providers {
            self.ext.unregistered.insert((
                p.subscription_id.to_ascii_lowercase(),
                p.namespace.to_ascii_lowercase(),
            ));
        }
        for p in &seed.registered_providers {
            self.ext.unregistered.remove(&(
                p.subscription_id.to_ascii_lowercase(),
                p.namespace.to_ascii_lowercase(),
            ));
        }
        for id in &seed.connected_clusters {
            self.ext
                .connected_clusters
                .insert(id.trim_end_matches('/').to_ascii_lowercase());
        }
        for c in &seed.clusters {
            let key = aks_ref(&c.cluster_id)?.key();
            self.ext.traits.insert(key, c.traits.clone());
        }
        for g in &seed.role_gaps {
            let ws = workspace_key(&g.workspace_id)
                .ok_or_else(|| format!("not a workspace id: {}", g.workspace_id))?;
            self.ext
                .role_gaps
                .insert((ws, aks_ref(&g.cluster_id)?.key()));
        }
        for e in &seed.extensions {
            let cluster = aks_ref(&e.cluster_id)?;
            if !self.clusters.contains_key(&cluster.key()) {
                return Err(format!("no such AKS cluster: {}", e.cluster_id));
            }
            let name = e.name.clone().unwrap_or_else(|| "azureml".into());
            let now = jiff::Timestamp::now();
            let record = ExtensionRecord {
                cluster: cluster.clone(),
                name: name.clone(),
                extension_type: e
                    .extension_type
                    .clone()
                    .unwrap_or_else(|| AZUREML_TYPE.into()),
                auto_upgrade_minor_version: true,
                auto_upgrade_mode: None,
                release_train: Some(e.release_train.clone().unwrap_or_else(|| "stable".into())),
                version: None,
                scope: json!({"cluster": {"releaseNamespace": "azureml"}}),
                settings: e.configuration_settings.clone(),
                protected: BTreeMap::new(),
                identity_type: Some("SystemAssigned".into()),
                principal_id: uuid::Uuid::new_v4().to_string(),
                provisioning_state: "Succeeded".into(),
                current_version: Some("1.1.64".into()),
                error: None,
                operation: None,
                created_at: now,
                modified_at: now,
            };
            if record.is_azureml() {
                cluster_objects::install(self, &record);
            }
            let key = super::extensions::ext_key(&cluster, &name);
            self.ext.extensions.insert(key, record);
        }
        Ok(())
    }
}
