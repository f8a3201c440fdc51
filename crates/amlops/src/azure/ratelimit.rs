//! Client-side, per-subscription rate limiting under ARM's two throttling models.
//!
//! ARM throttles per subscription and principal: since 2024 with token buckets (reads 250
//! refilled at 25/s, writes and deletes 200 at 10/s, plus a global bucket 15× that), before
//! with hourly counts (12,000 reads, 1,200 writes)
//! (<https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling>,
//! also for the headers below). Thousands of CRs resyncing at once must
//! slow down, not fail, so every request first takes a token from its subscription's
//! read, write or delete bucket, sized and refilled at a share of ARM's figures under the
//! model the subscription is under. The buckets hand out reservations in order (the balance
//! may go negative), which spaces requests evenly.
//!
//! The model is learned from the headers ARM sends: a `x-ms-ratelimit-remaining-
//! subscription-global-*` header, which only the token-bucket model sends, means token
//! buckets; a remaining value larger than a token bucket can hold means hourly counts;
//! anything else keeps what was known (the configured model at first). The remaining values
//! are kept per subscription as a *fill level* (remaining / ARM's bucket size, averaged over
//! the time the bucket takes to refill), so the engine can tell a bucket that is being
//! drained from one that is merely small: 249 reads left of a 250-token bucket is full.
//!
//! Hand-rolled: `governor` and `leaky-bucket` pace one fixed rate, while the rate here
//! changes with the model a subscription turns out to be under, waits beyond `max_wait`
//! must be refused without taking a token, and a 429 pauses the whole subscription.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

use super::config::{ArmBucket, ArmThrottling, RateLimitConfig, ThrottlingModel};

/// Which of ARM's budgets a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestClass {
    /// GET/HEAD.
    Read,
    /// PUT, PATCH, POST.
    Write,
    /// DELETE.
    Delete,
}

impl RequestClass {
    /// Every class, in header order.
    pub const ALL: [Self; 3] = [Self::Read, Self::Write, Self::Delete];

    /// ARM counts GET (and HEAD) as reads, DELETE as deletes, everything else as writes.
    pub fn of(method: &reqwest::Method) -> Self {
        if method == reqwest::Method::GET || method == reqwest::Method::HEAD {
            Self::Read
        } else if method == reqwest::Method::DELETE {
            Self::Delete
        } else {
            Self::Write
        }
    }

    /// `reads`, `writes` or `deletes`, as in the header names.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Read => "reads",
            Self::Write => "writes",
            Self::Delete => "deletes",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What ARM's headers last said about one of a subscription's buckets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketLevel {
    /// `x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}` last seen (requests).
    pub remaining: u32,
    /// The `…-global-…` counterpart, when ARM sent it.
    pub global_remaining: Option<u32>,
    /// How full ARM's bucket has been lately, in [0, 1]: remaining / bucket size (the lower
    /// of the principal's and the global bucket), averaged exponentially over the time the
    /// bucket takes to refill. A bucket that requests drain faster than it refills stays
    /// low; one that is merely small does not.
    pub fill: f64,
    /// When the last value was seen.
    pub observed_at: Instant,
}

/// The throttling state ARM reported for a subscription.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuotaObservation {
    /// The model the subscription is under: learned from the headers when `learned`,
    /// otherwise the configured one.
    pub model: ThrottlingModel,
    /// Whether ARM's headers showed the model (rather than the configuration assuming it).
    pub learned: bool,
    /// Reads bucket, if ARM reported it.
    pub reads: Option<BucketLevel>,
    /// Writes bucket.
    pub writes: Option<BucketLevel>,
    /// Deletes bucket.
    pub deletes: Option<BucketLevel>,
}

impl QuotaObservation {
    /// The level of one class.
    pub fn level(&self, class: RequestClass) -> Option<BucketLevel> {
        match class {
            RequestClass::Read => self.reads,
            RequestClass::Write => self.writes,
            RequestClass::Delete => self.deletes,
        }
    }
}

