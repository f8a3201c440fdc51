//! What [`decide`](super::decide::decide) returns and [`act`](super::act) executes: the
//! new status, at most one write, the events, and when to look again.

use std::time::Duration;

use crate::azure::model::AksComputeResource;
use crate::azure::{OperationKind, ResourceId, UnderlyingResourceAction};
use crate::crd::{ClusterStatus, Phase};

use super::verdict::Verdict;

/// The one write of a plan: a closed set, executed by an exhaustive `match` in
/// [`act`](super::act). Every id and body is complete: `act` looks nothing up.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// PUT the compute: create or attach (`kind` Create/Attach, also a reattach) or the
    /// GET-modify-PUT of an in-place update (`kind` Update). The body may hold a TLS key:
    /// its Debug output redacts it ([`crate::azure::config::Secret`]).
    PutCompute {
        /// The compute.
        id: ResourceId,
        /// Create, Attach or Update (recorded in `status.operation`).
        kind: OperationKind,
        /// The request body.
        body: Box<AksComputeResource>,
    },
    /// DELETE the compute with `underlyingResourceAction` (`Delete` also deletes the AKS
    /// cluster Azure ML created; `Detach` leaves the cluster running).
    DeleteCompute {
        /// The compute.
        id: ResourceId,
        /// Delete or Detach.
        action: UnderlyingResourceAction,
    },
    /// Set the node count of an agent pool (GET the pool, change `count`, PUT it back).
    ScalePool {
        /// The managed cluster.
        cluster: ResourceId,
        /// Pool name, as observed on the cluster.
        pool: String,
        /// New node count.
        count: i32,
    },
    /// DELETE the AKS managed cluster (a created cluster that became attached).
    DeleteManagedCluster {
        /// The managed cluster.
        cluster: ResourceId,
    },
    /// Read `azuremlfessl` from the cluster (kubeconfig from `listClusterUserCredential`,
    /// falling back to the admin credential), verify the pair and store it in Secret
    /// `secret` of the resource's namespace.
    BackUpTls {
        /// The managed cluster.
        cluster: ResourceId,
        /// Name of the backup Secret.
        secret: String,
        /// Whether to write the Secret: not when it is the user's own `tls.secretRef`
        /// (after an Auto → Custom switch), which the backup must not overwrite.
        store: bool,
        /// Why the backup is taken; decides what a failure means.
        purpose: BackupPurpose,
    },
}

impl Write {
    /// Whether the write changes Azure (as opposed to reading a certificate and writing a
    /// Kubernetes Secret). The intent record is saved before every such write.
    pub fn changes_azure(&self) -> bool {
        !matches!(self, Self::BackUpTls { .. })
    }
}

/// Why a TLS backup is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupPurpose {
    /// The next step detaches: without a verified certificate the operator stops.
    /// `fallback`: the user's Secret or an earlier verified backup already holds one.
    BeforeDetach {
        /// A verified certificate exists elsewhere.
        fallback: bool,
    },
    /// A Ready cluster serves a certificate nobody has backed up yet: best effort.
    Opportunistic,
}

/// A Kubernetes event of the resource the plan is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Message (never a secret).
    pub message: String,
}

