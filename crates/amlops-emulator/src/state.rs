//! The emulated Azure: workspaces, computes, AKS clusters (with their tiny data plane),
//! long-running operations, faults, throttling and the request log. One `Inner` behind a
//! std `Mutex`; handlers are synchronous functions on it, so the lock is never held
//! across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde::{Deserialize, Serialize};

use super::config::{ClusterSeed, EmulatorConfig, VmSize, WorkspaceSeed, version_key};
use super::errors::ErrorDetail;
use super::faults::{FaultRule, Faults};
use super::lro::Operation;
use super::throttle::{Throttle, Throttling};

/// Shared handle on the emulated world.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    /// Wraps a fresh world.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(Mutex::new(inner)))
    }

    /// Locks the world (a poisoned lock is still usable: state is plain data).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Settings that can change at run time.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Accepted ARM bearer token.
    pub token: String,
    /// Optional admin token.
    pub admin_token: Option<String>,
    /// LRO duration for new operations.
    pub op_duration: Duration,
    /// Compute list page size.
    pub page_size: usize,
    /// Kubernetes versions AKS offers.
    pub kubernetes_versions: Vec<String>,
    /// The range Azure ML attaches (`[lowest, highest]`, by minor); `None`: AKS's list.
    pub azureml_versions: Option<[String; 2]>,
    /// Default version of new clusters.
    pub default_version: String,
    /// Resource SKUs.
    pub vm_sizes: Vec<VmSize>,
    /// Lifetime of issued `Auto` certificates.
    pub auto_certificate_lifetime: Duration,
}

/// An Azure ML workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Subscription id as seeded.
    pub subscription: String,
    /// Resource group as seeded.
    pub resource_group: String,
    /// Name as seeded.
    pub name: String,
    /// Region.
    pub location: String,
    /// Stable GUID (`properties.workspaceId`).
    pub workspace_id: String,
}

impl Workspace {
    /// ARM id.
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
            self.subscription, self.resource_group, self.name
        )
    }
}

/// TLS settings of a compute (never the cert/key themselves: those go to the cluster's
/// `azuremlfessl` Secret, or wait in `Compute::pending_tls`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SslSettings {
    /// Disabled | Enabled | Auto.
    pub status: String,
    /// CNAME for Enabled.
    pub cname: Option<String>,
    /// Leaf domain label for Auto.
    pub leaf_domain_label: Option<String>,
    /// overwriteExistingDomain.
    pub overwrite_existing_domain: bool,
}

/// Certificate and key sent with `sslConfiguration.status = Enabled`.
#[derive(Clone)]
pub struct TlsMaterial {
    /// PEM certificate.
    pub cert: String,
    /// PEM key.
    pub key: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMaterial(<redacted>)")
    }
}

/// An AKS compute of a workspace.
#[derive(Debug, Clone)]
pub struct Compute {
    /// Key of the workspace (see [`ws_key`]).
    pub workspace: String,
    /// Compute name as sent.
    pub name: String,
    /// `location` of the resource.
    pub location: String,
    /// `properties.computeLocation`.
    pub compute_location: Option<String>,
    /// `properties.description`.
    pub description: Option<String>,
    /// ARM id of the AKS cluster (attach: as sent; create: set once the cluster exists).
    pub resource_id: Option<String>,
    /// True for attached computes.
    pub attached: bool,
    /// Creating / Updating / Deleting / Succeeded / Failed / Canceled.
    pub provisioning_state: String,
    /// `provisioningErrors`.
    pub errors: Vec<ErrorDetail>,
    /// Creation timestamp.
    pub created_on: jiff::Timestamp,
    /// Last modification timestamp.
    pub modified_on: jiff::Timestamp,
    /// Requested agent count.
    pub agent_count: Option<i64>,
    /// Requested VM size.
    pub agent_vm_size: Option<String>,
    /// FastProd | DenseProd | DevTest.
    pub cluster_purpose: String,
    /// TLS settings.
    pub ssl: SslSettings,
    /// `aksNetworkingConfiguration`, as sent.
    pub networking: Option<serde_json::Value>,
    /// PublicIp | InternalLoadBalancer.
    pub load_balancer_type: String,
    /// Subnet of the internal load balancer.
    pub load_balancer_subnet: Option<String>,
    /// `clusterFqdn`.
    pub cluster_fqdn: Option<String>,
    /// Operation in flight.
    pub operation: Option<String>,
    /// Cert/key waiting for the operation to complete (never serialized).
    pub pending_tls: Option<TlsMaterial>,
    /// The pending update renews the Microsoft-issued (`Auto`) certificate.
    pub renew_tls: bool,
    /// TLS settings changed: the operation's completion rewrites `azuremlfessl`.
    pub tls_dirty: bool,
}

