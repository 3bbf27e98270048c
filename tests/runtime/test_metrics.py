"""Prometheus metrics (issue 14): the gateway under gunicorn with the chart's command and a sim worker,
with the chart's metrics environment, against real Redis; what Prometheus would scrape from each."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cs_runtime import metrics
from cs_runtime.names import ModelNames

from .support import (
    CELERY_SUM_CONFIG,
    RedisServer,
    free_port,
    route_entry,
    start_worker,
    wait_until,
    worker_env,
    write_routes,
)

pytestmark = pytest.mark.slow

MODEL = ModelNames("cs-metrics", "Sum")
TOKEN = "metrics-test-token"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def chart_gateway_command(port: int) -> list[str]:
    """The gateway's command as the chart renders it with metrics.enabled, on a loopback port."""
    from cs_cluster import render_chart

    chart = render_chart({"modelImages": {"project": "p"}, "metrics": {"enabled": True}}, validate=False)
    deployment = chart.one("Deployment", component="gateway")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/metrics" and env["CS_METRICS_PORT"] == "9090"
    command = list(container["command"])
    command[:1] = [sys.executable, "-m", "gunicorn"]
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    return command


@pytest.fixture
def gateway(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The gateway under gunicorn (two workers), serving metrics on a port of its own."""
    port, metrics_port = free_port(), free_port()
    routes = write_routes(tmp_path / "routes.json", route_entry(MODEL, sim_time_limit=30))
    directory = tmp_path / "gateway-metrics"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"left by a container that restarted")
    env = {key: value for key, value in os.environ.items() if not key.startswith("CS_")}
    env.update(redis_server.env(), CS_ROUTING_TABLE=str(routes), CS_GATEWAY_TOKEN=TOKEN,
               CS_METRICS_PORT=str(metrics_port), PROMETHEUS_MULTIPROC_DIR=str(directory))
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(chart_gateway_command(port), env=env, cwd=tmp_path, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        def answers() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok and bool(scrape(metrics_port))
            except requests.RequestException:
                return False

        wait_until(answers, 30, f"gunicorn to answer /health and /metrics:\n{log_path.read_text()}", interval=0.2)
        assert not (directory / "counter_999999.db").exists()
        yield f"http://127.0.0.1:{port}", metrics_port
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_gateway_and_worker_metrics(gateway: tuple[str, int], redis_server: RedisServer, tmp_path: Path) -> None:
    base, gateway_metrics = gateway
    worker_metrics = free_port()
    # Results go to a port nobody listens on: every PUT fails, so retries and failures count.
    env = worker_env(MODEL, "sim", "celery", CELERY_SUM_CONFIG, redis_server, COMP_URL=f"http://127.0.0.1:{free_port()}",
                     CS_CALLBACK_ATTEMPTS="3", CS_METRICS_PORT=str(worker_metrics),
                     PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "worker-metrics"))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{base}/{MODEL.owner}/{MODEL.title}"
    # Queued before any worker runs: the gateway reads the queue's length at the scrape.
    jobs = [requests.post(f"{url}/sim/", json={"meta_param_dict": {}, "adjustment": adjustment}, headers=headers,
                          timeout=10).json()["job_id"] for adjustment in ({"sum": {"a": 1}}, {"sum": {"fail": True}})]
    samples = scrape(gateway_metrics)
    assert value(samples, "cs_jobs_submitted_total", model=MODEL.slug, kind="sim") == 2
    assert value(samples, "cs_jobs_queued", model=MODEL.slug, queue=MODEL.sim_queue) == 2
    assert value(samples, "cs_jobs_queued", model=MODEL.slug, queue=MODEL.inputs_queue) == 0

    worker = start_worker(MODEL, "sim", env, tmp_path)
    try:
        worker.wait_ready()
        for job_id in jobs:
            wait_until(lambda job_id=job_id: requests.get(f"{url}/get/{job_id}/", headers=headers,
                                                           timeout=5).status_code == 200, 60, f"job {job_id}")
        # The task ends after its result's last PUT attempt; then it is counted.
        def counted() -> Samples | None:
            found = scrape(worker_metrics)
            return found if value(found, "cs_job_duration_seconds_count", model=MODEL.slug, kind="sim") == 2 else None

        samples = wait_until(counted, 30, "both sims counted")
    finally:
        worker.stop()
    labels = {"model": MODEL.slug, "kind": "sim"}
    assert value(samples, "cs_jobs_finished_total", **labels, status="SUCCESS") == 1
    assert value(samples, "cs_jobs_finished_total", **labels, status="FAIL") == 1
    assert value(samples, "cs_jobs_running", **labels) == 0
    assert value(samples, "cs_result_push_retries_total", **labels) == 4  # 2 per result: 3 attempts
    assert value(samples, "cs_result_push_failures_total", **labels) == 2
    assert 0 < samples[("cs_job_duration_seconds_sum", frozenset(labels.items()))] < 60
    assert value(scrape(gateway_metrics), "cs_jobs_queued", model=MODEL.slug, queue=MODEL.sim_queue) == 0
    # What the dashboard and the docs name is what is served.
    served = {name for name, _ in samples} | {name for name, _ in scrape(gateway_metrics)}
    assert served >= metrics.EXPORTED_NAMES, metrics.EXPORTED_NAMES - served


def test_a_running_job_counts_until_it_ends() -> None:
    labels = ("cs-tests-running", "sim")
    with metrics.job(*labels) as finished:
        assert metrics.RUNNING.labels(*labels)._value.get() == 1
        time.sleep(0.01)
        finished("SUCCESS")
    assert metrics.RUNNING.labels(*labels)._value.get() == 0
    assert metrics.FINISHED.labels(*labels, "SUCCESS")._value.get() == 1
    assert metrics.DURATION.labels(*labels)._sum.get() >= 0.01


def test_the_metrics_port_is_checked() -> None:
    assert metrics.metrics_port({}) is None and metrics.metrics_port({"CS_METRICS_PORT": "9090"}) == 9090
    with pytest.raises(ValueError, match="not a port"):
        metrics.metrics_port({"CS_METRICS_PORT": "70000"})
