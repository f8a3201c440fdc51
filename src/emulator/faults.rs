//! Faults on demand (429, 5xx, 409, dropped connections, slow answers, failed LROs) and the
//! per-subscription ARM request budget.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A fault rule: when a request matches, the fault happens (`times` times, or with
/// `probability`, or always when neither is set).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// Assigned by the emulator when the rule is injected.
    #[serde(default)]
    pub id: u64,
    /// Which requests the rule applies to (all when empty).
    #[serde(default, rename = "match")]
    pub matcher: FaultMatch,
    /// What happens.
    pub kind: FaultKind,
    /// How many more times the rule fires; `None` = unlimited.
    #[serde(default)]
    pub times: Option<u32>,
    /// Probability (0..=1) that a matching request is hit.
    #[serde(default)]
    pub probability: Option<f64>,
}

/// Request matcher of a fault rule. Every given field must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultMatch {
    /// HTTP method (case-insensitive).
    pub method: Option<String>,
    /// Substring of the path (case-insensitive).
    pub path: Option<String>,
    /// ARM operation name, e.g. `Microsoft.MachineLearningServices/workspaces/computes/write`
    /// (case-insensitive; a suffix such as `computes/write` also matches).
    pub operation: Option<String>,
}

/// The fault to produce.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum FaultKind {
    /// 429 TooManyRequests with `Retry-After`.
    Throttle {
        /// Seconds announced in `Retry-After` and in the message.
        retry_after_secs: u64,
    },
    /// 500 / 502 / 503.
    Status {
        /// The HTTP status.
        status: u16,
        /// `Retry-After` seconds; 503 sends 1 when unset, the others none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
    /// 409 OperationNotAllowed (AKS busy).
    Busy409,
    /// 403 AuthorizationFailed: the caller's identity lacks a role assignment at the scope.
    Forbidden,
    /// Close the TCP connection without answering.
    DropConnection,
    /// Answer normally after a delay.
    Slow {
        /// Delay in milliseconds.
        ms: u64,
    },
    /// Accept the request, but the long-running operation it starts ends Failed.
    LroFail {
        /// Error code of the failed operation.
        code: String,
        /// Error message of the failed operation.
        message: String,
    },
}

impl FaultKind {
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Throttle { .. } => "Throttle",
            FaultKind::Status { .. } => "Status",
            FaultKind::Busy409 => "Busy409",
            FaultKind::Forbidden => "Forbidden",
            FaultKind::DropConnection => "DropConnection",
            FaultKind::Slow { .. } => "Slow",
            FaultKind::LroFail { .. } => "LroFail",
        }
    }
}

impl FaultMatch {
    fn matches(&self, method: &str, path: &str, operation: &str) -> bool {
        if let Some(m) = &self.method
            && !m.eq_ignore_ascii_case(method)
        {
            return false;
        }
        if let Some(p) = &self.path
            && !path.to_ascii_lowercase().contains(&p.to_ascii_lowercase())
        {
            return false;
        }
        if let Some(o) = &self.operation {
            let (o, op) = (o.to_ascii_lowercase(), operation.to_ascii_lowercase());
            if !(op == o || op.ends_with(&format!("/{o}"))) {
                return false;
            }
        }
        true
    }
}

/// The active fault rules.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
    next_id: u64,
}

impl Faults {
    /// Adds a rule and returns its id.
    pub fn add(&mut self, mut rule: FaultRule) -> u64 {
        self.next_id += 1;
        rule.id = self.next_id;
        self.rules.push(rule);
        self.next_id
    }

    /// Removes one rule; true when it existed.
    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        before != self.rules.len()
    }

    /// Removes all rules.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The active rules.
    pub fn list(&self) -> Vec<FaultRule> {
        self.rules.clone()
    }

    /// The first response-level fault (anything but `LroFail`) that fires for this request.
    pub fn take_response_fault(
        &mut self,
        method: &str,
        path: &str,
        operation: &str,
    ) -> Option<FaultKind> {
        self.take(method, path, operation, |k| {
            !matches!(k, FaultKind::LroFail { .. })
        })
    }

    /// The first `LroFail` that fires for a request starting a long-running operation.
    pub fn take_lro_fault(
        &mut self,
        method: &str,
        path: &str,
        operation: &str,
    ) -> Option<FaultKind> {
        self.take(method, path, operation, |k| {
            matches!(k, FaultKind::LroFail { .. })
        })
    }

    fn take(
        &mut self,
        method: &str,
        path: &str,
        operation: &str,
        kind_ok: impl Fn(&FaultKind) -> bool,
    ) -> Option<FaultKind> {
        let idx = self.rules.iter().position(|r| {
            kind_ok(&r.kind)
                && r.times != Some(0)
                && r.matcher.matches(method, path, operation)
                && r.probability.is_none_or(|p| rand::random::<f64>() < p)
        })?;
        let rule = &mut self.rules[idx];
        let kind = rule.kind.clone();
        if let Some(t) = rule.times.as_mut() {
            *t = t.saturating_sub(1);
            if *t == 0 {
                self.rules.remove(idx);
            }
        }
        Some(kind)
    }
}

/// Per-subscription request budget, like ARM's hourly limits (~12,000 reads and 1,200
/// writes per hour per subscription and principal).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Reads (GET/HEAD) allowed per window.
    pub reads_per_hour: u64,
    /// Writes (PUT/PATCH/POST/DELETE) allowed per window.
    pub writes_per_hour: u64,
    /// Window length in seconds (default 3600).
    #[serde(default = "default_window")]
    pub window_secs: u64,
}

