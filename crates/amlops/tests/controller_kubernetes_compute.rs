//! The `KubernetesCompute` controller (`amlops run` in process) against the fake API server
//! and the Azure emulator, both over real HTTP: typed watch, finalizer before the first
//! Azure write and removed only once Azure confirms the detach, server-side-apply status
//! with observedGeneration and the three conditions, `extensionRef` resolved through the
//! `AzureMLExtension`, events, an object that does not decode stalled on its own, and
//! every request granted by the RBAC list.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use amlops::azure::config::Secret as Token;
use amlops::azure::{ArmClient, ArmClientConfig, AzureCloud, CredentialConfig, ResourceId};
use amlops::controller::{Backoff, Operator, Options, Running};
use amlops::crd::FINALIZER;
use amlops::engine::EngineConfig;
use amlops_emulator::{
    ClusterSeed, DEFAULT_SUBSCRIPTION, Emulator, EmulatorConfig, EmulatorHandle, ExtensionSeed,
    KubernetesPathSeed, PoolSeed,
};
use amlops_fake_kube::FakeApiServer;
use amlops_testkit::rbac;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;

const AV: &str = "amlops.dev/v1alpha1";
const SUB: &str = DEFAULT_SUBSCRIPTION;

struct World {
    fake: FakeApiServer,
    emu: EmulatorHandle,
    cluster: ResourceId,
}

impl World {
    async fn new() -> Self {
        let w = Self::bare().await;
        w.emu
            .seed_kubernetes_path(&KubernetesPathSeed {
                crd_delay_ms: Some(0),
                extensions: vec![ExtensionSeed {
                    cluster_id: w.cluster.to_string(),
                    ..ExtensionSeed::default()
                }],
                ..KubernetesPathSeed::default()
            })
            .unwrap();
        w
    }

    /// A 3-node cluster without the Azure ML extension.
    async fn bare() -> Self {
        let fake = FakeApiServer::start().await.unwrap();
        for crd in amlops::crd::all_crds() {
            fake.install_crd(crd).unwrap();
        }
        let emu = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
        emu.seed_aks_cluster(
            SUB,
            ClusterSeed {
                resource_group: "aks-rg".into(),
                name: "shared".into(),
                agent_pools: vec![PoolSeed {
                    count: 3,
                    ..PoolSeed::default()
                }],
                ..ClusterSeed::default()
            },
        );
        let cluster = ResourceId::managed_cluster(SUB, "aks-rg", "shared").unwrap();
        emu.seed_kubernetes_path(&KubernetesPathSeed {
            crd_delay_ms: Some(0),
            ..KubernetesPathSeed::default()
        })
        .unwrap();
        Self { fake, emu, cluster }
    }

    fn arm(&self) -> ArmClientConfig {
        ArmClientConfig::new(
            AzureCloud::custom(self.emu.base_url().parse().unwrap()),
            CredentialConfig::StaticToken(Token::new(self.emu.token())),
        )
    }

    async fn operator(&self) -> (Running, watch::Sender<bool>) {
        let options = Options {
            namespace: None,
            concurrency: 4,
            engine: EngineConfig {
                busy_poll: Duration::from_millis(100),
                retry_base: Duration::from_millis(100),
                ..EngineConfig::default()
            },
            backoff: Backoff {
                base: Duration::from_millis(200),
                cap: Duration::from_secs(2),
            },
            leader: None,
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            identity: "solo".into(),
            crd_poll: Duration::from_millis(100),
        };
        let op = Operator::new(self.fake.client(), self.arm(), options).unwrap();
        let (tx, rx) = watch::channel(false);
        (op.start(rx).await.unwrap(), tx)
    }

