//! The crash harness: a counting reverse proxy in front of the emulator that lets exactly k
//! calls through and holds the next one forever (the crash), a store that stops persisting at
//! the crash, and the driver that runs a scenario once per crash point
//! ([`crash_at_every_call`]). Used by `crates/amlops/tests/engine_crash.rs`,
//! `kubernetes_compute_crash.rs` and `azureml_extension_crash.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::MemoryStore;
use amlops::crd::{AzureMlExtensionStatus, ClusterStatus, KubernetesComputeStatus};
use amlops::engine::Desired;
use amlops::engine::azureml_extension::ExtensionStore;
use amlops::engine::kubernetes_compute::ComputeStore;
use amlops::engine::store::{Claim, Event, KubeStore, ObjKey, StoreError, SubscriptionCounts};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use tokio::sync::Notify;

/// The counting reverse proxy in front of the emulator.
pub struct Proxy {
    pub upstream: String,
    pub client: reqwest::Client,
    /// Calls received since the last reset.
    pub count: AtomicUsize,
    /// Calls allowed through; the next one is held forever (the crash).
    pub limit: AtomicUsize,
    /// `After` mode: freeze the store when call `limit` answers.
    pub freeze_at_limit: AtomicBool,
    /// Shared with [`CrashStore`]: once set, nothing more is persisted.
    pub frozen: Arc<AtomicBool>,
    /// Fired when a call beyond the limit arrives.
    pub crashed: Notify,
}

const HOP_BY_HOP: [&str; 4] = [
    "connection",
    "transfer-encoding",
    "content-length",
    "keep-alive",
];

fn hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let n = p.count.fetch_add(1, Ordering::SeqCst) + 1;
    let limit = p.limit.load(Ordering::SeqCst);
    if n > limit {
        p.crashed.notify_one();
        // The process is gone: this call never reaches Azure.
        std::future::pending::<()>().await;
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|x| x.as_str())
        .unwrap_or("/");
    // The Host header is kept: the emulator builds operation URLs and kubeconfigs from it,
    // so they point back at the proxy.
    let mut rb = p
        .client
        .request(parts.method, format!("{}{path}", p.upstream))
        .body(body);
    for (k, v) in parts.headers.iter().filter(|(k, _)| !hop_by_hop(k)) {
        rb = rb.header(k, v);
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    let mut out = Response::builder().status(status);
    for (k, v) in headers.iter().filter(|(k, _)| !hop_by_hop(k)) {
        out = out.header(k, v);
    }
    if n == limit && p.freeze_at_limit.load(Ordering::SeqCst) {
        p.frozen.store(true, Ordering::SeqCst);
    }
    out.body(Body::from(bytes))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// One HTTP client for every proxy (building one costs ~20 ms in a debug build).
fn proxy_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client")
        })
        .clone()
}

