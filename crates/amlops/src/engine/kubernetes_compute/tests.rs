//! Table tests of the `KubernetesCompute` decisions: what is written, when, and what the
//! status says — no I/O.

use std::time::Duration;

use crate::azure::error::ApiError;
use crate::azure::model::{
    ExtensionProvisioningState as Ext, KubernetesComputeResource, ManagedServiceIdentity,
    ProvisioningState,
};
use crate::azure::{AzureError, OperationKind, OperationStatus as Poll, ResourceId};
use crate::crd::{
    ComputeIdentity, ComputeIdentityType, DeletionPolicy, KubernetesComputeStatus, OperationStatus,
    WorkspaceRef,
};
use crate::engine::EngineConfig;
use crate::engine::observe::Lookup;
use crate::engine::store::ObjKey;

use super::decide::{ComputeDone, ComputeWriteFailure};
use super::*;

const SUB: &str = "00000000-0000-0000-0000-000000000000";

fn cluster() -> ResourceId {
    ResourceId::managed_cluster(SUB, "aks-rg", "shared").unwrap()
}

fn desired() -> ComputeDesired {
    ComputeDesired {
        key: ObjKey {
            kind: KIND.into(),
            namespace: "ml".into(),
            name: "team-a".into(),
        },
        generation: Some(1),
        workspace: WorkspaceRef {
            subscription_id: SUB.into(),
            resource_group: "ml-rg".into(),
            name: "ml-ws".into(),
        },
        compute_name: "team-a".into(),
        target: Ok(ComputeTarget {
            cluster: cluster(),
            extension: "azureml".into(),
        }),
        namespace: "team-a".into(),
        create_namespace: false,
        identity: None,
        description: None,
        manual_reattach: false,
        reattach_token: None,
        adopt: false,
        deletion_policy: DeletionPolicy::Detach,
        max_retries: 2,
        deleting: false,
    }
}

fn compute(state: ProvisioningState) -> KubernetesComputeResource {
    let mut c = KubernetesComputeResource::attach("eastus", cluster().to_string(), "team-a");
    c.properties.provisioning_state = Some(state);
    c
}

/// Before an attach: compute absent, extension Succeeded, namespace there, workspace found.
fn ready_to_attach() -> ObservedAttachment {
    ObservedAttachment {
        compute: Lookup::Missing,
        extension: Lookup::Found(Ext::Succeeded),
        namespace: NamespaceLookup::Exists,
        location: Lookup::Found("eastus".into()),
        ..ObservedAttachment::default()
    }
}

fn found(c: KubernetesComputeResource) -> ObservedAttachment {
    ObservedAttachment {
        compute: Lookup::Found(c),
        ..ObservedAttachment::default()
    }
}

fn owned() -> KubernetesComputeStatus {
    let d = desired();
    KubernetesComputeStatus {
        compute_id: Some(d.compute_id().unwrap().to_string()),
        cluster_id: Some(cluster().to_string()),
        last_applied_hash: Some(d.applied_hash()),
        ..KubernetesComputeStatus::default()
    }
}

fn condition<'a>(st: &'a KubernetesComputeStatus, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition");
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

fn write_name(p: &ComputePlan) -> String {
    match &p.write {
        None => "-".into(),
        Some(ComputeWrite::Put { kind, .. }) => format!("Put({})", kind.as_str()),
        Some(ComputeWrite::Detach { .. }) => "Detach".into(),
        Some(ComputeWrite::CreateNamespace { name, .. }) => format!("CreateNamespace({name})"),
    }
}

fn api(status: u16, code: &str, message: &str) -> AzureError {
    ApiError::from_response(
        "kubernetes_compute.put",
        reqwest::StatusCode::from_u16(status).unwrap(),
        format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#).as_bytes(),
        Default::default(),
        None,
    )
    .into()
}

type Edit<T> = fn(&mut T);
/// (name, desired change, observed, observed change, status, write, condition, reason).
type Row = (
    &'static str,
    Edit<ComputeDesired>,
    ObservedAttachment,
    Edit<ObservedAttachment>,
    KubernetesComputeStatus,
    &'static str,
    &'static str,
    &'static str,
);

