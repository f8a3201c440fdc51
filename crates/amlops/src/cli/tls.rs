//! `amlops tls backup`: write `cert.pem` and `key.pem` of a cluster's `azuremlfessl`.

use std::path::PathBuf;

use crate::tls::{read_azuremlfessl, read_azuremlfessl_from_aks, verify_pair};

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
    /// Azure identity and cloud (the operator's own credential options).
    #[command(flatten)]
    pub azure: super::AzureArgs,
}

/// Run `amlops tls backup`.
///
/// # Errors
/// Neither `--kubeconfig` nor `--aks`; an unreadable or unusable kubeconfig; an invalid
/// `--aks` id or a failed ARM call ([`AzureError`](crate::azure::AzureError)); reading
/// `azuremlfessl` failing ([`TlsError`](crate::tls::TlsError): missing, unreachable, a pair
/// that does not verify); writing the files. Each ends the command with exit code 2.
pub async fn run(args: BackupArgs) -> anyhow::Result<bool> {
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
            let private = arm
                .get_managed_cluster(&id)
                .await?
                .is_some_and(|c| c.is_private());
            return write_pair(
                &args,
                read_azuremlfessl_from_aks(&arm, &id, &args.namespace, private).await?,
            );
        }
        (None, None) => anyhow::bail!("give --kubeconfig or --aks"),
    };
    write_pair(&args, read_azuremlfessl(client, &args.namespace).await?)
}

fn write_pair(args: &BackupArgs, (cert, key): (String, String)) -> anyhow::Result<bool> {
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
