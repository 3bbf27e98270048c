"""Jobs whose worker process dies: at the hard time limit, or killed (out of memory) again and
again. Real workers with the chart's command, real Redis, the stand-in webserver."""

from __future__ import annotations

import os
import signal
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cs_runtime.deliveries import counter_key
from cs_runtime.names import ModelNames

from .support import (
    CELERY_SUM_CONFIG,
    UNACKED_KEY,
    RecordingWebserver,
    RedisServer,
    child_pids,
    copies_of_job,
    start_worker,
    wait_until,
    wait_until_nothing_can_deliver_again,
    worker_env,
)

pytestmark = pytest.mark.slow

STUBBORN = ModelNames("cs-tests", "Stubborn")
REDELIVERY = ModelNames("cs-tests", "Redelivery")

# A model whose run_model swallows SoftTimeLimitExceeded and goes on: only the hard time limit
# (Celery killing the pool process) ends it.
STUBBORN_FUNCTIONS = """
import time


def get_version():
    return "0.0.1"


def get_inputs(meta_param_dict):
    return {"meta_parameters": {}, "model_parameters": {}}


def validate_inputs(meta_param_dict, adjustment, errors_warnings):
    return {"errors_warnings": {}}


def run_model(meta_param_dict, adjustment):
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            time.sleep(0.1)
        except BaseException:
            pass
"""


def stubborn_model(directory: Path) -> Path:
    package = directory / "stubborn-cs-config" / "cs_config"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "functions.py").write_text(textwrap.dedent(STUBBORN_FUNCTIONS))
    return package.parent


def puts_for(webserver: RecordingWebserver, job_id: str) -> list[Any]:
    return [put for put in webserver.puts if put.body.get("job_id") == job_id]


def test_a_sim_killed_at_its_hard_time_limit_is_put_as_fail(
    redis_server: RedisServer, webserver: RecordingWebserver, client: Any, tmp_path: Path
) -> None:
    # Hard limit: 1 s + 1 s grace + the PUT's worst case (waits 0.2 + 0.4, three 1 s requests) = 5.6 s.
    env = worker_env(STUBBORN, "sim", "celery", stubborn_model(tmp_path), redis_server, COMP_URL=webserver.url,
                     SIM_TIME_LIMIT="1", CS_HARD_TIME_LIMIT_GRACE_SECONDS="1", CS_CALLBACK_ATTEMPTS="3",
                     CS_CALLBACK_TIMEOUT_SECONDS="1")  # fmt: skip
    worker = start_worker(STUBBORN, "sim", env, tmp_path)
    try:
        worker.wait_ready()
        job_id = str(uuid.uuid4())
        started = time.monotonic()
        pending = client.send_task(STUBBORN.task("sim"), args=[job_id, {}, {}], queue=STUBBORN.sim_queue,
                                   task_id=job_id)  # fmt: skip
        put = webserver.put_for(job_id, timeout=30)
        assert 5.6 <= time.monotonic() - started < 20
        assert put.path == "/outputs/api/"
        assert put.body["status"] == "FAIL" and put.body["job_id"] == job_id
        assert put.body["traceback"].startswith("TimeLimitExceeded:")
        assert "Hard time limit (5.6s) exceeded" in worker.log()
        # The gateway's `get` sees the failure Celery stored.
        with pytest.raises(Exception, match="TimeLimitExceeded"):
            pending.get(timeout=10)
        # Acknowledged, not redelivered; and told once.
        wait_until_nothing_can_deliver_again(redis_server.client(), job_id, [STUBBORN.sim_queue], timeout=30)
        assert int(redis_server.client().get(counter_key(job_id)) or 0) == 1
        assert len(puts_for(webserver, job_id)) == 1
        assert worker.process.poll() is None  # the main process lives on
    finally:
        worker.stop()


def test_a_sim_that_kills_its_worker_every_time_is_failed_after_max_deliveries(
    redis_server: RedisServer, webserver: RecordingWebserver, client: Any, tmp_path: Path
) -> None:
    """The OOM killer takes the pool process on each delivery; the message comes back each time
    (acks_late + reject_on_worker_lost), and after CS_MAX_DELIVERIES it is answered FAIL."""
    env = worker_env(REDELIVERY, "sim", "celery", CELERY_SUM_CONFIG, redis_server, COMP_URL=webserver.url,
                     CS_MAX_DELIVERIES="2")  # fmt: skip
    worker = start_worker(REDELIVERY, "sim", env, tmp_path)
    redis = redis_server.client()
    try:
        worker.wait_ready()
        job_id = str(uuid.uuid4())
        started = time.monotonic()
        pending = client.send_task(REDELIVERY.task("sim"), args=[job_id, {}, {"sum": {"sleep": 60}}],
                                   queue=REDELIVERY.sim_queue, task_id=job_id)  # fmt: skip
        for delivery in (1, 2):
            wait_until(lambda d=delivery: int(redis.get(counter_key(job_id)) or 0) == d, 20, f"delivery {delivery}")
            (pool_process,) = child_pids(worker.process.pid)
            os.kill(pool_process, signal.SIGKILL)
        put = webserver.put_for(job_id, timeout=30)
        assert put.body["status"] == "FAIL" and put.body["job_id"] == job_id
        assert put.body["traceback"].startswith("WorkerLostError:")
        assert "died 2 times" in put.body["traceback"] and "CS_MAX_DELIVERIES" in put.body["traceback"]
        assert pending.get(timeout=10) == put.body  # the same envelope for the gateway's `get`
        assert time.monotonic() - started < 30  # the third delivery did not run the 60 s model
        assert int(redis.get(counter_key(job_id)) or 0) == 3
        assert 0 < redis.ttl(counter_key(job_id)) <= 7 * 86400
        assert f"job {job_id}: delivery 2 of at most 2" in worker.log()
        wait_until_nothing_can_deliver_again(redis, job_id, [REDELIVERY.sim_queue], timeout=30)
        assert len(puts_for(webserver, job_id)) == 1
    finally:
        worker.stop()


def test_a_copy_left_to_deliver_is_found(redis_server: RedisServer) -> None:
    """The exactly-once checks above rest on copies_of_job: a waiting or unacknowledged message
    of the job is found, another job's is not."""
    client, job_id, queue = redis_server.client(), str(uuid.uuid4()), "cs-tests-copies"
    message = f'{{"headers": {{"id": "{job_id}"}}}}'
    assert copies_of_job(client, job_id, [queue]) == []
    client.rpush(queue, f'{{"headers": {{"id": "{uuid.uuid4()}"}}}}', message)
    assert copies_of_job(client, job_id, [queue]) == [f"queue {queue}"]
    client.delete(queue)
    client.hset(UNACKED_KEY, "tag-1", f"[{message}, \"\", \"{queue}\"]")
    try:
        assert copies_of_job(client, job_id, [queue]) == ["unacked b'tag-1'"]
    finally:
        client.hdel(UNACKED_KEY, "tag-1")
