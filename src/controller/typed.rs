//! Controllers on typed watches, for the Kubernetes compute path's kinds: the objects are
//! watched as `DeserializeGuard<K>`, so one object that does not decode (written before a
//! CRD change, say) stalls on its own with `InvalidSpec` instead of breaking the watch of all
//! the others; the API server's admission (schema and CEL) has already checked every object
//! it stored, so the reconcile runs no second admission.
//!
//! One generic reconcile over [`TypedKind`]: the finalizer (added before the first Azure
//! write, removed only once Azure confirms the cleanup — why not `kube::runtime::finalizer`:
//! see [`set_finalizer`]), the identity (`credentialsRef`, own namespace only), then the
//! kind's engine, whose status is saved by server-side apply and whose requeue is the next
//! action.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::azure::ArmClient;
use crate::crd::{ADOPT_ANNOTATION, FINALIZER, REATTACH_ANNOTATION};
use crate::engine::EngineError;
use crate::engine::conditions::{Conditioned, record_stall};
use crate::engine::store::{Event, KubeStore, ObjKey};
use crate::engine::verdict::{Stall, Verdict};

use super::kube_store::{ApiStore, truncate};
use super::metrics::{ReconcileResult, ResourceState};
use super::reconciler::{ReconcileError, Shared, jitter};

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
    type Status: Conditioned + Serialize + Default + Clone + Send + Sync + 'static;

    /// The saved status (default when there is none).
    fn status(&self) -> Self::Status;
    /// Name of the `credentialsRef` Secret (own namespace), if any.
    fn credentials_ref(&self) -> Option<&str>;
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
    /// One reconcile through the kind's engine, with `arm` as identity.
    fn reconcile(
        &self,
        ctx: &TypedCtx,
        arm: ArmClient,
    ) -> impl Future<Output = Result<TypedOutcome, ReconcileError>> + Send;
}

/// Context of a typed controller.
pub struct TypedCtx {
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// Kubernetes side of the engines.
    pub store: ApiStore,
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

/// Stalls an object the engine never saw (it does not decode, its credentials cannot be
/// used): status and one Warning event, no Azure call, no requeue.
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

/// The object to reconcile: the cached one when it shows our last write to it, else the
/// API server's (the cache lags our own status writes; a stale status would, e.g., take the
/// compute just attached for someone else's). `None`: it no longer exists.
async fn current<K: TypedKind>(ctx: &TypedCtx, cached: &K) -> Result<Option<K>, kube::Error> {
    let key = key_of::<K>(cached);
    match ctx.store.written_version(&key) {
        None => return Ok(Some(cached.clone())),
        Some(rv) if Some(&rv) == cached.meta().resource_version.as_ref() => {
            ctx.store.forget(&key);
            return Ok(Some(cached.clone()));
        }
        Some(_) => {}
    }
    let api: Api<K> = Api::namespaced(ctx.shared.client.clone(), &key.namespace);
    let live = api.get_opt(&key.name).await?;
    match &live {
        Some(l) => ctx
            .store
            .wrote_version(&key, l.meta().resource_version.clone()),
        None => ctx.store.forget(&key),
    }
    Ok(live)
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
        return Ok((Action::await_change(), ReconcileResult::Success));
    }
    let status = obj.status();
    let arm = match shared
        .credentials
        .client_for_secret(&key.namespace, obj.credentials_ref(), &ctx.store)
        .await
    {
        Ok(c) => c,
        // A namespace being deleted loses its Secrets first: clean up with the identity it
        // last held, else with the operator's own.
        Err(s) if deleting && s.reason == "SecretNotFound" => {
            let name = obj.credentials_ref().unwrap_or_default();
            match shared.credentials.remembered(&key.namespace, name) {
                Some(c) => c,
                None if !K::reached_azure(&status) => {
                    set_finalizer(ctx, obj, false).await?;
                    ctx.store.forget(&key);
                    return Ok((Action::await_change(), ReconcileResult::Success));
                }
                None => shared.credentials.default_client().clone(),
            }
        }
        Err(s) => {
            let action = stall::<K>(ctx, &key, status, obj.meta().generation, s).await?;
            return Ok((action, ReconcileResult::Stalled));
        }
    };
    if !deleting && !has_finalizer {
        // Before the first Azure write, so a delete can never skip the cleanup.
        set_finalizer(ctx, obj, true).await?;
    }
    let out = obj.reconcile(ctx, arm).await?;
    if out.finished {
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
        ReconcileResult::Error
    } else if out.requeue.is_none_or(|d| d >= steady) {
        ReconcileResult::Success
    } else {
        ReconcileResult::Requeue
    };
    // Exactly the engine's requeue: Azure's Retry-After after a failure (never shortened),
    // or the resync policy's steady interval (already jittered there).
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
    ctx: Arc<TypedCtx>,
) -> Result<Action, ReconcileError> {
    use tracing::Instrument;
    let started = Instant::now();
    let key = key_of::<K>(obj.as_ref());
    let span = tracing::info_span!("reconcile", kind = K::KIND, namespace = %key.namespace, name = %key.name);
    let res = async {
        match &obj.0 {
            Err(invalid) => {
                let s = Stall::new(
                    "InvalidSpec",
                    format!(
                        "the object does not decode as a {} ({}). Fix the resource; nothing was sent to Azure",
                        K::KIND,
                        invalid.error
                    ),
                );
                let action =
                    stall::<K>(&ctx, &key, K::Status::default(), invalid.metadata.generation, s)
                        .await?;
                Ok((action, ReconcileResult::Stalled))
            }
            Ok(o) => match current(&ctx, o).await? {
                Some(o) => reconcile_inner(&o, &ctx).await,
                None => Ok((Action::await_change(), ReconcileResult::Success)),
            },
        }
    }
    .instrument(span)
    .await;
    let result = match &res {
        Ok((_, r)) => *r,
        Err(_) => ReconcileResult::Error,
    };
    ctx.shared
        .metrics
        .reconciled(K::KIND, result, started.elapsed());
    if res.is_ok() {
        ctx.shared.clear_failures(&key);
    }
    res.map(|(a, _)| a)
}

