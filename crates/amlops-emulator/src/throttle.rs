//! ARM's request throttling, per subscription, under either of its models
//! (<https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling>):
//!
//! - **token buckets** (since 2024): per subscription and principal a bucket per operation
//!   type (reads 250 tokens refilled at 25 per second, writes and deletes 200 at 10 per
//!   second) and a global subscription bucket 15 times that across principals. Responses
//!   carry `x-ms-ratelimit-remaining-subscription-{reads|writes|deletes}` and
//!   `x-ms-ratelimit-remaining-subscription-global-{…}` for the request's type (as real
//!   responses do: `…-reads: 249` and `…-global-reads: 3749` on a GET). Over the limit: 429
//!   `SubscriptionRequestsThrottled`, "Number of 'read' requests for subscription '{s}'
//!   actor '{oid}' exceeded. Please try again after '{n}' seconds after additional tokens are
//!   available. Refer to https://aka.ms/arm-throttling for additional information." (the
//!   wording of real 429s as reported by Azure SDK users), `Retry-After` the seconds until a
//!   token is back.
//! - **hourly counts** (the older model): 12,000 reads, 1,200 writes, 15,000 deletes per hour;
//!   the headers count down the hour; over the limit: 429 `TooManyRequests` with Azure's
//!   wording ("The request is being throttled as the limit has been reached for operation
//!   …") and `Retry-After` the rest of the window.
//!
//! The model is chosen per subscription ([`Throttling::subscriptions`]) with a default for the
//! others. Limits are enforced only when [`Throttling::enforce`] is set: tests and the
//! benchmark burst thousands of requests that ARM would pace, so by default the emulator
//! counts and reports without refusing. [`Throttle::take`] lets a test play "another tool"
//! spending tokens of the same principal (or, `global`, of other principals).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The principal the emulator reports in its token-bucket 429s (it has one bearer token,
/// hence one principal). Emulator value.
pub const PRINCIPAL_ID: &str = "5e1f0a3c-0000-4000-8000-00000000a3a1";

/// A class of request, as ARM counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Class {
    /// GET/HEAD.
    Reads,
    /// PUT, PATCH, POST.
    Writes,
    /// DELETE.
    Deletes,
}

impl Class {
    const ALL: [Self; 3] = [Self::Reads, Self::Writes, Self::Deletes];

    /// ARM's class of an HTTP method.
    pub fn of(method: &str) -> Self {
        if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD") {
            Self::Reads
        } else if method.eq_ignore_ascii_case("DELETE") {
            Self::Deletes
        } else {
            Self::Writes
        }
    }

    /// `reads`, `writes`, `deletes` (header names).
    pub fn plural(self) -> &'static str {
        match self {
            Self::Reads => "reads",
            Self::Writes => "writes",
            Self::Deletes => "deletes",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Self::Reads => "read",
            Self::Writes => "write",
            Self::Deletes => "delete",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One token bucket: `bucket` tokens when full, `refillPerSecond` added per second.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BucketFigures {
    /// Tokens when full.
    pub bucket: f64,
    /// Tokens added per second.
    pub refill_per_second: f64,
}

/// ARM's token-bucket figures per subscription and principal.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct TokenBuckets {
    /// Reads.
    pub reads: BucketFigures,
    /// Writes.
    pub writes: BucketFigures,
    /// Deletes.
    pub deletes: BucketFigures,
    /// The global subscription bucket as a multiple of one principal's.
    pub global_factor: f64,
}

impl Default for TokenBuckets {
    fn default() -> Self {
        let b = |bucket, refill_per_second| BucketFigures {
            bucket,
            refill_per_second,
        };
        Self {
            reads: b(250.0, 25.0),
            writes: b(200.0, 10.0),
            deletes: b(200.0, 10.0),
            global_factor: 15.0,
        }
    }
}

impl TokenBuckets {
    fn of(&self, class: Class) -> BucketFigures {
        match class {
            Class::Reads => self.reads,
            Class::Writes => self.writes,
            Class::Deletes => self.deletes,
        }
    }
}

