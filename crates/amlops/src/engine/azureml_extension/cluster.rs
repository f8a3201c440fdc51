//! What an `AzureMLExtension` reads and writes on the AKS cluster itself, through the
//! cluster's API server: the `InstanceType` objects amlops applies (server-side apply,
//! field manager `amlops`), the router Service's address, and the extension's health-check
//! report (ConfigMap `azureml/arcml-healthcheck`), whose failing lines Azure does not return
//! for a failed install.
//!
//! The parsing and the diff are pure (table-tested); the two async functions are the I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};

use crate::crd::{InstanceTypeSpec, ProvisioningError};

/// Name of the CRD the extension installs (some time after `Succeeded`).
pub const INSTANCE_TYPE_CRD: &str = "instancetypes.amlarc.azureml.com";
/// Group of `InstanceType` objects.
pub const INSTANCE_TYPE_GROUP: &str = "amlarc.azureml.com";
/// Version of `InstanceType` objects.
pub const INSTANCE_TYPE_VERSION: &str = "v1alpha1";
/// Label on every object amlops applies on a target cluster (and the selector of its prune).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "amlops");
/// Annotation naming the `AzureMLExtension` (`namespace/name`) an object belongs to: only
/// those are pruned.
pub const OWNER_ANNOTATION: &str = "amlops.dev/owner";
/// Field manager of amlops' server-side applies.
pub const FIELD_MANAGER: &str = "amlops";
/// Namespace of the extension's release.
pub const AZUREML_NAMESPACE: &str = "azureml";
/// The inference router's Service.
pub const ROUTER_SERVICE: &str = "azureml-fe";
/// The health check's ConfigMap (keys `reports-pre-install`, `reports-pre-upgrade`, …).
pub const HEALTHCHECK_CONFIGMAP: &str = "arcml-healthcheck";

fn instance_type_resource() -> ApiResource {
    ApiResource {
        group: INSTANCE_TYPE_GROUP.into(),
        version: INSTANCE_TYPE_VERSION.into(),
        api_version: format!("{INSTANCE_TYPE_GROUP}/{INSTANCE_TYPE_VERSION}"),
        kind: "InstanceType".into(),
        plural: "instancetypes".into(),
    }
}

/// amlops' `InstanceType` objects on a cluster, by name: (owner annotation, `spec`).
pub type OnCluster = BTreeMap<String, (Option<String>, Value)>;

/// What was read on the cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InCluster {
    /// The `InstanceType` CRD is served.
    pub instance_type_crd: bool,
    /// `InstanceType` objects labelled as amlops', by name: (owner annotation, `spec`).
    pub instance_types: OnCluster,
    /// The router's address ([`router_address`]).
    pub router_address: Option<String>,
}

/// The cluster as one reconcile saw it.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ClusterView {
    /// Not needed by this reconcile.
    #[default]
    NotRead,
    /// Read.
    Read(InCluster),
    /// The API server could not be read: why (no secret in it).
    Unreachable(String),
}

/// The object amlops applies for instance type `name` of the extension `owner`
/// (`namespace/name`): the spec as written, amlops' label and owner annotation.
pub fn instance_type_object(owner: &str, name: &str, spec: &InstanceTypeSpec) -> Value {
    json!({
        "apiVersion": format!("{INSTANCE_TYPE_GROUP}/{INSTANCE_TYPE_VERSION}"),
        "kind": "InstanceType",
        "metadata": {
            "name": name,
            "labels": {MANAGED_BY.0: MANAGED_BY.1},
            "annotations": {OWNER_ANNOTATION: owner},
        },
        "spec": spec,
    })
}

/// What to apply and what to prune so that the cluster holds exactly `want` among the
/// objects `owner` applied: objects missing or different, and objects of `owner` no longer
/// wanted. Objects of other owners are never pruned.
pub fn instance_type_diff(
    owner: &str,
    want: &BTreeMap<String, InstanceTypeSpec>,
    have: &OnCluster,
) -> (Vec<Value>, Vec<String>) {
    let apply = want
        .iter()
        .filter(|(name, spec)| {
            let wanted = serde_json::to_value(spec).unwrap_or_default();
            have.get(*name)
                .is_none_or(|(o, s)| o.as_deref() != Some(owner) || *s != wanted)
        })
        .map(|(name, spec)| instance_type_object(owner, name, spec))
        .collect();
    let prune = have
        .iter()
        .filter(|(name, (o, _))| o.as_deref() == Some(owner) && !want.contains_key(*name))
        .map(|(name, _)| name.clone())
        .collect();
    (apply, prune)
}

