//! What the Azure ML extension does inside an emulated AKS cluster, and the objects it
//! leaves there, served by the cluster's small Kubernetes API ([`super::kube_api`]).
//!
//! - The chart's pre-install/pre-upgrade health check ([`health_check`]): the codes and
//!   messages of Azure/AML-Kubernetes `docs/troubleshooting.md` — `E40007 INVALID_SSL_SETTING`
//!   (no TLS setting the chart understands, e.g. only the documented `sslSecret` without
//!   `scoringFe.sslSecret`; a missing, unparsable or mismatched certificate; a CNAME the
//!   certificate does not cover; missing derived keys), `E40002 INSUFFICIENT_NODE`
//!   (`inferenceRouterHA` on fewer than 3 nodes), `E45005 AZUREML_FE_DEPLOYMENT_CONFLICT` (a
//!   legacy `azureml-fe` from an AKS compute, without the migration settings). The report
//!   lands in ConfigMap `azureml/arcml-healthcheck` (`reports-pre-install` /
//!   `reports-pre-upgrade`), as on a real cluster.
//! - On success ([`install`]): namespace `azureml`, Service `azureml-fe` (with a load-balancer
//!   IP for `LoadBalancer`), the health-check ConfigMap, and the CRD
//!   `instancetypes.amlarc.azureml.com` after a delay (samples poll for it after `Succeeded`).
//! - Storage ([`handle`]): namespaces (create), cluster-scoped `InstanceType` objects (`amlarc.azureml.com/v1alpha1`,
//!   GET/POST/PUT/PATCH/DELETE once the CRD exists; a PATCH replaces the object, as a
//!   server-side apply of the whole object does) and Secrets written into existing
//!   namespaces (POST/PUT/PATCH; e.g. the TLS Secret named by `sslSecret` in `azureml`).
//! - On uninstall: the Helm objects go; the namespace, the CRD and the InstanceType objects
//!   stay (Microsoft's uninstall script deletes them separately).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::extensions::{DEFAULT_CRD_DELAY, ExtOp, ExtensionRecord};
use super::kube_api::status;
use super::state::Inner;

/// Name of the InstanceType CRD.
pub const INSTANCE_TYPE_CRD: &str = "instancetypes.amlarc.azureml.com";
/// API group of InstanceType objects.
pub const INSTANCE_TYPE_GROUP: &str = "amlarc.azureml.com";
/// Namespace of the extension.
pub const AZUREML_NS: &str = "azureml";
/// Name of the inference router Service.
pub const ROUTER_SERVICE: &str = "azureml-fe";
/// Name of the health-check ConfigMap.
pub const HEALTHCHECK_CONFIGMAP: &str = "arcml-healthcheck";

/// Keys the CLI derives and the chart needs (missing ones fail the health check).
const REQUIRED_DERIVED: [&str; 4] = [
    "cluster_name",
    "clusterId",
    "domain",
    "jobSchedulerLocation",
];

/// Objects of one cluster besides Secrets (which live in [`super::state::Cluster::secrets`]).
#[derive(Debug, Clone, Default)]
pub struct ClusterObjects {
    /// Namespaces created by the extension.
    pub namespaces: BTreeSet<String>,
    /// CRDs by name, with the time they become visible.
    pub crds: BTreeMap<String, Instant>,
    /// Services by (namespace, name).
    pub services: BTreeMap<(String, String), Value>,
    /// ConfigMaps by (namespace, name).
    pub config_maps: BTreeMap<(String, String), Value>,
    /// InstanceType objects by name (cluster-scoped).
    pub instance_types: BTreeMap<String, Value>,
    /// Annotations of the legacy front end's Deployment `default/azureml-fe`.
    pub legacy_fe_annotations: BTreeMap<String, String>,
    /// Last resourceVersion handed out.
    pub resource_version: u64,
}

impl ClusterObjects {
    fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// True once the InstanceType CRD is visible.
    pub fn has_instance_type_crd(&self, now: Instant) -> bool {
        self.crds.get(INSTANCE_TYPE_CRD).is_some_and(|t| *t <= now)
    }
}

