"""The broker supports what exactly-once needs: a read_committed consumer sees only committed records."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from sessionflow.settings import KafkaSettings
from sessionflow.topics import TopicSpec, ensure_topics
from tests.conftest import TIMEOUT_S
from tests.kafka_helpers import make_topics, reader

pytestmark = pytest.mark.integration


async def _read_all(bootstrap: str, topic: str, committed: bool, expect: int) -> list[bytes]:
    async with reader(bootstrap, topic, committed=committed) as consumer:
        values: list[bytes] = []
        async with asyncio.timeout(TIMEOUT_S):
            while len(values) < expect:
                batches = await consumer.getmany(timeout_ms=500)
                values += [r.value for records in batches.values() for r in records]
        # Nothing more arrives: the aborted records stay invisible, not just late.
        more = await consumer.getmany(timeout_ms=1000)
        values += [r.value for records in more.values() for r in records]
        return values


async def test_read_committed_sees_exactly_the_committed_transaction(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = f"t-{unique}.tx"
    await make_topics(kafka_bootstrap, topic, partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{unique}")
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(5):
                await producer.send(topic, f"committed-{i}".encode(), key=f"k{i}".encode())
        await producer.begin_transaction()
        for i in range(5):
            await producer.send(topic, f"aborted-{i}".encode(), key=f"k{i}".encode())
        await producer.abort_transaction()
    finally:
        await producer.stop()

    committed = await _read_all(kafka_bootstrap, topic, committed=True, expect=5)
    assert sorted(committed) == sorted(f"committed-{i}".encode() for i in range(5))
    # read_uncommitted proves the aborted records did reach the log: the broker filtered them.
    everything = await _read_all(kafka_bootstrap, topic, committed=False, expect=10)
    assert sorted(everything) == sorted(
        [f"committed-{i}".encode() for i in range(5)] + [f"aborted-{i}".encode() for i in range(5)]
    )


async def test_ensure_topics_refuses_a_partition_mismatch(
    kafka_bootstrap: str, unique: str
) -> None:
    from sessionflow.topics import TopicMismatchError

    topic = f"t-{unique}.mismatch"
    settings = KafkaSettings(kafka_bootstrap_servers=kafka_bootstrap)
    await ensure_topics(settings, [TopicSpec(topic, 2, 1, {})])
    await ensure_topics(settings, [TopicSpec(topic, 2, 1, {})])  # twice is harmless
    with pytest.raises(TopicMismatchError, match="has 2 partitions"):
        await ensure_topics(settings, [TopicSpec(topic, 4, 1, {})])
