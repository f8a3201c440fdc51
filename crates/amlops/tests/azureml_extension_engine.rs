//! The `AzureMLExtension` engine against the emulator over real HTTP: install with TLS from
//! a Secret, hold still, change a setting, rotate the certificate, refuse a cluster the
//! extension cannot run on (each preflight stall, with no write), surface Azure's failure
//! code, and uninstall once no compute uses it — each outcome checked on the emulator's
//! request log (what was written) and the status.

use amlops_testkit as common;

use std::time::Duration;

use amlops::azure::ResourceId;
use amlops::crd::{AzureMLExtension, AzureMlExtensionStatus};
use amlops::engine::azureml_extension::ExtensionDesired;
use amlops_emulator::{
    ClusterSeed, ClusterTraits, ClusterTraitsSeed, DEFAULT_SUBSCRIPTION, ExtensionSeed,
    KubernetesPathSeed, PoolSeed, ProviderSeed,
};
use common::{NS, World, tls_secret};

const SUB: &str = DEFAULT_SUBSCRIPTION;
const HOST: &str = "scoring.contoso.com";

fn seed_cluster(w: &World, name: &str, nodes: i64, power: &str) -> ResourceId {
    w.emu.seed_aks_cluster(
        SUB,
        ClusterSeed {
            resource_group: "aks-rg".into(),
            name: name.into(),
            agent_pools: vec![PoolSeed {
                count: nodes,
                ..PoolSeed::default()
            }],
            power_state: power.into(),
            ..ClusterSeed::default()
        },
    );
    ResourceId::managed_cluster(SUB, "aks-rg", name).unwrap()
}

fn seed(w: &World, s: KubernetesPathSeed) {
    w.emu
        .seed_kubernetes_path(&KubernetesPathSeed {
            crd_delay_ms: Some(0),
            ..s
        })
        .unwrap();
}

fn traits(cluster: &ResourceId, t: ClusterTraits) -> KubernetesPathSeed {
    KubernetesPathSeed {
        clusters: vec![ClusterTraitsSeed {
            cluster_id: cluster.to_string(),
            traits: t,
        }],
        ..KubernetesPathSeed::default()
    }
}