/// One failed health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthFailure {
    /// Checker name (`ssl`, `node`, `inferencev1`).
    pub check: &'static str,
    /// `E40007` …
    pub code: &'static str,
    /// Message.
    pub message: String,
}

fn ssl_failure(detail: &str) -> HealthFailure {
    HealthFailure {
        check: "ssl",
        code: "E40007",
        // The first sentence is the chart's (docs/troubleshooting.md); the detail is the
        // emulator's and never quotes key material.
        message: format!(
            "INVALID_SSL_SETTING: Please make sure both SSL key and certificate are provided, and check the integrity of the SSL key and certificate. The CNAME should be compatible with the certificate. ({detail})"
        ),
    }
}

/// The chart's SSL check: the pair parses and matches, the chain is in serving order and
/// valid now, and the certificate covers `sslCname` (the operator's own serving checks).
fn check_pair(cert: &str, key: &str, cname: &str, source: &str) -> Result<(), HealthFailure> {
    amlops::tls::check_serving(cert, key, Some(cname), jiff::Timestamp::now())
        .map(|_| ())
        .map_err(|_| {
            ssl_failure(&format!(
                "{source}: not a valid certificate and key for sslCname {cname}"
            ))
        })
}

/// The chart's pre-install health check against the cluster.
pub fn health_check(inner: &Inner, e: &ExtensionRecord) -> Result<(), Vec<HealthFailure>> {
    let cluster_key = e.cluster.key();
    let Some(cluster) = inner.clusters.get(&cluster_key) else {
        return Ok(());
    };
    let mut failures = Vec::new();
    let missing: Vec<&str> = REQUIRED_DERIVED
        .iter()
        .copied()
        .filter(|k| e.setting(k).is_none_or(str::is_empty))
        .collect();
    if !missing.is_empty() {
        failures.push(ssl_failure(&format!(
            "configuration settings missing: {}",
            missing.join(", ")
        )));
    }
    let inference = e.flag("enableInference", false);
    if inference && !e.flag("allowInsecureConnections", false) {
        let cname = e.setting("sslCname").unwrap_or("");
        let result = if cname.is_empty() {
            Err(ssl_failure("sslCname is not set"))
        } else if let Some(name) = e.setting("scoringFe.sslSecret").filter(|s| !s.is_empty()) {
            match cluster
                .secrets
                .get(&(AZUREML_NS.to_string(), name.to_string()))
                .and_then(|s| s.data.as_ref())
            {
                Some(data) => {
                    let text = |k: &str| {
                        data.get(k)
                            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                            .unwrap_or_default()
                    };
                    check_pair(
                        &text("cert.pem"),
                        &text("key.pem"),
                        cname,
                        &format!("secret {AZUREML_NS}/{name}"),
                    )
                }
                None => Err(ssl_failure(&format!(
                    "secret {AZUREML_NS}/{name} with cert.pem and key.pem not found"
                ))),
            }
        } else if let (Some(c), Some(k)) = (
            e.protected.get("scoringFe.sslCert"),
            e.protected.get("scoringFe.sslKey"),
        ) {
            let b64 = base64::engine::general_purpose::STANDARD;
            match (b64.decode(c.trim()), b64.decode(k.trim())) {
                (Ok(c), Ok(k)) => check_pair(
                    &String::from_utf8_lossy(&c),
                    &String::from_utf8_lossy(&k),
                    cname,
                    "protected settings scoringFe.sslCert/scoringFe.sslKey",
                ),
                _ => Err(ssl_failure(
                    "scoringFe.sslCert/scoringFe.sslKey are not base64-encoded PEM",
                )),
            }
        } else {
            Err(ssl_failure(
                "neither scoringFe.sslSecret nor scoringFe.sslCert/scoringFe.sslKey is set",
            ))
        };
        if let Err(f) = result {
            failures.push(f);
        }
    }
    if inference && e.flag("inferenceRouterHA", true) && cluster.node_count() < 3 {
        failures.push(HealthFailure {
            check: "node",
            code: "E40002",
            // code name from docs/troubleshooting.md; the rest is emulator wording
            message: format!(
                "INSUFFICIENT_NODE: inferenceRouterHA needs at least 3 nodes, the cluster has {}. Set inferenceRouterHA=False or add nodes.",
                cluster.node_count()
            ),
        });
    }
    if inner.ext.traits(&cluster_key).egress_blocked {
        failures.push(HealthFailure {
            check: "network",
            code: "E45003",
            // code name from docs/troubleshooting.md; the rest is emulator wording
            message: "BAD_NETWORK_CONNECTIVITY: the cluster cannot reach the endpoints the extension needs; check its outbound rules (firewall, UDR, NSG)".into(),
        });
    }
    let legacy = legacy_front_end(inner, &cluster_key);
    let migrating = e.flag("scoringFe.enableUpgrade", false) || e.flag("isAKSMigration", false);
    if inference && legacy && !migrating {
        failures.push(HealthFailure {
            check: "inferencev1",
            code: "E45005",
            // as reported in Azure/AML-Kubernetes#293 (sic)
            message: "Azureml Fe deployment confict".to_string(),
        });
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

/// Whether the cluster runs the legacy (v1) `azureml-fe` of an AKS compute, in `default`.
pub fn legacy_front_end(inner: &Inner, cluster_key: &str) -> bool {
    inner
        .clusters
        .get(cluster_key)
        .is_some_and(|c| !c.azureml_components.is_empty())
        || inner.ext.traits(cluster_key).legacy_front_end
}

/// The legacy front end's Deployment `default/azureml-fe` (its annotations as last set).
fn legacy_deployment(objs: &ClusterObjects) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": ROUTER_SERVICE,
            "namespace": "default",
            "uid": "00000000-0000-0000-0000-00000000f0e1",
            "resourceVersion": objs.resource_version.to_string(),
            "annotations": objs.legacy_fe_annotations,
        },
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "azureml-fe"}},
                 "template": {"metadata": {"labels": {"app": "azureml-fe"}},
                              "spec": {"containers": [{"name": "azureml-fe", "image": "mcr.microsoft.com/azureml/amlarc/azureml-fe:v1"}]}}},
        "status": {"replicas": 3, "readyReplicas": 3},
    })
}

