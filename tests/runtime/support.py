"""Real processes for the runtime tests: a Redis server, a stand-in C/S webserver, Celery
workers started with the chart's command, and small helpers to wait on them.

Nothing here is a mock: the workers are `celery --app cs_runtime.worker:app worker ...`
subprocesses configured only through the environment, as the chart configures them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import redis
from celery import Celery  # type: ignore[import-untyped]

from cs_runtime.load import UNACKED_KEY
from cs_runtime.names import TASK_KINDS, ModelNames
from cs_runtime.settings import redis_url

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "examples" / "models"
CELERY_SUM_CONFIG = MODELS / "celery-sum" / "cs-config"
DASK_PI_CONFIG = MODELS / "dask-pi" / "cs-config"

CELERY_SUM = ModelNames("cs-examples", "Celery-Sum")
DASK_PI = ModelNames("cs-examples", "Dask-Pi")

# A password with characters that must be percent-encoded in the Redis URL.
REDIS_PASSWORD = "pa:ss/w@rd"
COMP_API_TOKEN = "token-that-must-never-be-logged-7f3a"

T = TypeVar("T")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `check` until it returns something other than None/False; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def copies_of_job(client: redis.Redis, job_id: str, queues: Sequence[str], prefix: str = "") -> list[str]:
    """Where Redis still holds a message of task `job_id`: waiting in one of `queues`, or
    delivered and unacknowledged (which Redis hands out again after the visibility timeout);
    `prefix`: the model's Redis key prefix (CS_REDIS_KEY_PREFIX), before every one of its keys."""
    needle = job_id.encode()
    found = [f"queue {queue}" for queue in queues for entry in client.lrange(prefix + queue, 0, -1) if needle in entry]
    found += [f"unacked {tag!r}" for tag, entry in client.hgetall(prefix + UNACKED_KEY).items() if needle in entry]
    return found


def wait_until_nothing_can_deliver_again(client: redis.Redis, job_id: str, queues: Sequence[str],
                                         timeout: float, prefix: str = "") -> None:
    """Exactly once is a fact only when no copy of the job's message is left to deliver: the one
    delivery was acknowledged (with acks_late, once the task returned, its result PUT and that
    PUT's retries included) and nothing waits in a queue. Waiting a fixed second or two after the
    first result would pass a duplicate that arrives after a visibility timeout. Checked twice,
    half a second apart: a message a worker has just popped from its queue is in neither place
    for the instant before kombu records it as unacknowledged."""

    def nothing_left() -> bool:
        if copies_of_job(client, job_id, queues, prefix):
            return False
        time.sleep(0.5)
        return not copies_of_job(client, job_id, queues, prefix)

    wait_until(nothing_left, timeout, f"no copy of job {job_id} left in Redis (acknowledged, none queued)")


