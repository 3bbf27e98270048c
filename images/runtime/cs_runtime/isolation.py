"""Model code runs in a process of its own, so nothing it changes reaches the runtime or the next task.

A C/S model may call `warnings.filterwarnings("error")`, set environment variables, chdir, configure
logging, install signal handlers or monkeypatch modules inside `run_model`. In the worker's pool
process those changes would outlive the call: the runtime's own Redis client and result PUT, and
every later task, would run under them. So each call of a model function (get_inputs,
validate_inputs, get_version, and a Celery model's run_model) runs in a child forked from the pool
process: it starts from the runtime's state plus the model's import-time settings, and whatever it
changes dies with it. The answer comes back pickled through a pipe.

Time limits still reach the model: Celery's soft time limit (SIGUSR1 to the pool process) is passed
on to the child, where the model gets SoftTimeLimitExceeded as before; at the hard limit the pool
process is killed and the child with it (PR_SET_PDEATHSIG).

Importing the model (once, in the worker's main process) is guarded too: the warnings filters,
environment, working directory, logging and signal handlers the import changes are put back for
the runtime and replayed in each child, so the model still runs with them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cs_runtime.errors import ModelRunError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass
class ProcessState:
    """What a model can change in a process that a snapshot can put back (monkeypatched modules
    cannot be: calls run in a forked child for them)."""

    warning_filters: list[Any]
    environment: dict[str, str]
    working_directory: str
    root_level: int
    root_handlers: list[logging.Handler]
    logging_disabled: int
    loggers: dict[str, tuple[int, list[logging.Handler], bool, bool]]
    signal_handlers: dict[int, Any] = field(default_factory=dict)

    @classmethod
    def capture(cls) -> ProcessState:
        loggers = {
            name: (logger.level, list(logger.handlers), logger.propagate, logger.disabled)
            for name, logger in logging.root.manager.loggerDict.items()
            if isinstance(logger, logging.Logger)
        }
        handlers = {}
        for number in signal.valid_signals():
            with contextlib.suppress(ValueError, OSError):
                handler = signal.getsignal(number)
                if handler is not None:  # None: installed outside Python, cannot be restored from here
                    handlers[int(number)] = handler
        return cls(
            warning_filters=list(warnings.filters),
            environment=dict(os.environ),
            working_directory=os.getcwd(),
            root_level=logging.root.level,
            root_handlers=list(logging.root.handlers),
            logging_disabled=logging.root.manager.disable,
            loggers=loggers,
            signal_handlers=handlers,
        )

    def restore(self) -> None:
        warnings.filters[:] = self.warning_filters  # type: ignore[index]  # in place: _warnings shares the list
        warnings._filters_mutated()  # type: ignore[attr-defined]  # drop the warnings' caches
        if dict(os.environ) != self.environment:
            os.environ.clear()
            os.environ.update(self.environment)
        with contextlib.suppress(OSError):
            os.chdir(self.working_directory)
        logging.root.setLevel(self.root_level)
        logging.root.handlers[:] = self.root_handlers
        logging.disable(self.logging_disabled)
        for name, logger in logging.root.manager.loggerDict.items():
            if isinstance(logger, logging.Logger) and name in self.loggers:
                logger.level, handlers, logger.propagate, logger.disabled = self.loggers[name]
                logger.handlers[:] = handlers
        for number, handler in self.signal_handlers.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                if signal.getsignal(number) is not handler:
                    signal.signal(number, handler)


@contextlib.contextmanager
def guarded_import() -> Iterator[list[ProcessState]]:
    """Around importing the model: yields a list that receives the model's import-time state,
    and puts the runtime's own state back afterwards."""
    runtime_state = ProcessState.capture()
    model_state: list[ProcessState] = []
    try:
        yield model_state
    finally:
        model_state.append(ProcessState.capture())
        runtime_state.restore()


def _die_with_parent(parent: int) -> None:
    """The child is killed when its parent (the pool process) dies, e.g. at the hard time limit."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _soft_time_limit(signum: int, frame: Any) -> None:
    """In the child: Celery's soft time limit, as the model would have met it in the pool process."""
    from celery.exceptions import SoftTimeLimitExceeded  # type: ignore[import-untyped]

    raise SoftTimeLimitExceeded()


def _child(function: Callable[..., Any], args: tuple[Any, ...], write_fd: int, parent: int,
           model_state: ProcessState | None) -> None:
    """In the forked child: run, send the answer, exit without running the parent's clean-up."""
    try:
        _die_with_parent(parent)
        if model_state is not None:
            model_state.restore()
        signal.signal(signal.SIGUSR1, _soft_time_limit)  # passed on by the parent (call_isolated)
        try:
            answer: tuple[str, Any] = ("ok", function(*args))
        except BaseException:
            answer = ("error", traceback.format_exc())
        try:
            data = pickle.dumps(answer)
        except Exception:
            data = pickle.dumps(("error", "the model's answer cannot be passed back to the worker:\n"
                                 + traceback.format_exc()))
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


def call_isolated(function: Callable[..., Any], *args: Any, model_state: ProcessState | None = None) -> Any:
    """`function(*args)` in a forked child; what it returned, or ModelRunError with its traceback."""
    from celery.exceptions import SoftTimeLimitExceeded

    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(function, args, write_fd, parent, model_state)
    os.close(write_fd)
    chunks: list[bytes] = []
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            while True:
                try:
                    chunk = pipe.read1(1 << 16)
                except SoftTimeLimitExceeded:
                    # Celery's soft limit, raised in this process: the model gets it, as before.
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGUSR1)
                    continue
                if not chunk:
                    break
                chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise
    if not chunks:
        how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit status {os.waitstatus_to_exitcode(status)}")
        raise ModelRunError(f"the model's process ended without an answer ({how}): it may have called "
                            "os._exit or been killed, e.g. out of memory")
    kind, payload = pickle.loads(b"".join(chunks))  # noqa: S301 - our own child's answer
    if kind == "error":
        raise ModelRunError(payload)
    return payload