/// ARM's older hourly counts per subscription and principal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Reads (GET/HEAD) allowed per window.
    pub reads_per_hour: u64,
    /// Writes (PUT/PATCH/POST) allowed per window.
    pub writes_per_hour: u64,
    /// Deletes allowed per window (default 15,000).
    #[serde(default = "default_deletes")]
    pub deletes_per_hour: u64,
    /// Window length in seconds (default 3600).
    #[serde(default = "default_window")]
    pub window_secs: u64,
}

fn default_window() -> u64 {
    3600
}

fn default_deletes() -> u64 {
    15_000
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            reads_per_hour: 12_000,
            writes_per_hour: 1_200,
            deletes_per_hour: default_deletes(),
            window_secs: default_window(),
        }
    }
}

impl Budget {
    fn of(&self, class: Class) -> u64 {
        match class {
            Class::Reads => self.reads_per_hour,
            Class::Writes => self.writes_per_hour,
            Class::Deletes => self.deletes_per_hour,
        }
    }
}

/// The throttling model of a subscription, with its figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "model", rename_all = "camelCase")]
pub enum Model {
    /// Token buckets (ARM since 2024).
    TokenBucket(TokenBuckets),
    /// Hourly counts (the older model).
    Hourly(Budget),
}

impl Default for Model {
    fn default() -> Self {
        Self::TokenBucket(TokenBuckets::default())
    }
}

/// How the emulator throttles ARM requests (config file `throttling:`, admin
/// `PUT /admin/throttling`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Throttling {
    /// Model of the subscriptions not listed below.
    #[serde(rename = "default")]
    pub default_model: Model,
    /// Model per subscription id (case-insensitive).
    pub subscriptions: BTreeMap<String, Model>,
    /// Refuse requests over the limits with 429; otherwise only count and report them.
    pub enforce: bool,
}

impl Throttling {
    /// Every subscription under `model`, enforced.
    pub fn enforced(model: Model) -> Self {
        Self {
            default_model: model,
            subscriptions: BTreeMap::new(),
            enforce: true,
        }
    }

    fn model_of(&self, subscription: &str) -> &Model {
        self.subscriptions
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(subscription))
            .map_or(&self.default_model, |(_, m)| m)
    }
}

/// What a response reports and, when refused, how.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    /// The request's class.
    pub class: Class,
    /// Remaining-requests headers to send: (name, value).
    pub headers: Vec<(String, u64)>,
    /// Set when the request is refused: the 429 to answer.
    pub refused: Option<Refusal>,
}

/// A 429 answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Seconds for `Retry-After`.
    pub retry_after_secs: u64,
    /// ARM error code.
    pub code: &'static str,
    /// ARM error message.
    pub message: String,
}

#[derive(Debug)]
enum Counter {
    Buckets {
        tokens: [f64; 3],
        global: [f64; 3],
        last: Instant,
    },
    Hour {
        start: Instant,
        used: [u64; 3],
    },
}

/// Per-subscription counters under the configured models.
#[derive(Debug, Default)]
pub struct Throttle {
    /// The configuration.
    pub config: Throttling,
    counters: HashMap<String, Counter>,
}

impl Throttle {
    /// Counters for `config`.
    pub fn new(config: Throttling) -> Self {
        Self {
            config,
            counters: HashMap::new(),
        }
    }

    /// Replaces the configuration; every counter restarts full.
    pub fn set(&mut self, config: Throttling) {
        self.config = config;
        self.counters.clear();
    }

    /// Counters restart full.
    pub fn reset(&mut self) {
        self.counters.clear();
    }

