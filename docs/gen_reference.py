#!/usr/bin/env python3
"""Generate docs/reference.md from the committed CRDs (crds/*.yaml).

    python3 docs/gen_reference.py            # rewrite docs/reference.md
    python3 docs/gen_reference.py --check    # exit 1 when docs/reference.md is stale

Fields, types, defaults, descriptions, enums and bounds come from the CRDs' OpenAPI
schema; "Rules" lists the messages of the CEL `x-kubernetes-validations` on each field
(what the API server answers when the rule fails).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CRDS = REPO / "crds"
OUT = REPO / "docs" / "reference.md"
ORDER = ["InferenceCluster", "ClusterAttachment", "AzureMLExtension", "KubernetesCompute"]


# Said under a kind's heading: what is (not yet) built for it.
NOTES = {
    "AzureMLExtension": "Kubernetes compute path (Azure ML cluster extension). Reconciled by the "
    "controller: read-only preflight, install as Azure's CLI builds the extension, one PATCH per "
    "change (protected settings re-sent whole when the certificate changes), bounded retries of a "
    "Failed install (with the cluster's health-check report), the instance types server-side-"
    "applied once the extension runs, uninstall on deletion once no KubernetesCompute uses it "
    "([troubleshooting](troubleshooting.md#azuremlextension)). TLS is delivered as protected "
    "settings or copied to a Secret on the cluster (`ClusterSecret`); a legacy front end is "
    "annotated for the takeover under `migration`.",
    "KubernetesCompute": "Kubernetes compute path (Azure ML cluster extension). Reconciled by the "
    "controller: it waits for the cluster's Azure ML extension, checks (or creates) the namespace "
    "on the cluster, attaches, changes identity and description in place, retries a Failed "
    "compute by detach + attach, and detaches on deletion "
    "([troubleshooting](troubleshooting.md#kubernetescompute)).",
}


def cell(text: str) -> str:
    """Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def type_of(s: dict) -> str:
    t = s.get("type", "")
    if t == "array":
        item = s.get("items") or {}
        return f"[]{type_of(item)}"
    if t == "object" and "additionalProperties" in s and "properties" not in s:
        return f"map[string]{type_of(s['additionalProperties'] or {})}"
    if t == "integer" and s.get("format"):
        return f"integer ({s['format']})"
    if t == "string" and s.get("format"):
        return f"string ({s['format']})"
    return t or "any"


def constraints(s: dict) -> list[str]:
    out = []
    enum = [e for e in s.get("enum") or [] if e is not None]
    if enum:
        out.append("one of " + ", ".join(f"`{e}`" for e in enum))
    for key, label in (("minLength", "min length"), ("maxLength", "max length"),
                       ("minimum", "min"), ("maximum", "max"), ("minItems", "min items"),
                       ("maxItems", "max items")):
        if key in s:
            v = s[key]
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            out.append(f"{label} {v}")
    if "pattern" in s:
        out.append(f"pattern `{s['pattern']}`")
    return out


def default_of(s: dict) -> str:
    if "default" not in s:
        return ""
    return f"`{json.dumps(s['default'], separators=(', ', ': '))}`"


def rules_of(s: dict) -> list[str]:
    return [r.get("message") or f"`{r['rule']}`" for r in s.get("x-kubernetes-validations") or []]


def walk(schema: dict, path: str, required: bool, rows: list):
    rows.append((path, schema, required))
    props = schema.get("properties") or {}
    req = set(schema.get("required") or [])
    for name in sorted(props):
        walk(props[name], f"{path}.{name}", name in req, rows)
    items = schema.get("items")
    if isinstance(items, dict) and items.get("properties"):
        req_items = set(items.get("required") or [])
        for name in sorted(items["properties"]):
            walk(items["properties"][name], f"{path}[].{name}", name in req_items, rows)


