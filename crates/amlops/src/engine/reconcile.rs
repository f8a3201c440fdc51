//! The pipeline: observe (resume included) → decide → act → settle → report. A reconcile
//! never waits for a long-running ARM operation: it records the operation in status and
//! asks to be requeued. The status is saved before every Azure write (the plan's intent
//! record), so a crash at any point resumes correctly.

use std::sync::Arc;
use std::time::Duration;

use crate::azure::ArmClient;
use crate::crd::ClusterStatus;

use super::decide::decide;
use super::desired::Desired;
use super::plan::{BackupPurpose, Plan, Write};
use super::resync::ResyncPolicy;
use super::settle::{WriteFailure, settle};
use super::store::{Event, KubeStore, StoreError};
use super::verdict::Verdict;
use super::versions::{AzureMlVersions, DEFAULT_AZUREML_VERSIONS};

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Namespace of `azuremlfessl` on the AKS clusters.
    pub tls_namespace: String,
    /// The operator's own namespace: where the TLS backup of a resource goes when its own
    /// namespace is being deleted (Kubernetes refuses new Secrets there). `None`: such a
    /// backup is skipped with a Warning.
    pub backup_namespace: Option<String>,
    /// Steady-state resync of Ready resources (the base interval and the ARM read budget).
    pub resync: ResyncPolicy,
    /// How much faster than real time the clock runs (1 in `amlops run`; the benchmark
    /// compresses time): resync intervals are divided by it and ARM's remaining-reads
    /// header ages by it.
    pub time_scale: f64,
    /// Poll interval while Azure is busy and sent no Retry-After; the wait before retrying
    /// an Azure failure that came without one.
    pub busy_poll: Duration,
    /// Base of the failed-compute retry backoff (doubles per retry).
    pub retry_base: Duration,
    /// The Kubernetes minors Azure ML attaches: the configured range, and the ranges Azure
    /// answered per subscription and region (shared by every reconcile of the process).
    pub azureml_versions: Arc<AzureMlVersions>,
    /// Workspace listings answering steady-state resyncs (shared by every reconcile of the
    /// process).
    pub listings: Arc<super::listing::WorkspaceListings>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            tls_namespace: "default".into(),
            backup_namespace: None,
            resync: ResyncPolicy::default(),
            time_scale: 1.0,
            busy_poll: Duration::from_secs(15),
            retry_base: Duration::from_secs(30),
            azureml_versions: Arc::new(AzureMlVersions::new(Some(DEFAULT_AZUREML_VERSIONS))),
            listings: Arc::default(),
        }
    }
}

/// Result of one reconcile.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The status now saved.
    pub status: ClusterStatus,
    /// When to reconcile again (`None`: only on a change).
    pub requeue: Option<Duration>,
    /// Cleanup finished: the finalizer may go.
    pub finished: bool,
    /// The verdict on an Azure failure this reconcile met (already reflected in `status`
    /// and `requeue`): for metrics and for runners that honour `Retry-After` exactly.
    pub verdict: Option<Verdict>,
}

/// A reconcile that failed on the Kubernetes side; the caller backs off and retries.
/// Azure failures never end here: they have a [`Verdict`].
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Kubernetes failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    /// Static label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Store(_) => "Kubernetes",
        }
    }
}

/// The reconcile engine, generic over how it reaches Kubernetes.
pub struct Engine<S> {
    /// ARM client.
    pub arm: ArmClient,
    /// Kubernetes side.
    pub store: S,
    /// Settings.
    pub config: EngineConfig,
}

impl<S: KubeStore> Engine<S> {
    async fn emit(&self, d: &Desired, plan: &mut Plan) {
        for note in plan.events.drain(..) {
            self.store
                .emit(Event {
                    key: d.key(),
                    warning: note.warning,
                    reason: note.reason,
                    message: note.message,
                })
                .await;
        }
    }

    /// One reconcile of `d` starting from the persisted `status`.
    ///
    /// # Errors
    /// Only Kubernetes-side failures (reading Secrets, saving status).
    pub async fn reconcile(
        &self,
        d: &Desired,
        status: ClusterStatus,
    ) -> Result<Outcome, EngineError> {
        let mut observed = self.observe(d, &status, true).await?;
        let mut plan = decide(d, &observed, &status, &self.config);
        // A workspace listing only confirms: anything else it would lead to is decided on a
        // fresh `GET` of the compute.
        if observed.listed && !confirms(&plan) {
            observed = self.observe(d, &status, false).await?;
            plan = decide(d, &observed, &status, &self.config);
        }
        tracing::debug!(write = plan.write.is_some(), phase = ?plan.status.phase, "decided");
        // What the API server holds: a status equal to it is not written again, so a
        // steady resync or a poll costs the API server nothing.
        let mut persisted = status;
        if let Some(write) = plan.write.clone() {
            let intent = !matches!(
                write,
                Write::BackUpTls {
                    purpose: BackupPurpose::Opportunistic,
                    ..
                }
            );
            if intent {
                // The intent record: what a restarted operator resumes from.
                self.emit(d, &mut plan).await;
                self.store.save_status(&d.key(), &plan.status).await?;
                persisted = plan.status.clone();
            }
            let result = self.act(d, &write).await;
            if matches!(
                write,
                Write::PutCompute { .. } | Write::DeleteCompute { .. }
            ) && let Ok(ws) = d.workspace_resource_id()
            {
                self.config.listings.invalidate(&ws);
            }
            if let (Err(WriteFailure::Azure(e)), Some(cluster)) =
                (&result, observed.cluster.found())
            {
                self.learn_versions(d, cluster, e.message().unwrap_or(""));
            }
            plan = settle(d, &observed, plan, result, &self.config);
        }
        self.emit(d, &mut plan).await;
        if plan.status != persisted {
            self.store.save_status(&d.key(), &plan.status).await?;
        }
        Ok(Outcome {
            status: plan.status,
            requeue: plan.requeue,
            finished: plan.finished,
            verdict: plan.verdict,
        })
    }
}

/// Whether `plan` is "still Ready, nothing to write" (an opportunistic backup aside): the
/// only decision a workspace listing may make.
fn confirms(plan: &super::plan::Plan) -> bool {
    let write_ok = match &plan.write {
        None => true,
        Some(Write::BackUpTls { purpose, .. }) => *purpose == BackupPurpose::Opportunistic,
        Some(_) => false,
    };
    write_ok && plan.verdict.is_none() && plan.status.phase == Some(crate::crd::Phase::Ready)
}