    /// The counter of `subscription`, refilled up to `now`.
    fn counter(&mut self, subscription: &str, now: Instant) -> (&Model, &mut Counter) {
        let model = self.config.model_of(subscription);
        let c = self
            .counters
            .entry(subscription.to_ascii_lowercase())
            .or_insert_with(|| match model {
                Model::TokenBucket(tb) => Counter::Buckets {
                    tokens: Class::ALL.map(|c| tb.of(c).bucket),
                    global: Class::ALL.map(|c| tb.of(c).bucket * tb.global_factor),
                    last: now,
                },
                Model::Hourly(_) => Counter::Hour {
                    start: now,
                    used: [0; 3],
                },
            });
        match (model, &mut *c) {
            (
                Model::TokenBucket(tb),
                Counter::Buckets {
                    tokens,
                    global,
                    last,
                },
            ) => {
                let dt = now.saturating_duration_since(*last).as_secs_f64();
                for class in Class::ALL {
                    let f = tb.of(class);
                    let i = class.index();
                    tokens[i] = (tokens[i] + dt * f.refill_per_second).min(f.bucket);
                    global[i] = (global[i] + dt * f.refill_per_second * tb.global_factor)
                        .min(f.bucket * tb.global_factor);
                }
                *last = now;
            }
            (Model::Hourly(b), Counter::Hour { start, used }) => {
                let window = Duration::from_secs(b.window_secs.max(1));
                if now.saturating_duration_since(*start) >= window {
                    *start = now;
                    *used = [0; 3];
                }
            }
            // The configuration changed under a counter (only through `set`, which clears).
            _ => {}
        }
        (model, c)
    }

    /// Charges one request of `method` to `subscription`: what to report, and whether ARM
    /// would refuse it (only refused when enforcing).
    pub fn charge(
        &mut self,
        subscription: &str,
        method: &str,
        operation: &str,
        now: Instant,
    ) -> Charge {
        self.assess(subscription, method, operation, now, true)
    }

    /// What a request of `method` would be told, without charging it (responses that fail
    /// before ARM counts them: injected faults).
    pub fn peek(&mut self, subscription: &str, method: &str, now: Instant) -> Charge {
        let mut c = self.assess(subscription, method, "", now, false);
        c.refused = None;
        c
    }

    fn assess(
        &mut self,
        subscription: &str,
        method: &str,
        operation: &str,
        now: Instant,
        consume: bool,
    ) -> Charge {
        let class = Class::of(method);
        let i = class.index();
        let enforce = self.config.enforce;
        let (model, counter) = self.counter(subscription, now);
        match (model, counter) {
            (Model::TokenBucket(tb), Counter::Buckets { tokens, global, .. }) => {
                let f = tb.of(class);
                let has_global = tb.global_factor > 0.0;
                let short_principal = tokens[i] < 1.0;
                let short_global = has_global && global[i] < 1.0;
                let refused = (enforce && (short_principal || short_global)).then(|| {
                    let wait = |level: f64, rate: f64| (1.0 - level).max(0.0) / rate.max(1e-9);
                    let mut secs: f64 = 0.0;
                    if short_principal {
                        secs = secs.max(wait(tokens[i], f.refill_per_second));
                    }
                    if short_global {
                        secs = secs.max(wait(global[i], f.refill_per_second * tb.global_factor));
                    }
                    let n = secs.ceil().max(1.0) as u64;
                    // Real wording for the principal's bucket; the global bucket's refusal
                    // has no known wording: the emulator's, without the actor.
                    let actor = if short_principal {
                        format!(" actor '{PRINCIPAL_ID}'")
                    } else {
                        String::new()
                    };
                    Refusal {
                        retry_after_secs: n,
                        code: "SubscriptionRequestsThrottled",
                        message: format!(
                            "Number of '{}' requests for subscription '{subscription}'{actor} exceeded. Please try again after '{n}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling for additional information.",
                            class.singular()
                        ),
                    }
                });
                if consume && refused.is_none() {
                    tokens[i] = (tokens[i] - 1.0).max(0.0);
                    if has_global {
                        global[i] = (global[i] - 1.0).max(0.0);
                    }
                }
                let mut headers = vec![(
                    format!("x-ms-ratelimit-remaining-subscription-{}", class.plural()),
                    tokens[i].floor() as u64,
                )];
                if has_global {
                    headers.push((
                        format!(
                            "x-ms-ratelimit-remaining-subscription-global-{}",
                            class.plural()
                        ),
                        global[i].floor() as u64,
                    ));
                }
                Charge {
                    class,
                    headers,
                    refused,
                }
            }
            (Model::Hourly(b), Counter::Hour { start, used }) => {
                let max = b.of(class);
                let refused = (enforce && used[i] >= max).then(|| {
                    let window = Duration::from_secs(b.window_secs.max(1));
                    let left = window.saturating_sub(now.saturating_duration_since(*start));
                    let n = left.as_secs_f64().ceil().max(1.0) as u64;
                    Refusal {
                        retry_after_secs: n,
                        code: "TooManyRequests",
                        message: super::errors::msg::throttled(operation, n),
                    }
                });
                if consume && refused.is_none() {
                    used[i] += 1;
                }
                Charge {
                    class,
                    headers: vec![(
                        format!("x-ms-ratelimit-remaining-subscription-{}", class.plural()),
                        max.saturating_sub(used[i]),
                    )],
                    refused,
                }
            }
            _ => Charge {
                class,
                headers: Vec::new(),
                refused: None,
            },
        }
    }

