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
    aiokafka_security,
    check_refusal_probe,
    librdkafka_security,
    refusal,
)
from sessionflow.settings import KafkaSettings

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
