//! An in-memory fake of the Kubernetes API server, speaking HTTP on 127.0.0.1, for testing
//! the controller's glue with an unmodified `kube::Client`: `Api<T>` verbs, kube-runtime's
//! `watcher`/`reflector`/`Controller`, the event `Recorder` and Lease-based leader election.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use amlops_fake_kube::FakeApiServer;
//! let fake = FakeApiServer::start().await?;
//! for crd in amlops::crd::all_crds() {
//!     fake.install_crd(crd)?;
//! }
//! let client = fake.client();
//! // ... run the code under test with `client`, then assert on
//! // fake.get(..), fake.events(ns), fake.requests() ...
//! fake.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Served
//! - Built-in kinds ([`default_kinds`]): core/v1 Secrets, ConfigMaps, Namespaces, Events;
//!   events.k8s.io/v1 Events; coordination.k8s.io/v1 Leases; apiextensions.k8s.io/v1
//!   CustomResourceDefinitions. More with [`FakeApiServer::register_kind`].
//! - Any kind defined by a stored CRD (installed with [`FakeApiServer::install_crd`] or
//!   created over HTTP), once Established, at every served version, with its scope and
//!   `status` subresource. All versions share one store (conversion strategy `None`).
//! - Paths `/api/v1/...` and `/apis/{group}/{version}/...`: cluster-wide and namespaced
//!   collections, items and `/status`; legacy discovery (`/api`, `/apis`, `/apis/{g}/{v}`)
//!   and `/version`.
//! - GET; LIST with `labelSelector`, `fieldSelector` (any dotted path, `=`/`==`/`!=`),
//!   `limit`/`continue`; WATCH (see `watch.rs`: resourceVersion start points, bookmarks,
//!   `sendInitialEvents`, `timeoutSeconds`, 410 Expired after [`FakeApiServer::compact`]).
//! - POST (409 AlreadyExists, `generateName`), PUT (409 on a stale resourceVersion; custom
//!   resources and CRDs require one), DELETE (preconditions; finalizers → deletionTimestamp,
//!   removal once a later write empties them), deletecollection, `dryRun=All`.
//! - PATCH: merge (RFC 7386), JSON patch (RFC 6902, incl. `test`), strategic merge (as a
//!   merge patch), server-side apply (see below). A `metadata.resourceVersion` in the
//!   patched result that is not current is a 409.
//! - Server-owned metadata (uid, creationTimestamp, resourceVersion from one global
//!   counter, generation bumped when anything outside metadata/status changes, and on the
//!   first DELETE of an object with finalizers as the real registry does); the status
//!   subresource split (main writes keep `.status`, `/status` writes change only `.status`);
//!   no-op writes produce no new resourceVersion and no watch event.
//! - Structural defaulting of custom resources from the CRD's storage-version schema
//!   (`defaults.rs`): on create and update, and for objects stored before the CRD changed
//!   (the real server's defaulting on read); a status subresource's `status` dropped on
//!   create comes back with its default, as it does from the real server.
//! - Errors are `metav1.Status` bodies with the real reasons and codes. JSON patch `test` of
//!   a missing path against `null` passes (as the API server's json-patch library does;
//!   kube-runtime's finalizer helper relies on it). Secrets fold `stringData` into `data`.
//! - Namespace deletion: DELETE of a Namespace marks it `Terminating`, deletes every object
//!   in it (finalizers hold theirs), refuses creates in it with the API server's 403 "…
//!   unable to create new content in namespace X because it is being terminated" (Events
//!   included), and removes the Namespace once it is empty.
//! - Test hooks: a request log ([`FakeApiServer::requests`]), fault injection
//!   ([`Fault`]; note kube's client itself retries 429/503/504 up to 15 times, so use e.g.
//!   500 or 409 to make a call fail), CRDs held back from Established, watch expiry
//!   ([`FakeApiServer::compact`], [`FakeApiServer::expire_watches`]).
//! - As a process of its own: `amlops-dev fake-api-server --listen 127.0.0.1:0` (hidden; the
//!   child of `amlops-dev bench --controller`), with admin endpoints under `/_fake/` for
//!   seeding objects and reading the request counts (see `admin.rs`).
//!
//! # Not emulated
//! - Admission: no OpenAPI schema validation, CEL `x-kubernetes-validations`,
//!   pruning of unknown fields, webhooks, RBAC or authentication (any request is allowed).
//! - Server-side apply field ownership is approximated without reading `managedFields`: the
//!   applied configuration is deep-merged (maps merge, lists are atomic); fields a manager
//!   applied before and omits now are removed unless another apply manager applied them or
//!   they changed since; conflicts are only detected against other apply managers (never
//!   against PUT/merge-patch writers). Objects do carry `managedFields`, one entry per
//!   (manager, operation, subresource), each owning every field its last write covered
//!   (see `managed.rs`), so clients decode what a real API server sends.
//! - Strategic merge patch list strategies and directives; garbage collection
//!   (`ownerReferences`, propagation policies); namespace existence (objects may be created
//!   in a namespace no Namespace object names); graceful
//!   deletion periods; CRD deletion waits for nothing (its objects vanish at once); the two
//!   Event APIs are separate stores; aggregated discovery; protobuf; resourceVersion
//!   semantics of LIST (always the latest) and `continue` tokens are plain offsets; PUT
//!   never creates; bodies over 2 MiB get axum's plain 413, not a `Status`.
//! - Validation is limited to what keeps clients working: `metadata.name` must be a
//!   DNS-1123 subdomain, labels/annotations maps of strings, finalizers a list of strings,
//!   apiVersion/kind/namespace/name in a body must match the URL.

