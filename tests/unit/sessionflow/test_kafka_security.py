"""sessionflow.kafka_security and the settings it reads: one connection, spelled for each client
library; settings that cannot connect are refused at start, without printing the password; the
probe that tells a refusing broker from one that is down fits the locked aiokafka."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka import conn as aiokafka_conn
from pydantic import ValidationError

from bench.proc import free_port
from sessionflow.kafka_security import (
    KafkaClientMismatch,
    _certificate_alert,
    aiokafka_security,
    check_refusal_probe,
    librdkafka_security,
    refusal,
)
from sessionflow.settings import KafkaSettings
from tests.certificates import client_certificate

PASSWORD = "the-kafka-password"


def settings(**values: Any) -> KafkaSettings:
    return KafkaSettings(**values)


def sasl(protocol: str = "SASL_PLAINTEXT", **values: Any) -> KafkaSettings:
    return settings(
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="sessionflow",
        kafka_sasl_password=PASSWORD,
        **values,
    )


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol() -> None:
    assert aiokafka_security(settings()) == {"security_protocol": "PLAINTEXT"}
    assert librdkafka_security(settings()) == {"security.protocol": "plaintext"}


def test_sasl_gives_each_library_the_mechanism_and_the_credentials() -> None:
    assert aiokafka_security(sasl()) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "sessionflow",
        "sasl_plain_password": PASSWORD,
    }
    assert librdkafka_security(sasl()) == {
        "security.protocol": "sasl_plaintext",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "sessionflow",
        "sasl.password": PASSWORD,
    }


def test_tls_verifies_the_broker_with_the_system_cas_unless_a_file_is_named(tmp_path: Path) -> None:
    system = aiokafka_security(sasl("SASL_SSL"))["ssl_context"]
    assert isinstance(system, ssl.SSLContext)
    assert system.verify_mode == ssl.CERT_REQUIRED
    assert system.check_hostname
    assert librdkafka_security(sasl("SASL_SSL"))["ssl.ca.location"] == "probe"

    cafile = tmp_path / "ca.pem"
    cafile.write_text("")  # read by the TLS context only when a client connects
    named = settings(kafka_security_protocol="SSL", kafka_ssl_cafile=cafile)
    assert librdkafka_security(named) == {
        "security.protocol": "ssl",
        "ssl.ca.location": str(cafile),
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_password": PASSWORD},
            "SESSIONFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs SESSIONFLOW_KAFKA_SASL_USERNAME",
        ),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "sessionflow"},
            "needs SESSIONFLOW_KAFKA_SASL_USERNAME and SESSIONFLOW_KAFKA_SASL_PASSWORD",
        ),
        (
            {"kafka_ssl_cafile": "/etc/hostname", "kafka_sasl_password": PASSWORD},
            "SESSIONFLOW_KAFKA_SSL_CAFILE is set but SESSIONFLOW_KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nonexistent/ca.pem"},
            "SESSIONFLOW_KAFKA_SSL_CAFILE /nonexistent/ca.pem is not a file",
        ),
    ],
    ids=["no-user", "no-password", "cafile-without-tls", "cafile-missing"],
)
def test_settings_that_cannot_connect_are_refused_without_their_values(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        settings(**values)
    said = str(refused.value)
    assert message in said
    assert PASSWORD not in said


KEY_PASSWORD = "the-client-key-password"


@pytest.fixture(scope="module")
def client_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A client certificate and its key, encrypted with KEY_PASSWORD."""
    return client_certificate(tmp_path_factory.mktemp("client"), password=KEY_PASSWORD)


def mutual_tls(pair: tuple[Path, Path], **values: Any) -> KafkaSettings:
    return settings(
        kafka_security_protocol="SSL",
        kafka_ssl_certfile=pair[0],
        kafka_ssl_keyfile=pair[1],
        kafka_ssl_key_password=KEY_PASSWORD,
        **values,
    )


