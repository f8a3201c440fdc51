//! The `Microsoft.KubernetesConfiguration` resource provider: cluster extensions on emulated
//! AKS clusters (and on seeded Arc `connectedClusters`, without a data plane), their
//! operations, and the provider registration read.
//!
//! Paths (api-versions [`EXTENSION_VERSIONS`]):
//! - `PUT|GET|PATCH|DELETE …/{clusterRp}/{clusterType}/{cluster}/providers/Microsoft.KubernetesConfiguration/extensions/{name}`
//! - `GET …/extensions` (list), `GET …/extensions/{name}/operations/{id}` (always 200)
//! - `GET /subscriptions/{s}/providers/{namespace}`, `POST …/{namespace}/register`
//!   (api-versions [`PROVIDER_VERSIONS`])
//!
//! Status codes and headers follow the 2025-03-01 examples: PUT 201 (new) / 200 (existing)
//! with `Azure-AsyncOperation` (absolute), `Operation-Location` (relative) and
//! `x-ms-async-operation-timeout: PT48H`; PATCH 202 with the same headers, or 200 when nothing
//! changes; DELETE 202 with `Azure-AsyncOperation`, then 404; 204 when absent; `forceDelete`
//! removes the resource synchronously (200). Protected settings are stored but never returned.
//!
//! Outcomes come from the emulated cluster when an operation completes (the extension's Helm
//! pre-install health check, [`super::cluster_objects`]): `Failed` operations with
//! `ExtensionOperationFailed` and the wording users report.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::arm::Req;
use super::cluster_objects::{self, HealthFailure};
use super::errors::{ArmError, ErrorDetail, error_json, msg};
use super::lro::{Effect, NewOp, Provider, add_retry_after};
use super::state::{Inner, arm_time, cluster_key};

/// api-versions accepted for `Microsoft.KubernetesConfiguration/extensions` (the default tag
/// and the older ones clients in the wild use: Terraform and ASO 2024-11-01, the AML-Kubernetes
/// template 2022-03-01, older CLIs 2021-09-01).
pub const EXTENSION_VERSIONS: &[&str] = &[
    "2025-03-01",
    "2024-11-01",
    "2024-11-02-preview",
    "2023-05-01",
    "2022-11-01",
    "2022-07-01",
    "2022-03-01",
    "2021-09-01",
];
/// api-versions accepted for the provider registration read.
pub const PROVIDER_VERSIONS: &[&str] = &["2021-04-01", "2022-09-01", "2024-03-01", "2025-04-01"];

const NAMESPACE: &str = "Microsoft.KubernetesConfiguration";
const TYPE: &str = "Microsoft.KubernetesConfiguration/extensions";
/// Type of the Azure ML extension (compared case-insensitively).
pub const AZUREML_TYPE: &str = "Microsoft.AzureML.Kubernetes";
/// Version an emulated extension reports when none is pinned.
const EMULATED_VERSION: &str = "1.1.64";
/// How long a deleted extension's Helm release keeps its name (emulated).
pub const DEFAULT_REUSE_WINDOW: Duration = Duration::from_secs(60);
/// How long after `Succeeded` the InstanceType CRD appears (emulated).
pub const DEFAULT_CRD_DELAY: Duration = Duration::from_millis(500);

/// A cluster path: `{clusterRp}/{clusterResourceName}/{clusterName}` in a resource group.
#[derive(Debug, Clone)]
pub struct ClusterRef {
    /// Subscription.
    pub sub: String,
    /// Resource group.
    pub rg: String,
    /// `Microsoft.ContainerService` or `Microsoft.Kubernetes`.
    pub rp: String,
    /// `managedClusters` or `connectedClusters`.
    pub kind: String,
    /// Cluster name.
    pub name: String,
}

impl ClusterRef {
    fn is_aks(&self) -> bool {
        self.rp.eq_ignore_ascii_case("Microsoft.ContainerService")
            && self.kind.eq_ignore_ascii_case("managedClusters")
    }

    /// Lower-cased ARM id (key of clusters and extensions).
    pub fn key(&self) -> String {
        if self.is_aks() {
            cluster_key(&self.sub, &self.rg, &self.name)
        } else {
            format!(
                "/subscriptions/{}/resourcegroups/{}/providers/{}/{}/{}",
                self.sub, self.rg, self.rp, self.kind, self.name
            )
            .to_ascii_lowercase()
        }
    }

    fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{}/{}/{}",
            self.sub, self.rg, self.rp, self.kind, self.name
        )
    }
}

/// The routes of this provider.
#[derive(Debug, Clone)]
pub enum ExtRoute {
    /// `…/extensions`.
    List(ClusterRef),
    /// `…/extensions/{name}`.
    One(ClusterRef, String),
    /// `…/extensions/{name}/operations/{id}`.
    Operation(ClusterRef, String, String),
    /// `/subscriptions/{s}/providers/{namespace}` (`register` = the POST action).
    Provider {
        /// Subscription.
        sub: String,
        /// Provider namespace.
        namespace: String,
        /// True for `…/register`.
        register: bool,
    },
}

