//! Azure ML computes of type `Kubernetes`: attach (PUT), GET, list entries, detach, and the
//! refused `listKeys`. Same paths, api-versions and LRO protocol as AKS computes
//! ([`super::compute`]); `arm.rs` routes a request here when the body says
//! `computeType: Kubernetes` or the name belongs to a Kubernetes compute.
//!
//! Behaviour (<https://learn.microsoft.com/azure/machine-learning/how-to-attach-kubernetes-to-workspace>, and the reports cited per item):
//! - attach is accepted only when the cluster runs the Azure ML extension in `Succeeded`
//!   (else 400, emulator wording after the docs' "extension not installed");
//! - a workspace whose identity lacks roles on the cluster gets the real 400
//!   "AKS role check failed for user assigned identity. Please check the role assignment."
//!   (Azure/AML-Kubernetes#279);
//! - a cluster with local accounts disabled: the PUT is accepted and the compute turns
//!   `Failed` with "An internal server error occurred." (Azure ML's backend calls
//!   `listClusterAdminCredential`);
//! - several computes may attach one cluster, to one or several workspaces; the namespace is
//!   not checked (Azure neither creates nor validates it);
//! - `instanceTypes` is a snapshot of the cluster's InstanceType objects taken when the
//!   attach completes (plus the implicit `defaultinstancetype`, and entries the PUT sent,
//!   which Azure's example echoes);
//! - a re-PUT that changes `namespace` or `resourceId` is refused (emulator wording; Microsoft's
//!   own CI detaches first, "k8s compute doesn't support update"); identity, description and
//!   tags update in place;
//! - `listKeys` is refused (there is no Kubernetes variant of `ComputeSecrets`);
//! - detach leaves the cluster and its extension untouched.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::arm::Req;
use super::cluster_objects::instance_type_snapshot;
use super::compute::{ComputePath, workspace};
use super::errors::{ArmError, ErrorDetail, error_json, msg};
use super::lro::{Effect, NewOp, Provider, add_lro_headers};
use super::state::{Inner, arm_time, cluster_key, compute_key, parse_cluster_id, ws_key};

const TYPE: &str = "Microsoft.MachineLearningServices/workspaces/computes";

/// A Kubernetes compute.
#[derive(Debug, Clone)]
pub struct KubeCompute {
    /// Workspace key.
    pub workspace: String,
    /// Name as sent.
    pub name: String,
    /// `location`.
    pub location: Option<String>,
    /// `properties.computeLocation`.
    pub compute_location: Option<String>,
    /// `properties.description`.
    pub description: Option<String>,
    /// `resourceId` as sent.
    pub resource_id: String,
    /// Key of the cluster.
    pub cluster: String,
    /// `properties.properties.namespace` (Azure's default `default`).
    pub namespace: String,
    /// `defaultInstanceType` as sent.
    pub default_instance_type: Option<String>,
    /// `instanceTypes`: as sent until the attach completes, then the cluster's snapshot.
    pub instance_types: Value,
    /// `identity` as sent (principal ids filled in).
    pub identity: Option<Value>,
    /// `tags`.
    pub tags: Option<Value>,
    /// Creating / Updating / Deleting / Succeeded / Failed.
    pub provisioning_state: String,
    /// `provisioningErrors`.
    pub errors: Vec<ErrorDetail>,
    /// The extension's release train, once attached.
    pub release_train: Option<String>,
    /// Created.
    pub created_on: jiff::Timestamp,
    /// Modified.
    pub modified_on: jiff::Timestamp,
    /// Operation in flight.
    pub operation: Option<String>,
}

/// What a Kubernetes compute operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KcOp {
    /// Attach (first PUT).
    Attach,
    /// In-place update (identity, description, tags).
    Update,
    /// Detach.
    Detach,
}

/// True when the workspace has a Kubernetes compute of this name.
pub fn owns(inner: &Inner, p: &ComputePath) -> bool {
    inner
        .ext
        .computes
        .contains_key(&compute_key(&ws_key(p.sub, p.rg, p.ws), p.name))
}

/// True when a PUT body declares `computeType: Kubernetes`.
pub fn is_kubernetes_body(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/properties/computeType")
                .and_then(Value::as_str)
                .map(|t| t.eq_ignore_ascii_case("Kubernetes"))
        })
        .unwrap_or(false)
}

