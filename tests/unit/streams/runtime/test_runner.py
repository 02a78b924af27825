"""streams.runtime.runner: what is applied or refused, positions, and commits, without Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced, UnknownError
from aiokafka.structs import RecordMetadata

from streams.runtime.producers import SenderStopped
from streams.runtime.runner import Runner, Sources
from streams.runtime.unit import Unit
from streams.runtime.worker_txn import MembershipLost
from tests.unit.streams.runtime.test_unit import DictStore

SOURCES = Sources(raw="raw", ticks="ticks")


@dataclass(frozen=True)
class Rec:
    offset: int
    key: bytes | None = None
    value: bytes | None = b"v"
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class FakeProducers:
    transactional: bool
    scope: str = "partition"  # with transactional
    sent: list[tuple[str, int, int]] = field(default_factory=list)
    commits: list[tuple[dict[int, dict[TopicPartition, int]], bool]] = field(default_factory=list)
    flushed: int = 0
    closed: int = 0
    next_offset: int = 100
    refuse: BaseException | None = None  # raised by the next commit

    @property
    def transaction_scope(self) -> str:
        return self.scope if self.transactional else "none"

    async def open(self, partitions: Iterable[int]) -> None:
        return None

    async def send(
        self, topic: str, partition: int, records: Sequence[tuple[bytes | None, bytes | None, Any]]
    ) -> list[tuple[asyncio.Future[Any], int]]:
        self.sent.append((topic, partition, len(records)))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        tp = TopicPartition(topic, partition)
        future.set_result(RecordMetadata(topic, partition, tp, self.next_offset, -1, 0, 0))
        self.next_offset += len(records)
        return [(future, len(records))]

    async def commit(
        self, offsets: Mapping[int, Mapping[TopicPartition, int]], *, begin: bool
    ) -> None:
        if self.refuse is not None:
            refuse, self.refuse = self.refuse, None
            raise refuse
        self.commits.append(({p: dict(o) for p, o in offsets.items()}, begin))

    async def flush(self) -> None:
        self.flushed += 1

    async def close_partitions(self) -> None:
        self.closed += 1

    async def close(self) -> None:
        self.closed += 1


class EchoProcessor:
    """For each raw record: a table change and an output; counts what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, list[int], list[int]]] = []
        self.forgotten = 0

    def process(self, unit: Unit, raw: Sequence[Any], ticks: Sequence[Any]) -> None:
        self.seen.append((unit.partition, [r.offset for r in raw], [r.offset for r in ticks]))
        for record in raw:
            unit.put(b"k%d" % record.offset, b"state")
            unit.send("out", None, b"o%d" % record.offset)

    def forget(self) -> None:
        self.forgotten += 1


@dataclass
class Parts:
    runner: Runner
    producers: FakeProducers
    processor: EchoProcessor
    stores: dict[int, DictStore]
    held_back: list[tuple[str, int]]
    consumer_commits: list[dict[TopicPartition, int]]
    commit_sizes: list[int]
    dropped: list[tuple[str, list[int], bool]]


def _parts(transactional: bool, scope: str = "partition") -> Parts:
    producers = FakeProducers(transactional, scope)
    stores: dict[int, DictStore] = {}
    held_back: list[tuple[str, int]] = []
    consumer_commits: list[dict[TopicPartition, int]] = []
    commit_sizes: list[int] = []
    dropped: list[tuple[str, list[int], bool]] = []

    async def on_dropped(reason: str, partitions: list[int], rejoin: bool) -> None:
        dropped.append((reason, partitions, rejoin))

    async def commit_offsets(offsets: Mapping[TopicPartition, int]) -> bool:
        consumer_commits.append(dict(offsets))
        return True

    runner = Runner(
        sources=SOURCES,
        changelog_topic="changelog",
        stores=lambda p: stores.setdefault(p, DictStore()),
        producers=producers,
        commit_offsets=commit_offsets,
        on_held_back=lambda reason, n: held_back.append((reason, n)),
        on_commit=lambda seconds, partitions: commit_sizes.append(partitions),
        on_dropped=on_dropped,
    )
    processor = EchoProcessor()
    runner.serve(processor)
    return Parts(
        runner, producers, processor, stores, held_back, consumer_commits, commit_sizes, dropped
    )


RAW0, TICKS0, RAW1 = TopicPartition("raw", 0), TopicPartition("ticks", 0), TopicPartition("raw", 1)


@pytest.fixture(params=[True, False], ids=["exactly_once", "at_least_once"])
def parts(request: pytest.FixtureRequest) -> Parts:
    return _parts(bool(request.param))


