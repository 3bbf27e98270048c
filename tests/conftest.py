from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
from helpers import EXAMPLE_CONFIG, REPO, skip_or_fail
from oci_support import helm_environment, publish_chart, running_registry
from runtime.support import RecordingWebserver

from cs_cluster import Cluster, RenderedChart

# Every render of the session (CLI subprocesses included) is kept here, and
# tests/security/test_every_render.py scans them all with checkov and the restricted standard.
os.environ.setdefault("CS_RECORD_RENDERS_DIR", tempfile.mkdtemp(prefix="cs-renders-"))


@pytest.fixture(scope="session")
def webserver() -> Iterator[RecordingWebserver]:
    """The stand-in C/S webserver for the session; tests tell their results apart by job id."""
    server = RecordingWebserver()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def example_cluster() -> Cluster:
    return Cluster(config=EXAMPLE_CONFIG, tag="v1", project="cs-test", previous=None)


@pytest.fixture(scope="session")
def example_chart(example_cluster: Cluster) -> RenderedChart:
    """The bundled example config, rendered and validated once for the session."""
    return example_cluster.render()


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An OCI registry on loopback for the session (tests/oci_support.py); its HOST:PORT."""
    with running_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@pytest.fixture(scope="session")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment for helm with a home of its own (config, cache, registry logins) and no cluster."""
    return helm_environment(tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def published_chart(oci_registry: str, helm_home: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The working tree's chart, packaged and pushed to oci_registry with Helm 4; its oci:// reference."""
    return publish_chart(oci_registry, helm_home, tmp_path_factory.mktemp("package"))


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    """The local control plane's kubeconfig (`ci/cluster up`: starts it, or finds it running).

    A control plane that does not start fails every test that needs it, with the end of its
    log; CS_SKIP_CLUSTER_TESTS=1 (outside CI) skips them instead.
    """
    result = subprocess.run(["bash", str(REPO / "ci" / "cluster"), "up"], capture_output=True, text=True,
                            check=False, timeout=3600)
    if result.returncode != 0:
        log = "\n".join(result.stderr.strip().splitlines()[-40:])
        skip_or_fail(f"the local control plane could not start (ci/cluster up exited {result.returncode}):\n{log}",
                     skip_variable="CS_SKIP_CLUSTER_TESTS")
    line = next(line for line in result.stdout.splitlines() if line.startswith("export KUBECONFIG="))
    return line.split("=", 1)[1].strip().strip("'\"")
