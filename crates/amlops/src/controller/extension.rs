//! The `AzureMLExtension` controller: the generic typed controller ([`super::typed`]) plus
//! what is this kind's own — its TLS Secret (a rotation wakes it), the `KubernetesCompute`s
//! that still use it (read only while it is being deleted: `InUse`), the engine
//! ([`crate::engine::azureml_extension`]) and its gauge phases and certificate expiry.

use std::sync::Arc;

use futures::{StreamExt, future};
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use crate::azure::ArmClient;
use crate::crd::{AzureMLExtension, AzureMlExtensionStatus, CredentialsRef, KubernetesCompute};
use crate::engine::azureml_extension::KIND;

use super::metrics::ResourceState;
use super::reconciler::ReconcileError;
use super::typed::{self, TypedCtx, TypedKind, TypedOutcome, condition_on};

impl TypedKind for AzureMLExtension {
    const KIND: &'static str = KIND;
    type Status = AzureMlExtensionStatus;

    fn status(&self) -> AzureMlExtensionStatus {
        self.status.clone().unwrap_or_default()
    }

    fn credentials_ref(&self) -> Option<&CredentialsRef> {
        self.spec.credentials_ref.as_ref()
    }

    fn secret_names(&self) -> Vec<&str> {
        let credentials = self.spec.credentials_ref.as_ref().map(|r| r.name.as_str());
        let tls = self
            .spec
            .inference
            .tls
            .as_ref()
            .and_then(|t| t.secret_ref.as_ref())
            .map(|r| r.name.as_str());
        credentials.into_iter().chain(tls).collect()
    }

    fn reached_azure(status: &AzureMlExtensionStatus) -> bool {
        status.extension_id.is_some()
    }

    /// `phase` label: `Stalled`, `Deleting`, `Ready`, `Installing` while an Azure operation
    /// runs, else `Pending`; the certificate's expiry for
    /// `amlops_tls_certificate_expiry_timestamp_seconds`.
    fn subscription(&self) -> Option<String> {
        self.spec
            .cluster
            .resource_id
            .parse::<crate::azure::ResourceId>()
            .ok()
            .map(|id| id.subscription().to_string())
    }

    fn resource_state(&self) -> ResourceState {
        let st = self.status.as_ref();
        let on = |t| st.is_some_and(|s| condition_on(&s.conditions, t));
        let operation = st.and_then(|s| s.operation.as_ref());
        let phase = if on("Stalled") {
            "Stalled"
        } else if self.meta().deletion_timestamp.is_some() {
            "Deleting"
        } else if on("Ready") {
            "Ready"
        } else if operation.is_some() {
            "Installing"
        } else {
            "Pending"
        };
        ResourceState {
            phase: phase.into(),
            inflight: operation.is_some(),
            tls_not_after: st
                .and_then(|s| s.tls.as_ref())
                .and_then(|t| t.not_after.as_deref())
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| t.as_second()),
        }
    }

    async fn reconcile(
        &self,
        ctx: &TypedCtx,
        arm: ArmClient,
    ) -> Result<TypedOutcome, ReconcileError> {
        let ns = self.namespace().unwrap_or_default();
        let name = self.name_any();
        // Who still uses it matters only to its deletion: listed then, not on every resync.
        let in_use = if self.meta().deletion_timestamp.is_some() {
            Api::<KubernetesCompute>::namespaced(ctx.shared.client.clone(), &ns)
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|kc| {
                    kc.spec
                        .extension_ref
                        .as_ref()
                        .is_some_and(|r| r.name == name)
                })
                .map(|kc| kc.name_any())
                .collect()
        } else {
            Vec::new()
        };
        let engine = ctx.engine(arm);
        let desired = engine.extension_desired(self, in_use).await;
        let out = engine.reconcile_extension(&desired, self.status()).await?;
        Ok(TypedOutcome::new(
            &out.status.conditions,
            out.requeue,
            out.finished,
            out.verdict,
        ))
    }
}

/// Runs the `AzureMLExtension` controller until `term` turns true.
pub async fn run(
    ctx: Arc<TypedCtx>,
    namespace: Option<String>,
    concurrency: u16,
    term: watch::Receiver<bool>,
) {
    let ns = namespace.as_deref();
    let w = typed::controller::<AzureMLExtension>(&ctx, ns);
    // A compute that goes wakes the extension it names: one being deleted waits for its last
    // compute (`InUse`). Only that: a compute's other changes (its own status saves, several
    // per attach) would each cost the extension a reconcile and an ARM read for nothing.
    let computes = watcher(
        typed::api::<DeserializeGuard<KubernetesCompute>>(&ctx.shared.client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .filter_map(|event| future::ready(going(event)));
    let c = w.controller.watches_stream(computes, |kc| {
        let ns = kc.namespace().unwrap_or_default();
        kc.0.as_ref()
            .ok()
            .and_then(|k| k.spec.extension_ref.as_ref())
            .map(|r| ObjectRef::new(&r.name).within(&ns))
    });
    typed::drive(c, w.cache, ctx, concurrency, term).await;
}

/// The compute of a watch event that the extension it names must hear of: one deleted, or
/// being deleted (`deletionTimestamp`, while our finalizer holds it). Errors pass through.
fn going<K: Resource>(
    event: Result<watcher::Event<K>, watcher::Error>,
) -> Option<Result<K, watcher::Error>> {
    match event {
        Ok(watcher::Event::Delete(k)) => Some(Ok(k)),
        Ok(watcher::Event::Apply(k)) if k.meta().deletion_timestamp.is_some() => Some(Ok(k)),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn only_a_compute_that_goes_wakes_its_extension() {
        let live = ConfigMap::default();
        let mut deleting = ConfigMap::default();
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        let wakes = |e: watcher::Event<ConfigMap>| going(Ok(e)).is_some();
        assert!(wakes(watcher::Event::Delete(live.clone())));
        assert!(wakes(watcher::Event::Apply(deleting.clone())));
        assert!(!wakes(watcher::Event::Apply(live.clone())), "a status save");
        assert!(!wakes(watcher::Event::InitApply(deleting)), "a re-list");
        assert!(!wakes(watcher::Event::Init));
        assert!(!wakes(watcher::Event::InitDone));
        assert!(going::<ConfigMap>(Err(watcher::Error::NoResourceVersion)).is_some());
    }
}
