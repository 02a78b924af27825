"""Tells a stall from slowness while a benchmark waits for a worker's outputs.

A partition whose committed offset stands still behind its end while the worker says it is
ready is a correctness failure, not a slow run: a record there will never be processed (issue
17). The guard polls the group's committed offsets and the raw topic's ends; once a partition has
stood still for `stall_s` with the worker ready, `check` raises `Stalled`, naming the partition and
the offset, and the benchmark fails at once instead of waiting out its timeout.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.stall import StallClock

POLL_S = 1.0


class Stalled(RuntimeError):
    """A partition stopped behind a record the worker will never process."""


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback only
            return bool(r.status == 200)
    except OSError:
        return False


@dataclass
class ProgressGuard:
    bootstrap: str
    group: str
    topic: str
    readyz: str
    stall_s: float = 30.0
    _clock: StallClock = field(default_factory=StallClock)
    _last_poll: float = 0.0
    _partitions: list[TopicPartition] = field(default_factory=list)
    _admin: AIOKafkaAdminClient | None = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await self._admin.start()
        (described,) = await self._admin.describe_topics([self.topic])
        self._partitions = [
            TopicPartition(self.topic, p["partition"]) for p in described["partitions"]
        ]
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def check(self) -> None:
        """Raise `Stalled` when a partition stood still behind its end for `stall_s` while the
        worker was ready; cheap to call often (polls Kafka at most once a second)."""
        now = time.monotonic()
        if now - self._last_poll < POLL_S:
            return
        self._last_poll = now
        if not await asyncio.to_thread(ready, self.readyz):
            self._clock.forget()  # starting, restoring or rebalancing: not a stall yet
            return
        committed, ends = await self._offsets()
        for partition, end in ends.items():
            offset = committed.get(partition, 0)
            seconds = self._clock.observe(partition, offset, end, now)
            if seconds >= self.stall_s:
                raise Stalled(
                    f"correctness: partition {partition} of {self.topic} stands at committed"
                    f" offset {offset} with {end - offset} records behind it (end {end}) for"
                    f" {seconds:.0f} s while the worker is ready: the record at offset {offset}"
                    " was never processed"
                )

    async def _offsets(self) -> tuple[dict[int, int], dict[int, int]]:
        assert self._admin is not None
        assert self._consumer is not None
        listed = await self._admin.list_consumer_group_offsets(self.group)
        committed = {tp.partition: m.offset for tp, m in listed.items() if tp.topic == self.topic}
        ends = await self._consumer.end_offsets(self._partitions)
        return committed, {tp.partition: end for tp, end in ends.items()}
