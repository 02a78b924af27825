"""The processor's tick-driven expiry and its index, rebuilt after a rebalance, without Kafka."""

from __future__ import annotations

from typing import Final

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionflow.raw_record import partition_for_key
from streams import state_codec
from streams.expiry import Tick, encode_tick
from streams.metrics import WorkerMetrics
from streams.processor import SessionProcessor
from tests.unit.streams import samples
from tests.unit.streams.processing import (
    GRACE_MS,
    PARTITIONS,
    RECEIVED_AT_MS,
    SETTLE_MS,
    TOPICS,
    TTL_MS,
    DictUnit,
    Rec,
    rec,
)


def _tick(offset: int, at_ms: int, raw_end: int | None) -> Rec:
    return Rec(offset, None, encode_tick(Tick(at_ms=at_ms, raw_end=raw_end)), [])


def _unit_for(table: dict[bytes, bytes], event: dict[str, object]) -> DictUnit:
    return DictUnit(table, partition_for_key(str(event["id"]).encode(), PARTITIONS))


def _waiting_half(
    processor: SessionProcessor, table: dict[bytes, bytes] | None = None
) -> tuple[dict[str, object], DictUnit]:
    """A session.created read into its partition's unit: a half that waits for its pair."""
    created = samples.session_created()
    unit = _unit_for({} if table is None else table, created)
    processor.process(unit, [rec(0, created, "msg_c")], ())
    return created, unit


def test_ticks_expire_due_halves_once_and_only_on_their_partition(
    processor: SessionProcessor, metrics: WorkerMetrics, clock: list[int]
) -> None:
    table: dict[bytes, bytes] = {}
    created, unit = _waiting_half(processor, table)
    # Due once the tick, less the grace, reaches received-at + TTL.
    due = RECEIVED_AT_MS + TTL_MS + GRACE_MS
    other = DictUnit(table, (unit.partition + 1) % PARTITIONS)
    processor.process(other, (), [_tick(0, due, 0)])
    processor.process(unit, (), [_tick(0, due - 1, 1)])
    assert unit.sent == other.sent == []
    processor.process(unit, (), [_tick(1, due, 1), _tick(2, due + TTL_MS, 1)])
    [record] = unit.on("incomplete")
    assert record["reason"] == "created_without_ended"
    assert record["event"] == created
    assert record["expiredAt"] == "2023-11-14T22:13:20.000Z"  # the worker's clock
    assert table == {}
    assert metrics.pending._value.get() == 0


def test_a_tick_read_before_its_backlog_expires_nothing(
    processor: SessionProcessor, clock: list[int]
) -> None:
    # The stall defect: a tick made after the partner arrived, read before the partner.
    created, unit = _waiting_half(processor)
    ended = samples.session_ended(session_id=str(created["id"]))
    late = RECEIVED_AT_MS + 10 * TTL_MS
    processor.process(unit, (), [_tick(0, late, 2)])
    clock[0] += SETTLE_MS - 1  # the end (2) and the position (1) stand, but not for long
    processor.process(unit, (), [_tick(1, late, 2)])
    assert unit.sent == []
    processor.process(unit, [rec(1, ended, "msg_e")], ())
    [record] = unit.on("completed")
    assert record["sessionId"] == created["id"]


def test_a_tick_in_the_same_unit_sees_the_webhooks_before_it(
    processor: SessionProcessor, clock: list[int]
) -> None:
    # Webhooks first, then ticks: a session completed by this unit's webhook is not expired by
    # this unit's tick, and a pending half it wrote is in the index the tick rebuilds.
    created = samples.session_created()
    ended = samples.session_ended(session_id=str(created["id"]))
    lone = samples.session_created()
    table: dict[bytes, bytes] = {}
    unit = _unit_for(table, created)
    due = RECEIVED_AT_MS + TTL_MS + GRACE_MS
    processor.process(unit, [rec(0, created, "c"), rec(1, ended, "e")], [_tick(0, due, 2)])
    assert len(unit.on("completed")) == 1
    assert unit.on("incomplete") == []
    lone_unit = _unit_for(table, lone)
    processor.process(lone_unit, [rec(2, lone, "l")], [_tick(1, due, 3)])
    assert [r["sessionId"] for r in lone_unit.on("incomplete")] == [lone["id"]]


