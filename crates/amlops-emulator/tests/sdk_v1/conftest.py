"""Fixtures of the Azure ML SDK v1 scenarios: the emulator (URL, token, admin endpoints),
an authentication class that points the unmodified SDK at it, the workspace, PEM files."""
import copy
import datetime
import os

import pytest
import requests
from azureml._vendor.azure_cli_core.cloud import AZURE_PUBLIC_CLOUD
from azureml.core.authentication import AbstractAuthentication, _SubscriptionInfo
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
WORKSPACE_RG = "ml-rg"
WORKSPACE = "ml-ws"
AKS_RG = "aks-rg"


class EmulatorAuthentication(AbstractAuthentication):
    """The SDK has no custom-cloud switch: its ARM endpoint is the authentication's cloud's
    `resource_manager`. This class is the whole of what a user writes to use the emulator:
    Azure's public cloud with the emulator as ARM, and the emulator's bearer token."""

    def __init__(self, url, token):
        super().__init__("AzureCloud")
        cloud = copy.deepcopy(AZURE_PUBLIC_CLOUD)
        cloud.endpoints.resource_manager = url.rstrip("/") + "/"
        self._cloud_type = cloud
        self._token = token

    def _get_arm_token(self):
        return self._token

    def _get_graph_token(self):
        return self._token

    def _get_azureml_client_token(self):
        return self._token

    def _get_all_subscription_ids(self):
        return [_SubscriptionInfo("emulated", SUBSCRIPTION)], "00000000-0000-0000-0000-000000000001"

    def _get_workspace(self, subscription_id, resource_group, name):
        return None  # None: the SDK asks ARM (the emulator)


class Emulator:
    """The emulator's URL and its admin endpoints (state and request log, for assertions)."""

    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def state(self):
        r = requests.get(f"{self.url}/admin/state", timeout=30)
        r.raise_for_status()
        return r.json()

    def compute(self, name):
        """The compute of this name in the admin state, or None."""
        return next((c for c in self.state()["computes"] if c["name"].lower() == name.lower()), None)

    def cluster(self, resource_id=None, name=None):
        """The AKS cluster with this ARM id (or name) in the admin state, or None."""
        for c in self.state()["clusters"]:
            if resource_id and c["id"].lower() == resource_id.lower():
                return c
            if name and c["name"].lower() == name.lower():
                return c
        return None

    def seed_cluster(self, name, vm_size="Standard_D4s_v5", count=3, version=None):
        body = {"subscriptionId": SUBSCRIPTION, "resourceGroup": AKS_RG, "name": name,
                "location": "eastus",
                "agentPools": [{"name": "nodepool1", "count": count, "vmSize": vm_size,
                                "mode": "System"}]}
        if version:
            body["kubernetesVersion"] = version
        r = requests.post(f"{self.url}/admin/aks-clusters", json=body, timeout=30)
        r.raise_for_status()
        return r.json()["id"]

    def requests_log(self):
        r = requests.get(f"{self.url}/admin/requests", timeout=30)
        r.raise_for_status()
        return r.json()

    def clear_requests(self):
        requests.delete(f"{self.url}/admin/requests", timeout=30).raise_for_status()


@pytest.fixture(scope="session")
def emu():
    url = os.environ.get("AMLOPS_EMULATOR_URL")
    if not url:
        pytest.fail("AMLOPS_EMULATOR_URL is not set (run through tests/sdk_v1/run.sh)")
    return Emulator(url, os.environ["AMLOPS_EMULATOR_TOKEN"])


@pytest.fixture(scope="session")
def auth(emu):
    return EmulatorAuthentication(emu.url, emu.token)


@pytest.fixture(scope="session")
def ws(auth):
    from azureml.core import Workspace
    return Workspace.get(name=WORKSPACE, auth=auth, subscription_id=SUBSCRIPTION,
                         resource_group=WORKSPACE_RG)


def self_signed(host):
    """A fresh self-signed certificate for `host`: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert_pem, key_pem


def cert_info(pem):
    """(SAN DNS names, serial number) of a PEM certificate."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return names, cert.serial_number


@pytest.fixture
def pem_files(tmp_path):
    """Writes a self-signed cert/key pair for a host to files; returns their paths and PEMs."""
    def make(host):
        cert, key = self_signed(host)
        cert_file, key_file = tmp_path / f"{host}.cert.pem", tmp_path / f"{host}.key.pem"
        cert_file.write_text(cert)
        key_file.write_text(key)
        return str(cert_file), str(key_file), cert, key
    return make
