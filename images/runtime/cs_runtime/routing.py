"""The gateway's routing table: routes.json, rendered by the chart into a ConfigMap.

The file is re-read when it changes, so adding a model to the chart reaches a running
gateway without a restart (C/S had to restart its gateway). Kubernetes updates a mounted
ConfigMap by swapping a symlink; os.stat follows it, so a new inode or mtime shows the change.
A table that fails to parse never replaces a good one: the gateway keeps serving the last
good table and logs why the new one was refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cs_runtime.errors import RoutingTableError, UnknownModelError
from cs_runtime.names import TASK_KINDS, ModelNames, TaskKind, model_slug

log = logging.getLogger(__name__)

CLUSTER_TYPES = frozenset({"celery", "dask", "single-core"})


@dataclass(frozen=True)
class Route:
    """Where the gateway sends one model's jobs."""

    slug: str
    owner: str
    title: str
    cluster_type: str
    inputs_queue: str
    sim_queue: str
    tasks: Mapping[TaskKind, str]
    dask_scheduler_address: str | None
    sim_time_limit: float
    inputs_time_limit: float
    # Before every Redis key of this model's queues and results ("": none); see names.py.
    redis_key_prefix: str = ""


def _field(entry: Mapping[str, Any], slug: str, name: str, kind: type | tuple[type, ...]) -> Any:
    value = entry.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RoutingTableError(f"model {slug!r}: field {name!r} is missing or has the wrong type")
    return value


def _seconds(entry: Mapping[str, Any], slug: str, name: str) -> float:
    value = float(_field(entry, slug, name, (int, float)))
    if not value > 0:
        raise RoutingTableError(f"model {slug!r}: {name!r} must be a positive number of seconds")
    return value


def parse_route(slug: str, entry: object) -> Route:
    """One entry of `models`, checked against the contract's format."""
    if not isinstance(entry, Mapping):
        raise RoutingTableError(f"model {slug!r}: entry must be an object")
    owner = _field(entry, slug, "owner", str)
    title = _field(entry, slug, "title", str)
    if model_slug(owner, title) != slug:
        # The gateway finds a model by clean(owner)-clean(title); any other key is unreachable.
        raise RoutingTableError(f"model {slug!r}: key must be {model_slug(owner, title)!r}, from its owner and title")
    cluster_type = _field(entry, slug, "clusterType", str)
    if cluster_type not in CLUSTER_TYPES:
        raise RoutingTableError(f"model {slug!r}: unknown clusterType {cluster_type!r}")
    task_entry = _field(entry, slug, "tasks", Mapping)
    tasks: dict[TaskKind, str] = {}
    for kind in TASK_KINDS:
        name = task_entry.get(kind)
        if not isinstance(name, str) or not name:
            raise RoutingTableError(f"model {slug!r}: tasks.{kind} is missing")
        tasks[kind] = name
    prefix = entry.get("redisKeyPrefix") or ""
    if prefix not in ("", ModelNames(owner, title).redis_key_prefix):
        raise RoutingTableError(f"model {slug!r}: redisKeyPrefix must be {ModelNames(owner, title).redis_key_prefix!r}")
    address = entry.get("daskSchedulerAddress")
    if address is not None and not isinstance(address, str):
        raise RoutingTableError(f"model {slug!r}: daskSchedulerAddress must be a string or null")
    return Route(
        slug=slug,
        owner=owner,
        title=title,
        cluster_type=cluster_type,
        inputs_queue=_field(entry, slug, "inputsQueue", str),
        sim_queue=_field(entry, slug, "simQueue", str),
        tasks=tasks,
        dask_scheduler_address=address,
        sim_time_limit=_seconds(entry, slug, "simTimeLimit"),
        inputs_time_limit=_seconds(entry, slug, "inputsTimeLimit"),
        redis_key_prefix=prefix,
    )


def parse_routing_table(text: str | bytes) -> dict[str, Route]:
    """`{"models": {slug: entry}}` -> {slug: Route}; RoutingTableError says what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RoutingTableError(f"not valid JSON: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("models"), Mapping):
        raise RoutingTableError('must be an object with a "models" object')
    return {str(slug): parse_route(str(slug), entry) for slug, entry in data["models"].items()}


class RoutingTable:
    """The routes in a routes.json file, kept up to date with the file."""

    def __init__(
        self,
        path: Path,
        recheck_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._routes: dict[str, Route] | None = None
        self._problem: str | None = None  # why the file was last refused, if it was
        self._stat_key: tuple[int, ...] | None = None
        self._digest: str | None = None
        self._checked_at = float("-inf")

    def lookup(self, owner: str, title: str) -> Route:
        """The route of the model a URL names; UnknownModelError if the table lacks it."""
        slug = model_slug(owner, title)
        route = self.routes().get(slug)
        if route is None:
            raise UnknownModelError(f"unknown model {owner}/{title} (looked up as {slug!r})")
        return route

    def routes(self) -> Mapping[str, Route]:
        """All routes, after re-reading the file if it changed."""
        with self._lock:
            self._refresh()
            if self._routes is None:
                raise RoutingTableError(f"no routing table loaded from {self.path}: {self._problem}")
            return self._routes

    def _refresh(self) -> None:
        now = self._clock()
        try:
            stat = self.path.stat()
        except OSError as exc:
            self._refuse(f"cannot read it: {exc.strerror or exc}")
            return
        stat_key = (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_dev)
        if stat_key == self._stat_key and now - self._checked_at < self.recheck_seconds:
            return
        self._stat_key, self._checked_at = stat_key, now
        try:
            text = self.path.read_bytes()
        except OSError as exc:
            self._refuse(f"cannot read it: {exc.strerror or exc}")
            return
        digest = hashlib.sha256(text).hexdigest()
        if digest == self._digest:
            return
        try:
            routes = parse_routing_table(text)
        except RoutingTableError as exc:
            # Remember the digest so a bad file is reported once, not on every request.
            self._digest = digest
            self._refuse(str(exc))
            return
        self._routes, self._digest, self._problem = routes, digest, None
        log.info("routing table %s loaded: %s", self.path, ", ".join(sorted(routes)) or "no models")

    def _refuse(self, problem: str) -> None:
        if problem != self._problem:
            kept = "keeping the previous table" if self._routes is not None else "no table yet"
            log.error("routing table %s refused (%s): %s", self.path, kept, problem)
        self._problem = problem
