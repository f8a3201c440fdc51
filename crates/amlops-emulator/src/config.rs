//! Emulator configuration: the seed (subscriptions, workspaces, AKS clusters), the
//! Kubernetes versions and VM sizes Azure offers, LRO timing, faults and throttling.
//! The same structure is the `--config` YAML file and the body of `POST /admin/seed`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::faults::FaultRule;
use super::throttle::{Budget, Model, Throttling};

/// Everything the emulator starts with. YAML/JSON field names are camelCase.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmulatorConfig {
    /// Bearer token accepted on ARM calls.
    pub token: String,
    /// Optional token for `/admin/...` (header `x-admin-token` or `Authorization: Bearer`).
    pub admin_token: Option<String>,
    /// Duration of long-running operations, in seconds (0 = done on first poll).
    pub op_seconds: f64,
    /// Page size of the compute list.
    pub page_size: usize,
    /// Kubernetes versions AKS offers (patch versions, e.g. `1.35.3`).
    pub kubernetes_versions: Vec<String>,
    /// The range of Kubernetes versions Azure ML attaches, `[lowest, highest]`, compared by
    /// minor and quoted in its "Supported versions are between A - B" failure. It lags
    /// AKS's list; when unset, the lowest and highest of `kubernetesVersions`.
    pub azureml_kubernetes_versions: Option<[String; 2]>,
    /// Default version for clusters Azure ML creates; first of the list's newest minor when empty.
    pub default_kubernetes_version: Option<String>,
    /// VM sizes (Resource SKUs) available in every location.
    pub vm_sizes: Vec<VmSize>,
    /// Subscriptions with their workspaces and AKS clusters.
    pub subscriptions: Vec<SubscriptionSeed>,
    /// Faults active from the start.
    pub faults: Vec<FaultRule>,
    /// ARM's throttling: model per subscription, enforced or only reported (default: token
    /// buckets with ARM's figures, reported, not enforced).
    pub throttling: Option<Throttling>,
    /// Shorthand: the hourly model with these counts, enforced, for every subscription
    /// (ignored when `throttling` is set).
    pub budget: Option<Budget>,
    /// The Kubernetes-compute path: cluster traits, extensions, provider registration, …
    pub kubernetes_path: super::kubernetes_seed::KubernetesPathSeed,
    /// Lifetime of the Microsoft-issued (`Auto`) certificates the emulator issues, in days
    /// (Azure's are about a year; a short one lets tests reach the expiry warnings).
    pub auto_certificate_days: u32,
}

/// A VM size of the Resource SKUs table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VmSize {
    /// e.g. `Standard_D3_v2`.
    pub name: String,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Memory in GB.
    #[serde(default)]
    pub memory_gb: f64,
    /// SKU family, e.g. `standardDv2Family`.
    #[serde(default)]
    pub family: String,
}

/// One subscription of the seed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionSeed {
    /// Subscription id (GUID).
    pub id: String,
    /// Azure ML workspaces.
    pub workspaces: Vec<WorkspaceSeed>,
    /// Existing AKS clusters (for attach scenarios).
    pub aks_clusters: Vec<ClusterSeed>,
}

/// An Azure ML workspace.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSeed {
    /// Resource group.
    pub resource_group: String,
    /// Workspace name.
    pub name: String,
    /// Azure region, e.g. `eastus`.
    #[serde(default = "default_location")]
    pub location: String,
}

/// An AKS managed cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterSeed {
    /// Resource group.
    pub resource_group: String,
    /// Cluster name.
    pub name: String,
    /// Azure region.
    pub location: String,
    /// Kubernetes version, e.g. `1.35.3`.
    pub kubernetes_version: String,
    /// Agent pools.
    pub agent_pools: Vec<PoolSeed>,
    /// `Running` or `Stopped`.
    pub power_state: String,
    /// `apiServerAccessProfile.enablePrivateCluster`.
    pub private: bool,
    /// `apiServerAccessProfile.enablePrivateClusterPublicFQDN` of a private cluster
    /// (AKS's default: true, the public FQDN exists; `false` as after
    /// `az aks update --disable-public-fqdn`).
    pub private_public_fqdn: Option<bool>,
    /// `apiServerAccessProfile.authorizedIPRanges`.
    pub authorized_ip_ranges: Option<Vec<String>>,
    /// Whether the emulated API server answers (defaults to `!private`).
    pub data_plane_reachable: Option<bool>,
    /// Resource tags.
    pub tags: std::collections::BTreeMap<String, String>,
}

