"""aiokafka's sender with a batch for a partition whose leader it does not know, run for a
moment: the loop that spun a core while the broker was down (sessionflow/metadata_backoff.py)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer, TopicPartition


async def sender_updates(producer: AIOKafkaProducer, seconds: float = 0.5) -> int:
    """How many metadata updates `producer`'s sender asks for in `seconds` (each through the
    client's `_metadata_update` as it stands); the producer is stopped afterwards."""
    client = producer.client
    update = client._metadata_update
    count = 0

    async def counted(cluster_metadata: object, topics: object) -> bool:
        nonlocal count
        count += 1
        updated: bool = await update(cluster_metadata, topics)
        return updated

    client._metadata_update = counted
    synchronizer = asyncio.get_running_loop().create_task(client._md_synchronizer())
    await producer._message_accumulator.add_message(TopicPartition("t", 0), b"k", b"v", 1)
    await producer._sender.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await producer._sender.close()  # the batch is never sent: stop() waits no flush
        await producer.stop()
        synchronizer.cancel()
        await asyncio.gather(synchronizer, return_exceptions=True)
    return count
