"""Build the Celery app of one model's io and sim workers (see worker.py for the entry point).

One app serves both roles: it registers the four tasks under the contract's names, and the
`--queues` option the chart passes decides which of them a process actually receives.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery, signals  # type: ignore[import-untyped]
from celery.worker import state as worker_state  # type: ignore[import-untyped]
from celery.worker.request import Request  # type: ignore[import-untyped]

from cs_runtime import metrics, tasks
from cs_runtime.callback import TASK_OF_RESULT, ResultKind, ResultPoster
from cs_runtime.deliveries import DeliveryCounter
from cs_runtime.envelope import Envelope, failure_envelope
from cs_runtime.heartbeat import heartbeat_step
from cs_runtime.isolation import guarded_import
from cs_runtime.jobs import REDIS_CONNECT_TIMEOUT
from cs_runtime.load import record_last_result
from cs_runtime.model import ModelFunctions, isolated, load_model_functions
from cs_runtime.names import TASK_KINDS
from cs_runtime.settings import WorkerSettings

log = logging.getLogger(__name__)

# Without CELERY_VISIBILITY_TIMEOUT: Redis redelivers a message that stays unacknowledged this
# long; with task_acks_late a message is acknowledged only when its task ends, so this must
# outlast the longest task or a long sim would run twice. Never below Celery's default of one
# hour. (Only a fallback: every consumer restores every message older than *its own* timeout,
# so the chart sets one value for all of them.)
MIN_VISIBILITY_TIMEOUT = 3600.0
VISIBILITY_MARGIN = 300.0
# The delivery count of a job outlives this many visibility timeouts, and at least a day.
MIN_DELIVERY_COUNT_SECONDS = 86400


def time_limits(soft_limit: float, settings: WorkerSettings, delivers: bool = True) -> dict[str, float]:
    """Celery's soft and hard time limits for a task whose model call may take `soft_limit`.

    At the soft limit the model gets SoftTimeLimitExceeded and the task answers FAIL. The
    hard limit (the process is killed) comes a grace period later, plus, for tasks that PUT
    their result (`delivers`), the longest the PUT may take with all its retries, so
    delivering a result never trips it.
    """
    return {"soft_time_limit": soft_limit, "time_limit": settings.hard_time_limit(soft_limit, delivers)}


def visibility_timeout(settings: WorkerSettings) -> float:
    """CELERY_VISIBILITY_TIMEOUT (checked by WorkerSettings to be above the longest hard time
    limit); without it, one computed from this worker's own limits."""
    if settings.visibility_timeout is not None:
        return settings.visibility_timeout
    return max(MIN_VISIBILITY_TIMEOUT, settings.longest_hard_time_limit() + VISIBILITY_MARGIN)


def key_prefix_option(prefix: str) -> dict[str, str]:
    """kombu's and Celery's transport option that puts `prefix` before every key and channel of
    the queues, unacknowledged messages and results."""
    return {"global_keyprefix": prefix} if prefix else {}


def celery_config(settings: WorkerSettings) -> dict[str, Any]:
    """The Celery settings C/S used, plus what makes acks_late safe on Redis."""
    names = settings.names
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
        # No remote control (`celery inspect/control`): nothing here uses it, probes read the
        # heartbeat file, and its shared pattern subscription is one a model's Redis ACL user,
        # limited to the model's own channels, may not make.
        "worker_enable_remote_control": False,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": visibility_timeout(settings),
                                     **key_prefix_option(settings.redis_key_prefix)},
        # Results (celery-task-meta-*) under the model's prefix too.
        "result_backend_transport_options": key_prefix_option(settings.redis_key_prefix),
        # Where each task goes if something sends it through this app (the gateway names
        # the queue itself, from the routing table).
        "task_routes": {names.task(kind): {"queue": names.queue_for(kind)} for kind in TASK_KINDS},
        "task_default_queue": names.sim_queue,
    }


def delivering_request(kind: ResultKind, deliver: Callable[[ResultKind, Envelope], object],
                       model: str = "") -> type[Any]:
    """Celery's Request class for parse and sim: when the task is killed at its hard time limit,
    the webserver still hears FAIL.

    The task itself PUTs its result, but a task killed at the hard limit never gets there:
    Celery stores TimeLimitExceeded (the gateway's `get` shows FAIL) and acknowledges the
    message, and the webserver would wait forever. on_timeout runs in the main worker process,
    which survives the kill; the PUT runs in a thread of its own so its retries never stall
    that process's event loop.
    """

    class DeliveringRequest(Request):  # type: ignore[misc]
        def on_timeout(self, soft: bool, timeout: float) -> None:
            super().on_timeout(soft, timeout)
            # Celery itself records nothing during a cold shutdown; neither do we.
            if soft or worker_state.should_terminate:
                return
            # The killed pool process could not count it: counted here, in the main process.
            metrics.FINISHED.labels(model, TASK_OF_RESULT[kind], "FAIL").inc()
            envelope = failure_envelope(
                f"TimeLimitExceeded: the job was still running {timeout:g} s after it started (its hard "
                "time limit: the time limit plus a grace period) and its worker process was killed",
                str(self.id),
            )
            threading.Thread(target=deliver, args=(kind, envelope), name=f"deliver-fail-{self.id}").start()

    return DeliveringRequest


