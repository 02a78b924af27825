"""Exactly-once where faust-streaming 0.15 falls short: one transaction holds an event's whole effect.

Faust runs one transactional producer per input partition (id `{app}-{group}-{partition}`) and
commits a partition's offsets in that producer's transaction. Three gaps, found by the rebalance
scenario of tests/reliability (sessions completed twice, faust-streaming #323 and #502):

1. Faust picks a send's transaction from the *destination* topic's metadata as its consumer sees
   it; for a topic it does not consume (our output topics) it finds none and sends with the
   plain, non-transactional producer, so a replayed record is emitted twice. We send outputs with
   the transactional id of the partition being processed (`transactional_id`).
2. The periodic commit runs beside the agent: it reads the acked offsets, then awaits the broker
   while the agent goes on sending the next events' outputs into the same transaction. Those
   outputs commit without their offsets, and are produced again when the records are replayed
   after a rebalance or a crash. `CommitGate` makes processing one event (outputs, table writes,
   ack) and a commit mutually exclusive, so a transaction ends exactly at an event boundary.
3. Table changelog records wait in Faust's producer buffer and can slip into the next
   transaction; the gated commit first drains the buffer into the current one.
4. On a rebalance Faust stops the producers of the partitions it loses, but not always (a
   partition that stays as a standby keeps its producer); once another worker has fenced that
   producer, getting the partition back reuses the fenced one and every send fails.
   `end_transactions` commits what was processed and closes every transactional producer before
   the partitions move; Faust opens fresh ones for the new assignment.
5. Before restoring a table partition, Faust asks for the changelog's end ("highwater"). In
   exactly-once mode it takes the consumer's cached last stable offset, which is unknown (-1)
   for a partition it has not fetched since the rebalance: recovery then skips what another
   worker wrote meanwhile (state lost) or stops the worker with a ConsistencyError.
   `read_committed_highwaters` asks the broker instead (ListOffsets with the consumer's
   read_committed isolation: the last stable offset).
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_GUARDED = "_sessionflow_gated_commit"


def transactional_id(app: faust.App, source_topic: str, partition: int) -> str | None:
    """The id of the transaction that commits `source_topic`'s `partition`; None if not exactly-once."""
    if not app.in_transaction:
        return None
    group = app.assignor.group_for_topic(source_topic)
    return f"{app.conf.id}-{group}-{partition}"


class CommitGate:
    """Held while an event is processed and acked, and while offsets are committed."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()

    def guard(self, app: faust.App) -> None:
        """Route every commit of the app's consumer through the gate (once per consumer)."""
        consumer: Any = app.consumer
        if getattr(consumer, _GUARDED, False):
            return
        commit = consumer.commit

        async def gated_commit(*args: Any, **kwargs: Any) -> bool:
            async with self.lock:
                # Changelog records still in Faust's buffer belong to the events being committed.
                await app.producer.flush()
                done: bool = await commit(*args, **kwargs)
                return done

        consumer.commit = gated_commit
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
