"""The NetworkPolicies isolate what they promise: evaluated on every pod of a two-model render."""

from __future__ import annotations

import pytest
from helpers import model, values_with

from cs_cluster import RenderedChart, render_chart
from cs_cluster.networkpolicy import External, Pod, PolicySet, pods_of

INTERNET = External("webserver or bucket")


@pytest.fixture(scope="module")
def chart() -> RenderedChart:
    return render_chart(values_with(model("a", "celery"), model("a", "daska", "dask"), model("b", "daskb", "dask")))


@pytest.fixture(scope="module")
def policies(chart: RenderedChart) -> PolicySet:
    return PolicySet(chart.objects)


@pytest.fixture(scope="module")
def pods(chart: RenderedChart) -> dict[str, Pod]:
    short = {}
    for pod in pods_of(chart.objects):
        short[pod.name.removeprefix("release-")] = pod
    return short


def test_every_pod_is_selected_by_a_policy_for_both_directions(policies: PolicySet, pods: dict[str, Pod]) -> None:
    for pod in pods.values():
        assert policies._selecting(pod, "Ingress"), pod.name
        assert policies._selecting(pod, "Egress"), pod.name


ALLOWED = [
    ("gateway", "redis", 6379),
    ("a-celery-io", "redis", 6379),
    ("a-celery-sim", "redis", 6379),
    ("a-daska-sim", "redis", 6379),
    ("a-daska-sim", "a-daska-dask-scheduler", 8786),
    ("a-daska-dask-worker", "a-daska-dask-scheduler", 8786),
    ("a-daska-dask-scheduler", "a-daska-dask-worker", 40123),
    ("a-daska-dask-worker", "a-daska-dask-worker", 40123),
    ("a-daska-sim", "a-daska-dask-worker", 40123),
]
DENIED = [
    # Model A's code cannot reach model B's Dask cluster, nor B's workers reach A's.
    ("a-daska-sim", "b-daskb-dask-scheduler", 8786),
    ("a-daska-dask-worker", "b-daskb-dask-scheduler", 8786),
    ("b-daskb-dask-worker", "a-daska-dask-worker", 40123),
    ("a-celery-sim", "a-daska-dask-scheduler", 8786),
    # Dask pods run model code and have no business with Redis.
    ("a-daska-dask-worker", "redis", 6379),
    ("a-daska-dask-scheduler", "redis", 6379),
    # Nothing calls into workers or Redis on other ports.
    ("gateway", "a-celery-io", 8080),
    ("gateway", "redis", 6380),
    ("redis", "gateway", 5050),
]


@pytest.mark.parametrize(("source", "destination", "port"), ALLOWED)
def test_allowed_paths(policies: PolicySet, pods: dict[str, Pod], source: str, destination: str, port: int) -> None:
    assert policies.allowed(pods[source], pods[destination], port)


@pytest.mark.parametrize(("source", "destination", "port"), DENIED)
def test_denied_paths(policies: PolicySet, pods: dict[str, Pod], source: str, destination: str, port: int) -> None:
    assert not policies.allowed(pods[source], pods[destination], port)


def test_dns_works_for_every_pod(policies: PolicySet, pods: dict[str, Pod]) -> None:
    for pod in pods.values():
        assert policies.allowed(pod, External("kube-dns"), 53, "UDP"), pod.name
        assert policies.allowed(pod, External("kube-dns"), 53, "TCP"), pod.name


def test_only_model_code_reaches_the_webserver(policies: PolicySet, pods: dict[str, Pod]) -> None:
    reach = {name for name, pod in pods.items() if policies.allowed(pod, INTERNET, 443)}
    assert reach == {"a-celery-io", "a-celery-sim", "a-daska-io", "a-daska-sim", "b-daskb-io", "b-daskb-sim",
                     "a-daska-dask-worker", "b-daskb-dask-worker"}
    assert not policies.allowed(pods["a-celery-sim"], INTERNET, 22)


def test_the_gateway_takes_calls_on_its_port_only(policies: PolicySet, pods: dict[str, Pod]) -> None:
    assert policies.allowed(INTERNET, pods["gateway"], 5050)
    assert not policies.allowed(INTERNET, pods["gateway"], 22)
    assert not policies.allowed(INTERNET, pods["redis"], 6379)


def test_gateway_ingress_can_be_limited_to_the_webserver() -> None:
    webserver_peer = {"podSelector": {"matchLabels": {"app": "webserver"}}}
    chart = render_chart(values_with(model("a", "b"), networkPolicy={"gatewayIngressFrom": [webserver_peer]}))
    policies = PolicySet(chart.objects)
    gateway = next(p for p in pods_of(chart.objects) if p.name == "release-gateway")
    # A podSelector alone means the release's namespace: a webserver elsewhere needs a namespaceSelector.
    assert policies.allowed(Pod("web", {"app": "webserver"}, namespace="cs-workers"), gateway, 5050)
    assert not policies.allowed(Pod("web", {"app": "webserver"}, namespace="web"), gateway, 5050)
    assert not policies.allowed(Pod("other", {"app": "other"}, namespace="cs-workers"), gateway, 5050)
    assert not policies.allowed(INTERNET, gateway, 5050)


def test_policies_can_be_turned_off() -> None:
    chart = render_chart(values_with(model("a", "b", "dask"), networkPolicy={"enabled": False}))
    assert not chart.find("NetworkPolicy")


STRANGER = Pod("stranger", {"app": "anything"}, namespace="cs-workers")


def test_redis_ingress_alone_accepts_only_the_gateway_and_model_workers(policies: PolicySet,
                                                                          pods: dict[str, Pod]) -> None:
    """Each side holds on its own: Redis's ingress refuses Dask pods even if their egress were opened."""
    accepted = {name for name, pod in pods.items() if policies.ingress_allowed(pod, pods["redis"], 6379)}
    assert accepted == {"gateway", "a-celery-io", "a-celery-sim", "a-daska-io", "a-daska-sim", "b-daskb-io",
                        "b-daskb-sim"}
    assert not policies.ingress_allowed(STRANGER, pods["redis"], 6379)


@pytest.mark.parametrize("model_slug", ["a-daska", "b-daskb"])
def test_dask_ingress_alone_accepts_only_that_models_pods(policies: PolicySet, pods: dict[str, Pod],
                                                           model_slug: str) -> None:
    for component, port in (("dask-scheduler", 8786), ("dask-worker", 40123)):
        target = pods[f"{model_slug}-{component}"]
        accepted = {name for name, pod in pods.items() if policies.ingress_allowed(pod, target, port)}
        assert accepted == {f"{model_slug}-sim", f"{model_slug}-dask-scheduler", f"{model_slug}-dask-worker"}, \
            component
        assert not policies.ingress_allowed(STRANGER, target, port)
