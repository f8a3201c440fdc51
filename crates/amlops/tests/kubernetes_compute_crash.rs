//! Crash safety of the `KubernetesCompute` engine, with the harness of tests/engine_crash.rs:
//! the engine is stopped after every single call it makes (ARM, and the cluster's API for the
//! namespace) during an attach, an attach that creates its namespace, a reattach and a
//! detach; everything in memory is dropped except what the store persisted; a fresh engine
//! with a fresh ARM client converges. It must end where an uninterrupted run ends, without a
//! duplicate PUT, DELETE or namespace creation.

use amlops_testkit as common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use amlops::crd::KubernetesComputeStatus;
use amlops::engine::Engine;
use amlops::engine::kubernetes_compute::{ComputeDesired, ComputeStore};
use amlops_testkit::MemoryStore;
use common::crash_proxy::{Crash, CrashStore, Proxy, WorldRun, crash_at_every_call};
use common::kpath::*;
use common::{World, accepted, arm, engine_config};

struct Scenario {
    name: &'static str,
    /// Converged (Ready) before the crash-tested phase.
    setup: Option<ComputeDesired>,
    phase: ComputeDesired,
    /// Accepted writes in the phase: (method, path fragment, query fragment, count).
    writes: &'static [(&'static str, &'static str, &'static str, usize)],
}

fn done(sc: &Scenario, st: &KubernetesComputeStatus, finished: bool) -> bool {
    if sc.phase.deleting {
        finished
    } else {
        cond(st, "Ready").is_some() && st.last_reattach_token == sc.phase.reattach_token
    }
}

async fn converge<S: ComputeStore>(
    engine: &Engine<S>,
    store: &MemoryStore,
    d: &ComputeDesired,
    until: impl Fn(&KubernetesComputeStatus, bool) -> bool,
) -> bool {
    for _ in 0..80 {
        let st = store.compute_status(&d.key).unwrap_or_default();
        match engine.reconcile_compute(d, st).await {
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

fn scenarios() -> Vec<Scenario> {
    // The cluster id is the same in every world (same seed).
    let cluster = amlops::azure::ResourceId::managed_cluster(
        amlops_emulator::DEFAULT_SUBSCRIPTION,
        "aks-rg",
        "shared",
    )
    .unwrap();
    let base = kc("crashkc", &cluster, "team-a");
    let mut fresh_ns = kc("crashns", &cluster, "team-new");
    fresh_ns.create_namespace = true;
    let mut reattach = base.clone();
    reattach.reattach_token = Some("r1".into());
    let mut delete = base.clone();
    delete.deleting = true;
    vec![
        Scenario {
            name: "attach",
            setup: None,
            phase: base.clone(),
            writes: &[("PUT", "/computes/", "", 1), ("DELETE", "", "", 0)],
        },
        Scenario {
            name: "attach, creating the namespace",
            setup: None,
            phase: fresh_ns,
            writes: &[
                ("POST", "/namespaces", "", 1),
                ("PUT", "/computes/", "", 1),
                ("DELETE", "", "", 0),
            ],
        },
        Scenario {
            name: "reattach (annotation)",
            setup: Some(base.clone()),
            phase: reattach,
            writes: &[
                ("PUT", "/computes/", "", 1),
                ("DELETE", "/computes/", "Detach", 1),
                ("DELETE", "/computes/", "=Delete", 0),
            ],
        },
        Scenario {
            name: "delete, policy Detach",
            setup: Some(base),
            phase: delete,
            writes: &[
                ("PUT", "", "", 0),
                ("DELETE", "/computes/", "Detach", 1),
                ("DELETE", "/computes/", "=Delete", 0),
            ],
        },
    ]
}

async fn run(sc: &Scenario, crash: Crash) -> Result<Run, String> {
    let w = World::new().await;
    let cluster = seed_cluster(&w, "shared", false);
    install_extension(&w, &cluster);
    create_namespace(&w, &cluster, "team-a").await;
    let (proxy, url) = Proxy::start(w.emu.base_url()).await;
    let operator = arm(&url, w.emu.token());
    if let Some(setup) = &sc.setup {
        let engine = Engine {
            arm: operator.clone(),
            store: w.store.clone(),
            config: engine_config(),
        };
        if !converge(&engine, &w.store, setup, |s, _| cond(s, "Ready").is_some()).await {
            return Err("set-up did not converge".into());
        }
    }
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
    let key = sc.phase.key.clone();
    let mut crashed = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if Instant::now() > deadline {
            return Err("the run before the crash did not end".into());
        }
        let st = w.store.compute_status(&key).unwrap_or_default();
        tokio::select! {
            biased;
            _ = proxy.crashed.notified() => {
                crashed = true;
                break;
            }
            r = crashing.reconcile_compute(&sc.phase, st) => {
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
    drop(crashing);
    if crashed {
        proxy.arm(usize::MAX, false);
        let restarted = Engine {
            arm: arm(&url, w.emu.token()),
            store: w.store.clone(),
            config: engine_config(),
        };
        if !converge(&restarted, &w.store, &sc.phase, |s, f| done(sc, s, f)).await {
            return Err(format!(
                "no convergence after the restart; status {:#?}",
                w.store.compute_status(&key)
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
    for (method, path, query, n) in sc.writes {
        let got = accepted(&r.log, method, path, query).len();
        if got != *n {
            errors.push(format!("{got} accepted {method} {path}?{query}, want {n}"));
        }
    }
    let c = azure_compute(&r.w, &sc.phase).await;
    match (sc.phase.deleting, &c) {
        (true, Some(_)) => errors.push("the compute still exists".into()),
        (false, None) => errors.push("no compute".into()),
        (false, Some(c)) if c.namespace() != sc.phase.namespace => {
            errors.push(format!("namespace {}", c.namespace()))
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
