"""Settings come from the chart's environment; a missing variable is named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from cs_runtime.errors import ConfigError
from cs_runtime.settings import CallbackPolicy, GatewaySettings, WorkerSettings, redis_url

WORKER_ENV = {
    "REDIS_HOST": "redis",
    "REDIS_PORT": "6380",
    "REDIS_DB": "2",
    "REDIS_PASSWORD": "p@ss:w/rd",
    "OWNER": "PSLmodels",
    "TITLE": "OG-USA",
    "CS_WORKER_ROLE": "sim",
    "CS_CLUSTER_TYPE": "dask",
    "SIM_TIME_LIMIT": "3600",
    "DASK_SCHEDULER_ADDRESS": "tcp://scheduler:8786",
    "COMP_URL": "https://compute.studio/",
    "COMP_API_TOKEN": "secret-token",
}


def test_redis_url_percent_encodes_the_password() -> None:
    assert redis_url(WORKER_ENV) == "redis://:p%40ss%3Aw%2Frd@redis:6380/2"
    assert redis_url({"REDIS_HOST": "localhost"}) == "redis://localhost:6379/0"
    assert redis_url({"REDIS_HOST": "localhost", "REDIS_PASSWORD": ""}) == "redis://localhost:6379/0"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "REDIS_HOST is required"),
        ({"REDIS_HOST": "r", "REDIS_PORT": "x"}, "REDIS_PORT must be an integer"),
        ({"REDIS_HOST": "r", "REDIS_DB": "-1"}, "REDIS_DB must be a database number"),
    ],
)
def test_redis_url_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        redis_url(env)


def test_worker_settings_from_the_chart_env() -> None:
    settings = WorkerSettings.from_env(WORKER_ENV)
    assert settings.names.key == "pslmodels_ogusa"
    assert (settings.role, settings.cluster_type) == ("sim", "dask")
    assert settings.sim_time_limit == 3600
    assert settings.inputs_time_limit == 10  # C/S's default
    assert settings.comp_url == "https://compute.studio"
    assert settings.dask_scheduler_address == "tcp://scheduler:8786"


def test_secrets_stay_out_of_repr() -> None:
    text = repr(WorkerSettings.from_env(WORKER_ENV))
    assert "secret-token" not in text
    assert "p@ss" not in text and "p%40ss" not in text
    gateway = GatewaySettings.from_env(
        {"REDIS_HOST": "r", "REDIS_PASSWORD": "pw1234", "CS_ROUTING_TABLE": "/r.json", "CS_GATEWAY_TOKEN": "gw-token"}
    )
    assert "pw1234" not in repr(gateway) and "gw-token" not in repr(gateway)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"OWNER": ""}, "OWNER is required"),
        ({"TITLE": None}, "TITLE is required"),
        ({"SIM_TIME_LIMIT": None}, "SIM_TIME_LIMIT is required"),
        ({"SIM_TIME_LIMIT": "soon"}, "SIM_TIME_LIMIT must be a number"),
        ({"INPUTS_TIME_LIMIT": "0"}, "INPUTS_TIME_LIMIT must be a positive number"),
        ({"CS_WORKER_ROLE": "driver"}, "CS_WORKER_ROLE must be one of io, sim"),
        ({"CS_CLUSTER_TYPE": "spark"}, "CS_CLUSTER_TYPE must be one of celery, dask"),
        ({"DASK_SCHEDULER_ADDRESS": None}, "DASK_SCHEDULER_ADDRESS is required by the sim worker"),
        ({"COMP_API_TOKEN": None}, "COMP_API_TOKEN is required when COMP_URL is set"),
        ({"CS_CALLBACK_ATTEMPTS": "0"}, "CS_CALLBACK_ATTEMPTS must be at least 1"),
    ],
)
def test_worker_settings_errors_name_the_variable(change: dict[str, str | None], message: str) -> None:
    env = dict(WORKER_ENV)
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    with pytest.raises(ConfigError, match=message):
        WorkerSettings.from_env(env)


def test_io_worker_of_a_dask_model_needs_no_scheduler_and_single_core_means_celery() -> None:
    env = {k: v for k, v in WORKER_ENV.items() if k != "DASK_SCHEDULER_ADDRESS"}
    assert WorkerSettings.from_env({**env, "CS_WORKER_ROLE": "io"}).cluster_type == "dask"
    assert WorkerSettings.from_env({**env, "CS_CLUSTER_TYPE": "single-core"}).cluster_type == "celery"


def test_without_comp_url_results_stay_in_the_backend() -> None:
    env = {k: v for k, v in WORKER_ENV.items() if k not in ("COMP_URL", "COMP_API_TOKEN")}
    assert WorkerSettings.from_env(env).comp_url is None


def test_callback_backoff_is_exponential_and_bounded() -> None:
    policy = CallbackPolicy(attempts=6, backoff_seconds=1, backoff_max_seconds=5, request_timeout_seconds=2)
    assert [policy.delay_before(n) for n in range(1, 7)] == [0, 1, 2, 4, 5, 5]
    assert policy.worst_case_seconds() == 17 + 6 * 2
    env = {"CS_CALLBACK_ATTEMPTS": "3", "CS_CALLBACK_BACKOFF_SECONDS": "0.5"}
    assert CallbackPolicy.from_env(env) == CallbackPolicy(attempts=3, backoff_seconds=0.5)


def test_gateway_settings() -> None:
    env = {
        "REDIS_HOST": "r",
        "CS_ROUTING_TABLE": "/etc/cs-workers/routes/routes.json",
        "CS_GATEWAY_MAX_BODY_BYTES": "2048",
    }
    settings = GatewaySettings.from_env(env)
    assert settings.routing_table_path == Path("/etc/cs-workers/routes/routes.json")
    assert settings.token is None
    assert settings.max_body_bytes == 2048
    with pytest.raises(ConfigError, match="CS_ROUTING_TABLE is required"):
        GatewaySettings.from_env({"REDIS_HOST": "r"})


def test_visibility_timeout_is_the_charts_global_value() -> None:
    settings = WorkerSettings.from_env({**WORKER_ENV, "CELERY_VISIBILITY_TIMEOUT": "43200"})
    assert settings.visibility_timeout == 43200
    assert WorkerSettings.from_env(WORKER_ENV).visibility_timeout is None  # unset: derived (worker_app)
    gateway_env = {"REDIS_HOST": "r", "CS_ROUTING_TABLE": "/r.json", "CELERY_VISIBILITY_TIMEOUT": "60"}
    gateway = GatewaySettings.from_env(gateway_env)
    assert gateway.visibility_timeout == 60


def test_a_sim_hard_time_limit_at_or_over_the_visibility_timeout_refuses_to_start() -> None:
    # SIM_TIME_LIMIT 3600 + 30 s grace + 91 s of result delivery (the defaults) = 3721 s.
    settings = WorkerSettings.from_env(WORKER_ENV)
    assert settings.hard_time_limit(3600) == settings.longest_hard_time_limit() == 3600 + 30 + 91
    assert settings.hard_time_limit(10, delivers=False) == 40
    assert WorkerSettings.from_env({**WORKER_ENV, "CELERY_VISIBILITY_TIMEOUT": "3722"}).visibility_timeout == 3722
    for too_short in ("3721", "3600", "60"):
        with pytest.raises(ConfigError, match=r"CELERY_VISIBILITY_TIMEOUT \(\d+ s\) must be above .*3721 s"):
            WorkerSettings.from_env({**WORKER_ENV, "CELERY_VISIBILITY_TIMEOUT": too_short})
    with pytest.raises(ConfigError, match="CELERY_VISIBILITY_TIMEOUT must be a positive number"):
        WorkerSettings.from_env({**WORKER_ENV, "CELERY_VISIBILITY_TIMEOUT": "-1"})
    # The io worker restores sims' messages too (the unacknowledged set is global): same check.
    with pytest.raises(ConfigError, match="CELERY_VISIBILITY_TIMEOUT"):
        WorkerSettings.from_env({**WORKER_ENV, "CS_WORKER_ROLE": "io", "CELERY_VISIBILITY_TIMEOUT": "3600"})
    # A parse holds its message too: with a short sim, the inputs time limit is the longest.
    short_sim = {**WORKER_ENV, "SIM_TIME_LIMIT": "4", "CELERY_VISIBILITY_TIMEOUT": "130"}
    with pytest.raises(ConfigError, match=r"\(131 s: INPUTS_TIME_LIMIT 10 s \+ 30 s grace \+ up to 91 s"):
        WorkerSettings.from_env(short_sim)


def test_heartbeat_and_delivery_settings() -> None:
    settings = WorkerSettings.from_env(WORKER_ENV)
    assert (settings.heartbeat_file, settings.heartbeat_interval_seconds, settings.max_deliveries) == (None, 10, 3)
    env = {**WORKER_ENV, "CS_HEARTBEAT_FILE": "/tmp/cs-worker-heartbeat", "CS_HEARTBEAT_INTERVAL_SECONDS": "2",
           "CS_MAX_DELIVERIES": "5"}  # fmt: skip
    settings = WorkerSettings.from_env(env)
    assert settings.heartbeat_file == Path("/tmp/cs-worker-heartbeat")
    assert (settings.heartbeat_interval_seconds, settings.max_deliveries) == (2, 5)
    with pytest.raises(ConfigError, match="CS_MAX_DELIVERIES must be at least 1"):
        WorkerSettings.from_env({**WORKER_ENV, "CS_MAX_DELIVERIES": "0"})
