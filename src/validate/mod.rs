//! Offline validation of manifests (`amlops validate`): the same rules the API server applies
//! at admission — the CRD's structural schema and its CEL rules, evaluated here with
//! `kube-cel` so the messages are identical — plus the arithmetic checks CEL cannot do.

mod load;
mod report;
mod schema;
pub mod semantic;

pub use load::{Document, LoadError, load_paths, parse_documents};
pub use report::{ValidateArgs, run_cli};

use std::sync::OnceLock;

use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use kube::{CustomResourceExt, Resource};
use serde_json::Value;

use crate::crd::{ClusterAttachment, InferenceCluster};

/// One problem in a manifest, with the field path it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Dotted field path (`spec.tls.mode`); empty for the whole object.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Finding {
    /// A finding at `path`.
    pub fn new(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A manifest that passed every static check, typed.
#[derive(Clone, Debug)]
pub enum Manifest {
    /// An `InferenceCluster`.
    InferenceCluster(Box<InferenceCluster>),
    /// A `ClusterAttachment`.
    ClusterAttachment(Box<ClusterAttachment>),
}

impl Manifest {
    /// The same manifest with `meta` as its metadata: the checks read the spec (and the
    /// immutable name) only, so a verdict outlives changes of annotations or finalizers.
    pub fn with_metadata(mut self, meta: kube::api::ObjectMeta) -> Self {
        match &mut self {
            Self::InferenceCluster(o) => o.metadata = meta,
            Self::ClusterAttachment(o) => o.metadata = meta,
        }
        self
    }

    /// The engine's view of this manifest.
    pub fn desired(&self) -> crate::engine::Desired {
        match self {
            Self::InferenceCluster(o) => crate::engine::Desired::from_inference_cluster(o),
            Self::ClusterAttachment(o) => crate::engine::Desired::from_cluster_attachment(o),
        }
    }

    /// `Kind namespace/name` for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::InferenceCluster(o) => describe("InferenceCluster", o.meta()),
            Self::ClusterAttachment(o) => describe("ClusterAttachment", o.meta()),
        }
    }
}

fn describe(kind: &str, meta: &kube::core::ObjectMeta) -> String {
    format!(
        "{kind} {}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("<unnamed>")
    )
}

/// Kind of a document's object, for reports, even when it is invalid.
pub fn describe_value(value: &Value) -> String {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("<no kind>");
    let meta = value.get("metadata");
    let field = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    format!(
        "{kind} {}/{}",
        field("namespace").unwrap_or_else(|| "default".into()),
        field("name").unwrap_or_else(|| "<unnamed>".into())
    )
}

/// The CRD schema of one kind and its CEL rules, compiled once: generating the schema and
/// compiling the rules cost milliseconds, and the controller validates on every reconcile.
struct KindRules {
    schema: Value,
    cel: CompiledSchema,
}

impl KindRules {
    fn of<K: CustomResourceExt>() -> Option<Self> {
        let crd = K::crd();
        let schema = crd
            .spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| serde_json::to_value(s).ok())?;
        let cel = compile_schema(&schema);
        Some(Self { schema, cel })
    }

    fn inference_cluster() -> Option<&'static Self> {
        static RULES: OnceLock<Option<KindRules>> = OnceLock::new();
        RULES.get_or_init(Self::of::<InferenceCluster>).as_ref()
    }

    fn cluster_attachment() -> Option<&'static Self> {
        static RULES: OnceLock<Option<KindRules>> = OnceLock::new();
        RULES.get_or_init(Self::of::<ClusterAttachment>).as_ref()
    }
}

/// Run every static check on one object (`old` for update rules, e.g. immutability).
pub fn check_value(value: &Value, old: Option<&Value>) -> Result<Manifest, Vec<Finding>> {
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let kind = value.get("kind").and_then(Value::as_str);
    let rules = match (api_version, kind) {
        (Some("amlops.dev/v1alpha1"), Some("InferenceCluster")) => KindRules::inference_cluster(),
        (Some("amlops.dev/v1alpha1"), Some("ClusterAttachment")) => KindRules::cluster_attachment(),
        (Some(av), Some(k)) if av.starts_with("amlops.dev/") => {
            return Err(vec![Finding::new(
                "",
                format!(
                    "unknown amlops kind {k} in {av}: expected apiVersion amlops.dev/v1alpha1 with kind InferenceCluster or ClusterAttachment"
                ),
            )]);
        }
        (Some(av), Some(k)) => {
            return Err(vec![Finding::new(
                "",
                format!(
                    "not an amlops object ({av}, kind {k}): amlops validate checks InferenceCluster and ClusterAttachment"
                ),
            )]);
        }
        _ => return Err(vec![Finding::new("", "apiVersion and kind must be set")]),
    };
    let Some(rules) = rules else {
        return Err(vec![Finding::new("", "internal error: CRD has no schema")]);
    };
    let mut findings = Vec::new();
    let name = value.pointer("/metadata/name").and_then(Value::as_str);
    if name.is_none_or(str::is_empty) {
        findings.push(Finding::new(
            "metadata.name",
            "required value: every object needs a name",
        ));
    }
    let schema = &rules.schema;
    // Only the fields a user writes are checked (status belongs to the operator).
    let mut user_part = value.clone();
    if let Some(obj) = user_part.as_object_mut() {
        obj.remove("status");
    }
    schema::check(schema, &user_part, "", &mut findings);
    if !findings.is_empty() {
        return Err(findings); // CEL rules assume a well-typed object, as on the API server
    }
    if let Err(errors) = Validator::new().validate_compiled(&rules.cel, &user_part, old) {
        findings.extend(
            errors
                .iter()
                // A rule's fieldPath is written `.spec.x`; the API server reports `spec.x`.
                .map(|e| Finding::new(e.field_path.trim_start_matches('.'), e.message.clone())),
        );
    }
    if !findings.is_empty() {
        return Err(findings);
    }
    let defaulted = kube::core::cel::apply_defaults(schema, &user_part);
    let manifest = match kind {
        Some("InferenceCluster") => {
            serde_json::from_value::<InferenceCluster>(defaulted).map(|o| {
                semantic::check_inference_cluster(&o.spec, &mut findings);
                Manifest::InferenceCluster(Box::new(o))
            })
        }
        _ => serde_json::from_value::<ClusterAttachment>(defaulted).map(|o| {
            semantic::check_cluster_attachment(&o.spec, &mut findings);
            Manifest::ClusterAttachment(Box::new(o))
        }),
    }
    .map_err(|e| vec![Finding::new("", format!("cannot read object: {e}"))])?;
    if findings.is_empty() {
        Ok(manifest)
    } else {
        Err(findings)
    }
}
