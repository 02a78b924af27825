"""Record headers and the received-at timestamp format."""

from __future__ import annotations

from datetime import UTC, datetime

from producer.records import dlq_headers, raw_headers, rfc3339_ms


def test_rfc3339_ms() -> None:
    ts = datetime(2026, 11, 27, 3, 20, 0, 123000, tzinfo=UTC).timestamp()
    assert rfc3339_ms(ts) == "2026-11-27T03:20:00.123Z"
    assert rfc3339_ms(ts + 1.5) == "2026-11-27T03:20:01.623Z"
    assert rfc3339_ms(ts) == "2026-11-27T03:20:00.123Z"


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
