"""gunicorn's hooks for the gateway when it serves metrics (`gunicorn --config
python:cs_runtime.gunicorn_config ...`, which the chart adds with metrics.enabled).

gunicorn's master clears PROMETHEUS_MULTIPROC_DIR before it starts the workers, serves every
worker's samples (and each model's queue lengths, read from Redis at each scrape) on
CS_METRICS_PORT, and drops a worker's live gauges when it exits (metrics.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from cs_runtime import metrics
from cs_runtime.jobs import REDIS_CONNECT_TIMEOUT
from cs_runtime.routing import RoutingTable
from cs_runtime.settings import GatewaySettings


def queue_collector(settings: GatewaySettings) -> metrics.QueueCollector:
    """cs_jobs_queued of every model in the routing table."""
    routes = RoutingTable(settings.routing_table_path, settings.routing_recheck_seconds)
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
                                  socket_timeout=REDIS_CONNECT_TIMEOUT)

    def queues() -> Iterator[tuple[str, str, str]]:
        for route in routes.routes().values():
            for queue in (route.inputs_queue, route.sim_queue):
                yield route.slug, queue, route.redis_key_prefix + queue

    return metrics.QueueCollector(queues, lambda key: int(client.llen(key)))


def on_starting(server: Any) -> None:
    metrics.clear_multiprocess_directory()


def when_ready(server: Any) -> None:
    port = metrics.metrics_port()
    if port is not None:
        metrics.serve(port, queue_collector(GatewaySettings.from_env()))


def child_exit(server: Any, worker: Any) -> None:
    metrics.process_exited(worker.pid)
