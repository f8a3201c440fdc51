//! The `KubernetesCompute` engine with the emulator refusing ~30 % of ARM requests (429 and
//! 503 with `Retry-After: 1`) and failing one compute operation per world: attach (two
//! computes on one cluster, one creating its namespace), an in-place change, a reattach on
//! request and a detach must still reach the same outcome, Azure's Retry-After must be
//! honoured, and writes may only grow by the retries of failed operations.

use amlops_testkit as common;

use common::World;
use common::kpath::*;

async fn lifecycle(w: &World) -> (usize, usize, usize) {
    let cluster = seed_cluster(w, "shared", false);
    install_extension(w, &cluster);
    create_namespace(w, &cluster, "team-b").await;
    w.start_faults();
    let mut a = kc("team-a", &cluster, "team-a");
    a.create_namespace = true;
    let mut b = kc("team-b", &cluster, "team-b");
    ready(w, &a).await;
    ready(w, &b).await;

    b.generation = Some(2);
    b.description = Some("team B".into());
    ready(w, &b).await;
    assert_eq!(
        azure_compute(w, &b)
            .await
            .and_then(|c| c.properties.description),
        Some("team B".into())
    );

    a.reattach_token = Some("r1".into());
    let st = ready(w, &a).await;
    assert_eq!(st.last_reattach_token.as_deref(), Some("r1"));

    b.deleting = true;
    drive(w, &b, "detached", |_, finished| finished).await;
    assert!(azure_compute(w, &b).await.is_none());
    assert_eq!(azure_compute(w, &a).await.unwrap().namespace(), "team-a");

    // Attach ×2, update, reattach's attach: 4 PUTs; reattach's detach and the deletion's: 2.
    w.expect_accepted("PUT", "/computes/", "", 4, "attach, update, reattach");
    w.expect_accepted("DELETE", "/computes/", "Detach", 2, "reattach + deletion");
    w.expect_accepted("DELETE", "/computes/", "=Delete", 0, "never Delete");
    let log = w.emu.requests();
    let refused = log
        .iter()
        .filter(|r| r.status == 429 || r.status == 503)
        .count();
    (log.len(), refused, w.assert_retry_after_honoured())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_converges_under_throttling_and_a_failed_operation() {
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(async {
                let w = World::with_faults().await;
                let r = lifecycle(&w).await;
                (r, w.failed_operations())
            })
        })
        .collect();
    let (mut requests, mut refused, mut checked, mut failed) = (0, 0, 0, 0);
    for t in tasks {
        let ((n, r, c), f) = t.await.expect("world");
        requests += n;
        refused += r;
        checked += c;
        failed += f;
    }
    eprintln!(
        "{requests} requests, {refused} refused with 429/503, {checked} retries checked against Retry-After, {failed} failed operations"
    );
    // The faults really happened (else this test proves nothing).
    assert!(
        refused as f64 / requests.max(1) as f64 > 0.15,
        "only {refused} of {requests} refused"
    );
    assert!(checked > 5, "{checked} retries checked");
    assert!(failed >= 3, "{failed} failed operations");
}

/// Reconciles the extension until `done`, honouring Azure's Retry-After.
async fn drive_extension(
    w: &World,
    e: &amlops::engine::azureml_extension::ExtensionDesired,
    done: impl Fn(&amlops::crd::AzureMlExtensionStatus, bool) -> bool,
) {
    for _ in 0..500 {
        let st = w.store.extension_status(&e.key).unwrap_or_default();
        let out = w.engine.reconcile_extension(e, st).await.unwrap();
        if done(&out.status, out.finished) {
            return;
        }
        let wait = match out.verdict.as_ref().and_then(|v| v.after()) {
            Some(after) => after,
            None => out
                .requeue
                .unwrap_or_default()
                .min(std::time::Duration::from_millis(20)),
        };
        tokio::time::sleep(wait).await;
    }
    panic!("the extension did not converge: {:#?}", w.brief_log());
}

/// The whole Kubernetes compute path under the same faults: amlops installs the extension
/// (with TLS), attaches a compute through it, and on deletion detaches the compute and then
/// uninstalls the extension — each write exactly once more than its failed operations.
async fn extension_lifecycle(w: &World) -> usize {
    use amlops::crd::AzureMLExtension;
    let cluster = seed_cluster(w, "shared", false);
    w.emu
        .seed_kubernetes_path(&amlops_emulator::KubernetesPathSeed {
            crd_delay_ms: Some(0),
            ..Default::default()
        })
        .unwrap();
    w.store
        .insert_secret(common::tls_secret("scoring-tls", "scoring.contoso.com").0);
    w.start_faults();
    let ext: AzureMLExtension = serde_json::from_value(serde_json::json!({
        "apiVersion": "amlops.dev/v1alpha1", "kind": "AzureMLExtension",
        "metadata": {"name": "shared-azureml", "namespace": common::NS, "generation": 1},
        "spec": {
            "cluster": {"resourceId": cluster.to_string()},
            "extensionName": "azureml",
            "inference": {"enabled": true, "tls": {"cname": "scoring.contoso.com", "secretRef": {"name": "scoring-tls"}}},
        }
    }))
    .unwrap();
    let e = w.engine.extension_desired(&ext, vec![]).await;
    drive_extension(w, &e, |st, _| {
        st.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await;
    let mut kc = kc("team-a", &cluster, "team-a");
    kc.create_namespace = true;
    ready(w, &kc).await;
    kc.deleting = true;
    drive(w, &kc, "detached", |_, finished| finished).await;
    let mut e2 = e.clone();
    e2.deleting = true;
    drive_extension(w, &e2, |_, finished| finished).await;
    w.expect_accepted("PUT", "/extensions/azureml", "", 1, "one install");
    w.expect_accepted("DELETE", "/extensions/azureml", "", 1, "one uninstall");
    w.expect_accepted("PUT", "/computes/", "", 1, "one attach");
    w.expect_accepted("DELETE", "/computes/", "Detach", 1, "one detach");
    w.assert_retry_after_honoured()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extension_path_converges_under_throttling() {
    let w = World::with_faults().await;
    let checked = extension_lifecycle(&w).await;
    let log = w.emu.requests();
    let refused = log
        .iter()
        .filter(|r| r.status == 429 || r.status == 503)
        .count();
    eprintln!(
        "{} requests, {refused} refused, {checked} retries checked",
        log.len()
    );
    assert!(refused > 3, "only {refused} refused of {}", log.len());
}
