"""Benchmark 8: cold start with KEDA on the real node (issue 12): a sim sent to a model at zero,
until its code runs; and what the example requests at idle with autoscaling on.

Needs root: it starts (or finds) `ci/cluster up --real-node --keda`, builds and pushes the
example's images as the node tests do, and installs the example with autoscaling on, at the
chart's default `pollingInterval` (15 s, what users get) and a short `cooldownPeriod` (10 s, so that
a sample does not wait the default 300 s for its model to go back to zero). Both models are
measured at once (their ScaledObjects are independent), one sim of each at a time:

- cold: wait until the model is at zero (no replica asked for, no pod left), then a random 0 to
  `pollingInterval` seconds (a user's sim arrives at any moment of KEDA's polling cycle; without
  it the loop would submit at the same phase each time), send a tiny sim, note when its result
  reaches the stand-in webserver;
- warm: send the same sim again at once, while the model's workers are up.

Cold start = a cold sample minus the median warm one: what starting from zero adds before the
model's code runs (KEDA's next poll, the pods' start with the image already on the node, Celery's
start; for Dask, the scheduler's and workers' start and the driver's connection), the sim itself
and the result's delivery being the same in both. Idle requests are read from the live pods once
both models are at zero, beside what the same values request with autoscaling off (rendered).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness import REPO, RunSettings, Table, fmt_seconds, load_text, median, percentile

sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "node")]

from node_support import SESSION_TAG, NodeEnvironment, Release, built_images  # noqa: E402
from scaling_support import (  # noqa: E402
    CELERY_SLUG,
    DASK_SLUG,
    SCALED_TO_ZERO,
    at_zero,
    autoscaling_values,
    cpu_requests,
    start_keda,
    wait_until,
)

from cs_cluster import render_chart  # noqa: E402
from cs_cluster.quantities import parse_quantity  # noqa: E402
from cs_cluster.standin import ReceivedResult, StandInWebserver  # noqa: E402

COOLDOWN = 10
POLLING = 15  # the chart's default
FULL_SAMPLES = 10
QUICK_SAMPLES = 1
MODELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    CELERY_SLUG: ("Celery", "Celery-Sum", {"sum": {"a": 40, "b": 2}}),
    DASK_SLUG: ("Dask", "Dask-Pi", {"pi": {"n_chunks": 2, "samples_per_chunk": 1000}}),
}


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what the build and helm print (this process's and its children's stdout) to stderr, so
    that stdout keeps only the tables."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def sample_model(release: Release, arrivals: dict[str, float], slug: str, samples: int,
                 log: Callable[[str], None]) -> tuple[list[float], list[float]]:
    """(cold totals, warm totals) in seconds for one model, `samples` of each, alternating."""
    _, title, adjustment = MODELS[slug]
    phases = random.Random(slug)  # a reproducible spread of phases
    cold: list[float] = []
    warm: list[float] = []

    def one_sim() -> float:
        sent = time.monotonic()
        job = release.submit(title, adjustment)
        body = release.wait_result(job, timeout=600).body
        if body["status"] != "SUCCESS":
            raise RuntimeError(f"{title}: sim {job} answered {body['status']}: {body.get('traceback')}")
        return arrivals[job] - sent

    for index in range(samples):
        wait_until(lambda: at_zero(release, slug), COOLDOWN + POLLING + 300, f"{slug} at zero", interval=0.5)
        time.sleep(phases.uniform(0, POLLING))
        cold.append(one_sim())
        warm.append(one_sim())
        log(f"cold-start: {title} {index + 1}/{samples}: cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s")
    return cold, warm


def rendered_requests(values_files: list[Path]) -> float:
    """CPUs the same values request with autoscaling off: every Deployment's replicas times its
    pod's requests, as rendered (io, sim, Dask workers and scheduler at their replicas)."""
    chart = render_chart(values_files=values_files, validate=False)
    total = 0.0
    for deployment in chart.find("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        cpu = sum(float(parse_quantity(c.get("resources", {}).get("requests", {}).get("cpu", "0")))
                  for c in pod["containers"])
        total += cpu * int(deployment["spec"].get("replicas", 1))
    return total


