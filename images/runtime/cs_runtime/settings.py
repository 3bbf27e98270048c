"""Settings read from the environment the chart renders (docs/runtime-contract.md).

Everything is read once, at start-up, into frozen dataclasses, so a missing or malformed
variable stops the process with a message naming it instead of failing on the first task.
An empty value counts as unset: Kubernetes renders optional Secret keys that way.
Secrets (the Redis password, COMP_API_TOKEN, CS_GATEWAY_TOKEN) are kept out of `repr()` so
they cannot end up in a log line by accident.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from cs_runtime.errors import ConfigError
from cs_runtime.names import ModelNames

Environ = Mapping[str, str]
WorkerRole = Literal["io", "sim"]
ClusterType = Literal["celery", "dask"]

# C/S's default soft time limit of the inputs tasks.
DEFAULT_INPUTS_TIME_LIMIT = 10.0
# How many times one parse or sim message may reach a worker before it is answered FAIL
# instead of being run again (a model that kills its worker, e.g. out of memory, every time).
DEFAULT_MAX_DELIVERIES = 3


def optional(env: Environ, name: str) -> str | None:
    """The variable's value, or None when it is unset or empty."""
    value = env.get(name, "").strip()
    return value or None


def required(env: Environ, name: str) -> str:
    """The variable's value; a ConfigError naming it when it is unset or empty."""
    value = optional(env, name)
    if value is None:
        raise ConfigError(f"environment variable {name} is required but not set")
    return value


def positive_number(env: Environ, name: str, default: float | None = None) -> float:
    """A number > 0 (seconds, mostly); `default` when unset, else required."""
    raw = optional(env, name)
    if raw is None:
        if default is None:
            raise ConfigError(f"environment variable {name} is required but not set")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be a number, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"environment variable {name} must be a positive number, got {raw!r}")
    return value


def positive_int(env: Environ, name: str, default: int) -> int:
    """An integer >= 1; `default` when unset."""
    raw = optional(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"environment variable {name} must be at least 1, got {raw!r}")
    return value


def optional_positive_number(env: Environ, name: str) -> float | None:
    """A number > 0 when the variable is set, None when it is unset or empty."""
    return None if optional(env, name) is None else positive_number(env, name)


def redis_url(env: Environ) -> str:
    """`redis://[USERNAME]:PASSWORD@HOST:PORT/DB` from REDIS_HOST/PORT/DB/USERNAME/PASSWORD.

    The chart passes the password alone (from a Secret) so that it never appears in a plain
    env value or a command line; it is percent-encoded here because generated passwords may
    hold `@`, `/` or `:`. REDIS_PORT and REDIS_DB default to Redis's own defaults; without
    REDIS_USERNAME the password is Redis's default user's.
    """
    host = required(env, "REDIS_HOST")
    port = positive_int(env, "REDIS_PORT", 6379)
    db_raw = optional(env, "REDIS_DB") or "0"
    if not db_raw.isdigit():
        raise ConfigError(f"environment variable REDIS_DB must be a database number, got {db_raw!r}")
    password = optional(env, "REDIS_PASSWORD")
    username = quote(optional(env, "REDIS_USERNAME") or "", safe="")
    auth = f"{username}:{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{int(db_raw)}"


def key_prefix(env: Environ, names: ModelNames) -> str:
    """CS_REDIS_KEY_PREFIX, which must be the model's own (the chart's Redis ACL allows only that)."""
    prefix = optional(env, "CS_REDIS_KEY_PREFIX") or ""
    if prefix and prefix != names.redis_key_prefix:
        raise ConfigError(
            f"environment variable CS_REDIS_KEY_PREFIX must be this model's {names.redis_key_prefix!r}, got {prefix!r}"
        )
    return prefix


