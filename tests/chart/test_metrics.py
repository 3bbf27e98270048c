"""Metrics (issue 14): off by default; on, the gateway and model workers serve /metrics, headless
Services list the workers, an optional ServiceMonitor (its CRD's schema judges it) and an opt-in
Grafana dashboard ConfigMap whose queries name what the runtime serves."""

from __future__ import annotations

import json
import re

import pytest
from helpers import container, env_of, model, values_with

from cs_cluster import RenderedChart, render_chart
from cs_runtime import metrics

MODELS = (model("a", "b"), model("c", "d", "dask"))


@pytest.fixture(scope="module")
def on() -> RenderedChart:
    return render_chart(values_with(*MODELS, metrics={"enabled": True, "serviceMonitor": {"enabled": True},
                                                      "dashboard": {"enabled": True}}))


def test_nothing_changes_unless_asked() -> None:
    plain = render_chart(values_with(*MODELS))
    assert plain.find("ServiceMonitor") == [] and plain.find("Service", component="model-sim") == []
    for workload in plain.find("Deployment"):
        assert "CS_METRICS_PORT" not in env_of(workload)
        assert "metrics" not in repr(container(workload).get("ports", []))
    only_metrics = render_chart(values_with(*MODELS, metrics={"enabled": True}))
    assert only_metrics.find("ServiceMonitor") == [] and only_metrics.find("ConfigMap", name="release-dashboard") == []


def test_gateway_and_workers_serve_metrics(on: RenderedChart) -> None:
    for component in ("gateway", "model-io", "model-sim"):
        for workload in on.find("Deployment", component=component):
            env = env_of(workload)
            assert (env["CS_METRICS_PORT"], env["PROMETHEUS_MULTIPROC_DIR"]) == ("9090", "/tmp/metrics")
            assert {"name": "metrics", "containerPort": 9090} in container(workload)["ports"]
    command = container(on.one("Deployment", component="gateway"))["command"]
    assert command[-3:] == ["--config", "python:cs_runtime.gunicorn_config", "cs_runtime.gateway:create_app()"]
    assert {"name": "metrics", "port": 9090, "targetPort": "metrics"} in on.one(
        "Service", component="gateway")["spec"]["ports"]


def test_headless_services_list_every_models_workers(on: RenderedChart) -> None:
    for component in ("model-io", "model-sim"):
        service = on.one("Service", name=f"release-{component}-metrics")
        assert service["spec"]["clusterIP"] == "None"
        pods = [d["spec"]["template"]["metadata"]["labels"] for d in on.find("Deployment", component=component)]
        assert len(pods) == 2
        assert all(all(labels.get(k) == v for k, v in service["spec"]["selector"].items()) for labels in pods)
        others = [d for d in on.find("Deployment")
                  if d["metadata"]["labels"]["app.kubernetes.io/component"] != component]
        assert not any(all(d["spec"]["template"]["metadata"]["labels"].get(k) == v
                           for k, v in service["spec"]["selector"].items()) for d in others)


def test_the_service_monitor_finds_every_service_that_serves_metrics(on: RenderedChart) -> None:
    monitor = on.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]
    components = set(selector["matchExpressions"][0]["values"])

    def selected(service: dict) -> bool:
        labels = service["metadata"]["labels"]
        return (all(labels.get(k) == v for k, v in selector["matchLabels"].items())
                and labels["app.kubernetes.io/component"] in components)

    for service in on.find("Service"):
        ports = {port["name"] for port in service["spec"]["ports"]}
        serves = "metrics" in ports or service["metadata"]["labels"]["app.kubernetes.io/component"] == "dask-scheduler"
        assert selected(service) == serves, service["metadata"]["name"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics", "dashboard"]


def test_network_policies_let_the_scraper_reach_only_the_metrics_ports() -> None:
    prometheus = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    chart = render_chart(values_with(*MODELS, metrics={"enabled": True, "scrapeFrom": prometheus}))
    rules = {p["metadata"]["name"]: p["spec"].get("ingress", []) for p in chart.find("NetworkPolicy")}
    scrape = [{"ports": [{"port": 9090, "protocol": "TCP"}], "from": prometheus}]
    assert rules["release-model-workers"] == scrape
    assert scrape[0] in rules["release-gateway"]
    assert {"ports": [{"port": 8787, "protocol": "TCP"}], "from": prometheus} in rules["release-c-d-dask"]


def test_the_dashboard_is_where_grafanas_sidecar_looks_and_asks_for_what_is_served(on: RenderedChart) -> None:
    config_map = on.one("ConfigMap", name="release-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["cs-workers.json"])
    assert dashboard["uid"] == "cs-workers"
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "model"]
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Queued", "Running", "Finished by status", "Sim duration percentiles"} <= titles
    assert next(p for p in dashboard["panels"] if p["type"] == "row")["repeat"] == "model"
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    named = {name for expr in expressions for name in re.findall(r"\b(cs_[a-z_]+)\b", expr)}
    assert named and named <= metrics.EXPORTED_NAMES, named - metrics.EXPORTED_NAMES
    assert all('model="$model"' in expr for expr in expressions)
