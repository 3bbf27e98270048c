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

# The cluster tests need the control plane, the node tests its real node (containerd, kubelet,
# a Docker engine and a registry; root only). Building them the first time takes minutes, so
# they start here where their progress shows. A control plane or node that does not start fails
# the run, with its log: a green run must not hide that the install, upgrade and real-pod tests
# never ran. Only a developer who asks (CS_SKIP_CLUSTER_TESTS=1 / CS_SKIP_NODE_TESTS=1, outside
# CI) goes on without them, and then those tests skip.
up_args=()
if [ "$(id -u)" -eq 0 ] && [ "${CS_SKIP_NODE_TESTS:-}" != 1 ]; then
  up_args=(--real-node)
elif [ "${CI:-}" = true ]; then
  echo "test: the node tests need root (CI=true); run ci/test.sh as root" >&2
  exit 1
fi
echo "test: local Kubernetes control plane (ci/cluster up ${up_args[*]})" >&2
started_at=$(date +%s)
was_up=no
bash ci/cluster status >/dev/null 2>&1 && was_up=yes
if cluster_env=$(bash ci/cluster up "${up_args[@]}"); then
  eval "$cluster_env"
  # Leave a control plane someone else started as it was.
  [ "$was_up" = yes ] || trap 'bash ci/cluster down >/dev/null 2>&1 || true' EXIT
  echo "test: control plane up in $(( $(date +%s) - started_at )) s" >&2
elif [ "${CI:-}" != true ] && [ "${CS_SKIP_CLUSTER_TESTS:-}" = 1 ]; then
  echo "test: the control plane did not start; CS_SKIP_CLUSTER_TESTS=1, so the cluster and node tests skip" >&2
else
  echo "test: the control plane did not start (log above; 'bash ci/cluster logs' for more)." >&2
  echo "test: fix it, or set CS_SKIP_CLUSTER_TESTS=1 (not in CI) to run the rest without it" >&2
  exit 1
fi

# KEDA (the autoscaling node tests, tests/node/test_scale_to_zero.py) is built from the Go module
# proxy once, 10-17 min on 2 cores; only when the node tests run, and in the background from here,
# while the earlier tests mostly wait on their clusters. Those tests wait for it to finish
# (`ci/cluster up --real-node --keda`, which also builds it when a selection runs them); its
# progress goes to its own log.
keda_build=""
if [ "${up_args[*]}" = --real-node ] && [ $# -eq 0 ]; then
  keda_log=$(mktemp -t cs-keda-build.XXXXXX.log)
  echo "test: building KEDA in the background (log: $keda_log)" >&2
  bash ci/cluster build --keda >"$keda_log" 2>&1 &
  keda_build=$!
fi

echo "test: pytest" >&2
status=0
.venv/bin/pytest "$@" || status=$?
if [ -n "$keda_build" ]; then
  wait "$keda_build" || echo "test: the KEDA build failed (log: $keda_log)" >&2
fi
[ "$status" -eq 0 ] || exit "$status"

# Benchmarks are not tests: run tiny, they only show that each still works (numbers are in
# benchmarks/README.md). Skipped when pytest was given a selection.
if [ $# -eq 0 ]; then
  echo "test: benchmarks, quick" >&2
  .venv/bin/python benchmarks/run.py --quick >/dev/null
fi
