//! Reading `azuremlfessl` from an AKS cluster and writing the backup Secret.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta};

use super::{TlsError, verify_pair};

/// Secret in which Azure ML's front end keeps the serving certificate and key.
pub const AZUREMLFESSL: &str = "azuremlfessl";

/// The value of `key` as PEM text, if the Secret has it and it is PEM or base64 of PEM.
fn pem_field(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    let text = String::from_utf8(bytes.0.clone()).ok()?;
    if text.contains("-----BEGIN") {
        return Some(text);
    }
    // Some writers store the PEM base64-encoded once more inside `data`.
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    String::from_utf8(decoded)
        .ok()
        .filter(|t| t.contains("-----BEGIN"))
}

/// The keys of a `kubernetes.io/tls` Secret (Kubernetes' `TLSCertKey`, `TLSPrivateKeyKey`).
const TLS_PAIR: (&str, &str) = ("tls.crt", "tls.key");
/// The keys Azure ML writes and reads (`azuremlfessl`, the extension's `sslSecret`).
const AZUREML_PAIR: (&str, &str) = ("cert.pem", "key.pem");

/// Certificate and key PEM from a Secret: `tls.crt`/`tls.key` (kubernetes.io/tls) or
/// `cert.pem`/`key.pem` (Opaque, as Azure ML writes them). Certificate and key always come
/// from the same pair of keys, never one from each; a Secret holding both pairs gives the one
/// its `type` names (`kubernetes.io/tls`: `tls.*`; any other type: `*.pem`).
///
/// # Errors
/// [`TlsError::InvalidCertificate`] when the Secret holds neither pair whole, or the pair it
/// holds is neither PEM nor base64 of PEM. The pair is not verified here ([`verify_pair`]).
pub fn cert_and_key_from_secret(secret: &Secret) -> Result<(String, String), TlsError> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let has = |key: &str| secret.data.as_ref().is_some_and(|d| d.contains_key(key));
    let order = if secret.type_.as_deref() == Some("kubernetes.io/tls") {
        [TLS_PAIR, AZUREML_PAIR]
    } else {
        [AZUREML_PAIR, TLS_PAIR]
    };
    let Some((cert_key, key_key)) = order.into_iter().find(|(c, k)| has(c) && has(k)) else {
        return Err(TlsError::InvalidCertificate(format!(
            "Secret {name} must hold tls.crt and tls.key (type kubernetes.io/tls) or cert.pem and key.pem, as PEM"
        )));
    };
    match (pem_field(secret, cert_key), pem_field(secret, key_key)) {
        (Some(cert), Some(key)) => Ok((cert, key)),
        _ => Err(TlsError::InvalidCertificate(format!(
            "Secret {name}: {cert_key} and {key_key} must be PEM (or base64 of PEM)"
        ))),
    }
}

/// Read and verify `azuremlfessl` from the AKS cluster `client` points at.
///
/// # Errors
/// [`TlsError::Unavailable`] for throttling and server errors (retry later),
/// [`TlsError::BackupFailed`] when the API server is unreachable or refuses, or the Secret
/// is missing; [`TlsError::InvalidCertificate`] when its content does not verify.
pub async fn read_azuremlfessl(
    client: kube::Client,
    namespace: &str,
) -> Result<(String, String), TlsError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let secret = api
        .get_opt(AZUREMLFESSL)
        .await
        .map_err(|e| {
            let m = format!("reading {namespace}/{AZUREMLFESSL}: {}", kube_error(&e));
            // Throttling and server errors pass; an unreachable or refusing API server
            // (private cluster, authorized IP ranges, RBAC) needs a person.
            match &e {
                kube::Error::Api(s) if s.code == 429 || s.code >= 500 => {
                    TlsError::Unavailable(m, None)
                }
                _ => TlsError::BackupFailed(m),
            }
        })?
        .ok_or_else(|| missing(namespace))?;
    let (cert, key) = cert_and_key_from_secret(&secret)?;
    verify_pair(&cert, &key)?;
    Ok((cert, key))
}

fn missing(namespace: &str) -> TlsError {
    TlsError::BackupFailed(format!(
        "Secret {namespace}/{AZUREMLFESSL} does not exist on the cluster"
    ))
}

