//! `amlops run`: the Kubernetes controller. One kube-runtime `Controller` per kind, on a
//! typed watch, drives that kind's engine through one generic reconcile ([`typed`]); all
//! four run only while this replica holds the leader Lease and stop together on SIGTERM or
//! when leadership is lost.

pub mod claims;
pub mod cluster;
pub mod compute;
pub mod credentials;
pub mod events;
pub mod extension;
mod http;
pub mod kinds;
pub mod kube_store;
pub mod leader;
pub mod metrics;
pub mod reconciler;
mod run;
pub mod typed;

pub use http::Readiness;
pub use kinds::Kind;
pub use leader::{Leadership, LeaseConfig};
pub use metrics::Metrics;
pub use reconciler::Backoff;
pub use run::{Operator, Options, Running};
