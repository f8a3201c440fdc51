"""The how-to's scenarios ("Create and attach an Azure Kubernetes Service cluster"), run with
the unmodified Azure ML SDK v1 against the emulator. Every step checks the SDK's result and
the emulator's admin state (computes, AKS clusters, `azuremlfessl`, request log).

The tests run in file order and build on each other (create, then list, update, detach...),
as a user's session does; each uses its own compute names."""
import re

import pytest
from azureml.core.compute import AksCompute, ComputeTarget
from azureml.core.compute.aks import AksUpdateConfiguration, SslConfiguration
from azureml.exceptions import ComputeTargetException

from conftest import AKS_RG, SUBSCRIPTION, WORKSPACE, WORKSPACE_RG, cert_info

CREATED = "sdk-default"
DEVTEST = "sdk-devtest"
VNET = "sdk-vnet"
PLAIN = "sdk-attach"
AUTO = "sdk-auto"
CUSTOM = "sdk-custom"
RENEW = "sdk-renew"

AUTO_FQDN = re.compile(r"^(?P<label>[a-z0-9-]+)\d{6}\.eastus\.cloudapp\.azure\.com$")


def no_client_errors(emu):
    """Every ARM request the SDK sent since the last clear was accepted (2xx or a 404 probe)."""
    bad = [r for r in emu.requests_log()
           if r["status"] >= 400 and r["status"] != 404 and r["path"].startswith(("/subscriptions", "/rp/"))]
    assert not bad, f"requests refused by the emulator: {bad}"
    emu.clear_requests()


def test_workspace_get(ws, emu):
    assert ws.name == WORKSPACE
    assert ws.location == "eastus"
    assert ws.subscription_id == SUBSCRIPTION
    admin = [w for w in emu.state()["workspaces"] if w["name"] == WORKSPACE]
    assert admin and admin[0]["location"] == ws.location
    log = emu.requests_log()
    assert any(r["method"] == "GET" and r["path"].lower().endswith(f"/workspaces/{WORKSPACE}")
               and r["status"] == 200 for r in log), log
    no_client_errors(emu)


def test_create_with_the_default_configuration(ws, emu):
    config = AksCompute.provisioning_configuration()
    target = ComputeTarget.create(ws, CREATED, config)
    target.wait_for_completion(show_output=False)
    assert target.provisioning_state == "Succeeded"
    assert target.is_attached is False
    assert target.agent_count == 3 and target.agent_vm_size == "Standard_D3_v2"
    c = emu.compute(CREATED)
    assert c["provisioningState"] == "Succeeded" and not c["isAttachedCompute"]
    assert c["clusterPurpose"] == "FastProd"
    cluster = emu.cluster(resource_id=c["resourceId"])
    assert cluster, "the create provisioned an AKS cluster"
    assert [(p["count"], p["vmSize"]) for p in cluster["agentPools"]] == [(3, "Standard_D3_v2")]
    assert cluster["attachedCompute"] == c["id"]
    assert cluster["azuremlComponents"], "Azure ML's components are installed"
    assert target.cluster_resource_id.lower() == c["resourceId"].lower()
    no_client_errors(emu)


def test_create_dev_test(ws, emu):
    config = AksCompute.provisioning_configuration(cluster_purpose=AksCompute.ClusterPurpose.DEV_TEST)
    target = ComputeTarget.create(ws, DEVTEST, config)
    target.wait_for_completion(show_output=False)
    assert target.provisioning_state == "Succeeded"
    assert target.cluster_purpose == "DevTest"
    c = emu.compute(DEVTEST)
    assert c["provisioningState"] == "Succeeded" and c["clusterPurpose"] == "DevTest"
    cluster = emu.cluster(resource_id=c["resourceId"])
    # DevTest clusters get one node unless told otherwise (the SDK's ClusterPurpose docs).
    assert sum(p["count"] for p in cluster["agentPools"]) == 1
    assert target.agent_count == 1
    no_client_errors(emu)


