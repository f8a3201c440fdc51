//! amlops' test kit, shared by the tests of every crate, the demo and the benchmark:
//! - [`MemoryStore`]: the engine's Kubernetes side kept in memory;
//! - [`examples`]: the manifests of `examples/`, embedded, and TLS Secrets for them;
//! - [`rbac`]: the Kubernetes requests the operator may make (`deploy/rbac-requirements.yaml`)
//!   and the check that a request is covered;
//! - the scenario harness ([`World`], [`scenarios`], [`kpath`], [`crash_proxy`]): an emulator,
//!   an in-memory Kubernetes store and the real engine over real HTTP, driven the way the
//!   controller drives it (status is read back from the store before every reconcile; nothing
//!   else survives between reconciles).

pub mod crash_proxy;
pub mod examples;
pub mod kpath;
pub mod memory_store;
pub mod rbac;
pub mod scenarios;

pub use examples::{
    EXAMPLES, EXTENSION_EXAMPLE, KUBERNETES_COMPUTE_EXAMPLE, self_signed_tls_secret,
};
pub use memory_store::MemoryStore;

use std::time::{Duration, Instant};

use amlops::azure::{
    ArmClient, ArmClientConfig, AzureCloud, CredentialConfig, RateLimitConfig, Secret as Token,
};
use amlops::crd::{ClusterAttachment, ClusterStatus, InferenceCluster, Phase};
use amlops::engine::store::Event;
use amlops::engine::{Desired, Engine, EngineConfig};
use amlops_emulator::{
    Emulator, EmulatorConfig, EmulatorHandle, FaultKind, FaultMatch, FaultRule, RequestRecord,
};
use k8s_openapi::api::core::v1::Secret;

/// Subscription of the emulator's default seed.
pub const SUB: &str = "00000000-0000-0000-0000-000000000000";
/// Namespace of every test CR.
pub const NS: &str = "ml";

/// ARM id of the seeded cluster `aks-rg/<name>`.
pub fn aks_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/{name}"
    )
}

/// An ARM client for `base`. No client-side pacing: tests make bursts of calls
/// that the production defaults (sized for hours of steady state) would slow down.
pub fn arm(base: &str, token: String) -> ArmClient {
    let mut config = ArmClientConfig::new(
        AzureCloud::custom(base.parse().expect("emulator URL")),
        CredentialConfig::StaticToken(Token::new(token)),
    );
    config.rate_limits = RateLimitConfig::unpaced();
    // Short fallback poll interval: the emulator always sends Retry-After anyway.
    config.default_poll_interval = Duration::from_millis(50);
    ArmClient::new(config).expect("ARM client")
}

/// Engine settings for fast tests: short polls and retry backoff.
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        busy_poll: Duration::from_millis(20),
        retry_base: Duration::from_millis(10),
        ..EngineConfig::default()
    }
}

/// One emulated Azure, one in-memory Kubernetes, one engine.
pub struct World {
    /// The emulator.
    pub emu: EmulatorHandle,
    /// The Kubernetes side.
    pub store: MemoryStore,
    /// The engine under test.
    pub engine: Engine<MemoryStore>,
    /// Whether this world injects faults (scenarios relax exact write counts by the number
    /// of failed long-running operations, which each cost one retry).
    pub faults: bool,
}

impl World {
    /// A fault-free world with instant operations.
    pub async fn new() -> Self {
        Self::build(false).await
    }

    /// A world whose ARM answers ~30% of requests with 429 or 503 (both with
    /// `Retry-After: 1`) once [`World::start_faults`] is called, and fails one long-running
    /// compute operation.
    pub async fn with_faults() -> Self {
        Self::build(true).await
    }

    async fn build(faults: bool) -> Self {
        let emu = Emulator::start(EmulatorConfig::for_tests())
            .await
            .expect("emulator");
        let store = MemoryStore::default();
        let engine = Engine {
            arm: arm(emu.base_url(), emu.token()),
            store: store.clone(),
            config: engine_config(),
        };
        Self {
            emu,
            store,
            engine,
            faults,
        }
    }

