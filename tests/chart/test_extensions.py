"""What users extend (issue 14): per-component extraEnv, extraEnvFrom, extra volumes, sidecars, init
containers, pod metadata and scheduling; commonLabels; ServiceAccount annotations; extraObjects; the
/tmp size limit and ephemeral-storage requests; PodDisruptionBudgets that never block a drain."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from helpers import container, model, values_with

from cs_cluster import RenderedChart, render_chart
from cs_cluster.errors import CsClusterError, ToolError
from cs_cluster.quantities import parse_quantity

# Where one workload's settings live in values (a model's own, or defaults only one model uses),
# how to find it, and a variable the chart sets in its main container (which extraEnv may not set
# again). The Dask model's sim pod (the driver) starts from modelDefaults.daskDriver.
COMPONENTS: dict[str, tuple[tuple[str, ...], dict[str, str], str]] = {
    "redis": (("redis",), {"component": "redis"}, "REDIS_PORT"),
    "gateway": (("gateway",), {"component": "gateway"}, "CS_ROUTING_TABLE"),
    "model-io": (("models", "a-b", "io"), {"component": "model-io", "model": "a-b"}, "OWNER"),
    "model-sim": (("models", "a-b", "sim"), {"component": "model-sim", "model": "a-b"}, "SIM_TIME_LIMIT"),
    "dask-driver": (("modelDefaults", "daskDriver"), {"component": "model-sim", "model": "c-d"},
                    "DASK_SCHEDULER_ADDRESS"),
    "dask-scheduler": (("modelDefaults", "daskScheduler"), {"component": "dask-scheduler", "model": "c-d"}, ""),
    "dask-worker": (("models", "c-d", "daskWorker"), {"component": "dask-worker", "model": "c-d"}, "POD_NAME"),
}

# A sidecar as a user writes it; the chart adds the restricted security context.
SIDECAR = {
    "name": "log-shipper",
    "image": "registry.example.org/tools/log-shipper:1.2",
    "args": ["--from", "/var/log/app"],
    "resources": {"requests": {"cpu": "10m", "memory": "16Mi", "ephemeral-storage": "16Mi"},
                  "limits": {"cpu": "100m", "memory": "64Mi", "ephemeral-storage": "64Mi"}},
    "readinessProbe": {"exec": {"command": ["true"]}},
    "livenessProbe": {"exec": {"command": ["true"]}},
    "volumeMounts": [{"name": "shared-config", "mountPath": "/var/log/app"}],
}
INIT = {**{k: v for k, v in SIDECAR.items() if "Probe" not in k}, "name": "wait-for-config",
        "securityContext": {"runAsUser": 10002}}
EXTENSIONS: dict[str, Any] = {
    # The runtime's own tuning knobs (docs/runtime-contract.md) go through extraEnv.
    "extraEnv": [{"name": "CS_HEARTBEAT_INTERVAL_SECONDS", "value": "5"}, {"name": "TZ", "value": "UTC"}],
    "extraEnvFrom": [{"configMapRef": {"name": "site-settings"}}],
    "extraVolumes": [{"name": "shared-config", "configMap": {"name": "site-settings"}}],
    "extraVolumeMounts": [{"name": "shared-config", "mountPath": "/etc/site", "readOnly": True}],
    "extraContainers": [SIDECAR],
    "initContainers": [INIT],
    "podAnnotations": {"example.org/owner": "team-models"},
    "podLabels": {"example.org/team": "models"},
    "priorityClassName": "cs-workers-high",
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                   "whenUnsatisfiable": "ScheduleAnyway"}],
    "tmpSizeLimit": "3Gi",
}


def with_settings(path: tuple[str, ...], settings: dict[str, Any], **top: Any) -> dict[str, Any]:
    values = values_with(model("a", "b"), model("c", "d", "dask"), **top)
    node = values
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = {**node.get(path[-1], {}), **copy.deepcopy(settings)}
    return values


@pytest.fixture(scope="module")
def plain() -> RenderedChart:
    return render_chart(values_with(model("a", "b"), model("c", "d", "dask")))


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_extension_point_reaches_the_component_and_only_it(component: str, plain: RenderedChart) -> None:
    path, selector, _ = COMPONENTS[component]
    chart = render_chart(with_settings(path, EXTENSIONS))
    workload = chart.one("Deployment", **selector)
    pod = workload["spec"]["template"]
    spec = pod["spec"]
    main = spec["containers"][0]
    assert main["env"][-2:] == EXTENSIONS["extraEnv"]
    assert main["envFrom"][-1] == {"configMapRef": {"name": "site-settings"}}
    assert main["volumeMounts"][-1] == EXTENSIONS["extraVolumeMounts"][0]
    assert spec["volumes"][-1] == EXTENSIONS["extraVolumes"][0]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "3Gi"}} in spec["volumes"]
    assert pod["metadata"]["annotations"]["example.org/owner"] == "team-models"
    assert pod["metadata"]["labels"]["example.org/team"] == "models"
    assert spec["priorityClassName"] == "cs-workers-high"
    # A constraint without a labelSelector spreads this component's pods (of this model).
    assert spec["topologySpreadConstraints"] == [{**EXTENSIONS["topologySpreadConstraints"][0],
                                                  "labelSelector": {"matchLabels": workload["spec"]["selector"][
                                                      "matchLabels"]}}]
    # Sidecars and init containers meet the restricted standard by default; their own settings win.
    sidecar, init = spec["containers"][1], spec["initContainers"][0]
    assert [c["name"] for c in spec["containers"]] == [main["name"], "log-shipper"]
    for extra in (sidecar, init):
        assert extra["securityContext"]["allowPrivilegeEscalation"] is False
        assert extra["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert extra["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["securityContext"]["runAsUser"] == 10002 and "runAsUser" not in sidecar["securityContext"]
    # Selectors never change (they cannot after install), and no other workload's pods do.
    before = plain.one("Deployment", **selector)
    assert workload["spec"]["selector"] == before["spec"]["selector"]
    changed = {name for name, template in chart.pod_templates().items() if plain.pod_templates()[name] != template}
    assert changed == {f"Deployment/{workload['metadata']['name']}"}


def test_a_models_own_settings_replace_the_defaults_lists() -> None:
    values = values_with(model("a", "b", io={"extraEnv": [{"name": "MODEL_ONLY", "value": "1"}]}), model("c", "d"),
                         modelDefaults={"io": {"extraEnv": [{"name": "EVERY_MODEL", "value": "1"}],
                                               "podLabels": {"tier": "io"}}})
    chart = render_chart(values)
    env = {slug: [e["name"] for e in container(chart.one("Deployment", component="model-io", model=slug))["env"]]
           for slug in ("a-b", "c-d")}
    assert env["a-b"][-1] == "MODEL_ONLY" and "EVERY_MODEL" not in env["a-b"]
    assert env["c-d"][-1] == "EVERY_MODEL"
    for slug in ("a-b", "c-d"):  # maps merge key by key
        labels = chart.one("Deployment", component="model-io", model=slug)["spec"]["template"]["metadata"]["labels"]
        assert labels["tier"] == "io"


@pytest.mark.parametrize("component", [c for c, (_, _, name) in COMPONENTS.items() if name])
def test_extra_env_may_not_set_what_the_chart_sets(component: str) -> None:
    """The chart's checks (time limits, the visibility timeout, the Redis user) rely on its own env."""
    path, _, name = COMPONENTS[component]
    values = with_settings(path, {"extraEnv": [{"name": name, "value": "x"}]})
    where = ".".join(path)
    with pytest.raises(ToolError, match=rf"{where.replace('.', '[.]')}.*extraEnv.*: {name} is set by the chart"):
        render_chart(values)


