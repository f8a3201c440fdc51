//! Azure ML computes (`Microsoft.MachineLearningServices/workspaces/computes`), api-version
//! 2025-09-01: the definition every compute type shares, and the `AKS` type.
//!
//! The swagger models a compute as `ComputeResource` (the ARM envelope: id, name, type,
//! location, identity, tags) whose `properties` is a `Compute` (computeType, computeLocation,
//! description, resourceId, provisioningState, …) with the compute type's own `properties`
//! (`AKSSchema`, `KubernetesSchema`, …). Here that is one generic [`ComputeResource`] /
//! [`Compute`] over those inner properties ([`ComputeSchema`]): [`AksComputeResource`]
//! (below) and [`KubernetesComputeResource`](super::KubernetesComputeResource)
//! (`kubernetes_compute`).
//!
//! One type serves responses and requests. Read-only fields (swagger `readOnly`: id, name,
//! type, provisioningState, provisioningErrors, isAttachedCompute, createdOn, modifiedOn,
//! the identity's ids, and each type's own, e.g. AKS systemServices) are never sent:
//! `ArmClient::put_compute` sends [`ComputeResource::for_request`], which clears them. Note
//! that the swagger does *not* mark `clusterFqdn` read-only, so it is kept (a GET-modify-PUT
//! update sends it back, as the Azure ML SDK does).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::KubeconfigSecret;
use crate::azure::config::Secret;
use crate::azure::error::ArmErrorResponse;

string_enum! {
    /// Provisioning state of a compute.
    ProvisioningState {
        /// `Unknown`.
        Unknown = "Unknown",
        /// `Updating`.
        Updating = "Updating",
        /// `Creating`.
        Creating = "Creating",
        /// `Deleting`.
        Deleting = "Deleting",
        /// `Succeeded`.
        Succeeded = "Succeeded",
        /// `Failed`.
        Failed = "Failed",
        /// `Canceled`.
        Canceled = "Canceled",
    }
}

impl ProvisioningState {
    /// True while Azure is still working on the compute.
    pub fn is_transitioning(&self) -> bool {
        matches!(self, Self::Creating | Self::Updating | Self::Deleting)
    }
}

string_enum! {
    /// Intended use of the cluster (decides Azure ML's minimum size).
    ClusterPurpose {
        /// Production: at least 3 nodes and 12 vCPUs.
        FastProd = "FastProd",
        /// Dense production.
        DenseProd = "DenseProd",
        /// Development and test: any size.
        DevTest = "DevTest",
    }
}

string_enum! {
    /// Load balancer in front of the scoring endpoint.
    LoadBalancerType {
        /// Public IP.
        PublicIp = "PublicIp",
        /// Internal load balancer (in `loadBalancerSubnet`).
        InternalLoadBalancer = "InternalLoadBalancer",
    }
}

string_enum! {
    /// TLS termination mode of the scoring endpoint.
    SslConfigStatus {
        /// No TLS.
        Disabled = "Disabled",
        /// TLS with a provided certificate (`cert`, `key`, `cname`).
        Enabled = "Enabled",
        /// TLS with a Microsoft-issued certificate (`leafDomainLabel`).
        Auto = "Auto",
    }
}

/// What one compute type adds to the generic [`ComputeResource`] and [`Compute`]: its inner
/// `properties` (the swagger's `AKSSchema`, `KubernetesSchema`, … of the `Compute` subtype
/// whose `x-ms-discriminator-value` is [`COMPUTE_TYPE`](Self::COMPUTE_TYPE)).
pub trait ComputeSchema: Clone {
    /// The `computeType` of this type (swagger `ComputeType`): what [`Compute::default`]
    /// sets, so that every body built from a default says which type it is.
    const COMPUTE_TYPE: &'static str;

    /// Clears this type's read-only inner fields, for a request body
    /// ([`ComputeResource::for_request`]).
    fn clear_read_only(&mut self);
}

/// A compute resource of a workspace (swagger `ComputeResource`: the ARM `Resource` envelope
/// with `identity`, `location`, `tags` and the [`Compute`] definition), of the compute type
/// whose inner properties are `P` (e.g. [`AksComputeResource`],
/// [`KubernetesComputeResource`](super::KubernetesComputeResource)). The swagger's `sku` is
/// not modelled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputeResource<P: ComputeSchema> {
    /// ARM id (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Compute name (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ARM type (read-only).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Region: the workspace's location (what Azure's CLI and SDKs send).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Identity the compute's workloads use (a Kubernetes compute's AcrPull, storage access;
    /// amlops sets none on AKS computes, whose bodies then carry no `identity`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<ManagedServiceIdentity>,
    /// Tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// The compute definition.
    #[serde(default)]
    pub properties: Compute<P>,
}

