"""Result delivery to the webserver, against a real HTTP server on loopback."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from cs_runtime.callback import ResultPoster
from cs_runtime.settings import CallbackPolicy

from .support import COMP_API_TOKEN, RecordingWebserver

QUICK = CallbackPolicy(attempts=8, backoff_seconds=0.05, backoff_max_seconds=0.2, request_timeout_seconds=2)


@pytest.fixture
def server() -> Iterator[RecordingWebserver]:
    server = RecordingWebserver()
    server.start()
    yield server
    server.stop()


def test_put_goes_to_the_right_url_with_the_token(server: RecordingWebserver) -> None:
    poster = ResultPoster(server.url + "/", COMP_API_TOKEN, QUICK)
    assert poster.put("outputs", {"job_id": "j1", "status": "SUCCESS"})
    assert poster.put("inputs", {"job_id": "j2", "status": "SUCCESS"})
    outputs, inputs = server.put_for("j1"), server.put_for("j2")
    assert (outputs.path, inputs.path) == ("/outputs/api/", "/inputs/api/")
    assert outputs.headers["Authorization"] == f"Token {COMP_API_TOKEN}"
    assert outputs.body == {"job_id": "j1", "status": "SUCCESS"}


def test_retries_while_the_webserver_is_down(server: RecordingWebserver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server.stop()
    restart = threading.Timer(0.3, server.start)
    restart.start()
    started = time.monotonic()
    assert ResultPoster(server.url, COMP_API_TOKEN, QUICK).put("outputs", {"job_id": "late"})
    assert server.put_for("late").path == "/outputs/api/"
    assert time.monotonic() - started < 5
    assert "failed (attempt 1 of 8)" in caplog.text
    assert COMP_API_TOKEN not in caplog.text


def test_gives_up_after_the_configured_attempts(caplog: pytest.LogCaptureFixture) -> None:
    policy = CallbackPolicy(attempts=3, backoff_seconds=0.01, backoff_max_seconds=0.01, request_timeout_seconds=1)
    waits: list[float] = []
    poster = ResultPoster("http://127.0.0.1:9", COMP_API_TOKEN, policy, sleep=waits.append)  # port 9: discard
    assert not poster.put("outputs", {"job_id": "lost"})
    assert waits == [0, 0.01, 0.01]
    assert "gave up delivering the result" in caplog.text
    assert COMP_API_TOKEN not in caplog.text


@pytest.mark.parametrize(("status", "attempts"), [(401, 1), (503, 3)])
def test_only_transient_errors_are_retried(server: RecordingWebserver, status: int, attempts: int) -> None:
    server.status_code = status
    policy = CallbackPolicy(attempts=3, backoff_seconds=0.01, backoff_max_seconds=0.01)
    assert not ResultPoster(server.url, COMP_API_TOKEN, policy).put("inputs", {"job_id": "x"})
    assert len(server.puts) == attempts


def test_token_is_not_in_repr() -> None:
    assert COMP_API_TOKEN not in repr(ResultPoster("http://x", COMP_API_TOKEN))
