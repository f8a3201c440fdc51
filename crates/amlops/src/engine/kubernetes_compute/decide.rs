//! Pure decisions for `KubernetesCompute`: `(desired, observed, status) →` [`ComputePlan`],
//! and [`settle`], which completes a plan from its write's result.

use std::time::Duration;

use crate::azure::model::{KubernetesComputeResource, ProvisioningState};
use crate::azure::{AzureError, ErrorCategory, OperationKind, OperationStatus as Poll, ResourceId};
use crate::crd::{ComputeIdentityType, DeletionPolicy, KubernetesComputeStatus, ProvisioningError};

use super::super::conditions::{Health, apply};
use super::super::observe::Lookup;
use super::super::plan::{KindPlan, Note, WriteDone};
use super::super::reconcile::EngineConfig;
use super::super::settle::record_operation;
use super::super::verdict::{Call, CallKind, Stall, Verdict, verdict};
use super::run::{NamespaceLookup, ObservedAttachment};
use super::{ComputeDesired, ComputeTarget};

/// The one write of a plan; every id and body is complete.
#[derive(Clone, Debug, PartialEq)]
pub enum ComputeWrite {
    /// PUT the compute: `Attach` (also the attach of a detach + attach) or `Update` (an
    /// in-place change of identity or description).
    Put {
        /// The compute.
        id: ResourceId,
        /// Attach or Update (recorded in `status.operation`).
        kind: OperationKind,
        /// The request body.
        body: Box<KubernetesComputeResource>,
    },
    /// DELETE the compute with `underlyingResourceAction=Detach` (the cluster and its
    /// extension stay untouched).
    Detach {
        /// The compute.
        id: ResourceId,
    },
    /// Create a namespace on the cluster (`createNamespace: true`).
    CreateNamespace {
        /// The managed cluster.
        cluster: ResourceId,
        /// Namespace name.
        name: String,
    },
}

/// The whole decision of one reconcile.
pub type ComputePlan = KindPlan<KubernetesComputeStatus, ComputeWrite>;

/// What a write did, for [`settle`].
pub type ComputeDone = WriteDone;

/// Why a write failed, for [`settle`].
#[derive(Debug)]
pub enum ComputeWriteFailure {
    /// Azure refused or failed the call (for a namespace: the cluster's credential).
    Azure(AzureError),
    /// The cluster's API server refused or could not be reached (message without secrets).
    Cluster(String),
}

fn progressing(d: &ComputeDesired, plan: &mut ComputePlan, reason: &str, message: &str) {
    plan.progressing(d.generation, reason, message);
}

fn stall(d: &ComputeDesired, plan: ComputePlan, s: &Stall) -> ComputePlan {
    plan.stall(d.generation, s)
}

fn apply_verdict(d: &ComputeDesired, plan: ComputePlan, v: Verdict, what: &str) -> ComputePlan {
    plan.apply_verdict(d.generation, v, what)
}

/// Decide what one reconcile of `d` does, from what was observed and the saved status.
pub fn decide(
    d: &ComputeDesired,
    o: &ObservedAttachment,
    st: &KubernetesComputeStatus,
    cfg: &EngineConfig,
) -> ComputePlan {
    let mut plan = ComputePlan::new(st.clone());
    plan.status.compute_name = Some(d.compute_name.clone());
    let id = match d.compute_id() {
        Ok(id) => id,
        Err(e) => return stall(d, plan, &Stall::new("InvalidSpec", e.to_string())),
    };
    // The in-flight operation first: while it runs, nothing else is decided.
    let mut just_detached = false;
    if let Some(p) = &o.poll {
        let kind = st.operation.as_ref().map(|op| op.kind);
        match p {
            Poll::InProgress { retry_after } => {
                let what = match kind {
                    Some(OperationKind::Detach) if d.deleting => "detaching the compute (deletion)",
                    Some(OperationKind::Detach) => "detaching the compute to attach it again",
                    Some(OperationKind::Update) => "updating the compute in place",
                    _ => "attaching the cluster",
                };
                progressing(
                    d,
                    &mut plan,
                    operation_reason(kind),
                    &format!("Azure is {what}"),
                );
                plan.requeue = Some((*retry_after).max(Duration::from_millis(1)));
                return plan;
            }
            Poll::Succeeded => {
                just_detached = kind == Some(OperationKind::Detach);
                plan.status.operation = None;
            }
            // The compute's GET (observed next) tells what the operation did.
            Poll::Forgotten => plan.status.operation = None,
            Poll::Failed { code, message } => {
                plan.status.operation = None;
                plan.events.push(Note::warning(
                    "OperationFailed",
                    format!(
                        "Azure's {} operation failed: {code}: {message}",
                        kind.map(OperationKind::as_str).unwrap_or("compute")
                    ),
                ));
            }
            Poll::Canceled => {
                plan.status.operation = None;
                plan.events.push(Note::warning(
                    "OperationFailed",
                    "Azure canceled the operation".to_string(),
                ));
            }
        }
    }
    if let Some(f) = &o.failure {
        return apply_verdict(d, plan, f.verdict(cfg.busy_poll), &f.error.to_string());
    }
    if d.deleting {
        return deletion(d, o, plan, id);
    }
    match o.compute.found() {
        None => absent(d, o, plan, id, just_detached),
        Some(c) => present(d, o, plan, id, c, cfg),
    }
}