impl Proxy {
    pub async fn start(upstream: &str) -> (Arc<Self>, String) {
        let p = Arc::new(Self {
            upstream: upstream.to_string(),
            client: proxy_client(),
            count: AtomicUsize::new(0),
            limit: AtomicUsize::new(usize::MAX),
            freeze_at_limit: AtomicBool::new(false),
            frozen: Arc::new(AtomicBool::new(false)),
            crashed: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new().fallback(forward).with_state(p.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (p, url)
    }

    pub fn arm(&self, limit: usize, freeze: bool) {
        self.count.store(0, Ordering::SeqCst);
        self.frozen.store(false, Ordering::SeqCst);
        self.freeze_at_limit.store(freeze, Ordering::SeqCst);
        self.limit.store(limit, Ordering::SeqCst);
    }
}

/// The store as seen by the engine that is about to crash: writes after the freeze are lost.
#[derive(Clone)]
pub struct CrashStore {
    pub inner: MemoryStore,
    pub frozen: Arc<AtomicBool>,
}

impl CrashStore {
    fn frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }
}

impl KubeStore for CrashStore {
    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, StoreError> {
        self.inner.get_secret(namespace, name).await
    }
    async fn apply_secret(&self, secret: Secret) -> Result<(), StoreError> {
        if !self.frozen() {
            self.inner.apply_secret(secret).await?;
        }
        Ok(())
    }
    async fn save_status(&self, key: &ObjKey, status: &ClusterStatus) -> Result<(), StoreError> {
        if !self.frozen() {
            self.inner.save_status(key, status).await?;
        }
        Ok(())
    }
    async fn emit(&self, event: Event) {
        if !self.frozen() {
            self.inner.emit(event).await;
        }
    }
    async fn claims(&self, d: &Desired) -> Result<Vec<Claim>, StoreError> {
        self.inner.claims(d).await
    }
    fn resources_in_subscription(&self, subscription: &str) -> SubscriptionCounts {
        self.inner.resources_in_subscription(subscription)
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Crash {
    /// No crash: the reference run.
    Never,
    /// Call k reaches Azure and Azure acts on it; from the moment its answer leaves the
    /// proxy nothing more is persisted (also the state of a crash while waiting for the
    /// answer). Call k+1 never reaches Azure.
    After(usize),
    /// Everything persisted until call k+1 is tried is kept; call k+1 never reaches Azure.
    Before(usize),
}

impl ComputeStore for CrashStore {
    async fn save_compute_status(
        &self,
        key: &ObjKey,
        status: &KubernetesComputeStatus,
    ) -> Result<(), StoreError> {
        if !self.frozen() {
            self.inner.save_compute_status(key, status).await?;
        }
        Ok(())
    }
}

impl ExtensionStore for CrashStore {
    async fn save_extension_status(
        &self,
        key: &ObjKey,
        status: &AzureMlExtensionStatus,
    ) -> Result<(), StoreError> {
        if !self.frozen() {
            self.inner.save_extension_status(key, status).await?;
        }
        Ok(())
    }
}

/// What one crash-tested run reports to [`crash_at_every_call`].
pub trait CrashRun {
    /// Calls through the proxy in the crash-tested phase until the crash (or the end).
    fn calls(&self) -> usize;
    /// Whether the run crashed (and was restarted).
    fn crashed(&self) -> bool;
}

/// A crash-tested run in a [`World`](crate::World): what it did and the world it left, for
/// the checks.
pub struct WorldRun {
    /// Calls through the proxy in the crash-tested phase until the crash (or the end).
    pub calls: usize,
    /// Whether the run crashed (and was restarted).
    pub crashed: bool,
    /// Emulator requests of the crash-tested phase.
    pub log: Vec<amlops_emulator::RequestRecord>,
    /// The world, after the restart's convergence.
    pub w: crate::World,
}

impl CrashRun for WorldRun {
    fn calls(&self) -> usize {
        self.calls
    }
    fn crashed(&self) -> bool {
        self.crashed
    }
}

/// The crash harness's driver. For each scenario: a reference run without a crash (it must
/// pass `check` and make at least `min_calls` calls), then one run per crash point — after
/// each of the reference's `n` calls and before each — six independent worlds at once, each
/// checked. Prints one line per scenario; returns every failure (empty: each of the `2n`
/// crash points crashed, restarted and converged as `check` wants).
///
/// # Panics
/// When a reference run fails or is too short: the scenario itself is broken.
pub async fn crash_at_every_call<S, R: CrashRun>(
    scenarios: &[S],
    name: impl Fn(&S) -> &str,
    min_calls: usize,
    run: impl AsyncFn(&S, Crash) -> Result<R, String>,
    check: impl AsyncFn(&S, &R) -> Result<(), String>,
) -> Vec<String> {
    let width = scenarios.iter().map(|s| name(s).len()).max().unwrap_or(0);
    let mut failures = Vec::new();
    for sc in scenarios {
        let name = name(sc);
        let reference = run(sc, Crash::Never).await.expect("reference run");
        assert!(!reference.crashed(), "{name}: the reference run crashed");
        if let Err(e) = check(sc, &reference).await {
            panic!("{name}: reference run: {e}");
        }
        let n = reference.calls();
        assert!(n >= min_calls, "{name}: only {n} calls");
        let points: Vec<Crash> = (1..=n)
            .map(Crash::After)
            .chain((0..n).map(Crash::Before))
            .collect();
        // Independent worlds (one emulator and proxy each): run a few at once.
        let run = &run;
        let results: Vec<_> = futures::stream::iter(points)
            .map(|crash| async move { (crash, run(sc, crash).await) })
            .buffer_unordered(6)
            .collect()
            .await;
        let mut crashes = 0;
        for (crash, result) in results {
            match result {
                Ok(r) => {
                    crashes += usize::from(r.crashed());
                    if let Err(e) = check(sc, &r).await {
                        failures.push(format!("{name} / {crash:?}: {e}"));
                    }
                }
                Err(e) => failures.push(format!("{name} / {crash:?}: {e}")),
            }
        }
        eprintln!("{name:<width$} {n:>3} calls, {crashes:>3} crash points restarted");
        if crashes != 2 * n {
            failures.push(format!(
                "{name}: {crashes} of {} crash points crashed (the call sequence differs from the reference run)",
                2 * n
            ));
        }
    }
    failures
}
