"""A worker that loses its group membership while it holds uncommitted work (a broker outage or a
pause longer than the session timeout): it runs on, and each session is still emitted exactly once.

One transaction per partition commits such work (TxnOffsetCommit below v3 names no member). One
per worker (KIP-447) must not: the group no longer knows the member, so the broker refuses its
offsets, or, once aiokafka has forgotten the membership itself, the runtime does (the broker would
take offsets without a generation unchecked). The runtime then aborts the transaction, clears the
partitions it changed, rejoins and restores them from the changelog, in place
(streams/runtime/runner.py). Reliability scenario 1 once stopped a worker here, before the
runtime could do that (bench/results/worker-waits.md, section 10); a pause makes the member's
expiry certain, and a long commit interval the uncommitted work.
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
# Work applied before the pause is uncommitted for a while; a transaction must outlive the pause
# (the broker would abort it at its timeout, which is another way to stop).
COMMIT_INTERVAL_S = 5.0
TRANSACTION_TIMEOUT_S = 60.0


# The runtime's log line when it drops the uncommitted work (streams/runtime/runner.py).
DROPPED = "no longer knows this worker as the member that processed the open transaction"


async def _send_steadily(worker_env: WorkerEnv, deliveries: list[Delivery]) -> None:
    for i in range(0, len(deliveries), CHUNK):
        chunk = deliveries[i : i + CHUNK]
        await produce_deliveries(worker_env.bootstrap, worker_env.topics.raw, chunk)
        await asyncio.sleep(CHUNK_EVERY_S)


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

    await completed_once(worker_env, p.expectations.complete)
    assert worker.proc is not None
    assert worker.proc.poll() is None, f"the worker stopped:\n{worker.log_tail()}"
    dropped = _metric(worker.metrics(), "sessionflow_memberships_lost_total")
    if scope == "worker":
        assert DROPPED in worker.log_path.read_text(errors="replace"), worker.log_tail()
        assert dropped >= 1
    else:
        assert dropped == 0


def _metric(page: str, name: str) -> float:
    [value] = [float(line.split()[-1]) for line in page.splitlines() if line.startswith(name + " ")]
    return value
