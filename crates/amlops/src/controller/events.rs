//! Kubernetes Events (`events.k8s.io/v1`) of the operator, repetitions counted in a series.
//!
//! What kube-runtime's `Recorder` does — the same Event objects, the series key as far as
//! amlops uses it (type, action, reason, reporting controller and instance, the regarded
//! object's apiVersion, kind, namespace, name and uid; amlops sets no related object), the
//! same 6-minute series window — with a cache that stays small. The `Recorder` keeps, per series, the
//! whole Event and a copy of its object reference (about 1.4 KB inline in its hash table)
//! for 6 minutes, and walks its whole cache on every publish: converging 3,000 resources
//! (three events each) its table alone peaked at 23.6 MB (heaptrack, BENCHMARKS.md "The
//! operator's memory at 10,000"), and at 10,000 resources each event cost a walk of ~30,000
//! entries. It has no setting for either, hence this module: per series it keeps a 64-bit
//! digest of the key, the Event's name, its count and when it was last seen (~100 bytes),
//! and sweeps expired series at most once per window.
//!
//! A repetition within the window patches the Event's `series` (count, last observed time),
//! as client-go's event broadcaster does
//! (<https://github.com/kubernetes/client-go/blob/master/tools/events/event_broadcaster.go>);
//! an Event the API server no longer has (its TTL, one hour by default, or someone deleted
//! it) starts a new one instead of failing.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use serde_json::json;

/// How long a repetition joins its Event's series (kube-runtime's `Recorder` and
/// client-go's event broadcaster both use 6 minutes).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// One series: the Event that counts it and how many times it happened.
#[derive(Debug)]
struct Series {
    name: String,
    count: i32,
    last: Instant,
}

#[derive(Debug)]
struct Cache {
    series: HashMap<u64, Series>,
    swept: Instant,
}

/// Publishes Events as one reporter. Clones share the series cache.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    window: Duration,
    cache: Arc<Mutex<Cache>>,
}

