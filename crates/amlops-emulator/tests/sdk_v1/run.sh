#!/usr/bin/env bash
# Runs the Azure ML SDK v1 scenarios (tests/sdk_v1/test_*.py) against a running emulator.
# Called by `cargo test -p amlops-emulator --test sdk_v1`, which starts the emulator and sets
# AMLOPS_EMULATOR_URL and AMLOPS_EMULATOR_TOKEN; runnable by hand against `amlops-dev emulator`.
#
# Needs only python3 (3.9+) and network access to PyPI: the SDK goes into a virtualenv of
# its own, cached across runs and clones under ${AMLOPS_SDK_VENV_DIR:-~/.cache/amlops}, keyed
# on the Python version and requirements.lock (a new pin makes a new venv; a half-built
# venv is never used: `.complete` is written last). Concurrent runs wait on a lock file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1

: "${AMLOPS_EMULATOR_URL:?set AMLOPS_EMULATOR_URL (e.g. http://127.0.0.1:8640)}"
: "${AMLOPS_EMULATOR_TOKEN:?set AMLOPS_EMULATOR_TOKEN (amlops-dev emulator prints it)}"
export AMLOPS_EMULATOR_TOKEN

lock="$here/requirements.lock"
key=$({ "$PY" -c 'import sys; print(sys.version)'; cat "$lock"; } | sha256sum | cut -c1-16)
cache=${AMLOPS_SDK_VENV_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/amlops}
venv="$cache/sdk-v1-$key"
mkdir -p "$cache"

exec 9>"$cache/sdk-v1.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "sdk_v1: creating $venv (azureml-core from PyPI; takes a minute or two)" >&2
  rm -rf "$venv"
  if ! "$PY" -m venv "$venv" 2>/dev/null; then
    # Debian's python3 without python3-venv: fall back to virtualenv from PyPI (a user
    # install; PEP 668 marks Debian's Python externally managed, older pips ignore the variable).
    rm -rf "$venv"
    PIP_BREAK_SYSTEM_PACKAGES=1 "$PY" -m pip install --quiet --user virtualenv
    "$PY" -m virtualenv --quiet "$venv"
  fi
  ok=
  for attempt in 1 2 3; do
    if "$venv/bin/python" -m pip install --quiet --retries 5 --timeout 60 -r "$lock"; then
      ok=1
      break
    fi
    echo "sdk_v1: pip install failed (attempt $attempt of 3), retrying in $((attempt * 10)) s" >&2
    sleep $((attempt * 10))
  done
  if [ -z "$ok" ]; then
    echo "sdk_v1: could not install the SDK from PyPI (see pip's errors above)" >&2
    exit 1
  fi
  touch "$venv/.complete"
fi
flock -u 9

set +e
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$here" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "sdk_v1: pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
