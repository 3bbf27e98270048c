"""The gateway: Deployment, Service and the routing table it reads."""

from __future__ import annotations

import json

import pytest
from helpers import container, env_of, model, values_with

from cs_cluster import RenderedChart, render_chart
from cs_cluster.errors import CsClusterError, ToolError


def routes(chart: RenderedChart) -> dict:
    return json.loads(chart.one("ConfigMap", name="release-gateway-routes")["data"]["routes.json"])["models"]


def test_routing_table_for_celery_and_dask_models() -> None:
    chart = render_chart(values_with(model("PSLmodels", "Tax-Brain"), model("PSLmodels", "OG-USA", "dask",
                                                                           simTimeLimit=7200)))
    table = routes(chart)
    assert set(table) == {"pslmodels-taxbrain", "pslmodels-ogusa"}
    taxbrain = table["pslmodels-taxbrain"]
    assert taxbrain["inputsQueue"] == "pslmodels_taxbrain_inputs_queue"
    assert taxbrain["simQueue"] == "pslmodels_taxbrain_queue"
    assert taxbrain["tasks"]["sim"] == "pslmodels_taxbrain_tasks.sim"
    assert taxbrain["tasks"]["inputs_version"] == "pslmodels_taxbrain_tasks.inputs_version"
    assert taxbrain["daskSchedulerAddress"] is None
    assert taxbrain["simTimeLimit"] == 3600 and taxbrain["inputsTimeLimit"] == 10
    ogusa = table["pslmodels-ogusa"]
    assert ogusa["clusterType"] == "dask"
    assert ogusa["daskSchedulerAddress"] == "tcp://release-pslmodels-ogusa-dask-scheduler:8786"
    assert ogusa["simTimeLimit"] == 7200
    assert (ogusa["owner"], ogusa["title"]) == ("PSLmodels", "OG-USA")
    # The scheduler named in the table is a Service the chart renders.
    assert chart.find("Service", name="release-pslmodels-ogusa-dask-scheduler")


def test_gateway_mounts_the_table_and_serves_on_its_port() -> None:
    chart = render_chart(values_with(model("a", "b")))
    deployment = chart.one("Deployment", component="gateway")
    gateway = container(deployment)
    assert env_of(deployment)["CS_ROUTING_TABLE"] == "/etc/cs-workers/routes/routes.json"
    assert gateway["command"][:3] == ["gunicorn", "--bind", "0.0.0.0:5050"]
    assert gateway["command"][-1] == "cs_runtime.gateway:create_app()"
    # Threads and kept-alive connections for many short submits (benchmarks/README.md, section 3).
    flags = dict(zip(gateway["command"][1:-1:2], gateway["command"][2:-1:2], strict=True))
    assert (flags["--worker-class"], flags["--threads"], flags["--keep-alive"]) == ("gthread", "8", "30")
    assert gateway["image"] == "gcr.io/cs-test/cs-workers-gateway:0.1.0"
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "routes", "configMap": {"name": "release-gateway-routes"}} in volumes
    service = chart.one("Service", component="gateway")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]


def test_adding_a_model_does_not_restart_the_gateway() -> None:
    """The gateway re-reads the table; its pod template must not change with the models."""
    one = render_chart(values_with(model("a", "b")))
    two = render_chart(values_with(model("a", "b"), model("c", "d", "dask")))
    assert routes(one) != routes(two)
    template = "Deployment/release-gateway"
    assert one.pod_templates()[template] == two.pod_templates()[template]


def test_gateway_overrides() -> None:
    chart = render_chart({"gateway": {"image": {"repository": "example.org/gw", "tag": "7"}, "replicas": 3,
                                      "port": 8080, "nodeSelector": {"pool": "web"}}})
    deployment = chart.one("Deployment", component="gateway")
    assert container(deployment)["image"] == "example.org/gw:7"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "web"}
    assert container(deployment)["ports"][0]["containerPort"] == 8080


def test_no_ingress_nor_route_unless_asked() -> None:
    chart = render_chart(values_with(model("a", "b")))
    assert chart.find("Ingress") == [] and chart.find("HTTPRoute") == []


def test_ingress_sends_every_path_to_the_gateway_service() -> None:
    chart = render_chart({"gateway": {"service": {"port": 8080}, "ingress": {
        "enabled": True, "className": "nginx", "hosts": ["cs.example.org", "compute.example.org"],
        "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "10m"},
        "tls": [{"secretName": "cs-tls", "hosts": ["cs.example.org"]}]}}})
    ingress = chart.one("Ingress", component="gateway")
    service = chart.one("Service", component="gateway")
    backend = {"service": {"name": service["metadata"]["name"], "port": {"number": 8080}}}
    assert service["spec"]["ports"][0]["port"] == 8080
    assert ingress["spec"] == {
        "ingressClassName": "nginx",
        "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
                  for host in ("cs.example.org", "compute.example.org")],
        "tls": [{"secretName": "cs-tls", "hosts": ["cs.example.org"]}]}
    assert ingress["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/proxy-body-size": "10m"}
    # No host: one rule for any host.
    anyhost = render_chart({"gateway": {"ingress": {"enabled": True}}}).one("Ingress")
    assert [set(rule) for rule in anyhost["spec"]["rules"]] == [{"http"}]


def test_http_route_attaches_to_the_named_gateway() -> None:
    chart = render_chart({"gateway": {"httpRoute": {
        "enabled": True, "parentRefs": [{"name": "shared", "namespace": "infra", "sectionName": "https"}],
        "hostnames": ["cs.example.org"]}}})
    route = chart.one("HTTPRoute", component="gateway")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"] == {
        "parentRefs": [{"name": "shared", "namespace": "infra", "sectionName": "https"}],
        "hostnames": ["cs.example.org"],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                   "backendRefs": [{"name": "release-gateway", "port": 80}]}]}


def test_http_route_is_judged_by_the_gateway_apis_own_schema() -> None:
    """The strict schema made from the Gateway API's HTTPRoute CRD (cs_cluster.crdschemas): a field
    it does not have is refused, as is a parentRef the CRD's rules refuse."""
    with pytest.raises(CsClusterError, match=r"HTTPRoute/release-gateway is invalid .*'nmae' was unexpected"):
        render_chart({"gateway": {"httpRoute": {"enabled": True, "parentRefs": [{"nmae": "shared"}]}}})
    with pytest.raises(CsClusterError, match=r"HTTPRoute/release-gateway is invalid .*parentRefs/0/port"):
        render_chart({"gateway": {"httpRoute": {"enabled": True, "parentRefs": [{"name": "s", "port": 70000}]}}})
    with pytest.raises(ToolError, match=r"gateway\.httpRoute\.parentRefs is empty"):
        render_chart({"gateway": {"httpRoute": {"enabled": True}}})


@pytest.mark.parametrize(("replicas", "budgets"), [(1, 0), (2, 1), (3, 1)])
def test_more_than_one_gateway_gets_a_disruption_budget(replicas: int, budgets: int) -> None:
    chart = render_chart({"gateway": {"replicas": replicas}})
    found = chart.find("PodDisruptionBudget", component="gateway")
    assert len(found) == budgets
    for budget in found:
        assert budget["spec"]["maxUnavailable"] == 1
        assert budget["spec"]["selector"] == chart.one("Deployment", component="gateway")["spec"]["selector"]
