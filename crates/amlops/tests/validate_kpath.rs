//! Admission rules of the Kubernetes compute path's kinds (`AzureMLExtension`,
//! `KubernetesCompute`), through `amlops validate`'s checks: one invalid case per rule with
//! the field path and the message a user sees, and a check that every CEL rule of the two
//! CRDs is exercised by at least one case (kube-cel evaluates the CRD's own rules, so the
//! API server answers with the same messages).

use std::collections::BTreeSet;

use amlops::crd::{AzureMLExtension, KubernetesCompute, TlsDelivery};
use amlops::validate::{Checked, check_object, check_value};
use kube::CustomResourceExt;
use serde_json::{Value, json};

const SUB: &str = "00000000-0000-0000-0000-000000000000";

fn aks_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/{name}"
    )
}

fn ext() -> Value {
    json!({
        "apiVersion": "amlops.dev/v1alpha1", "kind": "AzureMLExtension",
        "metadata": {"name": "shared-azureml", "namespace": "platform"},
        "spec": {
            "cluster": {"resourceId": aks_id("shared")},
            "extensionName": "azureml",
            "training": {"enabled": true},
            "inference": {
                "enabled": true,
                "routerServiceType": "LoadBalancer",
                "tls": {"cname": "scoring.contoso.com", "secretRef": {"name": "scoring-tls"}}
            },
            "nodeSelector": {"agentpool": "ml"},
            "instanceTypes": {
                "defaultinstancetype": {"resources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}}},
                "gpu": {"nodeSelector": {"agentpool": "ml", "accelerator": "nvidia"}, "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}}}
            },
            "extraSettings": {"amloperator.skipResourceValidation": "true"}
        }
    })
}

fn kc() -> Value {
    json!({
        "apiVersion": "amlops.dev/v1alpha1", "kind": "KubernetesCompute",
        "metadata": {"name": "team-a", "namespace": "platform"},
        "spec": {
            "workspace": {"subscriptionId": SUB, "resourceGroup": "ml-rg", "name": "ml-ws"},
            "computeName": "teama",
            "extensionRef": {"name": "shared-azureml"},
            "namespace": "team-a"
        }
    })
}

/// Set (or, with `"<remove>"`, delete) the value at a JSON pointer.
fn with(mut doc: Value, edits: &[(&str, Value)]) -> Value {
    for (pointer, value) in edits {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = if parent.is_empty() {
            &mut doc
        } else {
            doc.pointer_mut(parent).unwrap()
        };
        let obj = target.as_object_mut().unwrap();
        let key = key.replace("~1", "/");
        let key = key.as_str();
        if *value == json!("<remove>") {
            obj.remove(key);
        } else {
            obj.insert(key.to_string(), value.clone());
        }
    }
    doc
}

#[test]
fn valid_manifests_pass_with_defaults() {
    let Ok(Checked::AzureMlExtension(e)) = check_object(&ext(), None) else {
        panic!("{:?}", check_object(&ext(), None))
    };
    let tls = e.spec.inference.tls.as_ref().unwrap();
    assert_eq!(tls.delivery, TlsDelivery::ProtectedSettings);
    assert!(e.spec.add_ons.volcano && e.spec.add_ons.prometheus_operator);
    assert!(!e.spec.add_ons.nvidia_device_plugin);
    assert_eq!(e.spec.max_retries, 3);
    assert_eq!(e.extension_name(), "azureml");
    let Ok(Checked::KubernetesCompute(c)) = check_object(&kc(), None) else {
        panic!("{:?}", check_object(&kc(), None))
    };
    assert_eq!(c.spec.deletion_policy, amlops::crd::DeletionPolicy::Detach);
    assert!(!c.spec.create_namespace);
    assert_eq!(c.compute_name(), "teama");

    let more = [
        // Training only, pinned version, no TLS block needed.
        with(
            ext(),
            &[
                ("/spec/inference", json!({"enabled": false})),
                ("/spec/version", json!("1.1.39")),
                ("/spec/extensionName", json!("<remove>")),
            ],
        ),
        // HTTP only, NodePort, ClusterSecret delivery elsewhere.
        with(
            ext(),
            &[(
                "/spec/inference",
                json!({"enabled": true, "routerServiceType": "NodePort", "tls": {"mode": "Disabled"}}),
            )],
        ),
        with(
            ext(),
            &[(
                "/spec/inference",
                json!({"enabled": true, "internalLoadBalancer": true, "highAvailability": false, "tls": {"cname": "a.contoso.com", "secretRef": {"name": "t"}, "delivery": "ClusterSecret"}}),
            )],
        ),
        with(ext(), &[("/spec/nodeSelector", json!("<remove>"))]),
        with(
            kc(),
            &[
                ("/spec/extensionRef", json!("<remove>")),
                (
                    "/spec/cluster",
                    json!({"resourceId": aks_id("other"), "extensionName": "azureml"}),
                ),
                (
                    "/spec/identity",
                    json!({"type": "UserAssigned", "userAssignedIdentity": format!("/subscriptions/{SUB}/resourceGroups/id-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ml-identity")}),
                ),
                ("/spec/deletionPolicy", json!("Orphan")),
                ("/spec/createNamespace", json!(true)),
            ],
        ),
        with(
            kc(),
            &[
                ("/spec/identity", json!({"type": "SystemAssigned"})),
                ("/spec/computeName", json!("<remove>")),
            ],
        ),
    ];
    for (i, doc) in more.iter().enumerate() {
        if let Err(f) = check_object(doc, None) {
            panic!("case {i} should be valid: {f:?}");
        }
    }
}

/// (case, manifest, field path, message fragment)
fn invalid_cases() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    vec![
        // ---- AzureMLExtension
        (
            "name as extension name",
            with(
                ext(),
                &[
                    ("/spec/extensionName", json!("<remove>")),
                    ("/metadata/name", json!("shared.azureml")),
                ],
            ),
            "",
            "metadata.name is used as the extension name",
        ),
        (
            "no workload",
            with(
                ext(),
                &[
                    ("/spec/training", json!({"enabled": false})),
                    ("/spec/inference", json!({"enabled": false})),
                ],
            ),
            "spec",
            "enable training or inference",
        ),
        (
            "no workload by omission",
            with(
                ext(),
                &[
                    ("/spec/training", json!("<remove>")),
                    ("/spec/inference", json!("<remove>")),
                ],
            ),
            "spec",
            "enable training or inference",
        ),
        (
            "version and release train",
            with(
                ext(),
                &[
                    ("/spec/version", json!("1.1.39")),
                    ("/spec/releaseTrain", json!("stable")),
                ],
            ),
            "spec",
            "either releaseTrain",
        ),
        (
            "derived key in extraSettings",
            with(ext(), &[("/spec/extraSettings", json!({"sslSecret": "x"}))]),
            "spec",
            "extraSettings may not set a key amlops derives",
        ),
        (
            "derived key in another case",
            with(
                ext(),
                &[("/spec/extraSettings", json!({"EnableTraining": "True"}))],
            ),
            "spec",
            "extraSettings may not set a key amlops derives",
        ),
        (
            "scoringFe key",
            with(
                ext(),
                &[("/spec/extraSettings", json!({"scoringFe.sslCert": "x"}))],
            ),
            "spec",
            "extraSettings may not set a key amlops derives",
        ),
        (
            "nodeSelector key",
            with(
                ext(),
                &[("/spec/extraSettings", json!({"nodeSelector.pool": "x"}))],
            ),
            "spec",
            "extraSettings may not set a key amlops derives",
        ),
        (
            "instance type selector outside the extension's",
            with(
                ext(),
                &[(
                    "/spec/instanceTypes/gpu/nodeSelector",
                    json!({"agentpool": "gpu"}),
                )],
            ),
            "spec",
            "must stay within the extension's nodeSelector",
        ),
        (
            "cluster not AKS",
            with(
                ext(),
                &[(
                    "/spec/cluster/resourceId",
                    json!(format!(
                        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"
                    )),
                )],
            ),
            "spec.cluster.resourceId",
            "must be an AKS resource id",
        ),
        (
            "tls without cname",
            with(
                ext(),
                &[("/spec/inference/tls", json!({"secretRef": {"name": "t"}}))],
            ),
            "spec.inference.tls",
            "needs cname",
        ),
        (
            "tls disabled with a secret",
            with(
                ext(),
                &[(
                    "/spec/inference/tls",
                    json!({"mode": "Disabled", "secretRef": {"name": "t"}}),
                )],
            ),
            "spec.inference.tls",
            "mode is Disabled: remove cname and secretRef",
        ),
        (
            "bad cname",
            with(ext(), &[("/spec/inference/tls/cname", json!("scoring"))]),
            "spec.inference.tls.cname",
            "fully qualified host name",
        ),
        (
            "bad secret name",
            with(
                ext(),
                &[("/spec/inference/tls/secretRef/name", json!("Scoring_TLS"))],
            ),
            "spec.inference.tls.secretRef.name",
            "lowercase DNS subdomain",
        ),
        (
            "internal load balancer with NodePort",
            with(
                ext(),
                &[
                    ("/spec/inference/routerServiceType", json!("NodePort")),
                    ("/spec/inference/internalLoadBalancer", json!(true)),
                ],
            ),
            "spec.inference",
            "internalLoadBalancer applies only to routerServiceType LoadBalancer",
        ),
        (
            "inference without tls",
            with(ext(), &[("/spec/inference/tls", json!("<remove>"))]),
            "spec.inference",
            "inference.enabled needs inference.tls",
        ),
        (
            "router type",
            with(
                ext(),
                &[("/spec/inference/routerServiceType", json!("Ingress"))],
            ),
            "spec.inference.routerServiceType",
            "unsupported value",
        ),
        (
            "cluster purpose DenseProd",
            with(ext(), &[("/spec/clusterPurpose", json!("DenseProd"))]),
            "spec.clusterPurpose",
            "unsupported value",
        ),
        (
            "instance type without memory limit",
            with(
                ext(),
                &[(
                    "/spec/instanceTypes/defaultinstancetype/resources/limits",
                    json!({"cpu": "2"}),
                )],
            ),
            "spec.instanceTypes.defaultinstancetype.resources",
            "need cpu and memory in both requests and limits",
        ),
        (
            "GPU in requests",
            with(
                ext(),
                &[(
                    "/spec/instanceTypes/gpu/resources/requests/nvidia.com~1gpu",
                    json!("1"),
                )],
            ),
            "spec.instanceTypes.gpu.resources",
            "GPU count goes in limits only",
        ),
        (
            "fractional GPU",
            with(
                ext(),
                &[(
                    "/spec/instanceTypes/gpu/resources/limits/nvidia.com~1gpu",
                    json!("0.5"),
                )],
            ),
            "spec.instanceTypes.gpu.resources",
            "whole number",
        ),
        (
            "zero cpu",
            with(
                ext(),
                &[(
                    "/spec/instanceTypes/gpu/resources/requests/cpu",
                    json!("0m"),
                )],
            ),
            "spec.instanceTypes.gpu.resources",
            "must not be zero",
        ),
        (
            "GPU as a YAML number",
            with(
                ext(),
                &[(
                    "/spec/instanceTypes/gpu/resources/limits/nvidia.com~1gpu",
                    json!(1),
                )],
            ),
            "spec.instanceTypes.gpu.resources.limits.nvidia.com/gpu",
            "must be of type string",
        ),
        (
            "extension name",
            with(ext(), &[("/spec/extensionName", json!("Azure_ML"))]),
            "spec.extensionName",
            "at most 53 lowercase letters",
        ),
        (
            "release train",
            with(ext(), &[("/spec/releaseTrain", json!("stable train"))]),
            "spec.releaseTrain",
            "train name",
        ),
        (
            "version",
            with(ext(), &[("/spec/version", json!("latest"))]),
            "spec.version",
            "release such as 1.1.39",
        ),
        (
            "node selector label",
            with(
                ext(),
                &[("/spec/nodeSelector", json!({"agent pool": "ml"}))],
            ),
            "spec.nodeSelector",
            "label keys and values",
        ),
        (
            "instance type name",
            with(
                ext(),
                &[(
                    "/spec/instanceTypes/GPU_Large",
                    json!({"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}),
                )],
            ),
            "spec.instanceTypes",
            "instanceTypes names",
        ),
        (
            "extension maxRetries",
            with(ext(), &[("/spec/maxRetries", json!(11))]),
            "spec.maxRetries",
            "between 0 and 10",
        ),
        (
            "extension credentialsRef",
            with(ext(), &[("/spec/credentialsRef", json!({"name": "A B"}))]),
            "spec.credentialsRef.name",
            "lowercase DNS subdomain",
        ),
        (
            "extension deletionPolicy Detach",
            with(ext(), &[("/spec/deletionPolicy", json!("Detach"))]),
            "spec.deletionPolicy",
            "unsupported value",
        ),
        (
            "extension unknown field",
            with(ext(), &[("/spec/tls", json!({}))]),
            "spec.tls",
            "unknown field",
        ),
        // ---- KubernetesCompute
        (
            "name as compute name",
            with(
                kc(),
                &[
                    ("/spec/computeName", json!("<remove>")),
                    ("/metadata/name", json!("team-1")),
                ],
            ),
            "",
            "metadata.name is used as the compute name",
        ),
        (
            "no cluster",
            with(kc(), &[("/spec/extensionRef", json!("<remove>"))]),
            "spec",
            "set exactly one of extensionRef",
        ),
        (
            "both cluster and extensionRef",
            with(
                kc(),
                &[("/spec/cluster", json!({"resourceId": aks_id("x")}))],
            ),
            "spec",
            "set exactly one of extensionRef",
        ),
        (
            "deletionPolicy Delete",
            with(kc(), &[("/spec/deletionPolicy", json!("Delete"))]),
            "spec",
            "deletionPolicy Delete is not allowed on a KubernetesCompute",
        ),
        (
            "extensionRef name",
            with(kc(), &[("/spec/extensionRef/name", json!("Shared"))]),
            "spec.extensionRef.name",
            "name of an AzureMLExtension",
        ),
        (
            "cluster resourceId",
            with(
                kc(),
                &[
                    ("/spec/extensionRef", json!("<remove>")),
                    (
                        "/spec/cluster",
                        json!({"resourceId": "/subscriptions/x/aks"}),
                    ),
                ],
            ),
            "spec.cluster.resourceId",
            "must be an AKS resource id",
        ),
        (
            "cluster extensionName",
            with(
                kc(),
                &[
                    ("/spec/extensionRef", json!("<remove>")),
                    (
                        "/spec/cluster",
                        json!({"resourceId": aks_id("x"), "extensionName": "Azure ML"}),
                    ),
                ],
            ),
            "spec.cluster.extensionName",
            "cluster.extensionName must be",
        ),
        (
            "user-assigned identity without id",
            with(kc(), &[("/spec/identity", json!({"type": "UserAssigned"}))]),
            "spec.identity",
            "UserAssigned needs userAssignedIdentity",
        ),
        (
            "system-assigned identity with id",
            with(
                kc(),
                &[(
                    "/spec/identity",
                    json!({"type": "SystemAssigned", "userAssignedIdentity": format!("/subscriptions/{SUB}/resourceGroups/id-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ml")}),
                )],
            ),
            "spec.identity",
            "UserAssigned needs userAssignedIdentity",
        ),
        (
            "identity id",
            with(
                kc(),
                &[(
                    "/spec/identity",
                    json!({"type": "UserAssigned", "userAssignedIdentity": aks_id("x")}),
                )],
            ),
            "spec.identity.userAssignedIdentity",
            "must be a user-assigned identity id",
        ),
        (
            "namespace name",
            with(kc(), &[("/spec/namespace", json!("Team_A"))]),
            "spec.namespace",
            "must be a Kubernetes namespace name",
        ),
        (
            "system namespace",
            with(kc(), &[("/spec/namespace", json!("azureml"))]),
            "spec.namespace",
            "may not be azureml",
        ),
        (
            "no namespace",
            with(kc(), &[("/spec/namespace", json!("<remove>"))]),
            "spec.namespace",
            "required value",
        ),
        (
            "compute maxRetries",
            with(kc(), &[("/spec/maxRetries", json!(-1))]),
            "spec.maxRetries",
            "between 0 and 10",
        ),
        (
            "compute name ends in digits",
            with(kc(), &[("/spec/computeName", json!("team-2"))]),
            "spec.computeName",
            "must not end in '-' followed by digits",
        ),
        (
            "compute name too short",
            with(kc(), &[("/spec/computeName", json!("ab"))]),
            "spec.computeName",
            "3 to 24 characters",
        ),
        (
            "compute name characters",
            with(kc(), &[("/spec/computeName", json!("team_a"))]),
            "spec.computeName",
            "only letters, digits and '-'",
        ),
        (
            "workspace name",
            with(kc(), &[("/spec/workspace/name", json!("w"))]),
            "spec.workspace.name",
            "3-33 characters",
        ),
        (
            "workspace resource group",
            with(kc(), &[("/spec/workspace/resourceGroup", json!("rg."))]),
            "spec.workspace.resourceGroup",
            "must not end with '.'",
        ),
        (
            "workspace subscription",
            with(kc(), &[("/spec/workspace/subscriptionId", json!("sub"))]),
            "spec.workspace.subscriptionId",
            "must be a GUID",
        ),
        (
            "identity type",
            with(kc(), &[("/spec/identity", json!({"type": "None"}))]),
            "spec.identity.type",
            "unsupported value",
        ),
    ]
}

#[test]
fn every_rule_refuses_with_a_clear_message() {
    let mut failures = Vec::new();
    for (name, doc, path, fragment) in invalid_cases() {
        let found = match check_object(&doc, None) {
            Ok(_) => {
                failures.push(format!("{name}: accepted"));
                continue;
            }
            Err(f) => f,
        };
        if !found
            .iter()
            .any(|f| f.path == path && f.message.contains(fragment))
        {
            failures.push(format!(
                "{name}: expected `{path}: …{fragment}…`, got {found:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn rule_messages(schema: &Value, out: &mut BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for r in rules {
                    out.insert(r["message"].as_str().unwrap().to_owned());
                }
            }
            map.values().for_each(|v| rule_messages(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| rule_messages(v, out)),
        _ => {}
    }
}

/// Every CEL rule of both CRDs is hit by an invalid case here (immutability rules by
/// [`immutable_fields_refuse_updates_once_recorded`]).
#[test]
fn every_cel_rule_has_an_invalid_case() {
    let mut messages = BTreeSet::new();
    for crd in [AzureMLExtension::crd(), KubernetesCompute::crd()] {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        rule_messages(&schema, &mut messages);
    }
    let mut seen = BTreeSet::new();
    for (_, doc, _, _) in invalid_cases() {
        for f in check_object(&doc, None).err().unwrap_or_default() {
            seen.insert(f.message);
        }
    }
    for (_, old, new, _) in immutable_cases() {
        for f in check_object(&new, Some(&recorded(old)))
            .err()
            .unwrap_or_default()
        {
            seen.insert(f.message);
        }
    }
    let missing: Vec<_> = messages.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "CEL rules without an invalid case:\n{missing:#?}"
    );
}

fn recorded(old: Value) -> Value {
    let status = if old["kind"] == "AzureMLExtension" {
        json!({"extensionId": format!("{}/providers/Microsoft.KubernetesConfiguration/extensions/azureml", aks_id("shared"))})
    } else {
        json!({"computeId": format!("/subscriptions/{SUB}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws/computes/teama")})
    };
    with(old, &[("/status", status)])
}

fn immutable_cases() -> Vec<(&'static str, Value, Value, &'static str)> {
    let by_cluster = with(
        kc(),
        &[
            ("/spec/extensionRef", json!("<remove>")),
            ("/spec/cluster", json!({"resourceId": aks_id("shared")})),
        ],
    );
    vec![
        (
            "extension cluster",
            ext(),
            with(
                ext(),
                &[("/spec/cluster/resourceId", json!(aks_id("other")))],
            ),
            "spec.cluster",
        ),
        (
            "extension name",
            ext(),
            with(ext(), &[("/spec/extensionName", json!("azureml2"))]),
            "spec.extensionName",
        ),
        (
            "extension name removed",
            ext(),
            with(ext(), &[("/spec/extensionName", json!("<remove>"))]),
            "spec.extensionName",
        ),
        (
            "compute workspace",
            kc(),
            with(kc(), &[("/spec/workspace/name", json!("other-ws"))]),
            "spec.workspace",
        ),
        (
            "compute name",
            kc(),
            with(kc(), &[("/spec/computeName", json!("teamb"))]),
            "spec.computeName",
        ),
        (
            "compute namespace",
            kc(),
            with(kc(), &[("/spec/namespace", json!("team-b"))]),
            "spec.namespace",
        ),
        (
            "compute extensionRef",
            kc(),
            with(kc(), &[("/spec/extensionRef/name", json!("other"))]),
            "spec.extensionRef",
        ),
        (
            "compute cluster",
            by_cluster.clone(),
            with(
                by_cluster,
                &[("/spec/cluster/resourceId", json!(aks_id("other")))],
            ),
            "spec.cluster",
        ),
    ]
}

#[test]
fn immutable_fields_refuse_updates_once_recorded() {
    for (name, old, new, path) in immutable_cases() {
        // Before the operator recorded the Azure id, a refused spec can be fixed in place.
        assert!(
            check_object(&new, Some(&old)).is_ok(),
            "{name}: refused before Azure has it"
        );
        let found = check_object(&new, Some(&recorded(old)))
            .err()
            .unwrap_or_default();
        assert!(
            found
                .iter()
                .any(|f| f.path == path && f.message.contains("is immutable once Azure has the")),
            "{name}: got {found:?}"
        );
    }
    // Everything else changes in place.
    let changed = with(
        ext(),
        &[
            ("/spec/inference/tls/cname", json!("new.contoso.com")),
            ("/spec/addOns", json!({"nvidiaDevicePlugin": true})),
            ("/spec/releaseTrain", json!("preview")),
        ],
    );
    assert!(check_object(&changed, Some(&recorded(ext()))).is_ok());
    let changed = with(
        kc(),
        &[
            ("/spec/description", json!("team A")),
            ("/spec/identity", json!({"type": "SystemAssigned"})),
        ],
    );
    assert!(check_object(&changed, Some(&recorded(kc()))).is_ok());
}

#[test]
fn legacy_entry_point_points_to_check_object() {
    let err = check_value(&ext(), None).unwrap_err();
    assert!(err[0].message.contains("check_object"), "{err:?}");
}

#[test]
fn amlops_validate_reports_the_new_kinds() {
    use amlops::cli::{ValidateArgs, validate::run as run_cli};
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    let docs: Vec<String> = [ext(), kc()]
        .iter()
        .map(|v| serde_json::to_string(v).unwrap())
        .collect();
    std::fs::write(&good, docs.join("\n---\n")).unwrap();
    let bad = dir.path().join("bad.yaml");
    let invalid = with(kc(), &[("/spec/namespace", json!("azureml"))]);
    std::fs::write(&bad, serde_json::to_string(&invalid).unwrap()).unwrap();
    let mut out = Vec::new();
    let ok = run_cli(
        &ValidateArgs {
            files: vec![good, bad],
            plan: false,
        },
        &mut out,
    )
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(!ok);
    assert!(
        out.contains("OK    AzureMLExtension platform/shared-azureml"),
        "{out}"
    );
    assert!(
        out.contains("OK    KubernetesCompute platform/team-a"),
        "{out}"
    );
    assert!(
        out.contains("ERROR KubernetesCompute platform/team-a")
            && out.contains("spec.namespace: namespace may not be azureml"),
        "{out}"
    );
    assert!(out.contains("2 valid, 1 invalid"), "{out}");
}

/// Every manifest in examples/ passes `amlops validate` (schema, CEL, semantic checks).
#[test]
fn every_example_validates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let docs = amlops::validate::load_paths(&[root]).expect("examples/");
    assert!(docs.len() >= 7, "{} documents", docs.len());
    for doc in docs {
        let value = doc.value.unwrap_or_else(|e| panic!("{}: {e}", doc.source));
        if let Err(findings) = check_object(&value, None) {
            panic!("{} #{}: {findings:?}", doc.source, doc.index);
        }
    }
}

/// Every amlops manifest quoted in the docs (```yaml blocks) passes `amlops validate`: the
/// docs cannot drift from the CRDs.
#[test]
fn every_manifest_in_the_docs_validates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(root.join("README.md"));
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for block in text.split("```yaml\n").skip(1) {
            let yaml = block.split("```").next().unwrap_or_default();
            if !yaml.contains("apiVersion: amlops.dev/") {
                continue;
            }
            for doc in amlops::validate::parse_documents(&file.display().to_string(), yaml) {
                let value = doc.value.unwrap_or_else(|e| panic!("{}: {e}", doc.source));
                if value.get("kind").is_none() {
                    continue;
                }
                if let Err(findings) = check_object(&value, None) {
                    panic!("{}: {findings:?}\n{yaml}", doc.source);
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 2, "{checked} manifests checked");
}
