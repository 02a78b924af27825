"""The raw-record contract: how a webhook is keyed and partitioned in Kafka, and its headers.

The producer writes it, the worker and the tools read it; this module is its one home.

Keying: every event about a session is keyed by the session's id, so that all of them share a
partition (the pairing is a local table lookup). The contract names that id `id` on session
events and `sessionId` on `message.added`. Events about a session need it: without it they are
dead letters (`no_key`). Any other event type (org-level ones such as `usage.updated`, which
name no session, and unknown types) is keyed by its `id` when it has one, and otherwise goes to
the raw topic without a key: a valid event, stored raw and counted, not a dead letter.
"""

from __future__ import annotations

import time
from typing import Final, TypeAlias

from aiokafka.partitioner import murmur2

from sessionflow.errors import SessionflowError
from sessionflow.events import MESSAGE_ADDED, SESSION_CREATED, SESSION_ENDED, SESSION_UPDATED

MESSAGE_ID: Final = "message-id"
EVENT_TYPE: Final = "event-type"
RECEIVED_AT: Final = "received-at"
# Dead letters add these.
REASON: Final = "reason"
STAGE: Final = "stage"
PRODUCER_STAGE: Final = "producer"
# A replayed dead letter says where it came from (`partition:offset` in the DLQ).
REPLAYED_FROM: Final = "replayed-from"

RecordHeaders: TypeAlias = list[tuple[str, bytes]]

# The event types that are about one session and must name it.
SESSION_KEYED: Final = frozenset({SESSION_CREATED, SESSION_ENDED, SESSION_UPDATED, MESSAGE_ADDED})


class KeyMissing(SessionflowError, ValueError):
    """An event about a session that does not name its session."""


def key_field(event_type: str) -> str:
    """Which field holds the key: the session id, so every event of a session shares a partition."""
    return "sessionId" if event_type == MESSAGE_ADDED else "id"


def key_of(event_type: str, document: dict[str, object]) -> bytes | None:
    """The record key of a parsed webhook; None for an event that names no session and has no
    id (it goes to the raw topic keyless). KeyMissing for a session event without its id."""
    field = key_field(event_type)
    value = document.get(field)
    if isinstance(value, str) and value:
        return value.encode()
    if event_type in SESSION_KEYED:
        raise KeyMissing(f"{field} is missing or not a non-empty string")
    return None


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition of a keyed record: murmur2, as Kafka's Java client, aiokafka and the
    producer's librdkafka (`murmur2_random`) choose it. Every project topic has the same count,
    so a session's raw, dead-lettered, completed and incomplete records share this partition."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


# The last millisecond and the last second formatted: at load many requests share a
# millisecond, and strftime, for the second, is the costly part.
_last_milli: tuple[int, str] = (-1, "")
_last_second: tuple[int, str] = (-1, "")


def format_received_at(epoch_seconds: float) -> str:
    """The received-at header's format: `2026-11-27T03:20:00.123Z` (RFC 3339 UTC, ms)."""
    global _last_milli, _last_second
    milli = round(epoch_seconds * 1000)
    if milli == _last_milli[0]:
        return _last_milli[1]
    whole, millis = divmod(milli, 1000)
    if whole != _last_second[0]:
        _last_second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    text = f"{_last_second[1]}.{millis:03d}Z"
    _last_milli = (milli, text)
    return text


def raw_headers(message_id: bytes, event_type: str, received_at: str) -> RecordHeaders:
    return [
        (MESSAGE_ID, message_id),
        (EVENT_TYPE, event_type.encode()),
        (RECEIVED_AT, received_at.encode()),
    ]


def dlq_headers(message_id: bytes, reason: str, received_at: str) -> RecordHeaders:
    return [
        (MESSAGE_ID, message_id),
        (REASON, reason.encode()),
        (RECEIVED_AT, received_at.encode()),
        (STAGE, PRODUCER_STAGE.encode()),
    ]