fn meta(name: &str, ns: Option<&str>, version: String) -> Value {
    let mut m = json!({
        "name": name,
        "uid": uuid::Uuid::new_v4().to_string(),
        "resourceVersion": version,
        "creationTimestamp": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
    });
    if let (Some(ns), Some(o)) = (ns, m.as_object_mut()) {
        o.insert("namespace".into(), json!(ns));
    }
    m
}

fn healthcheck_configmap(objs: &mut ClusterObjects, hook: &str, report: String) {
    let v = objs.next_version();
    objs.namespaces.insert(AZUREML_NS.into());
    objs.config_maps.insert(
        (AZUREML_NS.into(), HEALTHCHECK_CONFIGMAP.into()),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(HEALTHCHECK_CONFIGMAP, Some(AZUREML_NS), v),
            "data": {format!("reports-{hook}"): report},
        }),
    );
}

/// Writes the failing report into `azureml/arcml-healthcheck`.
pub fn record_failed_health_check(
    inner: &mut Inner,
    cluster_key: &str,
    failures: &[HealthFailure],
    op: ExtOp,
) {
    let hook = if op == ExtOp::Install {
        "pre-install"
    } else {
        "pre-upgrade"
    };
    let report = failures
        .iter()
        .map(|f| {
            format!(
                "Status: Failed Name: {} ErrorCode: {} ErrorMessage: {}",
                f.check, f.code, f.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let objs = inner
        .ext
        .objects
        .entry(cluster_key.to_string())
        .or_default();
    healthcheck_configmap(objs, hook, report);
}

/// Creates what a successful install or upgrade leaves on the cluster.
pub fn install(inner: &mut Inner, e: &ExtensionRecord) {
    let cluster_key = e.cluster.key();
    let delay = inner.ext.crd_delay.unwrap_or(DEFAULT_CRD_DELAY);
    let objs = inner.ext.objects.entry(cluster_key).or_default();
    objs.namespaces.insert(AZUREML_NS.into());
    objs.crds
        .entry(INSTANCE_TYPE_CRD.into())
        .or_insert_with(|| Instant::now() + delay);
    healthcheck_configmap(
        objs,
        "pre-install",
        "Status: Passed Name: ssl\nStatus: Passed Name: node\nStatus: Passed Name: inferencev1"
            .into(),
    );
    let key = (AZUREML_NS.to_string(), ROUTER_SERVICE.to_string());
    if !e.flag("enableInference", false) {
        objs.services.remove(&key);
        return;
    }
    let router = e
        .setting("inferenceRouterServiceType")
        .unwrap_or("LoadBalancer")
        .to_ascii_lowercase();
    let internal = e.flag("scoringFe.serviceType.internalLoadBalancer", false);
    let port = if e.flag("allowInsecureConnections", false) {
        80
    } else {
        443
    };
    let existing_ip = objs
        .services
        .get(&key)
        .and_then(|s| s.pointer("/status/loadBalancer/ingress/0/ip").cloned());
    let (svc_type, status) = match router.as_str() {
        "nodeport" => ("NodePort", json!({"loadBalancer": {}})),
        "clusterip" => ("ClusterIP", json!({"loadBalancer": {}})),
        _ => {
            let ip = existing_ip.unwrap_or_else(|| {
                let n = rand::random::<u8>().max(4);
                if internal {
                    json!(format!("10.240.0.{n}"))
                } else {
                    json!(format!(
                        "20.{}.{}.{n}",
                        40 + rand::random::<u8>() % 100,
                        rand::random::<u8>()
                    ))
                }
            });
            (
                "LoadBalancer",
                json!({"loadBalancer": {"ingress": [{"ip": ip}]}}),
            )
        }
    };
    let mut port_spec =
        json!({"name": "https", "port": port, "protocol": "TCP", "targetPort": port});
    if svc_type == "NodePort"
        && let Some(o) = port_spec.as_object_mut()
    {
        o.insert(
            "nodePort".into(),
            json!(30000 + u32::from(rand::random::<u16>() % 2767)),
        );
    }
    let mut metadata = meta(ROUTER_SERVICE, Some(AZUREML_NS), objs.next_version());
    if internal && let Some(o) = metadata.as_object_mut() {
        o.insert(
            "annotations".into(),
            json!({"service.beta.kubernetes.io/azure-load-balancer-internal": "true"}),
        );
    }
    objs.services.insert(
        key,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {
                "type": svc_type,
                "clusterIP": format!("10.0.{}.{}", rand::random::<u8>(), rand::random::<u8>().max(2)),
                "ports": [port_spec],
                "selector": {"app": "azureml-fe"},
            },
            "status": status,
        }),
    );
}

/// Removes the Helm release's objects (the namespace, CRD and InstanceTypes stay).
pub fn uninstall(inner: &mut Inner, cluster_key: &str) {
    if let Some(objs) = inner.ext.objects.get_mut(cluster_key) {
        objs.services.retain(|(ns, _), _| ns != AZUREML_NS);
        objs.config_maps.retain(|(ns, _), _| ns != AZUREML_NS);
    }
}

/// The cluster's InstanceType objects as the compute's `instanceTypes` snapshot (with the
/// implicit `defaultinstancetype` unless a CR overrides it; docs: requests cpu 100m / memory
/// 2Gi, limits cpu 2 / memory 2Gi).
pub fn instance_type_snapshot(inner: &Inner, cluster_key: &str) -> Value {
    let mut out = serde_json::Map::new();
    out.insert(
        "defaultinstancetype".into(),
        json!({"nodeSelector": null, "resources": {
            "requests": {"cpu": "100m", "memory": "2Gi"},
            "limits": {"cpu": "2", "memory": "2Gi"}}}),
    );
    if let Some(objs) = inner.ext.objects.get(cluster_key) {
        for (name, obj) in &objs.instance_types {
            let spec = obj.get("spec").cloned().unwrap_or(json!({}));
            let stringify = |v: Option<&Value>| -> Value {
                let m: serde_json::Map<String, Value> = v
                    .and_then(Value::as_object)
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| {
                                let s = match v {
                                    Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                };
                                (k.clone(), json!(s))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Value::Object(m)
            };
            out.insert(
                name.clone(),
                json!({
                    "nodeSelector": spec.get("nodeSelector").cloned().unwrap_or(Value::Null),
                    "resources": {
                        "requests": stringify(spec.pointer("/resources/requests")),
                        "limits": stringify(spec.pointer("/resources/limits")),
                    }
                }),
            );
        }
    }
    Value::Object(out)
}

fn not_found(kind: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{kind} \"{name}\" not found"),
        None,
    )
}

