//! The controller of `KubernetesCompute`, on typed watches: the objects are watched as
//! `DeserializeGuard<KubernetesCompute>`, so one object that does not decode (written
//! before a CRD change, say) stalls on its own with `InvalidSpec` instead of breaking the
//! watch of all the others; the API server's admission (schema and CEL) has already checked
//! every object it stored, so the reconcile runs no second admission.
//!
//! One reconcile: the finalizer (added before the first Azure write, removed only once
//! Azure confirms the detach — why not `kube::runtime::finalizer`: see `set_finalizer`), the
//! identity (`credentialsRef`, own namespace only), the `AzureMLExtension` of
//! `extensionRef`, then the engine ([`crate::engine::kubernetes_compute`]), whose status is
//! saved by server-side apply and whose requeue is the next action.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::crd::{
    ADOPT_ANNOTATION, AzureMLExtension, FINALIZER, KubernetesCompute, KubernetesComputeStatus,
    REATTACH_ANNOTATION,
};
use crate::engine::conditions::record_stall;
use crate::engine::kubernetes_compute::{ComputeDesired, ComputeStore, KIND};
use crate::engine::store::{Event, KubeStore, ObjKey};
use crate::engine::verdict::Stall;
use crate::engine::{Engine, EngineError};

use super::kube_store::{ApiStore, truncate};
use super::metrics::{ReconcileResult, ResourceState};
use super::reconciler::{ReconcileError, Shared, jitter};

type Guarded = DeserializeGuard<KubernetesCompute>;

/// Context of the `KubernetesCompute` controller.
pub struct ComputeCtx {
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// Kubernetes side of the engine.
    pub store: ApiStore,
}

fn key_of(obj: &impl ResourceExt) -> ObjKey {
    ObjKey {
        kind: KIND.into(),
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
    }
}

/// Stalls an object the engine never saw (it does not decode, its credentials cannot be
/// used): status and one Warning event, no Azure call, no requeue.
async fn stall(
    ctx: &ComputeCtx,
    key: &ObjKey,
    mut st: KubernetesComputeStatus,
    generation: Option<i64>,
    s: Stall,
) -> Result<Action, ReconcileError> {
    let s = Stall::new(s.reason, truncate(&s.message, 1024));
    if !record_stall(&mut st, &s, generation) {
        return Ok(Action::await_change());
    }
    ctx.store
        .save_compute_status(key, &st)
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
/// returns `Ok`, while ours must stay until Azure confirms the detach, which takes several
/// reconciles.
async fn set_finalizer(
    ctx: &ComputeCtx,
    kc: &KubernetesCompute,
    present: bool,
) -> Result<(), kube::Error> {
    let api: Api<KubernetesCompute> = Api::namespaced(
        ctx.shared.client.clone(),
        &kc.namespace().unwrap_or_default(),
    );
    let current = kc.metadata.finalizers.clone();
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
            {"op": "test", "path": "/metadata/resourceVersion", "value": kc.resource_version()},
            {"op": "add", "path": "/metadata/finalizers", "value": wanted},
        ]),
    };
    let patch: json_patch::Patch = serde_json::from_value(ops).map_err(kube::Error::SerdeError)?;
    let patched = api
        .patch(
            &kc.name_any(),
            &PatchParams::default(),
            &Patch::<Value>::Json(patch),
        )
        .await?;
    ctx.store
        .wrote_version(&key_of(kc), patched.metadata.resource_version);
    Ok(())
}

/// The object to reconcile: the cached one when it shows our last write to it, else the
/// API server's (the cache lags our own status writes; a stale status would, e.g., take the
/// compute just attached for someone else's). `None`: it no longer exists.
async fn current(
    ctx: &ComputeCtx,
    cached: &KubernetesCompute,
) -> Result<Option<KubernetesCompute>, kube::Error> {
    let key = key_of(cached);
    match ctx.store.written_version(&key) {
        None => return Ok(Some(cached.clone())),
        Some(rv) if Some(&rv) == cached.metadata.resource_version.as_ref() => {
            ctx.store.forget(&key);
            return Ok(Some(cached.clone()));
        }
        Some(_) => {}
    }
    let api: Api<KubernetesCompute> = Api::namespaced(ctx.shared.client.clone(), &key.namespace);
    let live = api.get_opt(&key.name).await?;
    match &live {
        Some(l) => ctx
            .store
            .wrote_version(&key, l.metadata.resource_version.clone()),
        None => ctx.store.forget(&key),
    }
    Ok(live)
}

