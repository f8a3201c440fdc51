//! `amlops-dev bench --controller`: the whole operator of `amlops run` (watches, work queue,
//! finalizers, server-side-apply status, events, the engine) with N resources, against the
//! fake API server and the Azure emulator. It measures what the engine benchmark cannot:
//! the Kubernetes glue's share of the overhead and its API traffic.
//!
//! Both the fake API server (`amlops-dev fake-api-server`, see [`super::fake`]) and the
//! emulator run as child processes by default, so the process's peak RSS and CPU are the
//! operator's, with the benchmark's own driver (the manifests it applies, one watch per
//! kind for the Ready times, the bookkeeping); the children's are reported apart. With
//! `--emulator in-process` both run on the bench's second runtime (threads named
//! `emulator`): their CPU is told apart, their memory is then counted in the process's.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher;
use serde::Serialize;
use tokio::sync::watch;

use super::emu::Emu;
use super::fake::Fake;
use super::report::{Cpu, Dist};
use super::world;
use super::{BenchArgs, sys};
use amlops::controller::{Backoff, Operator, Options};
use amlops::engine::EngineConfig;
use amlops_emulator::Budget as EmuBudget;

/// Figures of one `--controller` run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ControllerRun {
    /// Resources applied.
    pub resources: usize,
    /// Their kinds (`--path`): `legacy`, `kubernetes` or `both`.
    pub path: String,
    /// Resources applied per second (0: all at once).
    pub apply_rate: f64,
    /// Every resource Ready before the timeout.
    pub converged: bool,
    /// Resources Ready at the end.
    pub ready: usize,
    /// Apply to the last Ready, seconds.
    pub wall_seconds: f64,
    /// Apply → Ready (as a watcher sees it) minus the one emulated Azure operation. A
    /// `KubernetesCompute` counts from the later of its apply and its extension's Ready
    /// (Azure attaches a cluster only once its extension has installed).
    pub apply_to_ready_minus_operation: Dist,
    /// The same by kind.
    pub apply_to_ready_minus_operation_by_kind: BTreeMap<String, Dist>,
    /// Reconciles run (the operator's own counter).
    pub reconciles: u64,
    /// ARM requests the emulator received, per resource, to reach Ready.
    pub arm_reads_per_resource: f64,
    /// Same, writes.
    pub arm_writes_per_resource: f64,
    /// Kubernetes API requests per resource to reach Ready, by method (watches included).
    pub kube_requests_per_resource: BTreeMap<String, f64>,
    /// Steady state: every resource resynced at least twice (fast resync, unlimited budget).
    pub steady: ControllerSteady,
    /// CPU: `operator_seconds` are the operator's threads (with the benchmark's Ready
    /// watchers), `emulator_seconds` the fake API server's (its child process, or its
    /// threads in-process; the Azure emulator's are not counted).
    pub cpu: Cpu,
    /// Peak RSS of this process: the operator and the benchmark's driver; the fake API
    /// server and the emulator too when they run in-process (`--emulator in-process`).
    pub peak_rss_bytes: u64,
    /// Peak RSS of the emulator child.
    pub emulator_peak_rss_bytes: Option<u64>,
    /// Peak RSS of the fake API server child (its store, watch history and request log).
    pub fake_api_server_peak_rss_bytes: Option<u64>,
}

/// Requests of a steady-state window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ControllerSteady {
    /// The resync period of the run ([`resync_period`]), real seconds.
    pub resync_seconds: f64,
    /// Real seconds measured.
    pub seconds: f64,
    /// Reconciles in the window.
    pub reconciles: u64,
    /// ARM reads per reconcile.
    pub arm_reads_per_reconcile: f64,
    /// ARM writes in the window (target: 0).
    pub arm_writes: u64,
    /// Kubernetes writes (anything but GET/watch) per reconcile: status applies, events,
    /// patches. 0 when nothing changed.
    pub kube_writes_per_reconcile: f64,
}

