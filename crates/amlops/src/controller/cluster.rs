//! The `InferenceCluster` and `ClusterAttachment` controllers: the generic typed controller
//! ([`super::typed`]) plus what is these kinds' own — the spec checks admission cannot make
//! ([`crate::validate::semantic`]: address arithmetic, subscription match), the engine
//! ([`crate::engine::Engine::reconcile`] on a [`Desired`]) and their gauge phases.

use std::sync::Arc;

use kube::core::DeserializeGuard;
use kube::runtime::reflector::store::Writer;
use tokio::sync::watch;

use crate::azure::ArmClient;
use crate::crd::{ClusterAttachment, ClusterStatus, CredentialsRef, InferenceCluster};
use crate::engine::Desired;
use crate::engine::resync::ResyncPolicy;
use crate::engine::store::Claim;
use crate::engine::verdict::Stall;
use crate::validate::{Finding, semantic};

use super::metrics::ResourceState;
use super::reconciler::{ReconcileError, jitter};
use super::typed::{self, TypedCtx, TypedKind, TypedOutcome};

/// A kind whose engine is [`crate::engine::Engine::reconcile`]: `InferenceCluster` or
/// `ClusterAttachment`.
pub trait ClusterKind: TypedKind<Status = ClusterStatus> {
    /// The engine's view of the object.
    fn desired(&self) -> Desired;
}

impl ClusterKind for InferenceCluster {
    fn desired(&self) -> Desired {
        Desired::from_inference_cluster(self)
    }
}

impl ClusterKind for ClusterAttachment {
    fn desired(&self) -> Desired {
        Desired::from_cluster_attachment(self)
    }
}

/// `InvalidSpec` with every finding, or nothing.
fn findings_stall(findings: Vec<Finding>) -> Result<(), Stall> {
    if findings.is_empty() {
        return Ok(());
    }
    let message = findings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Err(Stall::new(
        "InvalidSpec",
        format!("{message}. Fix the resource; nothing was sent to Azure"),
    ))
}

/// `phase` label: `status.phase` (`Pending` before the first status); in flight while an
/// Azure operation is recorded; the certificate's expiry for
/// `amlops_tls_certificate_expiry_timestamp_seconds`.
fn cluster_state(status: Option<&ClusterStatus>) -> ResourceState {
    ResourceState {
        phase: status
            .and_then(|s| s.phase)
            .map_or("Pending", |p| p.as_str())
            .to_string(),
        inflight: status.is_some_and(|s| s.operation.is_some()),
        tls_not_after: status
            .and_then(|s| s.tls.as_ref())
            .and_then(|t| t.not_after.as_deref())
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second()),
    }
}

/// One reconcile of `desired` through the engine, acting as `arm`.
async fn reconcile_cluster(
    ctx: &TypedCtx,
    arm: ArmClient,
    desired: &Desired,
    status: ClusterStatus,
) -> Result<TypedOutcome, ReconcileError> {
    let out = ctx.engine(arm).reconcile(desired, status).await?;
    // The engine decided the requeue: Azure's Retry-After, a poll, or the steady-state
    // resync pace of this subscription (jittered there). A long requeue outside the steady
    // state is jittered here, so that resources created together do not come back together.
    let steady = ResyncPolicy::is_steady(&out);
    let base = ctx.shared.engine.resync.base;
    let requeue = match out.requeue {
        Some(d) if d >= base && !steady => Some(jitter(d)),
        r => r,
    };
    Ok(TypedOutcome::new(
        &out.status.conditions,
        requeue,
        out.finished,
        out.verdict,
    ))
}

/// The [`TypedKind`] items both cluster kinds share: their specs name the same fields
/// (`credentialsRef`, `tls.secretRef`, `workspace`) and their engine is the same. A macro
/// rather than a blanket impl: the two specs are distinct types with no trait of their own.
macro_rules! cluster_kind_items {
    () => {
        type Status = ClusterStatus;

        fn status(&self) -> ClusterStatus {
            self.status.clone().unwrap_or_default()
        }

        fn credentials_ref(&self) -> Option<&CredentialsRef> {
            self.spec.credentials_ref.as_ref()
        }

        /// `tls.secretRef`, then `credentialsRef`.
        fn secret_names(&self) -> Vec<&str> {
            self.spec
                .tls
                .secret_ref
                .as_ref()
                .map(|r| r.name.as_str())
                .into_iter()
                .chain(self.spec.credentials_ref.as_ref().map(|r| r.name.as_str()))
                .collect()
        }

        fn reached_azure(status: &ClusterStatus) -> bool {
            status.compute_id.is_some()
        }

        fn resource_state(&self) -> ResourceState {
            cluster_state(self.status.as_ref())
        }

        fn subscription(&self) -> Option<String> {
            Some(self.spec.workspace.subscription_id.clone())
        }

        /// Its compute and the AKS cluster it attaches; it owns the compute once its
        /// status records one.
        fn claim(&self) -> Option<Claim> {
            Some(Claim {
                owns: self.status.as_ref().is_some_and(|s| s.compute_id.is_some()),
                ..Claim::of(&self.desired())
            })
        }

        async fn reconcile(
            &self,
            ctx: &TypedCtx,
            arm: ArmClient,
        ) -> Result<TypedOutcome, ReconcileError> {
            reconcile_cluster(ctx, arm, &self.desired(), self.status()).await
        }
    };
}

impl TypedKind for InferenceCluster {
    const KIND: &'static str = "InferenceCluster";
    cluster_kind_items!();

