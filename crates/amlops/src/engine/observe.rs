//! Observe: every read one reconcile needs, made once, before anything is decided.
//! The long-running operation in `status.operation` is polled first; then the
//! compute; then, only where a decision needs them, the managed cluster, the facts the
//! pre-write checks need (workspace, VM sizes, Kubernetes versions, the workspace's
//! computes), the TLS Secrets and the sibling claims. No ARM resource is read twice.
//!
//! A failed read stops the observation: [`Observed::failure`] carries it to the verdict.

use std::time::Duration;

use crate::azure::model::{AksComputeResource, ManagedCluster};
use crate::azure::model::{LoadBalancerType as AzLb, ProvisioningState, SslConfigStatus};
use crate::azure::{AzureError, LroStyle, OperationHandle, OperationStatus as Poll, ResourceId};
use crate::crd::{ClusterStatus, LoadBalancerType, OperationStatus, Phase, TlsMode};
use crate::tls::{self, CertInfo, TlsError};

use super::body::TlsMaterial;
use super::desired::{Desired, Flavor};
use super::reconcile::Engine;
use super::resync::{ReadQuota, ResyncPolicy, fresh_read_quota};
use super::store::{Claim, KubeStore, StoreError};
use super::verdict::{Call, CallKind, Stall, Verdict, verdict};
use super::versions::{MinorRange, RangeSource};

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
    /// sslConfiguration.status is `Auto` (a Microsoft-issued certificate).
    pub tls_auto: bool,
    /// clusterFqdn.
    pub fqdn: Option<String>,
    /// clusterPurpose as Azure reports it (`FastProd`, …), when present.
    pub purpose: Option<String>,
}

/// The first agent pool of a managed cluster (the one Azure ML created and scales).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedPool {
    /// Pool name (`agentpool`, `nodepool1`, …).
    pub name: String,
    /// Node count now.
    pub count: Option<i32>,
    /// The cluster autoscaler manages the count: `agentCount` cannot be enforced.
    pub autoscaling: bool,
    /// Autoscaler bounds, when set.
    pub min_count: Option<i32>,
    /// Autoscaler bounds, when set.
    pub max_count: Option<i32>,
}

/// A managed cluster as `GET managedCluster` returned it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedCluster {
    /// ARM id (as read: the compute's `resourceId`, the spec's, or `status.aksResourceId`).
    pub id: ResourceId,
    /// The whole answer (the attach checks read power state, pools and access profile).
    pub cluster: ManagedCluster,
    /// Its first pool.
    pub pool: Option<ObservedPool>,
}

/// A read that may not have been made.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Lookup<T> {
    /// Not needed by this reconcile.
    #[default]
    NotRead,
    /// 404.
    Missing,
    /// Found.
    Found(T),
}

impl<T> Lookup<T> {
    /// The value, when found.
    pub fn found(&self) -> Option<&T> {
        match self {
            Self::Found(t) => Some(t),
            _ => None,
        }
    }
}

/// Verified certificate and key (from the user's Secret or the backup). Debug shows the
/// certificate facts only, never the key.
#[derive(Clone)]
pub struct VerifiedTls {
    /// What to send.
    pub material: TlsMaterial,
    /// Fingerprint, expiry, host name.
    pub info: CertInfo,
}

impl std::fmt::Debug for VerifiedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTls")
            .field("cname", &self.material.cname)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// What the checks before a create or attach need. Reads stop at the
/// first missing fact later ones depend on (no workspace: no region to ask about).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProvisionFacts {
    /// The workspace's `location`; `None` when the workspace does not exist.
    pub workspace_location: Option<String>,
    /// Create: the region asked about and the vCPUs of `vmSize` there (`None`: not offered).
    pub vm_vcpus: Option<(String, Option<u32>)>,
    /// Attach: the Kubernetes minors Azure ML attaches in the cluster's region, and where
    /// that range comes from (`None`: unknown, not checked).
    pub azureml_versions: Option<(MinorRange, RangeSource)>,
    /// Attach: (node count, vCPUs of its VM size) per pool.
    pub pool_vcpus: Vec<(i32, Option<u32>)>,
    /// Attach: the computes of every workspace of the subscription the identity can see
    /// that attach the AKS cluster to be attached (Azure ML supports one attachment per
    /// cluster: a second one, in any workspace, silently breaks the first).
    pub attachments: Vec<ExistingAttachment>,
    /// Attach: workspaces whose computes could not be listed (no permission there).
    pub unreadable_workspaces: Vec<String>,
}