/// Every situation before an attach: (name, desired change, observed change, status,
/// write, condition type that is True, reason).
#[test]
fn decisions_table() {
    let none_d: Edit<ComputeDesired> = |_| {};
    let none_o: Edit<ObservedAttachment> = |_| {};
    let rows: Vec<Row> = vec![
        (
            "attach",
            none_d,
            ready_to_attach(),
            none_o,
            KubernetesComputeStatus::default(),
            "Put(Attach)",
            "Reconciling",
            "Attaching",
        ),
        (
            "extension not installed: wait, no write",
            none_d,
            ready_to_attach(),
            |o| o.extension = Lookup::Missing,
            KubernetesComputeStatus::default(),
            "-",
            "Reconciling",
            "WaitingForExtension",
        ),
        (
            "extension still creating: wait",
            none_d,
            ready_to_attach(),
            |o| o.extension = Lookup::Found(Ext::Creating),
            KubernetesComputeStatus::default(),
            "-",
            "Reconciling",
            "WaitingForExtension",
        ),
        (
            "extension failed: wait (the AzureMLExtension retries)",
            none_d,
            ready_to_attach(),
            |o| o.extension = Lookup::Found(Ext::Failed),
            KubernetesComputeStatus::default(),
            "-",
            "Reconciling",
            "WaitingForExtension",
        ),
        (
            "extensionRef not found: wait",
            |d| d.target = Err("AzureMLExtension x does not exist in namespace ml".into()),
            ObservedAttachment {
                compute: Lookup::Missing,
                ..Default::default()
            },
            none_o,
            KubernetesComputeStatus::default(),
            "-",
            "Reconciling",
            "WaitingForExtension",
        ),
        (
            "namespace missing: stall",
            none_d,
            ready_to_attach(),
            |o| o.namespace = NamespaceLookup::Missing,
            KubernetesComputeStatus::default(),
            "-",
            "Stalled",
            "NamespaceNotFound",
        ),
        (
            "namespace missing, createNamespace",
            |d| d.create_namespace = true,
            ready_to_attach(),
            |o| o.namespace = NamespaceLookup::Missing,
            KubernetesComputeStatus::default(),
            "CreateNamespace(team-a)",
            "Reconciling",
            "CreatingNamespace",
        ),
        (
            "cluster unreadable, createNamespace: stall",
            |d| d.create_namespace = true,
            ready_to_attach(),
            |o| o.namespace = NamespaceLookup::Unreachable("private".into()),
            KubernetesComputeStatus::default(),
            "-",
            "Stalled",
            "NamespaceNotCreated",
        ),
        (
            "cluster unreadable: attach with a warning",
            none_d,
            ready_to_attach(),
            |o| o.namespace = NamespaceLookup::Unreachable("private".into()),
            KubernetesComputeStatus::default(),
            "Put(Attach)",
            "Reconciling",
            "Attaching",
        ),
        (
            "workspace missing: stall",
            none_d,
            ready_to_attach(),
            |o| o.location = Lookup::Missing,
            KubernetesComputeStatus::default(),
            "-",
            "Stalled",
            "WorkspaceNotFound",
        ),
        (
            "ready",
            none_d,
            found(compute(ProvisioningState::Succeeded)),
            none_o,
            owned(),
            "-",
            "Ready",
            "Attached",
        ),
        (
            "someone else's matching compute: stall",
            none_d,
            found(compute(ProvisioningState::Succeeded)),
            none_o,
            KubernetesComputeStatus::default(),
            "-",
            "Stalled",
            "ComputeExists",
        ),
        (
            "matching compute, adopt annotation: ready, no write",
            |d| d.adopt = true,
            found(compute(ProvisioningState::Succeeded)),
            none_o,
            KubernetesComputeStatus::default(),
            "-",
            "Ready",
            "Attached",
        ),
        (
            "other namespace, even with adopt: stall",
            |d| {
                d.adopt = true;
                d.namespace = "team-b".into()
            },
            found(compute(ProvisioningState::Succeeded)),
            none_o,
            KubernetesComputeStatus::default(),
            "-",
            "Stalled",
            "ComputeExists",
        ),
        (
            "an AKS compute of that name: stall",
            |d| d.adopt = true,
            found(compute(ProvisioningState::Succeeded)),
            |o| {
                if let Lookup::Found(c) = &mut o.compute {
                    c.properties.compute_type = "AKS".into()
                }
            },
            KubernetesComputeStatus::default(),
            "-",
            "Stalled",
            "ComputeExists",
        ),
        (
            "compute busy: wait",
            none_d,
            found(compute(ProvisioningState::Updating)),
            none_o,
            owned(),
            "-",
            "Reconciling",
            "AzureBusy",
        ),
        (
            "description changed: in place",
            |d| d.description = Some("team A".into()),
            found(compute(ProvisioningState::Succeeded)),
            none_o,
            owned(),
            "Put(Update)",
            "Reconciling",
            "Updating",
        ),
        (
            "identity changed: in place",
            |d| {
                d.identity = Some(ComputeIdentity {
                    type_: ComputeIdentityType::SystemAssigned,
                    user_assigned_identity: None,
                })
            },
            found(compute(ProvisioningState::Succeeded)),
            none_o,
            owned(),
            "Put(Update)",
            "Reconciling",
            "Updating",
        ),
        (
            "failed: detach to attach again",
            none_d,
            found(compute(ProvisioningState::Failed)),
            none_o,
            owned(),
            "Detach",
            "Reconciling",
            "Detaching",
        ),
        (
            "failed, retries used up: stall",
            none_d,
            found(compute(ProvisioningState::Failed)),
            none_o,
            KubernetesComputeStatus {
                retries: Some(2),
                ..owned()
            },
            "-",
            "Stalled",
            "ComputeFailed",
        ),
        (
            "reattach annotation: detach",
            |d| d.reattach_token = Some("r1".into()),
            found(compute(ProvisioningState::Succeeded)),
            none_o,
            owned(),
            "Detach",
            "Reconciling",
            "Detaching",
        ),
        (
            "reattach annotation already acted on: ready",
            |d| d.reattach_token = Some("r1".into()),
            found(compute(ProvisioningState::Succeeded)),
            none_o,
            KubernetesComputeStatus {
                last_reattach_token: Some("r1".into()),
                ..owned()
            },
            "-",
            "Ready",
            "Attached",
        ),
        (
            "refused in place, Manual: wait for the annotation",
            |d| d.manual_reattach = true,
            found(compute(ProvisioningState::Succeeded)),
            none_o,
            KubernetesComputeStatus {
                reattach_required: Some("no".into()),
                ..owned()
            },
            "-",
            "Ready",
            "ReattachPending",
        ),
        (
            "refused in place, Automatic: detach",
            none_d,
            found(compute(ProvisioningState::Succeeded)),
            none_o,
            KubernetesComputeStatus {
                reattach_required: Some("no".into()),
                ..owned()
            },
            "Detach",
            "Reconciling",
            "Detaching",
        ),
        (
            "owned compute gone: attach again",
            none_d,
            ready_to_attach(),
            none_o,
            owned(),
            "Put(Attach)",
            "Reconciling",
            "Attaching",
        ),
        (
            "operation running: wait",
            none_d,
            ObservedAttachment {
                poll: Some(Poll::InProgress {
                    retry_after: Duration::from_secs(5),
                }),
                ..Default::default()
            },
            none_o,
            KubernetesComputeStatus {
                operation: Some(op(OperationKind::Attach)),
                ..owned()
            },
            "-",
            "Reconciling",
            "Attaching",
        ),
    ];
    let cfg = EngineConfig::default();
    for (name, edit_d, mut o, edit_o, st, write, type_, reason) in rows {
        let mut d = desired();
        edit_d(&mut d);
        edit_o(&mut o);
        let plan = decide(&d, &o, &st, &cfg);
        assert_eq!(write_name(&plan), write, "{name}");
        let (value, got_reason, message) = condition(&plan.status, type_);
        if reason == "ReattachPending" {
            assert_eq!((value, got_reason), ("False", reason), "{name}: {message}");
        } else {
            assert_eq!((value, got_reason), ("True", reason), "{name}: {message}");
        }
        assert_eq!(plan.status.observed_generation, Some(1), "{name}");
    }
}

