//! The controller's Kubernetes glue (`amlops run` in process) against the fake API server
//! (`amlops_fake_kube`) and the Azure emulator, both over real HTTP: finalizer before the
//! first Azure write and removed only after Azure confirms, server-side-apply status with
//! observedGeneration and the three conditions, events, Stalled without requeue storms,
//! credentialsRef confined to the resource's namespace, Secret watches, malformed objects,
//! CRD waiting, probes and metrics, and that every request is granted by the RBAC list.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use amlops::azure::ThrottlingModel;
use amlops::azure::config::Secret as Token;
use amlops::azure::{ArmClientConfig, AzureCloud, CredentialConfig};
use amlops::cli::ArmThrottlingArgs;
use amlops::controller::{Backoff, Operator, Options, Readiness, Running};
use amlops::crd::FINALIZER;
use amlops::engine::EngineConfig;
use amlops_emulator::{Budget, ThrottleModel, Throttling, TokenBuckets};
use amlops_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use amlops_fake_kube::{FakeApiServer, Fault};
use amlops_testkit::rbac;

const AV: &str = "amlops.dev/v1alpha1";

struct World {
    fake: FakeApiServer,
    emu: EmulatorHandle,
}

impl World {
    async fn new() -> Self {
        Self::with_crds(true).await
    }

    async fn with_crds(established: bool) -> Self {
        let fake = FakeApiServer::start().await.unwrap();
        for crd in amlops::crd::all_crds() {
            if established {
                fake.install_crd(crd).unwrap();
            } else {
                fake.install_crd_not_established(crd).unwrap();
            }
        }
        let emu = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
        emu.seed_aks_cluster(
            "00000000-0000-0000-0000-000000000000",
            amlops_emulator::ClusterSeed {
                resource_group: "aks-rg".into(),
                name: "dev".into(),
                ..Default::default()
            },
        );
        Self { fake, emu }
    }

    fn arm(&self) -> ArmClientConfig {
        ArmClientConfig::new(
            AzureCloud::custom(self.emu.base_url().parse().unwrap()),
            CredentialConfig::StaticToken(Token::new(self.emu.token())),
        )
    }

    async fn operator(
        &self,
        identity: &str,
        leader: Option<amlops::controller::LeaseConfig>,
    ) -> (Running, watch::Sender<bool>) {
        let resync = EngineConfig::default().resync.base;
        self.operator_with(identity, leader, resync, ArmThrottlingArgs::default())
            .await
    }

    async fn operator_with(
        &self,
        identity: &str,
        leader: Option<amlops::controller::LeaseConfig>,
        resync: Duration,
        throttling: ArmThrottlingArgs,
    ) -> (Running, watch::Sender<bool>) {
        let options = Options {
            namespace: None,
            concurrency: 4,
            engine: EngineConfig {
                busy_poll: Duration::from_millis(100),
                retry_base: Duration::from_millis(100),
                resync: throttling.policy(resync),
                backup_namespace: Some("amlops-system".into()),
                ..EngineConfig::default()
            },
            backoff: Backoff {
                base: Duration::from_millis(200),
                cap: Duration::from_secs(2),
            },
            leader,
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            identity: identity.into(),
            crd_poll: Duration::from_millis(100),
        };
        let op = Operator::new(self.fake.client(), self.arm(), options).unwrap();
        let (tx, rx) = watch::channel(false);
        (op.start(rx).await.unwrap(), tx)
    }

    fn obj(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        self.fake.get(AV, kind, Some(ns), name)
    }

    fn azure_writes(&self) -> usize {
        self.emu
            .requests()
            .iter()
            .filter(|r| matches!(r.method.as_str(), "PUT" | "DELETE"))
            .count()
    }

