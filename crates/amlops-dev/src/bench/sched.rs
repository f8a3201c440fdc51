//! A controller-like work queue for the benchmark: each resource is reconciled when due, at
//! most once at a time, by at most `concurrency` concurrent reconciles; every outcome's
//! requeue is honoured (the steady state through the [`ResyncPolicy`]), errors back off
//! with Azure's `Retry-After` or exponentially. It records what the report needs.
//!
//! The resources are of the four kinds: an [`Object`] is one of them with its engine's
//! desired state, a [`State`] its saved status, and [`Object::reconcile`] calls that kind's
//! engine; the queue itself does not know the kinds apart.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use amlops::azure::ArmClient;
use amlops::crd::{AzureMlExtensionStatus, ClusterStatus, KubernetesComputeStatus, Phase};
use amlops::engine::azureml_extension::{self, ExtensionDesired};
use amlops::engine::kubernetes_compute::{self, ComputeDesired};
use amlops::engine::listing::WorkspaceListings;
use amlops::engine::resync::ResyncPolicy;
use amlops::engine::verdict::Verdict;
use amlops::engine::{Desired, Engine, EngineError, ObjKey};
use amlops_testkit::MemoryStore;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::world::KIND;

/// One resource of any of the four kinds, as its engine takes it.
#[derive(Clone, Debug)]
pub enum Object {
    /// An `InferenceCluster` or a `ClusterAttachment`.
    Legacy(Box<Desired>),
    /// An `AzureMLExtension`.
    Extension(Box<ExtensionDesired>),
    /// A `KubernetesCompute`.
    Compute(Box<ComputeDesired>),
}

/// The saved status of an [`Object`], of the matching kind.
#[derive(Clone, Debug)]
pub enum State {
    /// Of an `InferenceCluster` or a `ClusterAttachment`.
    Legacy(ClusterStatus),
    /// Of an `AzureMLExtension`.
    Extension(AzureMlExtensionStatus),
    /// Of a `KubernetesCompute`.
    Compute(KubernetesComputeStatus),
}

/// What one reconcile of any kind returned.
pub struct Step {
    /// The status now saved.
    pub state: State,
    /// When to reconcile again (`None`: only on a change).
    pub requeue: Option<Duration>,
    /// Cleanup finished.
    pub finished: bool,
    /// The verdict on an Azure failure this reconcile met.
    pub verdict: Option<Verdict>,
}

impl Object {
    /// Kind name (`InferenceCluster`, `ClusterAttachment`, `AzureMLExtension`,
    /// `KubernetesCompute`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Legacy(d) if d.is_create() => "InferenceCluster",
            Self::Legacy(_) => "ClusterAttachment",
            Self::Extension(_) => azureml_extension::KIND,
            Self::Compute(_) => kubernetes_compute::KIND,
        }
    }

    /// Identity of the CR.
    pub fn key(&self) -> ObjKey {
        match self {
            Self::Legacy(d) => d.key(),
            Self::Extension(d) => d.key.clone(),
            Self::Compute(d) => d.key.clone(),
        }
    }

    /// The status of a resource just applied.
    pub fn initial(&self) -> State {
        match self {
            Self::Legacy(_) => State::Legacy(ClusterStatus::default()),
            Self::Extension(_) => State::Extension(AzureMlExtensionStatus::default()),
            Self::Compute(_) => State::Compute(KubernetesComputeStatus::default()),
        }
    }

    /// One reconcile through the kind's engine, from `state` (of the same kind), with
    /// [`KIND`] set so that the ARM requests it makes are counted for its kind.
    ///
    /// # Errors
    /// The engine's (Kubernetes side only).
    pub async fn reconcile(
        &self,
        engine: &Engine<MemoryStore>,
        state: State,
    ) -> Result<Step, EngineError> {
        let kind = self.kind();
        KIND.scope(kind, async move {
            Ok(match (self, state) {
                (Self::Legacy(d), State::Legacy(st)) => {
                    let o = engine.reconcile(d, st).await?;
                    Step {
                        state: State::Legacy(o.status),
                        requeue: o.requeue,
                        finished: o.finished,
                        verdict: o.verdict,
                    }
                }
                (Self::Extension(d), State::Extension(st)) => {
                    let o = engine.reconcile_extension(d, st).await?;
                    Step {
                        state: State::Extension(o.status),
                        requeue: o.requeue,
                        finished: o.finished,
                        verdict: o.verdict,
                    }
                }
                (Self::Compute(d), State::Compute(st)) => {
                    let o = engine.reconcile_compute(d, st).await?;
                    Step {
                        state: State::Compute(o.status),
                        requeue: o.requeue,
                        finished: o.finished,
                        verdict: o.verdict,
                    }
                }
                // The scheduler only pairs an object with its own status.
                (_, state) => Step {
                    state,
                    requeue: None,
                    finished: false,
                    verdict: None,
                },
            })
        })
        .await
    }
}

