"""streams.runtime.producers against the real broker: batches, transactions, fencing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.errors import KafkaConnectionError, KafkaError, ProducerFenced

from streams.runtime.lookups import LOOKUP_BACKOFF_MAX_S
from streams.runtime.producers import (
    MAX_BATCH_BYTES,
    Producers,
)
from streams.runtime.worker_txn import fetch_stable_offsets
from tests.conftest import TIMEOUT_S
from tests.integration.conftest import RestartableBroker
from tests.integration.txn_fixtures import (
    as_member,
    committed_soon,
    group_member,
    out_and_source,
    per_worker,
    read_committed,
)
from tests.kafka_helpers import make_topics

pytestmark = pytest.mark.integration

# How long the broker stays away while a commit is pending.
OUTAGE_S = 5.0


def _transactional(bootstrap: str, unique: str) -> Producers:
    return Producers(
        bootstrap_servers=bootstrap,
        client_id=f"t-{unique}",
        transactional_id=lambda partition: f"t-{unique}-{partition}",
        group_id=f"g-{unique}",
    )


async def _opened(bootstrap: str, unique: str, partitions: list[int]) -> Producers:
    """Transactional producers with the partitions' transactions open (a same id fences)."""
    producers = _transactional(bootstrap, unique)
    await producers.open(partitions)
    return producers


@dataclass(frozen=True)
class OnePartition:
    """A one-partition output topic and the source partition whose offsets go with its records."""

    bootstrap: str
    unique: str
    out: str
    source: TopicPartition

    async def owner(self) -> Producers:
        """Producers that own partition 0 (the same transactional id each time: a later owner
        fences an earlier one)."""
        return await _opened(self.bootstrap, self.unique, [0])

    async def send_and_commit(self, producers: Producers, value: bytes) -> None:
        """One record to partition 0, committed with source offset 1, in one transaction."""
        await producers.send(self.out, 0, [(b"k", value, ())])
        await producers.commit({0: {self.source: 1}}, begin=False)

    async def committed_records(self) -> list[tuple[int, bytes]]:
        return await read_committed(self.bootstrap, self.out, 1)


@pytest.fixture
async def one_partition(kafka_bootstrap: str, unique: str) -> OnePartition:
    out, source = await out_and_source(kafka_bootstrap, unique, 1)
    return OnePartition(kafka_bootstrap, unique, out, TopicPartition(source, 0))


async def test_a_partitions_records_and_offsets_commit_together(
    kafka_bootstrap: str, unique: str
) -> None:
    out, source = await out_and_source(kafka_bootstrap, unique)
    producers = await _opened(kafka_bootstrap, unique, [0, 1])
    try:
        # Three records of 600 kB: more than one record batch, one await per batch.
        big = [(None, bytes([i]) * (600 * 1024), ()) for i in range(3)]
        sent = await producers.send(out, 0, big)
        assert len(sent) == 3
        assert sum(count for _, count in sent) == 3
        await producers.send(out, 1, [(b"k", b"small", ())])
        group = f"g-{unique}"
        offsets = {0: {TopicPartition(source, 0): 7}, 1: {TopicPartition(source, 1): 3}}
        await producers.commit(offsets, begin=True)
        values = await read_committed(kafka_bootstrap, out)
        assert [(p, len(v)) for p, v in values] == [(0, 600 * 1024)] * 3 + [(1, 5)]
        await committed_soon(kafka_bootstrap, group, source, {0: 7, 1: 3})
        assert MAX_BATCH_BYTES < 2 * 600 * 1024
    finally:
        await producers.close()


