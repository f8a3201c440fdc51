"""RBAC: exactly what deploy/rbac-requirements.yaml lists, nothing more, nothing less."""

import pytest

import rbac_util
from helmengine import render


def test_requirements_file_is_well_formed():
    seen = set()
    for rule in rbac_util.requirements():
        assert set(rule) <= {"apiGroup", "resource", "verbs", "scope", "why", "leaderElectionOnly"}
        assert rule["scope"] in ("watched", "releaseNamespace", "cluster")
        assert rule["why"].strip(), rule
        assert rule["verbs"] and "*" not in rule["verbs"]
        key = (rule["apiGroup"], rule["resource"])
        assert key not in seen, f"duplicate entry {key}"
        seen.add(key)


def test_cluster_wide_mode(default_render):
    objects = default_render.objects
    assert rbac_util.granted(objects, "amlops", "amlops-system") == \
        rbac_util.expected("amlops-system")
    assert not rbac_util.unbound_roles(objects)
    # cluster-wide: the watched rules live in a ClusterRole
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("ClusterRole", "amlops") in kinds and ("ClusterRoleBinding", "amlops") in kinds


def test_single_namespace_mode(custom_render):
    objects = custom_render.objects
    assert rbac_util.granted(objects, "ops-amlops", "amlops") == \
        rbac_util.expected("amlops", watch_ns="ml-platform")
    assert not rbac_util.unbound_roles(objects)
    # the only ClusterRole left is the CRD reader
    cluster_roles = [o for o in objects if o["kind"] == "ClusterRole"]
    assert [r["metadata"]["name"] for r in cluster_roles] == ["ops-amlops-crd-reader"]
    assert cluster_roles[0]["rules"] == [{"apiGroups": ["apiextensions.k8s.io"],
                                          "resources": ["customresourcedefinitions"],
                                          "verbs": ["get"]}]


def test_single_namespace_equal_to_release_namespace():
    r = render({"watchNamespace": "amlops-system"})
    assert rbac_util.granted(r.objects, "amlops", "amlops-system") == \
        rbac_util.expected("amlops-system", watch_ns="amlops-system")


def test_without_leader_election_no_lease_access():
    r = render({"leaderElection": {"enabled": False}})
    assert rbac_util.granted(r.objects, "amlops", "amlops-system") == \
        rbac_util.expected("amlops-system", leader_election=False)


@pytest.mark.parametrize("name", ["sa-custom"])
def test_bindings_follow_a_custom_service_account_name(name):
    r = render({"serviceAccount": {"name": name}})
    assert r.one("ServiceAccount")["metadata"]["name"] == name
    assert rbac_util.granted(r.objects, name, "amlops-system") == \
        rbac_util.expected("amlops-system")


def test_the_comparison_catches_an_extra_verb(default_render):
    """The check itself: one extra verb makes the sets differ."""
    import copy
    objects = copy.deepcopy(default_render.objects)
    role = next(o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "amlops")
    role["rules"][0]["verbs"].append("delete")
    assert rbac_util.granted(objects, "amlops", "amlops-system") != \
        rbac_util.expected("amlops-system")
