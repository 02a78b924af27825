"""Worker faults under signed traffic: kill -9 among three, rebalance 1 -> 3 -> 1, many kills."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.reliability.conftest import ReportBook
from tests.reliability.harness import (
    RECOVERY_S,
    Stack,
    by_scale,
    scenario,
    send_signed,
    traffic_plan,
    ttl_for,
)
from tests.reliability.outputs import assert_invariants, settle

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


@scenario("5")
async def test_rebalance_under_load_one_three_one(stack: Stack, report_book: ReportBook) -> None:
    sessions = by_scale(1500, 20_000)
    rate = by_scale(250, 600)
    plan = traffic_plan(sessions, 5)
    stack.env.ttl_seconds = ttl_for(plan, rate)
    producer, (first,) = await stack.start("w1")
    sending = asyncio.create_task(
        send_signed(producer.url, plan, rate=rate, max_attempts=40, retry_cap_s=2.0)
    )
    await asyncio.sleep(3.0)
    t0 = time.monotonic()
    grown = [stack.worker("w2"), stack.worker("w3")]
    await stack.ready_workers([first, *grown], RECOVERY_S)
    up_s = time.monotonic() - t0
    await asyncio.sleep(3.0)
    t0 = time.monotonic()
    for w in grown:
        await asyncio.to_thread(w.stop)
    await stack.ready_workers([first], RECOVERY_S)
    down_s = time.monotonic() - t0
    report, expected, outcome = await settle(stack.env, sending)
    # Figures first, so that the report shows them also when an invariant fails.
    report_book.record(
        "5",
        "Rebalance under load: 1 -> 3 -> 1 workers",
        {
            "sessions planned": sessions,
            "worker TTL (s)": stack.env.ttl_seconds,
            "webhooks sent (requests)": report.requests,
            "accepted (2xx)": len(report.delivered),
            "expected completed / incomplete": f"{len(expected.complete)} / {len(expected.incomplete)}",
            "completed records (distinct sessions)": f"{len(outcome.completed)} ({len(set(r.key for r in outcome.completed))})",
            "incomplete records": len(outcome.incomplete),
            "duplicates dropped (live workers' metrics)": stack.scrape_total(
                "sessionflow_duplicates_total"
            ),
            "1 -> 3 workers, all ready after (s)": round(up_s, 1),
            "3 -> 1 workers, ready after (s)": round(down_s, 1),
            "outputs complete after last 2xx (s)": round(outcome.waited_s, 1),
            "worker processes alive at the end": sum(
                w.proc is not None and w.proc.poll() is None for w in stack.workers
            ),
        },
    )
    assert_invariants(outcome, expected)
