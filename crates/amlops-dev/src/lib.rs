//! amlops' development commands, kept out of the operator and its image: the demo (the
//! operator's main job on the examples, against the built-in Azure emulator) and the
//! benchmark (`BENCHMARKS.md`).

pub mod bench;
pub mod demo;
