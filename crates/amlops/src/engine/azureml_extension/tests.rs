//! Table tests of the `AzureMLExtension` decisions: what is written, when, and what the
//! status says — no I/O.

use std::time::Duration;

use crate::azure::error::{ApiError, ArmErrorDetail};
use crate::azure::model::{
    Extension, ExtensionIdentity, ExtensionProperties, ExtensionProvisioningState as State,
    ExtensionStatus, ManagedCluster,
};
use crate::azure::{AzureError, LroStyle, OperationHandle, OperationKind, OperationStatus as Poll};
use crate::crd::{
    AzureMLExtension, AzureMlExtensionStatus, ExtensionDeletionPolicy, OperationStatus,
    ProvisioningError,
};
use crate::engine::EngineConfig;
use crate::engine::body::TlsMaterial;
use crate::engine::observe::{Lookup, VerifiedTls};
use crate::tls::CertInfo;

use super::decide::{ExtensionDone, ExtensionWriteFailure};
use super::*;

const SUB: &str = "00000000-0000-0000-0000-000000000000";
const CLUSTER: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/shared";
const KEY_PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nS3CRET-KEY-MATERIAL\n-----END PRIVATE KEY-----\n";

fn cr(extra: serde_json::Value) -> AzureMLExtension {
    let mut spec = serde_json::json!({
        "cluster": {"resourceId": CLUSTER},
        "training": {"enabled": true},
        "inference": {
            "enabled": true,
            "tls": {"cname": "scoring.contoso.com", "secretRef": {"name": "scoring-tls"}}
        }
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "amlops.dev/v1alpha1",
        "kind": "AzureMLExtension",
        "metadata": {"name": "azureml", "namespace": "ml", "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

fn tls(cert: &str) -> VerifiedTls {
    VerifiedTls {
        material: TlsMaterial {
            cert: cert.into(),
            key: KEY_PEM.into(),
            cname: "scoring.contoso.com".into(),
        },
        info: CertInfo {
            sha256_fingerprint: format!("fp-{}", cert.len()),
            not_before: "2026-01-01T00:00:00Z".into(),
            not_after: "2027-01-01T00:00:00Z".into(),
            hostname: Some("scoring.contoso.com".into()),
            dns_names: vec!["scoring.contoso.com".into()],
        },
    }
}

const CERT_A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
const CERT_B: &str = "-----BEGIN CERTIFICATE-----\nBBBBBB\n-----END CERTIFICATE-----\n";

fn desired() -> ExtensionDesired {
    ExtensionDesired::new(&cr(serde_json::json!({})), Some(tls(CERT_A)), vec![])
}

fn aks(nodes: i32) -> ManagedCluster {
    serde_json::from_value(serde_json::json!({
        "id": CLUSTER,
        "name": "shared",
        "location": "eastus",
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "powerState": {"code": "Running"},
            "disableLocalAccounts": false,
            "agentPoolProfiles": [{"name": "nodepool1", "count": nodes}]
        }
    }))
    .unwrap()
}

/// Before an install: extension absent, provider registered, cluster fine, no other extension.
fn ready_to_install() -> ObservedExtension {
    ObservedExtension {
        extension: Lookup::Missing,
        provider_registered: Lookup::Found(true),
        cluster: Lookup::Found(aks(3)),
        ..ObservedExtension::default()
    }
}

/// What Azure holds after `d` was installed on a 3-node cluster in eastus.
fn installed(d: &ExtensionDesired, state: State) -> Extension {
    let body = d
        .body(&crate::azure::azureml_extension::ClusterFacts {
            id: CLUSTER.parse().unwrap(),
            location: "eastus".into(),
            node_count: Some(3),
        })
        .unwrap();
    Extension {
        id: Some(format!(
            "{CLUSTER}/providers/Microsoft.KubernetesConfiguration/extensions/azureml"
        )),
        name: Some("azureml".into()),
        resource_type: Some("Microsoft.KubernetesConfiguration/extensions".into()),
        identity: Some(ExtensionIdentity {
            identity_type: Some("SystemAssigned".into()),
            principal_id: Some("11111111-2222-3333-4444-555555555555".into()),
            tenant_id: None,
        }),
        system_data: None,
        properties: ExtensionProperties {
            extension_type: Some("Microsoft.AzureML.Kubernetes".into()),
            auto_upgrade_minor_version: Some(true),
            release_train: Some("stable".into()),
            configuration_settings: Some(body.properties.configuration_settings),
            current_version: Some("1.1.64".into()),
            provisioning_state: Some(state),
            ..ExtensionProperties::default()
        },
    }
}

fn found(e: Extension) -> ObservedExtension {
    ObservedExtension {
        extension: Lookup::Found(e),
        cluster: Lookup::Found(aks(3)),
        ..ObservedExtension::default()
    }
}

/// Status of an extension this resource installed with `d`'s settings.
fn owned(d: &ExtensionDesired) -> AzureMlExtensionStatus {
    AzureMlExtensionStatus {
        extension_id: Some(d.extension_id().unwrap().to_string()),
        settings_hash: Some(d.settings_hash()),
        protected_settings_hash: d.protected_settings_hash(),
        ..AzureMlExtensionStatus::default()
    }
}

fn cond<'a>(st: &'a AzureMlExtensionStatus, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {st:#?}"));
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

fn true_cond(st: &AzureMlExtensionStatus) -> (&str, &str) {
    let c = st
        .conditions
        .iter()
        .find(|c| c.status == "True")
        .unwrap_or_else(|| panic!("no true condition in {st:#?}"));
    (c.type_.as_str(), c.reason.as_str())
}

fn write_name(p: &ExtensionPlan) -> String {
    match &p.write {
        None => "-".into(),
        Some(ExtensionWrite::Put { kind, .. }) => format!("Put({})", kind.as_str()),
        Some(ExtensionWrite::Patch { .. }) => "Patch".into(),
        Some(ExtensionWrite::Delete { .. }) => "Delete".into(),
        Some(ExtensionWrite::ApplyInstanceTypes { .. }) => "ApplyInstanceTypes".into(),
        Some(ExtensionWrite::CopyTlsSecret { .. }) => "CopyTlsSecret".into(),
        Some(ExtensionWrite::AnnotateLegacyFrontEnd { .. }) => "AnnotateLegacyFrontEnd".into(),
    }
}

fn api(status: u16, code: &str, message: &str) -> AzureError {
    ApiError::from_response(
        "extension.put",
        reqwest::StatusCode::from_u16(status).unwrap(),
        format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#).as_bytes(),
        Default::default(),
        None,
    )
    .into()
}

fn handle() -> OperationHandle {
    OperationHandle {
        kind: OperationKind::Create,
        style: LroStyle::AsyncOperation,
        url: "https://management.azure.com/op/1".into(),
        retry_after: Some(Duration::from_secs(2)),
    }
}

fn no_secret(plan: &ExtensionPlan) {
    let text = format!("{plan:?} {:?}", plan.status);
    assert!(!text.contains("S3CRET"), "{text}");
    let json = serde_json::to_string(&plan.status).unwrap();
    assert!(!json.contains("S3CRET"), "{json}");
    for n in &plan.events {
        assert!(!n.message.contains("S3CRET"), "{}", n.message);
    }
}

type Edit<T> = fn(&mut T);

#[test]
fn every_preflight_failure_stalls_without_a_write() {
    let d = desired();
    // (name, desired change, observed change, reason)
    let rows: Vec<(&str, Edit<ExtensionDesired>, Edit<ObservedExtension>, &str)> = vec![
        (
            "provider",
            |_| {},
            |o| o.provider_registered = Lookup::Found(false),
            "ProviderNotRegistered",
        ),
        (
            "no cluster",
            |_| {},
            |o| o.cluster = Lookup::Missing,
            "AksClusterNotFound",
        ),
        (
            "service principal",
            |_| {},
            |o| {
                let mut c = aks(3);
                c.identity = None;
                c.properties.service_principal_profile =
                    Some(crate::azure::model::ServicePrincipalProfile {
                        client_id: Some("7c7f1a2e-0000-0000-0000-000000000001".into()),
                    });
                o.cluster = Lookup::Found(c);
            },
            "ClusterIdentityNotSupported",
        ),
        (
            "local accounts",
            |_| {},
            |o| {
                let mut c = aks(3);
                c.properties.disable_local_accounts = Some(true);
                o.cluster = Lookup::Found(c);
            },
            "LocalAccountsDisabled",
        ),
        (
            "stopped",
            |_| {},
            |o| {
                let mut c = aks(3);
                c.properties.power_state =
                    serde_json::from_value(serde_json::json!({"code": "Stopped"})).unwrap();
                o.cluster = Lookup::Found(c);
            },
            "ClusterStopped",
        ),
        (
            "HA on 2 nodes",
            |d| d.spec.inference.high_availability = Some(true),
            |o| o.cluster = Lookup::Found(aks(2)),
            "InsufficientNodes",
        ),
        (
            "another Azure ML extension",
            |_| {},
            |o| o.others = vec!["azureml-old".into()],
            "ExtensionExists",
        ),
        (
            "another one, even with adopt",
            |d| d.adopt = true,
            |o| o.others = vec!["azureml-old".into()],
            "ExtensionExists",
        ),
        ("no TLS Secret", |d| d.tls = None, |_| {}, "SecretNotFound"),
        (
            "bad TLS Secret",
            |d| {
                d.tls = None;
                d.tls_error = Some(Stall::new("InvalidCertificate", "expired"));
            },
            |_| {},
            "InvalidCertificate",
        ),
    ];
    for (name, dc, oc, reason) in rows {
        let mut d = d.clone();
        dc(&mut d);
        let mut o = ready_to_install();
        oc(&mut o);
        let plan = decide(
            &d,
            &o,
            &AzureMlExtensionStatus::default(),
            &EngineConfig::default(),
        );
        assert_eq!(write_name(&plan), "-", "{name}");
        assert_eq!(true_cond(&plan.status), ("Stalled", reason), "{name}");
        assert!(plan.status.extension_id.is_none(), "{name}");
        assert_eq!(plan.events.len(), 1, "{name}: one Warning");
        no_secret(&plan);
        // The same stall again is no news.
        let again = decide(&d, &o, &plan.status, &EngineConfig::default());
        assert!(again.events.is_empty(), "{name}");
    }
    // Azure refused the extension GET itself (409 MissingSubscriptionRegistration): the
    // same stall, not a wait on a 409 that never passes.
    let o = ObservedExtension {
        provider_registered: Lookup::Found(false),
        ..ObservedExtension::default()
    };
    let plan = decide(
        &d,
        &o,
        &AzureMlExtensionStatus::default(),
        &EngineConfig::default(),
    );
    assert_eq!(write_name(&plan), "-");
    assert_eq!(
        true_cond(&plan.status),
        ("Stalled", "ProviderNotRegistered")
    );
    // Two nodes without high availability asked for: the CLI's defaults, installed.
    let mut o = ready_to_install();
    o.cluster = Lookup::Found(aks(2));
    let plan = decide(
        &d,
        &o,
        &AzureMlExtensionStatus::default(),
        &EngineConfig::default(),
    );
    let Some(ExtensionWrite::Put { body, .. }) = &plan.write else {
        panic!("{plan:#?}")
    };
    let s = &body.properties.configuration_settings;
    assert_eq!(s["inferenceRouterHA"], "False");
    assert_eq!(s["clusterPurpose"], "DevTest");
    // The extension's own name in the list is no obstacle.
    let mut o = ready_to_install();
    o.others = vec!["AzureML".into()];
    let plan = decide(
        &d,
        &o,
        &AzureMlExtensionStatus::default(),
        &EngineConfig::default(),
    );
    assert_eq!(write_name(&plan), "Put(Create)");
}

#[test]
fn absent_is_one_put_whose_hashes_are_in_the_intent_and_undone_by_a_failure() {
    let d = desired();
    let cfg = EngineConfig::default();
    let before = AzureMlExtensionStatus::default();
    let plan = decide(&d, &ready_to_install(), &before, &cfg);
    assert_eq!(write_name(&plan), "Put(Create)");
    // The intent record: the id and the hashes of what is sent, before the write (an
    // install accepted right before a crash is not PATCHed again on restart).
    assert_eq!(
        plan.status.extension_id.as_deref(),
        Some(d.extension_id().unwrap().to_string().as_str())
    );
    assert_eq!(plan.status.settings_hash, Some(d.settings_hash()));
    assert_eq!(true_cond(&plan.status), ("Reconciling", "Installing"));
    let Some(ExtensionWrite::Put { body, .. }) = &plan.write else {
        unreachable!()
    };
    // The CLI's body: derived keys, protected PEM pair equal to what the hash covers.
    let s = &body.properties.configuration_settings;
    assert_eq!(s["sslCname"], "scoring.contoso.com");
    assert_eq!(s["location"], "eastus");
    assert_eq!(s["clusterId"], CLUSTER);
    assert_eq!(
        body.properties.configuration_protected_settings,
        d.protected_settings()
    );
    no_secret(&plan);

    // Azure refused for now (503): nothing counts as sent (the hashes are undone); tried
    // again.
    let failed = settle(
        &d,
        plan.clone(),
        Err(ExtensionWriteFailure::Azure(api(
            503,
            "ServiceUnavailable",
            "busy",
        ))),
        &before,
        &cfg,
    );
    assert!(failed.status.settings_hash.is_none());
    assert!(failed.status.protected_settings_hash.is_none());
    assert!(failed.status.operation.is_none());
    assert!(failed.requeue.is_some());
    // Azure refused for good: the id goes (nothing was created).
    let refused = settle(
        &d,
        plan.clone(),
        Err(ExtensionWriteFailure::Azure(api(400, "BadRequest", "no"))),
        &before,
        &cfg,
    );
    assert!(refused.status.extension_id.is_none());
    assert_eq!(true_cond(&refused.status).0, "Stalled");

    // Accepted: operation and hashes recorded, TLS facts (no key).
    let ok = settle(
        &d,
        plan,
        Ok(ExtensionDone::Started(handle())),
        &before,
        &cfg,
    );
    let op = ok.status.operation.as_ref().expect("operation");
    assert_eq!(op.url, "https://management.azure.com/op/1");
    assert_eq!(ok.requeue, Some(Duration::from_secs(2)));
    assert_eq!(ok.status.settings_hash, Some(d.settings_hash()));
    assert_eq!(
        ok.status.protected_settings_hash,
        d.protected_settings_hash()
    );
    let t = ok.status.tls.as_ref().expect("tls");
    assert_eq!(t.hostname.as_deref(), Some("scoring.contoso.com"));
    assert_eq!(t.not_after.as_deref(), Some("2027-01-01T00:00:00Z"));
    no_secret(&ok);
}

#[test]
fn operation_in_flight_unknown_states_and_failed_polls() {
    let d = desired();
    let cfg = EngineConfig::default();
    let mut st = owned(&d);
    st.operation = Some(OperationStatus {
        kind: OperationKind::Create,
        url: "https://management.azure.com/op/1".into(),
        style: None,
        started_at: None,
    });
    let o = ObservedExtension {
        poll: Some(Poll::InProgress {
            retry_after: Duration::from_secs(7),
        }),
        ..ObservedExtension::default()
    };
    let plan = decide(&d, &o, &st, &cfg);
    assert_eq!(write_name(&plan), "-");
    assert_eq!(plan.requeue, Some(Duration::from_secs(7)));
    assert_eq!(true_cond(&plan.status), ("Reconciling", "Installing"));

    // `Pending` (unknown) is running: wait, no write.
    let mut e = installed(&d, State::Succeeded);
    e.properties.provisioning_state = Some("Pending".parse().unwrap());
    let plan = decide(&d, &found(e), &owned(&d), &cfg);
    assert_eq!(write_name(&plan), "-");
    assert_eq!(true_cond(&plan.status), ("Reconciling", "AzureBusy"));
    assert_eq!(plan.status.provisioning_state.as_deref(), Some("Pending"));

    // A failed poll: the error is recorded and shown.
    let mut o = found(installed(&d, State::Succeeded));
    o.poll = Some(Poll::Failed {
        code: "ExtensionOperationFailed".into(),
        message: "pod healthcheck failed".into(),
    });
    let plan = decide(&d, &o, &st, &cfg);
    assert!(plan.status.operation.is_none());
    assert!(plan.events.iter().any(|n| n.reason == "OperationFailed"));
}

#[test]
fn steady_change_and_rotation() {
    let d = desired();
    let cfg = EngineConfig::default();
    // Steady: nothing to write, Ready, Azure's facts in the status.
    let plan = decide(
        &d,
        &found(installed(&d, State::Succeeded)),
        &owned(&d),
        &cfg,
    );
    assert_eq!(write_name(&plan), "-");
    assert_eq!(true_cond(&plan.status), ("Ready", "Installed"));
    assert_eq!(plan.status.version.as_deref(), Some("1.1.64"));
    assert_eq!(
        plan.status.principal_id.as_deref(),
        Some("11111111-2222-3333-4444-555555555555")
    );
    // As Azure answers on AKS: the principal under aksAssignedIdentity, none under identity.
    let mut on_aks = installed(&d, State::Succeeded);
    on_aks.properties.aks_assigned_identity =
        Some(serde_json::json!({"principalId": "66666666-7777-8888-9999-000000000000"}));
    on_aks.identity.as_mut().unwrap().principal_id = None;
    let aks_plan = decide(&d, &found(on_aks), &owned(&d), &cfg);
    assert_eq!(
        aks_plan.status.principal_id.as_deref(),
        Some("66666666-7777-8888-9999-000000000000")
    );
    assert_eq!(plan.status.provisioning_state.as_deref(), Some("Succeeded"));
    assert!(plan.status.tls.is_some());
    assert!(plan.requeue.is_some());

    // A settings change: one PATCH with only the changed keys, no protected settings.
    let mut changed = d.clone();
    changed.spec.add_ons.nvidia_device_plugin = true;
    changed
        .spec
        .node_selector
        .insert("agentpool".into(), "ml".into());
    let plan = decide(
        &changed,
        &found(installed(&d, State::Succeeded)),
        &owned(&d),
        &cfg,
    );
    let Some(ExtensionWrite::Patch {
        body,
        settings_hash,
        ..
    }) = &plan.write
    else {
        panic!("{plan:#?}")
    };
    let s = body.properties.configuration_settings.as_ref().unwrap();
    assert_eq!(
        s.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["installNvidiaDevicePlugin", "nodeSelector.agentpool"]
    );
    assert!(body.properties.configuration_protected_settings.is_none());
    assert!(body.properties.release_train.is_none());
    assert_eq!(settings_hash, &changed.settings_hash());
    assert!(plan.events.iter().any(|n| n.reason == "ImpactsEndpoints"));
    // The hash is not recorded before Azure accepted the PATCH.
    assert_eq!(plan.status.settings_hash, Some(d.settings_hash()));

    // A certificate rotation: one PATCH with ALL protected settings, no settings.
    let mut rotated = d.clone();
    rotated.tls = Some(tls(CERT_B));
    let plan = decide(
        &rotated,
        &found(installed(&d, State::Succeeded)),
        &owned(&d),
        &cfg,
    );
    let Some(ExtensionWrite::Patch {
        body,
        protected_hash,
        ..
    }) = &plan.write
    else {
        panic!("{plan:#?}")
    };
    let p = body
        .properties
        .configuration_protected_settings
        .as_ref()
        .unwrap();
    assert_eq!(
        p.keys().collect::<Vec<_>>(),
        vec!["scoringFe.sslCert", "scoringFe.sslKey"]
    );
    assert_eq!(p, &rotated.protected_settings());
    assert!(body.properties.configuration_settings.is_none());
    assert_eq!(protected_hash, &rotated.protected_settings_hash());
    no_secret(&plan);
    // Accepted (202): hashes and the new certificate's facts recorded.
    let ok = settle(
        &rotated,
        plan.clone(),
        Ok(ExtensionDone::Started(handle())),
        &owned(&d),
        &cfg,
    );
    assert_eq!(
        ok.status.protected_settings_hash,
        rotated.protected_settings_hash()
    );
    assert_eq!(
        ok.status.tls.as_ref().unwrap().sha256_fingerprint,
        Some(format!("fp-{}", CERT_B.len()))
    );
    // Refused (409 busy): the old hash stays, so the PATCH is sent again.
    let busy = settle(
        &rotated,
        plan,
        Err(ExtensionWriteFailure::Azure(api(
            409,
            "Conflict",
            "operation in progress",
        ))),
        &owned(&d),
        &cfg,
    );
    assert_eq!(
        busy.status.protected_settings_hash,
        d.protected_settings_hash()
    );

    // A version pin: the PATCH turns auto-upgrade off.
    let mut pinned = d.clone();
    pinned.spec.version = Some("1.1.39".into());
    let plan = decide(
        &pinned,
        &found(installed(&d, State::Succeeded)),
        &owned(&d),
        &cfg,
    );
    let Some(ExtensionWrite::Patch { body, .. }) = &plan.write else {
        panic!("{plan:#?}")
    };
    assert_eq!(body.properties.auto_upgrade_minor_version, Some(false));
    assert_eq!(body.properties.version.as_deref(), Some("1.1.39"));

    // Hashes lost but Azure already matches (settings): recorded, no write... except the
    // protected settings, which Azure never shows: those are sent whole.
    let mut lost = owned(&d);
    lost.settings_hash = None;
    let plan = decide(&d, &found(installed(&d, State::Succeeded)), &lost, &cfg);
    assert_eq!(write_name(&plan), "-");
    assert_eq!(plan.status.settings_hash, Some(d.settings_hash()));
    lost.protected_settings_hash = None;
    let plan = decide(&d, &found(installed(&d, State::Succeeded)), &lost, &cfg);
    let Some(ExtensionWrite::Patch { body, .. }) = &plan.write else {
        panic!("{plan:#?}")
    };
    assert!(body.properties.configuration_settings.is_none());
    assert!(body.properties.configuration_protected_settings.is_some());
}

#[test]
fn failed_is_retried_up_to_max_retries_then_stalls_with_azures_code() {
    let mut d = desired();
    d.max_retries = 2;
    let cfg = EngineConfig::default();
    let mut e = installed(&d, State::Failed);
    e.properties.error_info = Some(ArmErrorDetail {
        code: Some("ExtensionOperationFailed".into()),
        message: Some("… failed pre-install: pod healthcheck failed …".into()),
        details: vec![ArmErrorDetail {
            code: Some("E40007".into()),
            message: Some("INVALID_SSL_SETTING: the CNAME is not in the certificate".into()),
            ..ArmErrorDetail::default()
        }],
        ..ArmErrorDetail::default()
    });
    e.properties.statuses = Some(vec![ExtensionStatus {
        code: Some("ExtensionOperationFailed".into()),
        level: Some("Error".into()),
        message: Some("… failed pre-install: pod healthcheck failed …".into()),
        ..ExtensionStatus::default()
    }]);
    let mut o = found(e.clone());
    o.provider_registered = Lookup::Found(true);
    let mut st = owned(&d);
    for n in 1..=2u32 {
        let plan = decide(&d, &o, &st, &cfg);
        assert_eq!(write_name(&plan), "Put(Update)", "retry {n}");
        assert_eq!(plan.status.retries, Some(n));
        assert_eq!(plan.status.provisioning_errors.len(), 2);
        assert_eq!(plan.status.provisioning_errors[1].code, "E40007");
        assert!(
            plan.events
                .iter()
                .any(|x| x.reason == "RetryingFailedExtension")
        );
        st = plan.status;
    }
    let plan = decide(&d, &o, &st, &cfg);
    assert_eq!(write_name(&plan), "-");
    let (status, reason, message) = cond(&plan.status, "Stalled");
    assert_eq!((status, reason), ("True", "ExtensionFailed"));
    assert!(message.contains("E40007 INVALID_SSL_SETTING"), "{message}");
    // A changed spec is a new attempt, not a retry: sent, and the count starts again.
    let mut changed = d.clone();
    changed.spec.add_ons.dcgm_exporter = true;
    let plan = decide(&changed, &o, &st, &cfg);
    assert_eq!(write_name(&plan), "Put(Update)");
    assert_eq!(plan.status.retries, Some(0));
    assert!(
        plan.events
            .iter()
            .all(|x| x.reason != "RetryingFailedExtension")
    );
    // No retries allowed: stalls at once…
    d.max_retries = 0;
    let plan = decide(&d, &o, &owned(&d), &cfg);
    assert_eq!(true_cond(&plan.status), ("Stalled", "ExtensionFailed"));
    // …and a changed spec is still sent (the migration settings after an E45005, say).
    let mut changed = d.clone();
    changed.spec.migration.from_legacy_azure_ml_fe = true;
    let plan = decide(&changed, &o, &owned(&d), &cfg);
    assert_eq!(write_name(&plan), "Put(Update)");
}

#[test]
fn someone_elses_extension_is_adopted_only_on_request() {
    let d = desired();
    let cfg = EngineConfig::default();
    let o = found(installed(&d, State::Succeeded));
    let plan = decide(&d, &o, &AzureMlExtensionStatus::default(), &cfg);
    assert_eq!(true_cond(&plan.status), ("Stalled", "ExtensionExists"));
    assert_eq!(write_name(&plan), "-");
    let mut adopt = d.clone();
    adopt.adopt = true;
    let plan = decide(&adopt, &o, &AzureMlExtensionStatus::default(), &cfg);
    assert!(plan.events.iter().any(|n| n.reason == "Adopted"));
    assert!(plan.status.extension_id.is_some());
    // Protected settings cannot be read back: they are sent, all of them.
    let Some(ExtensionWrite::Patch { body, .. }) = &plan.write else {
        panic!("{plan:#?}")
    };
    assert!(body.properties.configuration_protected_settings.is_some());
    // An extension of another type under this name is never taken.
    let mut other = installed(&d, State::Succeeded);
    other.properties.extension_type = Some("Microsoft.Flux".into());
    let plan = decide(
        &adopt,
        &found(other),
        &AzureMlExtensionStatus::default(),
        &cfg,
    );
    assert_eq!(true_cond(&plan.status), ("Stalled", "ExtensionExists"));
}

#[test]
fn deletion_waits_while_in_use_then_deletes_or_orphans() {
    let cfg = EngineConfig::default();
    let mut d = desired();
    d.deleting = true;
    d.in_use = vec!["team-a".into(), "team-b".into()];
    let o = found(installed(&d, State::Succeeded));
    let plan = decide(&d, &o, &owned(&d), &cfg);
    assert_eq!(write_name(&plan), "-");
    assert!(!plan.finished);
    let (status, reason, message) = cond(&plan.status, "Reconciling");
    assert_eq!((status, reason), ("True", "InUse"));
    assert!(message.contains("team-a, team-b"), "{message}");

    d.in_use.clear();
    let plan = decide(&d, &o, &owned(&d), &cfg);
    assert_eq!(write_name(&plan), "Delete");
    assert!(!plan.finished);
    // Deleting in Azure: wait.
    let plan = decide(&d, &found(installed(&d, State::Deleting)), &owned(&d), &cfg);
    assert_eq!(write_name(&plan), "-");
    assert!(!plan.finished);
    // Gone (404): finished.
    let gone = ObservedExtension {
        extension: Lookup::Missing,
        ..ObservedExtension::default()
    };
    let plan = decide(&d, &gone, &owned(&d), &cfg);
    assert!(plan.finished);
    assert_eq!(write_name(&plan), "-");

    // Orphan: finished at once, even in use; never installed: nothing to delete.
    let mut orphan = d.clone();
    orphan.deletion_policy = ExtensionDeletionPolicy::Orphan;
    orphan.in_use = vec!["team-a".into()];
    let plan = decide(&orphan, &o, &owned(&d), &cfg);
    assert!(plan.finished);
    assert_eq!(write_name(&plan), "-");
    let plan = decide(&d, &o, &AzureMlExtensionStatus::default(), &cfg);
    assert!(plan.finished);
    assert_eq!(write_name(&plan), "-");
    let _ = SUB;
}

#[test]
fn hashes_follow_the_spec_and_the_certificate_only() {
    let d = desired();
    let mut e = d.clone();
    e.in_use = vec!["x".into()];
    e.max_retries = 9;
    assert_eq!(d.settings_hash(), e.settings_hash());
    e.spec.extra_settings.insert("a".into(), "b".into());
    assert_ne!(d.settings_hash(), e.settings_hash());
    let mut r = d.clone();
    r.tls = Some(tls(CERT_B));
    assert_eq!(d.settings_hash(), r.settings_hash());
    assert_ne!(d.protected_settings_hash(), r.protected_settings_hash());
    // No TLS: no protected settings.
    let plain = ExtensionDesired::new(
        &cr(serde_json::json!({"inference": {"enabled": true, "tls": {"mode": "Disabled"}}})),
        None,
        vec![],
    );
    assert!(plain.protected_settings().is_empty());
    assert!(plain.protected_settings_hash().is_none());
    // Debug never shows the key.
    assert!(!format!("{d:?}").contains("S3CRET"));
}

/// An extension amlops installed and someone uninstalled: installed again, with a Warning.
#[test]
fn an_extension_uninstalled_outside_amlops_is_installed_again() {
    let d = desired();
    let plan = decide(
        &d,
        &ready_to_install(),
        &owned(&d),
        &EngineConfig::default(),
    );
    assert!(
        write_name(&plan).starts_with("Put"),
        "{}",
        write_name(&plan)
    );
    assert!(
        plan.events
            .iter()
            .any(|n| n.warning && n.reason == "ExtensionMissing"),
        "{:?}",
        plan.events
    );
    // A first install says nothing of the kind.
    let first = decide(
        &d,
        &ready_to_install(),
        &AzureMlExtensionStatus::default(),
        &EngineConfig::default(),
    );
    assert!(first.events.iter().all(|n| n.reason != "ExtensionMissing"));
}

fn with_small_type(mut d: ExtensionDesired) -> ExtensionDesired {
    d.spec.instance_types.insert(
        "small".into(),
        serde_json::from_value(serde_json::json!({"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}})).unwrap(),
    );
    d
}

/// (case, instance types wanted, cluster view, minutes since Azure last modified the
/// extension, status has the cluster objects hash already) → (true condition, reason,
/// applies, prunes, cluster objects hash recorded, router address).
#[test]
fn cluster_objects_after_succeeded() {
    use super::cluster::{ClusterView, InCluster, instance_type_object};
    type Row = (
        &'static str,
        bool,
        fn(&ExtensionDesired) -> ClusterView,
        i64,
        bool,
        (
            &'static str,
            &'static str,
            Vec<&'static str>,
            Vec<&'static str>,
            bool,
            Option<&'static str>,
        ),
    );
    fn read(
        types: Vec<(&str, (Option<String>, serde_json::Value))>,
        crd: bool,
        router: Option<&str>,
    ) -> ClusterView {
        ClusterView::Read(InCluster {
            instance_type_crd: crd,
            instance_types: types.into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
            router_address: router.map(str::to_string),
        })
    }
    let rows: Vec<Row> = vec![
        (
            "nothing read (not due)",
            true,
            |_| ClusterView::NotRead,
            0,
            true,
            ("Ready", "Installed", vec![], vec![], true, None),
        ),
        (
            "CRD not served yet",
            true,
            |_| read(vec![], false, Some("20.1.2.3")),
            1,
            false,
            (
                "Reconciling",
                "WaitingForInstanceTypeCRD",
                vec![],
                vec![],
                false,
                Some("20.1.2.3"),
            ),
        ),
        (
            "CRD missing for 11 minutes",
            true,
            |_| read(vec![], false, Some("20.1.2.3")),
            11,
            false,
            (
                "Stalled",
                "InstanceTypeCRDMissing",
                vec![],
                vec![],
                false,
                Some("20.1.2.3"),
            ),
        ),
        (
            "CRD served, nothing applied",
            true,
            |_| read(vec![], true, Some("20.1.2.3")),
            1,
            false,
            (
                "Reconciling",
                "ApplyingInstanceTypes",
                vec!["small"],
                vec![],
                false,
                Some("20.1.2.3"),
            ),
        ),
        (
            "applied: Ready, recorded",
            true,
            |d| {
                let obj =
                    instance_type_object(&d.owner(), "small", &d.spec.instance_types["small"]);
                read(
                    vec![("small", (Some(d.owner()), obj["spec"].clone()))],
                    true,
                    Some("20.1.2.3"),
                )
            },
            1,
            false,
            ("Ready", "Installed", vec![], vec![], true, Some("20.1.2.3")),
        ),
        (
            "one of ours no longer wanted",
            true,
            |d| {
                let obj =
                    instance_type_object(&d.owner(), "small", &d.spec.instance_types["small"]);
                read(
                    vec![
                        ("small", (Some(d.owner()), obj["spec"].clone())),
                        ("old", (Some(d.owner()), obj["spec"].clone())),
                    ],
                    true,
                    Some("20.1.2.3"),
                )
            },
            1,
            false,
            (
                "Reconciling",
                "ApplyingInstanceTypes",
                vec![],
                vec!["old"],
                false,
                Some("20.1.2.3"),
            ),
        ),
        (
            "no instance types, no CRD needed",
            false,
            |_| read(vec![], false, Some("20.1.2.3")),
            30,
            false,
            ("Ready", "Installed", vec![], vec![], true, Some("20.1.2.3")),
        ),
        (
            "load balancer without an address: read again next time",
            false,
            |_| read(vec![], false, None),
            1,
            false,
            ("Ready", "Installed", vec![], vec![], false, None),
        ),
        (
            "unreachable, instance types wanted",
            true,
            |_| {
                ClusterView::Unreachable(
                    "the API server cannot be reached (private cluster?)".into(),
                )
            },
            1,
            false,
            ("Stalled", "ClusterUnreachable", vec![], vec![], false, None),
        ),
        (
            "unreachable, only the router's address wanted",
            false,
            |_| ClusterView::Unreachable("no credential".into()),
            1,
            false,
            ("Ready", "Installed", vec![], vec![], true, None),
        ),
    ];
    let cfg = EngineConfig::default();
    for (
        case,
        types,
        view,
        minutes,
        hashed,
        (cond_type, reason, applies, prunes, recorded, router),
    ) in rows
    {
        let d = if types {
            with_small_type(desired())
        } else {
            desired()
        };
        let mut e = installed(&d, State::Succeeded);
        let now = jiff::Timestamp::now();
        e.system_data = Some(crate::azure::model::SystemData {
            last_modified_at: Some((now - jiff::SignedDuration::from_mins(minutes)).to_string()),
        });
        let mut o = found(e);
        o.in_cluster = view(&d);
        o.now = Some(now);
        let mut st = owned(&d);
        if hashed {
            st.cluster_objects_hash = Some(d.cluster_objects_hash());
        }
        let plan = decide(&d, &o, &st, &cfg);
        assert_eq!(true_cond(&plan.status), (cond_type, reason), "{case}");
        match &plan.write {
            Some(ExtensionWrite::ApplyInstanceTypes {
                apply,
                prune,
                cluster,
            }) => {
                let names: Vec<&str> = apply
                    .iter()
                    .map(|o| o["metadata"]["name"].as_str().unwrap())
                    .collect();
                assert_eq!(
                    (names, prune.iter().map(String::as_str).collect::<Vec<_>>()),
                    (applies.clone(), prunes.clone()),
                    "{case}"
                );
                assert_eq!(cluster.to_string(), CLUSTER, "{case}");
            }
            Some(w) => panic!("{case}: unexpected write {w:?}"),
            None => assert!(applies.is_empty() && prunes.is_empty(), "{case}: no write"),
        }
        assert_eq!(
            plan.status.cluster_objects_hash.is_some(),
            recorded,
            "{case}"
        );
        let router_unknown = plan
            .events
            .iter()
            .any(|n| n.warning && n.reason == "RouterAddressUnknown");
        assert_eq!(
            router_unknown,
            case == "unreachable, only the router's address wanted",
            "{case}"
        );
        if !hashed {
            assert_eq!(plan.status.router_address.as_deref(), router, "{case}");
        }
        if cond_type == "Ready" && types && !hashed {
            assert_eq!(
                plan.status.instance_types,
                vec!["small".to_string()],
                "{case}"
            );
        }
        match reason {
            "WaitingForInstanceTypeCRD" => assert_eq!(plan.requeue, Some(cfg.busy_poll), "{case}"),
            "InstanceTypeCRDMissing" | "ClusterUnreachable" => {
                assert!(plan.requeue.is_some(), "{case}: tried again at the resync")
            }
            // A write's requeue is settle's.
            _ if plan.write.is_some() => {}
            _ => assert!(plan.requeue.is_some(), "{case}"),
        }
    }
}

#[test]
fn a_failed_install_shows_the_health_checks_failing_lines() {
    let d = desired();
    let mut o = found(installed(&d, State::Failed));
    o.provider_registered = Lookup::Found(true);
    o.health = vec![ProvisioningError {
        code: "E45005".into(),
        message: "Azureml Fe deployment confict".into(),
    }];
    let mut st = owned(&d);
    st.retries = Some(d.max_retries);
    let plan = decide(&d, &o, &st, &EngineConfig::default());
    let (_, reason, message) = cond(&plan.status, "Stalled");
    assert_eq!(reason, "ExtensionFailed");
    assert!(
        message.contains("E45005 Azureml Fe deployment confict"),
        "{message}"
    );
    assert!(
        plan.status
            .provisioning_errors
            .iter()
            .any(|e| e.code == "E45005")
    );
}

fn cluster_secret(cert: &str) -> ExtensionDesired {
    let mut d = ExtensionDesired::new(&cr(serde_json::json!({})), Some(tls(cert)), vec![]);
    if let Some(t) = d.spec.inference.tls.as_mut() {
        t.delivery = crate::crd::TlsDelivery::ClusterSecret;
    }
    d
}

#[test]
fn cluster_secret_delivery_copies_the_pair_before_the_write_that_names_it() {
    let cfg = EngineConfig::default();
    let d = cluster_secret(CERT_A);
    assert!(d.protected_settings().is_empty(), "nothing protected");
    // Install: the copy first, then the PUT naming it.
    let plan = decide(
        &d,
        &ready_to_install(),
        &AzureMlExtensionStatus::default(),
        &cfg,
    );
    assert_eq!(write_name(&plan), "CopyTlsSecret");
    assert_eq!(true_cond(&plan.status), ("Reconciling", "CopyingTLSSecret"));
    let Some(ExtensionWrite::CopyTlsSecret { name, hash, .. }) = &plan.write else {
        unreachable!()
    };
    assert_eq!(name, "scoring-tls");
    let shown = format!("{plan:?}");
    assert!(!shown.contains("S3CRET"), "key in Debug: {shown}");
    let copied = settle(
        &d,
        plan.clone(),
        Ok(ExtensionDone::Finished),
        &AzureMlExtensionStatus::default(),
        &cfg,
    );
    assert_eq!(
        copied.status.cluster_secret_hash.as_deref(),
        Some(hash.as_str())
    );
    let plan = decide(&d, &ready_to_install(), &copied.status, &cfg);
    let Some(ExtensionWrite::Put { body, .. }) = &plan.write else {
        panic!("{}", write_name(&plan))
    };
    let settings = &body.properties.configuration_settings;
    assert_eq!(
        settings.get("sslSecret").map(String::as_str),
        Some("scoring-tls")
    );
    assert_eq!(
        settings.get("scoringFe.sslSecret").map(String::as_str),
        Some("scoring-tls")
    );
    assert!(body.properties.configuration_protected_settings.is_empty());

    // Rotation: the Secret changed. The copy first, then a PATCH naming the Secret again
    // (Microsoft's rotation step), no protected settings.
    let mut st = owned(&d);
    st.cluster_secret_hash = d.tls_pair_hash();
    let rotated = cluster_secret(CERT_B);
    let o = found(installed(&d, State::Succeeded));
    let plan = decide(&rotated, &o, &st, &cfg);
    assert_eq!(write_name(&plan), "CopyTlsSecret");
    st.cluster_secret_hash = rotated.tls_pair_hash();
    let plan = decide(&rotated, &o, &st, &cfg);
    let Some(ExtensionWrite::Patch { body, .. }) = &plan.write else {
        panic!("{}", write_name(&plan))
    };
    let p = &body.properties;
    assert!(p.configuration_protected_settings.is_none());
    let keys: Vec<&str> = p
        .configuration_settings
        .as_ref()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, vec!["scoringFe.sslSecret", "sslCname", "sslSecret"]);
    // Steady once Azure took it.
    let mut st = settle(&rotated, plan, Ok(ExtensionDone::Finished), &st, &cfg).status;
    st.cluster_objects_hash = Some(rotated.cluster_objects_hash());
    let plan = decide(&rotated, &o, &st, &cfg);
    assert_eq!(write_name(&plan), "-");
    assert_eq!(true_cond(&plan.status), ("Ready", "Installed"));
}

#[test]
fn cluster_write_failures_per_kind() {
    use crate::engine::target_cluster::Failure;
    let cfg = EngineConfig::default();
    let d = cluster_secret(CERT_A);
    let st = AzureMlExtensionStatus::default();
    let copy = decide(&d, &ready_to_install(), &st, &cfg);
    let apply = {
        let mut plan = ExtensionPlan::new(st.clone());
        plan.write = Some(ExtensionWrite::ApplyInstanceTypes {
            cluster: CLUSTER.parse().unwrap(),
            apply: vec![],
            prune: vec![],
        });
        plan
    };
    let annotate = {
        let mut plan = ExtensionPlan::new(st.clone());
        plan.write = Some(ExtensionWrite::AnnotateLegacyFrontEnd {
            cluster: CLUSTER.parse().unwrap(),
        });
        plan
    };
    /// (case, plan, failure) → (condition, reason, requeued)
    type Row<'a> = (
        &'a str,
        &'a ExtensionPlan,
        Failure,
        (&'a str, &'a str, bool),
    );
    let rows: Vec<Row> = vec![
        (
            "annotation refused",
            &annotate,
            Failure::Refused,
            ("Stalled", "LegacyFrontEndNotAnnotated", false),
        ),
        (
            "annotation, unreachable",
            &annotate,
            Failure::Unreachable,
            ("Stalled", "ClusterUnreachable", true),
        ),
        (
            "copy refused",
            &copy,
            Failure::Refused,
            ("Stalled", "ClusterSecretRejected", false),
        ),
        (
            "copy, unreachable",
            &copy,
            Failure::Unreachable,
            ("Stalled", "ClusterUnreachable", true),
        ),
        (
            "copy, passing",
            &copy,
            Failure::Passing,
            ("Reconciling", "ReconcileError", true),
        ),
        (
            "apply refused",
            &apply,
            Failure::Refused,
            ("Stalled", "InstanceTypeRejected", false),
        ),
        (
            "apply, unreachable",
            &apply,
            Failure::Unreachable,
            ("Stalled", "ClusterUnreachable", true),
        ),
    ];
    for (case, plan, failure, (c, reason, requeued)) in rows {
        let out = settle(
            &d,
            plan.clone(),
            Err(ExtensionWriteFailure::Cluster {
                failure,
                why: "Secret azureml/scoring-tls: the API server answered 403 Forbidden".into(),
            }),
            &st,
            &cfg,
        );
        assert_eq!(true_cond(&out.status), (c, reason), "{case}");
        assert_eq!(out.requeue.is_some(), requeued, "{case}");
        assert!(
            out.status.cluster_secret_hash.is_none(),
            "{case}: nothing copied"
        );
    }
}

/// (case, legacy front end observed, migration on) → (true condition, reason, write).
#[test]
fn a_legacy_front_end_before_the_install() {
    type Row<'a> = (&'a str, Lookup<bool>, bool, (&'a str, &'a str, &'a str));
    let rows: Vec<Row> = vec![
        (
            "none",
            Lookup::Missing,
            false,
            ("Reconciling", "Installing", "Put(Create)"),
        ),
        (
            "not read (cluster unreachable): Azure's health check decides",
            Lookup::NotRead,
            false,
            ("Reconciling", "Installing", "Put(Create)"),
        ),
        (
            "present, no migration: E45005 foreseen",
            Lookup::Found(false),
            false,
            ("Stalled", "LegacyFrontEndPresent", "-"),
        ),
        (
            "present, migration, not annotated yet",
            Lookup::Found(false),
            true,
            (
                "Reconciling",
                "AnnotatingLegacyFrontEnd",
                "AnnotateLegacyFrontEnd",
            ),
        ),
        (
            "present, migration, annotated",
            Lookup::Found(true),
            true,
            ("Reconciling", "Installing", "Put(Create)"),
        ),
    ];
    for (case, legacy, migrate, (c, reason, write)) in rows {
        let mut d = desired();
        d.spec.migration.from_legacy_azure_ml_fe = migrate;
        let mut o = ready_to_install();
        o.legacy_front_end = legacy;
        let plan = decide(
            &d,
            &o,
            &AzureMlExtensionStatus::default(),
            &EngineConfig::default(),
        );
        assert_eq!(true_cond(&plan.status), (c, reason), "{case}");
        assert_eq!(write_name(&plan), write, "{case}");
    }
}

#[test]
fn a_setting_removed_from_the_spec_is_removed_by_a_whole_put() {
    // Installed with a node selector; the spec drops it. A PATCH cannot remove
    // `nodeSelector.agentpool`: the whole body is sent again, keeping what Azure chose for
    // the settings the spec leaves unset.
    let before = ExtensionDesired::new(
        &cr(serde_json::json!({"nodeSelector": {"agentpool": "ml"}})),
        Some(tls(CERT_A)),
        vec![],
    );
    let mut e = installed(&before, State::Succeeded);
    if let Some(c) = e.properties.configuration_settings.as_mut() {
        c.insert("inferenceRouterHA".into(), "False".into());
    }
    let after = desired();
    let plan = decide(&after, &found(e), &owned(&before), &EngineConfig::default());
    let Some(ExtensionWrite::Put { kind, body, .. }) = &plan.write else {
        panic!("{}", write_name(&plan))
    };
    assert_eq!(*kind, OperationKind::Update);
    let settings = &body.properties.configuration_settings;
    assert!(
        !settings.contains_key("nodeSelector.agentpool"),
        "{settings:?}"
    );
    assert_eq!(
        settings.get("inferenceRouterHA").map(String::as_str),
        Some("False")
    );
    assert!(
        plan.events.iter().any(|n| n.warning
            && n.reason == "RemovingSettings"
            && n.message.contains("nodeSelector.agentpool")),
        "{:?}",
        plan.events
    );
    // Nothing removed: a PATCH, as before.
    let plan = decide(
        &after,
        &found(installed(&after, State::Succeeded)),
        &owned(&before),
        &EngineConfig::default(),
    );
    assert_ne!(write_name(&plan), "Put(Update)");
}
