//! The engine of `KubernetesCompute`: one attachment of a cluster that runs the Azure ML
//! extension to a workspace, in one namespace (an Azure ML compute of type `Kubernetes`).
//!
//! Same shape as the engine of the legacy kinds: [`observe`](Engine::observe_compute) makes
//! every read, [`decide`] is pure and returns a [`ComputePlan`] (status, at most one
//! [`ComputeWrite`], events, requeue), [`settle`] completes it from the write's result, and
//! every Azure failure goes through the same [`verdict`](super::verdict::verdict).
//!
//! What Azure does and does not check, and so what this engine checks first
//! (<https://learn.microsoft.com/azure/machine-learning/how-to-attach-kubernetes-to-workspace>): Azure refuses the attach while the
//! cluster's Azure ML extension is not `Succeeded`, so the engine waits for it
//! (`WaitingForExtension`) instead of collecting 400s; Azure does *not* check the namespace
//! (jobs fail later), so the engine looks on the cluster first (`NamespaceNotFound`, or
//! creates it with `createNamespace`); Azure refuses a re-PUT that changes `resourceId` or
//! `namespace` ("k8s compute doesn't support update"), so those are immutable in the CRD
//! and a compute that differs is never overwritten (`ComputeExists`); identity and
//! description change in place, and a refused in-place change falls back to detach +
//! attach; a `Failed` compute is detached and attached again with the same name and
//! namespace (Microsoft's documented recovery), at most `maxRetries` times.

mod decide;
mod run;
#[cfg(test)]
mod tests;

use sha2::{Digest, Sha256};

use crate::azure::model::{KubernetesComputeResource, ManagedServiceIdentity};
use crate::azure::{AzureError, ResourceId};
use crate::crd::{
    ADOPT_ANNOTATION, AzureMLExtension, ComputeIdentity, ComputeIdentityType, DeletionPolicy,
    KubernetesCompute, KubernetesComputeStatus, REATTACH_ANNOTATION, ReattachPolicy, WorkspaceRef,
};

/// The steady-state resync interval of this kind (tests compare it with the other kinds').
#[cfg(test)]
pub(crate) use decide::steady;
pub use decide::{ComputeDone, ComputePlan, ComputeWrite, ComputeWriteFailure, decide, settle};
pub use run::{ComputeStore, NamespaceLookup, ObservedAttachment};

use super::store::ObjKey;
use super::verdict::Verdict;

/// Kind name in events and keys.
pub const KIND: &str = "KubernetesCompute";

/// The cluster a compute attaches, and the Azure ML extension that must serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComputeTarget {
    /// ARM id of the managed cluster.
    pub cluster: ResourceId,
    /// Name of the cluster's Azure ML extension (`azureml` unless the spec says otherwise).
    pub extension: String,
}

/// What the user asked for in a `KubernetesCompute`, with its `extensionRef` resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ComputeDesired {
    /// The CR.
    pub key: ObjKey,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Workspace.
    pub workspace: WorkspaceRef,
    /// Compute name.
    pub compute_name: String,
    /// The cluster and extension, or why they are not known yet (the `AzureMLExtension` of
    /// `extensionRef` does not exist, or has an invalid cluster id).
    pub target: Result<ComputeTarget, String>,
    /// Namespace on the cluster the compute's workloads run in.
    pub namespace: String,
    /// Create that namespace when it is missing.
    pub create_namespace: bool,
    /// Identity of the compute.
    pub identity: Option<ComputeIdentity>,
    /// Description.
    pub description: Option<String>,
    /// A detach + attach waits for the `amlops.dev/reattach` annotation.
    pub manual_reattach: bool,
    /// Value of `amlops.dev/reattach`.
    pub reattach_token: Option<String>,
    /// `amlops.dev/adopt: "true"`.
    pub adopt: bool,
    /// `Detach` or `Orphan`.
    pub deletion_policy: DeletionPolicy,
    /// Detach + attach retries of a `Failed` compute.
    pub max_retries: u32,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

