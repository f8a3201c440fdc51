//! Patch documents: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and the
//! deep merge used to approximate server-side apply.
//!
//! Strategic merge patch is handled as a JSON merge patch: the fake has no Go struct tags,
//! so `patchStrategy: merge` lists (e.g. a Pod's containers) are replaced, not merged, and
//! `$patch`/`$setElementOrder` directives are not understood.

use serde_json::{Map, Value};

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Decodes one RFC 6901 pointer token.
fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Splits a JSON pointer into its parent pointer and last token.
fn split_pointer(path: &str) -> Result<(&str, String), String> {
    if path.is_empty() {
        return Err("the root of the document cannot be the target of this operation".into());
    }
    if !path.starts_with('/') {
        return Err(format!("invalid JSON pointer {path:?}"));
    }
    let idx = path.rfind('/').unwrap_or(0);
    Ok((&path[..idx], unescape(&path[idx + 1..])))
}

/// Index into an array for `add` (`-` or `len` appends) or for other ops (must exist).
fn array_index(token: &str, len: usize, for_add: bool) -> Result<usize, String> {
    if for_add && token == "-" {
        return Ok(len);
    }
    let idx: usize = token
        .parse()
        .map_err(|_| format!("invalid array index {token:?}"))?;
    let max = if for_add { len } else { len.saturating_sub(1) };
    if idx > max || (!for_add && len == 0) {
        return Err(format!("array index {idx} out of bounds"));
    }
    Ok(idx)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    let parent = doc
        .pointer_mut(parent)
        .ok_or_else(|| format!("path {parent:?} does not exist"))?;
    match parent {
        Value::Object(map) => {
            map.insert(last, value);
            Ok(())
        }
        Value::Array(items) => {
            let idx = array_index(&last, items.len(), true)?;
            items.insert(idx, value);
            Ok(())
        }
        _ => Err(format!("cannot add to a scalar at {path:?}")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let parent = doc
        .pointer_mut(parent)
        .ok_or_else(|| format!("path {parent:?} does not exist"))?;
    match parent {
        Value::Object(map) => map
            .remove(&last)
            .ok_or_else(|| format!("path {path:?} does not exist")),
        Value::Array(items) => {
            let idx = array_index(&last, items.len(), false)?;
            Ok(items.remove(idx))
        }
        _ => Err(format!("path {path:?} does not exist")),
    }
}

fn get_str<'a>(op: &'a Value, key: &str) -> Result<&'a str, String> {
    op.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("operation is missing the string field {key:?}"))
}

fn get_value(op: &Value) -> Result<Value, String> {
    op.get("value")
        .cloned()
        .ok_or_else(|| "operation is missing \"value\"".to_string())
}

