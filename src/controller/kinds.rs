//! The two kinds the controller serves, handled as `DynamicObject`s so that one malformed
//! object (say, written before a CRD change) cannot break the watch of all the others: it
//! is parsed per reconcile and reported on its own status instead.

use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::ObjectRef;
use serde_json::Value;

use crate::crd::{ClusterAttachment, GROUP, InferenceCluster};
use crate::engine::Desired;
use crate::validate::{self, Finding};

/// `InferenceCluster` or `ClusterAttachment`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Azure ML creates the AKS cluster.
    InferenceCluster,
    /// An existing AKS cluster is attached.
    ClusterAttachment,
}

/// API version of both kinds.
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

    /// `amlops.dev/v1alpha1`.
    pub fn api_version(self) -> String {
        format!("{GROUP}/{VERSION}")
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

    /// Reference to an object of this kind.
    pub fn object_ref(self, namespace: &str, name: &str) -> ObjectRef<DynamicObject> {
        ObjectRef::new_with(name, self.api_resource()).within(namespace)
    }

    /// The object as JSON with its apiVersion and kind (list items may lack them).
    pub fn to_value(self, obj: &DynamicObject) -> Value {
        let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
        if let Some(map) = v.as_object_mut() {
            map.insert("apiVersion".into(), Value::String(self.api_version()));
            map.insert("kind".into(), Value::String(self.name().into()));
        }
        v
    }

    /// The engine's view after every admission check (schema, CEL, arithmetic), or what is
    /// wrong with the object.
    pub fn validated(self, obj: &DynamicObject) -> Result<Desired, Vec<Finding>> {
        validate::check_value(&self.to_value(obj), None).map(|m| m.desired())
    }

    /// The engine's view, typed but without the admission checks (for sibling claims).
    pub fn desired(self, obj: &DynamicObject) -> Result<Desired, serde_json::Error> {
        let v = self.to_value(obj);
        Ok(match self {
            Self::InferenceCluster => {
                Desired::from_inference_cluster(&serde_json::from_value::<InferenceCluster>(v)?)
            }
            Self::ClusterAttachment => {
                Desired::from_cluster_attachment(&serde_json::from_value::<ClusterAttachment>(v)?)
            }
        })
    }

    /// Names of the Secrets the object refers to (TLS and credentials), in its namespace.
    pub fn secret_names(self, obj: &DynamicObject) -> Vec<String> {
        ["/spec/tls/secretRef/name", "/spec/credentialsRef/name"]
            .iter()
            .filter_map(|p| obj.data.pointer(p).and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }
}

/// `namespace/name` of an object, for logs.
pub fn object_name(obj: &DynamicObject) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}
