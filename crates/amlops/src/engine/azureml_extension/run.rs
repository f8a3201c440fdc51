//! The I/O of an `AzureMLExtension` reconcile: observe (every read, once), act (the one
//! write), and the pipeline that saves the intent record before each Azure write.

use std::future::Future;

use crate::azure::azureml_extension::AZUREML_EXTENSION_TYPE;
use crate::azure::model::{Extension, ExtensionProvisioningState, ManagedCluster};
use crate::azure::{LroStart, OperationStatus as Poll};
use crate::crd::{AzureMLExtension, AzureMlExtensionStatus, ExtensionTlsMode};
use crate::tls::{self, TlsError};

use super::super::observe::{Lookup, ReadFailure, ResyncFacts, VerifiedTls};
use super::super::reconcile::{Engine, EngineError};
use super::super::store::{Event, KubeStore, ObjKey, StoreError};
use super::super::target_cluster::{self, Connection};
use super::super::verdict::Stall;
use super::cluster::{self, ClusterView};
use super::decide::{
    ExtensionDone, ExtensionPlan, ExtensionWrite, ExtensionWriteFailure, decide, settle,
};
use super::{ExtensionDesired, ExtensionOutcome};
use crate::crd::ProvisioningError;

/// Namespace of the resource provider whose registration cluster extensions need.
const KUBERNETES_CONFIGURATION: &str = "Microsoft.KubernetesConfiguration";

