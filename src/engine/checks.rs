//! Reconcile-time checks before any Azure write, pure over what
//! [`observe`](super::observe) read. Each failure is a [`Stall`] with a reason and a message
//! a person can act on; warnings become events.

use crate::azure::ResourceId;

use super::desired::{Desired, Flavor};
use super::observe::{Lookup, ObservedCluster, ProvisionFacts};
use super::store::Claim;
use super::verdict::Stall;

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

/// The checks over Azure's facts: workspace, vCPUs, and for attach the cluster's
/// subscription, existence, power state, version and existing attachments. Returns the
/// workspace location (the compute body's `location`) and the warnings to emit.
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
            vcpu_check(
                d,
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
            if let (Some(version), Some(supported)) =
                (cluster.kubernetes_version(), &facts.versions)
                && !supported.contains(version)
            {
                return Err(Stall::new(
                    "UnsupportedKubernetesVersion",
                    format!(
                        "AKS cluster {} runs Kubernetes {version}, which is not supported; supported versions: {}. Upgrade the cluster (`az aks upgrade`)",
                        id.name(),
                        supported.patch_versions().join(", ")
                    ),
                ));
            }
            let cores_total: i64 = facts
                .pool_vcpus
                .iter()
                .map(|(count, cores)| i64::from(*count) * i64::from(cores.unwrap_or(0)))
                .sum();
            vcpu_check(
                d,
                cores_total,
                &format!("cluster {} ({} nodes)", id.name(), cluster.total_nodes()),
                &mut warnings,
            )?;
            if let Some((other, _)) = facts.computes.iter().find(|(name, resource)| {
                resource
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(aks_id))
                    && name.as_deref() != Some(d.compute_name.as_str())
            }) {
                return Err(Stall::new(
                    "AlreadyAttached",
                    format!(
                        "AKS cluster {} is already attached to workspace {} as compute {}: attaching it again would break that compute. Detach it first or use that compute",
                        id.name(),
                        d.workspace.name,
                        other.as_deref().unwrap_or("?")
                    ),
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

fn vcpu_check(
    d: &Desired,
    vcpus: i64,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<(), Stall> {
    if d.purpose.is_production() && vcpus < 12 {
        return Err(Stall::new(
            "InsufficientVCPUs",
            format!(
                "{what} gives {vcpus} vCPUs; clusterPurpose {} needs at least 12: raise agentCount, pick a larger vmSize, or use clusterPurpose DevTest",
                d.purpose.as_str()
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