fn op(kind: OperationKind) -> OperationStatus {
    OperationStatus {
        kind,
        url: "https://management.azure.com/op".into(),
        style: None,
        started_at: None,
    }
}

/// The attach body is what `az ml compute attach --type Kubernetes` sends; the intent
/// record holds the compute id before the write.
#[test]
fn attach_body_and_intent() {
    let mut d = desired();
    d.description = Some("team A".into());
    d.identity = Some(ComputeIdentity {
        type_: ComputeIdentityType::UserAssigned,
        user_assigned_identity: Some(format!(
            "/subscriptions/{SUB}/resourceGroups/ml-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ml"
        )),
    });
    let plan = decide(
        &d,
        &ready_to_attach(),
        &KubernetesComputeStatus::default(),
        &EngineConfig::default(),
    );
    let Some(ComputeWrite::Put { body, id, .. }) = &plan.write else {
        panic!("{:?}", plan.write)
    };
    assert_eq!(id.to_string(), d.compute_id().unwrap().to_string());
    assert_eq!(
        plan.status.compute_id.as_deref(),
        Some(id.to_string().as_str())
    );
    let v = serde_json::to_value(body.for_request()).unwrap();
    assert_eq!(v["location"], "eastus");
    assert_eq!(v["properties"]["computeType"], "Kubernetes");
    assert_eq!(v["properties"]["computeLocation"], "eastus");
    assert_eq!(v["properties"]["resourceId"], cluster().to_string());
    assert_eq!(v["properties"]["properties"]["namespace"], "team-a");
    assert_eq!(v["properties"]["description"], "team A");
    assert_eq!(v["identity"]["type"], "UserAssigned");
    // An identity Azure reports as asked is no drift; a different one is.
    let mut c = compute(ProvisioningState::Succeeded);
    c.properties.description = Some("team A".into());
    c.identity = Some(ManagedServiceIdentity::user_assigned(
        d.identity
            .as_ref()
            .unwrap()
            .user_assigned_identity
            .clone()
            .unwrap()
            .to_uppercase(),
    ));
    let plan = decide(&d, &found(c.clone()), &owned(), &EngineConfig::default());
    assert_eq!(write_name(&plan), "-", "case-insensitive ids");
    c.identity = Some(ManagedServiceIdentity::system_assigned());
    let plan = decide(&d, &found(c), &owned(), &EngineConfig::default());
    assert_eq!(write_name(&plan), "Put(Update)");
}