def test_extra_env_values_are_strings() -> None:
    with pytest.raises(ToolError, match="extraEnv/0/value"):
        render_chart({"gateway": {"extraEnv": [{"name": "CS_GATEWAY_MAX_BODY_BYTES", "value": 1048576}]}})


RESERVED = ["app.kubernetes.io/component", "app.kubernetes.io/name", "helm.sh/chart", "compute.studio/model"]


@pytest.mark.parametrize("key", RESERVED)
def test_labels_the_chart_sets_are_refused(key: str) -> None:
    with pytest.raises(ToolError, match=f"commonLabels: {key} is a label the chart sets itself"):
        render_chart({"commonLabels": {key: "x"}})
    with pytest.raises(ToolError, match=f"models.c-d.daskWorker.podLabels .*: {key} is a label the chart sets"):
        render_chart(with_settings(("models", "c-d", "daskWorker"), {"podLabels": {key: "x"}}))


def test_common_labels_on_every_object_and_pod_never_in_a_selector() -> None:
    common = {"example.org/env": "prod", "cost-center": "c42"}
    values = with_settings(("gateway",), {"podLabels": {"cost-center": "gateway-only"}}, commonLabels=common)
    values["workerSecret"] = {"values": {"COMP_URL": "u", "COMP_API_TOKEN": "t"}}
    chart = render_chart(values)
    selectors = 0
    for obj in chart:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"]["labels"]["example.org/env"] == "prod", where
        spec = obj.get("spec") or {}
        for selector in (spec.get("selector"), spec.get("podSelector")):
            if isinstance(selector, dict):
                selectors += 1
                text = repr(selector)
                assert "example.org/env" not in text and "cost-center" not in text, where
        template = spec.get("template")
        if template:
            labels = template["metadata"]["labels"]
            assert labels["example.org/env"] == "prod", where
            # A component's podLabels win over commonLabels for its pods.
            assert labels["cost-center"] == ("gateway-only" if obj["metadata"]["name"] == "release-gateway"
                                             else "c42"), where
    assert selectors >= 10


