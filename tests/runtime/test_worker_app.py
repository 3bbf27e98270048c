"""The Celery app's configuration, built in-process (no broker connection is made)."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any

from celery.worker.request import Request  # type: ignore[import-untyped]

from cs_runtime.model import ModelFunctions
from cs_runtime.settings import CallbackPolicy, WorkerSettings
from cs_runtime.worker_app import create_worker_app

SETTINGS = WorkerSettings(
    owner="PSLmodels",
    title="OG-USA",
    role="sim",
    cluster_type="celery",
    sim_time_limit=7200,
    inputs_time_limit=10,
    redis_url="redis://:pw@redis:6379/0",
    callback=CallbackPolicy(attempts=3, backoff_seconds=1, backoff_max_seconds=2, request_timeout_seconds=5),
    hard_limit_grace_seconds=30,
)


def model() -> ModelFunctions:
    module = types.ModuleType("model")
    for name in ("get_version", "get_inputs", "validate_inputs", "run_model"):
        setattr(module, name, lambda *args: None)
    return ModelFunctions.from_module(module)


def app() -> Any:
    return create_worker_app(SETTINGS, model())


def test_celery_settings_are_the_ones_cs_used() -> None:
    conf = app().conf
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_url == conf.result_backend == "redis://:pw@redis:6379/0"


def test_the_four_tasks_and_their_time_limits() -> None:
    tasks = app().tasks
    sim = tasks["pslmodels_ogusa_tasks.sim"]
    # The soft limit is the model's; the hard one adds the grace and the PUT's worst case
    # (waits 1 + 2, three requests of 5 s).
    assert (sim.soft_time_limit, sim.time_limit) == (7200, 7200 + 30 + 3 + 15)
    parse = tasks["pslmodels_ogusa_tasks.inputs_parse"]
    assert (parse.soft_time_limit, parse.time_limit) == (10, 10 + 30 + 18)
    for kind in ("inputs_get", "inputs_version"):  # nothing to PUT: no delivery budget
        task = tasks[f"pslmodels_ogusa_tasks.{kind}"]
        assert (task.soft_time_limit, task.time_limit) == (10, 40)


def test_unacknowledged_sims_are_not_redelivered_while_they_run() -> None:
    conf = app().conf
    assert conf.broker_transport_options["visibility_timeout"] > 7200 + 30 + 18
    assert conf.task_routes["pslmodels_ogusa_tasks.sim"] == {"queue": "pslmodels_ogusa_queue"}
    assert conf.task_routes["pslmodels_ogusa_tasks.inputs_parse"] == {"queue": "pslmodels_ogusa_inputs_queue"}


def test_the_charts_visibility_timeout_wins_over_the_derived_one() -> None:
    default = app().conf.broker_transport_options["visibility_timeout"]
    assert default == 7200 + 30 + 18 + 300  # no CELERY_VISIBILITY_TIMEOUT: derived from the limits
    chart = create_worker_app(dataclasses.replace(SETTINGS, visibility_timeout=43200), model())
    assert chart.conf.broker_transport_options["visibility_timeout"] == 43200


def test_parse_and_sim_tell_the_webserver_about_a_hard_time_limit() -> None:
    """Their Request class (main worker process) PUTs a FAIL when the pool process is killed."""
    tasks = app().tasks
    for kind in ("sim", "inputs_parse"):
        request_class = tasks[f"pslmodels_ogusa_tasks.{kind}"].Request
        assert isinstance(request_class, type) and issubclass(request_class, Request)
        assert request_class.on_timeout is not Request.on_timeout
    assert tasks["pslmodels_ogusa_tasks.inputs_get"].Request == "celery.worker.request:Request"


def test_the_heartbeat_bootstep_is_added_only_with_a_heartbeat_file(tmp_path: Path) -> None:
    def labels(settings: WorkerSettings) -> set[str]:
        return {getattr(step, "label", "") for step in create_worker_app(settings, model()).steps["worker"]}

    assert "cs-heartbeat" not in labels(SETTINGS)
    assert "cs-heartbeat" in labels(dataclasses.replace(SETTINGS, heartbeat_file=tmp_path / "beat"))