def child_pids(pid: int) -> list[int]:
    """The direct children of process `pid` (from /proc), e.g. a Celery worker's pool processes."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name may hold spaces and parentheses; the fields after it do not.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


@dataclass
class RedisServer:
    """A redis-server on a free loopback port, its data in a temporary directory."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    password: str = REDIS_PASSWORD

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--save", "", "--appendonly", "no",
                "--requirepass", self.password, "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = self.client()
        wait_until(lambda: self._ping(client), 10, "redis-server to answer PING")
        return self

    @staticmethod
    def _ping(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    def env(self) -> dict[str, str]:
        """The REDIS_* variables the chart sets."""
        return {
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(self.port),
            "REDIS_DB": "0",
            "REDIS_PASSWORD": self.password,
        }

    @property
    def url(self) -> str:
        return redis_url(self.env())

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


@dataclass(frozen=True)
class RecordedPut:
    path: str
    headers: Mapping[str, str]
    body: dict[str, Any]


class RecordingWebserver:
    """The stand-in C/S webserver: records every PUT; can go down and come back on its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.puts: list[RecordedPut] = []
        self.status_code = 200
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with recorder._changed:
                    recorder.puts.append(RecordedPut(self.path, dict(self.headers.items()), body))
                    recorder._changed.notify_all()
                self.send_response(recorder.status_code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def down(self) -> Iterator[None]:
        """The webserver is unreachable inside the block, and back after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def put_for(self, job_id: str, timeout: float = 20) -> RecordedPut:
        """Wait for the PUT carrying `job_id`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for put in self.puts:
                    if put.body.get("job_id") == job_id:
                        return put
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no PUT for job {job_id} within {timeout} s; got {self.puts}")
                self._changed.wait(remaining)


@dataclass
class WorkerProcess:
    """A Celery worker started with the chart's command line."""

    names: ModelNames
    role: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.role} worker exited with {self.process.returncode}:\n{self.log()}")
            return " ready." in self.log()

        wait_until(ready, timeout, f"the {self.role} worker of {self.names.key} to be ready", interval=0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # warm shutdown
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only its pool
                self.process.wait(timeout=5)


def worker_command(names: ModelNames, role: str) -> list[str]:
    """docs/runtime-contract.md's io/sim worker command (`python -m celery` is `celery`).

    The hostname adds the model key so two test workers of one role differ.
    """
    queue = names.inputs_queue if role == "io" else names.sim_queue
    return [
        sys.executable, "-m", "celery", "--app", "cs_runtime.worker:app", "worker",
        "--queues", queue, "--concurrency", "1", "--prefetch-multiplier", "1",
        "--hostname", f"{role}-{names.key}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
    ]  # fmt: skip


def worker_env(
    names: ModelNames,
    role: str,
    cluster_type: str,
    model_config: Path,
    redis_server: RedisServer,
    **extra: str,
) -> dict[str, str]:
    """The environment the chart gives a worker, with the model's cs-config on PYTHONPATH
    (as in local mode) and quick result-delivery retries."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CS_", "COMP_", "DASK_"))}
    env.update(redis_server.env())
    env.update(
        PYTHONPATH=os.pathsep.join([str(model_config), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        OWNER=names.owner,
        TITLE=names.title,
        CS_WORKER_ROLE=role,
        CS_CLUSTER_TYPE=cluster_type,
        SIM_TIME_LIMIT="60",
        INPUTS_TIME_LIMIT="10",
        COMP_API_TOKEN=COMP_API_TOKEN,
        BUCKET="unused-in-tests",
        CS_CALLBACK_ATTEMPTS="12",
        CS_CALLBACK_BACKOFF_SECONDS="0.2",
        CS_CALLBACK_BACKOFF_MAX_SECONDS="1",
        CS_CALLBACK_TIMEOUT_SECONDS="2",
        CS_HARD_TIME_LIMIT_GRACE_SECONDS="5",
    )
    env.update(extra)
    return env


def start_worker(names: ModelNames, role: str, env: Mapping[str, str], log_dir: Path) -> WorkerProcess:
    """Start (not wait for) a worker; its output goes to `log_dir/{role}-{key}.log`."""
    log_path = log_dir / f"{role}-{names.key}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            worker_command(names, role),
            env=dict(env),
            cwd=log_dir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(names, role, log_path, process)


def celery_client(redis_server: RedisServer) -> Any:
    """A Celery app that only sends tasks by name and reads results, as the gateway does."""
    app = Celery("tests", broker=redis_server.url, backend=redis_server.url, set_as_current=False)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    return app


def route_entry(
    names: ModelNames,
    cluster_type: str = "celery",
    dask_scheduler_address: str | None = None,
    sim_time_limit: float = 60,
    inputs_time_limit: float = 10,
    redis_key_prefix: str = "",
) -> dict[str, Any]:
    """One `models` entry of routes.json in the contract's format."""
    prefix = {"redisKeyPrefix": redis_key_prefix} if redis_key_prefix else {}
    return {
        **prefix,
        "owner": names.owner,
        "title": names.title,
        "clusterType": cluster_type,
        "inputsQueue": names.inputs_queue,
        "simQueue": names.sim_queue,
        "tasks": {kind: names.task(kind) for kind in TASK_KINDS},
        "daskSchedulerAddress": dask_scheduler_address,
        "simTimeLimit": sim_time_limit,
        "inputsTimeLimit": inputs_time_limit,
    }


def write_routes(path: Path, *entries: dict[str, Any]) -> Path:
    """Write routes.json as the chart's ConfigMap holds it (atomically, as a kubelet does)."""
    table = {"models": {ModelNames(e["owner"], e["title"]).slug: e for e in entries}}
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(table))
    partial.replace(path)
    return path
