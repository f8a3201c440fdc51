//! Faults on demand (429, 5xx, 409, dropped connections, slow answers, failed LROs).

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
    /// 400 with this error code and message: Azure refuses the request as it is.
    BadRequest {
        /// Error code (`BadArgument`, `UserError`, …).
        code: String,
        /// Error message.
        message: String,
    },
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
            FaultKind::BadRequest { .. } => "BadRequest",
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
}