/// Kubernetes-side failures only (Azure failures have a verdict in the engine): a capped
/// exponential backoff per object, as for the legacy kinds.
pub fn error_policy<K: TypedKind>(
    obj: Arc<DeserializeGuard<K>>,
    err: &ReconcileError,
    ctx: Arc<TypedCtx>,
) -> Action {
    let key = key_of::<K>(obj.as_ref());
    let n = ctx.shared.count_failure(&key);
    let delay = jitter(ctx.shared.backoff.delay(n));
    tracing::warn!(object = %key, category = err.category(), error = %err, failures = n, "reconcile failed");
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

/// The controller of `K`: its typed watch (metrics from the watch events, our own writes
/// filtered out) and the Secrets its objects name. The caller adds the kind's other
/// watches and then [`drive`]s it.
pub fn controller<K: TypedKind>(
    ctx: &TypedCtx,
    namespace: Option<&str>,
) -> (Controller<DeserializeGuard<K>>, Store<DeserializeGuard<K>>) {
    let client = &ctx.shared.client;
    let wc = watcher::Config::default();
    let writer = Writer::<DeserializeGuard<K>>::default();
    let reader = writer.as_reader();
    // The resource gauges follow the watch events (a scrape walks no cache).
    let metrics = ctx.shared.metrics.clone();
    let cache = reader.clone();
    let stream = reflector(
        writer,
        watcher(api::<DeserializeGuard<K>>(client, namespace), wc.clone()),
    )
    .default_backoff()
    .inspect(move |e| match e {
        Ok(watcher::Event::InitDone) => metrics.retain_resources(K::KIND, |name| {
            let (ns, name) = name.split_once('/').unwrap_or(("", name));
            cache.get(&ObjectRef::new(name).within(ns)).is_some()
        }),
        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
            let state = match &o.0 {
                Ok(k) => k.resource_state(),
                Err(_) => ResourceState {
                    phase: "Stalled".into(),
                    inflight: false,
                    tls_not_after: None,
                },
            };
            metrics.resource(K::KIND, &object_name(o), Some(state))
        }
        Ok(watcher::Event::Delete(o)) => metrics.resource(K::KIND, &object_name(o), None),
        _ => {}
    })
    .applied_objects()
    .predicate_filter(relevant_change::<K>, Default::default());
    let secrets = watcher(api::<PartialObjectMeta<Secret>>(client, namespace), wc)
        .default_backoff()
        .touched_objects();
    // Its objects share their subscriptions' read budget with every other kind's.
    let counted = reader.clone();
    ctx.store.count_also(Box::new(move || {
        counted
            .state()
            .iter()
            .filter_map(|o| o.0.as_ref().ok().and_then(TypedKind::subscription))
            .collect()
    }));
    let lookup = reader.clone();
    let c = Controller::for_stream(stream, reader.clone())
        .watches_stream(secrets, move |s| referencing::<K>(&lookup, &s));
    (c, reader)
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

/// Runs `c` with the generic reconcile until `term` turns true.
pub async fn drive<K: TypedKind>(
    c: Controller<DeserializeGuard<K>>,
    ctx: Arc<TypedCtx>,
    concurrency: u16,
    mut term: watch::Receiver<bool>,
) {
    c.with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(async move {
            let _ = term.wait_for(|t| *t).await;
        })
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|res| async move {
            match res {
                Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(controller::Error::ObjectNotFound(r)) => {
                    tracing::debug!(object = %r, "object gone")
                }
                Err(e) => tracing::warn!(error = %e, kind = K::KIND, "controller"),
            }
        })
        .await;
}