    /// Creates a namespace on the emulated AKS cluster (as its admin would).
    async fn cluster_namespace(&self, name: &str) {
        let arm = ArmClient::new(self.arm()).unwrap();
        let client = arm
            .list_cluster_admin_credential(&self.cluster)
            .await
            .unwrap()
            .client(None)
            .await
            .unwrap();
        let ns = Namespace {
            metadata: kube::core::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        kube::Api::<Namespace>::all(client)
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }

    fn kc(&self, name: &str) -> Option<Value> {
        self.fake.get(AV, "KubernetesCompute", Some("ml"), name)
    }

    fn azure_compute_writes(&self) -> Vec<String> {
        self.emu
            .requests()
            .iter()
            .filter(|r| {
                matches!(r.method.as_str(), "PUT" | "DELETE") && r.path.contains("/computes/")
            })
            .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
            .collect()
    }

    fn assert_rbac_covers_everything(&self) {
        let rules = rbac::rules();
        for r in self.fake.requests() {
            assert!(
                rbac::covers(&rules, &r.method, &r.path, &r.query),
                "{} {}?{} is not granted by deploy/rbac-requirements.yaml",
                r.method,
                r.path,
                r.query
            );
        }
    }
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn condition<'a>(o: &'a Value, type_: &str) -> Option<&'a Value> {
    o["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn is(o: &Option<Value>, type_: &str, reason: Option<&str>) -> bool {
    o.as_ref()
        .and_then(|o| condition(o, type_))
        .is_some_and(|c| c["status"] == "True" && reason.is_none_or(|r| c["reason"] == r))
}

fn has_finalizer(o: &Value) -> bool {
    o["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

fn extension(cluster: &ResourceId) -> Value {
    json!({
        "apiVersion": AV, "kind": "AzureMLExtension",
        "metadata": {"name": "shared-azureml", "namespace": "ml"},
        "spec": {
            "cluster": {"resourceId": cluster.to_string()},
            "extensionName": "azureml",
            "inference": {"enabled": true, "tls": {"mode": "Disabled"}},
        }
    })
}

fn compute(name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": AV, "kind": "KubernetesCompute",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {
            "workspace": {"subscriptionId": SUB, "resourceGroup": "ml-rg", "name": "ml-ws"},
            "extensionRef": {"name": "shared-azureml"},
            "namespace": namespace,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_through_extension_ref_then_detach_with_the_finalizer_held_until_azure_confirms() {
    let w = World::new().await;
    w.cluster_namespace("team-a").await;
    let (running, stop) = w.operator().await;

    // The AzureMLExtension is not there yet: Reconciling, WaitingForExtension, no Azure write.
    w.fake.put(compute("team-a", "team-a")).unwrap();
    wait_until("WaitingForExtension", Duration::from_secs(20), || {
        is(&w.kc("team-a"), "Reconciling", Some("WaitingForExtension"))
    })
    .await;
    assert!(w.azure_compute_writes().is_empty());

    // Its appearance wakes the compute (the compute's own requeue while waiting is 30 s).
    w.fake.put(extension(&w.cluster)).unwrap();
    wait_until("Ready", Duration::from_secs(10), || {
        is(&w.kc("team-a"), "Ready", Some("Attached"))
    })
    .await;
    let o = w.kc("team-a").unwrap();
    assert!(has_finalizer(&o));
    assert_eq!(
        o["status"]["observedGeneration"],
        o["metadata"]["generation"]
    );
    for (t, s) in [
        ("Ready", "True"),
        ("Reconciling", "False"),
        ("Stalled", "False"),
    ] {
        assert_eq!(condition(&o, t).unwrap()["status"], s, "{t}");
    }
    assert_eq!(o["status"]["provisioningState"], "Succeeded");
    assert!(
        o["status"]["computeId"]
            .as_str()
            .unwrap()
            .ends_with("/computes/team-a")
    );
    // The finalizer patch precedes the first status write, which precedes the Azure write.
    let reqs = w.fake.requests();
    let fin = reqs
        .iter()
        .position(|r| r.method == "PATCH" && r.path.ends_with("/kubernetescomputes/team-a"))
        .expect("finalizer patch");
    let first_status = reqs
        .iter()
        .position(|r| r.method == "PATCH" && r.path.ends_with("/kubernetescomputes/team-a/status"))
        .expect("status patch");
    assert!(fin < first_status);
    let events: Vec<String> = w
        .fake
        .events("ml")
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect();
    assert!(events.iter().any(|r| r == "Attaching"), "{events:?}");
    assert_eq!(
        w.azure_compute_writes().len(),
        1,
        "{:?}",
        w.azure_compute_writes()
    );
    // The resource gauge follows the watch.
    let ready_gauge = "amlops_resources{kind=\"KubernetesCompute\",phase=\"Ready\"} 1";
    wait_until("the Ready gauge", Duration::from_secs(10), || {
        running.metrics.encode().contains(ready_gauge)
    })
    .await;

    // Delete: detached in Azure (never deleted), the finalizer goes after, the object is gone.
    w.fake
        .delete(AV, "KubernetesCompute", Some("ml"), "team-a")
        .unwrap();
    wait_until("gone", Duration::from_secs(60), || w.kc("team-a").is_none()).await;
    let writes = w.azure_compute_writes();
    assert!(
        writes
            .iter()
            .any(|x| x.starts_with("DELETE") && x.contains("underlyingResourceAction=Detach")),
        "{writes:?}"
    );
    assert!(!writes.iter().any(|x| x.contains("=Delete")), "{writes:?}");
    w.assert_rbac_covers_everything();
    let _ = stop.send(true);
    running.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_does_not_decode_stalls_alone_and_the_others_proceed() {
    let w = World::new().await;
    w.cluster_namespace("team-b").await;
    let (running, stop) = w.operator().await;
    w.fake.put(extension(&w.cluster)).unwrap();
    let mut bad = compute("broken", "team-x");
    bad["spec"]["namespace"] = json!(42);
    w.fake.put(bad).unwrap();
    w.fake.put(compute("team-b", "team-b")).unwrap();
    wait_until("the good one Ready", Duration::from_secs(60), || {
        is(&w.kc("team-b"), "Ready", None)
    })
    .await;
    wait_until("the broken one Stalled", Duration::from_secs(20), || {
        is(&w.kc("broken"), "Stalled", Some("InvalidSpec"))
    })
    .await;
    let o = w.kc("broken").unwrap();
    let message = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("nothing was sent to Azure"), "{message}");
    assert!(
        !w.azure_compute_writes()
            .iter()
            .any(|x| x.contains("/computes/broken")),
        "{:?}",
        w.azure_compute_writes()
    );
    w.assert_rbac_covers_everything();
    let _ = stop.send(true);
    running.join().await.unwrap();
}

fn extension_with_tls(cluster: &ResourceId) -> Value {
    json!({
        "apiVersion": AV, "kind": "AzureMLExtension",
        "metadata": {"name": "shared-azureml", "namespace": "ml"},
        "spec": {
            "cluster": {"resourceId": cluster.to_string()},
            "extensionName": "azureml",
            "inference": {
                "enabled": true,
                "routerServiceType": "LoadBalancer",
                "tls": {"mode": "Enabled", "cname": "scoring.contoso.com", "secretRef": {"name": "scoring-tls"}}
            },
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_is_installed_and_uninstalled_only_after_its_last_compute() {
    let w = World::bare().await;
    let secret =
        amlops_testkit::self_signed_tls_secret("ml", "scoring-tls", "scoring.contoso.com").unwrap();
    w.fake.put(serde_json::to_value(secret).unwrap()).unwrap();
    let (running, stop) = w.operator().await;
    w.fake.put(extension_with_tls(&w.cluster)).unwrap();
    let mut kc = compute("team-a", "team-a");
    kc["spec"]["createNamespace"] = json!(true);
    w.fake.put(kc).unwrap();
    let get = |name: &str| w.fake.get(AV, "AzureMLExtension", Some("ml"), name);
    wait_until("extension Ready", Duration::from_secs(60), || {
        is(&get("shared-azureml"), "Ready", None)
    })
    .await;
    let e = get("shared-azureml").unwrap();
    assert!(has_finalizer(&e));
    assert_eq!(
        e["status"]["observedGeneration"],
        e["metadata"]["generation"]
    );
    assert_eq!(e["status"]["provisioningState"], "Succeeded");
    assert!(e["status"]["tls"]["sha256Fingerprint"].is_string(), "{e}");
    let text = e.to_string();
    assert!(!text.contains("PRIVATE KEY"), "no key in status");
    // Its compute attaches once it has Succeeded (woken by the extension's change).
    wait_until("compute Ready", Duration::from_secs(30), || {
        is(&w.kc("team-a"), "Ready", None)
    })
    .await;
    let gauge = "amlops_resources{kind=\"AzureMLExtension\",phase=\"Ready\"} 1";
    wait_until("the extension gauge", Duration::from_secs(10), || {
        running.metrics.encode().contains(gauge)
    })
    .await;

    // Deleting the extension while a compute uses it: InUse, nothing uninstalled.
    w.fake
        .delete(AV, "AzureMLExtension", Some("ml"), "shared-azureml")
        .unwrap();
    wait_until("InUse", Duration::from_secs(20), || {
        is(&get("shared-azureml"), "Reconciling", Some("InUse"))
    })
    .await;
    let uninstalls = || {
        w.emu
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE" && r.path.contains("/extensions/") && r.status < 300)
            .count()
    };
    assert_eq!(uninstalls(), 0);
    // The compute goes (detached), which wakes the extension (its own requeue is 30 s).
    w.fake
        .delete(AV, "KubernetesCompute", Some("ml"), "team-a")
        .unwrap();
    wait_until("compute gone", Duration::from_secs(30), || {
        w.kc("team-a").is_none()
    })
    .await;
    wait_until("extension gone", Duration::from_secs(15), || {
        get("shared-azureml").is_none()
    })
    .await;
    assert_eq!(uninstalls(), 1);
    w.assert_rbac_covers_everything();
    let _ = stop.send(true);
    running.join().await.unwrap();
}
