//! AKS (Microsoft.ContainerService) and Resource SKUs (Microsoft.Compute): managed
//! cluster GET/DELETE, credentials, agent pools (scale, 409 while busy), Kubernetes
//! versions, VM sizes.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::arm::Req;
use super::config::{minor_of, version_key};
use super::errors::{ArmError, ErrorDetail, msg};
use super::lro::{Effect, NewOp, Provider, add_lro_headers};
use super::state::{AgentPool, Cluster, Inner, cluster_key};

/// Path parameters of a managed cluster.
pub struct ClusterPath<'a> {
    /// Subscription.
    pub sub: &'a str,
    /// Resource group.
    pub rg: &'a str,
    /// Cluster name.
    pub name: &'a str,
}

const NODE_IMAGE: &str = "AKSUbuntu-2204gen2containerd-202501.12.0";

fn cluster<'a>(inner: &'a Inner, p: &ClusterPath) -> Result<&'a Cluster, ArmError> {
    inner
        .clusters
        .get(&cluster_key(p.sub, p.rg, p.name))
        .ok_or_else(|| not_found(p))
}

fn not_found(p: &ClusterPath) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        msg::not_found("Microsoft.ContainerService/managedClusters", p.name, p.rg),
    )
}

fn busy(inner: &Inner, c: &Cluster) -> Option<ArmError> {
    let (op, pool) = c.operation.as_ref()?;
    let running = inner
        .operations
        .get(op)
        .is_some_and(|o| o.status == "InProgress");
    running.then(|| {
        ArmError::new(
            StatusCode::CONFLICT,
            "OperationNotAllowed",
            msg::aks_busy(pool),
        )
    })
}

fn pool_props(c: &Cluster, p: &AgentPool) -> serde_json::Map<String, Value> {
    let mut props = p.extra.clone();
    let version = props
        .get("orchestratorVersion")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| c.kubernetes_version.clone());
    let fixed = json!({
        "count": p.count,
        "vmSize": p.vm_size,
        "mode": p.mode,
        "osType": props.get("osType").cloned().unwrap_or(json!("Linux")),
        "type": props.get("type").cloned().unwrap_or(json!("VirtualMachineScaleSets")),
        "maxPods": props.get("maxPods").cloned().unwrap_or(json!(110)),
        "osDiskSizeGB": props.get("osDiskSizeGB").cloned().unwrap_or(json!(128)),
        "enableAutoScaling": props.get("enableAutoScaling").cloned().unwrap_or(json!(false)),
        "orchestratorVersion": version,
        "currentOrchestratorVersion": version,
        "nodeImageVersion": NODE_IMAGE,
        "provisioningState": p.provisioning_state,
        "powerState": {"code": c.power_state},
        "eTag": c.etag,
    });
    if let Value::Object(f) = fixed {
        props.extend(f);
    }
    props
}

/// The agentPools resource body.
pub fn pool_json(c: &Cluster, pool: &str) -> Option<Value> {
    let p = c.pools.iter().find(|p| p.name.eq_ignore_ascii_case(pool))?;
    Some(json!({
        "id": format!("{}/agentPools/{}", c.id(), p.name),
        "name": p.name,
        "type": "Microsoft.ContainerService/managedClusters/agentPools",
        "properties": pool_props(c, p),
    }))
}

