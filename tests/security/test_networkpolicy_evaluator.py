"""cs_cluster.networkpolicy judges our isolation tests, so it is held here to the examples of the
Kubernetes NetworkPolicy documentation (concepts/services-networking/network-policies), with
the outcome the page states for each: policies are written as the page writes them."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from cs_cluster.errors import ManifestError
from cs_cluster.networkpolicy import External, Pod, PolicySet


def policies(text: str, namespace_labels: dict[str, dict[str, str]] | None = None) -> PolicySet:
    return PolicySet(list(yaml.safe_load_all(text)), namespace_labels)


# The page's first example, verbatim in substance.
TEST_NETWORK_POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: test-network-policy, namespace: default}
spec:
  podSelector: {matchLabels: {role: db}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}
        - namespaceSelector: {matchLabels: {project: myproject}}
        - podSelector: {matchLabels: {role: frontend}}
      ports: [{protocol: TCP, port: 6379}]
  egress:
    - to:
        - ipBlock: {cidr: 10.0.0.0/24}
      ports: [{protocol: TCP, port: 5978}]
"""
NAMESPACES = {"myproject-ns": {"project": "myproject"}, "other": {"project": "other"}}
DB = Pod("db", {"role": "db"}, namespace="default")

Case = tuple[Any, Any, int, bool]
EXAMPLE_CASES: list[Case] = [
    # "the pods in the default namespace with the label role=frontend" may connect on TCP 6379
    (Pod("frontend", {"role": "frontend"}, namespace="default"), DB, 6379, True),
    # ... a role=frontend pod elsewhere is not "in the default namespace"
    (Pod("frontend", {"role": "frontend"}, namespace="other"), DB, 6379, False),
    # "any pod in a namespace with the label project=myproject"
    (Pod("anything", {"app": "x"}, namespace="myproject-ns"), DB, 6379, True),
    (Pod("anything", {"app": "x"}, namespace="other"), DB, 6379, False),
    # "IP addresses in the ranges 172.17.0.0 to 172.17.0.255 and 172.17.2.0 to 172.17.255.255"
    (External("client", "172.17.0.10"), DB, 6379, True),
    (External("client", "172.17.2.1"), DB, 6379, True),
    (External("client", "172.17.1.7"), DB, 6379, False),
    (External("client", "192.168.0.1"), DB, 6379, False),
    # an External without an address stands for any outside address: every ipBlock covers it
    (External("anywhere"), DB, 6379, True),
    # only TCP 6379
    (Pod("frontend", {"role": "frontend"}, namespace="default"), DB, 6380, False),
    # egress: "connections from any pod in the default namespace with the label role=db to CIDR
    # 10.0.0.0/24 on TCP port 5978"
    (DB, External("svc", "10.0.0.5"), 5978, True),
    (DB, External("svc", "10.0.1.5"), 5978, False),
    (DB, External("svc", "10.0.0.5"), 5979, False),
    (DB, Pod("frontend", {"role": "frontend"}, namespace="default"), 80, False),
    # pods the policy does not select are not isolated
    (Pod("web", {"role": "web"}, namespace="default"), Pod("x", {"role": "x"}, namespace="default"), 80, True),
    # a policy selects pods of its own namespace only: a role=db pod elsewhere is not isolated
    (Pod("x", {}, namespace="other"), Pod("db", {"role": "db"}, namespace="other"), 1234, True),
    (Pod("x", {}, namespace="a-team"), Pod("db", {"role": "db"}, namespace="a-team"), 1234, True),
]


@pytest.mark.parametrize(("source", "destination", "port", "allowed"), EXAMPLE_CASES,
                         ids=[f"{s.name}-{d.name}-{p}" for s, d, p, _ in EXAMPLE_CASES])
def test_the_documentations_first_example(source: Any, destination: Any, port: int, allowed: bool) -> None:
    assert policies(TEST_NETWORK_POLICY, NAMESPACES).allowed(source, destination, port) is allowed


AND_RULE = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: and, namespace: default}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {user: alice}}
          podSelector: {matchLabels: {role: client}}
"""
OR_RULE = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: or, namespace: default}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {user: alice}}
        - podSelector: {matchLabels: {role: client}}
"""
ALICE = {"alice-ns": {"user": "alice"}}


@pytest.mark.parametrize(
    ("source", "and_allowed", "or_allowed"),
    [
        (Pod("client", {"role": "client"}, namespace="alice-ns"), True, True),
        (Pod("other", {"role": "other"}, namespace="alice-ns"), False, True),
        # "pods with the label role=client in the local namespace" (OR) but not in alice's (AND)
        (Pod("client", {"role": "client"}, namespace="default"), False, True),
        (Pod("client", {"role": "client"}, namespace="bob-ns"), False, False),
    ],
    ids=["client-in-alice", "other-in-alice", "client-in-local", "client-in-bob"],
)
def test_namespace_and_pod_selector_in_one_peer_is_and_in_two_is_or(source: Pod, and_allowed: bool,
                                                                    or_allowed: bool) -> None:
    assert policies(AND_RULE, ALICE).allowed(source, DB, 5432) is and_allowed
    assert policies(OR_RULE, ALICE).allowed(source, DB, 5432) is or_allowed


