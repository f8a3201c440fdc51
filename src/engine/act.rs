//! Act: execute the one write of a plan. An exhaustive `match` over [`Write`], and nothing
//! else: which write, which body, which phase and which requeue were all decided before,
//! and what the result means is decided after, by [`settle`](super::decide::settle).

use crate::azure::LroStart;
use crate::tls::{self, TlsError};

use super::desired::Desired;
use super::plan::Write;
use super::reconcile::Engine;
use super::settle::{Done, WriteFailure};
use super::store::KubeStore;

fn started<T>(start: LroStart<T>) -> Done {
    match start {
        LroStart::Started(handle) => Done::Started(Some(handle)),
        LroStart::Done(_) => Done::Started(None),
    }
}

impl<S: KubeStore> Engine<S> {
    /// Execute `write`.
    pub(crate) async fn act(&self, d: &Desired, write: &Write) -> Result<Done, WriteFailure> {
        let azure = WriteFailure::Azure;
        match write {
            Write::PutCompute { id, kind, body } => self
                .arm
                .put_compute(id, body, *kind)
                .await
                .map(started)
                .map_err(azure),
            Write::DeleteCompute { id, action } => self
                .arm
                .delete_compute(id, *action)
                .await
                .map(started)
                .map_err(azure),
            Write::ScalePool {
                cluster,
                pool,
                count,
            } => self
                .arm
                .scale_agent_pool(cluster, pool, *count)
                .await
                .map(started)
                .map_err(azure),
            Write::DeleteManagedCluster { cluster } => self
                .arm
                .delete_managed_cluster(cluster)
                .await
                .map(started)
                .map_err(azure),
            Write::BackUpTls {
                cluster,
                secret,
                store,
                ..
            } => {
                // The user credential first; the admin credential where local accounts
                // serve only it.
                let kubeconfig = match self.arm.list_cluster_user_credential(cluster).await {
                    Ok(k) => k,
                    Err(_) => self
                        .arm
                        .list_cluster_admin_credential(cluster)
                        .await
                        .map_err(azure)?,
                };
                let client = kubeconfig.client(None).await.map_err(|e| {
                    WriteFailure::Tls(TlsError::BackupFailed(format!(
                        "kubeconfig unusable ({})",
                        e.category().as_str()
                    )))
                })?;
                let (cert, key) = tls::read_azuremlfessl(client, &self.config.tls_namespace)
                    .await
                    .map_err(WriteFailure::Tls)?;
                let info = tls::verify_pair(&cert, &key).map_err(WriteFailure::Tls)?;
                if *store {
                    let source = format!(
                        "{cluster}#{}/{}",
                        self.config.tls_namespace,
                        tls::AZUREMLFESSL
                    );
                    let backup = tls::backup_secret(secret, &d.namespace, &cert, &key, &source);
                    self.store
                        .apply_secret(backup)
                        .await
                        .map_err(|e| WriteFailure::Tls(TlsError::BackupFailed(e.to_string())))?;
                }
                Ok(Done::BackedUp { info })
            }
        }
    }
}
