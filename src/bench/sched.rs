//! A controller-like work queue for the benchmark: each resource is reconciled when due, at
//! most once at a time, by at most `concurrency` concurrent reconciles; every outcome's
//! requeue is honoured (the steady state through the [`ResyncPolicy`]), errors back off
//! with Azure's `Retry-After` or exponentially. It records what the report needs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::azure::ArmClient;
use crate::crd::{ClusterStatus, Phase};
use crate::engine::resync::ResyncPolicy;
use crate::engine::{Desired, Engine, EngineError, MemoryStore, Outcome};

/// One resource under the scheduler.
pub struct Tracked {
    /// What the user asked for.
    pub desired: Desired,
    /// The status saved by the last reconcile.
    pub status: ClusterStatus,
    /// Cleanup finished.
    pub finished: bool,
    /// Next reconcile (None: not queued).
    due: Option<Instant>,
    inflight: bool,
    errors: u32,
    /// When the next phase transition became possible (apply, or the earliest moment the
    /// operation started last could have finished).
    pending_since: Instant,
    /// When it was applied.
    pub applied_at: Instant,
    /// First time it was Ready with nothing in flight.
    pub ready_at: Option<Instant>,
    /// Operations (LROs) started since apply.
    pub operations: u32,
    /// Steady-state resyncs so far (also the jitter seed).
    pub rounds: u64,
}

impl Tracked {
    /// A resource applied now.
    pub fn new(desired: Desired, now: Instant) -> Self {
        Self {
            desired,
            status: ClusterStatus::default(),
            finished: false,
            due: None,
            inflight: false,
            errors: 0,
            pending_since: now,
            applied_at: now,
            ready_at: None,
            operations: 0,
            rounds: 0,
        }
    }

    /// Ready, nothing in flight.
    pub fn is_ready(&self) -> bool {
        self.status.phase == Some(Phase::Ready) && self.status.operation.is_none()
    }
}

/// One phase transition and the operator's share of its latency.
#[derive(Clone, Debug)]
pub struct Transition {
    /// Phase before (`None`: just applied).
    pub from: Option<Phase>,
    /// Phase after (`None`: cleanup finished).
    pub to: Option<Phase>,
    /// From the moment the transition became possible to the status that records it.
    pub overhead: Duration,
}

/// What the scheduler measured.
#[derive(Clone, Debug, Default)]
pub struct SchedStats {
    /// Reconciles run.
    pub reconciles: u64,
    /// Reconciles that ended in the steady state.
    pub steady_reconciles: u64,
    /// Reconciles that returned an error, by category.
    pub errors: BTreeMap<&'static str, u64>,
    /// Wall time of each reconcile call.
    pub reconcile_wall: Vec<Duration>,
    /// Delay between a reconcile being due and starting (queueing at the concurrency limit).
    pub queue_delay: Vec<Duration>,
    /// Phase transitions.
    pub transitions: Vec<Transition>,
}

/// How requeues are computed.
#[derive(Clone, Debug)]
pub struct Requeue {
    /// The steady-state policy (intervals in emulated time).
    pub policy: ResyncPolicy,
    /// Emulated seconds per real second: steady intervals are divided by it.
    pub time_scale: f64,
    /// Emulated operation time (to date when an operation could have finished).
    pub op_duration: Duration,
    /// First error backoff (doubles, capped at 64 ×), in real time.
    pub error_base: Duration,
}

/// The queue and the resources.
pub struct Scheduler {
    engine: Arc<Engine<MemoryStore>>,
    /// The resources.
    pub items: Vec<Tracked>,
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    concurrency: usize,
    /// Measurements since the last [`Scheduler::take_stats`].
    pub stats: SchedStats,
    /// Ready resources per subscription (for the policy).
    subs: Vec<String>,
}

type Done = (usize, Instant, Instant, Result<Outcome, EngineError>);

impl Scheduler {
    /// A scheduler over `engine` with no resources.
    pub fn new(engine: Arc<Engine<MemoryStore>>, concurrency: usize) -> Self {
        Self {
            engine,
            items: Vec::new(),
            heap: BinaryHeap::new(),
            concurrency: concurrency.max(1),
            stats: SchedStats::default(),
            subs: Vec::new(),
        }
    }

    /// The ARM client of the engine.
    pub fn arm(&self) -> &ArmClient {
        &self.engine.arm
    }

    /// Applies a resource at `at` (its first reconcile is due then).
    pub fn apply_at(&mut self, desired: Desired, at: Instant) {
        self.subs
            .push(desired.workspace.subscription_id.to_ascii_lowercase());
        self.items.push(Tracked::new(desired, at));
        let idx = self.items.len() - 1;
        self.schedule(idx, at);
    }

