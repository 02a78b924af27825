"""The server's listeners: bound early, refusing connections until uvicorn listens on them."""

from __future__ import annotations

import socket

import pytest

from bench.proc import free_port
from producer.server import bind, listeners, server_config
from producer.settings import ProducerSettings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_bound_listener_refuses_connections_until_it_listens() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sock.listen()
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        sock.close()


def _settings(http_port: int, admin_port: int) -> ProducerSettings:
    return ProducerSettings(
        webhook_secrets=SECRET,
        http_host="127.0.0.1",
        http_port=http_port,
        admin_host="127.0.0.1",
        admin_port=admin_port,
    )


def test_both_listeners_bind_in_order() -> None:
    http_port, admin_port = free_port(), free_port()
    public, admin = listeners(_settings(http_port, admin_port))
    try:
        assert public.getsockname() == ("127.0.0.1", http_port)
        assert admin.getsockname() == ("127.0.0.1", admin_port)
    finally:
        public.close()
        admin.close()


def test_a_taken_port_fails_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        http_port = free_port()
        port = taken.getsockname()[1]
        # The error names the address: which port is taken is what an operator needs to know.
        with pytest.raises(OSError, match=rf"in use \(127\.0\.0\.1:{port}\)"):
            listeners(_settings(http_port, port))
    # The public socket bound first was closed again: its port is free.
    with socket.socket() as again:
        again.bind(("127.0.0.1", http_port))


def test_the_server_drains_in_flight_requests_and_runs_the_lifespan() -> None:
    config = server_config(ProducerSettings(webhook_secrets=SECRET, shutdown_timeout_seconds=20))
    assert config.lifespan == "on"
    assert config.timeout_graceful_shutdown == 20
    assert config.access_log is False