impl Compute {
    /// ARM id, built from the workspace.
    pub fn id(&self, ws: &Workspace) -> String {
        format!("{}/computes/{}", ws.id(), self.name)
    }
}

/// An agent pool.
#[derive(Debug, Clone)]
pub struct AgentPool {
    /// Pool name.
    pub name: String,
    /// Node count.
    pub count: i64,
    /// VM size.
    pub vm_size: String,
    /// System | User.
    pub mode: String,
    /// Succeeded / Creating / Updating / Failed.
    pub provisioning_state: String,
    /// Other properties sent by clients, echoed back.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An emulated AKS managed cluster and its data plane.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Subscription id.
    pub subscription: String,
    /// Resource group.
    pub resource_group: String,
    /// Name.
    pub name: String,
    /// Region.
    pub location: String,
    /// `kubernetesVersion`.
    pub kubernetes_version: String,
    /// Agent pools.
    pub pools: Vec<AgentPool>,
    /// Running | Stopped.
    pub power_state: String,
    /// Succeeded / Creating / Deleting ...
    pub provisioning_state: String,
    /// Private API server.
    pub private: bool,
    /// A private cluster's API server also has its public FQDN
    /// (`enablePrivateClusterPublicFQDN`, AKS's default for private clusters).
    pub private_public_fqdn: bool,
    /// `apiServerAccessProfile.authorizedIPRanges`.
    pub authorized_ip_ranges: Option<Vec<String>>,
    /// Whether `/aks/{key}/...` answers; a private cluster's API server is unreachable.
    pub data_plane_reachable: bool,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// dnsPrefix.
    pub dns_prefix: String,
    /// Public FQDN of the API server.
    pub fqdn: String,
    /// Path key of the data plane (`/aks/{key}`).
    pub key: String,
    /// Bearer token of the `clusterUser` kubeconfig.
    pub user_token: String,
    /// Bearer token of the `clusterAdmin` kubeconfig.
    pub admin_token: String,
    /// Secrets of the data plane, by (namespace, name).
    pub secrets: BTreeMap<(String, String), Secret>,
    /// Azure ML's objects installed on the cluster (names, for assertions).
    pub azureml_components: Vec<String>,
    /// Compute key (see [`compute_key`]) Azure ML's objects currently belong to.
    pub attached_compute: Option<String>,
    /// Compute key of the compute that created this cluster.
    pub created_by: Option<String>,
    /// Agent-pool or cluster operation in flight: (op id, pool name).
    pub operation: Option<(String, String)>,
    /// eTag (changes on every write).
    pub etag: String,
    /// resourceUID.
    pub uid: String,
}

impl Cluster {
    /// ARM id.
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    /// Total nodes.
    pub fn node_count(&self) -> i64 {
        self.pools.iter().map(|p| p.count).sum()
    }
}