def test_create_in_a_virtual_network(ws, emu):
    config = AksCompute.provisioning_configuration(
        agent_count=3, vm_size="Standard_D4s_v5", location="eastus",
        vnet_resourcegroup_name="net-rg", vnet_name="ml-vnet", subnet_name="aks-subnet",
        service_cidr="10.0.0.0/16", dns_service_ip="10.0.0.10", docker_bridge_cidr="172.17.0.1/16")
    target = ComputeTarget.create(ws, VNET, config)
    target.wait_for_completion(show_output=False)
    assert target.provisioning_state == "Succeeded"
    assert target.agent_vm_size == "Standard_D4s_v5" and target.cluster_location == "eastus"
    c = emu.compute(VNET)
    assert c["provisioningState"] == "Succeeded"
    net = c["aksNetworkingConfiguration"]
    assert net["subnetId"] == (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/net-rg/providers/"
                               "Microsoft.Network/virtualNetworks/ml-vnet/subnets/aks-subnet")
    assert (net["serviceCidr"], net["dnsServiceIP"], net["dockerBridgeCidr"]) == \
        ("10.0.0.0/16", "10.0.0.10", "172.17.0.1/16")
    cluster = emu.cluster(resource_id=c["resourceId"])
    assert [(p["count"], p["vmSize"]) for p in cluster["agentPools"]] == [(3, "Standard_D4s_v5")]
    no_client_errors(emu)


def test_the_same_name_again_fails_as_azure_does(ws, emu):
    before = emu.state()
    with pytest.raises(ComputeTargetException) as e:
        ComputeTarget.create(ws, CREATED, AksCompute.provisioning_configuration())
    text = str(e.value)
    assert "Response Code: 400" in text
    assert f"Compute with name {CREATED} already exists." in text
    assert '"code":"BadRequest"' in text.replace(" ", "") or "'code': 'BadRequest'" in text
    after = emu.state()
    assert len(after["computes"]) == len(before["computes"])
    assert len(after["clusters"]) == len(before["clusters"]), "no second cluster"
    assert emu.compute(CREATED)["provisioningState"] == "Succeeded"
    emu.clear_requests()


def test_attach_plain(ws, emu):
    rid = emu.seed_cluster("plain-cluster")
    config = AksCompute.attach_configuration(resource_group=AKS_RG, cluster_name="plain-cluster")
    target = ComputeTarget.attach(ws, PLAIN, config)
    target.wait_for_completion(show_output=False)
    assert target.provisioning_state == "Succeeded" and target.is_attached is True
    c = emu.compute(PLAIN)
    assert c["isAttachedCompute"] and c["provisioningState"] == "Succeeded"
    assert c["resourceId"].lower() == rid.lower()
    assert c["sslStatus"] == "Disabled"
    cluster = emu.cluster(resource_id=rid)
    assert cluster["attachedCompute"] == c["id"] and cluster["azuremlComponents"]
    assert cluster["azuremlfessl"] is None
    no_client_errors(emu)


def test_attach_with_a_microsoft_certificate(ws, emu):
    rid = emu.seed_cluster("auto-cluster")
    config = AksCompute.attach_configuration(resource_group=AKS_RG, cluster_name="auto-cluster")
    config.enable_ssl(leaf_domain_label="contoso")
    target = ComputeTarget.attach(ws, AUTO, config)
    target.wait_for_completion(show_output=False)
    assert target.provisioning_state == "Succeeded"
    assert target.ssl_configuration.status == "Auto"
    assert target.ssl_configuration.leaf_domain_label == "contoso"
    m = AUTO_FQDN.match(target.cluster_fqdn)
    assert m and m["label"] == "contoso", target.cluster_fqdn
    c = emu.compute(AUTO)
    assert c["sslStatus"] == "Auto" and c["clusterFqdn"] == target.cluster_fqdn
    fessl = emu.cluster(resource_id=rid)["azuremlfessl"]
    assert fessl, "azuremlfessl holds the issued certificate"
    names, _ = cert_info(fessl["certPem"])
    assert target.cluster_fqdn in names
    no_client_errors(emu)


