#!/usr/bin/env bash
# Set up a fresh machine for cs-workers: helm 3 and 4 and redis-server (ci/install-tools.sh), and a
# Python environment in .venv with cs_cluster, the runtime and the test tools. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(bash ci/install-tools.sh)"

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  python3 -m venv .venv
fi
echo "setup: installing Python packages into .venv" >&2
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" -e images/runtime
# checkov scans the rendered manifests; it pins many packages, so it lives in a venv of its own.
# The install counts as done only once `checkov --version` answers, so a broken one is redone.
checkov_venv="${CS_WORKERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cs-workers}/checkov-venv"
if ! "$checkov_venv/bin/checkov" --version >/dev/null 2>&1; then
  echo "setup: installing checkov into $checkov_venv (a minute, once)" >&2
  rm -rf "$checkov_venv"
  python3 -m venv "$checkov_venv"
  "$checkov_venv/bin/python" -m pip install -q --disable-pip-version-check "checkov==3.3.30"
fi

echo "setup: ready ($("$CS_HELM3" version --short), $("$CS_HELM4" version --short), $(redis-server --version | cut -d' ' -f3))" >&2
