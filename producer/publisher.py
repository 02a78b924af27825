"""Durable publishing to Kafka through librdkafka (confluent-kafka): acks=all, idempotent.

librdkafka partitions, batches, retries and talks to the brokers in its own threads; this
process only hands it each record (`produce`, a few microseconds) and learns of the broker's
ack from a delivery report. The loop serves the reports itself (producer/delivery.py: a poll at
each hand-over and every millisecond while records are in flight); each settles its record's
future, whose callback tells the request how its record ended: 2xx only once acknowledged.
(aiokafka did all of that on the event loop: ~52 us of loop CPU per record against ~33 here,
and 0.5-0.7x the accepted webhooks per process end to end; see
bench/results/producer-experiments.md.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal, Protocol, TypeAlias

from confluent_kafka import KafkaError, KafkaException, Producer

from producer.deadlines import Deadline, Deadlines
from producer.delivery import Acked, ReportPoller, settle
from producer.errors import PublishUnavailable, RecordTooLarge
from producer.settings import ProducerSettings
from producer.tasks import Background
from sessionflow.kafka_security import librdkafka_security
from sessionflow.raw_record import RecordHeaders
from sessionflow.topics import STARTUP_TIMEOUT_S, Topics, ensure_topics, max_record_bytes

log = logging.getLogger("producer.publisher")

_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE})
# How long past its own limit a probe may take before the wait for it is abandoned, and how
# long a fresh client is given to reach the cluster.
_PROBE_SLACK_S = 5.0
_FRESH_PROBE_S = 5.0

ReplaceReason: TypeAlias = Literal["fatal", "unreachable"]
REPLACE_REASONS: tuple[ReplaceReason, ...] = ("fatal", "unreachable")

# What a future settles to when our deadline passes first (a KafkaError stands for itself).
_TIMED_OUT = KafkaError(KafkaError._TIMED_OUT)

# Told once how a record ended: None once Kafka acknowledged it, else the PublishUnavailable or
# RecordTooLarge that its request is answered with. Called from the event loop, never from
# within the call that handed the record over.
Delivered: TypeAlias = Callable[[Exception | None], None]


def producer_config(settings: ProducerSettings) -> dict[str, Any]:
    """librdkafka's settings: what makes a 2xx mean "the exact bytes are in Kafka"."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        **librdkafka_security(settings),
        "client.id": "sessionflow-producer",
        "enable.idempotence": True,
        "acks": "all",
        # Java's (and aiokafka's) murmur2 for keyed records: a session's events keep landing
        # in the partition the worker's table expects, whichever client wrote them.
        "partitioner": "murmur2_random",
        # Batches form anyway while a request is in flight; a longer linger only adds latency.
        "linger.ms": 1,
        "message.max.bytes": max_record_bytes(settings),
        # A record not acknowledged by then fails (its request has had its 503 by then).
        "message.timeout.ms": int(settings.publish_timeout_seconds * 1000),
        "request.timeout.ms": int(settings.publish_timeout_seconds * 1000),
        "metadata.max.age.ms": 30_000,
        # A restarted broker is found within a second, not librdkafka's default 10 s.
        "reconnect.backoff.max.ms": 1000,
    }


def fresh_client_due(
    unreachable_since: float | None, last_tried: float, now: float, after_s: float
) -> bool:
    """Whether to try a fresh client: Kafka unreachable for `after_s`, and no try since."""
    if unreachable_since is None:
        return False
    return now - max(unreachable_since, last_tried) >= after_s


class Publisher(Protocol):
    """What the HTTP app needs from the Kafka side; tests substitute an in-memory one."""

    @property
    def ready(self) -> bool: ...

    @property
    def clients_replaced(self) -> Mapping[str, int]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def publish_raw(
        self, key: bytes | None, body: bytes, headers: RecordHeaders, done: Delivered
    ) -> None:
        """Hand a record to the raw topic; `done` learns how it ended. Raises PublishUnavailable
        or RecordTooLarge at once when it cannot even be handed over."""

    def publish_dlq(
        self, key: bytes | None, body: bytes, headers: RecordHeaders, done: Delivered
    ) -> None:
        """The same, to the dead-letter topic."""