impl ComputeDesired {
    /// From the CR and, for `extensionRef`, the `AzureMLExtension` it names (`None`: not
    /// found in the CR's namespace).
    pub fn new(kc: &KubernetesCompute, extension: Option<&AzureMLExtension>) -> Self {
        let s = &kc.spec;
        let a = kc.metadata.annotations.clone().unwrap_or_default();
        let target = match (&s.cluster, &s.extension_ref) {
            (Some(c), _) => c
                .resource_id
                .parse::<ResourceId>()
                .map(|cluster| ComputeTarget {
                    cluster,
                    extension: c.extension_name.clone().unwrap_or_else(|| "azureml".into()),
                })
                .map_err(|e| format!("cluster.resourceId: {e}")),
            (None, Some(r)) => match extension {
                None => Err(format!(
                    "AzureMLExtension {} does not exist in namespace {}",
                    r.name,
                    kc.metadata.namespace.as_deref().unwrap_or_default()
                )),
                Some(e) => e
                    .spec
                    .cluster
                    .resource_id
                    .parse::<ResourceId>()
                    .map(|cluster| ComputeTarget {
                        cluster,
                        extension: e.extension_name(),
                    })
                    .map_err(|err| {
                        format!("AzureMLExtension {}: cluster.resourceId: {err}", r.name)
                    }),
            },
            (None, None) => Err("neither extensionRef nor cluster is set".into()),
        };
        Self {
            key: ObjKey {
                kind: KIND.into(),
                namespace: kc.metadata.namespace.clone().unwrap_or_default(),
                name: kc.metadata.name.clone().unwrap_or_default(),
            },
            generation: kc.metadata.generation,
            workspace: s.workspace.clone(),
            compute_name: kc.compute_name(),
            target,
            namespace: s.namespace.clone(),
            create_namespace: s.create_namespace,
            identity: s.identity.clone(),
            description: s.description.clone(),
            manual_reattach: s.reattach_policy == ReattachPolicy::Manual,
            reattach_token: a.get(REATTACH_ANNOTATION).cloned(),
            adopt: a.get(ADOPT_ANNOTATION).is_some_and(|v| v == "true"),
            deletion_policy: s.deletion_policy,
            max_retries: u32::try_from(s.max_retries).unwrap_or(0),
            deleting: kc.metadata.deletion_timestamp.is_some(),
        }
    }

    /// ARM id of the compute.
    ///
    /// # Errors
    /// `Config` when the spec's names cannot form an id (admission refuses them).
    pub fn compute_id(&self) -> Result<ResourceId, AzureError> {
        let w = &self.workspace;
        ResourceId::compute(
            &w.subscription_id,
            &w.resource_group,
            &w.name,
            &self.compute_name,
        )
    }

    /// ARM id of the workspace.
    ///
    /// # Errors
    /// As [`compute_id`](Self::compute_id).
    pub fn workspace_id(&self) -> Result<ResourceId, AzureError> {
        let w = &self.workspace;
        ResourceId::workspace(&w.subscription_id, &w.resource_group, &w.name)
    }

    /// Hash (SHA-256, hex) of what an in-place PUT changes: identity and description.
    pub fn applied_hash(&self) -> String {
        let mut h = Sha256::new();
        match &self.identity {
            None => h.update(b"none"),
            Some(i) => {
                h.update(format!("{:?}", i.type_).as_bytes());
                h.update(b"\0");
                h.update(i.user_assigned_identity.as_deref().unwrap_or("").as_bytes());
            }
        }
        h.update(b"\0");
        h.update(self.description.as_deref().unwrap_or("").as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The attach body, as `az ml compute attach --type Kubernetes` sends it: the
    /// workspace's `location` (also as `computeLocation`), the cluster's `resourceId`, the
    /// namespace, the identity and the description.
    pub fn body(&self, location: &str, cluster: &ResourceId) -> KubernetesComputeResource {
        let mut b =
            KubernetesComputeResource::attach(location, cluster.to_string(), &self.namespace);
        b.properties.compute_location = Some(location.to_string());
        b.properties.description = self.description.clone();
        b.identity = self.identity.as_ref().map(|i| match i.type_ {
            ComputeIdentityType::SystemAssigned => ManagedServiceIdentity::system_assigned(),
            ComputeIdentityType::UserAssigned => ManagedServiceIdentity::user_assigned(
                i.user_assigned_identity.clone().unwrap_or_default(),
            ),
        });
        b
    }
}

/// Result of one reconcile of a `KubernetesCompute`.
#[derive(Clone, Debug)]
pub struct ComputeOutcome {
    /// The status now saved.
    pub status: KubernetesComputeStatus,
    /// When to reconcile again (`None`: only on a change).
    pub requeue: Option<std::time::Duration>,
    /// Cleanup finished: the finalizer may go.
    pub finished: bool,
    /// The verdict on an Azure failure this reconcile met.
    pub verdict: Option<Verdict>,
}