    /// Every request the operator sent is granted by deploy/rbac-requirements.yaml.
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

fn example(index: usize) -> Value {
    let (file, text) = amlops_testkit::EXAMPLES[index];
    amlops::validate::parse_documents(file, text)
        .remove(0)
        .value
        .unwrap()
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

fn is(o: &Option<Value>, type_: &str) -> bool {
    o.as_ref()
        .and_then(|o| condition(o, type_))
        .is_some_and(|c| c["status"] == "True")
}

fn has_finalizer(o: &Value) -> bool {
    o["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_to_ready_then_delete_with_the_finalizer_held_until_azure_confirms() {
    let w = World::new().await;
    // The first two finalizer patches fail: nothing may reach Azure meanwhile.
    w.fake.inject_fault(
        Fault::new("/inferenceclusters/prod-scoring", 500)
            .method("PATCH")
            .times(2),
    );
    let (running, stop) = w.operator("solo", None).await;
    w.fake.put(example(0)).unwrap();
    wait_until(
        "two failed finalizer patches",
        Duration::from_secs(20),
        || {
            w.fake
                .requests()
                .iter()
                .filter(|r| r.method == "PATCH" && r.status == 500)
                .count()
                >= 2
        },
    )
    .await;
    assert_eq!(
        w.azure_writes(),
        0,
        "no Azure write before the finalizer is in place"
    );

    wait_until("Ready", Duration::from_secs(30), || {
        is(
            &w.obj("InferenceCluster", "ml-platform", "prod-scoring"),
            "Ready",
        )
    })
    .await;
    let o = w
        .obj("InferenceCluster", "ml-platform", "prod-scoring")
        .unwrap();
    assert!(has_finalizer(&o));
    // kstatus: observedGeneration and the three conditions, Ready with a reason.
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
    assert_eq!(o["status"]["phase"], "Ready");
    // The resource gauges follow the watch (a scrape walks no cache).
    let ready_gauge = "amlops_resources{kind=\"InferenceCluster\",phase=\"Ready\"} 1";
    wait_until("the Ready gauge", Duration::from_secs(10), || {
        running.metrics.encode().contains(ready_gauge)
    })
    .await;
    // The finalizer patch precedes every status write (and status precedes Azure writes).
    let reqs = w.fake.requests();
    let fin = reqs
        .iter()
        .position(|r| {
            r.method == "PATCH"
                && r.status == 200
                && !r.path.ends_with("/status")
                && r.path.contains("prod-scoring")
        })
        .expect("finalizer patch");
    let first_status = reqs
        .iter()
        .position(|r| r.path.ends_with("prod-scoring/status"))
        .unwrap();
    assert!(
        fin < first_status,
        "finalizer added before the first status write"
    );
    // Status goes through server-side apply under one field manager.
    for r in reqs.iter().filter(|r| r.path.ends_with("/status")) {
        assert_eq!(r.param("fieldManager").as_deref(), Some("amlops"), "{r:?}");
        assert!(
            r.content_type
                .as_deref()
                .unwrap_or_default()
                .contains("apply-patch"),
            "{r:?}"
        );
    }
    // Events on phase transitions, published by the EventRecorder.
    let events = w.fake.events("ml-platform");
    let reasons: Vec<&str> = events.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(
        reasons.contains(&"Creating") && reasons.contains(&"Ready"),
        "{reasons:?}"
    );
    assert!(
        events.iter().all(|e| e["reportingController"] == "amlops"),
        "{events:?}"
    );

    // Delete: Azure takes a while; the object stays until the compute is gone.
    w.emu.set_op_duration(Duration::from_millis(1500));
    w.fake
        .delete(AV, "InferenceCluster", Some("ml-platform"), "prod-scoring")
        .unwrap()
        .expect("held by the finalizer");
    let mut seen_terminating_with_compute = false;
    wait_until("object gone", Duration::from_secs(30), || {
        let o = w.obj("InferenceCluster", "ml-platform", "prod-scoring");
        let computes = w.emu.state().computes.len();
        if o.is_some() && computes > 0 {
            seen_terminating_with_compute = true;
        }
        if o.is_none() {
            assert_eq!(
                computes, 0,
                "finalizer removed before Azure confirmed the delete"
            );
        }
        o.is_none()
    })
    .await;
    assert!(seen_terminating_with_compute);
    assert!(w.emu.state().computes.is_empty());

    assert_eq!(
        http_get(running.addr, "/readyz").await,
        (200, "ready".to_string())
    );
    let (code, body) = http_get(running.addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("amlops_reconciles_total{kind=\"InferenceCluster\",result=\"success\"}"),
        "{body}"
    );
    assert!(
        body.contains("amlops_arm_requests_total{operation=\"compute_put\""),
        "{body}"
    );
    assert!(body.contains("amlops_leader 1"), "{body}");
    assert!(
        !body.contains("amlops_resources{kind=\"InferenceCluster\""),
        "a deleted resource is counted in no phase: {body}"
    );
    assert!(
        body.contains("amlops_inflight_operations{kind=\"InferenceCluster\"} 0"),
        "{body}"
    );
    w.assert_rbac_covers_everything();
    stop.send(true).unwrap();
    running.join().await.unwrap();
}

/// The reflector cache lags the API server (watch events 400 ms late, as from a loaded
/// API server): a reconcile requeued right after its own status write is handed the object
/// as it was before that write. It must not act on that stale status — it once took the
/// compute it had just created for a stranger's and stalled with ComputeExists (a flake of
/// the leader test, and a stall of `bench --controller` at 1,000 resources).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_cache_never_makes_the_operator_forget_its_own_writes() {
    let w = World::new().await;
    w.fake.set_watch_delay(Duration::from_millis(400));
    let (running, stop) = w.operator("solo", None).await;
    // The finalizer is there from the start (added by an operator that restarted before
    // its first status write), so the stale copies pass the finalizer check: only the
    // status is behind.
    let mut obj = example(0);
    obj["metadata"]["finalizers"] = json!([FINALIZER]);
    w.fake.put(obj).unwrap();
    wait_until("Ready", Duration::from_secs(30), || {
        is(
            &w.obj("InferenceCluster", "ml-platform", "prod-scoring"),
            "Ready",
        )
    })
    .await;
    w.fake
        .delete(AV, "InferenceCluster", Some("ml-platform"), "prod-scoring")
        .unwrap()
        .expect("held by the finalizer");
    wait_until("object gone", Duration::from_secs(30), || {
        w.obj("InferenceCluster", "ml-platform", "prod-scoring")
            .is_none()
    })
    .await;
    let stalled: Vec<_> = w
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/status"))
        .filter_map(|r| r.body)
        .filter(|b| {
            b["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Stalled" && c["status"] == "True")
            })
        })
        .collect();
    assert!(stalled.is_empty(), "stalled on a stale status: {stalled:?}");
    let puts = w
        .emu
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/computes/"))
        .count();
    assert_eq!(puts, 1, "one compute PUT");
    assert!(w.emu.state().computes.is_empty(), "no compute left");
    // The stale copies were replaced by fresh reads of the object.
    assert!(
        w.fake
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/inferenceclusters/prod-scoring")),
        "no fresh read: the lag was not exercised"
    );
    w.assert_rbac_covers_everything();
    stop.send(true).unwrap();
    running.join().await.unwrap();
}

