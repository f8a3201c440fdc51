//! [`KubeStore`] against the API server: Secrets through `Api<Secret>`, status through
//! server-side apply under one field manager, Events through an [`EventRecorder`], and
//! sibling claims from an index the controllers' watch events keep ([`ClaimIndex`]; no extra
//! API calls).
//!
//! The caches lag the API server: a reconcile requeued right after our own status write
//! (an LRO that ended at once, a short Retry-After) can be handed the object as it was
//! *before* that write, and act on a stale status — e.g. take the compute it has just
//! created for someone else's. So the store remembers the resourceVersion each of its
//! writes produced, and [`ApiStore::current`] reads the object from the API server when the
//! cached copy does not show it yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event as KubeEvent, EventType};

use super::events::EventRecorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use serde_json::json;

use crate::crd::{
    ClusterAttachment, ClusterStatus, InferenceCluster, KubernetesCompute, KubernetesComputeStatus,
};
use crate::engine::Desired;
use crate::engine::store::{
    Claim, Event, KubeStore, ObjKey, ResyncRead, StoreError, SubscriptionCounts,
};

use super::claims::ClaimIndex;
use super::typed::TypedKind;

/// The single field manager of everything amlops writes.
pub const FIELD_MANAGER: &str = "amlops";

/// Events and conditions carry at most this many bytes of message (the events API limit).
const MAX_NOTE: usize = 1024;

/// The reflector caches of the two cluster kinds, which the store reads event references
/// and uids from (no extra API calls).
#[derive(Clone)]
pub struct ClusterCaches {
    /// `InferenceCluster`s.
    pub inference_clusters: Store<DeserializeGuard<InferenceCluster>>,
    /// `ClusterAttachment`s.
    pub cluster_attachments: Store<DeserializeGuard<ClusterAttachment>>,
}

impl Default for ClusterCaches {
    /// Empty caches (no controller fills them).
    fn default() -> Self {
        Self {
            inference_clusters: kube::runtime::reflector::store::Writer::default().as_reader(),
            cluster_attachments: kube::runtime::reflector::store::Writer::default().as_reader(),
        }
    }
}

/// Kubernetes-backed store; clones share the client, recorder and caches.
#[derive(Clone)]
pub struct ApiStore {
    client: Client,
    recorder: EventRecorder,
    caches: ClusterCaches,
    /// The cluster kinds' claims, kept by their watch events ([`Self::claim_index`]).
    claims: Arc<ClaimIndex>,
    /// The resourceVersion our last write to each object produced, until the cache shows it.
    written: Arc<Mutex<HashMap<ObjKey, String>>>,
    /// Resources per (lower-cased) subscription, and when they were counted.
    counts: Arc<Mutex<Option<Counted>>>,
    /// Every kind's cache, registered when its controller starts ([`Self::count_cache`]):
    /// each gives the subscription of every cached object, all of which resync alike.
    typed: Arc<Mutex<Vec<(ResyncRead, SubscriptionsOf)>>>,
}

/// The subscriptions of the objects in one kind's cache, one per object.
pub type SubscriptionsOf = Box<dyn Fn() -> Vec<String> + Send + Sync>;

