"""deploy/compose.yaml agrees with the code: images, settings, volumes, scrapes."""

from __future__ import annotations

import re

import pytest
import yaml
from pydantic import ValidationError

from enricher.settings import EnricherSettings
from producer.settings import ProducerSettings
from streams.settings import WorkerSettings
from tests.unit.deploy._manifests import (
    DEPLOY,
    SESSIONFLOW_SERVICES,
    VALID_API_KEY,
    VALID_SECRET,
    compose,
    load_settings,
)


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


def test_compose_workers_name_their_transactions_apart_and_keep_the_name_when_recreated() -> None:
    # A container's host name is new with every container; the worker id must not be.
    services = compose()["services"]
    ids = {services[n]["environment"]["SESSIONFLOW_WORKER_ID"] for n in ("worker-1", "worker-2")}
    assert ids == {"worker-1", "worker-2"}


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
