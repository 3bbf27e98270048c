"""Which connections the rendered NetworkPolicies allow, decided as Kubernetes decides them.

For pods of one namespace (all of a release's pods are): a connection from A to B on a port is
allowed when A's egress allows it (A is selected by no policy with Egress, or one of those
policies has a matching egress rule) and B's ingress allows it (likewise). Addresses outside the
cluster are an `External` endpoint; ipBlock peers are taken to cover them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    """A pod as a policy sees it: its labels and named container ports."""

    name: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class External:
    """An address outside the cluster (the webserver, DNS servers, a bucket)."""

    name: str = "external"


Endpoint = Pod | External


def pods_of(objects: list[dict[str, Any]]) -> list[Pod]:
    """One Pod per workload's pod template."""
    pods = []
    for obj in objects:
        if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            template = obj["spec"]["template"]
            ports = {
                port["name"]: port["containerPort"]
                for container in template["spec"]["containers"]
                for port in container.get("ports") or []
                if "name" in port
            }
            pods.append(Pod(obj["metadata"]["name"], dict(template["metadata"].get("labels") or {}), ports))
    return pods


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector; an empty one selects everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(peer: dict[str, Any], endpoint: Endpoint) -> bool:
    if "ipBlock" in peer:
        return isinstance(endpoint, External)
    if isinstance(endpoint, External):
        return False
    # A namespaceSelector alone selects pods of the matching namespaces; we render into one
    # namespace, so only an empty namespaceSelector is taken to include it.
    if peer.get("namespaceSelector"):
        return False
    return selector_matches(peer.get("podSelector"), endpoint.labels)


def _port_matches(rule_ports: list[dict[str, Any]] | None, port: int, protocol: str, target: Endpoint) -> bool:
    if not rule_ports:
        return True
    for rule_port in rule_ports:
        if rule_port.get("protocol", "TCP") != protocol:
            continue
        wanted = rule_port.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            if isinstance(target, Pod) and target.ports.get(wanted) == port:
                return True
            continue
        end = rule_port.get("endPort", wanted)
        if wanted <= port <= end:
            return True
    return False


def _rule_allows(rule: dict[str, Any], peers_key: str, other: Endpoint, port: int, protocol: str,
                 target: Endpoint) -> bool:
    peers = rule.get(peers_key)
    if peers and not any(_peer_matches(peer, other) for peer in peers):
        return False
    return _port_matches(rule.get("ports"), port, protocol, target)


class PolicySet:
    """The NetworkPolicies of a render, asked about connections between endpoints."""

    def __init__(self, objects: list[dict[str, Any]]):
        self.policies = [obj for obj in objects if obj.get("kind") == "NetworkPolicy"]

    def _selecting(self, pod: Pod, policy_type: str) -> list[dict[str, Any]]:
        selected = []
        for policy in self.policies:
            spec = policy["spec"]
            types = spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])
            if policy_type in types and selector_matches(spec.get("podSelector"), pod.labels):
                selected.append(policy)
        return selected

    def _direction_allowed(self, guarded: Endpoint, other: Endpoint, direction: str, port: int,
                           protocol: str, target: Endpoint) -> bool:
        """Whether the policies guarding `guarded` in `direction` let `other` through."""
        if isinstance(guarded, External):
            return True
        policies = self._selecting(guarded, direction)
        if not policies:
            return True
        rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        return any(_rule_allows(rule, peers_key, other, port, protocol, target)
                   for policy in policies for rule in policy["spec"].get(rules_key) or [])

    def egress_allowed(self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP") -> bool:
        return self._direction_allowed(source, destination, "Egress", port, protocol, destination)

    def ingress_allowed(self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP") -> bool:
        return self._direction_allowed(destination, source, "Ingress", port, protocol, destination)

    def allowed(self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP") -> bool:
        """Whether `source` may open a connection to `destination` on `port`."""
        return self.egress_allowed(source, destination, port, protocol) and self.ingress_allowed(
            source, destination, port, protocol
        )
