//! The engine of `AzureMLExtension`: the Azure ML cluster extension
//! (`Microsoft.AzureML.Kubernetes`) on one AKS cluster.
//!
//! Same shape as the engine of `KubernetesCompute`: [`observe`](Engine::observe_extension)
//! makes every read, [`decide`] is pure and returns an [`ExtensionPlan`] (status, at most one
//! [`ExtensionWrite`], events, requeue), [`settle`] completes it from the write's result, and
//! every Azure failure goes through the same [`verdict`](super::verdict::verdict).
//!
//! What the engine checks first (<https://learn.microsoft.com/azure/machine-learning/how-to-deploy-kubernetes-extension>, and the
//! checks of `az k8s-extension create`): before
//! it PUTs the extension it reads the provider registration, the AKS cluster (managed
//! identity, local accounts, power state, node count for high availability) and the
//! cluster's extensions (one Azure ML extension per cluster), and stalls with an actionable
//! reason instead of letting Azure fail a 15-minute Helm install. Protected settings are
//! write-only in Azure, so drift is noticed from the hashes of what amlops last sent:
//! `status.settingsHash` (the spec) and `status.protectedSettingsHash` (the certificate and
//! key); a steady resync is one ARM read and no write; a change is one PATCH with the
//! changed settings and, when a protected value changed, all protected settings (Azure
//! replaces them as a whole).

pub mod cluster;
mod decide;
mod run;
#[cfg(test)]
mod tests;

use sha2::{Digest, Sha256};

use crate::azure::azureml_extension::{
    AddOns, AzureMlExtensionSpec as BodySpec, ClusterFacts, ExtensionClusterPurpose, InferenceSpec,
    InferenceTls, RouterServiceType as BodyRouter, VersionPolicy,
};
use crate::azure::config::Secret;
use crate::azure::model::{ExtensionRequest, ProtectedSettings};
use crate::azure::{AzureError, ExtensionId, ResourceId};
use crate::crd::{
    ADOPT_ANNOTATION, AzureMLExtension, AzureMlExtensionSpec, ExtensionDeletionPolicy,
    ExtensionPurpose, ExtensionTlsMode, RouterServiceType, TlsDelivery,
};

/// The steady-state resync interval of this kind (tests compare it with the other kinds').
#[cfg(test)]
pub(crate) use decide::steady;
pub use decide::{
    ExtensionDone, ExtensionPlan, ExtensionWrite, ExtensionWriteFailure, decide, settle,
};
pub use run::{ExtensionStore, ObservedExtension};

use super::observe::VerifiedTls;
use super::store::ObjKey;
use super::verdict::{Stall, Verdict};

/// Kind name in events and keys.
pub const KIND: &str = "AzureMLExtension";

