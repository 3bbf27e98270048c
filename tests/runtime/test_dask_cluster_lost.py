"""A Dask sim whose cluster is replaced under it (a deploy's new scheduler and workers, on the
same address) runs again on the new cluster and gives its result once; a model's own failure
is never run again. Real `dask scheduler` and `dask worker` processes, as the chart starts them."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

from cs_runtime.dask_runner import DaskSimRunner, cluster_lost
from cs_runtime.errors import ModelRunError

from .support import DASK_PI_CONFIG, free_port, wait_until

pytestmark = pytest.mark.slow


class DaskCluster:
    """One scheduler and one single-thread worker on a fixed port, startable again."""

    def __init__(self, port: int, log_dir: Path) -> None:
        self.port = port
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.generation = 0

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> DaskCluster:
        self.generation += 1
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DASK_PI_CONFIG), os.environ.get("PYTHONPATH", "")])}
        dask = str(Path(sys.executable).with_name("dask"))  # the CLI the chart's pods run
        for name, command in (
            ("scheduler", [dask, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                           "--dashboard-address", ":0"]),
            ("worker", [dask, "worker", self.address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                        "--dashboard-address", ":0", "--no-nanny"]),
        ):
            log = open(self.log_dir / f"{name}-{self.generation}.log", "wb")  # noqa: SIM115 - kept by the process
            self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                   start_new_session=True))
        wait_until(self._one_worker, timeout=60, what=f"a Dask worker on {self.address}", interval=0.3)
        return self

    def _one_worker(self) -> bool:
        try:
            with Client(self.address, timeout=2, set_as_default=False) as client:  # type: ignore[no-untyped-call]
                return len(client.scheduler_info()["workers"]) == 1
        except OSError:
            return False

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.processes.clear()


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    cluster = DaskCluster(free_port(), tmp_path).start()
    yield cluster
    cluster.stop()


def adjustment(**pi: Any) -> dict[str, Any]:
    return {"pi": {"n_chunks": 2, "samples_per_chunk": 1000, "seed": 7, **pi}}


def estimate(outputs: dict[str, Any]) -> str:
    return str(outputs["renderable"][0]["data"])


def test_a_sim_whose_cluster_is_replaced_runs_again_and_gives_the_same_result(
    dask_cluster: DaskCluster, caplog: pytest.LogCaptureFixture
) -> None:
    runner = DaskSimRunner(dask_cluster.address, connect_timeout_seconds=30, retry_delay_seconds=1)
    undisturbed = runner("job-undisturbed", {}, adjustment())

    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(runner("job-replaced", {}, adjustment(sleep_per_chunk=4.0)))
        except BaseException as error:  # the test reports it below
            errors.append(error)

    with caplog.at_level(logging.WARNING, logger="cs_runtime.dask_runner"):
        sim = threading.Thread(target=run)
        sim.start()
        time.sleep(2)  # run_model is on the worker, its chunks sleeping
        dask_cluster.stop()  # the deploy: scheduler and worker gone...
        dask_cluster.start()  # ...and new ones on the same address
        sim.join(timeout=120)
    assert not sim.is_alive()
    assert errors == [] and len(results) == 1
    # Same inputs, same seed: the run on the new cluster gives what an undisturbed run gives.
    assert estimate(results[0]) == estimate(undisturbed)
    retries = [r.getMessage() for r in caplog.records if "lost its Dask cluster" in r.getMessage()]
    assert len(retries) == 1 and "job-replaced" in retries[0], retries


def test_a_models_own_failure_is_not_run_again(dask_cluster: DaskCluster, caplog: pytest.LogCaptureFixture) -> None:
    runner = DaskSimRunner(dask_cluster.address, retry_delay_seconds=0)
    with caplog.at_level(logging.WARNING, logger="cs_runtime.dask_runner"), pytest.raises(ModelRunError) as raised:
        runner("job-bad", {}, {"pi": {"n_chunks": 0}})  # range() of nothing: run_model divides by zero
    assert "ZeroDivisionError" in str(raised.value)
    assert not [r for r in caplog.records if "lost its Dask cluster" in r.getMessage()]


@pytest.mark.parametrize(("error", "lost"), [
    (ConnectionRefusedError("scheduler not back yet"), True),
    (TimeoutError("connect timed out"), True),
    (OSError("stream closed"), True),
    (ModelRunError("Traceback ... ValueError"), False),
    (ValueError("a bug of ours"), False),
    (KeyError("x"), False),
])
def test_which_errors_mean_the_cluster_went_away(error: BaseException, lost: bool) -> None:
    assert cluster_lost(error) is lost


def test_killed_worker_is_the_models_not_a_lost_cluster() -> None:
    from distributed import KilledWorker

    assert cluster_lost(KilledWorker("run_model-x", "tcp://10.0.0.1:1", 3)) is False
