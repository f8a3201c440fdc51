//! kstatus conditions (Ready, Reconciling, Stalled) so Flux and Argo CD read health.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{AzureMlExtensionStatus, ClusterStatus, KubernetesComputeStatus};

/// A status with kstatus conditions and `observedGeneration` (every kind of amlops).
pub trait Conditioned {
    /// The conditions.
    fn conditions(&self) -> &[Condition];
    /// The conditions, to change.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// `observedGeneration`.
    fn observed_generation(&self) -> Option<i64>;
    /// Set `observedGeneration`.
    fn set_observed_generation(&mut self, generation: Option<i64>);
    /// What else a stall records (the legacy kinds' phase `Pending` if none yet).
    fn on_stall(&mut self) {}
}

macro_rules! conditioned {
    () => {
        fn conditions(&self) -> &[Condition] {
            &self.conditions
        }
        fn conditions_mut(&mut self) -> &mut Vec<Condition> {
            &mut self.conditions
        }
        fn observed_generation(&self) -> Option<i64> {
            self.observed_generation
        }
        fn set_observed_generation(&mut self, generation: Option<i64>) {
            self.observed_generation = generation;
        }
    };
}

impl Conditioned for ClusterStatus {
    conditioned!();
    fn on_stall(&mut self) {
        if self.phase.is_none() {
            self.phase = Some(crate::crd::Phase::Pending);
        }
    }
}

impl Conditioned for KubernetesComputeStatus {
    conditioned!();
}

impl Conditioned for AzureMlExtensionStatus {
    conditioned!();
}

/// Overall health to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Azure matches the spec.
    Ready,
    /// Work in progress.
    Progressing,
    /// User action needed.
    Stalled,
    /// Waiting for the user on purpose (ReattachPending): not ready, not stalled.
    Waiting,
}

fn set(
    status: &mut impl Conditioned,
    type_: &str,
    on: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let value = if on { "True" } else { "False" };
    let now = Time(jiff::Timestamp::now());
    match status
        .conditions_mut()
        .iter_mut()
        .find(|c| c.type_ == type_)
    {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = now;
            }
            c.status = value.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => status.conditions_mut().push(Condition {
            type_: type_.into(),
            status: value.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
}

/// Set the three conditions for `health`, with `reason`/`message` on the one that is true.
pub fn apply(
    status: &mut impl Conditioned,
    health: Health,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let (ready, reconciling, stalled) = match health {
        Health::Ready => (true, false, false),
        Health::Progressing => (false, true, false),
        Health::Stalled => (false, false, true),
        Health::Waiting => (false, false, false),
    };
    set(status, "Ready", ready, reason, message, generation);
    set(
        status,
        "Reconciling",
        reconciling,
        if reconciling { reason } else { "Idle" },
        if reconciling { message } else { "" },
        generation,
    );
    set(
        status,
        "Stalled",
        stalled,
        if stalled { reason } else { "Healthy" },
        if stalled { message } else { "" },
        generation,
    );
    status.set_observed_generation(generation);
}

/// Record `stall` in `status` — Stalled=True with its reason and message, phase `Pending`
/// if none was recorded yet — the one way both the engine and the controller glue stall a
/// resource. Returns whether this is news (not the stall already recorded for this
/// generation): only news gets a Warning event.
pub fn record_stall(
    status: &mut impl Conditioned,
    stall: &super::verdict::Stall,
    generation: Option<i64>,
) -> bool {
    let already = status.conditions().iter().any(|c| {
        c.type_ == "Stalled"
            && c.status == "True"
            && c.reason == stall.reason
            && c.message == stall.message
    }) && status.observed_generation() == generation;
    status.on_stall();
    apply(
        status,
        Health::Stalled,
        stall.reason,
        &stall.message,
        generation,
    );
    !already
}