/// Matches a path (segments) to a route of this provider; `(route, subscription)`.
pub fn route(segs: &[&str]) -> Option<(ExtRoute, String)> {
    let lit = |i: usize, s: &str| segs.get(i).is_some_and(|x| x.eq_ignore_ascii_case(s));
    if (segs.len() == 4 || segs.len() == 5) && lit(0, "subscriptions") && lit(2, "providers") {
        if segs.len() == 5 && !lit(4, "register") {
            return None;
        }
        return Some((
            ExtRoute::Provider {
                sub: segs[1].to_string(),
                namespace: segs[3].to_string(),
                register: segs.len() == 5,
            },
            segs[1].to_string(),
        ));
    }
    if segs.len() < 11
        || !(lit(0, "subscriptions")
            && lit(2, "resourceGroups")
            && lit(4, "providers")
            && lit(8, "providers")
            && lit(9, NAMESPACE)
            && lit(10, "extensions"))
    {
        return None;
    }
    let cluster = ClusterRef {
        sub: segs[1].to_string(),
        rg: segs[3].to_string(),
        rp: segs[5].to_string(),
        kind: segs[6].to_string(),
        name: segs[7].to_string(),
    };
    let sub = cluster.sub.clone();
    let r = match segs.len() {
        11 => ExtRoute::List(cluster),
        12 => ExtRoute::One(cluster, segs[11].to_string()),
        14 if lit(12, "operations") => {
            ExtRoute::Operation(cluster, segs[11].to_string(), segs[13].to_string())
        }
        _ => return None,
    };
    Some((r, sub))
}

/// ARM operation name and accepted api-versions of a route.
pub fn describe(r: &ExtRoute, verb: &str) -> (String, &'static [&'static str]) {
    match r {
        ExtRoute::List(_) | ExtRoute::One(..) => (format!("{TYPE}/{verb}"), EXTENSION_VERSIONS),
        ExtRoute::Operation(..) => (
            format!("{NAMESPACE}/extensions/operations/read"),
            EXTENSION_VERSIONS,
        ),
        ExtRoute::Provider { register, .. } => (
            if *register {
                "Microsoft.Resources/subscriptions/providers/register/action".to_string()
            } else {
                "Microsoft.Resources/subscriptions/providers/read".to_string()
            },
            PROVIDER_VERSIONS,
        ),
    }
}

/// An installed (or installing) extension.
#[derive(Clone)]
pub struct ExtensionRecord {
    /// Cluster path.
    pub cluster: ClusterRef,
    /// Name as sent.
    pub name: String,
    /// Extension type as sent.
    pub extension_type: String,
    /// `autoUpgradeMinorVersion`.
    pub auto_upgrade_minor_version: bool,
    /// `autoUpgradeMode`.
    pub auto_upgrade_mode: Option<String>,
    /// `releaseTrain`.
    pub release_train: Option<String>,
    /// Pinned `version`.
    pub version: Option<String>,
    /// `scope`, as sent (or Azure's default).
    pub scope: Value,
    /// `configurationSettings`.
    pub settings: BTreeMap<String, String>,
    /// `configurationProtectedSettings` (never returned, never in `Debug`).
    pub protected: BTreeMap<String, String>,
    /// `identity.type`, if any.
    pub identity_type: Option<String>,
    /// Principal of the system-assigned identity.
    pub principal_id: String,
    /// Creating / Updating / Deleting / Succeeded / Failed.
    pub provisioning_state: String,
    /// `currentVersion` once installed.
    pub current_version: Option<String>,
    /// `errorInfo` of the last failure.
    pub error: Option<ErrorDetail>,
    /// Operation in flight.
    pub operation: Option<String>,
    /// Created.
    pub created_at: jiff::Timestamp,
    /// Last modified.
    pub modified_at: jiff::Timestamp,
}

impl std::fmt::Debug for ExtensionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtensionRecord")
            .field("cluster", &self.cluster.key())
            .field("name", &self.name)
            .field("extension_type", &self.extension_type)
            .field("provisioning_state", &self.provisioning_state)
            .field("settings", &self.settings)
            .field("protected_keys", &self.protected.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ExtensionRecord {
    /// True for the Azure ML extension.
    pub fn is_azureml(&self) -> bool {
        self.extension_type.eq_ignore_ascii_case(AZUREML_TYPE)
    }

    /// ARM id.
    pub fn id(&self) -> String {
        format!(
            "{}/providers/{NAMESPACE}/extensions/{}",
            self.cluster.id(),
            self.name
        )
    }

    /// A setting, compared as Helm would (trimmed).
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(|s| s.trim())
    }

    /// A boolean setting (`True`/`true`), with the chart's default.
    pub fn flag(&self, key: &str, default: bool) -> bool {
        self.setting(key)
            .map(|v| v.eq_ignore_ascii_case("true"))
            .unwrap_or(default)
    }
}

