//! The Kubernetes-compute path, Azure side: amlops' ARM client against the emulator over
//! real HTTP — cluster extensions (the Azure ML extension body built as Azure's CLI builds
//! it), provider registration, `Kubernetes` computes, every failure outcome with its code and
//! message, the objects the extension leaves on the emulated cluster (through `kube::Client`),
//! the official examples round-tripping, and bodies validated by `swagger_check.py`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amlops::azure::azureml_extension::{
    AzureMlExtensionSpec, ClusterFacts, InferenceSpec, InferenceTls, RouterServiceType,
    VersionPolicy,
};
use amlops::azure::model::{
    Extension, ExtensionPatch, ExtensionPatchProperties, ExtensionProvisioningState,
    ExtensionRequest, ExtensionRequestProperties, KubernetesComputeResource,
    ManagedServiceIdentity, ProtectedSettings, ProvisioningState,
};
use amlops::azure::{
    ArmClient, ArmClientConfig, AzureCloud, AzureError, CredentialConfig, ExtensionId, LroStart,
    OperationHandle, OperationStatus, ResourceId, Secret,
};
use amlops_emulator::{
    ClusterSeed, ClusterTraits, ClusterTraitsSeed, DEFAULT_SUBSCRIPTION, Emulator, EmulatorConfig,
    EmulatorHandle, ExtensionSeed, FaultKind, FaultMatch, FaultRule, KubernetesPathSeed, PoolSeed,
    ProviderSeed, RoleGapSeed,
};
use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret as KubeSecret, Service};
use kube::api::{DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

const SUB: &str = DEFAULT_SUBSCRIPTION;
const SPECS: &str = "/work/shared/azure-specs";
const SWAGGER_CHECK: &str = "/work/shared/tools/swagger_check.py";
const EXT_SPEC: &str = "kubernetesconfiguration-2025-03-01/extensions.excerpt.json";
const EXT_COMMON: &str = "kubernetesconfiguration-common-2023-05-01-preview/common.excerpt.json";
const MLS_SPEC: &str = "mls-2025-09-01/machineLearningServices.compute-excerpt.json";

// ---- harness ----------------------------------------------------------------------------

struct Ctx {
    emu: EmulatorHandle,
    arm: ArmClient,
    http: reqwest::Client,
}

impl Ctx {
    async fn new() -> Self {
        let emu = Emulator::start(EmulatorConfig::for_tests())
            .await
            .expect("emulator");
        emu.seed_kubernetes_path(&KubernetesPathSeed {
            crd_delay_ms: Some(0),
            reuse_window_secs: Some(30.0),
            ..Default::default()
        })
        .unwrap();
        let mut cfg = ArmClientConfig::new(
            AzureCloud::custom(emu.base_url().parse().unwrap()),
            CredentialConfig::StaticToken(Secret::new(emu.token())),
        );
        cfg.default_poll_interval = Duration::from_millis(10);
        let arm = ArmClient::new(cfg).unwrap();
        Self {
            emu,
            arm,
            http: reqwest::Client::new(),
        }
    }

    fn cluster(&self, name: &str, nodes: i64) -> ResourceId {
        self.emu.seed_aks_cluster(
            SUB,
            ClusterSeed {
                resource_group: "aks-rg".into(),
                name: name.into(),
                agent_pools: vec![PoolSeed {
                    count: nodes,
                    ..PoolSeed::default()
                }],
                ..ClusterSeed::default()
            },
        );
        ResourceId::managed_cluster(SUB, "aks-rg", name).unwrap()
    }

    /// Polls until the operation ends (instant operations in tests).
    async fn wait(&self, handle: &OperationHandle) -> OperationStatus {
        for _ in 0..200 {
            let s = self.arm.poll(handle).await.expect("poll");
            if s.is_terminal() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("operation did not finish: {handle:?}");
    }

    async fn finish<T>(&self, start: LroStart<T>) -> OperationStatus {
        match start {
            LroStart::Started(h) => self.wait(&h).await,
            LroStart::Done(_) => OperationStatus::Succeeded,
        }
    }

    async fn kube(&self, cluster: &ResourceId) -> kube::Client {
        let kc = self
            .arm
            .list_cluster_admin_credential(cluster)
            .await
            .unwrap()
            .parse()
            .unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    }

    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.emu.base_url())
        };
        let mut rb = self.http.request(method, url).bearer_auth(self.emu.token());
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, headers, body)
    }
}

