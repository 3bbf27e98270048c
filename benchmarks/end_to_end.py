"""Benchmark 4: sim latency end to end in local mode, from the gateway POST to the result PUT.

`LocalCluster` runs examples/worker_config.yaml as the chart renders it (Redis, the gateway, both
example models' io and sim workers, Dask-Pi's scheduler and two workers), with results PUT to a
stand-in webserver that notes their arrival. Sims are tiny, so the numbers are the platform's
own cost: gateway, queue, worker, (Dask) cluster round trip, result PUT. One sim at a time,
alternating between the two models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness import EXAMPLE_CONFIG, RunSettings, Table, fmt_seconds, load_text, median, percentile
from local_sims import ResultsWebserver, SimTiming, local_cluster, run_sim

# (owner, title, tiny adjustment)
MODELS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("cs-examples", "Celery-Sum", {"sum": {"a": [{"value": 40}], "b": [{"value": 2}]}}),
    ("cs-examples", "Dask-Pi", {"pi": {"n_chunks": [{"value": 2}], "samples_per_chunk": [{"value": 1000}]}}),
)
WARM_UP = 1  # per model, not counted: the first sim imports the model code in the workers


@dataclass
class ModelTimings:
    title: str
    sims: list[SimTiming] = field(default_factory=list)


def measure(sims_per_model: int, log: Callable[[str], None]) -> list[ModelTimings]:
    webserver = ResultsWebserver().start()
    cluster = local_cluster(EXAMPLE_CONFIG, webserver)
    log("end-to-end: starting local mode on examples/worker_config.yaml")
    cluster.start()
    try:
        timings = [ModelTimings(title) for _, title, _ in MODELS]
        for _ in range(WARM_UP):
            for owner, title, adjustment in MODELS:
                run_sim(cluster, webserver, owner, title, adjustment)
        log(f"end-to-end: {sims_per_model} sims per model, alternating")
        for _ in range(sims_per_model):
            for (owner, title, adjustment), model_timings in zip(MODELS, timings, strict=True):
                model_timings.sims.append(run_sim(cluster, webserver, owner, title, adjustment))
        return timings
    finally:
        cluster.stop()
        webserver.stop()


def table_of(timings: list[ModelTimings]) -> Table:
    table = Table("End to end in local mode: submit to result PUT, tiny sims",
                  ["model", "sims", "p50", "p99", "min", "max", "in the sim task (p50)", "around it (p50)"])
    for model in timings:
        latencies = [sim.latency for sim in model.sims]
        overheads = [sim.latency - sim.task_seconds for sim in model.sims]
        table.add(model.title, len(latencies), fmt_seconds(median(latencies)),
                  fmt_seconds(percentile(latencies, 0.99)), fmt_seconds(min(latencies)),
                  fmt_seconds(max(latencies)), fmt_seconds(median([sim.task_seconds for sim in model.sims])),
                  fmt_seconds(median(overheads)))
    table.note("in the sim task: the envelope's meta.task_times (for Dask-Pi it includes connecting a Dask "
               "client to the scheduler and the round trip to a Dask worker); around it: gateway, Redis queue, "
               "Celery, the result PUT.")
    table.note(f"{WARM_UP} warm-up sim per model not counted; load average after: {load_text()}")
    return table


def run(settings: RunSettings, log: Callable[[str], None]) -> list[Table]:
    return [table_of(measure(3 if settings.quick else 30, log))]
