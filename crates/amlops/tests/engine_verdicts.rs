//! One verdict for every Azure failure, end to end: the engine against
//! the emulator over real HTTP, faults injected through the emulator's admin API.
//! - a 403 on the compute PUT stalls with `AuthorizationFailed` instead of retrying forever;
//! - a compute Azure turns `Failed` for a cause a retry reproduces stalls at once, with its
//!   own reason, without a detach;
//! - the cluster autoscaler on the pool leaves `agentCount` unenforced and every other
//!   change applied;
//! - a reconcile reads no ARM resource twice.

use amlops_testkit as common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use amlops::azure::{LroStart, ResourceId};
use amlops::crd::OperationStatus;
use amlops::engine::desired::Flavor;
use amlops_emulator::RequestRecord;
use common::*;
use serde_json::{Value, json};

/// Adds a fault rule through `POST /admin/faults`; returns its id.
async fn add_fault(w: &World, rule: Value) -> u64 {
    let resp = reqwest::Client::new()
        .post(format!("{}/admin/faults", w.emu.base_url()))
        .json(&rule)
        .send()
        .await
        .expect("admin API");
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let body: Value = resp.json().await.expect("JSON");
    body["id"].as_u64().expect("id")
}

/// Removes a fault rule through `DELETE /admin/faults/{id}`.
async fn remove_fault(w: &World, id: u64) {
    let resp = reqwest::Client::new()
        .delete(format!("{}/admin/faults/{id}", w.emu.base_url()))
        .send()
        .await
        .expect("admin API");
    assert!(resp.status().is_success(), "{:?}", resp.status());
}

/// Requests of `log` (any answer) with this method whose path contains `path`.
fn attempted<'a>(log: &'a [RequestRecord], method: &str, path: &str) -> Vec<&'a RequestRecord> {
    log.iter()
        .filter(|r| {
            r.method.eq_ignore_ascii_case(method)
                && r.path
                    .to_ascii_lowercase()
                    .contains(&path.to_ascii_lowercase())
        })
        .collect()
}

fn stalled_message(st: &amlops::crd::ClusterStatus) -> String {
    condition(st, "Stalled")
        .filter(|c| c.status == "True")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// 403 on the compute PUT: Stalled `AuthorizationFailed` naming the operation, the scope
/// and the role, no timer: at most 2 PUTs attempted in 60 s even when something
/// reconciles it again; Ready once the role is granted (the fault removed) and the object
/// is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_compute_put_stalls_then_recovers() {
    let w = World::new().await;
    let fault = add_fault(
        &w,
        json!({"match": {"method": "PUT", "path": "/computes/deny1"}, "kind": {"type": "Forbidden"}}),
    )
    .await;
    let d = ic("deny1", "");
    let started = Instant::now();
    let st = w.stalled(&d, "AuthorizationFailed").await;
    let msg = stalled_message(&st);
    for want in [
        "compute.put",
        "AzureML Compute Operator",
        "scope /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws",
        "does not have authorization to perform action",
    ] {
        assert!(msg.contains(want), "{want:?} in {msg}");
    }
    assert_eq!(
        condition(&st, "Reconciling").map(|c| c.status.as_str()),
        Some("False"),
        "not an endless Reconciling"
    );
    // No timer: the controller reconciles again only when the spec or one of the
    // operator's annotations changes (status writes are filtered out).
    let again = w
        .engine
        .reconcile(&d, w.status(&d))
        .await
        .expect("reconcile");
    assert_eq!(again.requeue, None, "no timer on a stall");
    let puts = attempted(&w.emu.requests(), "PUT", "/computes/deny1").len();
    assert!(
        puts <= 2 && started.elapsed() < Duration::from_secs(60),
        "{puts} PUTs attempted: {:#?}",
        w.brief_log()
    );
    assert!(
        w.events(&d)
            .iter()
            .any(|e| e.warning && e.reason == "AuthorizationFailed"),
        "{:#?}",
        w.events(&d)
    );
    // The role is granted; the user touches the object.
    remove_fault(&w, fault).await;
    let touched = changed(&d, |d| d.description = Some("touched".into()));
    let st = w.ready(&touched).await;
    assert_eq!(stalled_message(&st), "");
}

