"""The Kafka record headers the producer writes next to the untouched body bytes."""

from __future__ import annotations

import time

RecordHeaders = list[tuple[str, bytes]]

_second_cache: tuple[int, str] = (-1, "")


def rfc3339_ms(epoch_seconds: float) -> str:
    """`2026-11-27T03:20:00.123Z`; the second part is cached, it is the costly one."""
    global _second_cache
    whole, millis = divmod(round(epoch_seconds * 1000), 1000)
    cached_second, text = _second_cache
    if whole != cached_second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second_cache = (whole, text)
    return f"{text}.{millis:03d}Z"


def raw_headers(message_id: bytes, event_type: str, received_at: str) -> RecordHeaders:
    return [
        ("message-id", message_id),
        ("event-type", event_type.encode()),
        ("received-at", received_at.encode()),
    ]


def dlq_headers(message_id: bytes, reason: str, received_at: str) -> RecordHeaders:
    return [
        ("message-id", message_id),
        ("reason", reason.encode()),
        ("received-at", received_at.encode()),
        ("stage", b"producer"),
    ]
