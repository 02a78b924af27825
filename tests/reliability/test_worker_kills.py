"""Workers killed with SIGKILL under signed traffic: among three (item 4), and one, many times (item 6)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from tests.reliability.conftest import ReportBook
from tests.reliability.harness import (
    RECOVERY_S,
    Expected,
    Stack,
    assert_invariants,
    by_scale,
    scenario,
    send_signed,
    traffic_plan,
    wait_outputs,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

# The suite's TTL (30 s) is shorter than a restart's stall (restore, rejoin): the TTL runs on
# stream time, so a stall must not split a pair.


async def _kill_and_restart(stack: Stack, name: str, rng: random.Random) -> float:
    """SIGKILL the live worker called `name` at a random moment, start it again; seconds to ready."""
    await asyncio.sleep(rng.uniform(0.3, 2.5))
    victim = next(w for w in reversed(stack.workers) if w.name == name)
    victim.kill()
    started = time.monotonic()
    restarted = stack.worker(name)  # same name: same data dir, its RocksDB survives the kill
    await stack.ready_workers([restarted], RECOVERY_S)
    return time.monotonic() - started


@scenario("4")
async def test_three_workers_one_killed_three_rounds(
    stack_on_shared: Stack, report_book: ReportBook
) -> None:
    stack = stack_on_shared
    await stack.env.make_topics()
    producer = stack.producer()
    names = ["w1", "w2", "w3"]
    workers = [stack.worker(n) for n in names]
    await producer.wait_ready()
    await stack.ready_workers(workers, RECOVERY_S)

    rng = random.Random(4)
    sessions = by_scale(1200, 20_000)
    plan = traffic_plan(sessions, 4, half_only_share=0.0)
    sending = asyncio.create_task(
        send_signed(producer.url, plan, rate=200.0, max_attempts=40, retry_cap_s=2.0)
    )
    recoveries = [await _kill_and_restart(stack, rng.choice(names), rng) for _ in range(3)]
    report = await sending
    assert report.ok, f"the sender gave up on {len(report.failed_message_ids)} webhooks"

    expected = Expected()
    expected.add(report)
    outcome = await wait_outputs(stack.env, expected)
    report_book.record(
        "4",
        "Three workers; kill -9 one at a random moment, restart it; three rounds",
        {
            "sessions planned": sessions,
            "accepted (2xx)": len(report.delivered),
            "completed records (distinct sessions)": f"{len(outcome.completed)} ({len({r.key for r in outcome.completed})})",
            "expected completed": len(expected.complete),
            "duplicates dropped (live workers' metrics)": stack.scrape_duplicates(),
            "restarted worker ready after (s), per round": [round(s, 1) for s in recoveries],
            "outputs complete after last 2xx (s)": round(outcome.waited_s, 1),
        },
    )
    assert_invariants(outcome, expected)


@scenario("6")
async def test_one_worker_killed_at_random_points_many_times(
    stack_on_shared: Stack, report_book: ReportBook
) -> None:
    stack = stack_on_shared
    await stack.env.make_topics()
    producer = stack.producer()
    stack.worker("w1")
    await producer.wait_ready()
    await stack.ready_workers(stack.workers, RECOVERY_S)

    rng = random.Random(6)
    kills = by_scale(6, 25)
    sessions = by_scale(400, 3000)
    plan = traffic_plan(sessions, 6)
    sending = asyncio.create_task(
        send_signed(producer.url, plan, rate=80.0, max_attempts=40, retry_cap_s=2.0)
    )
    # Kills land anywhere in the worker's cycle: between a table write, an output and a commit.
    recoveries = [await _kill_and_restart(stack, "w1", rng) for _ in range(kills)]
    report = await sending
    assert report.ok, f"the sender gave up on {len(report.failed_message_ids)} webhooks"

    expected = Expected()
    expected.add(report)
    outcome = await wait_outputs(stack.env, expected)
    report_book.record(
        "6",
        "One worker killed with SIGKILL at random points, many times",
        {
            "kills": kills,
            "sessions planned": sessions,
            "accepted (2xx)": len(report.delivered),
            "completed / expected": f"{len(outcome.completed)} / {len(expected.complete)}",
            "incomplete / expected": f"{len(outcome.incomplete)} / {len(expected.incomplete)}",
            "restart to ready (s), max": round(max(recoveries), 1),
            "outputs complete after last 2xx (s)": round(outcome.waited_s, 1),
        },
    )
    assert_invariants(outcome, expected)
