//! The data plane of each emulated AKS cluster: a tiny Kubernetes API under
//! `/aks/{key}/...` (plain http on the emulator's listener, bearer token per cluster),
//! reachable through the kubeconfigs `listClusterUserCredential` and `listKeys` return.
//! Also Azure ML's objects on a cluster, including the Secret `default/azuremlfessl`.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Status, StatusDetails, Time};
use serde_json::json;

use super::errors::ErrorDetail;
use super::state::{Cluster, Inner, TlsSecretView, rand_hex};

/// Namespace and name of Azure ML's TLS Secret.
pub const FESSL_NS: &str = "default";
/// See [`FESSL_NS`].
pub const FESSL_NAME: &str = "azuremlfessl";

/// Azure ML's objects installed on an attached/created cluster (names for assertions;
/// only Secrets are served by the data plane).
const AZUREML_COMPONENTS: [&str; 4] = [
    "namespace/azureml",
    // The v1 front end runs in `default` (Microsoft's migration steps annotate it there).
    "deployment/default/azureml-fe",
    "configmap/azureml/azuremlfeconfig",
    "serviceaccount/azureml/azureml-fe",
];

/// The kubeconfig of a cluster (user or admin credentials), pointing at the emulator.
pub fn kubeconfig(cluster: &Cluster, base: &str, admin: bool) -> String {
    let (user, token) = if admin {
        (
            format!("clusterAdmin_{}_{}", cluster.resource_group, cluster.name),
            &cluster.admin_token,
        )
    } else {
        (
            format!("clusterUser_{}_{}", cluster.resource_group, cluster.name),
            &cluster.user_token,
        )
    };
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster.name, "cluster": {"server": format!("{base}/aks/{}", cluster.key)}}],
        "contexts": [{"name": cluster.name, "context": {"cluster": cluster.name, "user": user}}],
        "current-context": cluster.name,
        "preferences": {},
        "users": [{"name": user, "user": {"token": token}}],
    });
    serde_saphyr::to_string(&doc).unwrap_or_default()
}

impl Cluster {
    /// Decoded `default/azuremlfessl`, if present.
    pub fn tls_secret(&self) -> Option<TlsSecretView> {
        let s = self
            .secrets
            .get(&(FESSL_NS.to_string(), FESSL_NAME.to_string()))?;
        let data = s.data.as_ref()?;
        let text = |k: &str| {
            data.get(k)
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .unwrap_or_default()
        };
        Some(TlsSecretView {
            cert_pem: text("cert.pem"),
            key_pem: text("key.pem"),
        })
    }

    /// Stores a Secret, or replaces the content of an existing one in place (same uid and
    /// creation time, new resourceVersion), as an update through the Kubernetes API does.
    pub fn put_secret(&mut self, ns: &str, name: &str, data: BTreeMap<String, Vec<u8>>) {
        let existing = self
            .secrets
            .get(&(ns.to_string(), name.to_string()))
            .map(|s| s.metadata.clone());
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                uid: existing
                    .as_ref()
                    .and_then(|m| m.uid.clone())
                    .or_else(|| Some(uuid::Uuid::new_v4().to_string())),
                resource_version: Some(format!("{}", rand::random::<u32>() % 1_000_000)),
                creation_timestamp: existing
                    .and_then(|m| m.creation_timestamp)
                    .or_else(|| Some(Time(jiff::Timestamp::now()))),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
            ..Default::default()
        };
        self.secrets.insert((ns.into(), name.into()), secret);
    }
}

/// Removes Azure ML's objects from a cluster, `azuremlfessl` included (what a detach does).
pub fn uninstall_azureml(cluster: &mut Cluster) {
    cluster.azureml_components.clear();
    cluster
        .secrets
        .remove(&(FESSL_NS.to_string(), FESSL_NAME.to_string()));
    cluster.attached_compute = None;
}

impl Inner {
    /// Installs Azure ML's objects on a cluster for a compute and writes its TLS Secret.
    pub fn install_azureml(
        &mut self,
        cluster_key: &str,
        compute_key: &str,
    ) -> Result<(), ErrorDetail> {
        if let Some(cl) = self.clusters.get_mut(cluster_key) {
            cl.azureml_components = AZUREML_COMPONENTS.iter().map(|s| s.to_string()).collect();
            cl.attached_compute = Some(compute_key.to_string());
        }
        self.apply_tls(cluster_key, compute_key)
    }

