"""streams.runtime.namesakes with real workers: a worker started under the id of one that runs
stops at its first assignment, naming the other; the one that ran first keeps working, and each
session is emitted once. (A worker killed and started again under its own name is not refused:
the reliability suite's kill scenarios do that many times.)"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.worker_fixtures import (
    WorkerEnv,
    WorkerProcess,
    completed_once,
    send_steadily,
    start,
    traffic,
)
from tests.polling import wait_until

pytestmark = pytest.mark.integration


async def test_a_second_worker_under_a_running_workers_id_stops(
    worker_env: WorkerEnv, workers: list[WorkerProcess]
) -> None:
    worker_env.extra |= {"SESSIONFLOW_WORKER_ID": "shared"}  # both, by mistake
    await worker_env.make_topics()
    p = traffic(300, seed=11, half_only=0.0)
    first = start(worker_env, workers, "w1")
    await asyncio.to_thread(first.wait_ready)
    sending = asyncio.create_task(send_steadily(worker_env, list(p.deliveries)))

    second = start(worker_env, workers, "w2")
    assert second.proc is not None
    await wait_until(lambda: second.proc.poll() is not None, "the second worker stopping", 60)
    assert second.proc.returncode != 0
    log = second.log_path.read_text(errors="replace")
    assert "another live worker in group" in log, second.log_tail()
    assert "(shared on 127.0.0.1)" in log, second.log_tail()

    await sending
    await completed_once(worker_env, p.expectations.complete)
    assert first.alive(), f"the first worker stopped:\n{first.log_tail()}"
    assert "another live worker" not in first.log_path.read_text(errors="replace")
