//! Configuration of the ARM client: which cloud, which credential, timeouts, retries and
//! client-side rate limits. Every field has a default that is safe for production.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::error::AzureError;

/// A secret string (client secret, static token, TLS key or certificate).
///
/// `Debug` and `Display` print `<redacted>`, so a secret can sit inside any struct that
/// derives `Debug` without leaking into logs or error messages. Serialisation is transparent
/// because request bodies (e.g. `sslConfiguration.key`) must carry the real value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Call only where the value is sent to its destination.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// The Azure cloud to talk to: decides the ARM endpoint and the token audience.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AzureCloud {
    /// Azure public cloud (`management.azure.com`).
    #[default]
    Public,
    /// Azure US Government (`management.usgovcloudapi.net`).
    UsGov,
    /// Azure operated by 21Vianet (`management.chinacloudapi.cn`).
    China,
    /// Any other ARM endpoint: Azure Stack, or the amlops emulator.
    Custom {
        /// Base URL of ARM, e.g. `http://127.0.0.1:8443`.
        arm_endpoint: Url,
        /// Token audience; the scope requested is `{audience}/.default`.
        audience: String,
    },
}

impl AzureCloud {
    /// A custom cloud whose token audience is its own endpoint (what the emulator expects).
    pub fn custom(arm_endpoint: Url) -> Self {
        let audience = arm_endpoint.as_str().trim_end_matches('/').to_owned();
        Self::Custom {
            arm_endpoint,
            audience,
        }
    }

    /// Base URL of the Resource Manager endpoint.
    pub fn arm_endpoint(&self) -> Url {
        let known = |s: &str| Url::parse(s).expect("static URL is valid");
        match self {
            Self::Public => known("https://management.azure.com/"),
            Self::UsGov => known("https://management.usgovcloudapi.net/"),
            Self::China => known("https://management.chinacloudapi.cn/"),
            Self::Custom { arm_endpoint, .. } => arm_endpoint.clone(),
        }
    }

    /// OAuth scope to request tokens for.
    pub fn token_scope(&self) -> String {
        match self {
            Self::Public => "https://management.azure.com/.default".to_owned(),
            Self::UsGov => "https://management.usgovcloudapi.net/.default".to_owned(),
            Self::China => "https://management.chinacloudapi.cn/.default".to_owned(),
            Self::Custom { audience, .. } => {
                format!("{}/.default", audience.trim_end_matches('/'))
            }
        }
    }

    /// Parses `public`, `usgov`, `china` (case-insensitive) or an `http(s)://` URL (custom).
    pub fn parse(value: &str) -> Result<Self, AzureError> {
        match value.to_ascii_lowercase().as_str() {
            "public" | "azurepublic" | "azurecloud" => Ok(Self::Public),
            "usgov" | "azureusgovernment" | "usgovernment" => Ok(Self::UsGov),
            "china" | "azurechina" | "azurechinacloud" => Ok(Self::China),
            _ => {
                let url = Url::parse(value).map_err(|e| {
                    AzureError::Config(format!(
                        "ARM endpoint is neither a cloud name nor a URL: {e}"
                    ))
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(AzureError::Config(
                        "ARM endpoint must use http or https".to_owned(),
                    ));
                }
                Ok(Self::custom(url))
            }
        }
    }
}

/// How the operator authenticates to Azure. Chosen explicitly: there is no hidden fallback
/// chain, so a misconfiguration fails loudly instead of silently using another identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialConfig {
    /// Entra Workload Identity (default in-cluster). `None` fields come from the environment
    /// the workload-identity webhook injects: `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity {
        /// Overrides `AZURE_CLIENT_ID`.
        client_id: Option<String>,
        /// Overrides `AZURE_TENANT_ID`.
        tenant_id: Option<String>,
        /// Overrides `AZURE_FEDERATED_TOKEN_FILE`.
        token_file: Option<PathBuf>,
    },
    /// Managed identity: system-assigned when `client_id` is `None`, else user-assigned.
    ManagedIdentity {
        /// Client id of a user-assigned identity.
        client_id: Option<String>,
    },
    /// A service principal with a client secret.
    ClientSecret {
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// The client secret; never printed.
        secret: Secret,
    },
    /// The identity logged in to the Azure CLI (local development only).
    AzureCli,
    /// A fixed bearer token (the emulator, tests).
    StaticToken(Secret),
}

impl Default for CredentialConfig {
    fn default() -> Self {
        Self::WorkloadIdentity {
            client_id: None,
            tenant_id: None,
            token_file: None,
        }
    }
}

impl CredentialConfig {
    /// Short static name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::WorkloadIdentity { .. } => "workload-identity",
            Self::ManagedIdentity { .. } => "managed-identity",
            Self::ClientSecret { .. } => "client-secret",
            Self::AzureCli => "azure-cli",
            Self::StaticToken(_) => "static-token",
        }
    }
}

