//! ARM front door: routing (case-insensitive, as ARM is), bearer token, api-version,
//! faults, throttling, ratelimit headers and the request log; then the synchronous handlers
//! of `compute`, `aks` and `lro` run under the state lock.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::aks::{self, ClusterPath};
use super::compute::{self, ComputePath};
use super::conn::ConnInfo;
use super::errors::{ArmError, msg};
use super::faults::FaultKind;
use super::kube_api::{self, KubeOutcome};
use super::kubernetes_compute;
use super::lro;
use super::state::{RequestRecord, Shared};
use super::throttle::Charge;

/// Stable api-versions of Microsoft.MachineLearningServices whose compute and workspace
/// schemas the official specs here document (2025-09-01 is amlops' own; 2025-12-01 has the
/// same schema; 2025-06-01 is the version of the official AKS GET example).
pub const MLS_VERSIONS: &[&str] = &["2025-09-01", "2025-12-01", "2025-06-01"];
/// What the Azure ML SDK v1 (azureml-core 1.61) sends for every compute call — PUT, DELETE
/// and `listKeys` on the ARM path, GET and list on the `/rp/workspaces` alias
/// (`azureml/_compute/_constants.py`: `MLC_WORKSPACE_API_VERSION`). Azure accepts it: the
/// SDK's create, attach, update, detach and delete all go through it.
pub const SDK_V1_VERSION: &str = "2020-02-02";
/// Workspace GET: [`MLS_VERSIONS`], plus what the SDK v1 sends: `Workspace.get` 2022-05-01
/// and its workspace list/create 2020-01-01 (`azureml/_base_sdk_common/workspace/operations/
/// workspaces_operations.py`).
pub const WORKSPACE_VERSIONS: &[&str] = &[
    "2025-09-01",
    "2025-12-01",
    "2025-06-01",
    "2022-05-01",
    "2020-01-01",
];
/// Computes (GET, PUT, DELETE, list, `listKeys`), on the ARM path and on the SDK v1's
/// `/rp/workspaces` alias alike: [`MLS_VERSIONS`] and [`SDK_V1_VERSION`]. Whether the real
/// alias also takes the newer versions is not known; the emulator accepts them there too.
pub const COMPUTE_VERSIONS: &[&str] = &["2025-09-01", "2025-12-01", "2025-06-01", SDK_V1_VERSION];
/// api-versions accepted for Microsoft.ContainerService.
pub const AKS_VERSIONS: &[&str] = &["2025-10-01"];
/// api-versions accepted for Microsoft.Compute/skus.
pub const SKU_VERSIONS: &[&str] = &["2021-07-01"];

/// One ARM request, as handlers see it.
pub struct Req<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path.
    pub path: &'a str,
    /// ARM operation name.
    pub operation: &'a str,
    /// Scheme + authority to build URLs the client can reach.
    pub base: &'a str,
    /// api-version of the request.
    pub api_version: &'a str,
    /// Decoded query parameters.
    pub query: &'a [(String, String)],
    /// Body bytes.
    pub body: &'a [u8],
    /// Arrival time.
    pub now: Instant,
}

impl Req<'_> {
    /// A query parameter (name case-insensitive).
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
enum Route {
    Workspaces(String),
    Workspace(String, String, String),
    ComputeList(String, String, String),
    Compute(String, String, String, String),
    ListKeys(String, String, String, String),
    MlsOpStatus(String),
    MlsOpResult(String),
    Cluster(String, String, String),
    Credentials(String, String, String, bool),
    Pools(String, String, String),
    RunCommand(String, String, String),
    CommandResult(String, String, String, String),
    Pool(String, String, String, String),
    AksVersions,
    AksOpStatus(String),
    AksOpResult(String),
    Skus,
    /// Microsoft.KubernetesConfiguration and provider registration.
    KubernetesConfiguration(super::extensions::ExtRoute),
}

fn m(segs: &[&str], pat: &[&str]) -> Option<Vec<String>> {
    if segs.len() != pat.len() {
        return None;
    }
    let mut caps = Vec::new();
    for (s, p) in segs.iter().zip(pat) {
        if *p == "*" {
            caps.push((*s).to_string());
        } else if !s.eq_ignore_ascii_case(p) {
            return None;
        }
    }
    Some(caps)
}

const WS: [&str; 8] = [
    "subscriptions",
    "*",
    "resourceGroups",
    "*",
    "providers",
    "Microsoft.MachineLearningServices",
    "workspaces",
    "*",
];
const MC: [&str; 8] = [
    "subscriptions",
    "*",
    "resourceGroups",
    "*",
    "providers",
    "Microsoft.ContainerService",
    "managedClusters",
    "*",
];