impl Default for ClusterSeed {
    fn default() -> Self {
        Self {
            resource_group: String::new(),
            name: String::new(),
            location: default_location(),
            kubernetes_version: DEFAULT_KUBERNETES_VERSION.into(),
            agent_pools: vec![PoolSeed::default()],
            power_state: "Running".into(),
            private: false,
            private_public_fqdn: None,
            authorized_ip_ranges: None,
            data_plane_reachable: None,
            tags: Default::default(),
        }
    }
}

/// An agent pool of a seeded cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PoolSeed {
    /// Pool name.
    pub name: String,
    /// Node count.
    pub count: i64,
    /// VM size.
    pub vm_size: String,
    /// `System` or `User`.
    pub mode: String,
}

impl Default for PoolSeed {
    fn default() -> Self {
        Self {
            name: "nodepool1".into(),
            count: 3,
            vm_size: "Standard_D3_v2".into(),
            mode: "System".into(),
        }
    }
}

fn default_location() -> String {
    "eastus".into()
}

/// The default ARM bearer token: an unsigned JWT (`alg: none`, audience ARM, expiring in
/// 2100). Azure AD tokens are JWTs and clients decode them without verifying: the Azure ML
/// SDK v1 reads `exp` (and `tid`) from its ARM token before its first call, so a token that
/// is not a JWT breaks it. The emulator itself only compares the whole string.
pub fn default_token() -> String {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.emulator",
        b64(serde_json::json!({"typ": "JWT", "alg": "none"})),
        b64(serde_json::json!({
            "aud": "https://management.azure.com/",
            "iss": format!("https://sts.windows.net/{DEFAULT_TENANT}/"),
            "tid": DEFAULT_TENANT,
            "oid": "00000000-0000-0000-0000-000000000002",
            "exp": 4_102_444_800u64,
        }))
    )
}

/// Tenant of the default token.
pub const DEFAULT_TENANT: &str = "00000000-0000-0000-0000-000000000001";

/// The subscription of the embedded default seed.
pub const DEFAULT_SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";