/// Per-cluster facts the extension and Kubernetes computes depend on (seeded).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterTraits {
    /// `SystemAssigned` (default), `UserAssigned`, or `ServicePrincipal` (extensions refuse).
    pub identity: Option<String>,
    /// `disableLocalAccounts` (Kubernetes compute attach then fails).
    pub disable_local_accounts: bool,
    /// A legacy `azureml-fe` in `default` left by an AKS compute (besides the one an emulated
    /// AKS compute attachment installs).
    pub legacy_front_end: bool,
    /// Extension installs on this cluster take this long (seconds) instead of the default.
    pub slow_install_seconds: Option<f64>,
    /// Extension installs hit Helm's 15-minute atomic timeout.
    pub install_times_out: bool,
    /// The cluster's outbound traffic is blocked: the health check fails with `E45003
    /// BAD_NETWORK_CONNECTIVITY` (a cause no read of ARM or of the cluster can foresee).
    pub egress_blocked: bool,
}

/// The provider's world, inside [`Inner`].
#[derive(Debug, Default)]
pub struct ExtensionWorld {
    /// Extensions by `{cluster key}/extensions/{lower name}`.
    pub extensions: BTreeMap<String, ExtensionRecord>,
    /// Seeded Arc clusters (keys).
    pub connected_clusters: BTreeSet<String>,
    /// (lower subscription, lower namespace) of unregistered providers.
    pub unregistered: BTreeSet<(String, String)>,
    /// Traits by cluster key.
    pub traits: BTreeMap<String, ClusterTraits>,
    /// When each extension name was last deleted (Helm keeps the release name a while).
    pub deleted_at: BTreeMap<String, Instant>,
    /// Reuse window after a delete.
    pub reuse_window: Option<Duration>,
    /// Delay of the InstanceType CRD after install.
    pub crd_delay: Option<Duration>,
    /// (workspace key, cluster key) pairs whose workspace identity lacks roles on the cluster.
    pub role_gaps: BTreeSet<(String, String)>,
    /// The extension's objects on each cluster (by cluster key).
    pub objects: BTreeMap<String, cluster_objects::ClusterObjects>,
    /// Kubernetes computes by compute key.
    pub computes: BTreeMap<String, super::kubernetes_compute::KubeCompute>,
}

impl ExtensionWorld {
    /// The traits of a cluster (defaults when not seeded).
    pub fn traits(&self, cluster_key: &str) -> ClusterTraits {
        self.traits.get(cluster_key).cloned().unwrap_or_default()
    }

    /// The Azure ML extension of a cluster, if any.
    pub fn azureml_of(&self, cluster_key: &str) -> Option<&ExtensionRecord> {
        self.extensions
            .values()
            .find(|e| e.cluster.key() == cluster_key && e.is_azureml())
    }
}

/// Key of an extension in [`ExtensionWorld::extensions`].
pub fn ext_key(cluster: &ClusterRef, name: &str) -> String {
    format!("{}/extensions/{}", cluster.key(), name.to_ascii_lowercase())
}

/// 409 `MissingSubscriptionRegistration`, as reported (MicrosoftDocs/azure-docs#99764).
fn not_registered(namespace: &str) -> ArmError {
    ArmError::new(
        StatusCode::CONFLICT,
        "MissingSubscriptionRegistration",
        format!(
            "The subscription is not registered to use namespace '{namespace}'. See https://aka.ms/rps-not-found for how to register subscriptions."
        ),
    )
}

/// True when the subscription has not registered `namespace`.
pub fn is_unregistered(inner: &Inner, sub: &str, namespace: &str) -> bool {
    inner
        .ext
        .unregistered
        .contains(&(sub.to_ascii_lowercase(), namespace.to_ascii_lowercase()))
}

fn cluster_exists(inner: &Inner, c: &ClusterRef) -> Result<(), ArmError> {
    let found = if c.is_aks() {
        inner.clusters.contains_key(&c.key())
    } else {
        inner.ext.connected_clusters.contains(&c.key())
    };
    if found {
        Ok(())
    } else {
        Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            msg::not_found(&format!("{}/{}", c.rp, c.kind), &c.name, &c.rg),
        ))
    }
}

fn ext_not_found(c: &ClusterRef, name: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        msg::not_found(TYPE, name, &c.rg),
    )
}