/// Deletion: Detach writes, Orphan and a compute never attached let go at once.
#[test]
fn deletion_table() {
    let cfg = EngineConfig::default();
    let rows: Vec<(
        &str,
        DeletionPolicy,
        KubernetesComputeStatus,
        ObservedAttachment,
        &str,
        bool,
    )> = vec![
        (
            "detach",
            DeletionPolicy::Detach,
            owned(),
            found(compute(ProvisioningState::Succeeded)),
            "Detach",
            false,
        ),
        (
            "detach a failed compute",
            DeletionPolicy::Detach,
            owned(),
            found(compute(ProvisioningState::Failed)),
            "Detach",
            false,
        ),
        (
            "busy: wait",
            DeletionPolicy::Detach,
            owned(),
            found(compute(ProvisioningState::Updating)),
            "-",
            false,
        ),
        (
            "gone: finished",
            DeletionPolicy::Detach,
            owned(),
            ObservedAttachment {
                compute: Lookup::Missing,
                ..Default::default()
            },
            "-",
            true,
        ),
        (
            "orphan",
            DeletionPolicy::Orphan,
            owned(),
            found(compute(ProvisioningState::Succeeded)),
            "-",
            true,
        ),
        (
            "never attached (someone else's compute)",
            DeletionPolicy::Detach,
            KubernetesComputeStatus::default(),
            found(compute(ProvisioningState::Succeeded)),
            "-",
            true,
        ),
    ];
    for (name, policy, st, o, write, finished) in rows {
        let mut d = desired();
        d.deleting = true;
        d.deletion_policy = policy;
        let plan = decide(&d, &o, &st, &cfg);
        assert_eq!(write_name(&plan), write, "{name}");
        assert_eq!(plan.finished, finished, "{name}");
    }
}