    /// Makes `azuremlfessl` and `clusterFqdn` match the compute's `sslConfiguration`, at the
    /// end of a create, attach or in-place update:
    /// - Disabled → no Secret; `clusterFqdn` is the cluster's own FQDN.
    /// - Enabled → the cert/key sent replace the Secret's content in place (kept when none
    ///   was sent again); `clusterFqdn` is the cname.
    /// - Auto → a certificate for `{label}{6 digits}.{region}.cloudapp.azure.com` (the
    ///   how-to's formula). A compute that already has a domain for this label keeps it and
    ///   its certificate, unless `renew` asks for a new certificate (same FQDN). A new label
    ///   gets a new random domain, or the label's earlier one with `overwriteExistingDomain`.
    ///   The certificate is self-signed (emulator's choice: Azure's is issued by a Microsoft CA).
    pub fn apply_tls(&mut self, cluster_key: &str, compute_key: &str) -> Result<(), ErrorDetail> {
        let Some(c) = self.computes.get(compute_key).cloned() else {
            return Ok(());
        };
        let Some(location) = self.clusters.get(cluster_key).map(|cl| cl.location.clone()) else {
            return Ok(());
        };
        let fqdn = match c.ssl.status.as_str() {
            "Enabled" => {
                if let (Some(m), Some(cl)) = (&c.pending_tls, self.clusters.get_mut(cluster_key)) {
                    cl.put_secret(
                        FESSL_NS,
                        FESSL_NAME,
                        BTreeMap::from([
                            ("cert.pem".to_string(), m.cert.clone().into_bytes()),
                            ("key.pem".to_string(), m.key.clone().into_bytes()),
                        ]),
                    );
                }
                c.ssl.cname.clone()
            }
            "Auto" => {
                let label = c.ssl.leaf_domain_label.clone().unwrap_or_default();
                let slot = (label.to_ascii_lowercase(), location.to_ascii_lowercase());
                let own = c
                    .cluster_fqdn
                    .clone()
                    .filter(|f| is_auto_domain(f, &label, &location));
                let has_cert = self
                    .clusters
                    .get(cluster_key)
                    .is_some_and(|cl| cl.tls_secret().is_some());
                if let Some(fqdn) = own.clone()
                    && has_cert
                    && !c.renew_tls
                {
                    // Nothing to issue: same domain, certificate in place.
                    if let Some(c) = self.computes.get_mut(compute_key) {
                        c.cluster_fqdn = Some(fqdn);
                    }
                    return Ok(());
                }
                let fqdn = match (own, self.leaf_domains.get(&slot)) {
                    (Some(f), _) => f,
                    (None, Some(f)) if c.ssl.overwrite_existing_domain => f.clone(),
                    _ => format!(
                        "{label}{:06}.{location}.cloudapp.azure.com",
                        rand::random::<u32>() % 1_000_000
                    )
                    .to_ascii_lowercase(),
                };
                self.leaf_domains.insert(slot, fqdn.clone());
                self.dns_records.insert(fqdn.clone());
                let (cert, key) = issue_certificate(&fqdn, self.settings.auto_certificate_lifetime)
                    .map_err(|e| {
                        ErrorDetail::new(
                            "InternalServerError",
                            format!("certificate generation failed: {e}"),
                        )
                    })?;
                if let Some(cl) = self.clusters.get_mut(cluster_key) {
                    cl.put_secret(
                        FESSL_NS,
                        FESSL_NAME,
                        BTreeMap::from([
                            ("cert.pem".to_string(), cert.into_bytes()),
                            ("key.pem".to_string(), key.into_bytes()),
                        ]),
                    );
                }
                Some(fqdn)
            }
            _ => {
                if let Some(cl) = self.clusters.get_mut(cluster_key) {
                    cl.secrets
                        .remove(&(FESSL_NS.to_string(), FESSL_NAME.to_string()));
                }
                None
            }
        };
        let fqdn = fqdn.or_else(|| self.clusters.get(cluster_key).map(|cl| cl.fqdn.clone()));
        // A Microsoft-issued name the compute no longer serves (TLS off, Custom, another
        // label) stops resolving.
        if let Some(old) = &c.cluster_fqdn
            && fqdn.as_deref() != Some(old.as_str())
        {
            self.dns_records.remove(&old.to_ascii_lowercase());
        }
        if let Some(c) = self.computes.get_mut(compute_key) {
            c.cluster_fqdn = fqdn;
        }
        Ok(())
    }
}

