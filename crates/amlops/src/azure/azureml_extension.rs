//! The Azure ML cluster extension body (`Microsoft.AzureML.Kubernetes`), built the way
//! Azure's own CLI builds it.
//!
//! `az k8s-extension create --extension-type Microsoft.AzureML.Kubernetes` does not send the
//! user's settings as they are: it validates them and adds keys the chart needs
//! (Azure/azure-cli-extensions `partner_extensions/AzureMLKubernetes.py`): `cluster_name`,
//! `clusterId`, `domain`, `location`, `jobSchedulerLocation`, `cluster_name_friendly`, the
//! relay/service-bus/nginx flags, `scoringFe.serviceType.*` for the router type and
//! `scoringFe.sslSecret` or the base64 PEM pair `scoringFe.sslCert`/`scoringFe.sslKey`.
//! Raw ARM callers that skip them fail the extension's SSL health check
//! (hashicorp/terraform-provider-azurerm#24547). Microsoft's raw-ARM template
//! (Azure/AML-Kubernetes `files/deployextension.json`) spells the same body out; the table
//! test below evaluates that template and compares.
//!
//! Differences from the template, all on the CLI's side (which is what Azure ML support
//! documents): `domain` is `{location}.cloudapp.azure.com` (the template writes the bare
//! location), `location` is sent, and with a TLS Secret the documented `sslSecret` key is sent
//! besides `scoringFe.sslSecret`. Boolean template values (`True`/`False` from its
//! `boolToString`) are sent the same way; the flags the template writes as JSON booleans
//! (`scoringFe.serviceType.*`) are sent as `"true"`/`"false"`, since settings are strings.

use std::collections::BTreeMap;

use base64::Engine;

use super::config::Secret;
use super::model::{
    AutoUpgradeMode, ExtensionIdentity, ExtensionRequest, ExtensionRequestProperties,
    ExtensionScope, ProtectedSettings, ScopeCluster,
};
use super::resource_id::{AKS_NAMESPACE, ResourceId};

/// Extension type of the Azure ML extension.
pub const AZUREML_EXTENSION_TYPE: &str = "Microsoft.AzureML.Kubernetes";
/// Release namespace the CLI forces for the Azure ML extension.
pub const AZUREML_RELEASE_NAMESPACE: &str = "azureml";
/// Release train the CLI sends when none is given.
pub const DEFAULT_RELEASE_TRAIN: &str = "stable";

/// Settings the builder derives: callers may not set them through
/// [`AzureMlExtensionSpec::extra_settings`].
pub const DERIVED_KEYS: &[&str] = &[
    "enableTraining",
    "enableInference",
    "allowInsecureConnections",
    "inferenceRouterServiceType",
    "internalLoadBalancerProvider",
    "inferenceRouterHA",
    "clusterPurpose",
    "sslCname",
    "sslSecret",
    "cluster_name",
    "clusterId",
    "prometheus.prometheusSpec.externalLabels.cluster_name",
    "cluster_name_friendly",
    "domain",
    "location",
    "jobSchedulerLocation",
    "servicebus.enabled",
    "relayserver.enabled",
    "nginxIngress.enabled",
    "installNvidiaDevicePlugin",
    "installPromOp",
    "installVolcano",
    "installDcgmExporter",
    "isAKSMigration",
];

/// Prefix of derived `scoringFe.*` keys (reserved as a whole).
const SCORING_FE_PREFIX: &str = "scoringFe.";
/// Prefix of node selector keys.
const NODE_SELECTOR_PREFIX: &str = "nodeSelector.";

/// What the builder needs to know about the AKS cluster.
#[derive(Clone, Debug)]
pub struct ClusterFacts {
    /// ARM id of the managed cluster.
    pub id: ResourceId,
    /// Region (any case; sent lower-case).
    pub location: String,
    /// Total node count, if known (decides `inferenceRouterHA`/`clusterPurpose` defaults
    /// below 3 nodes, as the CLI does).
    pub node_count: Option<i64>,
}

/// Which chart version to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionPolicy {
    /// Follow a release train with minor auto-upgrade (`autoUpgradeMinorVersion: true`).
    ReleaseTrain(String),
    /// Pin a version (`autoUpgradeMinorVersion: false`; no release train is sent).
    Pinned(String),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        Self::ReleaseTrain(DEFAULT_RELEASE_TRAIN.to_owned())
    }
}

