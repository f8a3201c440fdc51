//! Integration tests of the Azure emulator, through plain `reqwest` (and `kube::Client`
//! for the AKS data plane), as any client would use it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use amlops_emulator::{
    Budget, ClusterSeed, DEFAULT_SUBSCRIPTION, Emulator, EmulatorConfig, EmulatorHandle, FaultKind,
    FaultMatch, FaultRule, PoolSeed, VmSize, WorkspaceSeed,
};
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const MLS: &str = "2025-09-01";
const AKS: &str = "2025-10-01";

fn specs_dir() -> PathBuf {
    std::env::var_os("AZURE_SPECS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/azure-specs"))
}

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

struct Ctx {
    emu: EmulatorHandle,
    http: reqwest::Client,
}

impl Ctx {
    async fn new(config: EmulatorConfig) -> Self {
        let emu = Emulator::start(config).await.expect("emulator starts");
        Ctx {
            emu,
            http: reqwest::Client::new(),
        }
    }

    async fn default() -> Self {
        Self::new(EmulatorConfig::for_tests()).await
    }

    fn url(&self, path_and_query: &str) -> String {
        if path_and_query.starts_with("http") {
            path_and_query.to_string()
        } else {
            format!("{}{path_and_query}", self.emu.base_url())
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Resp {
        self.try_send(method, path, body)
            .await
            .expect("request succeeds")
    }

    async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Resp, reqwest::Error> {
        let mut rb = self
            .http
            .request(method, self.url(path))
            .bearer_auth(self.emu.token());
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let r = rb.send().await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(reqwest::Method::GET, path, None).await
    }
    async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }
    async fn post(&self, path: &str) -> Resp {
        self.send(reqwest::Method::POST, path, None).await
    }
    async fn delete(&self, path: &str) -> Resp {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Polls the Azure-AsyncOperation URL of a response until a terminal status.
    async fn wait(&self, r: &Resp) -> Value {
        let url = r
            .header("azure-asyncoperation")
            .expect("Azure-AsyncOperation header");
        for _ in 0..200 {
            let s = self.get(&url).await;
            assert_eq!(s.status, 200, "operation status always answers 200");
            let status = s.body["status"].as_str().unwrap_or_default().to_string();
            if ["Succeeded", "Failed", "Canceled"].contains(&status.as_str()) {
                return s.body;
            }
            let ms: u64 = s
                .header("retry-after-ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(10);
            tokio::time::sleep(Duration::from_millis(ms.clamp(1, 50))).await;
        }
        panic!("operation did not finish");
    }
}

fn ws_path(sub: &str, rg: &str, ws: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
    )
}

fn compute(name: &str) -> String {
    format!(
        "{}/computes/{name}",
        ws_path(DEFAULT_SUBSCRIPTION, "ml-rg", "ml-ws")
    )
}

fn q(path: &str, api: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}api-version={api}")
}

fn cluster_id(sub: &str, rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/{name}"
    )
}

fn shared_id() -> String {
    cluster_id(DEFAULT_SUBSCRIPTION, "aks-rg", "shared")
}

fn create_body(count: i64, vm: &str, purpose: &str) -> Value {
    json!({
        "location": "eastus",
        "properties": {
            "computeType": "AKS",
            "computeLocation": "eastus",
            "properties": {"agentCount": count, "agentVmSize": vm, "clusterPurpose": purpose}
        }
    })
}

fn attach_body(resource_id: &str, purpose: &str, ssl: Value) -> Value {
    json!({
        "location": "eastus",
        "properties": {
            "computeType": "AKS",
            "resourceId": resource_id,
            "properties": {"clusterPurpose": purpose, "sslConfiguration": ssl}
        }
    })
}

/// Creates or attaches, waits, returns the final operation status.
async fn put_and_wait(ctx: &Ctx, name: &str, body: &Value) -> Value {
    let r = ctx.put(&q(&compute(name), MLS), body).await;
    assert!(
        r.status == 200 || r.status == 201,
        "PUT {name}: {} {}",
        r.status,
        r.body
    );
    ctx.wait(&r).await
}

async fn kube_client(kubeconfig: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).expect("kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kube config");
    kube::Client::try_from(cfg).expect("kube client")
}

/// Kubeconfig of a cluster through listClusterUserCredential.
async fn user_kubeconfig(ctx: &Ctx, cluster: &str) -> String {
    let r = ctx
        .post(&q(&format!("{cluster}/listClusterUserCredential"), AKS))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b64 = r.body["kubeconfigs"][0]["value"].as_str().expect("value");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64"),
    )
    .expect("utf8")
}

async fn fessl(ctx: &Ctx, cluster: &str) -> Result<Secret, kube::Error> {
    let client = kube_client(&user_kubeconfig(ctx, cluster).await).await;
    kube::Api::<Secret>::namespaced(client, "default")
        .get("azuremlfessl")
        .await
}

fn self_signed(host: &str) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec![host.to_string()]).expect("cert");
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

// ---------------------------------------------------------------------------------------
// Shape comparison for the official examples.

/// Keys of the examples the emulator does not model (checked neither for presence nor value).
const NOT_EMULATED: &[&str] = &[
    "availabilityZones",
    "upgradeSettings",
    "diskEncryptionSetID",
    "linuxProfile",
    "servicePrincipalProfile",
    "loadBalancerProfile",
];
/// Keys whose values are generated (presence checked, value not).
const GENERATED: &[&str] = &[
    "createdOn",
    "modifiedOn",
    "eTag",
    "fqdn",
    "azurePortalFQDN",
    "dnsPrefix",
    "nodeResourceGroup",
    "nodeImageVersion",
    "value",
    "userKubeConfig",
    "adminKubeConfig",
    "imagePullSecretName",
    "nextLink",
    "name@kubeconfigs",
    // Service-defined limit (100 on today's AKS; the example's cluster shows 1).
    "maxAgentPools",
];

/// `$.a.kubeconfigs[0]` → `kubeconfigs`.
fn parent_key(path: &str) -> &str {
    let last = path.rsplit('.').next().unwrap_or("");
    last.split('[').next().unwrap_or(last)
}

fn assert_subset(
    expected: &Value,
    actual: &Value,
    path: &str,
    values: bool,
    problems: &mut Vec<String>,
) {
    match expected {
        Value::Object(map) => {
            let Some(obj) = actual.as_object() else {
                problems.push(format!("{path}: expected an object, got {actual}"));
                return;
            };
            for (k, v) in map {
                if NOT_EMULATED.contains(&k.as_str()) {
                    continue;
                }
                let Some(a) = obj.get(k) else {
                    problems.push(format!("{path}.{k}: missing"));
                    continue;
                };
                let generated = GENERATED.contains(&k.as_str())
                    || GENERATED.contains(&format!("{k}@{}", parent_key(path)).as_str());
                assert_subset(v, a, &format!("{path}.{k}"), values && !generated, problems);
            }
        }
        Value::Array(items) => {
            let Some(arr) = actual.as_array() else {
                problems.push(format!("{path}: expected an array, got {actual}"));
                return;
            };
            if items.is_empty() {
                if values && !arr.is_empty() {
                    problems.push(format!("{path}: expected empty, got {actual}"));
                }
                return;
            }
            if arr.is_empty() {
                problems.push(format!("{path}: empty"));
                return;
            }
            for (i, item) in items.iter().enumerate() {
                let a = &arr[i.min(arr.len() - 1)];
                assert_subset(item, a, &format!("{path}[{i}]"), values, problems);
            }
        }
        Value::Null => {}
        scalar if values => {
            let same = match (scalar, actual) {
                // ARM ids are case-insensitive (examples mix resourceGroups/resourcegroups)
                // and one example id lacks its leading slash.
                (Value::String(e), Value::String(a)) => e
                    .trim_start_matches('/')
                    .eq_ignore_ascii_case(a.trim_start_matches('/')),
                (e, a) => e == a,
            };
            if !same {
                problems.push(format!("{path}: expected {scalar}, got {actual}"));
            }
        }
        _ => {}
    }
}

fn check_example(example: &Value, code: u16, actual: &Resp, values: bool) {
    let codes: Vec<String> = example["responses"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    assert!(
        codes.contains(&code.to_string()) && actual.status == code,
        "status {} (wanted {code}; example has {codes:?}): {}",
        actual.status,
        actual.body
    );
    let resp = &example["responses"][code.to_string()];
    if let Some(body) = resp.get("body") {
        let mut problems = Vec::new();
        assert_subset(body, &actual.body, "$", values, &mut problems);
        assert!(
            problems.is_empty(),
            "body differs from the example:\n{}\nactual: {:#}",
            problems.join("\n"),
            actual.body
        );
    }
    if let Some(headers) = resp.get("headers").and_then(Value::as_object) {
        for h in headers.keys() {
            assert!(actual.header(h).is_some(), "header {h} missing");
        }
    }
}

fn load(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read example")).expect("json")
}

fn example_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "json") {
                    out.push(p);
                }
            }
        }
    }
    let mut out = Vec::new();
    for d in [
        "mls-2025-09-01/examples",
        "mls-2025-06-01/examples",
        "aks-2025-10-01/examples",
        "compute-skus-2021-07-01/examples",
    ] {
        walk(&specs_dir().join(d), &mut out);
    }
    out.sort();
    out
}

const EX_SUB: &str = "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345";

/// Emulator seeded with the examples' workspace and the clusters they attach.
async fn example_ctx() -> Ctx {
    let ctx = Ctx::default().await;
    ctx.emu.seed_workspace(
        EX_SUB,
        WorkspaceSeed {
            resource_group: "testrg123".into(),
            name: "workspaces123".into(),
            location: "eastus".into(),
        },
    );
    for name in [
        "compute123-56826-c9b00420020b2",
        "compute1234-56826-c9b00420020b2",
        "compute12345-56826-c9b00420020b2",
    ] {
        ctx.emu.seed_aks_cluster(
            EX_SUB,
            ClusterSeed {
                resource_group: "testrg123".into(),
                name: name.into(),
                agent_pools: vec![PoolSeed {
                    count: 4,
                    ..PoolSeed::default()
                }],
                ..ClusterSeed::default()
            },
        );
    }
    ctx
}