/// An attachment whose compute Azure fails with the unsupported-version message: exactly
/// one PUT, no DELETE, Stalled `UnsupportedKubernetesVersion` with Azure's range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_version_stalls_at_once() {
    let w = World::new().await;
    let message = "Specified kubernetes version 1.30.4 is not supported. Supported versions are between 1.31.0 - 1.33.2";
    add_fault(
        &w,
        json!({"match": {"method": "PUT", "path": "/computes/ver1"},
               "kind": {"type": "LroFail", "code": "BadRequest", "message": message}}),
    )
    .await;
    let d = ca("ver1", "shared", "");
    let st = w.stalled(&d, "UnsupportedKubernetesVersion").await;
    assert!(
        stalled_message(&st).contains("between 1.31.0 - 1.33.2"),
        "{st:#?}"
    );
    // Stalled means stalled: more reconciles write nothing.
    for _ in 0..3 {
        w.engine
            .reconcile(&d, w.status(&d))
            .await
            .expect("reconcile");
    }
    let log = w.emu.requests();
    assert_eq!(
        attempted(&log, "PUT", "/computes/ver1").len(),
        1,
        "{:#?}",
        w.brief_log()
    );
    assert_eq!(
        attempted(&log, "DELETE", "/computes/").len(),
        0,
        "{:#?}",
        w.brief_log()
    );
    assert!(
        !w.events(&d)
            .iter()
            .any(|e| e.reason == "RetryingFailedCompute"),
        "no retry"
    );
}

/// Azure fails an attachment with "At least 3 machine(s) are required…" although the
/// checks before the write passed (the cluster lost a node meanwhile, or Azure ML counts
/// differently): Stalled `InsufficientNodes` at once, one PUT, no DELETE. (A cluster of 2
/// large nodes is refused before any write: tests/attach_checks.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_machines_stalls_at_once() {
    let w = World::new().await;
    add_fault(
        &w,
        json!({"match": {"method": "PUT", "path": "/computes/two1"},
               "kind": {"type": "LroFail", "code": "BadArgument",
                        "message": "At least 3 machine(s) are required for cluster with purpose 'FastProd'. Available machine(s) : 2"}}),
    )
    .await;
    let d = ca("two1", "shared", "clusterPurpose: FastProd");
    let st = w.stalled(&d, "InsufficientNodes").await;
    assert!(
        stalled_message(&st).contains("At least 3 machine(s) are required"),
        "{st:#?}"
    );
    for _ in 0..3 {
        w.engine
            .reconcile(&d, w.status(&d))
            .await
            .expect("reconcile");
    }
    let log = w.emu.requests();
    assert_eq!(
        attempted(&log, "PUT", "/computes/two1").len(),
        1,
        "{:#?}",
        w.brief_log()
    );
    assert_eq!(
        attempted(&log, "DELETE", "/computes/").len(),
        0,
        "{:#?}",
        w.brief_log()
    );
}

/// Someone turns the cluster autoscaler on (`az aks nodepool update
/// --enable-cluster-autoscaler`); then the spec's description and agentCount change. The
/// description is applied (one compute PUT), the pool is not scaled (no agent-pool PUT),
/// observedGeneration follows the spec, a Warning event and the Ready message say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaler_leaves_agent_count_and_applies_the_rest() {
    let w = World::new().await;
    let d = ic("auto1", "agentCount: 3");
    let st = w.ready(&d).await;
    let aks: ResourceId = st
        .aks_resource_id
        .clone()
        .expect("aks")
        .parse()
        .expect("id");
    let pool = w
        .emu
        .state()
        .clusters
        .iter()
        .find(|c| c.id.eq_ignore_ascii_case(&aks.to_string()))
        .expect("cluster")
        .agent_pools[0]
        .name
        .clone();
    let mut body = w
        .engine
        .arm
        .get_agent_pool(&aks, &pool)
        .await
        .expect("GET pool")
        .expect("pool");
    body.properties.enable_auto_scaling = Some(true);
    body.properties.extra.insert("minCount".into(), json!(1));
    body.properties.extra.insert("maxCount".into(), json!(6));
    if let LroStart::Started(h) = w
        .engine
        .arm
        .put_agent_pool(&aks, &pool, &body)
        .await
        .expect("autoscaler on")
    {
        w.engine
            .arm
            .wait_for(&h, Duration::from_secs(10))
            .await
            .expect("done");
    }
    // AKS itself now refuses a manual count.
    assert!(w.engine.arm.scale_agent_pool(&aks, &pool, 5).await.is_err());

    let mark = w.emu.requests().len();
    let d2 = changed(&d, |d| {
        d.description = Some("autoscaled".into());
        if let Flavor::Create { agent_count, .. } = &mut d.flavor {
            *agent_count = 5;
        }
    });
    let st = w.ready(&d2).await;
    let log = w.emu.requests()[mark..].to_vec();
    let compute_puts = accepted(&log, "PUT", "/computes/auto1", "");
    assert_eq!(compute_puts.len(), 1, "{:#?}", w.brief_log());
    assert_eq!(
        attempted(&log, "PUT", "/agentPools/").len(),
        0,
        "no scale attempted"
    );
    assert_eq!(
        w.emu
            .state()
            .computes
            .iter()
            .find(|c| c.name == "auto1")
            .and_then(|c| c.description.clone())
            .as_deref(),
        Some("autoscaled")
    );
    assert_eq!(st.observed_generation, d2.generation);
    assert_eq!(st.autoscaler_enabled, Some(true));
    let ready = condition(&st, "Ready").expect("Ready");
    assert!(ready.message.contains("autoscaler"), "{}", ready.message);
    assert_eq!(
        w.events(&d2)
            .iter()
            .filter(|e| e.warning && e.reason == "AutoscalerEnabled")
            .count(),
        1,
        "{:#?}",
        w.events(&d2)
    );
    // The steady state costs one read again: the autoscaler's counts are not chased.
    let mark = w.emu.requests().len();
    w.engine
        .reconcile(&d2, w.status(&d2))
        .await
        .expect("resync");
    let log = w.emu.requests()[mark..].to_vec();
    assert_eq!(log.len(), 1, "{log:#?}");
}

