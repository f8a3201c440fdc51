//! The Azure-relevant view of a CR that the engine works from, common to both kinds.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::azure::{AzureError, ResourceId};
use crate::crd::{
    ADOPT_ANNOTATION, ClusterAttachment, ClusterPurpose, DeletionPolicy, InferenceCluster,
    LoadBalancerSpec, NetworkSpec, REATTACH_ANNOTATION, RENEW_ANNOTATION, ReattachPolicy, TlsSpec,
    WorkspaceRef,
};

/// Create (Azure ML makes the AKS cluster) or Attach (an existing one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `InferenceCluster`.
    Create {
        /// Region, if not the workspace's.
        location: Option<String>,
        /// Node count.
        agent_count: i32,
        /// Node VM size.
        vm_size: String,
        /// Custom network.
        network: Option<NetworkSpec>,
    },
    /// `ClusterAttachment`, with the AKS cluster's ARM id.
    Attach {
        /// ARM id of the managed cluster.
        aks_id: String,
    },
}

/// What the user asked for, flattened from either kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Kind name for events and claims.
    pub kind: &'static str,
    /// Namespace of the CR.
    pub namespace: String,
    /// Name of the CR.
    pub name: String,
    /// Workspace.
    pub workspace: WorkspaceRef,
    /// Compute name.
    pub compute_name: String,
    /// Create or attach.
    pub flavor: Flavor,
    /// Cluster purpose.
    pub purpose: ClusterPurpose,
    /// Description.
    pub description: Option<String>,
    /// Load balancer.
    pub load_balancer: LoadBalancerSpec,
    /// TLS.
    pub tls: TlsSpec,
    /// Deletion policy.
    pub deletion_policy: DeletionPolicy,
    /// Whether reattaches wait for the annotation.
    pub manual_reattach: bool,
    /// Value of `amlops.dev/reattach`.
    pub reattach_token: Option<String>,
    /// Value of `amlops.dev/renew-certificate`.
    pub renew_token: Option<String>,
    /// `amlops.dev/adopt: "true"`.
    pub adopt: bool,
    /// Failed-compute retries allowed.
    pub max_retries: u32,
    /// The CR is being deleted.
    pub deleting: bool,
    /// metadata.generation.
    pub generation: Option<i64>,
    /// metadata.creationTimestamp: who was there first when two resources claim the same
    /// compute or cluster ([`super::checks::takes_precedence`]).
    pub created: Option<jiff::Timestamp>,
}

/// (`amlops.dev/reattach`, `amlops.dev/adopt: "true"`, `amlops.dev/renew-certificate`).
fn annotations(meta: &kube::core::ObjectMeta) -> (Option<String>, bool, Option<String>) {
    let empty = BTreeMap::new();
    let a = meta.annotations.as_ref().unwrap_or(&empty);
    (
        a.get(REATTACH_ANNOTATION).cloned(),
        a.get(ADOPT_ANNOTATION).is_some_and(|v| v == "true"),
        a.get(RENEW_ANNOTATION).cloned(),
    )
}

/// ARM id of a managed cluster in `subscription` (empty when the names cannot form one;
/// admission refuses such names).
pub fn aks_id(subscription: &str, resource_group: &str, name: &str) -> String {
    ResourceId::managed_cluster(subscription, resource_group, name)
        .map(|id| id.to_string())
        .unwrap_or_default()
}