async fn reconcile_inner(
    kc: &KubernetesCompute,
    ctx: &ComputeCtx,
) -> Result<(Action, ReconcileResult), ReconcileError> {
    let shared = &ctx.shared;
    let key = key_of(kc);
    let deleting = kc.metadata.deletion_timestamp.is_some();
    let has_finalizer = kc.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        return Ok((Action::await_change(), ReconcileResult::Success));
    }
    let status = kc.status.clone().unwrap_or_default();
    let ns = key.namespace.clone();
    let arm = match shared
        .credentials
        .client_for_secret(
            &ns,
            kc.spec.credentials_ref.as_ref().map(|r| r.name.as_str()),
            &ctx.store,
        )
        .await
    {
        Ok(c) => c,
        // A namespace being deleted loses its Secrets first: detach with the identity it
        // last held, else with the operator's own.
        Err(s) if deleting && s.reason == "SecretNotFound" => {
            let name = kc
                .spec
                .credentials_ref
                .as_ref()
                .map(|r| r.name.as_str())
                .unwrap_or_default();
            match shared.credentials.remembered(&ns, name) {
                Some(c) => c,
                None if status.compute_id.is_none() => {
                    set_finalizer(ctx, kc, false).await?;
                    ctx.store.forget(&key);
                    return Ok((Action::await_change(), ReconcileResult::Success));
                }
                None => shared.credentials.default_client().clone(),
            }
        }
        Err(s) => {
            let action = stall(ctx, &key, status, kc.metadata.generation, s).await?;
            return Ok((action, ReconcileResult::Stalled));
        }
    };
    let extension = match &kc.spec.extension_ref {
        Some(r) => {
            Api::<AzureMLExtension>::namespaced(shared.client.clone(), &ns)
                .get_opt(&r.name)
                .await?
        }
        None => None,
    };
    let desired = ComputeDesired::new(kc, extension.as_ref());
    if !deleting && !has_finalizer {
        // Before the first Azure write, so a delete can never skip the detach.
        set_finalizer(ctx, kc, true).await?;
    }
    let engine = Engine {
        arm,
        store: ctx.store.clone(),
        config: shared.engine.clone(),
    };
    let out = engine.reconcile_compute(&desired, status).await?;
    if out.finished {
        if has_finalizer {
            set_finalizer(ctx, kc, false).await?;
        }
        ctx.store.forget(&key);
        return Ok((Action::await_change(), ReconcileResult::Success));
    }
    let stalled = out
        .status
        .conditions
        .iter()
        .any(|c| c.type_ == "Stalled" && c.status == "True");
    let base = shared.engine.resync.base;
    let result = if stalled {
        ReconcileResult::Stalled
    } else if out.verdict.is_some() {
        ReconcileResult::Error
    } else if out
        .requeue
        .is_none_or(|d| d >= base.div_f64(shared.engine.time_scale.max(f64::MIN_POSITIVE)))
    {
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

/// One reconcile of a `KubernetesCompute` (kube-runtime's reconciler).
pub async fn reconcile(obj: Arc<Guarded>, ctx: Arc<ComputeCtx>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let key = key_of(obj.as_ref());
    let span =
        tracing::info_span!("reconcile", kind = KIND, namespace = %key.namespace, name = %key.name);
    let res = async {
        match &obj.0 {
            Err(invalid) => {
                let s = Stall::new(
                    "InvalidSpec",
                    format!(
                        "the object does not decode as a KubernetesCompute ({}). Fix the resource; nothing was sent to Azure",
                        invalid.error
                    ),
                );
                let st: KubernetesComputeStatus = Default::default();
                let action = stall(&ctx, &key, st, invalid.metadata.generation, s).await?;
                Ok((action, ReconcileResult::Stalled))
            }
            Ok(kc) => match current(&ctx, kc).await? {
                Some(kc) => reconcile_inner(&kc, &ctx).await,
                None => Ok((Action::await_change(), ReconcileResult::Success)),
            },
        }
    };
    use tracing::Instrument;
    let res = res.instrument(span).await;
    let result = match &res {
        Ok((_, r)) => *r,
        Err(_) => ReconcileResult::Error,
    };
    ctx.shared
        .metrics
        .reconciled(KIND, result, started.elapsed());
    if res.is_ok() {
        ctx.shared.clear_failures(&key);
    }
    res.map(|(a, _)| a)
}

/// Kubernetes-side failures only (Azure failures have a verdict in the engine): a capped
/// exponential backoff per object, as for the legacy kinds.
pub fn error_policy(obj: Arc<Guarded>, err: &ReconcileError, ctx: Arc<ComputeCtx>) -> Action {
    let key = key_of(obj.as_ref());
    let n = ctx.shared.count_failure(&key);
    let delay = jitter(ctx.shared.backoff.delay(n));
    tracing::warn!(object = %key, category = err.category(), error = %err, failures = n, "reconcile failed");
    Action::requeue(delay)
}

/// The parts of an object whose change calls for a reconcile: spec (generation), the
/// deletion mark and our two annotations; not our own status and finalizer writes.
fn relevant_change(o: &Guarded) -> Option<u64> {
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

fn object_name(o: &Guarded) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

/// What a `KubernetesCompute` counts in `amlops_resources` (its `phase` label: `Ready`,
/// `Stalled`, `Deleting`, the reason of a running operation, else `Pending`) and
/// `amlops_inflight_operations`.
fn resource_state(o: &Guarded) -> ResourceState {
    let status = o.0.as_ref().ok().and_then(|kc| kc.status.as_ref());
    let on = |t: &str| {
        status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == t && c.status == "True")
        })
    };
    let operation = status.and_then(|s| s.operation.as_ref());
    let phase = if on("Stalled") {
        "Stalled"
    } else if o.meta().deletion_timestamp.is_some() {
        "Deleting"
    } else if on("Ready") {
        "Ready"
    } else {
        match operation.map(|op| op.kind) {
            Some(crate::azure::OperationKind::Detach) => "Detaching",
            Some(crate::azure::OperationKind::Update) => "Updating",
            Some(_) => "Attaching",
            None => "Pending",
        }
    };
    ResourceState {
        phase: phase.into(),
        inflight: operation.is_some(),
        tls_not_after: None,
    }
}

