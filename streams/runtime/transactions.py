"""Sends in the transaction of the partition being processed, and the producers' lifetime.

faust-streaming 0.15.3 runs one transactional producer per input partition (transactional id
`{app id}-{topic group}-{partition}`) and commits a partition's offsets in its transaction. Two
gaps, found by the rebalance and kill scenarios of tests/reliability (faust-streaming #323, #502):

1. Faust picks a send's transaction from the destination topic's partition as its consumer sees
   it; for a topic it does not consume (our outputs, the table's changelog) it finds none and
   sends with the plain producer, outside every transaction: a replayed record is emitted twice,
   and after a crash the changelog holds changes whose outputs were aborted. We send with the
   transactional id of the partition being processed (`transactional_id`).
2. On a rebalance Faust stops the producers of the partitions it loses, but not always (a
   partition that stays as a standby keeps its producer); once another worker has fenced it,
   getting the partition back reuses the fenced producer and every send fails.
   `end_transactions` commits what was processed and closes every transactional producer before
   the partitions move; Faust opens fresh ones for the new assignment.
"""

from __future__ import annotations

from typing import Any

import faust


def transactional_id(app: faust.App, source_topic: str, partition: int) -> str | None:
    """The id of the transaction that commits `source_topic`'s `partition`; None if not exactly-once."""
    if not app.in_transaction:
        return None
    group = app.assignor.group_for_topic(source_topic)
    return f"{app.conf.id}-{group}-{partition}"


async def end_transactions(app: faust.App) -> None:
    """Before a rebalance: commit everything processed, then close every transactional producer."""
    await app.consumer.commit()
    if not app.in_transaction:
        return
    producer: Any = app.producer
    for tid in list(producer._transaction_producers):
        await producer.stop_transaction(tid)


def refuse(message: Any) -> None:
    """Let Faust's stream forget an event without recording its offset: it is never committed,
    and is read again from the committed offset by the partition's next owner."""
    message.acked = True
