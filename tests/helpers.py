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


def secrets_of(objects: Any) -> dict[str, dict[str, str]]:
    """The rendered Secrets' data, decoded, by name."""
    import base64

    return {o["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()}
            for o in objects if o.get("kind") == "Secret"}


def without_secret_values(manifests: str) -> list[dict[str, Any]]:
    """The rendered objects with each Secret's values left out (the chart generates passwords on
    every render), so that two renders of the same values compare equal."""
    from cs_cluster.render import parse_manifests

    return [{**o, "data": dict.fromkeys(o.get("data") or {})} if o["kind"] == "Secret" else o
            for o in parse_manifests(manifests)]


# What a secretKeyRef to a Secret the render does not hold (an existingSecret) stands for.
EXTERNAL_SECRET_VALUE = "from-a-secret-you-manage"


def container_environment(container_spec: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment Kubernetes gives a container of this render: envFrom first, then env (which
    wins); secretKeyRef reads the rendered Secrets. A key of a Secret the render does not hold gets
    a stand-in value when it is required and stays unset when optional."""
    environment: dict[str, str] = {}
    for source in container_spec.get("envFrom") or []:
        environment.update(secrets.get((source.get("secretRef") or {}).get("name", ""), {}))
    for item in container_spec.get("env") or []:
        if "value" in item:
            environment[item["name"]] = str(item["value"])
            continue
        reference = (item.get("valueFrom") or {}).get("secretKeyRef")
        if reference is None:
            environment[item["name"]] = "from-the-downward-api"
        elif reference["key"] in secrets.get(reference["name"], {}):
            environment[item["name"]] = secrets[reference["name"]][reference["key"]]
        elif reference["name"] not in secrets and not reference.get("optional"):
            environment[item["name"]] = EXTERNAL_SECRET_VALUE
    return environment


def runtime_settings(container_spec: dict[str, Any], environment: dict[str, str]) -> Any:
    """The runtime's settings, built as the container's process builds them at start (None for a
    container that runs no cs_runtime process); raises the runtime's ConfigError if it would refuse."""
    from cs_runtime.settings import GatewaySettings, WorkerSettings

    command = container_spec.get("command") or []
    if command[:3] == ["celery", "--app", "cs_runtime.worker:app"]:
        return WorkerSettings.from_env(environment)
    if command[:1] == ["gunicorn"] and "cs_runtime.gateway:create_app()" in command:
        return GatewaySettings.from_env(environment)
    return None