/// The default SKU table: the general-purpose sizes people pick for AKS today and the
/// older ones still in templates, plus current GPU sizes, with Azure's vCPU counts and
/// memory (GiB) from the Azure VM size documentation and Resource SKU family names.
/// Retired sizes (e.g. `Standard_NC6`, NC v1, retired 2023) are not offered.
pub fn default_vm_sizes() -> Vec<VmSize> {
    const T: &[(&str, u32, f64, &str)] = &[
        // Dv2 / DSv2: Azure ML's default agent size is Standard_D3_v2.
        ("Standard_D2_v2", 2, 7.0, "standardDv2Family"),
        ("Standard_D3_v2", 4, 14.0, "standardDv2Family"),
        ("Standard_D4_v2", 8, 28.0, "standardDv2Family"),
        ("Standard_D5_v2", 16, 56.0, "standardDv2Family"),
        ("Standard_DS2_v2", 2, 7.0, "standardDSv2Family"),
        ("Standard_DS3_v2", 4, 14.0, "standardDSv2Family"),
        ("Standard_DS4_v2", 8, 28.0, "standardDSv2Family"),
        // Dv3 / Dsv3
        ("Standard_D2_v3", 2, 8.0, "standardDv3Family"),
        ("Standard_D4_v3", 4, 16.0, "standardDv3Family"),
        ("Standard_D8_v3", 8, 32.0, "standardDv3Family"),
        ("Standard_D16_v3", 16, 64.0, "standardDv3Family"),
        ("Standard_D2s_v3", 2, 8.0, "standardDSv3Family"),
        ("Standard_D4s_v3", 4, 16.0, "standardDSv3Family"),
        ("Standard_D8s_v3", 8, 32.0, "standardDSv3Family"),
        ("Standard_D16s_v3", 16, 64.0, "standardDSv3Family"),
        // Dv4 / Dsv4
        ("Standard_D2s_v4", 2, 8.0, "standardDSv4Family"),
        ("Standard_D4s_v4", 4, 16.0, "standardDSv4Family"),
        ("Standard_D8s_v4", 8, 32.0, "standardDSv4Family"),
        ("Standard_D16s_v4", 16, 64.0, "standardDSv4Family"),
        // Dv5 / Dsv5 / Ddsv5 / Dasv5
        ("Standard_D2_v5", 2, 8.0, "standardDv5Family"),
        ("Standard_D4_v5", 4, 16.0, "standardDv5Family"),
        ("Standard_D8_v5", 8, 32.0, "standardDv5Family"),
        ("Standard_D16_v5", 16, 64.0, "standardDv5Family"),
        ("Standard_D2s_v5", 2, 8.0, "standardDSv5Family"),
        ("Standard_D4s_v5", 4, 16.0, "standardDSv5Family"),
        ("Standard_D8s_v5", 8, 32.0, "standardDSv5Family"),
        ("Standard_D16s_v5", 16, 64.0, "standardDSv5Family"),
        ("Standard_D2ds_v5", 2, 8.0, "standardDDSv5Family"),
        ("Standard_D4ds_v5", 4, 16.0, "standardDDSv5Family"),
        ("Standard_D8ds_v5", 8, 32.0, "standardDDSv5Family"),
        ("Standard_D16ds_v5", 16, 64.0, "standardDDSv5Family"),
        ("Standard_D4as_v5", 4, 16.0, "standardDASv5Family"),
        ("Standard_D8as_v5", 8, 32.0, "standardDASv5Family"),
        // Memory and compute optimised, burstable, entry level
        ("Standard_E4s_v5", 4, 32.0, "standardESv5Family"),
        ("Standard_E8s_v5", 8, 64.0, "standardESv5Family"),
        ("Standard_F4s_v2", 4, 8.0, "standardFSv2Family"),
        ("Standard_F8s_v2", 8, 16.0, "standardFSv2Family"),
        ("Standard_F16s_v2", 16, 32.0, "standardFSv2Family"),
        ("Standard_B2s", 2, 4.0, "standardBSFamily"),
        ("Standard_B2ms", 2, 8.0, "standardBSFamily"),
        ("Standard_A2_v2", 2, 4.0, "standardAv2Family"),
        // GPU
        ("Standard_NC4as_T4_v3", 4, 28.0, "Standard NCASv3_T4 Family"),
        ("Standard_NC8as_T4_v3", 8, 56.0, "Standard NCASv3_T4 Family"),
        (
            "Standard_NC16as_T4_v3",
            16,
            110.0,
            "Standard NCASv3_T4 Family",
        ),
        (
            "Standard_NC64as_T4_v3",
            64,
            440.0,
            "Standard NCASv3_T4 Family",
        ),
        (
            "Standard_NC24ads_A100_v4",
            24,
            220.0,
            "StandardNCADSA100v4Family",
        ),
        (
            "Standard_NC48ads_A100_v4",
            48,
            440.0,
            "StandardNCADSA100v4Family",
        ),
        (
            "Standard_NC96ads_A100_v4",
            96,
            880.0,
            "StandardNCADSA100v4Family",
        ),
        (
            "Standard_NC40ads_H100_v5",
            40,
            320.0,
            "standardNCadsH100v5Family",
        ),
        (
            "Standard_NV36ads_A10_v5",
            36,
            440.0,
            "StandardNVADSA10v5Family",
        ),
        (
            "Standard_ND96asr_v4",
            96,
            900.0,
            "standardNDASv4_A100Family",
        ),
    ];
    T.iter()
        .map(|(n, c, m, f)| VmSize {
            name: (*n).into(),
            vcpus: *c,
            memory_gb: *m,
            family: (*f).into(),
        })
        .collect()
}

/// Kubernetes versions of the default seed: AKS's three supported minors in late 2026
/// (N-2 support: 1.36 GA mid-2026, 1.35 GA spring 2026, 1.34 GA early 2026; 1.33 left
/// standard support in July 2026), two patches each as AKS offers, all released upstream.
pub const DEFAULT_KUBERNETES_VERSIONS: [&str; 6] =
    ["1.34.8", "1.34.9", "1.35.2", "1.35.3", "1.36.0", "1.36.1"];