/// `inferenceRouterServiceType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterServiceType {
    /// `LoadBalancer` (public, or internal with [`InferenceSpec::internal_load_balancer`]).
    LoadBalancer,
    /// `NodePort`.
    NodePort,
    /// `ClusterIP`.
    ClusterIp,
}

impl RouterServiceType {
    /// The value the template allows (`LoadBalancer|NodePort|ClusterIP`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoadBalancer => "LoadBalancer",
            Self::NodePort => "NodePort",
            Self::ClusterIp => "ClusterIP",
        }
    }
}

/// TLS of the inference router (`azureml-fe`).
#[derive(Clone, Debug)]
pub enum InferenceTls {
    /// HTTP only (`allowInsecureConnections=True`).
    Disabled,
    /// An Opaque Secret in namespace `azureml` with `cert.pem` and `key.pem`.
    Secret {
        /// Secret name.
        name: String,
        /// The DNS name clients use (must match the certificate).
        cname: String,
    },
    /// The PEM pair, sent base64-encoded as protected settings.
    Pem {
        /// PEM certificate chain.
        cert: Secret,
        /// PEM private key.
        key: Secret,
        /// The DNS name clients use (must match the certificate).
        cname: String,
    },
}

/// Real-time inference settings.
#[derive(Clone, Debug)]
pub struct InferenceSpec {
    /// Router service type.
    pub router_service_type: RouterServiceType,
    /// Internal load balancer (`internalLoadBalancerProvider=azure`; LoadBalancer only).
    pub internal_load_balancer: bool,
    /// `inferenceRouterHA` (3 router replicas; needs 3 nodes). `None`: true unless the
    /// cluster has fewer than 3 nodes.
    pub high_availability: Option<bool>,
    /// TLS.
    pub tls: InferenceTls,
}

/// `clusterPurpose` of the extension (`DevTest|FastProd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtensionClusterPurpose {
    /// Production.
    FastProd,
    /// Development and test.
    DevTest,
}

/// Optional components of the chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddOns {
    /// `installNvidiaDevicePlugin` (default false).
    pub nvidia_device_plugin: bool,
    /// `installPromOp` (default true).
    pub prometheus_operator: bool,
    /// `installVolcano` (default true).
    pub volcano: bool,
    /// `installDcgmExporter` (default false).
    pub dcgm_exporter: bool,
}

impl Default for AddOns {
    fn default() -> Self {
        Self {
            nvidia_device_plugin: false,
            prometheus_operator: true,
            volcano: true,
            dcgm_exporter: false,
        }
    }
}

/// Everything that decides the Azure ML extension body.
#[derive(Clone, Debug)]
pub struct AzureMlExtensionSpec {
    /// The cluster.
    pub cluster: ClusterFacts,
    /// `enableTraining`.
    pub training: bool,
    /// `enableInference` and its settings.
    pub inference: Option<InferenceSpec>,
    /// Release train or pinned version.
    pub version: VersionPolicy,
    /// `autoUpgradeMode` (2025-03-01; only with a release train).
    pub auto_upgrade_mode: Option<AutoUpgradeMode>,
    /// `clusterPurpose`; `None`: DevTest below 3 nodes, else FastProd.
    pub cluster_purpose: Option<ExtensionClusterPurpose>,
    /// `nodeSelector.<key>=<value>`.
    pub node_selector: BTreeMap<String, String>,
    /// Chart components.
    pub add_ons: AddOns,
    /// Take over a legacy `azureml-fe` left by an AKS compute (Azure/AML-Kubernetes
    /// `docs/attach-compute-on-aks-v1-cluster.md`: `scoringFe.enableUpgrade=true`; the CLI's
    /// `isAKSMigration=true` → `scoringFe.namespace=default`). Both are sent.
    pub migrate_legacy_front_end: bool,
    /// Further settings (e.g. `amloperator.skipResourceValidation`); derived keys refused.
    pub extra_settings: BTreeMap<String, String>,
}

impl AzureMlExtensionSpec {
    /// A spec with the defaults of the CLI and the template for `cluster`.
    pub fn new(cluster: ClusterFacts) -> Self {
        Self {
            cluster,
            training: false,
            inference: None,
            version: VersionPolicy::default(),
            auto_upgrade_mode: None,
            cluster_purpose: None,
            node_selector: BTreeMap::new(),
            add_ons: AddOns::default(),
            migrate_legacy_front_end: false,
            extra_settings: BTreeMap::new(),
        }
    }
}