fn store_err(e: kube::Error) -> StoreError {
    // kube errors carry the API server's Status message: never object contents.
    StoreError(e.to_string())
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl ApiStore {
    /// A store publishing Events through `recorder`, reading uids and event references
    /// from `caches`; its claims come from [`Self::claim_index`], which the controllers'
    /// watches keep.
    pub fn new(client: Client, recorder: EventRecorder, caches: ClusterCaches) -> Self {
        Self {
            client,
            recorder,
            caches,
            claims: Arc::default(),
            written: Arc::default(),
            counts: Arc::default(),
            typed: Arc::default(),
        }
    }

    /// Counts the objects of `cache` (by [`TypedKind::subscription`]) in
    /// [`resources_in_subscription`](KubeStore::resources_in_subscription), as the kind
    /// resyncs ([`ResyncRead::of_kind`] of [`TypedKind::KIND`]): every kind's cache,
    /// registered when its controller starts.
    pub fn count_cache<K: TypedKind>(&self, cache: Store<DeserializeGuard<K>>) {
        self.count_also(
            ResyncRead::of_kind(K::KIND),
            Box::new(move || {
                cache
                    .state()
                    .iter()
                    .filter_map(|o| o.0.as_ref().ok().and_then(TypedKind::subscription))
                    .collect()
            }),
        );
    }

    /// Counts the objects `subscriptions` lists in
    /// [`resources_in_subscription`](KubeStore::resources_in_subscription) too, each as one
    /// resource whose resync reads ARM as `read`.
    pub fn count_also(&self, read: ResyncRead, subscriptions: SubscriptionsOf) {
        self.typed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((read, subscriptions));
        // The next count includes them.
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<ObjKey, String>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index [`KubeStore::claims`] answers from: the controllers apply their watch
    /// events to it ([`ClaimIndex::apply`]).
    pub fn claim_index(&self) -> Arc<ClaimIndex> {
        self.claims.clone()
    }

    /// Records that one of our writes left `key` at resourceVersion `rv`.
    pub fn wrote_version(&self, key: &ObjKey, rv: Option<String>) {
        let Some(rv) = rv else {
            return;
        };
        let mut written = self.written();
        written.insert(key.clone(), rv);
        // Objects deleted by someone else never come back to `current`: sweep now and then
        // (the other kinds' objects are not in these caches: they forget on deletion).
        if written.len() >= 256 && written.len().is_power_of_two() {
            written.retain(|k, _| !self.serves(&k.kind) || self.cached_uid(k).is_some());
        }
    }

    /// The resourceVersion our last write to `key` produced, while the cache may not show it.
    pub fn written_version(&self, key: &ObjKey) -> Option<String> {
        self.written().get(key).cloned()
    }

    /// Forgets `key` (it is gone, or about to be).
    pub fn forget(&self, key: &ObjKey) {
        self.written().remove(key);
    }

    /// The object to reconcile: `cached` when it already shows our last write to it (or
    /// we never wrote it), else the API server's copy; `None` if it no longer exists.
    ///
    /// # Errors
    /// The API server's refusal of the read.
    pub async fn current<K: TypedKind>(&self, cached: &K) -> Result<Option<K>, kube::Error> {
        let key = super::typed::key_of::<K>(cached);
        {
            let mut written = self.written();
            match written.get(&key) {
                None => return Ok(Some(cached.clone())),
                Some(rv) if Some(rv) == cached.meta().resource_version.as_ref() => {
                    written.remove(&key);
                    return Ok(Some(cached.clone()));
                }
                // Behind our write, or past it (someone changed it since): resourceVersions
                // are opaque, so only the API server can tell.
                Some(_) => {}
            }
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), &key.namespace);
        let live = api.get_opt(&key.name).await?;
        match &live {
            // Keep comparing until the cache reaches this version.
            Some(l) => self.wrote_version(&key, l.meta().resource_version.clone()),
            None => self.forget(&key),
        }
        Ok(live)
    }

    /// Whether `kind` is one of the kinds whose caches this store reads.
    fn serves(&self, kind: &str) -> bool {
        kind == InferenceCluster::KIND || kind == ClusterAttachment::KIND
    }

    /// The uid of the cached object `key` (`Some(None)`: cached without one); `None` when
    /// it is not cached here.
    fn cached_uid(&self, key: &ObjKey) -> Option<Option<String>> {
        fn uid<K: TypedKind>(
            store: &Store<DeserializeGuard<K>>,
            key: &ObjKey,
        ) -> Option<Option<String>> {
            store
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
                .map(|o| o.meta().uid.clone())
        }
        match key.kind.as_str() {
            InferenceCluster::KIND => uid(&self.caches.inference_clusters, key),
            ClusterAttachment::KIND => uid(&self.caches.cluster_attachments, key),
            _ => None,
        }
    }

    fn reference(&self, key: &ObjKey) -> ObjectReference {
        // Every amlops kind is amlops.dev/v1alpha1.
        ObjectReference {
            api_version: Some(format!("{}/{}", crate::crd::GROUP, super::kinds::VERSION)),
            kind: Some(key.kind.clone()),
            name: Some(key.name.clone()),
            namespace: Some(key.namespace.clone()),
            uid: self.cached_uid(key).flatten(),
            ..Default::default()
        }
    }

    fn count_by_subscription(&self) -> HashMap<String, SubscriptionCounts> {
        let mut counts: HashMap<String, SubscriptionCounts> = HashMap::new();
        for (read, subscriptions) in self.typed.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for sub in subscriptions() {
                counts
                    .entry(sub.to_ascii_lowercase())
                    .or_default()
                    .add(*read);
            }
        }
        counts
    }
}

