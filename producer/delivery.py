"""librdkafka's delivery reports, errors and logs, served on the event loop: no thread.

Each record handed to librdkafka carries a loop future that its delivery report settles; the
future's callback answers the request, 2xx only when it settled without an error.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any, TypeAlias

from confluent_kafka import KafkaError, Message, Producer

# How often delivery reports are served while records are in flight, and otherwise (errors
# and logs only). uvloop keeps timers in whole milliseconds and runs a delay that rounds to 0 at
# the next iteration: 0.5 ms polled at every turn of the loop, which spun a core (0.6 of one at
# 500 webhooks/s) while any record was in flight.
BUSY_POLL_S = 0.001
IDLE_POLL_S = 0.1

Acked: TypeAlias = "asyncio.Future[KafkaError | None]"


class ReportPoller:
    """Serves librdkafka's delivery reports, errors and logs on the event loop: no thread.

    It polls (a non-blocking call that serves whatever is queued) at every hand-over, which under
    load serves the reports as soon as the loop takes the next request; every `BUSY_POLL_S`
    while records await their reports, which serves them when requests are few; otherwise every
    `IDLE_POLL_S`. The reports settle the futures directly. A poll thread would hand each batch
    over to the loop and compete for the GIL.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._producer: Producer | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._busy = False

    @staticmethod
    def callback(acked: Acked) -> Any:
        return partial(settle, acked)

    def start(self, producer: Producer) -> None:
        self._producer = producer
        self._schedule(IDLE_POLL_S)

    def kick(self) -> None:
        """A record was handed over: serve the reports already there (under load, the
        acknowledgements of earlier requests), and keep polling while any is in flight."""
        if self._producer is not None:
            self._producer.poll(0)
        if not self._busy:
            self._busy = True
            self._schedule(BUSY_POLL_S)

    async def stop(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if self._producer is not None:
            self._producer.poll(0)

    async def drain(self, limit_s: float) -> int:
        """Poll until every record has its report or the time is up; how many are left."""
        producer = self._producer
        if producer is None:
            return 0
        deadline = time.monotonic() + limit_s
        while len(producer) and time.monotonic() < deadline:
            producer.poll(0)
            await asyncio.sleep(BUSY_POLL_S)
        producer.poll(0)
        return len(producer)

    def _schedule(self, delay: float) -> None:
        if self._tick is not None:
            self._tick.cancel()
        self._tick = self.loop.call_later(delay, self._poll)

    def _poll(self) -> None:
        self._tick = None
        producer = self._producer
        if producer is None:
            return
        producer.poll(0)
        # len(): records queued or in flight, reports not yet served.
        self._busy = len(producer) > 0
        self._schedule(BUSY_POLL_S if self._busy else IDLE_POLL_S)


def settle(acked: Acked, error: KafkaError | None, _msg: Message | None) -> None:
    """A delivery report (or our deadline, which comes first) settles the future once."""
    if not acked.done():
        acked.set_result(error)
