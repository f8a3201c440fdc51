"""Render and lint the chart with Helm's own Go engine, through helm-sdkpy.

helm-sdkpy (PyPI) bundles Helm v4's Go library as a shared object. Its API has Lint,
Show and Install/Upgrade, but no `template` or client-only/dry-run install: `Install`
always talks to a Kubernetes API server. So `render()` runs a real `Install` against
`FakeApiServer`, a small in-memory API server on 127.0.0.1 that answers discovery,
accepts creates and keeps what Helm sent. The manifest Helm returns (and the objects it
POSTed, CRDs included) are the chart rendered by Helm itself: templates, values merging,
values.schema.json validation, `required`/`fail`, NOTES.txt.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "amlops"

# (group, version) -> [(plural, kind, namespaced)] the fake API server advertises.
RESOURCES = {
    ("", "v1"): [
        ("namespaces", "Namespace", False),
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("events", "Event", True),
        ("pods", "Pod", True),
    ],
    ("apps", "v1"): [("deployments", "Deployment", True)],
    ("rbac.authorization.k8s.io", "v1"): [
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
    ],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("apiextensions.k8s.io", "v1"): [
        ("customresourcedefinitions", "CustomResourceDefinition", False)
    ],
    ("coordination.k8s.io", "v1"): [("leases", "Lease", True)],
    ("events.k8s.io", "v1"): [("events", "Event", True)],
    ("monitoring.coreos.com", "v1"): [("servicemonitors", "ServiceMonitor", True)],
    ("amlops.dev", "v1alpha1"): [
        ("inferenceclusters", "InferenceCluster", True),
        ("clusterattachments", "ClusterAttachment", True),
        ("azuremlextensions", "AzureMLExtension", True),
        ("kubernetescomputes", "KubernetesCompute", True),
    ],
}
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _status(code: int, reason: str, message: str = "") -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "code": code, "reason": reason, "message": message}


@dataclass
class FakeApiServer:
    """Just enough of a Kubernetes API server for `helm install`: discovery, create, get."""

    objects: dict = field(default_factory=dict)  # path -> object (what Helm created)
    requests: list = field(default_factory=list)

    def __post_init__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, obj: dict):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urlparse(self.path).path.rstrip("/")
                server.requests.append((self.command, self.path))
                code, obj = server.respond(self.command, path, body,
                                           self.headers.get("Content-Type") or "")
                self._send(code, obj)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- lifecycle -----------------------------------------------------------------
    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def kubeconfig(self, namespace: str) -> str:
        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                      "namespace": namespace}}],
            "current-context": "fake",
        })

    # -- the API -------------------------------------------------------------------
    @staticmethod
    def _resource_list(group: str, version: str) -> dict:
        return {
            "kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": [
                {"name": plural, "singularName": kind.lower(), "namespaced": namespaced,
                 "kind": kind, "verbs": VERBS}
                for plural, kind, namespaced in RESOURCES[(group, version)]
            ],
        }

    def respond(self, method: str, path: str, body: bytes, content_type: str):
        if path == "/version":
            return 200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0",
                         "platform": "linux/amd64"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": []}
        if path == "/api/v1":
            return 200, self._resource_list("", "v1")
        if path == "/apis":
            groups = {}
            for group, version in RESOURCES:
                if group:
                    groups.setdefault(group, []).append(version)
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g,
                 "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
                for g, vs in groups.items()]}
        m = re.fullmatch(r"/apis/([^/]+)/([^/]+)", path)
        if m:
            key = (m.group(1), m.group(2))
            if key in RESOURCES:
                return 200, self._resource_list(*key)
            return 404, _status(404, "NotFound", path)

        if method == "POST":
            if "json" not in content_type:
                # client-go's typed clients (Helm's release storage) send protobuf; the
                # release record is not part of the rendering, so acknowledge it only.
                name = f"release-{uuid.uuid4().hex[:8]}"
                return 201, {"kind": "Secret", "apiVersion": "v1",
                             "metadata": {"name": name, "uid": str(uuid.uuid4()),
                                          "resourceVersion": "1"}}
            obj = json.loads(body or b"{}")
            meta = obj.setdefault("metadata", {})
            item = f"{path}/{meta.get('name')}"
            if item in self.objects:
                return 409, _status(409, "AlreadyExists", item)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["resourceVersion"] = "1"
            self.objects[item] = obj
            reply = json.loads(json.dumps(obj))
            if obj.get("kind") == "CustomResourceDefinition":
                reply["status"] = {
                    "conditions": [{"type": "Established", "status": "True"},
                                   {"type": "NamesAccepted", "status": "True"}],
                    "acceptedNames": obj["spec"]["names"],
                }
            return 201, reply
        if method == "GET":
            if path in self.objects:
                return 200, self.objects[path]
            last = path.rsplit("/", 1)[-1]
            is_collection = any(last == plural for rs in RESOURCES.values() for plural, _, _ in rs)
            if is_collection:
                items = [o for p, o in self.objects.items() if p.rsplit("/", 1)[0] == path]
                return 200, {"kind": "List", "apiVersion": "v1",
                             "metadata": {"resourceVersion": "1"}, "items": items}
            return 404, _status(404, "NotFound", path)
        return 405, _status(405, "MethodNotAllowed", f"{method} {path}")


class HelmError(Exception):
    """Helm refused the chart or the values (schema, `fail`, template error)."""


@dataclass
class Rendered:
    manifest: str      # what Helm rendered from templates/
    objects: list      # the manifest's objects, parsed
    crds: list         # CRDs Helm installed from crds/
    notes: str         # rendered NOTES.txt
    created: dict      # every object Helm POSTed, by API path

    def find(self, kind: str, name: str | None = None) -> list:
        return [o for o in self.objects
                if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = self.find(kind, name)
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]


def _helm():
    import helm_sdkpy  # imported lazily: loads the Go shared library

    return helm_sdkpy


def render(values: dict | None = None, release: str = "amlops",
           namespace: str = "amlops-system", chart: Path = CHART) -> Rendered:
    """`helm install --dry-run`, done with a real install against FakeApiServer."""
    helm = _helm()
    with FakeApiServer() as api:
        config = helm.Configuration(namespace=namespace, kubeconfig=api.kubeconfig(namespace))
        try:
            result = asyncio.run(helm.Install(config).run(
                release, str(chart), values=values or {}, wait=False, timeout=30))
        except helm.HelmError as e:
            raise HelmError(str(e)) from e
        manifest = result.get("manifest", "")
        objects = [d for d in yaml.safe_load_all(manifest) if d]
        crds = [o for o in api.objects.values() if o.get("kind") == "CustomResourceDefinition"]
        notes = (result.get("info") or {}).get("notes", "")
        return Rendered(manifest, objects, crds, notes, dict(api.objects))


def lint(chart: Path = CHART) -> dict:
    """Helm's lint (the chart's own values.yaml). Returns helm's result dictionary."""
    helm = _helm()
    config = helm.Configuration(namespace="amlops-system")
    return asyncio.run(helm.Lint(config).run(str(chart)))


def show_chart(chart: Path = CHART) -> dict:
    helm = _helm()
    config = helm.Configuration(namespace="amlops-system")
    return yaml.safe_load(asyncio.run(helm.Show(config).chart(str(chart))))


os.environ.setdefault("HELM_CACHE_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / "amlops-helm-cache"))
