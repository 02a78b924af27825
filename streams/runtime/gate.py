"""The commit gate: a unit of work (outputs, table writes, offsets) and a commit never interleave."""

from __future__ import annotations

import asyncio


class CommitGate:
    """Held while a unit of work is applied, and while offsets are committed.

    A commit reads the processed offsets, then awaits the broker; if processing went on meanwhile,
    the next unit's outputs would enter the transaction being committed without their offsets,
    and be produced again when their records are replayed. Holding the gate across both makes a
    transaction end exactly at a unit boundary.

    It also remembers the consumer generation being revoked: work fetched in it and not applied
    yet is refused, to be read again from the committed offset (by this worker or the next owner).
    """

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self._revoked_generation: int | None = None

    def revoke(self, generation: int) -> None:
        """Under the lock: `generation` is being revoked; nothing fetched in it is applied now."""
        self._revoked_generation = generation

    def admits(self, fetched_in: int, current: int) -> bool:
        """Under the lock: may work fetched in generation `fetched_in` be applied now?"""
        return fetched_in == current and current != self._revoked_generation
