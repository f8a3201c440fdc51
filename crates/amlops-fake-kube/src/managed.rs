//! `metadata.managedFields`, which the API server returns on every object: one entry per
//! (field manager, operation, subresource) that wrote it, with the fields it owns as
//! `FieldsV1` (<https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>).
//!
//! Clients pay for them on every read and watch event, so the fake returns them too.
//! Approximated: an entry owns every field of the part of the object its write covers (the
//! main resource: spec-like fields, labels, annotations, finalizers, owner references; the
//! status subresource: `status`), where the API server tracks each field's last writer;
//! lists are atomic; timestamps have second precision. The fake's apply conflicts do not read
//! them (see [`crate::apply`]).

use serde_json::{Map, Value, json};

use super::store::{Sub, now};

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

/// The fields of `obj` a write of `sub` covers.
fn written(obj: &Value, sub: Sub) -> Value {
    let mut fields = Map::new();
    let Some(o) = obj.as_object() else {
        return Value::Object(fields);
    };
    for (k, v) in o {
        match (k.as_str(), sub) {
            ("status", Sub::Status) => {
                fields.insert("f:status".into(), fields_v1(v));
            }
            (_, Sub::Status) | ("apiVersion" | "kind" | "status", Sub::Main) => {}
            ("metadata", Sub::Main) => {
                let mut m = Map::new();
                for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(x) = v.get(f) {
                        m.insert(format!("f:{f}"), fields_v1(x));
                    }
                }
                if !m.is_empty() {
                    fields.insert("f:metadata".into(), Value::Object(m));
                }
            }
            _ => {
                fields.insert(format!("f:{k}"), fields_v1(v));
            }
        }
    }
    Value::Object(fields)
}

/// Records `writer`'s write of `sub` in `obj`'s `managedFields`: its entry for (manager,
/// operation, subresource) is replaced, the others (from `old`, the object before the
/// write) are kept.
pub(crate) fn record(obj: &mut Value, old: Option<&Value>, writer: &Writer, sub: Sub) {
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
        "fieldsV1": written(obj, sub),
    });
    if let Some(s) = subresource {
        entry["subresource"] = json!(s);
    }
    entries.push(entry);
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("managedFields".into(), Value::Array(entries));
    }
}

/// `obj` without its `managedFields`, to tell whether a write changed anything else.
pub(crate) fn without(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_per_manager_operation_and_subresource() {
        let mut obj = json!({"apiVersion": "amlops.dev/v1alpha1", "kind": "InferenceCluster",
            "metadata": {"name": "a", "labels": {"team": "ml"}, "uid": "u"},
            "spec": {"computeName": "c", "agentCount": 3}, "status": {"phase": "Ready"}});
        record(&mut obj, None, &Writer::default(), Sub::Main);
        let applied = Writer {
            manager: "amlops".into(),
            operation: "Apply",
        };
        let before = obj.clone();
        record(&mut obj, Some(&before), &applied, Sub::Status);
        let before = obj.clone();
        record(&mut obj, Some(&before), &applied, Sub::Status);
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
        assert_eq!(
            without(&obj)["metadata"],
            json!({"name": "a", "labels": {"team": "ml"}, "uid": "u"})
        );
    }
}
