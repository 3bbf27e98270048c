#!/usr/bin/env bash
# The whole check, as CI runs it: set up, lint, type-check, then the test suite.
# Extra arguments go to pytest (e.g. `ci/test.sh -k gateway`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/setup.sh
eval "$(bash ci/install-tools.sh 2>/dev/null)"

echo "test: ruff" >&2
.venv/bin/ruff check render images tests
echo "test: mypy" >&2
.venv/bin/mypy
echo "test: generated schema files are current" >&2
.venv/bin/cs-cluster schema
echo "test: pytest" >&2
.venv/bin/pytest "$@"
