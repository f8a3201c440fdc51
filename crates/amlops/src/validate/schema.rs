//! Structural OpenAPI checks, as the API server applies them before CEL: types, required
//! fields, enums, bounds and unknown fields (kubectl's strict field validation).

use serde_json::Value;

use super::Finding;

/// Check `value` against an OpenAPI v3 structural schema; findings carry the field path.
pub fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<Finding>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) && !path.is_empty() {
            out.push(Finding::new(
                path,
                "must not be null: remove the field or give it a value",
            ));
        }
        return;
    }
    let Some(ty) = schema.get("type").and_then(Value::as_str) else {
        return; // untyped (x-kubernetes-int-or-string and the like): nothing to check
    };
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !ok {
        out.push(Finding::new(
            path,
            format!("must be of type {ty}, got {}", json_type(value)),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        out.push(Finding::new(
            path,
            format!(
                "unsupported value {value}: supported values are {}",
                list.join(", ")
            ),
        ));
    }
    if let (Some(max), Some(s)) = (
        schema.get("maxLength").and_then(Value::as_u64),
        value.as_str(),
    ) && s.chars().count() as u64 > max
    {
        out.push(Finding::new(
            path,
            format!("too long: may not be longer than {max} characters"),
        ));
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(name) {
                        out.push(Finding::new(
                            &join(path, name),
                            "required value: this field must be set",
                        ));
                    }
                }
            }
            for (key, child) in map {
                // The API server always accepts the type and object metadata at the root.
                if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                // A map (`additionalProperties: {schema}`): every value has that schema.
                let map_values = schema.get("additionalProperties").filter(|s| s.is_object());
                match props.and_then(|p| p.get(key)).or(map_values) {
                    Some(sub) => check(sub, child, &join(path, key), out),
                    None if preserve || props.is_none() => {}
                    None => out.push(Finding::new(
                        &join(path, key),
                        format!(
                            "unknown field \"{key}\": check its spelling and `kubectl explain`"
                        ),
                    )),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
