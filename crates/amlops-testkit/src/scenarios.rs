//! The engine scenarios of issue 4, written once and run twice: fault-free with exact
//! request counts (`crates/amlops/tests/engine_scenarios.rs`) and under injected 429/503 plus a failed
//! long-running operation (`crates/amlops/tests/engine_faults.rs`), where each failed operation may add
//! one retry to the counts. Every scenario starts with a fresh emulator.

use std::time::Duration;

use amlops::azure::{LroStart, OperationKind, ResourceId, UnderlyingResourceAction};
use amlops::crd::{ClusterPurpose, LoadBalancerSpec, LoadBalancerType, Phase, SecretRef, TlsMode};
use amlops::engine::desired::Flavor;
use amlops::engine::store::{Claim, ObjKey};
use amlops_emulator::{ClusterSeed, FaultKind, FaultMatch, FaultRule, PoolSeed};

use super::*;

/// Every scenario, by name, for the fault run.
pub const ALL: &[&str] = &[
    "create_ready",
    "attach_custom_tls",
    "auto_tls_reattach_keeps_certificate",
    "custom_certificate_rotation",
    "scale_3_to_5",
    "ilb_switch_in_place",
    "conflict_already_attached_no_write",
    "conflict_claimed_by_another_resource_no_write",
    "fastprod_too_few_vcpus_no_write",
    "delete_created",
    "delete_created_then_reattached",
    "detach_keeps_tls_backup",
    "orphan_touches_nothing",
    "adopt_annotation",
    "drift_recreated_with_warning",
    "failed_compute_retry_bounded",
    "failed_reattach_of_created_cluster_reattaches_same_cluster",
    "failed_detach_during_reattach_keeps_cluster_and_certificate",
    "manual_reattach_policy_waits_for_annotation",
    "dynamic_checks_stall_without_write",
    "never_detach_without_a_verified_certificate",
];

