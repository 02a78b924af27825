"""Helpers for tests of the worker's transactional producers against the real broker: topics,
a group member, producers with one transaction per worker, and what the broker committed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.runtime.producers import Producers, WorkerTransaction
from streams.runtime.worker_txn import GroupMember
from tests.conftest import TIMEOUT_S
from tests.kafka_helpers import make_topics
from tests.polling import wait_until
from tests.reliability.outputs import committed_offsets


async def committed_soon(bootstrap: str, group: str, topic: str, expected: dict[int, int]) -> None:
    """The group's committed offsets of `topic` become `expected`. A transaction's offsets reach
    __consumer_offsets with its commit markers, which the broker writes after EndTxn has
    answered; the admin's OffsetFetch (no require_stable) reads the older ones until then."""

    async def committed() -> bool:
        return await committed_offsets(bootstrap, group, topic) == expected

    await wait_until(committed, f"{group}'s committed offsets of {topic} to be {expected}")


async def out_and_source(bootstrap: str, unique: str, partitions: int = 2) -> tuple[str, str]:
    """This test's output topic and the source topic whose offsets it commits, created."""
    out, source = f"t-{unique}.out", f"t-{unique}.in"
    await make_topics(bootstrap, out, source, partitions=partitions)
    return out, source


async def _settled_ends(
    bootstrap: str, committed: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The read_committed ends of `tps` once every transaction written to them so far has ended.
    A commit returns before the broker has written its markers, and until then the partition's
    stable end stays before the transaction's records (a clean-clone run of 89c93f8 read nothing of
    partition 0 right after its commit)."""
    plain = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await plain.start()
    try:
        written = await plain.end_offsets(tps)
    finally:
        await plain.stop()
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            ends: dict[TopicPartition, int] = await committed.end_offsets(tps)
            if all(ends[tp] >= written[tp] for tp in tps):
                return ends
            await asyncio.sleep(0.05)


async def read_committed(
    bootstrap: str, topic: str, partitions: int = 2
) -> list[tuple[int, bytes]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await _settled_ends(bootstrap, consumer, tps)
        out: list[tuple[int, bytes]] = []
        async with asyncio.timeout(TIMEOUT_S):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=300)
                out += [(r.partition, r.value) for recs in batch.values() for r in recs]
        return sorted(out)
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def group_member(bootstrap: str, group: str, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer in `group`, subscribed to `topic`, once it has its partitions."""
    consumer = AIOKafkaConsumer(
        topic, group_id=group, bootstrap_servers=bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
        yield consumer
    finally:
        await consumer.stop()


def as_member(consumer: AIOKafkaConsumer) -> GroupMember:
    coordinator: Any = consumer._coordinator
    return GroupMember(generation=coordinator.generation, member_id=coordinator.member_id)


def per_worker(bootstrap: str, unique: str, member: Callable[[], GroupMember]) -> Producers:
    return Producers(
        bootstrap_servers=bootstrap,
        client_id=f"t-{unique}",
        transactional_id=None,
        group_id=f"g-{unique}",
        worker=WorkerTransaction(
            transactional_id=f"t-{unique}-worker", member=member, timeout_ms=10_000
        ),
    )
