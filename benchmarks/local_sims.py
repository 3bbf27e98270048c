"""Sims through local mode: a stand-in C/S webserver that notes when each result arrives, and a
helper that submits one sim to the gateway and waits for its result PUT.

Local mode (`cs_cluster.local.LocalCluster`) runs the processes the chart renders: Redis, the
gateway, each model's Celery workers, and each Dask model's scheduler and workers.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cs_cluster.local import LocalCluster, free_port

GATEWAY_TOKEN = "benchmark-gateway-token"  # noqa: S105 - throwaway, loopback only
COMP_API_TOKEN = "benchmark-comp-api-token"  # noqa: S105 - throwaway, loopback only


@dataclass(frozen=True)
class Arrival:
    """A result PUT: when it arrived (perf_counter) and what it said."""

    at: float
    status: str
    task_seconds: float | None
    body: dict[str, Any]


class ResultsWebserver:
    """Stands in for the C/S webserver: answers every PUT 200 and notes its arrival time."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: dict[str, Arrival] = {}
        self._arrived = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ResultsWebserver:
        webserver = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                arrived = time.perf_counter()  # first thing: the PUT is here
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                webserver.record(body, arrived)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def record(self, body: dict[str, Any], arrived: float) -> None:
        times = (body.get("meta") or {}).get("task_times") or [None]
        with self._arrived:
            self.arrivals[str(body.get("job_id"))] = Arrival(arrived, str(body.get("status")), times[0], body)
            self._arrived.notify_all()

    def wait_for(self, job_id: str, timeout: float) -> Arrival:
        with self._arrived:
            if not self._arrived.wait_for(lambda: job_id in self.arrivals, timeout):
                raise RuntimeError(f"no result PUT for job {job_id} within {timeout} s")
            return self.arrivals[job_id]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def local_cluster(config: Any, webserver: ResultsWebserver) -> LocalCluster:
    return LocalCluster(config, port=free_port(), comp_url=webserver.url, comp_api_token=COMP_API_TOKEN,
                        gateway_token=GATEWAY_TOKEN, log=lambda _: None)


@dataclass(frozen=True)
class SimTiming:
    latency: float  # submit to result PUT at the webserver
    task_seconds: float  # inside the sim task (the envelope's meta.task_times)
    result: dict[str, Any]  # the envelope the worker PUT


def run_sim(cluster: LocalCluster, webserver: ResultsWebserver, owner: str, title: str,
            adjustment: dict[str, Any], timeout: float = 300) -> SimTiming:
    """Submit one sim through the gateway and wait for its result PUT; it must succeed."""
    body = json.dumps({"meta_param_dict": {}, "adjustment": adjustment}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.gateway_port}/{owner}/{title}/sim", data=body, method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {GATEWAY_TOKEN}"})
    submitted = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
        job_id = str(json.loads(response.read())["job_id"])
    arrival = webserver.wait_for(job_id, timeout)
    if arrival.status != "SUCCESS":
        raise RuntimeError(f"sim {job_id} of {owner}/{title} answered {arrival.status}")
    return SimTiming(arrival.at - submitted, arrival.task_seconds or float("nan"), arrival.body)
