//! The benchmark report: JSON-serialisable figures and a readable table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

pub use super::controller::ControllerRun;

use super::world::OpCount;

/// A latency distribution in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Dist {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Dist {
    /// Distribution of `samples`.
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
            ms[i]
        };
        Self {
            count: ms.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: ms[ms.len() - 1],
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }
}

/// CPU time of the process split between the operator and the in-process emulator.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cpu {
    /// Operator threads (engine, ARM client, scheduler), seconds.
    pub operator_seconds: f64,
    /// Emulator threads, seconds (for context; not the operator's).
    pub emulator_seconds: f64,
    /// Operator CPU per reconcile, milliseconds.
    pub operator_ms_per_reconcile: f64,
}

/// One kind's share of a converge phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KindConverge {
    /// Resources of the kind.
    pub resources: usize,
    /// Of those, Ready at the end of the phase.
    pub ready: usize,
    /// ARM attempts its reconciles made, per resource of the kind.
    pub arm_requests_per_resource: f64,
    /// GETs per resource.
    pub reads_per_resource: f64,
    /// PUT/POST/PATCH/DELETE per resource.
    pub writes_per_resource: f64,
    /// Per resource: apply → Ready minus the emulated time of its operations.
    pub apply_to_ready_minus_operations: Dist,
}

/// One kind's share of a steady window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KindSteady {
    /// Resources of the kind.
    pub resources: usize,
    /// Its reconciles in the window.
    pub reconciles: u64,
    /// Resyncs per resource per (emulated) hour.
    pub resyncs_per_resource_hour: f64,
    /// ARM reads per resync.
    pub reads_per_resync: f64,
    /// ARM writes its reconciles made in the window (client side; target 0).
    pub writes: u64,
}

/// Applying N resources at once and waiting until every one is Ready.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Converge {
    /// Every resource Ready before the timeout.
    pub converged: bool,
    /// Resources Ready.
    pub ready: usize,
    /// Real seconds from apply to the last Ready.
    pub wall_seconds: f64,
    /// Operator overhead per phase transition: from the moment the transition became
    /// possible (apply; or the reconcile that started an Azure operation + the emulated
    /// operation time) to the reconcile that recorded it.
    pub overhead_per_transition: Dist,
    /// Same, by transition (`Pending→Creating`, `Creating→Ready`, …).
    pub overhead_by_transition: BTreeMap<String, Dist>,
    /// Per resource: apply → Ready minus the emulated time of its operations.
    pub apply_to_ready_minus_operations: Dist,
    /// Wall time of one reconcile call (ARM round trips to the local emulator included).
    pub reconcile_wall: Dist,
    /// Time a due reconcile waited for a worker (concurrency limit).
    pub queue_delay: Dist,
    /// Round trip of one ARM attempt to the in-process emulator (client side).
    pub arm_round_trip: Dist,
    /// Reconciles run.
    pub reconciles: u64,
    /// ARM attempts (client side, retries included).
    pub arm_requests: u64,
    /// ARM attempts per resource to reach Ready.
    pub arm_requests_per_resource: f64,
    /// GETs per resource.
    pub reads_per_resource: f64,
    /// PUT/POST/DELETE per resource.
    pub writes_per_resource: f64,
    /// Attempts by `METHOD operation`.
    pub requests_by_operation: BTreeMap<String, OpCount>,
    /// 429 answers.
    pub throttled_429: u64,
    /// Reconcile errors by category.
    pub errors: BTreeMap<String, u64>,
    /// Per kind.
    pub by_kind: BTreeMap<String, KindConverge>,
    /// CPU.
    pub cpu: Cpu,
}