def test_offsets_without_records_count_as_processed_once_they_stand_still(
    processor: SessionProcessor, clock: list[int]
) -> None:
    # A transaction's commit marker takes an offset no record is read from.
    created, unit = _waiting_half(processor)
    due = RECEIVED_AT_MS + TTL_MS + GRACE_MS
    processor.process(unit, (), [_tick(0, due, 2)])
    clock[0] += SETTLE_MS
    processor.process(unit, (), [_tick(1, due, 3)])  # the end moved
    clock[0] += SETTLE_MS - 1
    processor.process(unit, (), [_tick(2, due, 3)])
    assert unit.sent == []
    clock[0] += 1
    processor.process(unit, (), [_tick(3, due, 3)])
    [record] = unit.on("incomplete")
    assert record["sessionId"] == created["id"]


def test_ticks_without_an_end_or_unreadable_expire_nothing(
    processor: SessionProcessor, clock: list[int]
) -> None:
    _, unit = _waiting_half(processor)
    far = RECEIVED_AT_MS + 100 * TTL_MS
    for value in (str(far).encode(), b"not a tick", None, encode_tick(Tick(far, None))):
        processor.process(unit, (), [Rec(0, None, value, [])])
        clock[0] += SETTLE_MS
    assert unit.sent == []
    assert len(unit.table) == 1


def test_after_the_partitions_move_each_index_is_rebuilt_from_its_table(
    processor: SessionProcessor, metrics: WorkerMetrics, clock: list[int]
) -> None:
    created = [samples.session_created() for _ in range(12)]
    table: dict[bytes, bytes] = {}
    for offset, event in enumerate(created):
        processor.process(_unit_for(table, event), [rec(offset, event, f"msg_{offset}")], ())
    processor.forget()  # the in-memory index and positions are gone; the table is not
    assert metrics.pending._value.get() == 0
    owned = {0, 1}
    units = {p: DictUnit(table, p) for p in owned}
    early = _tick(0, RECEIVED_AT_MS, len(created))
    for unit in units.values():
        # The index is rebuilt at the partition's first unit; nothing read since, so the position
        # is unknown until the end stands still.
        processor.process(unit, (), [early])
    clock[0] += SETTLE_MS
    for unit in units.values():
        processor.process(unit, (), [early])  # nothing is due yet
    assert all(u.sent == [] for u in units.values())
    # Each index rebuilt from its partition's table counts its pending halves.
    assert metrics.pending._value.get() == sum(len(u.items()) for u in units.values())
    due = _tick(1, RECEIVED_AT_MS + TTL_MS + GRACE_MS, len(created))
    for unit in units.values():
        processor.process(unit, (), [due])
    expected = {
        str(e["id"])
        for e in created
        if partition_for_key(str(e["id"]).encode(), PARTITIONS) in owned
    }
    assert {str(r["sessionId"]) for u in units.values() for r in u.on("incomplete")} == expected
    assert metrics.pending._value.get() == 0
    assert len(table) == len(created) - len(expected)


def _sessions_on(partition: int, count: int) -> list[dict[str, object]]:
    """`count` session.created events whose sessions live on `partition`."""
    found: list[dict[str, object]] = []
    while len(found) < count:
        event = samples.session_created()
        if partition_for_key(str(event["id"]).encode(), PARTITIONS) == partition:
            found.append(event)
    return found


