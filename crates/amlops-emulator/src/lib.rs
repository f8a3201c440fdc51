//! The Azure emulator: a faithful fake of the Azure Resource Manager APIs amlops uses
//! (Azure ML computes of type AKS, AKS managed clusters and agent pools, Kubernetes
//! versions, Resource SKUs), plus a tiny Kubernetes API per emulated AKS cluster, faults
//! on demand and admin endpoints. A real axum HTTP server, on loopback by default.
//!
//! In tests: `let emu = Emulator::start(EmulatorConfig::for_tests()).await?;` then talk
//! to `emu.base_url()` with `Authorization: Bearer {emu.token()}`.
//!
//! # ARM surface (bearer token and `api-version` required)
//! - `GET  …/providers/Microsoft.MachineLearningServices/workspaces/{ws}`
//!   ([`arm::WORKSPACE_VERSIONS`]: 2025-06-01, 2025-09-01, 2025-12-01; the SDK v1's 2022-05-01, 2020-01-01)
//! - `GET|PUT|DELETE …/workspaces/{ws}/computes/{name}`, `GET …/computes` (paged, `$skip`),
//!   `POST …/computes/{name}/listKeys` ([`arm::COMPUTE_VERSIONS`]: the three above and the SDK
//!   v1's 2020-02-02); PUT/DELETE are long-running (`Azure-AsyncOperation`, `Location`,
//!   `Retry-After`, `retry-after-ms`). A compute body carries every schema property, `null`
//!   when unset. A PUT on an existing name is an in-place update when it keeps type and
//!   resourceId (the SDK's GET-modify-PUT): load balancer, description, and TLS — `Disabled`,
//!   `Enabled` + cert/key, `Auto` + label, `renew: true` — applied to `azuremlfessl` and
//!   `clusterFqdn` when the operation completes.
//! - `GET /subscriptions/{s}/providers/Microsoft.MachineLearningServices/locations/{loc}/computeOperationsStatus/{id}`
//!   (always 200) and `…/computeOperationsResults/{id}` (202 while running).
//! - `GET|DELETE …/providers/Microsoft.ContainerService/managedClusters/{name}` (2025-10-01),
//!   `POST …/listClusterUserCredential|listClusterAdminCredential`, `GET …/agentPools`,
//!   `GET|PUT …/agentPools/{pool}`, `POST …/runCommand` + `GET …/commandResults/{id}`,
//!   `GET /subscriptions/{s}/providers/Microsoft.ContainerService/locations/{loc}/kubernetesVersions`,
//!   `…/locations/{loc}/operations/{id}` and `…/operationresults/{id}`.
//! - `GET /subscriptions/{s}/providers/Microsoft.Compute/skus?api-version=2021-07-01&$filter=location eq '{loc}'`.
//! - `Microsoft.KubernetesConfiguration` ([`extensions`]): `PUT|GET|PATCH|DELETE
//!   …/managedClusters/{c}/providers/Microsoft.KubernetesConfiguration/extensions/{name}`,
//!   `GET …/extensions`, `GET …/extensions/{name}/operations/{id}` (2025-03-01 and older);
//!   `GET /subscriptions/{s}/providers/{namespace}`, `POST …/register`. Computes of type
//!   `Kubernetes` on the compute paths ([`kubernetes_compute`]).
//! - Azure ML SDK v1: `GET /discovery` (no token), the alias `/rp/workspaces/subscriptions/…`
//!   of the compute GET and list (same api-versions). `tests/sdk_v1` drives the emulator with
//!   the SDK itself; the default bearer token is an unsigned JWT because the SDK decodes it.
//!
//! # AKS data plane
//! `/aks/{key}/version`, `/api`, `/apis`, `/api/v1/secrets`, `/api/v1/namespaces/{ns}/secrets[/{name}]`,
//! and what the Azure ML extension creates ([`cluster_objects`]: namespaces, Services,
//! ConfigMaps, the InstanceType CRD, InstanceType objects, Secret writes),
//! plain http, bearer token per cluster, as written in the kubeconfigs the credential calls
//! return. A private cluster's API server is unreachable (the connection is dropped).
//!
//! # Admin endpoints (no ARM token; loopback peers only; `x-admin-token` when configured)
//! `GET /admin/state`, `POST /admin/seed` (`{subscriptions:[…]}` as in the config file),
//! `POST /admin/reset`, `POST /admin/workspaces` (`{subscriptionId, resourceGroup, name, location}`),
//! `POST /admin/aks-clusters` (`{subscriptionId, resourceGroup, name, location, kubernetesVersion,
//! agentPools:[{name,count,vmSize,mode}], powerState, private, privatePublicFqdn, authorizedIpRanges,
//! dataPlaneReachable, tags}`), `GET|POST|DELETE /admin/faults`, `DELETE /admin/faults/{id}`,
//! `GET|DELETE /admin/requests`, `GET /admin/requests/counts` (by method), `PUT /admin/op-duration` (`{seconds}`),
//! `PUT|DELETE /admin/throttling` (as `throttling:` below; DELETE: back to the default),
//! `POST /admin/throttling/take` (`{subscription, class: reads|writes|deletes, count, global}`:
//! another tool spends tokens), `PUT|DELETE /admin/budget` (`{readsPerHour, writesPerHour,
//! deletesPerHour, windowSecs}`: the hourly model, enforced, everywhere),
//! `POST /admin/operations/complete` (finish everything in flight now),
//! `POST /admin/kubernetes-path` (the `kubernetesPath` seed below, applied additively).
//!
//! # Config file (`--config`, YAML, camelCase; every field optional)
//! ```yaml
//! token: my-token           # default: an unsigned JWT (config::default_token)
//! adminToken: null
//! opSeconds: 5
//! pageSize: 20
//! kubernetesVersions: ["1.34.8", "1.34.9", "1.35.2", "1.35.3", "1.36.0", "1.36.1"]
//! azuremlKubernetesVersions: ["1.33.0", "1.35.3"]   # what Azure ML attaches, by minor
//! defaultKubernetesVersion: "1.35.3"
//! vmSizes: [{name: Standard_D3_v2, vcpus: 4, memoryGb: 14, family: standardDv2Family}]
//! subscriptions:
//! - id: 00000000-0000-0000-0000-000000000000
//!   workspaces: [{resourceGroup: ml-rg, name: ml-ws, location: eastus}]
//!   aksClusters:
//!   - {resourceGroup: aks-rg, name: shared, location: eastus, kubernetesVersion: 1.35.3,
//!      agentPools: [{name: nodepool1, count: 3, vmSize: Standard_D3_v2, mode: System}]}
//! faults:
//! - {match: {method: GET, path: /computes/}, kind: {type: Throttle, retryAfterSecs: 3}, times: 2}
//! throttling:                 # ARM's throttling (module `throttle`); default: token buckets,
//!   enforce: true             # reported, not enforced
//!   default: {model: tokenBucket, reads: {bucket: 250, refillPerSecond: 25},
//!             writes: {bucket: 200, refillPerSecond: 10}, deletes: {bucket: 200, refillPerSecond: 10},
//!             globalFactor: 15}
//!   subscriptions:
//!     11111111-1111-1111-1111-111111111111: {model: hourly, readsPerHour: 12000,
//!                                            writesPerHour: 1200, deletesPerHour: 15000}
//! budget: {readsPerHour: 12000, writesPerHour: 1200}   # shorthand: hourly, enforced
//! kubernetesPath: {clusters: [], extensions: [], unregisteredProviders: [], roleGaps: []}  # see kubernetes_seed
//! ```
//! Fault kinds: `Throttle{retryAfterSecs}`, `Status{status}`, `Busy409`, `Forbidden`, `DropConnection`,
//! `Slow{ms}`, `LroFail{code, message}`; `match` has optional `method`, `path` (substring)
//! and `operation` (ARM operation name, or a suffix such as `computes/write`); `times` or
//! `probability` limit how often a rule fires. Faults apply to the data plane too.

