"""A worker that loses its group membership while it holds uncommitted work (a broker outage or a
pause longer than the session timeout): each session is still emitted exactly once.

One transaction per partition commits such work (TxnOffsetCommit below v3 names no member) and
the worker runs on. One per worker (KIP-447) must not: the group no longer knows the member, so
the broker refuses its offsets, or, once aiokafka has forgotten the membership itself, the runtime
does (the broker would take offsets without a generation unchecked). The worker stops, and
started again under its id it restores its table from the changelog. Reliability scenario 1 saw
this once after a broker kill -9 (bench/results/worker-waits.md, section 10); here a pause makes
the member's expiry certain, and a long commit interval the uncommitted work.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from cli.traffic import Delivery
from tests.integration.worker_fixtures import (
    WorkerEnv,
    WorkerProcess,
    completed_once,
    produce_deliveries,
    start,
    traffic,
)

pytestmark = pytest.mark.integration

SESSION_TIMEOUT_S = 6.0
# Paused this long, the broker has expired the member for certain (its heartbeat is a tenth of
# the session timeout, so the worker notices at once when it runs again).
PAUSE_S = SESSION_TIMEOUT_S + 4.0
CHUNK = 20  # deliveries sent together, every CHUNK_EVERY_S: load keeps flowing while paused
CHUNK_EVERY_S = 0.05
# How long a worker that stopped takes to exit after it runs again (the refused commit, then
# Faust's shutdown).
EXIT_WAIT_S = 30.0
# Work applied before the pause is uncommitted for a while; a transaction must outlive the pause
# (the broker would abort it at its timeout, which is another way to stop).
COMMIT_INTERVAL_S = 5.0
TRANSACTION_TIMEOUT_S = 60.0


# Why a worker that lost its membership stops: the broker's refusal, or the runtime's own.
FENCED = ("the group refused the offsets of member", "lost its membership of the group")


async def _send_steadily(worker_env: WorkerEnv, deliveries: list[Delivery]) -> None:
    for i in range(0, len(deliveries), CHUNK):
        chunk = deliveries[i : i + CHUNK]
        await produce_deliveries(worker_env.bootstrap, worker_env.topics.raw, chunk)
        await asyncio.sleep(CHUNK_EVERY_S)


async def _exited(worker: WorkerProcess, within_s: float) -> bool:
    assert worker.proc is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        if worker.proc.poll() is not None:
            return True
        await asyncio.sleep(0.2)
    return False


@pytest.mark.parametrize("scope", ["partition", "worker"])
async def test_a_worker_paused_past_its_session_timeout_emits_each_session_once(
    worker_env: WorkerEnv, workers: list[WorkerProcess], scope: str
) -> None:
    worker_env.transaction_scope = scope
    worker_env.extra |= {
        "SESSIONFLOW_CONSUMER_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT_S),
        "SESSIONFLOW_COMMIT_INTERVAL_SECONDS": str(COMMIT_INTERVAL_S),
        "SESSIONFLOW_TRANSACTION_TIMEOUT_SECONDS": str(TRANSACTION_TIMEOUT_S),
    }
    await worker_env.make_topics()
    p = traffic(300, seed=7, half_only=0.0)
    worker = start(worker_env, workers, "w")
    await asyncio.to_thread(worker.wait_ready)
    assert worker.proc is not None

    sending = asyncio.create_task(_send_steadily(worker_env, list(p.deliveries)))
    await asyncio.sleep(1.0)  # mid-stream: the open transaction holds processed records
    worker.proc.send_signal(signal.SIGSTOP)
    await asyncio.sleep(PAUSE_S)
    worker.proc.send_signal(signal.SIGCONT)
    await sending

    if scope == "worker":
        stopped = await _exited(worker, EXIT_WAIT_S)
        assert stopped, f"the worker runs on after losing its membership:\n{worker.log_tail()}"
        log = worker.log_path.read_text(errors="replace")
        assert any(reason in log for reason in FENCED), worker.log_tail()
        worker = start(worker_env, workers, "w")  # the same id: it aborts what it left open
        await asyncio.to_thread(worker.wait_ready, 90.0)
    await completed_once(worker_env, p.expectations.complete)
    assert worker.proc is not None
    assert worker.proc.poll() is None, f"the worker stopped:\n{worker.log_tail()}"