/// Objects that name the Secret `s` as `credentialsRef`: a fixed Secret unstalls them.
fn referencing(store: &Store<Guarded>, s: &PartialObjectMeta<Secret>) -> Vec<ObjectRef<Guarded>> {
    let ns = s.namespace().unwrap_or_default();
    let name = s.name_any();
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
        .filter(|o| {
            o.0.as_ref().is_ok_and(|kc| {
                kc.spec
                    .credentials_ref
                    .as_ref()
                    .is_some_and(|r| r.name == name)
            })
        })
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Objects whose `extensionRef` names the `AzureMLExtension` `e`: one that appears or
/// changes wakes the computes waiting for it.
fn using_extension(
    store: &Store<Guarded>,
    e: &PartialObjectMeta<AzureMLExtension>,
) -> Vec<ObjectRef<Guarded>> {
    let ns = e.namespace().unwrap_or_default();
    let name = e.name_any();
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
        .filter(|o| {
            o.0.as_ref().is_ok_and(|kc| {
                kc.spec
                    .extension_ref
                    .as_ref()
                    .is_some_and(|r| r.name == name)
            })
        })
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Runs the `KubernetesCompute` controller until `term` turns true.
pub async fn run(
    ctx: Arc<ComputeCtx>,
    namespace: Option<String>,
    concurrency: u16,
    mut term: watch::Receiver<bool>,
) {
    let client = ctx.shared.client.clone();
    let (api, secrets, extensions): (
        Api<Guarded>,
        Api<PartialObjectMeta<Secret>>,
        Api<PartialObjectMeta<AzureMLExtension>>,
    ) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let wc = watcher::Config::default();
    let writer = Writer::<Guarded>::default();
    let reader = writer.as_reader();
    // The resource gauges follow the watch events (a scrape walks no cache).
    let metrics = ctx.shared.metrics.clone();
    let cache = reader.clone();
    let stream = reflector(writer, watcher(api, wc.clone()))
        .default_backoff()
        .inspect(move |e| match e {
            Ok(watcher::Event::InitDone) => metrics.retain_resources(KIND, |name| {
                let (ns, name) = name.split_once('/').unwrap_or(("", name));
                cache.get(&ObjectRef::new(name).within(ns)).is_some()
            }),
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                metrics.resource(KIND, &object_name(o), Some(resource_state(o)))
            }
            Ok(watcher::Event::Delete(o)) => metrics.resource(KIND, &object_name(o), None),
            _ => {}
        })
        .applied_objects()
        .predicate_filter(relevant_change, Default::default());
    let secrets = watcher(secrets, wc.clone())
        .default_backoff()
        .touched_objects();
    let extensions = watcher(extensions, wc).default_backoff().touched_objects();
    let lookup = reader.clone();
    let users = reader.clone();
    Controller::for_stream(stream, reader)
        .watches_stream(secrets, move |s| referencing(&lookup, &s))
        .watches_stream(extensions, move |e| using_extension(&users, &e))
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(async move {
            let _ = term.wait_for(|t| *t).await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(controller::Error::ObjectNotFound(r)) = &res {
                tracing::debug!(object = %r, "object gone");
            } else if let Err(e) = res
                && !matches!(e, controller::Error::ReconcilerFailed(..))
            {
                tracing::warn!(error = %e, "KubernetesCompute controller");
            }
        })
        .await;
}
