"""The images of this repository, really built, and the example release run from them.

Needs a Docker engine: DOCKER_HOST set and `docker info` answering (ci/cluster up --real-node
prints one; on a machine with Docker, DOCKER_HOST=unix:///var/run/docker.sock). Without one the
tests skip with the reason, and fail when CI=true. The base image is $CS_BASE_IMAGE when set;
otherwise, where ci/cluster.d/standin-images.sh can run (root with debootstrap), its stand-ins
(cached: seconds once built), else the Dockerfiles' official python:3.11-slim-bookworm. The
chart's Redis runs from the Redis stand-in when the engine has it (the label
dev.cs-workers.standin=redis), else from the chart's own default image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from docker_support import (
    GATEWAY_TOKEN,
    PROJECT,
    REGISTRY,
    STANDIN_SCRIPT,
    TAG,
    WEBSERVER_PORT,
    WEBSERVER_TOKEN,
    BuiltRelease,
    Release,
    Sandbox,
    chart_redis_image,
    docker,
    engine_problem,
    pods_directory,
)
from helpers import EXAMPLE_CONFIG, skip_or_fail

from cs_cluster.render import render_chart


@pytest.fixture(scope="session")
def engine() -> None:
    problem = engine_problem()
    if problem:
        skip_or_fail(problem)


@pytest.fixture(scope="session")
def base_image(engine: None) -> str | None:
    """$CS_BASE_IMAGE, else the stand-ins where they can be built here, else the official base."""
    if os.environ.get("CS_BASE_IMAGE"):
        return os.environ["CS_BASE_IMAGE"]
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        return None
    done = subprocess.run(["bash", str(STANDIN_SCRIPT)], capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        pytest.fail(f"{STANDIN_SCRIPT.name} failed:\n{done.stderr[-3000:]}", pytrace=False)
    prefix = "export CS_BASE_IMAGE="
    (line,) = [line for line in done.stdout.splitlines() if line.startswith(prefix)]
    return line[len(prefix):]


@pytest.fixture(scope="session")
def redis_image(engine: None, base_image: str | None) -> str:
    found = docker("images", "--filter", "label=dev.cs-workers.standin=redis", "--format",
                   "{{.Repository}}:{{.Tag}}").stdout.split()
    return found[0] if found else chart_redis_image()


@pytest.fixture(scope="session")
def built(engine: None, base_image: str | None, redis_image: str,
          tmp_path_factory: pytest.TempPathFactory) -> BuiltRelease:
    """`cs-cluster build --no-push` of the example config (the real CLI; Docker's layer cache
    makes a rebuild take seconds), and the chart rendered for the values file it wrote."""
    directory = tmp_path_factory.mktemp("images")
    values_file = directory / f"{PROJECT}.yaml"
    command = [sys.executable, "-m", "cs_cluster", "build", "--config", str(EXAMPLE_CONFIG), "--tag", TAG,
               "--project", PROJECT, "--registry", REGISTRY, "--no-push", "--values-file", str(values_file)]
    if base_image:
        command += ["--base-image", base_image]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        pytest.fail(f"cs-cluster build failed ({done.returncode}):\n{done.stderr[-4000:]}", pytrace=False)
    extra = {
        # Service port = container port, so that Service names on one loopback reach the gateway.
        "gateway": {"service": {"port": 5050}, "auth": {"token": GATEWAY_TOKEN}},
        "workerSecret": {"values": {"COMP_URL": f"http://127.0.0.1:{WEBSERVER_PORT}",
                                    "COMP_API_TOKEN": WEBSERVER_TOKEN}},
    }
    rendered = render_chart(extra, values_files=[values_file], release="cs-workers")
    return BuiltRelease(values_file, done.stderr, base_image, redis_image,
                        f"{REGISTRY}/{PROJECT}/cs-workers-runtime:{TAG}",
                        Release(list(rendered), pods_directory(directory)))


@pytest.fixture(scope="session")
def sandbox(built: BuiltRelease) -> Iterator[Sandbox]:
    sandbox = Sandbox(built.release, built.runtime_image)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()