@dataclass(frozen=True)
class CallbackPolicy:
    """How hard a worker tries to PUT a result to the webserver.

    Attempt n+1 waits min(backoff_max_seconds, backoff_seconds * 2**(n-1)) after attempt n.
    Bounded on purpose: the worker does the PUT inside the task, so while it waits it takes
    no new task; the result stays in the Celery backend for the gateway's `get` anyway.
    """

    attempts: int = 6
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 30.0
    request_timeout_seconds: float = 10.0

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (1-based; 0 for the first)."""
        if attempt <= 1:
            return 0.0
        return float(min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempt - 2)))

    def worst_case_seconds(self) -> float:
        """Longest time all attempts can take: every wait plus every request timing out."""
        waits = sum(self.delay_before(n) for n in range(1, self.attempts + 1))
        return waits + self.attempts * self.request_timeout_seconds

    @classmethod
    def from_env(cls, env: Environ) -> CallbackPolicy:
        """CS_CALLBACK_ATTEMPTS, CS_CALLBACK_BACKOFF_SECONDS, CS_CALLBACK_BACKOFF_MAX_SECONDS,
        CS_CALLBACK_TIMEOUT_SECONDS; all optional."""
        default = cls()
        return cls(
            attempts=positive_int(env, "CS_CALLBACK_ATTEMPTS", default.attempts),
            backoff_seconds=positive_number(env, "CS_CALLBACK_BACKOFF_SECONDS", default.backoff_seconds),
            backoff_max_seconds=positive_number(env, "CS_CALLBACK_BACKOFF_MAX_SECONDS", default.backoff_max_seconds),
            request_timeout_seconds=positive_number(
                env, "CS_CALLBACK_TIMEOUT_SECONDS", default.request_timeout_seconds
            ),
        )


def _choice(env: Environ, name: str, allowed: Mapping[str, str]) -> str:
    raw = required(env, name)
    try:
        return allowed[raw.lower()]
    except KeyError:
        choices = ", ".join(sorted(set(allowed.values())))
        raise ConfigError(f"environment variable {name} must be one of {choices}, got {raw!r}") from None


@dataclass(frozen=True)
class WorkerSettings:
    """What one model's io or sim worker needs to know."""

    owner: str
    title: str
    role: WorkerRole
    cluster_type: ClusterType
    sim_time_limit: float
    inputs_time_limit: float
    redis_url: str = field(repr=False)
    dask_scheduler_address: str | None = None
    comp_url: str | None = None
    comp_api_token: str | None = field(default=None, repr=False)
    callback: CallbackPolicy = field(default_factory=CallbackPolicy)
    # Seconds between a task's soft time limit (the model gets SoftTimeLimitExceeded and the
    # task answers FAIL) and the hard one (the worker process is killed).
    hard_limit_grace_seconds: float = 30.0
    dask_connect_timeout_seconds: float = 30.0
    # CELERY_VISIBILITY_TIMEOUT: one value for the whole release (the chart's
    # celery.visibilityTimeout). None: derived from this worker's own time limits.
    visibility_timeout: float | None = None
    # CS_HEARTBEAT_FILE: touched by the worker's main process every heartbeat_interval_seconds
    # (the chart's probes run `python -m cs_runtime.health`); None: no heartbeat.
    heartbeat_file: Path | None = None
    heartbeat_interval_seconds: float = 10.0
    # CS_MAX_DELIVERIES: deliveries of one parse or sim message before it is answered FAIL.
    max_deliveries: int = DEFAULT_MAX_DELIVERIES
    # CS_REDIS_KEY_PREFIX: before every Redis key and channel this worker uses (the model's
    # ModelNames.redis_key_prefix, when its Redis user may reach only those); "": none.
    redis_key_prefix: str = ""

    def __post_init__(self) -> None:
        if self.visibility_timeout is not None and not self.visibility_timeout > self.longest_hard_time_limit():
            limit = "SIM_TIME_LIMIT" if self.sim_time_limit >= self.inputs_time_limit else "INPUTS_TIME_LIMIT"
            raise ConfigError(
                f"environment variable CELERY_VISIBILITY_TIMEOUT ({self.visibility_timeout:g} s) must be above this "
                f"worker's longest hard time limit ({self.longest_hard_time_limit():g} s: {limit} "
                f"{max(self.sim_time_limit, self.inputs_time_limit):g} s + {self.hard_limit_grace_seconds:g} s "
                f"grace + up to {self.callback.worst_case_seconds():g} s delivering the result), or Redis would hand "
                "a running task to a second worker; raise celery.visibilityTimeout in the chart's values"
            )

    @property
    def names(self) -> ModelNames:
        return ModelNames(self.owner, self.title)

    def hard_time_limit(self, soft_limit: float, delivers: bool = True) -> float:
        """Celery's hard time limit (the pool process is killed) of a task whose model call
        may take `soft_limit`: a grace period after the soft limit, plus, for tasks that PUT
        their result (`delivers`), the longest that PUT may take with all its retries."""
        hard = soft_limit + self.hard_limit_grace_seconds
        if delivers:
            hard += self.callback.worst_case_seconds()
        return hard

    def longest_hard_time_limit(self) -> float:
        """The longest any task of this worker may hold its (unacknowledged) message."""
        return self.hard_time_limit(max(self.sim_time_limit, self.inputs_time_limit))

    @classmethod
    def from_env(cls, env: Environ | None = None) -> WorkerSettings:
        """Read the variables the chart sets on io and sim workers."""
        env = os.environ if env is None else env
        role = _choice(env, "CS_WORKER_ROLE", {"io": "io", "sim": "sim"})
        # "single-core" is what worker_config.yaml (and C/S) call a Celery-only model.
        cluster_type = _choice(env, "CS_CLUSTER_TYPE", {"celery": "celery", "single-core": "celery", "dask": "dask"})
        dask_address = optional(env, "DASK_SCHEDULER_ADDRESS")
        if cluster_type == "dask" and role == "sim" and dask_address is None:
            # The sim worker of a Dask model is the driver: without a scheduler it cannot run.
            raise ConfigError(
                "environment variable DASK_SCHEDULER_ADDRESS is required by the sim worker of a Dask model but not set"
            )
        comp_url = optional(env, "COMP_URL")
        comp_api_token = optional(env, "COMP_API_TOKEN")
        if comp_url is not None and comp_api_token is None:
            raise ConfigError("environment variable COMP_API_TOKEN is required when COMP_URL is set but not set")
        return cls(
            owner=required(env, "OWNER"),
            title=required(env, "TITLE"),
            role="io" if role == "io" else "sim",
            cluster_type="dask" if cluster_type == "dask" else "celery",
            sim_time_limit=positive_number(env, "SIM_TIME_LIMIT"),
            inputs_time_limit=positive_number(env, "INPUTS_TIME_LIMIT", DEFAULT_INPUTS_TIME_LIMIT),
            redis_url=redis_url(env),
            dask_scheduler_address=dask_address,
            comp_url=comp_url.rstrip("/") if comp_url else None,
            comp_api_token=comp_api_token,
            callback=CallbackPolicy.from_env(env),
            hard_limit_grace_seconds=positive_number(env, "CS_HARD_TIME_LIMIT_GRACE_SECONDS", 30.0),
            dask_connect_timeout_seconds=positive_number(env, "CS_DASK_CONNECT_TIMEOUT_SECONDS", 30.0),
            visibility_timeout=optional_positive_number(env, "CELERY_VISIBILITY_TIMEOUT"),
            heartbeat_file=Path(heartbeat) if (heartbeat := optional(env, "CS_HEARTBEAT_FILE")) else None,
            heartbeat_interval_seconds=positive_number(env, "CS_HEARTBEAT_INTERVAL_SECONDS", 10.0),
            max_deliveries=positive_int(env, "CS_MAX_DELIVERIES", DEFAULT_MAX_DELIVERIES),
            redis_key_prefix=key_prefix(env, ModelNames(required(env, "OWNER"), required(env, "TITLE"))),
        )