/// The remaining-requests headers of one response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemainingHeaders {
    /// Per principal, by [`RequestClass`] index.
    pub principal: [Option<u32>; 3],
    /// The global (all principals) counterparts.
    pub global: [Option<u32>; 3],
}

impl RemainingHeaders {
    /// Parses `x-ms-ratelimit-remaining-subscription-{,global-}{reads,writes,deletes}`.
    pub fn parse(headers: &HeaderMap) -> Self {
        let num = |name: String| {
            headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        let mut h = Self::default();
        for c in RequestClass::ALL {
            h.principal[c.index()] = num(format!(
                "x-ms-ratelimit-remaining-subscription-{}",
                c.plural()
            ));
            h.global[c.index()] = num(format!(
                "x-ms-ratelimit-remaining-subscription-global-{}",
                c.plural()
            ));
        }
        h
    }

    fn is_empty(&self) -> bool {
        self.principal
            .iter()
            .chain(&self.global)
            .all(Option::is_none)
    }

    /// The model these headers prove, if any: a global header exists only under token
    /// buckets; a value above a token bucket's size exists only under hourly counts. A
    /// small value alone proves nothing (a nearly spent hour looks like a full bucket).
    pub fn model(&self, arm: &ArmThrottling) -> Option<ThrottlingModel> {
        if self.global.iter().any(Option::is_some) {
            return Some(ThrottlingModel::TokenBucket);
        }
        let tb = &arm.token_bucket;
        let over = RequestClass::ALL
            .iter()
            .any(|c| self.principal[c.index()].is_some_and(|v| f64::from(v) > tb.of(*c).size));
        over.then_some(ThrottlingModel::Hourly)
    }
}

#[derive(Debug)]
struct Bucket {
    /// Tokens per second.
    rate: f64,
    burst: f64,
    /// May be negative: outstanding reservations.
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A client-side bucket for `share` of ARM's `arm` bucket (unbounded without a share).
    fn new(arm: ArmBucket, share: Option<f64>, now: Instant) -> Self {
        let (rate, burst) = match share {
            Some(s) => {
                let s = if s.is_finite() {
                    s.clamp(1e-3, 1.0)
                } else {
                    0.5
                };
                (
                    (arm.refill_per_second * s).max(1e-6),
                    (arm.size * s).floor().max(1.0),
                )
            }
            None => (f64::INFINITY, f64::INFINITY),
        };
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// This bucket re-sized for another model, keeping what it has spent.
    fn resized(&self, arm: ArmBucket, share: Option<f64>, now: Instant) -> Self {
        let mut b = Self::new(arm, share, now);
        b.tokens = self.tokens.min(b.burst);
        b
    }

    /// Takes one token and returns how long the caller must wait before using it, or —
    /// when that wait would exceed `max_wait` — takes nothing and returns `Err(wait)`.
    fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        if self.rate.is_infinite() {
            return Ok(Duration::ZERO);
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        let after = self.tokens - 1.0;
        let wait = if after >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-after / self.rate)
        };
        if wait > max_wait {
            return Err(wait);
        }
        self.tokens = after;
        Ok(wait)
    }
}

#[derive(Debug)]
struct SubscriptionState {
    model: ThrottlingModel,
    learned: bool,
    buckets: [Bucket; 3],
    /// Set after a 429: no request to this subscription before then.
    paused_until: Option<Instant>,
    levels: [Option<BucketLevel>; 3],
}

/// Per-subscription client-side buckets plus what ARM's headers said.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    subs: Mutex<HashMap<String, SubscriptionState>>,
}

