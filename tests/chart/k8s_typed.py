"""Typed validation of Kubernetes objects with the Kubernetes OpenAPI models.

Each object is deserialised into the official Python client's model for its kind
(`V1Deployment`, `V1ClusterRole`, ...), whose constructors reject missing required fields,
and walked against the model's `openapi_types`/`attribute_map` so that an unknown field
(a typo, a field at the wrong level) or a wrong type is an error, as the API server's
strict field validation would make it.
"""

from __future__ import annotations

import json
import re

import kubernetes.client as k8s
from kubernetes.client import ApiClient

# (apiVersion, kind) -> model class name in kubernetes.client
MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Service"): "V1Service",
    ("v1", "Secret"): "V1Secret",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "V1CustomResourceDefinition",
    ("coordination.k8s.io/v1", "Lease"): "V1Lease",
}

# Prometheus Operator's ServiceMonitor is not in the Kubernetes API: checked against the
# subset of monitoring.coreos.com/v1 the chart uses (closed: unknown fields fail).
SERVICE_MONITOR_FIELDS = {
    "": {"apiVersion", "kind", "metadata", "spec"},
    "spec": {"namespaceSelector", "selector", "endpoints", "jobLabel", "targetLabels",
             "podTargetLabels", "sampleLimit"},
    "spec.namespaceSelector": {"matchNames", "any"},
    "spec.selector": {"matchLabels", "matchExpressions"},
    "spec.endpoints[]": {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
                         "relabelings", "metricRelabelings", "tlsConfig", "bearerTokenSecret"},
}


class TypedError(AssertionError):
    pass


class _Resp:
    def __init__(self, obj):
        self.data = json.dumps(obj)


_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\(([^,]+), (.+)\)$")


def _walk(value, typ: str, path: str, errors: list):
    if value is None:
        return
    m = _LIST.match(typ)
    if m:
        if not isinstance(value, list):
            errors.append(f"{path}: want a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _walk(item, m.group(1), f"{path}[{i}]", errors)
        return
    m = _DICT.match(typ)
    if m:
        if not isinstance(value, dict):
            errors.append(f"{path}: want a map, got {type(value).__name__}")
            return
        for k, v in value.items():
            _walk(v, m.group(2), f"{path}.{k}", errors)
        return
    if typ == "str" or typ in ("datetime", "date"):
        if not isinstance(value, str):
            errors.append(f"{path}: want a string, got {type(value).__name__} {value!r}")
        return
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: want an integer, got {type(value).__name__} {value!r}")
        return
    if typ == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: want a number, got {type(value).__name__} {value!r}")
        return
    if typ == "bool":
        if not isinstance(value, bool):
            errors.append(f"{path}: want a boolean, got {type(value).__name__} {value!r}")
        return
    if typ == "object":  # IntOrString, JSON, RawExtension
        return
    klass = getattr(k8s, typ, None)
    if klass is None:
        errors.append(f"{path}: unknown model type {typ}")
        return
    if not isinstance(value, dict):
        errors.append(f"{path}: want an object ({typ}), got {type(value).__name__}")
        return
    json_to_attr = {v: k for k, v in klass.attribute_map.items()}
    for key, sub in value.items():
        attr = json_to_attr.get(key)
        if attr is None:
            errors.append(f"{path}.{key}: unknown field (not in {typ})")
            continue
        _walk(sub, klass.openapi_types[attr], f"{path}.{key}", errors)


def _check_service_monitor(obj: dict, errors: list):
    def keys(where, d):
        allowed = SERVICE_MONITOR_FIELDS[where]
        for k in d:
            if k not in allowed:
                errors.append(f"{where or '<root>'}.{k}: unknown field (ServiceMonitor)")

    keys("", obj)
    spec = obj.get("spec") or {}
    keys("spec", spec)
    keys("spec.namespaceSelector", spec.get("namespaceSelector") or {})
    keys("spec.selector", spec.get("selector") or {})
    if not spec.get("endpoints"):
        errors.append("spec.endpoints: a ServiceMonitor needs at least one endpoint")
    for ep in spec.get("endpoints") or []:
        keys("spec.endpoints[]", ep)
    _walk(obj.get("metadata"), "V1ObjectMeta", "metadata", errors)
    if not isinstance(spec.get("selector"), dict):
        errors.append("spec.selector: required")


def validate(obj: dict) -> None:
    """Raise TypedError unless `obj` is a valid object of its kind (no unknown fields)."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    name = (obj.get("metadata") or {}).get("name")
    where = f"{kind} {name}"
    errors: list = []
    if (api_version, kind) == ("monitoring.coreos.com/v1", "ServiceMonitor"):
        _check_service_monitor(obj, errors)
    else:
        model = MODELS.get((api_version, kind))
        if model is None:
            raise TypedError(f"{where}: no model known for {api_version} {kind}")
        if not name:
            errors.append("metadata.name: required")
        _walk(obj, model, "", errors)
        try:  # the models' constructors refuse missing required fields
            ApiClient().deserialize(_Resp(obj), model)
        except (ValueError, TypeError) as e:
            errors.append(f"deserialise into {model}: {e}")
    if errors:
        raise TypedError(f"{where}:\n  " + "\n  ".join(errors))