/// The managedClusters resource body.
pub fn cluster_json(c: &Cluster) -> Value {
    let profiles: Vec<Value> = c
        .pools
        .iter()
        .map(|p| {
            let mut props = pool_props(c, p);
            props.insert("name".into(), json!(p.name));
            Value::Object(props)
        })
        .collect();
    let mut props = json!({
        "provisioningState": c.provisioning_state,
        "powerState": {"code": c.power_state},
        "maxAgentPools": 100,
        "kubernetesVersion": c.kubernetes_version,
        "currentKubernetesVersion": c.kubernetes_version,
        "dnsPrefix": c.dns_prefix,
        "fqdn": c.fqdn,
        "azurePortalFQDN": c.fqdn.replacen(".hcp.", ".portal.hcp.", 1),
        "agentPoolProfiles": profiles,
        "nodeResourceGroup": format!("MC_{}_{}_{}", c.resource_group, c.name, c.location),
        "enableRBAC": true,
        "supportPlan": "KubernetesOfficial",
        "disableLocalAccounts": false,
        "resourceUID": c.uid,
        "networkProfile": {
            "networkPlugin": "kubenet",
            "podCidr": "10.244.0.0/16",
            "serviceCidr": "10.0.0.0/16",
            "dnsServiceIP": "10.0.0.10",
            "outboundType": "loadBalancer",
            "loadBalancerSku": "standard",
            "podCidrs": ["10.244.0.0/16"],
            "serviceCidrs": ["10.0.0.0/16"],
            "ipFamilies": ["IPv4"],
        },
    });
    if let Some(o) = props.as_object_mut() {
        if c.private || c.authorized_ip_ranges.is_some() {
            let mut access = json!({"enablePrivateCluster": c.private});
            if let Some(a) = access.as_object_mut() {
                if let Some(r) = &c.authorized_ip_ranges {
                    a.insert("authorizedIPRanges".into(), json!(r));
                }
                if c.private {
                    a.insert(
                        "enablePrivateClusterPublicFQDN".into(),
                        json!(c.private_public_fqdn),
                    );
                }
            }
            o.insert("apiServerAccessProfile".into(), access);
        }
        if c.private {
            o.insert(
                "privateFQDN".into(),
                json!(c.fqdn.replacen(".hcp.", ".privatelink.", 1)),
            );
            if !c.private_public_fqdn {
                // No public DNS record: AKS answers without the public FQDN.
                o.remove("fqdn");
                o.remove("azurePortalFQDN");
            }
        }
    }
    json!({
        "id": c.id(),
        "name": c.name,
        "type": "Microsoft.ContainerService/managedClusters",
        "location": c.location,
        "tags": c.tags,
        "eTag": c.etag,
        "sku": {"name": "Base", "tier": "Free"},
        "properties": props,
    })
}

