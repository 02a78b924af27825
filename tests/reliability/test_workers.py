"""Workers under signed traffic: rebalanced (1 -> 3 -> 1), one frozen while another takes its
partitions (a zombie), one cut off from the broker by a network partition.

Unlike a kill or a freeze, a worker cut off runs on: its timers fire, its commits and heartbeats go
out and wait for answers that do not come, and no connection closes. It reaches the broker through
a proxy in front of a listener of its own (`MetadataProxy.hold`), so the producer, the other worker
and the test's readers are not cut off.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any

import pytest

from bench.proc import free_port
from cli import traffic
from tests.integration.metadata_proxy import MetadataProxy
from tests.integration.worker_fixtures import WorkerProcess
from tests.pausing import paused
from tests.reliability.conftest import ReportBook, make_env
from tests.reliability.harness import (
    LONG,
    RECOVERY_S,
    PrivateBroker,
    Stack,
    by_scale,
    scenario,
)
from tests.reliability.outputs import assert_invariants, settle

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


@scenario("5")
async def test_rebalance_under_load_one_three_one(stack: Stack, report_book: ReportBook) -> None:
    sessions = by_scale(1500, 20_000)
    rate = by_scale(250, 600)
    plan = stack.plan_load(sessions, 5, rate)
    producer, (first,) = await stack.start("w1")
    sending = stack.keep_sending(producer, plan, rate)
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
            "worker processes alive at the end": sum(w.alive() for w in stack.workers),
        },
    )
    assert_invariants(outcome, expected)


def _dropped_by_reason(stack: Stack) -> dict[str, int]:
    """sessionflow_transactions_dropped_total by reason, summed over the live workers."""
    dropped: Counter[str] = Counter()
    for w in stack.live_workers():
        dropped.update({k: int(v) for k, v in w.dropped_transactions().items() if v})
    return dict(sorted(dropped.items()))


# Scenarios 14 and 15: two workers, signed load at this rate, no half-only sessions (their
# incomplete records wait for the TTL; scenarios 4-6 have them).
PAIR_RATE = 200.0


def _pair_load(stack: Stack, item: str) -> traffic.Plan:
    """Scenario `item`'s load, and the workers' TTL for it: before the workers start."""
    return stack.plan_load(by_scale(1500, 12_000), int(item), PAIR_RATE, half_only_share=0.0)


async def _pair_under_faults(
    stack: Stack,
    report_book: ReportBook,
    item: str,
    title: str,
    plan: traffic.Plan,
    pair: list[WorkerProcess],
    faults: list[Callable[[], Awaitable[object]]],
    figures: dict[str, Any],
) -> None:
    """Send `plan` signed to the ready `pair` while each fault strikes in turn, 2 s apart
    (mid-stream: the struck worker's open transaction holds outputs), both workers ready again
    after each; then record scenario `item` and assert that both run on and the invariants."""
    producer = stack.producers[0]
    await producer.wait_ready()
    await stack.ready_workers(pair, RECOVERY_S)
    sending = stack.keep_sending(producer, plan, PAIR_RATE)
    for fault in faults:
        await asyncio.sleep(2.0)
        await fault()
        await stack.ready_workers(pair, RECOVERY_S)
    report, expected, outcome = await settle(stack.env, sending)
    alive = sum(w.alive() for w in pair)
    report_book.record(
        item,
        title,
        {
            "sessions planned": plan.parameters["sessions"],
            "worker TTL (s)": stack.env.ttl_seconds,
            **figures,
            "accepted (2xx)": len(report.delivered),
            "completed / expected": f"{len(outcome.completed)} / {len(expected.complete)}",
            "transactions dropped, by reason": _dropped_by_reason(stack),
            "lost workers fenced by a restore": stack.scrape_total(
                "sessionflow_transactions_fenced_total"
            ),
            "outputs complete after last 2xx (s)": round(outcome.waited_s, 1),
            "worker processes alive at the end": alive,
        },
    )
    assert alive == 2, "\n".join(w.log_tail() for w in pair)
    assert_invariants(outcome, expected)


# Longer than the workers' session timeout (6 s): the group moves the frozen worker's partitions
# to the other one. Shorter than their transaction timeout (10 s): the frozen worker's open
# transaction is still alive on the broker when it runs again.
FREEZE_S = 8.5


async def _freeze(worker: WorkerProcess) -> None:
    assert worker.proc is not None
    async with paused(worker.proc.pid):
        await asyncio.sleep(FREEZE_S)


@scenario("14")
async def test_a_frozen_worker_comes_back_as_a_zombie(
    stack: Stack, report_book: ReportBook
) -> None:
    """SIGSTOP one of two workers mid-transaction for longer than its session: the other takes its
    partitions and works them from their committed offsets while the frozen one still holds an
    open transaction with outputs for the same sessions. SIGCONT: the zombie must not commit that
    work (KIP-447: the group refuses its offsets; the new owner's restore fenced its transactional
    id; one transaction per partition: the new owner's producer fenced it), and must rejoin as a
    worker again, not stop."""
    freezes = by_scale(1, 6)
    plan = _pair_load(stack, "14")
    await stack.env.make_topics()
    stack.producer()
    pair = [stack.worker("w1"), stack.worker("w2")]
    await _pair_under_faults(
        stack,
        report_book,
        "14",
        "Two workers; one frozen (SIGSTOP) past its session timeout, then resumed",
        plan,
        pair,
        [partial(_freeze, pair[i % 2]) for i in range(freezes)],
        {"freezes (s each)": f"{freezes} ({FREEZE_S})"},
    )


# Past the session timeout (6 s) and within the transaction timeout (10 s); at the long scale
# also past both and the broker's next look for transactions past their timeout (every 10 s).
SHORT_CUT_S, LONG_CUT_S = 8.0, 22.0


@pytest.fixture
async def cut_off_stack(
    request: pytest.FixtureRequest, report_book: ReportBook
) -> AsyncIterator[tuple[Stack, MetadataProxy]]:
    """A stack with a broker of its own, and a proxy in front of that broker's second listener."""
    proxy_port, listener_port = free_port(), free_port()
    broker = PrivateBroker(
        report_book.root / request.node.name / "kafka", proxied=(listener_port, proxy_port)
    )
    stack = Stack(make_env(report_book, broker.bootstrap, request), broker=broker)
    try:
        await broker.up()
        async with MetadataProxy(f"127.0.0.1:{listener_port}", proxy_port) as proxy:
            try:
                yield stack, proxy
            finally:
                proxy.release()  # the worker behind it stops as cleanly as the others
                await stack.close()
    finally:
        await broker.down()  # stopped already, unless the proxy never started


async def _cut(proxy: MetadataProxy, seconds: float) -> None:
    proxy.hold()
    await asyncio.sleep(seconds)
    proxy.release()


@scenario("15")
async def test_a_worker_cut_off_from_the_broker(
    cut_off_stack: tuple[Stack, MetadataProxy], report_book: ReportBook
) -> None:
    stack, proxy = cut_off_stack
    cuts = (SHORT_CUT_S, LONG_CUT_S) * 3 if LONG else (SHORT_CUT_S,)
    plan = _pair_load(stack, "15")
    await stack.env.make_topics()
    stack.producer()
    cut_off = WorkerProcess(replace(stack.env, bootstrap=proxy.bootstrap), "w1")
    stack.workers.append(cut_off)
    cut_off.start()
    await _pair_under_faults(
        stack,
        report_book,
        "15",
        "Two workers; one cut off from the broker (a network partition), then healed",
        plan,
        [cut_off, stack.worker("w2")],
        [partial(_cut, proxy, s) for s in cuts],
        {"cuts (s)": list(cuts)},
    )
