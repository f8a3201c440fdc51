//! `amlops-dev bench`: the reconcile engine at scale against the Azure emulator.
//!
//! For each `--resources N` the benchmark builds a fresh world (emulator seeded with
//! workspaces and AKS clusters, N resources in a fixed mix of the kinds `--path` names, see
//! [`world::member`]) and drives the real engines (one per kind) through a controller-like
//! work queue ([`sched::Scheduler`]:
//! bounded concurrency, every `Outcome.requeue` honoured, the steady state through the
//! adaptive [`ResyncPolicy`](amlops::engine::resync::ResyncPolicy)). Three phases:
//!
//! 1. **converge** — apply all N at once, no ARM budget and no client-side limit, until
//!    every resource is Ready. Measures the operator's overhead per phase transition,
//!    ARM requests per resource, reconcile wall and CPU time.
//! 2. **steady** — every resource Ready, resynced by the policy, with the emulator
//!    enforcing ARM's 12,000 reads / 1,200 writes per hour per subscription. Time is
//!    compressed `--time-scale` times: resync intervals, the client's rate limits and
//!    retry waits are divided by it and the emulator's budget window is 3600 s / scale, so
//!    an emulated hour takes 3600/scale real seconds. One warm-up round, then
//!    `--steady-hours` emulated hours are measured: reads, writes (client and server side),
//!    429s. Azure operation time (`--op-seconds`) is real time and not compressed.
//! 3. **budget** — a fresh world converging under a scaled-down budget
//!    (`--budget-scale`, default N/4000 of ARM's, i.e. 0.3·N writes and 3·N reads per
//!    hour, less than converging needs), with the operator's client-side limits on: 429s
//!    received, whether every resource converged, then the steady state under that
//!    budget.
//!
//! Every phase also reports per kind (ARM requests, apply→Ready, steady reads and writes):
//! the ARM client's observer knows the kind of the reconcile that made each attempt.
//!
//! The naive comparison (re-PUT every resource every resync) uses the LRO polls per
//! operation measured in phase 1 and the same resync interval.
//!
//! The emulator runs as a child process (`amlops-dev emulator`, seeded through a config file;
//! budget and request log through its admin endpoints), so the process's peak RSS and CPU
//! are the operator's; the child's are reported apart. With `--emulator in-process` it runs
//! on its own runtime (threads named `emulator`, whose CPU is told apart by reading
//! `/proc/self/task/*/schedstat`) and the memory figure includes it.

pub mod controller;
pub mod emu;
pub mod fake;
pub mod report;
pub mod sched;
pub mod sys;
pub mod world;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amlops::azure::ThrottlingModel;
use amlops::cli::ResyncArgs;
use amlops::engine::observe::ResyncFacts;
use amlops::engine::resync::{ReadQuota, ResyncPolicy};
use amlops::engine::store::KubeStore;
use amlops::engine::{Engine, EngineConfig};
use amlops_emulator::{Budget as EmuBudget, ThrottleModel, Throttling, TokenBuckets};
use amlops_testkit::MemoryStore;

use emu::{Emu, EmulatorMode};
use report::{Cpu, Dist, KindConverge, KindSteady, Report, Run};
use sched::{Requeue, SchedStats, Scheduler, Tracked};
use world::{Counters, Path, Shape, Tally};

