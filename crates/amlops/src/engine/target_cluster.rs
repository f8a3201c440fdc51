//! The Kubernetes API of a target AKS cluster (not the operator's own cluster), reached with
//! the cluster's user credential (`listClusterUserCredential`; an Entra-only cluster with the
//! operator's token): what the Kubernetes-compute-path engines read and write there
//! (namespaces, `InstanceType` objects, the router Service, the health-check report).

use crate::azure::{ArmClient, AzureError, ResourceId};

/// A client for the cluster's API server, or why there is none.
pub enum Connection {
    /// A client (the API server was not contacted yet).
    Client(kube::Client),
    /// No credential could be had for a reason retrying will not fix soon (refused,
    /// cluster gone): why, in words that quote no secret.
    Unreachable(String),
}

/// A client for `cluster`'s API server.
///
/// # Errors
/// A passing ARM failure of the credential call (throttled, 5xx, busy): retry it after
/// Azure's `Retry-After` through the verdict. Any other failure is
/// [`Connection::Unreachable`].
pub async fn connect(arm: &ArmClient, cluster: &ResourceId) -> Result<Connection, AzureError> {
    let unreachable = |e: AzureError| {
        if e.category().is_retryable() {
            Err(e)
        } else {
            Ok(Connection::Unreachable(format!(
                "no credential for the cluster ({})",
                e.category().as_str()
            )))
        }
    };
    // The kubeconfig is reused a few minutes (each fetch is an ARM POST).
    let credential = match arm.cached_kubeconfig(cluster) {
        Some(k) => k,
        None => match crate::tls::cluster_credential(arm, cluster).await {
            Ok(k) => {
                arm.keep_kubeconfig(cluster, k.clone());
                k
            }
            Err(e) => return unreachable(e),
        },
    };
    let client = if credential.uses_exec_plugin() {
        match arm.aks_entra_token().await {
            Ok(token) => credential.client_with_token(None, &token).await,
            Err(e) => return unreachable(e),
        }
    } else {
        credential.client(None).await
    };
    client.map_or_else(unreachable, |c| Ok(Connection::Client(c)))
}

/// What a failed request to the cluster's API server says, without its body (which may
/// quote what was sent).
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("the API server answered {} {}", s.code, s.reason),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            "the API server cannot be reached (private cluster?)".into()
        }
        _ => "the request to the API server failed".into(),
    }
}

/// What a failed request to the cluster's API server means for the next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Refused for good (a 4xx other than conflict and throttling): sending it again
    /// unchanged cannot help.
    Refused,
    /// The API server was not reached (network, private cluster) or no credential could be
    /// had: retried at the resync pace, not at once.
    Unreachable,
    /// Anything else (5xx, conflict, throttling): retried soon.
    Passing,
}

/// Classifies a failed request to the cluster's API server.
pub fn classify(e: &kube::Error) -> Failure {
    match e {
        kube::Error::Api(s) if (400..500).contains(&s.code) && s.code != 409 && s.code != 429 => {
            Failure::Refused
        }
        kube::Error::Api(_) => Failure::Passing,
        kube::Error::HyperError(_) | kube::Error::Service(_) => Failure::Unreachable,
        _ => Failure::Passing,
    }
}

/// [`describe`], with the API server's own message when it refused the request for good
/// (it names the invalid field). Only for objects that hold no secret.
pub fn describe_refusal(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if classify(e) == Failure::Refused => {
            format!("{} {}: {}", s.code, s.reason, s.message)
        }
        _ => describe(e),
    }
}
