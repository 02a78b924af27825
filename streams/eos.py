"""Exactly-once where faust-streaming 0.15 falls short: one transaction holds an event's whole effect.

Faust runs one transactional producer per input partition (id `{app}-{group}-{partition}`) and
commits a partition's offsets in that producer's transaction. The gaps below were found by the
rebalance and kill scenarios of tests/reliability (sessions completed twice or never,
faust-streaming #323 and #502):

1. Faust picks a send's transaction from the *destination* topic's metadata as its consumer sees
   it; for a topic it does not consume (our output topics) it finds none and sends with the
   plain, non-transactional producer, so a replayed record is emitted twice. We send outputs with
   the transactional id of the partition being processed (`transactional_id`).
2. The periodic commit runs beside the agent: it reads the acked offsets, then awaits the broker
   while the agent goes on sending the next events' outputs into the same transaction. Those
   outputs commit without their offsets, and are produced again when the records are replayed
   after a rebalance or a crash. `CommitGate` makes processing one event (outputs, table writes,
   ack) and a commit mutually exclusive, so a transaction ends exactly at an event boundary.
3. Faust writes table changelogs with the plain producer, outside every transaction: after a
   crash the changelog holds changes whose outputs were aborted. Our table sends no changelog
   of its own; the processor writes it in the transaction (tables/sessions.py). And the local
   RocksDB, written before the commit, is trusted after a clean stop only (streams/state.py).
4. On a rebalance Faust stops the producers of the partitions it loses, but not always (a
   partition that stays as a standby keeps its producer); once another worker has fenced that
   producer, getting the partition back reuses the fenced one and every send fails.
   `end_transactions` commits what was processed and closes every transactional producer before
   the partitions move; Faust opens fresh ones for the new assignment.
5. On a rebalance Faust drops the acked offsets of the revoked partitions *before* anything can
   commit them, and it commits a transaction only together with offsets: the events processed
   since the last commit then end in an aborted transaction (outputs and changelog gone) while
   the worker's local RocksDB keeps their writes. Re-reading those events from the committed
   offset finds their sessions already completed and emits nothing: completed sessions lost.
   `CommitGate.guard` commits first, at an event boundary, when the revocation starts, and
   events fetched before it that reach the agent later are discarded unprocessed and un-acked
   (`CommitGate.admits`), to be read again from the committed offset.
6. Before restoring a table partition, Faust asks for the changelog's end ("highwater"). In
   exactly-once mode it takes the consumer's cached last stable offset, which is unknown (-1)
   for a partition it has not fetched since the rebalance: recovery then skips what another
   worker wrote meanwhile (state lost) or stops the worker with a ConsistencyError.
   `read_committed_highwaters` asks the broker instead (ListOffsets with the consumer's
   read_committed isolation: the last stable offset).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_GUARDED = "_sessionflow_gated_commit"

log = logging.getLogger(__name__)


def transactional_id(app: faust.App, source_topic: str, partition: int) -> str | None:
    """The id of the transaction that commits `source_topic`'s `partition`; None if not exactly-once."""
    if not app.in_transaction:
        return None
    group = app.assignor.group_for_topic(source_topic)
    return f"{app.conf.id}-{group}-{partition}"


class CommitGate:
    """Held while an event is processed and acked, and while offsets are committed.

    It also refuses events of a consumer generation that is being revoked (gap 5 above).
    """

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self._revoked_generation: int | None = None

    def admits(self, app: faust.App, message: Any) -> bool:
        """Under the lock: may this event be processed?

        Faust stamps each message with the consumer generation it was fetched in. An event of
        an older generation, or of the one being revoked, is refused: marked acked for Faust's
        stream only (its offset is not recorded, so it is never committed), to be read again
        from the committed offset by the partition's next owner.
        """
        current = app.consumer_generation_id
        if message.generation_id == current and current != self._revoked_generation:
            return True
        message.acked = True
        log.debug("refused an event of generation %s (now %s)", message.generation_id, current)
        return False

    def guard(self, app: faust.App) -> None:
        """Route every commit of the app's consumer through the gate, and commit at the start of
        every revocation (once per consumer)."""
        consumer: Any = app.consumer
        if getattr(consumer, _GUARDED, False):
            return
        commit = consumer.commit
        on_revoked = consumer.on_partitions_revoked

        async def flush_and_commit(*args: Any, **kwargs: Any) -> bool:
            # Changelog records still in Faust's buffer belong to the events being committed.
            await app.producer.flush()
            done: bool = await commit(*args, **kwargs)
            return done

        async def gated_commit(*args: Any, **kwargs: Any) -> bool:
            async with self.lock:
                return await flush_and_commit(*args, **kwargs)

        async def commit_then_revoke(revoked: Any) -> None:
            async with self.lock:  # after the event in hand, before the next
                self._revoked_generation = app.consumer_generation_id
                done = await flush_and_commit()
            log.info(
                "revoking generation %s: committed at an event boundary (%s)",
                self._revoked_generation,
                "committed" if done else "nothing new",
            )
            await on_revoked(revoked)

        consumer.commit = gated_commit
        consumer.on_partitions_revoked = commit_then_revoke
        setattr(consumer, _GUARDED, True)


async def _end_offsets(self: Any, partitions: list[Any]) -> Any:
    return await self._ensure_consumer().end_offsets(partitions)


async def end_transactions(app: faust.App) -> None:
    """Before a rebalance: commit everything processed, then close every transactional producer."""
    await app.consumer.commit()
    if not app.in_transaction:
        return
    producer: Any = app.producer
    for tid in list(producer._transaction_producers):
        await producer.stop_transaction(tid)


def read_committed_highwaters() -> None:
    """Make Faust's recovery read changelog ends from the broker (idempotent, process-wide)."""
    setattr(AIOKafkaConsumerThread, "_highwaters", _end_offsets)  # noqa: B010  (a method, patched)