/// `amlops-dev bench` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Number of resources; repeat for several runs (`--resources 100 --resources 1000`).
    #[arg(long = "resources", default_values_t = [100usize])]
    pub resources: Vec<usize>,
    /// Which kinds make up the resources: `legacy` (of every 40: 30 InferenceClusters, 10
    /// ClusterAttachments — the mix of the figures measured before the Kubernetes compute
    /// path), `kubernetes` (of every 10: 2 AzureMLExtensions, 8 KubernetesComputes) or
    /// `both` (of every 5: 4 of the legacy mix, then 1 of the Kubernetes path). Default:
    /// `both` for engine runs, `legacy` for `--controller` (the mix of its earlier figures).
    #[arg(long, value_enum)]
    pub path: Option<Path>,
    /// Emulated duration of each Azure operation (create, attach, extension install), real
    /// seconds.
    #[arg(long, default_value_t = 2.0)]
    pub op_seconds: f64,
    /// Concurrent reconciles (the controller's worker limit).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Resources applied per second (0: all at the same instant, the worst case).
    #[arg(long, default_value_t = 0.0)]
    pub apply_rate: f64,
    /// Emulated seconds per real second for the steady state and budget phases [default:
    /// 360 under the hourly model; under token buckets as much as keeps the steady state
    /// at about 200 ARM reads per real second, at most 360].
    #[arg(long)]
    pub time_scale: Option<f64>,
    /// Emulated hours of steady state to measure, after one warm-up round (at least two
    /// resync rounds are measured).
    #[arg(long, default_value_t = 1.0)]
    pub steady_hours: f64,
    /// Fraction of ARM's hourly budget (12,000 reads, 1,200 writes) the emulator enforces in
    /// the budget phase [default: resources / 4000].
    #[arg(long)]
    pub budget_scale: Option<f64>,
    /// Skip the budget phase.
    #[arg(long)]
    pub skip_budget: bool,
    /// Subscriptions the resources are spread over.
    #[arg(long, default_value_t = 1)]
    pub subscriptions: usize,
    /// Computes per workspace.
    #[arg(long, default_value_t = 25)]
    pub per_workspace: usize,
    /// Give up a phase after this many real seconds.
    #[arg(long, default_value_t = 600.0)]
    pub timeout_seconds: f64,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Steady-state resync policy.
    #[command(flatten)]
    pub resync: ResyncArgs,
    /// Run the whole operator of `amlops run` (watches, finalizers, status, events) against
    /// the fake Kubernetes API server instead of the engine alone: converge and a short
    /// steady window; no budget phase.
    #[arg(long)]
    pub controller: bool,
    /// Where the emulator (and, with `--controller`, the fake API server) runs: child
    /// processes (the figures of this process are then the operator's alone) or this
    /// process.
    #[arg(long, value_enum, default_value = "process")]
    pub emulator: EmulatorMode,
}

impl BenchArgs {
    /// The model the emulator enforces in the steady state and the throttled run
    /// (`--arm-throttling`, default token buckets).
    pub fn model(&self) -> ThrottlingModel {
        self.resync.throttling.arm_throttling
    }

    /// Emulated seconds per real second for `n` resources (see `--time-scale`).
    pub fn time_scale(&self, n: usize) -> f64 {
        if let Some(ts) = self.time_scale {
            return ts.max(1e-3);
        }
        match self.model() {
            ThrottlingModel::Hourly => 360.0,
            ThrottlingModel::TokenBucket => {
                let policy = self.resync.policy();
                let per_sub = n.div_ceil(self.subscriptions.max(1));
                let quota = Some(ReadQuota {
                    model: ThrottlingModel::TokenBucket,
                    fill: None,
                });
                let reads_per_second = policy.expected_reads_per_hour(per_sub, quota)
                    * self.subscriptions.max(1) as f64
                    / 3600.0;
                (200.0 / reads_per_second.max(1e-9)).clamp(1.0, 360.0)
            }
        }
    }

    /// What the emulator enforces in the steady state: ARM's figures of the model on a clock
    /// `ts` times faster (`budget`: an hourly budget instead of ARM's).
    fn throttling(&self, ts: f64, budget: Option<(u64, u64)>) -> Throttling {
        let arm = self.resync.throttling.arm();
        let model = match (self.model(), budget) {
            (ThrottlingModel::TokenBucket, None) => {
                let l = arm.token_bucket.time_scaled(ts);
                let f = |b: amlops::azure::ArmBucket| amlops_emulator::throttle::BucketFigures {
                    bucket: b.size,
                    refill_per_second: b.refill_per_second,
                };
                ThrottleModel::TokenBucket(TokenBuckets {
                    reads: f(l.reads),
                    writes: f(l.writes),
                    deletes: f(l.deletes),
                    global_factor: l.global_factor,
                })
            }
            (_, budget) => {
                let (reads, writes) = budget.unwrap_or((
                    self.resync.throttling.arm_read_budget,
                    self.resync.throttling.arm_write_budget,
                ));
                ThrottleModel::Hourly(EmuBudget {
                    reads_per_hour: reads,
                    writes_per_hour: writes,
                    deletes_per_hour: self.resync.throttling.arm_delete_budget,
                    window_secs: window_secs(ts),
                })
            }
        };
        Throttling::enforced(model)
    }

