"""The processor's tests' shared set-up: a unit of work over a dict and the raw records it reads.

The processor, its metrics and its clock are fixtures (conftest.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from sessionflow.raw_record import partition_for_key
from streams.processor import OutputTopics
from tests.unit.streams import samples

TOPICS = OutputTopics(completed="completed", incomplete="incomplete", dlq="dlq")
TTL_MS = 10_000
GRACE_MS = 1_000
SETTLE_MS = 2_000
PARTITIONS = 4
RECEIVED_AT = "2026-11-27T03:00:00.000Z"
RECEIVED_AT_MS = 1_795_748_400_000


@dataclass
class DictUnit:
    """A unit of work over a plain dict (the runtime's Unit keeps changes until it ends)."""

    table: dict[bytes, bytes]
    partition: int
    sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = field(
        default_factory=list
    )
    writes: int = 0

    def get(self, key: bytes) -> bytes | None:
        return self.table.get(key)

    def put(self, key: bytes, value: bytes | None) -> None:
        self.writes += 1
        if value is None:
            self.table.pop(key, None)
        else:
            self.table[key] = value

    def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        self.sent.append((topic, key, value, list(headers)))

    def items(self) -> list[tuple[bytes, bytes]]:
        return [
            (k, v)
            for k, v in self.table.items()
            if partition_for_key(k, PARTITIONS) == self.partition
        ]

    def scan(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self.items())  # a snapshot, as the runtime's stores give

    def on(self, topic: str) -> list[dict[str, object]]:
        # The stdlib reads integers of any size exactly (the samples carry a 20-digit one).
        return [json.loads(v) for t, _, v, _ in self.sent if t == topic]


@dataclass(frozen=True)
class Rec:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def _headers(event: dict[str, object], message_id: str) -> dict[str, bytes]:
    return {
        "message-id": message_id.encode(),
        "event-type": str(event["eventType"]).encode(),
        "received-at": RECEIVED_AT.encode(),
    }


def rec(offset: int, event: dict[str, object], message_id: str) -> Rec:
    """A webhook as the producer wrote it to the raw topic, keyed by its session."""
    key = str(event["id"]).encode()
    return Rec(offset, key, samples.to_bytes(event), list(_headers(event, message_id).items()))
