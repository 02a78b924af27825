"""The shell around the core: table writes, outputs, DLQ and tick-driven expiry, without Kafka."""

from __future__ import annotations

import json

import orjson
import pytest

from streams import core
from streams.expiry import Tick, encode_tick
from streams.metrics import WorkerMetrics
from streams.processor import (
    OutputTopics,
    SessionProcessor,
    Sink,
    headers_of,
    partition_for_key,
)
from tests.unit.streams import samples

TOPICS = OutputTopics(completed="completed", incomplete="incomplete", dlq="dlq")
TTL_MS = 10_000
GRACE_MS = 1_000
SETTLE_MS = 2_000
PARTITIONS = 4
RECEIVED_AT = "2026-11-27T03:00:00.000Z"
RECEIVED_AT_MS = 1_795_748_400_000


class DictTable(dict[bytes, bytes]):
    """The table's mapping interface, with a count of writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.changelog = Changelog()

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.writes += 1
        super().__delitem__(key)


class Changelog(list[tuple[bytes, bytes | None, int]]):
    """The table's changes as the processor records them in the transaction."""

    async def __call__(self, key: bytes, value: bytes | None, partition: int) -> None:
        self.append((key, value, partition))


class ListSink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, int, list[tuple[str, bytes]]]] = []

    async def __call__(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int,
        headers: list[tuple[str, bytes]],
    ) -> None:
        self.sent.append((topic, key, value, partition, headers))

    def on(self, topic: str) -> list[dict[str, object]]:
        # The stdlib reads integers of any size exactly (the samples carry a 20-digit one).
        return [json.loads(v) for t, _, v, _, _ in self.sent if t == topic]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    now = [1_700_000_000_000]
    monkeypatch.setattr("streams.processor.now_ms", lambda: now[0])
    return now


def _processor(table: DictTable, sink: Sink, metrics: WorkerMetrics) -> SessionProcessor:
    return SessionProcessor(
        table,
        table.changelog,
        sink,
        TOPICS,
        metrics,
        ttl_ms=TTL_MS,
        partitions=PARTITIONS,
        grace_ms=GRACE_MS,
        settle_ms=SETTLE_MS,
    )


@pytest.fixture
def parts() -> tuple[SessionProcessor, DictTable, ListSink, WorkerMetrics]:
    table, sink, metrics = DictTable(), ListSink(), WorkerMetrics(max_intents=5)
    return _processor(table, sink, metrics), table, sink, metrics


async def _pending_created(processor: SessionProcessor) -> tuple[dict[str, object], bytes, int]:
    """One session.created on its partition (offset 0): the event, its key and partition."""
    created = samples.session_created()
    key = str(created["id"]).encode()
    partition = partition_for_key(key, PARTITIONS)
    body, headers = _record(created, "msg_c")
    await processor.on_raw(key, body, headers, partition=partition, offset=0)
    return created, key, partition


def _tick(at_ms: int, raw_end: int | None) -> bytes:
    return encode_tick(Tick(at_ms=at_ms, raw_end=raw_end))


def _record(event: dict[str, object], message_id: str) -> tuple[bytes, dict[str, bytes]]:
    return samples.to_bytes(event), {
        "message-id": message_id.encode(),
        "event-type": str(event["eventType"]).encode(),
        "received-at": RECEIVED_AT.encode(),
    }


async def test_a_pair_completes_once_with_one_table_write_per_event(
    parts: tuple[SessionProcessor, DictTable, ListSink, WorkerMetrics], clock: list[int]
) -> None:
    processor, table, sink, metrics = parts
    created = samples.session_created()
    ended = samples.session_ended(session_id=str(created["id"]))
    key = str(created["id"]).encode()
    body, headers = _record(ended, "msg_2")
    await processor.on_raw(key, body, headers, partition=1, offset=1)
    body_c, headers_c = _record(created, "msg_1")
    await processor.on_raw(key, body_c, headers_c, partition=1, offset=2)
    await processor.on_raw(key, body_c, headers_c, partition=1, offset=3)  # a retry: nothing
    assert table.writes == 2
    # Each change is also recorded for the changelog, in the event's partition.
    assert [(k, v, p) for k, v, p in table.changelog] == [
        (key, v, 1) for v in (table.changelog[0][1], table[key])
    ]
    [record] = sink.on("completed")
    assert record["sessionId"] == created["id"]
    assert record["analysis"] == ended["analysis"]
    assert all(partition == 1 for *_, partition, _ in sink.sent)
    assert isinstance(core.decode_state(table[key]), core.CompletionMarker)
    assert metrics.duplicates.labels("session.created", "retry")._value.get() == 1
    assert metrics.pending._value.get() == 0


