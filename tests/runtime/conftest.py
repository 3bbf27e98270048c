"""Session-wide real services for the runtime tests.

Redis, the stand-in webserver and the Celery-Sum workers start once per session (a worker
takes a second or two to boot); tests keep their own state apart by job id. Without
redis-server every test that needs it is skipped with the reason (fails in CI).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import skip_or_fail

from .support import (
    CELERY_SUM,
    CELERY_SUM_CONFIG,
    RecordingWebserver,
    RedisServer,
    WorkerProcess,
    celery_client,
    start_worker,
    worker_env,
)

# The Celery-Sum sim worker's time limit: short, so the time-limit test is quick, and
# far above what a normal sum takes.
CELERY_SUM_SIM_TIME_LIMIT = 3


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed (ci/install-tools.sh installs it from apt)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@dataclass
class ModelWorkers:
    io: WorkerProcess
    sim: WorkerProcess

    def logs(self) -> str:
        return self.io.log() + self.sim.log()


@pytest.fixture(scope="session")
def celery_sum_workers(
    redis_server: RedisServer, webserver: RecordingWebserver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelWorkers]:
    """The io and sim workers of cs-examples/Celery-Sum, results PUT to `webserver`."""
    log_dir = tmp_path_factory.mktemp("celery-sum-workers")
    common: dict[str, Any] = {
        "names": CELERY_SUM, "cluster_type": "celery", "model_config": CELERY_SUM_CONFIG,
        "redis_server": redis_server, "COMP_URL": webserver.url, "SIM_TIME_LIMIT": str(CELERY_SUM_SIM_TIME_LIMIT),
    }  # fmt: skip
    workers = ModelWorkers(
        io=start_worker(CELERY_SUM, "io", worker_env(role="io", **common), log_dir),
        sim=start_worker(CELERY_SUM, "sim", worker_env(role="sim", **common), log_dir),
    )
    try:
        workers.io.wait_ready()
        workers.sim.wait_ready()
        yield workers
    finally:
        workers.io.stop()
        workers.sim.stop()


@pytest.fixture(scope="session")
def client(redis_server: RedisServer) -> Any:
    """A Celery app that sends tasks by name, as the gateway does."""
    return celery_client(redis_server)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path
