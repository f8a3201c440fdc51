//! Observation hook: the transport reports every HTTP attempt to an [`ArmObserver`] so the
//! operator's metrics module can count requests without this module depending on it.
//! Every label is static: operation names are constants such as `compute.get`, never
//! formatted from resource names.

use std::time::Duration;

/// Status class of one attempt, for a bounded-cardinality metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// 1xx–3xx (ARM only sends 2xx on success).
    Success,
    /// 4xx other than 429.
    ClientError,
    /// 429.
    Throttled,
    /// 5xx.
    ServerError,
    /// No response: connection failure or timeout.
    Error,
}

impl StatusClass {
    /// Classifies an HTTP status.
    pub fn of(status: u16) -> Self {
        match status {
            429 => Self::Throttled,
            400..=499 => Self::ClientError,
            500..=599 => Self::ServerError,
            _ => Self::Success,
        }
    }

    /// `2xx`, `4xx`, `429`, `5xx` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "2xx",
            Self::ClientError => "4xx",
            Self::Throttled => "429",
            Self::ServerError => "5xx",
            Self::Error => "error",
        }
    }
}

/// One HTTP attempt, as reported to an [`ArmObserver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Static operation name, e.g. `compute.get`, `lro.poll`.
    pub operation: &'static str,
    /// HTTP method (`GET`, `PUT`, …).
    pub method: &'static str,
    /// Outcome class.
    pub status: StatusClass,
    /// Time from sending the request to the end of the response body.
    pub duration: Duration,
    /// True when ARM throttled the attempt (429).
    pub throttled: bool,
}

/// Receives one call per HTTP attempt (retries included). Must be cheap and not block.
pub trait ArmObserver: Send + Sync {
    /// Called after each attempt.
    fn on_attempt(&self, attempt: &Attempt);
}

/// The default observer: does nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl ArmObserver for NoopObserver {
    fn on_attempt(&self, _attempt: &Attempt) {}
}

/// Any `Fn(&Attempt)` closure is an observer.
impl<F> ArmObserver for F
where
    F: Fn(&Attempt) + Send + Sync,
{
    fn on_attempt(&self, attempt: &Attempt) {
        self(attempt)
    }
}

/// Static name of a method, for labels.
pub(crate) fn method_str(method: &reqwest::Method) -> &'static str {
    match *method {
        reqwest::Method::GET => "GET",
        reqwest::Method::PUT => "PUT",
        reqwest::Method::POST => "POST",
        reqwest::Method::DELETE => "DELETE",
        reqwest::Method::PATCH => "PATCH",
        reqwest::Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let cases = [
            (200, "2xx"),
            (202, "2xx"),
            (204, "2xx"),
            (400, "4xx"),
            (404, "4xx"),
            (429, "429"),
            (500, "5xx"),
            (503, "5xx"),
        ];
        for (status, want) in cases {
            assert_eq!(StatusClass::of(status).as_str(), want);
        }
        assert_eq!(StatusClass::Error.as_str(), "error");
    }
}
