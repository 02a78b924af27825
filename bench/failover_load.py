"""Fail-over under load, by transaction scope (B5): what a worker lost mid-transaction costs.

B5's own fail-over kills an idle worker, which holds no open transaction. Under load a worker
always has one, and what happens to it depends on the scope: with one transaction per partition
the partition's next owner aborts it at once (it opens the same transactional id); with one per
worker the next owner's restore fences the lost worker's transactional id, which aborts it
(streams/runtime/fencing.py; before that, it stayed open until the transaction timeout, and the
partitions it touched waited that long). Two exactly-once workers, complete sessions written to the raw
topic at a steady rate, kill -9 of one of them mid-load, not restarted; for the sessions sent after
the kill, how long each took to its completed record (the longest per partition).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.b3_worker import all_ready, exactly_once_workers
from bench.context import Context
from bench.kafka_io import Watcher, record_of
from bench.proc import fetch_text
from sessionflow.raw_record import partition_for_key

RATE = 100  # complete sessions a second
SECONDS = 24.0
KILL_AFTER_S = 6.0
# Everything sent must be completed within this long after the last send.
DRAIN_S = 120.0


async def send_steadily(
    ctx: Context, topic: str, sessions: list[tuple[str, list[Any]]], on_tick: Any
) -> dict[str, float]:
    """Each session's two halves at RATE sessions a second; when each session's last half went."""
    producer = AIOKafkaProducer(
        bootstrap_servers=ctx.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    sent_at: dict[str, float] = {}
    started = time.time()
    try:
        for i, (sid, halves) in enumerate(sessions):
            await asyncio.sleep(max(0.0, started + i / RATE - time.time()))
            on_tick(time.time() - started)
            received = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()).encode()
            for half in halves:
                key, value, headers = record_of(half, received)
                await producer.send(topic, value, key=key, headers=headers)
            sent_at[sid] = time.time()
        await producer.flush()
    finally:
        await producer.stop()
    return sent_at


async def measure(
    ctx: Context, scope: str, sessions: list[tuple[str, list[Any]]], run: int = 0
) -> dict[str, Any]:
    """One fail-over under load in `scope` ("partition" or "worker"), in a namespace of its own
    (`run` tells repeated ones apart)."""
    namespace = ctx.namespace(f"failover-load-{scope}-{run}")
    topics = await ctx.make_topics(namespace)
    workers = exactly_once_workers(
        ctx, namespace, f"failover-load-{scope}-{run}", 2, SESSIONFLOW_TRANSACTION_SCOPE=scope
    )
    watcher = Watcher(ctx.bootstrap, topics.completed)
    await watcher.start()
    killed: list[float] = []

    def kill_when_due(elapsed_s: float) -> None:
        if not killed and elapsed_s >= KILL_AFTER_S:
            workers[0].service.kill()
            killed.append(time.time())

    try:
        await all_ready(workers, 120)
        in_effect = f'{{guarantee="exactly_once",transactions="{scope}"}} 1.0'
        metrics = fetch_text(f"http://127.0.0.1:{workers[1].port}/metrics")
        if f"sessionflow_processing_guarantee{in_effect}" not in metrics:
            raise RuntimeError(f"fail-over under load: the workers do not run {scope} transactions")
        reading = asyncio.create_task(watcher.until(len(sessions), SECONDS + DRAIN_S))
        sent_at = await send_steadily(ctx, topics.raw, sessions, kill_when_due)
        if not await reading:
            raise RuntimeError(
                f"fail-over under load ({scope}): {len(watcher.seen)} of {len(sessions)} sessions"
                f" completed"
            )
    finally:
        for w in workers:
            w.service.stop()
        await watcher.stop()
    after = {s: watcher.seen[s] - t for s, t in sent_at.items() if t >= killed[0]}
    by_partition: dict[int, float] = defaultdict(float)
    for sid, wait in after.items():
        partition = partition_for_key(sid.encode(), ctx.partitions)
        by_partition[partition] = max(by_partition[partition], wait)
    longest = sorted(by_partition.values(), reverse=True)
    return {
        "scope": scope,
        "sessions": len(sessions),
        "after_kill_p50_s": round(statistics.median(after.values()), 3),
        "longest_wait_s": round(longest[0], 2),
        "longest_wait_per_partition_s": [round(w, 2) for w in longest],
    }