/// Timeouts applied to every HTTP attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS connect timeout.
    pub connect: Duration,
    /// Whole attempt (connect, send, receive body).
    pub request: Duration,
    /// Time allowed to obtain a token from the credential.
    pub token: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
            token: Duration::from_secs(30),
        }
    }
}

/// Retry policy for transient failures (408, 429, 500, 502, 503, 504, connection errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retries).
    pub max_retries: u32,
    /// Upper bound of the first backoff interval; doubles on each retry.
    pub initial_backoff: Duration,
    /// Cap of one backoff interval.
    pub max_backoff: Duration,
    /// Give up once this much time has been spent in one call, including waits. A reconcile
    /// must not block for long: when Azure asks to wait longer, the error carries
    /// `retry_after()` so the caller can requeue instead.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            max_total: Duration::from_secs(30),
        }
    }
}

/// A token bucket: `per_hour` sustained rate, `burst` tokens available at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketConfig {
    /// Sustained requests per hour.
    pub per_hour: u32,
    /// Bucket size.
    pub burst: u32,
}

/// Client-side rate limits, per subscription. ARM allows roughly 12,000 reads and 1,200
/// writes per hour per subscription and principal; the defaults keep well below that so
/// that other tools sharing the principal still have room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// GET requests (including LRO polls).
    pub reads: BucketConfig,
    /// PUT, PATCH, POST, DELETE.
    pub writes: BucketConfig,
    /// Longest a request waits for a token; beyond it the call fails at once with a
    /// `Throttled` error whose `retry_after()` says when to come back, so a reconcile
    /// worker is never parked for minutes.
    pub max_wait: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            reads: BucketConfig {
                per_hour: 6_000,
                burst: 50,
            },
            writes: BucketConfig {
                per_hour: 600,
                burst: 10,
            },
            max_wait: Duration::from_secs(30),
        }
    }
}

/// Everything needed to build an [`ArmClient`](super::ArmClient).
#[derive(Clone, Debug)]
pub struct ArmClientConfig {
    /// Cloud (ARM endpoint + token audience).
    pub cloud: AzureCloud,
    /// Credential to use.
    pub credential: CredentialConfig,
    /// Per-attempt timeouts.
    pub timeouts: Timeouts,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Per-subscription client-side rate limits.
    pub rate_limits: RateLimitConfig,
    /// Poll interval for a running LRO when Azure sent no `Retry-After` (Azure's documented
    /// default is 60 s).
    pub default_poll_interval: Duration,
    /// How long the VM size catalogue of a (subscription, location) is cached.
    pub sku_cache_ttl: Duration,
}

impl ArmClientConfig {
    /// A configuration with default timeouts, retries and limits.
    pub fn new(cloud: AzureCloud, credential: CredentialConfig) -> Self {
        Self {
            cloud,
            credential,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            rate_limits: RateLimitConfig::default(),
            default_poll_interval: Duration::from_secs(60),
            sku_cache_ttl: Duration::from_secs(6 * 3600),
        }
    }
}

impl Default for ArmClientConfig {
    fn default() -> Self {
        Self::new(AzureCloud::default(), CredentialConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clouds_map_to_endpoints_and_scopes() {
        let cases = [
            (
                AzureCloud::Public,
                "https://management.azure.com/",
                "https://management.azure.com/.default",
            ),
            (
                AzureCloud::UsGov,
                "https://management.usgovcloudapi.net/",
                "https://management.usgovcloudapi.net/.default",
            ),
            (
                AzureCloud::China,
                "https://management.chinacloudapi.cn/",
                "https://management.chinacloudapi.cn/.default",
            ),
            (
                AzureCloud::Custom {
                    arm_endpoint: Url::parse("https://arm.local:8443").unwrap(),
                    audience: "https://management.core.local/".into(),
                },
                "https://arm.local:8443/",
                "https://management.core.local/.default",
            ),
        ];
        for (cloud, endpoint, scope) in cases {
            assert_eq!(cloud.arm_endpoint().as_str(), endpoint);
            assert_eq!(cloud.token_scope(), scope);
        }
    }

    #[test]
    fn parse_cloud() {
        assert_eq!(AzureCloud::parse("Public").unwrap(), AzureCloud::Public);
        assert_eq!(AzureCloud::parse("usgov").unwrap(), AzureCloud::UsGov);
        assert_eq!(AzureCloud::parse("CHINA").unwrap(), AzureCloud::China);
        let custom = AzureCloud::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(custom.token_scope(), "http://127.0.0.1:9000/.default");
        assert!(AzureCloud::parse("ftp://x").is_err());
        assert!(AzureCloud::parse("nonsense").is_err());
    }

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        let c = CredentialConfig::ClientSecret {
            tenant_id: "t".into(),
            client_id: "c".into(),
            secret: s.clone(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"hunter2\"");
    }
}
