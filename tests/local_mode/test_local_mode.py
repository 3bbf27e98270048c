"""End to end: `cs-cluster local up` on the example config, a stand-in webserver, real processes.

The cluster starts once for the module (about 15 s on 2 cores): Redis, the gateway, both example
models' Celery workers, and Dask-Pi's scheduler with two workers, all from the chart's render.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import EXAMPLE_CONFIG
from runtime.support import RecordingWebserver, free_port, wait_until

from cs_cluster.local import LocalCluster, port_is_open

pytestmark = pytest.mark.slow
TOKEN = "local-mode-token-4411"
GATEWAY_TOKEN = "gateway-token-5522"


def request(port: int, method: str, path: str, body: Any = None, token: str = GATEWAY_TOKEN) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310 - loopback only
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.fixture(scope="module")
def cluster(webserver: RecordingWebserver) -> Iterator[LocalCluster]:
    local = LocalCluster(EXAMPLE_CONFIG, port=free_port(), comp_url=webserver.url, comp_api_token=TOKEN,
                         gateway_token=GATEWAY_TOKEN, log=lambda message: None)
    local.start()
    yield local
    local.stop()


def test_inputs_and_version_answer_synchronously(cluster: LocalCluster) -> None:
    status, body = request(cluster.gateway_port, "POST", "/cs-examples/Celery-Sum/inputs", {})
    assert status == 200 and body["status"] == "SUCCESS", body
    assert "sum" in json.dumps(body)
    status, body = request(cluster.gateway_port, "POST", "/cs-examples/Dask-Pi/version", {})
    assert status == 200 and body["status"] == "SUCCESS", body
    assert "1.0.0" in json.dumps(body)


def submit(cluster: LocalCluster, model: str, adjustment: dict[str, Any]) -> str:
    status, body = request(cluster.gateway_port, "POST", f"/cs-examples/{model}/sim",
                           {"meta_param_dict": {}, "adjustment": adjustment})
    assert status == 200, body
    assert set(body) >= {"job_id", "qlength"}
    return str(body["job_id"])


def test_celery_sim_is_pushed_to_the_webserver(cluster: LocalCluster, webserver: RecordingWebserver) -> None:
    job_id = submit(cluster, "Celery-Sum", {"sum": {"a": 40, "b": 2}})
    put = webserver.put_for(job_id, timeout=60)
    assert put.path.rstrip("/") == "/outputs/api"
    assert put.headers.get("Authorization") == f"Token {TOKEN}"
    assert put.body["status"] == "SUCCESS", put.body
    assert "42" in json.dumps(put.body["outputs"]["renderable"])
    # The worker stores the result as the task returns, just after the PUT: poll briefly.
    deadline = time.monotonic() + 10
    while (answer := request(cluster.gateway_port, "GET", f"/cs-examples/Celery-Sum/get/{job_id}"))[0] == 202:
        assert time.monotonic() < deadline, "the result never became retrievable"
        time.sleep(0.1)
    status, result = answer
    assert status == 200 and result["status"] == "SUCCESS"


def test_dask_sim_runs_on_more_than_one_worker(cluster: LocalCluster, webserver: RecordingWebserver) -> None:
    job_id = submit(cluster, "Dask-Pi", {"pi": {"n_chunks": 16, "samples_per_chunk": 20000}})
    put = webserver.put_for(job_id, timeout=120)
    assert put.body["status"] == "SUCCESS", put.body
    chunks_csv = put.body["outputs"]["downloadable"][0]["data"]
    workers = {line.split(",")[1] for line in chunks_csv.strip().splitlines()[1:]}
    assert len(workers) >= 2, chunks_csv


def test_a_failing_model_reports_fail_with_traceback(cluster: LocalCluster, webserver: RecordingWebserver) -> None:
    job_id = submit(cluster, "Celery-Sum", {"sum": {"fail": True}})
    put = webserver.put_for(job_id, timeout=60)
    assert put.body["status"] == "FAIL"
    assert "run_model failed on purpose" in put.body["traceback"]


def test_parse_is_pushed_to_the_inputs_endpoint(cluster: LocalCluster, webserver: RecordingWebserver) -> None:
    status, body = request(cluster.gateway_port, "POST", "/cs-examples/Celery-Sum/parse",
                           {"meta_param_dict": {}, "adjustment": {"sum": {"a": "x"}}, "errors_warnings": {}})
    assert status == 200, body
    put = webserver.put_for(body["job_id"], timeout=60)
    assert put.path.rstrip("/") == "/inputs/api"
    assert put.body["status"] == "SUCCESS"
    assert "a must be a number" in json.dumps(put.body)


def test_the_gateway_wants_its_token(cluster: LocalCluster) -> None:
    status, _ = request(cluster.gateway_port, "POST", "/cs-examples/Celery-Sum/version", {}, token="wrong")
    assert status == 401


def test_unknown_model_is_404(cluster: LocalCluster) -> None:
    status, body = request(cluster.gateway_port, "POST", "/nobody/Nothing/sim", {"meta_param_dict": {},
                                                                                 "adjustment": {}})
    assert (status, body) == (404, {"error": "unknown model nobody/Nothing (looked up as 'nobody-nothing')"})


def test_every_process_shares_the_rendered_settings(cluster: LocalCluster) -> None:
    """Local mode ran what the chart renders: same queues, same env names, one process per replica."""
    names = [running.spec.name for running in cluster.running]
    assert names.count("redis") == 1
    assert len([n for n in names if "dask-worker" in n]) == 2
    for running in cluster.running:
        if running.spec.component in ("model-io", "model-sim"):
            queue = running.spec.command[running.spec.command.index("--queues") + 1]
            slug_key = running.spec.environment["OWNER"].replace("-", "").lower()
            assert queue.startswith(slug_key)
            assert running.spec.environment["COMP_API_TOKEN"] == TOKEN


def test_cli_up_says_ready_and_stops_clean_on_sigterm(tmp_path: Path) -> None:
    """The CLI in the foreground: a `ready` line, then SIGTERM ends every process and port."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "cs_cluster", "local", "up", "--config", str(EXAMPLE_CONFIG),
                                "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "ready" in line, line + (process.stderr.read() if process.poll() is not None else "")
        # The generated token is not printed, but kept in a private file the line names.
        token_file = Path(line.rsplit(" ", 1)[1].rstrip(")\n"))
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        token = token_file.read_text().strip()
        assert token and token not in line
        assert request(port, "GET", "/health")[0] == 200
        assert request(port, "POST", "/cs-examples/Celery-Sum/version", {}, token=token)[0] == 200
        children = _descendants(process.pid)
        assert len(children) >= 10
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    time.sleep(0.5)
    alive = [pid for pid in children if _alive(pid)]
    assert alive == [], alive
    assert not port_is_open(port)