fn self_signed(host: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn spec(cluster: &ResourceId, nodes: i64) -> AzureMlExtensionSpec {
    AzureMlExtensionSpec::new(ClusterFacts {
        id: cluster.clone(),
        location: "eastus".into(),
        node_count: Some(nodes),
    })
}

fn inference(router: RouterServiceType, ilb: bool, tls: InferenceTls) -> Option<InferenceSpec> {
    Some(InferenceSpec {
        router_service_type: router,
        internal_load_balancer: ilb,
        high_availability: None,
        tls,
    })
}

fn pem_tls(cname: &str, cert_host: &str) -> (InferenceTls, String) {
    let (cert, key) = self_signed(cert_host);
    (
        InferenceTls::Pem {
            cert: Secret::new(cert),
            key: Secret::new(key.clone()),
            cname: cname.into(),
        },
        key,
    )
}

fn failed(s: OperationStatus) -> (String, String) {
    match s {
        OperationStatus::Failed { code, message } => (code, message),
        other => panic!("expected a failed operation, got {other:?}"),
    }
}

fn api_error(e: AzureError) -> (u16, String, String) {
    match e {
        AzureError::Api(a) => (a.status, a.code.clone(), a.message.clone()),
        other => panic!("expected an ARM error, got {other}"),
    }
}

fn swagger_check(spec: &str, definition: &str, mode: &str, body: &Value) {
    let mut child = std::process::Command::new("python3")
        .args([SWAGGER_CHECK, &format!("{SPECS}/{spec}"), definition, mode])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{definition} {mode}: {}\n{body:#}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Installs the Azure ML extension (inference over a public load balancer, TLS by PEM) and
/// waits for it.
async fn install(ctx: &Ctx, cluster: &ResourceId) -> ExtensionId {
    let id = ExtensionId::new(cluster.clone(), "azureml").unwrap();
    let mut s = spec(cluster, 3);
    s.training = true;
    s.inference = inference(
        RouterServiceType::LoadBalancer,
        false,
        pem_tls("scoring.contoso.com", "scoring.contoso.com").0,
    );
    let start = ctx
        .arm
        .create_extension(&id, &s.build().unwrap())
        .await
        .unwrap();
    assert_eq!(ctx.finish(start).await, OperationStatus::Succeeded);
    id
}

fn instance_type_api() -> ApiResource {
    ApiResource {
        group: "amlarc.azureml.com".into(),
        version: "v1alpha1".into(),
        api_version: "amlarc.azureml.com/v1alpha1".into(),
        kind: "InstanceType".into(),
        plural: "instancetypes".into(),
    }
}

// ---- extensions -------------------------------------------------------------------------

#[tokio::test]
async fn extension_lifecycle_and_cluster_objects() {
    let ctx = Ctx::new().await;
    let cluster = ctx.cluster("shared", 3);
    let reg = ctx
        .arm
        .get_provider_registration(SUB, "Microsoft.KubernetesConfiguration")
        .await
        .unwrap();
    assert!(reg.is_registered());

    // TLS by Secret: the Secret goes into namespace azureml first, as the docs ask.
    let kube = ctx.kube(&cluster).await;
    let ns: kube::Api<Namespace> = kube::Api::all(kube.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "azureml"}})).unwrap(),
    )
    .await
    .unwrap();
    let (cert, key) = self_signed("scoring.contoso.com");
    let secrets: kube::Api<KubeSecret> = kube::Api::namespaced(kube.clone(), "azureml");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "scoring-tls"}, "type": "Opaque",
                "stringData": {"cert.pem": cert, "key.pem": key}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();

    let id = ExtensionId::new(cluster.clone(), "azureml").unwrap();
    let mut s = spec(&cluster, 3);
    s.inference = inference(
        RouterServiceType::LoadBalancer,
        false,
        InferenceTls::Secret {
            name: "scoring-tls".into(),
            cname: "scoring.contoso.com".into(),
        },
    );
    let body = s.build().unwrap();
    swagger_check(
        EXT_SPEC,
        "Extension",
        "--request",
        &serde_json::to_value(&body).unwrap(),
    );
    let start = ctx.arm.create_extension(&id, &body).await.unwrap();
    let handle = start.handle().cloned().expect("PUT starts an operation");
    assert_eq!(ctx.wait(&handle).await, OperationStatus::Succeeded);

    let ext = ctx.arm.get_extension(&id).await.unwrap().expect("exists");
    assert_eq!(
        ext.provisioning_state(),
        Some(&ExtensionProvisioningState::Succeeded)
    );
    assert_eq!(ext.setting("scoringFe.sslSecret"), Some("scoring-tls"));
    assert_eq!(ext.properties.extension_state.as_deref(), Some("Ready"));
    assert_eq!(ctx.arm.list_extensions(&cluster).await.unwrap().len(), 1);

    // What the extension left on the cluster, through kube-rs.
    let svc: Service = kube::Api::namespaced(kube.clone(), "azureml")
        .get("azureml-fe")
        .await
        .unwrap();
    let ip = svc.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
        .ip
        .clone()
        .unwrap();
    assert!(!ip.is_empty());
    let cm: ConfigMap = kube::Api::namespaced(kube.clone(), "azureml")
        .get("arcml-healthcheck")
        .await
        .unwrap();
    assert!(cm.data.unwrap().contains_key("reports-pre-install"));
    let crds: kube::Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        kube::Api::all(kube.clone());
    crds.get("instancetypes.amlarc.azureml.com").await.unwrap();
    let its: kube::Api<DynamicObject> = kube::Api::all_with(kube.clone(), &instance_type_api());
    let it: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "amlarc.azureml.com/v1alpha1", "kind": "InstanceType",
        "metadata": {"name": "gpu"},
        "spec": {"nodeSelector": {"accelerator": "nvidia"},
                 "resources": {"requests": {"cpu": "4", "memory": "16Gi"},
                               "limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": 1}}}
    }))
    .unwrap();
    its.create(&PostParams::default(), &it).await.unwrap();
    assert_eq!(its.list(&Default::default()).await.unwrap().items.len(), 1);

    // PATCH with nothing new: 200, done at once.
    let same = ExtensionPatch {
        properties: ExtensionPatchProperties {
            configuration_settings: Some(BTreeMap::from([(
                "sslCname".to_owned(),
                "scoring.contoso.com".to_owned(),
            )])),
            ..Default::default()
        },
    };
    assert!(matches!(
        ctx.arm.update_extension(&id, &same).await.unwrap(),
        LroStart::Done(_)
    ));
    // PATCH that changes a setting: an operation, settings merged.
    let change = ExtensionPatch {
        properties: ExtensionPatchProperties {
            configuration_settings: Some(BTreeMap::from([(
                "amloperator.skipResourceValidation".to_owned(),
                "true".to_owned(),
            )])),
            ..Default::default()
        },
    };
    swagger_check(
        EXT_SPEC,
        "patchExtension",
        "--request",
        &serde_json::to_value(&change).unwrap(),
    );
    let start = ctx.arm.update_extension(&id, &change).await.unwrap();
    assert!(start.handle().is_some());
    assert_eq!(ctx.finish(start).await, OperationStatus::Succeeded);
    let ext = ctx.arm.get_extension(&id).await.unwrap().unwrap();
    assert_eq!(
        ext.setting("amloperator.skipResourceValidation"),
        Some("true")
    );
    assert_eq!(
        ext.setting("scoringFe.sslSecret"),
        Some("scoring-tls"),
        "merged, not replaced"
    );

    // The operation status URL by id.
    let op_id = handle
        .url
        .split("/operations/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let by_id = ctx
        .arm
        .extension_operation(&id, op_id, amlops::azure::OperationKind::Create)
        .unwrap();
    assert_eq!(
        ctx.arm.poll(&by_id).await.unwrap(),
        OperationStatus::Succeeded
    );

    // DELETE: 202 then gone; a second DELETE is 204 (done).
    let start = ctx.arm.delete_extension(&id, false).await.unwrap();
    assert!(start.handle().is_some());
    assert_eq!(ctx.finish(start).await, OperationStatus::Succeeded);
    assert!(ctx.arm.get_extension(&id).await.unwrap().is_none());
    assert!(matches!(
        ctx.arm.delete_extension(&id, false).await.unwrap(),
        LroStart::Done(())
    ));
    // Helm objects go; the namespace, the CRD and the InstanceTypes stay.
    assert!(
        kube::Api::<Service>::namespaced(kube.clone(), "azureml")
            .get("azureml-fe")
            .await
            .is_err()
    );
    assert_eq!(its.list(&Default::default()).await.unwrap().items.len(), 1);
}