/// Reads and writes per hour: more than any run needs.
const LIFTED_BUDGET: u64 = 1_000_000_000;

/// Steady-state resync of this mode for `n` resources (real time; the budget is lifted so
/// the policy keeps it): 3 s, longer beyond 300 resources so that the resyncs of the
/// resources already Ready ask for at most 100 reconciles per second. This mode resyncs at
/// that period from the start: at 3 s, 10,000 resources would ask for 3,333 per second
/// and starve the ones still converging, which `amlops run` (10-minute base) never does.
pub fn resync_period(n: usize) -> Duration {
    Duration::from_secs(3).max(Duration::from_secs_f64(n as f64 / 100.0))
}

/// Wait after convergence before the steady window, for in-flight work to settle.
const SETTLE: Duration = Duration::from_secs(6);

/// Resources sent to the fake API server per request when applied all at once.
const APPLY_BATCH: usize = 100;

/// Runs the operator against `n` resources; `rt` hosts the in-process servers, if any.
pub async fn run(
    args: &BenchArgs,
    n: usize,
    rt: &tokio::runtime::Handle,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ControllerRun> {
    let sampler = sys::RssSampler::start(Duration::from_millis(10));
    let timeout = Duration::from_secs_f64(args.timeout_seconds.max(1.0));
    let mut config = world::emulator_config(args.op_seconds);
    // The legacy mix unless `--path` says otherwise (the earlier figures are of those kinds).
    let path = args.path.unwrap_or(world::Path::Legacy);
    let shape = world::Shape {
        path,
        ..args.shape(n)
    };
    let manifests = world::populate(&mut config, &shape);
    let waits_for = extension_of_each_compute(&manifests);
    let emu = Emu::start(args.emulator, config, rt).await?;
    let fake = Fake::start(args.emulator, rt).await?;
    let mut seed = Vec::new();
    for crd in amlops::crd::all_crds() {
        seed.push(serde_json::to_value(crd)?);
    }
    seed.push(serde_json::to_value(world::bench_tls_secret()?)?);
    fake.put_all(seed).await?;
    let client = fake.client()?;

    // ARM's budget lifted, the policy and the emulator's remaining-reads headers agreeing
    // on it, so that every resource resyncs every `resync` (the engine benchmark covers the
    // budget).
    let resync = resync_period(n);
    let mut throttling = args.resync.throttling;
    throttling.arm_read_budget = LIFTED_BUDGET;
    emu.set_budget(Some(EmuBudget {
        reads_per_hour: LIFTED_BUDGET,
        writes_per_hour: LIFTED_BUDGET,
        window_secs: 3600,
        ..Default::default()
    }))
    .await?;
    let options = Options {
        namespace: None,
        concurrency: u16::try_from(args.concurrency).unwrap_or(u16::MAX),
        engine: EngineConfig {
            resync: throttling.policy(resync),
            busy_poll: Duration::from_secs_f64((args.op_seconds / 4.0).max(0.05)),
            retry_base: Duration::from_millis(500),
            ..EngineConfig::default()
        },
        backoff: Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
        },
        leader: None,
        metrics_addr: "127.0.0.1:0".parse()?,
        identity: "bench".into(),
        crd_poll: Duration::from_millis(100),
    };
    let arm = world::client_config(&emu.base_url(), emu.token(), throttling.arm(), 1.0, false)?;
    world::create_namespaces_beforehand(arm.clone(), &manifests).await?;
    let (stop, stopped) = watch::channel(false);
    let running = Operator::new(client.clone(), arm, options)?
        .start(stopped)
        .await?;

    // Ready times as a watcher (kubectl wait, Argo CD) sees them.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut watchers = Vec::new();
    for kind in all_kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind);
        let tx = ready_tx.clone();
        watchers.push(tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(ev) = events.next().await {
                let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = ev else {
                    continue;
                };
                let ready = is_ready(o.data.get("status"));
                if ready {
                    let name = format!("{}/{}", kind.kind, o.metadata.name.unwrap_or_default());
                    let _ = tx.send((name, Instant::now()));
                }
            }
        }));
    }
    drop(ready_tx);

    let reconciles = || running.metrics.reconciles_total();
    fake.clear_requests().await?;
    emu.clear_requests().await?;
    let cpu0 = sys::thread_cpu();
    let fake_cpu0 = fake.child_cpu_seconds();
    let r0 = reconciles();
    let t0 = Instant::now();
    let mut applied: BTreeMap<String, Instant> = BTreeMap::new();
    // At a rate, one request per resource (`kubectl apply -f dir/` or a GitOps sync: one
    // after the other); all at once, batches (the apply time of a resource is when its
    // batch was sent).
    let batch_size = if args.apply_rate > 0.0 {
        1
    } else {
        APPLY_BATCH
    };
    let mut batch: Vec<(String, serde_json::Value)> = Vec::with_capacity(batch_size);
    let total = manifests.len();
    for (i, mut v) in manifests.into_iter().enumerate() {
        if args.apply_rate > 0.0 {
            let at = t0 + Duration::from_secs_f64(i as f64 / args.apply_rate);
            tokio::time::sleep_until(at.into()).await;
        }
        // The API server sets the generation.
        if let Some(m) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            m.remove("generation");
        }
        let name = format!(
            "{}/{}",
            v["kind"].as_str().unwrap_or_default(),
            v["metadata"]["name"].as_str().unwrap_or_default()
        );
        batch.push((name, v));
        if batch.len() >= batch_size || i + 1 == total {
            let sent = Instant::now();
            let (names, objects): (Vec<String>, Vec<serde_json::Value>) =
                std::mem::take(&mut batch).into_iter().unzip();
            applied.extend(names.into_iter().map(|n| (n, sent)));
            fake.put_all(objects).await?;
        }
    }
    let mut ready: BTreeMap<String, Instant> = BTreeMap::new();
    let deadline = tokio::time::Instant::from_std(t0 + timeout);
    while ready.len() < n {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some((name, at))) => {
                ready.entry(name).or_insert(at);
            }
            _ => break,
        }
    }
    let converged = ready.len() >= n;
    let last = ready.values().max().copied().unwrap_or(t0);
    let mut c = ControllerRun {
        resources: n,
        path: path.as_str().into(),
        apply_rate: args.apply_rate,
        converged,
        ready: ready.len(),
        wall_seconds: last.duration_since(t0).as_secs_f64(),
        ..Default::default()
    };
    let op = Duration::from_secs_f64(args.op_seconds.max(0.0));
    let mut by_kind: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for (name, at) in &ready {
        let mut from = applied.get(name).copied().unwrap_or(t0);
        if let Some(extension_ready) = waits_for.get(name).and_then(|e| ready.get(e)) {
            from = from.max(*extension_ready);
        }
        let kind = name.split('/').next().unwrap_or_default().to_string();
        by_kind
            .entry(kind)
            .or_default()
            .push(at.saturating_duration_since(from).saturating_sub(op));
    }
    let minus: Vec<Duration> = by_kind.values().flatten().copied().collect();
    c.apply_to_ready_minus_operation = Dist::of(&minus);
    c.apply_to_ready_minus_operation_by_kind = by_kind
        .iter()
        .map(|(k, v)| (k.clone(), Dist::of(v)))
        .collect();
    c.reconciles = reconciles() - r0;
    let (arm_reads, arm_writes) = emu.reads_and_writes().await?;
    let per = |x: u64| x as f64 / n.max(1) as f64;
    c.arm_reads_per_resource = per(arm_reads);
    c.arm_writes_per_resource = per(arm_writes);
    c.kube_requests_per_resource = fake
        .request_counts()
        .await?
        .into_iter()
        .map(|(method, count)| (method, per(count)))
        .collect();
    let (op_cpu, fake_threads_cpu) = sys::cpu_split(&cpu0, &sys::thread_cpu());
    let fake_cpu = fake_cpu0
        .zip(fake.child_cpu_seconds())
        .map_or(fake_threads_cpu.as_secs_f64(), |(a, b)| b - a);
    c.cpu = Cpu {
        operator_seconds: op_cpu.as_secs_f64(),
        emulator_seconds: fake_cpu,
        operator_ms_per_reconcile: op_cpu.as_secs_f64() * 1e3 / c.reconciles.max(1) as f64,
    };
    writeln!(
        out,
        "  controller converge: {} ({}/{n} Ready) in {:.1} s, {} reconciles, apply→Ready minus Azure p50 {:.0} ms p99 {:.0} ms",
        if converged { "done" } else { "TIMED OUT" },
        c.ready,
        c.wall_seconds,
        c.reconciles,
        c.apply_to_ready_minus_operation.p50_ms,
        c.apply_to_ready_minus_operation.p99_ms,
    )?;
    // After the request counts were read: these lists are not the operator's.
    if !converged && let Err(e) = why_not_ready(&client, out).await {
        writeln!(out, "  (could not list what the resources wait for: {e})")?;
    }

    if converged {
        // Steady: let in-flight work settle, then two and a half resync periods.
        tokio::time::sleep(SETTLE).await;
        fake.clear_requests().await?;
        emu.clear_requests().await?;
        let r1 = reconciles();
        let w0 = Instant::now();
        tokio::time::sleep(resync * 5 / 2).await;
        let s = &mut c.steady;
        s.resync_seconds = resync.as_secs_f64();
        s.seconds = w0.elapsed().as_secs_f64();
        s.reconciles = reconciles() - r1;
        let (reads, writes) = emu.reads_and_writes().await?;
        s.arm_reads_per_reconcile = reads as f64 / s.reconciles.max(1) as f64;
        s.arm_writes = writes;
        // Anything but GET and WATCH (a GET too).
        let kube_writes: u64 = fake
            .request_counts()
            .await?
            .iter()
            .filter(|(m, _)| !matches!(m.as_str(), "GET" | "WATCH"))
            .map(|(_, count)| count)
            .sum();
        s.kube_writes_per_reconcile = kube_writes as f64 / s.reconciles.max(1) as f64;
        writeln!(
            out,
            "  controller steady: {} reconciles in {:.1} s, {:.2} ARM reads and {:.2} Kubernetes writes per reconcile, {} ARM writes",
            s.reconciles,
            s.seconds,
            s.arm_reads_per_reconcile,
            s.kube_writes_per_reconcile,
            s.arm_writes
        )?;
    }
    c.emulator_peak_rss_bytes = emu.child_peak_rss_bytes();
    c.fake_api_server_peak_rss_bytes = fake.child_peak_rss_bytes();
    let _ = stop.send(true);
    let _ = running.join().await;
    for w in watchers {
        w.abort();
    }
    c.peak_rss_bytes = sampler.peak();
    emu.shutdown().await;
    fake.shutdown().await;
    Ok(c)
}