async def test_outputs_are_sent_before_the_table_records_the_step(clock: list[int]) -> None:
    # At-least-once: a crash between the two repeats the output instead of losing it.
    table, sink = DictTable(), ListSink()
    changes_when_sent: list[int] = []

    async def sink_in_order(
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int,
        headers: list[tuple[str, bytes]],
    ) -> None:
        changes_when_sent.append(len(table.changelog))
        await sink(topic, key, value, partition, headers)

    processor = _processor(table, sink_in_order, WorkerMetrics(max_intents=5))
    created = samples.session_created()
    ended = samples.session_ended(session_id=str(created["id"]))
    key = str(created["id"]).encode()
    for offset, (event, message_id) in enumerate([(created, "msg_1"), (ended, "msg_2")]):
        body, headers = _record(event, message_id)
        await processor.on_raw(key, body, headers, partition=1, offset=offset)
    assert len(sink.on("completed")) == 1
    assert changes_when_sent == [1]  # the pending half only: the marker came after the output
    assert len(table.changelog) == 2


async def test_undecodable_records_go_to_the_dlq_with_reason_and_stage(
    parts: tuple[SessionProcessor, DictTable, ListSink, WorkerMetrics], clock: list[int]
) -> None:
    processor, table, sink, _ = parts
    headers = {"message-id": b"msg_x", "event-type": b"session.created"}
    await processor.on_raw(b"k", b"{not json", headers, partition=2, offset=4)
    await processor.on_raw(None, None, headers, partition=3, offset=5)
    assert [(t, v, p) for t, _, v, p, _ in sink.sent] == [("dlq", b"{not json", 2), ("dlq", b"", 3)]
    first_headers = dict(sink.sent[0][4])
    assert first_headers["stage"] == b"streams"
    assert first_headers["reason"] == b"not_json"
    assert first_headers["message-id"] == b"msg_x"
    assert table.writes == 0


async def test_other_event_types_are_counted_and_leave_no_state(
    parts: tuple[SessionProcessor, DictTable, ListSink, WorkerMetrics], clock: list[int]
) -> None:
    processor, table, sink, metrics = parts
    body = orjson.dumps({"eventType": "usage.updated", "id": "u1", "period": {}})
    await processor.on_raw(b"u1", body, {"message-id": b"msg_u"}, partition=0, offset=6)
    body = orjson.dumps({"eventType": "brand.new", "id": "x"})
    await processor.on_raw(b"x", body, {"message-id": b"msg_n"}, partition=0, offset=7)
    assert table == {}
    assert sink.sent == []
    assert metrics.events.labels("usage.updated")._value.get() == 1
    assert metrics.events.labels("other")._value.get() == 1


async def test_ticks_expire_due_halves_once_and_only_on_their_partition(
    parts: tuple[SessionProcessor, DictTable, ListSink, WorkerMetrics], clock: list[int]
) -> None:
    processor, table, sink, metrics = parts
    created = samples.session_created()
    key = str(created["id"]).encode()
    partition = partition_for_key(key, PARTITIONS)
    body, headers = _record(created, "msg_1")
    await processor.on_raw(key, body, headers, partition=partition, offset=0)
    # Due once the tick, less the grace, reaches received-at + TTL.
    due = RECEIVED_AT_MS + TTL_MS + GRACE_MS
    other = (partition + 1) % PARTITIONS
    await processor.on_tick(other, _tick(due, 0), assigned=range(PARTITIONS))
    await processor.on_tick(partition, _tick(due - 1, 1), assigned=range(PARTITIONS))
    assert sink.sent == []
    await processor.on_tick(partition, _tick(due, 1), assigned=range(PARTITIONS))
    await processor.on_tick(partition, _tick(due + TTL_MS, 1), assigned=range(PARTITIONS))
    [record] = sink.on("incomplete")
    assert record["reason"] == "created_without_ended"
    assert record["event"] == created
    assert record["expiredAt"] == "2023-11-14T22:13:20.000Z"  # the worker's clock
    assert table == {}
    assert metrics.pending._value.get() == 0


