"""Bad worker_configs: exit status 2, one line naming file, model and field, nothing written."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from helpers import SEED_MODEL, cs_cluster, write_config


def seed(**changes: Any) -> dict[str, Any]:
    entry = copy.deepcopy(SEED_MODEL)
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return entry


CASES: list[tuple[str, Any, list[str]]] = [
    ("not a list", {"owner": "a", "title": "b"}, ["must be a list of models"]),
    ("empty file", "", ["is empty"]),
    ("yaml syntax", "- owner: a\n  title: [b\n", ["YAML syntax error", "worker_config.yaml:"]),
    ("duplicate key", "- owner: a\n  owner: b\n  title: c\n", ["appears twice", "worker_config.yaml:2"]),
    ("entry not a mapping", ["just a string"], ["model #1", "must be a mapping"]),
    ("missing owner", [seed(owner=None)], ["model #1", "field 'owner'", "is required"]),
    ("missing title", [seed(title=None)], ["field 'title'", "is required"]),
    ("owner cleans to nothing", [seed(owner="--")], ["field 'owner'", "cleans to nothing"]),
    ("control characters", [seed(title="OG\rUSA\x7f")], ["field 'title'", "control characters", "OG\\rUSA"]),
    ("unknown cluster type", [seed(cluster_type="spark")], ["PSLmodels/OG-USA", "cluster_type", "use one of"]),
    ("negative replicas", [seed(replicas=-1)], ["field 'replicas'", "at least 0"]),
    ("fractional replicas", [seed(replicas=1.5)], ["field 'replicas'", "whole number"]),
    ("boolean replicas", [seed(replicas=True)], ["field 'replicas'", "whole number"]),
    ("bad quantity", [seed(resources={"limits": {"cpu": "two"}})], ["resources.limits.cpu", "not a quantity"]),
    ("milli memory", [seed(resources={"limits": {"memory": "500m"}})], ["resources.limits.memory", "Mi"]),
    ("requests above limits", [seed(resources={"requests": {"cpu": 4}, "limits": {"cpu": 2}})],
     ["resources.requests.cpu", "above limits.cpu"]),
    ("limit below the default request", [seed(resources={"limits": {"cpu": "500m"}})],
     ["requests.cpu is above limits.cpu", "the chart's default"]),
    ("unknown resources key", [seed(resources={"request": {"cpu": 1}})],
     ["resources.request", "did you mean 'requests'"]),
    ("duplicate model", [seed(), seed()], ["PSLmodels/OG-USA", "listed twice"]),
    ("names collide after cleaning", [seed(), seed(title="OGUSA")],
     ["collides with PSLmodels/OG-USA", "pslmodels-ogusa"]),
    ("unknown key", [seed(replica=2)], ["field 'replica'", "did you mean 'replicas'"]),
    ("secrets not flat", [seed(secrets={"A": {"nested": 1}})], ["secrets.A", "flat"]),
    ("secrets not a map", [seed(secrets=["A"])], ["field 'secrets'", "mapping"]),
    ("env not flat", [seed(env={"BUILD_NUM": [1]})], ["env.BUILD_NUM", "flat"]),
    ("bad env name", [seed(env={"1X": 1})], ["env.1X", "not a valid variable name"]),
    ("env value left empty", "- owner: a\n  title: b\n  env: {X: }\n", ["env.X", "has no value", "in quotes"]),
    ("secret value null", "- owner: a\n  title: b\n  secrets: {X: null}\n", ["secrets.X", "has no value"]),
    ("secret and secrets", [seed(secret={"A": "b"})], ["'secrets' or its old spelling 'secret'"]),
    ("sim_time_limit zero", [seed(sim_time_limit=0)], ["sim_time_limit", "at least 1"]),
    ("affinity unknown key", [seed(affinity={"zone": "a"})], ["affinity.zone", "only affinity key is 'size'"]),
    ("slug too long", [seed(title="x" * 80)], ["characters; Kubernetes labels allow 63"]),
    # What the chart refuses, `values` refuses (it renders the chart before writing anything).
    ("sim_time_limit the workers would refuse", [seed(sim_time_limit=43140)],
     ["the chart refuses the values", "models.pslmodels-ogusa: simTimeLimit 43140", "celery.visibilityTimeout 43200"]),
    ("sim_time_limit above the visibility timeout", [seed(sim_time_limit=50000)],
     ["the chart refuses the values", "simTimeLimit 50000", "longest hard time limit of 50121 s"]),
    ("secret the runtime reads", [seed(secrets={"CS_MAX_DELIVERIES": "0"})],
     ["models.pslmodels-ogusa.secrets.values: CS_MAX_DELIVERIES: the chart sets these for the runtime"]),
]


@pytest.mark.parametrize(("case", "content", "expected"), CASES, ids=[case[0] for case in CASES])
def test_bad_config_is_one_clear_line_and_writes_nothing(
    tmp_path: Path, case: str, content: Any, expected: list[str]
) -> None:
    config = write_config(tmp_path, content)
    output = tmp_path / "out" / "values.yaml"
    result = cs_cluster("values", "--config", config, "--tag", "t1", "--project", "p", "-o", output)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(f"cs-cluster: error: {config}")
    for text in expected:
        assert text in lines[0]
    assert not (tmp_path / "out").exists()


def test_missing_config_file(tmp_path: Path) -> None:
    result = cs_cluster("values", "--config", tmp_path / "nope.yaml", "--tag", "t", "--project", "p")
    assert result.returncode == 2
    assert result.stderr.strip() == f"cs-cluster: error: {tmp_path / 'nope.yaml'}: file not found"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--tag", "bad tag"], "is not a valid image tag"),
        (["--project", "Bad Project"], "is not a valid image path"),
        (["--models", "OG"], "matches no model"),
        (["--models", "og-usa"], "did you mean 'OG-USA'"),
    ],
)
def test_bad_options(tmp_path: Path, arguments: list[str], message: str) -> None:
    config = write_config(tmp_path, [seed()])
    options = {"--tag": "t1", "--project": "p"}
    for flag, value in zip(arguments[::2], arguments[1::2], strict=False):
        options[flag] = value
    flat = [item for pair in options.items() for item in pair]
    result = cs_cluster("values", "--config", config, *flat, "-o", tmp_path / "v.yaml")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "v.yaml").exists()
