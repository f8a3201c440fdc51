//! TLS safety for detach/reattach: PEM checks and the `azuremlfessl` backup.

mod backup;
mod pem;

pub use backup::{
    AZUREMLFESSL, RUN_COMMAND_DEADLINE, backup_secret, cert_and_key_from_secret, cluster_client,
    cluster_credential, read_azuremlfessl, read_azuremlfessl_by_run_command,
    read_azuremlfessl_from_aks, read_azuremlfessl_with,
};
pub use pem::{CertInfo, check_serving, verify_pair};

/// Why TLS material could not be used; `reason()` is the Stalled condition reason.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A referenced Secret does not exist.
    #[error("Secret {0} not found")]
    SecretNotFound(String),
    /// The certificate or key is malformed or they do not match.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// The cluster's `azuremlfessl` could not be read.
    #[error("cannot read the serving certificate from the AKS cluster: {0}")]
    BackupFailed(String),
    /// Reading `azuremlfessl` failed in a way that usually passes (throttled, 5xx, Azure
    /// busy): retry later instead of asking a person — not before the `Retry-After` Azure
    /// gave, when it gave one.
    #[error("cannot read the serving certificate from the AKS cluster right now: {0}")]
    Unavailable(String, Option<std::time::Duration>),
}

impl TlsError {
    /// Condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SecretNotFound(_) => "SecretNotFound",
            Self::InvalidCertificate(_) => "InvalidCertificate",
            Self::BackupFailed(_) | Self::Unavailable(..) => "TLSBackupFailed",
        }
    }

    /// Whether trying again later is likely to work.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(..))
    }

    /// The earliest moment trying again is welcome, when Azure said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Unavailable(_, after) => *after,
            _ => None,
        }
    }
}