/// A compute that attaches (or created) an AKS cluster, in some workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingAttachment {
    /// ARM id of its workspace.
    pub workspace_id: String,
    /// Its workspace's name.
    pub workspace: String,
    /// The compute's name.
    pub compute: String,
    /// `properties.resourceId`: the AKS cluster.
    pub aks_id: String,
}

/// Inputs of the steady-state resync interval ([`super::resync::ResyncPolicy`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ResyncFacts {
    /// Resources in the subscription (at least 1).
    pub resources: usize,
    /// What ARM's headers said about the subscription's reads: the throttling model it is
    /// under and, while fresh, how full its read bucket has been ([`fresh_read_quota`]);
    /// `None` before any header.
    pub quota: Option<ReadQuota>,
    /// Jitter seed.
    pub seed: u64,
    /// ARM reads one steady resync costs on average over the subscription's resources,
    /// listed kinds and one-`GET` kinds together ([`super::listing::resync_demand`]);
    /// `None`: the policy's own figure.
    pub reads_per_resync: Option<f64>,
}

impl ResyncFacts {
    /// The interval before jitter that `policy` gives every Ready resource of the
    /// subscription (in emulated time: not divided by the time scale).
    pub fn nominal(&self, policy: &ResyncPolicy) -> Duration {
        policy
            .with_reads_per_resync(self.reads_per_resync)
            .nominal(self.resources.max(1), self.quota)
    }

    /// The steady-state resync interval of one Ready resource under `policy`, jittered by
    /// [`seed`](Self::seed), in real time: divided by `time_scale`. Every engine requeues a
    /// steady resource with this.
    pub fn interval(&self, policy: &ResyncPolicy, time_scale: f64) -> Duration {
        policy
            .with_reads_per_resync(self.reads_per_resync)
            .interval(self.resources.max(1), self.quota, self.seed)
            .div_f64(time_scale.max(f64::MIN_POSITIVE))
    }
}

/// A read that failed, for the verdict.
#[derive(Debug)]
pub struct ReadFailure {
    /// The error.
    pub error: AzureError,
    /// ARM id (or subscription scope) that was read.
    pub resource: String,
}

impl ReadFailure {
    /// The verdict on this failed read (`fallback`: the wait when Azure sent no
    /// `Retry-After`).
    pub fn verdict(&self, fallback: std::time::Duration) -> Verdict {
        let call = Call {
            kind: CallKind::Read,
            resource: &self.resource,
        };
        verdict(&self.error, call, fallback)
    }
}

/// Everything observed for one reconcile.
#[derive(Debug, Default)]
pub struct Observed {
    /// The result of polling `status.operation`, when one was in flight.
    pub poll: Option<Poll>,
    /// The compute: `None` on 404 (or when the observation stopped before it).
    pub compute: Option<ObservedCompute>,
    /// The compute as Azure returned it (the base of an in-place update).
    pub compute_raw: Option<AksComputeResource>,
    /// The managed cluster, when a decision needs it.
    pub cluster: Lookup<ObservedCluster>,
    /// Create/attach checks, when the compute is absent.
    pub provision: Option<ProvisionFacts>,
    /// Sibling resources contending for the same compute or cluster (all of them: the
    /// precedence rule is applied by `decide`).
    pub claims: Vec<Claim>,
    /// Custom TLS: the user's Secret, verified, or why it cannot be used.
    pub user_tls: Option<Result<VerifiedTls, Stall>>,
    /// The verified backup Secret (`status.tls.backupSecretName`), when read and valid.
    pub backup: Option<VerifiedTls>,
    /// Steady-state resync inputs.
    pub resync: ResyncFacts,
    /// The read that failed; later reads were not made.
    pub failure: Option<ReadFailure>,
    /// When the observation was made (certificate expiry); `None` in tests that do not
    /// care.
    pub now: Option<jiff::Timestamp>,
    /// The compute came from a workspace listing, not a `GET` of its own.
    pub listed: bool,
}