    /// Turns the faults on (no-op in a fault-free world). Scenarios call it after any
    /// set-up they do behind the operator's back.
    pub fn start_faults(&self) {
        if !self.faults {
            return;
        }
        // ARM paths only: the AKS data plane is Kubernetes, not ARM, and its errors carry
        // no Retry-After (the engine retries them on its own schedule).
        let arm_only = || FaultMatch {
            path: Some("/subscriptions/".into()),
            ..Default::default()
        };
        self.emu.inject_fault(FaultRule {
            id: 0,
            matcher: FaultMatch {
                method: Some("PUT".into()),
                path: Some("/computes/".into()),
                operation: None,
            },
            kind: FaultKind::LroFail {
                code: "InternalServerError".into(),
                message: "An internal server error occurred.".into(),
            },
            times: Some(1),
            probability: None,
        });
        self.emu.inject_fault(FaultRule {
            id: 0,
            matcher: arm_only(),
            kind: FaultKind::Throttle {
                retry_after_secs: 1,
            },
            times: None,
            probability: Some(0.15),
        });
        // Checked after the throttle rule: 0.85 × 0.18 ≈ 15% more, ~30% in all.
        self.emu.inject_fault(FaultRule {
            id: 0,
            matcher: arm_only(),
            kind: FaultKind::Status {
                status: 503,
                retry_after_secs: None,
            },
            times: None,
            probability: Some(0.18),
        });
    }

    /// Stops injecting faults.
    pub fn stop_faults(&self) {
        self.emu.clear_faults();
    }

    /// The status the store holds for `d` (what a restarted operator would read).
    pub fn status(&self, d: &Desired) -> ClusterStatus {
        self.store.status(&d.key()).unwrap_or_default()
    }

