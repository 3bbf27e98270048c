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

from .conftest import CELERY_SUM_SIM_TIME_LIMIT, ModelWorkers
from .support import (
    CELERY_SUM,
    CELERY_SUM_CONFIG,
    COMP_API_TOKEN,
    RecordingWebserver,
    RedisServer,
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
