//! Adaptive steady-state resync: how long a Ready resource waits before its next read.
//!
//! A Ready resource is looked at again every [`ResyncPolicy::base`] (10 minutes, jittered),
//! with one `GET compute` or `GET extension` (the engine reads the AKS cluster only when its
//! node count is not known to match the spec), or, for the legacy kinds, a share of their
//! workspace's listing ([`super::listing`]). ARM limits reads per subscription and principal — since 2024
//! with a token bucket refilled at 25 reads per second, before with 12,000 reads per hour
//! (<https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling>) — so thousands of resources in one subscription could spend the
//! whole allowance on resyncs. The policy stretches the interval so that the steady-state
//! read rate of a subscription stays under a configurable share of the read refill of the
//! model the subscription is under, however many resources it holds, and slows down further
//! only when ARM's headers show the read bucket actually being drained (by another tool
//! sharing the principal, or other principals on the global bucket):
//!
//! `resources` counts every resource of the subscription, of all four kinds, and
//! `resources × reads_per_resync` is what one round of their resyncs costs
//! ([`super::listing::resync_demand`]): every engine paces a subscription alike.
//!
//! ```text
//! floor    = resources × reads_per_resync / (share × read refill per second)
//! nominal  = min(x × slowdown(fill), x + 1 h),   x = max(base, floor / (1 − jitter))
//! interval = nominal × (1 + jitter × u),   u ∈ [−1, 1] from the seed
//! slowdown = 1 when fill ≥ low_water, else min(max_slowdown, low_water / fill)
//! ```
//!
//! `fill` is how full ARM's read bucket has been lately, relative to its size (remaining /
//! 250 under token buckets, remaining / 12,000 under the hourly model), averaged over the
//! time the bucket takes to refill ([`crate::azure::BucketLevel::fill`]): 249 reads left
//! in a 250-token bucket is a full bucket, not "little left". The model comes from ARM's
//! headers ([`crate::azure::QuotaObservation::model`]), the configured one until they tell.
//!
//! Since `nominal × (1 − jitter) ≥ floor`, no jittered interval is shorter than the floor,
//! so the steady-state read rate of a subscription never exceeds the share, whatever the
//! jitter draws. Below the low-water mark the rate falls in proportion to the fill, but a
//! resync is never put off by more than an hour: waiting longer buys no reads under either
//! model and only hides drift. Resources that are still converging (operations in flight)
//! follow Azure's `Retry-After` instead; the policy governs Ready resources only.
//!
//! ```
//! use std::time::Duration;
//! use amlops::azure::ThrottlingModel;
//! use amlops::engine::resync::{ReadQuota, ResyncPolicy};
//!
//! let p = ResyncPolicy::default(); // 10 min, ±10 %, 50 % of the read refill, 1 read/resync
//! // Token buckets: 5,000 resources fit in 50 % of 25 reads/s at the base interval…
//! let i = p.interval(5_000, None, 7);
//! assert!(i >= Duration::from_secs(540) && i <= Duration::from_secs(660));
//! // …10,000 do not: 10,000 reads per round at 12.5/s → at least 800 s.
//! assert!(p.interval(10_000, None, 7) >= Duration::from_secs(800));
//! // The hourly model: 5,000 reads per round at 6,000/h → at least 50 minutes.
//! let hourly = Some(ReadQuota { model: ThrottlingModel::Hourly, fill: None });
//! assert!(p.interval(5_000, hourly, 7) >= Duration::from_secs(3_000));
//! ```

use std::time::Duration;

use super::Outcome;
use crate::azure::{ArmBucket, ArmThrottling, QuotaObservation, ThrottlingModel};
use crate::crd::Phase;

/// The longest a low fill puts a resync off beyond the budget's interval.
pub const MAX_PUT_OFF: Duration = Duration::from_secs(3600);

/// What the policy takes from ARM's headers about a subscription's reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadQuota {
    /// The model the subscription is under.
    pub model: ThrottlingModel,
    /// How full the read bucket has been lately, in [0, 1]; `None` when unknown or stale.
    pub fill: Option<f64>,
}

