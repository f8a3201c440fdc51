//! AKS operations (`Microsoft.ContainerService/managedClusters`).

use reqwest::Method;

use super::compute::delete_outcome;
use super::error::AzureError;
use super::http::Request;
use super::lro::{LroStart, OperationKind, handle_from_response};
use super::model::{
    AgentPool, CredentialResults, KubeconfigSecret, KubernetesVersionList, ManagedCluster,
};
use super::resource_id::{AKS_NAMESPACE, ResourceId};
use super::{AKS_API_VERSION, ArmClient};

fn expect_cluster(id: &ResourceId) -> Result<(), AzureError> {
    id.expect_type(AKS_NAMESPACE, "managedClusters")
}

/// Location names go into an OData filter or a path: allow only what Azure uses.
pub(crate) fn check_location(location: &str) -> Result<String, AzureError> {
    let normalised: String = location
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if normalised.is_empty() || !normalised.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(AzureError::Config(format!(
            "invalid Azure location {location:?}"
        )));
    }
    Ok(normalised)
}

pub(crate) fn check_subscription(subscription: &str) -> Result<(), AzureError> {
    if subscription.is_empty()
        || !subscription
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(AzureError::Config(format!(
            "invalid subscription id {subscription:?}"
        )));
    }
    Ok(())
}

impl ArmClient {
    /// GET a managed cluster; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// `Config` before any request when `id` is not a `managedClusters` id; otherwise the [usual
    /// failures](ArmClient#errors-of-every-call) of the GET. A 404 is `Ok(None)`, not an error.
    pub async fn get_managed_cluster(
        &self,
        id: &ResourceId,
    ) -> Result<Option<ManagedCluster>, AzureError> {
        expect_cluster(id)?;
        let url = self.resource_url(id, "", AKS_API_VERSION, &[]);
        self.get_optional("aks.get", url).await
    }

    /// POST `listClusterUserCredential`: the first user kubeconfig.
    ///
    /// # Errors
    /// `Config` before any request when `id` is not a `managedClusters` id; `Decode` when the
    /// answer holds no kubeconfig; otherwise the [usual failures](ArmClient#errors-of-every-call)
    /// (a 403 when the identity may not list credentials, a 404 when the cluster is gone: both
    /// `Api`).
    pub async fn list_cluster_user_credential(
        &self,
        id: &ResourceId,
    ) -> Result<KubeconfigSecret, AzureError> {
        self.cluster_credential(id, "/listClusterUserCredential", "aks.list_user_credential")
            .await
    }

    /// POST `listClusterAdminCredential`: the first admin kubeconfig (fails when the cluster
    /// disables local accounts).
    ///
    /// # Errors
    /// As [`list_cluster_user_credential`](Self::list_cluster_user_credential); a cluster that
    /// disables local accounts refuses with an `Api` error.
    pub async fn list_cluster_admin_credential(
        &self,
        id: &ResourceId,
    ) -> Result<KubeconfigSecret, AzureError> {
        self.cluster_credential(
            id,
            "/listClusterAdminCredential",
            "aks.list_admin_credential",
        )
        .await
    }

    async fn cluster_credential(
        &self,
        id: &ResourceId,
        action: &str,
        operation: &'static str,
    ) -> Result<KubeconfigSecret, AzureError> {
        expect_cluster(id)?;
        let url = self.resource_url(id, action, AKS_API_VERSION, &[]);
        let resp = self
            .transport()
            .send(Request::new(operation, Method::POST, url))
            .await?;
        let results: CredentialResults = resp.json()?;
        results
            .kubeconfigs
            .into_iter()
            .find_map(|k| k.value)
            .ok_or_else(|| AzureError::decode(operation, "the answer holds no kubeconfig"))
    }

    /// GET an agent pool; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// `Config` before any request when `cluster` is not a `managedClusters` id or `pool` is not a
    /// path segment; otherwise the [usual failures](ArmClient#errors-of-every-call). A 404 (pool or
    /// cluster gone) is `Ok(None)`.
    pub async fn get_agent_pool(
        &self,
        cluster: &ResourceId,
        pool: &str,
    ) -> Result<Option<AgentPool>, AzureError> {
        expect_cluster(cluster)?;
        let id = cluster.child("agentPools", pool)?;
        let url = self.resource_url(&id, "", AKS_API_VERSION, &[]);
        self.get_optional("aks.agent_pool.get", url).await
    }

