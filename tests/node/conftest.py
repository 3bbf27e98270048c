"""The real node (`ci/cluster up --real-node`) for the `node` tests, and the example release on it.

ci/test.sh starts the control plane with its real node before pytest; run alone, these tests
start it themselves. When it cannot start, every test here fails with the end of its log, in CI
and by default; only a developer who asks (CS_SKIP_NODE_TESTS=1, or `-m 'not node'`) gets them
skipped. The same tests run against a kind cluster in .github/workflows/kind.yml: everything
they need from the cluster comes from the environment variables `ci/cluster up --real-node`
prints (KUBECONFIG, DOCKER_HOST, CS_REGISTRY, CS_HOST_ADDRESS, CS_BASE_IMAGE), and when
CS_NODE_ENV_FROM_ENVIRONMENT=1 they are taken from the environment as they are.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, skip_or_fail
from node_support import SESSION_TAG, NodeEnvironment, Release, built_images

from cs_cluster.standin import StandInWebserver

VARIABLES = ("KUBECONFIG", "DOCKER_HOST", "DOCKER_BUILDKIT", "CS_REGISTRY", "CS_HOST_ADDRESS", "CS_BASE_IMAGE")


def _exports(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            found[name] = shlex.split(value)[0] if value else ""
    return found


@pytest.fixture(scope="session")
def node_env() -> NodeEnvironment:
    """The cluster with a real node, its registry and Docker engine."""
    if os.environ.get("CS_SKIP_NODE_TESTS") == "1" and os.environ.get("CI") != "true":
        pytest.skip("CS_SKIP_NODE_TESTS=1: the real node was not started")
    if os.environ.get("CS_NODE_ENV_FROM_ENVIRONMENT") == "1":
        found = {name: os.environ[name] for name in VARIABLES if name in os.environ}
    else:
        result = subprocess.run(["bash", str(REPO / "ci" / "cluster"), "up", "--real-node"], capture_output=True,
                                text=True, check=False, timeout=5400)
        if result.returncode != 0:
            log = "\n".join(result.stderr.strip().splitlines()[-60:])
            skip_or_fail(f"the real node could not start (ci/cluster up --real-node exited "
                         f"{result.returncode}):\n{log}", skip_variable="CS_SKIP_NODE_TESTS")
        found = _exports(result.stdout)
    # DOCKER_HOST is optional: on kind, the runner's own Docker engine builds the images.
    missing = [name for name in ("KUBECONFIG", "CS_REGISTRY", "CS_HOST_ADDRESS") if not found.get(name)]
    if missing:
        skip_or_fail(f"the real node's environment lacks {', '.join(missing)}", skip_variable="CS_SKIP_NODE_TESTS")
    return NodeEnvironment(found)


@pytest.fixture(scope="session")
def images(node_env: NodeEnvironment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example config's images, built from this repository and pushed (tag SESSION_TAG);
    the values file `cs-cluster build` wrote for them."""
    return built_images(node_env, tmp_path_factory.mktemp("images"), tag=SESSION_TAG)


@pytest.fixture(scope="session")
def webserver(node_env: NodeEnvironment) -> Iterator[StandInWebserver]:
    """The stand-in C/S webserver, on the address pods reach this machine at."""
    server = StandInWebserver(host=node_env.host_address, port=0, token="node-test-token").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def release(node_env: NodeEnvironment, images: Path, webserver: StandInWebserver,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """The example cluster installed with Helm 4 into a namespace where the API server enforces
    the restricted Pod Security Standard, every pod on the real node."""
    release = Release.install(node_env, images, webserver, tmp_path_factory.mktemp("release"), major=4)
    try:
        yield release
    finally:
        release.uninstall()
