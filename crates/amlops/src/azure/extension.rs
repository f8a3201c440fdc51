//! Cluster extension operations (`…/{cluster}/providers/Microsoft.KubernetesConfiguration/extensions/{name}`)
//! and the provider-registration read that precedes them.
//!
//! Status codes (extensions 2025-03-01 swagger and examples): PUT 201 (new) or 200 (existing),
//! with `Azure-AsyncOperation`, `Operation-Location` and `x-ms-async-operation-timeout: PT48H`;
//! PATCH 202 (will update, same headers) or 200 ("No update is done"); DELETE 202 with
//! `Azure-AsyncOperation`, 200 (`forceDelete`: synchronous) or 204 (not found); operation
//! status at `…/extensions/{name}/operations/{id}` (always 200 with `{status, error}`).
//! Long-running calls return [`LroStart`] handles polled with [`ArmClient::poll`].

use std::fmt;

use reqwest::Method;

use super::compute::delete_outcome;
use super::error::AzureError;
use super::http::Request;
use super::lro::{LroStart, LroStyle, OperationHandle, OperationKind, handle_from_response};
use super::model::{Extension, ExtensionPatch, ExtensionRequest, ProviderRegistration};
use super::resource_id::{AKS_NAMESPACE, ResourceId};
use super::{ArmClient, aks::check_subscription};

/// api-version of `Microsoft.KubernetesConfiguration/extensions`.
pub const KUBERNETES_CONFIGURATION_API_VERSION: &str = "2025-03-01";
/// api-version of the resource-provider registration read (`Microsoft.Resources`).
pub const RESOURCES_API_VERSION: &str = "2021-04-01";
/// Provider namespace of cluster extensions.
pub const KUBERNETES_CONFIGURATION_NAMESPACE: &str = "Microsoft.KubernetesConfiguration";
/// Provider namespace of Arc-enabled clusters.
pub const ARC_NAMESPACE: &str = "Microsoft.Kubernetes";

/// The ARM id of an extension: an extension resource under a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionId {
    cluster: ResourceId,
    name: String,
}

impl ExtensionId {
    /// The extension `name` on `cluster` (an AKS `managedClusters` or an Arc
    /// `connectedClusters` id).
    ///
    /// # Errors
    /// `Config` when the cluster id has another type or the name is not a path segment.
    pub fn new(cluster: ResourceId, name: &str) -> Result<Self, AzureError> {
        if !(cluster.is_type(AKS_NAMESPACE, "managedClusters")
            || cluster.is_type(ARC_NAMESPACE, "connectedClusters"))
        {
            return Err(AzureError::Config(format!(
                "an extension lives on a managedClusters or connectedClusters resource, not {}/{}",
                cluster.namespace(),
                cluster.resource_type()
            )));
        }
        if name.is_empty()
            || name.len() > 253
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(AzureError::Config(format!(
                "invalid extension name {name:?}"
            )));
        }
        Ok(Self {
            cluster,
            name: name.to_owned(),
        })
    }

    /// The cluster the extension is installed on.
    pub fn cluster(&self) -> &ResourceId {
        &self.cluster
    }

    /// The extension name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ExtensionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/providers/{KUBERNETES_CONFIGURATION_NAMESPACE}/extensions/{}",
            self.cluster, self.name
        )
    }
}

impl ArmClient {
    fn extension_url(&self, id: &ExtensionId, suffix: &str, query: &[(&str, &str)]) -> url::Url {
        self.transport().url(
            &format!("{id}{suffix}"),
            KUBERNETES_CONFIGURATION_API_VERSION,
            query,
        )
    }

    /// GET an extension; `Ok(None)` when it does not exist. Protected settings are never
    /// part of the answer.
    ///
    /// # Errors
    /// The [usual failures](ArmClient#errors-of-every-call) of the GET (the id was checked by
    /// [`ExtensionId::new`]); `Decode` when the body is not an extension. A 404 is `Ok(None)`.
    pub async fn get_extension(&self, id: &ExtensionId) -> Result<Option<Extension>, AzureError> {
        let url = self.extension_url(id, "", &[]);
        self.get_optional("extension.get", url).await
    }

    /// PUT an extension (create). 201 starts an operation ([`OperationKind::Create`]); a 200
    /// without an `Azure-AsyncOperation` header is done.
    ///
    /// Not retried after ambiguous failures (the RP may have started the Helm install):
    /// re-observe with [`get_extension`](Self::get_extension).
    ///
    /// # Errors
    /// `Config` when the body cannot be serialised; otherwise the [usual
    /// failures](ArmClient#errors-of-every-call), except that `Connection`, `Timeout` and
    /// 500/502/504 `Api` errors come back without a retry. Azure's refusals of the body are `Api`
    /// errors; `Decode` when a synchronous answer is not an extension.
    pub async fn create_extension(
        &self,
        id: &ExtensionId,
        body: &ExtensionRequest,
    ) -> Result<LroStart<Extension>, AzureError> {
        let url = self.extension_url(id, "", &[]);
        let req = Request::new("extension.put", Method::PUT, url)
            .json(body)?
            .not_idempotent();
        let resp = self.transport().send(req).await?;
        tracing::debug!(
            extension = %id.name(),
            protected_keys = ?body.properties.configuration_protected_settings.keys().collect::<Vec<_>>(),
            status = resp.status.as_u16(),
            "extension PUT accepted"
        );
        if let Some(handle) = handle_from_response(OperationKind::Create, &resp) {
            return Ok(LroStart::Started(handle));
        }
        Ok(LroStart::Done(resp.json()?))
    }

