//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas (or the old and the
//! new pod of a rollout) never act on Azure at once. The algorithm is client-go's: a
//! holder renews every `retry_period`; a candidate takes the Lease over only when the
//! record has not changed for `lease_duration` *as measured on its own clock* (no trust in
//! other nodes' clocks); a leader that cannot renew within `renew_deadline` steps down
//! before anyone else may take over (`renew_deadline < lease_duration`). Writes use the
//! Lease's resourceVersion, so two candidates racing for an expired Lease cannot both win.
//!
//! Hand-rolled on purpose: no leader-election crate for kube 5 measures the Lease's expiry
//! on the candidate's own clock (they compare `renewTime` with local time, which trusts the
//! holder's clock).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

/// Leadership as seen by this replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// Not known yet (the first attempt has not finished).
    Unknown,
    /// This replica holds the Lease and may act.
    Leader,
    /// Another replica holds it (or it could not be read): stand by.
    Follower,
}

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// A leader that could not renew for this long steps down.
    pub renew_deadline: Duration,
    /// Interval between attempts.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Kubernetes' leader-election defaults (component-base `LeaderElectionConfiguration`,
    /// as kube-controller-manager and controller-runtime use them): 15 s / 10 s / 2 s.
    pub fn new(name: &str, namespace: &str, identity: &str) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One replica's view of the Lease.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    /// The last record seen and when it was first seen with that content.
    observed: Option<(LeaseSpec, Instant)>,
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn same_record(a: &LeaseSpec, b: &LeaseSpec) -> bool {
    a.holder_identity == b.holder_identity
        && a.renew_time == b.renew_time
        && a.lease_transitions == b.lease_transitions
}

impl Elector {
    /// An elector over `cfg.namespace/cfg.name`.
    pub fn new(client: Client, cfg: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
        }
    }

    fn spec(&self, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs().max(1) as i32),
            acquire_time: acquire,
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt to acquire or renew. `Ok(true)`: this replica holds the Lease now.
    ///
    /// # Errors
    /// The API server's error reading, creating or replacing the Lease, except a 409 (another
    /// replica wrote first), which is `Ok(false)`. [`Self::run`] logs it and a leader keeps
    /// leading until `renew_deadline` has passed since its last renewal.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(Some(now()), 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let holder = current.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.cfg.identity;
        if !mine && !holder.is_empty() {
            // Measure expiry on our own clock from when this record was first seen.
            let seen_at = match &self.observed {
                Some((rec, at)) if same_record(rec, &current) => *at,
                _ => {
                    self.observed = Some((current.clone(), Instant::now()));
                    return Ok(false);
                }
            };
            let duration = current
                .lease_duration_seconds
                .map(|s| Duration::from_secs(s.max(1) as u64))
                .unwrap_or(self.cfg.lease_duration);
            if seen_at.elapsed() < duration {
                return Ok(false);
            }
        }
        let transitions = current.lease_transitions.unwrap_or(0);
        lease.spec = Some(if mine {
            self.spec(current.acquire_time.clone(), transitions)
        } else {
            self.spec(Some(now()), transitions + 1)
        });
        // The resourceVersion in `lease` makes this a compare-and-swap.
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.observed = None;
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on shutdown), so another replica takes over at once.
    ///
    /// # Errors
    /// The API server's error reading or replacing the Lease; a Lease that is gone, held by
    /// another replica, or changed meanwhile (409) is `Ok(())`. The caller logs it: the Lease
    /// then expires after `lease_duration`.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs the election until `stop` turns true, publishing every change on `tx`, and
    /// returns the elector so the caller can [`release`](Self::release) the Lease once it
    /// has stopped acting.
    pub async fn run(
        mut self,
        tx: watch::Sender<Leadership>,
        mut stop: watch::Receiver<bool>,
    ) -> Self {
        let mut last_renew: Option<Instant> = None;
        loop {
            let outcome = self.try_acquire_or_renew().await;
            let leader = match outcome {
                Ok(true) => {
                    last_renew = Some(Instant::now());
                    true
                }
                Ok(false) => false,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %self.cfg.name, "lease request failed");
                    // A leader keeps leading until the renew deadline passes.
                    last_renew.is_some_and(|t| t.elapsed() < self.cfg.renew_deadline)
                }
            };
            if !leader {
                last_renew = None;
            }
            let state = if leader {
                Leadership::Leader
            } else {
                Leadership::Follower
            };
            tx.send_if_modified(|s| {
                let changed = *s != state;
                if changed {
                    tracing::info!(identity = %self.cfg.identity, ?state, "leadership changed");
                }
                *s = state;
                changed
            });
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.retry_period) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
        self
    }

    /// The Lease settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }
}