/// What the user asked for in an `AzureMLExtension`, with its TLS Secret read and verified.
#[derive(Clone, Debug)]
pub struct ExtensionDesired {
    /// The CR.
    pub key: ObjKey,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The AKS cluster, or why its id does not parse.
    pub cluster: Result<ResourceId, String>,
    /// Name of the extension resource.
    pub extension_name: String,
    /// The spec.
    pub spec: AzureMlExtensionSpec,
    /// The verified certificate and key of `inference.tls.secretRef` (never in `Debug`).
    pub tls: Option<VerifiedTls>,
    /// Why the referenced Secret could not be used (set by the caller that read it).
    pub tls_error: Option<Stall>,
    /// Names of the `KubernetesCompute`s that reference this extension.
    pub in_use: Vec<String>,
    /// `amlops.dev/adopt: "true"`.
    pub adopt: bool,
    /// `Delete` or `Orphan`.
    pub deletion_policy: ExtensionDeletionPolicy,
    /// Retries of a `Failed` install or update.
    pub max_retries: u32,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

fn hex(h: Sha256) -> String {
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl ExtensionDesired {
    /// From the CR, the verified certificate and key of its TLS Secret (`None`: no TLS, or
    /// the Secret could not be used — see [`with_tls_error`](Self::with_tls_error)), and the
    /// names of the `KubernetesCompute`s that reference it.
    pub fn new(ext: &AzureMLExtension, tls: Option<VerifiedTls>, in_use: Vec<String>) -> Self {
        let s = &ext.spec;
        let a = ext.metadata.annotations.clone().unwrap_or_default();
        Self {
            key: ObjKey {
                kind: KIND.into(),
                namespace: ext.metadata.namespace.clone().unwrap_or_default(),
                name: ext.metadata.name.clone().unwrap_or_default(),
            },
            generation: ext.metadata.generation,
            cluster: s
                .cluster
                .resource_id
                .parse::<ResourceId>()
                .map_err(|e| format!("cluster.resourceId: {e}")),
            extension_name: ext.extension_name(),
            spec: s.clone(),
            tls,
            tls_error: None,
            in_use,
            adopt: a.get(ADOPT_ANNOTATION).is_some_and(|v| v == "true"),
            deletion_policy: s.deletion_policy,
            max_retries: u32::try_from(s.max_retries).unwrap_or(0),
            deleting: ext.metadata.deletion_timestamp.is_some(),
        }
    }

    /// Record why the referenced TLS Secret could not be used.
    #[must_use]
    pub fn with_tls_error(mut self, stall: Stall) -> Self {
        self.tls_error = Some(stall);
        self
    }

    /// ARM id of the extension.
    ///
    /// # Errors
    /// `Config` when the cluster id or the name cannot form one (admission refuses them).
    pub fn extension_id(&self) -> Result<ExtensionId, AzureError> {
        let cluster = self.cluster.clone().map_err(AzureError::Config)?;
        ExtensionId::new(cluster, &self.extension_name)
    }

    /// Whether the router serves HTTPS with a certificate sent as protected settings.
    pub fn wants_tls(&self) -> bool {
        let i = &self.spec.inference;
        i.enabled
            && i.tls
                .as_ref()
                .is_some_and(|t| t.mode == ExtensionTlsMode::Enabled)
    }

    /// Whether inference high availability is explicitly on.
    pub fn high_availability(&self) -> bool {
        self.spec.inference.enabled && self.spec.inference.high_availability == Some(true)
    }

    /// Hash (SHA-256, hex) of everything in the spec that decides the configuration
    /// settings and the version (not the certificate and key).
    pub fn settings_hash(&self) -> String {
        let s = &self.spec;
        let mut h = Sha256::new();
        let mut part = |p: &str| {
            h.update(p.as_bytes());
            h.update(b"\0");
        };
        part(&s.cluster.resource_id.to_ascii_lowercase());
        part(s.release_train.as_deref().unwrap_or(""));
        part(s.version.as_deref().unwrap_or(""));
        // serde_json of the spec parts is stable (struct order, sorted maps).
        for v in [
            serde_json::to_string(&s.training),
            serde_json::to_string(&s.inference),
            serde_json::to_string(&s.cluster_purpose),
            serde_json::to_string(&s.node_selector),
            serde_json::to_string(&s.add_ons),
            serde_json::to_string(&s.extra_settings),
            serde_json::to_string(&s.migration),
        ] {
            part(&v.unwrap_or_default());
        }
        hex(h)
    }

    /// The protected settings to send: the base64 PEM pair with TLS delivered as protected
    /// settings, else none (the same two keys [`body`](Self::body) sends; a table test holds
    /// them equal).
    pub fn protected_settings(&self) -> ProtectedSettings {
        use base64::Engine as _;
        let mut p = ProtectedSettings::new();
        if self.wants_tls()
            && !self.cluster_secret_delivery()
            && let Some(v) = &self.tls
        {
            let b64 = base64::engine::general_purpose::STANDARD;
            p.insert("scoringFe.sslCert", b64.encode(&v.material.cert));
            p.insert("scoringFe.sslKey", b64.encode(&v.material.key));
        }
        p
    }

    /// Hash (SHA-256, hex) of the TLS material Azure's router is to serve: the protected
    /// settings to send, or with `delivery: ClusterSecret` the pair copied to the cluster
    /// (`None`: no TLS). A change is a rotation.
    pub fn protected_settings_hash(&self) -> Option<String> {
        if self.cluster_secret_delivery() {
            return self.tls_pair_hash();
        }
        let p = self.protected_settings();
        if p.is_empty() {
            return None;
        }
        let mut h = Sha256::new();
        for k in p.keys() {
            h.update(k.as_bytes());
            h.update(b"\0");
            h.update(p.expose(k).unwrap_or("").as_bytes());
            h.update(b"\0");
        }
        Some(hex(h))
    }

    /// The extension body as Azure's CLI builds it for `cluster`.
    ///
    /// # Errors
    /// The builder's refusal (the CLI's own checks) as text.
    pub fn body(&self, cluster: &ClusterFacts) -> Result<ExtensionRequest, String> {
        let s = &self.spec;
        let mut b = BodySpec::new(cluster.clone());
        b.training = s.training.enabled;
        if s.inference.enabled {
            let i = &s.inference;
            let tls = match &i.tls {
                Some(t)
                    if t.mode == ExtensionTlsMode::Enabled && self.cluster_secret_delivery() =>
                {
                    InferenceTls::Secret {
                        name: self.cluster_secret_name(),
                        cname: t.cname.clone().unwrap_or_default(),
                    }
                }
                Some(t) if t.mode == ExtensionTlsMode::Enabled => match &self.tls {
                    Some(v) => InferenceTls::Pem {
                        cert: Secret::new(v.material.cert.clone()),
                        key: Secret::new(v.material.key.clone()),
                        cname: t.cname.clone().unwrap_or_default(),
                    },
                    None => return Err("the TLS certificate and key are not available".into()),
                },
                _ => InferenceTls::Disabled,
            };
            b.inference = Some(InferenceSpec {
                router_service_type: match i.router_service_type {
                    RouterServiceType::LoadBalancer => BodyRouter::LoadBalancer,
                    RouterServiceType::NodePort => BodyRouter::NodePort,
                    RouterServiceType::ClusterIp => BodyRouter::ClusterIp,
                },
                internal_load_balancer: i.internal_load_balancer,
                high_availability: i.high_availability,
                tls,
            });
        }
        b.version = match (&s.version, &s.release_train) {
            (Some(v), _) => VersionPolicy::Pinned(v.clone()),
            (None, Some(t)) => VersionPolicy::ReleaseTrain(t.clone()),
            (None, None) => VersionPolicy::default(),
        };
        b.cluster_purpose = s.cluster_purpose.map(|p| match p {
            ExtensionPurpose::FastProd => ExtensionClusterPurpose::FastProd,
            ExtensionPurpose::DevTest => ExtensionClusterPurpose::DevTest,
        });
        b.node_selector = s.node_selector.clone();
        b.add_ons = AddOns {
            nvidia_device_plugin: s.add_ons.nvidia_device_plugin,
            prometheus_operator: s.add_ons.prometheus_operator,
            volcano: s.add_ons.volcano,
            dcgm_exporter: s.add_ons.dcgm_exporter,
        };
        b.migrate_legacy_front_end = s.migration.from_legacy_azure_ml_fe;
        b.extra_settings = s.extra_settings.clone();
        b.build().map_err(|e| e.to_string())
    }

    /// The owner recorded on the cluster objects amlops applies for this resource
    /// (`namespace/name`).
    pub fn owner(&self) -> String {
        format!("{}/{}", self.key.namespace, self.key.name)
    }

    /// Hash (SHA-256, hex) of what decides the cluster objects: the settings (the router's
    /// type among them) and the instance types.
    pub fn cluster_objects_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.settings_hash().as_bytes());
        h.update(b"\0");
        h.update(
            serde_json::to_string(&self.spec.instance_types)
                .unwrap_or_default()
                .as_bytes(),
        );
        hex(h)
    }

