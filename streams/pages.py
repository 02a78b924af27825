"""The worker's web pages: Prometheus metrics, liveness, and readiness."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from prometheus_client import generate_latest

from streams.metrics import WorkerMetrics
from streams.runtime.app import App
from streams.runtime.runner import PartitionProgress

PROMETHEUS_TEXT: Final = "text/plain; version=0.0.4"


def register_pages(
    app: App,
    metrics: WorkerMetrics,
    progress: Mapping[int, PartitionProgress],
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
        # Ready once the worker has joined the group and restored its tables for this
        # generation (an empty assignment before the first rebalance is not ready), and while no
        # partition it owns has stood still behind its end for longer than `stall_s`.
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # not on TableManagerT
        sources = app.runner.sources
        owns = any(tp.topic == sources.raw for tp in app.assignor.assigned_actives())
        settled = recovery.completed.is_set() and not app.rebalancing and not app.in_recovery
        if not settled or (owns and not app.runner.ready):
            return web.json({"status": "rebalancing"}, status=503)
        stalled = {
            str(p.partition): {
                "committed": p.committed,
                "end": p.end,
                "stalled_s": round(p.stalled_s),
            }
            for p in progress.values()
            if p.stalled_s >= stall_s
        }
        if stalled:
            return web.json({"status": "stalled", "partitions": stalled}, status=503)
        return web.json({"status": "ready"})

    del prometheus, healthz, readyz
