"""What a pod asks of a node: its resource requests and the nodes its placement admits.

The scheduler's own rules, for the parts the chart uses (nodeSelector, required node affinity,
tolerations, requests), read from pod specs and nodes as the API server serves them (plain
dicts, camelCase, as in `kubectl get -o json` and in rendered manifests). Inter-pod affinity and
topology spread constraints are not modelled: the chart sets neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .quantities import parse_quantity

Resources = dict[str, Decimal]

# Taint effects that keep a pod off a node; PreferNoSchedule only steers.
_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
# What a cordoned node carries (the node lifecycle controller adds it; it may lag behind
# spec.unschedulable, so it is added here too).
_CORDONED = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


def _quantities(mapping: Mapping[str, Any] | None) -> Resources:
    return {name: parse_quantity(value) for name, value in (mapping or {}).items()}


def _container_requests(container: Mapping[str, Any]) -> Resources:
    """A container's requests; a resource with a limit and no request requests its limit, as the
    API server defaults it."""
    resources = container.get("resources") or {}
    requested = _quantities(resources.get("limits"))
    requested.update(_quantities(resources.get("requests")))
    return requested


def pod_requests(spec: Mapping[str, Any]) -> Resources:
    """What the scheduler reserves for a pod: the sum over its containers, or the largest init
    container's request where that is more, plus one of the node's `pods`."""
    total: Resources = {}
    for container in spec.get("containers") or []:
        for name, amount in _container_requests(container).items():
            total[name] = total.get(name, Decimal(0)) + amount
    for container in spec.get("initContainers") or []:
        for name, amount in _container_requests(container).items():
            total[name] = max(total.get(name, Decimal(0)), amount)
    total["pods"] = total.get("pods", Decimal(0)) + 1
    return total


def add(into: Resources, amounts: Mapping[str, Decimal], sign: int = 1) -> None:
    for name, amount in amounts.items():
        into[name] = into.get(name, Decimal(0)) + sign * amount


def shortfall(requests: Mapping[str, Decimal], available: Mapping[str, Decimal]) -> list[str]:
    """The resources of `requests` that `available` does not cover (a resource a node lacks, such
    as an extended resource, is available as 0)."""
    return [name for name, amount in requests.items() if amount > 0 and amount > available.get(name, Decimal(0))]


def format_quantity(name: str, amount: Decimal) -> str:
    """A quantity as people write it: cpu in cores or millicores, bytes with the largest binary or
    decimal suffix that divides them, anything else as a number."""
    if name == "cpu":
        if amount == amount.to_integral_value():
            return str(int(amount))
        return f"{(amount * 1000).normalize():f}m"
    if name in ("memory", "ephemeral-storage") or name.startswith("hugepages-"):
        for suffix, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10),
                             ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3)):
            if amount >= size and amount % size == 0:
                return f"{int(amount // size)}{suffix}"
        if amount >= 2**30:
            return f"{(amount / 2**30):.1f}Gi"
    return f"{amount.normalize():f}"


@dataclass(frozen=True)
class Node:
    """A node as the scheduler sees it."""

    name: str
    labels: Mapping[str, str]
    taints: tuple[Mapping[str, Any], ...]
    allocatable: Resources

    @classmethod
    def from_api(cls, node: Mapping[str, Any]) -> Node:
        metadata, spec = node.get("metadata") or {}, node.get("spec") or {}
        taints = [dict(taint) for taint in spec.get("taints") or []]
        if spec.get("unschedulable") and not any(t.get("key") == _CORDONED["key"] for t in taints):
            taints.append(dict(_CORDONED))
        return cls(name=metadata.get("name", ""), labels=dict(metadata.get("labels") or {}),
                   taints=tuple(taints), allocatable=_quantities((node.get("status") or {}).get("allocatable")))


def _expression_matches(expression: Mapping[str, Any], value: str | None) -> bool:
    operator, values = expression.get("operator"), [str(v) for v in expression.get("values") or []]
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and values:
        try:
            number, bound = int(value), int(values[0])
        except ValueError:
            return False
        return number > bound if operator == "Gt" else number < bound
    return False


def _describe_expression(expression: Mapping[str, Any]) -> str:
    key, operator = expression.get("key", ""), expression.get("operator", "")
    values = ", ".join(str(v) for v in expression.get("values") or [])
    return {"In": f"{key} in ({values})", "NotIn": f"{key} not in ({values})", "Exists": f"{key} exists",
            "DoesNotExist": f"no {key}", "Gt": f"{key} > {values}", "Lt": f"{key} < {values}"}.get(
        operator, f"{key} {operator} ({values})")


def _tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """The scheduler's rule (k8s.io/api core/v1 Toleration.ToleratesTaint)."""
    if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
        return False
    operator = toleration.get("operator") or "Equal"
    if not toleration.get("key"):
        return operator == "Exists"
    if toleration.get("key") != taint.get("key"):
        return False
    return operator == "Exists" or str(toleration.get("value") or "") == str(taint.get("value") or "")


def describe_taint(taint: Mapping[str, Any]) -> str:
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint.get('key')}{value}:{taint.get('effect')}"


@dataclass(frozen=True)
class Placement:
    """The node constraints of a pod spec: nodeSelector, required node affinity, tolerations."""

    node_selector: Mapping[str, str]
    terms: tuple[Mapping[str, Any], ...]
    tolerations: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_pod_spec(cls, spec: Mapping[str, Any]) -> Placement:
        required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution") or {}
        return cls(node_selector={k: str(v) for k, v in (spec.get("nodeSelector") or {}).items()},
                   terms=tuple(required.get("nodeSelectorTerms") or ()),
                   tolerations=tuple(spec.get("tolerations") or ()))

    def selects(self, node: Node) -> bool:
        """nodeSelector and required node affinity: every selector label, and any one term."""
        if any(node.labels.get(key) != value for key, value in self.node_selector.items()):
            return False
        return not self.terms or any(self._term_matches(term, node) for term in self.terms)

    @staticmethod
    def _term_matches(term: Mapping[str, Any], node: Node) -> bool:
        expressions = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if not expressions and not fields:
            return False  # an empty term matches no node
        return (all(_expression_matches(e, node.labels.get(e.get("key", ""))) for e in expressions)
                and all(_expression_matches(f, node.name if f.get("key") == "metadata.name" else None)
                        for f in fields))

    def untolerated(self, node: Node) -> list[Mapping[str, Any]]:
        """The node's taints that keep this pod off it."""
        return [taint for taint in node.taints if taint.get("effect") in _BLOCKING_EFFECTS
                and not any(_tolerates(toleration, taint) for toleration in self.tolerations)]

    def admits(self, node: Node) -> bool:
        return self.selects(node) and not self.untolerated(node)

    def describe(self) -> str:
        """The pool in words, e.g. `size in (small)`, or `any node`."""
        parts = [f"{key}={value}" for key, value in self.node_selector.items()]
        terms = [" and ".join(_describe_expression(e) for e in [*(t.get("matchExpressions") or []),
                                                                  *(t.get("matchFields") or [])])
                 for t in self.terms]
        if len(terms) == 1:
            parts.append(terms[0])
        elif terms:
            parts.append(" or ".join(f"({term})" for term in terms))
        return ", ".join(parts) or "any node"

