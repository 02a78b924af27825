"""The raw-record contract: keys, partitions, headers and the received-at format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionflow.raw_record import (
    KeyMissing,
    dlq_headers,
    format_received_at,
    key_field,
    key_of,
    partition_for_key,
    raw_headers,
)


def test_received_at_format() -> None:
    ts = datetime(2026, 11, 27, 3, 20, 0, 123000, tzinfo=UTC).timestamp()
    assert format_received_at(ts) == "2026-11-27T03:20:00.123Z"
    assert format_received_at(ts + 1.5) == "2026-11-27T03:20:01.623Z"
    assert format_received_at(ts) == "2026-11-27T03:20:00.123Z"


@given(st.lists(st.floats(1.7e9, 1.8e9), min_size=1, max_size=50), st.integers(1, 3))
def test_received_at_never_comes_from_a_stale_cache(base: list[float], repeats: int) -> None:
    # Runs of one instant, of one second and of one millisecond, then jumps back and forth.
    instants = [t + step / 1000 for t in base for step in (0, 0, 0.4, 1, 999, 1000)] * repeats
    for instant in instants:
        milli = round(instant * 1000)
        second = datetime.fromtimestamp(milli // 1000, tz=UTC)
        assert format_received_at(instant) == f"{second:%Y-%m-%dT%H:%M:%S}.{milli % 1000:03d}Z"


def test_headers() -> None:
    assert raw_headers(b"msg_1", "session.created", "T") == [
        ("message-id", b"msg_1"),
        ("event-type", b"session.created"),
        ("received-at", b"T"),
    ]
    assert dict(dlq_headers(b"msg_1", "not_json", "T")) == {
        "message-id": b"msg_1",
        "reason": b"not_json",
        "received-at": b"T",
        "stage": b"producer",
    }


def test_key_field() -> None:
    assert key_field("message.added") == "sessionId"
    assert key_field("session.created") == "id"
    assert key_field("knowledge_store.updated") == "id"


def test_session_events_need_their_session_the_others_may_go_keyless() -> None:
    assert key_of("session.ended", {"id": "s-1"}) == b"s-1"
    assert key_of("message.added", {"id": "msg_1", "sessionId": "s-1"}) == b"s-1"
    missing: list[tuple[str, dict[str, object]]] = [
        ("session.created", {}),
        ("session.updated", {"id": ""}),
        ("message.added", {"id": "msg_1"}),
        ("session.ended", {"id": 7}),
    ]
    for event_type, doc in missing:
        with pytest.raises(KeyMissing):
            key_of(event_type, doc)
    assert key_of("usage.updated", {"period": {}}) is None
    assert key_of("subscription.updated", {"status": "active"}) is None
    assert key_of("brand.new", {"id": "n-1"}) == b"n-1"
    assert key_of("brand.new", {}) is None


def test_partition_for_key_is_kafkas_murmur2() -> None:
    # Kafka's own murmur2 test vectors (UtilsTest), through toPositive(...) % n as the Java
    # client's partitioner does.
    for key, hashed in [(b"21", -973932308), (b"foobar", -790332482), (b"abc", 479470107)]:
        assert partition_for_key(key, 12) == (hashed & 0x7FFFFFFF) % 12
    assert {partition_for_key(f"k{i}".encode(), 12) for i in range(500)} == set(range(12))
