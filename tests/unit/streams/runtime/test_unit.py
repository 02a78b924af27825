"""streams.runtime.unit: a partition's batch is applied in one step, in the guarantee's order."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from streams.runtime.table import MemoryPartition
from streams.runtime.unit import Unit, end_at_least_once, end_exactly_once


class DictStore(MemoryPartition):
    """The runtime's in-memory partition (the only one of one), keeping every write it got."""

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        self.data = dict(data or {})
        super().__init__(self, partition=0, partitions=1)
        self.writes: list[dict[bytes, bytes | None]] = []
        self.persisted: int | None = None

    def write(self, changes: Mapping[bytes, bytes | None]) -> None:
        self.writes.append(dict(changes))
        super().write(changes)

    def set_persisted_offset(self, offset: int) -> None:
        self.persisted = offset


class RecordingSender:
    """Keeps every batch; its futures resolve when `ack` is called (or at once with auto_ack)."""

    def __init__(self, log: list[str], *, auto_ack: bool = True) -> None:
        self.log = log
        self.auto_ack = auto_ack
        self.batches: list[tuple[str, int, list[tuple[bytes | None, bytes | None, Any]]]] = []
        self.pending: list[asyncio.Future[Any]] = []

    async def send(
        self, topic: str, partition: int, records: Sequence[tuple[bytes | None, bytes | None, Any]]
    ) -> list[tuple[asyncio.Future[Any], int]]:
        self.batches.append((topic, partition, list(records)))
        self.log.append(f"send {topic}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.auto_ack:
            future.set_result(None)
        else:
            self.pending.append(future)
        return [(future, len(records))]


def test_reads_see_the_units_own_changes_and_a_scan_sees_the_store_as_it_was() -> None:
    store = DictStore({b"a": b"1", b"b": b"2"})
    unit = Unit(3, store)
    scan = unit.scan()
    assert next(scan) == (b"a", b"1")  # the snapshot is taken at the first read
    unit.put(b"a", b"10")
    unit.put(b"b", None)
    unit.put(b"c", b"3")
    assert (unit.get(b"a"), unit.get(b"b"), unit.get(b"c")) == (b"10", None, b"3")
    store.write({b"d": b"4"})  # as a later unit's end would
    assert list(scan) == [(b"b", b"2")]
    assert store.data == {b"a": b"1", b"b": b"2", b"d": b"4"}  # the unit has not ended


async def test_exactly_once_sends_one_batch_per_topic_and_one_changelog_record_per_key() -> None:
    log: list[str] = []
    store, sender = DictStore(), RecordingSender(log)
    unit = Unit(5, store)
    unit.send("completed", b"s1", b"r1")
    unit.send("dlq", None, b"bad", [("reason", b"not_json")])
    unit.send("completed", b"s2", b"r2")
    unit.put(b"s1", b"pending")
    unit.put(b"s1", b"marker")  # the last value is what the changelog says
    unit.put(b"s2", None)
    ended = await end_exactly_once(unit, sender, "changelog")
    assert sender.batches == [
        ("completed", 5, [(b"s1", b"r1", ()), (b"s2", b"r2", ())]),
        ("dlq", 5, [(None, b"bad", [("reason", b"not_json")])]),
        ("changelog", 5, [(b"s1", b"marker", ()), (b"s2", None, ())]),
    ]
    assert store.writes == [{b"s1": b"marker", b"s2": None}]
    assert [count for _, count in ended.changelog] == [2]


async def test_at_least_once_records_the_step_only_after_the_outputs_are_acknowledged() -> None:
    log: list[str] = []
    store, sender = DictStore(), RecordingSender(log, auto_ack=False)
    unit = Unit(0, store)
    unit.send("completed", b"s1", b"r1")
    unit.put(b"s1", b"marker")
    ending = asyncio.ensure_future(end_at_least_once(unit, sender, "changelog"))
    await asyncio.sleep(0)
    assert log == ["send completed"]
    assert store.writes == []  # a crash now repeats the output; it cannot lose it
    for future in sender.pending:
        future.set_result(None)
    await ending
    assert log == ["send completed", "send changelog"]
    assert store.writes == [{b"s1": b"marker"}]


async def test_at_least_once_stops_at_a_failed_output() -> None:
    store, sender = DictStore(), RecordingSender([], auto_ack=False)
    unit = Unit(0, store)
    unit.send("completed", b"s1", b"r1")
    unit.put(b"s1", b"marker")
    ending = asyncio.ensure_future(end_at_least_once(unit, sender, "changelog"))
    await asyncio.sleep(0)
    sender.pending[0].set_exception(RuntimeError("broker gone"))
    with pytest.raises(RuntimeError):
        await ending
    assert store.writes == []
    assert [topic for topic, _, _ in sender.batches] == ["completed"]


async def test_a_unit_without_changes_or_outputs_sends_nothing() -> None:
    store, sender = DictStore({b"a": b"1"}), RecordingSender([])
    ended = await end_exactly_once(Unit(1, store), sender, "changelog")
    assert sender.batches == []
    assert store.writes == []
    assert ended.changelog == []
