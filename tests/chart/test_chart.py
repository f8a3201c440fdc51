"""The Helm chart, rendered and linted by Helm's own engine (helm-sdkpy)."""

import re
import shutil
from pathlib import Path

import pytest
import yaml

import helmengine
from conftest import CLIENT_ID, TENANT_ID
from helmengine import CHART, REPO, HelmError, render

WARNING = 2  # helm's support.WarningSev; 1 is INFO, 3 is ERROR


def container(r):
    return r.one("Deployment")["spec"]["template"]["spec"]["containers"][0]


def env(c):
    return {e["name"]: e for e in c.get("env") or []}


# -- chart metadata ---------------------------------------------------------------------

def test_lint_passes():
    result = helmengine.lint()
    assert result["TotalChartsLinted"] == 1
    assert not result.get("Errors"), result
    bad = [m for m in result.get("Messages") or [] if m["Severity"] >= WARNING]
    assert not bad, f"helm lint warnings/errors: {bad}"


def test_lint_fails_when_values_yaml_breaks_the_schema(tmp_path):
    broken = tmp_path / "amlops"
    shutil.copytree(CHART, broken)
    values = (broken / "values.yaml").read_text()
    (broken / "values.yaml").write_text(values.replace("replicas: 1", 'replicas: "two"', 1))
    try:
        result = helmengine.lint(broken)
    except helmengine._helm().HelmError:
        return  # refused outright: fine
    assert result.get("Errors") or any(m["Severity"] >= 3 for m in result.get("Messages") or [])


def test_chart_metadata_and_app_version_matches_cargo():
    chart = helmengine.show_chart()
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "amlops"
    assert chart["version"] == "0.1.0"
    cargo = (REPO / "Cargo.toml").read_text()
    version = re.search(r'(?m)^\[workspace\.package\][^\[]*?^version\s*=\s*"([^"]+)"', cargo).group(1)
    assert str(chart["appVersion"]) == version


@pytest.mark.parametrize("copy_dir", ["charts/amlops/crds", "deploy/crds"])
def test_crd_copies_are_byte_identical(copy_dir):
    source = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    copies = sorted(p.name for p in (REPO / copy_dir).glob("*.yaml"))
    assert copies == source
    for name in source:
        assert (REPO / copy_dir / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
            f"{copy_dir}/{name} differs from crds/{name}: cp crds/*.yaml {copy_dir}/")


def test_helm_installs_the_crds(default_render):
    names = sorted(c["metadata"]["name"] for c in default_render.crds)
    assert names == ["azuremlextensions.amlops.dev", "clusterattachments.amlops.dev",
                     "inferenceclusters.amlops.dev", "kubernetescomputes.amlops.dev"]


# -- values.schema.json -------------------------------------------------------------------

@pytest.mark.parametrize("values, message", [
    ({"replicas": "two"}, "/replicas"),
    ({"replicas": 1.5}, "/replicas"),
    ({"unknownKey": True}, "unknownKey"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"azure": {"credential": "password"}}, "/azure/credential"),
    ({"azure": {"workloadIdentity": {"enabled": "yes"}}}, "/azure/workloadIdentity/enabled"),
    ({"azure": {"workloadIdentity": {"clientId": "not-a-guid"}}}, "/azure/workloadIdentity/clientId"),
    ({"azure": {"clientSecret": {"value": "s3cr3t"}}}, "value"),
    ({"metrics": {"port": 70000}}, "/metrics/port"),
    ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "/metrics/serviceMonitor/interval"),
    ({"controller": {"logFormat": "xml"}}, "/controller/logFormat"),
    ({"controller": {"resync": 600}}, "/controller/resync"),
    ({"controller": {"resync": "1.5m"}}, "/controller/resync"),
    ({"controller": {"arm": {"readShare": 0}}}, "/controller/arm/readShare"),
    ({"controller": {"arm": {"readShare": 1.5}}}, "/controller/arm/readShare"),
    ({"controller": {"arm": {"requestShare": 0}}}, "/controller/arm/requestShare"),
    ({"controller": {"arm": {"hourly": {"readsPerHour": 0}}}}, "/controller/arm/hourly/readsPerHour"),
    ({"controller": {"arm": {"throttling": "daily"}}}, "/controller/arm/throttling"),
    ({"controller": {"arm": {"tokenBucket": {"reads": {"bucket": 250, "refillPerSecond": 0}}}}},
     "/controller/arm/tokenBucket/reads/refillPerSecond"),
    ({"watchNamespace": "Not_A_Namespace"}, "/watchNamespace"),
])
def test_schema_rejects_bad_values(values, message):
    with pytest.raises(HelmError) as e:
        render(values)
    assert "schema" in str(e.value) and message in str(e.value), str(e.value)


