//! Adaptive steady-state resync: how long a Ready resource waits before its next read.
//!
//! A Ready resource is looked at again every [`ResyncPolicy::base`] (10 minutes, jittered),
//! with one `GET compute` (the engine reads the AKS cluster only when its node count is not
//! known to match the spec). ARM allows about 12,000 reads per hour per subscription and
//! principal, so thousands of resources in one subscription would spend the whole budget on
//! resyncs. The policy stretches the interval so that the steady-state read rate of a
//! subscription stays under a configurable share of that budget however many resources it
//! holds, and slows down further when ARM's `x-ms-ratelimit-remaining-subscription-reads`
//! header says little is left (another tool may share the principal):
//!
//! ```text
//! floor    = resources × reads_per_resync × 3600 s / (read_budget_per_hour × share)
//! nominal  = min(x × slowdown(remaining), x + 1 h),   x = max(base, floor / (1 − jitter))
//! interval = nominal × (1 + jitter × u),   u ∈ [−1, 1] from the seed
//! slowdown = 1 when remaining ≥ low_water × read_budget_per_hour,
//!            else min(max_slowdown, low_water × read_budget_per_hour / remaining)
//! ```
//!
//! Since `nominal × (1 − jitter) ≥ floor`, no jittered interval is shorter than the floor,
//! so the steady-state read rate of a subscription never exceeds the share, whatever the
//! jitter draws. Below the low-water mark the rate falls in proportion to what remains,
//! but a resync is never put off by more than an hour: ARM's read budget is a rolling hour,
//! so waiting longer buys no reads and only hides drift (one burst that drained the budget
//! would otherwise push every resync of a large subscription out by up to 16 rounds).
//! Resources that are still converging (operations in flight) follow Azure's `Retry-After`
//! instead; the policy governs Ready resources only.
//!
//! ```
//! use std::time::Duration;
//! use amlops::engine::resync::ResyncPolicy;
//!
//! let p = ResyncPolicy::default(); // 10 min, ±10 %, 50 % of 12,000 reads/h, 1 read/resync
//! // 100 resources fit in the budget at the base interval…
//! let i = p.interval(100, None, 7);
//! assert!(i >= Duration::from_secs(540) && i <= Duration::from_secs(660));
//! // …5,000 do not: 5,000 reads per round at 6,000/h → at least 50 minutes.
//! assert!(p.interval(5_000, None, 7) >= Duration::from_secs(3_000));
//! ```

use std::time::Duration;

use super::Outcome;
use crate::azure::RemainingQuota;
use crate::crd::Phase;

/// ARM's rate limits (and its `x-ms-ratelimit-remaining-*` headers) describe a rolling
/// hour: a remaining-reads value older than this says nothing about now.
pub const QUOTA_WINDOW: Duration = Duration::from_secs(3600);

/// The remaining-reads value of `quota` while it still means something: seen less than
/// [`QUOTA_WINDOW`] ago, on a clock running `time_scale` times faster than real time (1 in
/// `amlops run`; the benchmark compresses time).
pub fn fresh_remaining_reads(quota: Option<RemainingQuota>, time_scale: f64) -> Option<u64> {
    quota
        .filter(|q| q.observed_at.elapsed().as_secs_f64() * time_scale < QUOTA_WINDOW.as_secs_f64())
        .and_then(|q| q.reads)
        .map(u64::from)
}

/// How often Ready resources are resynced, given the ARM read budget.
#[derive(Clone, Debug, PartialEq)]
pub struct ResyncPolicy {
    /// Interval when the budget allows it (10 minutes by default).
    pub base: Duration,
    /// Relative jitter: 0.1 spreads intervals over ±10 %.
    pub jitter: f64,
    /// ARM reads allowed per hour per subscription and principal (12,000).
    pub read_budget_per_hour: u64,
    /// Share of that budget steady-state resyncs may use (0 < share ≤ 1).
    pub share: f64,
    /// ARM reads one steady-state resync of one resource costs: 1 (`GET compute`) for both
    /// kinds; an `InferenceCluster` adds `GET managedCluster` only when its node count is
    /// not known to match the spec, which is not the steady state.
    pub reads_per_resync: f64,
    /// Below `low_water × read_budget_per_hour` remaining reads, slow down in proportion.
    pub low_water: f64,
    /// Largest slow-down the remaining-reads header can cause.
    pub max_slowdown: f64,
}