/// The four kinds of amlops, for untyped watches and lists.
fn all_kinds() -> [ApiResource; 4] {
    use amlops::crd::{AzureMLExtension, ClusterAttachment, InferenceCluster, KubernetesCompute};
    [
        ApiResource::erase::<InferenceCluster>(&()),
        ApiResource::erase::<ClusterAttachment>(&()),
        ApiResource::erase::<AzureMLExtension>(&()),
        ApiResource::erase::<KubernetesCompute>(&()),
    ]
}

/// Prints, for a run that did not converge, how many resources of each kind wait for what
/// (their status' true condition, reason and message), the most common first.
async fn why_not_ready(client: &kube::Client, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let mut waiting: BTreeMap<String, usize> = BTreeMap::new();
    for kind in all_kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind);
        for o in api.list(&Default::default()).await?.items {
            let status = o.data.get("status");
            if is_ready(status) {
                continue;
            }
            let condition = status
                .and_then(|s| s.get("conditions"))
                .and_then(|c| c.as_array())
                .and_then(|cs| cs.iter().find(|c| c["status"] == "True"));
            let why = match condition {
                Some(c) => format!(
                    "{}={} {}: {}",
                    c["type"].as_str().unwrap_or_default(),
                    c["status"].as_str().unwrap_or_default(),
                    c["reason"].as_str().unwrap_or_default(),
                    c["message"].as_str().unwrap_or_default()
                ),
                None => "no condition yet".into(),
            };
            *waiting.entry(format!("{} {why}", kind.kind)).or_default() += 1;
        }
    }
    let mut by_count: Vec<_> = waiting.into_iter().collect();
    by_count.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    for (why, count) in by_count.iter().take(8) {
        writeln!(out, "  not Ready: {count} × {why}")?;
    }
    Ok(())
}