/// The read quota of an observation ([`crate::azure::ArmClient::remaining_quota`]), its
/// fill while it still means something: seen less than the read bucket's refill time ago
/// (10 s under token buckets, an hour under the hourly model; the figures of `policy`), on a
/// clock running `time_scale` times faster than real time (1 in `amlops run`; the benchmark
/// compresses time).
pub fn fresh_read_quota(
    policy: &ResyncPolicy,
    quota: Option<QuotaObservation>,
    time_scale: f64,
) -> Option<ReadQuota> {
    let q = quota?;
    let window = policy.arm.limits(q.model).reads.refill_seconds();
    let fill = q
        .reads
        .filter(|r| r.observed_at.elapsed().as_secs_f64() * time_scale < window)
        .map(|r| r.fill);
    Some(ReadQuota {
        model: q.model,
        fill,
    })
}

/// How often Ready resources are resynced, given ARM's read limits.
#[derive(Clone, Debug, PartialEq)]
pub struct ResyncPolicy {
    /// Interval when the budget allows it (10 minutes by default).
    pub base: Duration,
    /// Relative jitter: 0.1 spreads intervals over ±10 %.
    pub jitter: f64,
    /// ARM's figures under both models, and the model assumed until the headers tell.
    pub arm: ArmThrottling,
    /// Share of the read refill steady-state resyncs may use (0 < share ≤ 1).
    pub share: f64,
    /// ARM reads one steady-state resync of one resource costs when no workspace listing
    /// answers it: 1 (`GET compute`, or `GET extension` for an `AzureMLExtension`); an
    /// `InferenceCluster` adds `GET managedCluster` only when its node count is not known to
    /// match the spec. The engines replace it with the subscription's average once listings
    /// are known ([`Self::with_reads_per_resync`]).
    pub reads_per_resync: f64,
    /// Fill of the read bucket (remaining / size) under which resyncs slow down.
    pub low_water: f64,
    /// Largest slow-down factor applied for a low fill.
    pub max_slowdown: f64,
}

impl Default for ResyncPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(600),
            jitter: 0.1,
            arm: ArmThrottling::default(),
            share: 0.5,
            reads_per_resync: 1.0,
            low_water: 0.25,
            max_slowdown: 16.0,
        }
    }
}

/// A uniform number in `[-1, 1]` from any seed (splitmix64).
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

fn finite_or(v: f64, default: f64) -> f64 {
    if v.is_finite() { v } else { default }
}

/// Seconds to a Duration, clamped to [0, ~30 years] (absurd settings must not panic).
fn dur(secs: f64) -> Duration {
    Duration::from_secs_f64(finite_or(secs, 0.0).clamp(0.0, 1e9))
}

impl ResyncPolicy {
    fn jitter(&self) -> f64 {
        finite_or(self.jitter, 0.0).clamp(0.0, 0.5)
    }

    /// This policy with `reads` ARM reads per resync of one resource instead of its own
    /// figure, when given (the subscription's average with workspace listings:
    /// [`super::listing::resync_demand`]).
    pub fn with_reads_per_resync(&self, reads: Option<f64>) -> ResyncPolicy {
        ResyncPolicy {
            reads_per_resync: reads.unwrap_or(self.reads_per_resync),
            ..self.clone()
        }
    }

    /// The model of `quota`, else the configured one.
    pub fn model(&self, quota: Option<ReadQuota>) -> ThrottlingModel {
        quota.map_or(self.arm.model, |q| q.model)
    }

    /// ARM's read bucket under `model`.
    pub fn reads(&self, model: ThrottlingModel) -> ArmBucket {
        self.arm.limits(model).reads
    }

    /// Reads per hour resyncs may use in one subscription under `model`.
    pub fn allowed_reads_per_hour(&self, model: ThrottlingModel) -> f64 {
        self.reads(model).refill_per_second.max(0.0)
            * 3600.0
            * finite_or(self.share, 0.5).clamp(0.001, 1.0)
    }

