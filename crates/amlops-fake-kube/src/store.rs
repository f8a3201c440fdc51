//! The fake's state: served kinds, stored objects, the change log watches replay, and the
//! write semantics of the API server's generic registry (resourceVersion, uid, generation,
//! status subresource, finalizers, optimistic concurrency, no-op writes).
//!
//! Everything runs under one mutex held for the whole of a request (never across an
//! `.await`), so writes are linearizable and the change log has no gaps.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::crd::crd_type;
use super::errors::ApiError;
use super::patch::{json_patch, merge_patch};
use super::{Fault, RequestRecord, ResourceKind};

/// A kind is stored once per (group, plural); every served version sees the same objects
/// with only `apiVersion` rewritten, like a CRD with conversion strategy `None`.
pub(crate) type TypeKey = (String, String);

/// How many changes watches can replay before old resourceVersions answer 410 Expired.
const HISTORY_CAP: usize = 10_000;
/// Default capacity of the live change channel; a watch that falls this far behind ends (its
/// client watches again from its last resourceVersion).
pub(crate) const BROADCAST_CAP: usize = 4096;
pub(crate) const CRD_GROUP: &str = "apiextensions.k8s.io";
pub(crate) const CRD_PLURAL: &str = "customresourcedefinitions";

/// A served kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypeInfo {
    pub group: String,
    pub versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// `metadata.generation` is maintained (custom resources and CRDs).
    pub has_generation: bool,
    /// Defined by a CRD: DELETE answers with the object, PUT needs a resourceVersion.
    pub custom: bool,
    /// PUT without `metadata.resourceVersion` is allowed (most built-in kinds).
    pub unconditional_update: bool,
    /// False while the defining CRD is not Established: requests answer 404.
    pub served: bool,
    /// The storage version's `openAPIV3Schema` of a CRD-defined kind, for its defaults
    /// (see `defaults.rs`; all versions share one store here).
    pub schema: Option<Arc<Value>>,
}

impl TypeInfo {
    /// The CRD's structural defaults, as the API server applies them to a request body and
    /// to every object it reads from storage (so stored objects here always carry them).
    pub fn apply_defaults(&self, obj: &mut Value) {
        if let Some(schema) = &self.schema {
            super::defaults::apply(schema, obj);
        }
    }

    pub fn key(&self) -> TypeKey {
        (self.group.clone(), self.plural.clone())
    }