impl Note {
    /// A Normal event.
    pub fn normal(reason: &str, message: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
    /// A Warning event.
    pub fn warning(reason: &str, message: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What follows a successful write, decided with the write.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AfterWrite {
    /// Phase to record once Azure accepted the write (a detach on the way to a reattach
    /// moves to `Reattaching`; a verified backup before a detach moves to `Detaching`).
    pub phase: Option<Phase>,
    /// Requeue instead of the operation's `Retry-After` (the failed-compute backoff).
    pub requeue: Option<Duration>,
    /// An in-place TLS change: when Azure refuses it, fall back to detach + reattach (the
    /// certificate backed up first), with a Warning event that says so.
    pub fallback_reattach: bool,
    /// What an in-place TLS change records once Azure accepted it (not in the intent
    /// record: a write that failed must be tried again, not taken for applied).
    pub applied: Option<Box<ClusterStatus>>,
}

/// The whole decision of one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The status to save: before the write when there is one (the intent record a
    /// restarted operator resumes from), else the final status.
    pub status: ClusterStatus,
    /// At most one write.
    pub write: Option<Write>,
    /// What follows when the write succeeds.
    pub after: AfterWrite,
    /// Events, in order.
    pub events: Vec<Note>,
    /// When to reconcile again; `None`: only when the object changes.
    pub requeue: Option<Duration>,
    /// Cleanup is complete in Azure: the finalizer may go.
    pub finished: bool,
    /// The verdict on an Azure failure this reconcile met, if any.
    pub verdict: Option<Verdict>,
}

impl Plan {
    /// A plan with no write.
    pub fn new(status: ClusterStatus, requeue: Option<Duration>) -> Self {
        Self {
            status,
            write: None,
            after: AfterWrite::default(),
            events: Vec::new(),
            requeue,
            finished: false,
            verdict: None,
        }
    }

    /// Sets `phase`, with the Normal event every phase transition gets.
    pub fn set_phase(&mut self, phase: Phase) {
        if self.status.phase != Some(phase) {
            self.events.push(Note::normal(
                phase.as_str(),
                format!(
                    "phase {} → {}",
                    self.status.phase.unwrap_or_default().as_str(),
                    phase.as_str()
                ),
            ));
            self.status.phase = Some(phase);
        }
    }
}

/// The whole decision of one reconcile of a Kubernetes-compute-path kind
/// (`AzureMLExtension`, `KubernetesCompute`): the same shape as [`Plan`], over the kind's
/// status `S` and its closed set of writes `W`.
#[derive(Clone, Debug, PartialEq)]
pub struct KindPlan<S, W> {
    /// The status to save: before the write when there is one (the intent record), else the
    /// final status.
    pub status: S,
    /// At most one write.
    pub write: Option<W>,
    /// Events, in order.
    pub events: Vec<Note>,
    /// When to reconcile again; `None`: only when the object changes.
    pub requeue: Option<Duration>,
    /// Cleanup is complete in Azure: the finalizer may go.
    pub finished: bool,
    /// The verdict on an Azure failure this reconcile met.
    pub verdict: Option<Verdict>,
}

impl<S: super::conditions::Conditioned, W> KindPlan<S, W> {
    /// A plan that writes nothing and is not requeued (yet).
    pub fn new(status: S) -> Self {
        Self {
            status,
            write: None,
            events: Vec::new(),
            requeue: None,
            finished: false,
            verdict: None,
        }
    }

    /// `Reconciling=True` with `reason` and `message`.
    pub fn progressing(&mut self, generation: Option<i64>, reason: &str, message: &str) {
        super::conditions::apply(
            &mut self.status,
            super::conditions::Health::Progressing,
            reason,
            message,
            generation,
        );
    }

    /// Record a stall: status, one Warning event (not repeated while the same stall stands),
    /// no write, no requeue.
    #[must_use]
    pub fn stall(mut self, generation: Option<i64>, s: &super::verdict::Stall) -> Self {
        if super::conditions::record_stall(&mut self.status, s, generation) {
            self.events.push(Note::warning(s.reason, s.message.clone()));
        }
        self.write = None;
        self.requeue = None;
        self
    }

    /// Apply the verdict on an Azure failure (`what` says what failed): retry or wait after
    /// Azure's `Retry-After`, or stall.
    #[must_use]
    pub fn apply_verdict(mut self, generation: Option<i64>, v: Verdict, what: &str) -> Self {
        match &v {
            Verdict::Retry(after) => {
                let message = format!("{what}; trying again in {}s", after.as_secs().max(1));
                self.events
                    .push(Note::warning("ReconcileError", message.clone()));
                self.progressing(generation, "ReconcileError", &message);
                self.requeue = Some(*after);
            }
            Verdict::Wait(after) => {
                let message = format!(
                    "Azure is busy ({what}); looking again in {}s",
                    after.as_secs().max(1)
                );
                self.progressing(generation, "AzureBusy", &message);
                self.requeue = Some(*after);
            }
            Verdict::Stall(s) => self = self.stall(generation, s),
        }
        self.write = None;
        self.verdict = Some(v);
        self
    }
}

/// What a write of a Kubernetes-compute-path kind did.
#[derive(Debug)]
pub enum WriteDone {
    /// Azure started a long-running operation.
    Started(crate::azure::OperationHandle),
    /// Done at once (200/204, or a namespace created on the cluster).
    Finished,
}
