//! Reconcile-time checks before any Azure write, pure over what
//! [`observe`](super::observe) read. Each failure is a [`Stall`] with a reason and a message
//! a person can act on; warnings become events.

use crate::azure::ResourceId;

use super::desired::{Desired, Flavor};
use super::observe::{Lookup, ObservedCluster, ProvisionFacts};
use super::store::Claim;
use super::verdict::Stall;
use super::versions::{RangeSource, minor_of};

/// Whether `other` takes precedence over `d` for a contended compute or cluster: it
/// already owns its compute, or it was there first (older creationTimestamp; ties broken by
/// namespace and name, so that exactly one of two contenders wins).
pub fn takes_precedence(other: &Claim, d: &Desired) -> bool {
    other.owns
        || (
            other.created.as_ref(),
            &other.key.namespace,
            &other.key.name,
        ) < (d.created.as_ref(), &d.namespace, &d.name)
}

/// Another resource already claims this compute or AKS cluster (the claims that lose to
/// `d` under [`takes_precedence`] are ignored: `d` goes first).
///
/// # Errors
/// A [`Stall`] `NameConflict` when a claim that takes precedence names the same compute
/// (ids compared ignoring ASCII case) or, for an attach, the same AKS cluster.
pub fn check_claims(d: &Desired, claims: &[Claim]) -> Result<(), Stall> {
    let me = d.compute_id();
    let winners = || {
        claims
            .iter()
            .filter(|c| c.key != d.key() && takes_precedence(c, d))
    };
    if let Some(other) = winners().find(|c| c.compute_id.eq_ignore_ascii_case(&me)) {
        return Err(Stall::new(
            "NameConflict",
            format!(
                "{} already manages compute {} in workspace {}: choose another computeName",
                other.key, d.compute_name, d.workspace.name
            ),
        ));
    }
    if let Flavor::Attach { aks_id } = &d.flavor
        && let Some(other) = winners().find(|c| {
            c.aks_id
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(aks_id))
        })
    {
        return Err(Stall::new(
            "NameConflict",
            format!(
                "{} already attaches this AKS cluster: one cluster can back only one compute",
                other.key
            ),
        ));
    }
    Ok(())
}