/// One request received (for assertions; never headers or bodies, so no secrets).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// Sequence number.
    pub seq: u64,
    /// RFC 3339 timestamp.
    pub timestamp: String,
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Response status (0 when the connection was dropped).
    pub status: u16,
    /// ARM operation name (or `kube:...` for the AKS data plane, `unknown`).
    pub operation: String,
    /// Subscription of the request, if any.
    pub subscription: Option<String>,
    /// Fault applied, if any.
    pub fault: Option<String>,
    /// Handling time in milliseconds.
    pub duration_ms: u64,
}

/// The emulated world.
pub struct Inner {
    /// Runtime settings.
    pub settings: Settings,
    /// Workspaces by [`ws_key`].
    pub workspaces: BTreeMap<String, Workspace>,
    /// Computes by [`compute_key`].
    pub computes: BTreeMap<String, Compute>,
    /// Clusters by lowercased ARM id.
    pub clusters: BTreeMap<String, Cluster>,
    /// Operations by id.
    pub operations: HashMap<String, Operation>,
    /// Faults.
    pub faults: Faults,
    /// ARM's throttling, per subscription.
    pub throttle: Throttle,
    /// Request log (the oldest entries go beyond [`LOG_LIMIT`]).
    pub log: std::collections::VecDeque<RequestRecord>,
    /// Next request sequence number.
    pub next_seq: u64,
    /// AKS Run Command results by id.
    pub command_results: HashMap<String, super::aks::CommandResult>,
    /// Auto-TLS domains by (label, location) → fqdn: the label's domain, kept by Azure ML
    /// for `overwriteExistingDomain`.
    pub leaf_domains: HashMap<(String, String), String>,
    /// Auto-TLS host names that resolve now (lowercase). The DNS label belongs to the
    /// public IP of the cluster's `azureml-fe` service: a detach removes the service, its
    /// IP and the name; only an `Auto` attach creates it again.
    pub dns_records: std::collections::BTreeSet<String>,
    /// URL of the server (`http://127.0.0.1:port`), used when a request has no Host header.
    pub base_url: String,
    /// The config the world was built from (for reset).
    pub config: EmulatorConfig,
    /// The Kubernetes-compute path: extensions, Kubernetes computes, cluster objects.
    pub ext: super::extensions::ExtensionWorld,
}

/// Maximum number of request log entries kept (long benchmarks must not grow without bound).
pub const LOG_LIMIT: usize = 200_000;

/// Key of a workspace: lowercased `sub/rg/ws` (ARM names are case-insensitive).
pub fn ws_key(sub: &str, rg: &str, ws: &str) -> String {
    format!("{sub}/{rg}/{ws}").to_ascii_lowercase()
}

/// Key of a compute: workspace key + `/` + lowercased name.
pub fn compute_key(ws_key: &str, name: &str) -> String {
    format!("{ws_key}/{}", name.to_ascii_lowercase())
}

/// Key of a cluster: its lowercased ARM id (accepts `resourcegroups` in any case).
pub fn cluster_key(sub: &str, rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.containerservice/managedclusters/{name}"
    )
    .to_ascii_lowercase()
}

/// Parses an AKS resource id into (subscription, resource group, name).
pub fn parse_cluster_id(id: &str) -> Option<(String, String, String)> {
    let segs: Vec<&str> = id.trim_matches('/').split('/').collect();
    if segs.len() != 8 {
        return None;
    }
    let lit = |i: usize, s: &str| segs[i].eq_ignore_ascii_case(s);
    if lit(0, "subscriptions")
        && lit(2, "resourceGroups")
        && lit(4, "providers")
        && lit(5, "Microsoft.ContainerService")
        && lit(6, "managedClusters")
        && segs.iter().all(|s| !s.is_empty())
    {
        Some((segs[1].into(), segs[3].into(), segs[7].into()))
    } else {
        None
    }
}

/// Random lowercase hex string.
pub fn rand_hex(len: usize) -> String {
    let mut s = String::with_capacity(len);
    while s.len() < len {
        s.push_str(&format!("{:016x}", rand::random::<u64>()));
    }
    s.truncate(len);
    s
}

