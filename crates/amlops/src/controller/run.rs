//! The operator's life: probes, leader election, and a leadership *term* during which the
//! four controllers run. A term ends on shutdown or when the Lease is lost; in-flight
//! reconciles finish first, then (on shutdown) the Lease is released for the next replica.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::Api;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::store::Writer;
use tokio::sync::watch;

use crate::azure::{ArmClient, ArmClientConfig};
use crate::crd::{ClusterAttachment, InferenceCluster};
use crate::engine::EngineConfig;

use super::cluster;
use super::compute;
use super::credentials::Credentials;
use super::extension;
use super::http::{self, Probes, Readiness};
use super::kinds::Kind;
use super::kube_store::{ApiStore, ClusterCaches};
use super::leader::{Elector, Leadership, LeaseConfig};
use super::metrics::Metrics;
use super::reconciler::{Backoff, Shared};
use super::typed::TypedCtx;

/// Everything `amlops run` is configured with.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch one namespace, or all.
    pub namespace: Option<String>,
    /// Concurrent reconciles per kind (0: unbounded).
    pub concurrency: u16,
    /// Engine settings (`engine.resync`: the steady-state resync within the ARM read budget).
    pub engine: EngineConfig,
    /// Error backoff.
    pub backoff: Backoff,
    /// Leader election, when on.
    pub leader: Option<LeaseConfig>,
    /// Probe/metrics address.
    pub metrics_addr: SocketAddr,
    /// This replica's name (Events' reporting instance).
    pub identity: String,
    /// How often to look again for CRDs that are not established yet.
    pub crd_poll: Duration,
}

/// A configured operator, not started.
pub struct Operator {
    client: Client,
    shared: Arc<Shared>,
    options: Options,
}

/// A started operator.
pub struct Running {
    /// Address the probes are served on.
    pub addr: SocketAddr,
    /// Readiness as `/readyz` reports it.
    pub ready: watch::Receiver<Readiness>,
    /// Leadership of this replica.
    pub leadership: watch::Receiver<Leadership>,
    /// Its metrics.
    pub metrics: Metrics,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits until the operator has stopped (after `stop` turned true).
    ///
    /// # Errors
    /// When the operator's task or the election task panicked or was cancelled (a
    /// `JoinError`). A Lease that could not be released is logged, not returned.
    pub async fn join(self) -> anyhow::Result<()> {
        self.task.await?
    }

    /// Objects in error backoff now (see [`Shared::failing`]).
    pub fn failing(&self) -> usize {
        self.shared.failing()
    }
}

impl Operator {
    /// An operator using `client` for Kubernetes and `arm` (cloud + default identity) for Azure.
    /// ARM's throttling model and figures come from the resync policy
    /// (`options.engine.resync.arm`: the client and the policy must read the headers alike);
    /// the pacing share stays `arm`'s.
    ///
    /// # Errors
    /// [`AzureError`](crate::azure::AzureError) from building the default ARM client: a
    /// credential that cannot be built (`Credential`) or an HTTP client (`Config`). No request
    /// is sent.
    pub fn new(client: Client, mut arm: ArmClientConfig, options: Options) -> anyhow::Result<Self> {
        arm.rate_limits.arm = options.engine.resync.arm;
        let metrics = Metrics::new();
        let observer: Arc<dyn crate::azure::ArmObserver> = Arc::new(metrics.clone());
        let default = ArmClient::builder(arm.clone())
            .observer(observer.clone())
            .build()?;
        let credentials = Credentials::new(arm, default, observer);
        let shared = Arc::new(Shared::new(
            client.clone(),
            credentials,
            options.engine.clone(),
            metrics,
            options.backoff,
        ));
        Ok(Self {
            client,
            shared,
            options,
        })
    }

    /// Starts probes, election and controllers; everything stops when `stop` turns true.
    ///
    /// # Errors
    /// When the probe address (`options.metrics_addr`) cannot be bound.
    pub async fn start(self, stop: watch::Receiver<bool>) -> anyhow::Result<Running> {
        let metrics = self.shared.metrics.clone();
        let shared = self.shared.clone();
        let (ready_tx, ready_rx) = watch::channel(Readiness::NotReady("leadership unknown"));
        let (lead_tx, lead_rx) = watch::channel(Leadership::Unknown);
        let probes = Probes {
            ready: ready_rx.clone(),
            metrics: metrics.clone(),
        };
        let (http_stop_tx, http_stop_rx) = watch::channel(false);
        let (addr, http_task) =
            http::serve(self.options.metrics_addr, probes, http_stop_rx).await?;
        let (elect_stop_tx, elect_stop_rx) = watch::channel(false);
        let elector = match &self.options.leader {
            Some(cfg) => {
                let el = Elector::new(self.client.clone(), cfg.clone());
                Some(tokio::spawn(el.run(lead_tx.clone(), elect_stop_rx)))
            }
            None => {
                lead_tx.send_replace(Leadership::Leader);
                None
            }
        };
        let lead_for_task = lead_rx.clone();
        let task = tokio::spawn(async move {
            self.main_loop(lead_for_task, stop, ready_tx).await;
            // Only now, with every reconcile finished, may another replica take over.
            let _ = elect_stop_tx.send(true);
            if let Some(task) = elector {
                let mut el = task.await?;
                if let Err(e) = el.release().await {
                    tracing::warn!(error = %e, "could not release the Lease; it expires on its own");
                } else {
                    tracing::info!(lease = %el.config().name, "Lease released");
                }
            }
            lead_tx.send_replace(Leadership::Follower);
            let _ = http_stop_tx.send(true);
            let _ = http_task.await;
            Ok(())
        });
        Ok(Running {
            addr,
            ready: ready_rx,
            leadership: lead_rx,
            metrics,
            shared,
            task,
        })
    }