/// Ready as a watcher (`kubectl wait`, Argo CD) tells it from `status`: phase `Ready`
/// (`InferenceCluster`, `ClusterAttachment`) or condition `Ready=True` (the Kubernetes-path
/// kinds, which have no phase), with no operation in flight.
fn is_ready(status: Option<&serde_json::Value>) -> bool {
    let Some(status) = status else {
        return false;
    };
    let phase = status.get("phase").and_then(|p| p.as_str()) == Some("Ready");
    let condition = status
        .get("conditions")
        .and_then(|c| c.as_array())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    (phase || condition) && status.get("operation").is_none_or(|v| v.is_null())
}

/// For each `KubernetesCompute/<name>` of the manifests, the `AzureMLExtension/<name>` its
/// `extensionRef` names (Ready keys, as the watchers report them).
fn extension_of_each_compute(manifests: &[serde_json::Value]) -> BTreeMap<String, String> {
    manifests
        .iter()
        .filter(|m| m["kind"] == "KubernetesCompute")
        .filter_map(|m| {
            Some((
                format!("KubernetesCompute/{}", m["metadata"]["name"].as_str()?),
                format!(
                    "AzureMLExtension/{}",
                    m["spec"]["extensionRef"]["name"].as_str()?
                ),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_as_a_watcher_tells_it() {
        let cases = [
            (json!({"phase": "Ready"}), true),
            (json!({"phase": "Ready", "operation": {"url": "u"}}), false),
            (json!({"phase": "Creating"}), false),
            (
                json!({"conditions": [{"type": "Ready", "status": "True"}]}),
                true,
            ),
            (
                json!({"conditions": [{"type": "Ready", "status": "False"}]}),
                false,
            ),
            (
                json!({"conditions": [{"type": "Ready", "status": "True"}], "operation": {"url": "u"}}),
                false,
            ),
            (
                json!({"conditions": [{"type": "Reconciling", "status": "True"}]}),
                false,
            ),
        ];
        for (status, want) in cases {
            assert_eq!(is_ready(Some(&status)), want, "{status}");
        }
        assert!(!is_ready(None));
    }

    #[test]
    fn each_compute_waits_for_the_extension_it_names() {
        let mut config = world::emulator_config(1.0);
        let manifests = world::populate(
            &mut config,
            &world::Shape {
                resources: 10,
                path: world::Path::Kubernetes,
                subscriptions: 1,
                per_workspace: 10,
            },
        );
        let waits = extension_of_each_compute(&manifests);
        assert_eq!(waits.len(), 8, "of every 10: 2 extensions, 8 computes");
        let extensions: Vec<String> = manifests
            .iter()
            .filter(|m| m["kind"] == "AzureMLExtension")
            .map(|m| {
                format!(
                    "AzureMLExtension/{}",
                    m["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert!(waits.values().all(|e| extensions.contains(e)), "{waits:?}");
    }

    #[test]
    fn resync_period_bounds_the_resync_load() {
        assert_eq!(resync_period(100), Duration::from_secs(3));
        assert_eq!(resync_period(300), Duration::from_secs(3));
        assert_eq!(resync_period(1_000), Duration::from_secs(10));
        assert_eq!(resync_period(10_000), Duration::from_secs(100));
    }
}