#[tokio::test]
async fn protected_settings_are_never_read_back_and_force_delete_is_synchronous() {
    let ctx = Ctx::new().await;
    let cluster = ctx.cluster("shared", 3);
    let id = ExtensionId::new(cluster.clone(), "azureml").unwrap();
    let mut s = spec(&cluster, 3);
    let (tls, key_pem) = pem_tls("scoring.contoso.com", "scoring.contoso.com");
    s.inference = inference(RouterServiceType::LoadBalancer, true, tls);
    let body = s.build().unwrap();
    let start = ctx.arm.create_extension(&id, &body).await.unwrap();
    assert_eq!(ctx.finish(start).await, OperationStatus::Succeeded);
    let (status, _, raw) = ctx
        .raw(
            reqwest::Method::GET,
            &format!("{id}?api-version=2025-03-01"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let text = raw.to_string();
    assert!(!text.contains("configurationProtectedSettings"), "{text}");
    assert!(!text.contains("scoringFe.sslKey"), "{text}");
    // On AKS the extension's principal is under aksAssignedIdentity (as Azure answers), and
    // the client reads it from there.
    let principal = raw["properties"]["aksAssignedIdentity"]["principalId"]
        .as_str()
        .expect("aksAssignedIdentity.principalId on an AKS cluster");
    assert_eq!(raw["identity"]["type"], "SystemAssigned", "{raw}");
    assert!(raw["identity"].get("principalId").is_none(), "{raw}");
    let ext = ctx.arm.get_extension(&id).await.unwrap().unwrap();
    assert_eq!(
        ext.properties.aks_assigned_identity.as_ref().unwrap()["principalId"],
        principal
    );
    swagger_check(EXT_SPEC, "Extension", "--response", &raw);
    // An internal load balancer: the Service carries Azure's annotation and a private IP.
    let kube = ctx.kube(&cluster).await;
    let svc: Service = kube::Api::namespaced(kube, "azureml")
        .get("azureml-fe")
        .await
        .unwrap();
    let ip = svc.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
        .ip
        .clone()
        .unwrap();
    assert!(ip.starts_with("10."), "{ip}");
    let b64_key = base64::engine::general_purpose::STANDARD.encode(&key_pem);
    assert!(!format!("{:?}", ctx.emu.state()).contains(&b64_key));

    // forceDelete: synchronous 200, gone at once.
    assert!(matches!(
        ctx.arm.delete_extension(&id, true).await.unwrap(),
        LroStart::Done(())
    ));
    assert!(ctx.arm.get_extension(&id).await.unwrap().is_none());
    // Reinstalling at once: Helm still holds the release name.
    let start = ctx.arm.create_extension(&id, &body).await.unwrap();
    let (code, message) = failed(ctx.finish(start).await);
    assert_eq!(code, "ExtensionOperationFailed");
    assert!(
        message.contains("cannot re-use a name that is still in use"),
        "{message}"
    );
    let ext = ctx.arm.get_extension(&id).await.unwrap().unwrap();
    assert_eq!(
        ext.provisioning_state(),
        Some(&ExtensionProvisioningState::Failed)
    );
    assert!(
        ext.properties
            .error_info
            .unwrap()
            .message
            .unwrap()
            .contains("re-use")
    );
}

#[tokio::test]
async fn extension_failures_reach_the_caller() {
    let ctx = Ctx::new().await;

    // 1. Provider not registered: 409 on every call; the registration read says so.
    let c1 = ctx.cluster("unregistered", 3);
    ctx.emu
        .seed_kubernetes_path(&KubernetesPathSeed {
            unregistered_providers: vec![ProviderSeed {
                subscription_id: SUB.into(),
                namespace: "Microsoft.KubernetesConfiguration".into(),
            }],
            ..Default::default()
        })
        .unwrap();
    let reg = ctx
        .arm
        .get_provider_registration(SUB, "Microsoft.KubernetesConfiguration")
        .await
        .unwrap();
    assert_eq!(reg.registration_state.as_deref(), Some("NotRegistered"));
    let mut s = spec(&c1, 3);
    s.training = true;
    let id = ExtensionId::new(c1.clone(), "azureml").unwrap();
    let (status, code, message) = api_error(
        ctx.arm
            .create_extension(&id, &s.build().unwrap())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str()),
        (409, "MissingSubscriptionRegistration")
    );
    assert_eq!(
        message,
        "The subscription is not registered to use namespace 'Microsoft.KubernetesConfiguration'. See https://aka.ms/rps-not-found for how to register subscriptions."
    );
    ctx.emu
        .seed_kubernetes_path(&KubernetesPathSeed {
            registered_providers: vec![ProviderSeed {
                subscription_id: SUB.into(),
                namespace: "Microsoft.KubernetesConfiguration".into(),
            }],
            ..Default::default()
        })
        .unwrap();

    // 2. Service-principal cluster: 400.
    let c2 = ctx.cluster("sp", 3);
    ctx.emu
        .seed_kubernetes_path(&KubernetesPathSeed {
            clusters: vec![ClusterTraitsSeed {
                cluster_id: c2.to_string(),
                traits: ClusterTraits {
                    identity: Some("ServicePrincipal".into()),
                    ..Default::default()
                },
            }],
            ..Default::default()
        })
        .unwrap();
    let mut s = spec(&c2, 3);
    s.training = true;
    let id = ExtensionId::new(c2.clone(), "azureml").unwrap();
    let (status, code, message) = api_error(
        ctx.arm
            .create_extension(&id, &s.build().unwrap())
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "BadRequest"));
    assert!(message.contains("service principal"), "{message}");

    // 3. Failed health checks, as failed operations.
    struct Case {
        name: &'static str,
        nodes: i64,
        traits: ClusterTraits,
        body: Box<dyn Fn(&ResourceId) -> ExtensionRequest>,
        code_in_message: &'static str,
    }
    let cases: Vec<Case> = vec![
        Case {
            name: "documented keys only (Terraform's raw body)",
            nodes: 3,
            traits: ClusterTraits::default(),
            body: Box::new(|_| ExtensionRequest {
                identity: None,
                properties: ExtensionRequestProperties {
                    extension_type: "Microsoft.AzureML.Kubernetes".into(),
                    release_train: Some("stable".into()),
                    configuration_settings: BTreeMap::from(
                        [
                            ("enableInference", "true"),
                            ("inferenceRouterServiceType", "LoadBalancer"),
                            ("sslSecret", "scoring-tls"),
                            ("sslCname", "scoring.contoso.com"),
                        ]
                        .map(|(k, v)| (k.to_owned(), v.to_owned())),
                    ),
                    ..Default::default()
                },
            }),
            code_in_message: "E40007",
        },
        Case {
            name: "certificate for another name",
            nodes: 3,
            traits: ClusterTraits::default(),
            body: Box::new(|c| {
                let mut s = spec(c, 3);
                s.inference = inference(
                    RouterServiceType::LoadBalancer,
                    false,
                    pem_tls("scoring.contoso.com", "other.example.org").0,
                );
                s.build().unwrap()
            }),
            code_in_message: "E40007",
        },
        Case {
            name: "TLS Secret missing from namespace azureml",
            nodes: 3,
            traits: ClusterTraits::default(),
            body: Box::new(|c| {
                let mut s = spec(c, 3);
                s.inference = inference(
                    RouterServiceType::NodePort,
                    false,
                    InferenceTls::Secret {
                        name: "absent".into(),
                        cname: "a.contoso.com".into(),
                    },
                );
                s.build().unwrap()
            }),
            code_in_message: "E40007",
        },
        Case {
            name: "high availability on 2 nodes",
            nodes: 2,
            traits: ClusterTraits::default(),
            body: Box::new(|c| {
                let mut s = spec(c, 2);
                let mut i =
                    inference(RouterServiceType::ClusterIp, false, InferenceTls::Disabled).unwrap();
                i.high_availability = Some(true);
                s.inference = Some(i);
                s.build().unwrap()
            }),
            code_in_message: "E40002",
        },
        Case {
            name: "legacy azureml-fe without migration settings",
            nodes: 3,
            traits: ClusterTraits {
                legacy_front_end: true,
                ..Default::default()
            },
            body: Box::new(|c| {
                let mut s = spec(c, 3);
                s.inference = inference(
                    RouterServiceType::LoadBalancer,
                    false,
                    InferenceTls::Disabled,
                );
                s.build().unwrap()
            }),
            code_in_message: "E45005",
        },
        Case {
            name: "outbound traffic blocked",
            nodes: 3,
            traits: ClusterTraits {
                egress_blocked: true,
                ..Default::default()
            },
            body: Box::new(|c| {
                let mut s = spec(c, 3);
                s.training = true;
                s.build().unwrap()
            }),
            code_in_message: "E45003",
        },
        Case {
            name: "Helm atomic timeout",
            nodes: 3,
            traits: ClusterTraits {
                install_times_out: true,
                ..Default::default()
            },
            body: Box::new(|c| {
                let mut s = spec(c, 3);
                s.training = true;
                s.build().unwrap()
            }),
            code_in_message: "timed out waiting for the condition",
        },
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let c = ctx.cluster(&format!("hc{i}"), case.nodes);
        ctx.emu
            .seed_kubernetes_path(&KubernetesPathSeed {
                clusters: vec![ClusterTraitsSeed {
                    cluster_id: c.to_string(),
                    traits: case.traits,
                }],
                ..Default::default()
            })
            .unwrap();
        let id = ExtensionId::new(c.clone(), "azureml").unwrap();
        let start = ctx
            .arm
            .create_extension(&id, &(case.body)(&c))
            .await
            .unwrap();
        let (code, message) = failed(ctx.finish(start).await);
        assert_eq!(code, "ExtensionOperationFailed", "{}", case.name);
        if case.code_in_message.starts_with('E') {
            // As Azure words a failed install: no code in ARM, the report is on the cluster.
            assert!(
                message.contains("failed pre-install: pod healthcheck failed")
                    && !message.contains(case.code_in_message),
                "{}: {message}",
                case.name
            );
        } else {
            assert!(
                message.contains(case.code_in_message),
                "{}: {message}",
                case.name
            );
        }
        assert!(
            message.contains("https://aka.ms/arcmltsg"),
            "{}: {message}",
            case.name
        );
        let ext = ctx.arm.get_extension(&id).await.unwrap().unwrap();
        assert_eq!(
            ext.provisioning_state(),
            Some(&ExtensionProvisioningState::Failed),
            "{}",
            case.name
        );
        if case.code_in_message.starts_with('E') {
            let kube = ctx.kube(&c).await;
            let cm: ConfigMap = kube::Api::namespaced(kube, "azureml")
                .get("arcml-healthcheck")
                .await
                .unwrap();
            let report = cm.data.unwrap().into_values().collect::<String>();
            assert!(
                report.contains(case.code_in_message),
                "{}: {report}",
                case.name
            );
        }
    }

    // 4. The migration settings take over the legacy front end.
    let c = ctx.cluster("migrate", 3);
    ctx.emu
        .seed_kubernetes_path(&KubernetesPathSeed {
            clusters: vec![ClusterTraitsSeed {
                cluster_id: c.to_string(),
                traits: ClusterTraits {
                    legacy_front_end: true,
                    ..Default::default()
                },
            }],
            ..Default::default()
        })
        .unwrap();
    let mut s = spec(&c, 3);
    s.inference = inference(
        RouterServiceType::LoadBalancer,
        false,
        InferenceTls::Disabled,
    );
    s.migrate_legacy_front_end = true;
    let id = ExtensionId::new(c.clone(), "azureml").unwrap();
    let start = ctx
        .arm
        .create_extension(&id, &s.build().unwrap())
        .await
        .unwrap();
    assert_eq!(ctx.finish(start).await, OperationStatus::Succeeded);

    // 5. A pinned version with auto-upgrade: 400.
    let c = ctx.cluster("pinned", 3);
    let id = ExtensionId::new(c.clone(), "azureml").unwrap();
    let mut s = spec(&c, 3);
    s.training = true;
    s.version = VersionPolicy::Pinned("1.1.64".into());
    let mut body = s.build().unwrap();
    body.properties.auto_upgrade_minor_version = Some(true);
    let (status, _, message) = api_error(ctx.arm.create_extension(&id, &body).await.unwrap_err());
    assert_eq!(status, 400);
    assert!(message.contains("autoUpgradeMinorVersion"), "{message}");
    // The same pinned body as built installs, reporting the version.
    let start = ctx
        .arm
        .create_extension(&id, &s.build().unwrap())
        .await
        .unwrap();
    assert_eq!(ctx.finish(start).await, OperationStatus::Succeeded);
    let ext = ctx.arm.get_extension(&id).await.unwrap().unwrap();
    assert_eq!(ext.properties.current_version.as_deref(), Some("1.1.64"));
    assert!(ext.properties.release_train.is_none());

    // 6. Azure's own failure (fault): the LRO ends Failed with its code and message.
    let c = ctx.cluster("lrofail", 3);
    ctx.emu.inject_fault(FaultRule {
        matcher: FaultMatch {
            method: Some("PUT".into()),
            path: Some("/extensions/".into()),
            operation: None,
        },
        kind: FaultKind::LroFail {
            code: "InternalServerError".into(),
            message: "An internal server error occurred.".into(),
        },
        times: Some(1),
        probability: None,
        id: 0,
    });
    let id = ExtensionId::new(c.clone(), "azureml").unwrap();
    let mut s = spec(&c, 3);
    s.training = true;
    let start = ctx
        .arm
        .create_extension(&id, &s.build().unwrap())
        .await
        .unwrap();
    assert_eq!(
        failed(ctx.finish(start).await),
        (
            "InternalServerError".into(),
            "An internal server error occurred.".into()
        )
    );

    // 7. Unknown cluster: 404.
    let ghost = ResourceId::managed_cluster(SUB, "aks-rg", "ghost").unwrap();
    let id = ExtensionId::new(ghost.clone(), "azureml").unwrap();
    let mut s = spec(&ghost, 3);
    s.training = true;
    let (status, code, _) = api_error(
        ctx.arm
            .create_extension(&id, &s.build().unwrap())
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (404, "ResourceNotFound"));
}

