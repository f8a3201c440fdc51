//! Crash safety: the engine is stopped after every single call it makes to Azure during a
//! create, a reattach and two deletions; everything in memory is dropped except what the
//! Kubernetes store persisted (status, Secrets); a fresh engine with a fresh ARM client
//! converges. It must end where an uninterrupted run ends, without a duplicate PUT or
//! DELETE and with the certificate preserved.
//!
//! How "stopped after the k-th call" is made real: the engine talks to the emulator
//! through a counting reverse proxy (which also carries the AKS data-plane reads, since
//! the kubeconfigs point at the Host the client used). Two crash points per k:
//! - `After(k)`: call k reaches Azure and Azure acts on it; from the moment its answer
//!   leaves the proxy the store keeps nothing more (this is also the state of a crash while
//!   waiting for the answer: the engine writes nothing while it waits). Call k+1 never
//!   reaches Azure.
//! - `Before(k)`: everything the engine persisted until it tried call k+1 is kept; call k+1
//!   never reaches Azure.
//!
//! The reconcile future is dropped at the crash (its HTTP connections close), and the
//! Azure side (the emulator) keeps running, as it would.

use amlops_testkit as common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use amlops::crd::ClusterStatus;
use amlops::engine::store::KubeStore;
use amlops::engine::{Desired, Engine};
use amlops_emulator::{Emulator, EmulatorConfig, EmulatorHandle, RequestRecord};
use amlops_testkit::MemoryStore;
use common::crash_proxy::{Crash, CrashRun, CrashStore, Proxy, crash_at_every_call};
use common::*;
use k8s_openapi::api::core::v1::Secret;

/// What a crash-tested phase must end with.
struct Expect {
    /// Accepted writes in the phase: (method, path fragment, query fragment, count).
    writes: &'static [(&'static str, &'static str, &'static str, usize)],
    /// AKS clusters created (+1) or deleted (-1) by the phase.
    clusters: i64,
}

/// A scenario: set-up (not crash-tested) then the crash-tested phase.
struct Scenario {
    name: &'static str,
    setup: Vec<Desired>,
    phase: Desired,
    /// Deletion (done = finished) or not (done = Ready for the phase's desired state).
    deleting: bool,
    /// Spoil the backup taken at Ready after the set-up, so the phase must take its own.
    spoil_backup: bool,
    expect: Expect,
}

fn reattach(d: &Desired, token: &str) -> Desired {
    let mut d = d.clone();
    d.reattach_token = Some(token.into());
    d
}

fn scenarios() -> Vec<Scenario> {
    let custom = ca(
        "crashattach",
        "shared",
        "tls: {mode: Custom, cname: scoring.contoso.com, secretRef: {name: crash-tls}}",
    );
    let auto = ic(
        "crashauto",
        "vmSize: Standard_D4_v2\ntls: {mode: Auto, leafDomainLabel: crash}\ndeletionPolicy: Detach",
    );
    let created = ic("crashdel", "");
    let created_reattached = reattach(&created, "r1");
    vec![
        Scenario {
            name: "create (Auto TLS)",
            setup: vec![],
            phase: auto.clone(),
            deleting: false,
            spoil_backup: false,
            expect: Expect {
                writes: &[("PUT", "/computes/", "", 1), ("DELETE", "", "", 0)],
                clusters: 1,
            },
        },
        Scenario {
            name: "attach (Custom TLS)",
            setup: vec![],
            phase: custom,
            deleting: false,
            spoil_backup: false,
            expect: Expect {
                writes: &[("PUT", "/computes/", "", 1), ("DELETE", "", "", 0)],
                clusters: 0,
            },
        },
        Scenario {
            name: "reattach (Auto TLS, host name kept, still Auto)",
            setup: vec![auto.clone()],
            phase: reattach(&auto, "r1"),
            deleting: false,
            spoil_backup: true,
            expect: Expect {
                writes: &[
                    ("PUT", "/computes/", "", 1),
                    ("DELETE", "/computes/", "Detach", 1),
                    ("DELETE", "/computes/", "=Delete", 0),
                ],
                clusters: 0,
            },
        },
        Scenario {
            name: "delete, policy Detach (TLS backup first)",
            setup: vec![auto.clone()],
            phase: deleting(&auto),
            deleting: true,
            spoil_backup: true,
            expect: Expect {
                writes: &[
                    ("PUT", "", "", 0),
                    ("DELETE", "/computes/", "Detach", 1),
                    ("DELETE", "/computes/", "=Delete", 0),
                ],
                clusters: 0,
            },
        },
        Scenario {
            name: "delete, policy Delete, after a reattach (detach + delete cluster)",
            setup: vec![created.clone(), created_reattached.clone()],
            phase: deleting(&created_reattached),
            deleting: true,
            spoil_backup: false,
            expect: Expect {
                clusters: -1,
                writes: &[
                    ("PUT", "", "", 0),
                    ("DELETE", "/computes/", "Detach", 1),
                    ("DELETE", "/managedClusters/", "", 1),
                    ("DELETE", "/computes/", "=Delete", 0),
                ],
            },
        },
    ]
}

