//! Prometheus metrics of `amlops run` (names and labels are the contract of docs/metrics.md).
//! Every label value comes from a bounded set: kinds, results, static ARM operation names,
//! status classes and phases — never resource names or error texts.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::azure::{ArmObserver, Attempt};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindResult {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindPhase {
    kind: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpClass {
    operation: String,
    status_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    operation: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Outcome of one reconcile, the `result` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcileResult {
    /// Converged (or nothing to do until the next resync).
    Success,
    /// Waiting for Azure: requeued.
    Requeue,
    /// Failed; retried with backoff.
    Error,
    /// Needs a person (`Stalled=True`).
    Stalled,
}

impl ReconcileResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Requeue => "requeue",
            Self::Error => "error",
            Self::Stalled => "stalled",
        }
    }
}

/// Every metric, registered once; clones share them.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Family<KindResult, Counter>,
    reconcile_duration: HistogramFamily<KindLabel>,
    arm_requests: Family<OpClass, Counter>,
    arm_duration: HistogramFamily<OpLabel>,
    arm_throttled: Family<OpLabel, Counter>,
    inflight: Family<KindLabel, Gauge>,
    resources: Family<KindPhase, Gauge>,
    leader: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn reconcile_buckets() -> Histogram {
    // 5 ms … ~20 s: a reconcile is a few ARM round trips, never an Azure operation.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

fn arm_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 12))
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("amlops");
        let reconciles = Family::<KindResult, Counter>::default();
        let reconcile_duration: HistogramFamily<KindLabel> =
            Family::new_with_constructor(reconcile_buckets);
        let arm_requests = Family::<OpClass, Counter>::default();
        let arm_duration: HistogramFamily<OpLabel> = Family::new_with_constructor(arm_buckets);
        let arm_throttled = Family::<OpLabel, Counter>::default();
        let inflight = Family::<KindLabel, Gauge>::default();
        let resources = Family::<KindPhase, Gauge>::default();
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "reconciles",
            "Reconciles finished, by kind and result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile (not of the Azure operation it starts)",
            reconcile_duration.clone(),
        );
        registry.register(
            "arm_requests",
            "ARM requests by operation and status class",
            arm_requests.clone(),
        );
        registry.register(
            "arm_request_duration_seconds",
            "ARM request latency",
            arm_duration.clone(),
        );
        registry.register(
            "arm_throttled",
            "ARM answers 429 (amlops waited Retry-After)",
            arm_throttled.clone(),
        );
        registry.register(
            "inflight_operations",
            "Long-running Azure operations being polled",
            inflight.clone(),
        );
        registry.register("resources", "Resources per phase", resources.clone());
        registry.register(
            "leader",
            "1 on the replica holding the Lease, 0 elsewhere",
            leader.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconciles,
            reconcile_duration,
            arm_requests,
            arm_duration,
            arm_throttled,
            inflight,
            resources,
            leader,
        }
    }

    /// Records one finished reconcile.
    pub fn reconciled(&self, kind: &str, result: ReconcileResult, took: Duration) {
        self.reconciles
            .get_or_create(&KindResult {
                kind: kind.into(),
                result: result.as_str().into(),
            })
            .inc();
        self.reconcile_duration
            .get_or_create(&KindLabel { kind: kind.into() })
            .observe(took.as_secs_f64());
    }

    /// Leadership changed.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Replaces the per-phase and in-flight gauges with a fresh count, `(kind, phase,
    /// operation in flight)` per resource.
    pub fn set_resources<'a>(&self, items: impl IntoIterator<Item = (&'a str, &'a str, bool)>) {
        self.resources.clear();
        self.inflight.clear();
        for kind in ["InferenceCluster", "ClusterAttachment"] {
            self.inflight
                .get_or_create(&KindLabel { kind: kind.into() })
                .set(0);
        }
        for (kind, phase, inflight) in items {
            self.resources
                .get_or_create(&KindPhase {
                    kind: kind.into(),
                    phase: phase.into(),
                })
                .inc();
            if inflight {
                self.inflight
                    .get_or_create(&KindLabel { kind: kind.into() })
                    .inc();
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Reconciles so far, every kind and result, as `/metrics` exposes them.
    pub fn reconciles_total(&self) -> u64 {
        sum_counter(&self.encode(), "amlops_reconciles_total")
    }
}

/// Sum of every series of a counter in a Prometheus text exposition.
fn sum_counter(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

impl ArmObserver for Metrics {
    fn on_attempt(&self, attempt: &Attempt) {
        // Dots in the client's operation names become underscores, the Prometheus habit.
        let operation = attempt.operation.replace('.', "_");
        self.arm_requests
            .get_or_create(&OpClass {
                operation: operation.clone(),
                status_class: attempt.status.as_str().into(),
            })
            .inc();
        self.arm_duration
            .get_or_create(&OpLabel {
                operation: operation.clone(),
            })
            .observe(attempt.duration.as_secs_f64());
        if attempt.throttled {
            self.arm_throttled
                .get_or_create(&OpLabel { operation })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::StatusClass;

    #[test]
    fn sums_every_series_of_one_counter() {
        let text = "# TYPE amlops_reconciles_total counter\n\
                    amlops_reconciles_total{kind=\"InferenceCluster\",result=\"success\"} 7\n\
                    amlops_reconciles_total{kind=\"ClusterAttachment\",result=\"requeue\"} 3\n\
                    amlops_reconciles_total_created 1700000000.0\n\
                    amlops_reconcile_errors_total{kind=\"InferenceCluster\"} 2\n";
        assert_eq!(sum_counter(text, "amlops_reconciles_total"), 10);
        assert_eq!(sum_counter(text, "amlops_missing_total"), 0);
    }

    #[test]
    fn exposes_the_documented_names() {
        let m = Metrics::new();
        m.reconciled(
            "InferenceCluster",
            ReconcileResult::Stalled,
            Duration::from_millis(12),
        );
        m.on_attempt(&Attempt {
            operation: "compute.get",
            method: "GET",
            status: StatusClass::Throttled,
            duration: Duration::from_millis(3),
            throttled: true,
        });
        m.set_resources([
            ("InferenceCluster", "Ready", false),
            ("ClusterAttachment", "Attaching", true),
        ]);
        m.set_leader(true);
        let text = m.encode();
        for needle in [
            "amlops_reconciles_total{kind=\"InferenceCluster\",result=\"stalled\"} 1",
            "amlops_reconcile_duration_seconds_count{kind=\"InferenceCluster\"} 1",
            "amlops_arm_requests_total{operation=\"compute_get\",status_class=\"429\"} 1",
            "amlops_arm_throttled_total{operation=\"compute_get\"} 1",
            "amlops_arm_request_duration_seconds_count{operation=\"compute_get\"} 1",
            "amlops_resources{kind=\"InferenceCluster\",phase=\"Ready\"} 1",
            "amlops_inflight_operations{kind=\"ClusterAttachment\"} 1",
            "amlops_inflight_operations{kind=\"InferenceCluster\"} 0",
            "amlops_leader 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn a_recount_forgets_phases_no_longer_present() {
        let m = Metrics::new();
        m.set_resources([("InferenceCluster", "Creating", true)]);
        m.set_resources([("InferenceCluster", "Ready", false)]);
        let text = m.encode();
        assert!(!text.contains("phase=\"Creating\""), "{text}");
    }
}
