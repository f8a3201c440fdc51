//! The reconcile engine (DESIGN §2, §3): validate → resume → observe → decide → act → report.
//! `decide` is pure; `reconcile` does the I/O through the ARM client and a [`KubeStore`].

pub mod body;
pub mod checks;
pub mod conditions;
pub mod decide;
pub mod desired;
pub mod observe;
pub mod reconcile;
pub mod resync;
pub mod store;

pub use desired::Desired;
pub use reconcile::{Engine, EngineConfig, EngineError, Outcome};
pub use store::{KubeStore, MemoryStore, ObjKey};