/// An `AzureMLExtension` named `name` on `cluster`, training and inference with TLS from
/// Secret `scoring-tls`; `extra` is merged into the spec.
fn cr(name: &str, cluster: &ResourceId, extra: serde_json::Value) -> AzureMLExtension {
    let mut spec = serde_json::json!({
        "cluster": {"resourceId": cluster.to_string()},
        "extensionName": "azureml",
        "training": {"enabled": true},
        "inference": {
            "enabled": true,
            "tls": {"cname": HOST, "secretRef": {"name": "scoring-tls"}}
        },
        "maxRetries": 1,
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "amlops.dev/v1alpha1",
        "kind": "AzureMLExtension",
        "metadata": {"name": name, "namespace": NS, "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

async fn desired(w: &World, ext: &AzureMLExtension, in_use: &[&str]) -> ExtensionDesired {
    w.engine
        .extension_desired(ext, in_use.iter().map(|s| s.to_string()).collect())
        .await
}

fn status(w: &World, d: &ExtensionDesired) -> AzureMlExtensionStatus {
    w.store.extension_status(&d.key).unwrap_or_default()
}

fn cond(st: &AzureMlExtensionStatus, type_: &str) -> Option<(String, String)> {
    st.conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// Reconciles `d` until `done` holds (requeues shortened to 20 ms); returns the status.
async fn drive(
    w: &World,
    d: &ExtensionDesired,
    what: &str,
    done: impl Fn(&AzureMlExtensionStatus, bool) -> bool,
) -> AzureMlExtensionStatus {
    for _ in 0..500 {
        let out = w
            .engine
            .reconcile_extension(d, status(w, d))
            .await
            .expect("reconcile");
        if done(&out.status, out.finished) {
            return out.status;
        }
        let wait = out.requeue.unwrap_or(Duration::from_millis(20));
        tokio::time::sleep(wait.min(Duration::from_millis(20))).await;
    }
    panic!(
        "{what}: never reached; status {:#?}; log {:#?}",
        status(w, d),
        w.brief_log()
    );
}

async fn ready(w: &World, d: &ExtensionDesired) -> AzureMlExtensionStatus {
    drive(w, d, "Ready", |st, _| cond(st, "Ready").is_some()).await
}

async fn stalled(w: &World, d: &ExtensionDesired, reason: &str) -> AzureMlExtensionStatus {
    drive(w, d, reason, |st, _| {
        cond(st, "Stalled").is_some_and(|(r, _)| r == reason)
    })
    .await
}

/// Accepted writes to Azure (anything but GET, and but the credential call that reaches
/// the cluster's API server: a POST by ARM's design that changes nothing).
fn writes(w: &World) -> Vec<String> {
    w.emu
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && r.status < 300 && r.path.starts_with("/subscriptions/"))
        .filter(|r| !r.path.ends_with("/listClusterUserCredential"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// Credential calls (each reaches the cluster's own API server).
fn credential_calls(w: &World) -> usize {
    w.emu
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/listClusterUserCredential"))
        .count()
}

fn instance_types_api(client: kube::Client) -> kube::Api<kube::api::DynamicObject> {
    let ar = kube::api::ApiResource {
        group: "amlarc.azureml.com".into(),
        version: "v1alpha1".into(),
        api_version: "amlarc.azureml.com/v1alpha1".into(),
        kind: "InstanceType".into(),
        plural: "instancetypes".into(),
    };
    kube::Api::all_with(client, &ar)
}

/// The cluster's InstanceType objects: name → (owner annotation, cpu limit).
async fn instance_types_on(
    w: &World,
    cluster: &ResourceId,
) -> std::collections::BTreeMap<String, (Option<String>, String)> {
    let client = amlops::tls::cluster_client(&w.engine.arm, cluster)
        .await
        .unwrap();
    instance_types_api(client)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| {
            let owner = o
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("amlops.dev/owner").cloned());
            let cpu = o.data["spec"]["resources"]["limits"]["cpu"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (o.metadata.name.unwrap(), (owner, cpu))
        })
        .collect()
}

fn arm_reads(w: &World) -> usize {
    w.emu
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/subscriptions/"))
        .count()
}

fn no_secret_anywhere(w: &World, d: &ExtensionDesired, key_pem: &str) {
    let body_line = key_pem
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 20)
        .expect("a key line");
    let st = serde_json::to_string(&status(w, d)).unwrap();
    assert!(!st.contains(body_line), "key in status");
    for e in w.store.events() {
        assert!(!e.message.contains(body_line), "key in event {}", e.reason);
        assert!(
            !e.message.contains("LS0tLS1CRUdJTi"),
            "base64 PEM in event {}",
            e.reason
        );
    }
    assert!(!format!("{d:?}").contains(body_line), "key in Debug");
}

fn key_of(secret: &k8s_openapi::api::core::v1::Secret) -> String {
    let data = secret.data.as_ref().unwrap();
    String::from_utf8(data["tls.key"].0.clone()).unwrap()
}

#[tokio::test]
async fn installs_with_tls_and_instance_types_holds_still_patches_a_change_and_rotates_the_certificate()
 {
    let w = World::new().await;
    let cluster = seed_cluster(&w, "shared", 3, "Running");
    let (secret, fp) = tls_secret("scoring-tls", HOST);
    let key = key_of(&secret);
    w.store.insert_secret(secret);
    let types = serde_json::json!({"instanceTypes": {
        "small": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                "limits": {"cpu": "1", "memory": "2Gi"}}},
        "gpu": {"nodeSelector": {"agentpool": "gpu"},
                "resources": {"requests": {"cpu": "4", "memory": "16Gi"},
                              "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}}}
    }});
    let ext = cr("azureml", &cluster, types.clone());
    let d = desired(&w, &ext, &[]).await;
    assert!(d.tls.is_some(), "{:?}", d.tls_error);

    let st = ready(&w, &d).await;
    let ext_path =
        format!("{cluster}/providers/Microsoft.KubernetesConfiguration/extensions/azureml");
    assert_eq!(writes(&w), vec![format!("PUT {ext_path}")], "one install");
    assert_eq!(
        credential_calls(&w),
        1,
        "one kubeconfig for the install's reads and writes on the cluster"
    );
    // The instance types, applied once the CRD appeared (the emulator serves it 500 ms
    // after Succeeded), labelled and owned; the router's load balancer address.
    let owner = Some(format!("{NS}/azureml"));
    let on_cluster = instance_types_on(&w, &cluster).await;
    assert_eq!(
        on_cluster,
        [
            ("gpu".to_string(), (owner.clone(), "4".to_string())),
            ("small".to_string(), (owner.clone(), "1".to_string())),
        ]
        .into(),
    );
    assert_eq!(st.instance_types, vec!["gpu", "small"]);
    let router = st.router_address.clone().expect("router address");
    assert!(router.parse::<std::net::Ipv4Addr>().is_ok(), "{router}");
    assert!(st.cluster_objects_hash.is_some());
    let reasons: Vec<String> = w.store.events().into_iter().map(|e| e.reason).collect();
    assert!(
        reasons.contains(&"ApplyingInstanceTypes".to_string()),
        "{reasons:?}"
    );
    assert_eq!(st.provisioning_state.as_deref(), Some("Succeeded"));
    assert!(st.version.is_some(), "{st:#?}");
    assert!(st.principal_id.is_some(), "{st:#?}");
    assert_eq!(st.extension_id.as_deref(), Some(ext_path.as_str()));
    let tls = st.tls.as_ref().expect("tls");
    assert_eq!(tls.hostname.as_deref(), Some(HOST));
    assert_eq!(tls.sha256_fingerprint.as_deref(), Some(fp.as_str()));
    assert!(tls.not_after.is_some());
    assert!(st.operation.is_none());
    no_secret_anywhere(&w, &d, &key);

    // Five resyncs: one ARM read each, no write.
    w.emu.clear_requests();
    for _ in 0..5 {
        let out = w
            .engine
            .reconcile_extension(&d, status(&w, &d))
            .await
            .unwrap();
        assert!(cond(&out.status, "Ready").is_some());
        assert!(out.requeue.is_some());
    }
    assert!(writes(&w).is_empty(), "{:?}", writes(&w));
    assert_eq!(arm_reads(&w), 5, "{:#?}", w.brief_log());
    assert_eq!(
        credential_calls(&w),
        0,
        "a steady resync leaves the cluster alone"
    );

    // The instance types change: `gpu` goes, `small` grows; an InstanceType somebody else
    // created stays. No Azure write.
    let client = amlops::tls::cluster_client(&w.engine.arm, &cluster)
        .await
        .unwrap();
    let theirs: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "amlarc.azureml.com/v1alpha1", "kind": "InstanceType",
        "metadata": {"name": "theirs"},
        "spec": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                               "limits": {"cpu": "1", "memory": "1Gi"}}}
    }))
    .unwrap();
    instance_types_api(client)
        .create(&Default::default(), &theirs)
        .await
        .unwrap();
    let fewer = cr(
        "azureml",
        &cluster,
        serde_json::json!({"instanceTypes": {
            "small": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                                    "limits": {"cpu": "2", "memory": "2Gi"}}}
        }}),
    );
    let d1 = desired(&w, &fewer, &[]).await;
    w.emu.clear_requests();
    let st = drive(&w, &d1, "instance types changed", |st, _| {
        cond(st, "Ready").is_some() && st.instance_types == vec!["small".to_string()]
    })
    .await;
    assert!(writes(&w).is_empty(), "{:?}", writes(&w));
    assert_eq!(
        instance_types_on(&w, &cluster).await,
        [
            ("small".to_string(), (owner.clone(), "2".to_string())),
            ("theirs".to_string(), (None, "1".to_string())),
        ]
        .into(),
    );
    assert_eq!(st.router_address.as_deref(), Some(router.as_str()));

    // A settings change: exactly one PATCH, then Ready again.
    let changed = cr(
        "azureml",
        &cluster,
        serde_json::json!({"addOns": {"nvidiaDevicePlugin": true}}),
    );
    let d2 = desired(&w, &changed, &[]).await;
    w.emu.clear_requests();
    let st = drive(&w, &d2, "changed", |st, _| {
        cond(st, "Ready").is_some() && st.settings_hash == Some(d2.settings_hash())
    })
    .await;
    assert_eq!(writes(&w), vec![format!("PATCH {ext_path}")]);
    assert_eq!(
        st.tls.as_ref().unwrap().sha256_fingerprint.as_deref(),
        Some(fp.as_str())
    );
    let events: Vec<String> = w.store.events().into_iter().map(|e| e.reason).collect();
    assert!(events.contains(&"Updating".to_string()), "{events:?}");

    // A certificate rotation (the Secret changes): one PATCH with all protected settings —
    // the emulated health check validates the new pair against the cname, so a PATCH
    // carrying only part of it would fail.
    let (rotated, fp2) = tls_secret("scoring-tls", HOST);
    let key2 = key_of(&rotated);
    w.store.insert_secret(rotated);
    let d3 = desired(&w, &changed, &[]).await;
    assert_ne!(d3.protected_settings_hash(), d2.protected_settings_hash());
    assert_eq!(d3.settings_hash(), d2.settings_hash());
    w.emu.clear_requests();
    let st = drive(&w, &d3, "rotated", |st, _| {
        cond(st, "Ready").is_some() && st.protected_settings_hash == d3.protected_settings_hash()
    })
    .await;
    assert_eq!(writes(&w), vec![format!("PATCH {ext_path}")]);
    assert_eq!(st.provisioning_state.as_deref(), Some("Succeeded"));
    assert_eq!(
        st.tls.as_ref().unwrap().sha256_fingerprint.as_deref(),
        Some(fp2.as_str())
    );
    assert!(st.provisioning_errors.is_empty(), "{st:#?}");
    // Steady again.
    w.emu.clear_requests();
    let out = w
        .engine
        .reconcile_extension(&d3, status(&w, &d3))
        .await
        .unwrap();
    assert!(cond(&out.status, "Ready").is_some());
    assert!(writes(&w).is_empty());
    no_secret_anywhere(&w, &d3, &key2);
}