async def test_a_tick_read_before_its_backlog_expires_nothing(
    parts: tuple[SessionProcessor, DictTable, ListSink, WorkerMetrics], clock: list[int]
) -> None:
    # The stall defect: a tick made after the partner arrived, read before the partner.
    processor, _, sink, _ = parts
    created = samples.session_created()
    ended = samples.session_ended(session_id=str(created["id"]))
    key = str(created["id"]).encode()
    partition = partition_for_key(key, PARTITIONS)
    body, headers = _record(created, "msg_c")
    await processor.on_raw(key, body, headers, partition=partition, offset=0)
    late = RECEIVED_AT_MS + 10 * TTL_MS
    await processor.on_tick(partition, _tick(late, 2), assigned=range(PARTITIONS))
    clock[0] += SETTLE_MS - 1  # the end (2) and the position (1) stand, but not for long
    await processor.on_tick(partition, _tick(late, 2), assigned=range(PARTITIONS))
    assert sink.sent == []
    body, headers = _record(ended, "msg_e")
    await processor.on_raw(key, body, headers, partition=partition, offset=1)
    [record] = sink.on("completed")
    assert record["sessionId"] == created["id"]


async def test_offsets_without_records_count_as_processed_once_they_stand_still(
    parts: tuple[SessionProcessor, DictTable, ListSink, WorkerMetrics], clock: list[int]
) -> None:
    # A transaction's commit marker takes an offset no record is read from.
    processor, _, sink, _ = parts
    created, _key, partition = await _pending_created(processor)
    due = RECEIVED_AT_MS + TTL_MS + GRACE_MS
    await processor.on_tick(partition, _tick(due, 2), assigned=range(PARTITIONS))
    clock[0] += SETTLE_MS
    await processor.on_tick(partition, _tick(due, 3), assigned=range(PARTITIONS))  # end moved
    clock[0] += SETTLE_MS - 1
    await processor.on_tick(partition, _tick(due, 3), assigned=range(PARTITIONS))
    assert sink.sent == []
    clock[0] += 1
    await processor.on_tick(partition, _tick(due, 3), assigned=range(PARTITIONS))
    [record] = sink.on("incomplete")
    assert record["sessionId"] == created["id"]


async def test_ticks_without_an_end_or_unreadable_expire_nothing(
    parts: tuple[SessionProcessor, DictTable, ListSink, WorkerMetrics], clock: list[int]
) -> None:
    processor, table, sink, _ = parts
    _created, _key, partition = await _pending_created(processor)
    far = str(RECEIVED_AT_MS + 100 * TTL_MS).encode()
    for value in (far, b"not a tick", None, _tick(RECEIVED_AT_MS + 100 * TTL_MS, None)):
        await processor.on_tick(partition, value, assigned=range(PARTITIONS))
        clock[0] += SETTLE_MS
    assert sink.sent == []
    assert len(table) == 1


async def test_after_a_rebalance_the_index_is_rebuilt_from_the_table(
    parts: tuple[SessionProcessor, DictTable, ListSink, WorkerMetrics], clock: list[int]
) -> None:
    processor, table, sink, metrics = parts
    created = [samples.session_created() for _ in range(12)]
    for offset, event in enumerate(created):
        key = str(event["id"]).encode()
        body, headers = _record(event, f"msg_{event['id']}")
        partition = partition_for_key(key, PARTITIONS)
        await processor.on_raw(key, body, headers, partition=partition, offset=offset)
    processor.on_rebalance()  # the in-memory index and positions are gone; the table is not
    owned = {0, 1}
    due = _tick(RECEIVED_AT_MS + TTL_MS + GRACE_MS, len(created))
    for partition in range(PARTITIONS):
        # Nothing read since the rebalance: the position is unknown until the end stands still.
        await processor.on_tick(partition, due, assigned=owned)
    assert sink.sent == []
    clock[0] += SETTLE_MS
    for partition in range(PARTITIONS):
        await processor.on_tick(partition, due, assigned=owned)
    expected = {
        str(e["id"])
        for e in created
        if partition_for_key(str(e["id"]).encode(), PARTITIONS) in owned
    }
    assert {str(r["sessionId"]) for r in sink.on("incomplete")} == expected
    assert metrics.pending._value.get() == 0
    assert len(table) == len(created) - len(expected)


def test_headers_of_accepts_kafka_lists_mappings_and_none() -> None:
    assert headers_of(None) == {}
    assert headers_of([("a", b"1"), ("b", None)]) == {"a": b"1"}
    assert headers_of({"a": b"1"}) == {"a": b"1"}


def test_partition_for_key_matches_kafkas_default_partitioner() -> None:
    # Values from Kafka's Java client (Utils.murmur2) for these keys and 12 partitions.
    from aiokafka.partitioner import DefaultPartitioner

    keys = [f"key-{i}".encode() for i in range(50)]
    all_partitions = list(range(12))
    for key in keys:
        assert partition_for_key(key, 12) == DefaultPartitioner()(
            key, all_partitions, all_partitions
        )