    /// PUT an agent pool (read-only fields are dropped). Long-running; AKS answers 409
    /// `OperationNotAllowed` while another operation runs on the cluster.
    ///
    /// # Errors
    /// `Config` as for [`get_agent_pool`](Self::get_agent_pool), or when the body cannot be
    /// serialised; otherwise the [usual failures](ArmClient#errors-of-every-call): AKS's 409
    /// `OperationNotAllowed` while another operation runs is an `Api` error of category `Conflict`
    /// (the verdict waits). `Decode` when a synchronous answer is not an agent pool.
    pub async fn put_agent_pool(
        &self,
        cluster: &ResourceId,
        pool: &str,
        body: &AgentPool,
    ) -> Result<LroStart<AgentPool>, AzureError> {
        expect_cluster(cluster)?;
        let id = cluster.child("agentPools", pool)?;
        let url = self.resource_url(&id, "", AKS_API_VERSION, &[]);
        let req = Request::new("aks.agent_pool.put", Method::PUT, url).json(&body.for_request())?;
        let resp = self.transport().send(req).await?;
        if let Some(handle) = handle_from_response(OperationKind::Scale, &resp) {
            return Ok(LroStart::Started(handle));
        }
        Ok(LroStart::Done(resp.json()?))
    }

    /// Sets the node count of an agent pool: GET, change `count`, PUT back — every other
    /// setting is sent back unchanged. Fails with a `Config` error when the pool does not
    /// exist or uses the cluster autoscaler (AKS refuses a manual count then).
    ///
    /// # Errors
    /// As [`get_agent_pool`](Self::get_agent_pool) and [`put_agent_pool`](Self::put_agent_pool);
    /// `Config`, before the PUT, when the pool does not exist or uses the cluster autoscaler (the
    /// verdict stalls with `InvalidConfiguration`).
    pub async fn scale_agent_pool(
        &self,
        cluster: &ResourceId,
        pool: &str,
        count: i32,
    ) -> Result<LroStart<AgentPool>, AzureError> {
        let mut current = self.get_agent_pool(cluster, pool).await?.ok_or_else(|| {
            AzureError::Config(format!(
                "agent pool {pool:?} not found in {}",
                cluster.name()
            ))
        })?;
        if current.properties.enable_auto_scaling == Some(true) {
            return Err(AzureError::Config(format!(
                "agent pool {pool:?} uses the cluster autoscaler; its count cannot be set"
            )));
        }
        current.properties.count = Some(count);
        self.put_agent_pool(cluster, pool, &current).await
    }

    /// DELETE a managed cluster (used after detaching a compute that must be deleted).
    ///
    /// # Errors
    /// `Config` before any request when `id` is not a `managedClusters` id; otherwise the [usual
    /// failures](ArmClient#errors-of-every-call). A 404 (already gone) is `Ok(LroStart::Done(()))`.
    pub async fn delete_managed_cluster(
        &self,
        id: &ResourceId,
    ) -> Result<LroStart<()>, AzureError> {
        expect_cluster(id)?;
        let url = self.resource_url(id, "", AKS_API_VERSION, &[]);
        let req = Request::new("aks.delete", Method::DELETE, url);
        delete_outcome(self.transport().send(req).await, OperationKind::Delete)
    }

    /// Kubernetes versions AKS offers in `location`.
    ///
    /// # Errors
    /// `Config` before any request when `subscription` holds other than ASCII letters, digits and
    /// `-`, or `location` other than letters and digits (spaces are dropped); otherwise the [usual
    /// failures](ArmClient#errors-of-every-call), `Decode` when the body is not a version list.
    pub async fn list_kubernetes_versions(
        &self,
        subscription: &str,
        location: &str,
    ) -> Result<KubernetesVersionList, AzureError> {
        check_subscription(subscription)?;
        let location = check_location(location)?;
        let path = format!(
            "/subscriptions/{subscription}/providers/{AKS_NAMESPACE}/locations/{location}/kubernetesVersions"
        );
        let url = self.transport().url(&path, AKS_API_VERSION, &[]);
        self.transport()
            .send(Request::get("aks.kubernetes_versions", url))
            .await?
            .json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_normalised_or_refused() {
        let cases = [
            ("eastus", Some("eastus")),
            ("East US", Some("eastus")),
            ("westeurope", Some("westeurope")),
            ("", None),
            ("east'us", None),
            ("eastus/../x", None),
        ];
        for (input, want) in cases {
            assert_eq!(check_location(input).ok().as_deref(), want, "{input:?}");
        }
        assert!(check_subscription("00000000-0000-0000-0000-000000000000").is_ok());
        assert!(check_subscription("a/b").is_err());
        assert!(check_subscription("").is_err());
    }
}
