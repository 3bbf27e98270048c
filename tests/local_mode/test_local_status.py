"""`cs-cluster local status` against a real `local up` of the example (real Redis, gateway, Celery
and Dask processes) and the stand-in webserver: pods ready from the chart's readiness probes,
sims queued and running and the last result from the gateway's `/load`, Redis by PING, and the
exit status when something is down. The same report from a cluster: tests/cluster/test_status.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import EXAMPLE_CONFIG, cs_cluster
from runtime.support import free_port, wait_until

from cs_cluster.local import LocalCluster
from cs_cluster.standin import StandInWebserver
from cs_cluster.status_local import state_path

pytestmark = pytest.mark.slow
API_TOKEN = "status-api-token-7781"
GATEWAY_TOKEN = "status-gateway-token-9931"


@pytest.fixture(scope="module")
def webserver() -> Iterator[StandInWebserver]:
    server = StandInWebserver(token=API_TOKEN).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(webserver: StandInWebserver) -> Iterator[LocalCluster]:
    local = LocalCluster(EXAMPLE_CONFIG, port=free_port(), comp_url=webserver.url, comp_api_token=API_TOKEN,
                         gateway_token=GATEWAY_TOKEN, log=lambda message: None)
    local.start()
    yield local
    local.stop()


def status(cluster: LocalCluster, *options: str) -> tuple[int, Any]:
    """`cs-cluster local status --output json` in a new process, as a user runs it: (exit, JSON)."""
    result = cs_cluster("local", "status", "--port", str(cluster.gateway_port), "--output", "json", *options)
    assert result.stderr == "", result.stderr
    return result.returncode, json.loads(result.stdout)


def table(cluster: LocalCluster, *options: str) -> subprocess.CompletedProcess[str]:
    return cs_cluster("local", "status", "--port", str(cluster.gateway_port), *options)


def model(report: Any, name: str) -> Any:
    return next(entry for entry in report["models"] if entry["name"] == name)


def pods(report: Any, name: str) -> dict[str, str]:
    return {component: f"{p['ready']}/{p['desired']}" for component, p in model(report, name)["pods"].items()}


def submit(cluster: LocalCluster, adjustment: dict[str, Any]) -> str:
    """A Celery-Sum sim through the gateway; its job id."""
    body = json.dumps({"meta_param_dict": {}, "adjustment": {"sum": adjustment}}).encode()
    sim = urllib.request.Request(f"http://127.0.0.1:{cluster.gateway_port}/cs-examples/Celery-Sum/sim", data=body,
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {GATEWAY_TOKEN}"})
    with urllib.request.urlopen(sim, timeout=30) as response:  # noqa: S310 - loopback only
        return str(json.loads(response.read())["job_id"])


def process(cluster: LocalCluster, name: str) -> subprocess.Popen[bytes]:
    return next(running.process for running in cluster.running if running.spec.name == name)


def test_a_fresh_cluster_is_healthy_and_idle(cluster: LocalCluster) -> None:
    code, report = status(cluster)
    assert code == 0, report
    assert report["healthy"] is True
    assert pods(report, "cs-examples/Celery-Sum") == {"model-io": "1/1", "model-sim": "1/1"}
    assert pods(report, "cs-examples/Dask-Pi") == {"model-io": "1/1", "model-sim": "1/1", "dask-scheduler": "1/1",
                                                   "dask-worker": "2/2"}
    for name in ("cs-examples/Celery-Sum", "cs-examples/Dask-Pi"):
        assert model(report, name)["tags"] == ["local"]
        assert model(report, name)["load"] == {"queued": {"inputs": 0, "sim": 0},
                                               "running": {"inputs": 0, "sim": 0}, "last_result": None}
    assert (report["redis"]["healthy"], report["gateway"]["healthy"]) == (True, True)
    assert report["redis"]["detail"].startswith("PING answered")
    # The state file holds the gateway token and Redis's password: this user's only.
    assert oct(state_path(cluster.gateway_port).stat().st_mode & 0o777) == "0o600"
    assert oct(state_path(cluster.gateway_port).parent.stat().st_mode & 0o777) == "0o700"


def test_sims_show_queued_and_running_then_the_last_result(cluster: LocalCluster,
                                                           webserver: StandInWebserver) -> None:
    """Three slow sims on Celery-Sum's one sim worker: one runs while two wait; once the stand-in
    webserver has all three, none waits or runs and the last result is the third's."""
    jobs = [submit(cluster, {"a": number, "b": 1, "sleep": 3}) for number in range(3)]
    seen: list[tuple[int, int]] = []

    def one_runs_two_wait() -> bool:
        load = model(status(cluster)[1], "cs-examples/Celery-Sum")["load"]
        seen.append((load["queued"]["sim"], load["running"]["sim"]))
        return seen[-1] == (2, 1)

    wait_until(one_runs_two_wait, 15, f"2 sims queued and 1 running (seen {seen})")
    text = table(cluster).stdout
    row = next(line for line in text.splitlines() if line.startswith("cs-examples/Celery-Sum"))
    assert row.split()[5:8] == ["local", "2", "1"], text
    for job in jobs:
        assert webserver.wait_for(job, timeout=60).body["status"] == "SUCCESS"

    def idle() -> bool:
        load = model(status(cluster)[1], "cs-examples/Celery-Sum")["load"]
        return load["queued"]["sim"] == load["running"]["sim"] == 0 and bool(load["last_result"])

    wait_until(idle, 15, "the sims to be acknowledged")
    code, report = status(cluster)
    last = model(report, "cs-examples/Celery-Sum")["load"]["last_result"]
    assert (last["job_id"], last["status"], last["kind"], last["delivered"]) == (jobs[-1], "SUCCESS", "outputs", True)
    assert 0 <= last["age_seconds"] < 30
    assert code == 0 and model(report, "cs-examples/Dask-Pi")["load"]["last_result"] is None
    row = next(line for line in table(cluster).stdout.splitlines() if line.startswith("cs-examples/Celery-Sum"))
    assert " SUCCESS sim " in row + " ", row


