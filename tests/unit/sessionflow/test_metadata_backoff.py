"""sessionflow.metadata_backoff: a failed metadata update waits the retry backoff, so the loops of
aiokafka's fetcher and sender that await updates do not spin while the broker is down; a process
refuses to run on an aiokafka where the backoff would not apply."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from sessionflow import metadata_backoff
from sessionflow.metadata_backoff import (
    AiokafkaChanged,
    backoff_failed_metadata_updates,
    client_of,
)
from tests.metadata_spin import sender_updates

# Nothing listens there: a metadata update fails at once, as it does while the broker is down.
NO_BROKER = "127.0.0.1:9"


@contextlib.asynccontextmanager
async def broker_down(client: AIOKafkaClient, backoff: bool) -> AsyncIterator[list[int]]:
    """`client`'s metadata synchronizer running while every update fails at once, as it does while
    the broker is down; yields the count of updates (one item)."""
    updates = [0]

    async def fails(cluster_metadata: Any, topics: Any) -> bool:
        updates[0] += 1
        return False

    client._metadata_update = fails
    if backoff:
        backoff_failed_metadata_updates(client)
    synchronizer = asyncio.get_running_loop().create_task(client._md_synchronizer())
    try:
        yield updates
    finally:
        synchronizer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await synchronizer


async def test_a_failed_metadata_update_waits_the_retry_backoff() -> None:
    """The fetcher's loop while a partition has no leader and the broker is down: ask for an
    update, await it, ask again. Each failed update now takes the retry backoff (100 ms); it was
    immediate, and the loop spun a core (reliability scenario 12)."""
    client = AIOKafkaClient(bootstrap_servers=NO_BROKER, retry_backoff_ms=100)
    async with broker_down(client, backoff=True) as updates:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert await client.force_metadata_update() is False
    assert 3 <= updates[0] <= 7, updates


@pytest.mark.parametrize(("backoff", "most"), [(False, None), (True, 7)])
async def test_a_sender_with_a_batch_for_a_leaderless_partition_waits_between_updates(
    backoff: bool, most: int | None
) -> None:
    """aiokafka's sender, holding a batch whose partition has no known leader, asks for an update
    and awaits it, then asks again: without the backoff it spins (thousands of updates in half a
    second), with it each failed update waits the producer's retry backoff (100 ms)."""
    producer = AIOKafkaProducer(bootstrap_servers=NO_BROKER, retry_backoff_ms=100)

    async def fails(cluster_metadata: Any, topics: Any) -> bool:
        return False

    producer.client._metadata_update = fails
    if backoff:
        backoff_failed_metadata_updates(producer.client)
    updates = await sender_updates(producer)
    if most is None:
        assert updates > 1000, updates
    else:
        assert 3 <= updates <= most, updates


async def test_a_real_failed_update_waits_the_clients_own_backoff() -> None:
    client = AIOKafkaClient(bootstrap_servers=NO_BROKER, retry_backoff_ms=250)
    backoff_failed_metadata_updates(client)
    started = time.monotonic()
    try:
        assert await client._metadata_update(client.cluster, None) is False
    finally:
        await client.close()
    assert time.monotonic() - started >= 0.25


async def test_the_client_of_a_consumer_a_producer_and_an_admin_client() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=NO_BROKER)
    producer = AIOKafkaProducer(bootstrap_servers=NO_BROKER)
    admin = AIOKafkaAdminClient(bootstrap_servers=NO_BROKER)
    try:
        for kafka in (consumer, producer, admin):
            assert isinstance(client_of(kafka), AIOKafkaClient)
        assert client_of(producer) is producer.client
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.close()


def test_the_installed_aiokafka_fits() -> None:
    assert metadata_backoff.fits()
    metadata_backoff.require()


@pytest.mark.parametrize(
    ("owner", "name"), [(AIOKafkaClient, "_metadata_update"), (AIOKafkaClient, "_md_synchronizer")]
)
def test_an_aiokafka_without_the_hooked_update_is_refused(
    monkeypatch: pytest.MonkeyPatch, owner: type[Any], name: str
) -> None:
    monkeypatch.delattr(owner, name)
    assert not metadata_backoff.fits()
    with pytest.raises(AiokafkaChanged, match=r"aiokafka 0\.14\.0 no longer has"):
        metadata_backoff.require()


def test_a_changed_signature_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def _metadata_update(self: Any, cluster_metadata: Any) -> bool:
        return False

    monkeypatch.setattr(AIOKafkaClient, "_metadata_update", _metadata_update)
    assert not metadata_backoff.fits()