async def test_nothing_is_applied_before_the_generation_was_sought(parts: Parts) -> None:
    back = await parts.runner.apply({RAW0: [Rec(5), Rec(6)]}, {RAW0: 7}, fetched_in=3, current=3)
    assert back == {RAW0: 5}  # go back to the first refused record
    assert parts.processor.seen == []
    assert parts.held_back == [("not_ready", 2)]
    assert not parts.runner.ready


async def test_a_fetch_is_applied_per_partition_raw_and_ticks_together(parts: Parts) -> None:
    runner = parts.runner
    runner.on_seek(3, {RAW0: 5, TICKS0: 0, RAW1: 9, TopicPartition("other", 0): 1})
    assert runner.ready
    back = await runner.apply(
        {RAW0: [Rec(5), Rec(6)], TICKS0: [Rec(0)], RAW1: [Rec(9)]},
        # The consumer's positions after the fetch: raw 0 past a commit marker at 7.
        {RAW0: 8, TICKS0: 1, RAW1: 10},
        fetched_in=3,
        current=3,
    )
    assert back == {}
    assert parts.processor.seen == [(0, [5, 6], [0]), (1, [9], [])]
    assert {p: s.data for p, s in parts.stores.items()} == {
        0: {b"k5": b"state", b"k6": b"state"},
        1: {b"k9": b"state"},
    }
    assert await runner.commit(begin=True)
    expected = {RAW0: 8, TICKS0: 1, RAW1: 10}
    if parts.producers.transactional:
        assert parts.producers.commits == [({0: {RAW0: 8, TICKS0: 1}, 1: {RAW1: 10}}, True)]
        assert parts.consumer_commits == []
    else:
        assert parts.producers.flushed == 1
        assert parts.consumer_commits == [expected]
    assert dict(runner.committed) == expected
    # The store holds the table up to its last changelog record: a restart restores the rest.
    # (The fake broker numbers every record it takes, outputs included: out 100-101, changelog
    # 102-103 on partition 0; out 104, changelog 105 on partition 1.)
    assert parts.stores[0].persisted == 103
    assert parts.stores[1].persisted == 105
    assert not await runner.commit(begin=True)  # nothing new
    assert parts.commit_sizes == [2]  # one commit, of two partitions; the empty one is not one


async def test_work_of_an_older_or_revoked_generation_is_refused(parts: Parts) -> None:
    runner = parts.runner
    runner.on_seek(3, {RAW0: 0})
    assert await runner.apply({RAW0: [Rec(0)]}, {RAW0: 1}, fetched_in=2, current=3) == {RAW0: 0}
    async with runner.gate.lock:
        runner.revoke(3)
        await runner.commit(begin=False)
        await runner.release()
    assert await runner.apply({RAW0: [Rec(0)]}, {RAW0: 1}, fetched_in=3, current=3) == {RAW0: 0}
    assert parts.processor.seen == []
    assert parts.processor.forgotten == 1
    assert parts.producers.closed == 1
    assert [reason for reason, _ in parts.held_back] == ["rebalancing", "not_ready"]


async def test_the_revocation_commits_what_was_processed_without_a_new_transaction() -> None:
    parts = _parts(transactional=True)
    runner = parts.runner
    runner.on_seek(3, {RAW0: 0})
    await runner.apply({RAW0: [Rec(0)]}, {RAW0: 1}, fetched_in=3, current=3)
    async with runner.gate.lock:
        runner.revoke(3)
        assert await runner.commit(begin=False)
        await runner.release()
    assert parts.producers.commits == [({0: {RAW0: 1}}, False)]
    assert runner.committed == {}


