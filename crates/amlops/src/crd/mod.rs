//! The amlops API (group `amlops.dev`, `v1alpha1`): the legacy AKS-compute kinds
//! `InferenceCluster` and `ClusterAttachment`, and the Kubernetes compute path's
//! `AzureMLExtension` and `KubernetesCompute` (the path Microsoft now recommends).
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
    ClusterPurpose, ComputeName, CredentialsRef, DeletionPolicy, LoadBalancerSpec,
    LoadBalancerType, SecretRef, TlsMode, TlsSpec, WorkspaceRef,
};
pub use inference_cluster::{InferenceCluster, InferenceClusterSpec, NetworkSpec};
pub use kubernetes_compute::{
    ComputeClusterRef, ComputeIdentity, ComputeIdentityType, ExtensionRef, KubernetesCompute,
    KubernetesComputeSpec, KubernetesComputeStatus,
};
pub use status::{
    ClusterStatus, OperationStatus, Phase, ProvisioningError, TlsStatus, UNOBSERVED_GENERATION,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

/// API group of every kind.
pub const GROUP: &str = "amlops.dev";
/// Finalizer kept on a resource until Azure confirms its cleanup.
pub const FINALIZER: &str = "amlops.dev/cleanup";
/// Annotation: adopt an existing compute that matches the spec instead of refusing it.
pub const ADOPT_ANNOTATION: &str = "amlops.dev/adopt";
/// Annotation: change its value to request a detach + reattach.
pub const REATTACH_ANNOTATION: &str = "amlops.dev/reattach";
/// Annotation: change its value to have Azure ML renew a Microsoft-issued (`tls.mode: Auto`)
/// certificate in place, as the SDK's `AksCompute.update` with `renew=True` does.
pub const RENEW_ANNOTATION: &str = "amlops.dev/renew-certificate";

/// Every CRD, in a stable order (InferenceCluster, ClusterAttachment, AzureMLExtension,
/// KubernetesCompute), with only the schema formats the API server recognises (see
/// [`strip_unrecognized_formats`]).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        InferenceCluster::crd(),
        ClusterAttachment::crd(),
        AzureMLExtension::crd(),
        KubernetesCompute::crd(),
    ];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                strip_unrecognized_formats(schema);
            }
        }
    }
    crds
}

/// String formats a Kubernetes API server validates (`supportedVersionedFormats` in
/// apiextensions-apiserver `pkg/apiserver/validation/formats.go`; `-` is ignored, so
/// `date-time` is `datetime`).
pub const RECOGNIZED_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
];

/// Removes every `format` the API server does not recognise. schemars writes the Rust type
/// (`uint32`, `int32`, `double`, …) as the format of numbers; the API server ignores such
/// formats for validation and warns `unrecognized format "uint32"` on every apply of the
/// CRD. Bounds (`minimum`) stay and keep validating.
pub fn strip_unrecognized_formats(schema: &mut JSONSchemaProps) {
    if schema
        .format
        .as_deref()
        .is_some_and(|f| !RECOGNIZED_FORMATS.contains(&f.replace('-', "").as_str()))
    {
        schema.format = None;
    }
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(match schema.items.as_mut() {
            Some(JSONSchemaPropsOrArray::Schema(s)) => vec![s.as_mut()],
            Some(JSONSchemaPropsOrArray::Schemas(list)) => list.iter_mut().collect(),
            None => Vec::new(),
        })
        .chain(match schema.additional_properties.as_mut() {
            Some(JSONSchemaPropsOrBool::Schema(s)) => Some(s.as_mut()),
            _ => None,
        })
        .chain(
            [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of]
                .into_iter()
                .flatten()
                .flatten(),
        );
    for child in children {
        strip_unrecognized_formats(child);
    }
}

/// The CRDs as YAML documents keyed by their file name under `crds/`.
///
/// # Errors
/// serde_saphyr's error when a CRD cannot be written as YAML; the generated CRDs can
/// (`tests/crds.rs`). No caller branches on it.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_saphyr::SerializeError> {
    all_crds()
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
            serde_saphyr::to_string(&crd).map(|yaml| (file, yaml))
        })
        .collect()
}
