//! Pure decisions for `AzureMLExtension`: `(desired, observed, status) →` [`ExtensionPlan`],
//! and [`settle`], which completes a plan from its write's result.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Duration;

use crate::azure::azureml_extension::{AZUREML_EXTENSION_TYPE, ClusterFacts};
use crate::azure::config::Secret;
use crate::azure::model::{
    Extension, ExtensionPatch, ExtensionPatchProperties, ExtensionProvisioningState,
    ExtensionRequest, ManagedCluster,
};
use crate::azure::{AzureError, ExtensionId, OperationKind, OperationStatus as Poll, ResourceId};
use crate::crd::{
    AzureMlExtensionStatus, ExtensionDeletionPolicy, ExtensionTlsStatus, ProvisioningError,
};

use super::super::conditions::{Health, apply};
use super::super::observe::Lookup;
use super::super::plan::{KindPlan, Note, WriteDone};
use super::super::reconcile::EngineConfig;
use super::super::settle::record_operation;
use super::super::target_cluster;
use super::super::verdict::{Call, CallKind, Stall, Verdict, verdict};
use super::ExtensionDesired;
use super::cluster::{ClusterView, INSTANCE_TYPE_CRD, instance_type_diff};
use super::run::ObservedExtension;

/// Settings whose change "will IMPACT your active Machine Learning … online endpoints and
/// deployments" (Azure's CLI asks for confirmation); `nodeSelector.*` too.
const IMPACTING: &[&str] = &[
    "enableTraining",
    "enableInference",
    "installNvidiaDevicePlugin",
    "allowInsecureConnections",
    "inferenceRouterServiceType",
    "internalLoadBalancerProvider",
    "sslCname",
];

/// The one write of a plan; every id and body is complete.
#[derive(Clone, Debug, PartialEq)]
pub enum ExtensionWrite {
    /// PUT the extension: install (`Create`), or re-send the whole body to retry a `Failed`
    /// one (`Update`).
    Put {
        /// The extension.
        id: ExtensionId,
        /// Create or Update (recorded in `status.operation`).
        kind: OperationKind,
        /// The body (protected settings redacted in `Debug`).
        body: Box<ExtensionRequest>,
        /// `status.settingsHash` once Azure accepted it.
        settings_hash: String,
        /// `status.protectedSettingsHash` once Azure accepted it.
        protected_hash: Option<String>,
    },
    /// PATCH the changed settings and, when a protected value changed, all protected
    /// settings.
    Patch {
        /// The extension.
        id: ExtensionId,
        /// The body.
        body: Box<ExtensionPatch>,
        /// `status.settingsHash` once Azure accepted it.
        settings_hash: String,
        /// `status.protectedSettingsHash` once Azure accepted it.
        protected_hash: Option<String>,
    },
    /// DELETE the extension (uninstall).
    Delete {
        /// The extension.
        id: ExtensionId,
    },
    /// Annotate the legacy front end (Deployment `default/azureml-fe`) for the extension's
    /// takeover, as Microsoft's migration steps do before the install (a Kubernetes write
    /// on the cluster).
    AnnotateLegacyFrontEnd {
        /// The AKS cluster.
        cluster: ResourceId,
    },
    /// Copy the router's certificate and key into Secret `name` of namespace `azureml` on
    /// the cluster (`delivery: ClusterSecret`; a Kubernetes write on the cluster).
    CopyTlsSecret {
        /// The AKS cluster.
        cluster: ResourceId,
        /// The Secret's name (`sslSecret`).
        name: String,
        /// Certificate PEM (redacted in `Debug`, like the key).
        cert: Secret,
        /// Key PEM (redacted in `Debug`).
        key: Secret,
        /// `status.clusterSecretHash` once copied.
        hash: String,
    },
    /// Server-side-apply `InstanceType` objects on the cluster and delete the ones amlops
    /// applied that are no longer wanted (a Kubernetes write on the cluster, not an Azure
    /// one).
    ApplyInstanceTypes {
        /// The AKS cluster.
        cluster: ResourceId,
        /// The objects to apply (`amlarc.azureml.com/v1alpha1` `InstanceType`).
        apply: Vec<serde_json::Value>,
        /// Names to delete.
        prune: Vec<String>,
    },
}

/// The whole decision of one reconcile.
pub type ExtensionPlan = KindPlan<AzureMlExtensionStatus, ExtensionWrite>;

/// What a write did, for [`settle`].
pub type ExtensionDone = WriteDone;

/// Why a write failed, for [`settle`].
#[derive(Debug)]
pub enum ExtensionWriteFailure {
    /// Azure refused or failed the call.
    Azure(AzureError),
    /// The cluster's API server refused or could not be reached.
    Cluster {
        /// What it means for the next step.
        failure: target_cluster::Failure,
        /// What happened, naming the object (no secret in it).
        why: String,
    },
}

/// How long the extension may report `Succeeded` without its InstanceType CRD before amlops
/// stops waiting (Microsoft's samples poll for it up to 5 minutes).
pub const INSTANCE_TYPE_CRD_WAIT: Duration = Duration::from_secs(600);

fn progressing(d: &ExtensionDesired, plan: &mut ExtensionPlan, reason: &str, message: &str) {
    plan.progressing(d.generation, reason, message);
}

fn stall(d: &ExtensionDesired, plan: ExtensionPlan, s: &Stall) -> ExtensionPlan {
    plan.stall(d.generation, s)
}

fn apply_verdict(
    d: &ExtensionDesired,
    plan: ExtensionPlan,
    v: Verdict,
    what: &str,
) -> ExtensionPlan {
    plan.apply_verdict(d.generation, v, what)
}