def serve_metrics(port: int | None) -> None:
    """With CS_METRICS_PORT, the worker's main process serves /metrics for itself and its pool
    processes (prometheus_client's multiprocess mode, metrics.py); a pool process killed at its
    hard time limit leaves a running gauge behind, which its successor drops."""
    if port is None:
        return
    metrics.clear_multiprocess_directory()
    signals.worker_init.connect(lambda **_: metrics.serve(port), weak=False)
    signals.worker_process_init.connect(lambda **_: metrics.forget_dead_processes(), weak=False)
    signals.worker_process_shutdown.connect(lambda **_: metrics.process_exited(os.getpid()), weak=False)


def create_worker_app(settings: WorkerSettings, functions: ModelFunctions | None = None) -> Any:
    """The Celery app for `settings`' model, with its four tasks registered.

    The model's functions are imported here, at start-up, so a worker whose model is not
    installed fails at once (a crash-looping pod) instead of failing every task. Each call of one
    runs in a forked child (isolation.py): nothing a model changes in its process reaches the
    runtime's own work (storing and PUTting the result) or the next task.
    """
    names = settings.names
    if functions is None:
        # What the import changes (warnings filters, environment, ...) stays the model's: it is
        # put back for the runtime here and replayed in the child of every call.
        with guarded_import() as model_state:
            functions = load_model_functions()
        functions = isolated(functions, model_state[0])
    else:
        functions = isolated(functions)
    poster = (
        ResultPoster(settings.comp_url, settings.comp_api_token, settings.callback, model=names.slug)
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

    # The model's last result, for the gateway's /load (load.py). redis-py connects on first use
    # and again in each forked pool process, so nothing happens here at start-up.
    last_result_client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
                                              socket_timeout=REDIS_CONNECT_TIMEOUT)

    def remember(kind: ResultKind, envelope: Envelope, delivered: bool) -> None:
        try:
            record_last_result(last_result_client, settings.redis_key_prefix, kind, envelope, delivered)
        except redis.exceptions.RedisError as exc:
            # Only what `status` shows: never a reason to fail the job.
            log.warning("job %s: could not record it as the last result: %s", envelope.get("job_id"), exc)

    def deliver(kind: ResultKind, envelope: Envelope) -> Envelope:
        if poster is None:
            log.warning(
                "job %s: COMP_URL is not set; the result is only in the result backend",
                envelope.get("job_id"),
            )
        else:
            remember(kind, envelope, delivered=bool(poster.put(kind, envelope)))
        return envelope

    def counted(kind: str, work: Callable[[], Envelope]) -> Envelope:
        """A task's work, counted in the metrics: running, then finished by status, and its duration."""
        with metrics.job(names.slug, kind) as finished:
            envelope = work()
            finished(str(envelope.get("status")))
            return envelope

    def inputs_get(meta_param_dict: object) -> Envelope:
        return counted("inputs_get", lambda: tasks.inputs_get(functions, meta_param_dict))

    def inputs_version() -> Envelope:
        return counted("inputs_version", lambda: tasks.inputs_version(functions))

    count_seconds = visibility_timeout(settings) * (settings.max_deliveries + 2)
    deliveries = DeliveryCounter(
        settings.redis_url, settings.max_deliveries, expire_seconds=int(max(MIN_DELIVERY_COUNT_SECONDS, count_seconds)),
        key_prefix=settings.redis_key_prefix,
    )

    def inputs_parse(job_id: str, meta_param_dict: object, adjustment: object, errors_warnings: object) -> Envelope:
        return counted("inputs_parse", lambda: deliver("inputs", deliveries.refusal(job_id) or tasks.inputs_parse(
            functions, job_id, meta_param_dict, adjustment, errors_warnings
        )))

    def sim(job_id: str, meta_param_dict: object, adjustment: object) -> Envelope:
        return counted("sim", lambda: deliver("outputs", deliveries.refusal(job_id) or tasks.sim(
            functions, run_model, job_id, meta_param_dict, adjustment
        )))

    app = Celery(f"{names.key}_tasks", broker=settings.redis_url, backend=settings.redis_url)
    app.conf.update(celery_config(settings))
    answer_limits = time_limits(settings.inputs_time_limit, settings, delivers=False)
    # shared=False: these tasks belong to this app alone, not to every Celery app the
    # process creates (Celery's default).
    app.task(name=names.task("inputs_get"), shared=False, **answer_limits)(inputs_get)
    app.task(name=names.task("inputs_version"), shared=False, **answer_limits)(inputs_version)
    parse_limits = time_limits(settings.inputs_time_limit, settings)
    parse_request = delivering_request("inputs", deliver, names.slug)
    app.task(name=names.task("inputs_parse"), shared=False, Request=parse_request, **parse_limits)(inputs_parse)
    sim_limits = time_limits(settings.sim_time_limit, settings)
    app.task(name=names.task("sim"), shared=False, Request=delivering_request("outputs", deliver, names.slug),
             **sim_limits)(sim)
    serve_metrics(metrics.metrics_port())
    if settings.heartbeat_file is not None:
        app.steps["worker"].add(
            heartbeat_step(settings.heartbeat_file, settings.heartbeat_interval_seconds, settings.redis_url)
        )
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