/// The ARM body of a Kubernetes compute (the connection strings are always null).
pub fn compute_json(inner: &Inner, c: &KubeCompute) -> Option<Value> {
    let ws = inner.workspaces.get(&c.workspace)?;
    let errors = if c.errors.is_empty() {
        Value::Null
    } else {
        Value::Array(
            c.errors
                .iter()
                .map(|e| json!({"error": error_json(e)}))
                .collect(),
        )
    };
    let mut inner_props = json!({
        "relayConnectionString": null,
        "serviceBusConnectionString": null,
        "extensionPrincipalId": null,
        "namespace": c.namespace,
        "instanceTypes": c.instance_types,
    });
    if let Some(o) = inner_props.as_object_mut() {
        if let Some(t) = &c.release_train {
            o.insert("extensionInstanceReleaseTrain".into(), json!(t));
        }
        if let Some(d) = &c.default_instance_type {
            o.insert("defaultInstanceType".into(), json!(d));
        }
    }
    let mut props = json!({
        "computeType": "Kubernetes",
        "description": c.description,
        "resourceId": c.resource_id,
        "provisioningState": c.provisioning_state,
        "provisioningErrors": errors,
        "isAttachedCompute": true,
        "createdOn": arm_time(c.created_on),
        "modifiedOn": arm_time(c.modified_on),
        "disableLocalAuth": false,
        "properties": inner_props,
    });
    if let (Some(o), Some(l)) = (props.as_object_mut(), &c.compute_location) {
        o.insert("computeLocation".into(), json!(l));
    }
    let mut body = json!({
        "id": format!("{}/computes/{}", ws.id(), c.name),
        "name": c.name,
        "type": TYPE,
        "location": c.location.clone().unwrap_or_else(|| ws.location.clone()),
        "tags": c.tags,
        "properties": props,
    });
    if let (Some(o), Some(i)) = (body.as_object_mut(), &c.identity) {
        o.insert("identity".into(), i.clone());
    }
    Some(body)
}

/// The Kubernetes computes of a workspace, as ARM bodies (for the shared list).
pub fn list_json(inner: &Inner, wsk: &str) -> Vec<Value> {
    inner
        .ext
        .computes
        .values()
        .filter(|c| c.workspace == wsk)
        .filter_map(|c| compute_json(inner, c))
        .collect()
}

fn not_found(p: &ComputePath) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        msg::not_found(TYPE, &format!("{}/{}", p.ws, p.name), p.rg),
    )
}

