//! docs/migration.md as a scenario against the emulator over HTTP: a cluster attached as a
//! legacy AKS compute (`ClusterAttachment`, Custom TLS) moves to the Azure ML extension and a
//! `KubernetesCompute` on the same cluster. Without the migration settings amlops sees the
//! legacy front end and stalls before writing (the install would fail with E45005); with
//! `migration.fromLegacyAzureMlFe` it annotates the legacy front end as Microsoft's steps do
//! and installs with the same certificate; the compute attaches
//! through it; the legacy compute is then detached (never deleted) with its certificate backed
//! up, and the extension and the new compute stay.

use amlops_testkit as common;

use amlops::azure::{ExtensionId, ResourceId};
use amlops::crd::{AzureMLExtension, AzureMlExtensionStatus};
use amlops::engine::azureml_extension::ExtensionDesired;
use amlops_emulator::{DEFAULT_SUBSCRIPTION, KubernetesPathSeed};
use common::kpath::{azure_compute, kc, ready as compute_ready};
use common::{NS, World, ca, deleting, secret_fingerprint, tls_secret};

const HOST: &str = "scoring.contoso.com";

fn extension(generation: i64, migrate: bool) -> AzureMLExtension {
    let cluster = ResourceId::managed_cluster(DEFAULT_SUBSCRIPTION, "aks-rg", "shared").unwrap();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "amlops.dev/v1alpha1", "kind": "AzureMLExtension",
        "metadata": {"name": "shared-azureml", "namespace": NS, "generation": generation},
        "spec": {
            "cluster": {"resourceId": cluster.to_string()},
            "extensionName": "azureml",
            "inference": {"enabled": true, "tls": {"mode": "Enabled", "cname": HOST, "secretRef": {"name": "scoring-tls"}}},
            "migration": {"fromLegacyAzureMlFe": migrate},
            "maxRetries": 0,
        }
    }))
    .unwrap()
}

async fn drive(
    w: &World,
    d: &ExtensionDesired,
    done: impl Fn(&AzureMlExtensionStatus) -> bool,
) -> AzureMlExtensionStatus {
    for _ in 0..500 {
        let st = w.store.extension_status(&d.key).unwrap_or_default();
        let out = w.engine.reconcile_extension(d, st).await.unwrap();
        if done(&out.status) {
            return out.status;
        }
        let wait = out.requeue.unwrap_or_default();
        tokio::time::sleep(wait.min(std::time::Duration::from_millis(20))).await;
    }
    panic!(
        "the extension did not converge: {:#?}",
        w.store.extension_status(&d.key)
    );
}

fn on(st: &AzureMlExtensionStatus, type_: &str) -> Option<String> {
    st.conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| format!("{}: {}", c.reason, c.message))
}

#[tokio::test]
async fn a_legacy_attachment_moves_to_the_extension_and_a_kubernetes_compute() {
    let w = World::new().await;
    w.emu
        .seed_kubernetes_path(&KubernetesPathSeed {
            crd_delay_ms: Some(0),
            ..KubernetesPathSeed::default()
        })
        .unwrap();
    let (secret, fp) = tls_secret("scoring-tls", HOST);
    w.store.insert_secret(secret);

    // 0. The legacy path: the cluster attached as an AKS compute, serving the certificate.
    let legacy = ca(
        "legacy",
        "shared",
        "tls: {mode: Custom, cname: scoring.contoso.com, secretRef: {name: scoring-tls}}",
    );
    w.ready(&legacy).await;

    // 1. The extension without the migration settings: amlops sees the legacy front end
    //    (Deployment default/azureml-fe) and stalls before any write (the install would fail
    //    its health check with E45005).
    let d = w
        .engine
        .extension_desired(&extension(1, false), vec![])
        .await;
    w.emu.clear_requests();
    let st = drive(&w, &d, |st| on(st, "Stalled").is_some()).await;
    let stalled = on(&st, "Stalled").unwrap();
    assert!(stalled.starts_with("LegacyFrontEndPresent"), "{stalled}");
    assert!(stalled.contains("E45005"), "{stalled}");
    w.expect_accepted("PUT", "/extensions/azureml", "", 0, "nothing installed");

    // 2. With migration.fromLegacyAzureMlFe: the legacy front end annotated (Microsoft's
    //    step), then installed with the same certificate.
    let d = w
        .engine
        .extension_desired(&extension(2, true), vec![])
        .await;
    let st = drive(&w, &d, |st| on(st, "Ready").is_some()).await;
    let events: Vec<String> = w.store.events().into_iter().map(|e| e.reason).collect();
    let annotated = events.iter().position(|r| r == "AnnotatingLegacyFrontEnd");
    let installing = events.iter().position(|r| r == "Installing");
    assert!(
        annotated.is_some() && annotated < installing,
        "annotated before the install: {events:?}"
    );
    assert_eq!(
        st.tls
            .as_ref()
            .and_then(|t| t.sha256_fingerprint.as_deref()),
        Some(fp.as_str()),
        "the certificate the legacy compute served"
    );
    let cluster = ResourceId::managed_cluster(DEFAULT_SUBSCRIPTION, "aks-rg", "shared").unwrap();
    let ext = w
        .engine
        .arm
        .get_extension(&ExtensionId::new(cluster.clone(), "azureml").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ext.setting("scoringFe.enableUpgrade"), Some("true"));
    let client = amlops::tls::cluster_client(&w.engine.arm, &cluster)
        .await
        .unwrap();
    let fe = kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client, "default")
        .get("azureml-fe")
        .await
        .unwrap();
    assert_eq!(
        fe.metadata
            .annotations
            .unwrap_or_default()
            .get("azureml-fe-enable-upgrade")
            .map(String::as_str),
        Some("true")
    );

    // 3. The cluster attached as a Kubernetes compute, in its own namespace.
    let mut k = kc("k8s", &cluster, "ml-serving");
    k.create_namespace = true;
    compute_ready(&w, &k).await;

    // 4. The legacy compute detached (never deleted), its certificate backed up first.
    let st = w.gone(&deleting(&legacy)).await;
    let backup = st
        .tls
        .and_then(|t| t.backup_secret_name)
        .unwrap_or_else(|| "legacy-tls-backup".into());
    assert_eq!(secret_fingerprint(&w.store, &backup), Some(fp.clone()));
    w.expect_accepted("DELETE", "/computes/legacy", "Detach", 1, "detached");
    w.expect_accepted("DELETE", "/computes/legacy", "=Delete", 0, "never deleted");
    // The extension and the new compute stay.
    let k8s = azure_compute(&w, &k)
        .await
        .expect("the Kubernetes compute stays");
    assert_eq!(k8s.namespace(), "ml-serving");
    let ext = w
        .engine
        .arm
        .get_extension(&ExtensionId::new(cluster, "azureml").unwrap())
        .await
        .unwrap();
    assert!(ext.is_some(), "the extension stays");
}
