"""B5 state at scale: N pending sessions in the table; worker RSS, RocksDB size on disk, and
the time a fresh worker (empty data dir) takes to restore the table from its changelog."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiokafka.partitioner import murmur2
from prometheus_client.parser import text_string_to_metric_families

from bench import failover_load, index_rebuild, rolling_restart
from bench.b3_worker import all_ready, exactly_once_workers, worker_env
from bench.context import Context
from bench.kafka_io import Watcher, preload
from bench.proc import (
    Service,
    dir_mb,
    fetch_text,
    free_port,
    peak_rss_mb,
    python_module,
    rss_mb,
    wait_http,
)
from bench.progress import ProgressGuard
from bench.stats import extrapolate, ratio
from bench.webhooks import session_plan
from cli.traffic import Delivery
from sessionflow.events import SESSION_CREATED, SESSION_ENDED
from streams.settings import WorkerSettings

TARGET = 1_000_000
# Fail-over at the worker's default session timeout, then at 10 s: what bounds it is how soon
# the group notices the dead worker.
FAILOVER_SESSION_TIMEOUTS = (
    float(WorkerSettings.model_fields["consumer_session_timeout_seconds"].default),
    10.0,
)
FAILOVER_OWNERSHIP_WAIT_S = 30.0
FAILOVER_STANDBY_SETTLE_S = 5.0
FAILOVER_TIMEOUT_S = 120.0
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
    first, guard, port = await _guarded_worker(ctx, namespace, "state-worker-a")
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
        out["rss_mb_peak"] = round(peak_rss_mb(first.pid) or 0.0, 1)
    finally:
        first.stop()
        await guard.stop()
    out["rocksdb_mb"] = round(dir_mb(ctx.workdir / "data-state-worker-a"), 1)

    # A fresh worker with an empty data dir: everything comes back from the changelog. One
    # probe per partition completes a pending session, which needs that partition's table.
    fresh, guard, _ = await _guarded_worker(ctx, namespace, "state-worker-b")
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
        out["rss_mb_peak_after_restore"] = round(peak_rss_mb(fresh.pid) or 0.0, 1)
    finally:
        fresh.stop()
        await watcher.stop()
        await guard.stop()

    for session_timeout_s in FAILOVER_SESSION_TIMEOUTS:
        out[f"failover_session_{session_timeout_s:g}s"] = await _failover(
            ctx, namespace, bodies, session_timeout_s
        )
    failover = out[f"failover_session_{FAILOVER_SESSION_TIMEOUTS[0]:g}s"]
    # The same under load, where the lost worker holds an open transaction, in both scopes.
    # Which partitions the lost worker's last transaction touched is chance: two kills a scope,
    # in alternating order, and the longer of each scope's two waits.
    load_sessions = complete_sessions(Bodies(seed=9), failover_load.RATE * failover_load.SECONDS)
    loads = await alternating(
        ("partition", "worker"),
        lambda scope, run: failover_load.measure(ctx, scope, load_sessions, run),
    )
    out |= {f"failover_load_{scope}": measured for scope, measured in loads.items()}
    # A rolling restart of one of two workers under load: the default membership (the baseline)
    # against static membership, the same way.
    restart_sessions = complete_sessions(Bodies(seed=10), rolling_restart.session_count())
    restarts = await alternating(
        rolling_restart.MEMBERSHIPS,
        lambda membership, run: rolling_restart.measure(ctx, membership, restart_sessions, run),
    )
    out |= {f"rolling_restart_{m}": measured for m, measured in restarts.items()}
    dynamic, static = restarts["dynamic"], restarts["static"]
    # One partition's share of the table taken over (in-process, real RocksDB, no broker).
    out["index_rebuild"] = rebuild = index_rebuild.run(max(1, n // parts))

    extrapolated = n != TARGET
    out["figures"] = {
        "state_sessions": n,
        "state_extrapolated": extrapolated,
        "state_rss_mb": out["rss_mb"],
        "state_rocksdb_mb": out["rocksdb_mb"],
        "state_restore_s": out["restore_s"],
        "state_rss_mb_1m": round(extrapolate(out["rss_mb_empty"], out["rss_mb"], n, TARGET), 1),
        "state_rss_peak_mb_1m": round(
            extrapolate(out["rss_mb_empty"], out["rss_mb_peak"], n, TARGET), 1
        ),
        "state_rocksdb_mb_1m": round(extrapolate(0.0, out["rocksdb_mb"], n, TARGET), 1),
        "state_restore_s_1m": round(
            extrapolate(out["empty_startup_s"], out["restore_s"], n, TARGET), 1
        ),
        # Not extrapolated: with standby replicas, what a smaller table changes is small.
        "state_failover_s": failover["first_s"],
        "state_failover_session_timeout_s": FAILOVER_SESSION_TIMEOUTS[0],
        # Under load, kill -9 mid-transaction, not restarted: the longest a session sent after
        # the kill waited, with one transaction per partition and with one per worker.
        "state_failover_load_s_partition_txns": out["failover_load_partition"]["longest_wait_s"],
        "state_failover_load_s_worker_txn": out["failover_load_worker"]["longest_wait_s"],
        # A rolling restart under load: the longest a session waited, static membership against
        # the default (the baseline).
        "state_rolling_restart_s_dynamic": dynamic["longest_wait_s"],
        "state_rolling_restart_s_static": static["longest_wait_s"],
        "state_rolling_restart_ratio": ratio(static["longest_wait_s"], dynamic["longest_wait_s"]),
        # The longest unit of work while a taken-over partition's expiry index is rebuilt, against
        # the whole partition read in one unit (the baseline, as it was before).
        "state_index_rebuild_unit_ms": rebuild["sliced_longest_unit_ms"],
        "state_index_rebuild_whole_ms": rebuild["whole_unit_ms"],
        "state_index_rebuild_ratio": ratio(
            rebuild["sliced_longest_unit_ms"], rebuild["whole_unit_ms"]
        ),
        **{
            f"state_failover_s_session_{t:g}s": out[f"failover_session_{t:g}s"]["first_s"]
            for t in FAILOVER_SESSION_TIMEOUTS[1:]
        },
    }
    return out


async def _guarded_worker(
    ctx: Context, namespace: str, name: str
) -> tuple[Service, ProgressGuard, int]:
    """A worker on a free port with the stall guard watching it (stop both after); its port."""
    port = free_port()
    worker = Service(
        name,
        python_module("cli", "worker"),
        worker_env(ctx, namespace, name, port, GUARANTEE),
        ctx.workdir,
    )
    guard = ctx.guard(namespace, port)
    await guard.start()
    return worker, guard, port


async def _failover(
    ctx: Context,
    namespace: str,
    bodies: Bodies,
    session_timeout_s: float,
) -> dict[str, Any]:
    """Two workers with the defaults (exactly-once, one standby replica) over the filled table,
    plus a pending probe session per partition; `kill -9` of one; the time to the first and the
    last completed record of the probes on the partitions it owned, whose ended halves were
    sent at the kill."""
    topics = ctx.topics(namespace)
    probes = dict(enumerate(one_per_partition(bodies, ctx.partitions)))
    watcher = Watcher(ctx.bootstrap, topics.completed)
    await watcher.start()
    tag = f"failover-{session_timeout_s:g}s"
    workers = exactly_once_workers(
        ctx,
        namespace,
        f"state-{tag}",
        2,
        SESSIONFLOW_CONSUMER_SESSION_TIMEOUT_SECONDS=str(session_timeout_s),
    )
    out: dict[str, Any] = {"session_timeout_s": session_timeout_s}
    try:
        await preload(ctx.bootstrap, topics.raw, (bodies.created(s) for s in probes.values()))
        spawned = time.monotonic()
        await all_ready(workers, 300)
        out["both_ready_s"] = round(time.monotonic() - spawned, 2)
        victim = workers[0]
        owned = await _owned_partitions(victim.port, FAILOVER_OWNERSHIP_WAIT_S)
        await asyncio.sleep(FAILOVER_STANDBY_SETTLE_S)  # standbys caught up with the changelog
        killed_at = time.time()
        victim.service.kill()
        await preload(ctx.bootstrap, topics.raw, (bodies.ended(s) for s in probes.values()))
        theirs = {probes[p] for p in owned}
        wanted = set(probes.values())
        deadline = time.monotonic() + FAILOVER_TIMEOUT_S
        while not wanted <= watcher.seen.keys():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"fail-over: {len(wanted & watcher.seen.keys())} of {len(wanted)} probes"
                    f" completed in {FAILOVER_TIMEOUT_S:.0f} s"
                )
            await watcher.poll()
        times = sorted(watcher.seen[s] - killed_at for s in theirs)
        others = sorted(watcher.seen[s] - killed_at for s in wanted - theirs)
        out |= {
            "killed_owned_partitions": sorted(owned),
            "first_s": round(times[0], 2) if times else None,
            "last_s": round(times[-1], 2) if times else None,
            "survivor_partitions_last_s": round(others[-1], 2) if others else None,
        }
    finally:
        for w in workers:
            w.service.stop()
        await watcher.stop()
    return out


async def _owned_partitions(port: int, wait_s: float) -> set[int]:
    """The raw partitions a worker owns, from the lag gauge it keeps for each (its /metrics)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            text = await asyncio.to_thread(fetch_text, f"http://127.0.0.1:{port}/metrics")
        except OSError:  # busy (taking over partitions): ask again
            await asyncio.sleep(1.0)
            continue
        owned = {
            int(sample.labels["partition"])
            for family in text_string_to_metric_families(text)
            if family.name == "sessionflow_consumer_lag"
            for sample in family.samples
        }
        if owned:
            return owned
        await asyncio.sleep(1.0)
    raise RuntimeError(f"the worker on port {port} reported no partitions in {wait_s:.0f} s")


def complete_sessions(bodies: Bodies, count: float) -> list[tuple[str, list[Any]]]:
    """`count` complete sessions, each its id and its two halves (created, ended)."""
    ids = [bodies.new_id() for _ in range(int(count))]
    return [(sid, [bodies.created(sid), bodies.ended(sid)]) for sid in ids]


async def alternating(
    variants: tuple[str, str],
    measure: Callable[[str, int], Awaitable[dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """Each of two variants measured twice in the order a, b, b, a; per variant the run with the
    longer `longest_wait_s`, with both runs' in `runs_longest_wait_s`."""
    first, second = variants
    runs: dict[str, list[dict[str, Any]]] = {first: [], second: []}
    for run, variant in enumerate((first, second, second, first)):
        runs[variant].append(await measure(variant, run))
    out = {}
    for variant, measured in runs.items():
        out[variant] = max(measured, key=lambda m: m["longest_wait_s"])
        out[variant]["runs_longest_wait_s"] = [m["longest_wait_s"] for m in measured]
    return out


def run(ctx: Context) -> dict[str, Any]:
    return asyncio.run(_run(ctx))