/// Reduce a compute GET to what `decide` needs.
pub fn observe_compute(c: &AksComputeResource) -> ObservedCompute {
    let p = &c.properties;
    let inner = p.properties.clone().unwrap_or_default();
    let state = match p.provisioning_state.as_ref() {
        Some(ProvisioningState::Succeeded) => AzState::Succeeded,
        Some(ProvisioningState::Failed | ProvisioningState::Canceled) => AzState::Failed,
        _ => AzState::Busy,
    };
    ObservedCompute {
        state,
        raw_state: p
            .provisioning_state
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "Unknown".into()),
        errors: p.provisioning_error_messages(),
        attached: p.is_attached_compute.unwrap_or(false),
        aks_id: p.resource_id.clone(),
        description: p.description.clone(),
        lb_type: match inner.load_balancer_type {
            Some(AzLb::InternalLoadBalancer) => LoadBalancerType::InternalLoadBalancer,
            _ => LoadBalancerType::PublicIp,
        },
        lb_subnet: inner.load_balancer_subnet.clone(),
        tls_enabled: inner
            .ssl_configuration
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some_and(|s| !matches!(s, SslConfigStatus::Disabled)),
        tls_auto: inner
            .ssl_configuration
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some_and(|s| matches!(s, SslConfigStatus::Auto)),
        fqdn: inner.cluster_fqdn.clone(),
        purpose: inner
            .cluster_purpose
            .as_ref()
            .map(|p| p.as_str().to_string()),
    }
}

/// Reduce a managed cluster GET.
pub fn observe_cluster(id: ResourceId, cluster: ManagedCluster) -> ObservedCluster {
    let pool = cluster
        .properties
        .agent_pool_profiles
        .as_ref()
        .and_then(|p| p.first())
        .map(|p| ObservedPool {
            name: p.name.clone(),
            count: p.count,
            autoscaling: p.enable_auto_scaling == Some(true),
            min_count: p.min_count,
            max_count: p.max_count,
        });
    ObservedCluster { id, cluster, pool }
}

/// The handle to poll for a recorded operation.
pub fn handle_of(op: &OperationStatus) -> OperationHandle {
    OperationHandle {
        kind: op.kind,
        style: op.style.unwrap_or(LroStyle::AsyncOperation),
        url: op.url.clone(),
        retry_after: None,
    }
}

/// Whether the node count must be read from the AKS cluster before deciding. A
/// steady-state resync of a Ready cluster whose count matches its spec (or whose pool the
/// autoscaler manages) skips it, so that a resync costs one ARM read (`GET compute`). Counts changed outside the operator are looked at again on the next
/// change of the resource.
pub fn needs_node_count(d: &Desired, st: &ClusterStatus) -> bool {
    let Flavor::Create { agent_count, .. } = &d.flavor else {
        return false;
    };
    let settled = st.phase == Some(Phase::Ready)
        && st.observed_generation == d.generation
        && st.kubernetes_version.is_some();
    !(settled && (st.agent_count == Some(*agent_count) || st.autoscaler_enabled == Some(true)))
}

/// A steady-state resync: Ready for this generation, nothing in flight, nothing asked for
/// (deletion, reattach, renewal). Only these may be answered from a workspace listing.
pub fn steady_resync(d: &Desired, st: &ClusterStatus) -> bool {
    st.phase == Some(Phase::Ready)
        && st.operation.is_none()
        && !may_reattach(d, st)
        && (d.renew_token.is_none() || d.renew_token == st.last_renew_token)
}

/// Whether this reconcile may detach or reattach (and so needs the backup Secret).
fn may_reattach(d: &Desired, st: &ClusterStatus) -> bool {
    d.deleting
        || st.phase != Some(Phase::Ready)
        || st.observed_generation != d.generation
        || (d.reattach_token.is_some() && d.reattach_token != st.last_reattach_token)
        || st.reattach_required.is_some()
}

/// Phases in which a missing compute is expected (not drift): provisioning, or the
/// detach/attach of a reattach.
pub fn compute_expected_missing(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Pending | Phase::Creating | Phase::Attaching | Phase::Detaching | Phase::Reattaching
    )
}