    /// Reconciles `d` like the controller (status from the store, requeue honoured but
    /// shortened, errors retried after their Retry-After) until `until` holds.
    pub async fn converge(
        &self,
        d: &Desired,
        what: &str,
        until: impl Fn(&ClusterStatus, bool) -> bool,
    ) -> ClusterStatus {
        let limit = if self.faults { 120 } else { 30 };
        let deadline = Instant::now() + Duration::from_secs(limit);
        let mut last_error = None;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(
                Instant::now() < deadline,
                "{}: not {what} after {steps} reconciles; last error {last_error:?}; status {:#?}; events {:#?}",
                d.name,
                self.status(d),
                self.events(d)
            );
            match self.engine.reconcile(d, self.status(d)).await {
                Ok(o) => {
                    if until(&o.status, o.finished) {
                        return o.status;
                    }
                    // Polls and resyncs are shortened; the wait after an Azure failure is
                    // Azure's Retry-After, honoured as the controller does.
                    let wait = match o.verdict.as_ref().and_then(|v| v.after()) {
                        Some(after) => {
                            last_error = Some(format!("{:?}", o.verdict));
                            after
                        }
                        None => o
                            .requeue
                            .unwrap_or(Duration::from_millis(20))
                            .min(Duration::from_millis(20)),
                    };
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    last_error = Some(e.to_string());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Converges to Ready for the current generation with nothing in flight.
    pub async fn ready(&self, d: &Desired) -> ClusterStatus {
        self.converge(d, "Ready", |s, _| is_ready(s, d)).await
    }

    /// Converges to Stalled with `reason`.
    pub async fn stalled(&self, d: &Desired, reason: &str) -> ClusterStatus {
        self.converge(d, &format!("Stalled {reason}"), |s, _| {
            condition(s, "Stalled").is_some_and(|c| c.status == "True" && c.reason == reason)
        })
        .await
    }

    /// Converges until cleanup is finished (the finalizer may go).
    pub async fn gone(&self, d: &Desired) -> ClusterStatus {
        self.converge(d, "cleaned up", |_, finished| finished).await
    }

    /// Events emitted about `d`.
    pub fn events(&self, d: &Desired) -> Vec<Event> {
        self.store
            .events()
            .into_iter()
            .filter(|e| e.key == d.key())
            .collect()
    }

    /// Fingerprint of the certificate the emulated AKS cluster `aks` serves from
    /// `azuremlfessl` (None when the Secret is absent).
    pub fn served_fingerprint(&self, aks: &str) -> Option<String> {
        let state = self.emu.state();
        let cluster = state
            .clusters
            .iter()
            .find(|c| c.id.eq_ignore_ascii_case(aks))?;
        let tls = cluster.azuremlfessl.as_ref()?;
        amlops::tls::verify_pair(&tls.cert_pem, &tls.key_pem)
            .ok()
            .map(|i| i.sha256_fingerprint)
    }

    /// Requests the emulator accepted (2xx) with this method whose path contains `path`
    /// (and whose query contains `query`).
    pub fn accepted(&self, method: &str, path: &str, query: &str) -> Vec<RequestRecord> {
        accepted(&self.emu.requests(), method, path, query)
    }

    /// Every accepted write (PUT, DELETE) so far.
    pub fn writes(&self) -> Vec<RequestRecord> {
        let log = self.emu.requests();
        let mut w = accepted(&log, "PUT", "", "");
        w.extend(accepted(&log, "DELETE", "", ""));
        w
    }

    /// Long-running operations that ended Failed (each costs the engine one retry).
    pub fn failed_operations(&self) -> usize {
        self.emu
            .state()
            .operations
            .iter()
            .filter(|o| o.status == "Failed")
            .count()
    }

    /// Asserts that `n` requests like this were accepted: exactly without faults; with
    /// faults, each failed operation may add one retry.
    pub fn expect_accepted(&self, method: &str, path: &str, query: &str, n: usize, why: &str) {
        let got = self.accepted(method, path, query).len();
        if self.faults {
            let extra = self.failed_operations();
            assert!(
                got >= n && got <= n + extra,
                "{why}: {got} accepted {method} {path}?{query}, want {n} (+ up to {extra} retries of failed operations); log: {:#?}",
                self.brief_log()
            );
        } else {
            assert_eq!(
                got,
                n,
                "{why}: accepted {method} {path}?{query}; log: {:#?}",
                self.brief_log()
            );
        }
    }

    /// The request log as `METHOD path?query -> status` lines, for failure messages.
    pub fn brief_log(&self) -> Vec<String> {
        self.emu
            .requests()
            .iter()
            .map(|r| format!("{} {}?{} -> {}", r.method, r.path, r.query, r.status))
            .collect()
    }

    /// Asserts that every 429/503 was followed by the next identical request no sooner
    /// than the Retry-After it carried (1 s for both injected faults).
    pub fn assert_retry_after_honoured(&self) -> usize {
        assert_retry_after_honoured(&self.emu.requests(), Duration::from_secs(1))
    }
}

/// 2xx requests of `log` matching method, path and query fragments.
pub fn accepted(
    log: &[RequestRecord],
    method: &str,
    path: &str,
    query: &str,
) -> Vec<RequestRecord> {
    log.iter()
        .filter(|r| {
            r.method.eq_ignore_ascii_case(method)
                && (200..300).contains(&r.status)
                && r.path
                    .to_ascii_lowercase()
                    .contains(&path.to_ascii_lowercase())
                && r.query
                    .to_ascii_lowercase()
                    .contains(&query.to_ascii_lowercase())
        })
        .cloned()
        .collect()
}

fn ts(r: &RequestRecord) -> jiff::Timestamp {
    r.timestamp
        .parse()
        .expect("RFC 3339 timestamp in the request log")
}

/// See [`World::assert_retry_after_honoured`]; returns how many refusals were checked.
pub fn assert_retry_after_honoured(log: &[RequestRecord], retry_after: Duration) -> usize {
    let mut checked = 0;
    for (i, r) in log.iter().enumerate() {
        if !(r.status == 429 || r.status == 503) {
            continue;
        }
        let Some(next) = log[i + 1..]
            .iter()
            .find(|n| n.method == r.method && n.path == r.path && n.query == r.query)
        else {
            continue;
        };
        // Records are written when the answer is ready: the refusal left at `ts(r)`, the
        // next attempt arrived at `ts(next) - duration(next)`.
        let arrived = ts(next) - jiff::SignedDuration::from_millis(next.duration_ms as i64);
        let gap = arrived.duration_since(ts(r));
        assert!(
            gap >= jiff::SignedDuration::try_from(retry_after).expect("small duration")
                - jiff::SignedDuration::from_millis(5),
            "{} {} answered {} (Retry-After {retry_after:?}) was retried after only {gap:?}",
            r.method,
            r.path,
            r.status
        );
        checked += 1;
    }
    checked
}

/// A condition of a status.
pub fn condition<'a>(
    s: &'a ClusterStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}

/// Ready for `d`'s generation, nothing in flight.
pub fn is_ready(s: &ClusterStatus, d: &Desired) -> bool {
    s.phase == Some(Phase::Ready)
        && s.operation.is_none()
        && s.observed_generation == d.generation
        && condition(s, "Ready").is_some_and(|c| c.status == "True")
}

fn indent(extra: &str) -> String {
    extra
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("  {}\n", l.trim_end()))
        .collect()
}

/// An `InferenceCluster` `name` (compute name = name) with extra spec lines.
pub fn ic(name: &str, spec: &str) -> Desired {
    let yaml = format!(
        "apiVersion: amlops.dev/v1alpha1\nkind: InferenceCluster\nmetadata:\n  name: {name}\n  namespace: {NS}\n  generation: 1\nspec:\n  workspace: {{subscriptionId: {SUB}, resourceGroup: ml-rg, name: ml-ws}}\n{}",
        indent(spec)
    );
    let o: InferenceCluster = serde_saphyr::from_str(&yaml).expect("InferenceCluster YAML");
    Desired::from_inference_cluster(&o)
}

/// A `ClusterAttachment` `name` (compute name = name) of the seeded cluster `aks-rg/<aks>`.
pub fn ca(name: &str, aks: &str, spec: &str) -> Desired {
    let yaml = format!(
        "apiVersion: amlops.dev/v1alpha1\nkind: ClusterAttachment\nmetadata:\n  name: {name}\n  namespace: {NS}\n  generation: 1\nspec:\n  workspace: {{subscriptionId: {SUB}, resourceGroup: ml-rg, name: ml-ws}}\n  aksCluster: {{resourceId: {}}}\n{}",
        aks_id(aks),
        indent(spec)
    );
    let o: ClusterAttachment = serde_saphyr::from_str(&yaml).expect("ClusterAttachment YAML");
    Desired::from_cluster_attachment(&o)
}

/// A spec change: the API server bumps the generation.
pub fn changed(d: &Desired, f: impl FnOnce(&mut Desired)) -> Desired {
    let mut d = d.clone();
    f(&mut d);
    d.generation = d.generation.map(|g| g + 1);
    d
}

/// A deletion request (deletionTimestamp set).
pub fn deleting(d: &Desired) -> Desired {
    let mut d = d.clone();
    d.deleting = true;
    d
}

/// A fresh self-signed certificate for `host` as a kubernetes.io/tls Secret, and its
/// fingerprint.
pub fn tls_secret(name: &str, host: &str) -> (Secret, String) {
    let secret = self_signed_tls_secret(NS, name, host).expect("self-signed certificate");
    let (cert, key) = amlops::tls::cert_and_key_from_secret(&secret).expect("tls.crt and tls.key");
    let fp = amlops::tls::verify_pair(&cert, &key)
        .expect("valid pair")
        .sha256_fingerprint;
    (secret, fp)
}

/// `status.tls.sha256Fingerprint`: the certificate the status says is served.
pub fn tls_fp(s: &ClusterStatus) -> Option<String> {
    s.tls.as_ref().and_then(|t| t.sha256_fingerprint.clone())
}

/// Fingerprint of the certificate in a Secret of the store.
pub fn secret_fingerprint(store: &MemoryStore, name: &str) -> Option<String> {
    let s = store.secret(NS, name)?;
    let (cert, key) = amlops::tls::cert_and_key_from_secret(&s).ok()?;
    amlops::tls::verify_pair(&cert, &key)
        .ok()
        .map(|i| i.sha256_fingerprint)
}