pub mod admin;
pub mod aks;
pub mod arm;
pub mod cluster_objects;
pub mod compute;
pub mod config;
pub mod conn;
pub mod errors;
pub mod extensions;
pub mod faults;
pub mod kube_api;
pub mod kubernetes_compute;
pub mod kubernetes_seed;
pub mod lro;
pub mod state;
pub mod throttle;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{
    ClusterSeed, DEFAULT_SUBSCRIPTION, EmulatorConfig, PoolSeed, SubscriptionSeed, VmSize,
    WorkspaceSeed,
};
pub use errors::ErrorDetail;
pub use extensions::ClusterTraits;
pub use faults::{FaultKind, FaultMatch, FaultRule};
pub use kubernetes_seed::{
    ClusterTraitsSeed, ExtensionSeed, KubernetesPathSeed, ProviderSeed, RoleGapSeed,
};
pub use state::{ClusterView, ComputeView, RequestRecord, StateSnapshot, TlsSecretView};
pub use throttle::{Budget, Model as ThrottleModel, Throttling, TokenBuckets};

use conn::{ConnInfo, KillableListener};
use state::{Inner, Shared};

/// `amlops-dev emulator` command-line arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on (loopback by default; admin endpoints only answer loopback peers).
    #[arg(long, default_value = "127.0.0.1:8640", env = "AMLOPS_EMULATOR_LISTEN")]
    pub listen: SocketAddr,
    /// YAML seed file (subscriptions, workspaces, AKS clusters, versions, VM sizes, faults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Duration of long-running operations in seconds [default: 5, or the config file's opSeconds].
    #[arg(long, value_name = "N")]
    pub op_seconds: Option<f64>,
    /// Bearer token accepted on ARM calls [default: an unsigned JWT, printed at start, or the config file's token].
    #[arg(long, env = "AMLOPS_EMULATOR_TOKEN")]
    pub token: Option<String>,
}

