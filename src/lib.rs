//! amlops: a Kubernetes operator for Azure Machine Learning inference clusters.
#![warn(missing_docs)]

pub mod azure;
pub mod azure_args;
pub mod bench;
pub mod controller;
pub mod crd;
pub mod demo;
pub mod emulator;
pub mod engine;
pub mod fake_kube;
pub mod tls;
pub mod validate;