def test_mutual_tls_gives_each_library_the_client_certificate(
    client_pair: tuple[Path, Path],
) -> None:
    cert, key = client_pair
    context = aiokafka_security(mutual_tls(client_pair))["ssl_context"]
    assert isinstance(context, ssl.SSLContext)  # it loaded the pair, with the key's password
    assert librdkafka_security(mutual_tls(client_pair)) == {
        "security.protocol": "ssl",
        "ssl.ca.location": "probe",
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "ssl.key.password": KEY_PASSWORD,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"kafka_ssl_keyfile": None, "kafka_ssl_key_password": ""},
            "SESSIONFLOW_KAFKA_SSL_CERTFILE and SESSIONFLOW_KAFKA_SSL_KEYFILE go together",
        ),
        (
            {"kafka_ssl_certfile": None, "kafka_ssl_keyfile": None},
            "SESSIONFLOW_KAFKA_SSL_KEY_PASSWORD only with them",
        ),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT"},
            "SESSIONFLOW_KAFKA_SSL_CERTFILE is set but SESSIONFLOW_KAFKA_SECURITY_PROTOCOL is"
            " SASL_PLAINTEXT, without TLS",
        ),
        (
            {"kafka_ssl_key_password": "not-the-key-password"},
            "do not load as a certificate and its key",
        ),
        ({"kafka_ssl_key_password": ""}, "do not load as a certificate and its key"),
    ],
    ids=[
        "cert-without-key",
        "password-without-key",
        "without-tls",
        "wrong-key-password",
        "no-key-password",
    ],
)
def test_a_client_certificate_that_cannot_serve_is_refused_at_start(
    client_pair: tuple[Path, Path], change: dict[str, Any], message: str
) -> None:
    values: dict[str, Any] = {
        "kafka_security_protocol": "SSL",
        "kafka_ssl_certfile": client_pair[0],
        "kafka_ssl_keyfile": client_pair[1],
        "kafka_ssl_key_password": KEY_PASSWORD,
        "kafka_sasl_username": "u",
        "kafka_sasl_password": PASSWORD,
    } | change
    with pytest.raises(ValidationError) as refused:
        settings(**values)
    said = str(refused.value)
    assert message in said
    assert KEY_PASSWORD not in said
    assert "not-the-key-password" not in said


@pytest.mark.parametrize(
    ("alert", "turned_down"),
    [
        (ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate"), True),
        (ssl.SSLError(1, "x"), False),
        (OSError("connection reset"), False),
        (None, False),
    ],
)
def test_only_the_brokers_alerts_about_the_client_certificate_are_refusals(
    alert: BaseException | None, turned_down: bool
) -> None:
    if isinstance(alert, ssl.SSLError) and "ALERT" in str(alert):
        alert.reason = "SSLV3_ALERT_BAD_CERTIFICATE"  # as OpenSSL sets it
    assert _certificate_alert(alert) is turned_down


def test_the_password_stays_out_of_the_settings_repr() -> None:
    assert PASSWORD not in repr(sasl())


def test_the_refusal_probe_fits_the_locked_aiokafka() -> None:
    check_refusal_probe()


async def _create_conn_without_sasl(host: str, port: int, *, ssl_context: Any = None) -> None:
    """A create_conn that lost its SASL parameters."""


@pytest.mark.parametrize(
    ("create_conn", "names"),
    [(None, "no aiokafka.conn.create_conn"), (_create_conn_without_sasl, "takes no request_")],
)
def test_the_refusal_probe_refuses_to_run_on_an_aiokafka_that_changed(
    monkeypatch: pytest.MonkeyPatch, create_conn: Any, names: str
) -> None:
    monkeypatch.setattr(aiokafka_conn, "create_conn", create_conn)
    with pytest.raises(KafkaClientMismatch, match=names) as refused:
        check_refusal_probe()
    assert "update sessionflow/kafka_security.py" in str(refused.value)


async def test_no_answer_is_no_refusal() -> None:
    """A broker that is down may come up: only an answer that refuses is a refusal."""
    down = sasl(kafka_bootstrap_servers=f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}")
    assert await refusal(down, timeout_s=1.0) is None
