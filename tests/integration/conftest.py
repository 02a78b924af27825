"""Integration fixtures: a broker to stop and restart, workers, a producer, a fake Agntix API."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# One port finder for the benchmarks and the tests (it can leave room for a producer's several
# admin ports); fixture modules import it from here.
from bench.proc import free_port as free_port
from tests.conftest import TIMEOUT_S, load_launcher

if TYPE_CHECKING:  # these fixture modules import free_port and stop_process from here
    from tests.integration.agntix_fake import FakeAgntix
    from tests.integration.cli_fixtures import ServiceEnv
    from tests.integration.metadata_proxy import MetadataProxy
    from tests.integration.producer_fixtures import RunningProducer
    from tests.integration.worker_fixtures import WorkerEnv, WorkerProcess


@pytest.fixture(autouse=True)
def _session_broker(kafka_bootstrap: str) -> str:
    """The session's broker is up for every integration test, named or not: several reach it
    through the settings' default address, and run alone after one that has its own private
    broker they found none."""
    return kafka_bootstrap


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = TIMEOUT_S
) -> int:
    """Send `sig` to a child that still runs and wait; SIGKILL it after `timeout_s`. Its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


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


@pytest.fixture
async def proxied_broker(tmp_path: Path) -> AsyncIterator[MetadataProxy]:
    """A broker of its own that advertises the port of a proxy in front of it, so that its
    clients reach it only through the proxy (which can fence or cut them off)."""
    from tests.integration.metadata_proxy import MetadataProxy

    proxy_port = free_port()
    broker = load_launcher().Broker(
        home=tmp_path / "kafka",
        port=free_port(),
        controller_port=free_port(),
        advertised_port=proxy_port,
    )
    await asyncio.to_thread(broker.up)
    try:
        async with MetadataProxy(broker.bootstrap, proxy_port) as proxy:
            yield proxy
    finally:
        await asyncio.to_thread(broker.down)


@pytest.fixture
async def env(kafka_bootstrap: str, unique: str, tmp_path: Path) -> ServiceEnv:
    """One test's producer, worker and tools environment, its topics created."""
    from tests.integration.cli_fixtures import ServiceEnv

    env = ServiceEnv(bootstrap=kafka_bootstrap, namespace=f"t-{unique}.", root=tmp_path)
    await env.make_topics()
    return env


@pytest.fixture
def worker_env(kafka_bootstrap: str, unique: str, tmp_path: Path) -> WorkerEnv:
    """The settings of one test's workers: its own topic namespace on the shared broker."""
    from tests.integration.worker_fixtures import WorkerEnv

    return WorkerEnv(bootstrap=kafka_bootstrap, namespace=f"t-{unique}.", root=tmp_path)


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """The worker processes a test starts (append them): killed at the end, whatever happened."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


@pytest.fixture
async def producer() -> AsyncIterator[RunningProducer]:
    """A producer served in this process on free ports, against the shared broker."""
    from tests.integration.producer_fixtures import make_settings, run_producer

    async with run_producer(make_settings()) as running:
        yield running


@pytest.fixture
def fake() -> Iterator[FakeAgntix]:
    """A real HTTP fake of the Agntix API that accepts the test API key."""
    from tests.integration.agntix_fake import fake_api

    yield from fake_api()


@pytest.fixture
def token_fake() -> Iterator[FakeAgntix]:
    """A fake that accepts only a Bearer token."""
    from tests.integration.agntix_fake import API_TOKEN, fake_api

    yield from fake_api(api_key=None, token=API_TOKEN)
