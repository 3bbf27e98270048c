"""Autoscaling with KEDA: a ScaledObject per autoscaled Deployment reading the model's load from the
gateway, a TriggerAuthentication with the gateway's token, each judged by the strict schema made
from KEDA's own CRD (cs_cluster.crdschemas, KEDA v2.21.0); nothing of it by default."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from helpers import CHART, model, values_with

from cs_cluster import RenderedChart, render_chart
from cs_cluster.errors import CsClusterError, ToolError
from cs_cluster.helm import find_helm
from cs_runtime.names import model_slug

KEDA = ("keda.sh/v1alpha1",)
ON = {"autoscaling": {"enabled": True}}
TRIGGER = {"type": "metrics-api", "metadata": {"url": "http://x/load", "valueLocation": "sims"}}


def render(*entries: dict[str, Any], api_versions: tuple[str, ...] = KEDA, **top: Any) -> RenderedChart:
    return render_chart(values_with(*entries, **top), api_versions=api_versions)


def scaled_object(chart: RenderedChart, component: str, slug: str) -> dict[str, Any]:
    return chart.one("ScaledObject", component=component, model=slug)


def replicas(chart: RenderedChart, component: str, slug: str) -> Any:
    return chart.one("Deployment", component=component, model=slug)["spec"].get("replicas")


@pytest.mark.parametrize("api_versions", [(), KEDA], ids=["without-keda", "with-keda"])
def test_off_by_default_nothing_of_keda_and_every_deployment_keeps_its_replicas(api_versions: tuple) -> None:
    chart = render(model("a", "b", replicas=3), model("c", "d", "dask", replicas=2), api_versions=api_versions)
    assert chart.find("ScaledObject") == [] and chart.find("TriggerAuthentication") == []
    assert replicas(chart, "model-sim", "a-b") == 3
    assert (replicas(chart, "dask-worker", "c-d"), replicas(chart, "dask-scheduler", "c-d")) == (2, 1)
    assert (replicas(chart, "model-sim", "c-d"), replicas(chart, "model-io", "a-b")) == (1, 1)


def test_on_without_keda_the_chart_stops_and_says_how_to_go_on() -> None:
    with pytest.raises(ToolError, match=r"models\.a-b: autoscaling is enabled .* does not serve keda\.sh/v1alpha1: "
                                        r"install KEDA first .* keda\.assumeInstalled=true"):
        render(model("a", "b", **ON), api_versions=())
    # GitOps: the user says KEDA is there.
    chart = render(model("a", "b", **ON), api_versions=(), keda={"assumeInstalled": True})
    assert chart.one("ScaledObject", component="model-sim")


def test_a_celery_models_sim_workers_scale_from_zero_on_its_sims_at_the_gateway() -> None:
    chart = render(model("PSLmodels", "Tax-Brain", replicas=3, **ON))
    scaled = scaled_object(chart, "model-sim", "pslmodels-taxbrain")
    deployment = chart.one("Deployment", component="model-sim", model="pslmodels-taxbrain")
    assert "replicas" not in deployment["spec"]  # KEDA's; an upgrade must not reset it
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": deployment["metadata"]["name"]}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 3)
    assert (spec["cooldownPeriod"], spec["pollingInterval"]) == (300, 15)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"] == {
        "stabilizationWindowSeconds": 300}
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "metrics-api" and trigger["name"] == "sims"
    assert trigger["metadata"] == {
        "url": "http://release-gateway.cs-workers.svc:80/pslmodels/taxbrain/load", "format": "json",
        "valueLocation": "sims", "targetValue": "1", "activationTargetValue": "0", "authMode": "bearer"}
    # The io workers stay at io.replicas (minReplicas 1 = replicas 1): no ScaledObject for them.
    assert chart.find("ScaledObject", component="model-io") == []
    assert replicas(chart, "model-io", "pslmodels-taxbrain") == 1


def test_the_load_url_names_the_model_as_the_gateway_finds_it() -> None:
    """The gateway looks a model up by clean(owner)-clean(title) (cs_runtime.names.model_slug): the
    URL's two path parts must lead back to the model's own slug, whatever its owner and title."""
    entries = [model("PSL models", "OG-USA", "dask", **ON), model("0123", "Tax.Calc 2", **ON)]
    chart = render(*entries)
    for scaled in chart.find("ScaledObject"):
        url = urlsplit(scaled["spec"]["triggers"][0]["metadata"]["url"])
        owner, title, endpoint = url.path.strip("/").split("/")
        assert endpoint == "load"
        assert model_slug(owner, title) == scaled["metadata"]["labels"]["compute.studio/model"]
        gateway = chart.one("Service", component="gateway")
        assert url.netloc == f"{gateway['metadata']['name']}.cs-workers.svc:{gateway['spec']['ports'][0]['port']}"


def test_a_dask_model_scales_its_driver_workers_and_scheduler_together() -> None:
    chart = render(model("PSLmodels", "OG-USA", "dask", replicas=4, sim={"replicas": 2}, **ON))
    slug = "pslmodels-ogusa"
    driver, workers, scheduler = (scaled_object(chart, component, slug)["spec"]
                                  for component in ("model-sim", "dask-worker", "dask-scheduler"))
    assert (driver["minReplicaCount"], driver["maxReplicaCount"]) == (0, 2) and "idleReplicaCount" not in driver
    # All Dask workers at once while a sim is queued or running, none otherwise (KEDA's idle mode:
    # from idle straight to minReplicaCount): never a number in between.
    counts = ("idleReplicaCount", "minReplicaCount", "maxReplicaCount")
    assert [workers[key] for key in counts] == [0, 4, 4]
    assert [scheduler[key] for key in counts] == [0, 1, 1]
    assert "scalingModifiers" not in workers["advanced"]
    for spec in (driver, workers, scheduler):
        assert [t["metadata"]["valueLocation"] for t in spec["triggers"]] == ["sims"]
    for component in ("model-sim", "dask-worker", "dask-scheduler"):
        assert replicas(chart, component, slug) is None, component


@pytest.mark.parametrize(("minimum", "maximum", "scaled"), [(0, 1, True), (1, 3, True), (2, 2, False)])
def test_io_workers_scale_between_min_replicas_and_replicas(minimum: int, maximum: int, scaled: bool) -> None:
    chart = render(model("a", "b", io={"minReplicas": minimum, "replicas": maximum}, **ON))
    found = chart.find("ScaledObject", component="model-io")
    assert bool(found) == scaled
    assert replicas(chart, "model-io", "a-b") == (None if scaled else maximum)
    if scaled:
        spec = found[0]["spec"]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (minimum, maximum)
        assert {t["name"]: t["metadata"]["valueLocation"] for t in spec["triggers"]} == {
            "queued": "queued.inputs", "running": "running.inputs"}
        assert spec["advanced"]["scalingModifiers"]["formula"] == "queued + running"


def test_io_min_replicas_above_replicas_is_refused() -> None:
    with pytest.raises(ToolError, match=r"models\.a-b: io\.minReplicas 3 is above io\.replicas 1"):
        render(model("a", "b", io={"minReplicas": 3}, **ON))


def test_a_model_of_no_replicas_stays_at_zero_without_a_scaled_object() -> None:
    chart = render(model("a", "b", replicas=0, **ON))
    assert chart.find("ScaledObject", component="model-sim") == []
    assert replicas(chart, "model-sim", "a-b") == 0


def test_per_model_settings_over_the_defaults() -> None:
    chart = render(model("a", "b"), model("c", "d", autoscaling={"enabled": True, "cooldownPeriod": 7200}),
                   modelDefaults={"autoscaling": {"enabled": False, "pollingInterval": 5}})
    assert chart.find("ScaledObject", model="a-b") == []
    spec = scaled_object(chart, "model-sim", "c-d")["spec"]
    assert (spec["cooldownPeriod"], spec["pollingInterval"]) == (7200, 5)
    # The HPA's window cannot exceed the API's 3600 s.
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindowSeconds"] == 3600
    off = render(model("a", "b", autoscaling={"enabled": False}), modelDefaults=ON)
    assert off.find("ScaledObject") == []


def test_keda_reads_the_gateway_token_from_its_secret_never_a_copy() -> None:
    token = "a-token-given-in-values-0123456789"
    chart = render(model("a", "b", **ON), gateway={"auth": {"token": token}})
    (auth,) = chart.find("TriggerAuthentication")
    secret = chart.one("Secret", component="gateway")
    assert auth["spec"] == {"secretTargetRef": [
        {"parameter": "bearerToken", "name": secret["metadata"]["name"], "key": "token"}]}
    assert scaled_object(chart, "model-sim", "a-b")["spec"]["triggers"][0]["authenticationRef"] == {
        "name": auth["metadata"]["name"]}
    for obj in [*chart.find("ScaledObject"), auth]:
        assert token not in str(obj)
    # A token Secret the user manages is the one KEDA reads.
    managed = render(model("a", "b", **ON), gateway={"auth": {"existingSecret": "mine", "tokenKey": "t"}})
    assert managed.one("TriggerAuthentication")["spec"]["secretTargetRef"][0] == {
        "parameter": "bearerToken", "name": "mine", "key": "t"}


def test_without_gateway_auth_keda_calls_without_a_token() -> None:
    chart = render(model("a", "b", **ON), gateway={"auth": {"enabled": False}})
    assert chart.find("TriggerAuthentication") == []
    (trigger,) = scaled_object(chart, "model-sim", "a-b")["spec"]["triggers"]
    assert "authMode" not in trigger["metadata"] and "authenticationRef" not in trigger


@pytest.mark.parametrize("autoscaling", [True, False])
def test_the_gateway_lets_kedas_operator_in_when_its_callers_are_limited(autoscaling: bool) -> None:
    caller = {"podSelector": {"matchLabels": {"app": "webserver"}}}
    chart = render(model("a", "b", autoscaling={"enabled": autoscaling}),
                   networkPolicy={"gatewayIngressFrom": [caller]}, keda={"operatorNamespace": "autoscalers"})
    (rule,) = chart.one("NetworkPolicy", name="release-gateway")["spec"]["ingress"]
    keda = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "autoscalers"}}}
    assert caller in rule["from"]
    assert (keda in rule["from"]) == autoscaling


@pytest.mark.parametrize(("kind", "spec", "error"), [
    ("ScaledObject", {"scaleTargetRef": {"name": "x"}, "triggers": [TRIGGER], "minReplicaCount": "zero"},
     r"minReplicaCount"),
    ("ScaledObject", {"scaleTargetRef": {"name": "x"}, "triggers": [{**TRIGGER, "metdata": {}}]},
     r"'metdata' was unexpected"),
    ("ScaledObject", {"scaleTargetRef": {"name": "x"}, "triggers": []}, r"triggers: \[\] should be non-empty"),
    ("ScaledObject", {"triggers": [TRIGGER]}, r"'scaleTargetRef' is a required property"),
    ("TriggerAuthentication", {"secretTargetRef": [{"parameter": "token", "name": "s"}]},
     r"'key' is a required property"),
])
def test_keda_objects_are_judged_by_kedas_own_crd_schema(kind: str, spec: dict, error: str) -> None:
    """What KEDA's API server would refuse is refused at render (schemas made from KEDA v2.21.0's CRDs)."""
    obj = {"apiVersion": "keda.sh/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    with pytest.raises(CsClusterError, match=rf"{kind}/x is invalid .*{error}"):
        render_chart({"extraObjects": [obj]})


def test_notes_name_the_autoscaled_models(tmp_path: Path) -> None:
    """`helm install` prints which models KEDA scales (Helm 4 prints NOTES.txt without a cluster)."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(values_with(model("a", "b", **ON), model("c", "d", "dask"),
                                                 keda={"assumeInstalled": True})))
    result = subprocess.run([find_helm(4), "install", "rel", str(CHART), "--dry-run=client", "-f", str(values)],
                            capture_output=True, text=True, check=False,
                            env={**os.environ, "KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    line = {entry.split(":")[0].strip(): entry for entry in notes.splitlines() if entry.startswith("  a/") or
            entry.startswith("  c/")}
    assert line["a/b"].endswith("1 sim worker(s); autoscaled by KEDA: none while no sim is queued or running")
    assert "autoscaled" not in line["c/d"]