fn operation_reason(kind: Option<OperationKind>) -> &'static str {
    match kind {
        Some(OperationKind::Delete) => "Deleting",
        Some(OperationKind::Update) => "Updating",
        _ => "Installing",
    }
}

/// Decide what one reconcile of `d` does, from what was observed and the saved status.
pub fn decide(
    d: &ExtensionDesired,
    o: &ObservedExtension,
    st: &AzureMlExtensionStatus,
    cfg: &EngineConfig,
) -> ExtensionPlan {
    let mut plan = ExtensionPlan::new(st.clone());
    let id = match d.extension_id() {
        Ok(id) => id,
        Err(e) => return stall(d, plan, &Stall::new("InvalidSpec", e.to_string())),
    };
    // The in-flight operation first: while it runs, nothing else is decided.
    if let Some(p) = &o.poll {
        let kind = st.operation.as_ref().map(|op| op.kind);
        match p {
            Poll::InProgress { retry_after } => {
                let what = match kind {
                    Some(OperationKind::Delete) => "uninstalling",
                    Some(OperationKind::Update) => "updating",
                    _ => "installing",
                };
                progressing(
                    d,
                    &mut plan,
                    operation_reason(kind),
                    &format!(
                        "Azure is {what} extension {} (it may take 15 minutes)",
                        d.extension_name
                    ),
                );
                plan.requeue = Some((*retry_after).max(Duration::from_millis(1)));
                return plan;
            }
            Poll::Succeeded | Poll::Forgotten => plan.status.operation = None,
            Poll::Failed { code, message } => {
                plan.status.operation = None;
                plan.status.provisioning_errors = vec![ProvisioningError {
                    code: code.clone(),
                    message: message.clone(),
                }];
                plan.events.push(Note::warning(
                    "OperationFailed",
                    format!(
                        "Azure's {} operation on extension {} failed: {code}: {message}",
                        kind.map_or("extension", OperationKind::as_str),
                        d.extension_name
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
        return deletion(d, o, plan, id, cfg);
    }
    if matches!(o.provider_registered, Lookup::Found(false)) {
        return stall(d, plan, &not_registered(id.cluster()));
    }
    match o.extension.found() {
        None => absent(d, o, plan, id),
        Some(e) => present(d, o, plan, id, e, cfg),
    }
}

fn deletion(
    d: &ExtensionDesired,
    o: &ObservedExtension,
    mut plan: ExtensionPlan,
    id: ExtensionId,
    cfg: &EngineConfig,
) -> ExtensionPlan {
    // Only an extension this resource installed or adopted is its to uninstall.
    if d.deletion_policy == ExtensionDeletionPolicy::Orphan || plan.status.extension_id.is_none() {
        plan.finished = true;
        return plan;
    }
    if !d.in_use.is_empty() {
        progressing(
            d,
            &mut plan,
            "InUse",
            &format!(
                "extension {} is used by KubernetesCompute {}: it is uninstalled once they are deleted",
                d.extension_name,
                d.in_use.join(", ")
            ),
        );
        plan.requeue = Some(Duration::from_secs(30));
        return plan;
    }
    match o.extension.found() {
        None => {
            plan.finished = true;
            plan.events.push(Note::normal(
                "Uninstalled",
                format!("extension {} is uninstalled", d.extension_name),
            ));
        }
        Some(e) if !terminal(e) => {
            progressing(
                d,
                &mut plan,
                "Deleting",
                &format!(
                    "extension {} is {}: uninstalling once Azure has finished",
                    d.extension_name,
                    state_str(e)
                ),
            );
            plan.requeue = Some(cfg.busy_poll);
        }
        Some(_) => {
            let message = format!("uninstalling extension {}", d.extension_name);
            progressing(d, &mut plan, "Deleting", &message);
            plan.events.push(Note::normal("Deleting", message));
            plan.write = Some(ExtensionWrite::Delete { id });
        }
    }
    plan
}

fn terminal(e: &Extension) -> bool {
    // No state reported: Azure is still working (as `Pending` is).
    e.provisioning_state()
        .is_some_and(ExtensionProvisioningState::is_terminal)
}

fn state_str(e: &Extension) -> &str {
    e.provisioning_state()
        .map_or("Pending", ExtensionProvisioningState::as_str)
}

/// The TLS material is needed and not usable: the stall that says why.
fn tls_problem(d: &ExtensionDesired) -> Option<Stall> {
    if d.wants_tls() && d.tls.is_none() {
        let name = d
            .spec
            .inference
            .tls
            .as_ref()
            .and_then(|t| t.secret_ref.as_ref())
            .map(|r| r.name.clone())
            .unwrap_or_default();
        return Some(d.tls_error.clone().unwrap_or_else(|| {
            Stall::new(
                "SecretNotFound",
                format!(
                    "inference.tls.secretRef {name}: Secret {}/{name} not found: create it (tls.crt and tls.key) and the operator continues",
                    d.key.namespace
                ),
            )
        }));
    }
    None
}

fn not_registered(cluster: &crate::azure::ResourceId) -> Stall {
    Stall::new(
        "ProviderNotRegistered",
        format!(
            "The subscription {} is not registered to use namespace 'Microsoft.KubernetesConfiguration' (cluster extensions): register it (az provider register --namespace Microsoft.KubernetesConfiguration) and amlops continues",
            cluster.subscription()
        ),
    )
}

/// The checks of the cluster (reads only): what would make Azure refuse or fail the
/// extension. `list`: also the provider registration and the cluster's other extensions
/// (before a PUT).
fn preflight(
    d: &ExtensionDesired,
    o: &ObservedExtension,
    list: bool,
) -> Result<ClusterFacts, Stall> {
    let cluster_id = d
        .cluster
        .clone()
        .map_err(|e| Stall::new("InvalidSpec", e))?;
    let name = cluster_id.name().to_string();
    if list && matches!(o.provider_registered, Lookup::Found(false)) {
        return Err(not_registered(&cluster_id));
    }
    let c: &ManagedCluster = match &o.cluster {
        Lookup::Found(c) => c,
        Lookup::Missing => {
            return Err(Stall::new(
                "AksClusterNotFound",
                format!(
                    "AKS cluster {name} was not found ({cluster_id}): fix cluster.resourceId, or create the cluster"
                ),
            ));
        }
        Lookup::NotRead => {
            return Err(Stall::new(
                "AksClusterNotFound",
                format!("AKS cluster {name} was not read"),
            ));
        }
    };
    if !c.uses_managed_identity() {
        // The emulator's wording, after the AKS docs: "cluster extensions don't work with
        // service principal-based clusters".
        return Err(Stall::new(
            "ClusterIdentityNotSupported",
            format!(
                "Cluster extensions don't work with service principal-based clusters. Cluster '{name}' uses a service principal; update it to use a managed identity (az aks update --enable-managed-identity)"
            ),
        ));
    }
    if c.local_accounts_disabled() {
        return Err(Stall::new(
            "LocalAccountsDisabled",
            format!(
                "cluster {name} has local accounts disabled (disableLocalAccounts): Azure ML's Kubernetes computes do not support it; enable them (az aks update --enable-local-accounts)"
            ),
        ));
    }
    if !c.is_running() {
        return Err(Stall::new(
            "ClusterStopped",
            format!(
                "The AKS cluster {name} is not running (powerState Stopped); start it (az aks start) and amlops continues"
            ),
        ));
    }
    let nodes = c.total_nodes();
    if d.high_availability() && nodes < 3 {
        return Err(Stall::new(
            "InsufficientNodes",
            format!(
                "inference.highAvailability runs 3 router replicas and needs at least 3 nodes (E40002 INSUFFICIENT_NODE); cluster {name} has {nodes}: add nodes, or set highAvailability: false"
            ),
        ));
    }
    if list
        && let Some(other) = o
            .others
            .iter()
            .find(|n| !n.eq_ignore_ascii_case(&d.extension_name))
    {
        return Err(Stall::new(
            "ExtensionExists",
            format!(
                "cluster {name} already runs the Azure ML extension {other} (a cluster takes one): manage it with extensionName: {other} and annotation amlops.dev/adopt=\"true\", or uninstall it"
            ),
        ));
    }
    Ok(ClusterFacts {
        id: cluster_id,
        location: c.location.clone().unwrap_or_default(),
        node_count: Some(nodes),
    })
}

fn absent(
    d: &ExtensionDesired,
    o: &ObservedExtension,
    mut plan: ExtensionPlan,
    id: ExtensionId,
) -> ExtensionPlan {
    if let Some(s) = tls_problem(d) {
        return stall(d, plan, &s);
    }
    let facts = match preflight(d, o, true) {
        Ok(f) => f,
        Err(s) => return stall(d, plan, &s),
    };
    let body = match d.body(&facts) {
        Ok(b) => b,
        Err(e) => return stall(d, plan, &Stall::new("InvalidSpec", e)),
    };
    if plan.status.extension_id.is_some() && plan.status.settings_hash.is_some() {
        plan.events.push(Note::warning(
            "ExtensionMissing",
            format!(
                "extension {} no longer exists in Azure (uninstalled outside amlops?): installing it again",
                d.extension_name
            ),
        ));
    }
    plan.status.retries = None;
    let plan = match legacy_front_end(d, o, plan, &id) {
        ControlFlow::Continue(plan) => plan,
        ControlFlow::Break(done) => return done,
    };
    let plan = match copy_first(d, plan, &id) {
        ControlFlow::Continue(plan) => plan,
        ControlFlow::Break(copy) => return copy,
    };
    put(d, plan, id, body, OperationKind::Create)
}

/// Before a PUT with inference: a legacy front end of an AKS compute on the cluster makes
/// the health check fail (E45005) unless the migration settings take it over, and
/// Microsoft's migration steps annotate it first. `Break`: a stall or that annotation.
fn legacy_front_end(
    d: &ExtensionDesired,
    o: &ObservedExtension,
    mut plan: ExtensionPlan,
    id: &ExtensionId,
) -> ControlFlow<ExtensionPlan, ExtensionPlan> {
    let Lookup::Found(annotated) = o.legacy_front_end else {
        return ControlFlow::Continue(plan);
    };
    let name = id.cluster().name();
    if !d.spec.migration.from_legacy_azure_ml_fe {
        return ControlFlow::Break(stall(
            d,
            plan,
            &Stall::new(
                "LegacyFrontEndPresent",
                format!(
                    "cluster {name} runs the legacy azureml-fe of an AKS compute (Deployment default/azureml-fe): the extension's health check would fail with E45005 (Azureml Fe deployment conflict). Set migration.fromLegacyAzureMlFe: true to take it over (docs/migration.md), or remove the AKS compute's objects from the cluster"
                ),
            ),
        ));
    }
    if annotated {
        return ControlFlow::Continue(plan);
    }
    let message = format!(
        "annotating the legacy azureml-fe on cluster {name} for the extension to take it over (azureml-fe-enable-upgrade=true)"
    );
    progressing(d, &mut plan, "AnnotatingLegacyFrontEnd", &message);
    plan.events
        .push(Note::normal("AnnotatingLegacyFrontEnd", message));
    plan.write = Some(ExtensionWrite::AnnotateLegacyFrontEnd {
        cluster: id.cluster().clone(),
    });
    ControlFlow::Break(plan)
}

/// With `delivery: ClusterSecret`, the copy of the pair on the cluster comes before any
/// PUT or PATCH that names it: `Break` with that write when the copy is not the pair to
/// serve.
fn copy_first(
    d: &ExtensionDesired,
    mut plan: ExtensionPlan,
    id: &ExtensionId,
) -> ControlFlow<ExtensionPlan, ExtensionPlan> {
    let (Some(hash), Some(v)) = (d.tls_pair_hash(), d.tls.as_ref()) else {
        return ControlFlow::Continue(plan);
    };
    if !d.cluster_secret_delivery() || plan.status.cluster_secret_hash.as_deref() == Some(&hash) {
        return ControlFlow::Continue(plan);
    }
    let name = d.cluster_secret_name();
    let message = format!(
        "copying the TLS certificate and key into Secret azureml/{name} on cluster {} (delivery ClusterSecret)",
        id.cluster().name()
    );
    progressing(d, &mut plan, "CopyingTLSSecret", &message);
    plan.events.push(Note::normal("CopyingTLSSecret", message));
    plan.write = Some(ExtensionWrite::CopyTlsSecret {
        cluster: id.cluster().clone(),
        name,
        cert: Secret::new(v.material.cert.clone()),
        key: Secret::new(v.material.key.clone()),
        hash,
    });
    ControlFlow::Break(plan)
}

fn put(
    d: &ExtensionDesired,
    mut plan: ExtensionPlan,
    id: ExtensionId,
    body: ExtensionRequest,
    kind: OperationKind,
) -> ExtensionPlan {
    plan.status.extension_id = Some(id.to_string());
    if kind == OperationKind::Create {
        // In the intent record: an install Azure accepted right before a crash must not be
        // PATCHed again on restart (the extension's existence says the PUT was ours). A PUT
        // that fails restores the hashes (settle), and an absent extension is installed
        // whatever they say.
        record_sent(
            d,
            &mut plan.status,
            d.settings_hash(),
            d.protected_settings_hash(),
        );
    }
    let message = format!(
        "installing extension {} ({AZUREML_EXTENSION_TYPE}) on cluster {}",
        d.extension_name,
        id.cluster().name()
    );
    progressing(d, &mut plan, operation_reason(Some(kind)), &message);
    plan.events
        .push(Note::normal(operation_reason(Some(kind)), message));
    plan.write = Some(ExtensionWrite::Put {
        id,
        kind,
        body: Box::new(body),
        settings_hash: d.settings_hash(),
        protected_hash: d.protected_settings_hash(),
    });
    plan
}

/// `errorInfo` (its details, else itself) and the `Error` statuses of an extension.
fn extension_errors(e: &Extension) -> Vec<ProvisioningError> {
    let mut out: Vec<ProvisioningError> = Vec::new();
    let mut push = |code: Option<&str>, message: Option<&str>| {
        let p = ProvisioningError {
            code: code.unwrap_or_default().to_string(),
            message: message.unwrap_or_default().to_string(),
        };
        if !out.contains(&p) {
            out.push(p);
        }
    };
    if let Some(err) = &e.properties.error_info {
        push(err.code.as_deref(), err.message.as_deref());
        for detail in &err.details {
            push(detail.code.as_deref(), detail.message.as_deref());
        }
    }
    for s in e.properties.statuses.iter().flatten() {
        if s.level
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case("Error"))
        {
            push(s.code.as_deref(), s.message.as_deref());
        }
    }
    out
}

/// A short account of the errors for the condition: the health check's codes when Azure
/// gave them (`E40007: …`), else the errors themselves.
fn summary(errors: &[ProvisioningError]) -> String {
    let coded: Vec<String> = errors
        .iter()
        .filter(|e| e.code.starts_with('E') && e.code[1..].chars().all(|c| c.is_ascii_digit()))
        .map(|e| format!("{} {}", e.code, e.message))
        .collect();
    let parts = if coded.is_empty() {
        errors
            .iter()
            .take(1)
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect()
    } else {
        coded
    };
    if parts.is_empty() {
        "no errorInfo".into()
    } else {
        parts.join("; ")
    }
}

fn record_observed(plan: &mut ExtensionPlan, e: &Extension) {
    let st = &mut plan.status;
    st.provisioning_state = Some(state_str(e).to_string());
    st.version = e.properties.current_version.clone();
    st.principal_id = e
        .properties
        .aks_assigned_identity
        .as_ref()
        .and_then(|i| i.get("principalId"))
        .and_then(|p| p.as_str())
        .map(str::to_string)
        .or_else(|| e.identity.as_ref().and_then(|i| i.principal_id.clone()));
}

fn steady_hashes(d: &ExtensionDesired, st: &AzureMlExtensionStatus) -> bool {
    st.settings_hash.as_deref() == Some(d.settings_hash().as_str())
        && st.protected_settings_hash == d.protected_settings_hash()
}

fn present(
    d: &ExtensionDesired,
    o: &ObservedExtension,
    mut plan: ExtensionPlan,
    id: ExtensionId,
    e: &Extension,
    cfg: &EngineConfig,
) -> ExtensionPlan {
    let ty = e.properties.extension_type.as_deref().unwrap_or_default();
    if !ty.eq_ignore_ascii_case(AZUREML_EXTENSION_TYPE) {
        return stall(
            d,
            plan,
            &Stall::new(
                "ExtensionExists",
                format!(
                    "extension {} on cluster {} is of type {ty}, not {AZUREML_EXTENSION_TYPE}: pick another extensionName",
                    d.extension_name,
                    id.cluster().name()
                ),
            ),
        );
    }
    if plan.status.extension_id.is_none() {
        if !d.adopt {
            return stall(
                d,
                plan,
                &Stall::new(
                    "ExtensionExists",
                    format!(
                        "extension {} already exists on cluster {}, not installed through this resource: annotate it amlops.dev/adopt=\"true\" to manage it, or pick another cluster",
                        d.extension_name,
                        id.cluster().name()
                    ),
                ),
            );
        }
        plan.status.extension_id = Some(id.to_string());
        plan.events.push(Note::normal(
            "Adopted",
            format!("adopted the existing extension {}", d.extension_name),
        ));
    }
    record_observed(&mut plan, e);
    let state = e.provisioning_state();
    match state {
        Some(ExtensionProvisioningState::Succeeded) => succeeded(d, o, plan, id, e, cfg),
        Some(ExtensionProvisioningState::Failed | ExtensionProvisioningState::Canceled) => {
            failed(d, o, plan, id, e)
        }
        _ => {
            progressing(
                d,
                &mut plan,
                "AzureBusy",
                &format!("extension {} is {}", d.extension_name, state_str(e)),
            );
            plan.requeue = Some(cfg.busy_poll);
            plan
        }
    }
}

fn failed(
    d: &ExtensionDesired,
    o: &ObservedExtension,
    mut plan: ExtensionPlan,
    id: ExtensionId,
    e: &Extension,
) -> ExtensionPlan {
    let mut errors = extension_errors(e);
    // The health check's failing lines, read on the cluster: Azure quotes none for a failed
    // install.
    for h in &o.health {
        if !errors.contains(h) {
            errors.push(h.clone());
        }
    }
    if !errors.is_empty() {
        plan.status.provisioning_errors = errors;
    }
    let what = summary(&plan.status.provisioning_errors);
    // A changed spec is a new attempt, not a retry: it is sent whatever the retries so far
    // (with `maxRetries: 0` too), and the count starts again.
    let changed = !steady_hashes(d, &plan.status);
    let retries = if changed {
        0
    } else {
        plan.status.retries.unwrap_or(0)
    };
    if !changed && retries >= d.max_retries {
        plan.status.retries = Some(retries);
        return stall(
            d,
            plan,
            &Stall::new(
                "ExtensionFailed",
                format!(
                    "Azure reports extension {} {} ({what}) after {retries} retries: fix the cause, then change the resource",
                    d.extension_name,
                    state_str(e)
                ),
            ),
        );
    }
    if let Some(s) = tls_problem(d) {
        return stall(d, plan, &s);
    }
    let facts = match preflight(d, o, true) {
        Ok(f) => f,
        Err(s) => return stall(d, plan, &s),
    };
    let body = match d.body(&facts) {
        Ok(b) => b,
        Err(err) => return stall(d, plan, &Stall::new("InvalidSpec", err)),
    };
    let plan = match legacy_front_end(d, o, plan, &id) {
        ControlFlow::Continue(plan) => plan,
        ControlFlow::Break(done) => return done,
    };
    let mut plan = match copy_first(d, plan, &id) {
        ControlFlow::Continue(plan) => plan,
        ControlFlow::Break(copy) => return copy,
    };
    if changed {
        plan.status.retries = Some(0);
        plan.events.push(Note::normal(
            "Updating",
            format!(
                "extension {} is {} ({what}): sending the changed spec",
                d.extension_name,
                state_str(e)
            ),
        ));
    } else {
        plan.status.retries = Some(retries + 1);
        plan.events.push(Note::warning(
            "RetryingFailedExtension",
            format!(
                "extension {} is {} ({what}): sending it again (retry {} of {})",
                d.extension_name,
                state_str(e),
                retries + 1,
                d.max_retries
            ),
        ));
    }
    put(d, plan, id, body, OperationKind::Update)
}

/// Settings whose value Azure holds is kept when the spec leaves them unset (the CLI's
/// defaults depend on the cluster: router replicas, purpose).
fn keeps_observed(d: &ExtensionDesired, key: &str) -> bool {
    (key == "inferenceRouterHA" && d.spec.inference.high_availability.is_none())
        || (key == "clusterPurpose" && d.spec.cluster_purpose.is_none())
}

/// Settings Azure holds that `want` no longer has: removed from the spec (a node selector
/// label, an extra setting) or added outside amlops. A PATCH cannot remove a setting
/// (`configurationSettings` values are strings, never null, in the ARM contract).
fn removed_settings(e: &Extension, want: &ExtensionRequest) -> Vec<String> {
    e.properties
        .configuration_settings
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| !want.properties.configuration_settings.contains_key(*k))
        .cloned()
        .collect()
}

/// The PATCH that brings `e` to `d`, or `None` when nothing differs.
fn patch_for(
    d: &ExtensionDesired,
    st: &AzureMlExtensionStatus,
    e: &Extension,
    want: &ExtensionRequest,
) -> Option<(ExtensionPatch, Vec<String>)> {
    let w = &want.properties;
    let got = &e.properties;
    let keep_observed = |k: &str| keeps_observed(d, k);
    let changed: BTreeMap<String, String> = w
        .configuration_settings
        .iter()
        .filter(|(k, v)| match e.setting(k) {
            Some(now) => now != v.as_str() && !keep_observed(k),
            None => true,
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut p = ExtensionPatchProperties::default();
    let mut what: Vec<String> = changed.keys().cloned().collect();
    if !changed.is_empty() {
        p.configuration_settings = Some(changed);
    }
    let auto = w.auto_upgrade_minor_version.unwrap_or(true);
    let train_differs = auto
        && !got
            .release_train
            .as_deref()
            .unwrap_or_default()
            .eq_ignore_ascii_case(w.release_train.as_deref().unwrap_or_default());
    let version_differs = !auto && got.version != w.version;
    if got.auto_upgrade_minor_version.unwrap_or(true) != auto || train_differs || version_differs {
        p.auto_upgrade_minor_version = Some(auto);
        p.release_train = w.release_train.clone();
        p.version = w.version.clone();
        what.push("version".into());
    }
    if st.protected_settings_hash != d.protected_settings_hash() && d.cluster_secret_delivery() {
        // The new pair is in the cluster's Secret already; Microsoft's rotation step is an
        // update naming the Secret again (`az k8s-extension update … sslSecret=…
        // sslCname=…`).
        let resend: BTreeMap<String, String> = w
            .configuration_settings
            .iter()
            .filter(|(k, _)| ["sslSecret", "scoringFe.sslSecret", "sslCname"].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        p.configuration_settings
            .get_or_insert_with(BTreeMap::new)
            .extend(resend);
        what.push("TLS Secret (named again)".into());
    } else if st.protected_settings_hash != d.protected_settings_hash() {
        // Azure replaces protected settings as a whole: all of them, always.
        p.configuration_protected_settings = Some(w.configuration_protected_settings.clone());
        what.push("protected settings (all)".into());
    }
    (!what.is_empty()).then_some((ExtensionPatch { properties: p }, what))
}

fn succeeded(
    d: &ExtensionDesired,
    o: &ObservedExtension,
    mut plan: ExtensionPlan,
    id: ExtensionId,
    e: &Extension,
    cfg: &EngineConfig,
) -> ExtensionPlan {
    if let Some(s) = tls_problem(d) {
        // The certificate already sent keeps serving.
        return stall(d, plan, &s);
    }
    if !steady_hashes(d, &plan.status) {
        let mut facts = match preflight(d, o, false) {
            Ok(f) => f,
            Err(s) => return stall(d, plan, &s),
        };
        // The settings the extension was installed with decide the cluster's location.
        if let Some(l) = e.setting("location").filter(|l| !l.is_empty()) {
            facts.location = l.to_string();
        }
        let want = match d.body(&facts) {
            Ok(b) => b,
            Err(err) => return stall(d, plan, &Stall::new("InvalidSpec", err)),
        };
        plan = match copy_first(d, plan, &id) {
            ControlFlow::Continue(plan) => plan,
            ControlFlow::Break(copy) => return copy,
        };
        let removed = removed_settings(e, &want);
        if !removed.is_empty() {
            let mut body = want;
            for (k, v) in e.properties.configuration_settings.iter().flatten() {
                if keeps_observed(d, k) {
                    body.properties
                        .configuration_settings
                        .insert(k.clone(), v.clone());
                }
            }
            plan.events.push(Note::warning(
                "RemovingSettings",
                format!(
                    "extension {} holds settings the spec no longer has ({}); a PATCH cannot remove a setting, so the whole extension is sent again (PUT)",
                    d.extension_name,
                    removed.join(", ")
                ),
            ));
            plan.status.retries = None;
            return put(d, plan, id, body, OperationKind::Update);
        }
        if let Some((body, what)) = patch_for(d, &plan.status, e, &want) {
            let message = format!(
                "updating extension {} in place: {}",
                d.extension_name,
                what.join(", ")
            );
            let impacts: Vec<&String> = what
                .iter()
                .filter(|k| IMPACTING.contains(&k.as_str()) || k.starts_with("nodeSelector."))
                .collect();
            if !impacts.is_empty() {
                plan.events.push(Note::warning(
                    "ImpactsEndpoints",
                    format!(
                        "changing {} restarts the extension's components: active online endpoints and deployments on the cluster are impacted",
                        impacts
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            progressing(d, &mut plan, "Updating", &message);
            plan.events.push(Note::normal("Updating", message));
            plan.status.retries = None;
            plan.write = Some(ExtensionWrite::Patch {
                id,
                body: Box::new(body),
                settings_hash: d.settings_hash(),
                protected_hash: d.protected_settings_hash(),
            });
            return plan;
        }
        record_sent(
            d,
            &mut plan.status,
            d.settings_hash(),
            d.protected_settings_hash(),
        );
    }
    plan.status.retries = None;
    plan.status.provisioning_errors.clear();
    plan.status.tls = tls_status(d);
    let mut plan = match cluster_objects(d, o, plan, &id, e, cfg) {
        ControlFlow::Continue(plan) => plan,
        ControlFlow::Break(done) => return done,
    };
    let st = &mut plan.status;
    let message = format!(
        "extension {} {} runs on cluster {}",
        d.extension_name,
        st.version.as_deref().unwrap_or("(version unknown)"),
        id.cluster().name()
    );
    apply(
        &mut plan.status,
        Health::Ready,
        "Installed",
        &message,
        d.generation,
    );
    plan.requeue = Some(steady(o, cfg));
    plan
}

/// Brings the cluster objects in line once the extension runs and its settings are Azure's:
/// the router's address, and the `InstanceType` objects (once their CRD is served).
/// `Break`: this reconcile ends here (a write, a wait or a stall).
fn cluster_objects(
    d: &ExtensionDesired,
    o: &ObservedExtension,
    mut plan: ExtensionPlan,
    id: &ExtensionId,
    e: &Extension,
    cfg: &EngineConfig,
) -> ControlFlow<ExtensionPlan, ExtensionPlan> {
    if !d.cluster_objects_due(&plan.status) {
        return ControlFlow::Continue(plan);
    }
    let name = id.cluster().name().to_string();
    let types_wanted = !d.spec.instance_types.is_empty() || !plan.status.instance_types.is_empty();
    let c = match &o.in_cluster {
        ClusterView::NotRead => return ControlFlow::Continue(plan),
        ClusterView::Unreachable(why) if types_wanted => {
            let mut plan = stall(
                d,
                plan,
                &Stall::new(
                    "ClusterUnreachable",
                    format!(
                        "extension {} runs, but amlops cannot reach cluster {name}'s API server to apply instanceTypes: {why}. Let the operator reach it (a private cluster's API server is reachable only from its network) or remove instanceTypes; amlops tries again at every resync",
                        d.extension_name
                    ),
                ),
            );
            // The cluster may come back without the spec changing.
            plan.requeue = Some(steady(o, cfg));
            return ControlFlow::Break(plan);
        }
        ClusterView::Unreachable(why) => {
            // Only the router's address was wanted: Ready without it, looked for again at
            // the next change.
            plan.events.push(Note::warning(
                "RouterAddressUnknown",
                format!("cannot read the router's address on cluster {name}: {why}"),
            ));
            plan.status.router_address = None;
            plan.status.cluster_objects_hash = Some(d.cluster_objects_hash());
            return ControlFlow::Continue(plan);
        }
        ClusterView::Read(c) => c,
    };
    plan.status.router_address = c.router_address.clone();
    if types_wanted {
        if !c.instance_type_crd {
            let waited = match (o.now, e.last_modified()) {
                (Some(now), Some(since)) => now
                    .duration_since(since)
                    .try_into()
                    .unwrap_or(Duration::ZERO),
                _ => Duration::ZERO,
            };
            if waited > INSTANCE_TYPE_CRD_WAIT.div_f64(cfg.time_scale.max(f64::MIN_POSITIVE)) {
                let mut plan = stall(
                    d,
                    plan,
                    &Stall::new(
                        "InstanceTypeCRDMissing",
                        format!(
                            "extension {} reports Succeeded, but cluster {name} has served no {INSTANCE_TYPE_CRD} for {} minutes: check the extension's pods (kubectl get pods -n azureml); amlops applies instanceTypes once the CRD appears",
                            d.extension_name,
                            waited.as_secs() / 60
                        ),
                    ),
                );
                plan.requeue = Some(steady(o, cfg));
                return ControlFlow::Break(plan);
            }
            progressing(
                d,
                &mut plan,
                "WaitingForInstanceTypeCRD",
                &format!(
                    "extension {} runs; waiting for cluster {name} to serve {INSTANCE_TYPE_CRD} before applying instanceTypes",
                    d.extension_name
                ),
            );
            plan.requeue = Some(cfg.busy_poll);
            return ControlFlow::Break(plan);
        }
        let (apply, prune) =
            instance_type_diff(&d.owner(), &d.spec.instance_types, &c.instance_types);
        if !apply.is_empty() || !prune.is_empty() {
            let names = |v: Vec<String>| {
                if v.is_empty() {
                    "none".into()
                } else {
                    v.join(", ")
                }
            };
            let applied: Vec<String> = apply
                .iter()
                .filter_map(|o| o.pointer("/metadata/name").and_then(|n| n.as_str()))
                .map(str::to_string)
                .collect();
            let message = format!(
                "applying instance types on cluster {name}: {}; deleting {}",
                names(applied),
                names(prune.clone())
            );
            progressing(d, &mut plan, "ApplyingInstanceTypes", &message);
            plan.events
                .push(Note::normal("ApplyingInstanceTypes", message));
            plan.write = Some(ExtensionWrite::ApplyInstanceTypes {
                cluster: id.cluster().clone(),
                apply,
                prune,
            });
            return ControlFlow::Break(plan);
        }
    }
    plan.status.instance_types = d.spec.instance_types.keys().cloned().collect();
    // A load balancer without an address yet is looked at again at the next resync.
    if !(d.router_behind_load_balancer() && c.router_address.is_none()) {
        plan.status.cluster_objects_hash = Some(d.cluster_objects_hash());
    }
    ControlFlow::Continue(plan)
}

fn tls_status(d: &ExtensionDesired) -> Option<ExtensionTlsStatus> {
    if !d.wants_tls() {
        return None;
    }
    let v = d.tls.as_ref()?;
    Some(ExtensionTlsStatus {
        hostname: Some(v.material.cname.clone()),
        not_after: Some(v.info.not_after.clone()),
        sha256_fingerprint: Some(v.info.sha256_fingerprint.clone()),
    })
}

/// Azure accepted what `d` asks for: the hashes (and the certificate's facts) are recorded.
fn record_sent(
    d: &ExtensionDesired,
    st: &mut AzureMlExtensionStatus,
    settings: String,
    protected: Option<String>,
) {
    st.settings_hash = Some(settings);
    st.protected_settings_hash = protected;
    st.tls = tls_status(d);
}

/// The steady-state resync interval: the subscription's pace, the same as every kind's.
pub(crate) fn steady(o: &ObservedExtension, cfg: &EngineConfig) -> Duration {
    o.resync.interval(&cfg.resync, cfg.time_scale)
}

/// Complete `plan` once its write finished: record the operation and the hashes, or turn
/// the failure into its verdict.
pub fn settle(
    d: &ExtensionDesired,
    mut plan: ExtensionPlan,
    result: Result<ExtensionDone, ExtensionWriteFailure>,
    before: &AzureMlExtensionStatus,
    cfg: &EngineConfig,
) -> ExtensionPlan {
    let Some(write) = plan.write.take() else {
        return plan;
    };
    match result {
        Ok(done) => {
            match &write {
                ExtensionWrite::Put {
                    settings_hash,
                    protected_hash,
                    ..
                }
                | ExtensionWrite::Patch {
                    settings_hash,
                    protected_hash,
                    ..
                } => record_sent(
                    d,
                    &mut plan.status,
                    settings_hash.clone(),
                    protected_hash.clone(),
                ),
                ExtensionWrite::CopyTlsSecret { hash, .. } => {
                    plan.status.cluster_secret_hash = Some(hash.clone());
                }
                ExtensionWrite::Delete { .. }
                | ExtensionWrite::ApplyInstanceTypes { .. }
                | ExtensionWrite::AnnotateLegacyFrontEnd { .. } => {}
            }
            match done {
                ExtensionDone::Started(handle) => {
                    plan.status.operation = Some(record_operation(&handle));
                    plan.requeue = Some(handle.retry_after.unwrap_or(cfg.busy_poll));
                }
                ExtensionDone::Finished => plan.requeue = Some(Duration::ZERO),
            }
        }
        Err(ExtensionWriteFailure::Cluster { failure, why }) => {
            let copying = matches!(write, ExtensionWrite::CopyTlsSecret { .. });
            let annotating = matches!(write, ExtensionWrite::AnnotateLegacyFrontEnd { .. });
            let cluster = match &write {
                ExtensionWrite::CopyTlsSecret { cluster, .. }
                | ExtensionWrite::ApplyInstanceTypes { cluster, .. }
                | ExtensionWrite::AnnotateLegacyFrontEnd { cluster } => cluster.name().to_string(),
                _ => String::new(),
            };
            match failure {
                target_cluster::Failure::Refused if annotating => {
                    let s = Stall::new(
                        "LegacyFrontEndNotAnnotated",
                        format!(
                            "cluster {cluster}'s API server refused the annotation ({why}): annotate it yourself (kubectl annotate deployment azureml-fe -n default azureml-fe-enable-upgrade=true) and amlops continues at the next change"
                        ),
                    );
                    plan = stall(d, plan, &s);
                }
                target_cluster::Failure::Refused if copying => {
                    let s = Stall::new(
                        "ClusterSecretRejected",
                        format!(
                            "cluster {cluster}'s API server refused the TLS Secret ({why}): the operator's credential must be able to create namespace azureml and Secrets in it; or use delivery: ProtectedSettings"
                        ),
                    );
                    plan = stall(d, plan, &s);
                }
                target_cluster::Failure::Refused => {
                    let s = Stall::new(
                        "InstanceTypeRejected",
                        format!(
                            "cluster {cluster}'s API server refused {why}: fix that entry of spec.instanceTypes"
                        ),
                    );
                    plan = stall(d, plan, &s);
                }
                target_cluster::Failure::Unreachable => {
                    let what = if copying {
                        "copy the TLS Secret (delivery ClusterSecret needs the cluster's API server; a private cluster can use delivery: ProtectedSettings)"
                    } else if annotating {
                        "annotate the legacy azureml-fe"
                    } else {
                        "apply instanceTypes"
                    };
                    let s = Stall::new(
                        "ClusterUnreachable",
                        format!(
                            "amlops cannot reach cluster {cluster}'s API server to {what}: {why}; it tries again at every resync"
                        ),
                    );
                    plan = stall(d, plan, &s);
                    // The cluster may come back without the spec changing.
                    plan.requeue = Some(cfg.resync.base);
                }
                target_cluster::Failure::Passing => {
                    plan = apply_verdict(d, plan, Verdict::Retry(cfg.busy_poll), &why);
                }
            }
        }
        Err(ExtensionWriteFailure::Azure(e)) => {
            let (kind, resource) = match &write {
                ExtensionWrite::Put { id, .. } => (CallKind::Provision, id.to_string()),
                ExtensionWrite::Patch { id, .. } => (CallKind::Update, id.to_string()),
                ExtensionWrite::Delete { id } => (CallKind::Delete, id.to_string()),
                ExtensionWrite::ApplyInstanceTypes { cluster, .. }
                | ExtensionWrite::CopyTlsSecret { cluster, .. }
                | ExtensionWrite::AnnotateLegacyFrontEnd { cluster } => {
                    (CallKind::ListCredentials, cluster.to_string())
                }
            };
            let v = verdict(
                &e,
                Call {
                    kind,
                    resource: &resource,
                },
                cfg.busy_poll,
            );
            // A write that failed is tried again: nothing of it counts as sent.
            plan.status.retries = before.retries;
            plan.status.settings_hash = before.settings_hash.clone();
            plan.status.protected_settings_hash = before.protected_settings_hash.clone();
            plan.status.tls = before.tls.clone();
            // An install Azure refused created nothing: the spec stays editable.
            if matches!(v, Verdict::Stall(_))
                && matches!(
                    &write,
                    ExtensionWrite::Put {
                        kind: OperationKind::Create,
                        ..
                    }
                )
                && before.extension_id.is_none()
            {
                plan.status.extension_id = None;
            }
            plan = apply_verdict(d, plan, v, &e.to_string());
        }
    }
    plan
}
