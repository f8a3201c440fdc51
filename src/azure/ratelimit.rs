//! Client-side, per-subscription rate limiting.
//!
//! ARM budgets requests per subscription and principal (≈12,000 reads and 1,200 writes per
//! hour). Thousands of CRs resyncing at once must slow down, not fail, so every request
//! first takes a token from its subscription's read or write bucket. The bucket hands out
//! reservations in order (the balance may go negative), which spaces requests evenly.
//!
//! Responses carry `x-ms-ratelimit-remaining-subscription-reads/writes`; the last values
//! seen are kept per subscription so the engine can adapt its resync rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

use super::config::{BucketConfig, RateLimitConfig};

/// Whether a request counts against the read or the write budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestClass {
    /// GET/HEAD.
    Read,
    /// PUT, PATCH, POST, DELETE.
    Write,
}

impl RequestClass {
    /// ARM counts GET (and HEAD) as reads, everything else as writes.
    pub fn of(method: &reqwest::Method) -> Self {
        if method == reqwest::Method::GET || method == reqwest::Method::HEAD {
            Self::Read
        } else {
            Self::Write
        }
    }
}

/// The remaining ARM quota last reported for a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemainingQuota {
    /// `x-ms-ratelimit-remaining-subscription-reads`, if ever seen.
    pub reads: Option<u32>,
    /// `x-ms-ratelimit-remaining-subscription-writes`, if ever seen.
    pub writes: Option<u32>,
    /// When the last of these values was recorded.
    pub observed_at: Instant,
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
    fn new(cfg: &BucketConfig, now: Instant) -> Self {
        let burst = f64::from(cfg.burst.max(1));
        Self {
            rate: f64::from(cfg.per_hour.max(1)) / 3600.0,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token and returns how long the caller must wait before using it, or —
    /// when that wait would exceed `max_wait` — takes nothing and returns `Err(wait)`.
    fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
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
    reads: Bucket,
    writes: Bucket,
    /// Set after a 429: no request to this subscription before then.
    paused_until: Option<Instant>,
    remaining: Option<RemainingQuota>,
}

/// Per-subscription token buckets plus the last remaining-quota headers seen.
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

    fn with_sub<T>(&self, subscription: &str, f: impl FnOnce(&mut SubscriptionState) -> T) -> T {
        let now = Instant::now();
        // A poisoned lock only means another task panicked mid-update; the counters are
        // still usable.
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        let state = subs
            .entry(subscription.to_ascii_lowercase())
            .or_insert_with(|| SubscriptionState {
                reads: Bucket::new(&self.config.reads, now),
                writes: Bucket::new(&self.config.writes, now),
                paused_until: None,
                remaining: None,
            });
        f(state)
    }

    /// Reserves a token and returns the wait before the request may be sent. When the
    /// wait would exceed `max_wait`, nothing is reserved and `Err(wait)` is returned: the
    /// caller should requeue rather than hold a worker that long.
    pub fn reserve(&self, subscription: &str, class: RequestClass) -> Result<Duration, Duration> {
        let now = Instant::now();
        let max_wait = self.config.max_wait;
        self.with_sub(subscription, |s| {
            let pause = s
                .paused_until
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or_default();
            if pause > max_wait {
                return Err(pause);
            }
            let wait = match class {
                RequestClass::Read => s.reads.reserve(now, max_wait)?,
                RequestClass::Write => s.writes.reserve(now, max_wait)?,
            };
            Ok(wait.max(pause))
        })
    }

    /// Waits for a token; `Err(wait)` when the wait would exceed `max_wait`.
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
        let until = Instant::now() + wait;
        self.with_sub(subscription, |s| {
            s.paused_until = Some(s.paused_until.map_or(until, |t| t.max(until)));
        });
    }

    /// Records the remaining-quota headers of a response, if present.
    pub fn record(&self, subscription: &str, headers: &HeaderMap) {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        let reads = num("x-ms-ratelimit-remaining-subscription-reads");
        let writes = num("x-ms-ratelimit-remaining-subscription-writes");
        if reads.is_none() && writes.is_none() {
            return;
        }
        self.with_sub(subscription, |s| {
            let prev = s.remaining;
            s.remaining = Some(RemainingQuota {
                reads: reads.or(prev.and_then(|p| p.reads)),
                writes: writes.or(prev.and_then(|p| p.writes)),
                observed_at: Instant::now(),
            });
        });
    }

    /// The last remaining quota ARM reported for `subscription`.
    pub fn remaining(&self, subscription: &str) -> Option<RemainingQuota> {
        let subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        subs.get(&subscription.to_ascii_lowercase())
            .and_then(|s| s.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn limiter(per_hour: u32, burst: u32) -> RateLimiter {
        let b = BucketConfig { per_hour, burst };
        RateLimiter::new(RateLimitConfig {
            reads: b.clone(),
            writes: b,
            max_wait: Duration::from_secs(60),
        })
    }

    #[test]
    fn burst_then_spaced() {
        // 3600/h = 1 per second, burst 2.
        let l = limiter(3600, 2);
        assert_eq!(l.reserve("s", RequestClass::Write).unwrap(), Duration::ZERO);
        assert_eq!(l.reserve("s", RequestClass::Write).unwrap(), Duration::ZERO);
        let third = l.reserve("s", RequestClass::Write).unwrap();
        let fourth = l.reserve("s", RequestClass::Write).unwrap();
        assert!(third > Duration::from_millis(900) && third <= Duration::from_secs(1));
        assert!(fourth > Duration::from_millis(1900) && fourth <= Duration::from_secs(2));
        // Reads have their own bucket, subscriptions too (case-insensitively shared).
        assert_eq!(l.reserve("s", RequestClass::Read).unwrap(), Duration::ZERO);
        assert_eq!(
            l.reserve("other", RequestClass::Write).unwrap(),
            Duration::ZERO
        );
        assert!(l.reserve("S", RequestClass::Write).unwrap() > Duration::from_secs(2));
    }

    #[test]
    fn pause_delays_everything() {
        let l = limiter(3600, 10);
        l.pause("s", Duration::from_secs(5));
        let w = l.reserve("s", RequestClass::Read).unwrap();
        assert!(w > Duration::from_secs(4), "{w:?}");
        assert_eq!(l.reserve("t", RequestClass::Read).unwrap(), Duration::ZERO);
    }

    #[test]
    fn refuses_waits_beyond_max_wait_without_taking_a_token() {
        // 3600/h = 1 per second, burst 1, at most 1.5 s of waiting.
        let l = RateLimiter::new(RateLimitConfig {
            reads: BucketConfig {
                per_hour: 3600,
                burst: 1,
            },
            writes: BucketConfig {
                per_hour: 3600,
                burst: 1,
            },
            max_wait: Duration::from_millis(1500),
        });
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
    fn records_remaining_headers() {
        let l = limiter(3600, 10);
        assert!(l.remaining("s").is_none());
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
        let r = l.remaining("s").unwrap();
        assert_eq!((r.reads, r.writes), (Some(11999), Some(1199)));
    }

    #[test]
    fn classes() {
        assert_eq!(RequestClass::of(&reqwest::Method::GET), RequestClass::Read);
        for m in [
            reqwest::Method::PUT,
            reqwest::Method::POST,
            reqwest::Method::DELETE,
            reqwest::Method::PATCH,
        ] {
            assert_eq!(RequestClass::of(&m), RequestClass::Write);
        }
    }
}
