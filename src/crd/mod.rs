//! The amlops API (group `amlops.dev`, `v1alpha1`): the legacy AKS-compute kinds
//! `InferenceCluster` and `ClusterAttachment`, and the Kubernetes compute path's
//! `AzureMLExtension` and `KubernetesCompute` (DESIGN §8).
//!
//! Field doc comments become the `kubectl explain` text. Admission-time rules live next to the
//! fields they check, as OpenAPI bounds and CEL `x-kubernetes-validations` whose messages say
//! what is wrong and how to fix it. Only CEL available on Kubernetes 1.25+ is used (standard
//! functions, `matches`, transition rules), never `messageExpression`, `reason` or
//! `optionalOldSelf`, so the CRDs load on every supported cluster.

mod azureml_extension;
mod cluster_attachment;
mod common;
mod inference_cluster;
mod kubernetes_compute;
mod status;

pub use azureml_extension::{
    AddOnsSpec, AzureMLExtension, AzureMlExtensionSpec, AzureMlExtensionStatus,
    ExtensionClusterRef, ExtensionDeletionPolicy, ExtensionInferenceSpec, ExtensionPurpose,
    ExtensionTlsMode, ExtensionTlsSpec, ExtensionTlsStatus, InstanceTypeResources,
    InstanceTypeSpec, MigrationSpec, ResourceList, RouterServiceType, TlsDelivery, TrainingSpec,
};
pub use cluster_attachment::{
    AksClusterRef, ClusterAttachment, ClusterAttachmentSpec, ReattachPolicy,
};
pub use common::{
    ClusterPurpose, ComputeName, DeletionPolicy, LoadBalancerSpec, LoadBalancerType, SecretRef,
    TlsMode, TlsSpec, WorkspaceRef,
};
pub use inference_cluster::{InferenceCluster, InferenceClusterSpec, NetworkSpec};
pub use kubernetes_compute::{
    ComputeClusterRef, ComputeIdentity, ComputeIdentityType, ExtensionRef, KubernetesCompute,
    KubernetesComputeSpec, KubernetesComputeStatus,
};
pub use status::{
    ClusterStatus, OperationStatus, Phase, ProvisioningError, TlsStatus, UNOBSERVED_GENERATION,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every kind.
pub const GROUP: &str = "amlops.dev";
/// Finalizer kept on a resource until Azure confirms its cleanup.
pub const FINALIZER: &str = "amlops.dev/cleanup";
/// Annotation: adopt an existing compute that matches the spec instead of refusing it.
pub const ADOPT_ANNOTATION: &str = "amlops.dev/adopt";
/// Annotation: change its value to request a detach + reattach.
pub const REATTACH_ANNOTATION: &str = "amlops.dev/reattach";

/// Every CRD, in a stable order (InferenceCluster, ClusterAttachment, AzureMLExtension,
/// KubernetesCompute).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        InferenceCluster::crd(),
        ClusterAttachment::crd(),
        AzureMLExtension::crd(),
        KubernetesCompute::crd(),
    ]
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
