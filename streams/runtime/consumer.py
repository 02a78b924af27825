"""Faust's aiokafka consumer, with the edges sessionflow relies on owned, each with its reason.

Subclasses of faust-streaming 0.15.3's `Consumer` and `AIOKafkaConsumerThread` (the transport's
documented extension point, `streams/runtime/transport.py`); streams/runtime/compat.py checks at
start-up that every method overridden here is still the one Faust calls.

1. The seek at the end of recovery loses records (issue 17, the stalled partition). Two ways:
   a. `Recovery.on_recovery_completed` resumes the stream partitions and seeks them to their
      committed offsets while the flow is still running (it was resumed to read the changelogs),
      and only then calls `app.flow_control.resume()`, which clears every stream's queue. A
      record fetched after its partition's seek and queued before that clear is dropped
      unprocessed and un-acked; no later seek brings it back, so the partition's commits stop
      behind it and its session never completes.
   b. Faust drops fetched records of partitions it is not ready for (paused during recovery, or
      fetched across a rebalance) and counts on that seek to read them again; when recovery
      pauses the changelogs, an in-flight fetch asks aiokafka for an empty set of partitions,
      which aiokafka reads as "all of them", so the stream partitions' records are drained and
      dropped. But `seek_to_committed` leaves a partition without a committed offset (a new
      group or partition, or committed at 0) where it is: those records are never read again.
   `perform_seek` stops the flow first, so nothing is queued until recovery resumes the flow
   after the clear (what was queued before the seek is cleared and read again), and seeks the
   stream partitions that have no committed offset to their beginning, as the group's reset
   policy (earliest) would.
2. Changelog ends are read from the broker. Before restoring a table partition Faust asks for
   the changelog's end; in exactly-once mode it takes the consumer's cached last stable offset,
   unknown (-1) for a partition not fetched since the rebalance, and recovery then skips what
   another worker wrote meanwhile or stops with a ConsistencyError. ListOffsets with the
   consumer's read_committed isolation returns the last stable offset itself.
3. Commits happen at unit boundaries (`CommitGate`), with Faust's producer flushed first (the
   records of the units being committed may still sit in its buffer).
4. A revocation commits first. Faust drops the acked offsets of revoked partitions before
   anything commits them, and commits a transaction only together with offsets: the work done
   since the last commit would end in an aborted transaction while the local table keeps its
   writes, and re-reading it from the committed offset would emit nothing. So the revocation
   takes the gate, marks the generation revoked (`CommitGate.admits`) and commits, then lets
   Faust go on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.transports import TPorTopicSet

from streams.runtime.gate import CommitGate

log = logging.getLogger(__name__)


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """The thread that runs aiokafka's consumer: changelog ends come from the broker (2)."""

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        ends: Mapping[TP, int] = await self._ensure_consumer().end_offsets(partitions)
        return ends


class Consumer(faust_aiokafka.Consumer):
    """The worker's consumer: the seek, commit and revocation edges (1, 3, 4 above)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.gate = CommitGate()

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        self.stop_flow()  # (1a) recovery resumes the flow once the queues are cleared
        await super().perform_seek()
        # (1b) what has no committed offset starts from the beginning, wherever aiokafka was.
        uncommitted = {
            tp
            for tp in self.assignment()
            if not self._is_changelog_tp(tp) and not self._committed_offset.get(tp)
        }
        if uncommitted:
            await self._thread.seek_to_beginning(*faust_aiokafka.ensure_aiokafka_TPset(uncommitted))

    async def commit(
        self, topics: TPorTopicSet | None = None, start_new_transaction: bool = True
    ) -> bool:
        async with self.gate.lock:
            return await self._flush_and_commit(topics, start_new_transaction)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        async with self.gate.lock:  # after the unit in hand, before the next
            generation = self.app.consumer_generation_id
            self.gate.revoke(generation)
            done = await self._flush_and_commit(None, True)
        log.info(
            "revoking generation %s: committed at a unit boundary (%s)",
            generation,
            "committed" if done else "nothing new",
        )
        await super().on_partitions_revoked(revoked)

    async def _flush_and_commit(self, topics: TPorTopicSet | None, start_new: bool) -> bool:
        await self.app.producer.flush()
        done: bool = await super().commit(topics, start_new_transaction=start_new)
        return done

    def committed_offset(self, tp: TP) -> int | None:
        """The next offset of `tp` that the group will read after a restart, as last committed
        or sought by this consumer; None before it knows."""
        offset: int | None = self._committed_offset.get(tp)
        return offset
