//! The reconcile engine: observe → decide → act → report.
//!
//! - [`observe`] makes every read a reconcile needs, once (the in-flight operation's poll
//!   included);
//! - [`decide::decide`] is pure: `(desired, observed, status) →` [`plan::Plan`] — the new
//!   status, at most one [`plan::Write`], the events, the requeue — and
//!   [`settle::settle`] completes the plan from the write's result;
//! - [`verdict`] turns every Azure failure into retry, wait or a `Stalled` reason;
//! - `act` executes the write and decides nothing; [`reconcile`] ties them together
//!   through the ARM client and a [`KubeStore`].

mod act;
pub mod azureml_extension;
pub mod body;
pub mod checks;
pub mod conditions;
pub mod decide;
pub mod desired;
pub mod kubernetes_compute;
pub mod listing;
pub mod observe;
pub mod plan;
pub mod reconcile;
pub mod resync;
pub mod settle;
pub mod store;
pub mod target_cluster;
pub mod verdict;
pub mod versions;

pub use desired::Desired;
pub use reconcile::{Engine, EngineConfig, EngineError, Outcome};
pub use store::{KubeStore, ObjKey};
