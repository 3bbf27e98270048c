"""The capacity check: will the pods an apply creates find a node?

From the live nodes (allocatable, labels, taints) and the pods already on them, for each workload
a plan creates or rolls:

- **never**: no node its nodeSelector, required node affinity and tolerations admit (a tainted
  node counts only for pods that tolerate the taint), or its pod's requests are above what every
  such node can give (allocatable, less the DaemonSet and static pods that always run there). No
  amount of waiting helps; `apply` stops before helm runs.
- **later**: it fits an admitted node, but not in what is free now: only once the pods it
  replaces are gone, or only once other pods are gone. A warning: helm would wait, and the
  rollout may stall.

The new pods are placed one by one, largest first, on the admitted node with the most free CPU,
as the scheduler's default scoring spreads them. A warning can be too cautious (the scheduler may
pack better); a refusal never is, as it depends on no other pod.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .errors import CapacityError, ToolError
from .plan import Plan
from .scheduling import (
    Node,
    Placement,
    Resources,
    add,
    describe_taint,
    format_quantity,
    pod_requests,
    shortfall,
)

NEVER, LATER = "never", "later"
_ENDED = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Finding:
    """A workload some of whose new pods cannot be scheduled now, or ever."""

    part: str
    workload: str
    pods: int
    verdict: str
    reason: str
    pool: str
    requests: Mapping[str, str]

    def line(self) -> str:
        mark, what = ("!", "can never be scheduled") if self.verdict == NEVER else ("?", "fits only later")
        count = f"{self.pods} pod{'s' if self.pods != 1 else ''}"
        return f"{mark} {self.part}: {self.workload} ({count}) {what}: {self.reason}"

    def as_json(self) -> dict[str, Any]:
        return {"part": self.part, "workload": self.workload, "pods": self.pods, "verdict": self.verdict,
                "reason": self.reason, "pool": self.pool, "requests": dict(self.requests)}


@dataclass
class CapacityReport:
    new_pods: int
    nodes: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def never(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.verdict == NEVER]

    def lines(self) -> list[str]:
        if not self.new_pods:
            return ["Capacity: no new pods."]
        if not self.findings:
            return [f"Capacity: the {self.new_pods} new pod(s) fit on the nodes now."]
        return [finding.line() for finding in self.findings]

    def as_json(self) -> dict[str, Any]:
        return {"checked": True, "new_pods": self.new_pods, "nodes": self.nodes,
                "findings": [finding.as_json() for finding in self.findings]}

    def refuse_if_never(self) -> None:
        """CapacityError naming every workload no node can ever take (apply stops on it)."""
        if self.never:
            raise CapacityError("; ".join(finding.line()[2:] for finding in self.never)
                                + " (--skip-capacity-check applies anyway)")


def _requests_text(requests: Mapping[str, Decimal], names: Iterable[str]) -> str:
    return ", ".join(f"{name} {format_quantity(name, requests.get(name, Decimal(0)))}" for name in names)


def _permanent(pod: Mapping[str, Any]) -> bool:
    """Pods that never leave their node: DaemonSet pods and static (mirror) pods."""
    metadata = pod.get("metadata") or {}
    if "kubernetes.io/config.mirror" in (metadata.get("annotations") or {}):
        return True
    return any(owner.get("kind") == "DaemonSet" for owner in metadata.get("ownerReferences") or [])


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


@dataclass
class _Ledger:
    """Free resources per node, now and once the outgoing pods are gone."""

    now: dict[str, Resources]
    later: dict[str, Resources]
    most: dict[str, Resources]  # allocatable less what never leaves


def _ledger(nodes: Sequence[Node], pods: Iterable[Mapping[str, Any]], outgoing: set[str]) -> _Ledger:
    now = {node.name: dict(node.allocatable) for node in nodes}
    later = {node.name: dict(node.allocatable) for node in nodes}
    most = {node.name: dict(node.allocatable) for node in nodes}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in now or (pod.get("status") or {}).get("phase") in _ENDED:
            continue
        requests = pod_requests(pod.get("spec") or {})
        add(now[node], requests, -1)
        if _uid(pod) not in outgoing:
            add(later[node], requests, -1)
        if _permanent(pod):
            add(most[node], requests, -1)
    return _Ledger(now, later, most)


def _uid(pod: Mapping[str, Any]) -> str:
    metadata = pod.get("metadata") or {}
    return str(metadata.get("uid") or f"{metadata.get('namespace')}/{metadata.get('name')}")


def _replicas(workload: Mapping[str, Any] | None) -> int:
    if workload is None:
        return 0
    replicas = (workload.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def _outgoing(plan: Plan, pods: Sequence[Mapping[str, Any]], namespace: str) -> set[str]:
    """The live pods the apply replaces or removes: every pod of a workload that rolls or goes,
    and the surplus of one whose replicas go down."""
    going: set[str] = set()
    for _, workload in plan.workloads():
        if workload.before is None:
            continue
        selector = ((workload.before.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        mine = sorted((pod for pod in pods if (pod.get("metadata") or {}).get("namespace") == namespace
                       and _matches(selector, (pod.get("metadata") or {}).get("labels") or {})), key=_uid)
        if workload.after is None or workload.rolls:
            going.update(_uid(pod) for pod in mine)
        else:
            surplus = len(mine) - _replicas(workload.after)
            going.update(_uid(pod) for pod in mine[:max(surplus, 0)])
    return going


def check_capacity(plan: Plan, nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]) -> CapacityReport:
    """Judge every pod the plan creates against the nodes (see the module's docstring)."""
    cluster = [Node.from_api(node) for node in nodes]
    ledger = _ledger(cluster, pods, _outgoing(plan, pods, plan.namespace))
    wanted = []
    for owner, workload in plan.workloads():
        if workload.after is None or workload.kind == "DaemonSet":
            continue
        count = _replicas(workload.after) if workload.before is None or workload.rolls else \
            _replicas(workload.after) - _replicas(workload.before)
        if count > 0:
            spec = workload.after["spec"]["template"].get("spec") or {}
            wanted.append((owner.name, f"{workload.kind}/{workload.name}", count,
                           Placement.from_pod_spec(spec), pod_requests(spec)))
    report = CapacityReport(new_pods=sum(item[2] for item in wanted), nodes=len(cluster))
    # Largest first, as a packer would; the verdicts are reported in the plan's order.
    order = sorted(range(len(wanted)), key=lambda i: [-wanted[i][4].get(r, Decimal(0)) for r in ("cpu", "memory")])
    findings: dict[int, Finding] = {}
    for index in order:
        part, name, count, placement, requests = wanted[index]
        finding = _judge(part, name, count, placement, requests, cluster, ledger)
        if finding:
            findings[index] = finding
    report.findings = [findings[index] for index in sorted(findings)]
    return report


def _judge(part: str, name: str, count: int, placement: Placement, requests: Resources, cluster: Sequence[Node],
           ledger: _Ledger) -> Finding | None:
    pool = placement.describe()
    shown = {key: format_quantity(key, amount) for key, amount in requests.items() if key != "pods"}

    def finding(verdict: str, pods: int, reason: str) -> Finding:
        return Finding(part=part, workload=name, pods=pods, verdict=verdict, reason=reason, pool=pool, requests=shown)

    selected = [node for node in cluster if placement.selects(node)]
    admitted = [node for node in selected if not placement.untolerated(node)]
    if not selected:
        return finding(NEVER, count, f"no node has {pool}")
    if not admitted:
        taints = sorted({describe_taint(t) for node in selected for t in placement.untolerated(node)})
        return finding(NEVER, count, f"the nodes with {pool} ({', '.join(n.name for n in selected)}) have taints "
                                     f"it does not tolerate: {', '.join(taints)}")
    if all(shortfall(requests, ledger.most[node.name]) for node in admitted):
        short = {key for node in admitted for key in shortfall(requests, ledger.most[node.name])}
        names = [key for key in requests if key in short]
        most = {key: max(ledger.most[node.name].get(key, Decimal(0)) for node in admitted) for key in names}
        tainted = [node for node in selected if node not in admitted]
        left_out = "; left out, for taints it does not tolerate: " + ", ".join(
            f"{node.name} ({', '.join(describe_taint(t) for t in placement.untolerated(node))})"
            for node in tainted) if tainted else ""
        return finding(NEVER, count, f"requests {_requests_text(requests, names)}, more than any node of its pool "
                                     f"({pool}: {', '.join(node.name for node in admitted)}) can give: at most "
                                     f"{_requests_text(most, names)}{left_out}")
    replaced = others = 0
    for _ in range(count):
        fits_now = [node for node in admitted if not shortfall(requests, ledger.now[node.name])]
        fits_later = [node for node in admitted if not shortfall(requests, ledger.later[node.name])]
        if fits_now:
            chosen = max(fits_now, key=lambda node: ledger.now[node.name].get("cpu", Decimal(0)))
            add(ledger.now[chosen.name], requests, -1)
            add(ledger.later[chosen.name], requests, -1)
        elif fits_later:
            chosen = max(fits_later, key=lambda node: ledger.later[node.name].get("cpu", Decimal(0)))
            add(ledger.later[chosen.name], requests, -1)
            replaced += 1
        else:
            others += 1
    if others:
        names = [key for key in requests if key != "pods" and requests[key] > 0]
        free = {key: max(ledger.now[node.name].get(key, Decimal(0)) for node in admitted) for key in names}
        also = f" ({replaced} more once the pods they replace are gone)" if replaced else ""
        return finding(LATER, others + replaced, f"{others} of {count} new pods fit only once other pods are gone"
                                                 f"{also}: each requests {_requests_text(requests, names)}, the most "
                                                 f"free on a node of its pool ({pool}) now is "
                                                 f"{_requests_text(free, names)}")
    if replaced:
        return finding(LATER, replaced, f"{replaced} of {count} new pods fit only once the pods they replace are "
                                        f"gone ({pool})")
    return None


def read_cluster() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The live nodes and the pods that are not finished, as the API serves them (current kubeconfig).

    Raises ToolError, naming --skip-capacity-check, when the API cannot be reached or refuses.
    """
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError

    hint = "; --skip-capacity-check applies without it"
    try:
        config.load_kube_config()
    except (ConfigException, OSError, TypeError) as error:
        raise ToolError(f"the capacity check cannot load a kubeconfig: {error}{hint}") from None
    api = client.CoreV1Api()
    try:
        nodes = json.loads(api.list_node(_preload_content=False, _request_timeout=60).data)["items"]
        pods = json.loads(api.list_pod_for_all_namespaces(
            field_selector="status.phase!=Succeeded,status.phase!=Failed", _preload_content=False,
            _request_timeout=60).data)["items"]
    except ApiException as error:
        raise ToolError(f"the capacity check cannot list nodes and pods: {error.status} {error.reason}{hint}") from None
    except (HTTPError, OSError) as error:
        raise ToolError(f"the capacity check cannot reach the API server: {error}{hint}") from None
    return nodes, pods
