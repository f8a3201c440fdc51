//! The benchmark's world: an emulator seed with workspaces and AKS clusters, N
//! resources (a fixed, documented mix of kinds and TLS modes, see [`member`]), the
//! in-memory Kubernetes store, and an ARM client that counts every attempt by the kind of
//! the resource whose reconcile made it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde::Serialize;
use serde_json::json;

use amlops::azure::{
    ArmClient, ArmClientConfig, ArmObserver, ArmThrottling, Attempt, AzureCloud, CredentialConfig,
    RateLimitConfig, RetryPolicy, config::Secret as Token,
};
use amlops::crd::{AzureMLExtension, ClusterAttachment, InferenceCluster, KubernetesCompute};
use amlops::engine::kubernetes_compute::ComputeDesired;
use amlops::engine::store::Claim;
use amlops::engine::{Desired, Engine};
use amlops_emulator::{ClusterSeed, EmulatorConfig, SubscriptionSeed, WorkspaceSeed};
use amlops_testkit::MemoryStore;

use super::sched::Object;

/// Namespace of the benchmark's resources.
pub const NAMESPACE: &str = "bench";
/// Secret holding the certificate of the `Custom` TLS attachments.
pub const TLS_SECRET: &str = "bench-tls";

tokio::task_local! {
    /// The kind of the resource whose reconcile runs in this task (set by the scheduler), so
    /// that [`Counters`] can tell each kind's ARM requests apart.
    pub static KIND: &'static str;
}

/// Kind of an attempt made outside any reconcile (none is expected).
pub const NO_KIND: &str = "other";

/// Counts of ARM attempts by (kind, operation, method, status class), as the client saw
/// them; the kind is that of the reconcile that made the attempt ([`KIND`]).
#[derive(Default)]
pub struct Counters {
    counts: Mutex<BTreeMap<TallyKey, u64>>,
    latency: Mutex<Vec<Duration>>,
}

/// (kind, operation, method, status class).
pub type TallyKey = (&'static str, &'static str, &'static str, &'static str);

impl ArmObserver for Counters {
    fn on_attempt(&self, a: &Attempt) {
        let kind = KIND.try_with(|k| *k).unwrap_or(NO_KIND);
        let mut m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((kind, a.operation, a.method, a.status.as_str()))
            .or_default() += 1;
        drop(m);
        self.latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(a.duration);
    }
}

