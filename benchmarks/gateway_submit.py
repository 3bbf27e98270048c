"""Benchmark 3: submitting a sim through the gateway, against sending the task straight to Redis.

The gateway runs as the chart runs it: local mode's render of examples/worker_config.yaml gives
the gunicorn command (2 workers: sync before issue 15, gthread since) and its environment, and
a real redis-server with the rendered config. Only Redis and the gateway start: no workers, so
the queue just grows (we empty it after every round). The alternative is what a webserver could
do without a gateway: Celery's `send_task` of the same task, same arguments, same queue, same
Redis.

Latency: one client, requests interleaved gateway / direct (the order rotating), plus two parts
of the gateway's work timed the same way, to see where its time goes.
Throughput: 4 client threads, a burst on one side then the other, alternating per round.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery  # type: ignore[import-untyped]
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
    seconds_taken,
    verdict,
)
from local_sims import GATEWAY_TOKEN

from cs_cluster.local import LocalCluster, ProcessSpec, free_port
from cs_runtime.names import ModelNames
from cs_runtime.settings import redis_url

TARGET_ADDED = 0.30
MODEL = ModelNames("cs-examples", "Celery-Sum")
SIM_PATH = f"/{MODEL.owner}/{MODEL.title}/sim"
META_PARAM_DICT: dict[str, Any] = {}
ADJUSTMENT = {"sum": {"a": [{"value": 40}], "b": [{"value": 2}]}}
CLIENT_THREADS = 4


@dataclass(frozen=True)
class Plan:
    rounds: int
    latency_pairs: int
    burst: int
    warm_up: int


FULL_PLAN = Plan(rounds=5, latency_pairs=200, burst=300, warm_up=20)
QUICK_PLAN = Plan(rounds=1, latency_pairs=20, burst=20, warm_up=3)


class GatewayOnlyCluster(LocalCluster):
    """Local mode's Redis and gateway processes, exactly as rendered; no model workers."""

    def process_specs(self) -> list[ProcessSpec]:
        return [spec for spec in super().process_specs() if spec.component in ("redis", "gateway")]


@dataclass
class Submitters:
    """The ways to submit one sim (and two parts of the gateway's way, to see where time goes)."""

    gateway_port: int
    broker_url: str
    sender: Any = field(init=False)
    queues: redis.Redis = field(init=False)
    body: str = field(init=False)

    def __post_init__(self) -> None:
        self.sender = Celery("bench-direct", broker=self.broker_url, set_as_current=False)
        self.sender.conf.update(task_serializer="json", accept_content=["json"])
        self.queues = redis.Redis.from_url(self.broker_url)
        self.body = json.dumps({"meta_param_dict": META_PARAM_DICT, "adjustment": ADJUSTMENT})

    def _http(self, method: str, path: str, body: str | None = None) -> bytes:
        # A new connection per request, as before issue 15 (sync workers closed each one); kept-alive
        # connections are measured in gateway_peer.py.
        connection = http.client.HTTPConnection("127.0.0.1", self.gateway_port, timeout=30)
        try:
            connection.request(method, path, body, {"Content-Type": "application/json",
                                                    "Authorization": f"Bearer {GATEWAY_TOKEN}"})
            response = connection.getresponse()
            answer = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"the gateway answered {method} {path} with {response.status}: {answer[:300]!r}")
        return answer

    def through_gateway(self) -> None:
        if "job_id" not in json.loads(self._http("POST", SIM_PATH, self.body)):
            raise RuntimeError("the gateway's sim answer has no job_id")

    def direct(self) -> None:
        job_id = str(uuid.uuid4())
        self.sender.send_task(MODEL.task("sim"), args=[job_id, META_PARAM_DICT, ADJUSTMENT],
                              queue=MODEL.sim_queue, task_id=job_id)

    def direct_and_queue_length(self) -> None:
        """What the gateway does inside a sim request: send the task, then LLEN for `qlength`."""
        self.direct()
        self.queues.llen(MODEL.sim_queue)

    def health(self) -> None:
        """HTTP to the gateway and back through gunicorn and Flask, without touching Redis."""
        self._http("GET", "/health")


# The contenders of the latency rounds, in the order they first run; the first two are compared.
GATEWAY, DIRECT = "POST /{owner}/{title}/sim through the gateway", "direct `send_task` to Redis"
PARTS = ("part: `send_task` + LLEN (the gateway's Redis work)", "part: GET /health (HTTP + gunicorn + Flask)")


def latency_contenders(submitters: Submitters) -> dict[str, Callable[[], None]]:
    return {GATEWAY: submitters.through_gateway, DIRECT: submitters.direct,
            PARTS[0]: submitters.direct_and_queue_length, PARTS[1]: submitters.health}


@dataclass
class Samples:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    round_ratios: list[float] = field(default_factory=list)
    gateway_rates: list[float] = field(default_factory=list)
    direct_rates: list[float] = field(default_factory=list)