#[tokio::test]
async fn slow_installs_report_running_until_done() {
    let ctx = Ctx::new().await;
    let c = ctx.cluster("slow", 3);
    ctx.emu
        .seed_kubernetes_path(&KubernetesPathSeed {
            clusters: vec![ClusterTraitsSeed {
                cluster_id: c.to_string(),
                traits: ClusterTraits {
                    slow_install_seconds: Some(0.6),
                    ..Default::default()
                },
            }],
            ..Default::default()
        })
        .unwrap();
    let id = ExtensionId::new(c.clone(), "azureml").unwrap();
    let mut s = spec(&c, 3);
    s.training = true;
    let start = ctx
        .arm
        .create_extension(&id, &s.build().unwrap())
        .await
        .unwrap();
    let handle = start.handle().cloned().unwrap();
    assert!(matches!(
        ctx.arm.poll(&handle).await.unwrap(),
        OperationStatus::InProgress { .. }
    ));
    let ext = ctx.arm.get_extension(&id).await.unwrap().unwrap();
    assert!(!ext.provisioning_state().unwrap().is_terminal());
    assert_eq!(ctx.wait(&handle).await, OperationStatus::Succeeded);
}

// ---- Kubernetes computes ----------------------------------------------------------------

fn compute_id(name: &str) -> ResourceId {
    ResourceId::compute(SUB, "ml-rg", "ml-ws", name).unwrap()
}