/// Why a spec cannot become an extension body (the CLI's own checks and wording).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionSpecError {
    /// Neither training nor inference.
    #[error(
        "To create Microsoft.AzureML.Kubernetes extension, either enable Machine Learning training or inference by specifying '--configuration-settings enableTraining=true' or '--configuration-settings enableInference=true'."
    )]
    NoWorkload,
    /// TLS without `sslCname`.
    #[error(
        "To enable HTTPs endpoint, please specify sslCname parameter in --configuration-settings."
    )]
    TlsWithoutCname,
    /// NodePort with an internal load balancer.
    #[error(
        "When using nodePort as inferenceRouterServiceType, no need to specify internalLoadBalancerProvider."
    )]
    NodePortWithInternalLoadBalancer,
    /// ClusterIP with an internal load balancer (amlops' rule: the provider only applies to
    /// a LoadBalancer service).
    #[error("internalLoadBalancerProvider applies only to inferenceRouterServiceType=LoadBalancer")]
    ClusterIpWithInternalLoadBalancer,
    /// An extra setting would override a derived key.
    #[error("setting {0:?} is derived by amlops and cannot be set directly")]
    ReservedSetting(String),
    /// A value that must not be empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// Not an AKS managed cluster.
    #[error("the Azure ML extension body is built for AKS managed clusters, not {0}")]
    NotAManagedCluster(String),
}

fn flag(b: bool) -> String {
    // The template's boolToString.
    if b { "True" } else { "False" }.to_owned()
}

fn lower_flag(b: bool) -> String {
    if b { "true" } else { "false" }.to_owned()
}