    async fn main_loop(
        &self,
        mut lead: watch::Receiver<Leadership>,
        mut stop: watch::Receiver<bool>,
        ready: watch::Sender<Readiness>,
    ) {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                l = lead.wait_for(|l| *l != Leadership::Unknown) => {
                    if l.is_err() { break }
                }
            }
            if *lead.borrow() == Leadership::Follower {
                // A standby replica is ready: it serves probes and waits for the Lease.
                ready.send_replace(Readiness::Ready);
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    l = lead.wait_for(|l| *l == Leadership::Leader) => {
                        if l.is_err() { break }
                    }
                }
            }
            self.shared.metrics.set_leader(true);
            ready.send_replace(Readiness::NotReady("starting controllers"));
            let (term_tx, term_rx) = watch::channel(false);
            let ender = {
                let mut stop = stop.clone();
                let mut lead = lead.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => {}
                        _ = lead.wait_for(|l| *l != Leadership::Leader) => {
                            tracing::warn!("leadership lost: stopping the controllers");
                        }
                    }
                    let _ = term_tx.send(true);
                })
            };
            self.term(term_rx, &ready).await;
            ender.abort();
            // The term's caches are gone: so are the resources they counted.
            self.shared.metrics.clear_resources();
            self.shared.metrics.set_leader(false);
            if *stop.borrow() {
                break;
            }
        }
        ready.send_replace(Readiness::NotReady("shutting down"));
    }

    /// Waits (polling) until the CRD of `kind` is established; false if the term ended.
    async fn crd_established(&self, kind: Kind, term: &mut watch::Receiver<bool>) -> bool {
        self.crd_named_established(&kind.crd_name(), term).await
    }

    /// Waits (polling) until the CRD `name` is established; false if the term ended.
    async fn crd_named_established(&self, name: &str, term: &mut watch::Receiver<bool>) -> bool {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let mut logged = false;
        loop {
            let established = match api.get_opt(name).await {
                Ok(Some(crd)) => crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True"),
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(error = %e, crd = %name, "cannot read the CRD");
                    false
                }
            };
            if established {
                return true;
            }
            if !logged {
                tracing::info!(crd = %name, "waiting for the CRD to be installed and established");
                logged = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.options.crd_poll) => {}
                _ = term.wait_for(|t| *t) => return false,
            }
        }
    }

    /// One leadership term: the four controllers until `term` turns true. Readiness
    /// waits for the two cluster kinds' CRDs and caches; the Kubernetes compute path's
    /// kinds each start once their CRD is established, without holding anything up.
    async fn term(&self, mut term: watch::Receiver<bool>, ready: &watch::Sender<Readiness>) {
        ready.send_replace(Readiness::NotReady(
            "waiting for the CRDs to be established",
        ));
        for kind in Kind::ALL {
            if !self.crd_established(kind, &mut term).await {
                return;
            }
        }
        let recorder = super::events::EventRecorder::new(
            self.client.clone(),
            Reporter {
                controller: "amlops".into(),
                instance: Some(self.options.identity.clone()),
            },
        );
        // The store reads event references from the cluster kinds' caches, which their
        // controllers fill (and the sibling claims from the index their watches keep).
        let ic_writer = Writer::<kube::core::DeserializeGuard<InferenceCluster>>::default();
        let ca_writer = Writer::<kube::core::DeserializeGuard<ClusterAttachment>>::default();
        let caches = ClusterCaches {
            inference_clusters: ic_writer.as_reader(),
            cluster_attachments: ca_writer.as_reader(),
        };
        let store = ApiStore::new(self.client.clone(), recorder, caches);
        let ctx = Arc::new(TypedCtx {
            shared: self.shared.clone(),
            store,
        });
        let namespace = self.options.namespace.clone();
        let concurrency = self.options.concurrency;
        let (ic_synced_tx, mut ic_synced) = watch::channel(false);
        let (ca_synced_tx, mut ca_synced) = watch::channel(false);
        let inference_clusters = cluster::run::<InferenceCluster>(
            ctx.clone(),
            ic_writer,
            namespace.clone(),
            concurrency,
            term.clone(),
            ic_synced_tx,
        );
        let cluster_attachments = cluster::run::<ClusterAttachment>(
            ctx.clone(),
            ca_writer,
            namespace.clone(),
            concurrency,
            term.clone(),
            ca_synced_tx,
        );
        let ready_tx = ready.clone();
        let mut synced_term = term.clone();
        let synced = async move {
            for rx in [&mut ic_synced, &mut ca_synced] {
                tokio::select! {
                    res = rx.wait_for(|s| *s) => if res.is_err() { return },
                    _ = synced_term.wait_for(|t| *t) => return,
                }
            }
            ready_tx.send_replace(Readiness::Ready);
            tracing::info!("caches synced: reconciling");
        };
        // The Kubernetes compute path's kinds: each starts once its CRD is established.
        let typed_kind = |plural: &'static str| {
            let ctx = ctx.clone();
            let mut until = term.clone();
            let namespace = namespace.clone();
            async move {
                let crd = format!("{plural}.{}", crate::crd::GROUP);
                if !self.crd_named_established(&crd, &mut until).await {
                    return;
                }
                match plural {
                    "kubernetescomputes" => compute::run(ctx, namespace, concurrency, until).await,
                    _ => extension::run(ctx, namespace, concurrency, until).await,
                }
            }
        };
        let compute = typed_kind("kubernetescomputes");
        let extension = typed_kind("azuremlextensions");
        futures::join!(
            inference_clusters,
            cluster_attachments,
            compute,
            extension,
            synced
        );
    }
}