    /// Shortest interval that keeps `resources` under the share: the budget floor.
    pub fn floor(&self, resources: usize, model: ThrottlingModel) -> Duration {
        let reads = resources as f64 * finite_or(self.reads_per_resync, 1.0).max(0.0);
        let allowed = self.allowed_reads_per_hour(model).max(1e-9);
        dur(reads * 3600.0 / allowed)
    }

    /// Slow-down factor (≥ 1) for how full the read bucket has been lately.
    pub fn slowdown(&self, fill: Option<f64>) -> f64 {
        let low = finite_or(self.low_water, 0.0).clamp(0.0, 1.0);
        let max = finite_or(self.max_slowdown, 1.0).max(1.0);
        match fill {
            Some(f) if f < low => (low / f.max(1e-9)).min(max),
            _ => 1.0,
        }
    }

    /// Interval before jitter.
    pub fn nominal(&self, resources: usize, quota: Option<ReadQuota>) -> Duration {
        let model = self.model(quota);
        let floor = self.floor(resources, model).as_secs_f64() / (1.0 - self.jitter());
        let x = self.base.as_secs_f64().max(floor);
        let slowdown = self.slowdown(quota.and_then(|q| q.fill));
        dur((x * slowdown).min(x + MAX_PUT_OFF.as_secs_f64()))
    }

    /// Resync interval of one Ready resource of a subscription holding `resources` Ready
    /// resources, given what ARM's headers said about its reads ([`fresh_read_quota`]).
    /// `jitter_seed` picks the jitter: any number, different per resource and per round
    /// (e.g. a hash of the object's uid and its generation or resync count).
    pub fn interval(
        &self,
        resources: usize,
        quota: Option<ReadQuota>,
        jitter_seed: u64,
    ) -> Duration {
        let nominal = self.nominal(resources, quota).as_secs_f64();
        dur(nominal * (1.0 + self.jitter() * unit(jitter_seed)))
    }

    /// Expected steady-state reads per hour of the whole subscription (the mean over the
    /// jitter: `E[1/(n(1 + j·u))] = ln((1 + j)/(1 − j)) / (2j·n)`).
    pub fn expected_reads_per_hour(&self, resources: usize, quota: Option<ReadQuota>) -> f64 {
        let n = self.nominal(resources, quota).as_secs_f64();
        if n <= 0.0 {
            return f64::INFINITY;
        }
        let j = self.jitter();
        let mean_inverse = if j > 0.0 {
            ((1.0 + j) / (1.0 - j)).ln() / (2.0 * j)
        } else {
            1.0
        };
        resources as f64 * finite_or(self.reads_per_resync, 1.0) * 3600.0 / n * mean_inverse
    }

    /// Whether an outcome is the steady state the policy governs: Ready, nothing in flight,
    /// and the engine asked for a resync.
    pub fn is_steady(outcome: &Outcome) -> bool {
        outcome.status.phase == Some(Phase::Ready)
            && outcome.status.operation.is_none()
            && !outcome.finished
            && outcome.requeue.is_some_and(|r| !r.is_zero())
    }

