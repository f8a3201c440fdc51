//! Credentials: the real `azure_identity` types, chosen explicitly by [`CredentialConfig`],
//! plus a [`StaticTokenCredential`] for the emulator, and a small token cache.
//!
//! azure_identity caches tokens in its Entra-based credentials but `AzureCliCredential`
//! runs `az` on every call, so [`TokenProvider`] keeps the last token until shortly before
//! it expires, whatever the credential.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::time::OffsetDateTime;
use azure_identity::{
    AzureCliCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use super::config::{AzureCloud, CredentialConfig, Secret};
use super::error::AzureError;

/// Refresh a cached token this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Builds the credential described by `config` for `cloud`.
///
/// # Errors
/// [`AzureError::Credential`] (named by `config.kind()`) when azure_identity refuses the
/// configuration, e.g. workload identity without `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` or
/// `AZURE_FEDERATED_TOKEN_FILE`. No token is requested here: a wrong secret or a missing
/// role assignment only shows on the first call.
pub fn build_credential(
    config: &CredentialConfig,
    cloud: &AzureCloud,
) -> Result<Arc<dyn TokenCredential>, AzureError> {
    let fail = |e: azure_core::Error| AzureError::Credential {
        credential: config.kind(),
        reason: e.to_string(),
    };
    let client_options = || azure_core::http::ClientOptions {
        cloud: identity_cloud(cloud),
        ..Default::default()
    };
    let credential: Arc<dyn TokenCredential> = match config {
        CredentialConfig::WorkloadIdentity {
            client_id,
            tenant_id,
            token_file,
        } => WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
            credential_options: ClientAssertionCredentialOptions {
                client_options: client_options(),
            },
            client_id: client_id.clone(),
            tenant_id: tenant_id.clone(),
            token_file_path: token_file.clone(),
        }))
        .map_err(fail)?,
        CredentialConfig::ManagedIdentity { client_id } => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                ..Default::default()
            }))
            .map_err(fail)?
        }
        CredentialConfig::ClientSecret {
            tenant_id,
            client_id,
            secret,
        } => ClientSecretCredential::new(
            tenant_id,
            client_id.clone(),
            azure_core::credentials::Secret::new(secret.expose().to_owned()),
            Some(ClientSecretCredentialOptions {
                client_options: client_options(),
            }),
        )
        .map_err(fail)?,
        CredentialConfig::AzureCli => AzureCliCredential::new(None).map_err(fail)?,
        CredentialConfig::StaticToken(token) => Arc::new(StaticTokenCredential::new(token.clone())),
    };
    Ok(credential)
}

/// The Entra authority follows the cloud. For a custom cloud azure_identity falls back to
/// `AZURE_AUTHORITY_HOST` (or the public authority), which is what Azure Stack users set.
fn identity_cloud(cloud: &AzureCloud) -> Option<Arc<azure_core::cloud::CloudConfiguration>> {
    use azure_core::cloud::CloudConfiguration as C;
    match cloud {
        AzureCloud::Public => Some(Arc::new(C::AzurePublic)),
        AzureCloud::UsGov => Some(Arc::new(C::AzureGovernment)),
        AzureCloud::China => Some(Arc::new(C::AzureChina)),
        AzureCloud::Custom { .. } => None,
    }
}

/// A credential that always returns the same bearer token (emulator and tests). The
/// token is reported as valid for one hour from each call.
pub struct StaticTokenCredential {
    token: Secret,
}

impl StaticTokenCredential {
    /// Wraps `token`.
    pub fn new(token: Secret) -> Self {
        Self { token }
    }
}

impl fmt::Debug for StaticTokenCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokenCredential")
            .field("token", &self.token)
            .finish()
    }
}

// `TokenCredential` is declared with `#[async_trait]`; implementations use the same macro.
#[async_trait::async_trait]
impl TokenCredential for StaticTokenCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            self.token.expose().to_owned(),
            OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