def test_attach_with_a_custom_certificate(ws, emu, pem_files):
    rid = emu.seed_cluster("custom-cluster")
    cert_file, key_file, cert, key = pem_files("scoring.contoso.com")
    config = AksCompute.attach_configuration(resource_group=AKS_RG, cluster_name="custom-cluster")
    config.enable_ssl(ssl_cert_pem_file=cert_file, ssl_key_pem_file=key_file,
                      ssl_cname="scoring.contoso.com")
    target = ComputeTarget.attach(ws, CUSTOM, config)
    target.wait_for_completion(show_output=False)
    assert target.provisioning_state == "Succeeded"
    assert target.ssl_configuration.status == "Enabled"
    assert target.ssl_configuration.cname == "scoring.contoso.com"
    assert target.ssl_configuration.cert is None and target.ssl_configuration.key is None, \
        "GET never returns the certificate or the key"
    c = emu.compute(CUSTOM)
    assert c["sslStatus"] == "Enabled" and c["clusterFqdn"] == "scoring.contoso.com"
    fessl = emu.cluster(resource_id=rid)["azuremlfessl"]
    assert fessl == {"certPem": cert, "keyPem": key}
    no_client_errors(emu)


def test_update_to_an_internal_load_balancer(ws, emu):
    target = AksCompute(ws, PLAIN)
    assert target.load_balancer_type == "PublicIp" and target.load_balancer_subnet is None
    target.update(AksUpdateConfiguration(None, "InternalLoadBalancer", "aks-subnet"))
    target.wait_for_completion(show_output=False)
    assert target.provisioning_state == "Succeeded"
    assert target.load_balancer_type == "InternalLoadBalancer"
    assert target.load_balancer_subnet == "aks-subnet"
    c = emu.compute(PLAIN)
    assert c["loadBalancerType"] == "InternalLoadBalancer" and c["loadBalancerSubnet"] == "aks-subnet"
    assert c["provisioningState"] == "Succeeded" and c["isAttachedCompute"]
    assert c["sslStatus"] == "Disabled", "the update left TLS alone"
    ops = [o for o in emu.state()["operations"] if o["target"] == c["id"]]
    assert ops[-1]["kind"] == "Update" and ops[-1]["status"] == "Succeeded"
    no_client_errors(emu)


def test_update_switches_a_microsoft_certificate_to_a_custom_one(ws, emu):
    target = AksCompute(ws, AUTO)
    rid = target.cluster_resource_id
    old = emu.cluster(resource_id=rid)["azuremlfessl"]
    cert, key = __import__("conftest").self_signed("api.contoso.com")
    ssl = SslConfiguration(status="Enabled", cert=cert, key=key, cname="api.contoso.com")
    target.update(AksUpdateConfiguration(ssl_configuration=ssl))
    target.wait_for_completion(show_output=False)
    assert target.provisioning_state == "Succeeded"
    assert target.ssl_configuration.status == "Enabled"
    assert target.cluster_fqdn == "api.contoso.com"
    fessl = emu.cluster(resource_id=rid)["azuremlfessl"]
    assert fessl == {"certPem": cert, "keyPem": key} and fessl != old, \
        "the custom certificate replaced azuremlfessl's content in place"
    c = emu.compute(AUTO)
    assert c["sslStatus"] == "Enabled" and c["clusterFqdn"] == "api.contoso.com"
    assert emu.cluster(resource_id=rid)["attachedCompute"] == c["id"], "still attached"
    no_client_errors(emu)


def test_update_renews_a_microsoft_certificate(ws, emu):
    rid = emu.seed_cluster("renew-cluster")
    config = AksCompute.attach_configuration(resource_group=AKS_RG, cluster_name="renew-cluster")
    config.enable_ssl(leaf_domain_label="renewal")
    target = ComputeTarget.attach(ws, RENEW, config)
    target.wait_for_completion(show_output=False)
    fqdn = target.cluster_fqdn
    assert AUTO_FQDN.match(fqdn)
    before = emu.cluster(resource_id=rid)["azuremlfessl"]
    _, serial_before = cert_info(before["certPem"])

    target.update(AksUpdateConfiguration(ssl_configuration=SslConfiguration(renew=True)))
    target.wait_for_completion(show_output=False)
    assert target.provisioning_state == "Succeeded"
    assert target.ssl_configuration.status == "Auto"
    assert target.cluster_fqdn == fqdn, "a renewal keeps the FQDN"
    after = emu.cluster(resource_id=rid)["azuremlfessl"]
    names, serial_after = cert_info(after["certPem"])
    assert serial_after != serial_before and after["keyPem"] != before["keyPem"], "a new certificate"
    assert fqdn in names
    ops = [o for o in emu.state()["operations"] if o["target"].lower().endswith(f"/computes/{RENEW}")]
    assert ops[-1]["kind"] == "Update" and ops[-1]["status"] == "Succeeded"

    # Disabling TLS removes the certificate from the cluster.
    target.update(AksUpdateConfiguration(ssl_configuration=SslConfiguration(status="Disabled")))
    target.wait_for_completion(show_output=False)
    assert target.ssl_configuration.status == "Disabled"
    assert emu.cluster(resource_id=rid)["azuremlfessl"] is None
    assert emu.compute(RENEW)["sslStatus"] == "Disabled"
    no_client_errors(emu)


