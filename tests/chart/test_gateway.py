"""The gateway: Deployment, Service and the routing table it reads."""

from __future__ import annotations

import json

from helpers import container, env_of, model, values_with

from cs_cluster import RenderedChart, render_chart


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
