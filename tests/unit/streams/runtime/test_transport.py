"""streams.runtime.transport: the worker app's transport plugs in the runtime's consumer,
transaction manager and producer; Faust's own producer (the expiry ticks) waits after a failed
metadata update instead of spinning while the broker is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.runtime.consumer import Consumer
from streams.runtime.transport import Producer, TransactionManager, Transport
from streams.settings import WorkerSettings
from tests.metadata_spin import sender_updates

# Nothing listens there: a metadata update fails at once, as it does while the broker is down.
NO_BROKER = "127.0.0.1:9"


@pytest.fixture
def app(tmp_path: Path, worker_app: Callable[[WorkerSettings], Any]) -> Any:
    return worker_app(
        WorkerSettings(
            kafka_bootstrap_servers=NO_BROKER,
            table_store="memory",
            data_dir=tmp_path,
            topic_namespace="unit.",
        )
    )


def test_the_apps_transport_is_the_runtimes(app: Any) -> None:
    assert isinstance(app.transport, Transport)
    assert (Transport.Consumer, Transport.TransactionManager) == (Consumer, TransactionManager)
    assert isinstance(app.producer, Producer)


def test_a_failed_metadata_update_of_fausts_producer_waits_the_retry_backoff(app: Any) -> None:
    async def update() -> tuple[bool, float]:
        producer = app.producer._new_producer()  # aiokafka makes it on a running loop only
        started = time.monotonic()
        updated = await producer.client._metadata_update(producer.client.cluster, None)
        await producer.stop()
        return updated, time.monotonic() - started

    updated, took_s = asyncio.get_event_loop().run_until_complete(update())
    assert updated is False
    assert took_s >= 0.1  # aiokafka's default retry_backoff_ms, which Faust keeps


def test_a_tick_waiting_for_a_leader_does_not_spin_the_sender(app: Any) -> None:
    """Reliability scenario 12's fault: a tick pending for a partition without a leader while the
    broker is down. The sender asks for a metadata update, awaits it and asks again; every update
    fails at once, and only the backoff after each one stops the loop from spinning a core (it
    made 141,000 updates in a 28 s outage)."""

    async def half_a_second_down() -> int:
        producer = app.producer._new_producer()
        # Idempotent (the app is exactly-once): a running producer has its id from the broker.
        producer._txn_manager.set_pid_and_epoch(1, 0)
        return await sender_updates(producer)

    updates = asyncio.get_event_loop().run_until_complete(half_a_second_down())
    assert 2 <= updates <= 7, updates