/// Runs the scenario called `name`.
pub async fn run(name: &str, w: &World) {
    match name {
        "create_ready" => create_ready(w).await,
        "attach_custom_tls" => attach_custom_tls(w).await,
        "auto_tls_reattach_keeps_certificate" => auto_tls_reattach_keeps_certificate(w).await,
        "custom_certificate_rotation" => custom_certificate_rotation(w).await,
        "scale_3_to_5" => scale_3_to_5(w).await,
        "ilb_switch_in_place" => ilb_switch_in_place(w).await,
        "conflict_already_attached_no_write" => conflict_already_attached_no_write(w).await,
        "conflict_claimed_by_another_resource_no_write" => {
            conflict_claimed_by_another_resource_no_write(w).await
        }
        "fastprod_too_few_vcpus_no_write" => fastprod_too_few_vcpus_no_write(w).await,
        "delete_created" => delete_created(w).await,
        "delete_created_then_reattached" => delete_created_then_reattached(w).await,
        "detach_keeps_tls_backup" => detach_keeps_tls_backup(w).await,
        "orphan_touches_nothing" => orphan_touches_nothing(w).await,
        "adopt_annotation" => adopt_annotation(w).await,
        "drift_recreated_with_warning" => drift_recreated_with_warning(w).await,
        "failed_compute_retry_bounded" => failed_compute_retry_bounded(w).await,
        "failed_reattach_of_created_cluster_reattaches_same_cluster" => {
            failed_reattach_of_created_cluster_reattaches_same_cluster(w).await
        }
        "failed_detach_during_reattach_keeps_cluster_and_certificate" => {
            failed_detach_during_reattach_keeps_cluster_and_certificate(w).await
        }
        "manual_reattach_policy_waits_for_annotation" => {
            manual_reattach_policy_waits_for_annotation(w).await
        }
        "dynamic_checks_stall_without_write" => dynamic_checks_stall_without_write(w).await,
        "never_detach_without_a_verified_certificate" => {
            never_detach_without_a_verified_certificate(w).await
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// A reattach requested through the `amlops.dev/reattach` annotation (no generation bump:
/// annotations are metadata).
fn reattach(d: &Desired, token: &str) -> Desired {
    let mut d = d.clone();
    d.reattach_token = Some(token.into());
    d
}

/// Converges a reattach requested by `token` (the annotation does not bump the generation,
/// so "Ready" alone could be the state from before).
async fn reattached(w: &World, d: &Desired) -> ClusterStatus {
    w.converge(d, "reattached", |s, _| {
        is_ready(s, d) && s.last_reattach_token == d.reattach_token
    })
    .await
}

fn compute(w: &World, name: &str) -> amlops_emulator::ComputeView {
    w.emu
        .state()
        .compute(name)
        .cloned()
        .unwrap_or_else(|| panic!("compute {name} missing in the emulator"))
}

fn cluster_exists(w: &World, id: &str) -> bool {
    w.emu
        .state()
        .clusters
        .iter()
        .any(|c| c.id.eq_ignore_ascii_case(id))
}

fn cluster_count(w: &World) -> usize {
    w.emu.state().clusters.len()
}

/// Retries an out-of-band step (done by "someone else", not the operator) a few times:
/// the client already retries throttling, this covers a run of bad luck under faults.
async fn oob<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, amlops::azure::AzureError>>,
{
    let mut last = None;
    for _ in 0..5 {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                last = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    panic!("{what}: {last:?}")
}

/// Attaches seeded cluster `aks` as compute `name` behind the operator's back and waits
/// for Azure to finish.
async fn attach_out_of_band(w: &World, name: &str, aks: &str) {
    let d = ca(name, aks, "");
    let body = amlops::engine::body::provision_body(&d, "eastus", None, None);
    let id = ResourceId::compute(SUB, "ml-rg", "ml-ws", name).expect("id");
    let start = oob("out-of-band attach", || {
        w.engine.arm.put_compute(&id, &body, OperationKind::Attach)
    })
    .await;
    if let LroStart::Started(h) = start {
        let status = oob("out-of-band attach poll", || {
            w.engine.arm.wait_for(&h, Duration::from_secs(10))
        })
        .await;
        assert!(
            matches!(status, amlops::azure::OperationStatus::Succeeded),
            "{status:?}"
        );
    }
}

/// create → Ready; steady state makes no write.
pub async fn create_ready(w: &World) {
    w.start_faults();
    let d = ic("create1", "");
    let st = w.ready(&d).await;
    let c = compute(w, "create1");
    assert_eq!(c.provisioning_state, "Succeeded");
    assert!(!c.is_attached_compute, "a created compute");
    let aks = st.aks_resource_id.clone().expect("status.aksResourceId");
    assert_eq!(c.resource_id.as_deref(), Some(aks.as_str()));
    assert!(cluster_exists(w, &aks));
    assert_eq!(st.agent_count, Some(3));
    assert_eq!(
        st.compute_id.as_deref().map(str::to_ascii_lowercase),
        Some(d.compute_id().to_ascii_lowercase())
    );
    assert!(condition(&st, "Stalled").is_some_and(|c| c.status == "False"));
    assert!(condition(&st, "Reconciling").is_some_and(|c| c.status == "False"));
    w.expect_accepted("PUT", "/computes/create1", "", 1, "one create");
    w.expect_accepted("DELETE", "/computes/", "", 0, "no delete");
    let phases: Vec<String> = w.events(&d).iter().map(|e| e.reason.clone()).collect();
    assert!(
        phases.contains(&"Creating".to_string()) && phases.contains(&"Ready".to_string()),
        "{phases:?}"
    );

    // Steady state: no write, Ready stays, and the three resyncs cost one list of the
    // workspace (answering them for half the base interval) instead of a GET each.
    let writes = w.writes().len();
    let requests = w.emu.requests().len();
    for _ in 0..3 {
        let o = w.engine.reconcile(&d, w.status(&d)).await;
        if let Ok(o) = o {
            assert!(is_ready(&o.status, &d));
        }
    }
    assert_eq!(w.writes().len(), writes, "steady state must not write");
    // The legacy path is said once (first Ready), not on every resync.
    let legacy = w
        .events(&d)
        .iter()
        .filter(|e| e.reason == "LegacyComputePath")
        .count();
    assert_eq!(legacy, 1, "{:?}", w.events(&d));
    if !w.faults {
        let log = w.emu.requests();
        let steady: Vec<_> = log[requests..]
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            steady,
            [
                "GET /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws/computes"
            ],
            "one list for three resyncs"
        );
    }
}

/// attach with Custom TLS → Ready, the user's certificate served.
pub async fn attach_custom_tls(w: &World) {
    let (secret, fp) = tls_secret("scoring-tls", "scoring.contoso.com");
    w.store.insert_secret(secret);
    w.start_faults();
    let d = ca(
        "custom1",
        "shared",
        "tls: {mode: Custom, cname: scoring.contoso.com, secretRef: {name: scoring-tls}}",
    );
    let st = w.ready(&d).await;
    let c = compute(w, "custom1");
    assert!(c.is_attached_compute);
    assert_eq!(c.ssl_status, "Enabled");
    assert_eq!(c.cluster_fqdn.as_deref(), Some("scoring.contoso.com"));
    assert_eq!(w.served_fingerprint(&aks_id("shared")), Some(fp.clone()));
    assert_eq!(tls_fp(&st), Some(fp));
    w.expect_accepted("PUT", "/computes/custom1", "", 1, "one attach");
}

/// Auto TLS stays Microsoft-issued: a reattach (annotation) backs the certificate up, then
/// sends `Auto` with the same label and `overwriteExistingDomain: true`, so the host name
/// (and its DNS record, which the detach removed with the public IP) comes back; a new
/// label, Auto → Custom with the backup Secret, and a rotation in it all change TLS in
/// place (no detach, `azuremlfessl` never absent).
pub async fn auto_tls_reattach_keeps_certificate(w: &World) {
    w.start_faults();
    let d = ic(
        "autotls",
        "vmSize: Standard_D4_v2\ntls: {mode: Auto, leafDomainLabel: contoso}",
    );
    let st = w.ready(&d).await;
    let aks = st.aks_resource_id.clone().expect("aks id");
    let f1 = w
        .served_fingerprint(&aks)
        .expect("Azure ML issued a certificate");
    let host = st.cluster_fqdn.clone().expect("fqdn");
    assert!(host.starts_with("contoso"), "{host}");
    assert!(w.emu.state().dns_records.contains(&host), "{host} resolves");
    assert_eq!(
        tls_fp(&st),
        Some(f1.clone()),
        "status records the served certificate"
    );
    let backup = st.tls.as_ref().and_then(|t| t.backup_secret_name.clone());
    assert_eq!(backup.as_deref(), Some("autotls-tls-backup"));
    assert_eq!(
        secret_fingerprint(&w.store, "autotls-tls-backup"),
        Some(f1.clone())
    );

    // Reattach annotation (updates Azure ML's components): backed up first, then Auto
    // again with the same label — same host name, resolving again, still Microsoft-issued.
    w.emu.clear_requests();
    let d2 = reattach(&d, "r1");
    let st = reattached(w, &d2).await;
    let log = w.emu.requests();
    let first = |pred: &dyn Fn(&amlops_emulator::RequestRecord) -> bool| {
        log.iter()
            .position(|r| pred(r) && (200..300).contains(&r.status))
    };
    let backup_read = first(&|r| r.method == "GET" && r.path.contains("azuremlfessl"))
        .expect("the certificate was read");
    let detach = first(&|r| r.method == "DELETE" && r.query.contains("Detach")).expect("detach");
    assert!(backup_read < detach, "backup before the detach");
    assert_eq!(
        st.cluster_fqdn.as_deref(),
        Some(host.as_str()),
        "host name preserved"
    );
    assert!(
        w.emu.state().dns_records.contains(&host),
        "{host} resolves again"
    );
    let c = compute(w, "autotls");
    assert_eq!(c.ssl_status, "Auto", "still Microsoft-issued");
    assert!(
        c.is_attached_compute,
        "a reattached compute is an attached one"
    );
    assert_eq!(
        c.resource_id.as_deref(),
        Some(aks.as_str()),
        "same AKS cluster"
    );
    let f1b = w.served_fingerprint(&aks).expect("served");
    assert_eq!(tls_fp(&st), Some(f1b.clone()), "status follows what serves");
    assert_eq!(
        secret_fingerprint(&w.store, "autotls-tls-backup"),
        Some(f1b.clone()),
        "the backup follows the re-issued certificate"
    );
    w.expect_accepted("DELETE", "/computes/autotls", "Detach", 1, "one detach");
    w.expect_accepted("PUT", "/computes/autotls", "", 1, "the reattach");

    // New label: in place, a new certificate for the new name; the old name is released.
    w.emu.clear_requests();
    let d3 = changed(&d2, |d| d.tls.leaf_domain_label = Some("fabrikam".into()));
    let st = w.ready(&d3).await;
    let f2 = w.served_fingerprint(&aks).expect("new certificate");
    assert_ne!(f2, f1b, "a new label means a new certificate");
    let host2 = st.cluster_fqdn.clone().expect("fqdn");
    assert!(host2.starts_with("fabrikam"), "{host2}");
    let dns = w.emu.state().dns_records;
    assert!(dns.contains(&host2) && !dns.contains(&host), "{dns:?}");
    assert_eq!(tls_fp(&st), Some(f2.clone()));
    assert_eq!(
        secret_fingerprint(&w.store, "autotls-tls-backup"),
        Some(f2.clone())
    );

    // Auto → Custom with the backed-up certificate and its host name: in place, kept.
    let d4 = changed(&d3, |d| {
        d.tls.mode = TlsMode::Custom;
        d.tls.leaf_domain_label = None;
        d.tls.cname = Some(host2.clone());
        d.tls.secret_ref = Some(SecretRef {
            name: "autotls-tls-backup".into(),
        });
    });
    let st = w.ready(&d4).await;
    assert_eq!(w.served_fingerprint(&aks), Some(f2.clone()));
    assert_eq!(st.cluster_fqdn.as_deref(), Some(host2.as_str()));
    assert_eq!(compute(w, "autotls").ssl_status, "Enabled");

    // The backup Secret is now the user's Secret: a rotation in it is served in place, not
    // overwritten by the backup of the certificate it replaces.
    let (rotated, f3) = tls_secret("autotls-tls-backup", &host2);
    w.store.insert_secret(rotated);
    let absent = std::sync::atomic::AtomicBool::new(false);
    let st = w
        .converge(&d4, "serving the rotated certificate", |s, _| {
            if w.served_fingerprint(&aks).is_none() {
                absent.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            is_ready(s, &d4) && tls_fp(s).as_deref() == Some(f3.as_str())
        })
        .await;
    assert!(
        !absent.load(std::sync::atomic::Ordering::SeqCst),
        "azuremlfessl was never absent"
    );
    assert_eq!(w.served_fingerprint(&aks), Some(f3.clone()));
    assert_eq!(secret_fingerprint(&w.store, "autotls-tls-backup"), Some(f3));
    assert_eq!(st.cluster_fqdn.as_deref(), Some(host2.as_str()));
    w.expect_accepted("DELETE", "", "", 0, "TLS changes in place: no DELETE");
    w.expect_accepted(
        "PUT",
        "/computes/autotls",
        "",
        3,
        "label, Auto → Custom, rotation: three updates",
    );
    assert!(cluster_exists(w, &aks));
}

/// The user replaces the certificate in the Secret (same name): detected by fingerprint and
/// sent in place (GET-modify-PUT, as the SDK's `AksCompute.update` does) — no detach,
/// `azuremlfessl` never absent — then quiet.
pub async fn custom_certificate_rotation(w: &World) {
    let (a, fa) = tls_secret("rotate-tls", "scoring.contoso.com");
    w.store.insert_secret(a);
    w.start_faults();
    let d = ca(
        "rotate1",
        "shared",
        "tls: {mode: Custom, cname: scoring.contoso.com, secretRef: {name: rotate-tls}}",
    );
    w.ready(&d).await;
    let aks = aks_id("shared");
    assert_eq!(w.served_fingerprint(&aks), Some(fa.clone()));

    let (b, fb) = tls_secret("rotate-tls", "scoring.contoso.com");
    w.store.insert_secret(b);
    let absent = std::sync::atomic::AtomicBool::new(false);
    let st = w
        .converge(&d, "serving the rotated certificate", |s, _| {
            if w.served_fingerprint(&aks).is_none() {
                absent.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            is_ready(s, &d) && tls_fp(s).as_deref() == Some(fb.as_str())
        })
        .await;
    assert!(
        !absent.load(std::sync::atomic::Ordering::SeqCst),
        "azuremlfessl was never absent"
    );
    assert_eq!(w.served_fingerprint(&aks), Some(fb.clone()));
    assert_eq!(tls_fp(&st), Some(fb));
    assert_eq!(
        compute(w, "rotate1").cluster_fqdn.as_deref(),
        Some("scoring.contoso.com")
    );
    w.expect_accepted("DELETE", "", "", 0, "in place: no detach");
    w.expect_accepted("PUT", "/computes/rotate1", "", 2, "attach + update");
    assert!(
        w.events(&d).iter().any(|e| e.reason == "TLSUpdating"),
        "{:?}",
        w.events(&d)
    );
    // Quiet afterwards: the new fingerprint is the applied one.
    let writes = w.writes().len();
    w.ready(&d).await;
    w.ready(&d).await;
    assert_eq!(w.writes().len(), writes, "no update loop");
}

/// agentCount 3 → 5 through the AKS agent pool; the compute is not touched.
pub async fn scale_3_to_5(w: &World) {
    w.start_faults();
    let d = ic("scale1", "agentCount: 3");
    let st = w.ready(&d).await;
    let aks = st.aks_resource_id.clone().expect("aks id");
    let d2 = changed(&d, |d| {
        if let Flavor::Create { agent_count, .. } = &mut d.flavor {
            *agent_count = 5;
        }
    });
    let st = w.ready(&d2).await;
    assert_eq!(st.agent_count, Some(5));
    let state = w.emu.state();
    let cluster = state
        .clusters
        .iter()
        .find(|c| c.id.eq_ignore_ascii_case(&aks))
        .expect("cluster");
    assert_eq!(cluster.agent_pools[0].count, 5, "{:?}", cluster.agent_pools);
    w.expect_accepted("PUT", "/agentPools/", "", 1, "one agent pool PUT");
    w.expect_accepted(
        "PUT",
        "/computes/scale1",
        "",
        1,
        "compute untouched by the scale",
    );
    w.expect_accepted("DELETE", "", "", 0, "no delete");
}

/// PublicIp → InternalLoadBalancer in place: GET-modify-PUT, no detach, no delete.
pub async fn ilb_switch_in_place(w: &World) {
    w.start_faults();
    let d = ic("ilb1", "");
    let st = w.ready(&d).await;
    let aks = st.aks_resource_id.clone();
    let d2 = changed(&d, |d| {
        d.load_balancer = LoadBalancerSpec {
            type_: LoadBalancerType::InternalLoadBalancer,
            subnet: Some("aks-subnet".into()),
        };
        d.description = Some("internal scoring".into());
    });
    let st = w.ready(&d2).await;
    let c = compute(w, "ilb1");
    assert_eq!(c.load_balancer_type, "InternalLoadBalancer");
    assert_eq!(c.description.as_deref(), Some("internal scoring"));
    assert!(!c.is_attached_compute, "still the created compute");
    assert_eq!(st.aks_resource_id, aks);
    w.expect_accepted("DELETE", "", "", 0, "in place: no DELETE at all");
    w.expect_accepted("PUT", "/computes/ilb1", "", 2, "create + update");
    let warning = w
        .events(&d2)
        .into_iter()
        .find(|e| e.reason == "LoadBalancerChanged")
        .expect("a Warning to repoint DNS");
    assert!(
        warning.warning && warning.message.contains("new IP address"),
        "{warning:?}"
    );
    assert_eq!(
        st.cluster_fqdn,
        compute(w, "ilb1").cluster_fqdn,
        "status.clusterFqdn refreshed"
    );
}

/// The AKS cluster is already attached under another compute: Stalled, no write.
pub async fn conflict_already_attached_no_write(w: &World) {
    attach_out_of_band(w, "legacy", "shared").await;
    w.start_faults();
    let before = w.writes().len();
    let d = ca("second", "shared", "");
    let st = w.stalled(&d, "AlreadyAttached").await;
    let msg = &condition(&st, "Stalled").expect("Stalled").message;
    assert!(msg.contains("legacy"), "names the other compute: {msg}");
    assert!(condition(&st, "Ready").is_some_and(|c| c.status == "False"));
    // Waiting for the user: more reconciles neither write nor repeat the event.
    for _ in 0..3 {
        let _ = w.engine.reconcile(&d, w.status(&d)).await;
    }
    assert_eq!(
        w.writes().len(),
        before,
        "no Azure write: {:#?}",
        w.brief_log()
    );
    let warnings = w
        .events(&d)
        .iter()
        .filter(|e| e.warning && e.reason == "AlreadyAttached")
        .count();
    assert_eq!(warnings, 1, "one Warning event");
    assert!(w.emu.state().compute("second").is_none());
    assert_eq!(
        compute(w, "legacy").provisioning_state,
        "Succeeded",
        "the earlier compute is not broken"
    );
}

/// Another resource claims the same AKS cluster: Stalled NameConflict, no write.
pub async fn conflict_claimed_by_another_resource_no_write(w: &World) {
    w.start_faults();
    let other = ca("first", "shared", "");
    // Neither owns a compute yet: the first by creation time (then name) goes first.
    w.store.set_claim(Claim {
        aks_id: Some(aks_id("shared")),
        ..Claim::of(&other)
    });
    let d = ca("second", "shared", "");
    w.stalled(&d, "NameConflict").await;
    // The same compute name is managed by a resource in another namespace.
    let mine = ic("first", "");
    w.store.set_claim(Claim {
        key: ObjKey {
            namespace: "team-b".into(),
            ..mine.key()
        },
        owns: true,
        ..Claim::of(&mine)
    });
    w.stalled(&mine, "NameConflict").await;
    assert!(
        w.writes().is_empty(),
        "no Azure write: {:#?}",
        w.brief_log()
    );
}

/// FastProd below 12 vCPUs, create and attach: Stalled InsufficientVCPUs, no write.
pub async fn fastprod_too_few_vcpus_no_write(w: &World) {
    w.emu.seed_aks_cluster(
        SUB,
        ClusterSeed {
            resource_group: "aks-rg".into(),
            name: "tiny".into(),
            agent_pools: vec![PoolSeed {
                count: 3,
                vm_size: "Standard_D2_v2".into(),
                ..PoolSeed::default()
            }],
            ..ClusterSeed::default()
        },
    );
    w.start_faults();
    let d = ic("small1", "agentCount: 3\nvmSize: Standard_D2_v2");
    let st = w.stalled(&d, "InsufficientVCPUs").await;
    let msg = &condition(&st, "Stalled").expect("Stalled").message;
    assert!(msg.contains("6 vCPUs") && msg.contains("12"), "{msg}");
    let a = ca("small2", "tiny", "clusterPurpose: FastProd");
    w.stalled(&a, "InsufficientVCPUs").await;
    // DevTest has no minimum: the same cluster attaches.
    let dev = ca("small3", "tiny", "clusterPurpose: DevTest");
    assert!(
        w.writes().is_empty(),
        "no Azure write: {:#?}",
        w.brief_log()
    );
    w.ready(&dev).await;
}

/// deletionPolicy Delete of a created compute: the compute and its AKS cluster go.
pub async fn delete_created(w: &World) {
    w.start_faults();
    let d = ic("del1", "");
    let st = w.ready(&d).await;
    let aks = st.aks_resource_id.clone().expect("aks id");
    w.gone(&deleting(&d)).await;
    assert!(w.emu.state().compute("del1").is_none());
    assert!(
        !cluster_exists(w, &aks),
        "Delete removes the AKS cluster Azure ML created"
    );
    w.expect_accepted("DELETE", "/computes/del1", "=Delete", 1, "one delete");
    w.expect_accepted("DELETE", "/computes/del1", "Detach", 0, "no detach");
}

/// deletionPolicy Delete of a created compute that became attached after a reattach: Azure
/// refuses Delete on it, so detach, then delete the managed cluster.
pub async fn delete_created_then_reattached(w: &World) {
    w.start_faults();
    let d = ic("del2", "");
    let st = w.ready(&d).await;
    let aks = st.aks_resource_id.clone().expect("aks id");
    let d2 = reattach(&d, "r1");
    reattached(w, &d2).await;
    assert!(compute(w, "del2").is_attached_compute);
    let mark = w.emu.requests().len();
    w.gone(&deleting(&d2)).await;
    assert!(w.emu.state().compute("del2").is_none());
    assert!(
        !cluster_exists(w, &aks),
        "the managed cluster is deleted too"
    );
    w.expect_accepted(
        "DELETE",
        "/computes/del2",
        "Detach",
        2,
        "reattach + deletion",
    );
    w.expect_accepted("DELETE", "/managedClusters/", "", 1, "one cluster delete");
    assert!(
        w.emu.requests()[mark..]
            .iter()
            .all(|r| !(r.method == "DELETE" && r.query.contains("=Delete"))),
        "never asks Azure to Delete an attached compute: {:#?}",
        w.brief_log()
    );
}

/// deletionPolicy Detach with Auto TLS: the certificate is backed up before the detach and
/// the backup Secret outlives the resource; the AKS cluster keeps running.
pub async fn detach_keeps_tls_backup(w: &World) {
    w.start_faults();
    let d = ic(
        "det1",
        "vmSize: Standard_D4_v2\ntls: {mode: Auto, leafDomainLabel: keepme}\ndeletionPolicy: Detach",
    );
    let st = w.ready(&d).await;
    let aks = st.aks_resource_id.clone().expect("aks id");
    let served = w.served_fingerprint(&aks).expect("certificate");
    // Lose the backup taken at Ready: the deletion must take its own before detaching.
    w.store.insert_secret(k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("det1-tls-backup".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        ..Default::default()
    });
    w.gone(&deleting(&d)).await;
    assert!(w.emu.state().compute("det1").is_none());
    assert!(cluster_exists(w, &aks), "Detach keeps the AKS cluster");
    assert_eq!(
        w.served_fingerprint(&aks),
        None,
        "the detach removed azuremlfessl"
    );
    assert_eq!(
        secret_fingerprint(&w.store, "det1-tls-backup"),
        Some(served),
        "the backup holds the certificate that was served"
    );
    let backup = w.store.secret(NS, "det1-tls-backup").expect("backup");
    assert!(
        backup.metadata.owner_references.is_none(),
        "not owner-referenced"
    );
    w.expect_accepted("DELETE", "/computes/det1", "Detach", 1, "one detach");
    w.expect_accepted("DELETE", "/computes/det1", "=Delete", 0, "no delete");
}

/// deletionPolicy Orphan: finished without touching Azure.
pub async fn orphan_touches_nothing(w: &World) {
    w.start_faults();
    let d = ic("orphan1", "deletionPolicy: Orphan");
    w.ready(&d).await;
    let writes = w.writes().len();
    w.gone(&deleting(&d)).await;
    assert_eq!(w.writes().len(), writes, "Orphan writes nothing");
    assert_eq!(compute(w, "orphan1").provisioning_state, "Succeeded");
}

/// A compute made outside the operator: ComputeExists until `amlops.dev/adopt: "true"`,
/// then adopted without a write; a later purpose change reattaches it.
pub async fn adopt_annotation(w: &World) {
    attach_out_of_band(w, "legacy", "shared").await;
    w.start_faults();
    let writes = w.writes().len();
    let d = ca("legacy", "shared", "");
    w.stalled(&d, "ComputeExists").await;
    let mut adopt = d.clone();
    adopt.adopt = true;
    let st = w.ready(&adopt).await;
    assert!(st.compute_id.is_some());
    assert_eq!(w.writes().len(), writes, "adoption writes nothing");
    assert!(w.events(&adopt).iter().any(|e| e.reason == "Adopted"));
    // Now it is ours: a purpose change goes through a reattach.
    let d2 = changed(&adopt, |d| d.purpose = ClusterPurpose::DevTest);
    w.ready(&d2).await;
    assert_eq!(compute(w, "legacy").cluster_purpose, "DevTest");
}

/// Removes compute `name` behind the operator's back and waits for Azure.
async fn remove_out_of_band(w: &World, name: &str, action: UnderlyingResourceAction) {
    let id = ResourceId::compute(SUB, "ml-rg", "ml-ws", name).expect("id");
    let start = oob("out-of-band delete", || {
        w.engine.arm.delete_compute(&id, action)
    })
    .await;
    if let LroStart::Started(h) = start {
        oob("out-of-band delete poll", || {
            w.engine.arm.wait_for(&h, Duration::from_secs(10))
        })
        .await;
    }
    assert!(w.emu.state().compute(name).is_none());
}

/// Drift: the compute is removed behind the operator's back. Detached (its cluster still
/// runs): attached again, same cluster, and — TLS Auto — the same host name with a
/// Microsoft-issued certificate. Deleted with its cluster: created again. Both with a
/// Warning event.
pub async fn drift_recreated_with_warning(w: &World) {
    w.start_faults();
    let d = ic(
        "drift1",
        "vmSize: Standard_D4_v2\ntls: {mode: Auto, leafDomainLabel: drifty}",
    );
    let st = w.ready(&d).await;
    let aks = st.aks_resource_id.clone().expect("aks id");
    let host = st.cluster_fqdn.clone().expect("fqdn");
    let clusters = cluster_count(w);

    remove_out_of_band(w, "drift1", UnderlyingResourceAction::Detach).await;
    let drifts = |w: &World| {
        w.events(&d)
            .iter()
            .filter(|e| e.warning && e.reason == "DriftDetected")
            .count()
    };
    let st = w.ready(&d).await;
    assert_eq!(drifts(w), 1, "Warning event: {:#?}", w.events(&d));
    let c = compute(w, "drift1");
    assert_eq!(
        c.resource_id.as_deref(),
        Some(aks.as_str()),
        "the same cluster"
    );
    assert_eq!(cluster_count(w), clusters, "no second cluster");
    assert_eq!(c.ssl_status, "Auto", "still Microsoft-issued");
    assert_eq!(
        st.cluster_fqdn.as_deref(),
        Some(host.as_str()),
        "same host name"
    );
    assert_eq!(tls_fp(&st), w.served_fingerprint(&aks));

    // Now everything goes: the (attached) compute and the cluster.
    remove_out_of_band(w, "drift1", UnderlyingResourceAction::Detach).await;
    let cluster_id: ResourceId = aks.parse().expect("aks id");
    let start = oob("out-of-band cluster delete", || {
        w.engine.arm.delete_managed_cluster(&cluster_id)
    })
    .await;
    if let LroStart::Started(h) = start {
        oob("out-of-band cluster delete poll", || {
            w.engine.arm.wait_for(&h, Duration::from_secs(10))
        })
        .await;
    }
    assert!(!cluster_exists(w, &aks));
    let st = w.ready(&d).await;
    assert_eq!(drifts(w), 2, "Warning event: {:#?}", w.events(&d));
    let new_aks = st.aks_resource_id.clone().expect("aks id");
    assert_ne!(new_aks, aks, "a new cluster");
    assert!(!compute(w, "drift1").is_attached_compute, "created again");
    let f2 = w.served_fingerprint(&new_aks).expect("a new certificate");
    assert_eq!(
        tls_fp(&st),
        Some(f2.clone()),
        "status follows the new certificate"
    );
    assert_eq!(
        secret_fingerprint(&w.store, "drift1-tls-backup"),
        Some(f2),
        "and so does the backup"
    );
    w.expect_accepted(
        "PUT",
        "/computes/drift1",
        "",
        3,
        "create, reattach after the detach, create",
    );
}

/// A compute that keeps failing for a cause a retry may fix (Azure's own failure): deleted
/// and created again at most maxRetries times, then Stalled; a new reattach annotation is
/// the user's "try again". (Causes a retry reproduces stall at once: `engine_verdicts.rs`.)
pub async fn failed_compute_retry_bounded(w: &World) {
    w.start_faults();
    let always_fails = w.emu.inject_fault(FaultRule {
        id: 0,
        matcher: FaultMatch {
            method: Some("PUT".into()),
            path: Some("/computes/failing1".into()),
            operation: None,
        },
        kind: FaultKind::LroFail {
            code: "InternalServerError".into(),
            message: "An internal server error occurred.".into(),
        },
        times: None,
        probability: None,
    });
    let d = ic("failing1", "maxRetries: 2");
    let st = w.stalled(&d, "ComputeFailed").await;
    let msg = &condition(&st, "Stalled").expect("Stalled").message;
    assert!(
        msg.contains("An internal server error occurred."),
        "Azure's error reaches the user: {msg}"
    );
    assert_eq!(
        st.provisioning_errors.len(),
        1,
        "{:?}",
        st.provisioning_errors
    );
    w.expect_accepted("PUT", "/computes/failing1", "", 3, "first try + 2 retries");
    w.expect_accepted(
        "DELETE",
        "/computes/failing1",
        "=Delete",
        2,
        "each retry deletes the failed create",
    );
    let retries = w
        .events(&d)
        .iter()
        .filter(|e| e.reason == "RetryingFailedCompute")
        .count();
    assert_eq!(retries, 2);
    // Stalled means stalled: no more writes until the user acts.
    let writes = w.writes().len();
    let _ = w.engine.reconcile(&d, w.status(&d)).await;
    assert_eq!(w.writes().len(), writes);
    // The cause is fixed; the annotation asks for another try.
    w.emu.remove_fault(always_fails);
    let d2 = reattach(&d, "try-again");
    reattached(w, &d2).await;
    assert_eq!(compute(w, "failing1").provisioning_state, "Succeeded");
}

/// Fix: a created cluster that became attached after a reattach, then Failed, is detached
/// and attached again to the same AKS cluster, never replaced by a new one.
pub async fn failed_reattach_of_created_cluster_reattaches_same_cluster(w: &World) {
    w.start_faults();
    let d = ic("reatt1", "");
    let st = w.ready(&d).await;
    let aks = st.aks_resource_id.clone().expect("aks id");
    let clusters = cluster_count(w);
    w.emu.inject_fault(FaultRule {
        id: 0,
        matcher: FaultMatch {
            method: Some("PUT".into()),
            path: Some("/computes/reatt1".into()),
            operation: None,
        },
        kind: FaultKind::LroFail {
            code: "InternalServerError".into(),
            message: "An internal server error occurred.".into(),
        },
        times: Some(1),
        probability: None,
    });
    let d2 = reattach(&d, "r1");
    let st = reattached(w, &d2).await;
    let c = compute(w, "reatt1");
    assert!(c.is_attached_compute);
    assert_eq!(
        c.resource_id.as_deref(),
        Some(aks.as_str()),
        "the same cluster"
    );
    assert_eq!(st.aks_resource_id.as_deref(), Some(aks.as_str()));
    assert_eq!(cluster_count(w), clusters, "no new AKS cluster");
    w.expect_accepted("DELETE", "/computes/reatt1", "=Delete", 0, "never deleted");
    w.expect_accepted(
        "DELETE",
        "/computes/reatt1",
        "Detach",
        2,
        "reattach + retry",
    );
    w.expect_accepted(
        "PUT",
        "/computes/reatt1",
        "",
        3,
        "create, failed attach, attach",
    );
    assert!(
        w.events(&d2)
            .iter()
            .any(|e| e.reason == "RetryingFailedCompute")
    );
}

/// A detach that fails half-way through a reattach is retried as a detach: the created
/// cluster stays, its certificate was backed up before, and its Auto host name comes back.
pub async fn failed_detach_during_reattach_keeps_cluster_and_certificate(w: &World) {
    w.start_faults();
    let d = ic(
        "detfail1",
        "vmSize: Standard_D4_v2\ntls: {mode: Auto, leafDomainLabel: steady}",
    );
    let st = w.ready(&d).await;
    let aks = st.aks_resource_id.clone().expect("aks id");
    let f1 = w.served_fingerprint(&aks).expect("certificate");
    w.emu.inject_fault(FaultRule {
        id: 0,
        matcher: FaultMatch {
            method: Some("DELETE".into()),
            path: Some("/computes/detfail1".into()),
            operation: None,
        },
        kind: FaultKind::LroFail {
            code: "InternalServerError".into(),
            message: "An internal server error occurred.".into(),
        },
        times: Some(1),
        probability: None,
    });
    let host = st.cluster_fqdn.clone().expect("fqdn");
    let d2 = reattach(&d, "r1");
    let log_from = w.emu.requests().len();
    let st = reattached(w, &d2).await;
    assert!(cluster_exists(w, &aks), "the cluster survives");
    assert_eq!(
        st.cluster_fqdn.as_deref(),
        Some(host.as_str()),
        "and its host name"
    );
    // The certificate served before the detach was read (and verified) before it.
    let log = &w.emu.requests()[log_from..];
    let read = log
        .iter()
        .position(|r| r.method == "GET" && r.path.contains("azuremlfessl") && r.status == 200);
    let detach = log
        .iter()
        .position(|r| r.method == "DELETE" && r.path.contains("/computes/detfail1"));
    assert!(
        read.is_some() && read < detach,
        "backup of {f1} before the detach"
    );
    w.expect_accepted(
        "DELETE",
        "/computes/detfail1",
        "=Delete",
        0,
        "never deleted",
    );
    w.expect_accepted(
        "DELETE",
        "/computes/detfail1",
        "Detach",
        2,
        "failed detach + retry",
    );
}

/// reattachPolicy Manual: a purpose change waits (Ready=False, not Stalled, no write) until
/// the annotation; then it is applied.
pub async fn manual_reattach_policy_waits_for_annotation(w: &World) {
    w.emu.seed_aks_cluster(
        SUB,
        ClusterSeed {
            resource_group: "aks-rg".into(),
            name: "dev".into(),
            ..ClusterSeed::default()
        },
    );
    w.start_faults();
    let d = ca(
        "manual1",
        "dev",
        "clusterPurpose: DevTest\nreattachPolicy: Manual",
    );
    w.ready(&d).await;
    let writes = w.writes().len();
    let d2 = changed(&d, |d| d.purpose = ClusterPurpose::FastProd);
    let st = w
        .converge(&d2, "ReattachPending", |s, _| {
            condition(s, "Ready")
                .is_some_and(|c| c.status == "False" && c.reason == "ReattachPending")
        })
        .await;
    assert!(condition(&st, "Stalled").is_some_and(|c| c.status == "False"));
    assert_eq!(w.writes().len(), writes, "waits without writing");
    assert_eq!(st.phase, Some(Phase::Ready), "still serving");
    let d3 = reattach(&d2, "maintenance-window-1");
    reattached(w, &d3).await;
    assert_eq!(compute(w, "manual1").cluster_purpose, "FastProd");
}

fn seed(w: &World, name: &str, f: impl FnOnce(&mut ClusterSeed)) {
    let mut c = ClusterSeed {
        resource_group: "aks-rg".into(),
        name: name.into(),
        ..ClusterSeed::default()
    };
    f(&mut c);
    w.emu.seed_aks_cluster(SUB, c);
}

/// The reconcile-time checks before any Azure write: each stalls with its reason and a message a
/// person can act on, and nothing is written to Azure.
pub async fn dynamic_checks_stall_without_write(w: &World) {
    seed(w, "old", |c| c.kubernetes_version = "1.27.3".into());
    seed(w, "stopped", |c| c.power_state = "Stopped".into());
    let (good, _) = tls_secret("good-tls", "scoring.contoso.com");
    w.store.insert_secret(good);
    // A certificate with somebody else's key.
    let (mut mixed, _) = tls_secret("mixed-tls", "scoring.contoso.com");
    let (other, _) = tls_secret("other", "scoring.contoso.com");
    if let (Some(m), Some(o)) = (mixed.data.as_mut(), other.data.as_ref()) {
        m.insert("tls.key".into(), o["tls.key"].clone());
    }
    w.store.insert_secret(mixed);
    w.start_faults();

    let old = ca("chkold", "old", "");
    let st = w.stalled(&old, "UnsupportedKubernetesVersion").await;
    let msg = &condition(&st, "Stalled").expect("Stalled").message;
    assert!(
        msg.contains("1.27.3") && msg.contains("1.33 to 1.35"),
        "names the minors Azure ML attaches: {msg}"
    );

    w.stalled(&ca("chkstopped", "stopped", ""), "AksClusterStopped")
        .await;
    w.stalled(&ca("chkmissing", "nosuchcluster", ""), "AksClusterNotFound")
        .await;
    let mut foreign = ca("chkforeign", "shared", "");
    if let Flavor::Attach { aks_id } = &mut foreign.flavor {
        *aks_id = aks_id.replace(SUB, "11111111-1111-1111-1111-111111111111");
    }
    w.stalled(&foreign, "InvalidSpec").await;
    let mut nows = ic("chknows", "");
    nows.workspace.name = "no-such-ws".into();
    w.stalled(&nows, "WorkspaceNotFound").await;
    w.stalled(&ic("chkvm", "vmSize: Standard_Imaginary_v9"), "InvalidSpec")
        .await;

    let tls = |secret: &str| {
        format!("tls: {{mode: Custom, cname: scoring.contoso.com, secretRef: {{name: {secret}}}}}")
    };
    w.stalled(
        &ca("chknosecret", "shared", &tls("absent-tls")),
        "SecretNotFound",
    )
    .await;
    let st = w
        .stalled(
            &ca("chkmixed", "shared", &tls("mixed-tls")),
            "InvalidCertificate",
        )
        .await;
    let msg = &condition(&st, "Stalled").expect("Stalled").message;
    assert!(
        !msg.contains("PRIVATE KEY"),
        "no key material in status: {msg}"
    );
    assert!(
        w.writes().is_empty(),
        "no Azure write: {:#?}",
        w.brief_log()
    );

    // The user fixes the Secret: the stall clears by itself.
    let (fixed, fp) = tls_secret("mixed-tls", "scoring.contoso.com");
    w.store.insert_secret(fixed);
    let d = ca("chkmixed", "shared", &tls("mixed-tls"));
    w.ready(&d).await;
    assert_eq!(w.served_fingerprint(&aks_id("shared")), Some(fp));
}

/// Never detach while TLS is on and neither the user's Secret nor a verified
/// backup holds the certificate. A private cluster's API server cannot be reached and the
/// identity may not use AKS Run Command (403), so an Auto certificate cannot be backed up:
/// the reattach stops at Stalled TLSBackupFailed, and the compute keeps serving.
pub async fn never_detach_without_a_verified_certificate(w: &World) {
    seed(w, "private1", |c| {
        c.private = true;
        c.private_public_fqdn = Some(false);
    });
    w.emu.inject_fault(FaultRule {
        id: 0,
        matcher: FaultMatch {
            method: Some("POST".into()),
            path: Some("/runCommand".into()),
            operation: None,
        },
        kind: FaultKind::Forbidden,
        times: None,
        probability: None,
    });
    w.start_faults();
    let d = ca(
        "priv1",
        "private1",
        "tls: {mode: Auto, leafDomainLabel: priv}",
    );
    let st = w.ready(&d).await;
    assert!(
        w.events(&d)
            .iter()
            .any(|e| e.warning && e.reason == "TLSBackupFailed"),
        "the failed backup is reported even though the compute is Ready"
    );
    assert!(tls_fp(&st).is_none(), "no verified certificate recorded");
    let served = w
        .served_fingerprint(&aks_id("private1"))
        .expect("certificate");
    let d2 = reattach(&d, "r1");
    let st = w.stalled(&d2, "TLSBackupFailed").await;
    let msg = &condition(&st, "Stalled").expect("Stalled").message;
    assert!(
        msg.contains("secretRef"),
        "says how to provide the certificate: {msg}"
    );
    w.expect_accepted("DELETE", "", "", 0, "never detached");
    assert_eq!(compute(w, "priv1").provisioning_state, "Succeeded");
    assert_eq!(w.served_fingerprint(&aks_id("private1")), Some(served));
}