/// The steady state: every resource Ready, resynced by the adaptive policy.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Steady {
    /// Emulated hours measured.
    pub emulated_hours: f64,
    /// Real seconds measured.
    pub real_seconds: f64,
    /// ARM's reads per hour per subscription the emulator allowed (token buckets: the refill
    /// × 3600).
    pub arm_reads_per_hour: u64,
    /// Policy: nominal resync interval in (emulated) seconds of every resource of a
    /// subscription, whatever its kind, before jitter and before the remaining-reads
    /// slow-down, as the engines compute it after the warm-up
    /// ([`amlops::engine::listing::resync_demand`]): one round costs the legacy kinds' share
    /// of their workspaces' listings (2 × pages, one read each at most) plus one read per
    /// Kubernetes-path resource.
    pub policy_interval_seconds: f64,
    /// Policy: expected reads per subscription per hour (no slow-down) at that interval and
    /// that read demand per round.
    pub policy_reads_per_subscription_hour: f64,
    /// Reconciles in the window.
    pub reconciles: u64,
    /// Resyncs per resource per hour.
    pub resyncs_per_resource_hour: f64,
    /// ARM reads per resync (measured).
    pub reads_per_resync: f64,
    /// Reads per resource per hour (measured).
    pub reads_per_resource_hour: f64,
    /// Writes per resource per hour (measured, client side).
    pub writes_per_resource_hour: f64,
    /// Writes the emulator received in the window (server side).
    pub writes_received: u64,
    /// Reads per subscription per hour (measured).
    pub reads_per_subscription_hour: f64,
    /// 429 answers.
    pub throttled_429: u64,
    /// Reconcile errors by category.
    pub errors: BTreeMap<String, u64>,
    /// Per kind.
    pub by_kind: BTreeMap<String, KindSteady>,
    /// CPU.
    pub cpu: Cpu,
}

/// Converging under a scaled-down ARM budget that forces throttling.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Budget {
    /// Fraction of ARM's hourly budget enforced.
    pub budget_scale: f64,
    /// Reads per (emulated) hour per subscription.
    pub reads_per_hour: u64,
    /// Writes per (emulated) hour per subscription.
    pub writes_per_hour: u64,
    /// Every resource Ready before the timeout.
    pub converged: bool,
    /// Resources Ready.
    pub ready: usize,
    /// Real seconds to converge.
    pub real_seconds: f64,
    /// Emulated hours to converge.
    pub emulated_hours: f64,
    /// ARM attempts.
    pub arm_requests: u64,
    /// 429 answers received while converging.
    pub throttled_429: u64,
    /// Reconcile errors by category.
    pub errors: BTreeMap<String, u64>,
    /// Per kind.
    pub by_kind: BTreeMap<String, KindConverge>,
    /// The steady state afterwards, under the same budget.
    pub steady: Steady,
}

/// The naive operator (re-PUT every resource each resync), from the same run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Naive {
    /// Resync interval both are compared at, seconds.
    pub resync_seconds: f64,
    /// LRO polls per operation measured while converging.
    pub polls_per_operation: f64,
    /// Naive: writes per hour for all resources (one PUT per resource per resync).
    pub naive_writes_per_hour: f64,
    /// Naive: reads per hour (LRO polls of those PUTs).
    pub naive_reads_per_hour: f64,
    /// amlops, measured: writes per hour for all resources.
    pub amlops_writes_per_hour: f64,
    /// amlops, measured: reads per hour for all resources.
    pub amlops_reads_per_hour: f64,
    /// ARM's write budget per subscription per hour.
    pub arm_writes_per_hour: u64,
    /// ARM's read budget per subscription per hour.
    pub arm_reads_per_hour: u64,
}

/// Memory.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Memory {
    /// Largest VmRSS sampled during this run: the benchmark's process, i.e. the operator
    /// (plus the emulator when it runs in-process).
    pub peak_rss_bytes: u64,
    /// Peak RSS of the emulator child process, when it runs in one.
    pub emulator_peak_rss_bytes: Option<u64>,
    /// VmHWM at the end of the run (process lifetime peak).
    pub vm_hwm_bytes: u64,
}

/// One benchmark run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Run {
    /// Resources.
    pub resources: usize,
    /// The kinds' mix (`--path`: `legacy`, `kubernetes` or `both`).
    pub path: String,
    /// Subscriptions.
    pub subscriptions: usize,
    /// Emulated operation time, seconds.
    pub op_seconds: f64,
    /// Emulated seconds per real second.
    pub time_scale: f64,
    /// Concurrent reconciles.
    pub concurrency: usize,
    /// Resources applied per second (0: all at once).
    pub apply_rate: f64,
    /// ARM's throttling model the emulator enforced (`token-bucket` or `hourly`).
    pub throttling: String,
    /// Apply all, wait for Ready.
    pub converge: Converge,
    /// Steady state.
    pub steady: Steady,
    /// Under a budget that forces throttling (unless skipped).
    pub budget: Option<Budget>,
    /// Comparison with re-PUT every resync.
    pub naive: Naive,
    /// Memory.
    pub memory: Memory,
}

