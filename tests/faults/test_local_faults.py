"""Faults, in local mode: the chart's processes (Redis, gateway, Celery-Sum's io and sim workers)
running for real on loopback, and things going wrong under them. No mocks.

- the sim worker dies in the middle of a sim (its pool process alone, as the OOM killer does;
  or its whole process group, as a deleted pod): the sim still completes exactly once;
- Redis restarts with sims queued: they survive (appendonly) and complete;
- the webserver is down while a result is pushed: it arrives once the webserver is back.

Timings are shortened through the chart's own knobs: a 4 s sim_time_limit, and
`celery.visibilityTimeout: 20` in the values. The chart, like the runtime, requires the
visibility timeout above each worker's longest *hard* time limit: the longer of the sim and
inputs (10 s) time limits, plus a grace period and the result PUT's worst case (121 s with the
defaults). So the values shorten those two as well (`celery.hardTimeLimitGraceSeconds` and
`callback`), and the chart hands them to the workers as environment, as it would in a cluster.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from helpers import REPO
from runtime.support import (
    RecordingWebserver,
    child_pids,
    free_port,
    wait_until,
    wait_until_nothing_can_deliver_again,
)

from cs_cluster.local import LocalCluster, RunningProcess

pytestmark = pytest.mark.slow

TOKEN = "faults-api-token-1234"
GATEWAY_TOKEN = "faults-gateway-token-5678"
MODEL = "/cs-examples/Celery-Sum"
SIM_QUEUE = "csexamples_celerysum_queue"
SIM_TIME_LIMIT = 4
VISIBILITY_TIMEOUT = 20
# Longest hard limit (a parse's): 10 s + 1 s grace + PUT worst case (waits 0.25 + 0.5 + 1 + 1,
# five 1 s requests) = 18.75 s, below the 20 s visibility timeout.
FAST_VALUES = {
    "celery": {"visibilityTimeout": VISIBILITY_TIMEOUT, "hardTimeLimitGraceSeconds": 1},
    "callback": {"attempts": 5, "backoffSeconds": 0.25, "backoffMaxSeconds": 1, "timeoutSeconds": 1},
}
FAST_WORKER_ENV = {
    "CS_HARD_TIME_LIMIT_GRACE_SECONDS": "1",
    "CS_CALLBACK_ATTEMPTS": "5",
    "CS_CALLBACK_BACKOFF_SECONDS": "0.25",
    "CS_CALLBACK_BACKOFF_MAX_SECONDS": "1",
    "CS_CALLBACK_TIMEOUT_SECONDS": "1",
}


def write_config(directory: Path) -> Path:
    config = [
        {
            "owner": "cs-examples",
            "title": "Celery-Sum",
            "branch": "main",
            "repo_url": str(REPO / "examples" / "models" / "celery-sum"),
            "cluster_type": "single-core",
            "replicas": 1,
            "sim_time_limit": SIM_TIME_LIMIT,
            "resources": {"requests": {"cpu": "500m", "memory": "256M"}, "limits": {"cpu": 1, "memory": "512M"}},
            "env": {"BUILD_NUM": 0},
        }
    ]
    path = directory / "worker_config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def cluster(webserver: RecordingWebserver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    config = write_config(tmp_path_factory.mktemp("faults"))
    # celery.visibilityTimeout is the chart value every process gets as CELERY_VISIBILITY_TIMEOUT;
    # the hard time limits' inputs reach the workers as CS_HARD_TIME_LIMIT_GRACE_SECONDS, CS_CALLBACK_*.
    local = LocalCluster(config, port=free_port(), comp_url=webserver.url, comp_api_token=TOKEN,
                         gateway_token=GATEWAY_TOKEN, values=FAST_VALUES,
                         log=lambda message: None)  # fmt: skip
    local.start()
    try:
        yield local
    finally:
        local.stop()


def process(cluster: LocalCluster, component: str) -> RunningProcess:
    (running,) = [running for running in cluster.running if running.spec.component == component]
    return running


def request(cluster: LocalCluster, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{cluster.gateway_port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {GATEWAY_TOKEN}"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310 - loopback only
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def submit(cluster: LocalCluster, sleep: float = 0) -> str:
    status, body = request(
        cluster, "POST", f"{MODEL}/sim/", {"meta_param_dict": {}, "adjustment": {"sum": {"sleep": sleep}}}
    )
    assert status == 200, body
    return str(body["job_id"])


def job_status(cluster: LocalCluster, job_id: str) -> str:
    status, body = request(cluster, "GET", f"{MODEL}/query/{job_id}/")
    assert status == 200, body
    return str(body["status"])


def puts_for(webserver: RecordingWebserver, job_id: str) -> list[Any]:
    return [put for put in webserver.puts if put.body.get("job_id") == job_id]


def assert_exactly_one_success(cluster: LocalCluster, webserver: RecordingWebserver, job_id: str,
                               timeout: float) -> None:
    put = webserver.put_for(job_id, timeout=timeout)
    assert put.path == "/outputs/api/" and put.body["status"] == "SUCCESS", put.body
    # No copy left that Redis could hand out again, now or after a visibility timeout.
    wait_until_nothing_can_deliver_again(redis_client(cluster), job_id, [SIM_QUEUE], timeout=VISIBILITY_TIMEOUT,
                                         prefix=key_prefix(cluster))
    assert [p.body["status"] for p in puts_for(webserver, job_id)] == ["SUCCESS"]


def redis_client(cluster: LocalCluster) -> redis.Redis:
    """Redis, as the model's workers reach it: their own ACL user, limited to the model's keys."""
    environment = process(cluster, "model-sim").spec.environment
    return redis.Redis(host="127.0.0.1", port=int(environment["REDIS_PORT"]), username=environment["REDIS_USERNAME"],
                       password=environment["REDIS_PASSWORD"])


def key_prefix(cluster: LocalCluster) -> str:
    """The prefix of the model's Redis keys (its workers' CS_REDIS_KEY_PREFIX)."""
    return process(cluster, "model-sim").spec.environment["CS_REDIS_KEY_PREFIX"]


def test_the_rendered_workers_got_the_short_timings(cluster: LocalCluster) -> None:
    for component in ("model-io", "model-sim", "gateway"):
        assert process(cluster, component).spec.environment["CELERY_VISIBILITY_TIMEOUT"] == str(VISIBILITY_TIMEOUT)
    sim = process(cluster, "model-sim").spec.environment
    assert sim["SIM_TIME_LIMIT"] == str(SIM_TIME_LIMIT)
    assert {name: sim[name] for name in FAST_WORKER_ENV} == FAST_WORKER_ENV


def test_results_reach_a_webserver_that_was_down_when_they_were_pushed(
    cluster: LocalCluster, webserver: RecordingWebserver
) -> None:
    sim = process(cluster, "model-sim")
    with webserver.down():
        job_id = submit(cluster)
        wait_until(lambda: f"job {job_id}: PUT to {webserver.url}/outputs/api/ failed (attempt 2"
                   in sim.log_path.read_text(errors="replace"), 30, "two failed PUTs")  # fmt: skip
        assert puts_for(webserver, job_id) == []
    assert_exactly_one_success(cluster, webserver, job_id, timeout=15)


def test_a_sim_whose_pool_process_is_killed_completes_once(
    cluster: LocalCluster, webserver: RecordingWebserver
) -> None:
    """The OOM killer's case: the pool process dies, the main worker process lives and gives the
    message back to the queue at once (task_reject_on_worker_lost)."""
    sim = process(cluster, "model-sim")
    job_id = submit(cluster, sleep=3)
    wait_until(lambda: job_status(cluster, job_id) == "STARTED", 30, "the sim to start")
    (pool_process,) = child_pids(sim.process.pid)
    os.kill(pool_process, signal.SIGKILL)
    assert_exactly_one_success(cluster, webserver, job_id, timeout=30)
    assert "WorkerLostError" in sim.log_path.read_text(errors="replace")


def test_a_sim_whose_whole_worker_is_killed_completes_once_after_a_restart(
    cluster: LocalCluster, webserver: RecordingWebserver
) -> None:
    """A deleted pod or lost node: the worker's whole process group dies with the message
    unacknowledged; Redis hands it out again once it is older than the visibility timeout, to the
    restarted worker."""
    sim = process(cluster, "model-sim")
    job_id = submit(cluster, sleep=3)
    wait_until(lambda: job_status(cluster, job_id) == "STARTED", 30, "the sim to start")
    started = time.monotonic()  # the message was delivered just before this
    os.killpg(sim.process.pid, signal.SIGKILL)
    sim.process.wait(timeout=10)
    # Restart once the message's visibility timeout has passed: the new worker restores it when
    # it connects (each consumer restores what is older than its timeout).
    time.sleep(max(0.0, started + VISIBILITY_TIMEOUT + 1 - time.monotonic()))
    assert puts_for(webserver, job_id) == []  # killed before it could deliver anything
    restarted = cluster.restart(sim.spec.name)
    assert restarted.process.pid != sim.process.pid
    assert_exactly_one_success(cluster, webserver, job_id, timeout=30)
    assert job_status(cluster, job_id) == "SUCCESS"


def test_sims_queued_across_a_redis_restart_complete(cluster: LocalCluster, webserver: RecordingWebserver) -> None:
    sim, broker = process(cluster, "model-sim"), process(cluster, "redis")
    os.killpg(sim.process.pid, signal.SIGTERM)  # no sim worker: what is sent stays queued
    sim.process.wait(timeout=30)
    job_ids = [submit(cluster) for _ in range(3)]
    client = redis_client(cluster)
    queue = key_prefix(cluster) + SIM_QUEUE
    assert client.llen(queue) == 3

    os.killpg(broker.process.pid, signal.SIGTERM)  # Redis writes its appendonly file and exits
    broker.process.wait(timeout=30)
    status, body = request(cluster, "POST", f"{MODEL}/sim/", {"meta_param_dict": {}, "adjustment": {}})
    assert status == 503 and "cannot reach Redis" in body["error"]
    cluster.restart(broker.spec.name)  # same port, same config, same data directory
    assert client.llen(queue) == 3

    cluster.restart(sim.spec.name)
    for job_id in job_ids:
        assert_exactly_one_success(cluster, webserver, job_id, timeout=30)
    # The processes that stayed up reconnected: the io worker answers, the gateway sends again.
    wait_until(lambda: request(cluster, "POST", f"{MODEL}/version/", {})[0] == 200, 60, "the io worker")
    assert_exactly_one_success(cluster, webserver, submit(cluster), timeout=30)
    assert cluster.exited() == []


def test_after_all_that_every_process_runs_the_rendered_command(cluster: LocalCluster) -> None:
    """Restarted processes run the chart's command and environment, like the rest, and all live."""
    assert cluster.exited() == []
    assert len(cluster.running) == 4  # redis, gateway, io and sim workers
    sim = process(cluster, "model-sim")
    assert sim.spec.command[sim.spec.command.index("--queues") + 1] == "csexamples_celerysum_queue"
    status, body = request(cluster, "POST", f"{MODEL}/inputs/", {})
    assert status == 200 and body["status"] == "SUCCESS"