@dataclass(frozen=True)
class GatewaySettings:
    """What the gateway needs to know."""

    routing_table_path: Path
    redis_url: str = field(repr=False)
    token: str | None = field(default=None, repr=False)
    # Adjustments of big models run to a few hundred kB; 10 MiB leaves room and still stops
    # a client from filling a gunicorn worker's memory.
    max_body_bytes: int = 10 * 1024 * 1024
    # How long the synchronous routes wait beyond the model's inputs time limit, for the
    # queue hop and a busy io worker.
    inputs_grace_seconds: float = 5.0
    # Re-read the routing table at least this often even when its mtime looks unchanged
    # (mtimes can be coarse); stat() is checked on every request.
    routing_recheck_seconds: float = 5.0
    # CELERY_VISIBILITY_TIMEOUT, the same value the workers get; None: Celery's default.
    visibility_timeout: float | None = None

    @classmethod
    def from_env(cls, env: Environ | None = None) -> GatewaySettings:
        """Read CS_ROUTING_TABLE, CS_GATEWAY_TOKEN, the REDIS_* variables and the optional
        CELERY_VISIBILITY_TIMEOUT, CS_GATEWAY_MAX_BODY_BYTES, CS_GATEWAY_INPUTS_GRACE_SECONDS,
        CS_ROUTING_RECHECK_SECONDS."""
        env = os.environ if env is None else env
        default = cls(Path(), "")
        return cls(
            routing_table_path=Path(required(env, "CS_ROUTING_TABLE")),
            redis_url=redis_url(env),
            token=optional(env, "CS_GATEWAY_TOKEN"),
            max_body_bytes=positive_int(env, "CS_GATEWAY_MAX_BODY_BYTES", default.max_body_bytes),
            inputs_grace_seconds=positive_number(env, "CS_GATEWAY_INPUTS_GRACE_SECONDS", default.inputs_grace_seconds),
            routing_recheck_seconds=positive_number(env, "CS_ROUTING_RECHECK_SECONDS", default.routing_recheck_seconds),
            visibility_timeout=optional_positive_number(env, "CELERY_VISIBILITY_TIMEOUT"),
        )
