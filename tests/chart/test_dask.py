"""Per-model Dask clusters: one scheduler (Deployment + Service) and N workers."""

from __future__ import annotations

import pytest
from helpers import container, env_of, model, values_with

from cs_cluster import render_chart


def test_scheduler_deployment_and_service() -> None:
    chart = render_chart(values_with(model("PSLmodels", "OG-USA", "dask")))
    scheduler = chart.one("Deployment", component="dask-scheduler", model="pslmodels-ogusa")
    assert scheduler["spec"]["replicas"] == 1
    assert container(scheduler)["command"] == ["dask", "scheduler", "--port", "8786", "--dashboard-address", ":8787"]
    assert container(scheduler)["resources"] == {
        "requests": {"cpu": "500m", "memory": "2G", "ephemeral-storage": "128Mi"},
        "limits": {"cpu": "1800m", "memory": "6G", "ephemeral-storage": "2Gi"}}
    service = chart.one("Service", component="dask-scheduler", model="pslmodels-ogusa")
    assert {(p["name"], p["port"]) for p in service["spec"]["ports"]} == {("comm", 8786), ("dashboard", 8787)}
    assert service["spec"]["selector"] == scheduler["spec"]["selector"]["matchLabels"]


def test_one_image_for_scheduler_workers_and_driver() -> None:
    """Matched Dask versions: every Dask process of a model runs the model's image."""
    chart = render_chart(values_with(model("a", "b", "dask", tag="t9")))
    images = {container(w)["image"] for w in chart.find("Deployment", model="a-b")}
    assert images == {"gcr.io/cs-test/a_b_tasks:t9"}


@pytest.mark.parametrize(
    ("cpu", "threads"),
    [(2, "2"), ("2", "2"), ("1500m", "1"), ("500m", "1"), (0.5, "1"), ("2.7", "2"), (4, "4"), ("4000m", "4")],
)
def test_nthreads_is_a_whole_number_of_cpus_at_least_one(cpu: object, threads: str) -> None:
    entry = model("a", "b", "dask", resources={"requests": {"cpu": "100m"}, "limits": {"cpu": cpu, "memory": "3G"}})
    worker = render_chart(values_with(entry)).one("Deployment", component="dask-worker")
    command = container(worker)["command"]
    assert command[command.index("--nthreads") + 1] == threads
    assert command[command.index("--memory-limit") + 1] == "3G"


def test_worker_points_at_its_scheduler_and_has_model_replicas() -> None:
    chart = render_chart(values_with(model("a", "b", "dask", replicas=5), model("c", "d", "dask")))
    worker = chart.one("Deployment", component="dask-worker", model="a-b")
    assert worker["spec"]["replicas"] == 5
    command = container(worker)["command"]
    assert command[:3] == ["dask", "worker", "$(DASK_SCHEDULER_ADDRESS)"]
    assert env_of(worker)["DASK_SCHEDULER_ADDRESS"] == "tcp://release-a-b-dask-scheduler:8786"
    # Without limits the requests (defaults: 1 CPU, 1G) become the limits, and so the threads and memory.
    assert command[command.index("--nthreads") + 1] == "1"
    assert command[command.index("--memory-limit") + 1] == "1G"
    assert container(worker)["resources"]["limits"] == {"cpu": "1", "memory": "1G", "ephemeral-storage": "9Gi"}


def test_celery_models_get_no_dask_objects() -> None:
    chart = render_chart(values_with(model("a", "b")))
    assert not chart.find(component="dask-scheduler")
    assert not chart.find(component="dask-worker")
