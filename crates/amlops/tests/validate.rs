//! Table tests of the static validation (`amlops validate`): every admission rule, one case each,
//! asserting the field path and the message a user sees.

use amlops::validate::{Manifest, check_value, parse_documents};
use serde_json::{Value, json};

fn ic() -> Value {
    json!({
        "apiVersion": "amlops.dev/v1alpha1", "kind": "InferenceCluster",
        "metadata": {"name": "prod-scoring", "namespace": "ml"},
        "spec": {
            "workspace": {"subscriptionId": "00000000-0000-0000-0000-000000000000", "resourceGroup": "ml-rg", "name": "ml-ws"},
            "computeName": "prodaks"
        }
    })
}

fn ca() -> Value {
    json!({
        "apiVersion": "amlops.dev/v1alpha1", "kind": "ClusterAttachment",
        "metadata": {"name": "shared", "namespace": "ml"},
        "spec": {
            "workspace": {"subscriptionId": "00000000-0000-0000-0000-000000000000", "resourceGroup": "ml-rg", "name": "ml-ws"},
            "computeName": "sharedaks",
            "aksCluster": {"resourceId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/shared"}
        }
    })
}

fn network() -> Value {
    json!({
        "subnetId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/aks",
        "serviceCidr": "10.0.0.0/16", "dnsServiceIP": "10.0.0.10", "dockerBridgeCidr": "172.17.0.1/16"
    })
}

/// Set (or with `Value::Null` as marker `REMOVE`, delete) the value at a JSON pointer.
fn with(mut doc: Value, edits: &[(&str, Value)]) -> Value {
    for (pointer, value) in edits {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = if parent.is_empty() {
            &mut doc
        } else {
            doc.pointer_mut(parent).unwrap()
        };
        let obj = target.as_object_mut().unwrap();
        if *value == json!("<remove>") {
            obj.remove(key);
        } else {
            obj.insert(key.to_string(), value.clone());
        }
    }
    doc
}

#[test]
fn valid_manifests_pass() {
    let cases = [
        ic(),
        ca(),
        with(ic(), &[("/spec/network", network())]),
        with(
            ic(),
            &[(
                "/spec/network",
                json!({"vnetResourceGroup": "net", "vnetName": "v", "subnetName": "aks", "serviceCidr": "10.0.0.0/16", "dnsServiceIP": "10.0.0.10", "dockerBridgeCidr": "172.17.0.1/16"}),
            )],
        ),
        with(
            ic(),
            &[(
                "/spec/tls",
                json!({"mode": "Auto", "leafDomainLabel": "contoso", "autoRenew": true}),
            )],
        ),
        with(
            ic(),
            &[
                (
                    "/spec/tls",
                    json!({"mode": "Custom", "cname": "scoring.contoso.com", "secretRef": {"name": "tls"}}),
                ),
                (
                    "/spec/loadBalancer",
                    json!({"type": "InternalLoadBalancer", "subnet": "aks-subnet"}),
                ),
            ],
        ),
        with(
            ic(),
            &[
                ("/spec/clusterPurpose", json!("DevTest")),
                ("/spec/agentCount", json!(1)),
            ],
        ),
        with(ic(), &[("/spec/computeName", json!("<remove>"))]), // metadata.name is a valid compute name
        with(
            ca(),
            &[
                (
                    "/spec/aksCluster",
                    json!({"resourceGroup": "aks-rg", "name": "shared"}),
                ),
                ("/spec/deletionPolicy", json!("Orphan")),
                ("/spec/reattachPolicy", json!("Manual")),
            ],
        ),
    ];
    for (i, doc) in cases.iter().enumerate() {
        if let Err(f) = check_value(doc, None) {
            panic!("case {i} should be valid: {f:?}");
        }
    }
}

#[test]
fn defaults_are_applied() {
    let Ok(Manifest::InferenceCluster(o)) = check_value(&ic(), None) else {
        panic!("valid")
    };
    assert_eq!(o.spec.agent_count, 3);
    assert_eq!(o.spec.vm_size, "Standard_D3_v2");
    assert_eq!(o.spec.deletion_policy, amlops::crd::DeletionPolicy::Delete);
    let Ok(Manifest::ClusterAttachment(o)) = check_value(&ca(), None) else {
        panic!("valid")
    };
    assert_eq!(o.spec.deletion_policy, amlops::crd::DeletionPolicy::Detach);
}

