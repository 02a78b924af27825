"""Workers killed with SIGKILL: among three (item 4), one many times (item 6), one in the middle of
a batch (item 11)."""

from __future__ import annotations

import asyncio
import random
import time
from functools import partial

import pytest

from cli.traffic import Delivery
from tests.integration.worker_fixtures import WorkerProcess, produce_deliveries
from tests.polling import wait_until
from tests.reliability.conftest import ReportBook
from tests.reliability.harness import (
    RECOVERY_S,
    Stack,
    by_scale,
    scenario,
    traffic_plan,
)
from tests.reliability.outputs import (
    Expected,
    assert_invariants,
    committed_offsets,
    end_offsets,
    settle,
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
async def test_three_workers_one_killed_three_rounds(stack: Stack, report_book: ReportBook) -> None:
    names = ["w1", "w2", "w3"]
    rng = random.Random(4)
    sessions = by_scale(1200, 20_000)
    rate = 200.0
    plan = stack.plan_load(sessions, 4, rate, half_only_share=0.0)
    producer, _ = await stack.start(*names)
    sending = stack.keep_sending(producer, plan, rate)
    recoveries = [await _kill_and_restart(stack, rng.choice(names), rng) for _ in range(3)]
    report, expected, outcome = await settle(stack.env, sending)
    report_book.record(
        "4",
        "Three workers; kill -9 one at a random moment, restart it; three rounds",
        {
            "sessions planned": sessions,
            "worker TTL (s)": stack.env.ttl_seconds,
            "accepted (2xx)": len(report.delivered),
            "completed records (distinct sessions)": f"{len(outcome.completed)} ({len({r.key for r in outcome.completed})})",
            "expected completed": len(expected.complete),
            "duplicates dropped (live workers' metrics)": stack.scrape_total(
                "sessionflow_duplicates_total"
            ),
            "restarted worker ready after (s), per round": [round(s, 1) for s in recoveries],
            "outputs complete after last 2xx (s)": round(outcome.waited_s, 1),
        },
    )
    assert_invariants(outcome, expected)


@scenario("6")
async def test_one_worker_killed_at_random_points_many_times(
    stack: Stack, report_book: ReportBook
) -> None:
    rng = random.Random(6)
    kills = by_scale(6, 25)
    sessions = by_scale(400, 3000)
    rate = 80.0
    plan = stack.plan_load(sessions, 6, rate)
    producer, _ = await stack.start("w1")
    sending = stack.keep_sending(producer, plan, rate)
    # Kills land anywhere in the worker's cycle: between a table write, an output and a commit.
    recoveries = [await _kill_and_restart(stack, "w1", rng) for _ in range(kills)]
    report, expected, outcome = await settle(stack.env, sending)
    report_book.record(
        "6",
        "One worker killed with SIGKILL at random points, many times",
        {
            "kills": kills,
            "sessions planned": sessions,
            "worker TTL (s)": stack.env.ttl_seconds,
            "accepted (2xx)": len(report.delivered),
            "completed / expected": f"{len(outcome.completed)} / {len(expected.complete)}",
            "incomplete / expected": f"{len(outcome.incomplete)} / {len(expected.incomplete)}",
            "restart to ready (s), max": round(max(recoveries), 1),
            "outputs complete after last 2xx (s)": round(outcome.waited_s, 1),
        },
    )
    assert_invariants(outcome, expected)


# Scenario 11: whole sessions produced before each kill (about 2.3 records each).
SESSIONS_PER_KILL = 5_000


@scenario("11")
async def test_a_worker_killed_in_the_middle_of_a_batch(
    stack: Stack, report_book: ReportBook
) -> None:
    """A backlog keeps the worker busy, so every kill lands inside a batch: between a unit's
    sends, its store writes and the commit of its offsets."""
    env = stack.env
    await env.make_topics()
    rng = random.Random(11)
    kills = by_scale(3, 20)
    # Each chunk must outlast the first moments of the worker's applying it: 2,000 sessions (about
    # 4,600 records) were once all committed before the kill in one transaction per worker.
    sessions = kills * SESSIONS_PER_KILL
    plan = traffic_plan(sessions, 11, half_only_share=0.0, planned_share=0.0)
    # A session's deliveries stay in one chunk: its halves are received within the TTL of each
    # other however long the restarts between chunks take.
    by_session: dict[str, list[Delivery]] = {}
    for d in plan.deliveries:
        by_session.setdefault(d.session_id or d.message_id, []).append(d)
    groups = list(by_session.values())
    chunks = [[d for g in groups[i::kills] for d in g] for i in range(kills)]
    applied_at_kill: list[int] = []
    behind_at_kill: list[int] = []
    group = f"{env.namespace}sessionflow"
    for chunk in chunks:
        # The chunk waits for the worker: it starts with a backlog, and is killed inside it.
        await produce_deliveries(env.bootstrap, env.topics.raw, chunk)
        victim = stack.worker("w1")  # same data dir each time: its RocksDB survives the kill
        await stack.ready_workers([victim], RECOVERY_S)
        await wait_until(partial(_started, victim), "the victim to start applying", RECOVERY_S)
        await asyncio.sleep(rng.uniform(0.0, 0.2))
        ends = await end_offsets(env.bootstrap, env.topics.raw)
        committed = await committed_offsets(env.bootstrap, group, env.topics.raw)
        applied_at_kill.append(_events(victim))
        victim.kill()
        behind_at_kill.append(sum(end - committed.get(p, 0) for p, end in ends.items()))
    await stack.ready_workers([stack.worker("w1")], RECOVERY_S)

    expected = Expected()
    expected.delivered_ids = {d.message_id for d in plan.deliveries}
    expected.merge(set(plan.expectations.complete), {})
    outcome = await wait_outputs(env, expected)
    report_book.record(
        "11",
        "One worker killed with SIGKILL in the middle of a batch, many times",
        {
            "kills": kills,
            "sessions (one chunk of whole sessions produced before each kill)": sessions,
            "records the victim had applied when killed": applied_at_kill,
            "records not yet committed when killed": behind_at_kill,
            "completed / expected": f"{len(outcome.completed)} / {len(expected.complete)}",
            "outputs complete after the last restart (s)": round(outcome.waited_s, 1),
        },
    )
    # Each victim was applying records and had more left: killed in the middle of its work.
    assert all(n > 0 for n in applied_at_kill), f"a victim had applied nothing: {applied_at_kill}"
    assert all(n > 0 for n in behind_at_kill), f"a victim had caught up: {behind_at_kill}"
    assert_invariants(outcome, expected)


def _started(worker: WorkerProcess) -> bool:
    return _events(worker) > 0


def _events(worker: WorkerProcess) -> int:
    """Raw records the worker applied so far (its /metrics), 0 when it does not answer."""
    try:
        return int(worker.total("sessionflow_events_total"))
    except OSError:
        return 0