fn operation_reason(kind: Option<OperationKind>) -> &'static str {
    match kind {
        Some(OperationKind::Detach) => "Detaching",
        Some(OperationKind::Update) => "Updating",
        _ => "Attaching",
    }
}

fn deletion(
    d: &ComputeDesired,
    o: &ObservedAttachment,
    mut plan: ComputePlan,
    id: ResourceId,
) -> ComputePlan {
    // Only a compute this resource attached or adopted is its to detach.
    if d.deletion_policy == DeletionPolicy::Orphan || plan.status.compute_id.is_none() {
        plan.finished = true;
        return plan;
    }
    match o.compute.found() {
        None => {
            plan.finished = true;
            plan.events.push(Note::normal(
                "Detached",
                format!("compute {} is detached", d.compute_name),
            ));
        }
        Some(c) if busy(c) => {
            progressing(
                d,
                &mut plan,
                "Deleting",
                &format!(
                    "compute {} is {}: detaching once Azure has finished",
                    d.compute_name,
                    state_str(c)
                ),
            );
            plan.requeue = Some(Duration::from_secs(15));
        }
        Some(_) => {
            progressing(
                d,
                &mut plan,
                "Deleting",
                &format!("detaching compute {} (the cluster stays)", d.compute_name),
            );
            plan.write = Some(ComputeWrite::Detach { id });
        }
    }
    plan
}

fn absent(
    d: &ComputeDesired,
    o: &ObservedAttachment,
    mut plan: ComputePlan,
    id: ResourceId,
    just_detached: bool,
) -> ComputePlan {
    let owned = plan.status.compute_id.is_some();
    let target = match &d.target {
        Ok(t) => t,
        Err(why) => {
            progressing(
                d,
                &mut plan,
                "WaitingForExtension",
                &format!("{why}; attaching once it does"),
            );
            plan.requeue = Some(Duration::from_secs(30));
            return plan;
        }
    };
    match &o.extension {
        Lookup::Found(state)
            if *state == crate::azure::model::ExtensionProvisioningState::Succeeded => {}
        other => {
            let now = match other {
                Lookup::Found(state) => format!("is {}", state.as_str()),
                _ => "is not installed".to_string(),
            };
            progressing(
                d,
                &mut plan,
                "WaitingForExtension",
                &format!(
                    "the Azure ML extension {} on cluster {} {now}: Azure attaches a cluster only once its extension has Succeeded",
                    target.extension, target.cluster
                ),
            );
            plan.requeue = Some(Duration::from_secs(30));
            return plan;
        }
    }
    match &o.namespace {
        NamespaceLookup::Missing if d.create_namespace => {
            progressing(
                d,
                &mut plan,
                "CreatingNamespace",
                &format!("creating namespace {} on the cluster", d.namespace),
            );
            plan.write = Some(ComputeWrite::CreateNamespace {
                cluster: target.cluster.clone(),
                name: d.namespace.clone(),
            });
            return plan;
        }
        NamespaceLookup::Missing => {
            return stall(
                d,
                plan,
                &Stall::new(
                    "NamespaceNotFound",
                    format!(
                        "namespace {} does not exist on cluster {}: Azure would attach it anyway and every job and deployment would fail later. Create the namespace, or set createNamespace: true",
                        d.namespace, target.cluster
                    ),
                ),
            );
        }
        NamespaceLookup::Unreachable(why) if d.create_namespace => {
            return stall(
                d,
                plan,
                &Stall::new(
                    "NamespaceNotCreated",
                    format!(
                        "cannot create namespace {} on cluster {}: {why}. Create it yourself and set createNamespace: false",
                        d.namespace, target.cluster
                    ),
                ),
            );
        }
        NamespaceLookup::Unreachable(why) => plan.events.push(Note::warning(
            "NamespaceNotChecked",
            format!(
                "could not check that namespace {} exists on cluster {} ({why}); attaching anyway",
                d.namespace, target.cluster
            ),
        )),
        NamespaceLookup::Exists | NamespaceLookup::NotRead => {}
    }
    let location = match &o.location {
        Lookup::Found(l) => l.clone(),
        _ => {
            return stall(
                d,
                plan,
                &Stall::new(
                    "WorkspaceNotFound",
                    format!(
                        "workspace {} was not found in resource group {} of subscription {}",
                        d.workspace.name, d.workspace.resource_group, d.workspace.subscription_id
                    ),
                ),
            );
        }
    };
    let reattaching = plan.status.reattaching == Some(true);
    if owned && !just_detached && !reattaching && plan.status.last_applied_hash.is_some() {
        plan.events.push(Note::warning(
            "ComputeMissing",
            format!(
                "compute {} no longer exists in Azure (detached outside amlops?): attaching it again",
                d.compute_name
            ),
        ));
    }
    plan.status.reattaching = None;
    attach(d, plan, id, target, &location, OperationKind::Attach)
}