/// Handles a request on one of this provider's routes.
pub fn dispatch(inner: &mut Inner, req: &Req, route: &ExtRoute) -> Result<Response, ArmError> {
    let method = req.method;
    match route {
        ExtRoute::Provider {
            sub,
            namespace,
            register,
        } => provider(inner, req, sub, namespace, *register),
        ExtRoute::List(c) if method == "GET" => {
            gate(inner, c)?;
            list(inner, req, c)
        }
        ExtRoute::One(c, name) => {
            gate(inner, c)?;
            match method {
                "GET" => get(inner, c, name),
                "PUT" => put(inner, req, c, name),
                "PATCH" => patch(inner, req, c, name),
                "DELETE" => delete(inner, req, c, name),
                _ => Err(method_not_allowed(method)),
            }
        }
        ExtRoute::Operation(c, name, id) if method == "GET" => {
            gate(inner, c)?;
            operation_status(inner, c, name, id, req.now)
        }
        _ => Err(method_not_allowed(method)),
    }
}

fn method_not_allowed(method: &str) -> ArmError {
    // emulator wording
    ArmError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("The emulator does not support {method} on this resource."),
    )
}

/// Provider registration, then the cluster.
fn gate(inner: &Inner, c: &ClusterRef) -> Result<(), ArmError> {
    if is_unregistered(inner, &c.sub, NAMESPACE) {
        return Err(not_registered(NAMESPACE));
    }
    cluster_exists(inner, c)
}

