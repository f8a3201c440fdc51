"""Compare rendered RBAC with deploy/rbac-requirements.yaml."""

from pathlib import Path

import yaml

REQUIREMENTS = Path(__file__).resolve().parents[2] / "deploy" / "rbac-requirements.yaml"


def requirements():
    return yaml.safe_load(REQUIREMENTS.read_text())["rules"]


def expected(release_ns: str, watch_ns: str = "", leader_election: bool = True) -> set:
    """(scope, apiGroup, resource, verb) tuples the controller must be granted."""
    out = set()
    for rule in requirements():
        if rule.get("leaderElectionOnly") and not leader_election:
            continue
        scope = {
            "watched": f"namespace:{watch_ns}" if watch_ns else "cluster",
            "releaseNamespace": f"namespace:{release_ns}",
            "cluster": "cluster",
        }[rule["scope"]]
        for verb in rule["verbs"]:
            out.add((scope, rule["apiGroup"], rule["resource"], verb))
    return out


def granted(objects: list, sa_name: str, sa_ns: str) -> set:
    """(scope, apiGroup, resource, verb) tuples the ServiceAccount is granted by `objects`."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objects if o["kind"] in ("Role", "ClusterRole")}
    out = set()
    for b in objects:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa_name
                   and s.get("namespace") == sa_ns for s in b.get("subjects") or []):
            continue
        ref = b["roleRef"]
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"
        bns = b["metadata"].get("namespace")
        role_ns = bns if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_ns, ref["name"]))
        assert role is not None, f"{b['kind']} {b['metadata']['name']} refers to a missing {ref}"
        scope = "cluster" if b["kind"] == "ClusterRoleBinding" else f"namespace:{bns}"
        for rule in role.get("rules") or []:
            assert not rule.get("resourceNames"), "resourceNames are not expected"
            assert not rule.get("nonResourceURLs"), "nonResourceURLs are not expected"
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert "*" not in (group, res, verb), f"wildcard in {role['metadata']['name']}"
                        out.add((scope, group, res, verb))
    return out


def unbound_roles(objects: list) -> list:
    """Roles/ClusterRoles no binding refers to (dead RBAC)."""
    refs = {(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in objects
            if b["kind"] in ("RoleBinding", "ClusterRoleBinding")}
    return [o["metadata"]["name"] for o in objects
            if o["kind"] in ("Role", "ClusterRole") and (o["kind"], o["metadata"]["name"]) not in refs]
