//! The pipeline: resume → observe → decide → act → report. A reconcile never waits for a
//! long-running ARM operation: it records the operation in status and asks to be requeued.
//! Status is saved before every Azure write, so a crash at any point resumes correctly.

use std::time::Duration;

use crate::azure::{
    ArmClient, AzureError, ErrorCategory, LroStart, LroStyle, OperationHandle, OperationKind,
    OperationStatus as Poll, ResourceId, UnderlyingResourceAction,
};
use crate::crd::{ClusterStatus, OperationStatus, Phase, ProvisioningError, TlsMode, TlsStatus};
use crate::tls::{self, TlsError};

use super::body::{TlsMaterial, provision_body, update_body};
use super::checks::{CheckError, check_azure, check_claims};
use super::conditions::{Health, apply};
use super::decide::{Action, AzState, Observed, Stall, decide, needs_node_count};
use super::desired::{Desired, Flavor};
use super::observe::observe_compute;
use super::store::{Event, KubeStore, StoreError};

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Namespace of `azuremlfessl` on the AKS clusters.
    pub tls_namespace: String,
    /// Steady-state resync.
    pub resync: Duration,
    /// Poll interval while Azure is busy and sent no Retry-After.
    pub busy_poll: Duration,
    /// Base of the failed-compute retry backoff (doubles per retry).
    pub retry_base: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            tls_namespace: "default".into(),
            resync: Duration::from_secs(600),
            busy_poll: Duration::from_secs(15),
            retry_base: Duration::from_secs(30),
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
}

/// A reconcile that failed; the caller backs off and retries.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Azure failed.
    #[error(transparent)]
    Azure(#[from] AzureError),
    /// Kubernetes failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    /// Static label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Azure(e) => e.category().as_str(),
            Self::Store(_) => "Kubernetes",
        }
    }
    /// Azure's Retry-After, when it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Azure(e) => e.retry_after(),
            Self::Store(_) => None,
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

fn kind_of(k: &str) -> OperationKind {
    match k {
        "Create" => OperationKind::Create,
        "Attach" => OperationKind::Attach,
        "Update" => OperationKind::Update,
        "Scale" => OperationKind::Scale,
        "Detach" => OperationKind::Detach,
        _ => OperationKind::Delete,
    }
}

fn handle_of(op: &OperationStatus) -> OperationHandle {
    OperationHandle {
        kind: kind_of(&op.kind),
        style: if op.style.as_deref() == Some("Location") {
            LroStyle::Location
        } else {
            LroStyle::AsyncOperation
        },
        url: op.url.clone(),
        retry_after: None,
    }
}

fn record(handle: &OperationHandle) -> OperationStatus {
    OperationStatus {
        kind: handle.kind.as_str().to_string(),
        url: handle.url.clone(),
        style: Some(match handle.style {
            LroStyle::Location => "Location".into(),
            _ => "AsyncOperation".into(),
        }),
        started_at: Some(jiff::Timestamp::now().to_string()),
    }
}

impl<S: KubeStore> Engine<S> {
    async fn event(&self, d: &Desired, warning: bool, reason: &str, message: impl Into<String>) {
        self.store
            .emit(Event {
                key: d.key(),
                warning,
                reason: reason.into(),
                message: message.into(),
            })
            .await;
    }

    /// Save `st` with `phase` before an Azure write (the intent record).
    async fn intend(
        &self,
        d: &Desired,
        st: &mut ClusterStatus,
        phase: Phase,
        what: &str,
    ) -> Result<(), EngineError> {
        self.set_phase(d, st, phase).await;
        apply(st, Health::Progressing, phase.as_str(), what, d.generation);
        self.store.save_status(&d.key(), st).await?;
        Ok(())
    }

    async fn set_phase(&self, d: &Desired, st: &mut ClusterStatus, phase: Phase) {
        if st.phase != Some(phase) {
            self.event(
                d,
                false,
                phase.as_str(),
                format!(
                    "phase {} → {}",
                    st.phase.unwrap_or_default().as_str(),
                    phase.as_str()
                ),
            )
            .await;
            st.phase = Some(phase);
        }
    }