impl<P: ComputeSchema> ComputeResource<P> {
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
            inner.clear_read_only();
        }
        body
    }

    /// Provisioning state, if Azure reported one.
    pub fn provisioning_state(&self) -> Option<&ProvisioningState> {
        self.properties.provisioning_state.as_ref()
    }

    /// True when Azure's `computeType` is the one `P` models ([`ComputeSchema::COMPUTE_TYPE`],
    /// case-insensitive): a compute of any other type decodes into a `ComputeResource<P>` too
    /// (a workspace's listing holds every type; a name may be taken by another type).
    pub fn is_expected_type(&self) -> bool {
        self.properties
            .compute_type
            .eq_ignore_ascii_case(P::COMPUTE_TYPE)
    }
}

/// The `properties` of a compute (swagger `Compute`, the base of every compute type, with
/// the type's own `properties`: `P`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compute<P: ComputeSchema> {
    /// `AKS`, `Kubernetes`, … (other types than `P`'s appear when listing a workspace's
    /// computes).
    #[serde(default)]
    pub compute_type: String,
    /// Region of the compute (create only): of an AKS cluster to create; SDK v2 sends the
    /// workspace's for a Kubernetes compute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_location: Option<String>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// ARM id of the cluster: the AKS cluster an AKS compute attaches (attach only), the
    /// AKS (`managedClusters`) or Arc (`connectedClusters`) cluster of a Kubernetes compute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// Read-only: why provisioning (or the attach) failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning_errors: Option<Vec<ArmErrorResponse>>,
    /// Read-only: true when the cluster was attached rather than created (always for
    /// Kubernetes computes).
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
    /// The compute type's own properties.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<P>,
}

