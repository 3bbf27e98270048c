"""Worker liveness without the broker: the main worker process touches a file, a probe reads
its age (`python -m cs_runtime.health`, see health.py).

`celery inspect ping` would make every probe a broadcast through Redis; a file's mtime costs
nothing. Everything here runs in the main worker process, not in the pool child that runs the
model, so the file keeps being touched while a long sim runs.

What a fresh file says: the main process's event loop is turning (a timer entry on the loop
notes each turn), or the worker is waiting for the broker to come back. The second case counts
as alive on purpose: restarting a worker because Redis is away cures nothing, and it would
kill the sim the worker is running. A main process that hangs, or dies, stops the beats. So does
a Redis that answers but refuses the worker's password (its Secret was rotated): waiting cannot
cure that, a restart can, since the restarted container reads the Secret again.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from celery import bootsteps  # type: ignore[import-untyped]

from cs_runtime.broker import credentials_refused

log = logging.getLogger(__name__)

# The loop counts as stuck when its timer entry has not run for this many intervals.
STALE_INTERVALS = 3


def beat(path: Path) -> None:
    """Create `path` or set its mtime to now."""
    try:
        path.touch()
    except OSError as exc:
        # A full or read-only /tmp: the probe will say so; the worker itself can still work.
        log.warning("cannot touch the heartbeat file %s: %s", path, exc)


def waiting_for_broker(worker: Any) -> bool:
    """True while the worker's consumer is (re)connecting to the broker: Celery clears
    `consumer.connection` when it loses the broker and sets it once connected again."""
    consumer = getattr(worker, "consumer", None)
    return consumer is not None and getattr(consumer, "connection", True) is None


def heartbeat_step(path: Path, interval_seconds: float, redis_url: str | None = None) -> type[Any]:
    """A worker bootstep that touches `path` every `interval_seconds` while the worker lives; with
    `redis_url`, not while it waits for a broker that refuses its credentials."""

    class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
        # The worker's timer: with the prefork pool it is fired by the main process's event
        # loop (the Hub), so its entries run only while that loop turns.
        requires = ("celery.worker.components:Timer",)
        label = "cs-heartbeat"

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            super().__init__(worker, **kwargs)
            self.last_turn = time.monotonic()
            self.timer_entry: Any = None
            self.stopping = threading.Event()
            self.thread: threading.Thread | None = None
            self.refused: str | None = None  # why Redis last refused the credentials

        def note_turn(self) -> None:
            self.last_turn = time.monotonic()

        def alive(self, worker: Any) -> bool:
            loop_turns = time.monotonic() - self.last_turn < STALE_INTERVALS * interval_seconds
            if loop_turns:
                return True
            if not waiting_for_broker(worker):
                return False
            refused = credentials_refused(redis_url) if redis_url else None
            if refused is not None:
                if refused != self.refused:
                    log.error(
                        "heartbeat: Redis refuses this worker's password (%s), as after the Redis Secret was "
                        "rotated; not touching %s, so the probe fails and the restarted container reads the "
                        "Secret again",
                        refused,
                        path,
                    )
                self.refused = refused
                return False
            self.refused = None
            return True

        def run(self, worker: Any) -> None:
            stale_logged = False
            while True:
                if self.alive(worker):
                    beat(path)
                    stale_logged = False
                elif not stale_logged and self.refused is None:
                    log.error(
                        "heartbeat: the worker's event loop has not turned for %.0f s; not touching %s",
                        time.monotonic() - self.last_turn,
                        path,
                    )
                    stale_logged = True
                if self.stopping.wait(interval_seconds):
                    return

        def start(self, worker: Any) -> None:
            log.info("heartbeat: touching %s every %g s", path, interval_seconds)
            self.last_turn = time.monotonic()
            self.stopping.clear()
            self.timer_entry = worker.timer.call_repeatedly(interval_seconds, self.note_turn)
            self.thread = threading.Thread(target=self.run, args=(worker,), name="cs-heartbeat", daemon=True)
            self.thread.start()

        def stop(self, worker: Any) -> None:
            self.stopping.set()
            if self.timer_entry is not None:
                self.timer_entry.cancel()
                self.timer_entry = None

    return Heartbeat
