"""Fixtures of the sessionflow package's unit tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from tests.unit.cli.webhook_receiver import Behaviour, Receiver, always_ok


@pytest.fixture
def serve() -> Iterator[Callable[..., Receiver]]:
    started: list[tuple[Receiver, threading.Thread]] = []

    def start(
        secrets: list[str], behaviour: Behaviour = always_ok, delay_s: float = 0.0
    ) -> Receiver:
        receiver = Receiver(secrets, behaviour, delay_s)
        thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
        thread.start()
        started.append((receiver, thread))
        return receiver

    try:
        yield start
    finally:
        for receiver, thread in started:
            receiver.server.shutdown()
            receiver.server.server_close()
            thread.join(timeout=5)