fn params_path(p: &Value, tail: &str) -> String {
    let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
    match tail {
        "compute" => format!(
            "{}/computes/{}",
            ws_path(
                &s("subscriptionId"),
                &s("resourceGroupName"),
                &s("workspaceName")
            ),
            s("computeName")
        ),
        "computes" => format!(
            "{}/computes",
            ws_path(
                &s("subscriptionId"),
                &s("resourceGroupName"),
                &s("workspaceName")
            )
        ),
        "cluster" => cluster_id(
            &s("subscriptionId"),
            &s("resourceGroupName"),
            &s("resourceName"),
        ),
        _ => unreachable!(),
    }
}

async fn example_attach(ctx: &Ctx, name: &str) {
    let ex =
        load(&specs_dir().join("mls-2025-09-01/examples/Compute/createOrUpdate/AKSCompute.json"));
    let mut body = ex["parameters"]["parameters"].clone();
    let rid = body["properties"]["resourceId"]
        .as_str()
        .unwrap_or_default()
        .replace("compute123-", &format!("{name}-"));
    body["properties"]["resourceId"] = json!(rid);
    let path = format!(
        "{}/computes/{name}",
        ws_path(EX_SUB, "testrg123", "workspaces123")
    );
    let r = ctx.put(&q(&path, MLS), &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(ctx.wait(&r).await["status"], "Succeeded");
}

async fn run_example(file: &Path) {
    let rel = file
        .strip_prefix(specs_dir())
        .unwrap_or(file)
        .to_string_lossy()
        .to_string();
    let ex = load(file);
    let p = &ex["parameters"];
    let api = p["api-version"].as_str().unwrap_or_default().to_string();
    match rel.as_str() {
        // computeType Kubernetes (Arc) is out of the emulator's scope.
        r if r.ends_with("KubernetesCompute.json") => {}
        "mls-2025-09-01/examples/Compute/createOrUpdate/AKSCompute.json" => {
            let ctx = example_ctx().await;
            let path = q(&params_path(p, "compute"), &api);
            let r = ctx.put(&path, &p["parameters"]).await;
            check_example(&ex, 201, &r, true);
            assert!(r.header("retry-after").is_some());
            assert_eq!(ctx.wait(&r).await["status"], "Succeeded");
            check_example(&ex, 200, &ctx.get(&path).await, true);
        }
        "mls-2025-09-01/examples/Compute/createOrUpdate/BasicAKSCompute.json" => {
            let ctx = example_ctx().await;
            let path = q(&params_path(p, "compute"), &api);
            let r = ctx.put(&path, &p["parameters"]).await;
            check_example(&ex, 201, &r, true);
            assert_eq!(ctx.wait(&r).await["status"], "Succeeded");
            let g = ctx.get(&path).await;
            assert_eq!(g.body["properties"]["provisioningState"], "Succeeded");
            assert_eq!(g.body["properties"]["isAttachedCompute"], false);
        }
        "mls-2025-06-01/examples/Compute/get/AKSCompute.json" => {
            let ctx = example_ctx().await;
            example_attach(&ctx, "compute123").await;
            let r = ctx.get(&q(&params_path(p, "compute"), &api)).await;
            check_example(&ex, 200, &r, true);
        }
        "mls-2025-09-01/examples/Compute/list.json" => {
            let ctx = example_ctx().await;
            for n in ["compute123", "compute1234", "compute12345"] {
                example_attach(&ctx, n).await;
            }
            let r = ctx.get(&q(&params_path(p, "computes"), &api)).await;
            check_example(&ex, 200, &r, true);
        }
        "mls-2025-09-01/examples/Compute/delete.json" => {
            let ctx = example_ctx().await;
            let basic = load(
                &specs_dir()
                    .join("mls-2025-09-01/examples/Compute/createOrUpdate/BasicAKSCompute.json"),
            );
            let path = q(&params_path(p, "compute"), &api);
            let r = ctx.put(&path, &basic["parameters"]["parameters"]).await;
            ctx.wait(&r).await;
            let action = p["underlyingResourceAction"].as_str().unwrap_or_default();
            let r = ctx
                .delete(&format!("{path}&underlyingResourceAction={action}"))
                .await;
            check_example(&ex, 202, &r, true);
            assert_eq!(ctx.wait(&r).await["status"], "Succeeded");
            assert_eq!(ctx.get(&path).await.status, 404);
        }
        "mls-2025-09-01/examples/Compute/listKeys.json" => {
            let ctx = example_ctx().await;
            example_attach(&ctx, "compute123").await;
            let r = ctx
                .post(&q(&format!("{}/listKeys", params_path(p, "compute")), &api))
                .await;
            check_example(&ex, 200, &r, true);
            let kc = r.body["userKubeConfig"].as_str().unwrap_or_default();
            assert!(kc.contains("kind: Config"), "plain kubeconfig text: {kc}");
        }
        "aks-2025-10-01/examples/ManagedClustersGet.json" => {
            let ctx = Ctx::default().await;
            let tags = ex["responses"]["200"]["body"]["tags"].clone();
            ctx.emu.seed_aks_cluster(
                "00000000-0000-0000-0000-000000000000",
                ClusterSeed {
                    resource_group: "rg1".into(),
                    name: "clustername1".into(),
                    location: "location1".into(),
                    kubernetes_version: "1.9.6".into(),
                    agent_pools: vec![PoolSeed {
                        name: "nodepool1".into(),
                        count: 3,
                        vm_size: "Standard_DS1_v2".into(),
                        mode: "System".into(),
                    }],
                    tags: serde_json::from_value(tags).unwrap_or_default(),
                    ..ClusterSeed::default()
                },
            );
            let mut r = ctx.get(&q(&params_path(p, "cluster"), &api)).await;
            // enableRBAC is a seeding choice (the example's cluster has RBAC off).
            r.body["properties"]["enableRBAC"] = json!(false);
            check_example(&ex, 200, &r, true);
        }
        "aks-2025-10-01/examples/ManagedClustersListClusterUserCredentials.json" => {
            let ctx = Ctx::default().await;
            ctx.emu.seed_aks_cluster(
                DEFAULT_SUBSCRIPTION,
                ClusterSeed {
                    resource_group: "rg1".into(),
                    name: "clustername1".into(),
                    ..ClusterSeed::default()
                },
            );
            let r = ctx
                .post(&q(
                    &format!("{}/listClusterUserCredential", params_path(p, "cluster")),
                    &api,
                ))
                .await;
            check_example(&ex, 200, &r, true);
        }
        "aks-2025-10-01/examples/KubernetesVersions_List.json" => {
            let ctx = Ctx::default().await;
            let versions: Vec<String> = [
                "1.23.12", "1.23.15", "1.24.6", "1.24.9", "1.25.4", "1.25.5", "1.26.0",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            ctx.emu.set_kubernetes_versions(versions, "1.24.9".into());
            let loc = p["location"].as_str().unwrap_or_default();
            let mut r = ctx
                .get(&q(
                    &format!("/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.ContainerService/locations/{loc}/kubernetesVersions"),
                    &api,
                ))
                .await;
            // Preview flags are not modelled: take the example's.
            r.body["values"][3]["isPreview"] = json!(true);
            check_example(&ex, 200, &r, true);
        }
        "aks-2025-10-01/examples/AgentPoolsCreate_Update.json"
        | "aks-2025-10-01/examples/AgentPools_Update.json" => {
            let ctx = Ctx::default().await;
            let mut sizes = amlops_emulator::config::default_vm_sizes();
            sizes.push(VmSize {
                name: "Standard_DS1_v2".into(),
                vcpus: 1,
                memory_gb: 3.5,
                family: "standardDSv2Family".into(),
            });
            ctx.emu.set_vm_sizes(sizes);
            let update = rel.ends_with("AgentPools_Update.json");
            let mut pools = vec![PoolSeed::default()];
            if update {
                pools.push(PoolSeed {
                    name: "agentpool1".into(),
                    count: 1,
                    vm_size: "Standard_DS1_v2".into(),
                    mode: "User".into(),
                });
            }
            ctx.emu.seed_aks_cluster(
                DEFAULT_SUBSCRIPTION,
                ClusterSeed {
                    resource_group: "rg1".into(),
                    name: "clustername1".into(),
                    kubernetes_version: "1.9.6".into(),
                    agent_pools: pools,
                    ..ClusterSeed::default()
                },
            );
            let path = q(
                &format!(
                    "{}/agentPools/{}",
                    params_path(p, "cluster"),
                    p["agentPoolName"].as_str().unwrap_or_default()
                ),
                &api,
            );
            let r = ctx.put(&path, &p["parameters"]).await;
            let code = if update { 200 } else { 201 };
            // The immediate answer is in progress: shape only (and the example's 201 values).
            check_example(&ex, code, &r, !update);
            assert_eq!(ctx.wait(&r).await["status"], "Succeeded");
            check_example(&ex, 200, &ctx.get(&path).await, true);
        }
        "compute-skus-2021-07-01/examples/skus/ListAvailableResourceSkusForARegion.json" => {
            let ctx = Ctx::default().await;
            ctx.emu.set_vm_sizes(vec![
                VmSize {
                    name: "Standard_A0".into(),
                    vcpus: 1,
                    memory_gb: 0.75,
                    family: "standardA0_A7Family".into(),
                },
                VmSize {
                    name: "Standard_A1".into(),
                    vcpus: 1,
                    memory_gb: 1.75,
                    family: "standardA0_A7Family".into(),
                },
            ]);
            let filter = p["$filter"].as_str().unwrap_or_default();
            let path = format!(
                "/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.Compute/skus?api-version={api}&$filter={}",
                url::form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
            );
            let r = ctx.get(&path).await;
            // Capabilities come in another order: keys here, values below.
            check_example(&ex, 200, &r, false);
            for (e, a) in ex["responses"]["200"]["body"]["value"]
                .as_array()
                .into_iter()
                .flatten()
                .zip(r.body["value"].as_array().into_iter().flatten())
            {
                for k in [
                    "resourceType",
                    "name",
                    "tier",
                    "size",
                    "family",
                    "locations",
                ] {
                    assert_eq!(e[k], a[k], "{k}");
                }
                let vcpus = |v: &Value| {
                    v["capabilities"]
                        .as_array()
                        .and_then(|c| c.iter().find(|x| x["name"] == "vCPUs"))
                        .map(|x| x["value"].clone())
                };
                assert_eq!(vcpus(e), vcpus(a));
                assert!(vcpus(a).is_some_and(|v| v.is_string()), "vCPUs is a string");
            }
        }
        other => panic!("example {other} has no round-trip scenario: add one"),
    }
}

#[tokio::test]
async fn official_examples_round_trip() {
    let files = example_files();
    assert!(files.len() >= 13, "examples found: {files:?}");
    for f in &files {
        run_example(f).await;
    }
}

// ---------------------------------------------------------------------------------------
// Traps.

#[tokio::test]
async fn second_put_of_existing_name_fails() {
    let ctx = Ctx::default().await;
    let body = create_body(3, "Standard_D3_v2", "FastProd");
    assert_eq!(
        put_and_wait(&ctx, "prodaks", &body).await["status"],
        "Succeeded"
    );
    let r = ctx.put(&q(&compute("prodaks"), MLS), &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["code"], "BadRequest");
    assert_eq!(
        r.body["error"]["message"],
        "Compute with name prodaks already exists. Compute name needs to be unique across all existing computes within an Azure region."
    );
    // Same for an attach body under an existing name.
    let r = ctx
        .put(
            &q(&compute("prodaks"), MLS),
            &attach_body(&shared_id(), "DevTest", json!({"status": "Disabled"})),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn get_modify_put_update_is_accepted() {
    let ctx = Ctx::default().await;
    put_and_wait(
        &ctx,
        "prodaks",
        &create_body(3, "Standard_D3_v2", "FastProd"),
    )
    .await;
    let mut body = ctx.get(&q(&compute("prodaks"), MLS)).await.body;
    body["properties"]["description"] = json!("new description");
    body["properties"]["properties"]["loadBalancerType"] = json!("InternalLoadBalancer");
    body["properties"]["properties"]["loadBalancerSubnet"] = json!("aks-subnet");
    body["properties"]["properties"]["sslConfiguration"] =
        json!({"status": "Auto", "leafDomainLabel": "contoso", "overwriteExistingDomain": false});
    let r = ctx.put(&q(&compute("prodaks"), MLS), &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["properties"]["provisioningState"], "Updating");
    assert_eq!(ctx.wait(&r).await["status"], "Succeeded");
    let g = ctx.get(&q(&compute("prodaks"), MLS)).await.body;
    assert_eq!(g["properties"]["description"], "new description");
    assert_eq!(
        g["properties"]["properties"]["loadBalancerType"],
        "InternalLoadBalancer"
    );
    let fqdn = g["properties"]["properties"]["clusterFqdn"]
        .as_str()
        .unwrap_or_default();
    let label = fqdn
        .strip_suffix(".eastus.cloudapp.azure.com")
        .unwrap_or_default();
    assert!(
        label.len() == "contoso".len() + 6
            && label.starts_with("contoso")
            && label[7..].chars().all(|c| c.is_ascii_digit()),
        "auto fqdn {fqdn}"
    );
    // The Auto certificate is served on the cluster, for that host name.
    let rid = g["properties"]["resourceId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let secret = fessl(&ctx, &rid).await.expect("azuremlfessl exists");
    let data = secret.data.expect("data");
    let cert = String::from_utf8(data["cert.pem"].0.clone()).expect("pem");
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).expect("pem");
    let x509 = pem.parse_x509().expect("x509");
    let sans = format!("{:?}", x509.subject_alternative_name());
    assert!(sans.contains(fqdn), "{sans}");
    // Changing an immutable field is not an update: the create trap again.
    body["properties"]["properties"]["agentCount"] = json!(5);
    let r = ctx.put(&q(&compute("prodaks"), MLS), &body).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("already exists")
    );
}

#[tokio::test]
async fn attaching_an_attached_cluster_breaks_the_earlier_compute() {
    let ctx = Ctx::default().await;
    let body = attach_body(&shared_id(), "DevTest", json!({"status": "Disabled"}));
    assert_eq!(
        put_and_wait(&ctx, "first", &body).await["status"],
        "Succeeded"
    );
    assert_eq!(
        put_and_wait(&ctx, "second", &body).await["status"],
        "Succeeded"
    );
    let first = ctx.get(&q(&compute("first"), MLS)).await.body;
    assert_eq!(first["properties"]["provisioningState"], "Failed");
    let errs = first["properties"]["provisioningErrors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(errs.len(), 1, "{first}");
    assert!(
        errs[0]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("second")
    );
    let second = ctx.get(&q(&compute("second"), MLS)).await.body;
    assert_eq!(second["properties"]["provisioningState"], "Succeeded");
    assert_eq!(second["properties"]["isAttachedCompute"], true);
}

async fn failed_with(ctx: &Ctx, name: &str, body: &Value, code: &str, message: &str) -> Value {
    let r = ctx.put(&q(&compute(name), MLS), body).await;
    assert_eq!(r.status, 201, "the PUT is accepted: {}", r.body);
    let op = ctx.wait(&r).await;
    assert_eq!(op["status"], "Failed");
    assert_eq!(op["error"]["code"], code);
    assert_eq!(op["error"]["message"], message);
    let g = ctx.get(&q(&compute(name), MLS)).await.body;
    assert_eq!(g["properties"]["provisioningState"], "Failed");
    let e = &g["properties"]["provisioningErrors"][0]["error"];
    assert_eq!(e["code"], code);
    assert_eq!(e["message"], message);
    g
}

#[tokio::test]
async fn fastprod_below_12_vcpus_fails() {
    let ctx = Ctx::default().await;
    failed_with(
        &ctx,
        "small",
        &create_body(3, "Standard_D2_v2", "FastProd"),
        "BadArgument",
        "Agent cores Cluster should have at least 12 cores to operate.",
    )
    .await;
    // DevTest has no such rule.
    assert_eq!(
        put_and_wait(
            &ctx,
            "devtest",
            &create_body(1, "Standard_D2_v2", "DevTest")
        )
        .await["status"],
        "Succeeded"
    );
}

#[tokio::test]
async fn fastprod_below_3_nodes_fails() {
    let ctx = Ctx::default().await;
    failed_with(
        &ctx,
        "twonodes",
        &create_body(2, "Standard_D16s_v3", "FastProd"),
        "BadArgument",
        "At least 3 machine(s) are required for cluster with purpose 'FastProd'. Available machine(s) : 2",
    )
    .await;
}

#[tokio::test]
async fn unsupported_kubernetes_version_fails_attach() {
    let ctx = Ctx::default().await;
    let id = ctx.emu.seed_aks_cluster(
        DEFAULT_SUBSCRIPTION,
        ClusterSeed {
            resource_group: "aks-rg".into(),
            name: "old".into(),
            kubernetes_version: "1.27.3".into(),
            ..ClusterSeed::default()
        },
    );
    let g = failed_with(
        &ctx,
        "oldaks",
        &attach_body(&id, "FastProd", json!({"status": "Disabled"})),
        "BadRequest",
        "Specified kubernetes version 1.27.3 is not supported. Supported versions are between 1.33.0 - 1.35.3",
    )
    .await;
    assert_eq!(
        g["properties"]["provisioningErrors"][0]["error"]["details"][0]["code"],
        "BadRequestFormat"
    );
}

/// Azure ML's range is one of minors and lags AKS: any patch of a supported minor attaches
/// (1.35.9 is past the range's 1.35.3), a minor AKS already offers (1.36) does not.
#[tokio::test]
async fn azureml_version_range_is_by_minor_and_lags_aks() {
    let ctx = Ctx::default().await;
    for (name, version) in [("patch", "1.35.9"), ("newest", "1.36.1")] {
        ctx.emu.seed_aks_cluster(
            DEFAULT_SUBSCRIPTION,
            ClusterSeed {
                resource_group: "aks-rg".into(),
                name: name.into(),
                kubernetes_version: version.into(),
                ..ClusterSeed::default()
            },
        );
    }
    let ok = put_and_wait(
        &ctx,
        "patchaks",
        &attach_body(
            &cluster_id(DEFAULT_SUBSCRIPTION, "aks-rg", "patch"),
            "FastProd",
            json!({"status": "Disabled"}),
        ),
    )
    .await;
    assert_eq!(ok["status"], "Succeeded", "{ok}");
    failed_with(
        &ctx,
        "newestaks",
        &attach_body(
            &cluster_id(DEFAULT_SUBSCRIPTION, "aks-rg", "newest"),
            "FastProd",
            json!({"status": "Disabled"}),
        ),
        "BadRequest",
        "Specified kubernetes version 1.36.1 is not supported. Supported versions are between 1.33.0 - 1.35.3",
    )
    .await;
    let aks = ctx
        .get(&q(
            &format!(
                "/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.ContainerService/locations/eastus/kubernetesVersions"
            ),
            AKS,
        ))
        .await;
    assert!(
        aks.body.to_string().contains("1.36.1"),
        "AKS offers what Azure ML does not attach yet: {}",
        aks.body
    );
}

/// A private cluster answers `enablePrivateClusterPublicFQDN`, and without the public FQDN
/// no `fqdn` (only `privateFQDN`).
#[tokio::test]
async fn private_cluster_public_fqdn() {
    let ctx = Ctx::default().await;
    for (name, public) in [("privpub", None), ("privonly", Some(false))] {
        let id = ctx.emu.seed_aks_cluster(
            DEFAULT_SUBSCRIPTION,
            ClusterSeed {
                resource_group: "aks-rg".into(),
                name: name.into(),
                private: true,
                private_public_fqdn: public,
                ..ClusterSeed::default()
            },
        );
        let c = ctx.get(&q(&id, AKS)).await.body;
        let p = &c["properties"];
        let want = public.unwrap_or(true);
        assert_eq!(
            p["apiServerAccessProfile"]["enablePrivateClusterPublicFQDN"], want,
            "{name}: AKS's default for a private cluster is a public FQDN too"
        );
        assert_eq!(p["fqdn"].is_string(), want, "{name}: {p}");
        assert!(p["privateFQDN"].is_string(), "{name}");
        let mc: amlops::azure::model::ManagedCluster = serde_json::from_value(c.clone()).unwrap();
        assert_eq!(mc.is_private_with_public_fqdn(), want, "{name}");
    }
}

/// Workspaces_ListBySubscription: the subscription's workspaces only.
#[tokio::test]
async fn lists_the_workspaces_of_a_subscription() {
    let ctx = Ctx::default().await;
    ctx.emu.seed_workspace(
        DEFAULT_SUBSCRIPTION,
        amlops_emulator::WorkspaceSeed {
            resource_group: "other-rg".into(),
            name: "other-ws".into(),
            location: "westeurope".into(),
        },
    );
    ctx.emu.seed_workspace(
        "11111111-1111-1111-1111-111111111111",
        amlops_emulator::WorkspaceSeed {
            resource_group: "x-rg".into(),
            name: "foreign-ws".into(),
            location: "eastus".into(),
        },
    );
    let r = ctx
        .get(&q(
            &format!(
                "/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.MachineLearningServices/workspaces"
            ),
            MLS,
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut names: Vec<&str> = r.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["ml-ws", "other-ws"]);
}

#[tokio::test]
async fn unknown_vm_size_fails() {
    let ctx = Ctx::default().await;
    failed_with(
        &ctx,
        "novm",
        &create_body(3, "Standard_Nope_v9", "FastProd"),
        "BadRequest",
        "The VM size of AgentPoolProfile:agentpool is not allowed in your subscription in location 'eastus'. For more details, please visit https://aka.ms/aks/quotas-skus-regions",
    )
    .await;
}

#[tokio::test]
async fn attach_to_missing_cluster_fails() {
    let ctx = Ctx::default().await;
    let id = cluster_id(DEFAULT_SUBSCRIPTION, "aks-rg", "ghost");
    let r = ctx
        .put(
            &q(&compute("ghost"), MLS),
            &attach_body(&id, "DevTest", json!({"status": "Disabled"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let op = ctx.wait(&r).await;
    assert_eq!(op["status"], "Failed");
    assert_eq!(op["error"]["code"], "ResourceNotFound");
}

#[tokio::test]
async fn using_a_failed_compute_is_400() {
    let ctx = Ctx::default().await;
    let id = ctx.emu.seed_aks_cluster(
        DEFAULT_SUBSCRIPTION,
        ClusterSeed {
            resource_group: "aks-rg".into(),
            name: "tiny".into(),
            agent_pools: vec![PoolSeed {
                count: 1,
                ..PoolSeed::default()
            }],
            ..ClusterSeed::default()
        },
    );
    let r = ctx
        .put(
            &q(&compute("tiny"), MLS),
            &attach_body(&id, "FastProd", json!({"status": "Disabled"})),
        )
        .await;
    assert_eq!(ctx.wait(&r).await["status"], "Failed");
    let want = "Compute resource with Id: tiny is not in Succeeded state. Compute provisioning state: Failed";
    let k = ctx
        .post(&q(&format!("{}/listKeys", compute("tiny")), MLS))
        .await;
    assert_eq!(k.status, 400);
    assert_eq!(k.body["error"]["code"], "ComputeResourceNotCreated");
    assert_eq!(k.body["error"]["message"], want);
    // The SDK's update() on it.
    let mut body = ctx.get(&q(&compute("tiny"), MLS)).await.body;
    body["properties"]["description"] = json!("x");
    let u = ctx.put(&q(&compute("tiny"), MLS), &body).await;
    assert_eq!(u.status, 400);
    assert_eq!(u.body["error"]["code"], "ComputeResourceNotCreated");
    // Deleting (detaching) a failed compute is how one gets out of it.
    let d = ctx
        .delete(&q(&compute("tiny"), MLS).replace('?', "?underlyingResourceAction=detach&"))
        .await;
    assert_eq!(d.status, 202);
    assert_eq!(ctx.wait(&d).await["status"], "Succeeded");
}

#[tokio::test]
async fn delete_on_attached_is_refused_and_detach_removes_azuremlfessl() {
    let ctx = Ctx::default().await;
    let (cert, key) = self_signed("scoring.contoso.com");
    let ssl =
        json!({"status": "Enabled", "cert": cert, "key": key, "cname": "scoring.contoso.com"});
    assert_eq!(
        put_and_wait(
            &ctx,
            "sharedaks",
            &attach_body(&shared_id(), "FastProd", ssl)
        )
        .await["status"],
        "Succeeded"
    );
    // GET never returns cert/key.
    let g = ctx.get(&q(&compute("sharedaks"), MLS)).await.body;
    let ssl_out = &g["properties"]["properties"]["sslConfiguration"];
    assert_eq!(ssl_out["status"], "Enabled");
    assert!(ssl_out["cert"].is_null() && ssl_out["key"].is_null());
    assert!(!g.to_string().contains("PRIVATE KEY"));
    assert_eq!(
        g["properties"]["properties"]["clusterFqdn"],
        "scoring.contoso.com"
    );

    // The certificate is on the cluster, readable through the user kubeconfig.
    let s = fessl(&ctx, &shared_id())
        .await
        .expect("azuremlfessl present");
    let data = s.data.expect("data");
    assert_eq!(data["cert.pem"].0, cert.as_bytes());
    assert_eq!(data["key.pem"].0, key.as_bytes());

    let del = |action: &str| {
        format!(
            "{}&underlyingResourceAction={action}",
            q(&compute("sharedaks"), MLS)
        )
    };
    let r = ctx.delete(&del("Delete")).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Detach")
    );
    let r = ctx.delete(&q(&compute("sharedaks"), MLS)).await;
    assert_eq!(r.status, 400, "underlyingResourceAction is required");

    let r = ctx.delete(&del("DETACH")).await;
    assert_eq!(r.status, 202);
    assert!(r.header("location").is_some() && r.header("retry-after").is_some());
    assert_eq!(ctx.wait(&r).await["status"], "Succeeded");
    assert_eq!(ctx.get(&q(&compute("sharedaks"), MLS)).await.status, 404);
    match fessl(&ctx, &shared_id()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404),
        other => panic!("azuremlfessl should be gone: {other:?}"),
    }
    let st = ctx.emu.state();
    let cl = st.cluster("shared").expect("cluster kept");
    assert!(cl.azureml_components.is_empty() && cl.azuremlfessl.is_none());
    // Deleting an absent compute: 204.
    assert_eq!(ctx.delete(&del("Detach")).await.status, 204);
}

#[tokio::test]
async fn create_provisions_a_cluster_and_delete_removes_it() {
    let ctx = Ctx::default().await;
    put_and_wait(
        &ctx,
        "prodaks",
        &create_body(3, "Standard_D3_v2", "FastProd"),
    )
    .await;
    let g = ctx.get(&q(&compute("prodaks"), MLS)).await.body;
    let rid = g["properties"]["resourceId"]
        .as_str()
        .expect("resourceId")
        .to_string();
    assert!(
        rid.contains("/resourceGroups/ml-rg/") && rid.contains("/managedClusters/prodaks-"),
        "{rid}"
    );
    let c = ctx.get(&q(&rid, AKS)).await;
    assert_eq!(c.status, 200);
    assert_eq!(c.body["properties"]["kubernetesVersion"], "1.35.3");
    assert_eq!(c.body["properties"]["powerState"]["code"], "Running");
    assert_eq!(c.body["properties"]["agentPoolProfiles"][0]["count"], 3);
    assert_eq!(
        c.body["properties"]["agentPoolProfiles"][0]["vmSize"],
        "Standard_D3_v2"
    );
    // listKeys works and points at the same data plane.
    let k = ctx
        .post(&q(&format!("{}/listKeys", compute("prodaks")), MLS))
        .await;
    let client = kube_client(k.body["adminKubeConfig"].as_str().unwrap_or_default()).await;
    let v = client.apiserver_version().await.expect("version");
    assert_eq!(v.git_version, "v1.35.3");
    let r = ctx
        .delete(&format!(
            "{}&underlyingResourceAction=Delete",
            q(&compute("prodaks"), MLS)
        ))
        .await;
    assert_eq!(r.status, 202);
    ctx.wait(&r).await;
    assert_eq!(ctx.get(&q(&rid, AKS)).await.status, 404);
}

// ---------------------------------------------------------------------------------------
// LROs, paging, auth, versions.

#[tokio::test]
async fn long_running_operations_report_progress() {
    let ctx = Ctx::default().await;
    ctx.emu.set_op_duration(Duration::from_millis(300));
    let r = ctx
        .put(
            &q(&compute("slowaks"), MLS),
            &create_body(3, "Standard_D3_v2", "FastProd"),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    let ms: u64 = r
        .header("retry-after-ms")
        .and_then(|v| v.parse().ok())
        .expect("retry-after-ms");
    assert!(ms <= 300);
    let status_url = r.header("azure-asyncoperation").expect("async url");
    assert!(status_url.contains(
        "/providers/Microsoft.MachineLearningServices/locations/eastus/computeOperationsStatus/"
    ));
    let location = r.header("location").expect("location");
    let s = ctx.get(&status_url).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.body["status"], "InProgress");
    assert!(s.body["startTime"].is_string() && s.body.get("endTime").is_none());
    assert_eq!(ctx.get(&location).await.status, 202);
    assert_eq!(
        ctx.get(&q(&compute("slowaks"), MLS)).await.body["properties"]["provisioningState"],
        "Creating"
    );
    // Using it while it is being created.
    let k = ctx
        .post(&q(&format!("{}/listKeys", compute("slowaks")), MLS))
        .await;
    assert_eq!(k.body["error"]["code"], "ComputeResourceNotCreated");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let s = ctx.get(&status_url).await;
    assert_eq!(s.body["status"], "Succeeded");
    assert!(s.body["endTime"].is_string());
    let l = ctx.get(&location).await;
    assert_eq!(l.status, 200);
    assert_eq!(l.body["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn list_is_paged() {
    let ctx = Ctx::default().await;
    for n in ["aaa", "bbb", "ccc"] {
        put_and_wait(&ctx, n, &create_body(3, "Standard_D3_v2", "DevTest")).await;
    }
    let list = format!(
        "{}/computes",
        ws_path(DEFAULT_SUBSCRIPTION, "ml-rg", "ml-ws")
    );
    let r = ctx.get(&q(&list, MLS)).await;
    assert_eq!(r.body["value"].as_array().map(Vec::len), Some(2));
    let next = r.body["nextLink"].as_str().expect("nextLink").to_string();
    let r2 = ctx.get(&next).await;
    assert_eq!(r2.body["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(r2.body["value"][0]["name"], "ccc");
    assert!(r2.body.get("nextLink").is_none());
}

#[tokio::test]
async fn auth_api_version_and_not_found() {
    let ctx = Ctx::default().await;
    let url = ctx.url(&q(&compute("x"), MLS));
    let r = ctx.http.get(&url).send().await.expect("send");
    assert_eq!(r.status().as_u16(), 401);
    let b: Value = r.json().await.expect("json");
    assert_eq!(b["error"]["code"], "AuthenticationFailed");
    let r = ctx
        .http
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    let r = ctx.get(&compute("x")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["code"], "MissingApiVersionParameter");
    let r = ctx.get(&q(&compute("x"), "2019-01-01")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["code"], "InvalidApiVersionParameter");
    for v in ["2025-09-01", "2025-12-01"] {
        assert_eq!(ctx.get(&q(&compute("x"), v)).await.status, 404);
    }
    let r = ctx
        .get(&q(&ws_path(DEFAULT_SUBSCRIPTION, "ml-rg", "nope"), MLS))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"]["code"], "ResourceNotFound");
    let w = ctx
        .get(&q(&ws_path(DEFAULT_SUBSCRIPTION, "ML-RG", "ML-WS"), MLS))
        .await;
    assert_eq!(w.status, 200);
    assert_eq!(w.body["location"], "eastus");
    // Bad bodies are 400s, never panics.
    for bad in [
        json!("x"),
        json!({}),
        json!({"properties": {"computeType": "AKS", "properties": {"agentCount": "three"}}}),
    ] {
        let r = ctx.put(&q(&compute("badbody"), MLS), &bad).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let r = ctx
        .put(
            &q(&compute("kube"), MLS),
            &json!({"properties": {"computeType": "Kubernetes"}}),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn kubernetes_versions_and_skus() {
    let ctx = Ctx::default().await;
    let r = ctx
        .get(&q(&format!("/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.ContainerService/locations/eastus/kubernetesVersions"), AKS))
        .await;
    let values = r.body["values"].as_array().cloned().unwrap_or_default();
    assert_eq!(values.len(), 3);
    assert_eq!(values[1]["version"], "1.35");
    assert_eq!(values[1]["isDefault"], true);
    let r = ctx
        .get(&format!("/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.Compute/skus?api-version=2021-07-01&$filter=location%20eq%20%27eastus%27"))
        .await;
    let d3 = r.body["value"]
        .as_array()
        .and_then(|v| v.iter().find(|s| s["name"] == "Standard_D3_v2"))
        .cloned()
        .expect("D3_v2");
    let vcpus = d3["capabilities"]
        .as_array()
        .and_then(|c| c.iter().find(|x| x["name"] == "vCPUs"))
        .cloned();
    assert_eq!(vcpus.map(|v| v["value"].clone()), Some(json!("4")));
    assert_eq!(d3["locations"], json!(["eastus"]));
}

#[tokio::test]
async fn agent_pool_scale_and_busy_409() {
    let ctx = Ctx::default().await;
    ctx.emu.set_op_duration(Duration::from_secs(30));
    let pool = q(&format!("{}/agentPools/nodepool1", shared_id()), AKS);
    let r = ctx.put(&pool, &json!({"properties": {"count": 5}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["properties"]["provisioningState"], "Updating");
    assert!(
        r.header("azure-asyncoperation")
            .is_some_and(|u| u.contains("Microsoft.ContainerService/locations/eastus/operations/"))
    );
    let busy = ctx.put(&pool, &json!({"properties": {"count": 6}})).await;
    assert_eq!(busy.status, 409);
    assert_eq!(busy.body["error"]["code"], "OperationNotAllowed");
    assert_eq!(
        busy.body["error"]["message"],
        "Operation is not allowed: Another operation (nodepool1 - Updating) is in progress, please wait for it to finish before starting a new operation."
    );
    let c = ctx.get(&q(&shared_id(), AKS)).await;
    assert_eq!(c.body["properties"]["agentPoolProfiles"][0]["count"], 5);
    // vmSize of an existing pool cannot change.
    ctx.emu.set_op_duration(Duration::ZERO);
    let r = ctx
        .put(
            &pool,
            &json!({"properties": {"count": 5, "vmSize": "Standard_D4_v2"}}),
        )
        .await;
    assert_eq!(r.status, 409, "still busy");
}

// ---------------------------------------------------------------------------------------
// Faults and budget.

fn rule(matcher: FaultMatch, kind: FaultKind, times: Option<u32>) -> FaultRule {
    FaultRule {
        id: 0,
        matcher,
        kind,
        times,
        probability: None,
    }
}

#[tokio::test]
async fn throttle_fault_has_retry_after_and_body() {
    let ctx = Ctx::default().await;
    ctx.emu.inject_fault(rule(
        FaultMatch {
            method: Some("GET".into()),
            path: Some("/computes/".into()),
            operation: None,
        },
        FaultKind::Throttle {
            retry_after_secs: 7,
        },
        Some(1),
    ));
    let r = ctx.get(&q(&compute("x"), MLS)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("7"));
    assert_eq!(r.body["error"]["code"], "TooManyRequests");
    assert_eq!(
        r.body["error"]["message"],
        "The request is being throttled as the limit has been reached for operation 'Microsoft.MachineLearningServices/workspaces/computes/read'. Please try again after '7' seconds."
    );
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-reads")
            .is_some()
    );
    let r = ctx.get(&q(&compute("x"), MLS)).await;
    assert_eq!(r.status, 404, "fault used up");
    // ARM's token buckets by default: the request's class, per principal and global.
    assert_eq!(
        r.header("x-ms-ratelimit-remaining-subscription-reads")
            .as_deref(),
        Some("249")
    );
    assert_eq!(
        r.header("x-ms-ratelimit-remaining-subscription-global-reads")
            .as_deref(),
        Some("3749")
    );
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-writes")
            .is_none()
    );
    let log = ctx.emu.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].status, 429);
    assert_eq!(log[0].fault.as_deref(), Some("Throttle"));
    assert_eq!(
        log[0].operation,
        "Microsoft.MachineLearningServices/workspaces/computes/read"
    );
}

#[tokio::test]
async fn status_and_busy_faults() {
    let ctx = Ctx::default().await;
    ctx.emu.inject_fault(rule(
        FaultMatch::default(),
        FaultKind::Status {
            status: 500,
            retry_after_secs: None,
        },
        Some(1),
    ));
    let r = ctx.get(&q(&compute("x"), MLS)).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body["error"]["code"], "InternalServerError");
    assert_eq!(
        r.body["error"]["message"],
        "An internal server error occurred."
    );
    ctx.emu.inject_fault(rule(
        FaultMatch::default(),
        FaultKind::Status {
            status: 503,
            retry_after_secs: None,
        },
        Some(1),
    ));
    assert_eq!(ctx.get(&q(&compute("x"), MLS)).await.status, 503);
    ctx.emu.inject_fault(rule(
        FaultMatch {
            operation: Some("agentPools/write".into()),
            ..Default::default()
        },
        FaultKind::Busy409,
        Some(1),
    ));
    let r = ctx
        .put(
            &q(&format!("{}/agentPools/nodepool1", shared_id()), AKS),
            &json!({"properties": {"count": 4}}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["error"]["code"], "OperationNotAllowed");
    ctx.emu.inject_fault(rule(
        FaultMatch::default(),
        FaultKind::Slow { ms: 150 },
        Some(1),
    ));
    let t = Instant::now();
    assert_eq!(ctx.get(&q(&compute("x"), MLS)).await.status, 404);
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn drop_connection_is_a_connection_error() {
    let ctx = Ctx::default().await;
    ctx.emu.inject_fault(rule(
        FaultMatch {
            path: Some("/computes/dropme".into()),
            ..Default::default()
        },
        FaultKind::DropConnection,
        Some(1),
    ));
    let err = ctx
        .try_send(reqwest::Method::GET, &q(&compute("dropme"), MLS), None)
        .await
        .err()
        .expect("connection error");
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );
    assert!(err.status().is_none());
    assert_eq!(ctx.get(&q(&compute("dropme"), MLS)).await.status, 404);
    assert_eq!(ctx.emu.requests()[0].status, 0);
}

#[tokio::test]
async fn lro_fail_fault_ends_the_operation_failed() {
    let ctx = Ctx::default().await;
    ctx.emu.inject_fault(rule(
        FaultMatch {
            method: Some("PUT".into()),
            operation: Some("computes/write".into()),
            ..Default::default()
        },
        FaultKind::LroFail {
            code: "InternalServerError".into(),
            message: "Provisioning exploded.".into(),
        },
        Some(1),
    ));
    let r = ctx
        .put(
            &q(&compute("boom"), MLS),
            &create_body(3, "Standard_D3_v2", "FastProd"),
        )
        .await;
    assert_eq!(r.status, 201);
    let op = ctx.wait(&r).await;
    assert_eq!(op["status"], "Failed");
    assert_eq!(op["error"]["code"], "InternalServerError");
    assert_eq!(op["error"]["message"], "Provisioning exploded.");
    let g = ctx.get(&q(&compute("boom"), MLS)).await.body;
    assert_eq!(g["properties"]["provisioningState"], "Failed");
    let loc = r.header("location").expect("location");
    assert_eq!(ctx.get(&loc).await.status, 500);
}

#[tokio::test]
async fn budget_answers_429_when_spent() {
    let ctx = Ctx::default().await;
    ctx.emu.set_budget(Some(Budget {
        reads_per_hour: 3,
        writes_per_hour: 100,
        window_secs: 3600,
        ..Default::default()
    }));
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = ctx.get(&q(&compute("x"), MLS)).await;
        assert_eq!(r.status, 404);
        remaining.push(
            r.header("x-ms-ratelimit-remaining-subscription-reads")
                .unwrap_or_default(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = ctx.get(&q(&compute("x"), MLS)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["error"]["code"], "TooManyRequests");
    let secs: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("retry-after");
    assert!(secs > 3500 && secs <= 3600);
    // Writes have their own budget.
    let w = ctx
        .put(
            &q(&compute("budget"), MLS),
            &create_body(3, "Standard_D3_v2", "FastProd"),
        )
        .await;
    assert_eq!(w.status, 201);
    ctx.emu.set_budget(None);
    assert_eq!(ctx.get(&q(&compute("x"), MLS)).await.status, 404);
}

#[tokio::test]
async fn token_buckets_report_refuse_and_refill() {
    let ctx = Ctx::default().await;
    // ARM's read bucket, shrunk so the test is quick: 5 tokens refilled at 10 per second.
    let figures = amlops_emulator::TokenBuckets {
        reads: amlops_emulator::throttle::BucketFigures {
            bucket: 5.0,
            refill_per_second: 10.0,
        },
        ..Default::default()
    };
    ctx.emu
        .set_throttling(amlops_emulator::Throttling::enforced(
            amlops_emulator::ThrottleModel::TokenBucket(figures),
        ));
    let header = |r: &Resp, name: &str| {
        r.header(&format!("x-ms-ratelimit-remaining-subscription-{name}"))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let mut seen = Vec::new();
    for _ in 0..5 {
        let r = ctx.get(&q(&compute("x"), MLS)).await;
        assert_eq!(r.status, 404);
        seen.push((header(&r, "reads"), header(&r, "global-reads")));
    }
    // Each GET takes a token of the principal's bucket and of the global one (15 × 5).
    assert_eq!(seen[0], (Some(4), Some(74)));
    let r = ctx.get(&q(&compute("x"), MLS)).await;
    if r.status == 429 {
        assert_eq!(r.body["error"]["code"], "SubscriptionRequestsThrottled");
        let m = r.body["error"]["message"].as_str().unwrap();
        assert!(
            m.starts_with(&format!(
                "Number of 'read' requests for subscription '{}' actor '",
                amlops_emulator::DEFAULT_SUBSCRIPTION
            )) && m.ends_with(
                "exceeded. Please try again after '1' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling for additional information."
            ),
            "{m}"
        );
        assert_eq!(r.header("retry-after").as_deref(), Some("1"));
        assert_eq!(header(&r, "reads"), Some(0));
    } else {
        // The GETs took long enough for a token to come back (a loaded machine).
        assert_eq!(r.status, 404);
    }
    // Writes have their own bucket (200 tokens).
    let w = ctx
        .put(
            &q(&compute("tbucket"), MLS),
            &create_body(3, "Standard_D3_v2", "FastProd"),
        )
        .await;
    assert_eq!(w.status, 201);
    assert_eq!(header(&w, "writes"), Some(199));
    assert_eq!(header(&w, "global-writes"), Some(2999));
    assert!(header(&w, "reads").is_none());
    // Refilled at 10 per second: full again within a second.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = ctx.get(&q(&compute("x"), MLS)).await;
    assert_eq!(r.status, 404);
    assert_eq!(header(&r, "reads"), Some(4));
    // Another principal spends the global bucket: refused although ours is full. (A slow
    // refill here, or a loaded machine would see a global token back — 150/s — before the
    // next GET.)
    ctx.emu
        .set_throttling(amlops_emulator::Throttling::enforced(
            amlops_emulator::ThrottleModel::TokenBucket(amlops_emulator::TokenBuckets {
                reads: amlops_emulator::throttle::BucketFigures {
                    bucket: 5.0,
                    refill_per_second: 0.01,
                },
                ..Default::default()
            }),
        ));
    ctx.emu.take_tokens(
        amlops_emulator::DEFAULT_SUBSCRIPTION,
        amlops_emulator::throttle::Class::Reads,
        1_000,
        true,
    );
    let r = ctx.get(&q(&compute("x"), MLS)).await;
    assert_eq!(r.status, 429);
    assert_eq!(header(&r, "global-reads"), Some(0));
    // Not enforced (the default): reported, never refused.
    ctx.emu
        .set_throttling(amlops_emulator::Throttling::default());
    for _ in 0..300 {
        assert_eq!(ctx.get(&q(&compute("x"), MLS)).await.status, 404);
    }
}

#[tokio::test]
async fn hourly_counts_report_refuse_and_start_again() {
    let ctx = Ctx::default().await;
    ctx.emu.set_budget(Some(Budget {
        reads_per_hour: 2,
        writes_per_hour: 1,
        window_secs: 1,
        ..Default::default()
    }));
    let reads = |r: &Resp| r.header("x-ms-ratelimit-remaining-subscription-reads");
    let r = ctx.get(&q(&compute("x"), MLS)).await;
    assert_eq!(reads(&r).as_deref(), Some("1"));
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-global-reads")
            .is_none(),
        "the hourly model has no global header"
    );
    assert_eq!(
        reads(&ctx.get(&q(&compute("x"), MLS)).await).as_deref(),
        Some("0")
    );
    let r = ctx.get(&q(&compute("x"), MLS)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["error"]["code"], "TooManyRequests");
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    // A new window: the count starts again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = ctx.get(&q(&compute("x"), MLS)).await;
    assert_eq!(r.status, 404);
    assert_eq!(reads(&r).as_deref(), Some("1"));
}

// ---------------------------------------------------------------------------------------
// Data plane, admin endpoints, swagger.

#[tokio::test]
async fn data_plane_auth_and_private_clusters() {
    let ctx = Ctx::default().await;
    let st = ctx.emu.state();
    let path = &st.cluster("shared").expect("shared").data_plane_path;
    let r = ctx
        .http
        .get(ctx.url(&format!("{path}/api/v1/namespaces/default/secrets")))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    let b: Value = r.json().await.expect("json");
    assert_eq!(b["kind"], "Status");
    let client = kube_client(&user_kubeconfig(&ctx, &shared_id()).await).await;
    let list = kube::Api::<Secret>::namespaced(client, "default")
        .list(&Default::default())
        .await
        .expect("list");
    assert!(list.items.is_empty());

    let private = ctx.emu.seed_aks_cluster(
        DEFAULT_SUBSCRIPTION,
        ClusterSeed {
            resource_group: "aks-rg".into(),
            name: "private".into(),
            private: true,
            authorized_ip_ranges: Some(vec!["10.0.0.0/8".into()]),
            ..ClusterSeed::default()
        },
    );
    let c = ctx.get(&q(&private, AKS)).await;
    assert_eq!(
        c.body["properties"]["apiServerAccessProfile"]["enablePrivateCluster"],
        true
    );
    assert_eq!(
        c.body["properties"]["apiServerAccessProfile"]["authorizedIPRanges"],
        json!(["10.0.0.0/8"])
    );
    let r = fessl(&ctx, &private).await;
    assert!(r.is_err(), "a private API server is unreachable");
}

#[tokio::test]
async fn admin_endpoints_seed_fault_and_read_back() {
    let ctx = Ctx::default().await;
    let admin = |p: &str| ctx.url(&format!("/admin{p}"));
    let r = ctx
        .http
        .post(admin("/aks-clusters"))
        .json(&json!({"subscriptionId": DEFAULT_SUBSCRIPTION, "resourceGroup": "aks-rg", "name": "seeded",
                      "kubernetesVersion": "1.31.2", "agentPools": [{"name": "sys", "count": 4, "vmSize": "Standard_D4_v2", "mode": "System"}]}))
        .send()
        .await
        .expect("seed");
    assert_eq!(r.status().as_u16(), 201);
    let r = ctx
        .http
        .post(admin("/workspaces"))
        .json(&json!({"subscriptionId": "11111111-1111-1111-1111-111111111111", "resourceGroup": "rg2", "name": "ws2", "location": "westeurope"}))
        .send()
        .await
        .expect("seed ws");
    assert_eq!(r.status().as_u16(), 201);
    let r = ctx
        .http
        .post(admin("/faults"))
        .json(&json!({"match": {"method": "GET"}, "kind": {"type": "Throttle", "retryAfterSecs": 2}, "times": 1}))
        .send()
        .await
        .expect("fault");
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(
        ctx.get(&q(
            &cluster_id(DEFAULT_SUBSCRIPTION, "aks-rg", "seeded"),
            AKS
        ))
        .await
        .status,
        429
    );
    let c = ctx
        .get(&q(
            &cluster_id(DEFAULT_SUBSCRIPTION, "aks-rg", "seeded"),
            AKS,
        ))
        .await;
    assert_eq!(c.body["properties"]["kubernetesVersion"], "1.31.2");
    let state: Value = ctx
        .http
        .get(admin("/state"))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    assert!(
        state["clusters"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x["name"] == "seeded"))
    );
    assert!(state["workspaces"].as_array().is_some_and(|w| w.len() == 2));
    let log: Value = ctx
        .http
        .get(admin("/requests"))
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    assert_eq!(log.as_array().map(Vec::len), Some(2));
    assert_eq!(log[0]["status"], 429);
    // The same log counted by method (the admin POSTs are not ARM requests).
    let counts: Value = ctx
        .http
        .get(admin("/requests/counts"))
        .send()
        .await
        .expect("counts")
        .json()
        .await
        .expect("json");
    assert_eq!(counts, json!({"GET": 2}));
    assert_eq!(ctx.emu.request_counts(), [("GET".to_string(), 2)].into());
    ctx.http
        .delete(admin("/requests"))
        .send()
        .await
        .expect("clear");
    assert!(ctx.emu.requests().is_empty());
    let r = ctx
        .http
        .put(admin("/op-duration"))
        .json(&json!({"seconds": 0.25}))
        .send()
        .await
        .expect("dur");
    assert_eq!(r.status().as_u16(), 204);
    assert!((ctx.emu.state().op_seconds - 0.25).abs() < 1e-9);
}

#[tokio::test]
async fn config_file_format_parses() {
    let yaml = r#"
token: t0k
opSeconds: 0.5
pageSize: 5
kubernetesVersions: ["1.30.4", "1.31.2"]
defaultKubernetesVersion: "1.31.2"
subscriptions:
- id: 00000000-0000-0000-0000-000000000000
  workspaces:
  - {resourceGroup: ml-rg, name: ml-ws, location: westeurope}
  aksClusters:
  - resourceGroup: aks-rg
    name: shared
    location: westeurope
    kubernetesVersion: 1.30.4
    agentPools: [{name: nodepool1, count: 3, vmSize: Standard_D3_v2, mode: System}]
    authorizedIpRanges: ["1.2.3.4/32"]
faults:
- match: {method: GET, path: /computes/}
  kind: {type: Throttle, retryAfterSecs: 3}
  times: 2
budget: {readsPerHour: 100, writesPerHour: 10}
"#;
    let cfg = EmulatorConfig::from_yaml(yaml).expect("config parses");
    assert_eq!(cfg.token, "t0k");
    assert_eq!(
        cfg.vm_sizes,
        amlops_emulator::config::default_vm_sizes(),
        "default SKU table"
    );
    let ctx = Ctx::new(cfg).await;
    assert_eq!(ctx.emu.token(), "t0k");
    let st = ctx.emu.state();
    assert_eq!(st.faults.len(), 1);
    assert_eq!(
        st.throttling,
        amlops_emulator::Throttling::enforced(amlops_emulator::ThrottleModel::Hourly(Budget {
            reads_per_hour: 100,
            writes_per_hour: 10,
            ..Default::default()
        }))
    );
    assert_eq!(
        st.cluster("shared")
            .and_then(|c| c.authorized_ip_ranges.clone()),
        Some(vec!["1.2.3.4/32".to_string()])
    );
    let d = EmulatorConfig::default();
    assert_eq!(
        d.subscriptions[0].aks_clusters[0].kubernetes_version,
        "1.35.3"
    );
    assert_eq!(EmulatorConfig::demo().op_seconds, 5.0);
}

fn swagger_check(body: &Value) {
    let spec = specs_dir().join("mls-2025-09-01/machineLearningServices.compute-excerpt.json");
    let mut child = std::process::Command::new("python3")
        .arg("/work/shared/tools/swagger_check.py")
        .arg(&spec)
        .arg("ComputeResource")
        .arg("--response")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(body.to_string().as_bytes()).expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "swagger_check: {}\n{body:#}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn compute_get_matches_the_swagger() {
    let ctx = Ctx::default().await;
    put_and_wait(
        &ctx,
        "created",
        &create_body(3, "Standard_D3_v2", "FastProd"),
    )
    .await;
    let (cert, key) = self_signed("a.contoso.com");
    put_and_wait(
        &ctx,
        "attached",
        &json!({"location": "eastus", "properties": {"computeType": "AKS", "description": "d", "resourceId": shared_id(),
            "properties": {"clusterPurpose": "DevTest", "loadBalancerType": "InternalLoadBalancer", "loadBalancerSubnet": "s",
                "sslConfiguration": {"status": "Enabled", "cert": cert, "key": key, "cname": "a.contoso.com"}}}}),
    )
    .await;
    let r = ctx
        .put(
            &q(&compute("failed"), MLS),
            &create_body(1, "Standard_D2_v2", "FastProd"),
        )
        .await;
    ctx.wait(&r).await;
    for n in ["created", "attached", "failed"] {
        let g = ctx.get(&q(&compute(n), MLS)).await;
        assert_eq!(g.status, 200);
        swagger_check(&g.body);
    }
    let list = ctx
        .get(&q(
            &format!(
                "{}/computes",
                ws_path(DEFAULT_SUBSCRIPTION, "ml-rg", "ml-ws")
            ),
            MLS,
        ))
        .await;
    for item in list.body["value"].as_array().into_iter().flatten() {
        swagger_check(item);
    }
}

#[tokio::test]
async fn update_of_tls_enabled_compute_keeps_the_certificate() {
    let ctx = Ctx::default().await;
    let (cert, key) = self_signed("keep.contoso.com");
    let ssl = json!({"status": "Enabled", "cert": cert, "key": key, "cname": "keep.contoso.com"});
    put_and_wait(&ctx, "keeptls", &attach_body(&shared_id(), "FastProd", ssl)).await;
    // GET-modify-PUT: the body carries sslConfiguration without cert/key (GET hides them).
    let mut body = ctx.get(&q(&compute("keeptls"), MLS)).await.body;
    body["properties"]["description"] = json!("only the description");
    let r = ctx.put(&q(&compute("keeptls"), MLS), &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ctx.wait(&r).await["status"], "Succeeded");
    let s = fessl(&ctx, &shared_id()).await.expect("still there");
    assert_eq!(s.data.expect("data")["cert.pem"].0, cert.as_bytes());
    // Switching TLS off removes the Secret.
    body["properties"]["properties"]["sslConfiguration"] = json!({"status": "Disabled"});
    let r = ctx.put(&q(&compute("keeptls"), MLS), &body).await;
    assert_eq!(ctx.wait(&r).await["status"], "Succeeded");
    assert!(fessl(&ctx, &shared_id()).await.is_err());
}

/// The TLS in-place update (what the SDK's `update(AksUpdateConfiguration(ssl_configuration=…))`
/// sends, GET-modify-PUT): each change rewrites `azuremlfessl` in place (same Secret) and
/// `clusterFqdn` when the operation completes, and only then.
#[tokio::test]
async fn tls_in_place_update() {
    let ctx = Ctx::default().await;
    let auto =
        json!({"status": "Auto", "leafDomainLabel": "contoso", "overwriteExistingDomain": false});
    put_and_wait(&ctx, "tlsaks", &attach_body(&shared_id(), "FastProd", auto)).await;
    async fn get(ctx: &Ctx) -> Value {
        ctx.get(&q(&compute("tlsaks"), MLS)).await.body
    }
    let secret = |s: &Secret| {
        let data = s.data.clone().unwrap_or_default();
        (
            s.metadata.uid.clone(),
            String::from_utf8_lossy(&data["cert.pem"].0).into_owned(),
            String::from_utf8_lossy(&data["key.pem"].0).into_owned(),
        )
    };
    let body = get(&ctx).await;
    let fqdn = body["properties"]["properties"]["clusterFqdn"]
        .as_str()
        .expect("fqdn")
        .to_string();
    assert!(
        fqdn.starts_with("contoso") && fqdn.ends_with(".eastus.cloudapp.azure.com"),
        "{fqdn}"
    );
    let (uid, cert1, key1) = secret(&fessl(&ctx, &shared_id()).await.expect("azuremlfessl"));
    let san = |pem: &str| {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        let c = p.parse_x509().expect("x509");
        format!(
            "{:?}",
            c.subject_alternative_name()
                .ok()
                .flatten()
                .map(|e| e.value.clone())
        )
    };
    assert!(san(&cert1).contains(&fqdn));

    async fn put(ctx: &Ctx, body: Value) -> Value {
        let r = ctx.put(&q(&compute("tlsaks"), MLS), &body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        ctx.wait(&r).await["status"].clone()
    }
    // Echoing the configuration back (another field changes): nothing is issued.
    let mut b = get(&ctx).await;
    b["properties"]["description"] = json!("scoring");
    assert_eq!(put(&ctx, b).await, "Succeeded");
    assert_eq!(
        secret(&fessl(&ctx, &shared_id()).await.expect("kept")).1,
        cert1
    );

    // renew: a new certificate and key for the same FQDN, in the same Secret.
    let mut b = get(&ctx).await;
    b["properties"]["properties"]["sslConfiguration"]["renew"] = json!(true);
    ctx.emu.set_op_duration(Duration::from_secs(600));
    let r = ctx.put(&q(&compute("tlsaks"), MLS), &b).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        secret(&fessl(&ctx, &shared_id()).await.expect("still")).1,
        cert1,
        "nothing changes before the operation completes"
    );
    assert_eq!(
        get(&ctx).await["properties"]["provisioningState"],
        "Updating"
    );
    ctx.emu.set_op_duration(Duration::ZERO);
    assert_eq!(ctx.post("/admin/operations/complete").await.status, 204);
    assert_eq!(ctx.wait(&r).await["status"], "Succeeded");
    let (uid2, cert2, key2) = secret(&fessl(&ctx, &shared_id()).await.expect("renewed"));
    assert_eq!(uid2, uid, "same Secret, content replaced");
    assert!(cert2 != cert1 && key2 != key1);
    assert!(san(&cert2).contains(&fqdn));
    assert_eq!(
        get(&ctx).await["properties"]["properties"]["clusterFqdn"],
        fqdn
    );

    // Switch to a custom certificate: azuremlfessl holds it, the FQDN is the cname.
    let (cert, key) = self_signed("api.contoso.com");
    let mut b = get(&ctx).await;
    b["properties"]["properties"]["sslConfiguration"] =
        json!({"status": "Enabled", "cname": "api.contoso.com", "cert": cert, "key": key});
    assert_eq!(put(&ctx, b).await, "Succeeded");
    let (uid3, c3, k3) = secret(&fessl(&ctx, &shared_id()).await.expect("custom"));
    assert_eq!((uid3, c3, k3), (uid.clone(), cert.clone(), key.clone()));
    assert_eq!(
        get(&ctx).await["properties"]["properties"]["clusterFqdn"],
        "api.contoso.com"
    );

    // renew applies to Microsoft certificates only.
    let mut b = get(&ctx).await;
    b["properties"]["properties"]["sslConfiguration"]["renew"] = json!(true);
    let r = ctx.put(&q(&compute("tlsaks"), MLS), &b).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "BadArgument");

    // Back to Auto with the same label and overwriteExistingDomain: the label's domain again.
    let mut b = get(&ctx).await;
    b["properties"]["properties"]["sslConfiguration"] =
        json!({"status": "Auto", "leafDomainLabel": "contoso", "overwriteExistingDomain": true});
    assert_eq!(put(&ctx, b).await, "Succeeded");
    assert_eq!(
        get(&ctx).await["properties"]["properties"]["clusterFqdn"],
        fqdn
    );
    let (_, c4, _) = secret(&fessl(&ctx, &shared_id()).await.expect("auto again"));
    assert!(c4 != cert && san(&c4).contains(&fqdn));

    // Disabled: the Secret is gone; the FQDN is the cluster's own.
    let mut b = get(&ctx).await;
    b["properties"]["properties"]["sslConfiguration"] = json!({"status": "Disabled"});
    assert_eq!(put(&ctx, b).await, "Succeeded");
    assert!(fessl(&ctx, &shared_id()).await.is_err());
    let body = get(&ctx).await;
    assert_eq!(
        body["properties"]["properties"]["sslConfiguration"]["status"],
        "Disabled"
    );
    assert!(
        body["properties"]["properties"]["clusterFqdn"]
            .as_str()
            .is_some_and(|f| f.ends_with(".azmk8s.io"))
    );
}

/// The requests the Azure ML SDK v1 (azureml-core 1.61) sends, as its source builds them, all
/// succeed: workspace GET at 2022-05-01, compute PUT/DELETE/listKeys on the ARM path and GET/list
/// on the `/rp/workspaces` alias at 2020-02-02, lowercase `underlyingResourceAction`, the GET
/// body's keys the SDK indexes. (`tests/sdk_v1.rs` runs the SDK itself.)
#[tokio::test]
async fn sdk_v1_requests_succeed() {
    const SDK: &str = "2020-02-02";
    let ctx = Ctx::default().await;
    let w = ctx
        .get(&q(
            &ws_path(DEFAULT_SUBSCRIPTION, "ml-rg", "ml-ws"),
            "2022-05-01",
        ))
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    let discovery = w.body["properties"]["discoveryUrl"]
        .as_str()
        .expect("discoveryUrl")
        .to_string();
    let d: Value = ctx
        .http
        .get(&discovery)
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    let api = d["api"].as_str().expect("api").to_string();
    assert_eq!(api, ctx.emu.base_url());
    let alias = |name: &str| format!("{api}/rp/workspaces{}?api-version={SDK}", compute(name));

    // AksCompute.provisioning_configuration() with no argument: the SDK drops `properties.properties`.
    let body = json!({"location": "eastus", "properties": {"computeType": "AKS"}});
    let r = ctx.put(&q(&compute("sdkaks"), SDK), &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(ctx.wait(&r).await["status"], "Succeeded");

    // GET through the alias: every key AksCompute._initialize / _validate_get_payload indexes.
    let g = ctx.get(&alias("sdkaks")).await;
    assert_eq!(g.status, 200, "{}", g.body);
    let props = &g.body["properties"];
    for key in [
        "computeType",
        "description",
        "resourceId",
        "provisioningState",
        "provisioningErrors",
        "isAttachedCompute",
        "properties",
    ] {
        assert!(
            props.get(key).is_some(),
            "properties.{key} missing: {props}"
        );
    }
    for key in [
        "agentVmSize",
        "agentCount",
        "clusterPurpose",
        "clusterFqdn",
        "systemServices",
        "loadBalancerType",
        "loadBalancerSubnet",
        "sslConfiguration",
    ] {
        assert!(
            props["properties"].get(key).is_some(),
            "properties.properties.{key} missing: {props}"
        );
    }
    assert!(props["properties"]["loadBalancerSubnet"].is_null());
    assert_eq!(props["properties"]["agentCount"], 3);
    assert!(g.body.get("tags").is_some() && g.body.get("location").is_some());

    // AksCompute.update(AksUpdateConfiguration(None, "InternalLoadBalancer", "aks-subnet")):
    // GET, `del sslConfiguration`, set the load balancer, PUT the whole body back.
    let mut update = g.body.clone();
    let aks = &mut update["properties"]["properties"];
    if let Some(o) = aks.as_object_mut() {
        o.remove("sslConfiguration");
    }
    aks["loadBalancerType"] = json!("InternalLoadBalancer");
    aks["loadBalancerSubnet"] = json!("aks-subnet");
    let r = ctx.put(&q(&compute("sdkaks"), SDK), &update).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("azure-asyncoperation").is_some());
    assert_eq!(ctx.wait(&r).await["status"], "Succeeded");
    let c = ctx.emu.state().compute("sdkaks").cloned().expect("compute");
    assert_eq!(c.load_balancer_type, "InternalLoadBalancer");
    assert_eq!(c.load_balancer_subnet.as_deref(), Some("aks-subnet"));

    // ComputeTarget.list: the alias, then nextLink as given (page size 2).
    for name in ["sdkaks2", "sdkaks3"] {
        put_and_wait(&ctx, name, &create_body(3, "Standard_D3_v2", "FastProd")).await;
    }
    let mut url = format!(
        "{api}/rp/workspaces{}/computes?api-version={SDK}",
        ws_path(DEFAULT_SUBSCRIPTION, "ml-rg", "ml-ws")
    );
    let mut names = Vec::new();
    for _ in 0..10 {
        let page = ctx.get(&url).await;
        assert_eq!(page.status, 200, "{url}: {}", page.body);
        names.extend(
            page.body["value"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(str::to_string)),
        );
        match page.body["nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    names.sort();
    assert_eq!(names, ["sdkaks", "sdkaks2", "sdkaks3"]);

    // get_credentials(): POST listKeys on the ARM path.
    let k = ctx
        .post(&q(&format!("{}/listKeys", compute("sdkaks")), SDK))
        .await;
    assert_eq!(k.status, 200, "{}", k.body);
    assert!(k.body["userKubeConfig"].as_str().is_some());

    // delete(): DELETE on the ARM path, lowercase action.
    let r = ctx
        .delete(&format!(
            "{}&underlyingResourceAction=delete",
            q(&compute("sdkaks"), SDK)
        ))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(ctx.wait(&r).await["status"], "Succeeded");
    assert_eq!(ctx.get(&alias("sdkaks")).await.status, 404);

    // A version no client sends is still refused, in ARM's words.
    let r = ctx.get(&q(&compute("sdkaks2"), "2019-01-01")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["code"], "InvalidApiVersionParameter");
}

#[tokio::test]
async fn shutdown_is_prompt() {
    let ctx = Ctx::default().await;
    assert_eq!(ctx.get(&q(&compute("x"), MLS)).await.status, 404);
    let t = Instant::now();
    let Ctx { emu, http } = ctx;
    emu.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(http);
}

#[tokio::test]
async fn run_command_reads_azuremlfessl_of_a_private_cluster() {
    let ctx = Ctx::default().await;
    let private = ctx.emu.seed_aks_cluster(
        DEFAULT_SUBSCRIPTION,
        ClusterSeed {
            resource_group: "aks-rg".into(),
            name: "private".into(),
            private: true,
            ..ClusterSeed::default()
        },
    );
    let ssl = json!({"status": "Auto", "leafDomainLabel": "priv"});
    assert_eq!(
        put_and_wait(&ctx, "privaks", &attach_body(&private, "FastProd", ssl)).await["status"],
        "Succeeded"
    );
    let cmd = json!({"command": "kubectl get secret azuremlfessl -n default -o json"});
    let r = ctx
        .send(
            reqwest::Method::POST,
            &q(&format!("{private}/runCommand"), AKS),
            Some(&cmd),
        )
        .await;
    assert_eq!(r.status, 202);
    let loc = r.header("location").expect("location");
    let res = ctx.get(&loc).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["properties"]["exitCode"], 0);
    let secret: Secret =
        serde_json::from_str(res.body["properties"]["logs"].as_str().unwrap_or_default())
            .expect("kubectl -o json output");
    let want = ctx
        .emu
        .state()
        .cluster("private")
        .and_then(|c| c.azuremlfessl.clone())
        .expect("secret");
    assert_eq!(
        secret.data.expect("data")["cert.pem"].0,
        want.cert_pem.as_bytes()
    );
    // Unknown secret: kubectl's NotFound, exit code 1.
    let cmd = json!({"command": "kubectl get secret nope -o json"});
    let r = ctx
        .send(
            reqwest::Method::POST,
            &q(&format!("{private}/runCommand"), AKS),
            Some(&cmd),
        )
        .await;
    let res = ctx.get(&r.header("location").expect("location")).await;
    assert_eq!(res.body["properties"]["exitCode"], 1);
    assert!(
        res.body["properties"]["logs"]
            .as_str()
            .unwrap_or_default()
            .contains("NotFound")
    );
}
