"""A model's load: its jobs queued and running, and the last result its workers delivered.

One source for everyone who asks "is this model busy?": the gateway serves it (`GET
/<owner>/<title>/load`, `GET /load`), KEDA's metrics-api scaler reads `sims` from it to scale a
model's sim and Dask workers to zero and back, and `cs-cluster status` prints it.

Where the numbers are (Celery's Redis transport, kombu.transport.redis): a queue's waiting
messages are a list named after the queue; a message a worker has taken but not acknowledged is
an entry of the `unacked` hash (field: delivery tag, value: JSON `[message, exchange,
routing_key]`). Workers acknowledge late (task_acks_late), so a sim stays in `unacked` from the
moment its worker takes it until it has finished and its result is delivered: queued + unacked
counts every sim that is not done. A message of a worker that died also stays there until the
visibility timeout gives it back to the queue, which is right for scaling: it will run again.
Both keys are under the model's key prefix (global_keyprefix) when the model has one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, Final, TypedDict

import redis

from cs_runtime.envelope import Envelope
from cs_runtime.routing import Route

# kombu's Redis transport: Channel.unacked_key.
UNACKED_KEY: Final = "unacked"
# Under the model's key prefix, so that a model's Redis ACL user (`~{m}:*`) may write it.
LAST_RESULT_KEY: Final = "cs-workers:last-result"


class LastResult(TypedDict):
    """The last result a model's workers tried to deliver to the webserver."""

    job_id: str | None
    # "inputs" (a parse) or "outputs" (a sim): the webserver's endpoint.
    kind: str
    # The envelope's status: SUCCESS or FAIL.
    status: str
    # Whether the webserver accepted it (False: every attempt failed or it was refused).
    delivered: bool
    # When, in Unix seconds.
    at: float


class QueueCounts(TypedDict):
    inputs: int
    sim: int


class ModelLoad(TypedDict):
    """The gateway's answer for one model (docs/runtime-contract.md, "Load")."""

    model: str
    queued: QueueCounts
    running: QueueCounts
    # queued.sim + running.sim: what an autoscaler reads; 0 means no sim waits or runs.
    sims: int
    last_result: LastResult | None


def _routing_key(entry: bytes) -> str | None:
    try:
        value = json.loads(entry)
    except ValueError:
        return None
    return value[2] if isinstance(value, list) and len(value) == 3 and isinstance(value[2], str) else None


def model_load(client: redis.Redis, route: Route) -> ModelLoad:
    """`route`'s model's load, read from Redis in one round trip.

    Raises redis.exceptions.RedisError when Redis cannot be read.
    """
    prefix = route.redis_key_prefix
    reading = client.pipeline(transaction=False)
    reading.llen(prefix + route.inputs_queue)
    reading.llen(prefix + route.sim_queue)
    reading.hvals(prefix + UNACKED_KEY)
    reading.get(prefix + LAST_RESULT_KEY)
    queued_inputs, queued_sims, unacked, last = reading.execute()
    running = {route.inputs_queue: 0, route.sim_queue: 0}
    for entry in unacked:
        key = _routing_key(entry)
        if key in running:
            running[key] += 1
    running_sims = running[route.sim_queue]
    return {
        "model": route.slug,
        "queued": {"inputs": int(queued_inputs), "sim": int(queued_sims)},
        "running": {"inputs": running[route.inputs_queue], "sim": running_sims},
        "sims": int(queued_sims) + running_sims,
        "last_result": _last_result(last),
    }


def _last_result(raw: bytes | None) -> LastResult | None:
    if raw is None:
        return None
    try:
        value: Any = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    record: LastResult = value  # type: ignore[assignment]  # written by record_last_result only
    return record


def models_load(client: redis.Redis, routes: Iterable[Route]) -> list[ModelLoad]:
    """The load of every model of `routes`, in their order."""
    return [model_load(client, route) for route in routes]


def record_last_result(client: redis.Redis, key_prefix: str, kind: str, envelope: Envelope, delivered: bool) -> None:
    """Keep the result a worker just tried to deliver as its model's last one (no expiry: one
    small key per model). Raises redis.exceptions.RedisError when Redis cannot be written."""
    job_id = envelope.get("job_id")
    record: LastResult = {
        "job_id": job_id if isinstance(job_id, str) else None,
        "kind": kind,
        "status": str(envelope.get("status")),
        "delivered": delivered,
        "at": round(time.time(), 3),
    }
    client.set(key_prefix + LAST_RESULT_KEY, json.dumps(record))
