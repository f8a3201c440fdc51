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

    /// Every admission check (schema, CEL, arithmetic) on the object: the typed manifest,
    /// or what is wrong with it. The controller keeps the verdict per spec version
    /// (`ApiStore::validated`).
    pub fn check(self, obj: &DynamicObject) -> Result<validate::Manifest, Vec<Finding>> {
        validate::check_value(&self.to_value(obj), None)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example(kind: Kind) -> Value {
        let file = match kind {
            Kind::InferenceCluster => crate::demo::EXAMPLES[0],
            Kind::ClusterAttachment => crate::demo::EXAMPLES[3],
        };
        crate::validate::parse_documents(file.0, file.1)
            .remove(0)
            .value
            .unwrap()
    }

    /// What the API server sends: server-set metadata, a status, a deletion mark.
    fn as_served(mut v: Value) -> DynamicObject {
        let m = v["metadata"].as_object_mut().unwrap();
        m.insert("uid".into(), json!("0b7f6c1e-1111-2222-3333-444455556666"));
        m.insert("resourceVersion".into(), json!("42"));
        m.insert("generation".into(), json!(3));
        m.insert("creationTimestamp".into(), json!("2026-11-23T10:00:00Z"));
        m.insert("deletionTimestamp".into(), json!("2026-11-23T11:00:00Z"));
        m.insert("finalizers".into(), json!(["amlops.dev/cleanup"]));
        m.insert(
            "managedFields".into(),
            json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "amlops.dev/v1alpha1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]),
        );
        v["status"] = json!({"phase": "Ready", "observedGeneration": 2, "computeId": "/x"});
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn objects_as_served_validate_and_keep_generation_and_deletion() {
        for kind in Kind::ALL {
            let obj = as_served(example(kind));
            let d = kind
                .check(&obj)
                .map(|m| m.desired())
                .unwrap_or_else(|f| panic!("{kind:?}: {f:?}"));
            assert_eq!(d.generation, Some(3));
            assert!(d.deleting);
            assert_eq!(kind.desired(&obj).unwrap(), d, "{kind:?}");
        }
    }

    #[test]
    fn an_unknown_field_is_a_finding_not_a_panic() {
        let mut v = example(Kind::InferenceCluster);
        v["spec"]["credentialsRef"] = json!({"name": "azure", "namespace": "other"});
        v["spec"]["agentCount"] = json!("three");
        let obj: DynamicObject = serde_json::from_value(v).unwrap();
        let findings = Kind::InferenceCluster.check(&obj).unwrap_err();
        assert!(!findings.is_empty());
    }

    #[test]
    fn secret_names_cover_tls_and_credentials() {
        let mut v = example(Kind::ClusterAttachment);
        v["spec"]["credentialsRef"] = json!({"name": "team-azure"});
        let obj: DynamicObject = serde_json::from_value(v).unwrap();
        assert_eq!(
            Kind::ClusterAttachment.secret_names(&obj),
            vec!["scoring-tls".to_string(), "team-azure".to_string()]
        );
    }
}