    /// Address arithmetic of a custom network ([`semantic::check_inference_cluster`]).
    fn check(&self) -> Result<(), Stall> {
        let mut findings = Vec::new();
        semantic::check_inference_cluster(&self.spec, &mut findings);
        findings_stall(findings)
    }
}

impl TypedKind for ClusterAttachment {
    const KIND: &'static str = "ClusterAttachment";
    cluster_kind_items!();

    /// The AKS cluster's subscription against the workspace's
    /// ([`semantic::check_cluster_attachment`]).
    fn check(&self) -> Result<(), Stall> {
        let mut findings = Vec::new();
        semantic::check_cluster_attachment(&self.spec, &mut findings);
        findings_stall(findings)
    }
}

/// Runs the controller of `K` (`InferenceCluster` or `ClusterAttachment`) on `writer`'s
/// cache — the one the store reads event references from — until `term` turns true; `synced`
/// turns true once that cache holds the first full list.
pub async fn run<K: ClusterKind>(
    ctx: Arc<TypedCtx>,
    writer: Writer<DeserializeGuard<K>>,
    namespace: Option<String>,
    concurrency: u16,
    term: watch::Receiver<bool>,
    synced: watch::Sender<bool>,
) {
    let w = typed::controller_on::<K>(&ctx, namespace.as_deref(), writer);
    let mut rx = w.synced;
    let mut until = term.clone();
    let forward = async move {
        tokio::select! {
            res = rx.wait_for(|s| *s) => if res.is_ok() { synced.send_replace(true); },
            _ = until.wait_for(|t| *t) => {}
        }
    };
    futures::join!(
        forward,
        typed::drive(w.controller, w.cache, ctx, concurrency, term)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn example(kind: &str) -> Value {
        let file = match kind {
            "InferenceCluster" => (
                "01-minimal-create.yaml",
                include_str!("../../../../examples/01-minimal-create.yaml"),
            ),
            _ => (
                "04-attach-custom-tls.yaml",
                include_str!("../../../../examples/04-attach-custom-tls.yaml"),
            ),
        };
        crate::validate::parse_documents(file.0, file.1)
            .remove(0)
            .value
            .unwrap()
    }

    /// What the API server sends: server-set metadata, a status, a deletion mark.
    fn as_served(mut v: Value) -> Value {
        let m = v["metadata"].as_object_mut().unwrap();
        m.insert("uid".into(), json!("0b7f6c1e-1111-2222-3333-444455556666"));
        m.insert("resourceVersion".into(), json!("42"));
        m.insert("generation".into(), json!(3));
        m.insert("creationTimestamp".into(), json!("2026-11-23T10:00:00Z"));
        m.insert("deletionTimestamp".into(), json!("2026-11-23T11:00:00Z"));
        m.insert("finalizers".into(), json!(["amlops.dev/cleanup"]));
        m.insert(
            "managedFields".into(),
            json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "amlops.dev/v1alpha1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]),
        );
        v["status"] = json!({"phase": "Ready", "observedGeneration": 2, "computeId": "/x"});
        v
    }

    #[test]
    fn objects_as_served_decode_and_keep_generation_and_deletion() {
        let v = as_served(example("InferenceCluster"));
        let o: DeserializeGuard<InferenceCluster> = serde_json::from_value(v).unwrap();
        let o = o.0.unwrap();
        let d = o.desired();
        assert_eq!(d.generation, Some(3));
        assert!(d.deleting);
        assert!(InferenceCluster::reached_azure(&o.status()));
        assert_eq!(o.resource_state().phase, "Ready");
        let v = as_served(example("ClusterAttachment"));
        let o: DeserializeGuard<ClusterAttachment> = serde_json::from_value(v).unwrap();
        let d = o.0.unwrap().desired();
        assert_eq!(d.generation, Some(3));
        assert!(d.deleting);
    }

    #[test]
    fn a_malformed_object_is_kept_apart_with_its_metadata() {
        let mut v = example("InferenceCluster");
        v["spec"]["agentCount"] = json!("three");
        let o: DeserializeGuard<InferenceCluster> = serde_json::from_value(v).unwrap();
        let invalid = o.0.unwrap_err();
        assert_eq!(invalid.metadata.name.as_deref(), Some("prod-scoring"));
    }

    #[test]
    fn secret_names_cover_tls_and_credentials_and_a_foreign_namespace_is_read() {
        let mut v = example("ClusterAttachment");
        v["spec"]["credentialsRef"] = json!({"name": "team-azure", "namespace": "other"});
        let o: ClusterAttachment = serde_json::from_value(v).unwrap();
        assert_eq!(o.secret_names(), ["scoring-tls", "team-azure"]);
        let s = super::super::credentials::foreign_namespace("ml-platform", o.credentials_ref());
        assert_eq!(s.map(|s| s.reason), Some("CredentialsRefForbidden"));
    }

    #[test]
    fn the_checks_admission_cannot_make_stall_with_the_field() {
        let mut v = example("InferenceCluster");
        v["spec"]["network"] = json!({
            "subnetId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/a",
            "serviceCidr": "10.0.0.0/16", "dnsServiceIP": "10.1.0.10",
            "dockerBridgeCidr": "172.17.0.1/16"});
        let o: InferenceCluster = serde_json::from_value(v).unwrap();
        let s = o.check().unwrap_err();
        assert_eq!(s.reason, "InvalidSpec");
        assert!(
            s.message.contains("spec.network.dnsServiceIP"),
            "{}",
            s.message
        );
    }
}
