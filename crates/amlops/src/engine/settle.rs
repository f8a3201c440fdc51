//! Settle: the pure completion of a [`Plan`] once `act` executed its write — record the
//! started operation (or the verified backup) and the phase that follows, or turn the
//! failure into its [`Verdict`](super::verdict::Verdict).

use std::time::Duration;

use crate::azure::{OperationHandle, OperationKind};
use crate::crd::{OperationStatus, Phase, TlsStatus};
use crate::tls::{CertInfo, TlsError};

use super::conditions::{Health, apply};
use super::decide::{apply_verdict, stall};
use super::desired::Desired;
use super::observe::Observed;
use super::plan::{BackupPurpose, Note, Plan, Write};
use super::reconcile::EngineConfig;
use super::verdict::{Call, CallKind, Stall, Verdict, verdict};

/// What a successful write produced.
#[derive(Debug)]
pub enum Done {
    /// Azure accepted the write: a long-running operation to poll, or `None` when it
    /// completed synchronously.
    Started(Option<OperationHandle>),
    /// The certificate was read, verified (and stored unless it is the user's Secret).
    BackedUp {
        /// The certificate's facts.
        info: CertInfo,
        /// Where the backup went.
        stored: Stored,
    },
}

/// Where a verified backup went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The resource's namespace (or nowhere, when it is the user's own Secret).
    Here,
    /// The resource is being deleted with its namespace (which refuses new Secrets): the
    /// operator's namespace holds it, as Secret `name`.
    Elsewhere {
        /// The operator's namespace.
        namespace: String,
        /// `<resource namespace>.<backup name>`.
        name: String,
    },
    /// Neither could hold it: why. A deletion goes on without it (never blocking).
    Skipped(String),
}

/// Why a write failed.
#[derive(Debug)]
pub enum WriteFailure {
    /// Azure refused or failed the call (for a backup: listing the credentials).
    Azure(crate::azure::AzureError),
    /// The certificate could not be read, verified or stored.
    Tls(TlsError),
}

/// The record of a started operation.
pub fn record_operation(handle: &OperationHandle) -> OperationStatus {
    OperationStatus {
        kind: handle.kind,
        url: handle.url.clone(),
        style: Some(handle.style),
        started_at: Some(jiff::Timestamp::now().to_string()),
    }
}

/// Complete `plan` once its write finished: record the operation (or the backup) and the
/// phase that follows, or turn the failure into its verdict.
pub fn settle(
    d: &Desired,
    obs: &Observed,
    mut plan: Plan,
    result: Result<Done, WriteFailure>,
    cfg: &EngineConfig,
) -> Plan {
    let Some(write) = plan.write.take() else {
        return plan;
    };
    let purpose = match &write {
        Write::BackUpTls { purpose, .. } => Some(*purpose),
        _ => None,
    };
    match result {
        Ok(Done::Started(handle)) => {
            if let Some(applied) = plan.after.applied.take() {
                let st = &mut plan.status;
                st.tls = applied.tls;
                st.certificate_expiry_warning = applied.certificate_expiry_warning;
                st.last_applied_hash = applied.last_applied_hash;
                st.last_renew_token = applied.last_renew_token;
                st.certificate_renewed_at = applied.certificate_renewed_at;
            }
            let requeue = match &handle {
                Some(h) => {
                    plan.status.operation = Some(record_operation(h));
                    h.retry_after.unwrap_or(cfg.busy_poll)
                }
                None => Duration::ZERO,
            };
            if let Some(p) = plan.after.phase {
                plan.set_phase(p);
            }
            plan.requeue = Some(plan.after.requeue.unwrap_or(requeue));
            plan
        }
        Ok(Done::BackedUp { info, stored }) => {
            let Write::BackUpTls { secret, .. } = &write else {
                return plan;
            };
            let fp = info.sha256_fingerprint.get(..16).unwrap_or("");
            if stored != Stored::Here {
                plan.events.push(match &stored {
                    Stored::Elsewhere { namespace, name } => Note::normal(
                        "TLSBackedUp",
                        format!(
                            "certificate {fp} (expires {}) backed up to Secret {namespace}/{name}: namespace {} is being deleted",
                            info.not_after, d.namespace
                        ),
                    ),
                    _ => Note::warning(
                        "TLSBackupSkipped",
                        format!(
                            "certificate {fp} (expires {}) not kept: namespace {} is being deleted and refuses new Secrets, and {}; deleting anyway so that the namespace deletion completes",
                            info.not_after,
                            d.namespace,
                            match &stored {
                                Stored::Skipped(why) => why.as_str(),
                                _ => "",
                            }
                        ),
                    ),
                });
                plan.set_phase(Phase::Detaching);
                plan.requeue = Some(Duration::ZERO);
                return plan;
            }
            let fqdn = obs.compute.as_ref().and_then(|c| c.fqdn.clone());
            plan.status.tls = Some(TlsStatus {
                mode: Some(d.tls.mode),
                backup_secret_name: Some(secret.clone()),
                not_after: Some(info.not_after.clone()),
                sha256_fingerprint: Some(info.sha256_fingerprint.clone()),
                hostname: fqdn.or(info.hostname.clone()),
            });
            plan.events.push(Note::normal(
                "TLSBackedUp",
                format!(
                    "certificate {} (expires {}) backed up to Secret {secret}",
                    info.sha256_fingerprint.get(..16).unwrap_or(""),
                    info.not_after
                ),
            ));
            if let Some(BackupPurpose::BeforeDetach { .. }) = purpose {
                plan.set_phase(Phase::Detaching);
                plan.requeue = Some(Duration::ZERO);
            }
            plan
        }
        Err(WriteFailure::Azure(e)) if purpose.is_none() => {
            let (kind, resource) = call_of(&write);
            let v = verdict(
                &e,
                Call {
                    kind,
                    resource: &resource,
                },
                cfg.busy_poll,
            );
            // Refused as a request (400), not for lack of a role or a passing cause: the
            // same change through detach + attach is the documented alternative.
            if plan.after.fallback_reattach
                && e.category() == crate::azure::ErrorCategory::BadRequest
                && let Verdict::Stall(refused) = &v
            {
                return tls_update_refused(d, plan, &refused.message);
            }
            apply_verdict(d, plan, v, &e.to_string())
        }
        Err(failure) => backup_failed(d, plan, purpose, failure, cfg),
    }
}

