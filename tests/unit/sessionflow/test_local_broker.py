"""The local broker launcher's pure parts: its config, its ids and its readiness probe."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from bench.proc import free_port
from tests.conftest import load_launcher

launcher = load_launcher()


def test_config_is_a_single_kraft_node_on_loopback_ready_for_transactions(tmp_path: Path) -> None:
    broker = launcher.Broker(home=tmp_path, port=19_999, controller_port=20_000)
    broker.write_config()
    lines = dict(
        line.split("=", 1)
        for line in broker.config.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert lines["process.roles"] == "broker,controller"
    assert lines["listeners"] == "PLAINTEXT://127.0.0.1:19999,CONTROLLER://127.0.0.1:20000"
    assert lines["transaction.state.log.replication.factor"] == "1"
    assert lines["transaction.state.log.min.isr"] == "1"
    assert lines["offsets.topic.replication.factor"] == "1"
    assert lines["auto.create.topics.enable"] == "false"


def test_a_secured_listener_takes_plain_and_scram_and_speaks_tls_with_a_keystore(
    tmp_path: Path,
) -> None:
    keystore = tmp_path / "broker.p12"
    broker = launcher.Broker(
        home=tmp_path,
        port=19_999,
        controller_port=20_000,
        secured_port=20_001,
        secured_users=(("alice", "a-pw"),),
        secured_tls=(keystore, "ks-pw"),
    )
    broker.write_config()
    lines = dict(
        line.split("=", 1)
        for line in broker.config.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert lines["listeners"].endswith(",SECURED://127.0.0.1:20001")
    assert lines["listener.security.protocol.map"].endswith(",SECURED:SASL_SSL")
    assert lines["sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-256"
    assert 'user_alice="a-pw"' in lines["listener.name.secured.plain.sasl.jaas.config"]
    assert lines["listener.name.secured.ssl.keystore.location"] == str(keystore)
    assert "inter.broker.listener.name" in lines  # brokers keep talking plaintext among themselves


def test_a_secured_tls_listener_with_a_truststore_requires_client_certificates(
    tmp_path: Path,
) -> None:
    keystore, clients = tmp_path / "broker.p12", tmp_path / "clients.p12"
    broker = launcher.Broker(
        home=tmp_path,
        port=19_999,
        controller_port=20_000,
        secured_port=20_001,
        secured_tls=(keystore, "ks-pw"),
        secured_clients=clients,
    )
    broker.write_config()
    config = broker.config.read_text().splitlines()
    assert "listener.name.secured.ssl.client.auth=required" in config
    assert f"listener.name.secured.ssl.truststore.location={clients}" in config
    assert "listener.name.secured.ssl.truststore.password=ks-pw" in config
    assert broker.secured_protocol == "SSL"


@pytest.mark.parametrize(
    ("users", "tls", "protocol"),
    [
        ((("a", "b"),), True, "SASL_SSL"),
        ((("a", "b"),), False, "SASL_PLAINTEXT"),
        ((), True, "SSL"),
    ],
)
def test_the_secured_listeners_protocol_follows_its_users_and_keystore(
    tmp_path: Path, users: tuple[tuple[str, str], ...], tls: bool, protocol: str
) -> None:
    keystore = (tmp_path / "broker.p12", "ks-pw") if tls else None
    broker = launcher.Broker(
        home=tmp_path,
        port=1,
        controller_port=2,
        secured_port=3,
        secured_users=users,
        secured_tls=keystore,
    )
    assert broker.secured_protocol == protocol


def test_cluster_ids_are_kafka_shaped() -> None:
    ids = {launcher._kafka_uuid() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_readiness_probe_is_false_for_a_closed_port_and_a_mute_server() -> None:
    assert launcher.metadata_ready("127.0.0.1", free_port(), timeout_s=0.2) is False

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def accept_and_close() -> None:
        conn, _ = server.accept()
        conn.recv(1024)
        conn.close()

    thread = threading.Thread(target=accept_and_close)
    thread.start()
    try:
        assert launcher.metadata_ready("127.0.0.1", server.getsockname()[1], timeout_s=0.5) is False
    finally:
        thread.join(timeout=5)
        server.close()
