//! The controllers of all four kinds, on typed watches: the objects are watched as
//! `DeserializeGuard<K>`, so one object that does not decode (written before a CRD change,
//! say) stalls on its own with `InvalidSpec` instead of breaking the watch of all the
//! others. The API server's admission (schema and CEL) has already checked every object it
//! stored, so the reconcile runs no second admission: only the kind's own checks that
//! admission cannot make ([`TypedKind::check`]: address arithmetic, subscription match).
//!
//! One generic reconcile over [`TypedKind`]: the finalizer (added before the first Azure
//! write, removed only once Azure confirms the cleanup — why not `kube::runtime::finalizer`:
//! see [`set_finalizer`]), the identity (`credentialsRef`, own namespace only; during a
//! deletion whose Secret is gone, the identity it last held), then the kind's engine, whose
//! status is saved by server-side apply and whose requeue is the next action. A
//! Kubernetes-side failure is retried with a per-object backoff ([`error_policy`]) and
//! reported by a Warning event published from the controller's result stream ([`drive`]).

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::azure::ArmClient;
use crate::crd::{ADOPT_ANNOTATION, CredentialsRef, FINALIZER, REATTACH_ANNOTATION};
use crate::engine::EngineError;
use crate::engine::conditions::{Conditioned, record_stall};
use crate::engine::store::{Event, KubeStore, ObjKey};
use crate::engine::verdict::{Stall, Verdict};

use super::credentials::foreign_namespace;
use super::kube_store::{ApiStore, truncate};
use super::metrics::{ReconcileResult, ResourceState};
use super::reconciler::{ReconcileError, Shared};

/// What one reconcile of a typed kind's engine ended with.
#[derive(Clone, Debug)]
pub struct TypedOutcome {
    /// The saved status says `Stalled=True`.
    pub stalled: bool,
    /// When to reconcile again (`None`: only on a change).
    pub requeue: Option<Duration>,
    /// The cleanup is complete in Azure: the finalizer may go.
    pub finished: bool,
    /// The verdict on an Azure failure this reconcile met.
    pub verdict: Option<Verdict>,
}

/// A kind served by a typed controller.
pub trait TypedKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// Kind name (events, metrics, keys).
    const KIND: &'static str;
    /// The status.
    type Status: Conditioned
        + Serialize
        + DeserializeOwned
        + Default
        + Clone
        + Send
        + Sync
        + 'static;

    /// The saved status (default when there is none).
    fn status(&self) -> Self::Status;
    /// The `credentialsRef` (a Secret of its own namespace), if any.
    fn credentials_ref(&self) -> Option<&CredentialsRef>;
    /// Secrets of its namespace whose change calls for a reconcile (credentials, TLS).
    fn secret_names(&self) -> Vec<&str>;
    /// Whether Azure may hold something of this resource (an id recorded in status): a
    /// deletion then has cleanup to do.
    fn reached_azure(status: &Self::Status) -> bool;
    /// What `amlops_resources` and `amlops_inflight_operations` count for it.
    fn resource_state(&self) -> ResourceState;
    /// The subscription whose ARM read budget its resyncs share (`None`: the spec names
    /// none that parses).
    fn subscription(&self) -> Option<String>;
    /// The checks of the spec that the API server's admission cannot make (address
    /// arithmetic, a subscription match), run before any Azure call: a failure stalls the
    /// object (`InvalidSpec`, no finalizer, no Azure call) until its spec changes.
    ///
    /// # Errors
    /// The stall that says what is wrong.
    fn check(&self) -> Result<(), Stall> {
        Ok(())
    }
    /// What it claims in Azure against its siblings, for the precedence rule of
    /// [`crate::engine::checks::takes_precedence`] (the cluster kinds: their compute and the
    /// AKS cluster they attach); `None`: the kind claims nothing there.
    fn claim(&self) -> Option<crate::engine::store::Claim> {
        None
    }
    /// One reconcile through the kind's engine, with `arm` as identity.
    fn reconcile(
        &self,
        ctx: &TypedCtx,
        arm: ArmClient,
    ) -> impl Future<Output = Result<TypedOutcome, ReconcileError>> + Send;
}