/// (cluster name, nodes, power state, traits, extra spec, reason).
type PreflightCase = (
    &'static str,
    i64,
    &'static str,
    Option<ClusterTraits>,
    serde_json::Value,
    &'static str,
);

#[tokio::test]
async fn every_preflight_failure_stalls_without_a_write() {
    let w = World::new().await;
    let (secret, _) = tls_secret("scoring-tls", HOST);
    w.store.insert_secret(secret);

    let cases: Vec<PreflightCase> = vec![
        (
            "sp",
            3,
            "Running",
            Some(ClusterTraits {
                identity: Some("ServicePrincipal".into()),
                ..ClusterTraits::default()
            }),
            serde_json::json!({}),
            "ClusterIdentityNotSupported",
        ),
        (
            "nolocal",
            3,
            "Running",
            Some(ClusterTraits {
                disable_local_accounts: true,
                ..ClusterTraits::default()
            }),
            serde_json::json!({}),
            "LocalAccountsDisabled",
        ),
        (
            "stopped",
            3,
            "Stopped",
            None,
            serde_json::json!({}),
            "ClusterStopped",
        ),
        (
            "small",
            2,
            "Running",
            None,
            serde_json::json!({"inference": {
                "enabled": true, "highAvailability": true,
                "tls": {"cname": HOST, "secretRef": {"name": "scoring-tls"}}
            }}),
            "InsufficientNodes",
        ),
        (
            "legacy",
            3,
            "Running",
            Some(ClusterTraits {
                legacy_front_end: true,
                ..ClusterTraits::default()
            }),
            serde_json::json!({}),
            "LegacyFrontEndPresent",
        ),
    ];
    for (name, nodes, power, t, extra, reason) in cases {
        let cluster = seed_cluster(&w, name, nodes, power);
        if let Some(t) = t {
            seed(&w, traits(&cluster, t));
        }
        let d = desired(&w, &cr(name, &cluster, extra), &[]).await;
        w.emu.clear_requests();
        let st = stalled(&w, &d, reason).await;
        assert!(writes(&w).is_empty(), "{name}: {:?}", writes(&w));
        assert!(st.extension_id.is_none(), "{name}");
        let (_, message) = cond(&st, "Stalled").unwrap();
        assert!(message.contains(name), "{name}: {message}");
    }

    // A cluster that does not exist.
    let missing = ResourceId::managed_cluster(SUB, "aks-rg", "nowhere").unwrap();
    let d = desired(&w, &cr("nowhere", &missing, serde_json::json!({})), &[]).await;
    w.emu.clear_requests();
    stalled(&w, &d, "AksClusterNotFound").await;
    assert!(writes(&w).is_empty());

    // Another Azure ML extension under another name.
    let taken = seed_cluster(&w, "taken", 3, "Running");
    seed(
        &w,
        KubernetesPathSeed {
            extensions: vec![ExtensionSeed {
                cluster_id: taken.to_string(),
                name: Some("azureml-old".into()),
                ..ExtensionSeed::default()
            }],
            ..KubernetesPathSeed::default()
        },
    );
    let d = desired(&w, &cr("taken", &taken, serde_json::json!({})), &[]).await;
    w.emu.clear_requests();
    let st = stalled(&w, &d, "ExtensionExists").await;
    assert!(writes(&w).is_empty());
    assert!(cond(&st, "Stalled").unwrap().1.contains("azureml-old"));

    // The provider is not registered; registering it lets the install go on.
    let fresh = seed_cluster(&w, "fresh", 3, "Running");
    let provider = ProviderSeed {
        subscription_id: SUB.into(),
        namespace: "Microsoft.KubernetesConfiguration".into(),
    };
    seed(
        &w,
        KubernetesPathSeed {
            unregistered_providers: vec![provider.clone()],
            ..KubernetesPathSeed::default()
        },
    );
    let d = desired(&w, &cr("fresh", &fresh, serde_json::json!({})), &[]).await;
    w.emu.clear_requests();
    stalled(&w, &d, "ProviderNotRegistered").await;
    assert!(writes(&w).is_empty());
    seed(
        &w,
        KubernetesPathSeed {
            registered_providers: vec![provider],
            ..KubernetesPathSeed::default()
        },
    );
    ready(&w, &d).await;
    assert_eq!(writes(&w).len(), 1, "{:?}", writes(&w));

    // The TLS Secret is missing: stalls before any write.
    let nosecret = seed_cluster(&w, "nosecret", 3, "Running");
    let spec = serde_json::json!({"inference": {
        "enabled": true, "tls": {"cname": HOST, "secretRef": {"name": "absent"}}
    }});
    let d = desired(&w, &cr("nosecret", &nosecret, spec), &[]).await;
    w.emu.clear_requests();
    stalled(&w, &d, "SecretNotFound").await;
    assert!(writes(&w).is_empty());
}

