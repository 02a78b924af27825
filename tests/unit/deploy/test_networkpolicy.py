"""deploy/k8s/networkpolicy.yaml: who may talk to whom, evaluated pod by pod."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from tests.unit.deploy._manifests import (
    k8s,
    k8s_objects,
    named_ports,
)
from tests.unit.deploy._netpol import Pod, connects


@functools.cache
def network_policies() -> tuple[dict[str, Any], ...]:
    """Parsed once: the evaluator asks many questions of them and changes none."""
    return tuple(o for o in k8s_objects() if o["kind"] == "NetworkPolicy")


def pod_of(kind: str, name: str) -> Pod:
    workload = k8s(kind, name)
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return Pod(workload["metadata"]["namespace"], labels, named_ports(workload))


def kafka_address() -> tuple[str, int]:
    """The namespace of the brokers and their port, from the ConfigMap's bootstrap servers."""
    host, port = k8s("ConfigMap", "sessionflow")["data"]["KAFKA_BOOTSTRAP_SERVERS"].split(":")
    return host.split(".")[1], int(port)


PRODUCER = pod_of("Deployment", "sessionflow-producer")
WORKER = pod_of("StatefulSet", "sessionflow-worker")
ENRICHER = pod_of("Deployment", "sessionflow-enricher")
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
OPERATOR = Pod("sessionflow", {"sessionflow.io/operator": "true"})
INGRESS_CONTROLLER = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
# Someone else's pod; one that copies the operator label in another namespace; the internet.
STRANGER = Pod("default", {"app": "shop"})
IMPOSTOR = Pod("default", {"sessionflow.io/operator": "true"})
UNLABELLED = Pod("sessionflow", {"app": "debug"})
INTERNET = Pod(None, ip="203.0.113.7")
KAFKA = Pod(kafka_address()[0], {"app": "kafka"})
DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
OUTSIDERS = (INGRESS_CONTROLLER, STRANGER, IMPOSTOR, UNLABELLED, INTERNET, ENRICHER, KAFKA)


def test_every_pod_of_the_namespace_is_isolated_both_ways_by_default() -> None:
    (deny,) = [p for p in network_policies() if p["spec"]["podSelector"] == {}]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]
    for policy in network_policies():
        assert policy["spec"]["policyTypes"], policy["metadata"]["name"]
    assert not connects(network_policies(), STRANGER, UNLABELLED, 80)
    assert not connects(network_policies(), UNLABELLED, STRANGER, 80)


def test_the_producer_admin_port_is_reachable_only_from_monitoring_and_operators() -> None:
    admin = PRODUCER.ports["admin"]
    assert connects(network_policies(), PROMETHEUS, PRODUCER, admin)
    assert connects(network_policies(), OPERATOR, PRODUCER, admin)
    for source in (*OUTSIDERS, WORKER):
        assert not connects(network_policies(), source, PRODUCER, admin), source


def test_the_producer_webhook_port_is_reachable_from_the_ingress_controller_only() -> None:
    http = PRODUCER.ports["http"]
    assert connects(network_policies(), INGRESS_CONTROLLER, PRODUCER, http)
    for source in (STRANGER, INTERNET, WORKER, ENRICHER, PROMETHEUS):
        assert not connects(network_policies(), source, PRODUCER, http), source
    for port in (22, 9092, 6066):
        assert not connects(network_policies(), INGRESS_CONTROLLER, PRODUCER, port), port


def test_the_worker_takes_admin_traffic_from_monitoring_operators_and_workers_only() -> None:
    port = int(k8s("ConfigMap", "sessionflow")["data"]["SESSIONFLOW_WORKER_PORT"])
    assert WORKER.ports == {"web": port}
    for source in (PROMETHEUS, OPERATOR, WORKER):
        assert connects(network_policies(), source, WORKER, port), source
    for source in (*OUTSIDERS, PRODUCER):
        assert not connects(network_policies(), source, WORKER, port), source
    for other in (8080, 8081, 9092):
        assert not connects(network_policies(), PROMETHEUS, WORKER, other), other


@pytest.mark.parametrize("pod", [PRODUCER, WORKER], ids=["producer", "worker"])
def test_producers_and_workers_reach_only_kafka_and_dns(pod: Pod) -> None:
    _, kafka_port = kafka_address()
    assert connects(network_policies(), pod, KAFKA, kafka_port)
    assert connects(network_policies(), pod, DNS, 53)
    assert not connects(network_policies(), pod, KAFKA, 22)
    assert not connects(network_policies(), pod, DNS, 443)
    for target, port in ((INTERNET, 443), (INTERNET, 80), (STRANGER, 443), (PRODUCER, 8080)):
        assert not connects(network_policies(), pod, target, port), (target, port)
    # Workers forward a session's lookup to its owner; producers have no business there.
    worker_port = WORKER.ports["web"]
    assert connects(network_policies(), pod, WORKER, worker_port) is (pod is WORKER)


def test_operators_reach_the_admin_ports_and_kafka_but_not_the_internet() -> None:
    _, kafka_port = kafka_address()
    assert connects(network_policies(), OPERATOR, KAFKA, kafka_port)
    assert not connects(network_policies(), OPERATOR, INTERNET, 443)
    assert not connects(network_policies(), OPERATOR, PRODUCER, PRODUCER.ports["http"])


def test_the_enricher_reaches_kafka_dns_and_https_only() -> None:
    _, kafka_port = kafka_address()
    assert connects(network_policies(), ENRICHER, KAFKA, kafka_port)
    assert connects(network_policies(), ENRICHER, DNS, 53)
    assert connects(network_policies(), ENRICHER, INTERNET, 443)
    assert not connects(network_policies(), ENRICHER, INTERNET, 80)
    assert not connects(network_policies(), ENRICHER, WORKER, WORKER.ports["web"])


def test_the_enricher_admin_port_is_reachable_only_from_monitoring_and_operators() -> None:
    port = ENRICHER.ports["metrics"]
    assert connects(network_policies(), PROMETHEUS, ENRICHER, port)
    assert connects(network_policies(), OPERATOR, ENRICHER, port)
    for source in (STRANGER, IMPOSTOR, UNLABELLED, INTERNET, INGRESS_CONTROLLER, PRODUCER, WORKER):
        assert not connects(network_policies(), source, ENRICHER, port), source


def test_the_policy_check_can_fail() -> None:
    # An allow-all ingress rule on the producer must be caught by the tests above.
    allow_all = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "oops", "namespace": "sessionflow"},
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "producer"}},
            "policyTypes": ["Ingress"],
            "ingress": [{}],
        },
    }
    assert connects([*network_policies(), allow_all], STRANGER, PRODUCER, PRODUCER.ports["admin"])
