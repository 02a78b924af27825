"""The pause while the API refuses the credential: fetches wait, one probes now and then."""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("enricher.gate")


class AuthGate:
    """Open while the credential works. After a 401/403 it closes: every fetch waits, and one
    of them is let through every `retry_s` to try again; the first success opens it."""

    def __init__(self, retry_s: float) -> None:
        self.retry_s = retry_s
        self._open = asyncio.Event()
        self._open.set()
        self._probe = asyncio.Lock()
        self._next_probe_s = 0.0
        self.refused_status: int | None = None

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait(self) -> None:
        """Return when the gate is open, or when it is this caller's turn to probe."""
        while not self._open.is_set():
            async with self._probe:
                if self._open.is_set():
                    return
                left = self._next_probe_s - time.monotonic()
                if left <= 0:
                    # This caller probes; the next probe is due retry_s from now whatever happens.
                    self._next_probe_s = time.monotonic() + self.retry_s
                    return
                try:
                    await asyncio.wait_for(self._open.wait(), left)
                except TimeoutError:
                    continue

    def refused(self, status: int) -> bool:
        """Close the gate; True when it was open (the moment to say so in the log)."""
        was_open = self._open.is_set()
        self._open.clear()
        self.refused_status = status
        if was_open:
            self._next_probe_s = time.monotonic() + self.retry_s
        return was_open

    def accepted(self) -> bool:
        """Open the gate; True when it was closed."""
        was_closed = not self._open.is_set()
        self._open.set()
        self.refused_status = None
        return was_closed
