//! The glue between kube-runtime and the engine: one reconcile of one object — finalizer,
//! identity, admission checks, the engine, and what to do next — plus the error policy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use rand::Rng;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::azure::ArmClient;
use crate::crd::{ClusterStatus, FINALIZER};
use crate::engine::conditions::record_stall;
use crate::engine::resync::ResyncPolicy;
use crate::engine::store::{Event, ObjKey};
use crate::engine::verdict::Stall;
use crate::engine::{Engine, EngineConfig, EngineError, KubeStore};

use super::credentials::{Credentials, foreign_namespace};
use super::kinds::Kind;
use super::kube_store::{ApiStore, truncate};
use super::metrics::{Metrics, ReconcileResult};

/// Backoff of failed reconciles (per object, doubling, capped).
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First delay.
    pub base: Duration,
    /// Longest delay.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// Delay after the `n`-th consecutive failure (n ≥ 1), before jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(20));
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// What the controllers of both kinds share for the whole process.
pub struct Shared {
    /// Kubernetes client.
    pub client: Client,
    /// Azure identities.
    pub credentials: Credentials,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Metrics.
    pub metrics: Metrics,
    /// Error backoff.
    pub backoff: Backoff,
    failures: Mutex<HashMap<ObjKey, u32>>,
}

impl Shared {
    /// Shared state with no failures recorded.
    pub fn new(
        client: Client,
        credentials: Credentials,
        engine: EngineConfig,
        metrics: Metrics,
        backoff: Backoff,
    ) -> Self {
        Self {
            client,
            credentials,
            engine,
            metrics,
            backoff,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjKey, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the error backoff of an object the watch reports deleted: kube-runtime never
    /// reconciles an object that left its cache (a pending retry finds nothing), so nothing
    /// else would reset its count.
    pub fn forget_failures(&self, kind: Kind, obj: &DynamicObject) {
        self.failures().remove(&key_of(kind, obj));
    }

    /// After a re-list, keeps the error backoff of `kind`'s objects only where `live` (the
    /// fresh cache) still has them: deletions during a watch gap get no `Delete` event.
    pub fn retain_failures(&self, kind: Kind, live: impl Fn(&ObjKey) -> bool) {
        self.failures()
            .retain(|key, _| key.kind != kind.name() || live(key));
    }

    /// Counts one more consecutive failure of `key`; returns the count.
    pub(super) fn count_failure(&self, key: &ObjKey) -> u32 {
        let mut failures = self.failures();
        let n = failures.entry(key.clone()).or_insert(0);
        *n += 1;
        *n
    }

    /// Forgets the consecutive failures of `key` (it reconciled, or it is gone).
    pub(super) fn clear_failures(&self, key: &ObjKey) {
        self.failures().remove(key);
    }

    /// Objects in error backoff now (a consecutive failure count is kept for each).
    pub fn failing(&self) -> usize {
        self.failures().len()
    }
}

/// Context of one kind's controller.
pub struct Ctx {
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// The kind this controller serves.
    pub kind: Kind,
    /// Kubernetes side of the engine (caches of this leadership term).
    pub store: ApiStore,
}

/// A reconcile that failed and is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The engine failed (Azure or Kubernetes).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A Kubernetes call of the glue failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

impl ReconcileError {
    /// Static label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Engine(e) => e.category(),
            Self::Kube(_) => "Kubernetes",
        }
    }
}

fn key_of(kind: Kind, obj: &DynamicObject) -> ObjKey {
    ObjKey {
        kind: kind.name().into(),
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
    }
}

fn status_of(obj: &DynamicObject) -> ClusterStatus {
    obj.data
        .get("status")
        .cloned()
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default()
}

fn is_stalled(st: &ClusterStatus) -> bool {
    st.conditions
        .iter()
        .any(|c| c.type_ == "Stalled" && c.status == "True")
}

/// ±10 % so that resources created together do not resync together forever.
pub(super) fn jitter(d: Duration) -> Duration {
    if d.is_zero() {
        return d;
    }
    d.mul_f64(rand::rng().random_range(0.9..1.1))
}