/// How long [`read_azuremlfessl_by_run_command`] waits for the command (AKS starts a pod
/// for it: usually 10-30 s).
pub const RUN_COMMAND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// Read and verify `azuremlfessl` through the AKS Run Command API (`kubectl get secret
/// azuremlfessl -n NAMESPACE -o json` in a pod AKS starts on the cluster): the way in when
/// the API server is private and unreachable from the operator. Waits
/// for the command (Azure's `Retry-After` between polls) at most `deadline`.
/// `cluster_token` is the Entra ID token AKS needs for clusters with Entra ID integration.
///
/// # Errors
/// As [`read_azuremlfessl`]; [`TlsError::Unavailable`] when the command did not finish in
/// time or ARM failed transiently. The command's output is never quoted (it holds the key).
pub async fn read_azuremlfessl_by_run_command(
    arm: &crate::azure::ArmClient,
    cluster: &crate::azure::ResourceId,
    namespace: &str,
    cluster_token: Option<&crate::azure::Secret>,
    deadline: std::time::Duration,
) -> Result<(String, String), TlsError> {
    use crate::azure::run_command::CommandPoll;
    // The namespace goes into a shell command line: allow only a DNS label (RFC 1123).
    let label_ok = !namespace.is_empty()
        && namespace.len() <= 63
        && namespace
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !namespace.starts_with('-')
        && !namespace.ends_with('-');
    if !label_ok {
        return Err(TlsError::BackupFailed(format!(
            "namespace {namespace:?} is not a Kubernetes namespace name"
        )));
    }
    let azure = |e| from_azure("AKS Run Command", e);
    let command = format!("kubectl get secret {AZUREMLFESSL} -n {namespace} -o json");
    let started = std::time::Instant::now();
    let mut poll = arm
        .run_command(cluster, &command, cluster_token)
        .await
        .map_err(azure)?;
    let result = loop {
        match poll {
            CommandPoll::Finished(result) => break result,
            CommandPoll::Running {
                location,
                retry_after,
            } => {
                let wait = retry_after
                    .unwrap_or(std::time::Duration::from_secs(5))
                    .min(std::time::Duration::from_secs(15));
                if started.elapsed() + wait > deadline {
                    return Err(TlsError::Unavailable(
                        format!(
                            "AKS Run Command reading {namespace}/{AZUREMLFESSL} did not finish within {}s",
                            deadline.as_secs()
                        ),
                        None,
                    ));
                }
                tokio::time::sleep(wait).await;
                poll = arm.command_result(&location).await.map_err(azure)?;
            }
        }
    };
    let logs = result.logs.expose();
    if result.exit_code != Some(0) {
        if logs.contains("(NotFound)") {
            return Err(missing(namespace));
        }
        // kubectl's own error line ("Error from server (Forbidden): …") names the problem
        // and holds no secret; anything else is not quoted.
        let detail = logs
            .lines()
            .find(|l| l.starts_with("Error from server") || l.starts_with("error:"))
            .map(|l| format!(": {}", l.chars().take(300).collect::<String>()))
            .unwrap_or_default();
        return Err(TlsError::BackupFailed(format!(
            "AKS Run Command reading {namespace}/{AZUREMLFESSL} ended {} with exit code {}{detail}{}",
            result
                .provisioning_state
                .as_deref()
                .unwrap_or("without a state"),
            result
                .exit_code
                .map_or("unknown".to_string(), |c| c.to_string()),
            result
                .reason
                .as_deref()
                .filter(|r| !r.is_empty())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )));
    }
    let secret: Secret = serde_json::from_str(logs).map_err(|_| {
        TlsError::BackupFailed(format!(
            "AKS Run Command output for {namespace}/{AZUREMLFESSL} is not a Secret in JSON (output withheld: it may hold the key)"
        ))
    })?;
    let (cert, key) = cert_and_key_from_secret(&secret)?;
    verify_pair(&cert, &key)?;
    Ok((cert, key))
}

/// Read and verify `azuremlfessl` of the AKS cluster `cluster`, the way that works for it:
/// - its user kubeconfig (`listClusterUserCredential`; `listClusterAdminCredential` when
///   that is refused), used as is, or — when it runs an
///   exec plugin (`kubelogin`: Entra-ID-only clusters) — with the operator's own Entra ID
///   token for the AKS server application as bearer token;
/// - when the API server cannot be reached (private cluster, authorized IP ranges that
///   exclude the operator) or `private` says so up front: the AKS Run Command API.
///
/// # Errors
/// As [`read_azuremlfessl`] and [`read_azuremlfessl_by_run_command`].
pub async fn read_azuremlfessl_from_aks(
    arm: &crate::azure::ArmClient,
    cluster: &crate::azure::ResourceId,
    namespace: &str,
    private: bool,
) -> Result<(String, String), TlsError> {
    let credential = cluster_credential(arm, cluster)
        .await
        .map_err(|e| from_azure("getting credentials for the AKS cluster", e))?;
    read_azuremlfessl_with(arm, cluster, &credential, namespace, private).await
}

