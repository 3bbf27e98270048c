"""The label contract, selectors that never collide, and valid names for any owner/title."""

from __future__ import annotations

import re

import pytest
from helpers import model, values_with

from cs_cluster import RenderedChart, render_chart

COMPONENTS = {"redis", "gateway", "model-io", "model-sim", "dask-scheduler", "dask-worker"}
WORKLOADS = ("Deployment", "StatefulSet")
STABLE_SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                        "compute.studio/model"}
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@pytest.fixture(scope="module")
def two_model_chart() -> RenderedChart:
    return render_chart(values_with(model("PSLmodels", "Tax-Brain"), model("PSLmodels", "OG-USA", "dask"),
                                    workerSecret={"values": {"COMP_URL": "u", "COMP_API_TOKEN": "t"}}))


def test_every_object_carries_the_label_contract(two_model_chart: RenderedChart) -> None:
    for obj in two_model_chart:
        labels = obj["metadata"]["labels"]
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        # helm test pods name themselves apart, so that no selector can ever pick them up.
        is_test = obj.get("metadata", {}).get("annotations", {}).get("helm.sh/hook") == "test"
        assert labels["app.kubernetes.io/name"] == ("cs-workers-test" if is_test else "cs-workers"), where
        assert labels["app.kubernetes.io/instance"] == "release", where
        assert labels["app.kubernetes.io/part-of"] == "cs-workers", where
        assert labels["app.kubernetes.io/component"] in COMPONENTS, where
        if "-pslmodels-" in obj["metadata"]["name"]:
            assert labels["compute.studio/model"] in ("pslmodels-taxbrain", "pslmodels-ogusa"), where


def test_selectors_are_stable_distinct_and_match_their_pods(two_model_chart: RenderedChart) -> None:
    workloads = [o for o in two_model_chart if o["kind"] in WORKLOADS]
    assert len(workloads) == 2 + 2 * 2 + 2
    selectors = []
    for workload in workloads:
        selector = workload["spec"]["selector"]["matchLabels"]
        assert set(selector) <= STABLE_SELECTOR_KEYS
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        # Pod templates carry no chart version, so a chart upgrade alone rolls nothing.
        assert "helm.sh/chart" not in pod_labels and "app.kubernetes.io/version" not in pod_labels
        selectors.append(selector)
    # No selector may match another workload's pods.
    for workload, selector in zip(workloads, selectors, strict=False):
        for other in workloads:
            if other is not workload:
                assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()


def test_services_select_exactly_one_workload(two_model_chart: RenderedChart) -> None:
    workloads = [o for o in two_model_chart if o["kind"] in WORKLOADS]
    for service in two_model_chart.find("Service"):
        selector = service["spec"]["selector"]
        matching = [w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matching) == 1, service["metadata"]["name"]


LONG_OWNER = "Policy-Simulation-Library-Foundation-For-Open-Models"
LONG_TITLE = "Overlapping-Generations-Model-Of-The-United-States-Economy"


def test_helm_test_pods_check_gateway_redis_and_each_scheduler(two_model_chart: RenderedChart) -> None:
    tests = [o for o in two_model_chart if o.get("metadata", {}).get("annotations", {}).get("helm.sh/hook") == "test"]
    assert sorted(o["metadata"]["labels"]["app.kubernetes.io/component"] for o in tests) == [
        "dask-scheduler", "gateway", "redis"]
    for pod in tests:
        assert pod["kind"] == "Pod" and pod["spec"]["restartPolicy"] == "Never"
        command = " ".join(pod["spec"]["containers"][0]["command"])
        assert "release-" in command
    redis_check = next(o for o in tests if o["metadata"]["labels"]["app.kubernetes.io/component"] == "redis")
    env = redis_check["spec"]["containers"][0]["env"]
    assert env == [{"name": "REDISCLI_AUTH", "valueFrom": {"secretKeyRef": {"name": "release-redis",
                                                                           "key": "redis-password"}}}]


def test_long_names_are_shortened_deterministically_and_stay_unique() -> None:
    entries = [model(LONG_OWNER, LONG_TITLE, "dask"), model(LONG_OWNER, LONG_TITLE + "2", "dask")]
    release = "a-release-name-that-is-quite-long"
    first = render_chart(values_with(*entries), release=release)
    second = render_chart(values_with(*entries), release=release)
    names = [(o["kind"], o["metadata"]["name"]) for o in first]
    assert names == [(o["kind"], o["metadata"]["name"]) for o in second]
    assert len(set(names)) == len(names)
    for kind, name in names:
        assert len(name) <= 63 and DNS_LABEL.match(name), (kind, name)
    # The gateway's routing table names the shortened scheduler Service.
    import json

    table = json.loads(first.one("ConfigMap", component="gateway")["data"]["routes.json"])["models"]
    for entry in table.values():
        host = entry["daskSchedulerAddress"].removeprefix("tcp://").removesuffix(":8786")
        assert first.find("Service", name=host)


def test_fullname_override_prefixes_every_name() -> None:
    chart = render_chart(values_with(model("a", "b"), fullnameOverride="cs"))
    assert {o["metadata"]["name"] for o in chart.find("Deployment")} == {"cs-redis", "cs-gateway", "cs-a-b-io",
                                                                         "cs-a-b-sim"}