def run(settings: RunSettings, log: Callable[[str], None]) -> list[Table]:
    samples = QUICK_SAMPLES if settings.quick else FULL_SAMPLES
    log("cold-start: the real node with KEDA (ci/cluster up --real-node --keda; builds KEDA the first time)")
    node_env = NodeEnvironment(start_keda())
    directory = Path(tempfile.mkdtemp(prefix="cs-cold-start-"))
    log("cold-start: building and pushing the example's images")
    # Release.install applies with SESSION_TAG: a tag of this process's own (the node keeps what it pulled).
    with stdout_to_stderr():
        images = built_images(node_env, directory, tag=SESSION_TAG)
    arrivals: dict[str, float] = {}

    def arrived(result: ReceivedResult) -> None:
        arrivals[str(result.body.get("job_id"))] = time.monotonic()

    webserver = StandInWebserver(host=node_env.host_address, port=0, token="cold-start-token",  # noqa: S106 - throwaway
                                 on_result=arrived).start()
    values = autoscaling_values(directory, COOLDOWN, POLLING)
    with stdout_to_stderr():
        release = Release.install(node_env, images, webserver, directory, major=4, extra_values=[values])
    try:
        for slug in SCALED_TO_ZERO:
            wait_until(lambda slug=slug: at_zero(release, slug), 600, f"{slug} at zero", interval=2)
        idle = cpu_requests(release)
        always_on = rendered_requests([images, *release.extra_values[:2]])
        results: dict[str, tuple[list[float], list[float]]] = {}
        failures: list[BaseException] = []

        def measure(slug: str) -> None:
            try:
                results[slug] = sample_model(release, arrivals, slug, samples, log)
            except BaseException as error:  # reported after both threads ended
                failures.append(error)

        started = time.monotonic()
        threads = [threading.Thread(target=measure, args=(slug,)) for slug in MODELS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        log(f"cold-start: {samples} samples per model in {time.monotonic() - started:.0f} s; {load_text()}")
    finally:
        with stdout_to_stderr():
            release.uninstall()
        webserver.stop()

    table = Table(
        title="8. Cold start with KEDA on the real node (a sim sent to a model at zero, until its code runs)",
        columns=["model type", "samples", "cold total p50 / p95", "warm total p50", "cold start p50", "cold start p95",
                 "cold / warm, p50"],
        notes=[f"pollingInterval {POLLING} s (the chart's default), cooldownPeriod {COOLDOWN} s; images on the node; "
               "cold start = cold total - median warm total; " + load_text()],
    )
    for slug, (kind, _, _) in MODELS.items():
        cold, warm = results[slug]
        warm_median = median(warm)
        starts = [total - warm_median for total in cold]
        table.add(kind, len(cold), f"{fmt_seconds(median(cold))} / {fmt_seconds(percentile(cold, 0.95))}",
                  fmt_seconds(warm_median), fmt_seconds(median(starts)), fmt_seconds(percentile(starts, 0.95)),
                  f"{median(cold) / warm_median:.1f}x")
    idle_table = Table(
        title="8b. CPU requested by the example at idle (live pods, both models at zero)",
        columns=["pods", "CPU requested"],
        notes=["ci/real-node-values.yaml's requests (cut to fit the 2-CPU node); KEDA runs beside the node as "
               "processes here, while from its Helm chart its operator and metrics server pods request 100m CPU each"],
    )
    for name, cpu in sorted(idle.items()):
        idle_table.add(name, f"{cpu:.2f}")
    idle_table.add("all, autoscaling on", f"{sum(idle.values()):.2f}")
    idle_table.add("all, autoscaling off (the same values, rendered)", f"{always_on:.2f}")
    return [table, idle_table]