mod admin;
mod apply;
mod crd;
mod defaults;
mod errors;
mod http;
mod managed;
mod patch;
mod select;
mod store;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use tokio::sync::watch as tokio_watch;
use tokio::task::JoinHandle;

pub use admin::{FakeApiServerArgs, run_cli};
use errors::ApiError;
use http::Shared;
use store::{Deleted, State, Sub, TypeInfo};

/// A served built-in kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceKind {
    /// "" for the core group.
    pub group: String,
    /// API version within the group, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Secret`.
    pub kind: String,
    /// Resource (plural) name in URLs, e.g. `secrets`.
    pub plural: String,
    /// Namespaced (true) or cluster-scoped.
    pub namespaced: bool,
    /// Whether `/status` is a subresource (writes to the main resource then ignore `status`).
    pub status_subresource: bool,
}

impl ResourceKind {
    /// A kind at `api_version` (`v1` or `group/version`), without a status subresource.
    pub fn new(api_version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        Self {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            namespaced,
            status_subresource: false,
        }
    }

    /// With a `status` subresource.
    pub fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }
}

/// The built-in kinds every fake serves.
pub fn default_kinds() -> Vec<ResourceKind> {
    vec![
        ResourceKind::new("v1", "Secret", "secrets", true),
        ResourceKind::new("v1", "ConfigMap", "configmaps", true),
        ResourceKind::new("v1", "Namespace", "namespaces", false).with_status(),
        ResourceKind::new("v1", "Event", "events", true),
        ResourceKind::new("events.k8s.io/v1", "Event", "events", true),
        ResourceKind::new("coordination.k8s.io/v1", "Lease", "leases", true),
        ResourceKind::new(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .with_status(),
    ]
}

/// One HTTP request the fake answered, in the order their effects were applied.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// HTTP method, upper case.
    pub method: String,
    /// URL path, e.g. `/api/v1/namespaces/default/secrets/x`.
    pub path: String,
    /// The raw query string (without `?`), e.g. `fieldManager=amlops&force=true`.
    pub query: String,
    /// The request's `Content-Type` (which patch type a PATCH is).
    pub content_type: Option<String>,
    /// The decoded JSON (or YAML) body, if any.
    pub body: Option<Value>,
    /// The HTTP status answered (200 for a watch that was opened).
    pub status: u16,
}

