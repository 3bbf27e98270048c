"""ci/cluster.d/standin-images.sh: the stand-in base and Redis images for machines that reach no
registry. Its output is a contract: callers `eval` it (ci/cluster up --real-node does)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from docker_support import STANDIN_SCRIPT, docker, image_config
from helpers import skip_or_fail

CONTRACT = "export CS_BASE_IMAGE="


def test_script_is_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        skip_or_fail("shellcheck is not installed")
    result = subprocess.run(["shellcheck", str(STANDIN_SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


@pytest.mark.images
def test_a_warm_run_takes_seconds_and_prints_only_the_export(base_image: str | None) -> None:
    """After the session's first run (conftest's base_image), a rerun finds everything present."""
    if base_image is None or not base_image.startswith("cs-workers-ci/"):
        pytest.skip("the stand-ins are not built here (not root with debootstrap, or CS_BASE_IMAGE given)")
    started = time.monotonic()
    done = subprocess.run(["bash", str(STANDIN_SCRIPT)], capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{CONTRACT}{base_image}\n"
    assert elapsed < 20, f"a warm run took {elapsed:.0f} s:\n{done.stderr}"
    assert ": present" in done.stderr and "debootstrap" not in done.stderr


@pytest.mark.images
def test_stand_ins_say_they_are_stand_ins(base_image: str | None, redis_image: str) -> None:
    if base_image is None or not base_image.startswith("cs-workers-ci/"):
        pytest.skip("the stand-ins are not built here")
    for image, kind in ((base_image, "python"), (redis_image, "redis")):
        labels = image_config(image)["Labels"]
        assert labels["dev.cs-workers.standin"] == kind
        assert "stand-in" in labels["org.opencontainers.image.description"]
    python = docker("run", "--rm", "--network", "none", "--user", "10001:10001", base_image, "sh", "-c",
                    "python --version && pip --version && test ! -e /usr/lib/python3.11/EXTERNALLY-MANAGED"
                    " && pip config list").stdout
    assert python.startswith("Python 3.11.") and "cert='/etc/ssl/certs/ca-certificates.crt'" in python
