//! Table test: the body [`AzureMlExtensionSpec::build`] produces against Microsoft's own
//! deployment template (Azure/AML-Kubernetes `files/deployextension.json`), evaluated for the
//! same parameters.
//!
//! The template is evaluated by the small ARM template-expression interpreter below
//! (`parameters`, `variables`, `if`, `equals`, `union`, `createObject`, `empty`, `not`, `and`,
//! `last`, `split` and user functions): no Rust crate evaluates ARM templates, and only this
//! test needs it.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::*;

const TEMPLATE: &str = "/work/shared/azure-specs/aml-kubernetes-b533ee4/files/deployextension.json";
const AKS_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/foo/providers/Microsoft.ContainerService/managedClusters/bar";

// ---- a minimal ARM template expression evaluator -------------------------------------

struct Template {
    doc: Value,
    params: Map<String, Value>,
}

#[derive(Debug, Clone)]
enum Expr {
    Str(String),
    Call(String, Vec<Expr>),
}

fn parse_expr(src: &str) -> Expr {
    let chars: Vec<char> = src.chars().collect();
    let mut pos = 0;
    let e = parse_at(&chars, &mut pos);
    assert_eq!(pos, chars.len(), "trailing input in {src}");
    e
}

fn skip_ws(c: &[char], pos: &mut usize) {
    while *pos < c.len() && c[*pos].is_whitespace() {
        *pos += 1;
    }
}

fn parse_at(c: &[char], pos: &mut usize) -> Expr {
    skip_ws(c, pos);
    if c[*pos] == '\'' {
        *pos += 1;
        let mut s = String::new();
        loop {
            if c[*pos] == '\'' {
                if *pos + 1 < c.len() && c[*pos + 1] == '\'' {
                    s.push('\'');
                    *pos += 2;
                    continue;
                }
                *pos += 1;
                break;
            }
            s.push(c[*pos]);
            *pos += 1;
        }
        return Expr::Str(s);
    }
    let start = *pos;
    while *pos < c.len() && (c[*pos].is_alphanumeric() || c[*pos] == '.' || c[*pos] == '_') {
        *pos += 1;
    }
    let name: String = c[start..*pos].iter().collect();
    skip_ws(c, pos);
    assert_eq!(c[*pos], '(', "call expected after {name}");
    *pos += 1;
    let mut args = Vec::new();
    loop {
        skip_ws(c, pos);
        if c[*pos] == ')' {
            *pos += 1;
            break;
        }
        args.push(parse_at(c, pos));
        skip_ws(c, pos);
        if c[*pos] == ',' {
            *pos += 1;
        }
    }
    Expr::Call(name, args)
}

fn truthy(v: &Value) -> bool {
    v.as_bool()
        .unwrap_or_else(|| panic!("boolean expected, got {v}"))
}

