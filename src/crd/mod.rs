//! The amlops API: `InferenceCluster` and `ClusterAttachment` (group `amlops.dev`, `v1alpha1`).
//!
//! Field doc comments become the `kubectl explain` text. Admission-time rules live next to the
//! fields they check, as OpenAPI bounds and CEL `x-kubernetes-validations` whose messages say
//! what is wrong and how to fix it. Only CEL available on Kubernetes 1.25+ is used (standard
//! functions, `matches`, transition rules), never `messageExpression`, `reason` or
//! `optionalOldSelf`, so the CRDs load on every supported cluster.

mod cluster_attachment;
mod common;
mod inference_cluster;
mod status;

pub use cluster_attachment::{
    AksClusterRef, ClusterAttachment, ClusterAttachmentSpec, ReattachPolicy,
};
pub use common::{
    ClusterPurpose, ComputeName, DeletionPolicy, LoadBalancerSpec, LoadBalancerType, SecretRef,
    TlsMode, TlsSpec, WorkspaceRef,
};
pub use inference_cluster::{InferenceCluster, InferenceClusterSpec, NetworkSpec};
pub use status::{
    ClusterStatus, OperationStatus, Phase, ProvisioningError, TlsStatus, UNOBSERVED_GENERATION,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of both kinds.
pub const GROUP: &str = "amlops.dev";
/// Finalizer kept on a resource until Azure confirms its cleanup.
pub const FINALIZER: &str = "amlops.dev/cleanup";
/// Annotation: adopt an existing compute that matches the spec instead of refusing it.
pub const ADOPT_ANNOTATION: &str = "amlops.dev/adopt";
/// Annotation: change its value to request a detach + reattach.
pub const REATTACH_ANNOTATION: &str = "amlops.dev/reattach";

/// Both CRDs, in a stable order (InferenceCluster, ClusterAttachment).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![InferenceCluster::crd(), ClusterAttachment::crd()]
}

/// The CRDs as YAML documents keyed by their file name under `crds/`.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    all_crds()
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
            serde_yaml::to_string(&crd).map(|yaml| (file, yaml))
        })
        .collect()
}
