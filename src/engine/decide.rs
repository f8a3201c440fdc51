//! The pure decision: `(desired, observed Azure state, status) → next action` (DESIGN §2).
//! No I/O here; every branch is a row of the table tests below.

use crate::crd::{ClusterStatus, DeletionPolicy, LoadBalancerType, Phase, TlsMode};

use super::desired::{Desired, Flavor};

/// Azure's provisioningState, reduced to what decisions need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AzState {
    /// Creating, Updating, Deleting or Unknown: Azure is busy.
    Busy,
    /// Succeeded.
    Succeeded,
    /// Failed or Canceled.
    Failed,
}

/// The compute as `GET compute` returned it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedCompute {
    /// Reduced provisioningState.
    pub state: AzState,
    /// Azure's own provisioningState string.
    pub raw_state: String,
    /// provisioningErrors as (code, message).
    pub errors: Vec<(String, String)>,
    /// isAttachedCompute.
    pub attached: bool,
    /// resourceId: the AKS cluster behind the compute.
    pub aks_id: Option<String>,
    /// description.
    pub description: Option<String>,
    /// loadBalancerType (PublicIp when absent).
    pub lb_type: LoadBalancerType,
    /// loadBalancerSubnet.
    pub lb_subnet: Option<String>,
    /// sslConfiguration.status is not Disabled.
    pub tls_enabled: bool,
    /// clusterFqdn.
    pub fqdn: Option<String>,
    /// clusterPurpose as Azure reports it (`FastProd`, …), when present.
    pub purpose: Option<String>,
}

/// Everything observed in Azure for one reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The compute, `None` on 404.
    pub compute: Option<ObservedCompute>,
    /// Node count of the AKS cluster's first pool (created clusters, when Succeeded).
    pub agent_count: Option<i32>,
    /// Whether the AKS managed cluster (`status.aksResourceId`) still exists; observed only
    /// when the compute is gone (deletion, drift).
    pub aks_exists: Option<bool>,
    /// SHA-256 fingerprint of the certificate in the user's `tls.secretRef` Secret (Custom
    /// mode, when the Secret exists and holds a valid pair). Compared with the fingerprint
    /// last sent to Azure to notice a rotated certificate.
    pub secret_fingerprint: Option<String>,
}

/// Why the operator stopped and needs a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    /// Condition reason (`ComputeExists`, `AlreadyAttached`, …).
    pub reason: &'static str,
    /// What to do about it.
    pub message: String,
}

/// The next step.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing to do; record Ready.
    Ready,
    /// Azure is busy with the compute; look again later.
    Wait,
    /// Dynamic checks, then PUT a new compute (create or attach). `drift`: it existed before.
    Provision { drift: bool },
    /// The compute exists and matches: take it over without a write. `in_sync`: its
    /// purpose and TLS on/off already match the spec; otherwise the next reconcile
    /// reattaches it (or waits for the annotation under `reattachPolicy: Manual`).
    Adopt {
        /// Purpose and TLS already as specified.
        in_sync: bool,
    },
    /// Stop until the spec (or a referenced Secret) changes.
    Stall(Stall),
    /// Delete (`detach: false`) or detach a Failed compute, then go on in phase `then`:
    /// `Creating`/`Attaching` provision from scratch, `Reattaching` attaches the same AKS
    /// cluster again (a cluster that once served is never deleted to retry).
    RetryFailed {
        /// Detach instead of delete.
        detach: bool,
        /// Phase recorded before the removal; decides what the 404 afterwards means.
        then: Phase,
    },
    /// GET-modify-PUT of load balancer and description.
    UpdateInPlace,
    /// PUT the agent pool with the new count.
    Scale { from: i32, to: i32 },
    /// Reattach needed but `reattachPolicy: Manual` and no new annotation.
    ReattachPending,
    /// Back up `azuremlfessl` before a detach.
    BackupTls { then: Phase },
    /// DELETE compute with `underlyingResourceAction=Detach` (reattach or deletion).
    Detach,
    /// PUT the compute again as an attach of the same AKS cluster. `drift`: the compute
    /// was removed outside the operator (a created cluster that someone detached).
    Reattach {
        /// Removed outside the operator: warn.
        drift: bool,
    },
    /// DELETE compute with `underlyingResourceAction=Delete`.
    DeleteCompute,
    /// DELETE the AKS managed cluster (a created cluster that became attached).
    DeleteAks,
    /// Cleanup is done in Azure: remove the finalizer.
    Finished,
}

