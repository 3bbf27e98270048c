"""The kind workflow for users with Docker: it cannot run here, so it is checked as far as it can be."""

from __future__ import annotations

import os
import shutil
import subprocess

import yaml
from helpers import REPO, skip_or_fail

from cs_cluster.helm import cache_dir

WORKFLOW = REPO / ".github" / "workflows" / "kind.yml"


def actionlint() -> str:
    for candidate in (str(cache_dir() / "bin" / "actionlint"), shutil.which("actionlint")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    skip_or_fail("actionlint is not installed (ci/install-tools.sh builds it with Go; install Go first)")


def test_actionlint_finds_nothing() -> None:
    result = subprocess.run([actionlint(), str(WORKFLOW)], capture_output=True, text=True, check=False, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_builds_installs_tests_and_submits_a_sim() -> None:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["kind"]["steps"]
    text = "\n".join(step.get("run", "") + str(step.get("with", "")) for step in steps)
    for needed in ("cs-cluster build --config examples/worker_config.yaml", "ci/kind.yaml", "kind load docker-image",
                   "helm upgrade --install cs charts/cs-workers", "helm test cs", "/cs-examples/Celery-Sum/sim",
                   "cs-cluster local webserver"):
        assert needed in text, needed


def test_kind_nodes_carry_the_size_labels_models_select_on() -> None:
    config = yaml.safe_load((REPO / "ci" / "kind.yaml").read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    sizes = {node.get("labels", {}).get("size") for node in config["nodes"] if node["role"] == "worker"}
    assert sizes == {"small", "medium"}