/// Reconciles `d` until Ready, asserting that no reconcile reads an ARM resource twice.
/// Returns the GET paths of the reconcile that started the scale.
async fn ready_reading_once(w: &World, d: &amlops::engine::Desired) -> Vec<String> {
    let mut scale_reads = Vec::new();
    for _ in 0..60 {
        let mark = w.emu.requests().len();
        let out = w.engine.reconcile(d, w.status(d)).await.expect("reconcile");
        let log = w.emu.requests()[mark..].to_vec();
        let mut reads: BTreeMap<String, usize> = BTreeMap::new();
        for r in log.iter().filter(|r| r.method == "GET") {
            *reads.entry(r.path.to_ascii_lowercase()).or_default() += 1;
        }
        let twice: Vec<_> = reads.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "read twice in one reconcile: {twice:?}");
        if matches!(
            out.status.operation,
            Some(OperationStatus {
                kind: amlops::azure::OperationKind::Scale,
                ..
            })
        ) && scale_reads.is_empty()
        {
            scale_reads = log
                .iter()
                .filter(|r| r.method == "GET")
                .map(|r| r.path.clone())
                .collect();
        }
        if is_ready(&out.status, d) {
            return scale_reads;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not Ready: {:#?}", w.status(d));
}

/// A scale reads the managed cluster once (the pool name, the count and the autoscaler
/// state come from that one GET); no reconcile of a create or a scale reads anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_reads_the_managed_cluster_once() {
    let w = World::new().await;
    let d = ic("scaleonce", "agentCount: 3");
    ready_reading_once(&w, &d).await;
    let d2 = changed(&d, |d| {
        if let Flavor::Create { agent_count, .. } = &mut d.flavor {
            *agent_count = 5;
        }
    });
    let reads = ready_reading_once(&w, &d2).await;
    let cluster_reads = reads
        .iter()
        .filter(|p| {
            p.to_ascii_lowercase()
                .ends_with("/managedclusters/scaleonce")
                || {
                    let p = p.to_ascii_lowercase();
                    p.contains("/managedclusters/") && !p.contains("/agentpools")
                }
        })
        .count();
    assert_eq!(cluster_reads, 1, "{reads:#?}");
    let state = w.emu.state();
    assert!(
        state.clusters.iter().any(|c| c.agent_pools[0].count == 5),
        "scaled"
    );
}

/// Azure forgets an operation: its `Azure-AsyncOperation` URL answers 404 (the operation's
/// record expired, or a status restored from a backup names an old one). The engine reads
/// the compute instead of polling a dead URL forever: the operation leaves the status, the
/// resource stays Ready, no verdict and no write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_operation_is_read_from_the_resource() {
    let w = World::new().await;
    let d = ic("forgot1", "");
    let mut st = w.ready(&d).await;
    let before = w.emu.requests().len();
    st.operation = Some(OperationStatus {
        kind: amlops::azure::OperationKind::Update,
        url: format!(
            "{}/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/eastus/computeOperationsStatus/00000000-0000-0000-0000-00000000dead?api-version={}",
            w.emu.base_url(),
            amlops::azure::MLS_API_VERSION
        ),
        style: None,
        started_at: None,
    });
    let out = w.engine.reconcile(&d, st).await.expect("reconcile");
    assert!(out.verdict.is_none(), "{:?}", out.verdict);
    assert!(out.status.operation.is_none(), "{:?}", out.status.operation);
    assert!(is_ready(&out.status, &d), "{:#?}", out.status);
    let log = w.emu.requests()[before..].to_vec();
    let polls = attempted(&log, "GET", "/computeOperationsStatus/");
    assert_eq!(polls.len(), 1, "one poll: {log:#?}");
    assert_eq!(polls[0].status, 404);
    assert_eq!(
        attempted(&log, "GET", "/computes/forgot1").len(),
        1,
        "{log:#?}"
    );
    assert!(log.iter().all(|r| r.method == "GET"), "no write: {log:#?}");
}
