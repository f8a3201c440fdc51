"""deploy/ (kubectl apply -k) agrees with the chart rendered with default values."""

import pytest

import kustomize_util
import rbac_util


@pytest.fixture(scope="module")
def deploy_objects():
    return kustomize_util.load()


def key(o):
    return (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))


def test_kubectl_kustomize_agrees_with_the_loader(deploy_objects):
    built = kustomize_util.kubectl_kustomize()
    if built is None:
        pytest.skip("kubectl not installed: kustomize build not cross-checked")
    assert sorted(map(key, built)) == sorted(map(key, deploy_objects))
    by_key = {key(o): o for o in built}
    for o in deploy_objects:
        assert by_key[key(o)] == o, f"{key(o)} differs from kubectl kustomize output"


def test_same_objects_as_the_chart(deploy_objects, default_render):
    ours = {key(o) for o in deploy_objects
            if o["kind"] not in ("CustomResourceDefinition", "Namespace")}
    chart = {key(o) for o in default_render.objects}
    assert ours == chart
    crds = sorted(o["metadata"]["name"] for o in deploy_objects
                  if o["kind"] == "CustomResourceDefinition")
    assert crds == sorted(c["metadata"]["name"] for c in default_render.crds)
    assert [o["metadata"]["name"] for o in deploy_objects if o["kind"] == "Namespace"] == \
        ["amlops-system"]


def test_same_rbac_as_the_requirements(deploy_objects):
    assert rbac_util.granted(deploy_objects, "amlops", "amlops-system") == \
        rbac_util.expected("amlops-system")
    assert not rbac_util.unbound_roles(deploy_objects)


def test_same_rbac_rules_as_the_chart(deploy_objects, default_render):
    def rules(objs):
        return {key(o): o["rules"] for o in objs if o["kind"] in ("Role", "ClusterRole")}

    def bindings(objs):
        return {key(o): (o["roleRef"], o["subjects"]) for o in objs
                if o["kind"] in ("RoleBinding", "ClusterRoleBinding")}

    assert rules(deploy_objects) == rules(default_render.objects)
    assert bindings(deploy_objects) == bindings(default_render.objects)


def test_same_deployment_as_the_chart(deploy_objects, default_render):
    ours = next(o for o in deploy_objects if o["kind"] == "Deployment")
    chart = default_render.one("Deployment")
    for path in (["spec", "replicas"], ["spec", "strategy"], ["spec", "selector"]):
        a, b = ours, chart
        for p in path:
            a, b = a[p], b[p]
        assert a == b, path
    pod_a, pod_b = ours["spec"]["template"]["spec"], chart["spec"]["template"]["spec"]
    for field in ("serviceAccountName", "automountServiceAccountToken", "securityContext",
                  "volumes", "nodeSelector", "terminationGracePeriodSeconds"):
        assert pod_a.get(field) == pod_b.get(field), field
    ca, cb = pod_a["containers"][0], pod_b["containers"][0]
    for field in ("name", "image", "args", "env", "ports", "livenessProbe", "readinessProbe",
                  "resources", "securityContext", "volumeMounts"):
        assert ca.get(field) == cb.get(field), field
    # pod labels: the chart's minus Helm-only labels
    helm_only = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}
    chart_labels = {k: v for k, v in chart["spec"]["template"]["metadata"]["labels"].items()
                    if k not in helm_only}
    assert ours["spec"]["template"]["metadata"]["labels"] == chart_labels


def test_same_service_as_the_chart(deploy_objects, default_render):
    ours = next(o for o in deploy_objects if o["kind"] == "Service")
    assert ours["spec"] == default_render.one("Service")["spec"]


def test_service_account_as_the_chart(deploy_objects, default_render):
    ours = next(o for o in deploy_objects if o["kind"] == "ServiceAccount")
    chart = default_render.one("ServiceAccount")
    assert ours.get("automountServiceAccountToken") == chart.get("automountServiceAccountToken")
    assert ours["metadata"].get("annotations") == chart["metadata"].get("annotations")


def test_workload_identity_component():
    """deploy/components/workload-identity adds the annotation and the pod label."""
    import shutil
    import tempfile
    from pathlib import Path
    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed")
    with tempfile.TemporaryDirectory() as tmp:
        overlay = Path(tmp)
        shutil.copytree(kustomize_util.DEPLOY, overlay / "deploy")
        (overlay / "kustomization.yaml").write_text(
            "resources: [deploy]\ncomponents: [deploy/components/workload-identity]\n")
        objs = kustomize_util.kubectl_kustomize(overlay)
    sa = next(o for o in objs if o["kind"] == "ServiceAccount")
    dep = next(o for o in objs if o["kind"] == "Deployment")
    assert "azure.workload.identity/client-id" in sa["metadata"]["annotations"]
    assert dep["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