/// GET managed cluster.
pub fn get(inner: &Inner, p: &ClusterPath) -> Result<Response, ArmError> {
    let c = cluster(inner, p)?;
    let mut body = cluster_json(c);
    // The seeded traits of the Kubernetes-compute path show in the GET as AKS reports them:
    // `identity` (or a `servicePrincipalProfile`) and `disableLocalAccounts`.
    let t = inner.ext.traits(&cluster_key(p.sub, p.rg, p.name));
    if let Some(o) = body.as_object_mut() {
        let kind = t.identity.as_deref().unwrap_or("SystemAssigned");
        if kind.eq_ignore_ascii_case("ServicePrincipal") {
            if let Some(props) = o.get_mut("properties").and_then(Value::as_object_mut) {
                props.insert(
                    "servicePrincipalProfile".into(),
                    json!({"clientId": "00000000-0000-0000-0000-0000000000ff"}),
                );
            }
        } else {
            o.insert("identity".into(), json!({"type": kind}));
        }
        if let Some(props) = o.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                "disableLocalAccounts".into(),
                json!(t.disable_local_accounts),
            );
        }
    }
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// POST listClusterUserCredential / listClusterAdminCredential.
pub fn credentials(
    inner: &Inner,
    req: &Req,
    p: &ClusterPath,
    admin: bool,
) -> Result<Response, ArmError> {
    let c = cluster(inner, p)?;
    let text = super::kube_api::kubeconfig(c, req.base, admin);
    let name = if admin { "clusterAdmin" } else { "clusterUser" };
    let body = json!({"kubeconfigs": [{
        "name": name,
        "value": base64::engine::general_purpose::STANDARD.encode(text),
    }]});
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// DELETE managed cluster (long-running).
pub fn delete(inner: &mut Inner, req: &Req, p: &ClusterPath) -> Result<Response, ArmError> {
    let key = cluster_key(p.sub, p.rg, p.name);
    let Some(c) = inner.clusters.get(&key) else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    if let Some(e) = busy(inner, c) {
        return Err(e);
    }
    let (location, target) = (c.location.clone(), c.id());
    let forced = inner.take_lro_fault(req);
    let op = inner.start_op(
        NewOp {
            kind: "DeleteCluster",
            provider: Provider::Aks,
            subscription: p.sub.to_string(),
            location,
            target,
            effect: Effect::DeleteCluster(key.clone()),
            forced_error: forced,
            api_version: req.api_version.to_string(),
        },
        req.now,
    );
    if let Some(c) = inner.clusters.get_mut(&key) {
        c.provisioning_state = "Deleting".into();
        c.operation = Some((
            op.clone(),
            c.pools.first().map(|p| p.name.clone()).unwrap_or_default(),
        ));
    }
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Some(o) = inner.operations.get(&op) {
        add_lro_headers(&mut resp, o, req.base, req.now);
    }
    Ok(resp)
}

/// GET agentPools (list).
pub fn list_pools(inner: &Inner, p: &ClusterPath) -> Result<Response, ArmError> {
    let c = cluster(inner, p)?;
    let value: Vec<Value> = c
        .pools
        .iter()
        .filter_map(|pl| pool_json(c, &pl.name))
        .collect();
    Ok((StatusCode::OK, axum::Json(json!({"value": value}))).into_response())
}

/// GET agentPools/{pool}.
pub fn get_pool(inner: &Inner, p: &ClusterPath, pool: &str) -> Result<Response, ArmError> {
    let c = cluster(inner, p)?;
    let body = pool_json(c, pool).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            // emulator wording
            format!(
                "Agent pool {pool} was not found in managed cluster {}.",
                p.name
            ),
        )
    })?;
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// PUT agentPools/{pool}: create or scale (long-running; 409 while another runs).
pub fn put_pool(
    inner: &mut Inner,
    req: &Req,
    p: &ClusterPath,
    pool: &str,
) -> Result<Response, ArmError> {
    let key = cluster_key(p.sub, p.rg, p.name);
    let c = cluster(inner, p)?;
    if let Some(e) = busy(inner, c) {
        return Err(e);
    }
    let body: Value = serde_json::from_slice(req.body).map_err(|e| {
        ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })?;
    let Some(props) = body.get("properties").and_then(Value::as_object).cloned() else {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'properties' is required.",
        ));
    };
    let invalid = |m: String| ArmError::new(StatusCode::BAD_REQUEST, "InvalidParameter", m);
    let count = match props.get("count") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .filter(|n| (0..=1000).contains(n))
                // emulator wording
                .ok_or_else(|| {
                    invalid(format!(
                        "Invalid value {v} for properties.count: it must be between 0 and 1000."
                    ))
                })?,
        ),
    };
    let vm_size = props
        .get("vmSize")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mode = props
        .get("mode")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(v) = &vm_size
        && inner.vcpus(v).is_none()
    {
        return Err(ArmError::bad_request(msg::vm_size_not_allowed(
            pool,
            &c.location,
        )));
    }
    let existing = c
        .pools
        .iter()
        .position(|pl| pl.name.eq_ignore_ascii_case(pool));
    if let (Some(i), Some(v)) = (existing, &vm_size)
        && !c.pools[i].vm_size.eq_ignore_ascii_case(v)
    {
        return Err(
            ArmError::bad_request("Changing property 'properties.vmSize' is not allowed.")
                .with_code("PropertyChangeNotAllowed"),
        );
    }
    // AKS refuses a manual count while the cluster autoscaler owns it (wording as AKS
    // reports it, e.g. hashicorp/terraform-provider-azurerm#4543).
    let was_autoscaling = existing
        .and_then(|i| c.pools[i].extra.get("enableAutoScaling"))
        .and_then(Value::as_bool)
        == Some(true);
    let stays_autoscaling = props
        .get("enableAutoScaling")
        .and_then(Value::as_bool)
        .unwrap_or(was_autoscaling);
    if let (Some(i), Some(n)) = (existing, count)
        && was_autoscaling
        && stays_autoscaling
        && c.pools[i].count != n
    {
        return Err(invalid(format!(
            "Cannot manually scale AgentPool '{pool}' of an AKS cluster with cluster autoscaler enabled. Please disable cluster autoscaler in the cluster to manually scale."
        )));
    }
    let mode_now = existing.map(|i| c.pools[i].mode.clone());
    let final_mode = mode.clone().or(mode_now).unwrap_or_else(|| "User".into());
    if final_mode.eq_ignore_ascii_case("System") && count == Some(0) {
        // emulator wording
        return Err(invalid("A System agent pool needs at least 1 node.".into()));
    }
    let (location, target) = (c.location.clone(), format!("{}/agentPools/{pool}", c.id()));
    let forced = inner.take_lro_fault(req);
    let op = inner.start_op(
        NewOp {
            kind: "Scale",
            provider: Provider::Aks,
            subscription: p.sub.to_string(),
            location,
            target,
            effect: Effect::ScalePool {
                cluster: key.clone(),
                pool: pool.to_string(),
            },
            forced_error: forced,
            api_version: req.api_version.to_string(),
        },
        req.now,
    );
    let mut extra = props.clone();
    for k in [
        "count",
        "vmSize",
        "mode",
        "provisioningState",
        "currentOrchestratorVersion",
        "nodeImageVersion",
        "powerState",
        "eTag",
    ] {
        extra.remove(k);
    }
    let Some(c) = inner.clusters.get_mut(&key) else {
        return Err(not_found(p));
    };
    let status = match existing {
        Some(i) => {
            let pl = &mut c.pools[i];
            if let Some(n) = count {
                pl.count = n;
            }
            pl.mode = final_mode;
            pl.extra.extend(extra);
            pl.provisioning_state = "Updating".into();
            StatusCode::OK
        }
        None => {
            c.pools.push(AgentPool {
                name: pool.to_string(),
                count: count.unwrap_or(1),
                vm_size: vm_size.unwrap_or_else(|| "Standard_D2_v2".into()),
                mode: final_mode,
                provisioning_state: "Creating".into(),
                extra,
            });
            StatusCode::CREATED
        }
    };
    c.operation = Some((op.clone(), pool.to_string()));
    c.etag = uuid::Uuid::new_v4().to_string();
    let body = pool_json(c, pool).unwrap_or(Value::Null);
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(o) = inner.operations.get(&op) {
        add_lro_headers(&mut resp, o, req.base, req.now);
    }
    Ok(resp)
}