impl RequestRecord {
    /// A decoded query parameter.
    pub fn param(&self, key: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// Whether this was a WATCH.
    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch").as_deref(), Some("true" | "1"))
    }
}

/// Requests by method, watches counted as `WATCH`.
fn count_requests(log: &[RequestRecord]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for r in log {
        let method = if r.is_watch() {
            "WATCH".to_string()
        } else {
            r.method.clone()
        };
        *counts.entry(method).or_default() += 1;
    }
    counts
}

/// Makes the next `times` requests whose method matches and whose `path?query` contains
/// `path_contains` fail with `status` (a `metav1.Status` body), before any effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// e.g. "PATCH"; `None` matches every method.
    pub method: Option<String>,
    /// A substring of `path?query` the request must contain.
    pub path_contains: String,
    /// HTTP status answered.
    pub status: u16,
    /// How many more matching requests fail.
    pub remaining: usize,
    /// The `metav1.Status` message.
    pub message: String,
}

impl Fault {
    /// Fails the next matching request (of any method) once.
    pub fn new(path_contains: &str, status: u16) -> Self {
        Self {
            method: None,
            path_contains: path_contains.to_string(),
            status,
            remaining: 1,
            message: format!("injected fault ({status})"),
        }
    }

    /// Only requests with this HTTP method match.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Fails the next `times` matching requests instead of one.
    pub fn times(mut self, times: usize) -> Self {
        self.remaining = times;
        self
    }

    /// The message of the `metav1.Status` answered.
    pub fn message(mut self, message: &str) -> Self {
        self.message = message.to_string();
        self
    }

    pub(crate) fn matches(&self, method: &str, target: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && target.contains(&self.path_contains)
    }
}

/// The fake API server; stops when dropped or on [`FakeApiServer::shutdown`].
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: tokio_watch::Sender<bool>,
    expire: tokio_watch::Sender<u64>,
    task: Option<JoinHandle<()>>,
}

/// Errors of the test-side helpers: the `Status` the API would have answered.
pub type Status = Box<kube::core::Status>;

