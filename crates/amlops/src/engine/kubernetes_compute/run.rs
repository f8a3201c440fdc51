//! The I/O of a `KubernetesCompute` reconcile: observe (every read, once), act (the one
//! write), and the pipeline that saves the intent record before each Azure write.

use std::future::Future;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

use crate::azure::model::{ExtensionProvisioningState, KubernetesComputeResource};
use crate::azure::{ExtensionId, LroStart, OperationStatus as Poll, ResourceId};
use crate::crd::KubernetesComputeStatus;

use super::super::observe::{Lookup, ReadFailure, ResyncFacts};
use super::super::reconcile::{Engine, EngineError};
use super::super::store::{Event, KubeStore, ObjKey, StoreError};
use super::super::target_cluster::{self, Connection};
use super::decide::{ComputeDone, ComputeWrite, ComputeWriteFailure, decide, settle};
use super::{ComputeDesired, ComputeOutcome};

/// The Kubernetes side a `KubernetesCompute` reconcile needs beyond [`KubeStore`]: saving
/// its status.
pub trait ComputeStore: KubeStore {
    /// Persist the status of a `KubernetesCompute` (called before every Azure write, so
    /// intent survives a crash).
    fn save_compute_status(
        &self,
        key: &ObjKey,
        status: &KubernetesComputeStatus,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Whether the compute's namespace exists on the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NamespaceLookup {
    /// Not needed by this reconcile (the compute exists, or the extension is not ready).
    #[default]
    NotRead,
    /// It exists.
    Exists,
    /// The API server answered 404.
    Missing,
    /// The cluster could not be read (private API server, no credential, refused): why.
    Unreachable(String),
}

/// Everything observed for one reconcile of a `KubernetesCompute`.
#[derive(Debug, Default)]
pub struct ObservedAttachment {
    /// The in-flight operation's poll.
    pub poll: Option<Poll>,
    /// `GET compute`.
    pub compute: Lookup<KubernetesComputeResource>,
    /// The cluster's Azure ML extension (read only before an attach).
    pub extension: Lookup<ExtensionProvisioningState>,
    /// The namespace on the cluster (read only before an attach).
    pub namespace: NamespaceLookup,
    /// The workspace's location (read only before an attach).
    pub location: Lookup<String>,
    /// A read that failed: the observation stopped there.
    pub failure: Option<ReadFailure>,
    /// The steady-state resync pace's inputs.
    pub resync: ResyncFacts,
}

impl<S: ComputeStore> Engine<S> {
    /// Every read one reconcile of `d` needs. Steady state costs one ARM read (`GET
    /// compute`); the extension, the namespace and the workspace are read only before an
    /// attach.
    pub async fn observe_compute(
        &self,
        d: &ComputeDesired,
        st: &KubernetesComputeStatus,
    ) -> ObservedAttachment {
        let sub = d.workspace.subscription_id.as_str();
        let mut o = ObservedAttachment {
            resync: self.resync_facts(sub),
            ..ObservedAttachment::default()
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
        let id = read!(async { d.compute_id() }, d.compute_name);
        o.compute = match read!(self.arm.get_kubernetes_compute(&id), id) {
            Some(c) => Lookup::Found(c),
            None => Lookup::Missing,
        };
        if d.deleting || matches!(o.compute, Lookup::Found(_)) {
            return o;
        }
        // Before an attach: the extension, the namespace, the workspace's location.
        let Ok(target) = &d.target else { return o };
        let ext = read!(
            async { ExtensionId::new(target.cluster.clone(), &target.extension) },
            target.cluster
        );
        o.extension = match read!(self.arm.get_extension(&ext), target.cluster) {
            Some(e) => Lookup::Found(
                e.provisioning_state()
                    .cloned()
                    .unwrap_or(ExtensionProvisioningState::Other("Unknown".into())),
            ),
            None => Lookup::Missing,
        };
        if !matches!(
            o.extension,
            Lookup::Found(ExtensionProvisioningState::Succeeded)
        ) {
            return o;
        }
        o.namespace = match self.namespace_on(&target.cluster, &d.namespace).await {
            Ok(n) => n,
            Err(error) => {
                o.failure = Some(ReadFailure {
                    error,
                    resource: target.cluster.to_string(),
                });
                return o;
            }
        };
        let ws = read!(async { d.workspace_id() }, d.workspace.name);
        o.location = match read!(self.arm.get_workspace(&ws), ws) {
            Some(w) => w.location.map_or(Lookup::Missing, Lookup::Found),
            None => Lookup::Missing,
        };
        o
    }

    /// Whether `namespace` exists on `cluster`. A passing ARM failure of the credential
    /// is returned (retried after its `Retry-After`); anything else that keeps the cluster
    /// from being read is [`NamespaceLookup::Unreachable`].
    async fn namespace_on(
        &self,
        cluster: &ResourceId,
        namespace: &str,
    ) -> Result<NamespaceLookup, crate::azure::AzureError> {
        let client = match target_cluster::connect(&self.arm, cluster).await? {
            Connection::Client(c) => c,
            Connection::Unreachable(why) => return Ok(NamespaceLookup::Unreachable(why)),
        };
        Ok(
            match Api::<Namespace>::all(client).get_opt(namespace).await {
                Ok(Some(_)) => NamespaceLookup::Exists,
                Ok(None) => NamespaceLookup::Missing,
                Err(e) => NamespaceLookup::Unreachable(target_cluster::describe(&e)),
            },
        )
    }

    /// Execute one write; decides nothing.
    async fn act_compute(&self, w: &ComputeWrite) -> Result<ComputeDone, ComputeWriteFailure> {
        let started = |s: Option<crate::azure::OperationHandle>| match s {
            Some(h) => ComputeDone::Started(h),
            None => ComputeDone::Finished,
        };
        match w {
            ComputeWrite::Put { id, kind, body } => {
                let start = self
                    .arm
                    .attach_kubernetes_compute(id, body)
                    .await
                    .map_err(ComputeWriteFailure::Azure)?;
                Ok(started(match start {
                    LroStart::Started(mut h) => {
                        h.kind = *kind;
                        Some(h)
                    }
                    LroStart::Done(_) => None,
                }))
            }
            ComputeWrite::Detach { id } => {
                let start = self
                    .arm
                    .detach_kubernetes_compute(id)
                    .await
                    .map_err(ComputeWriteFailure::Azure)?;
                Ok(started(start.handle().cloned()))
            }
            ComputeWrite::CreateNamespace { cluster, name } => {
                let client = match target_cluster::connect(&self.arm, cluster)
                    .await
                    .map_err(ComputeWriteFailure::Azure)?
                {
                    Connection::Client(c) => c,
                    Connection::Unreachable(why) => {
                        return Err(ComputeWriteFailure::Cluster(why));
                    }
                };
                let ns = Namespace {
                    metadata: kube::core::ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(
                            [(
                                "app.kubernetes.io/managed-by".to_string(),
                                "amlops".to_string(),
                            )]
                            .into(),
                        ),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                match Api::<Namespace>::all(client)
                    .create(&PostParams::default(), &ns)
                    .await
                {
                    Ok(_) => Ok(ComputeDone::Finished),
                    // Created meanwhile (by someone else, or a retry): what was wanted.
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(ComputeDone::Finished),
                    Err(e) => Err(ComputeWriteFailure::Cluster(target_cluster::describe(&e))),
                }
            }
        }
    }

    async fn emit_compute(&self, d: &ComputeDesired, plan: &mut super::ComputePlan) {
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

    /// One reconcile of a `KubernetesCompute` starting from its persisted `status`.
    ///
    /// # Errors
    /// Only Kubernetes-side failures (saving status); Azure failures end in a verdict.
    pub async fn reconcile_compute(
        &self,
        d: &ComputeDesired,
        status: KubernetesComputeStatus,
    ) -> Result<ComputeOutcome, EngineError> {
        let observed = self.observe_compute(d, &status).await;
        let mut plan = decide(d, &observed, &status, &self.config);
        let mut persisted = status.clone();
        if let Some(write) = plan.write.clone() {
            if !matches!(write, ComputeWrite::CreateNamespace { .. }) {
                // The intent record: what a restarted operator resumes from.
                self.emit_compute(d, &mut plan).await;
                self.store.save_compute_status(&d.key, &plan.status).await?;
                persisted = plan.status.clone();
            }
            let result = self.act_compute(&write).await;
            if let Ok(ws) = d.workspace_id() {
                self.config.listings.invalidate(&ws);
            }
            plan = settle(d, plan, result, &status, &self.config);
        }
        self.emit_compute(d, &mut plan).await;
        if plan.status != persisted {
            self.store.save_compute_status(&d.key, &plan.status).await?;
        }
        Ok(ComputeOutcome {
            status: plan.status,
            requeue: plan.requeue,
            finished: plan.finished,
            verdict: plan.verdict,
        })
    }
}
