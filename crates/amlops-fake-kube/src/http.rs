//! HTTP surface: path routing, verbs, query parameters, request log, fault injection,
//! list responses, minimal legacy discovery and `/version`.
//!
//! One fallback handler parses paths by hand because Kubernetes paths are ambiguous for a
//! router (`/api/v1/namespaces/{name}` is a Namespace, `/api/v1/namespaces/{ns}/secrets`
//! a collection).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch as tokio_watch;

use super::RequestRecord;
use super::errors::ApiError;
use super::managed::Writer;
use super::select::{FieldSelector, LabelSelector};
use super::store::{Deleted, PatchType, State, Sub, TypeInfo};
use super::watch;

/// What the handler shares with the test-side `FakeApiServer`.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub shutdown: tokio_watch::Receiver<bool>,
    /// Bumped by `expire_watches`: open watches end with a 410 ERROR event.
    pub expire: tokio_watch::Receiver<u64>,
    /// How often open watches send a BOOKMARK (when they asked for bookmarks).
    pub bookmark_interval: Duration,
}

impl Shared {
    /// The state; a panic elsewhere must not wedge every later request.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// Where a request path points.
#[derive(Debug, Clone, PartialEq)]
enum Route {
    Version,
    CoreVersions,
    Groups,
    Resources {
        group: String,
        version: String,
    },
    Collection {
        group: String,
        version: String,
        plural: String,
        ns: Option<String>,
    },
    Item {
        group: String,
        version: String,
        plural: String,
        ns: Option<String>,
        name: String,
        sub: Option<String>,
    },
}

fn parse_route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Some(Route::Version),
        ["api"] => return Some(Route::CoreVersions),
        ["apis"] => return Some(Route::Groups),
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let s = |x: &&str| x.to_string();
    let namespaced = rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let route = match (namespaced, rest) {
        (_, []) => Route::Resources { group, version },
        (true, [_, ns, plural]) => Route::Collection {
            group,
            version,
            plural: s(plural),
            ns: Some(s(ns)),
        },
        (true, [_, ns, plural, name, sub @ ..]) if sub.len() <= 1 => Route::Item {
            group,
            version,
            plural: s(plural),
            ns: Some(s(ns)),
            name: s(name),
            sub: sub.first().map(s),
        },
        (false, [plural]) => Route::Collection {
            group,
            version,
            plural: s(plural),
            ns: None,
        },
        (false, [plural, name, sub @ ..]) if sub.len() <= 1 => Route::Item {
            group,
            version,
            plural: s(plural),
            ns: None,
            name: s(name),
            sub: sub.first().map(s),
        },
        _ => return None,
    };
    Some(route)
}

/// A request as the handler sees it.
pub(crate) struct Req {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Option<Value>,
    /// Why the body could not be decoded, if it could not.
    pub body_error: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

impl Req {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.param(key), Some("true" | "1"))
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    /// The decoded body, or 400.
    fn json_body(&self) -> Result<&Value, ApiError> {
        if let Some(e) = &self.body_error {
            return Err(ApiError::bad_request(&format!("error decoding body: {e}")));
        }
        self.body
            .as_ref()
            .ok_or_else(|| ApiError::bad_request("the request body is empty"))
    }
}

fn decode_body(content_type: Option<&str>, bytes: &[u8]) -> (Option<Value>, Option<String>) {
    if bytes.is_empty() {
        return (None, None);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => (Some(v), None),
        // Apply bodies may be YAML; kube sends JSON, which is YAML too.
        Err(e) if content_type.is_some_and(|c| c.contains("yaml")) => {
            match serde_saphyr::from_slice::<Value>(bytes) {
                Ok(v) => (Some(v), None),
                Err(ye) => (None, Some(format!("{e}; as YAML: {ye}"))),
            }
        }
        Err(e) => (None, Some(e.to_string())),
    }
}

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let (body, body_error) = decode_body(content_type.as_deref(), &body);
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let req = Req {
        method,
        path: uri.path().to_string(),
        query,
        content_type,
        body,
        body_error,
        user_agent,
    };
    let raw_query = uri.query().unwrap_or_default().to_string();
    process(&shared, req, raw_query)
}