/// ARM's timestamp format (`2021-04-01T22:00:00.0000000+00:00`).
pub fn arm_time(ts: jiff::Timestamp) -> String {
    format!(
        "{}.{:07}+00:00",
        ts.strftime("%Y-%m-%dT%H:%M:%S"),
        ts.subsec_nanosecond() / 100
    )
}

impl Inner {
    /// Builds the world from a config.
    pub fn new(config: EmulatorConfig, base_url: String) -> Self {
        let mut inner = Inner {
            settings: settings_of(&config),
            workspaces: BTreeMap::new(),
            computes: BTreeMap::new(),
            clusters: BTreeMap::new(),
            operations: HashMap::new(),
            faults: Faults::default(),
            throttle: Throttle::default(),
            log: Default::default(),
            next_seq: 0,
            leaf_domains: HashMap::new(),
            dns_records: Default::default(),
            command_results: HashMap::new(),
            base_url,
            config: config.clone(),
            ext: Default::default(),
        };
        inner.apply_seed(&config);
        if let Err(e) = inner.apply_kubernetes_path_seed(&config.kubernetes_path) {
            tracing::warn!(error = %e, "kubernetesPath seed not applied");
        }
        for f in &config.faults {
            inner.faults.add(f.clone());
        }
        inner.throttle.set(config.throttling());
        inner
    }

    /// Back to the config the world was built from (log and faults cleared).
    pub fn reset(&mut self) {
        let fresh = Inner::new(self.config.clone(), self.base_url.clone());
        *self = fresh;
    }

    /// Adds subscriptions/workspaces/clusters of a seed (existing ones are replaced).
    pub fn apply_seed(&mut self, config: &EmulatorConfig) {
        for sub in &config.subscriptions {
            for ws in &sub.workspaces {
                self.seed_workspace(&sub.id, ws);
            }
            for c in &sub.aks_clusters {
                self.seed_cluster(&sub.id, c);
            }
        }
    }

    /// Adds (or replaces) a workspace.
    pub fn seed_workspace(&mut self, subscription: &str, ws: &WorkspaceSeed) -> String {
        let w = Workspace {
            subscription: subscription.into(),
            resource_group: ws.resource_group.clone(),
            name: ws.name.clone(),
            location: ws.location.clone(),
            workspace_id: uuid::Uuid::new_v4().to_string(),
        };
        let id = w.id();
        self.workspaces
            .insert(ws_key(subscription, &ws.resource_group, &ws.name), w);
        id
    }

    /// Adds (or replaces) an AKS cluster; returns its ARM id.
    pub fn seed_cluster(&mut self, subscription: &str, seed: &ClusterSeed) -> String {
        let pools = seed
            .agent_pools
            .iter()
            .map(|p| AgentPool {
                name: p.name.clone(),
                count: p.count,
                vm_size: p.vm_size.clone(),
                mode: p.mode.clone(),
                provisioning_state: "Succeeded".into(),
                extra: Default::default(),
            })
            .collect();
        let mut cluster = new_cluster(
            subscription,
            &seed.resource_group,
            &seed.name,
            &seed.location,
            &seed.kubernetes_version,
            pools,
        );
        cluster.power_state = seed.power_state.clone();
        cluster.private = seed.private;
        cluster.private_public_fqdn = seed.private_public_fqdn.unwrap_or(true);
        cluster.authorized_ip_ranges = seed.authorized_ip_ranges.clone();
        cluster.data_plane_reachable = seed.data_plane_reachable.unwrap_or(!seed.private);
        cluster.tags = seed.tags.clone();
        let key = cluster_key(subscription, &seed.resource_group, &seed.name);
        // Re-seeding keeps the data plane identity so handed-out kubeconfigs stay valid.
        if let Some(old) = self.clusters.get(&key) {
            cluster.key = old.key.clone();
            cluster.user_token = old.user_token.clone();
            cluster.admin_token = old.admin_token.clone();
            cluster.secrets = old.secrets.clone();
            cluster.azureml_components = old.azureml_components.clone();
            cluster.attached_compute = old.attached_compute.clone();
        }
        let id = cluster.id();
        self.clusters.insert(key, cluster);
        id
    }

