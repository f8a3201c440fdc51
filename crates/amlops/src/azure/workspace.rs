//! Azure ML workspace lookup, and the workspaces of a subscription.

use super::aks::check_subscription;
use super::error::AzureError;
use super::model::Workspace;
use super::resource_id::{MLS_NAMESPACE, ResourceId};
use super::{ArmClient, MLS_API_VERSION};

impl ArmClient {
    /// GET a workspace; `Ok(None)` when it does not exist (report `WorkspaceNotFound`
    /// rather than a failed create). Its `location` is the `location` of compute bodies.
    ///
    /// # Errors
    /// `Config` before any request when `id` is not a `workspaces` id; otherwise the [usual
    /// failures](ArmClient#errors-of-every-call), `Decode` when the body is not a workspace. A 404
    /// is `Ok(None)`.
    pub async fn get_workspace(&self, id: &ResourceId) -> Result<Option<Workspace>, AzureError> {
        id.expect_type(MLS_NAMESPACE, "workspaces")?;
        let url = self.resource_url(id, "", MLS_API_VERSION, &[]);
        self.get_optional("workspace.get", url).await
    }

    /// Every workspace of `subscription` the identity can read (ARM lists only those):
    /// `GET /subscriptions/{s}/providers/Microsoft.MachineLearningServices/workspaces`
    /// (Workspaces_ListBySubscription), every page.
    ///
    /// # Errors
    /// An invalid subscription id, or the failed call.
    pub async fn list_workspaces(&self, subscription: &str) -> Result<Vec<Workspace>, AzureError> {
        check_subscription(subscription)?;
        let path = format!("/subscriptions/{subscription}/providers/{MLS_NAMESPACE}/workspaces");
        let url = self.transport().url(&path, MLS_API_VERSION, &[]);
        self.list_all("workspace.list", url).await
    }
}
