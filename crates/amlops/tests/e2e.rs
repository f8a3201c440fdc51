//! End to end against a real Kubernetes cluster: runs only when `KUBECONFIG` is set (and
//! prints why it skipped otherwise). It installs `crds/`, starts the real `amlops run`
//! binary against that cluster and the in-process Azure emulator, applies the examples in a
//! fresh namespace, waits for Ready, forces a reattach, deletes everything and checks the
//! emulator's state.
//!
//! Run it with: `KUBECONFIG=~/.kube/config cargo test -p amlops --test e2e -- --nocapture`
//! (any cluster ≥ 1.28 — kind, k3d, AKS; the operator runs on your machine, so the cluster
//! only needs to store objects). The identity of the kubeconfig must be allowed to create
//! CRDs and namespaces.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use amlops::controller::Kind;
use amlops::validate::parse_documents;
use amlops_emulator::{Emulator, EmulatorConfig};

const MANAGER: &str = "amlops-e2e";

fn kubeconfig_set() -> bool {
    std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn ready(o: &DynamicObject) -> bool {
    o.data["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    }) && o.data["status"]["observedGeneration"] == json!(o.metadata.generation)
}

async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in amlops::crd::all_crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("install CRD");
        wait_for(
            &format!("CRD {name} established"),
            Duration::from_secs(60),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    api.get(&name)
                        .await
                        .ok()
                        .and_then(|c| c.status)
                        .and_then(|s| s.conditions)
                        .is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c.type_ == "Established" && c.status == "True")
                        })
                }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_on_a_real_cluster() {
    if !kubeconfig_set() {
        eprintln!("e2e skipped: KUBECONFIG is not set (see the top of tests/e2e.rs)");
        return;
    }
    let client = Client::try_default().await.expect("kubeconfig");
    install_crds(&client).await;

    let ns = format!(
        "amlops-e2e-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("create namespace");

    let mut cfg = EmulatorConfig::demo();
    cfg.op_seconds = 1.0;
    let emu = Emulator::start(cfg).await.expect("emulator");
    // The demo's AKS cluster for the attach examples.
    emu.seed_aks_cluster(
        "00000000-0000-0000-0000-000000000000",
        amlops_emulator::ClusterSeed {
            resource_group: "aks-rg".into(),
            name: "dev".into(),
            ..Default::default()
        },
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let tls =
        amlops_testkit::self_signed_tls_secret(&ns, "scoring-tls", "scoring.contoso.com").unwrap();
    secrets
        .create(&PostParams::default(), &tls)
        .await
        .expect("TLS secret");

    let mut operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_amlops"))
        .args([
            "run",
            "--namespace",
            &ns,
            "--arm-endpoint",
            emu.base_url(),
            "--azure-credential",
            "static-token",
            "--metrics-addr",
            "127.0.0.1:0",
            "--resync",
            "1m",
            "--busy-poll",
            "1s",
            "--identity",
            "e2e",
        ])
        .env("AMLOPS_ARM_TOKEN", emu.token())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start amlops run");

    // Apply every example into the test namespace.
    let mut objects: BTreeMap<(Kind, String), Api<DynamicObject>> = BTreeMap::new();
    for (file, text) in amlops_testkit::EXAMPLES {
        for doc in parse_documents(file, text) {
            let mut v: Value = doc.value.expect("example parses");
            v["metadata"]["namespace"] = json!(ns);
            let kind = Kind::from_name(v["kind"].as_str().unwrap()).unwrap();
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &ns, &kind.api_resource());
            let name = v["metadata"]["name"].as_str().unwrap().to_string();
            api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&v))
                .await
                .expect("apply example");
            objects.insert((kind, name), api);
        }
    }
    for ((kind, name), api) in &objects {
        wait_for(
            &format!("{} {name} Ready", kind.name()),
            Duration::from_secs(180),
            || async { api.get(name).await.is_ok_and(|o| ready(&o)) },
        )
        .await;
        let o = api.get(name).await.unwrap();
        assert!(
            o.finalizers().iter().any(|f| f == amlops::crd::FINALIZER),
            "{name} has our finalizer"
        );
    }

    // Force a reattach of the Custom-TLS attachment: the certificate served stays the user's.
    let (key, api) = objects
        .iter()
        .find(|((k, _), _)| *k == Kind::ClusterAttachment)
        .unwrap();
    let name = key.1.clone();
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {amlops::crd::REATTACH_ANNOTATION: "e2e-1"}}}),
        ),
    )
    .await
    .unwrap();
    wait_for("reattach done", Duration::from_secs(180), || async {
        api.get(&name)
            .await
            .is_ok_and(|o| ready(&o) && o.data["status"]["lastReattachToken"] == json!("e2e-1"))
    })
    .await;
    let detaches = emu
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.query.contains("Detach"))
        .count();
    assert!(detaches >= 1, "the reattach detached first");

    // Delete everything; the finalizer holds each object until Azure confirms.
    for ((_, name), api) in &objects {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for ((kind, name), api) in &objects {
        wait_for(
            &format!("{} {name} gone", kind.name()),
            Duration::from_secs(180),
            || async { api.get_opt(name).await.is_ok_and(|o| o.is_none()) },
        )
        .await;
    }
    let state = emu.state();
    assert!(
        state.computes.is_empty(),
        "no compute left in Azure: {:?}",
        state.computes.iter().map(|c| &c.id).collect::<Vec<_>>()
    );
    // The two attached clusters and the Detach-policy created one are still running.
    assert!(
        state
            .clusters
            .iter()
            .any(|c| c.id.ends_with("/managedClusters/dev"))
    );

    let _ = operator.start_kill();
    let _ = operator.wait().await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    emu.shutdown().await;
}
