//! Workspace listings: one `GET workspaces/{ws}/computes` (every page) answers the
//! steady-state resync of every compute of the workspace for a while, instead of one
//! `GET compute` each.
//!
//! ARM's token buckets refill reads at 25 per second per subscription and principal: at one
//! `GET` per resource per resync, 10,000 Ready resources resyncing every 10 minutes need 16.7
//! reads per second, two thirds of the refill. A listing costs one read per page for a whole
//! workspace, so the same resync costs the pages of each workspace's list once per
//! [`WorkspaceListings::max_age`] window.
//!
//! A listing only ever *confirms* a resource: the engine trusts it for a steady resync
//! whose decision is "still Ready, nothing to write". A compute missing from it, or a
//! listing that leads to any other decision, is read again with a fresh `GET` before
//! anything is decided (see [`super::reconcile`]), so a stale entry can delay the detection
//! of drift by at most `max_age`, never cause a write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::azure::model::AksComputeResource;
use crate::azure::{ArmClient, AzureError, ResourceId};
use crate::engine::store::SubscriptionCounts;

/// One workspace's computes as listed at `fetched`.
#[derive(Debug)]
struct Listing {
    fetched: Instant,
    /// By lowercase compute name.
    computes: HashMap<String, AksComputeResource>,
    /// (compute name, `properties.resourceId`) of the computes that attach or created an
    /// AKS cluster: what the attachment check needs, computed once per listing.
    attached: Arc<Vec<(String, String)>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Listing>>>;
type WorkspacesSlot = Arc<tokio::sync::Mutex<Option<(Instant, Arc<Vec<ResourceId>>)>>>;

/// How old the listings may be that the attachment check before an attach reads (the
/// workspaces of the subscription and their computes), in real time. The check lists every
/// workspace: without sharing, attaching N clusters costs N × (workspaces + 1) lists. A
/// listing is dropped as soon as this operator writes to a compute of its workspace, so the
/// window only hides attachments made by someone else in the last 30 seconds.
pub const ATTACHMENT_CHECK_MAX_AGE: Duration = Duration::from_secs(30);

/// The listings of every workspace this process resyncs, shared by all reconciles. One
/// reconcile lists a workspace at a time; the others of the same workspace wait for it and
/// use its answer.
#[derive(Debug, Default)]
pub struct WorkspaceListings {
    slots: Mutex<HashMap<String, Slot>>,
    /// The workspaces of each subscription (lowercase id), for the attachment check.
    workspaces: Mutex<HashMap<String, WorkspacesSlot>>,
    /// Pages of the latest listing of each workspace, by lowercase workspace id (for the
    /// resync pace): read without waiting for a listing in progress.
    pages: Mutex<HashMap<String, (String, usize)>>,
}

/// What a listing says about one compute.
#[derive(Debug)]
pub enum Listed {
    /// The compute, as the list returned it.
    Found(Box<AksComputeResource>),
    /// Not in the list: the caller reads it with a `GET` (it may be newer than the list).
    Absent,
}

impl WorkspaceListings {
    /// A listing older than this is fetched again: half the subscription's nominal resync
    /// interval (in real time: divided by the time scale), so that each workspace is listed
    /// at most twice per interval whatever stretches it (ARM's budget, a drained bucket), and
    /// a resync finds a listing at most half an interval old.
    pub fn max_age(nominal: Duration, time_scale: f64) -> Duration {
        (nominal / 2).div_f64(time_scale.max(f64::MIN_POSITIVE))
    }

    fn slot(&self, workspace: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(workspace.to_string()).or_default().clone()
    }

    /// Runs `f` on a listing of `workspace` younger than `max_age`, listing it now when
    /// there is none.
    async fn with_listing<T>(
        &self,
        arm: &ArmClient,
        workspace: &ResourceId,
        max_age: Duration,
        f: impl FnOnce(&Listing) -> T,
    ) -> Result<T, AzureError> {
        let key = workspace.canonical().to_ascii_lowercase();
        let slot = self.slot(&key);
        let mut listing = slot.lock().await;
        let fresh = listing
            .as_ref()
            .is_some_and(|l| l.fetched.elapsed() < max_age);
        if !fresh {
            let (computes, pages) = arm.list_computes_paged(workspace).await?;
            let computes: HashMap<String, AksComputeResource> = computes
                .into_iter()
                .filter_map(|c| Some((c.name.clone()?.to_ascii_lowercase(), c)))
                .collect();
            let attached = computes
                .values()
                .filter_map(|c| Some((c.name.clone()?, c.properties.resource_id.clone()?)))
                .collect();
            self.pages.lock().unwrap_or_else(|e| e.into_inner()).insert(
                key.clone(),
                (workspace.subscription().to_ascii_lowercase(), pages),
            );
            *listing = Some(Listing {
                fetched: Instant::now(),
                computes,
                attached: Arc::new(attached),
            });
        }
        match listing.as_ref() {
            Some(l) => Ok(f(l)),
            None => unreachable!("a listing was just stored"),
        }
    }

