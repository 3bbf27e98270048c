"""Stop a parse or sim that kills its worker every time from being redelivered forever.

With acks_late and task_reject_on_worker_lost, a message goes back to its queue whenever the
process running it dies (out of memory, evicted pod, killed node); that is what saves a sim
from a lost node. A model that *causes* the death (a sim that always runs out of memory)
would loop forever that way. So each delivery is counted in Redis, per job id, before the
model runs; the delivery after CS_MAX_DELIVERIES answers FAIL (and PUTs it) instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import redis

from cs_runtime.envelope import Envelope, failure_envelope

log = logging.getLogger(__name__)

KEY_PREFIX = "cs-workers:deliveries:"


def counter_key(job_id: str) -> str:
    """The Redis key that counts job `job_id`'s deliveries."""
    return f"{KEY_PREFIX}{job_id}"


@dataclass
class DeliveryCounter:
    """Counts deliveries of parse and sim messages in Redis (INCR, with an expiry)."""

    redis_url: str = field(repr=False)
    max_deliveries: int
    # The count must outlive the redeliveries it guards: each may wait a visibility timeout.
    expire_seconds: int
    # The model's Redis key prefix (settings.WorkerSettings.redis_key_prefix): its ACL user
    # reaches only keys that start with it.
    key_prefix: str = ""
    _client: Any = field(default=None, init=False, repr=False)

    def _redis(self) -> Any:
        # Made on first use, so in the pool process that runs the task (not before the fork).
        if self._client is None:
            self._client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=5, socket_timeout=5)
        return self._client

    def count(self, job_id: str) -> int | None:
        """This delivery's number (1 for the first); None when Redis cannot say."""
        key = self.key_prefix + counter_key(job_id)
        try:
            pipe = self._redis().pipeline()
            pipe.incr(key)
            pipe.expire(key, self.expire_seconds)
            number, _ = pipe.execute()
            return int(number)
        except redis.exceptions.RedisError as exc:
            # Counting is a guard, not a gate: run the job rather than lose it.
            log.warning("job %s: cannot count its deliveries (%s); running it", job_id, exc)
            return None

    def refusal(self, job_id: str) -> Envelope | None:
        """A FAIL envelope when job `job_id` has been delivered too often, else None (run it)."""
        number = self.count(job_id)
        if number is None or number <= self.max_deliveries:
            if number is not None and number > 1:
                log.warning(
                    "job %s: delivery %d of at most %d (its worker died before)", job_id, number, self.max_deliveries
                )
            return None
        log.error("job %s: delivered %d times, its worker died each time; answering FAIL", job_id, number)
        return failure_envelope(
            f"WorkerLostError: the job's worker process died {number - 1} times while running it "
            f"(killed, e.g. out of memory, or its pod was evicted); it is not run again after "
            f"{self.max_deliveries} deliveries (CS_MAX_DELIVERIES)",
            job_id,
        )
