"""Builders shared by the test files: small values and configs, written the way users write them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "cs-workers"
EXAMPLE_CONFIG = REPO / "examples" / "worker_config.yaml"
SEED_MODEL = {
    "owner": "PSLmodels",
    "title": "OG-USA",
    "branch": "master",
    "cluster_type": "dask",
    "replicas": 2,
    "resources": {"requests": {"memory": "7G", "cpu": 2}, "limits": {"memory": "7G", "cpu": 2}},
    "env": {"BUILD_NUM": 0},
    "secrets": {},
}


def model(owner: str, title: str, cluster: str = "celery", tag: str = "v1", **settings: Any) -> dict[str, Any]:
    """A `models:` entry as `cs-cluster values` writes it."""
    entry: dict[str, Any] = {"owner": owner, "title": title, "clusterType": cluster, "image": {"tag": tag}}
    entry.update(settings)
    return entry


def values_with(*entries: dict[str, Any], **top: Any) -> dict[str, Any]:
    """Values with these model entries, keyed by slug, and a project so images have names."""
    from cs_cluster.names import model_slug

    values: dict[str, Any] = {"modelImages": {"project": "cs-test"}}
    values["models"] = {model_slug(e["owner"], e["title"]): e for e in entries}
    values.update(top)
    return values


def write_config(directory: Path, models: Any, name: str = "worker_config.yaml") -> Path:
    path = directory / name
    path.write_text(models if isinstance(models, str) else yaml.safe_dump(models, sort_keys=False))
    return path


def cs_cluster(*arguments: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a new process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "cs_cluster", *map(str, arguments)],
        capture_output=True, text=True, cwd=cwd, check=False, timeout=timeout, env=env,
    )


def container(workload: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def env_of(workload: dict[str, Any]) -> dict[str, Any]:
    """Container env by name: the plain value, or the valueFrom mapping."""
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(workload).get("env", [])}


def in_ci() -> bool:
    """CI=true is what GitHub Actions and our CI runner set; there every tool is installed."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def skip_or_fail(reason: str, *, skip_variable: str | None = None) -> NoReturn:
    """What a test does when a tool or service it needs is missing: never a silent pass in CI.

    In CI (`in_ci()`) it fails: ci/install-tools.sh installs everything the suite needs, so a
    missing tool there is a broken set-up. Elsewhere it skips with `reason`, so a developer's
    machine without, say, strace still runs the rest. With `skip_variable` (the control plane),
    failing is the default everywhere, and only `skip_variable=1` outside CI skips: a green run
    must not hide that the install, upgrade and uninstall tests never ran.
    """
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing tool fails the run instead of skipping)", pytrace=False)
    if skip_variable is not None and os.environ.get(skip_variable, "").strip() != "1":
        pytest.fail(f"{reason} (set {skip_variable}=1 or deselect with -m 'not cluster' to skip these tests)",
                    pytrace=False)
    pytest.skip(reason)
