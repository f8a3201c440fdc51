//! amlops: a Kubernetes operator for Azure Machine Learning inference clusters.
pub mod emulator;