impl Counters {
    /// Current counts.
    pub fn snapshot(&self) -> Tally {
        Tally(
            self.counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
    /// Round-trip times of the attempts since the last call.
    pub fn take_latency(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.latency.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A snapshot of [`Counters`]; subtract two to get a phase's requests.
#[derive(Clone, Debug, Default)]
pub struct Tally(pub BTreeMap<TallyKey, u64>);

impl Tally {
    /// `self - earlier`.
    pub fn since(&self, earlier: &Tally) -> Tally {
        let mut out = BTreeMap::new();
        for (k, v) in &self.0 {
            let d = v - earlier.0.get(k).copied().unwrap_or(0);
            if d > 0 {
                out.insert(*k, d);
            }
        }
        Tally(out)
    }
    fn sum(&self, f: impl Fn(&(&str, &str, &str)) -> bool) -> u64 {
        self.0
            .iter()
            .filter(|((_, op, method, status), _)| f(&(op, method, status)))
            .map(|(_, v)| v)
            .sum()
    }
    /// The attempts made by reconciles of `kind`.
    pub fn of_kind(&self, kind: &str) -> Tally {
        Tally(
            self.0
                .iter()
                .filter(|(k, _)| k.0 == kind)
                .map(|(k, v)| (*k, *v))
                .collect(),
        )
    }
    /// Every attempt.
    pub fn total(&self) -> u64 {
        self.sum(|_| true)
    }
    /// GET attempts (ARM reads).
    pub fn reads(&self) -> u64 {
        self.sum(|k| k.1 == "GET")
    }
    /// PUT/POST/DELETE/PATCH attempts (ARM writes).
    pub fn writes(&self) -> u64 {
        self.sum(|k| k.1 != "GET" && k.1 != "HEAD")
    }
    /// Attempts ARM answered 429.
    pub fn throttled(&self) -> u64 {
        self.sum(|k| k.2 == "429")
    }
    /// Attempts of one operation (any method and status).
    pub fn operation(&self, op: &str) -> u64 {
        self.sum(|k| k.0 == op)
    }
    /// Attempts of one operation answered 2xx.
    pub fn operation_ok(&self, op: &str) -> u64 {
        self.sum(|k| k.0 == op && k.2 == "2xx")
    }
    /// Per-operation totals, for the report.
    pub fn by_operation(&self) -> BTreeMap<String, OpCount> {
        let mut out: BTreeMap<String, OpCount> = BTreeMap::new();
        for ((_, op, method, status), n) in &self.0 {
            let e = out.entry(format!("{method} {op}")).or_default();
            e.total += n;
            if *status == "429" {
                e.throttled += n;
            } else if *status != "2xx" {
                e.failed += n;
            }
        }
        out
    }
}

/// Attempts of one operation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OpCount {
    /// All attempts.
    pub total: u64,
    /// Answered 429.
    pub throttled: u64,
    /// Other non-2xx answers or no answer (404 on a first GET included).
    pub failed: u64,
}

/// Which path's kinds the benchmark drives (`--path`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Path {
    /// `InferenceCluster` and `ClusterAttachment` only: of every 40 resources, the legacy mix
    /// (the figures of BENCHMARKS.md before the Kubernetes compute path).
    Legacy,
    /// `AzureMLExtension` and `KubernetesCompute` only: of every 10, 2 extensions and 8
    /// computes.
    Kubernetes,
    /// Both: of every 5, 4 of the legacy mix then 1 of the Kubernetes path (of every 50, the
    /// 40 of the legacy mix and the 10 of the Kubernetes path).
    #[default]
    Both,
}

impl Path {
    /// `legacy`, `kubernetes` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Legacy => "legacy",
            Self::Kubernetes => "kubernetes",
            Self::Both => "both",
        }
    }
}

/// What resource `i` of the mix is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    /// Resource number `j` of the legacy mix ([`spec_of`]).
    Legacy(usize),
    /// `AzureMLExtension` number `e` ([`extension_spec`]).
    Extension(usize),
    /// `KubernetesCompute` `slot` (0–3) of extension `extension` ([`compute_spec`]).
    Compute {
        /// The extension's number.
        extension: usize,
        /// Which of its four computes.
        slot: usize,
    },
}

/// Resources of the Kubernetes path per block of the mix: 2 extensions, 4 computes each.
const KPATH_BLOCK: usize = 10;
/// Resources of the legacy mix per block.
const LEGACY_BLOCK: usize = 40;

/// Resource `i` of the `path` mix (documented in BENCHMARKS.md, "The mix"): `legacy`, the
/// legacy mix ([`spec_of`]); `kubernetes`, of every 10 resources 2 `AzureMLExtension`s each
/// followed by its 4 `KubernetesCompute`s; `both`, of every 5 resources 4 of the legacy mix
/// then 1 of the Kubernetes path (so of every 50, the 40 of the legacy mix and those 10).
/// Each extension comes before its computes (applied in order, a compute finds its
/// extension already applied).
pub fn member(path: Path, i: usize) -> Member {
    let kpath = |k: usize| {
        let (block, r) = (k / KPATH_BLOCK, k % KPATH_BLOCK);
        let extension = block * 2 + r / 5;
        match r % 5 {
            0 => Member::Extension(extension),
            s => Member::Compute {
                extension,
                slot: s - 1,
            },
        }
    };
    match path {
        Path::Legacy => Member::Legacy(i),
        Path::Kubernetes => kpath(i),
        // Interleaved, so that any N (and any stretch of an --apply-rate run) holds both.
        Path::Both => {
            let group = (LEGACY_BLOCK + KPATH_BLOCK) / KPATH_BLOCK;
            let (g, r) = (i / group, i % group);
            if r < group - 1 {
                Member::Legacy(g * (group - 1) + r)
            } else {
                kpath(g)
            }
        }
    }
}