def latency_round(submitters: Submitters, repetitions: int, samples: Samples) -> None:
    times = interleaved(latency_contenders(submitters), repetitions)
    for name, values in times.items():
        samples.latencies.setdefault(name, []).extend(values)
    samples.round_ratios.append(median(times[GATEWAY]) / median(times[DIRECT]))


def burst_rate(submit: Callable[[], None], count: int) -> float:
    """Submissions per second with CLIENT_THREADS threads submitting `count` in all."""
    def submit_one(_: int) -> None:
        submit()

    with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
        spent = seconds_taken(lambda: list(pool.map(submit_one, range(count))))
    return count / spent


def throughput_round(submitters: Submitters, burst: int, samples: Samples, gateway_first: bool) -> None:
    if gateway_first:
        samples.gateway_rates.append(burst_rate(submitters.through_gateway, burst))
        samples.direct_rates.append(burst_rate(submitters.direct, burst))
    else:
        samples.direct_rates.append(burst_rate(submitters.direct, burst))
        samples.gateway_rates.append(burst_rate(submitters.through_gateway, burst))


def measure(submitters: Submitters, plan: Plan, log: Callable[[str], None]) -> Samples:
    interleaved(latency_contenders(submitters), plan.warm_up)  # first connections, gunicorn's first requests
    samples = Samples()
    for number in range(plan.rounds):
        log(f"gateway: round {number + 1}/{plan.rounds}")
        latency_round(submitters, plan.latency_pairs, samples)
        throughput_round(submitters, plan.burst, samples, gateway_first=number % 2 == 0)
        submitters.queues.delete(MODEL.sim_queue)  # no workers: empty the queue so every round starts alike
    return samples


def latency_table(samples: Samples, plan: Plan) -> Table:
    gateway, direct = samples.latencies[GATEWAY], samples.latencies[DIRECT]
    added = median(gateway) / median(direct) - 1
    ratios = samples.round_ratios
    table = Table("Gateway: sim submit latency (one client)",
                  ["path", "p50", "p99", "samples", "gateway over direct at p50, per round (median, range)",
                   f"target: gateway adds <{TARGET_ADDED:.0%} at p50"])
    table.add(DIRECT, fmt_seconds(median(direct)), fmt_seconds(percentile(direct, 0.99)), len(direct), "-", "-")
    table.add(GATEWAY, fmt_seconds(median(gateway)), fmt_seconds(percentile(gateway, 0.99)), len(gateway),
              f"{median(ratios) - 1:+.0%} ({min(ratios) - 1:+.0%} to {max(ratios) - 1:+.0%})",
              verdict(added < TARGET_ADDED, f"adds {added:.0%} (+{fmt_seconds(median(gateway) - median(direct))})"))
    for part in PARTS:
        values = samples.latencies[part]
        table.add(part, fmt_seconds(median(values)), fmt_seconds(percentile(values, 0.99)), len(values), "-", "-")
    table.note(f"{plan.rounds} rounds of {plan.latency_pairs} repetitions of the four, interleaved (order "
               f"rotating), after {plan.warm_up} warm-up repetitions. The gateway side includes the client's "
               "TCP connect and HTTP round trip (a new connection per request, as gunicorn's sync workers closed "
               "them). The two parts roughly add up to the gateway's time.")
    table.note(f"load average after: {load_text()}")
    return table


def throughput_table(samples: Samples, plan: Plan) -> Table:
    table = Table(f"Gateway: sim submit throughput ({CLIENT_THREADS} client threads)",
                  ["path", "submits/s (median)", "range", "gateway / direct"])
    table.add(DIRECT, f"{median(samples.direct_rates):.0f}",
              f"{min(samples.direct_rates):.0f} to {max(samples.direct_rates):.0f}", "-")
    table.add("through the gateway (the chart's command, a new connection per submit)",
              f"{median(samples.gateway_rates):.0f}",
              f"{min(samples.gateway_rates):.0f} to {max(samples.gateway_rates):.0f}",
              fmt_ratio(median(samples.gateway_rates) / median(samples.direct_rates)))
    table.note(f"{plan.rounds} rounds of {plan.burst} submits per side; the client threads share this "
               "machine's 2 cores with the gateway and Redis.")
    return table


def run(settings: RunSettings, log: Callable[[str], None]) -> list[Table]:
    plan = QUICK_PLAN if settings.quick else FULL_PLAN
    cluster = GatewayOnlyCluster(EXAMPLE_CONFIG, port=free_port(), gateway_token=GATEWAY_TOKEN, log=lambda _: None)
    log("gateway: starting redis-server and the gateway from the chart's render")
    cluster.start()
    try:
        gateway = next(running for running in cluster.running if running.spec.component == "gateway")
        url = redis_url(gateway.spec.environment)
        submitters = Submitters(cluster.gateway_port, url)
        samples = measure(submitters, plan, log)
        submitters.queues.delete(MODEL.sim_queue)
    finally:
        cluster.stop()
    return [latency_table(samples, plan), throughput_table(samples, plan)]