async def _takes_offsets(txn: Any, group: str) -> None:
    """Wait until the sender added `group`'s offsets partition to `txn`'s open transaction."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while loop.time() < deadline:
        if txn._txn_consumer_group == group:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the transaction never took the offsets of {group}")


async def test_a_transaction_takes_the_groups_offsets_once_it_holds_data(
    kafka_bootstrap: str, unique: str
) -> None:
    out, source = await out_and_source(kafka_bootstrap, unique, 2)
    group = f"g-{unique}"
    producers = await _opened(kafka_bootstrap, unique, [0, 1])
    try:
        await producers.send(out, 0, [(b"k", b"v", ())])
        # Partition 0's transaction adds the offsets partition before any commit; partition 1's,
        # which holds nothing, does not (the broker would abort it when it times out).
        txn = {p: producers._by_partition[p]._txn_manager for p in (0, 1)}
        await _takes_offsets(txn[0], group)
        assert txn[1]._txn_consumer_group is None
        # A partition whose records sent nothing commits its offsets the way aiokafka does.
        offsets = {0: {TopicPartition(source, 0): 4}, 1: {TopicPartition(source, 1): 9}}
        await producers.commit(offsets, begin=True)
        await committed_soon(kafka_bootstrap, group, source, {0: 4, 1: 9})
        assert await read_committed(kafka_bootstrap, out) == [(0, b"v")]
        # The next transaction starts without it, and takes it again with its first data.
        assert txn[0]._txn_consumer_group is None
        await producers.send(out, 1, [(b"k", b"w", ())])
        await _takes_offsets(txn[1], group)
        await producers.commit({1: {TopicPartition(source, 1): 10}}, begin=False)
        await committed_soon(kafka_bootstrap, group, source, {0: 4, 1: 10})
    finally:
        await producers.close()


async def test_what_was_not_committed_when_the_producers_close_is_aborted(
    one_partition: OnePartition,
) -> None:
    producers = await one_partition.owner()
    await producers.send(one_partition.out, 0, [(b"k", b"never", ())])
    await producers.close_partitions()
    # The next owner's producer, with the same id, aborts the open transaction and goes on.
    successor = await one_partition.owner()
    try:
        await one_partition.send_and_commit(successor, b"kept")
        assert await one_partition.committed_records() == [(0, b"kept")]
    finally:
        await successor.close()


async def test_a_partitions_next_owner_fences_the_previous_one(one_partition: OnePartition) -> None:
    old = await one_partition.owner()
    # The same transactional id: a zombie's records and offsets must not land.
    new = await one_partition.owner()
    try:
        with pytest.raises(KafkaError):  # at the send or at the commit, whichever notices first
            await one_partition.send_and_commit(old, b"zombie")
    finally:
        await old.close()
        await new.close()
    assert await one_partition.committed_records() == []


async def test_at_least_once_sends_with_one_idempotent_producer(
    kafka_bootstrap: str, unique: str
) -> None:
    out = f"t-{unique}.out"
    await make_topics(kafka_bootstrap, out, partitions=2)
    producers = Producers(bootstrap_servers=kafka_bootstrap, client_id="alo", transactional_id=None)
    try:
        await producers.open([0, 1])  # nothing to open: one producer for all partitions
        sent = await producers.send(out, 1, [(None, b"a", ()), (None, b"b", ())])
        await producers.flush()
        assert all(future.done() for future, _ in sent)
        assert await read_committed(kafka_bootstrap, out) == [(1, b"a"), (1, b"b")]
    finally:
        await producers.close()


async def test_a_coordinator_lookup_that_loses_its_connection_is_tried_again(
    one_partition: OnePartition, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A broker stopping closes the connection under a lookup; aiokafka 0.14 then stopped the
    # producer's sender for good (aiokafka #1151, seen in reliability scenario 2).
    group = f"g-{unique}"
    lookup = AIOKafkaClient.coordinator_lookup
    lost: list[str] = []

    async def closed_once(client: AIOKafkaClient, kind: CoordinationType, key: str) -> int:
        if kind == CoordinationType.GROUP and not lost:
            lost.append(key)
            raise KafkaConnectionError("Connection at the coordinator closed")
        node: int = await lookup(client, kind, key)
        return node

    monkeypatch.setattr(AIOKafkaClient, "coordinator_lookup", closed_once)
    producers = await one_partition.owner()
    try:
        await one_partition.send_and_commit(producers, b"kept")
    finally:
        await producers.close()
    assert lost == [group]  # the offsets' lookup lost its connection once, and went on
    assert await one_partition.committed_records() == [(0, b"kept")]
    source = one_partition.source.topic
    await committed_soon(one_partition.bootstrap, group, source, {0: 1})


async def test_a_commit_caught_by_a_broker_outage_looks_up_at_a_pace_and_lands(
    restartable_broker: RestartableBroker, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reliability scenario 12 once saw a worker use 2.3 s of CPU in a 24 s outage: a commit
    # pending through it looked its coordinator up every 20 ms (about 45 times a second).
    lookup = AIOKafkaClient.coordinator_lookup
    lookups: list[str] = []

    async def counted(client: AIOKafkaClient, kind: CoordinationType, key: str) -> int:
        lookups.append(key)
        node: int = await lookup(client, kind, key)
        return node

    monkeypatch.setattr(AIOKafkaClient, "coordinator_lookup", counted)
    bootstrap = restartable_broker.bootstrap
    out, source = await out_and_source(bootstrap, unique, 1)
    partition = OnePartition(bootstrap, unique, out, TopicPartition(source, 0))
    producers = await partition.owner()
    try:
        await producers.send(out, 0, [(b"k", b"kept", ())])
        await _takes_offsets(producers._by_partition[0]._txn_manager, f"g-{unique}")
        await restartable_broker.stop()
        before = len(lookups)
        commit = asyncio.create_task(producers.commit({0: {partition.source: 1}}, begin=False))
        await asyncio.sleep(OUTAGE_S)
        during = len(lookups) - before
        assert not commit.done()
        await restartable_broker.start()
        await asyncio.wait_for(commit, TIMEOUT_S)
    finally:
        await producers.close()
    # Unpaced, this outage took about 230 lookups; paced, one every LOOKUP_BACKOFF_MAX_S at most.
    assert 2 <= during <= OUTAGE_S / LOOKUP_BACKOFF_MAX_S + 8
    assert await partition.committed_records() == [(0, b"kept")]
    await committed_soon(bootstrap, f"g-{unique}", source, {0: 1})


async def test_one_transaction_per_worker_commits_every_partition_together(
    kafka_bootstrap: str, unique: str
) -> None:
    out, source = await out_and_source(kafka_bootstrap, unique)
    async with group_member(kafka_bootstrap, f"g-{unique}", source) as consumer:
        producers = per_worker(kafka_bootstrap, unique, lambda: as_member(consumer))
        await producers.open([0, 1])
        try:
            await producers.send(out, 0, [(b"k", b"a", ())])
            await producers.send(out, 1, [(b"k", b"b", ())])
            offsets = {0: {TopicPartition(source, 0): 4}, 1: {TopicPartition(source, 1): 7}}
            await producers.commit(offsets, begin=True)
        finally:
            await producers.close()
    assert await read_committed(kafka_bootstrap, out) == [(0, b"a"), (1, b"b")]
    await committed_soon(kafka_bootstrap, f"g-{unique}", source, {0: 4, 1: 7})


async def test_a_worker_whose_generation_passed_cannot_commit(
    kafka_bootstrap: str, unique: str
) -> None:
    group = f"g-{unique}"
    out, source = await out_and_source(kafka_bootstrap, unique, 1)
    async with group_member(kafka_bootstrap, group, source) as old:
        stale = as_member(old)  # what a worker that missed the rebalance still believes
    zombie = per_worker(kafka_bootstrap, unique, lambda: stale)
    await zombie.open([0])
    async with group_member(kafka_bootstrap, group, source) as new:
        assert as_member(new).generation > stale.generation
        try:
            await zombie.send(out, 0, [(b"k", b"zombie", ())])
            with pytest.raises(ProducerFenced, match=f"generation {stale.generation}"):
                await zombie.commit({0: {TopicPartition(source, 0): 9}}, begin=False)
        finally:
            await zombie.close()
        # The worker started again under its name aborts what the zombie left open.
        successor = per_worker(kafka_bootstrap, unique, lambda: as_member(new))
        await successor.open([0])
        try:
            await successor.send(out, 0, [(b"k", b"kept", ())])
            await successor.commit({0: {TopicPartition(source, 0): 1}}, begin=False)
        finally:
            await successor.close()
    assert await read_committed(kafka_bootstrap, out, 1) == [(0, b"kept")]
    await committed_soon(kafka_bootstrap, group, source, {0: 1})


async def test_a_new_owner_reads_offsets_only_once_their_transaction_ended(
    kafka_bootstrap: str, unique: str
) -> None:
    out, source = await out_and_source(kafka_bootstrap, unique, 1)
    async with group_member(kafka_bootstrap, f"g-{unique}", source) as consumer:
        coordinator: Any = consumer._coordinator
        fetch_stable_offsets(coordinator)
        producers = per_worker(kafka_bootstrap, unique, lambda: as_member(consumer))
        await producers.open([0])
        try:
            await producers.send(out, 0, [(b"k", b"v", ())])
            producer: Any = producers._worker_producer
            await producer.send_offsets_to_transaction(
                {TopicPartition(source, 0): 4}, f"g-{unique}"
            )
            fetch = asyncio.create_task(
                coordinator.fetch_committed_offsets([TopicPartition(source, 0)])
            )
            await asyncio.sleep(1.0)
            assert not fetch.done()  # the offsets are in a transaction that is still open
            await producer.commit_transaction()
            fetched = await asyncio.wait_for(fetch, TIMEOUT_S)
        finally:
            await producers.close()
    assert {tp.partition: o.offset for tp, o in fetched.items()} == {0: 4}