/// Context of the typed controllers (shared by all four kinds).
pub struct TypedCtx {
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// Kubernetes side of the engines.
    pub store: ApiStore,
}

/// Context of one kind's reconciles: the shared context and the kind's cache.
pub struct KindCtx<K: TypedKind> {
    /// The shared context.
    pub ctx: Arc<TypedCtx>,
    /// The kind's reflector cache (an object is counted in error backoff only while in it).
    pub cache: Store<DeserializeGuard<K>>,
}

impl TypedOutcome {
    /// From what an engine returned: its saved status's `conditions` and the rest.
    pub fn new(
        conditions: &[Condition],
        requeue: Option<Duration>,
        finished: bool,
        verdict: Option<Verdict>,
    ) -> Self {
        Self {
            stalled: condition_on(conditions, "Stalled"),
            requeue,
            finished,
            verdict,
        }
    }
}

impl TypedCtx {
    /// The engine for one reconcile, acting as `arm`.
    pub fn engine(&self, arm: ArmClient) -> crate::engine::Engine<ApiStore> {
        crate::engine::Engine {
            arm,
            store: self.store.clone(),
            config: self.shared.engine.clone(),
        }
    }
}

/// Whether condition `type_` is True.
pub fn condition_on(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The key of an object of `K`.
pub fn key_of<K: TypedKind>(obj: &impl ResourceExt) -> ObjKey {
    ObjKey {
        kind: K::KIND.into(),
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
    }
}

/// Stalls an object the engine never saw (it does not decode, its spec fails a check, its
/// credentials cannot be used): status (the same [`record_stall`] as the engines') and one
/// Warning event, no Azure call, no requeue — only a change of the object helps.
async fn stall<K: TypedKind>(
    ctx: &TypedCtx,
    key: &ObjKey,
    mut st: K::Status,
    generation: Option<i64>,
    s: Stall,
) -> Result<Action, ReconcileError> {
    let s = Stall::new(s.reason, truncate(&s.message, 1024));
    if !record_stall(&mut st, &s, generation) {
        return Ok(Action::await_change());
    }
    ctx.store
        .save_typed_status::<K>(key, &st)
        .await
        .map_err(EngineError::from)?;
    ctx.store
        .emit(Event {
            key: key.clone(),
            warning: true,
            reason: s.reason.into(),
            message: s.message,
        })
        .await;
    Ok(Action::await_change())
}

/// An object that does not decode as a `K`: read once more as JSON from the API server, to
/// name the field at fault (`spec.agentCount: invalid type…`) and to keep the status it has
/// (its `computeId`, say). `None`: it is gone.
async fn undecodable<K: TypedKind>(
    ctx: &TypedCtx,
    key: &ObjKey,
    invalid: &InvalidObject,
) -> Result<Option<(Stall, K::Status)>, kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.shared.client.clone(),
        &key.namespace,
        &ApiResource::erase::<K>(&()),
    );
    let Some(raw) = api.get_opt(&key.name).await? else {
        return Ok(None);
    };
    let mut value = serde_json::to_value(&raw).unwrap_or(Value::Null);
    let status = value
        .get("status")
        .and_then(|s| serde_json::from_value::<K::Status>(s.clone()).ok())
        .unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        // A list item or a watch event may lack them; the object itself has them.
        map.insert("apiVersion".into(), json!(K::api_version(&())));
        map.insert("kind".into(), json!(K::KIND));
    }
    let error = match serde_path_to_error::deserialize::<_, K>(value) {
        Err(e) => format!("{}: {}", e.path(), e.inner()),
        // It decodes now (it changed since the watch saw it): its next event reconciles it.
        Ok(_) => invalid.error.clone(),
    };
    let s = Stall::new(
        "InvalidSpec",
        format!(
            "the object does not decode as a {}: {error}. Fix the resource; nothing was sent to Azure",
            K::KIND
        ),
    );
    Ok(Some((s, status)))
}