@pytest.mark.parametrize("values, message", [
    ({"azure": {"workloadIdentity": {"enabled": True}}}, "azure.workloadIdentity.clientId"),
    ({"azure": {"credential": "managed-identity",
                "workloadIdentity": {"enabled": True, "clientId": CLIENT_ID}}}, "credential"),
    ({"azure": {"credential": "client-secret"}}, "existingSecret"),
    ({"azure": {"credential": "client-secret", "clientSecret": {"existingSecret": "sp"}}},
     "tenantId"),
    ({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
     "metrics.service.enabled"),
    ({"serviceAccount": {"create": False}}, "serviceAccount.name"),
])
def test_inconsistent_values_fail_with_a_clear_message(values, message):
    with pytest.raises(HelmError) as e:
        render(values)
    assert message in str(e.value), str(e.value)


# -- default values -----------------------------------------------------------------------

def test_default_render_objects(default_render):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in default_render.objects)
    assert kinds == sorted([
        ("ServiceAccount", "amlops"),
        ("ClusterRole", "amlops"), ("ClusterRoleBinding", "amlops"),
        ("ClusterRole", "amlops-crd-reader"), ("ClusterRoleBinding", "amlops-crd-reader"),
        ("Role", "amlops-leader-election"), ("RoleBinding", "amlops-leader-election"),
        ("Service", "amlops-metrics"),
        ("Deployment", "amlops"),
    ])
    for o in default_render.objects:
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"]["namespace"] == "amlops-system", o["metadata"]
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "amlops"
        assert labels["app.kubernetes.io/instance"] == "amlops"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "amlops-0.1.0"