    /// Whether the cluster objects (instance types, router address) must be brought in
    /// line: the spec changed since they last were (or they never were).
    pub fn cluster_objects_due(&self, st: &crate::crd::AzureMlExtensionStatus) -> bool {
        st.cluster_objects_hash.as_deref() != Some(self.cluster_objects_hash().as_str())
    }

    /// Whether the inference router runs behind a load balancer (whose address may come
    /// later than the Service).
    pub fn router_behind_load_balancer(&self) -> bool {
        self.spec.inference.enabled
            && self.spec.inference.router_service_type == RouterServiceType::LoadBalancer
    }

    /// Hash (SHA-256, hex) of the verified certificate and key (`None`: no TLS, or not
    /// available).
    pub fn tls_pair_hash(&self) -> Option<String> {
        if !self.wants_tls() {
            return None;
        }
        let v = self.tls.as_ref()?;
        let mut h = Sha256::new();
        h.update(b"cert.pem\0");
        h.update(v.material.cert.as_bytes());
        h.update(b"\0key.pem\0");
        h.update(v.material.key.as_bytes());
        Some(hex(h))
    }

    /// With `delivery: ClusterSecret`, the name of the Secret in namespace `azureml` on the
    /// cluster: the name of `secretRef`.
    pub fn cluster_secret_name(&self) -> String {
        self.spec
            .inference
            .tls
            .as_ref()
            .and_then(|t| t.secret_ref.as_ref())
            .map(|r| r.name.clone())
            .unwrap_or_default()
    }

    /// `delivery: ClusterSecret`: the pair is copied to a Secret in namespace `azureml` on
    /// the cluster and named in `sslSecret`, instead of sent as protected settings.
    pub fn cluster_secret_delivery(&self) -> bool {
        self.spec.inference.tls.as_ref().is_some_and(|t| {
            t.mode == ExtensionTlsMode::Enabled && t.delivery == TlsDelivery::ClusterSecret
        })
    }
}

/// Result of one reconcile of an `AzureMLExtension`.
#[derive(Clone, Debug)]
pub struct ExtensionOutcome {
    /// The status now saved.
    pub status: crate::crd::AzureMlExtensionStatus,
    /// When to reconcile again (`None`: only on a change).
    pub requeue: Option<std::time::Duration>,
    /// Cleanup finished: the finalizer may go.
    pub finished: bool,
    /// The verdict on an Azure failure this reconcile met.
    pub verdict: Option<Verdict>,
}
