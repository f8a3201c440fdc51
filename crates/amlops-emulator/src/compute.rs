//! Azure ML computes of type AKS: GET / PUT (create, attach, in-place update) / DELETE
//! (Delete or Detach) / list / listKeys, and what happens when their operations finish.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::arm::Req;
use super::errors::{ArmError, ErrorDetail, compute_not_succeeded, msg};
use super::lro::{Effect, NewOp, Provider, add_lro_headers};
use super::state::{
    Compute, Inner, SslSettings, TlsMaterial, Workspace, arm_time, cluster_key, compute_key,
    parse_cluster_id, rand_hex, ws_key,
};

const TYPE: &str = "Microsoft.MachineLearningServices/workspaces/computes";
const DEFAULT_AGENT_COUNT: i64 = 3;
/// Nodes of a created DevTest cluster when the body names none: "DEV_TEST … will default the
/// AKS cluster to have 1 node" (the SDK v1's `AksCompute.ClusterPurpose` documentation).
const DEV_TEST_AGENT_COUNT: i64 = 1;
const DEFAULT_VM_SIZE: &str = "Standard_D3_v2";
/// Name of the agent pool of clusters Azure ML creates.
pub const CREATED_POOL: &str = "agentpool";

/// Path parameters of a compute.
pub struct ComputePath<'a> {
    /// Subscription.
    pub sub: &'a str,
    /// Resource group.
    pub rg: &'a str,
    /// Workspace.
    pub ws: &'a str,
    /// Compute name.
    pub name: &'a str,
}

/// Looks a workspace up (404 `ResourceNotFound` in ARM's wording when absent).
pub fn workspace<'a>(
    inner: &'a Inner,
    sub: &str,
    rg: &str,
    ws: &str,
) -> Result<&'a Workspace, ArmError> {
    inner.workspaces.get(&ws_key(sub, rg, ws)).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            msg::not_found("Microsoft.MachineLearningServices/workspaces", ws, rg),
        )
    })
}

fn compute_not_found(p: &ComputePath) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        msg::not_found(
            "Microsoft.MachineLearningServices/workspaces/computes",
            &format!("{}/{}", p.ws, p.name),
            p.rg,
        ),
    )
}

/// GET workspace.
pub fn get_workspace(
    inner: &Inner,
    req: &Req,
    sub: &str,
    rg: &str,
    ws: &str,
) -> Result<Response, ArmError> {
    let w = workspace(inner, sub, rg, ws)?;
    Ok((StatusCode::OK, axum::Json(workspace_json(req, w))).into_response())
}

/// GET the workspaces of a subscription (Workspaces_ListBySubscription; one page).
pub fn list_workspaces(inner: &Inner, req: &Req, sub: &str) -> Result<Response, ArmError> {
    let value: Vec<Value> = inner
        .workspaces
        .values()
        .filter(|w| w.subscription.eq_ignore_ascii_case(sub))
        .map(|w| workspace_json(req, w))
        .collect();
    Ok((StatusCode::OK, axum::Json(json!({ "value": value }))).into_response())
}

fn workspace_json(req: &Req, w: &super::state::Workspace) -> Value {
    json!({
        "id": w.id(),
        "name": w.name,
        "type": "Microsoft.MachineLearningServices/workspaces",
        "location": w.location,
        "tags": {},
        "sku": {"name": "Basic", "tier": "Basic"},
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "friendlyName": w.name,
            "workspaceId": w.workspace_id,
            "provisioningState": "Succeeded",
            "discoveryUrl": format!("{}/discovery", req.base),
            "hbiWorkspace": false,
            "publicNetworkAccess": "Enabled",
        }
    })
}

/// (agentCount, agentVmSize) as Azure reports them: the live cluster when there is one.
fn live_agents(inner: &Inner, c: &Compute) -> (Option<i64>, Option<String>) {
    if let Some(cl) = c
        .resource_id
        .as_deref()
        .and_then(parse_cluster_id)
        .and_then(|(s, r, n)| inner.clusters.get(&cluster_key(&s, &r, &n)))
        && c.provisioning_state != "Failed"
        && (c.attached || cl.created_by.is_some())
    {
        return (
            Some(cl.node_count()),
            cl.pools.first().map(|p| p.vm_size.clone()),
        );
    }
    (c.agent_count, c.agent_vm_size.clone())
}