fn condition(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

impl State {
    /// The phase for the report's transitions: the legacy kinds' `status.phase`; for the
    /// Kubernetes-path kinds, which have none, the condition that holds (`Ready`, `Stalled`
    /// or `Reconciling`). `None`: nothing recorded yet.
    pub fn phase(&self) -> Option<&'static str> {
        let of = |c: &[Condition]| {
            ["Ready", "Stalled", "Reconciling"]
                .into_iter()
                .find(|t| condition(c, t))
        };
        match self {
            Self::Legacy(s) => s.phase.map(Phase::as_str),
            Self::Extension(s) => of(&s.conditions),
            Self::Compute(s) => of(&s.conditions),
        }
    }

    /// URL of the operation in flight.
    pub fn operation(&self) -> Option<&str> {
        match self {
            Self::Legacy(s) => s.operation.as_ref(),
            Self::Extension(s) => s.operation.as_ref(),
            Self::Compute(s) => s.operation.as_ref(),
        }
        .map(|o| o.url.as_str())
    }

    /// Ready, nothing in flight.
    pub fn is_ready(&self) -> bool {
        self.phase() == Some("Ready") && self.operation().is_none()
    }
}

impl Step {
    /// Whether this is the steady state the resync policy governs: Ready, nothing in
    /// flight, and a resync asked for (as [`ResyncPolicy::is_steady`] for every kind).
    pub fn is_steady(&self) -> bool {
        self.state.is_ready() && !self.finished && self.requeue.is_some_and(|r| !r.is_zero())
    }
}

/// One resource under the scheduler.
pub struct Tracked {
    /// What the user asked for.
    pub object: Object,
    /// The status saved by the last reconcile.
    pub state: State,
    /// Cleanup finished.
    pub finished: bool,
    /// Next reconcile (None: not queued).
    due: Option<Instant>,
    inflight: bool,
    /// Woken while in flight: reconcile again right after.
    woken: bool,
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
    pub fn new(object: Object, now: Instant) -> Self {
        Self {
            state: object.initial(),
            object,
            finished: false,
            due: None,
            inflight: false,
            woken: false,
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
        self.state.is_ready()
    }

    /// Kind name.
    pub fn kind(&self) -> &'static str {
        self.object.kind()
    }
}

/// One phase transition and the operator's share of its latency.
#[derive(Clone, Debug)]
pub struct Transition {
    /// Kind of the resource.
    pub kind: &'static str,
    /// Phase before (`None`: just applied), see [`State::phase`].
    pub from: Option<&'static str>,
    /// Phase after (`None`: cleanup finished).
    pub to: Option<&'static str>,
    /// From the moment the transition became possible to the status that records it.
    pub overhead: Duration,
}

/// What the scheduler measured.
#[derive(Clone, Debug, Default)]
pub struct SchedStats {
    /// Reconciles run.
    pub reconciles: u64,
    /// Reconciles run, by kind.
    pub reconciles_by_kind: BTreeMap<&'static str, u64>,
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
    /// The `AzureMLExtension`s by (cluster id lowercase, extension name): their index.
    extensions: HashMap<(String, String), usize>,
    /// For an extension's index, the `KubernetesCompute`s that attach through it.
    dependents: HashMap<usize, Vec<usize>>,
}

type Done = (usize, Instant, Instant, Result<Step, EngineError>);

/// How often [`Scheduler::run_until`] looks at its `done` condition when nothing else
/// wakes it.
const TICK: Duration = Duration::from_millis(50);

/// When [`Scheduler::run_until`] wakes up if no reconcile ends first: at the next due time
/// or the deadline only while it `can_start` a reconcile (a worker free, still running).
/// At full concurrency, or once `done` held or the deadline passed, only a reconcile's end
/// can change anything: a due time already past must not wake it, or the loop spins — and
/// with it `done`, a walk over every resource — at full CPU for as long as the queue is
/// backlogged (~30 s of the main thread's CPU while converging 10,000).
fn wake_at(now: Instant, next_due: Option<Instant>, can_start: bool, deadline: Instant) -> Instant {
    let tick = now + TICK;
    if !can_start {
        return tick;
    }
    next_due
        .map_or(tick, |d| d.min(tick))
        .min(deadline)
        .max(now)
}

impl Scheduler {
    /// A scheduler over `engine` with no resources.
    pub fn new(engine: Arc<Engine<MemoryStore>>, concurrency: usize) -> Self {
        Self {
            engine,
            items: Vec::new(),
            heap: BinaryHeap::new(),
            concurrency: concurrency.max(1),
            stats: SchedStats::default(),
            extensions: HashMap::new(),
            dependents: HashMap::new(),
        }
    }

    /// The ARM client of the engine.
    pub fn arm(&self) -> &ArmClient {
        &self.engine.arm
    }