def _descendants(root: int) -> list[int]:
    """Every process below `root`, whatever session it started (from /proc, no psutil needed)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        current = frontier.pop()
        children = [pid for pid, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_models_redis_credentials_reach_only_its_own_keys(
    cluster: LocalCluster, webserver: RecordingWebserver
) -> None:
    """The chart's Redis, as rendered (its ACL users built from the users Secret at start), with
    each model's workers as the model's own user (issue 10, item 15): from Celery-Sum's credentials
    Dask-Pi's queues, unacknowledged messages, results and channels are refused; the gateway,
    Redis's default user, runs both models' jobs."""
    import redis

    job_ids = {model: submit(cluster, model, adjustment) for model, adjustment in
               (("Celery-Sum", {"sum": {"a": 1, "b": 2}}), ("Dask-Pi", {"pi": {"n_chunks": 2}}))}
    for job_id in job_ids.values():
        assert webserver.put_for(job_id, timeout=120).body["status"] == "SUCCESS"

    def env(model: str) -> dict[str, str]:
        running = next(r for r in cluster.running if r.spec.component == "model-sim"
                       and r.spec.environment["TITLE"] == model)
        return running.spec.environment

    mine, theirs = env("Celery-Sum"), env("Dask-Pi")
    assert (mine["REDIS_USERNAME"], mine["CS_REDIS_KEY_PREFIX"]) == ("model-csexamples_celerysum",
                                                                    "csexamples_celerysum:")
    assert mine["REDIS_PASSWORD"] != theirs["REDIS_PASSWORD"]
    as_celery_sum = redis.Redis(host="127.0.0.1", port=int(mine["REDIS_PORT"]), username=mine["REDIS_USERNAME"],
                                password=mine["REDIS_PASSWORD"])
    prefix, other = mine["CS_REDIS_KEY_PREFIX"], theirs["CS_REDIS_KEY_PREFIX"]
    assert as_celery_sum.exists(f"{prefix}celery-task-meta-{job_ids['Celery-Sum']}") == 1
    attempts = {
        "pop the other model's sim queue": lambda: as_celery_sum.rpop(f"{other}csexamples_daskpi_queue"),
        "queue work for it": lambda: as_celery_sum.lpush(f"{other}csexamples_daskpi_queue", "x"),
        "read its unacknowledged messages": lambda: as_celery_sum.hgetall(f"{other}unacked"),
        "read its result": lambda: as_celery_sum.get(f"{other}celery-task-meta-{job_ids['Dask-Pi']}"),
        "publish on its channels": lambda: as_celery_sum.publish(f"{other}celery-task-meta-x", "x"),
        "read unprefixed keys": lambda: as_celery_sum.hgetall("unacked"),
        "list all keys": lambda: as_celery_sum.keys("*"),
        "log in with the other model's password": lambda: redis.Redis(
            host="127.0.0.1", port=int(mine["REDIS_PORT"]), username=mine["REDIS_USERNAME"],
            password=theirs["REDIS_PASSWORD"]).ping(),
    }
    allowed = []
    for what, attempt in attempts.items():
        try:
            attempt()
            allowed.append(what)
        except (redis.exceptions.NoPermissionError, redis.exceptions.AuthenticationError):
            pass
    assert allowed == []


def test_redis_takes_a_model_user_added_or_removed_without_a_restart(
    cluster: LocalCluster, webserver: RecordingWebserver
) -> None:
    """A model added to (or removed from) the release changes the users Secret's files in the Redis
    pod, not the pod: the chart's Redis command applies them within seconds (ACL SETUSER/DELUSER),
    and connected workers of other models stay connected."""
    import redis

    users = cluster.state_dir / "redis" / "users"  # where the users Secret is mounted, here
    port = int(next(r for r in cluster.running if r.spec.component == "model-sim").spec.environment["REDIS_PORT"])
    redis_process = next(r for r in cluster.running if r.spec.component == "redis").process

    def login_works() -> bool:
        try:
            return bool(redis.Redis(host="127.0.0.1", port=port, username="model-cstests_added",
                                    password="added-password-0123").ping())
        except redis.exceptions.AuthenticationError:
            return False

    assert not login_works()
    (users / "cstests_added").write_text("added-password-0123")  # as the kubelet updates the volume
    try:
        wait_until(login_works, 30, "Redis to add the new model's user")
        added = redis.Redis(host="127.0.0.1", port=port, username="model-cstests_added",
                            password="added-password-0123")
        assert added.set("cstests_added:probe", "x") is True
        with pytest.raises(redis.exceptions.NoPermissionError):
            added.get("csexamples_celerysum:unacked")
    finally:
        (users / "cstests_added").unlink()
    wait_until(lambda: not login_works(), 30, "Redis to remove the user")
    assert redis_process.poll() is None  # never restarted
    job_id = submit(cluster, "Celery-Sum", {"sum": {"a": 2, "b": 2}})
    assert webserver.put_for(job_id, timeout=60).body["status"] == "SUCCESS"
