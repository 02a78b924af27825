"""`sessionflow worker`: make the topics, build the app, run one Faust worker until stopped."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import faust
import prometheus_client

from sessionflow.heap import freeze_startup_objects
from sessionflow.logs import configure_logging
from sessionflow.topics import Topics, ensure_topics
from streams.app import create_app
from streams.metrics import WorkerMetrics
from streams.register import register
from streams.runtime import compat
from streams.runtime.consumer import quiet_commit_overlaps
from streams.settings import WorkerSettings
from streams.state import close_state, open_state


def run(settings: WorkerSettings) -> int:
    """Block until SIGTERM/SIGINT; Faust's worker stops the agent, commits and leaves the group."""
    # `_created` series double every counter's exposition and serve no dashboard or alert.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
    logs = configure_logging(settings.log_level, settings.log_format)
    quiet_commit_overlaps()
    try:
        return _run(settings, logs.handler)
    finally:
        logs.stop()


def _run(settings: WorkerSettings, log_handler: logging.Handler) -> int:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = create_app(settings)
    register(app, settings, WorkerMetrics(settings.max_intents))
    # Before anything touches Kafka: refuse to run on libraries the runtime layer does not fit.
    compat.check(app)
    # The same code as `sessionflow topics`: a partition mismatch stops us here, before Faust
    # would silently mis-pair sessions across partitions.
    loop.run_until_complete(ensure_topics(settings, Topics.for_settings(settings).specs(settings)))
    worker = faust.Worker(
        app,
        loop=loop,
        loglevel=settings.faust_log_level,
        # mode sets up the root logger itself: ours is its only handler, so Faust's, mode's and
        # aiokafka's messages come out in the process's one format.
        logging_config={
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"sessionflow": {"()": lambda: log_handler}},
            "root": {"level": settings.log_level, "handlers": ["sessionflow"]},
        },
        # The start-up banner is not a log record: JSON lines only on the JSON format.
        quiet=settings.log_format == "json",
    )
    open_state(settings.data_dir, Path(app.conf.tabledir))
    freeze_startup_objects()  # modules, classes and the app: full collections skip them
    try:
        worker.execute_from_commandline()
    finally:
        # A kill -9 never gets here; a crash gets here crashed: neither leaves the marker.
        if not app.crashed and not worker.crashed:
            close_state(settings.data_dir)
    return 0
