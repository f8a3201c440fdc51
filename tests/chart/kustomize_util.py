"""Load deploy/ the way `kubectl apply -k deploy/` would (for this simple kustomization)."""

import shutil
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def load(root: Path = DEPLOY) -> list:
    """resources + namespace transformer; fails on any other kustomize feature."""
    k = yaml.safe_load((root / "kustomization.yaml").read_text())
    supported = {"apiVersion", "kind", "namespace", "resources"}
    assert set(k) <= supported, f"kustomize_util does not handle {set(k) - supported}"
    out = []
    for res in k["resources"]:
        for doc in yaml.safe_load_all((root / res).read_text()):
            if not doc:
                continue
            ns = k.get("namespace")
            if ns and doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = ns
            if ns and doc["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                for s in doc.get("subjects") or []:
                    if s.get("kind") == "ServiceAccount":
                        s["namespace"] = ns
            out.append(doc)
    return out


def kubectl_kustomize(root: Path = DEPLOY):
    """`kubectl kustomize` output, or None when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    out = subprocess.run([kubectl, "kustomize", str(root)], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]
