//! The committed `crds/` match `amlops crds`, and the generated CRDs are structural and loadable
//! by a Kubernetes 1.25+ API server (CEL rules compile, stay within the cost budget and use only
//! features every supported version has).

use amlops::crd::{all_crds, crd_files};
use kube::core::cel::{ScopeContext, WarningKind, analyze_rule, compile_schema};
use serde_json::Value;

#[test]
fn committed_crds_match_generated() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    let files = crd_files().expect("serialise CRDs");
    let mut committed: Vec<_> = std::fs::read_dir(&root)
        .expect("crds/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    let mut expected: Vec<_> = files.iter().map(|(f, _)| f.clone()).collect();
    expected.sort();
    assert_eq!(
        committed, expected,
        "crds/ holds other files than `amlops crds` generates"
    );
    for (file, yaml) in files {
        let on_disk = std::fs::read_to_string(root.join(&file)).unwrap();
        assert!(
            on_disk == yaml,
            "crds/{file} is out of date: run `cargo run -p amlops -- crds --out crds` and commit the result"
        );
    }
}

/// Walk every schema node with its path.
fn walk<'a>(node: &'a Value, path: String, visit: &mut dyn FnMut(&str, &'a Value)) {
    visit(&path, node);
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            walk(v, format!("{path}.{k}"), visit);
        }
    }
    if let Some(items) = node.get("items") {
        walk(items, format!("{path}[]"), visit);
    }
    if let Some(ap) = node.get("additionalProperties").filter(|v| v.is_object()) {
        walk(ap, format!("{path}{{}}"), visit);
    }
}

/// Every map (`additionalProperties`) under `node` has maxProperties, and there is no list.
fn maps_bounded_no_lists(node: &Value) -> bool {
    let mut ok = true;
    walk(node, String::new(), &mut |_, n| {
        if n.get("type").and_then(Value::as_str) == Some("array")
            || (n.get("additionalProperties").is_some_and(Value::is_object)
                && n.get("maxProperties").is_none())
        {
            ok = false;
        }
    });
    ok
}

#[test]
fn crds_are_structural_and_cel_is_sound() {
    for crd in all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        assert_eq!(crd.spec.versions.len(), 1);
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{name}: status subresource"
        );
        let schema = serde_json::to_value(
            version
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let mut problems = Vec::new();
        let mut rules = 0;
        walk(&schema, String::new(), &mut |path, node| {
            // Structural: every node is typed (or int-or-string / preserve-unknown), no $ref,
            // no types or defaults inside logical junctors, properties XOR additionalProperties.
            let typed = node.get("type").is_some()
                || node.get("x-kubernetes-int-or-string").is_some()
                || node.get("x-kubernetes-preserve-unknown-fields").is_some();
            if !typed {
                problems.push(format!("{path}: no type"));
            }
            if node.get("$ref").is_some()
                || node.get("definitions").is_some()
                || node.get("$defs").is_some()
            {
                problems.push(format!("{path}: $ref/definitions are not allowed"));
            }
            for junctor in ["allOf", "anyOf", "oneOf", "not"] {
                if let Some(j) = node.get(junctor) {
                    let text = j.to_string();
                    if text.contains("\"type\"")
                        || text.contains("\"default\"")
                        || text.contains("\"nullable\"")
                    {
                        problems.push(format!("{path}: {junctor} carries type/default/nullable"));
                    }
                }
            }
            if node.get("properties").is_some() && node.get("additionalProperties").is_some() {
                problems.push(format!("{path}: both properties and additionalProperties"));
            }
            if let Some(Value::Array(list)) = node.get("x-kubernetes-validations") {
                if node.get("type").is_none() {
                    problems.push(format!("{path}: CEL on an untyped node"));
                }
                let compiled = compile_schema(node);
                if compiled.has_errors() {
                    problems.push(format!(
                        "{path}: CEL does not compile: {:?}",
                        compiled.compilation_errors()
                    ));
                }
                for rule in list {
                    rules += 1;
                    let keys: Vec<&str> = rule
                        .as_object()
                        .unwrap()
                        .keys()
                        .map(String::as_str)
                        .collect();
                    // fieldPath (beta in 1.28, on by default; GA with CRD validation rules in
                    // 1.29) is on every Kubernetes version still supported upstream and by AKS
                    // in 2026; messageExpression and optionalOldSelf stay out to keep the
                    // messages static (amlops validate prints the same text).
                    if keys
                        .iter()
                        .any(|k| !matches!(*k, "rule" | "message" | "fieldPath"))
                    {
                        problems.push(format!("{path}: rule uses {keys:?}"));
                    }
                    let text = rule["rule"].as_str().unwrap();
                    if rule
                        .get("message")
                        .and_then(Value::as_str)
                        .is_none_or(|m| m.len() < 20)
                    {
                        problems.push(format!("{path}: rule `{text}` lacks a helpful message"));
                    }
                    let mut warnings = analyze_rule(text, &compiled, ScopeContext::CrdValidation);
                    // kube-cel's analyser does not know the variables that CEL's macros
                    // (`all`, `exists`, …) bind, e.g. `k` in `self.all(k, …)`: not a problem.
                    // Its cost estimate sizes every comprehension by a list's maxItems and
                    // ignores maxProperties; the API server's estimator uses maxProperties for
                    // maps. A rule over a subtree whose maps are all bounded and that has no
                    // lists is therefore checked by those bounds instead.
                    if maps_bounded_no_lists(node) {
                        warnings.retain(|w| !matches!(w.kind, WarningKind::CostExceeded));
                    }
                    warnings.retain(|w| {
                        !(matches!(w.kind, WarningKind::WrongScope)
                            && w.message
                                .split('\'')
                                .nth(1)
                                .is_some_and(|var| text.contains(&format!("({var}, "))))
                    });
                    if !warnings.is_empty() {
                        problems.push(format!("{path}: `{text}`: {warnings:?}"));
                    }
                }
            }
        });
        assert!(rules > 20, "{name}: only {rules} CEL rules");
        assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
    }
}

