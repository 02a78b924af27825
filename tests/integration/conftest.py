"""Integration fixtures: a private broker that tests may stop, kill and restart."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_launcher


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RestartableBroker:
    """A broker of its own (own ports, own data) for outage tests; the shared one stays up."""

    broker: Any

    @property
    def bootstrap(self) -> str:
        return str(self.broker.bootstrap)

    async def start(self) -> None:
        await asyncio.to_thread(self.broker.up)

    async def stop(self) -> None:
        await asyncio.to_thread(self.broker.down)

    async def kill(self) -> None:
        await asyncio.to_thread(self.broker.kill)


@pytest.fixture
def restartable_broker(tmp_path: Path) -> Iterator[RestartableBroker]:
    launcher = load_launcher()
    broker = launcher.Broker(home=tmp_path / "kafka", port=free_port(), controller_port=free_port())
    broker.up()
    try:
        yield RestartableBroker(broker)
    finally:
        broker.down()