/// The Kubernetes side an `AzureMLExtension` reconcile needs beyond [`KubeStore`]: saving
/// its status.
pub trait ExtensionStore: KubeStore {
    /// Persist the status of an `AzureMLExtension` (called before every Azure write, so
    /// intent survives a crash).
    fn save_extension_status(
        &self,
        key: &ObjKey,
        status: &AzureMlExtensionStatus,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Everything observed for one reconcile of an `AzureMLExtension`.
#[derive(Debug, Default)]
pub struct ObservedExtension {
    /// The in-flight operation's poll.
    pub poll: Option<Poll>,
    /// `GET extension`.
    pub extension: Lookup<Extension>,
    /// Whether the subscription registered `Microsoft.KubernetesConfiguration` (read only
    /// before a PUT).
    pub provider_registered: Lookup<bool>,
    /// The AKS cluster (read only before a write).
    pub cluster: Lookup<ManagedCluster>,
    /// Names of the cluster's Azure ML extensions (read only before a PUT).
    pub others: Vec<String>,
    /// A read that failed: the observation stopped there.
    pub failure: Option<ReadFailure>,
    /// The steady-state resync pace's inputs.
    pub resync: ResyncFacts,
    /// The cluster's own objects (read only when the extension runs and they are due).
    pub in_cluster: ClusterView,
    /// The failing lines of the extension's health check (read only when it failed).
    pub health: Vec<ProvisioningError>,
    /// When the observation was made.
    pub now: Option<jiff::Timestamp>,
    /// The legacy (v1) front end, Deployment `default/azureml-fe` of an AKS compute:
    /// `Found(annotated for the upgrade)` (read only before a PUT with inference).
    pub legacy_front_end: Lookup<bool>,
}

impl<S: ExtensionStore> Engine<S> {
    /// The certificate and key of `inference.tls.secretRef`, verified for serving (valid
    /// now, for `cname`, chain in order); `Ok(None)` when the spec serves no TLS.
    ///
    /// # Errors
    /// The stall that says what is wrong with the Secret (never any key material).
    pub async fn extension_tls(
        &self,
        ext: &AzureMLExtension,
    ) -> Result<Option<VerifiedTls>, Stall> {
        let i = &ext.spec.inference;
        let Some(t) = i
            .tls
            .as_ref()
            .filter(|t| i.enabled && t.mode == ExtensionTlsMode::Enabled)
        else {
            return Ok(None);
        };
        let namespace = ext.metadata.namespace.clone().unwrap_or_default();
        let name = t
            .secret_ref
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let to_stall = |e: TlsError| {
            Stall::new(
                e.reason(),
                format!(
                    "inference.tls.secretRef {name}: {e}: fix the Secret and the operator continues"
                ),
            )
        };
        let secret = self
            .store
            .get_secret(&namespace, &name)
            .await
            .map_err(|e| Stall::new("SecretNotFound", e.to_string()))?
            .ok_or_else(|| to_stall(TlsError::SecretNotFound(format!("{namespace}/{name}"))))?;
        let (cert, key) = tls::cert_and_key_from_secret(&secret).map_err(to_stall)?;
        let info = tls::check_serving(&cert, &key, t.cname.as_deref(), jiff::Timestamp::now())
            .map_err(to_stall)?;
        Ok(Some(VerifiedTls {
            material: super::super::body::TlsMaterial {
                cert,
                key,
                cname: t.cname.clone().unwrap_or_default(),
            },
            info,
        }))
    }

    /// [`ExtensionDesired`] of `ext`, its TLS Secret read through the store.
    pub async fn extension_desired(
        &self,
        ext: &AzureMLExtension,
        in_use: Vec<String>,
    ) -> ExtensionDesired {
        match self.extension_tls(ext).await {
            Ok(tls) => ExtensionDesired::new(ext, tls, in_use),
            Err(stall) => ExtensionDesired::new(ext, None, in_use).with_tls_error(stall),
        }
    }

    /// Every read one reconcile of `d` needs. Steady state costs one ARM read (`GET
    /// extension`); the cluster is read only before a write, the provider registration and
    /// the cluster's extensions only before a PUT.
    pub async fn observe_extension(
        &self,
        d: &ExtensionDesired,
        st: &AzureMlExtensionStatus,
    ) -> ObservedExtension {
        let sub = d
            .cluster
            .as_ref()
            .map(|c| c.subscription().to_string())
            .unwrap_or_default();
        let mut o = ObservedExtension {
            resync: self.resync_facts(&sub),
            now: Some(jiff::Timestamp::now()),
            ..ObservedExtension::default()
        };
        macro_rules! read {
            ($call:expr, $resource:expr) => {
                match $call.await {
                    Ok(v) => v,
                    Err(error) => {
                        o.failure = Some(ReadFailure {
                            error,
                            resource: $resource.to_string(),
                        });
                        return o;
                    }
                }
            };
        }
        if let Some(op) = &st.operation {
            let polled = match self.poll_recorded(op).await {
                Ok(p) => p,
                Err(f) => {
                    o.failure = Some(f);
                    return o;
                }
            };
            let running = matches!(polled, Poll::InProgress { .. });
            o.poll = Some(polled);
            if running {
                return o;
            }
        }
        let Ok(id) = d.extension_id() else { return o };
        let found = match self.arm.get_extension(&id).await {
            Ok(found) => found,
            // Azure refuses every extension call while the provider is not registered.
            Err(e) if e.code() == Some("MissingSubscriptionRegistration") => {
                o.provider_registered = Lookup::Found(false);
                return o;
            }
            Err(error) => {
                o.failure = Some(ReadFailure {
                    error,
                    resource: id.to_string(),
                });
                return o;
            }
        };
        let state = found.as_ref().and_then(|e| e.provisioning_state().cloned());
        o.extension = found.map_or(Lookup::Missing, Lookup::Found);
        if d.deleting {
            return o;
        }
        let put = match &state {
            None => matches!(o.extension, Lookup::Missing),
            Some(s) => matches!(
                s,
                ExtensionProvisioningState::Failed | ExtensionProvisioningState::Canceled
            ),
        };
        let steady = st.settings_hash.as_deref() == Some(d.settings_hash().as_str())
            && st.protected_settings_hash == d.protected_settings_hash();
        let succeeded = matches!(state, Some(ExtensionProvisioningState::Succeeded));
        if succeeded && steady && d.cluster_objects_due(st) {
            let cluster = id.cluster().clone();
            o.in_cluster = match target_cluster::connect(&self.arm, &cluster).await {
                Err(error) => {
                    o.failure = Some(ReadFailure {
                        error,
                        resource: cluster.to_string(),
                    });
                    return o;
                }
                Ok(Connection::Unreachable(why)) => ClusterView::Unreachable(why),
                Ok(Connection::Client(client)) => {
                    match cluster::read(client, d.spec.inference.enabled).await {
                        Ok(c) => ClusterView::Read(c),
                        Err(e) => ClusterView::Unreachable(target_cluster::describe(&e)),
                    }
                }
            };
            return o;
        }
        if !put && (!succeeded || steady) {
            return o;
        }
        let cluster = id.cluster().clone();
        if put {
            let reg = read!(
                self.arm
                    .get_provider_registration(cluster.subscription(), KUBERNETES_CONFIGURATION),
                cluster.subscription()
            );
            o.provider_registered = Lookup::Found(reg.is_registered());
            if !reg.is_registered() {
                return o;
            }
        }
        match read!(self.arm.get_managed_cluster(&cluster), cluster) {
            Some(c) => o.cluster = Lookup::Found(c),
            None => {
                o.cluster = Lookup::Missing;
                return o;
            }
        }
        if put {
            let all = read!(self.arm.list_extensions(&cluster), cluster);
            o.others = all
                .iter()
                .filter(|e| {
                    e.properties
                        .extension_type
                        .as_deref()
                        .is_some_and(|t| t.eq_ignore_ascii_case(AZUREML_EXTENSION_TYPE))
                })
                .filter_map(|e| e.name.clone())
                .collect();
            // On the cluster itself, before a PUT: why the last health check failed (Azure
            // quotes none of it for a failed install) and whether a legacy front end is in
            // the way (E45005). A cluster that cannot be read is not checked.
            let failed_before = state.is_some();
            if failed_before || d.spec.inference.enabled {
                match target_cluster::connect(&self.arm, &cluster).await {
                    Err(error) => {
                        o.failure = Some(ReadFailure {
                            error,
                            resource: cluster.to_string(),
                        });
                        return o;
                    }
                    Ok(Connection::Unreachable(_)) => {}
                    Ok(Connection::Client(client)) => {
                        if failed_before {
                            o.health = cluster::read_health_report(client.clone())
                                .await
                                .unwrap_or_default();
                        }
                        if d.spec.inference.enabled {
                            o.legacy_front_end = match cluster::read_legacy_front_end(client).await
                            {
                                Ok(Some(annotated)) => Lookup::Found(annotated),
                                Ok(None) => Lookup::Missing,
                                Err(_) => Lookup::NotRead,
                            };
                        }
                    }
                }
            }
        }
        o
    }

    /// Execute one write; decides nothing.
    async fn act_extension(
        &self,
        w: &ExtensionWrite,
    ) -> Result<ExtensionDone, ExtensionWriteFailure> {
        let started = |h: Option<crate::azure::OperationHandle>| match h {
            Some(h) => ExtensionDone::Started(h),
            None => ExtensionDone::Finished,
        };
        match w {
            ExtensionWrite::Put { id, kind, body, .. } => {
                let start = self
                    .arm
                    .create_extension(id, body)
                    .await
                    .map_err(ExtensionWriteFailure::Azure)?;
                Ok(started(match start {
                    LroStart::Started(mut h) => {
                        h.kind = *kind;
                        Some(h)
                    }
                    LroStart::Done(_) => None,
                }))
            }
            ExtensionWrite::Patch { id, body, .. } => {
                let start = self
                    .arm
                    .update_extension(id, body)
                    .await
                    .map_err(ExtensionWriteFailure::Azure)?;
                Ok(started(start.handle().cloned()))
            }
            ExtensionWrite::Delete { id } => {
                let start = self
                    .arm
                    .delete_extension(id, false)
                    .await
                    .map_err(ExtensionWriteFailure::Azure)?;
                Ok(started(start.handle().cloned()))
            }
            ExtensionWrite::ApplyInstanceTypes {
                cluster,
                apply,
                prune,
            } => {
                let client = self.cluster_client(cluster).await?;
                cluster::apply_instance_types(client, apply, prune)
                    .await
                    .map_err(|(object, e)| ExtensionWriteFailure::Cluster {
                        failure: target_cluster::classify(&e),
                        why: format!(
                            "InstanceType {object}: {}",
                            target_cluster::describe_refusal(&e)
                        ),
                    })?;
                Ok(ExtensionDone::Finished)
            }
            ExtensionWrite::AnnotateLegacyFrontEnd { cluster } => {
                let client = self.cluster_client(cluster).await?;
                cluster::annotate_legacy_front_end(client)
                    .await
                    .map_err(|e| ExtensionWriteFailure::Cluster {
                        failure: target_cluster::classify(&e),
                        why: format!(
                            "Deployment default/{}: {}",
                            cluster::ROUTER_SERVICE,
                            target_cluster::describe_refusal(&e)
                        ),
                    })?;
                Ok(ExtensionDone::Finished)
            }
            ExtensionWrite::CopyTlsSecret {
                cluster,
                name,
                cert,
                key,
                ..
            } => {
                let client = self.cluster_client(cluster).await?;
                cluster::copy_tls_secret(client, name, cert, key)
                    .await
                    .map_err(|e| ExtensionWriteFailure::Cluster {
                        failure: target_cluster::classify(&e),
                        // Never the API server's message: it may quote what was sent.
                        why: format!(
                            "Secret {}/{name}: {}",
                            cluster::AZUREML_NAMESPACE,
                            target_cluster::describe(&e)
                        ),
                    })?;
                Ok(ExtensionDone::Finished)
            }
        }
    }

    /// A client for the cluster's API server, for a write.
    async fn cluster_client(
        &self,
        cluster: &crate::azure::ResourceId,
    ) -> Result<kube::Client, ExtensionWriteFailure> {
        match target_cluster::connect(&self.arm, cluster)
            .await
            .map_err(ExtensionWriteFailure::Azure)?
        {
            Connection::Client(c) => Ok(c),
            Connection::Unreachable(why) => Err(ExtensionWriteFailure::Cluster {
                failure: target_cluster::Failure::Unreachable,
                why,
            }),
        }
    }

    async fn emit_extension(&self, d: &ExtensionDesired, plan: &mut ExtensionPlan) {
        for note in plan.events.drain(..) {
            self.store
                .emit(Event {
                    key: d.key.clone(),
                    warning: note.warning,
                    reason: note.reason,
                    message: note.message,
                })
                .await;
        }
    }

    /// One reconcile of an `AzureMLExtension` starting from its persisted `status`.
    ///
    /// # Errors
    /// Only Kubernetes-side failures (saving status); Azure failures end in a verdict.
    pub async fn reconcile_extension(
        &self,
        d: &ExtensionDesired,
        status: AzureMlExtensionStatus,
    ) -> Result<ExtensionOutcome, EngineError> {
        let observed = self.observe_extension(d, &status).await;
        let mut plan = decide(d, &observed, &status, &self.config);
        let mut persisted = status.clone();
        if let Some(write) = plan.write.clone() {
            // The intent record: what a restarted operator resumes from.
            self.emit_extension(d, &mut plan).await;
            self.store
                .save_extension_status(&d.key, &plan.status)
                .await?;
            persisted = plan.status.clone();
            let result = self.act_extension(&write).await;
            plan = settle(d, plan, result, &status, &self.config);
        }
        self.emit_extension(d, &mut plan).await;
        if plan.status != persisted {
            self.store
                .save_extension_status(&d.key, &plan.status)
                .await?;
        }
        Ok(ExtensionOutcome {
            status: plan.status,
            requeue: plan.requeue,
            finished: plan.finished,
            verdict: plan.verdict,
        })
    }
}