/// GET.
pub fn get(inner: &Inner, p: &ComputePath) -> Result<Response, ArmError> {
    workspace(inner, p.sub, p.rg, p.ws)?;
    let c = inner
        .ext
        .computes
        .get(&compute_key(&ws_key(p.sub, p.rg, p.ws), p.name))
        .ok_or_else(|| not_found(p))?;
    let body = compute_json(inner, c).ok_or_else(|| not_found(p))?;
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ResourceIn {
    location: Option<String>,
    identity: Option<Value>,
    tags: Option<Value>,
    properties: Option<ComputeIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ComputeIn {
    compute_location: Option<String>,
    description: Option<String>,
    resource_id: Option<String>,
    properties: Option<KubernetesIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct KubernetesIn {
    namespace: Option<String>,
    default_instance_type: Option<String>,
    instance_types: Option<Value>,
}

fn invalid(detail: &str) -> ArmError {
    // emulator wording
    ArmError::bad_request(format!("The request content was invalid: {detail}"))
}

/// Fills read-only principal ids of an identity the way Azure answers.
fn identity_out(identity: Option<Value>) -> Option<Value> {
    let mut v = identity?;
    let t = v
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("None")
        .to_string();
    if let Some(o) = v.as_object_mut() {
        if t.contains("SystemAssigned") {
            o.insert(
                "principalId".into(),
                json!(uuid::Uuid::new_v4().to_string()),
            );
            o.insert(
                "tenantId".into(),
                json!("00000000-0000-0000-0000-0000000000aa"),
            );
        }
        if let Some(Value::Object(ids)) = o.get_mut("userAssignedIdentities") {
            for (_, entry) in ids.iter_mut() {
                *entry = json!({
                    "principalId": uuid::Uuid::new_v4().to_string(),
                    "clientId": uuid::Uuid::new_v4().to_string(),
                });
            }
        }
    }
    Some(v)
}

/// PUT with `computeType: Kubernetes`.
pub fn put(inner: &mut Inner, req: &Req, p: &ComputePath) -> Result<Response, ArmError> {
    let ws = workspace(inner, p.sub, p.rg, p.ws)?.clone();
    let wsk = ws_key(p.sub, p.rg, p.ws);
    let key = compute_key(&wsk, p.name);
    if inner.computes.contains_key(&key) {
        return Err(ArmError::bad_request(msg::compute_exists(p.name)));
    }
    let r: ResourceIn = serde_json::from_slice(req.body).map_err(|e| invalid(&e.to_string()))?;
    let props = r
        .properties
        .ok_or_else(|| invalid("'properties' is required"))?;
    let resource_id = props
        .resource_id
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("'properties.resourceId' is required for a Kubernetes compute"))?;
    let Some((s, rg, name)) = parse_cluster_id(&resource_id) else {
        // emulator wording: Arc clusters are out of the emulator's scope.
        return Err(ArmError::bad_request(format!(
            "resourceId '{resource_id}' is not an AKS managed cluster id; the emulator attaches Microsoft.ContainerService/managedClusters only."
        )));
    };
    let ck = cluster_key(&s, &rg, &name);
    if !inner.clusters.contains_key(&ck) {
        return Err(ArmError::bad_request(msg::not_found(
            "Microsoft.ContainerService/managedClusters",
            &name,
            &rg,
        )));
    }
    let kube = props.properties.unwrap_or_default();
    let namespace = kube.namespace.clone().unwrap_or_else(|| "default".into());
    let now = jiff::Timestamp::now();
    if let Some(old) = inner.ext.computes.get(&key).cloned() {
        if old.operation.is_some() {
            // emulator wording
            return Err(ArmError::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Compute {} has an operation in progress (provisioningState {}); retry when it has finished.",
                    old.name, old.provisioning_state
                ),
            ));
        }
        if old.cluster != ck || !old.namespace.eq_ignore_ascii_case(&namespace) {
            // emulator wording (no update of an attached Kubernetes compute's target)
            return Err(ArmError::bad_request(format!(
                "Compute {} is attached to cluster {} in namespace '{}'; the resourceId and namespace of a Kubernetes compute cannot be updated. Detach it and attach again.",
                old.name, old.resource_id, old.namespace
            )));
        }
        let mut new = old.clone();
        new.description = props.description.or(old.description);
        if r.identity.is_some() {
            new.identity = identity_out(r.identity);
        }
        if r.tags.is_some() {
            new.tags = r.tags;
        }
        new.provisioning_state = "Updating".into();
        new.modified_on = now;
        inner.ext.computes.insert(key.clone(), new);
        return Ok(start(inner, req, &ws, &key, KcOp::Update, StatusCode::OK));
    }
    if inner.ext.role_gaps.contains(&(wsk.clone(), ck.clone())) {
        // as reported in Azure/AML-Kubernetes#279
        return Err(ArmError::bad_request(
            "AKS role check failed for user assigned identity. Please check the role assignment.",
        ));
    }
    let ext = inner
        .ext
        .azureml_of(&ck)
        .filter(|e| e.provisioning_state == "Succeeded");
    let Some(release_train) = ext.map(|e| {
        e.release_train
            .clone()
            .unwrap_or_else(|| "stable".into())
            .to_ascii_lowercase()
    }) else {
        // emulator wording, after the docs ("attach fails with extension not installed")
        return Err(ArmError::bad_request(format!(
            "The Azure Machine Learning extension is not installed on cluster '{resource_id}'. Install the extension of type Microsoft.AzureML.Kubernetes (provisioningState Succeeded) before attaching the cluster."
        )));
    };
    let compute = KubeCompute {
        workspace: wsk,
        name: p.name.to_string(),
        location: r.location,
        compute_location: props.compute_location,
        description: props.description,
        resource_id,
        cluster: ck,
        namespace,
        default_instance_type: kube.default_instance_type,
        instance_types: kube.instance_types.unwrap_or_else(|| json!({})),
        identity: identity_out(r.identity),
        tags: r.tags,
        provisioning_state: "Creating".into(),
        errors: Vec::new(),
        release_train: Some(release_train),
        created_on: now,
        modified_on: now,
        operation: None,
    };
    inner.ext.computes.insert(key.clone(), compute);
    Ok(start(
        inner,
        req,
        &ws,
        &key,
        KcOp::Attach,
        StatusCode::CREATED,
    ))
}

fn start(
    inner: &mut Inner,
    req: &Req,
    ws: &super::state::Workspace,
    key: &str,
    op: KcOp,
    status: StatusCode,
) -> Response {
    let forced = inner.take_lro_fault(req);
    let name = inner.ext.computes[key].name.clone();
    let op_id = inner.start_op(
        NewOp {
            kind: match op {
                KcOp::Attach => "Attach",
                KcOp::Update => "Update",
                KcOp::Detach => "Detach",
            },
            provider: Provider::Mls,
            subscription: ws.subscription.clone(),
            location: ws.location.clone(),
            target: format!("{}/computes/{name}", ws.id()),
            effect: Effect::KubernetesCompute {
                key: key.to_string(),
                op,
            },
            forced_error: forced,
            api_version: req.api_version.to_string(),
        },
        req.now,
    );
    if let Some(c) = inner.ext.computes.get_mut(key) {
        c.operation = Some(op_id.clone());
    }
    let body = inner
        .ext
        .computes
        .get(key)
        .and_then(|c| compute_json(inner, c));
    let mut resp = match (op, body) {
        (KcOp::Detach, _) | (_, None) => StatusCode::ACCEPTED.into_response(),
        (_, Some(b)) => (status, axum::Json(b)).into_response(),
    };
    if let Some(o) = inner.operations.get(&op_id) {
        add_lro_headers(&mut resp, o, req.base, req.now);
    }
    resp
}