fn no_resource() -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource".into(),
        None,
    )
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": {"resourceVersion": ""}, "items": items})),
    )
        .into_response()
}

fn ok(v: &Value, code: StatusCode) -> Response {
    (code, axum::Json(v.clone())).into_response()
}

fn namespaces(inner: &Inner, cluster_key: &str) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = ["default", "kube-system", "kube-public"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(c) = inner.clusters.get(cluster_key) {
        set.extend(c.secrets.keys().map(|(ns, _)| ns.clone()));
        if !c.azureml_components.is_empty() {
            set.insert(AZUREML_NS.into());
        }
    }
    if let Some(o) = inner.ext.objects.get(cluster_key) {
        set.extend(o.namespaces.iter().cloned());
    }
    set
}

fn namespace_json(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}})
}

fn crd_json(name: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": INSTANCE_TYPE_GROUP,
            "scope": "Cluster",
            "names": {"kind": "InstanceType", "listKind": "InstanceTypeList", "plural": "instancetypes", "singular": "instancetype"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true}],
        },
        "status": {"conditions": [{"type": "Established", "status": "True"}]},
    })
}

/// Handles the data-plane paths of the extension's objects; `None` for other paths (left to
/// [`super::kube_api`]). `cluster_key` is the authenticated, reachable cluster.
pub fn handle(
    inner: &mut Inner,
    cluster_key: &str,
    method: &str,
    segs: &[&str],
    body: &[u8],
) -> Option<Response> {
    let now = Instant::now();
    let r = match (method, segs) {
        ("GET", ["api", "v1", "namespaces"]) => list(
            "Namespace",
            "v1",
            namespaces(inner, cluster_key)
                .iter()
                .map(|n| namespace_json(n))
                .collect(),
        ),
        ("POST", ["api", "v1", "namespaces"]) => {
            let name = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
                v.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            match name {
                None => bad_body("metadata.name is required"),
                Some(n) if namespaces(inner, cluster_key).contains(&n) => status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("namespaces \"{n}\" already exists"),
                    None,
                ),
                Some(n) => {
                    let objs = inner
                        .ext
                        .objects
                        .entry(cluster_key.to_string())
                        .or_default();
                    objs.namespaces.insert(n.clone());
                    ok(&namespace_json(&n), StatusCode::CREATED)
                }
            }
        }
        ("GET", ["api", "v1", "namespaces", ns]) => {
            if namespaces(inner, cluster_key).contains(*ns) {
                ok(&namespace_json(ns), StatusCode::OK)
            } else {
                not_found("namespaces", ns)
            }
        }
        (
            "GET",
            [
                "api",
                "v1",
                "namespaces",
                ns,
                kind @ ("services" | "configmaps"),
            ],
        ) => {
            let objs = inner
                .ext
                .objects
                .get(cluster_key)
                .cloned()
                .unwrap_or_default();
            let map = if *kind == "services" {
                &objs.services
            } else {
                &objs.config_maps
            };
            let items = map
                .iter()
                .filter(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect();
            list(
                if *kind == "services" {
                    "Service"
                } else {
                    "ConfigMap"
                },
                "v1",
                items,
            )
        }
        (
            "GET",
            [
                "api",
                "v1",
                "namespaces",
                ns,
                kind @ ("services" | "configmaps"),
                name,
            ],
        ) => {
            let objs = inner.ext.objects.get(cluster_key);
            let key = (ns.to_string(), name.to_string());
            let found = objs.and_then(|o| {
                if *kind == "services" {
                    o.services.get(&key)
                } else {
                    o.config_maps.get(&key)
                }
            });
            match found {
                Some(v) => ok(v, StatusCode::OK),
                None => not_found(kind, name),
            }
        }
        (
            "GET",
            [
                "apis",
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
            ],
        ) => {
            let items = inner
                .ext
                .objects
                .get(cluster_key)
                .map(|o| {
                    o.crds
                        .iter()
                        .filter(|(_, t)| **t <= now)
                        .map(|(n, _)| crd_json(n))
                        .collect()
                })
                .unwrap_or_default();
            list("CustomResourceDefinition", "apiextensions.k8s.io/v1", items)
        }
        (
            "GET",
            [
                "apis",
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                name,
            ],
        ) => {
            let visible = inner
                .ext
                .objects
                .get(cluster_key)
                .and_then(|o| o.crds.get(*name))
                .is_some_and(|t| *t <= now);
            if visible {
                ok(&crd_json(name), StatusCode::OK)
            } else {
                not_found("customresourcedefinitions.apiextensions.k8s.io", name)
            }
        }
        (
            _,
            [
                "apis",
                INSTANCE_TYPE_GROUP,
                "v1alpha1",
                "instancetypes",
                rest @ ..,
            ],
        ) => instance_types(inner, cluster_key, method, rest.first().copied(), body, now),
        (
            "GET" | "PATCH",
            [
                "apis",
                "apps",
                "v1",
                "namespaces",
                "default",
                "deployments",
                ROUTER_SERVICE,
            ],
        ) if legacy_front_end(inner, cluster_key) => {
            let objs = inner
                .ext
                .objects
                .entry(cluster_key.to_string())
                .or_default();
            if method == "PATCH" {
                // A merge patch of the annotations (what `kubectl annotate` sends).
                let patch: Value = match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(e) => return Some(bad_body(e)),
                };
                if let Some(a) = patch
                    .pointer("/metadata/annotations")
                    .and_then(Value::as_object)
                {
                    for (k, v) in a {
                        match v.as_str() {
                            Some(v) => {
                                objs.legacy_fe_annotations.insert(k.clone(), v.to_string());
                            }
                            None => {
                                objs.legacy_fe_annotations.remove(k);
                            }
                        }
                    }
                }
                objs.next_version();
            }
            ok(&legacy_deployment(objs), StatusCode::OK)
        }
        ("GET" | "PATCH", ["apis", "apps", "v1", "namespaces", _, "deployments", name]) => {
            not_found("deployments.apps", name)
        }
        ("POST", ["api", "v1", "namespaces", ns, "secrets"]) => {
            write_secret(inner, cluster_key, ns, None, body, true)
        }
        // PATCH: a server-side apply of the whole object (what amlops sends), taken as an
        // upsert; merge semantics beyond that are not emulated.
        ("PUT" | "PATCH", ["api", "v1", "namespaces", ns, "secrets", name]) => {
            write_secret(inner, cluster_key, ns, Some(name), body, false)
        }
        ("DELETE", ["api", "v1", "namespaces", ns, "secrets", name]) => {
            let removed = inner
                .clusters
                .get_mut(cluster_key)
                .and_then(|c| c.secrets.remove(&(ns.to_string(), name.to_string())));
            match removed {
                Some(_) => ok(
                    &json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}),
                    StatusCode::OK,
                ),
                None => not_found("secrets", name),
            }
        }
        _ => return None,
    };
    Some(r)
}

