//! Retry decisions: which responses are retried, how long to wait (`Retry-After` and its
//! millisecond variants, or capped exponential backoff with full jitter).

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::HeaderMap;

use super::config::RetryPolicy;

/// Statuses worth retrying: timeouts, throttling and server-side failures. Every other
/// 4xx is a property of the request and would fail again.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// The wait a response asks for. `retry-after-ms` and `x-ms-retry-after-ms` are preferred
/// (finer-grained), then `Retry-After` as delta-seconds or an HTTP date (RFC 9110,
/// section 10.2.3).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// [`retry_after`] with an explicit "now", for tests of the HTTP-date form.
pub fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = header_str(headers, name).and_then(|v| v.trim().parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    let value = header_str(headers, "retry-after")?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    // A date in the past means "now".
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Parses an HTTP date (IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let ts = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let secs = u64::try_from(ts.as_second()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Upper bound of the backoff before retry number `retry` (0-based):
/// `min(max_backoff, initial_backoff * 2^retry)`.
pub fn backoff_cap(policy: &RetryPolicy, retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
    policy
        .initial_backoff
        .checked_mul(factor)
        .unwrap_or(policy.max_backoff)
        .min(policy.max_backoff)
}

/// Full-jitter backoff: uniform in `[0, backoff_cap]`, so that many clients throttled at
/// the same moment do not retry in lockstep.
pub fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let cap = backoff_cap(policy, retry);
    let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn retry_after_forms() {
        // 1994-11-06T08:49:37Z
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<Duration>);
        let cases: &[Case] = &[
            (&[], None),
            (&[("Retry-After", "7")], Some(Duration::from_secs(7))),
            (&[("Retry-After", " 0 ")], Some(Duration::ZERO)),
            (
                &[("retry-after-ms", "250")],
                Some(Duration::from_millis(250)),
            ),
            (
                &[("x-ms-retry-after-ms", "1500")],
                Some(Duration::from_millis(1500)),
            ),
            // The millisecond header wins over the seconds one.
            (
                &[("Retry-After", "30"), ("retry-after-ms", "20")],
                Some(Duration::from_millis(20)),
            ),
            (
                &[("Retry-After", "30"), ("x-ms-retry-after-ms", "40")],
                Some(Duration::from_millis(40)),
            ),
            // A malformed ms header falls back to Retry-After.
            (
                &[("Retry-After", "2"), ("retry-after-ms", "soon")],
                Some(Duration::from_secs(2)),
            ),
            (
                &[("Retry-After", "Sun, 06 Nov 1994 08:49:47 GMT")],
                Some(Duration::from_secs(10)),
            ),
            // In the past: retry now.
            (
                &[("Retry-After", "Sun, 06 Nov 1994 08:49:00 GMT")],
                Some(Duration::ZERO),
            ),
            (&[("Retry-After", "tomorrow")], None),
            (&[("Retry-After", "-5")], None),
        ];
        for (pairs, want) in cases {
            assert_eq!(retry_after_at(&headers(pairs), now), *want, "{pairs:?}");
        }
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 201, 400, 401, 403, 404, 409, 412, 422, 501, 505] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let policy = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_total: Duration::from_secs(60),
        };
        let caps = [100, 200, 400, 800, 1600, 2000, 2000];
        for (retry, cap) in caps.iter().enumerate() {
            assert_eq!(
                backoff_cap(&policy, retry as u32),
                Duration::from_millis(*cap)
            );
        }
        assert_eq!(backoff_cap(&policy, 200), Duration::from_secs(2));
        // Full jitter: always within [0, cap], and not constant.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let d = backoff(&policy, 3);
            assert!(d <= Duration::from_millis(800));
            seen.insert(d);
        }
        assert!(seen.len() > 10, "jitter should spread the waits");
    }
}
