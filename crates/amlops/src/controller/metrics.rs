//! Prometheus metrics of `amlops run` (names and labels are the contract of docs/metrics.md).
//! Every label value comes from a bounded set: kinds, results, static ARM operation names,
//! status classes and phases — never resource names or error texts.

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
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
struct ResourceLabel {
    kind: String,
    namespace: String,
    name: String,
}

impl ResourceLabel {
    /// From a kind and a `namespace/name` key.
    fn of(kind: &str, key: &str) -> Self {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        Self {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
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
    tls_expiry: Family<ResourceLabel, Gauge>,
    leader: Gauge<i64, AtomicI64>,
    /// What each cached resource counts in `resources` and `inflight`, by (kind,
    /// namespace/name): the gauges move one object at a time as the watch reports it, so a
    /// scrape walks nothing.
    counted: Arc<Mutex<HashMap<(&'static str, String), ResourceState>>>,
}

/// What one resource counts in the per-phase and in-flight gauges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceState {
    /// `status.phase` (`Pending` when there is none yet).
    pub phase: String,
    /// `status.operation` is set: an Azure operation is being polled.
    pub inflight: bool,
    /// `status.tls.notAfter` of the served certificate, in seconds since the Unix epoch.
    pub tls_not_after: Option<i64>,
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
        let tls_expiry = Family::<ResourceLabel, Gauge>::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the certificate the resource's scoring endpoint serves (Unix seconds)",
            tls_expiry.clone(),
        );
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
            tls_expiry,
            leader,
            counted: Arc::default(),
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

    fn counted(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, String), ResourceState>> {
        self.counted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves `state` of one resource into (or out of) the gauges.
    fn count(&self, kind: &'static str, state: &ResourceState, delta: i64) {
        let labels = KindPhase {
            kind: kind.into(),
            phase: state.phase.clone(),
        };
        let left = self.resources.get_or_create(&labels).inc_by(delta) + delta;
        if left <= 0 {
            // A phase no resource is in any more is not exported (no stale series).
            self.resources.remove(&labels);
        }
        if state.inflight {
            self.inflight
                .get_or_create(&KindLabel { kind: kind.into() })
                .inc_by(delta);
        }
    }

    /// One resource was listed, added or changed (`Some`), or deleted (`None`): the
    /// per-phase and in-flight gauges follow, with no walk of the other resources.
    pub fn resource(&self, kind: &'static str, name: &str, state: Option<ResourceState>) {
        let mut counted = self.counted();
        let key = (kind, name.to_string());
        let before = match &state {
            Some(s) => counted.insert(key, s.clone()),
            None => counted.remove(&key),
        };
        if before == state {
            return;
        }
        let label = ResourceLabel::of(kind, name);
        match state.as_ref().and_then(|s| s.tls_not_after) {
            Some(t) => {
                self.tls_expiry.get_or_create(&label).set(t);
            }
            None => {
                self.tls_expiry.remove(&label);
            }
        }
        // Every kind's in-flight gauge is exported, 0 included.
        drop(
            self.inflight
                .get_or_create(&KindLabel { kind: kind.into() }),
        );
        if let Some(b) = &before {
            self.count(kind, b, -1);
        }
        if let Some(s) = &state {
            self.count(kind, s, 1);
        }
    }

    /// After a re-list: forgets the resources of `kind` that `live` no longer has
    /// (deleted while the watch was down: no `Delete` event came for them).
    pub fn retain_resources(&self, kind: &'static str, live: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self
            .counted()
            .keys()
            .filter(|(k, name)| *k == kind && !live(name))
            .map(|(_, name)| name.clone())
            .collect();
        for name in gone {
            self.resource(kind, &name, None);
        }
    }

    /// Forgets every resource (the leadership term ended: its caches are gone).
    pub fn clear_resources(&self) {
        self.counted().clear();
        self.resources.clear();
        self.inflight.clear();
        self.tls_expiry.clear();
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
        m.resource("InferenceCluster", "ml/a", Some(state("Ready", false)));
        m.resource("ClusterAttachment", "ml/b", Some(state("Attaching", true)));
        m.resource(
            "ClusterAttachment",
            "ml/c",
            Some(ResourceState {
                tls_not_after: Some(1_800_000_000),
                ..state("Ready", false)
            }),
        );
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
            "amlops_tls_certificate_expiry_timestamp_seconds{kind=\"ClusterAttachment\",namespace=\"ml\",name=\"c\"} 1800000000",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    fn state(phase: &str, inflight: bool) -> ResourceState {
        ResourceState {
            phase: phase.into(),
            inflight,
            tls_not_after: None,
        }
    }

    fn gauge(text: &str, series: &str) -> Option<i64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The gauges move one resource at a time: a change moves it between phases, a
    /// repeated event changes nothing, a deletion and a re-list forget it, and a phase no
    /// resource is in any more is not exported.
    #[test]
    fn gauges_follow_each_resource() {
        let m = Metrics::new();
        let ic = "InferenceCluster";
        let ready = r#"amlops_resources{kind="InferenceCluster",phase="Ready"}"#;
        let creating = r#"amlops_resources{kind="InferenceCluster",phase="Creating"}"#;
        let inflight = r#"amlops_inflight_operations{kind="InferenceCluster"}"#;
        m.resource(ic, "ml/a", Some(state("Creating", true)));
        m.resource(ic, "ml/b", Some(state("Creating", true)));
        m.resource(ic, "ml/b", Some(state("Creating", true)));
        let t = m.encode();
        assert_eq!(
            (gauge(&t, creating), gauge(&t, inflight)),
            (Some(2), Some(2)),
            "{t}"
        );
        m.resource(ic, "ml/a", Some(state("Ready", false)));
        let t = m.encode();
        assert_eq!(
            (gauge(&t, creating), gauge(&t, ready), gauge(&t, inflight)),
            (Some(1), Some(1), Some(1)),
            "{t}"
        );
        m.resource(
            ic,
            "ml/b",
            Some(ResourceState {
                tls_not_after: Some(1_900_000_000),
                ..state("Creating", true)
            }),
        );
        let expiry = r#"amlops_tls_certificate_expiry_timestamp_seconds{kind="InferenceCluster",namespace="ml",name="b"}"#;
        assert_eq!(gauge(&m.encode(), expiry), Some(1_900_000_000));
        m.resource(ic, "ml/b", None);
        let t = m.encode();
        assert_eq!(gauge(&t, expiry), None, "forgotten with the resource: {t}");
        assert_eq!(gauge(&t, creating), None, "no stale phase: {t}");
        assert_eq!(gauge(&t, inflight), Some(0), "{t}");
        m.resource(ic, "ml/c", Some(state("Ready", false)));
        m.retain_resources(ic, |name| name == "ml/c");
        assert_eq!(gauge(&m.encode(), ready), Some(1));
        m.clear_resources();
        assert_eq!(gauge(&m.encode(), ready), None);
    }
}