/// Everything but the watch stream itself happens here, under the state lock.
fn process(shared: &Arc<Shared>, req: Req, raw_query: String) -> Response {
    let mut state = shared.lock();
    let target = if raw_query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{raw_query}", req.path)
    };
    let fault = state
        .faults
        .iter_mut()
        .find(|f| f.remaining > 0 && f.matches(req.method.as_str(), &target));
    let outcome = match fault {
        Some(f) => {
            f.remaining -= 1;
            Err(ApiError::injected(f.status, &f.message))
        }
        None => {
            state.writer = writer_of(&req);
            let outcome = dispatch(shared, &mut state, &req);
            state.writer = Writer::default();
            outcome
        }
    };
    let (status, response) = match outcome {
        Ok(Reply::Json(code, v)) => (code, json_response(code, &v)),
        Ok(Reply::Stream(resp)) => (200, resp),
        Err(e) => (e.code, json_response(e.code, &e.to_json())),
    };
    state.requests.push(RequestRecord {
        method: req.method.to_string(),
        path: req.path,
        query: raw_query,
        content_type: req.content_type,
        body: req.body,
        status,
    });
    response
}

/// Who `req` writes as: its `fieldManager`, else its user agent up to the first `/` (the API
/// server's default), and `Apply` for a server-side apply patch.
fn writer_of(req: &Req) -> Writer {
    let manager = req
        .param("fieldManager")
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .or_else(|| {
            req.user_agent
                .as_deref()
                .and_then(|ua| ua.split('/').next())
                .filter(|m| !m.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into());
    let apply = req
        .content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/apply-patch"));
    Writer {
        manager,
        operation: if apply { "Apply" } else { "Update" },
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) enum Reply {
    Json(u16, Value),
    Stream(Response),
}

/// The object as seen through `version` of its kind.
pub(crate) fn present(ty: &TypeInfo, version: &str, obj: &Value) -> Value {
    let mut v = obj.clone();
    v["apiVersion"] = json!(ty.api_version(version));
    v["kind"] = json!(ty.kind);
    v
}

fn dispatch(shared: &Arc<Shared>, state: &mut State, req: &Req) -> Result<Reply, ApiError> {
    let route = parse_route(&req.path).ok_or_else(ApiError::no_route)?;
    let (group, version, plural, ns, item) = match route {
        Route::Version => return Ok(Reply::Json(200, version_info())),
        Route::CoreVersions => {
            return Ok(Reply::Json(
                200,
                json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
            ));
        }
        Route::Groups => return Ok(Reply::Json(200, api_groups(state))),
        Route::Resources { group, version } => {
            return resource_list(state, &group, &version).map(|v| Reply::Json(200, v));
        }
        Route::Collection {
            group,
            version,
            plural,
            ns,
        } => (group, version, plural, ns, None),
        Route::Item {
            group,
            version,
            plural,
            ns,
            name,
            sub,
        } => (group, version, plural, ns, Some((name, sub))),
    };
    let ty = state.lookup(&group, &version, &plural)?;
    if !ty.namespaced && ns.is_some() {
        return Err(ApiError::no_route());
    }
    let Some((name, sub)) = item else {
        return collection(shared, state, req, &ty, &version, ns);
    };
    let Some(ns) = (if ty.namespaced {
        ns
    } else {
        Some(String::new())
    }) else {
        return Err(ApiError::no_route());
    };
    let sub = match sub.as_deref() {
        None => Sub::Main,
        Some("status") if ty.status_subresource => Sub::Status,
        Some(_) => return Err(ApiError::no_route()),
    };
    let show = |v: &Value| present(&ty, &version, v);
    let dry = req.dry_run();
    match req.method {
        Method::GET => state
            .get(&ty, &ns, &name)
            .map(|o| Reply::Json(200, show(o)))
            .ok_or_else(|| ApiError::not_found(&ty, &name)),
        Method::PUT => {
            let body = req.json_body()?.clone();
            let obj = state.replace(&ty, &version, &ns, &name, body, sub, true, dry)?;
            Ok(Reply::Json(200, show(&obj)))
        }
        Method::PATCH => {
            let ctype = req.content_type.as_deref().unwrap_or_default();
            let essence = ctype.split(';').next().unwrap_or_default().trim();
            let ptype = match essence {
                "application/merge-patch+json" => PatchType::Merge,
                "application/json-patch+json" => PatchType::Json,
                "application/strategic-merge-patch+json" => PatchType::Strategic,
                "application/apply-patch+yaml" => {
                    let manager = req.param("fieldManager").unwrap_or_default();
                    if manager.is_empty() {
                        return Err(ApiError::invalid(
                            &ty,
                            &name,
                            "fieldManager: Required value: is required for apply patch",
                        ));
                    }
                    PatchType::Apply {
                        manager: manager.to_string(),
                        force: req.flag("force"),
                    }
                }
                _ => return Err(ApiError::unsupported_media(ctype)),
            };
            let body = req.json_body()?;
            let (obj, created) = state.patch(&ty, &version, &ns, &name, &ptype, body, sub, dry)?;
            Ok(Reply::Json(if created { 201 } else { 200 }, show(&obj)))
        }
        Method::DELETE if sub == Sub::Main => {
            let options = req.body.clone().unwrap_or(Value::Null);
            let dry = dry || dry_run_in_options(&options);
            match state.delete(&ty, &ns, &name, &options, dry)? {
                Deleted::Terminating(obj) => Ok(Reply::Json(200, show(&obj))),
                Deleted::Gone(obj) if ty.custom => Ok(Reply::Json(200, show(&obj))),
                Deleted::Gone(obj) => Ok(Reply::Json(200, deleted_status(&ty, &name, &obj))),
            }
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn dry_run_in_options(options: &Value) -> bool {
    options
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "All"))
}

fn deleted_status(ty: &TypeInfo, name: &str, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": name,
            "group": ty.group,
            "kind": ty.plural,
            "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        },
    })
}

/// The selectors of a list, watch or deletecollection (400 when malformed).
pub(crate) fn selectors(req: &Req) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(req.param("labelSelector").unwrap_or_default())
        .map_err(|e| ApiError::bad_request(&e))?;
    let fields = FieldSelector::parse(req.param("fieldSelector").unwrap_or_default())
        .map_err(|e| ApiError::bad_request(&e))?;
    Ok((labels, fields))
}

fn collection(
    shared: &Arc<Shared>,
    state: &mut State,
    req: &Req,
    ty: &TypeInfo,
    version: &str,
    ns: Option<String>,
) -> Result<Reply, ApiError> {
    match req.method {
        Method::GET if req.flag("watch") => watch::start(shared, state, req, ty, version, ns),
        Method::GET => {
            let (labels, fields) = selectors(req)?;
            let items: Vec<Value> = state
                .list(ty, ns.as_deref())
                .iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
                .map(|o| present(ty, version, o))
                .collect();
            list_page(ty, version, state.rv, items, req).map(|v| Reply::Json(200, v))
        }
        Method::POST => {
            let ns = match (ty.namespaced, ns) {
                (true, Some(ns)) => ns,
                (true, None) => return Err(ApiError::method_not_allowed()),
                (false, _) => String::new(),
            };
            let body = req.json_body()?.clone();
            let obj = state.create(ty, version, &ns, body, req.dry_run())?;
            Ok(Reply::Json(201, present(ty, version, &obj)))
        }
        Method::DELETE => {
            let (labels, fields) = selectors(req)?;
            let options = req.body.clone().unwrap_or(Value::Null);
            let dry = req.dry_run() || dry_run_in_options(&options);
            let targets: Vec<(String, String)> = state
                .list(ty, ns.as_deref())
                .iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
                .map(|o| {
                    let s = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or_default();
                    (
                        s("/metadata/namespace").to_string(),
                        s("/metadata/name").to_string(),
                    )
                })
                .collect();
            let mut items = Vec::new();
            for (o_ns, name) in targets {
                let obj = match state.delete(ty, &o_ns, &name, &Value::Null, dry)? {
                    Deleted::Gone(o) | Deleted::Terminating(o) => o,
                };
                items.push(present(ty, version, &obj));
            }
            list_page(ty, version, state.rv, items, req).map(|v| Reply::Json(200, v))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// A list body; `limit` is honoured with an offset as the `continue` token.
fn list_page(
    ty: &TypeInfo,
    version: &str,
    rv: u64,
    items: Vec<Value>,
    req: &Req,
) -> Result<Value, ApiError> {
    let start: usize = match req.param("continue").filter(|c| !c.is_empty()) {
        Some(c) => c
            .parse()
            .map_err(|_| ApiError::bad_request("invalid continue token"))?,
        None => 0,
    };
    let limit = req
        .param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(items.len());
    let page: Vec<Value> = items
        .get(start..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if end < items.len() {
        metadata["continue"] = json!(end.to_string());
        metadata["remainingItemCount"] = json!(items.len() - end);
    }
    Ok(json!({
        "kind": format!("{}List", ty.kind),
        "apiVersion": ty.api_version(version),
        "metadata": metadata,
        "items": page,
    }))
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-amlops-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn api_groups(state: &State) -> Value {
    let mut groups: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for ty in state
        .types
        .values()
        .filter(|t| t.served && !t.group.is_empty())
    {
        let versions = groups.entry(ty.group.as_str()).or_default();
        for v in &ty.versions {
            if !versions.contains(&v.as_str()) {
                versions.push(v);
            }
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, vs)| {
            let gv = |v: &str| json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({
                "name": g,
                "versions": vs.iter().map(|v| gv(v)).collect::<Vec<_>>(),
                "preferredVersion": gv(vs[0]),
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(state: &State, group: &str, version: &str) -> Result<Value, ApiError> {
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    let mut resources = Vec::new();
    for ty in state
        .types
        .values()
        .filter(|t| t.served && t.group == group && t.versions.iter().any(|v| v == version))
    {
        resources.push(json!({
            "name": ty.plural, "singularName": ty.kind.to_lowercase(), "namespaced": ty.namespaced,
            "kind": ty.kind, "verbs": verbs,
        }));
        if ty.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", ty.plural), "singularName": "", "namespaced": ty.namespaced,
                "kind": ty.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return Err(ApiError::no_route());
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let item = |g: &str, p: &str, ns: Option<&str>, n: &str, sub: Option<&str>| Route::Item {
            group: g.into(),
            version: "v1".into(),
            plural: p.into(),
            ns: ns.map(Into::into),
            name: n.into(),
            sub: sub.map(Into::into),
        };
        assert_eq!(parse_route("/version"), Some(Route::Version));
        assert_eq!(
            parse_route("/api/v1/namespaces"),
            Some(Route::Collection {
                group: "".into(),
                version: "v1".into(),
                plural: "namespaces".into(),
                ns: None
            })
        );
        assert_eq!(
            parse_route("/api/v1/namespaces/default"),
            Some(item("", "namespaces", None, "default", None))
        );
        assert_eq!(
            parse_route("/api/v1/namespaces/default/status"),
            Some(item("", "namespaces", None, "default", Some("status")))
        );
        assert_eq!(
            parse_route("/api/v1/namespaces/ns/secrets"),
            Some(Route::Collection {
                group: "".into(),
                version: "v1".into(),
                plural: "secrets".into(),
                ns: Some("ns".into())
            })
        );
        assert_eq!(
            parse_route("/apis/g/v1/namespaces/ns/things/a/status"),
            Some(item("g", "things", Some("ns"), "a", Some("status")))
        );
        assert_eq!(
            parse_route("/apis/g/v1/things/a"),
            Some(item("g", "things", None, "a", None))
        );
        assert_eq!(parse_route("/apis/g/v1/namespaces/ns/things/a/b/c"), None);
        assert_eq!(parse_route("/healthz"), None);
    }
}