    /// PATCH an extension. Azure merges `configurationSettings` and replaces
    /// `configurationProtectedSettings` when sent; 200 means nothing changed (done), 202
    /// starts an [`OperationKind::Update`] operation.
    ///
    /// # Errors
    /// As [`create_extension`](Self::create_extension) (the PATCH is not retried after an
    /// ambiguous failure either).
    pub async fn update_extension(
        &self,
        id: &ExtensionId,
        patch: &ExtensionPatch,
    ) -> Result<LroStart<Extension>, AzureError> {
        let url = self.extension_url(id, "", &[]);
        let req = Request::new("extension.patch", Method::PATCH, url)
            .json(patch)?
            .not_idempotent();
        let resp = self.transport().send(req).await?;
        if let Some(handle) = handle_from_response(OperationKind::Update, &resp) {
            return Ok(LroStart::Started(handle));
        }
        Ok(LroStart::Done(resp.json()?))
    }

    /// DELETE an extension. `force` adds `forceDelete=true`: Azure deletes the resource
    /// synchronously ("not the normal asynchronous delete") without waiting for the agent.
    /// An extension that is already gone (204, 404) counts as done.
    ///
    /// # Errors
    /// The [usual failures](ArmClient#errors-of-every-call). A 204 or 404 (already gone) is
    /// `Ok(LroStart::Done(()))`.
    pub async fn delete_extension(
        &self,
        id: &ExtensionId,
        force: bool,
    ) -> Result<LroStart<()>, AzureError> {
        let query: &[(&str, &str)] = if force {
            &[("forceDelete", "true")]
        } else {
            &[]
        };
        let url = self.extension_url(id, "", query);
        let req = Request::new("extension.delete", Method::DELETE, url);
        delete_outcome(self.transport().send(req).await, OperationKind::Delete)
    }

    /// All extensions of a cluster (every page).
    ///
    /// # Errors
    /// `Config` before any request when `cluster` is neither a `managedClusters` nor a
    /// `connectedClusters` id, or when a `nextLink` leaves the ARM endpoint; otherwise the
    /// [usual failures](ArmClient#errors-of-every-call) of any page, `Decode` as for
    /// [`list_computes`](Self::list_computes).
    pub async fn list_extensions(
        &self,
        cluster: &ResourceId,
    ) -> Result<Vec<Extension>, AzureError> {
        // Validates the cluster type with a placeholder name.
        let probe = ExtensionId::new(cluster.clone(), "x")?;
        let url = self.transport().url(
            &format!(
                "{}/providers/{KUBERNETES_CONFIGURATION_NAMESPACE}/extensions",
                probe.cluster()
            ),
            KUBERNETES_CONFIGURATION_API_VERSION,
            &[],
        );
        self.list_all("extension.list", url).await
    }

    /// The handle of an extension operation by id (the `…/extensions/{name}/operations/{id}`
    /// URL), for [`ArmClient::poll`] — e.g. when only the id was recorded.
    ///
    /// # Errors
    /// `Config` when `operation_id` is not a path segment.
    pub fn extension_operation(
        &self,
        id: &ExtensionId,
        operation_id: &str,
        kind: OperationKind,
    ) -> Result<OperationHandle, AzureError> {
        if operation_id.is_empty() || operation_id.contains(['/', '?', '#', '%']) {
            return Err(AzureError::Config(format!(
                "invalid operation id {operation_id:?}"
            )));
        }
        let url = self.extension_url(id, &format!("/operations/{operation_id}"), &[]);
        Ok(OperationHandle {
            kind,
            style: LroStyle::AsyncOperation,
            url: url.to_string(),
            retry_after: None,
        })
    }

    /// GET `/subscriptions/{s}/providers/{namespace}`: whether the subscription registered
    /// the provider (e.g. `Microsoft.KubernetesConfiguration`, which extensions need).
    ///
    /// # Errors
    /// `Config` before any request when `subscription` holds other than ASCII letters, digits and
    /// `-`, or `namespace` other than letters, digits and dots; otherwise the [usual
    /// failures](ArmClient#errors-of-every-call) of the GET, `Decode` when the body is not a
    /// provider.
    pub async fn get_provider_registration(
        &self,
        subscription: &str,
        namespace: &str,
    ) -> Result<ProviderRegistration, AzureError> {
        check_subscription(subscription)?;
        if namespace.is_empty()
            || !namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            return Err(AzureError::Config(format!(
                "invalid provider namespace {namespace:?}"
            )));
        }
        let url = self.transport().url(
            &format!("/subscriptions/{subscription}/providers/{namespace}"),
            RESOURCES_API_VERSION,
            &[],
        );
        self.transport()
            .send(Request::get("provider.get", url))
            .await?
            .json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_ids() {
        let aks = ResourceId::managed_cluster("s", "rg", "k").unwrap();
        let id = ExtensionId::new(aks, "azureml").unwrap();
        assert_eq!(
            id.to_string(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/k/providers/Microsoft.KubernetesConfiguration/extensions/azureml"
        );
        let ws = ResourceId::workspace("s", "rg", "w").unwrap();
        assert!(ExtensionId::new(ws, "azureml").is_err());
        let aks = ResourceId::managed_cluster("s", "rg", "k").unwrap();
        for bad in ["", "a/b", "a?b", "a b"] {
            assert!(ExtensionId::new(aks.clone(), bad).is_err(), "{bad:?}");
        }
        let arc = ResourceId::new("s", "rg", ARC_NAMESPACE, &[("connectedClusters", "c")]).unwrap();
        assert!(ExtensionId::new(arc, "azureml").is_ok());
    }
}