fn with(base: &[&'static str], tail: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(tail).copied().collect()
}

/// (route, subscription) of a path.
fn route(segs: &[&str]) -> Option<(Route, String)> {
    let take4 = |c: Vec<String>| -> (String, String, String, String) {
        let mut it = c.into_iter();
        (
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
        )
    };
    if let Some(c) = m(
        segs,
        &[
            "subscriptions",
            "*",
            "providers",
            "Microsoft.MachineLearningServices",
            "workspaces",
        ],
    ) {
        let (s, _, _, _) = take4(c);
        return Some((Route::Workspaces(s.clone()), s));
    }
    if let Some(c) = m(segs, &WS) {
        let (s, r, w, _) = take4(c);
        return Some((Route::Workspace(s.clone(), r, w), s));
    }
    if let Some(c) = m(segs, &with(&WS, &["computes"])) {
        let (s, r, w, _) = take4(c);
        return Some((Route::ComputeList(s.clone(), r, w), s));
    }
    if let Some(c) = m(segs, &with(&WS, &["computes", "*"])) {
        let (s, r, w, n) = take4(c);
        return Some((Route::Compute(s.clone(), r, w, n), s));
    }
    if let Some(c) = m(segs, &with(&WS, &["computes", "*", "listKeys"])) {
        let (s, r, w, n) = take4(c);
        return Some((Route::ListKeys(s.clone(), r, w, n), s));
    }
    for (leaf, status) in [
        ("computeOperationsStatus", true),
        ("computeOperationsResults", false),
    ] {
        let pat = [
            "subscriptions",
            "*",
            "providers",
            "Microsoft.MachineLearningServices",
            "locations",
            "*",
            leaf,
            "*",
        ];
        if let Some(c) = m(segs, &pat) {
            let (s, _, id, _) = take4(c);
            let r = if status {
                Route::MlsOpStatus(id)
            } else {
                Route::MlsOpResult(id)
            };
            return Some((r, s));
        }
    }
    if let Some(c) = m(segs, &MC) {
        let (s, r, n, _) = take4(c);
        return Some((Route::Cluster(s.clone(), r, n), s));
    }
    if let Some((r, s)) = super::extensions::route(segs) {
        return Some((Route::KubernetesConfiguration(r), s));
    }
    for (leaf, admin) in [
        ("listClusterUserCredential", false),
        ("listClusterAdminCredential", true),
    ] {
        if let Some(c) = m(segs, &with(&MC, &[leaf])) {
            let (s, r, n, _) = take4(c);
            return Some((Route::Credentials(s.clone(), r, n, admin), s));
        }
    }
    if let Some(c) = m(segs, &with(&MC, &["runCommand"])) {
        let (s, r, n, _) = take4(c);
        return Some((Route::RunCommand(s.clone(), r, n), s));
    }
    if let Some(c) = m(segs, &with(&MC, &["commandResults", "*"])) {
        let (s, r, n, id) = take4(c);
        return Some((Route::CommandResult(s.clone(), r, n, id), s));
    }
    if let Some(c) = m(segs, &with(&MC, &["agentPools"])) {
        let (s, r, n, _) = take4(c);
        return Some((Route::Pools(s.clone(), r, n), s));
    }
    if let Some(c) = m(segs, &with(&MC, &["agentPools", "*"])) {
        let (s, r, n, p) = take4(c);
        return Some((Route::Pool(s.clone(), r, n, p), s));
    }
    let aks_loc = |leaf: &'static str, id: bool| -> Vec<&'static str> {
        let mut v = vec![
            "subscriptions",
            "*",
            "providers",
            "Microsoft.ContainerService",
            "locations",
            "*",
            leaf,
        ];
        if id {
            v.push("*");
        }
        v
    };
    if let Some(c) = m(segs, &aks_loc("kubernetesVersions", false)) {
        let (s, _, _, _) = take4(c);
        return Some((Route::AksVersions, s));
    }
    if let Some(c) = m(segs, &aks_loc("operations", true)) {
        let (s, _, id, _) = take4(c);
        return Some((Route::AksOpStatus(id), s));
    }
    if let Some(c) = m(segs, &aks_loc("operationresults", true)) {
        let (s, _, id, _) = take4(c);
        return Some((Route::AksOpResult(id), s));
    }
    if let Some(c) = m(
        segs,
        &[
            "subscriptions",
            "*",
            "providers",
            "Microsoft.Compute",
            "skus",
        ],
    ) {
        let (s, _, _, _) = take4(c);
        return Some((Route::Skus, s));
    }
    None
}

/// ARM operation name (as in throttling messages and RBAC) and accepted api-versions.
fn describe(route: &Route, method: &Method) -> (String, Option<&'static [&'static str]>) {
    let verb = match *method {
        Method::GET | Method::HEAD => "read",
        Method::DELETE => "delete",
        _ => "write",
    };
    let mls = "Microsoft.MachineLearningServices";
    let cs = "Microsoft.ContainerService";
    match route {
        Route::Workspace(..) | Route::Workspaces(_) => {
            (format!("{mls}/workspaces/{verb}"), Some(WORKSPACE_VERSIONS))
        }
        Route::ComputeList(..) | Route::Compute(..) => (
            format!("{mls}/workspaces/computes/{verb}"),
            Some(COMPUTE_VERSIONS),
        ),
        Route::ListKeys(..) => (
            format!("{mls}/workspaces/computes/listKeys/action"),
            Some(COMPUTE_VERSIONS),
        ),
        // Operation URLs carry their api-version; clients poll them verbatim.
        Route::MlsOpStatus(_) => (
            format!("{mls}/locations/computeOperationsStatus/read"),
            None,
        ),
        Route::MlsOpResult(_) => (
            format!("{mls}/locations/computeOperationsResults/read"),
            None,
        ),
        Route::Cluster(..) => (format!("{cs}/managedClusters/{verb}"), Some(AKS_VERSIONS)),
        Route::Credentials(_, _, _, admin) => (
            format!(
                "{cs}/managedClusters/{}/action",
                if *admin {
                    "listClusterAdminCredential"
                } else {
                    "listClusterUserCredential"
                }
            ),
            Some(AKS_VERSIONS),
        ),
        Route::RunCommand(..) => (
            format!("{cs}/managedClusters/runCommand/action"),
            Some(AKS_VERSIONS),
        ),
        Route::CommandResult(..) => (
            format!("{cs}/managedClusters/commandResults/read"),
            Some(AKS_VERSIONS),
        ),
        Route::Pools(..) | Route::Pool(..) => (
            format!("{cs}/managedClusters/agentPools/{verb}"),
            Some(AKS_VERSIONS),
        ),
        Route::AksVersions => (
            format!("{cs}/locations/kubernetesVersions/read"),
            Some(AKS_VERSIONS),
        ),
        Route::AksOpStatus(_) => (format!("{cs}/locations/operations/read"), None),
        Route::AksOpResult(_) => (format!("{cs}/locations/operationresults/read"), None),
        Route::Skus => (
            "Microsoft.Compute/skus/read".to_string(),
            Some(SKU_VERSIONS),
        ),
        Route::KubernetesConfiguration(r) => {
            let (op, versions) = super::extensions::describe(r, verb);
            (op, Some(versions))
        }
    }
}

