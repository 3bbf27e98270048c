"""The local control plane (ci/cluster) for the `cluster` tests, and helpers to talk to it.

ci/test.sh starts the control plane before pytest; run alone, these tests start it themselves.
When it cannot start (say, the binaries cannot be built), every test here is skipped with the
reason, never faked.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from helpers import REPO
from kube_support import Kube


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    result = subprocess.run(["bash", str(REPO / "ci" / "cluster"), "up"], capture_output=True, text=True,
                            check=False, timeout=3600)
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        pytest.skip(f"the local control plane could not start (ci/cluster up): {tail}")
    line = next(line for line in result.stdout.splitlines() if line.startswith("export KUBECONFIG="))
    return line.split("=", 1)[1].strip().strip("'\"")


@pytest.fixture
def kube(kubeconfig: str) -> Iterator[Kube]:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    subprocess.run(["kubectl", "create", "namespace", namespace], env={**os.environ, "KUBECONFIG": kubeconfig},
                   check=True, capture_output=True, timeout=60)
    yield Kube(kubeconfig, namespace)
    subprocess.run(["kubectl", "delete", "namespace", namespace, "--wait=false"],
                   env={**os.environ, "KUBECONFIG": kubeconfig}, check=False, capture_output=True, timeout=60)