    /// Queues resource `idx` for `at` (replacing an earlier due time).
    pub fn schedule(&mut self, idx: usize, at: Instant) {
        self.items[idx].due = Some(at);
        self.heap.push(Reverse((at, idx)));
    }

    /// Returns the measurements and starts new ones.
    pub fn take_stats(&mut self) -> SchedStats {
        std::mem::take(&mut self.stats)
    }

    /// Runs until `done(items)` holds (then lets in-flight reconciles finish) or `deadline`
    /// passes. Returns whether `done` held.
    pub async fn run_until(
        &mut self,
        requeue: &Requeue,
        deadline: Instant,
        done: impl Fn(&[Tracked], Instant) -> bool,
    ) -> bool {
        let mut set: JoinSet<Done> = JoinSet::new();
        let mut inflight = 0usize;
        loop {
            let now = Instant::now();
            let satisfied = done(&self.items, now);
            if satisfied || now >= deadline {
                if inflight == 0 {
                    return satisfied;
                }
            } else {
                while inflight < self.concurrency {
                    let Some(Reverse((due, idx))) = self.heap.peek().copied() else {
                        break;
                    };
                    if due > now {
                        break;
                    }
                    self.heap.pop();
                    let t = &mut self.items[idx];
                    if t.due != Some(due) || t.inflight || t.finished {
                        continue;
                    }
                    t.due = None;
                    t.inflight = true;
                    self.stats
                        .queue_delay
                        .push(now.saturating_duration_since(due));
                    let engine = self.engine.clone();
                    let d = t.desired.clone();
                    let st = t.status.clone();
                    inflight += 1;
                    set.spawn(async move {
                        let t0 = Instant::now();
                        let r = engine.reconcile(&d, st).await;
                        (idx, t0, Instant::now(), r)
                    });
                }
            }
            let next_due = self
                .heap
                .peek()
                .map(|r| r.0.0)
                .unwrap_or(now + Duration::from_millis(50));
            let wake = next_due
                .min(now + Duration::from_millis(50))
                .min(deadline.max(now));
            tokio::select! {
                Some(joined) = set.join_next(), if inflight > 0 => {
                    inflight -= 1;
                    match joined {
                        Ok(done) => {
                            let idx = done.0;
                            let finished_before = self.items[idx].finished;
                            self.complete(done, requeue);
                            if !finished_before && self.items[idx].finished {
                                // It no longer shares its subscription's read budget.
                                self.engine.store.remove_claim(&self.items[idx].desired.key());
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "reconcile task failed"),
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    fn complete(&mut self, done: Done, rq: &Requeue) {
        let (idx, t0, t1, result) = done;
        self.stats.reconciles += 1;
        self.stats.reconcile_wall.push(t1 - t0);
        let t = &mut self.items[idx];
        t.inflight = false;
        let next = match result {
            Ok(o) => {
                t.errors = 0;
                let before = (
                    t.status.phase,
                    t.status.operation.as_ref().map(|o| o.url.clone()),
                );
                // The engine paces the steady state itself (its config carries the policy
                // and the time scale), as in `amlops run`.
                if ResyncPolicy::is_steady(&o) {
                    self.stats.steady_reconciles += 1;
                    t.rounds += 1;
                }
                if let Some(v) = &o.verdict {
                    *self.stats.errors.entry(v.label()).or_default() += 1;
                }
                let requeue = o.requeue;
                t.status = o.status;
                t.finished = o.finished;
                let to = if t.finished { None } else { t.status.phase };
                if to != before.0 {
                    self.stats.transitions.push(Transition {
                        from: before.0,
                        to,
                        overhead: t1.saturating_duration_since(t.pending_since),
                    });
                    t.pending_since = t1;
                }
                let op = t.status.operation.as_ref().map(|o| o.url.clone());
                if op.is_some() && op != before.1 {
                    // The operation cannot have finished before this reconcile began plus
                    // Azure's operation time: count from there (an upper bound of overhead).
                    t.operations += 1;
                    t.pending_since = t0 + rq.op_duration;
                }
                if t.ready_at.is_none() && t.is_ready() {
                    t.ready_at = Some(t1);
                }
                if t.finished { None } else { requeue }
            }
            Err(e) => {
                *self.stats.errors.entry(e.category()).or_default() += 1;
                t.errors += 1;
                Some(rq.error_base * 2u32.saturating_pow(t.errors.min(6) - 1))
            }
        };
        if let Some(wait) = next {
            self.schedule(idx, t1 + wait);
        }
    }
}
