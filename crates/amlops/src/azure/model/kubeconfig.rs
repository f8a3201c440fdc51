//! Kubeconfigs returned by AKS `listClusterUserCredential`/`listClusterAdminCredential`
//! (base64) and by compute `listKeys` (plain YAML). They hold cluster credentials, so the
//! wrapper never prints its content and its errors never quote it.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Deserializer};

use crate::azure::error::AzureError;

/// A kubeconfig document (YAML). `Debug`/`Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct KubeconfigSecret(String);

impl KubeconfigSecret {
    /// Wraps a kubeconfig YAML document.
    pub fn new(yaml: impl Into<String>) -> Self {
        Self(yaml.into())
    }

    /// Decodes a base64 kubeconfig (the AKS credential format).
    ///
    /// # Errors
    /// [`AzureError::Decode`] (operation `kubeconfig`) when `value` is not base64 or not UTF-8;
    /// the message never quotes the value.
    pub fn from_base64(value: &str) -> Result<Self, AzureError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| AzureError::decode("kubeconfig", "the kubeconfig is not valid base64"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| AzureError::decode("kubeconfig", "the kubeconfig is not UTF-8"))?;
        Ok(Self(text))
    }

    /// The YAML. Call only where it is handed to a Kubernetes client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Parses the document as a kubeconfig. Parser messages are withheld from the error:
    /// they can quote values, and values here are credentials.
    ///
    /// # Errors
    /// [`AzureError::Decode`] when the document is not a kubeconfig (the parser's message is
    /// withheld).
    pub fn parse(&self) -> Result<kube::config::Kubeconfig, AzureError> {
        kube::config::Kubeconfig::from_yaml(&self.0).map_err(|_| {
            AzureError::decode(
                "kubeconfig",
                "the kubeconfig is not a valid kubeconfig document (details withheld: it holds credentials)",
            )
        })
    }

    /// A `kube::Config` for the kubeconfig's current context (or `context`).
    ///
    /// # Errors
    /// `Decode` as for [`Self::parse`]; [`AzureError::Config`] when the kubeconfig cannot be
    /// used (no current context, `context` or its cluster missing, no or invalid server URL, CA
    /// or client certificate unreadable), described without values.
    pub async fn to_kube_config(&self, context: Option<&str>) -> Result<kube::Config, AzureError> {
        let kubeconfig = self.parse()?;
        let options = kube::config::KubeConfigOptions {
            context: context.map(str::to_owned),
            ..Default::default()
        };
        kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| {
                // Loader errors name missing contexts/clusters/users, not secret values.
                AzureError::Config(format!("kubeconfig cannot be used: {}", kind_of(&e)))
            })
    }

    /// A `kube::Client` for the kubeconfig's current context (or `context`).
    ///
    /// # Errors
    /// As [`Self::to_kube_config`]; `Config` when kube cannot build a client from it.
    pub async fn client(&self, context: Option<&str>) -> Result<kube::Client, AzureError> {
        let config = self.to_kube_config(context).await?;
        kube::Client::try_from(config)
            .map_err(|e| AzureError::Config(format!("cannot build a Kubernetes client: {e}")))
    }
}

impl KubeconfigSecret {
    /// Whether the current context's user runs an exec plugin (`kubelogin` in the user
    /// kubeconfig of an AKS cluster with Entra ID integration) instead of holding a
    /// credential.
    pub fn uses_exec_plugin(&self) -> bool {
        let Ok(kc) = self.parse() else { return false };
        let user = kc
            .current_context
            .as_deref()
            .and_then(|name| kc.contexts.iter().find(|c| c.name == name))
            .and_then(|c| c.context.as_ref())
            .and_then(|c| c.user.clone());
        kc.auth_infos
            .iter()
            .find(|a| user.as_deref().is_none_or(|u| a.name == u))
            .and_then(|a| a.auth_info.as_ref())
            .is_some_and(|a| a.exec.is_some())
    }

    /// The `kube::Config` of [`Self::client_with_token`]: the kubeconfig's cluster, `token`
    /// as its only credential.
    ///
    /// # Errors
    /// As [`Self::to_kube_config`]: [`AzureError::Decode`] when the document is not a
    /// kubeconfig, [`AzureError::Config`] when it cannot be used.
    pub async fn config_with_token(
        &self,
        context: Option<&str>,
        token: &crate::azure::Secret,
    ) -> Result<kube::Config, AzureError> {
        let mut config = self.to_kube_config(context).await?;
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.expose().to_owned().into()),
            ..Default::default()
        };
        Ok(config)
    }

    /// A `kube::Client` for the kubeconfig's cluster (server, CA) that authenticates with
    /// the bearer `token` instead of the kubeconfig's user. For Entra-ID-only AKS clusters:
    /// their user kubeconfig runs `kubelogin`, an external binary the operator's image does
    /// not have; the API server accepts the operator's own Entra ID token for the AKS server
    /// application ([`crate::azure::ArmClient::aks_entra_token`]) instead.
    ///
    /// # Errors
    /// As [`Self::config_with_token`], and [`AzureError::Config`] when kube cannot build a
    /// client from it (no secret in the message).
    pub async fn client_with_token(
        &self,
        context: Option<&str>,
        token: &crate::azure::Secret,
    ) -> Result<kube::Client, AzureError> {
        let config = self.config_with_token(context, token).await?;
        kube::Client::try_from(config)
            .map_err(|e| AzureError::Config(format!("cannot build a Kubernetes client: {e}")))
    }
}

