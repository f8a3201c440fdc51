//! Steady-state resyncs answered by workspace listings (the engine against the emulator
//! over HTTP): one `GET computes` list per workspace instead of one `GET compute` per
//! resource; drift is still found once the listing is renewed; and a listing never decides
//! a write — what it would change is read again with a `GET` first.

use amlops_testkit as common;

use std::time::Duration;

use amlops::azure::{LroStart, OperationKind, ResourceId, UnderlyingResourceAction};
use amlops::engine::resync::ResyncPolicy;
use amlops::engine::{Engine, EngineConfig};
use common::*;

/// An engine of `w` whose listings expire after `base / 2` (the real rule, on a short base).
fn engine(w: &World, base: Duration) -> Engine<amlops_testkit::MemoryStore> {
    Engine {
        arm: arm(w.emu.base_url(), w.emu.token()),
        store: w.store.clone(),
        config: EngineConfig {
            resync: ResyncPolicy {
                base,
                ..ResyncPolicy::default()
            },
            ..engine_config()
        },
    }
}

/// GETs of single computes (`…/computes/<name>`) and lists (`…/computes`) since the log was
/// cleared.
fn reads(w: &World) -> (usize, usize) {
    let log = w.emu.requests();
    let gets = log
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/computes/"))
        .count();
    let lists = log
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/computes"))
        .count();
    (gets, lists)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_list_per_workspace_answers_the_steady_resyncs() {
    let w = World::new().await;
    let e = engine(&w, Duration::from_secs(600));
    let ds: Vec<_> = (1..=5).map(|i| ic(&format!("listed{i}"), "")).collect();
    for d in &ds {
        w.ready(d).await;
    }
    w.emu.clear_requests();
    for d in &ds {
        let out = e.reconcile(d, w.status(d)).await.expect("reconcile");
        assert!(is_ready(&out.status, d));
    }
    // One list of the workspace: 3 pages (the test emulator pages by 2), no GET.
    assert_eq!(reads(&w), (0, 3), "{:?}", w.brief_log());
    assert!(w.writes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_found_once_the_listing_is_renewed() {
    let w = World::new().await;
    // Listings expire after 1 s.
    let e = engine(&w, Duration::from_secs(2));
    let a = ic("driftla", "");
    let b = ic("driftlb", "");
    w.ready(&a).await;
    w.ready(&b).await;
    e.reconcile(&a, w.status(&a)).await.expect("listed");
    // `b`'s compute goes behind the operator's back (detached: its cluster stays).
    let id = ResourceId::compute(SUB, "ml-rg", "ml-ws", "driftlb").expect("id");
    if let LroStart::Started(h) = w
        .engine
        .arm
        .delete_compute(&id, UnderlyingResourceAction::Detach)
        .await
        .expect("detach")
    {
        w.engine
            .arm
            .wait_for(&h, Duration::from_secs(10))
            .await
            .expect("detached");
    }
    // Within the listing's age the resync trusts it (drift found at most max_age late)…
    let out = e.reconcile(&b, w.status(&b)).await.expect("resync");
    assert!(is_ready(&out.status, &b), "{:?}", out.status);
    // …once renewed, the compute is missing from it, read with a GET (404): drift.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    w.emu.clear_requests();
    let out = e.reconcile(&b, w.status(&b)).await.expect("resync");
    assert_ne!(out.status.phase, Some(amlops::crd::Phase::Ready));
    assert!(
        w.events(&b).iter().any(|ev| ev.reason == "DriftDetected"),
        "{:?}",
        w.events(&b)
    );
    let (gets, lists) = reads(&w);
    assert_eq!(lists, 1);
    assert!(gets >= 1, "absent from the listing: read with a GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_never_decides_a_write() {
    let w = World::new().await;
    let e = engine(&w, Duration::from_secs(600));
    let d = ic("lbdrift", "");
    w.ready(&d).await;
    // Someone switches the load balancer in Azure (the spec says PublicIp).
    let id = ResourceId::compute(SUB, "ml-rg", "ml-ws", "lbdrift").expect("id");
    let mut current = w
        .engine
        .arm
        .get_compute(&id)
        .await
        .expect("get")
        .expect("exists");
    let props = current
        .properties
        .properties
        .get_or_insert_with(Default::default);
    props.load_balancer_type = Some(amlops::azure::model::LoadBalancerType::InternalLoadBalancer);
    props.ssl_configuration = None;
    let body = current.for_request();
    if let LroStart::Started(h) = w
        .engine
        .arm
        .put_compute(&id, &body, OperationKind::Update)
        .await
        .expect("update")
    {
        w.engine
            .arm
            .wait_for(&h, Duration::from_secs(10))
            .await
            .expect("updated");
    }
    w.emu.clear_requests();
    e.reconcile(&d, w.status(&d)).await.expect("resync");
    let log = w.emu.requests();
    let list = log
        .iter()
        .position(|r| r.method == "GET" && r.path.ends_with("/computes"));
    let get = log
        .iter()
        .position(|r| r.method == "GET" && r.path.ends_with("/computes/lbdrift"));
    let put = log
        .iter()
        .position(|r| r.method == "PUT" && r.path.ends_with("/computes/lbdrift"));
    assert!(
        list.is_some() && list < get && get < put,
        "listed, then read, then written: {:?}",
        w.brief_log()
    );
    w.ready(&d).await;
    assert_eq!(
        w.emu
            .state()
            .compute("lbdrift")
            .map(|c| c.load_balancer_type.clone()),
        Some("PublicIp".into())
    );
}

/// The attachment check before an attach lists the subscription's workspaces and their
/// computes: attaching several clusters in a row shares those lists (30 s) instead of
/// listing everything again per attach (N × (workspaces + 1) lists: quadratic in a bulk
/// apply), and still finds an attachment of the same cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_checks_share_their_listings() {
    use amlops_emulator::ClusterSeed;
    let w = World::new().await;
    for name in ["share1", "share2", "share3"] {
        w.emu.seed_aks_cluster(
            SUB,
            ClusterSeed {
                resource_group: "aks-rg".into(),
                name: name.into(),
                ..ClusterSeed::default()
            },
        );
    }
    w.emu.clear_requests();
    for name in ["share1", "share2", "share3"] {
        w.ready(&ca(&format!("ca-{name}"), name, "")).await;
    }
    let workspace_lists = w
        .emu
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path
                    .ends_with("/providers/Microsoft.MachineLearningServices/workspaces")
        })
        .count();
    assert_eq!(workspace_lists, 1, "{:?}", w.brief_log());
    // The listing of the workspace was dropped after each attach: a second resource on an
    // attached cluster is still refused.
    let st = w
        .stalled(&ca("ca-again", "share2", ""), "AlreadyAttached")
        .await;
    let msg = condition(&st, "Stalled").map(|c| c.message.clone());
    assert!(
        msg.as_deref().is_some_and(|m| m.contains("ca-share2")),
        "{msg:?}"
    );
}
