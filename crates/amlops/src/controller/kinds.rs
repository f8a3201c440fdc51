//! The names of the two cluster kinds (`InferenceCluster`, `ClusterAttachment`): their
//! CRDs, which the operator waits for before it reports ready, and their API resources for
//! tools that read them untyped (the benchmark, tests). The controller itself watches them
//! typed ([`super::cluster`]).

use kube::api::{ApiResource, GroupVersionKind};

use crate::crd::GROUP;

/// `InferenceCluster` or `ClusterAttachment`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Azure ML creates the AKS cluster.
    InferenceCluster,
    /// An existing AKS cluster is attached.
    ClusterAttachment,
}

/// API version of every amlops kind.
pub const VERSION: &str = "v1alpha1";

impl Kind {
    /// Both kinds.
    pub const ALL: [Kind; 2] = [Kind::InferenceCluster, Kind::ClusterAttachment];

    /// Kind name.
    pub fn name(self) -> &'static str {
        match self {
            Self::InferenceCluster => "InferenceCluster",
            Self::ClusterAttachment => "ClusterAttachment",
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Resource (plural) name.
    pub fn plural(self) -> &'static str {
        match self {
            Self::InferenceCluster => "inferenceclusters",
            Self::ClusterAttachment => "clusterattachments",
        }
    }

    /// Name of the CRD.
    pub fn crd_name(self) -> String {
        format!("{}.{GROUP}", self.plural())
    }

    /// Dynamic API resource.
    pub fn api_resource(self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(GROUP, VERSION, self.name()),
            self.plural(),
        )
    }
}
