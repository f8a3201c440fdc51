//! The benchmark's world: an emulator seed with workspaces and AKS clusters, N
//! resources (a fixed, documented mix of kinds and TLS modes), the in-memory Kubernetes
//! store, and an ARM client that counts every attempt.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde::Serialize;
use serde_json::json;

use crate::azure::{
    ArmClient, ArmClientConfig, ArmObserver, ArmThrottling, Attempt, AzureCloud, CredentialConfig,
    RateLimitConfig, RetryPolicy, config::Secret as Token,
};
use crate::crd::{ClusterAttachment, InferenceCluster};
use crate::emulator::{ClusterSeed, EmulatorConfig, SubscriptionSeed, WorkspaceSeed};
use crate::engine::store::Claim;
use crate::engine::{Desired, MemoryStore};

/// Namespace of the benchmark's resources.
pub const NAMESPACE: &str = "bench";
/// Secret holding the certificate of the `Custom` TLS attachments.
pub const TLS_SECRET: &str = "bench-tls";

/// Counts of ARM attempts by (operation, method, status class), as the client saw them.
#[derive(Default)]
pub struct Counters {
    counts: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
    latency: Mutex<Vec<Duration>>,
}

impl ArmObserver for Counters {
    fn on_attempt(&self, a: &Attempt) {
        let mut m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((a.operation, a.method, a.status.as_str()))
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
pub struct Tally(pub BTreeMap<(&'static str, &'static str, &'static str), u64>);

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
        self.0.iter().filter(|(k, _)| f(k)).map(|(_, v)| v).sum()
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
        for ((op, method, status), n) in &self.0 {
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

/// How the resources are generated.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Number of resources.
    pub resources: usize,
    /// Subscriptions they are spread over (round robin).
    pub subscriptions: usize,
    /// Computes per workspace.
    pub per_workspace: usize,
}

/// Subscription id number `s`.
pub fn subscription(s: usize) -> String {
    format!("bbbbbbbb-0000-0000-0000-{s:012}")
}

/// The Secret of the `Custom` TLS attachments: a self-signed certificate for the `cname`
/// [`spec_of`] gives them.
pub fn bench_tls_secret() -> anyhow::Result<Secret> {
    crate::demo::tls_secret(NAMESPACE, TLS_SECRET, "scoring.bench.example")
}

/// The kind mix of resource `i`, documented in BENCHMARKS.md: of every 40 resources, 30 are
/// `InferenceCluster`s (FastProd, 3 × Standard_D3_v2; 4 of them with `tls.mode: Auto`, whose
/// certificate is backed up on Ready) and 10 are `ClusterAttachment`s of seeded AKS clusters
/// (FastProd; 5 of them with `tls.mode: Custom` from a Secret).
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

/// The engine's view of a generated manifest.
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
/// (`config`) and returns the resources' manifests, in order ([`spec_of`]).
pub fn populate(config: &mut EmulatorConfig, shape: &Shape) -> Vec<serde_json::Value> {
    let subs = shape.subscriptions.max(1);
    let per_ws = shape.per_workspace.max(1);
    let mut seeded_ws = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(shape.resources);
    let mut seeds: Vec<SubscriptionSeed> = (0..subs)
        .map(|s| SubscriptionSeed {
            id: subscription(s),
            ..Default::default()
        })
        .collect();
    for i in 0..shape.resources {
        let s = i % subs;
        let j = i / subs;
        let sub = subscription(s);
        let workspace = format!("ws{:04}", j / per_ws);
        if seeded_ws.insert((s, workspace.clone())) {
            seeds[s].workspaces.push(WorkspaceSeed {
                resource_group: "ml-rg".into(),
                name: workspace.clone(),
                location: "eastus".into(),
            });
        }
        if i % 4 == 3 {
            seeds[s].aks_clusters.push(ClusterSeed {
                resource_group: "aks-rg".into(),
                name: format!("aks{i:05}"),
                ..Default::default()
            });
        }
        out.push(spec_of(i, &sub, &workspace));
    }
    config.subscriptions.extend(seeds);
    out
}

/// The in-memory Kubernetes side of `manifests` for the engine: the `Custom` certificate's
/// Secret and every resource's claim. Returns the engine's view of each, in order.
pub fn load(
    store: &MemoryStore,
    manifests: Vec<serde_json::Value>,
) -> anyhow::Result<Vec<Desired>> {
    store.insert_secret(bench_tls_secret()?);
    manifests
        .into_iter()
        .map(|m| {
            let d = desired_of(m)?;
            store.set_claim(Claim::of(&d));
            Ok(d)
        })
        .collect()
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
        let sub = subscription(0);
        let (mut creates, mut auto, mut attaches, mut custom) = (0, 0, 0, 0);
        for i in 0..40 {
            let v = spec_of(i, &sub, "ws0000");
            let m = crate::validate::check_value(&v, None)
                .unwrap_or_else(|f| panic!("resource {i}: {f:?}"));
            let d = m.desired();
            if d.is_create() {
                creates += 1;
            } else {
                attaches += 1;
            }
            match d.tls.mode {
                crate::crd::TlsMode::Auto => auto += 1,
                crate::crd::TlsMode::Custom => custom += 1,
                _ => {}
            }
            assert_eq!(desired_of(v).unwrap(), d);
        }
        assert_eq!((creates, auto, attaches, custom), (30, 4, 10, 5));
    }
}
