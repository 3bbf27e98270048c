"""The capacity check against the control plane's node pools (ci/cluster.d/nodes.yaml: small
nodes have 4 CPUs, the largest 16 CPUs and 100Gi of ephemeral storage) and, when it runs, the real
node, which is tainted: a pod without the toleration must not count it.

`apply` refuses a pod no node can ever take before helm runs (exit 4, no release, no values
file); `plan` says the same and exits 4; a model that fits is applied.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import cs_cluster, write_config
from kube_support import Kube

from cs_cluster.helm import find_helm

pytestmark = pytest.mark.cluster
RELEASE = "cs"
REAL_NODE_LABEL = "cs-workers.dev/real-node"


def big_model(requests: dict[str, Any], limits: dict[str, Any] | None = None, **settings: Any) -> list[dict[str, Any]]:
    resources = {"requests": requests, **({"limits": limits} if limits else {})}
    return [{"owner": "big", "title": "Model", "cluster_type": "single-core", "resources": resources, **settings}]


def run(kube: Kube, tmp_path: Path, name: str, config: Path, *options: str | Path) -> subprocess.CompletedProcess[str]:
    return cs_cluster(name, "--config", config, "--tag", "v1", "--project", "cs-test", "--release", RELEASE,
                      "--namespace", kube.namespace, "--values-file", tmp_path / "values.yaml", *options,
                      env={**kube.env, "CS_HELM": find_helm(4)}, timeout=600)


def real_nodes(kube: Kube) -> list[str]:
    return [n["metadata"]["name"] for n in kube.get_cluster_scoped("nodes")
            if REAL_NODE_LABEL in n["metadata"].get("labels", {})]


def expected_words(case: str, kube: Kube) -> list[str]:
    real = real_nodes(kube)
    if case == "above every small node":
        return ["big/Model: Deployment/cs-big-model-sim (1 pod) can never be scheduled", "requests cpu 5",
                "its pool (size in (small): small-1, small-2)", "at most cpu 4"]
    if case == "more disk than any node it may use":
        # The real node has more disk than the fake ones, but a taint this pod does not tolerate.
        left_out = [f"left out, for taints it does not tolerate: {real[0]} ({REAL_NODE_LABEL}=true:NoSchedule)"] \
            if real else []
        return ["big/Model", "requests ephemeral-storage 150Gi", "at most ephemeral-storage 100Gi", *left_out]
    # "selects the real node, without its toleration"
    if real:
        return ["big/Model", f"the nodes with {REAL_NODE_LABEL}=true ({real[0]}) have taints it does not tolerate"]
    return ["big/Model", f"no node has {REAL_NODE_LABEL}=true"]


REFUSED = {
    "above every small node": (big_model({"cpu": 5, "memory": "1G"}, affinity={"size": "small"}), None),
    "more disk than any node it may use": (
        # With its limit: the chart's default limit (9Gi) is below the request, which cs-cluster refuses first.
        big_model({"cpu": "100m", "ephemeral-storage": "150Gi"}, limits={"ephemeral-storage": "150Gi"}), None),
    "selects the real node, without its toleration": (
        big_model({"cpu": "100m"}), {"modelDefaults": {"sim": {"nodeSelector": {REAL_NODE_LABEL: "true"}}}}),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_a_pod_no_node_can_take_is_refused_before_helm_runs(kube: Kube, tmp_path: Path, case: str) -> None:
    models, values = REFUSED[case]
    config = write_config(tmp_path, models)
    extra: list[str | Path] = []
    if values:
        (tmp_path / "placement.yaml").write_text(yaml.safe_dump(values))
        extra = ["-f", tmp_path / "placement.yaml"]
    words = expected_words(case, kube)

    planned = run(kube, tmp_path, "plan", config, *extra)
    assert planned.returncode == 4, planned.stdout + planned.stderr
    refusal = [line for line in planned.stdout.splitlines() if line.startswith("! ")]
    assert len(refusal) == 1 and all(w in refusal[0] for w in words), (words, planned.stdout)

    applied = run(kube, tmp_path, "apply", config, *extra)
    assert applied.returncode == 4, applied.stderr
    errors = [line for line in applied.stderr.splitlines() if line.startswith("cs-cluster: error:")]
    assert len(errors) == 1 and all(w in errors[0] for w in words), (words, applied.stderr)
    assert "--skip-capacity-check" in errors[0] and "running:" not in applied.stderr
    assert "not found" in kube.helm(4, "status", RELEASE, check=False).stderr  # helm never ran
    assert not (tmp_path / "values.yaml").exists()


def test_a_model_that_fits_a_small_node_is_applied(kube: Kube, tmp_path: Path) -> None:
    config = write_config(tmp_path, big_model({"cpu": 3, "memory": "1G"}, affinity={"size": "small"}))
    planned = run(kube, tmp_path, "plan", config)
    assert planned.returncode == 2, planned.stderr
    assert not [line for line in planned.stdout.splitlines() if line.startswith("! ")], planned.stdout
    # Other tests' pods may fill the small nodes for a while: a warning then, never a refusal.
    applied = run(kube, tmp_path, "apply", config, "--no-wait")
    assert applied.returncode == 0, applied.stderr
    assert "can never be scheduled" not in applied.stderr
    assert (tmp_path / "values.yaml").exists()


def test_skip_capacity_check_lets_helm_try(kube: Kube, tmp_path: Path) -> None:
    config = write_config(tmp_path, big_model({"cpu": 5}, affinity={"size": "small"}))
    applied = run(kube, tmp_path, "apply", config, "--skip-capacity-check", "--no-wait")
    assert applied.returncode == 0, applied.stderr
    sim = kube.get("pods", "app.kubernetes.io/component=model-sim")
    assert sim and sim[0]["status"]["phase"] == "Pending"
