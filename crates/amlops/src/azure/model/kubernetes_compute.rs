//! Azure ML compute of type `Kubernetes` (`…/workspaces/{ws}/computes/{name}`, swagger
//! `Kubernetes` + `KubernetesProperties`), api-version 2025-09-01 (same schema in 2025-12-01
//! and 2026-05-01).
//!
//! A Kubernetes compute is one attachment of a cluster (that runs the Azure ML extension) to
//! a workspace, with a namespace and an optional identity. The swagger's two secret fields,
//! `relayConnectionString` and `serviceBusConnectionString` (`x-ms-secret`, Arc-era
//! plumbing), are deliberately not modelled: they are dropped when decoding and can never
//! be serialised, logged or sent back.
//!
//! The resource and its `Compute` are the generic ones of `compute`
//! ([`KubernetesComputeResource`] is a [`ComputeResource`] of [`KubernetesProperties`]);
//! this module holds what is the Kubernetes type's own.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::{Compute, ComputeResource, ComputeSchema};

/// A Kubernetes compute (request and response): swagger `ComputeResource` whose
/// `properties` is a `Kubernetes`.
pub type KubernetesComputeResource = ComputeResource<KubernetesProperties>;

/// `properties` of a Kubernetes compute (swagger `Compute` + `KubernetesSchema`).
pub type KubernetesCompute = Compute<KubernetesProperties>;

impl KubernetesComputeResource {
    /// An attach body: `{location, identity?, properties: {computeType: Kubernetes,
    /// resourceId, properties: {namespace}}}`, as `az ml compute attach --type Kubernetes`
    /// sends it (location = the workspace's location).
    pub fn attach(
        workspace_location: impl Into<String>,
        cluster_id: impl Into<String>,
        namespace: impl Into<String>,
    ) -> Self {
        Self {
            location: Some(workspace_location.into()),
            properties: KubernetesCompute {
                resource_id: Some(cluster_id.into()),
                properties: Some(KubernetesProperties {
                    namespace: Some(namespace.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// The namespace workloads run in (`default` when Azure reports none).
    pub fn namespace(&self) -> &str {
        self.properties
            .properties
            .as_ref()
            .and_then(|p| p.namespace.as_deref())
            .unwrap_or("default")
    }
}

impl ComputeSchema for KubernetesProperties {
    /// `Kubernetes`.
    const COMPUTE_TYPE: &'static str = "Kubernetes";

    /// The fields Azure fills: `extensionInstanceReleaseTrain`, `extensionPrincipalId`,
    /// `vcName`.
    fn clear_read_only(&mut self) {
        self.extension_instance_release_train = None;
        self.extension_principal_id = None;
        self.vc_name = None;
    }
}

/// `KubernetesProperties` without the two secret connection strings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesProperties {
    /// Namespace of the workloads (Azure's default `default`; Azure neither creates nor
    /// checks it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Default instance type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_instance_type: Option<String>,
    /// Instance types: Azure reports the cluster's `InstanceType` objects as they were when
    /// the compute was attached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_types: Option<BTreeMap<String, InstanceTypeSchema>>,
    /// Read-only in practice: the extension's release train (`stable`), filled by Azure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_instance_release_train: Option<String>,
    /// Read-only in practice (null on AKS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_principal_id: Option<String>,
    /// Read-only in practice (null on AKS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vc_name: Option<String>,
}

/// `InstanceTypeSchema`: node selector and resources of an instance type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceTypeSchema {
    /// Node selector (values may be null in Azure's answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, Option<String>>>,
    /// Requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<InstanceTypeResources>,
}

/// `resources` of an instance type: quantities as strings (`cpu`, `memory`,
/// `nvidia.com/gpu`). Null quantities (as in Azure's examples) are dropped on decode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceTypeResources {
    /// Requests.
    #[serde(default, deserialize_with = "without_nulls")]
    pub requests: BTreeMap<String, String>,
    /// Limits.
    #[serde(default, deserialize_with = "without_nulls")]
    pub limits: BTreeMap<String, String>,
}

fn without_nulls<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, Option<String>>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::model::{ManagedServiceIdentity, ProvisioningState};

    fn example(path: &str) -> serde_json::Value {
        let full = format!("/work/shared/azure-specs/mls-2025-09-01/examples/Compute/{path}");
        serde_json::from_str(&std::fs::read_to_string(full).unwrap()).unwrap()
    }

    #[test]
    fn odd_identities_in_a_listing_still_decode() {
        use crate::azure::model::AksComputeResource;
        // A workspace listing decodes every compute, of any type, as the caller's type: an
        // identity without `type` or with `userAssignedIdentities: null` must not fail it.
        for identity in [
            serde_json::json!({"principalId": "p"}),
            serde_json::json!({"type": "SystemAssigned", "userAssignedIdentities": null}),
            serde_json::json!(null),
        ] {
            let body = serde_json::json!({
                "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/computes/c",
                "identity": identity,
                "properties": {"computeType": "AmlCompute"},
            });
            let aks: AksComputeResource = serde_json::from_value(body.clone()).unwrap();
            assert!(!aks.is_expected_type());
            let k: KubernetesComputeResource = serde_json::from_value(body).unwrap();
            // Sent back (GET-modify-PUT), an identity without a type carries none.
            let sent = serde_json::to_value(k.for_request()).unwrap();
            assert!(
                sent["identity"]
                    .get("type")
                    .is_none_or(|t| t == "SystemAssigned"),
                "{sent}"
            );
            assert!(sent["identity"].get("principalId").is_none(), "{sent}");
        }
    }

    #[test]
    fn official_examples_decode_and_drop_connection_strings() {
        let ex = example("get/KubernetesCompute.json");
        let mut body = ex["responses"]["200"]["body"].clone();
        body["properties"]["properties"]["relayConnectionString"] =
            serde_json::json!("Endpoint=sb://x/;SharedAccessKey=TOPSECRET");
        let c: KubernetesComputeResource = serde_json::from_value(body).unwrap();
        assert!(c.is_expected_type());
        assert_eq!(c.provisioning_state(), Some(&ProvisioningState::Succeeded));
        assert_eq!(c.namespace(), "default");
        let props = c.properties.properties.as_ref().unwrap();
        assert_eq!(
            props.extension_instance_release_train.as_deref(),
            Some("stable")
        );
        let it = &props.instance_types.as_ref().unwrap()["defaultInstanceType"];
        let res = it.resources.as_ref().unwrap();
        assert_eq!(res.requests.get("memory").map(String::as_str), Some("4Gi"));
        assert!(
            !res.requests.contains_key("nvidia.com/gpu"),
            "nulls dropped"
        );
        let out = serde_json::to_string(&c).unwrap() + &format!("{c:?}");
        assert!(!out.contains("TOPSECRET"), "{out}");
    }

    #[test]
    fn attach_body_has_only_writable_fields() {
        let mut c = KubernetesComputeResource::attach(
            "eastus",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/k",
            "team-a",
        );
        c.identity = Some(ManagedServiceIdentity::user_assigned(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ml",
        ));
        c.id = Some("x".into());
        c.properties.provisioning_state = Some(ProvisioningState::Succeeded);
        let v = serde_json::to_value(c.for_request()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "location": "eastus",
                "identity": {"type": "UserAssigned", "userAssignedIdentities": {"/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ml": {}}},
                "properties": {
                    "computeType": "Kubernetes",
                    "resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/k",
                    "properties": {"namespace": "team-a"}
                }
            })
        );
    }
}