impl Desired {
    /// View of an `InferenceCluster`.
    pub fn from_inference_cluster(o: &InferenceCluster) -> Self {
        let (reattach_token, adopt, renew_token) = annotations(&o.metadata);
        let s = &o.spec;
        Self {
            kind: "InferenceCluster",
            namespace: o
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: o.metadata.name.clone().unwrap_or_default(),
            workspace: s.workspace.clone(),
            compute_name: o.compute_name(),
            flavor: Flavor::Create {
                location: s.location.clone(),
                agent_count: s.agent_count,
                vm_size: s.vm_size.clone(),
                network: s.network.clone(),
            },
            purpose: s.cluster_purpose,
            description: s.description.clone(),
            load_balancer: s.load_balancer.clone(),
            tls: s.tls.clone(),
            deletion_policy: s.deletion_policy,
            manual_reattach: false,
            reattach_token,
            renew_token,
            adopt,
            max_retries: s.max_retries.max(0) as u32,
            deleting: o.metadata.deletion_timestamp.is_some(),
            generation: o.metadata.generation,
            created: o.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }

    /// View of a `ClusterAttachment`.
    pub fn from_cluster_attachment(o: &ClusterAttachment) -> Self {
        let (reattach_token, adopt, renew_token) = annotations(&o.metadata);
        let s = &o.spec;
        let aks = match (
            &s.aks_cluster.resource_id,
            &s.aks_cluster.resource_group,
            &s.aks_cluster.name,
        ) {
            (Some(id), _, _) => id.clone(),
            (None, Some(rg), Some(name)) => aks_id(&s.workspace.subscription_id, rg, name),
            _ => String::new(), // refused at admission
        };
        Self {
            kind: "ClusterAttachment",
            namespace: o
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: o.metadata.name.clone().unwrap_or_default(),
            workspace: s.workspace.clone(),
            compute_name: o.compute_name(),
            flavor: Flavor::Attach { aks_id: aks },
            purpose: s.cluster_purpose,
            description: s.description.clone(),
            load_balancer: s.load_balancer.clone(),
            tls: s.tls.clone(),
            deletion_policy: s.deletion_policy,
            manual_reattach: s.reattach_policy == ReattachPolicy::Manual,
            reattach_token,
            renew_token,
            adopt,
            max_retries: s.max_retries.max(0) as u32,
            deleting: o.metadata.deletion_timestamp.is_some(),
            generation: o.metadata.generation,
            created: o.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }

    /// Identity of the CR this view was made from.
    pub fn key(&self) -> super::store::ObjKey {
        super::store::ObjKey {
            kind: self.kind.into(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// ARM id of the workspace.
    ///
    /// # Errors
    /// `Config` when the spec's names cannot form an id (admission refuses them).
    pub fn workspace_resource_id(&self) -> Result<ResourceId, AzureError> {
        let w = &self.workspace;
        ResourceId::workspace(&w.subscription_id, &w.resource_group, &w.name)
    }

    /// ARM id of the compute.
    ///
    /// # Errors
    /// `Config` when the spec's names cannot form an id (admission refuses them).
    pub fn compute_resource_id(&self) -> Result<ResourceId, AzureError> {
        let w = &self.workspace;
        ResourceId::compute(
            &w.subscription_id,
            &w.resource_group,
            &w.name,
            &self.compute_name,
        )
    }

    /// [`Self::workspace_resource_id`] as text (empty when invalid).
    pub fn workspace_id(&self) -> String {
        self.workspace_resource_id()
            .map(|id| id.to_string())
            .unwrap_or_default()
    }

    /// [`Self::compute_resource_id`] as text (empty when invalid).
    pub fn compute_id(&self) -> String {
        self.compute_resource_id()
            .map(|id| id.to_string())
            .unwrap_or_default()
    }

    /// Hash of what only a (re)attach can change: purpose and TLS. Stored in
    /// `status.lastAppliedHash` when Azure accepted them, compared on every reconcile.
    pub fn attach_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.purpose.as_str());
        h.update([0]);
        h.update(self.tls.mode.as_str());
        for part in [&self.tls.leaf_domain_label, &self.tls.cname] {
            h.update([0]);
            h.update(part.as_deref().unwrap_or(""));
        }
        h.update([0]);
        h.update(
            self.tls
                .secret_ref
                .as_ref()
                .map(|s| s.name.as_str())
                .unwrap_or(""),
        );
        h.update([u8::from(self.tls.overwrite_existing_domain)]);
        hex::encode(&h.finalize()[..12])
    }

    /// Whether this is a create (InferenceCluster).
    pub fn is_create(&self) -> bool {
        matches!(self.flavor, Flavor::Create { .. })
    }
}
