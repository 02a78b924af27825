"""B3 worker throughput: a pre-loaded raw topic drained by one worker (both guarantees) and by
the bare aiokafka baseline, timed from ready to the last completed record visible (read_committed)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

from bench import processor, profile
from bench.context import Context
from bench.kafka_io import Watcher, preload
from bench.proc import Service, cpu_seconds, free_port, python_module, rss_mb, wait_http
from bench.stats import ratio
from bench.webhooks import session_plan
from cli.traffic import Mix, Plan
from streams.settings import WorkerSettings

# "pairs, 25% duplicates, reordered": a quarter of the deliveries again (retries with the same
# message id, resends with a new one), and 30% of sessions deliver ended before created.
MIX = Mix(retry_share=0.125, resend_share=0.125, reorder_share=0.3)
TIMEOUT_S = 300.0
DEFAULT_COMMIT_INTERVAL_S: float = WorkerSettings.model_fields["commit_interval_seconds"].default
# Exactly-once at this commit interval too, in the same run: the default's cost in throughput.
AB_COMMIT_INTERVAL_S = 0.5
# Scale-out: this many partitions, drained by one worker and then by two.
SCALE_PARTITIONS = 24
SCALE_SETTLE_S = 5.0


def worker_env(
    ctx: Context, namespace: str, name: str, port: int, guarantee: str, **extra: str
) -> dict[str, str]:
    return ctx.env(
        namespace,
        SESSIONFLOW_PROCESSING_GUARANTEE=guarantee,
        SESSIONFLOW_DATA_DIR=str(ctx.workdir / f"data-{name}"),
        SESSIONFLOW_WORKER_PORT=str(port),
        **extra,
    )


@dataclass(frozen=True, slots=True)
class Worker:
    service: Service
    port: int


def exactly_once_workers(
    ctx: Context, namespace: str, tag: str, count: int, **extra: str
) -> list[Worker]:
    """`count` exactly-once workers named `tag`-0, `tag`-1, ... (their data folders too), each on
    a free port; stop them after."""
    workers = []
    for i in range(count):
        name, port = f"{tag}-{i}", free_port()
        env = worker_env(ctx, namespace, name, port, "exactly_once", **extra)
        workers.append(
            Worker(Service(name, python_module("cli", "worker"), env, ctx.workdir), port)
        )
    return workers


async def all_ready(workers: list[Worker], timeout_s: float) -> None:
    """Wait until every worker answers /readyz (a worker that exits fails it with its log)."""
    await asyncio.gather(
        *(
            asyncio.to_thread(
                wait_http,
                f"http://127.0.0.1:{w.port}/readyz",
                w.service.proc,
                timeout_s,
                w.service.log,
            )
            for w in workers
        )
    )


def steady_eps(watcher: Watcher, events: int, expected: int) -> float | None:
    """Input events/s between the first and the last completed record seen: startup and the
    first rebalance left out (completed records stand for their share of the input)."""
    if watcher.first_at is None or watcher.last_at is None or expected < 2:
        return None
    span = watcher.last_at - watcher.first_at
    return round(events * (len(watcher.seen) - 1) / expected / max(span, 1e-9), 1)


async def _worker_run(
    ctx: Context, plan: Plan, guarantee: str, commit_interval_s: float | None = None
) -> dict[str, Any]:
    name = {"exactly_once": "eos", "at_least_once": "alo"}[guarantee]
    extra: dict[str, str] = {}
    if commit_interval_s is not None:
        name += f"-commit-{commit_interval_s * 1000:.0f}ms"
        extra["SESSIONFLOW_COMMIT_INTERVAL_SECONDS"] = str(commit_interval_s)
    namespace = ctx.namespace(f"worker-{name}")
    topics = await ctx.make_topics(namespace)
    load_s = await preload(ctx.bootstrap, topics.raw, plan.deliveries)
    expected = len(plan.expectations.complete)
    watcher = Watcher(ctx.bootstrap, topics.completed)
    await watcher.start()
    port = free_port()
    worker = Service(
        f"worker-{name}",
        python_module("cli", "worker"),
        worker_env(ctx, namespace, f"worker-{name}", port, guarantee, **extra),
        ctx.workdir,
    )
    spy = None
    guard = ctx.guard(namespace, port)
    await guard.start()
    try:
        spawned = time.time()
        ready_task = asyncio.create_task(
            asyncio.to_thread(
                wait_http, f"http://127.0.0.1:{port}/readyz", worker.proc, 120, worker.log
            )
        )
        while not ready_task.done():
            await watcher.poll()
        await ready_task
        ready = time.time()
        cpu0 = cpu_seconds(worker.pid)
        if ctx.profile and guarantee == "exactly_once" and commit_interval_s is None:
            spy = profile.start_record(worker.pid, 6, ctx.workdir / "worker.spy")
        complete = await watcher.until(expected, TIMEOUT_S, guard)
        done = time.time()
        cpu1 = cpu_seconds(worker.pid)
        rss = rss_mb(worker.pid)
        await watcher.settle(2.0)
    finally:
        worker.stop()
        await watcher.stop()
        await guard.stop()
    if not complete:
        raise RuntimeError(
            f"B3 {guarantee}: {len(watcher.seen):,} of {expected:,} sessions completed in"
            f" {TIMEOUT_S:.0f} s, no partition stalled: too slow to measure"
        )
    events = len(plan.deliveries)
    last = watcher.last_at if complete and watcher.last_at else done
    out: dict[str, Any] = {
        "guarantee": guarantee,
        "commit_interval_s": commit_interval_s or DEFAULT_COMMIT_INTERVAL_S,
        "events": events,
        "expected_completed": expected,
        "completed_distinct": len(watcher.seen),
        "completed_records": watcher.records,
        "all_completed": complete,
        "preload_s": round(load_s, 2),
        "startup_to_ready_s": round(ready - spawned, 2),
        "ready_to_last_s": round(last - ready, 2),
        "eps_from_ready": round(events / max(last - ready, 1e-9), 1),
        "eps": steady_eps(watcher, events, expected),
        "worker_cpu_cores": (
            round((cpu1 - cpu0) / max(done - ready, 1e-9), 2)
            if cpu0 is not None and cpu1 is not None
            else None
        ),
        "worker_rss_mb": rss and round(rss, 1),
    }
    if spy is not None:
        out["profile"] = profile.finish(spy, ctx.workdir / "worker.spy")
    return out


async def _baseline_run(ctx: Context, plan: Plan) -> dict[str, Any]:
    namespace = ctx.namespace("worker-base")
    topics = await ctx.make_topics(namespace)
    load_s = await preload(ctx.bootstrap, topics.raw, plan.deliveries)
    expected = len(plan.expectations.complete)
    watcher = Watcher(ctx.bootstrap, topics.completed)
    await watcher.start()
    log = (ctx.workdir / "pairing-baseline.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        *python_module(
            "bench.pairing_baseline",
            ctx.bootstrap,
            topics.raw,
            topics.completed,
            str(ctx.partitions),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"baseline did not start: {line!r}")
        ready = time.time()
        complete = await watcher.until(expected, TIMEOUT_S)
        done = time.time()
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        log.close()
        await watcher.stop()
    last = watcher.last_at if complete and watcher.last_at else done
    events = len(plan.deliveries)
    return {
        "events": events,
        "completed_distinct": len(watcher.seen),
        "all_completed": complete,
        "preload_s": round(load_s, 2),
        "ready_to_last_s": round(last - ready, 2),
        "eps_from_ready": round(events / max(last - ready, 1e-9), 1),
        "eps": steady_eps(watcher, events, expected),
    }


async def _floor_run(ctx: Context, plan: Plan, guarantee: str) -> dict[str, Any]:
    """The same raw events through a Faust agent that does nothing (bench/faust_floor.py)."""
    name = {"exactly_once": "eos", "at_least_once": "alo"}[guarantee]
    namespace = ctx.namespace(f"floor-{name}")
    topics = await ctx.make_topics(namespace)
    await preload(ctx.bootstrap, topics.raw, plan.deliveries)
    events = len(plan.deliveries)
    log = (ctx.workdir / f"faust-floor-{name}.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        *python_module(
            "bench.faust_floor",
            ctx.bootstrap,
            topics.raw,
            str(ctx.partitions),
            str(events),
            guarantee,
            str(ctx.workdir / f"data-floor-{name}"),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    try:
        assert proc.stdout is not None
        line = b""
        while b"done " not in line and not proc.stdout.at_eof():
            # Faust's worker also writes its start-up spinner to stdout (escape codes, no newline).
            line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        log.close()
    word, first, last = line[line.find(b"done ") :].decode().split()
    if word != "done":
        raise RuntimeError(f"the Faust floor did not finish: {line!r}")
    return {"events": events, "eps": round(events / max(float(last) - float(first), 1e-9), 1)}


async def _scale_run(ctx: Context, plan: Plan, workers: int) -> dict[str, Any]:
    """Exactly-once workers that joined the group first, then the backlog: input events/s
    between the first and the last completed record, and the CPU each worker used meanwhile."""
    namespace = ctx.namespace(f"scale-{workers}w")
    topics = await ctx.make_topics(namespace)
    expected = len(plan.expectations.complete)
    watcher = Watcher(ctx.bootstrap, topics.completed)
    await watcher.start()
    started = exactly_once_workers(ctx, namespace, f"scale-{workers}w", workers)
    services = [w.service for w in started]
    try:
        await all_ready(started, 120)
        await asyncio.sleep(SCALE_SETTLE_S)  # the group's last rebalance, before any load
        cpu0 = [cpu_seconds(svc.pid) for svc in services]
        load_s = await preload(ctx.bootstrap, topics.raw, plan.deliveries)
        complete = await watcher.until(expected, TIMEOUT_S)
        cpu1 = [cpu_seconds(svc.pid) for svc in services]
    finally:
        for svc in services:
            svc.stop()
        await watcher.stop()
    if not complete:
        raise RuntimeError(
            f"B3 scale-out, {workers} workers: {len(watcher.seen):,} of {expected:,}"
        )
    span = (watcher.last_at or 0.0) - (watcher.first_at or 0.0)
    return {
        "workers": workers,
        "partitions": ctx.partitions,
        "preload_s": round(load_s, 2),
        "eps": steady_eps(watcher, len(plan.deliveries), expected),
        "cpu_cores_each": [
            round((b - a) / max(span, 1e-9), 2) if a is not None and b is not None else None
            for a, b in zip(cpu0, cpu1, strict=True)
        ],
    }


async def _run(ctx: Context) -> dict[str, Any]:
    plan = session_plan(ctx.worker_sessions, seed=11, mix=MIX)
    out: dict[str, Any] = {
        "sessions": ctx.worker_sessions,
        "events": len(plan.deliveries),
        "duplicate_share_of_deliveries": round(
            1 - 2 * ctx.worker_sessions / len(plan.deliveries), 3
        ),
        "partitions": ctx.partitions,
    }
    out["processor"] = processor.run(ctx.worker_sessions, MIX)
    out["baseline"] = await _baseline_run(ctx, plan)
    out["eos"] = await _worker_run(ctx, plan, "exactly_once")
    out["alo"] = await _worker_run(ctx, plan, "at_least_once")
    out["faust_floor_eos"] = await _floor_run(ctx, plan, "exactly_once")
    out["faust_floor_alo"] = await _floor_run(ctx, plan, "at_least_once")
    out["eos_ab"] = await _worker_run(ctx, plan, "exactly_once", AB_COMMIT_INTERVAL_S)
    wide = replace(ctx, partitions=SCALE_PARTITIONS)
    scale_plan = session_plan(2 * ctx.worker_sessions, seed=12, mix=MIX)
    out["scale_1w"] = await _scale_run(wide, scale_plan, 1)
    out["scale_2w"] = await _scale_run(wide, scale_plan, 2)
    base = out["baseline"]["eps"]
    out["figures"] = {
        "worker_eps_eos": out["eos"]["eps"],
        "worker_eps_alo": out["alo"]["eps"],
        "worker_baseline_eps": base,
        "worker_ratio_eos": ratio(out["eos"]["eps"], base),
        "worker_ratio_alo": ratio(out["alo"]["eps"], base),
        "worker_startup_s": out["eos"]["startup_to_ready_s"],
        # What faust-streaming alone sustains with an agent that does nothing: the worker's ceiling.
        "worker_faust_floor_eps_eos": out["faust_floor_eos"]["eps"],
        "worker_faust_floor_eps_alo": out["faust_floor_alo"]["eps"],
        "worker_share_of_floor_eos": ratio(out["eos"]["eps"], out["faust_floor_eos"]["eps"]),
        "worker_commit_interval_s": out["eos"]["commit_interval_s"],
        # The processor alone, in-process (bench/processor.py): CPU per raw event.
        "worker_processor_us_per_event": out["processor"]["us_per_event"],
        "worker_eps_eos_commit_500ms": out["eos_ab"]["eps"],
        "worker_eps_eos_vs_commit_500ms": ratio(out["eos"]["eps"], out["eos_ab"]["eps"]),
        "worker_scale_eps_1w": out["scale_1w"]["eps"],
        "worker_scale_eps_2w": out["scale_2w"]["eps"],
        "worker_scale_ratio_2w": ratio(out["scale_2w"]["eps"], out["scale_1w"]["eps"]),
        "worker_scale_cpu_cores_1w": out["scale_1w"]["cpu_cores_each"],
        "worker_scale_cpu_cores_2w": out["scale_2w"]["cpu_cores_each"],
    }
    return out


def run(ctx: Context) -> dict[str, Any]:
    return asyncio.run(_run(ctx))