@pytest.mark.parametrize(
    ("scope", "fenced", "reason"),
    [
        ("worker", MembershipLost("the group refused the offsets"), "membership_lost"),
        ("worker", ProducerFenced(), "fenced"),  # the broker aborted the transaction at its timeout
        ("worker", SenderStopped(UnknownError()), "sender_stopped"),  # EndTxn's unexpected answer
        # A zombie: the partition's next owner opened its transactional id while this worker was
        # paused past its session timeout.
        ("partition", ProducerFenced(), "fenced"),
        ("partition", SenderStopped(UnknownError()), "sender_stopped"),
    ],
)
async def test_a_fenced_transaction_drops_the_uncommitted_work_and_runs_on(
    scope: str, fenced: ProducerFenced, reason: str
) -> None:
    parts = _parts(transactional=True, scope=scope)
    runner = parts.runner
    runner.on_seek(3, {RAW0: 0, RAW1: 0, TICKS0: 0})
    await runner.apply({RAW0: [Rec(0)]}, {RAW0: 1}, fetched_in=3, current=3)
    async with runner.gate.lock:
        assert await runner.commit(begin=True)  # partition 0's k0 is committed
    await runner.apply(
        {RAW1: [Rec(0), Rec(1)], TICKS0: [Rec(0)]}, {RAW1: 2, TICKS0: 1}, fetched_in=3, current=3
    )
    parts.producers.refuse = fenced
    async with runner.gate.lock:
        assert await runner.commit(begin=True) == {}  # no error: the worker runs on
    # Partition 1's store held changes of the aborted transaction: cleared, to be restored from
    # the changelog. Partition 0's ticks changed nothing: its committed state stays.
    assert parts.stores[1].data == {}
    assert parts.stores[0].data == {b"k0": b"state"}
    assert parts.dropped == [(reason, [1], True)]  # and the consumer rejoins
    assert parts.producers.closed == 1  # the transaction aborts
    assert parts.processor.forgotten == 1
    assert runner.committed == {}
    assert not runner.ready
    # Nothing more is applied until the partitions are sought again, from the committed offsets.
    assert await runner.apply({RAW1: [Rec(2)]}, {RAW1: 3}, fetched_in=3, current=3) == {RAW1: 2}
    runner.on_seek(4, {RAW0: 1, RAW1: 0, TICKS0: 0})
    await runner.apply({RAW1: [Rec(0), Rec(1)]}, {RAW1: 2}, fetched_in=4, current=4)
    async with runner.gate.lock:
        assert await runner.commit(begin=True) == {RAW1: 2}
    assert parts.stores[1].data == {b"k0": b"state", b"k1": b"state"}


async def test_a_fence_met_by_a_unit_drops_the_whole_fetch() -> None:
    parts = _parts(transactional=True, scope="worker")
    runner = parts.runner
    runner.on_seek(3, {RAW0: 0, RAW1: 0})
    send = parts.producers.send

    async def fenced_on_partition_1(topic: str, partition: int, records: Any) -> Any:
        if partition == 1:
            raise ProducerFenced()
        return await send(topic, partition, records)

    parts.producers.send = fenced_on_partition_1  # type: ignore[method-assign]
    back = await runner.apply(
        {RAW0: [Rec(0)], RAW1: [Rec(5)]}, {RAW0: 1, RAW1: 6}, fetched_in=3, current=3
    )
    assert back == {RAW0: 0, RAW1: 5}  # read again once sought: nothing of it stays applied
    assert parts.stores[0].data == {}  # partition 0's unit was applied, then cleared
    assert parts.dropped == [("fenced", [0], True)]
    assert not runner.ready


async def test_a_membership_refused_at_the_revocation_leaves_the_rejoin_to_it() -> None:
    parts = _parts(transactional=True, scope="worker")
    runner = parts.runner
    runner.on_seek(3, {RAW0: 0})
    await runner.apply({RAW0: [Rec(0)]}, {RAW0: 1}, fetched_in=3, current=3)
    parts.producers.refuse = MembershipLost("lost its membership of the group")
    async with runner.gate.lock:
        runner.revoke(3)
        assert await runner.commit(begin=False) == {}
        await runner.release()
    assert parts.stores[0].data == {}
    assert parts.dropped == [("membership_lost", [0], False)]


async def test_a_commit_waits_for_the_unit_in_hand() -> None:
    parts = _parts(transactional=True)
    runner = parts.runner
    runner.on_seek(3, {RAW0: 0})
    release = asyncio.Event()
    order: list[str] = []

    async def slow_send(topic: str, partition: int, records: Sequence[Any]) -> list[Any]:
        order.append(f"send {topic}")
        await release.wait()
        return []

    parts.producers.send = slow_send  # type: ignore[method-assign]
    applying = asyncio.ensure_future(runner.apply({RAW0: [Rec(0)]}, {RAW0: 1}, 3, 3))
    await asyncio.sleep(0)

    async def commit() -> None:
        async with runner.gate.lock:
            order.append("commit")
            await runner.commit(begin=True)

    committing = asyncio.ensure_future(commit())
    await asyncio.sleep(0.01)
    assert order == ["send out"]  # the commit waits: a transaction ends between units
    release.set()
    await asyncio.gather(applying, committing)
    assert order == ["send out", "send changelog", "commit"]
    assert parts.producers.commits == [({0: {RAW0: 1}}, True)]


async def test_progress_reports_lag_from_the_committed_offset_and_stalls() -> None:
    runner = _parts(transactional=True).runner
    runner.on_seek(3, {RAW0: 10, RAW1: 4})
    ends = {RAW0: 11, RAW1: 4}
    first = runner.progress(ends, now=100.0)
    assert [(p.partition, p.committed, p.end, p.stalled_s) for p in first] == [
        (0, 10, 11, 0.0),
        (1, 4, 4, 0.0),
    ]
    later = runner.progress(ends, now=190.0)
    assert [(p.partition, p.stalled_s) for p in later] == [(0, 90.0), (1, 0.0)]