def test_a_failed_sim_is_the_last_result(cluster: LocalCluster, webserver: StandInWebserver) -> None:
    job = submit(cluster, {"fail": True})
    assert webserver.wait_for(job, timeout=60).body["status"] == "FAIL"

    def reported() -> bool:
        last = model(status(cluster)[1], "cs-examples/Celery-Sum")["load"]["last_result"]
        return bool(last) and last["job_id"] == job
    wait_until(reported, 15, "the failed sim to be the last result")
    last = model(status(cluster)[1], "cs-examples/Celery-Sum")["load"]["last_result"]
    assert last["status"] == "FAIL"


def test_a_dead_dask_worker_makes_the_model_unhealthy(cluster: LocalCluster) -> None:
    name = "local-csexamples-daskpi-dask-worker-1"
    os.killpg(process(cluster, name).pid, signal.SIGKILL)
    process(cluster, name).wait(timeout=10)
    try:
        code, report = status(cluster)
        assert code == 3
        assert pods(report, "cs-examples/Dask-Pi")["dask-worker"] == "1/2"
        assert model(report, "cs-examples/Dask-Pi")["problems"] == ["dask-worker 1/2 pods ready"]
        assert model(report, "cs-examples/Celery-Sum")["healthy"] is True
        text = table(cluster)
        assert text.returncode == 3
        assert "! cs-examples/Dask-Pi: dask-worker 1/2 pods ready" in text.stdout.splitlines()
        assert text.stdout.splitlines()[-1].startswith("Unhealthy: 2 model(s), 1 healthy;")
    finally:
        cluster.restart(name)
    wait_until(lambda: status(cluster)[0] == 0, 60, "the restarted Dask worker to be ready")


def test_a_worker_whose_heartbeat_stops_is_not_ready(cluster: LocalCluster) -> None:
    """The chart's readiness probe of Celery workers (the heartbeat file's age) is what decides:
    a worker stopped (SIGSTOP), its heartbeat made older than the probe's limit, is not ready."""
    name = "local-csexamples-celerysum-io-0"
    worker = process(cluster, name)
    heartbeat = cluster.state_dir / "heartbeats" / name
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        old = time.time() - 121
        os.utime(heartbeat, (old, old))
        code, report = status(cluster)
        assert code == 3
        assert pods(report, "cs-examples/Celery-Sum")["model-io"] == "0/1"
    finally:
        os.killpg(worker.pid, signal.SIGCONT)
    os.utime(heartbeat)
    assert status(cluster)[0] == 0


def test_without_the_gateway_the_pods_are_still_reported(cluster: LocalCluster) -> None:
    name = "local-gateway-0"
    os.killpg(process(cluster, name).pid, signal.SIGKILL)
    process(cluster, name).wait(timeout=10)
    try:
        text = table(cluster)
        assert text.returncode == 3
        lines = text.stdout.splitlines()
        row = next(line for line in lines if line.startswith("cs-examples/Dask-Pi"))
        assert row.split()[1:] == ["1/1", "1/1", "1/1", "2/2", "local", "?", "?", "?"], text.stdout
        gateway = next(line for line in lines if line.startswith("Gateway:"))
        assert gateway.startswith("Gateway: UNHEALTHY (0/1 pods ready;") and "/load did not answer" in gateway
        assert next(line for line in lines if line.startswith("Redis:")).startswith("Redis: healthy")
        code, report = status(cluster)
        assert (code, report["gateway"]["healthy"], report["models"][0]["load"]) == (3, False, None)
    finally:
        cluster.restart(name)
    assert status(cluster)[0] == 0


def test_models_selects_and_a_wrong_name_is_one_line(cluster: LocalCluster) -> None:
    code, report = status(cluster, "--models", "Celery-Sum")
    assert code == 0 and [m["name"] for m in report["models"]] == ["cs-examples/Celery-Sum"]
    wrong = table(cluster, "--models", "celery-sum")
    assert (wrong.returncode, wrong.stdout) == (2, "")
    assert wrong.stderr == ("cs-cluster: error: --models 'celery-sum' matches no model in the local cluster "
                            "(did you mean 'Celery-Sum'?)\n")


def test_no_local_cluster_on_the_port_is_one_line() -> None:
    port = free_port()
    result = cs_cluster("local", "status", "--port", str(port))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"cs-cluster: error: no local cluster on port {port}: ")
    assert len(result.stderr.splitlines()) == 1
