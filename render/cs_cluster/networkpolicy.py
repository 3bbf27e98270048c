"""Which connections the rendered NetworkPolicies allow, decided as Kubernetes decides them.

A connection from A to B on a port is allowed when A's egress allows it (A is selected by no
policy of its namespace with Egress, or one of those policies has a matching egress rule) and
B's ingress allows it (likewise). A policy selects pods of its own namespace; a peer with only a
podSelector means pods of the policy's namespace, a namespaceSelector pods of the namespaces
whose labels match (every namespace carries `kubernetes.io/metadata.name`), both together the
pods matching both. Addresses outside the cluster are an `External` endpoint: an ipBlock covers
it when it has no address, or when its address is in the CIDR and in none of the exceptions.
The semantics are the Kubernetes NetworkPolicy documentation's; tests/security/
test_networkpolicy_evaluator.py holds the evaluator to that page's examples.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cs_cluster.errors import ManifestError

# Kubernetes sets this label on every namespace to the namespace's name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    """A pod as a policy sees it: its labels, named container ports and namespace."""

    name: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    namespace: str = "default"


@dataclass(frozen=True)
class External:
    """An address outside the cluster (the webserver, DNS servers, a bucket); `ip` None stands
    for any such address, which every ipBlock is taken to cover."""

    name: str = "external"
    ip: str | None = None


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
            pods.append(Pod(obj["metadata"]["name"], dict(template["metadata"].get("labels") or {}), ports,
                            obj["metadata"].get("namespace") or "default"))
    return pods


# A LabelSelector's operators (the only four the API server accepts): (label value or None, values) -> matches.
_OPERATORS: dict[str, Callable[[str | None, list[str]], bool]] = {
    "In": lambda value, values: value is not None and value in values,
    "NotIn": lambda value, values: value not in values,
    "Exists": lambda value, values: value is not None,
    "DoesNotExist": lambda value, values: value is None,
}


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector; an empty one selects everything. Raises ManifestError on an operator the
    API server would refuse, rather than guessing what it means."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        operator = expression["operator"]
        if operator not in _OPERATORS:
            raise ManifestError(f"label selector operator {operator!r} is not one of {', '.join(_OPERATORS)}")
        if not _OPERATORS[operator](labels.get(expression["key"]), list(expression.get("values") or [])):
            return False
    return True


def _ip_block_matches(block: dict[str, Any], endpoint: External) -> bool:
    if endpoint.ip is None:
        return True
    address = ipaddress.ip_address(endpoint.ip)
    if address not in ipaddress.ip_network(block["cidr"], strict=False):
        return False
    return not any(address in ipaddress.ip_network(cidr, strict=False) for cidr in block.get("except") or [])


def _peer_matches(peer: dict[str, Any], endpoint: Endpoint, policy_namespace: str,
                  namespace_labels: Mapping[str, Mapping[str, str]]) -> bool:
    if "ipBlock" in peer:
        return isinstance(endpoint, External) and _ip_block_matches(peer["ipBlock"], endpoint)
    if isinstance(endpoint, External):
        return False
    if "namespaceSelector" in peer:
        labels = {**namespace_labels.get(endpoint.namespace, {}), NAMESPACE_NAME_LABEL: endpoint.namespace}
        if not selector_matches(peer["namespaceSelector"], labels):
            return False
    elif endpoint.namespace != policy_namespace:
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


# Per direction: the spec's list of rules, and each rule's list of peers.
_RULE_KEYS = {"Egress": ("egress", "to"), "Ingress": ("ingress", "from")}


def _namespace_of(policy: dict[str, Any]) -> str:
    return str((policy.get("metadata") or {}).get("namespace") or "default")


def _policy_types(spec: dict[str, Any]) -> list[str]:
    """spec.policyTypes, or what the API server defaults it to: Ingress, plus Egress when the
    policy has egress rules (an empty `egress: []` counts as none)."""
    return list(spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]))


class PolicySet:
    """The NetworkPolicies of a render, asked about connections between endpoints.

    `namespace_labels` gives namespaces' labels beyond `kubernetes.io/metadata.name`, for
    namespaceSelectors; a namespace not in it has only that label.
    """

    def __init__(self, objects: list[dict[str, Any]],
                 namespace_labels: Mapping[str, Mapping[str, str]] | None = None):
        self.policies = [obj for obj in objects if obj.get("kind") == "NetworkPolicy"]
        self.namespace_labels = dict(namespace_labels or {})

    def _selecting(self, pod: Pod, policy_type: str) -> list[dict[str, Any]]:
        return [policy for policy in self.policies
                if _namespace_of(policy) == pod.namespace and policy_type in _policy_types(policy["spec"])
                and selector_matches(policy["spec"].get("podSelector"), pod.labels)]

    def _rule_allows(self, rule: dict[str, Any], peers_key: str, other: Endpoint, port: int, protocol: str,
                     target: Endpoint, policy_namespace: str) -> bool:
        peers = rule.get(peers_key)
        if peers and not any(_peer_matches(peer, other, policy_namespace, self.namespace_labels) for peer in peers):
            return False
        return _port_matches(rule.get("ports"), port, protocol, target)

    def _direction_allowed(self, guarded: Endpoint, other: Endpoint, direction: str, port: int,
                           protocol: str, target: Endpoint) -> bool:
        """Whether the policies guarding `guarded` in `direction` let `other` through."""
        if isinstance(guarded, External):
            return True
        policies = self._selecting(guarded, direction)
        if not policies:
            return True
        rules_key, peers_key = _RULE_KEYS[direction]
        return any(self._rule_allows(rule, peers_key, other, port, protocol, target, _namespace_of(policy))
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
