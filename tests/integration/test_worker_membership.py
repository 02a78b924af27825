"""A worker whose open transaction cannot commit any more (the group forgot it, or the broker
aborted the transaction at its timeout: a broker outage or a pause longer than either): it runs on,
and each session is still emitted exactly once.

One transaction per partition commits such work (TxnOffsetCommit below v3 names no member). One
per worker (KIP-447) must not: the group no longer knows the member, so the broker refuses its
offsets, or, once aiokafka has forgotten the membership itself, the runtime does (the broker would
take offsets without a generation unchecked). The runtime then aborts the transaction, clears the
partitions it changed, rejoins and restores them from the changelog, in place
(streams/runtime/runner.py). A transaction the broker aborted at its timeout fences the producer
(its epoch is bumped); with one transaction per worker that timeout is short (10 s by default), and
the runtime drops the work the same way. Reliability scenario 1 (a broker kill -9) stopped a worker
both ways before the runtime could do that (bench/results/worker-waits.md, sections 10 and 11);
here a pause makes the expiry certain, and a long commit interval the uncommitted work.

With a second worker the paused one is a zombie: its partitions move to the other while it holds
an open transaction. One transaction per partition, the other worker's producers fence it by
their transactional ids; the paused worker stopped on that fence until December 5 (reliability
scenario 14 found it), and now drops its work and rejoins as in the cases above.

A zombie's transaction also stays open on the changelog until it ends. Read read_committed, a
changelog partition ends at the first offset of its oldest open transaction, and the partition's
new owner commits its own records past it. At the next rebalance within the broker's transaction
timeout the owner's persisted offset lay past that end (Faust's ConsistencyError stopped the
worker: reliability scenario 15, a worker cut off from the broker), and a worker restoring the
partition afresh stopped at the open transaction, short of the records committed after it.
Recovery now waits for such a transaction to end (streams/runtime/consumer.py, 11); the last test
holds one open with a plain transactional producer. With one transaction per worker the recovery
first fences the transaction's id (12), which ends it at once: the test before it kills a worker
for good, and nothing else would end its transaction within the test.

A standby's end is not waited for (14), and the worker that owned the partition before the
rebalance holds records in its store past the open transaction: Faust's ConsistencyError stopped
it there too (scenario 15 again, December 6), until a standby's end became what its store holds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced

from cli.traffic import Delivery
from tests import pausing
from tests.integration.worker_fixtures import (
    WorkerEnv,
    WorkerProcess,
    completed_once,
    produce_deliveries,
    send_steadily,
    start,
    traffic,
)
from tests.polling import wait_until

pytestmark = pytest.mark.integration

# Work applied before the pause stays uncommitted for a while.
COMMIT_INTERVAL_S = 5.0
# The broker looks for transactions past their timeout this often
# (transaction.abort.timed.out.transaction.cleanup.interval.ms).
BROKER_TXN_CLEANUP_S = 10.0
# Past the session timeout (6 s) and the other worker's takeover, within the transaction timeout.
ZOMBIE_PAUSE_S = 9.0
# The open transaction of the zombie tests ends this long after the second worker starts: longer
# than the rebalance, so the recovery meets it open.
OPEN_AFTER_REBALANCE_S = 4.0
# The changelog partitions a worker holding all four gives up when a second joins: Faust's
# assignor drops a worker's extra partitions with set.pop(), the lowest first.
GIVEN_UP = (0, 1)


@dataclass(frozen=True)
class Case:
    scope: str
    session_timeout_s: float
    transaction_timeout_s: float
    pause_s: float
    dropped: str | None  # the reason the worker drops its transaction for, if it does


CASES = {
    # Paused past the session timeout (its heartbeat is a tenth of it, so the worker notices at
    # once when it runs again); the transaction outlives the pause.
    "membership-partition": Case("partition", 6.0, 60.0, 10.0, None),
    "membership-worker": Case("worker", 6.0, 60.0, 10.0, "membership_lost"),
    # Paused past the transaction's timeout and the broker's next look, not the session timeout.
    "txn-timeout-worker": Case("worker", 45.0, 3.0, 3.0 + BROKER_TXN_CLEANUP_S + 3.0, "fenced"),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_a_worker_paused_past_its_transactions_life_emits_each_session_once(
    worker_env: WorkerEnv, workers: list[WorkerProcess], case: Case
) -> None:
    worker_env.transaction_scope = case.scope
    worker_env.extra |= {
        "SESSIONFLOW_CONSUMER_SESSION_TIMEOUT_SECONDS": str(case.session_timeout_s),
        "SESSIONFLOW_COMMIT_INTERVAL_SECONDS": str(COMMIT_INTERVAL_S),
        "SESSIONFLOW_TRANSACTION_TIMEOUT_SECONDS": str(case.transaction_timeout_s),
    }
    await worker_env.make_topics()
    p = traffic(300, seed=7, half_only=0.0)
    worker = start(worker_env, workers, "w")
    await asyncio.to_thread(worker.wait_ready)
    assert worker.proc is not None

    sending = asyncio.create_task(send_steadily(worker_env, list(p.deliveries)))
    await asyncio.sleep(1.0)  # mid-stream: the open transaction holds processed records
    async with pausing.paused(worker.proc.pid):
        await asyncio.sleep(case.pause_s)
    await sending

    await completed_once(worker_env, p.expectations.complete)
    assert worker.alive(), f"the worker stopped:\n{worker.log_tail()}"
    dropped = worker.dropped_transactions()
    if case.dropped is None:
        assert dropped == {}
    else:
        assert dropped.get(case.dropped, 0) >= 1, (dropped, worker.log_tail())


async def test_a_paused_worker_whose_partitions_moved_rejoins_and_emits_each_session_once(
    worker_env: WorkerEnv, workers: list[WorkerProcess]
) -> None:
    """A zombie: one of two workers paused past its session timeout, long enough for the other to
    take its partitions and open their transactional ids (one transaction per partition), which
    fences the paused worker's producers. Resumed, it drops its open transaction and rejoins; it
    does not stop. (One transaction per worker, reliability scenario 14 does the same under
    signed load.)"""
    worker_env.transaction_scope = "partition"
    worker_env.extra |= {"SESSIONFLOW_COMMIT_INTERVAL_SECONDS": str(COMMIT_INTERVAL_S)}
    await worker_env.make_topics()
    p = traffic(300, seed=8, half_only=0.0)
    paused, other = start(worker_env, workers, "w1"), start(worker_env, workers, "w2")
    await asyncio.gather(*(asyncio.to_thread(w.wait_ready) for w in (paused, other)))
    assert paused.proc is not None

    sending = asyncio.create_task(send_steadily(worker_env, list(p.deliveries)))
    await asyncio.sleep(1.0)  # mid-stream: the open transaction holds processed records
    async with pausing.paused(paused.proc.pid):
        await asyncio.sleep(ZOMBIE_PAUSE_S)
    await sending

    await completed_once(worker_env, p.expectations.complete)
    for w in (paused, other):
        assert w.alive(), f"{w.name} stopped:\n{w.log_tail()}"
    dropped = paused.dropped_transactions()
    assert sum(dropped.values()) >= 1, (dropped, paused.log_tail())


async def test_a_worker_killed_for_good_is_fenced_by_the_one_that_takes_its_partitions(
    worker_env: WorkerEnv, workers: list[WorkerProcess]
) -> None:
    """One transaction per worker, killed mid-stream and not restarted: its transaction stays
    open on the changelog, and with a transaction timeout longer than this test nothing but the
    survivor's fence ends it (streams/runtime/fencing.py)."""
    worker_env.transaction_scope = "worker"
    worker_env.extra |= {
        "SESSIONFLOW_COMMIT_INTERVAL_SECONDS": str(COMMIT_INTERVAL_S),
        "SESSIONFLOW_TRANSACTION_TIMEOUT_SECONDS": "600",
    }
    await worker_env.make_topics()
    p = traffic(300, seed=9, half_only=0.0)
    lost, survivor = start(worker_env, workers, "w1"), start(worker_env, workers, "w2")
    await asyncio.gather(*(asyncio.to_thread(w.wait_ready) for w in (lost, survivor)))

    sending = asyncio.create_task(send_steadily(worker_env, list(p.deliveries)))
    await asyncio.sleep(1.0)  # mid-stream: the open transaction holds processed records
    lost.kill()
    await sending

    await completed_once(worker_env, p.expectations.complete)
    assert survivor.alive(), f"the survivor stopped:\n{survivor.log_tail()}"
    assert survivor.total("sessionflow_transactions_fenced_total") >= 1, survivor.log_tail()


