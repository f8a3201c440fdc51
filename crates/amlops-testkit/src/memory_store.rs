//! [`MemoryStore`]: the engine's [`KubeStore`] kept in memory, for the demo, the benchmark
//! and the engine's scenario tests (the controller's is `amlops::controller::kube_store`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use amlops::crd::{AzureMlExtensionStatus, ClusterStatus, KubernetesComputeStatus};
use amlops::engine::Desired;
use amlops::engine::azureml_extension::ExtensionStore;
use amlops::engine::kubernetes_compute::ComputeStore;
use amlops::engine::store::{
    Claim, Event, KubeStore, ObjKey, ResyncRead, StoreError, SubscriptionCounts, claim_target,
};
use k8s_openapi::api::core::v1::Secret;

#[derive(Default)]
struct Inner {
    secrets: BTreeMap<(String, String), Secret>,
    statuses: BTreeMap<ObjKey, ClusterStatus>,
    compute_statuses: BTreeMap<ObjKey, KubernetesComputeStatus>,
    extension_statuses: BTreeMap<ObjKey, AzureMlExtensionStatus>,
    events: Vec<Event>,
    claims: Vec<Claim>,
    /// The subscription (lowercase) of every resource counted by
    /// [`KubeStore::resources_in_subscription`]: the legacy kinds' from their claim, the
    /// Kubernetes-path kinds' (they claim nothing) from [`MemoryStore::count_resource`].
    counted: BTreeMap<ObjKey, String>,
    /// How many of `counted` each subscription holds, by how they resync
    /// ([`ResyncRead::of_kind`] of the key's kind): every reconcile asks, so the answer must
    /// not walk every resource (at 10,000 that walk was half the steady state's CPU).
    per_subscription: HashMap<String, SubscriptionCounts>,
}

impl Inner {
    /// Counts `key` in `subscription` (lowercase), or in none, instead of where it was.
    fn count(&mut self, key: &ObjKey, subscription: Option<String>) {
        let read = ResyncRead::of_kind(&key.kind);
        let old = match &subscription {
            Some(sub) => self.counted.insert(key.clone(), sub.clone()),
            None => self.counted.remove(key),
        };
        if let Some(old) = old
            && let Some(n) = self.per_subscription.get_mut(&old)
        {
            n.remove(read);
            if n.total() == 0 {
                self.per_subscription.remove(&old);
            }
        }
        if let Some(sub) = subscription {
            self.per_subscription.entry(sub).or_default().add(read);
        }
    }
}

/// The subscription of an ARM id (`/subscriptions/{id}/…`), lowercase.
fn subscription_of(arm_id: &str) -> Option<String> {
    const PREFIX: &str = "/subscriptions/";
    let rest = arm_id
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .map(|_| &arm_id[PREFIX.len()..])?;
    let (sub, _) = rest.split_once('/')?;
    Some(sub.to_ascii_lowercase())
}

/// In-memory [`KubeStore`]; clones share state.
#[derive(Clone, Default)]
pub struct MemoryStore(Arc<Mutex<Inner>>);

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Put a Secret (test set-up).
    pub fn insert_secret(&self, secret: Secret) {
        let key = (
            secret.metadata.namespace.clone().unwrap_or_default(),
            secret.metadata.name.clone().unwrap_or_default(),
        );
        self.lock().secrets.insert(key, secret);
    }
    /// A Secret, if present.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.lock()
            .secrets
            .get(&(namespace.into(), name.into()))
            .cloned()
    }
    /// The last saved status of a CR.
    pub fn status(&self, key: &ObjKey) -> Option<ClusterStatus> {
        self.lock().statuses.get(key).cloned()
    }
    /// The last saved status of a `KubernetesCompute`.
    pub fn compute_status(&self, key: &ObjKey) -> Option<KubernetesComputeStatus> {
        self.lock().compute_statuses.get(key).cloned()
    }
    /// The last saved status of an `AzureMLExtension`.
    pub fn extension_status(&self, key: &ObjKey) -> Option<AzureMlExtensionStatus> {
        self.lock().extension_statuses.get(key).cloned()
    }
    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }
    /// Register what a CR claims (the controller derives this from its caches).
    pub fn set_claim(&self, claim: Claim) {
        let mut inner = self.lock();
        inner.claims.retain(|c| c.key != claim.key);
        inner.count(&claim.key, subscription_of(&claim.compute_id));
        inner.claims.push(claim);
    }
    /// Forget a CR (deleted): its claim and its place in [`KubeStore::resources_in_subscription`].
    pub fn remove_claim(&self, key: &ObjKey) {
        let mut inner = self.lock();
        inner.claims.retain(|c| &c.key != key);
        inner.count(key, None);
    }
    /// Count an `AzureMLExtension` or `KubernetesCompute` in `subscription` (the legacy kinds
    /// are counted by their claims, [`set_claim`](Self::set_claim)).
    pub fn count_resource(&self, key: &ObjKey, subscription: &str) {
        self.lock()
            .count(key, Some(subscription.to_ascii_lowercase()));
    }
}

