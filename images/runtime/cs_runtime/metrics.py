"""Prometheus metrics of the gateway and the model workers (docs/runtime-contract.md, "Metrics").

Recorded always (cheap, in memory); served only where CS_METRICS_PORT is set (the chart sets it,
and PROMETHEUS_MULTIPROC_DIR, with metrics.enabled). The processes that do the work are not the
ones that can serve (gunicorn's workers, Celery's pool processes), so prometheus_client's
multiprocess mode is used: each process writes its samples to files under
PROMETHEUS_MULTIPROC_DIR, and one HTTP server per pod, in gunicorn's master (gunicorn_config.py)
or the Celery worker's main process (worker_app.py), serves them all at /metrics.

Every series carries `model`, the model's slug (`{clean(owner)}-{clean(title)}`, as the chart's
`compute.studio/model` label), and `kind`, the task (inputs_get, inputs_parse, inputs_version, sim).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

METRICS_PORT_VARIABLE: Final = "CS_METRICS_PORT"
MULTIPROCESS_DIRECTORY_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"

# Sims run from seconds to hours: buckets from 1 s to 12 h.
DURATION_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200)

SUBMITTED: Final = Counter("cs_jobs_submitted", "Jobs the gateway put on a model's queue.", ["model", "kind"])
RUNNING: Final = Gauge("cs_jobs_running", "Jobs a worker is running now.", ["model", "kind"],
                       multiprocess_mode="livesum")
FINISHED: Final = Counter("cs_jobs_finished", "Jobs a worker finished, by the envelope's status (SUCCESS, FAIL).",
                          ["model", "kind", "status"])
DURATION: Final = Histogram("cs_job_duration_seconds", "How long a worker took for a job, result delivery included.",
                            ["model", "kind"], buckets=DURATION_BUCKETS)
PUSH_RETRIES: Final = Counter("cs_result_push_retries", "Result PUTs to the webserver tried again after a failure.",
                              ["model", "kind"])
PUSH_FAILURES: Final = Counter("cs_result_push_failures",
                               "Results the webserver never accepted (all attempts failed, or it refused them).",
                               ["model", "kind"])
# Read from Redis at each scrape by the gateway (QueueCollector).
QUEUED_NAME: Final = "cs_jobs_queued"

# The names a scrape shows (counters and histograms with their suffixes), for the dashboard's test.
EXPORTED_NAMES: Final = frozenset({
    "cs_jobs_submitted_total", "cs_jobs_running", "cs_jobs_finished_total", "cs_job_duration_seconds_bucket",
    "cs_job_duration_seconds_count", "cs_job_duration_seconds_sum", "cs_result_push_retries_total",
    "cs_result_push_failures_total", QUEUED_NAME,
})


def metrics_port(env: dict[str, str] | None = None) -> int | None:
    """CS_METRICS_PORT, or None where metrics are not served."""
    value = (os.environ if env is None else env).get(METRICS_PORT_VARIABLE, "").strip()
    if not value:
        return None
    port = int(value)
    if not 0 < port < 65536:
        raise ValueError(f"{METRICS_PORT_VARIABLE}={value} is not a port")
    return port


def clear_multiprocess_directory() -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR before any process writes to it: a restarted container keeps
    its /tmp, and samples of processes gone would be counted again."""
    directory = os.environ.get(MULTIPROCESS_DIRECTORY_VARIABLE)
    if not directory:
        return
    path = Path(directory)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def process_exited(pid: int) -> None:
    """Drop a finished process's live gauges (jobs running), in multiprocess mode."""
    if os.environ.get(MULTIPROCESS_DIRECTORY_VARIABLE):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class QueueCollector(Collector):
    """cs_jobs_queued{model, queue}: each model's queue lengths, read from Redis at scrape time."""

    def __init__(self, queues: Callable[[], Iterator[tuple[str, str, str]]], length: Callable[[str], int]) -> None:
        self.queues = queues  # (model slug, queue name, Redis key) of every model
        self.length = length

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(QUEUED_NAME, "Jobs waiting in a model's queue.", labels=["model", "queue"])
        try:
            for model, queue, key in self.queues():
                family.add_metric([model, queue], self.length(key))
        except Exception as exc:  # Redis away: the other metrics still answer
            log.warning("metrics: cannot read the queue lengths: %s", exc)
        yield family


def serve(port: int, *extra: Collector) -> Any:
    """Serve every process's metrics (and `extra` collectors) on `port` from a daemon thread."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROCESS_DIRECTORY_VARIABLE):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    for collector in extra:
        registry.register(collector)
    server, _ = start_http_server(port, registry=registry)
    log.info("metrics: serving /metrics on port %d", port)
    return server


@contextmanager
def job(model: str, kind: str) -> Iterator[Callable[[str], None]]:
    """Count one job around its work: running while inside, its duration after; call what it
    yields with the envelope's status when there is one."""
    RUNNING.labels(model, kind).inc()
    start = time.monotonic()
    try:
        yield lambda status: FINISHED.labels(model, kind, status).inc()
    finally:
        DURATION.labels(model, kind).observe(time.monotonic() - start)
        RUNNING.labels(model, kind).dec()


def forget_dead_processes() -> None:
    """Drop the live gauges of processes that are gone without saying so (a pool process killed
    at its hard time limit); Celery starts a new pool process, which calls this."""
    directory = os.environ.get(MULTIPROCESS_DIRECTORY_VARIABLE)
    if not directory:
        return
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
        except PermissionError:  # alive, another user's
            pass
