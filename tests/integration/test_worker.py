"""`sessionflow worker` against the real broker: pairing, expiry, restarts and a SIGKILL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import orjson
import pytest

from cli.traffic import Delivery, Plan, plan
from sessionflow.events import SESSION_CREATED, SESSION_ENDED
from streams.decode import digest_of
from tests.integration.worker_fixtures import (
    WorkerEnv,
    WorkerProcess,
    assert_exactly_once,
    completed_once,
    ensure_changelog,
    produce_deliveries,
    produce_table,
    read_records,
    start,
    traffic,
)
from tests.polling import wait_until

pytestmark = pytest.mark.integration


async def one_worker_completes(
    worker_env: WorkerEnv, workers: list[WorkerProcess], p: Plan
) -> tuple[WorkerProcess, list[dict[str, object]]]:
    """Worker w1 fed the plan's deliveries: it and the completed records, each exactly once."""
    worker = start(worker_env, workers, "w1")
    await asyncio.to_thread(worker.wait_ready)
    await produce_deliveries(worker_env.bootstrap, worker_env.topics.raw, p.deliveries)
    completed = await read_records(
        worker_env.bootstrap, worker_env.topics.completed, until=len(p.expectations.complete)
    )
    assert_exactly_once(completed, p.expectations.complete)
    return worker, completed


async def test_pairs_dedups_and_expires_with_exact_fields(
    worker_env: WorkerEnv, workers: list[WorkerProcess]
) -> None:
    worker_env.ttl_seconds = 6.0
    worker_env.grace_seconds = (
        1.0  # written straight to the raw topic: no producer deadline to wait out
    )
    await worker_env.make_topics()
    p = traffic(40, seed=1)
    worker, completed = await one_worker_completes(worker_env, workers, p)
    incomplete = await read_records(
        worker_env.bootstrap,
        worker_env.topics.incomplete,
        until=len(p.expectations.incomplete),
        settle_s=4.0,
    )
    assert_exactly_once(incomplete, set(p.expectations.incomplete))
    assert {str(r["sessionId"]): r["reason"] for r in incomplete} == {
        sid: str(reason) for sid, reason in p.expectations.incomplete.items()
    }

    # Field by field against what was sent: identity from created, the rest from ended.
    bodies = {
        (d.session_id, d.event_type): orjson.loads(d.body) for d in p.deliveries if d.session_id
    }
    for record in completed:
        sid = str(record["sessionId"])
        created, ended = bodies[(sid, "session.created")], bodies[(sid, "session.ended")]
        assert record["schemaVersion"] == 1
        assert record["agentId"] == created["agentId"]
        assert (record["type"], record["platform"], record["direction"]) == (
            created["type"],
            created["platform"],
            created["direction"],
        )
        assert record["metadata"] == created["metadata"]
        assert record["analysis"] == ended["analysis"]
        start_at = datetime.fromisoformat(created["createdAt"])
        end_at = datetime.fromisoformat(ended["endedAt"])
        assert record["durationSeconds"] == pytest.approx((end_at - start_at).total_seconds())
    for record in incomplete:
        half = bodies[(str(record["sessionId"]), record["event"]["eventType"])]  # type: ignore[index]
        assert record["event"] == half

    metrics = worker.metrics()
    assert "sessionflow_sessions_incomplete_total" in metrics
    assert 'sessionflow_duplicates_total{event_type="session.created",kind="retry"}' in metrics
    assert "sessionflow_pending_sessions 0.0" in metrics
    # Exactly-once really in effect (the worker's producers are transactional), not only asked for.
    in_effect = f'guarantee="exactly_once",transactions="{worker_env.transaction_scope}"'
    assert f"sessionflow_processing_guarantee{{{in_effect}}} 1.0" in metrics


async def test_a_restarted_worker_re_emits_nothing_and_drops_late_duplicates(
    worker_env: WorkerEnv, workers: list[WorkerProcess]
) -> None:
    await worker_env.make_topics()
    p = traffic(30, seed=2, half_only=0.0)
    first, _ = await one_worker_completes(worker_env, workers, p)

    assert first.stop() == 0
    second = start(
        worker_env, workers, "w1"
    )  # same data dir: the table comes back from disk and changelog
    await asyncio.to_thread(second.wait_ready)
    # The sender retries everything once more, after the restart.
    await produce_deliveries(worker_env.bootstrap, worker_env.topics.raw, p.deliveries)
    # Once the worker has applied every retry, anything it emitted for them is committed within
    # a commit interval (0.1 s): a few seconds more show that nothing was.
    await wait_until(
        lambda: second.total("sessionflow_events_total") >= len(p.deliveries),
        "the restarted worker to apply the retries",
    )
    again = await read_records(
        worker_env.bootstrap,
        worker_env.topics.completed,
        until=len(p.expectations.complete) + 1,
        timeout_s=3,
    )
    assert_exactly_once(again, p.expectations.complete)


