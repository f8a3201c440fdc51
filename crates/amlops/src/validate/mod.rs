//! Offline validation of manifests (`amlops validate`): the same rules the API server applies
//! at admission — the CRD's structural schema and its CEL rules, evaluated here with
//! `kube-cel` so the messages are identical — plus the arithmetic checks CEL cannot do.

mod load;

mod schema;
pub mod semantic;

pub use load::{Document, LoadError, load_paths, parse_documents};

use std::sync::OnceLock;

use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use kube::{CustomResourceExt, Resource};
use serde_json::Value;

use crate::crd::{AzureMLExtension, ClusterAttachment, InferenceCluster, KubernetesCompute};

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
/// compiling the rules cost milliseconds, and one run validates many documents.
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

    /// The compiled rules of an amlops `kind`; `None` for an unknown kind.
    fn for_kind(kind: &str) -> Option<Option<&'static Self>> {
        macro_rules! rules_of {
            ($k:ty) => {{
                static RULES: OnceLock<Option<KindRules>> = OnceLock::new();
                RULES.get_or_init(Self::of::<$k>).as_ref()
            }};
        }
        Some(match kind {
            "InferenceCluster" => rules_of!(InferenceCluster),
            "ClusterAttachment" => rules_of!(ClusterAttachment),
            "AzureMLExtension" => rules_of!(AzureMLExtension),
            "KubernetesCompute" => rules_of!(KubernetesCompute),
            _ => return None,
        })
    }
}

/// Kinds `amlops validate` checks, for messages.
const KINDS: &str = "InferenceCluster, ClusterAttachment, AzureMLExtension or KubernetesCompute";

/// Any amlops object that passed every static check, typed.
#[derive(Clone, Debug)]
pub enum Checked {
    /// A legacy-path kind (`InferenceCluster`, `ClusterAttachment`).
    Legacy(Manifest),
    /// An `AzureMLExtension`.
    AzureMlExtension(Box<AzureMLExtension>),
    /// A `KubernetesCompute`.
    KubernetesCompute(Box<KubernetesCompute>),
}

impl Checked {
    /// `Kind namespace/name` for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Legacy(m) => m.describe(),
            Self::AzureMlExtension(o) => describe("AzureMLExtension", o.meta()),
            Self::KubernetesCompute(o) => describe("KubernetesCompute", o.meta()),
        }
    }
}

/// Run every static check on one legacy-path object (`old` for update rules, e.g.
/// immutability): `amlops validate`, and the demo and the benchmark read their example
/// manifests through it.
///
/// # Errors
/// The findings; a Kubernetes-path kind is refused with a finding pointing to
/// [`check_object`].
pub fn check_value(value: &Value, old: Option<&Value>) -> Result<Manifest, Vec<Finding>> {
    match check_object(value, old)? {
        Checked::Legacy(m) => Ok(m),
        other => Err(vec![Finding::new(
            "",
            format!(
                "{} is a Kubernetes compute path kind: check it with check_object",
                other.describe()
            ),
        )]),
    }
}

/// Run every static check on any amlops object (`old` for update rules, e.g. immutability):
/// the CRD's structural schema, its CEL rules (kube-cel, so the messages are the API
/// server's) and the arithmetic checks CEL cannot do.
///
/// # Errors
/// Every finding, each with its field path.
pub fn check_object(value: &Value, old: Option<&Value>) -> Result<Checked, Vec<Finding>> {
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let kind = value.get("kind").and_then(Value::as_str);
    let rules = match (api_version, kind) {
        (Some("amlops.dev/v1alpha1"), Some(k)) if KindRules::for_kind(k).is_some() => {
            KindRules::for_kind(k).flatten()
        }
        (Some(av), Some(k)) if av.starts_with("amlops.dev/") => {
            return Err(vec![Finding::new(
                "",
                format!(
                    "unknown amlops kind {k} in {av}: expected apiVersion amlops.dev/v1alpha1 with kind {KINDS}"
                ),
            )]);
        }
        (Some(av), Some(k)) => {
            return Err(vec![Finding::new(
                "",
                format!("not an amlops object ({av}, kind {k}): amlops validate checks {KINDS}"),
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
    let unreadable =
        |e: serde_json::Error| vec![Finding::new("", format!("cannot read object: {e}"))];
    let checked = match kind {
        Some("InferenceCluster") => {
            let o: InferenceCluster = serde_json::from_value(defaulted).map_err(unreadable)?;
            semantic::check_inference_cluster(&o.spec, &mut findings);
            Checked::Legacy(Manifest::InferenceCluster(Box::new(o)))
        }
        Some("ClusterAttachment") => {
            let o: ClusterAttachment = serde_json::from_value(defaulted).map_err(unreadable)?;
            semantic::check_cluster_attachment(&o.spec, &mut findings);
            Checked::Legacy(Manifest::ClusterAttachment(Box::new(o)))
        }
        Some("AzureMLExtension") => {
            let o: AzureMLExtension = serde_json::from_value(defaulted).map_err(unreadable)?;
            Checked::AzureMlExtension(Box::new(o))
        }
        _ => {
            let o: KubernetesCompute = serde_json::from_value(defaulted).map_err(unreadable)?;
            Checked::KubernetesCompute(Box::new(o))
        }
    };
    if findings.is_empty() {
        Ok(checked)
    } else {
        Err(findings)
    }
}
