//! `--arm-endpoint` / `--azure-credential`: the Azure cloud and credential of the commands that
//! talk to ARM. Explicit: no hidden chain of credentials.

use anyhow::{Context, bail};

use crate::azure::{ArmClient, ArmClientConfig, AzureCloud, CredentialConfig, config::Secret};

/// `--arm-endpoint` / `--azure-credential` and their environment fallbacks.
#[derive(clap::Args, Debug, Clone)]
pub struct AzureArgs {
    /// ARM endpoint: `public`, `usgov`, `china`, or a URL (another cloud, or the emulator).
    #[arg(long, env = "AMLOPS_ARM_ENDPOINT", default_value = "public")]
    pub arm_endpoint: String,
    /// Credential: workload-identity, managed-identity, client-secret, azure-cli, static-token.
    #[arg(
        long,
        env = "AMLOPS_AZURE_CREDENTIAL",
        default_value = "workload-identity"
    )]
    pub azure_credential: String,
}

impl AzureArgs {
    /// The client configuration these arguments select. Identity details come from the
    /// standard variables (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_CLIENT_SECRET`,
    /// `AZURE_FEDERATED_TOKEN_FILE`) or, for `static-token`, `AMLOPS_ARM_TOKEN`.
    ///
    /// # Errors
    /// When `--arm-endpoint` is none of `public`, `usgov`, `china` and not a URL,
    /// `--azure-credential` is unknown, or a variable the credential needs here is unset or
    /// empty (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET` for `client-secret`;
    /// `AMLOPS_ARM_TOKEN` for `static-token`). Workload identity's variables are read by
    /// [`Self::client`].
    pub fn config(&self) -> anyhow::Result<ArmClientConfig> {
        // One parser for the flag and the library: cloud names case-insensitively, URLs
        // only over http(s).
        let cloud = AzureCloud::parse(&self.arm_endpoint)?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let credential = match self.azure_credential.as_str() {
            "workload-identity" => CredentialConfig::WorkloadIdentity {
                client_id: None,
                tenant_id: None,
                token_file: None,
            },
            "managed-identity" => CredentialConfig::ManagedIdentity {
                client_id: env("AZURE_CLIENT_ID"),
            },
            "client-secret" => CredentialConfig::ClientSecret {
                tenant_id: env("AZURE_TENANT_ID").context("AZURE_TENANT_ID is not set")?,
                client_id: env("AZURE_CLIENT_ID").context("AZURE_CLIENT_ID is not set")?,
                secret: Secret::new(
                    env("AZURE_CLIENT_SECRET").context("AZURE_CLIENT_SECRET is not set")?,
                ),
            },
            "azure-cli" => CredentialConfig::AzureCli,
            "static-token" => CredentialConfig::StaticToken(Secret::new(
                env("AMLOPS_ARM_TOKEN").context("AMLOPS_ARM_TOKEN is not set")?,
            )),
            other => bail!("unknown --azure-credential {other}"),
        };
        Ok(ArmClientConfig::new(cloud, credential))
    }

    /// An ARM client for these arguments.
    ///
    /// # Errors
    /// As [`Self::config`], and [`ArmClient::new`]'s: a credential azure_identity cannot build
    /// (e.g. workload identity without its variables).
    pub fn client(&self) -> anyhow::Result<ArmClient> {
        Ok(ArmClient::new(self.config()?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag takes what the library's parser takes: cloud names in any case, URLs only
    /// over http(s).
    #[test]
    fn arm_endpoint_flag_uses_the_clouds_parser() {
        let args = |endpoint: &str| AzureArgs {
            arm_endpoint: endpoint.into(),
            azure_credential: "azure-cli".into(),
        };
        let table = [
            ("public", Some(AzureCloud::Public)),
            ("Public", Some(AzureCloud::Public)),
            ("AzureUSGovernment", Some(AzureCloud::UsGov)),
            ("china", Some(AzureCloud::China)),
            ("ftp://example.com", None),
            ("not a url", None),
        ];
        for (endpoint, want) in table {
            let got = args(endpoint).config().ok().map(|c| c.cloud);
            assert_eq!(got, want, "{endpoint}");
        }
        let custom = args("http://127.0.0.1:8640").config().unwrap().cloud;
        assert!(matches!(custom, AzureCloud::Custom { .. }), "{custom:?}");
    }
}
