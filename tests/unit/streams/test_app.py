"""streams.app: the Faust app's credentials are the connection sessionflow/kafka_security.py
describes (Faust's own clients take them; the runtime's producers take aiokafka_security's), and
its consumer joins the group as a static member only when asked to, its clients named by the
worker id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
import pytest
from pydantic import ValidationError

from streams.app import create_app, credentials
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


def test_membership_is_dynamic_unless_static_membership_is_asked_for(tmp_path: Path) -> None:
    settings = worker_settings(tmp_path, worker_id="sessionflow-worker-0")
    assert settings.group_instance_id is None
    assert create_app(settings).conf.consumer_group_instance_id is None


def test_a_static_member_is_named_by_its_worker_id(tmp_path: Path) -> None:
    settings = worker_settings(tmp_path, static_membership=True, worker_id="sessionflow-worker-0")
    assert settings.group_instance_id == "sessionflow-worker-0"
    assert create_app(settings).conf.consumer_group_instance_id == "sessionflow-worker-0"


def test_the_kafka_clients_are_named_by_the_worker_id(tmp_path: Path) -> None:
    # The group lists each member under it (streams/runtime/namesakes.py).
    settings = worker_settings(tmp_path, worker_id="sessionflow-worker-0")
    assert create_app(settings).conf.broker_client_id == "sessionflow-worker-0"


def test_static_membership_without_a_worker_id_is_refused(tmp_path: Path) -> None:
    # A name made up from the host changes with the pod: every start would be a new member.
    with pytest.raises(ValidationError, match="SESSIONFLOW_WORKER_ID"):
        worker_settings(tmp_path, static_membership=True)
