"""Every object in deploy/ and in the rendered chart is a valid object of its kind."""

import copy
from pathlib import Path

import pytest
import yaml

import k8s_typed
import kustomize_util
from conftest import CUSTOM
from helmengine import render

REPO = Path(__file__).resolve().parents[2]


def ids(objs):
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objs]


def test_deploy_objects_are_typed_valid():
    objs = kustomize_util.load()
    assert objs
    for o in objs:
        k8s_typed.validate(o)


def test_deploy_component_patch_targets_exist():
    comp = yaml.safe_load(
        (REPO / "deploy/components/workload-identity/kustomization.yaml").read_text())
    names = {(o["kind"], o["metadata"]["name"]) for o in kustomize_util.load()}
    for p in comp["patches"]:
        assert (p["target"]["kind"], p["target"]["name"]) in names


@pytest.mark.parametrize("values", [
    {},
    CUSTOM,
    {"leaderElection": {"enabled": False}, "rbac": {"create": False},
     "metrics": {"service": {"enabled": False}}},
    {"azure": {"credential": "client-secret", "tenantId": "66666666-7777-8888-9999-000000000000",
               "clientSecret": {"existingSecret": "sp", "tenantIdKey": "tenantId"}},
     "podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"},
     "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
         {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                             "labelSelector": {"matchLabels": {"a": "b"}}}}]}},
     "imagePullSecrets": [{"name": "regcred"}], "priorityClassName": "system-cluster-critical"},
], ids=["default", "custom", "minimal", "client-secret"])
def test_rendered_objects_are_typed_valid(values):
    r = render(values)
    assert r.objects
    for o in r.objects + r.crds:
        k8s_typed.validate(o)


def test_validator_rejects_unknown_fields_and_wrong_types(default_render):
    dep = copy.deepcopy(default_render.one("Deployment"))
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(k8s_typed.TypedError, match="readOnlyRootFS: unknown field"):
        k8s_typed.validate(dep)
    dep = copy.deepcopy(default_render.one("Deployment"))
    dep["spec"]["replicas"] = "1"
    with pytest.raises(k8s_typed.TypedError, match="want an integer"):
        k8s_typed.validate(dep)
    dep = copy.deepcopy(default_render.one("Deployment"))
    del dep["spec"]["selector"]
    with pytest.raises(k8s_typed.TypedError, match="selector"):
        k8s_typed.validate(dep)
    role = copy.deepcopy(default_render.one("ClusterRole", "amlops"))
    role["rules"][0]["verb"] = ["get"]
    with pytest.raises(k8s_typed.TypedError, match="unknown field"):
        k8s_typed.validate(role)