/// Stalls an object the engine never saw (invalid spec, foreign credentials): status and a
/// Warning event, no Azure call, and no requeue — only a change of the object helps. The
/// same [`record_stall`] as the engine's.
async fn stall(ctx: &Ctx, obj: &DynamicObject, s: Stall) -> Result<Action, ReconcileError> {
    let key = key_of(ctx.kind, obj);
    let mut st = status_of(obj);
    let s = Stall::new(s.reason, truncate(&s.message, 1024));
    if !record_stall(&mut st, &s, obj.metadata.generation) {
        return Ok(Action::await_change());
    }
    ctx.store
        .save_status(&key, &st)
        .await
        .map_err(EngineError::from)?;
    ctx.store
        .emit(Event {
            key,
            warning: true,
            reason: s.reason.into(),
            message: s.message,
        })
        .await;
    Ok(Action::await_change())
}

/// The identity that applies the `deletionPolicy` of a resource whose `credentialsRef`
/// Secret is gone (deleting a namespace deletes its Secrets before the custom resources
/// that our finalizer holds, and a terminating namespace takes no new Secret): the
/// identity last built from that Secret, remembered in memory; after an operator restart,
/// the operator's own identity, with a Warning. `None` when the resource never wrote to
/// Azure (`status.computeId` unset): there is nothing to clean up.
async fn deletion_identity(ctx: &Ctx, obj: &DynamicObject) -> Option<ArmClient> {
    status_of(obj).compute_id.as_ref()?;
    let ns = obj.namespace().unwrap_or_default();
    let name = obj
        .data
        .pointer("/spec/credentialsRef/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(c) = ctx.shared.credentials.remembered(&ns, name) {
        tracing::info!(object = %key_of(ctx.kind, obj), "credentialsRef Secret gone: deleting with the identity it held");
        return Some(c);
    }
    let message = format!(
        "credentialsRef Secret {ns}/{name} is gone and its identity is not remembered (the operator restarted): applying deletionPolicy with the operator's own identity"
    );
    tracing::warn!(object = %key_of(ctx.kind, obj), "{message}");
    // In a terminating namespace the API server refuses this event too (logged).
    ctx.store
        .emit(Event {
            key: key_of(ctx.kind, obj),
            warning: true,
            reason: "CredentialsSecretGone".into(),
            message,
        })
        .await;
    Some(ctx.shared.credentials.default_client().clone())
}

/// Adds or removes our finalizer with a JSON patch guarded by a `test` of the current list,
/// so a concurrent change by someone else fails (409/422) instead of being overwritten.
/// Not `kube::runtime::finalizer`: that helper removes the finalizer as soon as its cleanup
/// returns `Ok`, while ours must stay until Azure confirms the delete or detach, which can
/// take many reconciles (the engine reports `finished`).
async fn set_finalizer(ctx: &Ctx, obj: &DynamicObject, present: bool) -> Result<(), kube::Error> {
    let kind = ctx.kind;
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.shared.client.clone(),
        &obj.namespace().unwrap_or_default(),
        &kind.api_resource(),
    );
    let current = obj.metadata.finalizers.clone();
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
    ctx.store.wrote(&key_of(kind, obj), &patched);
    Ok(())
}

