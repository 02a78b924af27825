"""A transaction left open on the changelog (a zombie's: a worker paused or cut off past its
session timeout, or killed) while a rebalance moves table partitions.

Read read_committed, a changelog partition ends at the first offset of its oldest open
transaction. The partition's owner commits its own records past it, so at the next rebalance
within the broker's transaction timeout the owner's persisted offset lay past that end (Faust's
ConsistencyError stopped the worker: reliability scenario 15, a worker cut off from the broker),
and a worker restoring the partition afresh stopped at the open transaction, short of the records
committed after it. Recovery now waits for such a transaction to end (streams/runtime/consumer.py,
11): here the zombie is a plain transactional producer that writes to every changelog partition
and aborts a few seconds into the rebalance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from aiokafka import AIOKafkaProducer

from cli.traffic import Delivery
from tests.integration.worker_fixtures import (
    WorkerEnv,
    WorkerProcess,
    completed_once,
    produce_deliveries,
    start,
    traffic,
)
from tests.polling import wait_until

pytestmark = pytest.mark.integration

# The zombie's transaction ends this long after the second worker starts: longer than the
# rebalance, so the recovery meets it open.
OPEN_AFTER_REBALANCE_S = 4.0


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


async def test_a_rebalance_under_a_zombies_open_transaction_loses_no_state(
    worker_env: WorkerEnv, workers: list[WorkerProcess]
) -> None:
    await worker_env.make_topics()
    p = traffic(120, seed=15, half_only=0.0)
    first, rest = _first_halves(p.deliveries)
    owner = start(worker_env, workers, "w1")
    await asyncio.to_thread(owner.wait_ready)

    changelog = f"{worker_env.namespace}sessionflow-sessions-changelog"
    zombie = AIOKafkaProducer(
        bootstrap_servers=worker_env.bootstrap,
        transactional_id=f"{worker_env.namespace}zombie",
        transaction_timeout_ms=60_000,
    )
    await zombie.start()
    try:
        await zombie.begin_transaction()
        for partition in range(worker_env.partitions):
            await zombie.send_and_wait(changelog, b"{}", key=b"zombie", partition=partition)
        # The owner commits each session's first half to the table, past the open transaction.
        await produce_deliveries(worker_env.bootstrap, worker_env.topics.raw, first)
        await wait_until(
            lambda: owner.total("sessionflow_events_total") >= len(first),
            "the first halves applied",
        )
        await asyncio.sleep(1.0)  # and committed (every 0.1 s)

        other = start(worker_env, workers, "w2")  # a rebalance while the transaction is open
        await asyncio.sleep(OPEN_AFTER_REBALANCE_S)
        await zombie.abort_transaction()
    finally:
        await zombie.stop()
    await asyncio.gather(*(asyncio.to_thread(w.wait_ready) for w in (owner, other)))

    await produce_deliveries(worker_env.bootstrap, worker_env.topics.raw, rest)
    await completed_once(worker_env, p.expectations.complete)
    for w in (owner, other):
        assert w.proc is not None
        assert w.proc.poll() is None, f"{w.name} stopped:\n{w.log_tail()}"