    /// vCPUs of a VM size (case-insensitive), if the SKU exists.
    pub fn vcpus(&self, vm_size: &str) -> Option<u32> {
        self.settings
            .vm_sizes
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(vm_size))
            .map(|s| s.vcpus)
    }

    /// (min, max) of the Kubernetes versions Azure ML attaches (compared by minor).
    pub fn version_range(&self) -> (String, String) {
        if let Some([min, max]) = &self.settings.azureml_versions {
            return (min.clone(), max.clone());
        }
        let mut v = self.settings.kubernetes_versions.clone();
        v.sort_by_key(|s| version_key(s));
        (
            v.first().cloned().unwrap_or_default(),
            v.last().cloned().unwrap_or_default(),
        )
    }

    /// The request log counted by HTTP method.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for r in &self.log {
            *counts.entry(r.method.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Appends to the request log.
    pub fn record(&mut self, mut rec: RequestRecord) {
        self.next_seq += 1;
        rec.seq = self.next_seq;
        if self.log.len() >= LOG_LIMIT {
            self.log.pop_front();
        }
        self.log.push_back(rec);
    }

    /// The full state, for assertions.
    pub fn snapshot(&self) -> StateSnapshot {
        let workspaces = self
            .workspaces
            .values()
            .map(|w| WorkspaceView {
                id: w.id(),
                subscription_id: w.subscription.clone(),
                resource_group: w.resource_group.clone(),
                name: w.name.clone(),
                location: w.location.clone(),
            })
            .collect();
        let computes = self
            .computes
            .values()
            .filter_map(|c| {
                let ws = self.workspaces.get(&c.workspace)?;
                Some(ComputeView {
                    id: c.id(ws),
                    name: c.name.clone(),
                    workspace_id: ws.id(),
                    provisioning_state: c.provisioning_state.clone(),
                    is_attached_compute: c.attached,
                    resource_id: c.resource_id.clone(),
                    provisioning_errors: c.errors.clone(),
                    cluster_purpose: c.cluster_purpose.clone(),
                    ssl_status: c.ssl.status.clone(),
                    cluster_fqdn: c.cluster_fqdn.clone(),
                    load_balancer_type: c.load_balancer_type.clone(),
                    load_balancer_subnet: c.load_balancer_subnet.clone(),
                    ssl_cname: c.ssl.cname.clone(),
                    leaf_domain_label: c.ssl.leaf_domain_label.clone(),
                    aks_networking_configuration: c.networking.clone(),
                    description: c.description.clone(),
                })
            })
            .collect();
        let clusters = self
            .clusters
            .values()
            .map(|c| ClusterView {
                id: c.id(),
                subscription_id: c.subscription.clone(),
                resource_group: c.resource_group.clone(),
                name: c.name.clone(),
                location: c.location.clone(),
                kubernetes_version: c.kubernetes_version.clone(),
                power_state: c.power_state.clone(),
                provisioning_state: c.provisioning_state.clone(),
                private: c.private,
                authorized_ip_ranges: c.authorized_ip_ranges.clone(),
                agent_pools: c
                    .pools
                    .iter()
                    .map(|p| PoolView {
                        name: p.name.clone(),
                        count: p.count,
                        vm_size: p.vm_size.clone(),
                        mode: p.mode.clone(),
                        provisioning_state: p.provisioning_state.clone(),
                    })
                    .collect(),
                attached_compute: c.attached_compute.as_ref().and_then(|k| {
                    let comp = self.computes.get(k)?;
                    Some(comp.id(self.workspaces.get(&comp.workspace)?))
                }),
                azureml_components: c.azureml_components.clone(),
                azuremlfessl: c.tls_secret(),
                secrets: c
                    .secrets
                    .keys()
                    .map(|(ns, n)| format!("{ns}/{n}"))
                    .collect(),
                data_plane_path: format!("/aks/{}", c.key),
            })
            .collect();
        let mut operations: Vec<_> = self.operations.values().map(|o| o.view()).collect();
        operations.sort_by(|a, b| a.start_time.cmp(&b.start_time));
        StateSnapshot {
            dns_records: self.dns_records.iter().cloned().collect(),
            extensions: self
                .ext
                .extensions
                .values()
                .map(super::extensions::extension_json)
                .collect(),
            kubernetes_computes: self
                .ext
                .computes
                .values()
                .filter_map(|c| super::kubernetes_compute::compute_json(self, c))
                .collect(),
            workspaces,
            computes,
            clusters,
            operations,
            faults: self.faults.list(),
            throttling: self.throttle.config.clone(),
            op_seconds: self.settings.op_duration.as_secs_f64(),
        }
    }
}

