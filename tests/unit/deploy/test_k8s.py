"""deploy/k8s/: workloads, probes, ports, secrets and settings agree with the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from enricher.settings import EnricherSettings
from producer.openapi import WEBHOOK_PATH
from producer.settings import ProducerSettings
from sessionflow.settings import KafkaSettings
from streams.settings import WorkerSettings
from tests.certificates import client_certificate
from tests.unit.deploy._manifests import (
    K8S,
    VALID_API_KEY,
    VALID_SECRET,
    container,
    dockerfile_uid,
    k8s,
    k8s_objects,
    load_settings,
    named_ports,
)

WORKLOADS = [
    ("Deployment", "sessionflow-producer"),
    ("StatefulSet", "sessionflow-worker"),
    ("Deployment", "sessionflow-enricher"),
]
# Where every pod finds Kafka's TLS files (the Secret sessionflow-kafka-tls).
KAFKA_TLS_DIR = Path("/etc/sessionflow/kafka-tls")


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
    assert {"secretRef": {"name": "sessionflow-webhook"}} not in worker["envFrom"]
    assert "SESSIONFLOW_WEBHOOK_SECRETS" in k8s("Secret", "sessionflow-webhook")["stringData"]
    assert not any("SECRET" in key for key in k8s("ConfigMap", "sessionflow")["data"])


def test_every_workload_reads_the_kafka_credential_when_it_exists() -> None:
    """A cluster that takes SASL: the user and password come from the Secret sessionflow-kafka,
    optional, so a plaintext cluster needs none; the protocol is in the ConfigMap."""
    for kind, name in WORKLOADS:
        refs = container(k8s(kind, name))["envFrom"]
        assert {"secretRef": {"name": "sessionflow-kafka", "optional": True}} in refs, name
    data = k8s("ConfigMap", "sessionflow")["data"]
    assert data["SESSIONFLOW_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert not any("PASSWORD" in key or "USERNAME" in key for key in data)


def test_every_workload_mounts_the_kafka_tls_files_when_they_exist() -> None:
    """A private CA or mutual TLS: the PEM files come from the Secret sessionflow-kafka-tls,
    optional (a plaintext cluster needs none), read-only at one directory in every pod."""
    for kind, name in WORKLOADS:
        pod = k8s(kind, name)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["kafka-tls"]["secret"] == {
            "secretName": "sessionflow-kafka-tls",
            "optional": True,
        }, name
        mounts = {m["name"]: m for m in container(k8s(kind, name))["volumeMounts"]}
        assert mounts["kafka-tls"] == {
            "name": "kafka-tls",
            "mountPath": str(KAFKA_TLS_DIR),
            "readOnly": True,
        }, name


def test_the_configmaps_tls_example_loads_with_the_files_in_place(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The commented example names real settings and files in the mounted directory: with a CA,
    a client certificate and its key there (here: tmp_path), every process's settings load."""
    example = dict(
        re.findall(
            r"^  # (SESSIONFLOW_KAFKA_SSL_\w+): (\S+)$", (K8S / "configmap.yaml").read_text(), re.M
        )
    )
    assert set(example) == {
        "SESSIONFLOW_KAFKA_SSL_CAFILE",
        "SESSIONFLOW_KAFKA_SSL_CERTFILE",
        "SESSIONFLOW_KAFKA_SSL_KEYFILE",
    }
    assert {Path(path).parent for path in example.values()} == {KAFKA_TLS_DIR}
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    cert, key = client_certificate(tmp_path)
    # Any PEM certificate serves as the CA file for loading the settings.
    for name, source in (("ca.crt", cert), ("user.crt", cert), ("user.key", key)):
        (mounted / name).write_bytes(source.read_bytes())
    tls = {var: str(mounted / Path(path).name) for var, path in example.items()}
    tls["SESSIONFLOW_KAFKA_SECURITY_PROTOCOL"] = "SSL"
    processes: tuple[type[KafkaSettings], ...] = (
        ProducerSettings,
        WorkerSettings,
        EnricherSettings,
    )
    for (kind, name), cls in zip(WORKLOADS, processes, strict=True):
        env = dict(k8s("ConfigMap", "sessionflow")["data"])
        env.update(pod_env(container(k8s(kind, name)), "10.1.2.3", f"{name}-0"))
        env.update(tls, SESSIONFLOW_WEBHOOK_SECRETS=VALID_SECRET, AGNTIX_API_KEY=VALID_API_KEY)
        settings = load_settings(cls, monkeypatch, env)
        assert settings.kafka_ssl_cafile == mounted / "ca.crt", name
        assert settings.kafka_ssl_certfile == mounted / "user.crt", name
        assert settings.kafka_ssl_keyfile == mounted / "user.key", name


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


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
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


def pod_env(c: dict[str, Any], pod_ip: str, pod_name: str) -> dict[str, str]:
    """A container's env entries as the kubelet sets them: the pod's IP and name for their
    fieldRefs, `$(NAME)` expanded from the entries before it."""
    fields = {"status.podIP": pod_ip, "metadata.name": pod_name}
    env: dict[str, str] = {}
    for entry in c.get("env", []):
        if "value" in entry:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], entry["value"])
        else:
            env[entry["name"]] = fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def test_k8s_worker_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    c = container(k8s("StatefulSet", "sessionflow-worker"))
    env = dict(k8s("ConfigMap", "sessionflow")["data"])
    env.update(pod_env(c, "10.1.2.3", "sessionflow-worker-1"))
    settings = load_settings(WorkerSettings, monkeypatch, env)
    # A pod started again under its (stable) name aborts the transaction it left open at once.
    assert settings.worker_key == "sessionflow-worker-1"
    # and, with the ConfigMap's commented static membership, rejoins the group under it.
    assert settings.group_instance_id is None
    env["SESSIONFLOW_STATIC_MEMBERSHIP"] = "true"
    static = load_settings(WorkerSettings, monkeypatch, env)
    assert static.group_instance_id == "sessionflow-worker-1"
    assert settings.worker_port == 6066
    assert settings.partitions == 12
    assert settings.replication_factor == 3
    # The other workers forward GET /sessions/{id} to the pod's own address.
    assert settings.canonical_url == "http://10.1.2.3:6066"
    assert settings.log_format == "json"
