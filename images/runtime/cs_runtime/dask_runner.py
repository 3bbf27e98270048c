"""Run a Dask model's run_model on its Dask cluster, from the sim worker (the "driver").

The sim task submits `run_model_on_worker` to the model's scheduler and waits for it, so
run_model itself runs on a Dask worker, where `distributed.get_client()` and
`worker_client()` work and its own tasks can fan out over every worker.

Only Dask models' sim workers import this module (it imports distributed); the gateway and
Celery models never do.
"""

from __future__ import annotations

import logging
import time
import traceback
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import Any

from distributed import Client, KilledWorker, worker_client

from cs_runtime.envelope import JsonObject
from cs_runtime.errors import ModelRunError
from cs_runtime.model import FUNCTIONS_MODULE, load_model_functions

log = logging.getLogger(__name__)


def cluster_lost(error: BaseException) -> bool:
    """True when `error` says the Dask cluster went away under the sim (its scheduler replaced
    by a deploy, a connection lost, a scheduler not back yet), not that the model failed.

    A model's own failure arrives as ModelRunError; KilledWorker means Dask already retried the
    task on other workers and each died (a model that exhausts memory), so neither is retried.
    Everything else the Dask client raises for a lost scheduler is an OSError (CommClosedError,
    connection refused), a TimeoutError or a cancelled future (FutureCancelledError).
    """
    if isinstance(error, (ModelRunError, KilledWorker)):
        return False
    return isinstance(error, (OSError, TimeoutError, CancelledError))


def run_model_on_worker(functions_module: str, meta_param_dict: JsonObject, adjustment: JsonObject) -> Any:
    """Runs on a Dask worker: import the model there and call run_model.

    `worker_client()` secedes this task from the worker's thread pool while run_model
    runs, so the tasks run_model submits can use this thread's slot: without it a cluster
    of one single-thread worker would deadlock (run_model waits on tasks that wait for the
    thread run_model holds). Nested worker_client() calls in the model are fine; a bare
    `distributed.secede()` in the model is not needed and would fail (already seceded).
    """
    with worker_client():
        functions = load_model_functions(functions_module)
        failure = None
        try:
            return functions.run_model(meta_param_dict, adjustment)
        except Exception:
            failure = traceback.format_exc()
        # Raised as text, outside the except block: the live exception's frames hold
        # run_model's locals (its futures, hence their results in cluster memory), and Dask
        # keeps a failed task's exception until the driver lets go of it.
        raise ModelRunError(failure)


@dataclass(frozen=True)
class DaskSimRunner:
    """A tasks.SimRunner that runs run_model on the cluster at `scheduler_address`."""

    scheduler_address: str
    connect_timeout_seconds: float = 30.0
    functions_module: str = FUNCTIONS_MODULE
    # How many times a sim whose cluster went away is run again, and the wait (seconds) before
    # each new try; the sim's time limit (Celery's) bounds the whole.
    cluster_retries: int = 3
    retry_delay_seconds: float = 5.0

    def __call__(self, job_id: str, meta_param_dict: JsonObject, adjustment: JsonObject) -> Any:
        """run_model's outputs. The sim is run again, from the start and on the same scheduler
        address, when its cluster went away under it (`cluster_lost`): a deploy that replaces
        the model's scheduler and workers while a sim runs must not turn it into a FAIL, and a
        Dask sim holds no state outside its cluster, so running it again gives the same result.

        Raises ModelRunError (run_model raised), or the last Dask error once the retries are
        spent.
        """
        for attempt in range(self.cluster_retries + 1):
            try:
                return self._run_once(job_id, meta_param_dict, adjustment)
            except Exception as error:
                if attempt == self.cluster_retries or not cluster_lost(error):
                    raise
                log.warning("sim %s lost its Dask cluster at %s (%s: %s); running it again in %g s (retry %d of %d)",
                            job_id, self.scheduler_address, type(error).__name__, error, self.retry_delay_seconds,
                            attempt + 1, self.cluster_retries)
                time.sleep(self.retry_delay_seconds)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _run_once(self, job_id: str, meta_param_dict: JsonObject, adjustment: JsonObject) -> Any:
        # A client per sim: sims are long, and a fresh connection survives a scheduler
        # restart between sims. We keep the future and wait on it (C/S lost results with
        # fire_and_forget); if we stop waiting (time limit), we cancel it.
        client = Client(  # type: ignore[no-untyped-call]  # distributed's Client is untyped
            self.scheduler_address, timeout=self.connect_timeout_seconds, set_as_default=False
        )
        with client:
            future: Any = client.submit(  # Any: distributed.Future is not annotated
                run_model_on_worker,
                self.functions_module,
                meta_param_dict,
                adjustment,
                key=f"run_model-{job_id}",
                pure=False,
            )
            try:
                return future.result()
            finally:
                if not future.done():
                    future.cancel()