/// How the resources are generated.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Number of resources.
    pub resources: usize,
    /// Which kinds.
    pub path: Path,
    /// Subscriptions they are spread over (round robin).
    pub subscriptions: usize,
    /// Computes per workspace.
    pub per_workspace: usize,
}

/// Subscription id number `s`.
pub fn subscription(s: usize) -> String {
    format!("bbbbbbbb-0000-0000-0000-{s:012}")
}

/// The Secret of the `Custom` TLS attachments and of the extensions that serve HTTPS: a
/// self-signed certificate for the `cname` [`spec_of`] and [`extension_spec`] give them.
pub fn bench_tls_secret() -> anyhow::Result<Secret> {
    amlops_testkit::self_signed_tls_secret(NAMESPACE, TLS_SECRET, "scoring.bench.example")
}

/// Resource `j` of the legacy mix, documented in BENCHMARKS.md: of every 40 resources, 30
/// are `InferenceCluster`s (FastProd, 3 × Standard_D3_v2; 4 of them with `tls.mode: Auto`,
/// whose certificate is backed up on Ready) and 10 are `ClusterAttachment`s of seeded AKS
/// clusters (FastProd; 5 of them with `tls.mode: Custom` from a Secret). The Kubernetes
/// path's kinds join them per [`member`] ([`extension_spec`], [`compute_spec`]).
pub fn spec_of(i: usize, sub: &str, workspace: &str) -> serde_json::Value {
    let name = format!("bench{i:05}");
    let ws = json!({"subscriptionId": sub, "resourceGroup": "ml-rg", "name": workspace});
    let meta = json!({"name": name, "namespace": NAMESPACE, "generation": 1});
    if i % 4 == 3 {
        let tls = if i % 8 == 7 {
            json!({"mode": "Custom", "cname": "scoring.bench.example", "secretRef": {"name": TLS_SECRET}})
        } else {
            json!({"mode": "Disabled"})
        };
        json!({
            "apiVersion": "amlops.dev/v1alpha1", "kind": "ClusterAttachment", "metadata": meta,
            "spec": {
                "workspace": ws,
                "aksCluster": {"resourceGroup": "aks-rg", "name": format!("aks{i:05}")},
                "tls": tls,
            }
        })
    } else {
        let tls = if i.is_multiple_of(10) {
            json!({"mode": "Auto", "leafDomainLabel": format!("b{i:05}")})
        } else {
            json!({"mode": "Disabled"})
        };
        json!({
            "apiVersion": "amlops.dev/v1alpha1", "kind": "InferenceCluster", "metadata": meta,
            "spec": {"workspace": ws, "tls": tls}
        })
    }
}

/// Name of `AzureMLExtension` number `e`.
pub fn extension_name(e: usize) -> String {
    format!("ext{e:05}")
}

/// The AKS cluster of extension `e` (resource group `aks-rg`, seeded with 3 nodes).
pub fn extension_cluster(e: usize) -> String {
    format!("kaks{e:05}")
}

/// `AzureMLExtension` number `e`, on its own seeded cluster ([`extension_cluster`]): training
/// on; the even ones also serve inference behind a LoadBalancer over HTTPS with the
/// certificate of [`TLS_SECRET`] (protected settings), the odd ones training only.
pub fn extension_spec(e: usize, sub: &str) -> serde_json::Value {
    let inference = if e.is_multiple_of(2) {
        json!({"enabled": true, "routerServiceType": "LoadBalancer",
               "tls": {"mode": "Enabled", "cname": "scoring.bench.example",
                       "secretRef": {"name": TLS_SECRET}}})
    } else {
        json!({"enabled": false})
    };
    json!({
        "apiVersion": "amlops.dev/v1alpha1", "kind": "AzureMLExtension",
        "metadata": {"name": extension_name(e), "namespace": NAMESPACE, "generation": 1},
        "spec": {
            "cluster": {"resourceId": format!(
                "/subscriptions/{sub}/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/{}",
                extension_cluster(e))},
            "extensionName": "azureml",
            "training": {"enabled": true},
            "inference": inference,
        }
    })
}

