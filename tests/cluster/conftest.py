"""The local control plane (ci/cluster) for the `cluster` tests, and helpers to talk to it.

ci/test.sh starts the control plane before pytest; run alone, these tests start it themselves
(the `kubeconfig` fixture in tests/conftest.py). When it cannot start, every test here fails
with the control plane's log, in CI and by default; only a developer who asks
(CS_SKIP_CLUSTER_TESTS=1, or `-m 'not cluster'`) gets them skipped.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kube_support import Kube


@pytest.fixture
def kube(kubeconfig: str) -> Iterator[Kube]:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    subprocess.run(["kubectl", "create", "namespace", namespace], env={**os.environ, "KUBECONFIG": kubeconfig},
                   check=True, capture_output=True, timeout=60)
    yield Kube(kubeconfig, namespace)
    subprocess.run(["kubectl", "delete", "namespace", namespace, "--wait=false"],
                   env={**os.environ, "KUBECONFIG": kubeconfig}, check=False, capture_output=True, timeout=60)