    /// Compute `name` of `workspace` from a listing younger than `max_age`, listing the
    /// workspace now when there is none.
    ///
    /// # Errors
    /// The list call's failure (the caller falls back to a `GET`, whose failure goes through
    /// the verdict as usual).
    pub async fn compute(
        &self,
        arm: &ArmClient,
        workspace: &ResourceId,
        name: &str,
        max_age: Duration,
    ) -> Result<Listed, AzureError> {
        let name = name.to_ascii_lowercase();
        self.with_listing(arm, workspace, max_age, |l| match l.computes.get(&name) {
            Some(c) => Listed::Found(Box::new(c.clone())),
            None => Listed::Absent,
        })
        .await
    }

    /// (compute name, AKS cluster id) of the computes of `workspace` that attach or created
    /// an AKS cluster, from a listing younger than `max_age`.
    ///
    /// # Errors
    /// The list call's failure.
    pub async fn attached(
        &self,
        arm: &ArmClient,
        workspace: &ResourceId,
        max_age: Duration,
    ) -> Result<Arc<Vec<(String, String)>>, AzureError> {
        self.with_listing(arm, workspace, max_age, |l| l.attached.clone())
            .await
    }

    /// The workspaces of `subscription`, from a list younger than `max_age`.
    ///
    /// # Errors
    /// The list call's failure.
    pub async fn workspaces(
        &self,
        arm: &ArmClient,
        subscription: &str,
        max_age: Duration,
    ) -> Result<Arc<Vec<ResourceId>>, AzureError> {
        let slot = self
            .workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(subscription.to_ascii_lowercase())
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        if let Some((at, list)) = cached.as_ref()
            && at.elapsed() < max_age
        {
            return Ok(list.clone());
        }
        let list: Arc<Vec<ResourceId>> = Arc::new(
            arm.list_workspaces(subscription)
                .await?
                .into_iter()
                .filter_map(|w| w.id.as_deref().and_then(|i| i.parse().ok()))
                .collect(),
        );
        *cached = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// Forgets the listing of `workspace`: the operator just wrote to one of its computes,
    /// so the listing no longer describes it.
    pub fn invalidate(&self, workspace: &ResourceId) {
        let key = workspace.canonical().to_ascii_lowercase();
        if let Some(slot) = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && let Ok(mut l) = slot.try_lock()
        {
            *l = None;
        }
    }

    /// ARM reads one round of listings costs in `subscription`: the pages of the latest
    /// listing of each of its workspaces (`None` before any listing).
    pub fn pages_in_subscription(&self, subscription: &str) -> Option<usize> {
        let sub = subscription.to_ascii_lowercase();
        let pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = pages
            .values()
            .filter(|(s, _)| *s == sub)
            .map(|(_, p)| *p)
            .sum();
        (total > 0).then_some(total)
    }
}

/// ARM reads one steady-state resync of one resource costs on average when listings answer
/// them: each workspace is listed at most twice per resync interval (`max_age` is half of
/// it), `pages` reads in all for the subscription's workspaces, shared by `resources`;
/// never more than the one `GET` a resync costs without listings.
pub fn reads_per_resync(pages: Option<usize>, resources: usize) -> f64 {
    match pages {
        Some(p) => (2.0 * p as f64 / resources.max(1) as f64).min(1.0),
        None => 1.0,
    }
}

/// The read demand of one resync round of a subscription, as `(resources,
/// reads_per_resync)` for the resync pace ([`super::observe::ResyncFacts`]): `resources` is
/// every resource of the subscription (`counts.total()`), and `resources ×
/// reads_per_resync` is what one round of their steady-state resyncs costs in ARM reads.
///
/// With `pages` (the pages of the latest listing of each workspace of the subscription,
/// [`WorkspaceListings::pages_in_subscription`]), the [`listed`](SubscriptionCounts::listed)
/// resources share the listings, `2 × pages` reads per round but never more than one per
/// resource ([`reads_per_resync`]), and each [`read_each`](SubscriptionCounts::read_each)
/// resource costs its own `GET`: `reads_per_resync = (min(2 × pages, listed) + read_each) /
/// resources`. Without `pages` (no listing yet), or in a subscription of no resource,
/// `reads_per_resync` is `None`: every resource costs the policy's own figure (one read),
/// the conservative count.
///
/// Every engine paces a subscription from this, so its resources all get the same interval
/// whatever their kind.
pub fn resync_demand(pages: Option<usize>, counts: SubscriptionCounts) -> (usize, Option<f64>) {
    let resources = counts.total();
    let reads = match pages {
        Some(p) if resources > 0 => {
            let listed = counts.listed as f64 * reads_per_resync(Some(p), counts.listed);
            Some((listed + counts.read_each as f64) / resources as f64)
        }
        _ => None,
    };
    (resources, reads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_per_resync_are_shared_by_the_workspace() {
        for (pages, resources, want) in [
            (None, 10_000, 1.0),
            // 400 workspaces of 25 computes, 1 page each: 800 reads per interval.
            (Some(400), 10_000, 0.08),
            // A workspace of one compute: a list costs what a GET costs.
            (Some(1), 1, 1.0),
            (Some(3), 2, 1.0),
            (Some(1), 0, 1.0),
        ] {
            let got = reads_per_resync(pages, resources);
            assert!((got - want).abs() < 1e-9, "{pages:?} {resources}: {got}");
        }
    }

    /// 10,000 resources in one subscription, 400 workspaces of 25 computes listed in 2
    /// pages each: under token buckets the base 600 s interval fits the default 50 % share
    /// of the read refill (one GET each would need 889 s); under the hourly model the
    /// interval stretches, and the listings' age with it.
    #[test]
    fn ten_thousand_resources_resync_at_the_base_interval() {
        use crate::azure::ThrottlingModel;
        use crate::engine::resync::{ReadQuota, ResyncPolicy};
        let policy = ResyncPolicy::default();
        let quota = |model| {
            Some(ReadQuota {
                model,
                fill: Some(1.0),
            })
        };
        let reads = reads_per_resync(Some(800), 10_000);
        for (model, without, with) in [
            (ThrottlingModel::TokenBucket, 888, 600),
            (ThrottlingModel::Hourly, 6_666, 1_066),
        ] {
            let p = policy.with_reads_per_resync(Some(reads));
            let nominal = p.nominal(10_000, quota(model)).as_secs();
            let one_get = policy.nominal(10_000, quota(model)).as_secs();
            assert_eq!((one_get, nominal), (without, with), "{model:?}");
            // Within the share: listings of every workspace twice per interval.
            let per_hour = 800.0 * 2.0 * 3600.0 / nominal as f64;
            assert!(
                per_hour <= p.allowed_reads_per_hour(model),
                "{model:?}: {per_hour}"
            );
        }
    }

    fn counts(listed: usize, read_each: usize) -> SubscriptionCounts {
        SubscriptionCounts { listed, read_each }
    }

    /// A subscription's read demand per round, each kind counted as it resyncs, and the
    /// nominal interval it gives under token buckets with the default policy.
    #[test]
    fn resync_demand_counts_each_kind_as_it_resyncs() {
        use crate::engine::observe::ResyncFacts;
        use crate::engine::resync::ResyncPolicy;
        let policy = ResyncPolicy::default();
        // (pages, counts, resources, reads per resync, nominal seconds)
        type Case = (Option<usize>, SubscriptionCounts, usize, Option<f64>, f64);
        let cases: [Case; 11] = [
            // Only the legacy kinds, 400 workspaces of 25 in 1 page: 800 reads per round.
            (Some(400), counts(10_000, 0), 10_000, Some(0.08), 600.0),
            // In 2 pages each: 1,600 reads per round (what `reads_per_resync` gave).
            (Some(800), counts(10_000, 0), 10_000, Some(0.16), 600.0),
            // Only the Kubernetes path: no listing, one `GET` each.
            (None, counts(0, 2_000), 2_000, None, 600.0),
            (None, counts(0, 10_000), 10_000, None, 800.0 / 0.9),
            // Listings known (of an attachment check) do not answer their resyncs.
            (Some(400), counts(0, 10_000), 10_000, Some(1.0), 800.0 / 0.9),
            // The mix: 800 listing reads and 2,000 `GET`s per round, the base interval.
            (Some(400), counts(8_000, 2_000), 10_000, Some(0.28), 600.0),
            // Pages unknown: one read each, the conservative count (the policy's figure).
            (None, counts(8_000, 2_000), 10_000, None, 800.0 / 0.9),
            // `GET`s dominate: 400 listing reads and 20,000 `GET`s, floor 1,632 s.
            (
                Some(200),
                counts(5_000, 20_000),
                25_000,
                Some(20_400.0 / 25_000.0),
                1_632.0 / 0.9,
            ),
            // A workspace of one compute: a list costs what a `GET` costs, never more.
            (Some(3), counts(2, 1), 3, Some(1.0), 600.0),
            (Some(1), counts(1, 0), 1, Some(1.0), 600.0),
            // Nothing counted: nothing to pace.
            (Some(3), counts(0, 0), 0, None, 600.0),
        ];
        for (pages, c, resources, reads, nominal) in cases {
            let (got_resources, got_reads) = resync_demand(pages, c);
            assert_eq!(got_resources, resources, "{pages:?} {c:?}");
            assert_eq!(got_reads.is_some(), reads.is_some(), "{pages:?} {c:?}");
            if let (Some(got), Some(want)) = (got_reads, reads) {
                assert!((got - want).abs() < 1e-9, "{pages:?} {c:?}: {got}");
            }
            let facts = ResyncFacts {
                resources: got_resources.max(1),
                quota: None,
                seed: 0,
                reads_per_resync: got_reads,
            };
            let got = facts.nominal(&policy).as_secs_f64();
            assert!((got - nominal).abs() < 1e-6, "{pages:?} {c:?}: {got}");
        }
        // Only legacy kinds: the same figure as `reads_per_resync` over all of them.
        for (pages, n) in [(Some(400), 10_000), (Some(1), 1), (Some(3), 2), (None, 7)] {
            let got = resync_demand(pages, counts(n, 0)).1.unwrap_or(1.0);
            assert!(
                (got - reads_per_resync(pages, n)).abs() < 1e-12,
                "{pages:?} {n}"
            );
        }
    }

    /// 8,000 legacy resources and 2,000 Kubernetes-path ones in one subscription, 400
    /// workspaces of one page each: 2,800 reads per round fit the default 50 % of the token
    /// buckets' refill at the base interval, and every engine requeues every kind at the
    /// same interval, 600 s ± 10 % (each engine at one read each: 889 s, as before).
    #[test]
    fn a_mixed_subscription_resyncs_every_kind_at_the_base_interval() {
        use crate::azure::ThrottlingModel;
        use crate::engine::observe::{Observed, ResyncFacts};
        use crate::engine::resync::ReadQuota;
        use crate::engine::{EngineConfig, azureml_extension, decide, kubernetes_compute};
        let cfg = EngineConfig::default();
        let (resources, reads_per_resync) = resync_demand(Some(400), counts(8_000, 2_000));
        let quota = Some(ReadQuota {
            model: ThrottlingModel::TokenBucket,
            fill: Some(1.0),
        });
        let (mut lo, mut hi) = (f64::MAX, 0.0f64);
        for seed in 0..500u64 {
            let resync = ResyncFacts {
                resources,
                quota,
                seed,
                reads_per_resync,
            };
            let legacy = decide::steady(
                &Observed {
                    resync,
                    ..Observed::default()
                },
                &cfg,
            );
            let compute = kubernetes_compute::steady(
                &kubernetes_compute::ObservedAttachment {
                    resync,
                    ..Default::default()
                },
                &cfg,
            );
            let extension = azureml_extension::steady(
                &azureml_extension::ObservedExtension {
                    resync,
                    ..Default::default()
                },
                &cfg,
            );
            assert_eq!(legacy, compute, "seed {seed}");
            assert_eq!(legacy, extension, "seed {seed}");
            let s = legacy.as_secs_f64();
            assert!((540.0..=660.0).contains(&s), "seed {seed}: {s}");
            lo = lo.min(s);
            hi = hi.max(s);
        }
        assert!(lo < 550.0 && hi > 650.0, "{lo}..{hi}");
        // What the Kubernetes-path engines computed before: one read for every resource.
        let one_each = ResyncFacts {
            resources,
            quota,
            seed: 0,
            reads_per_resync: None,
        };
        assert_eq!(one_each.nominal(&cfg.resync).as_secs(), 888);
    }

    #[test]
    fn max_age_is_half_the_interval_in_real_time() {
        assert_eq!(
            WorkspaceListings::max_age(Duration::from_secs(600), 1.0),
            Duration::from_secs(300)
        );
        assert_eq!(
            WorkspaceListings::max_age(Duration::from_secs(600), 360.0),
            Duration::from_secs_f64(300.0 / 360.0)
        );
    }
}
