//! The checks before an attach that match Azure ML's own (issue "Checks that match Azure
//! ML's own"): each case against the emulator over HTTP, asserting the request log (no
//! Azure write where none may be), the `Stalled` reason and its message.

use amlops_testkit as common;

use std::sync::Arc;
use std::time::Duration;

use amlops::azure::{LroStart, OperationKind, ResourceId};
use amlops::engine::versions::{AzureMlVersions, MinorRange};
use amlops_emulator::{ClusterSeed, PoolSeed, WorkspaceSeed};
use common::{SUB, World, aks_id, ca, condition, ic};

fn seed(w: &World, name: &str, f: impl FnOnce(&mut ClusterSeed)) {
    let mut c = ClusterSeed {
        resource_group: "aks-rg".into(),
        name: name.into(),
        ..ClusterSeed::default()
    };
    f(&mut c);
    w.emu.seed_aks_cluster(SUB, c);
}

fn stalled_message(st: &amlops::crd::ClusterStatus) -> String {
    condition(st, "Stalled")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// PUTs and DELETEs Azure accepted.
fn writes(w: &World) -> usize {
    w.writes().len()
}

/// FastProd/DenseProd need 3 nodes *and* 12 vCPUs: an existing cluster of 2 × 8-vCPU nodes
/// has the vCPUs but not the nodes. Before, it was attached, turned Failed ("At least 3
/// machine(s) are required …") and burnt retries; now it stalls with no write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_of_eight_vcpus_stall_insufficient_nodes_before_any_write() {
    let w = World::new().await;
    seed(&w, "twobig", |c| {
        c.agent_pools = vec![PoolSeed {
            count: 2,
            vm_size: "Standard_D8s_v3".into(),
            ..PoolSeed::default()
        }]
    });
    for purpose in ["FastProd", "DenseProd"] {
        let d = ca(
            &format!("twobig{}", purpose.to_lowercase()),
            "twobig",
            &format!("clusterPurpose: {purpose}"),
        );
        let st = w.stalled(&d, "InsufficientNodes").await;
        let msg = stalled_message(&st);
        assert!(
            msg.contains("2 nodes")
                && msg.contains("16 vCPUs")
                && msg.contains("at least 3 nodes")
                && msg.contains(purpose)
                && msg.contains("DevTest"),
            "{msg}"
        );
    }
    // A created cluster of DenseProd (the CRD's rule covers only FastProd) as well.
    let d = ic(
        "densetwo",
        "clusterPurpose: DenseProd\nagentCount: 2\nvmSize: Standard_D8s_v3",
    );
    let st = w.stalled(&d, "InsufficientNodes").await;
    assert!(stalled_message(&st).contains("2 × Standard_D8s_v3"));
    // Too few vCPUs too: vCPUs first, as Azure reports them, and the nodes mentioned.
    seed(&w, "twosmall", |c| {
        c.agent_pools = vec![PoolSeed {
            count: 2,
            vm_size: "Standard_D2_v2".into(),
            ..PoolSeed::default()
        }]
    });
    let st = w
        .stalled(&ca("twosmall1", "twosmall", ""), "InsufficientVCPUs")
        .await;
    let msg = stalled_message(&st);
    assert!(msg.contains("4 vCPUs") && msg.contains("2 nodes"), "{msg}");
    assert_eq!(writes(&w), 0, "no Azure write: {:#?}", w.brief_log());
    // Three nodes (the nodes of every pool count): attached.
    seed(&w, "threebig", |c| {
        c.agent_pools = vec![
            PoolSeed {
                count: 2,
                vm_size: "Standard_D8s_v3".into(),
                ..PoolSeed::default()
            },
            PoolSeed {
                name: "user".into(),
                count: 1,
                vm_size: "Standard_D8s_v3".into(),
                mode: "User".into(),
            },
        ]
    });
    w.ready(&ca("threebig1", "threebig", "")).await;
}

/// Kubernetes minors, not AKS's patch list: a running 1.35.5 (AKS lists 1.35.2 and 1.35.3)
/// attaches; 1.36.1, which AKS offers but Azure ML does not attach yet, stalls before any
/// write with the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_minor_in_azure_mls_range_not_aks_patch_list() {
    let w = World::new().await;
    seed(&w, "patch", |c| c.kubernetes_version = "1.35.5".into());
    seed(&w, "newest", |c| c.kubernetes_version = "1.36.1".into());
    let st = w
        .stalled(&ca("newest1", "newest", ""), "UnsupportedKubernetesVersion")
        .await;
    let msg = stalled_message(&st);
    assert!(
        msg.contains("1.36.1")
            && msg.contains("1.33 to 1.35")
            && msg.contains("--azureml-kubernetes-versions")
            && msg.contains("does not support this minor yet"),
        "{msg}"
    );
    assert_eq!(writes(&w), 0, "no Azure write: {:#?}", w.brief_log());
    w.ready(&ca("patch1", "patch", "")).await;
    w.expect_accepted(
        "PUT",
        "/computes/patch1",
        "",
        1,
        "the 1.35.5 cluster attached",
    );
    assert!(
        !w.brief_log()
            .iter()
            .any(|l| l.contains("kubernetesVersions")),
        "AKS's list of versions is not consulted: {:#?}",
        w.brief_log()
    );
}

