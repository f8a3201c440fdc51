//! What the controllers of all four kinds share for the whole process ([`Shared`]: the
//! client, identities, engine settings, metrics and the per-object error backoff), and the
//! error a reconcile fails with. The reconcile itself is generic: [`super::typed`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::Client;
use rand::Rng;

use crate::engine::store::ObjKey;
use crate::engine::{EngineConfig, EngineError};

use super::credentials::Credentials;
use super::metrics::Metrics;

/// Backoff of failed reconciles (per object, doubling, capped).
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First delay.
    pub base: Duration,
    /// Longest delay.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// Delay after the `n`-th consecutive failure (n ≥ 1), before jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(20));
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// What the controllers of all four kinds share for the whole process.
pub struct Shared {
    /// Kubernetes client.
    pub client: Client,
    /// Azure identities.
    pub credentials: Credentials,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Metrics.
    pub metrics: Metrics,
    /// Error backoff.
    pub backoff: Backoff,
    /// Consecutive failures per object, and the retry delay chosen after the last one.
    failures: Mutex<HashMap<ObjKey, (u32, Duration)>>,
}

impl Shared {
    /// Shared state with no failures recorded.
    pub fn new(
        client: Client,
        credentials: Credentials,
        engine: EngineConfig,
        metrics: Metrics,
        backoff: Backoff,
    ) -> Self {
        Self {
            client,
            credentials,
            engine,
            metrics,
            backoff,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjKey, (u32, Duration)>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a re-list, keeps the error backoff of `kind`'s objects only where `live` (the
    /// fresh cache) still has them: deletions during a watch gap get no `Delete` event.
    pub fn retain_failures(&self, kind: &str, live: impl Fn(&ObjKey) -> bool) {
        self.failures()
            .retain(|key, _| key.kind != kind || live(key));
    }

    /// Counts one more consecutive failure of `key` and chooses its retry delay (the
    /// backoff, jittered); returns both. Kept only if `live()` — asked under the lock — says
    /// the object is still in its cache: a failure of an object already gone is not counted.
    pub(super) fn count_failure(
        &self,
        key: &ObjKey,
        live: impl FnOnce() -> bool,
    ) -> (u32, Duration) {
        let mut failures = self.failures();
        if !live() {
            return (1, jitter(self.backoff.delay(1)));
        }
        let entry = failures.entry(key.clone()).or_insert((0, Duration::ZERO));
        entry.0 += 1;
        entry.1 = jitter(self.backoff.delay(entry.0));
        *entry
    }

    /// The retry delay chosen after the last failure of `key`, while it is failing.
    pub(super) fn retry_delay(&self, key: &ObjKey) -> Option<Duration> {
        self.failures().get(key).map(|(_, d)| *d)
    }

    /// Forgets the consecutive failures of `key` (it reconciled, or it is gone).
    pub(super) fn clear_failures(&self, key: &ObjKey) {
        self.failures().remove(key);
    }

    /// Objects in error backoff now (a consecutive failure count is kept for each).
    pub fn failing(&self) -> usize {
        self.failures().len()
    }
}

/// A reconcile that failed and is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The engine failed (Azure or Kubernetes).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A Kubernetes call of the glue failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

impl ReconcileError {
    /// Static label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Engine(e) => e.category(),
            Self::Kube(_) => "Kubernetes",
        }
    }
}

/// ±10 % so that resources created together do not resync together forever.
pub(super) fn jitter(d: Duration) -> Duration {
    if d.is_zero() {
        return d;
    }
    d.mul_f64(rand::rng().random_range(0.9..1.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::default();
        let table = [
            (1, 5),
            (2, 10),
            (3, 20),
            (4, 40),
            (6, 160),
            (7, 300),
            (40, 300),
        ];
        for (n, secs) in table {
            assert_eq!(b.delay(n), Duration::from_secs(secs), "failure {n}");
        }
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(600));
            assert!(
                d >= Duration::from_secs(540) && d <= Duration::from_secs(660),
                "{d:?}"
            );
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
