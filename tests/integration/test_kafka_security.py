"""Every process and tool against a broker listener that takes only SASL over plaintext, SASL over
TLS, or TLS alone with a client certificate (mutual TLS): the `SESSIONFLOW_KAFKA_*` settings reach
every Kafka client (sessionflow/kafka_security.py); a client left out could not connect. A broker
that refuses a client stops each service at once, saying why."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.certificates import broker_keystore, client_certificate, truststore
from tests.conftest import load_launcher
from tests.integration.agntix_fake import API_KEY, FakeAgntix
from tests.integration.cli_fixtures import SecuredEnv, serving_transcripts
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

USER, PASSWORD = "sessionflow", "kafka-s3cret-for-tests"
KEY_PASSWORD = "client-key-s3cret"  # the client certificate's key, for mutual TLS
# Both mechanisms and both transports in two runs: PLAIN over TLS (as managed clusters offer it),
# SCRAM over plaintext.
MECHANISM = {"SASL_SSL": "PLAIN", "SASL_PLAINTEXT": "SCRAM-SHA-256"}
SASL, TLS = ["SASL_PLAINTEXT", "SASL_SSL"], ["SASL_SSL", "SSL"]


@dataclass(frozen=True)
class SecuredBroker:
    broker: Any
    protocol: str
    cafile: Path | None = None
    # TLS alone requires a client certificate (mutual TLS): this one, its key encrypted with
    # KEY_PASSWORD.
    client: tuple[Path, Path] | None = None


@pytest.fixture(scope="module", params=["SASL_PLAINTEXT", "SASL_SSL", "SSL"])
def secured_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredBroker]:
    """A broker of this module's own whose secured listener speaks the protocol of the param:
    SASL (PLAIN and SCRAM-SHA-256, for USER), TLS with a client certificate, or both (SASL
    authenticates then, not a certificate)."""
    home = tmp_path_factory.mktemp("kafka-secured")
    keystore = cafile = client = trusted = None
    if request.param in TLS:
        keystore, cafile = broker_keystore(home, "keystore-pass")
    if request.param == "SSL":
        client = client_certificate(home, password=KEY_PASSWORD)
        trusted = truststore(home, [client[0]], "keystore-pass")
    broker = load_launcher().Broker(
        home=home / "kafka",
        port=free_port(),
        controller_port=free_port(),
        secured_port=free_port(),
        secured_users=((USER, PASSWORD),) if request.param in SASL else (),
        secured_tls=(keystore, "keystore-pass") if keystore is not None else None,
        secured_clients=trusted,
    )
    assert broker.secured_protocol == request.param
    broker.up()
    try:
        yield SecuredBroker(broker, request.param, cafile, client)
    finally:
        broker.down()


def secured(
    broker: SecuredBroker, root: Path, password: str = PASSWORD, with_certificate: bool = True
) -> SecuredEnv:
    security = {"SESSIONFLOW_KAFKA_SECURITY_PROTOCOL": broker.protocol}
    if broker.protocol in SASL:
        security |= {
            "SESSIONFLOW_KAFKA_SASL_MECHANISM": MECHANISM[broker.protocol],
            "SESSIONFLOW_KAFKA_SASL_USERNAME": USER,
            "SESSIONFLOW_KAFKA_SASL_PASSWORD": password,
        }
    if broker.cafile is not None:
        security["SESSIONFLOW_KAFKA_SSL_CAFILE"] = str(broker.cafile)
    if broker.client is not None and with_certificate:
        security |= {
            "SESSIONFLOW_KAFKA_SSL_CERTFILE": str(broker.client[0]),
            "SESSIONFLOW_KAFKA_SSL_KEYFILE": str(broker.client[1]),
            "SESSIONFLOW_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD,
        }
    return SecuredEnv(
        bootstrap=f"127.0.0.1:{broker.broker.secured_port}",  # the secured listener only
        namespace=f"t-{broker.protocol.lower()}.",
        root=root,
        security=security,
    )


def test_every_process_and_tool_runs_secured(
    secured_broker: SecuredBroker, tmp_path: Path, fake: FakeAgntix
) -> None:
    env = secured(secured_broker, tmp_path)
    # Producer (librdkafka), worker (Faust and the runtime's producers), enricher, `tail`.
    with serving_transcripts(env, fake.url, API_KEY, seed=5) as (service, expected):
        session = sorted(expected)[0]
        story = env.run(
            "inspect", session, "--worker", f"http://127.0.0.1:{env.worker_port}", "--json"
        )
        assert story.returncode == 0, story.stderr
        assert json.loads(story.stdout)["verdict"] == "completed"
        topics = env.run("topics", "--describe")
        assert topics.returncode == 0, topics.stderr
        assert env.run("dlq", "replay", "--dry-run").returncode == 0
    assert PASSWORD not in service.log()


@pytest.mark.parametrize("secured_broker", SASL, indirect=True)
@pytest.mark.parametrize(
    "command",
    [
        ("topics", "--describe"),
        ("tail", "completed"),
        ("inspect", "7f0c2b1e-3a4d-4e5f-8a9b-0c1d2e3f4a5b"),
        ("dlq", "replay"),
    ],
    ids=lambda command: command[0],
)
def test_a_refused_password_is_a_clear_error_without_the_password(
    secured_broker: SecuredBroker, tmp_path: Path, command: tuple[str, ...]
) -> None:
    env = secured(secured_broker, tmp_path, password="not-the-password")
    done = env.run(*command)
    assert done.returncode == 1
    assert "Authentication failed" in done.stderr  # the broker's answer
    # "sessionflow tail: ...", "sessionflow dlq replay: ..."
    assert f"sessionflow {command[0]}{' replay' if command[0] == 'dlq' else ''}: " in done.stderr
    assert "Traceback" not in done.stderr
    assert "not-the-password" not in done.stdout + done.stderr


@pytest.mark.parametrize("secured_broker", TLS, indirect=True)
def test_a_certificate_the_clients_do_not_trust_is_refused(
    secured_broker: SecuredBroker, tmp_path: Path
) -> None:
    """Without the CA file the broker's self-signed certificate is checked against the system's
    CAs, and refused: TLS verifies the broker, it does not only encrypt."""
    env = secured(secured_broker, tmp_path)
    del env.security["SESSIONFLOW_KAFKA_SSL_CAFILE"]
    done = env.run("topics", "--describe")
    assert done.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# Each service refuses to start at once, in its own way: uvicorn's start-up failure, the worker's
# refusal, the enricher's stop; none waits out its 120 s for a broker that answers and refuses.
SERVICES = {"producer": 3, "worker": 2, "enricher": 1}
STARTS_WITHIN_S = 45.0


def start_refused(env: SecuredEnv, service: str) -> str:
    """Start `service` alone; it must exit with its refusal code well before its start-up timeout.
    Its output."""
    started = time.monotonic()
    done = env.run(
        service,
        timeout_s=STARTS_WITHIN_S,
        AGNTIX_API_URL="http://127.0.0.1:9/",
        AGNTIX_API_KEY=API_KEY,
    )
    output = done.stdout + done.stderr
    assert done.returncode == SERVICES[service], output
    assert time.monotonic() - started < STARTS_WITHIN_S
    assert "Traceback" not in output
    return output


@pytest.mark.parametrize("secured_broker", ["SASL_PLAINTEXT"], indirect=True)
@pytest.mark.parametrize("service", SERVICES)
def test_a_service_refused_its_password_stops_at_once_and_says_why(
    secured_broker: SecuredBroker, tmp_path: Path, service: str
) -> None:
    output = start_refused(secured(secured_broker, tmp_path, password="not-the-password"), service)
    assert f"refused SCRAM-SHA-256 authentication as user '{USER}'" in output, output
    assert "not-the-password" not in output


@pytest.mark.parametrize("secured_broker", ["SSL"], indirect=True)
@pytest.mark.parametrize("service", SERVICES)
def test_a_service_that_does_not_trust_the_certificate_stops_at_once_and_says_why(
    secured_broker: SecuredBroker, tmp_path: Path, service: str
) -> None:
    env = secured(secured_broker, tmp_path)
    del env.security["SESSIONFLOW_KAFKA_SSL_CAFILE"]
    output = start_refused(env, service)
    assert "its certificate is not trusted by the system's CAs" in output, output


@pytest.mark.parametrize("secured_broker", ["SSL"], indirect=True)
@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    ("certificate", "said"),
    [
        ("none", "asks for a client certificate (mutual TLS)"),
        ("untrusted", "does not accept the client certificate"),
    ],
)
def test_a_service_whose_client_certificate_is_turned_down_stops_at_once_and_says_why(
    secured_broker: SecuredBroker, tmp_path: Path, service: str, certificate: str, said: str
) -> None:
    env = secured(secured_broker, tmp_path, with_certificate=False)
    if certificate == "untrusted":  # well-formed, but not in the broker's truststore
        cert, key = client_certificate(tmp_path, name="stranger")
        env.security |= {
            "SESSIONFLOW_KAFKA_SSL_CERTFILE": str(cert),
            "SESSIONFLOW_KAFKA_SSL_KEYFILE": str(key),
        }
    assert said in start_refused(env, service)


@pytest.mark.parametrize("secured_broker", ["SSL"], indirect=True)
@pytest.mark.parametrize("command", [("tail", "completed"), ("topics",)], ids=lambda c: c[0])
def test_a_tool_whose_client_certificate_is_missing_says_so(
    secured_broker: SecuredBroker, tmp_path: Path, command: tuple[str, ...]
) -> None:
    env = secured(secured_broker, tmp_path, with_certificate=False)
    done = env.run(*command)
    assert done.returncode == 1
    assert f"sessionflow {command[0]}: Kafka at " in done.stderr, done.stderr
    assert "asks for a client certificate (mutual TLS)" in done.stderr
    assert "Traceback" not in done.stderr