impl Template {
    fn new(params: Value) -> Self {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(TEMPLATE).unwrap()).unwrap();
        let mut all = Map::new();
        for (k, p) in doc["parameters"].as_object().unwrap() {
            if let Some(d) = p.get("defaultValue") {
                all.insert(k.clone(), d.clone());
            }
        }
        for (k, v) in params.as_object().unwrap() {
            all.insert(k.clone(), v.clone());
        }
        Self { doc, params: all }
    }

    fn value(&self, v: &Value, locals: &Map<String, Value>) -> Value {
        match v {
            Value::String(s) if s.starts_with('[') && !s.starts_with("[[") => {
                self.eval(&parse_expr(&s[1..s.len() - 1]), locals)
            }
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), self.value(v, locals)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|v| self.value(v, locals)).collect()),
            other => other.clone(),
        }
    }

    fn eval(&self, e: &Expr, locals: &Map<String, Value>) -> Value {
        let Expr::Call(name, args) = e else {
            let Expr::Str(s) = e else { unreachable!() };
            return json!(s);
        };
        let a: Vec<Value> = args.iter().map(|x| self.eval(x, locals)).collect();
        match name.as_str() {
            "parameters" => {
                let key = a[0].as_str().unwrap();
                locals
                    .get(key)
                    .or_else(|| self.params.get(key))
                    .cloned()
                    .unwrap_or_else(|| panic!("parameter {key}"))
            }
            "variables" => {
                let key = a[0].as_str().unwrap();
                self.value(&self.doc["variables"][key], &Map::new())
            }
            "if" => {
                if truthy(&a[0]) {
                    a[1].clone()
                } else {
                    a[2].clone()
                }
            }
            "equals" => json!(a[0] == a[1]),
            "not" => json!(!truthy(&a[0])),
            "and" => json!(a.iter().all(truthy)),
            "empty" => json!(match &a[0] {
                Value::String(s) => s.is_empty(),
                Value::Object(o) => o.is_empty(),
                Value::Array(x) => x.is_empty(),
                Value::Null => true,
                _ => false,
            }),
            "union" => {
                let mut out = Map::new();
                for v in &a {
                    out.extend(v.as_object().unwrap().clone());
                }
                Value::Object(out)
            }
            "createObject" => {
                let mut out = Map::new();
                for pair in a.chunks(2) {
                    out.insert(pair[0].as_str().unwrap().to_owned(), pair[1].clone());
                }
                Value::Object(out)
            }
            "split" => json!(
                a[0].as_str()
                    .unwrap()
                    .split(a[1].as_str().unwrap())
                    .collect::<Vec<_>>()
            ),
            "last" => a[0].as_array().unwrap().last().cloned().unwrap(),
            user => {
                let (ns, member) = user
                    .split_once('.')
                    .unwrap_or_else(|| panic!("function {user}"));
                let f = self.doc["functions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["namespace"] == ns)
                    .map(|f| f["members"][member].clone())
                    .unwrap_or_else(|| panic!("function {user}"));
                let mut bound = Map::new();
                for (p, v) in f["parameters"].as_array().unwrap().iter().zip(&a) {
                    bound.insert(p["name"].as_str().unwrap().to_owned(), v.clone());
                }
                self.value(&f["output"]["value"], &bound)
            }
        }
    }

    /// The extension resource of the template, evaluated.
    fn extension(&self) -> Value {
        let res = &self.doc["resources"][0];
        self.value(res, &Map::new())
    }
}

// ---- the table ------------------------------------------------------------------------

