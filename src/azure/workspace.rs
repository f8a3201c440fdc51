//! Azure ML workspace lookup.

use super::error::AzureError;
use super::model::Workspace;
use super::resource_id::{MLS_NAMESPACE, ResourceId};
use super::{ArmClient, MLS_API_VERSION};

impl ArmClient {
    /// GET a workspace; `Ok(None)` when it does not exist (report `WorkspaceNotFound`
    /// rather than a failed create). Its `location` is the `location` of compute bodies.
    pub async fn get_workspace(&self, id: &ResourceId) -> Result<Option<Workspace>, AzureError> {
        id.expect_type(MLS_NAMESPACE, "workspaces")?;
        let url = self.resource_url(id, "", MLS_API_VERSION, &[]);
        self.get_optional("workspace.get", url).await
    }
}
