"""Build the Celery app of one model's io and sim workers (see worker.py for the entry point).

One app serves both roles: it registers the four tasks under the contract's names, and the
`--queues` option the chart passes decides which of them a process actually receives.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery  # type: ignore[import-untyped]

from cs_runtime import tasks
from cs_runtime.callback import ResultKind, ResultPoster
from cs_runtime.envelope import Envelope
from cs_runtime.model import ModelFunctions, load_model_functions
from cs_runtime.names import TASK_KINDS
from cs_runtime.settings import WorkerSettings

log = logging.getLogger(__name__)

# Redis redelivers a message that stays unacknowledged this long; with task_acks_late a
# message is acknowledged only when its task ends, so this must outlast the longest task
# or a long sim would run twice. Never below Celery's default of one hour.
MIN_VISIBILITY_TIMEOUT = 3600.0
VISIBILITY_MARGIN = 300.0


def time_limits(soft_limit: float, settings: WorkerSettings, delivers: bool = True) -> dict[str, float]:
    """Celery's soft and hard time limits for a task whose model call may take `soft_limit`.

    At the soft limit the model gets SoftTimeLimitExceeded and the task answers FAIL. The
    hard limit (the process is killed) comes a grace period later, plus, for tasks that PUT
    their result (`delivers`), the longest the PUT may take with all its retries, so
    delivering a result never trips it.
    """
    hard = soft_limit + settings.hard_limit_grace_seconds
    if delivers:
        hard += settings.callback.worst_case_seconds()
    return {"soft_time_limit": soft_limit, "time_limit": hard}


def celery_config(settings: WorkerSettings) -> dict[str, Any]:
    """The Celery settings C/S used, plus what makes acks_late safe on Redis."""
    names = settings.names
    longest = time_limits(max(settings.sim_time_limit, settings.inputs_time_limit), settings)
    return {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # A task is acknowledged when it ends, and given back to the queue if its worker
        # process dies, so a sim is not lost when a pod is evicted mid-run.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # One message at a time: a long sim must not hold queued sims another pod could run.
        "worker_prefetch_multiplier": 1,
        # So the gateway's `query` can tell STARTED from PENDING.
        "task_track_started": True,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": max(MIN_VISIBILITY_TIMEOUT, longest["time_limit"] + VISIBILITY_MARGIN)
        },
        # Where each task goes if something sends it through this app (the gateway names
        # the queue itself, from the routing table).
        "task_routes": {names.task(kind): {"queue": names.queue_for(kind)} for kind in TASK_KINDS},
        "task_default_queue": names.sim_queue,
    }


def create_worker_app(settings: WorkerSettings, functions: ModelFunctions | None = None) -> Any:
    """The Celery app for `settings`' model, with its four tasks registered.

    The model's functions are imported here, at start-up, so a worker whose model is not
    installed fails at once (a crash-looping pod) instead of failing every task.
    """
    names = settings.names
    functions = functions or load_model_functions()
    poster = (
        ResultPoster(settings.comp_url, settings.comp_api_token, settings.callback)
        if settings.comp_url and settings.comp_api_token
        else None
    )
    run_model: tasks.SimRunner
    if settings.cluster_type == "dask" and settings.role == "sim":
        # Imported only here: Celery models and io workers never load distributed.
        from cs_runtime.dask_runner import DaskSimRunner

        assert settings.dask_scheduler_address is not None  # WorkerSettings checked it
        run_model = DaskSimRunner(settings.dask_scheduler_address, settings.dask_connect_timeout_seconds)
    else:
        run_model = tasks.local_runner(functions)

    def deliver(kind: ResultKind, envelope: Envelope) -> Envelope:
        if poster is None:
            log.warning(
                "job %s: COMP_URL is not set; the result is only in the result backend",
                envelope.get("job_id"),
            )
        else:
            poster.put(kind, envelope)
        return envelope

    def inputs_get(meta_param_dict: object) -> Envelope:
        return tasks.inputs_get(functions, meta_param_dict)

    def inputs_version() -> Envelope:
        return tasks.inputs_version(functions)

    def inputs_parse(job_id: str, meta_param_dict: object, adjustment: object, errors_warnings: object) -> Envelope:
        envelope = tasks.inputs_parse(functions, job_id, meta_param_dict, adjustment, errors_warnings)
        return deliver("inputs", envelope)

    def sim(job_id: str, meta_param_dict: object, adjustment: object) -> Envelope:
        envelope = tasks.sim(functions, run_model, job_id, meta_param_dict, adjustment)
        return deliver("outputs", envelope)

    app = Celery(f"{names.key}_tasks", broker=settings.redis_url, backend=settings.redis_url)
    app.conf.update(celery_config(settings))
    answer_limits = time_limits(settings.inputs_time_limit, settings, delivers=False)
    # shared=False: these tasks belong to this app alone, not to every Celery app the
    # process creates (Celery's default).
    app.task(name=names.task("inputs_get"), shared=False, **answer_limits)(inputs_get)
    app.task(name=names.task("inputs_version"), shared=False, **answer_limits)(inputs_version)
    parse_limits = time_limits(settings.inputs_time_limit, settings)
    app.task(name=names.task("inputs_parse"), shared=False, **parse_limits)(inputs_parse)
    app.task(name=names.task("sim"), shared=False, **time_limits(settings.sim_time_limit, settings))(sim)
    log.info(
        "model %s (%s/%s): %s worker, %s cluster, results %s",
        names.key,
        settings.owner,
        settings.title,
        settings.role,
        settings.cluster_type,
        f"PUT to {settings.comp_url}" if poster else "kept in the result backend only",
    )
    return app