/// Scheme + authority for URLs in responses: the Host the client used, else the listener.
fn base_of(headers: &HeaderMap, fallback: &str) -> String {
    headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .map(|h| format!("http://{h}"))
        .unwrap_or_else(|| fallback.to_string())
}

enum Outcome {
    Respond(Response),
    Drop,
}

/// The single entry point of everything that is not `/admin`.
pub async fn entry(
    State(shared): State<Shared>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let path = uri.path().to_string();
    let raw_query = uri.query().unwrap_or("").to_string();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let fallback = shared.lock().base_url.clone();
    let base = base_of(&headers, &fallback);

    let (outcome, operation, subscription, fault) = if let Some(rest) = path.strip_prefix("/aks/") {
        let (key, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let op = format!("kube:{method} /{tail}");
        let fault = shared
            .lock()
            .faults
            .take_response_fault(method.as_str(), &path, &op);
        let out = match &fault {
            Some(FaultKind::DropConnection) => Outcome::Drop,
            Some(FaultKind::Slow { ms }) => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                kube(&shared, &method, key, tail, &headers, &body)
            }
            _ => kube(&shared, &method, key, tail, &headers, &body),
        };
        (out, op, None, fault.map(|f| f.name().to_string()))
    } else if path
        .trim_end_matches('/')
        .eq_ignore_ascii_case("/discovery")
        || path.to_ascii_lowercase().starts_with("/discovery/")
    {
        // The Azure ML discovery document (SDK v1): every service lives on the emulator.
        let doc = serde_json::json!({
            "api": base, "catalog": base, "experimentation": base, "gallery": base,
            "history": base, "hyperdrive": base, "labeling": base, "modelmanagement": base,
            "pipelines": base, "studio": base,
        });
        let r = (StatusCode::OK, axum::Json(doc)).into_response();
        (Outcome::Respond(r), "discovery".to_string(), None, None)
    } else if let Some(rest) = strip_prefix_ci(&path, "/rp/workspaces/") {
        // The regional alias the Azure ML SDK v1 uses for compute calls.
        let arm_path = format!("/{rest}");
        arm(
            &shared, &method, &arm_path, &query, &headers, &body, &base, started,
        )
        .await
    } else {
        arm(
            &shared, &method, &path, &query, &headers, &body, &base, started,
        )
        .await
    };

    let (resp, status) = match outcome {
        Outcome::Respond(r) => {
            let s = r.status().as_u16();
            (r, s)
        }
        Outcome::Drop => {
            conn.kill();
            (StatusCode::SERVICE_UNAVAILABLE.into_response(), 0)
        }
    };
    tracing::debug!(%method, %path, status, %operation, "request");
    shared.lock().record(RequestRecord {
        seq: 0,
        timestamp: jiff::Timestamp::now().to_string(),
        method: method.to_string(),
        path,
        query: raw_query,
        status,
        operation,
        subscription,
        fault,
        duration_ms: started.elapsed().as_millis() as u64,
    });
    resp
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn kube(
    shared: &Shared,
    method: &Method,
    key: &str,
    tail: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Outcome {
    match kube_api::handle(
        &mut shared.lock(),
        method.as_str(),
        key,
        tail,
        headers,
        body,
    ) {
        KubeOutcome::Respond(r) => Outcome::Respond(r),
        KubeOutcome::Unreachable => Outcome::Drop,
    }
}

#[allow(clippy::too_many_arguments)]
async fn arm(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
    base: &str,
    now: Instant,
) -> (Outcome, String, Option<String>, Option<String>) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let routed = route(&segs);
    let (operation, versions) = routed
        .as_ref()
        .map(|(r, _)| describe(r, method))
        .unwrap_or_else(|| ("unknown".to_string(), None));
    let subscription = routed.as_ref().map(|(_, s)| s.clone());
    let done = |r: Response, f: Option<String>| {
        (
            Outcome::Respond(r),
            operation.clone(),
            subscription.clone(),
            f,
        )
    };

    // 1. Bearer token (ARM checks it before anything else).
    let token = shared.lock().settings.token.clone();
    if let Err(e) = check_token(headers, &token) {
        return done(e.into_response(), None);
    }
    let Some((route, sub)) = routed.clone() else {
        // emulator wording
        let e = ArmError::new(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            format!("The emulator does not serve {method} {path}."),
        );
        return done(e.into_response(), None);
    };

    // 2. Faults.
    let fault = shared
        .lock()
        .faults
        .take_response_fault(method.as_str(), path, &operation);
    let fault_name = fault.as_ref().map(|f| f.name().to_string());
    match &fault {
        Some(FaultKind::DropConnection) => {
            return (Outcome::Drop, operation, subscription, fault_name);
        }
        Some(FaultKind::Slow { ms }) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        Some(other) => {
            let mut resp = fault_response(other, &route, &operation, path).into_response();
            let mut report = shared
                .lock()
                .throttle
                .peek(&sub, method.as_str(), Instant::now());
            if matches!(other, FaultKind::Throttle { .. }) {
                // A throttled answer reports the bucket (or the hour) spent.
                report.headers.iter_mut().for_each(|(_, v)| *v = 0);
            }
            ratelimit_headers(&mut resp, &report);
            return done(resp, fault_name);
        }
        None => {}
    }

    // 3. ARM's throttling (module `throttle`).
    let charge = shared
        .lock()
        .throttle
        .charge(&sub, method.as_str(), &operation, Instant::now());
    if let Some(r) = &charge.refused {
        let e = ArmError::new(StatusCode::TOO_MANY_REQUESTS, r.code, r.message.clone())
            .header("retry-after", r.retry_after_secs.to_string());
        let mut resp = e.into_response();
        ratelimit_headers(&mut resp, &charge);
        return done(resp, fault_name);
    }

    // 4. api-version.
    let api_version = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
        .map(|(_, v)| v.clone());
    let api_version = match (versions, api_version) {
        (Some(_), None) => {
            let e = ArmError::new(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
            let mut resp = e.into_response();
            ratelimit_headers(&mut resp, &charge);
            return done(resp, fault_name);
        }
        (Some(allowed), Some(v)) if !allowed.contains(&v.as_str()) => {
            let e = ArmError::new(
                StatusCode::BAD_REQUEST,
                "InvalidApiVersionParameter",
                format!(
                    "The api-version '{v}' is invalid. The supported versions are '{}'.",
                    allowed.join(",")
                ),
            );
            let mut resp = e.into_response();
            ratelimit_headers(&mut resp, &charge);
            return done(resp, fault_name);
        }
        (_, v) => v.unwrap_or_default(),
    };

    // 5. The handler, under the lock, after finishing due operations.
    let req = Req {
        method: method.as_str(),
        path,
        operation: &operation,
        base,
        api_version: &api_version,
        query,
        body,
        now,
    };
    let result = {
        let mut inner = shared.lock();
        inner.tick(Instant::now());
        dispatch(&mut inner, &req, method, &route)
    };
    let mut resp = result.unwrap_or_else(|e| e.into_response());
    ratelimit_headers(&mut resp, &charge);
    let h = resp.headers_mut();
    let request_id = uuid::Uuid::new_v4().to_string();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-ms-request-id", v.clone());
        h.insert("x-ms-correlation-request-id", v);
    }
    if let Some(v) = headers.get("x-ms-client-request-id") {
        h.insert("x-ms-client-request-id", v.clone());
    }
    done(resp, fault_name)
}

fn dispatch(
    inner: &mut super::state::Inner,
    req: &Req,
    method: &Method,
    route: &Route,
) -> Result<Response, ArmError> {
    let not_allowed = || {
        // emulator wording
        ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The emulator does not support {method} on this resource."),
        )
    };
    match (route, method) {
        (Route::Workspaces(s), &Method::GET) => compute::list_workspaces(inner, req, s),
        (Route::Workspace(s, r, w), &Method::GET) => compute::get_workspace(inner, req, s, r, w),
        (Route::ComputeList(s, r, w), &Method::GET) => compute::list(inner, req, s, r, w),
        (Route::Compute(s, r, w, n), m) => {
            let p = ComputePath {
                sub: s,
                rg: r,
                ws: w,
                name: n,
            };
            let kubernetes = kubernetes_compute::owns(inner, &p);
            match *m {
                Method::GET if kubernetes => kubernetes_compute::get(inner, &p),
                Method::GET => compute::get(inner, &p),
                Method::PUT if kubernetes_compute::is_kubernetes_body(req.body) => {
                    kubernetes_compute::put(inner, req, &p)
                }
                Method::PUT if kubernetes => Err(ArmError::bad_request(msg::compute_exists(n))),
                Method::PUT => compute::put(inner, req, &p),
                Method::DELETE if kubernetes => kubernetes_compute::delete(inner, req, &p),
                Method::DELETE => compute::delete(inner, req, &p),
                _ => Err(not_allowed()),
            }
        }
        (Route::ListKeys(s, r, w, n), &Method::POST) => {
            let p = ComputePath {
                sub: s,
                rg: r,
                ws: w,
                name: n,
            };
            if kubernetes_compute::owns(inner, &p) {
                kubernetes_compute::list_keys(inner, &p)
            } else {
                compute::list_keys(inner, req, &p)
            }
        }
        (Route::MlsOpStatus(id) | Route::AksOpStatus(id), &Method::GET) => {
            lro::get_status(inner, id, req.now)
        }
        (Route::MlsOpResult(id) | Route::AksOpResult(id), &Method::GET) => {
            lro::get_result(inner, id, req.base, req.now)
        }
        (Route::Cluster(s, r, n), m) => {
            let p = ClusterPath {
                sub: s,
                rg: r,
                name: n,
            };
            match *m {
                Method::GET => aks::get(inner, &p),
                Method::DELETE => aks::delete(inner, req, &p),
                _ => Err(not_allowed()),
            }
        }
        (Route::Credentials(s, r, n, admin), &Method::POST) => aks::credentials(
            inner,
            req,
            &ClusterPath {
                sub: s,
                rg: r,
                name: n,
            },
            *admin,
        ),
        (Route::Pools(s, r, n), &Method::GET) => aks::list_pools(
            inner,
            &ClusterPath {
                sub: s,
                rg: r,
                name: n,
            },
        ),
        (Route::Pool(s, r, n, pool), m) => {
            let p = ClusterPath {
                sub: s,
                rg: r,
                name: n,
            };
            match *m {
                Method::GET => aks::get_pool(inner, &p, pool),
                Method::PUT => aks::put_pool(inner, req, &p, pool),
                _ => Err(not_allowed()),
            }
        }
        (Route::RunCommand(s, r, n), &Method::POST) => aks::run_command(
            inner,
            req,
            &ClusterPath {
                sub: s,
                rg: r,
                name: n,
            },
        ),
        (Route::CommandResult(s, r, n, id), &Method::GET) => aks::command_result(
            inner,
            req,
            &ClusterPath {
                sub: s,
                rg: r,
                name: n,
            },
            id,
        ),
        (Route::AksVersions, &Method::GET) => aks::kubernetes_versions(inner),
        (Route::KubernetesConfiguration(r), _) => super::extensions::dispatch(inner, req, r),
        (Route::Skus, &Method::GET) => aks::skus(inner, req),
        _ => Err(not_allowed()),
    }
}