/// What settle records: the operation Azure started, a refused in-place change as a
/// detach + attach, a refused attach that leaves the spec editable, a passing failure.
#[test]
fn settle_table() {
    let cfg = EngineConfig::default();
    let d = desired();
    let before = KubernetesComputeStatus::default();
    let plan = decide(&d, &ready_to_attach(), &before, &cfg);
    let handle = crate::azure::OperationHandle {
        kind: OperationKind::Attach,
        style: crate::azure::LroStyle::AsyncOperation,
        url: "https://management.azure.com/op".into(),
        retry_after: Some(Duration::from_secs(7)),
    };
    let started = settle(
        &d,
        plan.clone(),
        Ok(ComputeDone::Started(handle)),
        &before,
        &cfg,
    );
    assert_eq!(
        started.status.operation.as_ref().map(|o| o.kind),
        Some(OperationKind::Attach)
    );
    assert_eq!(started.requeue, Some(Duration::from_secs(7)));

    // Azure refuses the attach (400): Stalled with Azure's words, computeId unset again.
    let refused = settle(
        &d,
        plan.clone(),
        Err(ComputeWriteFailure::Azure(api(
            400,
            "BadRequest",
            "AKS role check failed for user assigned identity. Please check the role assignment.",
        ))),
        &before,
        &cfg,
    );
    let (value, reason, message) = condition(&refused.status, "Stalled");
    assert_eq!((value, reason), ("True", "AzureRejected"), "{message}");
    assert!(message.contains("role check failed"), "{message}");
    assert!(
        refused.status.compute_id.is_none(),
        "the spec stays editable"
    );

    // Throttled: retried after Retry-After, Reconciling, computeId kept.
    let throttled = settle(
        &d,
        plan,
        Err(ComputeWriteFailure::Azure(api(
            503,
            "ServiceUnavailable",
            "later",
        ))),
        &before,
        &cfg,
    );
    assert_eq!(condition(&throttled.status, "Reconciling").0, "True");
    assert!(throttled.requeue.is_some());
    assert!(throttled.status.compute_id.is_some());

    // An in-place change refused: detach + attach next (Automatic).
    let mut d2 = desired();
    d2.description = Some("new".into());
    let o = found(compute(ProvisioningState::Succeeded));
    let plan = decide(&d2, &o, &owned(), &cfg);
    assert_eq!(write_name(&plan), "Put(Update)");
    let refused = settle(
        &d2,
        plan,
        Err(ComputeWriteFailure::Azure(api(
            400,
            "BadRequest",
            "cannot update",
        ))),
        &owned(),
        &cfg,
    );
    assert_eq!(
        refused.status.reattach_required.as_deref(),
        Some("cannot update")
    );
    assert!(
        refused
            .events
            .iter()
            .any(|e| e.warning && e.reason == "InPlaceUpdateRefused")
    );
    let next = decide(&d2, &o, &refused.status, &cfg);
    assert_eq!(write_name(&next), "Detach");

    // A namespace that cannot be created: Stalled, looked at again at the resync pace.
    let mut d3 = desired();
    d3.create_namespace = true;
    let o = ObservedAttachment {
        namespace: NamespaceLookup::Missing,
        ..ready_to_attach()
    };
    let plan = decide(&d3, &o, &before, &cfg);
    let failed = settle(
        &d3,
        plan,
        Err(ComputeWriteFailure::Cluster(
            "the API server answered 403 Forbidden".into(),
        )),
        &before,
        &cfg,
    );
    assert_eq!(
        condition(&failed.status, "Stalled").1,
        "NamespaceNotCreated"
    );
    assert_eq!(failed.requeue, Some(cfg.resync.base));
}

/// A detach + attach is recorded before the detach is sent: a restart resumes it (the
/// annotation already recorded as acted on) and never starts a second one.
#[test]
fn a_reattach_survives_a_restart_before_and_after_its_detach() {
    let cfg = EngineConfig::default();
    let mut d = desired();
    d.reattach_token = Some("r1".into());
    let plan = decide(
        &d,
        &found(compute(ProvisioningState::Succeeded)),
        &owned(),
        &cfg,
    );
    assert_eq!(write_name(&plan), "Detach");
    assert_eq!(plan.status.reattaching, Some(true));
    assert_eq!(plan.status.last_reattach_token.as_deref(), Some("r1"));
    // Crash before the DELETE reached Azure: the intent record alone says to detach.
    let again = decide(
        &d,
        &found(compute(ProvisioningState::Succeeded)),
        &plan.status,
        &cfg,
    );
    assert_eq!(write_name(&again), "Detach");
    assert!(
        again.events.iter().all(|e| e.reason != "Reattaching"),
        "one Reattaching event"
    );
    // Crash after Azure detached: the compute is gone; attached again, no ComputeMissing.
    let attach = decide(&d, &ready_to_attach(), &plan.status, &cfg);
    assert_eq!(write_name(&attach), "Put(Attach)");
    assert_eq!(attach.status.reattaching, None);
    assert!(attach.events.iter().all(|e| e.reason != "ComputeMissing"));
    // Ready afterwards: nothing more.
    let done = decide(
        &d,
        &found(compute(ProvisioningState::Succeeded)),
        &attach.status,
        &cfg,
    );
    assert_eq!(write_name(&done), "-");
}

/// A failed compute is retried at most `maxRetries` times, each a detach + attach, and the
/// count resets once it is Ready.
#[test]
fn failed_compute_retries_are_bounded_and_reset() {
    let cfg = EngineConfig::default();
    let d = desired();
    let mut st = owned();
    let failed = found(compute(ProvisioningState::Failed));
    for n in 1..=2 {
        let plan = decide(&d, &failed, &st, &cfg);
        assert_eq!(write_name(&plan), "Detach");
        assert_eq!(plan.status.retries, Some(n));
        assert!(
            plan.events
                .iter()
                .any(|e| e.reason == "RetryingFailedCompute")
        );
        // Azure detaches it; the attach that follows fails again.
        st = decide(&d, &ready_to_attach(), &plan.status, &cfg).status;
    }
    let plan = decide(&d, &failed, &st, &cfg);
    assert_eq!(condition(&plan.status, "Stalled").1, "ComputeFailed");
    let plan = decide(&d, &found(compute(ProvisioningState::Succeeded)), &st, &cfg);
    assert_eq!(plan.status.retries, None);
}