def _first_halves(deliveries: Iterable[Delivery]) -> tuple[list[Delivery], list[Delivery]]:
    """Each session's first delivery, and the rest, both in the plan's order."""
    seen: set[str | None] = set()
    first, rest = [], []
    for d in deliveries:
        if d.session_id is not None and d.session_id not in seen:
            seen.add(d.session_id)
            first.append(d)
        else:
            rest.append(d)
    return first, rest


# What a test does while the zombie's transaction is open and the second worker starts, given
# the zombie, its transactional id and the two workers: it ends the transaction.
Meanwhile = Callable[[AIOKafkaProducer, str, WorkerProcess, WorkerProcess], Awaitable[None]]


async def _rebalance_under_a_zombie(
    worker_env: WorkerEnv,
    workers: list[WorkerProcess],
    partitions: Iterable[int],
    meanwhile: Meanwhile,
) -> None:
    """A worker commits each session's first half to its table past a transaction a plain
    producer (the zombie) holds open on the changelog's `partitions`; a second worker starts (a
    rebalance while it is open), and `meanwhile` ends it. Then each session completes once, and
    both workers run on."""
    await worker_env.make_topics()
    p = traffic(120, seed=15, half_only=0.0)
    first, rest = _first_halves(p.deliveries)
    owner = start(worker_env, workers, "w1")
    await asyncio.to_thread(owner.wait_ready)

    changelog = f"{worker_env.namespace}sessionflow-sessions-changelog"
    zombie_id = f"{worker_env.namespace}zombie"
    zombie = AIOKafkaProducer(
        bootstrap_servers=worker_env.bootstrap,
        transactional_id=zombie_id,
        transaction_timeout_ms=60_000,
    )
    await zombie.start()
    try:
        await zombie.begin_transaction()
        for partition in partitions:
            await zombie.send_and_wait(changelog, b"{}", key=b"zombie", partition=partition)
        await produce_deliveries(worker_env.bootstrap, worker_env.topics.raw, first)
        await wait_until(
            lambda: owner.total("sessionflow_events_total") >= len(first),
            "the first halves applied",
        )
        await asyncio.sleep(1.0)  # and committed (every 0.1 s), past the open transaction
        other = start(worker_env, workers, "w2")
        await meanwhile(zombie, zombie_id, owner, other)
    finally:
        await zombie.stop()
    await asyncio.gather(*(asyncio.to_thread(w.wait_ready) for w in (owner, other)))

    await produce_deliveries(worker_env.bootstrap, worker_env.topics.raw, rest)
    await completed_once(worker_env, p.expectations.complete)
    for w in (owner, other):
        assert w.alive(), f"{w.name} stopped:\n{w.log_tail()}"