/// Azure refused the in-place TLS change: the change goes through detach + reattach
/// instead (the certificate is backed up before the detach; under `reattachPolicy: Manual`
/// it waits for the annotation), and an Event says so.
fn tls_update_refused(d: &Desired, mut plan: Plan, refusal: &str) -> Plan {
    let why = format!("Azure refused the in-place TLS change ({refusal})");
    plan.events.push(Note::warning(
        "TLSUpdateRefused",
        format!("{why}: falling back to detach + reattach, the certificate backed up first"),
    ));
    plan.status.reattach_required = Some(why.clone());
    apply(
        &mut plan.status,
        Health::Progressing,
        "TLSUpdateRefused",
        &format!("{why}; detaching and attaching again"),
        d.generation,
    );
    plan.requeue = Some(Duration::ZERO);
    plan
}

fn call_of(w: &Write) -> (CallKind, String) {
    match w {
        Write::PutCompute { id, kind, .. } => (
            if *kind == OperationKind::Update {
                CallKind::Update
            } else {
                CallKind::Provision
            },
            id.to_string(),
        ),
        Write::DeleteCompute { id, .. } => (CallKind::Delete, id.to_string()),
        Write::ScalePool { cluster, .. } => (CallKind::Scale, cluster.to_string()),
        Write::DeleteManagedCluster { cluster } => (CallKind::Delete, cluster.to_string()),
        Write::BackUpTls { cluster, .. } => (CallKind::ListCredentials, cluster.to_string()),
    }
}

/// A backup that failed. Before a detach: wait for a passing failure, stop without a
/// certificate held elsewhere, go on with one. On a Ready cluster: a Warning, and a
/// passing failure is retried soon (a certificate without a backup is one reattach away
/// from being lost); one that does not pass (a private cluster's API server) at resync
/// pace, not to spend the write budget on credential calls.
fn backup_failed(
    d: &Desired,
    mut plan: Plan,
    purpose: Option<BackupPurpose>,
    failure: WriteFailure,
    cfg: &EngineConfig,
) -> Plan {
    // Listing the credentials goes through the verdict like every Azure call: a missing
    // role stops with AuthorizationFailed; throttling and busy clusters pass.
    let (message, retry, stall_as) = match &failure {
        WriteFailure::Azure(e) => {
            let resource = plan.status.aks_resource_id.clone().unwrap_or_default();
            let call = Call {
                kind: CallKind::ListCredentials,
                resource: &resource,
            };
            match verdict(e, call, cfg.busy_poll) {
                Verdict::Retry(after) | Verdict::Wait(after) => (
                    format!(
                        "cannot read the serving certificate from the AKS cluster right now: no credential for the AKS cluster ({})",
                        e.category().as_str()
                    ),
                    Some(after),
                    None,
                ),
                Verdict::Stall(s) => (s.message.clone(), None, Some(s)),
            }
        }
        WriteFailure::Tls(e) => (
            e.to_string(),
            e.is_transient()
                .then(|| cfg.busy_poll.max(e.retry_after().unwrap_or_default())),
            None,
        ),
    };
    match purpose {
        // A passing failure (429, 503, a cluster starting) is waited out before a detach even
        // when a certificate is already held: the fresh read is the one of what serves now.
        Some(BackupPurpose::BeforeDetach { .. }) if retry.is_some() => {
            let after = retry.unwrap_or_default();
            plan.events
                .push(Note::warning("TLSBackupRetrying", message.clone()));
            apply(
                &mut plan.status,
                Health::Progressing,
                "TLSBackupRetrying",
                &format!("{message}; trying again before detaching"),
                d.generation,
            );
            plan.requeue = Some(after.max(cfg.busy_poll));
            plan
        }
        Some(BackupPurpose::BeforeDetach { fallback: false }) => {
            let s = stall_as.unwrap_or_else(|| {
                Stall::new(
                    "TLSBackupFailed",
                    format!(
                        "{message}. amlops never detaches without the certificate: make the cluster's API server reachable, or put the certificate in a Secret and use tls.mode Custom with tls.secretRef"
                    ),
                )
            });
            let mut plan = stall(d, plan, &s);
            // Network paths to an API server change without the spec changing: look
            // again at the slow resync pace.
            plan.requeue = Some(cfg.resync.base);
            plan
        }
        Some(BackupPurpose::BeforeDetach { fallback: true }) => {
            plan.events.push(Note::warning(
                "TLSBackupFailed",
                format!("{message}; continuing with the certificate already held"),
            ));
            plan.set_phase(Phase::Detaching);
            plan.requeue = Some(Duration::ZERO);
            plan
        }
        Some(BackupPurpose::Opportunistic) | None => {
            plan.events.push(Note::warning("TLSBackupFailed", message));
            if let Some(after) = retry {
                let steady = plan.requeue.unwrap_or(cfg.resync.base);
                plan.requeue = Some(steady.min(cfg.busy_poll).max(after));
            }
            plan
        }
    }
}
