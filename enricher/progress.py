"""Which input offsets may be committed, and where a restart must look for transcripts. Pure.

Records of one partition finish out of order (fetches run concurrently); the committed
position is the lowest offset still in flight, so nothing unfinished is ever skipped. Offsets
need not be contiguous (a read_committed consumer never sees the transaction markers).

The commit's metadata names the transcripts partition's offset from which every transcript
written for an uncommitted input lies: after a crash the next owner reads the transcripts from
there and does not fetch those sessions again (the transcripts topic is co-partitioned with
the completed topic, and only a partition's owner writes to its transcripts partition).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

_METADATA_PREFIX: Final = "transcripts="


def encode_metadata(resume_from: int | None) -> str:
    return "" if resume_from is None else f"{_METADATA_PREFIX}{resume_from}"


def decode_metadata(metadata: str | None) -> int | None:
    """The transcripts offset in a commit's metadata; None when absent or not ours."""
    if not metadata or not metadata.startswith(_METADATA_PREFIX):
        return None
    try:
        value = int(metadata.removeprefix(_METADATA_PREFIX))
    except ValueError:
        return None
    return value if value >= 0 else None


@dataclass
class PartitionProgress:
    """One input partition: what is in flight, what is done, what may be committed."""

    committed: int | None = None  # the position last committed (or found at assignment)
    resume_from: int | None = None  # transcripts offset the last commit carried
    _in_flight: set[int] = field(default_factory=set)
    _next: int | None = None  # one past the highest offset started
    _outputs: dict[int, int] = field(default_factory=dict)  # done, uncommitted: output offset
    _written_end: int | None = None  # one past the highest output offset acknowledged

    def start(self, offset: int) -> None:
        self._in_flight.add(offset)
        self._next = offset + 1 if self._next is None else max(self._next, offset + 1)

    def finish(self, offset: int, output_offset: int | None) -> None:
        """`offset` is done; its transcript (if one was written) is at `output_offset`."""
        self._in_flight.discard(offset)
        if output_offset is not None:
            self._outputs[offset] = output_offset
            end = output_offset + 1
            self._written_end = end if self._written_end is None else max(self._written_end, end)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def position(self) -> int | None:
        """The offset to commit: everything below it is done."""
        if self._in_flight:
            return min(self._in_flight)
        return self._next if self._next is not None else self.committed

    def pending_commit(self) -> tuple[int, str] | None:
        """(position, metadata) when either would change; mark it done with `committed_at`.

        The metadata alone can change: sessions behind a slow one are written while the
        position waits for it, and a restart must find their transcripts.
        """
        position = self.position()
        if position is None:
            return None
        resume = self._resume_point(position)
        if position == self.committed and resume == self.resume_from:
            return None
        return position, encode_metadata(resume)

    def committed_at(self, position: int, metadata: str) -> None:
        self.committed = position
        self.resume_from = decode_metadata(metadata)
        self._outputs = {o: out for o, out in self._outputs.items() if o >= position}

    def _resume_point(self, position: int) -> int | None:
        # Transcripts of inputs at or past the position may exist already (they finished
        # early); a restart must read back from the lowest of them, or else from the end.
        ahead = [out for o, out in self._outputs.items() if o >= position]
        if ahead:
            return min(ahead)
        return self._written_end if self._written_end is not None else self.resume_from


class Remembered:
    """Session ids whose transcript this process knows is written: a bounded LRU set."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, session_id: str) -> None:
        if self.capacity <= 0:
            return
        self._ids[session_id] = None
        self._ids.move_to_end(session_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def discard(self, session_id: str) -> None:
        self._ids.pop(session_id, None)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
