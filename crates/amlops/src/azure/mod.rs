//! Azure Resource Manager client for the operator.
//!
//! [`ArmClient`] is cheap to clone (an `Arc` inside) and speaks to ARM over one shared
//! `reqwest` client. Every call gets a bearer token from an explicit credential
//! ([`CredentialConfig`]), an `x-ms-client-request-id`, timeouts, retries of transient
//! failures honouring `Retry-After`, and a slot from a per-subscription read/write rate
//! limiter. Errors are [`AzureError`]s with a static [`ErrorCategory`]; secrets (tokens,
//! client secrets, TLS keys, kubeconfigs) never appear in `Debug`, `Display` or logs.
//!
//! Long-running operations are data: a PUT or DELETE returns [`LroStart::Started`] with an
//! [`OperationHandle`] that the engine stores in the CR status and hands to
//! [`ArmClient::poll`] on a later reconcile — it never waits for Azure.
//!
//! ```no_run
//! use amlops::azure::{
//!     ArmClient, ArmClientConfig, AzureCloud, CredentialConfig, LroStart, OperationKind,
//!     OperationStatus, ResourceId,
//!     model::{AksCompute, AksComputeResource, AksProperties, ClusterPurpose},
//! };
//!
//! # async fn demo() -> Result<(), amlops::azure::AzureError> {
//! let config = ArmClientConfig::new(
//!     AzureCloud::Public,
//!     CredentialConfig::ManagedIdentity { client_id: None },
//! );
//! let arm = ArmClient::new(config)?;
//!
//! let sub = "00000000-0000-0000-0000-000000000000";
//! let ws = ResourceId::workspace(sub, "ml-rg", "ml-ws")?;
//! let workspace = arm.get_workspace(&ws).await?.expect("workspace exists");
//! let compute = ResourceId::compute(sub, "ml-rg", "ml-ws", "prodaks")?;
//!
//! if arm.get_compute(&compute).await?.is_none() {
//!     let body = AksComputeResource::aks(
//!         workspace.location.clone().unwrap_or_default(),
//!         AksCompute {
//!             compute_location: workspace.location.clone(),
//!             properties: Some(AksProperties {
//!                 agent_count: Some(3),
//!                 agent_vm_size: Some("Standard_D3_v2".into()),
//!                 cluster_purpose: Some(ClusterPurpose::FastProd),
//!                 ..Default::default()
//!             }),
//!             ..Default::default()
//!         },
//!     );
//!     match arm.put_compute(&compute, &body, OperationKind::Create).await? {
//!         // Store `handle` in the CR status; poll it on the next reconcile.
//!         LroStart::Started(handle) => match arm.poll(&handle).await? {
//!             OperationStatus::InProgress { retry_after } => { /* requeue after it */ }
//!             OperationStatus::Succeeded => {}
//!             failed => return Err(failed.error(handle.kind).expect("terminal failure")),
//!         },
//!         LroStart::Done(resource) => println!("{:?}", resource.provisioning_state()),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Operations: workspace [`get_workspace`](ArmClient::get_workspace); compute
//! [`get_compute`](ArmClient::get_compute), [`put_compute`](ArmClient::put_compute),
//! [`delete_compute`](ArmClient::delete_compute), [`list_computes`](ArmClient::list_computes),
//! [`list_compute_keys`](ArmClient::list_compute_keys); AKS
//! [`get_managed_cluster`](ArmClient::get_managed_cluster),
//! [`list_cluster_user_credential`](ArmClient::list_cluster_user_credential),
//! [`list_cluster_admin_credential`](ArmClient::list_cluster_admin_credential),
//! [`get_agent_pool`](ArmClient::get_agent_pool), [`put_agent_pool`](ArmClient::put_agent_pool),
//! [`scale_agent_pool`](ArmClient::scale_agent_pool),
//! [`delete_managed_cluster`](ArmClient::delete_managed_cluster),
//! [`list_kubernetes_versions`](ArmClient::list_kubernetes_versions),
//! [`run_command`](ArmClient::run_command) and
//! [`command_result`](ArmClient::command_result) (private clusters),
//! [`aks_entra_token`](ArmClient::aks_entra_token) (Entra-ID-only clusters); cluster extensions
//! [`get_extension`](ArmClient::get_extension), [`create_extension`](ArmClient::create_extension),
//! [`update_extension`](ArmClient::update_extension),
//! [`delete_extension`](ArmClient::delete_extension), [`list_extensions`](ArmClient::list_extensions),
//! [`extension_operation`](ArmClient::extension_operation) (the Azure ML extension body:
//! [`azureml_extension::AzureMlExtensionSpec`]); provider registration
//! [`get_provider_registration`](ArmClient::get_provider_registration); `Kubernetes` computes
//! [`attach_kubernetes_compute`](ArmClient::attach_kubernetes_compute),
//! [`get_kubernetes_compute`](ArmClient::get_kubernetes_compute),
//! [`detach_kubernetes_compute`](ArmClient::detach_kubernetes_compute),
//! [`list_kubernetes_computes`](ArmClient::list_kubernetes_computes); VM sizes
//! [`list_vm_skus`](ArmClient::list_vm_skus) and [`vm_vcpus`](ArmClient::vm_vcpus) (cached
//! per subscription and location); operations [`poll`](ArmClient::poll) and
//! [`wait_for`](ArmClient::wait_for) (CLI use); quota
//! [`remaining_quota`](ArmClient::remaining_quota).
//!
//! Retries: 408/429/500/502/503/504 and connection failures are retried with capped
//! exponential backoff and full jitter, or after the wait Azure asked for, within
//! [`RetryPolicy::max_total`]. A compute PUT is the exception: Azure's create is not
//! idempotent, so failures after which Azure may have acted (500/502/504, timeouts,
//! dropped connections) are returned to the caller to re-observe instead.