    /// One reconcile of `d` starting from the persisted `status`.
    pub async fn reconcile(
        &self,
        d: &Desired,
        status: ClusterStatus,
    ) -> Result<Outcome, EngineError> {
        // What the API server holds: a status equal to it is not written again, so a
        // steady resync or a poll costs the API server nothing.
        let initial = status.clone();
        let mut st = status;
        st.compute_name = Some(d.compute_name.clone());
        // Resume an in-flight operation.
        if let Some(op) = st.operation.clone() {
            let handle = handle_of(&op);
            match self.arm.poll(&handle).await? {
                Poll::InProgress { retry_after } => {
                    let phase = st.phase.unwrap_or_default();
                    apply(
                        &mut st,
                        Health::Progressing,
                        phase.as_str(),
                        &format!("waiting for Azure: {} in progress", op.kind),
                        d.generation,
                    );
                    return self.done_if_changed(d, st, &initial, retry_after).await;
                }
                Poll::Succeeded => st.operation = None,
                failed => {
                    st.operation = None;
                    let (code, message) = match &failed {
                        Poll::Failed { code, message } => (code.clone(), message.clone()),
                        _ => ("Canceled".into(), "the operation was canceled".into()),
                    };
                    st.provisioning_errors = vec![ProvisioningError {
                        code: code.clone(),
                        message: message.clone(),
                    }];
                    self.event(
                        d,
                        true,
                        "OperationFailed",
                        format!("{} failed: {code}: {message}", op.kind),
                    )
                    .await;
                }
            }
        }
        // Observe.
        let compute_id = ResourceId::compute(
            &d.workspace.subscription_id,
            &d.workspace.resource_group,
            &d.workspace.name,
            &d.compute_name,
        )?;
        let raw = self.arm.get_compute(&compute_id).await?;
        let mut obs = Observed {
            compute: raw.as_ref().map(observe_compute),
            ..Default::default()
        };
        if let Some(c) = &obs.compute {
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
            if st.compute_id.is_some() {
                st.is_attached_compute = Some(c.attached);
                if c.aks_id.is_some() {
                    st.aks_resource_id = c.aks_id.clone();
                }
                if c.fqdn.is_some() {
                    st.cluster_fqdn = c.fqdn.clone();
                }
            }
            if d.is_create()
                && !d.deleting
                && c.state == AzState::Succeeded
                && st.compute_id.is_some()
                && needs_node_count(d, &st)
                && let Some(aks) = &c.aks_id
                && let Ok(id) = aks.parse::<ResourceId>()
                && let Some(cluster) = self.arm.get_managed_cluster(&id).await?
            {
                let pool = cluster
                    .properties
                    .agent_pool_profiles
                    .as_ref()
                    .and_then(|p| p.first());
                obs.agent_count = pool.and_then(|p| p.count);
                st.agent_count = obs.agent_count;
                st.kubernetes_version = cluster.kubernetes_version().map(str::to_string);
            }
        } else {
            st.provisioning_state = None;
        }
        if d.tls.mode == TlsMode::Custom
            && !d.deleting
            && st.compute_id.is_some()
            && obs
                .compute
                .as_ref()
                .is_some_and(|c| c.state == AzState::Succeeded)
        {
            // A missing or broken Secret is not a reason to disturb a serving cluster: it
            // only matters (and stalls) when a (re)attach needs the certificate.
            obs.secret_fingerprint = self
                .user_tls(d)
                .await
                .ok()
                .flatten()
                .map(|(_, info)| info.sha256_fingerprint);
        }
        // Where the compute is gone, whether its cluster is too decides between deleting
        // the cluster (deletion) and attaching it again (drift of a created cluster).
        let drift_of_created = d.is_create()
            && st.compute_id.is_some()
            && !matches!(
                st.phase.unwrap_or_default(),
                Phase::Pending
                    | Phase::Validating
                    | Phase::Creating
                    | Phase::Attaching
                    | Phase::Detaching
                    | Phase::Reattaching
            );
        if (d.deleting || drift_of_created)
            && obs.compute.is_none()
            && let Some(aks) = &st.aks_resource_id
            && let Ok(id) = aks.parse::<ResourceId>()
        {
            obs.aks_exists = Some(self.arm.get_managed_cluster(&id).await?.is_some());
        }
        let action = decide(d, &obs, &st);
        tracing::debug!(action = ?action, "decided");
        self.act(d, action, raw, &obs, st, &initial).await
    }