/// The router's address from its Service: the load balancer's IP or host name, `nodePort
/// <port>`, or the cluster IP; `None` while a load balancer has none.
pub fn router_address(svc: &Service) -> Option<String> {
    let spec = svc.spec.as_ref()?;
    match spec.type_.as_deref() {
        Some("NodePort") => spec
            .ports
            .iter()
            .flatten()
            .find_map(|p| p.node_port)
            .map(|p| format!("nodePort {p}")),
        Some("ClusterIP") => spec.cluster_ip.clone().filter(|ip| !ip.is_empty()),
        _ => svc
            .status
            .as_ref()?
            .load_balancer
            .as_ref()?
            .ingress
            .iter()
            .flatten()
            .find_map(|i| i.ip.clone().or_else(|| i.hostname.clone())),
    }
}

/// The failing checks of a health-check report (`Status: Failed Name: <check> ErrorCode:
/// <code> ErrorMessage: <message>`, one per line, as the chart writes them) as errors;
/// passing lines are left out.
pub fn failing_checks(report: &str) -> Vec<ProvisioningError> {
    report
        .lines()
        .filter(|l| l.contains("Status: Failed"))
        .map(|l| {
            let after = |key: &str| l.split_once(key).map(|(_, rest)| rest.trim());
            let code = after("ErrorCode:")
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or("HealthCheckFailed")
                .to_string();
            let message = after("ErrorMessage:")
                .map(str::to_string)
                .or_else(|| after("Name:").map(|n| format!("check {n} failed")))
                .unwrap_or_else(|| l.trim().to_string());
            ProvisioningError { code, message }
        })
        .collect()
}

/// Reads the `InstanceType` CRD, amlops' `InstanceType` objects and the router Service.
///
/// # Errors
/// The API server's answer to a read other than a 404.
pub async fn read(client: kube::Client, router: bool) -> Result<InCluster, kube::Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut seen = InCluster {
        instance_type_crd: crds.get_opt(INSTANCE_TYPE_CRD).await?.is_some(),
        ..InCluster::default()
    };
    if seen.instance_type_crd {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &instance_type_resource());
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        for o in api.list(&ListParams::default().labels(&selector)).await? {
            // Filtered here too: the label is what makes an object amlops'.
            let labels = o.metadata.labels.clone().unwrap_or_default();
            if labels.get(MANAGED_BY.0).map(String::as_str) != Some(MANAGED_BY.1) {
                continue;
            }
            let owner = o
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(OWNER_ANNOTATION).cloned());
            let spec = o.data.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(name) = o.metadata.name {
                seen.instance_types.insert(name, (owner, spec));
            }
        }
    }
    if router {
        let svcs: Api<Service> = Api::namespaced(client, AZUREML_NAMESPACE);
        seen.router_address = svcs
            .get_opt(ROUTER_SERVICE)
            .await?
            .as_ref()
            .and_then(router_address);
    }
    Ok(seen)
}

/// The failing checks of the extension's last health check (every report in the
/// ConfigMap); empty when there is none.
///
/// # Errors
/// The API server's answer to a read other than a 404.
pub async fn read_health_report(
    client: kube::Client,
) -> Result<Vec<ProvisioningError>, kube::Error> {
    let cms: Api<ConfigMap> = Api::namespaced(client, AZUREML_NAMESPACE);
    let Some(cm) = cms.get_opt(HEALTHCHECK_CONFIGMAP).await? else {
        return Ok(Vec::new());
    };
    Ok(cm
        .data
        .unwrap_or_default()
        .values()
        .flat_map(|r| failing_checks(r))
        .collect())
}