fn check_token(headers: &HeaderMap, token: &str) -> Result<(), ArmError> {
    let www = r#"Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token", error_description="The authentication failed because of missing 'Authorization' header.""#;
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )
        .header("www-authenticate", www));
    };
    let given = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "));
    match given {
        Some(t) if t == token => Ok(()),
        Some(_) => Err(ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The access token is invalid.", // emulator wording
        )
        .header(
            "www-authenticate",
            www.replace("missing 'Authorization' header", "invalid access token"),
        )),
        None => Err(ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
        )
        .header("www-authenticate", www)),
    }
}

fn fault_response(kind: &FaultKind, route: &Route, operation: &str, path: &str) -> ArmError {
    match kind {
        FaultKind::Forbidden => ArmError::new(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            msg::authorization_failed(operation, path),
        ),
        FaultKind::BadRequest { code, message } => {
            ArmError::new(StatusCode::BAD_REQUEST, code, message.clone())
        }
        FaultKind::Throttle { retry_after_secs } => ArmError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            msg::throttled(operation, *retry_after_secs),
        )
        .header("retry-after", retry_after_secs.to_string()),
        FaultKind::Status {
            status,
            retry_after_secs,
        } => {
            let err = match *status {
                500 => ArmError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    msg::INTERNAL,
                ),
                // emulator wording
                502 => ArmError::new(
                    StatusCode::BAD_GATEWAY,
                    "BadGateway",
                    "The gateway did not receive a response from the resource provider.",
                ),
                // emulator wording
                503 => ArmError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The service is temporarily unavailable. Please try again later.",
                ),
                other => ArmError::new(
                    StatusCode::from_u16(other).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    "InternalServerError",
                    msg::INTERNAL,
                ),
            };
            let default = (*status == 503).then_some(1);
            match retry_after_secs.or(default) {
                Some(secs) => err.header("retry-after", secs.to_string()),
                None => err,
            }
        }
        FaultKind::Busy409 => {
            let pool = match route {
                Route::Pool(_, _, _, p) => p.clone(),
                _ => "nodepool1".to_string(),
            };
            ArmError::new(
                StatusCode::CONFLICT,
                "OperationNotAllowed",
                msg::aks_busy(&pool),
            )
        }
        // Handled before; kept total so a new kind cannot slip through silently.
        FaultKind::DropConnection | FaultKind::Slow { .. } | FaultKind::LroFail { .. } => {
            ArmError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                msg::INTERNAL,
            )
        }
    }
}

/// The `x-ms-ratelimit-remaining-subscription-*` headers of the model the subscription is
/// under, on every ARM response.
fn ratelimit_headers(resp: &mut Response, charge: &Charge) {
    let h = resp.headers_mut();
    for (name, value) in &charge.headers {
        if let Ok(name) = axum::http::HeaderName::from_bytes(name.as_bytes()) {
            h.insert(name, HeaderValue::from(*value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<&str> {
        p.split('/').filter(|s| !s.is_empty()).collect()
    }

    #[test]
    fn routes_are_case_insensitive() {
        let p = "/subscriptions/s/resourcegroups/rg/providers/microsoft.machinelearningservices/workspaces/w/computes/c";
        assert!(matches!(route(&segs(p)), Some((Route::Compute(..), s)) if s == "s"));
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/x/agentPools/p";
        assert!(matches!(route(&segs(p)), Some((Route::Pool(..), _))));
        assert!(route(&segs("/subscriptions/s/providers/Microsoft.Compute/skus")).is_some());
        assert!(route(&segs("/nothing")).is_none());
    }
}
