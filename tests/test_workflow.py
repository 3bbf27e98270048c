"""The kind workflow for users with Docker: it cannot run here, so it is checked as far as it can be."""

from __future__ import annotations

import os
import re
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


def test_workflow_runs_the_node_tests_with_the_variables_they_read() -> None:
    """The workflow and ci/test.sh run the same tests: tests/node, told where the cluster, the
    registry and this machine are by the variables `ci/cluster up --real-node` prints."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["kind"]
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "pytest -m node tests/node" in runs
    assert job["env"]["CS_NODE_ENV_FROM_ENVIRONMENT"] == "1" and job["env"]["CI"] == "true"
    exported = set(job["env"]) | set(re.findall(r"echo \"([A-Z_]+)=", runs))
    conftest = (REPO / "tests" / "node" / "conftest.py").read_text()
    required = re.search(r'for name in \(([^)]*)\) if not found.get', conftest)
    assert required is not None
    for name in re.findall(r'"([A-Z_]+)"', required.group(1)):
        assert name in exported, name


def test_kind_nodes_carry_the_size_labels_and_the_real_node_placement() -> None:
    config = yaml.safe_load((REPO / "ci" / "kind.yaml").read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    workers = [node for node in config["nodes"] if node["role"] == "worker"]
    assert {node.get("labels", {}).get("size") for node in workers} == {"small", "medium"}
    # ci/real-node-values.yaml selects and tolerates exactly what the labelled worker carries.
    placement = yaml.safe_load((REPO / "ci" / "real-node-values.yaml").read_text())
    selector = placement["gateway"]["nodeSelector"]
    (toleration,) = placement["gateway"]["tolerations"]
    (real,) = [node for node in workers if all(node.get("labels", {}).get(k) == v for k, v in selector.items())]
    (taint,) = yaml.safe_load(real["kubeadmConfigPatches"][0])["nodeRegistration"]["taints"]
    assert (taint["key"], taint["value"], taint["effect"]) == (
        toleration["key"], toleration["value"], toleration["effect"])
