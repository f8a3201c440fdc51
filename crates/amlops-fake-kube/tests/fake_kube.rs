//! The fake Kubernetes API server answers an unmodified `kube::Client` and kube-runtime
//! (watcher, reflector, Controller, finalizer helper, event Recorder) the way a real API
//! server would, for everything the controller relies on.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use amlops::crd::{InferenceCluster, all_crds};
use amlops_fake_kube::{FakeApiServer, Fault};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, finalizer, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
const AV: &str = "amlops.dev/v1alpha1";

async fn fake_with_crds() -> FakeApiServer {
    let fake = FakeApiServer::start().await.expect("bind 127.0.0.1");
    for crd in all_crds() {
        fake.install_crd(crd).expect("install CRD");
    }
    fake
}

fn example_ic() -> InferenceCluster {
    serde_saphyr::from_str(amlops_testkit::EXAMPLES[0].1).expect("example")
}

fn api_code(err: &kube::Error) -> u16 {
    match err {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn secret(name: &str, labels: &[(&str, &str)]) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()},
        "stringData": {"k": "v"},
        "data": {"d": "aGVsbG8="},
    }))
    .unwrap()
}

#[tokio::test]
async fn secrets_crud_through_api() {
    let fake = FakeApiServer::start().await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(fake.client(), "ns1");

    let created = secrets
        .create(&PostParams::default(), &secret("a", &[("app", "x")]))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.namespace.as_deref(), Some("ns1"));
    let rv1: u64 = created.resource_version().unwrap().parse().unwrap();
    secrets
        .create(&PostParams::default(), &secret("b", &[("app", "y")]))
        .await
        .unwrap();

    let err = secrets
        .create(&PostParams::default(), &secret("a", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 409);
    if let kube::Error::Api(s) = &err {
        assert_eq!(s.reason, "AlreadyExists");
        assert_eq!(s.message, "secrets \"a\" already exists");
    }

    let got = secrets.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["d"].0, b"hello");
    assert_eq!(
        secrets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let by_label = secrets
        .list(&ListParams::default().labels("app=x"))
        .await
        .unwrap();
    assert_eq!(by_label.items.len(), 1);
    let by_field = secrets
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_field.items[0].name_any(), "b");
    let all: Api<Secret> = Api::all(fake.client());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    let page = secrets.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let rest = secrets
        .list(
            &ListParams::default()
                .limit(1)
                .continue_token(page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(rest.items[0].name_any(), "b");

    let mut s = secrets.get("a").await.unwrap();
    s.metadata.labels = Some([("app".to_string(), "z".to_string())].into());
    let replaced = secrets
        .replace("a", &PostParams::default(), &s)
        .await
        .unwrap();
    assert!(replaced.resource_version().unwrap().parse::<u64>().unwrap() > rv1);
    let patched = secrets
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"n": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.annotations()["n"], "1");
    assert_eq!(patched.labels()["app"], "z");

    let deleted = secrets.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(
        deleted.is_right(),
        "built-in kinds answer a Status on delete"
    );
    assert_eq!(api_code(&secrets.get("a").await.unwrap_err()), 404);
    assert_eq!(
        api_code(
            &secrets
                .delete("a", &DeleteParams::default())
                .await
                .unwrap_err()
        ),
        404
    );
    assert!(fake.get("v1", "Secret", Some("ns1"), "a").is_none());
    assert!(fake.get("v1", "secrets", Some("ns1"), "b").is_some());
    fake.shutdown().await;
}

#[tokio::test]
async fn lease_replace_with_stale_resource_version_conflicts() {
    let fake = FakeApiServer::start().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(fake.client(), "amlops-system");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "amlops-leader"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15}
    }))
    .unwrap();
    let first = leases.create(&PostParams::default(), &lease).await.unwrap();

    let mut by_a = first.clone();
    by_a.spec.as_mut().unwrap().lease_transitions = Some(1);
    let renewed = leases
        .replace("amlops-leader", &PostParams::default(), &by_a)
        .await
        .unwrap();
    assert_ne!(renewed.resource_version(), first.resource_version());

    // Pod B still holds the first version: its takeover must fail.
    let mut by_b = first.clone();
    by_b.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    let err = leases
        .replace("amlops-leader", &PostParams::default(), &by_b)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 409);
    if let kube::Error::Api(s) = &err {
        assert_eq!(s.reason, "Conflict");
    }
    // So must a merge patch carrying the stale resourceVersion.
    let err = leases
        .patch(
            "amlops-leader",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": first.resource_version()}, "spec": {"holderIdentity": "pod-b"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 409);
    let now = leases.get("amlops-leader").await.unwrap();
    assert_eq!(now.spec.unwrap().holder_identity.as_deref(), Some("pod-a"));
    fake.shutdown().await;
}

