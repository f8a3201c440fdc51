//! `metadata.managedFields`, which the API server returns on every object: one entry per
//! (field manager, operation, subresource) that wrote it, with the fields it owns as
//! `FieldsV1` (<https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>).
//!
//! Clients pay for them on every read and watch event, so the fake returns them too.
//! Approximated: an entry owns every field of the part of the object its write covers —
//! what a server-side apply of the whole object would configure ([`applied_config`]: the
//! main resource's spec-like fields, labels, annotations, finalizers and owner references;
//! the status subresource's `status`) — where the API server tracks each field's last writer;
//! lists are atomic; timestamps have second precision. The fake's apply conflicts do not read
//! them (see [`crate::apply`]).

use serde_json::{Map, Value, json};

use super::apply::applied_config;
use super::store::{Sub, TypeInfo, now};

/// Who is writing, set per request: the `fieldManager` parameter (else the client's
/// user agent up to its first `/`, as the API server does), and `Apply` for a server-side
/// apply, `Update` for any other write.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    pub manager: String,
    pub operation: &'static str,
}

impl Default for Writer {
    /// Writes made through the fake's own helpers ([`crate::FakeApiServer::put`]): a user
    /// with kubectl.
    fn default() -> Self {
        Self {
            manager: "kubectl".into(),
            operation: "Update",
        }
    }
}

/// `v`'s fields in `FieldsV1` form: `{"f:name": {…}}` per object key, `{}` for a leaf.
pub(crate) fn fields_v1(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, c)| (format!("f:{k}"), fields_v1(c)))
                .collect(),
        ),
        _ => json!({}),
    }
}

/// Records `writer`'s write of `sub` in `obj`'s `managedFields`: its entry for (manager,
/// operation, subresource) is replaced, the others (from `old`, the object before the
/// write) are kept.
pub(crate) fn record(
    ty: &TypeInfo,
    obj: &mut Value,
    old: Option<&Value>,
    writer: &Writer,
    sub: Sub,
) {
    let subresource = match sub {
        Sub::Main => None,
        Sub::Status => Some("status"),
    };
    let mut entries: Vec<Value> = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    entries.retain(|e| {
        !(e["manager"] == writer.manager.as_str()
            && e["operation"] == writer.operation
            && e.get("subresource").and_then(Value::as_str) == subresource)
    });
    let mut entry = json!({
        "manager": writer.manager,
        "operation": writer.operation,
        "apiVersion": obj.get("apiVersion").cloned().unwrap_or(Value::Null),
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(&applied_config(ty, obj, sub)),
    });
    if let Some(s) = subresource {
        entry["subresource"] = json!(s);
    }
    entries.push(entry);
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("managedFields".into(), Value::Array(entries));
    }
}

/// Whether maps `a` and `b` hold the same entries but for the key `skip`.
fn same_but(a: &Map<String, Value>, b: &Map<String, Value>, skip: &str) -> bool {
    let rest = |m: &Map<String, Value>| m.len() - usize::from(m.contains_key(skip));
    rest(a) == rest(b)
        && a.iter()
            .filter(|(k, _)| k.as_str() != skip)
            .all(|(k, v)| b.get(k) == Some(v))
}

/// Whether `a` and `b` are the same object but for their `managedFields`: whether a write
/// changed anything. Compared in place: every write asks, and copying both objects to
/// compare them would cost more than the comparison.
pub(crate) fn same_but_managed(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    same_but(a, b, "metadata")
        && match (
            a.get("metadata").and_then(Value::as_object),
            b.get("metadata").and_then(Value::as_object),
        ) {
            (Some(ma), Some(mb)) => same_but(ma, mb, "managedFields"),
            _ => a.get("metadata") == b.get("metadata"),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_per_manager_operation_and_subresource() {
        let mut obj = json!({"apiVersion": "amlops.dev/v1alpha1", "kind": "InferenceCluster",
            "metadata": {"name": "a", "labels": {"team": "ml"}, "uid": "u"},
            "spec": {"computeName": "c", "agentCount": 3}, "status": {"phase": "Ready"}});
        let ty = TypeInfo {
            group: "amlops.dev".into(),
            versions: vec!["v1alpha1".into()],
            kind: "InferenceCluster".into(),
            plural: "inferenceclusters".into(),
            namespaced: true,
            status_subresource: true,
            has_generation: true,
            custom: true,
            unconditional_update: false,
            served: true,
            schema: None,
        };
        record(&ty, &mut obj, None, &Writer::default(), Sub::Main);
        let applied = Writer {
            manager: "amlops".into(),
            operation: "Apply",
        };
        let before = obj.clone();
        record(&ty, &mut obj, Some(&before), &applied, Sub::Status);
        let before = obj.clone();
        record(&ty, &mut obj, Some(&before), &applied, Sub::Status);
        let entries = obj["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 2, "{entries:#?}");
        assert_eq!(entries[0]["manager"], "kubectl");
        assert_eq!(entries[0]["operation"], "Update");
        assert!(entries[0].get("subresource").is_none());
        assert_eq!(
            entries[0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:team": {}}},
                   "f:spec": {"f:computeName": {}, "f:agentCount": {}}})
        );
        assert_eq!(entries[1]["manager"], "amlops");
        assert_eq!(entries[1]["subresource"], "status");
        assert_eq!(entries[1]["fieldsV1"], json!({"f:status": {"f:phase": {}}}));
        assert_eq!(entries[1]["fieldsType"], "FieldsV1");
        assert_eq!(entries[1]["apiVersion"], "amlops.dev/v1alpha1");
        // Only the entries differ from the object before the write: not a change.
        let mut bare = obj.clone();
        bare["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        assert!(same_but_managed(&obj, &bare));
        bare["metadata"]["labels"]["team"] = json!("ops");
        assert!(!same_but_managed(&obj, &bare));
        bare["metadata"]["labels"]["team"] = json!("ml");
        bare["spec"]["agentCount"] = json!(4);
        assert!(!same_but_managed(&obj, &bare));
    }
}