impl AzureMlExtensionSpec {
    /// Builds the PUT body.
    ///
    /// # Errors
    /// [`ExtensionSpecError`] with the CLI's wording where it has one.
    pub fn build(&self) -> Result<ExtensionRequest, ExtensionSpecError> {
        let c = &self.cluster;
        if !c.id.is_type(AKS_NAMESPACE, "managedClusters") {
            return Err(ExtensionSpecError::NotAManagedCluster(format!(
                "{}/{}",
                c.id.namespace(),
                c.id.resource_type()
            )));
        }
        if c.location.trim().is_empty() {
            return Err(ExtensionSpecError::Empty("the cluster location"));
        }
        if !self.training && self.inference.is_none() {
            return Err(ExtensionSpecError::NoWorkload);
        }
        for key in self.extra_settings.keys() {
            if DERIVED_KEYS.iter().any(|d| d.eq_ignore_ascii_case(key))
                || key.starts_with(SCORING_FE_PREFIX)
                || key.starts_with(NODE_SELECTOR_PREFIX)
            {
                return Err(ExtensionSpecError::ReservedSetting(key.clone()));
            }
        }
        let small = c.node_count.is_some_and(|n| n < 3);
        let location: String = c
            .location
            .chars()
            .filter(|ch| !ch.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        let id = c.id.to_string();
        let mut s = BTreeMap::new();
        let mut protected = ProtectedSettings::new();
        let mut set = |k: &str, v: String| {
            s.insert(k.to_owned(), v);
        };
        set("enableTraining", flag(self.training));
        set("enableInference", flag(self.inference.is_some()));
        let purpose = self.cluster_purpose.unwrap_or(if small {
            ExtensionClusterPurpose::DevTest
        } else {
            ExtensionClusterPurpose::FastProd
        });
        set(
            "clusterPurpose",
            match purpose {
                ExtensionClusterPurpose::FastProd => "FastProd",
                ExtensionClusterPurpose::DevTest => "DevTest",
            }
            .to_owned(),
        );
        set("cluster_name", id.clone());
        set("clusterId", id.clone());
        set(
            "prometheus.prometheusSpec.externalLabels.cluster_name",
            id.clone(),
        );
        set("cluster_name_friendly", c.id.name().to_owned());
        set("domain", format!("{location}.cloudapp.azure.com"));
        set("location", location.clone());
        set("jobSchedulerLocation", location.clone());
        set("servicebus.enabled", "false".into());
        set("relayserver.enabled", "false".into());
        set("nginxIngress.enabled", "true".into());
        set(
            "installNvidiaDevicePlugin",
            flag(self.add_ons.nvidia_device_plugin),
        );
        set("installPromOp", flag(self.add_ons.prometheus_operator));
        set("installVolcano", flag(self.add_ons.volcano));
        set("installDcgmExporter", flag(self.add_ons.dcgm_exporter));
        if let Some(inf) = &self.inference {
            let ilb = inf.internal_load_balancer;
            match inf.router_service_type {
                RouterServiceType::NodePort if ilb => {
                    return Err(ExtensionSpecError::NodePortWithInternalLoadBalancer);
                }
                RouterServiceType::ClusterIp if ilb => {
                    return Err(ExtensionSpecError::ClusterIpWithInternalLoadBalancer);
                }
                _ => {}
            }
            let insecure = matches!(inf.tls, InferenceTls::Disabled);
            set("allowInsecureConnections", flag(insecure));
            set(
                "inferenceRouterServiceType",
                inf.router_service_type.as_str().to_owned(),
            );
            if ilb {
                set("internalLoadBalancerProvider", "azure".into());
            }
            set(
                "inferenceRouterHA",
                flag(inf.high_availability.unwrap_or(!small)),
            );
            if inf.router_service_type == RouterServiceType::NodePort {
                set("scoringFe.serviceType.nodePort", lower_flag(true));
            } else {
                set(
                    "scoringFe.serviceType.internalLoadBalancer",
                    lower_flag(ilb),
                );
            }
            match &inf.tls {
                InferenceTls::Disabled => {}
                InferenceTls::Secret { name, cname } => {
                    if cname.trim().is_empty() {
                        return Err(ExtensionSpecError::TlsWithoutCname);
                    }
                    if name.trim().is_empty() {
                        return Err(ExtensionSpecError::Empty("the TLS Secret name"));
                    }
                    set("sslCname", cname.clone());
                    set("sslSecret", name.clone());
                    set("scoringFe.sslSecret", name.clone());
                }
                InferenceTls::Pem { cert, key, cname } => {
                    if cname.trim().is_empty() {
                        return Err(ExtensionSpecError::TlsWithoutCname);
                    }
                    if cert.is_empty() || key.is_empty() {
                        return Err(ExtensionSpecError::Empty("the TLS certificate and key"));
                    }
                    set("sslCname", cname.clone());
                    let b64 = base64::engine::general_purpose::STANDARD;
                    protected.insert("scoringFe.sslCert", b64.encode(cert.expose()));
                    protected.insert("scoringFe.sslKey", b64.encode(key.expose()));
                }
            }
            if self.migrate_legacy_front_end {
                set("scoringFe.enableUpgrade", "true".into());
                set("isAKSMigration", "true".into());
                set("scoringFe.namespace", "default".into());
            }
        }
        for (k, v) in &self.node_selector {
            if k.is_empty() {
                return Err(ExtensionSpecError::Empty("a node selector key"));
            }
            set(&format!("{NODE_SELECTOR_PREFIX}{k}"), v.clone());
        }
        for (k, v) in &self.extra_settings {
            set(k, v.clone());
        }
        let (auto_upgrade, train, version, mode) = match &self.version {
            VersionPolicy::ReleaseTrain(t) if t.trim().is_empty() => {
                return Err(ExtensionSpecError::Empty("the release train"));
            }
            VersionPolicy::ReleaseTrain(t) => {
                (true, Some(t.clone()), None, self.auto_upgrade_mode.clone())
            }
            VersionPolicy::Pinned(v) if v.trim().is_empty() => {
                return Err(ExtensionSpecError::Empty("the pinned version"));
            }
            VersionPolicy::Pinned(v) => (false, None, Some(v.clone()), None),
        };
        Ok(ExtensionRequest {
            identity: Some(ExtensionIdentity::system_assigned()),
            properties: ExtensionRequestProperties {
                extension_type: AZUREML_EXTENSION_TYPE.to_owned(),
                auto_upgrade_mode: mode,
                auto_upgrade_minor_version: Some(auto_upgrade),
                release_train: train,
                version,
                scope: Some(ExtensionScope {
                    cluster: Some(ScopeCluster {
                        release_namespace: Some(AZUREML_RELEASE_NAMESPACE.to_owned()),
                    }),
                    namespace: None,
                }),
                configuration_settings: s,
                configuration_protected_settings: protected,
            },
        })
    }
}

#[cfg(test)]
#[path = "azureml_extension_template_tests.rs"]
mod template_tests;
