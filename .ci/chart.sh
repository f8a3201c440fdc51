#!/usr/bin/env bash
# Chart, kustomize manifests and docs checks (Helm's own engine through helm-sdkpy).
# Called by .ci/run; runnable alone: bash .ci/chart.sh
# Installs what it needs with pip when missing (idempotent), then runs tests/chart.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1

# name==version of each requirement, and the module that proves it is installed.
# kubernetes is pinned below 36: 36+ needs python-dateutil>=3 and newer pydantic,
# which conflict with packages preinstalled on the CI machines.
REQS=(
  "helm-sdkpy==0.1.32:helm_sdkpy"
  "PyYAML>=6:yaml"
  "pytest>=7:pytest"
  "kubernetes==35.0.0:kubernetes"
  "lupa>=2:lupa"
)

missing=()
for req in "${REQS[@]}"; do
  spec=${req%%:*} module=${req##*:}
  if ! "$PY" - "$spec" "$module" <<'PYEOF' >/dev/null 2>&1
import sys, importlib, importlib.metadata as md
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
spec, module = sys.argv[1], sys.argv[2]
importlib.import_module(module)
r = Requirement(spec)
sys.exit(0 if r.specifier.contains(md.version(r.name), prereleases=True) else 1)
PYEOF
  then
    missing+=("$spec")
  fi
done
if ((${#missing[@]})); then
  echo "== pip install ${missing[*]}"
  # helm-sdkpy declares a newer Python than some CI images have; its wheel works on 3.11.
  "$PY" -m pip install --quiet --ignore-requires-python "${missing[@]}"
fi

echo "== chart tests (helm $("$PY" -c 'import importlib.metadata as m; print("sdkpy", m.version("helm-sdkpy"))'))"
set +e
"$PY" -m pytest -q -p no:cacheprovider tests/chart "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "chart.sh: pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