fn provider(
    inner: &mut Inner,
    req: &Req,
    sub: &str,
    namespace: &str,
    register: bool,
) -> Result<Response, ArmError> {
    if register {
        if req.method != "POST" {
            return Err(method_not_allowed(req.method));
        }
        inner
            .ext
            .unregistered
            .remove(&(sub.to_ascii_lowercase(), namespace.to_ascii_lowercase()));
    } else if req.method != "GET" {
        return Err(method_not_allowed(req.method));
    }
    let state = if is_unregistered(inner, sub, namespace) {
        "NotRegistered"
    } else {
        "Registered"
    };
    let body = json!({
        "id": format!("/subscriptions/{sub}/providers/{namespace}"),
        "namespace": namespace,
        "registrationState": state,
        "registrationPolicy": "RegistrationRequired",
        "resourceTypes": [],
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// The ARM body of an extension (protected settings never included).
pub fn extension_json(e: &ExtensionRecord) -> Value {
    let mut props = json!({
        "extensionType": e.extension_type,
        "autoUpgradeMinorVersion": e.auto_upgrade_minor_version,
        "scope": e.scope,
        "configurationSettings": e.settings,
        "provisioningState": e.provisioning_state,
        "currentVersion": e.current_version,
        "statuses": [],
        "isSystemExtension": false,
        // On AKS Azure reports the extension's managed identity here, not under `identity`
        // (`az k8s-extension show --cluster-type managedClusters` prints
        // `aksAssignedIdentity: {principalId: …}`, and Microsoft's docs were corrected to read
        // the principal from it: MicrosoftDocs/azure-docs#120348). Arc clusters: `identity`.
        "aksAssignedIdentity": if e.cluster.is_aks() {
            json!({"principalId": e.principal_id})
        } else {
            Value::Null
        },
    });
    if let Some(o) = props.as_object_mut() {
        if let Some(t) = &e.release_train {
            o.insert("releaseTrain".into(), json!(t));
        }
        // x-nullable: always present, as in Azure's answers.
        o.insert("version".into(), json!(e.version));
        if let Some(m) = &e.auto_upgrade_mode {
            o.insert("autoUpgradeMode".into(), json!(m));
        }
        if e.provisioning_state == "Succeeded" {
            o.insert("extensionState".into(), json!("Ready"));
        }
        if let Some(err) = &e.error {
            o.insert("errorInfo".into(), error_json(err));
            o.insert(
                "statuses".into(),
                json!([{
                    "code": err.code,
                    "displayStatus": "Failed",
                    "level": "Error",
                    "message": err.message,
                    "time": arm_time(e.modified_at),
                }]),
            );
        }
    }
    let mut body = json!({
        "id": e.id(),
        "name": e.name,
        "type": TYPE,
        "systemData": {
            "createdBy": "emulator",
            "createdByType": "Application",
            "createdAt": e.created_at.to_string(),
            "lastModifiedBy": "emulator",
            "lastModifiedByType": "Application",
            "lastModifiedAt": e.modified_at.to_string(),
        },
        "properties": props,
    });
    if let (Some(t), Some(o)) = (&e.identity_type, body.as_object_mut()) {
        let identity = if e.cluster.is_aks() {
            // The principal is under `aksAssignedIdentity` (above).
            json!({"type": t})
        } else {
            json!({"type": t, "principalId": e.principal_id, "tenantId": "00000000-0000-0000-0000-0000000000aa"})
        };
        o.insert("identity".into(), identity);
    }
    body
}

fn get(inner: &Inner, c: &ClusterRef, name: &str) -> Result<Response, ArmError> {
    let e = inner
        .ext
        .extensions
        .get(&ext_key(c, name))
        .ok_or_else(|| ext_not_found(c, name))?;
    Ok((StatusCode::OK, axum::Json(extension_json(e))).into_response())
}

fn list(inner: &Inner, _req: &Req, c: &ClusterRef) -> Result<Response, ArmError> {
    let key = c.key();
    let value: Vec<Value> = inner
        .ext
        .extensions
        .values()
        .filter(|e| e.cluster.key() == key)
        .map(extension_json)
        .collect();
    Ok((StatusCode::OK, axum::Json(json!({ "value": value }))).into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ExtensionIn {
    identity: Option<IdentityIn>,
    properties: Option<PropsIn>,
}

#[derive(Deserialize, Default)]
struct IdentityIn {
    #[serde(rename = "type")]
    identity_type: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PropsIn {
    extension_type: Option<String>,
    auto_upgrade_mode: Option<String>,
    auto_upgrade_minor_version: Option<bool>,
    release_train: Option<String>,
    version: Option<String>,
    scope: Option<Value>,
    configuration_settings: Option<BTreeMap<String, Option<String>>>,
    configuration_protected_settings: Option<BTreeMap<String, String>>,
}

fn parse<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ArmError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        // emulator wording (the JSON error never quotes the body's values)
        ArmError::bad_request(format!(
            "The request content was invalid and could not be deserialized: '{}'.",
            e.classify_str()
        ))
    })
}

trait Classify {
    fn classify_str(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "a field has the wrong type",
            serde_json::error::Category::Eof => "unexpected end of input",
        }
    }
}

fn check_modes(
    auto: bool,
    version: &Option<String>,
    mode: &Option<String>,
) -> Result<(), ArmError> {
    if auto && version.is_some() {
        // emulator wording (the CLI's own check reads "To pin to specific version,
        // auto-upgrade-minor-version must be set to 'false'.")
        return Err(ArmError::bad_request(
            "To pin to a specific version, autoUpgradeMinorVersion must be set to 'false'.",
        ));
    }
    if let Some(m) = mode
        && !["none", "patch", "compatible"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(m))
    {
        // emulator wording
        return Err(ArmError::bad_request(format!(
            "Invalid autoUpgradeMode '{m}'. Allowed values: none, patch, compatible."
        )));
    }
    Ok(())
}

fn put(inner: &mut Inner, req: &Req, c: &ClusterRef, name: &str) -> Result<Response, ArmError> {
    let body: ExtensionIn = parse(req.body)?;
    let props = body.properties.unwrap_or_default();
    let key = ext_key(c, name);
    let traits = inner.ext.traits(&c.key());
    if c.is_aks()
        && traits
            .identity
            .as_deref()
            .is_some_and(|i| i.eq_ignore_ascii_case("ServicePrincipal"))
    {
        // emulator wording, after the AKS docs: "cluster extensions don't work with service
        // principal-based clusters".
        return Err(ArmError::bad_request(format!(
            "Cluster extensions don't work with service principal-based clusters. Cluster '{}' uses a service principal; update it to use a managed identity.",
            c.name
        )));
    }
    let auto = props.auto_upgrade_minor_version.unwrap_or(true);
    check_modes(auto, &props.version, &props.auto_upgrade_mode)?;
    let settings: BTreeMap<String, String> = props
        .configuration_settings
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let protected = props.configuration_protected_settings.unwrap_or_default();
    let now = jiff::Timestamp::now();
    let existing = inner.ext.extensions.get(&key).cloned();
    if let Some(old) = &existing {
        if old.operation.is_some() {
            return Err(busy(old));
        }
        if let Some(t) = &props.extension_type
            && !t.eq_ignore_ascii_case(&old.extension_type)
        {
            // emulator wording
            return Err(ArmError::bad_request(format!(
                "The extensionType of extension '{name}' cannot be changed (is '{}').",
                old.extension_type
            )));
        }
    }
    let Some(extension_type) = props
        .extension_type
        .clone()
        .or_else(|| existing.as_ref().map(|e| e.extension_type.clone()))
    else {
        // emulator wording
        return Err(ArmError::bad_request(
            "The property 'properties.extensionType' is required.",
        ));
    };
    let record = ExtensionRecord {
        cluster: c.clone(),
        name: existing
            .as_ref()
            .map(|e| e.name.clone())
            .unwrap_or_else(|| name.to_string()),
        extension_type,
        auto_upgrade_minor_version: auto,
        auto_upgrade_mode: props.auto_upgrade_mode.map(|m| m.to_ascii_lowercase()),
        release_train: if auto {
            Some(props.release_train.unwrap_or_else(|| "Stable".into()))
        } else {
            props.release_train
        },
        version: props.version,
        scope: props
            .scope
            .unwrap_or_else(|| json!({"cluster": {"releaseNamespace": "default"}})),
        settings,
        protected,
        identity_type: body.identity.and_then(|i| i.identity_type),
        principal_id: existing
            .as_ref()
            .map(|e| e.principal_id.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        provisioning_state: "Creating".into(),
        current_version: existing.as_ref().and_then(|e| e.current_version.clone()),
        error: None,
        operation: None,
        created_at: existing.as_ref().map(|e| e.created_at).unwrap_or(now),
        modified_at: now,
    };
    if let Some(old) = &existing
        && same_config(old, &record)
        && old.provisioning_state == "Succeeded"
    {
        let mut resp = (StatusCode::OK, axum::Json(extension_json(old))).into_response();
        ext_headers(&mut resp, req, old, None);
        return Ok(resp);
    }
    let kind = if existing.is_some() {
        ExtOp::Update
    } else {
        ExtOp::Install
    };
    let mut record = record;
    if existing.is_some() {
        record.provisioning_state = "Updating".into();
    }
    inner.ext.extensions.insert(key.clone(), record);
    let op = start(inner, req, c, &key, kind);
    let e = &inner.ext.extensions[&key];
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut resp = (status, axum::Json(extension_json(e))).into_response();
    ext_headers(&mut resp, req, e, Some(&op));
    Ok(resp)
}

fn same_config(a: &ExtensionRecord, b: &ExtensionRecord) -> bool {
    a.settings == b.settings
        && a.protected == b.protected
        && a.auto_upgrade_minor_version == b.auto_upgrade_minor_version
        && a.auto_upgrade_mode == b.auto_upgrade_mode
        && a.release_train.as_deref().map(str::to_ascii_lowercase)
            == b.release_train.as_deref().map(str::to_ascii_lowercase)
        && a.version == b.version
}

fn busy(e: &ExtensionRecord) -> ArmError {
    // emulator wording
    ArmError::new(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "Extension '{}' has an operation in progress (provisioningState {}); retry when it has finished.",
            e.name, e.provisioning_state
        ),
    )
}

fn patch(inner: &mut Inner, req: &Req, c: &ClusterRef, name: &str) -> Result<Response, ArmError> {
    let key = ext_key(c, name);
    let Some(old) = inner.ext.extensions.get(&key).cloned() else {
        return Err(ext_not_found(c, name));
    };
    if old.operation.is_some() {
        return Err(busy(&old));
    }
    let body: ExtensionIn = parse(req.body)?;
    let p = body.properties.unwrap_or_default();
    let mut new = old.clone();
    if let Some(a) = p.auto_upgrade_minor_version {
        new.auto_upgrade_minor_version = a;
        if !a && p.release_train.is_none() {
            new.release_train = None;
        }
    }
    if let Some(m) = p.auto_upgrade_mode {
        new.auto_upgrade_mode = Some(m.to_ascii_lowercase());
    }
    if let Some(t) = p.release_train {
        new.release_train = Some(t);
    }
    if p.version.is_some() {
        new.version = p.version;
    } else if new.auto_upgrade_minor_version {
        new.version = None;
    }
    check_modes(
        new.auto_upgrade_minor_version,
        &new.version,
        &new.auto_upgrade_mode,
    )?;
    // Settings merge (a null value removes the key); protected settings are replaced.
    for (k, v) in p.configuration_settings.unwrap_or_default() {
        match v {
            Some(v) => {
                new.settings.insert(k, v);
            }
            None => {
                new.settings.remove(&k);
            }
        }
    }
    if let Some(prot) = p.configuration_protected_settings {
        new.protected = prot;
    }
    if same_config(&old, &new) && old.provisioning_state == "Succeeded" {
        // "No update is done to extension so return OK."
        return Ok((StatusCode::OK, axum::Json(extension_json(&old))).into_response());
    }
    new.provisioning_state = "Updating".into();
    new.modified_at = jiff::Timestamp::now();
    inner.ext.extensions.insert(key.clone(), new);
    let op = start(inner, req, c, &key, ExtOp::Update);
    let e = &inner.ext.extensions[&key];
    let mut resp = (StatusCode::ACCEPTED, axum::Json(extension_json(e))).into_response();
    ext_headers(&mut resp, req, e, Some(&op));
    Ok(resp)
}

fn delete(inner: &mut Inner, req: &Req, c: &ClusterRef, name: &str) -> Result<Response, ArmError> {
    let key = ext_key(c, name);
    let Some(old) = inner.ext.extensions.get(&key).cloned() else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let force = req
        .q("forceDelete")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if force {
        // "force delete does synchronous delete and returns 200"
        if let Some(op) = &old.operation
            && let Some(o) = inner.operations.get_mut(op)
        {
            o.status = "Canceled".into();
            o.end_time = Some(jiff::Timestamp::now());
        }
        remove(inner, &key);
        return Ok(StatusCode::OK.into_response());
    }
    if old.operation.is_some() && old.provisioning_state == "Deleting" {
        let mut resp = StatusCode::ACCEPTED.into_response();
        ext_headers(&mut resp, req, &old, old.operation.as_deref());
        return Ok(resp);
    }
    if old.operation.is_some() {
        return Err(busy(&old));
    }
    if let Some(e) = inner.ext.extensions.get_mut(&key) {
        e.provisioning_state = "Deleting".into();
        e.modified_at = jiff::Timestamp::now();
    }
    let op = start(inner, req, c, &key, ExtOp::Delete);
    let mut resp = StatusCode::ACCEPTED.into_response();
    let e = &inner.ext.extensions[&key];
    ext_headers(&mut resp, req, e, Some(&op));
    // The example's DELETE 202 carries only Azure-AsyncOperation.
    resp.headers_mut().remove("operation-location");
    resp.headers_mut().remove("x-ms-async-operation-timeout");
    Ok(resp)
}

/// Removes an extension and its Helm objects; remembers when (name reuse).
fn remove(inner: &mut Inner, key: &str) {
    if let Some(e) = inner.ext.extensions.remove(key) {
        inner.ext.deleted_at.insert(key.to_string(), Instant::now());
        if e.is_azureml() {
            cluster_objects::uninstall(inner, &e.cluster.key());
        }
    }
}

/// What an extension operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtOp {
    /// PUT of a new extension.
    Install,
    /// PATCH, or PUT of an existing one.
    Update,
    /// DELETE.
    Delete,
}

impl ExtOp {
    fn kind(self) -> &'static str {
        match self {
            Self::Install => "ExtensionCreate",
            Self::Update => "ExtensionUpdate",
            Self::Delete => "ExtensionDelete",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Self::Install => "Create",
            Self::Update => "Update",
            Self::Delete => "Delete",
        }
    }
}

