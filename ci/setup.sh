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
echo "setup: ready ($("$CS_HELM3" version --short), $("$CS_HELM4" version --short), $(redis-server --version | cut -d' ' -f3))" >&2