/// Namespace on the cluster of compute `slot` of an extension.
pub fn compute_namespace(slot: usize) -> String {
    format!("team-{slot}")
}

/// Whether compute `slot` creates its namespace (`createNamespace`); the others' namespaces
/// are created on the cluster before the run, as a platform team would.
pub fn creates_namespace(slot: usize) -> bool {
    slot % 2 == 1
}

/// `KubernetesCompute` `slot` (0–3) of extension `e`, through `extensionRef`, in namespace
/// `team-{slot}` of the cluster; slots 1 and 3 with `createNamespace`, slot 0 with a
/// system-assigned identity.
pub fn compute_spec(e: usize, slot: usize, sub: &str, workspace: &str) -> serde_json::Value {
    let mut spec = json!({
        "workspace": {"subscriptionId": sub, "resourceGroup": "ml-rg", "name": workspace},
        "extensionRef": {"name": extension_name(e)},
        "namespace": compute_namespace(slot),
        "createNamespace": creates_namespace(slot),
    });
    if slot == 0 {
        spec["identity"] = json!({"type": "SystemAssigned"});
    }
    json!({
        "apiVersion": "amlops.dev/v1alpha1", "kind": "KubernetesCompute",
        "metadata": {"name": format!("kc{e:05}s{slot}"), "namespace": NAMESPACE, "generation": 1},
        "spec": spec,
    })
}

/// The engine's view of a generated legacy manifest.
pub fn desired_of(v: serde_json::Value) -> anyhow::Result<Desired> {
    Ok(match v["kind"].as_str() {
        Some("ClusterAttachment") => {
            Desired::from_cluster_attachment(&serde_json::from_value::<ClusterAttachment>(v)?)
        }
        _ => Desired::from_inference_cluster(&serde_json::from_value::<InferenceCluster>(v)?),
    })
}

/// Emulator config for a benchmark: no seed, realistic page size.
pub fn emulator_config(op_seconds: f64) -> EmulatorConfig {
    EmulatorConfig {
        op_seconds,
        page_size: 20,
        subscriptions: Vec::new(),
        ..EmulatorConfig::default()
    }
}

/// Adds the workspaces and AKS clusters the resources need to the emulator's seed
/// (`config`) and returns the resources' manifests, in order ([`member`]). Legacy resources
/// go round robin over the subscriptions, each extension with its computes into one; every
/// resource that names a workspace (all but the extensions) takes the next place in its
/// subscription's workspaces of `per_workspace`.
pub fn populate(config: &mut EmulatorConfig, shape: &Shape) -> Vec<serde_json::Value> {
    let subs = shape.subscriptions.max(1);
    let per_ws = shape.per_workspace.max(1);
    let mut in_sub = vec![0usize; subs];
    let mut out = Vec::with_capacity(shape.resources);
    let mut seeds: Vec<SubscriptionSeed> = (0..subs)
        .map(|s| SubscriptionSeed {
            id: subscription(s),
            ..Default::default()
        })
        .collect();
    let mut workspace_of = |s: usize, seeds: &mut Vec<SubscriptionSeed>| {
        let k = in_sub[s];
        in_sub[s] += 1;
        let workspace = format!("ws{:04}", k / per_ws);
        if k.is_multiple_of(per_ws) {
            seeds[s].workspaces.push(WorkspaceSeed {
                resource_group: "ml-rg".into(),
                name: workspace.clone(),
                location: "eastus".into(),
            });
        }
        workspace
    };
    for i in 0..shape.resources {
        let manifest = match member(shape.path, i) {
            Member::Legacy(j) => {
                let s = j % subs;
                if j % 4 == 3 {
                    seeds[s].aks_clusters.push(ClusterSeed {
                        resource_group: "aks-rg".into(),
                        name: format!("aks{j:05}"),
                        ..Default::default()
                    });
                }
                let workspace = workspace_of(s, &mut seeds);
                spec_of(j, &subscription(s), &workspace)
            }
            Member::Extension(e) => {
                let s = e % subs;
                // Three nodes: what inference high availability (Azure's default) needs.
                seeds[s].aks_clusters.push(ClusterSeed {
                    resource_group: "aks-rg".into(),
                    name: extension_cluster(e),
                    ..Default::default()
                });
                extension_spec(e, &subscription(s))
            }
            Member::Compute { extension, slot } => {
                let s = extension % subs;
                let workspace = workspace_of(s, &mut seeds);
                compute_spec(extension, slot, &subscription(s), &workspace)
            }
        };
        out.push(manifest);
    }
    config.subscriptions.extend(seeds);
    out
}

