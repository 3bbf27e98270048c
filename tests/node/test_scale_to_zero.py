"""Scale to zero and back with KEDA, on real pods: the example installed with autoscaling on
(KEDA v2.21.0 built from the Go module proxy and run beside the real node, its metrics-api scaler
reading each model's load from the gateway through kube-proxy), every number read from the live
cluster. The tests share one release and run in file order; each leaves the models at zero.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_support import NodeEnvironment, Release
from scaling_support import (
    CELERY_SLUG,
    DASK_SLUG,
    SCALED_TO_ZERO,
    at_zero,
    autoscaling_values,
    cpu_requests,
    gateway_load,
    pods_of,
    replicas,
    scaled_objects_ready,
    start_keda,
    wait_until,
)

from cs_cluster.standin import StandInWebserver

pytestmark = pytest.mark.node

COOLDOWN = 30  # seconds: short, so that the tests see a model go back to zero
POLLING = 5
# Celery-Sum gets two sim workers (one per sim queued or running) and room for a long sim.
LONG_SIM_LIMIT = 300
CELERY, DASK = "Celery-Sum", "Dask-Pi"
TITLES = {CELERY_SLUG: CELERY, DASK_SLUG: DASK}
# What may request CPU while every model is idle: Redis, the gateway, the io workers (KEDA runs
# beside the node here, as processes).
IDLE_COMPONENTS = {"redis", "gateway", f"model-io/{CELERY_SLUG}", f"model-io/{DASK_SLUG}"}


@pytest.fixture(scope="module")
def autoscaled(node_env: NodeEnvironment, images: Path, webserver: StandInWebserver,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    start_keda(node_env)
    directory = tmp_path_factory.mktemp("autoscaled")
    values = autoscaling_values(directory, COOLDOWN, POLLING,
                                **{CELERY_SLUG: {"replicas": 2, "simTimeLimit": LONG_SIM_LIMIT}})
    release = Release.install(node_env, images, webserver, directory, major=4, extra_values=[values])
    try:
        wait_until(lambda: scaled_objects_ready(release), 120, "every ScaledObject Ready")
        yield release
    finally:
        release.uninstall()


def wait_at_zero(release: Release, slug: str, timeout: float = COOLDOWN + 150) -> float:
    return wait_until(lambda: at_zero(release, slug), timeout, f"{slug} at zero: no replica, no pod", interval=2)


def test_idle_models_go_to_zero_and_request_no_cpu_for_sims_or_dask(autoscaled: Release) -> None:
    """Installed with a sim worker each (Kubernetes' default of 1, no `replicas` in the chart),
    both models go to zero with nothing queued; then only Redis, the gateway and the io workers
    request CPU, read from the live pods."""
    for slug in SCALED_TO_ZERO:
        wait_at_zero(autoscaled, slug)
    requests = cpu_requests(autoscaled)
    assert set(requests) <= IDLE_COMPONENTS, requests
    for slug, components in SCALED_TO_ZERO.items():
        for component in components:
            assert f"{component}/{slug}" not in requests
    print(f"\nidle CPU requests of the autoscaled example (CPUs): {requests}, total {sum(requests.values()):.2f}")


@pytest.mark.parametrize(("slug", "adjustment"), [
    (CELERY_SLUG, {"sum": {"a": 40, "b": 2, "sleep": 3}}),
    (DASK_SLUG, {"pi": {"n_chunks": 4, "samples_per_chunk": 20000, "sleep_per_chunk": 3}}),
], ids=["celery", "dask"])
def test_a_sim_sent_to_a_model_at_zero_runs_once_and_the_model_goes_back_to_zero(
    autoscaled: Release, slug: str, adjustment: dict
) -> None:
    wait_at_zero(autoscaled, slug)
    seen: dict[str, int] = dict.fromkeys(SCALED_TO_ZERO[slug], 0)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1):
            for component in seen:
                seen[component] = max(seen[component], replicas(autoscaled, slug, component))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        job = autoscaled.submit(TITLES[slug], adjustment)
        result = autoscaled.wait_result(job, timeout=300)
        finished = time.monotonic()
    finally:
        stop.set()
        watcher.join()
    assert result.body["status"] == "SUCCESS", result.body
    # Scaled up from zero: a sim worker (driver); for Dask, its scheduler and every Dask worker.
    expected = {"model-sim": 1} if slug == CELERY_SLUG else {"model-sim": 1, "dask-worker": 2, "dask-scheduler": 1}
    assert seen == expected, seen
    gone = wait_at_zero(autoscaled, slug)
    # Back to zero only after the cool-down: KEDA counts it from the last poll that saw the sim.
    assert gone - finished >= COOLDOWN - POLLING, (gone - finished)
    time.sleep(2)
    assert autoscaled.broker_holds_no_task() == []
    assert len(autoscaled.results_for(job)) == 1


def _pod_running(release: Release, job: str) -> str:
    """The Celery-Sum sim pod whose worker took `job` (its log names the task it received)."""
    for pod in pods_of(release, CELERY_SLUG, "model-sim"):
        name = pod["metadata"]["name"]
        log = release.kube.kubectl("logs", name, check=False).stdout
        if f"[{job}] received" in log:
            return str(name)
    return ""


def test_a_scale_down_does_not_cut_a_long_sim_short(autoscaled: Release) -> None:
    """Two sims start two sim workers; once the short one is done, the HPA KEDA made scales to one
    (after its stabilization window, the cool-down). The ReplicaSet is made to pick the pod running
    the long sim (pod-deletion-cost), the worst case: that pod is told to stop while its sim runs,
    and Celery's warm shutdown, within the pod's grace period (the sim's time limit plus a minute),
    lets the sim finish: SUCCESS, once."""
    wait_at_zero(autoscaled, CELERY_SLUG)
    long_job = autoscaled.submit(CELERY, {"sum": {"a": 20, "b": 22, "sleep": 150}})
    short_job = autoscaled.submit(CELERY, {"sum": {"a": 1, "b": 1, "sleep": 1}})
    wait_until(lambda: replicas(autoscaled, CELERY_SLUG, "model-sim") == 2, 120, "two sim workers for two sims")
    assert autoscaled.wait_result(short_job, timeout=180).body["status"] == "SUCCESS"
    running = ""

    def found() -> bool:
        nonlocal running
        running = _pod_running(autoscaled, long_job)
        return bool(running)

    wait_until(found, 60, "the pod that took the long sim", interval=2)
    others = [p["metadata"]["name"] for p in pods_of(autoscaled, CELERY_SLUG, "model-sim")
              if p["metadata"]["name"] != running]
    autoscaled.kube.kubectl("annotate", "pod", running, "controller.kubernetes.io/pod-deletion-cost=-1000")
    for other in others:
        autoscaled.kube.kubectl("annotate", "pod", other, "controller.kubernetes.io/pod-deletion-cost=1000")
    # The short sim is acknowledged once its result is delivered: then the load counts the long one only.
    wait_until(lambda: gateway_load(autoscaled, CELERY)["sims"] == 1, 30, "one sim left in the load")

    def told_to_stop() -> bool:
        pod = [p for p in pods_of(autoscaled, CELERY_SLUG, "model-sim") if p["metadata"]["name"] == running]
        return bool(pod and pod[0]["metadata"].get("deletionTimestamp"))

    wait_until(told_to_stop, COOLDOWN + 90, "the scale-down to one sim worker, of the long sim's pod")
    assert replicas(autoscaled, CELERY_SLUG, "model-sim") == 1
    assert not autoscaled.results_for(long_job), "the long sim ended before its pod was told to stop"
    result = autoscaled.wait_result(long_job, timeout=LONG_SIM_LIMIT)
    assert result.body["status"] == "SUCCESS", result.body
    csv = result.body["outputs"]["downloadable"][0]["data"]
    assert float(csv.strip().splitlines()[1].split(",")[2]) == 42
    # The pod lived on, Terminating, until its sim was done; then it left.
    wait_until(lambda: not [p for p in pods_of(autoscaled, CELERY_SLUG, "model-sim")
                            if p["metadata"]["name"] == running], 120, "the stopped pod gone once its sim was done")
    wait_at_zero(autoscaled, CELERY_SLUG)
    assert autoscaled.broker_holds_no_task() == []
    assert [len(autoscaled.results_for(job)) for job in (long_job, short_job)] == [1, 1]


def test_idle_again_after_every_sim(autoscaled: Release) -> None:
    for slug in SCALED_TO_ZERO:
        wait_at_zero(autoscaled, slug)
    assert set(cpu_requests(autoscaled)) <= IDLE_COMPONENTS