fn default_window() -> u64 {
    3600
}

/// ARM's documented defaults, announced in the ratelimit headers when no budget is set.
pub const DEFAULT_READS: u64 = 12_000;
/// See [`DEFAULT_READS`].
pub const DEFAULT_WRITES: u64 = 1_200;

#[derive(Debug)]
struct Window {
    start: Instant,
    reads: u64,
    writes: u64,
}

/// Outcome of charging a request to the budget.
#[derive(Debug, Clone, Copy)]
pub enum Charge {
    /// Allowed; remaining reads and writes in the window.
    Allowed {
        /// Reads left.
        reads_left: u64,
        /// Writes left.
        writes_left: u64,
    },
    /// Over budget: retry after this many seconds.
    Exceeded {
        /// Seconds until the window resets.
        retry_after_secs: u64,
    },
}

/// Request counters per subscription.
#[derive(Debug, Default)]
pub struct Budgets {
    /// The enforced budget, if any.
    pub budget: Option<Budget>,
    windows: HashMap<String, Window>,
}

impl Budgets {
    /// Counts one request of `subscription`; refuses it when the budget is spent.
    pub fn charge(&mut self, subscription: &str, write: bool, now: Instant) -> Charge {
        let (reads_max, writes_max, window) = match &self.budget {
            Some(b) => (
                b.reads_per_hour,
                b.writes_per_hour,
                Duration::from_secs(b.window_secs.max(1)),
            ),
            None => (DEFAULT_READS, DEFAULT_WRITES, Duration::from_secs(3600)),
        };
        let w = self
            .windows
            .entry(subscription.to_ascii_lowercase())
            .or_insert(Window {
                start: now,
                reads: 0,
                writes: 0,
            });
        if now.duration_since(w.start) >= window {
            *w = Window {
                start: now,
                reads: 0,
                writes: 0,
            };
        }
        let (used, max) = if write {
            (w.writes, writes_max)
        } else {
            (w.reads, reads_max)
        };
        if self.budget.is_some() && used >= max {
            let left = window.saturating_sub(now.duration_since(w.start));
            return Charge::Exceeded {
                retry_after_secs: left.as_secs_f64().ceil().max(1.0) as u64,
            };
        }
        if write {
            w.writes += 1;
        } else {
            w.reads += 1;
        }
        Charge::Allowed {
            reads_left: reads_max.saturating_sub(w.reads),
            writes_left: writes_max.saturating_sub(w.writes),
        }
    }

    /// Forgets all counters.
    pub fn reset(&mut self) {
        self.windows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: FaultKind, times: Option<u32>) -> FaultRule {
        FaultRule {
            id: 0,
            matcher: FaultMatch {
                method: Some("GET".into()),
                path: Some("/computes/".into()),
                operation: None,
            },
            kind,
            times,
            probability: None,
        }
    }

    #[test]
    fn times_are_consumed() {
        let mut f = Faults::default();
        f.add(rule(FaultKind::Busy409, Some(2)));
        assert!(
            f.take_response_fault("GET", "/x/computes/a", "op")
                .is_some()
        );
        assert!(
            f.take_response_fault("PUT", "/x/computes/a", "op")
                .is_none()
        );
        assert!(
            f.take_response_fault("get", "/X/COMPUTES/a", "op")
                .is_some()
        );
        assert!(
            f.take_response_fault("GET", "/x/computes/a", "op")
                .is_none()
        );
        assert!(f.list().is_empty());
    }

    #[test]
    fn lro_faults_are_separate() {
        let mut f = Faults::default();
        let kind = FaultKind::LroFail {
            code: "X".into(),
            message: "y".into(),
        };
        f.add(rule(kind, None));
        assert!(f.take_response_fault("GET", "/computes/a", "op").is_none());
        assert!(f.take_lro_fault("GET", "/computes/a", "op").is_some());
    }

    #[test]
    fn operation_suffix_matches() {
        let m = FaultMatch {
            operation: Some("computes/write".into()),
            ..Default::default()
        };
        assert!(m.matches(
            "PUT",
            "/p",
            "Microsoft.MachineLearningServices/workspaces/computes/write"
        ));
        assert!(!m.matches("PUT", "/p", "Microsoft.X/workspaces/computes/read"));
    }

    #[test]
    fn budget_refuses_when_spent() {
        let mut b = Budgets {
            budget: Some(Budget {
                reads_per_hour: 2,
                writes_per_hour: 1,
                window_secs: 60,
            }),
            ..Default::default()
        };
        let now = Instant::now();
        assert!(matches!(
            b.charge("s", false, now),
            Charge::Allowed { reads_left: 1, .. }
        ));
        assert!(matches!(
            b.charge("s", false, now),
            Charge::Allowed { reads_left: 0, .. }
        ));
        assert!(matches!(b.charge("s", false, now), Charge::Exceeded { .. }));
        assert!(matches!(b.charge("s", true, now), Charge::Allowed { .. }));
        assert!(matches!(
            b.charge("other", false, now),
            Charge::Allowed { .. }
        ));
        let later = now + Duration::from_secs(61);
        assert!(matches!(
            b.charge("s", false, later),
            Charge::Allowed { .. }
        ));
    }
}