impl FakeApiServer {
    /// Binds 127.0.0.1 on a free port; watches send a BOOKMARK every second.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(Duration::from_secs(1)).await
    }

    /// Like [`FakeApiServer::start`] with another bookmark interval.
    pub async fn start_with(bookmark_interval: Duration) -> std::io::Result<Self> {
        Self::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            bookmark_interval,
            false,
            store::BROADCAST_CAP,
        )
        .await
    }

    /// Like [`FakeApiServer::start`], but a watch is closed once it falls more than
    /// `changes` changes behind (4,096 otherwise; at least 1), for tests of a watcher that
    /// does not keep up. Its client then watches again from the last resourceVersion it saw.
    pub async fn start_with_watch_capacity(changes: usize) -> std::io::Result<Self> {
        Self::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Duration::from_secs(1),
            false,
            changes,
        )
        .await
    }

    /// Binds `addr` (port 0: a free one) and also serves the admin endpoints under
    /// `/_fake/` (seeding objects, the request counts; see `admin.rs`), for a fake run as
    /// its own process (`amlops-dev fake-api-server`). Watches send a BOOKMARK every second.
    pub async fn serve_on(addr: SocketAddr) -> std::io::Result<Self> {
        Self::bind(addr, Duration::from_secs(1), true, store::BROADCAST_CAP).await
    }

    async fn bind(
        addr: SocketAddr,
        bookmark_interval: Duration,
        admin: bool,
        watch_capacity: usize,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let addr = if addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        let (stop, stopped) = tokio_watch::channel(false);
        let (expire, expired) = tokio_watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(default_kinds(), watch_capacity)),
            shutdown: stopped.clone(),
            expire: expired,
            bookmark_interval: bookmark_interval.max(Duration::from_millis(10)),
        });
        let app = if admin {
            http::router(shared.clone()).nest("/_fake", admin::router(shared.clone()))
        } else {
            http::router(shared.clone())
        };
        let mut until = stopped;
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = until.wait_for(|stop| *stop).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, "fake API server stopped");
            }
        });
        Ok(Self {
            shared,
            addr,
            stop,
            expire,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The loopback address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `kube::Client` for this server (no auth, default namespace `default`).
    pub fn client(&self) -> kube::Client {
        let uri: axum::http::Uri = self
            .url()
            .parse()
            .expect("http://127.0.0.1:port is a valid URI");
        let config = kube::Config::new(uri);
        kube::Client::try_from(config).expect("a plain-http kube client always builds")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Stores a CRD (create or replace); its kind is served and Established at once.
    pub fn install_crd(&self, crd: CustomResourceDefinition) -> Result<Value, Status> {
        let value = serde_json::to_value(&crd)
            .map_err(|e| ApiError::bad_request(&e.to_string()).to_status())?;
        self.put(value)
    }

    /// Stores a CRD that stays `Established=False` (its kind answers 404) until
    /// [`FakeApiServer::establish`].
    pub fn install_crd_not_established(
        &self,
        crd: CustomResourceDefinition,
    ) -> Result<Value, Status> {
        if let Some(name) = &crd.metadata.name {
            self.lock().held_crds.insert(name.clone());
        }
        self.install_crd(crd)
    }

    /// Marks a CRD Established (a MODIFIED event); false if it is not stored.
    pub fn establish(&self, crd_name: &str) -> bool {
        self.lock().establish(crd_name)
    }

    /// Serves another built-in kind.
    pub fn register_kind(&self, kind: ResourceKind) {
        self.lock().register_builtin(kind);
    }

    /// Resolves `apiVersion`/`kind` and namespace of an object written by a test.
    fn target(state: &State, obj: &Value) -> Result<(TypeInfo, String, String, String), Status> {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let api_version = s("/apiVersion");
        let ty = state
            .find_type(api_version, s("/kind"))
            .ok_or_else(|| ApiError::no_route().to_status())?;
        let version = api_version
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let ns = match (ty.namespaced, s("/metadata/namespace")) {
            (false, _) => String::new(),
            (true, "") => "default".to_string(),
            (true, ns) => ns.to_string(),
        };
        Ok((ty, version, ns, s("/metadata/name").to_string()))
    }

    /// Creates or replaces an object as a user would (no resourceVersion check). For kinds
    /// with a status subresource `.status` is ignored: use [`FakeApiServer::put_status`].
    /// Namespaced objects without a namespace go to `default`.
    pub fn put(&self, obj: Value) -> Result<Value, Status> {
        Self::put_in(&mut self.lock(), obj)
    }

    fn put_in(state: &mut State, mut obj: Value) -> Result<Value, Status> {
        let (ty, version, ns, name) = Self::target(state, &obj)?;
        let result = if state.get(&ty, &ns, &name).is_some() {
            state.replace(&ty, &version, &ns, &name, obj, Sub::Main, false, false)
        } else {
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            state.create(&ty, &version, &ns, obj, false)
        };
        result
            .map(|o| http::present(&ty, &version, &o))
            .map_err(|e| e.to_status())
    }

    /// Replaces the `.status` of an existing object.
    pub fn put_status(&self, obj: Value) -> Result<Value, Status> {
        let mut state = self.lock();
        let (ty, version, ns, name) = Self::target(&state, &obj)?;
        state
            .replace(&ty, &version, &ns, &name, obj, Sub::Status, false, false)
            .map(|o| http::present(&ty, &version, &o))
            .map_err(|e| e.to_status())
    }

    /// One object; `kind_or_plural` is e.g. `"InferenceCluster"` or `"secrets"`, `ns` is
    /// ignored for cluster-scoped kinds.
    pub fn get(
        &self,
        api_version: &str,
        kind_or_plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let state = self.lock();
        let ty = state.find_type(api_version, kind_or_plural)?;
        let ns = if ty.namespaced {
            ns.unwrap_or("default")
        } else {
            ""
        };
        let version = api_version.rsplit('/').next().unwrap_or_default();
        state
            .get(&ty, ns, name)
            .map(|o| http::present(&ty, version, o))
    }

    /// Objects of a kind in one namespace (`Some`) or all (`None`), by namespace and name.
    pub fn list(&self, api_version: &str, kind_or_plural: &str, ns: Option<&str>) -> Vec<Value> {
        let state = self.lock();
        let Some(ty) = state.find_type(api_version, kind_or_plural) else {
            return Vec::new();
        };
        let version = api_version.rsplit('/').next().unwrap_or_default();
        let ns = if ty.namespaced { ns } else { None };
        state
            .list(&ty, ns)
            .iter()
            .map(|o| http::present(&ty, version, o))
            .collect()
    }

    /// Deletes as a user would: `Ok(Some(obj))` if finalizers keep it (now terminating),
    /// `Ok(None)` once it is gone.
    pub fn delete(
        &self,
        api_version: &str,
        kind_or_plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, Status> {
        let mut state = self.lock();
        let ty = state
            .find_type(api_version, kind_or_plural)
            .ok_or_else(|| ApiError::no_route().to_status())?;
        let ns = if ty.namespaced {
            ns.unwrap_or("default")
        } else {
            ""
        };
        let version = api_version.rsplit('/').next().unwrap_or_default();
        match state.delete(&ty, ns, name, &Value::Null, false) {
            Ok(Deleted::Terminating(o)) => Ok(Some(http::present(&ty, version, &o))),
            Ok(Deleted::Gone(_)) => Ok(None),
            Err(e) => Err(e.to_status()),
        }
    }

    /// Events in a namespace: core/v1 ones, then events.k8s.io/v1 ones (what `Recorder`
    /// writes), each in name order.
    pub fn events(&self, ns: &str) -> Vec<Value> {
        let mut all = self.list("v1", "events", Some(ns));
        all.extend(self.list("events.k8s.io/v1", "events", Some(ns)));
        all
    }

    /// The request log, oldest first.
    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    /// The requests answered so far, counted by method (upper case), watches apart as
    /// `WATCH` (see [`RequestRecord::is_watch`]).
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        count_requests(&self.lock().requests)
    }

    /// Forgets the requests recorded so far.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Adds `fault` (see [`Fault`]).
    pub fn inject_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every fault not yet used up.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Forgets the watch history: watches resuming from an older resourceVersion get a
    /// 410 Expired event and must relist.
    pub fn compact(&self) {
        self.lock().compact();
    }

    /// Compacts (see [`FakeApiServer::compact`]) and ends every open watch with a 410
    /// Expired ERROR event, as when the API server's watch cache drops a slow watcher:
    /// kube-runtime watchers must relist.
    pub fn expire_watches(&self) {
        self.compact();
        self.expire.send_modify(|n| *n += 1);
    }

    /// Open watches forward each change `delay` after it was written, as a loaded API
    /// server's watch cache does: a client reading through an informer sees its own writes
    /// late. Lists and GETs stay current; order is kept.
    pub fn set_watch_delay(&self, delay: Duration) {
        self.lock().watch_delay = delay;
    }

    /// The newest resourceVersion.
    pub fn resource_version(&self) -> String {
        self.lock().rv.to_string()
    }

    /// Polls `pred` every 10 ms until it holds (true) or `timeout` passes (false).
    pub async fn wait_until(&self, timeout: Duration, mut pred: impl FnMut(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Ends all watches and stops serving (waits up to 5 s for connections to close).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