    /// Applies a resource at `at` (its first reconcile is due then). A `KubernetesCompute`
    /// applied after the `AzureMLExtension` it attaches through is woken by that extension's
    /// changes, as `amlops run`'s compute controller is by its watch of the extensions.
    pub fn apply_at(&mut self, object: Object, at: Instant) {
        let idx = self.items.len();
        match &object {
            Object::Extension(d) => {
                if let Ok(c) = &d.cluster {
                    let key = (c.to_string().to_ascii_lowercase(), d.extension_name.clone());
                    self.extensions.insert(key, idx);
                }
            }
            Object::Compute(d) => {
                if let Ok(t) = &d.target {
                    let key = (
                        t.cluster.to_string().to_ascii_lowercase(),
                        t.extension.clone(),
                    );
                    if let Some(e) = self.extensions.get(&key) {
                        self.dependents.entry(*e).or_default().push(idx);
                    }
                }
            }
            Object::Legacy(_) => {}
        }
        self.items.push(Tracked::new(object, at));
        self.schedule(idx, at);
    }

    /// The workspace listings the engine shares between its reconciles.
    pub fn listings(&self) -> &WorkspaceListings {
        &self.engine.config.listings
    }

    /// The store the engine counts the resources of each subscription in.
    pub fn store(&self) -> &MemoryStore {
        &self.engine.store
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
                    let object = t.object.clone();
                    let st = t.state.clone();
                    inflight += 1;
                    set.spawn(async move {
                        let t0 = Instant::now();
                        let r = object.reconcile(&engine, st).await;
                        (idx, t0, Instant::now(), r)
                    });
                }
            }
            let can_start = !satisfied && now < deadline && inflight < self.concurrency;
            let wake = wake_at(now, self.heap.peek().map(|r| r.0.0), can_start, deadline);
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
                                self.engine.store.remove_claim(&self.items[idx].object.key());
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
        let mut wake = false;
        let t = &mut self.items[idx];
        *self
            .stats
            .reconciles_by_kind
            .entry(t.object.kind())
            .or_default() += 1;
        t.inflight = false;
        let next = match result {
            Ok(o) => {
                t.errors = 0;
                let before = (t.state.phase(), t.state.operation().map(str::to_string));
                // The engine paces the steady state itself (its config carries the policy
                // and the time scale), as in `amlops run`.
                if o.is_steady() {
                    self.stats.steady_reconciles += 1;
                    t.rounds += 1;
                }
                if let Some(v) = &o.verdict {
                    *self.stats.errors.entry(v.label()).or_default() += 1;
                }
                let requeue = o.requeue;
                let changed =
                    before.0 != o.state.phase() || before.1.as_deref() != o.state.operation();
                if changed && matches!(t.object, Object::Extension(_)) {
                    wake = true;
                }
                t.state = o.state;
                t.finished = o.finished;
                let to = if t.finished { None } else { t.state.phase() };
                if to != before.0 {
                    self.stats.transitions.push(Transition {
                        kind: t.object.kind(),
                        from: before.0,
                        to,
                        overhead: t1.saturating_duration_since(t.pending_since),
                    });
                    t.pending_since = t1;
                }
                let op = t.state.operation().map(str::to_string);
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
        let t = &mut self.items[idx];
        let next = if std::mem::take(&mut t.woken) && !t.finished {
            Some(Duration::ZERO)
        } else {
            next
        };
        if let Some(wait) = next {
            self.schedule(idx, t1 + wait);
        }
        if wake {
            self.wake_dependents(idx, t1);
        }
    }

    /// Queues the computes of extension `idx` now (its status changed): one in flight
    /// right after it ends (it may have read the extension before the change); one already
    /// due keeps its turn.
    fn wake_dependents(&mut self, idx: usize, now: Instant) {
        let Some(deps) = self.dependents.get(&idx).cloned() else {
            return;
        };
        for d in deps {
            let t = &mut self.items[d];
            if t.finished || t.due.is_some_and(|due| due <= now) {
                continue;
            }
            if t.inflight {
                t.woken = true;
            } else {
                self.schedule(d, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_for_a_due_reconcile_only_when_one_can_start() {
        let now = Instant::now();
        let ms = |m: u64| now + Duration::from_millis(m);
        let past = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        let deadline = ms(1_000);
        for (next_due, can_start, want) in [
            // A worker free: the next due time, at most a tick away.
            (Some(ms(10)), true, ms(10)),
            (Some(ms(500)), true, ms(50)),
            (None, true, ms(50)),
            // Full, done or past the deadline: a backlog due long ago waits for a
            // reconcile to end (or the tick), it does not spin.
            (Some(past), false, ms(50)),
            (Some(ms(10)), false, ms(50)),
            (None, false, ms(50)),
        ] {
            assert_eq!(
                wake_at(now, next_due, can_start, deadline),
                want,
                "{next_due:?} {can_start}"
            );
        }
        // The deadline wakes a scheduler that could start reconciles.
        assert_eq!(wake_at(now, Some(ms(40)), true, ms(20)), ms(20));
        // Never in the past.
        assert_eq!(wake_at(now, Some(ms(40)), true, past), now);
    }
}
