"""The local broker launcher's parts that need no broker: its config, its ids, its readiness probe,
and how it finds brokers left running by a run killed from outside."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.proc import free_port
from tests.conftest import exited_starter, load_launcher

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


class FakeBrokers:
    """Processes that look like the launcher's brokers (`... kafka.Kafka <home>/server.properties`),
    each with a starter file as `Broker.up` writes it."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, home: Path, starter: str | None) -> subprocess.Popen[bytes]:
        home.mkdir(parents=True)
        if starter is not None:
            (home / launcher.STARTER).write_text(starter)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import time; time.sleep(60)",
                "kafka.Kafka",
                str(home / "server.properties"),
            ]
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


@pytest.fixture
def fake_brokers() -> Iterator[FakeBrokers]:
    brokers = FakeBrokers()
    yield brokers
    brokers.stop()


def test_a_broker_whose_starter_exited_is_an_orphan_and_is_killed(
    tmp_path: Path, fake_brokers: FakeBrokers
) -> None:
    ours = f"{os.getpid()} {launcher._start_time(os.getpid())}"
    orphan = fake_brokers.start(tmp_path / "runs" / "a" / "kafka", exited_starter())
    alive = fake_brokers.start(tmp_path / "runs" / "b" / "kafka", ours)
    # A pid taken again by another process: not the starter.
    reused = fake_brokers.start(tmp_path / "runs" / "c" / "kafka", f"{os.getpid()} 1")
    elsewhere = fake_brokers.start(tmp_path / "elsewhere" / "kafka", exited_starter())
    unknown = fake_brokers.start(tmp_path / "runs" / "d" / "kafka", None)

    runs = tmp_path / "runs"
    assert sorted(launcher.orphaned_brokers(runs)) == sorted([orphan.pid, reused.pid])
    assert sorted(launcher.kill_orphaned_brokers(runs)) == sorted([orphan.pid, reused.pid])
    assert orphan.wait(timeout=10) == -9
    assert reused.wait(timeout=10) == -9
    assert all(p.poll() is None for p in (alive, elsewhere, unknown))
    assert launcher.orphaned_brokers(runs) == []


def test_a_started_broker_names_this_process_as_its_starter(tmp_path: Path) -> None:
    broker = launcher.Broker(home=tmp_path, port=free_port(), controller_port=free_port())
    assert broker.starter == tmp_path / launcher.STARTER
    assert launcher._start_time(os.getpid()) is not None
    assert launcher._start_time(2**22 + 1) is None  # above the kernel's pid limit: no process