/// RFC 6902 with all six operations; the document is left unchanged on error
/// (the whole patch is atomic, like the API server).
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), String> {
    let ops = patch
        .as_array()
        .ok_or_else(|| "a JSON patch must be an array of operations".to_string())?;
    let mut work = doc.clone();
    for op in ops {
        let path = get_str(op, "path")?;
        match get_str(op, "op")? {
            "add" => add(&mut work, path, get_value(op)?)?,
            "remove" => {
                remove(&mut work, path)?;
            }
            "replace" => {
                let value = get_value(op)?;
                let slot = work
                    .pointer_mut(path)
                    .ok_or_else(|| format!("path {path:?} does not exist"))?;
                *slot = value;
            }
            "move" => {
                let from = get_str(op, "from")?;
                if path.starts_with(&format!("{from}/")) {
                    return Err(format!("cannot move {from:?} into its own child {path:?}"));
                }
                let value = remove(&mut work, from)?;
                add(&mut work, path, value)?;
            }
            "copy" => {
                let from = get_str(op, "from")?;
                let value = work
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("path {from:?} does not exist"))?;
                add(&mut work, path, value)?;
            }
            "test" => {
                let want = get_value(op)?;
                // As the API server's json-patch library does (and kube-runtime's
                // finalizer helper relies on): a missing path tests equal to null.
                let have = work
                    .pointer(path)
                    .or(Some(&Value::Null).filter(|_| want.is_null()));
                if have != Some(&want) {
                    return Err(format!(
                        "testing value {path:?} failed: have {}, want {want}",
                        have.map_or_else(|| "nothing".to_string(), Value::to_string)
                    ));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    *doc = work;
    Ok(())
}

/// Server-side apply's merge as the fake approximates it: maps merge recursively, every
/// other value (lists included, as if all were `x-kubernetes-list-type: atomic`) replaces.
pub fn deep_merge(target: &mut Value, applied: &Value) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (key, value) in a {
                match t.get_mut(key) {
                    Some(slot) => deep_merge(slot, value),
                    None => {
                        t.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (slot, value) => *slot = value.clone(),
    }
}

/// Leaf paths of an applied configuration with their values: a leaf is any non-map
/// value or an empty map. These stand in for SSA's managed field set.
pub fn leaves(value: &Value) -> Vec<(Vec<String>, Value)> {
    fn walk(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    prefix.push(k.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            other => out.push((prefix.clone(), other.clone())),
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// The value at a path of map keys.
pub fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |cur, key| cur.get(key))
}

/// Removes the value at a path of map keys, then any maps that it leaves empty.
pub fn remove_path(value: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Value::Object(map) = value else {
        return;
    };
    if rest.is_empty() {
        map.remove(first);
        return;
    }
    if let Some(child) = map.get_mut(first) {
        remove_path(child, rest);
        if child.as_object().is_some_and(Map::is_empty) {
            map.remove(first);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut doc,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            doc,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
    }

    #[test]
    fn json_patch_ops() {
        let mut doc = json!({"metadata": {"finalizers": ["a", "b"]}, "x": 1});
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/metadata/finalizers", "value": ["a", "b"]},
                {"op": "remove", "path": "/metadata/finalizers/0"},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "c"},
                {"op": "replace", "path": "/x", "value": 2},
                {"op": "copy", "from": "/x", "path": "/y"},
                {"op": "move", "from": "/y", "path": "/z"},
                {"op": "add", "path": "/metadata/labels~1x", "value": "v"}
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"finalizers": ["b", "c"], "labels/x": "v"}, "x": 2, "z": 2})
        );
        let before = doc.clone();
        let err = json_patch(
            &mut doc,
            &json!([
                {"op": "remove", "path": "/x"},
                {"op": "test", "path": "/z", "value": 3}
            ]),
        )
        .unwrap_err();
        assert!(err.contains("testing value"), "{err}");
        assert_eq!(doc, before, "failed patch must be atomic");
        json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/missing", "value": null}]),
        )
        .unwrap();
        assert!(
            json_patch(
                &mut doc,
                &json!([{"op": "test", "path": "/x", "value": null}])
            )
            .is_err()
        );
        assert!(json_patch(&mut doc, &json!({"op": "add"})).is_err());
        assert!(json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(
            json_patch(
                &mut doc,
                &json!([{"op": "remove", "path": "/metadata/finalizers/9"}])
            )
            .is_err()
        );
        assert!(json_patch(&mut doc, &json!([{"op": "bogus", "path": "/x"}])).is_err());
    }

    #[test]
    fn deep_merge_and_leaves() {
        let mut doc = json!({"spec": {"a": 1, "l": [1]}, "status": {"x": 1}});
        deep_merge(&mut doc, &json!({"spec": {"b": 2, "l": [2]}}));
        assert_eq!(
            doc,
            json!({"spec": {"a": 1, "b": 2, "l": [2]}, "status": {"x": 1}})
        );
        let l = leaves(&json!({"a": {"b": 1, "c": {}}, "d": [1]}));
        assert_eq!(l.len(), 3);
        remove_path(&mut doc, &["status".into(), "x".into()]);
        assert_eq!(doc, json!({"spec": {"a": 1, "b": 2, "l": [2]}}));
        assert_eq!(
            get_path(&doc, &["spec".into(), "a".into()]),
            Some(&json!(1))
        );
    }
}