class KafkaPublisher:
    """Sends to the raw and DLQ topics and waits for the ack under a deadline.

    A background task probes the cluster every `readiness_interval_seconds` (a metadata
    request through the producer's own client), and at once when librdkafka reports all brokers
    down: the probe is the readiness signal, and while it fails publishes are refused at once
    with PublishUnavailable rather than queued.

    The client is replaced by a fresh one after a fatal error, and also once Kafka has been
    unreachable for `kafka_fresh_client_after_seconds`: librdkafka (2.13 to 2.16 at least) can
    be left with no broker to connect to at all. A broker shutting down cleanly answers
    Metadata requests listing no live broker; librdkafka drops the brokers it knew, and when
    its re-bootstrap does not follow, it never tries to connect again (librdkafka issue 5301;
    here about one clean bounce in 80, with readiness stuck at 503 after the broker was back).
    The fresh client is kept only once it has reached the cluster itself.
    """

    def __init__(self, settings: ProducerSettings) -> None:
        self._settings = settings
        topics = Topics.for_settings(settings)
        self._raw_topic = topics.raw
        self._dlq_topic = topics.dlq
        # Our own deadline for the ack; librdkafka's message.timeout.ms is the same length but
        # checked only about once a second.
        self._deadlines = Deadlines(settings.publish_timeout_seconds)
        self._producer: Producer | None = None
        self._poller: ReportPoller | None = None
        self._monitor = Background("producer-readiness", self._watch)
        self._wake = asyncio.Event()
        # Since when Kafka has been unreachable (None: reachable; not reached before start),
        # and when a fresh client was last tried.
        self._unreachable_since: float | None = 0.0
        self._fresh_tried = 0.0
        self.clients_replaced: dict[str, int] = dict.fromkeys(REPLACE_REASONS, 0)
        # Set by a fatal error only: librdkafka recovers its idempotent state from timeouts and
        # outages itself (KIP-360 epoch bumps), which aiokafka could not (its issue 1017).
        self._broken = False
        self._closing: set[asyncio.Task[None]] = set()

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
        self._producer, self._poller = self._new_producer()
        await self._probe(self._producer, request_timeout)
        self._unreachable_since = None
        self._monitor.start()

    async def stop(self) -> None:
        await self._monitor.stop()
        if self._closing:
            await asyncio.gather(*self._closing)
        producer, self._producer = self._producer, None
        poller, self._poller = self._poller, None
        if producer is not None and poller is not None:
            # Flushes what is in flight; bounded so that shutdown cannot hang on a dead broker.
            await self._close(producer, poller, self._settings.shutdown_timeout_seconds)
        await self._deadlines.stop()

    # Callbacks, not a coroutine per record: the request is answered from the future's callback,
    # without a task of its own (bench/results/producer-experiments.md, section 25).
    def publish_raw(
        self, key: bytes | None, body: bytes, headers: RecordHeaders, done: Delivered
    ) -> None:
        self._send(self._raw_topic, key, body, headers, done)

    def publish_dlq(
        self, key: bytes | None, body: bytes, headers: RecordHeaders, done: Delivered
    ) -> None:
        self._send(self._dlq_topic, key, body, headers, done)

    def _send(
        self, topic: str, key: bytes | None, body: bytes, headers: RecordHeaders, done: Delivered
    ) -> None:
        producer, poller = self._producer, self._poller
        if producer is None or poller is None or not self._reachable or self._broken:
            raise PublishUnavailable("kafka_unavailable", "Kafka is not reachable right now")
        acked: Acked = poller.loop.create_future()
        try:
            producer.produce(
                topic,
                body,
                key,
                # Our (str, bytes) pairs are what it takes; its stub's list is invariant.
                headers=headers,  # type: ignore[arg-type]
                on_delivery=poller.callback(acked),
            )
            poller.kick()
        except BufferError as exc:
            raise PublishUnavailable("kafka_queue_full", "too many records in flight") from exc
        except KafkaException as exc:
            raise self._refused(exc.args[0]) from exc
        # The report or our deadline settles the future once; its callback runs on the loop.
        deadline = self._deadlines.arm(partial(settle, acked, _TIMED_OUT, None))
        acked.add_done_callback(partial(self._settled, deadline, done))

    def _settled(self, deadline: Deadline, done: Delivered, acked: Acked) -> None:
        deadline.disarm()
        error = acked.result()
        done(None if error is None else self._refused(error))

    def _refused(self, error: KafkaError) -> Exception:
        """What a failed delivery (or produce call) means for the request and for the client."""
        code = error.code()
        if code in _TOO_LARGE:
            return RecordTooLarge("record_too_large", "Kafka refuses a record this large")
        if code in (KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT):
            return PublishUnavailable("publish_timeout", "no acknowledgement in time")
        if error.fatal():
            self._broken = True
            self._wake.set()
        return PublishUnavailable("kafka_error", error.name())

    def _new_producer(self) -> tuple[Producer, ReportPoller]:
        s = self._settings
        poller = ReportPoller(asyncio.get_running_loop())
        producer = Producer(
            {
                **producer_config(s),
                "logger": logging.getLogger("producer.librdkafka"),
                # Served by the poller's polls, on the loop.
                "error_cb": self._on_error,
            }
        )
        poller.start(producer)
        return producer, poller

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka's client-level errors, on the event loop."""
        if error.fatal():
            log.error("kafka producer fatal error: %s", error.name())
            self._broken = True
            self._wake.set()
        elif error.code() == KafkaError._ALL_BROKERS_DOWN and self._reachable:
            # A hint, not a verdict: the probe, brought forward, decides. librdkafka 2.16
            # re-bootstraps during an outage, and a bootstrap connection retired just after the
            # cluster answered again reports all brokers down once more; taken as a verdict, it
            # answered the first webhook after readiness with 503. (During an outage it comes
            # about once a second; the probes keep their interval then.)
            log.info("kafka reports all brokers down: probing now")
            self._wake.set()

    @property
    def _reachable(self) -> bool:
        return self._unreachable_since is None

    def _lost(self, reason: str) -> None:
        if self._reachable:
            log.warning("kafka unreachable: %s", reason)
            self._unreachable_since = time.monotonic()

    def _found(self) -> None:
        if not self._reachable:
            log.info("kafka reachable again")
        self._unreachable_since = None

    async def _probe(self, producer: Producer, limit_s: float) -> None:
        # A metadata request for our topic: answered only while a broker is up. librdkafka
        # bounds the call by limit_s; the wait is bounded too, should the call ever hang.
        call = asyncio.to_thread(producer.list_topics, self._raw_topic, limit_s)
        await asyncio.wait_for(call, limit_s + _PROBE_SLACK_S)

    async def _close(self, producer: Producer, poller: ReportPoller, limit_s: float) -> None:
        try:
            # On the loop, not producer.flush() in a thread: the reports settle loop futures.
            remaining = await poller.drain(limit_s)
            if remaining:
                log.warning("kafka producer stopped with %d records unacknowledged", remaining)
        finally:
            await poller.stop()

    async def _watch(self) -> None:
        interval = self._settings.readiness_interval_seconds
        probe_timeout = max(interval, 1.0)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            try:
                await self._check(probe_timeout)
            except KafkaException as exc:
                self._lost(exc.args[0].name())
            except TimeoutError:
                self._lost("no answer to the probe")
            else:
                self._found()

    async def _check(self, limit_s: float) -> None:
        """Probe the cluster, through a fresh client when the current one cannot be trusted."""
        now = time.monotonic()
        if self._broken:
            # A fatal error leaves the idempotent producer unusable: start afresh.
            await self._replace(limit_s, "fatal")
        elif fresh_client_due(
            self._unreachable_since,
            self._fresh_tried,
            now,
            self._settings.kafka_fresh_client_after_seconds,
        ):
            self._fresh_tried = now
            await self._replace(limit_s, "unreachable")
        elif self._producer is not None:
            await self._probe(self._producer, limit_s)

    async def _replace(self, limit_s: float, reason: ReplaceReason) -> None:
        started = time.monotonic()
        fresh, poller = self._new_producer()
        try:
            await self._probe(fresh, max(limit_s, _FRESH_PROBE_S))
        except BaseException as exc:
            if reason == "unreachable" and isinstance(exc, KafkaException | TimeoutError):
                log.warning("a fresh kafka client did not reach the cluster either")
            await self._close(fresh, poller, 1.0)
            raise
        old, old_poller = self._producer, self._poller
        self._producer, self._poller = fresh, poller
        self._broken = False
        self.clients_replaced[reason] += 1
        log.warning(
            "kafka producer re-created (%s) in %.0f ms",
            reason,
            (time.monotonic() - started) * 1000,
        )
        if old is not None and old_poller is not None:
            # The old client may hang on its dead batches: close it off the request path.
            task = asyncio.create_task(self._close(old, old_poller, 5.0))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
