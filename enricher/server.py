"""`sessionflow enricher`'s process: admin pages, signals, the Enricher's start and stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Final

import prometheus_client
from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import generate_latest

from enricher.errors import EnricherCrashed
from enricher.metrics import EnricherMetrics
from enricher.service import Enricher
from enricher.settings import EnricherSettings
from sessionflow.errors import SessionflowError
from sessionflow.logs import configure_logging

log = logging.getLogger("enricher")

PROMETHEUS_TEXT: Final = "text/plain; version=0.0.4"


def create_web_app(enricher: Enricher) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(enricher.metrics.registry), content_type=PROMETHEUS_TEXT
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        answer = enricher.readiness(time.monotonic())
        return web.json_response(answer.body, status=answer.status)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def run_until_stopped(settings: EnricherSettings, stop: asyncio.Event) -> int:
    metrics = EnricherMetrics()
    enricher = Enricher(settings, metrics)
    runner = web.AppRunner(create_web_app(enricher), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.enricher_host, settings.enricher_port).start()
    origin = settings.agntix_api_url
    try:
        starting = asyncio.create_task(enricher.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return 0
        starting.result()  # a start-up failure (topics, Kafka) ends the process here
        log.info(
            "enricher started",
            extra={
                "fields": {
                    "api": origin,
                    "auth": settings.auth_scheme,
                    "group": settings.group_id,
                    "from": enricher.topics.completed,
                    "to": enricher.topics.transcripts,
                    "concurrency": settings.enricher_concurrency,
                    "rate_per_second": settings.enricher_rate_per_second,
                    "port": settings.enricher_port,
                }
            },
        )
        await enricher.run(stop)
        return 0
    finally:
        await enricher.stop()
        await runner.cleanup()
        log.info("enricher stopped")


def serve(settings: EnricherSettings) -> int:
    """Run until SIGINT/SIGTERM: finish in-flight sessions, commit, leave the group."""
    # `_created` series double every counter's exposition and serve no dashboard or alert.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
    listener = configure_logging(settings.log_level, settings.log_format)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await run_until_stopped(settings, stop)
        except EnricherCrashed:
            log.exception("the enricher stopped after an unexpected failure; a restart resumes")
        # Kafka refusing this client or the topics (SessionflowError), or gone for too long.
        except (SessionflowError, KafkaError, OSError) as exc:
            log.error(
                "the enricher stopped: %s", exc, extra={"fields": {"error": type(exc).__name__}}
            )
        return 1

    try:
        return asyncio.run(main())
    finally:
        listener.stop()