DEFAULTS = {
    "default-deny-ingress": "spec: {podSelector: {}, policyTypes: [Ingress]}",
    "allow-all-ingress": "spec: {podSelector: {}, ingress: [{}], policyTypes: [Ingress]}",
    "default-deny-egress": "spec: {podSelector: {}, policyTypes: [Egress]}",
    "allow-all-egress": "spec: {podSelector: {}, egress: [{}], policyTypes: [Egress]}",
    "default-deny-all": "spec: {podSelector: {}, policyTypes: [Ingress, Egress]}",
    # No policyTypes: Ingress always, Egress only when there are egress rules.
    "types-defaulted-ingress-only": "spec: {podSelector: {}, ingress: []}",
    "types-defaulted-empty-egress": "spec: {podSelector: {}, egress: []}",
    "types-defaulted-with-egress": "spec: {podSelector: {}, egress: [{ports: [{port: 53, protocol: UDP}]}]}",
}
INSIDE = Pod("a", {"app": "a"}, namespace="default")
OTHER_NAMESPACE = Pod("b", {"app": "b"}, namespace="elsewhere")


@pytest.mark.parametrize(
    ("policy", "ingress_from_elsewhere", "egress_to_elsewhere"),
    [
        ("default-deny-ingress", False, True),
        ("allow-all-ingress", True, True),
        ("default-deny-egress", True, False),
        ("allow-all-egress", True, True),
        ("default-deny-all", False, False),
        ("types-defaulted-ingress-only", False, True),
        ("types-defaulted-empty-egress", False, True),
        ("types-defaulted-with-egress", False, False),
    ],
)
def test_default_policies(policy: str, ingress_from_elsewhere: bool, egress_to_elsewhere: bool) -> None:
    text = f"kind: NetworkPolicy\nmetadata: {{name: {policy}, namespace: default}}\n{DEFAULTS[policy]}\n"
    evaluator = policies(text)
    assert evaluator.allowed(OTHER_NAMESPACE, INSIDE, 80) is ingress_from_elsewhere
    assert evaluator.allowed(INSIDE, OTHER_NAMESPACE, 80) is egress_to_elsewhere
    # The page's point: pods of other namespaces are not selected, so they stay open.
    assert evaluator.allowed(OTHER_NAMESPACE, Pod("c", {}, namespace="elsewhere"), 80)


def test_default_policy_with_egress_allows_only_its_rule() -> None:
    text = f"kind: NetworkPolicy\nmetadata: {{name: x, namespace: default}}\n{DEFAULTS['types-defaulted-with-egress']}"
    assert policies(text).allowed(INSIDE, External("dns"), 53, "UDP")
    assert not policies(text).allowed(INSIDE, External("dns"), 53, "TCP")


PORT_RANGE = """
kind: NetworkPolicy
metadata: {name: multi-port-egress, namespace: default}
spec:
  podSelector: {matchLabels: {role: db}}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 10.0.0.0/24}}]
      ports: [{protocol: TCP, port: 32000, endPort: 32768}]
"""


@pytest.mark.parametrize(("port", "allowed"), [(31999, False), (32000, True), (32500, True), (32768, True),
                                               (32769, False)])
def test_port_range_with_end_port(port: int, allowed: bool) -> None:
    assert policies(PORT_RANGE).allowed(DB, External("x", "10.0.0.1"), port) is allowed


BY_NAME = """
kind: NetworkPolicy
metadata: {name: from-monitoring, namespace: default}
spec:
  podSelector: {}
  ingress:
    - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
      ports: [{port: metrics}]
"""


def test_namespace_by_its_name_label_and_named_ports() -> None:
    target = Pod("app", {}, {"metrics": 9090}, namespace="default")
    evaluator = policies(BY_NAME)
    assert evaluator.allowed(Pod("prometheus", {}, namespace="monitoring"), target, 9090)
    assert not evaluator.allowed(Pod("prometheus", {}, namespace="monitoring"), target, 9091)
    assert not evaluator.allowed(Pod("prometheus", {}, namespace="monitoring"), target, 9089)
    assert not evaluator.allowed(Pod("prometheus", {}, namespace="default"), target, 9090)