# A worker killed for good (not restarted) with one transaction per worker:
# test_worker_membership.py, where the survivor fences its transaction.
@pytest.mark.parametrize("scope", ["partition", "worker"])
async def test_two_workers_and_a_sigkill_mid_stream_still_emit_each_session_once(
    worker_env: WorkerEnv, workers: list[WorkerProcess], scope: str
) -> None:
    worker_env.transaction_scope = scope
    worker_env.extra["SESSIONFLOW_TRANSACTION_TIMEOUT_SECONDS"] = "2"
    await worker_env.make_topics()
    p = traffic(400, seed=3, half_only=0.0)
    half = len(p.deliveries) // 2
    a = start(worker_env, workers, "a")
    b = start(worker_env, workers, "b")
    await asyncio.gather(asyncio.to_thread(a.wait_ready), asyncio.to_thread(b.wait_ready))
    await produce_deliveries(worker_env.bootstrap, worker_env.topics.raw, p.deliveries[:half])
    await asyncio.sleep(1.0)  # mid-stream: some transactions committed, some open
    b.kill()
    await produce_deliveries(worker_env.bootstrap, worker_env.topics.raw, p.deliveries[half:])
    b = start(worker_env, workers, "b")
    await asyncio.to_thread(b.wait_ready, 90.0)
    in_effect = f'guarantee="exactly_once",transactions="{scope}"'
    assert f"sessionflow_processing_guarantee{{{in_effect}}} 1.0" in a.metrics()
    await completed_once(worker_env, p.expectations.complete)


def _v1_state(session_id: str, half: Delivery | None, marker_of: list[Delivery]) -> bytes:
    """A table value as sessionflow wrote it before state version 2: a pending half (a JSON
    head, then the body) or a JSON completion marker."""
    now = int(time.time() * 1000)
    if half is not None:
        head = [1, "P", session_id, half.event_type, half.message_id]
        head += [digest_of(half.body).hex(), now, now]
        return orjson.dumps(head) + b"\n" + half.body
    created, ended = sorted(marker_of, key=lambda d: d.event_type != SESSION_CREATED)
    halves = [created.message_id, digest_of(created.body).hex()]
    halves += [ended.message_id, digest_of(ended.body).hex()]
    return orjson.dumps([1, "M", session_id, now, *halves])


async def test_a_table_written_in_state_version_1_restores_and_keeps_pairing(
    worker_env: WorkerEnv, workers: list[WorkerProcess]
) -> None:
    # The upgrade: the changelog holds what the previous version wrote; a new worker with an
    # empty data dir restores it, pairs the waiting halves and still drops late duplicates.
    await worker_env.make_topics()
    p = plan(6, seed=5, now=datetime.now(UTC))  # complete pairs, each half once, nothing else
    by_session: dict[str, dict[str, Delivery]] = {}
    for d in p.deliveries:
        by_session.setdefault(d.session_id or "", {}).setdefault(d.event_type, d)
    assert all(set(halves) == {SESSION_CREATED, SESSION_ENDED} for halves in by_session.values())
    waiting, done = sorted(by_session)[:4], sorted(by_session)[4:]
    changelog = f"{worker_env.namespace}sessionflow-sessions-changelog"
    await ensure_changelog(worker_env, changelog)
    old_states = {sid: _v1_state(sid, by_session[sid][SESSION_ENDED], []) for sid in waiting}
    old_states |= {sid: _v1_state(sid, None, list(by_session[sid].values())) for sid in done}
    await produce_table(worker_env, changelog, old_states)

    worker = start(worker_env, workers, "upgraded")
    await asyncio.to_thread(worker.wait_ready)
    # The waiting sessions' created halves, and the completed ones' halves once more (a retry).
    late = [by_session[sid][SESSION_CREATED] for sid in waiting]
    late += [d for sid in done for d in by_session[sid].values()]
    await produce_deliveries(worker_env.bootstrap, worker_env.topics.raw, late)
    completed = await read_records(
        worker_env.bootstrap, worker_env.topics.completed, until=len(waiting)
    )
    assert_exactly_once(completed, set(waiting))