@pytest.mark.parametrize("scope", ["worker", "partition"])
async def test_a_rebalance_under_a_zombies_open_transaction_loses_no_state(
    worker_env: WorkerEnv, workers: list[WorkerProcess], scope: str
) -> None:
    """With one transaction per worker the recovery fences the zombie's transactional id, which
    ends the transaction at once (consumer.py, 12); with one per partition it waits for the
    zombie's own abort (11: a partition's id is its new owner's, nobody else's to fence)."""

    async def fenced_or_aborted(
        zombie: AIOKafkaProducer, zombie_id: str, owner: WorkerProcess, other: WorkerProcess
    ) -> None:
        if scope == "worker":
            await wait_until(
                lambda: any(f"fenced {zombie_id}" in w.log_tail(400) for w in (owner, other)),
                "a worker to fence the zombie",
            )
            with pytest.raises(ProducerFenced):
                await zombie.abort_transaction()
        else:
            await asyncio.sleep(OPEN_AFTER_REBALANCE_S)
            await zombie.abort_transaction()

    worker_env.transaction_scope = scope
    await _rebalance_under_a_zombie(
        worker_env, workers, range(worker_env.partitions), fenced_or_aborted
    )


async def test_a_standby_holding_records_past_a_zombies_open_transaction_runs_on(
    worker_env: WorkerEnv, workers: list[WorkerProcess]
) -> None:
    """The zombie's transaction is open only on the partitions the first worker gives up: they are
    its standbys after the rebalance, its store holds records it committed past the transaction,
    and with one transaction per partition nobody fences the zombie, so the first worker builds
    its standbys' ends while the transaction is open (consumer.py, 14)."""

    async def standbys_built_then_aborted(
        zombie: AIOKafkaProducer, zombie_id: str, owner: WorkerProcess, other: WorkerProcess
    ) -> None:
        raised = f"standby changelog partitions {list(GIVEN_UP)}"
        await wait_until(
            lambda: raised in owner.log_tail(400) or not owner.alive(),
            f"the first worker to build its standbys' ends ({raised}); no such line at all means"
            " Faust's assignor no longer gives up the lowest partitions first: see GIVEN_UP",
        )
        assert owner.alive(), f"w1 stopped:\n{owner.log_tail()}"
        await asyncio.sleep(OPEN_AFTER_REBALANCE_S)
        await zombie.abort_transaction()

    worker_env.transaction_scope = "partition"
    await _rebalance_under_a_zombie(worker_env, workers, GIVEN_UP, standbys_built_then_aborted)


