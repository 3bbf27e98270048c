"""Runs after the other test folders: every render the session made passes checkov and the
restricted standard, and the runtime accepts the environment of each of its gateway and worker
containers (renders are kept through CS_RECORD_RENDERS_DIR, see tests/conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import EXAMPLE_CONFIG, REPO, container_environment, runtime_settings, secrets_of

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


def _shape(obj: dict) -> str:
    """An object as checkov judges it: generated Secret values do not change the verdict."""
    if obj.get("kind") == "Secret":
        obj = {**obj, "data": dict.fromkeys(obj.get("data") or {}, "")}
    return json.dumps(obj, sort_keys=True)


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every distinct object of every render, in a few files: renders repeat most objects, and
    checkov's time grows with what it reads."""
    # At least the example, when this file runs alone.
    Cluster(EXAMPLE_CONFIG, tag="v1", project="cs-test", previous=None).template()
    unique: dict[str, dict] = {}
    for render in Path(os.environ["CS_RECORD_RENDERS_DIR"]).glob("*.yaml"):
        for obj in parse_manifests(render.read_text()):
            unique.setdefault(_shape(obj), obj)
    directory = tmp_path_factory.mktemp("unique-objects")
    objects = list(unique.values())
    for start in range(0, len(objects), 200):
        (directory / f"objects-{start // 200:03d}.yaml").write_text(yaml.safe_dump_all(objects[start:start + 200]))
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
    summary = "; ".join(sorted(set(failed))[:10])
    assert failed == [], f"{len(failed)} failed checks across {count} files of distinct objects: {summary}"
    assert passed > 0


def test_restricted_standard_holds_in_every_render(renders: Path) -> None:
    """Every distinct pod spec the session rendered."""
    checked = 0
    for render in sorted(renders.glob("*.yaml")):
        for name, spec in workload_pod_specs(parse_manifests(render.read_text())):
            assert restricted_violations(spec) == [], f"{name} in {render.name}"
            checked += 1
    assert checked > 0


def test_runtime_starts_with_the_environment_of_every_rendered_container() -> None:
    """The chart/runtime contract on every render: what the chart rendered, the runtime accepts at
    start (cs_runtime.settings is the source of its rules; the chart refuses at render time
    whatever the runtime would refuse). Each container's environment is built as Kubernetes
    builds it, from that render's own Secrets."""
    from cs_runtime.errors import ConfigError as RuntimeConfigError

    Cluster(EXAMPLE_CONFIG, tag="v1", project="cs-test", previous=None).template()
    seen: set[str] = set()
    kinds: set[str] = set()
    for render in Path(os.environ["CS_RECORD_RENDERS_DIR"]).glob("*.yaml"):
        objects = parse_manifests(render.read_text())
        secrets = secrets_of(objects)
        for obj in objects:
            if obj.get("kind") != "Deployment":
                continue
            for spec in obj["spec"]["template"]["spec"]["containers"]:
                environment = container_environment(spec, secrets)
                key = json.dumps([spec.get("command"), environment], sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    settings = runtime_settings(spec, environment)
                except RuntimeConfigError as error:
                    pytest.fail(f"{obj['metadata']['name']} in {render.name}: the runtime refuses to start: {error}")
                if settings is not None:
                    kinds.add(type(settings).__name__)
    assert kinds == {"GatewaySettings", "WorkerSettings"}
