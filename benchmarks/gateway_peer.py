"""Benchmark 3b: sim submits at 1, 8 and 32 concurrent clients: direct `send_task`, C/S 0.16's
gateway (the peer), and ours.

- **direct**: Celery's `send_task` of the sim from the client itself: no HTTP hop at all (the
  floor). One Celery app, its producer pool as large as the number of client threads.
- **peer**: `peer_gateway.py`, a stand-in of C/S 0.16's submit path (`signature(...).delay()` through
  an app with a Redis result backend, then LLEN), under gunicorn as C/S ran it: 2 sync workers,
  which close every connection.
- **ours**: the gateway as the chart starts it (local mode's render of examples/worker_config.yaml:
  the rendered gunicorn command and environment), with the bearer token, body validation and the
  routing table on. Clients keep their connection (HTTP/1.1 keep-alive), as a webserver's pooled
  client does. Also, to show what each change to the command bought, the same app under
  **ours + access log** (the chart's command with gunicorn's access log, as it had) and **ours,
  before** (the chart's command before: 2 sync workers, which close every connection, and the
  access log). A last table times the gateway's Redis work per submit in-process, as it is and as
  it was (SET, Celery's plain send_task, LLEN: three round trips, a new redis-py client per
  message, a repr of the inputs).

All share one real redis-server (local mode's, with the rendered config and password). HTTP
clients are asyncio connections in this process, one per concurrent client, each sending its
requests one after another; a client whose connection the server closes opens a new one, and that
connect is part of the request's latency. Contenders alternate within each round, the order
rotating. Queues are emptied after every run (no workers consume them).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery  # type: ignore[import-untyped]
from gateway_submit import GatewayOnlyCluster
from harness import (
    EXAMPLE_CONFIG,
    RunSettings,
    Table,
    fmt_ratio,
    fmt_seconds,
    interleaved,
    load_text,
    median,
    percentile,
    verdict,
)
from local_sims import GATEWAY_TOKEN

from cs_cluster.local import free_port, port_is_open
from cs_runtime.jobs import JOB_RECORD_SECONDS, JobClient, job_key
from cs_runtime.names import ModelNames
from cs_runtime.settings import redis_url

MODEL = ModelNames("cs-examples", "Celery-Sum")
SIM_PATH = f"/{MODEL.owner}/{MODEL.title}/sim"
BODY = json.dumps({"meta_param_dict": {}, "adjustment": {"sum": {"a": [{"value": 40}], "b": [{"value": 2}]}}})
TARGET_ADDED_P50 = 0.5e-3  # ours over direct at p50, one client
TARGET_PEER_RATIO = 2.0  # ours / peer sims per second at 32 clients
DIRECT, PEER, OURS = "direct `send_task`", "peer: C/S 0.16 stand-in (2 sync workers)", "ours (the chart's command)"
OURS_LOGGED, OURS_BEFORE = "ours + gunicorn's access log", "ours, before: 2 sync workers + access log"
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Plan:
    rounds: int
    requests: dict[int, int]  # concurrency -> requests per run
    warm_up: int


FULL_PLAN = Plan(rounds=3, requests={1: 400, 8: 1600, 32: 3200}, warm_up=50)
QUICK_PLAN = Plan(rounds=1, requests={1: 10, 8: 16, 32: 32}, warm_up=4)


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    cpu_per_sim: list[float] = field(default_factory=list)  # the server's processes, seconds


def process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its children (gunicorn's master and workers),
    from /proc: what serving cost, whatever else ran on the machine at the time."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue  # a process that ended meanwhile
    return total


# -- clients --------------------------------------------------------------------------------------
def http_run(port: int, concurrency: int, count: int, token: str | None) -> tuple[list[float], float]:
    """`count` sim POSTs from `concurrency` keep-alive clients; (latency of each, wall seconds)."""
    headers = [f"POST {SIM_PATH} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
               f"Content-Length: {len(BODY)}"] + ([f"Authorization: Bearer {token}"] if token else [])
    request = ("\r\n".join(headers) + "\r\n\r\n" + BODY).encode()
    latencies: list[float] = []

    async def client(requests: int) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        for _ in range(requests):
            started = time.perf_counter()
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            status = int(head.split(" ", 2)[1])
            length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200 or b"job_id" not in body:
                raise RuntimeError(f"port {port} answered {status}: {body[:200]!r}")
            if "connection: close" in head:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(client(count // concurrency) for _ in range(concurrency)))
        return time.perf_counter() - started

    return latencies, asyncio.run(main())


class DirectSender:
    """Celery's send_task from the client, in `concurrency` threads sharing one app."""

    def __init__(self, broker_url: str) -> None:
        self.app = Celery("bench-direct", broker=broker_url, set_as_current=False)
        self.app.conf.update(task_serializer="json", accept_content=["json"], broker_pool_limit=64)

    def run(self, concurrency: int, count: int) -> tuple[list[float], float]:
        latencies: list[float] = []
        lock = threading.Lock()
        start = threading.Barrier(concurrency + 1)

        def client() -> None:
            mine = []
            start.wait()
            for _ in range(count // concurrency):
                job_id = str(uuid.uuid4())
                began = time.perf_counter()
                self.app.send_task(MODEL.task("sim"), args=[job_id, {}, {"sum": {}}], queue=MODEL.sim_queue,
                                   task_id=job_id)
                mine.append(time.perf_counter() - began)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        return latencies, time.perf_counter() - began


# -- servers --------------------------------------------------------------------------------------
def variant_command(command: list[str], port: int, *, sync: bool) -> list[str]:
    """The rendered gunicorn command with gunicorn's access log on, on `port`; with `sync`, as the
    chart had it before (2 sync workers: no threads, no keep-alive)."""
    dropped = ("--bind", "--workers", "--worker-class", "--threads", "--keep-alive") if sync else ("--bind",)
    adjusted = [command[0], "--bind", f"127.0.0.1:{port}", "--access-logfile", "-"]
    adjusted += ["--workers", "2"] if sync else []
    parts = iter(command[1:])
    for part in parts:
        if part in dropped:
            next(parts)
        else:
            adjusted.append(part)
    return adjusted


def start_server(command: list[str], environment: dict[str, str], port: int, cwd: Path | None = None) -> Any:
    process = subprocess.Popen(command, env=environment, cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not port_is_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{command[0]} on port {port} did not start")
        time.sleep(0.1)
    return process


def empty_queues(client: redis.Redis) -> None:
    """Delete the waiting messages (lists) only: kombu's binding sets must stay, or publishes vanish."""
    for key in client.scan_iter(match="*queue*", count=1000):
        if client.type(key) == b"list":
            client.delete(key)


# -- the benchmark --------------------------------------------------------------------------------
def run(settings: RunSettings, log: Callable[[str], None]) -> list[Table]:
    plan = QUICK_PLAN if settings.quick else FULL_PLAN
    cluster = GatewayOnlyCluster(EXAMPLE_CONFIG, port=free_port(), gateway_token=GATEWAY_TOKEN, log=lambda _: None)
    log("gateway-peer: starting redis-server and the gateway from the chart's render")
    cluster.start()
    servers: list[Any] = []
    try:
        gateway = next(running for running in cluster.running if running.spec.component == "gateway")
        url = redis_url(gateway.spec.environment)
        command = [str(Path(sys.executable).parent / "gunicorn"), *gateway.spec.command[1:]] \
            if gateway.spec.command[0] == "gunicorn" else list(gateway.spec.command)
        logged_port, before_port, peer_port = free_port(), free_port(), free_port()
        for port, sync in ((logged_port, False), (before_port, True)):
            servers.append(start_server(variant_command(command, port, sync=sync), gateway.spec.environment, port))
        peer_environment = {**os.environ, "CS_PEER_REDIS_URL": url}
        servers.append(start_server([str(Path(sys.executable).parent / "gunicorn"), "--workers", "2", "--bind",
                                     f"127.0.0.1:{peer_port}", "peer_gateway:app"], peer_environment, peer_port,
                                    cwd=HERE))
        queues = redis.Redis.from_url(url)
        direct = DirectSender(url)
        server_pids = {PEER: servers[2].pid, OURS: gateway.process.pid, OURS_LOGGED: servers[0].pid,
                       OURS_BEFORE: servers[1].pid}
        contenders: dict[str, Callable[[int, int], tuple[list[float], float]]] = {
            DIRECT: direct.run,
            PEER: lambda c, n: http_run(peer_port, c, n, None),
            OURS: lambda c, n: http_run(cluster.gateway_port, c, n, GATEWAY_TOKEN),
            OURS_LOGGED: lambda c, n: http_run(logged_port, c, n, GATEWAY_TOKEN),
            OURS_BEFORE: lambda c, n: http_run(before_port, c, n, GATEWAY_TOKEN),
        }
        for submit in contenders.values():
            submit(1, plan.warm_up)
        empty_queues(queues)
        results: dict[tuple[str, int], Result] = {}
        names = list(contenders)
        for number in range(plan.rounds):
            log(f"gateway-peer: round {number + 1}/{plan.rounds}")
            for concurrency, count in plan.requests.items():
                shift = (number + concurrency) % len(names)
                for name in names[shift:] + names[:shift]:
                    cpu_before = process_tree_cpu(server_pids[name]) if name in server_pids else 0.0
                    latencies, seconds = contenders[name](concurrency, count)
                    result = results.setdefault((name, concurrency), Result())
                    result.latencies += latencies
                    result.rates.append(len(latencies) / seconds)
                    if name in server_pids:
                        result.cpu_per_sim.append((process_tree_cpu(server_pids[name]) - cpu_before) / len(latencies))
                    empty_queues(queues)
        log("gateway-peer: the gateway's Redis work per submit, as it is and as it was")
        redis_work = enqueue_table(url, plan, queues)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
        cluster.stop()
    return [results_table(results, plan, gateway.spec.command), redis_work]


def results_table(results: dict[tuple[str, int], Result], plan: Plan, command: list[str]) -> Table:
    levels = list(plan.requests)
    table = Table("Gateway vs C/S 0.16's and vs no gateway: sim submits at 1, 8 and 32 concurrent clients",
                  ["path", *[f"{c} client{'s' if c > 1 else ''}: p50 / p99 / sims/s" for c in levels],
                   f"server CPU per sim at {max(levels)} clients"])
    for name in (DIRECT, PEER, OURS, OURS_LOGGED, OURS_BEFORE):
        cells = []
        for concurrency in levels:
            result = results[(name, concurrency)]
            cells.append(f"{fmt_seconds(median(result.latencies))} / {fmt_seconds(percentile(result.latencies, 0.99))}"
                         f" / {median(result.rates):.0f}")
        cpu = results[(name, max(levels))].cpu_per_sim
        table.add(name, *cells, fmt_seconds(median(cpu)) if cpu else "- (in the client)")
    ours_p50, direct_p50 = median(results[(OURS, 1)].latencies), median(results[(DIRECT, 1)].latencies)
    added = ours_p50 - direct_p50
    ratio = median(results[(OURS, max(levels))].rates) / median(results[(PEER, max(levels))].rates)
    table.note(f"target, ours adds ≤{fmt_seconds(TARGET_ADDED_P50)} at p50 over direct (1 client): "
               f"{verdict(added <= TARGET_ADDED_P50, f'adds {fmt_seconds(added)}')}")
    table.note(f"target, ours ≥{TARGET_PEER_RATIO:.0f}x the peer's sims/s at {max(levels)} clients: "
               f"{verdict(ratio >= TARGET_PEER_RATIO, fmt_ratio(ratio))}")
    runs = ", ".join(f"{n} requests at {c}" for c, n in plan.requests.items())
    table.note(f"{plan.rounds} rounds; per round and level, {runs}"
               f" per contender; p50/p99 over all rounds' requests, sims/s the median of the rounds.")
    table.note("server CPU per sim: user + system seconds of the gunicorn master and workers (from /proc) "
               "over the run, per sim; on 2 shared cores it bounds sims/s more than latency does.")
    table.note(f"our gateway's command: `{' '.join(command)}`")
    table.note(f"load average after: {load_text()}")
    return table


def enqueue_table(url: str, plan: Plan, queues: redis.Redis) -> Table:
    """JobClient.enqueue (one pipelined SET + LLEN, then a publish through one kept client with a
    short argsrepr) against the enqueue it replaced, in-process, interleaved, on the same Redis."""
    client = JobClient(url)
    plain = Celery("bench-before", broker=url, set_as_current=False)
    plain.conf.update(task_serializer="json", accept_content=["json"])
    args = [{}, {"sum": {"a": [{"value": 40}], "b": [{"value": 2}]}}]

    def now() -> None:
        job_id = str(uuid.uuid4())
        client.enqueue(MODEL.task("sim"), MODEL.sim_queue, [job_id, *args], job_id, MODEL.slug)

    def before() -> None:
        job_id = str(uuid.uuid4())
        client.redis.set(job_key(job_id), MODEL.slug, ex=JOB_RECORD_SECONDS)
        plain.send_task(MODEL.task("sim"), args=[job_id, *args], queue=MODEL.sim_queue, task_id=job_id)
        client.redis.llen(MODEL.sim_queue)

    repetitions = plan.requests[1] * 2
    interleaved({"now": now, "before": before}, plan.warm_up)
    times = interleaved({"now": now, "before": before}, repetitions)
    empty_queues(queues)
    table = Table("Gateway: its Redis work per submit, in-process (one client)", ["enqueue", "p50", "p99"])
    table.add("before: SET; Celery send_task (new redis-py client per message, repr of the inputs); LLEN",
              fmt_seconds(median(times["before"])), fmt_seconds(percentile(times["before"], 0.99)))
    table.add("now: pipelined SET + LLEN; send_task through one kept client, short argsrepr",
              fmt_seconds(median(times["now"])), fmt_seconds(percentile(times["now"], 0.99)))
    table.note(f"{repetitions} of each, interleaved, after {plan.warm_up} warm-up; load average after: {load_text()}")
    return table
