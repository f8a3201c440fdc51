//! The operator's life: probes, leader election, and a leadership *term* during which the
//! two controllers run. A term ends on shutdown or when the Lease is lost; in-flight
//! reconciles finish first, then (on shutdown) the Lease is released for the next replica.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use crate::azure::{ArmClient, ArmClientConfig};
use crate::crd::{ADOPT_ANNOTATION, REATTACH_ANNOTATION};
use crate::engine::EngineConfig;

use super::compute;
use super::credentials::Credentials;
use super::extension;
use super::http::{self, Probes, Readiness};
use super::kinds::Kind;
use super::kinds::object_name;
use super::kube_store::ApiStore;
use super::leader::{Elector, Leadership, LeaseConfig};
use super::metrics::{Metrics, ResourceState};
use super::reconciler::{self, Backoff, Ctx, Shared};
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

    fn dynamic_api(&self, kind: Kind) -> Api<DynamicObject> {
        let ar = kind.api_resource();
        match &self.options.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// Secrets as metadata only: their contents never enter the watch path.
    fn secret_meta_api(&self) -> Api<PartialObjectMeta<Secret>> {
        match &self.options.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// One leadership term: both controllers until `term` turns true.
    async fn term(&self, mut term: watch::Receiver<bool>, ready: &watch::Sender<Readiness>) {
        ready.send_replace(Readiness::NotReady(
            "waiting for the CRDs to be established",
        ));
        for kind in Kind::ALL {
            if !self.crd_established(kind, &mut term).await {
                return;
            }
        }
        let wc = watcher::Config::default();
        let mut parts = Vec::new();
        let mut synced = Vec::new();
        for kind in Kind::ALL {
            let ar = kind.api_resource();
            let writer = Writer::<DynamicObject>::new(ar.clone());
            let reader = writer.as_reader();
            // Synced once the first full list is in the cache. (Not `Store::wait_until_ready`:
            // the controller waits on it too, and its one-shot keeps only one waker.)
            let (synced_tx, synced_rx) = watch::channel(false);
            // Our own status writes must not wake us: only what a person changes does.
            let shared = self.shared.clone();
            let cache = reader.clone();
            let stream = watcher(self.dynamic_api(kind), wc.clone())
                .default_backoff()
                .reflect(writer)
                .inspect(move |e| match e {
                    Ok(watcher::Event::InitDone) => {
                        synced_tx.send_replace(true);
                        shared.retain_failures(kind, |key| {
                            cache
                                .get(&kind.object_ref(&key.namespace, &key.name))
                                .is_some()
                        });
                        shared.metrics.retain_resources(kind.name(), |name| {
                            let (ns, name) = name.split_once('/').unwrap_or(("", name));
                            cache.get(&kind.object_ref(ns, name)).is_some()
                        });
                    }
                    Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                        shared.metrics.resource(
                            kind.name(),
                            &object_name(obj),
                            Some(resource_state(obj)),
                        );
                    }
                    Ok(watcher::Event::Delete(obj)) => {
                        shared.forget_failures(kind, obj);
                        shared
                            .metrics
                            .resource(kind.name(), &object_name(obj), None);
                    }
                    _ => {}
                })
                .applied_objects()
                .predicate_filter(relevant_change, Default::default());
            parts.push((kind, reader, stream));
            synced.push(synced_rx);
        }
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: "amlops".into(),
                instance: Some(self.options.identity.clone()),
            },
        );
        let store = ApiStore::new(
            self.client.clone(),
            recorder,
            parts.iter().map(|(k, r, _)| (*k, r.clone())).collect(),
        );
        let ready_tx = ready.clone();
        let mut synced_term = term.clone();
        let synced = tokio::spawn(async move {
            for mut rx in synced {
                tokio::select! {
                    res = rx.wait_for(|s| *s) => if res.is_err() { return },
                    _ = synced_term.wait_for(|t| *t) => return,
                }
            }
            ready_tx.send_replace(Readiness::Ready);
            tracing::info!("caches synced: reconciling");
        });
        let mut runs = Vec::new();
        for (kind, reader, stream) in parts {
            let secrets = watcher(self.secret_meta_api(), wc.clone())
                .default_backoff()
                .touched_objects();
            let lookup = reader.clone();
            let mut until = term.clone();
            let ctx = Arc::new(Ctx {
                shared: self.shared.clone(),
                kind,
                store: store.clone(),
            });
            let run = Controller::for_stream_with(stream, reader, kind.api_resource())
                .watches_stream(secrets, move |s| referencing(kind, &lookup, &s))
                .with_config(controller::Config::default().concurrency(self.options.concurrency))
                .graceful_shutdown_on(async move {
                    let _ = until.wait_for(|t| *t).await;
                })
                .run(reconciler::reconcile, reconciler::error_policy, ctx)
                .for_each(|res| async move {
                    if let Err(e) = res {
                        log_controller_error(&e);
                    }
                });
            runs.push(run);
        }
        // The Kubernetes compute path's kinds: typed watches, their own controllers; each
        // starts once its CRD is established, without holding up the legacy kinds.
        let ctx = Arc::new(TypedCtx {
            shared: self.shared.clone(),
            store: store.clone(),
        });
        let typed_kind = |plural: &'static str| {
            let ctx = ctx.clone();
            let mut until = term.clone();
            let namespace = self.options.namespace.clone();
            let concurrency = self.options.concurrency;
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
        futures::future::join3(futures::future::join_all(runs), compute, extension).await;
        synced.abort();
    }
}

/// Objects of `kind` that refer to the Secret `s` (TLS or credentials): a fixed Secret
/// reconciles them again.
fn referencing(
    kind: Kind,
    store: &Store<DynamicObject>,
    s: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<DynamicObject>> {
    let ns = s.namespace().unwrap_or_default();
    let name = s.name_any();
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
        .filter(|o| kind.secret_names(o).contains(&name))
        .map(|o| kind.object_ref(&ns, &o.name_any()))
        .collect()
}

/// The parts of an object whose change calls for a reconcile: spec (generation), the
/// deletion mark and our two annotations. Status and finalizer writes are ignored.
fn relevant_change(o: &DynamicObject) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    predicates::generation(o).hash(&mut h);
    o.metadata.deletion_timestamp.is_some().hash(&mut h);
    let a = o.annotations();
    a.get(REATTACH_ANNOTATION).hash(&mut h);
    a.get(ADOPT_ANNOTATION).hash(&mut h);
    Some(h.finish())
}

fn log_controller_error<E: std::error::Error + 'static, R: std::fmt::Display>(
    e: &controller::Error<R, E>,
) {
    match e {
        // Already logged (with backoff) by the error policy.
        controller::Error::ReconcilerFailed(_, _) => {}
        controller::Error::ObjectNotFound(r) => tracing::debug!(object = %r, "object gone"),
        other => tracing::warn!(error = %other, "controller"),
    }
}

/// What `obj` counts in the per-phase and in-flight gauges (read from the one object a
/// watch event carries, never from a walk of the caches).
fn resource_state(obj: &DynamicObject) -> ResourceState {
    ResourceState {
        phase: obj
            .data
            .pointer("/status/phase")
            .and_then(|p| p.as_str())
            .unwrap_or("Pending")
            .to_string(),
        inflight: obj
            .data
            .pointer("/status/operation")
            .is_some_and(|v| !v.is_null()),
        tls_not_after: obj
            .data
            .pointer("/status/tls/notAfter")
            .and_then(|v| v.as_str())
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second()),
    }
}