/// The kubeconfig the operator reads a cluster with: the user credential
/// (`listClusterUserCredential`), or the admin credential (`listClusterAdminCredential`)
/// where only it is served (local accounts, and Kubernetes RBAC the identity is not bound
/// in).
///
/// # Errors
/// The ARM failure: a passing one (throttled, 5xx) of the user credential at once (the
/// admin credential is no cure for it), else the admin credential's.
pub async fn cluster_credential(
    arm: &crate::azure::ArmClient,
    cluster: &crate::azure::ResourceId,
) -> Result<crate::azure::model::KubeconfigSecret, crate::azure::AzureError> {
    match arm.list_cluster_user_credential(cluster).await {
        Ok(k) => Ok(k),
        Err(e) if e.category().is_retryable() => Err(e),
        Err(_) => arm.list_cluster_admin_credential(cluster).await,
    }
}

/// A `kube::Client` for an AKS cluster, as the operator reads it: the kubeconfig of
/// [`cluster_credential`], and for clusters whose kubeconfig runs `kubelogin` (Entra ID
/// only) the operator's own Entra ID token for the AKS server application.
///
/// # Errors
/// The ARM failure of the credential or the token (see [`cluster_credential`]), or
/// `Config` when the kubeconfig cannot be used.
pub async fn cluster_client(
    arm: &crate::azure::ArmClient,
    cluster: &crate::azure::ResourceId,
) -> Result<kube::Client, crate::azure::AzureError> {
    let credential = cluster_credential(arm, cluster).await?;
    if credential.uses_exec_plugin() {
        let token = arm.aks_entra_token().await?;
        credential.client_with_token(None, &token).await
    } else {
        credential.client(None).await
    }
}

/// [`read_azuremlfessl_from_aks`] with the cluster's kubeconfig already in hand
/// ([`cluster_credential`]).
///
/// # Errors
/// As [`read_azuremlfessl`] and [`read_azuremlfessl_by_run_command`].
pub async fn read_azuremlfessl_with(
    arm: &crate::azure::ArmClient,
    cluster: &crate::azure::ResourceId,
    credential: &crate::azure::model::KubeconfigSecret,
    namespace: &str,
    private: bool,
) -> Result<(String, String), TlsError> {
    let azure = |e| from_azure("getting a token for the AKS cluster", e);
    // Entra-ID-only clusters need a token for the AKS server application, for the API
    // server and for Run Command alike.
    let token = if credential.uses_exec_plugin() {
        Some(arm.aks_entra_token().await.map_err(azure)?)
    } else {
        None
    };
    if !private {
        let client = match &token {
            Some(t) => credential.client_with_token(None, t).await,
            None => credential.client(None).await,
        }
        .map_err(|e| from_azure("building a client for the AKS cluster", e))?;
        match read_azuremlfessl(client, namespace).await {
            Err(TlsError::BackupFailed(m)) if m.contains(UNREACHABLE) => {
                tracing::info!(
                    cluster = %cluster,
                    "AKS API server unreachable; reading the TLS certificate through AKS Run Command"
                );
            }
            other => return other,
        }
    }
    read_azuremlfessl_by_run_command(
        arm,
        cluster,
        namespace,
        token.as_ref(),
        RUN_COMMAND_DEADLINE,
    )
    .await
}

/// An ARM failure on the way to the certificate: passing ones (throttled, 5xx) are retried
/// after Azure's `Retry-After`; the rest need a person.
fn from_azure(context: &str, e: crate::azure::AzureError) -> TlsError {
    let m = format!("{context}: {e}");
    if e.category().is_retryable() {
        TlsError::Unavailable(m, e.retry_after())
    } else {
        TlsError::BackupFailed(m)
    }
}

/// What [`kube_error`] says of a connection failure (and what the Run Command fallback
/// looks for).
const UNREACHABLE: &str = "API server unreachable";