#[tokio::test]
async fn kubernetes_compute_lifecycle() {
    let ctx = Ctx::new().await;
    let cluster = ctx.cluster("shared", 3);
    let body = KubernetesComputeResource::attach("eastus", cluster.to_string(), "team-a");
    swagger_check(
        MLS_SPEC,
        "ComputeResource",
        "--request",
        &serde_json::to_value(body.for_request()).unwrap(),
    );

    // Without the extension: refused.
    let (status, code, message) = api_error(
        ctx.arm
            .attach_kubernetes_compute(&compute_id("team-a"), &body)
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "BadRequest"));
    assert!(message.contains("extension is not installed"), "{message}");

    install(&ctx, &cluster).await;
    let kube = ctx.kube(&cluster).await;
    let its: kube::Api<DynamicObject> = kube::Api::all_with(kube, &instance_type_api());
    its.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"apiVersion": "amlarc.azureml.com/v1alpha1", "kind": "InstanceType",
            "metadata": {"name": "big"},
            "spec": {"resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}}}}))
        .unwrap(),
    )
    .await
    .unwrap();

    let start = ctx
        .arm
        .attach_kubernetes_compute(&compute_id("team-a"), &body)
        .await
        .unwrap();
    assert!(start.handle().is_some());
    assert_eq!(ctx.finish(start).await, OperationStatus::Succeeded);
    let c = ctx
        .arm
        .get_kubernetes_compute(&compute_id("team-a"))
        .await
        .unwrap()
        .unwrap();
    assert!(c.is_expected_type());
    assert_eq!(c.provisioning_state(), Some(&ProvisioningState::Succeeded));
    assert_eq!(c.properties.is_attached_compute, Some(true));
    assert_eq!(c.namespace(), "team-a");
    let props = c.properties.properties.clone().unwrap();
    assert_eq!(
        props.extension_instance_release_train.as_deref(),
        Some("stable")
    );
    let types = props.instance_types.unwrap();
    assert!(
        types.contains_key("big") && types.contains_key("defaultinstancetype"),
        "{types:?}"
    );
    assert_eq!(
        types["big"].resources.as_ref().unwrap().limits["memory"],
        "16Gi"
    );

    // A later InstanceType does not show: the compute keeps the attach-time snapshot.
    its.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"apiVersion": "amlarc.azureml.com/v1alpha1", "kind": "InstanceType",
            "metadata": {"name": "later"}, "spec": {}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let (status, _, raw) = ctx
        .raw(
            reqwest::Method::GET,
            &format!("{}?api-version=2025-09-01", compute_id("team-a")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        raw["properties"]["properties"]["instanceTypes"]
            .get("later")
            .is_none()
    );
    swagger_check(MLS_SPEC, "ComputeResource", "--response", &raw);

    // A second attachment of the same cluster (other namespace, user-assigned identity).
    let mut second = KubernetesComputeResource::attach("eastus", cluster.to_string(), "team-b");
    second.identity = Some(ManagedServiceIdentity::user_assigned(format!(
        "/subscriptions/{SUB}/resourceGroups/ml-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ml"
    )));
    let start = ctx
        .arm
        .attach_kubernetes_compute(&compute_id("team-b"), &second)
        .await
        .unwrap();
    assert_eq!(ctx.finish(start).await, OperationStatus::Succeeded);
    let listed = ctx
        .arm
        .list_kubernetes_computes(&ResourceId::workspace(SUB, "ml-rg", "ml-ws").unwrap())
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);

    // In-place update of the description: accepted; a namespace change: refused.
    let mut update = body.clone();
    update.properties.description = Some("team A".into());
    let start = ctx
        .arm
        .attach_kubernetes_compute(&compute_id("team-a"), &update)
        .await
        .unwrap();
    assert_eq!(ctx.finish(start).await, OperationStatus::Succeeded);
    let moved = KubernetesComputeResource::attach("eastus", cluster.to_string(), "elsewhere");
    let (status, _, message) = api_error(
        ctx.arm
            .attach_kubernetes_compute(&compute_id("team-a"), &moved)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 400);
    assert!(message.contains("cannot be updated"), "{message}");

    // listKeys: refused.
    let (status, _, message) = api_error(
        ctx.arm
            .list_compute_keys(&compute_id("team-a"))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 400);
    assert!(message.contains("Kubernetes"), "{message}");

    // Detach: gone; the cluster and the extension are untouched.
    let start = ctx
        .arm
        .detach_kubernetes_compute(&compute_id("team-a"))
        .await
        .unwrap();
    assert_eq!(ctx.finish(start).await, OperationStatus::Succeeded);
    assert!(
        ctx.arm
            .get_kubernetes_compute(&compute_id("team-a"))
            .await
            .unwrap()
            .is_none()
    );
    let ext = ctx
        .arm
        .get_extension(&ExtensionId::new(cluster.clone(), "azureml").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ext.provisioning_state(),
        Some(&ExtensionProvisioningState::Succeeded)
    );
    assert!(matches!(
        ctx.arm
            .detach_kubernetes_compute(&compute_id("team-a"))
            .await
            .unwrap(),
        LroStart::Done(())
    ));
}