/// Result of an AKS Run Command (computed when the command is posted, revealed once the
/// operation duration has passed).
#[derive(Debug, Clone)]
pub struct CommandResult {
    /// Command id.
    pub id: String,
    /// Cluster ARM id.
    pub cluster_id: String,
    /// When the result becomes available.
    pub due: std::time::Instant,
    /// Start time.
    pub started_at: jiff::Timestamp,
    /// Exit code.
    pub exit_code: i32,
    /// Output (stdout + stderr).
    pub logs: String,
    /// api-version of the request (echoed in the Location URL).
    pub api_version: String,
}

impl CommandResult {
    fn location(&self, base: &str) -> String {
        format!(
            "{base}{}/commandResults/{}?api-version={}",
            self.cluster_id, self.id, self.api_version
        )
    }
}

/// What `kubectl` would print for the commands the emulator understands:
/// `kubectl get secret NAME [-n NS] -o json` (the TLS backup path for private clusters).
fn run_kubectl(cluster: &Cluster, command: &str) -> (i32, String) {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut ns = "default".to_string();
    let mut output = None;
    let mut positional = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let next = words.get(i + 1).copied();
        match w {
            "-n" | "--namespace" => {
                ns = next.unwrap_or_default().to_string();
                i += 1;
            }
            "-o" | "--output" => {
                output = next.map(str::to_string);
                i += 1;
            }
            _ if w.starts_with("--namespace=") => ns = w["--namespace=".len()..].to_string(),
            _ if w.starts_with("--output=") => output = Some(w["--output=".len()..].to_string()),
            _ if w.starts_with("-o") && w.len() > 2 => output = Some(w[2..].to_string()),
            _ => positional.push(w),
        }
        i += 1;
    }
    let name = match positional.as_slice() {
        ["kubectl", "get", "secret" | "secrets", name] => Some(name.to_string()),
        ["kubectl", "get", res] => res
            .strip_prefix("secret/")
            .or_else(|| res.strip_prefix("secrets/"))
            .map(str::to_string),
        _ => None,
    };
    let (Some(name), Some("json")) = (name, output.as_deref()) else {
        // emulator wording
        return (
            1,
            "the emulator's run command only understands: kubectl get secret NAME [-n NAMESPACE] -o json\n".into(),
        );
    };
    match cluster.secrets.get(&(ns, name.clone())) {
        Some(s) => (
            0,
            serde_json::to_string_pretty(s).unwrap_or_default() + "\n",
        ),
        None => (
            1,
            format!("Error from server (NotFound): secrets \"{name}\" not found\n"),
        ),
    }
}

