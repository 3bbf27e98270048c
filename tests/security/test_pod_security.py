"""Every pod the chart renders meets the restricted Pod Security Standard."""

from __future__ import annotations

import copy

import pytest
from helpers import model, values_with

from cs_cluster import render_chart
from cs_cluster.podsecurity import restricted_violations, workload_pod_specs

CASES = {
    "defaults": {},
    "celery and dask": values_with(model("PSLmodels", "Tax-Brain", replicas=2),
                                   model("PSLmodels", "OG-USA", "dask", replicas=3, nodeSize=["small"])),
    "no persistence, existing secrets": values_with(
        model("a", "b", "dask", secrets={"existingSecret": "keys"}),
        redis={"persistence": {"enabled": False}, "auth": {"existingSecret": "pw"}},
        gateway={"auth": {"existingSecret": "token"}}, workerSecret={"existingSecret": "ws"}),
}


@pytest.mark.parametrize("values", CASES.values(), ids=CASES.keys())
def test_every_pod_is_restricted(values: dict) -> None:
    chart = render_chart(values)
    specs = dict(workload_pod_specs(chart.objects))
    assert specs
    for name, spec in specs.items():
        assert restricted_violations(spec) == [], name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] != "default", name
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name


def test_each_component_has_its_own_service_account_without_a_token() -> None:
    chart = render_chart(CASES["celery and dask"])
    accounts = chart.find("ServiceAccount")
    assert {a["metadata"]["labels"]["app.kubernetes.io/component"] for a in accounts} == {
        "redis", "gateway", "model-io", "model-sim", "dask-scheduler", "dask-worker"}
    assert all(a["automountServiceAccountToken"] is False for a in accounts)


SECURE_POD = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False,
                                                     "capabilities": {"drop": ["ALL"]}}}],
    "volumes": [{"name": "tmp", "emptyDir": {}}],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda pod: pod["containers"][0]["securityContext"].update(privileged=True), "privileged"),
        (lambda pod: pod["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
         "allowPrivilegeEscalation"),
        (lambda pod: pod["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
        (lambda pod: pod["securityContext"].update(runAsUser=0), "runAsUser"),
        (lambda pod: pod["securityContext"].pop("seccompProfile"), "seccompProfile"),
        (lambda pod: pod["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
         "NET_BIND_SERVICE"),
        (lambda pod: pod["containers"][0]["securityContext"]["capabilities"].update(drop=[]), "drop ALL"),
        (lambda pod: pod["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "disallowed type"),
        (lambda pod: pod.update(hostNetwork=True), "hostNetwork"),
        (lambda pod: pod["containers"][0].update(ports=[{"containerPort": 1, "hostPort": 1}]), "hostPort"),
        (lambda pod: pod["containers"][0]["securityContext"].update(runAsUser=0),
         "container c: runAsUser must not be 0"),
        (lambda pod: pod["containers"][0]["securityContext"].update(procMount="Unmasked"),
         "container c: procMount must be Default"),
        (lambda pod: pod["securityContext"].update(sysctls=[{"name": "net.core.somaxconn", "value": "1024"}]),
         "sysctl net.core.somaxconn is not allowed"),
    ],
)
def test_the_checker_catches_each_violation(change, message: str) -> None:  # type: ignore[no-untyped-def]
    assert restricted_violations(SECURE_POD) == []
    pod = copy.deepcopy(SECURE_POD)
    change(pod)
    assert any(message in problem for problem in restricted_violations(pod))


def test_what_the_standard_allows_passes() -> None:
    """The checker flags nothing the restricted standard allows: safe sysctls, the Default
    procMount, a non-zero uid on the container."""
    pod = copy.deepcopy(SECURE_POD)
    pod["securityContext"]["sysctls"] = [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]
    pod["containers"][0]["securityContext"].update(procMount="Default", runAsUser=1)
    assert restricted_violations(pod) == []