fn phase(status: &ClusterStatus) -> Phase {
    status.phase.unwrap_or_default()
}

/// Decide the next action. `status.operation` has already been resumed (polled) by the caller.
pub fn decide(d: &Desired, obs: &Observed, status: &ClusterStatus) -> Action {
    if d.deleting {
        return decide_deletion(d, obs, status);
    }
    let ph = phase(status);
    let owned = status.compute_id.is_some();
    let Some(c) = &obs.compute else {
        return match ph {
            // After our own detach, 404 means "continue with the attach" (DESIGN §3.2).
            Phase::Detaching | Phase::Reattaching => Action::Reattach { drift: false },
            Phase::Pending | Phase::Validating | Phase::Creating | Phase::Attaching => {
                Action::Provision { drift: false }
            }
            // A created cluster whose compute was detached (not deleted) outside the
            // operator still runs, with its workloads: attach it again rather than pay for
            // a second cluster.
            _ if owned && d.is_create() && obs.aks_exists == Some(true) => {
                Action::Reattach { drift: true }
            }
            _ if owned => Action::Provision { drift: true },
            _ => Action::Provision { drift: false },
        };
    };
    if !owned {
        let matches = match &d.flavor {
            Flavor::Attach { aks_id } => c
                .aks_id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(aks_id)),
            Flavor::Create { .. } => !c.attached,
        };
        return if d.adopt && matches {
            let purpose_ok = c
                .purpose
                .as_deref()
                .is_none_or(|p| p.eq_ignore_ascii_case(d.purpose.as_str()));
            let tls_ok = c.tls_enabled == (d.tls.mode != TlsMode::Disabled);
            Action::Adopt {
                in_sync: purpose_ok && tls_ok,
            }
        } else if d.adopt {
            Action::Stall(Stall {
                reason: "ComputeExists",
                message: format!(
                    "compute {} exists but does not match this resource (other AKS cluster or attach/create mismatch): it cannot be adopted; pick another computeName",
                    d.compute_name
                ),
            })
        } else {
            Action::Stall(Stall {
                reason: "ComputeExists",
                message: format!(
                    "compute {} already exists in workspace {} and was not created by this resource: pick another computeName, or set annotation amlops.dev/adopt: \"true\" to take it over",
                    d.compute_name, d.workspace.name
                ),
            })
        };
    }
    match c.state {
        AzState::Busy => return Action::Wait,
        AzState::Failed => {
            let retries = retries_so_far(d, status);
            return if retries < d.max_retries {
                retry_failed(d, c, ph)
            } else {
                let errors: Vec<String> = c
                    .errors
                    .iter()
                    .map(|(code, m)| format!("{code}: {m}"))
                    .collect();
                Action::Stall(Stall {
                    reason: "ComputeFailed",
                    message: format!(
                        "compute {} is {} after {retries} retries ({}): fix the cause, then change the spec or the amlops.dev/reattach annotation to try again",
                        d.compute_name,
                        c.raw_state,
                        if errors.is_empty() {
                            "no error reported".to_string()
                        } else {
                            errors.join("; ")
                        }
                    ),
                })
            };
        }
        AzState::Succeeded => {}
    }
    // A reattach that is under way continues where it stopped.
    match ph {
        Phase::BackingUpTls => {
            return Action::BackupTls {
                then: Phase::Reattaching,
            };
        }
        Phase::Detaching => return Action::Detach,
        _ => {}
    }
    let token_changed =
        d.reattach_token.is_some() && d.reattach_token != status.last_reattach_token;
    let spec_changed = status
        .last_applied_hash
        .as_deref()
        .is_some_and(|h| h != d.attach_hash());
    // The user replaced the certificate in the Secret (same name, so the spec hash is
    // unchanged): Azure ML only takes a new certificate through a reattach.
    let rotated = d.tls.mode == TlsMode::Custom
        && obs.secret_fingerprint.as_deref().is_some_and(|new| {
            status
                .tls
                .as_ref()
                .and_then(|t| t.sha256_fingerprint.as_deref())
                .is_some_and(|sent| !sent.eq_ignore_ascii_case(new))
        });
    if token_changed || spec_changed || rotated {
        if d.manual_reattach && !token_changed {
            return Action::ReattachPending;
        }
        return if c.tls_enabled {
            Action::BackupTls {
                then: Phase::Reattaching,
            }
        } else {
            Action::Detach
        };
    }
    if let (Flavor::Create { agent_count, .. }, Some(actual)) = (&d.flavor, obs.agent_count)
        && actual != *agent_count
    {
        return Action::Scale {
            from: actual,
            to: *agent_count,
        };
    }
    let lb_differs = c.lb_type != d.load_balancer.type_
        || (d.load_balancer.type_ == LoadBalancerType::InternalLoadBalancer
            && d.load_balancer.subnet.is_some()
            && c.lb_subnet != d.load_balancer.subnet);
    if lb_differs || (d.description.is_some() && c.description != d.description) {
        return Action::UpdateInPlace;
    }
    Action::Ready
}