def test_service_account_annotations_for_all_and_per_component() -> None:
    chart = render_chart(values_with(model("a", "b"), model("c", "d", "dask"), serviceAccount={
        "annotations": {"example.org/all": "yes"},
        "componentAnnotations": {"dask-worker": {"iam.gke.io/gcp-service-account": "models@p.iam.gserviceaccount.com"},
                                 "model-sim": {"example.org/all": "overridden"}}}))
    accounts = {a["metadata"]["labels"]["app.kubernetes.io/component"]: a["metadata"].get("annotations", {})
                for a in chart.find("ServiceAccount")}
    assert set(accounts) == {"redis", "gateway", "model-io", "model-sim", "dask-scheduler", "dask-worker"}
    assert accounts["dask-worker"] == {"example.org/all": "yes",
                                       "iam.gke.io/gcp-service-account": "models@p.iam.gserviceaccount.com"}
    assert accounts["model-sim"] == {"example.org/all": "overridden"}
    assert accounts["gateway"] == accounts["redis"] == {"example.org/all": "yes"}
    with pytest.raises(ToolError, match="componentAnnotations"):
        render_chart({"serviceAccount": {"componentAnnotations": {"model": {"a": "b"}}}})


def test_extra_objects_are_templated_and_validated() -> None:
    values = {"extraObjects": [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "{{ .Release.Name }}-site", "namespace": "{{ .Release.Namespace }}"},
         "data": {"redis": '{{ include "cs-workers.redis.fullname" . }}'}},
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: {{ .Release.Name }}-high\n"
        "value: 1000\n",
    ]}
    chart = render_chart(values)
    assert chart.one("ConfigMap", name="release-site")["data"] == {"redis": "release-redis"}
    assert chart.one("PriorityClass", name="release-high")["value"] == 1000
    # The same strict schemas judge them as the chart's own objects.
    with pytest.raises(CsClusterError, match="ConfigMap/release-bad is invalid"):
        render_chart({"extraObjects": [{"apiVersion": "v1", "kind": "ConfigMap", "dta": {},
                                        "metadata": {"name": "{{ .Release.Name }}-bad", "namespace": "ns"}}]})


def test_every_pod_bounds_tmp_and_requests_ephemeral_storage(example_chart: RenderedChart) -> None:
    """A pod that fills /tmp is evicted, not the node's disk filled; the scheduler counts the disk
    each container needs; the container's limit leaves room for /tmp (or the kubelet would evict
    the pod before /tmp is full)."""
    chart = render_chart(values_with(model("a", "b"), model("c", "d", "dask")))
    pods = [(o["metadata"]["name"], o["spec"]["template"]["spec"]) for o in [*chart.find("Deployment"),
                                                                               *example_chart.find("Deployment")]]
    pods += [(o["metadata"]["name"], o["spec"]) for o in chart.find("Pod")]
    assert len(pods) > 10
    for name, spec in pods:
        tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
        size = parse_quantity(tmp["emptyDir"]["sizeLimit"])
        for each in spec["containers"]:
            resources = each["resources"]
            assert parse_quantity(resources["requests"]["ephemeral-storage"]) > 0, name
            assert parse_quantity(resources["limits"]["ephemeral-storage"]) > size, name