    /// The kinds of an engine run (`--path`, else both paths).
    fn engine_path(&self) -> Path {
        self.path.unwrap_or(Path::Both)
    }

    /// The world of an engine run with `n` resources.
    fn shape(&self, n: usize) -> Shape {
        Shape {
            resources: n,
            path: self.engine_path(),
            subscriptions: self.subscriptions,
            per_workspace: self.per_workspace,
        }
    }
}

/// Entry point of `amlops-dev bench`: runs, prints the table, writes the JSON. Succeeds when
/// every phase converged.
pub fn run_cli(args: BenchArgs) -> anyhow::Result<bool> {
    let emu_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(sys::EMULATOR_THREAD)
        .thread_keep_alive(Duration::from_secs(86_400))
        .enable_all()
        .build()?;
    let op_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name(sys::OPERATOR_THREAD)
        .thread_keep_alive(Duration::from_secs(86_400))
        .enable_all()
        .build()?;
    let mut out = std::io::stdout();
    let report = op_rt.block_on(run(&args, emu_rt.handle().clone(), &mut out))?;
    writeln!(
        out,
        "\nload average before | after: {} | {} ({} CPUs)\n{}\n{}",
        report.load_average_before.as_deref().unwrap_or("?"),
        report.load_average_after.as_deref().unwrap_or("?"),
        report.cpus,
        report.table(),
        report.targets_table()
    )?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        writeln!(out, "JSON report written to {}", path.display())?;
    }
    let ok = report
        .runs
        .iter()
        .all(|r| r.converge.converged && r.budget.as_ref().is_none_or(|b| b.converged))
        && report.controller_runs.iter().all(|r| r.converged);
    Ok(ok)
}