impl Default for ResyncPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(600),
            jitter: 0.1,
            read_budget_per_hour: 12_000,
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

    /// Reads per hour resyncs may use in one subscription.
    pub fn allowed_reads_per_hour(&self) -> f64 {
        self.read_budget_per_hour as f64 * finite_or(self.share, 0.5).clamp(0.001, 1.0)
    }

    /// Shortest interval that keeps `resources` under the share: the budget floor.
    pub fn floor(&self, resources: usize) -> Duration {
        let reads = resources as f64 * finite_or(self.reads_per_resync, 1.0).max(0.0);
        let allowed = self.allowed_reads_per_hour().max(1.0);
        dur(reads * 3600.0 / allowed)
    }

    /// Slow-down factor (≥ 1) for the last remaining-reads header.
    pub fn slowdown(&self, remaining_reads: Option<u64>) -> f64 {
        let low = self.read_budget_per_hour as f64 * finite_or(self.low_water, 0.0).max(0.0);
        let max = finite_or(self.max_slowdown, 1.0).max(1.0);
        match remaining_reads {
            Some(r) if (r as f64) < low => (low / (r.max(1) as f64)).min(max),
            _ => 1.0,
        }
    }

    /// Interval before jitter.
    pub fn nominal(&self, resources: usize, remaining_reads: Option<u64>) -> Duration {
        let floor = self.floor(resources).as_secs_f64() / (1.0 - self.jitter());
        let x = self.base.as_secs_f64().max(floor);
        dur((x * self.slowdown(remaining_reads)).min(x + QUOTA_WINDOW.as_secs_f64()))
    }

    /// Resync interval of one Ready resource of a subscription holding `resources` Ready
    /// resources, given the last `x-ms-ratelimit-remaining-subscription-reads` seen
    /// ([`crate::azure::ArmClient::remaining_quota`]). `jitter_seed` picks the jitter: any
    /// number, different per resource and per round (e.g. a hash of the object's uid and
    /// its generation or resync count).
    pub fn interval(
        &self,
        resources: usize,
        remaining_reads: Option<u64>,
        jitter_seed: u64,
    ) -> Duration {
        let nominal = self.nominal(resources, remaining_reads).as_secs_f64();
        dur(nominal * (1.0 + self.jitter() * unit(jitter_seed)))
    }

    /// Expected steady-state reads per hour of the whole subscription (the mean over the
    /// jitter: `E[1/(n(1 + j·u))] = ln((1 + j)/(1 − j)) / (2j·n)`).
    pub fn expected_reads_per_hour(&self, resources: usize, remaining_reads: Option<u64>) -> f64 {
        let n = self.nominal(resources, remaining_reads).as_secs_f64();
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
        remaining_reads: Option<u64>,
        jitter_seed: u64,
    ) -> Option<Duration> {
        if Self::is_steady(outcome) {
            Some(self.interval(resources, remaining_reads, jitter_seed))
        } else {
            outcome.requeue
        }
    }
}

fn parse_share(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err("must be in (0, 1]".into())
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err("must be a positive number of seconds".into())
    }
}

/// ARM's read budget and the share of it steady-state resyncs may use (flags shared by
/// `amlops run` and `amlops bench`).
#[derive(Clone, Copy, Debug, PartialEq, clap::Args)]
pub struct ReadBudget {
    /// ARM read budget per hour per subscription and principal.
    #[arg(long, default_value_t = 12_000, env = "AMLOPS_ARM_READ_BUDGET")]
    pub arm_read_budget: u64,
    /// Share of the ARM read budget that steady-state resyncs may use, in (0, 1].
    #[arg(long, default_value_t = 0.5, value_parser = parse_share, env = "AMLOPS_ARM_READ_SHARE")]
    pub arm_read_share: f64,
}