/// The whole report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// `amlops-dev bench …` as invoked.
    pub command: String,
    /// amlops version.
    pub version: String,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// `/proc/loadavg` when the benchmark started (other work on the machine skews figures).
    pub load_average_before: Option<String>,
    /// `/proc/loadavg` when it ended.
    pub load_average_after: Option<String>,
    /// Runs, one per resource count.
    pub runs: Vec<Run>,
    /// `--controller` runs, one per resource count.
    pub controller_runs: Vec<ControllerRun>,
    /// The targets of issue 14 these runs measure, each met or not.
    pub targets: Vec<Target>,
}

/// One target and whether this run met it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Target {
    /// What is measured, e.g. `steady 10000 (token-bucket): resync at the base interval`.
    pub name: String,
    /// The bound, in words (e.g. `<= 64 MiB`).
    pub target: String,
    /// The measured value, in words.
    pub value: String,
    /// Whether the value meets the bound.
    pub met: bool,
}

impl Report {
    /// The targets these runs measure: every resource Ready; 0 steady writes; steady reads
    /// within `share` of ARM's read allowance; under token buckets, the resync at the
    /// `base_seconds` interval and no 429 in the paced burst; peak RSS of the operator
    /// process (64 MiB at 1,000, 256 MiB at 10,000; for `--controller` only met when the
    /// fake API server and the emulator ran as child processes); whole operator
    /// apply→Ready minus Azure p99 ≤ 250 ms when applied at 100/s.
    pub fn evaluate(&mut self, share: f64, base_seconds: f64) {
        let mut t = Vec::new();
        let mut add = |name: String, target: &str, value: String, met: bool| {
            t.push(Target {
                name,
                target: target.into(),
                value,
                met,
            })
        };
        let rss_target = |n: usize| match n {
            1_000 => Some(64.0),
            10_000 => Some(256.0),
            _ => None,
        };
        for r in &self.runs {
            let tag = format!("{} ({})", r.resources, r.throttling);
            add(
                format!("converge {tag}: all Ready"),
                "all",
                format!("{}/{}", r.converge.ready, r.resources),
                r.converge.converged,
            );
            add(
                format!("steady {tag}: ARM writes"),
                "0",
                format!(
                    "{} (client {:.2}/resource/h)",
                    r.steady.writes_received, r.steady.writes_per_resource_hour
                ),
                r.steady.writes_received == 0 && r.steady.writes_per_resource_hour == 0.0,
            );
            for (kind, k) in &r.steady.by_kind {
                add(
                    format!("steady {tag}: {kind} ARM writes"),
                    "0",
                    format!("{} in {} resyncs", k.writes, k.reconciles),
                    k.writes == 0 && k.reconciles > 0,
                );
            }
            let allowed = share * r.steady.arm_reads_per_hour as f64;
            add(
                format!("steady {tag}: reads per subscription per hour"),
                &format!(
                    "<= {allowed:.0} ({:.0} % of {})",
                    share * 100.0,
                    r.steady.arm_reads_per_hour
                ),
                format!("{:.0}", r.steady.reads_per_subscription_hour),
                r.steady.reads_per_subscription_hour <= allowed,
            );
            if r.throttling == "token-bucket" {
                add(
                    format!("steady {tag}: resync interval"),
                    &format!("{base_seconds:.0} s (the base)"),
                    format!("{:.0} s", r.steady.policy_interval_seconds),
                    r.steady.policy_interval_seconds <= base_seconds * (1.0 + 1e-9),
                );
                if let Some(b) = &r.budget {
                    add(
                        format!("burst {tag}: all at once, paced, 429s"),
                        "0, all Ready",
                        format!(
                            "{} × 429, {}/{} Ready",
                            b.throttled_429, b.ready, r.resources
                        ),
                        b.throttled_429 == 0 && b.converged,
                    );
                }
            }
            if let Some(mib_max) = rss_target(r.resources) {
                let v = mib(r.memory.peak_rss_bytes);
                add(
                    format!("engine {tag}: peak RSS of the operator process"),
                    &format!("<= {mib_max:.0} MiB"),
                    format!("{v:.1} MiB"),
                    v <= mib_max,
                );
            }
        }
        for r in &self.controller_runs {
            let how = if r.apply_rate > 0.0 {
                format!("{:.0}/s", r.apply_rate)
            } else {
                "all at once".into()
            };
            // The legacy mix's names are those of the earlier reports.
            let tag = match r.path.as_str() {
                "" | "legacy" => format!("{} {how}", r.resources),
                path => format!("{} {how} {path}", r.resources),
            };
            add(
                format!("controller {tag}: all Ready"),
                "all",
                format!("{}/{}", r.ready, r.resources),
                r.converged,
            );
            if (r.apply_rate - 100.0).abs() < 1e-9 {
                let p99 = r.apply_to_ready_minus_operation.p99_ms;
                add(
                    format!("controller {tag}: apply→Ready minus Azure p99"),
                    "<= 250 ms",
                    format!("{p99:.0} ms"),
                    p99 <= 250.0 && r.converged,
                );
            }
            if let Some(mib_max) = rss_target(r.resources) {
                let v = mib(r.peak_rss_bytes);
                // In-process, the figure includes the fake API server and the emulator:
                // not the operator's alone, so the target is not met by it.
                let alone = r.fake_api_server_peak_rss_bytes.is_some()
                    && r.emulator_peak_rss_bytes.is_some();
                add(
                    if alone {
                        format!("controller {tag}: peak RSS of the operator process")
                    } else {
                        format!(
                            "controller {tag}: peak RSS (operator with the in-process fake API server and emulator)"
                        )
                    },
                    &format!("<= {mib_max:.0} MiB (operator alone)"),
                    format!("{v:.1} MiB"),
                    alone && v <= mib_max,
                );
            }
        }
        self.targets = t;
    }