/// The range Azure ML attaches in the default seed: one minor behind AKS (1.36 is offered
/// by AKS but not yet by Azure ML; 1.33 is out of AKS's list but still attached).
pub const DEFAULT_AZUREML_KUBERNETES_VERSIONS: [&str; 2] = ["1.33.0", "1.35.3"];
/// The default version of clusters Azure ML creates (AKS's default is N-1's newest patch).
pub const DEFAULT_KUBERNETES_VERSION: &str = "1.35.3";

impl Default for EmulatorConfig {
    /// One subscription, workspace `ml-rg/ml-ws` in `eastus`, AKS cluster `aks-rg/shared`
    /// (1.35.3, 3 × Standard_D3_v2) for attach scenarios, 5 s operations.
    fn default() -> Self {
        Self {
            token: default_token(),
            admin_token: None,
            op_seconds: 5.0,
            page_size: 20,
            kubernetes_versions: DEFAULT_KUBERNETES_VERSIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            default_kubernetes_version: Some(DEFAULT_KUBERNETES_VERSION.into()),
            azureml_kubernetes_versions: Some(
                DEFAULT_AZUREML_KUBERNETES_VERSIONS.map(String::from),
            ),
            vm_sizes: default_vm_sizes(),
            auto_certificate_days: 365,
            subscriptions: vec![SubscriptionSeed {
                id: DEFAULT_SUBSCRIPTION.into(),
                workspaces: vec![WorkspaceSeed {
                    resource_group: "ml-rg".into(),
                    name: "ml-ws".into(),
                    location: "eastus".into(),
                }],
                aks_clusters: vec![ClusterSeed {
                    resource_group: "aks-rg".into(),
                    name: "shared".into(),
                    ..ClusterSeed::default()
                }],
            }],
            faults: Vec::new(),
            throttling: None,
            budget: None,
            kubernetes_path: Default::default(),
        }
    }
}

impl EmulatorConfig {
    /// The throttling this configuration asks for (`throttling`, else `budget`, else ARM's
    /// token buckets reported and not enforced).
    pub fn throttling(&self) -> Throttling {
        match (&self.throttling, &self.budget) {
            (Some(t), _) => t.clone(),
            (None, Some(b)) => Throttling::enforced(Model::Hourly(b.clone())),
            (None, None) => Throttling::default(),
        }
    }

    /// The default seed with demo timing (operations take a few seconds, as on Azure but shorter).
    pub fn demo() -> Self {
        Self {
            op_seconds: 5.0,
            ..Self::default()
        }
    }

    /// The default seed with instant operations and small list pages: what tests want.
    pub fn for_tests() -> Self {
        Self {
            op_seconds: 0.0,
            page_size: 2,
            ..Self::default()
        }
    }

    /// An empty seed (no subscriptions) with the default versions and VM sizes.
    pub fn empty() -> Self {
        Self {
            subscriptions: Vec::new(),
            ..Self::for_tests()
        }
    }

    /// Parses a YAML (or JSON) config file body. Missing fields take their defaults.
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        Ok(serde_saphyr::from_str(text)?)
    }

    /// LRO duration.
    pub fn op_duration(&self) -> Duration {
        secs_to_duration(self.op_seconds)
    }

    /// The default Kubernetes version for new clusters.
    pub fn default_version(&self) -> String {
        if let Some(v) = &self.default_kubernetes_version {
            return v.clone();
        }
        let mut versions = self.kubernetes_versions.clone();
        versions.sort_by_key(|v| version_key(v));
        versions
            .last()
            .cloned()
            .unwrap_or_else(|| DEFAULT_KUBERNETES_VERSION.into())
    }
}

/// Converts float seconds into a Duration (negative or NaN → zero).
pub fn secs_to_duration(secs: f64) -> Duration {
    if secs.is_finite() && secs > 0.0 {
        Duration::from_secs_f64(secs)
    } else {
        Duration::ZERO
    }
}

/// Sort key of a dotted version (`1.30.4` → [1, 30, 4]); non-numeric parts count as 0.
pub fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// `major.minor` of a version.
pub fn minor_of(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}