/// When Azure answers "Supported versions are between A - B", the attach stalls at once
/// with that range (no retry), and the range is used for the next check of the same
/// subscription and region: a second attachment stalls before any write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azures_range_stalls_at_once_and_is_remembered() {
    let mut w = World::new().await;
    // A stale configured range that still lets 1.36 through.
    w.engine.config.azureml_versions = Arc::new(AzureMlVersions::new(Some(
        MinorRange::parse("1.30-1.40").unwrap(),
    )));
    seed(&w, "new1", |c| c.kubernetes_version = "1.36.0".into());
    seed(&w, "new2", |c| c.kubernetes_version = "1.36.1".into());
    let first = ca("first", "new1", "");
    let st = w.stalled(&first, "UnsupportedKubernetesVersion").await;
    let msg = stalled_message(&st);
    assert!(
        msg.contains("Supported versions are between 1.33.0 - 1.35.3"),
        "Azure's words: {msg}"
    );
    w.expect_accepted("PUT", "/computes/first", "", 1, "one attach, no retry");
    w.expect_accepted("DELETE", "", "", 0, "no retry by detaching");
    let st2 = w
        .stalled(&ca("second", "new2", ""), "UnsupportedKubernetesVersion")
        .await;
    let msg = stalled_message(&st2);
    assert!(
        msg.contains("1.33 to 1.35") && msg.contains("as Azure ML answered"),
        "{msg}"
    );
    w.expect_accepted("PUT", "/computes/second", "", 0, "checked before any write");
    // Still a stall after more reconciles: no retries burnt.
    for _ in 0..3 {
        let _ = w.engine.reconcile(&first, w.status(&first)).await;
    }
    w.expect_accepted("PUT", "/computes/first", "", 1, "no retry");
}

/// One AKS cluster, one Azure ML attachment: a cluster attached in *another* workspace of
/// the subscription stalls AlreadyAttached naming that workspace and compute, and nothing
/// is written (a second attach would silently break that compute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_attached_in_another_workspace() {
    let w = World::new().await;
    w.emu.seed_workspace(
        SUB,
        WorkspaceSeed {
            resource_group: "team-rg".into(),
            name: "team-ws".into(),
            location: "eastus".into(),
        },
    );
    // Attached by someone else, in team-ws.
    let theirs = ca("legacy", "shared", "");
    let body = amlops::engine::body::provision_body(&theirs, "eastus", None, None);
    let id = ResourceId::compute(SUB, "team-rg", "team-ws", "legacy").unwrap();
    if let LroStart::Started(h) = w
        .engine
        .arm
        .put_compute(&id, &body, OperationKind::Attach)
        .await
        .unwrap()
    {
        w.engine
            .arm
            .wait_for(&h, Duration::from_secs(10))
            .await
            .unwrap();
    }
    w.emu.clear_requests();
    let d = ca("second", "shared", "");
    let st = w.stalled(&d, "AlreadyAttached").await;
    let msg = stalled_message(&st);
    assert!(
        msg.contains("team-ws") && msg.contains("legacy") && msg.contains("shared"),
        "names workspace, compute and cluster: {msg}"
    );
    assert_eq!(writes(&w), 0, "no Azure write: {:#?}", w.brief_log());
    let log = w.brief_log();
    assert!(
        log.iter()
            .any(|l| l.contains("team-ws/computes") && l.starts_with("GET")),
        "the other workspace's computes were read: {log:#?}"
    );
    let legacy = w
        .emu
        .state()
        .computes
        .into_iter()
        .find(|c| c.name == "legacy")
        .unwrap();
    assert_eq!(legacy.provisioning_state, "Succeeded", "not broken");
    assert!(aks_id("shared").contains("shared"));
}

/// A private AKS cluster whose API server also has a public FQDN cannot be attached
/// (Microsoft's documented limitation): refused before any write, with the reason and the
/// command that fixes it; without the public FQDN it attaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_cluster_with_public_fqdn_is_refused() {
    let w = World::new().await;
    seed(&w, "privpub", |c| c.private = true);
    let d = ca("privpub1", "privpub", "clusterPurpose: DevTest");
    let st = w.stalled(&d, "PrivateClusterPublicFQDN").await;
    let msg = stalled_message(&st);
    assert!(
        msg.contains("public FQDN")
            && msg.contains("isn't supported with Azure Machine Learning")
            && msg.contains("az aks update -g aks-rg -n privpub --disable-public-fqdn"),
        "{msg}"
    );
    assert_eq!(writes(&w), 0, "no Azure write: {:#?}", w.brief_log());
    // The user disables the public FQDN: the attach goes on.
    seed(&w, "privpub", |c| {
        c.private = true;
        c.private_public_fqdn = Some(false);
    });
    w.ready(&d).await;
    w.expect_accepted("PUT", "/computes/privpub1", "", 1, "attached");
}
