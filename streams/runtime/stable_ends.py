"""A restore's changelog ends, past the transactions still open on them (consumer.py items 11, 12).

Exactly-once reads the changelog read_committed, so the end Faust restores a table partition up
to is its last stable offset: the first offset of the oldest transaction still open, past which
nothing can be read until that transaction ends. `StableEnds.wait_past_open_transactions` finds
the partitions whose stable end lies below their high watermark (read through a second consumer
without isolation), ends the transactions there that a lost worker left open (fencing.py), and
waits until their stable ends reach what was written before the rebalance.
`StableEnds.reach_standby_stores` neither fences nor waits: a standby partition's end is raised to
what its store already holds where that lies past such a transaction. consumer.py's docstring
says why each step is needed (items 11, 12 and 14).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.types import TP

from streams.runtime.fencing import fence_lost_transactions

log = logging.getLogger(__name__)

# How often an open transaction's end is looked for, and for how long at most: within the time
# Faust gives the whole lookup of the ends (its broker_request_timeout, 90 s by default). The
# broker ends a transaction at its timeout (SESSIONFLOW_TRANSACTION_TIMEOUT_SECONDS, 10 s by
# default) plus the interval of its look for such transactions (10 s by default).
STABLE_POLL_S = 0.2
STABLE_WAIT_MARGIN_S = 10.0
# How long the coordinator may take to abort a fenced worker's transaction (a few round trips).
FENCE_LIMIT_S = 15.0


def open_transactions(stable: Mapping[TP, int], written: Mapping[TP, int]) -> set[TP]:
    """The partitions whose stable end lies below their high watermark `written`."""
    return {tp for tp, end in written.items() if stable.get(tp, -1) < end}


def stored_past_stable_end(stable: Mapping[TP, int], stored: Mapping[TP, int]) -> set[TP]:
    """The partitions whose store holds a record (its offset in `stored`) at or past the stable
    end: the first offset not yet readable, read_committed."""
    return {tp for tp, offset in stored.items() if stable.get(tp, -1) <= offset}


class StableEnds:
    """The wait of one consumer thread: `consumer` is its read_committed consumer, `new_plain`
    makes the consumer without isolation (started on first use, stopped by `stop`), `app` is
    streams.runtime.app.App."""

    def __init__(
        self,
        app: Any,
        consumer: Callable[[], AIOKafkaConsumer],
        new_plain: Callable[[], AIOKafkaConsumer],
    ) -> None:
        self.app = app
        self._consumer = consumer
        self._new_plain = new_plain
        self._plain: AIOKafkaConsumer | None = None

    async def wait_past_open_transactions(self, ends: dict[TP, int], partitions: list[TP]) -> None:
        """Wait until the stable `ends` of `partitions` reach their high watermarks of now;
        `ends` is updated in place."""
        if not partitions:
            return
        written = await (await self._plain_reader()).end_offsets(partitions)
        waiting = open_transactions(ends, written)
        if not waiting:
            return
        log.warning(
            "changelog partitions %s hold a transaction still open (another worker's, paused, cut"
            " off or killed): their recovery waits for it to end",
            sorted(tp.partition for tp in waiting),
        )
        started = time.monotonic()
        limit = self.app.conf.broker_request_timeout - STABLE_WAIT_MARGIN_S
        fenced = await self._fence_lost_transactions(waiting)
        while waiting and time.monotonic() - started < limit:
            await asyncio.sleep(STABLE_POLL_S)
            ends.update(await self._consumer().end_offsets(sorted(waiting)))
            waiting = open_transactions(ends, written)
        self.app.on_restore_wait(time.monotonic() - started, fenced)
        if waiting:
            log.error(
                "changelog partitions %s: a transaction is still open after %.0f s; recovering up"
                " to it (records committed past it are not restored, and a store that holds them"
                " stops the worker with Faust's ConsistencyError)",
                sorted(tp.partition for tp in waiting),
                limit,
            )
        else:
            log.info("the open transaction ended after %.1f s", time.monotonic() - started)

    async def reach_standby_stores(
        self, ends: dict[TP, int], stored: Mapping[TP, int | None]
    ) -> None:
        """Raise the stable `ends` of standby partitions to just past the last record their
        stores hold (`stored`), where that lies past the stable end and within the partition's
        high watermark (consumer.py, 14); `ends` is updated in place."""
        held = {tp: offset for tp, offset in stored.items() if offset is not None}
        behind = stored_past_stable_end(ends, held)
        if not behind:
            return
        written = await (await self._plain_reader()).end_offsets(sorted(behind))
        raised = sorted(
            (tp for tp in behind if written.get(tp, -1) > held[tp]), key=lambda tp: tp.partition
        )
        for tp in raised:
            ends[tp] = held[tp] + 1
        if raised:
            log.warning(
                "standby changelog partitions %s hold a transaction still open (another worker's,"
                " paused, cut off or killed) below the records this worker committed there: their"
                " replicas read on past what their stores hold as it ends",
                [tp.partition for tp in raised],
            )

    async def _fence_lost_transactions(self, waiting: set[TP]) -> int:
        """With one transaction per worker, end the transactions open on `waiting` now, by
        fencing their workers' transactional ids; on any failure the wait goes on as before.
        How many ids it fenced."""
        worker = self.app.own_worker_transaction()
        if worker is None:
            return 0
        try:
            fenced = await fence_lost_transactions(
                self._consumer()._client,
                [TopicPartition(tp.topic, tp.partition) for tp in waiting],
                own_id=worker.transactional_id,
                timeout_ms=worker.timeout_ms,
                limit_s=FENCE_LIMIT_S,
            )
        except (KafkaError, OSError, TimeoutError, NotImplementedError) as exc:
            # NotImplementedError: the broker lacks a request's version (aiokafka's prepare).
            log.warning(
                "could not fence the worker that left these transactions open (%r): waiting for"
                " the broker to abort them at their timeout",
                exc,
            )
            return 0
        if fenced:
            log.warning(
                "fenced %s (a worker outside the group left a transaction open on this worker's"
                " partitions): the broker aborts it now instead of at its timeout",
                ", ".join(fenced),
            )
        return len(fenced)

    async def _plain_reader(self) -> AIOKafkaConsumer:
        """The consumer without isolation, for high watermarks: started on first use, on the
        consumer thread's loop."""
        if self._plain is None:
            plain = self._new_plain()
            try:
                await plain.start()
            except BaseException:
                await plain.stop()
                raise
            self._plain = plain
        return self._plain

    async def stop(self) -> None:
        if self._plain is not None:
            await self._plain.stop()