    /// [`Self::done`] for paths that write nothing to Azure (steady state, polls): the
    /// status is saved only when it differs from the one the reconcile started from. No
    /// intent record was saved on these paths, so that one is what the API server holds.
    async fn done_if_changed(
        &self,
        d: &Desired,
        st: ClusterStatus,
        initial: &ClusterStatus,
        requeue: Duration,
    ) -> Result<Outcome, EngineError> {
        if st == *initial {
            return Ok(Outcome {
                status: st,
                requeue: Some(requeue),
                finished: false,
            });
        }
        self.done(d, st, Some(requeue), false).await
    }

    async fn done(
        &self,
        d: &Desired,
        st: ClusterStatus,
        requeue: Option<Duration>,
        finished: bool,
    ) -> Result<Outcome, EngineError> {
        self.store.save_status(&d.key(), &st).await?;
        Ok(Outcome {
            status: st,
            requeue,
            finished,
        })
    }

    async fn stall(
        &self,
        d: &Desired,
        mut st: ClusterStatus,
        s: Stall,
    ) -> Result<Outcome, EngineError> {
        let already = st.conditions.iter().any(|c| {
            c.type_ == "Stalled"
                && c.status == "True"
                && c.reason == s.reason
                && c.message == s.message
        });
        if !already {
            self.event(d, true, s.reason, s.message.clone()).await;
        }
        if st.phase.is_none() {
            st.phase = Some(Phase::Pending);
        }
        apply(&mut st, Health::Stalled, s.reason, &s.message, d.generation);
        self.done(d, st, None, false).await
    }

    /// Start an LRO (or take its synchronous result) and record it.
    async fn started<T>(
        &self,
        d: &Desired,
        mut st: ClusterStatus,
        start: LroStart<T>,
    ) -> Result<Outcome, EngineError> {
        let requeue = match start {
            LroStart::Started(handle) => {
                st.operation = Some(record(&handle));
                handle.retry_after.unwrap_or(self.config.busy_poll)
            }
            LroStart::Done(_) => Duration::ZERO,
        };
        self.done(d, st, Some(requeue), false).await
    }

    /// Certificate and key of the user's Custom Secret, verified.
    async fn user_tls(&self, d: &Desired) -> Result<Option<(TlsMaterial, tls::CertInfo)>, Stall> {
        if d.tls.mode != TlsMode::Custom {
            return Ok(None);
        }
        let name = d
            .tls
            .secret_ref
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let to_stall = |e: TlsError| Stall {
            reason: e.reason(),
            message: format!(
                "tls.secretRef {name}: {e}: fix the Secret and the operator continues"
            ),
        };
        let secret = self
            .store
            .get_secret(&d.namespace, &name)
            .await
            .map_err(|e| Stall {
                reason: "SecretNotFound",
                message: e.to_string(),
            })?
            .ok_or_else(|| to_stall(TlsError::SecretNotFound(format!("{}/{name}", d.namespace))))?;
        let (cert, key) = tls::cert_and_key_from_secret(&secret).map_err(to_stall)?;
        let info = tls::verify_pair(&cert, &key).map_err(to_stall)?;
        Ok(Some((
            TlsMaterial {
                cert,
                key,
                cname: d.tls.cname.clone().unwrap_or_default(),
            },
            info,
        )))
    }

    /// The verified backup, if one exists.
    async fn backup_tls(
        &self,
        d: &Desired,
        st: &ClusterStatus,
    ) -> Option<(TlsMaterial, tls::CertInfo)> {
        let t = st.tls.as_ref()?;
        let secret = self
            .store
            .get_secret(&d.namespace, t.backup_secret_name.as_ref()?)
            .await
            .ok()??;
        let (cert, key) = tls::cert_and_key_from_secret(&secret).ok()?;
        let info = tls::verify_pair(&cert, &key).ok()?;
        let cname = t.hostname.clone().or_else(|| info.hostname.clone())?;
        Some((TlsMaterial { cert, key, cname }, info))
    }