/// A 3-node cluster whose outbound traffic is blocked: the extension's health check fails
/// (E45003), a cause no read of ARM or of the cluster foresees; the TLS Secret exists.
fn egress_blocked_cluster(w: &World, name: &str) -> ResourceId {
    let cluster = seed_cluster(w, name, 3, "Running");
    seed(
        w,
        traits(
            &cluster,
            ClusterTraits {
                egress_blocked: true,
                ..ClusterTraits::default()
            },
        ),
    );
    w.store.insert_secret(tls_secret("scoring-tls", HOST).0);
    cluster
}

#[tokio::test]
async fn a_failed_install_is_retried_then_stalls_with_azures_code() {
    let w = World::new().await;
    let cluster = egress_blocked_cluster(&w, "egress");
    let d = desired(&w, &cr("egress", &cluster, serde_json::json!({})), &[]).await;
    let st = stalled(&w, &d, "ExtensionFailed").await;
    let (_, message) = cond(&st, "Stalled").unwrap();
    assert!(message.contains("E45003"), "{message}");
    assert!(
        st.provisioning_errors.iter().any(|e| e.code == "E45003"),
        "{st:#?}"
    );
    assert_eq!(st.retries, Some(1));
    assert_eq!(st.provisioning_state.as_deref(), Some("Failed"));
    // The install and one retry (maxRetries: 1), both whole PUTs.
    let puts = writes(&w);
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert!(puts.iter().all(|p| p.starts_with("PUT ")), "{puts:?}");
    let events: Vec<String> = w.store.events().into_iter().map(|e| e.reason).collect();
    assert!(
        events.contains(&"RetryingFailedExtension".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&"ExtensionFailed".to_string()),
        "{events:?}"
    );
    // Stalled: no more writes.
    w.emu.clear_requests();
    let out = w.engine.reconcile_extension(&d, st).await.unwrap();
    assert!(cond(&out.status, "Stalled").is_some());
    assert!(writes(&w).is_empty());
}