#[test]
fn schema_defaults_are_valid_values() {
    // A default must itself pass the schema (the API server refuses a CRD otherwise).
    for crd in all_crds() {
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let mut defaults = 0;
        walk(&schema, String::new(), &mut |path, node| {
            if let Some(default) = node.get("default") {
                defaults += 1;
                let ty = node["type"].as_str().unwrap();
                let ok = match ty {
                    "string" => default.is_string(),
                    "integer" => default.is_i64(),
                    "boolean" => default.is_boolean(),
                    "object" => default.is_object(),
                    _ => false,
                };
                assert!(ok, "{path}: default {default} is not a {ty}");
                if let Some(allowed) = node.get("enum").and_then(Value::as_array) {
                    assert!(
                        allowed.contains(default),
                        "{path}: default {default} not in enum"
                    );
                }
            }
        });
        assert!(defaults >= 5);
    }
}

/// The API server warns `unrecognized format "…"` on every apply of a CRD whose schema uses a
/// format outside its list (schemars writes `uint32`, `int32`, `double` for numbers): only
/// recognised string formats remain, and numbers keep their bounds.
#[test]
fn crds_apply_without_unrecognized_format_warnings() {
    for crd in all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let mut bad = Vec::new();
        walk(
            &schema["openAPIV3Schema"],
            String::new(),
            &mut |path, node| {
                if let Some(format) = node.get("format").and_then(Value::as_str) {
                    let known =
                        amlops::crd::RECOGNIZED_FORMATS.contains(&format.replace('-', "").as_str());
                    if !known || node.get("type").and_then(Value::as_str) != Some("string") {
                        bad.push(format!("{path}: {format}"));
                    }
                }
            },
        );
        assert!(bad.is_empty(), "{name}: unrecognized formats {bad:?}");
        let retries = &schema["openAPIV3Schema"]["properties"]["status"]["properties"]["retries"];
        assert_eq!(
            retries["minimum"],
            serde_json::json!(0.0),
            "{name}: {retries}"
        );
    }
}

/// The YAML written to `crds/` (folded long strings included) reads back as exactly the CRD.
#[test]
fn crd_yaml_reads_back_as_the_crd() {
    for ((file, yaml), crd) in crd_files().unwrap().into_iter().zip(all_crds()) {
        let back: Value = serde_saphyr::from_str(&yaml).expect("valid YAML");
        assert!(
            back == serde_json::to_value(&crd).unwrap(),
            "{file} does not round-trip"
        );
    }
}