fn bad_body(e: impl std::fmt::Display) -> Response {
    status(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("the request body is not a valid object: {e}"),
        None,
    )
}

fn write_secret(
    inner: &mut Inner,
    cluster_key: &str,
    ns: &str,
    name: Option<&str>,
    body: &[u8],
    create: bool,
) -> Response {
    if !namespaces(inner, cluster_key).contains(ns) {
        return not_found("namespaces", ns);
    }
    let secret: k8s_openapi::api::core::v1::Secret = match serde_json::from_slice(body) {
        Ok(s) => s,
        Err(e) => return bad_body(e),
    };
    let Some(name) = name
        .map(str::to_string)
        .or_else(|| secret.metadata.name.clone())
    else {
        return bad_body("metadata.name is required");
    };
    let Some(cluster) = inner.clusters.get_mut(cluster_key) else {
        return no_resource();
    };
    let key = (ns.to_string(), name.clone());
    if create && cluster.secrets.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("secrets \"{name}\" already exists"),
            None,
        );
    }
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    cluster.put_secret(ns, &name, data);
    let mut stored = cluster.secrets.get(&key).cloned().unwrap_or_default();
    stored.type_ = secret.type_.or(stored.type_);
    stored.metadata.labels = secret.metadata.labels;
    cluster.secrets.insert(key, stored.clone());
    let mut v = serde_json::to_value(&stored).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("kind".into(), json!("Secret"));
        o.insert("apiVersion".into(), json!("v1"));
    }
    ok(
        &v,
        if create {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
    )
}

