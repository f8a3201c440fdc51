//! The engine's narrow view of Kubernetes: Secrets, status, events and sibling claims. The
//! controller implements it against the API server; [`MemoryStore`] keeps it in memory for
//! the demo and tests.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;

use crate::crd::{AzureMlExtensionStatus, ClusterStatus, KubernetesComputeStatus};

use super::body::attach_target;
use super::desired::Desired;

/// Identity of a CR: kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    /// `InferenceCluster` or `ClusterAttachment`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ObjKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What another CR claims in Azure, with the facts the precedence rule needs
/// ([`super::checks::takes_precedence`]: it owns its compute, or was there first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The claiming CR.
    pub key: ObjKey,
    /// ARM id of the compute (lowercase comparison).
    pub compute_id: String,
    /// ARM id of the AKS cluster it attaches, if any.
    pub aks_id: Option<String>,
    /// Its status records a compute it created or attached (`status.computeId`).
    pub owns: bool,
    /// Its creationTimestamp.
    pub created: Option<jiff::Timestamp>,
}

impl Claim {
    /// What `d` claims: its compute and, for an attachment, its AKS cluster (`owns`
    /// false: the store that lists claims knows the statuses).
    pub fn of(d: &Desired) -> Self {
        Self {
            key: d.key(),
            compute_id: d.compute_id(),
            aks_id: attach_target(d).map(str::to_string),
            owns: false,
            created: d.created,
        }
    }

    /// Whether this claim names the compute `compute_id`, or the AKS cluster `aks_id` to
    /// attach (ARM ids compare case-insensitively).
    pub fn contends_with(&self, compute_id: &str, aks_id: Option<&str>) -> bool {
        self.compute_id.eq_ignore_ascii_case(compute_id)
            || self
                .aks_id
                .as_deref()
                .zip(aks_id)
                .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

/// The compute and attached cluster `d` would claim, for [`Claim::contends_with`].
pub fn claim_target(d: &Desired) -> (String, Option<&str>) {
    (d.compute_id(), attach_target(d))
}

/// A Kubernetes event the engine emits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The CR it is about.
    pub key: ObjKey,
    /// Warning (true) or Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Message (never a secret).
    pub message: String,
}

/// Failure of the Kubernetes side.
#[derive(Debug, thiserror::Error)]
#[error("kubernetes: {0}")]
pub struct StoreError(pub String);

impl StoreError {
    /// The API server refused to create an object because its namespace is being deleted
    /// (its NamespaceLifecycle admission: "… because it is being terminated", HTTP 403).
    pub fn namespace_terminating(&self) -> bool {
        self.0.contains("because it is being terminated")
    }
}

/// Kubernetes operations the engine needs.
pub trait KubeStore: Send + Sync {
    /// Read a Secret of `namespace`.
    fn get_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Secret>, StoreError>> + Send;
    /// Create or replace a Secret.
    fn apply_secret(&self, secret: Secret) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Persist the status of a CR (called before every Azure write, so intent survives a crash).
    fn save_status(
        &self,
        key: &ObjKey,
        status: &ClusterStatus,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Emit an event.
    fn emit(&self, event: Event) -> impl Future<Output = ()> + Send;
    /// Claims of the other CRs that contend with `d` ([`Claim::contends_with`] its
    /// [`claim_target`]): only those, so that a check costs no copy of every sibling's claim.
    /// All of them, whoever was first: `decide` applies the precedence rule.
    fn claims(&self, d: &Desired) -> impl Future<Output = Result<Vec<Claim>, StoreError>> + Send;
    /// How many resources the operator manages in `subscription`, of all four kinds (the
    /// steady-state resync spreads their reads over ARM's budget, which they all share).
    fn resources_in_subscription(&self, subscription: &str) -> usize;
}

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
    /// How many of `counted` each subscription holds: every reconcile asks, so the answer
    /// must not walk every resource (at 10,000 that walk was half the steady state's CPU).
    per_subscription: HashMap<String, usize>,
}

impl Inner {
    /// Counts `key` in `subscription` (lowercase), or in none, instead of where it was.
    fn count(&mut self, key: &ObjKey, subscription: Option<String>) {
        let old = match &subscription {
            Some(sub) => self.counted.insert(key.clone(), sub.clone()),
            None => self.counted.remove(key),
        };
        if let Some(old) = old
            && let Some(n) = self.per_subscription.get_mut(&old)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_subscription.remove(&old);
            }
        }
        if let Some(sub) = subscription {
            *self.per_subscription.entry(sub).or_default() += 1;
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
    fn resources_in_subscription(&self, subscription: &str) -> usize {
        self.lock()
            .per_subscription
            .get(&subscription.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }
}

impl super::kubernetes_compute::ComputeStore for MemoryStore {
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

impl super::azureml_extension::ExtensionStore for MemoryStore {
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

    /// Every kind shares its subscription's read budget, so every kind is counted.
    #[test]
    fn resources_in_subscription_counts_all_four_kinds() {
        const A: &str = "aaaaaaaa-0000-0000-0000-000000000000";
        const B: &str = "bbbbbbbb-0000-0000-0000-000000000000";
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
        let table = [(A, 5), (B, 2), ("cccccccc-0000-0000-0000-000000000000", 0)];
        for (sub, want) in table {
            assert_eq!(s.resources_in_subscription(sub), want, "{sub}");
        }
        // Deleted resources no longer count, whatever their kind.
        s.remove_claim(&key("KubernetesCompute", "kc1"));
        s.remove_claim(&key("InferenceCluster", "ic1"));
        assert_eq!(s.resources_in_subscription(A), 3);
        assert_eq!(s.resources_in_subscription(&A.to_ascii_uppercase()), 3);
        // A claim set again counts once, in the subscription it names now; forgetting a
        // resource twice or one never counted changes nothing.
        s.set_claim(claim("ic2", A));
        s.remove_claim(&key("KubernetesCompute", "kc1"));
        s.remove_claim(&key("InferenceCluster", "never"));
        for (sub, want) in [(A, 4), (B, 1)] {
            assert_eq!(s.resources_in_subscription(sub), want, "{sub}");
        }
        // A claim whose compute id names no subscription counts in none.
        s.set_claim(Claim {
            compute_id: "not-an-arm-id".into(),
            ..claim("odd", A)
        });
        assert_eq!(s.resources_in_subscription(A), 4);
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