    /// The targets, one line each.
    pub fn targets_table(&self) -> String {
        let mut out = String::new();
        for t in &self.targets {
            let _ = writeln!(
                out,
                "{} {}: {} (target {})",
                if t.met { "met    " } else { "NOT MET" },
                t.name,
                t.value,
                t.target
            );
        }
        out
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

impl Report {
    /// A readable table, one column per run.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        let mut row = |name: &str, f: &dyn Fn(&Run) -> String| {
            rows.push((name.to_string(), self.runs.iter().map(f).collect()));
        };
        row("resources", &|r| format!("{} ({})", r.resources, r.path));
        row("ARM throttling model", &|r| r.throttling.clone());
        row("time scale (steady, throttled run)", &|r| {
            format!("×{:.1}", r.time_scale)
        });
        row("applied", &|r| {
            if r.apply_rate > 0.0 {
                format!("{:.0}/s", r.apply_rate)
            } else {
                "all at once".into()
            }
        });
        row("converged (all Ready)", &|r| {
            format!(
                "{} ({}/{}) in {:.1} s",
                yes(r.converge.converged),
                r.converge.ready,
                r.resources,
                r.converge.wall_seconds
            )
        });
        row("overhead / transition p50 | p99", &|r| {
            let d = &r.converge.overhead_per_transition;
            format!("{:.1} | {:.1} ms", d.p50_ms, d.p99_ms)
        });
        for key in self
            .runs
            .iter()
            .flat_map(|r| r.converge.overhead_by_transition.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            row(&format!("  {key} p50 | p99"), &|r| {
                r.converge
                    .overhead_by_transition
                    .get(key)
                    .map(|d| format!("{:.1} | {:.1} ms", d.p50_ms, d.p99_ms))
                    .unwrap_or_else(|| "-".into())
            });
        }
        row("apply→Ready − op time p50 | p99", &|r| {
            let d = &r.converge.apply_to_ready_minus_operations;
            format!("{:.1} | {:.1} ms", d.p50_ms, d.p99_ms)
        });
        row("reconcile wall p50 | p99", &|r| {
            let d = &r.converge.reconcile_wall;
            format!("{:.2} | {:.2} ms", d.p50_ms, d.p99_ms)
        });
        row("queue delay p50 | p99", &|r| {
            let d = &r.converge.queue_delay;
            format!("{:.1} | {:.1} ms", d.p50_ms, d.p99_ms)
        });
        row("ARM round trip p50 | p99", &|r| {
            let d = &r.converge.arm_round_trip;
            format!("{:.2} | {:.2} ms", d.p50_ms, d.p99_ms)
        });
        row("ARM requests / resource to Ready", &|r| {
            format!(
                "{:.2} ({:.2} reads, {:.2} writes)",
                r.converge.arm_requests_per_resource,
                r.converge.reads_per_resource,
                r.converge.writes_per_resource
            )
        });
        let kinds: std::collections::BTreeSet<&String> = self
            .runs
            .iter()
            .flat_map(|r| r.converge.by_kind.keys())
            .collect();
        for kind in &kinds {
            row(&format!("  {kind}: Ready"), &|r| {
                r.converge
                    .by_kind
                    .get(*kind)
                    .map(|k| format!("{}/{}", k.ready, k.resources))
                    .unwrap_or_else(|| "-".into())
            });
            row(&format!("  {kind}: ARM requests / resource"), &|r| {
                r.converge
                    .by_kind
                    .get(*kind)
                    .map(|k| {
                        format!(
                            "{:.2} ({:.2} reads, {:.2} writes)",
                            k.arm_requests_per_resource,
                            k.reads_per_resource,
                            k.writes_per_resource
                        )
                    })
                    .unwrap_or_else(|| "-".into())
            });
            row(
                &format!("  {kind}: apply→Ready − op time p50 | p99"),
                &|r| {
                    r.converge
                        .by_kind
                        .get(*kind)
                        .map(|k| {
                            let d = &k.apply_to_ready_minus_operations;
                            format!("{:.1} | {:.1} ms", d.p50_ms, d.p99_ms)
                        })
                        .unwrap_or_else(|| "-".into())
                },
            );
        }
        row("CPU / reconcile (operator)", &|r| {
            format!("{:.2} ms", r.converge.cpu.operator_ms_per_reconcile)
        });
        row("steady: resync interval (policy)", &|r| {
            format!("{:.0} s", r.steady.policy_interval_seconds)
        });
        row("steady: reads / resource / hour", &|r| {
            format!(
                "{:.2} ({:.2} per resync)",
                r.steady.reads_per_resource_hour, r.steady.reads_per_resync
            )
        });
        row("steady: writes / resource / hour", &|r| {
            format!(
                "{:.2} (server saw {})",
                r.steady.writes_per_resource_hour, r.steady.writes_received
            )
        });
        for kind in &kinds {
            row(&format!("  steady {kind}: writes | reads / resync"), &|r| {
                r.steady
                    .by_kind
                    .get(*kind)
                    .map(|k| {
                        format!(
                            "{} | {:.2} ({:.2} resyncs / resource / h)",
                            k.writes, k.reads_per_resync, k.resyncs_per_resource_hour
                        )
                    })
                    .unwrap_or_else(|| "-".into())
            });
        }
        row("steady: reads / subscription / hour", &|r| {
            format!(
                "{:.0} (policy {:.0}, budget {})",
                r.steady.reads_per_subscription_hour,
                r.steady.policy_reads_per_subscription_hour,
                r.steady.arm_reads_per_hour
            )
        });
        row("steady: CPU / reconcile", &|r| {
            format!("{:.2} ms", r.steady.cpu.operator_ms_per_reconcile)
        });
        row("peak RSS (operator process)", &|r| {
            let rss = format!("{:.1} MiB", mib(r.memory.peak_rss_bytes));
            match r.memory.emulator_peak_rss_bytes {
                Some(e) => format!("{rss} (emulator child: {:.1} MiB)", mib(e)),
                None => format!("{rss} (emulator in-process, included)"),
            }
        });
        row(
            "budget: ARM reads | writes per hour",
            &|r| match &r.budget {
                Some(b) => format!(
                    "{} | {} (scale {:.4})",
                    b.reads_per_hour, b.writes_per_hour, b.budget_scale
                ),
                None => "skipped".into(),
            },
        );
        row("budget: converged", &|r| match &r.budget {
            Some(b) => format!(
                "{} ({}/{}) in {:.2} emulated h",
                yes(b.converged),
                b.ready,
                r.resources,
                b.emulated_hours
            ),
            None => "-".into(),
        });
        row("budget: 429s converging | steady", &|r| match &r.budget {
            Some(b) => format!("{} | {}", b.throttled_429, b.steady.throttled_429),
            None => "-".into(),
        });
        row("budget: Ready by kind", &|r| match &r.budget {
            Some(b) => b
                .by_kind
                .iter()
                .map(|(k, v)| format!("{k} {}/{}", v.ready, v.resources))
                .collect::<Vec<_>>()
                .join(", "),
            None => "-".into(),
        });
        row("budget: steady writes by kind", &|r| match &r.budget {
            Some(b) => b
                .steady
                .by_kind
                .iter()
                .map(|(k, v)| format!("{k} {}", v.writes))
                .collect::<Vec<_>>()
                .join(", "),
            None => "-".into(),
        });
        row("budget: steady reads / sub / hour", &|r| match &r.budget {
            Some(b) => format!("{:.0}", b.steady.reads_per_subscription_hour),
            None => "-".into(),
        });
        row("naive re-PUT: writes | reads / hour", &|r| {
            format!(
                "{:.0} | {:.0}",
                r.naive.naive_writes_per_hour, r.naive.naive_reads_per_hour
            )
        });
        row("amlops: writes | reads / hour", &|r| {
            format!(
                "{:.0} | {:.0}",
                r.naive.amlops_writes_per_hour, r.naive.amlops_reads_per_hour
            )
        });
        let mut out = if self.runs.is_empty() {
            String::new()
        } else {
            render(&rows, self.runs.len())
        };
        if !self.controller_runs.is_empty() {
            out.push_str(&self.controller_table());
        }
        out
    }