#[tokio::test]
async fn watcher_and_reflector_see_add_modify_delete() {
    let fake = fake_with_crds().await;
    let client = fake.client();
    let api: Api<InferenceCluster> = Api::all(client.clone());
    let (reader, writer) = reflector::store::<InferenceCluster>();
    // The reflector runs on its own so that its store keeps up; applied objects come here.
    let (tx, mut applied) = tokio::sync::mpsc::unbounded_channel();
    let reflect = tokio::spawn(
        reflector(writer, watcher(api, watcher::Config::default()))
            .applied_objects()
            .for_each(move |o| {
                let _ = tx.send(o);
                async {}
            }),
    );
    // A raw watcher too, to see the deletion.
    let raw_api: Api<InferenceCluster> = Api::namespaced(client.clone(), "ml-platform");
    let mut raw = watcher(raw_api.clone(), watcher::Config::default()).boxed();
    assert!(matches!(
        raw.try_next().await.unwrap(),
        Some(watcher::Event::Init)
    ));
    assert!(matches!(
        raw.try_next().await.unwrap(),
        Some(watcher::Event::InitDone)
    ));

    let ic = example_ic();
    raw_api.create(&PostParams::default(), &ic).await.unwrap();
    let seen = tokio::time::timeout(WAIT, applied.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.name_any(), "prod-scoring");
    assert_eq!(seen.metadata.generation, Some(1));
    assert!(matches!(
        raw.try_next().await.unwrap(),
        Some(watcher::Event::Apply(_))
    ));

    fake.put(json!({
        "apiVersion": AV, "kind": "InferenceCluster",
        "metadata": {"name": "prod-scoring", "namespace": "ml-platform"},
        "spec": {"workspace": {"subscriptionId": "00000000-0000-0000-0000-000000000000", "resourceGroup": "ml-rg", "name": "ml-ws"},
                 "computeName": "prodaks", "agentCount": 5}
    }))
    .unwrap();
    let seen = tokio::time::timeout(WAIT, applied.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.spec.agent_count, 5);
    assert_eq!(seen.metadata.generation, Some(2));
    assert_eq!(reader.state().len(), 1);
    assert!(matches!(
        raw.try_next().await.unwrap(),
        Some(watcher::Event::Apply(_))
    ));

    fake.delete(AV, "InferenceCluster", Some("ml-platform"), "prod-scoring")
        .unwrap();
    match tokio::time::timeout(WAIT, raw.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(watcher::Event::Delete(o)) => assert_eq!(o.name_any(), "prod-scoring"),
        other => panic!("expected a delete, got {other:?}"),
    }
    assert!(fake.wait_until(WAIT, |_| reader.state().is_empty()).await);
    reflect.abort();
    fake.shutdown().await;
}

#[tokio::test]
async fn streaming_list_watcher_and_label_selectors() {
    let fake = FakeApiServer::start().await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(fake.client(), "default");
    secrets
        .create(&PostParams::default(), &secret("pre", &[("app", "x")]))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &secret("other", &[("app", "y")]))
        .await
        .unwrap();
    let cfg = watcher::Config::default().streaming_lists().labels("app=x");
    let mut events = watcher(secrets.clone(), cfg).boxed();
    let mut init = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, events.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(watcher::Event::InitApply(o)) => init.push(o.name_any()),
            Some(watcher::Event::InitDone) => break,
            Some(watcher::Event::Init) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(init, ["pre"]);
    let watch_req = fake.requests().into_iter().find(|r| r.is_watch()).unwrap();
    assert_eq!(
        watch_req.param("sendInitialEvents").as_deref(),
        Some("true")
    );
    // Relabelling an object into the selector is an ADDED, out of it a DELETED.
    secrets
        .patch(
            "other",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
        )
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, events.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(watcher::Event::Apply(o)) => assert_eq!(o.name_any(), "other"),
        other => panic!("unexpected {other:?}"),
    }
    secrets
        .patch(
            "pre",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}})),
        )
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, events.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(watcher::Event::Delete(o)) => assert_eq!(o.name_any(), "pre"),
        other => panic!("unexpected {other:?}"),
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn raw_watch_bookmarks_timeout_and_expiry() {
    let fake = FakeApiServer::start_with(Duration::from_millis(50))
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(fake.client(), "default");
    let s = secrets
        .create(&PostParams::default(), &secret("w", &[]))
        .await
        .unwrap();
    let rv = s.resource_version().unwrap();
    secrets.delete("w", &DeleteParams::default()).await.unwrap();

    // From the create's version: the deletion is replayed, bookmarks follow, and the
    // stream ends after timeoutSeconds.
    let wp = WatchParams::default().timeout(1);
    let started = std::time::Instant::now();
    let events: Vec<_> = secrets.watch(&wp, &rv).await.unwrap().collect().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(events[0], Ok(WatchEvent::Deleted(_))));
    assert!(
        events[1..]
            .iter()
            .all(|e| matches!(e, Ok(WatchEvent::Bookmark(_))))
    );
    assert!(events.len() > 2, "bookmarks every 50ms: {events:?}");

    fake.compact();
    let mut stream = secrets.watch(&wp, &rv).await.unwrap().boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
    fake.shutdown().await;
}