fn settings_of(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| {
                    let s = match v {
                        Value::String(s) if s.is_empty() => return None,
                        Value::String(s) => s.clone(),
                        Value::Bool(b) => b.to_string(),
                        other => other.to_string(),
                    };
                    Some((k.clone(), s))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn facts() -> ClusterFacts {
    ClusterFacts {
        id: AKS_ID.parse().unwrap(),
        location: "eastus".into(),
        node_count: Some(3),
    }
}

const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEfake\n-----END PRIVATE KEY-----\n";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn body_matches_microsofts_template() {
    let secret_tls = InferenceTls::Secret {
        name: "scoring-tls".into(),
        cname: "scoring.contoso.com".into(),
    };
    let pem_tls = InferenceTls::Pem {
        cert: Secret::new(CERT_PEM),
        key: Secret::new(KEY_PEM),
        cname: "scoring.contoso.com".into(),
    };
    let inference = |router, ilb, tls| InferenceSpec {
        router_service_type: router,
        internal_load_balancer: ilb,
        high_availability: None,
        tls,
    };
    struct Case {
        name: &'static str,
        spec: AzureMlExtensionSpec,
        params: Value,
    }
    let base = |f: &dyn Fn(&mut AzureMlExtensionSpec)| {
        let mut s = AzureMlExtensionSpec::new(facts());
        f(&mut s);
        s
    };
    let common =
        json!({"extensionName": "azureml", "aksResourceId": AKS_ID, "aksLocation": "eastus"});
    let with = |extra: Value| {
        let mut p = common.clone();
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    };
    let cases = vec![
        Case {
            name: "inference, public LoadBalancer, TLS by Secret",
            spec: base(&|s| {
                s.training = true;
                s.inference = Some(inference(
                    RouterServiceType::LoadBalancer,
                    false,
                    secret_tls.clone(),
                ));
            }),
            params: with(
                json!({"autoUpgradeMinorVersion": true, "enableTraining": true, "enableInference": true,
                "inferenceRouterServiceType": "LoadBalancer", "internalLoadBalancerProvider": "",
                "sslCname": "scoring.contoso.com", "sslSecret": "scoring-tls"}),
            ),
        },
        Case {
            name: "inference, internal LoadBalancer, TLS by PEM",
            spec: base(&|s| {
                s.inference = Some(inference(
                    RouterServiceType::LoadBalancer,
                    true,
                    pem_tls.clone(),
                ));
            }),
            params: with(
                json!({"autoUpgradeMinorVersion": true, "enableInference": true,
                "inferenceRouterServiceType": "LoadBalancer", "internalLoadBalancerProvider": "azure",
                "sslCname": "scoring.contoso.com", "sslCertificate": b64(CERT_PEM), "sslKey": b64(KEY_PEM)}),
            ),
        },
        Case {
            name: "inference, NodePort, HTTP only, no HA, node selector",
            spec: base(&|s| {
                let mut i = inference(RouterServiceType::NodePort, false, InferenceTls::Disabled);
                i.high_availability = Some(false);
                s.inference = Some(i);
                s.node_selector = BTreeMap::from([("agentpool".to_owned(), "ml".to_owned())]);
            }),
            params: with(
                json!({"autoUpgradeMinorVersion": true, "enableInference": true,
                "inferenceRouterServiceType": "NodePort", "internalLoadBalancerProvider": "",
                "allowInsecureConnections": true, "inferenceRouterHA": false,
                "nodeSelector": {"nodeSelector.agentpool": "ml"}}),
            ),
        },
        Case {
            name: "training only, GPU add-ons",
            spec: base(&|s| {
                s.training = true;
                s.add_ons.nvidia_device_plugin = true;
                s.add_ons.dcgm_exporter = true;
                s.add_ons.volcano = false;
            }),
            params: with(
                json!({"autoUpgradeMinorVersion": true, "enableTraining": true,
                "installNvidiaDevicePlugin": true, "installDcgmExporter": true, "installVolcano": false}),
            ),
        },
        Case {
            name: "pinned version",
            spec: base(&|s| {
                s.training = true;
                s.version = VersionPolicy::Pinned("1.1.64".into());
            }),
            params: with(json!({"autoUpgradeMinorVersion": false, "enableTraining": true})),
        },
    ];
    for case in cases {
        let ours = serde_json::to_value(case.spec.build().expect(case.name)).unwrap();
        let theirs = Template::new(case.params).extension();
        let tp = &theirs["properties"];
        let op = &ours["properties"];
        assert_eq!(
            ours["identity"], theirs["identity"],
            "{}: identity",
            case.name
        );
        assert!(
            op["extensionType"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(tp["extensionType"].as_str().unwrap()),
            "{}",
            case.name
        );
        assert_eq!(op["scope"], tp["scope"], "{}: scope", case.name);
        assert_eq!(
            op["autoUpgradeMinorVersion"], tp["autoUpgradeMinorVersion"],
            "{}",
            case.name
        );
        if op["autoUpgradeMinorVersion"] == json!(true) {
            assert_eq!(op["releaseTrain"], tp["releaseTrain"], "{}", case.name);
            assert!(op.get("version").is_none(), "{}", case.name);
        } else {
            // The template has no version parameter; the swagger: releaseTrain "only if
            // autoUpgradeMinorVersion is 'true'", version "autoUpgradeMinorVersion must be 'false'".
            assert!(op.get("releaseTrain").is_none(), "{}", case.name);
            assert_eq!(op["version"], json!("1.1.64"), "{}", case.name);
        }
        let mut mine = settings_of(&op["configurationSettings"]);
        let template = settings_of(&tp["configurationSettings"]);
        // The CLI's differences (module docs).
        assert_eq!(
            mine.remove("domain"),
            Some(format!("{}.cloudapp.azure.com", template["domain"])),
            "{}",
            case.name
        );
        let mut template = template;
        template.remove("domain");
        assert_eq!(mine.remove("location").as_deref(), Some("eastus"));
        if let Some(secret) = mine.remove("sslSecret") {
            assert_eq!(
                Some(&secret),
                mine.get("scoringFe.sslSecret"),
                "{}",
                case.name
            );
        }
        assert_eq!(mine, template, "{}: configurationSettings", case.name);
        // The template writes empty PEM values when it has none (training only): dropped.
        let mine_protected = settings_of(&op["configurationProtectedSettings"]);
        let template_protected = settings_of(&tp["configurationProtectedSettings"]);
        assert_eq!(
            mine_protected, template_protected,
            "{}: configurationProtectedSettings",
            case.name
        );
    }
}

#[test]
fn the_clis_checks_refuse_bad_specs() {
    let spec = |f: &dyn Fn(&mut AzureMlExtensionSpec)| {
        let mut s = AzureMlExtensionSpec::new(facts());
        f(&mut s);
        s.build().err()
    };
    let tls = |cname: &str| InferenceTls::Secret {
        name: "s".into(),
        cname: cname.into(),
    };
    let inference = |router, ilb, tls| {
        Some(InferenceSpec {
            router_service_type: router,
            internal_load_balancer: ilb,
            high_availability: None,
            tls,
        })
    };
    assert_eq!(spec(&|_| {}), Some(ExtensionSpecError::NoWorkload));
    assert_eq!(
        spec(&|s| s.inference = inference(RouterServiceType::LoadBalancer, false, tls(""))),
        Some(ExtensionSpecError::TlsWithoutCname)
    );
    assert_eq!(
        spec(&|s| s.inference = inference(RouterServiceType::NodePort, true, tls("a.b"))),
        Some(ExtensionSpecError::NodePortWithInternalLoadBalancer)
    );
    assert_eq!(
        spec(&|s| s.inference = inference(RouterServiceType::ClusterIp, true, tls("a.b"))),
        Some(ExtensionSpecError::ClusterIpWithInternalLoadBalancer)
    );
    for key in [
        "clusterId",
        "scoringFe.sslSecret",
        "nodeSelector.x",
        "DOMAIN",
    ] {
        assert_eq!(
            spec(&|s| {
                s.training = true;
                s.extra_settings.insert(key.to_owned(), "x".to_owned());
            }),
            Some(ExtensionSpecError::ReservedSetting(key.to_owned())),
            "{key}"
        );
    }
    assert_eq!(
        spec(&|s| {
            s.training = true;
            s.cluster.id = ResourceId::workspace("s", "rg", "w").unwrap();
        }),
        Some(ExtensionSpecError::NotAManagedCluster(
            "Microsoft.MachineLearningServices/workspaces".into()
        ))
    );
    assert_eq!(
        ExtensionSpecError::NoWorkload.to_string(),
        "To create Microsoft.AzureML.Kubernetes extension, either enable Machine Learning training or inference by specifying '--configuration-settings enableTraining=true' or '--configuration-settings enableInference=true'."
    );
}

#[test]
fn small_clusters_get_the_clis_defaults_and_pem_stays_out_of_debug() {
    let mut s = AzureMlExtensionSpec::new(ClusterFacts {
        node_count: Some(2),
        ..facts()
    });
    s.inference = Some(InferenceSpec {
        router_service_type: RouterServiceType::LoadBalancer,
        internal_load_balancer: false,
        high_availability: None,
        tls: InferenceTls::Pem {
            cert: Secret::new(CERT_PEM),
            key: Secret::new(KEY_PEM),
            cname: "a.contoso.com".into(),
        },
    });
    let body = s.build().unwrap();
    let set = &body.properties.configuration_settings;
    assert_eq!(set["inferenceRouterHA"], "False");
    assert_eq!(set["clusterPurpose"], "DevTest");
    let debug = format!("{s:?} {body:?}");
    for secret in [KEY_PEM, &b64(KEY_PEM), "MIIEfake"] {
        assert!(!debug.contains(secret), "{debug}");
    }
    s.migrate_legacy_front_end = true;
    let body = s.build().unwrap();
    let set = &body.properties.configuration_settings;
    assert_eq!(set["scoringFe.enableUpgrade"], "true");
    assert_eq!(set["isAKSMigration"], "true");
}
