//! Azure ML compute operations (`…/workspaces/{ws}/computes/{name}`).

use reqwest::Method;

use super::error::AzureError;
use super::http::{Request, Response};
use super::lro::{LroStart, OperationKind, handle_from_response};
use super::model::{AksComputeResource, ComputeKeys};
use super::resource_id::{MLS_NAMESPACE, ResourceId};
use super::{ArmClient, MLS_API_VERSION};

/// What a compute DELETE does to the underlying AKS cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnderlyingResourceAction {
    /// Delete the AKS cluster too (created computes only; Azure refuses it on attached ones).
    Delete,
    /// Detach: the AKS cluster keeps running, Azure ML's components are removed from it.
    Detach,
}

impl UnderlyingResourceAction {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "Delete",
            Self::Detach => "Detach",
        }
    }

    fn kind(self) -> OperationKind {
        match self {
            Self::Delete => OperationKind::Delete,
            Self::Detach => OperationKind::Detach,
        }
    }
}

fn expect_compute(id: &ResourceId) -> Result<(), AzureError> {
    id.expect_type(MLS_NAMESPACE, "workspaces/computes")
}

impl ArmClient {
    /// GET a compute; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// `Config` before any request when `id` is not a `workspaces/computes` id; otherwise the
    /// [usual failures](ArmClient#errors-of-every-call), `Decode` when the body is not a compute. A
    /// 404 is `Ok(None)`.
    pub async fn get_compute(
        &self,
        id: &ResourceId,
    ) -> Result<Option<AksComputeResource>, AzureError> {
        expect_compute(id)?;
        let url = self.resource_url(id, "", MLS_API_VERSION, &[]);
        self.get_optional("compute.get", url).await
    }

    /// PUT a compute (create, attach or in-place update; `kind` says which, for the handle).
    ///
    /// Read-only fields of `body` are dropped ([`AksComputeResource::for_request`]). Azure's
    /// compute create is not idempotent, so failures where Azure may already have acted
    /// (timeouts, 500/502/504) are not retried here: re-observe with
    /// [`get_compute`](Self::get_compute) before trying again.
    ///
    /// # Errors
    /// `Config` before any request when `id` is not a `workspaces/computes` id or the body cannot
    /// be serialised; otherwise the [usual failures](ArmClient#errors-of-every-call), except that
    /// `Connection`, `Timeout` and 500/502/504 `Api` errors come back without a retry (Azure may
    /// have acted: re-observe). Azure's refusals of the body are `Api` errors (400 with Azure's
    /// code); `Decode` when a synchronous answer is not a compute.
    pub async fn put_compute(
        &self,
        id: &ResourceId,
        body: &AksComputeResource,
        kind: OperationKind,
    ) -> Result<LroStart<AksComputeResource>, AzureError> {
        expect_compute(id)?;
        let url = self.resource_url(id, "", MLS_API_VERSION, &[]);
        let req = Request::new("compute.put", Method::PUT, url)
            .json(&body.for_request())?
            .not_idempotent();
        let resp = self.transport().send(req).await?;
        if let Some(handle) = handle_from_response(kind, &resp) {
            return Ok(LroStart::Started(handle));
        }
        Ok(LroStart::Done(resp.json()?))
    }

    /// DELETE a compute with `underlyingResourceAction`. A compute that is already gone
    /// counts as done.
    ///
    /// # Errors
    /// `Config` before any request when `id` is not a `workspaces/computes` id; otherwise the
    /// [usual failures](ArmClient#errors-of-every-call). A 404 (already gone) is
    /// `Ok(LroStart::Done(()))`.
    pub async fn delete_compute(
        &self,
        id: &ResourceId,
        action: UnderlyingResourceAction,
    ) -> Result<LroStart<()>, AzureError> {
        expect_compute(id)?;
        let url = self.resource_url(
            id,
            "",
            MLS_API_VERSION,
            &[("underlyingResourceAction", action.as_str())],
        );
        let req = Request::new("compute.delete", Method::DELETE, url);
        delete_outcome(self.transport().send(req).await, action.kind())
    }

    /// All computes of a workspace (every page).
    ///
    /// # Errors
    /// `Config` before any request when `workspace` is not a `workspaces` id, or when a `nextLink`
    /// leaves the ARM endpoint; otherwise the [usual failures](ArmClient#errors-of-every-call) of
    /// any page (a 404 when the workspace is gone). `Decode` when a page is not a list or the
    /// paging does not end (a repeated `nextLink`, more than 500 pages); items that do not decode
    /// are skipped.
    pub async fn list_computes(
        &self,
        workspace: &ResourceId,
    ) -> Result<Vec<AksComputeResource>, AzureError> {
        workspace.expect_type(MLS_NAMESPACE, "workspaces")?;
        let url = self.resource_url(workspace, "/computes", MLS_API_VERSION, &[]);
        self.list_all("compute.list", url).await
    }

    /// [`Self::list_computes`], and how many pages (ARM reads) the list took.
    ///
    /// # Errors
    /// As [`Self::list_computes`].
    pub async fn list_computes_paged(
        &self,
        workspace: &ResourceId,
    ) -> Result<(Vec<AksComputeResource>, usize), AzureError> {
        workspace.expect_type(MLS_NAMESPACE, "workspaces")?;
        let url = self.resource_url(workspace, "/computes", MLS_API_VERSION, &[]);
        self.list_all_pages("compute.list", url).await
    }

    /// POST `listKeys`: the compute's user and admin kubeconfigs.
    ///
    /// # Errors
    /// `Config` before any request when `id` is not a `workspaces/computes` id; otherwise the
    /// [usual failures](ArmClient#errors-of-every-call), `Decode` when the body is not the keys.
    pub async fn list_compute_keys(&self, id: &ResourceId) -> Result<ComputeKeys, AzureError> {
        expect_compute(id)?;
        let url = self.resource_url(id, "/listKeys", MLS_API_VERSION, &[]);
        let req = Request::new("compute.list_keys", Method::POST, url);
        self.transport().send(req).await?.json()
    }
}

/// Maps a DELETE answer: an operation to poll, or done (200/204, or 404: already gone).
pub(crate) fn delete_outcome(
    result: Result<Response, AzureError>,
    kind: OperationKind,
) -> Result<LroStart<()>, AzureError> {
    match result {
        Ok(resp) => {
            if let Some(handle) = handle_from_response(kind, &resp) {
                return Ok(LroStart::Started(handle));
            }
            if resp.status.as_u16() == 202 {
                // Accepted without a status URL: nothing to poll; the caller observes
                // completion with a GET returning 404.
                tracing::debug!(
                    operation = resp.operation,
                    "DELETE accepted without an operation URL"
                );
            }
            Ok(LroStart::Done(()))
        }
        Err(e) if e.is_not_found() => Ok(LroStart::Done(())),
        Err(e) => Err(e),
    }
}