/// Adds or removes our finalizer with a JSON patch guarded by a `test` of the current list
/// (a concurrent change by someone else fails instead of being overwritten). Not
/// `kube::runtime::finalizer`: that helper removes the finalizer as soon as its cleanup
/// returns `Ok`, while ours must stay until Azure confirms the cleanup, which takes several
/// reconciles.
///
/// # Errors
/// The API server's refusal (409/422 when the list changed meanwhile).
pub async fn set_finalizer<K: TypedKind>(
    ctx: &TypedCtx,
    obj: &K,
    present: bool,
) -> Result<(), kube::Error> {
    let api: Api<K> = Api::namespaced(
        ctx.shared.client.clone(),
        &obj.namespace().unwrap_or_default(),
    );
    let current = obj.meta().finalizers.clone();
    let mut wanted: Vec<String> = current
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != FINALIZER)
        .collect();
    if present {
        wanted.push(FINALIZER.into());
    }
    let ops = match current {
        Some(list) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": list},
            {"op": "replace", "path": "/metadata/finalizers", "value": wanted},
        ]),
        None => json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": obj.resource_version()},
            {"op": "add", "path": "/metadata/finalizers", "value": wanted},
        ]),
    };
    let patch: json_patch::Patch = serde_json::from_value(ops).map_err(kube::Error::SerdeError)?;
    let patched = api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::<Value>::Json(patch),
        )
        .await?;
    ctx.store
        .wrote_version(&key_of::<K>(obj), patched.meta().resource_version.clone());
    Ok(())
}

/// The identity that applies the `deletionPolicy` of a resource whose `credentialsRef`
/// Secret is gone (deleting a namespace deletes its Secrets before the custom resources
/// that our finalizer holds, and a terminating namespace takes no new Secret): the
/// identity last built from that Secret, remembered in memory; after an operator restart,
/// the operator's own identity, with a Warning. `None` when the resource never reached
/// Azure ([`TypedKind::reached_azure`]): there is nothing to clean up.
async fn deletion_identity<K: TypedKind>(
    ctx: &TypedCtx,
    obj: &K,
    status: &K::Status,
) -> Option<ArmClient> {
    if !K::reached_azure(status) {
        return None;
    }
    let key = key_of::<K>(obj);
    let name = obj
        .credentials_ref()
        .map(|r| r.name.as_str())
        .unwrap_or_default();
    if let Some(c) = ctx.shared.credentials.remembered(&key.namespace, name) {
        tracing::info!(object = %key, "credentialsRef Secret gone: deleting with the identity it held");
        return Some(c);
    }
    let message = format!(
        "credentialsRef Secret {}/{name} is gone and its identity is not remembered (the operator restarted): applying deletionPolicy with the operator's own identity",
        key.namespace
    );
    tracing::warn!(object = %key, "{message}");
    // In a terminating namespace the API server refuses this event too (logged).
    ctx.store
        .emit(Event {
            key,
            warning: true,
            reason: "CredentialsSecretGone".into(),
            message,
        })
        .await;
    Some(ctx.shared.credentials.default_client().clone())
}