/// POST runCommand: accepted (202 + Location), result later at `commandResults/{id}`.
pub fn run_command(inner: &mut Inner, req: &Req, p: &ClusterPath) -> Result<Response, ArmError> {
    let c = cluster(inner, p)?;
    let body: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
    let Some(command) = body.get("command").and_then(Value::as_str) else {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'command' is required.",
        ));
    };
    let (exit_code, logs) = run_kubectl(c, command);
    let result = CommandResult {
        id: super::state::rand_hex(32),
        cluster_id: c.id(),
        due: req.now + inner.settings.op_duration,
        started_at: jiff::Timestamp::now(),
        exit_code,
        logs,
        api_version: req.api_version.to_string(),
    };
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&result.location(req.base)) {
        resp.headers_mut().insert("location", v);
    }
    super::lro::add_retry_after(&mut resp, inner.settings.op_duration);
    inner.command_results.insert(result.id.clone(), result);
    Ok(resp)
}

/// GET commandResults/{id}: 202 while running, then 200 with exit code and logs.
pub fn command_result(
    inner: &Inner,
    req: &Req,
    p: &ClusterPath,
    id: &str,
) -> Result<Response, ArmError> {
    let own = |r: &&CommandResult| {
        super::state::parse_cluster_id(&r.cluster_id)
            .is_some_and(|(s, g, n)| cluster_key(&s, &g, &n) == cluster_key(p.sub, p.rg, p.name))
    };
    let r = inner.command_results.get(id).filter(own).ok_or_else(|| {
        // emulator wording
        ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("Command {id} was not found."),
        )
    })?;
    if req.now < r.due {
        let mut resp = (
            StatusCode::ACCEPTED,
            axum::Json(json!({"id": r.id, "properties": {"provisioningState": "Running"}})),
        )
            .into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&r.location(req.base)) {
            resp.headers_mut().insert("location", v);
        }
        super::lro::add_retry_after(&mut resp, r.due.saturating_duration_since(req.now));
        return Ok(resp);
    }
    let body = json!({
        "id": r.id,
        "properties": {
            "provisioningState": "Succeeded",
            "exitCode": r.exit_code,
            "startedAt": r.started_at.to_string(),
            "finishedAt": r.started_at.to_string(),
            "logs": r.logs,
            "reason": "",
        }
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

impl ArmError {
    /// Replaces the error code.
    pub fn with_code(mut self, code: &str) -> Self {
        self.detail.code = code.to_string();
        self
    }
}

impl Inner {
    /// Completion of an agent-pool PUT.
    pub fn finish_scale(&mut self, cluster: &str, pool: &str) -> Result<(), ErrorDetail> {
        if let Some(c) = self.clusters.get_mut(cluster) {
            c.operation = None;
            if let Some(p) = c
                .pools
                .iter_mut()
                .find(|p| p.name.eq_ignore_ascii_case(pool))
            {
                p.provisioning_state = "Succeeded".into();
            }
        }
        Ok(())
    }

    /// Completion of a managed cluster DELETE. Computes still pointing at it break.
    pub fn finish_delete_cluster(&mut self, key: &str) -> Result<(), ErrorDetail> {
        let Some(c) = self.clusters.remove(key) else {
            return Ok(());
        };
        let id = c.id();
        let broken: Vec<String> = self
            .computes
            .iter()
            .filter(|(_, comp)| {
                comp.resource_id
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(&id))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in broken {
            // emulator wording
            let e = ErrorDetail::new(
                "ResourceNotFound",
                format!("The AKS cluster {id} of this compute was deleted."),
            );
            self.fail_compute(&k, vec![e]);
        }
        Ok(())
    }
}

/// GET kubernetesVersions of a location.
pub fn kubernetes_versions(inner: &Inner) -> Result<Response, ArmError> {
    let mut versions = inner.settings.kubernetes_versions.clone();
    versions.sort_by_key(|v| version_key(v));
    versions.dedup();
    let mut minors: Vec<String> = versions.iter().map(|v| minor_of(v)).collect();
    minors.dedup();
    let default_minor = minor_of(&inner.settings.default_version);
    let values: Vec<Value> = minors
        .iter()
        .enumerate()
        .map(|(i, minor)| {
            let next = minors.get(i + 1);
            let patches: BTreeMap<String, Value> = versions
                .iter()
                .filter(|v| &minor_of(v) == minor)
                .map(|v| {
                    let upgrades: Vec<&String> = versions
                        .iter()
                        .filter(|u| {
                            (&minor_of(u) == minor && version_key(u) > version_key(v))
                                || Some(&minor_of(u)) == next
                        })
                        .collect();
                    (v.clone(), json!({"upgrades": upgrades}))
                })
                .collect();
            json!({
                "version": minor,
                "isDefault": *minor == default_minor,
                "isPreview": false,
                "capabilities": {"supportPlan": ["KubernetesOfficial"]},
                "patchVersions": patches,
            })
        })
        .collect();
    Ok((StatusCode::OK, axum::Json(json!({"values": values}))).into_response())
}

/// `location eq 'westus'` → `westus`.
fn filter_location(filter: &str) -> Option<String> {
    let lower = filter.to_ascii_lowercase();
    let start = lower.find("location eq '")? + "location eq '".len();
    let end = filter[start..].find('\'')? + start;
    Some(filter[start..end].to_string())
}

/// GET Resource SKUs (virtual machines only), filtered by location.
pub fn skus(inner: &Inner, req: &Req) -> Result<Response, ArmError> {
    let locations: Vec<String> = match req.q("$filter") {
        Some(f) => vec![filter_location(f).ok_or_else(|| {
            // emulator wording
            ArmError::new(
                StatusCode::BAD_REQUEST,
                "InvalidFilterInQueryString",
                format!("Unsupported $filter '{f}'; the emulator understands \"location eq '<region>'\"."),
            )
        })?],
        None => {
            let mut l: Vec<String> = inner
                .workspaces
                .values()
                .map(|w| w.location.clone())
                .chain(inner.clusters.values().map(|c| c.location.clone()))
                .collect();
            l.sort();
            l.dedup();
            l
        }
    };
    let value: Vec<Value> = locations
        .iter()
        .flat_map(|loc| {
            inner.settings.vm_sizes.iter().map(move |s| {
                let cap = |n: &str, v: String| json!({"name": n, "value": v});
                json!({
                    "resourceType": "virtualMachines",
                    "name": s.name,
                    "tier": "Standard",
                    "size": s.name.strip_prefix("Standard_").unwrap_or(&s.name),
                    "family": s.family,
                    "locations": [loc],
                    "locationInfo": [{
                        "location": loc,
                        "zones": ["1", "2", "3"],
                        "zoneDetails": [{
                            "name": ["1", "2", "3"],
                            "capabilities": [{"name": "UltraSSDAvailable", "value": "True"}],
                        }],
                    }],
                    "capabilities": [
                        cap("vCPUs", s.vcpus.to_string()),
                        cap("vCPUsAvailable", s.vcpus.to_string()),
                        cap("MemoryGB", s.memory_gb.to_string()),
                        cap("HyperVGenerations", "V1,V2".into()),
                        cap("MaxDataDiskCount", (s.vcpus * 4).to_string()),
                        cap("LowPriorityCapable", "True".into()),
                        cap("PremiumIO", (s.name.contains("s_") || s.name.contains("DS")).to_string().replace("true", "True").replace("false", "False")),
                        cap("vCPUsPerCore", "1".into()),
                        cap("MaxNetworkInterfaces", "2".into()),
                    ],
                    "restrictions": [],
                })
            })
        })
        .collect();
    Ok((
        StatusCode::OK,
        axum::Json(json!({"value": value, "nextLink": null})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_parsing() {
        assert_eq!(
            filter_location("location eq 'westus'").as_deref(),
            Some("westus")
        );
        assert_eq!(
            filter_location("Location EQ 'EastUS'").as_deref(),
            Some("EastUS")
        );
        assert_eq!(filter_location("name eq 'x'"), None);
    }
}