    /// The `--controller` runs, one column each.
    fn controller_table(&self) -> String {
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        let mut row = |name: &str, f: &dyn Fn(&ControllerRun) -> String| {
            rows.push((
                name.to_string(),
                self.controller_runs.iter().map(f).collect(),
            ));
        };
        row("controller: resources", &|r| {
            if r.apply_rate > 0.0 {
                format!("{} at {:.0}/s ({})", r.resources, r.apply_rate, r.path)
            } else {
                format!("{} all at once ({})", r.resources, r.path)
            }
        });
        row("converged (all Ready)", &|r| {
            format!(
                "{} ({}/{}) in {:.1} s",
                yes(r.converged),
                r.ready,
                r.resources,
                r.wall_seconds
            )
        });
        row("apply→Ready minus Azure p50 | p99", &|r| {
            let d = &r.apply_to_ready_minus_operation;
            format!("{:.1} | {:.1} ms", d.p50_ms, d.p99_ms)
        });
        row("  by kind, p50 | p99 ms", &|r| {
            r.apply_to_ready_minus_operation_by_kind
                .iter()
                .map(|(kind, d)| format!("{kind} {:.0} | {:.0}", d.p50_ms, d.p99_ms))
                .collect::<Vec<_>>()
                .join(", ")
        });
        row("reconciles", &|r| r.reconciles.to_string());
        row("ARM reads | writes per resource", &|r| {
            format!(
                "{:.2} | {:.2}",
                r.arm_reads_per_resource, r.arm_writes_per_resource
            )
        });
        row("Kubernetes requests per resource", &|r| {
            r.kube_requests_per_resource
                .iter()
                .map(|(m, v)| format!("{m} {v:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        });
        row("CPU per reconcile: operator (fake API server)", &|r| {
            format!(
                "{:.2} ms ({:.2} ms)",
                r.cpu.operator_ms_per_reconcile,
                r.cpu.emulator_seconds * 1e3 / r.reconciles.max(1) as f64
            )
        });
        row("peak RSS: operator process", &|r| {
            let rss = format!("{:.1} MiB", mib(r.peak_rss_bytes));
            match r.fake_api_server_peak_rss_bytes {
                Some(_) => rss,
                None => format!("{rss} (fake API server in-process, included)"),
            }
        });
        row("peak RSS: fake API server | emulator child", &|r| {
            let child =
                |b: Option<u64>| b.map_or("in-process".into(), |b| format!("{:.1} MiB", mib(b)));
            format!(
                "{} | {}",
                child(r.fake_api_server_peak_rss_bytes),
                child(r.emulator_peak_rss_bytes)
            )
        });
        row("steady: resync period, reconciles in window", &|r| {
            format!(
                "{:.0} s, {} in {:.1} s",
                r.steady.resync_seconds, r.steady.reconciles, r.steady.seconds
            )
        });
        row("steady: ARM reads / reconcile, ARM writes", &|r| {
            format!(
                "{:.2}, {}",
                r.steady.arm_reads_per_reconcile, r.steady.arm_writes
            )
        });
        row("steady: Kubernetes writes / reconcile", &|r| {
            format!("{:.2}", r.steady.kube_writes_per_reconcile)
        });
        render(&rows, self.controller_runs.len())
    }
}

/// Rows of (name, one value per column) as aligned text.
fn render(rows: &[(String, Vec<String>)], columns: usize) -> String {
    let w0 = rows
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .map(|(_, v)| v[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (name, vals) in rows {
        let _ = write!(out, "{name:<w0$}");
        for (v, w) in vals.iter().zip(&widths) {
            let _ = write!(out, " │ {v:<w$}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let d = Dist::of(&samples);
        assert_eq!(
            (d.count, d.p50_ms, d.p99_ms, d.max_ms),
            (100, 50.0, 99.0, 100.0)
        );
        assert!((d.mean_ms - 50.5).abs() < 1e-9);
        let one = Dist::of(&[Duration::from_millis(7)]);
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
        assert_eq!(Dist::of(&[]).count, 0);
    }

    fn controller_run(n: usize, apply_rate: f64, rss_mib: u64, children: bool) -> ControllerRun {
        let child = children.then_some(30 << 20);
        ControllerRun {
            resources: n,
            apply_rate,
            converged: true,
            ready: n,
            apply_to_ready_minus_operation: Dist {
                count: n,
                p50_ms: 20.0,
                p99_ms: 240.0,
                max_ms: 300.0,
                mean_ms: 30.0,
            },
            peak_rss_bytes: rss_mib << 20,
            emulator_peak_rss_bytes: child,
            fake_api_server_peak_rss_bytes: child,
            ..Default::default()
        }
    }

    fn target<'a>(r: &'a Report, name: &str) -> &'a Target {
        r.targets
            .iter()
            .find(|t| t.name.starts_with(name))
            .unwrap_or_else(|| panic!("no target {name}: {:?}", r.targets))
    }

    #[test]
    fn controller_targets_of_issue_14() {
        let mut r = Report {
            controller_runs: vec![
                controller_run(1_000, 100.0, 60, true),
                controller_run(10_000, 0.0, 300, true),
                controller_run(1_000, 0.0, 60, false),
            ],
            ..Default::default()
        };
        r.evaluate(0.5, 600.0);
        let p99 = target(&r, "controller 1000 100/s: apply→Ready minus Azure p99");
        assert!(p99.met && p99.target == "<= 250 ms", "{p99:?}");
        let rss = target(
            &r,
            "controller 1000 100/s: peak RSS of the operator process",
        );
        assert!(rss.met && rss.target.starts_with("<= 64 MiB"), "{rss:?}");
        let rss = target(
            &r,
            "controller 10000 all at once: peak RSS of the operator process",
        );
        assert!(!rss.met && rss.target.starts_with("<= 256 MiB"), "{rss:?}");
        // In-process, the figure is not the operator's alone: never met.
        let shared = target(&r, "controller 1000 all at once: peak RSS (operator with");
        assert!(!shared.met, "{shared:?}");
        // The p99 target is only for runs at 100/s.
        assert!(
            !r.targets
                .iter()
                .any(|t| t.name.starts_with("controller 10000") && t.name.contains("p99"))
        );
        // A slower p99 misses.
        r.controller_runs[0].apply_to_ready_minus_operation.p99_ms = 251.0;
        r.evaluate(0.5, 600.0);
        assert!(!target(&r, "controller 1000 100/s: apply→Ready").met);
        assert!(target(&r, "controller 1000 100/s: all Ready").met);
    }

    #[test]
    fn table_has_a_column_per_run() {
        let r = Report {
            runs: vec![
                Run {
                    resources: 100,
                    ..Default::default()
                },
                Run {
                    resources: 1000,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let t = r.table();
        let first = t.lines().next().unwrap();
        assert!(first.contains("100") && first.contains("1000"), "{t}");
        assert!(t.lines().all(|l| l.matches('│').count() == 2), "{t}");
    }
}