impl<P: ComputeSchema> Default for Compute<P> {
    /// Every field unset but `computeType`, `P`'s ([`ComputeSchema::COMPUTE_TYPE`]).
    fn default() -> Self {
        Self {
            compute_type: P::COMPUTE_TYPE.to_owned(),
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

impl<P: ComputeSchema> Compute<P> {
    /// `(code, message)` of each provisioning error.
    pub fn provisioning_error_messages(&self) -> Vec<(String, String)> {
        self.provisioning_errors
            .iter()
            .flatten()
            .filter_map(|e| e.error.as_ref())
            .map(|e| {
                (
                    e.code.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// An AKS compute (swagger `ComputeResource` whose `properties` is an `AKS`).
pub type AksComputeResource = ComputeResource<AksProperties>;

/// The `properties` of an AKS compute (swagger `Compute` + `AKSSchema`).
pub type AksCompute = Compute<AksProperties>;

impl AksComputeResource {
    /// A compute body in `location` with the given AKS definition.
    pub fn aks(location: impl Into<String>, properties: AksCompute) -> Self {
        Self {
            location: Some(location.into()),
            properties,
            ..Default::default()
        }
    }
}

impl ComputeSchema for AksProperties {
    /// `AKS`.
    const COMPUTE_TYPE: &'static str = "AKS";

    /// `systemServices`.
    fn clear_read_only(&mut self) {
        self.system_services = None;
    }
}

/// `properties.properties` of an AKS compute.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AksProperties {
    /// FQDN of the cluster (not read-only in the swagger).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_fqdn: Option<String>,
    /// Read-only: Azure ML system services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_services: Option<Vec<SystemService>>,
    /// Number of agents (create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_count: Option<i32>,
    /// VM size of the agents (create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_vm_size: Option<String>,
    /// Intended use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_purpose: Option<ClusterPurpose>,
    /// TLS of the scoring endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_configuration: Option<SslConfiguration>,
    /// Custom VNet (create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aks_networking_configuration: Option<AksNetworkingConfiguration>,
    /// Load balancer type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer_type: Option<LoadBalancerType>,
    /// Subnet of an internal load balancer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer_subnet: Option<String>,
}

/// An Azure ML system service (read-only).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemService {
    /// Service type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_service_type: Option<String>,
    /// Public IP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip_address: Option<String>,
    /// Version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// TLS configuration. `cert` and `key` are secrets (GET never returns them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SslConfiguration {
    /// Disabled, Enabled or Auto.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<SslConfigStatus>,
    /// PEM certificate (Enabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<Secret>,
    /// PEM private key (Enabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    /// Host name the certificate is for (Enabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    /// Label of the Microsoft-issued name (Auto).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_domain_label: Option<String>,
    /// Overwrite an existing leaf domain label (Auto).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overwrite_existing_domain: Option<bool>,
    /// Issue the Microsoft-issued (`Auto`) certificate anew, for the same host name. Not in
    /// the ARM specification: what the Azure ML SDK v1 (`azureml-core`, `AksCompute.update`
    /// with `SslConfiguration(renew=True)`) adds to the `Auto` configuration it read back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew: Option<bool>,
}

/// Custom VNet settings of a created cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AksNetworkingConfiguration {
    /// Subnet resource id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// Kubernetes service CIDR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
    /// Kubernetes DNS service IP.
    #[serde(rename = "dnsServiceIP", skip_serializing_if = "Option::is_none")]
    pub dns_service_ip: Option<String>,
    /// Docker bridge CIDR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_bridge_cidr: Option<String>,
}

/// Answer of compute `listKeys` for an AKS compute. The kubeconfigs are plain YAML.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputeKeys {
    /// `AKS`.
    #[serde(default)]
    pub compute_type: Option<String>,
    /// User kubeconfig.
    #[serde(default)]
    pub user_kube_config: Option<KubeconfigSecret>,
    /// Admin kubeconfig.
    #[serde(default)]
    pub admin_kube_config: Option<KubeconfigSecret>,
    /// Name of the image pull secret.
    #[serde(default)]
    pub image_pull_secret_name: Option<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, UserAssignedIdentity>, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_default())
}

/// common-types `ManagedServiceIdentity`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedServiceIdentity {
    /// `None`, `SystemAssigned`, `UserAssigned` or `SystemAssigned,UserAssigned`. Required by
    /// the swagger, but tolerated when missing: one odd compute must not make a workspace's
    /// whole listing undecodable.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub identity_type: String,
    /// Read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// Read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// User-assigned identities by ARM id (Azure ML uses only the first one); `null` in an
    /// answer reads as none.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
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
        let full = format!("/work/shared/azure-specs/{path}");
        let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn decodes_official_examples() {
        let get = example("mls-2025-06-01/examples/Compute/get/AKSCompute.json");
        let c: AksComputeResource =
            serde_json::from_value(get["responses"]["200"]["body"].clone()).unwrap();
        assert!(c.is_expected_type());
        assert_eq!(c.provisioning_state(), Some(&ProvisioningState::Succeeded));
        assert_eq!(c.name.as_deref(), Some("compute123"));
        assert!(c.properties.resource_id.is_some());

        let put = example("mls-2025-09-01/examples/Compute/createOrUpdate/AKSCompute.json");
        let req: AksComputeResource =
            serde_json::from_value(put["parameters"]["parameters"].clone()).unwrap();
        assert_eq!(
            req.properties
                .properties
                .as_ref()
                .and_then(|p| p.agent_count),
            Some(4)
        );
        // Round trip of a request body is lossless.
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            put["parameters"]["parameters"]
        );

        let list = example("mls-2025-09-01/examples/Compute/list.json");
        let page: super::super::Page<AksComputeResource> =
            serde_json::from_value(list["responses"]["200"]["body"].clone()).unwrap();
        assert!(!page.value.is_empty());

        let keys = example("mls-2025-09-01/examples/Compute/listKeys.json");
        let k: ComputeKeys =
            serde_json::from_value(keys["responses"]["200"]["body"].clone()).unwrap();
        assert_eq!(
            k.user_kube_config.as_ref().map(|k| k.expose()),
            Some("user kube config...")
        );
        assert!(!format!("{k:?}").contains("kube config..."));
    }

    #[test]
    fn unknown_enum_values_survive() {
        let c: AksComputeResource = serde_json::from_str(
            r#"{"properties":{"computeType":"AKS","provisioningState":"Migrating",
                "properties":{"clusterPurpose":"fastprod","loadBalancerType":"Fancy"}}}"#,
        )
        .unwrap();
        assert_eq!(
            c.provisioning_state(),
            Some(&ProvisioningState::Other("Migrating".into()))
        );
        let p = c.properties.properties.unwrap();
        assert_eq!(p.cluster_purpose, Some(ClusterPurpose::FastProd));
        assert_eq!(
            p.load_balancer_type,
            Some(LoadBalancerType::Other("Fancy".into()))
        );
    }

    #[test]
    fn provisioning_errors_are_read() {
        let c: AksComputeResource = serde_json::from_str(
            r#"{"properties":{"computeType":"AKS","provisioningState":"Failed",
              "provisioningErrors":[{"error":{"code":"BadArgument","message":"Agent cores Cluster should have at least 12 cores to operate."}}]}}"#,
        )
        .unwrap();
        assert_eq!(
            c.properties.provisioning_error_messages(),
            vec![(
                "BadArgument".to_owned(),
                "Agent cores Cluster should have at least 12 cores to operate.".to_owned()
            )]
        );
    }

    #[test]
    fn tls_material_is_redacted_in_debug() {
        let ssl = SslConfiguration {
            status: Some(SslConfigStatus::Enabled),
            cert: Some(Secret::new("-----BEGIN CERTIFICATE-----abc")),
            key: Some(Secret::new("-----BEGIN PRIVATE KEY-----xyz")),
            cname: Some("scoring.contoso.com".into()),
            ..Default::default()
        };
        let dbg = format!("{ssl:?}");
        assert!(!dbg.contains("BEGIN"), "{dbg}");
        let json = serde_json::to_string(&ssl).unwrap();
        assert!(
            json.contains("BEGIN PRIVATE KEY"),
            "the body must carry the key"
        );
    }
}

