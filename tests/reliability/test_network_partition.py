"""A worker cut off from the broker by a network partition (scenario 15), while another takes its
partitions; then the partition heals.

Unlike a kill or a freeze, the cut-off worker runs on: its timers fire, its commits and
heartbeats go out and wait for answers that do not come, and no connection closes. It reaches the
broker through a proxy in front of a listener of its own (`MetadataProxy.hold`), so the producer,
the other worker and the test's readers are not cut off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from bench.proc import free_port
from tests.integration.metadata_proxy import MetadataProxy
from tests.integration.worker_fixtures import WorkerProcess
from tests.reliability.conftest import ReportBook, make_env
from tests.reliability.harness import (
    LONG,
    RECOVERY_S,
    PrivateBroker,
    Stack,
    by_scale,
    scenario,
    send_signed,
    traffic_plan,
    ttl_for,
)
from tests.reliability.outputs import assert_invariants, settle

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

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


@scenario("15")
async def test_a_worker_cut_off_from_the_broker(
    cut_off_stack: tuple[Stack, MetadataProxy], report_book: ReportBook
) -> None:
    stack, proxy = cut_off_stack
    sessions = by_scale(1500, 12_000)
    rate = 200.0
    cuts = (SHORT_CUT_S, LONG_CUT_S) * 3 if LONG else (SHORT_CUT_S,)
    plan = traffic_plan(sessions, 15, half_only_share=0.0)
    stack.env.ttl_seconds = ttl_for(plan, rate)
    await stack.env.make_topics()
    producer = stack.producer()
    cut_off = WorkerProcess(replace(stack.env, bootstrap=proxy.bootstrap), "w1")
    stack.workers.append(cut_off)
    cut_off.start()
    pair = [cut_off, stack.worker("w2")]
    await producer.wait_ready()
    await stack.ready_workers(pair, RECOVERY_S)
    sending = asyncio.create_task(
        send_signed(producer.url, plan, rate=rate, max_attempts=40, retry_cap_s=2.0)
    )
    for cut_s in cuts:
        await asyncio.sleep(2.0)  # mid-stream: the worker's open transaction holds outputs
        proxy.hold()
        await asyncio.sleep(cut_s)
        proxy.release()
        await stack.ready_workers(pair, RECOVERY_S)
    report, expected, outcome = await settle(stack.env, sending)
    alive = sum(w.proc is not None and w.proc.poll() is None for w in pair)
    report_book.record(
        "15",
        "Two workers; one cut off from the broker (a network partition), then healed",
        {
            "sessions planned": sessions,
            "cuts (s)": list(cuts),
            "accepted (2xx)": len(report.delivered),
            "completed / expected": f"{len(outcome.completed)} / {len(expected.complete)}",
            "cut-off worker's transactions dropped, by reason": (
                {k: int(v) for k, v in cut_off.dropped_transactions().items() if v}
                if alive == 2
                else "(stopped)"
            ),
            "outputs complete after last 2xx (s)": round(outcome.waited_s, 1),
            "worker processes alive at the end": alive,
        },
    )
    assert alive == 2, "\n".join(w.log_tail() for w in pair)
    assert_invariants(outcome, expected)