/// The `action` of an event: `Reconcile/` and a digest of its note.
///
/// events.k8s.io series (and [`EventRecorder`], which keys them by type, reason, action
/// and object) keep the note of the *first* event: a later "retrying in 8s",
/// "(2/3)" or "phase Creating → Ready" with the same reason would only bump the count of an
/// event that still says "retrying in 4s", and `kubectl describe` would show stale text.
/// With the note in the action, every distinct note is an event of its own and a series
/// counts only repetitions of exactly what its note says.
pub fn occurrence_action(note: &str) -> String {
    use std::hash::{Hash, Hasher};
    // In-process only (the recorder's series cache lives in this process only), so the std
    // hasher's stability across Rust versions does not matter.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    note.hash(&mut h);
    format!("Reconcile/{:016x}", h.finish())
}

/// Resources per (lower-cased) subscription, by how they resync, and when they were counted.
type Counted = (Instant, HashMap<String, SubscriptionCounts>);

/// How long a count of resources per subscription is reused (it only paces resyncs).
const COUNT_TTL: Duration = Duration::from_secs(1);

impl ApiStore {
    /// Saves the status of an object of a typed kind by server-side apply (our one field
    /// manager) and remembers the resourceVersion it produced. The answer is read untyped:
    /// the object may not decode as a `K` (its stall is what is being saved).
    ///
    /// # Errors
    /// The API server's refusal.
    pub async fn save_typed_status<K: super::typed::TypedKind>(
        &self,
        key: &ObjKey,
        status: &K::Status,
    ) -> Result<(), StoreError> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &key.namespace,
            &ApiResource::erase::<K>(&()),
        );
        let body = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::KIND,
            "status": status,
        });
        let saved = api
            .patch_status(
                &key.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map_err(store_err)?;
        self.wrote_version(key, saved.meta().resource_version.clone());
        Ok(())
    }
}

impl crate::engine::azureml_extension::ExtensionStore for ApiStore {
    async fn save_extension_status(
        &self,
        key: &ObjKey,
        status: &crate::crd::AzureMlExtensionStatus,
    ) -> Result<(), StoreError> {
        self.save_typed_status::<crate::crd::AzureMLExtension>(key, status)
            .await
    }
}

impl crate::engine::kubernetes_compute::ComputeStore for ApiStore {
    async fn save_compute_status(
        &self,
        key: &ObjKey,
        status: &KubernetesComputeStatus,
    ) -> Result<(), StoreError> {
        self.save_typed_status::<KubernetesCompute>(key, status)
            .await
    }
}

impl KubeStore for ApiStore {
    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, StoreError> {
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(store_err)
    }

    async fn apply_secret(&self, mut secret: Secret) -> Result<(), StoreError> {
        let ns = secret.metadata.namespace.clone().unwrap_or_default();
        let name = secret.metadata.name.clone().unwrap_or_default();
        secret.metadata.managed_fields = None;
        secret.metadata.resource_version = None;
        let mut body = serde_json::to_value(&secret).map_err(|e| StoreError(e.to_string()))?;
        body["apiVersion"] = json!("v1");
        body["kind"] = json!("Secret");
        Api::<Secret>::namespaced(self.client.clone(), &ns)
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map(|_| ())
            .map_err(store_err)
    }