    /// "Another tool" spends `count` tokens of `class` in `subscription`: from the same
    /// principal's bucket (and the global one), or with `global`, from the global bucket
    /// only (another principal). Under the hourly model the count of the window grows.
    pub fn take(
        &mut self,
        subscription: &str,
        class: Class,
        count: u64,
        global_only: bool,
        now: Instant,
    ) {
        let i = class.index();
        let (_, counter) = self.counter(subscription, now);
        match counter {
            Counter::Buckets { tokens, global, .. } => {
                if !global_only {
                    tokens[i] = (tokens[i] - count as f64).max(0.0);
                }
                global[i] = (global[i] - count as f64).max(0.0);
            }
            Counter::Hour { used, .. } => used[i] = used[i].saturating_add(count),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(c: &Charge, name: &str) -> Option<u64> {
        c.headers
            .iter()
            .find(|(n, _)| n == &format!("x-ms-ratelimit-remaining-subscription-{name}"))
            .map(|(_, v)| *v)
    }

    #[test]
    fn token_buckets_report_refuse_and_refill() {
        let mut t = Throttle::new(Throttling::enforced(Model::default()));
        let t0 = Instant::now();
        let c = t.charge("s", "GET", "op", t0);
        assert_eq!(header(&c, "reads"), Some(249));
        assert_eq!(header(&c, "global-reads"), Some(3749));
        assert_eq!(header(&c, "writes"), None, "only the request's class");
        for _ in 0..249 {
            assert!(t.charge("s", "GET", "op", t0).refused.is_none());
        }
        let c = t.charge("s", "get", "op", t0);
        let r = c.refused.clone().expect("251st read at once is refused");
        assert_eq!(r.retry_after_secs, 1);
        assert_eq!(r.code, "SubscriptionRequestsThrottled");
        assert!(
            r.message
                .starts_with("Number of 'read' requests for subscription 's' actor '5e1f0a3c-"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains(
                "Please try again after '1' seconds after additional tokens are available."
            )
        );
        assert_eq!(header(&c, "reads"), Some(0));
        // Writes and deletes have their own buckets; another subscription its own.
        let w = t.charge("s", "PUT", "op", t0);
        assert_eq!(
            (header(&w, "writes"), header(&w, "global-writes")),
            (Some(199), Some(2999))
        );
        assert_eq!(
            header(&t.charge("s", "DELETE", "op", t0), "deletes"),
            Some(199)
        );
        assert!(t.charge("other", "GET", "op", t0).refused.is_none());
        // 25 reads per second come back.
        let c = t.charge("s", "GET", "op", t0 + Duration::from_secs(2));
        assert!(c.refused.is_none());
        assert_eq!(header(&c, "reads"), Some(49));
        assert_eq!(
            header(
                &t.charge("s", "GET", "op", t0 + Duration::from_secs(60)),
                "reads"
            ),
            Some(249),
            "full again, never more than the bucket"
        );
    }

    #[test]
    fn global_bucket_is_shared_by_principals() {
        let mut t = Throttle::new(Throttling::enforced(Model::default()));
        let t0 = Instant::now();
        // Other principals spent the global bucket: our own one is full, still refused.
        t.take("s", Class::Reads, 3_750, true, t0);
        let c = t.charge("s", "GET", "op", t0);
        assert_eq!(header(&c, "global-reads"), Some(0));
        let r = c.refused.unwrap();
        assert!(!r.message.contains("actor"), "{}", r.message);
        // The global bucket refills 15 × 25 per second.
        let c = t.charge("s", "GET", "op", t0 + Duration::from_secs(1));
        assert!(c.refused.is_none());
        assert_eq!(header(&c, "reads"), Some(249));
        assert_eq!(header(&c, "global-reads"), Some(374));
    }

    #[test]
    fn hourly_counts_report_refuse_and_reset() {
        let b = Budget {
            reads_per_hour: 2,
            writes_per_hour: 1,
            deletes_per_hour: 1,
            window_secs: 60,
        };
        let mut t = Throttle::new(Throttling::enforced(Model::Hourly(b)));
        let t0 = Instant::now();
        assert_eq!(header(&t.charge("s", "GET", "op", t0), "reads"), Some(1));
        let c = t.charge("s", "GET", "op", t0);
        assert_eq!(header(&c, "reads"), Some(0));
        assert!(c.refused.is_none());
        assert!(header(&c, "global-reads").is_none());
        let r = t
            .charge("s", "GET", "Microsoft.X/read", t0 + Duration::from_secs(20))
            .refused
            .unwrap();
        assert_eq!((r.code, r.retry_after_secs), ("TooManyRequests", 40));
        assert_eq!(
            r.message,
            "The request is being throttled as the limit has been reached for operation 'Microsoft.X/read'. Please try again after '40' seconds."
        );
        assert!(t.charge("s", "PUT", "op", t0).refused.is_none());
        assert!(t.charge("s", "DELETE", "op", t0).refused.is_none());
        assert!(t.charge("s", "DELETE", "op", t0).refused.is_some());
        assert!(
            t.charge("s", "GET", "op", t0 + Duration::from_secs(61))
                .refused
                .is_none()
        );
    }

    #[test]
    fn models_per_subscription_and_reporting_without_enforcing() {
        let mut cfg = Throttling::default();
        cfg.subscriptions
            .insert("OLD".into(), Model::Hourly(Budget::default()));
        let mut t = Throttle::new(cfg);
        let t0 = Instant::now();
        assert_eq!(
            header(&t.charge("old", "GET", "op", t0), "reads"),
            Some(11_999)
        );
        let tb = t.charge("new", "GET", "op", t0);
        assert_eq!(header(&tb, "reads"), Some(249));
        // Not enforced: counted down to 0, never refused.
        for _ in 0..500 {
            assert!(t.charge("new", "GET", "op", t0).refused.is_none());
        }
        assert_eq!(header(&t.charge("new", "GET", "op", t0), "reads"), Some(0));
    }

    #[test]
    fn config_round_trips() {
        let yaml = "default: {model: hourly, readsPerHour: 100, writesPerHour: 10}\nsubscriptions:\n  sub-a: {model: tokenBucket}\n  sub-b: {model: tokenBucket, reads: {bucket: 20, refillPerSecond: 2}}\nenforce: true\n";
        let t: Throttling = serde_saphyr::from_str(yaml).unwrap();
        assert!(t.enforce);
        assert_eq!(
            t.default_model,
            Model::Hourly(Budget {
                reads_per_hour: 100,
                writes_per_hour: 10,
                ..Budget::default()
            })
        );
        assert_eq!(t.subscriptions["sub-a"], Model::default());
        let Model::TokenBucket(b) = &t.subscriptions["sub-b"] else {
            panic!()
        };
        assert_eq!(b.reads.bucket, 20.0);
        assert_eq!(b.writes, TokenBuckets::default().writes);
        let back: Throttling = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
