//! The reconcile engine (DESIGN §2, §3): validate → resume → observe → decide → act → report.

pub mod decide;
pub mod desired;
