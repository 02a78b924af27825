"""streams.app: the Faust app's credentials are the connection sessionflow/kafka_security.py
describes (Faust's own clients take them; the runtime's producers take aiokafka_security's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
import pytest

from streams.app import credentials
from streams.settings import WorkerSettings


def worker_settings(tmp_path: Path, **values: Any) -> WorkerSettings:
    return WorkerSettings(data_dir=tmp_path, **values)


def test_plaintext_needs_no_credentials(tmp_path: Path) -> None:
    assert credentials(worker_settings(tmp_path)) is None


@pytest.mark.parametrize(
    ("protocol", "mechanism", "tls"),
    [("SASL_SSL", "SCRAM-SHA-256", True), ("SASL_PLAINTEXT", "PLAIN", False)],
)
def test_sasl_is_faust_sasl_with_the_mechanism_and_tls_only_over_ssl(
    tmp_path: Path, protocol: str, mechanism: str, tls: bool
) -> None:
    found = credentials(
        worker_settings(
            tmp_path,
            kafka_security_protocol=protocol,
            kafka_sasl_mechanism=mechanism,
            kafka_sasl_username="sessionflow",
            kafka_sasl_password="pw",
        )
    )
    assert isinstance(found, faust.SASLCredentials)
    assert (found.protocol.value, found.mechanism.value) == (protocol, mechanism)
    assert (found.username, found.password) == ("sessionflow", "pw")
    assert (found.ssl_context is not None) is tls


def test_tls_alone_is_faust_ssl(tmp_path: Path) -> None:
    found = credentials(worker_settings(tmp_path, kafka_security_protocol="SSL"))
    assert isinstance(found, faust.SSLCredentials)
    assert found.protocol.value == "SSL"
