"""Kafka plumbing of the benchmarks: fast pre-loading and watching an output topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.progress import ProgressGuard
from cli.traffic import Delivery

_CHUNK = 5000


def record_of(d: Delivery, received_at: bytes) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers exactly as the producer writes them."""
    key = (d.session_id or d.message_id).encode()
    headers = [
        ("message-id", d.message_id.encode()),
        ("event-type", d.event_type.encode()),
        ("received-at", received_at),
    ]
    return key, d.body, headers


async def preload(bootstrap: str, topic: str, deliveries: Iterable[Delivery]) -> float:
    """Write deliveries in order, batched (not one ack at a time); the seconds it took."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    start = time.monotonic()
    try:
        received = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()).encode()
        pending: list[asyncio.Future[object]] = []
        for d in deliveries:
            key, value, headers = record_of(d, received)
            pending.append(await producer.send(topic, value, key=key, headers=headers))
            if len(pending) >= _CHUNK:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - start


@dataclass
class Watcher:
    """Reads an output topic as a read_committed consumer and notes when each record showed up."""

    bootstrap: str
    topic: str
    key_field: str = "sessionId"
    seen: dict[str, float] = field(default_factory=dict)  # first sighting, time.time()
    # The first sighting's record timestamp (the worker's producer sets it when the worker
    # appends the record), in seconds: what came before the worker sent it, and what after.
    appended: dict[str, float] = field(default_factory=dict)
    records: int = 0
    first_at: float | None = None
    last_at: float | None = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            # Latency is measured here: do not let the broker hold fetches for long.
            fetch_max_wait_ms=5,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def poll(self) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=50, max_records=5000)
        now = time.time()
        for records in batches.values():
            for r in records:
                self.records += 1
                key = orjson.loads(r.value).get(self.key_field)
                if isinstance(key, str) and key not in self.seen:
                    self.seen[key] = now
                    self.appended[key] = r.timestamp / 1000
                if self.first_at is None:
                    self.first_at = now
                self.last_at = now

    async def until(
        self, distinct: int, timeout_s: float, guard: ProgressGuard | None = None
    ) -> bool:
        """Read until `distinct` keys were seen; False on timeout. With a `guard`, a stalled
        partition raises `bench.progress.Stalled` at once instead of waiting out the timeout."""
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < distinct:
            if time.monotonic() > deadline:
                return False
            if guard is not None:
                await guard.check()
            await self.poll()
        return True

    async def settle(self, seconds: float) -> None:
        """Keep reading a little longer, so that duplicates would show up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.poll()
