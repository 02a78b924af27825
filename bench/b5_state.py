"""B5 state at scale: N pending sessions in the table; worker RSS, RocksDB size on disk, and
the time a fresh worker (empty data dir) takes to restore the table from its changelog."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

from aiokafka.partitioner import murmur2

from bench.b3_worker import worker_env
from bench.context import Context
from bench.kafka_io import Watcher, preload
from bench.proc import Service, dir_mb, free_port, python_module, rss_mb, wait_http
from bench.stats import extrapolate
from bench.webhooks import session_plan
from sessionflow.traffic import SESSION_CREATED, SESSION_ENDED, Delivery

TARGET = 1_000_000
# The table is the same under both guarantees; the faster one fills it.
GUARANTEE = "at_least_once"


def partition_of(key: str, partitions: int) -> int:
    """The partition the producer's (aiokafka's default) partitioner picks for a key."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class Bodies:
    """Realistic session bodies with a fresh id swapped in (plan() is too slow for 1M)."""

    def __init__(self, seed: int) -> None:
        plan = session_plan(1, seed=seed)
        by_type = {d.event_type: d for d in plan.deliveries}
        self._created = by_type[SESSION_CREATED].body
        self._ended = by_type[SESSION_ENDED].body
        self._id = (by_type[SESSION_CREATED].session_id or "").encode()
        self._rng = random.Random(seed)
        self._n = 0

    def new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _delivery(self, kind: str, sid: str) -> Delivery:
        self._n += 1
        template = self._created if kind == SESSION_CREATED else self._ended
        body = template.replace(self._id, sid.encode())
        return Delivery(f"msg_bench{self._n:09d}", kind, body, sid)

    def created(self, sid: str) -> Delivery:
        return self._delivery(SESSION_CREATED, sid)

    def ended(self, sid: str) -> Delivery:
        return self._delivery(SESSION_ENDED, sid)


def one_per_partition(bodies: Bodies, partitions: int) -> list[str]:
    found: dict[int, str] = {}
    while len(found) < partitions:
        sid = bodies.new_id()
        found.setdefault(partition_of(sid, partitions), sid)
    return [found[p] for p in range(partitions)]


async def _run(ctx: Context) -> dict[str, Any]:
    n, parts = ctx.state_sessions, ctx.partitions
    namespace = ctx.namespace("state")
    topics = await ctx.make_topics(namespace)
    bodies = Bodies(seed=31)
    pending_probe: dict[int, str] = {}

    def fill() -> Iterator[Delivery]:
        for _ in range(n):
            sid = bodies.new_id()
            pending_probe.setdefault(partition_of(sid, parts), sid)
            yield bodies.created(sid)
        # One complete pair per partition, last: when all are out, every partition is drained.
        for sid in one_per_partition(bodies, parts):
            yield bodies.created(sid)
            yield bodies.ended(sid)

    watcher = Watcher(ctx.bootstrap, topics.completed)
    await watcher.start()
    out: dict[str, Any] = {"sessions": n, "guarantee": GUARANTEE, "partitions": parts}
    port = free_port()
    first = Service(
        "state-worker-a",
        python_module("sessionflow.cli", "worker"),
        worker_env(ctx, namespace, "state-worker-a", port, GUARANTEE),
        ctx.workdir,
    )
    guard = ctx.guard(namespace, port)
    await guard.start()
    try:
        spawned = time.monotonic()
        await asyncio.to_thread(
            wait_http, f"http://127.0.0.1:{port}/readyz", first.proc, 120, first.log
        )
        out["empty_startup_s"] = round(time.monotonic() - spawned, 2)
        await asyncio.sleep(2.0)  # the first rebalance and the table's empty recovery
        rss0 = rss_mb(first.pid) or 0.0
        filled_from = time.monotonic()
        out["preload_s"] = round(await preload(ctx.bootstrap, topics.raw, fill()), 2)
        if not await watcher.until(parts, 600, guard):
            raise RuntimeError(f"the table did not fill: {len(watcher.seen)}/{parts} sentinels")
        out["fill_s"] = round(time.monotonic() - filled_from, 2)
        out["fill_eps"] = round((n + 2 * parts) / out["fill_s"], 1)
        await asyncio.sleep(2.0)
        rss = rss_mb(first.pid) or 0.0
        out["rss_mb_empty"] = round(rss0, 1)
        out["rss_mb"] = round(rss, 1)
    finally:
        first.stop()
        await guard.stop()
    out["rocksdb_mb"] = round(dir_mb(ctx.workdir / "data-state-worker-a"), 1)

    # A fresh worker with an empty data dir: everything comes back from the changelog. One
    # probe per partition completes a pending session, which needs that partition's table.
    port = free_port()
    fresh = Service(
        "state-worker-b",
        python_module("sessionflow.cli", "worker"),
        worker_env(ctx, namespace, "state-worker-b", port, GUARANTEE),
        ctx.workdir,
    )
    guard = ctx.guard(namespace, port)
    await guard.start()
    try:
        spawned = time.monotonic()
        await preload(ctx.bootstrap, topics.raw, (bodies.ended(s) for s in pending_probe.values()))
        if not await watcher.until(parts + len(pending_probe), 900, guard):
            raise RuntimeError(
                f"the fresh worker completed {len(watcher.seen) - parts} of"
                f" {len(pending_probe)} probes in 900 s, no partition stalled: too slow to measure"
            )
        out["restore_s"] = round(time.monotonic() - spawned, 2)
        out["rss_mb_after_restore"] = round(rss_mb(fresh.pid) or 0.0, 1)
    finally:
        fresh.stop()
        await watcher.stop()
        await guard.stop()

    extrapolated = n != TARGET
    out["figures"] = {
        "state_sessions": n,
        "state_extrapolated": extrapolated,
        "state_rss_mb": out["rss_mb"],
        "state_rocksdb_mb": out["rocksdb_mb"],
        "state_restore_s": out["restore_s"],
        "state_rss_mb_1m": round(extrapolate(out["rss_mb_empty"], out["rss_mb"], n, TARGET), 1),
        "state_rocksdb_mb_1m": round(extrapolate(0.0, out["rocksdb_mb"], n, TARGET), 1),
        "state_restore_s_1m": round(
            extrapolate(out["empty_startup_s"], out["restore_s"], n, TARGET), 1
        ),
    }
    return out


def run(ctx: Context) -> dict[str, Any]:
    return asyncio.run(_run(ctx))
