"""Runs after the other test folders: every render the session made passes checkov and the
restricted standard (renders are kept through CS_RECORD_RENDERS_DIR, see tests/conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import EXAMPLE_CONFIG, REPO

from cs_cluster import Cluster
from cs_cluster.helm import cache_dir
from cs_cluster.podsecurity import restricted_violations, workload_pod_specs
from cs_cluster.render import parse_manifests


def checkov_binary() -> str:
    for candidate in (os.environ.get("CS_CHECKOV"), str(cache_dir() / "checkov-venv" / "bin" / "checkov"),
                      shutil.which("checkov")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("checkov is not installed: run `bash ci/setup.sh`")


@pytest.fixture(scope="module")
def renders() -> Path:
    # At least the example, when this file runs alone.
    Cluster(EXAMPLE_CONFIG, tag="v1", project="cs-test", previous=None).template()
    directory = Path(os.environ["CS_RECORD_RENDERS_DIR"])
    for render in directory.glob("*.yaml"):
        if not render.read_text().strip():
            render.unlink()
    return directory


def test_checkov_finds_nothing_in_any_render(renders: Path) -> None:
    count = len(list(renders.glob("*.yaml")))
    result = subprocess.run(
        [checkov_binary(), "--directory", str(renders), "--config-file", str(REPO / ".checkov.yaml"),
         "--output", "json", "--quiet", "--skip-download"],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [f"{check['check_id']} {check['resource']} ({check['file_path']})"
              for entry in reports for check in entry.get("results", {}).get("failed_checks", [])]
    passed = sum(entry.get("summary", {}).get("passed", 0) for entry in reports)
    assert failed == [], f"{len(failed)} failed checks across {count} renders: " + "; ".join(sorted(set(failed))[:10])
    assert passed > 0


def test_restricted_standard_holds_in_every_render(renders: Path) -> None:
    checked = 0
    for render in sorted(renders.glob("*.yaml")):
        for name, spec in workload_pod_specs(parse_manifests(render.read_text())):
            assert restricted_violations(spec) == [], f"{name} in {render.name}"
            checked += 1
    assert checked > 0
