"""The scripts in ci/: shellcheck-clean, and `ci/cluster` refuses what it does not know with
one line and a non-zero exit, before it builds or starts anything."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, skip_or_fail

SCRIPTS = sorted([REPO / "ci" / "cluster", *(REPO / "ci").glob("*.sh"), *(REPO / "ci" / "cluster.d").glob("*.sh"),
                  *(REPO / "ci" / "cluster.d").glob("*.bash")])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(Path(path).relative_to(REPO)))
def test_shellcheck_finds_no_warning(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        skip_or_fail("shellcheck is not installed (ci/install-tools.sh installs it)")
    result = subprocess.run([shellcheck, "-x", "--severity=warning", str(script)], capture_output=True, text=True,
                            check=False, cwd=script.parent)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("arguments", "message"), [
    (["up", "--real-nodes"], "unknown option for up: --real-nodes (known: --real-node, --keda)"),
    (["up", "--keda"], "--keda needs --real-node (KEDA runs on the real node)"),
    (["down", "--all"], "unknown option for down: --all (known: --real-node)"),
    (["build", "--kdea"], "unknown option for build: --kdea (known: --keda)"),
])
def test_ci_cluster_refuses_unknown_options_in_one_line(arguments: list[str], message: str) -> None:
    result = subprocess.run(["bash", str(REPO / "ci" / "cluster"), *arguments], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"cluster: error: {message}"], result.stderr