/// Runs the benchmark; `emulator` is the runtime the emulators are started on.
pub async fn run(
    args: &BenchArgs,
    emulator: tokio::runtime::Handle,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Report> {
    let mut sizes = args.resources.clone();
    sizes.sort_unstable();
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        version: env!("CARGO_PKG_VERSION").into(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average_before: sys::load_average(),
        ..Default::default()
    };
    for n in sizes {
        writeln!(out, "▶ {n} resources")?;
        if args.controller {
            report
                .controller_runs
                .push(controller::run(args, n, &emulator, out).await?);
        } else {
            report.runs.push(run_one(args, n, &emulator, out).await?);
        }
    }
    report.load_average_after = sys::load_average();
    report.evaluate(
        args.resync.throttling.arm_read_share,
        args.resync.resync_seconds,
    );
    Ok(report)
}

struct World {
    emu: Emu,
    sched: Scheduler,
    counters: Arc<Counters>,
    requeue: Requeue,
}

async fn build_world(
    args: &BenchArgs,
    n: usize,
    rt: &tokio::runtime::Handle,
    ts: f64,
    paced: bool,
) -> anyhow::Result<World> {
    let store = MemoryStore::default();
    let mut config = world::emulator_config(args.op_seconds);
    let manifests = world::populate(&mut config, &args.shape(n));
    let emu = Emu::start(args.emulator, config, rt).await?;
    let counters = Arc::new(Counters::default());
    let policy = args.resync.policy();
    let client_config =
        |paced| world::client_config(&emu.base_url(), emu.token(), policy.arm, ts, paced);
    world::create_namespaces_beforehand(client_config(false)?, &manifests).await?;
    let arm = world::client(client_config(paced)?, counters.clone())?;
    let engine = Arc::new(Engine {
        arm,
        store,
        config: EngineConfig {
            resync: policy.clone(),
            time_scale: ts,
            busy_poll: Duration::from_secs_f64(15.0 / ts),
            retry_base: Duration::from_secs_f64(30.0 / ts),
            ..Default::default()
        },
    });
    let objects = world::load(&engine, manifests).await?;
    let mut sched = Scheduler::new(engine, args.concurrency);
    let start = Instant::now();
    let spacing = if args.apply_rate > 0.0 {
        Duration::from_secs_f64(1.0 / args.apply_rate)
    } else {
        Duration::ZERO
    };
    for (i, o) in objects.into_iter().enumerate() {
        sched.apply_at(o, start + spacing * i as u32);
    }
    Ok(World {
        emu,
        sched,
        counters,
        requeue: Requeue {
            policy,
            time_scale: ts,
            op_duration: Duration::from_secs_f64(args.op_seconds.max(0.0)),
            error_base: Duration::from_secs_f64(1.0 / ts),
        },
    })
}

fn all_ready(items: &[Tracked], _: Instant) -> bool {
    items.iter().all(Tracked::is_ready)
}

/// CPU between two thread snapshots; a child emulator's from its own counter since
/// `emu_before`.
fn cpu(
    before: &BTreeMap<u64, (String, u64)>,
    after: &BTreeMap<u64, (String, u64)>,
    reconciles: u64,
    emu_before: Option<f64>,
    emulator: &Emu,
) -> Cpu {
    let (op, emu) = sys::cpu_split(before, after);
    let child = emu_before
        .zip(emulator.child_cpu_seconds())
        .map(|(a, b)| b - a);
    Cpu {
        operator_seconds: op.as_secs_f64(),
        emulator_seconds: child.unwrap_or(emu.as_secs_f64()),
        operator_ms_per_reconcile: op.as_secs_f64() * 1e3 / reconciles.max(1) as f64,
    }
}

fn errors(s: &SchedStats) -> BTreeMap<String, u64> {
    s.errors.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The report's name of a transition: `Pending→Creating` for the legacy kinds (as before
/// the Kubernetes compute path), `KubernetesCompute Pending→Ready` for the others.
fn transition_name(t: &sched::Transition) -> String {
    let from = t.from.unwrap_or("Pending");
    let to = t.to.unwrap_or("Gone");
    match t.kind {
        "InferenceCluster" | "ClusterAttachment" => format!("{from}→{to}"),
        kind => format!("{kind} {from}→{to}"),
    }
}

/// Resources per kind.
fn kinds(items: &[Tracked]) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for t in items {
        *out.entry(t.kind()).or_default() += 1;
    }
    out
}

/// Per kind: resources, Ready, ARM requests per resource and apply→Ready minus the
/// operations' emulated time, for a converge phase.
fn converge_by_kind(
    items: &[Tracked],
    tally: &Tally,
    op_duration: Duration,
) -> BTreeMap<String, KindConverge> {
    kinds(items)
        .into_iter()
        .map(|(kind, n)| {
            let of = items.iter().filter(|t| t.kind() == kind);
            let minus_ops: Vec<Duration> = of
                .clone()
                .filter_map(|t| {
                    let ready = t.ready_at?;
                    Some((ready - t.applied_at).saturating_sub(op_duration * t.operations))
                })
                .collect();
            let k = tally.of_kind(kind);
            let per = |v: u64| v as f64 / n.max(1) as f64;
            let figures = KindConverge {
                resources: n,
                ready: of.filter(|t| t.is_ready()).count(),
                arm_requests_per_resource: per(k.total()),
                reads_per_resource: per(k.reads()),
                writes_per_resource: per(k.writes()),
                apply_to_ready_minus_operations: Dist::of(&minus_ops),
            };
            (kind.to_string(), figures)
        })
        .collect()
}

/// ARM's reads per hour per subscription under the bench's model (refill × 3600 for token
/// buckets).
fn arm_reads_per_hour(args: &BenchArgs) -> u64 {
    let arm = args.resync.throttling.arm();
    (arm.limits(args.model()).reads.refill_per_second * 3600.0).round() as u64
}

fn window_secs(time_scale: f64) -> u64 {
    (3600.0 / time_scale.max(1e-3)).round().max(1.0) as u64
}

async fn run_one(
    args: &BenchArgs,
    n: usize,
    rt: &tokio::runtime::Handle,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Run> {
    let sampler = sys::RssSampler::start(Duration::from_millis(10));
    let ts = args.time_scale(n);
    let model = args.model();
    let timeout = Duration::from_secs_f64(args.timeout_seconds.max(1.0));
    let subs = args.subscriptions.max(1);
    let mut run = Run {
        resources: n,
        path: args.engine_path().as_str().into(),
        subscriptions: subs,
        op_seconds: args.op_seconds,
        time_scale: ts,
        concurrency: args.concurrency,
        apply_rate: args.apply_rate,
        throttling: model.as_str().into(),
        ..Default::default()
    };

    // 1. Converge, unthrottled.
    let World {
        emu,
        mut sched,
        counters,
        requeue,
    } = build_world(args, n, rt, ts, false).await?;
    let cpu0 = sys::thread_cpu();
    let emu_cpu0 = emu.child_cpu_seconds();
    let tally0 = counters.snapshot();
    counters.take_latency();
    let t0 = Instant::now();
    sched.take_stats();
    let converged = sched.run_until(&requeue, t0 + timeout, all_ready).await;
    let wall = t0.elapsed();
    let stats = sched.take_stats();
    let tally = counters.snapshot().since(&tally0);
    let c = &mut run.converge;
    c.arm_round_trip = Dist::of(&counters.take_latency());
    c.converged = converged;
    c.ready = sched.items.iter().filter(|t| t.is_ready()).count();
    c.wall_seconds = wall.as_secs_f64();
    let overheads: Vec<Duration> = stats.transitions.iter().map(|t| t.overhead).collect();
    c.overhead_per_transition = Dist::of(&overheads);
    let mut by: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for t in &stats.transitions {
        by.entry(transition_name(t)).or_default().push(t.overhead);
    }
    c.overhead_by_transition = by.iter().map(|(k, v)| (k.clone(), Dist::of(v))).collect();
    let minus_ops: Vec<Duration> = sched
        .items
        .iter()
        .filter_map(|t| {
            let ready = t.ready_at?;
            Some((ready - t.applied_at).saturating_sub(requeue.op_duration * t.operations))
        })
        .collect();
    c.apply_to_ready_minus_operations = Dist::of(&minus_ops);
    c.reconcile_wall = Dist::of(&stats.reconcile_wall);
    c.queue_delay = Dist::of(&stats.queue_delay);
    c.reconciles = stats.reconciles;
    c.arm_requests = tally.total();
    c.arm_requests_per_resource = tally.total() as f64 / n.max(1) as f64;
    c.reads_per_resource = tally.reads() as f64 / n.max(1) as f64;
    c.writes_per_resource = tally.writes() as f64 / n.max(1) as f64;
    c.requests_by_operation = tally.by_operation();
    c.throttled_429 = tally.throttled();
    c.errors = errors(&stats);
    c.by_kind = converge_by_kind(&sched.items, &tally, requeue.op_duration);
    c.cpu = cpu(&cpu0, &sys::thread_cpu(), stats.reconciles, emu_cpu0, &emu);
    let operations: u64 = sched.items.iter().map(|t| u64::from(t.operations)).sum();
    let polls_per_operation = tally.operation("lro.poll") as f64 / operations.max(1) as f64;
    writeln!(
        out,
        "  converge: {} ({}/{n} Ready) in {:.1} s, {} reconciles, {} ARM requests, overhead p99 {:.1} ms",
        if converged { "done" } else { "TIMED OUT" },
        c.ready,
        c.wall_seconds,
        c.reconciles,
        c.arm_requests,
        c.overhead_per_transition.p99_ms
    )?;

    // 2. Steady state under ARM's real limits of the model (time-compressed).
    emu.set_throttling(args.throttling(ts, None)).await?;
    run.steady = steady(args, &mut sched, &requeue, &emu, &counters, timeout).await?;
    writeln!(
        out,
        "  steady: {:.2} reads and {:.2} writes per resource per hour ({:.2} reads per resync), {} writes received, {} × 429",
        run.steady.reads_per_resource_hour,
        run.steady.writes_per_resource_hour,
        run.steady.reads_per_resync,
        run.steady.writes_received,
        run.steady.throttled_429
    )?;
    for (kind, k) in &run.steady.by_kind {
        writeln!(
            out,
            "    {kind}: {} writes, {:.2} reads per resync, {:.2} resyncs per resource per hour",
            k.writes, k.reads_per_resync, k.resyncs_per_resource_hour
        )?;
    }

    run.naive = report::Naive {
        resync_seconds: requeue.policy.base.as_secs_f64(),
        polls_per_operation,
        naive_writes_per_hour: n as f64 * 3600.0 / requeue.policy.base.as_secs_f64(),
        naive_reads_per_hour: n as f64 * 3600.0 / requeue.policy.base.as_secs_f64()
            * polls_per_operation,
        amlops_writes_per_hour: run.steady.writes_per_resource_hour * n as f64,
        amlops_reads_per_hour: run.steady.reads_per_resource_hour * n as f64,
        arm_writes_per_hour: {
            let arm = args.resync.throttling.arm();
            (arm.limits(model).writes.refill_per_second * 3600.0).round() as u64
        },
        arm_reads_per_hour: arm_reads_per_hour(args),
    };
    drop(sched);
    let mut emulator_rss = emu.child_peak_rss_bytes();
    emu.shutdown().await;

    // 3. Converge with the client-side limits on: under token buckets, ARM's own figures
    //    (all applied at once: the operator's pacing alone must avoid any 429); under the
    //    hourly model, a scaled-down budget that forces throttling.
    if !args.skip_budget {
        let tb = model == ThrottlingModel::TokenBucket;
        let scale = if tb {
            1.0
        } else {
            args.budget_scale.unwrap_or(n as f64 / 4000.0)
        };
        let t = &args.resync.throttling;
        let (reads, writes) = if tb {
            let per_hour = |r: f64| (r * 3600.0).round() as u64;
            (per_hour(t.arm_read_refill), per_hour(t.arm_write_refill))
        } else {
            (
                ((t.arm_read_budget as f64 * scale).round() as u64).max(1),
                ((t.arm_write_budget as f64 * scale).round() as u64).max(1),
            )
        };
        let World {
            emu,
            mut sched,
            counters,
            requeue,
        } = build_world(args, n, rt, ts, true).await?;
        emu.set_throttling(args.throttling(ts, (!tb).then_some((reads, writes))))
            .await?;
        let tally0 = counters.snapshot();
        counters.take_latency();
        let t0 = Instant::now();
        sched.take_stats();
        let converged = sched.run_until(&requeue, t0 + timeout, all_ready).await;
        let wall = t0.elapsed();
        let stats = sched.take_stats();
        let tally = counters.snapshot().since(&tally0);
        let mut b = report::Budget {
            budget_scale: scale,
            reads_per_hour: reads,
            writes_per_hour: writes,
            converged,
            ready: sched.items.iter().filter(|t| t.is_ready()).count(),
            real_seconds: wall.as_secs_f64(),
            emulated_hours: wall.as_secs_f64() * ts / 3600.0,
            arm_requests: tally.total(),
            throttled_429: tally.throttled(),
            errors: errors(&stats),
            by_kind: converge_by_kind(&sched.items, &tally, requeue.op_duration),
            ..Default::default()
        };
        writeln!(
            out,
            "  budget ({reads} reads, {writes} writes per hour): {} ({}/{n} Ready) in {:.2} emulated hours, {} × 429",
            if converged {
                "converged"
            } else {
                "DID NOT CONVERGE"
            },
            b.ready,
            b.emulated_hours,
            b.throttled_429
        )?;
        b.steady = steady(args, &mut sched, &requeue, &emu, &counters, timeout).await?;
        b.steady.arm_reads_per_hour = reads;
        writeln!(
            out,
            "  budget steady: {:.0} reads per subscription per hour (budget {reads}), {} × 429",
            b.steady.reads_per_subscription_hour, b.steady.throttled_429
        )?;
        run.budget = Some(b);
        drop(sched);
        emulator_rss = emulator_rss.max(emu.child_peak_rss_bytes());
        emu.shutdown().await;
    }
    run.memory = report::Memory {
        peak_rss_bytes: sampler.peak(),
        vm_hwm_bytes: sys::hwm_bytes().unwrap_or(0),
        emulator_peak_rss_bytes: emulator_rss,
    };
    Ok(run)
}

/// The steady pace's inputs as the engines compute them for the run's first subscription
/// (the resources go round robin over the subscriptions, so each holds the same mix): its
/// resources and their average ARM reads per resync, from the store's counts by kind and the
/// latest workspace listings ([`amlops::engine::listing::resync_demand`]), at `quota`.
fn resync_facts(sched: &Scheduler, quota: Option<ReadQuota>) -> ResyncFacts {
    let sub = world::subscription(0);
    let (resources, reads_per_resync) = amlops::engine::listing::resync_demand(
        sched.listings().pages_in_subscription(&sub),
        sched.store().resources_in_subscription(&sub),
    );
    ResyncFacts {
        resources: resources.max(1),
        quota,
        seed: 0,
        reads_per_resync,
    }
}

/// Warm-up for one resync round, then `steady_hours` emulated hours measured.
async fn steady(
    args: &BenchArgs,
    sched: &mut Scheduler,
    requeue: &Requeue,
    emu: &Emu,
    counters: &Counters,
    timeout: Duration,
) -> anyhow::Result<report::Steady> {
    let ts = requeue.time_scale;
    let policy: &ResyncPolicy = &requeue.policy;
    let model = Some(ReadQuota {
        model: args.model(),
        fill: None,
    });
    // Warm-up: until every resource has been resynced once more, so that intervals set
    // while converging (slowed down if that drained the read budget) are behind us.
    let start: Vec<u64> = sched.items.iter().map(|t| t.rounds).collect();
    sched
        .run_until(requeue, Instant::now() + timeout, |items, _| {
            items
                .iter()
                .zip(&start)
                .all(|(t, r)| t.finished || t.rounds > *r)
        })
        .await;
    sched.take_stats();
    // The interval every engine uses for every kind: after the warm-up the workspace
    // listings are known.
    let facts = resync_facts(sched, model);
    let nominal = facts.nominal(policy);
    emu.clear_requests().await?;
    counters.take_latency();
    let tally0: Tally = counters.snapshot();
    let cpu0 = sys::thread_cpu();
    let emu_cpu0 = emu.child_cpu_seconds();
    // At least two resync rounds, so that the window holds whole rounds.
    let hours = args.steady_hours.max(2.0 * nominal.as_secs_f64() / 3600.0);
    let window = Duration::from_secs_f64(hours * 3600.0 / ts).min(timeout);
    let t0 = Instant::now();
    sched.run_until(requeue, t0 + window, |_, _| false).await;
    let real = t0.elapsed();
    let stats = sched.take_stats();
    let tally = counters.snapshot().since(&tally0);
    let hours = real.as_secs_f64() * ts / 3600.0;
    let n = sched.items.len().max(1) as f64;
    let subs = args.subscriptions.max(1) as f64;
    let (_, writes_received) = emu.reads_and_writes().await?;
    let by_kind = kinds(&sched.items)
        .into_iter()
        .map(|(kind, n)| {
            let k = tally.of_kind(kind);
            let reconciles = stats.reconciles_by_kind.get(kind).copied().unwrap_or(0);
            let figures = KindSteady {
                resources: n,
                reconciles,
                resyncs_per_resource_hour: reconciles as f64 / n.max(1) as f64 / hours,
                reads_per_resync: k.reads() as f64 / reconciles.max(1) as f64,
                writes: k.writes(),
            };
            (kind.to_string(), figures)
        })
        .collect();
    Ok(report::Steady {
        by_kind,
        emulated_hours: hours,
        real_seconds: real.as_secs_f64(),
        arm_reads_per_hour: arm_reads_per_hour(args),
        policy_interval_seconds: nominal.as_secs_f64(),
        policy_reads_per_subscription_hour: policy
            .with_reads_per_resync(facts.reads_per_resync)
            .expected_reads_per_hour(facts.resources, model),
        reconciles: stats.reconciles,
        resyncs_per_resource_hour: stats.reconciles as f64 / n / hours,
        reads_per_resync: tally.reads() as f64 / stats.reconciles.max(1) as f64,
        reads_per_resource_hour: tally.reads() as f64 / n / hours,
        writes_per_resource_hour: tally.writes() as f64 / n / hours,
        writes_received,
        reads_per_subscription_hour: tally.reads() as f64 / subs / hours,
        throttled_429: tally.throttled(),
        errors: errors(&stats),
        cpu: cpu(&cpu0, &sys::thread_cpu(), stats.reconciles, emu_cpu0, emu),
    })
}