/// The ARM body of a compute (cert and key never included: they are `null`).
///
/// Every property of the swagger's `ComputeResource`, `Compute` and `AKSSchema` is present,
/// `null` when unset and nullable, as Azure answers: the SDK v1 indexes them directly
/// (`obj_dict['properties']['properties']['loadBalancerSubnet']`, also while a create
/// runs) and its `update()` deletes keys of the body it got (`del …['sslConfiguration']`).
pub fn compute_json(inner: &Inner, c: &Compute) -> Option<Value> {
    let ws = inner.workspaces.get(&c.workspace)?;
    let (count, vm) = live_agents(inner, c);
    let ssl = json!({
        "status": c.ssl.status,
        "cert": null,
        "key": null,
        "cname": c.ssl.cname,
        "leafDomainLabel": c.ssl.leaf_domain_label,
        "overwriteExistingDomain": c.ssl.overwrite_existing_domain,
    });
    let aks = json!({
        "clusterFqdn": c.cluster_fqdn,
        // Azure ML's scoring front end services; their real shape on AKS computes is not
        // documented beyond the schema, so the emulator reports none.
        "systemServices": null,
        "agentCount": count,
        "agentVmSize": vm,
        "clusterPurpose": c.cluster_purpose,
        "sslConfiguration": ssl,
        "aksNetworkingConfiguration": c.networking,
        "loadBalancerType": c.load_balancer_type,
        "loadBalancerSubnet": c.load_balancer_subnet,
    });
    let errors: Value = if c.errors.is_empty() {
        Value::Null
    } else {
        Value::Array(
            c.errors
                .iter()
                .map(|e| json!({"error": super::errors::error_json(e)}))
                .collect(),
        )
    };
    // `computeLocation` is not nullable: the region the cluster runs in. For a create, the
    // requested one or the workspace's (where the emulator provisions the cluster); for an
    // attach, the cluster's (emulator's choice: Azure's value for attached computes is not
    // documented).
    let compute_location = c
        .compute_location
        .clone()
        .or_else(|| {
            c.resource_id
                .as_deref()
                .and_then(parse_cluster_id)
                .and_then(|(s, r, n)| inner.clusters.get(&cluster_key(&s, &r, &n)))
                .map(|cl| cl.location.clone())
        })
        .unwrap_or_else(|| ws.location.clone());
    Some(json!({
        "id": c.id(ws),
        "name": c.name,
        "type": TYPE,
        "location": c.location,
        "tags": null,
        "sku": null,
        "properties": {
            "computeType": "AKS",
            "computeLocation": compute_location,
            "provisioningState": c.provisioning_state,
            "description": c.description,
            "createdOn": arm_time(c.created_on),
            "modifiedOn": arm_time(c.modified_on),
            "resourceId": c.resource_id,
            "provisioningErrors": errors,
            "isAttachedCompute": c.attached,
            "disableLocalAuth": false,
            "properties": aks,
        },
    }))
}

