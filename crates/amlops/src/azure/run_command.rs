//! AKS Run Command and the AKS Entra ID token: how the operator reaches a cluster's
//! Kubernetes API when a kubeconfig alone does not.
//!
//! - `POST managedClusters/{name}/runCommand` runs a command in a pod on the cluster, through
//!   ARM: the one way in when the API server is private and unreachable from where the
//!   operator runs. Azure answers 202 with a `Location` of `commandResults/{id}` (or 200 with
//!   the result at once); `GET commandResults/{id}` answers 202 while the command runs, then
//!   200 with `exitCode` and `logs`.
//! - Clusters with local accounts disabled (Entra ID only) refuse
//!   `listClusterAdminCredential`, and their user kubeconfig runs `kubelogin`, which the
//!   operator's image does not ship. The API server accepts an Entra ID access token for the
//!   AKS server application instead (audience `6dae42f8-4368-4678-94ff-3960e28e3630`, the same
//!   application in every tenant and cloud): [`ArmClient::aks_entra_token`] gets one with the
//!   operator's own credential, for a kubeconfig's bearer token and for the Run Command's
//!   `clusterToken`.
//!
//! Command logs can hold secrets (the TLS backup reads `azuremlfessl` with it): they are
//! kept in [`CommandLogs`], whose `Debug` prints only their length.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use url::Url;

use super::config::Secret;
use super::error::AzureError;
use super::http::{Request, Response};
use super::resource_id::{AKS_NAMESPACE, ResourceId};
use super::{AKS_API_VERSION, ArmClient, retry};

/// Application (client) id of the "Azure Kubernetes Service AAD Server" application: the
/// audience of tokens an Entra-ID-enabled AKS API server accepts (what `kubelogin
/// --server-id` asks for).
pub const AKS_AAD_SERVER_APP_ID: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";

/// Output of a command; may hold secrets. `Debug` prints only the length.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct CommandLogs(String);

impl CommandLogs {
    /// The output. Parse it; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CommandLogs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes of command output>", self.0.len())
    }
}

/// `properties` of a finished command (`RunCommandResult` in the AKS API).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CommandResult {
    /// `Succeeded`, `Failed`, … (Azure's own value).
    #[serde(default)]
    pub provisioning_state: Option<String>,
    /// Exit code of the command.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Standard output and error, interleaved.
    #[serde(default)]
    pub logs: CommandLogs,
    /// Why the command could not run (set with `Failed`).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Deserialize)]
struct ResultBody {
    #[serde(default)]
    properties: CommandResult,
}

/// Where a command is.
#[derive(Clone, Debug, PartialEq)]
pub enum CommandPoll {
    /// Still running: ask `location` again after `retry_after` (Azure's `Retry-After`).
    Running {
        /// The `commandResults/{id}` URL.
        location: Url,
        /// Azure's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Finished (successfully or not: see `exit_code` and `provisioning_state`).
    Finished(CommandResult),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RunCommandRequest<'a> {
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_token: Option<&'a str>,
}

impl ArmClient {
    /// An Entra ID access token for the AKS API server application
    /// ([`AKS_AAD_SERVER_APP_ID`]), from the operator's own credential: the bearer token
    /// of an Entra-ID-only cluster's API server and the Run Command's `clusterToken`.
    /// The identity needs a Kubernetes role on the cluster (Azure RBAC for Kubernetes, e.g.
    /// "Azure Kubernetes Service RBAC Reader" on the `azureml` namespace, or a RoleBinding).
    ///
    /// # Errors
    /// [`AzureError::Credential`] when no token can be had.
    pub async fn aks_entra_token(&self) -> Result<Secret, AzureError> {
        self.aks_tokens().token().await
    }

    /// `POST …/managedClusters/{name}/runCommand`: starts `command` (e.g. `kubectl get secret
    /// azuremlfessl -n default -o json`) on the cluster. `cluster_token` is required by
    /// clusters with Entra ID integration ([`Self::aks_entra_token`]).
    ///
    /// # Errors
    /// The usual [`AzureError`]s; 404 when the cluster does not exist.
    pub async fn run_command(
        &self,
        cluster: &ResourceId,
        command: &str,
        cluster_token: Option<&Secret>,
    ) -> Result<CommandPoll, AzureError> {
        cluster.expect_type(AKS_NAMESPACE, "managedClusters")?;
        let url = self.resource_url(cluster, "/runCommand", AKS_API_VERSION, &[]);
        let body = RunCommandRequest {
            command,
            cluster_token: cluster_token.map(Secret::expose),
        };
        let resp = self
            .transport()
            .send(Request::new("aks.run_command", Method::POST, url).json(&body)?)
            .await?;
        self.command_poll(resp)
    }

    /// `GET commandResults/{id}` at a `location` from [`CommandPoll::Running`]. The URL must
    /// be on the configured ARM endpoint.
    ///
    /// # Errors
    /// The usual [`AzureError`]s; 404 when Azure no longer knows the command.
    pub async fn command_result(&self, location: &Url) -> Result<CommandPoll, AzureError> {
        let url = self.transport().trusted_url(location.as_str())?;
        let resp = self
            .transport()
            .send(Request::get("aks.command_result", url))
            .await?;
        self.command_poll(resp)
    }

    fn command_poll(&self, resp: Response) -> Result<CommandPoll, AzureError> {
        if resp.status.as_u16() == 202 {
            let location = resp.header("location").ok_or_else(|| {
                AzureError::decode(resp.operation, "202 without a Location header")
            })?;
            return Ok(CommandPoll::Running {
                location: self.transport().trusted_url(location)?,
                retry_after: retry::retry_after(&resp.headers),
            });
        }
        let body: ResultBody = resp.json()?;
        Ok(CommandPoll::Finished(body.properties))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_never_print() {
        let r: CommandResult = serde_json::from_value(serde_json::json!({
            "provisioningState": "Succeeded", "exitCode": 0,
            "logs": "{\"data\": {\"key.pem\": \"c2VjcmV0\"}}"
        }))
        .unwrap();
        let shown = format!("{r:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(shown.contains("bytes of command output"));
        assert_eq!(r.exit_code, Some(0));
    }

    #[test]
    fn request_body_is_what_aks_expects() {
        let token = Secret::new("tok");
        let body = RunCommandRequest {
            command: "kubectl get ns",
            cluster_token: Some(token.expose()),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"command": "kubectl get ns", "clusterToken": "tok"})
        );
    }
}