impl KubeStore for MemoryStore {
    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, StoreError> {
        Ok(self.secret(namespace, name))
    }
    async fn apply_secret(&self, secret: Secret) -> Result<(), StoreError> {
        self.insert_secret(secret);
        Ok(())
    }
    async fn save_status(&self, key: &ObjKey, status: &ClusterStatus) -> Result<(), StoreError> {
        self.lock().statuses.insert(key.clone(), status.clone());
        Ok(())
    }
    async fn emit(&self, event: Event) {
        self.lock().events.push(event);
    }
    async fn claims(&self, d: &Desired) -> Result<Vec<Claim>, StoreError> {
        let key = d.key();
        let (compute, aks) = claim_target(d);
        let inner = self.lock();
        Ok(inner
            .claims
            .iter()
            .filter(|c| c.key != key && c.contends_with(&compute, aks))
            .map(|c| Claim {
                owns: c.owns
                    || inner
                        .statuses
                        .get(&c.key)
                        .is_some_and(|s| s.compute_id.is_some()),
                ..c.clone()
            })
            .collect())
    }
    fn resources_in_subscription(&self, subscription: &str) -> SubscriptionCounts {
        self.lock()
            .per_subscription
            .get(&subscription.to_ascii_lowercase())
            .copied()
            .unwrap_or_default()
    }
}

impl ComputeStore for MemoryStore {
    async fn save_compute_status(
        &self,
        key: &ObjKey,
        status: &KubernetesComputeStatus,
    ) -> Result<(), StoreError> {
        self.lock()
            .compute_statuses
            .insert(key.clone(), status.clone());
        Ok(())
    }
}

impl ExtensionStore for MemoryStore {
    async fn save_extension_status(
        &self,
        key: &ObjKey,
        status: &AzureMlExtensionStatus,
    ) -> Result<(), StoreError> {
        self.lock()
            .extension_statuses
            .insert(key.clone(), status.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &str, name: &str) -> ObjKey {
        ObjKey {
            kind: kind.into(),
            namespace: "ml".into(),
            name: name.into(),
        }
    }

    fn claim(name: &str, sub: &str) -> Claim {
        Claim {
            key: key("InferenceCluster", name),
            compute_id: format!(
                "/subscriptions/{sub}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ws/computes/{name}"
            ),
            aks_id: None,
            owns: false,
            created: None,
        }
    }

    /// Every kind shares its subscription's read budget, so every kind is counted: the
    /// cluster kinds as listed, the other two as one read each.
    #[test]
    fn resources_in_subscription_counts_all_four_kinds() {
        const A: &str = "aaaaaaaa-0000-0000-0000-000000000000";
        const B: &str = "bbbbbbbb-0000-0000-0000-000000000000";
        let counts = |listed, read_each| SubscriptionCounts { listed, read_each };
        let s = MemoryStore::default();
        s.set_claim(claim("ic1", A));
        s.set_claim(Claim {
            key: key("ClusterAttachment", "ca1"),
            ..claim("ca1", A)
        });
        s.set_claim(claim("ic2", B));
        s.count_resource(&key("AzureMLExtension", "ext"), A);
        s.count_resource(&key("KubernetesCompute", "kc1"), &A.to_ascii_uppercase());
        s.count_resource(&key("KubernetesCompute", "kc2"), A);
        s.count_resource(&key("KubernetesCompute", "kc3"), B);
        // Counting one again changes nothing.
        s.count_resource(&key("KubernetesCompute", "kc3"), B);
        let table = [
            (A, counts(2, 3)),
            (B, counts(1, 1)),
            ("cccccccc-0000-0000-0000-000000000000", counts(0, 0)),
        ];
        for (sub, want) in table {
            assert_eq!(s.resources_in_subscription(sub), want, "{sub}");
        }
        assert_eq!(s.resources_in_subscription(A).total(), 5);
        // Deleted resources no longer count, whatever their kind.
        s.remove_claim(&key("KubernetesCompute", "kc1"));
        s.remove_claim(&key("InferenceCluster", "ic1"));
        assert_eq!(s.resources_in_subscription(A), counts(1, 2));
        assert_eq!(
            s.resources_in_subscription(&A.to_ascii_uppercase()),
            counts(1, 2)
        );
        // A claim set again counts once, in the subscription it names now; forgetting a
        // resource twice or one never counted changes nothing.
        s.set_claim(claim("ic2", A));
        s.remove_claim(&key("KubernetesCompute", "kc1"));
        s.remove_claim(&key("InferenceCluster", "never"));
        for (sub, want) in [(A, counts(2, 2)), (B, counts(0, 1))] {
            assert_eq!(s.resources_in_subscription(sub), want, "{sub}");
        }
        // A claim whose compute id names no subscription counts in none.
        s.set_claim(Claim {
            compute_id: "not-an-arm-id".into(),
            ..claim("odd", A)
        });
        assert_eq!(s.resources_in_subscription(A), counts(2, 2));
        // A subscription whose last resource leaves holds none.
        s.remove_claim(&key("KubernetesCompute", "kc3"));
        assert_eq!(s.resources_in_subscription(B), counts(0, 0));
    }

    #[test]
    fn subscription_of_an_arm_id() {
        for (id, want) in [
            ("/subscriptions/AbC/resourceGroups/rg", Some("abc")),
            ("/SUBSCRIPTIONS/abc/x", Some("abc")),
            ("/subscriptions/abc", None),
            ("/subscriptions/", None),
            ("subscriptions/abc/x", None),
            ("", None),
        ] {
            assert_eq!(subscription_of(id).as_deref(), want, "{id}");
        }
    }
}