/// A watcher that falls behind is closed, not answered 410 (the API server's watch cache
/// closes an unresponsive watcher), and watching again from the last resourceVersion it saw
/// brings every change it missed, in order, from the change log: a client that resumes so
/// needs no relist.
#[tokio::test]
async fn a_watch_that_falls_behind_ends_and_resumes_from_its_resource_version() {
    const CHANGES: usize = 200;
    let fake = FakeApiServer::start_with_watch_capacity(4).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(fake.client(), "default");
    let from = fake.resource_version();
    let wp = WatchParams::default().timeout(60);
    // Opened and not read while the changes are made: 200 changes of 256 KiB (~68 MB of
    // watch events, base64) are more than loopback's socket buffers can ever hold (at most
    // tcp_rmem + tcp_wmem, 32 + 4 MiB on Linux's defaults), the fake's 32-line body channel
    // and the 4 changes it may fall behind, so the watch is sure to lag.
    let stalled = secrets.watch(&wp, &from).await.unwrap();
    let mut made = Vec::new();
    for i in 0..CHANGES {
        let mut s = secret(&format!("big-{i:03}"), &[]);
        s.string_data = Some([("blob".to_string(), "x".repeat(256 * 1024))].into());
        secrets.create(&PostParams::default(), &s).await.unwrap();
        made.push(format!("big-{i:03}"));
    }
    let added = |events: Vec<Result<WatchEvent<Secret>, kube::Error>>| -> Vec<(String, String)> {
        events
            .into_iter()
            .filter_map(|e| match e {
                Ok(WatchEvent::Added(s)) => Some((s.name_any(), s.resource_version().unwrap())),
                Ok(WatchEvent::Bookmark(_)) => None,
                other => panic!("only additions expected (no 410), got {other:?}"),
            })
            .collect()
    };
    // Long before its 60 s timeout the stream ends, with part of the changes.
    let first = tokio::time::timeout(Duration::from_secs(30), stalled.collect::<Vec<_>>())
        .await
        .expect("a watch that fell behind ends");
    let first = added(first);
    assert!(
        !first.is_empty() && first.len() < CHANGES,
        "the lagging watch delivered {} of {CHANGES} changes before it ended",
        first.len()
    );
    // From the last resourceVersion it saw, the rest follow, then the watch times out.
    let last_rv = first.last().unwrap().1.clone();
    let rest = secrets
        .watch(&WatchParams::default().timeout(2), &last_rv)
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await;
    let seen: Vec<String> = first
        .into_iter()
        .chain(added(rest))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(seen, made);
    fake.shutdown().await;
}