#[tokio::test]
async fn deletion_waits_while_in_use_then_uninstalls() {
    let w = World::new().await;
    let cluster = seed_cluster(&w, "shared", 3, "Running");
    let (secret, _) = tls_secret("scoring-tls", HOST);
    w.store.insert_secret(secret);
    let mut ext = cr("azureml", &cluster, serde_json::json!({}));
    let d = desired(&w, &ext, &[]).await;
    ready(&w, &d).await;

    ext.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    let in_use = desired(&w, &ext, &["team-a"]).await;
    w.emu.clear_requests();
    let out = w
        .engine
        .reconcile_extension(&in_use, status(&w, &in_use))
        .await
        .unwrap();
    assert!(!out.finished);
    let (reason, message) = cond(&out.status, "Reconciling").expect("Reconciling");
    assert_eq!(reason, "InUse");
    assert!(message.contains("team-a"), "{message}");
    assert!(writes(&w).is_empty());

    let free = desired(&w, &ext, &[]).await;
    drive(&w, &free, "uninstalled", |_, finished| finished).await;
    let ext_path =
        format!("{cluster}/providers/Microsoft.KubernetesConfiguration/extensions/azureml");
    assert_eq!(writes(&w), vec![format!("DELETE {ext_path}")]);
    let gone = w
        .engine
        .arm
        .get_extension(&free.extension_id().unwrap())
        .await
        .unwrap();
    assert!(gone.is_none());

    // Orphan: finished at once, nothing written.
    let other = seed_cluster(&w, "kept", 3, "Running");
    let mut kept = cr(
        "kept",
        &other,
        serde_json::json!({"deletionPolicy": "Orphan"}),
    );
    let d = desired(&w, &kept, &[]).await;
    ready(&w, &d).await;
    kept.metadata.deletion_timestamp = ext.metadata.deletion_timestamp.clone();
    let d = desired(&w, &kept, &["team-a"]).await;
    w.emu.clear_requests();
    let out = w
        .engine
        .reconcile_extension(&d, status(&w, &d))
        .await
        .unwrap();
    assert!(out.finished);
    assert!(writes(&w).is_empty());
}