mod aks;
pub mod auth;
pub mod azureml_extension;
mod compute;
pub mod config;
pub mod error;
mod extension;
mod http;
mod kubernetes_compute;
pub mod lro;
pub mod metrics;
pub mod model;
pub mod ratelimit;
pub mod resource_id;
pub mod retry;
pub mod run_command;
mod skus;
mod workspace;

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use serde::de::DeserializeOwned;
use url::Url;

pub use auth::{StaticTokenCredential, build_credential};
pub use compute::UnderlyingResourceAction;
pub use config::{
    ArmBucket, ArmClientConfig, ArmLimits, ArmThrottling, AzureCloud, CredentialConfig,
    RateLimitConfig, RetryPolicy, Secret, ThrottlingModel, Timeouts,
};
pub use error::{ApiError, AzureError, ErrorCategory};
pub use extension::{
    ARC_NAMESPACE, ExtensionId, KUBERNETES_CONFIGURATION_API_VERSION,
    KUBERNETES_CONFIGURATION_NAMESPACE, RESOURCES_API_VERSION,
};
pub use http::USER_AGENT;
pub use lro::{LroStart, LroStyle, OperationHandle, OperationKind, OperationStatus};
pub use metrics::{ArmObserver, Attempt, NoopObserver, StatusClass};
pub use model::KubeconfigSecret;
pub use ratelimit::{BucketLevel, QuotaObservation, RequestClass};
pub use resource_id::ResourceId;

use auth::TokenProvider;
use http::{Request, Transport};
use ratelimit::RateLimiter;

/// api-version of `Microsoft.MachineLearningServices` (workspaces, computes).
pub const MLS_API_VERSION: &str = "2025-09-01";
/// api-version of `Microsoft.ContainerService` (managed clusters, agent pools, versions).
pub const AKS_API_VERSION: &str = "2025-10-01";
/// api-version of `Microsoft.Compute/skus`.
pub const SKUS_API_VERSION: &str = "2021-07-01";

/// Upper bound on pages followed by one list call (a guard against a `nextLink` loop).
const MAX_PAGES: usize = 500;

