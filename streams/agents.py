"""Registers the sessions agent, the expiry ticker and the web pages on a Faust app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, cast

import faust
from aiokafka.errors import KafkaError
from faust.types import TP
from prometheus_client import generate_latest

from sessionflow.topics import Topics
from streams.expiry import Tick, encode_tick
from streams.metrics import WorkerMetrics
from streams.processor import OutputTopics, SessionProcessor, headers_of, now_ms
from streams.runtime.app import App
from streams.runtime.transactions import end_transactions, refuse, transactional_id
from streams.settings import WorkerSettings
from tables.sessions import sessions_table

# Topics take the serializers as arguments (a Schema alone is lost when Faust clones the topic).
RAW_TOPIC: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}

log = logging.getLogger(__name__)

PROMETHEUS_TEXT = "text/plain; version=0.0.4"


def register(app: App, settings: WorkerSettings, metrics: WorkerMetrics) -> SessionProcessor:
    topics = Topics.for_settings(settings)
    table = sessions_table(app, settings.partitions)
    # One co-partitioned stream: webhooks and the expiry ticks of the same partitions.
    source = app.topic(topics.raw, topics.ticks, partitions=settings.partitions, **RAW_TOPIC)

    async def sink(
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int,
        headers: list[tuple[str, bytes]],
    ) -> None:
        # Straight to the producer, in the transaction of the partition being processed (see
        # streams/runtime/transactions.py: Faust's topic.send would use the plain producer).
        tid = transactional_id(app, topics.raw, partition)
        sent = await app.producer.send(
            topic, key, value, partition, None, headers, transactional_id=tid
        )
        if tid is None:
            # At-least-once: the record is in Kafka before the table records the step as done.
            await sent

    changelog_topic = table.changelog_topic.get_topic_name()

    async def changelog(key: bytes, value: bytes | None, partition: int) -> None:
        # The table's change, in the same transaction as the event's outputs and offset.
        sent = await app.producer.send(
            changelog_topic,
            key,
            value,
            partition,
            None,
            None,
            transactional_id=transactional_id(app, topics.raw, partition),
        )
        cast("asyncio.Future[Any]", sent).add_done_callback(
            partial(_persisted, app, table, partition)
        )

    processor = SessionProcessor(
        table,
        changelog,
        sink,
        OutputTopics(completed=topics.completed, incomplete=topics.incomplete, dlq=topics.dlq),
        metrics,
        ttl_ms=settings.ttl_ms,
        partitions=settings.partitions,
        grace_ms=int(settings.expiry_grace_seconds * 1000),
        settle_ms=int(2 * settings.expiry_interval_seconds * 1000),
    )

    def owned_partitions() -> list[int]:
        return sorted(
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topics.raw
        )

    @app.agent(source, name="sessions")
    async def sessions(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        gate = app.runtime_consumer.gate
        async for event in stream.events():
            message = event.message
            # One event's outputs, table writes and ack land in one transaction (streams/runtime).
            async with gate.lock:
                if not gate.admits(message.generation_id, app.consumer_generation_id):
                    # Fetched before a rebalance: read again from the committed offset.
                    refuse(message)
                    metrics.held_back.labels("stale_generation").inc()
                    continue
                if message.topic == topics.ticks:
                    await processor.on_tick(message.partition, event.value, owned_partitions())
                else:
                    await processor.on_raw(
                        event.key,
                        event.value,
                        headers_of(message.headers),
                        message.partition,
                        message.offset,
                    )
                event.ack()
            yield None

    @app.timer(settings.expiry_interval_seconds)  # type: ignore[untyped-decorator]  # faust's timer is untyped
    async def tick() -> None:
        # Plain (non-transactional) sends: a tick must be visible at once, also on an idle partition.
        if app.rebalancing:
            return
        producer = app.producer
        await producer.maybe_start()
        at_ms = now_ms()  # before the ends are asked: every earlier append lies below them
        raw = [TP(topics.raw, partition) for partition in owned_partitions()]
        try:
            ends = await app.consumer.highwaters(*raw) if raw else {}
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("no expiry ticks this round: raw ends unknown (%s)", type(exc).__name__)
            return
        for tp in raw:
            value = encode_tick(Tick(at_ms=at_ms, raw_end=ends.get(tp)))
            await producer.send(topics.ticks, None, value, tp.partition, None, None)
        _update_lag(app, topics.raw, metrics)

    @app.on_partitions_revoked.connect
    async def before_rebalance(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Faust has stopped the agent and flushed its buffer by now (streams/runtime says why).
        await end_transactions(app)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        processor.on_rebalance()
        metrics.consumer_lag.clear()

    register_pages(app, metrics)
    del (
        sessions,
        tick,
        before_rebalance,
        on_assigned,
    )  # registered on the app; kept from the module namespace
    return processor


def register_pages(app: faust.App, metrics: WorkerMetrics) -> None:
    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        # aiohttp takes the charset apart from the content type.
        return web.bytes(generate_latest(metrics.registry), content_type=PROMETHEUS_TEXT)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        # Ready once the worker has joined the group and restored its tables (an empty
        # assignment before the first rebalance is not ready).
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # not on TableManagerT
        ready = recovery.completed.is_set() and not app.rebalancing and not app.in_recovery
        return web.json(
            {"status": "ready" if ready else "rebalancing"}, status=200 if ready else 503
        )

    del prometheus, healthz, readyz


def _persisted(app: faust.App, table: Any, partition: int, sent: Any) -> None:
    """What Faust does for its own changelog writes: remember the offset the local store holds,
    so that a restart restores only what came after it (on commit, in exactly-once mode)."""
    if sent.cancelled() or sent.exception() is not None:
        return
    tp = TP(table.changelog_topic.get_topic_name(), partition)
    if app.in_transaction:
        app.tables.persist_offset_on_commit(table.data, tp, sent.result().offset)
    else:
        table.data.set_persisted_offset(tp, sent.result().offset)


def _update_lag(app: faust.App, raw_topic: str, metrics: WorkerMetrics) -> None:
    consumer = app.consumer
    for tp in consumer.assignment():
        if tp.topic != raw_topic:
            continue
        try:
            highwater = consumer.highwater(tp)
            # Faust keeps no public read position; absent in another version, the gauge stays empty.
            position = getattr(consumer, "_read_offset", {}).get(tp)
        except (AttributeError, KeyError):
            continue
        if highwater is not None:
            behind = highwater - (position + 1 if position is not None else 0)
            metrics.consumer_lag.labels(str(tp.partition)).set(max(0, behind))
