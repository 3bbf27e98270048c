"""A stand-in for the C/S webserver: takes the results workers PUT and shows them.

Workers PUT sim results to `{COMP_URL}/outputs/api/` and parse results to `{COMP_URL}/inputs/api/`
with `Authorization: Token ...`. This server accepts both, checks the token when given one, keeps
each body, and prints one line per result (never the token), so that a local run can be followed
from the command line and tested without the real webserver.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RESULT_PATHS = ("/outputs/api/", "/inputs/api/")


@dataclass(frozen=True)
class ReceivedResult:
    path: str
    authorization: str
    body: dict[str, Any]


class StandInWebserver:
    """Records every result PUT; `token` makes it answer 401 to any other token."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 on_result: Callable[[ReceivedResult], None] | None = None) -> None:
        self.token = token
        self.on_result = on_result
        self.results: list[ReceivedResult] = []
        self.status_code = 200
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self.host, self.port = str(self._server.server_address[0]), int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                path = self.path if self.path.endswith("/") else self.path + "/"
                if path not in RESULT_PATHS:
                    self._answer(404, {"error": f"no route {self.path}"})
                    return
                authorization = self.headers.get("Authorization", "")
                if server.token is not None and authorization != f"Token {server.token}":
                    self._answer(401, {"error": "bad token"})
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                except ValueError:
                    self._answer(400, {"error": "body is not JSON"})
                    return
                result = ReceivedResult(path, authorization, body)
                with server._changed:
                    server.results.append(result)
                    server._changed.notify_all()
                if server.on_result:
                    server.on_result(result)
                self._answer(server.status_code, {})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per result is printed by on_result instead

        return Handler

    def start(self) -> StandInWebserver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, job_id: str, timeout: float = 30) -> ReceivedResult:
        """The result carrying `job_id`, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for result in self.results:
                    if result.body.get("job_id") == job_id:
                        return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no result for job {job_id} within {timeout} s")
                self._changed.wait(remaining)


def describe(result: ReceivedResult) -> str:
    """One line for a received result: kind, job, status, and what came with it."""
    body = result.body
    kind = "sim" if result.path == "/outputs/api/" else "parse"
    outputs = body.get("outputs") or {}
    titles = [item.get("title") for item in outputs.get("renderable", []) if isinstance(item, dict)]
    detail = f"outputs: {', '.join(map(str, titles))}" if titles else ""
    if body.get("status") == "FAIL":
        last_lines = str(body.get("traceback") or "").strip().splitlines()[-1:]
        detail = f"error: {last_lines[0]}" if last_lines else "no traceback"
    return f"{kind} {body.get('job_id')} {body.get('status')} {detail}".rstrip()
