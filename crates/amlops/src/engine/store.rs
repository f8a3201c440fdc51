//! The engine's narrow view of Kubernetes: Secrets, status, events and sibling claims. The
//! controller implements it against the API server (`controller::kube_store`); the test kit
//! (`amlops-testkit`) keeps one in memory for the demo, the benchmark and the tests.

use std::future::Future;

use k8s_openapi::api::core::v1::Secret;

use crate::crd::ClusterStatus;

use super::body::attach_target;
use super::desired::Desired;

/// Identity of a CR: kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    /// The kind's name: `InferenceCluster`, `ClusterAttachment`, `AzureMLExtension` or
    /// `KubernetesCompute`.
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

/// How the steady-state resync of one resource reads ARM, by kind: what the read demand of
/// its subscription counts it as ([`super::listing::resync_demand`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResyncRead {
    /// `InferenceCluster` and `ClusterAttachment`: the legacy engine answers their resyncs
    /// from workspace listings ([`super::listing`]), whose pages they share.
    Listed,
    /// `AzureMLExtension` and `KubernetesCompute`: one `GET` of their own each.
    ReadEach,
}

impl ResyncRead {
    /// How a resource of `kind` (its `kind` name, as in [`ObjKey::kind`]) resyncs:
    /// [`Listed`](Self::Listed) for `InferenceCluster` and `ClusterAttachment`,
    /// [`ReadEach`](Self::ReadEach) for any other kind.
    pub fn of_kind(kind: &str) -> Self {
        use crate::crd::{ClusterAttachment, InferenceCluster};
        use kube::Resource;
        if kind == InferenceCluster::kind(&()) || kind == ClusterAttachment::kind(&()) {
            Self::Listed
        } else {
            Self::ReadEach
        }
    }
}

/// The resources the operator manages in one subscription, counted by how their
/// steady-state resyncs read ARM ([`KubeStore::resources_in_subscription`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionCounts {
    /// Resources whose resyncs workspace listings answer ([`ResyncRead::Listed`]).
    pub listed: usize,
    /// Resources whose resyncs cost one `GET` each ([`ResyncRead::ReadEach`]).
    pub read_each: usize,
}

impl SubscriptionCounts {
    /// Every resource of the subscription, of all four kinds.
    pub fn total(&self) -> usize {
        self.listed.saturating_add(self.read_each)
    }

    /// Counts one more resource that resyncs as `read`.
    pub fn add(&mut self, read: ResyncRead) {
        let n = self.of_mut(read);
        *n = n.saturating_add(1);
    }

    /// Counts one resource fewer that resyncs as `read` (never below zero).
    pub fn remove(&mut self, read: ResyncRead) {
        let n = self.of_mut(read);
        *n = n.saturating_sub(1);
    }

    fn of_mut(&mut self, read: ResyncRead) -> &mut usize {
        match read {
            ResyncRead::Listed => &mut self.listed,
            ResyncRead::ReadEach => &mut self.read_each,
        }
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
    /// How many resources the operator manages in `subscription`, of all four kinds, by how
    /// their steady-state resyncs read ARM (the resync pace spreads those reads over ARM's
    /// budget, which they all share: [`super::listing::resync_demand`]).
    fn resources_in_subscription(&self, subscription: &str) -> SubscriptionCounts;
}