    /// The requeue to use for `outcome`: the policy's interval in the steady state,
    /// otherwise what the engine asked for (Retry-After of an operation, a busy poll, …).
    pub fn requeue(
        &self,
        outcome: &Outcome,
        resources: usize,
        quota: Option<ReadQuota>,
        jitter_seed: u64,
    ) -> Option<Duration> {
        if Self::is_steady(outcome) {
            Some(self.interval(resources, quota, jitter_seed))
        } else {
            outcome.requeue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::ratelimit::{RateLimiter, RemainingHeaders};
    use crate::azure::{ArmLimits, RateLimitConfig};
    use crate::crd::{ClusterStatus, OperationStatus};
    use std::time::Instant;

    const TB: ThrottlingModel = ThrottlingModel::TokenBucket;
    const HOURLY: ThrottlingModel = ThrottlingModel::Hourly;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    fn q(model: ThrottlingModel, fill: Option<f64>) -> Option<ReadQuota> {
        Some(ReadQuota { model, fill })
    }

    #[test]
    fn nominal_interval_table() {
        let p = ResyncPolicy::default();
        // (resources, quota, expected nominal seconds)
        let cases: [(usize, Option<ReadQuota>, f64); 19] = [
            // Token buckets (the default): 50 % of 25 reads/s = 45,000 reads/h.
            (0, None, 600.0),
            (1, None, 600.0),
            (1_000, None, 600.0),
            (5_000, None, 600.0), // floor 400 s, / 0.9 = 444 s: the base rules
            // 10,000 reads per round at 12.5/s: floor 800 s, / 0.9 for jitter.
            (10_000, None, 800.0 / 0.9),
            (10_000, q(TB, Some(1.0)), 800.0 / 0.9),
            // A migrated subscription reporting 249 of 250 reads: full, no slow-down.
            (100, q(TB, Some(249.0 / 250.0)), 600.0),
            // A quarter full or more changes nothing.
            (100, q(TB, Some(0.25)), 600.0),
            // A bucket kept at an eighth by another tool: twice as slow.
            (100, q(TB, Some(0.125)), 1_200.0),
            // Drained: the largest slow-down, at most an hour more.
            (100, q(TB, Some(0.0)), 600.0 + 3_600.0),
            // The hourly model: 50 % of 12,000 reads/h.
            (100, q(HOURLY, None), 600.0),
            (500, q(HOURLY, None), 600.0), // floor 300 s
            (1_000, q(HOURLY, None), 600.0 / 0.9),
            (5_000, q(HOURLY, None), 3_000.0 / 0.9),
            (10_000, q(HOURLY, None), 6_000.0 / 0.9),
            // 3,000 of 12,000 left (a quarter) changes nothing; 1,500 (an eighth) halves.
            (100, q(HOURLY, Some(0.25)), 600.0),
            (100, q(HOURLY, Some(0.125)), 1_200.0),
            (1_000, q(HOURLY, Some(0.0)), 600.0 / 0.9 + 3_600.0),
            (5_000, q(HOURLY, Some(0.0)), 3_000.0 / 0.9 + 3_600.0),
        ];
        for (n, quota, want) in cases {
            let got = secs(p.nominal(n, quota));
            assert!(
                (got - want).abs() < 1e-6,
                "{n} resources, {quota:?}: {got} != {want}"
            );
        }
        // With a short base the largest slow-down (16×) binds before the hour does.
        let short = ResyncPolicy {
            base: Duration::from_secs(60),
            ..ResyncPolicy::default()
        };
        assert_eq!(secs(short.nominal(1, q(TB, Some(0.0)))), 960.0);
        // The configured model rules until the headers tell.
        let hourly = ResyncPolicy {
            arm: ArmThrottling {
                model: HOURLY,
                ..ArmThrottling::default()
            },
            ..ResyncPolicy::default()
        };
        assert!((secs(hourly.nominal(5_000, None)) - 3_000.0 / 0.9).abs() < 1e-6);
        assert_eq!(secs(hourly.nominal(5_000, q(TB, None))), 600.0);
    }

    /// Header sequences as ARM sends them, through the client's limiter, into the policy.
    #[test]
    fn header_sequences_to_intervals() {
        let p = ResyncPolicy::default();
        let header = |pairs: &[(&str, u32)]| {
            let mut h = reqwest::header::HeaderMap::new();
            for (name, v) in pairs {
                h.insert(
                    reqwest::header::HeaderName::from_bytes(
                        format!("x-ms-ratelimit-remaining-subscription-{name}").as_bytes(),
                    )
                    .unwrap(),
                    (*v).into(),
                );
            }
            RemainingHeaders::parse(&h)
        };
        // (what the sequence is, headers every 100 ms over 30 s, resources, nominal seconds)
        type Seq = fn(usize) -> Vec<(&'static str, u32)>;
        let cases: [(&str, Seq, usize, f64); 6] = [
            (
                "migrated subscription, operator alone: 249 left",
                |_| vec![("reads", 249), ("global-reads", 3749)],
                100,
                600.0,
            ),
            (
                "migrated, own resyncs at 12.5/s keep the bucket half full",
                |_| vec![("reads", 125), ("global-reads", 3600)],
                10_000,
                800.0 / 0.9,
            ),
            (
                "bucket drained by another tool sharing the principal",
                |i| vec![("reads", (i % 3) as u32), ("global-reads", 3000)],
                100,
                600.0 + 3_600.0,
            ),
            (
                "global bucket drained by other principals",
                |_| vec![("reads", 240), ("global-reads", 300)],
                100,
                600.0 * 0.25 / (300.0 / 3750.0),
            ),
            (
                "hourly model, fresh hour",
                |i| vec![("reads", 11_999 - i as u32)],
                1_000,
                600.0 / 0.9,
            ),
            (
                "hourly model, an hour spent by another tool",
                |_| vec![("reads", 600)],
                100,
                600.0 * 0.25 / 0.05,
            ),
        ];
        for (what, seq, n, want) in cases {
            let l = RateLimiter::new(RateLimitConfig::default());
            let t0 = Instant::now() - Duration::from_secs(30);
            let mut quota = None;
            for i in 0..300 {
                l.record_at(
                    "s",
                    &header(&seq(i)),
                    t0 + Duration::from_millis(100 * i as u64),
                );
                quota = l.observation("s");
            }
            let got = secs(p.nominal(n, fresh_read_quota(&p, quota, 1.0)));
            // The hourly sequence averages over an hour, so 30 s of it are the first value.
            assert!((got - want).abs() < 0.02 * want, "{what}: {got} != {want}");
        }
    }

    #[test]
    fn read_quota_expires_after_the_refill_time() {
        let p = ResyncPolicy::default();
        let l = RateLimiter::new(RateLimitConfig::default());
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-ms-ratelimit-remaining-subscription-reads", 0.into());
        h.insert(
            "x-ms-ratelimit-remaining-subscription-global-reads",
            0.into(),
        );
        let seen = |ago: Duration| {
            l.record_at("s", &RemainingHeaders::parse(&h), Instant::now() - ago);
            l.observation("s")
        };
        // (seen ago, time scale, fill known) — token buckets refill in 10 s.
        let cases = [
            (Duration::ZERO, 1.0, true),
            (Duration::from_secs(5), 1.0, true),
            (Duration::from_secs(20), 1.0, false),
            // 1 real second at ×20 is 20 emulated seconds: stale.
            (Duration::from_secs(1), 20.0, false),
        ];
        for (ago, scale, known) in cases {
            let r = fresh_read_quota(&p, seen(ago), scale).unwrap();
            assert_eq!(r.model, TB);
            assert_eq!(r.fill.is_some(), known, "{ago:?} ×{scale}");
        }
        assert_eq!(fresh_read_quota(&p, None, 1.0), None);
    }

    #[test]
    fn share_and_cost_scale_the_floor() {
        let cases: [(f64, f64, ThrottlingModel, f64); 5] = [
            // share, reads per resync, model, floor seconds for 1,000 resources
            (0.5, 2.0, HOURLY, 1_200.0),
            (0.25, 2.0, HOURLY, 2_400.0),
            (0.5, 1.0, HOURLY, 600.0),
            (0.5, 1.0, TB, 80.0),
            (1.0, 2.0, TB, 80.0),
        ];
        for (share, cost, model, want) in cases {
            let p = ResyncPolicy {
                share,
                reads_per_resync: cost,
                ..Default::default()
            };
            let got = secs(p.floor(1_000, model));
            assert!((got - want).abs() < 1e-6, "{share} {cost} {model:?}: {got}");
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_never_below_the_floor() {
        let p = ResyncPolicy::default();
        for model in [TB, HOURLY] {
            let quota = q(model, None);
            for n in [1usize, 100, 499, 500, 1_000, 10_000, 20_000] {
                let nominal = secs(p.nominal(n, quota));
                let floor = secs(p.floor(n, model));
                let (mut lo, mut hi) = (f64::MAX, 0.0f64);
                for seed in 0..2_000u64 {
                    let i = secs(p.interval(n, quota, seed));
                    assert!(i >= nominal * 0.9 - 1e-9 && i <= nominal * 1.1 + 1e-9);
                    assert!(i >= floor - 1e-9, "{n}: {i} < floor {floor}");
                    lo = lo.min(i);
                    hi = hi.max(i);
                }
                // The seeds spread the intervals over most of the ±10 % band.
                assert!(
                    lo < nominal * 0.92 && hi > nominal * 1.08,
                    "{n}: {lo}..{hi}"
                );
            }
        }
        // Deterministic per seed.
        assert_eq!(p.interval(10, None, 42), p.interval(10, None, 42));
        assert_ne!(p.interval(10, None, 42), p.interval(10, None, 43));
    }

    #[test]
    fn steady_rate_stays_under_the_share_for_any_count() {
        let p = ResyncPolicy::default();
        for model in [TB, HOURLY] {
            let quota = q(model, None);
            for n in [1usize, 10, 100, 1_000, 3_000, 5_000, 10_000, 50_000] {
                let rate = p.expected_reads_per_hour(n, quota);
                // Worst case: every resource drew the shortest interval.
                let worst =
                    n as f64 * p.reads_per_resync * 3600.0 / (secs(p.nominal(n, quota)) * 0.9);
                assert!(
                    worst <= p.allowed_reads_per_hour(model) + 1e-6,
                    "{n}: {worst}"
                );
                assert!(rate <= worst);
            }
        }
        // Under the low-water mark the rate falls in proportion to the fill.
        let full = p.expected_reads_per_hour(1_000, q(HOURLY, None));
        let low = p.expected_reads_per_hour(1_000, q(HOURLY, Some(0.0625)));
        assert!((low / full - 0.25).abs() < 1e-9, "{low} / {full}");
    }

    #[test]
    fn odd_settings_do_not_panic() {
        let p = ResyncPolicy {
            share: f64::NAN,
            jitter: 7.0,
            reads_per_resync: f64::INFINITY,
            low_water: -1.0,
            max_slowdown: 0.0,
            arm: ArmThrottling {
                token_bucket: ArmLimits {
                    reads: ArmBucket::new(0.0, 0.0),
                    ..ArmLimits::TOKEN_BUCKET
                },
                ..ArmThrottling::default()
            },
            ..Default::default()
        };
        let _ = p.interval(usize::MAX, q(TB, Some(f64::NAN)), u64::MAX);
        let _ = p.expected_reads_per_hour(0, None);
    }

    #[test]
    fn requeue_applies_to_the_steady_state_only() {
        let p = ResyncPolicy::default();
        let outcome = |phase: Phase, op: bool, requeue: Option<Duration>| Outcome {
            status: ClusterStatus {
                phase: Some(phase),
                operation: op.then(|| OperationStatus {
                    kind: crate::azure::OperationKind::Create,
                    url: "https://x".into(),
                    style: None,
                    started_at: None,
                }),
                ..Default::default()
            },
            requeue,
            finished: false,
            verdict: None,
        };
        let ten = Some(Duration::from_secs(600));
        let five = Some(Duration::from_secs(5));
        let cases = [
            (outcome(Phase::Ready, false, ten), true),
            (outcome(Phase::Ready, true, five), false),
            (outcome(Phase::Creating, true, five), false),
            (outcome(Phase::Ready, false, None), false),
            (outcome(Phase::Ready, false, Some(Duration::ZERO)), false),
            (outcome(Phase::Detaching, false, ten), false),
        ];
        for (o, steady) in cases {
            assert_eq!(ResyncPolicy::is_steady(&o), steady, "{o:?}");
            let r = p.requeue(&o, 20_000, None, 1);
            if steady {
                assert!(r.unwrap() >= p.floor(20_000, TB));
            } else {
                assert_eq!(r, o.requeue);
            }
        }
    }
}
