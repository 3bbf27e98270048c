"""The gateway's side of Celery: send tasks by name, wait for or look up their results.

The gateway has no model code, so it sends tasks by the names the routing table gives
(Celery's send_task) and reads results from the shared Redis backend. It never imports dask.

Two Celery apps on purpose. Sending through an app that has the Redis result backend
subscribes the process to the task's result channel (Celery's async result consumer) until
someone calls .get() on it in that same process; the gateway's parse and sim results are
fetched later, often by another gunicorn worker, so those subscriptions would pile up, and
when Redis is away that consumer retries for 20 s and then breaks for good. So tasks go out
through `sender`, which has no result backend, and results are read with plain GETs through
`results`; the synchronous routes poll instead of subscribing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery  # type: ignore[import-untyped]
from celery.result import AsyncResult  # type: ignore[import-untyped]
from kombu.exceptions import OperationalError
from kombu.transport import redis as kombu_redis

from cs_runtime.broker import credentials_refused, is_refusal
from cs_runtime.envelope import FAIL, Envelope, failure_envelope
from cs_runtime.errors import BrokerUnavailableError, JobTimeoutError, UnknownJobError

# Socket connect timeout towards Redis: a gateway request must fail fast (503) when Redis
# is away, not hang its gunicorn worker.
REDIS_CONNECT_TIMEOUT = 5.0

# How often the synchronous routes look for their result: from quick to a gentle pace.
FIRST_POLL_SECONDS = 0.02
MAX_POLL_SECONDS = 0.2

# Errors that mean "Redis is not there": kombu wraps broker errors, redis-py raises its own.
REDIS_DOWN = (OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

# Which model each parse and sim job belongs to: `get` and `query` answer a job only under its own
# model, and a job id nobody handed out is unknown (404), not forever PENDING. Kept a week: longer
# than a sim waits in a queue, runs, and keeps its result (Celery's result_expires, one day).
JOB_KEY_PREFIX = "cs-workers:job:"
JOB_RECORD_SECONDS = 7 * 86400


def broker_error(exc: BaseException) -> BrokerUnavailableError:
    """The 503 for a Redis error: a refused password (a rotated Redis Secret) said as such."""
    if is_refusal(exc):
        return BrokerUnavailableError(
            f"Redis refuses the gateway's password ({exc}): the Redis Secret was changed; the gateway's /health "
            "fails until its pod restarts and reads the Secret again"
        )
    return BrokerUnavailableError(f"cannot reach Redis: {exc}")


def job_key(job_id: str) -> str:
    """The Redis key that holds the slug of job `job_id`'s model."""
    return f"{JOB_KEY_PREFIX}{job_id}"


@dataclass(frozen=True)
class JobStatus:
    """Answer of the gateway's `query` route."""

    job_id: str
    ready: bool
    # PENDING (queued, or unknown: Celery cannot tell), STARTED, SUCCESS or FAIL.
    status: str


class _PublishingChannel(kombu_redis.Channel):
    """kombu's Redis channel, keeping one client for publishing instead of making one per message.

    kombu builds a new redis-py client (and its table of ~170 response callbacks) for every
    message it sends; the gateway sends one per submit, so that was per-request work that can be
    done once (~50-100 µs of a ~1 ms submit). The client shares the channel's connection pool,
    and redis-py clients are safe to share between threads.
    """

    _publishing_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        if self._publishing_client is None:
            self._publishing_client = super()._create_client()  # type: ignore[no-untyped-call]
        return self._publishing_client


class PublishingRedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with `_PublishingChannel`: `broker_transport` of the gateway's sender."""

    Channel = _PublishingChannel


def _celery(redis_url: str, with_backend: bool, visibility_timeout: float | None = None, key_prefix: str = "") -> Any:
    app = Celery("cs-gateway", broker=redis_url, backend=redis_url if with_backend else None, set_as_current=False)
    if not with_backend:
        app.conf.broker_transport = f"{__name__}:PublishingRedisTransport"
    transport_options: dict[str, Any] = {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT}
    if visibility_timeout is not None:
        # The gateway only publishes, but its broker settings match the workers' anyway.
        transport_options["visibility_timeout"] = visibility_timeout
    if key_prefix:
        # The model's keys, as its workers name them (worker_app.key_prefix_option).
        transport_options["global_keyprefix"] = key_prefix
        app.conf.result_backend_transport_options = {"global_keyprefix": key_prefix}
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_timeout=REDIS_CONNECT_TIMEOUT,
        broker_transport_options=transport_options,
        redis_socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        # Bounded publishing retries (about a second) before answering 503.
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    )
    return app


def _short_reprs(job_id: str) -> dict[str, str]:
    """Celery's argsrepr/kwargsrepr (what monitoring shows of a task's arguments): the job id only.
    Celery would otherwise build a bounded repr of the user's inputs on every send (~50 µs), and
    the inputs are nobody's business in a monitoring tool."""
    return {"argsrepr": f"[{job_id!r}, ...]", "kwargsrepr": "{}"}