def test_default_deployment(default_render):
    dep = default_render.one("Deployment", "amlops")
    pod = dep["spec"]["template"]["spec"]
    c = container(default_render)
    assert c["image"] == "ghcr.io/amlops/amlops:0.1.0"  # tag defaults to appVersion
    assert c["args"][0] == "run"
    assert "--metrics-addr=0.0.0.0:8080" in c["args"]
    assert "--resync=10m" in c["args"]
    for flag in [
        "--arm-throttling=token-bucket",
        "--arm-read-bucket=250",
        "--arm-read-refill=25",
        "--arm-write-bucket=200",
        "--arm-write-refill=10",
        "--arm-delete-bucket=200",
        "--arm-delete-refill=10",
        "--arm-global-factor=15",
        "--arm-read-budget=12000",
        "--arm-write-budget=1200",
        "--arm-delete-budget=15000",
        "--arm-read-share=0.5",
        "--arm-request-share=0.5",
    ]:
        assert flag in c["args"], flag
    assert "--azure-credential=workload-identity" in c["args"]
    assert "--log-format=json" in c["args"]
    assert not any(a.startswith("--namespace") for a in c["args"])  # all namespaces
    # leader election on by default, Lease in the release namespace
    assert "--leader-election" in c["args"]
    assert "--lease-namespace=amlops-system" in c["args"]
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert env(c)["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # no credentials in the default render
    assert not {"AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"} & set(env(c))
    # probes and the port they use
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert pod["serviceAccountName"] == "amlops"
    assert "azure.workload.identity/use" not in dep["spec"]["template"]["metadata"]["labels"]
    # selector labels are a subset of the pod labels
    sel = dep["spec"]["selector"]["matchLabels"]
    assert sel.items() <= dep["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("which", ["default_render", "custom_render"])
def test_security_context(which, request):
    r = request.getfixturevalue(which)
    pod = r.one("Deployment")["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(r)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    # a read-only root filesystem still needs a writable /tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in container(r)["volumeMounts"]


def test_metrics_service_targets_the_pod(default_render):
    svc = default_render.one("Service", "amlops-metrics")
    dep = default_render.one("Deployment")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics",
                                    "protocol": "TCP"}]


def test_default_notes_warn_about_workload_identity(default_render):
    assert "azure.workloadIdentity.enabled is false" in default_render.notes
    assert "system:serviceaccount:amlops-system:amlops" in default_render.notes


# -- non-default values -------------------------------------------------------------------

def test_custom_render_objects(custom_render):
    kinds = sorted((o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
                   for o in custom_render.objects)
    assert kinds == sorted([
        ("ServiceAccount", "ops-amlops", "amlops"),
        ("Role", "ops-amlops", "ml-platform"), ("RoleBinding", "ops-amlops", "ml-platform"),
        ("ClusterRole", "ops-amlops-crd-reader", None),
        ("ClusterRoleBinding", "ops-amlops-crd-reader", None),
        ("Role", "ops-amlops-leader-election", "amlops"),
        ("RoleBinding", "ops-amlops-leader-election", "amlops"),
        ("Service", "ops-amlops-metrics", "amlops"),
        ("ServiceMonitor", "ops-amlops", "amlops"),
        ("PodDisruptionBudget", "ops-amlops", "amlops"),
        ("Deployment", "ops-amlops", "amlops"),
    ])


def test_workload_identity_wiring(custom_render):
    sa = custom_render.one("ServiceAccount")
    assert sa["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": CLIENT_ID,
        "azure.workload.identity/tenant-id": TENANT_ID,
    }
    dep = custom_render.one("Deployment")
    pod_meta = dep["spec"]["template"]["metadata"]
    assert pod_meta["labels"]["azure.workload.identity/use"] == "true"
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    c = container(custom_render)
    assert "--azure-credential=workload-identity" in c["args"]
    # the webhook injects AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_FEDERATED_TOKEN_FILE
    assert not {"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"} & set(env(c))
    assert "azure.workloadIdentity.enabled is false" not in custom_render.notes
    assert "system:serviceaccount:amlops:ops-amlops" in custom_render.notes


def test_custom_deployment(custom_render):
    dep = custom_render.one("Deployment")
    c = container(custom_render)
    assert dep["spec"]["replicas"] == 2
    assert "--namespace=ml-platform" in c["args"]
    assert "--concurrency=8" in c["args"]
    assert "--metrics-addr=0.0.0.0:8080" in c["args"]
    # replicas: 2 forces leader election even though leaderElection.enabled is false
    assert "--leader-election" in c["args"]
    assert "--lease-name=ops-amlops-leader" in c["args"]
    assert "--lease-namespace=amlops" in c["args"]
    pod = dep["spec"]["template"]
    assert pod["metadata"]["annotations"]["example.com/a"] == "b"
    assert pod["metadata"]["labels"]["team"] == "ml"
    # Helm merges maps: the default kubernetes.io/os selector stays
    assert pod["spec"]["nodeSelector"] == {"agentpool": "system", "kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"] == [{"key": "CriticalAddonsOnly", "operator": "Exists"}]


def test_service_monitor_and_pdb(custom_render):
    sm = custom_render.one("ServiceMonitor")
    svc = custom_render.one("Service")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["amlops"]}
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    pdb = custom_render.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
    pod_labels = custom_render.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_leader_election_off_uses_recreate():
    r = render({"leaderElection": {"enabled": False}})
    c = container(r)
    assert not any(a.startswith("--lease") or a == "--leader-election" for a in c["args"])
    assert r.one("Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert not r.find("Role")  # no Lease RBAC without leader election


def test_managed_identity_credential():
    r = render({"azure": {"credential": "managed-identity",
                          "managedIdentity": {"clientId": CLIENT_ID}}})
    c = container(r)
    assert "--azure-credential=managed-identity" in c["args"]
    assert env(c)["AZURE_CLIENT_ID"] == {"name": "AZURE_CLIENT_ID", "value": CLIENT_ID}
    assert "AZURE_CLIENT_SECRET" not in env(c)


def test_client_secret_comes_from_an_existing_secret():
    r = render({"azure": {"credential": "client-secret", "tenantId": TENANT_ID,
                          "clientSecret": {"existingSecret": "amlops-sp"}}})
    c = container(r)
    e = env(c)
    assert "--azure-credential=client-secret" in c["args"]
    assert e["AZURE_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "amlops-sp", "key": "clientSecret"}
    assert e["AZURE_CLIENT_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "amlops-sp", "key": "clientId"}
    assert e["AZURE_TENANT_ID"] == {"name": "AZURE_TENANT_ID", "value": TENANT_ID}
    assert not r.find("Secret")  # the chart never creates a Secret
    assert all("value" not in v for k, v in e.items() if k == "AZURE_CLIENT_SECRET")


def test_image_tag_digest_arm_endpoint_and_extra_args():
    r = render({"image": {"repository": "example.azurecr.io/amlops", "tag": "dev",
                          "digest": "sha256:" + "a" * 64},
                "azure": {"armEndpoint": "https://management.usgovcloudapi.net"},
                "controller": {"extraArgs": ["--foo=bar"], "logFormat": "text"}})
    c = container(r)
    assert c["image"] == "example.azurecr.io/amlops:dev@sha256:" + "a" * 64
    assert "--arm-endpoint=https://management.usgovcloudapi.net" in c["args"]
    assert "--log-format=text" in c["args"]
    assert c["args"][-1] == "--foo=bar"


def test_rbac_create_false_renders_no_rbac():
    r = render({"rbac": {"create": False}})
    assert not [o for o in r.objects if o["kind"] in
                ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]


PASSTHROUGH = {"resources", "podSecurityContext", "securityContext", "nodeSelector"}


def test_values_yaml_documents_every_key():
    """Every key in values.yaml has a comment right above it, except inside the documented
    Kubernetes pass-through blocks (resources, securityContext, ...)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        ancestors = []
        for j in range(i - 1, -1, -1):
            pm = re.match(r"^(\s*)([A-Za-z][\w.-]*):", lines[j])
            if pm and len(pm.group(1)) < indent:
                ancestors.append(pm.group(2))
                indent = len(pm.group(1))
        if PASSTHROUGH & set(ancestors):
            continue
        if not (lines[i - 1].strip().startswith("#") if i else False):
            undocumented.append(f"line {i + 1}: {line.strip()}")
    assert not undocumented, "undocumented values:\n" + "\n".join(undocumented)


def test_schema_covers_every_top_level_value():
    import json
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    assert set(values) <= set(schema["properties"])
