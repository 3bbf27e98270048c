"""Dask models: the sim worker drives run_model on a real Dask cluster (LocalCluster with
worker processes), and run_model fans out over the workers with get_client()."""

from __future__ import annotations

import csv
import io
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from distributed import LocalCluster

from .support import (
    DASK_PI,
    DASK_PI_CONFIG,
    RecordingWebserver,
    RedisServer,
    WorkerProcess,
    start_worker,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.slow


@dataclass
class DaskModel:
    cluster: LocalCluster
    driver: WorkerProcess  # the model's sim worker, pointed at `cluster`

    def worker_addresses(self) -> set[str]:
        return set(self.cluster.scheduler_info["workers"])


@pytest.fixture(scope="module")
def dask_pi_on_path() -> Iterator[None]:
    """Dask-Pi's cs_config importable by the cluster's workers, as `pip install ./cs-config`
    makes it in the image: LocalCluster's spawned workers start with this process's sys.path."""
    sys.path.insert(0, str(DASK_PI_CONFIG))
    yield
    sys.path.remove(str(DASK_PI_CONFIG))
    for name in [name for name in sys.modules if name == "cs_config" or name.startswith("cs_config.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def dask_models(
    dask_pi_on_path: None,
    redis_server: RedisServer,
    webserver: RecordingWebserver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, DaskModel]]:
    """Two Dask-Pi deployments: two single-thread workers, and one single-thread worker.

    Each has its own driver because DASK_SCHEDULER_ADDRESS is per process; the second
    listens on a queue of its own name, a second copy of the model's sim queue."""
    log_dir = tmp_path_factory.mktemp("dask-pi-workers")
    options: dict[str, Any] = {
        "processes": True,
        "threads_per_worker": 1,
        "host": "127.0.0.1",
        "dashboard_address": ":0",
        "silence_logs": logging.ERROR,
    }
    clusters = {
        "two": LocalCluster(n_workers=2, **options),  # type: ignore[no-untyped-call]
        "one": LocalCluster(n_workers=1, **options),  # type: ignore[no-untyped-call]
    }
    models: dict[str, DaskModel] = {}
    try:
        for label, cluster in clusters.items():
            names = DASK_PI if label == "two" else type(DASK_PI)("cs-examples", "Dask-Pi-One")
            env = worker_env(
                names, "sim", "dask", DASK_PI_CONFIG, redis_server,
                DASK_SCHEDULER_ADDRESS=cluster.scheduler_address, COMP_URL=webserver.url,
                SIM_TIME_LIMIT="60", CS_DASK_CONNECT_TIMEOUT_SECONDS="10",
            )  # fmt: skip
            # The model's functions are Dask-Pi's whatever the title: only the names differ.
            models[label] = DaskModel(cluster, start_worker(names, "sim", env, log_dir))
        for model in models.values():
            model.driver.wait_ready()
        yield models
    finally:
        for model in models.values():
            model.driver.stop()
        for cluster in clusters.values():
            cluster.close()


def run_sim(client: Any, model: DaskModel, adjustment: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    names = model.driver.names
    job_id = str(uuid.uuid4())
    result = client.send_task(names.task("sim"), args=[job_id, {}, adjustment], queue=names.sim_queue, task_id=job_id)
    envelope: dict[str, Any] = result.get(timeout=timeout)
    assert envelope["job_id"] == job_id
    return envelope


def chunk_rows(envelope: dict[str, Any]) -> list[dict[str, str]]:
    (chunks,) = [item for item in envelope["outputs"]["downloadable"] if item["title"] == "chunks"]
    return list(csv.DictReader(io.StringIO(chunks["data"])))


def test_sim_fans_out_over_more_than_one_dask_worker(
    dask_models: dict[str, DaskModel], client: Any, webserver: RecordingWebserver
) -> None:
    model = dask_models["two"]
    adjustment = {"pi": {"n_chunks": 8, "samples_per_chunk": 150_000, "seed": 1}}
    envelope = run_sim(client, model, adjustment)
    assert envelope["status"] == "SUCCESS", envelope.get("traceback")
    assert envelope["model_version"] == "1.0.0"
    rows = chunk_rows(envelope)
    assert len(rows) == 8
    used = {row["worker"] for row in rows}
    assert len(used) >= 2, f"all chunks ran on {used}"
    assert used <= model.worker_addresses()
    estimate = 4 * sum(int(row["inside"]) for row in rows) / (8 * 150_000)
    assert abs(estimate - 3.14159) < 0.02
    put = webserver.put_for(envelope["job_id"])
    assert put.path == "/outputs/api/" and put.body == envelope


def test_no_deadlock_on_one_single_thread_worker(dask_models: dict[str, DaskModel], client: Any) -> None:
    """run_model holds the only thread while it waits for its chunks; seceding frees it."""
    model = dask_models["one"]
    started = time.monotonic()
    envelope = run_sim(client, model, {"pi": {"n_chunks": 4, "samples_per_chunk": 20_000}}, timeout=45)
    assert envelope["status"] == "SUCCESS", envelope.get("traceback")
    assert {row["worker"] for row in chunk_rows(envelope)} == model.worker_addresses()
    assert time.monotonic() - started < 30


def test_model_error_on_the_cluster_is_a_fail_envelope(dask_models: dict[str, DaskModel], client: Any) -> None:
    # No samples: Dask-Pi divides by zero on the Dask worker; the remote traceback comes back.
    envelope = run_sim(client, dask_models["one"], {"pi": {"samples_per_chunk": 0}})
    assert envelope["status"] == "FAIL"
    assert "ZeroDivisionError" in envelope["traceback"]
    assert "run_model" in envelope["traceback"]


def test_cluster_is_left_clean(dask_models: dict[str, DaskModel]) -> None:
    """The driver keeps no futures after a sim (no fire_and_forget leftovers either)."""
    for model in dask_models.values():
        scheduler = model.cluster.scheduler
        assert scheduler is not None

        def empty(scheduler: Any = scheduler) -> bool:
            return not scheduler.tasks

        # Releases travel asynchronously from the clients to the scheduler.
        wait_until(empty, 10, f"an empty scheduler, not {list(scheduler.tasks)}")


def test_dask_pi_io_worker_needs_no_scheduler(redis_server: RedisServer, tmp_path: Path, client: Any) -> None:
    """The io worker of a Dask model answers inputs itself; only the sim worker drives Dask."""
    env = worker_env(DASK_PI, "io", "dask", DASK_PI_CONFIG, redis_server)
    worker = start_worker(DASK_PI, "io", env, tmp_path)
    try:
        worker.wait_ready()
        result = client.send_task(DASK_PI.task("inputs_get"), args=[{}], queue=DASK_PI.inputs_queue)
        envelope = result.get(timeout=20)
        assert envelope["status"] == "SUCCESS"
        assert set(envelope["model_parameters"]["pi"]) == {"n_chunks", "samples_per_chunk", "sleep_per_chunk", "seed"}
    finally:
        worker.stop()