impl<S: KubeStore> Engine<S> {
    /// The steady-state pace's inputs for `subscription`, the same for every kind: its
    /// resources and their read demand per round ([`KubeStore::resources_in_subscription`]
    /// and the pages of its workspace listings, through [`super::listing::resync_demand`]),
    /// and what ARM's headers said of its reads. One count per reconcile: the store keeps it
    /// cheap.
    pub(super) fn resync_facts(&self, subscription: &str) -> ResyncFacts {
        let (resources, reads_per_resync) = super::listing::resync_demand(
            self.config.listings.pages_in_subscription(subscription),
            self.store.resources_in_subscription(subscription),
        );
        ResyncFacts {
            resources: resources.max(1),
            quota: fresh_read_quota(
                &self.config.resync,
                self.arm.remaining_quota(subscription),
                self.config.time_scale,
            ),
            seed: rand::random(),
            reads_per_resync,
        }
    }

    /// Polls the long-running operation recorded in status.
    ///
    /// # Errors
    /// The failed poll, for the verdict.
    pub(super) async fn poll_recorded(&self, op: &OperationStatus) -> Result<Poll, ReadFailure> {
        self.arm
            .poll(&handle_of(op))
            .await
            .map_err(|error| ReadFailure {
                error,
                resource: op.url.clone(),
            })
    }

