#!/usr/bin/env bash
# The whole check, as CI runs it: set up, lint, type-check, start the local Kubernetes control
# plane, then the test suite. Extra arguments go to pytest (e.g. `ci/test.sh -k gateway`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/setup.sh
eval "$(bash ci/install-tools.sh 2>/dev/null)"

echo "test: ruff" >&2
.venv/bin/ruff check render images tests benchmarks examples
echo "test: mypy" >&2
.venv/bin/mypy
echo "test: generated schema files are current" >&2
.venv/bin/cs-cluster schema

# The cluster tests need the control plane; building it the first time takes minutes, so it
# starts here where its progress shows. If it cannot start, those tests skip with the reason.
echo "test: local Kubernetes control plane (ci/cluster up)" >&2
started_at=$(date +%s)
was_up=no
bash ci/cluster status >/dev/null 2>&1 && was_up=yes
if cluster_env=$(bash ci/cluster up); then
  eval "$cluster_env"
  # Leave a control plane someone else started as it was.
  [ "$was_up" = yes ] || trap 'bash ci/cluster down >/dev/null 2>&1 || true' EXIT
  echo "test: control plane up in $(( $(date +%s) - started_at )) s" >&2
else
  echo "test: the control plane did not start; the cluster tests will be skipped" >&2
fi

echo "test: pytest" >&2
.venv/bin/pytest "$@"

# Benchmarks are not tests: run tiny, they only show that each still works (numbers are in
# benchmarks/README.md). Skipped when pytest was given a selection.
if [ $# -eq 0 ]; then
  echo "test: benchmarks, quick" >&2
  .venv/bin/python benchmarks/run.py --quick >/dev/null
fi
