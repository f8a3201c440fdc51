//! Structural defaulting of custom resources from their CRD's `openAPIV3Schema`.
//!
//! The API server fills in every `default` of a CRD's structural schema when it decodes a
//! request body and again whenever it reads an object from storage, so a client never sees
//! an object without them, even one stored before the default existed. A missing field (or a
//! `null` one whose schema is not `nullable`) gets a deep copy of its default, then defaulting
//! continues inside it. This is the algorithm of
//! `k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting/algorithm.go`
//! (`Default`), on `serde_json` values: properties, `items` and `additionalProperties`.
//! (Hand-rolled: kube's `cel` feature validates but has no defaulting, and no crate does it.)

use serde_json::Value;

/// Fills in the defaults of `schema` (one node of a structural schema) in `obj`, recursively.
pub(crate) fn apply(schema: &Value, obj: &mut Value) {
    match obj {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(props) = props {
                for (name, prop) in props {
                    let Some(default) = prop.get("default") else {
                        continue;
                    };
                    let missing = map.get(name).is_none_or(|v| non_nullable_null(v, prop));
                    if missing {
                        map.insert(name.clone(), default.clone());
                    }
                }
            }
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (name, value) in map.iter_mut() {
                if let Some(prop) = props.and_then(|p| p.get(name)) {
                    apply(prop, value);
                } else if let Some(additional) = additional {
                    if let Some(default) = additional.get("default")
                        && non_nullable_null(value, additional)
                    {
                        *value = default.clone();
                    }
                    apply(additional, value);
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items") else {
                return;
            };
            for item in items {
                if let Some(default) = item_schema.get("default")
                    && non_nullable_null(item, item_schema)
                {
                    *item = default.clone();
                }
                apply(item_schema, item);
            }
        }
        _ => {}
    }
}

/// `isNonNullableNull`: a `null` where the schema does not allow one.
fn non_nullable_null(value: &Value, schema: &Value) -> bool {
    value.is_null() && schema.get("nullable").and_then(Value::as_bool) != Some(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::apply;

    #[test]
    fn defaults_fill_missing_and_non_nullable_null_fields_and_recurse() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer", "default": 3},
                "mode": {"type": "string", "nullable": true, "default": "Auto"},
                "ports": {"type": "array", "items": {"type": "object", "properties": {
                    "protocol": {"type": "string", "default": "TCP"}}}},
                "labels": {"type": "object", "additionalProperties": {
                    "type": "string", "default": "x"}},
            }},
            "status": {"type": "object", "default": {"observedGeneration": -1},
                "properties": {
                    "observedGeneration": {"type": "integer"},
                    "phase": {"type": "string", "default": "Pending"}}},
        }});
        let cases = [
            // A missing object with a default is created, then defaulted inside.
            (
                json!({"spec": {}}),
                json!({"spec": {"replicas": 3, "mode": "Auto"},
                       "status": {"observedGeneration": -1, "phase": "Pending"}}),
            ),
            // Set values win; a null is kept where nullable, replaced where not.
            (
                json!({"spec": {"replicas": null, "mode": null},
                       "status": {"observedGeneration": 4, "phase": "Ready"}}),
                json!({"spec": {"replicas": 3, "mode": null},
                       "status": {"observedGeneration": 4, "phase": "Ready"}}),
            ),
            // Items and additionalProperties.
            (
                json!({"spec": {"replicas": 1, "mode": "Off", "ports": [{}, {"protocol": "UDP"}],
                                "labels": {"a": null, "b": "c"}}}),
                json!({"spec": {"replicas": 1, "mode": "Off",
                                "ports": [{"protocol": "TCP"}, {"protocol": "UDP"}],
                                "labels": {"a": "x", "b": "c"}},
                       "status": {"observedGeneration": -1, "phase": "Pending"}}),
            ),
        ];
        for (mut obj, want) in cases {
            apply(&schema, &mut obj);
            assert_eq!(obj, want);
        }
    }
}
