//! The ARM client over real HTTP, against small axum stubs (and one raw TCP stub that
//! drops connections). Each test binds its own stub on 127.0.0.1:0.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amlops::azure::model::{
    AksCompute, AksComputeResource, AksProperties, ClusterPurpose, SslConfigStatus,
    SslConfiguration,
};
use amlops::azure::{
    ArmBucket, ArmClient, ArmClientConfig, ArmLimits, ArmThrottling, Attempt, AzureCloud,
    CredentialConfig, ErrorCategory, LroStart, LroStyle, OperationHandle, OperationKind,
    OperationStatus, RateLimitConfig, ResourceId, RetryPolicy, Secret, StatusClass,
    ThrottlingModel, UnderlyingResourceAction,
};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

const SUB: &str = "00000000-0000-0000-0000-000000000001";
const TOKEN: &str = "tok-SECRET-8f1e2d";

// ---------------------------------------------------------------------------------------
// A programmable stub: canned answers per "METHOD /path", the last one repeating; every
// request is recorded.

#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn canned(status: u16, body: &str) -> Canned {
    Canned {
        status,
        headers: vec![],
        body: body.to_owned(),
    }
}

impl Canned {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    client_request_id: Option<String>,
    user_agent: Option<String>,
    body: String,
    at: Instant,
}

#[derive(Default)]
struct Stub {
    base: Mutex<String>,
    routes: Mutex<HashMap<String, VecDeque<Canned>>>,
    seen: Mutex<Vec<Seen>>,
}

impl Stub {
    fn on(&self, method: &str, path: &str, answers: Vec<Canned>) {
        self.routes.lock().unwrap().insert(
            format!("{method} {}", path.to_ascii_lowercase()),
            answers.into(),
        );
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path.eq_ignore_ascii_case(path))
            .count()
    }
}

async fn handle(State(stub): State<Arc<Stub>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let (authorization, client_request_id, user_agent) = {
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            header("authorization"),
            header("x-ms-client-request-id"),
            header("user-agent"),
        )
    };
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    stub.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        query,
        authorization,
        client_request_id,
        user_agent,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    });
    let answer = {
        let mut routes = stub.routes.lock().unwrap();
        match routes.get_mut(&format!("{method} {}", path.to_ascii_lowercase())) {
            Some(q) if q.len() > 1 => q.pop_front(),
            Some(q) => q.front().cloned(),
            None => None,
        }
    };
    let base = stub.base.lock().unwrap().clone();
    let answer = answer.unwrap_or_else(|| {
        canned(
            404,
            r#"{"error":{"code":"ResourceNotFound","message":"no such route in the stub"}}"#,
        )
    });
    let mut resp = Response::new(Body::from(answer.body.replace("{base}", &base)));
    *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap();
    let headers = resp.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-ms-request-id", HeaderValue::from_static("req-0001"));
    for (k, v) in answer.headers {
        headers.insert(
            k,
            HeaderValue::from_str(&v.replace("{base}", &base)).unwrap(),
        );
    }
    resp
}

