"""What the worker's /readyz answers, decided from what the worker last saw of its partitions.

The expiry ticker reads the raw partitions' ends every interval; their committed offsets against
those ends are the lag and stall figures. A worker cut off from the broker (a network partition)
cannot read them: the read hangs until the network heals or the client's request timeout, and
the group may already have given the worker's partitions to another. Until then the last
figures would stand, looking healthy. So the time since the broker last answered a read counts
too (a rebalance, which reads nothing, starts it again): past `stall_s` the worker is not ready,
and says why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streams.runtime.runner import PartitionProgress


class ProgressReadings:
    """The owned raw partitions' progress as last read, and when the broker last answered."""

    def __init__(self, now: float) -> None:
        self.partitions: dict[int, PartitionProgress] = {}
        self._answered_at = now

    def read(self, progress: Iterable[PartitionProgress], now: float) -> None:
        """A reading of the ends came back: it replaces the last one."""
        self.partitions = {p.partition: p for p in progress}
        self._answered_at = now

    def moving(self, now: float) -> None:
        """The partitions are moving (a rebalance, and the restore in it): the last reading no
        longer holds, and none is due until they settle, however long the restore takes."""
        self.partitions = {}
        self._answered_at = now

    def unanswered_s(self, now: float) -> float:
        """Seconds since the last reading, or since the partitions last moved."""
        return max(0.0, now - self._answered_at)


@dataclass(frozen=True, slots=True)
class Readiness:
    status: int
    body: dict[str, Any]


def readiness(
    *,
    settled: bool,
    owns: bool,
    runner_ready: bool,
    readings: ProgressReadings,
    now: float,
    stall_s: float,
) -> Readiness:
    """Ready once the worker has joined the group and restored its tables for this generation
    (an empty assignment before the first rebalance is not ready), while the broker answers its
    reads of the partitions' ends, and while no partition it owns has stood still behind its end
    for `stall_s` or longer."""
    if not settled or (owns and not runner_ready):
        return Readiness(503, {"status": "rebalancing"})
    unanswered = readings.unanswered_s(now)
    if owns and unanswered >= stall_s:
        return Readiness(503, {"status": "unreachable", "unanswered_s": round(unanswered)})
    stalled = {
        str(p.partition): {"committed": p.committed, "end": p.end, "stalled_s": round(p.stalled_s)}
        for p in readings.partitions.values()
        if p.stalled_s >= stall_s
    }
    if stalled:
        return Readiness(503, {"status": "stalled", "partitions": stalled})
    return Readiness(200, {"status": "ready"})
