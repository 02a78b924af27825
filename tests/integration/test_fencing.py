"""streams.runtime.fencing against the broker: a lost worker's transaction open on a partition
the worker waits for is aborted at once and its id fenced; a transaction on other partitions and
the worker's own are left to commit."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import ProducerFenced

from streams.runtime.fencing import fence_lost_transactions
from tests.integration.txn_fixtures import read_committed
from tests.kafka_helpers import make_topics

pytestmark = pytest.mark.integration

# Far past the test: only a fence ends a transaction within it.
TRANSACTION_TIMEOUT_MS = 120_000


async def test_only_a_lost_transaction_on_a_waiting_partition_is_ended(
    kafka_bootstrap: str, unique: str
) -> None:
    changelog = f"t-{unique}.changelog"
    await make_topics(kafka_bootstrap, changelog, partitions=2)
    ids = {name: f"t-{unique}-worker-{name}" for name in ("lost", "live", "own")}
    producers = {
        name: AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap,
            transactional_id=tid,
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        )
        for name, tid in ids.items()
    }
    client = AIOKafkaClient(bootstrap_servers=kafka_bootstrap)
    try:
        await client.bootstrap()
        await client._wait_on_metadata(changelog)
        for name, partition in (("lost", 0), ("live", 1), ("own", 0)):
            await producers[name].start()
            await producers[name].begin_transaction()
            await producers[name].send_and_wait(changelog, name.encode(), partition=partition)

        started = time.monotonic()
        fenced = await fence_lost_transactions(
            client,
            [TopicPartition(changelog, 0)],
            own_id=ids["own"],
            timeout_ms=10_000,
            limit_s=15.0,
        )
        took = time.monotonic() - started

        assert fenced == [ids["lost"]]
        assert took < 10.0, f"the fence took {took:.1f} s"
        with pytest.raises(ProducerFenced):
            await producers["lost"].commit_transaction()
        await producers["live"].commit_transaction()
        await producers["own"].commit_transaction()
    finally:
        for producer in producers.values():
            await producer.stop()
        await client.close()

    assert await read_committed(kafka_bootstrap, changelog) == [(0, b"own"), (1, b"live")]
