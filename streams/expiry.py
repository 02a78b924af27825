"""Which sessions of a partition are due: an in-memory deadline index, derived from the table.

The table is the truth (changelog-backed); this index only says where to look. It is rebuilt
from the table after every rebalance, and an entry may be stale (the state moved on, or is
gone): the caller re-reads the state and asks the core, which decides from the state alone.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class ExpiryIndex:
    """Per partition, a min-heap of (deadline_ms, key)."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, bytes]]] = {}
        self._built = False

    @property
    def built(self) -> bool:
        """False until the index was rebuilt from the table since the last rebalance."""
        return self._built

    def rebuild(self, entries: Iterable[tuple[int, int, bytes]]) -> None:
        """Replace everything with (partition, deadline_ms, key) entries read from the table."""
        heaps: dict[int, list[tuple[int, bytes]]] = {}
        for partition, deadline, key in entries:
            heaps.setdefault(partition, []).append((deadline, key))
        for heap in heaps.values():
            heapq.heapify(heap)
        self._heaps = heaps
        self._built = True

    def invalidate(self) -> None:
        """Forget everything (partitions moved); the next check rebuilds from the table."""
        self._heaps = {}
        self._built = False

    def push(self, partition: int, deadline_ms: int, key: bytes) -> None:
        heapq.heappush(self._heaps.setdefault(partition, []), (deadline_ms, key))

    def pop_due(self, partition: int, now_ms: int) -> list[bytes]:
        """Keys whose recorded deadline has passed (each once, possibly stale)."""
        heap = self._heaps.get(partition)
        due: list[bytes] = []
        while heap and heap[0][0] <= now_ms:
            due.append(heapq.heappop(heap)[1])
        return due

    def __len__(self) -> int:
        return sum(len(heap) for heap in self._heaps.values())