impl Default for ReadBudget {
    fn default() -> Self {
        let p = ResyncPolicy::default();
        Self {
            arm_read_budget: p.read_budget_per_hour,
            arm_read_share: p.share,
        }
    }
}

impl ReadBudget {
    /// The policy resyncing every `base` within this budget (other fields at their defaults).
    pub fn policy(&self, base: Duration) -> ResyncPolicy {
        ResyncPolicy {
            base,
            read_budget_per_hour: self.arm_read_budget,
            share: self.arm_read_share,
            ..ResyncPolicy::default()
        }
    }
}

/// Command-line settings of the policy for `amlops bench` (`#[command(flatten)]` them).
#[derive(Clone, Debug, clap::Args)]
pub struct ResyncArgs {
    /// Steady-state resync interval of a Ready resource when the ARM budget allows it, in
    /// seconds (jittered ±10 %; stretched when many resources share a subscription).
    #[arg(long, default_value_t = 600.0, value_parser = parse_seconds, env = "AMLOPS_RESYNC_SECONDS")]
    pub resync_seconds: f64,
    /// ARM read budget.
    #[command(flatten)]
    pub budget: ReadBudget,
}

impl ResyncArgs {
    /// The policy these settings describe (other fields at their defaults).
    pub fn policy(&self) -> ResyncPolicy {
        self.budget
            .policy(Duration::from_secs_f64(self.resync_seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ClusterStatus, OperationStatus};

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn remaining_reads_expire_after_the_quota_window() {
        let seen = |ago: Duration| RemainingQuota {
            reads: Some(42),
            writes: None,
            observed_at: std::time::Instant::now().checked_sub(ago).unwrap(),
        };
        // (seen ago, time scale, expected)
        let cases = [
            (Duration::ZERO, 1.0, Some(42)),
            (Duration::from_secs(20), 1.0, Some(42)),
            // 20 real seconds at ×360 are two emulated hours: stale.
            (Duration::from_secs(20), 360.0, None),
            (Duration::from_secs(5), 360.0, Some(42)),
        ];
        for (ago, scale, want) in cases {
            assert_eq!(
                fresh_remaining_reads(Some(seen(ago)), scale),
                want,
                "{ago:?} ×{scale}"
            );
        }
        assert_eq!(fresh_remaining_reads(None, 1.0), None);
        let no_reads = RemainingQuota {
            reads: None,
            ..seen(Duration::ZERO)
        };
        assert_eq!(fresh_remaining_reads(Some(no_reads), 1.0), None);
    }

    #[test]
    fn nominal_interval_table() {
        let p = ResyncPolicy::default();
        // (resources, remaining reads, expected nominal seconds)
        let cases: [(usize, Option<u64>, f64); 12] = [
            (0, None, 600.0),
            (1, None, 600.0),
            (100, None, 600.0), // 100 reads per round, 6,000/h allows a round per minute
            (500, None, 600.0), // floor 300 s: the base interval still rules
            // 1,000 resources: floor 1,000 × 3600 / 6,000 = 600 s, / 0.9 for jitter.
            (1_000, None, 600.0 / 0.9),
            (5_000, None, 3_000.0 / 0.9),
            // Remaining reads at or above the low-water mark (3,000) change nothing.
            (100, Some(3_000), 600.0),
            // Half the low-water mark left: twice as slow.
            (100, Some(1_500), 1_200.0),
            // A tenth of it left: ten times slower would be 6,000 s, but a resync is never
            // put off by more than an hour beyond the budget's interval.
            (100, Some(300), 600.0 + 3_600.0),
            (1, Some(0), 600.0 + 3_600.0),
            (1_000, Some(0), 600.0 / 0.9 + 3_600.0),
            (5_000, Some(0), 3_000.0 / 0.9 + 3_600.0),
        ];
        for (n, remaining, want) in cases {
            let got = secs(p.nominal(n, remaining));
            assert!(
                (got - want).abs() < 1e-6,
                "{n} resources, remaining {remaining:?}: {got} != {want}"
            );
        }
        // With a short base the largest slow-down (16×) binds before the hour does.
        let short = ResyncPolicy {
            base: Duration::from_secs(60),
            ..ResyncPolicy::default()
        };
        assert_eq!(secs(short.nominal(1, Some(0))), 960.0);
    }

    #[test]
    fn share_and_cost_scale_the_floor() {
        let cases: [(f64, f64, u64, f64); 4] = [
            // share, reads per resync, budget, floor seconds for 1,000 resources
            (0.5, 2.0, 12_000, 1_200.0),
            (0.25, 2.0, 12_000, 2_400.0),
            (0.5, 1.0, 12_000, 600.0),
            (1.0, 1.0, 1_200, 3_000.0),
        ];
        for (share, cost, budget, want) in cases {
            let p = ResyncPolicy {
                share,
                reads_per_resync: cost,
                read_budget_per_hour: budget,
                ..Default::default()
            };
            assert!((secs(p.floor(1_000)) - want).abs() < 1e-6, "{share} {cost}");
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_never_below_the_floor() {
        let p = ResyncPolicy::default();
        for n in [1usize, 100, 499, 500, 1_000, 10_000] {
            let nominal = secs(p.nominal(n, None));
            let floor = secs(p.floor(n));
            let (mut lo, mut hi) = (f64::MAX, 0.0f64);
            for seed in 0..2_000u64 {
                let i = secs(p.interval(n, None, seed));
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
        // Deterministic per seed.
        assert_eq!(p.interval(10, None, 42), p.interval(10, None, 42));
        assert_ne!(p.interval(10, None, 42), p.interval(10, None, 43));
    }

    #[test]
    fn steady_rate_stays_under_the_share_for_any_count() {
        let p = ResyncPolicy::default();
        for n in [1usize, 10, 100, 1_000, 3_000, 5_000, 50_000] {
            let rate = p.expected_reads_per_hour(n, None);
            // Worst case: every resource drew the shortest interval.
            let worst = n as f64 * p.reads_per_resync * 3600.0 / (secs(p.nominal(n, None)) * 0.9);
            assert!(worst <= p.allowed_reads_per_hour() + 1e-6, "{n}: {worst}");
            assert!(rate <= worst);
        }
        // Under the low-water mark the rate falls in proportion to what is left.
        let full = p.expected_reads_per_hour(1_000, None);
        let quarter = p.expected_reads_per_hour(1_000, Some(750));
        assert!((quarter / full - 0.25).abs() < 1e-9, "{quarter} / {full}");
    }

    #[test]
    fn odd_settings_do_not_panic() {
        let p = ResyncPolicy {
            share: f64::NAN,
            jitter: 7.0,
            reads_per_resync: f64::INFINITY,
            low_water: -1.0,
            max_slowdown: 0.0,
            read_budget_per_hour: 0,
            ..Default::default()
        };
        let _ = p.interval(usize::MAX, Some(0), u64::MAX);
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
            let r = p.requeue(&o, 5_000, None, 1);
            if steady {
                assert!(r.unwrap() >= p.floor(5_000));
            } else {
                assert_eq!(r, o.requeue);
            }
        }
    }

    #[test]
    fn args_build_the_policy() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            r: ResyncArgs,
        }
        let c = Cli::try_parse_from(["x", "--resync-seconds", "300", "--arm-read-share", "0.25"])
            .unwrap();
        let p = c.r.policy();
        assert_eq!(p.base, Duration::from_secs(300));
        assert_eq!(p.share, 0.25);
        assert_eq!(p.read_budget_per_hour, 12_000);
        assert!(Cli::try_parse_from(["x", "--arm-read-share", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--arm-read-share", "1.5"]).is_err());
        assert!(Cli::try_parse_from(["x", "--resync-seconds", "-1"]).is_err());
    }
}