def field_table(schema: dict, root: str, with_rules: bool) -> list[str]:
    rows: list = []
    walk(schema, root, True, rows)
    head = "| Field | Type | Required | Default | Description |"
    sep = "|---|---|---|---|---|"
    if with_rules:
        head += " Rules |"
        sep += "---|"
    lines = [head, sep]
    for path, s, required in rows[1:]:
        desc = s.get("description", "")
        extra = constraints(s)
        if extra:
            desc = f"{desc} ({'; '.join(extra)})" if desc else "; ".join(extra)
        row = [f"`{path}`", cell(type_of(s)), "yes" if required else "",
               cell(default_of(s)), cell(desc)]
        if with_rules:
            row.append("<br>".join(cell(m) for m in rules_of(s)))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def render_crd(crd: dict) -> list[str]:
    spec = crd["spec"]
    names = spec["names"]
    kind = names["kind"]
    out = [f"## {kind}", ""]
    if kind in NOTES:
        out += [NOTES[kind], ""]
    for version in spec["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        props = schema["properties"]
        out += [
            "| | |", "|---|---|",
            f"| API version | `{spec['group']}/{version['name']}` |",
            f"| Scope | {spec['scope']} |",
            f"| Plural / singular | `{names['plural']}` / `{names['singular']}` |",
            f"| Short names | {', '.join(f'`{n}`' for n in names.get('shortNames') or []) or '-'} |",
            f"| Categories | {', '.join(f'`{n}`' for n in names.get('categories') or []) or '-'} |",
            f"| Served / storage version | {'yes' if version.get('served') else 'no'} / {'yes' if version.get('storage') else 'no'} |",
            f"| Subresources | {', '.join(sorted(version.get('subresources') or {})) or '-'} |",
            "",
        ]
        cols = version.get("additionalPrinterColumns") or []
        if cols:
            out += ["`kubectl get` columns: " + ", ".join(
                f"{c['name']} (`{c['jsonPath']}`"
                + (", with `-o wide`" if c.get("priority", 0) > 0 else "") + ")"
                for c in cols) + ".", ""]
        top = rules_of(schema)
        if top:
            out += ["Rules on the whole object:", ""] + [f"- {cell(m)}" for m in top] + [""]
        out += [f"### {kind} `.spec`", "", cell(props["spec"].get("description", "")), ""]
        spec_rules = rules_of(props["spec"])
        if spec_rules:
            out += ["Rules across `.spec` fields:", ""] + [f"- {cell(m)}" for m in spec_rules] + [""]
        out += field_table(props["spec"], "spec", with_rules=True) + [""]
        if "status" in props:
            out += [f"### {kind} `.status`", "",
                    cell(props["status"].get("description", "")) +
                    " Written by the controller only.", ""]
            out += field_table(props["status"], "status", with_rules=False) + [""]
    return out


def generate() -> str:
    crds = [yaml.safe_load(p.read_text()) for p in sorted(CRDS.glob("*.yaml"))]
    crds.sort(key=lambda c: ORDER.index(c["spec"]["names"]["kind"])
              if c["spec"]["names"]["kind"] in ORDER else len(ORDER))
    out = [
        "# API reference",
        "",
        "<!-- GENERATED by docs/gen_reference.py from crds/*.yaml: do not edit by hand. -->",
        "<!-- Regenerate: python3 docs/gen_reference.py -->",
        "",
        "Every field of the amlops custom resources, from the CRDs' OpenAPI schema. "
        "**Rules** are the CEL validation rules the API server enforces at admission "
        "(`x-kubernetes-validations`); the text is the message you get when one fails. "
        "`amlops validate -f FILE` applies the same rules offline. "
        "Fields marked immutable are refused on update; see the troubleshooting guide for "
        "checks made later, at reconcile time.",
        "",
        "Kinds: " + ", ".join(f"[{c['spec']['names']['kind']}](#{c['spec']['names']['kind'].lower()})"
                              for c in crds) + ".",
        "",
    ]
    for crd in crds:
        out += render_crd(crd)
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if docs/reference.md is stale")
    args = ap.parse_args()
    text = generate()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(REPO)} is stale: run python3 docs/gen_reference.py",
                  file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