fn start(inner: &mut Inner, req: &Req, c: &ClusterRef, key: &str, op: ExtOp) -> String {
    let forced = inner.take_lro_fault(req);
    let target = inner.ext.extensions[key].id();
    let location = inner
        .clusters
        .get(&c.key())
        .map(|cl| cl.location.clone())
        .unwrap_or_else(|| "eastus".into());
    let slow = inner.ext.traits(&c.key()).slow_install_seconds;
    let id = inner.start_op(
        NewOp {
            kind: op.kind(),
            provider: Provider::KubernetesConfiguration,
            subscription: c.sub.clone(),
            location,
            target,
            effect: Effect::Extension {
                key: key.to_string(),
                op,
            },
            forced_error: forced,
            api_version: req.api_version.to_string(),
        },
        req.now,
    );
    if let (Some(secs), Some(o)) = (slow, inner.operations.get_mut(&id))
        && op != ExtOp::Delete
    {
        o.due = req.now + Duration::from_secs_f64(secs.max(0.0));
    }
    if let Some(e) = inner.ext.extensions.get_mut(key) {
        e.operation = Some(id.clone());
    }
    id
}

/// `Azure-AsyncOperation` (absolute), `Operation-Location` (relative),
/// `x-ms-async-operation-timeout: PT48H` and `Retry-After`.
fn ext_headers(resp: &mut Response, req: &Req, e: &ExtensionRecord, op: Option<&str>) {
    let h = resp.headers_mut();
    let op_id = op.unwrap_or("{operationId}");
    let rel = format!("{}/operations/{op_id}", e.id());
    if let Ok(v) = HeaderValue::from_str(&rel) {
        h.insert("operation-location", v);
    }
    h.insert(
        "x-ms-async-operation-timeout",
        HeaderValue::from_static("PT48H"),
    );
    if op.is_some() {
        let abs = format!("{}{rel}?api-version={}", req.base, req.api_version);
        if let Ok(v) = HeaderValue::from_str(&abs) {
            h.insert("azure-asyncoperation", v);
        }
        add_retry_after(resp, Duration::from_secs(1));
    }
}

