"""Docs: generated reference up to date, troubleshooting complete, Argo CD Lua check works,
links resolve, Dockerfile keeps its promises."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

STALLED_REASONS = [
    "InvalidSpec", "ComputeExists", "AlreadyAttached", "UnsupportedKubernetesVersion",
    "InsufficientVCPUs", "NameConflict", "SecretNotFound", "InvalidCertificate",
    "TLSBackupFailed", "WorkspaceNotFound", "AksClusterNotFound", "ComputeFailed",
    "CredentialsRefForbidden", "AuthorizationFailed", "AzureRejected", "InsufficientNodes",
    "VMSizeNotAllowed", "QuotaExceeded", "InvalidConfiguration", "PrivateClusterPublicFQDN",
    "NamespaceNotFound", "NamespaceNotCreated", "ProviderNotRegistered",
    "ClusterIdentityNotSupported", "LocalAccountsDisabled", "ClusterStopped", "ExtensionExists",
    "ExtensionFailed", "ClusterUnreachable", "InstanceTypeCRDMissing", "InstanceTypeRejected",
    "LegacyFrontEndPresent", "LegacyFrontEndNotAnnotated", "ClusterSecretRejected",
]
METRICS = [
    "amlops_reconciles_total", "amlops_reconcile_duration_seconds", "amlops_arm_requests_total",
    "amlops_arm_request_duration_seconds", "amlops_arm_throttled_total",
    "amlops_inflight_operations", "amlops_resources", "amlops_leader",
]


def test_reference_is_up_to_date():
    r = subprocess.run([sys.executable, str(DOCS / "gen_reference.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_reference_covers_every_spec_field_and_cel_message():
    ref = (DOCS / "reference.md").read_text()
    for crd_file in (REPO / "crds").glob("*.yaml"):
        crd = yaml.safe_load(crd_file.read_text())
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

        def walk(s, path):
            yield path, s
            for name, sub in (s.get("properties") or {}).items():
                yield from walk(sub, f"{path}.{name}")

        for path, s in walk(schema["properties"]["spec"], "spec"):
            if path != "spec":
                assert f"`{path}`" in ref, path
            for rule in s.get("x-kubernetes-validations") or []:
                msg = " ".join(rule["message"].split()).replace("|", "\\|")
                assert msg in ref, f"{path}: CEL message missing: {msg}"


def stalled_table():
    text = (DOCS / "troubleshooting.md").read_text()
    section = text.split("## Stalled reasons", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): line for line in section.splitlines()
            if (m := re.match(r"^\| `(\w+)` \|", line))}


def test_troubleshooting_has_every_stalled_reason_with_a_fix():
    table = stalled_table()
    assert set(STALLED_REASONS) <= set(table), set(STALLED_REASONS) - set(table)
    for reason in STALLED_REASONS:
        cells = [c.strip() for c in table[reason].strip("|").split(" | ")]
        assert len(cells) == 3 and all(len(c) > 20 for c in cells[1:]), table[reason]
    text = (DOCS / "troubleshooting.md").read_text()
    assert "`ReattachPending` (`Ready=False`, `Stalled=False`)" in text


def test_metrics_doc_lists_every_metric():
    text = (DOCS / "metrics.md").read_text()
    for name in METRICS:
        assert f"`{name}`" in text, name


def test_relative_links_resolve():
    broken = []
    for md in list(DOCS.glob("*.md")):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", md.read_text()):
            if "://" in target:
                continue
            if not (md.parent / target).exists():
                broken.append(f"{md.name}: {target}")
    assert not broken, broken


# -- Argo CD health check --------------------------------------------------------------

LUA = (DOCS / "argocd-health.lua").read_text()


def run_health(obj):
    lupa = pytest.importorskip("lupa")
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(v):
        if isinstance(v, dict):
            return lua.table_from({k: to_lua(x) for k, x in v.items()})
        if isinstance(v, list):
            return lua.table_from([to_lua(x) for x in v])
        return v

    lua.globals().obj = to_lua(obj)
    hs = lua.execute(LUA)
    return hs["status"], hs["message"]


def cr(generation=2, observed=2, conditions=(), phase=None, status=True):
    obj = {"apiVersion": "amlops.dev/v1alpha1", "kind": "InferenceCluster",
           "metadata": {"name": "x", "namespace": "ns", "generation": generation}}
    if status:
        obj["status"] = {"observedGeneration": observed,
                         "conditions": [dict(type=t, status=s, reason=r, message=m,
                                             observedGeneration=observed)
                                        for t, s, r, m in conditions]}
        if phase:
            obj["status"]["phase"] = phase
    return obj


READY = ("Ready", "True", "Created", "compute prodaks is Succeeded")
NOT_STALLED = ("Stalled", "False", "Ok", "")
RECONCILING = ("Reconciling", "True", "Creating", "creating compute")


@pytest.mark.parametrize("obj, want", [
    (cr(status=False), "Progressing"),
    (cr(observed=1, conditions=[READY, NOT_STALLED]), "Progressing"),
    (cr(conditions=[READY, ("Reconciling", "False", "Ok", ""), NOT_STALLED]), "Healthy"),
    (cr(conditions=[("Ready", "False", "Creating", "creating"), RECONCILING, NOT_STALLED],
        phase="Creating"), "Progressing"),
    (cr(conditions=[("Ready", "False", "InsufficientVCPUs", "6 vCPUs < 12"),
                    ("Stalled", "True", "InsufficientVCPUs", "6 vCPUs < 12")]), "Degraded"),
    (cr(conditions=[("Ready", "False", "ReattachPending", "set amlops.dev/reattach"),
                    NOT_STALLED]), "Progressing"),
    (cr(conditions=[]), "Progressing"),
])
def test_argocd_health_check(obj, want):
    status, message = run_health(obj)
    assert status == want, message
    if want == "Degraded":
        assert message.startswith("InsufficientVCPUs: 6 vCPUs < 12")


def test_argocd_health_ignores_conditions_of_an_older_generation():
    obj = cr(generation=3, observed=3, conditions=[READY])
    obj["status"]["conditions"][0]["observedGeneration"] = 2
    assert run_health(obj)[0] == "Progressing"


def test_argocd_cm_patch_embeds_the_script_for_every_kind():
    patch = yaml.safe_load((DOCS / "argocd-cm-patch.yaml").read_text())
    assert patch["data"] == {
        f"resource.customizations.health.amlops.dev_{kind}": LUA
        for kind in ["InferenceCluster", "ClusterAttachment", "AzureMLExtension",
                     "KubernetesCompute"]
    }


# -- Dockerfile -----------------------------------------------------------------------

def test_dockerfile():
    text = (REPO / "Dockerfile").read_text()
    froms = re.findall(r"(?m)^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text)
    assert froms[0] == ("rust:1-bookworm", "build")
    assert froms[-1][0] in ("gcr.io/distroless/cc-debian12:nonroot",) or \
        froms[-1][0].startswith("debian:bookworm-slim")
    assert "cargo build --release --locked" in text
    assert re.search(r"(?m)^USER 65532:65532$", text)
    assert re.search(r'(?m)^ENTRYPOINT \["/amlops"\]$', text)
    # the runtime stage copies the binary only
    runtime = text.split(froms[-1][0], 1)[1]
    copies = re.findall(r"(?m)^COPY\s+(.*)$", runtime)
    assert copies == ["--from=build /out/amlops /amlops"]
    ignore = (REPO / ".dockerignore").read_text().split()
    assert "target" in ignore and ".git" in ignore