def _joined(worker: WorkerProcess) -> list[int]:
    """The generations the worker's consumer joined, in order (aiokafka logs each at INFO)."""
    text = worker.log_path.read_text(errors="replace")
    return [int(g) for g in re.findall(r"Joined group '[^']*' \(generation (\d+)\)", text)]


def _led(worker: WorkerProcess) -> int:
    """How often the worker's consumer was the group's leader (it computed the assignment)."""
    return worker.log_path.read_text(errors="replace").count("Elected group leader")


@pytest.mark.parametrize("role", ["leader", "follower"])
async def test_a_static_member_restarted_within_its_session_timeout_keeps_its_partitions(
    worker_env: WorkerEnv, workers: list[WorkerProcess], role: str
) -> None:
    """Static membership: one of two workers stopped and started again under its name within the
    session timeout. The group does not rebalance: the other worker joins no new generation, the
    restarted one rejoins the same generation with its partitions, and every session sent across
    the restart is emitted once."""
    worker_env.extra |= {
        "SESSIONFLOW_STATIC_MEMBERSHIP": "true",
        "SESSIONFLOW_CONSUMER_SESSION_TIMEOUT_SECONDS": "45",
        "SESSIONFLOW_LOG_LEVEL": "INFO",
    }
    await worker_env.make_topics()
    p = traffic(300, seed=16, half_only=0.0)
    first = start(worker_env, workers, "w1")
    await asyncio.to_thread(first.wait_ready)
    second = start(worker_env, workers, "w2")
    await asyncio.gather(*(asyncio.to_thread(w.wait_ready) for w in (first, second)))
    await wait_until(
        lambda: bool(_joined(first)) and _joined(first)[-1:] == _joined(second)[-1:],
        "both workers in one generation",
    )
    generation = _joined(first)[-1]
    leader, follower = (first, second) if _led(first) else (second, first)
    assert _led(leader)
    assert not _led(follower)
    restarted, other = (leader, follower) if role == "leader" else (follower, leader)
    other_joins, restarted_joins = len(_joined(other)), len(_joined(restarted))

    sending = asyncio.create_task(send_steadily(worker_env, list(p.deliveries)))
    await asyncio.sleep(1.0)  # mid-stream
    assert restarted.stop() == 0, restarted.log_tail()
    restarted.start()
    await asyncio.to_thread(restarted.wait_ready)
    await sending

    await completed_once(worker_env, p.expectations.complete)
    assert len(_joined(other)) == other_joins, other.log_tail()
    # The restarted worker's new consumer joined, and into the generation it left.
    assert _joined(restarted)[restarted_joins:] == [generation], restarted.log_tail()
    for w in (restarted, other):
        assert w.alive(), f"{w.name} stopped:\n{w.log_tail()}"