/// The namespaces to create on the clusters before the run: those of the computes without
/// `createNamespace`, as (cluster ARM id, namespace).
pub fn namespaces_to_create(manifests: &[serde_json::Value]) -> Vec<(String, String)> {
    let mut clusters = BTreeMap::new();
    for m in manifests {
        if m["kind"] == "AzureMLExtension" {
            clusters.insert(
                m["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                m["spec"]["cluster"]["resourceId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    manifests
        .iter()
        .filter(|m| m["kind"] == "KubernetesCompute" && m["spec"]["createNamespace"] == false)
        .filter_map(|m| {
            let cluster = clusters.get(m["spec"]["extensionRef"]["name"].as_str()?)?;
            Some((
                cluster.clone(),
                m["spec"]["namespace"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Creates, before a run, the namespaces `manifests`' computes need on their clusters
/// ([`namespaces_to_create`]: what a platform team made beforehand), through a client of
/// `config` whose requests the benchmark does not count.
pub async fn create_namespaces_beforehand(
    config: ArmClientConfig,
    manifests: &[serde_json::Value],
) -> anyhow::Result<()> {
    let setup = client(config, Arc::new(Counters::default()))?;
    create_namespaces(&setup, &namespaces_to_create(manifests)).await
}

/// Creates each `(cluster ARM id, namespace)` on the cluster's API server (the emulator's),
/// with the cluster's admin credential read through `arm`.
pub async fn create_namespaces(
    arm: &ArmClient,
    namespaces: &[(String, String)],
) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let mut clients: BTreeMap<&str, kube::Client> = BTreeMap::new();
    for (cluster, name) in namespaces {
        let client = match clients.get(cluster.as_str()) {
            Some(c) => c.clone(),
            None => {
                let id: amlops::azure::ResourceId = cluster.parse()?;
                let c = arm
                    .list_cluster_admin_credential(&id)
                    .await?
                    .client(None)
                    .await?;
                clients.insert(cluster, c.clone());
                c
            }
        };
        let ns = Namespace {
            metadata: kube::core::ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        kube::Api::<Namespace>::all(client)
            .create(&Default::default(), &ns)
            .await?;
    }
    Ok(())
}

/// The in-memory Kubernetes side of `manifests` for `engine`: the certificate's Secret, every
/// legacy resource's claim and every resource's place in its subscription's count (the
/// resync pace). Returns the scheduler's object of each, in order.
pub async fn load(
    engine: &Engine<MemoryStore>,
    manifests: Vec<serde_json::Value>,
) -> anyhow::Result<Vec<Object>> {
    let store = &engine.store;
    store.insert_secret(bench_tls_secret()?);
    let mut extensions: BTreeMap<String, AzureMLExtension> = BTreeMap::new();
    let mut out = Vec::with_capacity(manifests.len());
    for m in manifests {
        let object = match m["kind"].as_str() {
            Some("AzureMLExtension") => {
                let ext: AzureMLExtension = serde_json::from_value(m)?;
                let d = engine.extension_desired(&ext, Vec::new()).await;
                if let Some(stall) = &d.tls_error {
                    anyhow::bail!("{}: {}", d.key, stall.message);
                }
                if let Ok(c) = &d.cluster {
                    store.count_resource(&d.key, c.subscription());
                }
                extensions.insert(ext.metadata.name.clone().unwrap_or_default(), ext);
                Object::Extension(Box::new(d))
            }
            Some("KubernetesCompute") => {
                let kc: KubernetesCompute = serde_json::from_value(m)?;
                let ext = kc
                    .spec
                    .extension_ref
                    .as_ref()
                    .and_then(|r| extensions.get(&r.name));
                let d = ComputeDesired::new(&kc, ext);
                store.count_resource(&d.key, &d.workspace.subscription_id);
                Object::Compute(Box::new(d))
            }
            _ => {
                let d = desired_of(m)?;
                store.set_claim(Claim::of(&d));
                Object::Legacy(Box::new(d))
            }
        };
        out.push(object);
    }
    Ok(out)
}

/// Client-side limits and retries for a run whose clock runs `time_scale` times faster
/// than real time: ARM's figures `arm` (read to interpret the headers) on that clock, and
/// when `paced`, the operator's own pacing to a share of them with retries on that clock too
/// (unpaced: no client-side limit at all, for measuring the operator's own overhead).
pub fn client_config(
    base_url: &str,
    token: String,
    arm: ArmThrottling,
    time_scale: f64,
    paced: bool,
) -> anyhow::Result<ArmClientConfig> {
    let mut c = ArmClientConfig::new(
        AzureCloud::custom(base_url.parse()?),
        CredentialConfig::StaticToken(Token::new(token)),
    );
    let ts = time_scale.max(1e-3);
    let scale = |d: Duration| Duration::from_secs_f64(d.as_secs_f64() / ts);
    let d = RateLimitConfig::default();
    c.rate_limits = RateLimitConfig {
        arm: arm.time_scaled(ts),
        share: if paced { d.share } else { None },
        max_wait: scale(d.max_wait),
    };
    if paced {
        let r = RetryPolicy::default();
        c.retry = RetryPolicy {
            initial_backoff: scale(r.initial_backoff),
            max_backoff: scale(r.max_backoff),
            max_total: scale(r.max_total),
            ..r
        };
    }
    Ok(c)
}

/// An ARM client reporting to `counters`.
pub fn client(config: ArmClientConfig, counters: Arc<Counters>) -> anyhow::Result<ArmClient> {
    Ok(ArmClient::builder(config).observer(counters).build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_valid_and_as_documented() {
        use amlops::validate::{Checked, check_object};
        let sub = subscription(0);
        // The legacy mix: of every 40, 30 creates (4 Auto TLS), 10 attaches (5 Custom TLS).
        let (mut creates, mut auto, mut attaches, mut custom) = (0, 0, 0, 0);
        for i in 0..40 {
            assert_eq!(member(Path::Legacy, i), Member::Legacy(i));
            let v = spec_of(i, &sub, "ws0000");
            let m = amlops::validate::check_value(&v, None)
                .unwrap_or_else(|f| panic!("resource {i}: {f:?}"));
            let d = m.desired();
            if d.is_create() {
                creates += 1;
            } else {
                attaches += 1;
            }
            match d.tls.mode {
                amlops::crd::TlsMode::Auto => auto += 1,
                amlops::crd::TlsMode::Custom => custom += 1,
                _ => {}
            }
            assert_eq!(desired_of(v).unwrap(), d);
        }
        assert_eq!((creates, auto, attaches, custom), (30, 4, 10, 5));

        // `both`: of every 5, 4 of the legacy mix then 1 of the Kubernetes path: of every
        // 50, the 40 above and 2 extensions (1 with HTTPS), each before its 4 computes in 4
        // namespaces (2 with createNamespace).
        let shape = Shape {
            resources: 100,
            path: Path::Both,
            subscriptions: 1,
            per_workspace: 25,
        };
        let mut config = emulator_config(0.0);
        let manifests = populate(&mut config, &shape);
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        let (mut https, mut created_ns) = (0, 0);
        let mut namespaces: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (i, v) in manifests.iter().enumerate() {
            let checked = check_object(v, None).unwrap_or_else(|f| panic!("resource {i}: {f:?}"));
            *kinds.entry(v["kind"].as_str().unwrap().into()).or_default() += 1;
            match (member(Path::Both, i), checked) {
                (Member::Legacy(j), Checked::Legacy(_)) => {
                    assert!(i % 5 < 4, "{i}");
                    assert_eq!(j, i / 5 * 4 + i % 5, "{i}");
                    assert_eq!(v["metadata"]["name"], format!("bench{j:05}"));
                }
                (Member::Extension(e), Checked::AzureMlExtension(x)) => {
                    assert_eq!(i, e * 25 + 4, "{i}");
                    https += usize::from(x.spec.inference.enabled);
                }
                (Member::Compute { extension, slot }, Checked::KubernetesCompute(c)) => {
                    assert_eq!(i, extension * 25 + 4 + (slot + 1) * 5, "{i}");
                    let r = c.spec.extension_ref.as_ref().expect("extensionRef");
                    assert_eq!(r.name, extension_name(extension));
                    created_ns += usize::from(c.spec.create_namespace);
                    namespaces
                        .entry(extension)
                        .or_default()
                        .push(c.spec.namespace.clone());
                }
                (m, c) => panic!("resource {i}: {m:?} is a {}", c.describe()),
            }
        }
        let counts: Vec<(&str, usize)> = kinds.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            counts,
            vec![
                ("AzureMLExtension", 4),
                ("ClusterAttachment", 20),
                ("InferenceCluster", 60),
                ("KubernetesCompute", 16),
            ]
        );
        assert_eq!((https, created_ns), (2, 8));
        assert_eq!(namespaces.len(), 4);
        for ns in namespaces.values() {
            let distinct: std::collections::BTreeSet<_> = ns.iter().collect();
            assert_eq!(distinct.len(), 4, "{ns:?}");
        }
        // Every compute's workspace and every cluster is seeded; 96 computes of 25 per
        // workspace: 4 workspaces; 20 attached clusters and 4 for the extensions.
        let seed = &config.subscriptions[0];
        assert_eq!(seed.workspaces.len(), 4);
        assert_eq!(seed.aks_clusters.len(), 24);
        // The namespaces made beforehand: those of the computes without createNamespace.
        let pre = namespaces_to_create(&manifests);
        assert_eq!(pre.len(), 8, "{pre:?}");
        assert!(pre.iter().all(
            |(c, ns)| c.contains("/managedClusters/kaks") && (ns == "team-0" || ns == "team-2")
        ));

        // `legacy` keeps the old mix and names exactly.
        let legacy = populate(
            &mut emulator_config(0.0),
            &Shape {
                path: Path::Legacy,
                ..shape.clone()
            },
        );
        assert!(
            legacy
                .iter()
                .enumerate()
                .all(|(i, v)| *v == spec_of(i, &sub, &format!("ws{:04}", i / 25)))
        );
        // `kubernetes`: extensions and computes only.
        let k = populate(
            &mut emulator_config(0.0),
            &Shape {
                path: Path::Kubernetes,
                resources: 20,
                ..shape
            },
        );
        assert_eq!(
            k.iter().filter(|v| v["kind"] == "AzureMLExtension").count(),
            4
        );
        assert_eq!(
            k.iter()
                .filter(|v| v["kind"] == "KubernetesCompute")
                .count(),
            16
        );
    }
}