/// Settings derived from a config.
pub fn settings_of(config: &EmulatorConfig) -> Settings {
    Settings {
        token: config.token.clone(),
        admin_token: config.admin_token.clone(),
        op_duration: config.op_duration(),
        page_size: config.page_size.max(1),
        kubernetes_versions: config.kubernetes_versions.clone(),
        azureml_versions: config.azureml_kubernetes_versions.clone(),
        default_version: config.default_version(),
        vm_sizes: config.vm_sizes.clone(),
        auto_certificate_lifetime: Duration::from_secs(
            u64::from(config.auto_certificate_days.max(1)) * 86_400,
        ),
    }
}

/// A new running cluster with a fresh data plane identity.
pub fn new_cluster(
    subscription: &str,
    rg: &str,
    name: &str,
    location: &str,
    version: &str,
    pools: Vec<AgentPool>,
) -> Cluster {
    let dns_prefix = format!(
        "{}-{}-{}",
        name.chars().take(20).collect::<String>(),
        rg.chars().take(10).collect::<String>(),
        &subscription.chars().take(6).collect::<String>()
    );
    let suffix = rand_hex(8);
    Cluster {
        subscription: subscription.into(),
        resource_group: rg.into(),
        name: name.into(),
        location: location.into(),
        kubernetes_version: version.into(),
        pools,
        power_state: "Running".into(),
        provisioning_state: "Succeeded".into(),
        private: false,
        private_public_fqdn: true,
        authorized_ip_ranges: None,
        data_plane_reachable: true,
        tags: BTreeMap::new(),
        fqdn: format!("{dns_prefix}-{suffix}.hcp.{location}.azmk8s.io"),
        dns_prefix,
        key: rand_hex(12),
        user_token: rand_hex(40),
        admin_token: rand_hex(40),
        secrets: BTreeMap::new(),
        azureml_components: Vec::new(),
        attached_compute: None,
        created_by: None,
        operation: None,
        etag: uuid::Uuid::new_v4().to_string(),
        uid: rand_hex(24),
    }
}

/// Full state, for assertions (`GET /admin/state`, `EmulatorHandle::state`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateSnapshot {
    /// Workspaces.
    pub workspaces: Vec<WorkspaceView>,
    /// Computes.
    pub computes: Vec<ComputeView>,
    /// AKS clusters.
    pub clusters: Vec<ClusterView>,
    /// Long-running operations (in flight and finished).
    pub operations: Vec<OperationView>,
    /// Active faults.
    pub faults: Vec<FaultRule>,
    /// Throttling models and whether they are enforced.
    pub throttling: Throttling,
    /// Current LRO duration.
    pub op_seconds: f64,
    /// Cluster extensions, as ARM returns them (never protected settings).
    #[serde(default)]
    pub extensions: Vec<serde_json::Value>,
    /// Kubernetes computes, as ARM returns them.
    #[serde(default)]
    pub kubernetes_computes: Vec<serde_json::Value>,
    /// Microsoft-issued (`Auto`) host names that resolve now (lowercase).
    #[serde(default)]
    pub dns_records: Vec<String>,
}

