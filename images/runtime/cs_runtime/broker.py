"""Telling a Redis that refuses our password from a Redis that is away.

The two call for opposite answers. Redis away (restarting, a node lost): wait for it; restarting
a pod cures nothing and would kill its running sim. Redis refusing the password (the Redis Secret
was rotated, Redis restarted with the new one): waiting cures nothing, while a restarted container
reads the Secret again. Workers (heartbeat.py) and the gateway (/health) both ask here.
"""

from __future__ import annotations

import redis

# How Redis (and redis-py, and kombu wrapping it) word a refused AUTH.
_REFUSAL_WORDS = ("WRONGPASS", "NOAUTH", "invalid username-password pair", "Authentication required",
                  "invalid password")


def credentials_refused(redis_url: str, timeout_seconds: float = 2.0) -> str | None:
    """Redis's answer when it refuses the credentials in `redis_url`, else None: accepted, or
    Redis cannot be reached at all."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=timeout_seconds, socket_timeout=timeout_seconds)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        if not is_refusal(exc):
            return None
        return str(exc) or type(exc).__name__
    finally:
        client.close()
    return None


def is_refusal(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps: kombu re-raises redis-py's errors) is Redis refusing AUTH."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, redis.exceptions.AuthenticationError):
            return True
        if any(word in str(current) for word in _REFUSAL_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False
