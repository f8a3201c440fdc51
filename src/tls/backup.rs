//! Reading `azuremlfessl` from an AKS cluster and writing the backup Secret (DESIGN §3.1).

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta};

use super::{TlsError, verify_pair};

/// Secret in which Azure ML's front end keeps the serving certificate and key.
pub const AZUREMLFESSL: &str = "azuremlfessl";

fn field(secret: &Secret, keys: &[&str]) -> Option<String> {
    let data = secret.data.as_ref()?;
    let bytes = keys.iter().find_map(|k| data.get(*k))?;
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

/// Certificate and key PEM from a Secret: `tls.crt`/`tls.key` (kubernetes.io/tls) or
/// `cert.pem`/`key.pem` (Opaque, as Azure ML writes them).
pub fn cert_and_key_from_secret(secret: &Secret) -> Result<(String, String), TlsError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let cert = field(secret, &["tls.crt", "cert.pem"]);
    let key = field(secret, &["tls.key", "key.pem"]);
    match (cert, key) {
        (Some(c), Some(k)) => Ok((c, k)),
        _ => Err(TlsError::InvalidCertificate(format!(
            "Secret {name} must hold tls.crt and tls.key (type kubernetes.io/tls) or cert.pem and key.pem, as PEM"
        ))),
    }
}

/// Read and verify `azuremlfessl` from the AKS cluster `client` points at.
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
        .ok_or_else(|| {
            TlsError::BackupFailed(format!(
                "Secret {namespace}/{AZUREMLFESSL} does not exist on the cluster"
            ))
        })?;
    let (cert, key) = cert_and_key_from_secret(&secret)?;
    verify_pair(&cert, &key)?;
    Ok((cert, key))
}

/// Describe a kube error without echoing response bodies.
fn kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("API server answered {} {}", s.code, s.reason),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            "API server unreachable (private cluster?)".into()
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
            ("tls.crt".to_string(), ByteString(cert.as_bytes().to_vec())),
            ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
        ])),
        ..Default::default()
    }
}

/// `amlops tls backup`: write `cert.pem` and `key.pem` of a cluster's `azuremlfessl`.
#[derive(clap::Args, Debug, Clone)]
pub struct BackupArgs {
    /// Kubeconfig of the AKS cluster.
    #[arg(long, conflicts_with = "aks", required_unless_present = "aks")]
    pub kubeconfig: Option<PathBuf>,
    /// ARM id of the AKS cluster (its user credential is fetched through ARM).
    #[arg(long)]
    pub aks: Option<String>,
    /// Namespace of `azuremlfessl`.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Directory for `cert.pem` and `key.pem` (key written with mode 0600).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    #[command(flatten)]
    pub azure: crate::azure_args::AzureArgs,
}

/// Run `amlops tls backup`.
pub async fn run_cli(args: BackupArgs) -> anyhow::Result<bool> {
    let client = match (&args.kubeconfig, &args.aks) {
        (Some(path), _) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Client::try_from(
                kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?,
            )?
        }
        (None, Some(id)) => {
            let arm = args.azure.client()?;
            let id: crate::azure::ResourceId = id.parse()?;
            arm.list_cluster_user_credential(&id)
                .await?
                .client(None)
                .await?
        }
        (None, None) => anyhow::bail!("give --kubeconfig or --aks"),
    };
    let (cert, key) = read_azuremlfessl(client, &args.namespace).await?;
    let info = verify_pair(&cert, &key)?;
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("cert.pem"), cert)?;
    let key_path = args.out.join("key.pem");
    {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        opts.mode(0o600);
        opts.open(&key_path)?.write_all(key.as_bytes())?;
    }
    println!(
        "wrote {} and {} (sha256 {}, expires {})",
        args.out.join("cert.pem").display(),
        key_path.display(),
        info.sha256_fingerprint,
        info.not_after
    );
    Ok(true)
}