/// A coarse description of a kubeconfig loader error.
fn kind_of(e: &kube::config::KubeconfigError) -> String {
    use kube::config::KubeconfigError as E;
    match e {
        E::CurrentContextNotSet => "no current-context".to_owned(),
        E::LoadContext(name) => format!("context {name:?} not found"),
        E::LoadClusterOfContext(name) => format!("cluster {name:?} not found"),
        E::LoadCertificateAuthority(_) => "the cluster CA cannot be loaded".to_owned(),
        E::LoadClientCertificate(_) | E::LoadClientKey(_) => {
            "the client certificate or key cannot be loaded".to_owned()
        }
        E::MissingClusterUrl => "the cluster has no server URL".to_owned(),
        E::ParseClusterUrl(_) => "the cluster server URL is invalid".to_owned(),
        _ => "invalid kubeconfig (details withheld: it holds credentials)".to_owned(),
    }
}

impl fmt::Debug for KubeconfigSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KubeconfigSecret(<redacted>)")
    }
}

impl fmt::Display for KubeconfigSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Compute `listKeys` returns plain YAML; accept base64 too, in case a service version
/// encodes it like AKS does.
impl<'de> Deserialize<'de> for KubeconfigSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let looks_base64 = !s.trim().is_empty()
            && !s.contains(char::is_whitespace)
            && !s.contains(':')
            && s.len() % 4 == 0;
        if looks_base64 && let Ok(k) = Self::from_base64(&s) {
            return Ok(k);
        }
        Ok(Self(s))
    }
}

/// One kubeconfig of an AKS credential answer (`value` is base64).
#[derive(Clone, Debug, Deserialize)]
pub struct CredentialResult {
    /// Credential name (e.g. `clusterUser`).
    #[serde(default)]
    pub name: Option<String>,
    /// The kubeconfig.
    #[serde(default, deserialize_with = "base64_kubeconfig")]
    pub value: Option<KubeconfigSecret>,
}

/// AKS `listClusterUserCredential` / `listClusterAdminCredential` answer.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CredentialResults {
    /// The kubeconfigs.
    #[serde(default)]
    pub kubeconfigs: Vec<CredentialResult>,
}

fn base64_kubeconfig<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<KubeconfigSecret>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    value
        .map(|v| KubeconfigSecret::from_base64(&v).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_official_example() {
        let text = std::fs::read_to_string(
            "/work/shared/azure-specs/aks-2025-10-01/examples/ManagedClustersListClusterUserCredentials.json",
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let r: CredentialResults =
            serde_json::from_value(v["responses"]["200"]["body"].clone()).unwrap();
        let k = r.kubeconfigs[0].value.as_ref().unwrap();
        assert_eq!(k.expose(), "credentialValue1");
        assert!(!format!("{r:?}").contains("credentialValue1"));
    }

    #[test]
    fn invalid_base64_is_a_decode_error_without_content() {
        let e = KubeconfigSecret::from_base64("!!!not-base64-secretstuff").unwrap_err();
        assert!(!e.to_string().contains("secretstuff"));
        let bad = KubeconfigSecret::new(
            "apiVersion: v1\nusers: [{name: u, user: {token: [tok-secret-1]}}]",
        );
        let e = bad.parse().unwrap_err();
        assert!(!e.to_string().contains("tok-secret-1"), "{e}");
    }

    /// The user kubeconfig AKS returns for a cluster with Entra ID integration runs
    /// `kubelogin`; the operator replaces that user with its own bearer token, so the
    /// client it builds never needs the binary.
    #[tokio::test]
    async fn an_exec_plugin_user_is_replaced_by_a_bearer_token() {
        let cluster = "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n";
        let exec = KubeconfigSecret::new(format!(
            "apiVersion: v1\nkind: Config\n{cluster}users: [{{name: u, user: {{exec: {{apiVersion: client.authentication.k8s.io/v1beta1, command: kubelogin, args: [get-token, --server-id, 6dae42f8-4368-4678-94ff-3960e28e3630], interactiveMode: Never}}}}}}]"
        ));
        let token = KubeconfigSecret::new(format!(
            "apiVersion: v1\nkind: Config\n{cluster}users: [{{name: u, user: {{token: t}}}}]"
        ));
        assert!(exec.uses_exec_plugin());
        assert!(!token.uses_exec_plugin());
        // Without the replacement the exec plugin would be configured; with it, a token.
        let config = exec.to_kube_config(None).await.unwrap();
        assert!(config.auth_info.exec.is_some());
        let secret = crate::azure::Secret::new("entra-token");
        let replaced = exec.config_with_token(None, &secret).await.unwrap();
        assert!(replaced.auth_info.exec.is_none(), "kubelogin is never run");
        assert!(
            replaced.auth_info.token.is_some(),
            "the bearer token is the credential"
        );
        assert!(
            !format!("{replaced:?}").contains("entra-token"),
            "never printed"
        );
        assert_eq!(replaced.cluster_url, config.cluster_url);
        assert!(exec.client_with_token(None, &secret).await.is_ok());
    }
}