/// Describe a kube error without echoing response bodies.
fn kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("API server answered {} {}", s.code, s.reason),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            format!("{UNREACHABLE} (private cluster?)")
        }
        _ => "request failed".into(),
    }
}

/// The backup Secret: type kubernetes.io/tls, labelled with its source, not owner-referenced
/// so that it outlives the resource.
pub fn backup_secret(name: &str, namespace: &str, cert: &str, key: &str, source: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "amlops".to_string(),
                ),
                ("amlops.dev/tls-backup".to_string(), "true".to_string()),
            ])),
            annotations: Some(BTreeMap::from([(
                "amlops.dev/source".to_string(),
                source.to_string(),
            )])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(BTreeMap::from([
            (TLS_PAIR.0.to_string(), ByteString(cert.as_bytes().to_vec())),
            (TLS_PAIR.1.to_string(), ByteString(key.as_bytes().to_vec())),
        ])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(type_: Option<&str>, data: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            },
            type_: type_.map(Into::into),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    const C1: &str = "-----BEGIN CERTIFICATE-----\nc1\n-----END CERTIFICATE-----\n";
    const K1: &str = "-----BEGIN PRIVATE KEY-----\nk1\n-----END PRIVATE KEY-----\n";
    const C2: &str = "-----BEGIN CERTIFICATE-----\nc2\n-----END CERTIFICATE-----\n";
    const K2: &str = "-----BEGIN PRIVATE KEY-----\nk2\n-----END PRIVATE KEY-----\n";

    #[test]
    fn certificate_and_key_come_from_one_pair_of_keys() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let (c1_b64, k1_b64) = (b64(C1), b64(K1));
        let tls = Some("kubernetes.io/tls");
        let opaque = Some("Opaque");
        // (type, data, the pair expected, or a fragment of the error)
        type Case<'a> = (
            Option<&'a str>,
            Vec<(&'a str, &'a str)>,
            Result<(&'a str, &'a str), &'a str>,
        );
        let cases: Vec<Case> = vec![
            (tls, vec![("tls.crt", C1), ("tls.key", K1)], Ok((C1, K1))),
            (
                opaque,
                vec![("cert.pem", C1), ("key.pem", K1)],
                Ok((C1, K1)),
            ),
            (None, vec![("cert.pem", C1), ("key.pem", K1)], Ok((C1, K1))),
            // Both pairs: the one the type names.
            (
                tls,
                vec![
                    ("tls.crt", C1),
                    ("tls.key", K1),
                    ("cert.pem", C2),
                    ("key.pem", K2),
                ],
                Ok((C1, K1)),
            ),
            (
                opaque,
                vec![
                    ("tls.crt", C1),
                    ("tls.key", K1),
                    ("cert.pem", C2),
                    ("key.pem", K2),
                ],
                Ok((C2, K2)),
            ),
            // One pair whole, the other half there: the whole one, never a mix.
            (
                opaque,
                vec![("tls.crt", C1), ("tls.key", K1), ("cert.pem", C2)],
                Ok((C1, K1)),
            ),
            (
                tls,
                vec![("tls.crt", C1), ("cert.pem", C2), ("key.pem", K2)],
                Ok((C2, K2)),
            ),
            (
                opaque,
                vec![("tls.crt", C1), ("key.pem", K2)],
                Err("must hold tls.crt and tls.key"),
            ),
            // PEM stored base64-encoded once more.
            (
                opaque,
                vec![("cert.pem", &c1_b64), ("key.pem", &k1_b64)],
                Ok((C1, K1)),
            ),
            (
                opaque,
                vec![("cert.pem", C1), ("key.pem", "not pem")],
                Err("s: cert.pem and key.pem must be PEM"),
            ),
            (opaque, vec![], Err("Secret s must hold")),
        ];
        for (i, (type_, data, want)) in cases.into_iter().enumerate() {
            let got = cert_and_key_from_secret(&secret(type_, &data));
            match (got, want) {
                (Ok((c, k)), Ok((wc, wk))) => {
                    assert_eq!((c.as_str(), k.as_str()), (wc, wk), "case {i}")
                }
                (Err(e), Err(fragment)) => {
                    let e = e.to_string();
                    assert!(e.contains(fragment), "case {i}: {e}");
                    assert!(
                        !e.contains("BEGIN"),
                        "case {i}: no key material in errors: {e}"
                    );
                }
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }
}