/// The checks over Azure's facts: workspace, nodes and vCPUs, and for attach the cluster's
/// subscription, existence, power state, private API server with a public FQDN, Kubernetes
/// minor and existing attachments. Returns the
/// workspace location (the compute body's `location`) and the warnings to emit.
///
/// # Errors
/// The first failed check as a [`Stall`]: `WorkspaceNotFound`; for a create, `InvalidSpec`
/// (VM size not offered), `InsufficientVCPUs`, `InsufficientNodes`; for an attach,
/// `InvalidSpec` (invalid id, other subscription), `AksClusterNotFound`, `AksClusterStopped`,
/// `PrivateClusterPublicFQDN`, `UnsupportedKubernetesVersion`, `InsufficientVCPUs`,
/// `InsufficientNodes`, `AlreadyAttached`.
pub fn check_azure(
    d: &Desired,
    facts: &ProvisionFacts,
    cluster: &Lookup<ObservedCluster>,
) -> Result<(String, Vec<String>), Stall> {
    let sub = &d.workspace.subscription_id;
    let Some(location) = facts.workspace_location.clone() else {
        return Err(Stall::new(
            "WorkspaceNotFound",
            format!(
                "workspace {} not found in resource group {} of subscription {sub}: check spec.workspace",
                d.workspace.name, d.workspace.resource_group
            ),
        ));
    };
    let mut warnings = Vec::new();
    match &d.flavor {
        Flavor::Create {
            agent_count,
            vm_size,
            ..
        } => {
            let (region, cores) = facts.vm_vcpus.clone().unwrap_or_default();
            let Some(cores) = cores else {
                return Err(Stall::new(
                    "InvalidSpec",
                    format!(
                        "VM size {vm_size} is not offered in {region}: pick a size listed by `az vm list-sizes -l {region}`"
                    ),
                ));
            };
            production_check(
                d,
                i64::from(*agent_count),
                *agent_count as i64 * cores as i64,
                &format!("{agent_count} × {vm_size} ({cores} vCPUs each)"),
                &mut warnings,
            )?;
        }
        Flavor::Attach { aks_id } => {
            let id: ResourceId = aks_id
                .parse()
                .map_err(|e| Stall::new("InvalidSpec", format!("spec.aksCluster: {e}")))?;
            if !id.subscription().eq_ignore_ascii_case(sub) {
                return Err(Stall::new(
                    "InvalidSpec",
                    format!(
                        "the AKS cluster is in subscription {} but the workspace in {sub}: Azure ML attaches only clusters of the workspace's subscription",
                        id.subscription()
                    ),
                ));
            }
            let Some(c) = cluster.found() else {
                return Err(Stall::new(
                    "AksClusterNotFound",
                    format!(
                        "AKS cluster {} not found in resource group {}: check spec.aksCluster",
                        id.name(),
                        id.resource_group()
                    ),
                ));
            };
            let cluster = &c.cluster;
            if !cluster.is_running() {
                return Err(Stall::new(
                    "AksClusterStopped",
                    format!(
                        "AKS cluster {} is not running: start it (`az aks start`) and the attach continues",
                        id.name()
                    ),
                ));
            }
            if cluster.is_private_with_public_fqdn() {
                return Err(Stall::new(
                    "PrivateClusterPublicFQDN",
                    format!(
                        "AKS cluster {} is private but its API server also has a public FQDN, which Azure ML does not support (\"Using a public fully qualified domain name (FQDN) with a private AKS cluster isn't supported with Azure Machine Learning\"). Disable it (`az aks update -g {} -n {} --disable-public-fqdn`) and the attach continues",
                        id.name(),
                        id.resource_group(),
                        id.name()
                    ),
                ));
            }
            if let (Some(version), Some((range, source))) =
                (cluster.kubernetes_version(), facts.azureml_versions)
                && range.contains(version) == Some(false)
            {
                let from = match source {
                    RangeSource::Azure => "as Azure ML answered for this subscription and region",
                    RangeSource::Configured => {
                        "per the operator's --azureml-kubernetes-versions; Azure ML's own answer replaces it"
                    }
                };
                let fix = if minor_of(version).is_some_and(|m| m > range.max) {
                    "Azure ML does not support this minor yet: attach a cluster running a supported minor (AKS cannot downgrade)"
                } else {
                    "upgrade the cluster to a supported minor (`az aks upgrade`)"
                };
                return Err(Stall::new(
                    "UnsupportedKubernetesVersion",
                    format!(
                        "AKS cluster {} runs Kubernetes {version}; Azure ML attaches Kubernetes {range} ({from}): {fix}",
                        id.name(),
                    ),
                ));
            }
            let cores_total: i64 = facts
                .pool_vcpus
                .iter()
                .map(|(count, cores)| i64::from(*count) * i64::from(cores.unwrap_or(0)))
                .sum();
            // The nodes Azure ML counts ("Available machine(s)" in its refusal): the node
            // count of every agent pool, as the cluster reports it.
            let nodes: i64 = facts.pool_vcpus.iter().map(|(n, _)| i64::from(*n)).sum();
            production_check(
                d,
                nodes,
                cores_total,
                &format!("cluster {} ({nodes} nodes)", id.name()),
                &mut warnings,
            )?;
            let mine = d.workspace_id();
            if let Some(other) = facts.attachments.iter().find(|a| {
                a.aks_id.eq_ignore_ascii_case(aks_id)
                    && !(a.workspace_id.eq_ignore_ascii_case(&mine)
                        && a.compute.eq_ignore_ascii_case(&d.compute_name))
            }) {
                return Err(Stall::new(
                    "AlreadyAttached",
                    format!(
                        "AKS cluster {} is already attached to workspace {} as compute {} ({}): Azure ML supports one attachment per cluster and a second one would break that compute. Detach it there first, or use that compute",
                        id.name(),
                        other.workspace,
                        other.compute,
                        other.workspace_id,
                    ),
                ));
            }
            if !facts.unreadable_workspaces.is_empty() {
                warnings.push(format!(
                    "could not list the computes of workspace(s) {} (no permission): an attachment of this cluster there would not be seen",
                    facts.unreadable_workspaces.join(", ")
                ));
            }
            if let Some(ranges) = cluster
                .properties
                .api_server_access_profile
                .as_ref()
                .and_then(|p| p.authorized_ip_ranges.as_ref())
                .filter(|r| !r.is_empty())
            {
                warnings.push(format!("the AKS API server only accepts {} authorized IP ranges: Azure ML and the TLS backup must be able to reach it", ranges.len()));
            }
        }
    }
    Ok((location, warnings))
}

/// FastProd and DenseProd need at least [`PRODUCTION_NODES`] nodes and
/// [`PRODUCTION_VCPUS`] vCPUs (Azure ML's "At least 3 machine(s) are required …" and
/// "Agent cores Cluster should have at least 12 cores to operate"). vCPUs are reported
/// first, as Azure does.
fn production_check(
    d: &Desired,
    nodes: i64,
    vcpus: i64,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<(), Stall> {
    let purpose = d.purpose.as_str();
    if d.purpose.is_production() && vcpus < PRODUCTION_VCPUS {
        let also = if nodes < PRODUCTION_NODES {
            format!(" and {nodes} nodes (at least {PRODUCTION_NODES} needed)")
        } else {
            String::new()
        };
        return Err(Stall::new(
            "InsufficientVCPUs",
            format!(
                "{what} gives {vcpus} vCPUs{also}; clusterPurpose {purpose} needs at least {PRODUCTION_VCPUS}: add nodes, pick a larger VM size, or use clusterPurpose DevTest"
            ),
        ));
    }
    if d.purpose.is_production() && nodes < PRODUCTION_NODES {
        return Err(Stall::new(
            "InsufficientNodes",
            format!(
                "{what} has {nodes} nodes ({vcpus} vCPUs); clusterPurpose {purpose} needs at least {PRODUCTION_NODES} nodes whatever their size: add nodes (`az aks scale` or agentCount), or use clusterPurpose DevTest"
            ),
        ));
    }
    if vcpus < 2 {
        warnings.push(format!(
            "{what} gives {vcpus} vCPUs: deployments may not fit"
        ));
    }
    Ok(())
}

/// Nodes a FastProd or DenseProd cluster needs at least.
pub const PRODUCTION_NODES: i64 = 3;
/// vCPUs (all nodes together) a FastProd or DenseProd cluster needs at least.
pub const PRODUCTION_VCPUS: i64 = 12;
