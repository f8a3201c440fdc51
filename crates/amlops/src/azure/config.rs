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
    ///
    /// # Errors
    /// [`AzureError::Config`] when `value` is neither a cloud name nor a URL, or a URL whose
    /// scheme is not `http` or `https`.
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

/// Which of ARM's two throttling models a subscription is under
/// (<https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling>).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ThrottlingModel {
    /// Since 2024 (Microsoft states that subscriptions have been migrated): per region, a
    /// token bucket per subscription, principal and operation type (reads 250 tokens refilled
    /// at 25 per second, writes and deletes 200 at 10 per second), plus a global subscription
    /// bucket 15 times one principal's. The remaining-requests headers report the bucket, and
    /// `x-ms-ratelimit-remaining-subscription-global-*` the global one.
    #[default]
    TokenBucket,
    /// The older model: 12,000 reads, 1,200 writes and 15,000 deletes per rolling hour per
    /// subscription and principal; the headers count down the hour.
    Hourly,
}

impl ThrottlingModel {
    /// Both models, in their flag spelling's order.
    pub const ALL: [Self; 2] = [Self::TokenBucket, Self::Hourly];

    /// `token-bucket` or `hourly` (the flag's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenBucket => "token-bucket",
            Self::Hourly => "hourly",
        }
    }
}

impl std::str::FromStr for ThrottlingModel {
    type Err = String;

    /// `token-bucket` or `hourly`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown throttling model {s:?}: token-bucket or hourly"))
    }
}

/// One of ARM's limits as a bucket: at most `size` requests at once, refilled at
/// `refill_per_second`. An hourly count is the bucket of its rolling hour (12,000 reads
/// refilled at 12,000 / 3,600 per second).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArmBucket {
    /// Tokens when full (requests that may be sent at once).
    pub size: f64,
    /// Tokens added per second.
    pub refill_per_second: f64,
}

impl ArmBucket {
    /// A bucket of `size` refilled at `refill_per_second`.
    pub const fn new(size: f64, refill_per_second: f64) -> Self {
        Self {
            size,
            refill_per_second,
        }
    }

    /// The older model's hourly count as a bucket.
    pub const fn per_hour(count: f64) -> Self {
        Self::new(count, count / 3600.0)
    }

    /// Seconds an empty bucket takes to refill (10 s for ARM's reads, an hour for an hourly
    /// count): a remaining-requests value older than that says nothing about now.
    pub fn refill_seconds(&self) -> f64 {
        if self.refill_per_second > 0.0 {
            self.size / self.refill_per_second
        } else {
            f64::INFINITY
        }
    }

    /// The same bucket on a clock running `time_scale` times faster (benchmarks).
    pub fn time_scaled(&self, time_scale: f64) -> Self {
        Self::new(self.size, self.refill_per_second * time_scale)
    }
}

/// ARM's limits per subscription and principal under one model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArmLimits {
    /// GET/HEAD.
    pub reads: ArmBucket,
    /// PUT, PATCH, POST.
    pub writes: ArmBucket,
    /// DELETE.
    pub deletes: ArmBucket,
    /// The global subscription limit (all principals together) as a multiple of one
    /// principal's: 15 under token buckets; 0 when the model has none.
    pub global_factor: f64,
}

impl ArmLimits {
    /// ARM's token buckets (2024 on): reads 250 at 25/s, writes and deletes 200 at 10/s,
    /// global 15× (same page as [`ThrottlingModel`]).
    pub const TOKEN_BUCKET: Self = Self {
        reads: ArmBucket::new(250.0, 25.0),
        writes: ArmBucket::new(200.0, 10.0),
        deletes: ArmBucket::new(200.0, 10.0),
        global_factor: 15.0,
    };
    /// ARM's older hourly counts: 12,000 reads, 1,200 writes, 15,000 deletes per hour (same
    /// page as [`ThrottlingModel`]).
    pub const HOURLY: Self = Self {
        reads: ArmBucket::per_hour(12_000.0),
        writes: ArmBucket::per_hour(1_200.0),
        deletes: ArmBucket::per_hour(15_000.0),
        global_factor: 0.0,
    };