/// Starts emulators.
pub struct Emulator;

impl Emulator {
    /// Starts an emulator on `127.0.0.1:0` (a random free port).
    pub async fn start(config: EmulatorConfig) -> anyhow::Result<EmulatorHandle> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts an emulator on the given address.
    pub async fn start_on(
        config: EmulatorConfig,
        addr: SocketAddr,
    ) -> anyhow::Result<EmulatorHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let host = if local.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], local.port()))
        } else {
            local
        };
        let base_url = format!("http://{host}");
        let shared = Shared::new(Inner::new(config, base_url.clone()));
        let app = Router::new()
            .nest("/admin", admin::router(shared.clone()))
            .fallback(arm::entry)
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let server = axum::serve(
            KillableListener::new(listener),
            app.into_make_service_with_connect_info::<ConnInfo>(),
        )
        .with_graceful_shutdown(async move {
            let _ = rx.await;
        });
        let task = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "emulator server failed");
            }
        });
        tracing::info!(url = %base_url, "Azure emulator listening");
        Ok(EmulatorHandle {
            shared,
            base_url,
            addr: local,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// A running emulator. Dropping it stops the server too (without waiting).
pub struct EmulatorHandle {
    shared: Shared,
    base_url: String,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    /// `http://127.0.0.1:{port}`: use it as the ARM endpoint.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The accepted ARM bearer token.
    pub fn token(&self) -> String {
        self.shared.lock().settings.token.clone()
    }

    /// Full state (operations that are due are completed first).
    pub fn state(&self) -> StateSnapshot {
        let mut inner = self.shared.lock();
        inner.tick(Instant::now());
        inner.snapshot()
    }

    /// Every request received so far (ARM and AKS data plane).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().log.iter().cloned().collect()
    }

    /// The requests of the log counted by HTTP method (`GET`, `PUT`, …): what a caller
    /// that only counts needs, without a copy of the log.
    pub fn request_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.lock().request_counts()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }

    /// Adds a fault rule; returns its id.
    pub fn inject_fault(&self, rule: FaultRule) -> u64 {
        self.shared.lock().faults.add(rule)
    }

    /// Removes one fault rule.
    pub fn remove_fault(&self, id: u64) -> bool {
        self.shared.lock().faults.remove(id)
    }

    /// Removes all fault rules.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Enforces the hourly model with `budget` in every subscription (`None`: back to the
    /// default, token buckets reported and not enforced); counters restart.
    pub fn set_budget(&self, budget: Option<Budget>) {
        self.set_throttling(match budget {
            Some(b) => Throttling::enforced(ThrottleModel::Hourly(b)),
            None => Throttling::default(),
        });
    }

    /// Sets the throttling models; counters restart full.
    pub fn set_throttling(&self, throttling: Throttling) {
        self.shared.lock().throttle.set(throttling);
    }

    /// "Another tool" spends `count` tokens of `class` in `subscription` (from the global
    /// bucket only when `global_only`: another principal).
    pub fn take_tokens(
        &self,
        subscription: &str,
        class: throttle::Class,
        count: u64,
        global_only: bool,
    ) {
        self.shared
            .lock()
            .throttle
            .take(subscription, class, count, global_only, Instant::now());
    }

    /// Adds (or replaces) a workspace; returns its ARM id.
    pub fn seed_workspace(&self, subscription: &str, workspace: WorkspaceSeed) -> String {
        self.shared.lock().seed_workspace(subscription, &workspace)
    }

    /// Adds (or replaces) an AKS cluster; returns its ARM id.
    pub fn seed_aks_cluster(&self, subscription: &str, cluster: ClusterSeed) -> String {
        self.shared.lock().seed_cluster(subscription, &cluster)
    }

    /// Applies a Kubernetes-path seed (cluster traits, extensions, providers, role gaps).
    ///
    /// # Errors
    /// A message naming an id that does not parse or a cluster that does not exist.
    pub fn seed_kubernetes_path(&self, seed: &KubernetesPathSeed) -> Result<(), String> {
        self.shared.lock().apply_kubernetes_path_seed(seed)
    }

    /// Duration of operations started from now on.
    pub fn set_op_duration(&self, duration: Duration) {
        self.shared.lock().settings.op_duration = duration;
    }

    /// Sets the compute list page size.
    pub fn set_page_size(&self, size: usize) {
        self.shared.lock().settings.page_size = size.max(1);
    }

    /// Sets the supported Kubernetes versions and the default one.
    pub fn set_kubernetes_versions(&self, versions: Vec<String>, default: String) {
        let mut inner = self.shared.lock();
        inner.settings.kubernetes_versions = versions;
        inner.settings.default_version = default;
    }

    /// Sets the range of Kubernetes versions Azure ML attaches (`None`: AKS's list).
    pub fn set_azureml_kubernetes_versions(&self, range: Option<[String; 2]>) {
        self.shared.lock().settings.azureml_versions = range;
    }

    /// Replaces the Resource SKUs table.
    pub fn set_vm_sizes(&self, sizes: Vec<VmSize>) {
        self.shared.lock().settings.vm_sizes = sizes;
    }

    /// Lifetime of the `Auto` certificates issued from now on (rounded down to days).
    pub fn set_auto_certificate_lifetime(&self, lifetime: Duration) {
        self.shared.lock().settings.auto_certificate_lifetime = lifetime;
    }

    /// Back to the initial config (state, log and faults).
    pub fn reset(&self) {
        self.shared.lock().reset();
    }

    /// Stops the server and waits (at most 5 s) for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `amlops-dev emulator`: serves until Ctrl-C.
pub async fn run_cli(args: EmulatorArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            EmulatorConfig::from_yaml(&text)
                .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?
        }
        None => EmulatorConfig::demo(),
    };
    if let Some(s) = args.op_seconds {
        config.op_seconds = s;
    }
    if let Some(t) = args.token {
        config.token = t;
    }
    if !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "emulator listening beyond loopback; admin endpoints still answer loopback only");
    }
    let example = config
        .subscriptions
        .iter()
        .find_map(|s| s.workspaces.first().map(|w| (s.id.clone(), w.clone())));
    let handle = Emulator::start_on(config, args.listen).await?;
    println!("Azure emulator listening on {}", handle.base_url());
    println!("ARM bearer token: {}", handle.token());
    match example {
        Some((sub, w)) => println!(
            "try: curl -H 'Authorization: Bearer {}' '{}/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}/computes?api-version=2025-09-01'   (state: {}/admin/state)",
            handle.token(),
            handle.base_url(),
            w.resource_group,
            w.name,
            handle.base_url()
        ),
        None => println!(
            "seed it: curl -X POST {}/admin/seed -d @seed.json   (state: {}/admin/state)",
            handle.base_url(),
            handle.base_url()
        ),
    }
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    handle.shutdown().await;
    Ok(())
}