fn attach(
    d: &ComputeDesired,
    mut plan: ComputePlan,
    id: ResourceId,
    target: &ComputeTarget,
    location: &str,
    kind: OperationKind,
) -> ComputePlan {
    let st = &mut plan.status;
    st.compute_id = Some(id.to_string());
    st.cluster_id = Some(target.cluster.to_string());
    let what = if kind == OperationKind::Update {
        format!(
            "updating compute {} in place (identity, description)",
            d.compute_name
        )
    } else {
        format!(
            "attaching cluster {} as compute {} in namespace {}",
            target.cluster, d.compute_name, d.namespace
        )
    };
    progressing(d, &mut plan, operation_reason(Some(kind)), &what);
    plan.events
        .push(Note::normal(operation_reason(Some(kind)), what));
    plan.write = Some(ComputeWrite::Put {
        id,
        kind,
        body: Box::new(d.body(location, &target.cluster)),
    });
    plan
}

fn busy(c: &KubernetesComputeResource) -> bool {
    !matches!(
        c.provisioning_state(),
        Some(
            ProvisioningState::Succeeded | ProvisioningState::Failed | ProvisioningState::Canceled
        )
    )
}

fn state_str(c: &KubernetesComputeResource) -> &str {
    c.provisioning_state()
        .map_or("Unknown", ProvisioningState::as_str)
}

/// Whether Azure's identity is the one asked for (case-insensitive ids; none = `None`).
fn identity_matches(d: &ComputeDesired, c: &KubernetesComputeResource) -> bool {
    let got = c
        .identity
        .as_ref()
        .filter(|i| !i.identity_type.eq_ignore_ascii_case("None"));
    match (&d.identity, got) {
        (None, None) => true,
        (Some(want), Some(got)) => match want.type_ {
            ComputeIdentityType::SystemAssigned => {
                got.identity_type.eq_ignore_ascii_case("SystemAssigned")
            }
            ComputeIdentityType::UserAssigned => {
                let id = want.user_assigned_identity.as_deref().unwrap_or_default();
                got.identity_type.eq_ignore_ascii_case("UserAssigned")
                    && got.user_assigned_identities.len() == 1
                    && got
                        .user_assigned_identities
                        .keys()
                        .all(|k| k.eq_ignore_ascii_case(id))
            }
        },
        _ => false,
    }
}