/// DELETE (`Detach`; `Delete` is refused for an attached cluster).
pub fn delete(inner: &mut Inner, req: &Req, p: &ComputePath) -> Result<Response, ArmError> {
    let action = req.q("underlyingResourceAction").ok_or_else(|| {
        // emulator wording (as for AKS computes)
        ArmError::bad_request("The query parameter 'underlyingResourceAction' is required; allowed values: Delete, Detach.")
    })?;
    let ws = workspace(inner, p.sub, p.rg, p.ws)?.clone();
    let key = compute_key(&ws_key(p.sub, p.rg, p.ws), p.name);
    let Some(c) = inner.ext.computes.get(&key).cloned() else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    if !action.eq_ignore_ascii_case("Detach") {
        // emulator wording, as for attached AKS computes
        return Err(ArmError::bad_request(format!(
            "Compute {} is an attached compute; underlyingResourceAction '{action}' would delete a cluster the workspace does not own. Use 'Detach'.",
            c.name
        )));
    }
    if c.operation.is_some() {
        // emulator wording
        return Err(ArmError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Compute {} has an operation in progress (provisioningState {}); retry when it has finished.",
                c.name, c.provisioning_state
            ),
        ));
    }
    if let Some(c) = inner.ext.computes.get_mut(&key) {
        c.provisioning_state = "Deleting".into();
        c.modified_on = jiff::Timestamp::now();
    }
    Ok(start(
        inner,
        req,
        &ws,
        &key,
        KcOp::Detach,
        StatusCode::ACCEPTED,
    ))
}

/// POST listKeys: refused (no Kubernetes variant of `ComputeSecrets`; emulator wording).
pub fn list_keys(inner: &Inner, p: &ComputePath) -> Result<Response, ArmError> {
    workspace(inner, p.sub, p.rg, p.ws)?;
    Err(ArmError::bad_request(format!(
        "Compute {} is of type Kubernetes, which has no keys to list.",
        p.name
    )))
}

impl Inner {
    /// Completes a Kubernetes compute operation (from [`Inner::tick`]).
    pub fn finish_kubernetes_compute(&mut self, key: &str, op: KcOp) -> Result<(), ErrorDetail> {
        let Some(c) = self.ext.computes.get(key).cloned() else {
            return Ok(());
        };
        if op == KcOp::Detach {
            self.ext.computes.remove(key);
            return Ok(());
        }
        if op == KcOp::Attach {
            let traits = self.ext.traits(&c.cluster);
            let ext = self.ext.azureml_of(&c.cluster).cloned();
            let failure = if !self.clusters.contains_key(&c.cluster) {
                Some(ErrorDetail::new("InternalServerError", msg::INTERNAL))
            } else if traits.disable_local_accounts {
                // Azure ML's backend needs the cluster's admin credential (docs: local
                // accounts must stay enabled); the wording users see is the generic one.
                Some(ErrorDetail::new("InternalServerError", msg::INTERNAL))
            } else if ext
                .as_ref()
                .is_none_or(|e| e.provisioning_state != "Succeeded")
            {
                Some(ErrorDetail::new("InternalServerError", msg::INTERNAL))
            } else {
                None
            };
            if let Some(err) = failure {
                self.fail_kubernetes_compute(key, err.clone());
                return Err(err);
            }
            // The cluster's objects win; entries the PUT sent are kept beside them (Azure's
            // GET example echoes the sent `instanceTypes`; what the RP does with them is not
            // documented).
            let mut snapshot = instance_type_snapshot(self, &c.cluster);
            if let (Some(snap), Some(sent)) =
                (snapshot.as_object_mut(), c.instance_types.as_object())
            {
                for (name, v) in sent {
                    snap.entry(name.clone()).or_insert_with(|| v.clone());
                }
            }
            if let Some(x) = self.ext.computes.get_mut(key) {
                x.instance_types = snapshot;
                x.release_train = Some(
                    ext.and_then(|e| e.release_train)
                        .unwrap_or_else(|| "stable".into())
                        .to_ascii_lowercase(),
                );
            }
        }
        if let Some(x) = self.ext.computes.get_mut(key) {
            x.provisioning_state = "Succeeded".into();
            x.errors.clear();
            x.operation = None;
            x.modified_on = jiff::Timestamp::now();
        }
        Ok(())
    }

    /// Marks a Kubernetes compute Failed with this error.
    pub fn fail_kubernetes_compute(&mut self, key: &str, err: ErrorDetail) {
        if let Some(x) = self.ext.computes.get_mut(key) {
            x.provisioning_state = "Failed".into();
            x.errors = vec![err];
            x.operation = None;
            x.modified_on = jiff::Timestamp::now();
        }
    }
}
