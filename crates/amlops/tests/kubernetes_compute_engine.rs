//! The `KubernetesCompute` engine against the emulator over real HTTP: wait for the
//! extension, check (or create) the namespace, attach, hold still, change in place, recover
//! a `Failed` compute, refuse someone else's compute, adopt on request, detach on deletion —
//! each outcome checked on the emulator's request log (what was written) and the status.

use amlops_testkit as common;

use std::time::Duration;

use amlops::azure::ExtensionId;
use amlops::azure::model::{KubernetesComputeResource, ProvisioningState};
use amlops::crd::{ComputeIdentity, ComputeIdentityType, DeletionPolicy};
use amlops_emulator::{FaultKind, FaultMatch, FaultRule};
use common::World;
use common::kpath::*;

#[tokio::test]
async fn waits_for_the_extension_and_the_namespace_then_attaches_and_holds_still() {
    let w = World::new().await;
    let cluster = seed_cluster(&w, "shared", false);
    let d = kc("team-a", &cluster, "team-a");

    // No extension yet: Reconciling WaitingForExtension, and Azure is not asked to attach.
    let out = w
        .engine
        .reconcile_compute(&d, status(&w, &d))
        .await
        .unwrap();
    let (_, reason, message) = cond(&out.status, "Reconciling").expect("Reconciling");
    assert_eq!(reason, "WaitingForExtension", "{message}");
    assert!(message.contains("not installed"), "{message}");
    assert!(writes(&w).is_empty(), "{:?}", writes(&w));

    // The extension, but no namespace: Stalled NamespaceNotFound, still no write (Azure would
    // accept the attach and jobs would fail later).
    install_extension(&w, &cluster);
    let st = stalled(&w, &d, "NamespaceNotFound").await;
    assert!(cond(&st, "Stalled").unwrap().2.contains("createNamespace"));
    assert!(writes(&w).is_empty(), "{:?}", writes(&w));
    assert!(
        st.compute_id.is_none(),
        "nothing attached: the spec stays editable"
    );

    // The namespace appears: attached, Ready.
    create_namespace(&w, &cluster, "team-a").await;
    let st = ready(&w, &d).await;
    assert_eq!(st.provisioning_state.as_deref(), Some("Succeeded"));
    assert_eq!(
        st.cluster_id.as_deref().map(str::to_ascii_lowercase),
        Some(cluster.to_string().to_ascii_lowercase())
    );
    let c = azure_compute(&w, &d).await.expect("compute");
    assert_eq!(c.namespace(), "team-a");
    assert_eq!(c.provisioning_state(), Some(&ProvisioningState::Succeeded));
    assert_eq!(writes(&w).len(), 1, "one PUT: {:?}", writes(&w));

    // Five resyncs: no write, one ARM read each (GET compute).
    let before = w.emu.requests().len();
    for _ in 0..5 {
        let out = w
            .engine
            .reconcile_compute(&d, status(&w, &d))
            .await
            .unwrap();
        assert!(cond(&out.status, "Ready").is_some());
        assert!(
            out.requeue >= Some(Duration::from_secs(60)),
            "{:?}",
            out.requeue
        );
    }
    let log = &w.emu.requests()[before..];
    assert_eq!(log.len(), 5, "{:?}", w.brief_log());
    assert!(log.iter().all(|r| r.method == "GET"));

    // Detached outside amlops: attached again, with a Warning that says so.
    let start = w
        .engine
        .arm
        .detach_kubernetes_compute(&d.compute_id().unwrap())
        .await
        .unwrap();
    if let Some(h) = start.handle() {
        while !w.engine.arm.poll(h).await.unwrap().is_terminal() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(azure_compute(&w, &d).await.is_none());
    ready(&w, &d).await;
    assert!(azure_compute(&w, &d).await.is_some());
    assert!(
        events(&w, &d).contains(&"ComputeMissing".to_string()),
        "{:?}",
        events(&w, &d)
    );
}

#[tokio::test]
async fn create_namespace_and_two_computes_share_one_cluster() {
    let w = World::new().await;
    let cluster = seed_cluster(&w, "shared", false);
    install_extension(&w, &cluster);
    let mut a = kc("team-a", &cluster, "team-a");
    a.create_namespace = true;
    let mut b = kc("team-b", &cluster, "team-b");
    b.create_namespace = true;
    ready(&w, &a).await;
    ready(&w, &b).await;
    assert!(events(&w, &a).contains(&"NamespaceCreated".to_string()));
    for (d, ns) in [(&a, "team-a"), (&b, "team-b")] {
        assert_eq!(azure_compute(&w, d).await.unwrap().namespace(), ns);
    }
    let computes = w
        .engine
        .arm
        .list_kubernetes_computes(&a.workspace_id().unwrap())
        .await
        .unwrap();
    assert_eq!(computes.len(), 2);
}

#[tokio::test]
async fn a_failed_attach_is_detached_and_attached_again() {
    let w = World::new().await;
    let cluster = seed_cluster(&w, "shared", false);
    install_extension(&w, &cluster);
    create_namespace(&w, &cluster, "team-a").await;
    w.emu.inject_fault(FaultRule {
        id: 0,
        matcher: FaultMatch {
            method: Some("PUT".into()),
            path: Some("/computes/team-a".into()),
            operation: None,
        },
        kind: FaultKind::LroFail {
            code: "InternalServerError".into(),
            message: "An internal server error occurred.".into(),
        },
        times: Some(1),
        probability: None,
    });
    let d = kc("team-a", &cluster, "team-a");
    let st = ready(&w, &d).await;
    assert_eq!(st.retries, None, "reset once Ready");
    assert!(
        events(&w, &d).contains(&"RetryingFailedCompute".to_string()),
        "{:?}",
        events(&w, &d)
    );
    let ws = writes(&w);
    assert_eq!(
        ws.iter().filter(|x| x.starts_with("PUT")).count(),
        2,
        "attach, attach again: {ws:?}"
    );
    assert_eq!(
        ws.iter()
            .filter(|x| x.starts_with("DELETE") && x.contains("underlyingResourceAction=Detach"))
            .count(),
        1,
        "one detach: {ws:?}"
    );
    assert!(
        !ws.iter().any(|x| x.contains("=Delete")),
        "never Delete: {ws:?}"
    );
    assert_eq!(azure_compute(&w, &d).await.unwrap().namespace(), "team-a");
}

#[tokio::test]
async fn a_failure_that_persists_stalls_after_max_retries() {
    let w = World::new().await;
    let cluster = seed_cluster(&w, "shared", false);
    install_extension(&w, &cluster);
    create_namespace(&w, &cluster, "team-a").await;
    w.emu.inject_fault(FaultRule {
        id: 0,
        matcher: FaultMatch {
            method: Some("PUT".into()),
            path: Some("/computes/team-a".into()),
            operation: None,
        },
        kind: FaultKind::LroFail {
            code: "InternalServerError".into(),
            message: "An internal server error occurred.".into(),
        },
        times: None,
        probability: None,
    });
    let d = kc("team-a", &cluster, "team-a");
    let st = stalled(&w, &d, "ComputeFailed").await;
    let message = cond(&st, "Stalled").unwrap().2;
    assert!(
        message.contains("An internal server error occurred."),
        "{message}"
    );
    assert!(
        message.contains("after 2 detach + attach retries"),
        "{message}"
    );
    assert_eq!(
        writes(&w).iter().filter(|x| x.starts_with("PUT")).count(),
        3,
        "attach + 2 retries: {:?}",
        writes(&w)
    );
}

#[tokio::test]
async fn identity_and_description_change_in_place_and_a_refusal_falls_back_to_reattach() {
    let w = World::new().await;
    let cluster = seed_cluster(&w, "shared", false);
    install_extension(&w, &cluster);
    create_namespace(&w, &cluster, "team-a").await;
    let mut d = kc("team-a", &cluster, "team-a");
    ready(&w, &d).await;

    // In place: one PUT, no detach.
    d.generation = Some(2);
    d.description = Some("team A".into());
    d.identity = Some(ComputeIdentity {
        type_: ComputeIdentityType::SystemAssigned,
        user_assigned_identity: None,
    });
    let st = ready(&w, &d).await;
    let c = azure_compute(&w, &d).await.unwrap();
    assert_eq!(c.properties.description.as_deref(), Some("team A"));
    assert_eq!(
        c.identity.as_ref().map(|i| i.identity_type.as_str()),
        Some("SystemAssigned")
    );
    assert!(
        st.principal_id.is_some(),
        "the system identity's principal is reported"
    );
    let ws = writes(&w);
    assert_eq!(ws.len(), 2, "attach + in-place update: {ws:?}");

    // Azure refuses the next in-place change: detach + attach instead, Ready with it.
    w.emu.inject_fault(FaultRule {
        id: 0,
        matcher: FaultMatch {
            method: Some("PUT".into()),
            path: Some("/computes/team-a".into()),
            operation: None,
        },
        kind: FaultKind::BadRequest {
            code: "BadRequest".into(),
            message: "Compute update is not supported for this compute type.".into(),
        },
        times: Some(1),
        probability: None,
    });
    d.generation = Some(3);
    d.description = Some("team A, v2".into());
    let st = ready(&w, &d).await;
    assert!(st.reattach_required.is_none());
    assert!(events(&w, &d).contains(&"InPlaceUpdateRefused".to_string()));
    let c = azure_compute(&w, &d).await.unwrap();
    assert_eq!(c.properties.description.as_deref(), Some("team A, v2"));
    let ws = writes(&w);
    assert_eq!(
        ws.iter().filter(|x| x.starts_with("DELETE")).count(),
        1,
        "one detach: {ws:?}"
    );
}

#[tokio::test]
async fn someone_elses_compute_is_refused_and_adopted_only_on_request() {
    let w = World::new().await;
    let cluster = seed_cluster(&w, "shared", false);
    install_extension(&w, &cluster);
    create_namespace(&w, &cluster, "team-a").await;
    let mut d = kc("team-a", &cluster, "team-a");
    // Attached by someone else (the CLI), same cluster and namespace.
    let body = KubernetesComputeResource::attach("eastus", cluster.to_string(), "team-a");
    let start = w
        .engine
        .arm
        .attach_kubernetes_compute(&d.compute_id().unwrap(), &body)
        .await
        .unwrap();
    if let Some(h) = start.handle() {
        for _ in 0..200 {
            if w.engine.arm.poll(h).await.unwrap().is_terminal() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let before = writes(&w).len();
    let st = stalled(&w, &d, "ComputeExists").await;
    assert!(cond(&st, "Stalled").unwrap().2.contains("amlops.dev/adopt"));
    assert!(st.compute_id.is_none());

    // Another namespace: refused even with the annotation, and never overwritten.
    let mut other = kc("team-a", &cluster, "team-b");
    other.adopt = true;
    other.key.name = "other".into();
    stalled(&w, &other, "ComputeExists").await;

    d.adopt = true;
    let st = ready(&w, &d).await;
    assert!(st.compute_id.is_some());
    assert!(events(&w, &d).contains(&"Adopted".to_string()));
    assert_eq!(writes(&w).len(), before, "adopted without a write");
}

#[tokio::test]
async fn deletion_detaches_and_leaves_cluster_and_extension_or_orphans() {
    let w = World::new().await;
    let cluster = seed_cluster(&w, "shared", false);
    install_extension(&w, &cluster);
    let mut a = kc("team-a", &cluster, "team-a");
    a.create_namespace = true;
    let mut b = kc("team-b", &cluster, "team-b");
    b.create_namespace = true;
    ready(&w, &a).await;
    ready(&w, &b).await;

    a.deleting = true;
    drive(&w, &a, "detached", |_, finished| finished).await;
    assert!(azure_compute(&w, &a).await.is_none());
    let ext = w
        .engine
        .arm
        .get_extension(&ExtensionId::new(cluster.clone(), "azureml").unwrap())
        .await
        .unwrap();
    assert!(ext.is_some(), "the extension stays");
    assert!(
        azure_compute(&w, &b).await.is_some(),
        "the other team's compute stays"
    );

    b.deleting = true;
    b.deletion_policy = DeletionPolicy::Orphan;
    let before = writes(&w).len();
    drive(&w, &b, "orphaned", |_, finished| finished).await;
    assert!(
        azure_compute(&w, &b).await.is_some(),
        "Orphan leaves the compute"
    );
    assert_eq!(writes(&w).len(), before);
}

#[tokio::test]
async fn an_unreadable_cluster_is_attached_with_a_warning_and_never_given_a_namespace_blindly() {
    let w = World::new().await;
    let cluster = seed_cluster(&w, "private", true);
    install_extension(&w, &cluster);
    let mut d = kc("team-a", &cluster, "team-a");
    d.create_namespace = true;
    let st = stalled(&w, &d, "NamespaceNotCreated").await;
    assert!(
        cond(&st, "Stalled")
            .unwrap()
            .2
            .contains("createNamespace: false")
    );
    assert!(writes(&w).is_empty());
    d.create_namespace = false;
    d.generation = Some(2);
    ready(&w, &d).await;
    assert!(
        events(&w, &d).contains(&"NamespaceNotChecked".to_string()),
        "{:?}",
        events(&w, &d)
    );
}