/// Fetches tokens for one scope and caches the last one until `REFRESH_MARGIN` before its
/// expiry. Concurrent callers share a single refresh.
pub struct TokenProvider {
    credential: Arc<dyn TokenCredential>,
    kind: &'static str,
    scope: String,
    timeout: Duration,
    cached: tokio::sync::Mutex<Option<AccessToken>>,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("kind", &self.kind)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// A provider for `scope`; `kind` names the credential in errors.
    pub fn new(
        credential: Arc<dyn TokenCredential>,
        kind: &'static str,
        scope: String,
        timeout: Duration,
    ) -> Self {
        Self {
            credential,
            kind,
            scope,
            timeout,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// A valid bearer token.
    ///
    /// # Errors
    /// [`AzureError::Credential`] when the credential fails or gives no token within
    /// [`Timeouts::token`](super::Timeouts::token). Not retried: the ARM calls return it as is
    /// and the verdict stalls with `AuthorizationFailed`.
    pub async fn token(&self) -> Result<Secret, AzureError> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref() {
            let margin = azure_core::time::Duration::seconds(REFRESH_MARGIN.as_secs() as i64);
            if t.expires_on - margin > OffsetDateTime::now_utc() {
                return Ok(Secret::new(t.token.secret()));
            }
        }
        let scopes = [self.scope.as_str()];
        let fetch = self.credential.get_token(&scopes, None);
        let token = tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| AzureError::Credential {
                credential: self.kind,
                reason: format!("no token within {:?}", self.timeout),
            })?
            .map_err(|e| AzureError::Credential {
                credential: self.kind,
                reason: e.to_string(),
            })?;
        let secret = Secret::new(token.token.secret());
        *cached = Some(token);
        Ok(secret)
    }

    /// Drops the cached token (after a 401: it may have been revoked).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Counting {
        calls: AtomicUsize,
        ttl_secs: i64,
    }

    #[async_trait::async_trait]
    impl TokenCredential for Counting {
        async fn get_token(
            &self,
            _scopes: &[&str],
            _options: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(AccessToken::new(
                format!("tok{n}"),
                OffsetDateTime::now_utc() + azure_core::time::Duration::seconds(self.ttl_secs),
            ))
        }
    }

    #[tokio::test]
    async fn caches_until_near_expiry() {
        let long = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            ttl_secs: 3600,
        });
        let p = TokenProvider::new(long.clone(), "test", "s".into(), Duration::from_secs(1));
        assert_eq!(p.token().await.unwrap().expose(), "tok0");
        assert_eq!(p.token().await.unwrap().expose(), "tok0");
        assert_eq!(long.calls.load(Ordering::SeqCst), 1);
        p.invalidate().await;
        assert_eq!(p.token().await.unwrap().expose(), "tok1");

        // Expires within the refresh margin: fetched every time.
        let short = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            ttl_secs: 60,
        });
        let p = TokenProvider::new(short.clone(), "test", "s".into(), Duration::from_secs(1));
        p.token().await.unwrap();
        p.token().await.unwrap();
        assert_eq!(short.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn builds_every_credential_kind() {
        let cloud = AzureCloud::Public;
        let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        // WorkloadIdentityCredential reads the projected token file when it is built.
        let token_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(token_file.path(), "projected-sa-token").unwrap();
        let ok = [
            CredentialConfig::WorkloadIdentity {
                client_id: Some("c".into()),
                tenant_id: Some(tenant.into()),
                token_file: Some(token_file.path().to_path_buf()),
            },
            CredentialConfig::ManagedIdentity { client_id: None },
            CredentialConfig::ManagedIdentity {
                client_id: Some("0000".into()),
            },
            CredentialConfig::ClientSecret {
                tenant_id: tenant.into(),
                client_id: "c".into(),
                secret: Secret::new("s3cr3t-value"),
            },
            CredentialConfig::AzureCli,
            CredentialConfig::StaticToken(Secret::new("tok")),
        ];
        for c in ok {
            let cred = build_credential(&c, &cloud).unwrap_or_else(|e| panic!("{c:?}: {e}"));
            assert!(!format!("{cred:?}").contains("s3cr3t-value"));
        }
        // An empty secret is refused by azure_identity, and the error does not echo it.
        let bad = CredentialConfig::ClientSecret {
            tenant_id: tenant.into(),
            client_id: "c".into(),
            secret: Secret::new(""),
        };
        assert!(build_credential(&bad, &cloud).is_err());
    }

    #[tokio::test]
    async fn static_token() {
        let c = StaticTokenCredential::new(Secret::new("abc"));
        let t = c.get_token(&["x/.default"], None).await.unwrap();
        assert_eq!(t.token.secret(), "abc");
        assert!(!format!("{c:?}").contains("abc"));
    }
}
