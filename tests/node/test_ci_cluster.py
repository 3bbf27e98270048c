"""`ci/cluster` itself, with its real node up: its smoke test passes, and what it printed is
what a user reaches the node's parts with."""

from __future__ import annotations

import subprocess

import pytest
from helpers import REPO
from node_support import NodeEnvironment

pytestmark = pytest.mark.node


def test_the_smoke_test_passes_on_the_real_node(node_env: NodeEnvironment) -> None:
    result = subprocess.run(["bash", str(REPO / "ci" / "cluster.d" / "smoke-test.sh")], capture_output=True,
                            text=True, env=node_env.env, check=False, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "real node: a pod from the local registry Running" in result.stdout, result.stdout
    assert result.stdout.strip().endswith(" 0 failed"), result.stdout


def test_the_printed_docker_host_and_registry_answer(node_env: NodeEnvironment) -> None:
    if "DOCKER_HOST" not in node_env.variables:
        pytest.skip("no DOCKER_HOST: the images are built by the machine's own engine (the kind workflow)")
    info = subprocess.run(["docker", "info", "--format", "{{.Driver}} {{.CgroupDriver}}"], capture_output=True,
                          text=True, env=node_env.env, check=False, timeout=60)
    assert info.returncode == 0 and info.stdout.split() == ["overlay2", "cgroupfs"], info.stdout + info.stderr
    catalog = subprocess.run(["curl", "-fsS", f"http://{node_env.registry}/v2/_catalog"], capture_output=True,
                             text=True, check=False, timeout=30)
    # The stand-in Redis under the chart's default name (Docker Hub's library/redis), and the
    # sandbox image containerd pulls as registry.k8s.io/pause.
    assert '"library/redis"' in catalog.stdout and '"pause"' in catalog.stdout, catalog.stdout + catalog.stderr
