"""The chart refuses at render time what the runtime would refuse at start, by the same rule.

cs_runtime.settings is the source of those rules; each test here derives its expectation from the
runtime and checks the chart against it (tests/security/test_every_render.py does the same for
every render of the session).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from helpers import container, container_environment, model, runtime_settings, secrets_of, values_with

from cs_cluster import RenderedChart, render_chart
from cs_cluster.errors import ValuesRefusedError
from cs_runtime.errors import ConfigError as RuntimeConfigError
from cs_runtime.settings import GatewaySettings, WorkerSettings

FAST = {"celery": {"hardTimeLimitGraceSeconds": 1},
        "callback": {"attempts": 5, "backoffSeconds": 0.25, "backoffMaxSeconds": 1, "timeoutSeconds": 1}}
DECIMAL = {"celery": {"hardTimeLimitGraceSeconds": 0.3},
           "callback": {"attempts": 3, "backoffSeconds": 0.1, "backoffMaxSeconds": 0.2, "timeoutSeconds": 0.7}}
# (simTimeLimit, modelDefaults.inputsTimeLimit, other values)
CASES = {
    "defaults": (3600, 10, {}),
    "long sim": (43140, 10, {}),
    "short timings": (4, 10, FAST),
    "inputs longer than sims": (5, 60, FAST),
    "decimal knobs": (7, 10, DECIMAL),
    "one attempt": (100, 10, {"callback": {"attempts": 1}}),
}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in extra.items():
        result[key] = merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) \
            else value
    return result


def contract_values(sim_time_limit: int, inputs_time_limit: int, extra: dict[str, Any],
                    visibility_timeout: int) -> dict[str, Any]:
    values = values_with(model("a", "b", simTimeLimit=sim_time_limit),
                         modelDefaults={"inputsTimeLimit": inputs_time_limit})
    return merged(merged(values, extra), {"celery": {"visibilityTimeout": visibility_timeout}})


def worker_environments(chart: RenderedChart) -> Iterator[dict[str, str]]:
    secrets = secrets_of(chart)
    for component in ("model-io", "model-sim"):
        yield container_environment(container(chart.one("Deployment", component=component)), secrets)


@pytest.mark.parametrize(("sim_time_limit", "inputs_time_limit", "extra"), CASES.values(), ids=CASES.keys())
def test_visibility_timeout_is_refused_exactly_where_the_workers_refuse_it(
    sim_time_limit: int, inputs_time_limit: int, extra: dict[str, Any]
) -> None:
    """The boundary comes from the runtime: the longest hard time limit WorkerSettings computes
    from the rendered environment. At or below it the chart refuses; one second above, it renders
    and every worker starts."""
    roomy = render_chart(contract_values(sim_time_limit, inputs_time_limit, extra, 10**7), validate=False)
    boundary = max(WorkerSettings.from_env(env).longest_hard_time_limit() for env in worker_environments(roomy))

    refused = math.floor(boundary)
    with pytest.raises(ValuesRefusedError, match=rf"models\.a-b: simTimeLimit {sim_time_limit} .*"
                                                 rf"celery\.visibilityTimeout {refused} must be above it"):
        render_chart(contract_values(sim_time_limit, inputs_time_limit, extra, refused), validate=False)
    for env in worker_environments(roomy):
        with pytest.raises(RuntimeConfigError, match="CELERY_VISIBILITY_TIMEOUT"):
            WorkerSettings.from_env({**env, "CELERY_VISIBILITY_TIMEOUT": str(refused)})

    accepted = render_chart(contract_values(sim_time_limit, inputs_time_limit, extra, refused + 1), validate=False)
    for env in worker_environments(accepted):
        assert WorkerSettings.from_env(env).visibility_timeout == refused + 1


def test_the_issues_examples_are_refused() -> None:
    with pytest.raises(ValuesRefusedError, match=r"celery\.visibilityTimeout 3700 must be above it"):
        render_chart(values_with(model("a", "b"), celery={"visibilityTimeout": 3700}), validate=False)
    with pytest.raises(ValuesRefusedError, match=r"simTimeLimit 43140 .* 43261 s"):
        render_chart(values_with(model("a", "b", simTimeLimit=43140)), validate=False)


class RecordingEnvironment(Mapping[str, str]):
    """An environment that notes every variable read from it."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def variables_the_runtime_reads() -> set[str]:
    """Every variable WorkerSettings.from_env reads, for each role and cluster type."""
    read: set[str] = set()
    chart = render_chart(values_with(model("a", "b"), model("c", "d", "dask"),
                                     workerSecret={"values": {"COMP_URL": "http://web", "COMP_API_TOKEN": "t"}}),
                         validate=False)
    secrets = secrets_of(chart)
    for workload in chart.find("Deployment"):
        spec = container(workload)
        environment = RecordingEnvironment(container_environment(spec, secrets))
        if spec["command"][:1] == ["celery"]:
            WorkerSettings.from_env(environment)
            read |= environment.read
    return read


