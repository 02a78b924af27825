"""A rolling restart under load, by group membership (B5): what restarting a worker costs sessions.

A worker restarted under its name (a StatefulSet's rolling update) leaves its consumer group and
joins it again by default: its partitions move to the other workers and back, two rebalances. As a
static member (SESSIONFLOW_STATIC_MEMBERSHIP, with a session timeout longer than the restart) it
keeps them, and they wait for it. Two exactly-once workers, each named by SESSIONFLOW_WORKER_ID,
complete sessions at a steady rate; after RESTART_AFTER_S one worker is stopped (SIGTERM) and
started again at once under its name. For every session, how long it took from its last half's
send to its completed record, seen by a read_committed consumer. The default membership is the
baseline of the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.b3_worker import Worker, all_ready, worker_env
from bench.context import Context
from bench.failover_load import DRAIN_S, RATE, send_steadily
from bench.kafka_io import Watcher
from bench.proc import Service, free_port, python_module

SECONDS = 21.0
RESTART_AFTER_S = 4.0
# Longer than a restart (stop, start, restore), so that a static member is not dropped meanwhile.
STATIC_SESSION_TIMEOUT_S = 45
MEMBERSHIPS: tuple[str, str] = ("dynamic", "static")


def _membership_env(membership: str) -> dict[str, str]:
    if membership == "dynamic":
        return {}
    return {
        "SESSIONFLOW_STATIC_MEMBERSHIP": "true",
        "SESSIONFLOW_CONSUMER_SESSION_TIMEOUT_SECONDS": str(STATIC_SESSION_TIMEOUT_S),
    }


async def measure(
    ctx: Context, membership: str, sessions: list[tuple[str, list[Any]]], run: int = 0
) -> dict[str, Any]:
    """One rolling restart of one of two workers under load, with `membership` ("dynamic" or
    "static"), in a namespace of its own (`run` tells repeated ones apart)."""
    tag = f"rolling-{membership}-{run}"
    namespace = ctx.namespace(tag)
    topics = await ctx.make_topics(namespace)
    names = [f"{tag}-{i}" for i in range(2)]
    ports = [free_port() for _ in names]
    envs = [
        worker_env(
            ctx,
            namespace,
            name,
            port,
            "exactly_once",
            SESSIONFLOW_WORKER_ID=name,
            **_membership_env(membership),
        )
        for name, port in zip(names, ports, strict=True)
    ]

    def start(i: int) -> Worker:
        """Worker `i` under its name: its worker id, data folder and port, as before a restart."""
        return Worker(
            Service(names[i], python_module("cli", "worker"), envs[i], ctx.workdir), ports[i]
        )

    workers = [start(i) for i in range(len(names))]
    watcher = Watcher(ctx.bootstrap, topics.completed)
    await watcher.start()
    restarts: list[asyncio.Task[float]] = []

    async def restart() -> float:
        """Stop worker 0 and start it again under its name; seconds from the stop to ready."""
        stopped = time.monotonic()
        await asyncio.to_thread(workers[0].service.stop)
        workers[0] = start(0)
        await all_ready([workers[0]], 120)
        return time.monotonic() - stopped

    def restart_when_due(elapsed_s: float) -> None:
        if not restarts and elapsed_s >= RESTART_AFTER_S:
            restarts.append(asyncio.create_task(restart()))

    try:
        await all_ready(workers, 120)
        reading = asyncio.create_task(watcher.until(len(sessions), SECONDS + DRAIN_S))
        sent_at = await send_steadily(ctx, topics.raw, sessions, restart_when_due)
        stop_to_ready_s = await restarts[0]
        if not await reading:
            raise RuntimeError(
                f"rolling restart ({membership}): {len(watcher.seen)} of {len(sessions)} sessions"
                " completed"
            )
    finally:
        for w in workers:
            w.service.stop()
        await watcher.stop()
    waits = sorted(watcher.seen[s] - t for s, t in sent_at.items())
    return {
        "membership": membership,
        "sessions": len(sessions),
        "stop_to_ready_s": round(stop_to_ready_s, 2),
        "wait_p99_s": round(waits[int(0.99 * (len(waits) - 1))], 2),
        "longest_wait_s": round(waits[-1], 2),
        "sessions_over_1s": sum(1 for w in waits if w > 1.0),
        "wait_p50_s": round(statistics.median(waits), 3),
    }


def session_count() -> int:
    return int(RATE * SECONDS)