/// Request bodies checked against the official swagger with `swagger_check.py`.
#[cfg(test)]
mod swagger_tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    const SPEC: &str =
        "/work/shared/azure-specs/mls-2025-09-01/machineLearningServices.compute-excerpt.json";
    const TOOL: &str = "/work/shared/tools/swagger_check.py";

    fn swagger_check(spec: &str, definition: &str, mode: &str, body: &serde_json::Value) {
        let (ok, problems) = run_check(spec, definition, mode, body);
        assert!(
            ok,
            "{definition} {mode} rejected:\n{problems}\nbody: {body:#}"
        );
    }

    fn run_check(
        spec: &str,
        definition: &str,
        mode: &str,
        body: &serde_json::Value,
    ) -> (bool, String) {
        let mut child = Command::new("python3")
            .args([TOOL, spec, definition, mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn the_checker_catches_read_only_fields() {
        // Guard against a vacuous check: the raw GET answer is not a valid request.
        let raw = serde_json::to_value(observed()).unwrap();
        let (ok, problems) = run_check(SPEC, "ComputeResource", "--request", &raw);
        assert!(!ok);
        assert!(problems.contains("provisioningState"), "{problems}");
    }

    /// What the engine sends to create a cluster: location, computeLocation, agents,
    /// network, TLS Auto, load balancer — no resourceId.
    fn create_body() -> AksComputeResource {
        AksComputeResource::aks(
            "eastus",
            AksCompute {
                compute_location: Some("eastus".into()),
                description: Some("Scoring cluster".into()),
                properties: Some(AksProperties {
                    agent_count: Some(3),
                    agent_vm_size: Some("Standard_D3_v2".into()),
                    cluster_purpose: Some(ClusterPurpose::FastProd),
                    ssl_configuration: Some(SslConfiguration {
                        status: Some(SslConfigStatus::Auto),
                        leaf_domain_label: Some("contoso".into()),
                        overwrite_existing_domain: Some(false),
                        ..Default::default()
                    }),
                    aks_networking_configuration: Some(AksNetworkingConfiguration {
                        subnet_id: Some("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/aks".into()),
                        service_cidr: Some("10.0.0.0/16".into()),
                        dns_service_ip: Some("10.0.0.10".into()),
                        docker_bridge_cidr: Some("172.17.0.1/16".into()),
                    }),
                    load_balancer_type: Some(LoadBalancerType::PublicIp),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
    }

    /// What the engine sends to attach: resourceId, purpose, TLS Enabled with cert and key,
    /// internal load balancer — none of the create-only fields.
    fn attach_body() -> AksComputeResource {
        AksComputeResource::aks(
            "eastus",
            AksCompute {
                resource_id: Some("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/shared".into()),
                properties: Some(AksProperties {
                    cluster_purpose: Some(ClusterPurpose::DevTest),
                    ssl_configuration: Some(SslConfiguration {
                        status: Some(SslConfigStatus::Enabled),
                        cert: Some(Secret::new("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")),
                        key: Some(Secret::new("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")),
                        cname: Some("scoring.contoso.com".into()),
                        ..Default::default()
                    }),
                    load_balancer_type: Some(LoadBalancerType::InternalLoadBalancer),
                    load_balancer_subnet: Some("aks-subnet".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
    }

    /// A GET answer with every read-only field set, as Azure returns it.
    fn observed() -> AksComputeResource {
        let mut c = attach_body();
        c.id = Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/computes/c".into());
        c.name = Some("c".into());
        c.resource_type = Some("Microsoft.MachineLearningServices/workspaces/computes".into());
        let p = &mut c.properties;
        p.provisioning_state = Some(ProvisioningState::Succeeded);
        p.provisioning_errors = Some(vec![]);
        p.is_attached_compute = Some(true);
        p.created_on = Some("2021-04-01T22:00:00.0000000+00:00".into());
        p.modified_on = Some("2021-04-01T22:00:00.0000000+00:00".into());
        let inner = p.properties.as_mut().unwrap();
        inner.cluster_fqdn = Some("shared-abc.hcp.eastus.azmk8s.io".into());
        inner.system_services = Some(vec![SystemService {
            system_service_type: Some("ScoringFrontEnd".into()),
            public_ip_address: Some("1.2.3.4".into()),
            version: Some("1".into()),
        }]);
        if let Some(ssl) = inner.ssl_configuration.as_mut() {
            ssl.cert = None;
            ssl.key = None;
        }
        c
    }

    #[test]
    fn create_body_matches_swagger() {
        let body = serde_json::to_value(create_body().for_request()).unwrap();
        assert!(body["properties"].get("resourceId").is_none());
        swagger_check(SPEC, "ComputeResource", "--request", &body);
    }

    #[test]
    fn attach_body_matches_swagger() {
        let body = serde_json::to_value(attach_body().for_request()).unwrap();
        let props = &body["properties"];
        assert!(props.get("computeLocation").is_none());
        for create_only in ["agentCount", "agentVmSize", "aksNetworkingConfiguration"] {
            assert!(props["properties"].get(create_only).is_none());
        }
        assert_eq!(
            props["properties"]["sslConfiguration"]["key"],
            "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
        );
        swagger_check(SPEC, "ComputeResource", "--request", &body);
    }

    #[test]
    fn update_of_an_observed_compute_drops_read_only_fields() {
        let observed = observed();
        // As a response, every field is legitimate…
        swagger_check(
            SPEC,
            "ComputeResource",
            "--response",
            &serde_json::to_value(&observed).unwrap(),
        );
        // …but a GET-modify-PUT update must not send the read-only ones.
        let mut update = observed.for_request();
        update.properties.description = Some("new".into());
        let body = serde_json::to_value(&update).unwrap();
        for ro in ["id", "name", "type"] {
            assert!(body.get(ro).is_none(), "{ro}");
        }
        for ro in [
            "provisioningState",
            "provisioningErrors",
            "isAttachedCompute",
            "createdOn",
            "modifiedOn",
        ] {
            assert!(body["properties"].get(ro).is_none(), "{ro}");
        }
        assert!(
            body["properties"]["properties"]
                .get("systemServices")
                .is_none()
        );
        // clusterFqdn is not read-only in the swagger: kept.
        assert!(
            body["properties"]["properties"]
                .get("clusterFqdn")
                .is_some()
        );
        swagger_check(SPEC, "ComputeResource", "--request", &body);
    }

    /// The renewal of an `Auto` certificate (GET-modify-PUT with `renew: true`) differs
    /// from the specification by that one field, which the SDK v1 sends
    /// (`crates/amlops-emulator/tests/sdk_v1`: `test_update_renews_a_microsoft_certificate` renews through it).
    #[test]
    fn renew_is_the_only_field_outside_the_spec() {
        let mut update = observed().for_request();
        let props = update
            .properties
            .properties
            .get_or_insert_with(Default::default);
        props.ssl_configuration = Some(SslConfiguration {
            status: Some(SslConfigStatus::Auto),
            leaf_domain_label: Some("contoso".into()),
            overwrite_existing_domain: Some(false),
            renew: Some(true),
            ..Default::default()
        });
        let body = serde_json::to_value(&update).unwrap();
        let (ok, problems) = run_check(SPEC, "ComputeResource", "--request", &body);
        assert!(!ok);
        let problems: Vec<&str> = problems.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            problems,
            [".properties.properties.sslConfiguration.renew: property not in the spec"],
            "{body:#}"
        );
    }

    #[test]
    fn official_request_examples_round_trip_through_the_model() {
        for example in [
            "mls-2025-09-01/examples/Compute/createOrUpdate/AKSCompute.json",
            "mls-2025-09-01/examples/Compute/createOrUpdate/BasicAKSCompute.json",
        ] {
            let text =
                std::fs::read_to_string(format!("/work/shared/azure-specs/{example}")).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let c: AksComputeResource =
                serde_json::from_value(v["parameters"]["parameters"].clone()).unwrap();
            let body = serde_json::to_value(c.for_request()).unwrap();
            assert_eq!(body, v["parameters"]["parameters"], "{example}");
            swagger_check(SPEC, "ComputeResource", "--request", &body);
        }
    }
}
