//! The pure decision: `(desired, observed, status) → Plan` — the new
//! status, at most one write, the events and the requeue — and [`settle`], the pure
//! completion of a plan once its write succeeded or failed. No I/O here: every branch is a
//! row of the table tests (`decide_tests.rs`).
//!
//! `decide` works in two steps: [`choose`] picks the next [`Action`] from what was observed
//! (phase, operation in flight, drift, TLS safety), and the plan for that action fills in the status, the
//! write and the events.

use std::time::Duration;

use crate::azure::{OperationKind, OperationStatus as Poll, UnderlyingResourceAction};
use crate::crd::{
    ClusterStatus, DeletionPolicy, LoadBalancerType, Phase, ProvisioningError, TlsMode, TlsStatus,
};

use super::body::{provision_body, tls_update_body, update_body};
use super::checks::{check_azure, check_claims};
use super::conditions::{Health, apply, record_stall};
use super::desired::{Desired, Flavor};
use super::observe::{AzState, Lookup, Observed, ObservedCompute, ReadFailure, VerifiedTls};
use super::plan::{BackupPurpose, Note, Plan, Write};
use super::reconcile::EngineConfig;
use super::verdict::{ProvisioningFailure, Stall, Verdict, classify_provisioning};

/// The next step, chosen from what was observed.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing to do; record Ready.
    Ready,
    /// Azure is busy with the compute; look again later.
    Wait,
    /// Dynamic checks, then PUT a new compute (create or attach). `drift`: it existed before.
    Provision {
        /// Deleted outside the operator: warn.
        drift: bool,
    },
    /// The compute exists and matches: take it over without a write. `in_sync`: its
    /// purpose and TLS on/off already match the spec; otherwise a reattach follows (or
    /// waits for the annotation under `reattachPolicy: Manual`).
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
    /// GET-modify-PUT of `sslConfiguration` (what the SDK's `AksCompute.update` with
    /// `AksUpdateConfiguration(ssl_configuration=…)` sends): a change of TLS mode, label or
    /// certificate, with no detach — the endpoint keeps serving, `azuremlfessl` stays.
    UpdateTls {
        /// `renew: true` on the compute's `Auto` configuration: Azure ML issues the
        /// Microsoft certificate anew, for the same host name.
        renew: bool,
    },
    /// PUT the agent pool with the new count.
    Scale {
        /// Pool name.
        pool: String,
        /// Count now.
        from: i32,
        /// Count wanted.
        to: i32,
    },
    /// Reattach needed but `reattachPolicy: Manual` and no new annotation.
    ReattachPending,
    /// Back up `azuremlfessl`; a detach follows.
    BackupTls,
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

/// Whether the user asked for another try since the status was written: a changed spec
/// (generation) or a new `amlops.dev/reattach` value.
fn user_acted(d: &Desired, status: &ClusterStatus) -> bool {
    let spec_changed = status.observed_generation.is_some()
        && d.generation.is_some()
        && status.observed_generation != d.generation;
    let token_changed =
        d.reattach_token.is_some() && d.reattach_token != status.last_reattach_token;
    spec_changed || token_changed
}

/// Failed-compute retries that count against `maxRetries`. A changed spec or a new
/// `amlops.dev/reattach` value is the user's "try again" after `ComputeFailed`: the count
/// starts over.
pub fn retries_so_far(d: &Desired, status: &ClusterStatus) -> u32 {
    if user_acted(d, status) {
        0
    } else {
        status.retries.unwrap_or(0)
    }
}

/// For an attachment that failed: the cluster's Kubernetes version or node count differs
/// from what it was when the attach was sent (the user upgraded or scaled it).
fn cluster_changed(d: &Desired, obs: &Observed, status: &ClusterStatus) -> bool {
    let (Flavor::Attach { .. }, Some(c)) = (&d.flavor, obs.cluster.found()) else {
        return false;
    };
    let version = c.cluster.kubernetes_version().map(str::to_string);
    let nodes = i32::try_from(c.cluster.total_nodes()).ok();
    (status.kubernetes_version.is_some() && status.kubernetes_version != version)
        || (status.agent_count.is_some() && status.agent_count != nodes)
}

