"""When a partition's sessions may be expired, and which are due.

Ticks. A half expires on stream time (streams/core.py): its received-at plus the TTL. The timer
cannot know what the raw topic still holds, so each tick says when it was made (`at_ms`) and
where the raw partition ended just after that (`raw_end`, its last stable offset). Every webhook
received more than `grace_ms` before the tick (the sender's deadline: nothing is answered later
than that) was appended before the tick, below `raw_end`. Once the worker has processed the raw
partition up to `raw_end`, no half received before `at_ms - grace_ms` is still on its way, so the
halves whose deadline is not later than that may go: their partners, if any, arrived too late.
A tick read before the backlog it stood behind (ticks and webhooks are separate topics, so after
a stall or a rebalance they are not read in order) expires nothing; a later tick will.

Offsets below `raw_end` that hold no record (a transaction's commit marker, written by
`sessionflow dlq replay`) are never processed; `RawProgress` counts the partition as caught up
when ticks keep being read for `settle_ms` while its processed position and its end stand still.

The deadline index: the table is the truth (changelog-backed); the index only says where to
look. After a rebalance a partition's index is rebuilt from its table a slice at a time, one
slice per unit of work (streams/processor.py), and expires nothing until it is complete. An entry
may be stale (the state moved on, or is gone): the caller re-reads the state and asks the core,
which decides from the state alone.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import orjson

from streams.errors import StreamsError


class TickDecodeError(StreamsError, ValueError):
    """A ticks-topic record that is not a tick."""


@dataclass(frozen=True, slots=True)
class Tick:
    at_ms: int
    # The raw partition's end offset just after `at_ms`; None when it could not be learnt.
    raw_end: int | None


def encode_tick(tick: Tick) -> bytes:
    return orjson.dumps([tick.at_ms, tick.raw_end])


def decode_tick(data: bytes) -> Tick:
    """Read a tick: [at_ms, raw_end], raw_end null when the worker could not learn it."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise TickDecodeError(f"unreadable tick: {exc}") from exc
    if (
        isinstance(value, list)
        and len(value) == 2
        and _is_int(value[0])
        and (value[1] is None or _is_int(value[1]))
    ):
        return Tick(at_ms=value[0], raw_end=value[1])
    raise TickDecodeError("a tick is [at_ms, raw_end]")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class RawProgress:
    """Per partition, how far the raw topic was processed, and the expiry horizon a tick allows."""

    def __init__(self, *, grace_ms: int, settle_ms: int) -> None:
        self._grace_ms = grace_ms
        self._settle_ms = settle_ms
        self._next: dict[int, int] = {}
        # partition -> (raw_end, position, since_ms): behind by offsets that did not move.
        self._standing: dict[int, tuple[int, int, int]] = {}

    def processed(self, partition: int, offset: int) -> None:
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def reset(self) -> None:
        """Partitions moved: a partition's position is known again once a record of it is read."""
        self._next.clear()
        self._standing.clear()

    def horizon_ms(self, partition: int, tick: Tick, now_ms: int) -> int | None:
        """The stream time up to which `partition` may expire halves, as of `tick`; None: not yet."""
        if tick.raw_end is None:
            return None
        position = self._next.get(partition, -1)
        if position >= tick.raw_end:
            self._standing.pop(partition, None)
            return tick.at_ms - self._grace_ms
        standing = self._standing.get(partition)
        if standing is None or standing[:2] != (tick.raw_end, position):
            self._standing[partition] = (tick.raw_end, position, now_ms)
            return None
        if now_ms - standing[2] < self._settle_ms:
            return None
        return tick.at_ms - self._grace_ms


class ExpiryIndex:
    """Per partition, table keys by the time slot their deadline falls in.

    Compact because it holds an entry for every session in the table (and a stale one for each
    state a session moved on from) for the whole TTL: a slot is a bytearray of length-prefixed
    keys, about the key's own size per entry, where a heap of (deadline, key) tuples took some
    170 bytes (bench B5). A slot of `resolution_ms` is due once all of it has passed, so a key
    is returned at most `resolution_ms` after its deadline, never before it.
    """

    def __init__(self, resolution_ms: int = 1000) -> None:
        if resolution_ms < 1:
            raise ValueError("resolution_ms must be at least 1")
        self._resolution_ms = resolution_ms
        # partition -> slot -> keys, each behind its 4-byte length; and a min-heap of the slots
        self._slots: dict[int, dict[int, bytearray]] = {}
        self._heaps: dict[int, list[int]] = {}
        self._built: set[int] = set()

    def built(self, partition: int) -> bool:
        """False until `partition`'s index was rebuilt from its table since the last rebalance."""
        return partition in self._built

    def reset(self, partition: int) -> None:
        """Empty `partition`'s index before it is rebuilt from its table (not built until
        `mark_built`); what is pushed from now on stays in it."""
        self._slots[partition] = {}
        self._heaps[partition] = []
        self._built.discard(partition)

    def mark_built(self, partition: int) -> None:
        """`partition`'s index holds every key of its table: its due keys may be popped."""
        self._built.add(partition)

    def invalidate(self) -> None:
        """Forget everything (partitions moved); each partition is rebuilt from its table."""
        self._slots = {}
        self._heaps = {}
        self._built = set()

    def push(self, partition: int, deadline_ms: int, key: bytes) -> None:
        slot = -(-deadline_ms // self._resolution_ms)  # the first slot that starts after it
        slots = self._slots.setdefault(partition, {})
        keys = slots.get(slot)
        if keys is None:
            keys = slots[slot] = bytearray()
            heapq.heappush(self._heaps.setdefault(partition, []), slot)
        keys += len(key).to_bytes(4, "big")
        keys += key

    def pop_due(self, partition: int, now_ms: int) -> list[bytes]:
        """Keys whose recorded deadline has passed, by slot (each once, possibly stale)."""
        heap = self._heaps.get(partition)
        due: list[bytes] = []
        while heap and heap[0] * self._resolution_ms <= now_ms:
            keys = self._slots[partition].pop(heapq.heappop(heap))
            at = 0
            while at < len(keys):
                size = int.from_bytes(keys[at : at + 4], "big")
                due.append(bytes(keys[at + 4 : at + 4 + size]))
                at += 4 + size
        return due