def test_renew_without_a_leaf_domain_label_is_refused_by_the_sdk(ws, emu):
    target = AksCompute(ws, PLAIN)
    with pytest.raises(ComputeTargetException, match="leaf domain label"):
        target.update(AksUpdateConfiguration(ssl_configuration=SslConfiguration(renew=True)))
    emu.clear_requests()


def test_list_across_pages(ws, emu):
    emu.clear_requests()
    targets = ComputeTarget.list(ws)
    names = sorted(t.name for t in targets)
    admin = sorted(c["name"] for c in emu.state()["computes"])
    assert names == admin
    assert {CREATED, DEVTEST, VNET, PLAIN, AUTO, CUSTOM, RENEW} <= set(names)
    assert all(isinstance(t, AksCompute) for t in targets)
    pages = [r for r in emu.requests_log() if r["method"] == "GET" and r["path"].endswith("/computes")]
    assert len(pages) >= 4, f"the list spans pages (page size 2): {pages}"
    assert all(r["status"] == 200 for r in pages)
    assert any("skip" in r["query"] for r in pages), "nextLink was followed"
    no_client_errors(emu)


def test_get_status_and_credentials(ws, emu):
    import requests
    import yaml
    target = AksCompute(ws, CUSTOM)
    assert target.get_status() == "Succeeded"
    assert emu.compute(CUSTOM)["provisioningState"] == "Succeeded"
    creds = target.get_credentials()
    assert creds["computeType"] == "AKS"
    kubeconfig = yaml.safe_load(creds["userKubeConfig"])
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    cluster = emu.cluster(resource_id=target.cluster_resource_id)
    assert server.endswith(cluster["dataPlanePath"])
    # The credentials work: they read azuremlfessl from the cluster's API server.
    token = kubeconfig["users"][0]["user"]["token"]
    r = requests.get(f"{server}/api/v1/namespaces/default/secrets/azuremlfessl",
                     headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200 and "cert.pem" in r.json()["data"]
    no_client_errors(emu)


def test_detach_keeps_the_cluster_and_removes_azuremlfessl(ws, emu):
    target = AksCompute(ws, CUSTOM)
    rid = target.cluster_resource_id
    assert emu.cluster(resource_id=rid)["azuremlfessl"] is not None
    target.detach()
    target.wait_for_completion(show_output=False, is_delete_operation=True)
    assert emu.compute(CUSTOM) is None
    cluster = emu.cluster(resource_id=rid)
    assert cluster is not None, "a detach leaves the AKS cluster running"
    assert cluster["powerState"] == "Running"
    assert cluster["azuremlfessl"] is None and cluster["azuremlComponents"] == []
    assert cluster["attachedCompute"] is None
    with pytest.raises(ComputeTargetException, match="ComputeTargetNotFound"):
        AksCompute(ws, CUSTOM)
    no_client_errors(emu)


def test_delete_removes_a_created_cluster(ws, emu):
    target = AksCompute(ws, CREATED)
    rid = target.cluster_resource_id
    assert emu.cluster(resource_id=rid) is not None
    target.delete()
    target.wait_for_completion(show_output=False, is_delete_operation=True)
    assert emu.compute(CREATED) is None
    assert emu.cluster(resource_id=rid) is None, "deleting a created compute deletes its cluster"
    no_client_errors(emu)


def test_delete_of_an_attached_compute_is_refused(ws, emu):
    target = AksCompute(ws, PLAIN)
    with pytest.raises(ComputeTargetException, match="Response Code: 400"):
        target.delete()
    assert emu.compute(PLAIN)["provisioningState"] == "Succeeded"
    assert emu.cluster(resource_id=target.cluster_resource_id)["attachedCompute"]
    emu.clear_requests()
