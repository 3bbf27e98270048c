"""`cs-cluster plan --offline`: the chart rendered for the previous values file against the new
values, with no cluster at all (the kubeconfig points nowhere). The same plan against a live
release is tested on the control plane (tests/cluster/test_plan.py)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import EXAMPLE_CONFIG, cs_cluster, write_config

from cs_cluster.objectdiff import diff

SECRET, NEW_SECRET = "first-s3cret-value", "second-s3cret-value"


def example_with(**changes: Any) -> list[dict[str, Any]]:
    models = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    for entry in models:
        entry["repo_url"] = str(EXAMPLE_CONFIG.parent / entry["repo_url"])
    for key, value in changes.items():
        models[0][key] = value
    return models


def plan(tmp_path: Path, config: Path, *options: str, tag: str = "v1") -> Any:
    no_cluster = {**os.environ, "KUBECONFIG": str(tmp_path / "no-kubeconfig")}
    return cs_cluster("plan", "--config", config, "--tag", tag, "--project", "cs-test", "--offline",
                      "--values-file", tmp_path / "values.yaml", *options, env=no_cluster)


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    """The values file (and secrets file) of a previous apply of the example with a model secret."""
    config = write_config(tmp_path, example_with(secrets={"API_KEY": SECRET}))
    written = cs_cluster("values", "--config", config, "--tag", "v1", "--project", "cs-test",
                         "-o", tmp_path / "values.yaml")
    assert written.returncode == 0, written.stderr
    return tmp_path / "values.yaml"


CASES = {
    "no-op": dict(changes={"secrets": {"API_KEY": SECRET}}, options=[], code=0, lines=[]),
    "one-model tag bump": dict(changes={"secrets": {"API_KEY": SECRET}}, options=["--models", "Celery-Sum"],
                               tag="v2", code=2,
                               lines=["~ cs-examples/Celery-Sum: pods roll (model-io, model-sim): image tag v1 -> v2"]),
    "resources": dict(changes={"secrets": {"API_KEY": SECRET},
                               "resources": {"requests": {"cpu": 1, "memory": "256M"}}}, options=[], code=2,
                      # Without a limit the chart limits to the request: limits.cpu stays 1.
                      lines=["~ cs-examples/Celery-Sum: pods roll (model-sim): model-sim limits.memory 512M -> 256M; "
                             "model-sim requests.cpu 500m -> 1"]),
    "secret value": dict(changes={"secrets": {"API_KEY": NEW_SECRET}}, options=[], code=2,
                         lines=["~ cs-examples/Celery-Sum: no pods roll: secret "
                                "cs-workers-csexamples-celerysum-secrets key API_KEY changed (pods see it when they "
                                "restart)"]),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_offline_plan(tmp_path: Path, previous: Path, case: str) -> None:
    spec = CASES[case]
    config = write_config(tmp_path, example_with(**spec["changes"]), "next.yaml")
    before = {path: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    result = plan(tmp_path, config, *spec["options"], tag=spec.get("tag", "v1"))
    assert result.returncode == spec["code"], result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Comparing with the chart rendered for {previous}, {tmp_path / 'values.secrets.yaml'} " \
                       "(--offline)."
    assert [line for line in lines if line[:2] in ("~ ", "+ ", "- ")] == spec["lines"]
    assert lines[-2] == "Capacity: not checked (--offline: no cluster to read nodes from)."
    assert lines[-1].startswith("No changes" if spec["code"] == 0 else "Plan: ")
    # A plan writes nothing and shows no secret value, plain or as the Secret holds it.
    assert {path: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == before
    for value in (SECRET, NEW_SECRET):
        for shown in (value, base64.b64encode(value.encode()).decode()):
            assert shown not in result.stdout + result.stderr


def test_offline_plan_as_json(tmp_path: Path, previous: Path) -> None:
    config = write_config(tmp_path, example_with(secrets={"API_KEY": NEW_SECRET}, replicas=3), "next.yaml")
    result = plan(tmp_path, config, "--output", "json")
    assert result.returncode == 2, result.stderr
    found = json.loads(result.stdout)
    assert found["changed"] is True and found["capacity"]["checked"] is False
    assert found["summary"] == {"add": 0, "change": 1, "destroy": 0, "unchanged": 1, "pods_roll": []}
    celery = next(m for m in found["models"] if m["name"] == "cs-examples/Celery-Sum")
    assert celery["action"] == "update" and celery["pods_roll"] is False
    assert {c["category"] for c in celery["changes"]} == {"replicas", "secrets"}
    assert NEW_SECRET not in result.stdout and SECRET not in result.stdout


@pytest.mark.parametrize(("before", "after", "paths"), [
    ({"requests": {"cpu": 1}}, {"requests": {"cpu": "1"}}, []),
    ({"requests": {"cpu": "1"}}, {"requests": {"cpu": "1000m"}}, []),
    ({"limits": {"memory": "1Gi"}}, {"limits": {"memory": "1073741824"}}, []),
    ({"limits": {"memory": "1G"}}, {"limits": {"memory": "1Gi"}}, ["limits.memory"]),
    ({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
     {"env": [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}, ["env[C]"]),
    ({"replicas": 1}, {"replicas": True}, ["replicas"]),
], ids=["int-and-string", "millicores", "bytes", "decimal-and-binary", "named-list-insert", "type-change"])
def test_differences_are_the_ones_the_cluster_sees(before: dict[str, Any], after: dict[str, Any],
                                                   paths: list[str]) -> None:
    assert [change.dotted for change in diff(before, after)] == paths