/// Server-side-applies `apply` (field manager `amlops`, forced: the spec is the source of
/// truth) and deletes the `prune`d names (a 404 is what was wanted).
///
/// # Errors
/// The first request the API server refused or that did not reach it, with the object's
/// name.
pub async fn apply_instance_types(
    client: kube::Client,
    apply: &[Value],
    prune: &[String],
) -> Result<(), (String, kube::Error)> {
    let api: Api<DynamicObject> = Api::all_with(client, &instance_type_resource());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for obj in apply {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        api.patch(&name, &params, &Patch::Apply(obj))
            .await
            .map_err(|e| (name.clone(), e))?;
    }
    for name in prune {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err((name.clone(), e)),
        }
    }
    Ok(())
}

/// Namespace of the legacy (v1) front end of an AKS compute.
pub const LEGACY_NAMESPACE: &str = "default";
/// The annotation Microsoft's migration steps set on the legacy front end before the
/// extension takes it over (`kubectl annotate deployment azureml-fe
/// azureml-fe-enable-upgrade=true`, "Migrate from AKS compute").
pub const UPGRADE_ANNOTATION: &str = "azureml-fe-enable-upgrade";

/// Whether the cluster runs the legacy front end (Deployment `default/azureml-fe`), and if
/// so whether it carries [`UPGRADE_ANNOTATION`]`=true`.
///
/// # Errors
/// The API server's answer to the read, other than a 404.
pub async fn read_legacy_front_end(client: kube::Client) -> Result<Option<bool>, kube::Error> {
    let api: Api<Deployment> = Api::namespaced(client, LEGACY_NAMESPACE);
    Ok(api.get_opt(ROUTER_SERVICE).await?.map(|d| {
        d.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(UPGRADE_ANNOTATION))
            .is_some_and(|v| v == "true")
    }))
}

/// Sets [`UPGRADE_ANNOTATION`]`=true` on the legacy front end (a merge patch, as `kubectl
/// annotate` sends).
///
/// # Errors
/// The API server's answer.
pub async fn annotate_legacy_front_end(client: kube::Client) -> Result<(), kube::Error> {
    let api: Api<Deployment> = Api::namespaced(client, LEGACY_NAMESPACE);
    api.patch(
        ROUTER_SERVICE,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {UPGRADE_ANNOTATION: "true"}}})),
    )
    .await?;
    Ok(())
}