    async fn save_status(&self, key: &ObjKey, status: &ClusterStatus) -> Result<(), StoreError> {
        match key.kind.as_str() {
            InferenceCluster::KIND => {
                self.save_typed_status::<InferenceCluster>(key, status)
                    .await
            }
            ClusterAttachment::KIND => {
                self.save_typed_status::<ClusterAttachment>(key, status)
                    .await
            }
            other => Err(StoreError(format!("unknown kind {other}"))),
        }
    }

    async fn emit(&self, event: Event) {
        let note = truncate(&event.message, MAX_NOTE);
        let ev = KubeEvent {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: truncate(&event.reason, 128),
            action: occurrence_action(&note),
            note: Some(note),
            secondary: None,
        };
        if let Err(e) = self
            .recorder
            .publish(&ev, &self.reference(&event.key))
            .await
        {
            // An event that cannot be written must not fail the reconcile.
            tracing::warn!(error = %e, object = %event.key, "could not publish event");
        }
    }

    async fn claims(&self, d: &Desired) -> Result<Vec<Claim>, StoreError> {
        let (compute, aks) = crate::engine::store::claim_target(d);
        Ok(self.claims.contenders(&d.key(), &compute, aks))
    }

    /// How many cached resources name `subscription`: the cluster kinds and the
    /// `KubernetesCompute`s by their workspace, the `AzureMLExtension`s by their cluster
    /// (each kind once its controller registered its cache, [`Self::count_cache`]), split
    /// into the cluster kinds ([`ResyncRead::Listed`]) and the other two
    /// ([`ResyncRead::ReadEach`]): the resources whose resyncs share that subscription's ARM
    /// read budget. Counted for every subscription in one walk of the caches at most once
    /// per [`COUNT_TTL`]: a walk per steady reconcile was O(n²) per resync round (18% of the
    /// CPU at 1,000 resources).
    fn resources_in_subscription(&self, subscription: &str) -> SubscriptionCounts {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = counts
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < COUNT_TTL);
        if !fresh {
            *counts = Some((Instant::now(), self.count_by_subscription()));
        }
        counts
            .as_ref()
            .and_then(|(_, c)| c.get(&subscription.to_ascii_lowercase()).copied())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::cluster::ClusterKind;
    use kube::ResourceExt;
    use kube::runtime::events::Reporter;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;

    const AV: &str = "amlops.dev/v1alpha1";

    fn ic(name: &str, compute: &str, generation: i64, created: &str) -> InferenceCluster {
        serde_json::from_value(json!({
            "apiVersion": "amlops.dev/v1alpha1", "kind": "InferenceCluster",
            "metadata": {"name": name, "namespace": "ml", "generation": generation,
                         "uid": format!("uid-{name}"),
                         "resourceVersion": format!("{name}-{generation}"),
                         "creationTimestamp": created},
            "spec": {"workspace": {"subscriptionId": "00000000-0000-0000-0000-000000000000",
                                   "resourceGroup": "ml-rg", "name": "ml-ws"},
                     "computeName": compute}
        }))
        .unwrap()
    }