#[tokio::test]
async fn kubernetes_compute_failures_reach_the_caller() {
    let ctx = Ctx::new().await;
    let ws = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws";

    // A workspace identity lacking roles on the cluster: 400 with Azure's wording.
    let gap = ctx.cluster("gap", 3);
    install(&ctx, &gap).await;
    ctx.emu
        .seed_kubernetes_path(&KubernetesPathSeed {
            role_gaps: vec![RoleGapSeed {
                workspace_id: ws.into(),
                cluster_id: gap.to_string(),
            }],
            ..Default::default()
        })
        .unwrap();
    let body = KubernetesComputeResource::attach("eastus", gap.to_string(), "default");
    let (status, code, message) = api_error(
        ctx.arm
            .attach_kubernetes_compute(&compute_id("gap"), &body)
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "BadRequest"));
    assert_eq!(
        message,
        "AKS role check failed for user assigned identity. Please check the role assignment."
    );

    // Local accounts disabled: accepted, then Failed with the generic internal error.
    let local = ctx.cluster("nolocal", 3);
    install(&ctx, &local).await;
    ctx.emu
        .seed_kubernetes_path(&KubernetesPathSeed {
            clusters: vec![ClusterTraitsSeed {
                cluster_id: local.to_string(),
                traits: ClusterTraits {
                    disable_local_accounts: true,
                    ..Default::default()
                },
            }],
            ..Default::default()
        })
        .unwrap();
    let body = KubernetesComputeResource::attach("eastus", local.to_string(), "default");
    let start = ctx
        .arm
        .attach_kubernetes_compute(&compute_id("nolocal"), &body)
        .await
        .unwrap();
    assert_eq!(
        failed(ctx.finish(start).await),
        (
            "InternalServerError".into(),
            "An internal server error occurred.".into()
        )
    );
    let c = ctx
        .arm
        .get_kubernetes_compute(&compute_id("nolocal"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.provisioning_state(), Some(&ProvisioningState::Failed));
    let errs = c.properties.provisioning_errors.unwrap();
    assert_eq!(
        errs[0].error.as_ref().unwrap().code.as_deref(),
        Some("InternalServerError")
    );

    // A name taken by an AKS compute: "already exists".
    let aks = ctx.cluster("legacy", 3);
    let legacy_body = json!({"location": "eastus", "properties": {"computeType": "AKS", "resourceId": aks.to_string(),
        "properties": {"clusterPurpose": "DevTest"}}});
    let (status, _, _) = ctx
        .raw(
            reqwest::Method::PUT,
            &format!("{}?api-version=2025-09-01", compute_id("legacy")),
            Some(&legacy_body),
        )
        .await;
    assert!(status == 200 || status == 201, "{status}");
    let body = KubernetesComputeResource::attach("eastus", local.to_string(), "default");
    let (status, _, message) = api_error(
        ctx.arm
            .attach_kubernetes_compute(&compute_id("legacy"), &body)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 400);
    assert!(message.contains("already exists"), "{message}");
}

// ---- official examples ------------------------------------------------------------------

fn example(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{SPECS}/{path}")).unwrap()).unwrap()
}

/// Every key of `want` (recursively through objects) is present in `got`. A key the example
/// shows as `null` may be absent when the swagger does not allow null there (`vcName`): the
/// emulator's bodies must also pass `swagger_check.py`.
fn same_shape(want: &Value, got: &Value, path: &str) {
    if let (Value::Object(w), Some(g)) = (want, got.as_object()) {
        for (k, v) in w {
            if v.is_null() && !g.contains_key(k) {
                continue;
            }
            let child = g
                .get(k)
                .unwrap_or_else(|| panic!("{path}/{k} missing in {got:#}"));
            if v.is_object() && child.is_object() {
                same_shape(v, child, &format!("{path}/{k}"));
            }
        }
    }
}