impl RateLimiter {
    /// A limiter with the given per-subscription limits.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            subs: Mutex::new(HashMap::new()),
        }
    }

    fn buckets(&self, model: ThrottlingModel, now: Instant) -> [Bucket; 3] {
        let limits = self.config.arm.limits(model);
        RequestClass::ALL.map(|c| Bucket::new(limits.of(c), self.config.share, now))
    }

    fn with_sub<T>(
        &self,
        subscription: &str,
        now: Instant,
        f: impl FnOnce(&mut SubscriptionState) -> T,
    ) -> T {
        // A poisoned lock only means another task panicked mid-update; the counters are
        // still usable.
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        let model = self.config.arm.model;
        let state = subs
            .entry(subscription.to_ascii_lowercase())
            .or_insert_with(|| SubscriptionState {
                model,
                learned: false,
                buckets: self.buckets(model, now),
                paused_until: None,
                levels: [None; 3],
            });
        f(state)
    }

    /// Reserves a token and returns the wait before the request may be sent. When the
    /// wait would exceed `max_wait`, nothing is reserved and `Err(wait)` is returned: the
    /// caller should requeue rather than hold a worker that long.
    ///
    /// # Errors
    /// `Err(wait)`, with nothing reserved, when the wait (a pause after a 429, or the bucket's
    /// refill) would exceed `max_wait`; the transport turns it into `AzureError::RateLimited`
    /// with that `retry_after`.
    pub fn reserve(&self, subscription: &str, class: RequestClass) -> Result<Duration, Duration> {
        self.reserve_at(subscription, class, Instant::now())
    }

    fn reserve_at(
        &self,
        subscription: &str,
        class: RequestClass,
        now: Instant,
    ) -> Result<Duration, Duration> {
        let max_wait = self.config.max_wait;
        self.with_sub(subscription, now, |s| {
            let pause = s
                .paused_until
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or_default();
            if pause > max_wait {
                return Err(pause);
            }
            let wait = s.buckets[class.index()].reserve(now, max_wait)?;
            Ok(wait.max(pause))
        })
    }

    /// Waits for a token; `Err(wait)` when the wait would exceed `max_wait`.
    ///
    /// # Errors
    /// As [`Self::reserve`].
    pub async fn acquire(&self, subscription: &str, class: RequestClass) -> Result<(), Duration> {
        let wait = self.reserve(subscription, class)?;
        if !wait.is_zero() {
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                ?class,
                "client-side rate limit"
            );
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// After a 429: hold back every request to the subscription for `wait`, since ARM
    /// throttles per subscription and the others would be refused too.
    pub fn pause(&self, subscription: &str, wait: Duration) {
        let now = Instant::now();
        let until = now + wait;
        self.with_sub(subscription, now, |s| {
            s.paused_until = Some(s.paused_until.map_or(until, |t| t.max(until)));
        });
    }

    /// Records the remaining-requests headers of a response, if present.
    pub fn record(&self, subscription: &str, headers: &HeaderMap) {
        self.record_at(
            subscription,
            &RemainingHeaders::parse(headers),
            Instant::now(),
        );
    }

    /// Records parsed headers seen at `now` (table tests drive the clock).
    pub fn record_at(&self, subscription: &str, h: &RemainingHeaders, now: Instant) {
        if h.is_empty() {
            return;
        }
        let arm = self.config.arm;
        let share = self.config.share;
        self.with_sub(subscription, now, |s| {
            if let Some(model) = h.model(&arm) {
                if model != s.model {
                    tracing::info!(
                        subscription,
                        from = s.model.as_str(),
                        to = model.as_str(),
                        "ARM's headers show another throttling model; pacing to it"
                    );
                    let limits = arm.limits(model);
                    for c in RequestClass::ALL {
                        let b = &mut s.buckets[c.index()];
                        *b = b.resized(limits.of(c), share, now);
                    }
                    s.levels = [None; 3];
                    s.model = model;
                }
                s.learned = true;
            }
            let limits = arm.limits(s.model);
            for c in RequestClass::ALL {
                let Some(remaining) = h.principal[c.index()] else {
                    continue;
                };
                let bucket = limits.of(c);
                let global = h.global[c.index()];
                let mut fill = f64::from(remaining) / bucket.size.max(1.0);
                if let Some(g) = global
                    && limits.global_factor > 0.0
                {
                    fill = fill.min(f64::from(g) / (bucket.size * limits.global_factor).max(1.0));
                }
                let fill = fill.clamp(0.0, 1.0);
                let slot = &mut s.levels[c.index()];
                let averaged = match slot {
                    Some(prev) => {
                        let dt = now
                            .saturating_duration_since(prev.observed_at)
                            .as_secs_f64();
                        let alpha = 1.0 - (-dt / bucket.refill_seconds().max(1e-9)).exp();
                        prev.fill + (fill - prev.fill) * alpha
                    }
                    None => fill,
                };
                *slot = Some(BucketLevel {
                    remaining,
                    global_remaining: global,
                    fill: averaged,
                    observed_at: now,
                });
            }
        });
    }

    /// What ARM last reported for `subscription`; `None` before any response.
    pub fn observation(&self, subscription: &str) -> Option<QuotaObservation> {
        let subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        subs.get(&subscription.to_ascii_lowercase())
            .map(|s| QuotaObservation {
                model: s.model,
                learned: s.learned,
                reads: s.levels[0],
                writes: s.levels[1],
                deletes: s.levels[2],
            })
            .filter(|q| q.learned || RequestClass::ALL.iter().any(|c| q.level(*c).is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::config::{ArmLimits, ArmThrottling};
    use reqwest::header::HeaderValue;

    /// Both models with the same figures: `per_second` per second, `burst` at once.
    fn limiter(per_second: f64, burst: f64) -> RateLimiter {
        let b = ArmBucket::new(burst, per_second);
        let l = ArmLimits {
            reads: b,
            writes: b,
            deletes: b,
            global_factor: 0.0,
        };
        RateLimiter::new(RateLimitConfig {
            arm: ArmThrottling {
                model: ThrottlingModel::TokenBucket,
                token_bucket: l,
                hourly: l,
            },
            share: Some(1.0),
            max_wait: Duration::from_secs(60),
        })
    }

    fn headers(pairs: &[(&str, u32)]) -> RemainingHeaders {
        let mut h = HeaderMap::new();
        for (name, v) in pairs {
            h.insert(
                reqwest::header::HeaderName::from_bytes(
                    format!("x-ms-ratelimit-remaining-subscription-{name}").as_bytes(),
                )
                .unwrap(),
                HeaderValue::from(*v),
            );
        }
        RemainingHeaders::parse(&h)
    }

    #[test]
    fn burst_then_spaced() {
        // 1 per second, burst 2.
        let l = limiter(1.0, 2.0);
        assert_eq!(l.reserve("s", RequestClass::Write).unwrap(), Duration::ZERO);
        assert_eq!(l.reserve("s", RequestClass::Write).unwrap(), Duration::ZERO);
        let third = l.reserve("s", RequestClass::Write).unwrap();
        let fourth = l.reserve("s", RequestClass::Write).unwrap();
        assert!(third > Duration::from_millis(900) && third <= Duration::from_secs(1));
        assert!(fourth > Duration::from_millis(1900) && fourth <= Duration::from_secs(2));
        // Reads and deletes have their own buckets, subscriptions too (case-insensitively
        // shared).
        assert_eq!(l.reserve("s", RequestClass::Read).unwrap(), Duration::ZERO);
        assert_eq!(
            l.reserve("s", RequestClass::Delete).unwrap(),
            Duration::ZERO
        );
        assert_eq!(
            l.reserve("other", RequestClass::Write).unwrap(),
            Duration::ZERO
        );
        assert!(l.reserve("S", RequestClass::Write).unwrap() > Duration::from_secs(2));
    }

    #[test]
    fn pause_delays_everything() {
        let l = limiter(1.0, 10.0);
        l.pause("s", Duration::from_secs(5));
        let w = l.reserve("s", RequestClass::Read).unwrap();
        assert!(w > Duration::from_secs(4), "{w:?}");
        assert_eq!(l.reserve("t", RequestClass::Read).unwrap(), Duration::ZERO);
    }

    #[test]
    fn refuses_waits_beyond_max_wait_without_taking_a_token() {
        let mut l = limiter(1.0, 1.0);
        l.config.max_wait = Duration::from_millis(1500);
        assert_eq!(l.reserve("s", RequestClass::Read), Ok(Duration::ZERO));
        assert!(l.reserve("s", RequestClass::Read).is_ok()); // ~1 s
        let refused = l.reserve("s", RequestClass::Read).unwrap_err(); // ~2 s > 1.5 s
        assert!(refused > Duration::from_millis(1500), "{refused:?}");
        // The refusal took nothing: the next one is refused with the same wait.
        let again = l.reserve("s", RequestClass::Read).unwrap_err();
        assert!(again <= refused);
        l.pause("s", Duration::from_secs(10));
        assert!(l.reserve("s", RequestClass::Write).unwrap_err() > Duration::from_secs(9));
    }

    #[test]
    fn unpaced_never_waits() {
        let l = RateLimiter::new(RateLimitConfig::unpaced());
        for _ in 0..10_000 {
            assert_eq!(l.reserve("s", RequestClass::Read), Ok(Duration::ZERO));
        }
    }

    #[test]
    fn classes() {
        assert_eq!(RequestClass::of(&reqwest::Method::GET), RequestClass::Read);
        assert_eq!(RequestClass::of(&reqwest::Method::HEAD), RequestClass::Read);
        assert_eq!(
            RequestClass::of(&reqwest::Method::DELETE),
            RequestClass::Delete
        );
        for m in [
            reqwest::Method::PUT,
            reqwest::Method::POST,
            reqwest::Method::PATCH,
        ] {
            assert_eq!(RequestClass::of(&m), RequestClass::Write);
        }
    }

    /// Header sequences in, model and pacing out.
    #[test]
    fn learns_the_model_from_headers() {
        let arm = ArmThrottling::default();
        // (headers, model they prove)
        type Headers<'a> = &'a [(&'a str, u32)];
        let cases: [(Headers, Option<ThrottlingModel>); 8] = [
            // A migrated subscription: bucket-sized value and the global header.
            (
                &[("reads", 249), ("global-reads", 3749)],
                Some(ThrottlingModel::TokenBucket),
            ),
            (
                &[("global-writes", 2999)],
                Some(ThrottlingModel::TokenBucket),
            ),
            // A fresh hour.
            (&[("reads", 11_999)], Some(ThrottlingModel::Hourly)),
            (&[("writes", 1_199)], Some(ThrottlingModel::Hourly)),
            (&[("deletes", 14_999)], Some(ThrottlingModel::Hourly)),
            // Small values alone prove nothing: a nearly spent hour, or a bucket.
            (&[("reads", 249)], None),
            (&[("writes", 200)], None),
            (&[], None),
        ];
        for (pairs, want) in cases {
            assert_eq!(headers(pairs).model(&arm), want, "{pairs:?}");
        }
    }

    #[test]
    fn paces_to_a_share_of_the_model_it_learned() {
        let l = RateLimiter::new(RateLimitConfig::default()); // token buckets assumed, 50 %
        let t0 = Instant::now();
        // Token buckets, 50 %: 125 reads at once, then one per 80 ms (12.5/s).
        for _ in 0..125 {
            assert_eq!(
                l.reserve_at("s", RequestClass::Read, t0),
                Ok(Duration::ZERO)
            );
        }
        let next = l.reserve_at("s", RequestClass::Read, t0).unwrap();
        assert!((next.as_secs_f64() - 0.08).abs() < 1e-6, "{next:?}");
        // Writes: 100 at once, then 5/s.
        for _ in 0..100 {
            assert_eq!(
                l.reserve_at("s", RequestClass::Write, t0),
                Ok(Duration::ZERO)
            );
        }
        let w = l.reserve_at("s", RequestClass::Write, t0).unwrap();
        assert!((w.as_secs_f64() - 0.2).abs() < 1e-6, "{w:?}");
        // ARM says the subscription is under the hourly model: 6,000 reads/h (0.6 s apart),
        // the debt of the reservations above carried over.
        l.record_at("s", &headers(&[("reads", 11_000)]), t0);
        let q = l.observation("s").unwrap();
        assert_eq!((q.model, q.learned), (ThrottlingModel::Hourly, true));
        let later = t0 + Duration::from_secs(10);
        let r = l.reserve_at("s", RequestClass::Read, later).unwrap();
        // Debt: -1 token at t0, +10 s × 1/0.6 tokens → 15.67 - 1 → no wait.
        assert_eq!(r, Duration::ZERO);
        let mut last = r;
        for _ in 0..20 {
            last = l.reserve_at("s", RequestClass::Read, later).unwrap();
        }
        assert!(last > Duration::from_secs(2), "{last:?}");
        // Back to token buckets as soon as a global header shows.
        l.record_at(
            "s",
            &headers(&[("reads", 240), ("global-reads", 3700)]),
            later,
        );
        assert_eq!(
            l.observation("s").unwrap().model,
            ThrottlingModel::TokenBucket
        );
    }

    #[test]
    fn fill_is_relative_to_the_bucket_and_averaged_over_its_refill_time() {
        let l = RateLimiter::new(RateLimitConfig::default());
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let fill = |l: &RateLimiter| l.observation("s").unwrap().reads.unwrap().fill;
        // A migrated subscription: 249 of 250 is full.
        l.record_at(
            "s",
            &headers(&[("reads", 249), ("global-reads", 3749)]),
            at(0.0),
        );
        assert!(fill(&l) > 0.99);
        // One low value 0.1 s later barely moves the average (the bucket refills in 10 s)…
        l.record_at(
            "s",
            &headers(&[("reads", 0), ("global-reads", 3500)]),
            at(0.1),
        );
        assert!(fill(&l) > 0.98, "{}", fill(&l));
        // …a bucket kept near empty for 30 s brings it down.
        for i in 1..=300 {
            l.record_at(
                "s",
                &headers(&[("reads", 5), ("global-reads", 3500)]),
                at(0.1 + f64::from(i) * 0.1),
            );
        }
        assert!(fill(&l) < 0.1, "{}", fill(&l));
        // The global bucket drained by other principals counts too.
        let g = RateLimiter::new(RateLimitConfig::default());
        g.record_at("s", &headers(&[("reads", 250), ("global-reads", 100)]), t0);
        let q = g.observation("s").unwrap().reads.unwrap();
        assert!(q.fill < 0.03, "{q:?}");
        assert_eq!(q.global_remaining, Some(100));
    }

    #[test]
    fn records_remaining_headers() {
        let l = RateLimiter::new(RateLimitConfig::default());
        assert!(l.observation("s").is_none());
        let mut h = HeaderMap::new();
        h.insert(
            "x-ms-ratelimit-remaining-subscription-reads",
            HeaderValue::from_static("11999"),
        );
        l.record("s", &h);
        let mut h = HeaderMap::new();
        h.insert(
            "x-ms-ratelimit-remaining-subscription-writes",
            HeaderValue::from_static("1199"),
        );
        l.record("S", &h);
        let q = l.observation("s").unwrap();
        assert_eq!(q.model, ThrottlingModel::Hourly);
        assert_eq!(
            (q.reads.map(|r| r.remaining), q.writes.map(|w| w.remaining)),
            (Some(11999), Some(1199))
        );
        assert!(q.deletes.is_none());
    }
}
