"""B4 end to end: from the 2xx of a session's second half to its completed record being visible
to a read_committed consumer, at a steady moderate rate, in both processing guarantees."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench import httpload, txn_fanout
from bench.b3_worker import worker_env
from bench.context import Context
from bench.kafka_io import Watcher
from bench.proc import Service, fetch_text, free_port, python_module, wait_http
from bench.stats import ScrapedHistogram, latency_summary
from bench.webhooks import session_plan, sign_all
from streams.settings import WorkerSettings

# The first part of the run warms connections, batches and the worker's first commit.
WARMUP_SHARE = 0.2
# The commit by transactions per commit: alternating rounds of each variant, and their length.
FANOUT_ROUNDS = 2
FANOUT_SECONDS = 8.0
CONNECTIONS = 32
DEFAULT_SCOPE: str = WorkerSettings.model_fields["transaction_scope"].default


async def _mode(
    ctx: Context, guarantee: str, seed: int, transaction_scope: str = DEFAULT_SCOPE
) -> dict[str, Any]:
    name = {"exactly_once": "eos", "at_least_once": "alo"}[guarantee]
    if transaction_scope != DEFAULT_SCOPE:
        name = f"{name}-{transaction_scope}"
    namespace = ctx.namespace(f"e2e-{name}")
    topics = await ctx.make_topics(namespace)
    sessions = max(10, int(ctx.e2e_rate * ctx.e2e_seconds / 2))
    plan = session_plan(sessions, seed=seed)
    deliveries = plan.deliveries
    watcher = Watcher(ctx.bootstrap, topics.completed)
    await watcher.start()
    http_port, admin_port, worker_port = free_port(), free_port(), free_port()
    producer = Service(
        f"e2e-producer-{name}",
        python_module("cli", "producer"),
        ctx.env(
            namespace, SESSIONFLOW_HTTP_PORT=str(http_port), SESSIONFLOW_ADMIN_PORT=str(admin_port)
        ),
        ctx.workdir,
    )
    worker = Service(
        f"e2e-worker-{name}",
        python_module("cli", "worker"),
        worker_env(
            ctx,
            namespace,
            f"e2e-worker-{name}",
            worker_port,
            guarantee,
            SESSIONFLOW_TRANSACTION_SCOPE=transaction_scope,
        ),
        ctx.workdir,
    )
    guard = ctx.guard(namespace, worker_port)
    await guard.start()
    try:
        await asyncio.to_thread(
            wait_http, f"http://127.0.0.1:{admin_port}/readyz", producer.proc, 60, producer.log
        )
        await asyncio.to_thread(
            wait_http, f"http://127.0.0.1:{worker_port}/readyz", worker.proc, 120, worker.log
        )
        # Let the worker's first rebalance settle: one throwaway pair must come through first.
        warm = session_plan(1, seed=seed + 1000)
        await httpload.paced(http_port, sign_all(warm.deliveries), 1, 100.0)
        if not await watcher.until(1, 90, guard):
            raise RuntimeError("the worker produced nothing within 90 s")

        second_2xx: dict[str, float] = {}
        halves: dict[str, int] = {}

        def on_done(index: int, status: int, at: float) -> None:
            if 200 <= status < 300:
                sid = deliveries[index].session_id or ""
                halves[sid] = halves.get(sid, 0) + 1
                second_2xx[sid] = max(second_2xx.get(sid, 0.0), at)

        requests = sign_all(deliveries)
        started = time.time()
        send = asyncio.create_task(
            httpload.paced(http_port, requests, CONNECTIONS, ctx.e2e_rate, None, on_done)
        )
        while not send.done():
            await watcher.poll()
        sent = await send
        complete = {s for s, n in halves.items() if n == 2}
        await watcher.until(len(complete) + 1, 60, guard)
        commits = commit_summary(
            await asyncio.to_thread(fetch_text, f"http://127.0.0.1:{worker_port}/metrics")
        )
    finally:
        worker.stop()
        producer.stop()
        await watcher.stop()
        await guard.stop()
    missing = complete - set(watcher.seen)
    if missing:
        raise RuntimeError(
            f"B4 {guarantee}: {len(missing)} of {len(complete)} sessions answered 2xx never"
            f" completed within 60 s, no partition stalled: e.g. {sorted(missing)[:3]}"
        )
    warm_until = started + WARMUP_SHARE * ctx.e2e_seconds
    measured = [s for s in complete if s in watcher.seen and second_2xx[s] >= warm_until]
    latencies = [watcher.seen[s] - second_2xx[s] for s in measured]
    # The same latency split where the worker appended the record (its Kafka timestamp; one
    # clock, one machine): before, the producer, the fetch and the worker; after, the wait for
    # the commit (exactly-once) and the read.
    before_append = [watcher.appended[s] - second_2xx[s] for s in measured]
    after_append = [watcher.seen[s] - watcher.appended[s] for s in measured]
    return {
        "guarantee": guarantee,
        "transaction_scope": transaction_scope,
        "rate_eps": ctx.e2e_rate,
        "sessions": sessions,
        "http": {k: sent[k] for k in ("ok", "non2xx", "errors", "ok_rps", "p50_ms", "p99_ms")},
        "missing": len(complete - set(watcher.seen)),
        **latency_summary(latencies),
        "before_append": latency_summary(before_append),
        "after_append": latency_summary(after_append),
        "commits": commits,
    }


def commit_summary(metrics_text: str) -> dict[str, float | None]:
    """The worker's own account of its commits (sessionflow_commit_seconds), whole run."""
    return ScrapedHistogram.read(metrics_text, "sessionflow_commit_seconds").summary_ms()