#[tokio::test]
async fn official_extension_examples_round_trip() {
    let ctx = Ctx::new().await;
    // The examples use an Arc cluster `clusterName1` in subId1/rg1.
    let arc = "/subscriptions/subId1/resourceGroups/rg1/providers/Microsoft.Kubernetes/connectedClusters/clusterName1";
    ctx.emu
        .seed_kubernetes_path(&KubernetesPathSeed {
            connected_clusters: vec![arc.into()],
            ..Default::default()
        })
        .unwrap();
    let dir = "kubernetesconfiguration-2025-03-01/examples";
    let url = |ex: &Value, extra: &str| {
        let p = &ex["parameters"];
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{}/{}/{}/providers/Microsoft.KubernetesConfiguration/extensions/{}{extra}?api-version={}",
            p["subscriptionId"].as_str().unwrap(),
            p["resourceGroupName"].as_str().unwrap(),
            p["clusterRp"].as_str().unwrap(),
            p["clusterResourceName"].as_str().unwrap(),
            p["clusterName"].as_str().unwrap(),
            p["extensionName"].as_str().unwrap(),
            p["api-version"].as_str().unwrap(),
        )
    };
    let check_headers = |ex: &Value, code: &str, headers: &reqwest::header::HeaderMap| {
        if let Some(h) = ex["responses"][code]["headers"].as_object() {
            for name in h.keys() {
                assert!(
                    headers.contains_key(name.to_ascii_lowercase().as_str()),
                    "{code}: header {name} missing: {headers:?}"
                );
            }
        }
    };

    // CreateExtension: 201 (new), then 200 (existing).
    let create = example(&format!("{dir}/CreateExtension.json"));
    let body = &create["parameters"]["extension"];
    swagger_check(EXT_SPEC, "Extension", "--request", body);
    let (status, headers, resp) = ctx
        .raw(reqwest::Method::PUT, &url(&create, ""), Some(body))
        .await;
    assert_eq!(status, 201, "{resp}");
    check_headers(&create, "201", &headers);
    same_shape(&create["responses"]["201"]["body"], &resp, "");
    swagger_check(EXT_SPEC, "Extension", "--response", &resp);
    assert_eq!(headers["x-ms-async-operation-timeout"], "PT48H");
    let async_url = headers["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        !resp.to_string().contains("secretKeyValue01"),
        "protected settings echoed"
    );
    let (status, headers, resp) = ctx
        .raw(reqwest::Method::PUT, &url(&create, ""), Some(body))
        .await;
    assert_eq!(status, 200, "{resp}");
    check_headers(&create, "200", &headers);
    same_shape(&create["responses"]["200"]["body"], &resp, "");

    // Operation status.
    let op = example(&format!("{dir}/GetExtensionAsyncOperationStatus.json"));
    let (status, _, resp) = ctx.raw(reqwest::Method::GET, &async_url, None).await;
    assert_eq!(status, 200);
    same_shape(&op["responses"]["200"]["body"], &resp, "");
    assert_eq!(resp["status"], "Succeeded");
    swagger_check(EXT_COMMON, "OperationStatusResult", "--response", &resp);

    // Get, with extensionState.
    for name in ["GetExtension.json", "GetExtensionWithExtensionState.json"] {
        let get = example(&format!("{dir}/{name}"));
        let (status, _, resp) = ctx.raw(reqwest::Method::GET, &url(&get, ""), None).await;
        assert_eq!(status, 200, "{name}");
        same_shape(&get["responses"]["200"]["body"], &resp, "");
        swagger_check(EXT_SPEC, "Extension", "--response", &resp);
        assert!(!resp.to_string().contains("configurationProtectedSettings"));
    }

    // Patch: 202 (changes), then 200 (nothing changes).
    let patch = example(&format!("{dir}/PatchExtension.json"));
    let body = &patch["parameters"]["patchExtension"];
    swagger_check(EXT_SPEC, "patchExtension", "--request", body);
    let (status, headers, resp) = ctx
        .raw(reqwest::Method::PATCH, &url(&patch, ""), Some(body))
        .await;
    assert_eq!(status, 202, "{resp}");
    check_headers(&patch, "202", &headers);
    same_shape(&patch["responses"]["202"]["body"], &resp, "");
    let (status, _, resp) = ctx
        .raw(reqwest::Method::PATCH, &url(&patch, ""), Some(body))
        .await;
    assert_eq!(status, 200, "{resp}");
    same_shape(&patch["responses"]["200"]["body"], &resp, "");

    // List.
    let (status, _, resp) = ctx
        .raw(
            reqwest::Method::GET,
            &url(&create, "").replace("/extensions/ClusterMonitor", "/extensions"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    swagger_check(EXT_SPEC, "ExtensionsList", "--response", &resp);

    // Delete: 202 (then 404), 204 when absent, 200 with forceDelete.
    let delete = example(&format!("{dir}/DeleteExtension.json"));
    let (status, headers, _) = ctx
        .raw(reqwest::Method::DELETE, &url(&delete, ""), None)
        .await;
    assert_eq!(status, 202);
    check_headers(&delete, "202", &headers);
    let (status, _, _) = ctx.raw(reqwest::Method::GET, &url(&delete, ""), None).await;
    assert_eq!(status, 404);
    let (status, _, _) = ctx
        .raw(reqwest::Method::DELETE, &url(&delete, ""), None)
        .await;
    assert_eq!(status, 204);
    let (status, _, _) = ctx
        .raw(
            reqwest::Method::PUT,
            &url(&create, ""),
            Some(&create["parameters"]["extension"]),
        )
        .await;
    assert_eq!(status, 201);
    let forced = url(&delete, "") + "&forceDelete=true";
    let (status, _, _) = ctx.raw(reqwest::Method::DELETE, &forced, None).await;
    assert_eq!(status, 200);
    // Older api-versions clients use are served too.
    for v in ["2024-11-01", "2023-05-01", "2022-03-01", "2021-09-01"] {
        let (status, _, _) = ctx
            .raw(
                reqwest::Method::GET,
                &url(&create, "").replace("2025-03-01", v),
                None,
            )
            .await;
        assert_eq!(status, 404, "{v}");
    }
}

#[tokio::test]
async fn official_kubernetes_compute_examples_round_trip() {
    let ctx = Ctx::new().await;
    let put = example("mls-2025-09-01/examples/Compute/createOrUpdate/KubernetesCompute.json");
    let get = example("mls-2025-09-01/examples/Compute/get/KubernetesCompute.json");
    let p = &put["parameters"];
    let sub = p["subscriptionId"].as_str().unwrap();
    let rg = p["resourceGroupName"].as_str().unwrap();
    let ws = p["workspaceName"].as_str().unwrap();
    let body = &p["parameters"];
    let cluster_id = body["properties"]["resourceId"].as_str().unwrap();
    let cluster_name = cluster_id.rsplit('/').next().unwrap();
    ctx.emu.seed_workspace(
        sub,
        amlops_emulator::WorkspaceSeed {
            resource_group: rg.into(),
            name: ws.into(),
            location: "eastus".into(),
        },
    );
    ctx.emu.seed_aks_cluster(
        sub,
        ClusterSeed {
            resource_group: "testrg123".into(),
            name: cluster_name.into(),
            ..ClusterSeed::default()
        },
    );
    ctx.emu
        .seed_kubernetes_path(&KubernetesPathSeed {
            extensions: vec![ExtensionSeed {
                cluster_id: cluster_id.into(),
                configuration_settings: BTreeMap::from([(
                    "enableTraining".to_owned(),
                    "True".to_owned(),
                )]),
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
    let url = format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}/computes/{}?api-version={}",
        p["computeName"].as_str().unwrap(),
        p["api-version"].as_str().unwrap()
    );
    let (status, headers, resp) = ctx.raw(reqwest::Method::PUT, &url, Some(body)).await;
    assert_eq!(status, 201, "{resp}");
    assert!(headers.contains_key("azure-asyncoperation"));
    same_shape(&put["responses"]["201"]["body"], &resp, "");
    assert_eq!(resp["properties"]["provisioningState"], "Creating");
    swagger_check(MLS_SPEC, "ComputeResource", "--response", &resp);
    let (status, _, resp) = ctx.raw(reqwest::Method::GET, &url, None).await;
    assert_eq!(status, 200);
    same_shape(&get["responses"]["200"]["body"], &resp, "");
    assert_eq!(resp["properties"]["provisioningState"], "Succeeded");
    assert_eq!(resp["properties"]["isAttachedCompute"], true);
    assert_eq!(
        resp["properties"]["properties"]["extensionInstanceReleaseTrain"],
        "stable"
    );
    swagger_check(MLS_SPEC, "ComputeResource", "--response", &resp);
    // The list carries it too, and validates.
    let list_url = url.replace(
        &format!("/computes/{}", p["computeName"].as_str().unwrap()),
        "/computes",
    );
    let (status, _, resp) = ctx.raw(reqwest::Method::GET, &list_url, None).await;
    assert_eq!(status, 200);
    swagger_check(
        MLS_SPEC,
        "PaginatedComputeResourcesList",
        "--response",
        &resp,
    );
}

// ---- secrets stay out of logs, errors and Debug ----------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs the test named `name` of this binary again in a child process, alone: a subscriber
/// set with `tracing::subscriber::with_default` misses events whose callsites other tests'
/// threads register at the same moment (tracing's interest cache is process-wide), so the
/// capture was flaky under load. Hand-rolled (a few lines) rather than a fork crate.
fn in_own_process(name: &str) -> bool {
    const CHILD: &str = "AMLOPS_TEST_CHILD";
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, "1")
        .status()
        .expect("run the test binary");
    assert!(status.success(), "{name} failed in its own process");
    true
}

#[test]
fn no_log_line_error_or_debug_output_holds_a_protected_setting() {
    if in_own_process("no_log_line_error_or_debug_output_holds_a_protected_setting") {
        return;
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (key_pem, outputs) = tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let ctx = Ctx::new().await;
            let cluster = ctx.cluster("secret", 3);
            let id = ExtensionId::new(cluster.clone(), "azureml").unwrap();
            let mut s = spec(&cluster, 3);
            // A mismatched pair: the failure path (errors, health-check report) runs too.
            let (tls, key_pem) = pem_tls("scoring.contoso.com", "other.example.org");
            s.inference = inference(RouterServiceType::LoadBalancer, false, tls);
            let mut body = s.build().unwrap();
            let mut protected = body.properties.configuration_protected_settings.clone();
            protected.insert(
                "relayserver.relayConnectionString",
                "Endpoint=sb://x/;SharedAccessKey=CONNSTRING-SECRET",
            );
            body.properties.configuration_protected_settings = protected.clone();
            let mut outputs = vec![
                format!("{s:?}"),
                format!("{body:?}"),
                format!("{protected:?}"),
            ];
            let start = ctx.arm.create_extension(&id, &body).await.unwrap();
            let status = ctx.finish(start).await;
            outputs.push(format!("{status:?}"));
            if let Some(e) = status.error(amlops::azure::OperationKind::Create) {
                outputs.push(format!("{e} {e:?}"));
            }
            let ext: Extension = ctx.arm.get_extension(&id).await.unwrap().unwrap();
            outputs.push(format!("{ext:?}"));
            let patch = ExtensionPatch {
                properties: ExtensionPatchProperties {
                    configuration_protected_settings: Some(ProtectedSettings::new()),
                    ..Default::default()
                },
            };
            let _ = ctx.arm.update_extension(&id, &patch).await;
            outputs.push(format!("{:?}", ctx.emu.state()));
            outputs.push(format!("{:?}", ctx.emu.requests()));
            let kube = ctx.kube(&cluster).await;
            let cm: ConfigMap = kube::Api::namespaced(kube, "azureml")
                .get("arcml-healthcheck")
                .await
                .unwrap();
            outputs.push(format!("{cm:?}"));
            let compute = KubernetesComputeResource::attach("eastus", cluster.to_string(), "x");
            outputs.push(format!("{compute:?}"));
            (key_pem, outputs)
        })
    });
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("extension"), "logging was captured: {logs}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let needles = [
        key_pem.clone(),
        b64.encode(&key_pem),
        key_pem.lines().nth(1).unwrap().to_string(),
        "CONNSTRING-SECRET".to_string(),
    ];
    for text in outputs.iter().chain(std::iter::once(&logs)) {
        for needle in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "secret leaked into: {text}"
            );
        }
    }
}

