"""When a partition stands still: records wait behind its committed offset and it does not move."""

from __future__ import annotations

from collections.abc import Iterable


class StallClock:
    """Per partition, how long its committed offset has stood still with records behind it.

    A partition that is behind but moving is slow, not stalled; one whose committed offset stays
    where it is while records wait behind it is stalled (issue 17: a record there will never be
    processed). Feed it (committed, end) readings; it answers with the seconds of standing still.
    """

    def __init__(self) -> None:
        # partition -> (committed offset, when it was first seen standing there)
        self._standing: dict[int, tuple[int, float]] = {}

    def observe(self, partition: int, committed: int, end: int, now: float) -> float:
        """Seconds `partition` has stood at `committed` with records behind it (0: caught up, or
        it moved since the last reading)."""
        if committed >= end:
            self._standing.pop(partition, None)
            return 0.0
        seen = self._standing.get(partition)
        if seen is None or seen[0] != committed:
            self._standing[partition] = (committed, now)
            return 0.0
        return now - seen[1]

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Start over for `partitions` (all when None): they moved, or the worker was not ready."""
        if partitions is None:
            self._standing.clear()
            return
        for partition in partitions:
            self._standing.pop(partition, None)
