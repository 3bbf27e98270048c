"""README: probes watch every component. Each container of every Deployment has a readiness and
a liveness probe, and each probe asks what shows that component alive, by a port it serves."""

from __future__ import annotations

import pytest
from helpers import container, model, values_with

from cs_cluster import RenderedChart, render_chart


@pytest.fixture(scope="module")
def chart() -> RenderedChart:
    return render_chart(values_with(model("a", "b"), model("c", "d", "dask")))


EXPECTED = {
    # component: (how the probe asks, what it asks)
    "gateway": ("httpGet", "/health"),
    "redis": ("exec", "redis-cli"),
    "model-io": ("exec", "cs_runtime.health"),
    "model-sim": ("exec", "cs_runtime.health"),
    "dask-scheduler": ("httpGet", "/health"),
    "dask-worker": ("httpGet", "/health"),
}


@pytest.mark.parametrize("component", sorted(EXPECTED))
def test_every_component_is_watched_by_readiness_and_liveness_probes(chart: RenderedChart, component: str) -> None:
    workloads = chart.find("Deployment", component=component)
    assert workloads, component
    handler, asks = EXPECTED[component]
    for workload in workloads:
        spec = container(workload)
        served = {port["name"] for port in spec.get("ports", [])}
        for kind in ("readinessProbe", "livenessProbe"):
            probe = spec[kind]
            assert handler in probe, (workload["metadata"]["name"], kind, probe)
            if handler == "httpGet":
                assert probe["httpGet"]["path"] == asks and probe["httpGet"]["port"] in served, probe
            else:
                assert asks in " ".join(probe["exec"]["command"]), probe


def test_nothing_else_runs_unwatched(chart: RenderedChart) -> None:
    components = {w["metadata"]["labels"]["app.kubernetes.io/component"] for w in chart.find("Deployment")}
    assert components == set(EXPECTED)