#[test]
fn every_rule_refuses_with_a_clear_message() {
    // (case, manifest, field path, message fragment)
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "computeName too short",
            with(ic(), &[("/spec/computeName", json!("ab"))]),
            "spec.computeName",
            "3 to 24 characters",
        ),
        (
            "computeName too long",
            with(ic(), &[("/spec/computeName", json!("a".repeat(25)))]),
            "spec.computeName",
            "may not be longer than 24",
        ),
        (
            "computeName bad start",
            with(ic(), &[("/spec/computeName", json!("1aks"))]),
            "spec.computeName",
            "must start with a letter",
        ),
        (
            "computeName bad char",
            with(ic(), &[("/spec/computeName", json!("my_aks"))]),
            "spec.computeName",
            "only letters, digits and '-'",
        ),
        (
            "computeName ends with dash",
            with(ic(), &[("/spec/computeName", json!("myaks-"))]),
            "spec.computeName",
            "end with a letter or digit",
        ),
        (
            "computeName -digits",
            with(ic(), &[("/spec/computeName", json!("prodaks-2"))]),
            "spec.computeName",
            "must not end in '-' followed by digits",
        ),
        (
            "metadata.name as compute name",
            with(
                ic(),
                &[
                    ("/spec/computeName", json!("<remove>")),
                    ("/metadata/name", json!("scoring-01")),
                ],
            ),
            "",
            "set spec.computeName",
        ),
        (
            "subscription not a GUID",
            with(ic(), &[("/spec/workspace/subscriptionId", json!("my-sub"))]),
            "spec.workspace.subscriptionId",
            "must be a GUID",
        ),
        (
            "resource group bad chars",
            with(ic(), &[("/spec/workspace/resourceGroup", json!("ml rg"))]),
            "spec.workspace.resourceGroup",
            "1-90 characters",
        ),
        (
            "resource group ends with dot",
            with(ic(), &[("/spec/workspace/resourceGroup", json!("ml-rg."))]),
            "spec.workspace.resourceGroup",
            "must not end with '.'",
        ),
        (
            "workspace name",
            with(ic(), &[("/spec/workspace/name", json!("w"))]),
            "spec.workspace.name",
            "3-33 characters",
        ),
        (
            "workspace missing",
            with(ic(), &[("/spec/workspace", json!("<remove>"))]),
            "spec.workspace",
            "required value",
        ),
        (
            "unknown field",
            with(ic(), &[("/spec/nodeCount", json!(3))]),
            "spec.nodeCount",
            "unknown field \"nodeCount\"",
        ),
        (
            "wrong type",
            with(ic(), &[("/spec/agentCount", json!("3"))]),
            "spec.agentCount",
            "must be of type integer",
        ),
        (
            "agentCount zero",
            with(
                ic(),
                &[
                    ("/spec/agentCount", json!(0)),
                    ("/spec/clusterPurpose", json!("DevTest")),
                ],
            ),
            "spec.agentCount",
            "between 1 and 1000",
        ),
        (
            "FastProd below 3 nodes",
            with(ic(), &[("/spec/agentCount", json!(2))]),
            "spec",
            "FastProd needs agentCount >= 3",
        ),
        (
            "purpose enum",
            with(ic(), &[("/spec/clusterPurpose", json!("Prod"))]),
            "spec.clusterPurpose",
            "supported values are \"FastProd\", \"DenseProd\", \"DevTest\"",
        ),
        (
            "vmSize format",
            with(ic(), &[("/spec/vmSize", json!("Standard D3"))]),
            "spec.vmSize",
            "VM size name",
        ),
        (
            "location format",
            with(ic(), &[("/spec/location", json!("East US"))]),
            "spec.location",
            "Azure region name",
        ),
        (
            "lb subnet with public ip",
            with(
                ic(),
                &[(
                    "/spec/loadBalancer",
                    json!({"type": "PublicIp", "subnet": "aks"}),
                )],
            ),
            "spec.loadBalancer",
            "only used with type InternalLoadBalancer",
        ),
        (
            "lb type enum",
            with(ic(), &[("/spec/loadBalancer", json!({"type": "Internal"}))]),
            "spec.loadBalancer.type",
            "supported values",
        ),
        (
            "Auto without label",
            with(ic(), &[("/spec/tls", json!({"mode": "Auto"}))]),
            "spec.tls",
            "Auto needs leafDomainLabel",
        ),
        (
            "Auto with cname",
            with(
                ic(),
                &[(
                    "/spec/tls",
                    json!({"mode": "Auto", "leafDomainLabel": "x1", "cname": "a.b.com"}),
                )],
            ),
            "spec.tls",
            "remove cname and secretRef",
        ),
        (
            "Custom without secret",
            with(
                ic(),
                &[(
                    "/spec/tls",
                    json!({"mode": "Custom", "cname": "a.contoso.com"}),
                )],
            ),
            "spec.tls",
            "Custom needs cname",
        ),
        (
            "label with Custom",
            with(
                ic(),
                &[(
                    "/spec/tls",
                    json!({"mode": "Custom", "cname": "a.contoso.com", "secretRef": {"name": "s"}, "leafDomainLabel": "x1"}),
                )],
            ),
            "spec.tls",
            "only used with mode Auto",
        ),
        (
            "Disabled with cname",
            with(ic(), &[("/spec/tls", json!({"cname": "a.contoso.com"}))]),
            "spec.tls",
            "tls.mode is Disabled",
        ),
        (
            "autoRenew without Auto",
            with(
                ic(),
                &[(
                    "/spec/tls",
                    json!({"mode": "Custom", "cname": "a.contoso.com", "secretRef": {"name": "s"}, "autoRenew": true}),
                )],
            ),
            "spec.tls",
            "tls.autoRenew renews Microsoft-issued certificates only",
        ),
        (
            "bad leaf label",
            with(
                ic(),
                &[(
                    "/spec/tls",
                    json!({"mode": "Auto", "leafDomainLabel": "Contoso"}),
                )],
            ),
            "spec.tls.leafDomainLabel",
            "lowercase letters",
        ),
        (
            "bad cname",
            with(
                ic(),
                &[(
                    "/spec/tls",
                    json!({"mode": "Custom", "cname": "not a host", "secretRef": {"name": "s"}}),
                )],
            ),
            "spec.tls.cname",
            "fully qualified host name",
        ),
        (
            "bad secret name",
            with(
                ic(),
                &[(
                    "/spec/tls",
                    json!({"mode": "Custom", "cname": "a.contoso.com", "secretRef": {"name": "My_Secret"}}),
                )],
            ),
            "spec.tls.secretRef.name",
            "DNS subdomain",
        ),
        (
            "Auto with ILB",
            with(
                ic(),
                &[
                    (
                        "/spec/tls",
                        json!({"mode": "Auto", "leafDomainLabel": "contoso"}),
                    ),
                    (
                        "/spec/loadBalancer",
                        json!({"type": "InternalLoadBalancer"}),
                    ),
                ],
            ),
            "spec",
            "Auto is not supported with loadBalancer.type InternalLoadBalancer",
        ),
        (
            "network partial",
            with(
                ic(),
                &[(
                    "/spec/network",
                    json!({"subnetId": network()["subnetId"], "serviceCidr": "10.0.0.0/16"}),
                )],
            ),
            "spec.network",
            "all-or-nothing",
        ),
        (
            "network both subnet forms",
            with(
                ic(),
                &[(
                    "/spec/network",
                    with(network(), &[("/vnetName", json!("v"))]),
                )],
            ),
            "spec.network",
            "either subnetId or vnetResourceGroup",
        ),
        (
            "network partial vnet",
            with(
                ic(),
                &[(
                    "/spec/network",
                    with(
                        network(),
                        &[("/subnetId", json!("<remove>")), ("/vnetName", json!("v"))],
                    ),
                )],
            ),
            "spec.network",
            "must be set together",
        ),
        (
            "subnetId format",
            with(
                ic(),
                &[(
                    "/spec/network",
                    with(network(), &[("/subnetId", json!("aks-subnet"))]),
                )],
            ),
            "spec.network.subnetId",
            "subnet resource id",
        ),
        (
            "serviceCidr octet > 255",
            with(
                ic(),
                &[(
                    "/spec/network",
                    with(network(), &[("/serviceCidr", json!("10.0.256.0/16"))]),
                )],
            ),
            "spec.network.serviceCidr",
            "octets 0-255",
        ),
        (
            "serviceCidr prefix > 32",
            with(
                ic(),
                &[(
                    "/spec/network",
                    with(network(), &[("/serviceCidr", json!("10.0.0.0/33"))]),
                )],
            ),
            "spec.network.serviceCidr",
            "prefix 0-32",
        ),
        (
            "dnsServiceIP not an address",
            with(
                ic(),
                &[(
                    "/spec/network",
                    with(network(), &[("/dnsServiceIP", json!("10.0.0"))]),
                )],
            ),
            "spec.network.dnsServiceIP",
            "IPv4 address",
        ),
        (
            "dockerBridgeCidr format",
            with(
                ic(),
                &[(
                    "/spec/network",
                    with(network(), &[("/dockerBridgeCidr", json!("172.17.0.1"))]),
                )],
            ),
            "spec.network.dockerBridgeCidr",
            "IPv4 CIDR",
        ),
        (
            "dns outside serviceCidr",
            with(
                ic(),
                &[(
                    "/spec/network",
                    with(network(), &[("/dnsServiceIP", json!("10.1.0.10"))]),
                )],
            ),
            "spec.network.dnsServiceIP",
            "is not inside serviceCidr 10.0.0.0/16",
        ),
        (
            "dns reserved .1",
            with(
                ic(),
                &[(
                    "/spec/network",
                    with(network(), &[("/dnsServiceIP", json!("10.0.0.1"))]),
                )],
            ),
            "spec.network.dnsServiceIP",
            "reserved",
        ),
        (
            "bridge overlaps services",
            with(
                ic(),
                &[(
                    "/spec/network",
                    with(network(), &[("/dockerBridgeCidr", json!("10.0.5.1/24"))]),
                )],
            ),
            "spec.network.dockerBridgeCidr",
            "overlaps serviceCidr",
        ),
        (
            "maxRetries bound",
            with(ic(), &[("/spec/maxRetries", json!(11))]),
            "spec.maxRetries",
            "between 0 and 10",
        ),
        (
            "deletionPolicy enum",
            with(ic(), &[("/spec/deletionPolicy", json!("Keep"))]),
            "spec.deletionPolicy",
            "supported values",
        ),
        (
            "credentialsRef name",
            with(ic(), &[("/spec/credentialsRef", json!({"name": "Creds!"}))]),
            "spec.credentialsRef.name",
            "DNS subdomain",
        ),
        (
            "attach Delete policy",
            with(ca(), &[("/spec/deletionPolicy", json!("Delete"))]),
            "spec",
            "deletionPolicy Delete is not allowed on a ClusterAttachment",
        ),
        (
            "attach resourceId kind",
            with(
                ca(),
                &[(
                    "/spec/aksCluster/resourceId",
                    json!(
                        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/aks-rg/providers/Microsoft.Compute/virtualMachines/vm"
                    ),
                )],
            ),
            "spec.aksCluster.resourceId",
            "must be an AKS resource id",
        ),
        (
            "attach both forms",
            with(ca(), &[("/spec/aksCluster/name", json!("shared"))]),
            "spec.aksCluster",
            "either resourceId or resourceGroup + name",
        ),
        (
            "attach name without group",
            with(ca(), &[("/spec/aksCluster", json!({"name": "shared"}))]),
            "spec.aksCluster",
            "must be set together",
        ),
        (
            "attach other subscription",
            with(
                ca(),
                &[(
                    "/spec/aksCluster/resourceId",
                    json!(
                        "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/shared"
                    ),
                )],
            ),
            "spec.aksCluster.resourceId",
            "only clusters of the workspace's subscription",
        ),
        (
            "attach missing cluster",
            with(ca(), &[("/spec/aksCluster", json!("<remove>"))]),
            "spec.aksCluster",
            "required value",
        ),
        (
            "attach reattachPolicy enum",
            with(ca(), &[("/spec/reattachPolicy", json!("Later"))]),
            "spec.reattachPolicy",
            "supported values",
        ),
        (
            "attach Auto with ILB",
            with(
                ca(),
                &[
                    (
                        "/spec/tls",
                        json!({"mode": "Auto", "leafDomainLabel": "contoso"}),
                    ),
                    (
                        "/spec/loadBalancer",
                        json!({"type": "InternalLoadBalancer"}),
                    ),
                ],
            ),
            "spec",
            "Auto is not supported",
        ),
        (
            "attach agentCount unknown",
            with(ca(), &[("/spec/agentCount", json!(3))]),
            "spec.agentCount",
            "unknown field",
        ),
        (
            "null field",
            with(ic(), &[("/spec/workspace/name", Value::Null)]),
            "spec.workspace.name",
            "must not be null",
        ),
        (
            "no name",
            with(
                ic(),
                &[
                    ("/metadata/name", json!("<remove>")),
                    ("/spec/computeName", json!("prodaks")),
                ],
            ),
            "metadata.name",
            "every object needs a name",
        ),
        (
            "unknown kind",
            with(ic(), &[("/kind", json!("Cluster"))]),
            "",
            "unknown amlops kind Cluster",
        ),
        (
            "foreign kind",
            with(
                ic(),
                &[("/apiVersion", json!("v1")), ("/kind", json!("ConfigMap"))],
            ),
            "",
            "not an amlops object",
        ),
    ];
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for (name, doc, path, fragment) in &cases {
        let found = match check_value(doc, None) {
            Ok(_) => {
                failures.push(format!("{name}: accepted"));
                continue;
            }
            Err(f) => f,
        };
        if !found
            .iter()
            .any(|f| f.path == *path && f.message.contains(fragment))
        {
            failures.push(format!(
                "{name}: expected `{path}: …{fragment}…`, got {found:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn immutable_fields_refuse_updates() {
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        (
            "workspace",
            ic(),
            with(ic(), &[("/spec/workspace/name", json!("other-ws"))]),
            "workspace is immutable",
        ),
        (
            "computeName",
            ic(),
            with(ic(), &[("/spec/computeName", json!("otheraks"))]),
            "computeName is immutable",
        ),
        (
            "computeName removed",
            ic(),
            with(ic(), &[("/spec/computeName", json!("<remove>"))]),
            "computeName is immutable",
        ),
        (
            "vmSize",
            ic(),
            with(ic(), &[("/spec/vmSize", json!("Standard_D4_v2"))]),
            "vmSize is immutable",
        ),
        (
            "location",
            with(ic(), &[("/spec/location", json!("eastus"))]),
            with(ic(), &[("/spec/location", json!("westus"))]),
            "location is immutable",
        ),
        (
            "location added",
            ic(),
            with(ic(), &[("/spec/location", json!("westus"))]),
            "location is immutable",
        ),
        (
            "network",
            with(ic(), &[("/spec/network", network())]),
            with(
                ic(),
                &[(
                    "/spec/network",
                    with(network(), &[("/dnsServiceIP", json!("10.0.0.11"))]),
                )],
            ),
            "network is immutable",
        ),
        (
            "network added",
            ic(),
            with(ic(), &[("/spec/network", network())]),
            "network is immutable",
        ),
        (
            "aksCluster",
            ca(),
            with(
                ca(),
                &[(
                    "/spec/aksCluster/resourceId",
                    json!(
                        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/other"
                    ),
                )],
            ),
            "aksCluster is immutable",
        ),
    ];
    for (name, old, new, fragment) in cases {
        // Before Azure has the compute (no status.computeId) a refused value can be
        // corrected in place: the operator made no Azure write for it.
        assert!(
            check_value(&new, Some(&old)).is_ok(),
            "{name}: refused before the compute exists"
        );
        let pending = with(old.clone(), &[("/status", json!({"phase": "Pending"}))]);
        assert!(
            check_value(&new, Some(&pending)).is_ok(),
            "{name}: refused while only validated"
        );
        // Once the operator recorded the compute (before its first PUT), it is immutable.
        let created = with(
            old,
            &[(
                "/status",
                json!({"computeId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws/computes/prodaks"}),
            )],
        );
        let found = check_value(&new, Some(&created)).err().unwrap_or_default();
        let field = fragment.split(' ').next().unwrap_or_default();
        assert!(
            found.iter().any(|f| f.message.contains(fragment)
                && f.message.contains("once Azure has the compute")
                && f.path == format!("spec.{field}")),
            "{name}: got {found:?}"
        );
    }
    // Mutable fields change freely.
    let scaled = with(
        ic(),
        &[
            ("/spec/agentCount", json!(5)),
            (
                "/spec/tls",
                json!({"mode": "Auto", "leafDomainLabel": "new"}),
            ),
            ("/spec/description", json!("x")),
        ],
    );
    assert!(check_value(&scaled, Some(&ic())).is_ok());
}

#[test]
fn broken_yaml_is_a_clear_error_not_a_panic() {
    let docs = parse_documents("bad.yaml", "apiVersion: v1\nkind: [unclosed\n");
    assert_eq!(docs.len(), 1);
    assert!(docs[0].value.as_ref().unwrap_err().contains("invalid YAML"));
    let docs = parse_documents("list.yaml", "- a\n- b\n");
    assert!(
        docs[0]
            .value
            .as_ref()
            .unwrap_err()
            .contains("not a mapping")
    );
    let docs = parse_documents(
        "multi.yaml",
        "---\n---\napiVersion: v1\nkind: A\n---\napiVersion: v1\nkind: B\n",
    );
    assert_eq!(docs.len(), 2);
}
