"""Durable publishing to Kafka: an idempotent acks=all producer that is replaced when it breaks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    IllegalStateError,
    InvalidProducerEpoch,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    RecordTooLargeError,
    UnknownProducerId,
)

from producer.errors import PublishUnavailable, RecordTooLarge
from producer.records import RecordHeaders
from producer.settings import ProducerSettings
from sessionflow.topics import STARTUP_TIMEOUT_S, Topics, ensure_topics, max_record_bytes

log = logging.getLogger("producer.publisher")

# After these the idempotent producer's sequence state is unusable (aiokafka issue 1017).
_FATAL = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    ProducerFenced,
    ProducerClosed,
    IllegalStateError,
)
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)
# Consecutive failed publishes (timeouts included) after which the client is replaced anyway.
_MAX_FAILURES = 3


class Publisher(Protocol):
    """What the HTTP app needs from the Kafka side; tests substitute an in-memory one."""

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish_raw(self, key: bytes, body: bytes, headers: RecordHeaders) -> None: ...

    async def publish_dlq(self, key: bytes | None, body: bytes, headers: RecordHeaders) -> None: ...


class KafkaPublisher:
    """Sends to the raw and DLQ topics and waits for the ack under a deadline.

    A background task probes the cluster every `readiness_interval_seconds` (a metadata
    request through the producer's own client): that is the readiness signal, and while it
    fails publishes are refused at once with PublishUnavailable rather than queued.
    """

    def __init__(self, settings: ProducerSettings) -> None:
        self._settings = settings
        topics = Topics.for_settings(settings)
        self._raw_topic = topics.raw
        self._dlq_topic = topics.dlq
        self._timeout = settings.publish_timeout_seconds
        self._producer: Any = None
        self._monitor: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._reachable = False
        self._broken = False
        self._failures = 0
        self._closing: set[asyncio.Task[None]] = set()
        self.recreations = 0

    @property
    def ready(self) -> bool:
        return self._producer is not None and self._reachable and not self._broken

    async def start(self) -> None:
        request_timeout = 30.0
        # Waits (logging "waiting for Kafka") while no broker answers yet: a producer started
        # before its broker comes up without a restart.
        await ensure_topics(
            self._settings,
            Topics.for_settings(self._settings).specs(self._settings),
            timeout_s=request_timeout,
            startup_timeout_s=STARTUP_TIMEOUT_S,
        )
        self._producer = await asyncio.wait_for(self._new_producer(), request_timeout)
        self._reachable = True
        self._monitor = asyncio.create_task(self._watch(), name="producer-readiness")

    async def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        if self._closing:
            await asyncio.gather(*self._closing)
        producer, self._producer = self._producer, None
        if producer is not None:
            # stop() flushes what is in flight; bounded so that shutdown cannot hang on a dead broker.
            await self._close(producer, self._settings.shutdown_timeout_seconds)

    async def publish_raw(self, key: bytes, body: bytes, headers: RecordHeaders) -> None:
        await self._publish(self._raw_topic, key, body, headers)

    async def publish_dlq(self, key: bytes | None, body: bytes, headers: RecordHeaders) -> None:
        await self._publish(self._dlq_topic, key, body, headers)

    async def _publish(
        self, topic: str, key: bytes | None, body: bytes, headers: RecordHeaders
    ) -> None:
        producer = self._producer
        if producer is None or not self._reachable or self._broken:
            raise PublishUnavailable("kafka_unavailable", "Kafka is not reachable right now")
        try:
            async with asyncio.timeout(self._timeout):
                ack = await producer.send(topic, value=body, key=key, headers=headers)
                await ack
        except TimeoutError as exc:
            self._failed()
            raise PublishUnavailable("publish_timeout", "no acknowledgement in time") from exc
        except _TOO_LARGE as exc:
            raise RecordTooLarge("record_too_large", "Kafka refuses a record this large") from exc
        except _FATAL as exc:
            self._failed(fatal=True)
            raise PublishUnavailable("kafka_error", type(exc).__name__) from exc
        except KafkaError as exc:
            self._failed()
            raise PublishUnavailable("kafka_error", type(exc).__name__) from exc
        self._failures = 0

    def _failed(self, *, fatal: bool = False) -> None:
        self._failures += 1
        if fatal or self._failures >= _MAX_FAILURES:
            self._broken = True
            self._wake.set()

    async def _new_producer(self) -> Any:
        s = self._settings
        producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            client_id="sessionflow-producer",
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_request_size=max_record_bytes(s),
            # Records older than this expire instead of lingering behind an outage.
            request_timeout_ms=int(s.publish_timeout_seconds * 1000),
            metadata_max_age_ms=30_000,
        )
        try:
            await producer.start()
        except BaseException:
            await self._close(producer, 5.0)
            raise
        return producer

    async def _close(self, producer: Any, limit_s: float) -> None:
        try:
            await asyncio.wait_for(producer.stop(), limit_s)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("kafka producer did not stop cleanly: %s", type(exc).__name__)

    async def _watch(self) -> None:
        interval = self._settings.readiness_interval_seconds
        probe_timeout = max(interval, 1.0)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            producer = self._producer
            sender = getattr(getattr(producer, "_sender", None), "sender_task", None)
            if sender is not None and sender.done():
                self._broken = True  # its background sender died: nothing will ever be delivered
            try:
                if self._broken or not self._reachable:
                    # After any outage, start afresh: an idempotent producer that lost batches
                    # can stay stuck on their sequence numbers (aiokafka issue 1017).
                    await self._replace(probe_timeout)
                else:
                    await asyncio.wait_for(producer.client.fetch_all_metadata(), probe_timeout)
            except (TimeoutError, KafkaError, OSError) as exc:
                if self._reachable:
                    log.warning("kafka unreachable: %s", type(exc).__name__)
                self._reachable = False
            else:
                if not self._reachable:
                    log.info("kafka reachable again")
                self._reachable = True

    async def _replace(self, limit_s: float) -> None:
        started = time.monotonic()
        fresh = await asyncio.wait_for(self._new_producer(), max(limit_s, 5.0))
        old, self._producer = self._producer, fresh
        self._broken = False
        self._failures = 0
        self.recreations += 1
        log.warning("kafka producer re-created in %.0f ms", (time.monotonic() - started) * 1000)
        if old is not None:
            # The old client may hang on its dead batches: close it off the request path.
            task = asyncio.create_task(self._close(old, 5.0))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