/// The ARM client. Clone it freely: clones share the HTTP pool, token cache, rate limiter
/// and SKU cache.
///
/// # Errors of every call
/// A call fails with one [`AzureError`], after [`RetryPolicy`]'s retries of 408, 429, 500,
/// 502, 503, 504 and connection failures (each method's `# Errors` adds what is its own):
/// - [`AzureError::Config`], before any request: an id of the wrong resource type, an
///   invalid subscription, location or name, a body that cannot be serialised, or a poll or
///   `nextLink` URL that is not on the configured endpoint;
/// - [`AzureError::Api`]: ARM's error status, Azure's `code` and message, and its
///   `Retry-After` ([`AzureError::retry_after`]); a 401 is retried once with a fresh token;
/// - [`AzureError::RateLimited`]: the client-side budget, or a 429 of the same subscription,
///   would hold the call longer than [`RateLimitConfig::max_wait`]; nothing was sent;
/// - [`AzureError::Timeout`], [`AzureError::Connection`]: no answer (the compute, Kubernetes
///   compute and extension PUT/PATCH return these and 500/502/504 at once: Azure may have
///   acted, so re-observe first);
/// - [`AzureError::Credential`]: no token;
/// - [`AzureError::Decode`]: a 2xx body of the wrong shape.
///
/// [`crate::engine::verdict::verdict`] turns any of them into retry (after `Retry-After`),
/// wait (409 / `OperationNotAllowed`) or a `Stalled` condition; [`AzureError::category`] is
/// the coarse class.
#[derive(Clone, Debug)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    /// Tokens for the AKS API server application (Entra-ID-only clusters, Run Command).
    aks_tokens: TokenProvider,
    default_poll_interval: Duration,
    skus: skus::SkuCache,
    /// Kubeconfigs of target clusters (lower-case cluster id → when fetched, kubeconfig).
    kubeconfigs: std::sync::Mutex<
        std::collections::HashMap<String, (std::time::Instant, model::KubeconfigSecret)>,
    >,
}

/// How long a cluster's kubeconfig is reused by [`ArmClient::cached_kubeconfig`]: each
/// fetch is an ARM POST (counted as a write), and an install, its instance types and the
/// computes of a cluster ask within minutes; a credential rotated meanwhile fails one
/// request and the next fetch after this long gets the new one.
pub const KUBECONFIG_TTL: Duration = Duration::from_secs(300);

/// Builder for an [`ArmClient`] with a custom credential or observer.
pub struct ArmClientBuilder {
    config: ArmClientConfig,
    credential: Option<Arc<dyn TokenCredential>>,
    observer: Option<Arc<dyn ArmObserver>>,
}

impl std::fmt::Debug for ArmClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClientBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ArmClientBuilder {
    /// Uses `credential` instead of building one from `config.credential`.
    pub fn credential(mut self, credential: Arc<dyn TokenCredential>) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Reports every HTTP attempt to `observer` (metrics).
    pub fn observer(mut self, observer: Arc<dyn ArmObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// `Credential` when no credential was supplied and [`build_credential`] cannot build the
    /// configured one; `Config` when the HTTP client cannot be built. No request is sent, so a
    /// wrong identity or role shows only on the first call.
    pub fn build(self) -> Result<ArmClient, AzureError> {
        let config = self.config;
        let credential = match self.credential {
            Some(c) => c,
            None => build_credential(&config.credential, &config.cloud)?,
        };
        let aks_tokens = TokenProvider::new(
            credential.clone(),
            config.credential.kind(),
            format!("{}/.default", run_command::AKS_AAD_SERVER_APP_ID),
            config.timeouts.token,
        );
        let tokens = TokenProvider::new(
            credential,
            config.credential.kind(),
            config.cloud.token_scope(),
            config.timeouts.token,
        );
        let transport = Transport::new(
            config.cloud.arm_endpoint(),
            tokens,
            RateLimiter::new(config.rate_limits.clone()),
            config.retry.clone(),
            config.timeouts.clone(),
            self.observer.unwrap_or_else(|| Arc::new(NoopObserver)),
        )?;
        Ok(ArmClient {
            inner: Arc::new(Inner {
                transport,
                aks_tokens,
                default_poll_interval: config.default_poll_interval,
                skus: skus::SkuCache::new(config.sku_cache_ttl),
                kubeconfigs: std::sync::Mutex::default(),
            }),
        })
    }
}

impl ArmClient {
    /// A client with the credential described by `config.credential`.
    ///
    /// # Errors
    /// As [`ArmClientBuilder::build`].
    pub fn new(config: ArmClientConfig) -> Result<Self, AzureError> {
        Self::builder(config).build()
    }

