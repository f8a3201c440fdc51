//! amlops: a Kubernetes operator for Azure Machine Learning inference compute — Azure ML's
//! legacy AKS compute (`InferenceCluster`, `ClusterAttachment`) and the Azure ML extension
//! with `Kubernetes` computes (`AzureMLExtension`, `KubernetesCompute`).
//!
//! - [`crd`]: the four custom resources and their schemas;
//! - [`azure`]: the ARM client (credentials, throttling, long-running operations) and models;
//! - [`engine`]: one reconcile per kind — observe, decide a plan, act, one verdict per failure;
//! - [`controller`]: kube-runtime controllers, leader election, metrics, the Kubernetes store;
//! - [`validate`]: the admission rules offline (`amlops validate`);
//! - [`tls`]: certificate checks and the `azuremlfessl` backup;
//! - [`cli`]: the command line (the only module with clap types).

pub mod azure;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod engine;
pub mod tls;
pub mod validate;