class JobClient:
    """Sends jobs to model queues and reads their results."""

    def __init__(self, redis_url: str, visibility_timeout: float | None = None) -> None:
        self.redis = redis.Redis.from_url(redis_url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT)
        self.redis_url = redis_url
        self.visibility_timeout = visibility_timeout
        self._apps: dict[str, tuple[Any, Any]] = {}
        self.sender, self.results = self.apps("")

    def apps(self, key_prefix: str) -> tuple[Any, Any]:
        """The sending and the result-reading Celery apps for the models whose keys start with
        `key_prefix` (one pair per prefix, made on first use)."""
        if key_prefix not in self._apps:
            self._apps[key_prefix] = (
                _celery(self.redis_url, with_backend=False, visibility_timeout=self.visibility_timeout,
                        key_prefix=key_prefix),
                _celery(self.redis_url, with_backend=True, visibility_timeout=self.visibility_timeout,
                        key_prefix=key_prefix),
            )
        return self._apps[key_prefix]

    def credentials_refused(self) -> str | None:
        """Redis's words when it refuses the gateway's password; None otherwise (also when away).
        Half a second at most: /health answers the kubelet, whose probes time out after one."""
        return credentials_refused(self.redis_url, timeout_seconds=0.5)

    def run_and_wait(self, task_name: str, queue: str, args: list[Any], timeout: float,
                     key_prefix: str = "") -> Envelope:
        """Run a synchronous task (inputs_get, inputs_version) and return its envelope.

        The message expires when we stop waiting, so an io worker that comes back later does
        not compute an answer nobody will read.
        """
        sender, results = self.apps(key_prefix)
        try:
            job_id = str(uuid.uuid4())
            sender.send_task(task_name, args=args, queue=queue, expires=timeout, task_id=job_id,
                             **_short_reprs(job_id))
            result = AsyncResult(job_id, app=results)
            deadline = time.monotonic() + timeout
            pause = FIRST_POLL_SECONDS
            while not result.ready():
                if time.monotonic() >= deadline:
                    raise JobTimeoutError(
                        f"{task_name} did not answer within {timeout:g} s (is the model's io worker up?)"
                    )
                time.sleep(pause)
                pause = min(MAX_POLL_SECONDS, pause * 2)
            envelope = self._envelope(result)
            result.forget()  # read once, by us; do not leave it in Redis for a day
            return envelope
        except REDIS_DOWN as exc:
            raise broker_error(exc) from None

    def enqueue(self, task_name: str, queue: str, args: list[Any], job_id: str, model: str,
                key_prefix: str = "") -> int:
        """Queue an asynchronous task (parse, sim) under `job_id` for `model` (its slug); returns
        the queue length."""
        sender, _ = self.apps(key_prefix)
        try:
            # Recorded first, so that a result can never be asked for before its job is known; the
            # queue's length read in the same round trip (Celery's Redis transport keeps a queue's
            # waiting messages in a list of its name): the job is the next one in it.
            recorded = self.redis.pipeline(transaction=False)
            recorded.set(job_key(job_id), model, ex=JOB_RECORD_SECONDS)
            recorded.llen(key_prefix + queue)
            _, waiting = recorded.execute()
            sender.send_task(task_name, args=args, queue=queue, task_id=job_id, **_short_reprs(job_id))
            return int(waiting) + 1
        except REDIS_DOWN as exc:
            raise broker_error(exc) from None

    def check_model(self, job_id: str, model: str) -> None:
        """UnknownJobError unless `job_id` was handed out for `model` (a slug); the same answer for
        another model's job as for no job, so ids of other models' jobs are not confirmed."""
        try:
            owner = self.redis.get(job_key(job_id))
        except REDIS_DOWN as exc:
            raise broker_error(exc) from None
        if owner is None or (owner.decode() if isinstance(owner, bytes) else owner) != model:
            raise UnknownJobError(f"unknown job {job_id} for this model")

    def status(self, job_id: str, key_prefix: str = "") -> JobStatus:
        """Where job `job_id` is."""
        try:
            result = AsyncResult(job_id, app=self.apps(key_prefix)[1])
            if result.ready():
                return JobStatus(job_id, True, str(self._envelope(result).get("status", FAIL)))
            return JobStatus(job_id, False, str(result.state))
        except REDIS_DOWN as exc:
            raise broker_error(exc) from None

    def result(self, job_id: str, key_prefix: str = "") -> Envelope | None:
        """The envelope of a finished job, None while it is pending or running."""
        try:
            result = AsyncResult(job_id, app=self.apps(key_prefix)[1])
            return self._envelope(result) if result.ready() else None
        except REDIS_DOWN as exc:
            raise broker_error(exc) from None

    @staticmethod
    def _envelope(result: Any) -> Envelope:
        """A finished job's envelope. Our tasks always return one; a Celery-level failure
        (hard time limit, revoked, expired) stores an exception instead, which we present
        in the same shape."""
        value = result.result
        if result.state == "SUCCESS" and isinstance(value, dict):
            return value
        message = result.traceback or f"{type(value).__name__}: {value}"
        return failure_envelope(str(message), str(result.id))
