"""The shell around the core: table changes, outputs, DLQ and metrics, without Kafka.

Tick-driven expiry and the expiry index: test_processor_expiry.py.
"""

from __future__ import annotations

import orjson
import pytest

from streams import core, state_codec
from streams.metrics import WorkerMetrics
from streams.processor import SessionProcessor, headers_of
from tests.unit.streams import samples
from tests.unit.streams.processing import DictUnit, Rec, rec


def test_a_pair_completes_once_with_one_table_change_per_event(
    processor: SessionProcessor, metrics: WorkerMetrics, clock: list[int]
) -> None:
    created = samples.session_created()
    ended = samples.session_ended(session_id=str(created["id"]))
    key = str(created["id"]).encode()
    unit = DictUnit({}, partition=1)
    raw = [rec(1, ended, "msg_2"), rec(2, created, "msg_1"), rec(3, created, "msg_1")]
    processor.process(unit, raw, ())  # the third is a retry: nothing
    assert unit.writes == 2
    [record] = unit.on("completed")
    assert record["sessionId"] == created["id"]
    assert record["analysis"] == ended["analysis"]
    assert [k for _, k, _, _ in unit.sent] == [key]
    assert isinstance(
        state_codec.decode_state(unit.table[key], key.decode()), core.CompletionMarker
    )
    assert metrics.duplicates.labels("session.created", "retry")._value.get() == 1


def test_counts_are_applied_once_per_batch_even_when_the_batch_fails(
    processor: SessionProcessor, metrics: WorkerMetrics, clock: list[int]
) -> None:
    created = samples.session_created()
    unit = DictUnit({}, partition=1)
    processor.on_raw(unit, b"k", samples.to_bytes(created), {"message-id": b"m1"}, 1)
    events = metrics.events.labels("session.created")
    assert events._value.get() == 0  # added up, not applied yet
    processor.process(unit, [rec(2, created, "m1")], ())
    assert events._value.get() == 2
    with pytest.raises(AttributeError):  # a record that is not one: a bug upstream
        processor.process(unit, [rec(4, created, "m1"), None], ())  # type: ignore[list-item]
    assert events._value.get() == 3  # what the failed batch counted before it broke


def test_undecodable_records_go_to_the_dlq_with_reason_and_stage(
    processor: SessionProcessor, clock: list[int]
) -> None:
    unit = DictUnit({}, partition=2)
    headers = [("message-id", b"msg_x"), ("event-type", b"session.created")]
    processor.process(unit, [Rec(4, b"k", b"{not json", headers), Rec(5, None, None, headers)], ())
    assert [(t, v) for t, _, v, _ in unit.sent] == [("dlq", b"{not json"), ("dlq", b"")]
    first_headers = dict(unit.sent[0][3])
    assert first_headers["stage"] == b"streams"
    assert first_headers["reason"] == b"not_json"
    assert first_headers["message-id"] == b"msg_x"
    assert unit.writes == 0


def test_other_event_types_are_counted_and_leave_no_state(
    processor: SessionProcessor, metrics: WorkerMetrics, clock: list[int]
) -> None:
    unit = DictUnit({}, partition=0)
    raw = [
        Rec(
            6,
            b"u1",
            orjson.dumps({"eventType": "usage.updated", "id": "u1"}),
            [("message-id", b"m")],
        ),
        Rec(7, b"x", orjson.dumps({"eventType": "brand.new", "id": "x"}), [("message-id", b"n")]),
    ]
    processor.process(unit, raw, ())
    assert unit.table == {}
    assert unit.sent == []
    assert metrics.events.labels("usage.updated")._value.get() == 1
    assert metrics.events.labels("other")._value.get() == 1


def test_headers_of_accepts_kafka_lists_mappings_and_none() -> None:
    assert headers_of(None) == {}
    assert headers_of([("a", b"1"), ("b", None)]) == {"a": b"1"}
    assert headers_of({"a": b"1"}) == {"a": b"1"}