/// Choose the next action. `status.operation` has already been resumed (polled).
pub fn choose(d: &Desired, obs: &Observed, status: &ClusterStatus) -> Action {
    if d.deleting {
        return choose_deletion(d, obs, status);
    }
    let ph = phase(status);
    let owned = status.compute_id.is_some();
    let Some(c) = &obs.compute else {
        return match ph {
            // After our own detach, 404 means "continue with the attach".
            Phase::Detaching | Phase::Reattaching => Action::Reattach { drift: false },
            Phase::Pending | Phase::Creating | Phase::Attaching => {
                Action::Provision { drift: false }
            }
            // A created cluster whose compute was detached (not deleted) outside the
            // operator still runs, with its workloads: attach it again rather than pay for
            // a second cluster.
            _ if owned && d.is_create() && matches!(obs.cluster, Lookup::Found(_)) => {
                Action::Reattach { drift: true }
            }
            _ if owned => Action::Provision { drift: true },
            _ => Action::Provision { drift: false },
        };
    };
    if !owned {
        return choose_unowned(d, c);
    }
    // A compute that served (it failed in an update, a detach or a reattach) is detached to
    // retry: like any detach, only with its certificate held somewhere — the user's Secret
    // or a verified backup — else it is backed up first.
    let held = status
        .tls
        .as_ref()
        .is_some_and(|t| t.backup_secret_name.is_some())
        || obs.backup.is_some()
        || matches!(obs.user_tls, Some(Ok(_)));
    let back_up_before = |a: Action| match a {
        Action::RetryFailed {
            detach: true,
            then: Phase::Reattaching,
        } if c.tls_enabled && !held => Action::BackupTls,
        a => a,
    };
    match c.state {
        AzState::Busy => return Action::Wait,
        AzState::Failed => {
            return match classify_provisioning(&d.compute_name, &c.errors) {
                // Retrying reproduces the failure: stop at once, no detach, until the spec
                // (or, for an attachment, the cluster) changes.
                ProvisioningFailure::Deterministic(s)
                    if !user_acted(d, status) && !cluster_changed(d, obs, status) =>
                {
                    Action::Stall(s)
                }
                ProvisioningFailure::Deterministic(_) => back_up_before(retry_failed(d, c, ph)),
                ProvisioningFailure::Transient => {
                    let retries = retries_so_far(d, status);
                    if retries < d.max_retries {
                        back_up_before(retry_failed(d, c, ph))
                    } else {
                        Action::Stall(compute_failed(d, c, retries))
                    }
                }
            };
        }
        AzState::Succeeded => {}
    }
    // A reattach that is under way continues where it stopped.
    match ph {
        Phase::BackingUpTls => return Action::BackupTls,
        Phase::Detaching => return Action::Detach,
        _ => {}
    }
    // The user's Secret no longer holds a certificate that can serve (a rotation to an
    // expired or wrong-host certificate, a broken Secret): say so and write nothing — the
    // certificate Azure has keeps serving until the Secret is fixed.
    if d.tls.mode == TlsMode::Custom
        && let Some(Err(s)) = &obs.user_tls
    {
        return Action::Stall(Stall::new(
            s.reason,
            format!(
                "{}; the certificate sent earlier keeps serving until the Secret is fixed",
                s.message
            ),
        ));
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
        && matches!(&obs.user_tls, Some(Ok(v)) if status
            .tls
            .as_ref()
            .and_then(|t| t.sha256_fingerprint.as_deref())
            .is_some_and(|sent| !sent.eq_ignore_ascii_case(&v.info.sha256_fingerprint)));
    // Azure ML changes the cluster purpose only through a detach + attach. TLS (mode,
    // label, certificate) it changes in place on the compute, as the SDK's
    // `AksCompute.update` does: the endpoint keeps serving and `azuremlfessl` is never
    // removed. A purpose Azure did not report counts as different (the safe way: the
    // reattach sends everything).
    let purpose_differs = c
        .purpose
        .as_deref()
        .is_none_or(|p| !p.eq_ignore_ascii_case(d.purpose.as_str()));
    if token_changed || (spec_changed && purpose_differs) || status.reattach_required.is_some() {
        if d.manual_reattach && !token_changed {
            return Action::ReattachPending;
        }
        return if c.tls_enabled {
            Action::BackupTls
        } else {
            Action::Detach
        };
    }
    if spec_changed || rotated {
        return Action::UpdateTls { renew: false };
    }
    if renewal_due(d, obs, status) {
        return Action::UpdateTls { renew: true };
    }
    if let (Flavor::Create { agent_count, .. }, Some(pool)) =
        (&d.flavor, obs.cluster.found().and_then(|c| c.pool.as_ref()))
        && !pool.autoscaling
        && let Some(actual) = pool.count
        && actual != *agent_count
    {
        return Action::Scale {
            pool: pool.name.clone(),
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

/// Days before `notAfter` at which the served certificate is warned about (a Warning event
/// and a line on `Ready`), and within which `tls.autoRenew` renews an `Auto` certificate.
pub const EXPIRY_WARNING_DAYS: [i64; 3] = [30, 7, 1];

/// Whole days (rounded down) the certificate in `status.tls` has left at `obs.now`
/// (negative once expired); `None` when either is unknown.
pub fn days_left(obs: &Observed, status: &ClusterStatus) -> Option<i64> {
    let not_after: jiff::Timestamp = status.tls.as_ref()?.not_after.as_deref()?.parse().ok()?;
    let left = not_after.duration_since(obs.now?);
    Some(left.as_secs().div_euclid(86_400))
}

/// Whether to have Azure ML renew the `Auto` certificate now: the user asked (a new value of
/// `amlops.dev/renew-certificate`), or `tls.autoRenew` and 30 days or less left — at most
/// once a day, so that a certificate Azure renews with a short lifetime is not renewed on
/// every resync.
fn renewal_due(d: &Desired, obs: &Observed, status: &ClusterStatus) -> bool {
    let serving_auto = obs.compute.as_ref().is_some_and(|c| c.tls_auto);
    if d.tls.mode != TlsMode::Auto || !serving_auto {
        return false;
    }
    if d.renew_token.is_some() && d.renew_token != status.last_renew_token {
        return true;
    }
    let recently = match (
        status
            .certificate_renewed_at
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok()),
        obs.now,
    ) {
        (Some(at), Some(now)) => now.duration_since(at).as_secs() < 86_400,
        _ => false,
    };
    d.tls.auto_renew
        && !recently
        && days_left(obs, status).is_some_and(|left| left <= EXPIRY_WARNING_DAYS[0])
}

/// The expiry warning a Ready resource gives now: one Warning event when the certificate
/// crosses 30, 7 and 1 days before `notAfter` (recorded in
/// `status.certificateExpiryWarning`), and the line for the `Ready` message.
fn expiry_warning(d: &Desired, obs: &Observed, plan: &mut Plan) -> Option<String> {
    let left = days_left(obs, &plan.status);
    let threshold = left.and_then(|l| EXPIRY_WARNING_DAYS.iter().rev().copied().find(|t| l <= *t));
    let st = &mut plan.status;
    let Some(threshold) = threshold else {
        st.certificate_expiry_warning = None;
        return None;
    };
    let left = left.unwrap_or_default();
    let not_after = st
        .tls
        .as_ref()
        .and_then(|t| t.not_after.clone())
        .unwrap_or_default();
    let host = st
        .tls
        .as_ref()
        .and_then(|t| t.hostname.clone())
        .unwrap_or_else(|| d.compute_name.clone());
    let what = if left < 0 {
        format!("the TLS certificate of {host} expired at {not_after}")
    } else {
        format!("the TLS certificate of {host} expires in {left} day(s), at {not_after}")
    };
    let fix = match d.tls.mode {
        TlsMode::Auto if d.tls.auto_renew => {
            "amlops asks Azure ML to renew it (tls.autoRenew)".to_string()
        }
        TlsMode::Auto => format!(
            "renew it: set annotation {}=<new value>, or tls.autoRenew: true",
            crate::crd::RENEW_ANNOTATION
        ),
        _ => "put a renewed certificate in the tls.secretRef Secret: amlops sends it in place"
            .to_string(),
    };
    let line = format!("{what}: {fix}");
    if st.certificate_expiry_warning != Some(threshold) {
        st.certificate_expiry_warning = Some(threshold);
        plan.events
            .push(Note::warning("CertificateExpiring", line.clone()));
    }
    Some(line)
}

/// A compute this resource never created or attached: adopt it (annotation, and it
/// matches) or stall.
fn choose_unowned(d: &Desired, c: &ObservedCompute) -> Action {
    let matches = match &d.flavor {
        Flavor::Attach { aks_id } => c
            .aks_id
            .as_deref()
            .is_some_and(|id| id.eq_ignore_ascii_case(aks_id)),
        Flavor::Create { .. } => !c.attached,
    };
    if d.adopt && matches {
        let purpose_ok = c
            .purpose
            .as_deref()
            .is_none_or(|p| p.eq_ignore_ascii_case(d.purpose.as_str()));
        let tls_ok = c.tls_enabled == (d.tls.mode != TlsMode::Disabled);
        Action::Adopt {
            in_sync: purpose_ok && tls_ok,
        }
    } else if d.adopt {
        Action::Stall(Stall::new(
            "ComputeExists",
            format!(
                "compute {} exists but does not match this resource (other AKS cluster or attach/create mismatch): it cannot be adopted; pick another computeName",
                d.compute_name
            ),
        ))
    } else {
        Action::Stall(Stall::new(
            "ComputeExists",
            format!(
                "compute {} already exists in workspace {} and was not created by this resource: pick another computeName, or set annotation amlops.dev/adopt: \"true\" to take it over",
                d.compute_name, d.workspace.name
            ),
        ))
    }
}

fn compute_failed(d: &Desired, c: &ObservedCompute, retries: u32) -> Stall {
    let errors: Vec<String> = c
        .errors
        .iter()
        .map(|(code, m)| format!("{code}: {m}"))
        .collect();
    Stall::new(
        "ComputeFailed",
        format!(
            "compute {} is {} after {retries} retries ({}): fix the cause, then change the spec or the amlops.dev/reattach annotation to try again",
            d.compute_name,
            c.raw_state,
            if errors.is_empty() {
                "no error reported".to_string()
            } else {
                errors.join("; ")
            }
        ),
    )
}

/// How to retry a Failed compute. Deleting is only for a create that never succeeded
/// (nothing runs on it yet). A compute that was Ready before (a failed update, detach or
/// reattach), and any attached compute, is detached instead: the AKS cluster, its workloads
/// and its certificate stay, and the same cluster is attached again.
fn retry_failed(d: &Desired, c: &ObservedCompute, ph: Phase) -> Action {
    let never_served = matches!(ph, Phase::Pending | Phase::Creating | Phase::Attaching);
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

fn choose_deletion(d: &Desired, obs: &Observed, status: &ClusterStatus) -> Action {
    // Only a compute this resource created, attached or adopted is its to delete or detach
    // (`status.computeId` is saved before the first write): a resource that stalled on
    // someone else's compute (`ComputeExists`) lets go without touching it.
    if d.deletion_policy == DeletionPolicy::Orphan || status.compute_id.is_none() {
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
                Action::BackupTls
            }
            _ => Action::Detach,
        },
        None => {
            let created = d.is_create() && d.deletion_policy == DeletionPolicy::Delete;
            if created
                && status.is_attached_compute == Some(true)
                && matches!(obs.cluster, Lookup::Found(_))
            {
                Action::DeleteAks
            } else {
                Action::Finished
            }
        }
    }
}

/// The whole decision: resume the polled operation, record what was observed, choose the
/// action and plan it.
pub fn decide(d: &Desired, obs: &Observed, status: &ClusterStatus, cfg: &EngineConfig) -> Plan {
    let mut plan = Plan::new(status.clone(), None);
    plan.status.compute_name = Some(d.compute_name.clone());
    if let (Some(polled), Some(op)) = (&obs.poll, &status.operation) {
        match polled {
            Poll::InProgress { retry_after } => {
                progressing(
                    d,
                    &mut plan,
                    &format!("waiting for Azure: {} in progress", op.kind),
                );
                plan.requeue = Some(*retry_after);
                return plan;
            }
            Poll::Succeeded | Poll::Forgotten => plan.status.operation = None,
            Poll::Failed { .. } | Poll::Canceled => {
                plan.status.operation = None;
                let (code, message) = match polled {
                    Poll::Failed { code, message } => (code.clone(), message.clone()),
                    _ => ("Canceled".into(), "the operation was canceled".into()),
                };
                plan.events.push(Note::warning(
                    "OperationFailed",
                    format!("{} failed: {code}: {message}", op.kind),
                ));
                plan.status.provisioning_errors = vec![ProvisioningError { code, message }];
            }
        }
    }
    if let Some(f) = &obs.failure {
        return failed_read(d, plan, f, cfg);
    }
    record_observed(d, obs, &mut plan);
    let action = choose(d, obs, &plan.status);
    // An attachment Azure failed for a cause of the cluster (version, nodes): the cluster
    // may change without the resource changing, so look at it again at the resync pace.
    let watch_cluster = matches!(action, Action::Stall(_))
        && !d.is_create()
        && obs
            .compute
            .as_ref()
            .is_some_and(|c| c.state == AzState::Failed);
    let mut plan = plan_action(d, obs, plan, action, cfg);
    if watch_cluster {
        plan.requeue = Some(steady(obs, cfg));
    }
    plan
}

/// Copy what Azure reported into the status.
fn record_observed(d: &Desired, obs: &Observed, plan: &mut Plan) {
    let st = &mut plan.status;
    let Some(c) = &obs.compute else {
        st.provisioning_state = None;
        return;
    };
    st.provisioning_state = Some(c.raw_state.clone());
    if c.state != AzState::Failed {
        st.provisioning_errors.clear();
    } else {
        st.provisioning_errors = c
            .errors
            .iter()
            .map(|(code, message)| ProvisioningError {
                code: code.clone(),
                message: message.clone(),
            })
            .collect();
    }
    if st.compute_id.is_none() {
        return;
    }
    st.is_attached_compute = Some(c.attached);
    if c.aks_id.is_some() {
        st.aks_resource_id = c.aks_id.clone();
    }
    if c.fqdn.is_some() {
        st.cluster_fqdn = c.fqdn.clone();
    }
    if let (Flavor::Create { .. }, Some(cluster)) = (&d.flavor, obs.cluster.found())
        && c.state == AzState::Succeeded
    {
        let pool = cluster.pool.as_ref();
        st.agent_count = pool.and_then(|p| p.count);
        st.kubernetes_version = cluster.cluster.kubernetes_version().map(str::to_string);
        let autoscaling = pool.is_some_and(|p| p.autoscaling);
        if autoscaling && st.autoscaler_enabled != Some(true) {
            let p = pool.map(|p| p.name.as_str()).unwrap_or("?");
            plan.events.push(Note::warning(
                "AutoscalerEnabled",
                format!(
                    "the cluster autoscaler manages agent pool {p}: agentCount is not enforced while it is on; other changes are applied"
                ),
            ));
        }
        st.autoscaler_enabled = autoscaling.then_some(true);
    }
}

/// Reconciling=True with the phase as reason.
pub(super) fn progressing(d: &Desired, plan: &mut Plan, message: &str) {
    let ph = phase(&plan.status);
    apply(
        &mut plan.status,
        Health::Progressing,
        ph.as_str(),
        message,
        d.generation,
    );
}

/// Enter `phase` before a write, saying what is about to happen.
fn intend(d: &Desired, plan: &mut Plan, phase: Phase, what: &str, write: Write) {
    plan.set_phase(phase);
    apply(
        &mut plan.status,
        Health::Progressing,
        phase.as_str(),
        what,
        d.generation,
    );
    plan.write = Some(write);
}

/// Record a stall: status, one Warning event (not repeated while the same stall stands),
/// no requeue.
pub(super) fn stall(d: &Desired, mut plan: Plan, s: &Stall) -> Plan {
    if record_stall(&mut plan.status, s, d.generation) {
        plan.events.push(Note::warning(s.reason, s.message.clone()));
    }
    plan.write = None;
    plan.requeue = None;
    plan
}

/// The steady-state resync interval: the subscription's pace, the same as every kind's.
pub(crate) fn steady(obs: &Observed, cfg: &EngineConfig) -> Duration {
    obs.resync.interval(&cfg.resync, cfg.time_scale)
}

fn plan_action(
    d: &Desired,
    obs: &Observed,
    mut plan: Plan,
    action: Action,
    cfg: &EngineConfig,
) -> Plan {
    let compute_id = match d.compute_resource_id() {
        Ok(id) => id,
        Err(e) => return stall(d, plan, &Stall::new("InvalidSpec", e.to_string())),
    };
    match action {
        Action::Ready => {
            plan.requeue = Some(steady(obs, cfg));
            let c = obs.compute.as_ref();
            let st = &mut plan.status;
            if c.is_some_and(|c| c.tls_enabled)
                && st
                    .tls
                    .as_ref()
                    .and_then(|t| t.sha256_fingerprint.as_ref())
                    .is_none()
                && let Some(cluster) = st.aks_resource_id.as_deref().and_then(|a| a.parse().ok())
            {
                plan.write = Some(backup_write(d, cluster, BackupPurpose::Opportunistic));
            }
            let st = &mut plan.status;
            st.retries = None;
            if st.last_applied_hash.is_none() {
                st.last_applied_hash = Some(d.attach_hash());
            }
            // Once, when the compute is first Ready (created, attached or adopted): the AKS
            // compute is Azure ML's legacy path.
            if matches!(
                st.phase,
                None | Some(Phase::Pending | Phase::Creating | Phase::Attaching)
            ) {
                plan.events.push(Note::normal(
                    "LegacyComputePath",
                    format!(
                        "{} manages an Azure ML AKS compute, Azure ML's legacy path (CLI and SDK v1 support has ended; v2 online endpoints do not run on it). It keeps working; docs/migration.md moves a cluster to the Azure ML extension and a KubernetesCompute, keeping its certificate",
                        d.kind
                    ),
                ));
            }
            if d.reattach_token.is_some() {
                st.last_reattach_token = d.reattach_token.clone();
            }
            plan.set_phase(Phase::Ready);
            let mut msg = format!(
                "compute {} is {}",
                d.compute_name,
                if d.is_create() { "created" } else { "attached" }
            );
            if let Some(line) = expiry_warning(d, obs, &mut plan) {
                msg.push_str("; ");
                msg.push_str(&line);
            }
            if d.is_create() && plan.status.autoscaler_enabled == Some(true) {
                msg.push_str(
                    "; agentCount is not enforced while the cluster autoscaler manages the agent pool: turn it off (`az aks nodepool update --disable-cluster-autoscaler`) for agentCount to apply",
                );
            }
            apply(
                &mut plan.status,
                Health::Ready,
                if d.is_create() { "Created" } else { "Attached" },
                &msg,
                d.generation,
            );
            plan
        }
        Action::Wait => {
            progressing(d, &mut plan, "waiting for Azure to finish");
            plan.requeue = Some(cfg.busy_poll);
            plan
        }
        Action::Stall(s) => stall(d, plan, &s),
        Action::Provision { drift } => provision(d, obs, plan, compute_id, drift),
        Action::Adopt { in_sync } => {
            let st = &mut plan.status;
            st.compute_id = Some(compute_id.canonical());
            st.last_applied_hash = Some(d.attach_hash());
            // Out of sync: the next reconcile applies purpose/TLS through the reattach
            // path (after backing up the certificate).
            st.reattach_required = (!in_sync).then(|| {
                "the adopted compute's clusterPurpose or TLS differ from the spec".to_string()
            });
            plan.events.push(Note::normal(
                "Adopted",
                format!("adopted existing compute {}", d.compute_name),
            ));
            plan.requeue = Some(Duration::ZERO);
            plan
        }
        Action::RetryFailed { detach, then } => {
            let n = retries_so_far(d, &plan.status) + 1;
            plan.status.retries = Some(n);
            plan.events.push(Note::warning(
                "RetryingFailedCompute",
                format!(
                    "compute {} failed; {} it and trying again ({n}/{})",
                    d.compute_name,
                    if detach { "detaching" } else { "deleting" },
                    d.max_retries
                ),
            ));
            let action = if detach {
                UnderlyingResourceAction::Detach
            } else {
                UnderlyingResourceAction::Delete
            };
            // `then` is recorded before the DELETE: the 404 after it means "provision
            // from scratch" (Creating/Attaching) or "attach the same cluster again"
            // (Reattaching), also after a crash.
            intend(
                d,
                &mut plan,
                then,
                "removing the failed compute",
                Write::DeleteCompute {
                    id: compute_id,
                    action,
                },
            );
            plan.after.requeue = Some(cfg.retry_base * 2u32.saturating_pow(n - 1));
            plan
        }
        Action::UpdateInPlace => {
            let Some(current) = &obs.compute_raw else {
                plan.requeue = Some(Duration::ZERO);
                return plan;
            };
            if let Some(c) = &obs.compute
                && c.lb_type != d.load_balancer.type_
            {
                // Public reports: the switch gives `azureml-fe` a new IP address and drops
                // the DNS record that pointed to the old one.
                let host = d
                    .tls
                    .cname
                    .clone()
                    .or_else(|| c.fqdn.clone())
                    .unwrap_or_else(|| "the scoring endpoint".into());
                plan.events.push(Note::warning(
                    "LoadBalancerChanged",
                    format!(
                        "loadBalancer.type {} → {}: the scoring endpoint gets a new IP address; repoint the DNS record of {host} to it (kubectl -n azureml get service azureml-fe) — status.clusterFqdn shows what Azure serves once the update is done",
                        c.lb_type.as_str(),
                        d.load_balancer.type_.as_str()
                    ),
                ));
            }
            intend(
                d,
                &mut plan,
                Phase::Updating,
                "updating the load balancer / description in place",
                Write::PutCompute {
                    id: compute_id,
                    kind: OperationKind::Update,
                    body: Box::new(update_body(current, d)),
                },
            );
            plan
        }
        Action::UpdateTls { renew } => update_tls(d, obs, plan, compute_id, renew),
        Action::Scale { pool, from, to } => {
            let Some(cluster) = obs.cluster.found().map(|c| c.id.clone()) else {
                plan.requeue = Some(cfg.busy_poll);
                return plan;
            };
            intend(
                d,
                &mut plan,
                Phase::Scaling,
                &format!("scaling agent pool {pool} from {from} to {to} nodes"),
                Write::ScalePool {
                    cluster,
                    pool,
                    count: to,
                },
            );
            plan
        }
        Action::ReattachPending => {
            apply(
                &mut plan.status,
                Health::Waiting,
                "ReattachPending",
                "the change needs a detach + reattach: set annotation amlops.dev/reattach to a new value when downtime is acceptable",
                d.generation,
            );
            plan
        }
        Action::BackupTls => {
            let Some(cluster) = plan
                .status
                .aks_resource_id
                .as_deref()
                .and_then(|a| a.parse().ok())
            else {
                return stall(
                    d,
                    plan,
                    &Stall::new(
                        "TLSBackupFailed",
                        "the AKS cluster of the compute is not known yet: amlops never detaches without the certificate",
                    ),
                );
            };
            let fallback = obs.backup.is_some() || matches!(obs.user_tls, Some(Ok(_)));
            intend(
                d,
                &mut plan,
                Phase::BackingUpTls,
                "backing up the TLS certificate",
                backup_write(d, cluster, BackupPurpose::BeforeDetach { fallback }),
            );
            plan
        }
        Action::Detach => {
            let phase = if d.deleting {
                Phase::Deleting
            } else {
                Phase::Detaching
            };
            intend(
                d,
                &mut plan,
                phase,
                "detaching the compute",
                Write::DeleteCompute {
                    id: compute_id,
                    action: UnderlyingResourceAction::Detach,
                },
            );
            if !d.deleting {
                plan.after.phase = Some(Phase::Reattaching);
            }
            plan
        }
        Action::Reattach { drift } => reattach(d, obs, plan, compute_id, drift),
        Action::DeleteCompute => {
            intend(
                d,
                &mut plan,
                Phase::Deleting,
                "deleting the compute and its AKS cluster",
                Write::DeleteCompute {
                    id: compute_id,
                    action: UnderlyingResourceAction::Delete,
                },
            );
            plan
        }
        Action::DeleteAks => {
            let Some(cluster) = obs.cluster.found().map(|c| c.id.clone()) else {
                plan.finished = true;
                return plan;
            };
            intend(
                d,
                &mut plan,
                Phase::Deleting,
                "deleting the AKS cluster",
                Write::DeleteManagedCluster { cluster },
            );
            plan
        }
        Action::Finished => {
            plan.events.push(Note::normal(
                "CleanedUp",
                format!("{} policy applied in Azure", d.deletion_policy.as_str()),
            ));
            plan.finished = true;
            plan
        }
    }
}

fn backup_write(d: &Desired, cluster: crate::azure::ResourceId, purpose: BackupPurpose) -> Write {
    let secret = format!("{}-tls-backup", d.name);
    // After an Auto → Custom switch the user's secretRef may be the backup Secret itself;
    // it is then the user's to change (a rotation), and overwriting it with the
    // certificate being replaced would silently undo the rotation.
    let users_secret = d.tls.mode == TlsMode::Custom
        && d.tls.secret_ref.as_ref().is_some_and(|r| r.name == secret);
    Write::BackUpTls {
        cluster,
        secret,
        store: !users_secret,
        purpose,
    }
}

/// The TLS status for what a PUT is about to serve. Without material (a new Auto label,
/// or TLS off) the certificate is unknown until Azure issued it: Ready reads and backs it
/// up then. An earlier backup Secret stays recorded.
fn tls_status(
    d: &Desired,
    st: &ClusterStatus,
    material: Option<&VerifiedTls>,
) -> Option<TlsStatus> {
    let backup_secret_name = st.tls.as_ref().and_then(|t| t.backup_secret_name.clone());
    match material {
        Some(v) => Some(TlsStatus {
            mode: Some(d.tls.mode),
            backup_secret_name,
            not_after: Some(v.info.not_after.clone()),
            sha256_fingerprint: Some(v.info.sha256_fingerprint.clone()),
            hostname: Some(v.material.cname.clone()),
        }),
        None if backup_secret_name.is_some() || d.tls.mode != TlsMode::Disabled => {
            Some(TlsStatus {
                mode: Some(d.tls.mode),
                backup_secret_name,
                ..Default::default()
            })
        }
        None => None,
    }
}

/// The user's verified Custom material, or the stall that stops a (re)attach without it.
fn user_material(obs: &Observed) -> Result<Option<&VerifiedTls>, Stall> {
    match &obs.user_tls {
        Some(Ok(v)) => Ok(Some(v)),
        Some(Err(s)) => Err(s.clone()),
        None => Ok(None),
    }
}

fn provision(
    d: &Desired,
    obs: &Observed,
    mut plan: Plan,
    compute_id: crate::azure::ResourceId,
    drift: bool,
) -> Plan {
    if let Err(s) = check_claims(d, &obs.claims) {
        return stall(d, plan, &s);
    }
    let facts = obs.provision.clone().unwrap_or_default();
    let (location, warnings) = match check_azure(d, &facts, &obs.cluster) {
        Ok(v) => v,
        Err(s) => return stall(d, plan, &s),
    };
    for w in warnings {
        plan.events.push(Note::warning("Warning", w));
    }
    let material = match user_material(obs) {
        Ok(m) => m,
        Err(s) => return stall(d, plan, &s),
    };
    if drift {
        plan.events.push(Note::warning(
            "DriftDetected",
            format!(
                "compute {} was deleted outside amlops; provisioning it again",
                d.compute_name
            ),
        ));
    }
    let body = provision_body(d, &location, material.map(|v| &v.material), None);
    let (phase, kind) = if d.is_create() {
        (Phase::Creating, OperationKind::Create)
    } else {
        (Phase::Attaching, OperationKind::Attach)
    };
    let st = &mut plan.status;
    st.compute_id = Some(compute_id.canonical());
    st.last_applied_hash = Some(d.attach_hash());
    st.reattach_required = None;
    st.last_reattach_token = d.reattach_token.clone();
    if let Flavor::Attach { aks_id } = &d.flavor {
        st.aks_resource_id = Some(aks_id.clone());
        // What the cluster looked like when it was attached: a failure that a retry
        // would reproduce is retried once this changes.
        if let Some(c) = obs.cluster.found() {
            st.kubernetes_version = c.cluster.kubernetes_version().map(str::to_string);
            st.agent_count = i32::try_from(c.cluster.total_nodes()).ok();
        }
    }
    st.tls = tls_status(d, st, material);
    intend(
        d,
        &mut plan,
        phase,
        "sending the request to Azure",
        Write::PutCompute {
            id: compute_id,
            kind,
            body: Box::new(body),
        },
    );
    plan
}

fn reattach(
    d: &Desired,
    obs: &Observed,
    mut plan: Plan,
    compute_id: crate::azure::ResourceId,
    drift: bool,
) -> Plan {
    if drift {
        plan.events.push(Note::warning(
            "DriftDetected",
            format!(
                "compute {} was removed outside amlops but its AKS cluster still runs; attaching it again",
                d.compute_name
            ),
        ));
    }
    let facts = obs.provision.clone().unwrap_or_default();
    let location = match check_azure(d, &facts, &obs.cluster) {
        Ok((l, _)) => l,
        Err(s) => return stall(d, plan, &s),
    };
    // An Auto certificate stays Microsoft-issued: the reattach sends `Auto` with the same
    // label and `overwriteExistingDomain: true`, so that Azure ML takes the label's domain
    // back (the detach removed the public IP that carried it), issues the certificate for
    // it and keeps renewing it. The backup taken before the detach stays the fallback.
    let material = match user_material(obs) {
        Ok(m) => m,
        Err(s) => return stall(d, plan, &s),
    };
    let aks = match (&d.flavor, &plan.status.aks_resource_id) {
        (Flavor::Attach { aks_id }, _) => aks_id.clone(),
        (_, Some(id)) => id.clone(),
        (_, None) => {
            return stall(
                d,
                plan,
                &Stall::new(
                    "InvalidSpec",
                    "the AKS cluster of this compute is unknown: it cannot be reattached",
                ),
            );
        }
    };
    let mut body = provision_body(d, &location, material.map(|v| &v.material), Some(&aks));
    if d.tls.mode == TlsMode::Auto
        && let Some(ssl) = body
            .properties
            .properties
            .as_mut()
            .and_then(|p| p.ssl_configuration.as_mut())
    {
        ssl.overwrite_existing_domain = Some(true);
    }
    let st = &mut plan.status;
    // Status describes what is about to be served.
    let backup_secret_name = st.tls.as_ref().and_then(|t| t.backup_secret_name.clone());
    st.tls = Some(match tls_status(d, st, material) {
        Some(t) => t,
        None => TlsStatus {
            mode: Some(d.tls.mode),
            backup_secret_name,
            ..Default::default()
        },
    });
    st.last_applied_hash = Some(d.attach_hash());
    st.reattach_required = None;
    st.last_reattach_token = d.reattach_token.clone();
    intend(
        d,
        &mut plan,
        Phase::Reattaching,
        "attaching the cluster again",
        Write::PutCompute {
            id: compute_id,
            kind: OperationKind::Attach,
            body: Box::new(body),
        },
    );
    plan
}

/// The in-place TLS change: the compute as Azure returned it with the desired
/// `sslConfiguration` (or, to renew, its own `Auto` configuration with `renew: true`).
fn update_tls(
    d: &Desired,
    obs: &Observed,
    mut plan: Plan,
    compute_id: crate::azure::ResourceId,
    renew: bool,
) -> Plan {
    let Some(current) = &obs.compute_raw else {
        plan.requeue = Some(Duration::ZERO);
        return plan;
    };
    let material = match user_material(obs) {
        Ok(m) => m,
        Err(s) => return stall(d, plan, &s),
    };
    let body = tls_update_body(current, d, material.map(|v| &v.material), renew);
    // What is recorded once Azure accepted the PUT; the intent record keeps the old values
    // so that a failed PUT is tried again.
    let mut st = plan.status.clone();
    let what = if renew {
        st.last_renew_token = d.renew_token.clone();
        st.certificate_renewed_at = obs.now.map(|t| t.to_string());
        "renewing the Microsoft-issued certificate in place (same host name)".to_string()
    } else {
        format!(
            "changing TLS in place ({} → {}); the endpoint keeps serving",
            st.tls
                .as_ref()
                .and_then(|t| t.mode)
                .map(|m| m.as_str())
                .unwrap_or("?"),
            d.tls.mode.as_str()
        )
    };
    // Status describes what is about to be served: a new Auto certificate is read (and
    // backed up) once Azure issued it.
    st.tls = tls_status(d, &st, material);
    st.certificate_expiry_warning = None;
    st.last_applied_hash = Some(d.attach_hash());
    plan.after.applied = Some(Box::new(st));
    plan.events.push(Note::normal(
        if renew {
            "CertificateRenewing"
        } else {
            "TLSUpdating"
        },
        what.clone(),
    ));
    plan.after.fallback_reattach = !renew;
    intend(
        d,
        &mut plan,
        Phase::Updating,
        &what,
        Write::PutCompute {
            id: compute_id,
            kind: OperationKind::Update,
            body: Box::new(body),
        },
    );
    plan
}

/// Apply a verdict to a plan: Retry and Wait keep Reconciling=True and requeue, Stall
/// records the stall.
pub fn apply_verdict(d: &Desired, mut plan: Plan, v: Verdict, what: &str) -> Plan {
    match &v {
        Verdict::Retry(after) => {
            let message = format!("{what}; trying again in {}s", after.as_secs().max(1));
            plan.events
                .push(Note::warning("ReconcileError", message.clone()));
            progressing(d, &mut plan, &message);
            plan.requeue = Some(*after);
        }
        Verdict::Wait(after) => {
            progressing(
                d,
                &mut plan,
                &format!(
                    "Azure is busy ({what}); looking again in {}s",
                    after.as_secs().max(1)
                ),
            );
            plan.requeue = Some(*after);
        }
        Verdict::Stall(s) => plan = stall(d, plan, s),
    }
    plan.write = None;
    plan.verdict = Some(v);
    plan
}

fn failed_read(d: &Desired, plan: Plan, f: &ReadFailure, cfg: &EngineConfig) -> Plan {
    apply_verdict(d, plan, f.verdict(cfg.busy_poll), &f.error.to_string())
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
