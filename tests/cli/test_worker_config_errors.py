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
    ("unknown resource", [seed(resources={"limits": {"cpus": 1}})],
     ["resources.limits.cpus", "is not a resource Kubernetes knows", "did you mean 'cpu'"]),
    ("title with a slash", [seed(title="OG/USA")], ["field 'title'", "'/'", "could never route"]),
    ("owner with a query mark", [seed(owner="PSL?models")], ["field 'owner'", "'?'", "could never route"]),
    ("no models", "[]\n", ["lists no models", "--allow-empty"]),
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


def schema_definition(name: str) -> dict[str, Any]:
    import yaml
    from helpers import CHART

    definition: dict[str, Any] = yaml.safe_load((CHART / "values.schema.yaml").read_text())["definitions"][name]
    return definition


def test_the_charts_schema_holds_the_configs_name_rules() -> None:
    """One rule in two places (the worker_config reader gives the better message): the same text."""
    from cs_cluster.config import RESOURCE_NAME, UNROUTABLE_CHARACTERS

    assert schema_definition("resourceName")["pattern"] == RESOURCE_NAME.pattern
    assert schema_definition("routableName")["pattern"] == f"^[^{UNROUTABLE_CHARACTERS}]+$"


RESOURCE_NAMES = {"cpu": True, "memory": True, "ephemeral-storage": True, "hugepages-2Mi": True,
                  "nvidia.com/gpu": True, "example.org/fpga.x": True, "cpus": False, "CPU": False, "gpu": False,
                  "storage": False, "nvidia/gpu": False, "memory ": False}


@pytest.mark.parametrize("major", [3, 4], ids=["helm3", "helm4"])
@pytest.mark.parametrize(("resource", "known"), RESOURCE_NAMES.items(), ids=RESOURCE_NAMES.keys())
def test_resource_names_the_config_refuses_the_chart_refuses(major: int, resource: str, known: bool) -> None:
    """Kubernetes would reject a container asking for `cpus`; both refuse it first, with Go's and
    Python's regular expressions alike."""
    from helpers import model, values_with

    from cs_cluster import render_chart
    from cs_cluster.config import parse_worker_config
    from cs_cluster.errors import ConfigError, ValuesRefusedError
    from cs_cluster.helm import find_helm

    def config_accepts() -> bool:
        try:
            parse_worker_config([{"owner": "a", "title": "b", "resources": {"limits": {resource: 1}}}], "c.yaml")
        except ConfigError as error:
            assert f"resources.limits.{resource}" in str(error) and "nvidia.com/gpu" in str(error)
            return False
        return True

    def chart_accepts() -> bool:
        try:
            render_chart(values_with(model("a", "b", daskWorker={"resources": {"limits": {resource: 1}}})),
                         helm_binary=find_helm(major), validate=False)
        except ValuesRefusedError as error:
            assert resource.strip() in str(error)
            return False
        return True

    assert config_accepts() == chart_accepts() == known