def test_model_secrets_cannot_set_what_the_chart_sets_for_the_runtime() -> None:
    """A model's secrets reach its workers by envFrom; a name the runtime reads or the chart sets
    there would change the workers behind the chart's checks (CS_MAX_DELIVERIES=0 stops them)."""
    chart = render_chart(values_with(model("a", "b", "dask")), validate=False)
    rendered = {item["name"] for component in ("model-io", "model-sim", "dask-worker")
                for item in container(chart.one("Deployment", component=component)).get("env", [])}
    reserved = variables_the_runtime_reads() | rendered
    assert {"CS_MAX_DELIVERIES", "CS_HEARTBEAT_INTERVAL_SECONDS", "OWNER", "REDIS_PASSWORD", "POD_NAME"} <= reserved
    secrets = dict.fromkeys(sorted(reserved), "1") | {"API_KEY": "fine"}
    with pytest.raises(ValuesRefusedError) as refusal:
        render_chart(values_with(model("a", "b", secrets={"values": secrets})), validate=False)
    listed = str(refusal.value).split("models.a-b.secrets.values: ", 1)[1].split(": the chart sets", 1)[0]
    assert set(listed.split(", ")) == reserved
    chart = render_chart(values_with(model("a", "b", secrets={"values": {"API_KEY": "fine", "MY_CS_KEY": "x"}})))
    assert secrets_of(chart)["release-a-b-secrets"] == {"API_KEY": "fine", "MY_CS_KEY": "x"}


@pytest.mark.parametrize(
    ("worker_secret", "starts"),
    [({"COMP_URL": "http://web"}, False), ({"COMP_URL": "http://web", "COMP_API_TOKEN": "t"}, True),
     ({"COMP_API_TOKEN": "t"}, True), ({"COMP_URL": " "}, True), ({}, True)],
    ids=["url without token", "both", "token only", "blank url", "none"],
)
def test_worker_secret_the_workers_refuse_is_refused(worker_secret: dict[str, str], starts: bool) -> None:
    values = values_with(model("a", "b"), workerSecret={"values": worker_secret})
    environment = {"OWNER": "a", "TITLE": "b", "CS_WORKER_ROLE": "sim", "CS_CLUSTER_TYPE": "celery",
                   "SIM_TIME_LIMIT": "60", "REDIS_HOST": "redis", **worker_secret}
    if starts:
        WorkerSettings.from_env(environment)
        for env in worker_environments(render_chart(values, validate=False)):
            assert WorkerSettings.from_env(env).comp_url == (worker_secret.get("COMP_URL", "").strip() or None)
    else:
        with pytest.raises(RuntimeConfigError, match="COMP_API_TOKEN"):
            WorkerSettings.from_env(environment)
        with pytest.raises(ValuesRefusedError, match="COMP_URL is set but COMP_API_TOKEN is not"):
            render_chart(values, validate=False)


def test_gateway_settings_build_from_the_rendered_gateway() -> None:
    chart = render_chart(values_with(model("a", "b")))
    gateway = container(chart.one("Deployment", component="gateway"))
    settings = runtime_settings(gateway, container_environment(gateway, secrets_of(chart)))
    assert isinstance(settings, GatewaySettings)
    assert settings.visibility_timeout == 43200