fn operation_status(
    inner: &Inner,
    c: &ClusterRef,
    name: &str,
    id: &str,
    now: Instant,
) -> Result<Response, ArmError> {
    let target = format!("{}/providers/{NAMESPACE}/extensions/{name}", c.id());
    let op = inner
        .operations
        .get(id)
        .filter(|o| o.target.eq_ignore_ascii_case(&target))
        .ok_or_else(|| {
            // emulator wording
            ArmError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("Operation {id} was not found."),
            )
        })?;
    let status = op.status.as_str();
    let body = json!({
        "id": format!("{target}/operations/{id}"),
        "name": id,
        "status": status,
        "properties": {},
        "error": op.error.as_ref().map(error_json),
    });
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    if op.status == "InProgress" {
        add_retry_after(&mut resp, op.remaining(now));
    }
    Ok(resp)
}

/// The message of a failed extension operation, in Azure's shape (Azure/AML-Kubernetes#293,
/// hashicorp/terraform-provider-azurerm#24547).
pub fn operation_failed(verb: &str, name: &str, inner_error: &str) -> ErrorDetail {
    ErrorDetail::new(
        "ExtensionOperationFailed",
        format!(
            "The extension operation failed with the following error:  Error: {{Helm installation failed : Unable to create/update Kubernetes resources for the extension : Recommendation Please check that there are no policies blocking the resource creation/update for the extension : InnerError [release {name} failed, and has been uninstalled due to atomic being set: {inner_error}]}} occurred while doing the operation : [{verb}] on the config, For general troubleshooting visit: https://aka.ms/k8s-extensions-TSG, For more application specific troubleshooting visit: Troubleshooting: https://aka.ms/arcmltsg."
        ),
    )
}