async fn reconcile_inner(
    obj: &DynamicObject,
    ctx: &Ctx,
) -> Result<(Action, ReconcileResult), ReconcileError> {
    let shared = &ctx.shared;
    let deleting = obj.metadata.deletion_timestamp.is_some();
    let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        // Not ours (never written to Azure, or already cleaned up).
        return Ok((Action::await_change(), ReconcileResult::Success));
    }
    if let Some(s) = foreign_namespace(obj) {
        return Ok((stall(ctx, obj, s).await?, ReconcileResult::Stalled));
    }
    let desired = match ctx.store.validated(ctx.kind, obj) {
        Ok(d) => d,
        Err(findings) => {
            let message = findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let s = Stall {
                reason: "InvalidSpec",
                message: format!("{message}. Fix the resource; nothing was sent to Azure"),
            };
            return Ok((stall(ctx, obj, s).await?, ReconcileResult::Stalled));
        }
    };
    let arm = match shared.credentials.client_for(obj, &ctx.store).await {
        Ok(c) => c,
        Err(s) if deleting && s.reason == "SecretNotFound" => {
            match deletion_identity(ctx, obj).await {
                Some(c) => c,
                None => {
                    // Nothing of this resource reached Azure: nothing to clean up there.
                    set_finalizer(ctx, obj, false).await?;
                    ctx.store.forget(&key_of(ctx.kind, obj));
                    return Ok((Action::await_change(), ReconcileResult::Success));
                }
            }
        }
        Err(s) => return Ok((stall(ctx, obj, s).await?, ReconcileResult::Stalled)),
    };
    if !deleting && !has_finalizer {
        // Before the first Azure write, so a delete can never skip the cleanup.
        set_finalizer(ctx, obj, true).await?;
    }
    let engine = Engine {
        arm,
        store: ctx.store.clone(),
        config: shared.engine.clone(),
    };
    let out = engine.reconcile(&desired, status_of(obj)).await?;
    // The engine decided the requeue: Azure's Retry-After, a poll, or the steady-state
    // resync pace of this subscription.
    let requeue = out.requeue;
    let steady = ResyncPolicy::is_steady(&out);
    if out.finished {
        // Azure confirmed the delete/detach (or the policy is Orphan): let the object go.
        if has_finalizer {
            set_finalizer(ctx, obj, false).await?;
        }
        ctx.store.forget(&key_of(ctx.kind, obj));
        return Ok((Action::await_change(), ReconcileResult::Success));
    }
    let result = if is_stalled(&out.status) {
        ReconcileResult::Stalled
    } else if out.verdict.is_some() {
        // An Azure failure that will be retried (throttled, 5xx, busy).
        ReconcileResult::Error
    } else if requeue.is_none_or(|d| d >= shared.engine.resync.base) {
        ReconcileResult::Success
    } else {
        ReconcileResult::Requeue
    };
    let action = match requeue {
        Some(d) if d >= shared.engine.resync.base && !steady => Action::requeue(jitter(d)),
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    };
    Ok((action, result))
}

/// One reconcile of `obj` (kube-runtime's reconciler).
pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let key = key_of(ctx.kind, &obj);
    let span = tracing::info_span!(
        "reconcile",
        kind = ctx.kind.name(),
        namespace = %key.namespace,
        name = %key.name,
        generation = obj.metadata.generation,
    );
    let started = Instant::now();
    let res = async {
        match ctx.store.current(ctx.kind, &key, obj).await? {
            Some(obj) => reconcile_inner(&obj, &ctx).await,
            // Deleted since the cache saw it; its deletion event follows.
            None => Ok((Action::await_change(), ReconcileResult::Success)),
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
        .reconciled(ctx.kind.name(), result, started.elapsed());
    span.in_scope(|| {
        tracing::debug!(
            ?result,
            took_ms = started.elapsed().as_millis() as u64,
            "reconciled"
        )
    });
    match res {
        Ok((action, _)) => {
            ctx.shared.failures().remove(&key);
            Ok(action)
        }
        Err(e) => Err(e),
    }
}

/// kube-runtime's error policy, for Kubernetes-side failures only (Azure failures have a
/// verdict in the engine): a per-object exponential backoff; a Warning event says what
/// failed (aggregated by the Recorder).
pub fn error_policy(obj: Arc<DynamicObject>, err: &ReconcileError, ctx: Arc<Ctx>) -> Action {
    let key = key_of(ctx.kind, &obj);
    let n = {
        let mut failures = ctx.shared.failures();
        // Counted only while the object is in the cache, checked under the lock: the watch
        // updates the cache before it forgets a deleted object's count, so a reconcile that
        // fails as its object goes cannot leave a count behind.
        if ctx.store.cached(&key).is_some() {
            let n = failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        } else {
            1
        }
    };
    let delay = jitter(ctx.shared.backoff.delay(n));
    tracing::warn!(
        object = %key,
        category = err.category(),
        error = %err,
        failures = n,
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed"
    );
    let store = ctx.store.clone();
    let message = truncate(
        &format!("{} (retrying in {}s)", err, delay.as_secs().max(1)),
        1024,
    );
    tokio::spawn(async move {
        store
            .emit(Event {
                key,
                warning: true,
                reason: "ReconcileError".into(),
                message,
            })
            .await;
    });
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::default();
        let table = [
            (1, 5),
            (2, 10),
            (3, 20),
            (4, 40),
            (6, 160),
            (7, 300),
            (40, 300),
        ];
        for (n, secs) in table {
            assert_eq!(b.delay(n), Duration::from_secs(secs), "failure {n}");
        }
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(600));
            assert!(
                d >= Duration::from_secs(540) && d <= Duration::from_secs(660),
                "{d:?}"
            );
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
