"""Deliver a parse or sim result to the webserver: PUT `{COMP_URL}/inputs/api/` or
`{COMP_URL}/outputs/api/` with `Authorization: Token {COMP_API_TOKEN}`, as C/S did.

C/S made one attempt and lost results whenever the webserver was restarting; here attempts
back off exponentially within a bound (settings.CallbackPolicy). The token is only ever put
in the header: it appears in no log line, exception message or repr.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import requests

from cs_runtime.envelope import Envelope
from cs_runtime.metrics import PUSH_FAILURES, PUSH_RETRIES
from cs_runtime.settings import CallbackPolicy

log = logging.getLogger(__name__)

ResultKind = Literal["inputs", "outputs"]
# The task whose result goes to each endpoint (the metrics' `kind`).
TASK_OF_RESULT = {"inputs": "inputs_parse", "outputs": "sim"}

# Worth another attempt: the webserver is restarting, overloaded or behind a proxy that has
# no backend yet. Any other error (401 bad token, 400 bad payload) will not heal by waiting.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass
class ResultPoster:
    """PUTs result envelopes to the C/S webserver."""

    comp_url: str
    token: str = field(repr=False)
    policy: CallbackPolicy = field(default_factory=CallbackPolicy)
    sleep: Callable[[float], None] = time.sleep
    # The model's slug, for the metrics.
    model: str = ""

    def url(self, kind: ResultKind) -> str:
        return f"{self.comp_url.rstrip('/')}/{kind}/api/"

    def put(self, kind: ResultKind, envelope: Envelope) -> bool:
        """PUT `envelope` (which carries its job_id); True once the webserver accepted it."""
        url = self.url(kind)
        job_id = envelope.get("job_id")
        headers = {"Authorization": f"Token {self.token}"}
        labels = (self.model, TASK_OF_RESULT[kind])
        for attempt in range(1, self.policy.attempts + 1):
            if attempt > 1:
                PUSH_RETRIES.labels(*labels).inc()
            try:
                self.sleep(self.policy.delay_before(attempt))
                response = requests.put(
                    url, json=envelope, headers=headers, timeout=self.policy.request_timeout_seconds
                )
            # Exception, not only RequestException: Celery's soft time limit can go off while
            # we are here, and the result is still worth delivering.
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.ok:
                    log.info("job %s: result PUT to %s (attempt %d)", job_id, url, attempt)
                    return True
                problem = f"HTTP {response.status_code}"
                if response.status_code not in RETRYABLE_STATUS:
                    log.error("job %s: webserver refused the result at %s: %s", job_id, url, problem)
                    PUSH_FAILURES.labels(*labels).inc()
                    return False
            log.warning(
                "job %s: PUT to %s failed (attempt %d of %d): %s",
                job_id,
                url,
                attempt,
                self.policy.attempts,
                problem,
            )
        PUSH_FAILURES.labels(*labels).inc()
        log.error(
            "job %s: gave up delivering the result to %s; it stays in the result backend (gateway GET .../get/%s)",
            job_id,
            url,
            job_id,
        )
        return False
