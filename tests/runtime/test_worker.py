"""The Celery workers, run with the chart's command and environment, against real Redis.

Tasks are sent by name to the contract's queues, as the gateway sends them.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cs_runtime.names import ModelNames

from .conftest import CELERY_SUM_SIM_TIME_LIMIT, ModelWorkers
from .support import (
    CELERY_SUM,
    CELERY_SUM_CONFIG,
    COMP_API_TOKEN,
    RecordingWebserver,
    RedisServer,
    start_worker,
    wait_until,
    worker_command,
    worker_env,
)

pytestmark = pytest.mark.slow


def send(client: Any, kind: str, *args: Any, job_id: str | None = None) -> Any:
    """Send a Celery-Sum task the way the gateway does."""
    queue = CELERY_SUM.queue_for(kind)  # type: ignore[arg-type]
    return client.send_task(CELERY_SUM.task(kind), args=list(args), queue=queue, task_id=job_id)  # type: ignore[arg-type]


def test_inputs_get_and_version(celery_sum_workers: ModelWorkers, client: Any) -> None:
    inputs = send(client, "inputs_get", {"precision": 3}).get(timeout=20)
    assert inputs["status"] == "SUCCESS"
    assert inputs["meta_parameters"]["precision"]["value"] == [{"value": 3}]
    assert "sum" in inputs["model_parameters"]
    assert isinstance(inputs["meta"]["task_times"][0], float)
    version = send(client, "inputs_version").get(timeout=20)
    assert (version["status"], version["version"]) == ("SUCCESS", "1.0.0")


def test_parse_result_is_returned_and_put_to_inputs_api(
    celery_sum_workers: ModelWorkers, client: Any, webserver: RecordingWebserver
) -> None:
    job_id = str(uuid.uuid4())
    result = send(client, "inputs_parse", job_id, {}, {"sum": {"a": "x"}}, {}, job_id=job_id).get(timeout=20)
    assert result["job_id"] == job_id and result["status"] == "SUCCESS"
    assert result["errors_warnings"]["sum"]["errors"] == {"a": ["a must be a number, got 'x'"]}
    put = webserver.put_for(job_id)
    assert put.path == "/inputs/api/"
    assert put.headers["Authorization"] == f"Token {COMP_API_TOKEN}"
    assert put.body == result


def test_sim_success_is_returned_and_put_to_outputs_api(
    celery_sum_workers: ModelWorkers, client: Any, webserver: RecordingWebserver
) -> None:
    job_id = str(uuid.uuid4())
    result = send(client, "sim", job_id, {}, {"sum": {"a": 40, "b": 2}}, job_id=job_id).get(timeout=20)
    assert result["status"] == "SUCCESS"
    assert result["model_version"] == "1.0.0"
    assert result["outputs"]["renderable"][0]["media_type"] == "table"
    assert result["outputs"]["downloadable"][0]["data"] == "a,b,sum\n40,2,42.0\n"
    put = webserver.put_for(job_id)
    assert put.path == "/outputs/api/" and put.body == result
    assert put.headers["Authorization"] == f"Token {COMP_API_TOKEN}"


def test_sim_failure_is_a_fail_envelope_with_the_traceback(
    celery_sum_workers: ModelWorkers, client: Any, webserver: RecordingWebserver
) -> None:
    job_id = str(uuid.uuid4())
    result = send(client, "sim", job_id, {}, {"sum": {"fail": True}}, job_id=job_id).get(timeout=20)
    assert result["status"] == "FAIL" and result["job_id"] == job_id
    assert "RuntimeError: run_model failed on purpose" in result["traceback"]
    assert webserver.put_for(job_id).body["status"] == "FAIL"


def test_sim_over_its_time_limit_fails_and_is_still_delivered(
    celery_sum_workers: ModelWorkers, client: Any, webserver: RecordingWebserver
) -> None:
    job_id = str(uuid.uuid4())
    started = time.monotonic()
    result = send(client, "sim", job_id, {}, {"sum": {"sleep": 60}}, job_id=job_id).get(timeout=30)
    assert result["status"] == "FAIL"
    assert "SoftTimeLimitExceeded" in result["traceback"]
    assert CELERY_SUM_SIM_TIME_LIMIT <= time.monotonic() - started < CELERY_SUM_SIM_TIME_LIMIT + 10
    assert webserver.put_for(job_id).body["status"] == "FAIL"


def test_result_put_is_retried_until_the_webserver_is_back(
    celery_sum_workers: ModelWorkers, client: Any, webserver: RecordingWebserver
) -> None:
    job_id = str(uuid.uuid4())
    with webserver.down():
        pending = send(client, "inputs_parse", job_id, {}, {}, {}, job_id=job_id)
        wait_until(
            lambda: (
                f"job {job_id}: PUT to {webserver.url}/inputs/api/ failed (attempt 2" in celery_sum_workers.io.log()
            ),
            20,
            "two failed delivery attempts",
        )
    put = webserver.put_for(job_id, timeout=20)
    assert put.path == "/inputs/api/" and put.body["status"] == "SUCCESS"
    assert pending.get(timeout=20)["job_id"] == job_id


def test_workers_never_log_the_api_token(celery_sum_workers: ModelWorkers, client: Any) -> None:
    send(client, "inputs_version").get(timeout=20)
    logs = celery_sum_workers.logs()
    assert "csexamples_celerysum_tasks.inputs_version" in logs  # the logs are the real ones
    assert COMP_API_TOKEN not in logs


def test_worker_without_owner_stops_with_a_message_naming_it(redis_server: RedisServer, tmp_path: Path) -> None:
    env = worker_env(CELERY_SUM, "io", "celery", CELERY_SUM_CONFIG, redis_server)
    del env["OWNER"]
    done = subprocess.run(
        worker_command(CELERY_SUM, "io"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "cs_runtime.worker: environment variable OWNER is required but not set" in done.stderr


def test_worker_without_its_model_stops_with_a_message(redis_server: RedisServer, tmp_path: Path) -> None:
    env = worker_env(CELERY_SUM, "io", "celery", tmp_path, redis_server)  # no cs_config there
    done = subprocess.run(
        worker_command(CELERY_SUM, "io"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "cannot import cs_config.functions" in done.stderr, done.stderr[-2000:]


MESSY = ModelNames("cs-tests", "Messy")
# A model that, asked to, changes everything a model can change in its process, and reports the
# state it found on each call. C/S models really do this (warnings.filterwarnings("error") in
# run_model); the worker must keep it to that call.
MESSY_FUNCTIONS = '''
import json
import logging
import os
import signal
import warnings

import requests


def state():
    return {
        "warnings as errors": any(entry[0] == "error" for entry in warnings.filters),
        "environment": os.environ.get("CS_TESTS_LEAK"),
        "working directory": os.getcwd(),
        "root handlers": len(logging.getLogger().handlers),
        "logging disabled": logging.root.manager.disable,
        "SIGTERM": str(signal.getsignal(signal.SIGTERM)),
        "requests patched": getattr(requests.Session.request, "patched", False),
        "json patched": getattr(json.dumps, "patched", False),
    }


def mess():
    def broken(*args, **kwargs):
        raise RuntimeError("patched by the model")

    broken.patched = True
    warnings.filterwarnings("error")
    os.environ["CS_TESTS_LEAK"] = "leaked"
    os.chdir("/")
    logging.getLogger().handlers.clear()
    logging.disable(logging.CRITICAL)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests.Session.request = broken
    json.dumps = broken


def get_version():
    return "1.0.0"


def get_inputs(meta_param_dict):
    return {"meta_parameters": {}, "model_parameters": {}}


def validate_inputs(meta_param_dict, adjustment, errors_warnings):
    found = state()
    if adjustment.get("mess"):
        mess()
    return {"errors_warnings": {"state": found}}


def run_model(meta_param_dict, adjustment):
    found = state()
    text = json.dumps(found)
    if adjustment.get("mess"):
        mess()
    return {"renderable": [{"media_type": "json", "title": "state", "data": text}], "downloadable": []}
'''


def test_what_a_model_changes_in_its_process_stays_in_that_call(
    redis_server: RedisServer, webserver: RecordingWebserver, client: Any, tmp_path: Path
) -> None:
    """Warnings filters, environment, working directory, logging, signal handlers and
    monkeypatched modules changed by one parse or sim reach neither the runtime's own work
    (storing the result, PUTting it) nor the next task (issue 10, item 7)."""
    import json
    import textwrap

    package = tmp_path / "messy-cs-config" / "cs_config"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "functions.py").write_text(textwrap.dedent(MESSY_FUNCTIONS))
    workers = {role: start_worker(MESSY, role, worker_env(MESSY, role, "celery", package.parent, redis_server,
                                                          COMP_URL=webserver.url), tmp_path)
               for role in ("io", "sim")}  # fmt: skip

    def sim(adjustment: dict[str, Any]) -> dict[str, Any]:
        job_id = str(uuid.uuid4())
        result = client.send_task(MESSY.task("sim"), args=[job_id, {}, adjustment], queue=MESSY.sim_queue,
                                  task_id=job_id).get(timeout=30)  # fmt: skip
        assert result["status"] == "SUCCESS", result.get("traceback")
        assert webserver.put_for(job_id).body == result  # delivered, though the model broke requests
        return json.loads(result["outputs"]["renderable"][0]["data"])

    def parse(adjustment: dict[str, Any]) -> dict[str, Any]:
        job_id = str(uuid.uuid4())
        result = client.send_task(MESSY.task("inputs_parse"), args=[job_id, {}, adjustment, {}],
                                  queue=MESSY.inputs_queue, task_id=job_id).get(timeout=30)  # fmt: skip
        assert result["status"] == "SUCCESS", result.get("traceback")
        assert webserver.put_for(job_id).body == result
        found: dict[str, Any] = result["errors_warnings"]["state"]
        return found

    try:
        for worker in workers.values():
            worker.wait_ready()
        clean = sim({})
        assert clean["warnings as errors"] is False and clean["environment"] is None
        assert clean["working directory"] == str(tmp_path) and clean["requests patched"] is False
        assert sim({"mess": True}) == clean  # what it found; then it changed everything
        assert sim({}) == clean, "the previous sim's changes reached this one"
        assert sim({}) == clean
        clean_parse = parse({})
        assert parse({"mess": True}) == clean_parse
        assert parse({}) == clean_parse, "the previous parse's changes reached this one"
        for worker in workers.values():
            assert worker.process.poll() is None
            assert "Traceback" not in worker.log(), worker.log()[-3000:]
    finally:
        for worker in workers.values():
            worker.stop()
