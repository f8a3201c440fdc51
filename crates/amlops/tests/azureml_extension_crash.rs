//! Crash safety of the `AzureMLExtension` engine, with the harness of tests/engine_crash.rs:
//! the engine is stopped after every single ARM call during an install (with TLS), a change
//! (PATCH) and an uninstall; everything in memory is dropped except what the store persisted;
//! a fresh engine with a fresh ARM client converges. It must end where an uninterrupted run
//! ends, without a duplicate PUT, PATCH or DELETE.

use amlops_testkit as common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use amlops::azure::{ExtensionId, ResourceId};
use amlops::crd::{AzureMLExtension, AzureMlExtensionStatus};
use amlops::engine::Engine;
use amlops::engine::azureml_extension::{ExtensionDesired, ExtensionStore};
use amlops_emulator::{ClusterSeed, DEFAULT_SUBSCRIPTION, KubernetesPathSeed, PoolSeed};
use amlops_testkit::MemoryStore;
use common::crash_proxy::{Crash, CrashStore, Proxy, WorldRun, crash_at_every_call};
use common::{NS, World, accepted, arm, engine_config, tls_secret};

const HOST: &str = "scoring.contoso.com";

fn cr(extra: serde_json::Value) -> AzureMLExtension {
    let cluster = ResourceId::managed_cluster(DEFAULT_SUBSCRIPTION, "aks-rg", "shared").unwrap();
    let mut spec = serde_json::json!({
        "cluster": {"resourceId": cluster.to_string()},
        "extensionName": "azureml",
        "training": {"enabled": true},
        "inference": {"enabled": true, "tls": {"cname": HOST, "secretRef": {"name": "scoring-tls"}}},
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "amlops.dev/v1alpha1", "kind": "AzureMLExtension",
        "metadata": {"name": "crashext", "namespace": NS, "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

fn cond_on(st: &AzureMlExtensionStatus, t: &str) -> bool {
    st.conditions
        .iter()
        .any(|c| c.type_ == t && c.status == "True")
}

enum Phase {
    Install,
    Change,
    Uninstall,
}

struct Scenario {
    name: &'static str,
    phase: Phase,
    /// Merged into the resource's spec.
    extra: fn() -> serde_json::Value,
    writes: &'static [(&'static str, &'static str, usize)],
}

fn plain() -> serde_json::Value {
    serde_json::json!({})
}

/// Instance types and the certificate copied to the cluster: the install also writes on the
/// cluster (the copy before the PUT, the instance types after `Succeeded`).
fn on_the_cluster() -> serde_json::Value {
    serde_json::json!({
        "inference": {"enabled": true, "tls": {"cname": HOST, "secretRef": {"name": "scoring-tls"}, "delivery": "ClusterSecret"}},
        "instanceTypes": {"small": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}},
    })
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "install (TLS)",
            phase: Phase::Install,
            extra: plain,
            writes: &[
                ("PUT", "/extensions/", 1),
                ("PATCH", "", 0),
                ("DELETE", "", 0),
            ],
        },
        Scenario {
            name: "install (TLS Secret on the cluster, instance types)",
            phase: Phase::Install,
            extra: on_the_cluster,
            // The PATCHes on the cluster (server-side applies) are not Azure writes.
            writes: &[
                ("PUT", "/extensions/", 1),
                ("PATCH", "/extensions/", 0),
                ("DELETE", "", 0),
            ],
        },
        Scenario {
            name: "change (PATCH)",
            phase: Phase::Change,
            extra: plain,
            writes: &[
                ("PUT", "", 0),
                ("PATCH", "/extensions/", 1),
                ("DELETE", "", 0),
            ],
        },
        Scenario {
            name: "uninstall",
            phase: Phase::Uninstall,
            extra: plain,
            writes: &[
                ("PUT", "", 0),
                ("PATCH", "", 0),
                ("DELETE", "/extensions/", 1),
            ],
        },
    ]
}

async fn converge<S: ExtensionStore>(
    engine: &Engine<S>,
    store: &MemoryStore,
    d: &ExtensionDesired,
    until: impl Fn(&AzureMlExtensionStatus, bool) -> bool,
) -> bool {
    for _ in 0..80 {
        let st = store.extension_status(&d.key).unwrap_or_default();
        match engine.reconcile_extension(d, st).await {
            Ok(o) if until(&o.status, o.finished) => return true,
            Ok(o) => {
                let wait = o.requeue.unwrap_or(Duration::ZERO);
                tokio::time::sleep(wait.min(Duration::from_millis(5))).await;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    false
}

type Run = WorldRun;

async fn run(sc: &Scenario, crash: Crash) -> Result<Run, String> {
    let w = World::new().await;
    w.emu.seed_aks_cluster(
        DEFAULT_SUBSCRIPTION,
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
    w.emu
        .seed_kubernetes_path(&KubernetesPathSeed {
            crd_delay_ms: Some(0),
            ..KubernetesPathSeed::default()
        })
        .map_err(|e| e.to_string())?;
    w.store.insert_secret(tls_secret("scoring-tls", HOST).0);
    let (proxy, url) = Proxy::start(w.emu.base_url()).await;
    let operator = arm(&url, w.emu.token());
    let installed = w.engine.extension_desired(&cr((sc.extra)()), vec![]).await;
    let ready = |s: &AzureMlExtensionStatus, _: bool| cond_on(s, "Ready");
    let mut phase = installed.clone();
    if !matches!(sc.phase, Phase::Install) {
        let engine = Engine {
            arm: operator.clone(),
            store: w.store.clone(),
            config: engine_config(),
        };
        if !converge(&engine, &w.store, &installed, ready).await {
            return Err("set-up did not converge".into());
        }
        phase = match sc.phase {
            Phase::Change => {
                let mut ext = cr(serde_json::json!({"nodeSelector": {"agentpool": "ml"}}));
                ext.metadata.generation = Some(2);
                w.engine.extension_desired(&ext, vec![]).await
            }
            _ => {
                let mut d = installed.clone();
                d.deleting = true;
                d
            }
        };
    }
    let deleting = phase.deleting;
    let mark = w.emu.requests().len();
    let (limit, freeze) = match crash {
        Crash::Never => (usize::MAX, false),
        Crash::After(k) => (k, true),
        Crash::Before(k) => (k, false),
    };
    proxy.arm(limit, freeze);
    let crashing = Engine {
        arm: operator,
        store: CrashStore {
            inner: w.store.clone(),
            frozen: proxy.frozen.clone(),
        },
        config: engine_config(),
    };
    let want_generation = phase.generation;
    let finished_ok = |s: &AzureMlExtensionStatus, finished: bool| {
        if deleting {
            finished
        } else {
            cond_on(s, "Ready") && s.observed_generation == want_generation
        }
    };
    let mut crashed = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if Instant::now() > deadline {
            return Err("the run before the crash did not end".into());
        }
        let st = w.store.extension_status(&phase.key).unwrap_or_default();
        tokio::select! {
            biased;
            _ = proxy.crashed.notified() => {
                crashed = true;
                break;
            }
            r = crashing.reconcile_extension(&phase, st) => {
                if proxy.frozen.load(Ordering::SeqCst) {
                    crashed = true;
                    break;
                }
                if let Ok(o) = r && finished_ok(&o.status, o.finished) {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let calls = proxy.count.load(Ordering::SeqCst).min(limit);
    drop(crashing);
    if crashed {
        proxy.arm(usize::MAX, false);
        let restarted = Engine {
            arm: arm(&url, w.emu.token()),
            store: w.store.clone(),
            config: engine_config(),
        };
        if !converge(&restarted, &w.store, &phase, finished_ok).await {
            return Err(format!(
                "no convergence after the restart; status {:#?}",
                w.store.extension_status(&phase.key)
            ));
        }
    }
    let log = w.emu.requests()[mark..].to_vec();
    Ok(Run {
        calls,
        crashed,
        log,
        w,
    })
}

async fn check(sc: &Scenario, r: &Run) -> Result<(), String> {
    let mut errors = Vec::new();
    for (method, path, n) in sc.writes {
        let got = accepted(&r.log, method, path, "").len();
        if got != *n {
            errors.push(format!("{got} accepted {method} {path}, want {n}"));
        }
    }
    let cluster = ResourceId::managed_cluster(DEFAULT_SUBSCRIPTION, "aks-rg", "shared").unwrap();
    let ext =
        r.w.engine
            .arm
            .get_extension(&ExtensionId::new(cluster, "azureml").unwrap())
            .await
            .map_err(|e| e.to_string())?;
    if (sc.extra)().get("instanceTypes").is_some() {
        let key = amlops::engine::ObjKey {
            kind: "AzureMLExtension".into(),
            namespace: NS.into(),
            name: "crashext".into(),
        };
        let st = r.w.store.extension_status(&key).unwrap_or_default();
        if st.instance_types != vec!["small".to_string()] || st.cluster_secret_hash.is_none() {
            errors.push(format!(
                "cluster objects not in line: {:?}, secret copied: {}",
                st.instance_types,
                st.cluster_secret_hash.is_some()
            ));
        }
    }
    match (&sc.phase, &ext) {
        (Phase::Uninstall, Some(_)) => errors.push("the extension is still installed".into()),
        (Phase::Install | Phase::Change, None) => errors.push("no extension".into()),
        (Phase::Change, Some(e)) if e.setting("nodeSelector.agentpool") != Some("ml") => {
            errors.push("the change was not applied".into())
        }
        _ => {}
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_every_call_then_restart_converges_without_a_duplicate_write() {
    let failures = crash_at_every_call(
        &scenarios(),
        |sc| sc.name,
        2,
        async |sc, crash| run(sc, crash).await,
        async |sc, r| check(sc, r).await,
    )
    .await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