async fn reconcile_inner<K: TypedKind>(
    obj: &K,
    ctx: &TypedCtx,
) -> Result<(Action, ReconcileResult), ReconcileError> {
    let shared = &ctx.shared;
    let key = key_of::<K>(obj);
    let deleting = obj.meta().deletion_timestamp.is_some();
    let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        // Not ours (never written to Azure, or already cleaned up).
        return Ok((Action::await_change(), ReconcileResult::Success));
    }
    let status = obj.status();
    let generation = obj.meta().generation;
    let refused =
        foreign_namespace(&key.namespace, obj.credentials_ref()).map_or_else(|| obj.check(), Err);
    if let Err(s) = refused {
        let action = stall::<K>(ctx, &key, status, generation, s).await?;
        return Ok((action, ReconcileResult::Stalled));
    }
    let credentials = obj.credentials_ref().map(|r| r.name.as_str());
    let arm = match shared
        .credentials
        .client_for_secret(&key.namespace, credentials, &ctx.store)
        .await
    {
        Ok(c) => c,
        Err(s) if deleting && s.reason == "SecretNotFound" => {
            match deletion_identity(ctx, obj, &status).await {
                Some(c) => c,
                None => {
                    // Nothing of this resource reached Azure: nothing to clean up there.
                    set_finalizer(ctx, obj, false).await?;
                    ctx.store.forget(&key);
                    return Ok((Action::await_change(), ReconcileResult::Success));
                }
            }
        }
        Err(s) => {
            let action = stall::<K>(ctx, &key, status, generation, s).await?;
            return Ok((action, ReconcileResult::Stalled));
        }
    };
    if !deleting && !has_finalizer {
        // Before the first Azure write, so a delete can never skip the cleanup.
        set_finalizer(ctx, obj, true).await?;
    }
    let out = obj.reconcile(ctx, arm).await?;
    if out.finished {
        // Azure confirmed the cleanup (or the policy is Orphan): let the object go.
        if has_finalizer {
            set_finalizer(ctx, obj, false).await?;
        }
        ctx.store.forget(&key);
        return Ok((Action::await_change(), ReconcileResult::Success));
    }
    let steady = shared
        .engine
        .resync
        .base
        .div_f64(shared.engine.time_scale.max(f64::MIN_POSITIVE));
    let result = if out.stalled {
        ReconcileResult::Stalled
    } else if out.verdict.is_some() {
        // An Azure failure that will be retried (throttled, 5xx, busy).
        ReconcileResult::Error
    } else if out.requeue.is_none_or(|d| d >= steady) {
        ReconcileResult::Success
    } else {
        ReconcileResult::Requeue
    };
    // Exactly the kind's requeue: Azure's Retry-After after a failure (never shortened),
    // a poll, or the resync policy's steady interval (already jittered there).
    let action = match out.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    };
    Ok((action, result))
}

/// One reconcile of an object of `K` (kube-runtime's reconciler).
///
/// # Errors
/// Kubernetes-side failures; they are retried by [`error_policy`].
pub async fn reconcile<K: TypedKind>(
    obj: Arc<DeserializeGuard<K>>,
    kctx: Arc<KindCtx<K>>,
) -> Result<Action, ReconcileError> {
    use tracing::Instrument;
    let ctx = &kctx.ctx;
    let started = Instant::now();
    let key = key_of::<K>(obj.as_ref());
    let span = tracing::info_span!(
        "reconcile",
        kind = K::KIND,
        namespace = %key.namespace,
        name = %key.name,
        generation = obj.meta().generation,
    );
    let res = async {
        match &obj.0 {
            Err(invalid) => match undecodable::<K>(ctx, &key, invalid).await? {
                Some((s, status)) => {
                    let generation = invalid.metadata.generation;
                    let action = stall::<K>(ctx, &key, status, generation, s).await?;
                    Ok((action, ReconcileResult::Stalled))
                }
                None => Ok((Action::await_change(), ReconcileResult::Success)),
            },
            Ok(o) => match ctx.store.current(o).await? {
                Some(o) => reconcile_inner(&o, ctx).await,
                // Deleted since the cache saw it; its deletion event follows.
                None => Ok((Action::await_change(), ReconcileResult::Success)),
            },
        }
    }
    .instrument(span.clone())
    .await;
    let result = match &res {
        Ok((_, r)) => *r,
        Err(_) => ReconcileResult::Error,
    };
    ctx.shared
        .metrics
        .reconciled(K::KIND, result, started.elapsed());
    span.in_scope(|| {
        tracing::debug!(
            ?result,
            took_ms = started.elapsed().as_millis() as u64,
            "reconciled"
        )
    });
    if res.is_ok() {
        ctx.shared.clear_failures(&key);
    }
    res.map(|(a, _)| a)
}

