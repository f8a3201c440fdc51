//! `Kubernetes` compute operations: attach (PUT), get, detach, list.
//!
//! Same resource and api-version as the AKS compute (`…/workspaces/{ws}/computes/{name}`,
//! [`MLS_API_VERSION`]); the body is [`KubernetesComputeResource`]. Azure has no secrets
//! variant for Kubernetes computes (`ComputeSecrets` covers AKS, Databricks and VMs only), so
//! there is no `listKeys` here.

use reqwest::Method;

use super::compute::UnderlyingResourceAction;
use super::error::AzureError;
use super::http::Request;
use super::lro::{LroStart, OperationKind, handle_from_response};
use super::model::KubernetesComputeResource;
use super::resource_id::{MLS_NAMESPACE, ResourceId};
use super::{ArmClient, MLS_API_VERSION};

impl ArmClient {
    /// GET a compute as a Kubernetes compute; `Ok(None)` when it does not exist. A compute
    /// of another type decodes too: check [`KubernetesComputeResource::is_expected_type`].
    ///
    /// # Errors
    /// As [`get_compute`](Self::get_compute): `Config` when `id` is not a `workspaces/computes`
    /// id, the [usual failures](ArmClient#errors-of-every-call); a 404 is `Ok(None)`.
    pub async fn get_kubernetes_compute(
        &self,
        id: &ResourceId,
    ) -> Result<Option<KubernetesComputeResource>, AzureError> {
        id.expect_type(MLS_NAMESPACE, "workspaces/computes")?;
        let url = self.resource_url(id, "", MLS_API_VERSION, &[]);
        self.get_optional("kubernetes_compute.get", url).await
    }

    /// PUT a Kubernetes compute: attach a cluster that runs the Azure ML extension to the
    /// workspace (read-only fields are dropped, [`KubernetesComputeResource::for_request`]).
    /// Starts an [`OperationKind::Attach`] operation, or is done at once.
    ///
    /// Not retried after ambiguous failures: re-observe with
    /// [`get_kubernetes_compute`](Self::get_kubernetes_compute).
    ///
    /// # Errors
    /// `Config` when the body is not of type `Kubernetes` or has no `resourceId`; Azure's
    /// refusals (extension not installed, role check, changed namespace) as `Api` errors.
    pub async fn attach_kubernetes_compute(
        &self,
        id: &ResourceId,
        body: &KubernetesComputeResource,
    ) -> Result<LroStart<KubernetesComputeResource>, AzureError> {
        id.expect_type(MLS_NAMESPACE, "workspaces/computes")?;
        if !body.is_expected_type() {
            return Err(AzureError::Config(format!(
                "compute type {:?} is not Kubernetes",
                body.properties.compute_type
            )));
        }
        if body
            .properties
            .resource_id
            .as_deref()
            .is_none_or(str::is_empty)
        {
            return Err(AzureError::Config(
                "a Kubernetes compute needs the cluster's resourceId".to_owned(),
            ));
        }
        let url = self.resource_url(id, "", MLS_API_VERSION, &[]);
        let req = Request::new("kubernetes_compute.put", Method::PUT, url)
            .json(&body.for_request())?
            .not_idempotent();
        let resp = self.transport().send(req).await?;
        if let Some(handle) = handle_from_response(OperationKind::Attach, &resp) {
            return Ok(LroStart::Started(handle));
        }
        Ok(LroStart::Done(resp.json()?))
    }

    /// Detach a Kubernetes compute (`DELETE ?underlyingResourceAction=Detach`): the cluster
    /// and its extension are left untouched. A compute already gone counts as done.
    ///
    /// # Errors
    /// As [`delete_compute`](Self::delete_compute); a 404 (already gone) is
    /// `Ok(LroStart::Done(()))`.
    pub async fn detach_kubernetes_compute(
        &self,
        id: &ResourceId,
    ) -> Result<LroStart<()>, AzureError> {
        self.delete_compute(id, UnderlyingResourceAction::Detach)
            .await
    }

    /// The Kubernetes computes of a workspace (computes of other types are left out).
    ///
    /// # Errors
    /// As [`list_computes`](Self::list_computes).
    pub async fn list_kubernetes_computes(
        &self,
        workspace: &ResourceId,
    ) -> Result<Vec<KubernetesComputeResource>, AzureError> {
        workspace.expect_type(MLS_NAMESPACE, "workspaces")?;
        let url = self.resource_url(workspace, "/computes", MLS_API_VERSION, &[]);
        let all: Vec<KubernetesComputeResource> =
            self.list_all("kubernetes_compute.list", url).await?;
        Ok(all.into_iter().filter(|c| c.is_expected_type()).collect())
    }
}
