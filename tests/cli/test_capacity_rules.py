"""The capacity check's rules on the chart's real renders, against nodes and pods written as the
API server serves them: what can never be scheduled, what fits only later, what fits now. The
same check runs against the live control plane in tests/cluster/test_capacity.py; here each rule
gets a case of its own, including the ones shared nodes cannot be relied on for (pods of other
namespaces filling a pool)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from helpers import model, values_with

from cs_cluster.capacity import LATER, NEVER, CapacityReport, check_capacity
from cs_cluster.plan import Plan, make_plan
from cs_cluster.render import render_chart
from cs_cluster.scheduling import Placement, format_quantity, pod_requests

NAMESPACE = "cs"
REAL_NODE = {"key": "cs-workers.dev/real-node", "operator": "Equal", "value": "true", "effect": "NoSchedule"}


def node(name: str, cpu: str, memory: str = "16Gi", labels: dict[str, str] | None = None,
         taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints} if taints else {},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "ephemeral-storage": "100Gi", "pods": "110"}}}


NODES = [node("small-1", "4", labels={"size": "small"}), node("small-2", "4", labels={"size": "small"}),
         node("large-1", "16", "64Gi", labels={"size": "large"}),
         node("real", "2", "24Gi", labels={"cs-workers.dev/real-node": "true"},
              taints=[{"key": "cs-workers.dev/real-node", "value": "true", "effect": "NoSchedule"}])]


def pod(name: str, on: str, cpu: str, *, namespace: str = "others", labels: dict[str, str] | None = None,
        daemon: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels or {}}
    if daemon:
        metadata["ownerReferences"] = [{"kind": "DaemonSet", "name": "agent"}]
    return {"metadata": metadata, "status": {"phase": "Running"},
            "spec": {"nodeName": on, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}


def rendered(tag: str = "v1", cpu: str = "3", memory: str = "1G", **settings: Any) -> list[dict[str, Any]]:
    values = values_with(model("cap", "Model", tag=tag, resources={"requests": {"cpu": cpu, "memory": memory}},
                               **settings))
    return render_chart(values, release="cs", namespace=NAMESPACE, validate=False).objects


def plan_of(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> Plan:
    names = {"models": {"cap-model": {"owner": "cap", "title": "Model"}}}
    return make_plan(before, after, release="cs", namespace=NAMESPACE, baseline="test", values_after=names)


def sim_pod_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": "cs-workers", "app.kubernetes.io/instance": "cs",
            "app.kubernetes.io/component": "model-sim", "compute.studio/model": "cap-model"}


def sim_findings(report: CapacityReport) -> list[Any]:
    return [f for f in report.findings if f.workload == "Deployment/cs-cap-model-sim"]


CASES = {
    "fits an empty small node": dict(after={"nodeSize": ["small"]}, pods=[], verdict=None, words=[]),
    "above every small node": dict(after={"nodeSize": ["small"], "cpu": "5"}, pods=[], verdict=NEVER,
                                   words=["cap/Model", "requests cpu 5", "size in (small): small-1, small-2",
                                          "at most cpu 4"]),
    "no node of the pool": dict(after={"nodeSize": ["huge"]}, pods=[], verdict=NEVER,
                                words=["no node has size in (huge)"]),
    "tainted node not tolerated": dict(
        after={"sim": {"nodeSelector": {"cs-workers.dev/real-node": "true"}}, "cpu": "1"}, pods=[], verdict=NEVER,
        words=["(real) have taints it does not tolerate: cs-workers.dev/real-node=true:NoSchedule"]),
    "tainted node tolerated": dict(
        after={"sim": {"nodeSelector": {"cs-workers.dev/real-node": "true"}, "tolerations": [REAL_NODE]}, "cpu": "1"},
        pods=[], verdict=None, words=[]),
    "tolerated but above the real node": dict(
        after={"sim": {"nodeSelector": {"cs-workers.dev/real-node": "true"}, "tolerations": [REAL_NODE]}, "cpu": "3"},
        pods=[], verdict=NEVER, words=["requests cpu 3", "cs-workers.dev/real-node=true: real", "at most cpu 2"]),
    # Without a toleration a tainted node of the pool is not the pool's: 20Gi fits no node the pod may use.
    "memory only a tainted node has": dict(
        after={"cpu": "1", "memory": "20Gi", "nodeSize": ["small"]}, pods=[], verdict=NEVER,
        nodes=[*NODES, node("small-tainted", "4", "64Gi", labels={"size": "small"}, taints=[REAL_NODE])],
        words=["memory 20Gi", "at most memory 16Gi",
               "left out, for taints it does not tolerate: small-tainted (cs-workers.dev/real-node=true:NoSchedule)"]),
    "DaemonSet pods never leave": dict(
        after={"nodeSize": ["small"]}, verdict=NEVER, words=["requests cpu 3", "at most cpu 2500m"],
        pods=[pod("agent-1", "small-1", "1500m", daemon=True), pod("agent-2", "small-2", "1500m", daemon=True)]),
    "others fill the pool": dict(
        after={"nodeSize": ["small"]}, verdict=LATER, words=["1 of 1 new pods fit only once other pods are gone",
                                                             "the most free on a node of its pool (size in (small)) "
                                                             "now is cpu 1"],
        pods=[pod("busy-1", "small-1", "3"), pod("busy-2", "small-2", "3")]),
    "room only where the replaced pod runs": dict(
        before={"nodeSize": ["small"]}, after={"nodeSize": ["small"], "tag": "v2"}, verdict=LATER,
        words=["1 of 1 new pods fit only once the pods they replace are gone"],
        pods=[pod("old-sim", "small-1", "3", namespace=NAMESPACE, labels=sim_pod_labels()),
              pod("busy-2", "small-2", "3")]),
    "a pod of another release is not replaced": dict(
        before={"nodeSize": ["small"]}, after={"nodeSize": ["small"], "tag": "v2"}, verdict=LATER,
        words=["fit only once other pods are gone"],
        pods=[pod("look-alike", "small-1", "3", namespace="elsewhere", labels=sim_pod_labels()),
              pod("busy-2", "small-2", "3")]),
}


def _render(settings: dict[str, Any] | None) -> list[dict[str, Any]]:
    if settings is None:
        return []
    settings = dict(settings)
    return rendered(**settings)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_capacity_verdicts(case: str) -> None:
    spec = CASES[case]
    plan = plan_of(_render(spec.get("before")), _render(spec["after"]))
    report = check_capacity(plan, spec.get("nodes", NODES), spec["pods"])
    findings = sim_findings(report)
    if spec["verdict"] is None:
        assert findings == [], [f.line() for f in findings]
        return
    assert len(findings) == 1, [f.line() for f in report.findings]
    assert findings[0].verdict == spec["verdict"], findings[0].line()
    for words in spec["words"]:
        assert words in findings[0].line(), findings[0].line()


def test_only_never_is_refused() -> None:
    plan = plan_of([], rendered(cpu="3", nodeSize=["small"]))
    later = check_capacity(plan, NODES, [pod("busy-1", "small-1", "3"), pod("busy-2", "small-2", "3")])
    assert later.findings and not later.never
    later.refuse_if_never()  # a warning only
    never = check_capacity(plan_of([], rendered(cpu="5", nodeSize=["small"])), NODES, [])
    from cs_cluster.errors import CapacityError

    with pytest.raises(CapacityError, match=r"cap/Model: Deployment/cs-cap-model-sim \(1 pod\) can never be"):
        never.refuse_if_never()


def test_unchanged_workloads_need_no_room() -> None:
    """A no-op plan asks for no pods, however full the nodes are."""
    same = rendered(nodeSize=["small"])
    report = check_capacity(plan_of(same, rendered(nodeSize=["small"])), NODES, [pod("busy", "small-1", "4")])
    assert report.new_pods == 0 and report.findings == []


@pytest.mark.parametrize(("spec", "expected"), [
    ({"containers": [{"resources": {"requests": {"cpu": "500m"}}}, {"resources": {"requests": {"cpu": "1"}}}]},
     {"cpu": Decimal("1.5"), "pods": 1}),
    # A limit without a request is the request, as the API server defaults it.
    ({"containers": [{"resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "1"}}}]},
     {"cpu": 1, "memory": 2**30, "pods": 1}),
    # An init container runs alone: the pod needs the larger of it and the containers' sum.
    ({"initContainers": [{"resources": {"requests": {"cpu": "3"}}}],
      "containers": [{"resources": {"requests": {"cpu": "1", "memory": "1G"}}}]},
     {"cpu": 3, "memory": 10**9, "pods": 1}),
    ({"containers": [{}]}, {"pods": 1}),
], ids=["sum", "limit-defaults-request", "init-container", "nothing"])
def test_pod_requests(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    assert pod_requests(spec) == {k: Decimal(v) for k, v in expected.items()}


@pytest.mark.parametrize(("expression", "labels", "admitted"), [
    ({"key": "size", "operator": "In", "values": ["small", "medium"]}, {"size": "medium"}, True),
    ({"key": "size", "operator": "In", "values": ["small"]}, {}, False),
    ({"key": "size", "operator": "NotIn", "values": ["small"]}, {}, True),
    ({"key": "gpu", "operator": "Exists"}, {"gpu": ""}, True),
    ({"key": "gpu", "operator": "DoesNotExist"}, {"gpu": "a100"}, False),
    ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"cores": "16"}, True),
    ({"key": "cores", "operator": "Lt", "values": ["8"]}, {"cores": "16"}, False),
    ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"cores": "many"}, False),
], ids=["in", "in-missing", "notin-missing", "exists", "doesnotexist", "gt", "lt", "gt-not-a-number"])
def test_node_affinity_operators(expression: dict[str, Any], labels: dict[str, str], admitted: bool) -> None:
    from cs_cluster.scheduling import Node

    spec = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [expression]}]}}}}
    assert Placement.from_pod_spec(spec).admits(Node("n", labels, (), {})) is admitted


@pytest.mark.parametrize(("toleration", "tolerated"), [
    (REAL_NODE, True),
    ({"key": "cs-workers.dev/real-node", "operator": "Exists"}, True),
    ({"operator": "Exists"}, True),
    ({"key": "cs-workers.dev/real-node", "operator": "Equal", "value": "false", "effect": "NoSchedule"}, False),
    ({"key": "cs-workers.dev/real-node", "operator": "Exists", "effect": "NoExecute"}, False),
    ({"key": "other", "operator": "Exists"}, False),
], ids=["equal", "exists", "everything", "other-value", "other-effect", "other-key"])
def test_tolerations(toleration: dict[str, Any], tolerated: bool) -> None:
    from cs_cluster.scheduling import Node

    real = Node.from_api(NODES[3])
    assert Placement.from_pod_spec({"tolerations": [toleration]}).admits(real) is tolerated


def test_a_cordoned_node_takes_no_new_pods() -> None:
    from cs_cluster.scheduling import Node

    cordoned = node("small-9", "4", labels={"size": "small"})
    cordoned["spec"]["unschedulable"] = True
    assert not Placement.from_pod_spec({}).admits(Node.from_api(cordoned))


@pytest.mark.parametrize(("name", "amount", "text"), [
    ("cpu", Decimal("2.5"), "2500m"), ("cpu", Decimal(4), "4"), ("cpu", Decimal("0.1"), "100m"),
    ("memory", Decimal(16 * 2**30), "16Gi"), ("memory", Decimal(10**9), "1G"),
    ("ephemeral-storage", Decimal(100 * 2**30), "100Gi"), ("nvidia.com/gpu", Decimal(1), "1"),
])
def test_quantities_are_shown_as_people_write_them(name: str, amount: Decimal, text: str) -> None:
    assert format_quantity(name, amount) == text