    /// Read `azuremlfessl` from the cluster and store the backup Secret.
    async fn take_backup(
        &self,
        d: &Desired,
        st: &mut ClusterStatus,
        fqdn: Option<String>,
    ) -> Result<(), TlsError> {
        let aks = st.aks_resource_id.clone().ok_or_else(|| {
            TlsError::BackupFailed("the AKS cluster of the compute is not known yet".into())
        })?;
        let id: ResourceId = aks
            .parse()
            .map_err(|_| TlsError::BackupFailed("bad AKS resource id".into()))?;
        let kubeconfig = match self.arm.list_cluster_user_credential(&id).await {
            Ok(k) => k,
            Err(user) => self
                .arm
                .list_cluster_admin_credential(&id)
                .await
                .map_err(|e| {
                    let m = format!(
                        "no credential for the AKS cluster ({})",
                        e.category().as_str()
                    );
                    if e.category().is_retryable() {
                        // Both calls are asked again next time: wait for the later of
                        // their Retry-Afters.
                        TlsError::Unavailable(m, e.retry_after().max(user.retry_after()))
                    } else {
                        TlsError::BackupFailed(m)
                    }
                })?,
        };
        let client = kubeconfig.client(None).await.map_err(|e| {
            TlsError::BackupFailed(format!("kubeconfig unusable ({})", e.category().as_str()))
        })?;
        let (cert, key) = tls::read_azuremlfessl(client, &self.config.tls_namespace).await?;
        let info = tls::verify_pair(&cert, &key)?;
        let name = format!("{}-tls-backup", d.name);
        let secret = tls::backup_secret(
            &name,
            &d.namespace,
            &cert,
            &key,
            &format!("{aks}#{}/{}", self.config.tls_namespace, tls::AZUREMLFESSL),
        );
        // After an Auto → Custom switch the user's secretRef may be the backup Secret
        // itself; it is then the user's to change (a rotation), and overwriting it with the
        // certificate being replaced would silently undo the rotation.
        let users_secret = d.tls.mode == TlsMode::Custom
            && d.tls.secret_ref.as_ref().is_some_and(|r| r.name == name);
        if !users_secret {
            self.store
                .apply_secret(secret)
                .await
                .map_err(|e| TlsError::BackupFailed(e.to_string()))?;
        }
        st.tls = Some(TlsStatus {
            mode: Some(d.tls.mode),
            backup_secret_name: Some(name.clone()),
            not_after: Some(info.not_after.clone()),
            sha256_fingerprint: Some(info.sha256_fingerprint.clone()),
            hostname: fqdn.or(info.hostname.clone()),
        });
        self.event(
            d,
            false,
            "TLSBackedUp",
            format!(
                "certificate {} (expires {}) backed up to Secret {name}",
                &info.sha256_fingerprint[..16],
                info.not_after
            ),
        )
        .await;
        Ok(())
    }

    async fn workspace_location(&self, d: &Desired) -> Result<Result<String, Stall>, EngineError> {
        match check_azure(&self.arm, d).await {
            Ok((loc, _)) => Ok(Ok(loc)),
            Err(CheckError::Stall(s)) => Ok(Err(s)),
            Err(CheckError::Azure(e)) => Err(e.into()),
        }
    }

    /// A 400 on a write is the user's to fix, not a reason to hammer Azure.
    fn rejected(e: AzureError) -> Result<Stall, EngineError> {
        if e.category() == ErrorCategory::BadRequest {
            Ok(Stall {
                reason: "AzureRejected",
                message: format!(
                    "Azure refused the request: {}: {}",
                    e.code().unwrap_or("BadRequest"),
                    e.message().unwrap_or("")
                ),
            })
        } else {
            Err(e.into())
        }
    }

