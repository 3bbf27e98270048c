"""The same install with Helm 3, on real pods: every pod Ready in containerd containers,
`helm test` passes, a sim travels to the webserver. Its own release, uninstalled before the
Helm 4 tests install theirs (the node has 2 CPUs, too few for both)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from node_support import CONTAINER_ID_PREFIX, NodeEnvironment, Release, ready

from cs_cluster.standin import StandInWebserver

pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def helm3_release(node_env: NodeEnvironment, images: Path, webserver: StandInWebserver,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    release = Release.install(node_env, images, webserver, tmp_path_factory.mktemp("helm3"), major=3)
    try:
        yield release
    finally:
        release.uninstall()


def test_helm3_installs_every_pod_in_a_real_container(helm3_release: Release) -> None:
    pods = helm3_release.pods()
    assert len(pods) == 9, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        assert ready(pod), pod["metadata"]["name"]
        assert all(s["containerID"].startswith(CONTAINER_ID_PREFIX) for s in pod["status"]["containerStatuses"])


def test_helm3_test_passes_and_a_sim_arrives(helm3_release: Release) -> None:
    result = helm3_release.kube.helm(3, "test", helm3_release.name, "--timeout", "3m")
    assert " ".join(result.stdout.split()).count("Phase: Succeeded") >= 3, result.stdout
    job = helm3_release.submit("Celery-Sum", {"sum": {"a": 2, "b": 3}})
    body = helm3_release.wait_result(job).body
    assert body["status"] == "SUCCESS", body
    assert body["outputs"]["downloadable"][0]["data"].strip().splitlines()[1] == "2,3,5.0"
