from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest
from helpers import EXAMPLE_CONFIG
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
