//! Reconcile-time checks before any Azure write (DESIGN §1.4 item 2). Each failure is a
//! [`Stall`] with a reason and a message a person can act on; warnings become events.

use crate::azure::{ArmClient, AzureError, ResourceId};

use super::decide::Stall;
use super::desired::{Desired, Flavor};
use super::store::Claim;

/// Outcome of the checks: go ahead (with warnings to emit) or stall.
pub type CheckResult = Result<Vec<String>, Stall>;

fn stall(reason: &'static str, message: String) -> Stall {
    Stall { reason, message }
}

/// Another CR already claims this compute or AKS cluster.
pub fn check_claims(d: &Desired, claims: &[Claim]) -> Result<(), Stall> {
    let me = d.compute_id().to_ascii_lowercase();
    if let Some(other) = claims
        .iter()
        .find(|c| c.compute_id.to_ascii_lowercase() == me)
    {
        return Err(stall(
            "NameConflict",
            format!(
                "{} already manages compute {} in workspace {}: choose another computeName",
                other.key, d.compute_name, d.workspace.name
            ),
        ));
    }
    if let Flavor::Attach { aks_id } = &d.flavor
        && let Some(other) = claims.iter().find(|c| {
            c.aks_id
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(aks_id))
        })
    {
        return Err(stall(
            "NameConflict",
            format!(
                "{} already attaches this AKS cluster: one cluster can back only one compute",
                other.key
            ),
        ));
    }
    Ok(())
}

/// Lookups in Azure: workspace, vCPUs, and for attach the cluster's state, version and
/// existing attachments. Returns the workspace location with the warnings.
pub async fn check_azure(
    arm: &ArmClient,
    d: &Desired,
) -> Result<(String, Vec<String>), CheckError> {
    let sub = &d.workspace.subscription_id;
    let ws_id = ResourceId::workspace(sub, &d.workspace.resource_group, &d.workspace.name)?;
    let Some(ws) = arm.get_workspace(&ws_id).await? else {
        return Err(CheckError::Stall(stall(
            "WorkspaceNotFound",
            format!(
                "workspace {} not found in resource group {} of subscription {sub}: check spec.workspace",
                d.workspace.name, d.workspace.resource_group
            ),
        )));
    };
    let location = ws.location.clone().unwrap_or_default();
    let mut warnings = Vec::new();
    match &d.flavor {
        Flavor::Create {
            location: loc,
            agent_count,
            vm_size,
            ..
        } => {
            let region = loc.clone().unwrap_or_else(|| location.clone());
            let Some(cores) = arm.vm_vcpus(sub, &region, vm_size).await? else {
                return Err(CheckError::Stall(stall(
                    "InvalidSpec",
                    format!(
                        "VM size {vm_size} is not offered in {region}: pick a size listed by `az vm list-sizes -l {region}`"
                    ),
                )));
            };
            vcpu_check(
                d,
                *agent_count as i64 * cores as i64,
                &format!("{agent_count} × {vm_size} ({cores} vCPUs each)"),
                &mut warnings,
            )?;
        }
        Flavor::Attach { aks_id } => {
            let id: ResourceId = aks_id.parse()?;
            if !id.subscription().eq_ignore_ascii_case(sub) {
                return Err(CheckError::Stall(stall(
                    "InvalidSpec",
                    format!(
                        "the AKS cluster is in subscription {} but the workspace in {sub}: Azure ML attaches only clusters of the workspace's subscription",
                        id.subscription()
                    ),
                )));
            }
            let Some(cluster) = arm.get_managed_cluster(&id).await? else {
                return Err(CheckError::Stall(stall(
                    "AksClusterNotFound",
                    format!(
                        "AKS cluster {} not found in resource group {}: check spec.aksCluster",
                        id.name(),
                        id.resource_group()
                    ),
                )));
            };
            if !cluster.is_running() {
                return Err(CheckError::Stall(stall(
                    "AksClusterStopped",
                    format!(
                        "AKS cluster {} is not running: start it (`az aks start`) and the attach continues",
                        id.name()
                    ),
                )));
            }
            let region = cluster.location.clone().unwrap_or_else(|| location.clone());
            if let Some(version) = cluster.kubernetes_version() {
                let supported = arm.list_kubernetes_versions(sub, &region).await?;
                if !supported.contains(version) {
                    return Err(CheckError::Stall(stall(
                        "UnsupportedKubernetesVersion",
                        format!(
                            "AKS cluster {} runs Kubernetes {version}, which is not supported; supported versions: {}. Upgrade the cluster (`az aks upgrade`)",
                            id.name(),
                            supported.patch_versions().join(", ")
                        ),
                    )));
                }
            }
            let mut cores_total = 0i64;
            for pool in cluster
                .properties
                .agent_pool_profiles
                .clone()
                .unwrap_or_default()
            {
                let size = pool.vm_size.clone().unwrap_or_default();
                let cores = arm.vm_vcpus(sub, &region, &size).await?.unwrap_or(0) as i64;
                cores_total += cores * pool.count.unwrap_or(0) as i64;
            }
            vcpu_check(
                d,
                cores_total,
                &format!("cluster {} ({} nodes)", id.name(), cluster.total_nodes()),
                &mut warnings,
            )?;
            let computes = arm.list_computes(&ws_id).await?;
            if let Some(other) = computes.iter().find(|c| {
                c.properties
                    .resource_id
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(aks_id))
                    && c.name.as_deref() != Some(d.compute_name.as_str())
            }) {
                return Err(CheckError::Stall(stall(
                    "AlreadyAttached",
                    format!(
                        "AKS cluster {} is already attached to workspace {} as compute {}: attaching it again would break that compute. Detach it first or use that compute",
                        id.name(),
                        d.workspace.name,
                        other.name.as_deref().unwrap_or("?")
                    ),
                )));
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
) -> Result<(), CheckError> {
    if d.purpose.is_production() && vcpus < 12 {
        return Err(CheckError::Stall(stall(
            "InsufficientVCPUs",
            format!(
                "{what} gives {vcpus} vCPUs; clusterPurpose {} needs at least 12: raise agentCount, pick a larger vmSize, or use clusterPurpose DevTest",
                d.purpose.as_str()
            ),
        )));
    }
    if vcpus < 2 {
        warnings.push(format!(
            "{what} gives {vcpus} vCPUs: deployments may not fit"
        ));
    }
    Ok(())
}

/// A check stalled, or Azure could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// User action needed.
    #[error("{}: {}", .0.reason, .0.message)]
    Stall(Stall),
    /// Azure failed; retry later.
    #[error(transparent)]
    Azure(#[from] AzureError),
}