async fn start_stub() -> (Arc<Stub>, String) {
    let stub = Arc::new(Stub::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *stub.base.lock().unwrap() = base.clone();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(stub.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (stub, base)
}

fn config(base: &str) -> ArmClientConfig {
    let mut c = ArmClientConfig::new(
        AzureCloud::custom(Url::parse(base).unwrap()),
        CredentialConfig::StaticToken(Secret::new(TOKEN)),
    );
    c.retry = RetryPolicy {
        max_retries: 4,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_total: Duration::from_secs(10),
    };
    c.timeouts.request = Duration::from_secs(5);
    c.default_poll_interval = Duration::from_millis(100);
    c
}

fn client(base: &str) -> ArmClient {
    ArmClient::new(config(base)).unwrap()
}

fn compute_id(name: &str) -> ResourceId {
    ResourceId::compute(SUB, "ml-rg", "ml-ws", name).unwrap()
}

fn compute_path(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws/computes/{name}"
    )
}

fn compute_json(name: &str, state: &str) -> String {
    format!(
        r#"{{"id":"{}","name":"{name}","type":"Microsoft.MachineLearningServices/workspaces/computes","location":"eastus","properties":{{"computeType":"AKS","provisioningState":"{state}","isAttachedCompute":false,"properties":{{"agentCount":3,"agentVmSize":"Standard_D3_v2","clusterPurpose":"FastProd"}}}}}}"#,
        compute_path(name)
    )
}

fn create_body() -> AksComputeResource {
    AksComputeResource::aks(
        "eastus",
        AksCompute {
            compute_location: Some("eastus".into()),
            properties: Some(AksProperties {
                agent_count: Some(3),
                agent_vm_size: Some("Standard_D3_v2".into()),
                cluster_purpose: Some(ClusterPurpose::FastProd),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

// ---------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn throttling_with_retry_after_ms_is_waited_out() {
    let (stub, base) = start_stub().await;
    let path = compute_path("c1");
    stub.on(
        "GET",
        &path,
        vec![
            canned(429, r#"{"error":{"code":"TooManyRequests","message":"The request is being throttled as the limit has been reached for operation 'x'. Please try again after '1' seconds."}}"#)
                .header("retry-after-ms", "400")
                .header("Retry-After", "30"),
            canned(200, &compute_json("c1", "Succeeded")),
        ],
    );
    let arm = client(&base);
    let got = arm.get_compute(&compute_id("c1")).await.unwrap().unwrap();
    assert_eq!(got.name.as_deref(), Some("c1"));
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    // The ms header wins over Retry-After: 30 (which would exceed the test's patience).
    assert!(gap >= Duration::from_millis(400), "waited only {gap:?}");
    assert!(gap < Duration::from_secs(5), "waited {gap:?}");
    // Each logical call keeps one client request id across retries.
    assert_eq!(seen[0].client_request_id, seen[1].client_request_id);
}

#[tokio::test]
async fn whole_second_retry_after_is_honoured() {
    let (stub, base) = start_stub().await;
    let path = compute_path("c1");
    stub.on(
        "GET",
        &path,
        vec![
            canned(
                503,
                r#"{"error":{"code":"ServiceUnavailable","message":"later"}}"#,
            )
            .header("Retry-After", "1"),
            canned(200, &compute_json("c1", "Succeeded")),
        ],
    );
    client(&base).get_compute(&compute_id("c1")).await.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_secs(1), "waited only {gap:?}");
}

#[tokio::test]
async fn retry_after_beyond_the_budget_returns_a_throttled_error_at_once() {
    let (stub, base) = start_stub().await;
    let path = compute_path("c1");
    stub.on(
        "GET",
        &path,
        vec![
            canned(
                429,
                r#"{"error":{"code":"TooManyRequests","message":"slow down"}}"#,
            )
            .header("Retry-After", "120"),
        ],
    );
    let t0 = Instant::now();
    let err = client(&base)
        .get_compute(&compute_id("c1"))
        .await
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(err.category(), ErrorCategory::Throttled);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(err.code(), Some("TooManyRequests"));
    assert_eq!(stub.count("GET", &path), 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let (stub, base) = start_stub().await;
    let path = compute_path("c1");
    stub.on(
        "GET",
        &path,
        vec![
            canned(500, r#"{"error":{"code":"InternalServerError","message":"An internal server error occurred."}}"#),
            canned(503, ""),
            canned(200, &compute_json("c1", "Succeeded")),
        ],
    );
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let sink = attempts.clone();
    let arm = ArmClient::builder(config(&base))
        .observer(Arc::new(move |a: &Attempt| sink.lock().unwrap().push(*a)))
        .build()
        .unwrap();
    let got = arm.get_compute(&compute_id("c1")).await.unwrap();
    assert!(got.is_some());
    assert_eq!(stub.count("GET", &path), 3);
    let attempts = attempts.lock().unwrap();
    let classes: Vec<_> = attempts.iter().map(|a| a.status).collect();
    assert_eq!(
        classes,
        vec![
            StatusClass::ServerError,
            StatusClass::ServerError,
            StatusClass::Success
        ]
    );
    assert!(
        attempts
            .iter()
            .all(|a| a.operation == "compute.get" && a.method == "GET")
    );
}

#[tokio::test]
async fn server_errors_exhaust_the_retries() {
    let (stub, base) = start_stub().await;
    let path = compute_path("c1");
    stub.on("GET", &path, vec![canned(502, "")]);
    let err = client(&base)
        .get_compute(&compute_id("c1"))
        .await
        .unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Transient);
    assert_eq!(err.status(), Some(502));
    assert_eq!(stub.count("GET", &path), 5, "1 attempt + max_retries 4");
}

#[tokio::test]
async fn bad_request_is_not_retried() {
    let (stub, base) = start_stub().await;
    let path = compute_path("c1");
    stub.on(
        "PUT",
        &path,
        vec![canned(
            400,
            r#"{"error":{"code":"BadRequest","message":"Compute with name c1 already exists. Compute name needs to be unique across all existing computes within an Azure region."}}"#,
        )],
    );
    let err = client(&base)
        .put_compute(&compute_id("c1"), &create_body(), OperationKind::Create)
        .await
        .unwrap_err();
    assert_eq!(stub.count("PUT", &path), 1);
    assert_eq!(err.category(), ErrorCategory::BadRequest);
    assert_eq!(err.code(), Some("BadRequest"));
    assert!(err.message().unwrap().contains("already exists"));
    assert_eq!(err.request_id(), Some("req-0001"));
    assert!(err.to_string().contains("already exists"));
}

#[tokio::test]
async fn not_found_is_none_and_conflict_is_categorised() {
    let (stub, base) = start_stub().await;
    let arm = client(&base);
    assert!(
        arm.get_compute(&compute_id("missing"))
            .await
            .unwrap()
            .is_none()
    );
    let cluster = ResourceId::managed_cluster(SUB, "aks-rg", "shared").unwrap();
    let pool_path = format!("{cluster}/agentPools/nodepool1");
    stub.on("GET", &pool_path, vec![canned(200, r#"{"name":"nodepool1","properties":{"count":3,"vmSize":"Standard_D3_v2","mode":"System","provisioningState":"Succeeded","nodeImageVersion":"x"}}"#)]);
    stub.on("PUT", &pool_path, vec![canned(409, r#"{"error":{"code":"OperationNotAllowed","message":"Operation is not allowed: Another operation (nodepool1 - Updating) is in progress, please wait for it to finish before starting a new operation."}}"#)]);
    let err = arm
        .scale_agent_pool(&cluster, "nodepool1", 5)
        .await
        .unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Conflict);
    assert_eq!(
        stub.count("PUT", &pool_path),
        1,
        "409 is not retried by the transport"
    );
    // The scale sent the new count and no read-only field.
    let put = stub.seen().into_iter().find(|s| s.method == "PUT").unwrap();
    let body: serde_json::Value = serde_json::from_str(&put.body).unwrap();
    assert_eq!(body["properties"]["count"], 5);
    assert!(body["properties"].get("provisioningState").is_none());
    assert!(body["properties"].get("nodeImageVersion").is_none());
    assert!(put.query.contains("api-version=2025-10-01"));
}

// ---------------------------------------------------------------------------------------
// Dropped connections (raw TCP)

/// Accepts connections; drops the first `drops` without answering, answers the rest with
/// `response`. Returns the address and the connection counter.
async fn dropping_server(drops: usize, response: String) -> (SocketAddr, Arc<Mutex<usize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(Mutex::new(0usize));
    let counter = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let n = {
                let mut c = counter.lock().unwrap();
                *c += 1;
                *c
            };
            let response = response.clone();
            tokio::spawn(async move {
                // Read the whole request (head and body) before deciding: the server has it,
                // as Azure would have processed it, then dies before answering. (Reading
                // only the first chunk raced the client's write of the body: a request cut
                // short was sometimes sent again, which is harmless — Azure never got it —
                // but not the case this server stands for.)
                read_request(&mut sock).await;
                if n <= drops {
                    drop(sock);
                } else {
                    let _ = sock.write_all(response.as_bytes()).await;
                    let _ = sock.shutdown().await;
                }
            });
        }
    });
    (addr, count)
}

/// Reads one HTTP/1.1 request: the head, then `content-length` bytes of body.
async fn read_request(sock: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = sock.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        let Some(head_end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length = text[..head_end]
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if buf.len() >= head_end + 4 + length {
            return;
        }
    }
}

fn raw_http_ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn dropped_connection_is_retried_for_reads() {
    let (addr, count) = dropping_server(1, raw_http_ok(&compute_json("c1", "Succeeded"))).await;
    let arm = client(&format!("http://{addr}"));
    let got = arm.get_compute(&compute_id("c1")).await.unwrap().unwrap();
    assert_eq!(got.name.as_deref(), Some("c1"));
    assert_eq!(*count.lock().unwrap(), 2);
}

#[tokio::test]
async fn dropped_connection_is_not_blindly_retried_for_a_compute_put() {
    // Azure's compute create is not idempotent: a second PUT could fail with "already
    // exists" although the first one went through. The engine re-observes instead.
    let (addr, count) = dropping_server(1, raw_http_ok(&compute_json("c1", "Creating"))).await;
    let arm = client(&format!("http://{addr}"));
    let err = arm
        .put_compute(&compute_id("c1"), &create_body(), OperationKind::Create)
        .await
        .unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Transient, "{err}");
    assert_eq!(*count.lock().unwrap(), 1);
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    // Bind then drop to get a port nobody listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cfg = config(&format!("http://{addr}"));
    cfg.retry.max_retries = 2;
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let sink = attempts.clone();
    let arm = ArmClient::builder(cfg)
        .observer(Arc::new(move |a: &Attempt| sink.lock().unwrap().push(*a)))
        .build()
        .unwrap();
    let err = arm.get_compute(&compute_id("c1")).await.unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Transient);
    let attempts = attempts.lock().unwrap();
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|a| a.status == StatusClass::Error));
}

// ---------------------------------------------------------------------------------------
// Long-running operations

#[tokio::test]
async fn async_operation_that_fails_surfaces_azures_error() {
    let (stub, base) = start_stub().await;
    let path = compute_path("c1");
    let op_path = format!(
        "/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/eastus/computeOperationsStatus/op-1"
    );
    stub.on(
        "PUT",
        &path,
        vec![
            canned(201, &compute_json("c1", "Creating"))
                .header(
                    "Azure-AsyncOperation",
                    &format!("{{base}}{op_path}?api-version=2025-09-01"),
                )
                .header("Retry-After", "2"),
        ],
    );
    stub.on(
        "GET",
        &op_path,
        vec![
            canned(200, r#"{"status":"InProgress"}"#).header("Retry-After", "1"),
            canned(200, r#"{"status":"Failed","error":{"code":"BadArgument","message":"At least 3 machine(s) are required for cluster with purpose 'FastProd'. Available machine(s) : 2"}}"#),
        ],
    );
    let arm = client(&base);
    let started = arm
        .put_compute(&compute_id("c1"), &create_body(), OperationKind::Create)
        .await
        .unwrap();
    let LroStart::Started(handle) = started else {
        panic!("expected an operation, got {started:?}");
    };
    assert_eq!(handle.kind, OperationKind::Create);
    assert_eq!(handle.style, LroStyle::AsyncOperation);
    assert_eq!(handle.retry_after, Some(Duration::from_secs(2)));

    // The request body had no read-only field and the right api-version.
    let put = stub.seen().into_iter().find(|s| s.method == "PUT").unwrap();
    assert!(put.query.contains("api-version=2025-09-01"));
    assert!(!put.body.contains("provisioningState"));
    assert_eq!(
        put.authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert!(put.user_agent.as_deref().unwrap().starts_with("amlops/"));
    assert!(
        put.client_request_id
            .as_deref()
            .is_some_and(|id| id.len() == 36)
    );

    // The handle survives a restart: serialise, new client, poll.
    let stored = serde_json::to_string(&handle).unwrap();
    let restored: OperationHandle = serde_json::from_str(&stored).unwrap();
    let arm2 = client(&base);
    assert_eq!(
        arm2.poll(&restored).await.unwrap(),
        OperationStatus::InProgress {
            retry_after: Duration::from_secs(1)
        }
    );
    let status = arm2.poll(&restored).await.unwrap();
    let OperationStatus::Failed { code, message } = &status else {
        panic!("expected Failed, got {status:?}");
    };
    assert_eq!(code, "BadArgument");
    assert!(message.contains("At least 3 machine(s)"));
    let err = status.error(restored.kind).unwrap();
    assert_eq!(err.category(), ErrorCategory::OperationFailed);
    assert!(err.to_string().contains("At least 3 machine(s)"));
}

#[tokio::test]
async fn location_style_delete_and_detach() {
    let (stub, base) = start_stub().await;
    let path = compute_path("c1");
    let loc_path = format!(
        "/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/eastus/computeOperationsResult/op-2"
    );
    stub.on(
        "DELETE",
        &path,
        vec![canned(202, "").header("Location", &format!("{{base}}{loc_path}"))],
    );
    stub.on("GET", &loc_path, vec![canned(202, ""), canned(204, "")]);
    let arm = client(&base);
    let started = arm
        .delete_compute(&compute_id("c1"), UnderlyingResourceAction::Detach)
        .await
        .unwrap();
    let handle = started.handle().cloned().unwrap();
    assert_eq!(handle.kind, OperationKind::Detach);
    assert_eq!(handle.style, LroStyle::Location);
    let del = stub
        .seen()
        .into_iter()
        .find(|s| s.method == "DELETE")
        .unwrap();
    assert!(
        del.query.contains("underlyingResourceAction=Detach"),
        "{}",
        del.query
    );
    // Without Retry-After, the configured default interval applies.
    assert_eq!(
        arm.poll(&handle).await.unwrap(),
        OperationStatus::InProgress {
            retry_after: Duration::from_millis(100)
        }
    );
    assert_eq!(arm.poll(&handle).await.unwrap(), OperationStatus::Succeeded);

    // A Location operation that fails answers with an error status and body.
    stub.on("GET", &loc_path, vec![canned(400, r#"{"error":{"code":"ComputeResourceNotCreated","message":"Compute resource with Id: c1 is not in Succeeded state. Compute provisioning state: Failed"}}"#)]);
    assert_eq!(
        arm.poll(&handle).await.unwrap(),
        OperationStatus::Failed {
            code: "ComputeResourceNotCreated".into(),
            message: "Compute resource with Id: c1 is not in Succeeded state. Compute provisioning state: Failed".into(),
        }
    );

    // Synchronous completion and already-deleted are both done.
    stub.on("DELETE", &compute_path("c2"), vec![canned(204, "")]);
    assert_eq!(
        arm.delete_compute(&compute_id("c2"), UnderlyingResourceAction::Delete)
            .await
            .unwrap(),
        LroStart::Done(())
    );
    assert_eq!(
        arm.delete_compute(&compute_id("gone"), UnderlyingResourceAction::Delete)
            .await
            .unwrap(),
        LroStart::Done(())
    );
}

#[tokio::test]
async fn synchronous_put_returns_the_resource() {
    let (stub, base) = start_stub().await;
    stub.on(
        "PUT",
        &compute_path("c1"),
        vec![canned(200, &compute_json("c1", "Succeeded"))],
    );
    let done = client(&base)
        .put_compute(&compute_id("c1"), &create_body(), OperationKind::Update)
        .await
        .unwrap();
    let LroStart::Done(c) = done else {
        panic!("expected Done")
    };
    assert_eq!(c.properties.compute_type, "AKS");
}

#[tokio::test]
async fn poll_refuses_urls_outside_the_arm_endpoint() {
    let (stub, base) = start_stub().await;
    let handle = OperationHandle {
        kind: OperationKind::Delete,
        style: LroStyle::AsyncOperation,
        url: "https://attacker.example/steal".into(),
        retry_after: None,
    };
    let err = client(&base).poll(&handle).await.unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Config);
    assert!(stub.seen().is_empty());
}

// ---------------------------------------------------------------------------------------
// Lists, credentials, SKUs, workspace

#[tokio::test]
async fn list_follows_next_link() {
    let (stub, base) = start_stub().await;
    let list_path = format!(
        "/subscriptions/{SUB}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws/computes"
    );
    let page2_path = format!("{list_path}/page2");
    stub.on(
        "GET",
        &list_path,
        vec![canned(
            200,
            &format!(
                r#"{{"value":[{},{}],"nextLink":"{{base}}{page2_path}?api-version=2025-09-01&$skip=2"}}"#,
                compute_json("a", "Succeeded"),
                // A compute type this client does not model still decodes.
                r#"{"name":"cpu","properties":{"computeType":"AmlCompute","properties":{"vmSize":"STANDARD_D2","scaleSettings":{"maxNodeCount":4}}}}"#
            ),
        )],
    );
    stub.on(
        "GET",
        &page2_path,
        vec![canned(
            200,
            &format!(r#"{{"value":[{}]}}"#, compute_json("b", "Creating")),
        )],
    );
    let ws = ResourceId::workspace(SUB, "ml-rg", "ml-ws").unwrap();
    let all = client(&base).list_computes(&ws).await.unwrap();
    let names: Vec<_> = all.iter().filter_map(|c| c.name.as_deref()).collect();
    assert_eq!(names, ["a", "cpu", "b"]);
    assert_eq!(all.iter().filter(|c| c.is_expected_type()).count(), 2);
    let second = stub
        .seen()
        .into_iter()
        .find(|s| s.path == page2_path)
        .unwrap();
    assert!(second.query.contains("%24skip=2") || second.query.contains("$skip=2"));
}

const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: shared
  cluster:
    server: https://shared-dns-1234.hcp.eastus.azmk8s.io:443
contexts:
- name: shared
  context:
    cluster: shared
    user: clusterUser_aks-rg_shared
current-context: shared
users:
- name: clusterUser_aks-rg_shared
  user:
    token: KUBECONFIG-TOKEN-7d1c0b
";

#[tokio::test]
async fn cluster_credentials_become_a_usable_kubeconfig() {
    let (stub, base) = start_stub().await;
    let cluster = ResourceId::managed_cluster(SUB, "aks-rg", "shared").unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(KUBECONFIG);
    stub.on(
        "POST",
        &format!("{cluster}/listClusterUserCredential"),
        vec![canned(
            200,
            &format!(r#"{{"kubeconfigs":[{{"name":"clusterUser","value":"{encoded}"}}]}}"#),
        )],
    );
    stub.on(
        "POST",
        &format!("{cluster}/listClusterAdminCredential"),
        vec![canned(403, r#"{"error":{"code":"BadRequest","message":"Getting static credential is not allowed because this cluster is set to disable local accounts."}}"#)],
    );
    let arm = client(&base);
    let kubeconfig = arm.list_cluster_user_credential(&cluster).await.unwrap();
    assert_eq!(kubeconfig.expose(), KUBECONFIG);
    let config = kubeconfig.to_kube_config(None).await.unwrap();
    assert_eq!(
        config.cluster_url.to_string(),
        "https://shared-dns-1234.hcp.eastus.azmk8s.io:443/"
    );
    kubeconfig.client(None).await.unwrap();
    assert!(kubeconfig.to_kube_config(Some("nope")).await.is_err());

    let err = arm
        .list_cluster_admin_credential(&cluster)
        .await
        .unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Forbidden);

    // Compute listKeys: plain YAML.
    let keys_path = format!("{}/listKeys", compute_path("c1"));
    stub.on(
        "POST",
        &keys_path,
        vec![canned(
            200,
            &serde_json::json!({"computeType":"AKS","userKubeConfig":KUBECONFIG,"adminKubeConfig":KUBECONFIG}).to_string(),
        )],
    );
    let keys = arm.list_compute_keys(&compute_id("c1")).await.unwrap();
    let user = keys.user_kube_config.unwrap();
    user.to_kube_config(None).await.unwrap();
}

#[tokio::test]
async fn managed_cluster_versions_workspace_and_skus() {
    let (stub, base) = start_stub().await;
    let cluster = ResourceId::managed_cluster(SUB, "aks-rg", "shared").unwrap();
    let example = |p: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("/work/shared/azure-specs/{p}")).unwrap(),
        )
        .unwrap();
        v["responses"]["200"]["body"].to_string()
    };
    stub.on(
        "GET",
        &cluster.to_string(),
        vec![canned(
            200,
            &example("aks-2025-10-01/examples/ManagedClustersGet.json"),
        )],
    );
    let versions_path = format!(
        "/subscriptions/{SUB}/providers/Microsoft.ContainerService/locations/eastus/kubernetesVersions"
    );
    stub.on(
        "GET",
        &versions_path,
        vec![canned(
            200,
            &example("aks-2025-10-01/examples/KubernetesVersions_List.json"),
        )],
    );
    let skus_path = format!("/subscriptions/{SUB}/providers/Microsoft.Compute/skus");
    stub.on(
        "GET",
        &skus_path,
        vec![canned(
            200,
            r#"{"value":[{"resourceType":"virtualMachines","name":"Standard_D3_v2","locations":["eastus"],"capabilities":[{"name":"vCPUs","value":"4"},{"name":"MemoryGB","value":"14"}]}]}"#,
        )],
    );
    let ws_path = format!(
        "/subscriptions/{SUB}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws"
    );
    stub.on(
        "GET",
        &ws_path,
        vec![canned(200, r#"{"id":"x","name":"ml-ws","location":"eastus","properties":{"discoveryUrl":"https://eastus.api.azureml.ms/discovery"}}"#)
            .header("x-ms-ratelimit-remaining-subscription-reads", "11987")],
    );

    let arm = client(&base);
    let mc = arm.get_managed_cluster(&cluster).await.unwrap().unwrap();
    assert_eq!(mc.kubernetes_version(), Some("1.9.6"));
    assert!(
        arm.get_managed_cluster(&ResourceId::managed_cluster(SUB, "aks-rg", "other").unwrap())
            .await
            .unwrap()
            .is_none()
    );

    let versions = arm.list_kubernetes_versions(SUB, "East US").await.unwrap();
    assert!(versions.contains("1.25.5"));

    let ws = ResourceId::workspace(SUB, "ml-rg", "ml-ws").unwrap();
    let w = arm.get_workspace(&ws).await.unwrap().unwrap();
    assert_eq!(w.location.as_deref(), Some("eastus"));
    let quota = arm.remaining_quota(SUB).unwrap();
    assert_eq!(quota.reads.map(|r| r.remaining), Some(11987));
    // More than a token bucket holds: the older hourly model.
    assert_eq!(quota.model, ThrottlingModel::Hourly);
    assert!(
        arm.get_workspace(&ResourceId::workspace(SUB, "ml-rg", "nope").unwrap())
            .await
            .unwrap()
            .is_none()
    );

    assert_eq!(
        arm.vm_vcpus(SUB, "eastus", "standard_d3_v2").await.unwrap(),
        Some(4)
    );
    assert_eq!(
        arm.vm_vcpus(SUB, "eastus", "Standard_Nope").await.unwrap(),
        None
    );
    let catalog = arm.list_vm_skus(SUB, "EastUS").await.unwrap();
    assert_eq!(catalog.len(), 1);
    // Cached per (subscription, location): one request for three lookups.
    assert_eq!(stub.count("GET", &skus_path), 1);
    let q = stub
        .seen()
        .into_iter()
        .find(|s| s.path == skus_path)
        .unwrap()
        .query;
    assert!(q.contains("api-version=2021-07-01"), "{q}");
    assert!(
        q.contains("location+eq+%27eastus%27") || q.contains("location%20eq%20%27eastus%27"),
        "{q}"
    );

    // Wrong resource types are refused before any request.
    let before = stub.seen().len();
    assert!(arm.get_compute(&cluster).await.is_err());
    assert!(arm.get_managed_cluster(&ws).await.is_err());
    assert_eq!(stub.seen().len(), before);
}

// ---------------------------------------------------------------------------------------
// Rate limiting

/// Client-side limits pacing deletes to `deletes` under both models (reads and writes
/// unpaced in effect), whatever the stub's headers say.
fn paced(deletes: ArmBucket) -> RateLimitConfig {
    let free = ArmBucket::new(1e9, 1e9);
    let limits = ArmLimits {
        reads: free,
        writes: free,
        deletes,
        global_factor: 0.0,
    };
    RateLimitConfig {
        arm: ArmThrottling {
            model: ThrottlingModel::TokenBucket,
            token_bucket: limits,
            hourly: limits,
        },
        share: Some(1.0),
        ..RateLimitConfig::default()
    }
}

#[tokio::test]
async fn rate_limiter_spaces_deletes() {
    let (stub, base) = start_stub().await;
    for i in 0..4 {
        stub.on(
            "DELETE",
            &compute_path(&format!("c{i}")),
            vec![canned(204, "")],
        );
    }
    let mut cfg = config(&base);
    // 10 deletes per second, no burst beyond one: deletes 100 ms apart. Reads unaffected.
    cfg.rate_limits = paced(ArmBucket::new(1.0, 10.0));
    cfg.rate_limits.max_wait = Duration::from_secs(5);
    let arm = ArmClient::new(cfg).unwrap();
    let t0 = Instant::now();
    let calls = (0..4).map(|i| {
        let arm = arm.clone();
        async move {
            arm.delete_compute(
                &compute_id(&format!("c{i}")),
                UnderlyingResourceAction::Delete,
            )
            .await
        }
    });
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(280),
        "4 writes in {elapsed:?}"
    );
    let mut times: Vec<Instant> = stub
        .seen()
        .iter()
        .filter(|s| s.method == "DELETE")
        .map(|s| s.at)
        .collect();
    times.sort();
    // The k-th permit is granted no earlier than k × 100 ms after the start. (Gaps between
    // arrivals are not the measure: on a loaded machine one request may spend longer in
    // transit than the next, so two arrivals can land closer than their permits were.)
    assert_eq!(times.len(), 4);
    for (k, at) in times.iter().enumerate() {
        let since = at.saturating_duration_since(t0);
        assert!(
            since >= Duration::from_millis(100 * k as u64 - k.min(1) as u64 * 5),
            "delete {k} arrived {since:?} after the start"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Secrets never leak

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn no_secret_in_debug_display_errors_or_logs() {
    const CLIENT_SECRET: &str = "client-SECRET-q9w8e7";
    const PRIVATE_KEY: &str =
        "-----BEGIN PRIVATE KEY-----\nPRIVATE-KEY-MATERIAL-5a4b\n-----END PRIVATE KEY-----\n";
    const KUBE_TOKEN: &str = "KUBECONFIG-TOKEN-7d1c0b";
    let secrets = [
        TOKEN,
        CLIENT_SECRET,
        "PRIVATE-KEY-MATERIAL-5a4b",
        KUBE_TOKEN,
        "BEGIN PRIVATE KEY",
    ];

    let logs = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (stub, base) = start_stub().await;
    let path = compute_path("c1");
    // The PUT fails (after a retryable 503 and a 401 that forces a token refresh): the
    // error must not carry the body that held the key.
    stub.on(
        "PUT",
        &path,
        vec![
            canned(
                401,
                r#"{"error":{"code":"InvalidAuthenticationToken","message":"expired"}}"#,
            ),
            canned(503, "").header("retry-after-ms", "10"),
            canned(
                400,
                r#"{"error":{"code":"BadRequest","message":"Invalid certificate"}}"#,
            ),
        ],
    );
    let cluster = ResourceId::managed_cluster(SUB, "aks-rg", "shared").unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(KUBECONFIG);
    stub.on(
        "POST",
        &format!("{cluster}/listClusterUserCredential"),
        vec![canned(
            200,
            &format!(r#"{{"kubeconfigs":[{{"name":"u","value":"{encoded}"}}]}}"#),
        )],
    );

    let cfg = config(&base);
    let arm = ArmClient::new(cfg.clone()).unwrap();
    let mut body = create_body();
    body.properties
        .properties
        .as_mut()
        .unwrap()
        .ssl_configuration = Some(SslConfiguration {
        status: Some(SslConfigStatus::Enabled),
        cert: Some(Secret::new(
            "-----BEGIN CERTIFICATE-----\nCERT\n-----END CERTIFICATE-----\n",
        )),
        key: Some(Secret::new(PRIVATE_KEY)),
        cname: Some("scoring.contoso.com".into()),
        ..Default::default()
    });
    let err = arm
        .put_compute(&compute_id("c1"), &body, OperationKind::Attach)
        .await
        .unwrap_err();
    // The key did reach Azure (it must), with the token.
    let puts: Vec<Seen> = stub
        .seen()
        .into_iter()
        .filter(|s| s.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 3);
    assert!(puts[0].body.contains("PRIVATE-KEY-MATERIAL-5a4b"));
    assert_eq!(
        puts[0].authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );

    let kubeconfig = arm.list_cluster_user_credential(&cluster).await.unwrap();
    let kube_config = kubeconfig.to_kube_config(None).await.unwrap();
    let bad_kubeconfig =
        amlops::azure::KubeconfigSecret::new(format!("users: [{{name: [{KUBE_TOKEN}]}}]"));
    let kube_err = bad_kubeconfig.parse().unwrap_err();

    let client_secret_cfg = CredentialConfig::ClientSecret {
        tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
        client_id: "app".into(),
        secret: Secret::new(CLIENT_SECRET),
    };
    let credential =
        amlops::azure::build_credential(&client_secret_cfg, &AzureCloud::Public).unwrap();
    let mut full_cfg = cfg.clone();
    full_cfg.credential = client_secret_cfg.clone();
    let static_credential = amlops::azure::StaticTokenCredential::new(Secret::new(TOKEN));
    tracing::info!(?body, ?full_cfg, ?kubeconfig, "everything at once");

    let rendered = [
        format!("{err}"),
        format!("{err:?}"),
        format!("{kube_err} {kube_err:?}"),
        format!("{cfg:?}"),
        format!("{full_cfg:?}"),
        format!("{client_secret_cfg:?}"),
        format!("{credential:?}"),
        format!("{static_credential:?}"),
        format!("{kubeconfig:?} {kubeconfig}"),
        format!("{kube_config:?}"),
        format!("{body:?}"),
        format!("{arm:?}"),
        format!("{:?}", Secret::new(CLIENT_SECRET)),
    ];
    drop(_guard);
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("ARM request"),
        "debug logs were captured:\n{logs}"
    );
    assert!(logs.contains("compute.put"));
    for text in rendered.iter().chain(std::iter::once(&logs)) {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret:?} leaked into:\n{text}");
        }
    }
}

/// A credential that counts calls and returns a new token each time.
#[derive(Debug, Default)]
struct CountingCredential(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl azure_core::credentials::TokenCredential for CountingCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(azure_core::credentials::AccessToken::new(
            format!("token-{n}"),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

#[tokio::test]
async fn unauthorized_refreshes_the_cached_token_once() {
    let (stub, base) = start_stub().await;
    let path = compute_path("c1");
    stub.on(
        "GET",
        &path,
        vec![canned(
            401,
            r#"{"error":{"code":"ExpiredAuthenticationToken","message":"The access token expiry UTC time is earlier than current UTC time."}}"#,
        )],
    );
    let credential = Arc::new(CountingCredential::default());
    let arm = ArmClient::builder(config(&base))
        .credential(credential.clone())
        .build()
        .unwrap();
    let err = arm.get_compute(&compute_id("c1")).await.unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Unauthorized);
    let auths: Vec<_> = stub.seen().into_iter().map(|s| s.authorization).collect();
    assert_eq!(
        auths,
        vec![Some("Bearer token-0".into()), Some("Bearer token-1".into())]
    );

    // Tokens are cached between calls: a successful call reuses token-1.
    stub.on(
        "GET",
        &path,
        vec![canned(200, &compute_json("c1", "Succeeded"))],
    );
    arm.get_compute(&compute_id("c1")).await.unwrap();
    arm.get_compute(&compute_id("c1")).await.unwrap();
    assert_eq!(credential.0.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn rate_limiter_refuses_long_waits_with_a_retry_after() {
    let (stub, base) = start_stub().await;
    stub.on("DELETE", &compute_path("c1"), vec![canned(204, "")]);
    let mut cfg = config(&base);
    // One delete per 100 s.
    cfg.rate_limits = paced(ArmBucket::new(1.0, 0.01));
    cfg.rate_limits.max_wait = Duration::from_secs(1);
    let arm = ArmClient::new(cfg).unwrap();
    let id = compute_id("c1");
    arm.delete_compute(&id, UnderlyingResourceAction::Delete)
        .await
        .unwrap();
    let t0 = Instant::now();
    let err = arm
        .delete_compute(&id, UnderlyingResourceAction::Delete)
        .await
        .unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "did not park the caller"
    );
    assert_eq!(err.category(), ErrorCategory::Throttled);
    let after = err.retry_after().unwrap();
    assert!(after > Duration::from_secs(90), "{after:?}");
    assert_eq!(stub.count("DELETE", &compute_path("c1")), 1);
    // Reads have their own budget.
    assert!(arm.get_compute(&id).await.unwrap().is_none());
}