def _pending_in(unit: DictUnit) -> set[str]:
    """The sessions whose stored state is a half waiting for its pair."""
    return {
        key.decode()
        for key, stored in unit.items()
        if state_codec.stored_deadline_ms(stored, key.decode(), TTL_MS)[1]
    }


def test_a_large_partitions_index_is_rebuilt_a_slice_per_unit_and_expires_nothing_before(
    metrics: WorkerMetrics, clock: list[int]
) -> None:
    processor = SessionProcessor(
        TOPICS, metrics, ttl_ms=TTL_MS, grace_ms=GRACE_MS, settle_ms=SETTLE_MS, scan_slice=3
    )
    created = _sessions_on(0, 9)  # three slices of three, then an empty one ends the scan
    unit = DictUnit({}, 0)
    processor.process(unit, [rec(i, e, f"c{i}") for i, e in enumerate(created)], ())
    processor.forget()
    due = RECEIVED_AT_MS + TTL_MS + GRACE_MS
    last = created[-1]  # the scan reads it last: it pairs before its slice is read
    newcomer = _sessions_on(0, 1)[0]
    units = [
        [rec(9, samples.session_ended(session_id=str(last["id"])), "e")],
        [rec(10, newcomer, "n")],
        [],
    ]
    for offset, raw in enumerate(units):
        processor.process(unit, raw, [_tick(offset, due, 11)])
        assert not processor.index.built(0)
        assert unit.on("incomplete") == []  # the index is not whole: nothing expires yet
    assert [r["sessionId"] for r in unit.on("completed")] == [last["id"]]
    processor.process(unit, (), [_tick(3, due, 11)])  # the fourth slice is short: built
    assert processor.index.built(0)
    waiting = {str(e["id"]) for e in [*created[:-1], newcomer]}
    assert metrics.pending._value.get() == 0
    assert {str(r["sessionId"]) for r in unit.on("incomplete")} == waiting
    assert _pending_in(unit) == set()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_an_index_rebuilt_while_its_table_changes_counts_and_expires_exactly_the_pending(
    clock: list[int], data: st.DataObject
) -> None:
    clock[0] = 1_700_000_000_000
    metrics = WorkerMetrics(max_intents=5)
    slice_size = data.draw(st.integers(1, 4), label="slice")
    processor = SessionProcessor(
        TOPICS,
        metrics,
        ttl_ms=TTL_MS,
        grace_ms=GRACE_MS,
        settle_ms=SETTLE_MS,
        scan_slice=slice_size,
    )
    created = _SESSION_POOL
    halves = [
        *((e, f"c-{e['id']}") for e in created),
        *((samples.session_ended(session_id=str(e["id"])), f"e-{e['id']}") for e in created),
    ]
    picks = st.lists(st.sampled_from(halves), max_size=3)
    unit = DictUnit({}, 0)
    offset = 0

    def apply(raw: list[tuple[dict[str, object], str]]) -> None:
        nonlocal offset
        processor.process(unit, [rec(offset + i, e, m) for i, (e, m) in enumerate(raw)], ())
        offset += len(raw)

    apply(data.draw(st.lists(st.sampled_from(halves), max_size=10), label="before"))
    processor.forget()
    for raw in data.draw(st.lists(picks, max_size=6), label="during the rebuild"):
        apply(raw)
    while not processor.index.built(0):
        apply([])
    waiting = _pending_in(unit)
    assert metrics.pending._value.get() == len(waiting)
    unit.sent.clear()
    far = RECEIVED_AT_MS + 10 * TTL_MS
    processor.process(unit, (), [_tick(0, far, offset)])
    clock[0] += SETTLE_MS
    processor.process(unit, (), [_tick(1, far, offset)])  # when no record was read after forget
    assert sorted(str(r["sessionId"]) for r in unit.on("incomplete")) == sorted(waiting)
    assert metrics.pending._value.get() == 0
    assert unit.items() == []  # the markers expired too


_SESSION_POOL: Final = _sessions_on(0, 4)