fn present(
    d: &ComputeDesired,
    o: &ObservedAttachment,
    mut plan: ComputePlan,
    id: ResourceId,
    c: &KubernetesComputeResource,
    cfg: &EngineConfig,
) -> ComputePlan {
    let owned = plan.status.compute_id.is_some();
    // The cluster to compare with: the spec's, else the one recorded at the attach (the
    // AzureMLExtension of extensionRef may be gone by now).
    let want_cluster = match (&d.target, &plan.status.cluster_id) {
        (Ok(t), _) => t.cluster.to_string(),
        (Err(_), Some(recorded)) => recorded.clone(),
        (Err(why), None) => {
            progressing(
                d,
                &mut plan,
                "WaitingForExtension",
                &format!("{why}; comparing compute {} once it does", d.compute_name),
            );
            plan.requeue = Some(Duration::from_secs(30));
            return plan;
        }
    };
    let got_cluster = c.properties.resource_id.as_deref().unwrap_or_default();
    let same = c.is_expected_type()
        && got_cluster.eq_ignore_ascii_case(&want_cluster)
        && c.namespace() == d.namespace;
    if !same {
        let what = if c.is_expected_type() {
            format!(
                "a Kubernetes compute of cluster {got_cluster} in namespace {}",
                c.namespace()
            )
        } else {
            format!("a compute of type {}", c.properties.compute_type)
        };
        let whose = if owned {
            " (it changed outside amlops after amlops attached it)"
        } else {
            ""
        };
        return stall(
            d,
            plan,
            &Stall::new(
                "ComputeExists",
                format!(
                    "compute {} in workspace {} is {what}{whose}, not cluster {want_cluster} in namespace {}: pick another computeName, or detach that compute first",
                    d.compute_name, d.workspace.name, d.namespace
                ),
            ),
        );
    }
    if !owned {
        if !d.adopt {
            return stall(
                d,
                plan,
                &Stall::new(
                    "ComputeExists",
                    format!(
                        "compute {} already attaches cluster {want_cluster} in namespace {} in workspace {}, not through this resource: annotate it amlops.dev/adopt=\"true\" to manage that compute, or pick another computeName",
                        d.compute_name, d.namespace, d.workspace.name
                    ),
                ),
            );
        }
        plan.status.compute_id = Some(id.to_string());
        plan.events.push(Note::normal(
            "Adopted",
            format!("adopted the existing compute {}", d.compute_name),
        ));
    }
    let st = &mut plan.status;
    st.cluster_id = Some(got_cluster.to_string());
    st.provisioning_state = Some(state_str(c).to_string());
    st.provisioning_errors = c
        .properties
        .provisioning_error_messages()
        .into_iter()
        .map(|(code, message)| ProvisioningError { code, message })
        .collect();
    st.principal_id = c.identity.as_ref().and_then(|i| i.principal_id.clone());
    if busy(c) {
        progressing(
            d,
            &mut plan,
            "AzureBusy",
            &format!("compute {} is {}", d.compute_name, state_str(c)),
        );
        plan.requeue = Some(cfg.busy_poll);
        return plan;
    }
    let location = c.location.clone().unwrap_or_default();
    let target = ComputeTarget {
        cluster: match got_cluster.parse() {
            Ok(t) => t,
            Err(e) => {
                return stall(
                    d,
                    plan,
                    &Stall::new(
                        "ComputeExists",
                        format!("compute {}: resourceId: {e}", d.compute_name),
                    ),
                );
            }
        },
        extension: d
            .target
            .as_ref()
            .map(|t| t.extension.clone())
            .unwrap_or_else(|_| "azureml".into()),
    };
    // A detach + attach whose detach is not confirmed: send (or look for) the detach again.
    if plan.status.reattaching == Some(true) {
        return detach_to_reattach(d, plan, id);
    }
    if matches!(
        c.provisioning_state(),
        Some(ProvisioningState::Failed | ProvisioningState::Canceled)
    ) {
        let errors = plan
            .status
            .provisioning_errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        let errors = if errors.is_empty() {
            "no provisioningErrors".to_string()
        } else {
            errors
        };
        let retries = plan.status.retries.unwrap_or(0);
        if retries >= d.max_retries {
            return stall(
                d,
                plan,
                &Stall::new(
                    "ComputeFailed",
                    format!(
                        "Azure reports compute {} Failed ({errors}) after {retries} detach + attach retries: fix the cause (the extension's health, the workspace identity's roles on the cluster), then change the resource or set amlops.dev/reattach",
                        d.compute_name
                    ),
                ),
            );
        }
        plan.status.retries = Some(retries + 1);
        plan.events.push(Note::warning(
            "RetryingFailedCompute",
            format!(
                "compute {} is Failed ({errors}): detaching it and attaching it again with the same name and namespace (retry {} of {})",
                d.compute_name,
                retries + 1,
                d.max_retries
            ),
        ));
        return detach_to_reattach(d, plan, id);
    }
    // Succeeded.
    let token_changed =
        d.reattach_token.is_some() && d.reattach_token != plan.status.last_reattach_token;
    if token_changed {
        plan.status.last_reattach_token = d.reattach_token.clone();
        plan.status.reattach_required = None;
        return detach_to_reattach(d, plan, id);
    }
    if let Some(why) = plan.status.reattach_required.clone() {
        if d.manual_reattach {
            let message = format!(
                "the change needs a detach + attach ({why}): set annotation amlops.dev/reattach to a new value when the downtime is acceptable"
            );
            apply(
                &mut plan.status,
                Health::Waiting,
                "ReattachPending",
                &message,
                d.generation,
            );
            return plan;
        }
        plan.status.reattach_required = None;
        return detach_to_reattach(d, plan, id);
    }
    let drifted = !identity_matches(d, c)
        || c.properties.description.as_deref().unwrap_or("")
            != d.description.as_deref().unwrap_or("");
    if drifted {
        return attach(d, plan, id, &target, &location, OperationKind::Update);
    }
    let st = &mut plan.status;
    st.retries = None;
    st.reattaching = None;
    st.last_applied_hash = Some(d.applied_hash());
    let message = format!(
        "compute {} attaches cluster {} in namespace {}",
        d.compute_name, got_cluster, d.namespace
    );
    apply(
        &mut plan.status,
        Health::Ready,
        "Attached",
        &message,
        d.generation,
    );
    plan.requeue = Some(steady(o, cfg));
    plan
}