    async fn act(
        &self,
        d: &Desired,
        action: Action,
        raw: Option<crate::azure::model::ComputeResource>,
        obs: &Observed,
        mut st: ClusterStatus,
        initial: &ClusterStatus,
    ) -> Result<Outcome, EngineError> {
        let compute_id = ResourceId::compute(
            &d.workspace.subscription_id,
            &d.workspace.resource_group,
            &d.workspace.name,
            &d.compute_name,
        )?;
        match action {
            Action::Ready => {
                let c = obs.compute.as_ref();
                let mut requeue = self.config.resync;
                if c.is_some_and(|c| c.tls_enabled)
                    && st
                        .tls
                        .as_ref()
                        .and_then(|t| t.sha256_fingerprint.as_ref())
                        .is_none()
                {
                    let fqdn = c.and_then(|c| c.fqdn.clone());
                    if let Err(e) = self.take_backup(d, &mut st, fqdn).await {
                        self.event(d, true, "TLSBackupFailed", e.to_string()).await;
                        // Ready either way. A passing failure is retried soon (a certificate
                        // without a backup is one reattach away from being lost); an API
                        // server that cannot be reached (private cluster) at resync pace,
                        // not to spend the write budget on credential calls.
                        if e.is_transient() {
                            requeue = requeue
                                .min(self.config.busy_poll)
                                .max(e.retry_after().unwrap_or_default());
                        }
                    }
                }
                st.retries = None;
                if st.last_applied_hash.is_none() {
                    st.last_applied_hash = Some(d.attach_hash());
                }
                if d.reattach_token.is_some() {
                    st.last_reattach_token = d.reattach_token.clone();
                }
                self.set_phase(d, &mut st, Phase::Ready).await;
                let msg = format!(
                    "compute {} is {}",
                    d.compute_name,
                    if d.is_create() { "created" } else { "attached" }
                );
                apply(
                    &mut st,
                    Health::Ready,
                    if d.is_create() { "Created" } else { "Attached" },
                    &msg,
                    d.generation,
                );
                self.done_if_changed(d, st, initial, requeue).await
            }
            Action::Wait => {
                let ph = st.phase.unwrap_or_default();
                apply(
                    &mut st,
                    Health::Progressing,
                    ph.as_str(),
                    "waiting for Azure to finish",
                    d.generation,
                );
                self.done_if_changed(d, st, initial, self.config.busy_poll)
                    .await
            }
            Action::Stall(s) => self.stall(d, st, s).await,
            Action::Provision { drift } => {
                if let Err(s) = check_claims(d, &self.store.claims(d).await?) {
                    return self.stall(d, st, s).await;
                }
                let (location, warnings) = match check_azure(&self.arm, d).await {
                    Ok(v) => v,
                    Err(CheckError::Stall(s)) => return self.stall(d, st, s).await,
                    Err(CheckError::Azure(e)) => return Err(e.into()),
                };
                for w in warnings {
                    self.event(d, true, "Warning", w).await;
                }
                let material = match self.user_tls(d).await {
                    Ok(m) => m,
                    Err(s) => return self.stall(d, st, s).await,
                };
                if drift {
                    self.event(
                        d,
                        true,
                        "DriftDetected",
                        format!(
                            "compute {} was deleted outside amlops; provisioning it again",
                            d.compute_name
                        ),
                    )
                    .await;
                }
                let body = provision_body(d, &location, material.as_ref().map(|(m, _)| m), None);
                let (phase, kind) = if d.is_create() {
                    (Phase::Creating, OperationKind::Create)
                } else {
                    (Phase::Attaching, OperationKind::Attach)
                };
                st.compute_id = Some(compute_id.canonical());
                st.last_applied_hash = Some(d.attach_hash());
                st.last_reattach_token = d.reattach_token.clone();
                if let Flavor::Attach { aks_id } = &d.flavor {
                    st.aks_resource_id = Some(aks_id.clone());
                }
                // Status describes what this PUT will serve. Without material (Auto, or TLS
                // off) the certificate is unknown until Azure issued it: Ready reads and
                // backs it up then. An earlier backup Secret stays recorded.
                let backup_secret_name = st.tls.as_ref().and_then(|t| t.backup_secret_name.clone());
                st.tls = match &material {
                    Some((_, info)) => Some(TlsStatus {
                        mode: Some(d.tls.mode),
                        not_after: Some(info.not_after.clone()),
                        sha256_fingerprint: Some(info.sha256_fingerprint.clone()),
                        hostname: d.tls.cname.clone(),
                        backup_secret_name,
                    }),
                    None if backup_secret_name.is_some() || d.tls.mode != TlsMode::Disabled => {
                        Some(TlsStatus {
                            mode: Some(d.tls.mode),
                            backup_secret_name,
                            ..Default::default()
                        })
                    }
                    None => None,
                };
                self.intend(d, &mut st, phase, "sending the request to Azure")
                    .await?;
                match self.arm.put_compute(&compute_id, &body, kind).await {
                    Ok(start) => self.started(d, st, start).await,
                    Err(e) => {
                        let s = Self::rejected(e)?;
                        self.stall(d, st, s).await
                    }
                }
            }
            Action::Adopt { in_sync } => {
                st.compute_id = Some(compute_id.canonical());
                // Out of sync: record a hash no spec has, so the next reconcile applies
                // purpose/TLS through the reattach path (after backing up the certificate).
                st.last_applied_hash = Some(if in_sync {
                    d.attach_hash()
                } else {
                    "adopted-out-of-sync".into()
                });
                self.event(
                    d,
                    false,
                    "Adopted",
                    format!("adopted existing compute {}", d.compute_name),
                )
                .await;
                self.done(d, st, Some(Duration::ZERO), false).await
            }
            Action::RetryFailed { detach, then } => {
                let n = super::decide::retries_so_far(d, &st) + 1;
                st.retries = Some(n);
                // `then` is recorded before the DELETE: the 404 after it means "provision
                // from scratch" (Creating/Attaching) or "attach the same cluster again"
                // (Reattaching), also after a crash.
                let phase = then;
                self.event(
                    d,
                    true,
                    "RetryingFailedCompute",
                    format!(
                        "compute {} failed; {} it and trying again ({n}/{})",
                        d.compute_name,
                        if detach { "detaching" } else { "deleting" },
                        d.max_retries
                    ),
                )
                .await;
                self.intend(d, &mut st, phase, "removing the failed compute")
                    .await?;
                let action = if detach {
                    UnderlyingResourceAction::Detach
                } else {
                    UnderlyingResourceAction::Delete
                };
                let start = self.arm.delete_compute(&compute_id, action).await?;
                let mut out = self.started(d, st, start).await?;
                out.requeue = Some(self.config.retry_base * 2u32.saturating_pow(n - 1));
                Ok(out)
            }
            Action::UpdateInPlace => {
                let Some(current) = raw else {
                    return self.done(d, st, Some(Duration::ZERO), false).await;
                };
                self.intend(
                    d,
                    &mut st,
                    Phase::Updating,
                    "updating the load balancer / description in place",
                )
                .await?;
                match self
                    .arm
                    .put_compute(
                        &compute_id,
                        &update_body(&current, d),
                        OperationKind::Update,
                    )
                    .await
                {
                    Ok(start) => self.started(d, st, start).await,
                    Err(e) => {
                        let s = Self::rejected(e)?;
                        self.stall(d, st, s).await
                    }
                }
            }
            Action::Scale { from, to } => {
                let Some(aks) = st.aks_resource_id.clone() else {
                    return self.done(d, st, Some(self.config.busy_poll), false).await;
                };
                let id: ResourceId = aks.parse()?;
                let pool = match self.arm.get_managed_cluster(&id).await? {
                    Some(c) => c
                        .properties
                        .agent_pool_profiles
                        .and_then(|p| p.first().map(|p| p.name.clone()))
                        .unwrap_or_else(|| "agentpool".into()),
                    None => "agentpool".into(),
                };
                self.intend(
                    d,
                    &mut st,
                    Phase::Scaling,
                    &format!("scaling agent pool {pool} from {from} to {to} nodes"),
                )
                .await?;
                match self.arm.scale_agent_pool(&id, &pool, to).await {
                    Ok(start) => self.started(d, st, start).await,
                    // AKS busy (409 OperationNotAllowed): try again later.
                    Err(e) if e.category() == ErrorCategory::Conflict => {
                        self.done(
                            d,
                            st,
                            Some(e.retry_after().unwrap_or(self.config.busy_poll)),
                            false,
                        )
                        .await
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Action::ReattachPending => {
                apply(
                    &mut st,
                    Health::Waiting,
                    "ReattachPending",
                    "the change needs a detach + reattach: set annotation amlops.dev/reattach to a new value when downtime is acceptable",
                    d.generation,
                );
                self.done(d, st, None, false).await
            }
            Action::BackupTls { then } => {
                self.intend(
                    d,
                    &mut st,
                    Phase::BackingUpTls,
                    "backing up the TLS certificate",
                )
                .await?;
                let fqdn = obs.compute.as_ref().and_then(|c| c.fqdn.clone());
                if let Err(e) = self.take_backup(d, &mut st, fqdn).await {
                    let fallback = self.backup_tls(d, &st).await.is_some()
                        || matches!(self.user_tls(d).await, Ok(Some(_)));
                    if !fallback && e.is_transient() {
                        self.event(d, true, "TLSBackupRetrying", e.to_string())
                            .await;
                        apply(
                            &mut st,
                            Health::Progressing,
                            "TLSBackupRetrying",
                            &format!("{e}; trying again before detaching"),
                            d.generation,
                        );
                        let wait = self
                            .config
                            .busy_poll
                            .max(e.retry_after().unwrap_or_default());
                        return self.done(d, st, Some(wait), false).await;
                    }
                    if !fallback {
                        let msg = format!(
                            "{e}. amlops never detaches without the certificate: make the cluster's API server reachable, or put the certificate in a Secret and use tls.mode Custom with tls.secretRef"
                        );
                        let mut out = self
                            .stall(
                                d,
                                st,
                                Stall {
                                    reason: "TLSBackupFailed",
                                    message: msg,
                                },
                            )
                            .await?;
                        // Network paths to an API server change without the spec
                        // changing: look again at the slow resync pace.
                        out.requeue = Some(self.config.resync);
                        return Ok(out);
                    }
                    self.event(
                        d,
                        true,
                        "TLSBackupFailed",
                        format!("{e}; continuing with the certificate already held"),
                    )
                    .await;
                }
                let _ = then;
                self.set_phase(d, &mut st, Phase::Detaching).await;
                self.done(d, st, Some(Duration::ZERO), false).await
            }
            Action::Detach => {
                let phase = if d.deleting {
                    Phase::Deleting
                } else {
                    Phase::Detaching
                };
                self.intend(d, &mut st, phase, "detaching the compute")
                    .await?;
                let start = self
                    .arm
                    .delete_compute(&compute_id, UnderlyingResourceAction::Detach)
                    .await?;
                if !d.deleting {
                    self.set_phase(d, &mut st, Phase::Reattaching).await;
                }
                self.started(d, st, start).await
            }
            Action::Reattach { drift } => {
                if drift {
                    self.event(
                        d,
                        true,
                        "DriftDetected",
                        format!(
                            "compute {} was removed outside amlops but its AKS cluster still runs; attaching it again",
                            d.compute_name
                        ),
                    )
                    .await;
                }
                let location = match self.workspace_location(d).await? {
                    Ok(l) => l,
                    Err(s) => return self.stall(d, st, s).await,
                };
                let material = match self.user_tls(d).await {
                    Ok(Some(m)) => Some(m),
                    Ok(None) if d.tls.mode == TlsMode::Auto => {
                        // Same label as the backed-up certificate: keep it (and its host name).
                        let label = d.tls.leaf_domain_label.clone().unwrap_or_default();
                        self.backup_tls(d, &st)
                            .await
                            .filter(|(m, _)| same_label(&m.cname, &label))
                    }
                    Ok(None) => None,
                    Err(s) => return self.stall(d, st, s).await,
                };
                // Status describes what is about to be served. Without material (a new Auto
                // label, or TLS off) the fingerprint is unknown until Azure issued the
                // certificate: Ready reads and backs it up then.
                let backup_secret_name = st.tls.as_ref().and_then(|t| t.backup_secret_name.clone());
                st.tls = Some(match &material {
                    Some((m, info)) => TlsStatus {
                        mode: Some(d.tls.mode),
                        backup_secret_name,
                        not_after: Some(info.not_after.clone()),
                        sha256_fingerprint: Some(info.sha256_fingerprint.clone()),
                        hostname: Some(m.cname.clone()),
                    },
                    None => TlsStatus {
                        mode: Some(d.tls.mode),
                        backup_secret_name,
                        ..Default::default()
                    },
                });
                let material = material.map(|(m, _)| m);
                let aks = match (&d.flavor, &st.aks_resource_id) {
                    (Flavor::Attach { aks_id }, _) => aks_id.clone(),
                    (_, Some(id)) => id.clone(),
                    (_, None) => return self.stall(d, st, Stall { reason: "InvalidSpec", message: "the AKS cluster of this compute is unknown: it cannot be reattached".into() }).await,
                };
                let body = provision_body(d, &location, material.as_ref(), Some(&aks));
                st.last_applied_hash = Some(d.attach_hash());
                st.last_reattach_token = d.reattach_token.clone();
                self.intend(
                    d,
                    &mut st,
                    Phase::Reattaching,
                    "attaching the cluster again",
                )
                .await?;
                match self
                    .arm
                    .put_compute(&compute_id, &body, OperationKind::Attach)
                    .await
                {
                    Ok(start) => self.started(d, st, start).await,
                    Err(e) => {
                        let s = Self::rejected(e)?;
                        self.stall(d, st, s).await
                    }
                }
            }
            Action::DeleteCompute => {
                self.intend(
                    d,
                    &mut st,
                    Phase::Deleting,
                    "deleting the compute and its AKS cluster",
                )
                .await?;
                let start = self
                    .arm
                    .delete_compute(&compute_id, UnderlyingResourceAction::Delete)
                    .await?;
                self.started(d, st, start).await
            }
            Action::DeleteAks => {
                let Some(aks) = st.aks_resource_id.clone() else {
                    return self.done(d, st, None, true).await;
                };
                self.intend(d, &mut st, Phase::Deleting, "deleting the AKS cluster")
                    .await?;
                let start = self.arm.delete_managed_cluster(&aks.parse()?).await?;
                self.started(d, st, start).await
            }
            Action::Finished => {
                self.event(
                    d,
                    false,
                    "CleanedUp",
                    format!("{} policy applied in Azure", d.deletion_policy.as_str()),
                )
                .await;
                self.done(d, st, None, true).await
            }
        }
    }
}

/// Whether `host` is `<label>` followed by Azure ML's six digits (`contoso123456.eastus…`).
fn same_label(host: &str, label: &str) -> bool {
    // DNS names are case-insensitive; Azure reports them in lowercase.
    let (host, label) = (host.to_ascii_lowercase(), label.to_ascii_lowercase());
    !label.is_empty()
        && host
            .strip_prefix(&label)
            .and_then(|rest| rest.split('.').next())
            .is_some_and(|digits| digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::same_label;

    #[test]
    fn auto_host_names_match_their_label() {
        let cases = [
            ("contoso123456.eastus.cloudapp.azure.com", "contoso", true),
            ("Contoso123456.eastus.cloudapp.azure.com", "contoso", true),
            ("contoso123456.eastus.cloudapp.azure.com", "CONTOSO", true),
            // Another label that starts like this one.
            (
                "contosoweb123456.eastus.cloudapp.azure.com",
                "contoso",
                false,
            ),
            ("contoso12345.eastus.cloudapp.azure.com", "contoso", false),
            ("fabrikam123456.eastus.cloudapp.azure.com", "contoso", false),
            ("scoring.contoso.com", "scoring", false),
            ("123456.eastus.cloudapp.azure.com", "", false),
        ];
        for (host, label, want) in cases {
            assert_eq!(same_label(host, label), want, "{host} / {label}");
        }
    }
}