async def _run(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {
        "commit_interval_s": WorkerSettings.model_fields["commit_interval_seconds"].default,
        "warmup_share": WARMUP_SHARE,
    }
    out["alo"] = await _mode(ctx, "at_least_once", 21)
    out["eos"] = await _mode(ctx, "exactly_once", 22)
    # The same with one transaction per partition (SESSIONFLOW_TRANSACTION_SCOPE=partition).
    out["eos_partition"] = await _mode(ctx, "exactly_once", 23, transaction_scope="partition")
    # The lever left for the exactly-once p99: one transaction per commit instead of one per
    # partition (KIP-447), measured outside the worker (bench/txn_fanout.py).
    out["txn_fanout"] = fanout = await txn_fanout.measure(
        ctx.bootstrap, ctx.namespace("txn"), FANOUT_SECONDS, FANOUT_ROUNDS
    )
    out["figures"] = {
        "e2e_p50_ms_alo": out["alo"]["p50_ms"],
        "e2e_p99_ms_alo": out["alo"]["p99_ms"],
        "e2e_p50_ms_eos": out["eos"]["p50_ms"],
        "e2e_p99_ms_eos": out["eos"]["p99_ms"],
        "e2e_commit_p50_ms_eos": out["eos"]["commits"]["p50_ms"],
        "e2e_commit_p99_ms_eos": out["eos"]["commits"]["p99_ms"],
        "e2e_commit_mean_ms_eos": out["eos"]["commits"]["mean_ms"],
        "e2e_commit_interval_s": out["commit_interval_s"],
        # Where the exactly-once latency goes: up to the worker's append of the completed record,
        # and from there to a read_committed consumer (the commit).
        "e2e_p99_ms_eos_before_append": out["eos"]["before_append"]["p99_ms"],
        "e2e_p99_ms_eos_after_append": out["eos"]["after_append"]["p99_ms"],
        "e2e_p50_ms_eos_partition_txns": out["eos_partition"]["p50_ms"],
        "e2e_p99_ms_eos_partition_txns": out["eos_partition"]["p99_ms"],
        "e2e_commit_p99_ms_eos_partition_txns": out["eos_partition"]["commits"]["p99_ms"],
        "e2e_commit_p99_ms_per_partition_txns": fanout["figures"]["commit_p99_ms_per_partition"],
        "e2e_commit_p99_ms_one_txn": fanout["figures"]["commit_p99_ms_one"],
        "e2e_commit_p99_ratio_one_txn": fanout["figures"]["commit_p99_ratio_one_to_per_partition"],
    }
    return out


def run(ctx: Context) -> dict[str, Any]:
    return asyncio.run(_run(ctx))