impl Inner {
    /// Completes an extension operation (from [`Inner::tick`]).
    pub fn finish_extension(&mut self, key: &str, op: ExtOp) -> Result<(), ErrorDetail> {
        let Some(e) = self.ext.extensions.get(key).cloned() else {
            return Ok(());
        };
        if op == ExtOp::Delete {
            remove(self, key);
            return Ok(());
        }
        let outcome = self.install_outcome(&e, op);
        let now = jiff::Timestamp::now();
        match outcome {
            Ok(()) => {
                if let Some(x) = self.ext.extensions.get_mut(key) {
                    x.provisioning_state = "Succeeded".into();
                    x.current_version =
                        Some(x.version.clone().unwrap_or_else(|| EMULATED_VERSION.into()));
                    x.error = None;
                    x.operation = None;
                    x.modified_at = now;
                }
                Ok(())
            }
            Err(err) => {
                self.fail_extension(key, err.clone());
                Err(err)
            }
        }
    }

    /// Marks an extension Failed with this error.
    pub fn fail_extension(&mut self, key: &str, err: ErrorDetail) {
        if let Some(x) = self.ext.extensions.get_mut(key) {
            x.provisioning_state = "Failed".into();
            x.error = Some(err);
            x.operation = None;
            x.modified_at = jiff::Timestamp::now();
        }
    }

    /// The agent's view: Helm install/upgrade, with the Azure ML chart's health check.
    fn install_outcome(&mut self, e: &ExtensionRecord, op: ExtOp) -> Result<(), ErrorDetail> {
        let key = ext_key(&e.cluster, &e.name);
        let reuse = self.ext.reuse_window.unwrap_or(DEFAULT_REUSE_WINDOW);
        if op == ExtOp::Install
            && let Some(at) = self.ext.deleted_at.get(&key)
            && at.elapsed() < reuse
        {
            return Err(operation_failed(
                op.verb(),
                &e.name,
                "cannot re-use a name that is still in use",
            ));
        }
        if !e.is_azureml() || !e.cluster.is_aks() {
            return Ok(());
        }
        let cluster_key = e.cluster.key();
        let traits = self.ext.traits(&cluster_key);
        if traits.install_times_out {
            return Err(operation_failed(
                op.verb(),
                &e.name,
                "timed out waiting for the condition",
            ));
        }
        match cluster_objects::health_check(self, e) {
            Ok(()) => {
                cluster_objects::install(self, e);
                Ok(())
            }
            Err(failures) => {
                cluster_objects::record_failed_health_check(self, &cluster_key, &failures, op);
                Err(health_check_error(op, &e.name, &failures))
            }
        }
    }
}

/// The failed operation's error as Azure words it. A failed *install* says only "failed
/// pre-install: pod healthcheck failed" (the report is in ConfigMap
/// `azureml/arcml-healthcheck`, nowhere in ARM: Azure/AML-Kubernetes troubleshooting, and
/// the public reports quote no code); a failed *upgrade* appends the failing checks (the
/// "Helm Upgrade Failed … Status: Failed Name: inferencev1 ErrorCode: E45005 …" reports).
fn health_check_error(op: ExtOp, name: &str, failures: &[HealthFailure]) -> ErrorDetail {
    if op == ExtOp::Install {
        return operation_failed(
            op.verb(),
            name,
            "failed pre-install: pod healthcheck failed",
        );
    }
    let mut err = operation_failed(
        op.verb(),
        name,
        "failed pre-upgrade hooks: pod healthcheck failed",
    );
    for f in failures {
        err.message.push_str(&format!(
            " Status: Failed Name: {} ErrorCode: {} ErrorMessage: {}",
            f.check, f.code, f.message
        ));
        err.details
            .push(ErrorDetail::new(f.code.to_string(), f.message.clone()));
    }
    err
}