    /// The bucket of a request class.
    pub fn of(&self, class: super::ratelimit::RequestClass) -> ArmBucket {
        use super::ratelimit::RequestClass;
        match class {
            RequestClass::Read => self.reads,
            RequestClass::Write => self.writes,
            RequestClass::Delete => self.deletes,
        }
    }

    /// The same limits on a clock running `time_scale` times faster (benchmarks).
    pub fn time_scaled(&self, time_scale: f64) -> Self {
        Self {
            reads: self.reads.time_scaled(time_scale),
            writes: self.writes.time_scaled(time_scale),
            deletes: self.deletes.time_scaled(time_scale),
            global_factor: self.global_factor,
        }
    }
}

/// ARM's figures under both models, and the one assumed until a subscription's headers tell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArmThrottling {
    /// Assumed for a subscription until ARM's headers show which model it is under.
    pub model: ThrottlingModel,
    /// The token-bucket figures.
    pub token_bucket: ArmLimits,
    /// The hourly figures.
    pub hourly: ArmLimits,
}

impl Default for ArmThrottling {
    fn default() -> Self {
        Self {
            model: ThrottlingModel::default(),
            token_bucket: ArmLimits::TOKEN_BUCKET,
            hourly: ArmLimits::HOURLY,
        }
    }
}

impl ArmThrottling {
    /// The figures of `model`.
    pub fn limits(&self, model: ThrottlingModel) -> &ArmLimits {
        match model {
            ThrottlingModel::TokenBucket => &self.token_bucket,
            ThrottlingModel::Hourly => &self.hourly,
        }
    }

    /// Both models' figures on a clock running `time_scale` times faster (benchmarks).
    pub fn time_scaled(&self, time_scale: f64) -> Self {
        Self {
            model: self.model,
            token_bucket: self.token_bucket.time_scaled(time_scale),
            hourly: self.hourly.time_scaled(time_scale),
        }
    }
}

/// Client-side rate limits, per subscription: the operator paces its own requests to a share
/// of ARM's limits under the model the subscription is under (learned from ARM's headers),
/// so that other tools sharing the principal still have room and the operator alone never
/// meets a 429.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimitConfig {
    /// ARM's limits under both models.
    pub arm: ArmThrottling,
    /// Share of each of ARM's limits the operator's own requests may use, in (0, 1]: its
    /// client-side buckets hold `share × size` tokens refilled at `share × refill`, so that
    /// by itself it never drains ARM's bucket below `(1 − share) × size`. `None`: no
    /// client-side pacing (tests and benchmarks that measure the operator's own speed).
    pub share: Option<f64>,
    /// Longest a request waits for a token; beyond it the call fails at once with a
    /// `Throttled` error whose `retry_after()` says when to come back, so a reconcile
    /// worker is never parked for minutes.
    pub max_wait: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            arm: ArmThrottling::default(),
            share: Some(0.5),
            max_wait: Duration::from_secs(30),
        }
    }
}

impl RateLimitConfig {
    /// No client-side pacing; the headers are still read.
    pub fn unpaced() -> Self {
        Self {
            share: None,
            ..Self::default()
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
    /// Poll interval for a running LRO when Azure sent no `Retry-After`. Default 60 s, the
    /// project's design (DESIGN §4; ARM's resource providers normally send `Retry-After`).
    /// Not a documented ARM default: the Azure SDKs choose 30 s (`DEFAULT_RETRY_TIME` of
    /// azure_core 1.x's `http/poller.rs`, `ARMPolling(timeout=30)` of azure-mgmt-core); the
    /// longer one spends half the reads of the subscription's budget on such polls.
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
