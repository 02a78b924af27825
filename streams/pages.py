"""The worker's web pages: Prometheus metrics, liveness, and readiness."""

from __future__ import annotations

import time
from typing import Any, Final

from prometheus_client import generate_latest

from streams.metrics import WorkerMetrics
from streams.readiness import ProgressReadings, readiness
from streams.runtime.app import App

PROMETHEUS_TEXT: Final = "text/plain; version=0.0.4"


def register_pages(
    app: App,
    metrics: WorkerMetrics,
    readings: ProgressReadings,
    *,
    stall_s: float,
) -> None:
    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        # aiohttp takes the charset apart from the content type.
        return web.bytes(generate_latest(metrics.registry), content_type=PROMETHEUS_TEXT)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # not on TableManagerT
        sources = app.runner.sources
        answer = readiness(
            settled=recovery.completed.is_set() and not app.rebalancing and not app.in_recovery,
            owns=any(tp.topic == sources.raw for tp in app.assignor.assigned_actives()),
            runner_ready=app.runner.ready,
            readings=readings,
            now=time.monotonic(),
            stall_s=stall_s,
        )
        return web.json(answer.body, status=answer.status)

    del prometheus, healthz, readyz