fn detach_to_reattach(d: &ComputeDesired, mut plan: ComputePlan, id: ResourceId) -> ComputePlan {
    let message = format!(
        "detaching compute {} to attach it again (the cluster and its extension stay)",
        d.compute_name
    );
    progressing(d, &mut plan, "Detaching", &message);
    if plan.status.reattaching != Some(true) {
        plan.events.push(Note::normal("Reattaching", message));
    }
    // In the intent record: a restart resumes the detach + attach, and never starts another.
    plan.status.reattaching = Some(true);
    plan.write = Some(ComputeWrite::Detach { id });
    plan
}

/// The steady-state resync interval: the subscription's pace, the same as every kind's.
pub(crate) fn steady(o: &ObservedAttachment, cfg: &EngineConfig) -> Duration {
    o.resync.interval(&cfg.resync, cfg.time_scale)
}

/// Complete `plan` once its write finished: record the operation, or turn the failure into
/// its verdict.
pub fn settle(
    d: &ComputeDesired,
    mut plan: ComputePlan,
    result: Result<ComputeDone, ComputeWriteFailure>,
    before: &KubernetesComputeStatus,
    cfg: &EngineConfig,
) -> ComputePlan {
    let Some(write) = plan.write.take() else {
        return plan;
    };
    match result {
        Ok(ComputeDone::Started(handle)) => {
            plan.status.operation = Some(record_operation(&handle));
            plan.requeue = Some(handle.retry_after.unwrap_or(cfg.busy_poll));
        }
        Ok(ComputeDone::Finished) => {
            if let ComputeWrite::CreateNamespace { name, .. } = &write {
                plan.events.push(Note::normal(
                    "NamespaceCreated",
                    format!("created namespace {name} on the cluster"),
                ));
            }
            plan.requeue = Some(Duration::ZERO);
        }
        Err(ComputeWriteFailure::Cluster(why)) => {
            let s = Stall::new(
                "NamespaceNotCreated",
                format!(
                    "cannot create namespace {} on the cluster: {why}. Create it yourself and set createNamespace: false",
                    d.namespace
                ),
            );
            plan = stall(d, plan, &s);
            // A cluster's API server may come back without the spec changing.
            plan.requeue = Some(cfg.resync.base);
        }
        Err(ComputeWriteFailure::Azure(e)) => {
            let (kind, resource) = match &write {
                ComputeWrite::Put {
                    kind: OperationKind::Update,
                    id,
                    ..
                } => (CallKind::Update, id.to_string()),
                ComputeWrite::Put { id, .. } => (CallKind::Provision, id.to_string()),
                ComputeWrite::Detach { id } => (CallKind::Delete, id.to_string()),
                ComputeWrite::CreateNamespace { cluster, .. } => {
                    (CallKind::ListCredentials, cluster.to_string())
                }
            };
            let in_place = matches!(
                &write,
                ComputeWrite::Put {
                    kind: OperationKind::Update,
                    ..
                }
            );
            if in_place && e.category() == ErrorCategory::BadRequest {
                // Azure refuses this change in place: a detach + attach applies it.
                let why = e.message().unwrap_or("refused").to_string();
                plan.events.push(Note::warning(
                    "InPlaceUpdateRefused",
                    format!(
                        "Azure refused to change compute {} in place ({why}): it is detached and attached again instead",
                        d.compute_name
                    ),
                ));
                plan.status.reattach_required = Some(why);
                plan.requeue = Some(Duration::ZERO);
                return plan;
            }
            let v = verdict(
                &e,
                Call {
                    kind,
                    resource: &resource,
                },
                cfg.busy_poll,
            );
            // An attach Azure refused created nothing: the spec stays editable
            // (immutability starts once Azure has the compute).
            if matches!(v, Verdict::Stall(_))
                && matches!(
                    &write,
                    ComputeWrite::Put {
                        kind: OperationKind::Attach,
                        ..
                    }
                )
                && before.compute_id.is_none()
            {
                plan.status.compute_id = None;
            }
            plan = apply_verdict(d, plan, v, &e.to_string());
        }
    }
    plan
}