#[tokio::test]
async fn admin_endpoint_seeds_the_kubernetes_path() {
    let ctx = Ctx::new().await;
    let cluster = ctx.cluster("seeded", 3);
    let seed = json!({
        "clusters": [{"clusterId": cluster.to_string(), "legacyFrontEnd": true}],
        "extensions": [{"clusterId": cluster.to_string(),
                        "configurationSettings": {"enableInference": "True", "inferenceRouterServiceType": "NodePort"}}],
    });
    let r = ctx
        .http
        .post(format!("{}/admin/kubernetes-path", ctx.emu.base_url()))
        .json(&seed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let state: Value = r.json().await.unwrap();
    assert_eq!(
        state["extensions"][0]["properties"]["provisioningState"],
        "Succeeded"
    );
    let bad = ctx
        .http
        .post(format!("{}/admin/kubernetes-path", ctx.emu.base_url()))
        .json(&json!({"extensions": [{"clusterId": "/nope"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    // The seeded extension serves a Kubernetes compute at once, and its NodePort Service exists.
    let body = KubernetesComputeResource::attach("eastus", cluster.to_string(), "default");
    let start = ctx
        .arm
        .attach_kubernetes_compute(&compute_id("seeded"), &body)
        .await
        .unwrap();
    assert_eq!(ctx.finish(start).await, OperationStatus::Succeeded);
    let kube = ctx.kube(&cluster).await;
    let svc: Service = kube::Api::namespaced(kube, "azureml")
        .get("azureml-fe")
        .await
        .unwrap();
    assert_eq!(svc.spec.unwrap().type_.as_deref(), Some("NodePort"));
}
