//! Which Azure identity a resource uses: the operator's own, or the service principal of
//! its `spec.credentialsRef` Secret — read in the resource's own namespace only, never
//! another's (a tenant must not borrow a neighbour's identity).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::ResourceExt;

use crate::azure::config::Secret;
use crate::azure::{ArmClient, ArmClientConfig, ArmObserver, CredentialConfig};
use crate::crd::CredentialsRef;
use crate::engine::KubeStore;
use crate::engine::verdict::Stall;

/// The Secret keys of a `credentialsRef`.
pub const KEYS: [&str; 3] = ["clientId", "clientSecret", "tenantId"];

/// ARM clients per identity; a rotated Secret (new resourceVersion) gets a new client.
pub struct Credentials {
    base: ArmClientConfig,
    default: ArmClient,
    observer: Arc<dyn ArmObserver>,
    cache: Mutex<HashMap<(String, String), (String, ArmClient)>>,
}

fn stall(reason: &'static str, message: String) -> Stall {
    Stall { reason, message }
}

fn key(secret: &KubeSecret, k: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(k))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(k).cloned()))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Refuses a `credentialsRef` naming another namespace than `ns`, the resource's own. The
/// CRD has no such field (and the API server prunes unknown fields): this guards objects
/// that reach us some other way, before any other check can mistake the reference for a
/// same-namespace one.
pub fn foreign_namespace(ns: &str, r: Option<&CredentialsRef>) -> Option<Stall> {
    let other = r?.namespace.as_deref()?;
    (other != ns).then(|| {
        stall(
            "CredentialsRefForbidden",
            format!(
                "credentialsRef points to namespace {other}: a resource may only use a Secret of its own namespace ({ns}); copy the Secret into {ns} and drop the namespace"
            ),
        )
    })
}

impl Credentials {
    /// `default` is the operator's own client; `base` (cloud, timeouts, limits) is reused
    /// for the per-resource ones.
    pub fn new(base: ArmClientConfig, default: ArmClient, observer: Arc<dyn ArmObserver>) -> Self {
        Self {
            base,
            default,
            observer,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The operator's own client.
    pub fn default_client(&self) -> &ArmClient {
        &self.default
    }

    /// The client last built from Secret `namespace/name`, whatever has become of the
    /// Secret since (kept in memory while the process runs).
    pub fn remembered(&self, namespace: &str, name: &str) -> Option<ArmClient> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_string(), name.to_string()))
            .map(|(_, c)| c.clone())
    }

    /// The ARM client of a resource in `ns` whose `credentialsRef` names the Secret `name`
    /// (`None`: the operator's own identity), built once per version of that Secret.
    ///
    /// # Errors
    /// `SecretNotFound` when the Secret is missing or lacks a key, `CredentialsRefInvalid`
    /// when no client can be built from it.
    pub async fn client_for_secret(
        &self,
        ns: &str,
        name: Option<&str>,
        store: &impl KubeStore,
    ) -> Result<ArmClient, Stall> {
        let Some(name) = name else {
            return Ok(self.default.clone());
        };
        let ns = ns.to_string();
        let secret = store
            .get_secret(&ns, name)
            .await
            .map_err(|e| stall("SecretNotFound", format!("credentialsRef {name}: {e}")))?
            .ok_or_else(|| {
                stall(
                    "SecretNotFound",
                    format!(
                        "credentialsRef: Secret {ns}/{name} does not exist: create it with keys clientId, clientSecret and tenantId"
                    ),
                )
            })?;
        let version = secret.resource_version().unwrap_or_default();
        let cache_key = (ns.clone(), name.to_string());
        if let Some((v, client)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
            && *v == version
        {
            return Ok(client.clone());
        }
        let missing: Vec<&str> = KEYS
            .into_iter()
            .filter(|k| key(&secret, k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(stall(
                "SecretNotFound",
                format!(
                    "credentialsRef: Secret {ns}/{name} lacks {}: it needs clientId, clientSecret and tenantId",
                    missing.join(", ")
                ),
            ));
        }
        let mut config = self.base.clone();
        config.credential = CredentialConfig::ClientSecret {
            tenant_id: key(&secret, "tenantId").unwrap_or_default(),
            client_id: key(&secret, "clientId").unwrap_or_default(),
            secret: Secret::new(key(&secret, "clientSecret").unwrap_or_default()),
        };
        let client = ArmClient::builder(config)
            .observer(self.observer.clone())
            .build()
            .map_err(|e| {
                stall(
                    "CredentialsRefInvalid",
                    format!("credentialsRef {ns}/{name}: {}", e.category().as_str()),
                )
            })?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cache_key, (version, client.clone()));
        Ok(client)
    }
}