fn instance_types(
    inner: &mut Inner,
    cluster_key: &str,
    method: &str,
    name: Option<&str>,
    body: &[u8],
    now: Instant,
) -> Response {
    let objs = inner
        .ext
        .objects
        .entry(cluster_key.to_string())
        .or_default();
    if !objs.has_instance_type_crd(now) {
        return no_resource();
    }
    let api_version = format!("{INSTANCE_TYPE_GROUP}/v1alpha1");
    match (method, name) {
        ("GET", None) => list(
            "InstanceType",
            &api_version,
            objs.instance_types.values().cloned().collect(),
        ),
        ("GET", Some(n)) => match objs.instance_types.get(n) {
            Some(v) => ok(v, StatusCode::OK),
            None => not_found("instancetypes.amlarc.azureml.com", n),
        },
        ("DELETE", Some(n)) => match objs.instance_types.remove(n) {
            Some(_) => ok(
                &json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}),
                StatusCode::OK,
            ),
            None => not_found("instancetypes.amlarc.azureml.com", n),
        },
        ("POST", None) | ("PUT", Some(_)) | ("PATCH", Some(_)) => {
            let mut obj: Value = match serde_json::from_slice(body) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => return bad_body("expected a JSON object"),
                Err(e) => return bad_body(e),
            };
            let Some(n) = name.map(str::to_string).or_else(|| {
                obj.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }) else {
                return bad_body("metadata.name is required");
            };
            let exists = objs.instance_types.contains_key(&n);
            if method == "POST" && exists {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("instancetypes.amlarc.azureml.com \"{n}\" already exists"),
                    None,
                );
            }
            let old_meta = objs
                .instance_types
                .get(&n)
                .and_then(|o| o.get("metadata").cloned());
            let version = objs.next_version();
            let mut metadata = obj.get("metadata").cloned().unwrap_or(json!({}));
            if let Some(m) = metadata.as_object_mut() {
                m.remove("namespace");
                m.insert("name".into(), json!(n));
                m.insert("resourceVersion".into(), json!(version));
                let keep = |k: &str| old_meta.as_ref().and_then(|o| o.get(k).cloned());
                m.insert(
                    "uid".into(),
                    keep("uid").unwrap_or_else(|| json!(uuid::Uuid::new_v4().to_string())),
                );
                m.insert(
                    "creationTimestamp".into(),
                    keep("creationTimestamp").unwrap_or_else(|| {
                        json!(
                            jiff::Timestamp::now()
                                .strftime("%Y-%m-%dT%H:%M:%SZ")
                                .to_string()
                        )
                    }),
                );
            }
            if let Some(o) = obj.as_object_mut() {
                o.insert("apiVersion".into(), json!(api_version));
                o.insert("kind".into(), json!("InstanceType"));
                o.insert("metadata".into(), metadata);
            }
            objs.instance_types.insert(n, obj.clone());
            ok(
                &obj,
                if exists {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
            )
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported on instancetypes"),
            None,
        ),
    }
}