    /// Make every read this reconcile needs. `Err` only for Kubernetes-side failures;
    /// Azure failures end up in [`Observed::failure`].
    /// `use_listing`: a steady-state resync may take the compute from a workspace listing
    /// ([`super::listing`]).
    pub(crate) async fn observe(
        &self,
        d: &Desired,
        st: &ClusterStatus,
        use_listing: bool,
    ) -> Result<Observed, StoreError> {
        let mut o = Observed {
            now: Some(jiff::Timestamp::now()),
            ..Observed::default()
        };
        // The resync pace's inputs first: the listing's age follows from them.
        o.resync = self.resync_facts(&d.workspace.subscription_id);

        macro_rules! read {
            ($call:expr, $resource:expr) => {
                match $call.await {
                    Ok(v) => v,
                    Err(error) => {
                        o.failure = Some(ReadFailure {
                            error,
                            resource: $resource.to_string(),
                        });
                        return Ok(o);
                    }
                }
            };
        }
        if let Some(op) = &st.operation {
            let polled = match self.poll_recorded(op).await {
                Ok(p) => p,
                Err(f) => {
                    o.failure = Some(f);
                    return Ok(o);
                }
            };
            let running = matches!(polled, Poll::InProgress { .. });
            o.poll = Some(polled);
            if running {
                return Ok(o);
            }
        }
        let compute_id = match d.compute_resource_id() {
            Ok(id) => id,
            Err(error) => {
                o.failure = Some(ReadFailure {
                    error,
                    resource: d.compute_id(),
                });
                return Ok(o);
            }
        };
        let listed = if use_listing && steady_resync(d, st) {
            self.listed_compute(d, &o.resync).await
        } else {
            None
        };
        o.listed = listed.is_some();
        o.compute_raw = match listed {
            Some(c) => Some(c),
            None => read!(self.arm.get_compute(&compute_id), compute_id),
        };
        o.compute = o.compute_raw.as_ref().map(observe_compute);
        let owned = st.compute_id.is_some();
        let phase = st.phase.unwrap_or_default();

        // The managed cluster, read at most once, by whichever decision needs it first.
        let cluster_id: Option<String> = match (&o.compute, &d.flavor) {
            // A created cluster whose node count is not known to match the spec.
            (Some(c), Flavor::Create { .. })
                if !d.deleting
                    && owned
                    && c.state == AzState::Succeeded
                    && needs_node_count(d, st) =>
            {
                c.aks_id.clone()
            }
            // An attachment that failed: has the cluster changed since?
            (Some(c), Flavor::Attach { aks_id }) if owned && c.state == AzState::Failed => {
                Some(aks_id.clone())
            }
            // The compute is gone: does the cluster still exist (deletion, drift of a
            // created cluster), or is it fit to attach?
            (None, Flavor::Attach { aks_id }) if !d.deleting => same_subscription(d, aks_id),
            (None, _)
                if d.deleting || (d.is_create() && owned && !compute_expected_missing(phase)) =>
            {
                st.aks_resource_id.clone()
            }
            (None, _) => None,
            _ => None,
        };
        if let Some(id) = cluster_id.and_then(|s| s.parse::<ResourceId>().ok()) {
            o.cluster = match read!(self.arm.get_managed_cluster(&id), id) {
                Some(c) => Lookup::Found(observe_cluster(id, c)),
                None => Lookup::Missing,
            };
        }
        if let (Some(c), Some(cluster)) = (&o.compute, o.cluster.found())
            && c.state == AzState::Failed
        {
            for (_, message) in &c.errors {
                self.learn_versions(d, cluster, message);
            }
        }

        if o.compute.is_none() && !d.deleting {
            o.claims = self.store.claims(d).await?;
            let mut facts = ProvisionFacts::default();
            let sub = &d.workspace.subscription_id;
            let ws_id = match d.workspace_resource_id() {
                Ok(id) => id,
                Err(error) => {
                    o.failure = Some(ReadFailure {
                        error,
                        resource: d.workspace_id(),
                    });
                    return Ok(o);
                }
            };
            let ws = read!(self.arm.get_workspace(&ws_id), ws_id);
            facts.workspace_location = ws.map(|w| w.location.unwrap_or_default());
            if let Some(ws_location) = facts.workspace_location.clone() {
                let scope = format!("/subscriptions/{sub}");
                match &d.flavor {
                    Flavor::Create {
                        location, vm_size, ..
                    } => {
                        let region = location.clone().unwrap_or(ws_location);
                        let cores = read!(self.arm.vm_vcpus(sub, &region, vm_size), scope);
                        facts.vm_vcpus = Some((region, cores));
                    }
                    Flavor::Attach { aks_id } => {
                        if let Some(c) = o.cluster.found().cloned()
                            && c.cluster.is_running()
                        {
                            let region = c.cluster.location.clone().unwrap_or(ws_location);
                            // Not AKS's list of versions for new clusters: Azure ML's own
                            // range of minors (configured, or as Azure last answered here).
                            facts.azureml_versions =
                                self.config.azureml_versions.range_for(sub, &region);
                            for pool in c.cluster.properties.agent_pool_profiles.iter().flatten() {
                                let size = pool.vm_size.clone().unwrap_or_default();
                                let cores = read!(self.arm.vm_vcpus(sub, &region, &size), scope);
                                facts.pool_vcpus.push((pool.count.unwrap_or(0), cores));
                            }
                            if let Err(error) = self.attachments(sub, aks_id, &mut facts).await {
                                o.failure = Some(ReadFailure {
                                    error,
                                    resource: scope,
                                });
                                return Ok(o);
                            }
                        }
                    }
                }
            }
            o.provision = Some(facts);
        }

        if d.tls.mode == TlsMode::Custom && !d.deleting {
            o.user_tls = Some(self.user_tls(d).await);
        }
        if (o.compute.is_none() || may_reattach(d, st))
            && let Some(name) = st.tls.as_ref().and_then(|t| t.backup_secret_name.clone())
        {
            o.backup = self.verified_backup(d, st, &name).await;
        }

        Ok(o)
    }

