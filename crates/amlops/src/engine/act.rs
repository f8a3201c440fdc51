//! Act: execute the one write of a plan. An exhaustive `match` over [`Write`], and nothing
//! else: which write, which body, which phase and which requeue were all decided before,
//! and what the result means is decided after, by [`settle`](super::decide::settle).

use crate::azure::LroStart;
use crate::tls::{self, TlsError};

use super::desired::Desired;
use super::plan::Write;
use super::reconcile::Engine;
use super::settle::{Done, Stored, WriteFailure};
use super::store::KubeStore;

fn started<T>(start: LroStart<T>) -> Done {
    match start {
        LroStart::Started(handle) => Done::Started(Some(handle)),
        LroStart::Done(_) => Done::Started(None),
    }
}

impl<S: KubeStore> Engine<S> {
    /// The backup of a resource whose namespace is being deleted: into the operator's
    /// namespace as `<namespace>.<secret>`, or nowhere (and why).
    async fn backup_elsewhere(
        &self,
        d: &Desired,
        secret: &str,
        cert: &str,
        key: &str,
        source: &str,
    ) -> Stored {
        let Some(namespace) = self
            .config
            .backup_namespace
            .clone()
            .filter(|n| *n != d.namespace)
        else {
            return Stored::Skipped("no operator namespace (--backup-namespace) holds it".into());
        };
        let name = format!("{}.{secret}", d.namespace);
        let backup = tls::backup_secret(&name, &namespace, cert, key, source);
        match self.store.apply_secret(backup).await {
            Ok(()) => {
                tracing::info!(object = %d.key(), secret = %format!("{namespace}/{name}"), "namespace being deleted: TLS backup kept in the operator's namespace");
                Stored::Elsewhere { namespace, name }
            }
            Err(e) => {
                tracing::warn!(object = %d.key(), error = %e, "namespace being deleted: TLS backup skipped");
                Stored::Skipped(format!(
                    "the operator's namespace {namespace} refused it ({e})"
                ))
            }
        }
    }

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
                // The user credential first, the admin credential where only it is
                // served; Entra-ID-only clusters with the operator's own token; private
                // clusters (API server unreachable) through AKS Run Command.
                let kubeconfig = tls::cluster_credential(&self.arm, cluster)
                    .await
                    .map_err(azure)?;
                let (cert, key) = tls::read_azuremlfessl_with(
                    &self.arm,
                    cluster,
                    &kubeconfig,
                    &self.config.tls_namespace,
                    false,
                )
                .await
                .map_err(WriteFailure::Tls)?;
                let info = tls::verify_pair(&cert, &key).map_err(WriteFailure::Tls)?;
                let mut stored = Stored::Here;
                if *store {
                    let source = format!(
                        "{cluster}#{}/{}",
                        self.config.tls_namespace,
                        tls::AZUREMLFESSL
                    );
                    let backup = tls::backup_secret(secret, &d.namespace, &cert, &key, &source);
                    match self.store.apply_secret(backup).await {
                        Ok(()) => {}
                        // The whole namespace is being deleted: it takes no new Secret, and
                        // the deletion must not wait for one.
                        Err(e) if d.deleting && e.namespace_terminating() => {
                            stored = self.backup_elsewhere(d, secret, &cert, &key, &source).await;
                        }
                        Err(e) => {
                            return Err(WriteFailure::Tls(TlsError::BackupFailed(e.to_string())));
                        }
                    }
                }
                Ok(Done::BackedUp { info, stored })
            }
        }
    }
}