    fn key(name: &str) -> ObjKey {
        ObjKey {
            kind: "InferenceCluster".into(),
            namespace: "ml".into(),
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn claims_follow_spec_changes_and_deletions() {
        let fake = amlops_fake_kube::FakeApiServer::start().await.unwrap();
        let client = fake.client();
        let recorder = EventRecorder::new(client.clone(), Reporter::from("test"));
        let store = ApiStore::new(client, recorder, ClusterCaches::default());
        // What the controller's watch does with each event: the reflector, then the index.
        let mut writer = Writer::default();
        let index = store.claim_index();
        let mut event = |e: watcher::Event<DeserializeGuard<InferenceCluster>>| {
            writer.apply_watcher_event(&e);
            index.apply(&e);
        };
        let apply = |o: InferenceCluster| watcher::Event::Apply(DeserializeGuard(Ok(o)));
        let (a, b) = (
            ic("a", "shared", 1, "2026-01-01T00:00:00Z"),
            ic("b", "shared", 1, "2026-01-02T00:00:00Z"),
        );
        event(apply(a.clone()));
        event(apply(b.clone()));
        let claims = async |obj: &InferenceCluster| {
            let d = obj.desired();
            let c = store.claims(&d).await.unwrap();
            // The claims that win under the rule `decide` applies.
            c.into_iter()
                .filter(|c| crate::engine::checks::takes_precedence(c, &d))
                .map(|c| c.key.name)
                .collect::<Vec<_>>()
        };
        // The newer one sees the older one's claim; the older one keeps the name.
        assert_eq!(claims(&b).await, ["a"]);
        assert!(claims(&a).await.is_empty());
        // A new spec of `a` (new generation): no contention any more…
        event(apply(ic("a", "other", 2, "2026-01-01T00:00:00Z")));
        assert!(claims(&b).await.is_empty());
        // …and again when it comes back to the contested name.
        let back = ic("a", "shared", 3, "2026-01-01T00:00:00Z");
        event(apply(back.clone()));
        assert_eq!(claims(&b).await, ["a"]);
        // A deleted sibling claims nothing any more.
        event(watcher::Event::Delete(DeserializeGuard(Ok(back))));
        assert!(claims(&b).await.is_empty());
        assert_eq!(store.claim_index().len(), 1, "forgotten");
    }

    /// events.k8s.io series keep their first note: each distinct note is its own event
    /// (its text is what `kubectl describe` shows), and only exact repetitions count in a
    /// series.
    #[tokio::test]
    async fn event_notes_describe_the_occurrence_they_count() {
        let fake = amlops_fake_kube::FakeApiServer::start().await.unwrap();
        let client = fake.client();
        let recorder = EventRecorder::new(client.clone(), Reporter::from("amlops"));
        let store = ApiStore::new(client, recorder, ClusterCaches::default());
        let emit = async |reason: &str, message: &str| {
            store
                .emit(Event {
                    key: key("a"),
                    warning: true,
                    reason: reason.into(),
                    message: message.into(),
                })
                .await
        };
        emit("ReconcileError", "kubernetes: 500 (retrying in 4s)").await;
        emit("ReconcileError", "kubernetes: 500 (retrying in 8s)").await;
        emit("ReconcileError", "kubernetes: 500 (retrying in 8s)").await;
        emit(
            "RetryingFailedCompute",
            "compute a failed; deleting it and trying again (1/3)",
        )
        .await;
        emit(
            "RetryingFailedCompute",
            "compute a failed; deleting it and trying again (2/3)",
        )
        .await;
        let events = fake.events("ml");
        let mut seen: Vec<(String, i64)> = events
            .iter()
            .map(|e| {
                (
                    e["note"].as_str().unwrap_or_default().to_string(),
                    e["series"]["count"].as_i64().unwrap_or(1),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                (
                    "compute a failed; deleting it and trying again (1/3)".to_string(),
                    1
                ),
                (
                    "compute a failed; deleting it and trying again (2/3)".to_string(),
                    1
                ),
                ("kubernetes: 500 (retrying in 4s)".to_string(), 1),
                ("kubernetes: 500 (retrying in 8s)".to_string(), 2),
            ],
            "{events:#?}"
        );
        assert!(
            events
                .iter()
                .all(|e| e["reportingController"] == "amlops" && e["regarding"]["name"] == "a")
        );
    }

    #[tokio::test]
    async fn current_reads_afresh_only_while_the_cache_is_behind_our_write() {
        let fake = amlops_fake_kube::FakeApiServer::start().await.unwrap();
        for crd in crate::crd::all_crds() {
            fake.install_crd(crd).unwrap();
        }
        let client = fake.client();
        let live = |name: &str| -> InferenceCluster {
            let mut o = serde_json::to_value(ic(name, "c", 1, "2026-01-01T00:00:00Z")).unwrap();
            o["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("resourceVersion");
            o["metadata"].as_object_mut().unwrap().remove("uid");
            serde_json::from_value(fake.put(o).unwrap()).unwrap()
        };
        let a = live("a");
        let store = ApiStore::new(
            client.clone(),
            EventRecorder::new(client, Reporter::from("test")),
            ClusterCaches::default(),
        );
        let gets = || {
            fake.requests()
                .iter()
                .filter(|r| r.method == "GET" && r.path.ends_with("/inferenceclusters/a"))
                .count()
        };
        let current = async |o: &InferenceCluster| {
            store
                .current(o)
                .await
                .unwrap()
                .map(|o| o.resource_version().unwrap())
        };
        // Never written by us: the cache is trusted, no request.
        assert_eq!(current(&a).await, a.resource_version());
        assert_eq!(gets(), 0);
        // Our status write moved it on; the cache still holds the old copy: read afresh.
        let status = ClusterStatus {
            compute_name: Some("c".into()),
            ..Default::default()
        };
        store.save_status(&key("a"), &status).await.unwrap();
        let written = fake
            .get(AV, "InferenceCluster", Some("ml"), "a")
            .unwrap()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(current(&a).await.as_deref(), Some(written.as_str()));
        assert_eq!(gets(), 1);
        assert_eq!(current(&a).await.as_deref(), Some(written.as_str()));
        assert_eq!(gets(), 2, "still behind: read again");
        // The cache caught up: trusted again, and from then on.
        let fresh: InferenceCluster =
            serde_json::from_value(fake.get(AV, "InferenceCluster", Some("ml"), "a").unwrap())
                .unwrap();
        assert_eq!(current(&fresh).await.as_deref(), Some(written.as_str()));
        assert_eq!(current(&fresh).await.as_deref(), Some(written.as_str()));
        assert_eq!(gets(), 2);
        // Written, then deleted before the cache saw either: gone, and forgotten.
        let status = ClusterStatus {
            compute_name: Some("d".into()),
            ..status
        };
        store.save_status(&key("a"), &status).await.unwrap();
        fake.delete(AV, "InferenceCluster", Some("ml"), "a")
            .unwrap();
        assert_eq!(current(&fresh).await, None);
        assert!(store.written().is_empty());
    }

    /// Every kind shares its subscription's read budget: every registered cache counts,
    /// case-insensitively.
    #[tokio::test]
    async fn resources_in_subscription_counts_all_four_kinds() {
        const A: &str = "00000000-0000-0000-0000-000000000000";
        const B: &str = "bbbbbbbb-0000-0000-0000-000000000000";
        let fake = amlops_fake_kube::FakeApiServer::start().await.unwrap();
        let client = fake.client();
        let mut writer = Writer::default();
        for name in ["a", "b"] {
            let o = ic(name, name, 1, "2026-01-01T00:00:00Z");
            writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(o))));
        }
        let store = ApiStore::new(
            client.clone(),
            EventRecorder::new(client, Reporter::from("test")),
            ClusterCaches::default(),
        );
        let counts = |listed, read_each| SubscriptionCounts { listed, read_each };
        assert_eq!(
            store.resources_in_subscription(A),
            counts(0, 0),
            "nothing registered"
        );
        // As the InferenceCluster controller registers its cache (counted again at once):
        // the cluster kinds' resyncs are listed.
        store.count_cache(writer.as_reader());
        assert_eq!(store.resources_in_subscription(A), counts(2, 0));
        // The other kinds' caches, once registered: a ClusterAttachment's is listed, an
        // AzureMLExtension's or KubernetesCompute's read one each.
        store.count_also(
            ResyncRead::of_kind("ClusterAttachment"),
            Box::new(|| vec![A.into()]),
        );
        store.count_also(
            ResyncRead::of_kind("AzureMLExtension"),
            Box::new(|| vec![A.to_ascii_uppercase(), B.into()]),
        );
        store.count_also(
            ResyncRead::of_kind("KubernetesCompute"),
            Box::new(|| vec![A.into()]),
        );
        let table = [
            (A, counts(3, 2)),
            (B, counts(0, 1)),
            ("cccccccc-0000-0000-0000-000000000000", counts(0, 0)),
        ];
        for (sub, want) in table {
            assert_eq!(store.resources_in_subscription(sub), want, "{sub}");
        }
        assert_eq!(store.resources_in_subscription(A).total(), 5);
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }
}
