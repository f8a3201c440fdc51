//! Shared helpers of the `KubernetesCompute` engine tests: a cluster with the Azure ML
//! extension, namespaces on it, the desired state of a compute, and a driver that
//! reconciles the way the controller does (status read back from the store each time).

use std::time::Duration;

use amlops::azure::ResourceId;
use amlops::azure::model::KubernetesComputeResource;
use amlops::crd::{DeletionPolicy, KubernetesComputeStatus, WorkspaceRef};
use amlops::engine::ObjKey;
use amlops::engine::kubernetes_compute::{ComputeDesired, ComputeTarget, KIND};
use amlops_emulator::{
    ClusterSeed, DEFAULT_SUBSCRIPTION, ExtensionSeed, KubernetesPathSeed, PoolSeed,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;

use super::World;

const SUB: &str = DEFAULT_SUBSCRIPTION;

pub fn seed_cluster(w: &World, name: &str, private: bool) -> ResourceId {
    w.emu.seed_aks_cluster(
        SUB,
        ClusterSeed {
            resource_group: "aks-rg".into(),
            name: name.into(),
            agent_pools: vec![PoolSeed {
                count: 3,
                ..PoolSeed::default()
            }],
            private,
            ..ClusterSeed::default()
        },
    );
    ResourceId::managed_cluster(SUB, "aks-rg", name).unwrap()
}

pub fn install_extension(w: &World, cluster: &ResourceId) {
    w.emu
        .seed_kubernetes_path(&KubernetesPathSeed {
            crd_delay_ms: Some(0),
            extensions: vec![ExtensionSeed {
                cluster_id: cluster.to_string(),
                ..ExtensionSeed::default()
            }],
            ..KubernetesPathSeed::default()
        })
        .unwrap();
}

pub async fn create_namespace(w: &World, cluster: &ResourceId, name: &str) {
    let client = w
        .engine
        .arm
        .list_cluster_admin_credential(cluster)
        .await
        .unwrap()
        .client(None)
        .await
        .unwrap();
    let ns = Namespace {
        metadata: kube::core::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    kube::Api::<Namespace>::all(client)
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

pub fn kc(name: &str, cluster: &ResourceId, namespace: &str) -> ComputeDesired {
    ComputeDesired {
        key: ObjKey {
            kind: KIND.into(),
            namespace: "ml".into(),
            name: name.into(),
        },
        generation: Some(1),
        workspace: WorkspaceRef {
            subscription_id: SUB.into(),
            resource_group: "ml-rg".into(),
            name: "ml-ws".into(),
        },
        compute_name: name.into(),
        target: Ok(ComputeTarget {
            cluster: cluster.clone(),
            extension: "azureml".into(),
        }),
        namespace: namespace.into(),
        create_namespace: false,
        identity: None,
        description: None,
        manual_reattach: false,
        reattach_token: None,
        adopt: false,
        deletion_policy: DeletionPolicy::Detach,
        max_retries: 2,
        deleting: false,
    }
}

pub fn status(w: &World, d: &ComputeDesired) -> KubernetesComputeStatus {
    w.store.compute_status(&d.key).unwrap_or_default()
}

pub fn cond<'a>(
    st: &'a KubernetesComputeStatus,
    type_: &str,
) -> Option<(&'a str, &'a str, &'a str)> {
    st.conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| (c.type_.as_str(), c.reason.as_str(), c.message.as_str()))
}

/// Reconciles `d` until `done` holds (requeues shortened to 20 ms); returns the status.
pub async fn drive(
    w: &World,
    d: &ComputeDesired,
    what: &str,
    done: impl Fn(&KubernetesComputeStatus, bool) -> bool,
) -> KubernetesComputeStatus {
    for _ in 0..500 {
        let out = w
            .engine
            .reconcile_compute(d, status(w, d))
            .await
            .expect("reconcile");
        if done(&out.status, out.finished) {
            return out.status;
        }
        // Polls and resyncs are shortened; the wait after an Azure failure is Azure's
        // Retry-After, honoured as the controller does.
        let wait = match out.verdict.as_ref().and_then(|v| v.after()) {
            Some(after) => after,
            None => out
                .requeue
                .unwrap_or(Duration::from_millis(20))
                .min(Duration::from_millis(20)),
        };
        tokio::time::sleep(wait).await;
    }
    panic!(
        "{what}: never reached; status {:#?}; log {:#?}",
        status(w, d),
        w.brief_log()
    );
}

pub async fn ready(w: &World, d: &ComputeDesired) -> KubernetesComputeStatus {
    drive(w, d, "Ready", |st, _| cond(st, "Ready").is_some()).await
}

pub async fn stalled(w: &World, d: &ComputeDesired, reason: &str) -> KubernetesComputeStatus {
    drive(w, d, reason, |st, _| {
        cond(st, "Stalled").is_some_and(|(_, r, _)| r == reason)
    })
    .await
}

pub fn writes(w: &World) -> Vec<String> {
    w.emu
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && r.status < 300 && r.path.contains("/computes/"))
        .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
        .collect()
}

pub fn events(w: &World, d: &ComputeDesired) -> Vec<String> {
    w.store
        .events()
        .into_iter()
        .filter(|e| e.key == d.key)
        .map(|e| e.reason)
        .collect()
}

pub async fn azure_compute(w: &World, d: &ComputeDesired) -> Option<KubernetesComputeResource> {
    w.engine
        .arm
        .get_kubernetes_compute(&d.compute_id().unwrap())
        .await
        .unwrap()
}