/// GET compute.
pub fn get(inner: &Inner, p: &ComputePath) -> Result<Response, ArmError> {
    let wsk = ws_key(p.sub, p.rg, p.ws);
    workspace(inner, p.sub, p.rg, p.ws)?;
    let c = inner
        .computes
        .get(&compute_key(&wsk, p.name))
        .ok_or_else(|| compute_not_found(p))?;
    let body = compute_json(inner, c).ok_or_else(|| compute_not_found(p))?;
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// GET computes (paged; `$skip` is the continuation token).
pub fn list(inner: &Inner, req: &Req, sub: &str, rg: &str, ws: &str) -> Result<Response, ArmError> {
    let w = workspace(inner, sub, rg, ws)?;
    let wsk = ws_key(sub, rg, ws);
    let skip = match req.q("$skip") {
        None | Some("") => 0,
        Some(s) => s.parse::<usize>().map_err(|_| {
            // emulator wording
            ArmError::bad_request(format!("Invalid continuation token '$skip={s}'."))
        })?,
    };
    let mut all: Vec<Value> = inner
        .computes
        .values()
        .filter(|c| c.workspace == wsk)
        .filter_map(|c| compute_json(inner, c))
        .collect();
    all.extend(super::kubernetes_compute::list_json(inner, &wsk));
    let size = inner.settings.page_size;
    let total = all.len();
    let page: Vec<Value> = all.into_iter().skip(skip).take(size).collect();
    let mut body = json!({ "value": page });
    if skip + size < total
        && let Some(o) = body.as_object_mut()
    {
        o.insert(
            "nextLink".into(),
            json!(format!(
                "{}{}/computes?api-version={}&$skip={}",
                req.base,
                w.id(),
                req.api_version,
                skip + size
            )),
        );
    }
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ResourceIn {
    location: Option<String>,
    properties: Option<ComputeIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ComputeIn {
    compute_type: Option<String>,
    compute_location: Option<String>,
    description: Option<String>,
    resource_id: Option<String>,
    properties: Option<AksIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AksIn {
    agent_count: Option<i64>,
    agent_vm_size: Option<String>,
    cluster_purpose: Option<String>,
    ssl_configuration: Option<SslIn>,
    aks_networking_configuration: Option<Value>,
    load_balancer_type: Option<String>,
    load_balancer_subnet: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SslIn {
    status: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    cname: Option<String>,
    leaf_domain_label: Option<String>,
    overwrite_existing_domain: Option<bool>,
    /// Not in the swagger: what the SDK v1's `update(SslConfiguration(renew=True))` adds to
    /// the `Auto` configuration it read back, to have the Microsoft certificate renewed.
    renew: Option<bool>,
}

/// A validated `sslConfiguration`.
struct SslChange {
    settings: SslSettings,
    /// Certificate and key sent with `Enabled`.
    material: Option<TlsMaterial>,
    /// `renew: true` (an `Auto` certificate is to be issued anew).
    renew: bool,
}

/// A validated PUT body.
struct Parsed {
    location: Option<String>,
    compute_location: Option<String>,
    description: Option<Option<String>>,
    resource_id: Option<String>,
    agent_count: Option<i64>,
    agent_vm_size: Option<String>,
    cluster_purpose: Option<String>,
    ssl: Option<SslChange>,
    networking: Option<Value>,
    load_balancer_type: Option<String>,
    load_balancer_subnet: Option<String>,
}

fn bad_argument(message: impl Into<String>) -> ArmError {
    ArmError::new(StatusCode::BAD_REQUEST, "BadArgument", message)
}

fn one_of(
    field: &str,
    value: Option<String>,
    allowed: &[&str],
) -> Result<Option<String>, ArmError> {
    match value {
        None => Ok(None),
        Some(v) => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(&v))
            .map(|a| Some((*a).to_string()))
            // emulator wording
            .ok_or_else(|| {
                bad_argument(format!(
                    "Invalid value '{v}' for {field}. Allowed values: {}.",
                    allowed.join(", ")
                ))
            }),
    }
}

fn parse_body(body: &[u8]) -> Result<Parsed, ArmError> {
    let raw: Value = serde_json::from_slice(body).map_err(|e| invalid_content(&e.to_string()))?;
    let r: ResourceIn =
        serde_json::from_value(raw.clone()).map_err(|e| invalid_content(&e.to_string()))?;
    let props = r
        .properties
        .ok_or_else(|| invalid_content("'properties' is required"))?;
    let ctype = props
        .compute_type
        .ok_or_else(|| invalid_content("'properties.computeType' is required"))?;
    if !ctype.eq_ignore_ascii_case("AKS") {
        // emulator wording: Kubernetes, AmlCompute, ... are out of the emulator's scope.
        return Err(ArmError::bad_request(format!(
            "Compute type '{ctype}' is not supported by the emulator; only 'AKS'."
        )));
    }
    let description = raw
        .pointer("/properties/description")
        .map(|_| props.description.clone());
    let aks = props.properties.unwrap_or_default();
    if let Some(n) = aks.agent_count
        && n < 0
    {
        return Err(bad_argument("agentCount must be at least 0.")); // emulator wording
    }
    let ssl = match aks.ssl_configuration {
        None => None,
        Some(s) => Some(parse_ssl(s)?),
    };
    if let Some(rid) = &props.resource_id
        && parse_cluster_id(rid).is_none()
    {
        // emulator wording
        return Err(bad_argument(format!(
            "resourceId '{rid}' is not the ARM id of a Microsoft.ContainerService/managedClusters resource."
        )));
    }
    Ok(Parsed {
        location: r.location,
        compute_location: props.compute_location,
        description,
        resource_id: props.resource_id,
        agent_count: aks.agent_count,
        agent_vm_size: aks.agent_vm_size,
        cluster_purpose: one_of(
            "clusterPurpose",
            aks.cluster_purpose,
            &["FastProd", "DenseProd", "DevTest"],
        )?,
        ssl,
        networking: aks.aks_networking_configuration.filter(|v| !v.is_null()),
        load_balancer_type: one_of(
            "loadBalancerType",
            aks.load_balancer_type,
            &["PublicIp", "InternalLoadBalancer"],
        )?,
        load_balancer_subnet: aks.load_balancer_subnet,
    })
}

fn parse_ssl(s: SslIn) -> Result<SslChange, ArmError> {
    let status = one_of(
        "sslConfiguration.status",
        s.status.or(Some("Disabled".into())),
        &["Disabled", "Enabled", "Auto"],
    )?
    .unwrap_or_else(|| "Disabled".into());
    let settings = SslSettings {
        status: status.clone(),
        cname: s.cname.filter(|c| !c.is_empty()),
        leaf_domain_label: s.leaf_domain_label.filter(|c| !c.is_empty()),
        overwrite_existing_domain: s.overwrite_existing_domain.unwrap_or(false),
    };
    let material = match status.as_str() {
        "Enabled" => match (
            s.cert.filter(|c| !c.is_empty()),
            s.key.filter(|k| !k.is_empty()),
        ) {
            (Some(cert), Some(key)) => {
                check_pem(&cert, &key)?;
                Some(TlsMaterial { cert, key })
            }
            // GET never returns cert/key, so an update may re-send Enabled without them.
            (None, None) => None,
            _ => return Err(enabled_needs_cert()),
        },
        "Auto" => {
            if settings.leaf_domain_label.is_none() {
                // emulator wording
                return Err(bad_argument(
                    "sslConfiguration.leafDomainLabel is required when sslConfiguration.status is 'Auto'.",
                ));
            }
            None
        }
        _ => None,
    };
    let renew = s.renew.unwrap_or(false);
    if renew && status != "Auto" {
        // emulator wording: the SDK only sends renew on an Auto configuration it read back.
        return Err(bad_argument(
            "sslConfiguration.renew applies to Microsoft-issued certificates only (sslConfiguration.status 'Auto').",
        ));
    }
    Ok(SslChange {
        settings,
        material,
        renew,
    })
}

/// The certificate must be a PEM X.509 certificate and the key a PEM private key.
fn check_pem(cert: &str, key: &str) -> Result<(), ArmError> {
    let cert_ok = x509_parser::pem::parse_x509_pem(cert.as_bytes())
        .ok()
        .is_some_and(|(_, pem)| pem.parse_x509().is_ok());
    let key_ok = key.contains("-----BEGIN") && key.contains("PRIVATE KEY-----");
    if cert_ok && key_ok {
        Ok(())
    } else {
        // emulator wording (no secret material in the message)
        Err(bad_argument(
            "sslConfiguration.cert must be a PEM-encoded X.509 certificate and sslConfiguration.key a PEM-encoded private key.",
        ))
    }
}

fn enabled_needs_cert() -> ArmError {
    // emulator wording
    bad_argument(
        "sslConfiguration.cert and sslConfiguration.key are required when sslConfiguration.status is 'Enabled'.",
    )
}

fn invalid_content(detail: &str) -> ArmError {
    ArmError::new(
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
        format!("The request content was invalid and could not be deserialized: '{detail}'."),
    )
}

/// Azure ML compute name rules: 3–24 characters, letters, digits and `-`, starting with a
/// letter, not ending with `-` followed by digits only.
fn check_name(name: &str) -> Result<(), ArmError> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let starts = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let ends_digits = name
        .rsplit_once('-')
        .is_some_and(|(_, tail)| !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()));
    if (3..=24).contains(&name.len()) && ok_chars && starts && !ends_digits && !name.ends_with('-')
    {
        Ok(())
    } else {
        // emulator wording
        Err(bad_argument(format!(
            "Invalid compute name '{name}': it must be 3 to 24 characters long, contain only letters, digits and '-', start with a letter and not end with '-' followed by digits."
        )))
    }
}

fn eq_ci(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// True when the body is what the SDK's `update()` sends: same type and resourceId,
/// changes (if any) only to TLS, load balancer or description.
fn is_update(inner: &Inner, existing: &Compute, p: &Parsed) -> bool {
    let (live_count, live_vm) = live_agents(inner, existing);
    let same_rid = match (&p.resource_id, &existing.resource_id) {
        (Some(a), Some(b)) => eq_ci(a, b),
        _ => false,
    };
    same_rid
        && p.agent_count
            .is_none_or(|n| Some(n) == live_count || Some(n) == existing.agent_count)
        && p.agent_vm_size.as_deref().is_none_or(|v| {
            live_vm.as_deref().is_some_and(|l| eq_ci(l, v))
                || existing
                    .agent_vm_size
                    .as_deref()
                    .is_some_and(|l| eq_ci(l, v))
        })
        && p.cluster_purpose
            .as_deref()
            .is_none_or(|v| eq_ci(v, &existing.cluster_purpose))
        && p.networking
            .as_ref()
            .is_none_or(|n| Some(n) == existing.networking.as_ref())
        && p.compute_location.as_deref().is_none_or(|l| {
            existing
                .compute_location
                .as_deref()
                .is_none_or(|e| eq_ci(e, l))
        })
}

/// PUT compute: create, attach or in-place update (long-running).
pub fn put(inner: &mut Inner, req: &Req, p: &ComputePath) -> Result<Response, ArmError> {
    let ws = workspace(inner, p.sub, p.rg, p.ws)?.clone();
    let parsed = parse_body(req.body)?;
    let wsk = ws_key(p.sub, p.rg, p.ws);
    let key = compute_key(&wsk, p.name);
    let forced = inner.take_lro_fault(req);

    if let Some(existing) = inner.computes.get(&key) {
        if !is_update(inner, existing, &parsed) {
            return Err(ArmError::bad_request(msg::compute_exists(&existing.name)));
        }
        if existing.provisioning_state != "Succeeded" {
            return Err(compute_not_succeeded(
                &existing.name,
                &existing.provisioning_state,
            ));
        }
        // The TLS in-place update: what changes in `azuremlfessl` and `clusterFqdn` happens
        // when the operation completes (`Inner::apply_tls`).
        let ssl_change = match parsed.ssl {
            None => None,
            Some(change) => {
                let s = &change.settings;
                if s.status == "Enabled"
                    && change.material.is_none()
                    && existing.ssl.status != "Enabled"
                {
                    return Err(enabled_needs_cert());
                }
                if change.renew && existing.ssl.status != "Auto" {
                    // emulator wording
                    return Err(bad_argument(format!(
                        "Compute {} has no Microsoft-issued certificate to renew (sslConfiguration.status is '{}').",
                        existing.name, existing.ssl.status
                    )));
                }
                (*s != existing.ssl || change.material.is_some() || change.renew).then_some(change)
            }
        };
        let op_id = inner.start_op(
            NewOp {
                kind: "Update",
                provider: Provider::Mls,
                subscription: ws.subscription.clone(),
                location: ws.location.clone(),
                target: format!("{}/computes/{}", ws.id(), existing.name),
                effect: Effect::UpdateCompute(key.clone()),
                forced_error: forced,
                api_version: req.api_version.to_string(),
            },
            req.now,
        );
        let Some(c) = inner.computes.get_mut(&key) else {
            return Err(compute_not_found(p));
        };
        if let Some(d) = parsed.description {
            c.description = d;
        }
        if let Some(t) = parsed.load_balancer_type {
            c.load_balancer_type = t;
        }
        if parsed.load_balancer_subnet.is_some() {
            c.load_balancer_subnet = parsed.load_balancer_subnet;
        }
        if let Some(change) = ssl_change {
            c.ssl = change.settings;
            c.pending_tls = change.material;
            c.renew_tls = change.renew;
            c.tls_dirty = true;
        }
        c.provisioning_state = "Updating".into();
        c.operation = Some(op_id.clone());
        c.modified_on = jiff::Timestamp::now();
        return lro_response(inner, req, &key, &op_id, StatusCode::OK);
    }

    check_name(p.name)?;
    let attach = parsed.resource_id.is_some();
    let now_ts = jiff::Timestamp::now();
    if let Some(change) = &parsed.ssl
        && change.settings.status == "Enabled"
        && change.material.is_none()
    {
        return Err(enabled_needs_cert());
    }
    let (ssl, material) = match parsed.ssl {
        Some(change) => (change.settings, change.material),
        None => (
            SslSettings {
                status: "Disabled".into(),
                ..Default::default()
            },
            None,
        ),
    };
    let compute = Compute {
        workspace: wsk.clone(),
        name: p.name.to_string(),
        location: parsed.location.unwrap_or_else(|| ws.location.clone()),
        compute_location: parsed.compute_location,
        description: parsed.description.flatten(),
        resource_id: parsed.resource_id,
        attached: attach,
        // The official attach example answers "Updating", the create example "Creating".
        provisioning_state: if attach { "Updating" } else { "Creating" }.into(),
        errors: Vec::new(),
        created_on: now_ts,
        modified_on: now_ts,
        agent_count: parsed.agent_count,
        agent_vm_size: parsed.agent_vm_size,
        cluster_purpose: parsed.cluster_purpose.unwrap_or_else(|| "FastProd".into()),
        ssl,
        networking: parsed.networking,
        load_balancer_type: parsed
            .load_balancer_type
            .unwrap_or_else(|| "PublicIp".into()),
        load_balancer_subnet: parsed.load_balancer_subnet,
        cluster_fqdn: None,
        operation: None,
        pending_tls: material,
        renew_tls: false,
        tls_dirty: true,
    };
    let op_id = inner.start_op(
        NewOp {
            kind: if attach { "Attach" } else { "Create" },
            provider: Provider::Mls,
            subscription: ws.subscription.clone(),
            location: ws.location.clone(),
            target: compute.id(&ws),
            effect: if attach {
                Effect::AttachCompute(key.clone())
            } else {
                Effect::CreateCompute(key.clone())
            },
            forced_error: forced,
            api_version: req.api_version.to_string(),
        },
        req.now,
    );
    inner.computes.insert(
        key.clone(),
        Compute {
            operation: Some(op_id.clone()),
            ..compute
        },
    );
    tracing::info!(compute = %p.name, attach, "compute PUT accepted");
    lro_response(inner, req, &key, &op_id, StatusCode::CREATED)
}

fn lro_response(
    inner: &Inner,
    req: &Req,
    key: &str,
    op_id: &str,
    status: StatusCode,
) -> Result<Response, ArmError> {
    let body = inner
        .computes
        .get(key)
        .and_then(|c| compute_json(inner, c))
        .unwrap_or(Value::Null);
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(op) = inner.operations.get(op_id) {
        add_lro_headers(&mut resp, op, req.base, req.now);
    }
    Ok(resp)
}

/// DELETE compute (`underlyingResourceAction=Delete|Detach`, required).
pub fn delete(inner: &mut Inner, req: &Req, p: &ComputePath) -> Result<Response, ArmError> {
    let action = req.q("underlyingResourceAction").ok_or_else(|| {
        // emulator wording
        ArmError::bad_request("The query parameter 'underlyingResourceAction' is required; allowed values: Delete, Detach.")
    })?;
    let detach = if eq_ci(action, "Detach") {
        true
    } else if eq_ci(action, "Delete") {
        false
    } else {
        // emulator wording
        return Err(ArmError::bad_request(format!(
            "Invalid underlyingResourceAction '{action}'; allowed values: Delete, Detach."
        )));
    };
    let ws = workspace(inner, p.sub, p.rg, p.ws)?.clone();
    let key = compute_key(&ws_key(p.sub, p.rg, p.ws), p.name);
    let Some(c) = inner.computes.get(&key) else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
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
    if c.attached && !detach {
        // emulator wording: Azure refuses to delete a cluster the workspace did not create.
        return Err(ArmError::bad_request(format!(
            "Compute {} is an attached compute; underlyingResourceAction 'Delete' would delete an AKS cluster the workspace does not own. Use 'Detach'.",
            c.name
        )));
    }
    let target = c.id(&ws);
    let forced = inner.take_lro_fault(req);
    let op_id = inner.start_op(
        NewOp {
            kind: if detach { "Detach" } else { "Delete" },
            provider: Provider::Mls,
            subscription: ws.subscription.clone(),
            location: ws.location.clone(),
            target,
            effect: Effect::DeleteCompute {
                compute: key.clone(),
                detach,
            },
            forced_error: forced,
            api_version: req.api_version.to_string(),
        },
        req.now,
    );
    if let Some(c) = inner.computes.get_mut(&key) {
        c.provisioning_state = "Deleting".into();
        c.operation = Some(op_id.clone());
        c.modified_on = jiff::Timestamp::now();
    }
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Some(op) = inner.operations.get(&op_id) {
        add_lro_headers(&mut resp, op, req.base, req.now);
    }
    Ok(resp)
}

/// POST listKeys: the kubeconfigs of the compute's cluster (plain text).
pub fn list_keys(inner: &Inner, req: &Req, p: &ComputePath) -> Result<Response, ArmError> {
    workspace(inner, p.sub, p.rg, p.ws)?;
    let c = inner
        .computes
        .get(&compute_key(&ws_key(p.sub, p.rg, p.ws), p.name))
        .ok_or_else(|| compute_not_found(p))?;
    if c.provisioning_state != "Succeeded" {
        return Err(compute_not_succeeded(&c.name, &c.provisioning_state));
    }
    let cluster = c
        .resource_id
        .as_deref()
        .and_then(parse_cluster_id)
        .and_then(|(s, r, n)| inner.clusters.get(&cluster_key(&s, &r, &n)))
        .ok_or_else(|| {
            // emulator wording
            ArmError::bad_request(format!(
                "The AKS cluster of compute {} no longer exists.",
                c.name
            ))
        })?;
    let body = json!({
        "computeType": "AKS",
        "userKubeConfig": super::kube_api::kubeconfig(cluster, req.base, false),
        "adminKubeConfig": super::kube_api::kubeconfig(cluster, req.base, true),
        "imagePullSecretName": null,
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

impl Inner {
    /// Completion of a create: validate like Azure ML, then provision the AKS cluster.
    pub fn finish_create(&mut self, key: &str) -> Result<(), ErrorDetail> {
        let Some(c) = self.computes.get(key).cloned() else {
            return Ok(());
        };
        let Some(ws) = self.workspaces.get(&c.workspace).cloned() else {
            return Ok(());
        };
        let count = c.agent_count.unwrap_or(if c.cluster_purpose == "DevTest" {
            DEV_TEST_AGENT_COUNT
        } else {
            DEFAULT_AGENT_COUNT
        });
        let vm = c
            .agent_vm_size
            .clone()
            .unwrap_or_else(|| DEFAULT_VM_SIZE.to_string());
        let location = c
            .compute_location
            .clone()
            .unwrap_or_else(|| ws.location.clone());
        let mut errors = Vec::new();
        match self.vcpus(&vm) {
            None => errors.push(ErrorDetail::new(
                "BadRequest",
                msg::vm_size_not_allowed(CREATED_POOL, &location),
            )),
            Some(cores) => {
                if c.cluster_purpose == "FastProd" {
                    errors.extend(purpose_errors(count, count * i64::from(cores)));
                }
            }
        }
        if let Some(first) = errors.first().cloned() {
            self.fail_compute(key, errors);
            return Err(first);
        }
        let name = format!(
            "{}-{:05}-{}",
            c.name.to_ascii_lowercase(),
            rand::random::<u32>() % 100_000,
            rand_hex(13)
        );
        let version = self.settings.default_version.clone();
        let mut cluster = super::state::new_cluster(
            &ws.subscription,
            &ws.resource_group,
            &name,
            &location,
            &version,
            vec![super::state::AgentPool {
                name: CREATED_POOL.into(),
                count,
                vm_size: vm,
                mode: "System".into(),
                provisioning_state: "Succeeded".into(),
                extra: Default::default(),
            }],
        );
        cluster.created_by = Some(key.to_string());
        let ckey = cluster_key(&ws.subscription, &ws.resource_group, &name);
        let rid = cluster.id();
        self.clusters.insert(ckey.clone(), cluster);
        self.install_azureml(&ckey, key)?;
        if let Some(c) = self.computes.get_mut(key) {
            c.resource_id = Some(rid);
        }
        self.succeed_compute(key);
        Ok(())
    }

    /// Completion of an attach: the cluster must exist, run a supported version and be
    /// big enough for its purpose; an earlier attachment of the same cluster breaks.
    pub fn finish_attach(&mut self, key: &str) -> Result<(), ErrorDetail> {
        let Some(c) = self.computes.get(key).cloned() else {
            return Ok(());
        };
        let rid = c.resource_id.clone().unwrap_or_default();
        let Some((s, r, n)) = parse_cluster_id(&rid) else {
            let e = ErrorDetail::new("BadArgument", format!("Invalid resourceId '{rid}'.")); // emulator wording
            self.fail_compute(key, vec![e.clone()]);
            return Err(e);
        };
        let ckey = cluster_key(&s, &r, &n);
        let Some(cluster) = self.clusters.get(&ckey).cloned() else {
            let e = ErrorDetail::new(
                "ResourceNotFound",
                msg::not_found("Microsoft.ContainerService/managedClusters", &n, &r),
            );
            self.fail_compute(key, vec![e.clone()]);
            return Err(e);
        };
        let mut errors = Vec::new();
        if !cluster.power_state.eq_ignore_ascii_case("Running") {
            // emulator wording
            errors.push(ErrorDetail::new(
                "BadRequest",
                format!(
                    "The AKS cluster {} is not running (powerState {}); start it before attaching it.",
                    cluster.name, cluster.power_state
                ),
            ));
        }
        let (min, max) = self.version_range();
        // Azure ML supports a range of minor versions: any patch of them attaches.
        let minor = |v: &str| {
            let mut k = super::config::version_key(v);
            k.resize(2, 0);
            k
        };
        let v = minor(&cluster.kubernetes_version);
        if v < minor(&min) || v > minor(&max) {
            let m = msg::unsupported_version(&cluster.kubernetes_version, &min, &max);
            errors.push(
                ErrorDetail::new("BadRequest", m.clone())
                    .with_detail(ErrorDetail::new("BadRequestFormat", m)),
            );
        }
        if c.cluster_purpose == "FastProd" {
            let cores: i64 = cluster
                .pools
                .iter()
                .map(|p| p.count * i64::from(self.vcpus(&p.vm_size).unwrap_or(0)))
                .sum();
            errors.extend(purpose_errors(cluster.node_count(), cores));
        }
        if let Some(first) = errors.first().cloned() {
            self.fail_compute(key, errors);
            return Err(first);
        }
        // The trap: attaching again silently breaks the earlier attachment.
        if let Some(prev) = cluster.attached_compute.clone()
            && prev != key
            && self.computes.contains_key(&prev)
        {
            let new_id = self
                .workspaces
                .get(&c.workspace)
                .map(|w| c.id(w))
                .unwrap_or_else(|| c.name.clone());
            // emulator wording
            let e = ErrorDetail::new(
                "ClusterAttachedElsewhere",
                format!(
                    "The AKS cluster {} has been attached to another compute ({new_id}); Azure ML's components of this compute were replaced and it no longer works. Detach it.",
                    cluster.id()
                ),
            );
            self.fail_compute(&prev, vec![e]);
        }
        self.install_azureml(&ckey, key)?;
        self.succeed_compute(key);
        Ok(())
    }

    /// Completion of an in-place update.
    pub fn finish_update(&mut self, key: &str) -> Result<(), ErrorDetail> {
        let Some(c) = self.computes.get(key).cloned() else {
            return Ok(());
        };
        if c.tls_dirty
            && let Some(ckey) = c
                .resource_id
                .as_deref()
                .and_then(parse_cluster_id)
                .map(|(s, r, n)| cluster_key(&s, &r, &n))
            && self.clusters.contains_key(&ckey)
        {
            self.apply_tls(&ckey, key)?;
        }
        self.succeed_compute(key);
        Ok(())
    }

    /// Completion of a delete or detach.
    pub fn finish_delete(&mut self, key: &str, detach: bool) -> Result<(), ErrorDetail> {
        let Some(c) = self.computes.remove(key) else {
            return Ok(());
        };
        // Removing Azure ML's components removes `azureml-fe`, its public IP and the
        // Microsoft-issued DNS name on it.
        if c.ssl.status == "Auto"
            && let Some(fqdn) = &c.cluster_fqdn
        {
            self.dns_records.remove(&fqdn.to_ascii_lowercase());
        }
        if let Some(ckey) = c
            .resource_id
            .as_deref()
            .and_then(parse_cluster_id)
            .map(|(s, r, n)| cluster_key(&s, &r, &n))
        {
            if let Some(cluster) = self.clusters.get_mut(&ckey)
                && cluster.attached_compute.as_deref() == Some(key)
            {
                super::kube_api::uninstall_azureml(cluster);
            }
            if !detach && !c.attached {
                self.clusters.remove(&ckey);
            } else if let Some(cluster) = self.clusters.get_mut(&ckey)
                && cluster.created_by.as_deref() == Some(key)
            {
                // A detached created cluster is now just an AKS cluster.
                cluster.created_by = None;
            }
        }
        Ok(())
    }

    fn succeed_compute(&mut self, key: &str) {
        if let Some(c) = self.computes.get_mut(key) {
            c.provisioning_state = "Succeeded".into();
            c.errors.clear();
            c.operation = None;
            c.pending_tls = None;
            c.renew_tls = false;
            c.tls_dirty = false;
            c.modified_on = jiff::Timestamp::now();
        }
    }

    /// Takes an `LroFail` fault matching this request, as an error detail.
    pub fn take_lro_fault(&mut self, req: &Req) -> Option<ErrorDetail> {
        match self
            .faults
            .take_lro_fault(req.method, req.path, req.operation)?
        {
            super::faults::FaultKind::LroFail { code, message } => {
                Some(ErrorDetail::new(code, message))
            }
            _ => None,
        }
    }
}

/// FastProd rules: at least 3 nodes and 12 cores (cores first, as Azure reports them).
fn purpose_errors(nodes: i64, cores: i64) -> Vec<ErrorDetail> {
    let mut errors = Vec::new();
    if cores < 12 {
        errors.push(ErrorDetail::new("BadArgument", msg::too_few_cores()));
    }
    if nodes < 3 {
        errors.push(ErrorDetail::new("BadArgument", msg::too_few_nodes(nodes)));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("prodaks").is_ok());
        assert!(check_name("prod-aks2").is_ok());
        assert!(check_name("ab").is_err());
        assert!(check_name("1abc").is_err());
        assert!(check_name("abc-12").is_err());
        assert!(check_name("abc_d").is_err());
    }

    #[test]
    fn purpose_rules() {
        assert!(purpose_errors(3, 12).is_empty());
        assert_eq!(purpose_errors(3, 6)[0].message, msg::too_few_cores());
        assert_eq!(purpose_errors(2, 32)[0].message, msg::too_few_nodes(2));
        assert_eq!(purpose_errors(2, 8).len(), 2);
    }

    #[test]
    fn bad_bodies_are_400() {
        for body in [
            &b"not json"[..],
            b"{}",
            b"{\"properties\":{}}",
            b"{\"properties\":{\"computeType\":3}}",
        ] {
            let e = parse_body(body).err().map(|e| e.status);
            assert_eq!(e, Some(StatusCode::BAD_REQUEST));
        }
        let e = parse_body(br#"{"properties":{"computeType":"AKS","properties":{"sslConfiguration":{"status":"Enabled","cert":"x","key":"y"}}}}"#);
        assert!(e.is_err());
    }
}
