"""Workers rebalanced under signed traffic (1 -> 3 -> 1), and a worker frozen while another takes
its partitions (a zombie)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

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


# Longer than the workers' session timeout (6 s): the group moves the frozen worker's partitions
# to the other one. Shorter than their transaction timeout (10 s): the frozen worker's open
# transaction is still alive on the broker when it runs again.
FREEZE_S = 8.5


def _dropped_by_reason(stack: Stack) -> dict[str, int]:
    """sessionflow_transactions_dropped_total by reason, summed over the live workers."""
    dropped: Counter[str] = Counter()
    for w in stack.workers:
        if w.proc is not None and w.proc.poll() is None:
            dropped.update({k: int(v) for k, v in w.dropped_transactions().items() if v})
    return dict(sorted(dropped.items()))


@scenario("14")
async def test_a_frozen_worker_comes_back_as_a_zombie(
    stack: Stack, report_book: ReportBook
) -> None:
    """SIGSTOP one of two workers mid-transaction for longer than its session: the other takes its
    partitions and works them from their committed offsets while the frozen one still holds an
    open transaction with outputs for the same sessions. SIGCONT: the zombie must not commit that
    work (KIP-447: the group refuses its offsets; one transaction per partition: the new owner's
    producer fenced it), and must rejoin as a worker again, not stop."""
    sessions = by_scale(1500, 12_000)
    rate = 200.0
    freezes = by_scale(1, 6)
    # No half-only sessions: their incomplete records wait for the TTL (scenarios 4-6 have them).
    plan = traffic_plan(sessions, 14, half_only_share=0.0)
    stack.env.ttl_seconds = ttl_for(plan, rate)
    producer, pair = await stack.start("w1", "w2")
    sending = asyncio.create_task(
        send_signed(producer.url, plan, rate=rate, max_attempts=40, retry_cap_s=2.0)
    )
    for i in range(freezes):
        await asyncio.sleep(2.0)  # mid-stream: the victim's open transaction holds outputs
        victim = pair[i % 2]
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(FREEZE_S)
        victim.proc.send_signal(signal.SIGCONT)
        await stack.ready_workers(pair, RECOVERY_S)
    report, expected, outcome = await settle(stack.env, sending)
    alive = sum(w.proc is not None and w.proc.poll() is None for w in pair)
    report_book.record(
        "14",
        "Two workers; one frozen (SIGSTOP) past its session timeout, then resumed",
        {
            "sessions planned": sessions,
            "freezes (s each)": f"{freezes} ({FREEZE_S})",
            "accepted (2xx)": len(report.delivered),
            "completed / expected": f"{len(outcome.completed)} / {len(expected.complete)}",
            "transactions dropped, by reason": _dropped_by_reason(stack),
            "outputs complete after last 2xx (s)": round(outcome.waited_s, 1),
            "worker processes alive at the end": alive,
        },
    )
    assert alive == 2, "\n".join(w.log_tail() for w in pair)
    assert_invariants(outcome, expected)
