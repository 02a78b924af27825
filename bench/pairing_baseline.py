"""The B3 baseline: a bare aiokafka consume -> orjson decode -> dict pairing -> produce loop.

No framework, no table, no transactions, no validation: the floor of what any worker costs on
this machine. Prints `ready` once it has its partitions, then runs until terminated.

    python -m bench.pairing_baseline BOOTSTRAP RAW_TOPIC OUT_TOPIC PARTITIONS
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def run(bootstrap: str, raw: str, out: str, partitions: int) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([TopicPartition(raw, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        halves: dict[bytes, dict[str, object]] = {}
        seen: set[bytes] = set()
        done: set[bytes] = set()
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
            sends = []
            for tp, records in batches.items():
                for r in records:
                    headers = dict(r.headers)
                    message_id = headers["message-id"]
                    if message_id in seen:
                        continue
                    seen.add(message_id)
                    event = orjson.loads(r.value)
                    key = r.key
                    if key in done:
                        continue
                    pair = halves.setdefault(key, {})
                    pair[headers["event-type"].decode()] = event
                    if len(pair) == 2:
                        del halves[key]
                        done.add(key)
                        value = orjson.dumps(
                            {
                                "sessionId": key.decode(),
                                "created": pair["session.created"],
                                "ended": pair["session.ended"],
                            }
                        )
                        sends.append(
                            await producer.send(out, value, key=key, partition=tp.partition)
                        )
            if sends:
                await asyncio.gather(*sends)
    finally:
        await producer.stop()
        await consumer.stop()


def main() -> None:
    bootstrap, raw, out, partitions = sys.argv[1:5]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(bootstrap, raw, out, int(partitions)))


if __name__ == "__main__":
    main()