    /// The attachments of AKS cluster `aks_id` in every workspace of `subscription` the
    /// identity can see, from listings shared by every check for
    /// [`super::listing::ATTACHMENT_CHECK_MAX_AGE`]. A workspace whose computes cannot be
    /// listed (403) is noted and skipped: the check covers what the identity can see.
    async fn attachments(
        &self,
        subscription: &str,
        aks_id: &str,
        facts: &mut ProvisionFacts,
    ) -> Result<(), AzureError> {
        let listings = &self.config.listings;
        let max_age = super::listing::ATTACHMENT_CHECK_MAX_AGE;
        for id in listings
            .workspaces(&self.arm, subscription, max_age)
            .await?
            .iter()
        {
            let attached = match listings.attached(&self.arm, id, max_age).await {
                Ok(a) => a,
                Err(e) if e.category() == crate::azure::ErrorCategory::Forbidden => {
                    facts.unreadable_workspaces.push(id.name().to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            facts.attachments.extend(
                attached
                    .iter()
                    .filter(|(_, cluster)| cluster.eq_ignore_ascii_case(aks_id))
                    .map(|(compute, cluster)| ExistingAttachment {
                        workspace_id: id.to_string(),
                        workspace: id.name().to_string(),
                        compute: compute.clone(),
                        aks_id: cluster.clone(),
                    }),
            );
        }
        Ok(())
    }

    /// Remembers the range of Kubernetes minors in Azure's refusal `message` ("Supported
    /// versions are between A - B") for the subscription and region of `cluster`, so that
    /// the next check there stalls before any write.
    pub(crate) fn learn_versions(&self, d: &Desired, cluster: &ObservedCluster, message: &str) {
        if let (Some(range), Some(location)) = (
            MinorRange::from_azure_message(message),
            cluster.cluster.location.as_deref(),
        ) {
            self.config
                .azureml_versions
                .learn(&d.workspace.subscription_id, location, range);
        }
    }

    /// The compute from a fresh enough listing of its workspace; `None` when it is not in
    /// it or the list failed (the caller reads it with a `GET`).
    async fn listed_compute(&self, d: &Desired, r: &ResyncFacts) -> Option<AksComputeResource> {
        let ws = d.workspace_resource_id().ok()?;
        let nominal = r.nominal(&self.config.resync);
        let max_age = super::listing::WorkspaceListings::max_age(nominal, self.config.time_scale);
        match self
            .config
            .listings
            .compute(&self.arm, &ws, &d.compute_name, max_age)
            .await
        {
            Ok(super::listing::Listed::Found(c)) => Some(*c),
            Ok(super::listing::Listed::Absent) => None,
            Err(e) => {
                tracing::debug!(workspace = %ws, error = %e, "workspace listing failed; reading the compute");
                None
            }
        }
    }

    /// Certificate and key of the user's Custom Secret, verified.
    async fn user_tls(&self, d: &Desired) -> Result<VerifiedTls, Stall> {
        let name = d
            .tls
            .secret_ref
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let to_stall = |e: TlsError| {
            Stall::new(
                e.reason(),
                format!("tls.secretRef {name}: {e}: fix the Secret and the operator continues"),
            )
        };
        let secret = self
            .store
            .get_secret(&d.namespace, &name)
            .await
            .map_err(|e| Stall::new("SecretNotFound", e.to_string()))?
            .ok_or_else(|| to_stall(TlsError::SecretNotFound(format!("{}/{name}", d.namespace))))?;
        let (cert, key) = tls::cert_and_key_from_secret(&secret).map_err(to_stall)?;
        // What is sent to Azure must serve: valid now, for tls.cname, chain in order. A bad
        // rotation stalls here, before any write; the old certificate keeps serving.
        let info = tls::check_serving(&cert, &key, d.tls.cname.as_deref(), jiff::Timestamp::now())
            .map_err(to_stall)?;
        Ok(VerifiedTls {
            material: TlsMaterial {
                cert,
                key,
                cname: d.tls.cname.clone().unwrap_or_default(),
            },
            info,
        })
    }

    /// The verified backup, if one exists.
    async fn verified_backup(
        &self,
        d: &Desired,
        st: &ClusterStatus,
        name: &str,
    ) -> Option<VerifiedTls> {
        let secret = self.store.get_secret(&d.namespace, name).await.ok()??;
        let (cert, key) = tls::cert_and_key_from_secret(&secret).ok()?;
        let info = tls::verify_pair(&cert, &key).ok()?;
        let cname = st
            .tls
            .as_ref()
            .and_then(|t| t.hostname.clone())
            .or_else(|| info.hostname.clone())?;
        Some(VerifiedTls {
            material: TlsMaterial { cert, key, cname },
            info,
        })
    }
}

/// The attach target, when it is in the workspace's subscription (Azure ML attaches only
/// those; the check says so without reading a foreign subscription).
fn same_subscription(d: &Desired, aks_id: &str) -> Option<String> {
    let id: ResourceId = aks_id.parse().ok()?;
    id.subscription()
        .eq_ignore_ascii_case(&d.workspace.subscription_id)
        .then(|| aks_id.to_string())
}