    /// A builder, to supply a credential or an observer.
    pub fn builder(config: ArmClientConfig) -> ArmClientBuilder {
        ArmClientBuilder {
            config,
            credential: None,
            observer: None,
        }
    }

    /// What ARM's `x-ms-ratelimit-remaining-subscription-*` headers said about
    /// `subscription`: the throttling model it is under and how full its buckets have been
    /// lately (to adapt the resync rate); `None` before any response.
    pub fn remaining_quota(&self, subscription: &str) -> Option<QuotaObservation> {
        self.inner.transport.limiter().observation(subscription)
    }

    /// The kubeconfig of `cluster` kept by [`Self::keep_kubeconfig`] less than
    /// [`KUBECONFIG_TTL`] ago.
    pub fn cached_kubeconfig(&self, cluster: &ResourceId) -> Option<model::KubeconfigSecret> {
        let map = self
            .inner
            .kubeconfigs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&cluster.to_string().to_ascii_lowercase())
            .filter(|(at, _)| at.elapsed() < KUBECONFIG_TTL)
            .map(|(_, k)| k.clone())
    }

    /// Keeps `kubeconfig` of `cluster` for [`Self::cached_kubeconfig`].
    pub fn keep_kubeconfig(&self, cluster: &ResourceId, kubeconfig: model::KubeconfigSecret) {
        let mut map = self
            .inner
            .kubeconfigs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, (at, _)| at.elapsed() < KUBECONFIG_TTL);
        map.insert(
            cluster.to_string().to_ascii_lowercase(),
            (std::time::Instant::now(), kubeconfig),
        );
    }

    /// The ARM endpoint this client talks to.
    pub fn endpoint(&self) -> &Url {
        self.transport().base()
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    pub(crate) fn aks_tokens(&self) -> &TokenProvider {
        &self.inner.aks_tokens
    }

    pub(crate) fn default_poll_interval(&self) -> Duration {
        self.inner.default_poll_interval
    }

    /// URL of a resource for an api-version.
    pub(crate) fn resource_url(
        &self,
        id: &ResourceId,
        suffix: &str,
        api_version: &str,
        query: &[(&str, &str)],
    ) -> Url {
        self.transport()
            .url(&format!("{id}{suffix}"), api_version, query)
    }

    /// GET of a resource; `Ok(None)` on 404.
    pub(crate) async fn get_optional<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        url: Url,
    ) -> Result<Option<T>, AzureError> {
        match self.transport().send(Request::get(operation, url)).await {
            Ok(resp) => resp.json().map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GETs every page of a list, following `nextLink`. Items that do not decode are
    /// skipped (a workspace may hold compute types this client does not model).
    pub(crate) async fn list_all<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        first: Url,
    ) -> Result<Vec<T>, AzureError> {
        Ok(self.list_all_pages(operation, first).await?.0)
    }

    /// [`Self::list_all`], and how many pages (ARM reads) it took.
    pub(crate) async fn list_all_pages<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        first: Url,
    ) -> Result<(Vec<T>, usize), AzureError> {
        let mut out = Vec::new();
        let mut next = Some(first);
        let mut seen = std::collections::HashSet::new();
        while let Some(url) = next.take() {
            if seen.len() >= MAX_PAGES || !seen.insert(url.to_string()) {
                return Err(AzureError::decode(
                    operation,
                    "list paging did not terminate (nextLink loop)",
                ));
            }
            let resp = self.transport().send(Request::get(operation, url)).await?;
            let page: model::Page<serde_json::Value> = resp.json()?;
            for item in page.value {
                match serde_json::from_value::<T>(item) {
                    Ok(v) => out.push(v),
                    Err(e) => tracing::debug!(operation, error = %e, "skipping list item"),
                }
            }
            next = match page.next_link.filter(|l| !l.is_empty()) {
                Some(link) => Some(self.transport().trusted_url(&link)?),
                None => None,
            };
        }
        Ok((out, seen.len()))
    }
}