/// Copies the router's certificate and key into Secret `name` of namespace `azureml` on the
/// cluster (`cert.pem`, `key.pem`, Opaque: the chart's `sslSecret` contract), creating the
/// namespace first when it does not exist yet (before the first install).
///
/// # Errors
/// The API server's answer (never quoted back: it could hold what was sent).
pub async fn copy_tls_secret(
    client: kube::Client,
    name: &str,
    cert: &crate::azure::config::Secret,
    key: &crate::azure::config::Secret,
) -> Result<(), kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(AZUREML_NAMESPACE).await?.is_none() {
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": AZUREML_NAMESPACE, "labels": {MANAGED_BY.0: MANAGED_BY.1}}
        }))
        .map_err(kube::Error::SerdeError)?;
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": AZUREML_NAMESPACE,
            "labels": {MANAGED_BY.0: MANAGED_BY.1},
        },
        "stringData": {"cert.pem": cert.expose(), "key.pem": key.expose()},
    });
    let secrets: Api<Secret> = Api::namespaced(client, AZUREML_NAMESPACE);
    secrets
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::InstanceTypeResources;

    fn spec(cpu: &str) -> InstanceTypeSpec {
        InstanceTypeSpec {
            node_selector: BTreeMap::new(),
            resources: InstanceTypeResources {
                requests: [("cpu".into(), cpu.into()), ("memory".into(), "1Gi".into())].into(),
                limits: [("cpu".into(), cpu.into()), ("memory".into(), "1Gi".into())].into(),
            },
        }
    }

    fn have(
        entries: &[(&str, Option<&str>, &InstanceTypeSpec)],
    ) -> BTreeMap<String, (Option<String>, Value)> {
        entries
            .iter()
            .map(|(n, o, s)| {
                (
                    n.to_string(),
                    (o.map(str::to_string), serde_json::to_value(s).unwrap()),
                )
            })
            .collect()
    }

    #[test]
    fn diff_applies_what_differs_and_prunes_only_its_own() {
        let small = spec("1");
        let big = spec("4");
        let want: BTreeMap<String, InstanceTypeSpec> =
            [("small".into(), small.clone()), ("big".into(), big.clone())].into();
        // (case, what is on the cluster, applied names, pruned names)
        let cases: Vec<(&str, OnCluster, Vec<&str>, Vec<&str>)> = vec![
            ("nothing yet", BTreeMap::new(), vec!["big", "small"], vec![]),
            (
                "in line: no write",
                have(&[
                    ("small", Some("ml/ext"), &small),
                    ("big", Some("ml/ext"), &big),
                ]),
                vec![],
                vec![],
            ),
            (
                "one changed on the cluster",
                have(&[
                    ("small", Some("ml/ext"), &big),
                    ("big", Some("ml/ext"), &big),
                ]),
                vec!["small"],
                vec![],
            ),
            (
                "one of ours no longer wanted, one of another owner kept",
                have(&[
                    ("small", Some("ml/ext"), &small),
                    ("big", Some("ml/ext"), &big),
                    ("old", Some("ml/ext"), &small),
                    ("theirs", Some("other/ext"), &small),
                    ("unowned", None, &small),
                ]),
                vec![],
                vec!["old"],
            ),
            (
                "same name, another owner: taken over (the spec names it)",
                have(&[
                    ("small", Some("other/ext"), &small),
                    ("big", Some("ml/ext"), &big),
                ]),
                vec!["small"],
                vec![],
            ),
        ];
        for (case, on_cluster, applied, pruned) in cases {
            let (a, p) = instance_type_diff("ml/ext", &want, &on_cluster);
            let names: Vec<&str> = a
                .iter()
                .map(|o| o.pointer("/metadata/name").and_then(Value::as_str).unwrap())
                .collect();
            assert_eq!(names, applied, "{case}");
            assert_eq!(p, pruned, "{case}");
            for o in &a {
                assert_eq!(
                    o["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1,
                    "{case}"
                );
                assert_eq!(
                    o["metadata"]["annotations"][OWNER_ANNOTATION], "ml/ext",
                    "{case}"
                );
                assert_eq!(o["kind"], "InstanceType");
            }
        }
    }

    #[test]
    fn router_address_per_service_type() {
        let svc = |v: Value| -> Service { serde_json::from_value(v).unwrap() };
        let cases = [
            (
                json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.9"},
                       "status": {"loadBalancer": {"ingress": [{"ip": "20.1.2.3"}]}}}),
                Some("20.1.2.3"),
            ),
            (
                json!({"spec": {"type": "LoadBalancer"},
                       "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}}}),
                Some("lb.example"),
            ),
            (
                json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {}}}),
                None,
            ),
            (
                json!({"spec": {"type": "NodePort", "clusterIP": "10.0.0.9",
                                "ports": [{"port": 443, "nodePort": 31234}]}}),
                Some("nodePort 31234"),
            ),
            (
                json!({"spec": {"type": "ClusterIP", "clusterIP": "10.0.0.9"}}),
                Some("10.0.0.9"),
            ),
        ];
        for (v, want) in cases {
            assert_eq!(router_address(&svc(v.clone())).as_deref(), want, "{v}");
        }
    }

    #[test]
    fn failing_checks_of_a_report() {
        let report = "Status: Passed Name: ssl\nStatus: Failed Name: inferencev1 ErrorCode: E45005 ErrorMessage: Azureml Fe deployment confict\nStatus: Failed Name: node ErrorCode: E40002 ErrorMessage: INSUFFICIENT_NODE: needs 3 nodes\nStatus: Failed Name: odd";
        let got = failing_checks(report);
        assert_eq!(
            got,
            vec![
                ProvisioningError {
                    code: "E45005".into(),
                    message: "Azureml Fe deployment confict".into()
                },
                ProvisioningError {
                    code: "E40002".into(),
                    message: "INSUFFICIENT_NODE: needs 3 nodes".into()
                },
                ProvisioningError {
                    code: "HealthCheckFailed".into(),
                    message: "check odd failed".into()
                },
            ]
        );
        assert!(failing_checks("Status: Passed Name: ssl").is_empty());
    }
}