#[tokio::test]
async fn watcher_relists_after_410() {
    let fake = FakeApiServer::start().await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(fake.client(), "default");
    let (reader, writer) = reflector::store::<Secret>();
    let wc = watcher::Config::default().timeout(1);
    let task = tokio::spawn(
        reflector(writer, watcher(secrets.clone(), wc).default_backoff()).for_each(|_| async {}),
    );
    secrets
        .create(&PostParams::default(), &secret("one", &[]))
        .await
        .unwrap();
    assert!(fake.wait_until(WAIT, |_| reader.state().len() == 1).await);
    // Compaction alone does not disturb a watcher that keeps up (bookmarks move it on).
    fake.compact();
    secrets
        .create(&PostParams::default(), &secret("two", &[]))
        .await
        .unwrap();
    assert!(fake.wait_until(WAIT, |_| reader.state().len() == 2).await);
    let lists = |f: &FakeApiServer| {
        f.requests()
            .iter()
            .filter(|r| r.method == "GET" && !r.is_watch())
            .count()
    };
    assert_eq!(lists(&fake), 1);
    // An expired watch (410) makes the watcher relist.
    fake.expire_watches();
    assert!(fake.wait_until(WAIT, |f| lists(f) >= 2).await);
    secrets
        .create(&PostParams::default(), &secret("three", &[]))
        .await
        .unwrap();
    assert!(fake.wait_until(WAIT, |_| reader.state().len() == 3).await);
    task.abort();
    fake.shutdown().await;
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let fake = fake_with_crds().await;
    let api: Api<InferenceCluster> = Api::namespaced(fake.client(), "ml-platform");
    let created = api
        .create(&PostParams::default(), &example_ic())
        .await
        .unwrap();

    // kube-runtime's finalizer helper adds ours with a JSON patch (test + add).
    let obj = Arc::new(created);
    let action = finalizer(&api, amlops::crd::FINALIZER, obj, |_| async {
        Ok::<_, Infallible>(Action::await_change())
    })
    .await
    .unwrap();
    assert_eq!(action, Action::await_change());
    let with = api.get("prod-scoring").await.unwrap();
    assert_eq!(with.finalizers(), [amlops::crd::FINALIZER]);
    let patch_req = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(
        patch_req.content_type.as_deref(),
        Some("application/json-patch+json")
    );

    // Delete: the object stays, terminating, with a deletionTimestamp.
    let resp = api
        .delete("prod-scoring", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = resp.left().expect("object while finalizers are pending");
    assert!(terminating.meta().deletion_timestamp.is_some());
    let gen_before = with.metadata.generation.unwrap();
    assert_eq!(terminating.metadata.generation, Some(gen_before + 1));
    // No new finalizers may be added now.
    let err = api
        .patch(
            "prod-scoring",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": [amlops::crd::FINALIZER, "other/x"]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 422);

    // The helper runs cleanup and removes the finalizer; then the object is gone.
    let cleaned = Arc::new(AtomicUsize::new(0));
    let c = cleaned.clone();
    let obj = Arc::new(api.get("prod-scoring").await.unwrap());
    finalizer(&api, amlops::crd::FINALIZER, obj, |ev| async move {
        if let finalizer::Event::Cleanup(_) = ev {
            c.fetch_add(1, Ordering::SeqCst);
        }
        Ok::<_, Infallible>(Action::await_change())
    })
    .await
    .unwrap();
    assert_eq!(cleaned.load(Ordering::SeqCst), 1);
    assert_eq!(api_code(&api.get("prod-scoring").await.unwrap_err()), 404);

    // A user delete of an object without finalizers removes it at once.
    api.create(&PostParams::default(), &example_ic())
        .await
        .unwrap();
    assert_eq!(
        fake.delete(AV, "inferenceclusters", Some("ml-platform"), "prod-scoring")
            .unwrap(),
        None
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let fake = fake_with_crds().await;
    let api: Api<InferenceCluster> = Api::namespaced(fake.client(), "ml-platform");
    let mut ic = example_ic();
    ic.status = Some(Default::default());
    ic.status.as_mut().unwrap().compute_name = Some("ignored-on-create".into());
    let created = api.create(&PostParams::default(), &ic).await.unwrap();
    // The body's status is dropped on create; the CRD's default status takes its place
    // (structural defaulting, as on the real API server).
    assert_eq!(
        created.status,
        Some(Default::default()),
        "status is dropped on create, then defaulted to {{observedGeneration: -1}}"
    );
    let raw = fake
        .get(AV, "InferenceCluster", Some("ml-platform"), "prod-scoring")
        .unwrap();
    assert_eq!(raw["status"], json!({"observedGeneration": -1}));
    assert_eq!(created.metadata.generation, Some(1));

    let status_patch = json!({
        "apiVersion": AV, "kind": "InferenceCluster",
        "status": {"phase": "Creating", "observedGeneration": 1, "computeName": "prodaks"}
    });
    let pp = PatchParams::apply("amlops").force();
    let after = api
        .patch_status("prod-scoring", &pp, &Patch::Apply(&status_patch))
        .await
        .unwrap();
    let st = after.status.clone().unwrap();
    assert_eq!(st.compute_name.as_deref(), Some("prodaks"));
    assert_eq!(
        after.metadata.generation,
        Some(1),
        "status writes keep generation"
    );
    assert_eq!(after.spec, created.spec);
    let req = fake
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(
        req.path,
        "/apis/amlops.dev/v1alpha1/namespaces/ml-platform/inferenceclusters/prod-scoring/status"
    );
    assert_eq!(
        req.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(req.param("fieldManager").as_deref(), Some("amlops"));
    assert_eq!(req.param("force").as_deref(), Some("true"));
    assert_eq!(req.body.as_ref().unwrap()["status"]["phase"], "Creating");

    // Re-applying the same status is a no-op: no new resourceVersion.
    let again = api
        .patch_status("prod-scoring", &pp, &Patch::Apply(&status_patch))
        .await
        .unwrap();
    assert_eq!(again.resource_version(), after.resource_version());

    // Applying without a field the manager set before removes it.
    let narrower = json!({"apiVersion": AV, "kind": "InferenceCluster", "status": {"phase": "Ready", "observedGeneration": 1}});
    let after = api
        .patch_status("prod-scoring", &pp, &Patch::Apply(&narrower))
        .await
        .unwrap();
    let st = after.status.unwrap();
    assert_eq!(st.compute_name, None);
    assert_eq!(st.phase, Some(amlops::crd::Phase::Ready));

    // Main-resource writes ignore .status; metadata-only changes keep generation.
    let labelled = api
        .patch(
            "prod-scoring",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"a": "b"}}, "status": {"phase": "Failed"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.status.unwrap().phase,
        Some(amlops::crd::Phase::Ready)
    );
    assert_eq!(labelled.metadata.generation, Some(1));

    // Spec changes bump generation, through every patch type.
    let g2 = api
        .patch(
            "prod-scoring",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"agentCount": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(g2.metadata.generation, Some(2));
    let spec_apply =
        json!({"apiVersion": AV, "kind": "InferenceCluster", "spec": {"description": "d"}});
    let g3 = api
        .patch(
            "prod-scoring",
            &PatchParams::apply("kubectl"),
            &Patch::Apply(&spec_apply),
        )
        .await
        .unwrap();
    assert_eq!(g3.metadata.generation, Some(3));
    assert_eq!(g3.spec.agent_count, 4, "apply merges into the stored spec");
    let g4 = api
        .patch(
            "prod-scoring",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "replace", "path": "/spec/agentCount", "value": 6}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(g4.metadata.generation, Some(4));

    // PUT on a custom resource needs a current resourceVersion.
    let mut stale = g2.clone();
    stale.spec.agent_count = 9;
    assert_eq!(
        api_code(
            &api.replace("prod-scoring", &PostParams::default(), &stale)
                .await
                .unwrap_err()
        ),
        409
    );
    stale.metadata.resource_version = None;
    assert_eq!(
        api_code(
            &api.replace("prod-scoring", &PostParams::default(), &stale)
                .await
                .unwrap_err()
        ),
        422
    );
    let mut fresh = api.get("prod-scoring").await.unwrap();
    fresh.spec.agent_count = 9;
    fresh.status.as_mut().unwrap().phase = Some(amlops::crd::Phase::Deleting);
    let put = api
        .replace("prod-scoring", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(put.metadata.generation, Some(5));
    assert_eq!(put.status.unwrap().phase, Some(amlops::crd::Phase::Ready));
    // replace_status changes only the status.
    let mut st = api.get_status("prod-scoring").await.unwrap();
    st.spec.agent_count = 1;
    st.status.as_mut().unwrap().phase = Some(amlops::crd::Phase::Deleting);
    let put = api
        .replace_status("prod-scoring", &PostParams::default(), &st)
        .await
        .unwrap();
    assert_eq!(put.spec.agent_count, 9);
    assert_eq!(
        put.status.unwrap().phase,
        Some(amlops::crd::Phase::Deleting)
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_conflicts_between_managers() {
    let fake = fake_with_crds().await;
    let api: Api<InferenceCluster> = Api::namespaced(fake.client(), "ml-platform");
    let mut body = serde_json::to_value(example_ic()).unwrap();
    body["spec"]["description"] = json!("by-a");
    // Apply creates a missing object.
    let created = api
        .patch(
            "prod-scoring",
            &PatchParams::apply("a"),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
    assert_eq!(created.spec.description.as_deref(), Some("by-a"));
    let other =
        json!({"apiVersion": AV, "kind": "InferenceCluster", "spec": {"description": "by-b"}});
    let err = api
        .patch(
            "prod-scoring",
            &PatchParams::apply("b"),
            &Patch::Apply(&other),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 409);
    let forced = api
        .patch(
            "prod-scoring",
            &PatchParams::apply("b").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.description.as_deref(), Some("by-b"));
    // Apply without a field manager is rejected.
    let err = api
        .patch(
            "prod-scoring",
            &PatchParams::default(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 422);
    fake.shutdown().await;
}

/// Objects carry `managedFields` as a real API server returns them: an entry per (manager,
/// operation, subresource), the manager from `fieldManager`, and a write
/// that changes nothing changes neither the object nor its entries.
#[tokio::test]
async fn objects_carry_managed_fields_per_manager() {
    let fake = fake_with_crds().await;
    let api: Api<InferenceCluster> = Api::namespaced(fake.client(), "ml-platform");
    let ic = example_ic();
    let name = ic.name_any();
    let create = PostParams {
        field_manager: Some("kubectl-create".into()),
        ..PostParams::default()
    };
    api.create(&create, &ic).await.unwrap();
    let status = json!({"apiVersion": AV, "kind": "InferenceCluster",
                        "status": {"phase": "Creating"}});
    let applied = api
        .patch_status(&name, &PatchParams::apply("amlops"), &Patch::Apply(&status))
        .await
        .unwrap();
    let entries = applied.managed_fields();
    let seen: Vec<(&str, &str, Option<&str>)> = entries
        .iter()
        .map(|e| {
            (
                e.manager.as_deref().unwrap_or_default(),
                e.operation.as_deref().unwrap_or_default(),
                e.subresource.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("kubectl-create", "Update", None),
            ("amlops", "Apply", Some("status"))
        ]
    );
    let fields = entries[1].fields_v1.as_ref().unwrap();
    // Approximated: the entry owns the whole status it wrote (the API server: the fields
    // of its applied configuration).
    assert_eq!(fields.0["f:status"]["f:phase"], json!({}));
    assert!(fields.0.get("f:spec").is_none());
    // The same apply again: no write, same resourceVersion and entries.
    let again = api
        .patch_status(&name, &PatchParams::apply("amlops"), &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(again.resource_version(), applied.resource_version());
    assert_eq!(again.managed_fields(), applied.managed_fields());
    // A watch event carries them too.
    let listed = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items[0].managed_fields().len(), 2);
    fake.shutdown().await;
}

#[tokio::test]
async fn recorder_publishes_events() {
    let fake = fake_with_crds().await;
    let client = fake.client();
    let api: Api<InferenceCluster> = Api::namespaced(client.clone(), "ml-platform");
    let ic = api
        .create(&PostParams::default(), &example_ic())
        .await
        .unwrap();
    let recorder = Recorder::new(client.clone(), Reporter::from("amlops"));
    let reference: ObjectReference = ic.object_ref(&());
    let ev = Event {
        type_: EventType::Normal,
        reason: "Creating".into(),
        note: Some("creating the AKS cluster".into()),
        action: "Create".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events = fake.events("ml-platform");
    assert_eq!(events.len(), 1, "the repeat is a series on the same Event");
    assert_eq!(events[0]["reason"], "Creating");
    assert_eq!(events[0]["regarding"]["name"], "prod-scoring");
    assert_eq!(events[0]["series"]["count"], 2);
    let listed: Api<K8sEvent> = Api::namespaced(client, "ml-platform");
    let list = listed
        .list(&ListParams::default().fields("regarding.name=prod-scoring"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    fake.shutdown().await;
}

async fn reconcile(
    obj: Arc<InferenceCluster>,
    ctx: Arc<(Api<InferenceCluster>, AtomicUsize)>,
) -> Result<Action, kube::Error> {
    ctx.1.fetch_add(1, Ordering::SeqCst);
    let status = json!({
        "apiVersion": AV, "kind": "InferenceCluster",
        "status": {"phase": "Ready", "observedGeneration": obj.metadata.generation}
    });
    ctx.0
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply("amlops").force(),
            &Patch::Apply(&status),
        )
        .await?;
    Ok(Action::await_change())
}

fn error_policy(
    _: Arc<InferenceCluster>,
    _: &kube::Error,
    _: Arc<(Api<InferenceCluster>, AtomicUsize)>,
) -> Action {
    Action::requeue(Duration::from_millis(100))
}

#[tokio::test]
async fn controller_reconciles_objects_created_after_start() {
    let fake = fake_with_crds().await;
    let client = fake.client();
    let ctx = Arc::new((
        Api::namespaced(client.clone(), "ml-platform"),
        AtomicUsize::new(0),
    ));
    let controller = Controller::new(
        Api::<InferenceCluster>::all(client.clone()),
        watcher::Config::default(),
    )
    .run(reconcile, error_policy, ctx.clone())
    .for_each(|_| async {});
    let task = tokio::spawn(controller);
    // Let the controller list and start watching first.
    assert!(
        fake.wait_until(WAIT, |f| f.requests().iter().any(|r| r.is_watch()))
            .await
    );

    // A transient failure of the first status write is retried.
    fake.inject_fault(Fault::new("/status", 500).method("PATCH"));
    let api: Api<InferenceCluster> = Api::namespaced(client, "ml-platform");
    api.create(&PostParams::default(), &example_ic())
        .await
        .unwrap();
    let ready = |f: &FakeApiServer| {
        f.get(AV, "InferenceCluster", Some("ml-platform"), "prod-scoring")
            .is_some_and(|o| o["status"]["phase"] == "Ready")
    };
    assert!(fake.wait_until(WAIT, ready).await);
    let failed = fake.requests().iter().filter(|r| r.status == 500).count();
    assert_eq!(failed, 1);

    // Status writes that change nothing produce no watch event, so reconciling settles
    // (failed write, retry, one more for the status change it caused).
    let mut settled = ctx.1.load(Ordering::SeqCst);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = ctx.1.load(Ordering::SeqCst);
        if now == settled {
            break;
        }
        settled = now;
    }
    assert!((2..=4).contains(&settled), "reconciled {settled} times");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ctx.1.load(Ordering::SeqCst), settled);

    // A spec change is reconciled with the new generation.
    api.patch(
        "prod-scoring",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"agentCount": 4}})),
    )
    .await
    .unwrap();
    let observed = |f: &FakeApiServer| {
        f.get(AV, "InferenceCluster", Some("ml-platform"), "prod-scoring")
            .is_some_and(|o| o["status"]["observedGeneration"] == 2)
    };
    assert!(fake.wait_until(WAIT, observed).await);
    task.abort();
    fake.shutdown().await;
}

#[tokio::test]
async fn crd_establishment_can_be_delayed() {
    let fake = FakeApiServer::start().await.unwrap();
    let client = fake.client();
    let crd = all_crds().remove(0);
    let name = crd.metadata.name.clone().unwrap();
    fake.install_crd_not_established(crd).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let established = |c: &CustomResourceDefinition| {
        c.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
    };
    let stored = crds.get(&name).await.unwrap();
    assert!(!established(&stored));
    let ics: Api<InferenceCluster> = Api::namespaced(client.clone(), "ml-platform");
    assert_eq!(
        api_code(&ics.list(&ListParams::default()).await.unwrap_err()),
        404
    );

    let wait = tokio::spawn({
        let crds = crds.clone();
        let name = name.clone();
        async move {
            kube::runtime::wait::await_condition(
                crds,
                &name,
                kube::runtime::wait::conditions::is_crd_established(),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(fake.establish(&name));
    let got = tokio::time::timeout(WAIT, wait)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(established(&got.unwrap()));
    ics.create(&PostParams::default(), &example_ic())
        .await
        .unwrap();
    assert_eq!(
        ics.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    // A CRD created over HTTP is established at once; deleting it removes its objects.
    let second = all_crds().remove(1);
    let created = crds
        .patch(
            second.metadata.name.as_deref().unwrap(),
            &PatchParams::apply("amlops").force(),
            &Patch::Apply(&second),
        )
        .await
        .unwrap();
    assert!(established(&created));
    crds.delete(&name, &DeleteParams::default()).await.unwrap();
    assert_eq!(
        api_code(&ics.list(&ListParams::default()).await.unwrap_err()),
        404
    );
    assert!(fake.list(AV, "InferenceCluster", None).is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_status_errors() {
    let fake = fake_with_crds().await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", fake.url());
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.unwrap();
        let code = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        if code >= 400 {
            assert_eq!(body["kind"], "Status", "{body}");
            assert_eq!(body["code"], code, "{body}");
        }
        (
            code,
            body["reason"].as_str().unwrap_or_default().to_string(),
        )
    };
    let ics = "/apis/amlops.dev/v1alpha1/namespaces/ns/inferenceclusters";
    let item = format!("{ics}/x");
    let json_patch = "application/json-patch+json";
    assert_eq!(send(http.get(url("/nope"))).await.0, 404);
    assert_eq!(
        send(http.get(url("/apis/amlops.dev/v9/inferenceclusters")))
            .await
            .0,
        404
    );
    assert_eq!(
        send(http.get(url("/apis/amlops.dev/v1alpha1/inferenceclusters/x")))
            .await
            .0,
        404
    );
    assert_eq!(send(http.get(url(&format!("{item}/scale")))).await.0, 404);
    assert_eq!(
        send(http.post(url(ics)).body("{not json")).await,
        (400, "BadRequest".into())
    );
    assert_eq!(send(http.post(url(ics)).body("[1]")).await.0, 400);
    assert_eq!(send(http.post(url(ics))).await.0, 400);
    assert_eq!(
        send(http.post(url(ics)).body(r#"{"metadata":{}}"#)).await,
        (422, "Invalid".into())
    );
    assert_eq!(
        send(
            http.post(url(ics))
                .body(r#"{"metadata":{"name":"Bad_Name"}}"#)
        )
        .await
        .0,
        422
    );
    assert_eq!(
        send(
            http.post(url(ics))
                .body(r#"{"metadata":{"name":"x","labels":{"a":1}}}"#)
        )
        .await
        .0,
        422
    );
    assert_eq!(
        send(
            http.post(url(ics))
                .body(r#"{"kind":"Secret","metadata":{"name":"x"}}"#)
        )
        .await
        .0,
        400
    );
    assert_eq!(
        send(
            http.post(url(ics))
                .body(r#"{"metadata":{"name":"x","resourceVersion":"3"}}"#)
        )
        .await
        .0,
        500
    );
    assert_eq!(
        send(
            http.post(url(ics))
                .body(r#"{"metadata":{"name":"x"},"spec":{}}"#)
        )
        .await
        .0,
        201
    );
    assert_eq!(
        send(http.patch(url(&item)).body("{}")).await,
        (415, "UnsupportedMediaType".into())
    );
    let patch = |body: &'static str, ct: &'static str| {
        http.patch(url(&item)).header("content-type", ct).body(body)
    };
    assert_eq!(send(patch("{}", json_patch)).await.0, 422);
    assert_eq!(
        send(patch(
            r#"[{"op":"test","path":"/spec","value":1}]"#,
            json_patch
        ))
        .await
        .0,
        422
    );
    assert_eq!(
        send(patch(
            r#"[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]"#,
            json_patch
        ))
        .await
        .0,
        200
    );
    assert_eq!(
        send(patch("[]", "application/merge-patch+json")).await.0,
        400
    );
    assert_eq!(
        send(patch(
            r#"{"metadata":{"labels":{"c":"d"}}}"#,
            "application/strategic-merge-patch+json"
        ))
        .await
        .0,
        200
    );
    assert_eq!(
        send(patch("kind: X", "application/apply-patch+yaml"))
            .await
            .0,
        422,
        "no fieldManager"
    );
    let yaml = "apiVersion: amlops.dev/v1alpha1\nkind: InferenceCluster\nspec:\n  description: from yaml\n";
    let applied = http
        .patch(url(&format!("{item}?fieldManager=m")))
        .header("content-type", "application/apply-patch+yaml")
        .body(yaml);
    assert_eq!(send(applied).await.0, 200);
    assert_eq!(
        fake.get(AV, "InferenceCluster", Some("ns"), "x").unwrap()["spec"]["description"],
        "from yaml"
    );
    assert_eq!(
        send(http.get(url(&format!("{ics}?labelSelector=a%20in%20b"))))
            .await
            .0,
        400
    );
    assert_eq!(
        send(http.get(url(&format!("{ics}?watch=true&resourceVersion=abc"))))
            .await
            .0,
        400
    );
    assert_eq!(
        send(http.put(url(&item)).body(r#"{"metadata":{"name":"y"}}"#))
            .await
            .0,
        400
    );
    let conflict = http
        .delete(url(&item))
        .body(r#"{"preconditions":{"uid":"not-the-uid"}}"#);
    assert_eq!(send(conflict).await.0, 409);
    assert_eq!(
        send(http.delete(url(&format!("{item}?dryRun=All"))))
            .await
            .0,
        200
    );
    assert!(
        fake.get(AV, "InferenceCluster", Some("ns"), "x").is_some(),
        "dry run keeps it"
    );
    assert_eq!(
        send(http.request(reqwest::Method::OPTIONS, url(ics)))
            .await
            .0,
        405
    );
    let discovery = kube::discovery::Discovery::new(fake.client())
        .run()
        .await
        .unwrap();
    assert!(discovery.has_group("amlops.dev"));
    let version = fake.client().apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    fake.shutdown().await;
}

#[tokio::test]
async fn faults_and_request_log() {
    let fake = FakeApiServer::start().await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(fake.client(), "default");
    // 500 reaches the caller; 429/503/504 are retried by kube's client on its own.
    fake.inject_fault(Fault::new("/secrets", 500).method("POST"));
    let err = secrets
        .create(&PostParams::default(), &secret("f", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 500);
    fake.inject_fault(Fault::new("/secrets", 503).method("POST").times(2));
    secrets
        .create(&PostParams::default(), &secret("f", &[]))
        .await
        .unwrap();
    let log = fake.requests();
    let codes: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(codes, [500, 503, 503, 201]);
    assert_eq!(log[3].path, "/api/v1/namespaces/default/secrets");
    assert_eq!(log[3].body.as_ref().unwrap()["metadata"]["name"], "f");
    // Secrets fold stringData into data, as the API server does.
    let stored = secrets.get("f").await.unwrap();
    assert!(stored.string_data.is_none());
    assert_eq!(stored.data.unwrap()["k"].0, b"v");
    fake.clear_requests();
    assert!(fake.requests().is_empty());
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_watches_and_writes() {
    let fake = FakeApiServer::start().await.unwrap();
    let client = fake.client();
    let mut readers = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let api: Api<Secret> = if i % 2 == 0 {
            Api::all(client.clone())
        } else {
            Api::namespaced(client.clone(), "busy")
        };
        let (reader, writer) = reflector::store::<Secret>();
        readers.push(reader);
        tasks.push(tokio::spawn(
            reflector(writer, watcher(api, watcher::Config::default())).for_each(|_| async {}),
        ));
    }
    let writers: Vec<_> = (0..10)
        .map(|w| {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), "busy");
            tokio::spawn(async move {
                for n in 0..10 {
                    let name = format!("s-{w}-{n}");
                    secrets
                        .create(&PostParams::default(), &secret(&name, &[]))
                        .await
                        .unwrap();
                    secrets
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"labels": {"n": n.to_string()}}})),
                        )
                        .await
                        .unwrap();
                    if n % 2 == 0 {
                        secrets
                            .delete(&name, &DeleteParams::default())
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let all_caught_up = |_: &FakeApiServer| {
        readers.iter().all(|r| {
            let state = r.state();
            state.len() == 50 && state.iter().all(|s| s.labels().contains_key("n"))
        })
    };
    assert!(
        fake.wait_until(Duration::from_secs(30), all_caught_up)
            .await
    );
    for t in tasks {
        t.abort();
    }
    fake.shutdown().await;
}

/// `amlops-dev fake-api-server`'s admin endpoints (the child of `bench --controller`): seeding
/// many objects in one request, the request log counted by method (admin calls not in it),
/// clearing it; a fake started for tests does not serve them.
#[tokio::test]
async fn served_fake_admin_endpoints() {
    let fake = FakeApiServer::serve_on("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind 127.0.0.1");
    let http = reqwest::Client::new();
    let mut seed: Vec<Value> = all_crds()
        .into_iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
    seed.push(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s1", "namespace": "default"},
        "stringData": {"k": "v"}
    }));
    seed.push(serde_json::to_value(example_ic()).unwrap());
    let resp = http
        .post(format!("{}/_fake/objects", fake.url()))
        .json(&seed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["stored"], json!(seed.len()));

    let client = fake.client();
    let secret = Api::<Secret>::namespaced(client.clone(), "default")
        .get("s1")
        .await
        .expect("seeded Secret");
    assert!(secret.data.unwrap().contains_key("k"));
    let ics: Api<InferenceCluster> = Api::all(client.clone());
    assert_eq!(
        ics.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    let mut stream = ics
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .boxed();
    while stream.try_next().await.unwrap().is_some() {}

    let counts = |http: reqwest::Client, url: String| async move {
        http.get(format!("{url}/_fake/requests/counts"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    // Two GETs (the Secret, the list), one WATCH; the admin calls are not counted.
    assert_eq!(
        counts(http.clone(), fake.url()).await,
        json!({"GET": 2, "WATCH": 1})
    );
    assert_eq!(
        fake.request_counts().into_iter().collect::<Vec<_>>(),
        vec![("GET".to_string(), 2), ("WATCH".to_string(), 1)]
    );

    // An unknown kind: the Status of the API, the objects before it stored.
    let resp = http
        .post(format!("{}/_fake/objects", fake.url()))
        .json(&json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}},
            {"apiVersion": "example.com/v1", "kind": "Nope", "metadata": {"name": "x"}}
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let status: Value = resp.json().await.unwrap();
    assert_eq!(status["reason"], "NotFound", "{status}");
    assert!(fake.get("v1", "ConfigMap", None, "c1").is_some());
    // Not an array: 400.
    let resp = http
        .post(format!("{}/_fake/objects", fake.url()))
        .json(&json!({"apiVersion": "v1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let resp = http
        .delete(format!("{}/_fake/requests", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(counts(http.clone(), fake.url()).await, json!({}));
    fake.shutdown().await;

    // A test fake has no admin endpoints: the path is an ordinary 404, logged.
    let plain = FakeApiServer::start().await.expect("bind 127.0.0.1");
    let resp = http
        .get(format!("{}/_fake/requests/counts", plain.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(plain.requests().len(), 1);
    plain.shutdown().await;
}