impl StateSnapshot {
    /// The compute with this name (case-insensitive), in any workspace.
    pub fn compute(&self, name: &str) -> Option<&ComputeView> {
        self.computes
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The cluster with this name (case-insensitive), in any resource group.
    pub fn cluster(&self, name: &str) -> Option<&ClusterView> {
        self.clusters
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// A workspace in the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceView {
    /// ARM id.
    pub id: String,
    /// Subscription.
    pub subscription_id: String,
    /// Resource group.
    pub resource_group: String,
    /// Name.
    pub name: String,
    /// Region.
    pub location: String,
}

/// A compute in the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputeView {
    /// ARM id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Workspace ARM id.
    pub workspace_id: String,
    /// provisioningState.
    pub provisioning_state: String,
    /// isAttachedCompute.
    pub is_attached_compute: bool,
    /// resourceId.
    pub resource_id: Option<String>,
    /// provisioningErrors.
    pub provisioning_errors: Vec<ErrorDetail>,
    /// clusterPurpose.
    pub cluster_purpose: String,
    /// sslConfiguration.status.
    pub ssl_status: String,
    /// clusterFqdn.
    pub cluster_fqdn: Option<String>,
    /// loadBalancerType.
    pub load_balancer_type: String,
    /// loadBalancerSubnet.
    pub load_balancer_subnet: Option<String>,
    /// sslConfiguration.cname.
    pub ssl_cname: Option<String>,
    /// sslConfiguration.leafDomainLabel.
    pub leaf_domain_label: Option<String>,
    /// aksNetworkingConfiguration, as sent at create.
    pub aks_networking_configuration: Option<serde_json::Value>,
    /// description.
    pub description: Option<String>,
}

/// A cluster in the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// ARM id.
    pub id: String,
    /// Subscription.
    pub subscription_id: String,
    /// Resource group.
    pub resource_group: String,
    /// Name.
    pub name: String,
    /// Region.
    pub location: String,
    /// Kubernetes version.
    pub kubernetes_version: String,
    /// Running | Stopped.
    pub power_state: String,
    /// provisioningState.
    pub provisioning_state: String,
    /// Private API server.
    pub private: bool,
    /// Authorized IP ranges.
    pub authorized_ip_ranges: Option<Vec<String>>,
    /// Agent pools.
    pub agent_pools: Vec<PoolView>,
    /// ARM id of the compute Azure ML's objects belong to.
    pub attached_compute: Option<String>,
    /// Azure ML's objects on the cluster.
    pub azureml_components: Vec<String>,
    /// Content of Secret `default/azuremlfessl`, if present.
    pub azuremlfessl: Option<TlsSecretView>,
    /// All secrets, as `namespace/name`.
    pub secrets: Vec<String>,
    /// Path prefix of the data plane on the emulator.
    pub data_plane_path: String,
}

/// An agent pool in the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolView {
    /// Name.
    pub name: String,
    /// Node count.
    pub count: i64,
    /// VM size.
    pub vm_size: String,
    /// Mode.
    pub mode: String,
    /// provisioningState.
    pub provisioning_state: String,
}

/// `azuremlfessl` content (decoded PEM).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSecretView {
    /// `cert.pem`.
    pub cert_pem: String,
    /// `key.pem`.
    pub key_pem: String,
}

/// An operation in the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationView {
    /// Operation id.
    pub id: String,
    /// Create / Attach / Update / Delete / Detach / Scale / DeleteCluster.
    pub kind: String,
    /// ARM id of the target.
    pub target: String,
    /// InProgress / Succeeded / Failed / Canceled.
    pub status: String,
    /// Start time.
    pub start_time: String,
    /// End time.
    pub end_time: Option<String>,
    /// Error of a failed operation.
    pub error: Option<ErrorDetail>,
}