fn done(sc: &Scenario, s: &ClusterStatus, finished: bool) -> bool {
    if sc.deleting {
        finished
    } else {
        is_ready(s, &sc.phase) && s.last_reattach_token == sc.phase.reattach_token
    }
}

/// Reconciles like the controller until done; `None` when it does not converge in time.
async fn converge<S: KubeStore>(
    engine: &Engine<S>,
    store: &MemoryStore,
    d: &Desired,
    until: impl Fn(&ClusterStatus, bool) -> bool,
) -> Option<usize> {
    for step in 1..=60 {
        let st = store.status(&d.key()).unwrap_or_default();
        match engine.reconcile(d, st).await {
            Ok(o) if until(&o.status, o.finished) => return Some(step),
            Ok(o) => {
                let wait = o.requeue.unwrap_or(Duration::ZERO);
                tokio::time::sleep(wait.min(Duration::from_millis(5))).await;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    None
}

struct Run {
    /// Calls through the proxy in the crash-tested phase until the crash (or the end).
    calls: usize,
    crashed: bool,
    /// Emulator requests of the crash-tested phase (before and after the restart).
    log: Vec<RequestRecord>,
    emu: EmulatorHandle,
    store: MemoryStore,
    served_before: Option<String>,
    /// The compute's `clusterFqdn` before the phase.
    fqdn_before: Option<String>,
    aks: Option<String>,
    clusters_before: usize,
}

impl CrashRun for Run {
    fn calls(&self) -> usize {
        self.calls
    }
    fn crashed(&self) -> bool {
        self.crashed
    }
}

async fn run(sc: &Scenario, crash: Crash) -> Result<Run, String> {
    let emu = Emulator::start(EmulatorConfig::for_tests())
        .await
        .map_err(|e| e.to_string())?;
    let (proxy, url) = Proxy::start(emu.base_url()).await;
    let store = MemoryStore::default();
    let (secret, _) = tls_secret("crash-tls", "scoring.contoso.com");
    store.insert_secret(secret);
    let key = sc.phase.key();

    // The operator that runs the set-up and then crashes in the phase. Set-up goes through
    // the proxy without limit (operation URLs in status point at it).
    let operator = arm(&url, emu.token());
    {
        let engine = Engine {
            arm: operator.clone(),
            store: store.clone(),
            config: engine_config(),
        };
        for d in &sc.setup {
            let ok = converge(&engine, &store, d, |s, _| {
                is_ready(s, d) && s.last_reattach_token == d.reattach_token
            })
            .await;
            ok.ok_or_else(|| format!("set-up {} did not converge", d.name))?;
        }
    }
    if sc.spoil_backup {
        let name = format!("{}-tls-backup", sc.phase.name);
        if store.secret(NS, &name).is_none() {
            return Err(format!("set-up left no backup {name}"));
        }
        store.insert_secret(Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name),
                namespace: Some(NS.into()),
                ..Default::default()
            },
            ..Default::default()
        });
    }
    let aks = store.status(&key).and_then(|s| s.aks_resource_id);
    let served_before = aks.as_deref().and_then(|a| served(&emu, a));
    let fqdn_before = emu
        .state()
        .compute(&sc.phase.compute_name)
        .and_then(|c| c.cluster_fqdn.clone());
    let clusters_before = emu.state().clusters.len();
    let mark = emu.requests().len();

    // The crash-tested phase.
    let (limit, freeze) = match crash {
        Crash::Never => (usize::MAX, false),
        Crash::After(k) => (k, true),
        Crash::Before(k) => (k, false),
    };
    proxy.arm(limit, freeze);
    let crashing = Engine {
        arm: operator,
        store: CrashStore {
            inner: store.clone(),
            frozen: proxy.frozen.clone(),
        },
        config: engine_config(),
    };
    let mut crashed = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if Instant::now() > deadline {
            return Err("the run before the crash did not end".into());
        }
        let st = store.status(&key).unwrap_or_default();
        tokio::select! {
            biased;
            _ = proxy.crashed.notified() => {
                crashed = true;
                break;
            }
            r = crashing.reconcile(&sc.phase, st) => {
                if proxy.frozen.load(Ordering::SeqCst) {
                    crashed = true;
                    break;
                }
                if let Ok(o) = r && done(sc, &o.status, o.finished) {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let calls = proxy.count.load(Ordering::SeqCst).min(limit);
    // Everything in memory goes: engine, ARM client (token, SKU cache, rate limiter).
    drop(crashing);

    if crashed {
        proxy.arm(usize::MAX, false);
        let restarted = Engine {
            arm: arm(&url, emu.token()),
            store: store.clone(),
            config: engine_config(),
        };
        converge(&restarted, &store, &sc.phase, |s, f| done(sc, s, f))
            .await
            .ok_or_else(|| {
                format!(
                    "no convergence after the restart; status {:#?}",
                    store.status(&key)
                )
            })?;
    }
    let log = emu.requests()[mark..].to_vec();
    Ok(Run {
        calls,
        crashed,
        log,
        emu,
        store,
        served_before,
        fqdn_before,
        aks,
        clusters_before,
    })
}

fn served(emu: &EmulatorHandle, aks: &str) -> Option<String> {
    let state = emu.state();
    let c = state
        .clusters
        .iter()
        .find(|c| c.id.eq_ignore_ascii_case(aks))?;
    let t = c.azuremlfessl.as_ref()?;
    amlops::tls::verify_pair(&t.cert_pem, &t.key_pem)
        .ok()
        .map(|i| i.sha256_fingerprint)
}

/// The end state every run of `sc` must reach, crash or not.
fn check(sc: &Scenario, r: &Run) -> Result<(), String> {
    let mut errors = Vec::new();
    for (method, path, query, n) in sc.expect.writes {
        let got = accepted(&r.log, method, path, query).len();
        if got != *n {
            errors.push(format!("{got} accepted {method} {path}?{query}, want {n}"));
        }
    }
    let key = sc.phase.key();
    let st = r.store.status(&key).unwrap_or_default();
    let state = r.emu.state();
    let compute = state.compute(&sc.phase.compute_name);
    if sc.deleting {
        if compute.is_some() {
            errors.push("the compute still exists".into());
        }
    } else if compute.is_none_or(|c| c.provisioning_state != "Succeeded") {
        errors.push(format!("compute not Succeeded: {compute:?}"));
    }
    let clusters = state.clusters.len() as i64 - r.clusters_before as i64;
    if clusters != sc.expect.clusters {
        errors.push(format!(
            "{clusters:+} AKS clusters, want {:+}",
            sc.expect.clusters
        ));
    }
    let aks = st.aks_resource_id.clone().or(r.aks.clone());
    let tls = st.tls.clone().unwrap_or_default();
    match sc.phase.tls.mode {
        amlops::crd::TlsMode::Disabled => {}
        _ if sc.deleting && sc.phase.deletion_policy == amlops::crd::DeletionPolicy::Detach => {
            // The certificate left the cluster with the detach: the backup must hold it.
            let backup = tls.backup_secret_name.clone().unwrap_or_default();
            let kept = secret_fingerprint(&r.store, &backup);
            if kept.is_none() || kept != r.served_before {
                errors.push(format!(
                    "backup {backup} holds {kept:?}, the cluster served {:?}",
                    r.served_before
                ));
            }
        }
        _ => {
            let now = aks.as_deref().and_then(|a| served(&r.emu, a));
            if now.is_none() {
                errors.push("no certificate served".into());
            }
            if sc.phase.tls.mode == amlops::crd::TlsMode::Auto {
                // A reattach of an Auto cluster sends Auto again: Azure ML issues a new
                // certificate for the same host name, and keeps it Microsoft-issued.
                let ssl = compute.map(|c| c.ssl_status.as_str());
                if ssl != Some("Auto") {
                    errors.push(format!("sslStatus {ssl:?} after the phase, not Auto"));
                }
                let fqdn = compute.and_then(|c| c.cluster_fqdn.clone());
                if r.fqdn_before.is_some() && fqdn != r.fqdn_before {
                    errors.push(format!("host name changed: {:?} → {fqdn:?}", r.fqdn_before));
                }
            } else if r.served_before.is_some() && now != r.served_before {
                errors.push(format!(
                    "certificate changed: {:?} → {now:?}",
                    r.served_before
                ));
            }
            if tls.sha256_fingerprint != now {
                errors.push(format!(
                    "status.tls.sha256Fingerprint {:?} but served {now:?}",
                    tls.sha256_fingerprint
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_every_azure_call_then_restart_converges() {
    let failures = crash_at_every_call(
        &scenarios(),
        |sc| sc.name,
        4,
        async |sc, crash| run(sc, crash).await,
        async |sc, r| check(sc, r),
    )
    .await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