/// kube-runtime's error policy, for Kubernetes-side failures only (Azure failures have a
/// verdict in the engine): a capped exponential backoff per object. The Warning event that
/// says what failed is published from the result stream ([`drive`]), not from here.
pub fn error_policy<K: TypedKind>(
    obj: Arc<DeserializeGuard<K>>,
    err: &ReconcileError,
    kctx: Arc<KindCtx<K>>,
) -> Action {
    let key = key_of::<K>(obj.as_ref());
    let object = ObjectRef::from_obj(obj.as_ref());
    // Counted only while the object is in the cache (checked under the failures' lock):
    // the watch updates the cache before it forgets a deleted object's count, so a
    // reconcile that fails as its object goes cannot leave a count behind.
    let (n, delay) = kctx
        .ctx
        .shared
        .count_failure(&key, || kctx.cache.get(&object).is_some());
    tracing::warn!(
        object = %key,
        category = err.category(),
        error = %err,
        failures = n,
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// The parts of an object whose change calls for a reconcile: spec (generation), the
/// deletion mark and our two annotations; not our own status and finalizer writes.
fn relevant_change<K: TypedKind>(o: &DeserializeGuard<K>) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    predicates::generation(o).hash(&mut h);
    o.meta().deletion_timestamp.is_some().hash(&mut h);
    let a = o.annotations();
    a.get(REATTACH_ANNOTATION).hash(&mut h);
    a.get(ADOPT_ANNOTATION).hash(&mut h);
    // An object that does not decode is looked at again when it changes at all.
    o.0.is_err().then(|| o.resource_version()).hash(&mut h);
    Some(h.finish())
}

/// `namespace/name`.
pub fn object_name(o: &impl ResourceExt) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

/// Objects of `K` in the Secret's namespace that name it (credentials, TLS): a fixed Secret
/// reconciles them again.
fn referencing<K: TypedKind>(
    store: &Store<DeserializeGuard<K>>,
    s: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<DeserializeGuard<K>>> {
    let ns = s.namespace().unwrap_or_default();
    let name = s.name_any();
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
        .filter(|o| {
            o.0.as_ref()
                .is_ok_and(|k| k.secret_names().contains(&name.as_str()))
        })
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// `Api` of `K` over one namespace or all.
pub fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A kind's controller before it runs ([`controller`]).
pub struct Watched<K: TypedKind> {
    /// The controller: the kind's typed watch and the Secrets its objects name.
    pub controller: Controller<DeserializeGuard<K>>,
    /// Its reflector cache.
    pub cache: Store<DeserializeGuard<K>>,
    /// True once the cache holds the first full list.
    pub synced: watch::Receiver<bool>,
}

/// The controller of `K` on a cache of its own (see [`controller_on`]).
pub fn controller<K: TypedKind>(ctx: &TypedCtx, namespace: Option<&str>) -> Watched<K> {
    controller_on(ctx, namespace, Writer::default())
}

/// The controller of `K`, filling `writer`'s cache: its typed watch (metrics and the error
/// backoff's bookkeeping from the watch events, our own writes filtered out) and the
/// Secrets its objects name. The caller adds the kind's other watches and then [`drive`]s
/// it.
pub fn controller_on<K: TypedKind>(
    ctx: &TypedCtx,
    namespace: Option<&str>,
    writer: Writer<DeserializeGuard<K>>,
) -> Watched<K> {
    let client = &ctx.shared.client;
    let wc = watcher::Config::default();
    let reader = writer.as_reader();
    // Synced once the first full list is in the cache. (Not `Store::wait_until_ready`: the
    // controller waits on it too, and its one-shot keeps only one waker.)
    let (synced_tx, synced) = watch::channel(false);
    let shared = ctx.shared.clone();
    let cache = reader.clone();
    let live = move |ns: &str, name: &str| cache.get(&ObjectRef::new(name).within(ns)).is_some();
    let claims = ctx.store.claim_index();
    // The resource gauges and the claim index follow the watch events (a scrape or a
    // claim check walks no cache).
    let stream = reflector(
        writer,
        watcher(api::<DeserializeGuard<K>>(client, namespace), wc.clone()).modify(slim),
    )
    .default_backoff()
    .inspect(move |e| {
        if let Ok(event) = e {
            claims.apply(event);
        }
    })
    .inspect(move |e| match e {
        Ok(watcher::Event::InitDone) => {
            synced_tx.send_replace(true);
            // Deletions during a watch gap get no `Delete` event: forget what the fresh
            // list no longer has.
            shared.retain_failures(K::KIND, |key| live(&key.namespace, &key.name));
            shared.metrics.retain_resources(K::KIND, |name| {
                let (ns, name) = name.split_once('/').unwrap_or(("", name));
                live(ns, name)
            });
        }
        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
            let state = match &o.0 {
                Ok(k) => k.resource_state(),
                Err(_) => ResourceState {
                    phase: "Stalled".into(),
                    inflight: false,
                    tls_not_after: None,
                },
            };
            shared
                .metrics
                .resource(K::KIND, &object_name(o), Some(state))
        }
        Ok(watcher::Event::Delete(o)) => {
            // kube-runtime never reconciles an object that left its cache (a pending retry
            // finds nothing), so nothing else would reset its failure count.
            shared.clear_failures(&key_of::<K>(o));
            shared.metrics.resource(K::KIND, &object_name(o), None)
        }
        _ => {}
    })
    .applied_objects()
    .predicate_filter(relevant_change::<K>, Default::default());
    // Secrets as metadata only: their contents never enter the watch path.
    let secrets = watcher(api::<PartialObjectMeta<Secret>>(client, namespace), wc)
        .default_backoff()
        .touched_objects();
    // Its objects share their subscriptions' read budget with every other kind's.
    ctx.store.count_cache(reader.clone());
    let lookup = reader.clone();
    let controller = Controller::for_stream(stream, reader.clone())
        .watches_stream(secrets, move |s| referencing::<K>(&lookup, &s));
    Watched {
        controller,
        cache: reader,
        synced,
    }
}

/// `kubectl apply`'s copy of the whole object in an annotation: the operator never reads it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the operator never reads from a watched object before the cache keeps it: its
/// `managedFields` (the API server returns them with every object, often larger than the
/// spec) and `kubectl apply`'s last-applied annotation (a second copy of the object). The
/// reduction kube-rs recommends for reflectors
/// (<https://kube.rs/controllers/optimization/>); status writes use
/// server-side apply, which needs no `managedFields` from the client.
fn slim<K: Resource>(o: &mut K) {
    let meta = o.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// Objects of `K` whose `refers(object)` names `(namespace, name)`: for a watch of another
/// kind that wakes them (an `AzureMLExtension` its computes, say).
pub fn naming<K: TypedKind>(
    store: &Store<DeserializeGuard<K>>,
    namespace: &str,
    name: &str,
    refers: impl Fn(&K) -> Option<&str>,
) -> Vec<ObjectRef<DeserializeGuard<K>>> {
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace))
        .filter(|o| o.0.as_ref().is_ok_and(|k| refers(k) == Some(name)))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// A watch of another kind's metadata in the same namespaces.
///
/// # Errors
/// The stream yields `Err(watcher::Error)` when a list or watch fails and goes on after
/// the default backoff; the controller reports such errors in its result stream, which
/// [`drive`] logs.
pub fn metadata_watch<O>(
    ctx: &TypedCtx,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<PartialObjectMeta<O>, watcher::Error>> + Send + 'static
where
    O: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    watcher(
        api::<PartialObjectMeta<O>>(&ctx.shared.client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects()
}

/// Runs `c` (whose cache is `cache`) with the generic reconcile until `term` turns true. A
/// failed reconcile's Warning event (`ReconcileError`, with the retry delay the error
/// policy chose) is published from the result stream, concurrently with the reconciles.
pub async fn drive<K: TypedKind>(
    c: Controller<DeserializeGuard<K>>,
    cache: Store<DeserializeGuard<K>>,
    ctx: Arc<TypedCtx>,
    concurrency: u16,
    mut term: watch::Receiver<bool>,
) {
    let kctx = Arc::new(KindCtx {
        ctx: ctx.clone(),
        cache,
    });
    c.with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(async move {
            let _ = term.wait_for(|t| *t).await;
        })
        .run(reconcile::<K>, error_policy::<K>, kctx)
        .for_each_concurrent(None, |res| {
            let ctx = ctx.clone();
            async move {
                match res {
                    Ok(_) => {}
                    Err(controller::Error::ReconcilerFailed(err, obj)) => {
                        let key = ObjKey {
                            kind: K::KIND.into(),
                            namespace: obj.namespace.clone().unwrap_or_default(),
                            name: obj.name.clone(),
                        };
                        // No delay recorded: the object left the cache meanwhile.
                        let Some(delay) = ctx.shared.retry_delay(&key) else {
                            return;
                        };
                        let message = truncate(
                            &format!("{err} (retrying in {}s)", delay.as_secs().max(1)),
                            1024,
                        );
                        ctx.store
                            .emit(Event {
                                key,
                                warning: true,
                                reason: "ReconcileError".into(),
                                message,
                            })
                            .await;
                    }
                    Err(controller::Error::ObjectNotFound(r)) => {
                        tracing::debug!(object = %r, "object gone")
                    }
                    Err(e) => tracing::warn!(error = %e, kind = K::KIND, "controller"),
                }
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::InferenceCluster;
    use serde_json::json;

    fn served(spec: serde_json::Value) -> DeserializeGuard<InferenceCluster> {
        serde_json::from_value(json!({
            "apiVersion": "amlops.dev/v1alpha1", "kind": "InferenceCluster",
            "metadata": {
                "name": "a", "namespace": "ml",
                "annotations": {LAST_APPLIED: "{\"kind\":\"InferenceCluster\"}",
                                REATTACH_ANNOTATION: "token-1"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply",
                                   "apiVersion": "amlops.dev/v1alpha1", "fieldsType": "FieldsV1",
                                   "fieldsV1": {"f:spec": {"f:computeName": {}}}}]
            },
            "spec": spec
        }))
        .unwrap()
    }

    /// What the caches keep of an object: no `managedFields`, no last-applied copy, every
    /// annotation the operator reads — also for an object that does not decode.
    #[test]
    fn slim_drops_what_the_operator_never_reads() {
        let spec = json!({"workspace": {"subscriptionId": "00000000-0000-0000-0000-000000000000",
                                        "resourceGroup": "ml-rg", "name": "ml-ws"},
                          "computeName": "c"});
        for (mut o, decodes) in [
            (served(spec), true),
            (served(json!({"workspace": 7})), false),
        ] {
            assert_eq!(o.0.is_ok(), decodes);
            slim(&mut o);
            let meta = o.meta();
            assert_eq!(meta.managed_fields, None);
            let annotations = meta.annotations.clone().unwrap_or_default();
            assert!(!annotations.contains_key(LAST_APPLIED));
            assert_eq!(annotations[REATTACH_ANNOTATION], "token-1");
        }
    }
}