def test_policies_add_up() -> None:
    """Policies are additive: a pod selected by several accepts what any of them allows."""
    text = TEST_NETWORK_POLICY + "---\n" + AND_RULE
    evaluator = policies(text, {**NAMESPACES, **ALICE})
    assert evaluator.allowed(Pod("client", {"role": "client"}, namespace="alice-ns"), DB, 5432)
    assert evaluator.allowed(Pod("frontend", {"role": "frontend"}, namespace="default"), DB, 6379)
    assert not evaluator.allowed(Pod("frontend", {"role": "frontend"}, namespace="default"), DB, 5432)


@pytest.mark.parametrize(
    ("expression", "labels", "matches"),
    [
        ({"key": "tier", "operator": "In", "values": ["db", "cache"]}, {"tier": "db"}, True),
        ({"key": "tier", "operator": "In", "values": ["db", "cache"]}, {"tier": "web"}, False),
        ({"key": "tier", "operator": "In", "values": ["db"]}, {}, False),
        # NotIn also selects pods without the key (the Labels and Selectors page)
        ({"key": "tier", "operator": "NotIn", "values": ["db"]}, {"tier": "web"}, True),
        ({"key": "tier", "operator": "NotIn", "values": ["db"]}, {}, True),
        ({"key": "tier", "operator": "NotIn", "values": ["db"]}, {"tier": "db"}, False),
        ({"key": "tier", "operator": "Exists"}, {"tier": ""}, True),
        ({"key": "tier", "operator": "Exists"}, {"other": "x"}, False),
        ({"key": "tier", "operator": "DoesNotExist"}, {"other": "x"}, True),
        ({"key": "tier", "operator": "DoesNotExist"}, {"tier": "db"}, False),
    ],
)
def test_set_based_selectors(expression: dict[str, Any], labels: dict[str, str], matches: bool) -> None:
    policy = {"kind": "NetworkPolicy", "metadata": {"name": "x", "namespace": "default"},
              "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [expression]}}]}]}}
    assert policies(yaml.safe_dump(policy)).allowed(Pod("source", labels, namespace="default"), INSIDE, 80) is matches


@pytest.mark.parametrize("operator", ["Gt", "in", "DoesNotExists", "Bogus"])
def test_an_operator_the_api_server_refuses_is_an_error_not_a_guess(operator: str) -> None:
    text = ("kind: NetworkPolicy\nmetadata: {name: x, namespace: default}\nspec: {podSelector: {matchExpressions: "
            f"[{{key: tier, operator: {operator}, values: [a]}}]}}}}")
    with pytest.raises(ManifestError, match=f"operator '{operator}' is not one of In, NotIn, Exists, DoesNotExist"):
        policies(text).allowed(INSIDE, Pod("b", {"tier": "a"}, namespace="default"), 80)


def test_an_ip_block_with_host_bits_means_its_network() -> None:
    text = ("kind: NetworkPolicy\nmetadata: {name: x, namespace: default}\nspec: {podSelector: {}, policyTypes: "
            "[Egress], egress: [{to: [{ipBlock: {cidr: 10.0.0.7/24, except: [10.0.0.130/25]}}]}]}")
    assert policies(text).allowed(INSIDE, External("x", "10.0.0.9"), 80)
    assert not policies(text).allowed(INSIDE, External("x", "10.0.0.200"), 80)
    assert not policies(text).allowed(INSIDE, External("x", "10.0.1.9"), 80)


@pytest.mark.parametrize(
    ("ports", "protocol", "port", "allowed"),
    [
        # A port entry with only a protocol: every port of that protocol.
        ([{"protocol": "UDP"}], "UDP", 5353, True),
        ([{"protocol": "UDP"}], "TCP", 5353, False),
        # Entries are alternatives: one that does not match does not end the search.
        ([{"port": "metrics"}, {"port": 8080}], "TCP", 8080, True),
        ([{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}], "TCP", 53, True),
        ([{"port": "metrics"}, {"port": 8080}], "TCP", 8081, False),
        # An entry without a protocol means TCP.
        ([{"port": 53}], "UDP", 53, False),
        ([{"port": 53}], "TCP", 53, True),
    ],
)
def test_rule_ports(ports: list[dict[str, Any]], protocol: str, port: int, allowed: bool) -> None:
    policy = {"kind": "NetworkPolicy", "metadata": {"name": "x", "namespace": "default"},
              "spec": {"podSelector": {}, "ingress": [{"ports": ports}]}}
    target = Pod("app", {}, {"metrics": 9090}, namespace="default")
    assert policies(yaml.safe_dump(policy)).allowed(INSIDE, target, port, protocol) is allowed


def test_endpoints_are_values() -> None:
    """Pods and external addresses are compared and reused across questions; none can change."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        INSIDE.namespace = "elsewhere"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        External("x").ip = "10.0.0.1"  # type: ignore[misc]
