"""Kubernetes NetworkPolicy semantics, enough to ask 'may this pod reach that port?' of manifests."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    """A pod (or, with namespace None, an address outside the cluster)."""

    namespace: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports
    ip: str = "10.0.0.1"


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector; matchExpressions are not used by our manifests, so they are refused."""
    assert set(selector) <= {"matchLabels"}, f"unsupported selector: {selector}"
    wanted: Mapping[str, str] = selector.get("matchLabels", {})
    return wanted.items() <= labels.items()


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Pod) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        namespace_ok = selects(peer["namespaceSelector"], {NAMESPACE_NAME_LABEL: other.namespace})
    else:
        namespace_ok = other.namespace == policy_namespace
    return namespace_ok and selects(peer.get("podSelector", {}), other.labels)


def _port_matches(rule_ports: Iterable[Mapping[str, Any]] | None, port: int, target: Pod) -> bool:
    if rule_ports is None:
        return True
    for p in rule_ports:
        number = target.ports.get(p["port"]) if isinstance(p["port"], str) else p["port"]
        if number == port and p.get("protocol", "TCP") == "TCP":
            return True
    return False


def _allowed(
    policies: Iterable[Mapping[str, Any]], pod: Pod, direction: str, other: Pod, port: int
) -> bool:
    """Whether `pod`'s policies let traffic in (`Ingress`) from, or out (`Egress`) to, `other`."""
    kind, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    target = pod if direction == "Ingress" else other
    relevant = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in p["spec"]["policyTypes"]
        and selects(p["spec"]["podSelector"], pod.labels)
    ]
    if not relevant:
        return True  # a pod that no policy selects for this direction is not isolated
    for policy in relevant:
        for rule in policy["spec"].get(kind, []):
            peers = rule.get(peers_key)
            if (
                peers is None or any(_peer_matches(x, pod.namespace or "", other) for x in peers)
            ) and _port_matches(rule.get("ports"), port, target):
                return True
    return False


def connects(policies: Iterable[Mapping[str, Any]], source: Pod, target: Pod, port: int) -> bool:
    """A TCP connection from `source` to `target:port` is allowed in both directions' policies."""
    policies = list(policies)
    outbound = source.namespace is None or _allowed(policies, source, "Egress", target, port)
    inbound = target.namespace is None or _allowed(policies, target, "Ingress", source, port)
    return outbound and inbound
