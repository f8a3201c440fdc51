import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import helmengine  # noqa: E402

# Non-default values used by several tests: single-namespace mode, workload identity,
# ServiceMonitor, PodDisruptionBudget, two replicas.
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
TENANT_ID = "66666666-7777-8888-9999-000000000000"
CUSTOM = {
    "replicas": 2,
    "watchNamespace": "ml-platform",
    "leaderElection": {"enabled": False},  # forced on by replicas: 2
    "azure": {"workloadIdentity": {"enabled": True, "clientId": CLIENT_ID,
                                   "tenantId": TENANT_ID}},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
    "podAnnotations": {"example.com/a": "b"},
    "podLabels": {"team": "ml"},
    "nodeSelector": {"agentpool": "system"},
    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
    "controller": {"concurrency": 8},
}


@pytest.fixture(scope="session")
def default_render():
    return helmengine.render()


@pytest.fixture(scope="session")
def custom_render():
    return helmengine.render(CUSTOM, release="ops", namespace="amlops")