    /// `plural` for the core group, `plural.group` otherwise (as in API error messages).
    pub fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind.group` (or `Kind`), as in 422 Invalid messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    fn builtin(kind: ResourceKind) -> Self {
        let is_crd = kind.group == CRD_GROUP && kind.plural == CRD_PLURAL;
        Self {
            group: kind.group,
            versions: vec![kind.version],
            kind: kind.kind,
            plural: kind.plural,
            namespaced: kind.namespaced,
            status_subresource: kind.status_subresource,
            has_generation: is_crd,
            custom: false,
            unconditional_update: !is_crd,
            served: true,
            schema: None,
        }
    }
}

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Sub {
    Main,
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed write, as replayed to watches.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub key: TypeKey,
    pub namespace: String,
    pub kind: ChangeKind,
    /// The object before a MODIFIED write (selector transitions need it).
    pub old: Option<Value>,
    pub object: Value,
    /// When open watches may forward it (see `FakeApiServer::set_watch_delay`).
    pub deliver_at: tokio::time::Instant,
}

/// The kinds of PATCH the fake understands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PatchType {
    Merge,
    Json,
    /// Treated as a merge patch (no struct tags to drive list merging).
    Strategic,
    Apply {
        manager: String,
        force: bool,
    },
}

/// The outcome of a DELETE.
pub(crate) enum Deleted {
    /// Removed from the store; carries the final object.
    Gone(Value),
    /// Finalizers pending: `deletionTimestamp` is set and the object stays.
    Terminating(Value),
}

/// Per-object record of server-side apply configurations, by (field manager, subresource).
pub(crate) type AppliedConfigs = BTreeMap<(String, Sub), Value>;

pub(crate) struct State {
    pub rv: u64,
    pub types: BTreeMap<TypeKey, TypeInfo>,
    pub objects: BTreeMap<TypeKey, BTreeMap<(String, String), Value>>,
    pub history: VecDeque<Arc<Change>>,
    /// Watches from a resourceVersion below this answer 410 Expired.
    pub compacted: u64,
    pub tx: broadcast::Sender<Arc<Change>>,
    pub applied: BTreeMap<(TypeKey, String, String), AppliedConfigs>,
    /// CRDs kept from becoming Established until `establish` is called.
    pub held_crds: BTreeSet<String>,
    pub requests: Vec<RequestRecord>,
    pub faults: Vec<Fault>,
    /// How long open watches hold each change back (a lagging watch cache).
    pub watch_delay: std::time::Duration,
    /// Who the request being served writes as (its `managedFields` entry).
    pub writer: super::managed::Writer,
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn is_terminating(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// The core/v1 Namespace kind.
fn is_namespace(ty: &TypeInfo) -> bool {
    ty.group.is_empty() && ty.plural == "namespaces"
}

fn set_or_remove(obj: &mut Value, key: &str, value: Option<Value>) {
    if let Value::Object(map) = obj {
        match value {
            Some(v) => {
                map.insert(key.to_string(), v);
            }
            None => {
                map.remove(key);
            }
        }
    }
}

/// What `metadata.generation` tracks: everything but metadata (and status when it is a
/// subresource), as the custom resource strategy compares.
fn generation_view(ty: &TypeInfo, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Value::Object(map) = &mut v {
        map.remove("metadata");
        map.remove("apiVersion");
        map.remove("kind");
        if ty.status_subresource {
            map.remove("status");
        }
    }
    v
}

/// Metadata fields only the server writes; user writes cannot change them.
const SERVER_META: [&str; 8] = [
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
];

/// DNS-1123 subdomain: what most kinds accept as `metadata.name`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Shapes the typed clients rely on; anything else would make every later read fail.
fn validate_meta(ty: &TypeInfo, obj: &Value) -> Result<(), ApiError> {
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let invalid = |msg: String| ApiError::invalid(ty, &name, &msg);
    let Some(m) = meta(obj) else {
        return Err(invalid("metadata: Required value".into()));
    };
    for field in ["labels", "annotations"] {
        match m.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) if map.values().all(Value::is_string) => {}
            Some(_) => {
                return Err(invalid(format!(
                    "metadata.{field}: Invalid value: must be a map of strings"
                )));
            }
        }
    }
    match m.get("finalizers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(_) => {
            return Err(invalid(
                "metadata.finalizers: Invalid value: must be a list of strings".into(),
            ));
        }
    }
    Ok(())
}

/// Built-in behaviour of the few kinds where it matters to clients: a Secret's write-only
/// `stringData` is folded into `data` (base64) and `type` defaults to `Opaque`.
fn normalize_builtin(ty: &TypeInfo, obj: &mut Value) {
    use base64::Engine as _;
    if !(ty.group.is_empty() && ty.plural == "secrets") {
        return;
    }
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(strings)) = map.remove("stringData") {
        if !map.get("data").is_some_and(Value::is_object) {
            map.insert("data".into(), json!({}));
        }
        if let Some(Value::Object(data)) = map.get_mut("data") {
            for (k, v) in strings {
                if let Some(text) = v.as_str() {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
                    data.insert(k, json!(encoded));
                }
            }
        }
    }
    if map
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        map.insert("type".into(), json!("Opaque"));
    }
}

impl State {
    /// `watch_capacity`: how many changes a watch may fall behind before it is closed.
    pub fn new(builtins: Vec<ResourceKind>, watch_capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(watch_capacity.max(1));
        let mut state = Self {
            rv: 1,
            types: BTreeMap::new(),
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            tx,
            applied: BTreeMap::new(),
            held_crds: BTreeSet::new(),
            requests: Vec::new(),
            faults: Vec::new(),
            watch_delay: std::time::Duration::ZERO,
            writer: super::managed::Writer::default(),
        };
        for kind in builtins {
            state.register_builtin(kind);
        }
        state
    }

    pub fn register_builtin(&mut self, kind: ResourceKind) {
        let ty = TypeInfo::builtin(kind);
        self.types.insert(ty.key(), ty);
    }

    /// The served kind at `/{group}/{version}/{plural}` (404 otherwise).
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Result<TypeInfo, ApiError> {
        self.types
            .get(&(group.to_string(), plural.to_string()))
            .filter(|t| t.served && t.versions.iter().any(|v| v == version))
            .cloned()
            .ok_or_else(ApiError::no_route)
    }

    /// A kind by apiVersion and kind or plural (for the test-side helpers).
    pub fn find_type(&self, api_version: &str, kind_or_plural: &str) -> Option<TypeInfo> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.types
            .values()
            .find(|t| {
                t.group == group
                    && t.versions.iter().any(|v| v == version)
                    && (t.kind == kind_or_plural || t.plural == kind_or_plural)
            })
            .cloned()
    }

    pub fn get(&self, ty: &TypeInfo, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&ty.key())?
            .get(&(ns.to_string(), name.to_string()))
    }

    /// Objects of a kind, in one namespace or all, ordered by (namespace, name).
    pub fn list(&self, ty: &TypeInfo, ns: Option<&str>) -> Vec<Value> {
        self.objects
            .get(&ty.key())
            .map(|objs| {
                objs.iter()
                    .filter(|((o_ns, _), _)| ns.is_none_or(|n| n == o_ns))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn emit(
        &mut self,
        ty: &TypeInfo,
        ns: &str,
        kind: ChangeKind,
        old: Option<Value>,
        obj: Value,
    ) {
        let change = Arc::new(Change {
            rv: self.rv,
            key: ty.key(),
            namespace: ns.to_string(),
            kind,
            old,
            object: obj,
            deliver_at: tokio::time::Instant::now() + self.watch_delay,
        });
        if self.history.len() >= HISTORY_CAP
            && let Some(dropped) = self.history.pop_front()
        {
            self.compacted = dropped.rv;
        }
        self.history.push_back(change.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(change);
    }

    /// Forgets the change log so that watches from any older resourceVersion get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    pub(crate) fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    /// POST: create. `ns` is "" for cluster-scoped kinds.
    pub fn create(
        &mut self,
        ty: &TypeInfo,
        version: &str,
        ns: &str,
        body: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut obj = body;
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        self.check_type_meta(ty, version, &obj)?;
        let body_ns = meta_str(&obj, "namespace").map(str::to_string);
        if ty.namespaced && body_ns.as_deref().is_some_and(|b| b != ns) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if meta_str(&obj, "resourceVersion").is_some() {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = match (meta_str(&obj, "name"), meta_str(&obj, "generateName")) {
            (Some(n), _) => n.to_string(),
            (None, Some(prefix)) => {
                let mut rng = rand::rng();
                let suffix: String = (0..5)
                    .map(|_| {
                        let chars = b"bcdfghjklmnpqrstvwxz2456789";
                        chars[rng.random_range(0..chars.len())] as char
                    })
                    .collect();
                format!("{prefix}{suffix}")
            }
            (None, None) => {
                return Err(ApiError::invalid(
                    ty,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                ty,
                &name,
                &format!(
                    "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
                ),
            ));
        }
        if ty.namespaced && self.namespace_terminating(ns) {
            return Err(ApiError::namespace_terminating(ty, &name, ns));
        }
        if self.get(ty, ns, &name).is_some() {
            return Err(ApiError::already_exists(ty, &name));
        }
        obj["apiVersion"] = json!(ty.api_version(version));
        obj["kind"] = json!(ty.kind);
        if ty.status_subresource {
            // (A CRD's status is then filled in by the server below.)
            set_or_remove(&mut obj, "status", None);
        }
        // Request and storage-read defaulting: the latter re-creates a defaulted `status`.
        ty.apply_defaults(&mut obj);
        let m = meta_mut(&mut obj);
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            m.remove(f);
        }
        m.insert("name".into(), json!(name));
        if ty.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now()));
        if ty.has_generation {
            m.insert("generation".into(), json!(1));
        }
        validate_meta(ty, &obj)?;
        normalize_builtin(ty, &mut obj);
        let is_crd = self.is_crd_kind(ty);
        if is_crd {
            crd_type(&obj).map_err(|e| ApiError::invalid(ty, &name, &e))?;
            self.fill_crd_status(&mut obj, None);
        }
        super::managed::record(ty, &mut obj, None, &self.writer, Sub::Main);
        if dry_run {
            return Ok(obj);
        }
        let rv = self.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv));
        self.objects
            .entry(ty.key())
            .or_default()
            .insert((ns.to_string(), name), obj.clone());
        self.emit(ty, ns, ChangeKind::Added, None, obj.clone());
        if is_crd {
            self.register_crd(&obj);
        }
        Ok(obj)
    }

    /// apiVersion and kind in a body, when present, must be the URL's.
    pub(crate) fn check_type_meta(
        &self,
        ty: &TypeInfo,
        version: &str,
        obj: &Value,
    ) -> Result<(), ApiError> {
        let want = ty.api_version(version);
        if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
            && av != want
        {
            return Err(ApiError::bad_request(&format!(
                "the API version in the data ({av}) does not match the expected API version ({want})"
            )));
        }
        if let Some(kind) = obj.get("kind").and_then(Value::as_str)
            && kind != ty.kind
        {
            return Err(ApiError::bad_request(&format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                ty.kind
            )));
        }
        Ok(())
    }

    fn is_crd_kind(&self, ty: &TypeInfo) -> bool {
        ty.group == CRD_GROUP && ty.plural == CRD_PLURAL
    }

    /// The stored object or 404.
    fn existing(&self, ty: &TypeInfo, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.get(ty, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(ty, name))
    }

    /// PUT. With `check_rv`, a stale `metadata.resourceVersion` is a 409 and a missing
    /// one a 422 for kinds that do not allow unconditional updates (custom resources).
    #[allow(clippy::too_many_arguments)]
    pub fn replace(
        &mut self,
        ty: &TypeInfo,
        version: &str,
        ns: &str,
        name: &str,
        body: Value,
        sub: Sub,
        check_rv: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        self.check_type_meta(ty, version, &body)?;
        if let Some(body_name) = meta_str(&body, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(&format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let old = self.existing(ty, ns, name)?;
        if check_rv {
            match meta_str(&body, "resourceVersion") {
                Some(rv) if Some(rv) != meta_str(&old, "resourceVersion") => {
                    return Err(ApiError::conflict(ty, name));
                }
                None if !ty.unconditional_update => {
                    return Err(ApiError::invalid(
                        ty,
                        name,
                        "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                    ));
                }
                _ => {}
            }
        }
        self.commit_update(ty, ns, name, &old, body, sub, dry_run)
    }

    /// PATCH of every kind; server-side apply on a missing object creates it.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        ty: &TypeInfo,
        version: &str,
        ns: &str,
        name: &str,
        ptype: &PatchType,
        body: &Value,
        sub: Sub,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        let Some(old) = self.get(ty, ns, name).cloned() else {
            if let PatchType::Apply { manager, .. } = ptype
                && sub == Sub::Main
            {
                return self.apply_create(ty, version, ns, name, body, manager, dry_run);
            }
            return Err(ApiError::not_found(ty, name));
        };
        let mut forced_away = Vec::new();
        let candidate = match ptype {
            PatchType::Merge | PatchType::Strategic => {
                if !body.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                let mut c = old.clone();
                merge_patch(&mut c, body);
                c
            }
            PatchType::Json => {
                let mut c = old.clone();
                json_patch(&mut c, body).map_err(|e| ApiError::invalid(ty, name, &e))?;
                c
            }
            PatchType::Apply { manager, force } => {
                let (c, forced) =
                    self.apply_candidate(ty, version, ns, name, &old, body, sub, manager, *force)?;
                forced_away = forced;
                c
            }
        };
        // Optimistic concurrency: a resourceVersion that the patch put in must be current.
        if let Some(rv) = meta_str(&candidate, "resourceVersion")
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(ty, name));
        }
        let result = self.commit_update(ty, ns, name, &old, candidate, sub, dry_run)?;
        if let PatchType::Apply { manager, .. } = ptype
            && !dry_run
        {
            self.record_apply(ty, ns, name, manager, sub, body, forced_away);
        }
        Ok((result, false))
    }

    /// The common tail of PUT and PATCH: status subresource rules, server-owned metadata,
    /// generation, no-op detection, and removal once a terminating object has no finalizers.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_update(
        &mut self,
        ty: &TypeInfo,
        ns: &str,
        name: &str,
        old: &Value,
        candidate: Value,
        sub: Sub,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !candidate.is_object() {
            return Err(ApiError::bad_request("the result must be a JSON object"));
        }
        let mut new = match sub {
            Sub::Status => {
                let mut n = old.clone();
                set_or_remove(&mut n, "status", candidate.get("status").cloned());
                n
            }
            Sub::Main => {
                let mut n = candidate;
                if ty.status_subresource {
                    set_or_remove(&mut n, "status", old.get("status").cloned());
                }
                let old_meta = meta(old).cloned().unwrap_or_default();
                let m = meta_mut(&mut n);
                for f in SERVER_META {
                    match old_meta.get(f) {
                        Some(v) => m.insert(f.to_string(), v.clone()),
                        None => m.remove(f),
                    };
                }
                m.remove("managedFields");
                n
            }
        };
        new["apiVersion"] = old.get("apiVersion").cloned().unwrap_or(Value::Null);
        new["kind"] = json!(ty.kind);
        ty.apply_defaults(&mut new);
        validate_meta(ty, &new)?;
        normalize_builtin(ty, &mut new);
        if is_terminating(old) {
            let before: BTreeSet<String> = finalizers(old).into_iter().collect();
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    ty,
                    name,
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        if ty.has_generation && generation_view(ty, old) != generation_view(ty, &new) {
            let gen_ = meta(old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(gen_ + 1));
        }
        let is_crd = self.is_crd_kind(ty);
        if is_crd {
            crd_type(&new).map_err(|e| ApiError::invalid(ty, name, &e))?;
            self.fill_crd_status(&mut new, Some(old));
        }
        // A write that changes nothing is not a write: no new resourceVersion, no event, no
        // new managedFields time.
        if super::managed::same_but_managed(&new, old) {
            return Ok(old.clone());
        }
        super::managed::record(ty, &mut new, Some(old), &self.writer, sub);
        if dry_run {
            return Ok(new);
        }
        let rv = self.next_rv();
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
        if is_terminating(&new) && finalizers(&new).is_empty() {
            self.remove(ty, ns, name, new.clone());
            return Ok(new);
        }
        self.objects
            .entry(ty.key())
            .or_default()
            .insert((ns.to_string(), name.to_string()), new.clone());
        self.emit(ty, ns, ChangeKind::Modified, Some(old.clone()), new.clone());
        if is_crd {
            self.register_crd(&new);
        }
        Ok(new)
    }

    /// Namespace `ns` exists and is being deleted.
    pub(crate) fn namespace_terminating(&self, ns: &str) -> bool {
        self.objects
            .get(&(String::new(), "namespaces".to_string()))
            .and_then(|m| m.get(&(String::new(), ns.to_string())))
            .is_some_and(is_terminating)
    }

    /// DELETE of a Namespace, as the API server and its namespace controller do it: the
    /// namespace is marked (deletionTimestamp, `spec.finalizers: [kubernetes]`, phase
    /// `Terminating`), every object in it is deleted (objects with finalizers only get
    /// their deletionTimestamp), creates in it are refused from now on, and the namespace
    /// goes once nothing is left in it.
    fn delete_namespace(
        &mut self,
        ty: &TypeInfo,
        name: &str,
        dry_run: bool,
    ) -> Result<Deleted, ApiError> {
        let old = self.existing(ty, "", name)?;
        if is_terminating(&old) || dry_run {
            return Ok(Deleted::Terminating(old));
        }
        let mut new = old.clone();
        meta_mut(&mut new).insert("deletionTimestamp".into(), json!(now()));
        new["spec"] = json!({"finalizers": ["kubernetes"]});
        new["status"] = json!({"phase": "Terminating"});
        let rv = self.next_rv();
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
        self.objects
            .entry(ty.key())
            .or_default()
            .insert((String::new(), name.to_string()), new.clone());
        self.emit(ty, "", ChangeKind::Modified, Some(old), new.clone());
        let contents: Vec<(TypeInfo, String)> = self
            .objects
            .iter()
            .filter_map(|(k, objs)| Some((self.types.get(k)?.clone(), objs)))
            .filter(|(t, _)| t.namespaced)
            .flat_map(|(t, objs)| {
                objs.keys()
                    .filter(|(o_ns, _)| o_ns == name)
                    .map(move |(_, n)| (t.clone(), n.clone()))
            })
            .collect();
        for (t, n) in contents {
            // Each object as a DELETE would treat it; a failure leaves it for later.
            let _ = self.delete(&t, name, &n, &Value::Null, false);
        }
        self.finish_namespace(name);
        Ok(match self.get(ty, "", name) {
            Some(o) => Deleted::Terminating(o.clone()),
            None => Deleted::Gone(new),
        })
    }

    /// Removes the terminating namespace `ns` once nothing is left in it.
    fn finish_namespace(&mut self, ns: &str) {
        if ns.is_empty() || !self.namespace_terminating(ns) {
            return;
        }
        let occupied = self.objects.iter().any(|(k, objs)| {
            self.types.get(k).is_some_and(|t| t.namespaced)
                && objs.keys().any(|(o_ns, _)| o_ns == ns)
        });
        if occupied {
            return;
        }
        let Some(ty) = self
            .types
            .get(&(String::new(), "namespaces".to_string()))
            .cloned()
        else {
            return;
        };
        let Some(mut last) = self.get(&ty, "", ns).cloned() else {
            return;
        };
        let rv = self.next_rv();
        meta_mut(&mut last).insert("resourceVersion".into(), json!(rv));
        self.remove(&ty, "", ns, last);
    }

    /// Takes an object out of the store (its final state already has a fresh rv).
    fn remove(&mut self, ty: &TypeInfo, ns: &str, name: &str, last: Value) {
        if let Some(objs) = self.objects.get_mut(&ty.key()) {
            objs.remove(&(ns.to_string(), name.to_string()));
        }
        self.applied
            .remove(&(ty.key(), ns.to_string(), name.to_string()));
        self.emit(ty, ns, ChangeKind::Deleted, None, last.clone());
        if self.is_crd_kind(ty)
            && let Ok(defined) = crd_type(&last)
        {
            self.unregister_crd(&defined);
        }
        if ty.namespaced {
            self.finish_namespace(ns);
        }
    }

    /// DELETE: with finalizers the object only gets a deletionTimestamp (and, as the real
    /// registry does, a generation bump); without, it is removed.
    pub fn delete(
        &mut self,
        ty: &TypeInfo,
        ns: &str,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<Deleted, ApiError> {
        if is_namespace(ty) {
            return self.delete_namespace(ty, name, dry_run);
        }
        let old = self.existing(ty, ns, name)?;
        if let Some(pre) = options.get("preconditions") {
            for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
                if let Some(want) = pre.get(field).and_then(Value::as_str)
                    && Some(want) != meta_str(&old, field)
                {
                    return Err(ApiError::conflict_msg(
                        ty,
                        name,
                        &format!(
                            "Precondition failed: {label} in precondition: {want}, {label} in object meta: {}",
                            meta_str(&old, field).unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        if !finalizers(&old).is_empty() {
            if is_terminating(&old) || dry_run {
                return Ok(Deleted::Terminating(old));
            }
            let mut new = old.clone();
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), json!(now()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            if let Some(g) = m.get("generation").and_then(Value::as_i64) {
                m.insert("generation".into(), json!(g + 1));
            }
            let rv = self.next_rv();
            meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
            self.objects
                .entry(ty.key())
                .or_default()
                .insert((ns.to_string(), name.to_string()), new.clone());
            self.emit(ty, ns, ChangeKind::Modified, Some(old), new.clone());
            return Ok(Deleted::Terminating(new));
        }
        if dry_run {
            return Ok(Deleted::Gone(old));
        }
        let mut last = old;
        let rv = self.next_rv();
        meta_mut(&mut last).insert("resourceVersion".into(), json!(rv));
        self.remove(ty, ns, name, last.clone());
        Ok(Deleted::Gone(last))
    }
}
