"""Registers the worker's parts on its Faust app: the processor (through the runtime's runner),
the expiry ticker, and the progress the web pages and metrics report."""

from __future__ import annotations

import logging
import time

from aiokafka.errors import KafkaError
from faust.types import TP

from sessionflow.heap import heap_trimmer
from sessionflow.kafka_security import aiokafka_security
from sessionflow.topics import Topics
from streams.expiry import Tick, encode_tick
from streams.metrics import WorkerMetrics
from streams.pages import register_pages
from streams.processor import OutputTopics, SessionProcessor, now_ms
from streams.readiness import ProgressReadings
from streams.runtime.app import App
from streams.runtime.runner import Sources
from streams.sessions_view import SessionsView, register_sessions_page
from streams.settings import WorkerSettings
from tables.sessions import sessions_table

log = logging.getLogger(__name__)


def register(app: App, settings: WorkerSettings, metrics: WorkerMetrics) -> SessionProcessor:
    topics = Topics.for_settings(settings)
    processor = SessionProcessor(
        OutputTopics(completed=topics.completed, incomplete=topics.incomplete, dlq=topics.dlq),
        metrics,
        ttl_ms=settings.ttl_ms,
        grace_ms=int(settings.expiry_grace_seconds * 1000),
        settle_ms=int(2 * settings.expiry_interval_seconds * 1000),
    )
    # One co-partitioned pair of source topics: webhooks and the expiry ticks of the same
    # partitions, applied together a partition at a time.
    table = sessions_table(app, settings.partitions)
    runner = app.serve(
        processor,
        sources=Sources(raw=topics.raw, ticks=topics.ticks),
        table=table,
        partitions=settings.partitions,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        security=aiokafka_security(settings),
        on_held_back=lambda reason, count: metrics.held_back.labels(reason).inc(count),
        on_commit=metrics.observe_commit,
        on_dropped=lambda reason: metrics.transactions_dropped.labels(reason).inc(),
        on_restore_wait=metrics.observe_restore_wait,
    )
    # What is in effect, not what was asked for: the runner's producers say it.
    in_effect = "exactly_once" if runner.producers.transactional else "at_least_once"
    metrics.guarantee.labels(in_effect, runner.producers.transaction_scope).set(1)
    readings = ProgressReadings(time.monotonic())
    trim_heap = heap_trimmer()

    def owned_partitions() -> list[int]:
        return sorted(
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topics.raw
        )

    @app.timer(settings.expiry_interval_seconds)  # type: ignore[untyped-decorator]  # faust's timer is untyped
    async def tick() -> None:
        trim_heap()  # what the last interval's batches freed goes back to the system
        # Plain (non-transactional) sends: a tick must be visible at once, also on an idle partition.
        if app.rebalancing:  # until the restore in it is done
            readings.moving(time.monotonic())
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
        # The committed offsets against the ends: lag, and how long a partition stood still.
        now = time.monotonic()
        readings.read(runner.progress(ends, now), now)
        metrics.ends_read.set(time.time())
        metrics.consumer_lag.clear()
        metrics.stalled.clear()
        for p in readings.partitions.values():
            metrics.consumer_lag.labels(str(p.partition)).set(p.end - p.committed)
            metrics.stalled.labels(str(p.partition)).set(p.stalled_s)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: object, /, *args: object, **kwargs: object) -> None:
        readings.moving(time.monotonic())
        metrics.consumer_lag.clear()
        metrics.stalled.clear()

    register_pages(app, metrics, readings, stall_s=settings.stall_seconds)
    sessions = SessionsView(
        app,
        table,
        partitions=settings.partitions,
        ttl_ms=settings.ttl_ms,
        grace_ms=int(settings.expiry_grace_seconds * 1000),
    )
    register_sessions_page(sessions, app)
    del tick, on_assigned  # registered on the app; kept out of the module namespace
    return processor
