//! The `KubernetesCompute` controller: the generic typed controller ([`super::typed`]) plus
//! what is this kind's own — `extensionRef` resolved through the `AzureMLExtension` (whose
//! appearance or change wakes the computes that name it), the engine
//! ([`crate::engine::kubernetes_compute`]) and its gauge phases.

use std::sync::Arc;

use kube::api::Api;
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use crate::azure::{ArmClient, OperationKind};
use crate::crd::{AzureMLExtension, CredentialsRef, KubernetesCompute, KubernetesComputeStatus};
use crate::engine::kubernetes_compute::{ComputeDesired, KIND};

use super::metrics::ResourceState;
use super::reconciler::ReconcileError;
use super::typed::{self, TypedCtx, TypedKind, TypedOutcome, condition_on};

impl TypedKind for KubernetesCompute {
    const KIND: &'static str = KIND;
    type Status = KubernetesComputeStatus;

    fn status(&self) -> KubernetesComputeStatus {
        self.status.clone().unwrap_or_default()
    }

    fn credentials_ref(&self) -> Option<&CredentialsRef> {
        self.spec.credentials_ref.as_ref()
    }

    fn secret_names(&self) -> Vec<&str> {
        self.credentials_ref()
            .map(|r| r.name.as_str())
            .into_iter()
            .collect()
    }

    fn reached_azure(status: &KubernetesComputeStatus) -> bool {
        status.compute_id.is_some()
    }

    /// `phase` label: `Stalled`, `Deleting`, `Ready`, `Attaching`/`Updating`/`Detaching`
    /// while an Azure operation runs, else `Pending` (the kind has no `status.phase`).
    fn subscription(&self) -> Option<String> {
        Some(self.spec.workspace.subscription_id.clone())
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
        } else {
            match operation.map(|op| op.kind) {
                Some(OperationKind::Detach) => "Detaching",
                Some(OperationKind::Update) => "Updating",
                Some(_) => "Attaching",
                None => "Pending",
            }
        };
        ResourceState {
            phase: phase.into(),
            inflight: operation.is_some(),
            tls_not_after: None,
        }
    }

    async fn reconcile(
        &self,
        ctx: &TypedCtx,
        arm: ArmClient,
    ) -> Result<TypedOutcome, ReconcileError> {
        let ns = self.namespace().unwrap_or_default();
        let extension = match &self.spec.extension_ref {
            Some(r) => {
                Api::<AzureMLExtension>::namespaced(ctx.shared.client.clone(), &ns)
                    .get_opt(&r.name)
                    .await?
            }
            None => None,
        };
        let desired = ComputeDesired::new(self, extension.as_ref());
        let engine = ctx.engine(arm);
        let out = engine.reconcile_compute(&desired, self.status()).await?;
        Ok(TypedOutcome::new(
            &out.status.conditions,
            out.requeue,
            out.finished,
            out.verdict,
        ))
    }
}

/// Runs the `KubernetesCompute` controller until `term` turns true.
pub async fn run(
    ctx: Arc<TypedCtx>,
    namespace: Option<String>,
    concurrency: u16,
    term: watch::Receiver<bool>,
) {
    let ns = namespace.as_deref();
    let w = typed::controller::<KubernetesCompute>(&ctx, ns);
    let store = w.cache.clone();
    let extensions = typed::metadata_watch::<AzureMLExtension>(&ctx, ns);
    let c = w.controller.watches_stream(extensions, move |e| {
        typed::naming(
            &store,
            &e.namespace().unwrap_or_default(),
            &e.name_any(),
            |kc| kc.spec.extension_ref.as_ref().map(|r| r.name.as_str()),
        )
    });
    typed::drive(c, w.cache, ctx, concurrency, term).await;
}