/// Failed-compute retries that count against `maxRetries`. A changed spec (generation) or
/// a new `amlops.dev/reattach` value is the user's "try again" after `ComputeFailed`: the
/// count starts over.
pub fn retries_so_far(d: &Desired, status: &ClusterStatus) -> u32 {
    let spec_changed = status.observed_generation.is_some()
        && d.generation.is_some()
        && status.observed_generation != d.generation;
    let token_changed =
        d.reattach_token.is_some() && d.reattach_token != status.last_reattach_token;
    if spec_changed || token_changed {
        0
    } else {
        status.retries.unwrap_or(0)
    }
}

/// How to retry a Failed compute. Deleting is only for a create that never succeeded
/// (nothing runs on it yet). A compute that was Ready before (a failed update, detach or
/// reattach), and any attached compute, is detached instead: the AKS cluster, its workloads
/// and its certificate stay, and the same cluster is attached again.
fn retry_failed(d: &Desired, c: &ObservedCompute, ph: Phase) -> Action {
    let never_served = matches!(
        ph,
        Phase::Pending | Phase::Validating | Phase::Creating | Phase::Attaching
    );
    match (d.is_create(), never_served) {
        (true, true) if !c.attached => Action::RetryFailed {
            detach: false,
            then: Phase::Creating,
        },
        // An attachment that never worked goes through the checks again (the cause may be
        // one they report, such as an unsupported Kubernetes version).
        (false, true) => Action::RetryFailed {
            detach: true,
            then: Phase::Attaching,
        },
        _ => Action::RetryFailed {
            detach: true,
            then: Phase::Reattaching,
        },
    }
}

fn decide_deletion(d: &Desired, obs: &Observed, status: &ClusterStatus) -> Action {
    if d.deletion_policy == DeletionPolicy::Orphan {
        return Action::Finished;
    }
    match &obs.compute {
        Some(c) if c.state == AzState::Busy => Action::Wait,
        Some(c) => match d.deletion_policy {
            // Azure refuses Delete on an attached compute (after a reattach): detach first.
            DeletionPolicy::Delete if c.attached => Action::Detach,
            DeletionPolicy::Delete => Action::DeleteCompute,
            _ if c.tls_enabled
                && phase(status) != Phase::Detaching
                && c.state == AzState::Succeeded =>
            {
                Action::BackupTls {
                    then: Phase::Detaching,
                }
            }
            _ => Action::Detach,
        },
        None => {
            let created = d.is_create() && d.deletion_policy == DeletionPolicy::Delete;
            if created && status.is_attached_compute == Some(true) && obs.aks_exists == Some(true) {
                Action::DeleteAks
            } else {
                Action::Finished
            }
        }
    }
}

/// Whether the node count must be read from the AKS cluster (`GET managedCluster`) before
/// deciding. A steady-state resync of a Ready cluster whose count matches its spec skips
/// it, so that a resync costs one ARM read (`GET compute`, DESIGN §2 step 6). Node counts
/// changed outside the operator (the cluster autoscaler, the portal) are therefore not
/// fought every resync: they are looked at again on the next change of the resource.
pub fn needs_node_count(d: &Desired, st: &ClusterStatus) -> bool {
    let Flavor::Create { agent_count, .. } = &d.flavor else {
        return false;
    };
    st.phase != Some(Phase::Ready)
        || st.observed_generation != d.generation
        || st.agent_count != Some(*agent_count)
        || st.kubernetes_version.is_none()
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