#[tokio::test]
async fn a_failed_install_shows_the_health_checks_codes_read_on_the_cluster() {
    // Azure's error for a failed install says only "pod healthcheck failed": the codes are
    // in ConfigMap azureml/arcml-healthcheck, which amlops reads when it can.
    let w = World::new().await;
    let cluster = egress_blocked_cluster(&w, "egress0");
    let d = desired(
        &w,
        &cr("egress0", &cluster, serde_json::json!({"maxRetries": 0})),
        &[],
    )
    .await;
    let st = stalled(&w, &d, "ExtensionFailed").await;
    let azure_said = st
        .provisioning_errors
        .iter()
        .find(|e| e.code == "ExtensionOperationFailed")
        .expect("Azure's error");
    assert!(
        azure_said.message.contains("pod healthcheck failed")
            && !azure_said.message.contains("E45003"),
        "{}",
        azure_said.message
    );
    let (_, message) = cond(&st, "Stalled").unwrap();
    assert!(
        message.contains("E45003 BAD_NETWORK_CONNECTIVITY"),
        "{message}"
    );
    assert_eq!(
        writes(&w).len(),
        1,
        "one install, no retry: {:?}",
        writes(&w)
    );
}

/// `cert.pem` of Secret `azureml/{name}` on the cluster.
async fn cluster_secret_cert(w: &World, cluster: &ResourceId, name: &str) -> Option<String> {
    let client = amlops::tls::cluster_client(&w.engine.arm, cluster)
        .await
        .unwrap();
    let s = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client, "azureml")
        .get_opt(name)
        .await
        .unwrap()?;
    let data = s.data.unwrap_or_default();
    data.get("cert.pem")
        .map(|b| String::from_utf8(b.0.clone()).unwrap())
}

