//! Azure ML compute of type `Kubernetes` (`…/workspaces/{ws}/computes/{name}`, swagger
//! `Kubernetes` + `KubernetesProperties`), api-version 2025-09-01 (same schema in 2025-12-01
//! and 2026-05-01).
//!
//! A Kubernetes compute is one attachment of a cluster (that runs the Azure ML extension) to
//! a workspace, with a namespace and an optional identity. The swagger's two secret fields,
//! `relayConnectionString` and `serviceBusConnectionString` (`x-ms-secret`, Arc-era
//! plumbing), are deliberately not modelled: they are dropped when decoding and can never
//! be serialised, logged or sent back.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::ProvisioningState;
use crate::azure::error::ArmErrorResponse;

/// A Kubernetes compute (request and response).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesComputeResource {
    /// ARM id (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Compute name (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ARM type (read-only).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// The workspace's location (what Azure's CLI and SDK v2 always send).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Identity the compute's workloads use (AcrPull, storage access).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<ManagedServiceIdentity>,
    /// Tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// The compute definition.
    #[serde(default)]
    pub properties: KubernetesCompute,
}

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

    /// This resource without its read-only fields: what may be sent in a PUT.
    pub fn for_request(&self) -> Self {
        let mut body = self.clone();
        body.id = None;
        body.name = None;
        body.resource_type = None;
        if let Some(identity) = body.identity.as_mut() {
            identity.principal_id = None;
            identity.tenant_id = None;
            for v in identity.user_assigned_identities.values_mut() {
                *v = UserAssignedIdentity::default();
            }
        }
        let p = &mut body.properties;
        p.provisioning_state = None;
        p.provisioning_errors = None;
        p.is_attached_compute = None;
        p.created_on = None;
        p.modified_on = None;
        if let Some(inner) = p.properties.as_mut() {
            inner.extension_instance_release_train = None;
            inner.extension_principal_id = None;
            inner.vc_name = None;
        }
        body
    }

    /// Provisioning state, if Azure reported one.
    pub fn provisioning_state(&self) -> Option<&ProvisioningState> {
        self.properties.provisioning_state.as_ref()
    }

    /// The namespace workloads run in (`default` when Azure reports none).
    pub fn namespace(&self) -> &str {
        self.properties
            .properties
            .as_ref()
            .and_then(|p| p.namespace.as_deref())
            .unwrap_or("default")
    }

    /// True for a Kubernetes compute.
    pub fn is_kubernetes(&self) -> bool {
        self.properties
            .compute_type
            .eq_ignore_ascii_case("Kubernetes")
    }
}

/// `properties` of a Kubernetes compute (swagger `Compute` + `KubernetesSchema`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesCompute {
    /// `Kubernetes`.
    #[serde(default)]
    pub compute_type: String,
    /// Region (SDK v2 sends the workspace's; create only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_location: Option<String>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// ARM id of the AKS (`managedClusters`) or Arc (`connectedClusters`) cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// Read-only: why the attach failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning_errors: Option<Vec<ArmErrorResponse>>,
    /// Read-only: `true` for Kubernetes computes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_attached_compute: Option<bool>,
    /// Read-only, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    /// Read-only, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_on: Option<String>,
    /// Disable key-based local auth (create only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_local_auth: Option<bool>,
    /// Kubernetes-specific properties.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<KubernetesProperties>,
}

impl Default for KubernetesCompute {
    fn default() -> Self {
        Self {
            compute_type: "Kubernetes".to_owned(),
            compute_location: None,
            description: None,
            resource_id: None,
            provisioning_state: None,
            provisioning_errors: None,
            is_attached_compute: None,
            created_on: None,
            modified_on: None,
            disable_local_auth: None,
            properties: None,
        }
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

/// common-types `ManagedServiceIdentity`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedServiceIdentity {
    /// `None`, `SystemAssigned`, `UserAssigned` or `SystemAssigned,UserAssigned`.
    #[serde(rename = "type")]
    pub identity_type: String,
    /// Read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// Read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// User-assigned identities by ARM id (Azure ML uses only the first one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_assigned_identities: BTreeMap<String, UserAssignedIdentity>,
}

impl ManagedServiceIdentity {
    /// `{type: SystemAssigned}`.
    pub fn system_assigned() -> Self {
        Self {
            identity_type: "SystemAssigned".to_owned(),
            ..Default::default()
        }
    }

    /// `{type: UserAssigned, userAssignedIdentities: {id: {}}}`.
    pub fn user_assigned(identity_id: impl Into<String>) -> Self {
        Self {
            identity_type: "UserAssigned".to_owned(),
            user_assigned_identities: BTreeMap::from([(
                identity_id.into(),
                UserAssignedIdentity::default(),
            )]),
            ..Default::default()
        }
    }
}

/// A user-assigned identity entry (ids are read-only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAssignedIdentity {
    /// Read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// Read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(path: &str) -> serde_json::Value {
        let full = format!("/work/shared/azure-specs/mls-2025-09-01/examples/Compute/{path}");
        serde_json::from_str(&std::fs::read_to_string(full).unwrap()).unwrap()
    }

    #[test]
    fn official_examples_decode_and_drop_connection_strings() {
        let ex = example("get/KubernetesCompute.json");
        let mut body = ex["responses"]["200"]["body"].clone();
        body["properties"]["properties"]["relayConnectionString"] =
            serde_json::json!("Endpoint=sb://x/;SharedAccessKey=TOPSECRET");
        let c: KubernetesComputeResource = serde_json::from_value(body).unwrap();
        assert!(c.is_kubernetes());
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
