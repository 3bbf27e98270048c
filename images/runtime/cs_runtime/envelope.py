"""The result envelope every task returns: C/S's `{status, traceback, meta: {task_times}}`.

A model's exception never escapes a task: it becomes a FAIL envelope carrying the traceback,
because the webserver shows that traceback to the user and waits for *some* answer.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Final

from cs_runtime.errors import ModelContractError

Envelope = dict[str, Any]
JsonObject = dict[str, Any]

SUCCESS: Final = "SUCCESS"
FAIL: Final = "FAIL"


def ensure_json(value: object, what: str) -> None:
    """Raise ModelContractError unless `value` survives JSON (Celery's serializer and the PUT).

    Checked here, inside the task, so the user sees a FAIL envelope that says what went
    wrong rather than the worker failing to store a result it cannot encode.
    """
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelContractError(
            f"{what} must be JSON-serializable (bytes need encoding, e.g. base64): {exc}"
        ) from None


def run_in_envelope(work: Callable[[], Mapping[str, Any]]) -> Envelope:
    """Run `work` and wrap what it returns (or the exception it raises) in an envelope.

    The mapping `work` returns is merged into the envelope (C/S flattens it: inputs_get
    answers `{status, meta_parameters, model_parameters, meta}`). Exception includes
    Celery's SoftTimeLimitExceeded, so a sim over its time limit answers FAIL too.
    """
    started = time.perf_counter()
    envelope: Envelope
    try:
        body = dict(work())
        ensure_json(body, "the model's result")
        envelope = {**body, "status": SUCCESS}
    except Exception:
        envelope = {"status": FAIL, "traceback": traceback.format_exc()}
    meta = envelope.get("meta")
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    meta["task_times"] = [time.perf_counter() - started]
    envelope["meta"] = meta
    return envelope


def failure_envelope(message: str, job_id: str | None = None) -> Envelope:
    """A FAIL envelope for a job that died outside our task code (e.g. killed at its hard
    time limit), so clients always get the same shape."""
    envelope: Envelope = {"status": FAIL, "traceback": message, "meta": {"task_times": []}}
    if job_id is not None:
        envelope["job_id"] = job_id
    return envelope