/// A custom network that passes admission (each field well-formed) but whose DNS service
/// address lies outside its service range: only the reconcile's address arithmetic sees it.
fn dns_outside_service_cidr() -> Value {
    json!({
        "subnetId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/aks",
        "serviceCidr": "10.0.0.0/16",
        "dnsServiceIP": "10.1.0.10",
        "dockerBridgeCidr": "172.17.0.1/16"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_spec_stalls_with_no_azure_call_and_no_requeue_storm() {
    let w = World::new().await;
    let (running, stop) = w.operator("solo", None).await;
    let mut bad = example(0);
    bad["metadata"]["name"] = json!("bad");
    // What admission cannot refuse (CEL does no address arithmetic): the reconcile's own
    // check does.
    bad["spec"]["network"] = dns_outside_service_cidr();
    // A malformed object next to it (the fake does no schema validation, as if written
    // before a CRD change): it must not break the watch for the valid one.
    let mut malformed = example(0);
    malformed["metadata"]["name"] = json!("malformed");
    malformed["spec"]["agentCount"] = json!("many");
    w.fake.put(bad).unwrap();
    w.fake.put(malformed).unwrap();
    let mut good = example(1);
    good["metadata"]["namespace"] = json!("ml-platform");
    w.fake.put(good.clone()).unwrap();
    let good_name = good["metadata"]["name"].as_str().unwrap().to_string();

    wait_until("stalled + good Ready", Duration::from_secs(30), || {
        is(&w.obj("InferenceCluster", "ml-platform", "bad"), "Stalled")
            && is(
                &w.obj("InferenceCluster", "ml-platform", "malformed"),
                "Stalled",
            )
            && is(
                &w.obj("InferenceCluster", "ml-platform", &good_name),
                "Ready",
            )
    })
    .await;
    for name in ["bad", "malformed"] {
        let o = w.obj("InferenceCluster", "ml-platform", name).unwrap();
        let c = condition(&o, "Stalled").unwrap();
        assert_eq!(c["reason"], "InvalidSpec", "{name}");
        assert!(
            c["message"].as_str().unwrap().contains("spec."),
            "{name}: {c}"
        );
        assert!(
            !has_finalizer(&o),
            "{name}: no finalizer without an Azure write"
        );
        assert_eq!(
            o["status"]["observedGeneration"],
            o["metadata"]["generation"]
        );
    }
    let azure_paths: Vec<String> = w
        .emu
        .requests()
        .iter()
        .map(|r| r.path.to_lowercase())
        .collect();
    assert!(
        azure_paths
            .iter()
            .all(|p| !p.contains("/computes/bad") && !p.contains("/computes/malformed")),
        "no Azure call for invalid objects"
    );
    // No storm: after a quiet second, the stalled objects were written once each.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = |name: &str| {
        w.fake
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(&format!("/{name}/status")))
            .count()
    };
    assert_eq!(writes("bad"), 1);
    assert_eq!(writes("malformed"), 1);
    let warnings: Vec<Value> = w
        .fake
        .events("ml-platform")
        .into_iter()
        .filter(|e| e["reason"] == "InvalidSpec")
        .collect();
    assert_eq!(warnings.len(), 2, "one Warning event per stalled object");
    assert!(warnings.iter().all(|e| e["type"] == "Warning"));

    // A fix unstalls it.
    let mut fixed = example(0);
    fixed["metadata"]["name"] = json!("bad");
    w.fake.put(fixed).unwrap();
    wait_until("fixed → Ready", Duration::from_secs(30), || {
        is(&w.obj("InferenceCluster", "ml-platform", "bad"), "Ready")
    })
    .await;
    w.assert_rbac_covers_everything();
    stop.send(true).unwrap();
    running.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_ref_to_another_namespace_is_refused_and_a_fixed_secret_unstalls() {
    let w = World::new().await;
    // A Secret in another namespace that must never be read.
    w.fake
        .put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "azure", "namespace": "other"},
                    "stringData": {"clientId": "a", "clientSecret": "s3cr3t-value", "tenantId": "t"}}))
        .unwrap();
    let (running, stop) = w.operator("solo", None).await;
    let mut foreign = example(0);
    foreign["spec"]["credentialsRef"] = json!({"name": "azure", "namespace": "other"});
    w.fake.put(foreign).unwrap();
    // The Custom-TLS attachment whose Secret does not exist yet.
    w.fake.put(example(3)).unwrap();
    wait_until("both stalled", Duration::from_secs(30), || {
        is(
            &w.obj("InferenceCluster", "ml-platform", "prod-scoring"),
            "Stalled",
        ) && is(
            &w.obj("ClusterAttachment", "ml-platform", "shared-aks"),
            "Stalled",
        )
    })
    .await;
    let o = w
        .obj("InferenceCluster", "ml-platform", "prod-scoring")
        .unwrap();
    assert_eq!(
        condition(&o, "Stalled").unwrap()["reason"],
        "CredentialsRefForbidden"
    );
    assert!(
        w.fake
            .requests()
            .iter()
            .all(|r| !r.path.contains("/namespaces/other/")),
        "the other namespace's Secret was never requested"
    );
    assert!(
        w.emu
            .requests()
            .iter()
            .all(|r| !r.path.contains("prod-scoring"))
    );
    let dump = serde_json::to_string(&w.fake.events("ml-platform")).unwrap()
        + &serde_json::to_string(&o).unwrap();
    assert!(
        !dump.contains("s3cr3t-value"),
        "no secret in events or status"
    );

    let a = w
        .obj("ClusterAttachment", "ml-platform", "shared-aks")
        .unwrap();
    assert_eq!(
        condition(&a, "Stalled").unwrap()["reason"],
        "SecretNotFound"
    );
    // Creating the Secret wakes the attachment up (Secret watch), without a spec change.
    let tls =
        amlops_testkit::self_signed_tls_secret("ml-platform", "scoring-tls", "scoring.contoso.com")
            .unwrap();
    w.fake.put(serde_json::to_value(&tls).unwrap()).unwrap();
    wait_until("attachment Ready", Duration::from_secs(30), || {
        is(
            &w.obj("ClusterAttachment", "ml-platform", "shared-aks"),
            "Ready",
        )
    })
    .await;
    w.assert_rbac_covers_everything();
    stop.send(true).unwrap();
    running.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_established_crds_and_probes_report_it() {
    let w = World::with_crds(false).await;
    let (running, stop) = w.operator("solo", None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, body) = http_get(running.addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("CRD"), "{body}");
    assert_eq!(http_get(running.addr, "/healthz").await.0, 200);
    assert!(
        w.fake
            .requests()
            .iter()
            .all(|r| !r.path.contains("/apis/amlops.dev/")),
        "nothing watched before the CRDs are established"
    );
    for kind in amlops::controller::Kind::ALL {
        assert!(w.fake.establish(&kind.crd_name()));
    }
    let mut ready = running.ready.clone();
    // (The guard `wait_for` returns must not outlive the statement: it blocks the sender.)
    let synced = tokio::time::timeout(
        Duration::from_secs(10),
        ready.wait_for(|r| *r == Readiness::Ready),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(
        synced,
        "ready once established and synced: {:?}",
        *running.ready.borrow()
    );
    assert_eq!(http_get(running.addr, "/readyz").await.0, 200);
    w.fake.put(example(0)).unwrap();
    wait_until("Ready", Duration::from_secs(30), || {
        is(
            &w.obj("InferenceCluster", "ml-platform", "prod-scoring"),
            "Ready",
        )
    })
    .await;
    stop.send(true).unwrap();
    running.join().await.unwrap();
}

/// GETs of the compute `devaks` the operator sends during 5 s once the attachment is
/// Ready, with a 1 s base resync, the given throttling settings of the operator, and the
/// emulator enforcing `azure` (ARM's model and figures).
async fn steady_gets(budget: ArmThrottlingArgs, azure: ThrottleModel) -> usize {
    let w = World::new().await;
    w.emu.set_throttling(Throttling::enforced(azure));
    let (running, stop) = w
        .operator_with("solo", None, Duration::from_secs(1), budget)
        .await;
    w.fake.put(example(4)).unwrap();
    wait_until("Ready", Duration::from_secs(30), || {
        is(&w.obj("ClusterAttachment", "ml-dev", "dev-aks"), "Ready")
    })
    .await;
    let gets = || {
        w.emu
            .requests()
            .iter()
            // A resync reads the compute: its own GET, or the workspace's list (a listing
            // older than half the base interval — 0.5 s here — is fetched again).
            .filter(|r| {
                r.method == "GET"
                    && (r.path.ends_with("/computes/devaks") || r.path.ends_with("/computes"))
            })
            .count()
    };
    // The reconcile that the Ready status write itself triggers may still be running.
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.fake.clear_requests();
    let before = gets();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = gets() - before;
    stop.send(true).unwrap();
    running.join().await.unwrap();
    assert_eq!(w.azure_writes(), 1, "one attach PUT, no steady-state write");
    let throttled = w.emu.requests().iter().filter(|r| r.status == 429).count();
    assert_eq!(throttled, 0, "the operator's own pacing never meets a 429");
    // Nothing changed, so nothing is written to the API server either (no status apply
    // per resync: a thousand resources would cost a thousand writes per period).
    let kube_writes: Vec<String> = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && r.path.contains("dev-aks"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        kube_writes.is_empty(),
        "steady-state writes: {kube_writes:?}"
    );
    during
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_resync_stays_within_the_arm_read_budget() {
    // A migrated subscription (ARM's token buckets, enforced): the operator sees 249 reads
    // left of a 250-token bucket — a full bucket, not "little left" — and resyncs at the
    // base interval: about every second, one GET compute each.
    let token_buckets = ThrottleModel::TokenBucket(TokenBuckets::default());
    let free = steady_gets(ArmThrottlingArgs::default(), token_buckets).await;
    assert!(
        (3..=7).contains(&free),
        "{free} GETs in 5 s at a 1 s resync"
    );
    let hour = |reads_per_hour| {
        ThrottleModel::Hourly(Budget {
            reads_per_hour,
            ..Budget::default()
        })
    };
    // 36 reads/h for one resource: the floor is 100 s, so no resync in the window.
    let tight = ArmThrottlingArgs {
        arm_read_budget: 36,
        arm_read_share: 1.0,
        ..ArmThrottlingArgs::default()
    };
    assert_eq!(
        steady_gets(tight, hour(12_000)).await,
        0,
        "resync stretched to 100 s"
    );
    // ARM says fewer than 200 reads remain of an hour of 12,000 (under a quarter): 16×
    // slower. (200 alone could be a token bucket: the configuration names the model.)
    let hourly = ArmThrottlingArgs {
        arm_throttling: ThrottlingModel::Hourly,
        ..ArmThrottlingArgs::default()
    };
    assert_eq!(
        steady_gets(hourly, hour(200)).await,
        0,
        "remaining-reads header honoured"
    );
}

fn lease(identity: &str) -> amlops::controller::LeaseConfig {
    let mut l = amlops::controller::LeaseConfig::new("amlops-leader", "amlops-system", identity);
    l.lease_duration = Duration::from_secs(2);
    l.renew_deadline = Duration::from_millis(1500);
    l.retry_period = Duration::from_millis(200);
    l
}

fn reconciles(running: &Running) -> u64 {
    running.metrics.reconciles_total()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_only_the_leader_reconciles_and_the_other_takes_over() {
    use amlops::controller::Leadership;
    let w = World::new().await;
    let (a, stop_a) = w.operator("replica-a", Some(lease("replica-a"))).await;
    let (b, stop_b) = w.operator("replica-b", Some(lease("replica-b"))).await;
    let leader_of = |r: &Running| *r.leadership.borrow() == Leadership::Leader;
    wait_until("a leader", Duration::from_secs(10), || {
        leader_of(&a) || leader_of(&b)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(leader_of(&a) ^ leader_of(&b), "exactly one leader");
    let (leader, stop_leader, follower, stop_follower) = if leader_of(&a) {
        (a, stop_a, b, stop_b)
    } else {
        (b, stop_b, a, stop_a)
    };
    // The follower is ready too (it serves probes and waits).
    let mut fr = follower.ready.clone();
    tokio::time::timeout(
        Duration::from_secs(5),
        fr.wait_for(|r| *r == Readiness::Ready),
    )
    .await
    .unwrap()
    .unwrap();

    w.fake.put(example(0)).unwrap();
    wait_until("Ready", Duration::from_secs(30), || {
        is(
            &w.obj("InferenceCluster", "ml-platform", "prod-scoring"),
            "Ready",
        )
    })
    .await;
    assert!(reconciles(&leader) > 0);
    assert_eq!(reconciles(&follower), 0, "the follower never reconciles");
    assert!(follower.metrics.encode().contains("amlops_leader 0"));

    // The leader stops (a rollout): it releases the Lease and the other takes over at once.
    stop_leader.send(true).unwrap();
    leader.join().await.unwrap();
    let lease_obj = w
        .fake
        .get(
            "coordination.k8s.io/v1",
            "leases",
            Some("amlops-system"),
            "amlops-leader",
        )
        .unwrap();
    let took = Instant::now();
    wait_until("takeover", Duration::from_secs(10), || leader_of(&follower)).await;
    assert!(
        took.elapsed() < Duration::from_secs(2),
        "a released Lease is taken without waiting for expiry ({lease_obj})"
    );
    let mut second = example(1);
    second["metadata"]["namespace"] = json!("ml-platform");
    let name = second["metadata"]["name"].as_str().unwrap().to_string();
    w.fake.put(second).unwrap();
    wait_until("second Ready", Duration::from_secs(30), || {
        is(&w.obj("InferenceCluster", "ml-platform", &name), "Ready")
    })
    .await;
    assert!(reconciles(&follower) > 0, "the new leader reconciles");
    w.assert_rbac_covers_everything();
    stop_follower.send(true).unwrap();
    follower.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_steps_down_and_stops_acting() {
    use amlops::controller::Leadership;
    let w = World::new().await;
    let (a, stop_a) = w.operator("replica-a", Some(lease("replica-a"))).await;
    wait_until("leader", Duration::from_secs(10), || {
        *a.leadership.borrow() == Leadership::Leader
    })
    .await;
    // The API server refuses every Lease write for longer than the renew deadline.
    w.fake.inject_fault(
        Fault::new("/leases/amlops-leader", 500)
            .method("PUT")
            .times(1000),
    );
    wait_until("stepped down", Duration::from_secs(10), || {
        *a.leadership.borrow() != Leadership::Leader
    })
    .await;
    let before = reconciles(&a);
    w.fake.put(example(0)).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(reconciles(&a), before, "no reconcile without the Lease");
    assert_eq!(
        w.obj("InferenceCluster", "ml-platform", "prod-scoring")
            .unwrap()["status"],
        json!({"observedGeneration": -1}),
        "only the CRD's default status: nothing written"
    );
    // Once the API server accepts writes again it leads and converges.
    w.fake.clear_faults();
    wait_until("Ready", Duration::from_secs(30), || {
        is(
            &w.obj("InferenceCluster", "ml-platform", "prod-scoring"),
            "Ready",
        )
    })
    .await;
    stop_a.send(true).unwrap();
    a.join().await.unwrap();
}

/// kstatus' verdict on a custom resource, the rules Flux's health checks (`wait`,
/// `healthChecks`) apply. From kubernetes-sigs/cli-utils `pkg/kstatus/status`: `Compute`
/// (status.go) runs `checkGenericProperties` (generic.go: a deletionTimestamp is
/// Terminating; `checkGeneration`: `status.observedGeneration`, when present, != `generation`
/// is InProgress "LatestGenerationNotObserved"; `Reconciling=True` is InProgress;
/// `Stalled=True` is Failed); our kinds have no built-in rules, so then
/// `checkReadyCondition` (`Ready=True` Current, `False`/`Unknown` InProgress) and otherwise,
/// with neither `observedGeneration` nor conditions, "Resource is current": Current.
fn kstatus(o: &Value) -> &'static str {
    if o["metadata"]["deletionTimestamp"].is_string() {
        return "Terminating";
    }
    if let (Some(generation), Some(observed)) = (
        o["metadata"]["generation"].as_i64(),
        o["status"]["observedGeneration"].as_i64(),
    ) && generation != observed
    {
        return "InProgress";
    }
    let with =
        |type_: &str, status: &str| condition(o, type_).is_some_and(|c| c["status"] == status);
    if with("Reconciling", "True") {
        "InProgress"
    } else if with("Stalled", "True") {
        "Failed"
    } else if with("Ready", "True") {
        "Current"
    } else if with("Ready", "False") || with("Ready", "Unknown") {
        "InProgress"
    } else {
        "Current"
    }
}

/// What `kubectl get` (and, for priority > 0, `-o wide`) shows for `o`: each
/// `additionalPrinterColumns` entry of its CRD as (name, priority, value), the column's
/// JSONPath evaluated by jsonpath-rust (kubectl's `.a.b[?(@.x=="y")].c` is the RFC 9535
/// query `$.a.b[?(@.x=="y")].c`); an empty value where the path selects nothing.
fn printer_columns(kind: &str, o: &Value) -> Vec<(String, i32, String)> {
    use jsonpath_rust::JsonPath;
    let crd = amlops::crd::all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    let columns = crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default();
    columns
        .into_iter()
        .map(|c| {
            let found = o.query(&format!("${}", c.json_path)).unwrap();
            let value = found
                .first()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .unwrap_or_default();
            (c.name, c.priority.unwrap_or(0), value)
        })
        .collect()
}

fn column(columns: &[(String, i32, String)], name: &str) -> (i32, String) {
    let (_, priority, value) = columns.iter().find(|c| c.0 == name).unwrap();
    (*priority, value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_waits_before_the_first_status_and_kubectl_get_shows_why_it_stalled() {
    use amlops::crd::InferenceCluster;
    use kube::api::{Api, PostParams};

    let w = World::new().await;
    // Applied while the operator is down (or not yet leader, or backlogged).
    let mut bad = example(0);
    bad["metadata"]["name"] = json!("bad");
    bad["spec"]["network"] = dns_outside_service_cidr();
    let api: Api<InferenceCluster> = Api::namespaced(w.fake.client(), "ml-platform");
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(bad).unwrap(),
        )
        .await
        .unwrap();
    // The API server's structural defaulting gives it the CRD's status default, which the
    // operator reads as "no generation observed yet".
    let status = created.status.expect("the defaulted status");
    assert_eq!(status.observed_generation, None);
    assert!(status.phase.is_none() && status.conditions.is_empty());
    let o = w.obj("InferenceCluster", "ml-platform", "bad").unwrap();
    assert_eq!(o["status"], json!({"observedGeneration": -1}));
    assert_eq!(o["metadata"]["generation"], 1);
    assert_eq!(kstatus(&o), "InProgress", "not Current before any status");
    let mut without_default = o.clone();
    without_default.as_object_mut().unwrap().remove("status");
    assert_eq!(
        kstatus(&without_default),
        "Current",
        "what Flux saw without the default"
    );
    let columns = printer_columns("InferenceCluster", &o);
    assert_eq!(column(&columns, "Ready").1, "");
    assert_eq!(column(&columns, "Reason").1, "");

    // The operator starts and stalls it: kstatus Failed, `kubectl get` says why.
    let (running, stop) = w.operator("solo", None).await;
    wait_until("stalled", Duration::from_secs(30), || {
        is(&w.obj("InferenceCluster", "ml-platform", "bad"), "Stalled")
    })
    .await;
    let o = w.obj("InferenceCluster", "ml-platform", "bad").unwrap();
    assert_eq!(o["status"]["observedGeneration"], 1);
    assert_eq!(kstatus(&o), "Failed");
    let columns = printer_columns("InferenceCluster", &o);
    assert_eq!(column(&columns, "Phase"), (0, "Pending".to_string()));
    assert_eq!(column(&columns, "Ready"), (0, "False".to_string()));
    assert_eq!(column(&columns, "Reason"), (0, "InvalidSpec".to_string()));
    let (priority, message) = column(&columns, "Message");
    assert_eq!(priority, 1, "the message only with -o wide");
    assert!(
        message.contains("dnsServiceIP") && message == condition(&o, "Ready").unwrap()["message"],
        "{message}"
    );
    assert_eq!(
        columns.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        [
            "Phase", "Ready", "Reason", "Compute", "Purpose", "TLS", "Message", "Age"
        ]
    );

    // Fixed: Current once Ready at the new generation.
    let mut fixed = example(0);
    fixed["metadata"]["name"] = json!("bad");
    w.fake.put(fixed).unwrap();
    wait_until("fixed → Ready", Duration::from_secs(30), || {
        w.obj("InferenceCluster", "ml-platform", "bad")
            .is_some_and(|o| kstatus(&o) == "Current")
    })
    .await;
    let o = w.obj("InferenceCluster", "ml-platform", "bad").unwrap();
    assert_eq!(
        column(&printer_columns("InferenceCluster", &o), "Ready").1,
        "True"
    );
    stop.send(true).unwrap();
    running.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_deleted_while_failing_leaves_no_backoff_behind() {
    let w = World::new().await;
    // Every finalizer patch fails: the object stays in error backoff, with no finalizer.
    w.fake.inject_fault(
        Fault::new("/inferenceclusters/doomed", 500)
            .method("PATCH")
            .times(usize::MAX),
    );
    let (running, stop) = w.operator("solo", None).await;
    let mut doomed = example(0);
    doomed["metadata"]["name"] = json!("doomed");
    w.fake.put(doomed).unwrap();
    wait_until("in error backoff", Duration::from_secs(20), || {
        running.failing() == 1
    })
    .await;
    let gone = w
        .fake
        .delete(AV, "InferenceCluster", Some("ml-platform"), "doomed")
        .unwrap();
    assert!(gone.is_none(), "no finalizer: deleted at once");
    // kube-runtime never reconciles it again (its pending retry finds nothing in the
    // cache), so only the watch's Delete event can clear its failure count.
    wait_until("backoff forgotten", Duration::from_secs(5), || {
        running.failing() == 0
    })
    .await;
    assert_eq!(w.azure_writes(), 0);
    stop.send(true).unwrap();
    running.join().await.unwrap();
}

const SUB: &str = "00000000-0000-0000-0000-000000000000";

fn attachment(ns: &str, name: &str, aks: &str, extra: Value) -> Value {
    let mut spec = json!({
        "workspace": {"subscriptionId": SUB, "resourceGroup": "ml-rg", "name": "ml-ws"},
        "aksCluster": {"resourceId": format!("/subscriptions/{SUB}/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/{aks}")},
        "clusterPurpose": "DevTest",
        "deletionPolicy": "Detach",
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    json!({"apiVersion": AV, "kind": "ClusterAttachment",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn namespace_gone(w: &World, ns: &str) -> bool {
    w.fake.get("v1", "Namespace", None, ns).is_none()
}

/// Deleting a whole namespace (issue: Kubernetes-side cases, 1). The namespace controller
/// deletes the `credentialsRef` Secret before the custom resources our finalizer holds,
/// and a terminating namespace refuses new Secrets. The deletion completes, with Azure
/// handled per `deletionPolicy`:
/// - team-a: the credentials Secret is gone and the operator (started afterwards, as after
///   a restart) does not remember its identity: the attachment that owns a compute is
///   detached with the operator's own identity; the one that never reached Azure is let go
///   with no Azure call;
/// - team-b: a TLS attachment under `Detach`: its backup cannot be written in the dying
///   namespace and goes to the operator's namespace, then the compute is detached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_completes_with_the_credentials_secret_gone_first_and_a_tls_backup_elsewhere()
 {
    let w = World::new().await;
    w.emu.seed_aks_cluster(
        SUB,
        amlops_emulator::ClusterSeed {
            resource_group: "aks-rg".into(),
            name: "devb".into(),
            ..Default::default()
        },
    );
    for ns in ["team-a", "team-b", "amlops-system"] {
        w.fake
            .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .unwrap();
    }
    // team-a, as an earlier operator left it: an attached compute recorded in status.
    w.fake
        .put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "azure", "namespace": "team-a"},
                    "stringData": {"clientId": "a", "clientSecret": "s3cr3t-value", "tenantId": "t"}}))
        .unwrap();
    let owned = attachment(
        "team-a",
        "owned",
        "dev",
        json!({"credentialsRef": {"name": "azure"}}),
    );
    let d = amlops::engine::Desired::from_cluster_attachment(
        &serde_json::from_value(owned.clone()).unwrap(),
    );
    let arm = amlops::azure::ArmClient::new(w.arm()).unwrap();
    let compute = d.compute_resource_id().unwrap();
    let body = amlops::engine::body::provision_body(&d, "eastus", None, None);
    if let amlops::azure::LroStart::Started(h) = arm
        .put_compute(&compute, &body, amlops::azure::OperationKind::Attach)
        .await
        .unwrap()
    {
        arm.wait_for(&h, Duration::from_secs(10)).await.unwrap();
    }
    for (name, mut obj) in [
        ("owned", owned),
        (
            "never",
            attachment(
                "team-a",
                "never",
                "dev",
                json!({"credentialsRef": {"name": "azure"}}),
            ),
        ),
    ] {
        obj["metadata"]["finalizers"] = json!([FINALIZER]);
        w.fake.put(obj.clone()).unwrap();
        if name == "owned" {
            obj["status"] = json!({"phase": "Ready", "computeId": compute.canonical(),
                                   "aksResourceId": d_aks(&obj), "isAttachedCompute": true});
            w.fake.put_status(obj).unwrap();
        }
    }
    w.emu.clear_requests();
    w.fake
        .delete("v1", "Namespace", None, "team-a")
        .unwrap()
        .expect("terminating while the finalizers hold");
    assert!(
        w.fake
            .get("v1", "Secret", Some("team-a"), "azure")
            .is_none(),
        "the Secret goes first"
    );
    let refused = w.fake.put(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "late", "namespace": "team-a"}, "stringData": {"a": "b"}}));
    let refused = refused.expect_err("no new Secret in a terminating namespace");
    assert_eq!(refused.code, 403);
    assert!(
        refused.message.ends_with(
            "unable to create new content in namespace team-a because it is being terminated"
        ),
        "{}",
        refused.message
    );

    let (running, stop) = w.operator("solo", None).await;
    wait_until("team-a gone", Duration::from_secs(30), || {
        namespace_gone(&w, "team-a")
    })
    .await;
    let log = w.emu.requests();
    let detaches: Vec<_> = log
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.ends_with("/computes/owned"))
        .collect();
    assert_eq!(detaches.len(), 1, "{log:#?}");
    assert!(
        detaches[0]
            .query
            .contains("underlyingResourceAction=Detach")
    );
    assert!(
        log.iter()
            .all(|r| r.method != "PUT" && !r.path.contains("/computes/never")),
        "the resource that never reached Azure costs no Azure call: {log:#?}"
    );
    assert!(w.emu.state().compute("owned").is_none());
    assert!(
        w.emu.state().cluster("dev").is_some(),
        "Detach keeps the cluster"
    );

    // team-b: a TLS attachment under Detach, reconciled to Ready by this operator.
    w.fake
        .put(attachment(
            "team-b",
            "scoring",
            "devb",
            json!({"tls": {"mode": "Auto", "leafDomainLabel": "teamb"}}),
        ))
        .unwrap();
    wait_until(
        "team-b Ready with its certificate backed up",
        Duration::from_secs(30),
        || {
            let o = w.obj("ClusterAttachment", "team-b", "scoring");
            is(&o, "Ready")
                && o.is_some_and(|o| o["status"]["tls"]["sha256Fingerprint"].is_string())
        },
    )
    .await;
    let fingerprint = w.obj("ClusterAttachment", "team-b", "scoring").unwrap()["status"]["tls"]
        ["sha256Fingerprint"]
        .clone();
    w.emu.clear_requests();
    w.fake.delete("v1", "Namespace", None, "team-b").unwrap();
    wait_until("team-b gone", Duration::from_secs(30), || {
        namespace_gone(&w, "team-b")
    })
    .await;
    let kept = w
        .fake
        .get(
            "v1",
            "Secret",
            Some("amlops-system"),
            "team-b.scoring-tls-backup",
        )
        .expect("the backup went to the operator's namespace");
    let pem = kept["data"]["tls.crt"].as_str().expect("certificate");
    assert!(!pem.is_empty());
    assert!(fingerprint.is_string());
    let log = w.emu.requests();
    let detaches: Vec<_> = log
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.ends_with("/computes/scoring"))
        .collect();
    assert_eq!(detaches.len(), 1, "{log:#?}");
    assert!(
        detaches[0]
            .query
            .contains("underlyingResourceAction=Detach")
    );
    assert!(
        w.emu.state().cluster("devb").is_some(),
        "Detach keeps the cluster"
    );
    w.assert_rbac_covers_everything();
    stop.send(true).unwrap();
    running.join().await.unwrap();
}

fn d_aks(obj: &Value) -> Value {
    obj["spec"]["aksCluster"]["resourceId"].clone()
}