/// A self-signed certificate and key (PEM) for `fqdn`, valid from now for `lifetime`
/// (emulator's choice: Azure's are issued by a Microsoft CA).
fn issue_certificate(
    fqdn: &str,
    lifetime: std::time::Duration,
) -> Result<(String, String), rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(vec![fqdn.to_string()])?;
    // rcgen takes calendar dates: validity starts yesterday (clock skew) and ends
    // `lifetime` (rounded down to days) from today.
    let day = |offset_days: i64| {
        let z = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * offset_days))
            .unwrap_or(jiff::Timestamp::MAX)
            .to_zoned(jiff::tz::TimeZone::UTC);
        rcgen::date_time_ymd(i32::from(z.year()), z.month() as u8, z.day() as u8)
    };
    params.not_before = day(-1);
    params.not_after = day(i64::try_from(lifetime.as_secs() / 86_400).unwrap_or(365));
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// True when `fqdn` is the Auto-TLS domain formula's result for this label and region.
fn is_auto_domain(fqdn: &str, label: &str, location: &str) -> bool {
    let fqdn = fqdn.to_ascii_lowercase();
    let suffix = format!(".{}.cloudapp.azure.com", location.to_ascii_lowercase());
    fqdn.strip_suffix(&suffix)
        .and_then(|host| host.strip_prefix(&label.to_ascii_lowercase()))
        .is_some_and(|digits| digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// What the data plane does with a request.
pub enum KubeOutcome {
    /// Answer.
    Respond(Response),
    /// Unreachable API server (private cluster): drop the connection.
    Unreachable,
}

/// A Kubernetes `Status` error response.
pub fn status(
    code: StatusCode,
    reason: &str,
    message: String,
    details: Option<StatusDetails>,
) -> Response {
    let s = Status {
        code: Some(i32::from(code.as_u16())),
        details,
        message: Some(message),
        reason: Some(reason.into()),
        status: Some("Failure".into()),
        ..Default::default()
    };
    let mut v = serde_json::to_value(&s).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("kind".into(), json!("Status"));
        o.insert("apiVersion".into(), json!("v1"));
    }
    (code, axum::Json(v)).into_response()
}

fn ok_json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_value(value) {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
            None,
        ),
    }
}

/// Handles `/aks/{key}/{rest}`.
pub fn handle(
    inner: &mut Inner,
    method: &str,
    key: &str,
    rest: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> KubeOutcome {
    let Some((cluster_key, cluster)) = inner.clusters.iter().find(|(_, c)| c.key == key) else {
        return KubeOutcome::Respond(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
            None,
        ));
    };
    if !cluster.data_plane_reachable {
        return KubeOutcome::Unreachable;
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if token.is_empty() || (token != cluster.user_token && token != cluster.admin_token) {
        return KubeOutcome::Respond(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
            None,
        ));
    }
    let cluster_key = cluster_key.clone();
    let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
    if let Some(resp) = super::cluster_objects::handle(inner, &cluster_key, method, &segs, body) {
        return KubeOutcome::Respond(resp);
    }
    let Some(cluster) = inner.clusters.get(&cluster_key) else {
        return KubeOutcome::Unreachable;
    };
    if method != "GET" {
        return KubeOutcome::Respond(status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the emulated API server only serves GET, not {method}"),
            None,
        ));
    }
    let resp = match segs.as_slice() {
        ["version"] => {
            let v = &cluster.kubernetes_version;
            let mut parts = v.split('.');
            ok_json(&json!({
                "major": parts.next().unwrap_or("1"),
                "minor": parts.next().unwrap_or("0"),
                "gitVersion": format!("v{v}"),
                "gitCommit": rand_hex(40),
                "gitTreeState": "clean",
                "buildDate": "2025-01-01T00:00:00Z",
                "goVersion": "go1.22.5",
                "compiler": "gc",
                "platform": "linux/amd64",
            }))
        }
        ["api"] => ok_json(&json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("{}:443", cluster.fqdn)}],
        })),
        ["apis"] => ok_json(&json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})),
        ["api", "v1", "secrets"] => list_secrets(cluster, None),
        ["api", "v1", "namespaces", ns, "secrets"] => list_secrets(cluster, Some(ns)),
        ["api", "v1", "namespaces", ns, "secrets", name] => {
            match cluster.secrets.get(&(ns.to_string(), name.to_string())) {
                Some(s) => {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("kind".into(), json!("Secret"));
                        o.insert("apiVersion".into(), json!("v1"));
                    }
                    (StatusCode::OK, axum::Json(v)).into_response()
                }
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("secrets \"{name}\" not found"),
                    Some(StatusDetails {
                        name: Some(name.to_string()),
                        kind: Some("secrets".into()),
                        ..Default::default()
                    }),
                ),
            }
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
            None,
        ),
    };
    KubeOutcome::Respond(resp)
}

fn list_secrets(cluster: &Cluster, ns: Option<&str>) -> Response {
    let items: Vec<Secret> = cluster
        .secrets
        .iter()
        .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
        .map(|(_, s)| s.clone())
        .collect();
    let list = k8s_openapi::List::<Secret> {
        items,
        metadata: Default::default(),
    };
    ok_json(&list)
}