impl EventRecorder {
    /// A recorder publishing as `reporter` (its controller name and instance).
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self::with_window(client, reporter, SERIES_WINDOW)
    }

    /// Same, with a series window other than [`SERIES_WINDOW`] (tests).
    pub fn with_window(client: Client, reporter: Reporter, window: Duration) -> Self {
        Self {
            client,
            reporter,
            window,
            cache: Arc::new(Mutex::new(Cache {
                series: HashMap::new(),
                swept: Instant::now(),
            })),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The series key: what kube-runtime's `Recorder` keys its cache by, less the related
    /// object, which amlops never sets (`ev.secondary` is not hashed). In-process only,
    /// so the std hasher's stability across Rust versions does not matter; two keys of one
    /// digest (odds ~10⁻¹¹ among 30,000 series) would merely count into one series.
    fn key(&self, ev: &Event, regarding: &ObjectReference) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        matches!(ev.type_, EventType::Warning).hash(&mut h);
        ev.action.hash(&mut h);
        ev.reason.hash(&mut h);
        self.reporter.controller.hash(&mut h);
        self.reporter.instance.hash(&mut h);
        for field in [
            &regarding.api_version,
            &regarding.kind,
            &regarding.namespace,
            &regarding.name,
            &regarding.uid,
        ] {
            field.hash(&mut h);
        }
        h.finish()
    }

    /// How many series are cached (tests and diagnostics).
    pub fn cached_series(&self) -> usize {
        self.cache().series.len()
    }

    /// Publishes `ev` about `regarding` (in its namespace, `default` for a cluster-scoped
    /// object): a new Event, or the next count of the series it repeats.
    ///
    /// # Errors
    /// The API server's refusal to create or patch the Event.
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = self.key(ev, regarding);
        let now = Instant::now();
        let repeat = {
            let mut cache = self.cache();
            if now.duration_since(cache.swept) >= self.window {
                let window = self.window;
                cache
                    .series
                    .retain(|_, s| now.duration_since(s.last) < window);
                cache.swept = now;
            }
            cache
                .series
                .get(&key)
                .filter(|s| now.duration_since(s.last) < self.window)
                .map(|s| (s.name.clone(), s.count + 1))
        };
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        if let Some((name, count)) = repeat {
            let series = EventSeries {
                count,
                last_observed_time: MicroTime(jiff::Timestamp::now()),
            };
            let patch = json!({ "series": series });
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.remember(key, name, count);
                    return Ok(());
                }
                // Gone (the API server's event TTL): a new Event starts the series again.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.event(ev, regarding);
        let created = events.create(&PostParams::default(), &event).await?;
        self.remember(key, created.metadata.name.unwrap_or_default(), 1);
        Ok(())
    }

    fn remember(&self, key: u64, name: String, count: i32) {
        self.cache().series.insert(
            key,
            Series {
                name,
                count,
                last: Instant::now(),
            },
        );
    }

    /// The first Event of a series, as kube-runtime's `Recorder` builds it.
    fn event(&self, ev: &Event, regarding: &ObjectReference) -> K8sEvent {
        let now = jiff::Timestamp::now();
        let controller = &self.reporter.controller;
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            note: ev.note.clone(),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_ref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            related: ev.secondary.clone(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("amlops.dev/v1alpha1".into()),
            kind: Some("InferenceCluster".into()),
            name: Some(name.into()),
            namespace: Some("ml".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    fn event(reason: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(format!("{reason} happened")),
            action: "Reconcile".into(),
            secondary: None,
        }
    }

    /// (reason, regarded name, series count) of every Event of `ml`, sorted.
    fn seen(fake: &amlops_fake_kube::FakeApiServer) -> Vec<(String, String, i64)> {
        let mut v: Vec<_> = fake
            .events("ml")
            .iter()
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or_default().to_string(),
                    e["regarding"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    e["series"]["count"].as_i64().unwrap_or(1),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn repetitions_count_in_the_series_of_their_event() {
        let fake = amlops_fake_kube::FakeApiServer::start().await.unwrap();
        let reporter = Reporter {
            controller: "amlops".into(),
            instance: Some("amlops-7d9f".into()),
        };
        let r = EventRecorder::new(fake.client(), reporter);
        for _ in 0..3 {
            r.publish(&event("Creating"), &reference("a"))
                .await
                .unwrap();
        }
        r.publish(&event("Creating"), &reference("b"))
            .await
            .unwrap();
        r.publish(&event("Ready"), &reference("a")).await.unwrap();
        assert_eq!(
            seen(&fake),
            [
                ("Creating".into(), "a".into(), 3),
                ("Creating".into(), "b".into(), 1),
                ("Ready".into(), "a".into(), 1),
            ]
        );
        let e = &fake.events("ml")[0];
        assert_eq!(e["reportingController"], "amlops");
        assert_eq!(e["reportingInstance"], "amlops-7d9f");
        assert_eq!(r.cached_series(), 3);
    }

    #[tokio::test]
    async fn a_repetition_after_the_window_starts_a_new_event_and_old_series_are_swept() {
        let fake = amlops_fake_kube::FakeApiServer::start().await.unwrap();
        let window = Duration::from_millis(50);
        let r = EventRecorder::with_window(fake.client(), Reporter::from("amlops"), window);
        r.publish(&event("Creating"), &reference("a"))
            .await
            .unwrap();
        r.publish(&event("Other"), &reference("b")).await.unwrap();
        tokio::time::sleep(window * 2).await;
        r.publish(&event("Creating"), &reference("a"))
            .await
            .unwrap();
        assert_eq!(
            seen(&fake),
            [
                ("Creating".into(), "a".into(), 1),
                ("Creating".into(), "a".into(), 1),
                ("Other".into(), "b".into(), 1),
            ]
        );
        // Only the series just started is kept.
        assert_eq!(r.cached_series(), 1);
    }

    #[tokio::test]
    async fn an_event_the_api_server_dropped_is_created_again() {
        let fake = amlops_fake_kube::FakeApiServer::start().await.unwrap();
        let client = fake.client();
        let r = EventRecorder::new(client.clone(), Reporter::from("amlops"));
        r.publish(&event("Creating"), &reference("a"))
            .await
            .unwrap();
        let events: Api<K8sEvent> = Api::namespaced(client, "ml");
        let name = fake.events("ml")[0]["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        events.delete(&name, &Default::default()).await.unwrap();
        r.publish(&event("Creating"), &reference("a"))
            .await
            .unwrap();
        assert_eq!(seen(&fake), [("Creating".into(), "a".into(), 1)]);
        // …and the series goes on from the new one.
        r.publish(&event("Creating"), &reference("a"))
            .await
            .unwrap();
        assert_eq!(seen(&fake), [("Creating".into(), "a".into(), 2)]);
    }
}