#[tokio::test]
async fn cluster_secret_delivery_installs_holds_still_and_rotates() {
    let w = World::new().await;
    let cluster = seed_cluster(&w, "bysecret", 3, "Running");
    let (secret, _) = tls_secret("scoring-tls", HOST);
    let cert = |s: &k8s_openapi::api::core::v1::Secret| {
        String::from_utf8(s.data.as_ref().unwrap()["tls.crt"].0.clone()).unwrap()
    };
    let first = cert(&secret);
    let key = key_of(&secret);
    w.store.insert_secret(secret);
    let spec = serde_json::json!({"inference": {
        "enabled": true,
        "tls": {"cname": HOST, "secretRef": {"name": "scoring-tls"}, "delivery": "ClusterSecret"}
    }});
    let ext = cr("azureml", &cluster, spec);
    let d = desired(&w, &ext, &[]).await;
    let st = ready(&w, &d).await;
    let ext_path =
        format!("{cluster}/providers/Microsoft.KubernetesConfiguration/extensions/azureml");
    // The pair is in azureml/scoring-tls (the emulated health check verified it against
    // the cname), the PUT named it and sent no protected setting.
    assert_eq!(writes(&w), vec![format!("PUT {ext_path}")]);
    assert_eq!(
        cluster_secret_cert(&w, &cluster, "scoring-tls")
            .await
            .as_deref(),
        Some(first.as_str())
    );
    let id = d.extension_id().unwrap();
    let installed = w.engine.arm.get_extension(&id).await.unwrap().unwrap();
    assert_eq!(
        installed.setting("scoringFe.sslSecret"),
        Some("scoring-tls")
    );
    assert_eq!(installed.setting("sslSecret"), Some("scoring-tls"));
    assert!(st.cluster_secret_hash.is_some());
    no_secret_anywhere(&w, &d, &key);

    // Steady: one ARM read per resync, nothing else.
    w.emu.clear_requests();
    for _ in 0..3 {
        w.engine
            .reconcile_extension(&d, status(&w, &d))
            .await
            .unwrap();
    }
    assert!(writes(&w).is_empty());
    assert_eq!(credential_calls(&w), 0);

    // Rotation: the cluster's copy first, then one PATCH naming the Secret again.
    let (rotated, _) = tls_secret("scoring-tls", HOST);
    let second = cert(&rotated);
    w.store.insert_secret(rotated);
    let d2 = desired(&w, &ext, &[]).await;
    w.emu.clear_requests();
    drive(&w, &d2, "rotated", |st, _| {
        cond(st, "Ready").is_some() && st.protected_settings_hash == d2.protected_settings_hash()
    })
    .await;
    assert_eq!(writes(&w), vec![format!("PATCH {ext_path}")]);
    assert_eq!(
        cluster_secret_cert(&w, &cluster, "scoring-tls")
            .await
            .as_deref(),
        Some(second.as_str())
    );
}
